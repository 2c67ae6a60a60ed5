//! minipull: a tiny, static, single-threaded container image puller that
//! writes OCI image layouts. See README.md.

fn main() {
    // Expected failures are errors, never panics; should a bug panic anyway,
    // say so in one line instead of a backtrace. Release builds abort on a
    // panic before any hook runs (SIGABRT, README); PANIC_MESSAGES=1 builds
    // keep this line.
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("minipull: internal error{at}; this is a bug, please report it");
    }));
    let code = match minipull::cli::run() {
        Ok(code) => code,
        Err(e) => minipull::cli::fail(&e),
    };
    std::process::exit(code);
}

//! minipull: a tiny, static, single-threaded container image puller that
//! writes OCI image layouts. See README.md.

mod auth;
mod cli;
mod digest;
mod error;
mod layout;
mod manifest;
mod progress;
mod pull;
mod reference;
mod registry;

fn main() {
    let code = match cli::run() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("minipull: error: {e}");
            e.kind.exit_code()
        }
    };
    std::process::exit(code);
}

//! The command line as a user meets it: the real binary, the real registry.
//! Commands found after global options, reserved words, `--opt=VALUE`, the
//! last of a repeated option, `--`, `docker://`, options each command takes
//! and refuses, per-command help (and that docs/options.md holds it
//! verbatim), and the progress line under a pseudo-terminal.

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// minipull in `cwd` (so a stray directory would appear there), with `env`.
fn run_in(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(minipull_bin());
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("DOCKER_CONFIG")
        .env_remove("MINIPULL_VERIFY_KEY")
        .env("HOME", "/nonexistent-minipull-home")
        // Any request that escapes goes to a port nothing listens on.
        .env("HTTPS_PROXY", "http://127.0.0.1:1")
        .env("HTTP_PROXY", "http://127.0.0.1:1")
        .env_remove("NO_PROXY")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// Nothing but what the test made itself is in `dir`.
fn assert_only(dir: &Path, names: &[&str]) {
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(found, want, "files in {}", dir.display());
}

#[cfg(feature = "unpack")]
/// A two-platform index at `repo:tag` (amd64, arm64); a file in each says which.
fn push_two_platforms(reg: &Registry, repo: &str, tag: &str) {
    let mut manifests = Vec::new();
    for arch in ["amd64", "arm64"] {
        let image = Image::new(arch, vec![gz_layer(&[("arch.txt", arch.as_bytes())])]);
        let (mt, bytes) = reg.image_manifest(repo, &image);
        let d = reg.push_manifest(repo, &sha256(&bytes), mt, &bytes);
        manifests.push(serde_json::json!({"mediaType": mt, "digest": d, "size": bytes.len(),
            "platform": {"os": "linux", "architecture": arch}}));
    }
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
    reg.push_manifest(repo, tag, OCI_INDEX, &serde_json::to_vec(&index).unwrap());
}

#[cfg(feature = "unpack")]
/// The architecture of the one image `out` holds (from its config).
fn pulled_arch(out: &Path) -> String {
    let o = minipull(&["config", out.to_str().unwrap()], None);
    assert_exit(&o, 0);
    let config: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    config["architecture"].as_str().unwrap().to_string()
}

#[test]
fn the_command_is_found_after_global_options() {
    let reg = Registry::start(Auth::None);
    reg.push_image("demo/app", "v1", &Image::new("amd64", vec![gz_layer(&[("f", b"x")])]));
    let work = TempDir::new("cli-cmd");
    let r = format!("{}/demo/app:v1", reg.host);
    let out = work.join("out");
    let out_s = out.to_str().unwrap();
    // `pull` is an alias of the bare form; no proxy for the test registry.
    let local = [("NO_PROXY", "127.0.0.1")];
    assert_exit(
        &run_in(work.path(), &["pull", "--plain-http", "-q", &r, out_s], &local),
        0,
    );

    // Global options before the command, for a command that does not use them.
    let o = run_in(work.path(), &["--plain-http", "--retry-for", "0", "ls", out_s], &[]);
    assert_exit(&o, 0);
    assert!(stdout(&o).starts_with("v1\t"), "{}", stdout(&o));
    // `ls` of a name that is not there lists nothing, creates nothing, asks no registry.
    let o = run_in(work.path(), &["--plain-http", "--retry-for", "0", "ls", "o1"], &[]);
    assert_exit(&o, 3);
    assert!(stderr(&o).contains("no OCI image layout at o1"), "{}", stderr(&o));
    let o = run_in(work.path(), &["-q", "gc", out_s], &[]);
    assert_exit(&o, 0);
    assert!(stdout(&o).starts_with("freed "), "{}", stdout(&o));
    // Globals before or after the command for one that talks to a registry.
    for args in [
        vec!["--plain-http", "check", &r, out_s],
        vec!["check", "--plain-http", &r, out_s],
        vec!["check", &r, "--plain-http", out_s],
    ] {
        assert_exit(&run_in(work.path(), &args, &local), 0);
    }
    // help and version are commands too; reserved words are never an image.
    let o = run_in(work.path(), &["help", "ls"], &[]);
    assert_exit(&o, 0);
    assert!(stdout(&o).starts_with("minipull ls: "), "{}", stdout(&o));
    let o = run_in(work.path(), &["version"], &[]);
    assert!(stdout(&o).starts_with("minipull "), "{}", stdout(&o));
    for (word, says) in [
        ("push", "skopeo"),
        ("copy", "crane"),
        ("login", "--password-stdin"),
        ("digest", "minipull inspect REF"),
        ("manifest", "minipull inspect REF"),
        // A command now: it takes one operand, and creates nothing.
        ("inspect", "`minipull inspect` expected REF"),
    ] {
        let o = run_in(work.path(), &["--plain-http", word, "alpine", "o2"], &[]);
        assert_exit(&o, 2);
        assert!(stderr(&o).contains(says), "{word}: {}", stderr(&o));
    }
    assert_only(work.path(), &["out"]);
    // `minipull` alone: the synopsis, exit 2.
    let o = run_in(work.path(), &[], &[]);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("minipull [OPTIONS] REF OUTDIR"), "{}", stderr(&o));
    assert!(stderr(&o).contains("minipull gc [OPTIONS] OUTDIR"), "{}", stderr(&o));
    assert_only(work.path(), &["out"]);
    // Written out, a reserved word is an image: this one is asked for
    // (through the dead proxy: a network error, not a usage one).
    let o = run_in(
        work.path(),
        &["--retry-for", "0", "--retries", "0", "docker.io/library/ls", "o3"],
        &[],
    );
    assert_exit(&o, 5);
    // ... and the dead proxy is named as what failed, not the registry.
    assert!(
        stderr(&o).contains("cannot connect to the proxy 127.0.0.1:1 on the way to registry-1.docker.io"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("NO_PROXY"), "{}", stderr(&o));
}

// Part of it unpacks (the suite also runs without the unpack feature).
#[cfg(feature = "unpack")]
#[test]
fn option_values_inline_repeated_missing_and_double_dash() {
    let reg = Registry::start(Auth::None);
    push_two_platforms(&reg, "demo/multi", "v1");
    let work = TempDir::new("cli-values");
    let r = format!("{}/demo/multi:v1", reg.host);
    let local = [("NO_PROXY", "127.0.0.1")];
    let pull = |extra: &[&str]| {
        let mut a = vec!["--plain-http", "-q"];
        a.extend_from_slice(extra);
        run_in(work.path(), &a, &local)
    };

    // --opt=VALUE; a single-value option given twice: the last wins.
    assert_exit(&pull(&["--platform=linux/arm64", &r, "a"]), 0);
    assert_eq!(pulled_arch(&work.join("a")), "arm64");
    assert_exit(
        &pull(&["--platform", "linux/arm64", "--platform=linux/amd64", &r, "b"]),
        0,
    );
    assert_eq!(pulled_arch(&work.join("b")), "amd64");
    // `--timeout 0` alone is refused: the later value replaced it.
    assert_exit(&pull(&["--timeout", "0", "--timeout=5", "--retry-for=0", &r, "c"]), 0);
    // The same suffixes as --limit-rate.
    assert_exit(&pull(&["--speed-limit", "1k", "--speed-time=10", &r, "d"]), 0);
    // skopeo's transport prefix is accepted.
    assert_exit(&pull(&[&format!("docker://{r}"), "e"]), 0);
    // `--` ends the options: an OUTDIR that starts with a dash.
    assert_exit(&pull(&["--platform=linux/amd64", &r, "--", "-f"]), 0);
    assert!(work.join("-f").join("index.json").is_file());
    let o = run_in(work.path(), &["ls", "--", "-f"], &[]);
    assert_exit(&o, 0);
    assert!(stdout(&o).starts_with("v1\t"), "{}", stdout(&o));

    // A missing value names the option, wherever it stands.
    for (args, says) in [
        (vec![r.as_str(), "x", "--platform"], "--platform needs a value"),
        (vec!["--unpack", "--force", r.as_str(), "x"], "--unpack needs a value"),
        (vec!["--platform", r.as_str(), "x"], "--platform took"),
        (vec!["--plain-http=yes", r.as_str(), "x"], "--plain-http takes no value"),
        (vec!["--limit-rate", "fast", r.as_str(), "x"], "--limit-rate"),
    ] {
        let o = run_in(work.path(), &args, &[]);
        assert_exit(&o, 2);
        assert!(stderr(&o).contains(says), "{args:?}: {}", stderr(&o));
    }
    assert_only(work.path(), &["a", "b", "c", "d", "e", "-f"]);
}

#[test]
fn each_command_takes_its_own_options() {
    let reg = Registry::start(Auth::None);
    reg.push_image("demo/app", "v1", &Image::new("amd64", vec![gz_layer(&[("f", b"x")])]));
    let work = TempDir::new("cli-own");
    let r = format!("{}/demo/app:v1", reg.host);
    let local = [("NO_PROXY", "127.0.0.1")];
    assert_exit(&run_in(work.path(), &["--plain-http", "-q", &r, "out"], &local), 0);
    for (args, says) in [
        (
            vec!["ls", "--plain-http", "--unpack", "/x", "out"],
            "`minipull ls` does not take --plain-http",
        ),
        (
            vec!["--unpack", "/x", "ls", "out"],
            "`minipull ls` does not take --unpack",
        ),
        (
            vec!["gc", "--platform", "linux/amd64", "out"],
            "it is an option of: pull, unpack, config",
        ),
        (vec!["rm", "--keep-partials", "out:v1"], "does not take --keep-partials"),
        (vec!["unpack", "--unpack", "r", "out", "r"], "does not take --unpack"),
        (vec!["--keep-partials", &r, "out"], "it is an option of: gc"),
        (vec!["--force", &r, "out"], "--force needs --unpack ROOTFS"),
        (
            vec!["check", "--verify-key", "k.pem", &r, "out"],
            "does not take --verify-key",
        ),
    ] {
        let o = run_in(work.path(), &args, &local);
        assert_exit(&o, 2);
        assert!(stderr(&o).contains(says), "{args:?}: {}", stderr(&o));
    }
    assert_only(work.path(), &["out"]);
    // A key that cannot be read matters only to the commands that verify.
    let key = [
        ("MINIPULL_VERIFY_KEY", "/nonexistent/key.pem"),
        ("NO_PROXY", "127.0.0.1"),
    ];
    assert_exit(&run_in(work.path(), &["ls", "out"], &key), 0);
    assert_exit(&run_in(work.path(), &["--plain-http", "check", &r, "out"], &key), 0);
    assert_exit(&run_in(work.path(), &["gc", "out"], &key), 0);
    assert_exit(&run_in(work.path(), &["--plain-http", &r, "out"], &key), 2);
}

/// The option names a help text lists.
fn listed_options(help: &str) -> Vec<String> {
    help.lines()
        .filter(|l| l.starts_with("  -"))
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("--")))
        .map(|w| w.trim_end_matches(',').to_string())
        .collect()
}

const COMMANDS: [&str; 11] = [
    "pull", "check", "unpack", "config", "ls", "rm", "gc", "inspect", "tags", "extract", "export",
];

/// docs/options.md from the helps: the table, then each help verbatim.
/// The options only a build with the `delta` feature has (docs/delta.md
/// documents them; the generated pages describe the default build).
const DELTA_ONLY: [&str; 2] = ["--no-delta", "--reuse-from"];

/// `help` as the default build prints it: without the blocks of [`DELTA_ONLY`].
fn default_build_help(help: String) -> String {
    if !cfg!(feature = "delta") {
        return help;
    }
    let mut out = String::new();
    let mut skipping = false;
    for line in help.split_inclusive('\n') {
        let option = line.trim_start().split([' ', '\n']).next().unwrap_or("");
        if line.starts_with("  -") {
            skipping = DELTA_ONLY.contains(&option);
        } else if !line.starts_with("    ") {
            skipping = false;
        }
        if !skipping {
            out.push_str(line);
        }
    }
    out
}

fn options_doc(intro: &str) -> String {
    let help = |args: &[&str]| {
        let o = minipull(args, None);
        assert_exit(&o, 0);
        default_build_help(stdout(&o))
    };
    let overview = help(&["--help"]);
    let globals = listed_options(overview.split("GLOBAL OPTIONS").nth(1).unwrap());
    let helps: Vec<String> = COMMANDS.iter().map(|c| help(&[c, "--help"])).collect();
    let mut rows: Vec<String> = Vec::new();
    for h in &helps {
        for o in listed_options(h) {
            if !rows.contains(&o) {
                rows.push(o);
            }
        }
    }
    let mut s = intro.to_string();
    s.push_str("| option | global | ");
    s.push_str(&COMMANDS.join(" | "));
    s.push_str(" |\n|---|---|");
    s.push_str(&"---|".repeat(COMMANDS.len()));
    s.push('\n');
    for o in &rows {
        let g = if globals.contains(o) { "yes" } else { "" };
        s.push_str(&format!("| `{o}` | {g} |"));
        for h in &helps {
            s.push_str(if listed_options(h).contains(o) { " ✓ |" } else { " |" });
        }
        s.push('\n');
    }
    s.push_str("\n## minipull --help\n\n```\n");
    s.push_str(&overview);
    s.push_str("```\n");
    for (c, h) in COMMANDS.iter().zip(&helps) {
        s.push_str(&format!("\n## minipull {c} --help\n\n```\n{h}```\n"));
    }
    s
}

#[test]
fn each_command_has_its_own_help_and_docs_hold_it() {
    let mut helps = Vec::new();
    for c in COMMANDS {
        let o = minipull(&[c, "--help"], None);
        assert_exit(&o, 0);
        let h = stdout(&o);
        assert!(h.starts_with(&format!("minipull {c}: ")), "{h}");
        assert_eq!(stdout(&minipull(&["help", c], None)), h, "help {c}");
        assert!(!helps.contains(&h), "{c}'s help is another command's");
        for line in h.lines() {
            assert!(line.chars().count() <= 80, "{c} --help: a line over 80 columns: {line}");
        }
        helps.push(h);
    }
    // `minipull REF OUTDIR --help` is pull's.
    assert_eq!(stdout(&minipull(&["alpine", "out", "--help"], None)), helps[0]);
    // docs/options.md is generated from the helps (MINIPULL_BLESS=1 rewrites
    // it), so neither can drift.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/options.md");
    let doc = std::fs::read_to_string(&path).unwrap_or_default();
    const MARK: &str =
        "<!-- generated from --help by tests/cli.rs; MINIPULL_BLESS=1 cargo test --test cli rewrites it -->\n\n";
    let intro = match doc.split_once(MARK) {
        Some((intro, _)) => format!("{intro}{MARK}"),
        None => format!("# Options\n\n{MARK}"),
    };
    let want = options_doc(&intro);
    if std::env::var_os("MINIPULL_BLESS").is_some() {
        std::fs::write(&path, &want).unwrap();
        return;
    }
    assert!(
        doc == want,
        "docs/options.md differs from the helps; run MINIPULL_BLESS=1 cargo test --test cli"
    );
}

/// The partial-update options exist only in a build with the `delta`
/// feature; the default build does not know them.
#[test]
fn delta_options_only_with_the_delta_feature() {
    let help = stdout(&minipull(&["pull", "--help"], None));
    for (o, value) in DELTA_ONLY.iter().zip([None, Some("/nonexistent/reuse")]) {
        assert_eq!(help.contains(o), cfg!(feature = "delta"), "{o} in pull --help:\n{help}");
        let mut args = vec![*o];
        args.extend(value);
        args.extend([
            "--retry-for",
            "0",
            "--unpack",
            "/nonexistent/root",
            "127.0.0.1:1/a:b",
            "/nonexistent/out",
        ]);
        let out = minipull(&args, None);
        if cfg!(feature = "delta") {
            assert!(!stderr(&out).contains("unknown option"), "{o}: {}", stderr(&out));
        } else {
            assert_exit(&out, 2);
            assert!(stderr(&out).contains("unknown option"), "{o}: {}", stderr(&out));
        }
    }
    assert!(!default_build_help(help).contains("--reuse-from"));
}

/// Each command's page in docs/ holds its `--help` verbatim, between the
/// markers (MINIPULL_BLESS=1 rewrites the block), so they cannot drift.
#[test]
fn each_command_page_holds_its_help_verbatim() {
    let bless = std::env::var_os("MINIPULL_BLESS").is_some();
    let mut stale = Vec::new();
    for c in COMMANDS {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("docs/{c}.md"));
        let doc = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("docs/{c}.md: {e}"));
        let begin = format!("<!-- `minipull {c} --help`, checked by tests/cli.rs; MINIPULL_BLESS=1 cargo test --test cli rewrites it -->\n");
        const END: &str = "<!-- end of help -->";
        let (head, rest) = doc
            .split_once(&begin)
            .unwrap_or_else(|| panic!("docs/{c}.md has no help block"));
        let (_, tail) = rest
            .split_once(END)
            .unwrap_or_else(|| panic!("docs/{c}.md: the help block does not end"));
        let help = default_build_help(stdout(&minipull(&[c, "--help"], None)));
        let want = format!("{head}{begin}```text\n{help}```\n{END}{tail}");
        if want != doc {
            if bless {
                std::fs::write(&path, &want).unwrap();
            } else {
                stale.push(c);
            }
        }
    }
    assert!(
        stale.is_empty(),
        "docs/ pages of {stale:?} differ from --help; run MINIPULL_BLESS=1 cargo test --test cli"
    );
}

/// An image with one 8 MiB layer (the progress line shows for blobs over
/// 4 MiB), to pull at 2 MiB/s: about four seconds, three redraws.
fn push_big(reg: &Registry) -> String {
    let layer = Layer {
        media_type: OCI_LAYER_GZIP,
        tar: Vec::new(),
        blob: noise(8 << 20, 7),
    };
    reg.push_image("demo/big", "v1", &Image::new("amd64", vec![layer]));
    format!("{}/demo/big:v1", reg.host)
}

/// Run minipull with stderr on a pseudo-terminal of `cols` columns under
/// `TERM=term`; returns the exit code and every byte it wrote there (raw
/// mode: no \n to \r\n translation, so the bytes are minipull's own).
fn run_pty(args: &[&str], cols: u16, term: &str) -> (Option<i32>, Vec<u8>) {
    use std::io::Read;
    use std::os::fd::FromRawFd;
    let (mut master, mut slave) = (0, 0);
    let ws = libc::winsize {
        ws_row: 24,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty fills the two descriptors; the termios we pass is our own.
    unsafe {
        assert_eq!(
            libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), &ws),
            0
        );
        let mut t: libc::termios = std::mem::zeroed();
        assert_eq!(libc::tcgetattr(slave, &mut t), 0);
        libc::cfmakeraw(&mut t);
        assert_eq!(libc::tcsetattr(slave, libc::TCSANOW, &t), 0);
    }
    let (mut master, slave) = unsafe { (std::fs::File::from_raw_fd(master), std::fs::File::from_raw_fd(slave)) };
    let mut cmd = Command::new(minipull_bin());
    cmd.args(args)
        .env("TERM", term)
        .env("HOME", "/nonexistent-minipull-home")
        .env_remove("DOCKER_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(slave));
    let mut child = cmd.spawn().unwrap();
    // Our copy of the terminal side closes: reading ends when minipull's does.
    drop(cmd);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = master.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    (child.wait().unwrap().code(), out)
}

#[test]
fn progress_line_fits_the_terminal_and_dumb_terminals_get_plain_lines() {
    let reg = Registry::start(Auth::None);
    let r = push_big(&reg);
    let work = TempDir::new("cli-pty");
    for cols in [80u16, 40] {
        let out = work.join(&format!("o{cols}"));
        let (code, bytes) = run_pty(
            &["--plain-http", "--limit-rate", "2M", &r, out.to_str().unwrap()],
            cols,
            "xterm",
        );
        let text = String::from_utf8_lossy(&bytes);
        assert_eq!(code, Some(0), "{text}");
        // A redraw is `\r\x1b[K` and a line without its `\n` (a line that
        // ends in one is a note, written once): each within the width.
        let redraws: Vec<&str> = text
            .split("\r\x1b[K")
            .skip(1)
            .filter(|seg| !seg.is_empty() && !seg.contains('\n'))
            .collect();
        assert!(redraws.len() >= 2, "{cols} columns: {text:?}");
        for line in &redraws {
            assert!(line.chars().count() < cols as usize, "{cols} columns: {line:?}");
            assert!(line.contains("layer") && line.contains('%'), "{line:?}");
            assert!(!line.contains('\x1b'), "{line:?}");
        }
        if cols == 80 {
            assert!(
                redraws.iter().all(|l| l.starts_with("minipull: ") && l.contains("/s")),
                "{redraws:?}"
            );
        }
    }
    let out = work.join("dumb");
    let (code, bytes) = run_pty(
        &["--plain-http", "--limit-rate", "2M", &r, out.to_str().unwrap()],
        80,
        "dumb",
    );
    let text = String::from_utf8_lossy(&bytes);
    assert_eq!(code, Some(0), "{text}");
    assert!(!text.contains('\r') && !text.contains('\x1b'), "{text:?}");
    assert!(text.ends_with('\n'), "{text:?}");
    for line in text.lines() {
        assert!(line.starts_with("minipull: "), "{line:?}");
    }
    assert!(text.lines().filter(|l| l.contains('%')).count() >= 2, "{text}");
}

#[test]
fn an_interrupt_says_what_is_kept_and_the_same_command_resumes() {
    use std::io::{BufRead, BufReader};
    let reg = Registry::start(Auth::None);
    let r = push_big(&reg);
    let work = TempDir::new("cli-signal");
    let out = work.join("out");
    let args = ["--plain-http", "--limit-rate", "2M", r.as_str(), out.to_str().unwrap()];
    for (sig, code) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        let mut child = Command::new(minipull_bin())
            .args(args)
            .env("HOME", "/nonexistent-minipull-home")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut seen = Vec::new();
        // Off a terminal, a progress line is a plain line too, with the prefix.
        for line in lines.by_ref() {
            let line = line.unwrap();
            assert!(line.starts_with("minipull: ") && !line.contains('\r'), "{line:?}");
            let progress = line.contains('%');
            seen.push(line);
            if progress {
                break;
            }
        }
        // SAFETY: a signal to the child we started.
        unsafe { libc::kill(child.id() as i32, sig) };
        let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(code), "{seen:?} {rest:?}");
        let last = rest.last().cloned().unwrap_or_default();
        assert!(
            last.starts_with("minipull: interrupted: what was downloaded stays in")
                && last.contains("the same command resumes"),
            "{seen:?} {rest:?}"
        );
    }
    let o = minipull(&args, None);
    assert_exit(&o, 0);
    assert!(stderr(&o).contains("resuming at"), "{}", stderr(&o));
    assert_index_points_at_blobs(&out);
}

// Part of it unpacks (the suite also runs without the unpack feature).
#[cfg(feature = "unpack")]
#[test]
fn messages_point_the_right_way() {
    let reg = Registry::start(Auth::None);
    reg.push_image("demo/app", "v1", &Image::new("amd64", vec![gz_layer(&[("f", b"x")])]));
    // An OCI artifact: a config of another type, no rootfs.
    let chart = Image {
        config: Some(b"{\"name\":\"chart\"}".to_vec()),
        config_type: Some("application/vnd.cncf.helm.config.v1+json"),
        ..Image::new("amd64", vec![gz_layer(&[("Chart.yaml", b"name: chart\n")])])
    };
    reg.push_image("demo/chart", "1.0", &chart);
    let work = TempDir::new("cli-messages");
    let local = [("NO_PROXY", "127.0.0.1")];
    let r = format!("{}/demo/app:v1", reg.host);

    // A default auth file that cannot be read (here a directory) is a
    // warning: no login was needed.
    let home = work.join("home");
    std::fs::create_dir_all(home.join(".docker/config.json")).unwrap();
    let home_env = [("NO_PROXY", "127.0.0.1"), ("HOME", home.to_str().unwrap())];
    let o = run_in(work.path(), &["--plain-http", &r, "out"], &home_env);
    assert_exit(&o, 0);
    assert!(
        stderr(&o).contains("warning: cannot read the auth file"),
        "{}",
        stderr(&o)
    );
    // Given explicitly, it is an error.
    let file = home.join(".docker/config.json");
    let o = run_in(
        work.path(),
        &["--plain-http", "--auth-file", file.to_str().unwrap(), &r, "out"],
        &local,
    );
    assert_exit(&o, 2);

    // One layer, one entry: no "1 layers".
    let o = run_in(work.path(), &["unpack", "out", "root"], &[]);
    assert_exit(&o, 0);
    assert!(stderr(&o).contains("unpacked 1 layer ("), "{}", stderr(&o));
    let o = run_in(work.path(), &["rm", "out:v1"], &[]);
    assert_exit(&o, 0);
    assert!(stderr(&o).contains("(1 entry)"), "{}", stderr(&o));

    // A digest reference is printed with its @.
    let zeros = "0".repeat(64);
    let missing = format!("{}/demo/app@sha256:{zeros}", reg.host);
    let o = run_in(work.path(), &["--plain-http", &missing, "out"], &local);
    assert_exit(&o, 3);
    assert!(
        stderr(&o).contains(&format!("demo/app@sha256:{zeros}")),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("demo/app:sha256:"), "{}", stderr(&o));

    // An artifact is not unpacked as if it were a broken image.
    let c = format!("{}/demo/chart:1.0", reg.host);
    let o = run_in(
        work.path(),
        &["--plain-http", "--unpack", "croot", &c, "charts"],
        &local,
    );
    assert_exit(&o, 2);
    let says = "is not a container image: its config is of type \"application/vnd.cncf.helm.config.v1+json\"";
    assert!(stderr(&o).contains(says), "{}", stderr(&o));
    let o = run_in(work.path(), &["unpack", "charts", "croot"], &[]);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains(says), "{}", stderr(&o));

    // A layout another tool wrote: the content is there, the reference is not recorded.
    assert_exit(&run_in(work.path(), &["--plain-http", "-q", &r, "other"], &local), 0);
    let index_path = work.join("other").join("index.json");
    let mut index = read_json(&index_path);
    for m in index["manifests"].as_array_mut().unwrap() {
        m["annotations"]
            .as_object_mut()
            .unwrap()
            .remove("io.containerd.image.name");
    }
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    let o = run_in(work.path(), &["--plain-http", "check", &r, "other"], &local);
    assert_exit(&o, 10);
    assert!(
        stderr(&o).contains("but no entry records the reference"),
        "{}",
        stderr(&o)
    );
}

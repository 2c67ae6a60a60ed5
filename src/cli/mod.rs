//! The top-level run; the command line is parsed in [`args`] (one table of
//! options); one file per command:
//!
//! - [`pull`]: `minipull REF OUTDIR` (and `--unpack`);
//! - [`unpack`]: `minipull unpack` and `minipull config`, on a layout on disk;
//! - [`upkeep`]: `minipull ls`, `rm` and `gc`;
//! - [`check`]: `minipull check REF OUTDIR`, is there an update;
//! - [`inspect`]: `minipull inspect REF`, an image without pulling it;
//! - [`tags`]: `minipull tags REPO`, a repository's tags;
//! - [`extract`]: `minipull extract`, an artifact's layers as files;
//! - [`export`]: `minipull export`, an OCI archive for other tools;
//! - [`connect`]: credentials, TLS, mirrors: what talking to a registry needs.

mod args;
mod check;
mod connect;
mod export;
mod extract;
mod inspect;
mod pull;
mod tags;
mod unpack;
mod upkeep;

use crate::auth::{self, Credentials};
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::manifest::Platform;
use crate::mirror::{self, MirrorSpec, Sources};
use crate::progress::Progress;
use crate::pull::PullOptions;
use crate::reference::Reference;
use crate::registry::{self, Client, Options};
use crate::tls::{self, TlsOptions};
pub(crate) use args::Command;
use args::{Given, Parsed};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What the command line asks for, typed for the commands.
pub(crate) struct Args {
    pub(crate) command: Command,
    /// Every option given, for options read where they are used
    /// (`args.opts.last("--lock-wait")`).
    #[allow(dead_code)]
    pub(crate) opts: Given,
    pub(crate) reference: String,
    pub(crate) outdir: PathBuf,
    /// `minipull REF OUTDIR:NAME`: the name index.json gives the image.
    pub(crate) name: Option<String>,
    pub(crate) platform: Option<String>,
    pub(crate) all_platforms: bool,
    pub(crate) username: Option<String>,
    pub(crate) password_stdin: bool,
    pub(crate) auth_file: Option<PathBuf>,
    pub(crate) mirrors: Vec<String>,
    pub(crate) mirror_for: Vec<String>,
    pub(crate) plain_http: bool,
    pub(crate) ca_files: Vec<PathBuf>,
    pub(crate) insecure: bool,
    pub(crate) time_floor: Option<PathBuf>,
    pub(crate) retries: u32,
    pub(crate) retries_explicit: bool,
    pub(crate) retry_for: u64,
    pub(crate) timeout: u64,
    pub(crate) speed_limit: u64,
    pub(crate) speed_time: u64,
    pub(crate) verify: bool,
    pub(crate) verify_keys: Vec<PathBuf>,
    pub(crate) verify_identity: Option<String>,
    pub(crate) no_downgrade: bool,
    pub(crate) prune: bool,
    pub(crate) discard_layers: bool,
    #[cfg(feature = "delta")]
    pub(crate) no_delta: bool,
    #[cfg(feature = "delta")]
    pub(crate) reuse_from: Option<PathBuf>,
    pub(crate) keep_partials: bool,
    pub(crate) limit_rate: Option<u64>,
    pub(crate) json: bool,
    pub(crate) quiet: bool,
    /// ROOTFS for `--unpack` and `minipull unpack`; DIR for `extract`, FILE for `export`.
    pub(crate) unpack: Option<PathBuf>,
    #[cfg_attr(not(feature = "unpack"), allow(dead_code))]
    pub(crate) force: bool,
    #[cfg_attr(not(feature = "unpack"), allow(dead_code))]
    pub(crate) keep_old: bool,
    #[cfg_attr(not(feature = "unpack"), allow(dead_code))]
    pub(crate) keep_setuid: bool,
    #[cfg_attr(not(feature = "unpack"), allow(dead_code))]
    pub(crate) keep_xattrs: Vec<String>,
    /// How long to wait for another minipull holding OUTDIR's or ROOTFS's lock.
    pub(crate) lock_wait: Duration,
}

/// The options of `minipull REF OUTDIR` that only mean something with `--unpack`.
const UNPACK_ONLY: &[&str] = &[
    "--force",
    #[cfg(feature = "delta")]
    "--no-delta",
    #[cfg(feature = "delta")]
    "--reuse-from",
    "--keep-old",
    "--keep-setuid",
    "--discard-layers",
    "--keep-xattrs",
];

fn parse_args() -> Result<std::result::Result<Args, i32>> {
    let (command, operands, g) = match args::parse(std::env::args_os().skip(1).collect())? {
        Parsed::Print(s) => {
            // A closed stdout (`| head`) is no failure of help.
            let _ = std::io::stdout().write_all(s.as_bytes());
            return Ok(Err(0));
        }
        Parsed::Synopsis => {
            eprint!("{}\nminipull --help tells more.\n", args::synopsis());
            return Ok(Err(2));
        }
        Parsed::Run(c, ops, g) => (c, ops, g),
    };
    let text = |o: &std::ffi::OsString, what: &str| {
        o.to_str()
            .map(str::to_string)
            .ok_or_else(|| Error::usage(format!("{what} is not valid UTF-8")))
    };
    let (reference, outdir, unpack) = match command {
        Command::Pull | Command::Check => {
            let r = text(&operands[0], "the image reference")?;
            // skopeo's transport prefix names what a reference is anyway.
            let r = r.strip_prefix("docker://").unwrap_or(&r).to_string();
            (r, PathBuf::from(&operands[1]), g.path("--unpack"))
        }
        Command::Inspect if g.flag("--layout") => (String::new(), PathBuf::from(&operands[0]), None),
        Command::Inspect | Command::Tags => {
            let r = text(&operands[0], "the image reference")?;
            (
                r.strip_prefix("docker://").unwrap_or(&r).to_string(),
                PathBuf::new(),
                None,
            )
        }
        Command::Unpack | Command::Extract | Command::Export => (
            String::new(),
            PathBuf::from(&operands[0]),
            Some(PathBuf::from(&operands[1])),
        ),
        // OUTDIR[:NAME] stays an OS string until it is split.
        _ => (String::new(), PathBuf::from(&operands[0]), None),
    };
    if command == Command::Pull && unpack.is_none() {
        if let Some(o) = UNPACK_ONLY.iter().find(|o| g.flag(o)) {
            return Err(Error::usage(format!("{o} needs --unpack ROOTFS")));
        }
    }
    // `REF OUTDIR:NAME`: the entry's name, never a directory named `o1:stable`.
    let (outdir, name) = match command {
        Command::Pull => split_pull_outdir(&outdir)?,
        _ => (outdir, None),
    };
    let limit_rate = g.bytes("--limit-rate")?;
    if limit_rate == Some(0) {
        return Err(Error::usage("--limit-rate must be above 0"));
    }
    let args = Args {
        command,
        reference,
        outdir,
        name,
        unpack,
        platform: g.text("--platform")?,
        all_platforms: g.flag("--all-platforms"),
        username: g.text("--username")?,
        password_stdin: g.flag("--password-stdin"),
        auth_file: g.path("--auth-file"),
        mirrors: g.texts("--mirror")?,
        mirror_for: g.texts("--mirror-for")?,
        plain_http: g.flag("--plain-http"),
        ca_files: g.paths("--ca-file"),
        insecure: g.flag("--insecure"),
        // Given, --retries bounds unreachable sources too (see --retry-for).
        retries_explicit: g.flag("--retries"),
        retries: g.number("--retries", 5)?.min(100) as u32,
        retry_for: g.number("--retry-for", 60)?.min(86_400),
        timeout: g.number("--timeout", 30)?,
        speed_limit: g.bytes("--speed-limit")?.unwrap_or(1024),
        speed_time: g.number("--speed-time", 30)?,
        verify: g.flag("--verify"),
        verify_keys: g.paths("--verify-key"),
        verify_identity: g.text("--verify-identity")?,
        no_downgrade: g.flag("--no-downgrade"),
        prune: g.flag("--prune"),
        discard_layers: g.flag("--discard-layers"),
        #[cfg(feature = "delta")]
        no_delta: g.flag("--no-delta"),
        #[cfg(feature = "delta")]
        reuse_from: g.path("--reuse-from"),
        keep_partials: g.flag("--keep-partials"),
        limit_rate,
        force: g.flag("--force"),
        keep_setuid: g.flag("--keep-setuid"),
        keep_old: g.flag("--keep-old"),
        keep_xattrs: g.texts("--keep-xattrs")?,
        // Unbounded by default: a holder is a live minipull (flock ends with it).
        lock_wait: Duration::from_secs(g.number("--lock-wait", 1 << 31)?.min(1 << 31)),
        time_floor: g.path("--time-floor"),
        json: g.flag("--json"),
        quiet: g.flag("--quiet"),
        opts: g,
    };
    if args.keep_xattrs.iter().any(String::is_empty) {
        return Err(Error::usage("--keep-xattrs takes a namespace prefix such as trusted.").hint("see minipull --help"));
    }
    if let Some(rate) = args.limit_rate {
        if args.speed_limit >= rate {
            return Err(Error::usage(format!(
                "--limit-rate {rate} is not above the speed floor (--speed-limit {}): every download would be abandoned as too slow",
                args.speed_limit
            )));
        }
    }
    if args.timeout == 0 || args.speed_time == 0 {
        return Err(Error::usage("--timeout and --speed-time must be at least 1 second"));
    }
    Ok(Ok(args))
}

#[cfg(feature = "unpack")]
impl Args {
    /// What the unpack keeps beyond its defaults.
    pub(crate) fn keep(&self) -> crate::unpack::Keep {
        crate::unpack::Keep {
            setuid: self.keep_setuid,
            xattrs: self.keep_xattrs.clone(),
        }
    }
}

/// Parse the command line and run the command. Returns the process exit code.
pub fn run() -> Result<i32> {
    let args = match parse_args()? {
        Ok(args) => args,
        Err(code) => return Ok(code),
    };
    // Only the commands that verify read keys (a key that cannot be used is a
    // usage error before any network access), and only those that choose a
    // platform parse one.
    let verifies = matches!(args.command, Command::Pull | Command::Unpack | Command::Config);
    let policy = match verifies {
        true => crate::verify::Policy::load(
            &args.verify_keys,
            std::env::var("MINIPULL_VERIFY_KEY").ok(),
            args.verify_identity.clone(),
            crate::verify::KeylessArgs {
                sans: args.opts.texts("--certificate-identity")?,
                issuers: args.opts.texts("--certificate-oidc-issuer")?,
                root: args.opts.path("--trusted-root"),
            }
            .with_env(|k| std::env::var(k).ok()),
        )?,
        false => None,
    };
    let platform = match &args.platform {
        Some(p) => Platform::parse(p)?,
        None => Platform::host(),
    };
    let code = match args.command {
        Command::Pull => pull::pull_command(&args, platform, policy),
        Command::Check => check::check_command(&args),
        Command::Ls => upkeep::ls_command(&args),
        Command::Rm => upkeep::rm_command(&args),
        Command::Gc => upkeep::gc_command(&args),
        Command::Inspect => inspect::inspect_command(&args),
        Command::Tags => tags::tags_command(&args),
        Command::Unpack | Command::Config => unpack::local_command(&args, &platform, policy.as_ref()),
        Command::Extract => extract::extract_command(&args, &platform),
        Command::Export => export::export_command(&args),
    }?;
    // Only once the run succeeded: what it verified is then worth keeping.
    connect::raise_time_floor(&args, Progress::new(args.quiet));
    Ok(code)
}

/// Say that the run failed: on stderr, and with `--json` as JSON on stdout
/// too. Returns the exit code.
pub fn fail(e: &Error) -> i32 {
    let code = e.kind.exit_code();
    eprintln!("minipull: error: {e}");
    // The command line may be what failed to parse: look for the flag itself.
    let json = std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json");
    if json {
        let v = serde_json::json!({"error": {"exitCode": code, "message": e.message, "hint": e.hint}});
        print_json(&v, false);
    }
    code
}

/// `v` on stdout, one line (or pretty), with every control character a
/// `\u` escape: serde_json leaves DEL and the C1 controls raw. (Raw
/// newlines are the pretty layout's own; those in strings are escaped.)
pub(crate) fn print_json(v: &serde_json::Value, pretty: bool) {
    let text = match pretty {
        true => format!("{v:#}"),
        false => v.to_string(),
    };
    let mut clean = String::with_capacity(text.len());
    for c in text.chars() {
        match c.is_control() && c != '\n' {
            true => clean += &format!("\\u{:04x}", c as u32),
            false => clean.push(c),
        }
    }
    // A closed stdout (`| head`) is not worth failing a finished run for.
    let _ = writeln!(std::io::stdout(), "{clean}");
}

/// `OUTDIR[:NAME]`: a directory that exists as given is OUTDIR; otherwise the
/// text after the last `:` names the image.
pub(crate) fn split_layout_arg(p: &Path) -> (PathBuf, Option<String>) {
    if !p.is_dir() {
        if let Some((dir, name)) = p.to_str().and_then(|s| s.rsplit_once(':')) {
            if !name.is_empty() && !name.contains('/') && Path::new(dir).is_dir() {
                return (PathBuf::from(dir), Some(name.to_string()));
            }
        }
    }
    (p.to_path_buf(), None)
}

/// Pull's `OUTDIR[:NAME]`: a directory that exists as given is OUTDIR;
/// otherwise a `:` in the last path component ends OUTDIR and starts the
/// name the image gets (OUTDIR may not exist yet).
fn split_pull_outdir(p: &Path) -> Result<(PathBuf, Option<String>)> {
    let Some(s) = p.to_str().filter(|_| !p.is_dir()) else {
        return Ok((p.to_path_buf(), None));
    };
    let Some((dir, name)) = s.rsplit_once(':').filter(|(_, n)| !n.contains('/')) else {
        return Ok((p.to_path_buf(), None));
    };
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    let valid = name.len() <= 128
        && alnum(name.chars().next())
        && alnum(name.chars().last())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-._@+".contains(c))
        // cosign's tags name signatures (`sha256-<hex>.sig`).
        && !name.starts_with("sha256-")
        && !name.starts_with("sha512-");
    if dir.is_empty() || !valid {
        return Err(Error::usage(format!("{} is not OUTDIR:NAME", crate::error::Quoted(s))).hint(
            "NAME is letters, digits and . _ - + @ (at most 128, starting and ending with a letter or digit), e.g. OUTDIR:stable",
        ));
    }
    Ok((PathBuf::from(dir), Some(name.to_string())))
}

//! Command line parsing and the top-level run; one file per command:
//!
//! - [`pull`]: `minipull REF OUTDIR` (and `--unpack`);
//! - [`unpack`]: `minipull unpack` and `minipull config`, on a layout on disk;
//! - [`upkeep`]: `minipull ls`, `rm` and `gc`;
//! - [`check`]: `minipull check REF OUTDIR`, is there an update;
//! - [`connect`]: credentials, TLS, mirrors: what talking to a registry needs.

mod check;
mod connect;
mod pull;
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
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const USAGE: &str = "\
minipull: pull a container image into an OCI image layout

USAGE:
    minipull [OPTIONS] REF OUTDIR
    minipull [OPTIONS] --unpack ROOTFS REF OUTDIR   pull, then unpack into ROOTFS
    minipull unpack [--platform P] [--force] [--verify-key K] OUTDIR[:NAME] ROOTFS
                                    unpack an image already in OUTDIR (no network)
    minipull config OUTDIR[:NAME]   print the image config (Entrypoint, Cmd, Env...)
    minipull ls OUTDIR              list the images in OUTDIR (--json)
    minipull rm OUTDIR:NAME         drop an image from index.json (blobs stay until gc)
    minipull gc [--keep-partials] OUTDIR
                                    remove blobs nothing needs and stale partial downloads
    minipull check REF OUTDIR       is there an update? one manifest HEAD; exit 0: no,
                                    10: yes (or REF is not in OUTDIR yet)

ARGS:
    REF       image reference: alpine, alpine:3.20, ghcr.io/org/repo:tag,
              host:5000/a/b@sha256:<hex>
    OUTDIR    OCI layout directory to create or add to

OPTIONS:
    --platform OS/ARCH[/VARIANT]  platform to pull from a multi-platform image
                                  (default: the one minipull runs on)
    --all-platforms               keep the whole index and pull every platform
    --username USER               log in as USER (the password comes from stdin)
    --password-stdin              read the password from the first line of stdin
    --auth-file PATH              docker config.json or podman auth.json with credentials
                                  (default: $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/
                                  auth.json, ~/.config/containers/auth.json,
                                  $DOCKER_CONFIG/config.json, ~/.docker/config.json);
                                  credHelpers, credsStore and identitytoken work
    --mirror [http://]HOST[:PORT][/PREFIX]
                                  try this mirror first (repeatable, in order; falls back
                                  to the next and then to the registry; $MINIPULL_MIRROR
                                  takes a comma-separated list)
    --mirror-for REGISTRY         registries the mirrors serve (repeatable; default
                                  docker.io; $MINIPULL_MIRROR_FOR)
    --plain-http                  talk plain HTTP to the registry
    --ca-file PATH                also trust the CA certificates in this PEM file
                                  (repeatable; built-in and system roots stay trusted)
    --insecure                    do not verify TLS certificates (warns; digests are
                                  still checked)
    --time-floor FILE             judge TLS certificates no earlier than the time in FILE
                                  (decimal seconds since 1970; owned by root, writable by
                                  no one else); a successful pull or check raises it to
                                  the newest time that run verified (never to the clock)
    --retries N                   attempts after a failure that got an answer (default 5;
                                  given, it also bounds retries of an unreachable source)
    --retry-for SECS              keep trying a registry or mirror that does not answer
                                  (refused, no route, no DNS) this long (default 60; 0: fail)
    --timeout SECS                connect timeout and longest wait for data (default 30)
    --speed-limit BYTES           abandon and resume a download slower than this
    --speed-time SECS               many bytes a second for this long (default 1024, 30)
    --unpack ROOTFS               after the pull, apply the image's layers into ROOTFS
                                  (whiteouts, links, modes; owners and devices as root)
    --force                       replace a ROOTFS that is not empty (atomically: the
                                  new tree is staged beside it, then swapped in)
    --keep-old                    keep the replaced tree as ROOTFS.old (A/B switching)
    --keep-setuid                 keep setuid/setgid bits when not unpacking as root
                                  (dropped by default: owners are not applied then)
    --keep-xattrs PREFIX          also apply extended attributes under PREFIX (repeatable;
                                  default: security.capability, security.ima, security.evm,
                                  user.*, POSIX ACLs; trusted.overlay.* only when named)
    --verify                      re-hash blobs already in OUTDIR before trusting them
    --prune                       after the pull (and unpack), remove the blobs only the
                                  replaced version of this image used
    --discard-layers              with --unpack: remove each layer once unpacked (the entry
                                  then holds manifests and config only; other tools cannot
                                  read it)
    --lock-wait SECS              wait at most this long for another minipull using OUTDIR
                                  or ROOTFS (default: as long as it runs)
    --limit-rate BYTES            cap the average download rate (k, M, G suffixes)
    --verify-key PATH             accept only images with a cosign signature by this PEM
                                  public key (repeatable: any one suffices; ECDSA P-256,
                                  P-384, Ed25519; $MINIPULL_VERIFY_KEY, colon-separated);
                                  checked before any layer is downloaded, and by
                                  `minipull unpack --verify-key` offline
    --verify-identity REPO        also require the signature to name this repository
    --no-downgrade                refuse (exit 8) an image whose config is older than the
                                  one OUTDIR already holds under the same name
    --json                        print a JSON summary on stdout instead of the digest
    -q, --quiet                   no progress on stderr (warnings and errors remain)
    -h, --help                    print this help
    -V, --version                 print the version

ENVIRONMENT:
    MINIPULL_USERNAME, MINIPULL_PASSWORD   credentials for the registry (not mirrors)
    HTTPS_PROXY, HTTP_PROXY, NO_PROXY      proxies (lowercase too)
    SSL_CERT_FILE, SSL_CERT_DIR            the system's CA certificates

EXIT CODES:
    0 ok, 1 other error, 2 usage or invalid reference, 3 not found,
    4 authentication refused, 5 network, 6 integrity, 7 local storage,
    8 untrusted (no valid signature with --verify-key),
    9 pulled and installed, but the upkeep after it failed (--prune, removing
      the old tree; warnings say what): ROOTFS holds the new image,
    10 (check) an update is available
";

/// What the command line asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    Pull,
    Check,
    Ls,
    Rm,
    Gc,
    Unpack,
    Config,
}

pub(crate) struct Args {
    pub(crate) command: Command,
    pub(crate) reference: String,
    pub(crate) outdir: PathBuf,
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
    pub(crate) keep_partials: bool,
    pub(crate) limit_rate: Option<u64>,
    pub(crate) json: bool,
    pub(crate) quiet: bool,
    /// ROOTFS for `--unpack` and `minipull unpack`.
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

fn parse_args() -> Result<Option<Args>> {
    let mut argv: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let command = match argv.first().and_then(|s| s.to_str()) {
        Some("unpack") => Command::Unpack,
        Some("config") => Command::Config,
        Some("check") => Command::Check,
        Some("ls") => Command::Ls,
        Some("rm") => Command::Rm,
        Some("gc") => Command::Gc,
        _ => Command::Pull,
    };
    // Given, --retries bounds unreachable sources too (see --retry-for).
    let retries_explicit = argv
        .iter()
        .any(|s| s == "--retries" || s.to_str().is_some_and(|s| s.starts_with("--retries=")));
    if command != Command::Pull {
        argv.remove(0);
    }
    let mut a = pico_args::Arguments::from_vec(argv);
    if a.contains(["-h", "--help"]) {
        print!("{USAGE}");
        return Ok(None);
    }
    if a.contains(["-V", "--version"]) {
        println!("minipull {}", env!("CARGO_PKG_VERSION"));
        return Ok(None);
    }
    let usage = |e: pico_args::Error| Error::usage(e.to_string()).hint("see minipull --help");
    // Given twice, the last one wins, so a wrapper script's defaults can be overridden.
    fn number(a: &mut pico_args::Arguments, flag: &'static str, default: u64) -> Result<u64> {
        let values: Vec<u64> = a
            .values_from_str(flag)
            .map_err(|e| Error::usage(format!("{flag}: {e}")).hint("it takes a whole number"))?;
        Ok(values.last().copied().unwrap_or(default))
    }
    let args = Args {
        platform: a.opt_value_from_str("--platform").map_err(usage)?,
        all_platforms: a.contains("--all-platforms"),
        username: a.opt_value_from_str("--username").map_err(usage)?,
        password_stdin: a.contains("--password-stdin"),
        auth_file: a
            .opt_value_from_os_str("--auth-file", |s| Ok::<_, String>(PathBuf::from(s)))
            .map_err(usage)?,
        mirrors: a.values_from_str("--mirror").map_err(usage)?,
        mirror_for: a.values_from_str("--mirror-for").map_err(usage)?,
        plain_http: a.contains("--plain-http"),
        ca_files: a
            .values_from_os_str("--ca-file", |s| Ok::<_, String>(PathBuf::from(s)))
            .map_err(usage)?,
        insecure: a.contains("--insecure"),
        time_floor: a
            .opt_value_from_os_str("--time-floor", |s| Ok::<_, String>(PathBuf::from(s)))
            .map_err(usage)?,
        retries_explicit,
        retries: number(&mut a, "--retries", 5)?.min(100) as u32,
        retry_for: number(&mut a, "--retry-for", 60)?.min(86_400),
        timeout: number(&mut a, "--timeout", 30)?,
        speed_limit: number(&mut a, "--speed-limit", 1024)?,
        speed_time: number(&mut a, "--speed-time", 30)?,
        // Unbounded by default: a holder is a live minipull (flock ends with it).
        lock_wait: Duration::from_secs(number(&mut a, "--lock-wait", 1 << 31)?.min(1 << 31)),
        verify: a.contains("--verify"),
        verify_keys: a
            .values_from_os_str("--verify-key", |s| Ok::<_, String>(PathBuf::from(s)))
            .map_err(usage)?,
        verify_identity: a.opt_value_from_str("--verify-identity").map_err(usage)?,
        no_downgrade: a.contains("--no-downgrade"),
        prune: a.contains("--prune"),
        discard_layers: a.contains("--discard-layers"),
        keep_partials: a.contains("--keep-partials"),
        limit_rate: a.opt_value_from_fn("--limit-rate", parse_rate).map_err(|e| {
            Error::usage(format!("--limit-rate: {e}")).hint("e.g. --limit-rate 2M (bytes a second; k, M, G suffixes)")
        })?,
        unpack: a
            .opt_value_from_os_str("--unpack", |s| Ok::<_, String>(PathBuf::from(s)))
            .map_err(usage)?,
        force: a.contains("--force"),
        keep_setuid: a.contains("--keep-setuid"),
        keep_xattrs: a.values_from_str("--keep-xattrs").map_err(usage)?,
        keep_old: a.contains("--keep-old"),
        command,
        json: a.contains("--json"),
        quiet: a.contains(["-q", "--quiet"]),
        reference: String::new(),
        outdir: PathBuf::new(),
    };
    let rest = a.finish();
    if let Some(flag) = rest.iter().find(|s| s.to_string_lossy().starts_with('-')) {
        return Err(Error::usage(format!("unknown option {}", flag.to_string_lossy())).hint("see minipull --help"));
    }
    let (want, names) = match command {
        Command::Pull | Command::Check => (2, "REF and OUTDIR"),
        Command::Unpack => (2, "OUTDIR[:NAME] and ROOTFS"),
        Command::Config => (1, "OUTDIR[:NAME]"),
        Command::Ls | Command::Gc => (1, "OUTDIR"),
        Command::Rm => (1, "OUTDIR:NAME"),
    };
    if rest.len() != want {
        return Err(Error::usage(format!("expected {names}, got {} arguments", rest.len())).hint("see minipull --help"));
    }
    if command == Command::Unpack && args.unpack.is_some() {
        return Err(Error::usage(
            "`minipull unpack` takes ROOTFS as its last argument, not --unpack",
        ));
    }
    let reference = match command {
        Command::Pull | Command::Check => rest[0]
            .to_str()
            .ok_or_else(|| Error::usage("the image reference is not valid UTF-8"))?
            .to_string(),
        // OUTDIR[:NAME] stays an OS string until it is split.
        _ => String::new(),
    };
    let (outdir, unpack) = match command {
        Command::Pull => (PathBuf::from(&rest[1]), args.unpack.clone()),
        Command::Check => (PathBuf::from(&rest[1]), None),
        Command::Unpack => (PathBuf::from(&rest[0]), Some(PathBuf::from(&rest[1]))),
        Command::Config | Command::Ls | Command::Rm | Command::Gc => (PathBuf::from(&rest[0]), None),
    };
    if args.keep_xattrs.iter().any(String::is_empty) {
        return Err(Error::usage("--keep-xattrs takes a namespace prefix such as trusted.").hint("see minipull --help"));
    }
    if args.discard_layers && unpack.is_none() {
        return Err(Error::usage("--discard-layers needs --unpack ROOTFS"));
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
    Ok(Some(Args {
        reference,
        outdir,
        unpack,
        ..args
    }))
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

/// `2M`, `512k`, `1G`, `100000`: bytes a second (k = 1024, like curl).
fn parse_rate(s: &str) -> std::result::Result<u64, String> {
    let (num, mult) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1u64 << 10),
        Some('m' | 'M') => (&s[..s.len() - 1], 1 << 20),
        Some('g' | 'G') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    match num.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n.saturating_mul(mult)),
        _ => Err(format!("{} is not a rate", crate::error::Quoted(s))),
    }
}

/// Parse the command line and pull. Returns the process exit code's error.
pub fn run() -> Result<i32> {
    let Some(args) = parse_args()? else { return Ok(0) };
    // A key that cannot be used is a usage error before any network access.
    let policy = crate::verify::Policy::load(
        &args.verify_keys,
        std::env::var("MINIPULL_VERIFY_KEY").ok(),
        args.verify_identity.clone(),
    )?;
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
        Command::Unpack | Command::Config => unpack::local_command(&args, &platform, policy.as_ref()),
    }?;
    // Only once the run succeeded: what it verified is then worth keeping.
    connect::raise_time_floor(&args, Progress::new(args.quiet));
    Ok(code)
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

//! Command line parsing and the top-level run.

use crate::auth::{self, Credentials};
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::manifest::Platform;
use crate::progress::Progress;
use crate::pull::{self, PullOptions};
use crate::reference::Reference;
use crate::registry::{self, Client, Options};
use crate::tls::{self, TlsOptions};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

pub const USAGE: &str = "\
minipull: pull a container image into an OCI image layout

USAGE:
    minipull [OPTIONS] REF OUTDIR

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
    --auth-file PATH              docker config.json with credentials (default:
                                  $DOCKER_CONFIG/config.json, ~/.docker/config.json)
    --plain-http                  talk plain HTTP to the registry
    --ca-file PATH                also trust the CA certificates in this PEM file
                                  (repeatable; built-in and system roots stay trusted)
    --insecure                    do not verify TLS certificates (warns; digests are
                                  still checked)
    --retries N                   attempts after a failure that may pass (default 5)
    --timeout SECS                connect timeout and longest wait for data (default 30)
    --speed-limit BYTES           abandon and resume a download slower than this
    --speed-time SECS               many bytes a second for this long (default 1024, 30)
    --verify                      re-hash blobs already in OUTDIR before trusting them
    --json                        print a JSON summary on stdout instead of the digest
    -q, --quiet                   no progress on stderr (warnings and errors remain)
    -h, --help                    print this help
    -V, --version                 print the version

EXIT CODES:
    0 ok, 1 other error, 2 usage or invalid reference, 3 not found,
    4 authentication refused, 5 network, 6 integrity, 7 local storage
";

struct Args {
    reference: String,
    outdir: PathBuf,
    platform: Option<String>,
    all_platforms: bool,
    username: Option<String>,
    password_stdin: bool,
    auth_file: Option<PathBuf>,
    plain_http: bool,
    ca_files: Vec<PathBuf>,
    insecure: bool,
    retries: u32,
    timeout: u64,
    speed_limit: u64,
    speed_time: u64,
    verify: bool,
    json: bool,
    quiet: bool,
}

fn parse_args() -> Result<Option<Args>> {
    let mut a = pico_args::Arguments::from_env();
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
        plain_http: a.contains("--plain-http"),
        ca_files: a
            .values_from_os_str("--ca-file", |s| Ok::<_, String>(PathBuf::from(s)))
            .map_err(usage)?,
        insecure: a.contains("--insecure"),
        retries: number(&mut a, "--retries", 5)?.min(100) as u32,
        timeout: number(&mut a, "--timeout", 30)?,
        speed_limit: number(&mut a, "--speed-limit", 1024)?,
        speed_time: number(&mut a, "--speed-time", 30)?,
        verify: a.contains("--verify"),
        json: a.contains("--json"),
        quiet: a.contains(["-q", "--quiet"]),
        reference: String::new(),
        outdir: PathBuf::new(),
    };
    let rest = a.finish();
    if let Some(flag) = rest.iter().find(|s| s.to_string_lossy().starts_with('-')) {
        return Err(Error::usage(format!("unknown option {}", flag.to_string_lossy())).hint("see minipull --help"));
    }
    if rest.len() != 2 {
        return Err(
            Error::usage(format!("expected REF and OUTDIR, got {} arguments", rest.len()))
                .hint("usage: minipull [OPTIONS] REF OUTDIR"),
        );
    }
    let reference = rest[0]
        .to_str()
        .ok_or_else(|| Error::usage("the image reference is not valid UTF-8"))?
        .to_string();
    if args.timeout == 0 || args.speed_time == 0 {
        return Err(Error::usage("--timeout and --speed-time must be at least 1 second"));
    }
    Ok(Some(Args {
        reference,
        outdir: PathBuf::from(&rest[1]),
        ..args
    }))
}

fn credentials(args: &Args, reference: &Reference) -> Result<Option<Credentials>> {
    match (&args.username, args.password_stdin) {
        (Some(u), true) => {
            if u.is_empty() || u.contains(':') {
                return Err(Error::usage("--username must be non-empty and must not contain ':'"));
            }
            return Ok(Some(Credentials {
                username: u.clone(),
                password: registry::read_password_stdin()?,
            }));
        }
        (Some(_), false) => {
            return Err(Error::usage("--username needs --password-stdin")
                .hint("echo \"$PASSWORD\" | minipull --username USER --password-stdin REF OUTDIR"))
        }
        (None, true) => return Err(Error::usage("--password-stdin needs --username")),
        (None, false) => {}
    }
    match &args.auth_file {
        Some(path) => auth::credentials_from_file(path, &reference.registry, true),
        None => match auth::default_auth_file() {
            Some(path) => auth::credentials_from_file(&path, &reference.registry, false),
            None => Ok(None),
        },
    }
}

/// Parse the command line and pull. Returns the process exit code's error.
pub fn run() -> Result<()> {
    let Some(args) = parse_args()? else { return Ok(()) };
    let reference = Reference::parse(&args.reference)?;
    let platform = match &args.platform {
        Some(p) => Platform::parse(p)?,
        None => Platform::host(),
    };
    if args.all_platforms && args.platform.is_some() {
        return Err(Error::usage("--platform and --all-platforms exclude each other"));
    }
    let creds = credentials(&args, &reference)?;
    let progress = Progress::new(args.quiet);
    let (tls, roots) = tls::config(&TlsOptions {
        ca_files: args.ca_files.clone(),
        insecure: args.insecure,
    })?;
    if args.insecure {
        // Loud even with --quiet: the user gave up what TLS protects.
        eprintln!(
            "minipull: WARNING: --insecure: TLS certificates are NOT verified. Anyone on the network path can \
             impersonate the registry and read credentials sent to it; image content is still checked against its digests."
        );
    } else if !args.ca_files.is_empty() {
        progress.note(format!("trusting {roots}"));
    }
    let layout = Layout::open(&args.outdir)?;
    let opts = Options {
        plain_http: args.plain_http,
        retries: args.retries,
        timeout: Duration::from_secs(args.timeout),
        speed_limit: args.speed_limit,
        speed_time: Duration::from_secs(args.speed_time),
        tls,
    };
    let mut client = Client::new(&reference, creds, opts, progress);
    progress.note(format!("pulling {reference} from {}", client.host()));
    let pull_opts = PullOptions {
        platform,
        all_platforms: args.all_platforms,
        verify: args.verify,
    };
    let summary = pull::pull(&reference, &mut client, &layout, progress, &pull_opts)?;
    let out = if args.json {
        serde_json::to_string_pretty(&summary).map_err(|e| Error::other(format!("cannot encode the summary: {e}")))?
    } else {
        summary.digest.clone()
    };
    // A closed stdout (e.g. `| head`) is not worth failing a finished pull for.
    let _ = writeln!(std::io::stdout(), "{out}");
    Ok(())
}

//! Command line parsing and the top-level run.

use crate::auth::{self, Credentials};
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::manifest::Platform;
use crate::mirror::{self, MirrorSpec, Sources};
use crate::progress::Progress;
use crate::pull::{self, PullOptions};
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
    --verify                      re-hash blobs already in OUTDIR before trusting them
    --verify-key PATH             accept only images with a cosign signature by this PEM
                                  public key (repeatable: any one suffices; ECDSA P-256,
                                  P-384, Ed25519; $MINIPULL_VERIFY_KEY, colon-separated);
                                  checked before any layer is downloaded, and by
                                  `minipull unpack --verify-key` offline
    --verify-identity REPO        also require a classic signature to name this repository
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
    8 untrusted (no valid signature with --verify-key)
";

/// What the command line asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Pull,
    Unpack,
    Config,
}

struct Args {
    command: Command,
    reference: String,
    outdir: PathBuf,
    platform: Option<String>,
    all_platforms: bool,
    username: Option<String>,
    password_stdin: bool,
    auth_file: Option<PathBuf>,
    mirrors: Vec<String>,
    mirror_for: Vec<String>,
    plain_http: bool,
    ca_files: Vec<PathBuf>,
    insecure: bool,
    retries: u32,
    retries_explicit: bool,
    retry_for: u64,
    timeout: u64,
    speed_limit: u64,
    speed_time: u64,
    verify: bool,
    verify_keys: Vec<PathBuf>,
    verify_identity: Option<String>,
    no_downgrade: bool,
    json: bool,
    quiet: bool,
    /// ROOTFS for `--unpack` and `minipull unpack`.
    unpack: Option<PathBuf>,
    #[cfg_attr(not(feature = "unpack"), allow(dead_code))]
    force: bool,
    #[cfg_attr(not(feature = "unpack"), allow(dead_code))]
    keep_old: bool,
    keep_setuid: bool,
}

fn parse_args() -> Result<Option<Args>> {
    let mut argv: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let command = match argv.first().and_then(|s| s.to_str()) {
        Some("unpack") => Command::Unpack,
        Some("config") => Command::Config,
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
        retries_explicit,
        retries: number(&mut a, "--retries", 5)?.min(100) as u32,
        retry_for: number(&mut a, "--retry-for", 60)?.min(86_400),
        timeout: number(&mut a, "--timeout", 30)?,
        speed_limit: number(&mut a, "--speed-limit", 1024)?,
        speed_time: number(&mut a, "--speed-time", 30)?,
        verify: a.contains("--verify"),
        verify_keys: a
            .values_from_os_str("--verify-key", |s| Ok::<_, String>(PathBuf::from(s)))
            .map_err(usage)?,
        verify_identity: a.opt_value_from_str("--verify-identity").map_err(usage)?,
        no_downgrade: a.contains("--no-downgrade"),
        unpack: a
            .opt_value_from_os_str("--unpack", |s| Ok::<_, String>(PathBuf::from(s)))
            .map_err(usage)?,
        force: a.contains("--force"),
        keep_setuid: a.contains("--keep-setuid"),
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
        Command::Pull => (2, "REF and OUTDIR"),
        Command::Unpack => (2, "OUTDIR[:NAME] and ROOTFS"),
        Command::Config => (1, "OUTDIR[:NAME]"),
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
        Command::Pull => rest[0]
            .to_str()
            .ok_or_else(|| Error::usage("the image reference is not valid UTF-8"))?
            .to_string(),
        // OUTDIR[:NAME] stays an OS string until it is split.
        _ => String::new(),
    };
    let (outdir, unpack) = match command {
        Command::Pull => (PathBuf::from(&rest[1]), args.unpack.clone()),
        Command::Unpack => (PathBuf::from(&rest[0]), Some(PathBuf::from(&rest[1]))),
        Command::Config => (PathBuf::from(&rest[0]), None),
    };
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

/// Credentials for the registry: flags, then `MINIPULL_USERNAME` and
/// `MINIPULL_PASSWORD`, then auth files (and the helpers they name).
fn credentials(args: &Args, reference: &Reference, progress: Progress) -> Result<Option<Credentials>> {
    match (&args.username, args.password_stdin) {
        (Some(u), true) => {
            if u.is_empty() || u.contains(':') {
                return Err(Error::usage("--username must be non-empty and must not contain ':'"));
            }
            return Ok(Some(Credentials::new(u.clone(), registry::read_password_stdin()?)));
        }
        (Some(_), false) => {
            return Err(Error::usage("--username needs --password-stdin")
                .hint("echo \"$PASSWORD\" | minipull --username USER --password-stdin REF OUTDIR"))
        }
        (None, true) => return Err(Error::usage("--password-stdin needs --username")),
        (None, false) => {}
    }
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (env("MINIPULL_USERNAME"), env("MINIPULL_PASSWORD")) {
        (Some(u), Some(p)) => {
            if u.contains(':') {
                return Err(Error::usage("MINIPULL_USERNAME must not contain ':'"));
            }
            return Ok(Some(Credentials::new(u, auth::Secret::new(p))));
        }
        (None, None) => {}
        _ => {
            return Err(Error::usage(
                "set both MINIPULL_USERNAME and MINIPULL_PASSWORD, or neither",
            ))
        }
    }
    stored_credentials(args, &reference.registry, progress)
}

/// Credentials an auth file (or its helper) holds for `host`.
fn stored_credentials(args: &Args, host: &str, progress: Progress) -> Result<Option<Credentials>> {
    let mut notes = Vec::new();
    let found = auth::credentials_from_files(args.auth_file.as_deref(), host, &mut notes)?;
    for n in notes {
        progress.note(n);
    }
    Ok(found)
}

/// Clients for the mirrors that serve this reference, in order.
fn mirror_clients(args: &Args, reference: &Reference, opts: &Options, progress: Progress) -> Result<Vec<Client>> {
    let list = |flag: &[String], var: &str| -> Vec<String> {
        if !flag.is_empty() {
            return flag.to_vec();
        }
        std::env::var(var)
            .unwrap_or_default()
            .split([',', ' '])
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    let mirrors = list(&args.mirrors, "MINIPULL_MIRROR");
    let mirror_for = list(&args.mirror_for, "MINIPULL_MIRROR_FOR");
    let specs = mirrors
        .iter()
        .map(|m| MirrorSpec::parse(m))
        .collect::<Result<Vec<_>>>()?;
    if specs.is_empty() || !mirror::applies_to(&reference.registry, &mirror_for) {
        return Ok(Vec::new());
    }
    // A mirror gets one retry: the next source is a better bet than waiting.
    let mirror_opts = Options {
        retries: opts.retries.min(1),
        ..opts.clone()
    };
    let mut clients = Vec::new();
    for m in specs {
        // Only credentials stored for the mirror's own host go to it.
        let creds = stored_credentials(args, &m.host, progress)?;
        let plain = m.plain.unwrap_or(opts.plain_http);
        clients.push(Client::for_host(
            &m.host,
            plain,
            &m.repository(&reference.repository),
            creds,
            mirror_opts.clone(),
            progress,
        ));
    }
    Ok(clients)
}

/// Parse the command line and pull. Returns the process exit code's error.
pub fn run() -> Result<()> {
    let Some(args) = parse_args()? else { return Ok(()) };
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
    match args.command {
        Command::Pull => pull_command(&args, platform, policy),
        Command::Unpack | Command::Config => local_command(&args, &platform, policy.as_ref()),
    }
}

/// `OUTDIR[:NAME]`: a directory that exists as given is OUTDIR; otherwise the
/// text after the last `:` names the image.
#[cfg(feature = "unpack")]
fn split_layout_arg(p: &Path) -> (PathBuf, Option<String>) {
    if !p.is_dir() {
        if let Some((dir, name)) = p.to_str().and_then(|s| s.rsplit_once(':')) {
            if !name.is_empty() && !name.contains('/') && Path::new(dir).is_dir() {
                return (PathBuf::from(dir), Some(name.to_string()));
            }
        }
    }
    (p.to_path_buf(), None)
}

/// `minipull unpack` and `minipull config`: work on a layout already on disk.
#[cfg(feature = "unpack")]
fn local_command(args: &Args, platform: &Platform, policy: Option<&crate::verify::Policy>) -> Result<()> {
    use crate::unpack::{self, Select};
    let (dir, name) = split_layout_arg(&args.outdir);
    if !dir.join("oci-layout").is_file() {
        return Err(Error::not_found(format!("no OCI image layout at {}", dir.display()))
            .hint("pull into it first: minipull REF OUTDIR"));
    }
    let layout = Layout::open_waiting(&dir, crate::layout::LOCK_WAIT, Progress::new(args.quiet))?;
    let select = match &name {
        Some(n) => Select::Name(n),
        None => Select::Only,
    };
    let image = unpack::find_image(&layout, select, platform)?;
    if let Some(policy) = policy {
        // Before anything is extracted: the signature stored with the image.
        let v = verify_stored(&layout, policy, &image)?;
        Progress::new(args.quiet).note(format!(
            "signature verified offline: {} signature of {} by key {}",
            v.format, v.digest, v.key
        ));
    }
    if args.command == Command::Config {
        let _ = std::io::stdout().write_all(&image.config);
        let _ = writeln!(std::io::stdout());
        return Ok(());
    }
    let rootfs = args
        .unpack
        .as_deref()
        .ok_or_else(|| Error::usage("ROOTFS is missing"))?;
    let plan = crate::rootfs::Plan::new(rootfs, args.force, args.keep_old)?;
    unpack_image(&layout, &image, &plan, Progress::new(args.quiet), args.keep_setuid)
}

/// Unpack as the plan says (staged and swapped, or in place), and say how
/// and where the config is.
#[cfg(feature = "unpack")]
fn unpack_image(
    layout: &Layout,
    image: &crate::unpack::Image,
    plan: &crate::rootfs::Plan,
    progress: Progress,
    keep_setuid: bool,
) -> Result<()> {
    if plan.in_place() {
        // Nothing to throw away in place: no unverified byte goes in.
        crate::unpack::verify_layers(layout, image)?;
    }
    let into = plan.begin()?;
    let s = match crate::unpack::unpack(layout, image, &into, progress, keep_setuid) {
        Ok(s) => s,
        Err(e) => {
            plan.abort();
            return Err(e);
        }
    };
    let installed = match plan.commit(&image.digest, &image.name) {
        Ok(i) => i,
        Err(e) => {
            plan.abort();
            return Err(e);
        }
    };
    progress.note(format!(
        "unpacked {} layers ({} entries, {}) into {}: {}; the image config is blob {}; recorded in {}",
        s.layers,
        s.entries,
        crate::progress::human(s.bytes),
        plan.rootfs().display(),
        installed.how,
        image.config_digest,
        plan.record_path().display()
    ));
    Ok(())
}

/// Verify `image` with the signatures stored in the layout: one of its own
/// manifest digest, or of the index its tag resolved to when that index is
/// stored and lists the manifest.
#[cfg(feature = "unpack")]
fn verify_stored(
    layout: &Layout,
    policy: &crate::verify::Policy,
    image: &crate::unpack::Image,
) -> Result<crate::verify::Verified> {
    use crate::digest::Digest;
    let own = Digest::parse(&image.digest)?;
    let mut reasons = Vec::new();
    if let Some(p) = crate::verify::check_stored(layout, policy, &own, &mut reasons)? {
        return Ok(p.verified);
    }
    if let Some(index) = &image.resolved {
        let d = Digest::parse(index)?;
        let bytes = layout.read_small_blob(&d, crate::manifest::MAX_MANIFEST_BYTES)?;
        let lists = matches!(crate::manifest::parse(&bytes, None), Ok((_, crate::manifest::Manifest::Index(i)))
            if i.manifests.iter().any(|m| m.digest == image.digest));
        if lists {
            if let Some(p) = crate::verify::check_stored(layout, policy, &d, &mut reasons)? {
                return Ok(p.verified);
            }
        } else {
            reasons.push(format!("the stored index {} does not list the image", d.short()));
        }
    }
    Err(crate::verify::untrusted(
        &format!("{} in {}", image.name, layout.root().display()),
        policy,
        &reasons,
    ))
}

#[cfg(not(feature = "unpack"))]
fn local_command(_: &Args, _: &Platform, _: Option<&crate::verify::Policy>) -> Result<()> {
    Err(Error::usage(
        "this minipull was built without unpack support (cargo feature \"unpack\")",
    ))
}

fn pull_command(args: &Args, platform: Platform, policy: Option<crate::verify::Policy>) -> Result<()> {
    let reference = Reference::parse(&args.reference)?;
    let progress = Progress::new(args.quiet);
    let creds = credentials(args, &reference, progress)?;
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
    } else {
        if !args.ca_files.is_empty() {
            progress.note(format!("trusting {roots}"));
        }
        if let Some(w) = tls::clock_warning() {
            progress.warn(w);
        }
    }
    // Before the download: a ROOTFS we may not use should not cost one.
    let plan = args.unpack.as_deref().map(|r| unpack_ready(r, args)).transpose()?;
    let layout = Layout::open_waiting(&args.outdir, crate::layout::LOCK_WAIT, progress)?;
    let opts = Options {
        plain_http: args.plain_http,
        retries: args.retries,
        retries_explicit: args.retries_explicit,
        retry_for: Duration::from_secs(args.retry_for),
        keep_written_pages: args.unpack.is_some(),
        timeout: Duration::from_secs(args.timeout),
        speed_limit: args.speed_limit,
        speed_time: Duration::from_secs(args.speed_time),
        tls,
        proxies: crate::proxy::ProxyEnv::from_env()?,
    };
    let mirrors = mirror_clients(args, &reference, &opts, progress)?;
    let client = Client::new(&reference, creds, opts, progress);
    progress.note(format!("pulling {reference} from {}", client.host()));
    let mut sources = Sources::new(mirrors, client, progress);
    let pull_opts = PullOptions {
        platform,
        all_platforms: args.all_platforms,
        verify: args.verify,
        policy,
        no_downgrade: args.no_downgrade,
        need_layers: args.unpack.is_some(),
    };
    let summary = pull::pull(&reference, &mut sources, &layout, progress, &pull_opts)?;
    if let Some(plan) = &plan {
        unpack_pulled(
            &layout,
            &summary.digest,
            &pull_opts.platform,
            plan,
            progress,
            args.keep_setuid,
        )?;
    }
    let out = if args.json {
        serde_json::to_string_pretty(&summary).map_err(|e| Error::other(format!("cannot encode the summary: {e}")))?
    } else {
        summary.digest.clone()
    };
    // A closed stdout (e.g. `| head`) is not worth failing a finished pull for.
    let _ = writeln!(std::io::stdout(), "{out}");
    Ok(())
}

#[cfg(feature = "unpack")]
type UnpackPlan = crate::rootfs::Plan;
#[cfg(not(feature = "unpack"))]
type UnpackPlan = ();

#[cfg(feature = "unpack")]
fn unpack_ready(rootfs: &Path, args: &Args) -> Result<UnpackPlan> {
    crate::rootfs::Plan::new(rootfs, args.force, args.keep_old)
}

#[cfg(feature = "unpack")]
fn unpack_pulled(
    layout: &Layout,
    digest: &str,
    platform: &Platform,
    plan: &UnpackPlan,
    progress: Progress,
    keep_setuid: bool,
) -> Result<()> {
    use crate::unpack::{self, Select};
    let image = unpack::find_image(layout, Select::Digest(digest), platform)?;
    unpack_image(layout, &image, plan, progress, keep_setuid)
}

#[cfg(not(feature = "unpack"))]
fn unpack_ready(_: &Path, _: &Args) -> Result<UnpackPlan> {
    Err(Error::usage(
        "this minipull was built without unpack support (cargo feature \"unpack\")",
    ))
}

#[cfg(not(feature = "unpack"))]
fn unpack_pulled(_: &Layout, _: &str, _: &Platform, _: &UnpackPlan, _: Progress, _: bool) -> Result<()> {
    Ok(())
}

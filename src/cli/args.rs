//! The command line: one table of options ([`OPTIONS`]), a parser over
//! `std::env::args_os` that finds the command after the global options, and
//! the help each command prints, generated from the same table.

use crate::error::{Error, Quoted, Result};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// What the command line asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    Pull,
    Check,
    Unpack,
    Config,
    Ls,
    Rm,
    Gc,
    Inspect,
    Tags,
    Extract,
    Export,
}

// Bits naming the commands that take an option.
const PULL: u16 = 1;
const CHECK: u16 = 2;
const UNPACK: u16 = 4;
const CONFIG: u16 = 8;
const LS: u16 = 16;
const RM: u16 = 32;
const GC: u16 = 64;
const INSPECT: u16 = 128;
const TAGS: u16 = 256;
const EXTRACT: u16 = 512;
const EXPORT: u16 = 1024;
const EVERY: u16 = PULL | CHECK | UNPACK | CONFIG | LS | RM | GC | INSPECT | TAGS | EXTRACT | EXPORT;
/// The commands that talk to a registry.
const NET: u16 = PULL | CHECK | INSPECT | TAGS;

/// A command: its word, operands, a few words for the synopsis and what it
/// does for its help.
struct Cmd {
    command: Command,
    word: &'static str,
    operands: &'static str,
    brief: &'static str,
    about: &'static str,
}

const COMMANDS: [Cmd; 11] = [
    Cmd { command: Command::Pull, brief: "pull REF into OUTDIR", word: "pull", operands: "REF OUTDIR", about: "pull REF into the OCI image layout OUTDIR and, with --unpack, unpack it into ROOTFS (`pull` may be left out); OUTDIR:NAME gives the image that name in OUTDIR (default: its tag)" },
    Cmd { command: Command::Check, brief: "exit 10 if REF has an update", word: "check", operands: "REF OUTDIR", about: "is there an update? One manifest HEAD; prints the digest REF has in the registry; exit 0: no, 10: yes (or REF is not in OUTDIR yet)" },
    Cmd { command: Command::Unpack, brief: "unpack an image (offline)", word: "unpack", operands: "OUTDIR[:NAME] ROOTFS", about: "unpack an image OUTDIR holds into ROOTFS (no network)" },
    Cmd { command: Command::Config, brief: "print an image's config", word: "config", operands: "OUTDIR[:NAME]", about: "print the config of an image OUTDIR holds (Entrypoint, Cmd, Env...)" },
    Cmd { command: Command::Ls, brief: "list the images in OUTDIR", word: "ls", operands: "OUTDIR", about: "list the images in OUTDIR: name, full reference, digest, media type, platforms, size, state (a header line on a terminal)" },
    Cmd { command: Command::Rm, brief: "drop an image from OUTDIR", word: "rm", operands: "OUTDIR:NAME", about: "drop an image from OUTDIR's index.json (its blobs stay until gc); NAME may also be a digest or a full reference" },
    Cmd { command: Command::Gc, brief: "remove what nothing needs", word: "gc", operands: "OUTDIR", about: "remove the blobs nothing needs and stale partial downloads" },
    Cmd { command: Command::Inspect, brief: "show an image without pulling it", word: "inspect", operands: "REF", about: "show what REF is without pulling it: the digest its tag resolves to, media type, size, the platforms of an index (or, with --platform, one of them), the config's os, architecture and creation time (manifest requests, and the config when its fields are shown; never a layer); with --layout, an image OUTDIR[:NAME] holds" },
    Cmd { command: Command::Tags, brief: "list a repository's tags", word: "tags", operands: "REPO", about: "list the tags of the repository REPO (alpine, ghcr.io/org/repo), one a line, following the registry's pages" },
    Cmd { command: Command::Extract, brief: "write an artifact's files", word: "extract", operands: "OUTDIR[:NAME] DIR", about: "write each layer of an artifact OUTDIR holds (kernels, DTBs, firmware pushed with ORAS) into DIR as a file named by its title, verified, mode 0644; directory layers are unpacked; the set appears at once (no network)" },
    Cmd { command: Command::Export, brief: "write an OCI archive", word: "export", operands: "OUTDIR[:NAME] FILE", about: "write one image (or, without :NAME, every image) OUTDIR holds as an OCI archive FILE (a tar of an OCI layout) for skopeo, podman load or ctr images import; FILE - is stdout (no network)" },
];

impl Command {
    fn cmd(self) -> &'static Cmd {
        &COMMANDS[self as usize]
    }
    fn bit(self) -> u16 {
        1 << self as u8
    }
    /// The word that names it on the command line.
    pub(crate) fn word(self) -> &'static str {
        self.cmd().word
    }
}

/// Words other tools use as commands: refused with a pointer, never read as
/// an image name (`docker.io/library/push` written out is still one).
const NOT_HERE: [(&str, &str); 5] = [
    ("digest", DIGEST),
    ("manifest", DIGEST),
    ("copy", ONLY_PULLS),
    ("push", ONLY_PULLS),
    ("login", LOGIN),
];
const DIGEST: &str = "`minipull inspect REF` shows the digest REF resolves to, its platforms and config; \
                      `minipull inspect --raw REF` prints the manifest";
const ONLY_PULLS: &str =
    "minipull only pulls; to copy or push images use skopeo (skopeo copy) or crane (crane copy, crane push)";
const LOGIN: &str = "minipull only pulls and has no login; it reads the credentials `skopeo login`, \
    `crane auth login`, `podman login` or `docker login` stored, or takes --username with --password-stdin";

/// One option. Adding an option is one line in [`OPTIONS`]; its values are
/// then in `Args::opts` (see [`Given`]: `last` for a single value, the last
/// given winning; `all` for a repeatable one).
pub(crate) struct Opt {
    /// `--name`.
    pub(crate) name: &'static str,
    /// `-q` or "".
    short: &'static str,
    /// What the value is (`PATH`), or "" for a flag.
    value: &'static str,
    /// The commands that take it.
    cmds: u16,
    /// Concerns the network, credentials, TLS or output: may also stand
    /// before the command word of any command (ignored by those that do
    /// not use it, so one set of options serves every command).
    global: bool,
    help: &'static str,
}

const fn opt(name: &'static str, value: &'static str, cmds: u16, help: &'static str) -> Opt {
    Opt {
        name,
        short: "",
        value,
        cmds,
        global: false,
        help,
    }
}
const fn global(name: &'static str, value: &'static str, cmds: u16, help: &'static str) -> Opt {
    Opt {
        global: true,
        ..opt(name, value, cmds, help)
    }
}

/// Every option, in the order `--help` lists them.
#[rustfmt::skip]
pub(crate) const OPTIONS: &[Opt] = &[
    opt("--platform", "OS/ARCH[/VARIANT]", PULL | UNPACK | CONFIG | INSPECT | EXTRACT, "the platform to choose from a multi-platform image (default: the one minipull runs on)"),
    opt("--all-platforms", "", PULL, "keep the whole index and pull every platform"),
    opt("--unpack", "ROOTFS", PULL, "after the pull, apply the image's layers into ROOTFS (whiteouts, links, modes; owners and devices as root)"),
    opt("--force", "", PULL | UNPACK, "replace a ROOTFS that is not empty (atomically: the new tree is staged beside it, then swapped in)"),
    opt("--force", "", EXTRACT, "replace what DIR already holds under the same names"),
    opt("--keep-old", "", PULL | UNPACK, "keep the replaced tree as ROOTFS.old (A/B switching)"),
    opt("--keep-setuid", "", PULL | UNPACK, "keep setuid/setgid bits when not unpacking as root (dropped by default: owners are not applied then)"),
    opt("--keep-xattrs", "PREFIX", PULL | UNPACK, "also apply extended attributes under PREFIX (repeatable; default: security.capability, security.ima, security.evm, user.*, POSIX ACLs)"),
    opt("--discard-layers", "", PULL, "with --unpack: remove each layer once unpacked (the entry then holds manifests and config only)"),
    #[cfg(feature = "delta")]
    opt("--no-delta", "", PULL, "with --unpack: never fetch only the changed chunks of a zstd:chunked layer (always the whole layer)"),
    #[cfg(feature = "delta")]
    opt("--reuse-from", "DIR", PULL, "with --unpack: the root whose files a partial (zstd:chunked) update reuses (default: ROOTFS, when its record names an installed image)"),
    opt("--verify", "", PULL, "re-hash blobs already in OUTDIR before trusting them"),
    opt("--prune", "", PULL, "after the pull (and unpack), remove the blobs only the replaced version of this image used"),
    opt("--verify-key", "PATH", PULL | UNPACK | CONFIG, "accept only images with a cosign signature by this PEM public key (repeatable: any one suffices; ECDSA P-256, P-384, Ed25519; $MINIPULL_VERIFY_KEY, colon-separated)"),
    opt("--verify-identity", "REPO", PULL | UNPACK | CONFIG, "also require the signature (classic or bundle) to name this repository"),
    opt("--certificate-identity", "SAN", PULL | UNPACK | CONFIG, "accept keyless signatures whose certificate names this identity (a workflow URL or email; exact, or a prefix ending in /* or @*; repeatable, paired by position with --certificate-oidc-issuer; $MINIPULL_CERTIFICATE_IDENTITY)"),
    opt("--certificate-oidc-issuer", "URL", PULL | UNPACK | CONFIG, "the OIDC issuer of the --certificate-identity in the same position, exact (e.g. https://token.actions.githubusercontent.com; $MINIPULL_CERTIFICATE_OIDC_ISSUER)"),
    opt("--trusted-root", "FILE", PULL | UNPACK | CONFIG, "the sigstore trusted_root.json keyless signatures chain to (Fulcio CAs, Rekor and CT log keys; $MINIPULL_TRUSTED_ROOT)"),
    opt("--no-downgrade", "", PULL, "refuse (exit 8) an image whose config is older than the one OUTDIR already holds under the same name"),
    opt("--limit-rate", "BYTES", PULL, "cap the download rate, as the link sees it from the first second (k, M, G suffixes; the receive buffer of every connection is sized to it)"),
    opt("--speed-limit", "BYTES", PULL, "abandon and resume a download slower than BYTES a second for --speed-time (default 1024; k, M, G suffixes)"),
    opt("--speed-time", "SECS", PULL, "how long a download may stay below --speed-limit (default 30)"),
    opt("--lock-wait", "SECS", PULL | UNPACK | EXTRACT | EXPORT, "wait at most this long for another minipull holding OUTDIR's or ROOTFS's lock (default: as long as it runs)"),
    opt("--keep-partials", "", GC, "keep every partial download, however old"),
    opt("--layout", "", INSPECT, "the operand is OUTDIR[:NAME], an image in a layout on disk (no network)"),
    opt("--raw", "", INSPECT, "print the manifest as stored (with --platform, the chosen platform's), checked against its digest"),
    opt("--config", "", INSPECT, "print the image's config (at most 4 MiB), checked against its digest"),
    opt("--page-size", "N", TAGS, "ask the registry for N tags a request (default: as many as it gives)"),
    global("--plain-http", "", NET, "talk plain HTTP to the registry (and mirrors); $MINIPULL_PLAIN_HTTP=HOST:PORT,... does so for the hosts it names only"),
    global("--ca-file", "PATH", NET, "also trust the CA certificates in this PEM file (repeatable; built-in and system roots stay trusted)"),
    global("--insecure", "", NET, "do not verify TLS certificates (warns; digests are still checked)"),
    global("--time-floor", "FILE", NET, "judge TLS certificates no earlier than the Unix time in FILE (root's, not writable by others); raised after a verified pull"),
    global("--username", "USER", NET, "log in as USER (the password comes from stdin)"),
    global("--password-stdin", "", NET, "read the password from the first line of stdin"),
    global("--auth-file", "PATH", NET, "docker config.json or podman auth.json with credentials (default: $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json, ~/.config/containers/auth.json, $DOCKER_CONFIG/config.json, ~/.docker/config.json)"),
    global("--mirror", "[http://]HOST[:PORT][/PREFIX]", NET, "try this mirror first (repeatable, in order; falls back to the next and then to the registry; $MINIPULL_MIRROR)"),
    global("--mirror-for", "REGISTRY", NET, "registries the mirrors serve (repeatable; default docker.io; $MINIPULL_MIRROR_FOR)"),
    global("--retries", "N", NET, "attempts after a failure that got an answer (default 5; given, it also bounds retries of an unreachable source)"),
    global("--retry-for", "SECS", NET, "keep trying a registry or mirror that does not answer (refused, no route, no DNS) this long (default 60; 0: fail)"),
    global("--timeout", "SECS", NET, "connect timeout and longest wait for data (default 30)"),
    global("--json", "", PULL | CHECK | UNPACK | LS | RM | GC | INSPECT | TAGS, "print the result, or the error, as JSON on stdout"),
    Opt { short: "-q", ..global("--quiet", "", EVERY, "no progress on stderr (warnings and errors remain)") },
];

/// The options the command line gave, in order: `(index in OPTIONS, value)`.
#[derive(Default)]
pub(crate) struct Given(Vec<(usize, OsString)>);

impl Given {
    fn index(name: &str) -> usize {
        let i = OPTIONS.iter().position(|o| o.name == name);
        debug_assert!(i.is_some(), "{name} is not in OPTIONS");
        i.unwrap_or(usize::MAX)
    }
    /// Every value of `name`, in order (one empty value per use of a flag).
    pub(crate) fn all<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a OsStr> + 'a {
        // By name: an option may have a line per command (`--force`).
        let name = OPTIONS[Given::index(name)].name;
        self.0
            .iter()
            .filter(move |(j, _)| OPTIONS[*j].name == name)
            .map(|(_, v)| v.as_os_str())
    }
    /// The value given last: a single-value option given twice, the last wins.
    pub(crate) fn last(&self, name: &str) -> Option<&OsStr> {
        self.all(name).last()
    }
    pub(crate) fn flag(&self, name: &str) -> bool {
        self.last(name).is_some()
    }
    pub(crate) fn text(&self, name: &str) -> Result<Option<String>> {
        self.last(name)
            .map(|v| {
                v.to_str()
                    .map(str::to_string)
                    .ok_or_else(|| Error::usage(format!("{name}: the value is not valid UTF-8")))
            })
            .transpose()
    }
    pub(crate) fn texts(&self, name: &str) -> Result<Vec<String>> {
        self.all(name)
            .map(|v| {
                v.to_str()
                    .map(str::to_string)
                    .ok_or_else(|| Error::usage(format!("{name}: the value is not valid UTF-8")))
            })
            .collect()
    }
    pub(crate) fn paths(&self, name: &str) -> Vec<PathBuf> {
        self.all(name).map(PathBuf::from).collect()
    }
    pub(crate) fn path(&self, name: &str) -> Option<PathBuf> {
        self.last(name).map(PathBuf::from)
    }
    /// A whole number (seconds, counts).
    pub(crate) fn number(&self, name: &str, default: u64) -> Result<u64> {
        match self.text(name)? {
            None => Ok(default),
            Some(s) => s.parse().map_err(|_| {
                Error::usage(format!("{name}: {} is not a whole number", Quoted(&s))).hint("it takes a whole number")
            }),
        }
    }
    /// Bytes (a second): `2M`, `512k`, `1G`, `100000`.
    pub(crate) fn bytes(&self, name: &str) -> Result<Option<u64>> {
        self.text(name)?
            .map(|s| {
                parse_rate(&s).map_err(|e| {
                    Error::usage(format!("{name}: {e}"))
                        .hint(format!("e.g. {name} 2M (bytes a second; k, M, G suffixes)"))
                })
            })
            .transpose()
    }
}

/// `2M`, `512k`, `1G`, `100000`: bytes (k = 1024, like curl).
pub(crate) fn parse_rate(s: &str) -> std::result::Result<u64, String> {
    let (num, mult) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1u64 << 10),
        Some('m' | 'M') => (&s[..s.len() - 1], 1 << 20),
        Some('g' | 'G') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    match num.parse::<u64>() {
        Ok(n) => Ok(n.saturating_mul(mult)),
        _ => Err(format!("{} is not a number of bytes", Quoted(s))),
    }
}

/// What to do, as the command line says.
pub(crate) enum Parsed {
    /// Print this on stdout and exit 0 (help, version).
    Print(String),
    /// `minipull` alone: the synopsis on stderr, exit 2.
    Synopsis,
    Run(Command, Vec<OsString>, Given),
}

/// Find the command (the first operand, when it is a command word; else
/// pull), the options (`--opt VALUE`, `--opt=VALUE`) and the operands.
pub(crate) fn parse(argv: Vec<OsString>) -> Result<Parsed> {
    if argv.is_empty() {
        return Ok(Parsed::Synopsis);
    }
    let mut command: Option<Command> = None;
    let (mut help, mut help_word) = (false, false);
    let mut operands: Vec<OsString> = Vec::new();
    // (index in OPTIONS, value, given before the command word, value taken from the next argument)
    let mut given: Vec<(usize, OsString, bool, bool)> = Vec::new();
    let mut only_operands = false;
    let mut it = argv.into_iter();
    while let Some(arg) = it.next() {
        let bytes = arg.as_bytes();
        if !only_operands && bytes.starts_with(b"-") && bytes.len() > 1 {
            if bytes == b"--" {
                only_operands = true;
                continue;
            }
            // The name is ASCII; a value after `=` may be any bytes (a path).
            let (name, inline) = match bytes.iter().position(|b| *b == b'=') {
                Some(at) if bytes.starts_with(b"--") => (&bytes[..at], Some(OsStr::from_bytes(&bytes[at + 1..]))),
                _ => (bytes, None),
            };
            let name = std::str::from_utf8(name).unwrap_or("-?");
            match name {
                "-h" | "--help" => {
                    help = true;
                    continue;
                }
                "-V" | "--version" => return Ok(Parsed::Print(version())),
                _ => {}
            }
            let Some(i) = OPTIONS.iter().position(|o| o.name == name || o.short == name) else {
                return Err(Error::usage(format!("unknown option {}", Quoted(name))).hint(see_help(command)));
            };
            let o = &OPTIONS[i];
            let (value, from_next) = match (o.value.is_empty(), inline) {
                (true, None) => (OsString::new(), false),
                (true, Some(_)) => return Err(Error::usage(format!("{} takes no value", o.name))),
                (false, Some(v)) => (v.to_os_string(), false),
                (false, None) => match it.next() {
                    // A value that looks like an option is one forgotten (`--opt=-x` gives it anyway).
                    Some(v) if !(v.to_str().is_some_and(|v| v.starts_with('-') && v.len() > 1)) => (v, true),
                    next => {
                        let e = Error::usage(format!("{} needs a value: {} {}", o.name, o.name, o.value));
                        return Err(match next {
                            Some(_) => e.hint(format!("a value starting with - is given as {}=VALUE", o.name)),
                            None => e,
                        });
                    }
                },
            };
            given.push((i, value, command.is_none() && operands.is_empty(), from_next));
            continue;
        }
        // The first operand may be a command word (`minipull help CMD`: the second).
        let s = arg.to_str().unwrap_or("");
        if command.is_none() && operands.is_empty() {
            if let Some(c) = COMMANDS.iter().find(|c| c.word == s) {
                command = Some(c.command);
                continue;
            }
            if let Some((_, why)) = NOT_HERE.iter().find(|(w, _)| *w == s) {
                return Err(Error::usage(format!("minipull has no {s} command")).hint(*why));
            }
            match s {
                "help" if !help_word => {
                    help_word = true;
                    help = true;
                    continue;
                }
                "version" if !help_word => return Ok(Parsed::Print(version())),
                _ if help_word => {
                    return Err(Error::usage(format!("no command {}", Quoted(s)))
                        .hint(format!("the commands: {}", words().join(", "))))
                }
                _ => {}
            }
        }
        operands.push(arg);
    }
    if help {
        return Ok(Parsed::Print(match command {
            Some(c) => command_help(c),
            None if help_word => overview(),
            // `minipull REF OUTDIR --help`: pull's own options.
            None if !operands.is_empty() => command_help(Command::Pull),
            None => overview(),
        }));
    }
    let command = command.unwrap_or(Command::Pull);
    let c = command.cmd();
    for (i, _, before, _) in &given {
        // The line of an option given per command is this command's.
        let o = &OPTIONS[*i];
        let o = OPTIONS
            .iter()
            .find(|p| p.name == o.name && p.cmds & command.bit() != 0)
            .unwrap_or(o);
        if o.cmds & command.bit() == 0 && !(o.global && *before) {
            let takes: Vec<&str> = COMMANDS
                .iter()
                .filter(|c| {
                    OPTIONS
                        .iter()
                        .any(|p| p.name == o.name && p.cmds & c.command.bit() != 0)
                })
                .map(|c| c.word)
                .collect();
            let why = match o.global {
                true => format!("`minipull {}` does not talk to a registry", c.word),
                false => format!("it is an option of: {}", takes.join(", ")),
            };
            return Err(Error::usage(format!("`minipull {}` does not take {}", c.word, o.name))
                .hint(format!("{why}; see minipull {} --help", c.word)));
        }
    }
    let want = c.operands.split(' ').count();
    if operands.len() != want {
        let names = c.operands.replace(' ', " and ");
        let mut e = Error::usage(format!(
            "`minipull {}` expected {names}, got {} argument{}",
            c.word,
            operands.len(),
            if operands.len() == 1 { "" } else { "s" }
        ));
        // `minipull --platform alpine out`: the option took an operand.
        e = match given.iter().rev().find(|g| g.3).filter(|_| operands.len() < want) {
            Some((i, v, _, _)) => e.hint(format!(
                "{} took {} as its value; give it one (e.g. {}={})",
                OPTIONS[*i].name,
                Quoted(&v.to_string_lossy()),
                OPTIONS[*i].name,
                OPTIONS[*i].value
            )),
            None => e.hint(format!("usage: minipull {} [OPTIONS] {}", c.word, c.operands)),
        };
        return Err(e);
    }
    Ok(Parsed::Run(
        command,
        operands,
        Given(given.into_iter().map(|(i, v, _, _)| (i, v)).collect()),
    ))
}

fn words() -> Vec<&'static str> {
    COMMANDS.iter().map(|c| c.word).collect()
}

fn see_help(command: Option<Command>) -> String {
    match command {
        Some(c) => format!("see minipull {} --help", c.word()),
        None => "see minipull --help".to_string(),
    }
}

/// `minipull --version`: what was built, from what, and when.
fn version() -> String {
    let built = match crate::tls::build_time() {
        Some(t) => format!(
            "{} (SOURCE_DATE_EPOCH {t}; TLS certificates are judged no earlier)",
            crate::tls::utc(t)
        ),
        None => "unknown (no SOURCE_DATE_EPOCH; TLS certificates are judged by the clock alone)".to_string(),
    };
    format!(
        "minipull {}\ncommit:     {}\ntarget:     {}\nfeatures:   {}\nbuilt:      {built}\nrustc:      {}\n",
        env!("CARGO_PKG_VERSION"),
        env!("MINIPULL_COMMIT"),
        env!("MINIPULL_TARGET"),
        if cfg!(feature = "unpack") {
            "unpack"
        } else {
            "(none: pull only)"
        },
        env!("MINIPULL_RUSTC"),
    )
}

/// `text` in lines of at most `width` columns, each after `indent` spaces.
fn wrap(out: &mut String, text: &str, indent: usize, width: usize, mut first: bool) {
    let mut line = String::new();
    for w in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + w.len() > width {
            wrap_line(out, &line, indent, first);
            first = false;
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(w);
    }
    wrap_line(out, &line, indent, first);
}

fn wrap_line(out: &mut String, line: &str, indent: usize, first: bool) {
    match first {
        true => out.push_str(&format!("{line}\n")),
        false => out.push_str(&format!("{:indent$}{line}\n", "")),
    }
}

/// Where option descriptions start.
const COLUMN: usize = 30;

/// One entry per option, the description wrapped to 80 columns.
fn option_lines(out: &mut String, pick: impl Fn(&Opt) -> bool) {
    for o in OPTIONS.iter().filter(|o| pick(o)) {
        let mut head = match o.short {
            "" => o.name.to_string(),
            s => format!("{s}, {}", o.name),
        };
        if !o.value.is_empty() {
            head = format!("{head} {}", o.value);
        }
        match head.len() + 4 > COLUMN {
            true => out.push_str(&format!("  {head}\n{:COLUMN$}", "")),
            false => out.push_str(&format!("  {head:<w$}", w = COLUMN - 2)),
        }
        wrap(out, o.help, COLUMN, 80 - COLUMN, true);
    }
}

/// The usage lines of every command: what `minipull` alone prints.
pub(crate) fn synopsis() -> String {
    let mut s = String::from("USAGE:\n");
    let mut line = |usage: String, brief: &str| s.push_str(&format!("  {usage:<48}{brief}\n"));
    for c in &COMMANDS {
        match c.command {
            Command::Pull => {
                line("minipull [OPTIONS] REF OUTDIR".into(), c.brief);
                line(
                    "minipull [OPTIONS] --unpack ROOTFS REF OUTDIR".into(),
                    "pull, then unpack it",
                );
            }
            Command::Inspect => {
                line("minipull inspect [OPTIONS] REF".into(), c.brief);
                line(
                    "minipull inspect --layout OUTDIR[:NAME]".into(),
                    "the same, of an image on disk",
                );
            }
            _ => line(format!("minipull {} [OPTIONS] {}", c.word, c.operands), c.brief),
        }
    }
    line("minipull help [COMMAND]".into(), "a command's options");
    s
}

/// `minipull --help`: the commands, the global options, environment and exit codes.
fn overview() -> String {
    let mut s = String::from("minipull: pull a container image into an OCI image layout\n\n");
    s.push_str(&synopsis());
    s.push_str(
        "\nARGS:
  REF     image reference: alpine, alpine:3.20, ghcr.io/org/repo:tag,
          host:5000/a/b@sha256:<hex> (a docker:// prefix is accepted)
  OUTDIR  OCI layout directory to create or add to (OUTDIR:NAME: one image)

GLOBAL OPTIONS (before the command word for every command; after it, for
pull, check, inspect and tags, the commands that talk to a registry):
",
    );
    option_lines(&mut s, |o| o.global);
    s.push_str(
        "  -h, --help                  print help; minipull help COMMAND: its options
  -V, --version               print the version

An option given twice: the last wins (repeatable ones add up); --opt=VALUE
works too; `--` ends the options.

ENVIRONMENT:
  MINIPULL_USERNAME, MINIPULL_PASSWORD  credentials for the registry
  MINIPULL_VERIFY_KEY                   --verify-key for pull, unpack, config
  MINIPULL_PLAIN_HTTP=HOST:PORT,...     --plain-http for these registries only
  MINIPULL_CERTIFICATE_IDENTITY,        one --certificate-identity pair
    MINIPULL_CERTIFICATE_OIDC_ISSUER
  MINIPULL_TRUSTED_ROOT                 --trusted-root
  HTTPS_PROXY, HTTP_PROXY, NO_PROXY     proxies (lowercase too)
  SSL_CERT_FILE, SSL_CERT_DIR           the system's CA certificates

EXIT CODES:
  0 ok, 1 other error, 2 usage or invalid reference, 3 not found,
  4 authentication refused, 5 network, 6 integrity, 7 local storage,
  8 untrusted (no valid signature with --verify-key or
    --certificate-identity, or a downgrade),
  10 (check) an update is available,
  130, 143 interrupted (SIGINT, SIGTERM): the same command resumes
",
    );
    s
}

/// `minipull CMD --help`: its usage and the options it takes.
pub(crate) fn command_help(command: Command) -> String {
    let c = command.cmd();
    let mut s = String::new();
    wrap(&mut s, &format!("minipull {}: {}", c.word, c.about), 2, 78, true);
    s.push_str(&format!("\nUSAGE:\n  minipull {} [OPTIONS] {}\n", c.word, c.operands));
    match command {
        Command::Pull => s.push_str("  minipull [OPTIONS] REF OUTDIR\n"),
        Command::Inspect => s.push_str("  minipull inspect --layout [OPTIONS] OUTDIR[:NAME]\n"),
        _ => {}
    }
    s.push_str("\nOPTIONS:\n");
    option_lines(&mut s, |o| o.cmds & command.bit() != 0);
    s.push_str("  -h, --help                  print this help\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<(Command, Vec<String>, Given)> {
        match parse(args.iter().map(OsString::from).collect())? {
            Parsed::Run(c, ops, g) => Ok((c, ops.iter().map(|o| o.to_string_lossy().into_owned()).collect(), g)),
            _ => panic!("not a run"),
        }
    }
    fn err(args: &[&str]) -> String {
        match run(args) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{args:?} was accepted"),
        }
    }

    #[test]
    fn finds_the_command_after_global_options() {
        let (c, ops, g) = run(&["--plain-http", "-q", "ls", "o1"]).unwrap();
        assert_eq!((c, ops), (Command::Ls, vec!["o1".to_string()]));
        assert!(g.flag("--quiet") && g.flag("--plain-http"));
        let (c, ops, _) = run(&["--retries", "3", "check", "a", "o"]).unwrap();
        assert_eq!((c, ops.len()), (Command::Check, 2));
        let (c, ops, _) = run(&["docker.io/library/ls", "o"]).unwrap();
        assert_eq!((c, ops[0].as_str()), (Command::Pull, "docker.io/library/ls"));
        let (c, _, _) = run(&["pull", "alpine", "o"]).unwrap();
        assert_eq!(c, Command::Pull);
    }

    #[test]
    fn values_inline_last_wins_and_repeatable() {
        let (_, _, g) = run(&["--platform=linux/arm64", "--platform", "linux/amd64", "a", "o"]).unwrap();
        assert_eq!(g.text("--platform").unwrap().as_deref(), Some("linux/amd64"));
        let (_, _, g) = run(&["--ca-file", "x", "--ca-file=y", "a", "o"]).unwrap();
        assert_eq!(g.paths("--ca-file"), vec![PathBuf::from("x"), PathBuf::from("y")]);
        let (_, _, g) = run(&["--unpack=/r\u{e9}", "a", "o"]).unwrap();
        assert_eq!(g.path("--unpack"), Some(PathBuf::from("/r\u{e9}")));
        let (_, ops, _) = run(&["ls", "--", "-odd"]).unwrap();
        assert_eq!(ops, vec!["-odd".to_string()]);
        let (_, _, g) = run(&["--speed-limit=1k", "a", "o"]).unwrap();
        assert_eq!(g.bytes("--speed-limit").unwrap(), Some(1024));
    }

    #[test]
    fn refusals_name_the_option() {
        assert!(err(&["a", "o", "--platform"]).contains("--platform needs a value"));
        assert!(err(&["--unpack", "--force", "a", "o"]).contains("--unpack needs a value"));
        assert!(err(&["--plain-http=1", "a", "o"]).contains("takes no value"));
        assert!(err(&["ls", "--plain-http", "o"]).contains("does not talk to a registry"));
        assert!(err(&["--unpack", "/x", "ls", "o"]).contains("does not take --unpack"));
        assert!(err(&["gc", "--platform", "x", "o"]).contains("pull, unpack, config"));
        assert!(err(&["--platform", "alpine", "o"]).contains("--platform took \"alpine\""));
        assert!(err(&["push", "a"]).contains("skopeo"));
        assert!(err(&["--bogus", "a", "o"]).contains("unknown option"));
        // An option with a line per command: each command reads its own.
        let (c, _, g) = run(&["extract", "--force", "o", "d"]).unwrap();
        assert!(c == Command::Extract && g.flag("--force"));
        assert!(run(&["unpack", "--force", "o", "r"]).unwrap().2.flag("--force"));
        assert!(err(&["export", "--force", "o", "f"]).contains("pull, unpack, extract"));
    }

    #[test]
    fn commands_are_in_enum_order() {
        for c in &COMMANDS {
            assert_eq!(c.command.word(), c.word);
        }
        // Every option is taken by some command.
        assert!(OPTIONS.iter().all(|o| o.cmds != 0));
    }

    #[test]
    fn help_per_command() {
        let helps: Vec<String> = COMMANDS.iter().map(|c| command_help(c.command)).collect();
        for (i, h) in helps.iter().enumerate() {
            assert!(helps.iter().skip(i + 1).all(|o| o != h));
        }
        assert!(
            helps[Command::Ls as usize].contains("--json") && !helps[Command::Ls as usize].contains("--plain-http")
        );
        match parse(vec!["help".into(), "gc".into()]).unwrap() {
            Parsed::Print(s) => assert_eq!(s, command_help(Command::Gc)),
            _ => panic!(),
        }
        assert!(matches!(parse(Vec::new()).unwrap(), Parsed::Synopsis));
    }
}

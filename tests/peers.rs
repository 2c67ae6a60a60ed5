//! The peers' own extraction and breakout tests, re-expressed case by case:
//! containerd's `pkg/archive` tests, moby's `pkg/archive` untar, whiteout and
//! hard-link tests, umoci's `oci/layer` whiteout tests and bats cases, the
//! image-spec's layer examples and Go's `archive/tar` reader vectors. Each
//! case names the file and test it comes from, gives its input layers (tar
//! entries written here, byte by byte where the peer's input is an odd
//! header) and the tree the peer expects, and runs `minipull unpack` on an
//! OCI layout the test writes (offline).
//!
//! Every run has a canary tree outside ROOTFS: the same files at every
//! ancestor level of ROOTFS (so that any number of `..` lands in one) and a
//! sibling named like ROOTFS; it must stay byte- and metadata-identical (path,
//! type, mode, owner, size, times, link count, content hash, link target).
//! Since these tests run as root on a shared machine, the peers' `/etc` is
//! spelled `/petc` throughout: a binary that followed an absolute link on the
//! host must meet a name that exists nowhere on it, and the names the cases
//! use at the host's root are checked to be absent before and after. A file
//! in ROOTFS that holds a canary file's bytes is an escape too (a read out).
//! Canary, layout and ROOTFS share one tmpfs (so a hard link out is possible,
//! and seen; the commit's syncfs costs nothing), but for the xattr cases.
//!
//! Expected trees follow the semantics minipull adopts where the peers
//! disagree (containerd's): symlinks met on the way resolve inside ROOTFS as
//! if it were `/`, a leading `/` is stripped, `..` is clamped at the root,
//! absolute hard-link targets are inside the root, whiteouts apply only to
//! lower layers, implied directories are 0755 and count as the layer's own,
//! a whiteout under a dead symlinked parent is a no-op, PAX sparse files are
//! expanded, device numbers wider than 32 bits are refused, GNU headers with a
//! ustar prefix are read as Go reads them, and the xattr allowlist
//! (security.capability, security.ima, security.evm, user.*,
//! system.posix_acl_*) wins over a peer case that keeps other namespaces.
//! A case where the peer expects an error may end in an error or in a
//! contained result, never in a change outside ROOTFS.
//!
//! Each group runs every case twice: as is, and with
//! `MINIPULL_TEST_NO_OPENAT2=1` (which forces the walk by hand where the
//! binary knows the switch). Failing cases are reported by name, then the
//! group fails; an escape is reported first, as such.

#![cfg(feature = "unpack")]

mod common;
use common::*;
use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

/// The mtime of every entry that does not say otherwise.
const MTIME: u64 = 1_600_000_000;
/// Ancestor levels of ROOTFS that hold a canary (ROOTFS is below the last).
const LEVELS: usize = 8;
/// Replaced, in names, link targets and checks, by the absolute path of the
/// level that holds ROOTFS (for cases aimed at the canary by absolute path).
const C8: &str = "@C8@";
/// In every canary file: a ROOTFS file holding it read the canary.
const MARK: &str = "CANARY-7f3a";
/// Names the cases may reach at the host's root if a link were followed
/// on the host: none may exist before or after a run.
const HOST_NAMES: &[&str] = &[
    "petc",
    "victim",
    "dne",
    "breakout",
    "upandout",
    "downandout",
    "pwned",
    "escape",
    "dummy",
    "other",
];

// ---------------------------------------------------------------- tar entries

/// One tar entry: an ordinary one (serialized as ustar), or raw bytes.
#[derive(Clone)]
enum Ent {
    Std {
        name: String,
        kind: u8,
        link: String,
        mode: u32,
        data: Vec<u8>,
        mtime: u64,
    },
    Raw {
        block: Vec<u8>,
        data: Vec<u8>,
    },
}

fn std_ent(name: &str, kind: u8, link: &str, mode: u32, data: &[u8]) -> Ent {
    Ent::Std {
        name: name.into(),
        kind,
        link: link.into(),
        mode,
        data: data.to_vec(),
        mtime: MTIME,
    }
}
fn f(name: &str, data: &[u8]) -> Ent {
    std_ent(name, b'0', "", 0o644, data)
}
fn fm(name: &str, data: &[u8], mode: u32) -> Ent {
    std_ent(name, b'0', "", mode, data)
}
/// A regular file with the old typeflag NUL (Go's TypeRegA).
fn f_nul(name: &str) -> Ent {
    std_ent(name, 0, "", 0o644, b"")
}
fn d(name: &str) -> Ent {
    std_ent(name, b'5', "", 0o755, b"")
}
fn dm(name: &str, mode: u32) -> Ent {
    std_ent(name, b'5', "", mode, b"")
}
fn sym(name: &str, target: &str) -> Ent {
    std_ent(name, b'2', target, 0o777, b"")
}
fn hl(name: &str, target: &str) -> Ent {
    std_ent(name, b'1', target, 0o644, b"")
}
fn fifo(name: &str) -> Ent {
    std_ent(name, b'6', "", 0o644, b"")
}
/// A whiteout marker (an empty file).
fn wh(name: &str) -> Ent {
    f(name, b"")
}

impl Ent {
    fn at(mut self, t: u64) -> Ent {
        if let Ent::Std { mtime, .. } = &mut self {
            *mtime = t;
        }
        self
    }
}

fn octal(field: &mut [u8], v: u64) {
    let s = format!("{v:0w$o}\0", w = field.len() - 1);
    assert_eq!(s.len(), field.len(), "{v} does not fit");
    field.copy_from_slice(s.as_bytes());
}

/// GNU base-256: the high bit set, the value big-endian in the rest.
fn base256(field: &mut [u8], v: u64) {
    field.fill(0);
    field[0] = 0x80;
    let n = field.len();
    for (i, b) in v.to_be_bytes().iter().rev().enumerate() {
        if i < n - 1 {
            field[n - 1 - i] = *b;
        }
    }
}

/// Recompute the header checksum (the field counts as spaces).
fn seal(h: &mut [u8]) {
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

/// A ustar header; the caller seals it again after changing it.
fn header(name: &str, kind: u8, mode: u32, link: &str, size: usize, mtime: u64) -> Vec<u8> {
    assert!(name.len() <= 100 && link.len() <= 100, "use pax() or long() for {name}");
    let mut h = vec![0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut h[100..108], u64::from(mode));
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size as u64);
    octal(&mut h[136..148], mtime);
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    seal(&mut h);
    h
}

fn raw(block: Vec<u8>, data: &[u8]) -> Ent {
    Ent::Raw {
        block,
        data: data.to_vec(),
    }
}

fn pax_data(records: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in records {
        let body = [format!(" {k}=").as_bytes(), v, b"\n"].concat();
        let mut len = body.len() + 1;
        while format!("{len}").len() + body.len() != len {
            len += 1;
        }
        out.extend_from_slice(format!("{len}").as_bytes());
        out.extend_from_slice(&body);
    }
    out
}

/// A PAX extended header (`x`, for the next entry; `g`, global).
fn pax(kind: u8, records: &[(&str, &[u8])]) -> Ent {
    let data = pax_data(records);
    raw(header("PaxHeaders.0/x", kind, 0o644, "", data.len(), MTIME), &data)
}

/// A GNU long name (`L`) or long link target (`K`).
fn long(kind: u8, name: &str) -> Ent {
    let data = [name.as_bytes(), b"\0"].concat();
    raw(header("././@LongLink", kind, 0o644, "", data.len(), MTIME), &data)
}

/// A device node with ustar device numbers.
fn dev(name: &str, kind: u8, major: u64, minor: u64) -> Ent {
    let mut h = header(name, kind, 0o644, "", 0, MTIME);
    octal(&mut h[329..337], major);
    octal(&mut h[337..345], minor);
    seal(&mut h);
    raw(h, b"")
}

fn subst(s: &str, c8: &str) -> String {
    s.replace(C8, c8)
}

fn tar_of(ents: &[Ent], c8: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for e in ents {
        let (block, data) = match e {
            Ent::Std {
                name,
                kind,
                link,
                mode,
                data,
                mtime,
            } => (
                header(&subst(name, c8), *kind, *mode, &subst(link, c8), data.len(), *mtime),
                data.clone(),
            ),
            Ent::Raw { block, data } => (block.clone(), data.clone()),
        };
        out.extend_from_slice(&block);
        out.extend_from_slice(&data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// The same entries with a leading `/` taken off every entry name.
fn relative_names(layers: &[Vec<Ent>]) -> Vec<Vec<Ent>> {
    layers
        .iter()
        .map(|l| {
            l.iter()
                .map(|e| match e {
                    Ent::Std { name, .. } if name.starts_with('/') => {
                        let mut e = e.clone();
                        if let Ent::Std { name, .. } = &mut e {
                            *name = name.trim_start_matches('/').to_string();
                        }
                        e
                    }
                    e => e.clone(),
                })
                .collect()
        })
        .collect()
}

/// The same entries with every absolute `/petc` (names and link targets)
/// aimed at the real canary's `petc` beside ROOTFS.
fn aimed_at_canary(layers: &[Vec<Ent>]) -> Option<Vec<Vec<Ent>>> {
    let mut changed = false;
    let out = layers
        .iter()
        .map(|l| {
            l.iter()
                .map(|e| {
                    let mut e = e.clone();
                    if let Ent::Std { name, link, .. } = &mut e {
                        for s in [name, link] {
                            if s.starts_with("/petc") {
                                *s = format!("{C8}{s}");
                                changed = true;
                            }
                        }
                    }
                    e
                })
                .collect()
        })
        .collect();
    changed.then_some(out)
}

// ------------------------------------------------------------------ a layout

/// What a case does to the layout after writing it (umoci's hardening.bats).
#[derive(Clone, Copy, PartialEq)]
enum Tamper {
    None,
    /// The first layer is stored gzip-compressed, and the file under its
    /// digest holds another gzip stream of the same tar (same diff_id).
    LayerDigest,
    /// One byte appended to the config blob.
    ConfigSize,
    /// One byte appended to the (last) layer blob.
    LayerSize,
}

fn put_blob(layout: &Path, bytes: &[u8], stored: &[u8]) -> String {
    let digest = sha256(bytes);
    let p = layout.join("blobs/sha256").join(&digest["sha256:".len()..]);
    std::fs::write(p, stored).unwrap();
    digest
}

/// An OCI layout at `layout` holding one image named `v1` with these layers.
fn write_layout(layout: &Path, layers: &[Vec<u8>], tamper: Tamper) {
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    std::fs::write(layout.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut descs = Vec::new();
    for (i, tar) in layers.iter().enumerate() {
        let last = i + 1 == layers.len();
        let (mt, blob, mut stored) = if tamper == Tamper::LayerDigest && i == 0 {
            let gz = gzip(tar);
            let mut other = gz.clone();
            other[4] ^= 1; // the gzip header's MTIME: same content, other digest
            (OCI_LAYER_GZIP, gz, other)
        } else {
            (OCI_LAYER_TAR, tar.clone(), tar.clone())
        };
        if tamper == Tamper::LayerSize && last {
            stored.push(0);
        }
        let digest = put_blob(layout, &blob, &stored);
        descs.push(serde_json::json!({"mediaType": mt, "digest": digest, "size": blob.len()}));
    }
    let diff_ids: Vec<String> = layers.iter().map(|t| sha256(t)).collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let mut stored = config.clone();
    if tamper == Tamper::ConfigSize {
        stored.push(0);
    }
    let config_digest = put_blob(layout, &config, &stored);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
        "layers": descs,
    }))
    .unwrap();
    let manifest_digest = put_blob(layout, &manifest, &manifest);
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "v1"}}],
    }))
    .unwrap();
    std::fs::write(layout.join("index.json"), index).unwrap();
}

// -------------------------------------------------------------- the canary

/// One run's directories: the canary levels (ROOTFS inside the last), the
/// layout beside them.
struct Site {
    work: PathBuf,
    base: PathBuf,
    levels: Vec<PathBuf>,
    rootfs: PathBuf,
    layout: PathBuf,
}

fn plant(dir: &Path, rel: &str, content: &[u8], mode: u32) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, content).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn site(work: PathBuf) -> Site {
    std::fs::create_dir_all(&work).unwrap();
    let base = work.join("k");
    let mut levels = vec![base.clone()];
    for i in 1..=LEVELS {
        let next = levels[i - 1].join(format!("c{i}"));
        levels.push(next);
    }
    for l in &levels {
        for (rel, mode) in [
            ("petc/passwd", 0o644),
            ("petc/unbroken", 0o644),
            ("petc/emptied", 0o644),
            ("petc/whitedout", 0o644),
            ("petc/shadow", 0o600),
            ("victim/hello", 0o644),
            ("secret", 0o600),
            ("perm400", 0o400),
            ("also-exists-outside-root", 0o640),
        ] {
            plant(l, rel, format!("{MARK} {rel}\n").as_bytes(), mode);
        }
        std::os::unix::fs::symlink("petc", l.join("lnk")).unwrap();
    }
    let top = levels[LEVELS].clone();
    // moby's prefix-sharing sibling (`dest` and `dest-evil`).
    plant(
        &top,
        "rootfs-evil/secret",
        format!("{MARK} sibling\n").as_bytes(),
        0o600,
    );
    Site {
        rootfs: top.join("rootfs"),
        layout: work.join("layout"),
        base,
        levels,
        work,
    }
}

/// What minipull itself writes beside ROOTFS (staging, record, lock).
fn is_own(top: &Path, p: &Path) -> bool {
    p.parent() == Some(top)
        && p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| (n.starts_with("rootfs") || n.starts_with(".rootfs")) && n != "rootfs-evil")
}

/// Every canary path with its type, mode, owner, size, times, link count,
/// content hash and link target. ROOTFS's own parent is compared by type,
/// mode and owner only: minipull creates ROOTFS and its record there.
fn snapshot(s: &Site) -> BTreeMap<String, String> {
    let top = &s.levels[LEVELS];
    let mut out = BTreeMap::new();
    let mut stack = vec![s.base.clone()];
    while let Some(p) = stack.pop() {
        let m = match std::fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) => {
                out.insert(p.display().to_string(), format!("unreadable {e}"));
                continue;
            }
        };
        let ft = m.file_type();
        let kind = if ft.is_symlink() {
            'l'
        } else if ft.is_dir() {
            'd'
        } else if ft.is_file() {
            'f'
        } else {
            '?'
        };
        let mut line = format!("{kind} {:o} {}:{}", m.mode(), m.uid(), m.gid());
        if &p != top {
            line += &format!(
                " size={} nlink={} mtime={}.{} ctime={}.{}",
                m.size(),
                m.nlink(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec()
            );
        }
        match kind {
            'l' => line += &format!(" -> {}", std::fs::read_link(&p).unwrap().display()),
            'f' => line += &format!(" {}", sha256(&std::fs::read(&p).unwrap_or_default())),
            'd' => {
                for e in std::fs::read_dir(&p).unwrap() {
                    let c = e.unwrap().path();
                    if !is_own(top, &c) {
                        stack.push(c);
                    }
                }
            }
            _ => {}
        }
        out.insert(p.strip_prefix(&s.base).unwrap().display().to_string(), line);
    }
    out
}

/// What changed between two snapshots.
fn differences(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in before {
        match after.get(k) {
            None => out.push(format!("removed {k}")),
            Some(w) if w != v => out.push(format!("changed {k}: {v} => {w}")),
            _ => {}
        }
    }
    for k in after.keys().filter(|k| !before.contains_key(*k)) {
        out.push(format!("created {k}: {}", after[k]));
    }
    out
}

/// The canary sees what a breakout would do: a hard link made from inside
/// ROOTFS, the same bytes written again, a file created beside ROOTFS, a
/// mode changed, a file removed. What minipull itself writes beside ROOTFS
/// (its staging tree and record) is not counted.
#[test]
fn the_canary_sees_every_kind_of_change() {
    let holder = TempDir::new("peers-canary");
    let s = site(holder.join("r"));
    let top = s.levels[LEVELS].clone();
    std::fs::create_dir_all(&s.rootfs).unwrap();
    let base = snapshot(&s);
    std::fs::create_dir(top.join(".rootfs.minipull-staging")).unwrap();
    std::fs::write(top.join("rootfs.minipull.json"), b"{}").unwrap();
    std::fs::write(s.rootfs.join("inside"), b"x").unwrap();
    assert!(differences(&base, &snapshot(&s)).is_empty());
    let changes: [(&str, &dyn Fn()); 5] = [
        ("link", &|| {
            std::fs::hard_link(s.levels[3].join("secret"), s.rootfs.join("l")).unwrap()
        }),
        ("rewrite", &|| {
            let p = s.levels[1].join("petc/passwd");
            std::fs::write(&p, std::fs::read(&p).unwrap()).unwrap()
        }),
        ("create", &|| std::os::unix::fs::symlink("x", top.join("new")).unwrap()),
        ("chmod", &|| {
            std::fs::set_permissions(s.levels[8].join("perm400"), std::fs::Permissions::from_mode(0o600)).unwrap()
        }),
        ("remove", &|| {
            std::fs::remove_file(s.levels[0].join("victim/hello")).unwrap()
        }),
    ];
    for (what, change) in changes {
        let before = snapshot(&s);
        change();
        assert!(!differences(&before, &snapshot(&s)).is_empty(), "{what} went unseen");
    }
}

fn host_names_present() -> Vec<String> {
    HOST_NAMES
        .iter()
        .map(|n| format!("/{n}"))
        .filter(|p| std::fs::symlink_metadata(p).is_ok())
        .collect()
}

// --------------------------------------------------------------- the checks

/// What must hold in ROOTFS. Paths are relative to ROOTFS; their parents are
/// resolved inside it (links followed as if it were `/`), the last component
/// is not followed except by `Same`/`NotSame` (containerd's `fs.RootPath`
/// then `os.Stat`).
#[derive(Clone)]
enum Check {
    File(String, Vec<u8>),
    Mode(String, u32),
    Dir(String),
    Link(String, String),
    Absent(String),
    Exists(String),
    Same(String, String),
    NotSame(String, String),
    Mtime(String, i64),
    Fifo(String),
    Dev(String, char, u64, u64),
    Xattr(String, &'static str, Option<Vec<u8>>),
    /// The whole tree, directories with a trailing `/`.
    Exactly(Vec<&'static str>),
}
use Check::*;

fn file(p: impl Into<String>, c: &[u8]) -> Check {
    File(p.into(), c.to_vec())
}
fn has_mode(p: &str, m: u32) -> Check {
    Mode(p.into(), m)
}
fn is_dir(p: impl Into<String>) -> Check {
    Dir(p.into())
}
fn is_link(p: &str, t: &str) -> Check {
    Link(p.into(), t.into())
}
fn absent(p: impl Into<String>) -> Check {
    Absent(p.into())
}
fn exists(p: impl Into<String>) -> Check {
    Exists(p.into())
}
fn same(a: &str, b: &str) -> Check {
    Same(a.into(), b.into())
}
fn not_same(a: &str, b: &str) -> Check {
    NotSame(a.into(), b.into())
}
fn mtime_is(p: impl Into<String>, t: i64) -> Check {
    Mtime(p.into(), t)
}
fn is_fifo(p: &str) -> Check {
    Fifo(p.into())
}
fn is_dev(p: &str, kind: char, major: u64, minor: u64) -> Check {
    Dev(p.into(), kind, major, minor)
}
fn xattr_is(p: &str, name: &'static str, v: Option<Vec<u8>>) -> Check {
    Xattr(p.into(), name, v)
}

/// `rel` inside `root` with links resolved as if `root` were `/` (at most 40
/// of them); the last component is followed only when `follow_last`.
fn resolve(root: &Path, rel: &str, follow_last: bool) -> Option<PathBuf> {
    let mut todo: Vec<String> = rel.split('/').rev().map(str::to_string).collect();
    let mut cur: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(c) = todo.pop() {
        match c.as_str() {
            "" | "." => continue,
            ".." => {
                cur.pop();
                continue;
            }
            _ => {}
        }
        let is_last = todo.iter().all(|t| t.is_empty() || t == ".");
        let p = cur.iter().fold(root.to_path_buf(), |p, c| p.join(c)).join(&c);
        if is_last && !follow_last {
            cur.push(c);
            break;
        }
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    return None;
                }
                let t = std::fs::read_link(&p).ok()?;
                let t = t.to_str()?;
                if t.starts_with('/') {
                    cur.clear();
                }
                todo.extend(t.split('/').rev().map(str::to_string));
            }
            _ => cur.push(c),
        }
    }
    Some(cur.iter().fold(root.to_path_buf(), |p, c| p.join(c)))
}

fn listing(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten() {
            let p = e.unwrap().path();
            let mut rel = p.strip_prefix(root).unwrap().display().to_string();
            if std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
                rel.push('/');
                stack.push(p);
            }
            out.push(rel);
        }
    }
    out.sort();
    out
}

fn lgetxattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let cp = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let cn = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 65536];
    // SAFETY: both strings are NUL-terminated and the buffer is as long as said.
    let n = unsafe { libc::lgetxattr(cp.as_ptr(), cn.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (n >= 0).then(|| buf[..n as usize].to_vec())
}

fn check(root: &Path, c: &Check, c8: &str) -> Result<(), String> {
    let at = |p: &str| resolve(root, p, false).ok_or_else(|| format!("{p}: too many links"));
    let lstat = |p: &str| -> Result<std::fs::Metadata, String> {
        std::fs::symlink_metadata(at(p)?).map_err(|e| format!("{p}: {e}"))
    };
    let stat_in_root = |p: &str| -> Result<std::fs::Metadata, String> {
        let r = resolve(root, p, true).ok_or_else(|| format!("{p}: too many links"))?;
        std::fs::symlink_metadata(r).map_err(|e| format!("{p}: {e}"))
    };
    let show = |b: &[u8]| {
        if b.len() > 40 {
            format!("{} bytes", b.len())
        } else {
            format!("{:?}", String::from_utf8_lossy(b))
        }
    };
    match c {
        File(p, want) => check_file(p, want, &lstat, &at, &show),
        Mode(p, mode) => {
            let m = lstat(p)?;
            (m.mode() & 0o7777 == *mode)
                .then_some(())
                .ok_or_else(|| format!("{p}: mode {:o}, want {mode:o}", m.mode() & 0o7777))
        }
        Dir(p) => lstat(p)?
            .is_dir()
            .then_some(())
            .ok_or_else(|| format!("{p}: not a directory")),
        Link(p, t) => {
            let m = lstat(p)?;
            if !m.file_type().is_symlink() {
                return Err(format!("{p}: not a symlink"));
            }
            let got = std::fs::read_link(at(p)?).unwrap();
            let want = subst(t, c8);
            (got == Path::new(&want))
                .then_some(())
                .ok_or_else(|| format!("{p}: -> {}, want -> {want}", got.display()))
        }
        Absent(p) => match lstat(p) {
            Err(_) => Ok(()),
            Ok(_) => Err(format!("{p}: exists")),
        },
        Exists(p) => lstat(p).map(|_| ()),
        Same(a, b) | NotSame(a, b) => {
            let (ma, mb) = (stat_in_root(a)?, stat_in_root(b)?);
            let same = (ma.dev(), ma.ino()) == (mb.dev(), mb.ino());
            match (c, same) {
                (Same(..), true) | (NotSame(..), false) => Ok(()),
                (Same(..), false) => Err(format!("{a} and {b} are not the same file")),
                _ => Err(format!("{a} and {b} are the same file")),
            }
        }
        Mtime(p, t) => {
            let m = lstat(p)?;
            (m.mtime() == *t)
                .then_some(())
                .ok_or_else(|| format!("{p:?}: mtime {}, want {t}", m.mtime()))
        }
        Fifo(p) => lstat(p)?
            .file_type()
            .is_fifo()
            .then_some(())
            .ok_or_else(|| format!("{p}: not a FIFO")),
        Dev(p, kind, major, minor) => {
            let m = lstat(p)?;
            let ft = m.file_type();
            let k = if ft.is_block_device() {
                'b'
            } else if ft.is_char_device() {
                'c'
            } else {
                '?'
            };
            let got = (k, u64::from(libc::major(m.rdev())), u64::from(libc::minor(m.rdev())));
            (got == (*kind, *major, *minor))
                .then_some(())
                .ok_or_else(|| format!("{p}: {got:?}, want {:?}", (kind, major, minor)))
        }
        Xattr(p, name, want) => {
            let got = lgetxattr(&at(p)?, name);
            (got == *want)
                .then_some(())
                .ok_or_else(|| format!("{p}: xattr {name} is {got:?}, want {want:?}"))
        }
        Exactly(want) => {
            let got = listing(root);
            (got == *want)
                .then_some(())
                .ok_or_else(|| format!("tree {got:?}, want {want:?}"))
        }
    }
}

fn check_file(
    p: &str,
    want: &[u8],
    lstat: &dyn Fn(&str) -> Result<std::fs::Metadata, String>,
    at: &dyn Fn(&str) -> Result<PathBuf, String>,
    show: &dyn Fn(&[u8]) -> String,
) -> Result<(), String> {
    let short: String = p.chars().take(60).collect();
    if !lstat(p)?.is_file() {
        return Err(format!("{short}: not a regular file"));
    }
    let got = std::fs::read(at(p)?).map_err(|e| format!("{short}: {e}"))?;
    (got == want)
        .then_some(())
        .ok_or_else(|| format!("{short}: holds {}, want {}", show(&got), show(want)))
}

// ------------------------------------------------------------------ cases

/// What the run must end in.
#[derive(Clone)]
enum Want {
    /// Exit 0 and every check holds.
    Tree(Vec<Check>),
    /// A non-zero exit, and no ROOTFS.
    Refused,
    /// Either a non-zero exit (and no ROOTFS), or exit 0 and every check holds.
    ErrorOr(Vec<Check>),
    /// Any exit: only the canary counts.
    Contained,
}

#[derive(Clone)]
struct Case {
    name: String,
    /// The peer's file and test this case re-expresses.
    source: String,
    /// What of the unpack semantics it exercises (for the report).
    needs: String,
    layers: Vec<Vec<Ent>>,
    want: Want,
    umask: Option<u32>,
    tamper: Tamper,
}

fn case(name: &str, source: &str, needs: &str, layers: Vec<Vec<Ent>>, want: Want) -> Case {
    Case {
        name: name.into(),
        source: source.into(),
        needs: needs.into(),
        layers,
        want,
        umask: None,
        tamper: Tamper::None,
    }
}

/// The result of one run of one case.
struct Outcome {
    failure: Option<String>,
    escape: Option<String>,
}

fn run_minipull(c: &Case, s: &Site, env: &[(&str, &str)]) -> Output {
    let bin = minipull_bin();
    let layout_arg = format!("{}:v1", s.layout.display());
    let mut cmd = match c.umask {
        Some(u) => {
            let mut cmd = Command::new("sh");
            cmd.arg("-c")
                .arg(format!("umask {u:03o} && exec \"$0\" \"$@\""))
                .arg(&bin);
            cmd
        }
        None => Command::new(&bin),
    };
    cmd.args(["unpack", &layout_arg])
        .arg(&s.rootfs)
        .env_remove("DOCKER_CONFIG")
        .env_remove("MINIPULL_TEST_NO_OPENAT2")
        .env("HOME", "/nonexistent-minipull-home")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn run_case(c: &Case, env: &[(&str, &str)], work: PathBuf) -> Outcome {
    let s = site(work);
    let c8 = s.levels[LEVELS].display().to_string();
    let tars: Vec<Vec<u8>> = c.layers.iter().map(|l| tar_of(l, &c8)).collect();
    write_layout(&s.layout, &tars, c.tamper);
    let host_before = host_names_present();
    assert!(
        host_before.is_empty(),
        "the host has {host_before:?}: these tests cannot tell an escape there"
    );
    let before = snapshot(&s);
    let o = run_minipull(c, &s, env);
    let after = snapshot(&s);
    let host_after = host_names_present();

    let mut escape = differences(&before, &after);
    escape.extend(
        listing(&s.rootfs)
            .iter()
            .filter(|p| !p.ends_with('/'))
            .filter(|p| {
                let p = s.rootfs.join(p);
                std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_file())
                    && std::fs::read(&p).is_ok_and(|b| b.windows(MARK.len()).any(|w| w == MARK.as_bytes()))
            })
            .map(|p| format!("ROOTFS/{p} holds a canary file's content")),
    );
    for h in &host_after {
        escape.push(format!("created {h} on the host"));
        let _ = std::fs::remove_dir_all(h).or_else(|_| std::fs::remove_file(h));
    }
    let err = stderr(&o);
    let first_line = err
        .lines()
        .find(|l| l.contains("error:"))
        .or_else(|| err.lines().find(|l| !l.trim().is_empty()))
        .unwrap_or("")
        .to_string();
    let code = o.status.code();
    let ok = code == Some(0);
    let rootfs_empty = std::fs::read_dir(&s.rootfs).map_or(true, |mut d| d.next().is_none());
    let checks = |cs: &[Check]| -> Option<String> {
        let bad: Vec<String> = cs.iter().filter_map(|c| check(&s.rootfs, c, &c8).err()).collect();
        (!bad.is_empty()).then(|| bad.join("; "))
    };
    let failure = if err.contains("panicked") || code.is_none() {
        Some(format!("crashed ({code:?}): {err}"))
    } else {
        match &c.want {
            Want::Tree(_) if !ok => Some(format!("exit {code:?}, want 0: {first_line}")),
            Want::Tree(cs) | Want::ErrorOr(cs) if ok => checks(cs).map(|b| format!("exit 0 but {b}")),
            Want::Refused if ok => Some("exit 0, want an error".to_string()),
            Want::Refused | Want::ErrorOr(_) if !rootfs_empty => {
                Some(format!("exit {code:?} but ROOTFS was left with content"))
            }
            _ => None,
        }
    };
    let _ = std::fs::remove_dir_all(&s.work);
    Outcome {
        failure,
        escape: (!escape.is_empty()).then(|| escape.join("\n    ")),
    }
}

/// A tmpfs unmounted on drop. Another test thread's fork may hold a copy
/// of a descriptor into it for an instant: retry, then detach it lazily.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(path: PathBuf) -> Mount {
        std::fs::create_dir_all(&path).unwrap();
        run_ok(
            "mount",
            &["-t", "tmpfs", "-o", "size=256m", "tmpfs", path.to_str().unwrap()],
        );
        Mount(path)
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let umount = |args: &[&str]| {
            Command::new("umount")
                .args(args)
                .arg(&self.0)
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        for _ in 0..20 {
            if umount(&[]) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        umount(&["-l"]);
    }
}

/// Run every case of a group in both modes, report, and fail the group if
/// any case failed (escapes listed first). On a tmpfs (canary, layout and
/// ROOTFS on one filesystem, so a hard link out is possible and seen) the
/// commit's syncfs costs nothing; `on_disk` for cases that need `user.*`
/// xattrs, which tmpfs keeps only from Linux 6.6.
fn run_group(group: &str, cases: Vec<Case>, on_disk: bool) {
    // `./build.sh test` runs the suite twice; these cases run once, in the
    // pass against the shipped binary.
    if std::env::var_os("MINIPULL_PEERS_WITH_RELEASE").is_some() && std::env::var_os("MINIPULL_BIN").is_none() {
        eprintln!("{group}: left for the run against the release binary (MINIPULL_BIN)");
        return;
    }
    let start = Instant::now();
    let holder = TempDir::new("peers");
    let fs = (!on_disk).then(|| Mount::tmpfs(holder.join("m")));
    let root = fs.as_ref().map_or(holder.path().to_path_buf(), |f| f.0.clone());
    let mut n = 0;
    let modes: [(&str, &[(&str, &str)]); 2] = [
        ("", &[]),
        (" [MINIPULL_TEST_NO_OPENAT2=1]", &[("MINIPULL_TEST_NO_OPENAT2", "1")]),
    ];
    let mut names = std::collections::HashSet::new();
    let (mut failures, mut escapes) = (Vec::new(), Vec::new());
    for c in &cases {
        assert!(names.insert(c.name.clone()), "two cases named {}", c.name);
        for (mode, env) in modes {
            let t = Instant::now();
            n += 1;
            let o = run_case(c, env, root.join(format!("r{n}")));
            if std::env::var_os("PEERS_TIMING").is_some() {
                eprintln!("{:6.3} s {}{mode}", t.elapsed().as_secs_f64(), c.name);
            }
            if let Some(e) = o.escape {
                escapes.push(format!(
                    "ESCAPE {}{mode} [{}]\n  source: {}\n    {e}",
                    c.name, c.needs, c.source
                ));
            }
            if let Some(f) = o.failure {
                failures.push(format!(
                    "FAIL {}{mode} [{}]: {f}\n  source: {}",
                    c.name, c.needs, c.source
                ));
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "peers::{group}: {} cases, {} runs, {} failing runs, {} escapes, {secs:.1} s",
        cases.len(),
        cases.len() * modes.len(),
        failures.len(),
        escapes.len()
    );
    for e in &escapes {
        eprintln!("{e}");
    }
    for f in &failures {
        eprintln!("{f}");
    }
    assert!(
        escapes.is_empty() && failures.is_empty(),
        "{group}: {} escapes, {} failing runs (listed above)",
        escapes.len(),
        failures.len()
    );
}

// ------------------------------------------------------------ the breakouts

/// containerd `pkg/archive/tar_test.go` `TestBreakouts`, every case, each
/// also with its absolute entry names made relative, and with its absolute
/// `/petc` aimed at the real canary; moby's untar breakout tests.
fn breakout_cases() -> Vec<Case> {
    let src = |n: &str| format!("containerd pkg/archive/tar_test.go TestBreakouts/{n}");
    let unbroken = || Want::Tree(vec![file("petc/unbroken", b"unbroken")]);
    let passwd = || vec![dm("petc", 0o770), f("/petc/passwd", b"inside")];
    let with = |mut a: Vec<Ent>, b: Vec<Ent>| {
        a.extend(b);
        a
    };
    let lower_etc = |content: &[u8]| vec![d("/petc/"), f("/petc/passwd", content)];
    let invalid = || Want::ErrorOr(vec![file("petc/passwd", b"all users")]);
    let mut base = vec![
        case(
            "containerd/SymlinkAbsolute",
            &src("SymlinkAbsolute"),
            "resolve,abs-names",
            vec![vec![
                d("petc"),
                sym("localetc", "/petc"),
                f("/localetc/unbroken", b"unbroken"),
            ]],
            unbroken(),
        ),
        case(
            "containerd/SymlinkUpAndOut",
            &src("SymlinkUpAndOut"),
            "resolve,abs-names,dotdot",
            vec![vec![
                d("petc"),
                d("dummy"),
                sym("localetc", "/dummy/../petc"),
                f("/localetc/unbroken", b"unbroken"),
            ]],
            unbroken(),
        ),
        case(
            "containerd/SymlinkMultipleAbsolute",
            &src("SymlinkMultipleAbsolute"),
            "resolve,abs-names",
            vec![vec![
                d("petc"),
                d("dummy"),
                sym("/dummy/petc", "/petc"),
                sym("localetc", "/dummy/petc"),
                f("/dummy/petc/unbroken", b"unbroken"),
            ]],
            unbroken(),
        ),
        case(
            "containerd/SymlinkMultipleRelative",
            &src("SymlinkMultipleRelative"),
            "resolve,abs-names",
            vec![vec![
                d("petc"),
                d("dummy"),
                sym("/dummy/petc", "/petc"),
                sym("localetc", "./dummy/petc"),
                f("/dummy/petc/unbroken", b"unbroken"),
            ]],
            unbroken(),
        ),
        case(
            "containerd/SymlinkEmptyFile",
            &src("SymlinkEmptyFile"),
            "resolve,abs-names",
            vec![vec![
                d("petc"),
                f("petc/emptied", b"notempty"),
                sym("localetc", "/petc"),
                f("/localetc/emptied", b""),
            ]],
            Want::Tree(vec![file("petc/emptied", b"")]),
        ),
        case(
            "containerd/HardlinkRelative",
            &src("HardlinkRelative"),
            "resolve,abs-names,abs-hardlink,dotdot",
            vec![with(
                passwd(),
                vec![
                    d("breakouts"),
                    sym("breakouts/d1", "../../petc"),
                    hl("breakouts/mypasswd", "/breakouts/d1/passwd"),
                ],
            )],
            Want::Tree(vec![same("breakouts/mypasswd", "petc/passwd")]),
        ),
        case(
            "containerd/HardlinkDownAndOut",
            &src("HardlinkDownAndOut"),
            "resolve,abs-names,abs-hardlink,dotdot",
            vec![with(
                passwd(),
                vec![
                    d("breakouts"),
                    d("downandout"),
                    sym("breakouts/d1", "../downandout/../../petc"),
                    hl("breakouts/mypasswd", "/breakouts/d1/passwd"),
                ],
            )],
            Want::Tree(vec![same("breakouts/mypasswd", "petc/passwd")]),
        ),
        case(
            "containerd/HardlinkAbsolute",
            &src("HardlinkAbsolute"),
            "resolve,abs-names,abs-hardlink",
            vec![with(
                passwd(),
                vec![sym("localetc", "/petc"), hl("localpasswd", "/localetc/passwd")],
            )],
            Want::Tree(vec![same("localpasswd", "petc/passwd")]),
        ),
        case(
            "containerd/HardlinkRelativeLong",
            &src("HardlinkRelativeLong"),
            "resolve,abs-names,abs-hardlink,dotdot",
            vec![with(
                passwd(),
                vec![
                    sym("localetc", "../../../../../../../petc"),
                    hl("localpasswd", "/localetc/passwd"),
                ],
            )],
            Want::Tree(vec![same("localpasswd", "petc/passwd")]),
        ),
        case(
            "containerd/HardlinkRelativeUpAndOut",
            &src("HardlinkRelativeUpAndOut"),
            "resolve,abs-names,abs-hardlink,dotdot",
            vec![with(
                passwd(),
                vec![
                    sym("localetc", "upandout/../../../petc"),
                    hl("localpasswd", "/localetc/passwd"),
                ],
            )],
            // `upandout` does not exist: containerd (and umoci's securejoin)
            // pass it and the `..` that takes it back lexically, where the
            // kernel would refuse; minipull follows containerd.
            Want::Tree(vec![same("localpasswd", "petc/passwd")]),
        ),
        case(
            "containerd/HardlinkDirectRelative",
            &src("HardlinkDirectRelative"),
            "abs-names,dotdot",
            vec![with(passwd(), vec![hl("localpasswd", "../../../../../petc/passwd")])],
            Want::Tree(vec![same("localpasswd", "petc/passwd")]),
        ),
        case(
            "containerd/HardlinkDirectAbsolute",
            &src("HardlinkDirectAbsolute"),
            "abs-names,abs-hardlink",
            vec![with(passwd(), vec![hl("localpasswd", "/petc/passwd")])],
            Want::Tree(vec![same("localpasswd", "petc/passwd")]),
        ),
        case(
            "containerd/SymlinkParentDirectory",
            &src("SymlinkParentDirectory"),
            "abs-names,abs-hardlink,dotdot",
            vec![with(
                passwd(),
                vec![sym("..", "/petc/"), hl("localpasswd", "/petc/passwd")],
            )],
            Want::Tree(vec![same("localpasswd", "petc/passwd")]),
        ),
        case(
            "containerd/SymlinkEmptyFilename",
            &src("SymlinkEmptyFilename"),
            "abs-names,abs-hardlink",
            vec![with(
                passwd(),
                vec![sym("", "/petc/"), hl("localpasswd", "/petc/passwd")],
            )],
            Want::Tree(vec![same("localpasswd", "petc/passwd")]),
        ),
        case(
            "containerd/SymlinkParentRelative",
            &src("SymlinkParentRelative"),
            "resolve,abs-names,abs-hardlink,dotdot",
            vec![with(
                passwd(),
                vec![
                    sym("localetc/sub/..", "/petc/"),
                    hl("/localetc/localpasswd", "/petc/passwd"),
                ],
            )],
            Want::Tree(vec![same("localetc/localpasswd", "petc/passwd")]),
        ),
        case(
            "containerd/SymlinkSlashEnded",
            &src("SymlinkSlashEnded"),
            "abs-names,abs-hardlink",
            vec![with(
                passwd(),
                vec![dm("localetc/", 0o770), hl("/localetc/localpasswd", "/petc/passwd")],
            )],
            Want::Tree(vec![same("localetc/localpasswd", "petc/passwd")]),
        ),
        case(
            "containerd/SymlinkOverrideDirectory",
            &src("SymlinkOverrideDirectory"),
            "resolve,abs-names,abs-hardlink",
            vec![
                with(lower_etc(b"inside"), vec![d("/localetc/")]),
                vec![sym("localetc", "/petc"), hl("/localetc/localpasswd", "/petc/passwd")],
            ],
            Want::Tree(vec![same("localetc/localpasswd", "petc/passwd")]),
        ),
        case(
            "containerd/SymlinkOverrideDirectoryRelative",
            &src("SymlinkOverrideDirectoryRelative"),
            "resolve,abs-names,abs-hardlink,dotdot",
            vec![
                with(lower_etc(b"inside"), vec![d("/localetc/")]),
                vec![
                    sym("localetc", "../../petc"),
                    hl("/localetc/localpasswd", "/petc/passwd"),
                ],
            ],
            Want::Tree(vec![same("localetc/localpasswd", "petc/passwd")]),
        ),
        case(
            "containerd/DirectoryOverrideSymlink",
            &src("DirectoryOverrideSymlink"),
            "abs-names,abs-hardlink",
            vec![
                with(lower_etc(b"inside"), vec![sym("localetc", "/petc")]),
                vec![d("/localetc/"), hl("/localetc/localpasswd", "/petc/passwd")],
            ],
            Want::Tree(vec![same("localetc/localpasswd", "petc/passwd")]),
        ),
        case(
            "containerd/DirectoryOverrideSymlinkAndHardlink",
            &src("DirectoryOverrideSymlinkAndHardlink"),
            "resolve,abs-names,abs-hardlink",
            vec![
                with(
                    lower_etc(b"inside"),
                    vec![sym("localetc", "petc"), hl("/localetc/localpasswd", "/petc/passwd")],
                ),
                vec![d("/localetc/"), f("/localetc/localpasswd", b"different")],
            ],
            Want::Tree(vec![
                not_same("localetc/localpasswd", "petc/passwd"),
                file("petc/passwd", b"inside"),
                file("localetc/localpasswd", b"different"),
            ]),
        ),
        case(
            "containerd/WhiteoutRootParent",
            &src("WhiteoutRootParent"),
            "abs-names",
            vec![lower_etc(b"all users"), vec![wh(".wh...")]],
            invalid(),
        ),
        case(
            "containerd/WhiteoutParent",
            &src("WhiteoutParent"),
            "abs-names",
            vec![lower_etc(b"all users"), vec![wh("petc/.wh...")]],
            invalid(),
        ),
        case(
            "containerd/WhiteoutRoot",
            &src("WhiteoutRoot"),
            "abs-names",
            vec![lower_etc(b"all users"), vec![wh(".wh..")]],
            invalid(),
        ),
        case(
            "containerd/WhiteoutCurrentDirectory",
            &src("WhiteoutCurrentDirectory"),
            "abs-names",
            vec![lower_etc(b"all users"), vec![wh("petc/.wh..")]],
            invalid(),
        ),
        case(
            "containerd/WhiteoutSymlink",
            &src("WhiteoutSymlink"),
            "abs-names",
            vec![
                with(lower_etc(b"all users"), vec![sym("localetc", "/petc")]),
                vec![wh(".wh.localetc")],
            ],
            Want::Tree(vec![file("petc/passwd", b"all users"), absent("localetc")]),
        ),
        case(
            "containerd/WhiteoutSymlinkPath",
            &src("WhiteoutSymlinkPath"),
            "abs-names,resolve",
            vec![
                with(
                    lower_etc(b"all users"),
                    vec![f("/petc/whitedout", b"ahhhh whiteout"), sym("localetc", "/petc")],
                ),
                vec![wh("localetc/.wh.whitedout")],
            ],
            Want::Tree(vec![file("petc/passwd", b"all users"), absent("petc/whitedout")]),
        ),
        case(
            "containerd/WhiteoutDirectoryName",
            &src("WhiteoutDirectoryName"),
            "abs-names",
            vec![
                with(
                    lower_etc(b"all users"),
                    vec![f("/petc/whitedout", b"ahhhh whiteout"), sym("localetc", "/petc")],
                ),
                vec![f(".wh.petc/somefile", b"non-empty")],
            ],
            Want::Tree(vec![
                file("petc/passwd", b"all users"),
                file(".wh.petc/somefile", b"non-empty"),
            ]),
        ),
        case(
            "containerd/WhiteoutDeadSymlinkParent",
            &src("WhiteoutDeadSymlinkParent"),
            "abs-names,wh-deadlink",
            vec![
                with(lower_etc(b"all users"), vec![sym("localetc", "/dne")]),
                vec![wh("localetc/.wh.petc")],
            ],
            Want::Tree(vec![file("petc/passwd", b"all users")]),
        ),
        case(
            "containerd/WhiteoutRelativePath",
            &src("WhiteoutRelativePath"),
            "abs-names,dotdot",
            vec![
                with(lower_etc(b"all users"), vec![sym("localetc", "/dne")]),
                vec![wh("dne/../.wh.petc")],
            ],
            Want::Tree(vec![absent("petc")]),
        ),
        case(
            "containerd/HardlinkSymlinkBeforeCreateTarget",
            &src("HardlinkSymlinkBeforeCreateTarget"),
            "abs-names",
            vec![vec![
                dm("petc", 0o770),
                sym("localpasswd", "/petc/passwd"),
                hl("localpasswd-dup", "localpasswd"),
                f("/petc/passwd", b"after"),
            ]],
            Want::Tree(vec![same("localpasswd-dup", "petc/passwd")]),
        ),
        case(
            "containerd/HardlinkSymlinkRelative",
            &src("HardlinkSymlinkRelative"),
            "abs-names,abs-hardlink",
            vec![with(
                passwd(),
                vec![
                    sym("passwdlink", "../../../../../petc/passwd"),
                    hl("localpasswd", "/passwdlink"),
                ],
            )],
            Want::Tree(vec![
                is_link("localpasswd", "../../../../../petc/passwd"),
                is_link("passwdlink", "../../../../../petc/passwd"),
                same("localpasswd", "petc/passwd"),
            ]),
        ),
        case(
            "containerd/HardlinkSymlinkAbsolute",
            &src("HardlinkSymlinkAbsolute"),
            "abs-names,abs-hardlink",
            vec![with(
                passwd(),
                vec![sym("passwdlink", "/petc/passwd"), hl("localpasswd", "/passwdlink")],
            )],
            Want::Tree(vec![
                is_link("localpasswd", "/petc/passwd"),
                is_link("passwdlink", "/petc/passwd"),
                same("localpasswd", "petc/passwd"),
            ]),
        ),
        // The peer's two files outside the root are the canary's perm400 and
        // also-exists-outside-root, named by their absolute paths.
        case(
            "containerd/HardlinkSymlinkChmod",
            &src("HardlinkSymlinkChmod"),
            "abs-names,abs-hardlink",
            vec![vec![
                sym(&format!("{C8}/also-exists-outside-root"), &format!("{C8}/perm400")),
                hl("sketchylink", &format!("{C8}/also-exists-outside-root")),
            ]],
            Want::Tree(vec![is_link("sketchylink", "@C8@/perm400")]),
        ),
    ];

    // containerd pkg/archive/tar_test.go TestRelativeSymlinks: the base
    // tree, then links whose targets leave it; stored as written, never
    // followed when created.
    let base_tree = || {
        vec![
            d("etc/"),
            f("etc/hosts", b"127.0.0.1 localhost"),
            hl("etc/hosts.allow", "etc/hosts"),
            d("usr/"),
            d("usr/local/"),
            d("usr/local/lib/"),
            fm("usr/local/lib/libnothing.so", b"\0\0", 0o755),
            sym("usr/local/lib/libnothing.so.2", "libnothing.so"),
            d("home/"),
            dm("home/derek/", 0o700),
        ]
    };
    let rel_links: [(&str, &[(&'static str, &'static str)]); 6] = [
        (
            "derek-other-etc-updown",
            &[
                ("home/derek/other", "../other"),
                ("home/derek/etc", "../../etc"),
                ("home/derek/updown", "up/../../other"),
            ],
        ),
        ("derek-breakout", &[("home/derek/breakout", "../../../breakout")]),
        ("root-breakout", &[("breakout", "../../breakout")]),
        ("upandout", &[("breakout", "etc/../../upandout")]),
        ("downandout", &[("home/breakout", "derek/../../../downandout")]),
        ("localetc-absolute", &[("localetc", "/etc")]),
    ];
    for (name, links) in rel_links {
        let mut layer = base_tree();
        let mut checks = vec![
            same("etc/hosts.allow", "etc/hosts"),
            has_mode("home/derek", 0o700),
            is_link("usr/local/lib/libnothing.so.2", "libnothing.so"),
        ];
        for (p, t) in links {
            layer.push(sym(p, t));
            checks.push(is_link(p, t));
        }
        base.push(case(
            &format!("containerd/RelativeSymlinks/{name}"),
            "containerd pkg/archive/tar_test.go TestRelativeSymlinks",
            "-",
            vec![layer],
            Want::Tree(checks),
        ));
    }
    base.push(case(
        "containerd/ApplyTar/DirectoryCreation",
        "containerd pkg/archive/tar_test.go TestApplyTar/DirectoryCreation",
        "abs-names",
        vec![
            vec![d("/petc/")],
            vec![
                d("/petc/subdir"),
                d("/petc/subdir2/"),
                d("/petc/subdir2/more"),
                d("/other/noparent-1/1"),
                d("/other/noparent-2/2/"),
            ],
        ],
        Want::Tree(vec![
            is_dir("petc/subdir"),
            is_dir("petc/subdir2"),
            is_dir("petc/subdir2/more"),
            is_dir("other/noparent-1/1"),
            is_dir("other/noparent-2/2"),
        ]),
    ));

    let mut variants = Vec::new();
    for c in &base {
        let rel = relative_names(&c.layers);
        if c.layers
            .iter()
            .flatten()
            .any(|e| matches!(e, Ent::Std { name, .. } if name.starts_with('/')))
        {
            let mut v = c.clone();
            v.name += "/relative-names";
            v.layers = rel;
            let rest: Vec<&str> = c.needs.split(',').filter(|n| *n != "abs-names").collect();
            v.needs = if rest.is_empty() { "-".into() } else { rest.join(",") };
            variants.push(v);
        }
        if let Some(aimed) = aimed_at_canary(&c.layers) {
            let mut v = c.clone();
            v.name += "/aimed-at-canary";
            v.layers = aimed;
            v.want = Want::Contained;
            v.needs = "contained".into();
            variants.push(v);
        }
    }
    base.extend(variants);

    // The bound on links followed (the kernel's is 40): a chain of 30 is
    // followed, one of 50 refused, whatever does the walk.
    for (n, want) in [(30, true), (50, false)] {
        let mut layer = vec![d("real")];
        for i in 1..n {
            layer.push(sym(&format!("l{i}"), &format!("l{}", i + 1)));
        }
        layer.push(sym(&format!("l{n}"), "real"));
        layer.push(f("l1/file", b"chained"));
        base.push(case(
            &format!("issue25/link-chain-{n}"),
            "issue 25 (a bound of 40 links followed, like the kernel's MAXSYMLINKS)",
            "resolve",
            vec![layer],
            if want {
                Want::Tree(vec![file("real/file", b"chained")])
            } else {
                Want::Refused
            },
        ));
    }

    // moby: each expects "no breakout" (moby refuses them); here an error,
    // or the result of resolving inside the root.
    let m = |t: &str, i: usize| format!("moby pkg/archive/archive_test.go {t}[{i}] (and diff_test.go TestApplyLayer*)");
    base.extend([
        case(
            "moby/InvalidFilenames/dotdot",
            &m("TestUntarInvalidFilenames", 0),
            "dotdot",
            vec![vec![f("../victim/dotdot", b"")]],
            Want::ErrorOr(vec![file("victim/dotdot", b"")]),
        ),
        case(
            "moby/InvalidFilenames/slash-dotdot",
            &m("TestUntarInvalidFilenames", 1),
            "dotdot,abs-names",
            vec![vec![f("/../victim/slash-dotdot", b"")]],
            Want::ErrorOr(vec![file("victim/slash-dotdot", b"")]),
        ),
        case(
            "moby/InvalidSymlink/dotdot",
            &m("TestUntarInvalidSymlink", 0),
            "-",
            vec![vec![sym("dotdot", "../victim/hello")]],
            Want::ErrorOr(vec![is_link("dotdot", "../victim/hello")]),
        ),
        case(
            "moby/InvalidSymlink/slash-dotdot",
            &m("TestUntarInvalidSymlink", 1),
            "-",
            vec![vec![sym("slash-dotdot", "/../victim/hello")]],
            Want::ErrorOr(vec![is_link("slash-dotdot", "/../victim/hello")]),
        ),
        case(
            "moby/InvalidSymlink/write-victim-file",
            &m("TestUntarInvalidSymlink", 2),
            "resolve,dotdot",
            vec![vec![
                sym("loophole-victim", "../victim"),
                f("loophole-victim/file", b""),
            ]],
            Want::ErrorOr(vec![file("victim/file", b"")]),
        ),
        case(
            "moby/InvalidSymlink/symlink-symlink",
            &m("TestUntarInvalidSymlink", 3),
            "-",
            vec![vec![
                sym("loophole-victim", "../victim"),
                sym("symlink", "loophole-victim/hello"),
            ]],
            Want::ErrorOr(vec![is_link("symlink", "loophole-victim/hello")]),
        ),
        case(
            "moby/InvalidSymlink/symlink-hardlink",
            &m("TestUntarInvalidSymlink", 4),
            "resolve",
            vec![vec![
                sym("loophole-victim", "../victim"),
                hl("hardlink", "loophole-victim/hello"),
            ]],
            Want::ErrorOr(vec![]),
        ),
        case(
            "moby/InvalidSymlink/replace-victim",
            &m("TestUntarInvalidSymlink", 5),
            "-",
            vec![vec![sym("loophole-victim", "../victim"), f("loophole-victim", b"")]],
            Want::ErrorOr(vec![file("loophole-victim", b"")]),
        ),
        case(
            "moby/InvalidSymlink/newdir-through-link",
            &m("TestUntarInvalidSymlink", 6),
            "resolve,dotdot",
            vec![vec![
                sym("dir/loophole", "../../victim"),
                f("dir/loophole/newdir/newfile", b""),
            ]],
            Want::ErrorOr(vec![file("victim/newdir/newfile", b"")]),
        ),
        case(
            "moby/SymlinkBreakout/two-hops",
            "moby pkg/archive/archive_test.go TestUntarSymlinkBreakout",
            "resolve,dotdot",
            vec![vec![
                d("inner"),
                sym("inner/go_up", ".."),
                sym("inner/go_up/escape", "../victim"),
                f("inner/go_up/escape/newfile", b""),
            ]],
            Want::ErrorOr(vec![is_link("escape", "../victim")]),
        ),
    ]);
    for (i, (n, entry)) in [
        ("bare-parent", ".."),
        ("parent-child", "../pwned"),
        ("nested-parent", "../../pwned"),
    ]
    .into_iter()
    .enumerate()
    {
        let want = if entry == ".." {
            Want::ErrorOr(vec![])
        } else {
            Want::ErrorOr(vec![file("pwned", b"bad")])
        };
        base.push(case(
            &format!("moby/ParentTraversal/{n}"),
            &m("TestUntarParentTraversalContained", i),
            "dotdot",
            vec![vec![f(entry, b"bad")]],
            want,
        ));
    }
    base
}

#[test]
fn breakouts() {
    run_group("breakouts", breakout_cases(), false);
}

// ------------------------------------------------------------ hard links

fn hardlink_cases() -> Vec<Case> {
    let m = |i: usize| {
        format!("moby pkg/archive/archive_test.go TestUntarInvalidHardlink[{i}] (and diff_test.go TestApplyLayerInvalidHardlink)")
    };
    vec![
        case(
            "moby/InvalidHardlink/dotdot",
            &m(0),
            "dotdot",
            vec![vec![hl("dotdot", "../victim/hello")]],
            Want::ErrorOr(vec![]),
        ),
        case(
            "moby/InvalidHardlink/slash-dotdot",
            &m(1),
            "dotdot,abs-hardlink",
            vec![vec![hl("slash-dotdot", "/../victim/hello")]],
            Want::ErrorOr(vec![]),
        ),
        case(
            "moby/InvalidHardlink/write-victim-file",
            &m(2),
            "dotdot",
            vec![vec![hl("loophole-victim", "../victim"), f("loophole-victim/file", b"")]],
            Want::ErrorOr(vec![]),
        ),
        case(
            "moby/InvalidHardlink/hardlink-symlink",
            &m(3),
            "dotdot",
            vec![vec![
                hl("loophole-victim", "../victim"),
                sym("symlink", "loophole-victim/hello"),
            ]],
            Want::ErrorOr(vec![]),
        ),
        case(
            "moby/InvalidHardlink/hardlink-hardlink",
            &m(4),
            "dotdot",
            vec![vec![
                hl("loophole-victim", "../victim"),
                hl("hardlink", "loophole-victim/hello"),
            ]],
            Want::ErrorOr(vec![]),
        ),
        case(
            "moby/InvalidHardlink/remove-victim",
            &m(5),
            "dotdot",
            vec![vec![hl("loophole-victim", "../victim"), f("loophole-victim", b"")]],
            Want::ErrorOr(vec![]),
        ),
        case(
            "moby/SiblingPrefixContained",
            "moby pkg/archive/archive_test.go TestUntarSiblingPrefixContained",
            "dotdot",
            vec![vec![hl("grab", "../rootfs-evil/secret")]],
            Want::ErrorOr(vec![absent("grab")]),
        ),
        case(
            "moby/HardlinkToSymlink",
            "moby pkg/archive/archive_test.go TestUntarHardlinkToSymlink",
            "-",
            vec![vec![
                sym("symlink1", "regfile"),
                hl("symlink2", "symlink1"),
                f("regfile", b""),
            ]],
            Want::Tree(vec![
                is_link("symlink1", "regfile"),
                is_link("symlink2", "regfile"),
                file("regfile", b""),
            ]),
        ),
        case(
            "moby/AbsoluteHardlink",
            "moby pkg/archive/archive_test.go TestUntarAbsoluteHardlink",
            "abs-hardlink",
            vec![vec![
                fm("usr/bin/perlbug", b"hello", 0o755),
                hl("usr/bin/perlthanks", "/usr/bin/perlbug"),
            ]],
            Want::Tree(vec![
                same("usr/bin/perlbug", "usr/bin/perlthanks"),
                file("usr/bin/perlthanks", b"hello"),
            ]),
        ),
        // moby pkg/archive/archive_test.go TestTarUntarWithHardlinks: a file
        // and its hard link survive the round trip with one inode.
        case(
            "moby/HardlinkSameLayer",
            "moby pkg/archive/archive_test.go TestUntarHardlinks (origin/1, origin/2)",
            "-",
            vec![vec![fm("1", b"hello world", 0o700), hl("2", "1")]],
            Want::Tree(vec![same("1", "2"), file("2", b"hello world")]),
        ),
        // A hard link to a file of a lower layer (image-spec layer.md,
        // "Hardlinks": any path of the tree, not only this layer's).
        case(
            "spec/HardlinkToLowerLayer",
            "image-spec layer.md Hardlinks",
            "-",
            vec![vec![f("bin/busybox", b"bb")], vec![hl("bin/sh", "bin/busybox")]],
            Want::Tree(vec![same("bin/sh", "bin/busybox")]),
        ),
        // kaniko's absolute target through a usrmerge link of a lower layer.
        case(
            "moby/AbsoluteHardlink/through-usrmerge",
            "moby pkg/archive/archive_test.go TestUntarAbsoluteHardlink (target under lib -> usr/lib)",
            "abs-hardlink,resolve",
            vec![
                vec![
                    d("usr"),
                    d("usr/lib"),
                    f("usr/lib/libc.so", b"libc"),
                    sym("lib", "usr/lib"),
                ],
                vec![hl("usr/lib/libc.so.6", "/lib/libc.so")],
            ],
            Want::Tree(vec![same("usr/lib/libc.so.6", "usr/lib/libc.so")]),
        ),
    ]
}

#[test]
fn hardlinks() {
    run_group("hardlinks", hardlink_cases(), false);
}

// ------------------------------------------------------------- whiteouts

/// moby `pkg/archive/diff_test.go` `TestApplyLayerWhiteouts`: four layers
/// applied one after the other, the tree listed after each.
fn moby_whiteouts() -> Vec<Case> {
    let ents = |paths: &[&str]| -> Vec<Ent> {
        paths
            .iter()
            .map(|p| match p.strip_suffix('/') {
                Some(dir) => dm(dir, 0o700),
                None => fm(p, b"", 0o600),
            })
            .collect()
    };
    let base = [
        ".baz",
        "bar/",
        "bar/bax",
        "bar/bay/",
        "baz",
        "foo/",
        "foo/.abc",
        "foo/.bcd/",
        "foo/.bcd/a",
        "foo/cde/",
        "foo/cde/def",
        "foo/cde/efg",
        "foo/fgh",
        "foobar",
    ];
    let changes: [&[&str]; 3] = [
        &[
            ".bay",
            ".wh.baz",
            "foo/",
            "foo/.bce",
            "foo/.wh..wh..opq",
            "foo/cde/",
            "foo/cde/efg",
        ],
        &[
            ".bay",
            ".wh..baz",
            ".wh.foobar",
            "bar/",
            "foo/",
            "foo/.abc",
            "foo/.wh.cde",
        ],
        &[".abc", ".wh..wh..opq", "foobar"],
    ];
    let expected: [Vec<&'static str>; 4] = [
        base.to_vec(),
        vec![
            ".bay",
            ".baz",
            "bar/",
            "bar/bax",
            "bar/bay/",
            "foo/",
            "foo/.bce",
            "foo/cde/",
            "foo/cde/efg",
            "foobar",
        ],
        vec![".bay", "bar/", "bar/bax", "bar/bay/", "foo/", "foo/.abc", "foo/.bce"],
        vec![".abc", "foobar"],
    ];
    let mut layers = vec![ents(&base)];
    let mut out = Vec::new();
    for (i, want) in expected.into_iter().enumerate() {
        if i > 0 {
            layers.push(ents(changes[i - 1]));
        }
        out.push(case(
            &format!("moby/ApplyLayerWhiteouts/{i}"),
            &format!("moby pkg/archive/diff_test.go TestApplyLayerWhiteouts (tcases[{i}])"),
            "wh-own",
            layers.clone(),
            Want::Tree(vec![Exactly(want)]),
        ));
    }
    out
}

/// umoci `oci/layer/tar_extract_test.go` `TestUnpackEntryWhiteout`.
fn umoci_entry_whiteouts() -> Vec<Case> {
    let mut out = Vec::new();
    for (name, path, is_dir) in [
        ("FileInRoot", "rootpath", false),
        ("HiddenFileInRoot", ".hiddenroot", false),
        ("FileInSubdir", "some/path/file", false),
        ("HiddenFileInSubdir", "another/path/.hiddenfile", false),
        ("DirInRoot", "rootpath", true),
        ("HiddenDirInRoot", ".hiddenroot", true),
        ("DirInSubdir", "some/path/dir", true),
        ("HiddenDirInSubdir", "another/path/.hiddendir", true),
    ] {
        let (parent, base) = path.rsplit_once('/').unwrap_or(("", path));
        let mut lower = Vec::new();
        if parent.is_empty() {
            // The parent is ROOTFS itself: its times come from `./`.
            lower.push(d("./").at(123));
        } else {
            let first = parent.split('/').next().unwrap();
            lower.push(d(first));
            lower.push(d(parent).at(123));
        }
        if is_dir {
            lower.extend([
                d(path),
                f(&format!("{path}/file1"), b"some value"),
                f(&format!("{path}/file2"), b"some value"),
                d(&format!("{path}/.subdir")),
                f(&format!("{path}/.subdir/file3"), b"some value"),
            ]);
        } else {
            lower.push(f(path, b"some value"));
        }
        let whiteout = if parent.is_empty() {
            format!(".wh.{base}")
        } else {
            format!("{parent}/.wh.{base}")
        };
        out.push(case(
            &format!("umoci/UnpackEntryWhiteout/{name}"),
            &format!("umoci oci/layer/tar_extract_test.go TestUnpackEntryWhiteout/{name}"),
            if parent.is_empty() {
                "wh-mtime,root-entry"
            } else {
                "wh-mtime"
            },
            vec![lower, vec![wh(&whiteout)]],
            Want::Tree(vec![absent(path), mtime_is(parent, 123)]),
        ));
    }
    out
}

/// umoci `oci/layer/tar_extract_test.go` `TestUnpackOpaqueWhiteout`: lower
/// entries in one layer, upper ones in the next, then an opaque marker for
/// the directory; what the upper layer holds survives, the rest goes.
fn umoci_opaque_whiteouts() -> Vec<Case> {
    // (path, kind f|0|d|l|p, link target, upper, should survive)
    type D = (&'static str, char, &'static str, bool, bool);
    let bad = "../../../../../../../../../../../../petc/shadow";
    let bad2 = "/../../../../../../../../../../../../petc/shadow";
    let tables: Vec<(&str, &str, Vec<D>)> = vec![
        ("EmptyDir", "-", vec![]),
        (
            "OneLevel",
            "-",
            vec![
                ("file", 'f', "", false, false),
                ("link", 'l', "..", true, true),
                ("badlink", 'l', "./nothing", true, true),
                ("fifo", 'p', "", false, false),
            ],
        ),
        (
            "OneLevelNoUpper",
            "-",
            vec![
                ("file", 'f', "", false, false),
                ("link", 'l', "..", false, false),
                ("badlink", 'l', "./nothing", false, false),
                ("fifo", 'p', "", false, false),
            ],
        ),
        (
            "TwoLevel",
            "-",
            vec![
                ("file", 'f', "", true, true),
                ("link", 'l', "..", false, false),
                ("badlink", 'l', "./nothing", false, false),
                ("dir", 'd', "", true, true),
                ("dir/file", '0', "", true, true),
                ("dir/link", 'l', "../badlink", false, false),
                ("dir/verybadlink", 'l', bad, true, true),
                ("dir/verybadlink2", 'l', bad2, false, false),
            ],
        ),
        (
            "TwoLevelNoUpper",
            "-",
            vec![
                ("file", 'f', "", false, false),
                ("link", 'l', "..", false, false),
                ("badlink", 'l', "./nothing", false, false),
                ("dir", 'd', "", false, false),
                ("dir/file", '0', "", false, false),
                ("dir/link", 'l', "../badlink", false, false),
                ("dir/verybadlink", 'l', bad, false, false),
                ("dir/verybadlink2", 'l', bad2, false, false),
            ],
        ),
        (
            "MultiLevel",
            "-",
            vec![
                ("level1_file", 'f', "", true, true),
                ("level1_link", 'l', "..", false, false),
                ("level1a", 'd', "", true, true),
                ("level1a/level2_file", '0', "", false, false),
                ("level1a/level2_link", 'l', "../../../", true, true),
                ("level1a/level2a", 'd', "", false, false),
                ("level1a/level2a/level3_fileA", 'f', "", false, false),
                ("level1a/level2a/level3_fileB", 'f', "", false, false),
                ("level1a/level2b", 'd', "", true, true),
                ("level1a/level2b/level3_fileA", 'f', "", true, true),
                ("level1a/level2b/level3_fileB", 'f', "", false, false),
                ("level1a/level2b/level3", 'd', "", false, false),
                ("level1a/level2b/level3/level4", 'd', "", false, false),
                ("level1a/level2b/level3/level4", 'd', "", false, false),
                ("level1a/level2b/level3_fileA", 'f', "", true, true),
                ("level1b", 'd', "", false, false),
                ("level1b/level2_fileA", 'f', "", false, false),
                ("level1b/level2_fileB", 'f', "", false, false),
                ("level1b/level2", 'd', "", false, false),
                ("level1b/level2/level3_file", 'f', "", false, false),
            ],
        ),
        (
            "MissingUpperAncestor",
            "opq-implied",
            vec![
                ("some", 'd', "", false, true),
                ("some/dir", 'd', "", false, true),
                ("some/dir/somewhere", 'f', "", true, true),
                ("another", 'd', "", false, false),
                ("another/dir", 'd', "", false, false),
                ("another/dir/somewhere", 'f', "", false, false),
            ],
        ),
        (
            "UpperWhiteout",
            "wh-own",
            vec![
                (".wh.fileB", 'f', "", true, true),
                ("fileA", 'f', "", true, true),
                ("fileB", 'f', "", true, true),
                ("fileC", 'f', "", false, false),
                (".wh.fileA", 'f', "", true, true),
                (".wh.fileC", 'f', "", true, true),
            ],
        ),
        (
            "UpperDirWhiteout",
            "wh-own",
            vec![
                (".wh.dir2", 'f', "", true, true),
                ("file", 'f', "", false, false),
                ("dir1", 'd', "", true, true),
                ("dir1/file", '0', "", true, true),
                ("dir1/link", 'l', "../badlink", false, false),
                ("dir1/verybadlink", 'l', bad, true, true),
                ("dir1/verybadlink2", 'l', bad2, false, false),
                (".wh.dir1", 'f', "", true, true),
                ("dir2", 'd', "", true, true),
                ("dir2/file", '0', "", true, true),
                ("dir2/link", 'l', "../badlink", false, false),
            ],
        ),
    ];
    let mut out = Vec::new();
    for (name, needs, dentries) in tables {
        let ent = |(p, k, l, _, _): &D| {
            let p = format!("test-subdir/{p}");
            match k {
                'f' => f(&p, b""),
                '0' => f_nul(&p),
                'd' => d(&p),
                'l' => sym(&p, l),
                _ => fifo(&p),
            }
        };
        let mut lower = vec![d("test-subdir")];
        lower.extend(dentries.iter().filter(|e| !e.3).map(ent));
        let mut upper: Vec<Ent> = dentries.iter().filter(|e| e.3).map(ent).collect();
        upper.push(wh("test-subdir/.wh..wh..opq"));
        let mut checks = vec![is_dir("test-subdir")];
        for (p, _, _, _, survive) in &dentries {
            if p.rsplit('/').next().unwrap().starts_with(".wh.") {
                continue;
            }
            let full = format!("test-subdir/{p}");
            checks.push(if *survive { exists(full) } else { absent(full) });
        }
        out.push(case(
            &format!("umoci/UnpackOpaqueWhiteout/{name}"),
            &format!("umoci oci/layer/tar_extract_test.go TestUnpackOpaqueWhiteout/{name}"),
            needs,
            vec![lower, upper],
            Want::Tree(checks),
        ));
    }
    out
}

/// issue 25's precisions, which no peer test pins: what a layer created is
/// keyed by the resolved path (one file, two names through usrmerge).
fn resolved_name_whiteouts() -> Vec<Case> {
    let lower = || vec![d("usr"), d("usr/lib"), f("usr/lib/x", b"old"), sym("lib", "usr/lib")];
    vec![
        case(
            "issue25/created-keyed-by-resolved-path/whiteout",
            "issue 25 (precisions): umoci UpperWhiteout written through lib -> usr/lib",
            "resolve,wh-own",
            vec![lower(), vec![f("lib/x", b"new"), wh("usr/lib/.wh.x")]],
            Want::Tree(vec![file("usr/lib/x", b"new"), is_link("lib", "usr/lib")]),
        ),
        case(
            "issue25/created-keyed-by-resolved-path/opaque",
            "issue 25 (precisions): umoci UpperWhiteout (opaque) written through lib -> usr/lib",
            "resolve,wh-own",
            vec![lower(), vec![f("lib/y", b"new"), wh("usr/lib/.wh..wh..opq")]],
            Want::Tree(vec![file("usr/lib/y", b"new"), absent("usr/lib/x")]),
        ),
    ]
}

#[test]
fn whiteouts() {
    let mut cases = moby_whiteouts();
    cases.extend(resolved_name_whiteouts());
    cases.extend(umoci_entry_whiteouts());
    cases.extend(umoci_opaque_whiteouts());
    run_group("whiteouts", cases, false);
}

// ------------------------------------------------- sparse files, headers

/// `size` bytes, zero but for the fragments.
fn expanded(size: usize, frags: &[(usize, &[u8])]) -> Vec<u8> {
    let mut v = vec![0u8; size];
    for (off, data) in frags {
        v[*off..off + data.len()].copy_from_slice(data);
    }
    v
}

const FRAGS: [(usize, &[u8]); 3] = [(0, b"abcde"), (100, b"fghij"), (195, b"klmno")];

fn packed(frags: &[(usize, &[u8])]) -> Vec<u8> {
    frags.iter().flat_map(|(_, d)| d.to_vec()).collect()
}

/// A file entry whose data is `data` (the header's size is its length).
fn file_with(name: &str, data: &[u8]) -> Ent {
    raw(header(name, b'0', 0o644, "", data.len(), MTIME), data)
}

/// GNU sparse 1.0: the map at the start of the data, in 512-byte blocks.
fn sparse_10(name: &str, size: usize, frags: &[(usize, &[u8])]) -> Vec<Ent> {
    let mut map = format!("{}\n", frags.len());
    for (off, d) in frags {
        map += &format!("{off}\n{}\n", d.len());
    }
    let mut data = map.into_bytes();
    data.resize(data.len().div_ceil(512) * 512, 0);
    data.extend(packed(frags));
    let size_s = size.to_string();
    vec![
        pax(
            b'x',
            &[
                ("GNU.sparse.major", b"1"),
                ("GNU.sparse.minor", b"0"),
                ("GNU.sparse.name", name.as_bytes()),
                ("GNU.sparse.realsize", size_s.as_bytes()),
            ],
        ),
        file_with(&format!("GNUSparseFile.0/{name}"), &data),
    ]
}

/// Old GNU sparse (`S`): up to four map entries in the header itself.
fn sparse_old_gnu(name: &str, size: usize, frags: &[(usize, &[u8])]) -> Ent {
    let data = packed(frags);
    let mut h = header(name, b'S', 0o644, "", data.len(), MTIME);
    h[257..265].copy_from_slice(b"ustar  \0");
    for (i, (off, d)) in frags.iter().enumerate() {
        let at = 386 + i * 24;
        octal(&mut h[at..at + 12], *off as u64);
        octal(&mut h[at + 12..at + 24], d.len() as u64);
    }
    h[482] = 0;
    octal(&mut h[483..495], size as u64);
    seal(&mut h);
    raw(h, &data)
}

fn header_cases() -> Vec<Case> {
    let go = |t: &str| format!("go src/archive/tar/reader_test.go {t}");
    let full = expanded(200, &FRAGS);
    let frag_records: Vec<(String, String)> = FRAGS
        .iter()
        .flat_map(|(o, d)| {
            [
                ("GNU.sparse.offset".to_string(), o.to_string()),
                ("GNU.sparse.numbytes".to_string(), d.len().to_string()),
            ]
        })
        .collect();
    let mut recs00: Vec<(&str, &[u8])> = vec![("GNU.sparse.size", b"200"), ("GNU.sparse.numblocks", b"3")];
    recs00.extend(frag_records.iter().map(|(k, v)| (k.as_str(), v.as_bytes())));
    let sparse00 = vec![pax(b'x', &recs00), file_with("sparse00", &packed(&FRAGS))];
    let sparse01 = vec![
        pax(
            b'x',
            &[
                ("GNU.sparse.size", b"200"),
                ("GNU.sparse.numblocks", b"3"),
                ("GNU.sparse.map", b"0,5,100,5,195,5"),
            ],
        ),
        file_with("sparse01", &packed(&FRAGS)),
    ];
    let sparse_overlap = vec![
        pax(
            b'x',
            &[
                ("GNU.sparse.size", b"200"),
                ("GNU.sparse.numblocks", b"2"),
                ("GNU.sparse.map", b"0,5,3,5"),
            ],
        ),
        file_with("overlap", b"abcdefghij"),
    ];
    let sparse_beyond = vec![
        pax(
            b'x',
            &[
                ("GNU.sparse.size", b"200"),
                ("GNU.sparse.numblocks", b"1"),
                ("GNU.sparse.map", b"198,5"),
            ],
        ),
        file_with("beyond", b"abcde"),
    ];
    let dev_wide = |major: u64, minor: u64| {
        let mut h = header("dev", b'3', 0o644, "", 0, MTIME);
        base256(&mut h[329..337], major);
        base256(&mut h[337..345], minor);
        seal(&mut h);
        vec![raw(h, b"")]
    };
    // Go 1.7's writer: GNU magic with the name split into a ustar prefix.
    let aaa = "a".repeat(120);
    let gnu_prefix = {
        let mut h = header("foo", b'0', 0o644, "", 0, MTIME);
        h[257..265].copy_from_slice(b"ustar  \0");
        h[345..345 + aaa.len()].copy_from_slice(aaa.as_bytes());
        seal(&mut h);
        vec![raw(h, b"")]
    };
    // A GNU header whose atime and ctime are valid numbers: no prefix.
    let gnu_times = {
        let mut h = header("foo", b'0', 0o644, "", 0, MTIME);
        h[257..265].copy_from_slice(b"ustar  \0");
        octal(&mut h[345..357], MTIME);
        octal(&mut h[357..369], MTIME);
        seal(&mut h);
        vec![raw(h, b"")]
    };
    // moby's broken.tar: ustar magic, a base-256 uid and a ustar prefix.
    let cpanm_dir = "root/.cpanm/work/1395823785.24209/Plack-1.0030/blib/man3";
    let cpanm_name = "Plack::Middleware::LighttpdScriptNameFix.3pm";
    let ustar_gnu = {
        let mut h = header(cpanm_name, b'0', 0o644, "", 4, MTIME);
        base256(&mut h[108..116], 0o10000000);
        h[345..345 + cpanm_dir.len()].copy_from_slice(cpanm_dir.as_bytes());
        seal(&mut h);
        vec![raw(h, b"man\n")]
    };
    let long_path = format!("{}/{}", "d".repeat(80), "e".repeat(70));
    let mut bad_sum = header("f", b'0', 0o644, "", 0, MTIME);
    bad_sum[148] ^= 1;
    let mut bad_size = header("f", b'0', 0o644, "", 0, MTIME);
    bad_size[124..136].copy_from_slice(b"0000000x000\0");
    seal(&mut bad_size);
    vec![
        case(
            "go/sparse-pax-0.0",
            &go("TestReader (testdata/sparse-formats.tar: sparse-posix-0.0)"),
            "sparse",
            vec![sparse00],
            Want::Tree(vec![file("sparse00", &full)]),
        ),
        case(
            "go/sparse-pax-0.1",
            &go("TestReader (testdata/sparse-formats.tar: sparse-posix-0.1)"),
            "sparse",
            vec![sparse01],
            Want::Tree(vec![file("sparse01", &full)]),
        ),
        case(
            "go/sparse-pax-1.0",
            &go("TestReader (testdata/sparse-formats.tar: sparse-posix-1.0)"),
            "sparse",
            vec![sparse_10("sparse10", 200, &FRAGS)],
            Want::Tree(vec![file("sparse10", &full), absent("GNUSparseFile.0")]),
        ),
        case(
            "go/sparse-pax-1.0-trailing-hole",
            &go("TestReadGNUSparsePAXHeaders / pax-sparse-big.tar (a hole at the end)"),
            "sparse",
            vec![sparse_10("tail", 4096, &[(0, b"head")])],
            Want::Tree(vec![
                file("tail", &expanded(4096, &[(0, b"head")])),
                absent("GNUSparseFile.0"),
            ]),
        ),
        case(
            "go/sparse-old-gnu",
            &go("TestReader (testdata/sparse-formats.tar: sparse-gnu)"),
            "sparse",
            vec![vec![sparse_old_gnu("sparsegnu", 200, &FRAGS)]],
            Want::ErrorOr(vec![file("sparsegnu", &full)]),
        ),
        case(
            "go/sparse-overlapping-map",
            &go("TestReadGNUSparsePAXHeaders (invalid map: fragments overlap)"),
            "sparse",
            vec![sparse_overlap],
            Want::Refused,
        ),
        case(
            "go/sparse-map-beyond-size",
            &go("TestReadGNUSparsePAXHeaders (invalid map: past the real size)"),
            "sparse",
            vec![sparse_beyond],
            Want::Refused,
        ),
        case(
            "go/pax-multi-hdrs",
            &go("TestReader (testdata/pax-multi-hdrs.tar)"),
            "-",
            vec![vec![
                pax(b'x', &[("path", b"PAX1/PAX1/long-path-name")]),
                pax(b'x', &[("linkpath", b"PAX4/PAX4/long-linkpath-name")]),
                sym("bar", "PAX3"),
            ]],
            Want::Tree(vec![is_link("bar", "PAX4/PAX4/long-linkpath-name"), absent("PAX1")]),
        ),
        case(
            "go/gnu-multi-hdrs",
            &go("TestReader (testdata/gnu-multi-hdrs.tar)"),
            "-",
            vec![vec![
                long(b'L', "GNU1/GNU1/long-path-name"),
                long(b'L', "GNU2/GNU2/long-path-name"),
                long(b'K', "GNU3/GNU3/long-linkpath-name"),
                long(b'K', "GNU4/GNU4/long-linkpath-name"),
                sym("bar", "x"),
            ]],
            Want::Tree(vec![
                is_link("GNU2/GNU2/long-path-name", "GNU4/GNU4/long-linkpath-name"),
                absent("GNU1"),
                absent("bar"),
            ]),
        ),
        case(
            "go/pax-global-records",
            &go("TestReader (testdata/pax-global-records.tar)"),
            "-",
            vec![vec![
                pax(b'g', &[("path", b"global1"), ("mtime", b"1500000000.0")]),
                f("file1", b""),
                pax(b'x', &[("path", b"file2")]),
                f("ignored", b""),
                pax(b'g', &[("path", b"")]),
                f("file3", b""),
                pax(b'x', &[("mtime", b"1400000000")]),
                f("file4", b""),
            ]],
            Want::Tree(vec![
                Exactly(vec!["file1", "file2", "file3", "file4"]),
                mtime_is("file1", MTIME as i64),
                mtime_is("file4", 1_400_000_000),
            ]),
        ),
        case(
            "go/pax-path-hdr",
            &go("TestReader (testdata/pax-path-hdr.tar: a PAX path longer than 100 bytes)"),
            "-",
            vec![vec![
                pax(b'x', &[("path", long_path.as_bytes())]),
                f("short", b"long\n"),
            ]],
            Want::Tree(vec![file(long_path.clone(), b"long\n"), absent("short")]),
        ),
        case(
            "go/pax-nul-path",
            &go("TestReader (testdata/pax-nul-path.tar)"),
            "-",
            vec![vec![pax(b'x', &[("path", b"NUL\0in/path")]), f("x", b"")]],
            Want::Refused,
        ),
        case(
            "go/invalid-go17-gnu-magic-ustar-prefix",
            &go("TestReader (testdata/invalid-go17.tar); containerd keeps the same fixture"),
            "gnu-prefix",
            vec![gnu_prefix],
            Want::Tree(vec![file(format!("{aaa}/foo"), b""), absent("foo")]),
        ),
        case(
            "go/gnu-header-with-times",
            &go("TestReader (testdata/gnu.tar: atime/ctime parse, no prefix)"),
            "-",
            vec![gnu_times],
            Want::Tree(vec![Exactly(vec!["foo"])]),
        ),
        case(
            "moby/UntarUstarGnuConflict",
            "moby pkg/archive/archive_test.go TestUntarUstarGnuConflict (testdata/broken.tar)",
            "-",
            vec![ustar_gnu],
            Want::Tree(vec![file(format!("{cpanm_dir}/{cpanm_name}"), b"man\n")]),
        ),
        case(
            "go/device-major-over-32-bits",
            &go("TestReader (base-256 device numbers); issue: truncated to 32 bits"),
            "dev64",
            vec![dev_wide(1 << 32, 1)],
            Want::Refused,
        ),
        case(
            "go/device-minor-over-32-bits",
            &go("TestReader (base-256 device numbers); issue: truncated to 32 bits"),
            "dev64",
            vec![dev_wide(1, (1 << 32) + 5)],
            Want::Refused,
        ),
        case(
            "go/device-base256-in-range",
            &go("TestReader (base-256 device numbers that fit)"),
            "-",
            vec![dev_wide(4095, 1_048_575)],
            Want::Tree(vec![is_dev("dev", 'c', 4095, 1_048_575)]),
        ),
        case(
            "go/bad-checksum",
            &go("TestReader (ErrHeader on a bad checksum)"),
            "-",
            vec![vec![raw(bad_sum, b"")]],
            Want::Refused,
        ),
        case(
            "go/bad-size-field",
            &go("TestReader (testdata/neg-size.tar, issue10968.tar: a corrupt size)"),
            "-",
            vec![vec![raw(bad_size, b"")]],
            Want::Refused,
        ),
        // moby pkg/archive/archive_test.go TestImpliedDirectoryPermissions:
        // implied directories 0755 whatever the umask, explicit modes as given.
        {
            let mut c = implied_dirs_case("moby/ImpliedDirectoryPermissions/umask-077");
            c.umask = Some(0o077);
            c
        },
        {
            let mut c = implied_dirs_case("moby/ImpliedDirectoryPermissions/umask-027");
            c.umask = Some(0o027);
            c
        },
    ]
}

fn implied_dirs_case(name: &str) -> Case {
    case(
        name,
        "moby pkg/archive/archive_test.go TestImpliedDirectoryPermissions",
        "umask",
        vec![vec![
            fm("deeply/nested/and/implied", b"", 0),
            dm("explicit/", 0o644),
            dm("explicit/permissions/", 0o600),
            dm("explicit/permissions/specified/", 0o400),
            dm("explicit/permissions/umask/", 0o777),
            fm("explicit/permissions/umask/file", b"", 0o666),
            dm("implied/dir-without-trailing-slash", 0o700),
        ]],
        Want::Tree(vec![
            has_mode("deeply", 0o755),
            has_mode("deeply/nested", 0o755),
            has_mode("deeply/nested/and", 0o755),
            has_mode("explicit", 0o644),
            has_mode("explicit/permissions", 0o600),
            has_mode("explicit/permissions/specified", 0o400),
            has_mode("explicit/permissions/umask", 0o777),
            has_mode("explicit/permissions/umask/file", 0o666),
            has_mode("implied", 0o755),
            has_mode("implied/dir-without-trailing-slash", 0o700),
        ]),
    )
}

#[test]
fn sparse_and_headers() {
    run_group("sparse_and_headers", header_cases(), false);
}

// ------------------------------------------------ the image-spec examples

fn image_spec_cases() -> Vec<Case> {
    let src = |s: &str| format!("image-spec layer.md {s}");
    let abc_lower = vec![d("a/"), d("a/b/"), d("a/b/c/"), f("a/b/c/bar", b"bar")];
    let abc_result = || Want::Tree(vec![Exactly(vec!["a/", "a/b/", "a/b/c/", "a/b/c/foo"])]);
    let bin_lower = vec![
        d("etc/"),
        f("etc/my-app-config", b"cfg"),
        d("bin/"),
        f("bin/my-app-binary", b"bin"),
        f("bin/my-app-tools", b"tools"),
        d("bin/tools/"),
        f("bin/tools/my-app-tool-one", b"one"),
    ];
    let bin_result = || Want::Tree(vec![Exactly(vec!["bin/", "etc/", "etc/my-app-config"])]);
    vec![
        case(
            "spec/changeset",
            &src("Representing Changes (rootfs-c9d-v1 -> rootfs-c9d-v1.s1)"),
            "-",
            vec![
                vec![
                    d("./"),
                    d("./etc/"),
                    f("./etc/my-app-config", b"cfg"),
                    d("./bin/"),
                    fm("./bin/my-app-binary", b"bin", 0o755),
                    fm("./bin/my-app-tools", b"tools v1", 0o755),
                ],
                vec![
                    d("./etc/my-app.d/"),
                    f("./etc/my-app.d/default.cfg", b"default"),
                    fm("./bin/my-app-tools", b"tools v2", 0o755),
                    wh("./etc/.wh.my-app-config"),
                ],
            ],
            Want::Tree(vec![
                Exactly(vec![
                    "bin/",
                    "bin/my-app-binary",
                    "bin/my-app-tools",
                    "etc/",
                    "etc/my-app.d/",
                    "etc/my-app.d/default.cfg",
                ]),
                file("bin/my-app-tools", b"tools v2"),
            ]),
        ),
        case(
            "spec/opaque-first",
            &src("Whiteouts (a/.wh..wh..opq before a/b/)"),
            "-",
            vec![
                abc_lower.clone(),
                vec![
                    d("a/"),
                    wh("a/.wh..wh..opq"),
                    d("a/b/"),
                    d("a/b/c/"),
                    f("a/b/c/foo", b"foo"),
                ],
            ],
            abc_result(),
        ),
        case(
            "spec/opaque-last",
            &src("Whiteouts (the equivalent layer: a/.wh..wh..opq last)"),
            "wh-own",
            vec![
                abc_lower.clone(),
                vec![
                    d("a/"),
                    d("a/b/"),
                    d("a/b/c/"),
                    f("a/b/c/foo", b"foo"),
                    wh("a/.wh..wh..opq"),
                ],
            ],
            abc_result(),
        ),
        case(
            "spec/opaque-last-implied-parents",
            &src("Whiteouts (opaque last, directories only implied)"),
            "opq-implied",
            vec![abc_lower.clone(), vec![f("a/b/c/foo", b"foo"), wh("a/.wh..wh..opq")]],
            abc_result(),
        ),
        case(
            "spec/opaque-bin",
            &src("Opaque Whiteout (bin/.wh..wh..opq)"),
            "-",
            vec![bin_lower.clone(), vec![d("bin/"), wh("bin/.wh..wh..opq")]],
            bin_result(),
        ),
        case(
            "spec/explicit-whiteouts-bin",
            &src("Opaque Whiteout (the explicit equivalent)"),
            "-",
            vec![
                bin_lower.clone(),
                vec![
                    d("bin/"),
                    wh("bin/.wh.my-app-binary"),
                    wh("bin/.wh.my-app-tools"),
                    wh("bin/.wh.tools"),
                ],
            ],
            bin_result(),
        ),
        case(
            "spec/whiteout-same-layer-file",
            &src("Whiteouts (MUST only apply to resources in lower/parent layers)"),
            "wh-own",
            vec![vec![f("x", b"old")], vec![f("x", b"new"), wh(".wh.x")]],
            Want::Tree(vec![file("x", b"new")]),
        ),
        case(
            "spec/whiteout-same-layer-dir",
            &src("Whiteouts (files present in the same layer as a whiteout)"),
            "wh-own",
            vec![vec![d("keep")], vec![d("d"), f("d/f", b"f"), wh(".wh.d")]],
            Want::Tree(vec![file("d/f", b"f"), is_dir("keep")]),
        ),
        case(
            "spec/dir-over-dir-attributes",
            &src("Changeset over existing files (both directories: attributes replaced)"),
            "-",
            vec![
                vec![dm("d", 0o700), f("d/keep", b"k")],
                vec![dm("d", 0o751).at(1_234_567)],
            ],
            Want::Tree(vec![
                has_mode("d", 0o751),
                mtime_is("d", 1_234_567),
                file("d/keep", b"k"),
            ]),
        ),
        case(
            "spec/file-over-dir",
            &src("Changeset over existing files (other cases: removed, recreated)"),
            "-",
            vec![vec![d("x"), f("x/y", b"y")], vec![f("x", b"file")]],
            Want::Tree(vec![file("x", b"file")]),
        ),
        case(
            "spec/dir-over-file",
            &src("Changeset over existing files (other cases: removed, recreated)"),
            "-",
            vec![vec![f("y", b"file")], vec![d("y"), f("y/z", b"z")]],
            Want::Tree(vec![is_dir("y"), file("y/z", b"z")]),
        ),
        case(
            "spec/symlink-over-dir",
            &src("Changeset over existing files (other cases: removed, recreated)"),
            "-",
            vec![vec![d("z"), f("z/old", b"o")], vec![sym("z", "elsewhere")]],
            Want::Tree(vec![is_link("z", "elsewhere")]),
        ),
        case(
            "spec/root-entry",
            &src("Populate Initial Filesystem (the ./ entry)"),
            "root-entry",
            vec![vec![dm("./", 0o750).at(123), f("f", b"")]],
            Want::Tree(vec![has_mode("", 0o750), mtime_is("", 123)]),
        ),
    ]
}

#[test]
fn image_spec_examples() {
    run_group("image_spec_examples", image_spec_cases(), false);
}

// -------------------------------------------- umoci's bats, xattrs, blobs

fn bats_cases() -> Vec<Case> {
    let bats = |t: &str| format!("umoci test/unpack.bats \"umoci unpack [{t}]\"");
    let dirlinks_lower = vec![
        dm("dir", 0),
        f("dir/a", b""),
        sym("dir/loop4", "../loop1"),
        sym("link", "dir"),
        sym("link2", "link"),
        sym("loop1", "loop2"),
        sym("loop2", "loop3"),
        sym("loop3", "link2/loop4"),
    ];
    let hardening = |name: &str, t: &str, tamper: Tamper| {
        let mut c = case(
            name,
            &format!("umoci test/hardening.bats \"umoci unpack [{t}]\""),
            "-",
            vec![
                vec![d("etc"), f("etc/hostname", b"box\n")],
                vec![f("etc/motd", b"hi\n")],
            ],
            Want::Refused,
        );
        c.tamper = tamper;
        c
    };
    vec![
        case(
            "umoci/bats/setuid",
            &bats("setuid"),
            "-",
            vec![vec![
                fm("setuid", b"", 0o4755),
                fm("setgid", b"", 0o2755),
                fm("setugid", b"", 0o6755),
            ]],
            Want::Tree(vec![
                has_mode("setuid", 0o4755),
                has_mode("setgid", 0o2755),
                has_mode("setugid", 0o6755),
            ]),
        ),
        case(
            "umoci/bats/mknod",
            &bats("mknod"),
            "-",
            vec![vec![
                dev("block1", b'4', 128, 42),
                dev("block2", b'4', 255, 128),
                dev("char1", b'3', 133, 37),
                dev("char2", b'3', 253, 97),
                fifo("fifo"),
            ]],
            Want::Tree(vec![
                is_dev("block1", 'b', 128, 42),
                is_dev("block2", 'b', 255, 128),
                is_dev("char1", 'c', 133, 37),
                is_dev("char2", 'c', 253, 97),
                is_fifo("fifo"),
            ]),
        ),
        // Without --keep-dirlinks (containerd's rule, which minipull
        // follows): a directory entry replaces a symlink in its place.
        case(
            "umoci/bats/dirlinks-replaced",
            &bats("--keep-dirlinks\" (the layer made by tar cvfC, directory entries included)"),
            "-",
            vec![
                dirlinks_lower.clone(),
                vec![
                    d("./link/"),
                    f("./link/b", b""),
                    d("./link2/"),
                    f("./link2/c", b""),
                    d("./loop1/"),
                    f("./loop1/broken", b""),
                ],
            ],
            Want::Tree(vec![
                file("dir/a", b""),
                is_dir("link"),
                file("link/b", b""),
                is_dir("link2"),
                file("link2/c", b""),
                is_dir("loop1"),
                file("loop1/broken", b""),
                is_link("loop2", "loop3"),
                is_link("loop3", "link2/loop4"),
                is_link("dir/loop4", "../loop1"),
            ]),
        ),
        // The same layer with only its files: written through the links
        // (what --keep-dirlinks does, and issue's in-root resolution).
        case(
            "umoci/bats/dirlinks-resolved",
            &bats("--keep-dirlinks\" (files only: resolution of links without destroying them)"),
            "resolve",
            vec![dirlinks_lower.clone(), vec![f("link/b", b""), f("link2/c", b"")]],
            Want::Tree(vec![
                file("dir/a", b""),
                file("dir/b", b""),
                file("dir/c", b""),
                is_link("link", "dir"),
                is_link("link2", "link"),
            ]),
        ),
        case(
            "umoci/bats/dirlinks-loop",
            &bats("--keep-dirlinks\" (a file under a symlink loop)"),
            "resolve",
            vec![dirlinks_lower, vec![f("loop1/broken", b"")]],
            Want::Refused,
        ),
        hardening("umoci/hardening/blob-hash", "blob hash hardening", Tamper::LayerDigest),
        hardening(
            "umoci/hardening/config-size",
            "descriptor size hardening",
            Tamper::ConfigSize,
        ),
        hardening(
            "umoci/hardening/layer-size",
            "descriptor size hardening",
            Tamper::LayerSize,
        ),
        // Real images: usrmerge and /var/run -> /run in a lower layer, an
        // upper layer writing through them (moby#53258).
        case(
            "moby/53258/usrmerge-lib",
            "moby issue 53258 (real image): lib -> usr/lib, then lib/systemd/...",
            "resolve",
            vec![
                vec![d("usr"), d("usr/lib"), sym("lib", "usr/lib")],
                vec![d("lib/systemd"), f("lib/systemd/systemd", b"sd")],
            ],
            Want::Tree(vec![is_link("lib", "usr/lib"), file("usr/lib/systemd/systemd", b"sd")]),
        ),
        case(
            "moby/53258/var-run",
            "moby issue 53258 (real image): var/run -> /run, then var/run/...",
            "resolve",
            vec![
                vec![d("run"), d("var"), sym("var/run", "/run")],
                vec![f("var/run/utmp", b"")],
            ],
            Want::Tree(vec![is_link("var/run", "/run"), file("run/utmp", b"")]),
        ),
    ]
}

#[test]
fn umoci_bats_blobs() {
    run_group("umoci_bats_blobs", bats_cases(), false);
}

/// The xattr cases, on disk (tmpfs keeps `user.*` only from Linux 6.6).
fn xattr_cases() -> Vec<Case> {
    let bats = |t: &str| format!("umoci test/unpack.bats \"umoci unpack [{t}]\"");
    // vfs_cap_data revision 2: magic, then permitted/inheritable (low, high).
    let caps = |bits: u32| {
        let b = bits.to_le_bytes();
        [&[1, 0, 0, 2][..], &b, &b, &[0; 8]].concat()
    };
    let net_raw = caps(1 << 13);
    let sys_admin_setfcap = caps((1 << 21) | (1 << 31));
    let selinux: &[u8] = b"unconfined_u:object_r:default_t:s0\0";
    vec![
        case(
            "umoci/bats/setcap",
            &bats("setcap"),
            "-",
            vec![vec![
                pax(b'x', &[("SCHILY.xattr.security.capability", &net_raw)]),
                fm("setcap1", b"", 0o755),
                pax(b'x', &[("SCHILY.xattr.security.capability", &sys_admin_setfcap)]),
                fm("setcap2", b"", 0o755),
            ]],
            Want::Tree(vec![
                xattr_is("setcap1", "security.capability", Some(net_raw.clone())),
                xattr_is("setcap2", "security.capability", Some(sys_admin_setfcap.clone())),
            ]),
        ),
        // containerd pkg/archive/tar_test.go TestTarWithXattr: user.* is kept;
        // security.selinux is not on the allowlist (the allowlist wins).
        case(
            "containerd/TarWithXattr/WithXattrsUser",
            "containerd pkg/archive/tar_test.go TestTarWithXattr/WithXattrsUser",
            "-",
            vec![vec![
                pax(b'x', &[("SCHILY.xattr.user.key", b"value")]),
                fm("file", b"", 0o755),
            ]],
            Want::Tree(vec![xattr_is("file", "user.key", Some(b"value".to_vec()))]),
        ),
        case(
            "containerd/TarWithXattr/WithXattrSelinux",
            "containerd pkg/archive/tar_test.go TestTarWithXattr/WithXattrSelinux (dropped: allowlist)",
            "xattr-allow",
            vec![vec![
                pax(b'x', &[("SCHILY.xattr.security.selinux", selinux)]),
                fm("file", b"", 0o755),
            ]],
            Want::Tree(vec![file("file", b""), xattr_is("file", "security.selinux", None)]),
        ),
        case(
            "umoci/xattr/trusted-overlay-dropped",
            "umoci oci/layer/tar_extract_test.go TestUnpackEntryXattrs-like (trusted.overlay.opaque: allowlist)",
            "xattr-allow",
            vec![vec![
                pax(b'x', &[("SCHILY.xattr.trusted.overlay.opaque", b"y")]),
                d("dir"),
            ]],
            Want::Tree(vec![is_dir("dir"), xattr_is("dir", "trusted.overlay.opaque", None)]),
        ),
    ]
}

#[test]
fn xattrs() {
    run_group("xattrs", xattr_cases(), true);
}

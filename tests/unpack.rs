//! Unpacking into a root filesystem: real images with whiteouts, opaque
//! directories, links and modes, compared file by file with what
//! `umoci unpack --rootless` makes of the same layout; and hostile layers
//! that try to write outside ROOTFS.

#![cfg(feature = "unpack")]

mod common;
use common::*;
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

/// `minipull --plain-http --unpack ROOTFS REF OUTDIR`.
fn pull_unpack(reference: &str, rootfs: &Path, out: &Path) -> std::process::Output {
    minipull(
        &[
            "--plain-http",
            "--unpack",
            rootfs.to_str().unwrap(),
            reference,
            out.to_str().unwrap(),
        ],
        None,
    )
}

/// Tar a staged directory with the system tar (owners 0, fixed mtimes).
fn tar_dir(dir: &Path) -> Vec<u8> {
    let out = Command::new("tar")
        .args(["--sort=name", "--owner=0", "--group=0", "--numeric-owner", "-C"])
        .arg(dir)
        .args(["-cf", "-", "."])
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}

fn write(root: &Path, rel: &str, content: &[u8], mode: u32) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, content).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn layer(media_type: &'static str, tar: Vec<u8>) -> Layer {
    let blob = match media_type {
        OCI_LAYER_GZIP => gzip(&tar),
        OCI_LAYER_ZSTD => zstd(&tar),
        _ => tar.clone(),
    };
    Layer { media_type, tar, blob }
}

/// Three layers: gzip, `second` (gzip or zstd), plain tar.
fn layered_image(work: &TempDir, second: &'static str) -> Image {
    let l1 = work.join("l1");
    write(&l1, "usr/bin/busybox", b"#!/bin/sh\necho busybox\n", 0o755);
    std::os::unix::fs::symlink("busybox", l1.join("usr/bin/sh")).unwrap();
    std::fs::hard_link(l1.join("usr/bin/busybox"), l1.join("usr/bin/ls")).unwrap();
    write(&l1, "etc/hostname", b"first\n", 0o644);
    write(&l1, "etc/remove-me", b"gone later\n", 0o644);
    write(&l1, "etc/shadow", b"root:*:\n", 0o600);
    write(&l1, "var/cache/old-1", b"old\n", 0o644);
    write(&l1, "var/cache/sub/old-2", b"old\n", 0o644);
    write(&l1, "opt/old/x", b"x\n", 0o644);
    std::os::unix::fs::symlink("/etc/hostname", l1.join("etc/link-to-file")).unwrap();
    std::fs::set_permissions(l1.join("var/cache"), std::fs::Permissions::from_mode(0o750)).unwrap();

    let l2 = work.join("l2");
    write(&l2, "etc/.wh.remove-me", b"", 0o644);
    write(&l2, "var/cache/.wh..wh..opq", b"", 0o644);
    write(&l2, "var/cache/new", b"new\n", 0o640);
    write(&l2, "etc/hostname", b"second\n", 0o644);
    // A symlink replaced by a file.
    write(&l2, "etc/link-to-file", b"now a file\n", 0o644);

    let l3 = work.join("l3");
    write(&l3, "opt/.wh.old", b"", 0o644);
    write(&l3, "srv/private/data", b"secret\n", 0o400);
    std::fs::set_permissions(l3.join("srv/private"), std::fs::Permissions::from_mode(0o700)).unwrap();
    write(&l3, "usr/bin/.wh.ls", b"", 0o644);

    Image::new(
        "amd64",
        vec![
            layer(OCI_LAYER_GZIP, tar_dir(&l1)),
            layer(second, tar_dir(&l2)),
            layer(OCI_LAYER_TAR, tar_dir(&l3)),
        ],
    )
}

/// Every path under `root`: (kind, permission bits, content or link target, mtime for files).
fn tree(root: &Path) -> BTreeMap<String, (char, u32, Vec<u8>, i64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let perm = m.permissions().mode() & 0o7777;
            let entry = if m.file_type().is_symlink() {
                (
                    'l',
                    0,
                    std::fs::read_link(&p).unwrap().into_os_string().into_encoded_bytes(),
                    0,
                )
            } else if m.is_dir() {
                stack.push(p.clone());
                ('d', perm, Vec::new(), 0)
            } else {
                ('f', perm, std::fs::read(&p).unwrap(), m.mtime())
            };
            out.insert(rel, entry);
        }
    }
    out
}

#[test]
fn unpack_matches_umoci_and_reads_back_offline() {
    let reg = Registry::start(Auth::None);
    let work = TempDir::new("unpack");
    // umoci 0.4.7 knows no zstd: it gets gzip, and the zstd twin is compared below.
    let image = layered_image(&work, OCI_LAYER_GZIP);
    reg.push_image("app/layers", "v1", &image);
    let out = work.join("oci");
    let rootfs = work.join("rootfs");
    let r = format!("{}/app/layers:v1", reg.host);
    let o = pull_unpack(&r, &rootfs, &out);
    assert_exit(&o, 0);

    let ours = tree(&rootfs);
    let theirs = tree(&umoci_unpack(&out, "v1", &work));
    assert_eq!(ours.keys().collect::<Vec<_>>(), theirs.keys().collect::<Vec<_>>());
    for (path, mine) in &ours {
        assert_eq!(Some(mine), theirs.get(path), "{path} differs from umoci's");
    }
    // What the layers say happened, independently of umoci.
    assert_eq!(std::fs::read(rootfs.join("etc/hostname")).unwrap(), b"second\n");
    assert!(!rootfs.join("etc/remove-me").exists());
    assert!(!rootfs.join("opt/old").exists() && rootfs.join("opt").is_dir());
    assert!(!rootfs.join("var/cache/old-1").exists() && !rootfs.join("var/cache/sub").exists());
    assert_eq!(std::fs::read(rootfs.join("var/cache/new")).unwrap(), b"new\n");
    assert_eq!(
        std::fs::read_link(rootfs.join("usr/bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert!(!rootfs.join("usr/bin/ls").exists());
    assert_eq!(
        std::fs::metadata(rootfs.join("etc/shadow"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(rootfs.join("srv/private"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );

    // Offline, from the layout: the same tree; the config by `minipull config`.
    let again = work.join("rootfs-again");
    let o = minipull(
        &["unpack", &format!("{}:v1", out.display()), again.to_str().unwrap()],
        None,
    );
    assert_exit(&o, 0);
    assert_eq!(tree(&again), ours);
    let o = minipull(&["config", &format!("{}:v1", out.display())], None);
    assert_exit(&o, 0);
    let config: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(config["config"]["Cmd"][0], "/bin/sh");

    // A ROOTFS that is not empty needs --force.
    let o = minipull(
        &["unpack", &format!("{}:v1", out.display()), again.to_str().unwrap()],
        None,
    );
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    let o = minipull(
        &[
            "unpack",
            "--force",
            &format!("{}:v1", out.display()),
            again.to_str().unwrap(),
        ],
        None,
    );
    assert_exit(&o, 0);
    assert_eq!(tree(&again), ours);

    // The same layers with the middle one as zstd give the same tree.
    let work2 = TempDir::new("unpack-zstd");
    reg.push_image("app/layers-zstd", "v1", &layered_image(&work2, OCI_LAYER_ZSTD));
    let (out2, rootfs2) = (work.join("oci-zstd"), work.join("rootfs-zstd"));
    let r2 = format!("{}/app/layers-zstd:v1", reg.host);
    let o = pull_unpack(&r2, &rootfs2, &out2);
    assert_exit(&o, 0);
    assert_eq!(
        tree(&rootfs2).keys().collect::<Vec<_>>(),
        ours.keys().collect::<Vec<_>>()
    );
    for (path, (kind, mode, content, _)) in tree(&rootfs2) {
        let (k, m, c, _) = &ours[&path];
        assert_eq!((&kind, &mode, &content), (k, m, c), "{path}");
    }
}

#[test]
fn hard_link_chain_and_out_of_order_directories() {
    let reg = Registry::start(Auth::None);
    let work = TempDir::new("unpack-order");
    // Files before (and without) their directories' entries, and a hard link.
    let t = raw_tar(&[
        Raw::file("deep/a/b/file", b"deep\n", 0o644),
        Raw::dir("deep/a", 0o711),
        Raw::hardlink("deep/link", "deep/a/b/file"),
        Raw::fifo("run/pipe"),
    ]);
    let image = Image::new("amd64", vec![layer(OCI_LAYER_GZIP, t)]);
    reg.push_image("app/order", "v1", &image);
    let (out, rootfs) = (work.join("oci"), work.join("rootfs"));
    let o = pull_unpack(&format!("{}/app/order:v1", reg.host), &rootfs, &out);
    assert_exit(&o, 0);
    let (a, b) = (rootfs.join("deep/a/b/file"), rootfs.join("deep/link"));
    assert_eq!(std::fs::read(&b).unwrap(), b"deep\n");
    assert_eq!(
        std::fs::metadata(&a).unwrap().ino(),
        std::fs::metadata(&b).unwrap().ino()
    );
    assert_eq!(
        std::fs::metadata(rootfs.join("deep/a")).unwrap().permissions().mode() & 0o777,
        0o711
    );
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::symlink_metadata(rootfs.join("run/pipe"))
        .unwrap()
        .file_type()
        .is_fifo());
}

/// Every path under `dir` and `dir` itself: kind and mode, owner, inode,
/// mtime and ctime to the nanosecond, content or link target. Any write,
/// chmod, chown, link or new name beneath changes it.
fn canary(dir: &Path) -> BTreeMap<String, (Vec<i64>, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        let body = if m.file_type().is_symlink() {
            std::fs::read_link(&p).unwrap().into_os_string().into_encoded_bytes()
        } else if m.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
            Vec::new()
        } else {
            std::fs::read(&p).unwrap()
        };
        let meta = [
            m.mode().into(),
            m.uid().into(),
            m.gid().into(),
            m.ino() as i64,
            m.nlink() as i64,
        ];
        let times = [m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec()];
        out.insert(p.display().to_string(), ([&meta[..], &times[..]].concat(), body));
    }
    out
}

/// Hostile layers aimed at a canary tree outside ROOTFS: names with `..`
/// or a leading `/`, links to the outside (absolute, relative, climbing)
/// as parents, hard links and whiteouts out. Each is either contained (it
/// lands inside ROOTFS, links resolved as if ROOTFS were `/`) or refused
/// with exit 6; the canary stays byte- and metadata-identical either way.
#[test]
fn hostile_layers_cannot_escape_rootfs() {
    let reg = Registry::start(Auth::None);
    let work = TempDir::new("unpack-hostile");
    let outside = work.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret"), b"host secret\n").unwrap();
    let outside_s = outside.to_str().unwrap().to_string();
    // Where the outside's absolute path lands inside ROOTFS.
    let inside = outside_s.trim_start_matches('/').to_string();
    let climb = format!("{}{inside}", "../".repeat(12));
    let before = canary(&outside);
    // (name, entries, exit code, a file inside ROOTFS and its content)
    type Case = (&'static str, Vec<Raw>, i32, Option<(String, &'static [u8])>);
    let cases: Vec<Case> = vec![
        (
            "dotdot",
            vec![Raw::file("../outside/planted", b"x", 0o644)],
            0,
            Some(("outside/planted".into(), b"x")),
        ),
        (
            "dotdot-deep",
            vec![Raw::dir("a", 0o755), Raw::file("a/../../outside/planted", b"x", 0o644)],
            0,
            Some(("outside/planted".into(), b"x")),
        ),
        (
            "absolute",
            vec![Raw::file(&format!("{outside_s}/planted"), b"x", 0o644)],
            0,
            Some((format!("{inside}/planted"), b"x")),
        ),
        (
            "symlink-parent",
            vec![Raw::symlink("a", &outside_s), Raw::file("a/planted", b"x", 0o644)],
            0,
            Some((format!("{inside}/planted"), b"x")),
        ),
        (
            "symlink-parent-climbing",
            vec![Raw::symlink("a", &climb), Raw::file("a/planted", b"x", 0o644)],
            0,
            Some((format!("{inside}/planted"), b"x")),
        ),
        (
            "symlink-parent-deep",
            vec![
                Raw::dir("d", 0o755),
                Raw::symlink("d/e", &outside_s),
                Raw::file("d/e/secret", b"overwritten", 0o644),
            ],
            0,
            Some((format!("{inside}/secret"), b"overwritten")),
        ),
        ("hardlink-out", vec![Raw::hardlink("h", "../outside/secret")], 6, None),
        (
            "hardlink-abs",
            vec![
                Raw::file(&format!("{outside_s}/secret"), b"in root", 0o644),
                Raw::hardlink("h", &format!("{outside_s}/secret")),
            ],
            0,
            Some(("h".into(), b"in root")),
        ),
        (
            "hardlink-through-symlink",
            vec![Raw::symlink("s", &outside_s), Raw::hardlink("h", "s/secret")],
            6,
            None,
        ),
        (
            "whiteout-out",
            vec![Raw::file("../outside/.wh.secret", b"", 0o644)],
            0,
            None,
        ),
        (
            "whiteout-through-symlink",
            vec![Raw::symlink("s", &outside_s), Raw::file("s/.wh.secret", b"", 0o644)],
            0,
            None,
        ),
    ];
    for (name, entries, code, inside_file) in cases {
        let image = Image::new("amd64", vec![layer(OCI_LAYER_GZIP, raw_tar(&entries))]);
        let repo = format!("hostile/{name}");
        reg.push_image(&repo, "v1", &image);
        let (out, rootfs) = (work.join(&format!("oci-{name}")), work.join(&format!("rootfs-{name}")));
        let o = pull_unpack(&format!("{}/{repo}:v1", reg.host), &rootfs, &out);
        assert_exit(&o, code);
        assert_eq!(canary(&outside), before, "{name} changed the outside");
        assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
        if let Some((rel, content)) = inside_file {
            assert_eq!(std::fs::read(rootfs.join(&rel)).unwrap(), content, "{name}: /{rel}");
        }
        if code == 0 && name == "hardlink-abs" {
            let ino = |p: &str| std::fs::metadata(rootfs.join(p)).unwrap().ino();
            assert_eq!(ino("h"), ino(&format!("{inside}/secret")), "linked inside");
        }
    }
}

#[test]
fn decompression_bomb_and_bad_diff_ids_are_refused() {
    let reg = Registry::start(Auth::None);
    let work = TempDir::new("unpack-bomb");
    // 600 MiB of zeros in one file compress to a few KB with zstd: far beyond
    // 1100 times the blob's size plus 64 MiB.
    let staged = work.join("bomb");
    std::fs::create_dir_all(&staged).unwrap();
    let f = std::fs::File::create(staged.join("zeros")).unwrap();
    f.set_len(600 << 20).unwrap();
    let t = tar_dir(&staged);
    let bomb = layer(OCI_LAYER_ZSTD, t);
    assert!(bomb.blob.len() < 1 << 20, "the bomb is small: {}", bomb.blob.len());
    reg.push_image("hostile/bomb", "v1", &Image::new("amd64", vec![bomb]));
    let (out, rootfs) = (work.join("oci"), work.join("rootfs"));
    let o = pull_unpack(&format!("{}/hostile/bomb:v1", reg.host), &rootfs, &out);
    assert_exit(&o, 6);
    assert!(stderr(&o).contains("decompression bomb"), "{}", stderr(&o));
    let written = std::fs::metadata(rootfs.join("zeros")).map(|m| m.len()).unwrap_or(0);
    assert!(written < 100 << 20, "stopped early: {written}");

    // A config whose diff_id does not match the layer.
    let mut image = Image::new("amd64", vec![gz_layer(&[("f", b"content\n")])]);
    image.config = Some(
        serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", "0".repeat(64))]},
        }))
        .unwrap(),
    );
    reg.push_image("hostile/diffid", "v1", &image);
    let (out, rootfs) = (work.join("oci2"), work.join("rootfs2"));
    let o = pull_unpack(&format!("{}/hostile/diffid:v1", reg.host), &rootfs, &out);
    assert_exit(&o, 6);
    assert!(stderr(&o).contains("config says"), "{}", stderr(&o));

    // An unknown layer media type is a clear error.
    let mut l = gz_layer(&[("f", b"x")]);
    l.media_type = "application/vnd.oci.image.layer.v1.tar+lz4";
    reg.push_image("hostile/lz4", "v1", &Image::new("amd64", vec![l]));
    let (out, rootfs) = (work.join("oci3"), work.join("rootfs3"));
    let o = pull_unpack(&format!("{}/hostile/lz4:v1", reg.host), &rootfs, &out);
    assert_exit(&o, 6);
    assert!(stderr(&o).contains("unsupported layer media type"), "{}", stderr(&o));
}

/// A tar entry written by hand, for layers no honest tar tool makes.
struct Raw {
    path: String,
    kind: u8,
    link: String,
    mode: u32,
    data: Vec<u8>,
}

impl Raw {
    fn file(path: &str, data: &[u8], mode: u32) -> Raw {
        Raw {
            path: path.into(),
            kind: b'0',
            link: String::new(),
            mode,
            data: data.to_vec(),
        }
    }
    fn dir(path: &str, mode: u32) -> Raw {
        Raw {
            path: path.into(),
            kind: b'5',
            link: String::new(),
            mode,
            data: Vec::new(),
        }
    }
    fn symlink(path: &str, target: &str) -> Raw {
        Raw {
            path: path.into(),
            kind: b'2',
            link: target.into(),
            mode: 0o777,
            data: Vec::new(),
        }
    }
    fn hardlink(path: &str, target: &str) -> Raw {
        Raw {
            path: path.into(),
            kind: b'1',
            link: target.into(),
            mode: 0o644,
            data: Vec::new(),
        }
    }
    fn fifo(path: &str) -> Raw {
        Raw {
            path: path.into(),
            kind: b'6',
            link: String::new(),
            mode: 0o644,
            data: Vec::new(),
        }
    }
}

fn raw_tar(entries: &[Raw]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let mut h = [0u8; 512];
        assert!(e.path.len() < 100 && e.link.len() < 100, "raw_tar keeps to short names");
        h[..e.path.len()].copy_from_slice(e.path.as_bytes());
        h[100..107].copy_from_slice(format!("{:07o}", e.mode).as_bytes());
        h[108..115].copy_from_slice(b"0000000");
        h[116..123].copy_from_slice(b"0000000");
        h[124..135].copy_from_slice(format!("{:011o}", e.data.len()).as_bytes());
        h[136..147].copy_from_slice(b"14000000000");
        h[156] = e.kind;
        h[157..157 + e.link.len()].copy_from_slice(e.link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(&e.data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// Push `layers` (raw tars, gzip) as one image and pull it with --unpack.
fn unpack_layers(reg: &Registry, work: &TempDir, name: &str, layers: Vec<Vec<u8>>) -> (Output, std::path::PathBuf) {
    let image = Image::new("amd64", layers.into_iter().map(|t| layer(OCI_LAYER_GZIP, t)).collect());
    let repo = format!("trust/{name}");
    reg.push_image(&repo, "v1", &image);
    let (out, rootfs) = (work.join(&format!("oci-{name}")), work.join(&format!("rootfs-{name}")));
    let o = pull_unpack(&format!("{}/{repo}:v1", reg.host), &rootfs, &out);
    (o, rootfs)
}

/// Push a one-layer image of raw entries as `repo:v1` and pull it (no
/// unpack) into `out`.
fn push_and_pull(reg: &Registry, repo: &str, entries: &[Raw], out: &Path) {
    let image = Image::new("amd64", vec![layer(OCI_LAYER_GZIP, raw_tar(entries))]);
    reg.push_image(repo, "v1", &image);
    let o = minipull(
        &[
            "--plain-http",
            &format!("{}/{repo}:v1", reg.host),
            out.to_str().unwrap(),
        ],
        None,
    );
    assert_exit(&o, 0);
}

/// Hand the layout `out` to nobody (uid 65534) and make `work/shared`, a
/// directory of nobody's own (a ROOTFS's parent must be writable by its
/// owner only); returns it.
fn shared_with_nobody(work: &TempDir, out: &Path) -> std::path::PathBuf {
    let shared = work.join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::set_permissions(&work.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
    let chown = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(out)
        .arg(&shared)
        .status()
        .unwrap();
    assert!(chown.success(), "this test runs as root");
    shared
}

/// Run `cmd` as nobody (setpriv, util-linux).
fn as_nobody(cmd: &[&std::ffi::OsStr]) -> Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(cmd)
        .output()
        .expect("setpriv (util-linux) runs; this test needs root to become another user")
}

fn mode_of(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn item_1_deferred_directory_metadata_never_follows_a_swapped_symlink() {
    let reg = Registry::start(Auth::None);
    let work = TempDir::new("trust-1");
    let outside = work.join("outside");
    std::fs::create_dir_all(outside.join("victim")).unwrap();
    std::fs::set_permissions(outside.join("victim"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let before = std::fs::metadata(outside.join("victim")).unwrap().mtime();
    let entries = [
        Raw::dir("x", 0o755),
        Raw::dir("x/victim", 0o7777),
        Raw::symlink("x", outside.to_str().unwrap()),
    ];
    let (o, rootfs) = unpack_layers(&reg, &work, "swap", vec![raw_tar(&entries)]);
    assert_exit(&o, 0);
    assert_eq!(
        mode_of(&outside.join("victim")),
        0o755,
        "the host directory was chmodded"
    );
    assert_eq!(std::fs::metadata(outside.join("victim")).unwrap().mtime(), before);
    assert!(std::fs::symlink_metadata(rootfs.join("x"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn item_2_opaque_directory_hides_lower_content_even_when_redeclared() {
    let reg = Registry::start(Auth::None);
    let work = TempDir::new("trust-2");
    let lower = [
        Raw::dir("a", 0o755),
        Raw::dir("a/b", 0o755),
        Raw::file("a/b/secret", b"key\n", 0o600),
    ];
    let upper = [
        Raw::dir("a", 0o755),
        Raw::dir("a/b", 0o755),
        Raw::file("a/b/new", b"new\n", 0o644),
        Raw::file("a/.wh..wh..opq", b"", 0o644),
    ];
    let (o, rootfs) = unpack_layers(&reg, &work, "opaque", vec![raw_tar(&lower), raw_tar(&upper)]);
    assert_exit(&o, 0);
    assert!(!rootfs.join("a/b/secret").exists(), "a deleted file came back");
    assert_eq!(std::fs::read(rootfs.join("a/b/new")).unwrap(), b"new\n");
}

#[test]
fn item_3_whited_out_directory_recreated_implicitly_is_fresh() {
    let reg = Registry::start(Auth::None);
    let work = TempDir::new("trust-3");
    let lower = [Raw::dir("d", 0o700), Raw::file("d/old", b"old\n", 0o644)];
    let upper = [Raw::file(".wh.d", b"", 0o644), Raw::file("d/f", b"f\n", 0o644)];
    let (o, rootfs) = unpack_layers(&reg, &work, "recreate", vec![raw_tar(&lower), raw_tar(&upper)]);
    assert_exit(&o, 0);
    assert_eq!(mode_of(&rootfs.join("d")), 0o755, "the lower layer's mode came back");
    assert!(!rootfs.join("d/old").exists());
    assert_eq!(std::fs::read(rootfs.join("d/f")).unwrap(), b"f\n");
}

#[test]
fn item_4_whiteout_of_a_missing_path_creates_nothing() {
    let reg = Registry::start(Auth::None);
    let work = TempDir::new("trust-4");
    let entries = [
        Raw::file("p/q/.wh.z", b"", 0o644),
        Raw::file("o/.wh..wh..opq", b"", 0o644),
        Raw::file("f", b"f\n", 0o644),
    ];
    let (o, rootfs) = unpack_layers(&reg, &work, "missing", vec![raw_tar(&entries)]);
    assert_exit(&o, 0);
    assert!(!rootfs.join("p").exists(), "a whiteout created p/");
    assert!(!rootfs.join("o").exists(), "an opaque marker created o/");
    assert!(rootfs.join("f").exists());
}

#[test]
fn item_5_setuid_dropped_when_not_root_unless_kept() {
    let reg = Registry::start(Auth::None);
    let work = TempDir::new("trust-5");
    let entries = [
        Raw::dir("bin", 0o755),
        Raw::file("bin/sh", b"#!sh\n", 0o4755),
        Raw::file("bin/g", b"g\n", 0o2755),
    ];
    let out = work.join("oci");
    push_and_pull(&reg, "trust/setuid", &entries, &out);
    // The unpack runs as nobody, into a directory nobody may write.
    let shared = shared_with_nobody(&work, &out);
    let bin = minipull_bin();
    let unpack_as_nobody = |rootfs: &Path, extra: &[&str]| {
        let mut cmd: Vec<&std::ffi::OsStr> = vec![bin.as_os_str(), "unpack".as_ref()];
        cmd.extend(extra.iter().map(std::ffi::OsStr::new));
        cmd.extend([out.as_os_str(), rootfs.as_os_str()]);
        let o = as_nobody(&cmd);
        assert_exit(&o, 0);
        o
    };
    let dropped = shared.join("dropped");
    let o = unpack_as_nobody(&dropped, &[]);
    assert_eq!(
        mode_of(&dropped.join("bin/sh")),
        0o755,
        "setuid kept for a non-root unpack"
    );
    assert_eq!(
        mode_of(&dropped.join("bin/g")),
        0o755,
        "setgid kept for a non-root unpack"
    );
    assert_eq!(
        stderr(&o).matches("setuid/setgid bits are dropped").count(),
        1,
        "{}",
        stderr(&o)
    );
    let kept = shared.join("kept");
    unpack_as_nobody(&kept, &["--keep-setuid"]);
    assert_eq!(mode_of(&kept.join("bin/sh")), 0o4755);
    // As root, owners are applied and the bits stay (OUTDIR is root's again:
    // root refuses a layout that belongs to another user).
    Command::new("chown").args(["-R", "0:0"]).arg(&out).status().unwrap();
    let rootfs = work.join("as-root");
    let o = minipull(&["unpack", out.to_str().unwrap(), rootfs.to_str().unwrap()], None);
    assert_exit(&o, 0);
    assert_eq!(mode_of(&rootfs.join("bin/sh")), 0o4755);
}

#[test]
fn item_7_tar_sizes_that_overflow_are_refused() {
    let reg = Registry::start(Auth::None);
    let work = TempDir::new("trust-7");
    // A global header whose GNU base-256 size is u64::MAX, then what would be
    // read as an entry if the padding wrapped to 0.
    let mut t = raw_tar(&[Raw::file("g", b"", 0o644), Raw::file("evil", b"planted\n", 0o644)]);
    t[156] = b'g';
    t[124] = 0x80;
    t[125..128].fill(0);
    t[128..136].fill(0xff);
    t[148..156].copy_from_slice(b"        ");
    let sum: u32 = t[..512].iter().map(|b| u32::from(*b)).sum();
    t[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    let (o, rootfs) = unpack_layers(&reg, &work, "overflow", vec![t]);
    assert_exit(&o, 6);
    assert!(stderr(&o).contains("out of range"), "{}", stderr(&o));
    assert!(!rootfs.join("evil").exists());
}

/// A one-layer image (a plain tar, so a test can change bytes and keep it
/// a valid tar) pushed as `trust/NAME:TAG` and pulled into `out`.
fn pull_plain(reg: &Registry, out: &Path, name: &str, tag: &str, content: &[u8]) -> String {
    let t = raw_tar(&[Raw::dir("etc", 0o755), Raw::file("etc/version", content, 0o644)]);
    let (digest, _) = reg.push_image(
        &format!("trust/{name}"),
        tag,
        &Image::new("amd64", vec![layer(OCI_LAYER_TAR, t)]),
    );
    let o = minipull(
        &[
            "--plain-http",
            &format!("{}/trust/{name}:{tag}", reg.host),
            out.to_str().unwrap(),
        ],
        None,
    );
    assert_exit(&o, 0);
    digest
}

/// Flip the content of `etc/version` in the layer blob of `out:tag`: same
/// size, still a valid tar, wrong digest.
fn tamper(out: &Path, tag: &str) {
    let index = read_json(&out.join("index.json"));
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap()
        .clone();
    let manifest = read_json(&blob_path(out, entry["digest"].as_str().unwrap()));
    let layer = blob_path(out, manifest["layers"][0]["digest"].as_str().unwrap());
    let mut bytes = std::fs::read(&layer).unwrap();
    let at = bytes
        .windows(3)
        .position(|w| w == b"v2-")
        .expect("the layer holds the content");
    bytes[at..at + 3].copy_from_slice(b"EVL");
    std::fs::write(&layer, bytes).unwrap();
}

#[test]
fn item_8_a_rootfs_is_replaced_atomically_and_never_shows_unverified_bytes() {
    let reg = Registry::start(Auth::None);
    let work = TempDir::new("trust-8");
    let out = work.join("oci");
    let d1 = pull_plain(&reg, &out, "app", "v1", b"v1-content\n");
    let d2 = pull_plain(&reg, &out, "app", "v2", b"v2-content\n");
    let rootfs = work.join("rootfs");
    let record = work.join("rootfs.minipull.json");
    let unpack = |tag: &str, extra: &[&str]| {
        let mut args = vec!["unpack"];
        args.extend_from_slice(extra);
        let src = format!("{}:{tag}", out.display());
        args.push(&src);
        args.push(rootfs.to_str().unwrap());
        minipull(&args, None)
    };
    let o = unpack("v1", &[]);
    assert_exit(&o, 0);
    assert!(stderr(&o).contains("staged, then moved into place"), "{}", stderr(&o));
    assert_eq!(std::fs::read(rootfs.join("etc/version")).unwrap(), b"v1-content\n");
    assert_eq!(read_json(&record)["digest"], d1.as_str());
    assert_eq!(std::fs::metadata(&rootfs).unwrap().permissions().mode() & 0o777, 0o755);

    // Not empty: only with --force, and then swapped, the old tree kept on request.
    assert_exit(&unpack("v2", &[]), 2);
    let o = unpack("v2", &["--force", "--keep-old"]);
    assert_exit(&o, 0);
    assert!(stderr(&o).contains("swapped in atomically"), "{}", stderr(&o));
    assert_eq!(std::fs::read(rootfs.join("etc/version")).unwrap(), b"v2-content\n");
    assert_eq!(
        std::fs::read(work.join("rootfs.old/etc/version")).unwrap(),
        b"v1-content\n"
    );
    assert_eq!(read_json(&record)["digest"], d2.as_str());

    // A tampered layer (same size, other bytes): refused, and ROOTFS is
    // exactly what it was; the bytes never appeared in it.
    let o = unpack("v1", &["--force"]);
    assert_exit(&o, 0);
    tamper(&out, "v2");
    let before = tree(&rootfs);
    let o = unpack("v2", &["--force"]);
    assert_exit(&o, 6);
    assert_eq!(tree(&rootfs), before);
    assert_eq!(read_json(&record)["digest"], d1.as_str());
    let left: Vec<_> = std::fs::read_dir(&work.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(!left.iter().any(|n| n.contains("staging")), "{left:?}");
    // Into a ROOTFS that does not exist yet: still nothing there afterwards.
    let fresh = work.join("fresh");
    let o = minipull(
        &["unpack", &format!("{}:v2", out.display()), fresh.to_str().unwrap()],
        None,
    );
    assert_exit(&o, 6);
    assert!(!fresh.exists());
}

#[test]
fn an_interrupted_unpack_is_cleaned_up_and_a_cut_swap_repaired() {
    let reg = Registry::start(Auth::None);
    let work = TempDir::new("trust-8b");
    let out = work.join("oci");
    pull_plain(&reg, &out, "app", "v1", b"v1-content\n");
    let rootfs = work.join("rootfs");
    // What a killed unpack leaves: a staging tree. What a power cut between
    // the two renames of the fallback swap leaves: the old tree parked and
    // no ROOTFS.
    std::fs::create_dir_all(work.join(".rootfs.minipull-staging/half")).unwrap();
    std::fs::create_dir_all(work.join(".rootfs.minipull-previous/etc")).unwrap();
    std::fs::write(work.join(".rootfs.minipull-previous/etc/version"), b"previous\n").unwrap();
    // A run that is refused (not empty, no --force) still repairs first.
    let o = minipull(
        &["unpack", &format!("{}:v1", out.display()), rootfs.to_str().unwrap()],
        None,
    );
    assert_exit(&o, 2);
    assert_eq!(std::fs::read(rootfs.join("etc/version")).unwrap(), b"previous\n");
    assert!(!work.join(".rootfs.minipull-staging").exists());
    assert!(!work.join(".rootfs.minipull-previous").exists());
}

#[test]
fn an_empty_mount_point_is_unpacked_in_place_after_verifying_every_blob() {
    let reg = Registry::start(Auth::None);
    let work = TempDir::new("trust-8c");
    let out = work.join("oci");
    let d1 = pull_plain(&reg, &out, "app", "v1", b"v1-content\n");
    pull_plain(&reg, &out, "app", "v2", b"v2-content\n");
    let mnt = Tmpfs::mount(work.join("newroot"), "16m");
    tamper(&out, "v2");
    let unpack = |tag: &str, extra: &[&str]| {
        let mut args = vec!["unpack"];
        args.extend_from_slice(extra);
        let src = format!("{}:{tag}", out.display());
        args.push(&src);
        args.push(mnt.0.to_str().unwrap());
        minipull(&args, None)
    };
    // Verified before the first byte: nothing of the tampered image lands.
    let o = unpack("v2", &[]);
    assert_exit(&o, 6);
    assert_eq!(std::fs::read_dir(&mnt.0).unwrap().count(), 0);
    let o = unpack("v1", &[]);
    assert_exit(&o, 0);
    assert!(
        stderr(&o).contains("in place into the empty mount point"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read(mnt.0.join("etc/version")).unwrap(), b"v1-content\n");
    assert_eq!(read_json(&work.join("newroot.minipull.json"))["digest"], d1.as_str());
    // Not empty: refused even with --force (no atomic swap is possible there).
    let o = unpack("v1", &["--force"]);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("mount point"), "{}", stderr(&o));
}

#[test]
fn item_6_memory_stays_bounded_whatever_the_layer_declares() {
    let reg = Registry::start(Auth::None);
    let work = TempDir::new("trust-6");
    // 20,000 directories whose PAX paths are about 2 KB each: some 40 MB of
    // paths, deferred one by one before the fix.
    let deep = format!("d/{}", format!("{}/", "x".repeat(200)).repeat(9));
    let record = |path: &str| {
        let body = format!(" path={path}\n");
        let mut len = body.len() + 1;
        while format!("{len}{body}").len() != len {
            len += 1;
        }
        format!("{len}{body}").into_bytes()
    };
    let mut entries = vec![Raw::dir("d", 0o755)];
    let mut prefix = String::from("d/");
    for _ in 0..9 {
        prefix.push_str(&"x".repeat(200));
        entries.push(Raw {
            path: "p".into(),
            kind: b'x',
            link: String::new(),
            mode: 0o644,
            data: record(&prefix),
        });
        entries.push(Raw::dir("placeholder", 0o755));
        prefix.push('/');
    }
    for i in 0..20_000 {
        entries.push(Raw {
            path: "p".into(),
            kind: b'x',
            link: String::new(),
            mode: 0o644,
            data: record(&format!("{deep}n{i}")),
        });
        entries.push(Raw::dir("placeholder", 0o750));
    }
    let out = work.join("oci");
    push_and_pull(&reg, "trust/dirs", &entries, &out);
    let rootfs = work.join("rootfs");
    let bin = minipull_bin();
    let (o, kib) = peak_rss_kib(&[
        bin.to_str().unwrap(),
        "unpack",
        out.to_str().unwrap(),
        rootfs.to_str().unwrap(),
    ]);
    assert_exit(&o, 0);
    assert!(
        kib < 16 * 1024,
        "peak RSS {kib} KiB for a layer of 20,000 long-named directories"
    );
    assert!(rootfs.join(format!("{deep}n19999")).is_dir());
    let mode = std::fs::metadata(rootfs.join(format!("{deep}n7")))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o750);
}

/// A skippable zstd frame (RFC 8878) holding `payload`.
fn skippable(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x50, 0x2a, 0x4d, 0x18];
    f.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    f.extend_from_slice(payload);
    f
}

#[test]
fn zstd_chunked_layers_with_skippable_frames_unpack() {
    let reg = Registry::start(Auth::None);
    let work = TempDir::new("zstd-chunked");
    let t = raw_tar(&[
        Raw::dir("etc", 0o755),
        Raw::file("etc/alpha", b"alpha\n", 0o644),
        Raw::file("etc/big", &vec![b'x'; 50_000], 0o644),
    ]);
    // Built here: skippable frames before, between and after two data frames.
    let (p1, p2) = t.split_at(1024);
    let blob = [
        skippable(b"meta"),
        zstd(p1),
        skippable(&[7; 100]),
        zstd(p2),
        skippable(b"tail"),
    ]
    .concat();
    let image = Image::new(
        "amd64",
        vec![Layer {
            media_type: OCI_LAYER_ZSTD,
            tar: t.clone(),
            blob,
        }],
    );
    reg.push_image("zstd/spliced", "v1", &image);
    let (out, rootfs) = (work.join("oci"), work.join("rootfs"));
    let o = pull_unpack(&format!("{}/zstd/spliced:v1", reg.host), &rootfs, &out);
    assert_exit(&o, 0);
    assert_eq!(std::fs::read(rootfs.join("etc/alpha")).unwrap(), b"alpha\n");
    assert_eq!(std::fs::read(rootfs.join("etc/big")).unwrap().len(), 50_000);

    // Written by skopeo as zstd:chunked.
    let plain = Image::new("amd64", vec![layer(OCI_LAYER_TAR, t)]);
    reg.push_image("zstd/plain", "v1", &plain);
    let chunked = work.join("chunked");
    run_ok(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            "--dest-compress-format",
            "zstd:chunked",
            &format!("docker://{}/zstd/plain:v1", reg.host),
            &format!("oci:{}:v1", chunked.display()),
        ],
    );
    let index = read_json(&chunked.join("index.json"));
    let manifest = read_json(&blob_path(&chunked, index["manifests"][0]["digest"].as_str().unwrap()));
    let layer_blob = std::fs::read(blob_path(&chunked, manifest["layers"][0]["digest"].as_str().unwrap())).unwrap();
    assert!(
        layer_blob
            .windows(4)
            .any(|w| w[1..] == [0x2a, 0x4d, 0x18] && w[0] & 0xf0 == 0x50),
        "skopeo wrote skippable frames"
    );
    let rootfs2 = work.join("rootfs2");
    let o = minipull(
        &[
            "unpack",
            &format!("{}:v1", chunked.display()),
            rootfs2.to_str().unwrap(),
        ],
        None,
    );
    assert_exit(&o, 0);
    assert_eq!(std::fs::read(rootfs2.join("etc/alpha")).unwrap(), b"alpha\n");
    assert_eq!(std::fs::read(rootfs2.join("etc/big")).unwrap().len(), 50_000);
}

/// A PAX extended header (`x`) with these records, for the entry after it.
fn pax(records: &[(&str, &[u8])]) -> Raw {
    let mut data = Vec::new();
    for (k, v) in records {
        let body = [format!(" {k}=").as_bytes(), v, b"\n"].concat();
        let mut len = body.len() + 1;
        while format!("{len}").len() + body.len() != len {
            len += 1;
        }
        data.extend_from_slice(format!("{len}").as_bytes());
        data.extend_from_slice(&body);
    }
    Raw {
        path: "pax".into(),
        kind: b'x',
        link: String::new(),
        mode: 0o644,
        data,
    }
}

/// The extended attributes of a path (not following a link), by python3.
fn xattrs_of(p: &Path) -> BTreeMap<String, Vec<u8>> {
    let script = "import os, sys\n\
                  for n in sorted(os.listxattr(sys.argv[1], follow_symlinks=False)):\n\
                  \tprint(n, os.getxattr(sys.argv[1], n, follow_symlinks=False).hex())";
    let out = Command::new("python3").arg("-c").arg(script).arg(p).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(n, h)| {
            (
                n.to_string(),
                (0..h.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn file_capabilities_and_xattrs_are_applied_like_umoci() {
    let reg = Registry::start(Auth::None);
    let work = TempDir::new("xattrs");
    // cap_net_raw, permitted and effective (vfs_cap_data revision 2).
    let cap: &[u8] = &[1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let entries = [
        Raw::dir("bin", 0o755),
        pax(&[
            ("SCHILY.xattr.security.capability", cap),
            ("SCHILY.xattr.user.origin", b"from the layer"),
        ]),
        Raw::file("bin/ping", b"#!/bin/sh\n", 0o755),
        pax(&[("SCHILY.xattr.user.dir", b"\x00\x01binary\xff")]),
        Raw::dir("etc", 0o755),
    ];
    let image = Image::new("amd64", vec![layer(OCI_LAYER_GZIP, raw_tar(&entries))]);
    reg.push_image("xattr/app", "v1", &image);
    let (out, rootfs) = (work.join("oci"), work.join("rootfs"));
    let o = pull_unpack(&format!("{}/xattr/app:v1", reg.host), &rootfs, &out);
    assert_exit(&o, 0);
    let ping = xattrs_of(&rootfs.join("bin/ping"));
    assert_eq!(ping.get("security.capability").map(Vec::as_slice), Some(cap));
    assert_eq!(ping.get("user.origin").map(Vec::as_slice), Some(&b"from the layer"[..]));
    assert_eq!(
        xattrs_of(&rootfs.join("etc")).get("user.dir").map(Vec::as_slice),
        Some(&b"\x00\x01binary\xff"[..])
    );
    // umoci (as root) makes the same of it.
    let bundle = work.join("bundle");
    run_ok(
        "umoci",
        &[
            "unpack",
            "--image",
            &format!("{}:v1", out.display()),
            bundle.to_str().unwrap(),
        ],
    );
    for p in ["bin/ping", "etc"] {
        assert_eq!(
            xattrs_of(&rootfs.join(p)),
            xattrs_of(&bundle.join("rootfs").join(p)),
            "{p}"
        );
    }

    // Not root: user.* only, and one note naming what was skipped.
    let shared = shared_with_nobody(&work, &out);
    let mine = shared.join("rootless");
    let bin = minipull_bin();
    let o = as_nobody(&[bin.as_os_str(), "unpack".as_ref(), out.as_os_str(), mine.as_os_str()]);
    assert_exit(&o, 0);
    let ping = xattrs_of(&mine.join("bin/ping"));
    assert!(!ping.contains_key("security.capability"));
    assert_eq!(ping.get("user.origin").map(Vec::as_slice), Some(&b"from the layer"[..]));
    assert_eq!(stderr(&o).matches("security.capability").count(), 1, "{}", stderr(&o));
    // umoci --rootless as the same user makes the same of it.
    let bundle = shared.join("umoci-rootless");
    let image_ref = format!("{}:v1", out.display());
    let o = as_nobody(&[
        "umoci".as_ref(),
        "unpack".as_ref(),
        "--rootless".as_ref(),
        "--image".as_ref(),
        image_ref.as_ref(),
        bundle.as_os_str(),
    ]);
    assert_exit(&o, 0);
    for p in ["bin/ping", "etc"] {
        assert_eq!(
            xattrs_of(&mine.join(p)),
            xattrs_of(&bundle.join("rootfs").join(p)),
            "{p}"
        );
    }
}

/// A ustar header block written by hand, edited by `edit` (checksum fixed
/// after), for header forms `Raw` does not make.
fn block(name: &str, kind: u8, size: u64, edit: impl FnOnce(&mut [u8; 512])) -> Vec<u8> {
    let mut t = raw_tar(&[Raw {
        path: name.into(),
        kind,
        link: String::new(),
        mode: 0o644,
        data: Vec::new(),
    }]);
    let h: &mut [u8; 512] = (&mut t[..512]).try_into().unwrap();
    h[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
    edit(h);
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    t.truncate(512);
    t
}

/// Headers and data, each padded to whole blocks, and the end blocks.
fn hand_tar(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(p);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// A PAX extended header block and its records, ready for `hand_tar`.
fn pax_block(records: &[(&str, &str)]) -> Vec<u8> {
    let recs: Vec<(&str, &[u8])> = records.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
    let data = pax(&recs).data;
    [block("pax", b'x', data.len() as u64, |_| {}), data].concat()
}

#[test]
fn sparse_files_expand_with_holes_as_holes() {
    let reg = Registry::start(Auth::None);
    let work = TempDir::new("sparse");
    const MIB: u64 = 1 << 20;
    // PAX 1.0 (GNU tar --sparse --format=posix): 4 KiB at 1 MiB, 5 bytes
    // at 2 MiB, the map in the data's first block.
    let body = vec![b'x'; 4096];
    let mut data10 = format!("2\n{MIB}\n4096\n{}\n5\n", 2 * MIB).into_bytes();
    data10.resize(512, 0);
    data10.extend_from_slice(&body);
    data10.extend_from_slice(b"tail!");
    let pax10 = pax_block(&[
        ("GNU.sparse.major", "1"),
        ("GNU.sparse.minor", "0"),
        ("GNU.sparse.name", "var/lib/disk.img"),
        ("GNU.sparse.realsize", &(2 * MIB + 5).to_string()),
    ]);
    let h10 = block("var/lib/GNUSparseFile.0/disk.img", b'0', data10.len() as u64, |_| {});
    // PAX 0.1: "abc" at 0, then a hole to 1 MiB.
    let pax01 = pax_block(&[
        ("GNU.sparse.major", "0"),
        ("GNU.sparse.minor", "1"),
        ("GNU.sparse.name", "var/lib/zero-one.img"),
        ("GNU.sparse.size", &MIB.to_string()),
        ("GNU.sparse.numblocks", "2"),
        ("GNU.sparse.map", &format!("0,3,{MIB},0")),
    ]);
    let h01 = block("var/lib/GNUSparseFile.0/zero-one.img", b'0', 3, |_| {});
    // Old GNU 'S': "end" at 1 MiB - 3 of a 1 MiB file.
    let gnu = block("var/lib/gnu.img", b'S', 3, |h| {
        h[257..265].copy_from_slice(b"ustar  \0");
        h[386..410].copy_from_slice(format!("{:011o}\0{:011o}\0", MIB - 3, 3).as_bytes());
        h[483..495].copy_from_slice(format!("{MIB:011o}\0").as_bytes());
    });
    let layer = hand_tar(&[&pax10, &h10, &data10, &pax01, &h01, b"abc", &gnu, b"end"]);
    let (o, rootfs) = unpack_layers(&reg, &work, "sparse", vec![layer]);
    assert_exit(&o, 0);
    let mut want = vec![0u8; (2 * MIB + 5) as usize];
    want[MIB as usize..MIB as usize + 4096].copy_from_slice(&body);
    want[2 * MIB as usize..].copy_from_slice(b"tail!");
    let mut want01 = vec![0u8; MIB as usize];
    want01[..3].copy_from_slice(b"abc");
    let mut want_gnu = vec![0u8; MIB as usize];
    want_gnu[MIB as usize - 3..].copy_from_slice(b"end");
    for (rel, want) in [
        ("var/lib/disk.img", &want),
        ("var/lib/zero-one.img", &want01),
        ("var/lib/gnu.img", &want_gnu),
    ] {
        let p = rootfs.join(rel);
        assert!(std::fs::read(&p).unwrap() == *want, "{rel}: wrong content");
        assert_eq!(mode_of(&p), 0o644);
        // ext4 (this machine's /tmp) keeps holes: far fewer blocks than bytes.
        let used = std::fs::metadata(&p).unwrap().blocks() * 512;
        assert!(
            used <= 64 * 1024,
            "{rel}: {used} bytes allocated, the holes were written"
        );
    }
    assert!(!rootfs.join("var/lib/GNUSparseFile.0").exists());

    // A map past the real size, and a sparse version nobody wrote: refused
    // (exit 6), nothing installed.
    let past = pax_block(&[
        ("GNU.sparse.size", "2"),
        ("GNU.sparse.numblocks", "1"),
        ("GNU.sparse.map", "0,3"),
    ]);
    let unknown = pax_block(&[("GNU.sparse.major", "2"), ("GNU.sparse.minor", "0")]);
    for (name, pax) in [("past", past), ("unknown", unknown)] {
        let layer = hand_tar(&[&pax, &block("f", b'0', 3, |_| {}), b"abc"]);
        let (o, rootfs) = unpack_layers(&reg, &work, &format!("sparse-{name}"), vec![layer]);
        assert_exit(&o, 6);
        assert!(stderr(&o).contains("sparse"), "{}", stderr(&o));
        assert!(!rootfs.exists());
    }
}

#[test]
fn device_numbers_wider_than_32_bits_are_refused() {
    let reg = Registry::start(Auth::None);
    let work = TempDir::new("devices");
    // Base-256 major 4294967296: truncated to 32 bits it was device 0:0.
    let dev = block("dev/wide", b'3', 0, |h| {
        h[329] = 0x80;
        h[330..337].copy_from_slice(&(1u64 << 32).to_be_bytes()[1..]);
    });
    let (o, rootfs) = unpack_layers(&reg, &work, "wide-dev", vec![hand_tar(&[&dev])]);
    assert_exit(&o, 6);
    assert!(stderr(&o).contains("device number"), "{}", stderr(&o));
    assert!(!rootfs.exists());
    // A 32-bit one is a device as asked.
    let dev = block("dev/ok", b'3', 0, |h| {
        h[329..337].copy_from_slice(b"0000001\0");
        h[337..345].copy_from_slice(b"0000003\0");
    });
    let (o, rootfs) = unpack_layers(&reg, &work, "ok-dev", vec![hand_tar(&[&dev])]);
    assert_exit(&o, 0);
    let m = std::fs::symlink_metadata(rootfs.join("dev/ok")).unwrap();
    assert_eq!(m.rdev(), libc_makedev(1, 3));
}

/// glibc's makedev, for the device numbers the kernel reports.
fn libc_makedev(major: u64, minor: u64) -> u64 {
    ((major & 0xffff_f000) << 32) | ((major & 0xfff) << 8) | ((minor & 0xffff_ff00) << 12) | (minor & 0xff)
}

#[test]
fn implied_directories_are_0755_whatever_the_umask() {
    let reg = Registry::start(Auth::None);
    let work = TempDir::new("implied");
    let image = Image::new(
        "amd64",
        vec![layer(
            OCI_LAYER_GZIP,
            raw_tar(&[Raw::file("deeply/nested/file", b"x\n", 0o644)]),
        )],
    );
    reg.push_image("implied/app", "v1", &image);
    for umask in ["077", "027"] {
        let (out, rootfs) = (
            work.join(&format!("oci-{umask}")),
            work.join(&format!("rootfs-{umask}")),
        );
        let o = Command::new("sh")
            .arg("-c")
            .arg(format!("umask {umask}; exec \"$0\" \"$@\""))
            .arg(minipull_bin())
            .args(["--plain-http", "--unpack"])
            .arg(&rootfs)
            .arg(format!("{}/implied/app:v1", reg.host))
            .arg(&out)
            .output()
            .unwrap();
        assert_exit(&o, 0);
        assert_eq!(mode_of(&rootfs.join("deeply")), 0o755, "umask {umask}");
        assert_eq!(mode_of(&rootfs.join("deeply/nested")), 0o755, "umask {umask}");
        assert_eq!(mode_of(&rootfs.join("deeply/nested/file")), 0o644);
    }
}

#[test]
fn go17_gnu_headers_with_a_ustar_prefix_are_read_as_go_reads_them() {
    let reg = Registry::start(Auth::None);
    let work = TempDir::new("go17");
    // Go before 1.8 wrote GNU magic with the name's prefix where GNU keeps
    // atime and ctime (Go's invalid-go17.tar, containerd's fixture).
    let prefix = "a".repeat(95);
    let go17 = block("foo", b'0', 4, |h| {
        h[257..265].copy_from_slice(b"ustar  \0");
        h[345..440].copy_from_slice(prefix.as_bytes());
    });
    // A GNU header whose times parse: no prefix.
    let gnu = block("bar", b'0', 4, |h| {
        h[257..265].copy_from_slice(b"ustar  \0");
        h[345..356].copy_from_slice(b"14000000000");
        h[357..368].copy_from_slice(b"14000000000");
    });
    let (o, rootfs) = unpack_layers(&reg, &work, "go17", vec![hand_tar(&[&go17, b"go17", &gnu, b"gnu\n"])]);
    assert_exit(&o, 0);
    assert_eq!(std::fs::read(rootfs.join(&prefix).join("foo")).unwrap(), b"go17");
    assert!(!rootfs.join("foo").exists());
    assert_eq!(std::fs::read(rootfs.join("bar")).unwrap(), b"gnu\n");
}

#[test]
fn xattrs_outside_the_allowlist_are_dropped_unless_kept() {
    let reg = Registry::start(Auth::None);
    let work = TempDir::new("xattr-allow");
    // An access ACL granting uid 1000 rwx (mask rwx) on a 0600 file: set
    // after the chmod it made the file 0670.
    let mut acl = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (1u16, 6u16, u32::MAX),
        (2, 7, 1000),
        (4, 0, u32::MAX),
        (0x10, 7, u32::MAX),
        (0x20, 0, u32::MAX),
    ] {
        acl.extend_from_slice(&tag.to_le_bytes());
        acl.extend_from_slice(&perm.to_le_bytes());
        acl.extend_from_slice(&id.to_le_bytes());
    }
    let cap: &[u8] = &[1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let entries = [
        pax(&[
            ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
            ("SCHILY.xattr.trusted.note", b"t"),
            ("SCHILY.xattr.user.kept", b"u"),
        ]),
        Raw::dir("etc", 0o755),
        pax(&[
            ("SCHILY.xattr.system.posix_acl_access", &acl),
            ("SCHILY.xattr.security.capability", cap),
            ("SCHILY.xattr.security.selinux", b"system_u:object_r:shadow_t:s0\0"),
        ]),
        Raw::file("etc/shadow", b"root:*:\n", 0o600),
    ];
    let image = Image::new("amd64", vec![layer(OCI_LAYER_GZIP, raw_tar(&entries))]);
    reg.push_image("xattr/allow", "v1", &image);
    let (out, rootfs) = (work.join("oci"), work.join("rootfs"));
    let o = pull_unpack(&format!("{}/xattr/allow:v1", reg.host), &rootfs, &out);
    assert_exit(&o, 0);
    let etc = xattrs_of(&rootfs.join("etc"));
    assert_eq!(etc.keys().collect::<Vec<_>>(), ["user.kept"]);
    let shadow = xattrs_of(&rootfs.join("etc/shadow"));
    assert_eq!(
        shadow.keys().collect::<Vec<_>>(),
        ["security.capability", "system.posix_acl_access"]
    );
    assert_eq!(mode_of(&rootfs.join("etc/shadow")), 0o600, "the ACL widened the mode");
    // One note names what was dropped.
    let err = stderr(&o);
    let note: Vec<&str> = err.lines().filter(|l| l.contains("not applied")).collect();
    assert_eq!(note.len(), 1, "{err}");
    for name in ["trusted.overlay.opaque", "trusted.note", "security.selinux"] {
        assert!(note[0].contains(name), "{err}");
    }

    // --keep-xattrs trusted. keeps trusted.* but not overlayfs' markers;
    // those only when named.
    for (keep, want) in [
        (&["trusted."][..], &["trusted.note", "user.kept"][..]),
        (
            &["trusted.", "trusted.overlay."][..],
            &["trusted.note", "trusted.overlay.opaque", "user.kept"][..],
        ),
    ] {
        let rootfs = work.join(&format!("rootfs-{}", keep.len()));
        let mut args = vec!["unpack".to_string()];
        for k in keep {
            args.extend(["--keep-xattrs".to_string(), k.to_string()]);
        }
        args.extend([out.display().to_string(), rootfs.display().to_string()]);
        let o = minipull(&args.iter().map(String::as_str).collect::<Vec<_>>(), None);
        assert_exit(&o, 0);
        assert_eq!(
            xattrs_of(&rootfs.join("etc")).keys().collect::<Vec<_>>(),
            want,
            "{keep:?}"
        );
    }
    let o = minipull(
        &["unpack", "--keep-xattrs", "", out.to_str().unwrap(), "/nonexistent"],
        None,
    );
    assert_exit(&o, 2);
}

/// Raw's fixed mtime (octal 14000000000).
const RAW_MTIME: i64 = 0o14000000000;

#[test]
fn usrmerge_lib_link_then_lib_systemd_x_lands_in_usr_lib() {
    let reg = Registry::start(Auth::None);
    let work = TempDir::new("resolve-usrmerge");
    let lower = [
        Raw::dir("usr", 0o755),
        Raw::dir("usr/lib", 0o755),
        Raw::symlink("lib", "usr/lib"),
    ];
    let upper = [
        Raw::dir("lib/systemd", 0o750),
        Raw::file("lib/systemd/x", b"unit\n", 0o644),
    ];
    let (o, rootfs) = unpack_layers(&reg, &work, "usrmerge", vec![raw_tar(&lower), raw_tar(&upper)]);
    assert_exit(&o, 0);
    assert_eq!(std::fs::read_link(rootfs.join("lib")).unwrap(), Path::new("usr/lib"));
    assert_eq!(std::fs::read(rootfs.join("usr/lib/systemd/x")).unwrap(), b"unit\n");
    // The deferred directory metadata found its directory through the link.
    assert_eq!(mode_of(&rootfs.join("usr/lib/systemd")), 0o750);
    assert_eq!(
        std::fs::metadata(rootfs.join("usr/lib/systemd")).unwrap().mtime(),
        RAW_MTIME
    );
}

#[test]
fn var_run_absolute_link_then_var_run_x_lands_in_run() {
    let reg = Registry::start(Auth::None);
    let work = TempDir::new("resolve-varrun");
    let name = "minipull-test-resolve-x";
    let lower = [
        Raw::dir("var", 0o755),
        Raw::dir("run", 0o755),
        Raw::symlink("var/run", "/run"),
    ];
    let upper = [Raw::file(&format!("var/run/{name}"), b"pid\n", 0o644)];
    let host_before = std::fs::symlink_metadata(Path::new("/run").join(name)).is_ok();
    let (o, rootfs) = unpack_layers(&reg, &work, "varrun", vec![raw_tar(&lower), raw_tar(&upper)]);
    assert_exit(&o, 0);
    assert_eq!(std::fs::read(rootfs.join("run").join(name)).unwrap(), b"pid\n");
    assert!(std::fs::symlink_metadata(rootfs.join("var/run"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(
        !host_before && std::fs::symlink_metadata(Path::new("/run").join(name)).is_err(),
        "the host's /run was written"
    );
}

#[test]
fn absolute_hardlink_target_usr_bin_perlbug_resolves_in_root() {
    let reg = Registry::start(Auth::None);
    let work = TempDir::new("resolve-perlbug");
    let entries = [
        Raw::dir("usr/bin", 0o755),
        Raw::file("usr/bin/perlbug", b"#!/usr/bin/perl\n", 0o755),
        Raw::hardlink("usr/bin/perlthanks", "/usr/bin/perlbug"),
    ];
    let (o, rootfs) = unpack_layers(&reg, &work, "perlbug", vec![raw_tar(&entries)]);
    assert_exit(&o, 0);
    let ino = |p: &str| std::fs::metadata(rootfs.join(p)).unwrap().ino();
    assert_eq!(ino("usr/bin/perlthanks"), ino("usr/bin/perlbug"));
    assert_eq!(std::fs::metadata(rootfs.join("usr/bin/perlbug")).unwrap().nlink(), 2);
}

#[test]
fn absolute_entry_name_etc_passwd_is_stripped() {
    let reg = Registry::start(Auth::None);
    let work = TempDir::new("resolve-passwd");
    let host = canary(Path::new("/etc/passwd"));
    let entries = [Raw::file("/etc/passwd", b"root:x:0:0::/root:/bin/sh\n", 0o644)];
    let (o, rootfs) = unpack_layers(&reg, &work, "passwd", vec![raw_tar(&entries)]);
    assert_exit(&o, 0);
    assert_eq!(
        std::fs::read(rootfs.join("etc/passwd")).unwrap(),
        b"root:x:0:0::/root:/bin/sh\n"
    );
    assert_eq!(canary(Path::new("/etc/passwd")), host, "the host's /etc/passwd changed");
}

#[test]
fn whiteout_under_a_symlinked_parent_resolves_and_under_a_dead_one_is_a_no_op() {
    let reg = Registry::start(Auth::None);
    let work = TempDir::new("resolve-whiteout");
    let lower = [
        Raw::dir("real", 0o755),
        Raw::file("real/x", b"x\n", 0o644),
        Raw::file("real/kept", b"k\n", 0o644),
        Raw::symlink("l", "/real"),
        Raw::symlink("dead", "/nowhere/dir"),
    ];
    let upper = [
        Raw::file("l/.wh.x", b"", 0o644),
        Raw::file("dead/.wh.y", b"", 0o644),
        Raw::file("dead/.wh..wh..opq", b"", 0o644),
    ];
    let (o, rootfs) = unpack_layers(&reg, &work, "wh-link", vec![raw_tar(&lower), raw_tar(&upper)]);
    assert_exit(&o, 0);
    assert!(!rootfs.join("real/x").exists(), "the whiteout through l/ did not apply");
    assert!(rootfs.join("real/kept").exists());
    assert!(
        !rootfs.join("nowhere").exists(),
        "a whiteout under a dead link created its target"
    );
    assert!(std::fs::symlink_metadata(rootfs.join("dead"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn whiteout_never_removes_what_its_own_layer_created() {
    let reg = Registry::start(Auth::None);
    let work = TempDir::new("wh-own");
    let lower = [
        Raw::dir("usr", 0o755),
        Raw::dir("usr/lib", 0o755),
        Raw::symlink("lib", "usr/lib"),
        Raw::file("x", b"lower\n", 0o644),
        Raw::file("usr/lib/z", b"lower\n", 0o644),
    ];
    // `x` then `.wh.x`; `usr/lib/y` then its other name's whiteout; and a
    // lower file whited out by its other name, which must go.
    let upper = [
        Raw::file("x", b"upper\n", 0o644),
        Raw::file(".wh.x", b"", 0o644),
        Raw::file("usr/lib/y", b"upper\n", 0o644),
        Raw::file("lib/.wh.y", b"", 0o644),
        Raw::file("lib/.wh.z", b"", 0o644),
    ];
    let (o, rootfs) = unpack_layers(&reg, &work, "wh-own", vec![raw_tar(&lower), raw_tar(&upper)]);
    assert_exit(&o, 0);
    assert_eq!(std::fs::read(rootfs.join("x")).unwrap(), b"upper\n");
    assert_eq!(std::fs::read(rootfs.join("usr/lib/y")).unwrap(), b"upper\n");
    assert!(!rootfs.join("usr/lib/z").exists());
}

#[test]
fn opaque_marker_after_entries_keeps_them_when_parents_are_implied() {
    let reg = Registry::start(Auth::None);
    let work = TempDir::new("opq-implied");
    let lower = [
        Raw::dir("a", 0o755),
        Raw::dir("a/b", 0o755),
        Raw::dir("a/b/c", 0o755),
        Raw::file("a/b/c/bar", b"bar\n", 0o644),
        Raw::file("a/other", b"o\n", 0o644),
        Raw::dir("a/d", 0o755),
    ];
    let upper = [
        Raw::file("a/b/c/foo", b"foo\n", 0o644),
        Raw::file("a/.wh..wh..opq", b"", 0o644),
    ];
    let (o, rootfs) = unpack_layers(&reg, &work, "opq-implied", vec![raw_tar(&lower), raw_tar(&upper)]);
    assert_exit(&o, 0);
    assert_eq!(std::fs::read(rootfs.join("a/b/c/foo")).unwrap(), b"foo\n");
    assert!(!rootfs.join("a/b/c/bar").exists());
    assert!(!rootfs.join("a/other").exists());
    assert!(!rootfs.join("a/d").exists());
}

#[test]
fn whiteout_keeps_its_parents_times() {
    let reg = Registry::start(Auth::None);
    let work = TempDir::new("wh-times");
    let lower = [
        Raw::dir("some", 0o755),
        Raw::dir("some/path", 0o755),
        Raw::file("some/path/file", b"f\n", 0o644),
        Raw::dir("o", 0o755),
        Raw::file("o/z", b"z\n", 0o644),
    ];
    let upper = [
        Raw::file("some/path/.wh.file", b"", 0o644),
        Raw::file("o/.wh..wh..opq", b"", 0o644),
    ];
    let (o, rootfs) = unpack_layers(&reg, &work, "wh-times", vec![raw_tar(&lower), raw_tar(&upper)]);
    assert_exit(&o, 0);
    assert!(!rootfs.join("some/path/file").exists() && !rootfs.join("o/z").exists());
    for d in ["some/path", "o"] {
        assert_eq!(std::fs::metadata(rootfs.join(d)).unwrap().mtime(), RAW_MTIME, "{d}");
    }
}

#[test]
fn a_remembered_parent_replaced_on_the_way_is_found_again() {
    let reg = Registry::start(Auth::None);
    let work = TempDir::new("resolve-cache");
    // `a/b` is looked up for `x`, then `a` becomes a link to `c`: `y` must
    // go where `a/b` now leads, not into the directory `a/b` was.
    let entries = [
        Raw::dir("c/b", 0o755),
        Raw::file("a/b/x", b"x\n", 0o644),
        Raw::symlink("a", "c"),
        Raw::file("a/b/y", b"y\n", 0o644),
    ];
    let (o, rootfs) = unpack_layers(&reg, &work, "cache", vec![raw_tar(&entries)]);
    assert_exit(&o, 0);
    assert_eq!(std::fs::read(rootfs.join("c/b/y")).unwrap(), b"y\n");
    assert!(!rootfs.join("c/b/x").exists());
}

/// A blob in OUTDIR replaced by a symbolic link to a file elsewhere (with
/// the same content, so only the link gives it away): the manifest, the
/// config and a layer are each refused, nothing is extracted, and the file
/// the link points at is never read as the blob.
#[test]
fn unpack_never_follows_a_symlinked_blob() {
    let reg = Registry::start(Auth::None);
    let work = TempDir::new("unpack-symlinked-blob");
    let img = Image::new("amd64", vec![gz_layer(&[("etc/hello", b"linked\n")])]);
    let (manifest, _) = reg.push_image("app/linked", "v1", &img);
    let out = work.join("oci");
    let r = format!("{}/app/linked:v1", reg.host);
    assert_exit(&minipull(&["--plain-http", &r, out.to_str().unwrap()], None), 0);
    let mut digests = vec![manifest];
    digests.extend(reg.blob_digests("app/linked", "v1"));
    for (i, d) in digests.iter().enumerate() {
        let blob = blob_path(&out, d);
        let moved = work.join(&format!("elsewhere-{i}"));
        std::fs::rename(&blob, &moved).unwrap();
        std::os::unix::fs::symlink(&moved, &blob).unwrap();
        let root = work.join(&format!("root-{i}"));
        let o = minipull(&["unpack", out.to_str().unwrap(), root.to_str().unwrap()], None);
        assert_exit(&o, 7);
        assert!(stderr(&o).contains("symbolic link"), "{d}: {}", stderr(&o));
        assert!(!root.join("etc/hello").exists(), "{d}: nothing extracted");
        std::fs::remove_file(&blob).unwrap();
        std::fs::rename(&moved, &blob).unwrap();
    }
    // Put back as files, the same blobs unpack.
    let root = work.join("root");
    let o = minipull(&["unpack", out.to_str().unwrap(), root.to_str().unwrap()], None);
    assert_exit(&o, 0);
    assert_eq!(std::fs::read(root.join("etc/hello")).unwrap(), b"linked\n");
}

/// Read-only bind mounts, unmounted on drop.
struct RoBind(std::path::PathBuf);

impl RoBind {
    fn new(from: &Path, at: std::path::PathBuf) -> RoBind {
        std::fs::create_dir_all(&at).unwrap();
        run_ok("mount", &["--bind", from.to_str().unwrap(), at.to_str().unwrap()]);
        let bind = RoBind(at);
        run_ok("mount", &["-o", "remount,bind,ro", bind.0.to_str().unwrap()]);
        bind
    }
}

impl Drop for RoBind {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A layout shipped on read-only media, written by another user (uid 1000,
/// as a stick or an ISO made on a laptop): `ls`, `config` and `unpack` read
/// it without creating anything in it, and its blobs are still checked
/// against their digests (a damaged layer is refused).
#[test]
fn read_only_layout_of_another_user_can_be_listed_configured_and_unpacked() {
    let reg = Registry::start(Auth::None);
    let work = TempDir::new("read-only-layout");
    let img = Image::new("amd64", vec![gz_layer(&[("etc/hello", b"from the stick\n")])]);
    reg.push_image("app/stick", "v1", &img);
    let layout = work.join("layout");
    let r = format!("{}/app/stick:v1", reg.host);
    assert_exit(&minipull(&["--plain-http", &r, layout.to_str().unwrap()], None), 0);
    // Our own layout, mounted read-only: no lock can be made there, none is needed.
    let ro = RoBind::new(&layout, work.join("own-media"));
    let o = minipull(&["ls", ro.0.to_str().unwrap()], None);
    assert_exit(&o, 0);
    drop(ro);
    run_ok("chown", &["-R", "1000:1000", layout.to_str().unwrap()]);
    let ro = RoBind::new(&layout, work.join("media"));
    let dir = ro.0.to_str().unwrap();

    let o = minipull(&["ls", dir], None);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("complete"), "{}", stdout(&o));
    let o = minipull(&["config", &format!("{dir}:v1")], None);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("diff_ids"), "{}", stdout(&o));
    let root = work.join("root");
    let o = minipull(&["unpack", dir, root.to_str().unwrap()], None);
    assert_exit(&o, 0);
    assert_eq!(std::fs::read(root.join("etc/hello")).unwrap(), b"from the stick\n");
    assert!(!layout.join(".minipull").exists(), "nothing created in the layout");
    drop(ro);

    // Writable but another user's: read the same way, nothing created in it.
    let o = minipull(&["ls", layout.to_str().unwrap()], None);
    assert_exit(&o, 0);
    assert!(!layout.join(".minipull").exists(), "nothing created in the layout");
    // Still checked: one flipped byte of the layer is refused.
    let layer = &reg.blob_digests("app/stick", "v1")[1];
    let path = blob_path(&layout, layer);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() - 10;
    bytes[at] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let ro = RoBind::new(&layout, work.join("media2"));
    let root2 = work.join("root2");
    let o = minipull(&["unpack", ro.0.to_str().unwrap(), root2.to_str().unwrap()], None);
    assert_exit(&o, 6);
    assert!(!root2.join("etc/hello").exists(), "nothing extracted");
}

/// Whether process `pid` is stopped (it sent itself SIGSTOP at a test hook).
fn stopped(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('T'))
}

/// A FIFO swapped for a hard link to another file right after the mknod
/// (by whoever could write in the tree) does not get the FIFO's mode: the
/// node is created with its mode, nothing is chmodded by name after it.
#[test]
fn a_fifo_swapped_for_a_hard_link_after_its_mknod_gives_its_mode_to_nothing() {
    if std::env::var_os("MINIPULL_BIN").is_some() && std::env::var_os("MINIPULL_TEST_HOOKS").is_none() {
        eprintln!("skipped: MINIPULL_BIN is set, and only debug builds honour the test hooks");
        return;
    }
    let reg = Registry::start(Auth::None);
    let work = TempDir::new("unpack-mknod-swap");
    let t = raw_tar(&[Raw {
        mode: 0o600,
        ..Raw::fifo("pipe")
    }]);
    reg.push_image("app/fifo", "v1", &Image::new("amd64", vec![layer(OCI_LAYER_GZIP, t)]));
    let victim = work.join("victim");
    std::fs::write(&victim, b"someone else's\n").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (out, rootfs) = (work.join("oci"), work.join("rootfs"));
    let child = Command::new(minipull_bin())
        .args(["--plain-http", "--unpack"])
        .arg(&rootfs)
        .arg(format!("{}/app/fifo:v1", reg.host))
        .arg(&out)
        .env("MINIPULL_TEST_STOP", "mknod")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !stopped(child.id()) {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "never stopped after the mknod"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let pipe = work.join(".rootfs.minipull-staging/pipe");
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::symlink_metadata(&pipe).unwrap().file_type().is_fifo());
    assert_eq!(mode_of(&pipe), 0o600, "created with its mode");
    std::fs::remove_file(&pipe).unwrap();
    std::fs::hard_link(&victim, &pipe).unwrap();
    assert!(Command::new("kill")
        .arg("-CONT")
        .arg(child.id().to_string())
        .status()
        .unwrap()
        .success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        mode_of(&victim),
        0o644,
        "the FIFO's mode went to the file swapped in: {}",
        stderr(&o)
    );
}

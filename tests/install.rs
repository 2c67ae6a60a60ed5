//! The update transaction (pull → stage → verify → swap with the record →
//! upkeep): the record always names the tree in ROOTFS, failures after the
//! swap are exit 9, `--keep-old` survives a cut at every step of the swap,
//! `--prune` converges after an interruption and keeps to its repository,
//! one install at a time per ROOTFS, and ROOTFS gets the `./` entry's
//! metadata. Cuts and faults use the debug build's test hooks
//! (`MINIPULL_TEST_KILL`, `MINIPULL_TEST_TERM`, `MINIPULL_TEST_FAULT`,
//! `MINIPULL_TEST_NO_EXCHANGE`).

#![cfg(feature = "unpack")]

mod common;
use common::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

struct World {
    reg: Registry,
    work: TempDir,
    out: PathBuf,
    root: PathBuf,
}

impl World {
    fn new(tag: &str) -> World {
        let work = TempDir::new(tag);
        World {
            reg: Registry::start(Auth::None),
            out: work.join("oci"),
            root: work.join("root"),
            work,
        }
    }

    fn r(&self, repo: &str, tag: &str) -> String {
        format!("{}/{repo}:{tag}", self.reg.host)
    }

    /// Push an image whose `etc/version` is `version` (plus `extra` layers).
    fn push(&self, repo: &str, tag: &str, version: &str, extra: Vec<Layer>) -> String {
        let mut layers = vec![gz_layer(&[("etc/version", version.as_bytes())])];
        layers.extend(extra);
        self.reg.push_image(repo, tag, &Image::new("amd64", layers)).0
    }

    /// `minipull --plain-http ARGS` with test hooks in `env`.
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut a = vec!["--plain-http"];
        a.extend_from_slice(args);
        minipull_env(&a, None, env)
    }

    /// Pull REF and install it into the root (`--force`, plus `extra`).
    fn install(&self, reference: &str, extra: &[&str], env: &[(&str, &str)]) -> Output {
        let mut a = vec!["--force", "--unpack", self.root.to_str().unwrap()];
        a.extend_from_slice(extra);
        a.push(reference);
        a.push(self.out.to_str().unwrap());
        self.run(&a, env)
    }

    /// `minipull unpack [extra] OUT:tag ROOT`.
    fn unpack(&self, tag: &str, extra: &[&str], env: &[(&str, &str)]) -> Output {
        let src = format!("{}:{tag}", self.out.display());
        let mut a = vec!["unpack"];
        a.extend_from_slice(extra);
        a.push(&src);
        a.push(self.root.to_str().unwrap());
        minipull_env(&a, None, env)
    }

    fn record(&self) -> serde_json::Value {
        read_json(&self.work.join("root.minipull.json"))
    }

    fn recorded(&self) -> String {
        self.record()["digest"].as_str().unwrap_or_default().to_string()
    }

    /// What the root (or the kept root) holds.
    fn version(&self, dir: &str) -> String {
        std::fs::read_to_string(self.work.join(dir).join("etc/version")).unwrap_or_else(|_| "-".into())
    }

    /// What minipull keeps beside ROOTFS besides ROOTFS, ROOTFS.old, the
    /// record and the lock: nothing, once a run has settled.
    fn leftovers(&self) -> Vec<String> {
        std::fs::read_dir(&self.work.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with(".root.") && n != ".root.minipull-lock")
            .collect()
    }
}

fn blobs_in(out: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(out.join("blobs/sha256"))
        .unwrap()
        .map(|e| format!("sha256:{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    v.sort();
    v
}

/// What an image's manifest reaches, with the manifest itself.
fn image_blobs(reg: &Registry, repo: &str, digest: &str) -> Vec<String> {
    let mut v = reg.blob_digests(repo, digest);
    v.push(digest.to_string());
    v.sort();
    v.dedup();
    v
}

fn killed(o: &Output) -> bool {
    o.status.signal() == Some(9)
}

#[test]
fn item_3_after_the_swap_upkeep_failures_exit_9_and_the_record_names_the_new_root() {
    if !hooks() {
        return;
    }
    let w = World::new("install-3");
    let repo = "fleet/os";
    let d1 = w.push(repo, "stable", "v1", vec![]);
    assert_exit(&w.install(&w.r(repo, "stable"), &["--prune"], &[]), 0);
    assert_eq!((w.version("root"), w.recorded()), ("v1".into(), d1.clone()));
    // The record is bound to the tree it names.
    let ino = std::fs::metadata(&w.root).unwrap().ino();
    assert_eq!(w.record()["inode"], ino);

    // --prune fails after the new root is in place: exit 9, the summary
    // with the warning, and the record names the new root.
    let d2 = w.push(repo, "stable", "v2", vec![]);
    let o = w.install(
        &w.r(repo, "stable"),
        &["--prune", "--json"],
        &[("MINIPULL_TEST_FAULT", "prune")],
    );
    assert_exit(&o, 9);
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (s["digest"].as_str(), s["installed"].as_bool()),
        (Some(d2.as_str()), Some(true))
    );
    let warnings = s["warnings"].as_array().unwrap();
    assert!(
        warnings.len() == 1 && warnings[0].as_str().unwrap().contains("--prune failed"),
        "{s}"
    );
    assert!(stderr(&o).contains("--prune failed"), "{}", stderr(&o));
    assert_eq!((w.version("root"), w.recorded()), ("v2".into(), d2.clone()));
    assert_eq!(w.record()["inode"], std::fs::metadata(&w.root).unwrap().ino());
    // The next run finds it installed and does the prune it missed.
    let o = w.install(&w.r(repo, "stable"), &["--prune"], &[]);
    assert_exit(&o, 0);
    assert!(stderr(&o).contains("already holds"), "{}", stderr(&o));
    assert!(!blobs_in(&w.out).contains(&d1), "v1 pruned by the re-run");

    // The record cannot be written (a full disk): nothing changed, exit 7.
    let d3 = w.push(repo, "stable", "v3", vec![]);
    let o = w.install(&w.r(repo, "stable"), &["--prune"], &[("MINIPULL_TEST_FAULT", "record")]);
    assert_exit(&o, 7);
    assert_eq!((w.version("root"), w.recorded()), ("v2".into(), d2.clone()));
    assert_eq!(w.leftovers(), Vec::<String>::new());
    // Removing the old tree fails: installed, exit 9.
    let o = w.install(&w.r(repo, "stable"), &[], &[("MINIPULL_TEST_FAULT", "tidy")]);
    assert_exit(&o, 9);
    assert_eq!((w.version("root"), w.recorded()), ("v3".into(), d3.clone()));
    // Moving the record in fails: exit 9; the pending record names the tree
    // ROOTFS holds, and the next run (even one refused) moves it in.
    let d4 = w.push(repo, "stable", "v4", vec![]);
    let o = w.install(&w.r(repo, "stable"), &[], &[("MINIPULL_TEST_FAULT", "promote")]);
    assert_exit(&o, 9);
    assert_eq!(w.version("root"), "v4");
    let pending = read_json(&w.work.join(".root.minipull-pending.json"));
    assert_eq!(pending["digest"], d4.as_str());
    assert_eq!(pending["inode"], std::fs::metadata(&w.root).unwrap().ino());
    assert_exit(&w.unpack("stable", &[], &[]), 2);
    assert_eq!(w.recorded(), d4);
    assert_eq!(w.leftovers(), Vec::<String>::new());
}

#[test]
fn item_3_exit_9_outranks_an_interrupt_once_the_swap_is_done() {
    if !hooks() {
        return;
    }
    let w = World::new("install-3-term");
    let repo = "fleet/os";
    let d1 = w.push(repo, "stable", "v1", vec![]);
    assert_exit(&w.install(&w.r(repo, "stable"), &["--prune"], &[]), 0);
    // A SIGTERM before the swap still interrupts: 143, nothing installed.
    w.push(repo, "stable", "v2", vec![]);
    let o = w.install(&w.r(repo, "stable"), &["--prune"], &[("MINIPULL_TEST_TERM", "layer")]);
    assert_exit(&o, 143);
    assert!(stderr(&o).contains("interrupted"), "{}", stderr(&o));
    assert_eq!((w.version("root"), w.recorded()), ("v1".into(), d1.clone()));
    // A SIGTERM after the swap, then --prune fails: 9 (installed; upkeep
    // failed), not 143, and the record names the new root.
    let d3 = w.push(repo, "stable", "v3", vec![]);
    let o = w.install(
        &w.r(repo, "stable"),
        &["--prune"],
        &[("MINIPULL_TEST_TERM", "promote"), ("MINIPULL_TEST_FAULT", "prune")],
    );
    assert_exit(&o, 9);
    assert!(stderr(&o).contains("--prune failed"), "{}", stderr(&o));
    assert_eq!((w.version("root"), w.recorded()), ("v3".into(), d3.clone()));
    // And with nothing failing, the run's own 0 stands.
    let d4 = w.push(repo, "stable", "v4", vec![]);
    let o = w.install(
        &w.r(repo, "stable"),
        &["--prune"],
        &[("MINIPULL_TEST_TERM", "exchange")],
    );
    assert_exit(&o, 0);
    assert_eq!((w.version("root"), w.recorded()), ("v4".into(), d4));
    assert_eq!(w.leftovers(), Vec::<String>::new());
}

#[test]
fn item_13_keep_old_survives_a_cut_at_every_step_of_the_swap() {
    if !hooks() {
        return;
    }
    let w = World::new("install-13");
    let repo = "fleet/os";
    let d: Vec<String> = (0..3)
        .map(|i| {
            let d = w.push(repo, &format!("v{i}"), &format!("v{i}"), vec![]);
            assert_exit(&w.run(&[&w.r(repo, &format!("v{i}")), w.out.to_str().unwrap()], &[]), 0);
            d
        })
        .collect();
    let old_state = |w: &World| (w.version("root"), w.recorded(), w.version("root.old"));
    let a = ("v1".to_string(), d[1].clone(), "v0".to_string());
    let b = ("v2".to_string(), d[2].clone(), "v1".to_string());
    let reset = |w: &World| {
        assert_exit(&w.unpack("v0", &["--force"], &[]), 0);
        assert_exit(&w.unpack("v1", &["--force", "--keep-old"], &[]), 0);
        assert_eq!(old_state(w), a);
    };
    // Each step of the install of v2, in order, with and without
    // RENAME_EXCHANGE; before the swap the old state comes back, after it
    // the new one.
    for (point, fallback, after) in [
        ("record", false, false),
        ("retired", false, false),
        ("exchange", false, true),
        ("promote", false, true),
        ("tidy", false, true),
        ("retired", true, false),
        ("parked", true, false),
        ("exchange", true, true),
        ("promote", true, true),
    ] {
        reset(&w);
        let mut env = vec![("MINIPULL_TEST_KILL", point)];
        if fallback {
            env.push(("MINIPULL_TEST_NO_EXCHANGE", "1"));
        }
        let o = w.unpack("v2", &["--force", "--keep-old"], &env);
        assert!(killed(&o), "{point}: {:?} {}", o.status, stderr(&o));
        // The next run settles it before anything else (this one is then
        // refused: ROOTFS is not empty).
        assert_exit(&w.unpack("v2", &[], &[]), 2);
        let want = if after { &b } else { &a };
        assert_eq!(&old_state(&w), want, "cut at {point} (fallback: {fallback})");
        assert_eq!(w.leftovers(), Vec::<String>::new(), "cut at {point}");
        assert_eq!(w.record()["inode"], std::fs::metadata(&w.root).unwrap().ino());
        // And the update then ends where an uncut one does.
        if !after {
            assert_exit(&w.unpack("v2", &["--force", "--keep-old"], &[]), 0);
        }
        assert_eq!(old_state(&w), b, "after the cut at {point}");
    }
    // Installing the image ROOTFS already holds again never discards the
    // known-good ROOTFS.old.
    let o = w.unpack("v2", &["--force", "--keep-old"], &[]);
    assert_exit(&o, 0);
    assert!(stderr(&o).contains("installed again"), "{}", stderr(&o));
    assert_eq!(old_state(&w), b);
}

#[test]
fn item_14_prune_after_an_interrupted_update_converges_to_the_uninterrupted_disk() {
    let w = World::new("install-14");
    let repo = "fleet/os";
    let base = || gz_layer(&[("base", b"base" as &[u8])]);
    let big = |seed: u64| gz_layer(&[("big", &noise(24 << 20, seed))]);
    let d1 = w.push(repo, "stable", "v1", vec![base(), big(1)]);
    assert_exit(&w.install(&w.r(repo, "stable"), &["--prune"], &[]), 0);
    assert_eq!(blobs_in(&w.out), image_blobs(&w.reg, repo, &d1));
    // v2, killed while it unpacks (after the pull: index.json names v2).
    let d2 = w.push(repo, "stable", "v2", vec![base(), big(2)]);
    let mut child = std::process::Command::new(minipull_bin())
        .args(["--plain-http", "-q", "--prune", "--force", "--unpack"])
        .arg(&w.root)
        .arg(w.r(repo, "stable"))
        .arg(&w.out)
        .spawn()
        .unwrap();
    let staging = w.work.join(".root.minipull-staging");
    let start = Instant::now();
    while !staging.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the unpack ended before it could be cut"
        );
        assert!(start.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(w.version("root"), "v1", "cut before the swap");
    // The same command again: the disk an uncut update leaves.
    assert_exit(&w.install(&w.r(repo, "stable"), &["--prune"], &[]), 0);
    assert_eq!(w.version("root"), "v2");
    assert_eq!(blobs_in(&w.out), image_blobs(&w.reg, repo, &d2), "v1's blobs are gone");
    // v3, cut right after the swap (before the prune).
    if hooks() {
        let d3 = w.push(repo, "stable", "v3", vec![base(), big(3)]);
        let o = w.install(
            &w.r(repo, "stable"),
            &["--prune"],
            &[("MINIPULL_TEST_KILL", "exchange")],
        );
        assert!(killed(&o));
        assert_exit(&w.install(&w.r(repo, "stable"), &["--prune"], &[]), 0);
        assert_eq!((w.version("root"), w.recorded()), ("v3".into(), d3.clone()));
        assert_eq!(blobs_in(&w.out), image_blobs(&w.reg, repo, &d3), "v2's blobs are gone");
        assert!(!w.out.join(".minipull/prune.json").exists());
    }
}

#[test]
fn item_11_prune_keeps_to_the_repository_of_the_image_pulled() {
    let w = World::new("install-11");
    let app = w.push(
        "demo/app",
        "1.0",
        "app",
        vec![gz_layer(&[("only-app", b"app" as &[u8])])],
    );
    let other = w.push("demo/other", "1.0", "other", vec![]);
    assert_exit(&w.run(&[&w.r("demo/app", "1.0"), w.out.to_str().unwrap()], &[]), 0);
    let o = w.run(&["--prune", &w.r("demo/other", "1.0"), w.out.to_str().unwrap()], &[]);
    assert_exit(&o, 0);
    let have = blobs_in(&w.out);
    for b in image_blobs(&w.reg, "demo/app", &app) {
        assert!(
            have.contains(&b),
            "{b} of demo/app:1.0 was pruned by a pull of demo/other:1.0"
        );
    }
    assert!(have.contains(&other));
}

#[test]
fn item_16_one_install_at_a_time_and_the_second_finds_it_installed() {
    let w = World::new("install-16");
    let repo = "fleet/os";
    w.push(repo, "stable", "v1", vec![]);
    assert_exit(&w.install(&w.r(repo, "stable"), &[], &[]), 0);
    let ino = std::fs::metadata(&w.root).unwrap().ino();
    // Another install holds the lock and is writing its staging tree.
    let lock = std::fs::File::options()
        .write(true)
        .open(w.work.join(".root.minipull-lock"))
        .expect("the lock file beside ROOTFS");
    lock.lock().unwrap();
    let staging = w.work.join(".root.minipull-staging");
    std::fs::create_dir_all(staging.join("half")).unwrap();
    let errors = w.work.join("stderr");
    let mut child = std::process::Command::new(minipull_bin())
        .args(["--plain-http", "--force", "--unpack"])
        .arg(&w.root)
        .arg(w.r(repo, "stable"))
        .arg(&w.out)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&errors).unwrap())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(child.try_wait().unwrap().is_none(), "it waits for the lock");
    assert!(
        staging.join("half").exists(),
        "the other install's staging tree is left alone"
    );
    // A run with --lock-wait gives up, saying why.
    let o = w.run(
        &[
            "--lock-wait",
            "1",
            "--force",
            "--unpack",
            w.root.to_str().unwrap(),
            &w.r(repo, "stable"),
            w.work.join("other-oci").to_str().unwrap(),
        ],
        &[],
    );
    assert_exit(&o, 7);
    assert!(
        stderr(&o).contains("another minipull is still installing"),
        "{}",
        stderr(&o)
    );
    // The first install ends (its staging tree became ROOTFS) and lets go.
    std::fs::remove_dir_all(&staging).unwrap();
    drop(lock);
    assert!(child.wait().unwrap().success());
    let e = std::fs::read_to_string(&errors).unwrap();
    assert!(e.contains("waiting for it to finish"), "{e}");
    assert!(e.contains("already holds"), "the record is read again: {e}");
    assert_eq!(std::fs::metadata(&w.root).unwrap().ino(), ino, "nothing reinstalled");

    // OUTDIR's lock: --lock-wait bounds the wait for it too.
    std::fs::create_dir_all(w.out.join(".minipull")).unwrap();
    let layout_lock = std::fs::File::options()
        .write(true)
        .create(true)
        .truncate(false)
        .open(w.out.join(".minipull/lock"))
        .unwrap();
    layout_lock.lock().unwrap();
    let t = Instant::now();
    let o = w.run(
        &["--lock-wait", "1", &w.r(repo, "stable"), w.out.to_str().unwrap()],
        &[],
    );
    assert_exit(&o, 7);
    assert!(t.elapsed() < Duration::from_secs(10));
    assert!(stderr(&o).contains("waiting up to 1 s"), "{}", stderr(&o));
}

/// A ustar entry with an owner and a time.
fn entry(out: &mut Vec<u8>, path: &str, kind: u8, mode: u32, uid: u32, mtime: u64, data: &[u8]) {
    let mut h = [0u8; 512];
    h[..path.len()].copy_from_slice(path.as_bytes());
    h[100..107].copy_from_slice(format!("{mode:07o}").as_bytes());
    h[108..115].copy_from_slice(format!("{uid:07o}").as_bytes());
    h[116..123].copy_from_slice(format!("{uid:07o}").as_bytes());
    h[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
    h[136..147].copy_from_slice(format!("{mtime:011o}").as_bytes());
    h[156] = kind;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn root_layer(mode: u32, uid: u32, mtime: u64) -> Layer {
    let mut t = Vec::new();
    entry(&mut t, "./", b'5', mode, uid, mtime, b"");
    entry(&mut t, "./etc/", b'5', 0o755, 0, 1000, b"");
    entry(&mut t, "./etc/version", b'0', 0o644, 0, 1000, b"root entry\n");
    t.extend_from_slice(&[0u8; 1024]);
    Layer {
        media_type: OCI_LAYER_GZIP,
        blob: gzip(&t),
        tar: t,
    }
}

#[test]
fn item_10_the_mount_point_stays_private_and_rootfs_gets_the_root_entry() {
    let w = World::new("install-10");
    // Staged: ROOTFS gets the last layer's `./` mode, owner and time.
    let img = Image::new(
        "amd64",
        vec![root_layer(0o700, 0, 5), root_layer(0o750, 1234, 1_600_000_000)],
    );
    w.reg.push_image("demo/root", "v1", &img);
    w.reg.push_image(
        "demo/plain",
        "v1",
        &Image::new("amd64", vec![gz_layer(&[("f", b"f" as &[u8])])]),
    );
    let meta = |p: &Path| {
        let m = std::fs::metadata(p).unwrap();
        (m.permissions().mode() & 0o7777, m.uid(), m.gid(), m.mtime())
    };
    // Both images are tagged v1: pull each into its own layout to name them.
    let (lroot, lplain) = (w.work.join("oci-root"), w.work.join("oci-plain"));
    assert_exit(&w.run(&[&w.r("demo/root", "v1"), lroot.to_str().unwrap()], &[]), 0);
    assert_exit(&w.run(&[&w.r("demo/plain", "v1"), lplain.to_str().unwrap()], &[]), 0);
    let unpack = |layout: &Path, into: &Path, env: &[(&str, &str)]| {
        minipull_env(&["unpack", layout.to_str().unwrap(), into.to_str().unwrap()], None, env)
    };
    assert_exit(&unpack(&lroot, &w.root, &[]), 0);
    assert_eq!(meta(&w.root), (0o750, 1234, 1234, 1_600_000_000));
    // No `./` entry: 0755.
    let plain = w.work.join("plain");
    assert_exit(&unpack(&lplain, &plain, &[]), 0);
    assert_eq!(meta(&plain).0, 0o755);

    // In place onto a mount point: 0700 while the tree is not complete (cut
    // after the first layer), then the same metadata as the staged path.
    let mnt = Tmpfs::mount(w.work.join("newroot"), "16m");
    std::fs::set_permissions(&mnt.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    if hooks() {
        let o = unpack(&lroot, &mnt.0, &[("MINIPULL_TEST_KILL", "layer")]);
        assert!(killed(&o), "{}", stderr(&o));
        assert_eq!(meta(&mnt.0).0, 0o700, "private until complete");
        assert!(
            !w.work.join("newroot.minipull.json").exists(),
            "no record for a partial tree"
        );
        // The next run removes the partial tree (it was an empty mount) and
        // unpacks again.
    }
    let o = unpack(&lroot, &mnt.0, &[]);
    assert_exit(&o, 0);
    assert!(stderr(&o).contains("in place"), "{}", stderr(&o));
    assert_eq!(meta(&mnt.0), (0o750, 1234, 1234, 1_600_000_000));
    assert_eq!(std::fs::read(mnt.0.join("etc/version")).unwrap(), b"root entry\n");
    assert!(w.work.join("newroot.minipull.json").exists());
}

#[test]
fn item_10_the_mount_point_is_0700_while_the_unpack_runs() {
    // Watched from outside (no hook): a big layer, the mount's mode sampled
    // until the unpack ends.
    let w = World::new("install-10b");
    let img = Image::new(
        "amd64",
        vec![gz_layer(&[("big", &noise(24 << 20, 7))]), root_layer(0o755, 0, 1)],
    );
    w.reg.push_image("demo/big", "v1", &img);
    assert_exit(&w.run(&[&w.r("demo/big", "v1"), w.out.to_str().unwrap()], &[]), 0);
    let mnt = Tmpfs::mount(w.work.join("newroot"), "64m");
    std::fs::set_permissions(&mnt.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut child = std::process::Command::new(minipull_bin())
        .args(["unpack", "-q"])
        .arg(&w.out)
        .arg(&mnt.0)
        .spawn()
        .unwrap();
    // Samples of the mode while the big file is still short of its size.
    let (mut private, mut open) = (0, 0);
    while child.try_wait().unwrap().is_none() {
        let mode = std::fs::metadata(&mnt.0).unwrap().permissions().mode() & 0o777;
        let partial = std::fs::metadata(mnt.0.join("big")).is_ok_and(|m| m.len() < 24 << 20);
        if partial {
            match mode {
                0o700 => private += 1,
                _ => open += 1,
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(child.wait().unwrap().success());
    assert!(
        private > 0 && open == 0,
        "mode while incomplete: 0700 {private} times, other {open}"
    );
    assert_eq!(std::fs::metadata(&mnt.0).unwrap().permissions().mode() & 0o777, 0o755);
}

/// The update loop of docs/updates.md ("Keeping a device up to date"), run
/// as it is written (paths, plain HTTP and no signature key substituted).
fn readme_update_loop(w: &World, reference: &str) -> Output {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/updates.md")).unwrap();
    let section = &readme[readme.find("# Keeping a device up to date").unwrap()..];
    let start = section.find("```sh\n").unwrap() + 6;
    let script = &section[start..start + section[start..].find("```").unwrap()];
    let roots = w.work.join("roots");
    std::fs::create_dir_all(&roots).unwrap();
    let script = script
        .replace("registry.example.com/fleet/os:stable", reference)
        .replace("/data/oci", w.out.to_str().unwrap())
        .replace("/roots", roots.to_str().unwrap())
        .replace("--verify-key \"$KEY\" --no-downgrade ", "")
        .replace("minipull check", "minipull check --plain-http")
        .replace("minipull -q", "minipull --plain-http -q");
    assert!(script.contains("--plain-http -q"), "{script}");
    let bin = w.work.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let _ = std::os::unix::fs::symlink(minipull_bin(), bin.join("minipull"));
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    std::process::Command::new("sh")
        .arg("-c")
        .arg(&script)
        .env("PATH", path)
        .output()
        .unwrap()
}

#[test]
fn item_15_the_readme_update_loop_installs_after_a_cut_between_pull_and_unpack() {
    let w = World::new("install-15");
    let repo = "fleet/os";
    let reference = w.r(repo, "stable");
    w.push(repo, "stable", "v1", vec![]);
    let o = readme_update_loop(&w, &reference);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let current = |w: &World| {
        let c = std::fs::read_link(w.work.join("roots/current")).unwrap();
        std::fs::read_to_string(w.work.join("roots").join(c).join("etc/version")).unwrap()
    };
    assert_eq!(current(&w), "v1");
    // v2 is pulled, and the unpack never happens (a cut): OUTDIR is up to
    // date, the root is not. The next tick installs it.
    w.push(repo, "stable", "v2", vec![]);
    assert_exit(&w.run(&[&reference, w.out.to_str().unwrap()], &[]), 0);
    let o = readme_update_loop(&w, &reference);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(current(&w), "v2");
    // Up to date: nothing installed again.
    let o = readme_update_loop(&w, &reference);
    assert!(o.status.success());
    assert_eq!(current(&w), "v2");
    assert!(!String::from_utf8_lossy(&o.stderr).contains("unpacked"));
}

/// Whether process `pid` is stopped (it sent itself SIGSTOP at a test hook).
fn stopped(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('T'))
}

/// `minipull --plain-http ARGS` with test hooks in `env`, stopped at
/// `MINIPULL_TEST_STOP=point`: `during` runs while it is, then it goes on.
fn run_stopped(args: &[&std::ffi::OsStr], point: &str, during: impl FnOnce()) -> Output {
    let child = std::process::Command::new(minipull_bin())
        .arg("--plain-http")
        .args(args)
        .env("MINIPULL_TEST_STOP", point)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !stopped(child.id()) {
        assert!(start.elapsed() < Duration::from_secs(60), "never stopped at {point}");
        std::thread::sleep(Duration::from_millis(5));
    }
    during();
    let cont = std::process::Command::new("kill")
        .arg("-CONT")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(cont.success());
    child.wait_with_output().unwrap()
}

#[test]
fn an_empty_mount_point_is_private_from_the_plan_on_and_a_file_planted_during_the_download_is_refused() {
    if !hooks() {
        return;
    }
    let w = World::new("install-mount-plant");
    w.push("demo/os", "v1", "v1", vec![]);
    let mnt = Tmpfs::mount(w.work.join("newroot"), "16m");
    std::fs::set_permissions(&mnt.0, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let reference = w.r("demo/os", "v1");
    let args: Vec<&std::ffi::OsStr> = vec![
        "--unpack".as_ref(),
        mnt.0.as_os_str(),
        reference.as_ref(),
        w.out.as_os_str(),
    ];
    // Stopped after the download, before the first entry: the mount is
    // already 0700, so nobody else could plant anything; root plants a file.
    let mut mode = 0;
    let o = run_stopped(&args, "begin", || {
        mode = std::fs::metadata(&mnt.0).unwrap().permissions().mode() & 0o7777;
        std::fs::write(mnt.0.join("planted"), b"not the image's\n").unwrap();
    });
    assert_eq!(mode, 0o700, "the mount point was open while the layers downloaded");
    assert_exit(&o, 7);
    assert!(
        stderr(&o).contains("no longer an empty private mount point"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read(mnt.0.join("planted")).unwrap(), b"not the image's\n");
    assert!(!mnt.0.join("etc/version").exists(), "nothing unpacked next to it");
    assert!(!w.work.join("newroot.minipull.json").exists());
}

#[test]
fn an_in_place_pending_record_removes_only_the_partial_tree_that_holds_its_mark() {
    if !hooks() {
        return;
    }
    let w = World::new("install-mount-mark");
    w.push("demo/os", "v1", "v1", vec![gz_layer(&[("etc/more", b"more" as &[u8])])]);
    assert_exit(&w.run(&[&w.r("demo/os", "v1"), w.out.to_str().unwrap()], &[]), 0);
    let mnt = Tmpfs::mount(w.work.join("newroot"), "16m");
    let unpack =
        |env: &[(&str, &str)]| minipull_env(&["unpack", w.out.to_str().unwrap(), mnt.0.to_str().unwrap()], None, env);
    // A cut in the middle of an in-place unpack: a pending record is left.
    assert!(killed(&unpack(&[("MINIPULL_TEST_KILL", "layer")])));
    assert!(w.work.join(".newroot.minipull-pending.json").exists());
    // The admin clears the mount and puts data of their own in it: the
    // same filesystem, the same root inode, not minipull's partial tree.
    for e in std::fs::read_dir(&mnt.0).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            std::fs::remove_dir_all(&p).unwrap();
        } else {
            std::fs::remove_file(&p).unwrap();
        }
    }
    std::fs::write(mnt.0.join("precious"), b"keep me\n").unwrap();
    let o = unpack(&[]);
    assert_eq!(
        std::fs::read(mnt.0.join("precious")).ok().as_deref(),
        Some(&b"keep me\n"[..]),
        "the next run wiped a tree that was not its partial unpack: {}",
        stderr(&o)
    );
    assert_exit(&o, 2);
    assert!(
        !w.work.join(".newroot.minipull-pending.json").exists(),
        "the stale pending record is dropped"
    );
    // Its own partial tree (the mark still there) the next run removes.
    std::fs::remove_file(mnt.0.join("precious")).unwrap();
    assert!(killed(&unpack(&[("MINIPULL_TEST_KILL", "layer")])));
    assert!(mnt.0.join(".minipull-in-place").exists());
    let o = unpack(&[]);
    assert_exit(&o, 0);
    assert_eq!(std::fs::read(mnt.0.join("etc/version")).unwrap(), b"v1");
    assert!(
        !mnt.0.join(".minipull-in-place").exists(),
        "the mark goes after the commit"
    );
    assert!(read_json(&w.work.join("newroot.minipull.json"))["nonce"].is_string());
}

#[test]
fn rootfs_in_a_directory_others_may_write_is_refused() {
    let w = World::new("install-parent");
    w.push("demo/os", "v1", "v1", vec![]);
    assert_exit(&w.run(&[&w.r("demo/os", "v1"), w.out.to_str().unwrap()], &[]), 0);
    for (mode, why) in [
        (0o777, "others may write"),
        (0o1777, "others may write"),
        (0o775, "group or others"),
    ] {
        let parent = w.work.join(&format!("open-{mode:o}"));
        std::fs::create_dir_all(&parent).unwrap();
        std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(mode)).unwrap();
        let root = parent.join("root");
        let o = minipull_env(&["unpack", w.out.to_str().unwrap(), root.to_str().unwrap()], None, &[]);
        assert_exit(&o, 7);
        assert!(
            stderr(&o).contains(why) && stderr(&o).contains("refusing"),
            "{}",
            stderr(&o)
        );
        assert!(!root.exists(), "nothing unpacked under a directory mode {mode:o}");
        assert!(
            std::fs::read_dir(&parent).unwrap().next().is_none(),
            "no lock or staging left"
        );
    }
    // Another user's directory, even closed to others.
    let theirs = w.work.join("theirs");
    std::fs::create_dir_all(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    let o = minipull_env(
        &["unpack", w.out.to_str().unwrap(), theirs.join("root").to_str().unwrap()],
        None,
        &[],
    );
    assert_exit(&o, 7);
    assert!(stderr(&o).contains("another user"), "{}", stderr(&o));
    // The same in a directory only root may write: unpacked.
    let ok = w.work.join("private");
    std::fs::create_dir_all(&ok).unwrap();
    std::fs::set_permissions(&ok, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = minipull_env(
        &["unpack", w.out.to_str().unwrap(), ok.join("root").to_str().unwrap()],
        None,
        &[],
    );
    assert_exit(&o, 0);
}

#[test]
fn a_prune_list_left_by_a_failed_install_never_removes_the_installed_image() {
    if !hooks() {
        return;
    }
    let w = World::new("install-prune-left");
    let repo = "fleet/os";
    let d1 = w.push(repo, "stable", "v1", vec![gz_layer(&[("only-v1", b"v1" as &[u8])])]);
    assert_exit(&w.install(&w.r(repo, "stable"), &["--prune"], &[]), 0);
    // v2 is pulled, its install fails: ROOTFS keeps v1, index.json names v2,
    // and the prune list names v1 (the install would have replaced it).
    let d2 = w.push(repo, "stable", "v2", vec![gz_layer(&[("only-v2", b"v2" as &[u8])])]);
    let o = w.install(&w.r(repo, "stable"), &["--prune"], &[("MINIPULL_TEST_FAULT", "layer")]);
    assert_ne!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!((w.version("root"), w.recorded()), ("v1".into(), d1.clone()));
    assert!(w.out.join(".minipull/prune.json").exists());
    // A plain `pull --prune` (no ROOTFS): v1, installed, keeps its blobs.
    assert_exit(
        &w.run(&["--prune", &w.r(repo, "stable"), w.out.to_str().unwrap()], &[]),
        0,
    );
    let have = blobs_in(&w.out);
    for b in image_blobs(&w.reg, repo, &d1) {
        assert!(
            have.contains(&b),
            "{b} of the installed v1 was pruned by a pull without --unpack"
        );
    }
    // The install into that ROOTFS then converges: v2 in, v1's blobs gone.
    assert_exit(&w.install(&w.r(repo, "stable"), &["--prune"], &[]), 0);
    assert_eq!((w.version("root"), w.recorded()), ("v2".into(), d2.clone()));
    assert_eq!(blobs_in(&w.out), image_blobs(&w.reg, repo, &d2), "v1's blobs are gone");
}

#[test]
fn an_emptied_mount_point_is_installed_again_whatever_its_old_record_says() {
    // The record binds the tree by the mount's root inode, which an emptied
    // mount keeps: an empty mount holds no image all the same.
    let w = World::new("install-mount-emptied");
    w.push("demo/os", "v1", "v1", vec![]);
    let mnt = Tmpfs::mount(w.work.join("newroot"), "16m");
    let reference = w.r("demo/os", "v1");
    let install = || {
        w.run(
            &["--unpack", mnt.0.to_str().unwrap(), &reference, w.out.to_str().unwrap()],
            &[],
        )
    };
    assert_exit(&install(), 0);
    assert_eq!(std::fs::read(mnt.0.join("etc/version")).unwrap(), b"v1");
    std::fs::remove_dir_all(mnt.0.join("etc")).unwrap();
    assert!(std::fs::read_dir(&mnt.0).unwrap().next().is_none());
    let o = install();
    assert_exit(&o, 0);
    assert_eq!(
        std::fs::read(mnt.0.join("etc/version")).ok().as_deref(),
        Some(&b"v1"[..]),
        "{}",
        stderr(&o)
    );
}

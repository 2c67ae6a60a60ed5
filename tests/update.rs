//! The device update loop: `check`, the cheap re-pull, `--prune`, `ls`,
//! `rm`, `gc`, `--discard-layers`, `--limit-rate` and rate limits, against
//! the real docker-registry (its access log counts the requests) and the
//! in-suite server for what a real one will not do on demand.

mod common;
use common::fault::{FaultServer, Faults};
use common::*;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

/// A registry with an access log.
struct World(LoggedRegistry);

impl std::ops::Deref for World {
    type Target = LoggedRegistry;
    fn deref(&self) -> &LoggedRegistry {
        &self.0
    }
}

impl World {
    fn new() -> World {
        World(LoggedRegistry::new("update"))
    }

    /// Run minipull with --plain-http (after the command word, if any).
    fn run(&self, args: &[&str]) -> std::process::Output {
        let mut a: Vec<&str> = args.to_vec();
        let at = usize::from(a.first() == Some(&"check"));
        a.insert(at, "--plain-http");
        minipull(&a, None)
    }

    fn r(&self, repo: &str, tag: &str) -> String {
        format!("{}/{repo}:{tag}", self.reg.host)
    }

    /// Requests of `repo` since `from` (a log length): (manifest HEADs, manifest GETs, blob GETs).
    fn requests_since(&self, repo: &str, from: usize) -> (usize, usize, usize) {
        let lines = self.log_lines();
        let new = &lines[from.min(lines.len())..];
        let count = |needle: String| new.iter().filter(|l| l.contains(&needle)).count();
        (
            count(format!("\"HEAD /v2/{repo}/manifests/")),
            count(format!("\"GET /v2/{repo}/manifests/")),
            count(format!("\"GET /v2/{repo}/blobs/")),
        )
    }
}

fn layer(name: &str, text: &[u8]) -> Layer {
    gz_layer(&[(name, text)])
}

fn blobs_in(out: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(out.join("blobs/sha256"))
        .map(|d| {
            d.map(|e| format!("sha256:{}", e.unwrap().file_name().to_string_lossy()))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn check_repull_update_prune_ls_rm_gc() {
    let w = World::new();
    let repo = "fleet/os";
    let base = layer("etc/base", b"base\n");
    let v1 = Image::new(
        "amd64",
        vec![layer("etc/base", b"base\n"), layer("etc/app", b"app 1\n")],
    );
    let (d1, _) = w.reg.push_image(repo, "stable", &v1);
    // Another image in the same OUTDIR; the same image is also tagged
    // `stable` in its repository, which OUTDIR does not hold.
    let other_img = Image::new("amd64", vec![layer("x", b"x")]);
    let (other, _) = w.reg.push_image("fleet/other", "other", &other_img);
    w.reg.push_image("fleet/other", "stable", &other_img);
    let out = w.work.join("layout");
    let o = w.run(&[&w.r(repo, "stable"), out.to_str().unwrap()]);
    assert_exit(&o, 0);
    assert_exit(&w.run(&[&w.r("fleet/other", "other"), out.to_str().unwrap()]), 0);
    // fleet/other:stable is not fleet/os:stable: not in OUTDIR yet (10).
    assert_exit(
        &w.run(&["check", &w.r("fleet/other", "stable"), out.to_str().unwrap()]),
        10,
    );

    // check: up to date, exactly one manifest HEAD and no GET.
    let from = w.log_lines().len();
    let o = w.run(&["check", "--json", &w.r(repo, "stable"), out.to_str().unwrap()]);
    assert_exit(&o, 0);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (j["remote"].as_str(), j["local"].as_str(), j["upToDate"].as_bool()),
        (Some(d1.as_str()), Some(d1.as_str()), Some(true))
    );
    assert_eq!(w.requests_since(repo, from), (1, 0, 0), "one HEAD, nothing else");

    // A re-pull of the unchanged image: one HEAD, no GET, no bytes.
    let from = w.log_lines().len();
    let o = w.run(&["--json", &w.r(repo, "stable"), out.to_str().unwrap()]);
    assert_exit(&o, 0);
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["bytesDownloaded"], 0);
    assert_eq!(s["digest"], d1.as_str());
    assert_eq!(w.requests_since(repo, from), (1, 0, 0));
    // With --verify, the blobs are re-hashed, still without a GET.
    let from = w.log_lines().len();
    assert_exit(&w.run(&["--verify", &w.r(repo, "stable"), out.to_str().unwrap()]), 0);
    assert_eq!(w.requests_since(repo, from), (1, 0, 0));

    // A new release under the same tag: check says so (10).
    let v2 = Image::new("amd64", vec![base, layer("etc/app", b"app 2\n")]);
    let (d2, _) = w.reg.push_image(repo, "stable", &v2);
    let o = w.run(&["check", &w.r(repo, "stable"), out.to_str().unwrap()]);
    assert_exit(&o, 10);
    assert_eq!(stdout(&o).trim(), d2);
    // A repository that does not exist is an error, not an update.
    assert_exit(
        &w.run(&["check", &w.r("fleet/none", "stable"), out.to_str().unwrap()]),
        3,
    );

    // Pull it with --prune: only what changed is downloaded, and what only
    // v1 used is gone.
    let old_blobs = w.reg.blob_digests(repo, &d1);
    let new_blobs = w.reg.blob_digests(repo, &d2);
    let from = w.log_lines().len();
    let o = w.run(&["--prune", "--json", &w.r(repo, "stable"), out.to_str().unwrap()]);
    assert_exit(&o, 0);
    let gets = w.blob_gets_since(repo, from);
    assert_eq!(gets.len(), 2, "the new config and the changed layer only: {gets:?}");
    assert!(
        gets.iter().all(|g| !g.contains(&new_blobs[1])),
        "the shared base layer is not fetched again"
    );
    let have = blobs_in(&out);
    for gone in [&d1, &old_blobs[0], &old_blobs[2]] {
        assert!(!have.contains(gone), "{gone} only v1 used");
    }
    for kept in new_blobs.iter().chain([&d2, &other]) {
        assert!(have.contains(kept), "{kept} is still needed");
    }
    assert_blobs_consistent(&out);
    assert_index_points_at_blobs(&out);
    oci_validate(&out, "stable");
    let rootfs = umoci_unpack(&out, "stable", &w.work);
    assert_eq!(std::fs::read(rootfs.join("etc/app")).unwrap(), b"app 2\n");

    // ls: one line per image, and --json.
    let o = minipull(&["ls", "--json", out.to_str().unwrap()], None);
    assert_exit(&o, 0);
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let digests: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["digest"].as_str().unwrap())
        .collect();
    assert_eq!(digests.len(), 2, "{list}");
    assert!(digests.contains(&d2.as_str()) && digests.contains(&other.as_str()));
    assert!(list[0]["size"].as_u64().unwrap() > 0);
    assert_eq!(list[0]["platforms"], json!([]));
    let o = minipull(&["ls", out.to_str().unwrap()], None);
    assert_eq!(stdout(&o).lines().count(), 2, "{}", stdout(&o));

    // rm drops the entry; gc frees exactly what nothing reaches any more,
    // and an old partial download.
    let partial_dir = out.join(".minipull/partial");
    std::fs::create_dir_all(&partial_dir).unwrap();
    let stale = partial_dir.join(format!("sha256-{}", "ab".repeat(32)));
    std::fs::write(&stale, vec![7u8; 1000]).unwrap();
    let two_days_ago = std::time::SystemTime::now() - Duration::from_secs(48 * 3600);
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(two_days_ago)
        .unwrap();
    let other_blobs = w.reg.blob_digests("fleet/other", &other);
    assert_exit(&minipull(&["rm", &format!("{}:stable", out.display())], None), 0);
    assert_exit(&minipull(&["rm", &format!("{}:stable", out.display())], None), 3);
    assert_index_points_at_blobs(&out);
    assert_eq!(blobs_in(&out).len(), 4 + 3, "rm keeps the blobs until gc");
    // --keep-partials keeps the partial.
    let o = minipull(&["gc", "--keep-partials", "--json", out.to_str().unwrap()], None);
    assert_exit(&o, 0);
    assert!(stale.exists());
    let freed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        freed["blobsRemoved"], 4,
        "the stable image's manifest, config and two layers"
    );
    let mut left = other_blobs.clone();
    left.push(other.clone());
    left.sort();
    assert_eq!(blobs_in(&out), left, "the other image is untouched");
    let o = minipull(&["gc", "--json", out.to_str().unwrap()], None);
    assert_exit(&o, 0);
    let freed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (freed["partials"].as_u64(), freed["bytes"].as_u64()),
        (Some(1), Some(1000))
    );
    assert!(!stale.exists());
    oci_validate(&out, "other");
}

#[test]
fn gc_frees_only_the_unreachable_and_a_kill_never_leaves_a_dangling_entry() {
    let w = World::new();
    let out = w.work.join("layout");
    for (i, tag) in ["a", "b", "c"].iter().enumerate() {
        let img = Image::new(
            "amd64",
            vec![layer("f", format!("{i}").as_bytes()), layer("shared", b"shared")],
        );
        w.reg.push_image("gc/img", tag, &img);
        assert_exit(&w.run(&[&w.r("gc/img", tag), out.to_str().unwrap()]), 0);
    }
    let before = blobs_in(&out);
    assert_exit(&minipull(&["rm", &format!("{}:b", out.display())], None), 0);
    // Killed at different moments of its work, then run again: index.json
    // never names a missing blob, and the second run finishes the job.
    for delay_ms in [0u64, 2, 5, 10] {
        let mut child = std::process::Command::new(minipull_bin())
            .args(["gc", out.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        assert_index_points_at_blobs(&out);
    }
    assert_exit(&minipull(&["gc", out.to_str().unwrap()], None), 0);
    let after = blobs_in(&out);
    // b's manifest, config and own layer went; the shared layer stayed.
    assert_eq!(before.len() - after.len(), 3, "{before:?} -> {after:?}");
    assert_index_points_at_blobs(&out);
    for tag in ["a", "c"] {
        oci_validate(&out, tag);
    }
}

#[test]
fn multi_platform_tag_checks_and_repulls_for_free() {
    let w = World::new();
    let repo = "fleet/multi";
    let push_index = |text: &[u8]| {
        let (amd, amd_b) = w
            .reg
            .push_image(repo, "amd", &Image::new("amd64", vec![layer("a", text)]));
        let (arm, arm_b) = w
            .reg
            .push_image(repo, "arm", &Image::new("arm64", vec![layer("a", text)]));
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": amd, "size": amd_b.len(), "platform": {"os": "linux", "architecture": "amd64"}},
                {"mediaType": OCI_MANIFEST, "digest": arm, "size": arm_b.len(), "platform": {"os": "linux", "architecture": "arm64"}}
            ]
        }))
        .unwrap();
        (w.reg.push_manifest(repo, "v1", OCI_INDEX, &index), arm)
    };
    let (index1, arm1) = push_index(b"one");
    let out = w.work.join("layout");
    let o = w.run(&[
        "--platform",
        "linux/arm64",
        "--json",
        &w.r(repo, "v1"),
        out.to_str().unwrap(),
    ]);
    assert_exit(&o, 0);
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["digest"], arm1.as_str());
    let entry = &read_json(&out.join("index.json"))["manifests"][0];
    assert_eq!(entry["annotations"]["io.minipull.resolved"], index1.as_str());
    // The record beside an unpacked root names both, so a device can compare
    // what `check` prints (the tag's digest) with what it runs.
    #[cfg(feature = "unpack")]
    {
        let root = w.work.join("root");
        let o = w.run(&[
            "--platform",
            "linux/arm64",
            "--unpack",
            root.to_str().unwrap(),
            &w.r(repo, "v1"),
            out.to_str().unwrap(),
        ]);
        assert_exit(&o, 0);
        let record = read_json(&w.work.join("root.minipull.json"));
        assert_eq!(record["digest"], arm1.as_str());
        assert_eq!(record["resolved"], index1.as_str());
    }

    let from = w.log_lines().len();
    let o = w.run(&["check", &w.r(repo, "v1"), out.to_str().unwrap()]);
    assert_exit(&o, 0);
    assert_eq!(w.requests_since(repo, from), (1, 0, 0));
    let from = w.log_lines().len();
    assert_exit(
        &w.run(&["--platform", "linux/arm64", &w.r(repo, "v1"), out.to_str().unwrap()]),
        0,
    );
    assert_eq!(w.requests_since(repo, from), (1, 0, 0), "a re-pull fetches nothing");
    // Another platform of the same tag is not what OUTDIR holds.
    let from = w.log_lines().len();
    assert_exit(
        &w.run(&["--platform", "linux/amd64", &w.r(repo, "v1"), out.to_str().unwrap()]),
        0,
    );
    assert!(w.requests_since(repo, from).1 > 0, "the amd64 image is pulled");

    // A re-pushed index is an update.
    let (index2, _) = push_index(b"two");
    assert_ne!(index1, index2);
    let o = w.run(&["check", &w.r(repo, "v1"), out.to_str().unwrap()]);
    assert_exit(&o, 10);
    assert_eq!(stdout(&o).trim(), index2);
}

#[test]
fn head_quirks_fall_back_to_get_and_rate_limits_end_at_once() {
    let work = TempDir::new("update-quirks");
    let server = FaultServer::start(Faults::default());
    let (digest, _) = server.add_image("quirk/img", "v1", vec![5u8; 1000]);
    let out = work.join("layout");
    let r = format!("{}/quirk/img:v1", server.host);
    assert_exit(&minipull(&["--plain-http", &r, out.to_str().unwrap()], None), 0);
    for faults in [
        Faults {
            head_without_digest: true,
            ..Faults::default()
        },
        Faults {
            head_status: Some(405),
            ..Faults::default()
        },
    ] {
        server.set_faults(faults);
        server.clear_log();
        let o = minipull(&["check", "--plain-http", &r, out.to_str().unwrap()], None);
        assert_exit(&o, 0);
        assert_eq!(stdout(&o).trim(), digest);
        assert!(stderr(&o).contains("asking with GET"), "{}", stderr(&o));
        let gets: Vec<_> = server
            .log()
            .into_iter()
            .filter(|l| l.method == "GET" && l.path.contains("/manifests/"))
            .collect();
        assert_eq!(gets.len(), 1, "{gets:?}");
    }

    // Docker Hub's pull limit, spent, with an hour to wait: exit 5 at
    // once, saying so, without an hour of retries.
    server.set_faults(Faults {
        rate_limited: true,
        ..Faults::default()
    });
    server.clear_log();
    let t = Instant::now();
    let o = minipull(&["--plain-http", &r, work.join("fresh").to_str().unwrap()], None);
    assert_exit(&o, 5);
    assert!(t.elapsed() < Duration::from_secs(20), "no waiting for an hour");
    let e = stderr(&o);
    assert!(
        e.contains("pull limit is exhausted")
            && e.contains("100 pulls every 6.0 h")
            && e.contains("try again in 1.0 h"),
        "{e}"
    );
    assert_eq!(
        server.log().len(),
        2,
        "the ping and one manifest request, no retries: {:?}",
        server.log()
    );
}

#[test]
fn limit_rate_holds_the_cap_over_every_five_seconds() {
    const MIB: u64 = 1024 * 1024;
    let work = TempDir::new("update-rate");
    let server = FaultServer::start(Faults::default());
    let size = 50 * MIB;
    let blob: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
    let (_, layer_digest) = server.add_image("rate/img", "v1", blob);
    let out = work.join("layout");
    let r = format!("{}/rate/img:v1", server.host);
    let part = out.join(".minipull/partial").join(layer_digest.replace(':', "-"));
    let start = Instant::now();
    let errors = work.join("stderr");
    let mut child = std::process::Command::new(minipull_bin())
        .args(["--plain-http", "--limit-rate", "2M", &r, out.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&errors).unwrap())
        .spawn()
        .unwrap();
    // Sample the partial file's size and the process's peak RSS every 100 ms (bounded: 90 s).
    let status = format!("/proc/{}/status", child.id());
    let mut samples: Vec<(f64, u64)> = Vec::new();
    let mut sampled_rss_kib = 0u64;
    while child.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < Duration::from_secs(90), "the pull did not end");
        let held = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(size);
        samples.push((start.elapsed().as_secs_f64(), held));
        if let Some(kib) = std::fs::read_to_string(&status).ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        }) {
            sampled_rss_kib = sampled_rss_kib.max(kib);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(child.wait().unwrap().success());
    // Pacing costs no memory: RSS stays what the same pull without a cap takes.
    let bin = minipull_bin();
    let (o, unlimited) = peak_rss_kib(&[
        bin.to_str().unwrap(),
        "--plain-http",
        "-q",
        &r,
        work.join("fast").to_str().unwrap(),
    ]);
    assert_exit(&o, 0);
    assert!(
        sampled_rss_kib > 0 && sampled_rss_kib <= unlimited + 512,
        "peak RSS {sampled_rss_kib} KiB against {unlimited} KiB uncapped"
    );
    // The periodic line shows the whole image and an ETA, plain text.
    let e = std::fs::read_to_string(&errors).unwrap();
    let line = e
        .lines()
        .find(|l| l.contains("; image "))
        .unwrap_or_else(|| panic!("no image progress in:\n{e}"));
    assert!(line.contains("/ 50.0 MiB, ETA "), "{line}");
    assert!(!e.contains('\x1b'), "no escape codes when stderr is not a terminal");
    let total = start.elapsed().as_secs_f64();
    let cap = 2.0 * MIB as f64;
    let average = size as f64 / total;
    assert!(
        average <= cap * 1.1 && average >= cap * 0.9,
        "average {average} against {cap}"
    );
    // Every 5-second window stays within 10% of the cap.
    for (i, &(t0, b0)) in samples.iter().enumerate() {
        if let Some(&(t1, b1)) = samples[i..].iter().find(|(t, _)| *t >= t0 + 5.0) {
            let rate = (b1.saturating_sub(b0)) as f64 / (t1 - t0);
            assert!(rate <= cap * 1.1, "{rate} B/s between {t0:.1} s and {t1:.1} s");
        }
    }
    assert!(blob_path(&out, &layer_digest).exists());
}

#[cfg(feature = "unpack")]
#[test]
fn discard_layers_keeps_peak_disk_near_one_layer_and_stays_honest() {
    const MIB: usize = 1024 * 1024;
    let w = World::new();
    let repo = "fleet/initramfs";
    // Three layers of incompressible data: each compressed layer is as big as its tree.
    let layers: Vec<Layer> = (1..=3u64)
        .map(|i| gz_layer(&[(&format!("data{i}"), &noise(6 * MIB, i))]))
        .collect();
    let largest = layers.iter().map(|l| l.blob.len()).max().unwrap() as u64;
    let (digest, _) = w.reg.push_image(repo, "v1", &Image::new("amd64", layers));
    let out = w.work.join("layout");
    let root = w.work.join("root");
    let mut child = std::process::Command::new(minipull_bin())
        .args([
            "--plain-http",
            "-q",
            "--discard-layers",
            "--unpack",
            root.to_str().unwrap(),
            &w.r(repo, "v1"),
            out.to_str().unwrap(),
        ])
        .spawn()
        .unwrap();
    fn du(p: &Path) -> u64 {
        let Ok(meta) = std::fs::symlink_metadata(p) else {
            return 0;
        };
        if meta.is_dir() {
            std::fs::read_dir(p)
                .map(|d| d.flatten().map(|e| du(&e.path())).sum())
                .unwrap_or(0)
        } else {
            meta.len()
        }
    }
    let (mut peak, start) = (0u64, Instant::now());
    let staging = w.work.path().to_path_buf();
    while child.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < Duration::from_secs(60));
        // Once each: the tree grows between two walks of it.
        let (all, log) = (du(&staging), du(&w.log));
        peak = peak.max(all.saturating_sub(log));
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(child.wait().unwrap().success());
    let tree = du(&root);
    let bound = ((tree + largest) as f64 * 1.1) as u64;
    assert!(
        peak <= bound,
        "peak {peak} > new tree {tree} + largest layer {largest} + 10%"
    );
    assert!(peak > tree, "the sampling saw the pull ({peak})");
    assert_eq!(std::fs::read(root.join("data2")).unwrap().len(), 6 * MIB);

    // The entry says so, and every command is honest about it.
    let entry = &read_json(&out.join("index.json"))["manifests"][0];
    assert_eq!(entry["annotations"]["io.minipull.layers-discarded"], "true");
    assert_index_points_at_blobs(&out);
    assert_eq!(blobs_in(&out).len(), 2, "the manifest and the config only");
    let o = minipull(&["ls", out.to_str().unwrap()], None);
    assert!(stdout(&o).contains("layers discarded"), "{}", stdout(&o));
    let o = minipull(
        &["unpack", out.to_str().unwrap(), w.work.join("again").to_str().unwrap()],
        None,
    );
    assert_exit(&o, 3);
    assert!(stderr(&o).contains("discarded"), "{}", stderr(&o));
    // check and a re-pull without an unpack fetch nothing.
    let from = w.log_lines().len();
    assert_exit(&w.run(&["check", &w.r(repo, "v1"), out.to_str().unwrap()]), 0);
    let o = w.run(&["--verify", &w.r(repo, "v1"), out.to_str().unwrap()]);
    assert_exit(&o, 0);
    assert!(stderr(&o).contains("discarded"), "{}", stderr(&o));
    assert_eq!(w.requests_since(repo, from), (2, 0, 0));
    // gc keeps the manifest and the config.
    assert_exit(&minipull(&["gc", out.to_str().unwrap()], None), 0);
    assert_eq!(blobs_in(&out).len(), 2);
    // An unpack into another root fetches the layers again, one at a time.
    let o = w.run(&[
        "--discard-layers",
        "--unpack",
        w.work.join("root2").to_str().unwrap(),
        &w.r(repo, "v1"),
        out.to_str().unwrap(),
    ]);
    assert_exit(&o, 0);
    assert_eq!(std::fs::read(w.work.join("root2/data3")).unwrap().len(), 6 * MIB);
    let _ = digest;
}

/// Rollback: `--no-downgrade` compares with what OUTDIR holds under the same
/// tag *of the same repository*, through an `--all-platforms` index entry to
/// the platform's own config; a config without `created` on either side
/// refuses (nothing to compare); an equal time is allowed (reproducible
/// builds); another repository's entry of the same tag is not compared.
#[test]
fn rollback_no_downgrade_sees_through_indexes_missing_times_and_other_repositories() {
    let w = World::new();
    let image = |arch: &'static str, created: Option<&str>, text: &[u8]| {
        let l = layer("etc/version", text);
        let mut config = json!({"architecture": arch, "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [sha256(&l.tar)]}});
        if let Some(c) = created {
            config["created"] = json!(c);
        }
        let mut img = Image::new(arch, vec![l]);
        img.config = Some(serde_json::to_vec(&config).unwrap());
        img
    };
    let push =
        |repo: &str, created: Option<&str>, text: &[u8]| w.reg.push_image(repo, "v1", &image("amd64", created, text)).0;
    let push_index = |repo: &str, created: &str, text: &[u8]| {
        let mut manifests = Vec::new();
        for arch in ["amd64", "arm64"] {
            let (d, b) = w.reg.push_image(repo, arch, &image(arch, Some(created), text));
            manifests.push(json!({"mediaType": OCI_MANIFEST, "digest": d, "size": b.len(),
                "platform": {"os": "linux", "architecture": arch}}));
        }
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
        w.reg
            .push_manifest(repo, "v1", OCI_INDEX, &serde_json::to_vec(&index).unwrap())
    };
    let pull = |repo: &str, out: &Path, extra: &[&str]| {
        let r = w.r(repo, "v1");
        let mut a = extra.to_vec();
        a.extend([r.as_str(), out.to_str().unwrap()]);
        w.run(&a)
    };
    let refused = |o: &std::process::Output, why: &str| {
        assert_exit(o, 8);
        assert!(stderr(o).contains(why), "expected {why:?} in:\n{}", stderr(o));
    };
    let names = |out: &Path, digest: &str| {
        read_json(&out.join("index.json"))["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["digest"] == digest)
    };
    let nd = "--no-downgrade";

    // The installed entry is an index (--all-platforms): an older release is
    // refused for one platform and for all of them.
    let out = w.work.join("index");
    let new = push_index("rb/index", "2025-06-01T00:00:00Z", b"new\n");
    assert_exit(&pull("rb/index", &out, &[nd, "--all-platforms"]), 0);
    let old = push_index("rb/index", "2025-01-01T00:00:00Z", b"old\n");
    refused(&pull("rb/index", &out, &[nd, "--platform", "linux/arm64"]), "older");
    refused(&pull("rb/index", &out, &[nd, "--all-platforms"]), "older");
    assert!(names(&out, &new) && !names(&out, &old), "the installed index stays");

    // The installed config has no `created`: nothing to compare, refused.
    let out = w.work.join("nocreated");
    push("rb/nocreated", None, b"1\n");
    assert_exit(&pull("rb/nocreated", &out, &[]), 0);
    push("rb/nocreated", Some("2025-06-01T00:00:00Z"), b"2\n");
    refused(&pull("rb/nocreated", &out, &[nd]), "has no valid `created`");
    // Nor the new one.
    push("rb/nocreated", None, b"3\n");
    refused(&pull("rb/nocreated", &out, &[nd]), "no valid `created`");

    // The same time is allowed.
    let out = w.work.join("equal");
    push("rb/equal", Some("2025-06-01T00:00:00Z"), b"a\n");
    assert_exit(&pull("rb/equal", &out, &[nd]), 0);
    let b = push("rb/equal", Some("2025-06-01T02:00:00+02:00"), b"b\n");
    assert_exit(&pull("rb/equal", &out, &[nd]), 0);
    assert!(names(&out, &b));

    // Only the same repository counts: `rb/other:v1` (newer) does not stop
    // `rb/app:v1`, whose own older release is then refused.
    let out = w.work.join("shared");
    push("rb/other", Some("2025-06-01T00:00:00Z"), b"other\n");
    assert_exit(&pull("rb/other", &out, &[nd]), 0);
    let app = push("rb/app", Some("2025-01-01T00:00:00Z"), b"app\n");
    assert_exit(&pull("rb/app", &out, &[nd]), 0);
    assert!(names(&out, &app));
    push("rb/app", Some("2024-01-01T00:00:00Z"), b"app old\n");
    refused(&pull("rb/app", &out, &[nd]), "older");
}

/// Registry strings reach the terminal escaped: the platform fields of an
/// `--all-platforms` index (and its entry's name and media type) in every
/// field `ls` prints, text or JSON; `config` to a terminal shows the
/// config's control characters escaped, and to a pipe gives its bytes as
/// they are.
#[test]
fn ls_and_config_show_registry_strings_escaped() {
    let w = World::new();
    let repo = "hostile/ls";
    let evil = "\u{1b}]0;pwned\u{7}\u{1b}[2J\u{9b}31m\u{7f}";
    let cmd = format!("{evil}run");
    let config = serde_json::to_vec(&json!({"architecture": "amd64", "os": "linux",
        "config": {"Cmd": [cmd]}, "rootfs": {"type": "layers", "diff_ids": []}}))
    .unwrap();
    let mut img = Image::new("amd64", vec![]);
    img.config = Some(config.clone());
    let (d, b) = w.reg.push_image(repo, "amd", &img);
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": d, "size": b.len(),
         "platform": {"os": format!("linux{evil}"), "architecture": format!("amd64{evil}"), "variant": evil}},
        {"mediaType": OCI_MANIFEST, "digest": d, "size": b.len(),
         "platform": {"os": "linux", "architecture": "amd64"}}
    ]});
    w.reg
        .push_manifest(repo, "v1", OCI_INDEX, &serde_json::to_vec(&index).unwrap());
    let out = w.work.join("layout");
    let o = w.run(&["--all-platforms", &w.r(repo, "v1"), out.to_str().unwrap()]);
    assert_exit(&o, 0);
    let raw = |bytes: &[u8]| {
        let s = String::from_utf8_lossy(bytes).to_string();
        s.chars()
            .filter(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r'))
            .count()
    };
    for json in [false, true] {
        let mut a = vec!["ls", out.to_str().unwrap()];
        if json {
            a.insert(1, "--json");
        }
        let o = minipull(&a, None);
        assert_exit(&o, 0);
        assert_eq!(raw(&o.stdout), 0, "control characters in: {:?}", stdout(&o));
        assert!(stdout(&o).contains("linux"), "{}", stdout(&o));
        if json {
            // Still JSON, with the strings intact.
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            assert!(v[0]["platforms"][0].as_str().unwrap().contains(evil), "{v}");
        }
    }
    #[cfg(feature = "unpack")]
    {
        // To a pipe: the config's bytes.
        let o = minipull(&["config", out.to_str().unwrap()], None);
        assert_exit(&o, 0);
        assert!(o.stdout.starts_with(&config), "{}", stdout(&o));
        // To a terminal (a pty made by script(1)): escaped.
        let line = format!(
            "{} config --platform linux/amd64 {}",
            minipull_bin().display(),
            out.display()
        );
        let o = std::process::Command::new("script")
            .args(["-qec", &line, "/dev/null"])
            .output()
            .unwrap();
        assert!(stdout(&o).contains("run"), "{}", stdout(&o));
        assert_eq!(
            raw(&o.stdout),
            0,
            "control characters on the terminal: {:?}",
            stdout(&o)
        );
    }
}

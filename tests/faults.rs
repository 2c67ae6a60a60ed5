//! Weak networks and uncooperative servers, via the fault-injecting server:
//! one test per fault, each asserting the outcome and what reached the disk.

mod common;
use common::fault::{FaultServer, Faults};
use common::*;
use std::time::{Duration, Instant};

const REPO: &str = "weak/net";

struct Setup {
    server: FaultServer,
    layer: Vec<u8>,
    layer_digest: String,
    manifest_digest: String,
    work: TempDir,
}

fn setup(faults: Faults, size: usize) -> Setup {
    let server = FaultServer::start(faults);
    let layer = noise(size, size as u64);
    let (manifest_digest, layer_digest) = server.add_image(REPO, "v1", layer.clone());
    Setup {
        server,
        layer,
        layer_digest,
        manifest_digest,
        work: TempDir::new("fault"),
    }
}

impl Setup {
    fn pull(&self, extra: &[&str]) -> (std::process::Output, serde_json::Value) {
        let r = format!("{}/{REPO}:v1", self.server.host);
        let out = self.work.join("layout");
        let mut args = vec!["--plain-http", "--json", "--timeout", "2"];
        args.extend_from_slice(extra);
        args.push(&r);
        args.push(out.to_str().unwrap());
        let o = minipull(&args, None);
        let summary = serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null);
        (o, summary)
    }

    fn layout(&self) -> std::path::PathBuf {
        self.work.join("layout")
    }

    /// The layer is in place, matches, and index.json names the image.
    fn assert_complete(&self) {
        let out = self.layout();
        assert_eq!(std::fs::read(blob_path(&out, &self.layer_digest)).unwrap(), self.layer);
        assert_blobs_consistent(&out);
        assert_index_points_at_blobs(&out);
        assert_eq!(
            read_json(&out.join("index.json"))["manifests"][0]["digest"],
            self.manifest_digest
        );
    }

    fn partial(&self) -> std::path::PathBuf {
        self.layout()
            .join(".minipull/partial")
            .join(self.layer_digest.replace(':', "-"))
    }

    /// Start a pull in the background and return once its partial layer
    /// holds at least `bytes` (bounded: 20 s).
    fn spawn_until_partial(&self, bytes: u64) -> std::process::Child {
        let r = format!("{}/{REPO}:v1", self.server.host);
        let mut child = std::process::Command::new(common::minipull_bin())
            .args(["--plain-http", &r, self.layout().to_str().unwrap()])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::fs::metadata(self.partial()).map(|m| m.len()).unwrap_or(0) < bytes {
            assert!(Instant::now() < deadline, "the pull did not progress");
            assert!(child.try_wait().unwrap().is_none(), "the pull ended too early");
            std::thread::sleep(Duration::from_millis(10));
        }
        child
    }

    fn layer_requests(&self) -> Vec<common::fault::Logged> {
        self.server.requests(&self.layer_digest)
    }

    fn layer_downloaded(summary: &serde_json::Value, digest: &str) -> u64 {
        summary["blobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["digest"] == digest)
            .map(|b| b["downloaded"].as_u64().unwrap())
            .unwrap_or(0)
    }
}

#[test]
fn dropped_connection_resumes_with_range() {
    let s = setup(
        Faults {
            drop_after: Some(300_000),
            ..Faults::default()
        },
        1_000_000,
    );
    let (o, summary) = s.pull(&[]);
    assert_exit(&o, 0);
    s.assert_complete();
    let reqs = s.layer_requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(reqs[0].body_bytes, 300_000);
    assert_eq!(
        reqs[1].range.as_deref(),
        Some("bytes=300000-"),
        "resumed where it stopped"
    );
    assert_eq!(reqs[1].status, 206);
    let served: u64 = reqs.iter().map(|r| r.body_bytes).sum();
    assert_eq!(served, 1_000_000, "not a byte twice");
    assert_eq!(Setup::layer_downloaded(&summary, &s.layer_digest), 1_000_000);
    assert!(stderr(&o).contains("resuming"), "{}", stderr(&o));
}

#[test]
fn corrupt_byte_is_discarded_and_fetched_once_more() {
    let s = setup(
        Faults {
            flip_at: Some(12_345),
            ..Faults::default()
        },
        200_000,
    );
    let (o, summary) = s.pull(&[]);
    assert_exit(&o, 0);
    s.assert_complete();
    assert_eq!(s.layer_requests().len(), 2);
    assert_eq!(s.layer_requests()[1].range, None, "refetched from zero");
    assert_eq!(Setup::layer_downloaded(&summary, &s.layer_digest), 400_000);
}

#[test]
fn corrupt_twice_fails_with_exit_6_and_leaves_nothing() {
    let s = setup(
        Faults {
            flip_at: Some(7),
            flip_always: true,
            ..Faults::default()
        },
        100_000,
    );
    let (o, _) = s.pull(&[]);
    assert_exit(&o, 6);
    assert!(stderr(&o).contains("hashes to"), "{}", stderr(&o));
    assert!(!blob_path(&s.layout(), &s.layer_digest).exists());
    assert!(!s.layout().join("index.json").exists());
    assert!(!s
        .layout()
        .join(".minipull/partial")
        .join(s.layer_digest.replace(':', "-"))
        .exists());
    assert_blobs_consistent(&s.layout());
}

#[test]
fn longer_than_descriptor_fails_with_exit_6() {
    let s = setup(
        Faults {
            extra_bytes: 10,
            ..Faults::default()
        },
        50_000,
    );
    let (o, _) = s.pull(&[]);
    assert_exit(&o, 6);
    assert!(stderr(&o).contains("more than"), "{}", stderr(&o));
    assert!(!blob_path(&s.layout(), &s.layer_digest).exists());
    assert!(!s.layout().join("index.json").exists());
}

#[test]
fn stalled_read_is_abandoned_and_resumed() {
    let s = setup(
        Faults {
            stall: Some((100_000, Duration::from_secs(8))),
            ..Faults::default()
        },
        400_000,
    );
    let t = Instant::now();
    let (o, _) = s.pull(&["--timeout", "1"]);
    assert_exit(&o, 0);
    assert!(
        t.elapsed() < Duration::from_secs(7),
        "gave up on the stall after the timeout: {:?}",
        t.elapsed()
    );
    s.assert_complete();
    let reqs = s.layer_requests();
    assert_eq!(reqs[1].range.as_deref(), Some("bytes=100000-"));
}

#[test]
fn trickling_connection_below_the_speed_floor_is_resumed() {
    // 50 bytes every 100 ms: never silent long enough for --timeout, but far below the floor.
    let s = setup(
        Faults {
            trickle_once: Some((50, Duration::from_millis(100))),
            ..Faults::default()
        },
        300_000,
    );
    let t = Instant::now();
    let (o, _) = s.pull(&["--speed-limit", "10000", "--speed-time", "2"]);
    assert_exit(&o, 0);
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert!(stderr(&o).contains("too slow"), "{}", stderr(&o));
    s.assert_complete();
    let reqs = s.layer_requests();
    assert_eq!(reqs.len(), 2);
    assert!(reqs[1].range.is_some(), "kept the trickled bytes");
}

#[test]
fn server_ignoring_range_is_handled() {
    let s = setup(
        Faults {
            drop_after: Some(250_000),
            ignore_range: true,
            ..Faults::default()
        },
        600_000,
    );
    let (o, summary) = s.pull(&[]);
    assert_exit(&o, 0);
    s.assert_complete();
    let reqs = s.layer_requests();
    assert_eq!(reqs[1].status, 200, "the server sent everything again");
    // We paid for the repeated bytes and say so.
    assert_eq!(Setup::layer_downloaded(&summary, &s.layer_digest), 850_000);
}

#[test]
fn answer_416_restarts_the_blob() {
    let s = setup(
        Faults {
            drop_after: Some(1000),
            range_416_once: true,
            ..Faults::default()
        },
        100_000,
    );
    let (o, _) = s.pull(&[]);
    assert_exit(&o, 0);
    s.assert_complete();
    let statuses: Vec<u16> = s.layer_requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![200, 416, 200]);
}

#[test]
fn retry_after_on_429_is_honoured() {
    let s = setup(
        Faults {
            status_once: Some(("/blobs/".into(), 429, Some(2))),
            ..Faults::default()
        },
        10_000,
    );
    let t = Instant::now();
    let (o, _) = s.pull(&[]);
    assert_exit(&o, 0);
    assert!(t.elapsed() >= Duration::from_secs(2), "waited for Retry-After");
    assert!(stderr(&o).contains("429"), "{}", stderr(&o));
    s.assert_complete();
}

#[test]
fn a_503_once_is_retried() {
    let s = setup(
        Faults {
            status_once: Some(("/manifests/".into(), 503, None)),
            ..Faults::default()
        },
        10_000,
    );
    let (o, _) = s.pull(&[]);
    assert_exit(&o, 0);
    s.assert_complete();
    let statuses: Vec<u16> = s.server.requests("/manifests/").iter().map(|r| r.status).collect();
    assert_eq!(statuses[..2], [503, 200]);
}

#[test]
fn a_manifest_cut_off_mid_body_is_fetched_again() {
    let s = setup(
        Faults {
            cut_manifest_once: true,
            ..Faults::default()
        },
        10_000,
    );
    let (o, _) = s.pull(&[]);
    assert_exit(&o, 0);
    s.assert_complete();
    assert_eq!(s.server.requests("/manifests/").len(), 2);
}

#[test]
fn persistent_5xx_gives_up_with_exit_5() {
    let s = setup(Faults::default(), 10_000);
    s.server.set_faults(Faults {
        status_once: Some(("/v2/".into(), 502, None)),
        ..Faults::default()
    });
    // --retries 0: one failure is final.
    let (o, _) = s.pull(&["--retries", "0"]);
    assert_exit(&o, 5);
    assert!(stderr(&o).contains("502"), "{}", stderr(&o));
}

#[test]
fn missing_blob_fails_fast_with_exit_3() {
    let s = setup(Faults::default(), 10_000);
    // A manifest whose config the registry does not have.
    let missing = format!("sha256:{}", "cd".repeat(32));
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": missing, "size": 3},
        "layers": [],
    });
    s.server
        .add_manifest(REPO, "v1", OCI_MANIFEST, &serde_json::to_vec(&manifest).unwrap());
    let t = Instant::now();
    let (o, _) = s.pull(&[]);
    assert_exit(&o, 3);
    assert!(t.elapsed() < Duration::from_secs(2), "no retries for a 404");
    assert_eq!(s.server.requests(&missing).len(), 1);
}

#[test]
fn redirect_to_another_host_gets_no_authorization_and_resumes_via_the_registry() {
    let cdn = FaultServer::start(Faults {
        drop_after: Some(100_000),
        ..Faults::default()
    });
    let s = setup(
        Faults {
            token_lifetime: Some(Duration::from_secs(300)),
            redirect_blobs_to: Some(format!("http://{}", cdn.host)),
            ..Faults::default()
        },
        300_000,
    );
    cdn.add_blob(&s.layer_digest, s.layer.clone());
    // The CDN serves the config blob too.
    let cfg = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec();
    cdn.add_blob(&sha256(&cfg), cfg);

    let (o, _) = s.pull(&[]);
    assert_exit(&o, 0);
    s.assert_complete();
    let registry_blob_reqs: Vec<_> = s
        .server
        .requests("/blobs/")
        .into_iter()
        .filter(|r| r.status == 307)
        .collect();
    assert!(registry_blob_reqs
        .iter()
        .all(|r| r.authorization.as_deref().is_some_and(|a| a.starts_with("Bearer "))));
    let cdn_reqs = cdn.log();
    assert!(!cdn_reqs.is_empty());
    assert!(
        cdn_reqs.iter().all(|r| r.authorization.is_none()),
        "Authorization leaked to the CDN: {cdn_reqs:?}"
    );
    // The resume asked the registry for a fresh redirect (3 registry hits: config, layer, layer again).
    let layer_at_registry = s.server.requests(&format!("/blobs/{}", s.layer_digest));
    assert_eq!(layer_at_registry.len(), 2, "{layer_at_registry:?}");
    let layer_at_cdn = cdn.requests(&s.layer_digest);
    assert_eq!(layer_at_cdn[1].range.as_deref(), Some("bytes=100000-"));
    assert_ne!(layer_at_cdn[0].path, layer_at_cdn[1].path, "a new signed URL each time");
}

#[test]
fn token_expiring_mid_pull_is_renewed_and_the_pull_continues() {
    // The server forgets tokens after 1 s; the layer stalls 1.5 s mid-way, so
    // the resume carries an expired token.
    let s = setup(
        Faults {
            token_lifetime: Some(Duration::from_secs(1)),
            stall: Some((50_000, Duration::from_millis(1500))),
            ..Faults::default()
        },
        200_000,
    );
    let (o, _) = s.pull(&["--timeout", "1"]);
    assert_exit(&o, 0);
    s.assert_complete();
    assert!(s.server.tokens_issued() >= 2, "a fresh token was fetched");
    let reqs = s.layer_requests();
    let statuses: Vec<u16> = reqs.iter().map(|r| r.status).collect();
    assert!(statuses.contains(&401), "{statuses:?}");
    let last = reqs.last().unwrap();
    assert_eq!(
        (last.status, last.range.as_deref()),
        (206, Some("bytes=50000-")),
        "continued, not restarted"
    );
}

#[test]
fn manifest_media_type_contradicting_content_type_is_refused() {
    let s = setup(
        Faults {
            manifest_content_type: Some(DOCKER_MANIFEST.into()),
            ..Faults::default()
        },
        1000,
    );
    let (o, _) = s.pull(&[]);
    assert_exit(&o, 6);
    assert!(stderr(&o).contains("served it as"), "{}", stderr(&o));
    let s = setup(
        Faults {
            wrong_digest_header: true,
            ..Faults::default()
        },
        1000,
    );
    let (o, _) = s.pull(&[]);
    assert_exit(&o, 6);
    assert!(
        stderr(&o).contains("Docker-Content-Digest") || stderr(&o).contains("says its digest"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn killed_pull_resumes_with_only_the_missing_bytes() {
    const SIZE: usize = 24 * 1024 * 1024;
    // Throttled so the kill lands mid-blob.
    let s = setup(
        Faults {
            throttle: Some(8 * 1024 * 1024),
            ..Faults::default()
        },
        SIZE,
    );
    let out = s.layout();
    let mut child = s.spawn_until_partial((SIZE / 3) as u64);
    let part = s.partial();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let held = std::fs::metadata(&part).unwrap().len();
    assert!(held > 0 && held < SIZE as u64);
    assert!(
        !blob_path(&out, &s.layer_digest).exists(),
        "no unverified blob in blobs/"
    );
    assert!(!out.join("index.json").exists());

    s.server.set_faults(Faults::default());
    s.server.clear_log();
    let (o, summary) = s.pull(&[]);
    assert_exit(&o, 0);
    s.assert_complete();
    let fetched = Setup::layer_downloaded(&summary, &s.layer_digest);
    assert_eq!(fetched, SIZE as u64 - held, "only the remainder");
    let served: u64 = s.layer_requests().iter().map(|r| r.body_bytes).sum();
    assert_eq!(served, fetched, "the server agrees");
    assert_eq!(s.layer_requests()[0].range, Some(format!("bytes={held}-")));
    oci_validate(&out, "v1");
}

#[test]
fn an_image_too_big_for_the_disk_is_refused_up_front() {
    let s = setup(Faults::default(), 3 * 1024 * 1024);
    let _fs = Tmpfs::mount(s.layout(), "1m");
    let (o, _) = s.pull(&[]);
    assert_exit(&o, 7);
    assert!(
        stderr(&o).contains("only") && stderr(&o).contains("free"),
        "{}",
        stderr(&o)
    );
    assert!(s.layer_requests().is_empty(), "nothing downloaded");
}

#[test]
fn disk_filling_up_mid_pull_exits_7_keeps_the_partial_and_resumes_later() {
    const SIZE: usize = 3 * 1024 * 1024;
    // Throttled, so something else can fill the disk while we download.
    let s = setup(
        Faults {
            throttle: Some(2 * 1024 * 1024),
            ..Faults::default()
        },
        SIZE,
    );
    // A real ENOSPC: OUTDIR on an 8 MiB tmpfs (needs root, as CI is).
    let fs = Tmpfs::mount(s.layout(), "8m");
    let child = s.spawn_until_partial(500_000);
    let part = s.partial();
    // Another writer takes all the remaining space.
    let filler = s.layout().join("filler");
    let _ = std::fs::write(&filler, vec![0u8; 8 * 1024 * 1024]);
    let o = child.wait_with_output().unwrap();
    assert_exit(&o, 7);
    assert!(stderr(&o).contains("disk is full"), "{}", stderr(&o));
    let held = std::fs::metadata(&part).unwrap().len();
    assert!(held > 0, "the partial is kept for a resume");
    assert!(!blob_path(&s.layout(), &s.layer_digest).exists());
    assert!(!s.layout().join("index.json").exists());

    std::fs::remove_file(&filler).unwrap();
    fs.resize("16m");
    s.server.set_faults(Faults::default());
    s.server.clear_log();
    let (o, summary) = s.pull(&[]);
    assert_exit(&o, 0);
    s.assert_complete();
    assert_eq!(Setup::layer_downloaded(&summary, &s.layer_digest), SIZE as u64 - held);
}

#[test]
fn item_10_links_planted_in_outdir_are_never_followed() {
    let victim_dir = TempDir::new("victim");
    let victim = victim_dir.join("victim");
    std::fs::write(&victim, b"precious\n").unwrap();
    // The partial of the layer, a temporary of index.json, and the lock: each
    // planted as a link to the victim, each refused with exit 7.
    for planted in ["partial", "index.json.tmp", "lock"] {
        let s = setup(Faults::default(), 50_000);
        let work_dir = s.layout().join(".minipull");
        std::fs::create_dir_all(work_dir.join("partial")).unwrap();
        let link = match planted {
            "partial" => s.partial(),
            name => work_dir.join(name),
        };
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let (o, _) = s.pull(&[]);
        assert_exit(&o, 7);
        assert!(stderr(&o).contains("symbolic link"), "{planted}: {}", stderr(&o));
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious\n", "{planted}");
        assert!(!s.layout().join("index.json").exists(), "{planted}");
    }
    // An OUTDIR others may write to, or one that belongs to another user.
    let s = setup(Faults::default(), 1000);
    std::fs::create_dir_all(s.layout()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(s.layout(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let (o, _) = s.pull(&[]);
    assert_exit(&o, 7);
    assert!(stderr(&o).contains("others may write"), "{}", stderr(&o));
    std::fs::set_permissions(s.layout(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let chown = std::process::Command::new("chown")
        .arg("65534")
        .arg(s.layout())
        .status()
        .unwrap();
    assert!(chown.success(), "this test runs as root");
    let (o, _) = s.pull(&[]);
    assert_exit(&o, 7);
    assert!(stderr(&o).contains("another user"), "{}", stderr(&o));
    // The same directory made safe again: the pull goes through.
    let chown = std::process::Command::new("chown")
        .arg("0")
        .arg(s.layout())
        .status()
        .unwrap();
    assert!(chown.success());
    let (o, _) = s.pull(&[]);
    assert_exit(&o, 0);
    s.assert_complete();
    // Also when OUTDIR itself is the user's link to it: only what is inside
    // OUTDIR is never followed.
    let link = s.work.join("link-to-layout");
    std::os::unix::fs::symlink(s.layout(), &link).unwrap();
    let r = format!("{}/{REPO}:v1", s.server.host);
    let o = minipull(&["--plain-http", &r, link.to_str().unwrap()], None);
    assert_exit(&o, 0);
}

#[test]
fn item_11_a_rerun_waits_for_the_lock_instead_of_failing() {
    let s = setup(Faults::default(), 50_000);
    let work_dir = s.layout().join(".minipull");
    std::fs::create_dir_all(&work_dir).unwrap();
    let lock = std::fs::File::create(work_dir.join("lock")).unwrap();
    lock.lock().unwrap();
    let r = format!("{}/{REPO}:v1", s.server.host);
    let child = std::process::Command::new(common::minipull_bin())
        .args(["--plain-http", &r, s.layout().to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // What a killed process does a moment after SIGKILL: let go of the lock.
    std::thread::sleep(Duration::from_secs(2));
    drop(lock);
    let o = child.wait_with_output().unwrap();
    assert_exit(&o, 0);
    // One note; by default the wait lasts as long as the holder runs.
    assert_eq!(
        stderr(&o).matches("waiting for it to finish").count(),
        1,
        "{}",
        stderr(&o)
    );
    s.assert_complete();
}

#[test]
fn a_registry_that_answers_late_is_waited_for_by_default() {
    // Nothing listens for 15 s: more than the old retry budget (about 11 s).
    let server = FaultServer::start_later(Faults::default(), Duration::from_secs(15));
    let layer = noise(20_000, 7);
    server.add_image(REPO, "v1", layer);
    let work = TempDir::new("late");
    let r = format!("{}/{REPO}:v1", server.host);
    let started = std::time::Instant::now();
    let o = minipull(
        &["--plain-http", "--timeout", "5", &r, work.join("out").to_str().unwrap()],
        None,
    );
    assert_exit(&o, 0);
    assert!(started.elapsed() >= Duration::from_secs(14), "{:?}", started.elapsed());
    let waits = stderr(&o).matches("left of --retry-for").count();
    assert!(waits >= 2, "one line per wait: {}", stderr(&o));

    // --retry-for 0: an unreachable registry fails at once.
    let dead = FaultServer::start_later(Faults::default(), Duration::from_secs(3600));
    let r = format!("{}/{REPO}:v1", dead.host);
    let started = std::time::Instant::now();
    let o = minipull(
        &[
            "--plain-http",
            "--retry-for",
            "0",
            &r,
            work.join("out2").to_str().unwrap(),
        ],
        None,
    );
    assert_exit(&o, 5);
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert!(stderr(&o).contains("--retry-for"), "{}", stderr(&o));
}

#[test]
fn a_mirror_that_comes_up_late_is_used_rather_than_the_registry() {
    let registry = FaultServer::start(Faults::default());
    let mirror = FaultServer::start_later(Faults::default(), Duration::from_secs(4));
    let layer = noise(30_000, 9);
    let (digest, _) = registry.add_image(REPO, "v1", layer.clone());
    let (mirror_digest, _) = mirror.add_image(REPO, "v1", layer);
    assert_eq!(digest, mirror_digest);
    let work = TempDir::new("late-mirror");
    let out = work.join("out");
    let r = format!("{}/{REPO}:v1", registry.host);
    let o = minipull(
        &[
            "--plain-http",
            "--json",
            "--mirror",
            &format!("http://{}", mirror.host),
            "--mirror-for",
            &registry.host,
            &r,
            out.to_str().unwrap(),
        ],
        None,
    );
    assert_exit(&o, 0);
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["digest"], digest.as_str());
    let log = registry.log();
    assert!(
        log.iter()
            .all(|r| !r.path.contains("/blobs/") && !r.path.contains("/manifests/")),
        "the registry served what the late mirror should have: {log:?}"
    );
    assert!(!mirror.requests("/blobs/").is_empty());
}

/// Power cuts, reproduced without a VM. After a real power cut a partial
/// can come back with its length on disk and its last pages zeros, or
/// shorter than its record says; its resume record then names a boot that
/// is not the current one. The resume must keep only the longest prefix
/// whose hash the record holds, and fetch the rest, never the whole blob.
#[test]
fn torn_partial_after_a_power_cut_resumes_from_the_last_good_checkpoint() {
    const MIB: u64 = 1024 * 1024;
    const SIZE: usize = 44 * MIB as usize;
    let s = setup(
        Faults {
            throttle: Some(16 * MIB),
            ..Faults::default()
        },
        SIZE,
    );
    let mut child = s.spawn_until_partial(36 * MIB);
    child.kill().unwrap(); // SIGKILL: the record holds the windows synced so far
    child.wait().unwrap();
    let part = s.partial();
    let record_path = std::path::PathBuf::from(format!("{}.resume", part.display()));
    let data = std::fs::read(&part).unwrap();
    let record = std::fs::read_to_string(&record_path).unwrap();
    let checkpoints: Vec<u64> = record
        .lines()
        .filter_map(|l| l.split_once(' ')?.0.parse().ok())
        .collect();
    assert!(checkpoints.len() >= 2, "a checkpoint per write-back window: {record}");
    let (before_last, last) = (checkpoints[checkpoints.len() - 2], checkpoints[checkpoints.len() - 1]);
    assert!(last <= data.len() as u64);
    // The same record, as read after a reboot.
    let rebooted: String = record
        .lines()
        .map(|l| {
            if l.starts_with("boot ") {
                "boot 00000000-0000-0000-0000-000000000000".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";

    let zeros_from = |from: u64| {
        let mut d = data.clone();
        d[from as usize..].fill(0);
        d
    };
    let cases: Vec<(&str, Vec<u8>, Option<&str>, u64)> = vec![
        // Length on disk, data not: zeros past the last checkpoint.
        (
            "zeros past the last checkpoint",
            zeros_from(last),
            Some(&rebooted),
            last,
        ),
        // The last checkpoint is newer than the data that reached the disk.
        (
            "checkpoint newer than the data",
            zeros_from(before_last + MIB),
            Some(&rebooted),
            before_last,
        ),
        // The file's length did not reach the disk either.
        (
            "truncated file",
            data[..(last - MIB) as usize].to_vec(),
            Some(&rebooted),
            before_last,
        ),
        // No record survived: nothing can be vouched for.
        ("no record", zeros_from(last), None, 0),
    ];
    s.server.set_faults(Faults::default());
    for (case, partial, record, resume_at) in cases {
        let _ = std::fs::remove_dir_all(s.layout());
        std::fs::create_dir_all(part.parent().unwrap()).unwrap();
        std::fs::write(&part, &partial).unwrap();
        if let Some(r) = record {
            std::fs::write(&record_path, r).unwrap();
        }
        s.server.clear_log();
        let (o, summary) = s.pull(&[]);
        assert_exit(&o, 0);
        s.assert_complete();
        let reqs = s.layer_requests();
        let expected_range = (resume_at > 0).then(|| format!("bytes={resume_at}-"));
        assert_eq!(reqs[0].range, expected_range, "{case}");
        assert_eq!(reqs.len(), 1, "{case}: one request, no digest failure: {reqs:?}");
        let fetched = Setup::layer_downloaded(&summary, &s.layer_digest);
        assert_eq!(fetched, SIZE as u64 - resume_at, "{case}");
        assert!(!record_path.exists(), "{case}: the record goes with the partial");
    }
}

#[test]
fn a_clean_stop_records_the_whole_partial() {
    // A pull that gives up (here: every answer breaks off at the same byte,
    // so retries make no progress) syncs and records what it holds, so a
    // power cut after it exits still resumes at the byte.
    let s = setup(
        Faults {
            cut_at: Some(700_000),
            ..Faults::default()
        },
        2_000_000,
    );
    let (o, _) = s.pull(&["--retries", "1"]);
    assert_exit(&o, 5);
    s.server.set_faults(Faults::default());
    let record_path = std::path::PathBuf::from(format!("{}.resume", s.partial().display()));
    let record = std::fs::read_to_string(&record_path).unwrap();
    assert!(record.lines().any(|l| l.starts_with("700000 sha256:")), "{record}");
    let rebooted: String = record
        .lines()
        .filter(|l| !l.starts_with("boot "))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&record_path, rebooted).unwrap();
    s.server.clear_log();
    let (o, summary) = s.pull(&[]);
    assert_exit(&o, 0);
    s.assert_complete();
    assert_eq!(s.layer_requests()[0].range.as_deref(), Some("bytes=700000-"));
    assert_eq!(Setup::layer_downloaded(&summary, &s.layer_digest), 1_300_000);
}

//! Hostile or broken registries: each case asserts the exit code, that
//! nothing was written outside OUTDIR, and that no secret reached the output.
//! Every pull runs with credentials and bearer tokens in play.

mod common;
use common::fault::{FaultServer, Faults};
use common::*;
use std::path::Path;
use std::time::Duration;

const REPO: &str = "evil/app";
const USER: &str = "bob";
const PASSWORD: &str = "TOPSECRET-pw-123";

fn token_faults() -> Faults {
    Faults {
        token_lifetime: Some(Duration::from_secs(300)),
        ..Faults::default()
    }
}

/// Every path under `dir`, except those under `dir/layout`.
fn outside_layout(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p == dir.join("layout") {
                continue;
            }
            out.push(p.display().to_string());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Pull `evil/app:v1` with credentials; assert the exit code, no secret in
/// the output, nothing written outside OUTDIR. Returns stderr.
fn hostile_pull(server: &FaultServer, code: i32) -> String {
    let work = TempDir::new("hostile");
    std::fs::write(work.join("canary"), b"untouched").unwrap();
    let before = outside_layout(work.path());
    let out = work.join("layout");
    let r = format!("{}/{REPO}:v1", server.host);
    let o = minipull(
        &[
            "--plain-http",
            "--json",
            // Generous: a loaded 2-core machine can pause a pull for seconds,
            // and no case here waits on a timeout to end.
            "--timeout",
            "20",
            "--retries",
            "1",
            "--username",
            USER,
            "--password-stdin",
            &r,
            out.to_str().unwrap(),
        ],
        Some(PASSWORD),
    );
    assert_exit(&o, code);
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert!(!all.contains(PASSWORD), "password leaked: {all}");
    assert!(
        !all.contains(&base64_pub(format!("{USER}:{PASSWORD}").as_bytes())),
        "basic header leaked: {all}"
    );
    assert!(!all.contains("tok-"), "token leaked: {all}");
    assert!(!all.contains("RUST_BACKTRACE") && !all.contains("panicked"), "{all}");
    assert_eq!(
        outside_layout(work.path()),
        before,
        "something was written outside OUTDIR"
    );
    assert_eq!(std::fs::read(work.join("canary")).unwrap(), b"untouched");
    if code != 0 && out.exists() {
        assert_blobs_consistent(&out);
        assert!(
            !out.join("index.json").exists(),
            "a failed pull names nothing in index.json"
        );
    }
    stderr(&o)
}

fn manifest_with_layer(digest: &str, size: i64) -> Vec<u8> {
    let config = format!("sha256:{}", "0".repeat(64));
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config, "size": 2},
        "layers": [{"mediaType": OCI_LAYER_TAR, "digest": digest, "size": size}],
    }))
    .unwrap()
}

#[test]
fn malformed_digests_never_become_paths() {
    for digest in [
        "sha256:../../../etc/passwd".to_string(),
        format!("sha256:../../{}", "a".repeat(58)),
        format!("sha256:{}", "A".repeat(64)),
        format!("md5:{}", "a".repeat(32)),
        format!("sha256:{}/..", "a".repeat(61)),
    ] {
        let server = FaultServer::start(token_faults());
        server.add_manifest(REPO, "v1", OCI_MANIFEST, &manifest_with_layer(&digest, 10));
        let err = hostile_pull(&server, 6);
        assert!(err.contains("invalid digest"), "{digest}: {err}");
        assert!(server.requests("/blobs/").is_empty() || !server.requests("/blobs/")[0].path.contains(".."));
    }
}

#[test]
fn absurd_and_negative_sizes_are_refused_before_downloading() {
    for size in [1i64 << 50, -5] {
        let server = FaultServer::start(token_faults());
        let d = format!("sha256:{}", "1".repeat(64));
        server.add_manifest(REPO, "v1", OCI_MANIFEST, &manifest_with_layer(&d, size));
        let err = hostile_pull(&server, 6);
        assert!(err.contains("size") || err.contains("bytes"), "{err}");
        assert!(server.requests(&d).is_empty(), "nothing fetched for it");
    }
}

#[test]
fn a_64_mib_manifest_is_refused() {
    let server = FaultServer::start(token_faults());
    let mut big =
        br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","annotations":{"x":""#.to_vec();
    big.extend(std::iter::repeat_n(b'a', 64 * 1024 * 1024));
    big.extend(br#""}}"#);
    server.add_manifest(REPO, "v1", OCI_MANIFEST, &big);
    let err = hostile_pull(&server, 6);
    assert!(err.contains("larger than the 4.0 MiB limit"), "{err}");
}

#[test]
fn an_index_that_points_at_itself_or_nests_too_deep_is_refused() {
    // "Itself": the child's digest is served with the index's own bytes.
    let server = FaultServer::start(token_faults());
    let child = format!("sha256:{}", "2".repeat(64));
    let index = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_INDEX, "digest": child, "size": 10, "platform": {"os": "linux", "architecture": "amd64"}}]}))
    .unwrap();
    server.add_manifest(REPO, "v1", OCI_INDEX, &index);
    server.add_manifest(REPO, &child, OCI_INDEX, &index);
    hostile_pull(&server, 6);

    // A chain of valid indexes, each pointing at the next.
    let server = FaultServer::start(token_faults());
    let (mut digest, mut bytes) = (String::new(), Vec::new());
    for depth in 0..8 {
        let manifests = if depth == 0 {
            vec![]
        } else {
            vec![
                serde_json::json!({"mediaType": OCI_INDEX, "digest": digest, "size": bytes.len(),
                "platform": {"os": "linux", "architecture": "amd64"}}),
            ]
        };
        bytes = serde_json::to_vec(
            &serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}),
        )
        .unwrap();
        digest = sha256(&bytes);
        server.add_manifest(REPO, &digest, OCI_INDEX, &bytes);
    }
    server.add_manifest(REPO, "v1", OCI_INDEX, &bytes);
    let work = TempDir::new("deep");
    let o = minipull(
        &[
            "--plain-http",
            "--platform",
            "linux/amd64",
            &format!("{}/{REPO}:v1", server.host),
            work.join("layout").to_str().unwrap(),
        ],
        None,
    );
    assert_exit(&o, 6);
    assert!(stderr(&o).contains("nest"), "{}", stderr(&o));
}

#[test]
fn endless_redirects_stop() {
    let server = FaultServer::start(Faults {
        redirect_forever: true,
        ..token_faults()
    });
    let (_, layer) = server.add_image(REPO, "v1", b"layer".to_vec());
    let err = hostile_pull(&server, 5);
    assert!(err.contains("redirects"), "{err}");
    let hops = server.requests(&layer).len();
    assert_eq!(hops, 11, "the request and 10 redirects, then stop");
}

#[test]
fn token_realms_that_are_not_http_are_refused() {
    for realm in ["file:///etc/passwd", "ftp://127.0.0.1/token", "gopher://x"] {
        let server = FaultServer::start(Faults {
            token_realm: Some(realm.into()),
            ..token_faults()
        });
        server.add_image(REPO, "v1", b"layer".to_vec());
        let err = hostile_pull(&server, 4);
        assert!(err.contains("refusing the token realm"), "{realm}: {err}");
        assert!(!err.contains("/etc/passwd"), "the realm's path is not echoed: {err}");
    }
}

#[test]
fn a_blob_longer_than_its_descriptor_is_cut_off() {
    let server = FaultServer::start(Faults {
        extra_bytes: 64 << 20,
        ..token_faults()
    });
    let (_, layer) = server.add_image(REPO, "v1", vec![7u8; 1000]);
    let err = hostile_pull(&server, 6);
    assert!(err.contains("more than the 1000 bytes"), "{err}");
    // The client stopped reading early instead of taking all 64 MiB (twice);
    // what the server could write is bounded by socket buffers.
    let served: u64 = server.requests(&layer).iter().map(|r| r.body_bytes).sum();
    assert!(served < 32 << 20, "served {served}");
}

#[test]
fn sha512_blobs_are_verified_and_stored_under_sha512() {
    use sha2::Digest as _;
    let server = FaultServer::start(token_faults());
    let layer = b"a layer addressed by sha512".to_vec();
    let hex: String = sha2::Sha512::digest(&layer)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let d512 = format!("sha512:{hex}");
    server.add_blob(&d512, layer.clone());
    let config = b"{}".to_vec();
    server.add_blob(&sha256(&config), config.clone());
    let m = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(&config), "size": 2},
        "layers": [{"mediaType": OCI_LAYER_TAR, "digest": d512, "size": layer.len()}],
    }))
    .unwrap();
    server.add_manifest(REPO, "v1", OCI_MANIFEST, &m);
    let work = TempDir::new("sha512");
    let out = work.join("layout");
    let o = minipull(
        &[
            "--plain-http",
            &format!("{}/{REPO}:v1", server.host),
            out.to_str().unwrap(),
        ],
        None,
    );
    assert_exit(&o, 0);
    assert_eq!(std::fs::read(out.join("blobs/sha512").join(&hex)).unwrap(), layer);

    // The same digest with wrong content is refused.
    server.add_blob(&d512, b"not the right content at all".to_vec());
    let o = minipull(
        &[
            "--plain-http",
            &format!("{}/{REPO}:v1", server.host),
            work.join("b").to_str().unwrap(),
        ],
        None,
    );
    assert_exit(&o, 6);
    assert!(!work.join("b/blobs/sha512").join(&hex).exists());
}

#[test]
fn item_9_a_401_from_a_redirect_target_never_gets_the_password() {
    // The third host whose realm the CDN names: at most an anonymous token
    // request (no credential of ours, no token of the registry's) reaches it.
    let third = FaultServer::start(Faults::default());
    let cdn = FaultServer::start(Faults {
        token_lifetime: Some(Duration::from_secs(300)),
        token_realm: Some(format!("http://{}/token", third.host)),
        ..Faults::default()
    });
    let server = FaultServer::start(Faults {
        redirect_blobs_to: Some(format!("http://{}", cdn.host)),
        ..token_faults()
    });
    let (_, layer) = server.add_image(REPO, "v1", b"layer bytes".to_vec());
    cdn.add_blob(&layer, b"layer bytes".to_vec());
    let err = hostile_pull(&server, 4);
    assert!(err.contains(&cdn.host), "names the host that refused: {err}");
    assert!(
        third.log().iter().all(|r| r.authorization.is_none()),
        "credentials reached the third host: {:?}",
        third.log()
    );
    // The CDN may present the anonymous token its own realm gave it, never
    // our password or the registry's token.
    let anonymous = format!("Bearer tok-{}-", third.port);
    assert!(
        cdn.log()
            .iter()
            .all(|r| r.authorization.as_deref().is_none_or(|a| a.starts_with(&anonymous))),
        "credentials reached the CDN: {:?}",
        cdn.log()
    );
}

#[test]
fn item_12_registry_strings_reach_the_terminal_escaped() {
    // A digest and a media type carrying terminal escape sequences (clear
    // screen, set window title, bell) and a carriage return.
    let evil = "\u{1b}[2J\u{1b}]0;pwned\u{7}\rX";
    let digest = format!("sha256:{}{evil}", "a".repeat(10));
    let server = FaultServer::start(token_faults());
    server.add_manifest(REPO, "v1", OCI_MANIFEST, &manifest_with_layer(&digest, 10));
    let err = hostile_pull(&server, 6);
    assert!(
        !err.contains('\u{1b}') && !err.contains('\u{7}') && !err.contains('\r'),
        "{err:?}"
    );
    assert!(err.contains("[2J"), "shown, without its control characters: {err}");

    // Platform fields, listed when none matches.
    let server = FaultServer::start(token_faults());
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "digest": format!("sha256:{}", "b".repeat(64)),
            "size": 10,
            "platform": {"architecture": format!("arm{evil}"), "os": "linux"},
        }],
    });
    server.add_manifest(
        REPO,
        "v1",
        "application/vnd.oci.image.index.v1+json",
        &serde_json::to_vec(&m).unwrap(),
    );
    let err = hostile_pull(&server, 3);
    assert!(
        !err.contains('\u{1b}') && !err.contains('\u{7}') && !err.contains('\r'),
        "{err:?}"
    );
    assert!(err.contains("\\u{1b}[2J"), "shown escaped: {err}");
}

/// A registry serving one repository names the blobs of another image in
/// OUTDIR with sizes one byte off: the manifest is refused (exit 6, naming
/// the descriptor) before anything is downloaded, and the other image keeps
/// every blob, through a `gc` too.
#[test]
fn wrong_size_descriptor_never_deletes_another_images_blob() {
    let reg = Registry::start(Auth::None);
    let work = TempDir::new("wrong-size");
    let img = Image::new("amd64", vec![gz_layer(&[("etc/hello", b"victim\n")])]);
    let (victim, manifest) = reg.push_image("demo/app", "1.0", &img);
    let out = work.join("layout");
    let o = minipull(
        &[
            "--plain-http",
            &format!("{}/demo/app:1.0", reg.host),
            out.to_str().unwrap(),
        ],
        None,
    );
    assert_exit(&o, 0);
    let index = std::fs::read(out.join("index.json")).unwrap();
    let m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let (config, layer) = (&m["config"], &m["layers"][0]);
    let blobs = [
        victim.clone(),
        config["digest"].as_str().unwrap().to_string(),
        layer["digest"].as_str().unwrap().to_string(),
    ];

    let server = FaultServer::start(Faults::default());
    let mut evil = m.clone();
    evil["layers"][0]["size"] = (layer["size"].as_i64().unwrap() + 1).into();
    server.add_manifest(REPO, "v1", OCI_MANIFEST, &serde_json::to_vec(&evil).unwrap());
    let o = minipull(
        &[
            "--plain-http",
            &format!("{}/{REPO}:v1", server.host),
            out.to_str().unwrap(),
        ],
        None,
    );
    assert_exit(&o, 6);
    let err = stderr(&o);
    assert!(
        err.contains("layer 1") && err.contains(layer["digest"].as_str().unwrap()),
        "{err}"
    );
    assert!(server.requests("/blobs/").is_empty(), "nothing downloaded");
    assert_eq!(
        std::fs::read(out.join("index.json")).unwrap(),
        index,
        "nothing recorded"
    );
    for d in &blobs {
        assert!(blob_path(&out, d).is_file(), "{d} was deleted");
    }
    assert_exit(&minipull(&["gc", out.to_str().unwrap()], None), 0);
    for d in &blobs {
        assert!(blob_path(&out, d).is_file(), "{d} was deleted by gc");
    }
    assert_blobs_consistent(&out);
    // The victim is still whole: its re-pull needs nothing.
    let o = minipull(
        &[
            "--plain-http",
            &format!("{}/demo/app:1.0", reg.host),
            out.to_str().unwrap(),
        ],
        None,
    );
    assert_exit(&o, 0);
    assert!(stderr(&o).contains("nothing to download"), "{}", stderr(&o));
}

/// `--all-platforms`: an index child that claims to be a manifest must parse
/// as one (here: an index posing as an image manifest), else the pull is
/// refused with nothing recorded; a child of a media type minipull does not
/// pull is neither fetched nor walked (so `gc` and the re-pull still work).
#[test]
fn all_platforms_child_that_is_not_a_manifest_is_refused() {
    let server = FaultServer::start(Faults::default());
    let (image, _) = server.add_image(REPO, "img", b"layer bytes".to_vec());
    let image_size = server.manifest_bytes(REPO, &image).len();
    let child = |mt: &str, digest: &str, size: usize, arch: &str| {
        serde_json::json!({"mediaType": mt, "digest": digest, "size": size,
            "platform": {"os": "linux", "architecture": arch}})
    };
    let index = |children: Vec<serde_json::Value>| {
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}))
            .unwrap()
    };
    let pull = |tag: &str, out: &Path| {
        minipull(
            &[
                "--plain-http",
                "--all-platforms",
                &format!("{}/{REPO}:{tag}", server.host),
                out.to_str().unwrap(),
            ],
            None,
        )
    };
    let work = TempDir::new("all-platforms-child");

    // An index posing as an image manifest.
    let posing = index(vec![]);
    let posing_digest = sha256(&posing);
    server.add_manifest(REPO, &posing_digest, OCI_INDEX, &posing);
    server.add_manifest(
        REPO,
        "posing",
        OCI_INDEX,
        &index(vec![
            child(OCI_MANIFEST, &image, image_size, "amd64"),
            child(OCI_MANIFEST, &posing_digest, posing.len(), "arm64"),
        ]),
    );
    let out = work.join("posing");
    let o = pull("posing", &out);
    assert_exit(&o, 6);
    assert!(stderr(&o).contains("claims to be"), "{}", stderr(&o));
    assert!(!out.join("index.json").exists(), "nothing recorded");

    // A child of an unknown media type: not fetched, noted once, not walked.
    let thing = b"{\"not\": \"a manifest\"}".to_vec();
    let thing_digest = sha256(&thing);
    server.add_blob(&thing_digest, thing.clone());
    server.add_manifest(REPO, &thing_digest, "application/vnd.example.thing.v1+json", &thing);
    let thing_type = "application/vnd.example.thing.v1+json";
    server.add_manifest(
        REPO,
        "unknown",
        OCI_INDEX,
        &index(vec![
            child(OCI_MANIFEST, &image, image_size, "amd64"),
            child(thing_type, &thing_digest, thing.len(), "arm64"),
            child(thing_type, &thing_digest, thing.len(), "riscv64"),
        ]),
    );
    let out = work.join("unknown");
    server.clear_log();
    let o = pull("unknown", &out);
    assert_exit(&o, 0);
    assert_eq!(
        stderr(&o).matches("not pulling index entry").count(),
        1,
        "{}",
        stderr(&o)
    );
    assert!(
        server.requests(&thing_digest).is_empty(),
        "the unknown child was fetched"
    );
    assert!(!blob_path(&out, &thing_digest).exists());
    assert_exit(&minipull(&["gc", out.to_str().unwrap()], None), 0);
    assert_exit(&minipull(&["ls", out.to_str().unwrap()], None), 0);
    let o = pull("unknown", &out);
    assert_exit(&o, 0);
    assert!(stderr(&o).contains("nothing to download"), "{}", stderr(&o));
}

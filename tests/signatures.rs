//! Signed images (`--verify-key`): keys made by openssl, signatures made by
//! openssl over payloads written per cosign's spec, everything pushed to the
//! real docker-registry (whose access log shows what minipull fetched), and
//! the referrers API through the in-suite server.

mod common;
use common::*;
use serde_json::json;
use std::path::{Path, PathBuf};

const SIMPLESIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const COSIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A key pair made by openssl: (private key, public key PEM path).
struct Key {
    private: PathBuf,
    public: PathBuf,
    ed25519: bool,
}

fn keygen(dir: &Path, name: &str, ed25519: bool) -> Key {
    require("openssl");
    let private = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub"));
    let p = private.to_str().unwrap();
    if ed25519 {
        run_ok("openssl", &["genpkey", "-algorithm", "ed25519", "-out", p]);
    } else {
        run_ok(
            "openssl",
            &["ecparam", "-genkey", "-name", "prime256v1", "-noout", "-out", p],
        );
    }
    run_ok(
        "openssl",
        &["pkey", "-in", p, "-pubout", "-out", public.to_str().unwrap()],
    );
    Key {
        private,
        public,
        ed25519,
    }
}

impl Key {
    /// Sign `message` (ECDSA-SHA256 DER, or Ed25519).
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        let dir = self.private.parent().unwrap();
        let (msg, sig) = (dir.join("msg"), dir.join("sig"));
        std::fs::write(&msg, message).unwrap();
        let (k, m, s) = (
            self.private.to_str().unwrap(),
            msg.to_str().unwrap(),
            sig.to_str().unwrap(),
        );
        if self.ed25519 {
            run_ok(
                "openssl",
                &["pkeyutl", "-sign", "-inkey", k, "-rawin", "-in", m, "-out", s],
            );
        } else {
            run_ok("openssl", &["dgst", "-sha256", "-sign", k, "-out", s, m]);
        }
        std::fs::read(&sig).unwrap()
    }
    fn public(&self) -> &str {
        self.public.to_str().unwrap()
    }
}

/// A cosign "simple signing" payload for `digest` in `repo`.
fn payload(repo: &str, digest: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "critical": {
            "identity": {"docker-reference": repo},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature"
        },
        "optional": null
    }))
    .unwrap()
}

fn tag_of(digest: &str) -> String {
    digest.replace(':', "-")
}

/// Push a classic signature manifest (`sha256-<hex>.sig`) with these
/// (payload, base64 signature) layers.
fn push_classic(reg: &Registry, repo: &str, digest: &str, sigs: &[(Vec<u8>, String)]) {
    let config = reg.blob_desc(repo, "application/vnd.oci.image.config.v1+json", b"{}");
    let layers: Vec<_> = sigs
        .iter()
        .map(|(p, s)| {
            let mut d = reg.blob_desc(repo, SIMPLESIGNING, p);
            d["annotations"] = json!({"dev.cosignproject.cosign/signature": s});
            d
        })
        .collect();
    let m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": layers});
    reg.push_manifest(
        repo,
        &format!("{}.sig", tag_of(digest)),
        OCI_MANIFEST,
        &serde_json::to_vec(&m).unwrap(),
    );
}

/// A sigstore bundle (DSSE over an in-toto statement) for `digest`.
fn bundle(key: &Key, digest: &str, predicate: &str) -> Vec<u8> {
    bundle_named(key, digest, predicate, Some("image"))
}

/// The same, with this `subject[].name` (none: as cosign 3 writes for images).
fn bundle_named(key: &Key, digest: &str, predicate: &str, name: Option<&str>) -> Vec<u8> {
    let (alg, hex) = digest.split_once(':').unwrap();
    let mut subject = json!({"digest": {alg: hex}});
    if let Some(n) = name {
        subject["name"] = json!(n);
    }
    let statement = serde_json::to_vec(&json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [subject],
        "predicateType": predicate,
        "predicate": {}
    }))
    .unwrap();
    let payload_type = "application/vnd.in-toto+json";
    let mut pae = format!("DSSEv1 {} {payload_type} {} ", payload_type.len(), statement.len()).into_bytes();
    pae.extend_from_slice(&statement);
    serde_json::to_vec(&json!({
        "mediaType": BUNDLE,
        "verificationMaterial": {"publicKey": {"hint": ""}, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": base64_pub(&statement),
            "payloadType": payload_type,
            "signatures": [{"sig": base64_pub(&key.sign(&pae)), "keyid": ""}]
        }
    }))
    .unwrap()
}

/// The bundle's manifest (a referrer of `subject`); returns (its bytes, its descriptor in an index).
fn bundle_manifest(reg: &Registry, repo: &str, bundle: &[u8], subject: &str) -> (Vec<u8>, serde_json::Value) {
    let empty = reg.blob_desc(repo, "application/vnd.oci.empty.v1+json", b"{}");
    let layer = reg.blob_desc(repo, BUNDLE, bundle);
    let m = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": BUNDLE,
        "config": empty, "layers": [layer],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 1}
    }))
    .unwrap();
    let d = reg.push_manifest(repo, &sha256(&m), OCI_MANIFEST, &m);
    let desc = json!({"mediaType": OCI_MANIFEST, "digest": d, "size": m.len(), "artifactType": BUNDLE});
    (m, desc)
}

/// `minipull unpack --verify-key KEY OUT ROOT`: offline verification, then the unpack.
#[cfg(feature = "unpack")]
fn unpack_verified(key: &Key, out: &Path, root: &Path) -> std::process::Output {
    minipull(
        &[
            "unpack",
            "--verify-key",
            key.public(),
            out.to_str().unwrap(),
            root.to_str().unwrap(),
        ],
        None,
    )
}

/// A registry with an access log, and simple images in it.
struct World(LoggedRegistry);

impl std::ops::Deref for World {
    type Target = LoggedRegistry;
    fn deref(&self) -> &LoggedRegistry {
        &self.0
    }
}

impl World {
    fn new() -> World {
        World(LoggedRegistry::new("sig"))
    }

    /// Push a one-layer image under `repo:v1`; returns its digest.
    fn image(&self, repo: &str, text: &[u8]) -> String {
        let img = Image::new("amd64", vec![gz_layer(&[("etc/hello", text)])]);
        self.reg.push_image(repo, "v1", &img).0
    }

    fn pull(&self, repo: &str, out: &Path, extra: &[&str]) -> std::process::Output {
        let r = format!("{}/{repo}:v1", self.reg.host);
        let mut args = vec!["--plain-http", "--json"];
        args.extend_from_slice(extra);
        args.push(&r);
        args.push(out.to_str().unwrap());
        minipull(&args, None)
    }

    /// Blob GETs of `repo` in the access log so far.
    fn blob_gets(&self, repo: &str) -> Vec<String> {
        self.blob_gets_since(repo, 0)
    }
}

/// Refused with exit 8: nothing in index.json, no layer fetched.
fn assert_refused(w: &World, repo: &str, o: &std::process::Output, layer_digests: &[String], why: &str) {
    assert_exit(o, 8);
    assert!(stderr(o).contains(why), "expected {why:?} in:\n{}", stderr(o));
    let gets = w.blob_gets(repo);
    for d in layer_digests {
        assert!(
            !gets.iter().any(|g| g.contains(d.as_str())),
            "{d} was downloaded: {gets:?}"
        );
    }
}

// Verifies offline with `minipull unpack`.
#[cfg(feature = "unpack")]
#[test]
fn classic_signature_accepted_then_verified_offline_and_tampering_refused() {
    let w = World::new();
    let key = keygen(w.work.path(), "vendor", false);
    let repo = "signed/classic";
    let digest = w.image(repo, b"signed\n");
    let p = payload(&format!("{}/{repo}", w.reg.host), &digest);
    push_classic(&w.reg, repo, &digest, &[(p.clone(), base64_pub(&key.sign(&p)))]);

    let out = w.work.join("layout");
    let o = w.pull(repo, &out, &["--verify-key", key.public()]);
    assert_exit(&o, 0);
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["signature"]["format"], "classic");
    assert_eq!(summary["signature"]["digest"], digest.as_str());
    assert_index_points_at_blobs(&out);
    assert_blobs_consistent(&out);
    oci_validate(&out, "v1");
    // The signature is stored beside the image, named like cosign's tag.
    let index = read_json(&out.join("index.json"));
    let names: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(names.contains(&format!("{}.sig", tag_of(&digest))), "{names:?}");

    // Offline: `unpack` without a NAME still finds the one image, and
    // verifies it before extracting.
    let root = w.work.join("root");
    let o = unpack_verified(&key, &out, &root);
    assert_exit(&o, 0);
    assert!(stderr(&o).contains("signature verified offline"), "{}", stderr(&o));
    assert_eq!(std::fs::read(root.join("etc/hello")).unwrap(), b"signed\n");

    // Re-pulling the unchanged image verifies from the layout: the signature
    // blobs are not fetched again.
    let before = w.blob_gets(repo).len();
    let o = w.pull(repo, &out, &["--verify-key", key.public()]);
    assert_exit(&o, 0);
    assert_eq!(w.blob_gets(repo).len(), before, "nothing fetched again");

    // The stored payload altered by one byte: refused offline, nothing extracted.
    let payload_path = blob_path(&out, &sha256(&p));
    let mut altered = p.clone();
    let at = altered.len() - 3;
    altered[at] ^= 1;
    std::fs::write(&payload_path, &altered).unwrap();
    let root2 = w.work.join("root2");
    let o = unpack_verified(&key, &out, &root2);
    assert_exit(&o, 8);
    assert!(!root2.join("etc/hello").exists(), "nothing extracted");

    // Without a key, unpack does not look at signatures.
    let o = minipull(&["unpack", out.to_str().unwrap(), root2.to_str().unwrap()], None);
    assert_exit(&o, 0);
}

#[test]
fn every_way_of_not_being_signed_is_refused_before_any_layer() {
    let w = World::new();
    let key = keygen(w.work.path(), "vendor", false);
    let other = keygen(w.work.path(), "other", false);
    let sign = |k: &Key, p: &[u8]| base64_pub(&k.sign(p));
    let host = w.reg.host.clone();

    // Another signed image, whose valid signature an attacker copies.
    let donor = w.image("signed/donor", b"donor\n");
    let donor_payload = payload(&format!("{host}/signed/donor"), &donor);
    let donor_sig = sign(&key, &donor_payload);

    type Case = (&'static str, &'static str, Vec<&'static str>);
    let cases: Vec<Case> = vec![
        ("unsigned", "not found (unsigned?)", vec![]),
        ("wrongkey", "another key", vec![]),
        ("copied", "another digest", vec![]),
        ("tampered", "another key", vec![]),
        ("otherdigest", "another digest", vec![]),
        (
            "identity",
            "--verify-identity requires",
            vec!["--verify-identity", "127.0.0.1:1/some/where"],
        ),
        ("badbase64", "not base64", vec![]),
        ("baddata", "another key", vec![]),
        ("attestation", "an attestation", vec![]),
        ("oversized", "larger than", vec![]),
        ("hugemanifest", "larger than", vec![]),
        ("malformed", "malformed", vec![]),
        ("unknownfield", "unknown field", vec![]),
    ];
    for (i, (case, why, extra)) in cases.iter().enumerate() {
        let repo = format!("refused/{case}");
        let digest = w.image(&repo, format!("image {i}\n").as_bytes());
        let p = payload(&format!("{host}/{repo}"), &digest);
        match *case {
            "unsigned" => {}
            "wrongkey" => push_classic(&w.reg, &repo, &digest, &[(p.clone(), sign(&other, &p))]),
            "copied" => push_classic(&w.reg, &repo, &digest, &[(donor_payload.clone(), donor_sig.clone())]),
            "tampered" => {
                let s = sign(&key, &p);
                let mut t = p.clone();
                t[10] ^= 1;
                push_classic(&w.reg, &repo, &digest, &[(t, s)]);
            }
            "otherdigest" => {
                let q = payload(&format!("{host}/{repo}"), &donor);
                push_classic(&w.reg, &repo, &digest, &[(q.clone(), sign(&key, &q))]);
            }
            "identity" => push_classic(&w.reg, &repo, &digest, &[(p.clone(), sign(&key, &p))]),
            "badbase64" => push_classic(&w.reg, &repo, &digest, &[(p.clone(), "!!not base64!!".into())]),
            "baddata" => push_classic(&w.reg, &repo, &digest, &[(p.clone(), base64_pub(b"\x30\x03\x02\x01"))]),
            "attestation" => {
                let b = bundle(&key, &digest, "https://slsa.dev/provenance/v1");
                let (_, desc) = bundle_manifest(&w.reg, &repo, &b, &digest);
                let idx = json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": [desc]});
                w.reg
                    .push_manifest(&repo, &tag_of(&digest), INDEX, &serde_json::to_vec(&idx).unwrap());
            }
            "oversized" => {
                let big = vec![b' '; 1024 * 1024 + 10];
                let mut q = p.clone();
                q.extend_from_slice(&big);
                push_classic(&w.reg, &repo, &digest, &[(q.clone(), sign(&key, &q))]);
            }
            "hugemanifest" => {
                let config = w
                    .reg
                    .blob_desc(&repo, "application/vnd.oci.image.config.v1+json", b"{}");
                let m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [],
                    "annotations": {"padding": "x".repeat(1024 * 1024 + 10)}});
                let tag = format!("{}.sig", tag_of(&digest));
                w.reg
                    .push_manifest(&repo, &tag, OCI_MANIFEST, &serde_json::to_vec(&m).unwrap());
            }
            "malformed" => {
                let q = b"this is not JSON".to_vec();
                push_classic(&w.reg, &repo, &digest, &[(q.clone(), sign(&key, &q))]);
            }
            "unknownfield" => {
                let mut v: serde_json::Value = serde_json::from_slice(&p).unwrap();
                v["critical"]["extra"] = json!("x");
                let q = serde_json::to_vec(&v).unwrap();
                push_classic(&w.reg, &repo, &digest, &[(q.clone(), sign(&key, &q))]);
            }
            _ => unreachable!(),
        }
        let layers = w.reg.blob_digests(&repo, &digest);
        let out = w.work.join(&format!("out-{case}"));
        let mut args = vec!["--verify-key", key.public()];
        args.extend(extra.iter().copied());
        let o = w.pull(&repo, &out, &args);
        assert_refused(&w, &repo, &o, &layers, why);
        assert!(!out.join("index.json").exists(), "{case}: nothing named in index.json");
    }
}

// Verifies offline with `minipull unpack`.
#[cfg(feature = "unpack")]
#[test]
fn bundles_multi_platform_key_rotation_and_several_signatures() {
    let w = World::new();
    let old = keygen(w.work.path(), "old", false);
    let new = keygen(w.work.path(), "new", true); // Ed25519
    let host = w.reg.host.clone();

    // A bundle through the fallback tag (distribution 2.8 has no referrers API).
    let repo = "signed/bundle";
    let digest = w.image(repo, b"bundle\n");
    let b = bundle(&old, &digest, COSIGN_PREDICATE);
    let (_, desc) = bundle_manifest(&w.reg, repo, &b, &digest);
    let idx = json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": [desc]});
    w.reg
        .push_manifest(repo, &tag_of(&digest), INDEX, &serde_json::to_vec(&idx).unwrap());
    let out = w.work.join("bundle");
    let o = w.pull(repo, &out, &["--verify-key", old.public()]);
    assert_exit(&o, 0);
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["signature"]["format"], "bundle");
    let root = w.work.join("bundle-root");
    let o = minipull(
        &[
            "unpack",
            "--verify-key",
            old.public(),
            out.to_str().unwrap(),
            root.to_str().unwrap(),
        ],
        None,
    );
    assert_exit(&o, 0);

    // A multi-platform index signed (classic, Ed25519); one platform pulled;
    // two keys given where only the second matches; the signature tag holds
    // a bad signature before the good one.
    let repo = "signed/multi";
    let (amd, amd_bytes) = w
        .reg
        .push_image(repo, "amd", &Image::new("amd64", vec![gz_layer(&[("a", b"amd")])]));
    let (arm, arm_bytes) = w
        .reg
        .push_image(repo, "arm", &Image::new("arm64", vec![gz_layer(&[("a", b"arm")])]));
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": amd, "size": amd_bytes.len(), "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": OCI_MANIFEST, "digest": arm, "size": arm_bytes.len(), "platform": {"os": "linux", "architecture": "arm64"}}
        ]
    }))
    .unwrap();
    let top = w.reg.push_manifest(repo, "v1", INDEX, &index);
    let p = payload(&format!("{host}/{repo}"), &top);
    let bad = base64_pub(&old.sign(b"something else"));
    push_classic(
        &w.reg,
        repo,
        &top,
        &[(p.clone(), bad), (p.clone(), base64_pub(&new.sign(&p)))],
    );
    let out = w.work.join("multi");
    let o = w.pull(
        repo,
        &out,
        &[
            "--platform",
            "linux/arm64",
            "--verify-key",
            old.public(),
            "--verify-key",
            new.public(),
            "--verify-identity",
            &format!("{host}/{repo}"),
        ],
    );
    assert_exit(&o, 0);
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["digest"], arm.as_str());
    assert_eq!(summary["signature"]["digest"], top.as_str());
    assert_index_points_at_blobs(&out);
    // Offline, the stored index binds the signed digest to the platform manifest.
    let root = w.work.join("multi-root");
    let o = minipull_env(
        &[
            "unpack",
            "--platform",
            "linux/arm64",
            out.to_str().unwrap(),
            root.to_str().unwrap(),
        ],
        None,
        &[(
            "MINIPULL_VERIFY_KEY",
            &format!("/nonexistent-is-skipped-no:{}", new.public()),
        )],
    );
    // A key path that does not exist is a usage error, before anything.
    assert_exit(&o, 2);
    let o = minipull_env(
        &[
            "unpack",
            "--platform",
            "linux/arm64",
            out.to_str().unwrap(),
            root.to_str().unwrap(),
        ],
        None,
        &[("MINIPULL_VERIFY_KEY", &format!("{}:{}", old.public(), new.public()))],
    );
    assert_exit(&o, 0);
    assert_eq!(std::fs::read(root.join("a")).unwrap(), b"arm");

    // A signature on the chosen platform manifest alone is accepted too.
    let repo = "signed/platform";
    let (amd, amd_bytes) = w
        .reg
        .push_image(repo, "amd", &Image::new("amd64", vec![gz_layer(&[("a", b"amd")])]));
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": amd, "size": amd_bytes.len(), "platform": {"os": "linux", "architecture": "amd64"}}]
    }))
    .unwrap();
    w.reg.push_manifest(repo, "v1", INDEX, &index);
    let p = payload(&format!("{host}/{repo}"), &amd);
    push_classic(&w.reg, repo, &amd, &[(p.clone(), base64_pub(&new.sign(&p)))]);
    let o = w.pull(
        repo,
        &w.work.join("platform"),
        &["--platform", "linux/amd64", "--verify-key", new.public()],
    );
    assert_exit(&o, 0);
}

#[test]
fn bundle_through_the_referrers_api() {
    use common::fault::{FaultServer, Faults};
    let work = TempDir::new("sig-referrers");
    let key = keygen(work.path(), "vendor", false);
    let server = FaultServer::start(Faults::default());
    let repo = "signed/api";
    let (digest, layer) = server.add_image(repo, "v1", b"layer bytes".to_vec());
    let b = bundle(&key, &digest, COSIGN_PREDICATE);
    let bd = sha256(&b);
    server.add_blob(&bd, b.clone());
    let empty = sha256(b"{}");
    server.add_blob(&empty, b"{}".to_vec());
    let m = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": BUNDLE,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": BUNDLE, "digest": bd, "size": b.len()}]
    }))
    .unwrap();
    let md = sha256(&m);
    server.add_manifest(repo, &md, OCI_MANIFEST, &m);
    let idx = json!({"schemaVersion": 2, "mediaType": INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": md, "size": m.len(), "artifactType": BUNDLE}]});
    server.add_manifest(
        repo,
        &format!("referrers/{digest}"),
        INDEX,
        &serde_json::to_vec(&idx).unwrap(),
    );

    let out = work.join("layout");
    let r = format!("{}/{repo}:v1", server.host);
    let o = minipull(
        &[
            "--plain-http",
            "--json",
            "--verify-key",
            key.public(),
            &r,
            out.to_str().unwrap(),
        ],
        None,
    );
    assert_exit(&o, 0);
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["signature"]["format"], "bundle");
    assert!(!server.requests("/referrers/").is_empty());
    let fallback = format!("manifests/{}", tag_of(&digest));
    assert!(
        !server.requests(&fallback).iter().any(|r| r.path.ends_with(&fallback)),
        "no fallback tag when the API answers"
    );
    assert!(blob_path(&out, &layer).exists());
}

#[test]
fn a_key_that_cannot_be_parsed_is_a_usage_error_before_any_network() {
    let work = TempDir::new("sig-badkey");
    let bad = work.join("bad.pub");
    std::fs::write(
        &bad,
        "-----BEGIN PUBLIC KEY-----\nnot base64!\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    // Port 9 on 127.0.0.1: nothing listens; a network attempt would be exit 5.
    let o = minipull(
        &[
            "--plain-http",
            "--verify-key",
            bad.to_str().unwrap(),
            "127.0.0.1:9/x/y:v1",
            work.join("o").to_str().unwrap(),
        ],
        None,
    );
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("not a usable public key"), "{}", stderr(&o));
}

#[test]
fn no_downgrade_refuses_an_older_validly_signed_image() {
    let w = World::new();
    let key = keygen(w.work.path(), "vendor", false);
    let repo = "signed/rollback";
    let host = w.reg.host.clone();
    let push = |created: &str, text: &[u8]| {
        let layer = gz_layer(&[("etc/version", text)]);
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64", "os": "linux", "created": created,
            "rootfs": {"type": "layers", "diff_ids": [sha256(&layer.tar)]}
        }))
        .unwrap();
        let mut img = Image::new("amd64", vec![layer]);
        img.config = Some(config);
        let (d, _) = w.reg.push_image(repo, "v1", &img);
        let p = payload(&format!("{host}/{repo}"), &d);
        push_classic(&w.reg, repo, &d, &[(p.clone(), base64_pub(&key.sign(&p)))]);
        d
    };
    let out = w.work.join("layout");
    let args = ["--verify-key", key.public(), "--no-downgrade"];
    let new = push("2025-06-01T00:00:00Z", b"2\n");
    assert_exit(&w.pull(repo, &out, &args), 0);
    // A mirror (or the registry) serves the older release, validly signed.
    let old = push("2025-01-01T12:00:00+01:00", b"1\n");
    let o = w.pull(repo, &out, &args);
    assert_exit(&o, 8);
    assert!(stderr(&o).contains("older"), "{}", stderr(&o));
    let index = read_json(&out.join("index.json"));
    let names_new = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["digest"] == new.as_str());
    let names_old = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["digest"] == old.as_str());
    assert!(names_new && !names_old, "the installed image stays: {index}");
    // Without the flag the older image is accepted (its signature is valid).
    assert_exit(&w.pull(repo, &out, &["--verify-key", key.public()]), 0);
}

/// `--time-floor` rises to the `created` of a config a verified signature
/// binds, and not to that of an unsigned image (the registry alone could
/// then push the floor past every certificate's notAfter).
#[test]
fn time_floor_rises_to_a_signed_config_created_only() {
    let w = World::new();
    let key = keygen(w.work.path(), "vendor", false);
    let host = w.reg.host.clone();
    let push = |repo: &str, created: &str, signed: bool| {
        let layer = gz_layer(&[("etc/version", created.as_bytes())]);
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64", "os": "linux", "created": created,
            "rootfs": {"type": "layers", "diff_ids": [sha256(&layer.tar)]}
        }))
        .unwrap();
        let mut img = Image::new("amd64", vec![layer]);
        img.config = Some(config);
        let (d, _) = w.reg.push_image(repo, "v1", &img);
        if signed {
            let p = payload(&format!("{host}/{repo}"), &d);
            push_classic(&w.reg, repo, &d, &[(p.clone(), base64_pub(&key.sign(&p)))]);
        }
    };
    let floor = w.work.join("floor");
    let f = floor.to_str().unwrap();
    push("signed/floor", "2025-06-01T00:00:00Z", true);
    let o = w.pull(
        "signed/floor",
        &w.work.join("a"),
        &["--verify-key", key.public(), "--time-floor", f],
    );
    assert_exit(&o, 0);
    assert_eq!(std::fs::read_to_string(&floor).unwrap(), "1748736000\n");
    // An unsigned image, newer: pulled, and the floor stays.
    push("plain/floor", "2025-09-01T00:00:00Z", false);
    assert_exit(&w.pull("plain/floor", &w.work.join("b"), &["--time-floor", f]), 0);
    assert_eq!(std::fs::read_to_string(&floor).unwrap(), "1748736000\n");
}

/// A validly signed config `created` of 2099 (a signer's mistake, or a
/// stolen key) does not raise `--time-floor`: the floor would make every
/// certificate look expired until then. A `created` in the past still does.
#[test]
fn time_floor_ignores_a_signed_created_far_ahead_of_every_other_time() {
    let w = World::new();
    let key = keygen(w.work.path(), "vendor", false);
    let host = w.reg.host.clone();
    let repo = "signed/future";
    let push = |created: &str| {
        let layer = gz_layer(&[("etc/version", created.as_bytes())]);
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64", "os": "linux", "created": created,
            "rootfs": {"type": "layers", "diff_ids": [sha256(&layer.tar)]}
        }))
        .unwrap();
        let mut img = Image::new("amd64", vec![layer]);
        img.config = Some(config);
        let (d, _) = w.reg.push_image(repo, "v1", &img);
        let p = payload(&format!("{host}/{repo}"), &d);
        push_classic(&w.reg, repo, &d, &[(p.clone(), base64_pub(&key.sign(&p)))]);
    };
    let floor = w.work.join("floor");
    let f = floor.to_str().unwrap();
    let args = ["--verify-key", key.public(), "--time-floor", f];
    push("2099-01-01T00:00:00Z");
    assert_exit(&w.pull(repo, &w.work.join("a"), &args), 0);
    assert!(
        !floor.exists(),
        "the floor rose to a signed created of 2099: {:?}",
        std::fs::read_to_string(&floor)
    );
    push("2025-06-01T00:00:00Z");
    assert_exit(&w.pull(repo, &w.work.join("b"), &args), 0);
    assert_eq!(std::fs::read_to_string(&floor).unwrap(), "1748736000\n");
}

#[test]
fn a_mirror_without_the_signature_falls_back_to_the_registry() {
    let w = World::new();
    let key = keygen(w.work.path(), "vendor", false);
    let mirror_log = w.work.join("mirror.log");
    let mirror = Registry::start_setup(Setup {
        access_log: Some(mirror_log.clone()),
        ..Setup::default()
    });
    let repo = "signed/mirrored";
    let img = Image::new("amd64", vec![gz_layer(&[("etc/hello", b"mirrored\n")])]);
    let (digest, _) = w.reg.push_image(repo, "v1", &img);
    assert_eq!(
        mirror.push_image(repo, "v1", &img).0,
        digest,
        "the mirror holds the image, not its signature"
    );
    let p = payload(&format!("{}/{repo}", w.reg.host), &digest);
    push_classic(&w.reg, repo, &digest, &[(p.clone(), base64_pub(&key.sign(&p)))]);

    let out = w.work.join("layout");
    let o = w.pull(
        repo,
        &out,
        &[
            "--mirror",
            &mirror.host,
            "--mirror-for",
            &w.reg.host,
            "--verify-key",
            key.public(),
        ],
    );
    assert_exit(&o, 0);
    let sig_tag = format!("manifests/{}.sig", tag_of(&digest));
    let asked = |log: &Path| {
        std::fs::read_to_string(log)
            .unwrap()
            .lines()
            .filter(|l| l.contains(&sig_tag))
            .count()
    };
    assert!(asked(&mirror_log) >= 1, "the mirror was asked first");
    assert!(asked(&w.log) >= 1, "then the registry");
    // The layers still came from the mirror.
    assert!(w
        .blob_gets(repo)
        .iter()
        .all(|g| !g.contains(&w.reg.blob_digests(repo, &digest)[1])));
}

/// A signed release replaced by an unsigned one with --prune (no key): its
/// signature entry, now signing nothing, is dropped from index.json and its
/// blobs removed, and the pull succeeds (it failed with exit 7 after the
/// swap: index.json was rewritten through a work directory already tidied).
#[cfg(feature = "unpack")]
#[test]
fn prune_drops_the_signature_of_the_replaced_image() {
    let w = World::new();
    let key = keygen(w.work.path(), "vendor", false);
    let repo = "signed/prune";
    let d1 = w.image(repo, b"one\n");
    let p = payload(&format!("{}/{repo}", w.reg.host), &d1);
    push_classic(&w.reg, repo, &d1, &[(p.clone(), base64_pub(&key.sign(&p)))]);
    let out = w.work.join("layout");
    let root = w.work.join("root");
    let root_s = root.to_str().unwrap();
    assert_exit(
        &w.pull(repo, &out, &["--verify-key", key.public(), "--unpack", root_s]),
        0,
    );
    w.image(repo, b"two\n");
    let o = w.pull(repo, &out, &["--prune", "--force", "--keep-old", "--unpack", root_s]);
    assert_exit(&o, 0);
    assert_eq!(std::fs::read(root.join("etc/hello")).unwrap(), b"two\n");
    let index = read_json(&out.join("index.json"));
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "the orphaned signature entry is gone: {index}");
    assert!(
        !blob_path(&out, &sha256(&p)).exists(),
        "the old signature's payload is pruned"
    );
    assert_index_points_at_blobs(&out);
    assert!(
        !out.join(".minipull").exists(),
        "the work directory is tidied at the end"
    );
}

/// A cut in the prune after index.json dropped the replaced image's
/// signature entry and before its blobs went: the next run still removes
/// them (the prune list names the signature first), so the disk converges
/// to what an uncut update leaves.
#[cfg(feature = "unpack")]
#[test]
fn a_prune_cut_after_the_signature_entry_went_still_removes_its_blobs() {
    if std::env::var_os("MINIPULL_BIN").is_some() {
        eprintln!("skipped: only debug builds honour MINIPULL_TEST_KILL");
        return;
    }
    let w = World::new();
    let key = keygen(w.work.path(), "vendor", false);
    let repo = "signed/prunecut";
    let d1 = w.image(repo, b"one\n");
    let p = payload(&format!("{}/{repo}", w.reg.host), &d1);
    push_classic(&w.reg, repo, &d1, &[(p.clone(), base64_pub(&key.sign(&p)))]);
    let out = w.work.join("layout");
    let root = w.work.join("root");
    let root_s = root.to_str().unwrap();
    assert_exit(
        &w.pull(repo, &out, &["--verify-key", key.public(), "--unpack", root_s]),
        0,
    );
    w.image(repo, b"two\n");
    let r = format!("{}/{repo}:v1", w.reg.host);
    let args = [
        "--plain-http",
        "-q",
        "--prune",
        "--force",
        "--unpack",
        root_s,
        &r,
        out.to_str().unwrap(),
    ];
    let o = std::process::Command::new(minipull_bin())
        .args(args)
        .env("MINIPULL_TEST_KILL", "prune-index")
        .output()
        .unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&o.status),
        Some(9),
        "cut at prune-index"
    );
    let index = read_json(&out.join("index.json"));
    assert_eq!(
        index["manifests"].as_array().unwrap().len(),
        1,
        "the signature entry went: {index}"
    );
    assert!(blob_path(&out, &sha256(&p)).exists(), "cut before the blobs went");
    assert_exit(&minipull(&args, None), 0);
    assert!(
        !blob_path(&out, &sha256(&p)).exists(),
        "the cut prune's signature payload is removed by the next run"
    );
    assert_index_points_at_blobs(&out);
}

/// A hostile registry answers 404 for the classic `.sig` tag (so only a
/// bundle is found) and serves, under the fleet's OS repository, the fleet's
/// debug image with the bundle the fleet key made for *that* repository.
/// `--verify-identity` must hold for bundles too: the bundle's subject name
/// is the repository it was signed for; a bundle without a name (cosign 3)
/// cannot satisfy it. Online and offline (`unpack --verify-identity`).
#[cfg(feature = "unpack")]
#[test]
fn verify_identity_is_not_bypassed_by_a_bundle_signature() {
    let w = World::new();
    let fleet = keygen(w.work.path(), "fleet", false);
    let host = w.reg.host.clone();
    let os = format!("{host}/fleet/os");
    let debug_repo = format!("{host}/fleet/debug");
    let serve = |repo: &str, text: &[u8], name: Option<&str>| {
        let digest = w.image(repo, text);
        let b = bundle_named(&fleet, &digest, COSIGN_PREDICATE, name);
        let (_, desc) = bundle_manifest(&w.reg, repo, &b, &digest);
        let idx = json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": [desc]});
        w.reg
            .push_manifest(repo, &tag_of(&digest), INDEX, &serde_json::to_vec(&idx).unwrap());
        digest
    };
    let identity = ["--verify-key", fleet.public(), "--verify-identity", os.as_str()];
    let cases: [(&str, Option<&str>, &str); 3] = [
        // The debug image's bundle, named for fleet/debug (tag and digest forms ignored).
        ("hostile/named", Some(&debug_repo), "--verify-identity requires"),
        (
            "hostile/tagged",
            Some(&format!("{debug_repo}:v1")),
            "--verify-identity requires",
        ),
        // cosign 3's bundle: a digest, no name.
        ("hostile/nameless", None, "--new-bundle-format=false"),
    ];
    for (i, (repo, name, why)) in cases.iter().enumerate() {
        let digest = serve(repo, format!("debug {i}\n").as_bytes(), *name);
        let layers = w.reg.blob_digests(repo, &digest);
        let out = w.work.join(&format!("out-{i}"));
        let root = w.work.join(&format!("root-{i}"));
        let mut args = identity.to_vec();
        args.extend(["--unpack", root.to_str().unwrap()]);
        let o = w.pull(repo, &out, &args);
        assert_refused(&w, repo, &o, &layers, why);
        assert!(!root.exists(), "{repo}: nothing unpacked");
        assert!(!out.join("index.json").exists(), "{repo}: nothing named in index.json");
        let sig = format!("/manifests/{}.sig HTTP/1.1\" 404", tag_of(&digest));
        assert!(
            w.log_lines().iter().any(|l| l.contains(&sig)),
            "the registry 404s the classic tag"
        );

        // Offline: pulled with the key alone (the bundle is valid for it),
        // then unpacked under the identity policy: refused, nothing extracted.
        assert_exit(&w.pull(repo, &out, &["--verify-key", fleet.public()]), 0);
        let mut args = vec!["unpack"];
        args.extend(identity);
        args.extend([out.to_str().unwrap(), root.to_str().unwrap()]);
        let o = minipull(&args, None);
        assert_exit(&o, 8);
        assert!(stderr(&o).contains(why), "{}", stderr(&o));
        assert!(!root.exists(), "{repo}: nothing unpacked offline");
    }

    // A bundle that names the repository (normalized like a classic
    // docker-reference) is accepted, online and offline.
    let repo = "fleet/os";
    serve(repo, b"os\n", Some(&format!("{os}:v1")));
    let (out, root) = (w.work.join("out-os"), w.work.join("root-os"));
    let mut args = identity.to_vec();
    args.extend(["--unpack", root.to_str().unwrap()]);
    let o = w.pull(repo, &out, &args);
    assert_exit(&o, 0);
    assert_eq!(std::fs::read(root.join("etc/hello")).unwrap(), b"os\n");
    let mut args = vec!["unpack", "--force"];
    args.extend(identity);
    args.extend([out.to_str().unwrap(), root.to_str().unwrap()]);
    assert_exit(&minipull(&args, None), 0);
}

/// The signature manifest (fetched by tag; only its payload is signed)
/// lists, beside a valid signature, blobs of other images with sizes one
/// byte off. Where that disagrees with a blob OUTDIR holds (the signed
/// image's own manifest) the signature manifest is refused (exit 6);
/// where the blob comes later (another image pulled afterwards), the
/// stored signature names only what its proof needs, and `gc` keeps every
/// blob either way.
#[test]
fn signature_manifest_with_wrong_sizes_cannot_make_gc_delete() {
    let w = World::new();
    let key = keygen(w.work.path(), "vendor", false);
    let host = w.reg.host.clone();
    let other_layer = gz_layer(&[("etc/hello", b"other\n")]);
    let other_blob = other_layer.blob.clone();
    // Under another tag: a pull of the same tag would replace the entry.
    w.reg
        .push_image("other/img", "o1", &Image::new("amd64", vec![other_layer]));
    let other_blobs = w.reg.blob_digests("other/img", "o1");

    // A classic signature manifest: the valid signature, then `extra`
    // (descriptor, bytes pushed so the registry accepts the manifest).
    let wrapper = |repo: &str, digest: &str, extra: &[(&str, &[u8])]| {
        let p = payload(&format!("{host}/{repo}"), digest);
        let mut sig = w.reg.blob_desc(repo, SIMPLESIGNING, &p);
        sig["annotations"] = json!({"dev.cosignproject.cosign/signature": base64_pub(&key.sign(&p))});
        let mut layers = vec![sig];
        for (mt, bytes) in extra {
            let mut d = w.reg.blob_desc(repo, mt, bytes);
            d["size"] = (bytes.len() + 1).into();
            layers.push(d);
        }
        let config = w.reg.blob_desc(repo, "application/vnd.oci.image.config.v1+json", b"{}");
        let m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": layers});
        let tag = format!("{}.sig", tag_of(digest));
        w.reg
            .push_manifest(repo, &tag, OCI_MANIFEST, &serde_json::to_vec(&m).unwrap());
    };
    let out = w.work.join("layout");

    // Its own manifest with a wrong size: refused, nothing named.
    let own = "signed/own";
    let d = w.image(own, b"own\n");
    let own_manifest = w.reg.manifest(own, "v1");
    wrapper(own, &d, &[(OCI_MANIFEST, &own_manifest)]);
    let o = w.pull(own, &out, &["--verify-key", key.public()]);
    assert_exit(&o, 6);
    assert!(
        stderr(&o).contains("signature manifest") && stderr(&o).contains(&d),
        "{}",
        stderr(&o)
    );
    assert!(!out.join("index.json").exists(), "nothing recorded");

    // Another image's layer, not in OUTDIR yet: accepted, but not stored.
    let repo = "signed/app";
    let d = w.image(repo, b"signed\n");
    wrapper(repo, &d, &[(OCI_LAYER_GZIP, &other_blob)]);
    let o = w.pull(repo, &out, &["--verify-key", key.public()]);
    assert_exit(&o, 0);
    assert!(
        !blob_path(&out, &sha256(&other_blob)).exists(),
        "only what the proof needs is stored"
    );
    let o = minipull(
        &["--plain-http", &format!("{host}/other/img:o1"), out.to_str().unwrap()],
        None,
    );
    assert_exit(&o, 0);
    let o = minipull(&["gc", out.to_str().unwrap()], None);
    assert_exit(&o, 0);
    for b in &other_blobs {
        assert!(blob_path(&out, b).is_file(), "gc deleted {b}");
    }
    assert!(blob_path(&out, &d).is_file(), "gc deleted the signed manifest");
    assert_index_points_at_blobs(&out);
    assert_blobs_consistent(&out);
    let o = minipull(&["ls", "--json", out.to_str().unwrap()], None);
    assert_exit(&o, 0);
    let ls: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for e in ls.as_array().unwrap() {
        assert_eq!(e["state"], "complete", "{ls}");
    }
}

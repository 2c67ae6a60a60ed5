//! Keyless signatures end to end through the real binary: containers/image's
//! classic keyless vector (a Fulcio certificate logged in Rekor, signed by
//! `mitr@redhat.com` through GitHub's OAuth issuer) served by the in-suite
//! server, checked against sigstore's public-good trusted root, offline
//! (no Fulcio, no Rekor: only the registry on 127.0.0.1).

#![cfg(feature = "keyless")]

mod common;
use common::fault::{FaultServer, Faults};
use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const REPO: &str = "cosign-signed/fulcio-rekor-1";
const SAN: &str = "mitr@redhat.com";
const ISSUER: &str = "https://github.com/login/oauth";

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/keyless")
        .join(name)
}

/// The server with the vector's manifest as `REPO:v1` and its signature
/// rebuilt as cosign's `sha256-<hex>.sig` manifest. Returns the digest.
fn serve(server: &FaultServer) -> String {
    let manifest = std::fs::read(data("fulcio-rekor-valid.manifest.json")).unwrap();
    let digest = sha256(&manifest);
    let docker = "application/vnd.docker.distribution.manifest.v2+json";
    server.add_manifest(REPO, "v1", docker, &manifest);
    server.add_manifest(REPO, &digest, docker, &manifest);
    // containers/image's format: "\0sigstore-json\n" then the layer as JSON.
    let f = std::fs::read(data("fulcio-rekor-valid.signature-1")).unwrap();
    let sig: Value = serde_json::from_slice(&f[15..]).unwrap();
    let payload = base64_decode(sig["payload"].as_str().unwrap());
    let pd = sha256(&payload);
    server.add_blob(&pd, payload.clone());
    let config = b"{}".to_vec();
    let cd = sha256(&config);
    server.add_blob(&cd, config);
    let m = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": 2},
        "layers": [{"mediaType": sig["mimeType"], "digest": pd, "size": payload.len(),
                    "annotations": sig["annotations"]}]
    });
    let m = serde_json::to_vec(&m).unwrap();
    server.add_manifest(REPO, &format!("{}.sig", digest.replace(':', "-")), OCI_MANIFEST, &m);
    digest
}

fn base64_decode(s: &str) -> Vec<u8> {
    let out = run_ok_stdin("base64", &["-d"], s.as_bytes());
    out
}

fn run_ok_stdin(cmd: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut c = std::process::Command::new(cmd)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(input).unwrap();
    let o = c.wait_with_output().unwrap();
    assert!(o.status.success());
    o.stdout
}

/// OUTDIR with the image's config and layer present (right names and
/// sizes; their bytes exist nowhere offline), so the pull fetches none.
fn seeded(work: &TempDir) -> PathBuf {
    let out = work.join("layout");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(data("fulcio-rekor-valid.manifest.json")).unwrap()).unwrap();
    let blobs = out.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let mut ds = vec![&manifest["config"]];
    ds.extend(manifest["layers"].as_array().unwrap());
    for d in ds {
        let hex = d["digest"].as_str().unwrap().strip_prefix("sha256:").unwrap();
        let size = d["size"].as_u64().unwrap() as usize;
        std::fs::write(blobs.join(hex), vec![b' '; size]).unwrap();
    }
    out
}

fn pull(server: &FaultServer, out: &Path, extra: &[&str]) -> std::process::Output {
    let r = format!("{}/{REPO}:v1", server.host);
    let mut args = vec!["--plain-http", "--json"];
    args.extend_from_slice(extra);
    args.push(&r);
    args.push(out.to_str().unwrap());
    minipull(&args, None)
}

fn root(name: &str) -> String {
    data(name).to_str().unwrap().to_string()
}

/// Only the image's manifest and signature material went over the wire.
fn only_signature_material(server: &FaultServer, digest: &str) {
    let sig_tag = format!("{}.sig", digest.replace(':', "-"));
    for l in server.log() {
        let ok = l.path.ends_with("/v2/")
            || l.path.ends_with("/manifests/v1")
            || l.path.ends_with(&format!("/manifests/{digest}"))
            || l.path.ends_with(&format!("/manifests/{sig_tag}"))
            || l.path.contains("/referrers/")
            || l.path.ends_with(&format!("/manifests/{}", digest.replace(':', "-")))
            || (l.path.contains("/blobs/") && !l.path.contains("3b0f78b7") && !l.path.contains("1df32bae"));
        assert!(ok, "fetched before the decision: {} {}", l.method, l.path);
    }
}

#[test]
fn the_classic_keyless_vector_is_accepted_with_its_identity_and_the_public_good_root() {
    let work = TempDir::new("keyless-accept");
    let server = FaultServer::start(Faults::default());
    let digest = serve(&server);
    let out = seeded(&work);
    let trusted = root("trusted_root.json");
    let o = pull(
        &server,
        &out,
        &[
            "--certificate-identity",
            SAN,
            "--certificate-oidc-issuer",
            ISSUER,
            "--trusted-root",
            &trusted,
        ],
    );
    // The decision: accepted, by the certificate's identity.
    let e = stderr(&o);
    assert!(
        e.contains(&format!(
            "signature verified: classic signature of {digest} by {SAN} (issuer {ISSUER})"
        )),
        "{e}"
    );
    // Then the pull goes on to the seeded blobs: the config is always
    // re-hashed, and its bytes exist nowhere offline (the layers are not
    // fetched either: the size matches). Exit 6 here is after the decision.
    assert_exit(&o, 6);
    assert!(e.contains("3b0f78b7") && e.contains("does not match its digest"), "{e}");
    only_signature_material(&server, &digest);
    // The repository the payload names satisfies --verify-identity too; another does not.
    for (repo, code) in [
        ("192.168.64.2:5000/cosign-signed/fulcio-rekor-1", 6),
        ("192.168.64.2:5000/other/os", 8),
    ] {
        let o = pull(
            &server,
            &seeded(&TempDir::new("keyless-accept-repo")),
            &[
                "--certificate-identity",
                SAN,
                "--certificate-oidc-issuer",
                ISSUER,
                "--trusted-root",
                &trusted,
                "--verify-identity",
                repo,
            ],
        );
        assert_exit(&o, code);
    }
}

#[test]
fn the_classic_keyless_vector_is_refused_with_another_identity_issuer_or_root() {
    let server = FaultServer::start(Faults::default());
    let digest = serve(&server);
    let prod = root("trusted_root.json");
    let staging = root("trusted_root_staging.json");
    let cases: [(&str, &str, &str, &str); 5] = [
        ("eve@redhat.com", ISSUER, &prod, "not an identity given"),
        (SAN, "https://accounts.google.com", &prod, "not an identity given"),
        (SAN, "https://github.com/login/oauth2", &prod, "not an identity given"),
        ("mitr@redhat.co", ISSUER, &prod, "not an identity given"),
        (SAN, ISSUER, &staging, "not in the trusted root"),
    ];
    for (i, (san, issuer, root, why)) in cases.iter().enumerate() {
        let work = TempDir::new(&format!("keyless-refuse-{i}"));
        server.clear_log();
        let o = pull(
            &server,
            &work.join("o"),
            &[
                "--certificate-identity",
                san,
                "--certificate-oidc-issuer",
                issuer,
                "--trusted-root",
                root,
            ],
        );
        assert_exit(&o, 8);
        assert!(stderr(&o).contains(why), "{san} {issuer}: {}", stderr(&o));
        only_signature_material(&server, &digest);
        assert!(server.requests("/blobs/sha256:3b0f78b7").is_empty());
    }
    // Any pair of several suffices.
    let work = TempDir::new("keyless-pairs");
    let o = pull(
        &server,
        &work.join("o"),
        &[
            "--certificate-identity",
            "x@y.z",
            "--certificate-oidc-issuer",
            ISSUER,
            "--trusted-root",
            &prod,
            "--certificate-identity",
            SAN,
            "--certificate-oidc-issuer",
            ISSUER,
        ],
    );
    // Any pair suffices; a seeded OUTDIR is not needed to see the decision.
    assert!(stderr(&o).contains("signature verified"), "{}", stderr(&o));
}

#[test]
fn usage_errors_come_before_any_network() {
    let work = TempDir::new("keyless-usage");
    let prod = root("trusted_root.json");
    let out = work.join("o");
    let o_str = out.to_str().unwrap();
    // Port 9: nothing listens; a network attempt would be exit 5.
    let r = "127.0.0.1:9/x/y:v1";
    for (args, why) in [
        (
            vec!["--certificate-identity", SAN, "--trusted-root", &prod],
            "0 --certificate-oidc-issuer",
        ),
        (
            vec![
                "--certificate-identity",
                "*",
                "--certificate-oidc-issuer",
                ISSUER,
                "--trusted-root",
                &prod,
            ],
            "prefix ending",
        ),
        (
            vec![
                "--certificate-identity",
                "https://github.com/acme*",
                "--certificate-oidc-issuer",
                ISSUER,
                "--trusted-root",
                &prod,
            ],
            "prefix ending",
        ),
        (
            vec!["--certificate-identity", SAN, "--certificate-oidc-issuer", ISSUER],
            "needs --trusted-root",
        ),
        (vec!["--trusted-root", &prod], "needs --certificate-identity"),
        (
            vec![
                "--verify-identity",
                "https://github.com/acme/os/.github/workflows/r.yml@refs/tags/v1",
                "--certificate-identity",
                SAN,
                "--certificate-oidc-issuer",
                ISSUER,
                "--trusted-root",
                &prod,
            ],
            "--certificate-identity",
        ),
    ] {
        let mut a = vec!["--plain-http"];
        a.extend(args.iter().copied());
        a.push(r);
        a.push(o_str);
        let o = minipull(&a, None);
        assert_exit(&o, 2);
        assert!(stderr(&o).contains(why), "{args:?}: {}", stderr(&o));
    }
    // The environment gives one pair and the root.
    let server = FaultServer::start(Faults::default());
    serve(&server);
    let host = format!("{}/{REPO}:v1", server.host);
    let o = minipull_env(
        &["--plain-http", &host, work.join("env").to_str().unwrap()],
        None,
        &[
            ("MINIPULL_CERTIFICATE_IDENTITY", SAN),
            ("MINIPULL_CERTIFICATE_OIDC_ISSUER", ISSUER),
            ("MINIPULL_TRUSTED_ROOT", &prod),
        ],
    );
    assert!(stderr(&o).contains("signature verified"), "{}", stderr(&o));
}

/// The tests' own sigstore (tests/sigstore.py): a trusted root, and classic
/// keyless signatures made with it.
struct OwnSigstore {
    dir: PathBuf,
}

const WORKFLOW: &str = "https://github.com/acme/os/.github/workflows/release.yml@refs/tags/v1.2";
const ACTIONS: &str = "https://token.actions.githubusercontent.com";

impl OwnSigstore {
    fn new(dir: PathBuf) -> OwnSigstore {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sigstore.py");
        let o = std::process::Command::new("python3")
            .arg(&script)
            .arg("root")
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "sigstore.py root: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        OwnSigstore { dir }
    }

    fn root(&self) -> String {
        self.dir.join("trusted_root.json").to_str().unwrap().to_string()
    }

    /// The annotations of a classic signature layer over `payload`, with
    /// sigstore.py's options for forged parts in `extra`.
    fn sign_with(&self, payload: &[u8], san: &str, issuer: &str, extra: &[&str]) -> Value {
        let p = self.dir.join("payload");
        std::fs::write(&p, payload).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sigstore.py");
        let o = std::process::Command::new("python3")
            .arg(&script)
            .args(["sign", self.dir.to_str().unwrap(), p.to_str().unwrap()])
            .args(["--identity", san, "--issuer", issuer])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "sigstore.py sign: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        serde_json::from_slice(&o.stdout).unwrap()
    }
}

/// Push `repo:v1` (one gzip layer) and a classic keyless signature of it by
/// `san`; returns (image digest, layer digest).
fn push_signed(w: &LoggedRegistry, store: &OwnSigstore, repo: &str, san: &str) -> (String, String) {
    let img = Image::new("amd64", vec![gz_layer(&[("etc/hello", b"signed in CI")])]);
    let layer = sha256(&img.layers[0].blob);
    let digest = w.reg.push_image(repo, "v1", &img).0;
    push_sig(w, store, repo, &digest, &digest, san, &[]);
    (digest, layer)
}

/// Push, under `digest`'s classic signature tag, a keyless signature whose
/// payload names `signed` (sigstore.py options in `extra`).
fn push_sig(
    w: &LoggedRegistry,
    store: &OwnSigstore,
    repo: &str,
    digest: &str,
    signed: &str,
    san: &str,
    extra: &[&str],
) {
    let payload = serde_json::to_vec(&json!({
        "critical": {
            "identity": {"docker-reference": format!("{}/{repo}", w.reg.host)},
            "image": {"docker-manifest-digest": signed},
            "type": "cosign container image signature"
        },
        "optional": null
    }))
    .unwrap();
    let config = w.reg.blob_desc(repo, "application/vnd.oci.image.config.v1+json", b"{}");
    let mut d = w
        .reg
        .blob_desc(repo, "application/vnd.dev.cosign.simplesigning.v1+json", &payload);
    d["annotations"] = store.sign_with(&payload, san, ACTIONS, extra);
    let m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [d]});
    let tag = format!("{}.sig", digest.replace(':', "-"));
    w.reg
        .push_manifest(repo, &tag, OCI_MANIFEST, &serde_json::to_vec(&m).unwrap());
}

/// Each forged or misbound part of a signature from the test's own sigstore
/// is refused with its reason, before any layer is fetched: a SET or an SCT
/// signed by a key that is not the log's, a certificate not valid at the
/// entry's time, and a valid signature of another image under this one's tag.
#[test]
fn forged_parts_from_our_own_sigstore_are_refused_before_any_layer() {
    let w = LoggedRegistry::new("keyless-forged");
    let store = OwnSigstore::new(w.work.join("sigstore"));
    let repo = "acme/forged";
    let (digest, layer) = push_signed(&w, &store, repo, WORKFLOW);
    let other = Image::new("amd64", vec![gz_layer(&[("etc/hello", b"another image")])]);
    let other_digest = w.reg.push_image(repo, "other", &other).0;
    let r = format!("{}/{repo}:v1", w.reg.host);
    let cases: [(&str, &[&str], &str); 4] = [
        (&digest, &["--forge-set"], "SET does not verify"),
        (&digest, &["--forge-sct"], "SCT does not verify"),
        (&digest, &["--cert-offset", "3600"], "at the entry's time"),
        (&other_digest, &[], "a signature for another digest"),
    ];
    for (i, (signed, extra, why)) in cases.iter().enumerate() {
        push_sig(&w, &store, repo, &digest, signed, WORKFLOW, extra);
        let out = w.work.join(&format!("out-{i}"));
        let o = minipull(
            &[
                "--plain-http",
                "--trusted-root",
                &store.root(),
                "--certificate-identity",
                WORKFLOW,
                "--certificate-oidc-issuer",
                ACTIONS,
                &r,
                out.to_str().unwrap(),
            ],
            None,
        );
        assert_exit(&o, 8);
        assert!(
            stderr(&o).contains(why),
            "case {i} ({extra:?}): expected {why:?} in\n{}",
            stderr(&o)
        );
    }
    let gets = w.blob_gets_since(repo, 0);
    assert!(
        !gets.iter().any(|g| g.contains(&layer)),
        "a layer was fetched: {gets:?}"
    );
    // The same pull with an honest signature is accepted (the refusals were the parts).
    push_sig(&w, &store, repo, &digest, &digest, WORKFLOW, &[]);
    let out = w.work.join("honest");
    let o = minipull(
        &[
            "--plain-http",
            "--trusted-root",
            &store.root(),
            "--certificate-identity",
            WORKFLOW,
            "--certificate-oidc-issuer",
            ACTIONS,
            &r,
            out.to_str().unwrap(),
        ],
        None,
    );
    assert_exit(&o, 0);
}

#[cfg(feature = "unpack")]
#[test]
fn an_image_signed_by_our_own_sigstore_is_pulled_unpacked_and_reverified_offline() {
    let w = LoggedRegistry::new("keyless-own");
    let store = OwnSigstore::new(w.work.join("sigstore"));
    let other = OwnSigstore::new(w.work.join("other-sigstore"));
    let repo = "acme/os";
    let (digest, layer) = push_signed(&w, &store, repo, WORKFLOW);
    let r = format!("{}/{repo}:v1", w.reg.host);
    let pull = |out: &Path, root: &str, san: &str, issuer: &str| {
        let rootfs = out.with_extension("rootfs");
        minipull(
            &[
                "--plain-http",
                "--json",
                "--trusted-root",
                root,
                "--certificate-identity",
                san,
                "--certificate-oidc-issuer",
                issuer,
                "--unpack",
                rootfs.to_str().unwrap(),
                &r,
                out.to_str().unwrap(),
            ],
            None,
        )
    };

    // Refusals first: nothing but signature material is fetched.
    let pattern = "https://github.com/acme/os/.github/workflows/release.yml@refs/tags/*";
    let refusals: [(&str, &str, &str, &str); 4] = [
        (
            &store.root(),
            "https://github.com/acme/os/.github/workflows/nightly.yml@refs/heads/main",
            ACTIONS,
            "not an identity",
        ),
        (
            &store.root(),
            "https://github.com/acme/os-evil/*",
            ACTIONS,
            "not an identity",
        ),
        (&store.root(), pattern, "https://accounts.google.com", "not an identity"),
        (&other.root(), pattern, ACTIONS, "not in the trusted root"),
    ];
    for (i, (root, san, issuer, why)) in refusals.iter().enumerate() {
        let out = w.work.join(&format!("refused-{i}"));
        let o = pull(&out, root, san, issuer);
        assert_exit(&o, 8);
        assert!(
            stderr(&o).contains(why),
            "case {i}: expected {why:?} in\n{}",
            stderr(&o)
        );
        assert!(!out.with_extension("rootfs").join("etc/hello").exists());
    }
    let gets = w.blob_gets_since(repo, 0);
    assert!(
        !gets.iter().any(|g| g.contains(&layer)),
        "a layer was fetched before the decision: {gets:?}"
    );

    // The workflow's tag pattern and the issuer: accepted, unpacked.
    let out = w.work.join("out");
    let o = pull(&out, &store.root(), pattern, ACTIONS);
    assert_exit(&o, 0);
    let rootfs = out.with_extension("rootfs");
    assert_eq!(std::fs::read(rootfs.join("etc/hello")).unwrap(), b"signed in CI");
    let v = common::schema::conforms(&o, "pull");
    let sig = &v["signature"];
    assert_eq!(sig["identity"], json!({"san": WORKFLOW, "issuer": ACTIONS}), "{v:#}");
    assert_eq!(
        (sig["format"].as_str(), sig["digest"].as_str()),
        (Some("classic"), Some(digest.as_str()))
    );
    assert_eq!(sig["logIndex"], 1);
    let t = sig["integratedTime"].as_i64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - 600..=now).contains(&t), "{t} is not the signing time");

    // The stored proof re-verifies offline, with the identity, and not with another.
    let offline = |san: &str, root2: &Path| {
        minipull(
            &[
                "unpack",
                "--trusted-root",
                &store.root(),
                "--certificate-identity",
                san,
                "--certificate-oidc-issuer",
                ACTIONS,
                out.to_str().unwrap(),
                root2.to_str().unwrap(),
            ],
            None,
        )
    };
    let o = offline(pattern, &w.work.join("offline-root"));
    assert_exit(&o, 0);
    assert!(w.work.join("offline-root/etc/hello").exists());
    let o = offline(
        "https://github.com/acme/os/.github/workflows/nightly.yml@*",
        &w.work.join("offline-refused"),
    );
    assert_exit(&o, 8);
    assert!(!w.work.join("offline-refused/etc/hello").exists());
}

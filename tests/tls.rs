//! TLS against the real registry serving HTTPS with a CA made by the test:
//! trusted with --ca-file or the system bundle variable, refused without,
//! and accepted with --insecure only with a loud warning.

mod common;
use common::*;

/// A plain registry to push to, and the same storage served over HTTPS.
fn tls_registry(work: &TempDir) -> (Registry, Registry, TestCa, String) {
    let plain = Registry::start(Auth::None);
    let image = Image::new("amd64", vec![gz_layer(&[("etc/tls.txt", b"over tls\n")])]);
    let (digest, _) = plain.push_image("secure/app", "v1", &image);
    let ca = make_ca(work.path(), "tls");
    let tls = Registry::start_setup(Setup {
        tls: Some((ca.cert.clone(), ca.key.clone())),
        data: Some(plain.data_dir()),
        ..Setup::default()
    });
    (plain, tls, ca, digest)
}

#[test]
fn private_ca_trusted_with_ca_file_refused_without() {
    let work = TempDir::new("tls");
    let (_plain, reg, ca, digest) = tls_registry(&work);
    let r = format!("{}/secure/app:v1", reg.host);

    // No trust for the private CA: exit 5 at once, naming the certificate problem.
    let out = work.join("refused");
    let o = minipull(&[&r, out.to_str().unwrap()], None);
    assert_exit(&o, 5);
    let err = stderr(&o);
    assert!(err.contains("certificate") || err.contains("Certificate"), "{err}");
    assert!(err.contains("--ca-file"), "{err}");
    assert!(!out.join("index.json").exists());

    // --ca-file: verified, pulled, valid.
    let out = work.join("ca-file");
    let o = minipull(&["--ca-file", ca.ca.to_str().unwrap(), &r, out.to_str().unwrap()], None);
    assert_exit(&o, 0);
    assert_eq!(stdout(&o).trim(), digest);
    assert!(!stderr(&o).contains("WARNING"));
    run_ok(
        "oci-image-tool",
        &["validate", "--type", "image", "--ref", "name=v1", out.to_str().unwrap()],
    );

    // The same CA as the system bundle (SSL_CERT_FILE), no flag.
    let out = work.join("ssl-cert-file");
    let o = minipull_env(
        &[&r, out.to_str().unwrap()],
        None,
        &[("SSL_CERT_FILE", ca.ca.to_str().unwrap())],
    );
    assert_exit(&o, 0);

    // A CA that did not sign the certificate does not help.
    let other = make_ca(work.path(), "other");
    let out = work.join("other-ca");
    let o = minipull(
        &["--ca-file", other.ca.to_str().unwrap(), &r, out.to_str().unwrap()],
        None,
    );
    assert_exit(&o, 5);
}

#[test]
fn insecure_pulls_with_a_loud_warning() {
    let work = TempDir::new("tls-insecure");
    let (_plain, reg, _ca, digest) = tls_registry(&work);
    let r = format!("{}/secure/app:v1", reg.host);
    let out = work.join("insecure");
    // Even with -q the warning is printed.
    let o = minipull(&["-q", "--insecure", &r, out.to_str().unwrap()], None);
    assert_exit(&o, 0);
    assert_eq!(stdout(&o).trim(), digest);
    let err = stderr(&o);
    assert!(err.contains("WARNING") && err.contains("NOT verified"), "{err}");
    assert_eq!(assert_blobs_consistent(&out), 3);
}

#[test]
fn bad_ca_files_are_usage_errors() {
    let work = TempDir::new("tls-bad");
    let junk = work.join("junk.pem");
    std::fs::write(&junk, "this is not a certificate\n").unwrap();
    for path in [junk.to_str().unwrap(), "/nonexistent/ca.pem"] {
        let out = work.join("out");
        let o = minipull(&["--ca-file", path, "127.0.0.1:1/a/b:c", out.to_str().unwrap()], None);
        assert_exit(&o, 2);
        assert!(stderr(&o).contains(path), "{}", stderr(&o));
        assert!(!out.exists(), "nothing is created on a usage error");
    }
}

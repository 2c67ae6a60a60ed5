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
    oci_validate(&out, "v1");

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

#[test]
fn a_certificate_not_valid_yet_is_refused_with_both_dates() {
    let work = TempDir::new("tls-dates");
    let (plain, _tls, ca, _) = tls_registry(&work);
    // The same CA signs a server certificate valid only from 3 days hence
    // (openssl req cannot set a start date; Python's cryptography can).
    let future = work.join("future-cert.pem");
    let script = r#"
import datetime, ipaddress, sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
ca_cert = x509.load_pem_x509_certificate(open(sys.argv[1], "rb").read())
ca_key = serialization.load_pem_private_key(open(sys.argv[2], "rb").read(), None)
key = serialization.load_pem_private_key(open(sys.argv[3], "rb").read(), None)
now = datetime.datetime.now(datetime.timezone.utc)
cert = (x509.CertificateBuilder()
    .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
    .issuer_name(ca_cert.subject).public_key(key.public_key())
    .serial_number(x509.random_serial_number())
    .not_valid_before(now + datetime.timedelta(days=3))
    .not_valid_after(now + datetime.timedelta(days=10))
    .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
    .sign(ca_key, hashes.SHA256()))
open(sys.argv[4], "wb").write(cert.public_bytes(serialization.Encoding.PEM))
"#;
    let ca_key = work.join("tls-ca.key");
    run_ok(
        "python3",
        &[
            "-c",
            script,
            ca.ca.to_str().unwrap(),
            ca_key.to_str().unwrap(),
            ca.key.to_str().unwrap(),
            future.to_str().unwrap(),
        ],
    );
    let reg = Registry::start_setup(Setup {
        tls: Some((future, ca.key.clone())),
        data: Some(plain.data_dir()),
        ..Setup::default()
    });
    let out = work.join("out");
    let r = format!("{}/secure/app:v1", reg.host);
    let o = minipull(&["--ca-file", ca.ca.to_str().unwrap(), &r, out.to_str().unwrap()], None);
    assert_exit(&o, 5);
    let err = stderr(&o);
    assert!(err.contains("valid only from") && err.contains("clock reads"), "{err}");
    assert!(
        !err.contains("--ca-file CA.pem"),
        "the CA was given; the clock is the problem: {err}"
    );
}

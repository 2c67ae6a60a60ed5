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

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A floor file as `--time-floor` wants it: root's (the tests run as
/// root), writable by no one else.
fn write_floor(path: &std::path::Path, t: u64, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("{t}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn read_floor(path: &std::path::Path) -> u64 {
    std::fs::read_to_string(path).unwrap().trim().parse().unwrap()
}

/// A device whose clock is behind (or reads 1970) judges certificates no
/// earlier than the floor: one that expired before it is refused.
#[test]
fn time_floor_after_the_certificate_expired_refuses_it() {
    let work = TempDir::new("tls-floor-expired");
    let (_plain, reg, ca, _) = tls_registry(&work);
    let r = format!("{}/secure/app:v1", reg.host);
    let floor = work.join("floor");
    // The server certificate is valid for 2 days from now.
    let at = unix_now() + 5 * 86_400;
    write_floor(&floor, at, 0o644);
    let out = work.join("out");
    let ca_s = ca.ca.to_str().unwrap();
    let o = minipull(
        &[
            "--time-floor",
            floor.to_str().unwrap(),
            "--ca-file",
            ca_s,
            &r,
            out.to_str().unwrap(),
        ],
        None,
    );
    assert_exit(&o, 5);
    let err = stderr(&o);
    assert!(err.contains("expired") && err.contains("judged as of"), "{err}");
    // The warning says why certificates are not judged as of the clock.
    assert!(
        err.contains("before the time floor in") && err.contains("floor"),
        "{err}"
    );
    assert!(!out.join("index.json").exists());
    assert_eq!(read_floor(&floor), at, "a refused pull leaves the floor alone");
}

/// A floor others may write (or a link) is no floor: ignored, with a warning.
#[test]
fn time_floor_writable_by_group_is_ignored_with_a_warning() {
    let work = TempDir::new("tls-floor-mode");
    let (_plain, reg, ca, digest) = tls_registry(&work);
    let r = format!("{}/secure/app:v1", reg.host);
    let ca_s = ca.ca.to_str().unwrap();
    let floor = work.join("floor");
    let at = unix_now() + 5 * 86_400;
    write_floor(&floor, at, 0o664);
    let link = work.join("floor-link");
    let target = work.join("floor-target");
    write_floor(&target, at, 0o644);
    std::os::unix::fs::symlink(&target, &link).unwrap();
    for (f, why) in [(&floor, "group or others may write it"), (&link, "symbolic link")] {
        let out = work.join(&format!("out-{why}"));
        let o = minipull(
            &[
                "--time-floor",
                f.to_str().unwrap(),
                "--ca-file",
                ca_s,
                &r,
                out.to_str().unwrap(),
            ],
            None,
        );
        assert_exit(&o, 0);
        assert_eq!(stdout(&o).trim(), digest);
        let err = stderr(&o);
        assert!(
            err.contains("warning: --time-floor") && err.contains("ignored") && err.contains(why),
            "{err}"
        );
        // Ignored means not rewritten either.
        assert_eq!(read_floor(f), at);
    }
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
}

/// After a verified pull the floor holds a time the pull verified (the
/// server certificate's notBefore here), never the clock, and never moves
/// backward.
#[test]
fn time_floor_rises_to_verified_times_only_and_never_back() {
    use std::os::unix::fs::MetadataExt;
    let work = TempDir::new("tls-floor-raise");
    let (_plain, reg, ca, _) = tls_registry(&work);
    let r = format!("{}/secure/app:v1", reg.host);
    let ca_s = ca.ca.to_str().unwrap();
    let start = run_ok(
        "openssl",
        &["x509", "-noout", "-startdate", "-in", ca.cert.to_str().unwrap()],
    );
    let start = start.trim().trim_start_matches("notBefore=");
    let not_before: u64 = run_ok("date", &["-u", "-d", start, "+%s"]).trim().parse().unwrap();
    let floor = work.join("floor");
    let o = minipull(
        &[
            "--time-floor",
            floor.to_str().unwrap(),
            "--ca-file",
            ca_s,
            &r,
            work.join("a").to_str().unwrap(),
        ],
        None,
    );
    assert_exit(&o, 0);
    let t = read_floor(&floor);
    assert!(t >= not_before && t <= unix_now(), "floor {t}, notBefore {not_before}");
    let m = std::fs::metadata(&floor).unwrap();
    assert_eq!((m.uid(), m.mode() & 0o777), (0, 0o644));
    assert!(!work.join(".floor.tmp").exists());
    // A floor ahead of everything this pull verifies stays where it is.
    let ahead = unix_now() + 86_400;
    write_floor(&floor, ahead, 0o644);
    let o = minipull(
        &[
            "--time-floor",
            floor.to_str().unwrap(),
            "--ca-file",
            ca_s,
            &r,
            work.join("b").to_str().unwrap(),
        ],
        None,
    );
    assert_exit(&o, 0);
    assert_eq!(read_floor(&floor), ahead);
    // `check` verifies the chain too: it raises a floor behind it.
    write_floor(&floor, 1_000_000_000, 0o644);
    let o = minipull(
        &[
            "check",
            "--time-floor",
            floor.to_str().unwrap(),
            "--ca-file",
            ca_s,
            &r,
            work.join("a").to_str().unwrap(),
        ],
        None,
    );
    assert_exit(&o, 0);
    assert_eq!(read_floor(&floor), t);
    // Without TLS nothing is verified that could raise it.
    std::fs::remove_file(&floor).unwrap();
    let o = minipull(
        &[
            "--time-floor",
            floor.to_str().unwrap(),
            "--plain-http",
            &format!("{}/secure/app:v1", _plain.host),
            work.join("c").to_str().unwrap(),
        ],
        None,
    );
    assert_exit(&o, 0);
    assert!(!floor.exists(), "a plain-HTTP pull wrote a floor");
}

/// A server that offers only X25519 for the key exchange (minipull offers
/// P-256 and P-384): refused at the handshake with a hint that says so.
#[test]
fn a_server_with_x25519_alone_is_refused_with_a_hint_naming_the_groups() {
    let work = TempDir::new("tls-x25519");
    let ca = make_ca(work.path(), "x25519");
    let port = free_port();
    let mut server = std::process::Command::new("openssl")
        .args(["s_server", "-quiet", "-www", "-groups", "X25519", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(&ca.cert)
        .arg("-key")
        .arg(&ca.key)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "openssl s_server did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = work.join("out");
    let r = format!("127.0.0.1:{port}/any/image:v1");
    let o = minipull(
        &[
            "--ca-file",
            ca.ca.to_str().unwrap(),
            "--retry-for",
            "0",
            &r,
            out.to_str().unwrap(),
        ],
        None,
    );
    let _ = server.kill();
    let _ = server.wait();
    assert_exit(&o, 5);
    let err = stderr(&o);
    assert!(err.contains("P-256"), "{err}");
    assert!(!out.join("index.json").exists());
}

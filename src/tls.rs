//! Which certificates we trust: Mozilla's roots built into the binary (an
//! initramfs has no CA bundle), the system bundle when there is one, and the
//! user's own CA files for private registries.

use crate::error::{Error, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme, StreamOwned};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, Transport, TransportAdapter,
};

/// Bundles of the common distributions, tried in order when `SSL_CERT_FILE` is not set.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt", // Debian, Ubuntu, Alpine, Arch
    "/etc/pki/tls/certs/ca-bundle.crt",   // Fedora, RHEL
    "/etc/ssl/ca-bundle.pem",             // openSUSE
    "/etc/ssl/cert.pem",                  // Alpine, macOS, BSDs
];
/// A bigger "bundle" is not one.
const MAX_BUNDLE_BYTES: u64 = 16 * 1024 * 1024;

/// What the user asked for.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// PEM files with extra CA certificates (`--ca-file`).
    pub ca_files: Vec<PathBuf>,
    /// Skip certificate verification (`--insecure`).
    pub insecure: bool,
}

/// The cipher suites we offer. On x86_64 every CPU has AES-NI, where
/// AES-GCM is the faster choice and what servers pick first anyway, so the
/// ChaCha20-Poly1305 suites are left out: 38 KiB of ring's code. On ARM
/// and riscv64 boards without AES instructions ChaCha20 is much faster, so
/// they keep rustls's full list.
/// What webpki verifies with ring: the same table as rustls's ring provider.
static SIGNATURE_ALGORITHMS: rustls::crypto::WebPkiSupportedAlgorithms = {
    use rustls::SignatureScheme as S;
    use webpki::ring as w;
    rustls::crypto::WebPkiSupportedAlgorithms {
        all: &[
            w::ECDSA_P256_SHA256,
            w::ECDSA_P256_SHA384,
            w::ECDSA_P384_SHA256,
            w::ECDSA_P384_SHA384,
            w::ED25519,
            w::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
            w::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
            w::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
            w::RSA_PKCS1_2048_8192_SHA256,
            w::RSA_PKCS1_2048_8192_SHA384,
            w::RSA_PKCS1_2048_8192_SHA512,
            w::RSA_PKCS1_2048_8192_SHA256_ABSENT_PARAMS,
            w::RSA_PKCS1_2048_8192_SHA384_ABSENT_PARAMS,
            w::RSA_PKCS1_2048_8192_SHA512_ABSENT_PARAMS,
        ],
        mapping: &[
            // For TLS 1.2 the curve is not fixed by the scheme; for TLS 1.3 it is.
            (S::ECDSA_NISTP384_SHA384, &[w::ECDSA_P384_SHA384, w::ECDSA_P256_SHA384]),
            (S::ECDSA_NISTP256_SHA256, &[w::ECDSA_P256_SHA256, w::ECDSA_P384_SHA256]),
            (S::ED25519, &[w::ED25519]),
            (S::RSA_PSS_SHA512, &[w::RSA_PSS_2048_8192_SHA512_LEGACY_KEY]),
            (S::RSA_PSS_SHA384, &[w::RSA_PSS_2048_8192_SHA384_LEGACY_KEY]),
            (S::RSA_PSS_SHA256, &[w::RSA_PSS_2048_8192_SHA256_LEGACY_KEY]),
            (S::RSA_PKCS1_SHA512, &[w::RSA_PKCS1_2048_8192_SHA512]),
            (S::RSA_PKCS1_SHA384, &[w::RSA_PKCS1_2048_8192_SHA384]),
            (S::RSA_PKCS1_SHA256, &[w::RSA_PKCS1_2048_8192_SHA256]),
        ],
    }
};

/// Randomness for TLS from the kernel, through ring (as rustls's provider does).
#[derive(Debug)]
struct SystemRandom;

impl rustls::crypto::SecureRandom for SystemRandom {
    fn fill(&self, buf: &mut [u8]) -> std::result::Result<(), rustls::crypto::GetRandomFailed> {
        use ring::rand::SecureRandom;
        ring::rand::SystemRandom::new()
            .fill(buf)
            .map_err(|_| rustls::crypto::GetRandomFailed)
    }
}

fn cipher_suites() -> Vec<rustls::SupportedCipherSuite> {
    use rustls::crypto::ring::cipher_suite as cs;
    let mut suites = vec![
        cs::TLS13_AES_256_GCM_SHA384,
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ];
    if !cfg!(target_arch = "x86_64") {
        suites.extend([
            cs::TLS13_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ]);
    }
    suites
}

/// Build the TLS settings for the agents. Returns the config and a line
/// saying where the trusted roots came from.
pub fn config(opts: &TlsOptions) -> Result<(Arc<ClientConfig>, String)> {
    // rustls's ring provider, built by hand so that its cipher suite list
    // (and the code of suites we leave out) is not linked in.
    let provider = Arc::new(rustls::crypto::CryptoProvider {
        key_provider: &NoClientKeys,
        cipher_suites: cipher_suites(),
        // P-256 first, then P-384: every TLS 1.3 server must offer P-256 (RFC 8446
        // 9.1) and TLS 1.2 ECDHE servers do. X25519 is left out: its code and its
        // 24 KB table of base point multiples cost 30 KB on x86_64 for no registry
        // that P-256 cannot reach.
        kx_groups: vec![
            rustls::crypto::ring::kx_group::SECP256R1,
            rustls::crypto::ring::kx_group::SECP384R1,
        ],
        signature_verification_algorithms: SIGNATURE_ALGORITHMS,
        secure_random: &SystemRandom,
    });
    let builder = ClientConfig::builder_with_details(provider.clone(), Arc::new(NotBeforeBuild))
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .map_err(|e| Error::usage(format!("TLS setup: {e}")))?;
    if opts.insecure {
        let verifier = Arc::new(NoVerification(provider));
        let config = builder.dangerous().with_custom_certificate_verifier(verifier);
        return Ok((
            Arc::new(config.with_no_client_auth()),
            "certificate verification is off".into(),
        ));
    }
    // Mozilla's roots as trust anchors (subject, key, name constraints):
    // what rustls checks against, in 42% of the bytes of whole certificates.
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let mut origin = format!("{} built-in roots", roots.len());
    for (path, n) in system_certs(&mut roots) {
        origin.push_str(&format!(", {n} from {}", path.display()));
    }
    for path in &opts.ca_files {
        let n =
            read_pem_file(path, &mut roots).map_err(|e| Error::usage(format!("--ca-file {}: {e}", path.display())))?;
        if n == 0 {
            return Err(
                Error::usage(format!("--ca-file {}: no PEM certificate in it", path.display()))
                    .hint("give a PEM file with one or more \"-----BEGIN CERTIFICATE-----\" blocks"),
            );
        }
        origin.push_str(&format!(", {n} from {}", path.display()));
    }
    let config = builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NotingVerifier(roots)))
        .with_no_client_auth();
    Ok((Arc::new(config), origin))
}

/// Add the system's CA certificates: `SSL_CERT_FILE` (or the first bundle of
/// [`SYSTEM_BUNDLES`] that exists) and the files of `SSL_CERT_DIR`. A broken
/// system bundle is skipped: the built-in roots still work.
fn system_certs(roots: &mut RootCertStore) -> Vec<(PathBuf, usize)> {
    let mut found = Vec::new();
    let file = match std::env::var_os("SSL_CERT_FILE") {
        Some(f) => Some(PathBuf::from(f)),
        None => SYSTEM_BUNDLES.iter().map(PathBuf::from).find(|p| p.is_file()),
    };
    if let Some(path) = file {
        if let Ok(n) = read_pem_file(&path, roots) {
            found.push((path, n));
        }
    }
    if let Some(dir) = std::env::var_os("SSL_CERT_DIR") {
        // Colon-separated, like OpenSSL's.
        for dir in std::env::split_paths(&dir) {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            let mut n = 0;
            for entry in entries.flatten() {
                n += read_pem_file(&entry.path(), roots).unwrap_or(0);
            }
            found.push((dir, n));
        }
    }
    found
}

/// Append the certificates of a PEM file; returns how many there were.
fn read_pem_file(path: &Path, roots: &mut RootCertStore) -> std::result::Result<usize, String> {
    let len = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    if len > MAX_BUNDLE_BYTES {
        return Err(format!("larger than {} MiB", MAX_BUNDLE_BYTES >> 20));
    }
    let text = std::fs::read(path).map_err(|e| e.to_string())?;
    Ok(parse_pem(&text, roots))
}

/// Add the certificates of PEM text; other items (keys, CRLs) and broken
/// blocks are ignored. Returns how many were added.
fn parse_pem(text: &[u8], roots: &mut RootCertStore) -> usize {
    let certs = ureq::tls::parse_pem(text).filter_map(|item| match item {
        Ok(ureq::tls::PemItem::Certificate(c)) => Some(CertificateDer::from(c.der().to_vec())),
        _ => None,
    });
    roots.add_parsable_certificates(certs).0
}

/// When this binary was built, in seconds since 1970: `SOURCE_DATE_EPOCH`
/// at compile time (build.sh sets it to the commit date, so builds stay
/// reproducible); unknown for builds without it.
pub fn build_time() -> Option<u64> {
    option_env!("SOURCE_DATE_EPOCH").and_then(|s| s.trim().parse().ok())
}

/// What certificates are judged against: the clock, or a time known to
/// have passed when the clock reads earlier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    Clock,
    /// `--time-floor`: the newest time an earlier run verified.
    Floor,
    /// This binary cannot be older than itself.
    Build,
}

/// The time certificates are judged at, and why: the newest of the clock,
/// the time floor and the build time. A device without a battery-backed
/// clock boots in 1970, when every certificate is "not yet valid"
/// (systemd reasons the same way with its build date and its clock file).
pub fn verification_time(now: u64, build: Option<u64>, floor: u64) -> (u64, Basis) {
    let build = build.unwrap_or(0);
    if now >= floor && now >= build {
        (now, Basis::Clock)
    } else if floor >= build {
        (floor, Basis::Floor)
    } else {
        (build, Basis::Build)
    }
}

pub fn clock_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The floor read from `--time-floor` (0: none).
static FLOOR: AtomicU64 = AtomicU64::new(0);
/// The newest time this run verified: a server certificate's `notBefore`
/// (the CA vouches it has passed).
static VERIFIED: AtomicU64 = AtomicU64::new(0);
/// The newest signed image config `created` of this run: its signer's word.
static SIGNED: AtomicU64 = AtomicU64::new(0);

/// How far past every other time known a signed `created` may be and
/// still raise the floor.
pub const SIGNED_AHEAD: u64 = 7 * 24 * 3600;

/// Note a time this run has verified; the floor may rise to it.
pub fn verified_time(t: u64) {
    VERIFIED.fetch_max(t, Ordering::Relaxed);
}

/// Note a signed config's `created`; the floor may rise to it (see
/// [`floor_to`]).
pub fn signed_time(t: u64) {
    SIGNED.fetch_max(t, Ordering::Relaxed);
}

/// The time the floor may rise to: the newest certificate `notBefore`, and
/// a signed `created` only when it is at most [`SIGNED_AHEAD`] past the
/// newest other time known (that notBefore, the build time, the floor, and
/// the clock: it takes a clock ahead *and* a signed `created` ahead to move
/// the floor ahead): one future-dated `created` (a signer's mistake, or a
/// stolen key) must not make every certificate look expired for ever. A
/// floor that lags is safe; one ahead is not.
pub fn floor_to(verified: u64, signed: u64, now: u64, build: u64, floor: u64) -> u64 {
    let known = verified.max(now).max(build).max(floor);
    match signed <= known.saturating_add(SIGNED_AHEAD) {
        true => verified.max(signed),
        false => verified,
    }
}

/// The time certificates are judged at now, and why.
pub fn judged_at() -> (u64, Basis) {
    verification_time(clock_now(), build_time(), FLOOR.load(Ordering::Relaxed))
}

/// Read a time floor file: decimal seconds since 1970, in a regular file
/// owned by root and writable by nobody else (anyone who can write it could
/// make every certificate look expired, or keep an old one valid). `None`
/// when it does not exist; the reason it cannot be used otherwise. Never
/// follows a link, never blocks on a FIFO.
pub fn read_floor(path: &Path) -> std::result::Result<Option<u64>, String> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let mut f = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err("it is a symbolic link".into()),
        Err(e) => return Err(e.to_string()),
        Ok(f) => f,
    };
    let m = f.metadata().map_err(|e| e.to_string())?;
    if !m.is_file() {
        return Err("it is not a regular file".into());
    }
    if m.uid() != 0 {
        return Err(format!("it is owned by uid {}, not root (chown root)", m.uid()));
    }
    if m.mode() & 0o022 != 0 {
        return Err("group or others may write it (chmod go-w)".into());
    }
    let mut text = String::new();
    (&mut f).take(32).read_to_string(&mut text).map_err(|e| e.to_string())?;
    match text.trim().parse::<u64>() {
        Ok(t) => Ok(Some(t)),
        Err(_) => Err("it does not hold decimal seconds since 1970".into()),
    }
}

/// Use this floor for the rest of the run.
pub fn set_floor(t: u64) {
    FLOOR.fetch_max(t, Ordering::Relaxed);
}

/// After a verified pull: raise the floor file to the newest time this run
/// verified, never lower it (re-read: another run may have raised it),
/// written through a temporary and a rename. Returns the new floor when it
/// moved.
pub fn raise_floor(path: &Path) -> Result<Option<u64>> {
    let old = FLOOR
        .load(Ordering::Relaxed)
        .max(read_floor(path).ok().flatten().unwrap_or(0));
    let new = floor_to(
        VERIFIED.load(Ordering::Relaxed),
        SIGNED.load(Ordering::Relaxed),
        clock_now(),
        build_time().unwrap_or(0),
        old,
    );
    if new <= old {
        return Ok(None);
    }
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    crate::layout::write_atomic(&tmp, path, format!("{new}\n").as_bytes())?;
    Ok(Some(new))
}

/// The warning to print when certificates are not judged as of the clock;
/// `credentials`: the registry will be sent some.
pub fn clock_warning(floor_file: Option<&Path>, credentials: bool) -> Option<String> {
    let now = clock_now();
    let (at, basis) = judged_at();
    clock_warning_text(now, at, basis, floor_file, credentials)
}

fn clock_warning_text(now: u64, at: u64, basis: Basis, floor: Option<&Path>, creds: bool) -> Option<String> {
    let why = match (basis, floor) {
        (Basis::Clock, _) => return None,
        (Basis::Floor, Some(f)) => format!(
            "the time floor in {} (the newest time an earlier pull verified)",
            f.display()
        ),
        (Basis::Floor, None) => "the time floor".into(),
        (Basis::Build, _) => "the time this minipull was built".into(),
    };
    let mut w = format!(
        "this machine's clock reads {}, before {why}; TLS certificates are checked as of {} instead \
         (set the clock, e.g. with NTP, to check them as of now)",
        utc(now),
        utc(at)
    );
    if basis == Basis::Build && creds {
        w.push_str(&format!(
            "; the registry's credentials go to a server whose certificate is judged as of the build time, \
             so one that expired or was revoked since still gets them{}",
            if floor.is_some() {
                ""
            } else {
                " (--time-floor FILE keeps a newer time across runs)"
            }
        ));
    }
    Some(w)
}

/// rustls asks this for "now": see [`judged_at`].
#[derive(Debug)]
struct NotBeforeBuild;

impl rustls::time_provider::TimeProvider for NotBeforeBuild {
    fn current_time(&self) -> Option<UnixTime> {
        Some(UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            judged_at().0,
        )))
    }
}

/// webpki's verification, as rustls's own verifier does it (without its
/// CRL code, which we never use), which also notes the server certificate's
/// `notBefore` once the chain is verified: a time its CA vouches has
/// passed. Only the end entity's: an intermediate the server sent may not be
/// on the path webpki built.
#[derive(Debug)]
struct NotingVerifier(RootCertStore);

impl ServerCertVerifier for NotingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let _ = ocsp; // as rustls: OCSP responses are not checked
        let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
        let algs = SIGNATURE_ALGORITHMS.all;
        rustls::client::verify_server_cert_signed_by_trust_anchor(&cert, &self.0, intermediates, now, algs)?;
        rustls::client::verify_server_name(&cert, name)?;
        if let Some(t) = not_before(end_entity) {
            verified_time(t);
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &SIGNATURE_ALGORITHMS)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &SIGNATURE_ALGORITHMS)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        SIGNATURE_ALGORITHMS.supported_schemes()
    }
}

/// One DER element: (tag, contents, what follows). Definite lengths of up
/// to 4 bytes, as certificates use.
fn der(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, b) = b.split_first()?;
    let (&l, mut b) = b.split_first()?;
    let len = if l < 0x80 {
        l as usize
    } else {
        let n = (l & 0x7f) as usize;
        if n == 0 || n > 4 {
            return None;
        }
        let (bytes, rest) = b.split_at_checked(n)?;
        b = rest;
        bytes.iter().fold(0usize, |a, &x| a << 8 | x as usize)
    };
    let (contents, rest) = b.split_at_checked(len)?;
    Some((tag, contents, rest))
}

/// A certificate's `notBefore` in seconds since 1970: tbsCertificate's
/// fifth field after the optional version (serial, signature, issuer,
/// validity). Only read from a certificate webpki has already verified.
fn not_before(cert: &[u8]) -> Option<u64> {
    let (_, cert, _) = der(cert)?;
    let (_, mut tbs, _) = der(cert)?;
    if tbs.first() == Some(&0xa0) {
        tbs = der(tbs)?.2;
    }
    for _ in 0..3 {
        tbs = der(tbs)?.2;
    }
    let (_, validity, _) = der(tbs)?;
    let (tag, t, _) = der(validity)?;
    let t = std::str::from_utf8(t).ok()?;
    // UTCTime YYMMDDHHMMSSZ (years 1950-2049) or GeneralizedTime YYYYMMDDHHMMSSZ.
    let full = match (tag, t.len()) {
        (0x17, 13) => format!("{}{t}", if t.get(..2)? < "50" { "20" } else { "19" }),
        (0x18, 15) => t.to_string(),
        _ => return None,
    };
    let f = |r: std::ops::Range<usize>| full.get(r);
    let rfc = format!(
        "{}-{}-{}T{}:{}:{}{}",
        f(0..4)?,
        f(4..6)?,
        f(6..8)?,
        f(8..10)?,
        f(10..12)?,
        f(12..14)?,
        f(14..15)?
    );
    u64::try_from(crate::verify::rfc3339(&rfc)?.0).ok()
}

/// `YYYY-MM-DD HH:MM:SS UTC` for seconds since 1970 (proleptic Gregorian).
pub fn utc(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days, shifted so the era starts in March.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The time a certificate was judged at, in words.
fn judged(at: u64) -> String {
    let now = clock_now();
    match at.abs_diff(now) > 60 {
        true => format!(
            "it was judged as of {} (this machine's clock reads {})",
            utc(at),
            utc(now)
        ),
        false => format!("this machine's clock reads {}", utc(now)),
    }
}

/// What went wrong in a TLS handshake, in words. rustls shows several of
/// its errors through Debug formatting, which release builds leave out.
pub fn describe(e: &rustls::Error) -> String {
    use rustls::{CertificateError as C, Error as E};
    let cert = |what: &str| format!("invalid peer certificate: {what}");
    match e {
        E::InvalidCertificate(c) => match c {
            C::UnknownIssuer => cert("it is signed by an unknown certificate authority"),
            C::ExpiredContext { not_after, time } => cert(&format!(
                "it expired on {}, and {}",
                utc(not_after.as_secs()),
                judged(time.as_secs())
            )),
            C::NotValidYetContext { not_before, time } => cert(&format!(
                "it is valid only from {}, and {}",
                utc(not_before.as_secs()),
                judged(time.as_secs())
            )),
            C::Expired => cert("it has expired (check this machine's clock)"),
            C::NotValidYet => cert("it is not valid yet (check this machine's clock)"),
            C::NotValidForName | C::NotValidForNameContext { .. } => cert("it is not valid for this host name"),
            C::BadSignature => cert("its signature does not verify"),
            C::BadEncoding => cert("it is malformed"),
            C::Revoked => cert("it has been revoked"),
            C::UnknownRevocationStatus => cert("its revocation status is unknown"),
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => cert("it is not meant for TLS servers"),
            _ => cert("it was refused"),
        },
        E::AlertReceived(a) => format!("the server refused the handshake (TLS alert {})", u8::from(*a)),
        E::PeerIncompatible(_) => "the server supports no TLS version or cipher suite we offer".into(),
        E::PeerMisbehaved(_) => "the server broke the TLS protocol".into(),
        E::InvalidMessage(_) | E::InappropriateMessage { .. } | E::InappropriateHandshakeMessage { .. } => {
            "the server sent something that is not TLS (a plain HTTP server?)".into()
        }
        other => other.to_string(),
    }
}

/// The last link of every agent's connector chain: wraps the TCP (or proxy
/// tunnel) connection in TLS for `https` URLs, with our own rustls config.
/// ureq's own TLS connector would need the built-in roots as whole
/// certificates and carries client-certificate support we do not use.
#[derive(Debug)]
pub struct TlsConnector(pub Arc<ClientConfig>);

impl<In: Transport> Connector<In> for TlsConnector {
    type Out = Either<In, TlsTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> std::result::Result<Option<Self::Out>, ureq::Error> {
        let Some(transport) = chained else {
            return Err(ureq::Error::ConnectionFailed);
        };
        if !details.needs_tls() || transport.is_tls() {
            return Ok(Some(Either::A(transport)));
        }
        let host = details.uri.host().ok_or(ureq::Error::HostNotFound)?;
        // An IPv6 literal arrives in brackets; rustls wants the bare address.
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host.to_string()).map_err(|_| ureq::Error::Tls("invalid server name"))?;
        let mut conn = ClientConnection::new(self.0.clone(), name)?;
        let mut sock = TransportAdapter::new(transport.boxed(), details.current_time.clone());
        sock.set_timeout(details.timeout);
        conn.complete_io(&mut sock)?;
        let buffers = LazyBuffers::new(details.config.input_buffer_size(), details.config.output_buffer_size());
        Ok(Some(Either::B(TlsTransport {
            buffers,
            stream: StreamOwned { conn, sock },
        })))
    }
}

/// A TLS connection as ureq's transport.
pub struct TlsTransport {
    buffers: LazyBuffers,
    stream: StreamOwned<ClientConnection, TransportAdapter>,
}

impl std::fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsTransport")
    }
}

impl Transport for TlsTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> std::result::Result<(), ureq::Error> {
        use std::io::Write;
        self.stream.get_mut().set_timeout(timeout);
        let output = &self.buffers.output()[..amount];
        self.stream.write_all(output)?;
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> std::result::Result<bool, ureq::Error> {
        use std::io::Read;
        self.stream.get_mut().set_timeout(timeout);
        let input = self.buffers.input_append_buf();
        let amount = self.stream.read(input)?;
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        self.stream.get_mut().get_mut().is_open()
    }

    fn is_tls(&self) -> bool {
        true
    }
}

/// We never authenticate with a client certificate: leaving out the key
/// loader leaves ring's RSA and ECDSA signing code out of the binary.
#[derive(Debug)]
struct NoClientKeys;

impl rustls::crypto::KeyProvider for NoClientKeys {
    fn load_private_key(
        &self,
        _: rustls::pki_types::PrivateKeyDer<'static>,
    ) -> std::result::Result<Arc<dyn rustls::sign::SigningKey>, rustls::Error> {
        Err(rustls::Error::General("client certificates are not supported".into()))
    }
}

/// `--insecure`: every certificate is accepted, nothing is checked.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_roots_are_there() {
        let (_, origin) = config(&TlsOptions::default()).unwrap();
        let n: usize = origin.split(' ').next().unwrap().parse().unwrap();
        assert!(n > 100, "{origin}");
    }

    #[test]
    fn a_signed_created_raises_the_floor_only_near_the_other_times() {
        let day = 24 * 3600;
        // Clock in 1970, build 50 days, floor 60: a created at 66 days counts...
        assert_eq!(floor_to(0, 66 * day, 0, 50 * day, 60 * day), 66 * day);
        // ...one at 68 days (the year 2099, say) does not; a notBefore does,
        // and takes a created up to a week past it; so does the clock.
        assert_eq!(floor_to(0, 68 * day, 0, 50 * day, 60 * day), 0);
        assert_eq!(floor_to(70 * day, 68 * day, 0, 50 * day, 60 * day), 70 * day);
        assert_eq!(floor_to(70 * day, 76 * day, 0, 50 * day, 60 * day), 76 * day);
        assert_eq!(floor_to(0, 76 * day, 70 * day, 0, 0), 76 * day);
        assert_eq!(floor_to(0, 78 * day, 70 * day, 0, 0), 0);
        // A created in the past counts (the floor never moves back anyway).
        assert_eq!(floor_to(0, 10 * day, 0, 50 * day, 60 * day), 10 * day);
        assert_eq!(floor_to(0, u64::MAX, 0, 0, 0), 0);
    }

    #[test]
    fn certificates_are_judged_no_earlier_than_the_build_or_the_floor() {
        let build = Some(1_790_000_000);
        // A clock at 1970: the build time.
        assert_eq!(verification_time(5, build, 0), (1_790_000_000, Basis::Build));
        // A clock after the build: the clock.
        assert_eq!(
            verification_time(1_800_000_000, build, 0),
            (1_800_000_000, Basis::Clock)
        );
        // Build time unknown: the clock, whatever it says.
        assert_eq!(verification_time(5, None, 0), (5, Basis::Clock));
        // A floor newer than the build: the floor, unless the clock is newer still.
        assert_eq!(
            verification_time(5, build, 1_795_000_000),
            (1_795_000_000, Basis::Floor)
        );
        assert_eq!(verification_time(1_800_000_000, build, 1_795_000_000).1, Basis::Clock);
        assert_eq!(verification_time(5, build, 1_700_000_000).1, Basis::Build);
    }

    #[test]
    fn the_build_time_warning_names_the_credentials() {
        let w = |basis, creds| clock_warning_text(5, 1_790_000_000, basis, None, creds);
        assert!(w(Basis::Build, true).unwrap().contains("credentials"));
        assert!(w(Basis::Build, true).unwrap().contains("--time-floor"));
        assert!(!w(Basis::Build, false).unwrap().contains("credentials"));
        assert!(!w(Basis::Floor, true).unwrap().contains("credentials"));
        assert!(w(Basis::Clock, true).is_none());
        let f = clock_warning_text(5, 9, Basis::Floor, Some(Path::new("/disk/floor")), false).unwrap();
        assert!(
            f.contains("/disk/floor") && f.contains("1970-01-01 00:00:09 UTC"),
            "{f}"
        );
    }

    const CERT: &str = "MIIBBjCBraADAgECAgEBMAoGCCqGSM49BAMCMAwxCjAIBgNVBAMMAXQwIBcNMjQw
NTAxMTAwMDAwWhgPMjA1MTAxMDEwMDAwMDBaMAwxCjAIBgNVBAMMAXQwWTATBgcq
hkjOPQIBBggqhkjOPQMBBwNCAAQAhXHgTWloSMft376TZs003zE8yJud+HjhN1LX
sbn1ZOpFFjqp0QSnyotboRc9VlrK2Gx6GlsIpbjmiPXlFXkEMAoGCCqGSM49BAMC
A0gAMEUCIAhC/I+XACYfv/Zvvu3Kw+vJxXvDsFxb+W1KS+aWZryQAiEAyFgsWzQE
v5O1Yquiffcbe/aBrKuAt0k0JurdBkH0MVc=";

    #[test]
    fn not_before_of_a_certificate() {
        // A self-signed P-256 certificate, notBefore 2024-05-01 10:00:00 UTC.
        let der = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, CERT.replace('\n', "")).unwrap();
        assert_eq!(not_before(&der), Some(1_714_557_600));
        assert_eq!(not_before(&der[..40]), None);
        assert_eq!(not_before(b""), None);
        assert_eq!(not_before(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    }

    #[test]
    fn dates_in_messages() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_796_040_061), "2026-11-30 12:01:01 UTC");
        assert_eq!(utc(4_102_444_799), "2099-12-31 23:59:59 UTC");
    }

    #[test]
    fn pem_without_certificates_counts_zero() {
        let mut roots = RootCertStore::empty();
        assert_eq!(parse_pem(b"", &mut roots), 0);
        assert_eq!(parse_pem(b"-----BEGIN CERTIFICATE-----\nnot base64!\n", &mut roots), 0);
        assert_eq!(parse_pem(b"random text", &mut roots), 0);
    }

    #[test]
    fn missing_ca_file_is_a_usage_error() {
        let opts = TlsOptions {
            ca_files: vec![PathBuf::from("/nonexistent/ca.pem")],
            insecure: false,
        };
        let e = config(&opts).unwrap_err();
        assert_eq!(e.kind, crate::error::Kind::Usage);
        assert!(e.message.contains("/nonexistent/ca.pem"), "{}", e.message);
    }
}

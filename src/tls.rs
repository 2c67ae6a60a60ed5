//! Which certificates we trust: Mozilla's roots built into the binary (an
//! initramfs has no CA bundle), the system bundle when there is one, and the
//! user's own CA files for private registries.

use crate::error::{Error, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme, StreamOwned};
use std::path::{Path, PathBuf};
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
        kx_groups: rustls::crypto::ring::ALL_KX_GROUPS.to_vec(),
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
    let config = builder.with_root_certificates(roots).with_no_client_auth();
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

/// The time certificates are judged at, and whether it is the build time:
/// a device without a battery-backed clock boots in 1970, when every
/// certificate is "not yet valid", and this binary cannot be older than
/// itself (systemd reasons the same way with its build date).
pub fn verification_time(now: u64, build: Option<u64>) -> (u64, bool) {
    match build {
        Some(b) if now < b => (b, true),
        _ => (now, false),
    }
}

pub fn clock_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The warning to print when the clock reads earlier than the build time.
pub fn clock_warning() -> Option<String> {
    let now = clock_now();
    let (at, floored) = verification_time(now, build_time());
    floored.then(|| {
        format!(
            "this machine's clock reads {}, before this minipull was built; TLS certificates are \
             checked as of {} instead (set the clock, e.g. with NTP, to check them as of now)",
            utc(now),
            utc(at)
        )
    })
}

/// rustls asks this for "now": the clock, or the build time if later.
#[derive(Debug)]
struct NotBeforeBuild;

impl rustls::time_provider::TimeProvider for NotBeforeBuild {
    fn current_time(&self) -> Option<UnixTime> {
        let (at, _) = verification_time(clock_now(), build_time());
        Some(UnixTime::since_unix_epoch(std::time::Duration::from_secs(at)))
    }
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

/// What went wrong in a TLS handshake, in words. rustls shows several of
/// its errors through Debug formatting, which release builds leave out.
pub fn describe(e: &rustls::Error) -> String {
    use rustls::{CertificateError as C, Error as E};
    let cert = |what: &str| format!("invalid peer certificate: {what}");
    match e {
        E::InvalidCertificate(c) => match c {
            C::UnknownIssuer => cert("it is signed by an unknown certificate authority"),
            C::ExpiredContext { not_after, .. } => cert(&format!(
                "it expired on {}, and this machine's clock reads {}",
                utc(not_after.as_secs()),
                utc(clock_now())
            )),
            C::NotValidYetContext { not_before, .. } => cert(&format!(
                "it is valid only from {}, and this machine's clock reads {}",
                utc(not_before.as_secs()),
                utc(clock_now())
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
    fn certificates_are_judged_no_earlier_than_the_build() {
        let build = Some(1_790_000_000);
        // A clock at 1970: the build time.
        assert_eq!(verification_time(5, build), (1_790_000_000, true));
        // A clock after the build: the clock.
        assert_eq!(verification_time(1_800_000_000, build), (1_800_000_000, false));
        // Build time unknown: the clock, whatever it says.
        assert_eq!(verification_time(5, None), (5, false));
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

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

/// Build the TLS settings for the agents. Returns the config and a line
/// saying where the trusted roots came from.
pub fn config(opts: &TlsOptions) -> Result<(Arc<ClientConfig>, String)> {
    let provider = Arc::new(rustls::crypto::CryptoProvider {
        key_provider: &NoClientKeys,
        ..rustls::crypto::ring::default_provider()
    });
    let builder = ClientConfig::builder_with_provider(provider.clone())
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

/// What went wrong in a TLS handshake, in words. rustls shows several of
/// its errors through Debug formatting, which release builds leave out.
pub fn describe(e: &rustls::Error) -> String {
    use rustls::{CertificateError as C, Error as E};
    let cert = |what: &str| format!("invalid peer certificate: {what}");
    match e {
        E::InvalidCertificate(c) => match c {
            C::UnknownIssuer => cert("it is signed by an unknown certificate authority"),
            C::Expired | C::ExpiredContext { .. } => cert("it has expired"),
            C::NotValidYet | C::NotValidYetContext { .. } => cert("it is not valid yet (is the clock right?)"),
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

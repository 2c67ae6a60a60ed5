//! Which certificates we trust: Mozilla's roots built into the binary (an
//! initramfs has no CA bundle), the system bundle when there is one, and the
//! user's own CA files for private registries.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

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

/// Build the TLS settings for the agent. Returns the config and a line
/// saying where the trusted roots came from.
pub fn config(opts: &TlsOptions) -> Result<(TlsConfig, String)> {
    let builder = TlsConfig::builder();
    if opts.insecure {
        return Ok((
            builder.disable_verification(true).build(),
            "certificate verification is off".into(),
        ));
    }
    let mut roots: Vec<Certificate<'static>> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .map(|c| Certificate::from_der(c.as_ref()))
        .collect();
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
    Ok((builder.root_certs(RootCerts::from(roots)).build(), origin))
}

/// Add the system's CA certificates: `SSL_CERT_FILE` (or the first bundle of
/// [`SYSTEM_BUNDLES`] that exists) and the files of `SSL_CERT_DIR`. A broken
/// system bundle is skipped: the built-in roots still work.
fn system_certs(roots: &mut Vec<Certificate<'static>>) -> Vec<(PathBuf, usize)> {
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
fn read_pem_file(path: &Path, roots: &mut Vec<Certificate<'static>>) -> std::result::Result<usize, String> {
    let len = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    if len > MAX_BUNDLE_BYTES {
        return Err(format!("larger than {} MiB", MAX_BUNDLE_BYTES >> 20));
    }
    let text = std::fs::read(path).map_err(|e| e.to_string())?;
    Ok(parse_pem(&text, roots))
}

/// The certificates of PEM text; other items (keys, CRLs) and broken blocks are ignored.
fn parse_pem(text: &[u8], roots: &mut Vec<Certificate<'static>>) -> usize {
    let before = roots.len();
    roots.extend(ureq::tls::parse_pem(text).filter_map(|item| match item {
        Ok(PemItem::Certificate(c)) => Some(c),
        _ => None,
    }));
    roots.len() - before
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
        let mut roots = Vec::new();
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

//! A sigstore-conformance client over minipull's verification core (built
//! by `cargo build --example conformance`, never shipped). It speaks the
//! conformance CLI protocol for verification only:
//!
//! ```text
//! conformance verify-bundle --bundle F (--certificate-identity I --certificate-oidc-issuer U | --key K)
//!     [--trusted-root R] FILE_OR_DIGEST
//! ```
//!
//! Exit 0: accepted; 1: refused (the reason on stderr); 2: usage. With no
//! `--trusted-root`, the public-good root in tests/data/keyless is used.
//! A `sha256:<hex>` digest instead of a file is enough for a DSSE bundle
//! (its statement names the digest); a `messageSignature` bundle needs the
//! file (ECDSA is verified over the message, never a given digest).
//! Signing (`sign-bundle`) is not offered: run the upstream harness with
//! `--skip-signing`.

#[cfg(feature = "keyless")]
fn main() {
    std::process::exit(match run(std::env::args().skip(1).collect()) {
        Ok(()) => 0,
        Err((code, why)) => {
            eprintln!("conformance: {why}");
            code
        }
    })
}

#[cfg(not(feature = "keyless"))]
fn main() {
    eprintln!("conformance: built without the keyless feature");
    std::process::exit(2);
}

#[cfg(feature = "keyless")]
fn run(args: Vec<String>) -> Result<(), (i32, String)> {
    use minipull::verify::keyless::{verify_blob, Artifact, Identity};
    use minipull::verify::trust_root::TrustRoot;
    use minipull::verify::PublicKey;
    let usage = |m: &str| (2, m.to_string());
    let mut it = args.into_iter();
    if it.next().as_deref() != Some("verify-bundle") {
        return Err(usage("only verify-bundle is supported"));
    }
    let (mut bundle, mut san, mut issuer, mut key, mut root, mut artifact) = (None, None, None, None, None, None);
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or_else(|| usage(&format!("{a} needs a value")));
        match a.as_str() {
            "--bundle" => bundle = Some(value()?),
            "--certificate-identity" => san = Some(value()?),
            "--certificate-oidc-issuer" => issuer = Some(value()?),
            "--key" => key = Some(value()?),
            "--trusted-root" => root = Some(value()?),
            "--staging" => return Err(usage("--staging: give the staging root with --trusted-root")),
            s if s.starts_with("--") => return Err(usage(&format!("unknown option {s}"))),
            _ if artifact.is_none() => artifact = Some(a),
            _ => return Err(usage("one FILE_OR_DIGEST")),
        }
    }
    let read = |p: &str| std::fs::read(p).map_err(|e| (1, format!("{p}: {e}")));
    let bundle = read(&bundle.ok_or_else(|| usage("--bundle is required"))?)?;
    let artifact = artifact.ok_or_else(|| usage("FILE_OR_DIGEST is required"))?;
    let bytes;
    let artifact = match artifact.strip_prefix("sha256:") {
        Some(hex) if !std::path::Path::new(&artifact).exists() => {
            let d: Option<Vec<u8>> = (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| {
                    (0..32)
                        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
                        .collect()
                })
                .flatten();
            let d = d.ok_or_else(|| usage("a digest is sha256: and 64 hex digits"))?;
            Artifact::Sha256(
                d.try_into()
                    .map_err(|_| usage("a digest is sha256: and 64 hex digits"))?,
            )
        }
        _ => {
            bytes = read(&artifact)?;
            Artifact::Bytes(&bytes)
        }
    };
    let root_path =
        root.unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/keyless/trusted_root.json").into());
    let root = TrustRoot::parse(&read(&root_path)?).map_err(|e| (1, format!("trusted root: {e}")))?;
    let (ids, keys) = match (key, san, issuer) {
        (Some(k), None, None) => {
            let pem = String::from_utf8(read(&k)?).map_err(|_| (1, "the key is not text".to_string()))?;
            (
                Vec::new(),
                vec![PublicKey::from_pem(&pem).map_err(|e| (1, e.to_string()))?],
            )
        }
        (None, Some(s), Some(i)) => (vec![Identity::new(&s, &i).map_err(|e| (2, e))?], Vec::new()),
        _ => {
            return Err(usage(
                "give --key, or --certificate-identity with --certificate-oidc-issuer",
            ))
        }
    };
    verify_blob(&bundle, artifact, Some(&root), &ids, &keys).map_err(|e| (1, e))
}

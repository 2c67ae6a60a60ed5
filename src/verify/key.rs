//! Public keys for signature verification: PEM `PUBLIC KEY` blocks
//! (SubjectPublicKeyInfo) for ECDSA P-256, P-384 and Ed25519, verified with
//! ring, which the binary already carries for TLS.

use crate::digest::Digest;
use crate::error::{Error, Result};
use ring::signature::{self as sig, UnparsedPublicKey, VerificationAlgorithm};

/// The kinds of key minipull verifies with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    P256,
    P384,
    Ed25519,
}

/// A parsed public key and where it came from.
#[derive(Debug, Clone)]
pub struct PublicKey {
    pub kind: Kind,
    /// The raw key: an uncompressed EC point, or the 32 Ed25519 bytes.
    key: Vec<u8>,
    /// `sha256:<hex>` of the SubjectPublicKeyInfo DER, for reports.
    pub fingerprint: String,
}

const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

impl PublicKey {
    /// Parse the first `PUBLIC KEY` PEM block in `text` (text before it,
    /// such as certtool's description, is ignored).
    pub fn from_pem(text: &str) -> Result<PublicKey> {
        const BEGIN: &str = "-----BEGIN PUBLIC KEY-----";
        const END: &str = "-----END PUBLIC KEY-----";
        let bad = |why: &str| Error::usage(format!("not a usable public key: {why}"));
        let start = text.find(BEGIN).ok_or_else(|| {
            bad("no \"-----BEGIN PUBLIC KEY-----\" block (cosign.pub, or `openssl pkey -pubout` output, is expected)")
        })? + BEGIN.len();
        let len = text[start..]
            .find(END)
            .ok_or_else(|| bad("the PEM block has no END line"))?;
        let b64: String = text[start..start + len].split_whitespace().collect();
        let der = crate::auth::base64_decode(&b64).ok_or_else(|| bad("the PEM block is not valid base64"))?;
        PublicKey::from_spki(&der).map_err(|why| bad(&why))
    }

    /// Parse a DER SubjectPublicKeyInfo.
    pub fn from_spki(der: &[u8]) -> std::result::Result<PublicKey, String> {
        let mut outer = Der(der);
        let mut spki = Der(outer.take(0x30)?);
        if !outer.0.is_empty() {
            return Err("trailing bytes after the key".into());
        }
        let mut alg = Der(spki.take(0x30)?);
        let bits = spki.take(0x03)?;
        let oid = alg.take(0x06)?;
        let kind = if oid == OID_EC_PUBLIC_KEY {
            match alg.take(0x06)? {
                c if c == OID_P256 => Kind::P256,
                c if c == OID_P384 => Kind::P384,
                _ => return Err("an EC key on a curve other than P-256 or P-384".into()),
            }
        } else if oid == OID_ED25519 {
            Kind::Ed25519
        } else {
            return Err("only ECDSA P-256, P-384 and Ed25519 keys are supported (RSA is not)".into());
        };
        let key = match bits.split_first() {
            Some((0, key)) => key.to_vec(),
            _ => return Err("malformed key bits".into()),
        };
        let want = match kind {
            Kind::P256 => 65,
            Kind::P384 => 97,
            Kind::Ed25519 => 32,
        };
        if key.len() != want || (kind != Kind::Ed25519 && key[0] != 4) {
            return Err("the key has the wrong length for its type".into());
        }
        Ok(PublicKey {
            kind,
            key,
            fingerprint: Digest::sha256_of(der).to_string(),
        })
    }

    /// Whether `signature` signs `message` with this key. ECDSA signatures
    /// are accepted in ASN.1 DER and in raw `r||s`; the hash is the curve's
    /// (SHA-256 for P-256, SHA-384 for P-384, as cosign and DSSE use them).
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        let algs: &[&dyn VerificationAlgorithm] = match self.kind {
            Kind::P256 => &[&sig::ECDSA_P256_SHA256_ASN1, &sig::ECDSA_P256_SHA256_FIXED],
            Kind::P384 => &[&sig::ECDSA_P384_SHA384_ASN1, &sig::ECDSA_P384_SHA384_FIXED],
            Kind::Ed25519 => &[&sig::ED25519],
        };
        algs.iter()
            .any(|a| UnparsedPublicKey::new(*a, &self.key).verify(message, signature).is_ok())
    }
}

/// Just enough DER to read a SubjectPublicKeyInfo.
struct Der<'a>(&'a [u8]);

impl<'a> Der<'a> {
    /// Take the next element, which must have `tag`; returns its contents.
    fn take(&mut self, tag: u8) -> std::result::Result<&'a [u8], String> {
        let bad = || "malformed DER".to_string();
        let (&t, rest) = self.0.split_first().ok_or_else(bad)?;
        let (&l, mut rest) = rest.split_first().ok_or_else(bad)?;
        let len = if l < 0x80 {
            l as usize
        } else {
            let n = (l & 0x7f) as usize;
            if n == 0 || n > 2 || rest.len() < n {
                return Err(bad());
            }
            let len = rest[..n].iter().fold(0usize, |a, b| a << 8 | *b as usize);
            rest = &rest[n..];
            len
        };
        if t != tag || rest.len() < len {
            return Err(bad());
        }
        self.0 = &rest[len..];
        Ok(&rest[..len])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(path: &str) -> String {
        std::fs::read_to_string(format!(
            "{}/../shared/sigstore-vectors/{path}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn parses_the_vector_keys() {
        let k = PublicKey::from_pem(&vector("classic/containers-image/cosign.pub")).unwrap();
        assert_eq!(k.kind, Kind::P256);
        // certtool output: a description, then the PEM block.
        let k = PublicKey::from_pem(&vector(
            "bundles/model-transparency-v1.1.0-elliptic-key-p384/signing-key-pub.pem",
        ))
        .unwrap();
        assert_eq!(k.kind, Kind::P384);
    }

    #[test]
    fn refuses_junk_cleanly() {
        for bad in [
            "",
            "-----BEGIN PUBLIC KEY-----\n!!!\n-----END PUBLIC KEY-----\n",
            "-----BEGIN PUBLIC KEY-----\nMAA=\n-----END PUBLIC KEY-----\n",
            "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END PUBLIC KEY-----\n",
            "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n",
        ] {
            let e = PublicKey::from_pem(bad).unwrap_err();
            assert_eq!(e.kind, crate::error::Kind::Usage, "{bad}");
        }
        // Truncated DER of every length never panics.
        let der = crate::auth::base64_decode(
            "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEFNLqFhf4fiN6o/glAuYnq2jYUeL0vRuLu/z39pmbVwS9ff5AYnlwaP9sxREajdLY9ynM6G1sy6AAmb7Z63TsLg==",
        )
        .unwrap();
        assert!(PublicKey::from_spki(&der).is_ok());
        for n in 0..der.len() {
            assert!(PublicKey::from_spki(&der[..n]).is_err());
        }
    }
}

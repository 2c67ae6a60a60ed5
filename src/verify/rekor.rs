//! Rekor v1 entries, checked offline: the SET (the log's signature over
//! the canonical JSON of the entry, which is what makes `integratedTime`
//! trustworthy), the RFC 6962 inclusion proof and its signed checkpoint,
//! and what the entry's body says it logged.

use super::trust_root::{Log, TrustRoot};
use crate::auth::base64_decode;
use serde_json::Value;

type R<T> = std::result::Result<T, String>;

/// A proof longer than this is refused (a tree of 2^64 leaves needs 64).
const MAX_PROOF: usize = 64;

/// An RFC 6962 inclusion proof with the checkpoint that signs its root.
pub struct Inclusion {
    pub index: u64,
    pub size: u64,
    pub root: Vec<u8>,
    pub hashes: Vec<Vec<u8>>,
    pub checkpoint: String,
}

/// A Rekor v1 entry as a classic bundle annotation or a bundle carries it.
pub struct Entry {
    /// The body, base64 as logged.
    pub body_b64: String,
    pub integrated_time: i64,
    pub log_index: i64,
    pub log_id: Vec<u8>,
    pub set: Option<Vec<u8>>,
    pub inclusion: Option<Inclusion>,
}

fn sha256(parts: &[&[u8]]) -> Vec<u8> {
    let mut c = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        c.update(p);
    }
    c.finish().as_ref().to_vec()
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Entry {
    /// The log of the root this entry names.
    pub fn log<'r>(&self, root: &'r TrustRoot) -> R<&'r Log> {
        let log = root
            .tlogs
            .iter()
            .find(|l| l.id == self.log_id)
            .ok_or("the Rekor entry is from a log not in the trusted root")?;
        if !log.valid_at(self.integrated_time) {
            return Err("the Rekor log's key was not valid at the entry's integrated time".into());
        }
        Ok(log)
    }

    /// Verify the SET; returns the integrated time it vouches for.
    pub fn verify_set(&self, root: &TrustRoot) -> R<i64> {
        let log = self.log(root)?;
        let set = self.set.as_ref().ok_or(
            "no signed entry timestamp: the signing time would come from an RFC 3161 timestamp, \
             which needs RFC 3161 timestamp support, which minipull does not have yet",
        )?;
        let canonical = format!(
            "{{\"body\":{},\"integratedTime\":{},\"logID\":\"{}\",\"logIndex\":{}}}",
            Value::String(self.body_b64.clone()),
            self.integrated_time,
            hex(&self.log_id),
            self.log_index
        );
        if !log.key.verifies(canonical.as_bytes(), set) {
            return Err("the Rekor SET does not verify (entry or time altered)".into());
        }
        Ok(self.integrated_time)
    }

    /// Verify the inclusion proof against its signed checkpoint.
    pub fn verify_inclusion(&self, root: &TrustRoot) -> R<()> {
        let p = self.inclusion.as_ref().ok_or("the bundle has no inclusion proof")?;
        let body = base64_decode(&self.body_b64).ok_or("malformed: the Rekor body is not base64")?;
        let leaf = sha256(&[&[0], &body]);
        if p.index >= p.size || p.hashes.len() > MAX_PROOF || p.hashes.iter().any(|h| h.len() != 32) {
            return Err("malformed inclusion proof".into());
        }
        let (mut fi, mut sn, mut r) = (p.index, p.size - 1, leaf);
        for h in &p.hashes {
            if sn == 0 {
                return Err("the inclusion proof is too long".into());
            }
            if fi & 1 == 1 || fi == sn {
                r = sha256(&[&[1], h, &r]);
                while fi & 1 == 0 && fi != 0 {
                    fi >>= 1;
                    sn >>= 1;
                }
            } else {
                r = sha256(&[&[1], &r, h]);
            }
            fi >>= 1;
            sn >>= 1;
        }
        if sn != 0 || r != p.root {
            return Err("the inclusion proof does not lead to its root hash".into());
        }
        checkpoint(&p.checkpoint, self.log(root)?, p.size, &p.root)
    }
}

/// A signed note: `origin\nsize\nroot\n[extra lines]\n\n— name sig\n…`, one
/// signature of which must be the log's (key hint: its id's first 4
/// bytes) and whose size and root must be the proof's.
pub fn checkpoint(text: &str, log: &Log, size: u64, root: &[u8]) -> R<()> {
    let bad = |why: &str| format!("malformed checkpoint: {why}");
    if text.len() > 64 * 1024 {
        return Err(bad("too long"));
    }
    let split = text.find("\n\n").ok_or_else(|| bad("no signature"))? + 1;
    let (note, sigs) = text.split_at(split);
    let mut lines = note.lines();
    let (Some(origin), Some(n), Some(hash)) = (lines.next(), lines.next(), lines.next()) else {
        return Err(bad("fewer than three lines"));
    };
    if origin.is_empty() {
        return Err(bad("no origin"));
    }
    if n.parse::<u64>().ok() != Some(size) || base64_decode(hash).as_deref() != Some(root) {
        return Err("the checkpoint is for another tree than the inclusion proof".into());
    }
    for line in sigs[1..].lines().take(16) {
        let Some(rest) = line.strip_prefix("\u{2014} ") else {
            return Err(bad("a signature line without its em dash"));
        };
        let Some(sig) = rest.rsplit(' ').next().and_then(base64_decode) else {
            return Err(bad("a signature is not base64"));
        };
        if sig.len() > 4 && sig[..4] == log.id[..4] && log.key.verifies(note.as_bytes(), &sig[4..]) {
            return Ok(());
        }
    }
    Err("the checkpoint is not signed by the Rekor log".into())
}

fn get<'v>(v: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

fn b64_field(v: &Value, path: &[&str]) -> R<Vec<u8>> {
    get(v, path)
        .and_then(Value::as_str)
        .and_then(base64_decode)
        .ok_or_else(|| format!("malformed Rekor body: {} is missing or not base64", path.join(".")))
}

/// A PEM certificate (as Rekor bodies hold it) as DER.
pub fn pem_der(pem: &[u8]) -> Option<Vec<u8>> {
    let t = std::str::from_utf8(pem).ok()?;
    let start = t.find("-----BEGIN CERTIFICATE-----")? + 27;
    let end = start + t[start..].find("-----END CERTIFICATE-----")?;
    base64_decode(&t[start..end].split_whitespace().collect::<String>())
}

/// What the signature a body must name is over.
pub enum Signed<'a> {
    /// The SHA-256 of the signed bytes (hashedrekord).
    Digest(&'a [u8]),
    /// A DSSE envelope's payload (dsse).
    Dsse(&'a [u8]),
    /// The same, and `intoto 0.0.2` bodies accepted too (blobs only).
    DsseOrIntoto(&'a [u8]),
}

/// Check the entry's body names this signature, this certificate and this
/// content: `hashedrekord 0.0.1` or `dsse 0.0.1`.
pub fn check_body(body_b64: &str, signed: Signed, signature: &[u8], cert: &[u8]) -> R<()> {
    let body = base64_decode(body_b64).ok_or("malformed: the Rekor body is not base64")?;
    let v: Value = serde_json::from_slice(&body).map_err(|_| "malformed: the Rekor body is not JSON")?;
    let kind = (
        v.get("kind").and_then(Value::as_str).unwrap_or_default(),
        v.get("apiVersion").and_then(Value::as_str).unwrap_or_default(),
    );
    let want = |what: &str| format!("the Rekor entry logs another {what} than this signature");
    let (hash, sigs) = match (kind, signed) {
        (("hashedrekord", "0.0.1"), Signed::Digest(d)) => {
            let s = get(&v, &["spec", "signature"]).ok_or("malformed Rekor body: no signature")?;
            (
                (get(&v, &["spec", "data", "hash"]), d.to_vec()),
                vec![(b64_field(s, &["content"])?, b64_field(s, &["publicKey", "content"])?)],
            )
        }
        (("dsse", "0.0.1"), Signed::Dsse(payload) | Signed::DsseOrIntoto(payload)) => {
            let list = get(&v, &["spec", "signatures"]).and_then(Value::as_array);
            let sigs = list
                .map(|l| {
                    l.iter()
                        .take(4)
                        .map(|s| Ok((b64_field(s, &["signature"])?, b64_field(s, &["verifier"])?)))
                        .collect::<R<Vec<_>>>()
                })
                .transpose()?
                .unwrap_or_default();
            ((get(&v, &["spec", "payloadHash"]), sha256(&[payload])), sigs)
        }
        (("intoto", "0.0.2"), Signed::DsseOrIntoto(payload)) => {
            // The envelope's fields are base64 of the base64 the DSSE envelope holds.
            let twice = |s: &Value, k: &str| -> R<Vec<u8>> {
                let inner = b64_field(s, &[k])?;
                std::str::from_utf8(&inner)
                    .ok()
                    .and_then(base64_decode)
                    .ok_or_else(|| format!("malformed Rekor body: {k}"))
            };
            let list = get(&v, &["spec", "content", "envelope", "signatures"]).and_then(Value::as_array);
            let sigs = list
                .map(|l| {
                    l.iter()
                        .take(4)
                        .map(|s| Ok((twice(s, "sig")?, b64_field(s, &["publicKey"])?)))
                        .collect::<R<Vec<_>>>()
                })
                .transpose()?
                .unwrap_or_default();
            ((get(&v, &["spec", "content", "payloadHash"]), sha256(&[payload])), sigs)
        }
        ((k, ver), _) => {
            return Err(format!(
                "an unsupported Rekor entry kind {} {} for this signature",
                crate::error::Quoted(k),
                crate::error::Quoted(ver)
            ))
        }
    };
    let (h, expected) = hash;
    if h.and_then(|h| h.get("algorithm")).and_then(Value::as_str) != Some("sha256")
        || h.and_then(|h| h.get("value")).and_then(Value::as_str) != Some(hex(&expected).as_str())
    {
        return Err(want("digest"));
    }
    if sigs.len() != 1 || sigs[0].0 != signature {
        return Err(want("signature"));
    }
    if pem_der(&sigs[0].1).as_deref() != Some(cert) {
        return Err(want("certificate"));
    }
    Ok(())
}

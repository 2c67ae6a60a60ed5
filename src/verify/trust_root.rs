//! A sigstore `trusted_root.json`: the Fulcio CAs, Rekor logs and CT logs
//! a device trusts, each with its `validFor` window. Keys of types minipull
//! cannot verify with are skipped, not fatal (a root lists RSA logs too).

use super::key::PublicKey;
use crate::auth::base64_decode;
use serde_json::Value;

type R<T> = std::result::Result<T, String>;

/// A root larger than this is refused.
pub const MAX_ROOT: u64 = 1024 * 1024;
/// At most this many entries per list.
const MAX_ENTRIES: usize = 64;

/// A time window in seconds since 1970; `end` open when absent.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub start: i64,
    pub end: Option<i64>,
}

impl Window {
    fn parse(v: Option<&Value>) -> R<Window> {
        let time = |k: &str| -> R<Option<i64>> {
            match v.and_then(|w| w.get(k)) {
                None | Some(Value::Null) => Ok(None),
                Some(t) => t
                    .as_str()
                    .and_then(super::rfc3339)
                    .map(|(s, _)| Some(s))
                    .ok_or_else(|| format!("validFor.{k} is not an RFC 3339 time")),
            }
        };
        Ok(Window {
            start: time("start")?.ok_or("an entry without validFor.start")?,
            end: time("end")?,
        })
    }
    pub fn contains(&self, t: i64) -> bool {
        t >= self.start && self.end.is_none_or(|e| t <= e)
    }
}

/// A transparency log (Rekor or CT): its id (SHA-256 of its key) and key.
#[derive(Debug, Clone)]
pub struct Log {
    pub id: Vec<u8>,
    pub key: PublicKey,
    pub valid: Window,
}

impl Log {
    pub fn valid_at(&self, t: i64) -> bool {
        self.valid.contains(t)
    }
}

/// A Fulcio CA: its chain (DER, leaf-most first, root last).
#[derive(Debug, Clone)]
pub struct Ca {
    pub certs: Vec<Vec<u8>>,
    pub valid: Window,
}

/// The parsed trusted root.
#[derive(Debug, Clone, Default)]
pub struct TrustRoot {
    pub cas: Vec<Ca>,
    pub tlogs: Vec<Log>,
    pub ctlogs: Vec<Log>,
}

fn list<'v>(v: &'v Value, k: &str) -> R<&'v [Value]> {
    match v.get(k) {
        None => Ok(&[]),
        Some(Value::Array(a)) if a.len() <= MAX_ENTRIES => Ok(a),
        _ => Err(format!("{k} is not a list of at most {MAX_ENTRIES}")),
    }
}

fn bytes(v: Option<&Value>, what: &str) -> R<Vec<u8>> {
    v.and_then(Value::as_str)
        .and_then(base64_decode)
        .ok_or_else(|| format!("{what} is missing or not base64"))
}

fn logs(v: &Value, k: &str) -> R<Vec<Log>> {
    let mut out = Vec::new();
    for e in list(v, k)? {
        let pk = e.get("publicKey");
        let der = bytes(pk.and_then(|p| p.get("rawBytes")), "publicKey.rawBytes")?;
        // An algorithm we do not have: skip the log, its entries will not verify.
        let Ok(key) = PublicKey::from_spki(&der) else { continue };
        out.push(Log {
            id: bytes(e.get("logId").and_then(|l| l.get("keyId")), "logId.keyId")?,
            key,
            valid: Window::parse(pk.and_then(|p| p.get("validFor")))?,
        });
    }
    Ok(out)
}

impl TrustRoot {
    /// Parse the JSON text of a trusted root.
    pub fn parse(text: &[u8]) -> R<TrustRoot> {
        let v: Value = serde_json::from_slice(text).map_err(|e| format!("not JSON ({e})"))?;
        let media = v.get("mediaType").and_then(Value::as_str).unwrap_or_default();
        if !media.starts_with("application/vnd.dev.sigstore.trustedroot") {
            return Err("not a sigstore trusted root (mediaType)".into());
        }
        let mut cas = Vec::new();
        for e in list(&v, "certificateAuthorities")? {
            let chain = e
                .get("certChain")
                .map(|c| list(c, "certificates"))
                .transpose()?
                .unwrap_or_default();
            let certs = chain
                .iter()
                .map(|c| bytes(c.get("rawBytes"), "a CA certificate"))
                .collect::<R<Vec<_>>>()?;
            if certs.is_empty() {
                return Err("a certificate authority without certificates".into());
            }
            cas.push(Ca {
                certs,
                valid: Window::parse(e.get("validFor"))?,
            });
        }
        Ok(TrustRoot {
            cas,
            tlogs: logs(&v, "tlogs")?,
            ctlogs: logs(&v, "ctlogs")?,
        })
    }
}

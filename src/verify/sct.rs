//! Embedded SCTs (RFC 6962 §3.2): a TLS-encoded list in the leaf, each
//! signed by a CT log over the precertificate (the TBS without the list,
//! and the SHA-256 of the issuer's public key).

use super::trust_root::TrustRoot;

type R<T> = std::result::Result<T, String>;

/// At most this many SCTs are examined.
const MAX_SCTS: usize = 16;

/// A TLS `opaque<0..2^16-1>`: its bytes, and what follows.
fn u16_field(b: &[u8]) -> R<(&[u8], &[u8])> {
    let bad = || "malformed SCT list".to_string();
    let n = u16::from_be_bytes([*b.first().ok_or_else(bad)?, *b.get(1).ok_or_else(bad)?]) as usize;
    let field = b.get(2..2 + n).ok_or_else(bad)?;
    Ok((field, &b[2 + n..]))
}

/// Whether at least one SCT of `list` verifies with a CT log key of the
/// root valid at its timestamp. `tbs`: the precertificate TBS.
pub fn verify(list: &[u8], tbs: &[u8], issuer_spki: &[u8], root: &TrustRoot) -> R<()> {
    let (mut items, rest) = u16_field(list)?;
    if !rest.is_empty() {
        return Err("malformed SCT list: trailing bytes".into());
    }
    let issuer_hash = ring::digest::digest(&ring::digest::SHA256, issuer_spki);
    let mut why = String::from("the certificate has no SCT");
    for _ in 0..MAX_SCTS {
        if items.is_empty() {
            break;
        }
        let (sct, next) = u16_field(items)?;
        items = next;
        // version(1) log_id(32) timestamp(8) extensions<2> signature: alg(2) sig<2>
        let (Some(&0), Some(log_id), Some(time)) = (sct.first(), sct.get(1..33), sct.get(33..41)) else {
            why = "an SCT of an unknown version or truncated".into();
            continue;
        };
        let (extensions, rest) = u16_field(&sct[41..])?;
        let (signature, end) = u16_field(rest.get(2..).ok_or("malformed SCT")?)?;
        if !end.is_empty() {
            return Err("malformed SCT: trailing bytes".into());
        }
        let millis = u64::from_be_bytes(time.try_into().map_err(|_| "malformed SCT")?);
        let Some(log) = root.ctlogs.iter().find(|l| l.id == log_id) else {
            why = "the SCT is from a CT log not in the trusted root".into();
            continue;
        };
        if !log.valid_at((millis / 1000) as i64) {
            why = "the SCT's CT log was not valid at its timestamp".into();
            continue;
        }
        let mut m = vec![0u8, 0];
        m.extend_from_slice(time);
        m.extend([0, 1]);
        m.extend_from_slice(issuer_hash.as_ref());
        let n = tbs.len();
        m.extend([(n >> 16) as u8, (n >> 8) as u8, n as u8]);
        m.extend_from_slice(tbs);
        m.extend((extensions.len() as u16).to_be_bytes());
        m.extend_from_slice(extensions);
        if log.key.verifies(&m, signature) {
            return Ok(());
        }
        why = "the embedded SCT does not verify with its CT log's key".into();
    }
    Err(why)
}

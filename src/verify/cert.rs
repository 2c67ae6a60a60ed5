//! What a Fulcio leaf certificate says that webpki does not read: the
//! identity (SAN: URI, email or Fulcio's otherName), the OIDC issuer
//! (Fulcio's extensions v1 `1.3.6.1.4.1.57264.1.1` and v2 `…1.8`) and the
//! embedded SCT list, plus the precertificate TBS the SCTs sign. The chain,
//! validity and key usage are webpki's job (see `keyless.rs`).

use super::der::{encode, Der};

type R<T> = std::result::Result<T, String>;

const OID_SAN: &[u8] = &[0x55, 0x1d, 0x11];
const OID_SCT_LIST: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0xd6, 0x79, 0x02, 0x04, 0x02];
/// 1.3.6.1.4.1.57264.1 (Fulcio's arc), then the last arc.
const FULCIO: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x83, 0xbf, 0x30, 0x01];
/// Extensions a certificate may carry at most.
const MAX_EXTENSIONS: usize = 32;

/// A parsed leaf.
pub struct Leaf<'a> {
    /// The TBS elements before the extensions, each whole.
    head: Vec<&'a [u8]>,
    /// The extensions, each whole, with their OIDs.
    extensions: Vec<(&'a [u8], &'a [u8])>,
    /// The SubjectPublicKeyInfo, whole.
    pub spki: &'a [u8],
    /// The first SAN: email, URI or Fulcio's otherName.
    pub san: Option<String>,
    /// The OIDC issuer (v2 or v1 extension).
    pub issuer: Option<String>,
    /// The TLS-encoded SCT list (the inner OCTET STRING's contents).
    pub scts: Option<&'a [u8]>,
}

fn fulcio(oid: &[u8], arc: u8) -> bool {
    oid.len() == FULCIO.len() + 1 && oid.starts_with(FULCIO) && oid[FULCIO.len()] == arc
}

fn utf8(b: &[u8], what: &str) -> R<String> {
    String::from_utf8(b.to_vec()).map_err(|_| format!("malformed certificate: {what} is not UTF-8"))
}

/// The first name in a GeneralNames we can match against: rfc822Name,
/// URI, or the otherName Fulcio uses for usernames.
fn san(value: &[u8]) -> R<Option<String>> {
    let top = Der::new(value);
    let mut names = top.inner(value)?.enter(0x30)?;
    while !names.is_empty() {
        let n = names.element()?;
        match n.tag {
            0x81 => return utf8(n.body, "an email SAN").map(Some),
            0x86 => return utf8(n.body, "a URI SAN").map(Some),
            0xa0 => {
                let mut o = names.inner(n.body)?;
                let oid = o.expect(0x06)?.body;
                let mut v = o.enter(0xa0)?;
                let s = v.expect(0x0c)?;
                if fulcio(oid, 7) {
                    return utf8(s.body, "the otherName SAN").map(Some);
                }
            }
            _ => {}
        }
    }
    Ok(None)
}

impl<'a> Leaf<'a> {
    /// Parse a DER certificate.
    pub fn parse(der: &'a [u8]) -> R<Leaf<'a>> {
        let mut top = Der::new(der);
        let mut cert = top.enter(0x30)?;
        top.end()?;
        let mut tbs = cert.enter(0x30)?;
        let mut head: Vec<&[u8]> = Vec::new();
        let mut spki = None;
        let mut leaf = Leaf {
            head: Vec::new(),
            extensions: Vec::new(),
            spki: &[],
            san: None,
            issuer: None,
            scts: None,
        };
        let (mut v1, mut v2) = (None, None);
        while !tbs.is_empty() {
            let t = tbs.element()?;
            if t.tag != 0xa3 {
                // version, serial, signature, issuer, validity, subject, spki.
                if head.len() == 6 || (head.len() == 5 && !head[0].starts_with(&[0xa0])) {
                    spki.get_or_insert(t.raw);
                }
                head.push(t.raw);
                continue;
            }
            let mut exts = tbs.inner(t.body)?.enter(0x30)?;
            while !exts.is_empty() {
                let e = exts.expect(0x30)?;
                let mut f = exts.inner(e.body)?;
                let oid = f.expect(0x06)?.body;
                f.optional(0x01)?;
                let value = f.expect(0x04)?.body;
                f.end()?;
                if leaf.extensions.iter().any(|(o, _)| *o == oid) {
                    return Err("malformed certificate: a duplicate extension".into());
                }
                if leaf.extensions.len() == MAX_EXTENSIONS {
                    return Err("malformed certificate: too many extensions".into());
                }
                leaf.extensions.push((oid, e.raw));
                if oid == OID_SAN {
                    leaf.san = san(value)?;
                } else if oid == OID_SCT_LIST {
                    let mut o = Der::new(value);
                    leaf.scts = Some(o.expect(0x04)?.body);
                    o.end()?;
                } else if fulcio(oid, 1) {
                    v1 = Some(utf8(value, "the issuer (v1)")?);
                } else if fulcio(oid, 8) {
                    let mut o = Der::new(value);
                    v2 = Some(utf8(o.expect(0x0c)?.body, "the issuer (v2)")?);
                    o.end()?;
                }
            }
            tbs.end()?;
        }
        leaf.spki = spki.ok_or("malformed certificate: no public key")?;
        leaf.head = head;
        leaf.issuer = match (v1, v2) {
            (Some(a), Some(b)) if a != b => {
                return Err(format!(
                    "the certificate names two different OIDC issuers ({} and {})",
                    crate::error::Quoted(&a),
                    crate::error::Quoted(&b)
                ))
            }
            (a, b) => b.or(a),
        };
        Ok(leaf)
    }

    /// The TBS the CT log signed: this one without the SCT list extension.
    pub fn precert_tbs(&self) -> Vec<u8> {
        let exts: Vec<u8> = self
            .extensions
            .iter()
            .filter(|(oid, _)| *oid != OID_SCT_LIST)
            .flat_map(|(_, raw)| raw.iter().copied())
            .collect();
        let mut body: Vec<u8> = self.head.concat();
        if !exts.is_empty() {
            body.extend(encode(0xa3, &encode(0x30, &exts)));
        }
        encode(0x30, &body)
    }
}

//! Keyless signatures (a short-lived Fulcio certificate logged in Rekor),
//! verified offline against a shipped trusted root. The clock is never
//! read for the decision: the certificate chain, the CA and every log are
//! judged at the time Rekor vouches for (the SET's `integratedTime`), so a
//! device at 1970 decides exactly as one in 2030. One core, two callers:
//! images (`classic`, `bundle` with [`Mode::Image`]) and blobs (the
//! conformance client, [`Mode::Blob`]).

use super::cert::Leaf;
use super::key::PublicKey;
use super::rekor::{check_body, Entry, Inclusion, Signed};
use super::trust_root::TrustRoot;
use crate::auth::base64_decode;
use serde_json::Value;

type R<T> = std::result::Result<T, String>;

const CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];

/// One accepted identity: the certificate's SAN and OIDC issuer.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub san: String,
    pub issuer: String,
}

impl Identity {
    /// Check the pattern: the SAN exact, or a prefix ending in one `*`
    /// right after a `/` or `@` (so `…/acme*` cannot match `acme-evil`).
    pub fn new(san: &str, issuer: &str) -> R<Identity> {
        let stars = san.matches('*').count();
        if san == "*" || stars > 1 || (stars == 1 && !(san.ends_with("/*") || san.ends_with("@*"))) {
            return Err(format!(
                "--certificate-identity {}: use the exact identity, or a prefix ending in `/*` or `@*`",
                crate::error::Quoted(san)
            ));
        }
        if issuer.is_empty() || san.is_empty() {
            return Err("--certificate-identity and --certificate-oidc-issuer must not be empty".into());
        }
        Ok(Identity {
            san: san.to_string(),
            issuer: issuer.to_string(),
        })
    }

    pub fn matches(&self, san: &str, issuer: &str) -> bool {
        let san_ok = match self.san.strip_suffix('*') {
            Some(prefix) => san.starts_with(prefix) && san.len() > prefix.len(),
            None => san == self.san,
        };
        san_ok && issuer == self.issuer
    }
}

/// What a keyless signature proved.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub san: String,
    pub issuer: String,
    pub integrated_time: i64,
    pub log_index: i64,
    /// The leaf's key, to check the signature itself with.
    pub key: PublicKey,
}

/// The time now if the kernel says its clock is synchronized (NTP), for
/// the one sanity check that uses it: an entry logged in the future.
pub fn synced_now() -> Option<i64> {
    // SAFETY: adjtimex with modes 0 only reads into the zeroed struct.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    let state = unsafe { libc::adjtimex(&mut tx) };
    // time_t is 32 bits in the libc crate's 32-bit musl targets (armv7).
    #[allow(clippy::useless_conversion)]
    let now = i64::from(tx.time.tv_sec);
    (state >= 0 && state != libc::TIME_ERROR && tx.status & libc::STA_UNSYNC == 0).then_some(now)
}

/// The certificate checks, at `t`: the chain to a Fulcio CA of the root
/// valid then (webpki, code-signing EKU), an SCT from a CT log of the
/// root, and the identity.
fn check_cert(der: &[u8], root: &TrustRoot, t: i64, identities: &[Identity]) -> R<Accepted> {
    use webpki::ring as alg;
    let leaf = Leaf::parse(der)?;
    let key = PublicKey::from_spki(leaf.spki).map_err(|e| format!("the certificate's key: {e}"))?;
    let ee_der = rustls::pki_types::CertificateDer::from(der);
    let ee = webpki::EndEntityCert::try_from(&ee_der).map_err(|e| format!("malformed certificate ({e})"))?;
    let algs = [
        alg::ECDSA_P256_SHA256,
        alg::ECDSA_P384_SHA384,
        alg::ECDSA_P256_SHA384,
        alg::ECDSA_P384_SHA256,
        alg::ED25519,
    ];
    let when = rustls::pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(t as u64));
    let mut why = String::from("no certificate authority of the trusted root was valid at the entry's time");
    let mut issuer_spki = None;
    for ca in root.cas.iter().filter(|c| c.valid.contains(t)) {
        let Some((anchor, inter)) = ca.certs.split_last() else {
            continue;
        };
        let anchor = rustls::pki_types::CertificateDer::from(anchor.as_slice());
        let Ok(anchor) = webpki::anchor_from_trusted_cert(&anchor) else {
            continue;
        };
        let inter: Vec<_> = inter
            .iter()
            .map(|c| rustls::pki_types::CertificateDer::from(c.as_slice()))
            .collect();
        let usage = webpki::KeyUsage::required(CODE_SIGNING);
        match ee.verify_for_usage(&algs, &[anchor], &inter, when, usage, None, None) {
            Ok(path) => {
                issuer_spki = Some(path.issuer_spki().as_ref().to_vec());
                break;
            }
            Err(e) => {
                why = format!(
                    "the certificate does not chain to a Fulcio CA of the trusted root at the entry's time ({e:?})"
                )
            }
        }
    }
    let issuer_spki = issuer_spki.ok_or(why)?;
    let scts = leaf.scts.ok_or("the certificate has no embedded SCT")?;
    super::sct::verify(scts, &leaf.precert_tbs(), &issuer_spki, root)?;
    let san = leaf.san.ok_or("the certificate has no identity (SAN)")?;
    let issuer = leaf.issuer.ok_or("the certificate has no OIDC issuer extension")?;
    if !identities.iter().any(|i| i.matches(&san, &issuer)) {
        return Err(format!(
            "signed by {} (issuer {}), not an identity given with --certificate-identity",
            crate::error::Quoted(&san),
            crate::error::Quoted(&issuer)
        ));
    }
    Ok(Accepted {
        san,
        issuer,
        integrated_time: t,
        log_index: 0,
        key,
    })
}

fn time_checks(entry: &Entry, root: &TrustRoot, now: Option<i64>) -> R<i64> {
    let t = entry.verify_set(root)?;
    if t < 0 || now.is_some_and(|n| t > n + 300) {
        return Err("the Rekor entry's integrated time is in the future".into());
    }
    Ok(t)
}

/// A classic keyless signature layer: `signature` over `payload`, the
/// certificate and Rekor bundle annotations. Returns the leaf's key, with
/// which the caller checks the signature and what the payload says.
pub fn classic(
    payload: &[u8],
    signature: &[u8],
    cert_pem: &str,
    bundle: &str,
    root: &TrustRoot,
    identities: &[Identity],
    now: Option<i64>,
) -> R<Accepted> {
    let cert = super::rekor::pem_der(cert_pem.as_bytes()).ok_or("malformed: the certificate annotation is not PEM")?;
    let v: Value =
        serde_json::from_slice(bundle.as_bytes()).map_err(|_| "malformed: the Rekor bundle annotation is not JSON")?;
    let p = v.get("Payload").ok_or("malformed: the Rekor bundle has no Payload")?;
    let int = |k: &str| {
        p.get(k)
            .and_then(Value::as_i64)
            .ok_or(format!("malformed: Rekor bundle {k}"))
    };
    let entry = Entry {
        body_b64: p
            .get("body")
            .and_then(Value::as_str)
            .ok_or("malformed: Rekor bundle body")?
            .to_string(),
        integrated_time: int("integratedTime")?,
        log_index: int("logIndex")?,
        log_id: p
            .get("logID")
            .and_then(Value::as_str)
            .and_then(unhex)
            .ok_or("malformed: Rekor bundle logID")?,
        set: Some(
            v.get("SignedEntryTimestamp")
                .and_then(Value::as_str)
                .and_then(base64_decode)
                .ok_or("malformed: the Rekor SET is not base64")?,
        ),
        inclusion: None,
    };
    let digest = ring::digest::digest(&ring::digest::SHA256, payload);
    check_body(&entry.body_b64, Signed::Digest(digest.as_ref()), signature, &cert)?;
    let t = time_checks(&entry, root, now)?;
    let mut a = check_cert(&cert, root, t, identities)?;
    a.log_index = entry.log_index;
    if !a.key.verifies(payload, signature) {
        return Err("the signature does not verify with the certificate (payload altered?)".into());
    }
    Ok(a)
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// What a bundle is checked as.
pub enum Mode<'a> {
    /// An image signature: DSSE only (the caller checks the statement).
    Image,
    /// A blob (the conformance client): this artifact is what is signed.
    Blob(Artifact<'a>),
}

/// A blob to check a bundle against: its bytes, or only its sha256 (enough
/// for a DSSE statement naming it; a `messageSignature` needs the bytes, as
/// ring verifies ECDSA over a message, never over a given digest).
#[derive(Clone, Copy)]
pub enum Artifact<'a> {
    Bytes(&'a [u8]),
    Sha256([u8; 32]),
}

impl Artifact<'_> {
    fn sha256(&self) -> [u8; 32] {
        match self {
            Artifact::Bytes(b) => {
                let mut d = [0u8; 32];
                d.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, b).as_ref());
                d
            }
            Artifact::Sha256(d) => *d,
        }
    }

    fn bytes(&self) -> R<&[u8]> {
        match self {
            Artifact::Bytes(b) => Ok(b),
            Artifact::Sha256(_) => Err(
                "a messageSignature is verified over the artifact's bytes: give the file, \
                                        not its digest"
                    .into(),
            ),
        }
    }

    /// Whether a DSSE in-toto statement names this artifact as a subject.
    fn named_by(&self, payload_type: &str, dsse_payload: &[u8]) -> R<()> {
        if payload_type != "application/vnd.in-toto+json" {
            return Err("the DSSE payload is not an in-toto statement (payloadType)".into());
        }
        let d = super::rekor::hex(&self.sha256());
        let st: Value = serde_json::from_slice(dsse_payload).map_err(|_| "malformed: the statement is not JSON")?;
        let named = st.get("subject").and_then(Value::as_array).is_some_and(|s| {
            s.iter()
                .any(|s| field(s, &["digest", "sha256"]).and_then(Value::as_str) == Some(d.as_str()))
        });
        match named {
            true => Ok(()),
            false => Err("the statement's subject is not the artifact".into()),
        }
    }
}

fn field<'v>(v: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

fn b64(v: &Value, path: &[&str]) -> R<Vec<u8>> {
    field(v, path)
        .and_then(Value::as_str)
        .and_then(base64_decode)
        .ok_or_else(|| format!("malformed bundle: {} is missing or not base64", path.join(".")))
}

fn num(v: &Value, path: &[&str]) -> R<i64> {
    let f = field(v, path);
    f.and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .or_else(|| f.and_then(Value::as_i64))
        .filter(|n| *n >= 0)
        .ok_or_else(|| format!("malformed bundle: {} is missing or not a number", path.join(".")))
}

/// The bundle's certificate (DER), or `None` when it is signed with a key.
pub fn bundle_cert(b: &Value) -> R<Option<Vec<u8>>> {
    let m = b
        .get("verificationMaterial")
        .ok_or("malformed bundle: no verificationMaterial")?;
    if m.get("publicKey").is_some() {
        return Ok(None);
    }
    if m.get("certificate").is_some() {
        return b64(m, &["certificate", "rawBytes"]).map(Some);
    }
    let chain = field(m, &["x509CertificateChain", "certificates"])
        .and_then(Value::as_array)
        .ok_or("malformed bundle: no certificate")?;
    let leaf = chain.first().ok_or("malformed bundle: an empty certificate chain")?;
    b64(leaf, &["rawBytes"]).map(Some)
}

/// Verify a keyless bundle (v0.1–v0.3, one Rekor v1 entry) up to and
/// including the signature.
pub fn bundle(b: &Value, root: &TrustRoot, identities: &[Identity], now: Option<i64>, mode: Mode) -> R<Accepted> {
    let media = b.get("mediaType").and_then(Value::as_str).unwrap_or_default();
    let v01 = match media {
        "application/vnd.dev.sigstore.bundle+json;version=0.1" => true,
        "application/vnd.dev.sigstore.bundle+json;version=0.2"
        | "application/vnd.dev.sigstore.bundle+json;version=0.3"
        | "application/vnd.dev.sigstore.bundle.v0.3+json" => false,
        _ => return Err(format!("an unsupported bundle version {}", crate::error::Quoted(media))),
    };
    let cert = bundle_cert(b)?.ok_or("signed with a key, not a certificate")?;
    let m = b.get("verificationMaterial").ok_or("malformed bundle")?;
    let entries = m
        .get("tlogEntries")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let Some(e) = entries.first() else {
        return Err(match field(m, &["timestampVerificationData", "rfc3161Timestamps"]) {
            Some(_) => "the bundle's only time is an RFC 3161 timestamp: needs RFC 3161 timestamp support, which minipull does not have yet".into(),
            None => "the bundle has no transparency log entry".into(),
        });
    };
    let kind = field(e, &["kindVersion", "kind"])
        .and_then(Value::as_str)
        .unwrap_or_default();
    let version = field(e, &["kindVersion", "version"])
        .and_then(Value::as_str)
        .unwrap_or_default();
    if version == "0.0.2" && matches!(kind, "hashedrekord" | "dsse") {
        return Err("a Rekor v2 entry: Rekor v2 is not supported by minipull yet".into());
    }
    let body_b64 = field(e, &["canonicalizedBody"])
        .and_then(Value::as_str)
        .ok_or("malformed bundle: no canonicalizedBody")?;
    let inclusion = match e.get("inclusionProof") {
        None => None,
        Some(p) => Some(Inclusion {
            index: num(p, &["logIndex"])? as u64,
            size: num(p, &["treeSize"])? as u64,
            root: b64(p, &["rootHash"])?,
            hashes: p
                .get("hashes")
                .and_then(Value::as_array)
                .ok_or("malformed bundle: inclusionProof.hashes")?
                .iter()
                .take(65)
                .map(|h| {
                    h.as_str()
                        .and_then(base64_decode)
                        .ok_or("malformed bundle: a proof hash".to_string())
                })
                .collect::<R<_>>()?,
            checkpoint: field(p, &["checkpoint", "envelope"])
                .and_then(Value::as_str)
                .ok_or("malformed bundle: no checkpoint")?
                .to_string(),
        }),
    };
    let entry = Entry {
        body_b64: body_b64.to_string(),
        integrated_time: num(e, &["integratedTime"])?,
        log_index: num(e, &["logIndex"])?,
        log_id: b64(e, &["logId", "keyId"])?,
        set: match field(e, &["inclusionPromise", "signedEntryTimestamp"]) {
            None => None,
            Some(_) => Some(b64(e, &["inclusionPromise", "signedEntryTimestamp"])?),
        },
        inclusion,
    };
    // What is signed, and the body kind that must log it.
    let (signature, message, signed_digest);
    let dsse_payload;
    if let Some(ms) = b.get("messageSignature") {
        let Mode::Blob(artifact) = mode else {
            return Err("the bundle signs a blob (messageSignature), not an image".into());
        };
        signature = b64(ms, &["signature"])?;
        let d = artifact.sha256();
        if let Some(md) = field(ms, &["messageDigest", "digest"]) {
            if md.as_str().and_then(base64_decode).as_deref() != Some(d.as_ref()) {
                return Err("the bundle's message digest is not the artifact's".into());
            }
        }
        signed_digest = d.to_vec();
        message = artifact.bytes()?.to_vec();
        check_body(&entry.body_b64, Signed::Digest(&signed_digest), &signature, &cert)?;
    } else if let Some(env) = b.get("dsseEnvelope") {
        let sigs = env
            .get("signatures")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        if sigs.len() != 1 {
            return Err("the DSSE envelope must have exactly one signature".into());
        }
        signature = b64(&sigs[0], &["sig"])?;
        dsse_payload = b64(env, &["payload"])?;
        let pt = env
            .get("payloadType")
            .and_then(Value::as_str)
            .ok_or("malformed bundle: payloadType")?;
        message = super::signature::pae(pt, &dsse_payload);
        let signed = match mode {
            Mode::Image => Signed::Dsse(&dsse_payload),
            Mode::Blob(_) => Signed::DsseOrIntoto(&dsse_payload),
        };
        check_body(&entry.body_b64, signed, &signature, &cert)?;
        if let Mode::Blob(artifact) = mode {
            artifact.named_by(pt, &dsse_payload)?;
        }
    } else {
        return Err("malformed bundle: neither messageSignature nor dsseEnvelope".into());
    }
    let t = time_checks(&entry, root, now)?;
    if !v01 || entry.inclusion.is_some() {
        entry.verify_inclusion(root)?;
    }
    let mut a = check_cert(&cert, root, t, identities)?;
    a.log_index = entry.log_index;
    if !a.key.verifies(&message, &signature) {
        return Err("the signature does not verify with the certificate (content altered?)".into());
    }
    Ok(a)
}

/// The conformance client's check (blob semantics): `bundle` over
/// `artifact`, keyless against `identities` and `root`, or with one of
/// `keys` when the bundle names a public key (its signature only: a keyed
/// bundle's log entry is not checked).
pub fn verify_blob(
    bundle_json: &[u8],
    artifact: Artifact,
    root: Option<&TrustRoot>,
    identities: &[Identity],
    keys: &[PublicKey],
) -> R<()> {
    let b: Value = serde_json::from_slice(bundle_json).map_err(|_| "malformed: the bundle is not JSON")?;
    if bundle_cert(&b)?.is_some() {
        let root = root.ok_or("a keyless bundle needs a trusted root")?;
        if identities.is_empty() {
            return Err("a keyless bundle, and no identity was given".into());
        }
        return bundle(&b, root, identities, synced_now(), Mode::Blob(artifact)).map(|_| ());
    }
    if keys.is_empty() {
        return Err("signed with a key, and no key was given".into());
    }
    let (message, signature) = if let Some(ms) = b.get("messageSignature") {
        (artifact.bytes()?.to_vec(), b64(ms, &["signature"])?)
    } else if let Some(env) = b.get("dsseEnvelope") {
        let sigs = env
            .get("signatures")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        if sigs.len() != 1 {
            return Err("the DSSE envelope must have exactly one signature".into());
        }
        let pt = env
            .get("payloadType")
            .and_then(Value::as_str)
            .ok_or("malformed bundle: payloadType")?;
        let payload = b64(env, &["payload"])?;
        artifact.named_by(pt, &payload)?;
        (super::signature::pae(pt, &payload), b64(&sigs[0], &["sig"])?)
    } else {
        return Err("malformed bundle: neither messageSignature nor dsseEnvelope".into());
    };
    match keys.iter().any(|k| k.verifies(&message, &signature)) {
        true => Ok(()),
        false => Err("signed by another key (or the content was altered)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A keyed DSSE bundle (cosign's blob attestation shape) over a statement
    /// naming `subject`, signed with a fresh P-256 key; returns it and the key.
    fn keyed_dsse(subject: &[u8], pt: &str) -> (Vec<u8>, PublicKey) {
        use crate::auth::base64_encode;
        use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        let mut spki = unhex("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap();
        spki.extend_from_slice(pair.public_key().as_ref());
        let d = super::super::rekor::hex(ring::digest::digest(&ring::digest::SHA256, subject).as_ref());
        let st = serde_json::json!({"_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "blob", "digest": {"sha256": d}}],
            "predicateType": "https://example.invalid/p", "predicate": {}})
        .to_string();
        let sig = pair
            .sign(&rng, &super::super::signature::pae(pt, st.as_bytes()))
            .unwrap();
        let b = serde_json::json!({"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "verificationMaterial": {"publicKey": {"hint": "k"}},
            "dsseEnvelope": {"payload": base64_encode(st.as_bytes()), "payloadType": pt,
                "signatures": [{"sig": base64_encode(sig.as_ref())}]}});
        (serde_json::to_vec(&b).unwrap(), PublicKey::from_spki(&spki).unwrap())
    }

    #[test]
    fn a_keyed_dsse_bundle_binds_its_artifact() {
        let (b, key) = keyed_dsse(b"artifact A", "application/vnd.in-toto+json");
        let keys = std::slice::from_ref(&key);
        assert_eq!(verify_blob(&b, Artifact::Bytes(b"artifact A"), None, &[], keys), Ok(()));
        let a_digest: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, b"artifact A")
            .as_ref()
            .try_into()
            .unwrap();
        assert_eq!(verify_blob(&b, Artifact::Sha256(a_digest), None, &[], keys), Ok(()));
        for other in [Artifact::Bytes(b"artifact B"), Artifact::Sha256([7; 32])] {
            let e = verify_blob(&b, other, None, &[], keys).unwrap_err();
            assert!(e.contains("subject is not the artifact"), "{e}");
        }
        let (_, another) = keyed_dsse(b"artifact A", "application/vnd.in-toto+json");
        assert!(verify_blob(&b, Artifact::Bytes(b"artifact A"), None, &[], &[another]).is_err());
        // A statement-shaped payload of another type is not an in-toto statement.
        let (b, key) = keyed_dsse(b"artifact A", "text/plain");
        let e = verify_blob(&b, Artifact::Bytes(b"artifact A"), None, &[], &[key]).unwrap_err();
        assert!(e.contains("not an in-toto statement"), "{e}");
    }

    pub(crate) fn vector(path: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/../shared/sigstore-vectors/keyless/{path}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }
    pub(crate) fn root(which: &str) -> TrustRoot {
        TrustRoot::parse(&vector(&format!(
            "sigstore-rust/crates/sigstore-trust-root/src/{which}"
        )))
        .unwrap()
    }

    /// containers/image's classic keyless signature: payload, signature,
    /// certificate PEM, Rekor bundle annotation.
    struct Classic {
        payload: Vec<u8>,
        sig: Vec<u8>,
        cert: String,
        bundle: String,
    }
    fn classic_vector() -> Classic {
        let f = vector("containers-image/signature/fixtures/dir-img-cosign-fulcio-rekor-valid/signature-1");
        let v: Value = serde_json::from_slice(&f[15..]).unwrap();
        let a = &v["annotations"];
        Classic {
            payload: base64_decode(v["payload"].as_str().unwrap()).unwrap(),
            sig: base64_decode(a["dev.cosignproject.cosign/signature"].as_str().unwrap()).unwrap(),
            cert: a["dev.sigstore.cosign/certificate"].as_str().unwrap().to_string(),
            bundle: a["dev.sigstore.cosign/bundle"].as_str().unwrap().to_string(),
        }
    }
    fn mitr() -> Vec<Identity> {
        vec![Identity::new("mitr@redhat.com", "https://github.com/login/oauth").unwrap()]
    }
    fn run(c: &Classic, root: &TrustRoot, ids: &[Identity]) -> R<Accepted> {
        classic(&c.payload, &c.sig, &c.cert, &c.bundle, root, ids, None)
    }

    #[test]
    fn the_classic_keyless_vector_verifies_with_the_public_good_root() {
        let c = classic_vector();
        let a = run(&c, &root("trusted_root.json"), &mitr()).unwrap();
        assert_eq!(
            (a.san.as_str(), a.issuer.as_str()),
            ("mitr@redhat.com", "https://github.com/login/oauth")
        );
        assert_eq!((a.integrated_time, a.log_index), (1674247893, 11605770));
        // The clock, when synchronized, is only a sanity check on the entry's time.
        assert!(classic(
            &c.payload,
            &c.sig,
            &c.cert,
            &c.bundle,
            &root("trusted_root.json"),
            &mitr(),
            Some(0)
        )
        .unwrap_err()
        .contains("future"));
    }

    #[test]
    fn the_classic_keyless_vector_refuses_every_alteration() {
        let good = classic_vector();
        let prod = root("trusted_root.json");
        let e = |c: &Classic| run(c, &prod, &mitr()).unwrap_err();
        let mut c = classic_vector();
        c.payload[40] ^= 1;
        assert!(e(&c).contains("another digest"), "{}", e(&c));
        let mut c = classic_vector();
        c.sig[20] ^= 1;
        assert!(e(&c).contains("another signature"), "{}", e(&c));
        let mut c = classic_vector();
        c.bundle = c.bundle.replacen("MEUCIQCy", "MEUCIQCz", 1);
        assert!(e(&c).contains("SET does not verify"), "{}", e(&c));
        let mut c = classic_vector();
        c.bundle = c.bundle.replacen("1674247893", "1674247894", 1);
        assert!(e(&c).contains("SET does not verify"), "{}", e(&c));
        // A byte of the certificate (inside its signature): the body no longer names it.
        let mut c = classic_vector();
        c.cert = c.cert.replacen("AjAg0a69", "AjAg0a68", 1);
        assert!(e(&c).contains("another certificate"), "{}", e(&c));
        // Identity: another SAN, another issuer, a prefix that is not one.
        for (san, iss) in [
            ("mitr@redhat.co", "https://github.com/login/oauth"),
            ("mitr@redhat.com", "https://accounts.google.com"),
            ("other@redhat.com", "https://github.com/login/oauth"),
        ] {
            let ids = [Identity::new(san, iss).unwrap()];
            assert!(run(&good, &prod, &ids).unwrap_err().contains("not an identity given"));
        }
        // Any pair of several suffices.
        let ids = [
            Identity::new("x@y.z", "https://github.com/login/oauth").unwrap(),
            mitr().remove(0),
        ];
        assert!(run(&good, &prod, &ids).is_ok());
        // The staging root knows neither this Rekor nor this Fulcio.
        let e = run(&good, &root("trusted_root_staging.json"), &mitr()).unwrap_err();
        assert!(e.contains("log not in the trusted root"), "{e}");
        // A root with the Rekor log but no CA.
        let mut r = prod.clone();
        r.cas.clear();
        assert!(run(&good, &r, &mitr()).unwrap_err().contains("certificate authority"));
        // A root with no CT log: the SCT cannot verify.
        let mut r = prod.clone();
        r.ctlogs.clear();
        assert!(run(&good, &r, &mitr())
            .unwrap_err()
            .contains("CT log not in the trusted root"));
        // The log's validity window must contain the entry's time.
        let mut r = prod.clone();
        r.tlogs[0].valid.start = 1674247894;
        assert!(run(&good, &r, &mitr()).unwrap_err().contains("not valid at"));
    }

    #[test]
    fn identity_patterns() {
        assert!(Identity::new("*", "i").is_err());
        assert!(Identity::new("https://github.com/acme*", "i").is_err());
        assert!(Identity::new("a*/*", "i").is_err());
        let i = Identity::new("https://github.com/acme/*", "i").unwrap();
        assert!(i.matches("https://github.com/acme/os/.github/workflows/r.yml@refs/tags/v1", "i"));
        assert!(!i.matches("https://github.com/acme-evil/os", "i"));
        assert!(!i.matches("https://github.com/acme/", "i"));
        assert!(!i.matches("https://github.com/acme/os", "j"));
        let i = Identity::new("https://github.com/acme/os/.github/workflows/r.yml@*", "i").unwrap();
        assert!(i.matches("https://github.com/acme/os/.github/workflows/r.yml@refs/tags/v1", "i"));
        assert!(!i.matches("https://github.com/acme/os/.github/workflows/r.yml2@x", "i"));
    }
}

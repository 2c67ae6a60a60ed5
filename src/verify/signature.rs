//! The two signature formats cosign writes for an image, checked offline
//! with pinned keys: classic "simple signing" payloads (the
//! `sha256-<hex>.sig` tag) and sigstore bundles with a DSSE envelope (a
//! referrer of the image). Pure functions of bytes: fetching is elsewhere.

use super::key::PublicKey;
use crate::auth::base64_decode;
use crate::digest::Digest;
use serde_json::{Map, Value};

/// Cosign's classic signature layer.
pub const SIMPLESIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The annotation that carries a classic signature, base64.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// A sigstore bundle (cosign 3's default), any version.
pub const BUNDLE_PREFIX: &str = "application/vnd.dev.sigstore.bundle";
/// The predicate of an in-toto statement that is a cosign signature (an
/// attestation signed with the same key has another one).
pub const COSIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";

/// A signature that checked out.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Verified {
    /// `classic` or `bundle`.
    pub format: &'static str,
    /// The fingerprint of the key that verified it (empty: keyless).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub key: String,
    /// The digest it signs.
    pub digest: String,
    /// Keyless: the certificate's identity and issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<SignedBy>,
    /// Keyless: the time the transparency log vouches for.
    #[serde(rename = "integratedTime", skip_serializing_if = "Option::is_none")]
    pub integrated_time: Option<i64>,
    /// Keyless: the entry's index in the transparency log.
    #[serde(rename = "logIndex", skip_serializing_if = "Option::is_none")]
    pub log_index: Option<i64>,
}

/// A keyless signature's identity (the certificate's SAN and OIDC issuer).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SignedBy {
    pub san: String,
    pub issuer: String,
}

impl Verified {
    fn keyed(format: &'static str, key: &PublicKey, digest: &Digest) -> Verified {
        Verified {
            format,
            key: key.fingerprint.clone(),
            digest: digest.to_string(),
            identity: None,
            integrated_time: None,
            log_index: None,
        }
    }
    /// Who signed, for messages: the key or the certificate's identity.
    pub fn by(&self) -> String {
        match &self.identity {
            Some(i) => format!("{} (issuer {})", i.san, i.issuer),
            None => format!("key {}", self.key),
        }
    }
}

/// The first key that verifies `signature` over `message`.
fn key_for<'k>(keys: &'k [PublicKey], message: &[u8], signature: &[u8]) -> Option<&'k PublicKey> {
    keys.iter().find(|k| k.verifies(message, signature))
}

/// The only keys a JSON object may have; anything else is refused.
fn only(obj: &Map<String, Value>, allowed: &[&str], what: &str) -> Result<(), String> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!(
            "malformed: unknown field {} in {what}",
            crate::error::Quoted(k)
        )),
        None => Ok(()),
    }
}

fn object<'v>(v: Option<&'v Value>, what: &str) -> Result<&'v Map<String, Value>, String> {
    v.and_then(Value::as_object)
        .ok_or_else(|| format!("malformed: {what} is missing or not an object"))
}

fn string<'v>(v: Option<&'v Value>, what: &str) -> Result<&'v str, String> {
    v.and_then(Value::as_str)
        .ok_or_else(|| format!("malformed: {what} is missing or not a string"))
}

/// Check a classic signature: `signature_b64` (the annotation) over the
/// exact `payload` bytes, then the payload itself, strictly: it must name
/// `digest`, and `identity` (a repository) when one is required.
pub fn check_classic(
    payload: &[u8],
    signature_b64: &str,
    keys: &[PublicKey],
    digest: &Digest,
    identity: Option<&str>,
) -> Result<Verified, String> {
    let signature = base64_decode(signature_b64.trim()).ok_or("malformed: the signature is not base64")?;
    let key = key_for(keys, payload, &signature).ok_or("signed by another key (or the payload was altered)")?;
    classic_payload(payload, digest, identity)?;
    Ok(Verified::keyed("classic", key, digest))
}

/// What a classic payload must say, once its signature verified: it names
/// `digest`, and `identity` (a repository) when one is required.
pub fn classic_payload(payload: &[u8], digest: &Digest, identity: Option<&str>) -> Result<(), String> {
    let v: Value = serde_json::from_slice(payload).map_err(|_| "malformed: the payload is not JSON")?;
    let top = object(Some(&v), "the payload")?;
    only(top, &["critical", "optional"], "the payload")?;
    let critical = object(top.get("critical"), "critical")?;
    only(critical, &["identity", "image", "type"], "critical")?;
    let kind = string(critical.get("type"), "critical.type")?;
    if kind != "cosign container image signature" {
        return Err(format!("not an image signature (type {})", crate::error::Quoted(kind)));
    }
    let image = object(critical.get("image"), "critical.image")?;
    only(image, &["docker-manifest-digest"], "critical.image")?;
    let signed = string(
        image.get("docker-manifest-digest"),
        "critical.image.docker-manifest-digest",
    )?;
    if signed != digest.to_string() {
        return Err(format!(
            "a signature for another digest ({})",
            crate::error::Clean(signed)
        ));
    }
    let ident = object(critical.get("identity"), "critical.identity")?;
    only(ident, &["docker-reference"], "critical.identity")?;
    let reference = string(ident.get("docker-reference"), "critical.identity.docker-reference")?;
    if let Some(want) = identity {
        names_identity(&[reference], want)?;
    }
    Ok(())
}

/// `--verify-identity`: one of the repositories a signature claims (a
/// reference, possibly with a tag or digest) must be `want` (normalized
/// by [`crate::reference::repository_of`]).
fn names_identity(claimed: &[&str], want: &str) -> Result<(), String> {
    let want_repo = crate::reference::repository_of(want);
    if want_repo.is_some() && claimed.iter().any(|c| crate::reference::repository_of(c) == want_repo) {
        return Ok(());
    }
    let shown: Vec<String> = claimed.iter().map(|c| crate::error::Quoted(c).to_string()).collect();
    Err(format!(
        "signed for {} but --verify-identity requires {}",
        shown.join(", "),
        crate::error::Quoted(want)
    ))
}

/// DSSE's pre-authentication encoding: what a DSSE signature signs.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut m = format!("DSSEv1 {} {} {} ", payload_type.len(), payload_type, payload.len()).into_bytes();
    m.extend_from_slice(payload);
    m
}

/// Verify a bundle's DSSE envelope with any of `keys`; returns the payload
/// and the key that signed it. Checks signatures only, not what is signed.
pub fn check_dsse<'k>(bundle: &[u8], keys: &'k [PublicKey]) -> Result<(Vec<u8>, &'k PublicKey), String> {
    let v: Value = serde_json::from_slice(bundle).map_err(|_| "malformed: the bundle is not JSON")?;
    let top = object(Some(&v), "the bundle")?;
    let media_type = string(top.get("mediaType"), "the bundle's mediaType")?;
    if !media_type.starts_with(BUNDLE_PREFIX) {
        return Err(format!("not a sigstore bundle ({})", crate::error::Quoted(media_type)));
    }
    if top.contains_key("messageSignature") {
        return Err(
            "the bundle signs a blob (messageSignature), not an image; cosign signs images with a DSSE envelope".into(),
        );
    }
    let env = object(top.get("dsseEnvelope"), "dsseEnvelope")?;
    let payload_type = string(env.get("payloadType"), "dsseEnvelope.payloadType")?;
    let payload = base64_decode(string(env.get("payload"), "dsseEnvelope.payload")?)
        .ok_or("malformed: the DSSE payload is not base64")?;
    let sigs = env
        .get("signatures")
        .and_then(Value::as_array)
        .ok_or("malformed: dsseEnvelope.signatures is missing")?;
    let message = pae(payload_type, &payload);
    for s in sigs.iter().take(super::MAX_SIGNATURES) {
        let sig = base64_decode(string(s.get("sig"), "a DSSE signature")?)
            .ok_or("malformed: a DSSE signature is not base64")?;
        if let Some(k) = key_for(keys, &message, &sig) {
            if payload_type != "application/vnd.in-toto+json" {
                return Err(format!(
                    "the DSSE payload is not an in-toto statement ({})",
                    crate::error::Quoted(payload_type)
                ));
            }
            return Ok((payload, k));
        }
    }
    Err("signed by another key (or the envelope was altered)".into())
}

/// Check a bundle signs `digest` as cosign signs an image: a valid DSSE
/// envelope over an in-toto statement whose subject is `digest` and whose
/// predicate is cosign's signature predicate; with `identity`, that
/// subject's `name` must be the repository too (a bundle without one
/// cannot satisfy it: the key may have signed that digest for any repository).
pub fn check_bundle(
    bundle: &[u8],
    keys: &[PublicKey],
    digest: &Digest,
    identity: Option<&str>,
) -> Result<Verified, String> {
    let (payload, key) = check_dsse(bundle, keys)?;
    statement(&payload, digest, identity)?;
    Ok(Verified::keyed("bundle", key, digest))
}

/// What a bundle's in-toto statement must say, once its envelope verified.
pub fn statement(payload: &[u8], digest: &Digest, identity: Option<&str>) -> Result<(), String> {
    let v: Value = serde_json::from_slice(payload).map_err(|_| "malformed: the statement is not JSON")?;
    let predicate = string(v.get("predicateType"), "predicateType")?;
    if predicate != COSIGN_PREDICATE {
        return Err(format!(
            "an attestation ({}), not a signature",
            crate::error::Quoted(predicate)
        ));
    }
    let subjects = v
        .get("subject")
        .and_then(Value::as_array)
        .ok_or("malformed: no subject")?;
    let ours: Vec<&Value> = subjects
        .iter()
        .filter(|s| {
            s.get("digest")
                .and_then(|d| d.get(digest.algorithm().name()))
                .and_then(Value::as_str)
                == Some(digest.hex())
        })
        .collect();
    if ours.is_empty() {
        return Err("a signature for another digest".into());
    }
    if let Some(want) = identity {
        let names: Vec<&str> = ours.iter().filter_map(|s| s.get("name")?.as_str()).collect();
        if names.is_empty() {
            return Err(format!(
                "the bundle names no repository (its statement's subject has no name), so it cannot show the image is {}; sign with `--new-bundle-format=false` for a classic signature, which binds the repository",
                crate::error::Quoted(want)
            ));
        }
        names_identity(&names, want)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(path: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/../shared/sigstore-vectors/{path}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }
    fn key(path: &str) -> PublicKey {
        PublicKey::from_pem(&String::from_utf8(vector(path)).unwrap()).unwrap()
    }
    fn tampered(b: &[u8], at: usize) -> Vec<u8> {
        let mut b = b.to_vec();
        b[at] ^= 1;
        b
    }

    #[test]
    fn classic_vectors_verify_and_a_flipped_byte_does_not() {
        let dir = "classic/containers-image";
        let cases = [
            (
                "dir-img-cosign-valid/signature-1",
                "cosign.pub",
                "dir-img-cosign-valid/manifest.json",
            ),
            (
                "dir-img-cosign-valid-2/signature-2",
                "cosign.pub",
                "dir-img-cosign-valid/manifest.json",
            ),
            (
                "dir-img-cosign-key-rekor-valid/signature-1",
                "cosign2.pub",
                "dir-img-cosign-key-rekor-valid/manifest.json",
            ),
            (
                "dir-img-cosign-valid-with-tag/signature-1",
                "cosign.pub",
                "dir-img-cosign-valid-with-tag/manifest.json",
            ),
        ];
        for (sig, k, manifest) in cases {
            let payload = vector(&format!("{dir}/{sig}.payload"));
            let b64 = String::from_utf8(vector(&format!("{dir}/{sig}.sig.b64"))).unwrap();
            let keys = [key(&format!("{dir}/{k}"))];
            let digest = Digest::sha256_of(&vector(&format!("{dir}/{manifest}")));
            let ok = check_classic(&payload, &b64, &keys, &digest, None).unwrap();
            assert_eq!(ok.digest, digest.to_string());
            for at in [0, payload.len() / 2, payload.len() - 1] {
                assert!(
                    check_classic(&tampered(&payload, at), &b64, &keys, &digest, None).is_err(),
                    "{sig} at {at}"
                );
            }
            // Another image's digest, the other key, bad base64.
            let other = Digest::sha256_of(b"another image");
            assert!(check_classic(&payload, &b64, &keys, &other, None)
                .unwrap_err()
                .contains("another digest"));
            let wrong = if k == "cosign.pub" { "cosign2.pub" } else { "cosign.pub" };
            let e = check_classic(&payload, &b64, &[key(&format!("{dir}/{wrong}"))], &digest, None).unwrap_err();
            assert!(e.contains("another key"), "{e}");
            // Any one key of several suffices.
            assert!(check_classic(
                &payload,
                &b64,
                &[key(&format!("{dir}/{wrong}")), keys[0].clone()],
                &digest,
                None
            )
            .is_ok());
            assert!(check_classic(&payload, "@@@", &keys, &digest, None)
                .unwrap_err()
                .contains("base64"));
        }
        // The identity check, on A1 (192.168.64.2:5000/cosign-signed-single-sample).
        let payload = vector(&format!("{dir}/dir-img-cosign-valid/signature-1.payload"));
        let b64 = String::from_utf8(vector(&format!("{dir}/dir-img-cosign-valid/signature-1.sig.b64"))).unwrap();
        let keys = [key(&format!("{dir}/cosign.pub"))];
        let digest = Digest::sha256_of(&vector(&format!("{dir}/dir-img-cosign-valid/manifest.json")));
        let repo = "192.168.64.2:5000/cosign-signed-single-sample";
        assert!(check_classic(&payload, &b64, &keys, &digest, Some(repo)).is_ok());
        assert!(check_classic(&payload, &b64, &keys, &digest, Some("192.168.64.2:5000/other")).is_err());
        // sigstore-rs's vector (no manifest published): the signature layer only.
        let p = vector("classic/sigstore-rs/payload.json");
        let s = base64_decode(
            std::str::from_utf8(&vector("classic/sigstore-rs/signature.b64"))
                .unwrap()
                .trim(),
        )
        .unwrap();
        let k = key("classic/sigstore-rs/public_key.pem");
        assert!(k.verifies(&p, &s));
        assert!(!k.verifies(&tampered(&p, 10), &s));
    }

    #[test]
    fn the_dsse_vector_verifies_over_pae_but_is_not_an_image_signature() {
        let dir = "bundles/model-transparency-v1.1.0-elliptic-key-p384";
        let bundle = vector(&format!("{dir}/model.sig"));
        let keys = [key(&format!("{dir}/signing-key-pub.pem"))];
        let (payload, _) = check_dsse(&bundle, &keys).unwrap();
        assert!(payload.starts_with(b"{\n  \"_type\": \"https://in-toto.io/Statement/v1\""));
        // Its predicate is the model-signing one: refused as an image signature.
        let d = Digest::parse("sha256:92745110b1ab4368471cbe31664e10174e954b113a3df333db860317b2c6dec4").unwrap();
        assert!(check_bundle(&bundle, &keys, &d, None)
            .unwrap_err()
            .contains("attestation"));
        // One flipped byte of the payload (inside its base64) breaks the PAE.
        let text = String::from_utf8(bundle.clone()).unwrap();
        let at = text
            .find("\"payload\": \"")
            .or_else(|| text.find("\"payload\":\""))
            .unwrap()
            + 20;
        let mut b = bundle.clone();
        b[at] = if b[at] == b'A' { b'B' } else { b'A' };
        assert!(check_dsse(&b, &keys).unwrap_err().contains("another key"));
        // Other key: refused.
        let other = [key("classic/containers-image/cosign.pub")];
        assert!(check_dsse(&bundle, &other).is_err());
    }

    #[test]
    fn message_signature_bundles_are_refused_for_images() {
        let b = vector("bundles/sigstore-conformance-managed-key-happy-path/bundle.sigstore.json");
        let keys = [key("bundles/sigstore-conformance-managed-key-happy-path/key.pub")];
        let e = check_bundle(&b, &keys, &Digest::sha256_of(b"x"), None).unwrap_err();
        assert!(e.contains("signs a blob"), "{e}");
    }

    #[test]
    fn identities_compare_as_normalized_repositories() {
        assert!(
            names_identity(&["index.docker.io/library/os:1@sha256:x"], "os").is_err(),
            "not a digest"
        );
        assert!(names_identity(&["index.docker.io/library/os:1"], "docker.io/library/os").is_ok());
        assert!(names_identity(&["h:5000/fleet/debug", "h:5000/fleet/os:v1"], "h:5000/fleet/os").is_ok());
        let e = names_identity(&["h:5000/fleet/debug"], "h:5000/fleet/os").unwrap_err();
        assert!(e.contains("\"h:5000/fleet/debug\""), "{e}");
        assert!(names_identity(&["not a name"], "not a name").is_err());
    }

    #[test]
    fn pae_matches_the_dsse_spec_example() {
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
    }

    #[test]
    fn payloads_with_unknown_critical_fields_are_refused() {
        // The check runs after the signature, so use a key we hold: none;
        // call the parser path through a payload we sign in-test is not
        // possible without a private key, so check `only` directly.
        let v: Value = serde_json::from_str(r#"{"identity":{},"image":{},"type":"x","extra":1}"#).unwrap();
        assert!(only(v.as_object().unwrap(), &["identity", "image", "type"], "critical").is_err());
    }
}

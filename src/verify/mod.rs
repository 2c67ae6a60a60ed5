//! Signed images: with `--verify-key`, an image is accepted only when a
//! cosign signature of its digest verifies with one of the pinned keys,
//! checked after the tag resolves and before any config or layer is
//! downloaded, and again offline from the layout by `unpack --verify-key`.
//!
//! - [`key`]: PEM public keys (ECDSA P-256, P-384, Ed25519) and ring.
//! - [`signature`]: the two formats cosign writes, as pure functions.
//! - this file: the policy, finding signature material in the registry
//!   (or a mirror) and in a layout, and the proof stored beside the image.
//!
//! Keyed and offline, like `cosign verify --key K --insecure-ignore-tlog`:
//! no transparency log, no certificates.

#[cfg(feature = "keyless")]
pub mod cert;
#[cfg(feature = "keyless")]
pub mod der;
pub mod key;
#[cfg(feature = "keyless")]
pub mod keyless;
#[cfg(feature = "keyless")]
pub mod rekor;
#[cfg(feature = "keyless")]
pub mod sct;
pub mod signature;
#[cfg(feature = "keyless")]
pub mod trust_root;

use crate::digest::Digest;
use crate::error::{Error, Kind, Result};
use crate::layout::{Layout, REF_NAME};
/// The annotation names, kept in the layout (which walks them) and named here too.
pub use crate::layout::{RESOLVED, SIGNS};
use crate::manifest::{self, Descriptor, Manifest};
use crate::mirror::Sources;
pub use key::PublicKey;
pub use signature::Verified;
use signature::{check_bundle, check_classic, BUNDLE_PREFIX, SIGNATURE_ANNOTATION, SIMPLESIGNING};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// At most this many signatures (layers of a signature manifest, bundles
/// among the referrers) are examined.
pub const MAX_SIGNATURES: usize = 64;
/// Signature manifests, payloads and bundles larger than this are refused.
pub const MAX_MATERIAL: u64 = 1024 * 1024;

/// What an image must satisfy to be accepted.
pub struct Policy {
    pub keys: Vec<PublicKey>,
    /// `--verify-identity`: the repository every signature must name (a
    /// classic payload's `docker-reference`, a bundle's `subject[].name`).
    pub identity: Option<String>,
    /// `--certificate-identity` pairs with their `--trusted-root`.
    #[cfg(feature = "keyless")]
    pub keyless: Option<Keyless>,
}

/// Keyless signatures: the identities accepted and the root they chain to.
#[cfg(feature = "keyless")]
pub struct Keyless {
    pub identities: Vec<keyless::Identity>,
    pub root: trust_root::TrustRoot,
    /// The time, only when the kernel says its clock is synchronized.
    pub now: Option<i64>,
}

/// The keyless part of the command line: `--certificate-identity`,
/// `--certificate-oidc-issuer` (matched by position) and `--trusted-root`,
/// the environment's pair and root already added.
#[derive(Default)]
pub struct KeylessArgs {
    pub sans: Vec<String>,
    pub issuers: Vec<String>,
    pub root: Option<PathBuf>,
}

impl KeylessArgs {
    /// Add `$MINIPULL_CERTIFICATE_IDENTITY`, `$MINIPULL_CERTIFICATE_OIDC_ISSUER`
    /// (one pair) and `$MINIPULL_TRUSTED_ROOT` (when no `--trusted-root`).
    pub fn with_env(mut self, get: impl Fn(&str) -> Option<String>) -> KeylessArgs {
        let (san, issuer) = (
            get("MINIPULL_CERTIFICATE_IDENTITY").filter(|s| !s.is_empty()),
            get("MINIPULL_CERTIFICATE_OIDC_ISSUER").filter(|s| !s.is_empty()),
        );
        self.sans.extend(san);
        self.issuers.extend(issuer);
        if self.root.is_none() {
            self.root = get("MINIPULL_TRUSTED_ROOT")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from);
        }
        self
    }
    fn is_empty(&self) -> bool {
        self.sans.is_empty() && self.issuers.is_empty() && self.root.is_none()
    }
}

fn read_small(p: &std::path::Path, max: u64, what: &str) -> Result<Vec<u8>> {
    crate::layout::open_no_follow(p)
        .and_then(|f| {
            use std::io::Read;
            let mut b = Vec::new();
            f.take(max + 1).read_to_end(&mut b).map(|_| b)
        })
        .map_err(|e| Error::new(Kind::Usage, format!("cannot read the {what} {}: {e}", p.display())))
        .and_then(|b| match b.len() as u64 > max {
            true => Err(Error::usage(format!("the {what} {} is too large", p.display()))),
            false => Ok(b),
        })
}

#[cfg(feature = "keyless")]
fn load_keyless(k: KeylessArgs) -> Result<Option<Keyless>> {
    if k.is_empty() {
        return Ok(None);
    }
    if k.sans.len() != k.issuers.len() {
        return Err(Error::usage(format!(
            "{} --certificate-identity but {} --certificate-oidc-issuer",
            k.sans.len(),
            k.issuers.len()
        ))
        .hint("give them in pairs: each identity with the issuer of its token, matched by position"));
    }
    if k.sans.is_empty() {
        return Err(Error::usage(
            "--trusted-root needs --certificate-identity and --certificate-oidc-issuer",
        ));
    }
    let Some(path) = k.root else {
        return Err(Error::usage("--certificate-identity needs --trusted-root")
            .hint("minipull has no built-in root: ship the sigstore trusted_root.json the device trusts"));
    };
    let identities = k
        .sans
        .iter()
        .zip(&k.issuers)
        .map(|(s, i)| keyless::Identity::new(s, i).map_err(Error::usage))
        .collect::<Result<Vec<_>>>()?;
    let text = read_small(&path, trust_root::MAX_ROOT, "trusted root")?;
    let root = trust_root::TrustRoot::parse(&text)
        .map_err(|e| Error::usage(format!("the trusted root {}: {e}", path.display())))?;
    Ok(Some(Keyless {
        identities,
        root,
        now: keyless::synced_now(),
    }))
}

impl Policy {
    /// Keys from `--verify-key` and `$MINIPULL_VERIFY_KEY` (colon-separated
    /// paths) and keyless identities; `None` when none is given. A key or
    /// root that cannot be read or parsed is a usage error, before any
    /// network access.
    pub fn load(
        paths: &[PathBuf],
        env: Option<String>,
        identity: Option<String>,
        kl: KeylessArgs,
    ) -> Result<Option<Policy>> {
        let mut all: Vec<PathBuf> = paths.to_vec();
        all.extend(
            env.iter()
                .flat_map(|e| e.split(':'))
                .filter(|p| !p.is_empty())
                .map(PathBuf::from),
        );
        if let Some(id) = identity.as_deref().filter(|i| i.contains("://")) {
            return Err(Error::usage(format!(
                "--verify-identity {} is not a repository name",
                crate::error::Quoted(id)
            ))
            .hint("--verify-identity names the image's repository; a signer's identity (a workflow URL or an email) is given with --certificate-identity and --certificate-oidc-issuer"));
        }
        #[cfg(feature = "keyless")]
        let keyless = load_keyless(kl)?;
        #[cfg(not(feature = "keyless"))]
        if !kl.is_empty() {
            return Err(Error::usage(
                "this minipull was built without keyless signature support (cargo feature \"keyless\")",
            ));
        }
        #[cfg(feature = "keyless")]
        let none = all.is_empty() && keyless.is_none();
        #[cfg(not(feature = "keyless"))]
        let none = all.is_empty();
        if none {
            if identity.is_some() {
                return Err(Error::usage(
                    "--verify-identity needs --verify-key or --certificate-identity",
                ));
            }
            return Ok(None);
        }
        if let Some(id) = identity
            .as_deref()
            .filter(|i| crate::reference::repository_of(i).is_none())
        {
            return Err(Error::usage(format!(
                "--verify-identity {} is not a repository name",
                crate::error::Quoted(id)
            ))
            .hint("give it as the image is named, e.g. registry.example.com/fleet/os"));
        }
        let mut keys = Vec::new();
        for p in &all {
            let text = String::from_utf8(read_small(p, 64 * 1024, "key")?)
                .map_err(|_| Error::usage(format!("the key {} is not text", p.display())))?;
            keys.push(PublicKey::from_pem(&text).map_err(|e| e.context(p.display()))?);
        }
        Ok(Some(Policy {
            keys,
            identity,
            #[cfg(feature = "keyless")]
            keyless,
        }))
    }
}

/// The signature that proved an image, as it goes into the layout: its
/// manifest and the one blob the proof rests on (the payload or bundle
/// that verified). The rest of what the manifest names (unsigned, chosen by
/// whoever serves it) is not fetched, not stored.
pub struct Proof {
    pub verified: Verified,
    /// The digest signed.
    pub signs: Digest,
    /// The index.json name: cosign's tag for it.
    pub name: String,
    pub media_type: String,
    pub manifest: Vec<u8>,
    pub blobs: Vec<(Digest, Vec<u8>)>,
}

impl Proof {
    /// Write the signature's blobs and manifest, then its index.json entry.
    /// A descriptor of the manifest that disagrees with a blob OUTDIR holds
    /// refuses it: the layout's walks must never meet one.
    pub fn store(&self, layout: &Layout) -> Result<()> {
        if let Ok((_, Manifest::Image(m))) = manifest::parse(&self.manifest, Some(&self.media_type)) {
            for d in std::iter::once(&m.config).chain(&m.layers) {
                layout
                    .has_blob(&d.checked_digest()?, d.checked_size()?, false)
                    .map_err(|e| e.context(format!("signature manifest {}", self.name)))?;
            }
        }
        for (d, bytes) in &self.blobs {
            layout.write_blob(d, bytes)?;
        }
        let digest = Digest::sha256_of(&self.manifest);
        layout.write_blob(&digest, &self.manifest)?;
        let annotations = BTreeMap::from([
            (REF_NAME.to_string(), self.name.clone()),
            (SIGNS.to_string(), self.signs.to_string()),
        ]);
        layout.add_to_index(&Descriptor {
            media_type: self.media_type.clone(),
            digest: digest.to_string(),
            size: self.manifest.len() as i64,
            urls: None,
            platform: None,
            annotations: Some(annotations),
            artifact_type: None,
        })
    }
}

/// A signature manifest: its bytes, parsed.
type Material = (Vec<u8>, Box<manifest::ImageManifest>);

/// Where signature material comes from: the registry (through mirrors) or a layout.
trait Store {
    /// A manifest by tag (`Ok(None)`: there is none), at most [`MAX_MATERIAL`].
    fn tagged(&mut self, tag: &str, accept: &str) -> Result<Option<(Vec<u8>, Option<String>)>>;
    /// A blob by digest, verified.
    fn by_digest(&mut self, d: &Digest) -> Result<Vec<u8>>;
    /// A manifest by digest, verified.
    fn manifest(&mut self, d: &Digest) -> Result<Vec<u8>>;
    /// The referrers of `d` (`Ok(None)`: no referrers API, use the tag).
    fn referrers(&mut self, d: &Digest) -> Result<Option<Vec<u8>>>;
}

struct Remote<'a>(&'a mut Sources);

impl Store for Remote<'_> {
    fn tagged(&mut self, tag: &str, accept: &str) -> Result<Option<(Vec<u8>, Option<String>)>> {
        match self.0.manifest(tag, accept, MAX_MATERIAL) {
            Ok((m, _)) => Ok(Some((m.bytes, m.content_type))),
            Err(e) if e.kind == Kind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
    fn by_digest(&mut self, d: &Digest) -> Result<Vec<u8>> {
        self.0.small_blob(d, MAX_MATERIAL)
    }
    fn manifest(&mut self, d: &Digest) -> Result<Vec<u8>> {
        let (m, _) = self.0.manifest(&d.to_string(), manifest::OCI_MANIFEST, MAX_MATERIAL)?;
        if Digest::of(d.algorithm(), &m.bytes) != *d {
            return Err(Error::integrity(format!(
                "manifest {}: the content does not match its digest",
                d.short()
            )));
        }
        Ok(m.bytes)
    }
    fn referrers(&mut self, d: &Digest) -> Result<Option<Vec<u8>>> {
        match self.0.referrers(d, MAX_MATERIAL) {
            Ok(m) => Ok(Some(m.bytes)),
            Err(e) if e.kind == Kind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A layout's signature entries for one digest, by their names.
struct Local<'a> {
    layout: &'a Layout,
    entries: Vec<Descriptor>,
}

impl Store for Local<'_> {
    fn tagged(&mut self, tag: &str, _: &str) -> Result<Option<(Vec<u8>, Option<String>)>> {
        let Some(e) = self.entries.iter().find(|e| e.annotation(REF_NAME) == Some(tag)) else {
            return Ok(None);
        };
        let bytes = self.layout.read_small_blob(&e.checked_digest()?, MAX_MATERIAL)?;
        Ok(Some((bytes, Some(e.media_type.clone()))))
    }
    fn by_digest(&mut self, d: &Digest) -> Result<Vec<u8>> {
        self.layout.read_small_blob(d, MAX_MATERIAL)
    }
    fn manifest(&mut self, d: &Digest) -> Result<Vec<u8>> {
        self.layout.read_small_blob(d, MAX_MATERIAL)
    }
    /// The stored bundles, listed as a referrers index would list them.
    fn referrers(&mut self, _: &Digest) -> Result<Option<Vec<u8>>> {
        let bundles: Vec<serde_json::Value> = self
            .entries
            .iter()
            .filter(|e| e.annotation(REF_NAME).is_some_and(|n| n.ends_with(".bundle")))
            .map(|e| {
                serde_json::json!({"mediaType": e.media_type, "digest": e.digest, "size": e.size,
                    "artifactType": BUNDLE_PREFIX})
            })
            .collect();
        let index = serde_json::json!({"schemaVersion": 2, "mediaType": manifest::OCI_INDEX, "manifests": bundles});
        Ok(Some(index.to_string().into_bytes()))
    }
}

/// Look for a valid signature of `digest` in the registry (mirrors first,
/// then the registry when a mirror lacks it). Each way it fails adds a
/// reason; authentication and network failures end the pull as usual.
pub fn check_remote(
    sources: &mut Sources,
    policy: &Policy,
    digest: &Digest,
    reasons: &mut Vec<String>,
) -> Result<Option<Proof>> {
    find(&mut Remote(sources), policy, digest, reasons)
}

/// The same, from the signatures stored in a layout (offline).
pub fn check_stored(
    layout: &Layout,
    policy: &Policy,
    digest: &Digest,
    reasons: &mut Vec<String>,
) -> Result<Option<Proof>> {
    let d = digest.to_string();
    let entries = layout
        .entries()?
        .into_iter()
        .filter(|e| e.annotation(SIGNS) == Some(d.as_str()))
        .collect();
    find(&mut Local { layout, entries }, policy, digest, reasons)
}

fn find(store: &mut dyn Store, policy: &Policy, digest: &Digest, reasons: &mut Vec<String>) -> Result<Option<Proof>> {
    let short = digest.short();
    if let Some(p) = classic(store, policy, digest, reasons).map_err(|e| e.context(format!("signatures of {short}")))? {
        return Ok(Some(p));
    }
    bundles(store, policy, digest, reasons).map_err(|e| e.context(format!("signatures of {short}")))
}

/// Material that is not there or not well-formed is a reason, not an error.
fn soft<T>(r: Result<T>, reasons: &mut Vec<String>, what: &str) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if matches!(e.kind, Kind::NotFound | Kind::Integrity) => {
            reasons.push(format!("{what}: malformed or missing ({})", e.message));
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// An image manifest of signature material, parsed.
fn parse_manifest(bytes: &[u8], content_type: Option<&str>) -> Result<Box<manifest::ImageManifest>> {
    match manifest::parse(bytes, content_type)?.1 {
        Manifest::Image(m) => Ok(m),
        Manifest::Index(_) => Err(Error::integrity("an index where a signature manifest was expected")),
    }
}

/// The blob a descriptor of signature material names, bounded, checked
/// against the descriptor's digest (by the store) and size.
fn blob_of(store: &mut dyn Store, d: &Descriptor) -> Result<(Digest, Vec<u8>)> {
    let (digest, size) = (d.checked_digest()?, d.checked_size()?);
    if size > MAX_MATERIAL {
        return Err(Error::integrity(format!("{} is larger than 1 MiB", digest.short())));
    }
    let b = store.by_digest(&digest)?;
    if b.len() as u64 != size {
        return Err(Error::integrity(format!(
            "{} has {} bytes, but its descriptor says {size}",
            digest.short(),
            b.len()
        )));
    }
    Ok((digest, b))
}

fn classic(
    store: &mut dyn Store,
    policy: &Policy,
    digest: &Digest,
    reasons: &mut Vec<String>,
) -> Result<Option<Proof>> {
    let tag = format!("{}-{}.sig", digest.algorithm().name(), digest.hex());
    let accept = format!("{}, {}", manifest::OCI_MANIFEST, manifest::DOCKER_MANIFEST);
    let what = format!("classic signature tag {tag}");
    let Some(found) = soft(store.tagged(&tag, &accept), reasons, &what)? else {
        return Ok(None);
    };
    let Some((bytes, content_type)) = found else {
        reasons.push(format!("{what}: not found (unsigned?)"));
        return Ok(None);
    };
    let Some(m) = soft(parse_manifest(&bytes, content_type.as_deref()), reasons, &what)? else {
        return Ok(None);
    };
    if m.layers.len() > MAX_SIGNATURES {
        reasons.push(format!("{what}: more than {MAX_SIGNATURES} layers"));
        return Ok(None);
    }
    for (i, layer) in m.layers.iter().enumerate() {
        let n = i + 1;
        if layer.media_type != SIMPLESIGNING {
            reasons.push(format!("{what}, layer {n}: not a simple-signing payload"));
            continue;
        }
        let Some(sig) = layer.annotation(SIGNATURE_ANNOTATION) else {
            reasons.push(format!("{what}, layer {n}: no signature annotation"));
            continue;
        };
        let Some(payload) = soft(blob_of(store, layer), reasons, &format!("{what}, layer {n}"))? else {
            continue;
        };
        match classic_one(policy, layer, &payload.1, sig, digest) {
            Ok(verified) => {
                return Ok(Some(Proof {
                    verified,
                    signs: digest.clone(),
                    name: tag,
                    media_type: content_type.unwrap_or_else(|| manifest::OCI_MANIFEST.to_string()),
                    manifest: bytes,
                    blobs: vec![payload],
                }))
            }
            Err(why) => reasons.push(format!("{what}, signature {n}: {why}")),
        }
    }
    Ok(None)
}

fn bundles(
    store: &mut dyn Store,
    policy: &Policy,
    digest: &Digest,
    reasons: &mut Vec<String>,
) -> Result<Option<Proof>> {
    let tag = format!("{}-{}", digest.algorithm().name(), digest.hex());
    // The referrers API, then cosign's fallback tag (distribution 2.8 has no API).
    let listed = match soft(store.referrers(digest), reasons, "referrers")? {
        Some(Some(index)) => Some(index),
        _ => soft(
            store.tagged(&tag, manifest::OCI_INDEX),
            reasons,
            &format!("referrers tag {tag}"),
        )?
        .flatten()
        .map(|(b, _)| b),
    };
    let Some(index) = listed else {
        reasons.push("no sigstore bundle among the referrers".to_string());
        return Ok(None);
    };
    let list = match manifest::parse(&index, Some(manifest::OCI_INDEX)) {
        Ok((_, Manifest::Index(i))) => i.manifests,
        _ => {
            reasons.push("the referrers index is malformed".to_string());
            return Ok(None);
        }
    };
    let mut seen = 0;
    for r in list
        .iter()
        .filter(|r| r.artifact_type.as_deref().is_some_and(|t| t.starts_with(BUNDLE_PREFIX)))
    {
        seen += 1;
        if seen > MAX_SIGNATURES {
            break;
        }
        let what = format!("bundle {}", crate::error::Clean(&r.digest));
        let one = |store: &mut dyn Store| -> Result<Material> {
            let (d, size) = (r.checked_digest()?, r.checked_size()?);
            if size > MAX_MATERIAL {
                return Err(Error::integrity("larger than 1 MiB"));
            }
            let bytes = store.manifest(&d)?;
            if bytes.len() as u64 != size {
                return Err(Error::integrity(format!(
                    "{} bytes, but the index says {size}",
                    bytes.len()
                )));
            }
            let m = parse_manifest(&bytes, Some(manifest::OCI_MANIFEST))?;
            Ok((bytes, m))
        };
        let Some((bytes, m)) = soft(one(store), reasons, &what)? else {
            continue;
        };
        let Some(layer) = m.layers.iter().find(|l| l.media_type.starts_with(BUNDLE_PREFIX)) else {
            reasons.push(format!("{what}: no bundle layer"));
            continue;
        };
        let Some(bundle) = soft(blob_of(store, layer), reasons, &what)? else {
            continue;
        };
        match bundle_one(policy, &bundle.1, digest) {
            Ok(verified) => {
                return Ok(Some(Proof {
                    verified,
                    signs: digest.clone(),
                    name: format!("{tag}.bundle"),
                    media_type: manifest::OCI_MANIFEST.to_string(),
                    manifest: bytes,
                    blobs: vec![bundle],
                }))
            }
            Err(why) => reasons.push(format!("{what}: {why}")),
        }
    }
    if seen == 0 {
        reasons.push("no sigstore bundle among the referrers".to_string());
    }
    Ok(None)
}

/// The certificate of a classic keyless signature, PEM.
pub const CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
/// A classic keyless signature's Rekor bundle (the SET), JSON.
pub const REKOR_ANNOTATION: &str = "dev.sigstore.cosign/bundle";

/// One classic signature layer: keyless when it carries a certificate
/// (checked against the identities), else against the keys.
fn classic_one(
    policy: &Policy,
    layer: &Descriptor,
    payload: &[u8],
    sig: &str,
    digest: &Digest,
) -> std::result::Result<Verified, String> {
    let cert = layer.annotation(CERTIFICATE_ANNOTATION);
    #[cfg(feature = "keyless")]
    if let (Some(cert), Some(k)) = (cert, &policy.keyless) {
        let rekor = layer
            .annotation(REKOR_ANNOTATION)
            .ok_or("a keyless signature without its Rekor bundle: needs RFC 3161 timestamp support, which minipull does not have yet")?;
        let signature = crate::auth::base64_decode(sig.trim()).ok_or("malformed: the signature is not base64")?;
        let a = keyless::classic(payload, &signature, cert, rekor, &k.root, &k.identities, k.now)?;
        signature::classic_payload(payload, digest, policy.identity.as_deref())?;
        return Ok(accepted("classic", a, digest));
    }
    if policy.keys.is_empty() {
        return Err(match cert {
            Some(_) => "a keyless signature, and no --certificate-identity was given".into(),
            None => "signed with a key, and no --verify-key was given".into(),
        });
    }
    check_classic(payload, sig, &policy.keys, digest, policy.identity.as_deref())
}

/// One sigstore bundle: keyless when it carries a certificate.
fn bundle_one(policy: &Policy, bundle: &[u8], digest: &Digest) -> std::result::Result<Verified, String> {
    #[cfg(feature = "keyless")]
    {
        let v: serde_json::Value = serde_json::from_slice(bundle).map_err(|_| "malformed: the bundle is not JSON")?;
        if v.get("messageSignature").is_some() {
            return Err(
                "the bundle signs a blob (messageSignature), not an image; cosign signs images with a DSSE envelope"
                    .into(),
            );
        }
        if keyless::bundle_cert(&v)?.is_some() {
            let Some(k) = &policy.keyless else {
                return Err("a keyless bundle, and no --certificate-identity was given".into());
            };
            let env = v.get("dsseEnvelope").ok_or("malformed: no dsseEnvelope")?;
            if env.get("payloadType").and_then(serde_json::Value::as_str) != Some("application/vnd.in-toto+json") {
                return Err("the DSSE payload is not an in-toto statement".into());
            }
            let a = keyless::bundle(&v, &k.root, &k.identities, k.now, keyless::Mode::Image)?;
            let payload = env
                .get("payload")
                .and_then(serde_json::Value::as_str)
                .and_then(crate::auth::base64_decode)
                .ok_or("malformed: the DSSE payload is not base64")?;
            signature::statement(&payload, digest, policy.identity.as_deref())?;
            return Ok(accepted("bundle", a, digest));
        }
    }
    if policy.keys.is_empty() {
        return Err("signed with a key, and no --verify-key was given".into());
    }
    check_bundle(bundle, &policy.keys, digest, policy.identity.as_deref())
}

#[cfg(feature = "keyless")]
fn accepted(format: &'static str, a: keyless::Accepted, digest: &Digest) -> Verified {
    Verified {
        format,
        key: String::new(),
        digest: digest.to_string(),
        identity: Some(signature::SignedBy {
            san: a.san,
            issuer: a.issuer,
        }),
        integrated_time: Some(a.integrated_time),
        log_index: Some(a.log_index),
    }
}

/// An RFC 3339 time (`2024-05-01T10:00:00.5Z`, `...+02:00`) as
/// (seconds since 1970, nanoseconds), for comparing config `created` times.
pub fn rfc3339(s: &str) -> Option<(i64, u32)> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes().all(|c| c.is_ascii_digit()).then(|| t.parse().ok())?
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0u32;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let frac = s.get(start..i.min(start + 9))?;
        nanos = format!("{frac:0<9}").parse().ok()?;
    }
    let offset = match s.get(i..)? {
        "Z" | "z" => 0,
        o if o.len() == 6 && matches!(&o[..1], "+" | "-") && &o[3..4] == ":" => {
            let m = num(i + 1..i + 3)? * 60 + num(i + 4..i + 6)?;
            if &o[..1] == "-" {
                -m
            } else {
                m
            }
        }
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    Some((days * 86_400 + h * 3600 + mi * 60 + sec - offset * 60, nanos))
}

/// The error when no signature was valid: what was found and why each failed.
pub fn untrusted(what: &str, policy: &Policy, reasons: &[String]) -> Error {
    #[cfg(feature = "keyless")]
    let ids = policy.keyless.as_ref().map_or(0, |k| k.identities.len());
    #[cfg(not(feature = "keyless"))]
    let ids = 0;
    let mut msg = match ids {
        0 => format!(
            "no valid signature for {what} with the {} key(s) given",
            policy.keys.len()
        ),
        n => format!(
            "no valid signature for {what} with the {} key(s) and {n} certificate identit{} given",
            policy.keys.len(),
            if n == 1 { "y" } else { "ies" }
        ),
    };
    for (i, r) in reasons.iter().take(20).enumerate() {
        msg += &format!("{} {r}", if i == 0 { ":" } else { ";" });
    }
    let mut hint = String::from(match ids {
        0 => "sign the image with `cosign sign --key cosign.key IMAGE` using a key given with --verify-key; nothing was downloaded but signature material",
        _ => "sign the image with `cosign sign IMAGE` (keyless) as an identity given with --certificate-identity and --certificate-oidc-issuer, or with a key given with --verify-key; nothing was downloaded but signature material",
    });
    if policy.identity.is_some() {
        hint += "; --verify-identity needs a signature that names the repository: a classic one (`--new-bundle-format=false`) always does, a bundle only when its statement's subject has that name";
    }
    Error::new(Kind::Untrusted, msg).hint(hint)
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[cfg(feature = "keyless")]
    mod keyless_images {
        use super::super::*;

        fn data(name: &str) -> Vec<u8> {
            std::fs::read(format!("{}/tests/data/keyless/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
        }
        fn policy(root: &str, san: &str, issuer: &str, identity: Option<&str>) -> Policy {
            Policy {
                keys: Vec::new(),
                identity: identity.map(str::to_string),
                keyless: Some(Keyless {
                    identities: vec![keyless::Identity::new(san, issuer).unwrap()],
                    root: trust_root::TrustRoot::parse(&data(root)).unwrap(),
                    now: None,
                }),
            }
        }
        const KW: &str =
            "https://github.com/kubewarden/kubewarden-controller/.github/workflows/release.yml@refs/tags/v1.34.0";
        const GHA: &str = "https://token.actions.githubusercontent.com";
        const V03: &str = "sha256:c811d58de79c92f03214e63aa339484e488d694ae8a6283b5f3f17a9faf50172";

        #[test]
        fn a_cosign_3_bundle_is_accepted_as_an_image_signature_and_refused_altered() {
            let b = data("bundle_v03.json");
            let d = Digest::parse(V03).unwrap();
            let v = bundle_one(&policy("trusted_root.json", KW, GHA, None), &b, &d).unwrap();
            let j = serde_json::to_value(&v).unwrap();
            assert_eq!(j["identity"], serde_json::json!({"san": KW, "issuer": GHA}));
            assert!(j["integratedTime"].as_i64().unwrap() > 1_700_000_000 && j["logIndex"].is_i64());
            assert!(j.get("key").is_none());
            // A prefix pattern that ends at a `/`.
            let p = policy("trusted_root.json", "https://github.com/kubewarden/*", GHA, None);
            assert!(bundle_one(&p, &b, &d).is_ok());
            for (p, why) in [
                (
                    policy("trusted_root.json", "https://github.com/kubewarden/other/*", GHA, None),
                    "not an identity given",
                ),
                (
                    policy("trusted_root.json", KW, "https://github.com/login/oauth", None),
                    "not an identity given",
                ),
                (
                    policy("trusted_root_staging.json", KW, GHA, None),
                    "not in the trusted root",
                ),
                // cosign 3 binds only the digest: refused under --verify-identity.
                (
                    policy(
                        "trusted_root.json",
                        KW,
                        GHA,
                        Some("ghcr.io/kubewarden/kubewarden-controller"),
                    ),
                    "names no repository",
                ),
            ] {
                let e = bundle_one(&p, &b, &d).unwrap_err();
                assert!(e.contains(why), "{e}");
            }
            let e = bundle_one(
                &policy("trusted_root.json", KW, GHA, None),
                &b,
                &Digest::sha256_of(b"x"),
            )
            .unwrap_err();
            assert!(e.contains("another digest"), "{e}");
            // One changed character of each part that is checked.
            let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
            let e0 = "/verificationMaterial/tlogEntries/0";
            for ptr in [
                "/dsseEnvelope/payload".to_string(),
                "/dsseEnvelope/signatures/0/sig".to_string(),
                format!("{e0}/inclusionPromise/signedEntryTimestamp"),
                format!("{e0}/inclusionProof/hashes/0"),
                format!("{e0}/inclusionProof/checkpoint/envelope"),
                format!("{e0}/integratedTime"),
                "/verificationMaterial/certificate/rawBytes".to_string(),
            ] {
                let mut v2 = v.clone();
                let part = v2.pointer_mut(&ptr).unwrap();
                let mut t = part.as_str().unwrap().to_string();
                let at = t.len() / 3;
                let c = t.as_bytes()[at];
                let swapped = match c {
                    b'A' => "B",
                    b'0'..=b'8' => "9",
                    b'9' => "8",
                    _ => "A",
                };
                t.replace_range(at..at + 1, swapped);
                *part = serde_json::Value::String(t);
                let b2 = serde_json::to_vec(&v2).unwrap();
                assert!(
                    bundle_one(&policy("trusted_root.json", KW, GHA, None), &b2, &d).is_err(),
                    "{ptr}"
                );
            }
        }

        #[test]
        fn a_keyless_attestation_is_refused_as_an_image_signature() {
            let b = data("oci-attestation.sigstore.json");
            let d = Digest::parse("sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4").unwrap();
            let p = policy(
                "trusted_root_pgi.json",
                "cody@soyland.com",
                "https://github.com/login/oauth",
                None,
            );
            let e = bundle_one(&p, &b, &d).unwrap_err();
            assert!(e.contains("attestation"), "{e}");
        }

        #[test]
        fn the_classic_vector_reports_its_identity_and_log_entry() {
            let f = data("fulcio-rekor-valid.signature-1");
            let v: serde_json::Value = serde_json::from_slice(&f[15..]).unwrap();
            let layer: Descriptor = serde_json::from_value(serde_json::json!({
                "mediaType": SIMPLESIGNING, "digest": "sha256:00", "size": 1, "annotations": v["annotations"]}))
            .unwrap();
            let payload = crate::auth::base64_decode(v["payload"].as_str().unwrap()).unwrap();
            let sig = v["annotations"][SIGNATURE_ANNOTATION].as_str().unwrap();
            let d = Digest::sha256_of(&data("fulcio-rekor-valid.manifest.json"));
            let p = policy(
                "trusted_root.json",
                "mitr@redhat.com",
                "https://github.com/login/oauth",
                None,
            );
            let j = serde_json::to_value(classic_one(&p, &layer, &payload, sig, &d).unwrap()).unwrap();
            assert_eq!(j["integratedTime"], 1674247893);
            assert_eq!(j["logIndex"], 11605770);
            assert_eq!(j["identity"]["san"], "mitr@redhat.com");
            // Without identities, a keyless layer is not checked with keys.
            let keyed = Policy {
                keys: Vec::new(),
                identity: None,
                keyless: None,
            };
            assert!(classic_one(&keyed, &layer, &payload, sig, &d)
                .unwrap_err()
                .contains("keyless"));
        }
    }

    #[test]
    fn rfc3339_times_compare_across_zones_and_fractions() {
        assert_eq!(rfc3339("1970-01-01T00:00:00Z"), Some((0, 0)));
        assert_eq!(rfc3339("2024-02-29T12:00:00Z"), Some((1_709_208_000, 0)));
        assert_eq!(rfc3339("2024-02-29T14:00:00+02:00"), rfc3339("2024-02-29T12:00:00Z"));
        assert!(rfc3339("2024-05-01T10:00:00.5Z") > rfc3339("2024-05-01T10:00:00.123456789Z"));
        for bad in [
            "",
            "2024-05-01",
            "2024-13-01T00:00:00Z",
            "2024-05-01T00:00:00",
            "2024-05-01T00:00:00+0200",
            "yyyy-05-01T00:00:00Z",
        ] {
            assert_eq!(rfc3339(bad), None, "{bad}");
        }
    }
}

//! Manifest and index types, media types, and platform selection.

use crate::digest::Digest;
use crate::error::{Error, Quoted, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_V1: &str = "application/vnd.docker.distribution.manifest.v1+json";
const DOCKER_V1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// What we send as `Accept` for manifests, most preferred first.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// Manifests and indexes larger than this are refused (containerd's limit).
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

/// No real layer comes near this; a descriptor claiming more is hostile or broken.
pub const MAX_BLOB_BYTES: u64 = 1 << 40;

/// Annotation docker buildx puts on attestation manifests in an index.
const DOCKER_REFERENCE_TYPE: &str = "vnd.docker.reference.type";

/// An OCI content descriptor, as found in manifests and indexes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    /// The value of annotation `key`, if it has one.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref().and_then(|a| a.get(key)).map(String::as_str)
    }

    /// The validated digest; a malformed one is an integrity error.
    pub fn checked_digest(&self) -> Result<Digest> {
        Digest::parse(&self.digest)
    }

    /// The size as an unsigned number; negative and absurd sizes are refused
    /// before anything is downloaded.
    pub fn checked_size(&self) -> Result<u64> {
        let size = u64::try_from(self.size).map_err(|_| {
            Error::integrity(format!(
                "descriptor for {} has a negative size {}",
                self.digest, self.size
            ))
        })?;
        if size > MAX_BLOB_BYTES {
            return Err(Error::integrity(format!(
                "descriptor for {} claims {size} bytes, more than the 1 TiB minipull accepts",
                self.digest
            )));
        }
        Ok(size)
    }

    /// Non-distributable ("foreign") layers are fetched from their URLs by
    /// consumers, not from the registry; we skip them.
    pub fn is_foreign(&self) -> bool {
        self.media_type.contains("foreign") || self.media_type.contains("nondistributable")
    }

    fn is_attestation(&self) -> bool {
        self.annotation(DOCKER_REFERENCE_TYPE).is_some()
    }
}

/// The platform an image is built for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(rename = "os.version", default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    #[serde(rename = "os.features", default, skip_serializing_if = "Option::is_none")]
    pub os_features: Option<Vec<String>>,
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = self.variant.as_deref().filter(|v| !v.is_empty()) {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl Platform {
    /// Parse `os/arch[/variant]` as given to `--platform`.
    pub fn parse(s: &str) -> Result<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok_part = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        };
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(|p| ok_part(p)) {
            return Err(Error::usage(format!("invalid platform {}", Quoted(s)))
                .hint("use os/arch or os/arch/variant, e.g. linux/amd64 or linux/arm/v7"));
        }
        let (architecture, variant) = normalize_arch(parts[1], parts.get(2).copied().unwrap_or(""));
        Ok(Platform {
            os: parts[0].to_ascii_lowercase(),
            architecture,
            variant: Some(variant).filter(|v| !v.is_empty()),
            ..Platform::default()
        })
    }

    /// The platform this binary runs on.
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "x86" => "386",
            "aarch64" => "arm64",
            "arm" => "arm",
            "riscv64" => "riscv64",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "powerpc64" => "ppc64",
            "s390x" => "s390x",
            "loongarch64" => "loong64",
            "mips64" => "mips64",
            other => other,
        };
        let variant = match arch {
            "arm64" => "v8",
            "arm" if cfg!(target_feature = "v7") => "v7",
            "arm" if cfg!(target_feature = "v6") => "v6",
            "arm" => "v5",
            _ => "",
        };
        Platform {
            os: std::env::consts::OS.to_string(),
            architecture: arch.to_string(),
            variant: Some(variant.to_string()).filter(|v| !v.is_empty()),
            ..Platform::default()
        }
    }
}

/// Map architecture aliases to their OCI names, and fill in the variant
/// that an absent one implies (arm64 is v8, plain arm is v7).
fn normalize_arch(arch: &str, variant: &str) -> (String, String) {
    let arch = arch.to_ascii_lowercase();
    let variant = variant.to_ascii_lowercase();
    match arch.as_str() {
        "x86_64" | "x86-64" | "amd64" => ("amd64".into(), variant),
        "i386" | "i686" | "x86" | "386" => ("386".into(), variant),
        "aarch64" | "arm64" => match variant.as_str() {
            "" | "8" | "v8" => ("arm64".into(), "v8".into()),
            _ => ("arm64".into(), variant),
        },
        "armhf" => ("arm".into(), "v7".into()),
        "armel" => ("arm".into(), "v6".into()),
        "arm" => match variant.as_str() {
            "" | "7" => ("arm".into(), "v7".into()),
            "5" | "6" | "8" => ("arm".into(), format!("v{variant}")),
            _ => ("arm".into(), variant),
        },
        _ => (arch, variant),
    }
}

/// How well `candidate` serves `wanted`: `Some(0)` is exact, higher is a
/// worse but usable fallback, `None` does not run there.
fn match_score(wanted: &Platform, candidate: &Platform) -> Option<u32> {
    if !candidate.os.eq_ignore_ascii_case(&wanted.os) {
        return None;
    }
    let (warch, wvar) = normalize_arch(&wanted.architecture, wanted.variant.as_deref().unwrap_or(""));
    let (carch, cvar) = normalize_arch(&candidate.architecture, candidate.variant.as_deref().unwrap_or(""));
    if warch != carch {
        return None;
    }
    if wvar == cvar {
        return Some(0);
    }
    if warch == "arm" {
        // An armv7 device runs v6 and v5 code, never the other way round.
        let level = |v: &str| v.strip_prefix('v').and_then(|n| n.parse::<u32>().ok());
        let (w, c) = (level(&wvar)?, level(&cvar)?);
        return (c < w).then(|| w - c);
    }
    // A variant-less image runs on any variant of its architecture.
    cvar.is_empty().then_some(1)
}

/// Choose the manifest for `wanted` among an index's entries, skipping
/// attestations and `unknown/unknown` entries. When nothing matches, the
/// error lists what the index offers.
pub fn select_platform<'a>(manifests: &'a [Descriptor], wanted: &Platform) -> Result<&'a Descriptor> {
    let runnable = manifests.iter().filter(|d| {
        !d.is_attestation()
            && d.platform
                .as_ref()
                .is_some_and(|p| p.os != "unknown" && p.architecture != "unknown")
    });
    let best = runnable
        .clone()
        .filter_map(|d| Some((match_score(wanted, d.platform.as_ref()?)?, d)))
        .min_by_key(|(score, _)| *score);
    if let Some((_, d)) = best {
        return Ok(d);
    }
    let available: Vec<String> = runnable
        .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
        .collect();
    let list = if available.is_empty() {
        "none".to_string()
    } else {
        available.join(", ")
    };
    Err(
        Error::not_found(format!("no image for platform {wanted} in this index; it has: {list}"))
            .hint("choose one with --platform OS/ARCH[/VARIANT], or pull them all with --all-platforms"),
    )
}

/// An image index or Docker manifest list.
#[derive(Debug, Clone, Deserialize)]
pub struct Index {
    pub manifests: Vec<Descriptor>,
}

/// An image manifest (OCI or Docker schema 2), including OCI artifacts.
#[derive(Debug, Clone, Deserialize)]
pub struct ImageManifest {
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// A manifest as served, classified.
#[derive(Debug)]
pub enum Manifest {
    Index(Index),
    Image(Box<ImageManifest>),
}

/// Whether a descriptor's media type is one of the manifests minipull
/// pulls (an index or an image manifest, OCI or Docker).
pub fn is_manifest_type(media_type: &str) -> bool {
    [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST].contains(&media_type)
}

/// Classify and parse manifest bytes, given the response's Content-Type.
/// Returns the effective media type and the parsed manifest.
pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<(String, Manifest)> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        schema_version: Option<i64>,
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        config: Option<serde_json::Value>,
    }
    let ct = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty());
    if matches!(ct.as_deref(), Some(DOCKER_V1) | Some(DOCKER_V1_SIGNED)) {
        return Err(schema1());
    }
    let probe: Probe =
        serde_json::from_slice(bytes).map_err(|e| Error::integrity(format!("the manifest is not valid JSON: {e}")))?;
    if probe.schema_version == Some(1)
        || matches!(probe.media_type.as_deref(), Some(DOCKER_V1) | Some(DOCKER_V1_SIGNED))
    {
        return Err(schema1());
    }
    let field = probe.media_type.as_deref().filter(|t| !t.is_empty());
    let header = ct.as_deref().filter(|t| is_manifest_type(t));
    let media_type = match (field, header) {
        (Some(f), Some(h)) if f != h => {
            return Err(Error::integrity(format!(
                "the manifest says its mediaType is {f} but the registry served it as {h}"
            )))
        }
        (Some(f), _) => f.to_string(),
        (None, Some(h)) => h.to_string(),
        (None, None) if probe.manifests.is_some() => OCI_INDEX.to_string(),
        (None, None) if probe.config.is_some() => OCI_MANIFEST.to_string(),
        (None, None) => {
            return Err(Error::integrity(
                "the manifest has no mediaType and is neither an index nor an image manifest",
            ))
        }
    };
    let malformed = |e: serde_json::Error| Error::integrity(format!("malformed {media_type}: {e}"));
    let manifest = match media_type.as_str() {
        OCI_INDEX | DOCKER_LIST => Manifest::Index(serde_json::from_slice(bytes).map_err(malformed)?),
        OCI_MANIFEST | DOCKER_MANIFEST => Manifest::Image(serde_json::from_slice(bytes).map_err(malformed)?),
        other => {
            return Err(Error::integrity(format!(
                "unsupported manifest media type {}",
                Quoted(other)
            )))
        }
    };
    Ok((media_type, manifest))
}

fn schema1() -> Error {
    Error::integrity("this image uses Docker manifest schema 1, an unsupported, deprecated format")
        .hint("ask the image's publisher to push it again with a current docker or buildah (schema 2 / OCI)")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(platform: &str, attestation: bool) -> Descriptor {
        let parts: Vec<&str> = platform.split('/').collect();
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: format!("sha256:{}", "0".repeat(64)),
            size: 1,
            urls: None,
            platform: Some(Platform {
                os: parts[0].into(),
                architecture: parts[1].into(),
                variant: parts.get(2).map(|v| v.to_string()),
                ..Platform::default()
            }),
            annotations: attestation
                .then(|| BTreeMap::from([(DOCKER_REFERENCE_TYPE.to_string(), "attestation-manifest".to_string())])),
            artifact_type: None,
        }
    }

    fn pick(entries: &[Descriptor], wanted: &str) -> Result<String> {
        select_platform(entries, &Platform::parse(wanted).unwrap()).map(|d| d.platform.as_ref().unwrap().to_string())
    }

    #[test]
    fn picks_exact_platform_and_skips_attestations() {
        let idx = vec![
            entry("unknown/unknown", true),
            entry("linux/amd64", true),
            entry("linux/amd64", false),
            entry("linux/arm64/v8", false),
            entry("linux/arm/v6", false),
            entry("linux/arm/v7", false),
            entry("linux/riscv64", false),
        ];
        let chosen = select_platform(&idx, &Platform::parse("linux/amd64").unwrap()).unwrap();
        assert!(chosen.annotations.is_none(), "must not pick the attestation");
        assert_eq!(pick(&idx, "linux/arm64").unwrap(), "linux/arm64/v8");
        assert_eq!(pick(&idx, "linux/aarch64").unwrap(), "linux/arm64/v8");
        assert_eq!(pick(&idx, "linux/arm").unwrap(), "linux/arm/v7");
        assert_eq!(pick(&idx, "linux/arm/v6").unwrap(), "linux/arm/v6");
        assert_eq!(pick(&idx, "linux/riscv64").unwrap(), "linux/riscv64");
        assert_eq!(pick(&idx, "linux/x86_64").unwrap(), "linux/amd64");
    }

    #[test]
    fn variant_rules() {
        // arm64 without a variant is v8.
        assert_eq!(
            pick(&[entry("linux/arm64", false)], "linux/arm64/v8").unwrap(),
            "linux/arm64"
        );
        // armv7 falls back to the newest older variant, never to a newer one.
        let arm = vec![entry("linux/arm/v5", false), entry("linux/arm/v6", false)];
        assert_eq!(pick(&arm, "linux/arm/v7").unwrap(), "linux/arm/v6");
        assert!(pick(&[entry("linux/arm/v7", false)], "linux/arm/v6").is_err());
        // Plain "arm" in an index means v7.
        assert_eq!(pick(&[entry("linux/arm", false)], "linux/arm/v7").unwrap(), "linux/arm");
        // A variant-less amd64 image serves any amd64; a v3 image does not serve plain amd64.
        assert_eq!(
            pick(&[entry("linux/amd64", false)], "linux/amd64/v2").unwrap(),
            "linux/amd64"
        );
        assert!(pick(&[entry("linux/amd64/v3", false)], "linux/amd64").is_err());
    }

    #[test]
    fn no_match_lists_what_exists() {
        let idx = vec![
            entry("linux/amd64", false),
            entry("linux/s390x", false),
            entry("unknown/unknown", true),
        ];
        let e = pick(&idx, "linux/riscv64").unwrap_err();
        assert_eq!(e.kind, crate::error::Kind::NotFound);
        assert!(e.message.contains("linux/amd64, linux/s390x"), "{}", e.message);
        assert!(!e.message.contains("unknown"));
        assert!(pick(&[], "linux/amd64").unwrap_err().message.contains("none"));
    }

    #[test]
    fn platform_flag_parsing() {
        assert_eq!(Platform::parse("linux/arm/v7").unwrap().to_string(), "linux/arm/v7");
        assert_eq!(Platform::parse("linux/amd64").unwrap().to_string(), "linux/amd64");
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", "linux/am d64"] {
            assert_eq!(
                Platform::parse(bad).unwrap_err().kind,
                crate::error::Kind::Usage,
                "{bad}"
            );
        }
        let host = Platform::host();
        assert!(!host.os.is_empty() && !host.architecture.is_empty());
    }

    #[test]
    fn classifies_manifests() {
        let image = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"x","digest":"sha256:00","size":1},"layers":[]}"#;
        let (mt, m) = parse(image, Some(OCI_MANIFEST)).unwrap();
        assert_eq!(mt, OCI_MANIFEST);
        assert!(matches!(m, Manifest::Image(_)));
        // No mediaType field: the header decides; a generic header: the shape decides.
        let bare = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert_eq!(parse(bare, Some(DOCKER_LIST)).unwrap().0, DOCKER_LIST);
        assert_eq!(parse(bare, Some("application/json")).unwrap().0, OCI_INDEX);
        // Contradiction between body and header.
        let e = parse(image, Some(DOCKER_MANIFEST)).unwrap_err();
        assert!(e.message.contains("contradict") || e.message.contains("but the registry served"));
        // Schema 1 in either place.
        let s1 = br#"{"schemaVersion":1,"name":"x","fsLayers":[]}"#;
        assert!(parse(s1, None).unwrap_err().message.contains("schema 1"));
        assert!(parse(b"{}", Some(DOCKER_V1_SIGNED))
            .unwrap_err()
            .message
            .contains("deprecated"));
        // Garbage.
        assert_eq!(
            parse(b"not json", None).unwrap_err().kind,
            crate::error::Kind::Integrity
        );
        assert!(parse(br#"{"mediaType":"text/plain"}"#, None).is_err());
        assert!(parse(br#"{"mediaType":"application/vnd.oci.image.index.v1+json"}"#, None).is_err());
    }

    #[test]
    fn descriptor_checks() {
        let mut d = entry("linux/amd64", false);
        d.size = -1;
        assert!(d.checked_size().is_err());
        d.size = i64::MAX;
        assert!(d.checked_size().unwrap_err().message.contains("1 TiB"));
        d.size = 5;
        assert_eq!(d.checked_size().unwrap(), 5);
        d.digest = "sha256:../../etc".into();
        assert_eq!(d.checked_digest().unwrap_err().kind, crate::error::Kind::Integrity);
        d.media_type = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip".into();
        assert!(d.is_foreign());
    }
}

//! Which layers can be pulled partially, from their descriptor's annotations
//! alone (as containers/storage decides: the footer is never read).
//!
//! Only the modern dialect qualifies: `io.github.containers.zstd-chunked.*`
//! with a `tarsplit-position`. The old `io.containers.zstd-chunked.*` keys
//! (no tar-split, the tar headers cannot be rebuilt exactly), eStargz, and a
//! layer claiming both TOC kinds take the whole-layer path.

use super::{parse_sha, Sha, MAX_COMPRESSED, MAX_UNCOMPRESSED};
use crate::manifest::Descriptor;

const CHECKSUM: &str = "io.github.containers.zstd-chunked.manifest-checksum";
const TOC_POSITION: &str = "io.github.containers.zstd-chunked.manifest-position";
const TARSPLIT_POSITION: &str = "io.github.containers.zstd-chunked.tarsplit-position";
/// eStargz's TOC digest: a layer carrying both kinds is ambiguous.
const ESTARGZ: &str = "containerd.io/snapshot/stargz/toc.digest";

/// Where a metadata frame's payload is in the blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub offset: u64,
    pub length: u64,
    pub uncompressed: u64,
}

/// The verified-to-be-sane positions of a modern zstd:chunked layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Positions {
    pub toc: Pos,
    pub tarsplit: Pos,
    /// sha256 of the compressed TOC.
    pub toc_digest: Sha,
}

impl Positions {
    /// The byte range to fetch for the metadata: the TOC's offset to the blob's end.
    pub fn metadata_range(&self, blob_size: u64) -> (u64, u64) {
        (self.toc.offset, blob_size)
    }
}

/// `a:b:c[:d]` as numbers; `d` (the manifest type) must be 1 when present.
fn numbers(s: &str, want: usize) -> Option<Pos> {
    let mut n = [0u64; 4];
    let mut count = 0;
    for part in s.split(':') {
        if count == want || part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        n[count] = part.parse().ok()?;
        count += 1;
    }
    if count != want || (want == 4 && n[3] != 1) {
        return None;
    }
    Some(Pos {
        offset: n[0],
        length: n[1],
        uncompressed: n[2],
    })
}

/// The positions when `desc` is a modern zstd:chunked layer whose metadata
/// lies inside the blob after its data and within the caps; `None` otherwise.
pub fn of(desc: &Descriptor) -> Option<Positions> {
    if !desc.media_type.ends_with("+zstd") || desc.annotation(ESTARGZ).is_some() {
        return None;
    }
    let size = u64::try_from(desc.size).ok()?;
    let toc = numbers(desc.annotation(TOC_POSITION)?, 4)?;
    let tarsplit = numbers(desc.annotation(TARSPLIT_POSITION)?, 3)?;
    let toc_digest = parse_sha(desc.annotation(CHECKSUM)?)?;
    for p in [&toc, &tarsplit] {
        let end = p.offset.checked_add(p.length)?;
        // Each payload follows its 8-byte skippable frame header, after the data.
        if p.offset < 8 || end > size || p.length > MAX_COMPRESSED || p.uncompressed > MAX_UNCOMPRESSED {
            return None;
        }
    }
    // Both must be in the one metadata range, which starts at the TOC.
    if tarsplit.offset < toc.offset.checked_add(toc.length)? {
        return None;
    }
    Some(Positions {
        toc,
        tarsplit,
        toc_digest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn desc(pairs: &[(&str, &str)], size: i64) -> Descriptor {
        let annotations: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        serde_json::from_value(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+zstd",
            "digest": format!("sha256:{}", "a".repeat(64)),
            "size": size,
            "annotations": annotations,
        }))
        .unwrap()
    }

    fn modern() -> Vec<(&'static str, String)> {
        vec![
            (CHECKSUM, format!("sha256:{}", "b".repeat(64))),
            (TOC_POSITION, "1000:200:900:1".into()),
            (TARSPLIT_POSITION, "1208:100:400".into()),
        ]
    }

    fn with(extra: &[(&'static str, String)], drop: &str) -> Descriptor {
        let mut v = modern();
        v.retain(|(k, _)| *k != drop);
        v.extend(extra.iter().cloned());
        let pairs: Vec<(&str, &str)> = v.iter().map(|(k, v)| (*k, v.as_str())).collect();
        desc(&pairs, 1372)
    }

    #[test]
    fn modern_dialect_is_partial() {
        let p = of(&with(&[], "")).expect("partial");
        assert_eq!(
            p.toc,
            Pos {
                offset: 1000,
                length: 200,
                uncompressed: 900
            }
        );
        assert_eq!(p.tarsplit.offset, 1208);
        assert_eq!(p.metadata_range(1372), (1000, 1372));
    }

    #[test]
    fn everything_else_is_whole_layer() {
        // No tar-split (c/storage before 1.47).
        assert!(of(&with(&[], TARSPLIT_POSITION)).is_none());
        // The old key family only.
        let old = [
            (
                "io.containers.zstd-chunked.manifest-checksum",
                format!("sha256:{}", "b".repeat(64)),
            ),
            (
                "io.containers.zstd-chunked.manifest-position",
                "1000:200:900:1".to_string(),
            ),
        ];
        let pairs: Vec<(&str, &str)> = old.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert!(of(&desc(&pairs, 1372)).is_none());
        // Both TOC kinds.
        assert!(of(&with(&[(ESTARGZ, "sha256:00".into())], "")).is_none());
        // Wrong manifest type, malformed numbers, out of the blob, overlapping.
        for bad in [
            "1000:200:900:2",
            "1000:200:900",
            "1000:-1:900:1",
            "1000:200:900:1:1",
            "1300:200:900:1",
        ] {
            assert!(
                of(&with(&[(TOC_POSITION, bad.into())], TOC_POSITION)).is_none(),
                "{bad}"
            );
        }
        assert!(of(&with(&[(TARSPLIT_POSITION, "1100:100:400".into())], TARSPLIT_POSITION)).is_none());
        assert!(of(&with(&[(CHECKSUM, "sha256:xyz".into())], CHECKSUM)).is_none());
        // Huge claims.
        let huge = format!("1208:100:{}", MAX_UNCOMPRESSED + 1);
        assert!(of(&with(&[(TARSPLIT_POSITION, huge)], TARSPLIT_POSITION)).is_none());
    }
}

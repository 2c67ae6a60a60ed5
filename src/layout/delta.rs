//! The proof of layers a partial pull may build on: each zstd:chunked
//! layer's verified metadata (its blob from the TOC's offset to the end:
//! compressed TOC, tar-split, footer) in `.minipull/delta/<alg>-<hex>`,
//! keyed by the layer's digest. It is checked again against the layer's
//! annotations whenever it is read, so a planted or damaged file only
//! costs the reuse; `gc` removes the ones no manifest in the layout names.

#[cfg(feature = "delta")]
use {
    super::{ensure_private_dir, open_no_follow, write_atomic, Layout, WORK_DIR},
    crate::digest::Digest,
    crate::error::Result,
    std::io::Read,
    std::path::PathBuf,
};

/// The store's directory, relative to the layout.
pub(super) const DELTA_DIR: &str = ".minipull/delta";
/// The chunk spool's directory, in the work directory's `partial/`.
#[cfg(feature = "delta")]
const CHUNKS: &str = "chunks";

#[cfg(feature = "delta")]
impl Layout {
    fn delta_path(&self, layer: &Digest) -> PathBuf {
        self.root
            .join(DELTA_DIR)
            .join(format!("{}-{}", layer.algorithm().name(), layer.hex()))
    }

    /// Keep `metadata` (already verified) as the proof of `layer`.
    pub fn save_delta_metadata(&self, layer: &Digest, metadata: &[u8]) -> Result<()> {
        ensure_private_dir(&self.root.join(WORK_DIR), false)?;
        ensure_private_dir(&self.root.join(DELTA_DIR), false)?;
        let path = self.delta_path(layer);
        let tmp = path.with_extension("tmp");
        write_atomic(&tmp, &path, metadata)
    }

    /// The directory fetched chunks are kept in across a cut (created, private).
    pub fn chunk_spool(&self) -> Result<PathBuf> {
        let partial = self.root.join(WORK_DIR).join("partial");
        ensure_private_dir(&self.root.join(WORK_DIR), false)?;
        ensure_private_dir(&partial, false)?;
        ensure_private_dir(&partial.join(CHUNKS), false)?;
        Ok(partial.join(CHUNKS))
    }

    /// Empty the chunk spool (an update is installed; `gc`). Returns the bytes freed.
    pub fn clear_chunk_spool(&self) -> u64 {
        let dir = format!("{WORK_DIR}/partial/{CHUNKS}");
        let mut freed = 0;
        for name in self.names_in(&dir).unwrap_or_default() {
            freed += self.unlink_in(&dir, &name).unwrap_or(0);
        }
        let _ = std::fs::remove_dir(self.root.join(&dir));
        freed
    }

    /// The metadata kept for `layer`, when there is some of at most `max` bytes.
    pub fn delta_metadata(&self, layer: &Digest, max: u64) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        open_no_follow(&self.delta_path(layer))
            .ok()?
            .take(max + 1)
            .read_to_end(&mut out)
            .ok()?;
        (out.len() as u64 <= max).then_some(out)
    }
}

#[cfg(all(test, feature = "delta"))]
mod tests {
    use super::*;

    #[test]
    fn kept_read_back_and_collected() {
        let dir = std::env::temp_dir().join(format!("minipull-delta-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let layout = Layout::open(&dir).unwrap();
        let d = Digest::sha256_of(b"layer");
        assert_eq!(layout.delta_metadata(&d, 100), None);
        layout.save_delta_metadata(&d, b"toc and tar-split").unwrap();
        assert_eq!(
            layout.delta_metadata(&d, 100).as_deref(),
            Some(&b"toc and tar-split"[..])
        );
        assert_eq!(layout.delta_metadata(&d, 5), None, "over the cap");
        // No manifest names the layer: gc removes its proof (even keeping partials).
        layout.collect_garbage(true).unwrap();
        assert_eq!(layout.delta_metadata(&d, 100), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! What an `index.json` entry reaches: its manifest, and below it indexes,
//! manifests, configs and layers, read from the layout itself. Used to tell
//! whether an image is complete (a re-pull that needs nothing), how much
//! disk it takes (`ls`), and which blobs nothing needs any more (`gc`,
//! `--prune`).

use super::Layout;
use crate::digest::Digest;
use crate::error::Result;
use crate::manifest::{self, Descriptor, Manifest};

/// Blobs an entry reaches, with their sizes and media types. (A list: an
/// image reaches tens of blobs, and a map's code costs more bytes than the
/// linear searches cost time.)
#[derive(Default)]
pub struct Reached {
    pub blobs: Vec<(Digest, u64, String)>,
    /// Named below the entry but not in `blobs/`.
    pub missing: Vec<Digest>,
    /// Layers an entry marked as discarded (`--discard-layers`) or
    /// obtained partially (zstd:chunked, its TOC and tar-split kept as the
    /// proof) does not hold, with the size and media type their descriptor gives.
    pub discarded: Vec<(Digest, u64, String)>,
}

impl Reached {
    fn has(&self, d: &Digest) -> bool {
        self.blobs.iter().any(|(x, ..)| x == d)
    }

    fn add(&mut self, d: Digest, size: u64, media_type: &str) {
        if !self.has(&d) {
            self.blobs.push((d, size, media_type.to_string()));
        }
    }

    /// The digests of the blobs reached.
    pub fn digests(self) -> impl Iterator<Item = Digest> {
        self.blobs.into_iter().map(|(d, ..)| d)
    }

    /// Bytes on disk of everything reached.
    pub fn size(&self) -> u64 {
        self.blobs.iter().map(|(_, s, _)| s).sum()
    }
}

/// The annotation on an entry whose layers were removed after unpacking.
pub const LAYERS_DISCARDED: &str = "io.minipull.layers-discarded";
/// The annotation on an entry listing (comma-separated) the layers an
/// update obtained partially: no blob of theirs is in `blobs/`.
#[cfg(feature = "delta")]
pub const LAYERS_PARTIAL: &str = "io.minipull.layers-partial";

/// The layers `entry` says were obtained partially.
#[cfg(feature = "delta")]
pub fn partial_layers(entry: &Descriptor) -> Vec<Digest> {
    let list = entry.annotation(LAYERS_PARTIAL).unwrap_or_default();
    list.split(',')
        .filter_map(|d| Digest::parse(d).ok())
        .take(4096)
        .collect()
}

impl Layout {
    /// Walk `entry` (at most 4 indexes deep). With `verify`, re-hash each
    /// blob instead of trusting its name; a blob that fails is missing.
    pub fn reach(&self, entry: &Descriptor, verify: bool) -> Result<Reached> {
        let mut r = Reached::default();
        let discarded = entry.annotation(LAYERS_DISCARDED) == Some("true");
        #[cfg(feature = "delta")]
        let partial = partial_layers(entry);
        self.walk(
            entry,
            verify,
            discarded,
            #[cfg(feature = "delta")]
            &partial,
            0,
            &mut r,
        )?;
        // The index a one-platform entry's tag resolved to, when stored
        // (a signature may sign it).
        if let Some(d) = entry.annotation(super::RESOLVED).and_then(|d| Digest::parse(d).ok()) {
            if let Some(size) = self.blob_size(&d) {
                r.add(d, size, crate::manifest::OCI_INDEX);
            }
        }
        Ok(r)
    }

    fn walk(
        &self,
        desc: &Descriptor,
        verify: bool,
        discarded: bool,
        #[cfg(feature = "delta")] partial: &[Digest],
        depth: usize,
        r: &mut Reached,
    ) -> Result<()> {
        let d = desc.checked_digest()?;
        if r.has(&d) {
            return Ok(());
        }
        let Some(size) = self.present(&d, verify)? else {
            r.missing.push(d);
            return Ok(());
        };
        r.add(d.clone(), size, &desc.media_type);
        if depth > 4 {
            return Ok(());
        }
        let bytes = self.read_small_blob(&d, manifest::MAX_MANIFEST_BYTES)?;
        match manifest::parse(&bytes, Some(&desc.media_type))?.1 {
            Manifest::Index(i) => {
                // A child of a media type minipull does not pull was not
                // fetched and is not a manifest to walk.
                for child in i.manifests.iter().filter(|c| manifest::is_manifest_type(&c.media_type)) {
                    self.walk(
                        child,
                        verify,
                        discarded,
                        #[cfg(feature = "delta")]
                        partial,
                        depth + 1,
                        r,
                    )?;
                }
            }
            Manifest::Image(m) => {
                self.leaf(&m.config, verify, r)?;
                for l in &m.layers {
                    // Non-distributable layers with URLs are never pulled.
                    if l.is_foreign() && l.urls.as_ref().is_some_and(|u| !u.is_empty()) {
                        continue;
                    }
                    // An entry marked discarded holds no layers: what may
                    // still be on disk is not its to keep.
                    if discarded {
                        r.discarded
                            .push((l.checked_digest()?, l.size.max(0) as u64, l.media_type.clone()));
                        continue;
                    }
                    // Obtained partially: its blob is not here, its proof
                    // is (checked again against the layer with `verify`).
                    #[cfg(feature = "delta")]
                    {
                        let d = l.checked_digest()?;
                        if partial.contains(&d) && self.blob_size(&d).is_none() {
                            match !verify || crate::delta::fetch::previous(self, l).is_some() {
                                true => r.discarded.push((d, l.size.max(0) as u64, l.media_type.clone())),
                                false => r.missing.push(d),
                            }
                            continue;
                        }
                    }
                    self.leaf(l, verify, r)?;
                }
            }
        }
        Ok(())
    }

    fn leaf(&self, desc: &Descriptor, verify: bool, r: &mut Reached) -> Result<()> {
        let d = desc.checked_digest()?;
        if r.has(&d) {
            return Ok(());
        }
        match self.present(&d, verify)? {
            Some(size) => r.add(d, size, &desc.media_type),
            None => r.missing.push(d),
        }
        Ok(())
    }

    /// The size on disk of a blob the walk reaches (with `verify`, only if
    /// its content matches its name). What a descriptor says its size is
    /// does not matter: a walk decides what to keep, and a wrong size in a
    /// hostile manifest must not make another image's blob look unneeded.
    fn present(&self, d: &Digest, verify: bool) -> Result<Option<u64>> {
        let Some(size) = self.blob_size(d) else {
            return Ok(None);
        };
        Ok((!verify || self.blob_intact(d)?).then_some(size))
    }

    /// The size of a blob in the layout, if it is there.
    pub fn blob_size(&self, d: &Digest) -> Option<u64> {
        std::fs::symlink_metadata(self.blob_path(d))
            .ok()
            .filter(|m| m.file_type().is_file())
            .map(|m| m.len())
    }
}

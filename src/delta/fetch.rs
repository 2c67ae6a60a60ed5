//! The one hook between a pull and a partial layer: given the layer's
//! descriptor, the registry client, the files to reuse and the previous
//! TOC, fetch the metadata and the missing ranges and hand back the rebuilt
//! tar (for the ordinary applier and diff_id check), the whole blob when
//! the registry answered a range request with all of it, or an error,
//! whose answer is always the whole-layer path.

use super::plan::{self, Local, Prev};
use super::rebuild::Rebuild;
use super::{position, refuse, Metadata, MAX_COMPRESSED};
use crate::error::Result;
use crate::manifest::Descriptor;
use crate::registry::{Client, Ranged};
use std::io::Read;

/// What the partial path obtained.
pub enum Got<'a> {
    /// The layer's uncompressed tar, rebuilt; checked chunk by chunk as it
    /// is read, to be checked against the diff_id by the reader; with the
    /// verified metadata to keep ([`crate::layout::Layout::save_delta_metadata`])
    /// once the layer is accepted.
    Tar(Box<dyn Read + 'a>, plan::Plan, Vec<u8>),
    /// The registry ignored the Range and sent the whole compressed blob:
    /// consume it as the whole-layer download.
    Blob(Box<dyn Read>),
}

/// The partial path for `desc` (see the module doc); `prev` indexes the
/// previous image's TOC, whose files `local` holds.
pub fn partial<'a>(
    client: &'a mut Client,
    desc: &Descriptor,
    prev: Option<Prev>,
    mut local: impl Local + 'a,
    gap: u64,
) -> Result<Got<'a>> {
    let pos = position::of(desc).ok_or_else(|| refuse("the layer is not a modern zstd:chunked layer"))?;
    let (digest, size) = (desc.checked_digest()?, desc.checked_size()?);
    let tail = match client.blob_ranges(&digest, &[pos.metadata_range(size)])? {
        Ranged::Whole(blob) => return Ok(Got::Blob(blob)),
        Ranged::Refused => return Err(refuse("the registry refused the metadata range")),
        Ranged::Parts(mut p) => {
            let mut tail = Vec::new();
            (&mut p)
                .take(2 * MAX_COMPRESSED + 4096)
                .read_to_end(&mut tail)
                .map_err(|e| refuse(format!("cannot read the layer's metadata: {e}")))?;
            tail
        }
    };
    let mut meta = Metadata::open(&tail, &pos)?;
    plan::check_order(&meta.toc, &mut meta.lines())?;
    let plan = plan::make(&mut meta.toc, prev.as_ref(), &mut local, gap);
    let remote: Box<dyn Read> = if plan.ranges.is_empty() {
        Box::new(std::io::empty())
    } else {
        match client.blob_ranges(&digest, &plan.ranges)? {
            Ranged::Parts(p) => Box::new(p),
            Ranged::Whole(blob) => return Ok(Got::Blob(blob)),
            Ranged::Refused => Box::new(Singles::new(client, digest, plan.ranges.clone())),
        }
    };
    let (toc, lines) = meta.into_parts();
    let ranges = plan.ranges.clone();
    Ok(Got::Tar(
        Box::new(Rebuild::new(lines, toc, ranges, prev, local, remote)),
        plan,
        tail,
    ))
}

/// The previous image's TOC for the layer `desc` from the layout's store,
/// verified again against `desc`'s annotations; `None` when there is none
/// or it does not verify (then only whole files are reused).
pub fn previous(layout: &crate::layout::Layout, desc: &Descriptor) -> Option<Prev> {
    let pos = position::of(desc)?;
    let digest = desc.checked_digest().ok()?;
    let tail = layout.delta_metadata(&digest, 2 * MAX_COMPRESSED + 4096)?;
    Metadata::open(&tail, &pos).ok().map(|m| Prev::new(m.toc))
}

/// The ranges' bytes from one request per range, made as the reader gets
/// to each: for registries (and CDNs) that refuse multi-range requests.
pub struct Singles<'a> {
    client: &'a mut Client,
    digest: crate::digest::Digest,
    ranges: Vec<(u64, u64)>,
    next: usize,
    cur: Option<Box<dyn Read>>,
}

impl<'a> Singles<'a> {
    pub fn new(client: &'a mut Client, digest: crate::digest::Digest, ranges: Vec<(u64, u64)>) -> Self {
        Singles {
            client,
            digest,
            ranges,
            next: 0,
            cur: None,
        }
    }
}

impl Read for Singles<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if let Some(cur) = &mut self.cur {
                let n = cur.read(buf)?;
                if n > 0 || buf.is_empty() {
                    return Ok(n);
                }
                self.cur = None;
            }
            let Some(&r) = self.ranges.get(self.next) else {
                return Ok(0);
            };
            self.next += 1;
            match self.client.blob_ranges(&self.digest, &[r]) {
                Ok(Ranged::Parts(p)) => self.cur = Some(Box::new(p)),
                Ok(_) => {
                    return Err(std::io::Error::other(
                        "the registry does not serve single ranges either",
                    ))
                }
                Err(e) => return Err(std::io::Error::other(e.message)),
            }
        }
    }
}

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
use std::cell::Cell;
use std::io::Read;
use std::rc::Rc;

/// What a partial layer cost on the wire, counted as it goes (the reader
/// outlives the call that made it).
#[derive(Default)]
pub struct Meter {
    /// Blob bytes received (metadata and ranges).
    pub bytes: Cell<u64>,
    /// Ranged requests made.
    pub requests: Cell<u32>,
    /// The layer's progress line: bytes fetched against its size.
    pub line: std::cell::RefCell<Option<crate::progress::BlobProgress>>,
}

impl Meter {
    fn add(&self, n: u64) {
        self.bytes.set(self.bytes.get() + n);
        if let Some(l) = self.line.borrow_mut().as_mut() {
            l.update(self.bytes.get());
        }
    }
}

/// A reader that counts what passes into a [`Meter`].
struct Counted<R>(R, Rc<Meter>);

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.read(buf)?;
        self.1.add(n as u64);
        Ok(n)
    }
}

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
    local: impl Local + 'a,
    gap: u64,
) -> Result<Got<'a>> {
    partial_metered(client, desc, prev, local, gap, Rc::default())
}

/// [`partial`], counting bytes and requests into `meter`.
pub fn partial_metered<'a, L: Local + 'a>(
    client: &'a mut Client,
    desc: &Descriptor,
    prev: Option<Prev>,
    local: L,
    gap: u64,
    meter: Rc<Meter>,
) -> Result<Got<'a>> {
    match prepare(client, desc, prev, local, gap, meter, None)? {
        First::Blob(b) => Ok(Got::Blob(b)),
        First::Ready(r) => (*r).start(client),
    }
}

/// What the metadata request gave: a verified, planned layer, or the
/// whole blob (the registry ignored the Range).
pub enum First<L> {
    Ready(Box<Ready<L>>),
    Blob(Box<dyn Read>),
}

/// A layer whose metadata is verified and whose ranges are planned.
pub struct Ready<L> {
    digest: crate::digest::Digest,
    meta: Metadata,
    pub plan: plan::Plan,
    prev: Option<Prev>,
    local: L,
    /// The verified metadata as fetched (to keep once the layer is accepted).
    pub tail: Vec<u8>,
    meter: Rc<Meter>,
    spool: Option<super::spool::Spool>,
}

/// The metadata request, its checks and the plan: everything before the
/// data request (an error here costs one small request).
pub fn prepare<L: Local>(
    client: &mut Client,
    desc: &Descriptor,
    prev: Option<Prev>,
    mut local: L,
    gap: u64,
    meter: Rc<Meter>,
    spool: Option<super::spool::Spool>,
) -> Result<First<L>> {
    let pos = position::of(desc).ok_or_else(|| refuse("the layer is not a modern zstd:chunked layer"))?;
    let (digest, size) = (desc.checked_digest()?, desc.checked_size()?);
    meter.requests.set(meter.requests.get() + 1);
    let tail = match client.blob_ranges(&digest, &[pos.metadata_range(size)])? {
        Ranged::Whole(blob) => return Ok(First::Blob(Box::new(Counted(blob, meter)))),
        Ranged::Refused => return Err(refuse("the registry refused the metadata range")),
        Ranged::Parts(p) => {
            let mut tail = Vec::new();
            Counted(p, meter.clone())
                .take(2 * MAX_COMPRESSED + 4096)
                .read_to_end(&mut tail)
                .map_err(|e| refuse(format!("cannot read the layer's metadata: {e}")))?;
            tail
        }
    };
    let mut meta = Metadata::open(&tail, &pos)?;
    plan::check_order(&meta.toc, &mut meta.lines())?;
    let plan = plan::make_with(&mut meta.toc, prev.as_ref(), &mut local, gap, spool.as_ref());
    Ok(First::Ready(Box::new(Ready {
        digest,
        meta,
        plan,
        prev,
        local,
        tail,
        meter,
        spool,
    })))
}

impl<L: Local> Ready<L> {
    /// The data request, and the rebuilt tar reading its answer.
    pub fn start<'a>(self, client: &'a mut Client) -> Result<Got<'a>>
    where
        L: 'a,
    {
        let Ready {
            digest,
            meta,
            plan,
            prev,
            local,
            tail,
            meter,
            spool,
        } = self;
        let remote: Box<dyn Read> = if plan.ranges.is_empty() {
            Box::new(std::io::empty())
        } else {
            meter.requests.set(meter.requests.get() + 1);
            match client.blob_ranges(&digest, &plan.ranges)? {
                Ranged::Parts(p) => Box::new(Counted(p, meter)),
                Ranged::Whole(blob) => return Ok(Got::Blob(Box::new(Counted(blob, meter)))),
                Ranged::Refused => {
                    let mut s = Singles::new(client, digest, plan.ranges.clone());
                    s.meter = Some(meter.clone());
                    Box::new(Counted(s, meter))
                }
            }
        };
        let (toc, lines) = meta.into_parts();
        let ranges = plan.ranges.clone();
        Ok(Got::Tar(
            Box::new(Rebuild::new(lines, toc, ranges, prev, local, remote).with_spool(spool)),
            plan,
            tail,
        ))
    }
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
    meter: Option<Rc<Meter>>,
}

impl<'a> Singles<'a> {
    pub fn new(client: &'a mut Client, digest: crate::digest::Digest, ranges: Vec<(u64, u64)>) -> Self {
        Singles {
            client,
            digest,
            ranges,
            next: 0,
            cur: None,
            meter: None,
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
            if let Some(m) = &self.meter {
                m.requests.set(m.requests.get() + 1);
            }
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

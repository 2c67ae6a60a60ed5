//! What each chunk of a layer comes from: the reuse root (a whole file whose
//! digest matches), zeros, the previous image's file holding a chunk of the
//! same digest, or the blob; and the coalesced byte ranges to fetch.

use super::tarsplit::{self, Item};
use super::toc::{From, Toc};
use super::{refuse, Sha};
use crate::error::Result;
use std::io::BufRead;

/// Neighbouring ranges closer than this are fetched as one (a 64 KiB gap
/// costs less than another part header and round trip on most links).
pub const DEFAULT_GAP: u64 = 64 * 1024;

/// The files of the root a partial pull may reuse bytes from.
pub trait Local {
    /// The sha256 of regular file `name`, when it is one and has `size` bytes.
    fn digest(&mut self, name: &str, size: u64) -> Option<Sha>;
    /// Open regular file `name` for reading (no link followed, no device read).
    fn open(&mut self, name: &str) -> std::io::Result<std::fs::File>;
}

impl<T: Local + ?Sized> Local for &mut T {
    fn digest(&mut self, name: &str, size: u64) -> Option<Sha> {
        (**self).digest(name, size)
    }
    fn open(&mut self, name: &str) -> std::io::Result<std::fs::File> {
        (**self).open(name)
    }
}

/// The previous image's chunks by digest: what its root holds, and where.
pub struct Prev {
    names: Vec<Box<str>>,
    /// (digest, size, file number, offset in the file), sorted.
    chunks: Vec<(Sha, u64, u32, u64)>,
}

impl Prev {
    /// Index the previous image's TOC (its files are in the reuse root).
    pub fn new(toc: Toc) -> Prev {
        let mut chunks = Vec::new();
        let mut names = Vec::with_capacity(toc.files.len());
        for (i, f) in toc.files.into_iter().enumerate() {
            for c in f.chunks.iter().filter(|c| c.from != From::Zeros) {
                chunks.push((c.digest, c.size, i as u32, c.offset));
            }
            names.push(f.name);
        }
        chunks.sort_unstable();
        Prev { names, chunks }
    }

    fn find(&self, digest: &Sha, size: u64) -> Option<(u32, u64)> {
        let i = self.chunks.partition_point(|c| (&c.0, c.1) < (digest, size));
        self.chunks
            .get(i)
            .filter(|c| c.0 == *digest && c.1 == size)
            .map(|c| (c.2, c.3))
    }

    /// The name of the previous image's file number `i`.
    pub fn name(&self, i: u32) -> Option<&str> {
        self.names.get(i as usize).map(|n| &**n)
    }
}

/// The ranges to fetch and what the rest comes from, in bytes.
#[derive(Debug, Default)]
pub struct Plan {
    /// Blob byte ranges `[start, end)`, ascending, disjoint.
    pub ranges: Vec<(u64, u64)>,
    /// Bytes of the blob in `ranges`.
    pub fetch: u64,
    /// Uncompressed bytes copied from the reuse root.
    pub reused: u64,
    /// Uncompressed bytes of zero runs.
    pub zeros: u64,
    /// Uncompressed bytes kept in the spool by a run that was cut.
    pub spooled: u64,
}

/// The tar-split and the TOC must describe the same files in the same
/// order: the i-th file with a payload in one is the i-th in the other,
/// same name, same size. Checked before anything is fetched.
pub fn check_order(toc: &Toc, lines: &mut tarsplit::Reader<impl BufRead>) -> Result<()> {
    let mut next = 0;
    while let Some(item) = lines.next_item()? {
        let Item::File { name, size, .. } = item else { continue };
        if size == 0 {
            continue;
        }
        match toc.files.get(next) {
            Some(f) if f.name.as_bytes() == name && f.size == size => next += 1,
            _ => {
                return Err(refuse(format!(
                    "the TOC and the tar-split disagree at {:?}",
                    String::from_utf8_lossy(&name)
                )))
            }
        }
    }
    if next != toc.files.len() {
        return Err(refuse("the TOC lists files the tar-split does not have"));
    }
    Ok(())
}

/// Decide, file by file and chunk by chunk, where the bytes come from
/// (marking `toc`), and coalesce what must be fetched with `gap`.
pub fn make(toc: &mut Toc, prev: Option<&Prev>, local: &mut dyn Local, gap: u64) -> Plan {
    make_with(toc, prev, local, gap, None)
}

/// [`make`], also taking chunks a cut run kept in `spool`.
pub fn make_with(
    toc: &mut Toc,
    prev: Option<&Prev>,
    local: &mut dyn Local,
    gap: u64,
    spool: Option<&super::spool::Spool>,
) -> Plan {
    let mut plan = Plan::default();
    for file in &mut toc.files {
        if local.digest(&file.name, file.size) == Some(file.digest) {
            file.local = true;
            plan.reused += file.size;
            continue;
        }
        for c in &mut file.chunks {
            if c.from == From::Zeros {
                plan.zeros += c.size;
                continue;
            }
            if let Some((f, off)) = prev.and_then(|p| p.find(&c.digest, c.size)) {
                c.from = From::Prev(f, off);
                plan.reused += c.size;
                continue;
            }
            if spool.is_some_and(|s| s.has(&c.digest, c.size)) {
                c.from = From::Spool;
                plan.spooled += c.size;
                continue;
            }
            c.from = From::Fetch;
            plan.fetch += c.end - c.start;
            match plan.ranges.last_mut() {
                Some(last) if c.start - last.1 <= gap => {
                    plan.fetch += c.start - last.1;
                    last.1 = c.end;
                }
                _ => plan.ranges.push((c.start, c.end)),
            }
        }
    }
    plan
}

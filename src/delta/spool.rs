//! Fetched chunks kept across a cut: each chunk whose frame arrived and
//! decompressed to its `chunkDigest` is written to `.minipull/partial/chunks/`
//! under that digest, and the next run's plan takes it from there instead of
//! the network. A kept chunk is hashed again as it is read (the rebuild
//! checks every chunk), so a damaged or planted file costs only a refusal,
//! then the whole layer. The directory is emptied once an update is
//! installed, and by `gc`.
//!
//! Kept chunks are made durable in batches, with one `syncfs` once 1 MiB or
//! 2 s of them are waiting: a power cut (not just a killed process) then
//! loses at most that much of what arrived, and a fast link does not pay an
//! fsync per 64 KiB chunk. A chunk cut before its sync is at worst short
//! (ext4 orders data before the rename), and a short one is not taken.

use super::Sha;
use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Kept bytes, or time, between two syncs of the spool.
const SYNC_BYTES: u64 = 1 << 20;
const SYNC_EVERY: Duration = Duration::from_secs(2);

/// The spool directory of a layout.
pub struct Spool {
    dir: PathBuf,
    /// The chunk being written: its digest and temporary file.
    open: Option<(Sha, File)>,
    /// Bytes kept since the last sync, and when that was.
    unsynced: u64,
    synced_at: Instant,
}

fn hex(d: &Sha) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

impl Spool {
    /// The spool of `layout` (created, private), or `None` when it cannot be.
    pub fn of(layout: &crate::layout::Layout) -> Option<Spool> {
        layout.chunk_spool().ok().map(|dir| Spool {
            dir,
            open: None,
            unsynced: 0,
            synced_at: Instant::now(),
        })
    }

    /// Whether a chunk of this digest and size is kept.
    pub fn has(&self, d: &Sha, size: u64) -> bool {
        std::fs::symlink_metadata(self.dir.join(hex(d))).is_ok_and(|m| m.is_file() && m.len() == size)
    }

    /// A kept chunk, for reading (no link followed, regular files only).
    pub fn open(&self, d: &Sha) -> io::Result<File> {
        let f = crate::layout::open_no_follow(&self.dir.join(hex(d)))?;
        match f.metadata()?.is_file() {
            true => Ok(f),
            false => Err(io::Error::new(io::ErrorKind::InvalidData, "not a regular file")),
        }
    }

    /// Start keeping the chunk `d` (its bytes follow through [`Spool::write`]).
    pub fn begin(&mut self, d: &Sha) {
        let tmp = self.dir.join(format!("{}.tmp", hex(d)));
        self.open = File::create(tmp).ok().map(|f| (*d, f));
    }

    pub fn write(&mut self, bytes: &[u8]) {
        if let Some((_, f)) = &mut self.open {
            match f.write_all(bytes) {
                Ok(()) => self.unsynced += bytes.len() as u64,
                Err(_) => self.open = None,
            }
        }
    }

    /// The chunk begun last is complete and verified (`ok`): keep it, or drop it.
    pub fn end(&mut self, ok: bool) {
        let Some((d, f)) = self.open.take() else { return };
        let tmp = self.dir.join(format!("{}.tmp", hex(&d)));
        let kept = match ok {
            true => std::fs::rename(&tmp, self.dir.join(hex(&d))).is_ok(),
            false => std::fs::remove_file(&tmp).map(|_| false).unwrap_or(false),
        };
        if kept && (self.unsynced >= SYNC_BYTES || self.synced_at.elapsed() >= SYNC_EVERY) {
            use std::os::fd::AsRawFd;
            // SAFETY: syncfs on a descriptor we own; its failure only costs durability.
            unsafe { libc::syncfs(f.as_raw_fd()) };
            self.unsynced = 0;
            self.synced_at = Instant::now();
        }
    }
}

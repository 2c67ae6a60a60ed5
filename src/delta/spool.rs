//! Fetched chunks kept across a cut: each chunk whose frame arrived and
//! decompressed to its `chunkDigest` is written to `.minipull/partial/chunks/`
//! under that digest, and the next run's plan takes it from there instead of
//! the network. A kept chunk is hashed again as it is read (the rebuild
//! checks every chunk), so a damaged or planted file costs only a refusal,
//! then the whole layer. The directory is emptied once an update is
//! installed, and by `gc`.

use super::Sha;
use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;

/// The spool directory of a layout.
pub struct Spool {
    dir: PathBuf,
    /// The chunk being written: its digest and temporary file.
    open: Option<(Sha, File)>,
}

fn hex(d: &Sha) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

impl Spool {
    /// The spool of `layout` (created, private), or `None` when it cannot be.
    pub fn of(layout: &crate::layout::Layout) -> Option<Spool> {
        layout.chunk_spool().ok().map(|dir| Spool { dir, open: None })
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
            if f.write_all(bytes).is_err() {
                self.open = None;
            }
        }
    }

    /// The chunk begun last is complete and verified (`ok`): keep it, or drop it.
    pub fn end(&mut self, ok: bool) {
        let Some((d, f)) = self.open.take() else { return };
        let tmp = self.dir.join(format!("{}.tmp", hex(&d)));
        // A kept chunk is read back only after a cut, and checked then: no fsync.
        drop(f);
        let _ = match ok {
            true => std::fs::rename(&tmp, self.dir.join(hex(&d))),
            false => std::fs::remove_file(&tmp),
        };
    }
}

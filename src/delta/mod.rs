//! Partial pulls of `zstd:chunked` layers: fetch only the chunks of a layer
//! that the reuse root (or the previous image's table of contents) does not
//! already hold, and rebuild the layer's exact uncompressed tar stream, so
//! the ordinary applier and diff_id check accept it or refuse it exactly as
//! they would a whole download.
//!
//! - [`position`]: the layer annotations that make a layer eligible;
//! - [`toc`]: the table of contents, parsed as a stream into compact files;
//! - [`tarsplit`]: the tar-split NDJSON (tar headers, padding, CRC64s);
//! - [`plan`]: what comes from where, and the byte ranges to fetch;
//! - [`rebuild`]: the tar stream out of tar-split, local bytes and frames;
//! - [`ranges`]: a 206 answer (single or `multipart/byteranges`) as bytes;
//! - [`root`]: the reuse root, read through an in-root walk;
//! - [`index`]: what the reuse root holds, recorded at install (no hashing of the root);
//! - [`spool`]: fetched chunks kept across a cut;
//! - [`fetch`]: the one hook a pull calls per layer;
//! - [`update`]: the layers' source in an update (partial, whole, discarded).
//!
//! Every failure here is an [`Error`]: the caller's answer to any of them is
//! the whole-layer path, never a half-built layer.

pub mod fetch;
pub mod index;
pub mod plan;
pub mod position;
pub mod ranges;
pub mod rebuild;
pub mod root;
pub mod spool;
pub mod tarsplit;
#[cfg(test)]
mod tests_e2e;
/// A zstd:chunked writer for the tests (unit and end-to-end); not used by the binary.
#[doc(hidden)]
pub mod testwriter;
pub mod toc;
pub mod update;

use crate::error::{Error, Result};
use std::io::Read;

/// The compressed TOC and tar-split may each be at most this long.
pub const MAX_COMPRESSED: u64 = 64 * 1024 * 1024;
/// The uncompressed TOC and tar-split may each be at most this long.
pub const MAX_UNCOMPRESSED: u64 = 256 * 1024 * 1024;
/// A TOC may list at most this many entries (files, chunks, directories...).
pub const MAX_ENTRIES: usize = 1_000_000;

/// A SHA-256 value, raw.
pub type Sha = [u8; 32];

/// Why a layer is not taken partially; the caller falls back to the whole layer.
pub(crate) fn refuse(why: impl Into<String>) -> Error {
    Error::integrity(why.into())
}

/// `sha256:<64 hex>` as raw bytes.
pub(crate) fn parse_sha(s: &str) -> Option<Sha> {
    let hex = s.strip_prefix("sha256:")?.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks(2).enumerate() {
        let nib = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        out[i] = nib(pair[0])? << 4 | nib(pair[1])?;
    }
    Some(out)
}

/// SHA-256 of some bytes, raw.
pub(crate) fn sha(bytes: &[u8]) -> Sha {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref());
    out
}

/// The metadata a partial pull works from, verified: the TOC against the
/// layer's `manifest-checksum`, the tar-split against the TOC's `tarSplitDigest`.
pub struct Metadata {
    pub toc: toc::Toc,
    /// The tar-split, still compressed (it is streamed twice: plan, rebuild).
    pub tarsplit: Vec<u8>,
}

impl Metadata {
    /// Verify and parse `tail`, the blob's bytes from the TOC's offset to its end.
    pub fn open(tail: &[u8], pos: &position::Positions) -> Result<Metadata> {
        let part = |p: &position::Pos| {
            let start = p.offset.checked_sub(pos.toc.offset)? as usize;
            tail.get(start..start.checked_add(p.length as usize)?)
        };
        let toc_z = part(&pos.toc).ok_or_else(|| refuse("the TOC position is outside the blob"))?;
        let split_z = part(&pos.tarsplit).ok_or_else(|| refuse("the tar-split position is outside the blob"))?;
        if sha(toc_z) != pos.toc_digest {
            return Err(refuse("the TOC does not match the layer's manifest-checksum"));
        }
        let json = crate::unpack::ZstdFrames::new(toc_z).take(pos.toc.uncompressed);
        let toc = toc::parse(std::io::BufReader::new(json), pos.toc.offset.saturating_sub(8))?;
        if sha(split_z) != toc.tarsplit_digest {
            return Err(refuse("the tar-split does not match the TOC's tarSplitDigest"));
        }
        Ok(Metadata {
            toc,
            tarsplit: split_z.to_vec(),
        })
    }

    /// The TOC, and the tar-split's lines owning their bytes (for a rebuild that outlives `self`).
    pub fn into_parts(self) -> (toc::Toc, tarsplit::Reader<impl std::io::BufRead>) {
        let dec = crate::unpack::ZstdFrames::new(std::io::Cursor::new(self.tarsplit));
        (
            self.toc,
            tarsplit::Reader::new(std::io::BufReader::new(dec.take(MAX_UNCOMPRESSED))),
        )
    }

    /// The tar-split's lines, decompressed as they are read.
    pub fn lines(&self) -> tarsplit::Reader<impl std::io::BufRead + '_> {
        let dec = crate::unpack::ZstdFrames::new(&self.tarsplit[..]);
        tarsplit::Reader::new(std::io::BufReader::new(dec.take(MAX_UNCOMPRESSED)))
    }
}

/// CRC-64 with the ISO polynomial, as Go's `hash/crc64` computes it (tar-split's checksum).
#[derive(Clone, Copy)]
pub struct Crc64(u64);

const fn crc_table() -> [u64; 256] {
    let mut t = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u64;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 == 1 {
                (c >> 1) ^ 0xD800_0000_0000_0000
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}
static CRC_TABLE: [u64; 256] = crc_table();

impl Crc64 {
    pub fn new() -> Crc64 {
        Crc64(!0)
    }
    pub fn update(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = CRC_TABLE[((self.0 as u8) ^ b) as usize] ^ (self.0 >> 8);
        }
    }
    pub fn finish(self) -> u64 {
        !self.0
    }
}

impl Default for Crc64 {
    fn default() -> Crc64 {
        Crc64::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc64_iso_check_value() {
        let mut c = Crc64::new();
        c.update(b"123456789");
        assert_eq!(c.finish(), 0xb909_56c7_75a4_1001);
    }

    #[test]
    fn sha_strings() {
        let d = sha(b"x");
        let s = format!("sha256:{}", d.iter().map(|b| format!("{b:02x}")).collect::<String>());
        assert_eq!(parse_sha(&s), Some(d));
        assert_eq!(parse_sha(&s.to_uppercase()), None);
        assert_eq!(parse_sha("sha512:00"), None);
    }
}

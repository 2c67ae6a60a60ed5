//! The layer's exact uncompressed tar stream, rebuilt: tar-split segments
//! as they are, each file's payload from the reuse root, zeros, the
//! previous root, or its frames in the fetched ranges, decompressed.
//! Every chunk is checked against its `chunkDigest` as it ends, every file
//! against its TOC digest and tar-split CRC-64; the caller's diff_id check
//! over the whole stream is the last word.

use super::plan::{Local, Prev};
use super::tarsplit::{self, Item};
use super::toc::{From, Toc};
use super::{Crc64, Sha};
use ring::digest::{Context, SHA256};
use std::io::{self, BufRead, BufReader, Read, Seek, Take};

/// Where the current piece of a payload comes from.
enum Src {
    Zeros,
    File(std::fs::File),
    /// The next frame bytes of the remote stream; `true` once a frame is open.
    Remote(bool),
}

/// The payload being produced.
struct Cur {
    file: usize,
    /// The chunk being produced; `usize::MAX` for a whole local file.
    chunk: usize,
    left: u64,
    src: Src,
    file_hash: Context,
    chunk_hash: Context,
    crc: Crc64,
    want_crc: u64,
}

/// A `Read` of the rebuilt tar stream.
pub struct Rebuild<S, R, L> {
    lines: tarsplit::Reader<S>,
    toc: Toc,
    prev: Option<Prev>,
    local: L,
    /// The bodies of `ranges`, concatenated in order.
    remote: BufReader<Take<R>>,
    ranges: Vec<(u64, u64)>,
    range: usize,
    /// The blob offset of the next byte of `remote`.
    at: u64,
    seg: Vec<u8>,
    seg_at: usize,
    next_file: usize,
    cur: Option<Cur>,
    dec: ruzstd::decoding::FrameDecoder,
    /// Where fetched chunks are kept, and where a cut run kept some.
    spool: Option<super::spool::Spool>,
}

fn bad(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

fn finish(c: Context) -> Sha {
    let mut out = [0u8; 32];
    out.copy_from_slice(c.finish().as_ref());
    out
}

impl<S: BufRead, R: Read, L: Local> Rebuild<S, R, L> {
    /// Rebuild from the tar-split `lines`, a planned `toc`, and `remote`,
    /// which yields the bytes of the planned `ranges` one after the other.
    pub fn new(
        lines: tarsplit::Reader<S>,
        toc: Toc,
        ranges: Vec<(u64, u64)>,
        prev: Option<Prev>,
        local: L,
        remote: R,
    ) -> Self {
        let mut dec = ruzstd::decoding::FrameDecoder::new();
        dec.set_max_window_size(32 * 1024 * 1024);
        Rebuild {
            lines,
            toc,
            prev,
            local,
            remote: BufReader::with_capacity(64 * 1024, remote.take(0)),
            range: 0,
            at: ranges.first().map_or(0, |r| r.0),
            ranges,
            seg: Vec::new(),
            seg_at: 0,
            next_file: 0,
            cur: None,
            dec,
            spool: None,
        }
    }

    /// Keep each fetched chunk in `spool`, and read the chunks planned from it there.
    pub fn with_spool(mut self, spool: Option<super::spool::Spool>) -> Self {
        self.spool = spool;
        self
    }

    /// Consume exactly `n` bytes of the remote stream.
    fn skip(&mut self, n: u64) -> io::Result<()> {
        self.remote.get_mut().set_limit(n);
        let got = io::copy(&mut self.remote, &mut io::sink())?;
        if got != n {
            return Err(bad("a fetched range is shorter than asked"));
        }
        self.at += n;
        Ok(())
    }

    /// Move the remote stream to blob offset `start` and let `end - start` bytes through.
    fn seek_remote(&mut self, start: u64, end: u64) -> io::Result<()> {
        loop {
            let &(_, e) = self
                .ranges
                .get(self.range)
                .ok_or_else(|| bad("a chunk is not in the fetched ranges"))?;
            if start < self.at {
                return Err(bad("a chunk is not in the fetched ranges"));
            }
            if start < e {
                if end > e {
                    return Err(bad("a chunk crosses the end of a fetched range"));
                }
                self.skip(start - self.at)?;
                self.remote.get_mut().set_limit(end - start);
                self.at = end;
                return Ok(());
            }
            self.skip(e - self.at)?;
            self.range += 1;
            if let Some(r) = self.ranges.get(self.range) {
                self.at = r.0;
            }
        }
    }

    /// Open the next piece of `cur`'s file (a chunk, or the whole local file).
    fn open_piece(&mut self, cur: &mut Cur) -> io::Result<()> {
        let file = &self.toc.files[cur.file];
        if file.local && cur.chunk == usize::MAX {
            cur.src = Src::File(self.local.open(&file.name)?);
            cur.left = file.size;
            return Ok(());
        }
        let c = &file.chunks[cur.chunk];
        let (start, end) = (c.start, c.end);
        cur.left = c.size;
        cur.chunk_hash = Context::new(&SHA256);
        cur.src = match c.from {
            From::Zeros => Src::Zeros,
            From::Prev(f, off) => {
                let name = self
                    .prev
                    .as_ref()
                    .and_then(|p| p.name(f))
                    .ok_or_else(|| bad("no previous file"))?;
                let mut fd = self.local.open(name)?;
                fd.seek(io::SeekFrom::Start(off))?;
                Src::File(fd)
            }
            From::Spool => {
                let s = self.spool.as_ref().ok_or_else(|| bad("no spool"))?;
                Src::File(s.open(&c.digest)?)
            }
            From::Fetch => {
                let digest = c.digest;
                self.seek_remote(start, end)?;
                if let Some(s) = &mut self.spool {
                    s.begin(&digest);
                }
                Src::Remote(false)
            }
        };
        Ok(())
    }

    /// The current piece is complete: check it, then open the next or end the file.
    fn close_piece(&mut self, mut cur: Cur) -> io::Result<Option<Cur>> {
        let file = &self.toc.files[cur.file];
        if let Src::Remote(_) = cur.src {
            if !self.dec.is_finished() || self.dec.can_collect() > 0 || !self.remote.fill_buf()?.is_empty() {
                return Err(bad(format!("a chunk of {:?} has more data than its size", file.name)));
            }
        }
        if cur.chunk != usize::MAX {
            let c = &file.chunks[cur.chunk];
            let hash = std::mem::replace(&mut cur.chunk_hash, Context::new(&SHA256));
            let ok = c.from == From::Zeros || finish(hash) == c.digest;
            if let (From::Fetch, Some(s)) = (c.from, &mut self.spool) {
                s.end(ok);
                if ok {
                    // A test's cut: after a chunk is kept.
                    let _ = crate::install::fault("chunk-kept");
                }
            }
            if !ok {
                return Err(bad(format!(
                    "a chunk of {:?} does not match its chunkDigest",
                    file.name
                )));
            }
            if cur.chunk + 1 < file.chunks.len() {
                cur.chunk += 1;
                self.open_piece(&mut cur)?;
                return Ok(Some(cur));
            }
        }
        if finish(cur.file_hash) != file.digest || cur.crc.finish() != cur.want_crc {
            return Err(bad(format!("{:?} does not match its digest and CRC-64", file.name)));
        }
        Ok(None)
    }

    /// Produce up to `buf.len()` bytes of the current piece.
    fn produce(&mut self, cur: &mut Cur, buf: &mut [u8]) -> io::Result<usize> {
        use ruzstd::decoding::BlockDecodingStrategy;
        let want = buf.len().min(usize::try_from(cur.left).unwrap_or(usize::MAX));
        let buf = &mut buf[..want];
        let n = match &mut cur.src {
            Src::Zeros => {
                buf.fill(0);
                want
            }
            Src::File(f) => f.read(buf)?,
            Src::Remote(open) => loop {
                if !*open {
                    if self.remote.fill_buf()?.is_empty() {
                        break 0;
                    }
                    let remote: &mut dyn Read = &mut self.remote;
                    self.dec
                        .reset(remote)
                        .map_err(|e| bad(format!("a fetched chunk: {e}")))?;
                    *open = true;
                }
                if self.dec.can_collect() == 0 && !self.dec.is_finished() {
                    let remote: &mut dyn Read = &mut self.remote;
                    self.dec
                        .decode_blocks(remote, BlockDecodingStrategy::UptoBlocks(1))
                        .map_err(|e| bad(format!("a fetched chunk: {e}")))?;
                    continue;
                }
                let n = self.dec.read(buf)?;
                if n > 0 {
                    break n;
                }
                *open = false;
            },
        };
        if n == 0 {
            return Err(bad(format!(
                "a piece of {:?} ends early",
                self.toc.files[cur.file].name
            )));
        }
        cur.left -= n as u64;
        if let (Src::Remote(_), Some(s)) = (&cur.src, &mut self.spool) {
            s.write(&buf[..n]);
        }
        cur.file_hash.update(&buf[..n]);
        cur.chunk_hash.update(&buf[..n]);
        cur.crc.update(&buf[..n]);
        Ok(n)
    }
}

impl<S: BufRead, R: Read, L: Local> Read for Rebuild<S, R, L> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.seg_at < self.seg.len() {
                let n = buf.len().min(self.seg.len() - self.seg_at);
                buf[..n].copy_from_slice(&self.seg[self.seg_at..self.seg_at + n]);
                self.seg_at += n;
                return Ok(n);
            }
            if let Some(mut cur) = self.cur.take() {
                if cur.left > 0 {
                    let n = self.produce(&mut cur, buf);
                    self.cur = Some(cur);
                    return n;
                }
                self.cur = self.close_piece(cur)?;
                continue;
            }
            let item = self.lines.next_item().map_err(|e| bad(e.message))?;
            match item {
                None if self.next_file == self.toc.files.len() => return Ok(0),
                None => return Err(bad("the tar-split ends before the TOC's files")),
                Some(Item::Segment(bytes)) => (self.seg, self.seg_at) = (bytes, 0),
                Some(Item::File { size: 0, .. }) => {}
                Some(Item::File { name, size, crc }) => {
                    let i = self.next_file;
                    match self.toc.files.get(i) {
                        Some(f) if f.name.as_bytes() == name && f.size == size => {}
                        _ => return Err(bad("the TOC and the tar-split disagree")),
                    }
                    self.next_file += 1;
                    let mut cur = Cur {
                        file: i,
                        chunk: if self.toc.files[i].local { usize::MAX } else { 0 },
                        left: 0,
                        src: Src::Zeros,
                        file_hash: Context::new(&SHA256),
                        chunk_hash: Context::new(&SHA256),
                        crc: Crc64::new(),
                        want_crc: crc.unwrap_or(0),
                    };
                    self.open_piece(&mut cur)?;
                    self.cur = Some(cur);
                }
            }
        }
    }
}

//! A streaming tar reader: ustar and GNU headers, GNU long names (`L`, `K`)
//! and PAX extended headers (`path`, `linkpath`, `size`, `uid`, `gid`,
//! `mtime`). Entries are read one after the other from any `Read`; nothing
//! but the current header is held in memory.

use crate::error::{Error, Result};
use std::io::Read;

const BLOCK: usize = 512;
/// GNU long names and PAX headers bigger than this are refused.
const MAX_META: u64 = 1024 * 1024;
/// PAX key prefix of extended attributes (GNU tar, star, containers' tar).
const XATTR_PREFIX: &str = "SCHILY.xattr.";
/// At most this many extended attributes an entry, each at most the
/// kernel's own limit on a value.
const MAX_XATTRS: usize = 64;
const MAX_XATTR_VALUE: usize = 64 * 1024;

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    HardLink,
    Symlink,
    CharDevice,
    BlockDevice,
    Directory,
    Fifo,
}

/// One entry's header, with long names and PAX overrides applied.
#[derive(Debug, Clone)]
pub struct Header {
    pub path: String,
    pub link: String,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    pub mtime: i64,
    pub dev_major: u32,
    pub dev_minor: u32,
    /// Extended attributes (PAX `SCHILY.xattr.NAME`): name, raw value.
    pub xattrs: Vec<(String, Vec<u8>)>,
}

/// Reads entries from a tar stream.
pub struct Reader<R: Read> {
    inner: R,
    /// Bytes of the current entry's data not yet read, and its padding.
    remaining: u64,
    padding: u64,
    done: bool,
}

impl<R: Read> Reader<R> {
    pub fn new(inner: R) -> Reader<R> {
        Reader {
            inner,
            remaining: 0,
            padding: 0,
            done: false,
        }
    }

    /// The next entry's header, or None at the end of the archive. Data the
    /// caller did not read from the previous entry is skipped.
    pub fn next_header(&mut self) -> Result<Option<Header>> {
        let mut long_name: Option<String> = None;
        let mut long_link: Option<String> = None;
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        loop {
            self.skip_rest()?;
            if self.done {
                return Ok(None);
            }
            let mut block = [0u8; BLOCK];
            if !self.read_block(&mut block)? {
                // A stream that ends without the end-of-archive blocks: accept
                // it at a header boundary, as GNU tar does.
                self.done = true;
                return Ok(None);
            }
            if block.iter().all(|b| *b == 0) {
                self.done = true;
                return Ok(None);
            }
            verify_checksum(&block)?;
            let size = number(&block[124..136]).ok_or_else(|| bad("size field"))?;
            let typeflag = block[156];
            self.set_size(size)?;
            match typeflag {
                b'L' | b'K' | b'x' => {
                    if size > MAX_META {
                        return Err(bad("extended header larger than 1 MiB"));
                    }
                    let mut data = vec![0u8; size as usize];
                    self.read_data(&mut data)?;
                    match typeflag {
                        b'L' => long_name = Some(c_string(&data)),
                        b'K' => long_link = Some(c_string(&data)),
                        _ => pax = parse_pax(&data)?,
                    }
                    continue;
                }
                // Global PAX headers and volume labels carry nothing we use.
                b'g' | b'V' => continue,
                _ => {}
            }
            let kind = match typeflag {
                b'0' | 0 | b'7' => Kind::File,
                b'1' => Kind::HardLink,
                b'2' => Kind::Symlink,
                b'3' => Kind::CharDevice,
                b'4' => Kind::BlockDevice,
                b'5' => Kind::Directory,
                b'6' => Kind::Fifo,
                other => {
                    return Err(bad(&format!(
                        "unsupported entry type '{}'",
                        char::from(other).escape_default()
                    )))
                }
            };
            let mut path = long_name.take().unwrap_or_else(|| {
                let name = c_string(&block[0..100]);
                let prefix = if &block[257..262] == b"ustar" && block[262] == 0 {
                    c_string(&block[345..500])
                } else {
                    String::new()
                };
                if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}/{name}")
                }
            });
            let mut link = long_link.take().unwrap_or_else(|| c_string(&block[157..257]));
            let field = |r: std::ops::Range<usize>, what: &str| number(&block[r]).ok_or_else(|| bad(what));
            let mut h = Header {
                path: String::new(),
                link: String::new(),
                kind,
                mode: (field(100..108, "mode field")? & 0o7777) as u32,
                uid: field(108..116, "uid field")?,
                gid: field(116..124, "gid field")?,
                size,
                mtime: field(136..148, "mtime field")? as i64,
                dev_major: number(&block[329..337]).unwrap_or(0) as u32,
                dev_minor: number(&block[337..345]).unwrap_or(0) as u32,
                xattrs: Vec::new(),
            };
            for (k, raw) in pax.drain(..) {
                if let Some(name) = k.strip_prefix(XATTR_PREFIX) {
                    if h.xattrs.len() >= MAX_XATTRS || raw.len() > MAX_XATTR_VALUE || name.is_empty() {
                        return Err(bad("too many or too large extended attributes"));
                    }
                    h.xattrs.push((name.to_string(), raw));
                    continue;
                }
                let v = String::from_utf8_lossy(&raw).into_owned();
                let num = || v.split('.').next().and_then(|n| n.parse::<u64>().ok());
                match k.as_str() {
                    "path" => path = v,
                    "linkpath" => link = v,
                    "size" => h.size = num().ok_or_else(|| bad("PAX size"))?,
                    "uid" => h.uid = num().ok_or_else(|| bad("PAX uid"))?,
                    "gid" => h.gid = num().ok_or_else(|| bad("PAX gid"))?,
                    // Before 1970 (or nonsense such as -1) is clamped, not refused.
                    "mtime" => h.mtime = pax_time(&v).ok_or_else(|| bad("PAX mtime"))?,
                    _ => {}
                }
            }
            // Only regular files carry data.
            if h.kind != Kind::File {
                h.size = 0;
            }
            self.set_size(h.size)?;
            h.path = path;
            h.link = link;
            return Ok(Some(h));
        }
    }

    /// Read the current entry's data (at most what is left of it).
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        // Sizes stay u64: on 32-bit targets `remaining as usize` would wrap
        // for entries of 4 GiB and more.
        let want = usize::try_from(self.remaining).map_or(buf.len(), |r| r.min(buf.len()));
        let n = self.inner.read(&mut buf[..want]).map_err(io)?;
        if n == 0 {
            return Err(bad("the layer ends inside a file"));
        }
        self.remaining -= n as u64;
        Ok(n)
    }

    /// The underlying stream, to drain what follows the archive.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// The data that follows the current header, and its padding to a block;
    /// a size whose padded length does not fit in 64 bits is refused.
    fn set_size(&mut self, size: u64) -> Result<()> {
        padded(size).ok_or_else(|| bad("entry size out of range"))?;
        self.remaining = size;
        self.padding = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
        Ok(())
    }

    fn skip_rest(&mut self) -> Result<()> {
        let n = self
            .remaining
            .checked_add(self.padding)
            .ok_or_else(|| bad("entry size out of range"))?;
        if n > 0 {
            let copied = std::io::copy(&mut (&mut self.inner).take(n), &mut std::io::sink()).map_err(io)?;
            if copied < n {
                return Err(bad("the layer ends inside an entry"));
            }
        }
        self.remaining = 0;
        self.padding = 0;
        Ok(())
    }

    fn read_data(&mut self, buf: &mut [u8]) -> Result<()> {
        self.inner
            .read_exact(buf)
            .map_err(|_| bad("the layer ends inside a header"))?;
        self.remaining = 0;
        Ok(())
    }

    /// Read a whole block; false at a clean end of stream.
    fn read_block(&mut self, block: &mut [u8; BLOCK]) -> Result<bool> {
        let mut got = 0;
        while got < BLOCK {
            let n = self.inner.read(&mut block[got..]).map_err(io)?;
            if n == 0 {
                return if got == 0 {
                    Ok(false)
                } else {
                    Err(bad("the layer ends inside a header"))
                };
            }
            got += n;
        }
        Ok(true)
    }
}

fn io(e: std::io::Error) -> Error {
    // Decompressors report corrupt data as I/O errors.
    Error::integrity(format!("cannot read the layer: {e}"))
}

fn bad(what: &str) -> Error {
    Error::integrity(format!("malformed tar in the layer: {what}"))
}

fn verify_checksum(block: &[u8; BLOCK]) -> Result<()> {
    let stored = number(&block[148..156]).ok_or_else(|| bad("checksum field"))?;
    let sum: u64 = block
        .iter()
        .enumerate()
        .map(|(i, b)| if (148..156).contains(&i) { 32 } else { u64::from(*b) })
        .sum();
    if sum != stored {
        return Err(bad("header checksum mismatch"));
    }
    Ok(())
}

/// A numeric field: octal ASCII (NUL/space padded), or GNU base-256 when the
/// first byte has its high bit set.
fn number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(*b))?;
        }
        return Some(v);
    }
    let s: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|b| *b == b' ')
        .take_while(|b| *b != 0 && *b != b' ')
        .collect();
    if s.is_empty() {
        return Some(0);
    }
    let mut v: u64 = 0;
    for b in s {
        if !(b'0'..=b'7').contains(&b) {
            return None;
        }
        v = v.checked_mul(8)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

/// A size rounded up to whole blocks, if that fits.
fn padded(size: u64) -> Option<u64> {
    size.checked_add(BLOCK as u64 - 1)
        .map(|s| s / BLOCK as u64 * BLOCK as u64)
}

/// A PAX time (`SECONDS[.FRACTION]`, maybe negative) as whole seconds,
/// negatives clamped to 0.
fn pax_time(v: &str) -> Option<i64> {
    let whole = v.split('.').next()?;
    let secs: i64 = match whole {
        "" | "-" => 0,
        w => w.parse().ok()?,
    };
    Some(secs.max(0))
}

fn c_string(b: &[u8]) -> String {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// PAX records: `LEN KEY=VALUE\n`, LEN counting the whole record.
fn parse_pax(data: &[u8]) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() && rest[0] != 0 {
        let sp = rest.iter().position(|c| *c == b' ').ok_or_else(|| bad("PAX record"))?;
        let len: usize = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|l| *l > sp + 1 && *l <= rest.len())
            .ok_or_else(|| bad("PAX record length"))?;
        let record = &rest[sp + 1..len];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        let eq = record
            .iter()
            .position(|c| *c == b'=')
            .ok_or_else(|| bad("PAX record"))?;
        // Values stay bytes: an extended attribute's value is binary.
        out.push((
            String::from_utf8_lossy(&record[..eq]).into_owned(),
            record[eq + 1..].to_vec(),
        ));
        rest = &rest[len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ustar header for tests.
    pub fn header(name: &str, typeflag: u8, size: u64, link: &str) -> [u8; BLOCK] {
        let mut b = [0u8; BLOCK];
        b[..name.len()].copy_from_slice(name.as_bytes());
        b[100..107].copy_from_slice(b"0000644");
        b[108..115].copy_from_slice(b"0000000");
        b[116..123].copy_from_slice(b"0000000");
        b[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
        b[136..147].copy_from_slice(b"00000000000");
        b[156] = typeflag;
        b[157..157 + link.len()].copy_from_slice(link.as_bytes());
        b[257..263].copy_from_slice(b"ustar\0");
        b[263..265].copy_from_slice(b"00");
        b[148..156].copy_from_slice(b"        ");
        let sum: u64 = b.iter().map(|x| u64::from(*x)).sum();
        b[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        b
    }

    fn archive(parts: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for p in parts {
            v.extend_from_slice(p);
            v.resize(v.len().div_ceil(BLOCK) * BLOCK, 0);
        }
        v.extend_from_slice(&[0u8; 2 * BLOCK]);
        v
    }

    #[test]
    fn reads_files_links_long_names_and_pax() {
        let long = "d/".repeat(80) + "file";
        let pax_rec = |k: &str, v: &str| {
            let body = format!(" {k}={v}\n");
            let mut len = body.len() + 1;
            if format!("{len}{body}").len() != len {
                len += 1;
            }
            format!("{len}{body}")
        };
        let pax = pax_rec("path", "pax/name")
            + &pax_rec("mtime", "1700000000.5")
            + &pax_rec("SCHILY.xattr.user.note", "a=b\u{1}")
            + &pax_rec("SCHILY.xattr.security.capability", "\u{1}\0\0\u{2}");
        let a = archive(&[
            &header("a.txt", b'0', 5, ""),
            b"hello",
            &header("././@LongLink", b'L', long.len() as u64 + 1, ""),
            format!("{long}\0").as_bytes(),
            &header("ignored", b'0', 0, ""),
            &header("pax", b'x', pax.len() as u64, ""),
            pax.as_bytes(),
            &header("short", b'0', 1, ""),
            b"x",
            &header("l", b'2', 0, "a.txt"),
            &header("h", b'1', 0, "a.txt"),
            &header("dir/", b'5', 0, ""),
        ]);
        let mut r = Reader::new(&a[..]);
        let h = r.next_header().unwrap().unwrap();
        assert_eq!(
            (h.path.as_str(), h.kind, h.size, h.mode),
            ("a.txt", Kind::File, 5, 0o644)
        );
        let mut buf = [0u8; 16];
        let n = r.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello");
        let h = r.next_header().unwrap().unwrap();
        assert_eq!(h.path, long);
        let h = r.next_header().unwrap().unwrap();
        assert_eq!((h.path.as_str(), h.mtime), ("pax/name", 1_700_000_000));
        assert_eq!(
            h.xattrs,
            vec![
                ("user.note".to_string(), b"a=b\x01".to_vec()),
                ("security.capability".to_string(), b"\x01\0\0\x02".to_vec())
            ]
        );
        let h = r.next_header().unwrap().unwrap();
        assert_eq!((h.kind, h.link.as_str()), (Kind::Symlink, "a.txt"));
        let h = r.next_header().unwrap().unwrap();
        assert_eq!((h.kind, h.link.as_str()), (Kind::HardLink, "a.txt"));
        let h = r.next_header().unwrap().unwrap();
        assert_eq!(h.kind, Kind::Directory);
        assert!(r.next_header().unwrap().is_none());
    }

    #[test]
    fn refuses_damage() {
        let mut h = header("a", b'0', 100, "");
        h[0] = b'b'; // checksum no longer matches
        assert!(Reader::new(&h[..]).next_header().is_err());
        // Data cut short.
        let a = [&header("a", b'0', 100, "")[..], b"short"].concat();
        let mut r = Reader::new(&a[..]);
        r.next_header().unwrap();
        assert!(r.next_header().is_err());
        // A huge PAX header is refused before it is read.
        let a = header("p", b'x', 10 << 20, "");
        assert!(Reader::new(&a[..]).next_header().is_err());
        assert!(Reader::new(&[0u8; 0][..]).next_header().unwrap().is_none());
    }

    #[test]
    fn sizes_that_overflow_are_refused() {
        // GNU base-256 size of u64::MAX on a global header: its padding would
        // wrap to 0 and the data would be read as headers.
        let mut h = header("g", b'g', 0, "");
        h[124] = 0x80;
        h[125..128].fill(0);
        h[128..136].fill(0xff);
        h[148..156].copy_from_slice(b"        ");
        let sum: u64 = h.iter().map(|x| u64::from(*x)).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        let a = archive(&[&h, &header("evil", b'0', 0, "")]);
        assert!(Reader::new(&a[..]).next_header().is_err());
        assert_eq!(padded(u64::MAX), None);
        assert_eq!(padded(u64::MAX - 511), Some(u64::MAX - 511));
        assert_eq!(padded(1), Some(512));
        assert_eq!(padded((4 << 30) + 1), Some((4 << 30) + 512));
    }

    #[test]
    fn large_entries_are_read_in_full_on_every_target() {
        // 4 GiB + 5 left: the read is limited by the buffer, not by a
        // truncated size (what `as usize` did on 32-bit targets).
        let mut r = Reader::new(std::io::repeat(7));
        r.remaining = (4 << 30) + 5;
        let mut buf = [0u8; 64];
        assert_eq!(r.read(&mut buf).unwrap(), 64);
        r.remaining = 4 << 30;
        assert_eq!(r.read(&mut buf).unwrap(), 64);
        r.remaining = 3;
        assert_eq!(r.read(&mut buf).unwrap(), 3);
    }

    #[test]
    fn pax_times() {
        assert_eq!(pax_time("1700000000.5"), Some(1_700_000_000));
        assert_eq!(pax_time("-1"), Some(0));
        assert_eq!(pax_time("-1.5"), Some(0));
        assert_eq!(pax_time("x"), None);
    }

    #[test]
    fn numbers() {
        assert_eq!(number(b"0000644\0"), Some(0o644));
        assert_eq!(number(b"  755 \0"), Some(0o755));
        assert_eq!(number(b"\0\0\0"), Some(0));
        assert_eq!(number(b"12a"), None);
        assert_eq!(number(&[0x80, 0, 0, 0, 0, 0, 1, 0]), Some(256));
        assert_eq!(number(&[0xff; 12]), None);
    }
}

//! A streaming tar reader: ustar and GNU headers, GNU long names (`L`, `K`),
//! PAX extended headers (`path`, `linkpath`, `size`, `uid`, `gid`, `mtime`)
//! and GNU sparse files (old GNU `S` headers, PAX formats 0.0, 0.1 and 1.0),
//! read as Go's archive/tar reads them, since Go tools write most layers.
//! Entries are read one after the other from any `Read`; nothing but the
//! current header (and a sparse file's bounded map) is held in memory.

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
/// A sparse file's map holds at most this many data regions (16 bytes each).
const MAX_SPARSE: usize = 1 << 16;

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
    /// A sparse file's data regions (offset, length), in order; `size` is
    /// then the file's real size and the entry's data holds the regions'
    /// bytes one after the other. Everything else is a hole.
    pub sparse: Option<Vec<(u64, u64)>>,
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
            // "ustar  \0": GNU's magic and version.
            let gnu = &block[257..265] == b"ustar  \0";
            let mut sparse = None;
            let kind = match typeflag {
                b'0' | 0 | b'7' => Kind::File,
                b'S' if gnu => {
                    sparse = Some(self.old_gnu_map(&block)?);
                    Kind::File
                }
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
                let prefix = prefix(&block);
                if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}/{name}")
                }
            });
            let mut link = long_link.take().unwrap_or_else(|| c_string(&block[157..257]));
            let field = |r: std::ops::Range<usize>, what: &str| number(&block[r]).ok_or_else(|| bad(what));
            // Device numbers wider than 32 bits (base-256) exist nowhere:
            // refused rather than truncated into another device.
            let (dev_major, dev_minor) = match kind {
                Kind::CharDevice | Kind::BlockDevice => {
                    let dev = |r: std::ops::Range<usize>| {
                        number(&block[r])
                            .and_then(|n| u32::try_from(n).ok())
                            .ok_or_else(|| bad("device number out of range"))
                    };
                    (dev(329..337)?, dev(337..345)?)
                }
                _ => (0, 0),
            };
            let mut h = Header {
                path: String::new(),
                link: String::new(),
                kind,
                mode: (field(100..108, "mode field")? & 0o7777) as u32,
                uid: field(108..116, "uid field")?,
                gid: field(116..124, "gid field")?,
                size,
                mtime: field(136..148, "mtime field")? as i64,
                dev_major,
                dev_minor,
                xattrs: Vec::new(),
                sparse: None,
            };
            let mut gnu_sparse = Vec::new();
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
                    k if k.starts_with("GNU.sparse.") => gnu_sparse.push((k[11..].to_string(), v)),
                    _ => {}
                }
            }
            // Only regular files carry data.
            if h.kind != Kind::File {
                h.size = 0;
            }
            self.set_size(h.size)?;
            if !gnu_sparse.is_empty() {
                if h.kind != Kind::File || sparse.is_some() {
                    return Err(bad("GNU sparse records on an entry that is not a plain file"));
                }
                let s = pax_sparse(&gnu_sparse)?;
                if let Some(name) = s.name {
                    path = name;
                }
                // Format 1.0: the map starts the entry's data.
                let map = match s.map {
                    Some(map) => map,
                    None => self.sparse_map_1_0()?,
                };
                sparse = Some((map, s.size.unwrap_or(h.size)));
            }
            if let Some((map, real)) = sparse {
                check_sparse(&map, real, self.remaining)?;
                h.size = real;
                h.sparse = Some(map);
            }
            h.path = path;
            h.link = link;
            return Ok(Some(h));
        }
    }

    /// An old GNU sparse header's map (four regions in the header, 21 more
    /// in each extension block that follows it) and the file's real size.
    fn old_gnu_map(&mut self, header: &[u8; BLOCK]) -> Result<(Vec<(u64, u64)>, u64)> {
        let real = number(&header[483..495]).ok_or_else(|| bad("sparse real size"))?;
        let mut map = Vec::new();
        let mut b = *header;
        let (mut at, mut count, mut more) = (386, 4, 482);
        loop {
            for e in b[at..at + count * 24].chunks(24) {
                // An empty offset ends the list, as in GNU tar.
                if e[0] == 0 {
                    break;
                }
                if map.len() >= MAX_SPARSE {
                    return Err(bad("sparse map too large"));
                }
                match (number(&e[..12]), number(&e[12..])) {
                    (Some(off), Some(len)) => map.push((off, len)),
                    _ => return Err(bad("sparse map entry")),
                }
            }
            if b[more] == 0 {
                return Ok((map, real));
            }
            if !self.read_block(&mut b)? {
                return Err(bad("the layer ends inside a sparse map"));
            }
            (at, count, more) = (0, 21, 504);
        }
    }

    /// A PAX 1.0 sparse map: decimal numbers, one a line (the count, then
    /// offset and length of each region), in whole blocks at the start of
    /// the entry's data.
    fn sparse_map_1_0(&mut self) -> Result<Vec<(u64, u64)>> {
        let (mut text, mut pos) = (Vec::new(), 0);
        let n = self.map_number(&mut text, &mut pos)?;
        let n = usize::try_from(n)
            .ok()
            .filter(|n| *n <= MAX_SPARSE)
            .ok_or_else(|| bad("sparse map too large"))?;
        let mut map = Vec::with_capacity(n);
        for _ in 0..n {
            map.push((
                self.map_number(&mut text, &mut pos)?,
                self.map_number(&mut text, &mut pos)?,
            ));
        }
        Ok(map)
    }

    /// The next number of a 1.0 map, reading whole blocks of the data as
    /// needed (at most 1 MiB of them).
    fn map_number(&mut self, text: &mut Vec<u8>, pos: &mut usize) -> Result<u64> {
        loop {
            if let Some(nl) = text[*pos..].iter().position(|c| *c == b'\n') {
                let token = &text[*pos..*pos + nl];
                *pos += nl + 1;
                return decimal(token).ok_or_else(|| bad("sparse map number"));
            }
            if text.len() as u64 >= MAX_META || self.remaining < BLOCK as u64 {
                return Err(bad("sparse map too large or cut short"));
            }
            let at = text.len();
            text.resize(at + BLOCK, 0);
            let mut got = 0;
            while got < BLOCK {
                got += self.read(&mut text[at + got..])?;
            }
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

/// The ustar prefix of a name, where Go's archive/tar takes one: in ustar
/// headers (star's prefix is shorter); GNU headers keep atime and ctime
/// there instead, except those Go before 1.8 wrote, which it recognises
/// by "times" that do not parse as numbers and a prefix that is ASCII.
fn prefix(b: &[u8; BLOCK]) -> String {
    if &b[257..263] == b"ustar\0" {
        let end = if &b[508..512] == b"tar\0" { 476 } else { 500 };
        return c_string(&b[345..end]);
    }
    if &b[257..265] == b"ustar  \0" && (number(&b[345..357]).is_none() || number(&b[357..369]).is_none()) {
        let p = c_string(&b[345..500]);
        if p.is_ascii() {
            return p;
        }
    }
    String::new()
}

/// What an entry's `GNU.sparse.*` PAX records say.
struct PaxSparse {
    name: Option<String>,
    size: Option<u64>,
    /// None for format 1.0, whose map is in the data.
    map: Option<Vec<(u64, u64)>>,
}

/// `GNU.sparse.*` records (keys without that prefix, in order), decided as
/// Go's archive/tar decides: `major`/`minor` name the format, else a map
/// means 0.0 or 0.1. Any other form is refused, never read as a plain file.
fn pax_sparse(recs: &[(String, String)]) -> Result<PaxSparse> {
    let get = |k: &str| recs.iter().rev().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    // Format 0.0 repeats `offset` and `numbytes`, in that order.
    let mut pairs = Vec::new();
    for (k, v) in recs {
        if k == "offset" || k == "numbytes" {
            if (k == "offset") != (pairs.len() % 2 == 0) || v.contains(',') {
                return Err(bad("GNU.sparse.offset and numbytes out of order"));
            }
            pairs.push(v.as_str());
        }
    }
    let text = match pairs.is_empty() {
        true => get("map").unwrap_or("").to_string(),
        false => pairs.join(","),
    };
    let one = match (get("major"), get("minor")) {
        (Some("1"), Some("0")) => true,
        (Some("0"), Some("0" | "1")) => false,
        (None, None) if !text.is_empty() => false,
        (None, None) => return Err(bad("GNU sparse records without a sparse map")),
        _ => return Err(bad("a GNU sparse format other than 0.0, 0.1 and 1.0")),
    };
    let size = match get("size").or(get("realsize")) {
        Some(v) => Some(decimal(v.as_bytes()).ok_or_else(|| bad("GNU sparse size"))?),
        None => None,
    };
    let map = if one {
        None
    } else {
        let tokens: Vec<&str> = match text.is_empty() {
            true => Vec::new(),
            false => text.split(',').collect(),
        };
        let n = get("numblocks").and_then(|v| decimal(v.as_bytes()));
        if n.is_none_or(|n| n > MAX_SPARSE as u64 || tokens.len() as u64 != 2 * n) {
            return Err(bad("GNU sparse map does not match its numblocks"));
        }
        let mut map = Vec::with_capacity(tokens.len() / 2);
        for t in tokens.chunks(2) {
            match (decimal(t[0].as_bytes()), decimal(t[1].as_bytes())) {
                (Some(off), Some(len)) => map.push((off, len)),
                _ => return Err(bad("GNU sparse map number")),
            }
        }
        Some(map)
    };
    Ok(PaxSparse {
        name: get("name").filter(|n| !n.is_empty()).map(str::to_string),
        size,
        map,
    })
}

/// A sparse map is used only when its regions are in order, do not
/// overlap, end within the real size and hold exactly the entry's data.
fn check_sparse(map: &[(u64, u64)], real: u64, data: u64) -> Result<()> {
    if real > i64::MAX as u64 {
        return Err(bad("sparse file size out of range"));
    }
    let (mut end, mut sum) = (0u64, 0u64);
    for &(off, len) in map {
        end = off
            .checked_add(len)
            .filter(|e| off >= end && *e <= real)
            .ok_or_else(|| bad("sparse map out of order or past the file's size"))?;
        sum += len;
    }
    if sum != data {
        return Err(bad("sparse map does not account for the entry's data"));
    }
    Ok(())
}

/// A decimal number (a PAX value or a token of a sparse map).
fn decimal(b: &[u8]) -> Option<u64> {
    std::str::from_utf8(b).ok()?.parse().ok()
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

    /// Recompute a test header's checksum after editing it.
    fn fix_sum(b: &mut [u8; BLOCK]) {
        b[148..156].copy_from_slice(b"        ");
        let sum: u64 = b.iter().map(|x| u64::from(*x)).sum();
        b[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    }

    fn pax_records(recs: &[(&str, &str)]) -> Vec<u8> {
        let mut out = String::new();
        for (k, v) in recs {
            let body = format!(" {k}={v}\n");
            let mut len = body.len() + 1;
            while format!("{len}{body}").len() != len {
                len += 1;
            }
            out += &format!("{len}{body}");
        }
        out.into_bytes()
    }

    /// Every header of `a` with its data, sparse files expanded.
    fn read_all(a: &[u8]) -> Result<Vec<(Header, Vec<u8>)>> {
        let mut r = Reader::new(a);
        let mut out = Vec::new();
        while let Some(h) = r.next_header()? {
            let mut data = Vec::new();
            let mut buf = [0u8; 7];
            loop {
                let n = r.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                data.extend_from_slice(&buf[..n]);
            }
            if let Some(map) = &h.sparse {
                let mut full = vec![0u8; h.size as usize];
                let mut at = 0;
                for &(off, len) in map {
                    let (off, len) = (off as usize, len as usize);
                    full[off..off + len].copy_from_slice(&data[at..at + len]);
                    at += len;
                }
                data = full;
            }
            out.push((h, data));
        }
        Ok(out)
    }

    /// A PAX 0.1 sparse file: `map` over `data`, real size `real`.
    fn sparse_0_1(real: u64, map: &[(u64, u64)], data: &[u8]) -> Vec<u8> {
        let text: Vec<String> = map.iter().map(|(o, l)| format!("{o},{l}")).collect();
        let pax = pax_records(&[
            ("GNU.sparse.major", "0"),
            ("GNU.sparse.minor", "1"),
            ("GNU.sparse.name", "f"),
            ("GNU.sparse.size", &real.to_string()),
            ("GNU.sparse.numblocks", &map.len().to_string()),
            ("GNU.sparse.map", &text.join(",")),
        ]);
        archive(&[
            &header("p", b'x', pax.len() as u64, ""),
            &pax,
            &header("GNUSparseFile.0/f", b'0', data.len() as u64, ""),
            data,
        ])
    }

    type Map<'a> = &'a [(u64, u64)];
    type Records<'a> = &'a [(&'a str, &'a str)];

    #[test]
    fn sparse_maps_expand_as_go_expands_them() {
        // Go's TestSparseFileReader vectors (archive/tar reader_test.go),
        // as PAX 0.1 entries: real size, map, packed data, expected file.
        let ok: &[(u64, Map, &[u8], &[u8])] = &[
            (8, &[(0, 2), (5, 3)], b"abcde", b"ab\0\0\0cde"),
            (10, &[(0, 2), (5, 3)], b"abcde", b"ab\0\0\0cde\0\0"),
            (8, &[(1, 3), (6, 2)], b"abcde", b"\0abc\0\0de"),
            (8, &[(1, 3), (6, 0), (6, 0), (6, 2)], b"abcde", b"\0abc\0\0de"),
            (10, &[(1, 3), (6, 2)], b"abcde", b"\0abc\0\0de\0\0"),
            (
                10,
                &[(1, 3), (6, 2), (8, 0), (8, 0), (8, 0), (8, 0)],
                b"abcde",
                b"\0abc\0\0de\0\0",
            ),
            (2, &[], b"", b"\0\0"),
        ];
        for (real, map, data, want) in ok {
            let got = read_all(&sparse_0_1(*real, map, data)).unwrap();
            assert_eq!(got.len(), 1);
            assert_eq!((got[0].0.path.as_str(), got[0].0.size), ("f", *real));
            assert_eq!(got[0].1, *want, "{map:?}");
        }
        // Past the real size, overlapping, out of order, more or less data
        // than the map holds, a length that overflows: refused.
        let bad: &[(u64, Map, &[u8])] = &[
            (10, &[(1, 3), (6, 5)], b"abcde"),
            (35, &[(1, 3), (6, 5)], b"abcde"),
            (10, &[(1, 3), (2, 2)], b"abcde"),
            (10, &[(6, 2), (1, 3)], b"abcde"),
            (10, &[(1, 3)], b"abcde"),
            (35, &[(u64::MAX, 3), (6, 2)], b"abcde"),
            (u64::MAX, &[(1, 5)], b"abcde"),
        ];
        for (real, map, data) in bad {
            assert!(read_all(&sparse_0_1(*real, map, data)).is_err(), "{real} {map:?}");
        }
    }

    /// A 200-byte file, holes at even offsets, "GoGo..." at odd ones: the
    /// shape of Go's sparse-formats.tar, whose every member expands to it.
    fn go_sparse_file() -> (Vec<u8>, Vec<(u64, u64)>, Vec<u8>) {
        let full: Vec<u8> = (0..200u8)
            .map(|i| if i % 2 == 0 { 0 } else { b"Go"[(i / 2 % 2) as usize] })
            .collect();
        let map: Vec<(u64, u64)> = (0..100).map(|i| (2 * i + 1, 1)).collect();
        let packed: Vec<u8> = full.iter().copied().skip(1).step_by(2).collect();
        (full, map, packed)
    }

    #[test]
    fn sparse_formats_old_gnu_and_pax_0_0_0_1_1_0() {
        let (full, map, packed) = go_sparse_file();
        // Old GNU: four regions in the header, 21 in each extension block.
        let mut gnu = header("sparse-gnu", b'S', packed.len() as u64, "");
        gnu[257..265].copy_from_slice(b"ustar  \0");
        gnu[483..494].copy_from_slice(b"00000000310");
        let entry = |(o, l): (u64, u64)| format!("{o:011o}\0{l:011o}\0").into_bytes();
        for (i, e) in map[..4].iter().enumerate() {
            gnu[386 + 24 * i..410 + 24 * i].copy_from_slice(&entry(*e));
        }
        gnu[482] = 1;
        fix_sum(&mut gnu);
        let mut ext = Vec::new();
        for chunk in map[4..].chunks(21) {
            let mut b = [0u8; BLOCK];
            for (i, e) in chunk.iter().enumerate() {
                b[24 * i..24 * i + 24].copy_from_slice(&entry(*e));
            }
            b[504] = u8::from(chunk.len() == 21 && ext.len() / BLOCK < 4);
            ext.extend_from_slice(&b);
        }
        // PAX 0.0: offset and numbytes records, one pair a region.
        let mut recs: Vec<(String, String)> = vec![
            ("GNU.sparse.size".into(), "200".into()),
            ("GNU.sparse.numblocks".into(), "100".into()),
        ];
        for (o, l) in &map {
            recs.push(("GNU.sparse.offset".into(), o.to_string()));
            recs.push(("GNU.sparse.numbytes".into(), l.to_string()));
        }
        let recs: Vec<(&str, &str)> = recs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let pax00 = pax_records(&recs);
        // PAX 0.1: one map record.
        let text: Vec<String> = map.iter().map(|(o, l)| format!("{o},{l}")).collect();
        let pax01 = pax_records(&[
            ("GNU.sparse.size", "200"),
            ("GNU.sparse.numblocks", "100"),
            ("GNU.sparse.name", "sparse-posix-0.1"),
            ("GNU.sparse.map", &text.join(",")),
        ]);
        // PAX 1.0: the map in whole blocks before the data.
        let pax10 = pax_records(&[
            ("GNU.sparse.major", "1"),
            ("GNU.sparse.minor", "0"),
            ("GNU.sparse.name", "sparse-posix-1.0"),
            ("GNU.sparse.realsize", "200"),
        ]);
        let mut data10 = format!("{}\n", map.len()).into_bytes();
        for (o, l) in &map {
            data10.extend_from_slice(format!("{o}\n{l}\n").as_bytes());
        }
        data10.resize(data10.len().div_ceil(BLOCK) * BLOCK, 0);
        assert!(data10.len() > BLOCK, "the map spans blocks");
        data10.extend_from_slice(&packed);
        let a = archive(&[
            &[&gnu[..], &ext].concat(),
            &packed,
            &header("p", b'x', pax00.len() as u64, ""),
            &pax00,
            &header("sparse-posix-0.0", b'0', packed.len() as u64, ""),
            &packed,
            &header("p", b'x', pax01.len() as u64, ""),
            &pax01,
            &header("GNUSparseFile.0/sparse-posix-0.1", b'0', packed.len() as u64, ""),
            &packed,
            &header("p", b'x', pax10.len() as u64, ""),
            &pax10,
            &header("GNUSparseFile.0/sparse-posix-1.0", b'0', data10.len() as u64, ""),
            &data10,
            &header("end", b'0', 4, ""),
            b"end\n",
        ]);
        let got = read_all(&a).unwrap();
        let names: Vec<&str> = got.iter().map(|(h, _)| h.path.as_str()).collect();
        assert_eq!(
            names,
            [
                "sparse-gnu",
                "sparse-posix-0.0",
                "sparse-posix-0.1",
                "sparse-posix-1.0",
                "end"
            ]
        );
        for (h, data) in &got[..4] {
            assert_eq!((h.kind, h.size), (Kind::File, 200), "{}", h.path);
            assert_eq!(data, &full, "{}", h.path);
            assert_eq!(&data[..8], b"\0G\0o\0G\0o");
        }
        assert_eq!(got[4].1, b"end\n");
    }

    #[test]
    fn sparse_maps_of_60_gb_files() {
        // The shape of Go's pax-sparse-big.tar and gnu-sparse-big.tar: a
        // 60,000,000,000-byte file, 4 KiB regions every 10 GB and a hole
        // at the end; only the map is held, never the file.
        let map: Vec<(u64, u64)> = (0..6).map(|i| (i * 10_000_000_000, 4096)).collect();
        let mut data = format!("{}\n", map.len()).into_bytes();
        for (o, l) in &map {
            data.extend_from_slice(format!("{o}\n{l}\n").as_bytes());
        }
        data.resize(BLOCK, 0);
        data.resize(BLOCK + 6 * 4096, b'x');
        let pax = pax_records(&[
            ("GNU.sparse.major", "1"),
            ("GNU.sparse.minor", "0"),
            ("GNU.sparse.name", "pax-sparse"),
            ("GNU.sparse.realsize", "60000000000"),
        ]);
        let a = archive(&[
            &header("p", b'x', pax.len() as u64, ""),
            &pax,
            &header("GNUSparseFile.0/pax-sparse", b'0', data.len() as u64, ""),
            &data,
        ]);
        let mut r = Reader::new(&a[..]);
        let h = r.next_header().unwrap().unwrap();
        assert_eq!((h.path.as_str(), h.size), ("pax-sparse", 60_000_000_000));
        assert_eq!(h.sparse.as_deref(), Some(&map[..]));
        let mut n = 0;
        let mut buf = [0u8; 4096];
        loop {
            match r.read(&mut buf).unwrap() {
                0 => break,
                k => n += k,
            }
        }
        assert_eq!(n, 6 * 4096);
        assert!(r.next_header().unwrap().is_none());
    }

    #[test]
    fn sparse_forms_not_supported_are_refused() {
        let one = |recs: &[(&str, &str)], kind: u8, data: &[u8]| {
            let pax = pax_records(recs);
            archive(&[
                &header("p", b'x', pax.len() as u64, ""),
                &pax,
                &header("f", kind, data.len() as u64, ""),
                data,
            ])
        };
        let cases: &[(Records, u8, &[u8])] = &[
            // A version nobody wrote.
            (&[("GNU.sparse.major", "2"), ("GNU.sparse.minor", "0")], b'0', b""),
            (&[("GNU.sparse.major", "1")], b'0', b""),
            // Sparse records but no map.
            (&[("GNU.sparse.size", "10")], b'0', b""),
            // 0.0 pairs out of order.
            (
                &[
                    ("GNU.sparse.size", "10"),
                    ("GNU.sparse.numblocks", "1"),
                    ("GNU.sparse.numbytes", "1"),
                    ("GNU.sparse.offset", "0"),
                ],
                b'0',
                b"a",
            ),
            // numblocks that does not match the map.
            (
                &[
                    ("GNU.sparse.size", "10"),
                    ("GNU.sparse.numblocks", "2"),
                    ("GNU.sparse.map", "0,1"),
                ],
                b'0',
                b"a",
            ),
            // On a symlink.
            (
                &[
                    ("GNU.sparse.size", "1"),
                    ("GNU.sparse.numblocks", "1"),
                    ("GNU.sparse.map", "0,1"),
                ],
                b'2',
                b"",
            ),
        ];
        for (recs, kind, data) in cases {
            assert!(read_all(&one(recs, *kind, data)).is_err(), "{recs:?}");
        }
        // 1.0: a count beyond the bound, a map cut short.
        let v10 = [
            ("GNU.sparse.major", "1"),
            ("GNU.sparse.minor", "0"),
            ("GNU.sparse.realsize", "9"),
        ];
        let mut huge = b"99999999\n".to_vec();
        huge.resize(BLOCK, 0);
        assert!(read_all(&one(&v10, b'0', &huge)).is_err());
        let mut short = b"1\n0\n".to_vec();
        short.resize(BLOCK, 0);
        assert!(read_all(&one(&v10, b'0', &short)).is_err());
        // An 'S' header without GNU magic is no sparse file.
        let s = header("s", b'S', 0, "");
        assert!(read_all(&archive(&[&s])).is_err());
    }

    #[test]
    fn gnu_headers_with_a_ustar_prefix_are_read_as_go_reads_them() {
        // What Go 1.7's writer made (Go's invalid-go17.tar): GNU magic, the
        // name's prefix where GNU keeps atime and ctime.
        let mut h = header("foo", b'0', 0, "");
        h[257..265].copy_from_slice(b"ustar  \0");
        h[345..440].fill(b'a');
        fix_sum(&mut h);
        let got = read_all(&archive(&[&h])).unwrap();
        assert_eq!(got[0].0.path, format!("{}/foo", "a".repeat(95)));
        // A real GNU header: numeric times there, no prefix.
        let mut h = header("foo", b'0', 0, "");
        h[257..265].copy_from_slice(b"ustar  \0");
        h[345..356].copy_from_slice(b"14000000000");
        h[357..368].copy_from_slice(b"14000000000");
        fix_sum(&mut h);
        assert_eq!(read_all(&archive(&[&h])).unwrap()[0].0.path, "foo");
        // ustar: the prefix; star's is shorter (its times follow).
        let mut h = header("foo", b'0', 0, "");
        h[345..348].copy_from_slice(b"dir");
        fix_sum(&mut h);
        assert_eq!(read_all(&archive(&[&h])).unwrap()[0].0.path, "dir/foo");
        h[476..487].copy_from_slice(b"14000000000");
        h[508..512].copy_from_slice(b"tar\0");
        fix_sum(&mut h);
        assert_eq!(read_all(&archive(&[&h])).unwrap()[0].0.path, "dir/foo");
    }

    #[test]
    fn device_numbers_wider_than_32_bits_are_refused() {
        let dev = |major: u64, kind: u8| {
            let mut h = header("d", kind, 0, "");
            h[329] = 0x80;
            h[330..337].copy_from_slice(&major.to_be_bytes()[1..]);
            fix_sum(&mut h);
            read_all(&archive(&[&h]))
        };
        assert!(dev(1 << 32, b'3').is_err());
        assert!(dev(1 << 32, b'4').is_err());
        let ok = dev(u64::from(u32::MAX), b'4').unwrap();
        assert_eq!(ok[0].0.dev_major, u32::MAX);
        // Not a device: the field means nothing.
        assert_eq!(dev(1 << 32, b'0').unwrap()[0].0.dev_major, 0);
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

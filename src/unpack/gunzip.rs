//! gzip streams (RFC 1952, one member or several in a row) inflated with
//! miniz_oxide's raw deflate decoder.
//!
//! The CRC-32 in each member's trailer (and a header's CRC16) is not computed,
//! so a layer whose CRC alone is wrong is accepted where flate2 or Go would
//! refuse it: every layer is checked
//! by sha256 (its blob digest and its diff_id) before anything it wrote is
//! used, which a CRC adds nothing to, and a CRC table with its code costs
//! 20 KB of binary. The trailer's length (ISIZE) is checked, and a member's
//! header is read in full: a stream that is not gzip is refused at its first
//! bytes.

use miniz_oxide::inflate::stream::{inflate, InflateState};
use miniz_oxide::{DataFormat, MZError, MZFlush, MZStatus};
use std::io::{self, BufRead, Read};

/// The inflated bytes of every gzip member of `src`, in order.
pub struct MultiGunzip<R> {
    src: R,
    state: Box<InflateState>,
    /// Inside a member's deflate data (else at a member's header, or the end).
    in_body: bool,
    /// Bytes this member has produced, modulo 2^32 as ISIZE counts them.
    len: u32,
    members: u64,
}

impl<R: BufRead> MultiGunzip<R> {
    pub fn new(src: R) -> Self {
        MultiGunzip {
            src,
            state: InflateState::new_boxed(DataFormat::Raw),
            in_body: false,
            len: 0,
            members: 0,
        }
    }
}

fn corrupt(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("the gzip stream {what}"))
}

/// A short read is the stream's fault; any other error (the blob longer than
/// its descriptor, a disk error) is passed on as it is.
fn short(what: &'static str) -> impl Fn(io::Error) -> io::Error {
    move |e| match e.kind() {
        io::ErrorKind::UnexpectedEof => corrupt(what),
        _ => e,
    }
}

fn byte(src: &mut impl BufRead) -> io::Result<u8> {
    let mut b = [0u8; 1];
    src.read_exact(&mut b).map_err(short("ends inside a member header"))?;
    Ok(b[0])
}

/// Skip a member header (RFC 1952 2.3): the magic, deflate as the method, no
/// reserved flag bits, and the optional extra field, name, comment and CRC16.
fn skip_header(src: &mut impl BufRead) -> io::Result<()> {
    let mut fixed = [0u8; 10];
    src.read_exact(&mut fixed)
        .map_err(short("ends inside a member header"))?;
    if fixed[0] != 0x1f || fixed[1] != 0x8b {
        return Err(corrupt("has bytes that are not a gzip member header"));
    }
    if fixed[2] != 8 {
        return Err(corrupt("uses a compression method other than deflate"));
    }
    let flags = fixed[3];
    if flags & 0xe0 != 0 {
        return Err(corrupt("sets reserved header flags"));
    }
    if flags & 4 != 0 {
        let xlen = u64::from(u16::from_le_bytes([byte(src)?, byte(src)?]));
        if io::copy(&mut src.take(xlen), &mut io::sink())? < xlen {
            return Err(corrupt("ends inside a member header"));
        }
    }
    for bit in [8, 16] {
        // The file name and the comment: bytes up to a zero, streamed.
        if flags & bit != 0 {
            while byte(src)? != 0 {}
        }
    }
    if flags & 2 != 0 {
        byte(src)?;
        byte(src)?;
    }
    Ok(())
}

impl<R: BufRead> Read for MultiGunzip<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.in_body {
                if self.members > 0 && self.src.fill_buf()?.is_empty() {
                    return Ok(0);
                }
                skip_header(&mut self.src)?;
                self.state.reset(DataFormat::Raw);
                self.in_body = true;
                self.len = 0;
            }
            let input = self.src.fill_buf()?;
            let eof = input.is_empty();
            let res = inflate(&mut self.state, input, out, MZFlush::None);
            self.src.consume(res.bytes_consumed);
            self.len = self.len.wrapping_add(res.bytes_written as u32);
            match res.status {
                Ok(MZStatus::StreamEnd) => {
                    let mut trailer = [0u8; 8];
                    self.src
                        .read_exact(&mut trailer)
                        .map_err(short("ends inside a member trailer"))?;
                    if u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]) != self.len {
                        return Err(corrupt("has a member whose length disagrees with its trailer"));
                    }
                    self.in_body = false;
                    self.members += 1;
                }
                Ok(_) | Err(MZError::Buf) if res.bytes_written == 0 && res.bytes_consumed == 0 => {
                    return Err(match eof {
                        true => io::Error::new(io::ErrorKind::UnexpectedEof, "the gzip stream ends early"),
                        false => corrupt("cannot be inflated"),
                    });
                }
                Ok(_) | Err(MZError::Buf) => {}
                Err(_) => return Err(corrupt("has corrupt deflate data")),
            }
            if res.bytes_written > 0 {
                return Ok(res.bytes_written);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::MultiGunzip;
    use std::io::Read;

    // `printf 'hello\n' | gzip -n`, written by GNU gzip 1.12.
    const HELLO: &[u8] = &[
        0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0xcb, 0x48, 0xcd, 0xc9, 0xc9, 0xe7, 0x02, 0x00,
        0x20, 0x30, 0x3a, 0x36, 0x06, 0x00, 0x00, 0x00,
    ];

    fn gunzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        MultiGunzip::new(data).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn one_member() {
        assert_eq!(gunzip(HELLO).unwrap(), b"hello\n");
    }

    #[test]
    fn members_in_a_row() {
        let two = [HELLO, HELLO].concat();
        assert_eq!(gunzip(&two).unwrap(), b"hello\nhello\n");
    }

    #[test]
    fn optional_header_fields_are_skipped() {
        // FEXTRA (2 bytes), FNAME "a", FCOMMENT "b", FHCRC.
        let mut m = vec![
            0x1f,
            0x8b,
            0x08,
            4 | 8 | 16 | 2,
            0,
            0,
            0,
            0,
            0,
            3,
            2,
            0,
            b'x',
            b'y',
            b'a',
            0,
            b'b',
            0,
            0,
            0,
        ];
        m.extend_from_slice(&HELLO[10..]);
        assert_eq!(gunzip(&m).unwrap(), b"hello\n");
    }

    #[test]
    fn damage_is_refused() {
        assert!(gunzip(b"").is_err());
        assert!(gunzip(b"not gzip at all").is_err());
        assert!(gunzip(&HELLO[..HELLO.len() - 1]).is_err(), "a short trailer");
        assert!(gunzip(&HELLO[..15]).is_err(), "cut in the deflate data");
        let mut wrong_len = HELLO.to_vec();
        wrong_len[22] = 7;
        assert!(gunzip(&wrong_len).is_err(), "ISIZE disagrees");
        for tail in [
            &b"\0\0\0\0"[..],
            &[0u8; 512][..],
            b"PK\x03\x04 not a gzip member at all",
        ] {
            let mut garbage = HELLO.to_vec();
            garbage.extend_from_slice(tail);
            assert!(gunzip(&garbage).is_err(), "{} bytes after the last member", tail.len());
        }
        let mut reserved = HELLO.to_vec();
        reserved[3] = 0x80;
        assert!(gunzip(&reserved).is_err());
    }
}

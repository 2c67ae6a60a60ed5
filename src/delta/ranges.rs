//! The answer to a ranged blob GET as the bytes of the ranges asked for,
//! one after the other: a single `206` part, or `multipart/byteranges`
//! parsed by each part's `Content-Range` (never by position), where one part
//! may cover several ranges and gaps are skipped. A part that is missing,
//! out of order, short or elsewhere than asked is an error: the caller then
//! tries single ranges, then the whole layer.

use std::io::{self, BufRead, Read};

/// Header and boundary lines are at most this long; a part has at most this many header lines.
const MAX_LINE: u64 = 1024;
const MAX_HEADERS: usize = 32;

/// The `Range` header value for `ranges` (`[start, end)`, ascending).
pub fn header(ranges: &[(u64, u64)]) -> String {
    let parts: Vec<String> = ranges.iter().map(|(s, e)| format!("{s}-{}", e - 1)).collect();
    format!("bytes={}", parts.join(","))
}

/// `bytes START-END/TOTAL` as `[START, END + 1)`.
pub fn content_range(v: &str) -> Option<(u64, u64)> {
    let v = v.trim();
    let span = v.get(..6).filter(|p| p.eq_ignore_ascii_case("bytes "))?;
    let (a, b) = v[span.len()..].split('/').next()?.split_once('-')?;
    let (a, b): (u64, u64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (a <= b).then_some((a, b.checked_add(1)?))
}

/// The boundary of a `multipart/byteranges` content type.
pub fn boundary(content_type: &str) -> Option<String> {
    let (kind, params) = content_type.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("multipart/byteranges") {
        return None;
    }
    let b = params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_string())
    })?;
    (!b.is_empty() && b.len() <= 200).then_some(b)
}

/// The wanted ranges' bytes out of a 206 body.
pub struct Parts<R> {
    body: R,
    /// `Some` for multipart; `None` for a single part spanning `part`.
    boundary: Option<Vec<u8>>,
    want: Vec<(u64, u64)>,
    idx: usize,
    /// Bytes of `want[idx]` already given.
    done: u64,
    /// The current part's span and the blob offset of its next byte.
    part: Option<(u64, u64)>,
    at: u64,
}

fn bad(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("ranged answer: {why}"))
}

impl<R: BufRead> Parts<R> {
    /// A single-part 206 whose `Content-Range` is `span`.
    pub fn single(body: R, span: (u64, u64), want: Vec<(u64, u64)>) -> Self {
        Parts {
            body,
            boundary: None,
            want,
            idx: 0,
            done: 0,
            part: Some(span),
            at: span.0,
        }
    }
    /// A `multipart/byteranges` 206 with this boundary.
    pub fn multi(body: R, boundary: &str, want: Vec<(u64, u64)>) -> Self {
        let b = format!("--{boundary}").into_bytes();
        Parts {
            body,
            boundary: Some(b),
            want,
            idx: 0,
            done: 0,
            part: None,
            at: 0,
        }
    }

    fn line(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        out.clear();
        let n = self.body.by_ref().take(MAX_LINE).read_until(b'\n', out)?;
        if n == 0 {
            return Err(bad("the body ends before the ranges"));
        }
        if out.last() != Some(&b'\n') {
            return Err(bad("a header line is too long"));
        }
        while out.last().is_some_and(|c| *c == b'\n' || *c == b'\r') {
            out.pop();
        }
        Ok(())
    }

    fn discard(&mut self, n: u64) -> io::Result<()> {
        if io::copy(&mut self.body.by_ref().take(n), &mut io::sink())? != n {
            return Err(bad("a part is truncated"));
        }
        self.at += n;
        Ok(())
    }

    /// Skip what is left of the current part and read the next part's headers.
    fn next_part(&mut self) -> io::Result<()> {
        let Some(b) = self.boundary.clone() else {
            return Err(bad("a range is missing"));
        };
        if let Some((_, end)) = self.part.take() {
            self.discard(end - self.at)?;
        }
        let mut l = Vec::new();
        let mut lines = 0;
        loop {
            self.line(&mut l)?;
            lines += 1;
            if l == b {
                break;
            }
            if l.starts_with(&b) || lines > MAX_HEADERS {
                return Err(bad("a range is missing"));
            }
        }
        let mut span = None;
        for _ in 0..MAX_HEADERS {
            self.line(&mut l)?;
            if l.is_empty() {
                let s = span.ok_or_else(|| bad("a part has no Content-Range"))?;
                self.part = Some(s);
                self.at = s.0;
                return Ok(());
            }
            let text = String::from_utf8_lossy(&l);
            if let Some((k, v)) = text.split_once(':') {
                if k.trim().eq_ignore_ascii_case("content-range") {
                    span = Some(content_range(v).ok_or_else(|| bad("a part's Content-Range is malformed"))?);
                }
            }
        }
        Err(bad("a part has too many headers"))
    }
}

impl<R: BufRead> Read for Parts<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(&(s, e)) = self.want.get(self.idx) else {
                return Ok(0);
            };
            if self.done == e - s {
                (self.idx, self.done) = (self.idx + 1, 0);
                continue;
            }
            let need = s + self.done;
            match self.part {
                Some((ps, pe)) if ps <= need && need < pe => {
                    if self.at > need {
                        return Err(bad("the parts are out of order"));
                    }
                    self.discard(need - self.at)?;
                    let n = (buf.len() as u64).min(e - need).min(pe - need) as usize;
                    let got = self.body.read(&mut buf[..n])?;
                    if got == 0 {
                        return Err(bad("a part is truncated"));
                    }
                    self.at += got as u64;
                    self.done += got as u64;
                    return Ok(got);
                }
                Some((ps, _)) if ps > need => return Err(bad("a part starts after the range it should hold")),
                _ => self.next_part()?,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob() -> Vec<u8> {
        (0..=255u8).cycle().take(4000).collect()
    }
    fn part(b: &[u8], s: u64, e: u64) -> Vec<u8> {
        let mut out = format!(
            "\r\n--XYZ\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes {s}-{}/4000\r\n\r\n",
            e - 1
        )
        .into_bytes();
        out.extend_from_slice(&b[s as usize..e as usize]);
        out
    }
    fn read(p: impl Read) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut p = p;
        p.read_to_end(&mut out).map(|_| out)
    }

    #[test]
    fn header_and_fields() {
        assert_eq!(header(&[(0, 10), (20, 21)]), "bytes=0-9,20-20");
        assert_eq!(content_range("bytes 5-9/100"), Some((5, 10)));
        assert_eq!(content_range("bytes 9-5/100"), None);
        assert_eq!(boundary("multipart/byteranges; boundary=\"a b\""), Some("a b".into()));
        assert_eq!(boundary("text/plain; boundary=x"), None);
    }

    #[test]
    fn multipart_by_content_range() {
        let b = blob();
        let want = vec![(10, 20), (100, 150), (3000, 3010)];
        let expect: Vec<u8> = want
            .iter()
            .flat_map(|&(s, e)| b[s as usize..e as usize].to_vec())
            .collect();
        // One part each, with the closing boundary.
        let mut body = [part(&b, 10, 20), part(&b, 100, 150), part(&b, 3000, 3010)].concat();
        body.extend_from_slice(b"\r\n--XYZ--\r\n");
        assert_eq!(read(Parts::multi(&body[..], "XYZ", want.clone())).unwrap(), expect);
        // One part covering the first two ranges (a server merging them).
        let body = [part(&b, 0, 200), part(&b, 3000, 3010)].concat();
        assert_eq!(read(Parts::multi(&body[..], "XYZ", want.clone())).unwrap(), expect);
        // A single 206 spanning all.
        assert_eq!(
            read(Parts::single(&b[5..3100], (5, 3100), want.clone())).unwrap(),
            expect
        );
    }

    #[test]
    fn broken_answers_are_errors() {
        let b = blob();
        let want = vec![(10, 20), (100, 150)];
        for body in [
            [part(&b, 100, 150), part(&b, 10, 20)].concat(), // reordered
            part(&b, 10, 20),                                // a dropped part
            [part(&b, 10, 20), part(&b, 101, 150)].concat(), // wrong Content-Range
            [part(&b, 10, 20), part(&b, 100, 150)[..60].to_vec()].concat(), // truncated
        ] {
            assert!(read(Parts::multi(&body[..], "XYZ", want.clone())).is_err());
        }
        assert!(read(Parts::single(&b[10..20], (10, 20), want)).is_err());
    }
}

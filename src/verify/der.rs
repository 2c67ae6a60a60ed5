//! A bounded DER reader of our own, for the parts of certificates that
//! webpki does not expose (Fulcio's extensions, the SCT list) and for
//! rebuilding a precertificate: definite, minimal lengths only, single-byte
//! tags, a nesting limit, no trailing bytes where a structure ends.

/// Deeper nesting than this is refused (a certificate needs about 8).
pub const MAX_DEPTH: usize = 16;

/// One element: its tag, its contents and its whole encoding.
#[derive(Clone, Copy)]
pub struct Tlv<'a> {
    pub tag: u8,
    pub body: &'a [u8],
    pub raw: &'a [u8],
}

/// A cursor over a sequence of DER elements at one nesting depth.
pub struct Der<'a> {
    rest: &'a [u8],
    depth: usize,
}

type R<T> = std::result::Result<T, String>;

fn bad(why: &str) -> String {
    format!("malformed DER: {why}")
}

impl<'a> Der<'a> {
    pub fn new(bytes: &'a [u8]) -> Der<'a> {
        Der { rest: bytes, depth: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The contents of `body` as elements one level deeper.
    pub fn inner(&self, body: &'a [u8]) -> R<Der<'a>> {
        if self.depth >= MAX_DEPTH {
            return Err(bad("nested too deeply"));
        }
        Ok(Der {
            rest: body,
            depth: self.depth + 1,
        })
    }

    /// The next element, whatever its tag.
    pub fn element(&mut self) -> R<Tlv<'a>> {
        let b = self.rest;
        let (&tag, _) = b.split_first().ok_or_else(|| bad("truncated"))?;
        if tag & 0x1f == 0x1f {
            return Err(bad("multi-byte tag"));
        }
        let l = *b.get(1).ok_or_else(|| bad("truncated"))?;
        let (len, head) = match l {
            0..=0x7f => (l as usize, 2),
            0x81..=0x83 => {
                let n = (l & 0x7f) as usize;
                let bytes = b.get(2..2 + n).ok_or_else(|| bad("truncated"))?;
                let len = bytes.iter().fold(0usize, |a, x| a << 8 | *x as usize);
                // Minimal: no leading zero byte, no long form for short lengths.
                if bytes[0] == 0 || len < 0x80 {
                    return Err(bad("non-minimal length"));
                }
                (len, 2 + n)
            }
            _ => return Err(bad("indefinite or oversized length")),
        };
        let end = head
            .checked_add(len)
            .filter(|e| *e <= b.len())
            .ok_or_else(|| bad("truncated"))?;
        self.rest = &b[end..];
        Ok(Tlv {
            tag,
            body: &b[head..end],
            raw: &b[..end],
        })
    }

    /// The next element, which must have `tag`.
    pub fn expect(&mut self, tag: u8) -> R<Tlv<'a>> {
        let t = self.element()?;
        if t.tag != tag {
            return Err(bad(&format!("tag {:#04x} where {tag:#04x} was expected", t.tag)));
        }
        Ok(t)
    }

    /// The next element if it has `tag`.
    pub fn optional(&mut self, tag: u8) -> R<Option<Tlv<'a>>> {
        if self.rest.first() == Some(&tag) {
            return self.expect(tag).map(Some);
        }
        Ok(None)
    }

    /// The contents of the next element, which must have `tag`, as a reader.
    pub fn enter(&mut self, tag: u8) -> R<Der<'a>> {
        let t = self.expect(tag)?;
        self.inner(t.body)
    }

    /// Refuse trailing bytes.
    pub fn end(&self) -> R<()> {
        match self.rest.is_empty() {
            true => Ok(()),
            false => Err(bad("trailing bytes")),
        }
    }
}

/// Encode one element (for rebuilding a precertificate's TBS).
pub fn encode(tag: u8, body: &[u8]) -> Vec<u8> {
    let n = body.len();
    let mut out = vec![tag];
    match n {
        0..=0x7f => out.push(n as u8),
        0x80..=0xff => out.extend([0x81, n as u8]),
        0x100..=0xffff => out.extend([0x82, (n >> 8) as u8, n as u8]),
        _ => out.extend([0x83, (n >> 16) as u8, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_must_be_minimal_and_definite() {
        assert_eq!(Der::new(&[4, 1, 9]).expect(4).unwrap().body, &[9]);
        for bad in [
            &[4u8, 0x81, 1, 9][..],
            &[4, 0x82, 0, 0x80],
            &[4, 0x80, 9, 0, 0],
            &[4, 0x84, 0, 0, 0, 1, 9],
            &[4, 2, 9],
            &[0x1f, 1, 9],
            &[4],
            &[],
        ] {
            assert!(Der::new(bad).element().is_err(), "{bad:?}");
        }
        let long: Vec<u8> = encode(4, &[7; 300]);
        assert_eq!(&long[..4], &[4, 0x82, 1, 44]);
        assert_eq!(Der::new(&long).expect(4).unwrap().body.len(), 300);
        assert!(Der::new(&[4, 1, 9, 0]).expect(4).is_ok());
    }

    #[test]
    fn nesting_is_bounded() {
        let mut v = vec![];
        for _ in 0..40 {
            v = encode(0x30, &v);
        }
        let mut d = Der::new(&v);
        let mut deepest = 0;
        let r: R<()> = (|| loop {
            d = d.enter(0x30)?;
            deepest += 1;
        })();
        assert!(r.unwrap_err().contains("deeply"));
        assert_eq!(deepest, MAX_DEPTH);
    }
}

//! vbatts/tar-split's NDJSON, as containers/storage embeds it in a
//! zstd:chunked layer: one JSON object per line, type 1 (a file: its name,
//! size and the CRC-64/ISO of its payload, 8 bytes big-endian, base64) or
//! type 2 (raw bytes of the tar stream: headers, padding, the end blocks,
//! base64). Concatenating segments and payloads in order gives back the
//! exact tar stream.

use super::refuse;
use crate::error::Result;
use base64::Engine;
use std::io::{BufRead, Read};

/// The longest line accepted (a segment holds headers or padding; tar-split
/// writes trailing padding in 1 MiB pieces, 1.4 MB as base64).
pub const MAX_LINE: u64 = 4 * 1024 * 1024;

/// One tar-split line.
#[derive(Debug, PartialEq, Eq)]
pub enum Item {
    /// Bytes of the tar stream itself.
    Segment(Vec<u8>),
    /// A file's payload goes here: `size` bytes with this CRC-64 (when size > 0).
    File { name: Vec<u8>, size: u64, crc: Option<u64> },
}

#[derive(serde::Deserialize)]
struct Line {
    #[serde(rename = "type")]
    kind: u8,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    name_raw: Option<String>,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    payload: Option<String>,
}

/// The lines of a tar-split stream, one at a time.
pub struct Reader<R> {
    source: R,
    line: Vec<u8>,
}

impl<R: BufRead> Reader<R> {
    pub fn new(source: R) -> Reader<R> {
        Reader {
            source,
            line: Vec::new(),
        }
    }

    /// The next item; `None` at the end.
    pub fn next_item(&mut self) -> Result<Option<Item>> {
        let b64 = |s: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|_| refuse("a tar-split line has invalid base64"))
        };
        loop {
            self.line.clear();
            let n = self
                .source
                .by_ref()
                .take(MAX_LINE + 1)
                .read_until(b'\n', &mut self.line)
                .map_err(|e| refuse(format!("cannot read the tar-split: {e}")))?;
            if n == 0 {
                return Ok(None);
            }
            if n as u64 > MAX_LINE {
                return Err(refuse(format!("a tar-split line is longer than {MAX_LINE} bytes")));
            }
            if self.line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let l: Line = serde_json::from_slice(&self.line)
                .map_err(|e| refuse(format!("a tar-split line is not usable: {e}")))?;
            let payload = l.payload.as_deref().map(b64).transpose()?.unwrap_or_default();
            return Ok(Some(match l.kind {
                1 => {
                    let name = match (l.name_raw, l.name) {
                        (Some(raw), _) if !raw.is_empty() => b64(&raw)?,
                        (_, n) => n.unwrap_or_default().into_bytes(),
                    };
                    let crc = match (l.size, <[u8; 8]>::try_from(&payload[..])) {
                        (0, _) => None,
                        (_, Ok(c)) => Some(u64::from_be_bytes(c)),
                        _ => return Err(refuse("a tar-split file entry has no CRC-64")),
                    };
                    Item::File {
                        name,
                        size: l.size,
                        crc,
                    }
                }
                2 => Item::Segment(payload),
                t => return Err(refuse(format!("tar-split entry type {t} is unknown"))),
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let text = concat!(
            "{\"type\":2,\"payload\":\"aGVhZA==\",\"position\":0}\n",
            "{\"type\":1,\"name\":\"a\",\"size\":3,\"payload\":\"AAAAAAAAAAE=\",\"position\":1}\n",
            "\n",
            "{\"type\":1,\"name_raw\":\"/w==\",\"payload\":null,\"position\":2}\n",
        );
        let mut r = Reader::new(text.as_bytes());
        assert_eq!(r.next_item().unwrap(), Some(Item::Segment(b"head".to_vec())));
        assert_eq!(
            r.next_item().unwrap(),
            Some(Item::File {
                name: b"a".to_vec(),
                size: 3,
                crc: Some(1)
            })
        );
        assert_eq!(
            r.next_item().unwrap(),
            Some(Item::File {
                name: vec![0xff],
                size: 0,
                crc: None
            })
        );
        assert_eq!(r.next_item().unwrap(), None);
    }

    #[test]
    fn refused_lines() {
        for bad in [
            "{\"type\":3}\n",
            "{\"type\":1,\"name\":\"a\",\"size\":3}\n",
            "{\"type\":2,\"payload\":\"***\"}\n",
            "[1,2]\n",
        ] {
            assert!(Reader::new(bad.as_bytes()).next_item().is_err(), "{bad}");
        }
        // A huge line is refused after MAX_LINE bytes, not held whole.
        let huge = std::io::BufReader::new(std::io::repeat(b' ').take(MAX_LINE + 10).chain(&b"x"[..]));
        let e = Reader::new(huge).next_item().unwrap_err();
        assert!(e.message.contains("longer"), "{}", e.message);
    }
}

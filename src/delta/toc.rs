//! The zstd:chunked table of contents, parsed as a stream: serde visits one
//! entry at a time and only what a partial pull needs is kept (name, size,
//! digest, chunk ranges), never a JSON tree of the whole document.
//!
//! The writer (containers/storage `pkg/chunked/compressor`) gives each
//! regular file with a payload one entry of type `reg`; when the rolling sum
//! split it into more than one chunk, that entry describes the first chunk
//! and `chunk` entries with the same name follow, one per further chunk.
//! Each chunk is its own zstd frame starting at `offset`; it ends where the
//! next chunk starts, the last one at the file's `endOffset`.

use super::{parse_sha, refuse, Sha, MAX_ENTRIES};
use crate::error::Result;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// What the plan decided a chunk's bytes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    /// Its frame range in the blob.
    Fetch,
    /// A run of zeros (`chunkType: zeros`).
    Zeros,
    /// The previous image's file number `.0` (in its TOC), at its offset `.1`.
    Prev(u32, u64),
    /// Kept in the spool by a run that was cut.
    Spool,
}

/// One chunk of a file's payload.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// Its frame range in the blob.
    pub start: u64,
    pub end: u64,
    /// Its offset in the file and its uncompressed size.
    pub offset: u64,
    pub size: u64,
    pub digest: Sha,
    pub from: From,
}

/// A regular file with a payload.
#[derive(Debug, Clone)]
pub struct File {
    pub name: Box<str>,
    pub size: u64,
    pub digest: Sha,
    pub chunks: Vec<Chunk>,
    /// The plan found the whole file in the reuse root.
    pub local: bool,
}

/// A parsed TOC: the files with payloads, in the TOC's order.
#[derive(Debug)]
pub struct Toc {
    pub files: Vec<File>,
    pub tarsplit_digest: Sha,
}

#[derive(serde::Deserialize)]
struct Entry {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    digest: String,
    #[serde(default)]
    offset: u64,
    #[serde(default, rename = "endOffset")]
    end_offset: u64,
    #[serde(default, rename = "chunkSize")]
    chunk_size: u64,
    #[serde(default, rename = "chunkOffset")]
    chunk_offset: u64,
    #[serde(default, rename = "chunkDigest")]
    chunk_digest: String,
    #[serde(default, rename = "chunkType")]
    chunk_type: String,
}

/// Collects entries into files, checking them as they come.
struct Builder {
    files: Vec<File>,
    /// The last file's `endOffset`, while `chunk` entries may still follow it.
    open_end: Option<u64>,
    /// Where the last closed file's frames ended: frames must ascend.
    done_to: u64,
    /// Frames must end before the metadata.
    data_end: u64,
    entries: usize,
}

impl Builder {
    fn push(&mut self, e: Entry) -> std::result::Result<(), String> {
        self.entries += 1;
        if self.entries > MAX_ENTRIES {
            return Err(format!("the TOC has more than {MAX_ENTRIES} entries"));
        }
        if e.kind == "chunk" {
            let file = match (self.open_end, self.files.last_mut()) {
                (Some(_), Some(f)) if *f.name == *e.name => f,
                _ => return Err(format!("a chunk entry for {:?} follows no file of that name", e.name)),
            };
            let last = file
                .chunks
                .last_mut()
                .ok_or("a chunk entry follows a file without chunks")?;
            if e.offset <= last.start || e.chunk_offset != last.offset + last.size || e.chunk_size == 0 {
                return Err(format!("the chunks of {:?} are not contiguous", e.name));
            }
            last.end = e.offset;
            let digest = parse_sha(&e.chunk_digest).ok_or("a chunk has no sha256 chunkDigest")?;
            file.chunks.push(Chunk {
                start: e.offset,
                end: 0,
                offset: e.chunk_offset,
                size: e.chunk_size,
                digest,
                from: if e.chunk_type == "zeros" {
                    From::Zeros
                } else {
                    From::Fetch
                },
            });
            return Ok(());
        }
        self.close()?;
        if e.kind != "reg" || e.size == 0 {
            return Ok(());
        }
        let digest = parse_sha(&e.digest).ok_or_else(|| format!("{:?} has no sha256 digest", e.name))?;
        let first = if e.chunk_digest.is_empty() {
            Chunk {
                start: e.offset,
                end: 0,
                offset: 0,
                size: e.size,
                digest,
                from: From::Fetch,
            }
        } else {
            Chunk {
                start: e.offset,
                end: 0,
                offset: e.chunk_offset,
                size: e.chunk_size,
                digest: parse_sha(&e.chunk_digest).ok_or("a chunk has no sha256 chunkDigest")?,
                from: if e.chunk_type == "zeros" {
                    From::Zeros
                } else {
                    From::Fetch
                },
            }
        };
        if first.offset != 0 || first.size == 0 {
            return Err(format!("the first chunk of {:?} does not start the file", e.name));
        }
        self.files.push(File {
            name: e.name.into(),
            size: e.size,
            digest,
            chunks: vec![first],
            local: false,
        });
        self.open_end = Some(e.end_offset);
        Ok(())
    }

    /// The last file is complete: its chunks must cover it and their frames
    /// ascend inside the data part of the blob.
    fn close(&mut self) -> std::result::Result<(), String> {
        let Some(end) = self.open_end.take() else { return Ok(()) };
        let Some(file) = self.files.last_mut() else {
            return Ok(());
        };
        if let Some(last) = file.chunks.last_mut() {
            last.end = end;
        }
        let covered: u64 = file.chunks.iter().map(|c| c.size).sum();
        let first = file.chunks.first().map_or(0, |c| c.start);
        let ordered = file.chunks.iter().all(|c| c.start < c.end);
        if covered != file.size || !ordered || first < self.done_to || end > self.data_end {
            return Err(format!(
                "the chunks of {:?} do not describe it inside the blob",
                file.name
            ));
        }
        self.done_to = end;
        Ok(())
    }
}

struct Document<'b>(&'b mut Builder);
struct Entries<'b>(&'b mut Builder);

impl<'de> Visitor<'de> for Document<'_> {
    type Value = (i64, String);
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a zstd:chunked TOC object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(i64, String), A::Error> {
        let (mut version, mut split) = (0, String::new());
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "version" => version = map.next_value()?,
                "tarSplitDigest" => split = map.next_value()?,
                "entries" => map.next_value_seed(Entries(&mut *self.0))?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok((version, split))
    }
}

impl<'de> DeserializeSeed<'de> for Entries<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Entries<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of TOC entries")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        while let Some(e) = seq.next_element::<Entry>()? {
            self.0.push(e).map_err(de::Error::custom)?;
        }
        self.0.close().map_err(de::Error::custom)
    }
}

/// Parse a TOC (uncompressed JSON); every chunk frame must end by `data_end`.
/// Duplicate file names are refused: which of two would a chunk belong to?
pub fn parse(json: impl std::io::Read, data_end: u64) -> Result<Toc> {
    let mut b = Builder {
        files: Vec::new(),
        open_end: None,
        done_to: 0,
        data_end,
        entries: 0,
    };
    let mut de = serde_json::Deserializer::from_reader(json);
    let (version, split) = de::Deserializer::deserialize_map(&mut de, Document(&mut b))
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| refuse(format!("the TOC is not usable: {e}")))?;
    if version != 1 {
        return Err(refuse(format!("TOC version {version} is not supported")));
    }
    let tarsplit_digest = parse_sha(&split).ok_or_else(|| refuse("the TOC has no tarSplitDigest"))?;
    let mut names: Vec<&str> = b.files.iter().map(|f| &*f.name).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(refuse(format!("the TOC lists {:?} twice", w[0])));
    }
    drop(names);
    Ok(Toc {
        files: b.files,
        tarsplit_digest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn doc(entries: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&json!({"version": 1, "entries": entries, "tarSplitDigest": d('f')})).unwrap()
    }

    #[test]
    fn files_and_chunks() {
        let j = doc(json!([
            {"type": "dir", "name": "a/", "mode": 493, "xattrs": {"user.x": "eA=="}},
            {"type": "reg", "name": "a/one", "size": 5, "digest": d('1'), "offset": 100, "endOffset": 120},
            {"type": "reg", "name": "a/empty"},
            {"type": "reg", "name": "a/big", "size": 30, "digest": d('2'), "offset": 130, "endOffset": 200,
             "chunkSize": 10, "chunkDigest": d('3')},
            {"type": "chunk", "name": "a/big", "chunkOffset": 10, "chunkSize": 15, "offset": 150,
             "chunkDigest": d('4'), "chunkType": "zeros"},
            {"type": "chunk", "name": "a/big", "chunkOffset": 25, "chunkSize": 5, "offset": 170, "chunkDigest": d('5')},
            {"type": "symlink", "name": "l", "linkName": "a/one"},
        ]));
        let toc = parse(&j[..], 1000).unwrap();
        assert_eq!(toc.tarsplit_digest, [0xff; 32]);
        assert_eq!(toc.files.len(), 2);
        let one = &toc.files[0];
        assert_eq!(
            (one.chunks.len(), one.chunks[0].start, one.chunks[0].end),
            (1, 100, 120)
        );
        assert_eq!(one.chunks[0].digest, one.digest);
        let big = &toc.files[1];
        let spans: Vec<_> = big
            .chunks
            .iter()
            .map(|c| (c.start, c.end, c.offset, c.size, c.from))
            .collect();
        assert_eq!(
            spans,
            [
                (130, 150, 0, 10, From::Fetch),
                (150, 170, 10, 15, From::Zeros),
                (170, 200, 25, 5, From::Fetch)
            ]
        );
    }

    #[test]
    fn refused_shapes() {
        let reg = |name: &str, off: u64, end: u64| json!({"type": "reg", "name": name, "size": 5, "digest": d('1'), "offset": off, "endOffset": end});
        let cases = [
            ("duplicate", doc(json!([reg("x", 10, 20), reg("x", 20, 30)]))),
            ("descending", doc(json!([reg("x", 20, 30), reg("y", 10, 20)]))),
            ("out of the blob", doc(json!([reg("x", 10, 2000)]))),
            ("empty frame", doc(json!([reg("x", 10, 10)]))),
            (
                "chunk of another file",
                doc(json!([reg("x", 10, 20),
                {"type": "chunk", "name": "y", "chunkOffset": 5, "chunkSize": 1, "offset": 15, "chunkDigest": d('2')}])),
            ),
            (
                "no digest",
                doc(json!([{"type": "reg", "name": "x", "size": 5, "offset": 1, "endOffset": 2}])),
            ),
            ("negative size", doc(json!([{"type": "reg", "name": "x", "size": -5}]))),
            (
                "version 2",
                serde_json::to_vec(&json!({"version": 2, "entries": [], "tarSplitDigest": d('f')})).unwrap(),
            ),
            (
                "no tar-split",
                serde_json::to_vec(&json!({"version": 1, "entries": []})).unwrap(),
            ),
            ("trailing junk", [doc(json!([])), b"{}".to_vec()].concat()),
        ];
        for (what, j) in cases {
            assert!(parse(&j[..], 1000).is_err(), "{what}");
        }
    }

    #[test]
    fn entry_count_is_capped() {
        // Streamed: the cap trips without the document ever being held whole.
        struct Endless(usize);
        impl std::io::Read for Endless {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                const HEAD: &[u8] = b"{\"version\":1,\"entries\":[";
                const ITEM: &[u8] = b"{\"type\":\"dir\",\"name\":\"d\"},";
                let at = self.0;
                let b = if at < HEAD.len() {
                    HEAD[at]
                } else {
                    ITEM[(at - HEAD.len()) % ITEM.len()]
                };
                self.0 += 1;
                buf[0] = b;
                Ok(1)
            }
        }
        let e = parse(Endless(0), 1000).unwrap_err();
        assert!(e.message.contains("more than"), "{}", e.message);
    }
}

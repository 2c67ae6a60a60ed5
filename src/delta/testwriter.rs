//! A zstd:chunked writer for tests, following containers/storage's
//! compressor: each tar header (with the previous payload's padding) in one
//! frame, each payload chunk in its own frame (rolling-sum split points,
//! runs of >= 1024 zeros as `zeros` chunks), then skippable frames with the
//! compressed TOC, the compressed tar-split and the 64-byte footer, and the
//! layer annotations. Edits let a test make a hostile variant whose
//! metadata still matches its digests. For the same tar it writes what
//! Debian 13's skopeo 1.18 (containers/image 5.34) writes, but for the compressed
//! bytes: the same chunks, TOC fields, tar-split lines and footer
//! (tests/delta.rs, `our_writer_agrees_with_skopeo_1_18`).

use super::{sha, Crc64};
use base64::Engine;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// One tar entry: `kind` is the ustar type flag.
pub struct Entry {
    pub name: String,
    pub kind: u8,
    pub link: String,
    pub data: Vec<u8>,
}

pub fn file(name: &str, data: Vec<u8>) -> Entry {
    Entry {
        name: name.into(),
        kind: b'0',
        link: String::new(),
        data,
    }
}
pub fn dir(name: &str) -> Entry {
    Entry {
        name: name.into(),
        kind: b'5',
        link: String::new(),
        data: Vec::new(),
    }
}
pub fn symlink(name: &str, to: &str) -> Entry {
    Entry {
        name: name.into(),
        kind: b'2',
        link: to.into(),
        data: Vec::new(),
    }
}

/// A written layer.
pub struct Layer {
    pub blob: Vec<u8>,
    pub tar: Vec<u8>,
    pub annotations: BTreeMap<String, String>,
}

impl Layer {
    pub fn descriptor(&self) -> crate::manifest::Descriptor {
        serde_json::from_value(json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+zstd",
            "digest": hex_sha(&self.blob),
            "size": self.blob.len(),
            "annotations": self.annotations,
        }))
        .unwrap()
    }
    pub fn diff_id(&self) -> String {
        hex_sha(&self.tar)
    }
}

pub fn hex_sha(b: &[u8]) -> String {
    format!(
        "sha256:{}",
        sha(b).iter().map(|x| format!("{x:02x}")).collect::<String>()
    )
}

fn z(b: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(b, ruzstd::encoding::CompressionLevel::Fastest)
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn header(e: &Entry) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..e.name.len()].copy_from_slice(e.name.as_bytes());
    let mode = if e.kind == b'5' { 0o755 } else { 0o644 };
    h[100..107].copy_from_slice(format!("{mode:07o}").as_bytes());
    h[108..115].copy_from_slice(b"0000000");
    h[116..123].copy_from_slice(b"0000000");
    h[124..135].copy_from_slice(format!("{:011o}", e.data.len()).as_bytes());
    h[136..147].copy_from_slice(b"14700000000");
    h[156] = e.kind;
    h[157..157 + e.link.len()].copy_from_slice(e.link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    h
}

/// containers/storage's rolling sum (after Perkeep's).
struct RollSum {
    s1: u32,
    s2: u32,
    window: [u8; 64],
    at: usize,
}

impl RollSum {
    fn new() -> RollSum {
        RollSum {
            s1: 64 * 31,
            s2: 64 * 63 * 31,
            window: [0; 64],
            at: 0,
        }
    }
    fn roll(&mut self, ch: u8) {
        let drop = u32::from(self.window[self.at]);
        self.s1 = self.s1.wrapping_add(u32::from(ch)).wrapping_sub(drop);
        self.s2 = self
            .s2
            .wrapping_add(self.s1)
            .wrapping_sub(64u32.wrapping_mul(drop + 31));
        self.window[self.at] = ch;
        self.at = (self.at + 1) & 63;
    }
    fn split(&self) -> bool {
        let mask = (1u32 << 16) - 1;
        self.s2 & mask == mask
    }
}

/// (offset, size, zeros) of each chunk of `data`.
pub fn chunks(data: &[u8]) -> Vec<(usize, usize, bool)> {
    let (mut rs, mut out, mut start, mut i) = (RollSum::new(), Vec::new(), 0, 0);
    while i < data.len() {
        if data[i] == 0 {
            let j = i + data[i..].iter().take_while(|b| **b == 0).count();
            if j - i >= 1024 {
                if i > start {
                    out.push((start, i - start, false));
                }
                (i..j).for_each(|_| rs.roll(0));
                out.push((i, j - i, true));
                (i, start) = (j, j);
                continue;
            }
        }
        rs.roll(data[i]);
        i += 1;
        if rs.split() {
            out.push((start, i - start, false));
            start = i;
        }
    }
    if start < data.len() {
        out.push((start, data.len() - start, false));
    }
    out
}

/// Write `entries` as a zstd:chunked layer; `edit_toc` and `edit_split`
/// change the TOC document and the tar-split lines before they are hashed.
pub fn write(entries: &[Entry], edit_toc: impl FnOnce(&mut Value), edit_split: impl FnOnce(&mut Vec<String>)) -> Layer {
    let (mut blob, mut tar, mut frame) = (Vec::new(), Vec::new(), Vec::new());
    let (mut toc, mut split) = (Vec::new(), Vec::new());
    // As tar-split writes them: numbered lines, the bytes between two
    // payloads (padding, then the next header) in one segment.
    let (mut position, mut pending) = (0u64, Vec::new());
    let mut line = |split: &mut Vec<String>, mut v: Value| {
        v["position"] = json!(position);
        position += 1;
        split.push(v.to_string());
    };
    fn flush(blob: &mut Vec<u8>, frame: &mut Vec<u8>) {
        if !frame.is_empty() {
            blob.extend(z(frame));
            frame.clear();
        }
    }
    for e in entries {
        let h = header(e);
        tar.extend_from_slice(&h);
        frame.extend_from_slice(&h);
        pending.extend_from_slice(&h);
        line(&mut split, json!({"type": 2, "payload": b64(&pending)}));
        pending.clear();
        let (kind, mode) = match e.kind {
            b'5' => ("dir", 0o755),
            b'2' => ("symlink", 0o644),
            _ => ("reg", 0o644),
        };
        // The header's mode and mtime (0o14700000000).
        let mut main = json!({"type": kind, "name": e.name, "mode": mode, "modtime": "2024-10-04T14:47:28Z"});
        if !e.link.is_empty() {
            main["linkName"] = json!(e.link);
        }
        let mut more = Vec::new();
        if !e.data.is_empty() {
            flush(&mut blob, &mut frame);
            let parts = chunks(&e.data);
            let start = blob.len();
            for (n, &(off, size, zeros)) in parts.iter().enumerate() {
                let at = blob.len();
                blob.extend(z(&e.data[off..off + size]));
                let mut c = if n == 0 {
                    json!({})
                } else {
                    json!({"type": "chunk", "name": e.name, "chunkOffset": off})
                };
                if parts.len() > 1 {
                    c["chunkSize"] = json!(size);
                    c["offset"] = json!(at);
                    c["chunkDigest"] = json!(hex_sha(&e.data[off..off + size]));
                    if zeros {
                        c["chunkType"] = json!("zeros");
                    }
                }
                more.push(c);
            }
            main["size"] = json!(e.data.len());
            main["digest"] = json!(hex_sha(&e.data));
            main["offset"] = json!(start);
            main["endOffset"] = json!(blob.len());
            for (k, v) in more.remove(0).as_object().unwrap() {
                main[k] = v.clone();
            }
        }
        toc.push(main);
        toc.extend(more);
        let mut crc = Crc64::new();
        crc.update(&e.data);
        let payload = if e.data.is_empty() {
            Value::Null
        } else {
            json!(b64(&crc.finish().to_be_bytes()))
        };
        let mut file = json!({"type": 1, "name": e.name, "payload": payload});
        if !e.data.is_empty() {
            file["size"] = json!(e.data.len());
        }
        line(&mut split, file);
        tar.extend_from_slice(&e.data);
        let pad = vec![0u8; tar.len().next_multiple_of(512) - tar.len()];
        tar.extend_from_slice(&pad);
        frame.extend_from_slice(&pad);
        pending.extend_from_slice(&pad);
    }
    let end = [0u8; 1024];
    tar.extend_from_slice(&end);
    frame.extend_from_slice(&end);
    pending.extend_from_slice(&end);
    line(&mut split, json!({"type": 2, "payload": b64(&pending)}));
    flush(&mut blob, &mut frame);
    edit_split(&mut split);
    let split_z = z((split.join("\n") + "\n").as_bytes());
    let mut doc = json!({"version": 1, "entries": toc, "tarSplitDigest": hex_sha(&split_z)});
    edit_toc(&mut doc);
    let toc_json = serde_json::to_vec(&doc).unwrap();
    let toc_z = z(&toc_json);
    let skippable = |blob: &mut Vec<u8>, data: &[u8]| {
        blob.extend_from_slice(&[0x50, 0x2a, 0x4d, 0x18]);
        blob.extend_from_slice(&(data.len() as u32).to_le_bytes());
        blob.extend_from_slice(data);
    };
    let toc_at = blob.len() + 8;
    skippable(&mut blob, &toc_z);
    let split_at = blob.len() + 8;
    skippable(&mut blob, &split_z);
    let mut footer = Vec::new();
    for n in [
        toc_at,
        toc_z.len(),
        toc_json.len(),
        1,
        split_at,
        split_z.len(),
        split.join("\n").len() + 1,
    ] {
        footer.extend_from_slice(&(n as u64).to_le_bytes());
    }
    footer.extend_from_slice(b"GNUlInUx");
    skippable(&mut blob, &footer);
    let p = "io.github.containers.zstd-chunked.";
    let annotations = BTreeMap::from([
        (format!("{p}manifest-checksum"), hex_sha(&toc_z)),
        (
            format!("{p}manifest-position"),
            format!("{toc_at}:{}:{}:1", toc_z.len(), toc_json.len()),
        ),
        (
            format!("{p}tarsplit-position"),
            format!("{split_at}:{}:{}", split_z.len(), split.join("\n").len() + 1),
        ),
    ]);
    Layer { blob, tar, annotations }
}

//! A v1 -> v2 update done in process, and its hostile variants: the
//! rebuilt tar must equal v2's exact tar stream (so its diff_id), or the
//! partial path must refuse.

use super::plan::{self, Local, Prev};
use super::rebuild::Rebuild;
use super::testwriter::{dir, file, hex_sha, symlink, write, Entry, Layer};
use super::{position, sha, Metadata, Sha};
use serde_json::Value;
use std::io::Read;
use std::path::PathBuf;

struct Root(PathBuf);
impl Local for Root {
    fn digest(&mut self, name: &str, size: u64) -> Option<Sha> {
        let b = std::fs::read(self.0.join(name)).ok()?;
        (b.len() as u64 == size).then(|| sha(&b))
    }
    fn open(&mut self, name: &str) -> std::io::Result<std::fs::File> {
        std::fs::File::open(self.0.join(name))
    }
}

fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn image(v2: bool) -> Vec<Entry> {
    let mut big = noise(7, 600 * 1024);
    let mut holes = noise(8, 10_000);
    holes.extend(vec![0u8; 9000]);
    holes.extend(noise(9, 7000));
    let mut a = b"version one\n".to_vec();
    if v2 {
        big[300_000..300_064].copy_from_slice(&[0xaa; 64]);
        a = b"version two!\n".to_vec();
    }
    let mut e = vec![
        dir("etc/"),
        file("etc/a", a),
        dir("lib/"),
        file("lib/big", big),
        file("lib/holes", holes),
    ];
    e.push(symlink("lib/link", "big"));
    if v2 {
        e.push(file("lib/new", b"new file".to_vec()));
    }
    e
}

fn root_of(entries: &[Entry], tag: &str) -> Root {
    let d = std::env::temp_dir().join(format!("minipull-delta-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    for e in entries.iter().filter(|e| e.kind == b'0') {
        let p = d.join(&e.name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, &e.data).unwrap();
    }
    Root(d)
}

fn meta(l: &Layer) -> crate::error::Result<Metadata> {
    let pos = position::of(&l.descriptor()).expect("modern annotations");
    Metadata::open(&l.blob[pos.toc.offset as usize..], &pos)
}

/// Plan and rebuild `l` against `root` (and `prev`'s TOC); the rebuilt
/// tar and the bytes fetched.
fn partial(l: &Layer, prev: Option<&Layer>, root: &mut Root) -> crate::error::Result<(Vec<u8>, u64)> {
    let mut m = meta(l)?;
    let prev = prev.map(|p| Prev::new(meta(p).unwrap().toc));
    plan::check_order(&m.toc, &mut m.lines())?;
    let plan = plan::make(&mut m.toc, prev.as_ref(), root, plan::DEFAULT_GAP);
    let remote: Vec<u8> = plan
        .ranges
        .iter()
        .flat_map(|&(s, e)| l.blob[s as usize..e as usize].to_vec())
        .collect();
    let mut out = Vec::new();
    let (toc, lines) = m.into_parts();
    Rebuild::new(lines, toc, plan.ranges, prev, root, &remote[..])
        .read_to_end(&mut out)
        .map_err(|e| super::refuse(e.to_string()))?;
    Ok((out, remote.len() as u64))
}

#[test]
fn writer_output_is_an_ordinary_tar_zstd_layer() {
    let l = write(&image(false), |_| {}, |_| {});
    let mut tar = Vec::new();
    crate::unpack::ZstdFrames::new(&l.blob[..])
        .read_to_end(&mut tar)
        .unwrap();
    assert_eq!(tar, l.tar);
    let m = meta(&l).unwrap();
    let big = m.toc.files.iter().find(|f| &*f.name == "lib/big").unwrap();
    assert!(
        big.chunks.len() > 3,
        "rolling sum splits a 600 KiB file: {}",
        big.chunks.len()
    );
    let holes = m.toc.files.iter().find(|f| &*f.name == "lib/holes").unwrap();
    assert!(holes.chunks.iter().any(|c| c.from == super::toc::From::Zeros));
}

#[test]
fn update_with_previous_toc_fetches_one_chunk() {
    let (v1, v2) = (
        write(&image(false), |_| {}, |_| {}),
        write(&image(true), |_| {}, |_| {}),
    );
    let mut root = root_of(&image(false), "prev");
    let (tar, fetched) = partial(&v2, Some(&v1), &mut root).unwrap();
    assert_eq!(hex_sha(&tar), v2.diff_id());
    assert_eq!(tar, v2.tar);
    // The changed chunk of lib/big, etc/a and lib/new: far less than the blob.
    assert!(
        fetched < 200 * 1024 && fetched > 0,
        "fetched {fetched} of {}",
        v2.blob.len()
    );
    // File-level reuse only: lib/big is fetched whole, the rest is local.
    let (tar, whole_files) = partial(&v2, None, &mut root).unwrap();
    assert_eq!(tar, v2.tar);
    assert!(
        whole_files > fetched && whole_files < v2.blob.len() as u64,
        "{whole_files}"
    );
    // Nothing local: everything comes from the ranges, still exact.
    let (tar, _) = partial(&v2, None, &mut Root(root.0.join("nothing"))).unwrap();
    assert_eq!(tar, v2.tar);
}

fn edit_entry(name: &'static str, key: &'static str, v: Value) -> impl FnOnce(&mut Value) {
    move |doc| {
        for e in doc["entries"].as_array_mut().unwrap() {
            if e["name"] == name && e.get("type").is_some_and(|t| t != "chunk") {
                e[key] = v;
                return;
            }
        }
    }
}

#[test]
fn hostile_metadata_is_refused() {
    let empty = || Root(std::env::temp_dir().join("minipull-delta-none"));
    let z = format!("sha256:{}", "0".repeat(64));
    // A lying chunk digest: caught when the chunk's bytes arrive.
    let l = write(
        &image(true),
        edit_entry("lib/big", "chunkDigest", Value::from(z.clone())),
        |_| {},
    );
    assert!(partial(&l, None, &mut empty())
        .unwrap_err()
        .message
        .contains("chunkDigest"));
    // A lying file digest (a one-chunk file: its chunk digest is the file digest).
    let l = write(&image(true), edit_entry("etc/a", "digest", Value::from(z)), |_| {});
    let e = partial(&l, None, &mut empty()).unwrap_err();
    assert!(e.message.contains("chunkDigest"), "{}", e.message);
    // The TOC names another file than the tar-split.
    let l = write(&image(true), edit_entry("etc/a", "name", Value::from("etc/b")), |_| {});
    assert!(partial(&l, None, &mut empty())
        .unwrap_err()
        .message
        .contains("disagree"));
    // Frames outside the blob's data.
    let l = write(
        &image(true),
        edit_entry("lib/new", "endOffset", Value::from(1u64 << 40)),
        |_| {},
    );
    assert!(meta(&l).is_err());
    // A tar-split whose payload CRC lies (digests all right): caught by the CRC.
    let l = write(
        &image(true),
        |_| {},
        |lines| {
            for l in lines.iter_mut().filter(|l| l.contains("\"etc/a\"")) {
                let mut v: Value = serde_json::from_str(l).unwrap();
                v["payload"] = Value::from("AAAAAAAAAAA=");
                *l = v.to_string();
            }
        },
    );
    assert!(partial(&l, None, &mut empty()).unwrap_err().message.contains("CRC-64"));
    // A tar-split with a dropped file line.
    let l = write(
        &image(true),
        |_| {},
        |lines| lines.retain(|l| !l.contains("\"lib/new\"")),
    );
    assert!(partial(&l, None, &mut empty())
        .unwrap_err()
        .message
        .contains("tar-split does not have"));
    // The TOC not matching the annotation's checksum.
    let mut l = write(&image(true), |_| {}, |_| {});
    let k = "io.github.containers.zstd-chunked.manifest-checksum";
    l.annotations.insert(k.into(), hex_sha(b"other"));
    assert!(meta(&l).is_err());
}

#[test]
fn a_local_file_changed_after_planning_is_caught() {
    let v2 = write(&image(true), |_| {}, |_| {});
    let mut root = root_of(&image(true), "changed");
    let mut m = meta(&v2).unwrap();
    let plan = plan::make(&mut m.toc, None, &mut root, plan::DEFAULT_GAP);
    assert!(plan.ranges.is_empty(), "all local");
    std::fs::write(root.0.join("lib/holes"), vec![1u8; 26_000]).unwrap();
    let mut out = Vec::new();
    let (toc, lines) = m.into_parts();
    let r = Rebuild::new(lines, toc, plan.ranges, None, &mut root, &b""[..]).read_to_end(&mut out);
    assert!(r.unwrap_err().to_string().contains("lib/holes"));
}

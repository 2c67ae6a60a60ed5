//! Partial pulls of zstd:chunked layers: the ranged blob requests against
//! the real registry (distribution answers multi-range requests with 206
//! `multipart/byteranges`).
// Partial pulls are built with the `delta` feature (it implies `unpack`).
#![cfg(feature = "delta")]

mod common;
use common::*;
use minipull::registry::{Client, Options, Ranged};
use std::io::Read;
use std::time::Duration;

fn client(host: &str, repo: &str) -> Client {
    let (tls, _) = minipull::tls::config(&minipull::tls::TlsOptions {
        ca_files: vec![],
        insecure: false,
    })
    .unwrap();
    let opts = Options {
        plain_http: true,
        plain_hosts: vec![],
        retries: 1,
        retries_explicit: true,
        retry_for: Duration::from_secs(5),
        keep_written_pages: false,
        timeout: Duration::from_secs(10),
        speed_limit: 1,
        speed_time: Duration::from_secs(10),
        limit_rate: None,
        tls,
        proxies: minipull::proxy::ProxyEnv::from_env().unwrap(),
    };
    Client::for_host(host, true, repo, None, opts, minipull::progress::Progress::new(true))
}

#[test]
fn multi_range_and_single_range_from_the_real_registry() {
    let log = TempDir::new("delta-log");
    let reg = Registry::start_setup(Setup {
        access_log: Some(log.join("access.log")),
        ..Setup::default()
    });
    let blob = noise(300_000, 5);
    let digest = reg.push_blob("delta/ranges", &blob);
    let mut c = client(&reg.host, "delta/ranges");
    let digest = minipull::digest::Digest::parse(&digest).unwrap();
    for want in [
        vec![(10u64, 2000u64), (100_000, 150_000), (299_000, 300_000)],
        vec![(5000, 9000)],
    ] {
        let expect: Vec<u8> = want
            .iter()
            .flat_map(|&(s, e)| blob[s as usize..e as usize].to_vec())
            .collect();
        let Ranged::Parts(mut parts) = c.blob_ranges(&digest, &want).unwrap() else {
            panic!("the registry answers 206 to {want:?}");
        };
        let mut got = Vec::new();
        parts.read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), expect.len());
        assert!(got == expect, "the ranges' bytes, in order");
    }
    let logged = std::fs::read_to_string(log.join("access.log")).unwrap_or_default();
    eprintln!("{logged}");
}

/// A reuse root for the hook: files of a directory (the test's own, trusted).
struct Root(std::path::PathBuf);
impl minipull::delta::plan::Local for Root {
    fn digest(&mut self, name: &str, size: u64) -> Option<[u8; 32]> {
        let b = std::fs::read(self.0.join(name)).ok()?;
        use sha2::Digest;
        (b.len() as u64 == size).then(|| sha2::Sha256::digest(&b).into())
    }
    fn open(&mut self, name: &str) -> std::io::Result<std::fs::File> {
        std::fs::File::open(self.0.join(name))
    }
}

fn image(v2: bool) -> Vec<minipull::delta::testwriter::Entry> {
    use minipull::delta::testwriter::{dir, file, symlink};
    let mut big = noise(800 * 1024, 7);
    let mut holes = noise(10_000, 12);
    holes.extend(vec![0u8; 20_000]);
    holes.extend(noise(5000, 13));
    let mut conf = b"one\n".to_vec();
    if v2 {
        big[400_000..400_064].copy_from_slice(&[0x55; 64]);
        conf = b"two\n".to_vec();
    }
    let mut e = vec![dir("etc/"), file("etc/conf", conf), dir("usr/"), file("usr/big", big)];
    e.extend([file("usr/holes", holes), symlink("usr/link", "big")]);
    if v2 {
        e.push(file("usr/new", b"new".to_vec()));
    }
    e
}

fn root_of(entries: &[minipull::delta::testwriter::Entry], dir: &TempDir) -> Root {
    for e in entries.iter().filter(|e| e.kind == b'0') {
        let p = dir.join(&e.name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, &e.data).unwrap();
    }
    Root(dir.path().to_path_buf())
}

/// The hook against the real registry: v1's root and TOC, v2's layer. The
/// rebuilt tar is v2's exact tar (its diff_id); the access log shows two
/// ranged requests carrying far fewer bytes than the blob.
#[test]
fn partial_layer_from_the_real_registry_is_the_exact_tar() {
    use minipull::delta::{fetch, plan, testwriter::write};
    let log = TempDir::new("delta-log2");
    let reg = Registry::start_setup(Setup {
        access_log: Some(log.join("access.log")),
        ..Setup::default()
    });
    let (v1, v2) = (
        write(&image(false), |_| {}, |_| {}),
        write(&image(true), |_| {}, |_| {}),
    );
    reg.push_blob("delta/img", &v2.blob);
    let dir = TempDir::new("delta-root");
    root_of(&image(false), &dir);
    // The binary's own in-root walk (no link followed, regular files only).
    let root = minipull::delta::root::Root::open(dir.path()).unwrap();
    // v1's metadata, kept in a layout's store as a pull of v1 would have.
    let out = TempDir::new("delta-layout");
    let layout = minipull::layout::Layout::open(out.path()).unwrap();
    let pos = minipull::delta::position::of(&v1.descriptor()).unwrap();
    let v1_digest = minipull::digest::Digest::parse(&sha256(&v1.blob)).unwrap();
    layout
        .save_delta_metadata(&v1_digest, &v1.blob[pos.toc.offset as usize..])
        .unwrap();
    let prev = fetch::previous(&layout, &v1.descriptor()).expect("the stored TOC verifies");
    assert!(fetch::previous(&layout, &v2.descriptor()).is_none());
    let mut c = client(&reg.host, "delta/img");
    let got = fetch::partial(&mut c, &v2.descriptor(), Some(prev), root, plan::DEFAULT_GAP).unwrap();
    let fetch::Got::Tar(mut tar, plan, _) = got else {
        panic!("the registry answers ranges")
    };
    let mut out = Vec::new();
    tar.read_to_end(&mut out).unwrap();
    assert_eq!(sha256(&out), v2.diff_id());
    assert!(out == v2.tar);
    assert!(
        plan.fetch < v2.blob.len() as u64 / 5,
        "{} of {}: {plan:?}",
        plan.fetch,
        v2.blob.len()
    );
    assert!(plan.reused > 700 * 1024, "{plan:?}");
    eprintln!("fetched {} of {} bytes: {plan:?}", plan.fetch, v2.blob.len());
    drop(reg);
    let logged = std::fs::read_to_string(log.join("access.log")).unwrap_or_default();
    let blob_gets = logged
        .lines()
        .filter(|l| l.contains("GET /v2/delta/img/blobs/"))
        .count();
    assert_eq!(blob_gets, 2, "metadata + one data request:\n{logged}");
}

/// A lying chunk digest in a layer whose TOC and tar-split match their
/// digests: the rebuilt stream fails before its end (the caller falls back).
#[test]
fn partial_layer_with_a_lying_chunk_digest_fails() {
    use minipull::delta::{fetch, plan, testwriter::write};
    let reg = Registry::start(Auth::None);
    let zero = format!("sha256:{}", "0".repeat(64));
    let lie = move |doc: &mut serde_json::Value| {
        for e in doc["entries"].as_array_mut().unwrap() {
            if e["name"] == "usr/big" && e["type"] == "chunk" {
                e["chunkDigest"] = zero.clone().into();
            }
        }
    };
    let v2 = write(&image(true), lie, |_| {});
    reg.push_blob("delta/lie", &v2.blob);
    let dir = TempDir::new("delta-empty");
    let mut c = client(&reg.host, "delta/lie");
    let got = fetch::partial(
        &mut c,
        &v2.descriptor(),
        None,
        Root(dir.path().to_path_buf()),
        plan::DEFAULT_GAP,
    );
    let Ok(fetch::Got::Tar(mut tar, _, _)) = got else {
        panic!("planned")
    };
    let e = tar.read_to_end(&mut Vec::new()).unwrap_err();
    assert!(e.to_string().contains("chunkDigest"), "{e}");
}

/// A server that answers a range request with 200 and the whole blob: the
/// hook hands that body back as the whole-layer download, after one request.
#[test]
fn a_200_to_the_metadata_range_is_the_whole_layer_download() {
    use common::fault::{FaultServer, Faults};
    use minipull::delta::{fetch, plan, testwriter::write};
    let srv = FaultServer::start(Faults::default());
    let v2 = write(&image(true), |_| {}, |_| {});
    let digest = sha256(&v2.blob);
    srv.add_blob(&digest, v2.blob.clone());
    let dir = TempDir::new("delta-200");
    let mut c = client(&srv.host, "delta/whole");
    let got = fetch::partial(
        &mut c,
        &v2.descriptor(),
        None,
        Root(dir.path().to_path_buf()),
        plan::DEFAULT_GAP,
    );
    let Ok(fetch::Got::Blob(mut blob)) = got else {
        panic!("the whole blob")
    };
    let mut all = Vec::new();
    blob.read_to_end(&mut all).unwrap();
    assert!(all == v2.blob);
    assert_eq!(srv.requests("/blobs/").len(), 1, "{:?}", srv.log());
}

/// A redirect (a CDN) keeps the Range header.
#[test]
fn ranges_follow_a_redirect() {
    use common::fault::{FaultServer, Faults};
    let cdn = FaultServer::start(Faults::default());
    let srv = FaultServer::start(Faults {
        redirect_blobs_to: Some(format!("http://{}", cdn.host)),
        ..Faults::default()
    });
    let blob = noise(10_000, 3);
    let digest = sha256(&blob);
    srv.add_blob(&digest, blob.clone());
    cdn.add_blob(&digest, blob.clone());
    let mut c = client(&srv.host, "delta/cdn");
    let d = minipull::digest::Digest::parse(&digest).unwrap();
    let _ = c.blob_ranges(&d, &[(10, 20), (500, 600)]).unwrap();
    let at_cdn = cdn.requests("/");
    assert!(!at_cdn.is_empty(), "redirected");
    assert_eq!(at_cdn[0].range.as_deref(), Some("bytes=10-19,500-599"));
}

/// Hostile metadata that still matches its digests is refused by the hook
/// after the metadata request and before any data request (the caller then
/// pulls the whole layer): a TOC that disagrees with the tar-split, frames
/// outside the blob, duplicate names, TOC order unlike the tar's, and a
/// TOC claiming more than the cap (refused from the annotations alone).
#[test]
fn hostile_layers_are_refused_before_any_data_is_fetched() {
    use minipull::delta::{fetch, plan, testwriter::write};
    use serde_json::Value;
    let log = TempDir::new("delta-log3");
    let reg = Registry::start_setup(Setup {
        access_log: Some(log.join("access.log")),
        ..Setup::default()
    });
    type Edit = Box<dyn FnOnce(&mut Value)>;
    let entry = |name: &'static str, key: &'static str, v: Value| -> Edit {
        Box::new(move |doc: &mut Value| {
            let e = doc["entries"]
                .as_array_mut()
                .unwrap()
                .iter_mut()
                .find(|e| e["name"] == name)
                .unwrap();
            e[key] = v;
        })
    };
    let cases: Vec<(&str, Edit, usize)> = vec![
        ("disagreeing", entry("etc/conf", "name", "etc/other".into()), 1),
        (
            "out of the blob",
            entry("usr/new", "endOffset", Value::from(1u64 << 40)),
            1,
        ),
        ("duplicate", entry("usr/new", "name", "etc/conf".into()), 1),
        (
            "reordered",
            Box::new(|doc: &mut Value| {
                let e = doc["entries"].as_array_mut().unwrap();
                let (a, b) = (e.iter().position(|x| x["name"] == "etc/conf").unwrap(), e.len() - 1);
                e.swap(a, b);
            }),
            1,
        ),
    ];
    for (i, (what, edit, want_gets)) in cases.into_iter().enumerate() {
        let l = write(&image(true), edit, |_| {});
        let repo = format!("delta/hostile{i}");
        reg.push_blob(&repo, &l.blob);
        let dir = TempDir::new("delta-hostile");
        let mut c = client(&reg.host, &repo);
        let got = fetch::partial(
            &mut c,
            &l.descriptor(),
            None,
            Root(dir.path().to_path_buf()),
            plan::DEFAULT_GAP,
        );
        assert!(got.is_err(), "{what}");
        let logged = std::fs::read_to_string(log.join("access.log")).unwrap_or_default();
        let gets = logged
            .lines()
            .filter(|x| x.contains(&format!("GET /v2/{repo}/blobs/")))
            .count();
        assert_eq!(gets, want_gets, "{what}: only the metadata was asked for");
    }
    // A TOC above the cap: refused from the annotation, nothing asked.
    let mut l = write(&image(true), |_| {}, |_| {});
    let k = "io.github.containers.zstd-chunked.manifest-position";
    let p: Vec<u64> = l.annotations[k].split(':').map(|x| x.parse().unwrap()).collect();
    l.annotations
        .insert(k.into(), format!("{}:{}:{}:1", p[0], p[1], 1u64 << 40));
    let mut c = client(&reg.host, "delta/huge");
    let dir = TempDir::new("delta-huge");
    assert!(fetch::partial(
        &mut c,
        &l.descriptor(),
        None,
        Root(dir.path().to_path_buf()),
        plan::DEFAULT_GAP
    )
    .is_err());
}

/// Single-range mode (after a registry refused a multi-range request): one
/// GET per range, made as the rebuild reaches it, the same bytes.
#[test]
fn single_range_mode_asks_one_range_at_a_time() {
    let log = TempDir::new("delta-log4");
    let reg = Registry::start_setup(Setup {
        access_log: Some(log.join("access.log")),
        ..Setup::default()
    });
    let blob = noise(200_000, 9);
    let digest = reg.push_blob("delta/single", &blob);
    let mut c = client(&reg.host, "delta/single");
    let want = vec![(0u64, 100u64), (50_000, 60_000), (199_990, 200_000)];
    let expect: Vec<u8> = want
        .iter()
        .flat_map(|&(s, e)| blob[s as usize..e as usize].to_vec())
        .collect();
    let d = minipull::digest::Digest::parse(&digest).unwrap();
    let mut got = Vec::new();
    minipull::delta::fetch::Singles::new(&mut c, d, want)
        .read_to_end(&mut got)
        .unwrap();
    assert!(got == expect);
    drop(reg);
    let logged = std::fs::read_to_string(log.join("access.log")).unwrap_or_default();
    assert_eq!(
        logged
            .lines()
            .filter(|x| x.contains("GET /v2/delta/single/blobs/"))
            .count(),
        3,
        "{logged}"
    );
}

/// Push an image of zstd:chunked layers (with their annotations) as `repo:tag`.
fn push_chunked(reg: &Registry, repo: &str, tag: &str, layers: &[&minipull::delta::testwriter::Layer]) -> String {
    push_layers(reg, repo, tag, layers, &[])
}

/// [`push_chunked`], with the layers at the positions in `plain` pushed as
/// plain `tar+zstd` (their zstd:chunked annotations left out).
fn push_layers(
    reg: &Registry,
    repo: &str,
    tag: &str,
    layers: &[&minipull::delta::testwriter::Layer],
    plain: &[usize],
) -> String {
    let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id()).collect();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config = serde_json::to_vec(&config).unwrap();
    let cd = reg.blob_desc(repo, "application/vnd.oci.image.config.v1+json", &config);
    let ls: Vec<serde_json::Value> = layers
        .iter()
        .enumerate()
        .map(|(i, l)| {
            reg.push_blob(repo, &l.blob);
            let mut d = serde_json::to_value(l.descriptor()).unwrap();
            if plain.contains(&i) {
                d.as_object_mut().unwrap().remove("annotations");
            }
            d
        })
        .collect();
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": cd, "layers": ls,
    });
    let mt = "application/vnd.oci.image.manifest.v1+json";
    reg.push_manifest(repo, tag, mt, &serde_json::to_vec(&m).unwrap())
}

/// The oracle's tree digest: every entry's path, type, mode, owner, mtime,
/// size, content digest or link target, and extended attributes.
fn tree(dir: &std::path::Path) -> Vec<String> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let xattrs = |p: &std::path::Path| -> Vec<String> {
        let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
        let mut names = vec![0u8; 64 * 1024];
        // SAFETY: valid path and buffer.
        let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
        if n <= 0 {
            return Vec::new();
        }
        let mut out: Vec<String> = names[..n as usize]
            .split(|b| *b == 0)
            .filter(|x| !x.is_empty())
            .map(|name| {
                let cn = std::ffi::CString::new(name).unwrap();
                let mut v = vec![0u8; 64 * 1024];
                // SAFETY: valid strings and buffer.
                let k = unsafe { libc::lgetxattr(c.as_ptr(), cn.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
                format!("{}={:?}", String::from_utf8_lossy(name), &v[..k.max(0) as usize])
            })
            .collect();
        out.sort();
        out
    };
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let m = std::fs::symlink_metadata(&d).unwrap();
        let what = if m.file_type().is_symlink() {
            format!("-> {}", std::fs::read_link(&d).unwrap().display())
        } else if m.is_file() {
            sha256(&std::fs::read(&d).unwrap())
        } else {
            String::new()
        };
        let rel = d.strip_prefix(dir).unwrap().display().to_string();
        out.push(format!(
            "{rel} {:o} {}:{} {} {} {what} {:?} nlink={}",
            m.mode(),
            m.uid(),
            m.gid(),
            // The root's own time is the unpack's when no layer has a `./` entry.
            if rel.is_empty() { 0 } else { m.mtime() },
            m.len() * u64::from(m.is_file()),
            xattrs(&d),
            if m.is_dir() { 0 } else { m.nlink() }
        ));
        if m.is_dir() {
            for e in std::fs::read_dir(&d).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
    }
    out.sort();
    out
}

/// v1 then v2 of an image of zstd:chunked layers, as written by the
/// in-suite writer: (v1, v2).
fn two_versions() -> (minipull::delta::testwriter::Layer, minipull::delta::testwriter::Layer) {
    use minipull::delta::testwriter::write;
    (
        write(&image(false), |_| {}, |_| {}),
        write(&image(true), |_| {}, |_| {}),
    )
}

/// Install v1 whole into ROOTFS from `host`, then return the paths (work, out, rootfs).
fn install_v1(host: &str, repo: &str, work: &TempDir) -> (String, String) {
    let (out, rootfs) = (work.join("out"), work.join("rootfs"));
    let (out, rootfs) = (out.to_str().unwrap().to_string(), rootfs.to_str().unwrap().to_string());
    let o = minipull(
        &[
            "--plain-http",
            "-q",
            &format!("{host}/{repo}:v1"),
            &out,
            "--unpack",
            &rootfs,
        ],
        None,
    );
    assert_exit(&o, 0);
    (out, rootfs)
}

/// The whole-layer unpack of `host/repo:v2` (the oracle).
fn whole_v2(host: &str, repo: &str) -> (TempDir, Vec<String>) {
    let work = TempDir::new("delta-oracle");
    let (out, rootfs) = (work.join("out"), work.join("rootfs"));
    let o = minipull(
        &[
            "--plain-http",
            "-q",
            &format!("{host}/{repo}:v2"),
            out.to_str().unwrap(),
            "--unpack",
            rootfs.to_str().unwrap(),
            "--no-delta",
        ],
        None,
    );
    assert_exit(&o, 0);
    let t = tree(&rootfs);
    (work, t)
}

fn update_json(host: &str, repo: &str, out: &str, rootfs: &str, extra: &[&str]) -> (Output, serde_json::Value) {
    let r = format!("{host}/{repo}:v2");
    let mut args = vec!["--plain-http", "--json", &r, out, "--unpack", rootfs, "--force"];
    args.extend_from_slice(extra);
    let o = minipull(&args, None);
    let v = serde_json::from_str(&stdout(&o)).unwrap_or(serde_json::Value::Null);
    (o, v)
}

/// The `--json` report of the layer whose blob is `blob`.
fn layer_report(v: &serde_json::Value, blob: &[u8]) -> serde_json::Value {
    v["blobs"]
        .as_array()
        .and_then(|bs| bs.iter().find(|b| b["digest"] == sha256(blob)))
        .cloned()
        .unwrap_or_else(|| panic!("no report of the layer: {v}"))
}

use std::process::Output;

/// The update from v1 to v2 through the binary against the real registry:
/// the new root equals a whole-layer unpack of v2; the layer was obtained
/// with two blob requests carrying a fraction of it; the layout marks it
/// and keeps its proof; `unpack` says to re-pull, `gc` keeps the proof,
/// the cheap re-pull and `--verify` accept the layout as it is.
#[test]
fn update_fetches_only_the_changed_chunks_and_equals_the_whole_unpack() {
    let log = TempDir::new("delta-e2e-log");
    let reg = Registry::start_setup(Setup {
        access_log: Some(log.join("access.log")),
        ..Setup::default()
    });
    let (v1, v2) = two_versions();
    push_chunked(&reg, "delta/e2e", "v1", &[&v1]);
    push_chunked(&reg, "delta/e2e", "v2", &[&v2]);
    let (_oracle, want) = whole_v2(&reg.host, "delta/e2e");
    let work = TempDir::new("delta-e2e");
    let (out, rootfs) = install_v1(&reg.host, "delta/e2e", &work);
    let before = std::fs::read_to_string(log.join("access.log"))
        .unwrap_or_default()
        .lines()
        .count();
    let (o, v) = update_json(&reg.host, "delta/e2e", &out, &rootfs, &[]);
    assert_exit(&o, 0);
    common::schema::conforms(&o, "pull");
    assert_eq!(tree(std::path::Path::new(&rootfs)), want, "{}", stderr(&o));
    let layer = layer_report(&v, &v2.blob);
    assert_eq!(layer["status"], "partial", "{v}\n{}", stderr(&o));
    let d = &layer["delta"];
    assert_eq!(d["requests"], 2, "{d}");
    assert!(d["fallback"].is_null(), "{d}");
    let fetched = d["fetched"].as_u64().unwrap();
    assert!(fetched < v2.blob.len() as u64 / 4, "{fetched} of {}", v2.blob.len());
    assert!(d["reused"].as_u64().unwrap() > 700 * 1024, "{d}");
    // usr/holes is unchanged: reused whole, its zero runs are not counted apart.
    assert!(d["zeros"].is_u64(), "{d}");
    let logged = std::fs::read_to_string(log.join("access.log")).unwrap_or_default();
    let gets: Vec<&str> = logged
        .lines()
        .skip(before)
        .filter(|l| l.contains("GET /v2/delta/e2e/blobs/"))
        .collect();
    assert_eq!(
        gets.len(),
        3,
        "config + metadata + one data request:\n{}",
        gets.join("\n")
    );
    // The layout: no blob, a mark, the proof.
    let outp = std::path::Path::new(&out);
    assert!(!blob_path(outp, &sha256(&v2.blob)).exists());
    let index = read_json(&outp.join("index.json"));
    let marked = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["annotations"]["io.minipull.layers-partial"] == sha256(&v2.blob));
    assert!(marked, "{index}");
    let proof = outp.join(".minipull/delta").join(sha256(&v2.blob).replace(':', "-"));
    assert!(proof.is_file());
    // unpack needs the blob: it says so.
    let o = minipull(
        &["unpack", &format!("{out}:v2"), work.join("again").to_str().unwrap()],
        None,
    );
    assert_exit(&o, 3);
    assert!(stderr(&o).contains("obtained partially"), "{}", stderr(&o));
    // gc keeps the proof (the entry names the layer); the image stays whole in `ls`' eyes.
    assert_exit(&minipull(&["gc", &out], None), 0);
    assert!(proof.is_file());
    // The same pull again, with --verify: nothing fetched, the proof re-checked.
    let (o, v) = update_json(&reg.host, "delta/e2e", &out, &rootfs, &["--verify"]);
    assert_exit(&o, 0);
    assert_eq!(v["bytesDownloaded"], 0, "{v}\n{}", stderr(&o));
    assert_eq!(v["manifestBytesDownloaded"], 0, "the cheap re-pull: {v}");
    // A damaged proof: --verify counts the layer as missing; the installed root stays right.
    std::fs::write(&proof, b"damaged").unwrap();
    let (o, _) = update_json(&reg.host, "delta/e2e", &out, &rootfs, &["--verify"]);
    assert_exit(&o, 0);
    assert_eq!(tree(std::path::Path::new(&rootfs)), want);
}

/// v1 and v2 on a fault server whose ranged answers are damaged as `m` says.
fn fault_server_with(
    m: common::fault::Multi,
    v1: &minipull::delta::testwriter::Layer,
    v2: &minipull::delta::testwriter::Layer,
) -> common::fault::FaultServer {
    use common::fault::{FaultServer, Faults};
    let srv = FaultServer::start(Faults {
        ranges: Some(m),
        ..Faults::default()
    });
    for (tag, l) in [("v1", v1), ("v2", v2)] {
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [l.diff_id()]},
        }))
        .unwrap();
        srv.add_blob(&sha256(&config), config.clone());
        srv.add_blob(&sha256(&l.blob), l.blob.clone());
        let mt = "application/vnd.oci.image.manifest.v1+json";
        let m = serde_json::json!({
            "schemaVersion": 2, "mediaType": mt,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config), "size": config.len()},
            "layers": [serde_json::to_value(l.descriptor()).unwrap()],
        });
        srv.add_manifest("delta/f", tag, mt, &serde_json::to_vec(&m).unwrap());
    }
    srv
}

/// Every way a server can answer ranges wrongly ends in the right root:
/// partially (single ranges after a refused multi-range request) or with
/// the whole layer (a 200, parts reordered, dropped, misplaced or cut; the
/// metadata range answered 200), never a torn or unverified one.
#[test]
fn damaged_range_answers_end_in_the_right_root() {
    use common::fault::Multi;
    let (v1, v2) = two_versions();
    let reg = Registry::start(Auth::None);
    push_chunked(&reg, "delta/f", "v1", &[&v1]);
    push_chunked(&reg, "delta/f", "v2", &[&v2]);
    let (_oracle, want) = whole_v2(&reg.host, "delta/f");
    let cases = [
        (Multi::Serve, "partial"),
        (Multi::Status(400), "partial"),
        (Multi::Status(416), "partial"),
        (Multi::Status(501), "partial"),
        (Multi::Whole, "downloaded"),
        (Multi::Reordered, "downloaded"),
        (Multi::Dropped, "downloaded"),
        (Multi::WrongRange, "downloaded"),
        (Multi::Truncated, "downloaded"),
        (Multi::AllWhole, "downloaded"),
    ];
    for (m, status) in cases {
        let srv = fault_server_with(m, &v1, &v2);
        let work = TempDir::new("delta-fault");
        let (out, rootfs) = install_v1(&srv.host, "delta/f", &work);
        let (o, v) = update_json(&srv.host, "delta/f", &out, &rootfs, &[]);
        assert_exit(&o, 0);
        assert_eq!(tree(std::path::Path::new(&rootfs)), want, "{m:?}: {}", stderr(&o));
        let layer = layer_report(&v, &v2.blob);
        assert_eq!(layer["status"], status, "{m:?}: {layer}\n{}", stderr(&o));
        let d = &layer["delta"];
        match status {
            "partial" => assert!(d["fallback"].is_null(), "{m:?}: {d}"),
            _ => assert!(d["fallback"].is_string(), "{m:?}: {d}"),
        }
        let blob_there = blob_path(std::path::Path::new(&out), &sha256(&v2.blob)).exists();
        assert_eq!(blob_there, status == "downloaded", "{m:?}");
        if let Multi::Status(_) = m {
            // Metadata, the refused multi-range request, then one per range.
            assert!(d["requests"].as_u64().unwrap() >= 4, "{m:?}: {d}");
        }
    }
}

/// A cut during a partial update keeps the chunks that arrived: the next
/// run takes them from `.minipull/partial` (checked against their digests
/// again) and fetches less; once installed, the spool is emptied.
#[test]
fn a_cut_partial_update_does_not_fetch_again_what_arrived() {
    if !hooks() {
        return;
    }
    let reg = Registry::start(Auth::None);
    let (v1, v2) = two_versions();
    push_chunked(&reg, "delta/cut", "v1", &[&v1]);
    push_chunked(&reg, "delta/cut", "v2", &[&v2]);
    let (_oracle, want) = whole_v2(&reg.host, "delta/cut");
    // A clean update's cost, for comparison.
    let clean = TempDir::new("delta-clean");
    let (out, rootfs) = install_v1(&reg.host, "delta/cut", &clean);
    let (o, v) = update_json(&reg.host, "delta/cut", &out, &rootfs, &[]);
    assert_exit(&o, 0);
    let layer = |v: &serde_json::Value| layer_report(v, &v2.blob);
    let clean_fetched = layer(&v)["delta"]["fetched"].as_u64().unwrap();
    // Killed right after the first fetched chunk is kept.
    let work = TempDir::new("delta-cut");
    let (out, rootfs) = install_v1(&reg.host, "delta/cut", &work);
    let r = format!("{}/delta/cut:v2", reg.host);
    let o = minipull_env(
        &["--plain-http", "-q", &r, &out, "--unpack", &rootfs, "--force"],
        None,
        &[("MINIPULL_TEST_KILL", "chunk-kept")],
    );
    assert!(o.status.code().is_none(), "killed: {}", stderr(&o));
    let chunks = std::path::Path::new(&out).join(".minipull/partial/chunks");
    assert!(std::fs::read_dir(&chunks).unwrap().count() >= 1, "a chunk is kept");
    let (o, v) = update_json(&reg.host, "delta/cut", &out, &rootfs, &[]);
    assert_exit(&o, 0);
    assert_eq!(tree(std::path::Path::new(&rootfs)), want);
    let d = layer(&v)["delta"].clone();
    assert_eq!(layer(&v)["status"], "partial", "{d}");
    assert!(d["spooled"].as_u64().unwrap() > 0, "{d}");
    assert!(
        d["fetched"].as_u64().unwrap() < clean_fetched,
        "{d} against {clean_fetched}"
    );
    assert!(!chunks.exists(), "the spool is emptied once installed");
}

/// An OCI layout at `dir` holding `tar` (uncompressed) as the image `tag`.
fn oci_layout_of(dir: &std::path::Path, tag: &str, tar: &[u8]) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |b: &[u8]| {
        let d = sha256(b);
        std::fs::write(blobs.join(d.trim_start_matches("sha256:")), b).unwrap();
        d
    };
    let layer = put(tar);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer]},
    }))
    .unwrap();
    let cd = put(&config);
    let mt = "application/vnd.oci.image.manifest.v1+json";
    let m = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": mt,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": tar.len()}],
    }))
    .unwrap();
    let md = put(&m);
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [
        {"mediaType": mt, "digest": md, "size": m.len(), "annotations": {"org.opencontainers.image.ref.name": tag}}
    ]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

/// Debian 12's skopeo writes the old zstd:chunked dialect (the
/// `io.containers.*` keys, no tar-split): the update takes the whole-layer
/// path, and the root is right.
#[test]
fn old_dialect_from_debian_12_skopeo_takes_the_whole_layer() {
    require("skopeo");
    let reg = Registry::start(Auth::None);
    let src = TempDir::new("delta-skopeo");
    for (tag, v2) in [("v1", false), ("v2", true)] {
        // The writer's tar ends right after its two zero blocks (skopeo 1.9.3
        // would drop GNU tar's record padding and change the diff_id).
        let l = minipull::delta::testwriter::write(&image(v2), |_| {}, |_| {});
        let dir = src.join(tag);
        oci_layout_of(&dir, tag, &l.tar);
        let o = std::process::Command::new("skopeo")
            .args([
                "copy",
                "--dest-compress-format",
                "zstd:chunked",
                "--dest-compress",
                "--dest-tls-verify=false",
            ])
            .arg(format!("oci:{}:{tag}", dir.display()))
            .arg(format!("docker://{}/delta/sk:{tag}", reg.host))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let m: serde_json::Value = serde_json::from_slice(&reg.manifest("delta/sk", "v2")).unwrap();
    let ann = &m["layers"][0]["annotations"];
    assert!(
        ann["io.containers.zstd-chunked.manifest-position"].is_string(),
        "old dialect: {m}"
    );
    assert!(
        ann["io.github.containers.zstd-chunked.tarsplit-position"].is_null(),
        "{m}"
    );
    let (_oracle, want) = whole_v2(&reg.host, "delta/sk");
    let work = TempDir::new("delta-sk");
    let (out, rootfs) = install_v1(&reg.host, "delta/sk", &work);
    let (o, v) = update_json(&reg.host, "delta/sk", &out, &rootfs, &[]);
    assert_exit(&o, 0);
    assert_eq!(tree(std::path::Path::new(&rootfs)), want);
    let digest = m["layers"][0]["digest"].as_str().unwrap();
    let layer = v["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["digest"] == digest)
        .unwrap()
        .clone();
    assert_eq!(layer["status"], "downloaded", "{layer}");
    assert!(layer["delta"].is_null(), "no partial attempt: {layer}");
    assert!(blob_path(std::path::Path::new(&out), digest).exists());
}

/// The Debian 13 chroot with skopeo 1.18 (tests/trixie-skopeo.sh): from
/// `MINIPULL_TRIXIE` or the default cache path; made by the script when it
/// is not there yet (about a minute and 330 MB the first time).
fn trixie() -> std::path::PathBuf {
    let dir = std::env::var_os("MINIPULL_TRIXIE")
        .map_or_else(|| "/var/cache/minipull-trixie".into(), std::path::PathBuf::from);
    if !dir.join(".minipull-complete").is_file() {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/trixie-skopeo.sh");
        let o = std::process::Command::new("bash").arg(&script).arg(&dir).output();
        let why = match o {
            Ok(o) if o.status.success() => return dir,
            Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
            Err(e) => e.to_string(),
        };
        panic!(
            "no Debian 13 chroot with skopeo 1.18 at {} and {} could not make it:\n{why}\n\
             run `tests/trixie-skopeo.sh {}` as root (or set MINIPULL_TRIXIE to a chroot it made)",
            dir.display(),
            script.display(),
            dir.display()
        );
    }
    dir
}

/// A work directory inside the chroot: (its path on the host, its path for skopeo).
fn trixie_work(chroot: &std::path::Path, tag: &str) -> (TempDir, String) {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let name = format!(
        "minipull-it-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    );
    let host = chroot.join("work").join(&name);
    let _ = std::fs::remove_dir_all(&host);
    std::fs::create_dir_all(&host).unwrap();
    (TempDir(host), format!("/work/{name}"))
}

/// `skopeo copy --dest-compress-format zstd:chunked FROM TO` by Debian 13's skopeo.
fn skopeo_1_18_copy(chroot: &std::path::Path, from: &str, to: &str) {
    let o = std::process::Command::new("chroot")
        .arg(chroot)
        .args([
            "skopeo",
            "--insecure-policy",
            "copy",
            "--dest-compress-format",
            "zstd:chunked",
            "--dest-tls-verify=false",
            from,
            to,
        ])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "skopeo 1.18: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Debian 13's skopeo 1.18 writes the modern dialect (the
/// `io.github.containers.*` keys with a tar-split): v1 to v2 is updated
/// partially, with ranged requests only, into the whole-layer oracle's tree.
#[test]
fn modern_dialect_from_debian_13_skopeo_is_updated_partially() {
    let chroot = trixie();
    let log = TempDir::new("delta-sk18-log");
    let reg = Registry::start_setup(Setup {
        access_log: Some(log.join("access.log")),
        ..Setup::default()
    });
    let (src, inside) = trixie_work(&chroot, "sk18");
    for (tag, v2) in [("v1", false), ("v2", true)] {
        let l = minipull::delta::testwriter::write(&image(v2), |_| {}, |_| {});
        oci_layout_of(&src.join(tag), tag, &l.tar);
        skopeo_1_18_copy(
            &chroot,
            &format!("oci:{inside}/{tag}:{tag}"),
            &format!("docker://{}/delta/sk18:{tag}", reg.host),
        );
    }
    let m: serde_json::Value = serde_json::from_slice(&reg.manifest("delta/sk18", "v2")).unwrap();
    let desc = &m["layers"][0];
    let ann = &desc["annotations"];
    for k in ["manifest-checksum", "manifest-position", "tarsplit-position"] {
        let key = format!("io.github.containers.zstd-chunked.{k}");
        assert!(ann[&key].is_string(), "{key}: {m}");
    }
    let digest = desc["digest"].as_str().unwrap();
    let size = desc["size"].as_u64().unwrap();
    let (_oracle, want) = whole_v2(&reg.host, "delta/sk18");
    let work = TempDir::new("delta-sk18");
    let (out, rootfs) = install_v1(&reg.host, "delta/sk18", &work);
    let before = std::fs::read_to_string(log.join("access.log"))
        .unwrap_or_default()
        .lines()
        .count();
    let (o, v) = update_json(&reg.host, "delta/sk18", &out, &rootfs, &[]);
    assert_exit(&o, 0);
    assert_eq!(tree(std::path::Path::new(&rootfs)), want, "{}", stderr(&o));
    let layer = v["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["digest"] == digest)
        .unwrap_or_else(|| panic!("{v}"))
        .clone();
    assert_eq!(layer["status"], "partial", "{layer}\n{}", stderr(&o));
    let d = &layer["delta"];
    eprintln!("skopeo 1.18's layer ({size} bytes), updated: {d}");
    assert!(d["fallback"].is_null(), "{d}");
    let fetched = d["fetched"].as_u64().unwrap();
    assert!(fetched < size / 4, "{fetched} of {size}: {d}");
    assert!(d["reused"].as_u64().unwrap() > 700 * 1024, "{d}");
    // The registry saw only ranged requests for that layer (206), no whole GET.
    let logged = std::fs::read_to_string(log.join("access.log")).unwrap_or_default();
    let gets: Vec<&str> = logged
        .lines()
        .skip(before)
        .filter(|l| l.contains(&format!("GET /v2/delta/sk18/blobs/{digest}")))
        .collect();
    assert_eq!(
        gets.len() as u64,
        d["requests"].as_u64().unwrap(),
        "{d}\n{}",
        gets.join("\n")
    );
    assert_eq!(gets.len(), 2, "metadata + one data request:\n{}", gets.join("\n"));
    assert!(
        gets.iter().all(|l| l.contains("\" 206 ")),
        "ranged answers only:\n{}",
        gets.join("\n")
    );
    assert!(!blob_path(std::path::Path::new(&out), digest).exists());
}

/// `zstd -dc` of some frames.
fn unzstd(b: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut c = std::process::Command::new("zstd")
        .arg("-dcq")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = c.stdin.take().unwrap();
    let input = b.to_vec();
    let feed = std::thread::spawn(move || stdin.write_all(&input));
    let o = c.wait_with_output().unwrap();
    feed.join().unwrap().unwrap();
    assert!(o.status.success(), "zstd -dc");
    o.stdout
}

/// What the reader relies on in a zstd:chunked layer, as lines to compare
/// between two writers (compressed offsets only by their form: the
/// compressors differ), and the other TOC fields apart (not relied on).
fn chunked_shape(blob: &[u8], ann: &serde_json::Value, tar: &[u8]) -> (Vec<String>, Vec<String>) {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.decode(s).unwrap();
    let mut out = Vec::new();
    let form = |v: &str| -> String {
        v.split(':')
            .map(|p| {
                if p.bytes().all(|b| b.is_ascii_digit()) && p != "1" {
                    "N"
                } else {
                    p
                }
            })
            .map(|p| {
                if p.len() == 64 && p.bytes().all(|b| b.is_ascii_hexdigit()) {
                    "HEX64"
                } else {
                    p
                }
            })
            .collect::<Vec<_>>()
            .join(":")
    };
    let ann = ann.as_object().unwrap();
    for (k, v) in ann {
        out.push(format!("annotation {k} = {}", form(v.as_str().unwrap())));
    }
    let p = "io.github.containers.zstd-chunked.";
    let nums = |k: &str| -> Vec<u64> {
        ann[&format!("{p}{k}")]
            .as_str()
            .unwrap()
            .split(':')
            .map(|n| n.parse().unwrap())
            .collect()
    };
    let (tp, sp) = (nums("manifest-position"), nums("tarsplit-position"));
    let frame = |o: u64, l: u64| -> &[u8] {
        let o = o as usize;
        assert_eq!(
            blob[o - 8..o - 4],
            [0x50, 0x2a, 0x4d, 0x18],
            "a skippable frame before {o}"
        );
        assert_eq!(u32::from_le_bytes(blob[o - 4..o].try_into().unwrap()) as u64, l);
        &blob[o..o + l as usize]
    };
    let toc_z = frame(tp[0], tp[1]);
    let split_z = frame(sp[0], sp[1]);
    assert_eq!(ann[&format!("{p}manifest-checksum")], sha256(toc_z));
    let toc_json = unzstd(toc_z);
    let split = unzstd(split_z);
    assert_eq!(toc_json.len() as u64, tp[2], "the TOC's uncompressed length");
    assert_eq!(split.len() as u64, sp[2], "the tar-split's uncompressed length");
    assert_eq!(sp[0], tp[0] + tp[1] + 8, "the tar-split follows the TOC");
    // The footer: a skippable frame of 64 bytes that ends the blob and repeats the positions.
    let f = &blob[blob.len() - 64..];
    assert_eq!(
        blob[blob.len() - 72..blob.len() - 64],
        [0x50, 0x2a, 0x4d, 0x18, 64, 0, 0, 0]
    );
    let field = |i: usize| u64::from_le_bytes(f[i * 8..i * 8 + 8].try_into().unwrap());
    assert_eq!((0..7).map(field).collect::<Vec<_>>(), [&tp[..], &sp[..]].concat());
    assert_eq!(&f[56..], b"GNUlInUx");
    assert_eq!(
        sp[0] + sp[1] + 8 + 64,
        blob.len() as u64,
        "nothing between the tar-split and the footer"
    );
    out.push("footer 64 bytes, GNUlInUx, the annotations' numbers".into());
    // The whole blob is the input tar (nothing lost, no padding added).
    assert!(
        unzstd(&blob[..tp[0] as usize - 8]) == tar,
        "the data frames are the input tar"
    );
    // The TOC.
    let doc: serde_json::Value = serde_json::from_slice(&toc_json).unwrap();
    let mut keys: Vec<&String> = doc.as_object().unwrap().keys().collect();
    keys.sort();
    out.push(format!("toc keys {keys:?} version {}", doc["version"]));
    out.push(format!(
        "tarSplitDigest {}",
        form(doc["tarSplitDigest"].as_str().unwrap())
    ));
    assert_eq!(doc["tarSplitDigest"], sha256(split_z));
    let relied = [
        "type",
        "name",
        "size",
        "digest",
        "offset",
        "endOffset",
        "chunkSize",
        "chunkOffset",
        "chunkDigest",
        "chunkType",
    ];
    let mut other = Vec::new();
    for e in doc["entries"].as_array().unwrap() {
        let e = e.as_object().unwrap();
        let mut line = String::from("entry");
        for k in relied {
            match (k, e.get(k)) {
                (_, None) => {}
                ("offset" | "endOffset", Some(v)) => {
                    let at = v.as_u64().unwrap() as usize;
                    // Every data offset starts a zstd frame (or is the data's end).
                    let framed = blob[at..at + 4] == [0x28, 0xb5, 0x2f, 0xfd] || at == tp[0] as usize - 8;
                    line += &format!(" {k}={}", if framed { "FRAME" } else { "NOT-A-FRAME" });
                }
                (_, Some(v)) => line += &format!(" {k}={v}"),
            }
        }
        out.push(line);
        let mut rest: Vec<String> = e
            .iter()
            .filter(|(k, _)| !relied.contains(&k.as_str()))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        rest.sort();
        other.push(format!("{} {}", e["name"], rest.join(" ")));
    }
    // The tar-split: its line types and keys, the files' lines, and the
    // segments and payloads giving back the exact tar.
    let (mut rebuilt, mut payloads) = (Vec::new(), tar_payloads(tar).into_iter());
    for l in split.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let v: serde_json::Value = serde_json::from_slice(l).unwrap();
        let mut keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        keys.sort();
        match v["type"].as_u64() {
            Some(2) => {
                let seg = b64(v["payload"].as_str().unwrap());
                out.push(format!("split segment of {} bytes, keys {keys:?}", seg.len()));
                rebuilt.extend(seg);
            }
            Some(1) => {
                let size = v["size"].as_u64().unwrap_or(0);
                let data = if size > 0 { payloads.next().unwrap() } else { Vec::new() };
                assert_eq!(data.len() as u64, size, "{v}");
                rebuilt.extend(&data);
                let crc = v["payload"].as_str().map(b64);
                let mut c = minipull::delta::Crc64::new();
                c.update(&data);
                let crc_ok = crc.map(|b| b == c.finish().to_be_bytes());
                out.push(format!(
                    "split file {} size={size} crc={crc_ok:?} keys {keys:?}",
                    v["name"],
                ));
            }
            t => panic!("a tar-split line of type {t:?}"),
        }
    }
    assert!(rebuilt == tar, "tar-split + payloads = the tar");
    out.push("split + payloads = the tar".into());
    (out, other)
}

/// The payloads of a ustar archive's entries with data, in order.
fn tar_payloads(tar: &[u8]) -> Vec<Vec<u8>> {
    let (mut at, mut out) = (0, Vec::new());
    while at + 512 <= tar.len() && tar[at..at + 512].iter().any(|b| *b != 0) {
        let h = &tar[at..at + 512];
        let size = u64::from_str_radix(std::str::from_utf8(&h[124..135]).unwrap().trim_matches(['\0', ' ']), 8).unwrap()
            as usize;
        let has_data = matches!(h[156], b'0' | 0 | b'7') && size > 0;
        at += 512;
        if has_data {
            out.push(tar[at..at + size].to_vec());
            at += size.next_multiple_of(512);
        }
    }
    out
}

/// For the same input tar, what the in-suite writer produces and what
/// skopeo 1.18 writes agree on everything the reader relies on: the
/// annotation keys and the form of their values, the skippable frames and
/// the 64-byte footer, the TOC's version and entries (the same chunk
/// boundaries from the same rolling sum), the tar-split's lines; both are
/// read by the reader into the same files.
#[test]
fn our_writer_agrees_with_skopeo_1_18() {
    require("zstd");
    let chroot = trixie();
    use minipull::delta::testwriter::{file, write};
    let mut entries = image(true);
    // More shapes: an empty file, several zero runs, a file of zeros only.
    entries.push(file("usr/empty", Vec::new()));
    let mut sparse = noise(3000, 21);
    for n in 0..4 {
        sparse.extend(vec![0u8; 1024 + n * 700]);
        sparse.extend(noise(200_000 + n * 100, 22 + n as u64));
    }
    entries.push(file("usr/sparse", sparse));
    entries.push(file("usr/zeros", vec![0u8; 70_000]));
    let ours = write(&entries, |_| {}, |_| {});
    let (src, inside) = trixie_work(&chroot, "agree");
    oci_layout_of(&src.join("in"), "v1", &ours.tar);
    skopeo_1_18_copy(&chroot, &format!("oci:{inside}/in:v1"), &format!("oci:{inside}/out:v1"));
    let out = src.join("out");
    let index = read_json(&out.join("index.json"));
    let md = index["manifests"][0]["digest"].as_str().unwrap();
    let m = read_json(&blob_path(&out, md));
    let desc = m["layers"][0].clone();
    let theirs = std::fs::read(blob_path(&out, desc["digest"].as_str().unwrap())).unwrap();
    let ours_ann = serde_json::to_value(&ours.annotations).unwrap();
    let (want, want_other) = chunked_shape(&theirs, &desc["annotations"], &ours.tar);
    let (got, got_other) = chunked_shape(&ours.blob, &ours_ann, &ours.tar);
    let diff: Vec<String> = want
        .iter()
        .filter(|l| !got.contains(l))
        .map(|l| format!("skopeo 1.18 only: {l}"))
        .chain(
            got.iter()
                .filter(|l| !want.contains(l))
                .map(|l| format!("ours only: {l}")),
        )
        .collect();
    assert!(diff.is_empty(), "{}", diff.join("\n"));
    assert_eq!(want, got);
    // The fields the reader does not use (mode, modtime, linkName) agree too.
    assert_eq!(want_other, got_other);
    // The reader takes both to the same files and chunks.
    let files = |blob: &[u8], desc: minipull::manifest::Descriptor| {
        let pos = minipull::delta::position::of(&desc).expect("a modern zstd:chunked layer");
        let (from, _) = pos.metadata_range(blob.len() as u64);
        let meta = minipull::delta::Metadata::open(&blob[from as usize..], &pos).unwrap();
        meta.toc
            .files
            .iter()
            .map(|f| {
                let chunks: Vec<_> = f.chunks.iter().map(|c| (c.offset, c.size, c.digest, c.from)).collect();
                (f.name.to_string(), f.size, f.digest, chunks)
            })
            .collect::<Vec<_>>()
    };
    let theirs_files = files(&theirs, serde_json::from_value(desc).unwrap());
    assert_eq!(theirs_files, files(&ours.blob, ours.descriptor()));
    assert!(theirs_files.iter().any(|f| f.3.len() > 2), "a file of several chunks");
}

/// A registry that wants a token and sends every blob request (307) to a
/// CDN that supports no multi-range (S3 and its likes), and answers a
/// request carrying Authorization with 400, as S3 does for presigned URLs.
fn registry_and_cdn(
    cdn_multi: common::fault::Multi,
    v1: &minipull::delta::testwriter::Layer,
    v2: &minipull::delta::testwriter::Layer,
) -> (common::fault::FaultServer, common::fault::FaultServer) {
    use common::fault::{FaultServer, Faults};
    let cdn = FaultServer::start(Faults {
        ranges: Some(cdn_multi),
        cdn_refuses_authorization: true,
        ..Faults::default()
    });
    let reg = fault_server_with(cdn_multi, v1, v2);
    reg.set_faults(Faults {
        token_lifetime: Some(Duration::from_secs(600)),
        redirect_blobs_to: Some(format!("http://{}", cdn.host)),
        ..Faults::default()
    });
    for (d, b) in reg.blobs() {
        cdn.add_blob(&d, b);
    }
    (reg, cdn)
}

/// The CDN redirect without multi-range: the partial update's ranged
/// requests are redirected with their Range, no registry credentials reach
/// the CDN, and the update ends in the right root: in single ranges when
/// the CDN refuses several at once, with the 200 it answers instead taken
/// as the whole-layer download (fetched once, not again). The JSON output
/// conforms to the documented schema.
#[test]
fn a_cdn_without_multi_range_gets_the_ranges_and_no_credentials() {
    use common::fault::Multi;
    let (v1, v2) = two_versions();
    let oracle = Registry::start(Auth::None);
    push_chunked(&oracle, "delta/f", "v1", &[&v1]);
    push_chunked(&oracle, "delta/f", "v2", &[&v2]);
    let (_oracle, want) = whole_v2(&oracle.host, "delta/f");
    let layer = sha256(&v2.blob);
    for (m, status) in [
        (Multi::Status(501), "partial"),
        (Multi::Status(400), "partial"),
        (Multi::Whole, "downloaded"),
    ] {
        let (reg, cdn) = registry_and_cdn(m, &v1, &v2);
        let work = TempDir::new("delta-cdn");
        let (out, rootfs) = install_v1(&reg.host, "delta/f", &work);
        reg.clear_log();
        cdn.clear_log();
        let (o, _) = update_json(&reg.host, "delta/f", &out, &rootfs, &[]);
        assert_exit(&o, 0);
        let v = common::schema::conforms(&o, "pull");
        assert_eq!(tree(std::path::Path::new(&rootfs)), want, "{m:?}: {}", stderr(&o));
        let b = v["blobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["digest"] == layer)
            .unwrap_or_else(|| panic!("{m:?}: {v}"))
            .clone();
        assert_eq!(b["status"], status, "{m:?}: {b}\n{}", stderr(&o));
        // The registry had credentials (a bearer token) for the blob
        // requests it redirected; none of them reached the CDN.
        let at_reg: Vec<_> = reg.requests(&layer).into_iter().filter(|l| l.status == 307).collect();
        assert!(!at_reg.is_empty(), "{m:?}: {:?}", reg.log());
        assert!(at_reg.iter().all(|l| l.authorization.is_some()), "{m:?}: {at_reg:?}");
        let at_cdn = cdn.requests("/cdn/");
        assert!(at_cdn.iter().all(|l| l.authorization.is_none()), "{m:?}: {at_cdn:?}");
        // Every ranged request reached the CDN with its Range, in order.
        let at_cdn: Vec<_> = at_cdn.into_iter().filter(|l| l.path.contains(&layer)).collect();
        let ranges = |ls: &[common::fault::Logged]| ls.iter().map(|l| l.range.clone()).collect::<Vec<_>>();
        assert_eq!(ranges(&at_reg), ranges(&at_cdn), "{m:?}");
        assert!(at_cdn.iter().all(|l| l.range.is_some()), "{m:?}: {at_cdn:?}");
        let multi = |l: &common::fault::Logged| l.range.as_deref().is_some_and(|r| r.contains(','));
        assert_eq!(at_cdn.iter().filter(|l| multi(l)).count(), 1, "{m:?}: {at_cdn:?}");
        let d = &b["delta"];
        match m {
            Multi::Whole => {
                // Metadata, then the multi-range request answered 200: that
                // body is the layer, and nothing is fetched after it.
                assert_eq!(at_cdn.len(), 2, "{at_cdn:?}");
                assert_eq!(at_cdn[1].status, 200);
                let body: u64 = at_cdn.iter().map(|l| l.body_bytes).sum();
                assert!(body < 2 * v2.blob.len() as u64, "fetched twice: {at_cdn:?}");
                assert!(d["fallback"].is_string(), "{d}");
                assert!(blob_path(std::path::Path::new(&out), &layer).exists());
            }
            _ => {
                // Metadata, the refused request, then one request per range.
                assert!(at_cdn.len() >= 4, "{at_cdn:?}");
                assert!(at_cdn[2..].iter().all(|l| l.status == 206 && !multi(l)), "{at_cdn:?}");
                assert!(d["fallback"].is_null(), "{d}");
                assert_eq!(d["requests"].as_u64(), Some(at_cdn.len() as u64), "{d}");
                assert!(!blob_path(std::path::Path::new(&out), &layer).exists());
            }
        }
    }
}

/// The local file index: written beside the record when the image is
/// installed; an update whose OUTDIR has no previous TOC (a fresh one, so
/// only whole files can be reused) takes an unchanged file on the index's
/// word (read once, while copied); a file rewritten since the install with
/// the same bytes (its `fstat` no longer what the index says) is not reused,
/// where without the index it is hashed and reused. Every root equals the
/// whole-layer unpack.
#[test]
fn the_local_index_is_believed_only_while_fstat_agrees() {
    use minipull::delta::testwriter::{dir, file, write};
    let reg = Registry::start(Auth::None);
    let big = noise(800 * 1024, 21);
    let version = |conf: &[u8]| {
        write(
            &[
                dir("etc/"),
                file("etc/conf", conf.to_vec()),
                dir("usr/"),
                file("usr/big", big.clone()),
            ],
            |_| {},
            |_| {},
        )
    };
    let (v1, v2) = (version(b"one\n"), version(b"two\n"));
    let repo = "delta/index";
    push_chunked(&reg, repo, "v1", &[&v1]);
    push_chunked(&reg, repo, "v2", &[&v2]);
    let (_oracle, want) = whole_v2(&reg.host, repo);
    // An update of a fresh install of v1, after `prepare` did something to it.
    let update = |prepare: &dyn Fn(&std::path::Path)| -> u64 {
        let work = TempDir::new("delta-index");
        let (_, rootfs) = install_v1(&reg.host, repo, &work);
        let root = std::path::Path::new(&rootfs);
        let index = work.join("rootfs.minipull-files");
        assert!(index.is_file(), "the install writes the index beside its record");
        prepare(root);
        let fresh = work.join("fresh");
        let (o, v) = update_json(&reg.host, repo, fresh.to_str().unwrap(), &rootfs, &[]);
        assert_exit(&o, 0);
        assert_eq!(tree(root), want, "{}", stderr(&o));
        let layer = layer_report(&v, &v2.blob);
        assert_eq!(layer["status"], "partial", "{v}\n{}", stderr(&o));
        layer["delta"]["fetched"].as_u64().unwrap()
    };
    let index = |root: &std::path::Path| root.with_file_name("rootfs.minipull-files");
    let rewrite = |root: &std::path::Path| {
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(root.join("usr/big"), &big).unwrap();
    };
    let indexed = update(&|_| {});
    assert!(
        indexed < 100 * 1024,
        "the unchanged file comes from the root: {indexed} bytes fetched"
    );
    let rewritten = update(&rewrite);
    assert!(
        rewritten > 800 * 1024,
        "changed since the install: not reused ({rewritten})"
    );
    let hashed = update(&|root| {
        std::fs::remove_file(index(root)).unwrap();
        rewrite(root);
    });
    assert!(
        hashed < 100 * 1024,
        "without the index the file is hashed and reused: {hashed}"
    );
    // An index of another tree (here: damaged) is not used either.
    let damaged = update(&|root| {
        std::fs::write(index(root), b"minipull-files1\n").unwrap();
        rewrite(root);
    });
    assert!(damaged < 100 * 1024, "{damaged}");
}

/// Only the layers above an image's last layer without a TOC are indexed
/// (such a layer may have changed any name below it): a chunked base under
/// a plain layer gives no index, a plain base under a chunked layer does.
#[test]
fn a_layer_without_a_toc_hides_the_index_below_it() {
    use minipull::delta::testwriter::{dir, file, write};
    let reg = Registry::start(Auth::None);
    let base = write(&[dir("usr/"), file("usr/big", noise(200 * 1024, 31))], |_| {}, |_| {});
    let top = write(&[dir("usr/"), file("usr/big", noise(200 * 1024, 32))], |_| {}, |_| {});
    for (tag, plain, indexed) in [("plain-top", 1, false), ("plain-base", 0, true)] {
        push_layers(&reg, "delta/mixed", tag, &[&base, &top], &[plain]);
        let work = TempDir::new("delta-mixed");
        let rootfs = work.join("rootfs");
        let o = minipull(
            &[
                "--plain-http",
                "-q",
                &format!("{}/delta/mixed:{tag}", reg.host),
                work.join("out").to_str().unwrap(),
                "--unpack",
                rootfs.to_str().unwrap(),
            ],
            None,
        );
        assert_exit(&o, 0);
        assert_eq!(
            work.join("rootfs.minipull-files").is_file(),
            indexed,
            "{tag}: {}",
            stderr(&o)
        );
    }
}

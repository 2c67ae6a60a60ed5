//! Partial pulls of zstd:chunked layers: the ranged blob requests against
//! the real registry (distribution answers multi-range requests with 206
//! `multipart/byteranges`).
// The partial path reads layers with the unpack feature's decoders.
#![cfg(feature = "unpack")]

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

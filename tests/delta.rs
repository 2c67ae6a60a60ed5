//! Partial pulls of zstd:chunked layers: the ranged blob requests against
//! the real registry (distribution answers multi-range requests with 206
//! `multipart/byteranges`).

mod common;
use common::*;
use minipull::registry::{Client, Options, Ranged};
use std::io::Read;
use std::time::Duration;

fn client(reg: &Registry, repo: &str) -> Client {
    let (tls, _) = minipull::tls::config(&minipull::tls::TlsOptions {
        ca_files: vec![],
        insecure: false,
    })
    .unwrap();
    let opts = Options {
        plain_http: true,
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
    Client::for_host(
        &reg.host,
        true,
        repo,
        None,
        opts,
        minipull::progress::Progress::new(true),
    )
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
    let mut c = client(&reg, "delta/ranges");
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

//! `minipull inspect` and `minipull tags` against the real registry (its
//! access log tells which requests went out) and the fault server (a
//! paginating registry, and hostile answers: a next page on another
//! origin, pages without end, a digest that lies, escapes in names).

mod common;
use common::fault::{FaultServer, Faults};
use common::*;
use serde_json::Value;

const CREATED: &str = "2024-05-06T07:08:09Z";

/// An image whose config says when it was made; returns (manifest digest,
/// manifest bytes, config bytes, layer digests).
fn push_one(reg: &Registry, repo: &str, tag: &str, arch: &'static str) -> (String, Vec<u8>, Vec<u8>, Vec<String>) {
    let layer = gz_layer(&[("arch.txt", arch.as_bytes())]);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": arch, "os": "linux", "created": CREATED,
        "rootfs": {"type": "layers", "diff_ids": [sha256(&layer.tar)]},
    }))
    .unwrap();
    let layer_digest = sha256(&layer.blob);
    let image = Image {
        config: Some(config.clone()),
        ..Image::new(arch, vec![layer])
    };
    let (d, bytes) = reg.push_image(repo, tag, &image);
    (d, bytes, config, vec![layer_digest])
}

fn json_of(o: &std::process::Output) -> Value {
    assert_exit(o, 0);
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(o)))
}

/// Blob GETs in the access log from line `from` on (any repository).
fn blob_gets(lr: &LoggedRegistry, from: usize) -> Vec<String> {
    lr.log_lines()[from..]
        .iter()
        .filter(|l| l.contains("\"GET /v2/") && l.contains("/blobs/"))
        .cloned()
        .collect()
}

#[test]
fn inspect_a_manifest_an_index_and_a_platform_with_manifest_requests_only() {
    let lr = LoggedRegistry::new("inspect-remote");
    let reg = &lr.reg;
    let (single, single_bytes, single_config, mut layers) = push_one(reg, "demo/one", "1.0", "amd64");
    let mut children = Vec::new();
    for arch in ["amd64", "arm64"] {
        let (d, bytes, config, l) = push_one(reg, "demo/multi", &format!("only-{arch}"), arch);
        layers.extend(l);
        children.push((arch, d, bytes, config));
    }
    let index = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": children.iter().map(|(arch, d, bytes, _)| serde_json::json!({
            "mediaType": OCI_MANIFEST, "digest": d, "size": bytes.len(),
            "platform": {"os": "linux", "architecture": arch}})).collect::<Vec<_>>()}))
    .unwrap();
    let index_digest = reg.push_manifest("demo/multi", "2.0", OCI_INDEX, &index);
    let one = format!("{}/demo/one:1.0", reg.host);
    let multi = format!("{}/demo/multi:2.0", reg.host);
    let run = |args: &[&str]| minipull(&[&["--plain-http", "inspect"], args].concat(), None);

    // One manifest: digest, type, size and the config's fields (the config is fetched).
    let start = lr.log_lines().len();
    let o = run(&[&one]);
    assert_exit(&o, 0);
    let text = stdout(&o);
    for want in [
        single.as_str(),
        OCI_MANIFEST,
        "linux",
        "amd64",
        CREATED,
        &format!("{}", single_bytes.len()),
    ] {
        assert!(text.contains(want), "{want} missing from:\n{text}");
    }
    let gets = blob_gets(&lr, start);
    assert_eq!(gets.len(), 1, "only the config: {gets:?}");
    assert!(gets[0].contains(&sha256(&single_config)), "{gets:?}");
    let v = json_of(&run(&["--json", &one]));
    assert_eq!(v["reference"], one.as_str());
    assert_eq!(v["digest"], single.as_str());
    assert_eq!(v["mediaType"], OCI_MANIFEST);
    assert_eq!(v["size"], single_bytes.len() as u64);
    assert_eq!(v["config"]["digest"], sha256(&single_config).as_str());
    assert_eq!(v["config"]["mediaType"], OCI_CONFIG);
    assert_eq!(
        (v["config"]["os"].as_str(), v["config"]["architecture"].as_str()),
        (Some("linux"), Some("amd64"))
    );
    assert_eq!(v["config"]["created"], CREATED);
    assert_eq!(v["layers"].as_array().unwrap().len(), 1);
    assert!(v.get("platforms").is_none(), "{v}");

    // An index: its platforms, and not one blob request.
    let start = lr.log_lines().len();
    let o = run(&[&multi]);
    assert_exit(&o, 0);
    let text = stdout(&o);
    for (arch, d, _, _) in &children {
        assert!(
            text.contains(&format!("linux/{arch}")) && text.contains(d.as_str()),
            "{text}"
        );
    }
    let v = json_of(&run(&["--json", &multi]));
    assert_eq!(v["digest"], index_digest.as_str());
    assert_eq!(v["mediaType"], OCI_INDEX);
    assert_eq!(v["size"], index.len() as u64);
    let platforms: Vec<(&str, &str)> = v["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["platform"].as_str().unwrap(), p["digest"].as_str().unwrap()))
        .collect();
    assert_eq!(
        platforms,
        vec![
            ("linux/amd64", children[0].1.as_str()),
            ("linux/arm64", children[1].1.as_str())
        ]
    );
    assert!(v.get("config").is_none(), "{v}");
    assert_eq!(blob_gets(&lr, start), Vec::<String>::new());
    let manifest_gets = lr.log_lines()[start..]
        .iter()
        .filter(|l| l.contains("/manifests/"))
        .count();
    assert_eq!(manifest_gets, 2, "one manifest GET a run");

    // --platform picks a child: its own digest and config, under the index.
    let v = json_of(&run(&["--json", "--platform", "linux/arm64", &multi]));
    assert_eq!(v["digest"], children[1].1.as_str());
    assert_eq!(v["platform"], "linux/arm64");
    assert_eq!(v["index"]["digest"], index_digest.as_str());
    assert_eq!(v["config"]["architecture"], "arm64");
    let o = run(&["--platform", "linux/s390x", &multi]);
    assert_exit(&o, 3);
    assert!(stderr(&o).contains("linux/arm64"), "{}", stderr(&o));

    // --raw: the manifest's exact bytes, with no blob request.
    let start = lr.log_lines().len();
    for (r, want) in [
        (one.clone(), &single_bytes),
        (multi.clone(), &index),
        (format!("{}/demo/multi@{index_digest}", reg.host), &index),
    ] {
        let o = run(&["--raw", &r]);
        assert_exit(&o, 0);
        assert_eq!(sha256(&o.stdout), sha256(want), "{r}");
        assert_eq!(&o.stdout, want);
    }
    let o = run(&["--raw", "--platform", "linux/amd64", &multi]);
    assert_exit(&o, 0);
    assert_eq!(sha256(&o.stdout), children[0].1);
    assert_eq!(blob_gets(&lr, start), Vec::<String>::new());

    // --config: the config's exact bytes (of the platform asked for).
    let o = run(&["--config", &one]);
    assert_exit(&o, 0);
    assert_eq!(o.stdout, single_config);
    let o = run(&["--config", "--platform", "linux/arm64", &multi]);
    assert_exit(&o, 0);
    assert_eq!(o.stdout, children[1].3);
    assert_exit(&run(&["--config", "--raw", &one]), 2);

    // Never a layer, whatever was asked.
    let all = blob_gets(&lr, 0);
    for l in &layers {
        assert!(
            all.iter().all(|g| !g.contains(l.as_str())),
            "a layer was fetched: {all:?}"
        );
    }
}

#[test]
fn inspect_a_layout_on_disk_told_apart_by_layout_not_by_a_directory() {
    let work = TempDir::new("inspect-layout");
    let reg = Registry::start(Auth::None);
    let (single, single_bytes, single_config, _) = push_one(&reg, "demo/one", "1.0", "amd64");
    let out = work.join("out");
    let o = minipull(
        &[
            "--plain-http",
            &format!("{}/demo/one:1.0", reg.host),
            out.to_str().unwrap(),
        ],
        None,
    );
    assert_exit(&o, 0);
    // No network from here on: the registry is gone.
    drop(reg);
    let dir = out.to_str().unwrap();
    let v = json_of(&minipull(&["inspect", "--layout", "--json", dir], None));
    assert_eq!(v["digest"], single.as_str());
    assert_eq!(v["size"], single_bytes.len() as u64);
    assert_eq!(v["config"]["architecture"], "amd64");
    assert_eq!(v["config"]["created"], CREATED);
    assert!(v["reference"].as_str().unwrap().ends_with("/demo/one:1.0"), "{v}");
    let named = format!("{dir}:1.0");
    let o = minipull(&["inspect", "--layout", "--raw", &named], None);
    assert_exit(&o, 0);
    assert_eq!(o.stdout, single_bytes);
    let o = minipull(&["inspect", "--layout", "--config", &named], None);
    assert_exit(&o, 0);
    assert_eq!(o.stdout, single_config);
    let o = minipull(&["inspect", "--layout", &format!("{dir}:nope")], None);
    assert_exit(&o, 3);
    assert!(stderr(&o).contains("1.0"), "the names are listed: {}", stderr(&o));
    // Without --layout the operand is a reference, whether or not a
    // directory of that name exists: this path is none (a usage error).
    let o = minipull(&["inspect", dir], None);
    assert_exit(&o, 2);
    // A blob that does not match its digest is refused.
    let blob = blob_path(&out, &single);
    std::fs::write(&blob, b"{}").unwrap();
    let o = minipull(&["inspect", "--layout", dir], None);
    assert_exit(&o, 6);
}

#[test]
fn inspect_refuses_a_lying_digest_and_shows_escapes_unobeyed() {
    let server = FaultServer::start(Faults::default());
    let child = br#"{"schemaVersion":2}"#;
    let index = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha256(child), "size": child.len(),
            "platform": {"os": "linux\u{1b}]0;owned\u{7}\u{1b}[2J", "architecture": "amd64"}}]}))
    .unwrap();
    server.add_manifest("r", "v1", OCI_INDEX, &index);
    let r = format!("{}/r:v1", server.host);
    let o = minipull(&["--plain-http", "inspect", &r], None);
    assert_exit(&o, 0);
    assert!(
        !o.stdout.contains(&0x1b) && !o.stdout.contains(&0x07),
        "{:?}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("linux\\u{1b}"), "{}", stdout(&o));
    let o = minipull(&["--plain-http", "inspect", "--json", &r], None);
    assert_exit(&o, 0);
    assert!(!o.stdout.contains(&0x1b), "{:?}", stdout(&o));
    // A Docker-Content-Digest that is not the content's.
    server.set_faults(Faults {
        wrong_digest_header: true,
        ..Faults::default()
    });
    let o = minipull(&["--plain-http", "--retries", "0", "inspect", "--raw", &r], None);
    assert_exit(&o, 6);
    assert!(o.stdout.is_empty());
    // A digest reference whose content is another.
    let other = format!("{}/r@{}", server.host, sha256(b"other"));
    server.add_manifest("r", &sha256(b"other"), OCI_INDEX, &index);
    server.set_faults(Faults::default());
    let o = minipull(&["--plain-http", "--retries", "0", "inspect", "--raw", &other], None);
    assert_exit(&o, 6);
    assert!(o.stdout.is_empty());
}

#[test]
fn tags_of_the_real_registry_all_in_order() {
    let lr = LoggedRegistry::new("tags-real");
    let (d, bytes, _, _) = push_one(&lr.reg, "demo/app", "t00", "amd64");
    let mut want = vec!["t00".to_string()];
    for i in 1..12 {
        let t = format!("t{i:02}");
        lr.reg.push_manifest("demo/app", &t, OCI_MANIFEST, &bytes);
        want.push(t);
    }
    assert_eq!(sha256(&bytes), d);
    let repo = format!("{}/demo/app", lr.reg.host);
    let o = minipull(&["--plain-http", "tags", "--page-size", "5", &repo], None);
    assert_exit(&o, 0);
    // docker-registry 2.8 answers every tag at once, in its storage's
    // order (distribution 3 pages them, sorted; see the fault server's
    // test for pages): all of them, each once, in the order served.
    let mut got: Vec<String> = stdout(&o).lines().map(str::to_string).collect();
    let url = format!("http://{}/v2/demo/app/tags/list", lr.reg.host);
    let body = ureq::get(&url).call().unwrap().into_body().read_to_vec().unwrap();
    let served: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(served["tags"], serde_json::json!(got));
    got.sort();
    assert_eq!(got, want);
    // The page size went to the registry.
    assert!(
        lr.log_lines()
            .iter()
            .any(|l| l.contains("GET /v2/demo/app/tags/list?n=5")),
        "{:?}",
        lr.log_lines()
    );
    let v = json_of(&minipull(&["tags", "--plain-http", "--json", &repo], None));
    assert_eq!(v["repository"], repo.as_str());
    assert_eq!(v["tags"], served["tags"]);
    // A tag or a digest is not a repository.
    let o = minipull(&["--plain-http", "tags", &format!("{repo}:t00")], None);
    assert_exit(&o, 2);
    let o = minipull(
        &["--plain-http", "tags", &format!("{}/demo/nothing", lr.reg.host)],
        None,
    );
    assert_exit(&o, 3);
}

#[test]
fn tags_follow_link_pages_in_order() {
    // Not sorted: the registry's order is kept, whatever it is.
    let list: Vec<String> = (0..23).rev().map(|i| format!("v{i}")).collect();
    let server = FaultServer::start(Faults {
        tag_list: list.clone(),
        ..Faults::default()
    });
    let repo = format!("{}/a/b", server.host);
    let o = minipull(&["--plain-http", "tags", "--page-size=4", &repo], None);
    assert_exit(&o, 0);
    let got: Vec<String> = stdout(&o).lines().map(str::to_string).collect();
    assert_eq!(got, list);
    let pages = server.requests("/tags/list");
    assert_eq!(pages.len(), 6, "{pages:?}");
    assert!(pages.iter().all(|p| p.path.contains("n=4")), "{pages:?}");
}

#[test]
fn tags_refuse_a_next_page_elsewhere_and_pages_without_end() {
    // The next page on another origin: not followed, and the credentials
    // (given for this registry) go nowhere else.
    let elsewhere = FaultServer::start(Faults {
        tag_list: vec!["stolen".into()],
        ..Faults::default()
    });
    let basic = format!("Basic {}", base64_pub(b"alice:secret"));
    let server = FaultServer::start(Faults {
        tag_list: vec!["a".into()],
        tags_next: Some(format!("http://{}/v2/a/b/tags/list?last=a", elsewhere.host)),
        basic_auth: Some(basic.clone()),
        ..Faults::default()
    });
    let repo = format!("{}/a/b", server.host);
    let o = minipull(
        &["--plain-http", "tags", "--username", "alice", "--password-stdin", &repo],
        Some("secret\n"),
    );
    assert_exit(&o, 6);
    assert!(stderr(&o).contains("not followed"), "{}", stderr(&o));
    assert!(o.stdout.is_empty(), "nothing printed from a refused list");
    assert!(elsewhere.log().is_empty(), "{:?}", elsewhere.log());
    assert!(server
        .requests("/tags/list")
        .iter()
        .all(|r| r.authorization.as_deref() == Some(&basic)));
    // Another repository on the same origin: not followed either.
    server.set_faults(Faults {
        tag_list: vec!["a".into()],
        tags_next: Some("/v2/other/tags/list?last=a".into()),
        ..Faults::default()
    });
    let o = minipull(&["--plain-http", "tags", &repo], None);
    assert_exit(&o, 6);
    assert!(server.requests("/v2/other/").is_empty());
    // Pages without end: a relative Link, forever; bounded at 100 pages.
    server.set_faults(Faults {
        tag_list: vec!["a".into()],
        tags_next: Some("/v2/a/b/tags/list?n=1&last={n}".into()),
        ..Faults::default()
    });
    server.clear_log();
    let o = minipull(&["--plain-http", "tags", &repo], None);
    assert_exit(&o, 6);
    assert!(stderr(&o).contains("100 pages"), "{}", stderr(&o));
    assert_eq!(server.requests("/tags/list").len(), 100);
    // One page over 4 MiB; more than 100,000 tags.
    for (list, says) in [
        (
            (0..40_000).map(|i| format!("{i:0>120}")).collect::<Vec<_>>(),
            "larger than",
        ),
        ((0..100_001).map(|i| format!("{i}")).collect(), "more than 100000 tags"),
    ] {
        server.set_faults(Faults {
            tag_list: list,
            ..Faults::default()
        });
        let o = minipull(&["--plain-http", "--retries", "0", "tags", &repo], None);
        assert_exit(&o, 6);
        assert!(stderr(&o).contains(says), "{}", stderr(&o));
    }
}

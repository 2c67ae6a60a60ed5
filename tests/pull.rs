//! End-to-end pulls from a real registry, checked with real consumers.

mod common;
use common::*;

fn simple_image() -> Image {
    Image::new(
        "amd64",
        vec![
            gz_layer(&[
                ("etc/hello.txt", b"hello from minipull\n"),
                ("bin/tool", b"#!/bin/sh\necho hi\n"),
            ]),
            gz_layer(&[("etc/second.txt", b"second layer\n")]),
        ],
    )
}

/// `umoci unpack --rootless` the layout's TAG and return the rootfs path.
#[test]
fn pulls_an_image_that_skopeo_umoci_and_oci_image_tool_accept() {
    let reg = Registry::start(Auth::None);
    let (digest, _) = reg.push_image("demo/app", "v1", &simple_image());
    let work = TempDir::new("simple");
    let out = work.join("layout");
    let r = format!("{}/demo/app:v1", reg.host);
    let o = minipull(&["--plain-http", &r, out.to_str().unwrap()], None);
    assert_exit(&o, 0);
    assert_eq!(stdout(&o).trim(), digest, "stdout is the manifest digest");
    assert!(stderr(&o).contains("done"), "progress on stderr: {}", stderr(&o));

    // The layout itself.
    assert_eq!(read_json(&out.join("oci-layout"))["imageLayoutVersion"], "1.0.0");
    let index = read_json(&out.join("index.json"));
    let entry = &index["manifests"][0];
    assert_eq!(entry["digest"], digest);
    assert_eq!(entry["annotations"]["org.opencontainers.image.ref.name"], "v1");
    assert_eq!(entry["annotations"]["io.containerd.image.name"], r);
    assert_eq!(assert_blobs_consistent(&out), 4, "manifest, config, two layers");
    assert!(
        !out.join(".minipull").exists(),
        "the work directory is removed after a clean pull"
    );

    // Real consumers.
    oci_validate(&out, "v1");
    let inspect = run_ok("skopeo", &["inspect", &format!("oci:{}:v1", out.display())]);
    let inspect: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(inspect["Digest"], digest);
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 2);
    let rootfs = umoci_unpack(&out, "v1", &work);
    assert_eq!(
        std::fs::read(rootfs.join("etc/hello.txt")).unwrap(),
        b"hello from minipull\n"
    );
    assert_eq!(std::fs::read(rootfs.join("etc/second.txt")).unwrap(), b"second layer\n");
}

#[test]
fn second_reference_adds_to_index_and_repull_downloads_nothing() {
    let reg = Registry::start(Auth::None);
    let (d1, _) = reg.push_image("demo/app", "v1", &simple_image());
    let other = Image::new("amd64", vec![gz_layer(&[("x", b"other image\n")])]);
    let (d2, _) = reg.push_image("demo/other", "v2", &other);
    let work = TempDir::new("twice");
    let out = work.join("layout");
    let out_s = out.to_str().unwrap();
    assert_exit(
        &minipull(
            &["--plain-http", "-q", &format!("{}/demo/app:v1", reg.host), out_s],
            None,
        ),
        0,
    );
    assert_exit(
        &minipull(
            &["--plain-http", "-q", &format!("{}/demo/other:v2", reg.host), out_s],
            None,
        ),
        0,
    );
    let index = read_json(&out.join("index.json"));
    let digests: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap())
        .collect();
    assert_eq!(digests, vec![d1.as_str(), d2.as_str()]);

    // Pulling v1 again: replaced, not duplicated, and nothing downloaded.
    let o = minipull(
        &["--plain-http", "--json", &format!("{}/demo/app:v1", reg.host), out_s],
        None,
    );
    assert_exit(&o, 0);
    let summary: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(summary["bytesDownloaded"], 0, "{summary}");
    assert!(summary["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|b| b["status"] == "present"));
    let index = read_json(&out.join("index.json"));
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
    run_ok("skopeo", &["inspect", &format!("oci:{out_s}:v2")]);
    run_ok("skopeo", &["inspect", &format!("oci:{out_s}:v1")]);

    // --verify re-hashes: a corrupted blob is detected and fetched again.
    let layer = summary["blobs"][1]["digest"].as_str().unwrap();
    let len = std::fs::metadata(blob_path(&out, layer)).unwrap().len() as usize;
    std::fs::write(blob_path(&out, layer), vec![0u8; len]).unwrap();
    let o = minipull(
        &[
            "--plain-http",
            "--json",
            "--verify",
            &format!("{}/demo/app:v1", reg.host),
            out_s,
        ],
        None,
    );
    assert_exit(&o, 0);
    let summary: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(summary["blobBytesDownloaded"], len as u64);
    assert_blobs_consistent(&out);
}

/// An OCI index with three platforms and buildx-style attestations.
fn push_multi_platform(reg: &Registry, repo: &str, tag: &str) -> serde_json::Value {
    let mut manifests = Vec::new();
    for (arch, variant, text) in [
        ("amd64", None, "amd64 build\n"),
        ("arm64", Some("v8"), "arm64 build\n"),
        ("arm", Some("v7"), "armv7 build\n"),
    ] {
        let image = Image::new(arch, vec![gz_layer(&[("arch.txt", text.as_bytes())])]);
        let (mt, bytes) = reg.image_manifest(repo, &image);
        let d = reg.push_manifest(repo, &sha256(&bytes), mt, &bytes);
        let mut platform = serde_json::json!({"os": "linux", "architecture": arch});
        if let Some(v) = variant {
            platform["variant"] = v.into();
        }
        manifests.push(serde_json::json!({"mediaType": mt, "digest": d, "size": bytes.len(), "platform": platform}));
        // An attestation manifest for it, as docker buildx pushes them.
        let att = Image {
            config_type: Some("application/vnd.oci.image.config.v1+json"),
            ..Image::new(
                "unknown",
                vec![Layer {
                    media_type: "application/vnd.in-toto+json",
                    tar: vec![],
                    blob: format!("{{\"attestation\":\"{arch}\"}}").into_bytes(),
                }],
            )
        };
        let (amt, abytes) = reg.image_manifest(repo, &att);
        let ad = reg.push_manifest(repo, &sha256(&abytes), amt, &abytes);
        manifests.push(serde_json::json!({
            "mediaType": amt, "digest": ad, "size": abytes.len(),
            "platform": {"os": "unknown", "architecture": "unknown"},
            "annotations": {"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": d},
        }));
    }
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
    let bytes = serde_json::to_vec(&index).unwrap();
    reg.push_manifest(repo, tag, OCI_INDEX, &bytes);
    index
}

#[test]
fn chooses_the_platform_from_an_oci_index_and_skips_attestations() {
    let reg = Registry::start(Auth::None);
    let index = push_multi_platform(&reg, "multi/app", "latest");
    let work = TempDir::new("multi");
    for (platform, pos, text) in [
        ("linux/arm64", 2, "arm64 build\n"),
        ("linux/arm/v7", 4, "armv7 build\n"),
        ("linux/amd64", 0, "amd64 build\n"),
    ] {
        let out = work.join(&platform.replace('/', "-"));
        let o = minipull(
            &[
                "--plain-http",
                "--json",
                "--platform",
                platform,
                &format!("{}/multi/app", reg.host),
                out.to_str().unwrap(),
            ],
            None,
        );
        assert_exit(&o, 0);
        let summary: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(summary["digest"], index["manifests"][pos]["digest"], "{platform}");
        assert!(summary["indexDigest"].is_string());
        let entry = &read_json(&out.join("index.json"))["manifests"][0];
        assert_eq!(
            entry["platform"]["architecture"],
            index["manifests"][pos]["platform"]["architecture"]
        );
        // Only this platform's content: manifest + config + one layer.
        assert_eq!(assert_blobs_consistent(&out), 3, "{platform}");
        let rootfs_work = TempDir::new("multi-unpack");
        let rootfs = umoci_unpack(&out, "latest", &rootfs_work);
        assert_eq!(std::fs::read_to_string(rootfs.join("arch.txt")).unwrap(), text);
    }

    // No match: exit 3, listing what exists but not the attestations.
    let out = work.join("none");
    let o = minipull(
        &[
            "--plain-http",
            "--platform",
            "linux/s390x",
            &format!("{}/multi/app", reg.host),
            out.to_str().unwrap(),
        ],
        None,
    );
    assert_exit(&o, 3);
    let err = stderr(&o);
    assert!(err.contains("linux/amd64, linux/arm64/v8, linux/arm/v7"), "{err}");
    assert!(!err.contains("unknown/unknown"), "{err}");
    assert!(!out.join("index.json").exists());
}

#[test]
fn all_platforms_keeps_the_whole_index() {
    let reg = Registry::start(Auth::None);
    let index = push_multi_platform(&reg, "multi/app", "v1");
    let work = TempDir::new("all");
    let out = work.join("layout");
    let o = minipull(
        &[
            "--plain-http",
            "--all-platforms",
            &format!("{}/multi/app:v1", reg.host),
            out.to_str().unwrap(),
        ],
        None,
    );
    assert_exit(&o, 0);
    let bytes = serde_json::to_vec(&index).unwrap();
    assert_eq!(stdout(&o).trim(), sha256(&bytes));
    let entry = &read_json(&out.join("index.json"))["manifests"][0];
    assert_eq!(entry["mediaType"], OCI_INDEX);
    // Every manifest the index names, with its blobs, is in the layout.
    for m in index["manifests"].as_array().unwrap() {
        let d = m["digest"].as_str().unwrap();
        let manifest = read_json(&blob_path(&out, d));
        assert!(blob_path(&out, manifest["config"]["digest"].as_str().unwrap()).is_file());
        for l in manifest["layers"].as_array().unwrap() {
            assert!(blob_path(&out, l["digest"].as_str().unwrap()).is_file());
        }
    }
    assert_blobs_consistent(&out);
    assert_index_points_at_blobs(&out);
    run_ok("skopeo", &["inspect", "--raw", &format!("oci:{}:v1", out.display())]);
}

#[test]
fn pulls_a_docker_manifest_list() {
    let reg = Registry::start(Auth::None);
    let repo = "docker/list";
    let mut manifests = Vec::new();
    let mut layers = Vec::new();
    for arch in ["amd64", "arm64", "riscv64"] {
        let t = tar(&[("which", arch.as_bytes())]);
        let layer = Layer {
            media_type: DOCKER_LAYER_GZIP,
            blob: gzip(&t),
            tar: t,
        };
        layers.push((arch, sha256(&layer.blob)));
        let image = Image {
            docker: true,
            ..Image::new(arch, vec![layer])
        };
        let (mt, bytes) = reg.image_manifest(repo, &image);
        let d = reg.push_manifest(repo, &sha256(&bytes), mt, &bytes);
        manifests.push(serde_json::json!({"mediaType": mt, "digest": d, "size": bytes.len(),
            "platform": {"os": "linux", "architecture": arch}}));
    }
    let list = serde_json::json!({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": manifests});
    reg.push_manifest(repo, "latest", DOCKER_LIST, &serde_json::to_vec(&list).unwrap());

    let work = TempDir::new("dockerlist");
    let out = work.join("layout");
    let o = minipull(
        &[
            "--plain-http",
            "--platform",
            "linux/riscv64",
            &format!("{}/{repo}", reg.host),
            out.to_str().unwrap(),
        ],
        None,
    );
    assert_exit(&o, 0);
    assert_eq!(stdout(&o).trim(), manifests[2]["digest"].as_str().unwrap());
    let entry = &read_json(&out.join("index.json"))["manifests"][0];
    assert_eq!(entry["mediaType"], DOCKER_MANIFEST);
    // umoci cannot unpack Docker-typed layers: read the layer ourselves.
    let layer = std::fs::read(blob_path(&out, &layers[2].1)).unwrap();
    let t = gunzip(&layer);
    assert!(tar_list(&t).iter().any(|p| p.ends_with("which")));
    assert!(
        !blob_path(&out, &layers[0].1).exists(),
        "other platforms are not pulled"
    );
    // skopeo 1.9.3's oci: transport skips index entries with Docker media
    // types, so check the layout's structure ourselves.
    assert_eq!(assert_blobs_consistent(&out), 3);
    assert_index_points_at_blobs(&out);
}

#[test]
fn pulls_zstd_and_empty_layers() {
    let reg = Registry::start(Auth::None);
    let t = tar(&[("z/data.txt", b"compressed with zstd\n")]);
    let zlayer = Layer {
        media_type: OCI_LAYER_ZSTD,
        blob: zstd(&t),
        tar: t,
    };
    let empty_tar = tar(&[]);
    let empty = Layer {
        media_type: OCI_LAYER_GZIP,
        blob: gzip(&empty_tar),
        tar: empty_tar,
    };
    let plain_t = tar(&[("plain.txt", b"uncompressed\n")]);
    let plain = Layer {
        media_type: OCI_LAYER_TAR,
        blob: plain_t.clone(),
        tar: plain_t,
    };
    let zdigest = sha256(&zlayer.blob);
    reg.push_image("z/img", "v1", &Image::new("amd64", vec![zlayer, empty, plain]));
    let work = TempDir::new("zstd");
    let out = work.join("layout");
    let o = minipull(
        &["--plain-http", &format!("{}/z/img:v1", reg.host), out.to_str().unwrap()],
        None,
    );
    assert_exit(&o, 0);
    assert_eq!(assert_blobs_consistent(&out), 5);
    let t = unzstd(&std::fs::read(blob_path(&out, &zdigest)).unwrap());
    assert!(tar_list(&t).iter().any(|p| p.ends_with("z/data.txt")));
    run_ok("skopeo", &["inspect", &format!("oci:{}:v1", out.display())]);
}

#[test]
fn pulls_an_oci_artifact() {
    let reg = Registry::start(Auth::None);
    let payload = b"sbom or signature or helm chart".to_vec();
    let artifact = Image {
        config: Some(b"{}".to_vec()),
        config_type: Some("application/vnd.oci.empty.v1+json"),
        artifact_type: Some("application/vnd.example.thing.v1"),
        ..Image::new(
            "none",
            vec![Layer {
                media_type: "application/vnd.example.thing.layer.v1+blob",
                tar: vec![],
                blob: payload.clone(),
            }],
        )
    };
    let (d, _) = reg.push_image("art/thing", "v1", &artifact);
    let work = TempDir::new("artifact");
    let out = work.join("layout");
    let o = minipull(
        &[
            "--plain-http",
            &format!("{}/art/thing:v1", reg.host),
            out.to_str().unwrap(),
        ],
        None,
    );
    assert_exit(&o, 0);
    assert_eq!(stdout(&o).trim(), d);
    assert_eq!(std::fs::read(blob_path(&out, &sha256(&payload))).unwrap(), payload);
    assert_index_points_at_blobs(&out);
}

#[test]
fn item_14_a_pull_by_digest_is_named_verified_and_addressable() {
    let reg = Registry::start(Auth::None);
    let (d, _) = reg.push_image("demo/app", "v1", &simple_image());
    let work = TempDir::new("bydigest");
    let out = work.join("layout");
    let o = minipull(
        &[
            "--plain-http",
            &format!("{}/demo/app@{d}", reg.host),
            out.to_str().unwrap(),
        ],
        None,
    );
    assert_exit(&o, 0);
    let entry = &read_json(&out.join("index.json"))["manifests"][0];
    assert_eq!(entry["digest"], d);
    // Item 14 of the trust issue: a pull by digest is named too, so it can be
    // addressed once the layout holds more than one image.
    let name = d.replacen(':', "_", 1);
    assert_eq!(entry["annotations"]["org.opencontainers.image.ref.name"], name.as_str());
    let other = Image::new("amd64", vec![gz_layer(&[("etc/other.txt", b"other\n")])]);
    let (d2, _) = reg.push_image("demo/other", "v2", &other);
    let o = minipull(
        &[
            "--plain-http",
            &format!("{}/demo/other:v2", reg.host),
            out.to_str().unwrap(),
        ],
        None,
    );
    assert_exit(&o, 0);
    assert_ne!(d, d2);
    let rootfs = umoci_unpack(&out, &name, &work);
    assert_eq!(
        std::fs::read(rootfs.join("etc/hello.txt")).unwrap(),
        b"hello from minipull\n"
    );
    assert!(!rootfs.join("etc/other.txt").exists());
    run_ok("skopeo", &["inspect", &format!("oci:{}:{name}", out.display())]);

    // A digest the registry does not have: not found.
    let missing = format!("sha256:{}", "ab".repeat(32));
    let o = minipull(
        &[
            "--plain-http",
            &format!("{}/demo/app:v1@{missing}", reg.host),
            work.join("x").to_str().unwrap(),
        ],
        None,
    );
    assert_exit(&o, 3);
}

/// Four pulls of four images into one OUTDIR at once, with `gc`, `ls` and
/// an unpack running beside them: each waits its turn for the lock (which the
/// holder removes, with the work directory, as it finishes) and every one
/// ends with exit 0 and all four images complete.
#[test]
fn concurrent_pulls_and_gcs_into_one_outdir_all_succeed() {
    let reg = Registry::start(Auth::None);
    let work = TempDir::new("concurrent");
    let out = work.join("layout");
    let tags = ["t1", "t2", "t3", "t4"];
    for (i, tag) in tags.iter().enumerate() {
        let layer = gz_layer(&[("data", &noise(2 << 20, i as u64 + 7))]);
        reg.push_image("demo/many", tag, &Image::new("amd64", vec![layer]));
    }
    let refs: Vec<String> = tags.iter().map(|t| format!("{}/demo/many:{t}", reg.host)).collect();
    // The first image is there (gc, ls and unpack open only existing layouts).
    assert_exit(&minipull(&["--plain-http", &refs[0], out.to_str().unwrap()], None), 0);
    let o = out.to_str().unwrap();
    let (t1, root) = (format!("{o}:t1"), work.join("root"));
    let mut runs: Vec<Vec<&str>> = refs.iter().map(|r| vec!["--plain-http", r.as_str(), o]).collect();
    runs.insert(2, vec!["gc", o]);
    runs.push(vec!["ls", o]);
    runs.push(vec!["gc", o]);
    if cfg!(feature = "unpack") {
        runs.insert(1, vec!["unpack", &t1, root.to_str().unwrap()]);
    }
    let children: Vec<_> = runs
        .iter()
        .map(|args| {
            std::process::Command::new(minipull_bin())
                .args(args)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (args, child) in runs.iter().zip(children) {
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
    }
    let index = read_json(&out.join("index.json"));
    assert_eq!(index["manifests"].as_array().unwrap().len(), 4, "{index}");
    assert_index_points_at_blobs(&out);
    assert_blobs_consistent(&out);
    for r in &refs {
        let o = minipull(&["--plain-http", r, o], None);
        assert_exit(&o, 0);
        assert!(stderr(&o).contains("nothing to download"), "{r}: {}", stderr(&o));
    }
    assert!(!out.join(".minipull").exists(), "tidied at the end");
}

//! Every command's `--json` output against the schema in
//! docs/json-schema.json (checked by the small validator below: the JSON
//! Schema keywords that file uses, nothing more), and that schema against
//! the tables of docs/json.md, so neither can drift. A key a command
//! prints that the schema does not list fails with its path and the place
//! to document it.

mod common;
use common::schema::*;
use common::*;
use serde_json::Value;
use std::path::Path;

fn digests(list: &Value) -> Vec<String> {
    let mut d: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["digest"].as_str().unwrap().to_string())
        .collect();
    d.sort();
    d
}

fn keys(v: &Value) -> Vec<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

/// A two-platform index (amd64, arm64), each with a config and a 256 KiB
/// incompressible layer. Returns (index digest, amd64 manifest digest, its layer size).
fn push_fixture(reg: &Registry, repo: &str, tag: &str) -> (String, String, u64) {
    let mut manifests = Vec::new();
    let mut chosen = (String::new(), 0);
    for (arch, seed) in [("amd64", 1), ("arm64", 2)] {
        let image = Image::new(arch, vec![gz_layer(&[("big.bin", &noise(256 * 1024, seed))])]);
        let layer = image.layers[0].blob.len() as u64;
        let (mt, bytes) = reg.image_manifest(repo, &image);
        let d = reg.push_manifest(repo, &sha256(&bytes), mt, &bytes);
        if arch == "amd64" {
            chosen = (d.clone(), layer);
        }
        manifests.push(serde_json::json!({
            "mediaType": mt, "digest": d, "size": bytes.len(),
            "platform": {"os": "linux", "architecture": arch},
        }));
    }
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
    let bytes = serde_json::to_vec(&index).unwrap();
    let d = reg.push_manifest(repo, tag, OCI_INDEX, &bytes);
    (d, chosen.0, chosen.1)
}

/// The status of `digest` in a list of content objects.
fn status_of<'a>(list: &'a Value, digest: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|b| b["digest"] == digest)
        .unwrap_or_else(|| panic!("{digest} is not listed in {list:#}"))
}

#[test]
fn every_command_prints_what_the_schema_says() {
    let reg = Registry::start(Auth::None);
    let (index, manifest, layer) = push_fixture(&reg, "json/app", "1.0");
    // inspect and tags, before anything is pulled.
    let r0 = format!("{}/json/app:1.0", reg.host);
    conforms(&minipull(&["--plain-http", "inspect", "--json", &r0], None), "inspect");
    let one = conforms(
        &minipull(
            &["--plain-http", "inspect", "--json", "--platform", "linux/amd64", &r0],
            None,
        ),
        "inspect",
    );
    assert!(
        one["config"]["os"].is_string() && one["index"]["platforms"].is_array(),
        "{one}"
    );
    let tags = conforms(
        &minipull(
            &["--plain-http", "tags", "--json", &format!("{}/json/app", reg.host)],
            None,
        ),
        "tags",
    );
    assert_eq!(tags["tags"], serde_json::json!(["1.0"]));
    let other = Image::new("amd64", vec![gz_layer(&[("other.txt", b"other\n")])]);
    reg.push_image("json/other", "2.0", &other);
    let work = TempDir::new("json");
    let out = work.join("out");
    let o_s = out.to_str().unwrap();
    let r = format!("{}/json/app:1.0", reg.host);
    let pull = |extra: &[&str], r: &str| {
        let mut a = vec!["--plain-http", "--json", "--platform", "linux/amd64"];
        a.extend(extra);
        a.extend([r, o_s]);
        minipull(&a, None)
    };

    // First pull: the index it read and the manifest in `manifests`, the
    // config and layer in `blobs`, every byte counted.
    let o = pull(&[], &r);
    assert_exit(&o, 0);
    let first = conforms(&o, "pull");
    assert_eq!(
        (first["digest"].as_str(), first["indexDigest"].as_str()),
        (Some(manifest.as_str()), Some(index.as_str()))
    );
    assert_eq!(status_of(&first["manifests"], &index)["status"], "fetched", "{first:#}");
    assert_eq!(
        status_of(&first["manifests"], &manifest)["status"],
        "downloaded",
        "{first:#}"
    );
    assert_eq!(
        first["blobs"].as_array().unwrap().len(),
        2,
        "config and layer: {first:#}"
    );
    let total = first["bytesDownloaded"].as_u64().unwrap();
    assert!(total >= layer, "bytesDownloaded {total} < the layer's {layer} bytes");
    assert_eq!(
        total,
        first["blobBytesDownloaded"].as_u64().unwrap() + first["manifestBytesDownloaded"].as_u64().unwrap()
    );
    let listed: u64 = first["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .chain(first["manifests"].as_array().unwrap())
        .map(|b| b["downloaded"].as_u64().unwrap())
        .sum();
    assert_eq!(listed, total, "the listed downloads add up to bytesDownloaded");

    // Re-pull: one HEAD, the same shape, the manifest in the same place.
    let o = pull(&[], &r);
    assert_exit(&o, 0);
    let again = conforms(&o, "pull");
    assert_eq!(keys(&again), keys(&first), "the same keys on a re-pull");
    assert_eq!(again["bytesDownloaded"], 0);
    assert_eq!(
        status_of(&again["manifests"], &manifest)["status"],
        "present",
        "{again:#}"
    );
    assert_eq!(
        digests(&again["blobs"]),
        digests(&first["blobs"]),
        "the same blobs listed"
    );
    assert_eq!(again["indexDigest"], first["indexDigest"]);

    // check: up to date, and a reference not pulled yet (exit 10).
    let o = minipull(&["check", "--plain-http", "--json", &r, o_s], None);
    assert_exit(&o, 0);
    let c = conforms(&o, "check");
    assert_eq!(
        (c["upToDate"].as_bool(), c["local"].as_str()),
        (Some(true), Some(index.as_str()))
    );
    let r2 = format!("{}/json/other:2.0", reg.host);
    let o = minipull(&["check", "--plain-http", "--json", &r2, o_s], None);
    assert_exit(&o, 10);
    assert!(conforms(&o, "check")["local"].is_null());

    // A second image, then ls lists both.
    assert_exit(&pull(&[], &r2), 0);
    let o = minipull(&["ls", "--json", o_s], None);
    assert_exit(&o, 0);
    let ls = conforms(&o, "ls");
    assert_eq!(ls.as_array().unwrap().len(), 2, "{ls:#}");
    assert!(ls
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["status"] == "complete" && e["state"] == e["status"]));

    // rm prints what it removed; gc what it freed, as a list and a count.
    let o = minipull(&["rm", "--json", &format!("{o_s}:2.0")], None);
    assert_exit(&o, 0);
    let rm = conforms(&o, "rm");
    assert_eq!(rm["removed"][0]["name"], "2.0", "{rm:#}");
    let o = minipull(&["gc", "--json", o_s], None);
    assert_exit(&o, 0);
    let gc = conforms(&o, "gc");
    assert_eq!(
        gc["blobsRemoved"].as_u64(),
        Some(3),
        "manifest, config, layer of 2.0: {gc:#}"
    );
    assert_eq!(gc["blobs"].as_array().unwrap().len(), 3);
    let sizes: u64 = gc["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["size"].as_u64().unwrap())
        .sum();
    assert_eq!(gc["bytes"].as_u64(), Some(sizes));

    // Warnings: the image is pulled, the upkeep after it failed (exit 9);
    // the fault hook is honoured only by debug builds, not by MINIPULL_BIN's.
    if std::env::var_os("MINIPULL_BIN").is_none() {
        let o = minipull_env(
            &["--plain-http", "--json", "--prune", &r2, o_s],
            None,
            &[("MINIPULL_TEST_FAULT", "prune")],
        );
        assert_exit(&o, 9);
        let w = conforms(&o, "pull");
        assert_eq!(w["warnings"].as_array().unwrap().len(), 1, "{w:#}");
    } else {
        eprintln!("skipped the exit-9 case: MINIPULL_BIN is set, and only debug builds honour the test hooks");
    }

    // Errors: as JSON on stdout, whatever failed, the exit code inside.
    let missing = work.join("missing");
    let (nope, absent) = (format!("{o_s}:nope"), format!("{}/json/app:nope", reg.host));
    let failures: Vec<(Vec<&str>, i32)> = vec![
        (vec!["ls", "--json", missing.to_str().unwrap()], 3),
        (vec!["--json", "--bogus", "a", "o"], 2),
        (vec!["rm", "--json", &nope], 3),
        (vec!["gc", "--json", missing.to_str().unwrap()], 3),
        (vec!["--json", "--plain-http", &absent, o_s], 3),
        (
            vec![
                "check",
                "--json",
                "--plain-http",
                "--retry-for",
                "0",
                "127.0.0.1:1/a:b",
                o_s,
            ],
            5,
        ),
    ];
    for (args, code) in failures {
        let o = minipull(&args, None);
        assert_exit(&o, code);
        let e = conforms(&o, "error");
        assert_eq!(e["error"]["exitCode"], code, "{args:?}");
        assert!(!e["error"]["message"].as_str().unwrap().is_empty());
        assert!(
            stderr(&o).contains("minipull: error:"),
            "stderr keeps the line: {args:?}"
        );
    }
    // Without --json an error prints nothing on stdout.
    let o = minipull(&["ls", missing.to_str().unwrap()], None);
    assert_exit(&o, 3);
    assert!(o.stdout.is_empty());
}

#[cfg(feature = "unpack")]
#[test]
fn unpacking_commands_print_an_unpack_object_and_count_the_layers_they_fetched() {
    let reg = Registry::start(Auth::None);
    let (_, manifest, layer) = push_fixture(&reg, "json/app", "1.0");
    let work = TempDir::new("json-unpack");
    let (out, root) = (work.join("out"), work.join("root"));
    let r = format!("{}/json/app:1.0", reg.host);
    let run = |extra: &[&str], out: &Path| {
        let mut a = vec!["--plain-http", "--json", "--platform", "linux/amd64"];
        a.extend(extra);
        a.extend([r.as_str(), out.to_str().unwrap()]);
        minipull(&a, None)
    };
    let root_s = root.to_str().unwrap();

    // --discard-layers: the layer fetched during the unpack counts.
    let o = run(&["--unpack", root_s, "--discard-layers"], &out);
    assert_exit(&o, 0);
    let s = conforms(&o, "pull");
    let u = &s["unpack"];
    assert_eq!(
        (u["installed"].as_bool(), u["alreadyInstalled"].as_bool()),
        (Some(true), Some(false)),
        "{s:#}"
    );
    assert_eq!(u["bytesDownloaded"].as_u64(), Some(layer), "{s:#}");
    assert!(s["bytesDownloaded"].as_u64().unwrap() >= layer, "{s:#}");
    let layers: Vec<&Value> = s["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["mediaType"] == OCI_LAYER_GZIP)
        .collect();
    assert_eq!(layers.len(), 1, "{s:#}");
    assert_eq!(
        (layers[0]["status"].as_str(), layers[0]["downloaded"].as_u64()),
        (Some("discarded"), Some(layer))
    );
    assert!(layers[0]["source"].is_string(), "{s:#}");
    assert!(root.join("big.bin").is_file());

    // Again: already installed, nothing unpacked, the same keys.
    let o = run(&["--unpack", root_s, "--force", "--discard-layers"], &out);
    assert_exit(&o, 0);
    let again = conforms(&o, "pull");
    assert_eq!(keys(&again), keys(&s));
    assert_eq!(again["unpack"]["alreadyInstalled"], true, "{again:#}");
    assert_eq!(digests(&again["blobs"]), digests(&s["blobs"]));

    // `unpack` of an entry whose layers were discarded: an error, as JSON.
    let root2 = work.join("root2");
    let o = minipull(
        &[
            "unpack",
            "--json",
            &format!("{}:1.0", out.display()),
            root2.to_str().unwrap(),
        ],
        None,
    );
    assert_exit(&o, 3);
    conforms(&o, "error");

    // `unpack` of a complete layout.
    let full = work.join("full");
    assert_exit(&run(&[], &full), 0);
    let o = minipull(
        &["unpack", "--json", full.to_str().unwrap(), root2.to_str().unwrap()],
        None,
    );
    assert_exit(&o, 0);
    let u = conforms(&o, "unpack");
    assert_eq!(
        (u["digest"].as_str(), u["unpack"]["layers"].as_u64()),
        (Some(manifest.as_str()), Some(1))
    );
    assert_eq!(u["unpack"]["bytesDownloaded"], 0);
    assert!(u["unpack"]["entries"].as_u64().unwrap() >= 1);
}

/// docs/json.md has a table for each definition of the schema, with a row
/// for each of its keys, and no row for a key the schema does not have.
#[test]
fn the_docs_page_and_the_schema_list_the_same_keys() {
    let root = schema();
    let page = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/json.md")).unwrap();
    let defs = root["$defs"].as_object().unwrap();
    for (name, def) in defs {
        let Some(props) = def["properties"].as_object() else {
            continue;
        };
        // The section: from the heading naming `name` to the next heading.
        let head = page
            .lines()
            .position(|l| l.starts_with('#') && l.contains(&format!("(`{name}`)")))
            .unwrap_or_else(|| panic!("docs/json.md has no heading ending in (`{name}`)"));
        let section: Vec<&str> = page
            .lines()
            .skip(head + 1)
            .take_while(|l| !l.starts_with('#'))
            .collect();
        let rows: Vec<String> = section
            .iter()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split_once('`').map(|(k, _)| k.to_string()))
            .collect();
        for k in props.keys() {
            assert!(rows.contains(k), "docs/json.md: the `{name}` table has no row for {k}");
        }
        for k in &rows {
            assert!(
                props.contains_key(k),
                "docs/json.md: the `{name}` table documents {k}, which $defs.{name} lacks"
            );
        }
    }
}

//! Every command's `--json` output against the schema in
//! docs/json-schema.json (checked by the small validator below: the JSON
//! Schema keywords that file uses, nothing more), and that schema against
//! the tables of docs/json.md, so neither can drift. A key a command
//! prints that the schema does not list fails with its path and the place
//! to document it.

mod common;
use common::*;
use serde_json::Value;
use std::path::Path;

fn schema() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/json-schema.json");
    serde_json::from_slice(&std::fs::read(&path).unwrap()).expect("docs/json-schema.json is JSON")
}

/// The schema keywords docs/json-schema.json may use; anything else is
/// refused, so the validator never silently ignores a rule.
const KEYWORDS: [&str; 10] = [
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "enum",
    "minimum",
    "$ref",
    "description",
    "title",
];

/// Check `v` against `node`; push one line per problem. `def` is the
/// definition the node belongs to (for the "document it here" message).
fn check(root: &Value, node: &Value, def: &str, v: &Value, at: &str, errors: &mut Vec<String>) {
    let obj = node.as_object().expect("a schema node is an object");
    for k in obj.keys() {
        assert!(
            KEYWORDS.contains(&k.as_str()),
            "docs/json-schema.json: keyword {k} is not one the test knows"
        );
    }
    if let Some(r) = obj.get("$ref").and_then(Value::as_str) {
        let name = r.strip_prefix("#/$defs/").expect("refs are #/$defs/NAME");
        let target = &root["$defs"][name];
        assert!(target.is_object(), "docs/json-schema.json: {r} names no definition");
        return check(root, target, name, v, at, errors);
    }
    if let Some(t) = obj.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().map(|t| t.as_str().unwrap()).collect(),
            _ => panic!("type is a string or a list"),
        };
        let is = |t: &str| match t {
            "string" => v.is_string(),
            "integer" => v.is_u64() || v.is_i64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            "array" => v.is_array(),
            "object" => v.is_object(),
            _ => panic!("unknown type {t}"),
        };
        if !types.iter().any(|t| is(t)) {
            errors.push(format!("{at}: {v} is not of type {types:?} (see $defs.{def})"));
            return;
        }
    }
    if let Some(e) = obj.get("enum").and_then(Value::as_array) {
        if !e.contains(v) {
            errors.push(format!("{at}: {v} is not one of {e:?} (see $defs.{def})"));
        }
    }
    if let (Some(min), Some(n)) = (obj.get("minimum").and_then(Value::as_i64), v.as_i64()) {
        if n < min {
            errors.push(format!("{at}: {n} is below {min}"));
        }
    }
    if let (Some(items), Some(a)) = (obj.get("items"), v.as_array()) {
        for (i, x) in a.iter().enumerate() {
            check(root, items, def, x, &format!("{at}[{i}]"), errors);
        }
    }
    if let Some(map) = v.as_object() {
        let props = obj.get("properties").and_then(Value::as_object);
        if let Some(props) = props {
            assert_eq!(
                obj.get("additionalProperties"),
                Some(&Value::Bool(false)),
                "$defs.{def} lists all its keys"
            );
            for (k, x) in map {
                match props.get(k) {
                    Some(p) => check(root, p, def, x, &format!("{at}.{k}"), errors),
                    None => errors.push(format!(
                        "{at}.{k}: key {k:?} is not documented: add it to docs/json-schema.json \
                         ($defs.{def}.properties) and to the `{def}` table in docs/json.md"
                    )),
                }
            }
        }
        for r in obj.get("required").and_then(Value::as_array).into_iter().flatten() {
            let r = r.as_str().unwrap();
            if !map.contains_key(r) {
                errors.push(format!("{at}: required key {r:?} is missing (see $defs.{def})"));
            }
        }
    }
}

/// Parse a command's stdout as one JSON document and check it against
/// `$defs.<def>`; returns it.
fn conforms(o: &std::process::Output, def: &str) -> Value {
    let text = stdout(o);
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "`{def}` output is not one JSON document ({e}):\n{text}\nstderr:\n{}",
            stderr(o)
        )
    });
    let root = schema();
    let node = &root["$defs"][def];
    assert!(node.is_object(), "docs/json-schema.json has no $defs.{def}");
    let mut errors = Vec::new();
    check(&root, node, def, &v, "$", &mut errors);
    assert!(
        errors.is_empty(),
        "`{def}` output does not match the schema:\n{}\n{v:#}",
        errors.join("\n")
    );
    // Nothing but the document, and only printable characters in it.
    assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "{text:?}");
    v
}

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

//! Names in a layout: `REF OUTDIR:NAME` on pull, the line when an entry of
//! another repository or shape is replaced, `rm` by name, digest or full
//! reference, `ls` with the full reference (and a header on a terminal);
//! `--version`; `MINIPULL_PLAIN_HTTP`. The real binary, the real registry.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

/// The index.json entries of `out`: (ref name, full reference, digest, media type).
fn entries(out: &Path) -> Vec<(String, String, String, String)> {
    let index = read_json(&out.join("index.json"));
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["annotations"]["io.minipull.signature.of"].is_null())
        .map(|e| {
            let a = |k: &str| e["annotations"][k].as_str().unwrap_or_default().to_string();
            (
                a("org.opencontainers.image.ref.name"),
                a("io.containerd.image.name"),
                e["digest"].as_str().unwrap().to_string(),
                e["mediaType"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Lines of `text` that say an entry was replaced.
fn replaced_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.contains("; it now names "))
        .map(str::to_string)
        .collect()
}

/// A two-platform index at `repo:tag` (amd64, arm64).
fn push_two_platforms(reg: &Registry, repo: &str, tag: &str) {
    let mut manifests = Vec::new();
    for arch in ["amd64", "arm64"] {
        let image = Image::new(arch, vec![gz_layer(&[("arch.txt", arch.as_bytes())])]);
        let (mt, bytes) = reg.image_manifest(repo, &image);
        let d = reg.push_manifest(repo, &sha256(&bytes), mt, &bytes);
        manifests.push(serde_json::json!({"mediaType": mt, "digest": d, "size": bytes.len(),
            "platform": {"os": "linux", "architecture": arch}}));
    }
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
    reg.push_manifest(repo, tag, OCI_INDEX, &serde_json::to_vec(&index).unwrap());
}

#[test]
fn pull_names_the_entry_says_what_it_replaces_and_rm_ls_use_full_references() {
    let reg = Registry::start(Auth::None);
    let (app_digest, _) = reg.push_image(
        "demo/app",
        "1.0",
        &Image::new("amd64", vec![gz_layer(&[("f", b"app")])]),
    );
    reg.push_image(
        "demo/other",
        "1.0",
        &Image::new("amd64", vec![gz_layer(&[("f", b"other")])]),
    );
    push_two_platforms(&reg, "demo/multi", "1.0");
    let work = TempDir::new("names");
    let o1 = work.join("o1");
    let o1s = o1.to_str().unwrap();
    let app = format!("{}/demo/app:1.0", reg.host);
    let other = format!("{}/demo/other:1.0", reg.host);
    let multi = format!("{}/demo/multi:1.0", reg.host);
    let pull = |r: &str, out: &str, extra: &[&str]| {
        let mut a = vec!["--plain-http", "--platform", "linux/amd64"];
        a.extend_from_slice(extra);
        a.extend([r, out]);
        minipull(&a, None)
    };

    // OUTDIR:NAME names the entry; no directory `o1:stable` appears.
    let o = pull(&app, &format!("{o1s}:stable"), &[]);
    assert_exit(&o, 0);
    assert!(!work.join("o1:stable").exists());
    let mut found: Vec<String> = std::fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    assert_eq!(found, vec!["o1".to_string()]);
    assert_eq!(
        entries(&o1),
        vec![("stable".into(), app.clone(), app_digest.clone(), OCI_MANIFEST.into())]
    );
    // The same pull again finds it there, under its name, and says nothing of a replacement.
    let o = pull(&app, &format!("{o1s}:stable"), &[]);
    assert_exit(&o, 0);
    assert!(stderr(&o).contains("nothing to download"), "{}", stderr(&o));
    assert!(replaced_lines(&stderr(&o)).is_empty(), "{}", stderr(&o));
    // Under its tag it is a second entry, fetched for that name (a HEAD, no blob).
    let o = pull(&app, o1s, &[]);
    assert_exit(&o, 0);
    assert!(replaced_lines(&stderr(&o)).is_empty(), "{}", stderr(&o));
    assert_eq!(entries(&o1).len(), 2);

    // Another repository under the same name: one line says so.
    let o = pull(&other, o1s, &[]);
    assert_exit(&o, 0);
    let lines = replaced_lines(&stderr(&o));
    assert_eq!(lines.len(), 1, "{}", stderr(&o));
    assert!(lines[0].contains(&app) && lines[0].contains(&other), "{}", lines[0]);
    assert_eq!(entries(&o1).len(), 2);
    assert!(entries(&o1).iter().any(|e| e.0 == "1.0" && e.1 == other));

    // An index of every platform replaced by one platform, and the reverse.
    assert_exit(&pull(&multi, &format!("{o1s}:multi"), &["--all-platforms"]), 0);
    assert!(entries(&o1).iter().any(|e| e.0 == "multi" && e.3 == OCI_INDEX));
    let o = pull(&multi, &format!("{o1s}:multi"), &[]);
    assert_exit(&o, 0);
    let lines = replaced_lines(&stderr(&o));
    assert_eq!(lines.len(), 1, "{}", stderr(&o));
    assert!(lines[0].contains("(every platform); it now names") && lines[0].ends_with("(one platform)"));
    let o = pull(&multi, &format!("{o1s}:multi"), &["--all-platforms"]);
    assert_exit(&o, 0);
    let lines = replaced_lines(&stderr(&o));
    assert_eq!(lines.len(), 1, "{}", stderr(&o));
    assert!(lines[0].contains("(one platform); it now names") && lines[0].ends_with("(every platform)"));

    // ls: the full reference, no header off a terminal.
    let o = minipull(&["ls", o1s], None);
    assert_exit(&o, 0);
    let text = stdout(&o);
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with(&format!("stable\t{app}\t{app_digest}\t"))),
        "{text}"
    );
    assert!(!text.contains("NAME"), "{text}");
    let o = minipull(&["ls", "--json", o1s], None);
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["reference"] == other.as_str()));
    // On a terminal, a header line first.
    let tty = Command::new("script")
        .args(["-qec", &format!("{} ls {o1s}", minipull_bin().display()), "/dev/null"])
        .output()
        .unwrap();
    let tty_out = String::from_utf8_lossy(&tty.stdout).replace('\r', "");
    assert!(tty_out.starts_with("NAME\tREFERENCE\tDIGEST\t"), "{tty_out}");
    assert_eq!(tty_out.lines().count(), 4, "{tty_out}");

    // rm: a miss lists the names there are.
    let o = minipull(&["rm", &format!("{o1s}:nope")], None);
    assert_exit(&o, 3);
    assert!(
        stderr(&o).contains("stable (") && stderr(&o).contains(&format!("1.0 ({other})")),
        "{}",
        stderr(&o)
    );
    // By digest.
    let o = minipull(&["rm", &format!("{o1s}:{app_digest}")], None);
    assert_exit(&o, 0);
    assert!(entries(&o1).iter().all(|e| e.0 != "stable"));
    assert_eq!(entries(&o1).len(), 2);
    // By full reference (the written-out form, and the short form it stands for).
    assert_exit(&minipull(&["rm", &format!("{o1s}:{other}")], None), 0);
    assert!(entries(&o1).iter().all(|e| e.1 != other));
    assert_exit(&minipull(&["rm", &format!("{o1s}:{multi}")], None), 0);
    assert!(entries(&o1).is_empty());

    // A name that is not one is refused, and nothing is created.
    for bad in [
        format!("{o1s}:-x"),
        format!("{}:sha256-ab.sig", work.join("o2").display()),
        format!("{o1s}:"),
    ] {
        let o = pull(&app, &bad, &[]);
        assert_exit(&o, 2);
        assert!(stderr(&o).contains("is not OUTDIR:NAME"), "{}", stderr(&o));
    }
    assert!(!work.join("o2").exists());
}

#[test]
fn version_tells_commit_target_features_build_time_and_rustc() {
    let o = minipull(&["--version"], None);
    assert_exit(&o, 0);
    let text = stdout(&o);
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}:")))
            .unwrap_or_else(|| panic!("no {k}: in {text}"))
            .trim()
            .to_string()
    };
    assert!(
        text.starts_with(&format!("minipull {}\n", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    // The commit the binary was built from (when this tree is a git checkout).
    if let Ok(g) = Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).output() {
        if g.status.success() && std::env::var_os("MINIPULL_BIN").is_none() {
            assert_eq!(field("commit"), String::from_utf8_lossy(&g.stdout).trim(), "{text}");
        }
    }
    assert!(field("target").contains("-linux-"), "{text}");
    assert_eq!(field("features") == "unpack", cfg!(feature = "unpack"), "{text}");
    assert!(field("rustc").starts_with("rustc 1."), "{text}");
    // The build time is the TLS clock floor: SOURCE_DATE_EPOCH as the build saw it.
    match option_env!("SOURCE_DATE_EPOCH") {
        Some(t) if std::env::var_os("MINIPULL_BIN").is_none() => {
            assert!(
                field("built").contains(&format!("SOURCE_DATE_EPOCH {}", t.trim())),
                "{text}"
            )
        }
        _ => assert!(!field("built").is_empty()),
    }
    let v = minipull(&["version"], None);
    assert_eq!(stdout(&v), text);
}

#[test]
fn minipull_plain_http_names_the_hosts_that_get_plain_http_and_credentials() {
    let (user, password) = ("lab", "s3cret-lab");
    let locked = Registry::start(Auth::Htpasswd { user, password });
    let open = Registry::start(Auth::None);
    let image = Image::new("amd64", vec![gz_layer(&[("f", b"lab")])]);
    locked.push_image("lab/app", "1", &image);
    open.push_image("lab/app", "1", &image);
    let work = TempDir::new("plain-env");
    let creds = [("MINIPULL_USERNAME", user), ("MINIPULL_PASSWORD", password)];
    let run = |reg: &Registry, out: &str, plain: &str| {
        let mut env = vec![("MINIPULL_PLAIN_HTTP", plain)];
        env.extend(creds);
        minipull_env(
            &[
                "--retries",
                "0",
                "--retry-for",
                "0",
                "-q",
                &format!("{}/lab/app:1", reg.host),
                &work.join(out).to_string_lossy(),
            ],
            None,
            &env,
        )
    };
    // Named: plain HTTP, and the credentials go over it (the registry wants them).
    let both = format!("example.invalid:5000, {}", locked.host);
    let o = run(&locked, "a", &both);
    assert_exit(&o, 0);
    assert_eq!(entries(&work.join("a")).len(), 1);
    // Not named: HTTPS, which this plain registry cannot answer.
    let o = run(&open, "b", &both);
    assert_ne!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("plain HTTP"), "{}", stderr(&o));
    assert!(!work.join("b").join("index.json").exists());
    // The variable names hosts, nothing else.
    let o = run(&open, "c", "http://127.0.0.1:5000");
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("MINIPULL_PLAIN_HTTP"), "{}", stderr(&o));
}

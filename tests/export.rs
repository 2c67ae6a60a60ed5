//! `minipull extract` (an ORAS-style artifact's layers as files) and
//! `minipull export` (an OCI archive), against the real registry, checked
//! by the real consumers: skopeo, a private containerd's `ctr images
//! import`, and `podman load`.

mod common;
use common::*;
use std::path::Path;
use std::process::{Command, Stdio};

#[cfg(feature = "unpack")]
const TITLE: &str = "org.opencontainers.image.title";
#[cfg(feature = "unpack")]
const EMPTY: &str = "application/vnd.oci.empty.v1+json";

#[cfg(feature = "unpack")]
/// Push an artifact whose layers are (media type, bytes, annotations);
/// pull it into `out` under its tag.
fn push_artifact(reg: &Registry, repo: &str, tag: &str, layers: &[(&str, Vec<u8>, serde_json::Value)], out: &Path) {
    let config = reg.blob_desc(repo, EMPTY, b"{}");
    let layers: Vec<serde_json::Value> = layers
        .iter()
        .map(|(mt, bytes, ann)| {
            let mut d = reg.blob_desc(repo, mt, bytes);
            d["annotations"] = ann.clone();
            d
        })
        .collect();
    let m = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.firmware.v1",
        "config": config, "layers": layers,
    });
    reg.push_manifest(repo, tag, OCI_MANIFEST, &serde_json::to_vec(&m).unwrap());
    let o = minipull(
        &[
            "-q",
            "--plain-http",
            &format!("{}/{repo}:{tag}", reg.host),
            out.to_str().unwrap(),
        ],
        None,
    );
    assert_exit(&o, 0);
}

#[cfg(feature = "unpack")]
fn titled(t: &str) -> serde_json::Value {
    serde_json::json!({ TITLE: t })
}

#[cfg(feature = "unpack")]
#[test]
fn extract_writes_an_artifacts_files_verified_at_once_and_refuses_hostile_titles() {
    use std::os::unix::fs::PermissionsExt;
    let reg = Registry::start(Auth::None);
    let work = TempDir::new("extract");
    let out = work.join("layout");
    let kernel = noise(300_000, 1);
    let dtb = b"dtb bytes".to_vec();
    let fw = gzip(&tar(&[("fw/a.bin", b"firmware a"), ("fw/sub/b.bin", b"firmware b")]));
    let oras_dir = serde_json::json!({ TITLE: "fw", "io.deis.oras.content.unpack": "true" });
    push_artifact(
        &reg,
        "dev/boot",
        "v1",
        &[
            ("application/vnd.example.kernel", kernel.clone(), titled("Image")),
            ("application/vnd.example.dtb", dtb.clone(), titled("board.dtb")),
            (OCI_LAYER_GZIP, fw, oras_dir),
        ],
        &out,
    );
    let dir = work.join("boot");
    let layout_v1 = format!("{}:v1", out.display());
    let o = minipull(&["extract", &layout_v1, dir.to_str().unwrap()], None);
    assert_exit(&o, 0);
    assert_eq!(std::fs::read(dir.join("Image")).unwrap(), kernel);
    assert_eq!(std::fs::read(dir.join("board.dtb")).unwrap(), dtb);
    let mode = std::fs::metadata(dir.join("Image")).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o644);
    assert_eq!(std::fs::read(dir.join("fw/a.bin")).unwrap(), b"firmware a");
    assert_eq!(std::fs::read(dir.join("fw/sub/b.bin")).unwrap(), b"firmware b");
    // Nothing is left beside DIR.
    let mut beside: Vec<String> = std::fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    beside.sort();
    assert_eq!(beside, ["boot", "layout"]);

    // An existing file is refused without --force, and nothing changes.
    std::fs::write(dir.join("board.dtb"), b"mine").unwrap();
    std::fs::write(dir.join("unrelated"), b"kept").unwrap();
    let o = minipull(&["extract", &layout_v1, dir.to_str().unwrap()], None);
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("board.dtb") && stderr(&o).contains("--force"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read(dir.join("board.dtb")).unwrap(), b"mine");
    // A link planted under a title's name is replaced, never written through.
    std::fs::write(work.join("victim"), b"victim").unwrap();
    std::fs::remove_file(dir.join("Image")).unwrap();
    std::os::unix::fs::symlink(work.join("victim"), dir.join("Image")).unwrap();
    let o = minipull(&["extract", "--force", &layout_v1, dir.to_str().unwrap()], None);
    assert_exit(&o, 0);
    assert_eq!(std::fs::read(work.join("victim")).unwrap(), b"victim");
    assert!(std::fs::symlink_metadata(dir.join("Image")).unwrap().is_file());
    assert_eq!(std::fs::read(dir.join("Image")).unwrap(), kernel);
    std::fs::remove_file(work.join("victim")).unwrap();
    assert_eq!(std::fs::read(dir.join("board.dtb")).unwrap(), dtb);
    assert_eq!(std::fs::read(dir.join("unrelated")).unwrap(), b"kept");
    assert_eq!(std::fs::read(dir.join("fw/a.bin")).unwrap(), b"firmware a");

    // Hostile or unusable titles: refused (integrity), nothing written anywhere.
    let cases: [(&str, Vec<serde_json::Value>); 6] = [
        ("up", vec![titled("../escape")]),
        ("slash", vec![titled("a/b")]),
        ("dot", vec![titled(".")]),
        ("ctl", vec![titled("x\u{1b}[2J\ny")]),
        ("dup", vec![titled("same"), titled("same")]),
        ("none", vec![serde_json::json!({})]),
    ];
    for (tag, anns) in cases {
        let layers: Vec<(&str, Vec<u8>, serde_json::Value)> = anns
            .into_iter()
            .enumerate()
            .map(|(i, a)| ("application/octet-stream", format!("payload {i}").into_bytes(), a))
            .collect();
        push_artifact(&reg, "dev/evil", tag, &layers, &out);
        let target = work.join(&format!("evil-{tag}"));
        let o = minipull(
            &["extract", &format!("{}:{tag}", out.display()), target.to_str().unwrap()],
            None,
        );
        assert_exit(&o, 6);
        assert!(!stderr(&o).contains('\u{1b}'), "{tag}: {}", stderr(&o));
        assert!(!target.exists(), "{tag}");
        assert!(!work.join("escape").exists() && !out.join("escape").exists(), "{tag}");
    }
    // A directory layer with entries outside its title.
    let stray = gzip(&tar(&[("other/x", b"x")]));
    let ann = serde_json::json!({ TITLE: "fw", "io.deis.oras.content.unpack": "true" });
    push_artifact(&reg, "dev/evil", "stray", &[(OCI_LAYER_GZIP, stray, ann)], &out);
    let target = work.join("evil-stray");
    let o = minipull(
        &["extract", &format!("{}:stray", out.display()), target.to_str().unwrap()],
        None,
    );
    assert_exit(&o, 6);
    assert!(stderr(&o).contains("outside fw/"), "{}", stderr(&o));
    assert!(!target.exists());

    // A layer missing from the layout (or discarded) is refused by name.
    std::fs::remove_file(blob_path(&out, &sha256(&dtb))).unwrap();
    let target = work.join("boot2");
    let o = minipull(&["extract", &layout_v1, target.to_str().unwrap()], None);
    assert_exit(&o, 3);
    assert!(
        stderr(&o).contains("board.dtb") && !stderr(&o).contains("Image"),
        "{}",
        stderr(&o)
    );
    assert!(!target.exists());
}

/// A containerd of the test's own: its root, state and socket in `dir`,
/// listening nowhere else; killed on drop.
struct Containerd {
    child: std::process::Child,
    sock: String,
}

impl Containerd {
    fn start(dir: &Path) -> Containerd {
        require("containerd");
        std::fs::create_dir_all(dir).unwrap();
        let sock = dir.join("c.sock").to_str().unwrap().to_string();
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [ttrpc]\n  address = \"{sock}.ttrpc\"\n[debug]\n  address = \"\"\n[metrics]\n  address = \"\"\n"
            ),
        )
        .unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .arg("--root")
            .arg(dir.join("root"))
            .arg("--state")
            .arg(dir.join("state"))
            .args(["--address", &sock])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("containerd.log")).unwrap())
            .spawn()
            .unwrap();
        let c = Containerd { child, sock };
        for _ in 0..100 {
            if Command::new("ctr")
                .args(["-a", &c.sock, "version"])
                .output()
                .unwrap()
                .status
                .success()
            {
                return c;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!(
            "containerd did not start: {}",
            std::fs::read_to_string(dir.join("containerd.log")).unwrap()
        );
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn export_writes_an_oci_archive_skopeo_ctr_and_podman_read() {
    let reg = Registry::start(Auth::None);
    let work = TempDir::new("export");
    let out = work.join("layout");
    let image = Image::new("amd64", vec![gz_layer(&[("etc/hello.txt", b"hello\n")])]);
    let (d1, _) = reg.push_image("demo/app", "v1", &image);
    let other = Image::new("amd64", vec![gz_layer(&[("etc/other.txt", b"other\n")])]);
    let (d2, _) = reg.push_image("demo/other", "v2", &other);
    for r in ["demo/app:v1", "demo/other:v2"] {
        let o = minipull(
            &[
                "-q",
                "--plain-http",
                &format!("{}/{r}", reg.host),
                out.to_str().unwrap(),
            ],
            None,
        );
        assert_exit(&o, 0);
    }
    let app = format!("{}/demo/app:v1", reg.host);

    // One image, to a file (a link planted as FILE is replaced, not followed).
    let file = work.join("app.tar");
    std::fs::write(work.join("victim"), b"victim").unwrap();
    std::os::unix::fs::symlink(work.join("victim"), &file).unwrap();
    let o = minipull(
        &["export", &format!("{}:v1", out.display()), file.to_str().unwrap()],
        None,
    );
    assert_exit(&o, 0);
    assert_eq!(std::fs::read(work.join("victim")).unwrap(), b"victim");
    assert!(std::fs::symlink_metadata(&file).unwrap().is_file());
    let listed = run_ok("tar", &["-tf", file.to_str().unwrap()]);
    assert!(
        listed.lines().any(|l| l == "index.json") && listed.lines().any(|l| l == "oci-layout"),
        "{listed}"
    );
    assert!(!listed.contains(".tmp"));
    let x = work.join("x");
    std::fs::create_dir(&x).unwrap();
    run_ok("tar", &["-xf", file.to_str().unwrap(), "-C", x.to_str().unwrap()]);
    let index = read_json(&x.join("index.json"));
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{index}");
    assert_eq!(entries[0]["digest"], d1.as_str());
    assert_eq!(entries[0]["annotations"]["io.containerd.image.name"], app.as_str());
    assert_eq!(entries[0]["annotations"]["org.opencontainers.image.ref.name"], "v1");
    assert_eq!(assert_blobs_consistent(&x), 3);
    let inspect = run_ok("skopeo", &["inspect", &format!("oci-archive:{}", file.display())]);
    let inspect: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(inspect["Digest"], d1.as_str());
    let copied = work.join("copied");
    run_ok(
        "skopeo",
        &[
            "copy",
            &format!("oci-archive:{}", file.display()),
            &format!("dir:{}", copied.display()),
        ],
    );
    assert!(copied.join("manifest.json").is_file());

    // Every image, to stdout.
    let o = minipull(&["export", out.to_str().unwrap(), "-"], None);
    assert_exit(&o, 0);
    let all = work.join("all.tar");
    std::fs::write(&all, &o.stdout).unwrap();
    let inspect = run_ok("skopeo", &["inspect", &format!("oci-archive:{}:v2", all.display())]);
    assert!(inspect.contains(&d2), "{inspect}");

    // ctr images import names both images.
    let c = Containerd::start(&work.join("containerd"));
    run_ok(
        "ctr",
        &["-a", &c.sock, "images", "import", "--no-unpack", all.to_str().unwrap()],
    );
    let names = run_ok("ctr", &["-a", &c.sock, "images", "ls", "-q"]);
    assert!(names.lines().any(|l| l == app), "{names}");
    assert!(
        names.lines().any(|l| l == format!("{}/demo/other:v2", reg.host)),
        "{names}"
    );
    drop(c);

    // podman load (rootful, storage in the test's directory).
    let p = work.join("podman");
    let podman = |args: &[&str]| {
        let mut all = vec![
            "--root",
            p.join("root").to_str().unwrap().to_string().leak(),
            "--runroot",
            p.join("run").to_str().unwrap().to_string().leak(),
            "--storage-driver",
            "vfs",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "none",
        ];
        all.extend_from_slice(args);
        run_ok("podman", &all)
    };
    podman(&["load", "-i", file.to_str().unwrap()]);
    let images = podman(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.Digest}}"]);
    assert!(images.contains(&format!("{app} {d1}")), "{images}");

    // An image whose layers were discarded is refused, by name.
    #[cfg(feature = "unpack")]
    refuses_discarded(&reg, &work);
}

#[cfg(feature = "unpack")]
fn refuses_discarded(reg: &Registry, work: &TempDir) {
    let out = &work.join("discarded");
    let rootfs = work.join("rootfs");
    let o = minipull(
        &[
            "-q",
            "--plain-http",
            "--unpack",
            rootfs.to_str().unwrap(),
            "--discard-layers",
            &format!("{}/demo/other:v2", reg.host),
            out.to_str().unwrap(),
        ],
        None,
    );
    assert_exit(&o, 0);
    let refused = work.join("other.tar");
    let o = minipull(
        &["export", &format!("{}:v2", out.display()), refused.to_str().unwrap()],
        None,
    );
    assert_exit(&o, 3);
    assert!(
        stderr(&o).contains("demo/other:v2") && stderr(&o).contains("discarded"),
        "{}",
        stderr(&o)
    );
    assert!(!refused.exists());
    assert_eq!(
        std::fs::read_dir(work.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains(".tmp"))
            .count(),
        0
    );
}

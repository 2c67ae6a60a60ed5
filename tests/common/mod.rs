//! Test helpers: a real registry (Debian's `docker-registry`, the CNCF
//! distribution server) on 127.0.0.1, fixture images pushed through the
//! registry API, and a runner for the built minipull binary.
//!
//! Tools the tests need must be installed (`./build.sh test` does it): a
//! missing tool fails the test instead of skipping it.

#![allow(dead_code)]

pub mod fault;
pub mod schema;
pub mod servers;

use sha2::{Digest as _, Sha256};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Fail (not skip) when a tool the test needs is missing.
pub fn require(tool: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is not installed; run ./build.sh test, which installs what the tests need"
    );
}

pub fn sha256(bytes: &[u8]) -> String {
    let h = Sha256::digest(bytes);
    let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "minipull-it-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running `docker-registry`, killed on drop.
pub struct Registry {
    child: Child,
    pub port: u16,
    pub host: String,
    /// `Basic ...` header for pushing when the registry needs a login.
    pub basic: Option<String>,
    _dir: TempDir,
}

pub enum Auth {
    None,
    Htpasswd { user: &'static str, password: &'static str },
}

/// How to run a registry beyond the defaults.
#[derive(Default)]
pub struct Setup {
    /// YAML for the `auth:` section (with its key), or empty.
    pub auth_yaml: String,
    /// Serve HTTPS with this certificate and key.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Pull-through cache of this upstream URL (`proxy: remoteurl:`).
    pub proxy_remote: Option<String>,
    /// Serve this storage directory (another registry's) instead of a new one.
    pub data: Option<PathBuf>,
    /// Write the access log (every request line) to this file.
    pub access_log: Option<PathBuf>,
}

impl Registry {
    pub fn start(auth: Auth) -> Registry {
        let dir = TempDir::new("registry");
        let (auth_yaml, basic) = match auth {
            Auth::None => (String::new(), None),
            Auth::Htpasswd { user, password } => {
                require("htpasswd");
                let out = Command::new("htpasswd")
                    .args(["-Bbn", user, password])
                    .output()
                    .unwrap();
                assert!(out.status.success());
                std::fs::write(dir.join("htpasswd"), &out.stdout).unwrap();
                let basic = format!("Basic {}", base64(format!("{user}:{password}").as_bytes()));
                (
                    format!(
                        "auth:\n  htpasswd:\n    realm: test-realm\n    path: {}\n",
                        dir.join("htpasswd").display()
                    ),
                    Some(basic),
                )
            }
        };
        let mut r = Registry::start_in(
            dir,
            Setup {
                auth_yaml,
                ..Setup::default()
            },
        );
        r.basic = basic;
        r
    }

    /// Start a registry set up as `setup` says.
    pub fn start_setup(setup: Setup) -> Registry {
        Registry::start_in(TempDir::new("registry"), setup)
    }

    fn start_in(dir: TempDir, setup: Setup) -> Registry {
        require("docker-registry");
        let data = setup.data.clone().unwrap_or_else(|| dir.join("data"));
        let scheme = if setup.tls.is_some() { "https" } else { "http" };
        let tls_yaml = match &setup.tls {
            Some((cert, key)) => format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ),
            None => String::new(),
        };
        let proxy_yaml = match &setup.proxy_remote {
            Some(url) => format!("proxy:\n  remoteurl: {url}\n"),
            None => String::new(),
        };
        // A port we just freed may be taken again by a parallel test: retry a few times.
        for _ in 0..5 {
            let port = free_port();
            // A tag in every answer tells our registry from another test's that
            // raced us to the same port.
            let tag = format!("{}-{port}-{}", std::process::id(), dir.path().display());
            let access_disabled = setup.access_log.is_none();
            let config = format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: {access_disabled}\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  headers:\n    X-Test-Registry: [\"{tag}\"]\n{tls_yaml}{}{proxy_yaml}",
                data.display(),
                setup.auth_yaml
            );
            std::fs::write(dir.join("config.yml"), config).unwrap();
            let mut child = Command::new("docker-registry")
                .arg("serve")
                .arg(dir.join("config.yml"))
                .stdout(match &setup.access_log {
                    Some(p) => Stdio::from(std::fs::File::create(p).unwrap()),
                    None => Stdio::null(),
                })
                .stderr(Stdio::null())
                .spawn()
                .expect("start docker-registry");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() && is_ours(scheme, port, &tag) {
                    return Registry {
                        child,
                        port,
                        host: format!("127.0.0.1:{port}"),
                        basic: None,
                        _dir: dir,
                    };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("docker-registry did not start");
    }

    /// The storage directory, to serve the same content from another registry.
    pub fn data_dir(&self) -> PathBuf {
        self._dir.join("data")
    }

    fn agent(&self) -> ureq::Agent {
        plain_agent()
    }

    fn req<B>(&self, r: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.basic {
            Some(b) => r.header("Authorization", b),
            None => r,
        }
    }

    /// Push a blob (monolithic upload); returns its digest.
    pub fn push_blob(&self, repo: &str, bytes: &[u8]) -> String {
        let digest = sha256(bytes);
        let agent = self.agent();
        let resp = self
            .req(agent.post(format!("http://{}/v2/{repo}/blobs/uploads/", self.host)))
            .send_empty()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 202, "start upload");
        let loc = resp.headers().get("location").unwrap().to_str().unwrap().to_string();
        let url = if loc.starts_with("http") {
            loc
        } else {
            format!("http://{}{loc}", self.host)
        };
        let sep = if url.contains('?') { '&' } else { '?' };
        let resp = self
            .req(agent.put(format!("{url}{sep}digest={digest}")))
            .header("Content-Type", "application/octet-stream")
            .send(bytes)
            .unwrap();
        assert_eq!(resp.status().as_u16(), 201, "finish upload");
        digest
    }

    /// Push a manifest under `reference`; returns its digest.
    pub fn push_manifest(&self, repo: &str, reference: &str, media_type: &str, bytes: &[u8]) -> String {
        let resp = self
            .req(
                self.agent()
                    .put(format!("http://{}/v2/{repo}/manifests/{reference}", self.host)),
            )
            .header("Content-Type", media_type)
            .send(bytes)
            .unwrap();
        let status = resp.status().as_u16();
        let body = resp.into_body().read_to_string().unwrap_or_default();
        assert_eq!(status, 201, "push manifest: {body}");
        sha256(bytes)
    }

    /// A manifest as the registry serves it to an OCI client.
    pub fn manifest(&self, repo: &str, reference: &str) -> Vec<u8> {
        self.req(
            self.agent()
                .get(format!("http://{}/v2/{repo}/manifests/{reference}", self.host)),
        )
        .header("Accept", OCI_MANIFEST)
        .call()
        .unwrap()
        .into_body()
        .read_to_vec()
        .unwrap()
    }

    /// The blobs a manifest in the registry names: its config, then its layers.
    pub fn blob_digests(&self, repo: &str, reference: &str) -> Vec<String> {
        let m: serde_json::Value = serde_json::from_slice(&self.manifest(repo, reference)).unwrap();
        let mut v = vec![m["config"]["digest"].as_str().unwrap().to_string()];
        v.extend(
            m["layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["digest"].as_str().unwrap().to_string()),
        );
        v
    }

    /// Push a blob and return its descriptor.
    pub fn blob_desc(&self, repo: &str, media_type: &str, bytes: &[u8]) -> serde_json::Value {
        let digest = self.push_blob(repo, bytes);
        serde_json::json!({"mediaType": media_type, "digest": digest, "size": bytes.len()})
    }

    /// Push an image; returns (manifest digest, manifest bytes).
    pub fn push_image(&self, repo: &str, tag: &str, image: &Image) -> (String, Vec<u8>) {
        let (mt, bytes) = self.image_manifest(repo, image);
        let d = self.push_manifest(repo, tag, mt, &bytes);
        (d, bytes)
    }

    /// Push an image's blobs and return its manifest (not pushed).
    pub fn image_manifest(&self, repo: &str, image: &Image) -> (&'static str, Vec<u8>) {
        let docker = image.docker;
        let diff_ids: Vec<String> = image.layers.iter().map(|l| sha256(&l.tar)).collect();
        let config = serde_json::json!({
            "architecture": image.arch, "os": "linux",
            "config": {"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        let config = image
            .config
            .clone()
            .unwrap_or_else(|| serde_json::to_vec(&config).unwrap());
        let config_type = image
            .config_type
            .unwrap_or(if docker { DOCKER_CONFIG } else { OCI_CONFIG });
        let config_desc = self.blob_desc(repo, config_type, &config);
        let layers: Vec<serde_json::Value> = image
            .layers
            .iter()
            .map(|l| self.blob_desc(repo, l.media_type, &l.blob))
            .collect();
        let mt = if docker { DOCKER_MANIFEST } else { OCI_MANIFEST };
        let mut m = serde_json::json!({
            "schemaVersion": 2, "mediaType": mt, "config": config_desc, "layers": layers,
        });
        if let Some(a) = image.artifact_type {
            m["artifactType"] = a.into();
        }
        (mt, serde_json::to_vec(&m).unwrap())
    }
}

fn plain_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent()
}

/// Whether the registry answering on `port` is the one tagged `tag`.
fn is_ours(scheme: &str, port: u16, tag: &str) -> bool {
    // Only a readiness probe of our own test server: no certificate check.
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(ureq::tls::TlsConfig::builder().disable_verification(true).build())
        .build()
        .new_agent();
    agent
        .get(format!("{scheme}://127.0.0.1:{port}/v2/"))
        .call()
        .ok()
        .and_then(|r| {
            r.headers()
                .get("x-test-registry")
                .and_then(|v| v.to_str().ok())
                .map(|v| v == tag)
        })
        .unwrap_or(false)
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One layer: the uncompressed tar, and the blob as pushed.
pub struct Layer {
    pub media_type: &'static str,
    pub tar: Vec<u8>,
    pub blob: Vec<u8>,
}

/// A fixture image.
pub struct Image {
    pub arch: &'static str,
    pub docker: bool,
    pub layers: Vec<Layer>,
    pub config: Option<Vec<u8>>,
    pub config_type: Option<&'static str>,
    pub artifact_type: Option<&'static str>,
}

impl Image {
    pub fn new(arch: &'static str, layers: Vec<Layer>) -> Image {
        Image {
            arch,
            docker: false,
            layers,
            config: None,
            config_type: None,
            artifact_type: None,
        }
    }
}

/// A tar of `files` (path, content), made by the system tar.
pub fn tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let dir = TempDir::new("tar");
    for (path, content) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
    }
    let out = Command::new("tar")
        .args([
            "--sort=name",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "--mtime=@0",
            "-C",
        ])
        .arg(dir.path())
        .args(["-cf", "-", "."])
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}

fn pipe(cmd: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    require(cmd);
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let mut out = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    writer.join().unwrap().unwrap();
    assert!(child.wait().unwrap().success());
    out
}

pub fn gzip(b: &[u8]) -> Vec<u8> {
    pipe("gzip", &["-n", "-c"], b)
}
pub fn gunzip(b: &[u8]) -> Vec<u8> {
    pipe("gzip", &["-d", "-c"], b)
}
pub fn zstd(b: &[u8]) -> Vec<u8> {
    pipe("zstd", &["-q", "-c"], b)
}
pub fn unzstd(b: &[u8]) -> Vec<u8> {
    pipe("zstd", &["-q", "-d", "-c"], b)
}

/// A gzip layer holding `files`.
pub fn gz_layer(files: &[(&str, &[u8])]) -> Layer {
    let t = tar(files);
    Layer {
        media_type: OCI_LAYER_GZIP,
        blob: gzip(&t),
        tar: t,
    }
}

/// List the paths in a tar (via the system tar).
pub fn tar_list(t: &[u8]) -> Vec<String> {
    let out = pipe("tar", &["-tf", "-"], t);
    String::from_utf8(out).unwrap().lines().map(str::to_string).collect()
}

/// The binary under test: cargo's debug build, or the one `MINIPULL_BIN`
/// names (build.sh runs part of the suite against the shipped release
/// binary, whose size flags change how panics and Debug output behave).
pub fn minipull_bin() -> std::path::PathBuf {
    match std::env::var_os("MINIPULL_BIN") {
        Some(p) => std::fs::canonicalize(p).expect("MINIPULL_BIN names a file"),
        None => env!("CARGO_BIN_EXE_minipull").into(),
    }
}

/// Run minipull with `args`, optional stdin; returns its output.
pub fn minipull(args: &[&str], stdin: Option<&str>) -> Output {
    minipull_env(args, stdin, &[])
}

pub fn minipull_env(args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(minipull_bin());
    cmd.args(args)
        .env_remove("DOCKER_CONFIG")
        .env("HOME", "/nonexistent-minipull-home")
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Assert the exit code, showing stderr when it is wrong.
pub fn assert_exit(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "exit code; stderr:\n{}\nstdout:\n{}",
        stderr(o),
        stdout(o)
    );
}

pub fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// Every file in `blobs/` hashes to its name; returns how many there are.
pub fn assert_blobs_consistent(layout: &Path) -> usize {
    let dir = layout.join("blobs/sha256");
    let Ok(entries) = std::fs::read_dir(&dir) else { return 0 };
    let mut n = 0;
    for e in entries {
        let e = e.unwrap();
        let bytes = std::fs::read(e.path()).unwrap();
        assert_eq!(
            sha256(&bytes),
            format!("sha256:{}", e.file_name().to_string_lossy()),
            "blob content must match its name"
        );
        n += 1;
    }
    n
}

/// Every descriptor index.json names exists in blobs/.
pub fn assert_index_points_at_blobs(layout: &Path) {
    let index = read_json(&layout.join("index.json"));
    for m in index["manifests"].as_array().unwrap() {
        let d = m["digest"].as_str().unwrap().replace(':', "/");
        assert!(
            layout.join("blobs").join(d).is_file(),
            "index.json points at a missing blob: {m}"
        );
    }
}

pub fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    layout.join("blobs").join(digest.replace(':', "/"))
}

/// Run a command, asserting success; returns stdout.
pub fn run_ok(cmd: &str, args: &[&str]) -> String {
    require(cmd);
    let o = Command::new(cmd).args(args).output().unwrap();
    assert!(
        o.status.success(),
        "{cmd} {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in input.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub fn base64_pub(input: &[u8]) -> String {
    base64(input)
}

/// A test CA and a server certificate it signed for 127.0.0.1 and localhost.
pub struct TestCa {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Make a CA and a server certificate with the openssl command line tool.
pub fn make_ca(dir: &Path, name: &str) -> TestCa {
    require("openssl");
    let p = |f: &str| dir.join(format!("{name}-{f}"));
    let s = |p: &PathBuf| p.to_str().unwrap().to_string();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let mut args = vec!["req", "-x509"];
    args.extend(ec);
    let (ca_key, ca, key, csr, cert, ext) = (
        p("ca.key"),
        p("ca.pem"),
        p("key.pem"),
        p("csr"),
        p("cert.pem"),
        p("ext"),
    );
    let subj = format!("/CN=minipull test CA {name}");
    let (ca_key_s, ca_s) = (s(&ca_key), s(&ca));
    args.extend(["-keyout", &ca_key_s, "-out", &ca_s, "-days", "2", "-subj", &subj]);
    args.extend([
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    run_ok("openssl", &args);
    let (key_s, csr_s) = (s(&key), s(&csr));
    let mut args = vec!["req"];
    args.extend(ec);
    args.extend(["-keyout", &key_s, "-out", &csr_s, "-subj", "/CN=127.0.0.1"]);
    run_ok("openssl", &args);
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let (ext_s, cert_s) = (s(&ext), s(&cert));
    run_ok(
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            &csr_s,
            "-CA",
            &ca_s,
            "-CAkey",
            &ca_key_s,
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &cert_s,
            "-extfile",
            &ext_s,
        ],
    );
    TestCa { ca, cert, key }
}

/// `umoci unpack --rootless` of `layout:tag` into `work/bundle`; returns its rootfs.
/// `oci-image-tool validate` of the image named `name` in `layout` (fails the test if invalid).
pub fn oci_validate(layout: &Path, name: &str) {
    run_ok(
        "oci-image-tool",
        &[
            "validate",
            "--type",
            "image",
            "--ref",
            &format!("name={name}"),
            layout.to_str().unwrap(),
        ],
    );
}

pub fn umoci_unpack(layout: &Path, tag: &str, work: &TempDir) -> PathBuf {
    let bundle = work.join("bundle");
    run_ok(
        "umoci",
        &[
            "unpack",
            "--rootless",
            "--image",
            &format!("{}:{tag}", layout.display()),
            bundle.to_str().unwrap(),
        ],
    );
    bundle.join("rootfs")
}

/// Unmounts on drop, so a failing assertion does not leave a mount behind.
pub struct Tmpfs(pub std::path::PathBuf);

impl Tmpfs {
    pub fn mount(path: std::path::PathBuf, size: &str) -> Tmpfs {
        std::fs::create_dir_all(&path).unwrap();
        run_ok(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "tmpfs",
                path.to_str().unwrap(),
            ],
        );
        Tmpfs(path)
    }
    #[allow(dead_code)]
    pub fn resize(&self, size: &str) {
        run_ok(
            "mount",
            &["-o", &format!("remount,size={size}"), self.0.to_str().unwrap()],
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// Peak RSS in KiB of a command, as the kernel counts it for a child of a
/// fresh python3 (so no other process of the test run is counted).
pub fn peak_rss_kib(cmd: &[&str]) -> (Output, u64) {
    let script = "import resource, subprocess, sys\n\
                  r = subprocess.run(sys.argv[1:], capture_output=True)\n\
                  sys.stdout.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) + '\\n')\n\
                  sys.stderr.buffer.write(r.stderr)\n\
                  sys.exit(r.returncode)";
    let o = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(cmd)
        .output()
        .expect("python3 runs");
    let kib = stdout(&o).trim().parse().unwrap_or(u64::MAX);
    (o, kib)
}

/// Incompressible-looking, deterministic bytes (xorshift), so a gzip layer
/// is as big as its content.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A real docker-registry whose access log (every request line) is kept,
/// with a work directory: what the signature and update tests count
/// requests with.
pub struct LoggedRegistry {
    pub reg: Registry,
    pub log: PathBuf,
    pub work: TempDir,
}

impl LoggedRegistry {
    pub fn new(tag: &str) -> LoggedRegistry {
        let work = TempDir::new(tag);
        let log = work.join("access.log");
        let reg = Registry::start_setup(Setup {
            access_log: Some(log.clone()),
            ..Setup::default()
        });
        LoggedRegistry { reg, log, work }
    }

    /// The access log's lines so far, once the registry has written them all.
    pub fn log_lines(&self) -> Vec<String> {
        let mut last = usize::MAX;
        for _ in 0..40 {
            let n = std::fs::read_to_string(&self.log).unwrap_or_default().lines().count();
            if n == last {
                break;
            }
            last = n;
            std::thread::sleep(Duration::from_millis(50));
        }
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Blob GETs of `repo` in the log, from line `from` on.
    pub fn blob_gets_since(&self, repo: &str, from: usize) -> Vec<String> {
        let lines = self.log_lines();
        lines[from.min(lines.len())..]
            .iter()
            .filter(|l| l.contains(&format!("\"GET /v2/{repo}/blobs/")))
            .cloned()
            .collect()
    }
}

/// Whether the binary under test honours the test hooks (`MINIPULL_TEST_*`):
/// only debug builds do, which is cargo test's own binary. `./build.sh test`
/// runs every test with them first; the pass against the release binary
/// leaves out the parts that need them. MINIPULL_TEST_HOOKS=1: the binary
/// MINIPULL_BIN names is a debug one.
#[allow(dead_code)]
pub fn hooks() -> bool {
    let ok = std::env::var_os("MINIPULL_BIN").is_none() || std::env::var_os("MINIPULL_TEST_HOOKS").is_some();
    if !ok {
        eprintln!("left out: MINIPULL_BIN is set, and only debug builds honour the test hooks");
    }
    ok
}

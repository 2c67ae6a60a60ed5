//! Reaching registries the way users do: Docker Hub-style token auth (the
//! real registry in `auth: token` mode behind a token server of ours),
//! OAuth2 refresh tokens, credential helpers, environment credentials,
//! mirrors (the real registry as a pull-through cache), and a CONNECT proxy.

mod common;
use common::servers::*;
use common::*;

const USER: &str = "alice";
const PASSWORD: &str = "to-ken-Pa55";

/// Push `public/app:v1` and `private/app:v1` to a plain registry, then serve
/// the same storage behind token auth.
fn token_registry(work: &TempDir) -> (Registry, Registry, TokenServer, String) {
    let plain = Registry::start(Auth::None);
    let image = Image::new("amd64", vec![gz_layer(&[("etc/app", b"tokens\n")])]);
    let (digest, _) = plain.push_image("public/app", "v1", &image);
    plain.push_image("private/app", "v1", &image);
    let ts = TokenServer::start(work.path(), USER, PASSWORD);
    let reg = Registry::start_setup(Setup {
        auth_yaml: ts.auth_yaml(),
        data: Some(plain.data_dir()),
        ..Setup::default()
    });
    (plain, reg, ts, digest)
}

fn no_secret_in(o: &std::process::Output, secrets: &[&str]) {
    let all = format!("{}{}", stdout(o), stderr(o));
    for s in secrets {
        assert!(!all.contains(s), "a secret appears in the output:\n{all}");
    }
}

#[test]
fn token_auth_anonymous_public_and_credentialed_private() {
    let work = TempDir::new("token");
    let (_plain, reg, ts, digest) = token_registry(&work);

    // Anonymous: the public repository pulls with a token asked for without Basic.
    let out = work.join("public");
    let o = minipull(
        &[
            "--plain-http",
            &format!("{}/public/app:v1", reg.host),
            out.to_str().unwrap(),
        ],
        None,
    );
    assert_exit(&o, 0);
    assert_eq!(stdout(&o).trim(), digest);
    let reqs = ts.requests();
    assert!(!reqs.is_empty() && reqs.iter().all(|r| r.method == "GET" && r.authorization.is_none()));
    assert!(
        reqs.iter()
            .any(|r| r.query.contains("scope=repository%3Apublic%2Fapp%3Apull")),
        "{reqs:?}"
    );
    assert!(
        reqs.iter()
            .any(|r| r.query.contains(&format!("service={TOKEN_SERVICE}"))),
        "{reqs:?}"
    );

    // Anonymous on the private one: the registry refuses the anonymous
    // token. With no credentials sent that reads as Docker Hub's "does not
    // exist or needs credentials": exit 3 (#16's rule; 4 when credentials were sent).
    let private = format!("{}/private/app:v1", reg.host);
    let out = work.join("private-anon");
    let o = minipull(&["--plain-http", &private, out.to_str().unwrap()], None);
    assert_exit(&o, 3);
    assert!(
        stderr(&o).contains("does not exist or needs credentials"),
        "{}",
        stderr(&o)
    );

    // MINIPULL_USERNAME/PASSWORD: Basic goes to the token server, the pull works.
    let out = work.join("private-env");
    let o = minipull_env(
        &["--plain-http", &private, out.to_str().unwrap()],
        None,
        &[("MINIPULL_USERNAME", USER), ("MINIPULL_PASSWORD", PASSWORD)],
    );
    assert_exit(&o, 0);
    no_secret_in(&o, &[PASSWORD]);
    let last = ts.requests().pop().unwrap();
    assert_eq!(
        last.authorization.as_deref(),
        Some(format!("Basic {}", base64_pub(format!("{USER}:{PASSWORD}").as_bytes())).as_str())
    );

    // A wrong password: the token server says 401, exit 4, password not echoed.
    let out = work.join("private-wrong");
    let o = minipull_env(
        &["--plain-http", &private, out.to_str().unwrap()],
        None,
        &[("MINIPULL_USERNAME", USER), ("MINIPULL_PASSWORD", "wrong-Secret-1")],
    );
    assert_exit(&o, 4);
    no_secret_in(&o, &["wrong-Secret-1"]);

    // Only one of the two variables is a usage error.
    let o = minipull_env(
        &["--plain-http", &private, out.to_str().unwrap()],
        None,
        &[("MINIPULL_USERNAME", USER)],
    );
    assert_exit(&o, 2);
}

#[test]
fn identity_token_uses_the_oauth2_refresh_flow() {
    let work = TempDir::new("oauth");
    let (_plain, reg, ts, digest) = token_registry(&work);
    let private = format!("{}/private/app:v1", reg.host);
    // A podman-style auth file found through REGISTRY_AUTH_FILE.
    let auth = work.join("auth.json");
    std::fs::write(
        &auth,
        format!(
            r#"{{"auths":{{"{}":{{"identitytoken":"{REFRESH_TOKEN}"}}}}}}"#,
            reg.host
        ),
    )
    .unwrap();
    let out = work.join("out");
    let o = minipull_env(
        &["--plain-http", &private, out.to_str().unwrap()],
        None,
        &[("REGISTRY_AUTH_FILE", auth.to_str().unwrap())],
    );
    assert_exit(&o, 0);
    assert_eq!(stdout(&o).trim(), digest);
    no_secret_in(&o, &[REFRESH_TOKEN]);
    let posts: Vec<TokenRequest> = ts.requests().into_iter().filter(|r| r.method == "POST").collect();
    assert!(!posts.is_empty(), "{:?}", ts.requests());
    for p in &posts {
        assert!(p.body.contains("grant_type=refresh_token"), "{p:?}");
        assert!(p.body.contains(&format!("refresh_token={REFRESH_TOKEN}")), "{p:?}");
        assert!(p.body.contains("scope=repository%3Aprivate%2Fapp%3Apull"), "{p:?}");
        assert!(p.authorization.is_none(), "no Basic header with a refresh token");
    }

    // A revoked refresh token: the token server answers 400, exit 4.
    std::fs::write(
        &auth,
        format!(r#"{{"auths":{{"{}":{{"identitytoken":"revoked"}}}}}}"#, reg.host),
    )
    .unwrap();
    let out = work.join("revoked");
    let o = minipull_env(
        &["--plain-http", &private, out.to_str().unwrap()],
        None,
        &[("REGISTRY_AUTH_FILE", auth.to_str().unwrap())],
    );
    assert_ne!(o.status.code(), Some(0));
    assert!(!out.join("index.json").exists());
}

/// Put `docker-credential-NAME` (a shell script) in `work/bin`; returns a
/// PATH with it first and an empty DOCKER_CONFIG directory.
fn install_helper(work: &TempDir, name: &str, script: &str) -> (String, std::path::PathBuf) {
    let bin = work.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join(format!("docker-credential-{name}"));
    std::fs::write(&helper, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let docker = work.join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    (path, docker)
}

#[test]
fn credential_helper_is_run_with_the_registry_on_stdin() {
    let work = TempDir::new("helper");
    let (_plain, reg, ts, _) = token_registry(&work);
    let private = format!("{}/private/app:v1", reg.host);
    // A helper on PATH that records what it was asked and answers for our registry only.
    let asked = work.join("asked");
    let (path, docker) = install_helper(
        &work,
        "testhelper",
        &format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 3\nread -r server\necho \"$server\" >> {asked}\nif [ \"$server\" = \"{host}\" ]; then\n  printf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}' \"$server\"\nelse\n  echo 'credentials not found in native keychain'; exit 1\nfi\n",
            asked = asked.display(),
            host = reg.host
        ),
    );
    for (name, config) in [
        (
            "credHelpers",
            format!(r#"{{"credHelpers":{{"{}":"testhelper"}}}}"#, reg.host),
        ),
        ("credsStore", r#"{"credsStore":"testhelper"}"#.to_string()),
    ] {
        std::fs::write(docker.join("config.json"), config).unwrap();
        let out = work.join(name);
        let o = minipull_env(
            &["--plain-http", &private, out.to_str().unwrap()],
            None,
            &[("DOCKER_CONFIG", docker.to_str().unwrap()), ("PATH", &path)],
        );
        assert_exit(&o, 0);
        no_secret_in(&o, &[PASSWORD]);
    }
    let asked = std::fs::read_to_string(&asked).unwrap();
    assert_eq!(
        asked.lines().collect::<Vec<_>>(),
        vec![reg.host.as_str(), reg.host.as_str()]
    );
    assert!(ts.requests().iter().any(|r| r.authorization.is_some()));

    // A helper that is not installed: a warning, then an anonymous try (exit 3 here: no credentials were sent).
    std::fs::write(docker.join("config.json"), r#"{"credsStore":"not-installed"}"#).unwrap();
    let out = work.join("missing");
    let o = minipull_env(
        &["--plain-http", &private, out.to_str().unwrap()],
        None,
        &[("DOCKER_CONFIG", docker.to_str().unwrap())],
    );
    assert_exit(&o, 3);
    assert!(stderr(&o).contains("docker-credential-not-installed"), "{}", stderr(&o));
}

#[test]
fn mirrors_pull_through_cache_then_fall_back_in_order() {
    let work = TempDir::new("mirror");
    let upstream = Registry::start(Auth::None);
    let image = Image::new(
        "amd64",
        vec![
            gz_layer(&[("etc/m", b"mirrored\n")]),
            gz_layer(&[("etc/n", b"second layer\n")]),
        ],
    );
    let (digest, _) = upstream.push_image("team/app", "v1", &image);
    // The real registry as a pull-through cache of the upstream.
    let cache = Registry::start_setup(Setup {
        proxy_remote: Some(format!("http://{}", upstream.host)),
        ..Setup::default()
    });
    let r = format!("{}/team/app:v1", upstream.host);
    let dead = format!("127.0.0.1:{}", free_port());
    let pull = |name: &str, mirrors: &[&str]| {
        let out = work.join(name);
        // A mirror that does not answer is waited for --retry-for (1 s here,
        // 60 by default) before the next source is asked.
        let mut args = vec![
            "--plain-http",
            "--json",
            "--timeout",
            "5",
            "--retry-for",
            "1",
            "--mirror-for",
            upstream.host.as_str(),
        ];
        for m in mirrors {
            args.extend(["--mirror", m]);
        }
        args.extend([r.as_str(), out.to_str().unwrap()]);
        let o = minipull(&args, None);
        assert_exit(&o, 0);
        let summary: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(summary["digest"], digest.as_str());
        assert_eq!(assert_blobs_consistent(&out), 4);
        (o, summary)
    };
    let sources = |s: &serde_json::Value| -> Vec<String> {
        s["blobs"]
            .as_array()
            .unwrap()
            .iter()
            .chain(s["manifests"].as_array().unwrap())
            .map(|b| b["source"].as_str().unwrap().to_string())
            .collect()
    };

    // Through the cache: everything came from it.
    let (o, s) = pull("through-cache", &[&cache.host]);
    assert!(sources(&s).iter().all(|h| *h == cache.host), "{s}");
    assert!(stderr(&o).contains(&format!("mirror {}", cache.host)), "{}", stderr(&o));

    // First mirror down: the second (the cache) serves, the dead one is tried once.
    let (o, s) = pull("second-mirror", &[&dead, &cache.host]);
    assert!(sources(&s).iter().all(|h| *h == cache.host), "{s}");
    assert_eq!(
        stderr(&o).matches(&format!("mirror {dead}:")).count(),
        1,
        "{}",
        stderr(&o)
    );

    // Both mirrors down: the registry itself.
    drop(cache);
    let (o, s) = pull("upstream", &[&dead, &format!("127.0.0.1:{}", free_port())]);
    assert!(sources(&s).iter().all(|h| *h == upstream.host), "{s}");
    assert!(
        stderr(&o).contains(&format!("trying registry {}", upstream.host)),
        "{}",
        stderr(&o)
    );

    // Without --mirror-for, mirrors serve Docker Hub only: this pull never asks one.
    let out = work.join("not-for-us");
    let o = minipull(&["--plain-http", "--mirror", &dead, &r, out.to_str().unwrap()], None);
    assert_exit(&o, 0);
    assert!(!stderr(&o).contains(&format!("mirror {dead}")), "{}", stderr(&o));
}

#[test]
fn mirror_gets_its_own_credentials_not_the_registrys() {
    let work = TempDir::new("mirror-creds");
    // The "mirror" is a fault server that logs Authorization headers and has nothing.
    let mirror = common::fault::FaultServer::start(common::fault::Faults::default());
    let upstream = Registry::start(Auth::Htpasswd {
        user: USER,
        password: PASSWORD,
    });
    let image = Image::new("amd64", vec![gz_layer(&[("x", b"y\n")])]);
    upstream.push_image("team/app", "v1", &image);
    let out = work.join("out");
    let o = minipull(
        &[
            "--plain-http",
            "--mirror",
            &mirror.host,
            "--mirror-for",
            &upstream.host,
            "--username",
            USER,
            "--password-stdin",
            &format!("{}/team/app:v1", upstream.host),
            out.to_str().unwrap(),
        ],
        Some(&format!("{PASSWORD}\n")),
    );
    assert_exit(&o, 0);
    let log = mirror.log();
    assert!(!log.is_empty(), "the mirror was asked first");
    assert!(
        log.iter()
            .all(|l| l.authorization.as_deref().is_none_or(|a| !a.starts_with("Basic"))),
        "{log:?}"
    );
    no_secret_in(&o, &[PASSWORD]);
}

#[test]
fn https_proxy_tunnels_and_no_proxy_goes_direct() {
    let work = TempDir::new("proxy");
    let plain = Registry::start(Auth::None);
    let image = Image::new("amd64", vec![gz_layer(&[("p", b"proxied\n")])]);
    let (digest, _) = plain.push_image("team/app", "v1", &image);
    let ca = make_ca(work.path(), "proxy");
    let tls = Registry::start_setup(Setup {
        tls: Some((ca.cert.clone(), ca.key.clone())),
        data: Some(plain.data_dir()),
        ..Setup::default()
    });
    let proxy = ConnectProxy::start();
    let r = format!("{}/team/app:v1", tls.host);
    let proxy_url = format!("http://127.0.0.1:{}", proxy.port);
    let ca_file = ca.ca.to_str().unwrap();

    let out = work.join("proxied");
    let o = minipull_env(
        &["--ca-file", ca_file, &r, out.to_str().unwrap()],
        None,
        &[("HTTPS_PROXY", &proxy_url)],
    );
    assert_exit(&o, 0);
    assert_eq!(stdout(&o).trim(), digest);
    assert!(proxy.count() >= 1, "the pull went through the proxy");

    // Lowercase works too, and NO_PROXY sends it around the proxy.
    let before = proxy.count();
    let out = work.join("direct");
    let o = minipull_env(
        &["--ca-file", ca_file, &r, out.to_str().unwrap()],
        None,
        &[("https_proxy", &proxy_url), ("NO_PROXY", "localhost,127.0.0.1")],
    );
    assert_exit(&o, 0);
    assert_eq!(proxy.count(), before);

    // HTTP_PROXY is for http URLs only: an https pull ignores it.
    let out = work.join("http-proxy-only");
    let o = minipull_env(
        &["--ca-file", ca_file, &r, out.to_str().unwrap()],
        None,
        &[("HTTP_PROXY", "http://127.0.0.1:1")],
    );
    assert_exit(&o, 0);

    // A proxy that is down: a network error, exit 5.
    let out = work.join("proxy-down");
    let o = minipull_env(
        &["--retries", "0", "--ca-file", ca_file, &r, out.to_str().unwrap()],
        None,
        &[("HTTPS_PROXY", "http://127.0.0.1:1")],
    );
    assert_exit(&o, 5);
}

#[test]
fn item_13_a_credential_helper_that_writes_more_than_a_pipe_holds() {
    let work = TempDir::new("helper-big");
    let (_plain, reg, _ts, _) = token_registry(&work);
    let private = format!("{}/private/app:v1", reg.host);
    // 300 KB of padding in the answer: more than a pipe buffer (64 KiB), so
    // the helper blocks until somebody reads.
    let (path, docker) = install_helper(
        &work,
        "chatty",
        &format!(
            "#!/bin/sh\nread -r server\npad=$(head -c 300000 /dev/zero | tr '\\0' x)\nprintf '{{\"Pad\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}' \"$pad\"\n"
        ),
    );
    std::fs::write(docker.join("config.json"), r#"{"credsStore":"chatty"}"#).unwrap();
    let out = work.join("out");
    let started = std::time::Instant::now();
    let o = minipull_env(
        &["--plain-http", &private, out.to_str().unwrap()],
        None,
        &[("DOCKER_CONFIG", docker.to_str().unwrap()), ("PATH", &path)],
    );
    assert_exit(&o, 0);
    no_secret_in(&o, &[PASSWORD]);
    // The helper's own limit is 60 s; reading as it writes takes well under that.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(40),
        "{:?}",
        started.elapsed()
    );
}

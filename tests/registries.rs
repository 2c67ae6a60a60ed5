//! Registries as they really are: each test emulates one registry's
//! recorded HTTP behaviour with the in-suite server, in front of a real
//! docker-registry that holds the content, and pulls through it, checking
//! the layout with oci-image-tool and the servers' logs for what must never
//! happen.

mod common;
use common::fault::{FaultServer, Faults};
use common::*;
use std::time::Duration;

/// A real docker-registry holding `repo:v1`, one gzip layer of `size`
/// bytes; returns it and the layer's digest.
fn real_image(repo: &str, size: usize) -> (Registry, String) {
    let reg = Registry::start(Auth::None);
    let layer = gz_layer(&[("payload", &noise(size, size as u64))]);
    let digest = sha256(&layer.blob);
    reg.push_image(repo, "v1", &Image::new("amd64", vec![layer]));
    (reg, digest)
}

/// Docker Hub: a repository that does not exist (or is private) is a 401
/// `insufficient_scope`, not a 404: exit 3 and a message that says so when
/// no credentials were sent, exit 4 when they were; never a retry loop.
#[test]
fn docker_hub_missing_repository_is_not_found_or_needs_credentials() {
    let work = TempDir::new("hub-missing");
    let server = FaultServer::start(Faults {
        token_lifetime: Some(Duration::from_secs(300)),
        missing_repo_is_401: true,
        ..Faults::default()
    });
    let r = format!("{}/library/nosuchimage:latest", server.host);
    let o = minipull(&["--plain-http", &r, work.join("a").to_str().unwrap()], None);
    assert_exit(&o, 3);
    assert!(
        stderr(&o).contains("does not exist or needs credentials"),
        "{}",
        stderr(&o)
    );
    let manifest_asks = server.requests("/manifests/").len();
    assert!(
        manifest_asks <= 2,
        "one try and one after a token, no loop: {:?}",
        server.log()
    );
    assert!(server.tokens_issued() <= 2);

    server.clear_log();
    let o = minipull(
        &[
            "--plain-http",
            "--username",
            "someone",
            "--password-stdin",
            &r,
            work.join("b").to_str().unwrap(),
        ],
        Some("Secret-pw-1\n"),
    );
    assert_exit(&o, 4);
    assert!(
        stderr(&o).contains("does not exist or these credentials may not pull it"),
        "{}",
        stderr(&o)
    );
    assert!(!format!("{}{}", stderr(&o), stdout(&o)).contains("Secret-pw-1"));
    assert!(server.requests("/manifests/").len() <= 2, "{:?}", server.log());
}

/// Harbor: once a client sends an Authorization header, an expired token
/// is answered `Basic realm="harbor"`. The token must be renewed at the
/// realm learned first; the password never goes to the registry as Basic.
#[test]
fn harbor_basic_challenge_on_an_expired_token_renews_the_token() {
    let work = TempDir::new("harbor");
    let server = FaultServer::start(Faults {
        token_lifetime: Some(Duration::from_secs(1)),
        stall: Some((50_000, Duration::from_millis(1500))),
        harbor_basic_on_expiry: true,
        // Harbor's answer: expires_in and an RFC 3339 issued_at (the
        // server forgets the token after 1 s anyway, as an expiry does).
        token_answer: Some((
            "application/json".into(),
            r#"{"token":"{t}","expires_in":1800,"issued_at":"2026-11-30T10:00:00Z"}"#.into(),
        )),
        ..Faults::default()
    });
    let (reg, layer) = real_image("project/app", 200_000);
    server.in_front_of(&format!("http://{}", reg.host), "project/app");
    server.set_target(&layer);
    let r = format!("{}/project/app:v1", server.host);
    // A robot account: `$` and `+` in the user name.
    let o = minipull(
        &[
            "--plain-http",
            "--timeout",
            "1",
            "--username",
            "robot$project+ci",
            "--password-stdin",
            &r,
            work.join("out").to_str().unwrap(),
        ],
        Some("Robot-Secret-9\n"),
    );
    assert_exit(&o, 0);
    assert!(blob_path(&work.join("out"), &layer).exists());
    assert!(server.tokens_issued() >= 2, "the token was renewed");
    let log = server.log();
    assert!(
        log.iter().any(|l| l.status == 401 && l.path.contains("/blobs/")),
        "the expiry happened: {log:?}"
    );
    for l in log.iter().filter(|l| !l.path.starts_with("/token")) {
        let a = l.authorization.as_deref().unwrap_or("");
        assert!(
            !a.starts_with("Basic"),
            "the password went to the registry as Basic: {l:?}"
        );
    }
    let basic = format!("Basic {}", base64_pub(b"robot$project+ci:Robot-Secret-9"));
    assert!(log
        .iter()
        .any(|l| l.path.starts_with("/token") && l.authorization.as_deref() == Some(basic.as_str())));
}

/// Google Artifact Registry: `_json_key` with a service-account key, a
/// multi-line JSON document, as the password on stdin: all of it is sent
/// (to the token realm only), not its first line.
#[test]
fn artifact_registry_json_key_password_is_read_whole() {
    let work = TempDir::new("gar");
    let server = FaultServer::start(Faults {
        token_lifetime: Some(Duration::from_secs(300)),
        ..Faults::default()
    });
    let (reg, _) = real_image("proj/repo/app", 10_000);
    server.in_front_of(&format!("http://{}", reg.host), "proj/repo/app");
    let key = "{\n  \"type\": \"service_account\",\n  \"private_key\": \"-----BEGIN PRIVATE KEY-----\\nabc\\n\"\n}\n";
    let r = format!("{}/proj/repo/app:v1", server.host);
    let o = minipull(
        &[
            "--plain-http",
            "--username",
            "_json_key",
            "--password-stdin",
            &r,
            work.join("out").to_str().unwrap(),
        ],
        Some(key),
    );
    assert_exit(&o, 0);
    let want = format!(
        "Basic {}",
        base64_pub(format!("_json_key:{}", key.trim_end()).as_bytes())
    );
    let tokens: Vec<_> = server
        .log()
        .into_iter()
        .filter(|l| l.path.starts_with("/token"))
        .collect();
    assert!(!tokens.is_empty());
    assert!(
        tokens.iter().all(|l| l.authorization.as_deref() == Some(want.as_str())),
        "{tokens:?}"
    );
    assert!(!stderr(&o).contains("service_account"));
}

/// A pull through `server` (and whatever it redirects to) into a fresh
/// layout, checked with oci-image-tool; returns the output.
fn pull_checked(
    server: &FaultServer,
    repo: &str,
    work: &TempDir,
    extra: &[&str],
    stdin: Option<&str>,
) -> std::process::Output {
    let out = work.join(&format!("out-{}", server.port));
    let r = format!("{}/{repo}:v1", server.host);
    let mut args = vec!["--plain-http", "--timeout", "30"];
    args.extend_from_slice(extra);
    args.push(&r);
    args.push(out.to_str().unwrap());
    let o = minipull(&args, stdin);
    assert_exit(&o, 0);
    oci_validate(&out, "v1");
    o
}

/// The scope values the token endpoint was asked for.
fn scopes_asked(server: &FaultServer) -> Vec<String> {
    server
        .log()
        .iter()
        .filter(|l| l.path.starts_with("/token"))
        .flat_map(|l| {
            l.path
                .split(['?', '&'])
                .filter_map(|kv| kv.strip_prefix("scope="))
                .map(|v| v.replace("%3A", ":").replace("%2F", "/"))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Docker Hub: blobs 307 to a CDN on another origin with a signed,
/// expiring query, where the CDN ignores Range; a chunked text/plain token
/// answer with `token` only (then `token` + `access_token`); rate-limit
/// headers in their empty-limit form; a plain-text 429 once.
#[test]
fn docker_hub() {
    let work = TempDir::new("hub");
    for answer in [
        r#"{"token":"{t}"}"#,
        r#"{"token":"{t}","access_token":"{t}","expires_in":300}"#,
    ] {
        let cdn = FaultServer::start(Faults {
            ignore_range: true,
            drop_after: Some(40_000),
            ..Faults::default()
        });
        let server = FaultServer::start(Faults {
            token_lifetime: Some(Duration::from_secs(300)),
            challenge: Some(
                r#"Bearer realm="{realm}",service="registry.docker.io",scope="repository:library/app:pull""#.into(),
            ),
            token_answer: Some(("text/plain; charset=utf-8".into(), answer.into())),
            token_chunked: true,
            ratelimit_headers: true,
            redirect_blobs_to: Some(format!("http://{}", cdn.host)),
            status_once: Some(("/manifests/".into(), 429, None)),
            ..Faults::default()
        });
        let (reg, ld) = real_image("library/app", 100_000);
        for s in [&server, &cdn] {
            s.in_front_of(&format!("http://{}", reg.host), "library/app");
        }
        cdn.set_target(&ld);
        pull_checked(&server, "library/app", &work, &[], None);
        assert!(cdn.log().iter().all(|l| l.authorization.is_none()), "{:?}", cdn.log());
        assert!(
            cdn.log().iter().any(|l| l.range.is_some() && l.status == 200),
            "the CDN ignored a Range and we coped"
        );
        assert_eq!(
            scopes_asked(&server).first().map(String::as_str),
            Some("repository:library/app:pull")
        );
    }
}

/// GHCR: a `/v2/` challenge whose scope is a placeholder for another
/// repository; an anonymous token answer without `expires_in`; blobs
/// redirected to another registry host that wants its own anonymous token
/// and takes 11 s to produce its first byte.
#[test]
fn ghcr() {
    let work = TempDir::new("ghcr");
    let other = FaultServer::start(Faults {
        token_lifetime: Some(Duration::from_secs(300)),
        challenge: Some(r#"Bearer realm="{realm}",service="pkg-containers",scope="repository:org/app:pull""#.into()),
        cdn_first_byte_delay: Some(Duration::from_secs(11)),
        ..Faults::default()
    });
    let server = FaultServer::start(Faults {
        token_lifetime: Some(Duration::from_secs(300)),
        challenge: Some(r#"Bearer realm="{realm}",service="ghcr.io",scope="repository:user/image:pull""#.into()),
        token_answer: Some(("application/json".into(), r#"{"token":"{t}"}"#.into())),
        redirect_blobs_to: Some(format!("http://{}", other.host)),
        ..Faults::default()
    });
    let (reg, ld) = real_image("org/app", 50_000);
    for s in [&server, &other] {
        s.in_front_of(&format!("http://{}", reg.host), "org/app");
    }
    other.set_target(&ld);
    let t = std::time::Instant::now();
    pull_checked(
        &server,
        "org/app",
        &work,
        &["--username", "me", "--password-stdin"],
        Some("Ghcr-Secret-3\n"),
    );
    assert!(
        t.elapsed() >= Duration::from_secs(11),
        "the slow first byte was waited for"
    );
    let scopes = scopes_asked(&server);
    assert!(
        !scopes.is_empty() && scopes.iter().all(|s| s == "repository:org/app:pull"),
        "the placeholder is never used: {scopes:?}"
    );
    // The second host got only an anonymous token from its own realm.
    let basic = format!("Basic {}", base64_pub(b"me:Ghcr-Secret-3"));
    let our_tokens: Vec<String> = server
        .log()
        .iter()
        .filter_map(|l| l.authorization.clone())
        .filter(|a| a.starts_with("Bearer"))
        .collect();
    for l in other.log() {
        let a = l.authorization.clone().unwrap_or_default();
        assert!(
            a != basic && !our_tokens.contains(&a),
            "credentials or our token reached the other host: {l:?}"
        );
    }
    assert!(other
        .log()
        .iter()
        .any(|l| l.path.starts_with("/token") && l.authorization.is_none()));
    assert!(other
        .log()
        .iter()
        .any(|l| l.path.contains("/cdn/") && l.status == 200 && l.authorization.is_some()));
}

/// The cross-host anonymous token: blobs redirected to a second registry
/// host whose challenge names a realm on another origin (as Docker Hub's
/// `registry-1.docker.io` names `auth.docker.io`): first a third server,
/// then the registry's own token endpoint. The token is asked there, always
/// anonymously (no Authorization header, even at the registry's own realm,
/// where our credentials are welcome), and the pull succeeds; neither our
/// credentials nor our token reach the second host.
#[test]
fn cross_host_token_from_a_realm_on_another_origin() {
    let work = TempDir::new("cross-realm");
    for own_realm in [false, true] {
        let third = FaultServer::start(Faults::default());
        let other = FaultServer::start(Faults::default());
        let server = FaultServer::start(Faults {
            token_lifetime: Some(Duration::from_secs(300)),
            challenge: Some(r#"Bearer realm="{realm}",service="registry",scope="repository:org/app:pull""#.into()),
            redirect_blobs_to: Some(format!("http://{}", other.host)),
            ..Faults::default()
        });
        let realm = if own_realm { &server } else { &third };
        other.set_faults(Faults {
            token_lifetime: Some(Duration::from_secs(300)),
            challenge: Some(r#"Bearer realm="{realm}",service="blob-host",scope="repository:org/app:pull""#.into()),
            token_realm: Some(format!("http://{}/token", realm.host)),
            tokens_of: Some(realm.port),
            ..Faults::default()
        });
        let (reg, ld) = real_image("org/app", 30_000);
        for s in [&server, &other] {
            s.in_front_of(&format!("http://{}", reg.host), "org/app");
        }
        other.set_target(&ld);
        pull_checked(
            &server,
            "org/app",
            &work,
            &["--username", "me", "--password-stdin"],
            Some("Cross-Secret-7\n"),
        );
        // The second host's token was asked from its realm, anonymously.
        let asked: Vec<_> = realm
            .log()
            .into_iter()
            .filter(|l| l.path.starts_with("/token") && l.path.contains("service=blob-host"))
            .collect();
        assert!(!asked.is_empty(), "own realm {own_realm}: {:?}", realm.log());
        assert!(
            asked.iter().all(|l| l.authorization.is_none()),
            "own realm {own_realm}: the anonymous token request carried a credential: {asked:?}"
        );
        // Our credentials and the registry's token stay with the registry.
        let basic = format!("Basic {}", base64_pub(b"me:Cross-Secret-7"));
        let ours: Vec<String> = server
            .log()
            .iter()
            .filter_map(|l| l.authorization.clone())
            .filter(|a| a.starts_with("Bearer"))
            .collect();
        assert!(!ours.is_empty());
        for l in other.log().iter().chain(third.log().iter()) {
            let a = l.authorization.clone().unwrap_or_default();
            assert!(
                a != basic && !ours.contains(&a),
                "our credentials or token left the registry: {l:?}"
            );
        }
        assert!(other
            .log()
            .iter()
            .any(|l| l.path.contains("/cdn/") && l.status == 200 && l.authorization.is_some()));
    }
}

/// Amazon ECR: Basic auth with user `AWS` and a realm/service in the
/// challenge; blobs 307 to an S3-style presigned URL that refuses any
/// Authorization header with 400.
#[test]
fn amazon_ecr() {
    let work = TempDir::new("ecr");
    let s3 = FaultServer::start(Faults {
        cdn_refuses_authorization: true,
        ..Faults::default()
    });
    let password = "eyJwYXlsb2FkIjoi-ecr-token";
    let server = FaultServer::start(Faults {
        basic_auth: Some(format!("Basic {}", base64_pub(format!("AWS:{password}").as_bytes()))),
        challenge: Some(
            r#"Basic realm="https://123456789012.dkr.ecr.eu-west-1.amazonaws.com/",service="ecr.amazonaws.com""#.into(),
        ),
        redirect_blobs_to: Some(format!("http://{}", s3.host)),
        ..Faults::default()
    });
    let (reg, _) = real_image("team/app", 30_000);
    for s in [&server, &s3] {
        s.in_front_of(&format!("http://{}", reg.host), "team/app");
    }
    pull_checked(
        &server,
        "team/app",
        &work,
        &["--username", "AWS", "--password-stdin"],
        Some(&format!("{password}\n")),
    );
    assert!(
        s3.log().iter().all(|l| l.authorization.is_none() && l.status == 200),
        "{:?}",
        s3.log()
    );
}

/// Google Artifact Registry: a challenge with `realm` only, then one with an
/// unquoted `service=gcr.io`; later 401s without any WWW-Authenticate;
/// blobs 302 to a relative Location; user `oauth2accesstoken`; an identity
/// token whose OAuth2 POST is answered 404 falls back to GET.
#[test]
fn artifact_registry() {
    let work = TempDir::new("gar");
    for challenge in [r#"Bearer realm="{realm}""#, r#"Bearer realm="{realm}",service=gcr.io"#] {
        let server = FaultServer::start(Faults {
            token_lifetime: Some(Duration::from_secs(300)),
            challenge: Some(challenge.into()),
            challenge_only_at_ping: true,
            relative_redirect: true,
            token_post_status: Some(404),
            ..Faults::default()
        });
        let (reg, _) = real_image("proj/repo/app", 20_000);
        server.in_front_of(&format!("http://{}", reg.host), "proj/repo/app");
        pull_checked(
            &server,
            "proj/repo/app",
            &work,
            &["--username", "oauth2accesstoken", "--password-stdin"],
            Some("ya29.access-token\n"),
        );
        assert!(server.log().iter().any(|l| l.path.starts_with("/artifacts-downloads/")));
        // An identity token (config.json's identitytoken): POST 404, then GET.
        let docker = work.join(&format!("docker-{}", server.port));
        std::fs::create_dir_all(&docker).unwrap();
        std::fs::write(
            docker.join("config.json"),
            format!(r#"{{"auths":{{"{}":{{"identitytoken":"refresh-123"}}}}}}"#, server.host),
        )
        .unwrap();
        server.clear_log();
        let out = work.join(&format!("id-{}", server.port));
        let o = minipull_env(
            &[
                "--plain-http",
                &format!("{}/proj/repo/app:v1", server.host),
                out.to_str().unwrap(),
            ],
            None,
            &[("DOCKER_CONFIG", docker.to_str().unwrap())],
        );
        assert_exit(&o, 0);
        let tokens: Vec<_> = server
            .log()
            .into_iter()
            .filter(|l| l.path.starts_with("/token"))
            .collect();
        assert!(
            tokens.iter().any(|l| l.method == "POST" && l.status == 404),
            "{tokens:?}"
        );
        let basic = format!("Basic {}", base64_pub(b"<token>:refresh-123"));
        assert!(
            tokens
                .iter()
                .any(|l| l.method == "GET" && l.authorization.as_deref() == Some(basic.as_str())),
            "{tokens:?}"
        );
    }
}

/// Azure ACR: the identity-token flow answered with `access_token` only (no
/// `token`, no `expires_in`), a deployment that answers the POST 400 (GET
/// then), the zero-GUID user, blobs redirected to a SAS URL elsewhere.
#[test]
fn azure_acr() {
    let work = TempDir::new("acr");
    let blob_store = FaultServer::start(Faults {
        cdn_refuses_authorization: true,
        ..Faults::default()
    });
    let server = FaultServer::start(Faults {
        token_lifetime: Some(Duration::from_secs(300)),
        challenge: Some(r#"Bearer realm="{realm}",service="myacr.azurecr.io""#.into()),
        token_answer: Some((
            "application/json; charset=utf-8".into(),
            r#"{"access_token":"{t}"}"#.into(),
        )),
        token_post_status: Some(400),
        redirect_blobs_to: Some(format!("http://{}", blob_store.host)),
        ..Faults::default()
    });
    let (reg, _) = real_image("samples/app", 20_000);
    for s in [&server, &blob_store] {
        s.in_front_of(&format!("http://{}", reg.host), "samples/app");
    }
    pull_checked(
        &server,
        "samples/app",
        &work,
        &["--username", "00000000-0000-0000-0000-000000000000", "--password-stdin"],
        Some("acr-refresh-token\n"),
    );
    assert!(blob_store.log().iter().all(|l| l.authorization.is_none()));
}

/// Quay: blobs `302 FOUND` with a text/html body that also carries
/// Docker-Content-Digest; manifests with `; charset=utf-8`.
#[test]
fn quay() {
    let work = TempDir::new("quay");
    let cdn = FaultServer::start(Faults::default());
    let server = FaultServer::start(Faults {
        redirect_blobs_to: Some(format!("http://{}", cdn.host)),
        redirect_html: true,
        manifest_content_type: Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8".into()),
        ..Faults::default()
    });
    let (reg, _) = real_image("org/app", 20_000);
    for s in [&server, &cdn] {
        s.in_front_of(&format!("http://{}", reg.host), "org/app");
    }
    pull_checked(&server, "org/app", &work, &[], None);
    assert!(server.log().iter().any(|l| l.status == 302));
}

/// Harbor's anonymous HEAD is always 401, even on public projects: `check`
/// falls back to GET.
#[test]
fn harbor_anonymous_head_falls_back_to_get() {
    let work = TempDir::new("harbor-head");
    let server = FaultServer::start(Faults::default());
    let (reg, _) = real_image("library/app", 5_000);
    server.in_front_of(&format!("http://{}", reg.host), "library/app");
    let digest = sha256(&reg.manifest("library/app", "v1"));
    let out = work.join("out");
    let r = format!("{}/library/app:v1", server.host);
    assert_exit(&minipull(&["--plain-http", &r, out.to_str().unwrap()], None), 0);
    server.set_faults(Faults {
        head_status: Some(401),
        ..Faults::default()
    });
    let o = minipull(&["check", "--plain-http", &r, out.to_str().unwrap()], None);
    assert_exit(&o, 0);
    assert_eq!(stdout(&o).trim(), digest);
}

/// Artifactory: a challenge scope that drops the repository key, 401s with
/// an ISO-8859-1 JSON body, 406 unless Accept lists the stored type.
#[test]
fn artifactory() {
    let work = TempDir::new("artifactory");
    let server = FaultServer::start(Faults {
        token_lifetime: Some(Duration::from_secs(300)),
        challenge: Some(r#"Bearer realm="{realm}",service="artifactory",scope="repository:test/cp5:pull""#.into()),
        error_content_type: Some("application/json;charset=ISO-8859-1".into()),
        strict_accept: true,
        ..Faults::default()
    });
    let (reg, _) = real_image("foo-docker/test/cp5", 20_000);
    server.in_front_of(&format!("http://{}", reg.host), "foo-docker/test/cp5");
    pull_checked(&server, "foo-docker/test/cp5", &work, &[], None);
    let scopes = scopes_asked(&server);
    assert!(
        scopes.iter().all(|s| s == "repository:foo-docker/test/cp5:pull"),
        "the truncated key is never used alone: {scopes:?}"
    );
}

/// zot: manifests and blobs sent chunked without Content-Length; 416 with
/// no body for any Range but `bytes=N-`/`bytes=N-M` (a resume must send that).
#[test]
fn zot() {
    let work = TempDir::new("zot");
    let server = FaultServer::start(Faults {
        chunked: true,
        strict_range: true,
        drop_after: Some(30_000),
        ..Faults::default()
    });
    let (reg, ld) = real_image("app", 100_000);
    server.in_front_of(&format!("http://{}", reg.host), "app");
    server.set_target(&ld);
    pull_checked(&server, "app", &work, &[], None);
    let ranges: Vec<_> = server.log().into_iter().filter_map(|l| l.range).collect();
    assert!(
        !ranges.is_empty() && ranges.iter().all(|r| r.starts_with("bytes=") && r.ends_with('-')),
        "{ranges:?}"
    );
}

/// Any registry: no Docker-Content-Digest, two challenges in one header and
/// a Negotiate header beside them, `expires_in: 0`, `access_token` only.
#[test]
fn general_quirks() {
    let work = TempDir::new("general");
    let server = FaultServer::start(Faults {
        token_lifetime: Some(Duration::from_secs(300)),
        no_digest_header: true,
        extra_challenge: Some("Negotiate".into()),
        challenge: Some(r#"Basic realm="corp", Bearer realm="{realm}",service="reg""#.into()),
        token_answer: Some((
            "application/json".into(),
            r#"{"access_token":"{t}","expires_in":0}"#.into(),
        )),
        ..Faults::default()
    });
    let (reg, _) = real_image("team/app", 20_000);
    server.in_front_of(&format!("http://{}", reg.host), "team/app");
    pull_checked(&server, "team/app", &work, &[], None);
}

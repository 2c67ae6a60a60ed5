//! Registries as they really are: each test emulates one registry's
//! recorded HTTP behaviour with the in-suite server and pulls through it,
//! checking the outcome and the server's log for what must never happen.

mod common;
use common::fault::{FaultServer, Faults};
use common::*;
use std::time::Duration;

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
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
        ..Faults::default()
    });
    let (_, layer) = server.add_image("project/app", "v1", data(200_000));
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
    server.add_image("proj/repo/app", "v1", data(10_000));
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

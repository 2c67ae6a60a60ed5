//! Credentials against a real htpasswd registry, and bad input: each
//! failure gets its exit code, a readable message, and leaves no junk.

mod common;
use common::*;

const USER: &str = "alice";
const PASSWORD: &str = "s3cret-Pa55word";

fn push_simple(reg: &Registry, repo: &str, tag: &str) -> String {
    let image = Image::new("amd64", vec![gz_layer(&[("f.txt", b"private content\n")])]);
    reg.push_image(repo, tag, &image).0
}

#[test]
fn basic_auth_with_password_stdin_and_auth_file() {
    let reg = Registry::start(Auth::Htpasswd {
        user: USER,
        password: PASSWORD,
    });
    let d = push_simple(&reg, "private/app", "v1");
    let work = TempDir::new("basic");
    let r = format!("{}/private/app:v1", reg.host);

    // --username + --password-stdin.
    let out = work.join("a");
    let o = minipull(
        &[
            "--plain-http",
            "--username",
            USER,
            "--password-stdin",
            &r,
            out.to_str().unwrap(),
        ],
        Some(&format!("{PASSWORD}\n")),
    );
    assert_exit(&o, 0);
    assert_eq!(stdout(&o).trim(), d);
    assert!(!stderr(&o).contains(PASSWORD));

    // A docker config.json via --auth-file (base64 "auth" field).
    let cfg = work.join("config.json");
    let auth = base64_pub(format!("{USER}:{PASSWORD}").as_bytes());
    std::fs::write(&cfg, format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, reg.host)).unwrap();
    let out = work.join("b");
    let o = minipull(
        &[
            "--plain-http",
            "--auth-file",
            cfg.to_str().unwrap(),
            &r,
            out.to_str().unwrap(),
        ],
        None,
    );
    assert_exit(&o, 0);

    // $DOCKER_CONFIG/config.json with username/password fields, keyed by URL.
    let dc = work.join("dockercfg");
    std::fs::create_dir_all(&dc).unwrap();
    std::fs::write(
        dc.join("config.json"),
        format!(
            r#"{{"auths":{{"http://{}":{{"username":"{USER}","password":"{PASSWORD}"}}}}}}"#,
            reg.host
        ),
    )
    .unwrap();
    let out = work.join("c");
    let o = minipull_env(
        &["--plain-http", &r, out.to_str().unwrap()],
        None,
        &[("DOCKER_CONFIG", dc.to_str().unwrap())],
    );
    assert_exit(&o, 0);
    assert_blobs_consistent(&out);
}

#[test]
fn wrong_or_missing_credentials_exit_4_without_leaking() {
    let reg = Registry::start(Auth::Htpasswd {
        user: USER,
        password: PASSWORD,
    });
    push_simple(&reg, "private/app", "v1");
    let work = TempDir::new("badauth");
    let r = format!("{}/private/app:v1", reg.host);
    let wrong = "wrong-Pa55word-xyz";
    let out = work.join("a");
    let o = minipull(
        &[
            "--plain-http",
            "--json",
            "--username",
            USER,
            "--password-stdin",
            &r,
            out.to_str().unwrap(),
        ],
        Some(wrong),
    );
    assert_exit(&o, 4);
    let all = format!("{}{}", stderr(&o), stdout(&o));
    assert!(!all.contains(wrong), "password leaked: {all}");
    assert!(
        !all.contains(&base64_pub(format!("{USER}:{wrong}").as_bytes())),
        "basic header leaked"
    );
    assert!(stderr(&o).contains("401"), "{}", stderr(&o));
    assert!(!out.join("index.json").exists());

    let o = minipull(&["--plain-http", &r, work.join("b").to_str().unwrap()], None);
    assert_exit(&o, 4);
    assert!(
        stderr(&o).contains("requires a username and password"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn not_found_cases_exit_3() {
    let reg = Registry::start(Auth::None);
    push_simple(&reg, "exists/app", "v1");
    let work = TempDir::new("notfound");
    for (r, expect) in [
        (format!("{}/nope/app:v1", reg.host), "not found"),
        (format!("{}/exists/app:v2", reg.host), "not found"),
    ] {
        let out = work.join("x");
        let o = minipull(&["--plain-http", &r, out.to_str().unwrap()], None);
        assert_exit(&o, 3);
        assert!(stderr(&o).contains(expect), "{}", stderr(&o));
        assert!(!out.join("index.json").exists());
        assert_eq!(assert_blobs_consistent(&out), 0);
    }
}

#[test]
fn usage_errors_exit_2() {
    let work = TempDir::new("usage");
    let out = work.join("x");
    let out = out.to_str().unwrap();
    for (args, expect) in [
        (vec!["library/Alpine", out], "must be lowercase"),
        (vec!["alpine:bad!tag", out], "tag"),
        (vec!["alpine@sha256:1234", out], "hex"),
        (vec!["alpine"], "expected REF and OUTDIR"),
        (vec!["--bogus", "alpine", out], "unknown option"),
        (vec!["--platform", "linux", "alpine", out], "invalid platform"),
        (vec!["--retries", "many", "alpine", out], "--retries"),
        (vec!["--username", "u", "alpine", out], "--password-stdin"),
    ] {
        let o = minipull(&args, None);
        assert_exit(&o, 2);
        assert!(stderr(&o).contains(expect), "{args:?}: {}", stderr(&o));
    }
    assert!(!work.join("x").exists(), "a usage error creates nothing");
    let o = minipull(&["--help"], None);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("EXIT CODES"));
    let o = minipull(&["-V"], None);
    assert!(stdout(&o).starts_with("minipull "));
}

#[test]
fn unwritable_outdir_exits_7_and_unreachable_registry_exits_5() {
    let reg = Registry::start(Auth::None);
    push_simple(&reg, "demo/app", "v1");
    let work = TempDir::new("storage");
    // A path under a regular file can be written by nobody, root included.
    let file = work.join("file");
    std::fs::write(&file, b"x").unwrap();
    let o = minipull(
        &[
            "--plain-http",
            &format!("{}/demo/app:v1", reg.host),
            file.join("out").to_str().unwrap(),
        ],
        None,
    );
    assert_exit(&o, 7);
    assert!(stderr(&o).contains("cannot create"), "{}", stderr(&o));

    // Nothing listens on port 1 (a freed ephemeral port could be taken by a parallel test).
    let port = 1;
    let o = minipull(
        &[
            "--plain-http",
            "--retries",
            "1",
            "--timeout",
            "2",
            &format!("127.0.0.1:{port}/demo/app:v1"),
            work.join("o").to_str().unwrap(),
        ],
        None,
    );
    assert_exit(&o, 5);
    assert!(stderr(&o).contains("cannot connect"), "{}", stderr(&o));
    assert!(!work.join("o/index.json").exists());

    // HTTPS to a plain-HTTP registry: a TLS failure with a hint, no retry storm.
    let o = minipull(
        &[
            "--timeout",
            "5",
            &format!("{}/demo/app:v1", reg.host),
            work.join("p").to_str().unwrap(),
        ],
        None,
    );
    assert_exit(&o, 5);
    assert!(stderr(&o).contains("--plain-http"), "{}", stderr(&o));
}

/// Built without the "unpack" feature, the unpack commands say so (CI builds both ways).
#[cfg(not(feature = "unpack"))]
#[test]
fn unpack_commands_need_the_feature() {
    let work = TempDir::new("nounpack");
    let o = minipull(
        &[
            "unpack",
            work.path().to_str().unwrap(),
            work.join("rootfs").to_str().unwrap(),
        ],
        None,
    );
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("without unpack support"), "{}", stderr(&o));
    let o = minipull(
        &[
            "--unpack",
            work.join("r").to_str().unwrap(),
            "127.0.0.1:1/a/b:c",
            work.join("o").to_str().unwrap(),
        ],
        None,
    );
    assert_exit(&o, 2);
}

//! A small fault-injecting registry for failures a real server cannot
//! produce on demand: dropped connections, corrupt bytes, stalls, trickles,
//! ignored ranges, 416/429/503, redirects to another host, expiring tokens.
//!
//! It serves manifests and blobs from memory, one thread per connection,
//! `Connection: close` on every answer, and logs every request so tests can
//! assert what went over the wire. It stops when dropped.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Switchable faults; the `*_once` ones fire on the first matching blob request only.
#[derive(Default, Clone)]
pub struct Faults {
    /// Close the connection after this many body bytes of a blob, once.
    pub drop_after: Option<u64>,
    /// Close every blob answer when it reaches this offset of the blob.
    pub cut_at: Option<u64>,
    /// Flip the byte at this offset of a blob body, once (or always).
    pub flip_at: Option<u64>,
    pub flip_always: bool,
    /// After this many body bytes, go silent for the duration, then close; once.
    pub stall: Option<(u64, Duration)>,
    /// Send blob bodies as (bytes, pause) trickles for the first request, then normally.
    pub trickle_once: Option<(usize, Duration)>,
    /// Answer 200 with the whole body even when a Range was asked for.
    pub ignore_range: bool,
    /// Answer the first ranged blob request with 416.
    pub range_416_once: bool,
    /// Answer the first request to a path containing the string with this status
    /// and optional Retry-After.
    pub status_once: Option<(String, u16, Option<u64>)>,
    /// Redirect blob requests (307) to this base URL (`http://host:port`).
    pub redirect_blobs_to: Option<String>,
    /// Append this many bytes to every blob body.
    pub extra_bytes: usize,
    /// Limit blob bodies to this many bytes a second.
    pub throttle: Option<u64>,
    /// Require bearer tokens from `/token`, valid for this long on the server side.
    pub token_lifetime: Option<Duration>,
    /// Content-Type to serve manifests with, overriding their own.
    pub manifest_content_type: Option<String>,
    /// A wrong Docker-Content-Digest header on manifests.
    pub wrong_digest_header: bool,
    /// Send only half of the first manifest body, then close.
    pub cut_manifest_once: bool,
    /// Redirect every blob request to itself with a new query, forever.
    pub redirect_forever: bool,
    /// The realm to put in the Bearer challenge instead of our own /token.
    pub token_realm: Option<String>,
    /// Harbor: an expired or unknown token that came with an Authorization
    /// header is answered `Basic realm="harbor"`, not with a bearer challenge.
    pub harbor_basic_on_expiry: bool,
    /// Docker Hub: a repository that does not exist is answered 401
    /// `insufficient_scope` with an UNAUTHORIZED body, never 404.
    pub missing_repo_is_401: bool,
    /// The Bearer challenge to send instead of the default; `{realm}` is
    /// replaced by the realm URL.
    pub challenge: Option<String>,
    /// Another WWW-Authenticate header sent before the bearer one (`Negotiate`).
    pub extra_challenge: Option<String>,
    /// Only the `/v2/` ping's 401 carries WWW-Authenticate (Artifact Registry).
    pub challenge_only_at_ping: bool,
    /// The Content-Type of 401 bodies (Artifactory: `application/json;charset=ISO-8859-1`).
    pub error_content_type: Option<String>,
    /// The token endpoint's answer: Content-Type and body, `{t}` replaced by
    /// the token (default `application/json`, `{"token":..,"expires_in":300}`).
    pub token_answer: Option<(String, String)>,
    /// Send the token answer chunked (Docker Hub).
    pub token_chunked: bool,
    /// Answer POSTs to the token endpoint with this status.
    pub token_post_status: Option<u16>,
    /// Send manifest and blob bodies chunked, without Content-Length.
    pub chunked: bool,
    /// Redirect blobs with `302 FOUND`, a text/html body and Docker-Content-Digest (Quay).
    pub redirect_html: bool,
    /// Redirect blobs with a relative Location on this server (Artifact Registry).
    pub relative_redirect: bool,
    /// Wait this long before answering a CDN request (GHCR's slow signed URLs).
    pub cdn_first_byte_delay: Option<Duration>,
    /// Answer CDN requests that carry Authorization with 400 (S3 presigned URLs).
    pub cdn_refuses_authorization: bool,
    /// Docker Hub's ratelimit headers on manifest answers, in the empty-limit form.
    pub ratelimit_headers: bool,
    /// 416 with no body for a Range that is not `bytes=N-` or `bytes=N-M` (zot).
    pub strict_range: bool,
    /// 406 for a manifest request whose Accept does not list the stored type (Artifactory).
    pub strict_accept: bool,
    /// Require this exact `Authorization` value (Basic auth, ECR); a request
    /// without it gets 401 with `challenge` (default `Basic realm="fault"`).
    pub basic_auth: Option<String>,
    /// Send manifests without Docker-Content-Digest, to GET as well as HEAD.
    pub no_digest_header: bool,
    /// Answer manifest HEAD requests with this status (405: HEAD refused).
    pub head_status: Option<u16>,
    /// Answer manifest HEAD requests without Docker-Content-Digest.
    pub head_without_digest: bool,
    /// Answer manifest requests 429 with Docker Hub's rate-limit headers
    /// (nothing remaining) and a Retry-After of an hour.
    pub rate_limited: bool,
    /// Also accept the bearer tokens the server on this port issued (a
    /// token realm on another origin, Docker Hub's `auth.docker.io`).
    pub tokens_of: Option<u16>,
    /// Serve `bytes=A-B[,C-D...]` ranges (206, `multipart/byteranges` for
    /// several), with this damage to multi-range answers.
    pub ranges: Option<Multi>,
    /// The tags `/v2/<repo>/tags/list` lists, paged by `n` and `last` with
    /// a relative `Link` to the next page (as distribution 3 does).
    pub tag_list: Vec<String>,
    /// Every tag list page's `Link` points here instead (`{n}`: a counter).
    pub tags_next: Option<String>,
}

/// How the fault server answers a request for several ranges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Multi {
    /// As distribution does: one part per range, in order.
    Serve,
    /// With this status (400, 416, 501) and no body; single ranges are served.
    Status(u16),
    /// 200 and the whole blob.
    Whole,
    /// The parts in reverse order.
    Reordered,
    /// The last part left out.
    Dropped,
    /// The second part's Content-Range (and bytes) one byte later than asked.
    WrongRange,
    /// The last part cut in half, then the body ends.
    Truncated,
    /// Any bounded range, even a single one, answered 200 with the whole blob.
    AllWhole,
}

/// `bytes=A-B,C-D` as `[(A, B + 1), ...]` within `total`.
fn parse_ranges(r: &str, total: u64) -> Option<Vec<(u64, u64)>> {
    r.strip_prefix("bytes=")?
        .split(',')
        .map(|p| {
            let (a, b) = p.trim().split_once('-')?;
            let (a, b): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
            (a <= b && b < total).then_some((a, b + 1))
        })
        .collect()
}

/// The body and headers of an answer to `want` of `body` with damage `m`.
fn ranged_answer(m: Multi, body: &[u8], want: &[(u64, u64)]) -> (u16, Vec<(&'static str, String)>, Vec<u8>) {
    let total = body.len() as u64;
    if m == Multi::AllWhole || (want.len() > 1 && m == Multi::Whole) {
        return (200, vec![], body.to_vec());
    }
    if let (Multi::Status(code), true) = (m, want.len() > 1) {
        return (code, vec![], vec![]);
    }
    if want.len() == 1 {
        let (a, b) = want[0];
        return (
            206,
            vec![("Content-Range", format!("bytes {a}-{}/{total}", b - 1))],
            body[a as usize..b as usize].to_vec(),
        );
    }
    let mut parts: Vec<(u64, u64)> = want.to_vec();
    match m {
        Multi::Reordered => parts.reverse(),
        Multi::Dropped => {
            parts.pop();
        }
        Multi::WrongRange if parts[1].0 + 1 < parts[1].1 => parts[1].0 += 1,
        _ => {}
    }
    let mut out = Vec::new();
    let n = parts.len();
    for (i, (a, b)) in parts.into_iter().enumerate() {
        out.extend_from_slice(
            format!(
                "\r\n--BOUNDARY\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes {a}-{}/{total}\r\n\r\n",
                b - 1
            )
            .as_bytes(),
        );
        let mut data = &body[a as usize..b as usize];
        if m == Multi::Truncated && i + 1 == n {
            data = &data[..data.len() / 2];
            out.extend_from_slice(data);
            return (
                206,
                vec![("Content-Type", "multipart/byteranges; boundary=BOUNDARY".into())],
                out,
            );
        }
        out.extend_from_slice(data);
    }
    out.extend_from_slice(b"\r\n--BOUNDARY--\r\n");
    (
        206,
        vec![("Content-Type", "multipart/byteranges; boundary=BOUNDARY".into())],
        out,
    )
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Logged {
    /// GET or HEAD.
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub authorization: Option<String>,
    pub status: u16,
    /// Body bytes written to the socket.
    pub body_bytes: u64,
    /// The server is done with this request.
    pub finished: bool,
}

#[derive(Default)]
struct State {
    /// reference -> (media type, bytes, digest)
    manifests: HashMap<String, (String, Vec<u8>, String)>,
    blobs: HashMap<String, Vec<u8>>,
    faults: Faults,
    fired: HashMap<&'static str, bool>,
    log: Vec<Logged>,
    tokens: HashMap<String, Instant>,
    tokens_issued: u32,
    /// Blob faults apply only to this digest, when set (the image's layer).
    target: Option<String>,
    /// A real registry (`http://host:port`) whose content this server serves
    /// in front of, and the repository to use for CDN-style paths.
    upstream: Option<(String, String)>,
}

pub struct FaultServer {
    pub port: u16,
    pub host: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FaultServer {
    pub fn start(faults: Faults) -> FaultServer {
        FaultServer::start_later(faults, Duration::ZERO)
    }

    /// A server whose port refuses connections for `delay` (nothing
    /// listens), then serves: a registry or mirror that comes up late.
    pub fn start_later(faults: Faults, delay: Duration) -> FaultServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut early = Some(listener);
        if !delay.is_zero() {
            drop(early.take());
        }
        let state = Arc::new(Mutex::new(State {
            faults,
            ..State::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let listener = match early {
                Some(l) => l,
                None => {
                    // Sleep in steps, so dropping the server ends the wait.
                    let until = std::time::Instant::now() + delay;
                    while std::time::Instant::now() < until {
                        if sp.load(Ordering::SeqCst) {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    // The port was ours a moment ago; retry briefly if the
                    // kernel still holds it.
                    let mut tries = 0;
                    loop {
                        match TcpListener::bind(("127.0.0.1", port)) {
                            Ok(l) => break l,
                            Err(_) if tries < 100 => {
                                tries += 1;
                                std::thread::sleep(Duration::from_millis(50));
                            }
                            Err(e) => panic!("cannot listen on {port} again: {e}"),
                        }
                    }
                }
            };
            listener.set_nonblocking(true).unwrap();
            while !sp.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((sock, _)) => {
                        let st = st.clone();
                        let sp = sp.clone();
                        std::thread::spawn(move || {
                            let _ = handle(sock, port, &st, &sp);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FaultServer {
            port,
            host: format!("127.0.0.1:{port}"),
            state,
            stop,
            thread: Some(thread),
        }
    }

    pub fn add_manifest(&self, repo: &str, reference: &str, media_type: &str, bytes: &[u8]) {
        self.state.lock().unwrap().manifests.insert(
            format!("{repo}/{reference}"),
            (media_type.to_string(), bytes.to_vec(), super::sha256(bytes)),
        );
    }

    /// The bytes of the manifest served as `repo:reference`.
    pub fn manifest_bytes(&self, repo: &str, reference: &str) -> Vec<u8> {
        self.state.lock().unwrap().manifests[&format!("{repo}/{reference}")]
            .1
            .clone()
    }

    pub fn add_blob(&self, digest: &str, bytes: Vec<u8>) {
        self.state.lock().unwrap().blobs.insert(digest.to_string(), bytes);
    }

    /// Serve a one-layer OCI image as `repo:tag`; returns (manifest digest, layer digest).
    pub fn add_image(&self, repo: &str, tag: &str, layer: Vec<u8>) -> (String, String) {
        let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec();
        let (cd, ld) = (super::sha256(&config), super::sha256(&layer));
        let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": super::OCI_MANIFEST,
            "config": {"mediaType": super::OCI_CONFIG, "digest": cd, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": layer.len()}],
        });
        let bytes = serde_json::to_vec(&manifest).unwrap();
        self.add_blob(&cd, config);
        self.add_blob(&ld, layer);
        self.state.lock().unwrap().target = Some(ld.clone());
        self.add_manifest(repo, tag, super::OCI_MANIFEST, &bytes);
        let md = super::sha256(&bytes);
        self.add_manifest(repo, &md, super::OCI_MANIFEST, &bytes);
        (md, ld)
    }

    /// Serve what `upstream` (a real registry, `http://host:port`) holds for
    /// `repo`, fetched when first asked, with this server's quirks on top.
    pub fn in_front_of(&self, upstream: &str, repo: &str) {
        self.state.lock().unwrap().upstream = Some((upstream.to_string(), repo.to_string()));
    }

    /// Every blob the server holds (to copy to a CDN).
    pub fn blobs(&self) -> Vec<(String, Vec<u8>)> {
        self.state
            .lock()
            .unwrap()
            .blobs
            .iter()
            .map(|(d, b)| (d.clone(), b.clone()))
            .collect()
    }

    /// Apply blob faults to this digest only.
    pub fn set_target(&self, digest: &str) {
        self.state.lock().unwrap().target = Some(digest.to_string());
    }

    pub fn set_faults(&self, faults: Faults) {
        let mut s = self.state.lock().unwrap();
        s.faults = faults;
        s.fired.clear();
    }

    pub fn log(&self) -> Vec<Logged> {
        self.state.lock().unwrap().log.clone()
    }

    /// Wait (at most 10 s) until every request so far is finished, then forget them.
    pub fn clear_log(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.log().iter().any(|l| !l.finished) {
            assert!(Instant::now() < deadline, "a request never finished");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.state.lock().unwrap().log.clear();
    }

    /// Requests whose path contains `needle`.
    pub fn requests(&self, needle: &str) -> Vec<Logged> {
        self.log().into_iter().filter(|l| l.path.contains(needle)).collect()
    }

    pub fn tokens_issued(&self) -> u32 {
        self.state.lock().unwrap().tokens_issued
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Fire a once-only fault: true the first time.
/// Read an HTTP request head: the request line and the headers, names lowercased.
pub fn read_head(reader: &mut impl BufRead) -> std::io::Result<(String, HashMap<String, String>)> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    Ok((line, headers))
}

fn once(s: &mut State, name: &'static str) -> bool {
    !std::mem::replace(s.fired.entry(name).or_insert(false), true)
}

fn handle(sock: TcpStream, port: u16, state: &Mutex<State>, stop: &AtomicBool) -> std::io::Result<()> {
    sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(sock.try_clone()?);
    let (line, headers) = read_head(&mut reader)?;
    let method = line.split_whitespace().next().unwrap_or("GET").to_string();
    let head = method == "HEAD";
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let range = headers.get("range").cloned();
    let authorization = headers.get("authorization").cloned();
    let accept = headers.get("accept").cloned();
    let mut out = sock;
    let mut respond = |status: u16, extra: &[(&str, String)], body: &[u8]| -> std::io::Result<()> {
        let mut head_line = format!(
            "HTTP/1.1 {status} X\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in extra {
            head_line.push_str(&format!("{k}: {v}\r\n"));
        }
        head_line.push_str("\r\n");
        out.write_all(head_line.as_bytes())?;
        if !head {
            out.write_all(body)?;
        }
        Ok(())
    };
    let log = |status: u16, body_bytes: u64| {
        state.lock().unwrap().log.push(Logged {
            method: method.clone(),
            path: path.clone(),
            range: range.clone(),
            authorization: authorization.clone(),
            status,
            body_bytes,
            finished: true,
        });
    };

    let (mut faults, target) = {
        let s = state.lock().unwrap();
        (s.faults.clone(), s.target.clone())
    };
    // Blob faults hit only the target blob (not, say, the config fetched first).
    if target.is_some_and(|t| !path.contains(&t)) && !path.starts_with("/cdn/") && path.contains("/blobs/") {
        // Only the damage is aimed; a personality (auth, redirects,
        // encodings) applies to every blob.
        faults = Faults {
            drop_after: None,
            cut_at: None,
            flip_at: None,
            flip_always: false,
            stall: None,
            trickle_once: None,
            ignore_range: false,
            range_416_once: false,
            extra_bytes: 0,
            throttle: None,
            cdn_first_byte_delay: None,
            redirect_forever: false,
            ..faults
        };
    }

    // Token endpoint.
    if path.starts_with("/token") {
        if let Some(status) = faults.token_post_status.filter(|_| method == "POST") {
            log(status, 0);
            return respond(status, &[], b"");
        }
        let mut s = state.lock().unwrap();
        s.tokens_issued += 1;
        let t = format!("tok-{port}-{}", s.tokens_issued);
        s.tokens.insert(t.clone(), Instant::now());
        drop(s);
        log(200, 0);
        let (ct, body) = faults
            .token_answer
            .clone()
            .unwrap_or(("application/json".into(), r#"{"token":"{t}","expires_in":300}"#.into()));
        let body = body.replace("{t}", &t);
        if faults.token_chunked {
            return respond_chunked(&mut out, 200, &[("Content-Type", ct)], body.as_bytes(), head);
        }
        return respond(200, &[("Content-Type", ct)], body.as_bytes());
    }

    // Basic auth: the exact header or a 401.
    if let Some(expected) = &faults.basic_auth {
        if authorization.as_deref() != Some(expected.as_str()) && !path.contains("/cdn/") {
            log(401, 0);
            let challenge = faults.challenge.clone().unwrap_or(r#"Basic realm="fault""#.into());
            return respond(401, &[("WWW-Authenticate", challenge)], b"");
        }
    }

    // Bearer auth, with tokens that the server expires on its own schedule.
    if let Some(lifetime) = faults.token_lifetime {
        let valid = authorization
            .as_deref()
            .and_then(|a| a.strip_prefix("Bearer "))
            .and_then(|t| state.lock().unwrap().tokens.get(t).copied())
            .is_some_and(|issued| issued.elapsed() < lifetime)
            || faults.tokens_of.is_some_and(|p| {
                authorization
                    .as_deref()
                    .is_some_and(|a| a.starts_with(&format!("Bearer tok-{p}-")))
            });
        if !valid && faults.harbor_basic_on_expiry && authorization.is_some() {
            log(401, 0);
            return respond(
                401,
                &[("WWW-Authenticate", r#"Basic realm="harbor""#.into())],
                b"{\"errors\":[{\"code\":\"UNAUTHORIZED\"}]}",
            );
        }
        if !valid {
            log(401, 0);
            let realm = faults
                .token_realm
                .clone()
                .unwrap_or(format!("http://127.0.0.1:{port}/token"));
            let challenge = match &faults.challenge {
                Some(c) => c.replace("{realm}", &realm),
                None => format!(r#"Bearer realm="{realm}",service="fault",scope="repository:x:pull""#),
            };
            let mut headers = Vec::new();
            if !faults.challenge_only_at_ping || path == "/v2/" {
                if let Some(extra) = &faults.extra_challenge {
                    headers.push(("WWW-Authenticate", extra.clone()));
                }
                headers.push(("WWW-Authenticate", challenge));
            }
            if let Some(ct) = &faults.error_content_type {
                headers.push(("Content-Type", ct.clone()));
            }
            return respond(401, &headers, b"{\"errors\":[{\"code\":\"UNAUTHORIZED\"}]}");
        }
    }

    if let Some((needle, status, retry_after)) = &faults.status_once {
        if path.contains(needle.as_str()) && once(&mut state.lock().unwrap(), "status") {
            log(*status, 0);
            let mut extra = Vec::new();
            if let Some(s) = retry_after {
                extra.push(("Retry-After", s.to_string()));
            }
            return respond(*status, &extra, b"");
        }
    }

    if path == "/v2/" || path == "/v2" {
        log(200, 0);
        return respond(200, &[], b"{}");
    }

    // The tag list, paged.
    if let Some((repo, query)) = path
        .strip_prefix("/v2/")
        .and_then(|p| p.split_once("/tags/list"))
        .filter(|_| !faults.tag_list.is_empty() || faults.tags_next.is_some())
    {
        let arg = |k: &str| {
            query
                .trim_start_matches('?')
                .split('&')
                .find_map(|kv| kv.strip_prefix(&format!("{k}=")).map(str::to_string))
        };
        let n: usize = arg("n").and_then(|n| n.parse().ok()).unwrap_or(usize::MAX);
        let from = match arg("last") {
            Some(l) => faults.tag_list.iter().position(|t| *t == l).map_or(0, |i| i + 1),
            None => 0,
        };
        let page: Vec<&String> = faults.tag_list.iter().skip(from).take(n).collect();
        let mut extra = vec![("Content-Type", "application/json".to_string())];
        let count = state.lock().unwrap().log.len();
        match &faults.tags_next {
            Some(next) => extra.push((
                "Link",
                format!("<{}>; rel=\"next\"", next.replace("{n}", &count.to_string())),
            )),
            None if from + page.len() < faults.tag_list.len() => {
                let last = page.last().map_or("", |t| t.as_str());
                extra.push((
                    "Link",
                    format!("</v2/{repo}/tags/list?n={n}&last={last}>; rel=\"next\""),
                ));
            }
            None => {}
        }
        let body = serde_json::to_vec(&serde_json::json!({"name": repo, "tags": page})).unwrap();
        log(200, body.len() as u64);
        return respond(200, &extra, &body);
    }

    // Manifests.
    // Manifests, and the referrers API (served from `REPO/referrers/DIGEST`).
    let manifest_key = path.strip_prefix("/v2/").and_then(|p| {
        p.split_once("/manifests/")
            .map(|(r, m)| format!("{r}/{m}"))
            .or_else(|| p.split_once("/referrers/").map(|(r, d)| format!("{r}/referrers/{d}")))
    });
    if let Some(key) = manifest_key {
        if faults.rate_limited {
            log(429, 0);
            return respond(
                429,
                &[
                    ("ratelimit-limit", "100;w=21600".into()),
                    ("ratelimit-remaining", "0;w=21600".into()),
                    ("Retry-After", "3600".into()),
                ],
                br#"{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit."}]}"#,
            );
        }
        if let Some(status) = faults.head_status.filter(|_| head) {
            log(status, 0);
            return respond(status, &[], b"");
        }
        let mut found = state.lock().unwrap().manifests.get(&key).cloned();
        let upstream = state.lock().unwrap().upstream.clone();
        if let (None, Some((base, _))) = (&found, upstream) {
            if let Some((repo, reference)) = key.split_once("/manifests/").or_else(|| key.rsplit_once('/')) {
                let accept = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";
                if let Some((ct, bytes)) = upstream_get(&format!("{base}/v2/{repo}/manifests/{reference}"), accept) {
                    let entry = (ct, bytes.clone(), super::sha256(&bytes));
                    state.lock().unwrap().manifests.insert(key.clone(), entry.clone());
                    found = Some(entry);
                }
            }
        }
        if found.is_none() && faults.missing_repo_is_401 {
            log(401, 0);
            let challenge = format!(
                r#"Bearer realm="http://127.0.0.1:{port}/token",service="fault",scope="repository:{}:pull",error="insufficient_scope""#,
                key.rsplit_once('/').map_or("", |(r, _)| r)
            );
            return respond(
                401,
                &[("WWW-Authenticate", challenge)],
                br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}"#,
            );
        }
        let Some((mt, bytes, real_digest)) = found else {
            log(404, 0);
            return respond(
                404,
                &[],
                br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
            );
        };
        let ct = faults.manifest_content_type.clone().unwrap_or(mt);
        let digest = if faults.wrong_digest_header {
            super::sha256(b"other")
        } else {
            real_digest
        };
        if faults.cut_manifest_once && once(&mut state.lock().unwrap(), "cut") {
            log(200, (bytes.len() / 2) as u64);
            let head = format!(
                "HTTP/1.1 200 X\r\nConnection: close\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
                bytes.len()
            );
            out.write_all(head.as_bytes())?;
            out.write_all(&bytes[..bytes.len() / 2])?;
            let _ = out.shutdown(Shutdown::Both);
            return Ok(());
        }
        if faults.strict_accept
            && !accept
                .as_deref()
                .unwrap_or("")
                .contains(ct.split(';').next().unwrap_or(""))
        {
            log(406, 0);
            return respond(406, &[], b"");
        }
        log(200, bytes.len() as u64);
        let mut headers = vec![("Content-Type", ct)];
        let hide_digest = faults.no_digest_header || (head && faults.head_without_digest);
        let send_digest = !hide_digest;
        if send_digest {
            headers.push(("Docker-Content-Digest", digest));
        }
        if faults.ratelimit_headers {
            headers.push(("ratelimit-limit", ";w=21600".into()));
            headers.push(("ratelimit-remaining", "76;w=21600".into()));
        }
        if faults.chunked {
            return respond_chunked(&mut out, 200, &headers, &bytes, head);
        }
        return respond(200, &headers, &bytes);
    }

    // Blobs, possibly redirected to another host.
    let blob_digest = path
        .strip_prefix("/v2/")
        .and_then(|p| p.split_once("/blobs/"))
        .map(|(_, d)| d.to_string())
        .or_else(|| {
            path.split_once("/cdn/")
                .map(|(_, d)| d.split('?').next().unwrap_or("").to_string())
        });
    let Some(digest) = blob_digest else {
        log(404, 0);
        return respond(404, &[], b"");
    };
    if faults.redirect_forever {
        log(307, 0);
        let n = state.lock().unwrap().log.len();
        let base = path.split('?').next().unwrap_or("");
        return respond(307, &[("Location", format!("{base}?hop={n}"))], b"");
    }
    if path.starts_with("/v2/") {
        if let Some(base) = &faults.redirect_blobs_to {
            let n = state.lock().unwrap().log.len();
            let location = format!("{base}/cdn/{digest}?verify={n}-signature");
            if faults.redirect_html {
                log(302, 0);
                let body = format!("<a href=\"{location}\">Found</a>.\n");
                return respond(
                    302,
                    &[
                        ("Location", location),
                        ("Content-Type", "text/html; charset=utf-8".into()),
                        ("Docker-Content-Digest", digest.clone()),
                    ],
                    body.as_bytes(),
                );
            }
            log(307, 0);
            return respond(307, &[("Location", location)], b"");
        }
        if faults.relative_redirect {
            log(302, 0);
            return respond(
                302,
                &[("Location", format!("/artifacts-downloads/cdn/{digest}?token=x"))],
                b"",
            );
        }
    }
    if path.contains("/cdn/") {
        if let Some(d) = faults.cdn_first_byte_delay {
            std::thread::sleep(d);
        }
        if faults.cdn_refuses_authorization && authorization.is_some() {
            log(400, 0);
            return respond(
                400,
                &[("Content-Type", "application/xml".into())],
                b"<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed</Message></Error>",
            );
        }
    }
    let mut blob = state.lock().unwrap().blobs.get(&digest).cloned();
    let upstream = state.lock().unwrap().upstream.clone();
    if let (None, Some((base, cdn_repo))) = (&blob, upstream) {
        let repo = path
            .strip_prefix("/v2/")
            .and_then(|p| p.split_once("/blobs/"))
            .map_or(cdn_repo, |(r, _)| r.to_string());
        if let Some((_, bytes)) = upstream_get(&format!("{base}/v2/{repo}/blobs/{digest}"), "*/*") {
            state.lock().unwrap().blobs.insert(digest.clone(), bytes.clone());
            blob = Some(bytes);
        }
    }
    let Some(mut body) = blob else {
        log(404, 0);
        return respond(404, &[], br#"{"errors":[{"code":"BLOB_UNKNOWN"}]}"#);
    };
    body.extend(std::iter::repeat_n(b'X', faults.extra_bytes));
    let total = body.len() as u64;
    if let (Some(m), Some(want)) = (faults.ranges, range.as_deref().and_then(|r| parse_ranges(r, total))) {
        let (status, headers, bytes) = ranged_answer(m, &body, &want);
        log(status, bytes.len() as u64);
        return respond(status, &headers, &bytes);
    }
    if faults.strict_range {
        let ok = range.as_deref().is_none_or(|r| {
            r.strip_prefix("bytes=").is_some_and(|v| {
                let (a, b) = v.split_once('-').unwrap_or(("", "x"));
                !a.is_empty() && a.bytes().all(|c| c.is_ascii_digit()) && b.bytes().all(|c| c.is_ascii_digit())
            })
        });
        if !ok {
            log(416, 0);
            return respond(416, &[], b"");
        }
    }
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.trim_end_matches('-').parse::<u64>().ok());
    let mut s = state.lock().unwrap();
    if start.is_some() && faults.range_416_once && once(&mut s, "416") {
        drop(s);
        log(416, 0);
        return respond(416, &[("Content-Range", format!("bytes */{total}"))], b"");
    }
    let (status, offset) = match start {
        Some(st) if !faults.ignore_range && st <= total => (206, st),
        _ => (200, 0),
    };
    // A once-fault is spent only on a body long enough for it to fire.
    let left = total - offset;
    let drop_after = faults.drop_after.filter(|d| *d < left && once(&mut s, "drop"));
    let stall = faults.stall.filter(|(at, _)| *at < left && once(&mut s, "stall"));
    let trickle = faults.trickle_once.filter(|_| once(&mut s, "trickle"));
    let flip = faults.flip_at.filter(|_| faults.flip_always || once(&mut s, "flip"));
    // Logged now, so tests see requests in the order they arrived.
    s.log.push(Logged {
        method: method.clone(),
        path: path.clone(),
        range: range.clone(),
        authorization: authorization.clone(),
        status,
        body_bytes: 0,
        finished: false,
    });
    let entry = s.log.len() - 1;
    drop(s);

    if faults.chunked && faults.drop_after.is_none() && faults.stall.is_none() {
        let mut headers = Vec::new();
        if status == 206 {
            headers.push((
                "Content-Range",
                format!("bytes {offset}-{}/{total}", total.saturating_sub(1)),
            ));
        }
        let r = respond_chunked(&mut out, status, &headers, &body[offset as usize..], head);
        let mut s = state.lock().unwrap();
        s.log[entry].body_bytes = total - offset;
        s.log[entry].finished = true;
        return r;
    }
    let mut head = format!(
        "HTTP/1.1 {status} X\r\nConnection: close\r\nContent-Length: {}\r\n",
        total - offset
    );
    if status == 206 {
        head.push_str(&format!(
            "Content-Range: bytes {offset}-{}/{total}\r\n",
            total.saturating_sub(1)
        ));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    let mut sent = 0u64;
    let mut pos = offset;
    let started = Instant::now();
    let chunk_len = trickle.map(|(n, _)| n).unwrap_or(16 * 1024);
    let result = (|| -> std::io::Result<()> {
        while pos < total {
            if stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            let mut end = (pos + chunk_len as u64).min(total);
            if let Some(c) = faults.cut_at.filter(|c| *c < total) {
                if pos >= c {
                    return Err(std::io::Error::other("cut"));
                }
                end = end.min(c);
            }
            if let Some(d) = drop_after {
                if sent >= d {
                    return Err(std::io::Error::other("drop"));
                }
                end = end.min(offset + d.max(sent + 1));
            }
            if let Some((at, _)) = stall {
                if sent < at {
                    end = end.min(offset + at);
                }
            }
            let mut chunk = body[pos as usize..end as usize].to_vec();
            if let Some(f) = flip {
                if (pos..end).contains(&f) {
                    chunk[(f - pos) as usize] ^= 0xff;
                }
            }
            out.write_all(&chunk)?;
            sent += chunk.len() as u64;
            pos = end;
            if let Some((at, dur)) = stall {
                if sent == at {
                    out.flush()?;
                    let until = Instant::now() + dur;
                    while Instant::now() < until && !stop.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    return Err(std::io::Error::other("stalled"));
                }
            }
            if let Some((_, pause)) = trickle {
                std::thread::sleep(pause);
            }
            if let Some(rate) = faults.throttle {
                let due = Duration::from_secs_f64(sent as f64 / rate as f64);
                let el = started.elapsed();
                if due > el {
                    std::thread::sleep(due - el);
                }
            }
        }
        Ok(())
    })();
    if let Some(e) = state.lock().unwrap().log.get_mut(entry) {
        e.body_bytes = sent;
        e.finished = true;
    }
    if result.is_err() {
        let _ = out.shutdown(Shutdown::Both);
    }
    let mut sink = [0u8; 1];
    let _ = reader.read(&mut sink);
    Ok(())
}

/// An answer with `Transfer-Encoding: chunked` and no Content-Length.
fn respond_chunked(
    out: &mut TcpStream,
    status: u16,
    extra: &[(&str, String)],
    body: &[u8],
    head: bool,
) -> std::io::Result<()> {
    let mut h = format!("HTTP/1.1 {status} X\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n");
    for (k, v) in extra {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.push_str("\r\n");
    out.write_all(h.as_bytes())?;
    if head {
        return Ok(());
    }
    for chunk in body.chunks(7919) {
        out.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())?;
        out.write_all(chunk)?;
        out.write_all(b"\r\n")?;
    }
    out.write_all(b"0\r\n\r\n")
}

/// GET from the real registry a server stands in front of.
fn upstream_get(url: &str, accept: &str) -> Option<(String, Vec<u8>)> {
    let resp = ureq::get(url).header("Accept", accept).call().ok()?;
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bytes = resp.into_body().with_config().limit(1 << 30).read_to_vec().ok()?;
    Some((ct, bytes))
}

//! The registry client: authentication, manifests, and resumable blob
//! downloads with retries, over one blocking ureq agent.
//!
//! Redirects are followed here rather than by ureq so that the registry's
//! Authorization header is sent only to the registry's own origin, and so
//! that every resume goes back to the registry for a fresh (signed) URL.

use crate::auth::{self, Challenge, Credentials, Secret};
use crate::digest::{hash_into, Digest, Hasher};
use crate::error::{Error, Result};
use crate::progress::{human, BlobProgress, Progress};
use crate::reference::Reference;
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};
use ureq::http::Response;
use ureq::Body;

/// Tunables for talking to the registry.
#[derive(Debug, Clone)]
pub struct Options {
    /// Talk plain HTTP instead of HTTPS (and allow credentials over it).
    pub plain_http: bool,
    /// Attempts after the first one, for failures that retrying can fix.
    pub retries: u32,
    /// Connect timeout, and the longest wait for the next bytes.
    pub timeout: Duration,
    /// A body slower than this many bytes a second ...
    pub speed_limit: u64,
    /// ... for this long is abandoned and resumed.
    pub speed_time: Duration,
    /// Trusted roots, or verification off.
    pub tls: std::sync::Arc<rustls::ClientConfig>,
    /// Proxies from the environment.
    pub proxies: crate::proxy::ProxyEnv,
}

const MAX_REDIRECTS: usize = 10;
const MAX_TOKEN_BYTES: u64 = 1024 * 1024;
const MAX_ERROR_BODY: u64 = 64 * 1024;
/// The longest `Retry-After` we honour; a server asking for more gets this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Renew a bearer token this long before it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(10);
const BUF_SIZE: usize = 64 * 1024;

/// A manifest as the registry served it.
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub content_type: Option<String>,
    /// The `Docker-Content-Digest` header, when present.
    pub digest_header: Option<String>,
}

/// A failed HTTP exchange, and whether trying again may help.
struct Failure {
    error: Error,
    retryable: bool,
    retry_after: Option<Duration>,
}

impl Failure {
    fn fatal(error: Error) -> Failure {
        Failure {
            error,
            retryable: false,
            retry_after: None,
        }
    }
    fn transient(error: Error) -> Failure {
        Failure {
            error,
            retryable: true,
            retry_after: None,
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::fatal(e)
    }
}

/// A client for one repository on one registry.
pub struct Client {
    /// Direct connections.
    agent: ureq::Agent,
    /// Through the proxies the environment names, for http and https URLs.
    http_proxied: Option<ureq::Agent>,
    https_proxied: Option<ureq::Agent>,
    /// `https://host[:port]`: the only origin that receives the registry's Authorization.
    origin: String,
    host: String,
    /// This client speaks plain HTTP (and accepts http redirects and realms).
    plain: bool,
    repository: String,
    creds: Option<Credentials>,
    /// The Bearer challenge, kept to renew the token: only ever one that the
    /// registry's own origin sent, since its realm gets the credentials.
    challenge: Option<OwnChallenge>,
    bearer: Option<(Secret, Instant)>,
    /// The registry asked for Basic auth.
    basic: bool,
    opts: Options,
    progress: Progress,
    jitter_state: u64,
}

impl Client {
    /// A client for the registry a reference names.
    pub fn new(reference: &Reference, creds: Option<Credentials>, opts: Options, progress: Progress) -> Client {
        let plain = opts.plain_http;
        Client::for_host(
            reference.api_host(),
            plain,
            &reference.repository,
            creds,
            opts,
            progress,
        )
    }

    /// A client for `repository` on `host` (a mirror, or the registry itself).
    pub fn for_host(
        host: &str,
        plain: bool,
        repository: &str,
        creds: Option<Credentials>,
        opts: Options,
        progress: Progress,
    ) -> Client {
        let agent = |proxy: Option<ureq::Proxy>| {
            use ureq::unversioned::transport::{ConnectProxyConnector, Connector, TcpConnector};
            // ureq's default chain with our TLS at the end (and no SOCKS).
            let connector =
                ().chain(ConnectProxyConnector::default())
                    .chain(TcpConnector::default())
                    .chain(crate::tls::TlsConnector(opts.tls.clone()));
            let config = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .max_redirects(0)
                .proxy(proxy)
                .timeout_connect(Some(opts.timeout))
                .timeout_per_read(Some(opts.timeout))
                .timeout_per_write(Some(opts.timeout))
                .user_agent(concat!("minipull/", env!("CARGO_PKG_VERSION")))
                .build();
            ureq::Agent::with_parts(
                config,
                connector,
                ureq::unversioned::resolver::DefaultResolver::default(),
            )
        };
        let (http_proxied, https_proxied) = (
            opts.proxies.http.clone().map(|p| agent(Some(p))),
            opts.proxies.https.clone().map(|p| agent(Some(p))),
        );
        let scheme = if plain { "http" } else { "https" };
        let seed = {
            use std::hash::{BuildHasher, Hasher as _};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u32(std::process::id());
            h.finish() | 1
        };
        // Credentials travel over plain HTTP only when the user said --plain-http.
        let creds = creds.filter(|_| !plain || opts.plain_http);
        Client {
            agent: agent(None),
            http_proxied,
            https_proxied,
            origin: format!("{scheme}://{host}"),
            host: host.to_string(),
            plain,
            repository: repository.to_string(),
            creds,
            challenge: None,
            bearer: None,
            basic: false,
            opts,
            progress,
            jitter_state: seed,
        }
    }

    /// The agent for `url`: through the environment's proxy for its scheme,
    /// unless NO_PROXY names its host.
    fn agent_for(&self, url: &str) -> &ureq::Agent {
        let proxied = if url.starts_with("https://") {
            self.https_proxied.as_ref()
        } else {
            self.http_proxied.as_ref()
        };
        match proxied {
            Some(a) if !self.opts.proxies.bypass(host_of(url)) => a,
            _ => &self.agent,
        }
    }

    /// The host API requests go to.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `GET /v2/`: learn how the registry wants us to authenticate, and
    /// get a token up front when it uses bearer tokens.
    pub fn ping(&mut self) -> Result<()> {
        let url = format!("{}/v2/", self.origin);
        let resp = self.with_retries("contacting the registry", |c| c.send(&url, None, None, false))?;
        match resp.status().as_u16() {
            401 => {
                self.learn_challenge(&resp)?;
                if self.challenge.is_some() {
                    self.fetch_token()?;
                }
                Ok(())
            }
            // Some registries answer /v2/ with 404 and still serve images.
            200..=299 | 404 => Ok(()),
            s => Err(Error::network(format!("{} answered /v2/ with HTTP {s}", self.host))
                .hint("is this a container registry (OCI distribution / Docker v2 API)?")),
        }
    }

    /// Fetch a manifest by tag or digest, at most `max` bytes.
    pub fn manifest(&mut self, reference: &str, accept: &str, max: u64) -> Result<FetchedManifest> {
        let url = format!("{}/v2/{}/manifests/{}", self.origin, self.repository, reference);
        let what = format!("manifest {}:{}", self.repository, reference);
        let mut attempt = 0;
        loop {
            let mut resp = self.get(&what, &url, Some(accept), None)?;
            let status = resp.status().as_u16();
            if status != 200 {
                return Err(self.status_error(&what, &mut resp));
            }
            if resp.body().content_length().is_some_and(|l| l > max) {
                return Err(too_big(&what, max));
            }
            let header = |name: &str| {
                resp.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let content_type = header("content-type");
            let digest_header = header("docker-content-digest");
            match resp.body_mut().with_config().limit(max).read_to_vec() {
                Ok(bytes) => {
                    return Ok(FetchedManifest {
                        bytes,
                        content_type,
                        digest_header,
                    })
                }
                Err(ureq::Error::BodyExceedsLimit(_)) => return Err(too_big(&what, max)),
                // The body broke off: ask again, like any other transient failure.
                Err(e) => {
                    let failure = transport_error(&e, &self.host);
                    if !failure.retryable || attempt >= self.opts.retries {
                        return Err(failure.error.context(format!("reading {what}")));
                    }
                    attempt += 1;
                    self.pause_before_retry(&format!("reading {what}"), &failure, attempt);
                }
            }
        }
    }

    /// Download a blob into `part`, resuming from whatever `part` already
    /// holds, verify it, and leave it fsynced. Returns the bytes fetched
    /// over the network by this call.
    pub fn download_blob(&mut self, digest: &Digest, size: u64, part: &Path, bp: &mut BlobProgress) -> Result<u64> {
        let mut p = Partial::open(part, digest, size)?;
        bp.resumed_from(p.have);
        let url = format!("{}/v2/{}/blobs/{}", self.origin, self.repository, digest);
        let what = format!("blob {}", digest.short());
        let mut downloaded = 0u64;
        // A wrong digest or an over-long body gets one more try from zero.
        let mut bad_content = 0;
        // Attempts in a row that brought no new bytes.
        let mut failures = 0u32;
        let mut buf = vec![0u8; BUF_SIZE];
        loop {
            if p.have == size {
                let got = p.hasher.clone().finish();
                if got == *digest {
                    p.file.sync_all().map_err(|e| p.write_error(e))?;
                    return Ok(downloaded);
                }
                bad_content += 1;
                let e = Error::integrity(format!("{what}: the downloaded content hashes to {got}"));
                if bad_content >= 2 {
                    p.discard();
                    return Err(e.hint("the registry or something between it and us serves corrupt data; try a mirror or another network"));
                }
                bp.retrying("does not match its digest; discarding it and downloading it once more");
                p.restart()?;
                continue;
            }

            let range = (p.have > 0).then_some(p.have);
            let mut resp = self.get(&what, &url, None, range)?;
            // How many bytes of the answer we already hold; None: unusable.
            let skip = match resp.status().as_u16() {
                200 => Some(p.have), // the server ignored Range
                206 => content_range_start(&resp)
                    .filter(|start| *start <= p.have)
                    .map(|start| p.have - start),
                // 416: the server says our range does not exist, so our partial
                // disagrees with it.
                416 => None,
                _ => return Err(self.status_error(&what, &mut resp)),
            };
            let Some(mut skip) = skip else {
                bp.retrying("the server refused our resume range; starting this blob over");
                p.restart()?;
                failures += 1;
                self.check_budget(failures, &what)?;
                continue;
            };

            let mut reader = resp.into_body().into_reader();
            let attempt_start = p.have;
            let mut window_start = Instant::now();
            let mut window_bytes = 0u64;
            let outcome = loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) => break Attempt::Broken("the connection closed early".into()),
                    Ok(n) => n,
                    Err(e) => break Attempt::Broken(describe_io(&e)),
                };
                let k = skip.min(n as u64) as usize;
                skip -= k as u64;
                downloaded += k as u64; // skipped, but still paid for
                let chunk = &buf[k..n];
                if chunk.is_empty() {
                    continue;
                }
                if p.have + chunk.len() as u64 > size {
                    break Attempt::TooLong;
                }
                p.append(chunk)?;
                downloaded += chunk.len() as u64;
                window_bytes += chunk.len() as u64;
                bp.update(p.have);
                if p.have == size {
                    // Read on once to see whether the body ends where the descriptor says.
                    break match reader.read(&mut buf) {
                        Ok(n) if n > 0 => Attempt::TooLong,
                        _ => Attempt::Complete,
                    };
                }
                let elapsed = window_start.elapsed();
                if elapsed >= self.opts.speed_time {
                    let rate = (window_bytes as f64 / elapsed.as_secs_f64()) as u64;
                    if rate < self.opts.speed_limit {
                        break Attempt::Broken(format!(
                            "the transfer is too slow ({}/s for {}s)",
                            human(rate),
                            elapsed.as_secs()
                        ));
                    }
                    window_start = Instant::now();
                    window_bytes = 0;
                }
            };
            match outcome {
                // Verified at the top of the loop.
                Attempt::Complete => {}
                Attempt::TooLong => {
                    bad_content += 1;
                    let e = Error::integrity(format!(
                        "{what}: the registry sent more than the {size} bytes its descriptor says"
                    ));
                    if bad_content >= 2 {
                        p.discard();
                        return Err(e);
                    }
                    bp.retrying("is longer than its descriptor says; discarding it and downloading it once more");
                    p.restart()?;
                }
                Attempt::Broken(why) => {
                    failures = if p.have > attempt_start { 0 } else { failures + 1 };
                    let at = format!("{why} at {} of {}", human(p.have), human(size));
                    self.check_budget(failures, &what).map_err(|e| e.context(&at))?;
                    bp.retrying(format!("{at}; resuming"));
                    self.sleep_backoff(failures, None);
                }
            }
        }
    }

    fn check_budget(&self, failures: u32, what: &str) -> Result<()> {
        if failures > self.opts.retries {
            return Err(
                Error::network(format!("{what}: gave up after {} attempts without progress", failures))
                    .hint("the partial download is kept; run the same command again to resume, or raise --retries"),
            );
        }
        Ok(())
    }

    /// A GET with authentication, retries, and one re-authentication on 401.
    fn get(&mut self, what: &str, url: &str, accept: Option<&str>, range: Option<u64>) -> Result<Response<Body>> {
        let resp = self.with_retries(what, |c| c.send(url, accept, range, true))?;
        if resp.status().as_u16() != 401 {
            return Ok(resp);
        }
        // The token expired or lacks scope, or the registry wants credentials.
        self.learn_challenge(&resp)?;
        if self.challenge.is_some() {
            self.fetch_token()?;
        } else if !self.basic {
            return Err(Error::auth(format!(
                "{what}: the registry refused us (HTTP 401) without saying how to log in"
            )));
        }
        let mut resp = self.with_retries(what, |c| c.send(url, accept, range, true))?;
        if resp.status().as_u16() == 401 {
            return Err(self.status_error(what, &mut resp));
        }
        Ok(resp)
    }

    /// Run `f` until it succeeds, fails for good, or the retry budget is spent.
    fn with_retries<F>(&mut self, what: &str, mut f: F) -> Result<Response<Body>>
    where
        F: FnMut(&mut Client) -> std::result::Result<Response<Body>, Failure>,
    {
        let mut attempt = 0;
        loop {
            let failure = match f(self) {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    if status != 429 && !(500..=599).contains(&status) {
                        return Ok(resp);
                    }
                    let retry_after = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
                    let mut resp = resp;
                    if attempt >= self.opts.retries {
                        return Err(self.status_error(what, &mut resp));
                    }
                    Failure {
                        error: Error::network(format!("HTTP {status}")),
                        retryable: true,
                        retry_after,
                    }
                }
                Err(f) => f,
            };
            if !failure.retryable || attempt >= self.opts.retries {
                let mut e = failure.error.context(what);
                if failure.retryable {
                    e.message.push_str(&format!(" (after {} attempts)", attempt + 1));
                }
                return Err(e);
            }
            attempt += 1;
            self.pause_before_retry(what, &failure, attempt);
        }
    }

    /// Say what failed and that we try again, then back off.
    fn pause_before_retry(&mut self, what: &str, failure: &Failure, attempt: u32) {
        self.progress.note(format!(
            "{what}: {}; retrying ({attempt}/{})",
            failure.error.message, self.opts.retries
        ));
        self.sleep_backoff(attempt, failure.retry_after);
    }

    /// Exponential backoff with jitter: 0.5 s, 1 s, 2 s ... up to 30 s,
    /// each scaled by a random factor in [0.5, 1); `Retry-After` wins.
    fn sleep_backoff(&mut self, attempt: u32, retry_after: Option<Duration>) {
        if let Some(d) = retry_after {
            std::thread::sleep(d);
            return;
        }
        // xorshift: enough randomness to spread out clients that failed together.
        let mut x = self.jitter_state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.jitter_state = x;
        let base = 500u64.saturating_mul(1 << attempt.saturating_sub(1).min(6)).min(30_000);
        let factor = 0.5 + (x % 1000) as f64 / 2000.0;
        std::thread::sleep(Duration::from_millis((base as f64 * factor) as u64));
    }

    /// One GET, following redirects. The Authorization header goes only to
    /// the registry's origin; a redirect elsewhere is followed without it.
    fn send(
        &mut self,
        url: &str,
        accept: Option<&str>,
        range: Option<u64>,
        with_auth: bool,
    ) -> std::result::Result<Response<Body>, Failure> {
        let authorization = if with_auth { self.authorization()? } else { None };
        let mut url = url.to_string();
        for _ in 0..=MAX_REDIRECTS {
            let mut req = self.agent_for(&url).get(&url);
            if let Some(a) = accept {
                req = req.header("Accept", a);
            }
            if let Some(from) = range {
                req = req.header("Range", format!("bytes={from}-"));
            }
            if let Some(auth) = &authorization {
                if same_origin(&url, &self.origin) {
                    req = req.header("Authorization", auth.expose());
                }
            }
            let resp = req.call().map_err(|e| transport_error(&e, host_of(&url)))?;
            let status = resp.status().as_u16();
            if !matches!(status, 301 | 302 | 303 | 307 | 308) {
                return Ok(resp);
            }
            let location = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| Failure::fatal(Error::network(format!("HTTP {status} redirect without a Location"))))?;
            let next = resolve_url(&url, location);
            if !(next.starts_with("https://") || (self.plain && next.starts_with("http://"))) {
                return Err(Failure::fatal(Error::network(format!(
                    "refusing a redirect to {} (only https{} is allowed)",
                    scheme_and_host(&next),
                    if self.plain { " or http" } else { "" }
                ))));
            }
            url = next;
        }
        Err(Failure::fatal(Error::network(format!(
            "more than {MAX_REDIRECTS} redirects in a row"
        ))))
    }

    /// The Authorization value for the registry, renewing an expiring token.
    fn authorization(&mut self) -> Result<Option<Secret>> {
        if let Some((token, renew_at)) = &self.bearer {
            if Instant::now() < *renew_at {
                return Ok(Some(Secret::new(format!("Bearer {}", token.expose()))));
            }
            self.fetch_token()?;
            return Ok(self
                .bearer
                .as_ref()
                .map(|(t, _)| Secret::new(format!("Bearer {}", t.expose()))));
        }
        if self.basic {
            if let Some(c) = self.creds.as_ref().filter(|c| !c.username.is_empty()) {
                return Ok(Some(c.basic_header()));
            }
        }
        Ok(None)
    }

    /// Remember what a 401 asked for.
    fn learn_challenge(&mut self, resp: &Response<Body>) -> Result<()> {
        let challenges = OwnChallenge::of(resp, &self.origin, &self.host)?;
        if let Some(bearer) = challenges.iter().find(|c| c.0.scheme == "bearer") {
            if bearer.0.param("realm").is_none_or(str::is_empty) {
                return Err(Error::auth(
                    "the registry asked for a bearer token but named no realm to get it from",
                ));
            }
            self.challenge = Some(bearer.clone());
        } else if challenges.iter().any(|c| c.0.scheme == "basic") {
            self.basic = true;
            if self.creds.is_none() {
                return Err(Error::auth(format!("{} requires a username and password", self.host))
                    .hint("give --username USER --password-stdin, or --auth-file with an entry for this registry"));
            }
        }
        Ok(())
    }

    /// Get a bearer token for pulling this repository from the challenge's realm.
    fn fetch_token(&mut self) -> Result<()> {
        let Some(OwnChallenge(ch)) = self.challenge.clone() else {
            return Ok(());
        };
        let realm = ch.param("realm").unwrap_or_default().to_string();
        let realm_ok = realm.starts_with("https://") || (self.plain && realm.starts_with("http://"));
        if !realm_ok {
            return Err(Error::auth(format!(
                "refusing the token realm {} (it must be https{})",
                scheme_and_host(&realm),
                if self.plain { " or http" } else { "" }
            )));
        }
        let mut query = Vec::new();
        if let Some(service) = ch.param("service") {
            query.push(format!("service={}", percent_encode(service)));
        }
        query.push(format!(
            "scope={}",
            percent_encode(&format!("repository:{}:pull", self.repository))
        ));
        let sep = if realm.contains('?') { '&' } else { '?' };
        let url = format!("{realm}{sep}{}", query.join("&"));
        let basic = self
            .creds
            .as_ref()
            .filter(|c| !c.username.is_empty())
            .map(Credentials::basic_header);
        // An identity token is an OAuth2 refresh token: POST it to the realm
        // (the token spec's OAuth2 flow) instead of a GET with Basic.
        let refresh = self.creds.as_ref().and_then(|c| c.identity_token.clone()).map(|t| {
            let mut form = format!(
                "grant_type=refresh_token&client_id=minipull&refresh_token={}&scope={}",
                percent_encode(t.expose()),
                percent_encode(&format!("repository:{}:pull", self.repository))
            );
            if let Some(service) = ch.param("service") {
                form.push_str(&format!("&service={}", percent_encode(service)));
            }
            Secret::new(form)
        });
        let started = Instant::now();
        let agent = self.agent_for(&url).clone();
        let mut resp = self.with_retries("getting a token", |_| {
            let answer = match &refresh {
                Some(form) => agent
                    .post(&realm)
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .send(form.expose()),
                None => {
                    let mut req = agent.get(&url);
                    if let Some(b) = &basic {
                        req = req.header("Authorization", b.expose());
                    }
                    req.call()
                }
            };
            answer.map_err(|e| transport_error(&e, host_of(&url)))
        })?;
        let status = resp.status().as_u16();
        if status == 401 || status == 403 {
            let e = if self.creds.is_some() {
                Error::auth(format!(
                    "the token server refused our credentials for {} (HTTP {status})",
                    self.host
                ))
                .hint("check the username and password")
            } else {
                Error::auth(format!(
                    "the token server refused an anonymous token for {} (HTTP {status})",
                    self.host
                ))
                .hint("log in: give --username USER --password-stdin, or --auth-file")
            };
            return Err(e);
        }
        if status != 200 {
            return Err(self.status_error("getting a token", &mut resp));
        }
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_TOKEN_BYTES)
            .read_to_vec()
            .map_err(|e| transport_error(&e, host_of(&url)).error.context("reading the token"))?;
        let answer = auth::parse_token_answer(&body)?;
        let lifetime = answer.expires_in.saturating_sub(TOKEN_MARGIN);
        self.bearer = Some((answer.token, started + lifetime));
        Ok(())
    }

    /// Turn a non-success answer into an error the user can act on.
    fn status_error(&self, what: &str, resp: &mut Response<Body>) -> Error {
        let status = resp.status().as_u16();
        let detail = resp
            .body_mut()
            .with_config()
            .limit(MAX_ERROR_BODY)
            .read_to_vec()
            .ok()
            .and_then(|b| registry_error_summary(&b))
            .map(|s| format!(": {s}"))
            .unwrap_or_default();
        match status {
            404 => Error::not_found(format!("{what} not found on {} (HTTP 404{detail})", self.host))
                .hint("check the repository name and tag; `minipull` normalizes `alpine` to `docker.io/library/alpine:latest`"),
            401 => Error::auth(format!("{what}: authentication refused by {} (HTTP 401{detail})", self.host)).hint(
                if self.creds.is_some() {
                    "check the username and password, and that this account may pull the repository"
                } else {
                    "the repository may be private or may not exist: log in with --username USER --password-stdin or --auth-file"
                },
            ),
            403 => Error::auth(format!("{what}: access denied by {} (HTTP 403{detail})", self.host)),
            429 | 500..=599 => Error::network(format!("{what}: {} answered HTTP {status}{detail}", self.host))
                .hint("the registry is overloaded or failing; try again later, or use --retries"),
            _ => Error::other(format!("{what}: unexpected HTTP {status} from {}{detail}", self.host)),
        }
    }
}

/// How one request for a blob ended.
enum Attempt {
    /// The body ended exactly at the descriptor's size.
    Complete,
    /// The body went past the descriptor's size.
    TooLong,
    /// The body broke off (or crawled); the reason, for the user.
    Broken(String),
}

/// A blob being downloaded: the file, how much of it is valid, and the
/// running hash of those bytes.
struct Partial<'a> {
    path: &'a Path,
    file: std::fs::File,
    have: u64,
    hasher: Hasher,
    algorithm: crate::digest::Algorithm,
}

impl<'a> Partial<'a> {
    /// Open `path`, keeping what a previous run left if it can still be
    /// part of a blob of `size` bytes, and re-hash it to restore the state.
    fn open(path: &'a Path, digest: &Digest, size: u64) -> Result<Partial<'a>> {
        let err = |e: std::io::Error| Error::storage(format!("cannot open {}", path.display()), &e);
        // Never through a link planted in its place (refused, exit 7).
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| crate::layout::planted_or(path, e, "cannot open"))?;
        let algorithm = digest.algorithm();
        let mut hasher = Hasher::new(algorithm);
        let mut have = file.metadata().map_err(err)?.len();
        if have > size {
            have = 0;
        } else if have > 0 {
            have = hash_into(&mut file, &mut hasher, have).map_err(err)?;
        }
        file.set_len(have).map_err(err)?;
        file.seek(SeekFrom::Start(have)).map_err(err)?;
        Ok(Partial {
            path,
            file,
            have,
            hasher,
            algorithm,
        })
    }

    fn write_error(&self, e: std::io::Error) -> Error {
        Error::storage(format!("cannot write {}", self.path.display()), &e)
    }

    fn append(&mut self, chunk: &[u8]) -> Result<()> {
        self.file.write_all(chunk).map_err(|e| self.write_error(e))?;
        self.hasher.update(chunk);
        self.have += chunk.len() as u64;
        Ok(())
    }

    /// Throw away what we hold and start the blob from zero.
    fn restart(&mut self) -> Result<()> {
        self.file.set_len(0).map_err(|e| self.write_error(e))?;
        self.file.seek(SeekFrom::Start(0)).map_err(|e| self.write_error(e))?;
        self.have = 0;
        self.hasher = Hasher::new(self.algorithm);
        Ok(())
    }

    /// Remove the file: its content is known to be bad.
    fn discard(&self) {
        let _ = std::fs::remove_file(self.path);
    }
}

fn too_big(what: &str, max: u64) -> Error {
    Error::integrity(format!("{what} is larger than the {} limit", human(max)))
}

/// Summarize a registry's JSON error body (`{"errors":[{"code","message"}]}`),
/// keeping it short and free of control characters.
fn registry_error_summary(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let first = v.get("errors")?.as_array()?.first()?;
    let code = first.get("code").and_then(|c| c.as_str()).unwrap_or("");
    let msg = first.get("message").and_then(|c| c.as_str()).unwrap_or("");
    let s: String = format!("{code} {msg}")
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    (!s.is_empty()).then_some(s)
}

/// A challenge sent by the registry's own origin: the only kind whose realm
/// may receive the user's credentials or whose token goes to the registry.
/// [`OwnChallenge::of`] is the one way to make one; a 401 from a redirect
/// target (a CDN, or anyone a hostile registry points at) cannot.
#[derive(Clone)]
struct OwnChallenge(Challenge);

impl OwnChallenge {
    /// The challenges of a 401, if the registry's origin sent it; an error
    /// naming the host if a redirect target did.
    fn of(resp: &Response<Body>, origin: &str, registry: &str) -> Result<Vec<OwnChallenge>> {
        use ureq::ResponseExt;
        let from = resp.get_uri().to_string();
        if !same_origin(&from, origin) {
            return Err(Error::auth(format!(
                "{} refused the download (HTTP 401) after {registry} redirected us there",
                scheme_and_host(&from)
            ))
            .hint("the registry's credentials and tokens are only ever sent to the registry and its own token realm"));
        }
        Ok(resp
            .headers()
            .get_all("www-authenticate")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(auth::parse_challenges)
            .map(OwnChallenge)
            .collect())
    }
}

/// Classify a transport failure. Everything but certificate and protocol
/// setup problems may go away on a retry.
fn transport_error(e: &ureq::Error, host: &str) -> Failure {
    use ureq::Error as U;
    match e {
        U::Timeout(t) => Failure::transient(Error::network(format!("{host} timed out ({t})"))),
        U::HostNotFound => Failure::transient(
            Error::network(format!("cannot resolve {host}")).hint("check the registry name and the DNS setup"),
        ),
        U::ConnectionFailed => Failure::transient(cannot_connect(host, "connection failed")),
        U::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            Failure::transient(cannot_connect(host, "connection refused"))
        }
        U::Io(io) if io.get_ref().is_some_and(|e| e.is::<rustls::Error>()) => {
            let why = io
                .get_ref()
                .and_then(|e| e.downcast_ref::<rustls::Error>())
                .map(crate::tls::describe)
                .unwrap_or_default();
            Failure::fatal(tls_hint(Error::network(format!("TLS with {host} failed: {why}"))))
        }
        U::Io(io) if io.to_string().contains("lookup address") => Failure::transient(
            Error::network(format!("cannot resolve {host}")).hint("check the registry name and the DNS setup"),
        ),
        U::Io(io) => Failure::transient(Error::network(format!("{host}: {}", describe_io(io)))),
        U::Tls(msg) => Failure::fatal(tls_hint(Error::network(format!("TLS with {host} failed: {msg}")))),
        U::Rustls(r) => Failure::fatal(tls_hint(Error::network(format!(
            "TLS with {host} failed: {}",
            crate::tls::describe(r)
        )))),
        U::Protocol(p) => Failure::transient(Error::network(format!("{host} broke the HTTP protocol: {p}"))),
        other => Failure::transient(Error::network(format!("{host}: {other}"))),
    }
}

fn cannot_connect(host: &str, why: &str) -> Error {
    Error::network(format!("cannot connect to {host} ({why})"))
        .hint("check that the registry is running and reachable, and its port")
}

fn tls_hint(e: Error) -> Error {
    let m = e.message.to_ascii_lowercase();
    if m.contains("certificate") || m.contains("issuer") || m.contains("notvalidforname") {
        e.hint("if the registry's certificate comes from a private CA, trust it with --ca-file CA.pem (or, at your own risk, --insecure)")
    } else {
        e.hint("if the registry speaks plain HTTP, add --plain-http")
    }
}

fn describe_io(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::TimedOut | K::WouldBlock => "no data arrived in time".into(),
        K::ConnectionReset => "the connection was reset".into(),
        K::ConnectionAborted => "the connection was aborted".into(),
        K::UnexpectedEof => "the connection closed early".into(),
        _ => e.to_string(),
    }
}

/// The start offset of a `Content-Range: bytes START-END/TOTAL` header.
fn content_range_start(resp: &Response<Body>) -> Option<u64> {
    let v = resp.headers().get("content-range")?.to_str().ok()?;
    let range = v.trim().strip_prefix("bytes ")?;
    range.split('-').next()?.trim().parse().ok()
}

/// `scheme://host[:port]` of a URL, lowercased, default port dropped.
fn origin_of(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    // Drop any userinfo: it is never part of the origin.
    let authority = authority.rsplit('@').next().unwrap_or(authority).to_ascii_lowercase();
    let scheme = scheme.to_ascii_lowercase();
    let authority = match (
        scheme.as_str(),
        authority.strip_suffix(":443"),
        authority.strip_suffix(":80"),
    ) {
        ("https", Some(h), _) => h.to_string(),
        ("http", _, Some(h)) => h.to_string(),
        _ => authority,
    };
    format!("{scheme}://{authority}")
}

fn same_origin(a: &str, b: &str) -> bool {
    origin_of(a) == origin_of(b)
}

fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split(['/', '?', '#']).next().unwrap_or(rest)
}

/// For messages: never the path or query, which may carry a signed token.
fn scheme_and_host(url: &str) -> String {
    match url.split_once("://") {
        Some((s, _)) => format!("{s}://{}", host_of(url)),
        None => "a URL without a scheme".into(),
    }
}

/// Resolve a `Location` header against the URL it came from.
fn resolve_url(base: &str, location: &str) -> String {
    let location = location.trim();
    let lower = location.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") || lower.contains("://") {
        return location.to_string();
    }
    let scheme = base.split_once("://").map_or("https", |(s, _)| s);
    if let Some(rest) = location.strip_prefix("//") {
        return format!("{scheme}://{rest}");
    }
    let origin = format!("{scheme}://{}", host_of(base));
    if location.starts_with('/') {
        return format!("{origin}{location}");
    }
    let path = base[origin.len()..].split(['?', '#']).next().unwrap_or("/");
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    format!("{origin}{}{location}", if dir.is_empty() { "/" } else { dir })
}

/// Percent-encode a query value (RFC 3986 unreserved characters pass).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Read the password for `--password-stdin`: the first line of stdin.
pub fn read_password_stdin() -> Result<Secret> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .map_err(|e| Error::usage(format!("cannot read the password from stdin: {e}")))?;
    let line = s.lines().next().unwrap_or("").to_string();
    if line.is_empty() {
        return Err(Error::usage("--password-stdin was given but stdin is empty"));
    }
    Ok(Secret::new(line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        assert!(same_origin("https://r.io/v2/x", "https://R.io:443"));
        assert!(!same_origin("https://r.io/v2/x", "https://cdn.r.io/x"));
        assert!(!same_origin("http://r.io/v2/x", "https://r.io"));
        assert!(!same_origin("https://r.io:5000/", "https://r.io"));
        assert!(!same_origin("https://r.io@evil.io/", "https://r.io"));
        assert_eq!(origin_of("http://127.0.0.1:80/x"), "http://127.0.0.1");
    }

    #[test]
    fn resolves_locations() {
        let base = "https://r.io/v2/a/blobs/sha256:1?x=1";
        assert_eq!(resolve_url(base, "https://cdn.io/b?sig=1"), "https://cdn.io/b?sig=1");
        assert_eq!(resolve_url(base, "/other"), "https://r.io/other");
        assert_eq!(resolve_url(base, "//cdn.io/p"), "https://cdn.io/p");
        assert_eq!(resolve_url(base, "rel"), "https://r.io/v2/a/blobs/rel");
        assert_eq!(resolve_url("http://h:1", "x"), "http://h:1/x");
    }

    #[test]
    fn messages_never_show_paths_or_queries() {
        assert_eq!(
            scheme_and_host("https://s3.io/bucket/obj?X-Amz-Signature=abc"),
            "https://s3.io"
        );
        assert_eq!(scheme_and_host("file:///etc/passwd"), "file://");
    }

    #[test]
    fn percent_encoding() {
        assert_eq!(
            percent_encode("repository:library/alpine:pull"),
            "repository%3Alibrary%2Falpine%3Apull"
        );
        assert_eq!(percent_encode("a b~"), "a%20b~");
    }

    #[test]
    fn registry_error_bodies() {
        let b = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#;
        assert_eq!(registry_error_summary(b).unwrap(), "MANIFEST_UNKNOWN manifest unknown");
        assert!(registry_error_summary(b"<html>").is_none());
        assert!(registry_error_summary(br#"{"errors":[]}"#).is_none());
    }
}

//! Sending requests: the agent for a URL (proxies), redirects followed by
//! hand so the registry's `Authorization` reaches only its own origin,
//! retries with backoff, and what a transport failure means.

use super::*;

/// A failed HTTP exchange, and whether trying again may help.
pub(super) struct Failure {
    pub(super) error: Error,
    pub(super) retryable: bool,
    pub(super) retry_after: Option<Duration>,
    /// Nobody answered (refused, reset, no route, no DNS answer, connect
    /// timeout): retried for the time budget (`--retry-for`), as a device
    /// at boot waits for its network and its registry.
    pub(super) unreachable: bool,
}

impl Failure {
    pub(super) fn fatal(error: Error) -> Failure {
        Failure {
            error,
            retryable: false,
            retry_after: None,
            unreachable: false,
        }
    }
    pub(super) fn transient(error: Error) -> Failure {
        Failure {
            error,
            retryable: true,
            retry_after: None,
            unreachable: false,
        }
    }
    pub(super) fn unreachable(error: Error) -> Failure {
        Failure {
            unreachable: true,
            ..Failure::transient(error)
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::fatal(e)
    }
}

/// Classify a transport failure. Everything but certificate and protocol
/// setup problems may go away on a retry.
pub(super) fn transport_error(e: &ureq::Error, host: &str) -> Failure {
    use ureq::Error as U;
    match e {
        U::Timeout(t @ (ureq::Timeout::Connect | ureq::Timeout::Resolve)) => {
            Failure::unreachable(Error::network(format!("{host} timed out ({t})")))
        }
        U::Timeout(t) => Failure::transient(Error::network(format!("{host} timed out ({t})"))),
        U::HostNotFound => Failure::unreachable(
            Error::network(format!("cannot resolve {host}")).hint("check the host name and the DNS setup"),
        ),
        U::ConnectionFailed => Failure::unreachable(cannot_connect(host, "connection failed")),
        U::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            Failure::unreachable(cannot_connect(host, "connection refused"))
        }
        U::Io(io)
            if matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::NetworkUnreachable
                    | std::io::ErrorKind::HostUnreachable
                    | std::io::ErrorKind::NetworkDown
            ) =>
        {
            Failure::unreachable(cannot_connect(host, &describe_io(io)))
        }
        U::Io(io) if io.get_ref().is_some_and(|e| e.is::<rustls::Error>()) => {
            let why = io
                .get_ref()
                .and_then(|e| e.downcast_ref::<rustls::Error>())
                .map(crate::tls::describe)
                .unwrap_or_default();
            Failure::fatal(tls_hint(Error::network(format!("TLS with {host} failed: {why}"))))
        }
        U::Io(io) if io.to_string().contains("lookup address") => Failure::unreachable(
            Error::network(format!("cannot resolve {host}")).hint("check the host name and the DNS setup"),
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

/// `host` is what [`Client::route`] says: a host (registry or mirror), or a
/// proxy on the way to one.
pub(super) fn cannot_connect(host: &str, why: &str) -> Error {
    let e = Error::network(format!("cannot connect to {host} ({why})"));
    match host.starts_with("the proxy ") {
        true => e.hint(
            "check that the proxy is running (HTTPS_PROXY, HTTP_PROXY), or name the host in NO_PROXY to go around it",
        ),
        false => e.hint("check that it is running and reachable, and its port"),
    }
}

pub(super) fn tls_hint(e: Error) -> Error {
    let m = e.message.to_ascii_lowercase();
    if m.contains("clock reads") {
        e.hint("check this machine's clock (date, NTP): certificates are only valid between their dates")
    } else if m.contains("certificate") || m.contains("issuer") || m.contains("notvalidforname") {
        e.hint("if the registry's certificate comes from a private CA, trust it with --ca-file CA.pem (or, at your own risk, --insecure)")
    } else if m.contains("alert 40") || m.contains("handshake") && m.contains("refused") {
        e.hint(
            "if the registry speaks plain HTTP, add --plain-http; minipull offers the key exchange groups P-256 and \
             P-384, which a server configured for X25519 alone refuses",
        )
    } else {
        e.hint("if the registry speaks plain HTTP, add --plain-http")
    }
}

pub(super) fn describe_io(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::TimedOut | K::WouldBlock => "no data arrived in time".into(),
        K::ConnectionReset => "the connection was reset".into(),
        K::ConnectionAborted => "the connection was aborted".into(),
        K::UnexpectedEof => "the connection closed early".into(),
        _ => e.to_string(),
    }
}

/// `scheme://host[:port]` of a URL, lowercased, default port dropped.
pub(super) fn origin_of(url: &str) -> String {
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

pub(super) fn same_origin(a: &str, b: &str) -> bool {
    origin_of(a) == origin_of(b)
}

pub(super) fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split(['/', '?', '#']).next().unwrap_or(rest)
}

/// For messages: never the path or query, which may carry a signed token.
pub(super) fn scheme_and_host(url: &str) -> String {
    match url.split_once("://") {
        Some((s, _)) => format!("{s}://{}", host_of(url)),
        None => "a URL without a scheme".into(),
    }
}

/// Resolve a `Location` header against the URL it came from.
pub(super) fn resolve_url(base: &str, location: &str) -> String {
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

impl Client {
    /// An anonymous bearer token for the host that sent `resp`, from the realm its 401
    /// names, on whatever origin (Docker Hub's realm is `auth.docker.io`):
    /// the request carries no credential and no token of ours, even when
    /// the realm is the registry's own; its redirects are not followed (the
    /// agent follows none) and its answer is bounded.
    fn anonymous_token_for(&self, resp: &Response<Body>) -> Option<Secret> {
        let challenge = resp
            .headers()
            .get_all("www-authenticate")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(auth::parse_challenges)
            .find(|c| c.scheme == "bearer")?;
        let realm = challenge.param("realm")?;
        let scheme_ok = realm.starts_with("https://") || (self.plain && realm.starts_with("http://"));
        if !scheme_ok {
            return None;
        }
        let mut query = Vec::new();
        for key in ["service", "scope"] {
            if let Some(v) = challenge.param(key) {
                query.push(format!("{key}={}", super::session::percent_encode(v)));
            }
        }
        let sep = if realm.contains('?') { '&' } else { '?' };
        let token_url = format!("{realm}{sep}{}", query.join("&"));
        let mut answer = self.agent_for(&token_url).get(&token_url).call().ok()?;
        if answer.status().as_u16() != 200 {
            return None;
        }
        let body = answer
            .body_mut()
            .with_config()
            .limit(MAX_TOKEN_BYTES)
            .read_to_vec()
            .ok()?;
        auth::parse_token_answer(&body).ok().map(|a| a.token)
    }
}

/// A 429 that says the pull limit is spent (Docker Hub's `ratelimit-*`
/// headers with nothing remaining, or a `Retry-After` longer than we would
/// wait): an error to stop at once, saying how many pulls the window allows
/// and when to try again, instead of retrying into the limit.
pub(super) fn rate_limited(retry_after: Option<u64>, limit: Option<&str>, remaining: Option<&str>) -> Option<Error> {
    // `100;w=21600`, or Docker Hub's empty form `;w=21600`.
    let parse = |v: &str| {
        let (n, rest) = v.split_once(';').unwrap_or((v, ""));
        let window = rest
            .trim()
            .strip_prefix("w=")
            .and_then(|w| w.trim().parse::<u64>().ok());
        (n.trim().parse::<u64>().ok(), window)
    };
    let (allowed, window) = limit.map(parse).unwrap_or((None, None));
    let spent = remaining.map(parse).is_some_and(|(n, _)| n == Some(0));
    let too_long = retry_after.is_some_and(|s| s > MAX_RETRY_AFTER.as_secs());
    if !spent && !too_long {
        return None;
    }
    let mut msg = String::from("the registry's pull limit is exhausted (HTTP 429)");
    match (allowed, window) {
        (Some(n), Some(w)) => msg += &format!(": it allows {n} pulls every {}", hours(w)),
        (None, Some(w)) => msg += &format!(": its window is {}", hours(w)),
        _ => {}
    }
    let when = match retry_after {
        Some(s) => format!(
            "try again in {} (after {})",
            hours(s),
            crate::tls::utc(crate::tls::clock_now().saturating_add(s))
        ),
        None => "try again later".to_string(),
    };
    Some(Error::network(msg).hint(format!("{when}, log in for a higher limit, or pull through a mirror")))
}

fn hours(secs: u64) -> String {
    if secs >= 3600 {
        format!("{} h", crate::progress::fixed(secs.into(), 3600, 1))
    } else {
        format!("{} min", secs.div_ceil(60))
    }
}

impl Client {
    /// How a request to `url` goes, for messages: its host, or the proxy on
    /// the way to it, so that a dead proxy is not taken for the registry.
    pub(super) fn route(&self, url: &str) -> String {
        let host = host_of(url);
        let proxy = match url.starts_with("https://") {
            true => self.opts.proxies.https.as_ref(),
            false => self.opts.proxies.http.as_ref(),
        };
        match proxy {
            Some(p) if !self.opts.proxies.bypass(host) => {
                format!("the proxy {}:{} on the way to {host}", p.host(), p.port())
            }
            _ => host.to_string(),
        }
    }

    /// The agent for `url`: through the environment's proxy for its scheme,
    /// unless NO_PROXY names its host.
    pub(super) fn agent_for(&self, url: &str) -> &ureq::Agent {
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

    /// A GET with authentication, retries, and one re-authentication on 401.
    pub(super) fn get(
        &mut self,
        what: &str,
        url: &str,
        accept: Option<&str>,
        range: Option<&str>,
    ) -> Result<Response<Body>> {
        self.request(false, what, url, accept, range)
    }

    /// A GET (or HEAD) with authentication, retries, and one re-authentication on 401.
    pub(super) fn request(
        &mut self,
        head: bool,
        what: &str,
        url: &str,
        accept: Option<&str>,
        range: Option<&str>,
    ) -> Result<Response<Body>> {
        let resp = self.with_retries(what, |c| c.send_as(head, url, accept, range, true))?;
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
        let mut resp = self.with_retries(what, |c| c.send_as(head, url, accept, range, true))?;
        if resp.status().as_u16() == 401 {
            return Err(self.status_error(what, &mut resp));
        }
        Ok(resp)
    }

    /// Run `f` until it succeeds, fails for good, or the retry budget is spent.
    /// Run `f` until it succeeds, fails for good, or its budget is spent:
    /// `--retries` attempts after failures that got an answer, and
    /// `--retry-for` seconds while nobody answers (an explicit `--retries`
    /// bounds those too; the first budget to run out ends it).
    pub(super) fn with_retries<F>(&mut self, what: &str, mut f: F) -> Result<Response<Body>>
    where
        F: FnMut(&mut Client) -> std::result::Result<Response<Body>, Failure>,
    {
        let mut attempt = 0;
        let mut unreachable_since: Option<Instant> = None;
        loop {
            let failure = match f(self) {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    // 501 Not Implemented (a multi-range request a server
                    // does not do) is not transient: no retry.
                    if status != 429 && (!(500..=599).contains(&status) || status == 501) {
                        return Ok(resp);
                    }
                    let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok());
                    let asked = header("retry-after").and_then(|v| v.trim().parse::<u64>().ok());
                    if status == 429 {
                        if let Some(e) = rate_limited(asked, header("ratelimit-limit"), header("ratelimit-remaining")) {
                            return Err(e.context(what));
                        }
                    }
                    let retry_after = asked.map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
                    let mut resp = resp;
                    if attempt >= self.opts.retries {
                        return Err(self.status_error(what, &mut resp));
                    }
                    Failure {
                        retry_after,
                        ..Failure::transient(Error::network(format!("HTTP {status}")))
                    }
                }
                Err(f) => f,
            };
            let left = if failure.unreachable {
                let since = *unreachable_since.get_or_insert_with(Instant::now);
                let left = self.opts.retry_for.saturating_sub(since.elapsed());
                let counted = self.opts.retries_explicit && attempt >= self.opts.retries;
                if left.is_zero() || counted {
                    let mut e = failure.error.context(what);
                    e.message.push_str(&format!(
                        " (unreachable for {} s, after {})",
                        since.elapsed().as_secs(),
                        crate::progress::count(attempt as u64 + 1, "attempt", "attempts")
                    ));
                    if left.is_zero() && !counted {
                        e = e.hint("it did not answer within --retry-for; raise it to wait longer (at boot the network may come up late)");
                    }
                    return Err(e);
                }
                Some(left)
            } else {
                unreachable_since = None;
                if !failure.retryable || attempt >= self.opts.retries {
                    let mut e = failure.error.context(what);
                    if failure.retryable {
                        e.message.push_str(&format!(
                            " (after {})",
                            crate::progress::count(attempt as u64 + 1, "attempt", "attempts")
                        ));
                    }
                    return Err(e);
                }
                None
            };
            attempt += 1;
            self.pause_before_retry(what, &failure, attempt, left);
        }
    }

    /// Say what failed and that we try again, then back off (never past
    /// `left`, what remains of the time budget for an unreachable source).
    pub(super) fn pause_before_retry(&mut self, what: &str, failure: &Failure, attempt: u32, left: Option<Duration>) {
        let wait = self.backoff(attempt, failure.retry_after);
        match left {
            Some(left) => {
                let wait = wait.min(left);
                // Someone watching may not want to wait for a source that is gone.
                let stop = match std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                    true => "; Ctrl-C stops",
                    false => "",
                };
                self.progress.note(format!(
                    "{what}: {}; trying again in {} s ({} s left of --retry-for{stop})",
                    failure.error.message,
                    crate::progress::seconds(wait, 1),
                    left.as_secs()
                ));
                std::thread::sleep(wait);
            }
            None => {
                self.progress.note(format!(
                    "{what}: {}; retrying ({attempt}/{})",
                    failure.error.message, self.opts.retries
                ));
                std::thread::sleep(wait);
            }
        }
    }

    /// Sleep as [`Client::backoff`] says.
    pub(super) fn sleep_backoff(&mut self, attempt: u32, retry_after: Option<Duration>) {
        let wait = self.backoff(attempt, retry_after);
        std::thread::sleep(wait);
    }

    /// Exponential backoff with jitter: 0.5 s, 1 s, 2 s ... up to 30 s,
    /// each scaled by a random factor in [0.5, 1); `Retry-After` wins.
    fn backoff(&mut self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(d) = retry_after {
            return d;
        }
        // xorshift: enough randomness to spread out clients that failed together.
        let mut x = self.jitter_state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.jitter_state = x;
        let base = 500u64.saturating_mul(1 << attempt.saturating_sub(1).min(6)).min(30_000);
        let factor = 0.5 + (x % 1000) as f64 / 2000.0;
        Duration::from_millis((base as f64 * factor) as u64)
    }

    /// One GET, following redirects. The Authorization header goes only to
    /// the registry's origin; a redirect elsewhere is followed without it.
    pub(super) fn send(
        &mut self,
        url: &str,
        accept: Option<&str>,
        range: Option<&str>,
        with_auth: bool,
    ) -> std::result::Result<Response<Body>, Failure> {
        self.send_as(false, url, accept, range, with_auth)
    }

    /// [`Client::send`], as a HEAD when `head`.
    pub(super) fn send_as(
        &mut self,
        head: bool,
        url: &str,
        accept: Option<&str>,
        range: Option<&str>,
        with_auth: bool,
    ) -> std::result::Result<Response<Body>, Failure> {
        let authorization = if with_auth { self.authorization()? } else { None };
        let mut url = url.to_string();
        // An anonymous token another host's own realm gave us, for that host only.
        let mut foreign: Option<(String, Secret)> = None;
        for _ in 0..=MAX_REDIRECTS {
            let agent = self.agent_for(&url);
            let mut req = if head { agent.head(&url) } else { agent.get(&url) };
            if let Some((origin, token)) = &foreign {
                if same_origin(&url, origin) {
                    req = req.header("Authorization", format!("Bearer {}", token.expose()));
                }
            }
            if let Some(a) = accept {
                req = req.header("Accept", a);
            }
            // The Range (`bytes=...`) goes along every redirect; credentials only to our origin.
            if let Some(r) = range {
                req = req.header("Range", r);
            }
            if let Some(auth) = &authorization {
                if same_origin(&url, &self.origin) {
                    req = req.header("Authorization", auth.expose());
                }
            }
            let route = self.route(&url);
            let resp = req.call().map_err(|e| transport_error(&e, &route))?;
            let status = resp.status().as_u16();
            if status == 401 && foreign.is_none() && !same_origin(&url, &self.origin) {
                // A redirect to another registry host that wants its own
                // token (GHCR): at most an anonymous one, from the realm
                // that host names; never our credentials or our token.
                if let Some(token) = self.anonymous_token_for(&resp) {
                    foreign = Some((origin_of(&url), token));
                    continue;
                }
            }
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limits_say_what_and_when() {
        let e = rate_limited(Some(3600), Some("100;w=21600"), Some("0;w=21600")).unwrap();
        assert!(e.message.contains("allows 100 pulls every 6.0 h"), "{}", e.message);
        assert!(e.hint.as_deref().unwrap_or("").contains("try again in 1.0 h"));
        assert!(rate_limited(None, Some(";w=21600"), Some("0"))
            .unwrap()
            .message
            .contains("window is 6.0 h"));
        assert!(
            rate_limited(Some(5), Some("100;w=21600"), Some("7;w=21600")).is_none(),
            "still has pulls: retry"
        );
        assert!(rate_limited(Some(7200), None, None).is_some(), "longer than we wait");
    }

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
}

/// TCP connections, as ureq's own connector opens them, except that under
/// `--limit-rate` the socket's receive buffer is sized to the rate before
/// the connection is made (the TCP window is agreed in the handshake): the
/// kernel then cannot take in more than a fraction of a second of data at
/// link speed before the paced reads start. Every connection of the agent
/// comes through here: to the registry, to a CONNECT proxy, after a redirect.
#[derive(Debug)]
pub(super) struct Tcp {
    /// Bytes to ask for as SO_RCVBUF (`None`: the kernel's autotuning).
    pub(super) rcvbuf: Option<usize>,
    pub(super) timeout: Duration,
}

/// SO_RCVBUF for a rate cap: an eighth of a second of data (the kernel
/// doubles it for its bookkeeping, and clamps it to net.core.rmem_max), so
/// what arrives ahead of the pacing stays well under a tenth of any 5-second
/// window; that still carries the rate over a round trip of up to ~100 ms.
pub(super) fn rcvbuf_for(rate: u64) -> usize {
    (rate / 8).clamp(4096, 16 << 20) as usize
}

/// ureq's read buffer under a rate cap: it too fills ahead of the pacing.
pub(super) fn input_buffer_for(rate: u64) -> usize {
    (rate / 16).clamp(16 << 10, 128 << 10) as usize
}

use ureq::unversioned::transport as ut;

impl<In: ut::Transport> ut::Connector<In> for Tcp {
    type Out = ut::Either<ut::Either<In, SizedTcp>, <ut::TcpConnector as ut::Connector<In>>::Out>;

    fn connect(
        &self,
        details: &ut::ConnectionDetails,
        chained: Option<In>,
    ) -> std::result::Result<Option<Self::Out>, ureq::Error> {
        use ut::Either;
        let Some(size) = self.rcvbuf else {
            return Ok(ut::TcpConnector::default().connect(details, chained)?.map(Either::B));
        };
        if let Some(c) = chained {
            return Ok(Some(Either::A(Either::A(c))));
        }
        let mut last = None;
        for addr in details.addrs.iter() {
            match connect_sized(addr, size, self.timeout) {
                Ok(stream) => {
                    let config = details.config;
                    if config.no_delay() {
                        stream.set_nodelay(true)?;
                    }
                    let buffers = ut::LazyBuffers::new(config.input_buffer_size(), config.output_buffer_size());
                    return Ok(Some(Either::A(Either::B(SizedTcp { stream, buffers }))));
                }
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    last = Some(ureq::Error::Timeout(ureq::Timeout::Connect))
                }
                Err(e) => last = Some(ureq::Error::Io(e)),
            }
        }
        Err(last.unwrap_or_else(|| {
            ureq::Error::Io(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "no address to connect to",
            ))
        }))
    }
}

/// A connection [`Tcp`] opened (ureq's own TCP transport is not public).
#[derive(Debug)]
pub(super) struct SizedTcp {
    stream: std::net::TcpStream,
    buffers: ut::LazyBuffers,
}

/// An I/O result as ureq's transports report it.
fn io_result<T>(r: std::io::Result<T>, reason: ureq::Timeout) -> std::result::Result<T, ureq::Error> {
    r.map_err(|e| match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => ureq::Error::Timeout(reason),
        _ => ureq::Error::Io(e),
    })
}

impl ut::Transport for SizedTcp {
    fn buffers(&mut self) -> &mut dyn ut::Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: ut::NextTimeout) -> std::result::Result<(), ureq::Error> {
        use ut::Buffers;
        let timeout = timeout.for_write();
        io_result(
            self.stream.set_write_timeout(timeout.not_zero().map(|t| *t)),
            timeout.reason,
        )?;
        let output = &self.buffers.output()[..amount];
        io_result(std::io::Write::write_all(&mut self.stream, output), timeout.reason)
    }

    fn await_input(&mut self, timeout: ut::NextTimeout) -> std::result::Result<bool, ureq::Error> {
        use ut::Buffers;
        let timeout = timeout.for_read();
        io_result(
            self.stream.set_read_timeout(timeout.not_zero().map(|t| *t)),
            timeout.reason,
        )?;
        let input = self.buffers.input_append_buf();
        let n = loop {
            match std::io::Read::read(&mut self.stream, input) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => break io_result(r, timeout.reason)?,
            }
        };
        self.buffers.input_appended(n);
        Ok(n > 0)
    }

    fn is_open(&mut self) -> bool {
        // Nothing may be waiting on an idle connection: a byte, or the end, means it is done.
        let mut probe = [0u8];
        let open = self.stream.set_nonblocking(true).is_ok()
            && matches!(std::io::Read::read(&mut self.stream, &mut probe),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
        open && self.stream.set_nonblocking(false).is_ok()
    }
}

/// A TCP connection to `addr` whose receive buffer was set to `rcvbuf`
/// before the handshake, within `timeout`.
fn connect_sized(
    addr: &std::net::SocketAddr,
    rcvbuf: usize,
    timeout: Duration,
) -> std::io::Result<std::net::TcpStream> {
    use std::os::fd::{FromRawFd, OwnedFd};
    let last = std::io::Error::last_os_error;
    // SAFETY: plain socket calls on a descriptor this function owns (from
    // `OwnedFd` on, closed on every early return); the address structures
    // are built whole and passed with their own length.
    unsafe {
        let family = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
        let fd = libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0);
        if fd < 0 {
            return Err(last());
        }
        let fd = OwnedFd::from_raw_fd(fd);
        let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
        let size = rcvbuf.min(i32::MAX as usize) as libc::c_int;
        let p = &size as *const libc::c_int as *const libc::c_void;
        if libc::setsockopt(
            raw,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            p,
            std::mem::size_of::<libc::c_int>() as u32,
        ) != 0
        {
            return Err(last());
        }
        let mut storage: libc::sockaddr_storage = std::mem::zeroed();
        let len = match addr {
            std::net::SocketAddr::V4(a) => {
                let sin = &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in);
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = a.port().to_be();
                sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
                std::mem::size_of::<libc::sockaddr_in>()
            }
            std::net::SocketAddr::V6(a) => {
                let sin6 = &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6);
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = a.port().to_be();
                sin6.sin6_addr.s6_addr = a.ip().octets();
                sin6.sin6_flowinfo = a.flowinfo();
                sin6.sin6_scope_id = a.scope_id();
                std::mem::size_of::<libc::sockaddr_in6>()
            }
        };
        if libc::connect(raw, &storage as *const _ as *const libc::sockaddr, len as u32) != 0 {
            let e = last();
            if e.raw_os_error() != Some(libc::EINPROGRESS) {
                return Err(e);
            }
            let mut pfd = libc::pollfd {
                fd: raw,
                events: libc::POLLOUT,
                revents: 0,
            };
            let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
            match libc::poll(&mut pfd, 1, ms) {
                0 => return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")),
                n if n < 0 => return Err(last()),
                _ => {}
            }
            let mut err: libc::c_int = 0;
            let mut elen = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            let ep = &mut err as *mut libc::c_int as *mut libc::c_void;
            if libc::getsockopt(raw, libc::SOL_SOCKET, libc::SO_ERROR, ep, &mut elen) != 0 {
                return Err(last());
            }
            if err != 0 {
                return Err(std::io::Error::from_raw_os_error(err));
            }
        }
        let stream = std::net::TcpStream::from(fd);
        stream.set_nonblocking(false)?;
        Ok(stream)
    }
}

/// Name lookup in the calling thread. ureq's own resolver spawns a thread to
/// time a lookup out whenever a timeout applies (always, behind a CONNECT
/// proxy); minipull has no threads, and a lookup is bounded by the system
/// resolver's own timeouts (`resolv.conf`) and the retry budget around it.
#[derive(Debug)]
pub(super) struct Lookup;

impl ureq::unversioned::resolver::Resolver for Lookup {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        _config: &ureq::config::Config,
        _timeout: ut::NextTimeout,
    ) -> std::result::Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        use std::net::ToSocketAddrs;
        let addr = uri
            .scheme()
            .zip(uri.authority())
            .and_then(|(scheme, authority)| {
                ureq::unversioned::resolver::DefaultResolver::host_and_port(scheme, authority)
            })
            .ok_or(ureq::Error::HostNotFound)?;
        let mut found = self.empty();
        for a in addr.to_socket_addrs()?.take(16) {
            found.push(a);
        }
        if found.is_empty() {
            return Err(ureq::Error::HostNotFound);
        }
        Ok(found)
    }
}

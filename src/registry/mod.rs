//! The registry client: manifests and resumable blob downloads for one
//! repository, over one blocking ureq agent. Three parts, one file each:
//!
//! - [`transport`]: sending requests, following redirects (the registry's
//!   `Authorization` goes to its own origin only), retries and backoff.
//! - [`session`]: the auth session: challenges, bearer tokens, Basic.
//!   Credentials go only to the registry and the realm its own challenge
//!   names ([`session::OwnChallenge`]).
//! - [`blob`]: a blob download with ranges, resume and a verified partial;
//!   [`resume`]: the records that say which bytes of a partial survive a power cut.
//!
//! Redirects are followed here rather than by ureq so that the registry's
//! Authorization header is sent only to the registry's own origin, and so
//! that every resume goes back to the registry for a fresh (signed) URL.

mod blob;
#[cfg(feature = "delta")]
pub use blob::Ranged;
mod resume;
mod session;
mod tags;
mod transport;

use session::OwnChallenge;
use transport::{describe_io, same_origin, scheme_and_host, transport_error};

use crate::auth::{self, Challenge, Credentials, Secret};
use crate::digest::{Digest, Hasher};
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
    /// The hosts (`host[:port]`, as references name them) to treat as
    /// `plain_http` says, and no others (`$MINIPULL_PLAIN_HTTP`).
    pub plain_hosts: Vec<String>,
    /// Attempts after the first one, for failures that got an answer.
    pub retries: u32,
    /// The user gave `--retries`: it bounds unreachable sources too.
    pub retries_explicit: bool,
    /// How long to keep trying a source that does not answer at all.
    pub retry_for: Duration,
    /// Keep downloaded pages in the page cache (an unpack in the same run
    /// reads the layers back); otherwise they are dropped once written.
    pub keep_written_pages: bool,
    /// Connect timeout, and the longest wait for the next bytes.
    pub timeout: Duration,
    /// A body slower than this many bytes a second ...
    pub speed_limit: u64,
    /// ... for this long is abandoned and resumed.
    pub speed_time: Duration,
    /// Cap on the average download rate, bytes a second (`--limit-rate`).
    pub limit_rate: Option<u64>,
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
/// The blob read buffer. ureq hands out at most 128 KiB a read (its own
/// input buffer), so 128 KiB halves the write syscalls of 64 KiB (a 512 MiB
/// blob: 4,135 writes against 8,231; recvfrom 4,105 either way) for no
/// measurable RSS; 256 KiB changes nothing more but costs 150 KiB of RSS.
const BUF_SIZE: usize = 128 * 1024;

/// A manifest as the registry served it.
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub content_type: Option<String>,
    /// The `Docker-Content-Digest` header, when present.
    pub digest_header: Option<String>,
    /// The `Link` headers, joined with `,` (the tag list's next page).
    pub link: Option<String>,
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
    /// `--limit-rate`: when pacing started and the bytes read since.
    paced: Option<(Instant, u64)>,
}

impl Options {
    /// Whether the user asked for plain HTTP to `host` (`host[:port]`).
    pub fn plain_for(&self, host: &str) -> bool {
        self.plain_http || self.plain_hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
    }
}

impl Client {
    /// A client for the registry a reference names.
    pub fn new(reference: &Reference, creds: Option<Credentials>, opts: Options, progress: Progress) -> Client {
        let plain = opts.plain_for(&reference.registry) || opts.plain_for(reference.api_host());
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
            use ureq::unversioned::transport::{ConnectProxyConnector, Connector};
            // ureq's default chain with our TLS at the end (and no SOCKS), and
            // TCP sockets sized to --limit-rate (see transport::Tcp).
            let connector = ()
                .chain(ConnectProxyConnector::default())
                .chain(transport::Tcp {
                    rcvbuf: opts.limit_rate.map(transport::rcvbuf_for),
                    timeout: opts.timeout,
                })
                .chain(crate::tls::TlsConnector(opts.tls.clone()));
            let config = ureq::Agent::config_builder()
                .input_buffer_size(opts.limit_rate.map_or(128 * 1024, transport::input_buffer_for))
                .http_status_as_error(false)
                .max_redirects(0)
                .proxy(proxy)
                .timeout_connect(Some(opts.timeout))
                .timeout_per_read(Some(opts.timeout))
                .timeout_per_write(Some(opts.timeout))
                .user_agent(concat!("minipull/", env!("CARGO_PKG_VERSION")))
                .build();
            ureq::Agent::with_parts(config, connector, transport::Lookup)
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
        // Credentials travel over plain HTTP only when the user said so for
        // this host (--plain-http, or $MINIPULL_PLAIN_HTTP naming it).
        let creds = creds.filter(|_| !plain || opts.plain_for(host));
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
            paced: None,
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
        let what = manifest_label(&self.repository, reference);
        self.fetch_small(&url, &what, accept, max)
    }

    /// The digest a tag names, by one HEAD of its manifest. `None` when the
    /// registry refuses HEAD (405, or 401/403 to an anonymous HEAD, as
    /// Harbor does) or answers without `Docker-Content-Digest`: the caller
    /// falls back to a GET.
    pub fn head_manifest(&mut self, reference: &str, accept: &str) -> Result<Option<Digest>> {
        let url = format!("{}/v2/{}/manifests/{}", self.origin, self.repository, reference);
        let what = manifest_label(&self.repository, reference);
        let mut resp = match self.request(true, &what, &url, Some(accept), None) {
            Ok(r) => r,
            Err(e) if e.kind == crate::error::Kind::Auth => return Ok(None),
            Err(e) => return Err(e),
        };
        match resp.status().as_u16() {
            200 => Ok(resp
                .headers()
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| Digest::parse(v.trim()).ok())),
            404 => Err(self.status_error(&what, &mut resp)),
            _ => Ok(None),
        }
    }

    /// The referrers of `digest` (an OCI index), at most `max` bytes.
    pub fn referrers(&mut self, digest: &Digest, max: u64) -> Result<FetchedManifest> {
        let url = format!("{}/v2/{}/referrers/{}", self.origin, self.repository, digest);
        let what = format!("referrers of {}", digest.short());
        self.fetch_small(&url, &what, crate::manifest::OCI_INDEX, max)
    }

    /// A small blob (signature material) in memory, verified against its digest.
    pub fn small_blob(&mut self, digest: &Digest, max: u64) -> Result<Vec<u8>> {
        let url = format!("{}/v2/{}/blobs/{}", self.origin, self.repository, digest);
        let what = format!("blob {}", digest.short());
        let bytes = self.fetch_small(&url, &what, "*/*", max)?.bytes;
        if Digest::of(digest.algorithm(), &bytes) != *digest {
            return Err(Error::integrity(format!(
                "{what}: the content does not match its digest"
            )));
        }
        Ok(bytes)
    }

    /// GET a small document whole, at most `max` bytes, retrying a body that breaks off.
    fn fetch_small(&mut self, url: &str, what: &str, accept: &str, max: u64) -> Result<FetchedManifest> {
        let mut attempt = 0;
        loop {
            let mut resp = self.get(what, url, Some(accept), None)?;
            let status = resp.status().as_u16();
            if status != 200 {
                return Err(self.status_error(what, &mut resp));
            }
            if resp.body().content_length().is_some_and(|l| l > max) {
                return Err(too_big(what, max));
            }
            let header = |name: &str| {
                resp.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let content_type = header("content-type");
            let digest_header = header("docker-content-digest");
            let links: Vec<&str> = resp
                .headers()
                .get_all("link")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            let link = (!links.is_empty()).then(|| links.join(","));
            match resp.body_mut().with_config().limit(max).read_to_vec() {
                Ok(bytes) => {
                    return Ok(FetchedManifest {
                        bytes,
                        content_type,
                        digest_header,
                        link,
                    })
                }
                Err(ureq::Error::BodyExceedsLimit(_)) => return Err(too_big(what, max)),
                // The body broke off: ask again, like any other transient failure.
                Err(e) => {
                    let failure = transport_error(&e, &self.host);
                    if !failure.retryable || attempt >= self.opts.retries {
                        return Err(failure.error.context(format!("reading {what}")));
                    }
                    attempt += 1;
                    self.pause_before_retry(&format!("reading {what}"), &failure, attempt, None);
                }
            }
        }
    }

    /// Turn a non-success answer into an error the user can act on.
    pub(super) fn status_error(&self, what: &str, resp: &mut Response<Body>) -> Error {
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
            // Docker Hub (and others) answer 401, not 404, for a repository
            // that does not exist: with no credentials sent that is "not
            // found or private" (exit 3), with credentials a refusal (exit 4).
            401 if self.creds.is_none() => Error::not_found(format!(
                "{what}: {} says the repository does not exist or needs credentials (HTTP 401{detail})",
                self.host
            ))
            .hint("check the repository name; if it is private, log in with --username USER --password-stdin or --auth-file"),
            401 => Error::auth(format!(
                "{what}: {} refused us (HTTP 401{detail}): the repository does not exist or these credentials may not pull it",
                self.host
            ))
            .hint("check the repository name, the username and password, and that this account may pull the repository"),
            403 => Error::auth(format!("{what}: access denied by {} (HTTP 403{detail})", self.host)),
            429 | 500..=599 => Error::network(format!("{what}: {} answered HTTP {status}{detail}", self.host))
                .hint("the registry is overloaded or failing; try again later, or use --retries"),
            _ => Error::other(format!("{what}: unexpected HTTP {status} from {}{detail}", self.host)),
        }
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

/// Read the password for `--password-stdin`: the first line of stdin.
pub fn read_password_stdin(whole: bool) -> Result<Secret> {
    let mut s = String::new();
    std::io::stdin()
        .take(1024 * 1024)
        .read_to_string(&mut s)
        .map_err(|e| Error::usage(format!("cannot read the password from stdin: {e}")))?;
    // A service-account key (Google's `_json_key`) is a multi-line JSON
    // document: all of stdin, less its final newline. Otherwise the first line.
    let line = match whole {
        true => s.trim_end_matches(['\n', '\r']).to_string(),
        false => s.lines().next().unwrap_or("").to_string(),
    };
    if line.is_empty() {
        return Err(Error::usage("--password-stdin was given but stdin is empty"));
    }
    Ok(Secret::new(line))
}

/// `manifest repo:tag`, or `manifest repo@sha256:...` for a digest.
fn manifest_label(repository: &str, reference: &str) -> String {
    let sep = if reference.contains(':') { '@' } else { ':' };
    format!("manifest {repository}{sep}{reference}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_error_bodies() {
        let b = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#;
        assert_eq!(registry_error_summary(b).unwrap(), "MANIFEST_UNKNOWN manifest unknown");
        assert!(registry_error_summary(b"<html>").is_none());
        assert!(registry_error_summary(br#"{"errors":[]}"#).is_none());
    }
}

//! Authentication: `WWW-Authenticate` challenges, credentials (flags and
//! docker `config.json`), and bearer token answers.
//!
//! Secrets live in [`Secret`], whose `Debug` and `Display` never show the
//! value, so an accidental `{:?}` cannot leak a password into output.

use crate::error::{Error, Quoted, Result};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A string that must never be printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    /// The value, for the one place that sends it: an Authorization header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A username and password for one registry, or an OAuth2 refresh token.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub username: String,
    pub password: Secret,
    /// An OAuth2 refresh token (`identitytoken` in config.json, `<token>` from a
    /// credential helper), exchanged at the token realm for an access token.
    pub identity_token: Option<Secret>,
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: Secret) -> Credentials {
        Credentials {
            username: username.into(),
            password,
            identity_token: None,
        }
    }

    /// The value of an `Authorization: Basic ...` header.
    pub fn basic_header(&self) -> Secret {
        let raw = format!("{}:{}", self.username, self.password.expose());
        Secret(format!("Basic {}", base64_encode(raw.as_bytes())))
    }
}

/// One challenge from a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Lowercased scheme: `bearer` or `basic` (others are kept but unused).
    pub scheme: String,
    /// Parameters with lowercased names.
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// Parse a `WWW-Authenticate` header value into its challenges (RFC 7235):
/// `Bearer realm="https://a/token",service="reg",scope="repository:x:pull,push"`.
/// Quoted values may hold commas and backslash escapes; one header may carry
/// several challenges.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    let s = header.as_bytes();
    let mut i = 0;
    let skip_ws_commas = |i: &mut usize| {
        while *i < s.len() && (s[*i] == b' ' || s[*i] == b'\t' || s[*i] == b',') {
            *i += 1;
        }
    };
    let is_token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/".contains(&b);
    loop {
        skip_ws_commas(&mut i);
        if i >= s.len() {
            break;
        }
        let start = i;
        while i < s.len() && is_token(s[i]) {
            i += 1;
        }
        if i == start {
            i += 1; // garbage byte: skip it rather than loop forever
            continue;
        }
        let word = &header[start..i];
        let mut j = i;
        while j < s.len() && s[j] == b' ' {
            j += 1;
        }
        let is_param = j < s.len() && s[j] == b'=' && !out.is_empty() && !word.ends_with('=');
        if !is_param {
            out.push(Challenge {
                scheme: word.to_ascii_lowercase(),
                params: BTreeMap::new(),
            });
            continue;
        }
        // name = value
        i = j + 1;
        while i < s.len() && s[i] == b' ' {
            i += 1;
        }
        let mut value = String::new();
        if i < s.len() && s[i] == b'"' {
            i += 1;
            while i < s.len() && s[i] != b'"' {
                if s[i] == b'\\' && i + 1 < s.len() {
                    i += 1;
                }
                // Copy one UTF-8 character whole.
                let ch_len = utf8_len(s[i]);
                let end = (i + ch_len).min(s.len());
                value.push_str(&String::from_utf8_lossy(&s[i..end]));
                i = end;
            }
            i += 1; // closing quote
        } else {
            let vstart = i;
            while i < s.len() && s[i] != b',' && s[i] != b' ' {
                i += 1;
            }
            value.push_str(&header[vstart..i]);
        }
        if let Some(last) = out.last_mut() {
            last.params.insert(word.to_ascii_lowercase(), value);
        }
    }
    out
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

/// A bearer token answer from a token server.
#[derive(Debug)]
pub struct TokenAnswer {
    pub token: Secret,
    /// How long the token is valid; the spec's default is 60 s.
    pub expires_in: Duration,
}

/// Parse a token server's JSON answer (`token` or `access_token`).
pub fn parse_token_answer(body: &[u8]) -> Result<TokenAnswer> {
    #[derive(serde::Deserialize)]
    struct Answer {
        token: Option<String>,
        access_token: Option<String>,
        expires_in: Option<i64>,
    }
    let a: Answer = serde_json::from_slice(body).map_err(|e| {
        Error::auth(format!(
            "the token server's answer is not valid JSON ({})",
            e.classify_name()
        ))
    })?;
    let token = a
        .token
        .filter(|t| !t.is_empty())
        .or(a.access_token.filter(|t| !t.is_empty()))
        .ok_or_else(|| Error::auth("the token server's answer has no token"))?;
    if token.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(Error::auth("the token server sent a token with invalid characters"));
    }
    // Below 60 s the spec says to assume 60; cap absurd values at a day.
    let secs = a.expires_in.unwrap_or(60).clamp(60, 86_400) as u64;
    Ok(TokenAnswer {
        token: Secret(token),
        expires_in: Duration::from_secs(secs),
    })
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}
impl ClassifyName for serde_json::Error {
    // serde_json's Display can quote input; say only what kind of error it is.
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "read error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "unexpected fields",
            serde_json::error::Category::Eof => "truncated",
        }
    }
}

/// The auth files looked at when `--auth-file` is not given, in order: podman's
/// and skopeo's (`$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
/// `$XDG_CONFIG_HOME/containers/auth.json`), then docker's
/// (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`).
pub fn default_auth_files() -> Vec<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let home = var("HOME");
    let mut files = Vec::new();
    files.extend(var("REGISTRY_AUTH_FILE"));
    files.extend(var("XDG_RUNTIME_DIR").map(|d| d.join("containers/auth.json")));
    match var("XDG_CONFIG_HOME") {
        Some(d) => files.push(d.join("containers/auth.json")),
        None => files.extend(home.as_ref().map(|h| h.join(".config/containers/auth.json"))),
    }
    match var("DOCKER_CONFIG") {
        Some(d) => files.push(d.join("config.json")),
        None => files.extend(home.map(|h| h.join(".docker/config.json"))),
    }
    files
}

/// Credentials for `registry` from the first auth file that has any: an
/// explicit `--auth-file` (which must exist), else [`default_auth_files`].
/// Credential helpers named by a file are run.
pub fn credentials_from_files(
    explicit: Option<&Path>,
    registry: &str,
    notes: &mut Vec<String>,
) -> Result<Option<Credentials>> {
    let files = match explicit {
        Some(p) => vec![p.to_path_buf()],
        None => default_auth_files(),
    };
    for path in files {
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if explicit.is_none() && e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::usage(format!("cannot read auth file {}: {e}", path.display()))),
        };
        let ctx = |e: Error| e.context(format!("auth file {}", path.display()));
        let config = AuthConfig::parse(&text).map_err(ctx)?;
        match config.lookup(registry).map_err(ctx)? {
            Lookup::Found(c) => return Ok(Some(c)),
            Lookup::Helper(name) => match run_helper(&name, registry)? {
                Some(c) => return Ok(Some(c)),
                None => {
                    notes.push(format!("docker-credential-{name} has no credentials for {registry}"));
                }
            },
            Lookup::Missing => {}
        }
    }
    Ok(None)
}

/// A docker `config.json` or podman `auth.json`: the parts we use.
#[derive(serde::Deserialize, Default)]
pub struct AuthConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(serde::Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

/// What an auth file says about one registry.
#[derive(Debug)]
pub enum Lookup {
    Found(Credentials),
    /// Ask `docker-credential-NAME`.
    Helper(String),
    Missing,
}

impl AuthConfig {
    pub fn parse(text: &[u8]) -> Result<AuthConfig> {
        serde_json::from_slice(text)
            .map_err(|e| Error::usage(format!("not a valid docker config.json ({})", e.classify_name())))
    }

    /// Docker's order: a `credHelpers` entry for the host, then an `auths`
    /// entry with credentials in it, then the `credsStore` helper.
    pub fn lookup(&self, registry: &str) -> Result<Lookup> {
        let wanted = auth_key_host(registry);
        if let Some((_, helper)) = self.cred_helpers.iter().find(|(k, _)| auth_key_host(k) == wanted) {
            return Ok(Lookup::Helper(helper.clone()));
        }
        let entry = self
            .auths
            .iter()
            .find(|(k, _)| auth_key_host(k) == wanted)
            .map(|(_, v)| v);
        if let Some(c) = entry.map(|e| entry_credentials(e, registry)).transpose()?.flatten() {
            return Ok(Lookup::Found(c));
        }
        match self.creds_store.as_deref().filter(|s| !s.is_empty()) {
            Some(store) => Ok(Lookup::Helper(store.to_string())),
            None => Ok(Lookup::Missing),
        }
    }
}

fn entry_credentials(entry: &AuthEntry, registry: &str) -> Result<Option<Credentials>> {
    let (mut username, mut password) = (entry.username.clone(), entry.password.clone());
    if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let decoded = base64_decode(auth)
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| Error::usage(format!("the \"auth\" entry for {registry} is not valid base64")))?;
        let (u, p) = decoded
            .split_once(':')
            .ok_or_else(|| Error::usage(format!("the \"auth\" entry for {registry} is not USER:PASSWORD")))?;
        username.get_or_insert(u.to_string());
        password.get_or_insert(p.to_string());
    }
    let identity_token = entry.identitytoken.clone().filter(|t| !t.is_empty()).map(Secret);
    let username = username.unwrap_or_default();
    if identity_token.is_none() && (username.is_empty() || password.is_none()) {
        return Ok(None);
    }
    Ok(Some(Credentials {
        username,
        password: Secret(password.unwrap_or_default()),
        identity_token,
    }))
}

/// Look up inline credentials for `registry` in the text of a docker
/// `config.json` (helpers are not run).
pub fn credentials_from_config(text: &[u8], registry: &str) -> Result<Option<Credentials>> {
    match AuthConfig::parse(text)?.lookup(registry)? {
        Lookup::Found(c) => Ok(Some(c)),
        _ => Ok(None),
    }
}

/// How long a credential helper may take (it may talk to a cloud API).
const HELPER_TIMEOUT: Duration = Duration::from_secs(60);

/// Run `docker-credential-NAME get` with the registry on stdin and read its
/// JSON answer. A helper that is not installed is a note, not an error, so a
/// config.json copied from a desktop still pulls public images.
pub fn run_helper(name: &str, registry: &str) -> Result<Option<Credentials>> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return Err(Error::usage(format!(
            "credential helper name {} is not a plain program name",
            Quoted(name)
        )));
    }
    let program = format!("docker-credential-{name}");
    // Docker keys Docker Hub as its v1 URL, and helpers store it that way.
    let server = if auth_key_host(registry) == "docker.io" {
        "https://index.docker.io/v1/".to_string()
    } else {
        registry.to_string()
    };
    let mut child = match Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("minipull: warning: the auth file names the credential helper {program}, which is not installed; continuing without credentials for {registry}");
            return Ok(None);
        }
        Err(e) => return Err(Error::auth(format!("cannot run {program}: {e}"))),
    };
    let fail = |why: String| Error::auth(format!("credential helper {program} failed for {registry}: {why}"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(server.as_bytes()).map_err(|e| fail(e.to_string()))?;
    }
    drop(child.stdin.take());
    let deadline = std::time::Instant::now() + HELPER_TIMEOUT;
    // Read while it runs: a helper that writes more than a pipe holds would
    // otherwise block until the timeout, waiting for us to read.
    let (out, err) = match read_outputs(&mut child, deadline) {
        Ok(both) => both,
        Err(why) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(fail(why));
        }
    };
    let err = String::from_utf8_lossy(&err).into_owned();
    let status = loop {
        match child.try_wait().map_err(|e| fail(e.to_string()))? {
            Some(status) => break status,
            None if std::time::Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!("no answer in {} s", HELPER_TIMEOUT.as_secs())));
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    if !status.success() {
        let said = String::from_utf8_lossy(&out).to_string() + &err;
        if said.to_ascii_lowercase().contains("credentials not found") {
            return Ok(None);
        }
        let said: String = said.trim().chars().filter(|c| !c.is_control()).take(200).collect();
        return Err(fail(format!("{status}: {said}")));
    }
    parse_helper_answer(&out).map_err(|e| e.context(format!("credential helper {program}")))
}

/// A helper's stdout (at most 1 MiB) and stderr (at most 64 KiB), read as
/// they come, with poll(2), until both end or the deadline passes.
fn read_outputs(
    child: &mut std::process::Child,
    deadline: std::time::Instant,
) -> std::result::Result<(Vec<u8>, Vec<u8>), String> {
    use std::io::Read;
    use std::os::fd::{AsRawFd, OwnedFd};
    const LIMITS: [usize; 2] = [1 << 20, 64 << 10];
    let mut pipes: [Option<std::fs::File>; 2] = [
        child.stdout.take().map(|p| OwnedFd::from(p).into()),
        child.stderr.take().map(|p| OwnedFd::from(p).into()),
    ];
    let mut got = [Vec::new(), Vec::new()];
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let open: Vec<usize> = (0..2).filter(|i| pipes[*i].is_some()).collect();
        if open.is_empty() {
            let [out, err] = got;
            return Ok((out, err));
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(format!("no answer in {} s", HELPER_TIMEOUT.as_secs()));
        }
        let mut set: Vec<libc::pollfd> = open
            .iter()
            .filter_map(|i| pipes[*i].as_ref())
            .map(|f| libc::pollfd {
                fd: f.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let ms = left.as_millis().min(1000) as libc::c_int;
        // SAFETY: set points at set.len() initialised pollfd structs.
        if unsafe { libc::poll(set.as_mut_ptr(), set.len() as libc::nfds_t, ms) } < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e.to_string());
            }
            continue;
        }
        for (i, p) in open.into_iter().zip(&set) {
            if p.revents == 0 {
                continue;
            }
            let Some(pipe) = pipes[i].as_mut() else { continue };
            let n = pipe.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                pipes[i] = None;
            } else if got[i].len() + n > LIMITS[i] {
                return Err(format!("it wrote more than {} KiB", LIMITS[i] >> 10));
            } else {
                got[i].extend_from_slice(&buf[..n]);
            }
        }
    }
}

/// A credential helper's answer: `{"ServerURL", "Username", "Secret"}`; the
/// username `<token>` marks the secret as an identity (refresh) token.
pub fn parse_helper_answer(out: &[u8]) -> Result<Option<Credentials>> {
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(rename = "Username", default)]
        username: String,
        #[serde(rename = "Secret", default)]
        secret: String,
    }
    let a: Answer = serde_json::from_slice(out)
        .map_err(|e| Error::auth(format!("its answer is not the expected JSON ({})", e.classify_name())))?;
    if a.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(if a.username == "<token>" {
        Credentials {
            username: String::new(),
            password: Secret(String::new()),
            identity_token: Some(Secret(a.secret)),
        }
    } else {
        Credentials::new(a.username, Secret(a.secret))
    }))
}

/// The host an auth file key refers to: keys may be `host`, `https://host`,
/// or `https://index.docker.io/v1/`; all Docker Hub names map to one.
fn auth_key_host(key: &str) -> String {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = k.split('/').next().unwrap_or(k).to_ascii_lowercase();
    match host.as_str() {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => "docker.io".to_string(),
        _ => host,
    }
}

/// Standard base64 with padding (RFC 4648), for Basic auth.
pub fn base64_encode(input: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(input)
}

/// Decode standard or URL-safe base64, padded or not (auth files and JWTs
/// come in every form); `None` if malformed.
pub fn base64_decode(input: &str) -> Option<Vec<u8>> {
    use base64::alphabet::{STANDARD, URL_SAFE};
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    use base64::Engine;
    let lenient = GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true);
    let input = input.trim_end_matches('=');
    GeneralPurpose::new(&STANDARD, lenient)
        .decode(input)
        .or_else(|_| GeneralPurpose::new(&URL_SAFE, lenient).decode(input))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_hub_bearer_challenge() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c[0].param("service"), Some("registry.docker.io"));
        assert_eq!(c[0].param("scope"), Some("repository:library/alpine:pull"));
    }

    #[test]
    fn parses_commas_escapes_and_several_challenges() {
        let c = parse_challenges(
            r#"Bearer realm="https://r/t", scope="repository:a:pull,push" , error="insufficient_scope", Basic realm="say \"hi\", please", Negotiate"#,
        );
        assert_eq!(c.len(), 3);
        assert_eq!(c[0].param("scope"), Some("repository:a:pull,push"));
        assert_eq!(c[0].param("error"), Some("insufficient_scope"));
        assert_eq!(c[1].scheme, "basic");
        assert_eq!(c[1].param("realm"), Some("say \"hi\", please"));
        assert_eq!(c[2].scheme, "negotiate");
    }

    #[test]
    fn parses_unquoted_and_odd_input_without_panicking() {
        let c = parse_challenges("BASIC realm=registry");
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].param("realm"), Some("registry"));
        for junk in [
            "",
            ",,,",
            "=",
            "Bearer realm=\"unterminated",
            "Bearer =x",
            "\"",
            "Bearer realm=\"é\"",
        ] {
            let _ = parse_challenges(junk);
        }
        assert_eq!(parse_challenges("Bearer realm=\"é\"")[0].param("realm"), Some("é"));
    }

    #[test]
    fn token_answers() {
        let a = parse_token_answer(br#"{"token":"abc","expires_in":300}"#).unwrap();
        assert_eq!(a.token.expose(), "abc");
        assert_eq!(a.expires_in, Duration::from_secs(300));
        let a = parse_token_answer(br#"{"access_token":"xyz"}"#).unwrap();
        assert_eq!(a.token.expose(), "xyz");
        assert_eq!(a.expires_in, Duration::from_secs(60));
        let a = parse_token_answer(br#"{"token":"","access_token":"z","expires_in":5}"#).unwrap();
        assert_eq!(a.token.expose(), "z");
        assert_eq!(a.expires_in, Duration::from_secs(60));
        assert!(parse_token_answer(b"{}").is_err());
        assert!(parse_token_answer(b"<html>").is_err());
        assert!(parse_token_answer(br#"{"token":"a\nb"}"#).is_err());
    }

    #[test]
    fn secrets_do_not_print() {
        let mut c = Credentials::new("u", Secret::new("hunter2"));
        c.identity_token = Some(Secret::new("refresh-me"));
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!format!("{c:?}").contains("refresh-me"));
        assert!(!format!("{}", c.password).contains("hunter2"));
        assert_eq!(c.basic_header().expose(), "Basic dTpodW50ZXIy");
    }

    #[test]
    fn base64_round_trips() {
        for s in ["", "a", "ab", "abc", "abcd", "user:pa:ss wörd"] {
            let e = base64_encode(s.as_bytes());
            assert_eq!(base64_decode(&e).unwrap(), s.as_bytes());
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert!(base64_decode("a$b").is_none());
    }

    #[test]
    fn config_json_lookup() {
        let cfg = br#"{"auths":{
            "https://index.docker.io/v1/":{"auth":"aHViOnNlY3JldA=="},
            "localhost:5000":{"username":"bob","password":"pw"},
            "https://quay.io":{"auth":"cTpxcA=="}
        }}"#;
        let c = credentials_from_config(cfg, "docker.io").unwrap().unwrap();
        assert_eq!((c.username.as_str(), c.password.expose()), ("hub", "secret"));
        let c = credentials_from_config(cfg, "localhost:5000").unwrap().unwrap();
        assert_eq!((c.username.as_str(), c.password.expose()), ("bob", "pw"));
        let c = credentials_from_config(cfg, "quay.io").unwrap().unwrap();
        assert_eq!(c.username, "q");
        assert!(credentials_from_config(cfg, "ghcr.io").unwrap().is_none());
        assert!(credentials_from_config(b"{}", "ghcr.io").unwrap().is_none());
        assert!(credentials_from_config(b"nope", "ghcr.io").is_err());
        let bad = br#"{"auths":{"ghcr.io":{"auth":"bm9jb2xvbg=="}}}"#;
        let e = credentials_from_config(bad, "ghcr.io").unwrap_err();
        assert!(e.message.contains("USER:PASSWORD"));
    }

    #[test]
    fn helpers_and_identity_tokens() {
        let cfg = AuthConfig::parse(
            br#"{"auths":{"acr.example":{"identitytoken":"rt-1"},"plain.example":{"auth":"dTpw"}},
                 "credHelpers":{"ecr.example":"ecr-login","https://plain.example":"over"},
                 "credsStore":"desktop"}"#,
        )
        .unwrap();
        match cfg.lookup("acr.example").unwrap() {
            Lookup::Found(c) => assert_eq!(c.identity_token.unwrap().expose(), "rt-1"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(cfg.lookup("ecr.example").unwrap(), Lookup::Helper(h) if h == "ecr-login"));
        // A credHelpers entry wins over an auths entry for the same host.
        assert!(matches!(cfg.lookup("plain.example").unwrap(), Lookup::Helper(h) if h == "over"));
        assert!(matches!(cfg.lookup("other.example").unwrap(), Lookup::Helper(h) if h == "desktop"));
        let none = AuthConfig::parse(br#"{"auths":{"x.example":{}}}"#).unwrap();
        assert!(matches!(none.lookup("x.example").unwrap(), Lookup::Missing));
    }

    #[test]
    fn helper_answers() {
        let c = parse_helper_answer(br#"{"ServerURL":"r","Username":"u","Secret":"s"}"#)
            .unwrap()
            .unwrap();
        assert_eq!((c.username.as_str(), c.password.expose()), ("u", "s"));
        assert!(c.identity_token.is_none());
        let t = parse_helper_answer(br#"{"Username":"<token>","Secret":"refresh"}"#)
            .unwrap()
            .unwrap();
        assert_eq!(t.identity_token.unwrap().expose(), "refresh");
        assert!(parse_helper_answer(br#"{"Username":"u","Secret":""}"#)
            .unwrap()
            .is_none());
        let e = parse_helper_answer(b"not json secret").unwrap_err();
        assert!(!e.message.contains("secret"));
    }

    #[test]
    fn helper_names_must_be_plain() {
        assert!(run_helper("../../bin/sh", "r").is_err());
        assert!(run_helper("", "r").is_err());
    }
}

//! Authentication: `WWW-Authenticate` challenges, credentials (flags and
//! docker `config.json`), and bearer token answers.
//!
//! Secrets live in [`Secret`], whose `Debug` and `Display` never show the
//! value, so an accidental `{:?}` cannot leak a password into output.

use crate::error::{Error, Result};
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

/// A username and password for one registry.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub username: String,
    pub password: Secret,
}

impl Credentials {
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

/// Where the docker `config.json` is looked for when `--auth-file` is not given.
pub fn default_auth_file() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker").join("config.json"))
}

/// Look up credentials for `registry` in a docker `config.json`.
///
/// A missing file is not an error when `required` is false (the default
/// locations); a file that exists but cannot be parsed always is.
pub fn credentials_from_file(path: &Path, registry: &str, required: bool) -> Result<Option<Credentials>> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::usage(format!("cannot read auth file {}: {e}", path.display())));
        }
    };
    credentials_from_config(&text, registry).map_err(|e| e.context(format!("auth file {}", path.display())))
}

/// Look up credentials for `registry` in the text of a docker `config.json`.
pub fn credentials_from_config(text: &[u8], registry: &str) -> Result<Option<Credentials>> {
    #[derive(serde::Deserialize)]
    struct Config {
        #[serde(default)]
        auths: BTreeMap<String, Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        auth: Option<String>,
        username: Option<String>,
        password: Option<String>,
    }
    let config: Config = serde_json::from_slice(text)
        .map_err(|e| Error::usage(format!("not a valid docker config.json ({})", e.classify_name())))?;
    let wanted = auth_key_host(registry);
    let entry = config
        .auths
        .iter()
        .find(|(k, _)| auth_key_host(k) == wanted)
        .map(|(_, v)| v);
    let Some(entry) = entry else { return Ok(None) };
    if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
        if !u.is_empty() {
            return Ok(Some(Credentials {
                username: u.clone(),
                password: Secret(p.clone()),
            }));
        }
    }
    let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) else {
        return Ok(None);
    };
    let decoded = base64_decode(auth)
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| Error::usage(format!("the \"auth\" entry for {registry} is not valid base64")))?;
    let (u, p) = decoded
        .split_once(':')
        .ok_or_else(|| Error::usage(format!("the \"auth\" entry for {registry} is not USER:PASSWORD")))?;
    Ok(Some(Credentials {
        username: u.to_string(),
        password: Secret(p.to_string()),
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

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (RFC 4648), for Basic auth.
pub fn base64_encode(input: &[u8]) -> String {
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(B64[(n >> 18) as usize & 63] as char);
        out.push(B64[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            B64[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            B64[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// Decode standard or URL-safe base64, padded or not; `None` if malformed.
pub fn base64_decode(input: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &c in input.trim_end_matches('=').as_bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
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
        let c = Credentials {
            username: "u".into(),
            password: Secret::new("hunter2"),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
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
}

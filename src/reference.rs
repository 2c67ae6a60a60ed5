//! Image references (`[registry/]repository[:tag][@digest]`), parsed by the
//! distribution reference grammar and normalized the way docker does.

use crate::digest::Digest;
use crate::error::{Error, Quoted, Result};
use std::fmt;

/// The registry Docker Hub images are named under.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that actually serves Docker Hub's registry API.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// A parsed, normalized image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The registry as named in references, e.g. `docker.io` or `host:5000`.
    pub registry: String,
    /// The repository path, e.g. `library/alpine`.
    pub repository: String,
    /// The tag; `latest` when neither tag nor digest was given.
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parse a reference given on the command line.
    pub fn parse(input: &str) -> Result<Reference> {
        let invalid = |why: String| {
            Error::usage(format!("invalid image reference {}: {why}", Quoted(input)))
                .hint("references look like alpine, alpine:3.20, ghcr.io/org/repo:tag or host:5000/a/b@sha256:<64 hex>")
        };
        if input.is_empty() {
            return Err(invalid("it is empty".into()));
        }
        if let Some(c) = input.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid(format!("it contains the character '{}'", c.escape_debug())));
        }

        let (rest, digest) = match input.split_once('@') {
            Some((rest, d)) => {
                let digest = Digest::parse(d).map_err(|e| invalid(e.message))?;
                (rest, Some(digest))
            }
            None => (input, None),
        };

        let last_slash = rest.rfind('/');
        let (name, tag) = match rest.rfind(':') {
            Some(colon) if last_slash.is_none_or(|s| colon > s) => (&rest[..colon], Some(&rest[colon + 1..])),
            _ => (rest, None),
        };
        if let Some(tag) = tag {
            validate_tag(tag).map_err(invalid)?;
        }

        let (registry, path) = split_registry(name);
        validate_registry(&registry).map_err(invalid)?;
        if path.is_empty() {
            return Err(invalid("the repository name is empty".into()));
        }
        for component in path.split('/') {
            validate_path_component(component).map_err(invalid)?;
        }

        let mut repository = path.to_string();
        if registry == DOCKER_HUB && !repository.contains('/') {
            repository = format!("library/{repository}");
        }
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(invalid(format!("the name is longer than {MAX_NAME_LEN} characters")));
        }

        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some("latest".to_string()),
            (None, Some(_)) => None,
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The host[:port] to send API requests to.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// What to put after `/manifests/`: the digest when given, else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// `registry/repository`, e.g. `docker.io/library/alpine`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

/// The normalized repository (`registry/repository`) a reference names,
/// with any tag or digest dropped: how a signature's claim of a repository
/// (a classic `docker-reference`, a bundle's `subject[].name`) and
/// `--verify-identity` are compared. `None` when it is no reference.
pub fn repository_of(reference: &str) -> Option<String> {
    Reference::parse(reference).ok().map(|r| r.name())
}

impl fmt::Display for Reference {
    /// The full normalized form, e.g. `docker.io/library/alpine:latest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Split `name` into registry and path the way docker does: the first
/// component is a registry only if it looks like a host (has a dot or a
/// port, is `localhost`, or has uppercase letters, which a path cannot).
fn split_registry(name: &str) -> (String, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains('.')
                || first.contains(':')
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            let registry = match first {
                "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
                _ => first.to_string(),
            };
            (registry, rest)
        }
        _ => (DOCKER_HUB.to_string(), name),
    }
}

fn validate_registry(registry: &str) -> std::result::Result<(), String> {
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        // IPv6 literal: [::1]:5000
        let (addr, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("registry {} has an unclosed '['", Quoted(registry)))?;
        if addr.is_empty() || !addr.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return Err(format!("registry {} is not a valid IPv6 address", Quoted(registry)));
        }
        match after {
            "" => return Ok(()),
            p => (
                "",
                Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("registry {} is malformed", Quoted(registry)))?,
                ),
            ),
        }
    } else {
        match registry.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (registry, None),
        }
    };
    if let Some(port) = port {
        if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("registry port {} is not a number", Quoted(port)));
        }
    }
    if registry.starts_with('[') {
        return Ok(());
    }
    for label in host.split('.') {
        let ok = !label.is_empty()
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!("registry host {} is not a valid host name", Quoted(host)));
        }
    }
    Ok(())
}

/// `[a-z0-9]+ ((\.|_|__|-+)[a-z0-9]+)*`
fn validate_path_component(c: &str) -> std::result::Result<(), String> {
    if c.is_empty() {
        return Err(
            "the repository name has an empty path component (two slashes in a row, or a trailing slash)".into(),
        );
    }
    if c.chars().any(|ch| ch.is_ascii_uppercase()) {
        return Err(format!("repository name component {} must be lowercase", Quoted(c)));
    }
    let bytes = c.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return Err(format!(
            "repository name component {} must start and end with a lowercase letter or digit",
            Quoted(c)
        ));
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if alnum(b) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__", or one or more "-".
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return Err(format!(
                "repository name component {} has an invalid separator {}",
                Quoted(c),
                Quoted(sep)
            ));
        }
    }
    Ok(())
}

/// `[\w][\w.-]{0,127}`
fn validate_tag(tag: &str) -> std::result::Result<(), String> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    if bytes.is_empty() {
        return Err("the tag after ':' is empty".into());
    }
    if bytes.len() > MAX_TAG_LEN {
        return Err(format!("the tag is longer than {MAX_TAG_LEN} characters"));
    }
    if !word(bytes[0]) {
        return Err(format!(
            "tag {} must start with a letter, digit or underscore",
            Quoted(tag)
        ));
    }
    if !bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-') {
        return Err(format!(
            "tag {} may only contain letters, digits, '_', '.' and '-'",
            Quoted(tag)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex() -> String {
        "0123456789abcdef".repeat(4)
    }

    fn full(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalizes_docker_hub() {
        assert_eq!(full("alpine"), "docker.io/library/alpine:latest");
        assert_eq!(full("alpine:3.20"), "docker.io/library/alpine:3.20");
        assert_eq!(full("library/alpine"), "docker.io/library/alpine:latest");
        assert_eq!(full("docker.io/library/alpine"), "docker.io/library/alpine:latest");
        assert_eq!(full("index.docker.io/alpine"), "docker.io/library/alpine:latest");
        assert_eq!(full("user/app:v1"), "docker.io/user/app:v1");
        let r = Reference::parse("alpine").unwrap();
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.repository, "library/alpine");
    }

    #[test]
    fn parses_other_registries() {
        let r = Reference::parse("ghcr.io/org/repo:tag").unwrap();
        assert_eq!((r.registry.as_str(), r.repository.as_str()), ("ghcr.io", "org/repo"));
        assert_eq!(r.api_host(), "ghcr.io");
        let r = Reference::parse("host:5000/a/b/c:tag").unwrap();
        assert_eq!(r.registry, "host:5000");
        assert_eq!(r.repository, "a/b/c");
        assert_eq!(r.tag.as_deref(), Some("tag"));
        let r = Reference::parse("localhost/x").unwrap();
        assert_eq!((r.registry.as_str(), r.repository.as_str()), ("localhost", "x"));
        let r = Reference::parse("127.0.0.1:5000/x").unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        let r = Reference::parse("[::1]:5000/x:1").unwrap();
        assert_eq!(r.registry, "[::1]:5000");
        let r = Reference::parse("a.b-c.example/x__y/z-----w.v_u:T_1.2-3").unwrap();
        assert_eq!(r.repository, "x__y/z-----w.v_u");
    }

    #[test]
    fn repositories_compare_normalized() {
        let d = format!("sha256:{}", hex());
        let hub = Some("docker.io/library/alpine".to_string());
        for r in [
            "alpine",
            "index.docker.io/library/alpine:3.20",
            &format!("docker.io/alpine@{d}"),
        ] {
            assert_eq!(repository_of(r), hub, "{r}");
        }
        assert_eq!(repository_of("h:5000/a/b:t"), Some("h:5000/a/b".to_string()));
        assert_eq!(repository_of("image"), Some("docker.io/library/image".to_string()));
        assert_eq!(repository_of("not a reference"), None);
    }

    #[test]
    fn parses_digests() {
        let d = format!("sha256:{}", hex());
        let r = Reference::parse(&format!("alpine@{d}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.manifest_reference(), d);
        assert_eq!(r.to_string(), format!("docker.io/library/alpine@{d}"));
        let r = Reference::parse(&format!("alpine:3.20@{d}")).unwrap();
        assert_eq!(r.tag.as_deref(), Some("3.20"));
        assert_eq!(r.manifest_reference(), d, "the digest wins over the tag");
        let r = Reference::parse(&format!("host:5000/a@{d}")).unwrap();
        assert_eq!(r.registry, "host:5000");
    }

    #[test]
    fn rejects_invalid_references() {
        let cases = [
            ("", "empty"),
            ("Alpine", "lowercase"),
            ("docker.io/Library/alpine", "lowercase"),
            ("alpine:", "empty"),
            ("alpine:-bad", "must start"),
            ("alpine:a/b", "not a number"),
            ("alpine:bad!", "may only contain"),
            ("alpine@sha256:abc", "hex"),
            ("alpine@md5:0123", "sha256"),
            ("a//b", "empty path component"),
            ("a/", "empty path component"),
            ("-a", "start and end"),
            ("a..b", "invalid separator"),
            ("a___b", "invalid separator"),
            ("host:port/a", "not a number"),
            ("ho_st.io/a", "not a valid host"),
            ("al pine", "character"),
        ];
        for (input, expect) in cases {
            let e = Reference::parse(input).expect_err(input);
            assert_eq!(e.kind, crate::error::Kind::Usage, "{input}");
            assert!(e.message.contains(expect), "{input}: {}", e.message);
        }
        let long_tag = format!("a:{}", "t".repeat(129));
        assert!(Reference::parse(&long_tag).is_err());
        let long_name = format!("x.io/{}", "a".repeat(260));
        assert!(Reference::parse(&long_name).is_err());
    }
}

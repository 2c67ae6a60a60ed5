//! Proxies from the environment, the way curl and Go read them: `HTTPS_PROXY`
//! for https URLs, `HTTP_PROXY` for http URLs, `ALL_PROXY` for both (each also
//! in lowercase), and `NO_PROXY` for hosts to reach directly.

use crate::error::{Error, Result};

/// The proxy settings of the environment.
#[derive(Debug, Clone, Default)]
pub struct ProxyEnv {
    pub http: Option<ureq::Proxy>,
    pub https: Option<ureq::Proxy>,
    no_proxy: Vec<String>,
}

impl ProxyEnv {
    pub fn from_env() -> Result<ProxyEnv> {
        let first = |names: &[&str]| -> Result<Option<ureq::Proxy>> {
            for name in names {
                if let Some(v) = std::env::var(name).ok().filter(|v| !v.trim().is_empty()) {
                    // The value may hold a password: name the variable, not its value.
                    let p = ureq::Proxy::new(v.trim())
                        .map_err(|_| Error::usage(format!("{name} is not a proxy URL like http://proxy:3128")))?;
                    return Ok(Some(p));
                }
            }
            Ok(None)
        };
        let no_proxy = ["NO_PROXY", "no_proxy"]
            .iter()
            .find_map(|n| std::env::var(n).ok())
            .unwrap_or_default();
        Ok(ProxyEnv {
            http: first(&["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"])?,
            https: first(&["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"])?,
            no_proxy: parse_no_proxy(&no_proxy),
        })
    }

    /// Whether requests to `host` (`name[:port]`) go around the proxy.
    pub fn bypass(&self, host: &str) -> bool {
        bypasses(&self.no_proxy, host)
    }
}

fn parse_no_proxy(v: &str) -> Vec<String> {
    v.split([',', ' '])
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| !e.is_empty())
        .collect()
}

/// `NO_PROXY` matching: `*` is everything; an entry matches its host and its
/// subdomains (`example.com` and `.example.com` both match `a.example.com`);
/// an entry with a port matches only that port.
fn bypasses(entries: &[String], host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    let (name, port) = split_port(&host);
    entries.iter().any(|e| {
        if e == "*" {
            return true;
        }
        let (ename, eport) = split_port(e);
        if eport.is_some() && eport != port {
            return false;
        }
        let ename = ename.trim_start_matches('.');
        name == ename || name.ends_with(&format!(".{ename}"))
    })
}

/// `host:port` -> (host, Some(port)); IPv6 `[::1]:5000` keeps its brackets off.
fn split_port(s: &str) -> (&str, Option<&str>) {
    if let Some(rest) = s.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((h, tail)) => (h, tail.strip_prefix(':')),
            None => (s, None),
        };
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.chars().all(|c| c.is_ascii_digit()) => (h, Some(p)),
        _ => (s, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_proxy_rules() {
        let e = parse_no_proxy("localhost, .corp.example,10.0.0.1 ,registry.local:5000,[::1]");
        assert!(bypasses(&e, "localhost:5000"));
        assert!(bypasses(&e, "a.corp.example"));
        assert!(bypasses(&e, "corp.example"));
        assert!(!bypasses(&e, "evilcorp.example"));
        assert!(bypasses(&e, "10.0.0.1"));
        assert!(bypasses(&e, "registry.local:5000"));
        assert!(!bypasses(&e, "registry.local:443"));
        assert!(bypasses(&e, "[::1]:443"));
        assert!(!bypasses(&e, "ghcr.io"));
        assert!(bypasses(&parse_no_proxy("*"), "ghcr.io"));
        assert!(!bypasses(&parse_no_proxy(""), "ghcr.io"));
    }
}

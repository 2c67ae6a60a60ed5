//! Mirrors: the places an image may be pulled from, tried in order, with the
//! registry itself last. Like Docker's `registry-mirrors` and containerd's
//! `hosts.toml`, a mirror that fails (cannot connect, 404, 5xx, refuses us,
//! serves bad content) hands over to the next; one that could not be reached
//! is not asked again in this run, so a dead mirror costs one timeout, not
//! one per blob. Everything a mirror serves is verified like anything else.

use crate::digest::Digest;
use crate::error::{Error, Kind, Quoted, Result};
use crate::progress::{BlobProgress, Progress};
use crate::registry::{Client, FetchedManifest};
use std::path::Path;

/// A `--mirror` value: `[http://|https://]HOST[:PORT][/PREFIX]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorSpec {
    /// `host[:port]`.
    pub host: String,
    /// Repository path prefix on the mirror (Harbor-style proxy projects), or "".
    pub prefix: String,
    /// `Some(true)` for an explicit `http://`, `Some(false)` for `https://`.
    pub plain: Option<bool>,
}

impl MirrorSpec {
    pub fn parse(s: &str) -> Result<MirrorSpec> {
        let bad = |why: &str| {
            Error::usage(format!("--mirror {}: {why}", Quoted(s)))
                .hint("write it as HOST[:PORT][/PREFIX], e.g. mirror.example:5000")
        };
        let (plain, rest) = if let Some(r) = s.strip_prefix("http://") {
            (Some(true), r)
        } else if let Some(r) = s.strip_prefix("https://") {
            (Some(false), r)
        } else if s.contains("://") {
            return Err(bad("only http:// and https:// mirrors exist"));
        } else {
            (None, s)
        };
        let rest = rest.trim_end_matches('/');
        let (host, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let host_ok = !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c));
        if !host_ok {
            return Err(bad("not a host name"));
        }
        // Repository path components: lowercase alphanumerics, separated by . _ -
        let alnum = |ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit();
        let prefix_ok = prefix
            .split('/')
            .all(|c| c.starts_with(alnum) && c.ends_with(alnum) && c.chars().all(|ch| alnum(ch) || "._-".contains(ch)));
        if !prefix.is_empty() && !prefix_ok {
            return Err(bad("the path prefix must be lowercase repository path components"));
        }
        Ok(MirrorSpec {
            host: host.to_ascii_lowercase(),
            prefix: prefix.to_string(),
            plain,
        })
    }

    /// The repository's name on this mirror.
    pub fn repository(&self, repository: &str) -> String {
        if self.prefix.is_empty() {
            repository.to_string()
        } else {
            format!("{}/{repository}", self.prefix)
        }
    }
}

/// Whether mirrors serve `registry`: Docker Hub by default, else the
/// registries named with `--mirror-for`.
pub fn applies_to(registry: &str, mirror_for: &[String]) -> bool {
    let norm = |r: &str| {
        let r = r.trim().trim_end_matches('/').to_ascii_lowercase();
        let r = r
            .strip_prefix("https://")
            .or_else(|| r.strip_prefix("http://"))
            .map(str::to_string)
            .unwrap_or(r);
        match r.as_str() {
            "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => "docker.io".to_string(),
            _ => r,
        }
    };
    if mirror_for.is_empty() {
        return norm(registry) == "docker.io";
    }
    mirror_for.iter().any(|m| norm(m) == norm(registry))
}

/// One place to pull from.
struct Source {
    client: Client,
    /// `mirror HOST` or `registry HOST`, for messages.
    label: String,
    is_mirror: bool,
    pinged: bool,
    /// Could not be reached: not asked again in this run.
    dead: bool,
    served: usize,
}

/// The mirrors in order, then the registry.
pub struct Sources {
    list: Vec<Source>,
    progress: Progress,
}

impl Sources {
    /// `mirrors` (already built for this repository) first, then `registry`.
    pub fn new(mirrors: Vec<Client>, registry: Client, progress: Progress) -> Sources {
        let mut list: Vec<Source> = mirrors
            .into_iter()
            .map(|c| Source {
                label: format!("mirror {}", c.host()),
                client: c,
                is_mirror: true,
                pinged: false,
                dead: false,
                served: 0,
            })
            .collect();
        list.push(Source {
            label: format!("registry {}", registry.host()),
            client: registry,
            is_mirror: false,
            pinged: false,
            dead: false,
            served: 0,
        });
        Sources { list, progress }
    }

    /// The registry's client (the last source): partial pulls ask it for ranges.
    #[cfg(feature = "delta")]
    pub fn registry_client(&mut self) -> Option<&mut Client> {
        self.list.last_mut().map(|s| &mut s.client)
    }

    /// The registry's host (the last source).
    pub fn registry_host(&self) -> &str {
        self.list.last().map_or("", |s| s.client.host())
    }

    /// The registry itself, pinged, for what only it can answer (its tag
    /// list: a mirror lists what it happens to hold).
    pub fn registry(&mut self) -> Result<&mut Client> {
        let Some(s) = self.list.last_mut() else {
            return Err(Error::other("no registry"));
        };
        if !s.pinged {
            s.client.ping()?;
            s.pinged = true;
        }
        Ok(&mut s.client)
    }

    /// Fetch a manifest from the first source that has it.
    pub fn manifest(&mut self, reference: &str, accept: &str, max: u64) -> Result<(FetchedManifest, String)> {
        self.first_ok(&format!("manifest {reference}"), |c| c.manifest(reference, accept, max))
    }

    /// The digest a tag names, by HEAD, from the first source that answers.
    pub fn head_manifest(&mut self, reference: &str, accept: &str) -> Result<Option<Digest>> {
        self.first_ok(&format!("manifest {reference}"), |c| c.head_manifest(reference, accept))
            .map(|(d, _)| d)
    }

    /// The referrers index of `digest` from the first source that has one.
    pub fn referrers(&mut self, digest: &Digest, max: u64) -> Result<FetchedManifest> {
        self.first_ok(&format!("referrers of {}", digest.short()), |c| {
            c.referrers(digest, max)
        })
        .map(|(m, _)| m)
    }

    /// A small blob in memory, verified, from the first source that has it.
    pub fn small_blob(&mut self, digest: &Digest, max: u64) -> Result<Vec<u8>> {
        self.first_ok(&format!("blob {}", digest.short()), |c| c.small_blob(digest, max))
            .map(|(b, _)| b)
    }

    /// Download a blob from the first source that serves it. A source that
    /// fails part way hands the partial file to the next, which resumes it.
    pub fn download_blob(
        &mut self,
        digest: &Digest,
        size: u64,
        part: &Path,
        bp: &mut BlobProgress,
    ) -> Result<(u64, String)> {
        let mut total = 0;
        let what = format!("blob {}", digest.short());
        let r = self.first_ok(&what, |c| {
            let r = c.download_blob(digest, size, part, bp);
            if let Ok(n) = r {
                total += n;
            }
            r
        });
        r.map(|(_, host)| (total, host))
    }

    /// A line saying which hosts served the pull, when mirrors were in play.
    pub fn report(&self) -> Option<String> {
        if self.list.len() < 2 {
            return None;
        }
        let parts: Vec<String> = self
            .list
            .iter()
            .map(|s| {
                let state = if s.dead { ", unreachable" } else { "" };
                format!("{} {} item(s){state}", s.label, s.served)
            })
            .collect();
        Some(format!("served by: {}", parts.join("; ")))
    }

    /// Run `op` on each live source in order until one succeeds; returns
    /// its answer and the host that gave it.
    fn first_ok<T>(&mut self, what: &str, mut op: impl FnMut(&mut Client) -> Result<T>) -> Result<(T, String)> {
        let last = self.list.len() - 1;
        for i in 0..=last {
            let s = &mut self.list[i];
            if s.dead && i < last {
                continue;
            }
            let r = if s.pinged {
                op(&mut s.client)
            } else {
                s.client.ping().and_then(|()| {
                    s.pinged = true;
                    op(&mut s.client)
                })
            };
            match r {
                Ok(v) => {
                    s.served += 1;
                    if s.is_mirror || i > 0 {
                        self.progress.note(format!("{what}: from {}", s.label));
                    }
                    return Ok((v, s.client.host().to_string()));
                }
                Err(e) if i < last && hands_over(&e) => {
                    if e.kind == Kind::Network {
                        s.dead = true;
                    }
                    let next = self.list[i + 1..]
                        .iter()
                        .find(|n| !n.dead || !n.is_mirror)
                        .map(|n| n.label.clone())
                        .unwrap_or_default();
                    let label = self.list[i].label.clone();
                    self.progress.warn(format!("{label}: {}; trying {next}", e.message));
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::other(format!("{what}: no source left to try")))
    }
}

/// Failures another source may not have. Local problems (disk, usage) are not.
fn hands_over(e: &Error) -> bool {
    matches!(e.kind, Kind::Network | Kind::NotFound | Kind::Auth | Kind::Integrity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_specs() {
        let m = MirrorSpec::parse("mirror.example:5000").unwrap();
        assert_eq!(
            (m.host.as_str(), m.prefix.as_str(), m.plain),
            ("mirror.example:5000", "", None)
        );
        assert_eq!(m.repository("library/alpine"), "library/alpine");
        let m = MirrorSpec::parse("http://Harbor.local/dockerhub-proxy/").unwrap();
        assert_eq!(
            (m.host.as_str(), m.prefix.as_str(), m.plain),
            ("harbor.local", "dockerhub-proxy", Some(true))
        );
        assert_eq!(m.repository("library/alpine"), "dockerhub-proxy/library/alpine");
        assert_eq!(MirrorSpec::parse("https://[::1]:443").unwrap().plain, Some(false));
        for bad in ["", "ftp://x", "a b", "host/UPPER", "host//x", "host/../x", "user@host"] {
            assert!(MirrorSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn which_registries_mirrors_serve() {
        assert!(applies_to("docker.io", &[]));
        assert!(!applies_to("ghcr.io", &[]));
        let only = vec!["ghcr.io".to_string(), "https://index.docker.io/".to_string()];
        assert!(applies_to("ghcr.io", &only));
        assert!(applies_to("docker.io", &only));
        assert!(!applies_to("quay.io", &only));
    }
}

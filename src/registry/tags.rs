//! The tag list (`GET /v2/<name>/tags/list`), page by page, bounded: the
//! next page is the one the `Link` header names, on the registry's own
//! origin and for the same repository only (so credentials stay where they
//! belong), at most [`MAX_PAGES`] pages, [`MAX_TAGS`] tags,
//! [`MAX_PAGE_BYTES`] an answer and [`MAX_TOTAL_BYTES`] in all.

use super::*;

/// Pages followed at most.
pub const MAX_PAGES: usize = 100;
/// Tags collected at most.
pub const MAX_TAGS: usize = 100_000;
/// The largest answer a page may be.
pub const MAX_PAGE_BYTES: u64 = 4 * 1024 * 1024;
/// The most all pages together may be (100,000 long tags, quoted, fit).
pub const MAX_TOTAL_BYTES: u64 = 16 * 1024 * 1024;
/// The longest tag the distribution spec allows.
const MAX_TAG_LEN: usize = 128;

impl Client {
    /// Every tag of the repository, in the order the registry lists them,
    /// asking for `page_size` a page when given.
    pub fn tags(&mut self, page_size: Option<u64>) -> Result<Vec<String>> {
        let path = format!("/v2/{}/tags/list", self.repository);
        let mut url = format!("{}{path}", self.origin);
        if let Some(n) = page_size {
            url.push_str(&format!("?n={n}"));
        }
        let what = format!("tags of {}", self.repository);
        let mut tags: Vec<String> = Vec::new();
        let mut left = MAX_TOTAL_BYTES;
        for _ in 0..MAX_PAGES {
            let page = self.fetch_small(&url, &what, "application/json", left.min(MAX_PAGE_BYTES))?;
            left -= page.bytes.len() as u64;
            let p: serde_json::Value = serde_json::from_slice(&page.bytes)
                .map_err(|e| Error::integrity(format!("{what}: the answer is not a tag list: {e}")))?;
            for t in p["tags"].as_array().into_iter().flatten() {
                let t = t.as_str().unwrap_or_default();
                if t.is_empty() || t.len() > MAX_TAG_LEN {
                    return Err(Error::integrity(format!(
                        "{what}: the registry lists a tag of {} bytes (1 to {MAX_TAG_LEN} allowed)",
                        t.len()
                    )));
                }
                if tags.len() >= MAX_TAGS {
                    return Err(Error::integrity(format!(
                        "{what}: the registry lists more than {MAX_TAGS} tags; minipull stops there"
                    )));
                }
                tags.push(t.to_string());
            }
            let Some(next) = page.link.as_deref().and_then(next_link) else {
                return Ok(tags);
            };
            let next = transport::resolve_url(&url, next);
            // Only this repository's tag list on the registry's own origin.
            let rest = next.strip_prefix(self.origin.as_str()).unwrap_or("");
            let (p, _) = rest.split_once('?').unwrap_or((rest, ""));
            if p != path || rest.contains('#') {
                return Err(Error::integrity(format!(
                    "{what}: the next page is at {}, not at this repository's tag list on {}; not followed",
                    transport::scheme_and_host(&next),
                    self.origin
                )));
            }
            url = next;
        }
        Err(Error::integrity(format!(
            "{what}: the tag list goes on past {MAX_PAGES} pages ({} tags so far); minipull stops there",
            tags.len()
        ))
        .hint("ask for larger pages with --page-size"))
    }
}

/// The target of the `rel="next"` link in a `Link` header value.
fn next_link(header: &str) -> Option<&str> {
    header.split(',').find_map(|part| {
        let (target, params) = part.trim().strip_prefix('<')?.split_once('>')?;
        params
            .split(';')
            .any(|p| {
                let p = p.trim().replace(' ', "");
                p.eq_ignore_ascii_case("rel=\"next\"") || p.eq_ignore_ascii_case("rel=next")
            })
            .then_some(target)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers() {
        assert_eq!(
            next_link(r#"</v2/a/tags/list?n=2&last=b>; rel="next""#),
            Some("/v2/a/tags/list?n=2&last=b")
        );
        assert_eq!(
            next_link(r#"<https://x/prev>; rel="prev", <https://x/v2/a/tags/list?last=c>; rel=next"#),
            Some("https://x/v2/a/tags/list?last=c")
        );
        assert_eq!(next_link(r#"</v2/a/tags/list>; rel="prev""#), None);
        assert_eq!(next_link("garbage"), None);
    }
}

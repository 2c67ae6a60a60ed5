//! The auth session with one registry: what its 401s ask for, bearer tokens
//! from the realm its own challenge names, Basic credentials. A challenge
//! from any other origin (a redirect target) cannot become this session's
//! realm; it gets at most an anonymous token of its own (`transport.rs`).

use super::*;

/// A challenge sent by the registry's own origin: the only kind whose realm
/// may receive the user's credentials or whose token goes to the registry.
/// [`OwnChallenge::of`] is the one way to make one; a 401 from a redirect
/// target (a CDN, or anyone a hostile registry points at) cannot.
#[derive(Clone)]
pub(super) struct OwnChallenge(pub(super) Challenge);

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

/// Whether a challenge's `scope` (`repository:NAME:ACTIONS`, possibly
/// several separated by spaces) names the repository `repo`.
pub(super) fn names_repository(scope: &str, repo: &str) -> bool {
    scope.split(' ').any(|s| {
        s.strip_prefix("repository:")
            .and_then(|r| r.rsplit_once(':'))
            .is_some_and(|(name, _)| name == repo)
    })
}

/// Percent-encode a query value (RFC 3986 unreserved characters pass).
pub(super) fn percent_encode(s: &str) -> String {
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
    const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
    utf8_percent_encode(s, QUERY_VALUE).to_string()
}

impl Client {
    /// The Authorization value for the registry, renewing an expiring token.
    pub(super) fn authorization(&mut self) -> Result<Option<Secret>> {
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
    pub(super) fn learn_challenge(&mut self, resp: &Response<Body>) -> Result<()> {
        let challenges = OwnChallenge::of(resp, &self.origin, &self.host)?;
        if let Some(bearer) = challenges.iter().find(|c| c.0.scheme == "bearer") {
            if bearer.0.param("realm").is_none_or(str::is_empty) {
                return Err(Error::auth(
                    "the registry asked for a bearer token but named no realm to get it from",
                ));
            }
            self.challenge = Some(bearer.clone());
        } else if self.challenge.is_some() {
            // Harbor answers an expired bearer token with `Basic
            // realm="harbor"`: renew the token at the realm learned first;
            // the password never goes out as Basic because of it.
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
    pub(super) fn fetch_token(&mut self) -> Result<()> {
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
        // One scope rule: ours first; a scope the challenge offers is added
        // only when it names our repository (GHCR's placeholder and
        // Artifactory's truncated key never stand in for ours).
        let ours = format!("repository:{}:pull", self.repository);
        query.push(format!("scope={}", percent_encode(&ours)));
        if let Some(offered) = ch
            .param("scope")
            .filter(|o| *o != ours && names_repository(o, &self.repository))
        {
            query.push(format!("scope={}", percent_encode(offered)));
        }
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
        let route = self.route(&url);
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
            answer.map_err(|e| transport_error(&e, &route))
        })?;
        if refresh.is_some() && matches!(resp.status().as_u16(), 400 | 404 | 405) {
            // Some deployments (ACR, Artifact Registry) refuse the OAuth2
            // POST: ask with GET, the refresh token as the Basic password.
            let fallback = self.creds.as_ref().and_then(|c| {
                let token = c.identity_token.clone()?;
                let user = if c.username.is_empty() {
                    "<token>"
                } else {
                    c.username.as_str()
                };
                Some(Credentials::new(user, token).basic_header())
            });
            resp = self.with_retries("getting a token", |_| {
                let mut req = agent.get(&url);
                if let Some(b) = &fallback {
                    req = req.header("Authorization", b.expose());
                }
                req.call().map_err(|e| transport_error(&e, &route))
            })?;
        }
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
            .map_err(|e| transport_error(&e, &route).error.context("reading the token"))?;
        let answer = auth::parse_token_answer(&body)?;
        let lifetime = answer.expires_in.saturating_sub(TOKEN_MARGIN);
        self.bearer = Some((answer.token, started + lifetime));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offered_scopes_count_only_for_our_repository() {
        assert!(names_repository("repository:team/app:pull,push", "team/app"));
        assert!(
            !names_repository("repository:user/image:pull", "team/app"),
            "GHCR's placeholder"
        );
        assert!(
            !names_repository("repository:test/cp5:pull", "foo-docker/test/cp5"),
            "Artifactory's truncated key"
        );
        assert!(names_repository("registry:catalog:* repository:a/b:pull", "a/b"));
    }

    #[test]
    fn percent_encoding() {
        assert_eq!(
            percent_encode("repository:library/alpine:pull"),
            "repository%3Alibrary%2Falpine%3Apull"
        );
        assert_eq!(percent_encode("a b~"), "a%20b~");
    }
}

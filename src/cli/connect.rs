//! What talking to a registry needs: TLS settings, credentials, mirrors.

use super::*;
/// Credentials for the registry: flags, then `MINIPULL_USERNAME` and
/// `MINIPULL_PASSWORD`, then auth files (and the helpers they name).
pub(super) fn credentials(args: &Args, reference: &Reference, progress: Progress) -> Result<Option<Credentials>> {
    match (&args.username, args.password_stdin) {
        (Some(u), true) => {
            if u.is_empty() || u.contains(':') {
                return Err(Error::usage("--username must be non-empty and must not contain ':'"));
            }
            return Ok(Some(Credentials::new(
                u.clone(),
                registry::read_password_stdin(u.starts_with("_json_key"))?,
            )));
        }
        (Some(_), false) => {
            return Err(Error::usage("--username needs --password-stdin")
                .hint("echo \"$PASSWORD\" | minipull --username USER --password-stdin REF OUTDIR"))
        }
        (None, true) => return Err(Error::usage("--password-stdin needs --username")),
        (None, false) => {}
    }
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (env("MINIPULL_USERNAME"), env("MINIPULL_PASSWORD")) {
        (Some(u), Some(p)) => {
            if u.contains(':') {
                return Err(Error::usage("MINIPULL_USERNAME must not contain ':'"));
            }
            return Ok(Some(Credentials::new(u, auth::Secret::new(p))));
        }
        (None, None) => {}
        _ => {
            return Err(Error::usage(
                "set both MINIPULL_USERNAME and MINIPULL_PASSWORD, or neither",
            ))
        }
    }
    stored_credentials(args, &reference.registry, progress)
}

/// Credentials an auth file (or its helper) holds for `host`.
pub(super) fn stored_credentials(args: &Args, host: &str, progress: Progress) -> Result<Option<Credentials>> {
    let mut notes = Vec::new();
    let found = match &args.auth_file {
        Some(file) => auth::credentials_from_files(Some(file), host, &mut notes)?,
        None => default_credentials(host, &mut notes, progress)?,
    };
    for n in notes {
        progress.note(n);
    }
    Ok(found)
}

/// The default auth files in order, as if each were given: one that cannot
/// be read (a HOME inherited under `sudo -u`, `setpriv` or systemd's
/// `User=`) is only a warning, since no login may be needed at all; a file
/// that exists and says something wrong is still an error.
fn default_credentials(host: &str, notes: &mut Vec<String>, progress: Progress) -> Result<Option<Credentials>> {
    for file in auth::default_auth_files() {
        // Read once here to tell "cannot read" apart (they are small files).
        match std::fs::read(&file) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                progress.warn(format!(
                    "cannot read the auth file {}: {e}; going on without it (--auth-file names one to use)",
                    file.display()
                ));
                continue;
            }
        }
        if let Some(c) = auth::credentials_from_files(Some(&file), host, notes)? {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

/// Clients for the mirrors that serve this reference, in order.
pub(super) fn mirror_clients(
    args: &Args,
    reference: &Reference,
    opts: &Options,
    progress: Progress,
) -> Result<Vec<Client>> {
    let list = |flag: &[String], var: &str| -> Vec<String> {
        if !flag.is_empty() {
            return flag.to_vec();
        }
        std::env::var(var)
            .unwrap_or_default()
            .split([',', ' '])
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    let mirrors = list(&args.mirrors, "MINIPULL_MIRROR");
    let mirror_for = list(&args.mirror_for, "MINIPULL_MIRROR_FOR");
    let specs = mirrors
        .iter()
        .map(|m| MirrorSpec::parse(m))
        .collect::<Result<Vec<_>>>()?;
    if specs.is_empty() || !mirror::applies_to(&reference.registry, &mirror_for) {
        return Ok(Vec::new());
    }
    // A mirror gets one retry: the next source is a better bet than waiting.
    let mirror_opts = Options {
        retries: opts.retries.min(1),
        ..opts.clone()
    };
    let mut clients = Vec::new();
    for m in specs {
        // Only credentials stored for the mirror's own host go to it.
        let creds = stored_credentials(args, &m.host, progress)?;
        let plain = m.plain.unwrap_or(opts.plain_for(&m.host));
        clients.push(Client::for_host(
            &m.host,
            plain,
            &m.repository(&reference.repository),
            creds,
            mirror_opts.clone(),
            progress,
        ));
    }
    Ok(clients)
}

/// The TLS settings the flags ask for, with the warnings they deserve.
pub(super) fn tls_settings(args: &Args, progress: Progress) -> Result<std::sync::Arc<rustls::ClientConfig>> {
    let (tls, roots) = tls::config(&TlsOptions {
        ca_files: args.ca_files.clone(),
        insecure: args.insecure,
    })?;
    if args.insecure {
        // Loud even with --quiet: the user gave up what TLS protects.
        eprintln!(
            "minipull: WARNING: --insecure: TLS certificates are NOT verified. Anyone on the network path can \
             impersonate the registry and read credentials sent to it; image content is still checked against its digests."
        );
    } else {
        if !args.ca_files.is_empty() {
            progress.note(format!("trusting {roots}"));
        }
    }
    if let Some(path) = &args.time_floor {
        match tls::read_floor(path) {
            Ok(t) => tls::set_floor(t.unwrap_or(0)),
            Err(why) => progress.warn(format!("--time-floor {}: ignored: {why}", path.display())),
        }
    }
    Ok(tls)
}

/// `--time-floor`: raise the file to what this run verified (a warning,
/// never an error: what the run did stands). A file that was ignored
/// stays as it is.
pub(super) fn raise_time_floor(args: &Args, progress: Progress) {
    let Some(path) = &args.time_floor else { return };
    if args.insecure || tls::read_floor(path).is_err() {
        return;
    }
    match tls::raise_floor(path) {
        Ok(Some(t)) => progress.note(format!("time floor {} raised to {}", path.display(), tls::utc(t))),
        Ok(None) => {}
        Err(e) => progress.warn(format!("cannot raise the time floor: {e}")),
    }
}

/// The mirrors that serve `reference`, then its registry, ready to ask.
pub(super) fn sources(
    args: &Args,
    reference: &Reference,
    tls: std::sync::Arc<rustls::ClientConfig>,
    progress: Progress,
) -> Result<Sources> {
    let creds = credentials(args, reference, progress)?;
    let plain_hosts = plain_hosts()?;
    let plain = args.plain_http || plain_hosts.iter().any(|h| h.eq_ignore_ascii_case(&reference.registry));
    if !args.insecure {
        let sent = creds.is_some() && !plain;
        if let Some(w) = tls::clock_warning(args.time_floor.as_deref(), sent) {
            progress.warn(w);
        }
    }
    let opts = Options {
        plain_http: args.plain_http,
        plain_hosts,
        retries: args.retries,
        retries_explicit: args.retries_explicit,
        retry_for: Duration::from_secs(args.retry_for),
        keep_written_pages: args.unpack.is_some(),
        timeout: Duration::from_secs(args.timeout),
        speed_limit: args.speed_limit,
        speed_time: Duration::from_secs(args.speed_time),
        limit_rate: args.limit_rate,
        tls,
        proxies: crate::proxy::ProxyEnv::from_env()?,
    };
    let mirrors = mirror_clients(args, reference, &opts, progress)?;
    let client = Client::new(reference, creds, opts, progress);
    Ok(Sources::new(mirrors, client, progress))
}

/// `$MINIPULL_PLAIN_HTTP=host:port,...`: plain HTTP (credentials allowed, as
/// with --plain-http) for the hosts it names, exactly as written in
/// references, and for no other.
fn plain_hosts() -> Result<Vec<String>> {
    let Some(v) = std::env::var_os("MINIPULL_PLAIN_HTTP") else {
        return Ok(Vec::new());
    };
    let v = v
        .into_string()
        .map_err(|_| Error::usage("MINIPULL_PLAIN_HTTP is not valid UTF-8"))?;
    let hosts: Vec<String> = v
        .split([',', ' '])
        .filter(|h| !h.is_empty())
        .map(str::to_string)
        .collect();
    if let Some(bad) = hosts.iter().find(|h| h.contains(['/', '@']) || h.len() > 255) {
        return Err(Error::usage(format!(
            "MINIPULL_PLAIN_HTTP: {} is not a host[:port]",
            crate::error::Quoted(bad)
        ))
        .hint("e.g. MINIPULL_PLAIN_HTTP=lab.local:5000,10.0.0.2:5000 (no scheme, no path)"));
    }
    Ok(hosts)
}

//! `minipull check REF OUTDIR`: is there an update? One manifest HEAD (the
//! `/v2/` ping and token requests auth needs aside), compared with the
//! digest OUTDIR recorded for that exact reference. Exit 0: up to date;
//! 10: an update is available, or the reference is not in OUTDIR yet.

use super::connect::{sources, tls_settings};
use super::*;
use crate::digest::Digest;

/// The exit code that says "an update is available".
pub const UPDATE_AVAILABLE: i32 = 10;

pub(super) fn check_command(args: &Args) -> Result<i32> {
    let reference = Reference::parse(&args.reference)?;
    let progress = Progress::new(args.quiet);
    let local = recorded_digest(&args.outdir, &reference)?;
    let remote = match &reference.digest {
        Some(d) => d.clone(),
        None => {
            let tls = tls_settings(args, progress)?;
            let mut sources = sources(args, &reference, tls, progress)?;
            let tag = reference.manifest_reference();
            match sources.head_manifest(&tag, crate::manifest::ACCEPT)? {
                Some(d) => d,
                None => {
                    progress.note("the registry answered HEAD without a digest (or refused it); asking with GET");
                    let (m, _) =
                        sources.manifest(&tag, crate::manifest::ACCEPT, crate::manifest::MAX_MANIFEST_BYTES)?;
                    Digest::sha256_of(&m.bytes)
                }
            }
        }
    };
    let current = local.as_deref() == Some(remote.to_string().as_str());
    let out = if args.json {
        serde_json::json!({
            "reference": reference.to_string(),
            "remote": remote.to_string(),
            "local": local,
            "upToDate": current,
        })
        .to_string()
    } else {
        remote.to_string()
    };
    let _ = writeln!(std::io::stdout(), "{out}");
    progress.note(match (&local, current) {
        (_, true) => format!("{reference} is up to date in {}", args.outdir.display()),
        (Some(l), false) => format!("{reference} has an update: {l} in OUTDIR, {remote} in the registry"),
        (None, false) => format!("{reference} is not in {} yet", args.outdir.display()),
    });
    Ok(if current { 0 } else { UPDATE_AVAILABLE })
}

/// The digest OUTDIR's `index.json` recorded for this exact reference: the
/// one its tag resolved to (an index, for a one-platform pull of a
/// multi-platform tag), else the entry's own. Read without taking the lock
/// or creating anything.
fn recorded_digest(outdir: &Path, reference: &Reference) -> Result<Option<String>> {
    let entries = crate::layout::entries_at(outdir)?;
    Ok(crate::layout::recorded_for(&entries, &reference.to_string()).map(|(_, resolved)| resolved.to_string()))
}

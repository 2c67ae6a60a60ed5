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
    let entries = crate::layout::entries_at(&args.outdir)?;
    let local = crate::layout::recorded_for(&entries, &reference.to_string()).map(|(_, resolved)| resolved.to_string());
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
    match args.json {
        true => print_json(
            &serde_json::json!({
                "reference": reference.to_string(),
                "remote": remote.to_string(),
                "local": local,
                "upToDate": current,
            }),
            false,
        ),
        false => {
            let _ = writeln!(std::io::stdout(), "{remote}");
        }
    }
    progress.note(match (&local, current) {
        (_, true) => format!("{reference} is up to date in {}", args.outdir.display()),
        (Some(l), false) => format!("{reference} has an update: {l} in OUTDIR, {remote} in the registry"),
        // Another tool (skopeo, umoci) wrote the layout: the content may be
        // there without the full reference minipull records to compare with.
        (None, false) if entries.iter().any(|e| e.digest == remote.to_string()) => format!(
            "{} holds {remote}, what {reference} is now, but no entry records the reference {reference} (written by another tool?); a pull records it without downloading again",
            args.outdir.display()
        ),
        (None, false) => format!("{reference} is not in {} yet", args.outdir.display()),
    });
    Ok(if current { 0 } else { UPDATE_AVAILABLE })
}

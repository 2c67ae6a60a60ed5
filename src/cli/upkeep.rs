//! `minipull ls`, `rm` and `gc`: what OUTDIR holds, dropping an entry, and
//! removing what nothing needs (see [`crate::layout`]'s upkeep).

use super::*;
use crate::layout::{is_signature, Freed, CONTAINERD_NAME, REF_NAME};
use crate::progress::human;

/// Open an existing layout (these commands never create one).
fn existing(dir: &Path, quiet: bool) -> Result<Layout> {
    existing_dir(dir)?;
    Layout::open_waiting(dir, crate::layout::LOCK_WAIT, Progress::new(quiet))
}

fn existing_dir(dir: &Path) -> Result<()> {
    match dir.join("oci-layout").is_file() {
        true => Ok(()),
        false => Err(Error::not_found(format!("no OCI image layout at {}", dir.display()))),
    }
}

/// `minipull ls OUTDIR`: one line per image: name, full reference, digest, media type,
/// platform(s), bytes on disk.
pub(super) fn ls_command(args: &Args) -> Result<i32> {
    existing_dir(&args.outdir)?;
    // Only read: a layout on read-only media or written by another user will do.
    let layout = Layout::open_reader(&args.outdir, crate::layout::LOCK_WAIT, Progress::new(args.quiet))?;
    let mut rows = Vec::new();
    for e in layout.entries()?.iter().filter(|e| !is_signature(e)) {
        let name = e.annotation(REF_NAME).unwrap_or_default().to_string();
        let reference = e.annotation(CONTAINERD_NAME).unwrap_or_default().to_string();
        let reached = layout.reach(e, false)?;
        let mut platforms: Vec<String> = e.platform.iter().map(|p| p.to_string()).collect();
        if platforms.is_empty() {
            if let Ok(bytes) = layout.read_small_blob(&e.checked_digest()?, crate::manifest::MAX_MANIFEST_BYTES) {
                if let Ok((_, crate::manifest::Manifest::Index(i))) =
                    crate::manifest::parse(&bytes, Some(&e.media_type))
                {
                    platforms = i
                        .manifests
                        .iter()
                        .filter_map(|m| m.platform.as_ref())
                        .map(|p| p.to_string())
                        .collect();
                }
            }
        }
        let state = match (reached.missing.is_empty(), reached.discarded.is_empty()) {
            (false, _) => "incomplete",
            (true, false) => "layers discarded",
            (true, true) => "complete",
        };
        rows.push(serde_json::json!({
            "name": name, "reference": reference, "digest": e.digest, "mediaType": e.media_type,
            "platforms": platforms, "size": reached.size(), "status": state, "state": state,
        }));
    }
    let mut out = std::io::stdout();
    if args.json {
        print_json(&serde_json::Value::Array(rows), false);
        return Ok(0);
    }
    // On a terminal, a header names the columns (a script reads rows only).
    if std::io::IsTerminal::is_terminal(&out) {
        let _ = writeln!(out, "NAME\tREFERENCE\tDIGEST\tMEDIA TYPE\tPLATFORMS\tSIZE\tSTATE");
    }
    // Every field came from index.json or a manifest: shown, never obeyed.
    for r in rows {
        let s = |k: &str| crate::error::Clean(r[k].as_str().unwrap_or_default()).to_string();
        let platforms: Vec<&str> = r["platforms"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_str())
            .collect();
        let _ = writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            s("name"),
            match s("reference") {
                r if r.is_empty() => "-".to_string(),
                r => r,
            },
            s("digest"),
            s("mediaType"),
            if platforms.is_empty() {
                "-".to_string()
            } else {
                crate::error::Clean(&platforms.join(",")).to_string()
            },
            human(r["size"].as_u64().unwrap_or(0)),
            s("state"),
        );
    }
    Ok(0)
}

/// `minipull rm OUTDIR:NAME`: drop the entry (and its signatures); its
/// blobs stay until `gc`. NAME may also be a digest or a full reference
/// (`OUTDIR:sha256:<hex>`, `OUTDIR:ghcr.io/org/app:1.0`): the entries of
/// that name first, else those of that digest, else of that reference.
pub(super) fn rm_command(args: &Args) -> Result<i32> {
    let (dir, name) = split_rm_arg(&args.outdir);
    let name = name.ok_or_else(|| Error::usage("say which image: minipull rm OUTDIR:NAME"))?;
    let layout = existing(&dir, args.quiet)?;
    let entries = layout.entries()?;
    let images = || entries.iter().filter(|e| !is_signature(e));
    let full = Reference::parse(&name).ok().map(|r| r.to_string());
    type Pick<'a> = Box<dyn Fn(&crate::manifest::Descriptor) -> bool + 'a>;
    let picks: [Pick; 3] = [
        Box::new(|e| e.annotation(REF_NAME) == Some(name.as_str())),
        Box::new(|e| e.digest == name),
        Box::new(|e| {
            let r = e.annotation(CONTAINERD_NAME);
            r == Some(name.as_str()) || (full.is_some() && r == full.as_deref())
        }),
    ];
    let Some(pick) = picks.iter().find(|p| images().any(p)) else {
        let held: Vec<String> = images()
            .take(20)
            .map(|e| {
                let n = crate::error::Clean(e.annotation(REF_NAME).unwrap_or("(no name)")).to_string();
                match e.annotation(CONTAINERD_NAME) {
                    Some(r) => format!("{n} ({})", crate::error::Clean(r)),
                    None => n,
                }
            })
            .collect();
        let e = Error::not_found(format!(
            "no image named {} in {}",
            crate::error::Quoted(&name),
            dir.display()
        ));
        return Err(match held.is_empty() {
            true => e.hint(format!("{} holds no image", dir.display())),
            false => e.hint(format!(
                "it holds: {}{}",
                held.join(", "),
                if images().count() > held.len() { ", ..." } else { "" }
            )),
        });
    };
    let gone = layout.retain_entries(|e| !pick(e))?;
    if args.json {
        let removed: Vec<_> = gone
            .iter()
            .map(|e| serde_json::json!({"name": e.annotation(REF_NAME), "digest": e.digest, "mediaType": e.media_type}))
            .collect();
        print_json(&serde_json::json!({"name": name, "removed": removed}), false);
    }
    Progress::new(args.quiet).note(format!(
        "removed {} from {} ({}); its blobs stay until `minipull gc`",
        crate::error::Clean(&name),
        dir.display(),
        crate::progress::count(gone.len() as u64, "entry", "entries")
    ));
    Ok(0)
}

/// `OUTDIR:NAME` for rm, NAME possibly holding `:` and `/` (a digest, a full
/// reference): OUTDIR is the shortest prefix before a `:` that is an OCI
/// layout; else as [`split_layout_arg`] splits it.
fn split_rm_arg(p: &Path) -> (PathBuf, Option<String>) {
    if let Some(s) = p.to_str().filter(|_| !p.join("oci-layout").is_file()) {
        for (at, _) in s.match_indices(':') {
            let (dir, name) = (&s[..at], &s[at + 1..]);
            if !dir.is_empty() && !name.is_empty() && Path::new(dir).join("oci-layout").is_file() {
                return (PathBuf::from(dir), Some(name.to_string()));
            }
        }
    }
    split_layout_arg(p)
}

/// `minipull gc OUTDIR`: remove the blobs `index.json` does not reach and
/// stale partial downloads; print what was freed.
pub(super) fn gc_command(args: &Args) -> Result<i32> {
    let layout = existing(&args.outdir, args.quiet)?;
    let freed = layout.collect_garbage(args.keep_partials)?;
    layout.tidy();
    report(&freed, args.json);
    Ok(0)
}

/// Say what a removal freed: on stdout (a line, or JSON).
pub(super) fn report(f: &Freed, json: bool) {
    if json {
        let blobs: Vec<_> = f
            .removed
            .iter()
            .map(|(d, size)| serde_json::json!({"digest": d, "size": size}))
            .collect();
        let v = serde_json::json!({"blobs": blobs, "blobsRemoved": f.blobs, "partials": f.partials, "bytes": f.bytes});
        return print_json(&v, false);
    }
    let out = {
        format!(
            "freed {} ({}, {})",
            human(f.bytes),
            crate::progress::count(f.blobs as u64, "blob", "blobs"),
            crate::progress::count(f.partials as u64, "partial download", "partial downloads")
        )
    };
    let _ = writeln!(std::io::stdout(), "{out}");
}

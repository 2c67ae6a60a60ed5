//! `minipull unpack` and `minipull config`: work on a layout already on disk.

use super::*;
/// `minipull unpack` and `minipull config`: work on a layout already on disk.
#[cfg(feature = "unpack")]
pub(super) fn local_command(args: &Args, platform: &Platform, policy: Option<&crate::verify::Policy>) -> Result<i32> {
    use crate::unpack::{self, Select};
    let (dir, name) = split_layout_arg(&args.outdir);
    if !dir.join("oci-layout").is_file() {
        return Err(Error::not_found(format!("no OCI image layout at {}", dir.display()))
            .hint("pull into it first: minipull REF OUTDIR"));
    }
    let layout = Layout::open_reader(&dir, args.lock_wait, Progress::new(args.quiet))?;
    let select = match &name {
        Some(n) => Select::Name(n),
        None => Select::Only,
    };
    let image = unpack::find_image(&layout, select, platform)?;
    if args.command == Command::Unpack && image.layers_discarded {
        return Err(Error::not_found(format!(
            "the layers of {} were discarded after unpacking (--discard-layers); only its manifests and config are in {}",
            image.name,
            dir.display()
        ))
        .hint("pull it again with --unpack ROOTFS, which fetches the layers as it applies them"));
    }
    #[cfg(feature = "delta")]
    if let (Command::Unpack, Some(d)) = (
        args.command,
        image.layers_partial.iter().find(|d| layout.blob_size(d).is_none()),
    ) {
        return Err(Error::not_found(format!(
            "layer {d} of {} was obtained partially (zstd:chunked: only the changed chunks were fetched into a root); its compressed blob is not in {}",
            image.name,
            dir.display()
        ))
        .hint("pull it again with --unpack ROOTFS (partially again, from that root), or with --no-delta to keep every layer whole"));
    }
    if let Some(policy) = policy {
        // Before anything is extracted: the signature stored with the image.
        let v = verify_stored(&layout, policy, &image)?;
        Progress::new(args.quiet).note(format!(
            "signature verified offline: {} signature of {} by {}",
            v.format,
            v.digest,
            v.by()
        ));
    }
    if args.command == Command::Config {
        let mut out = std::io::stdout();
        if std::io::IsTerminal::is_terminal(&out) {
            // The config is the image's text: its escape sequences are
            // shown, not obeyed (a pipe gets the bytes as they are).
            let text = String::from_utf8_lossy(&image.config);
            for line in text.trim_end_matches('\n').split('\n') {
                let _ = writeln!(out, "{}", crate::error::Clean(line));
            }
        } else {
            let _ = out.write_all(&image.config);
            let _ = writeln!(out);
        }
        return Ok(0);
    }
    let rootfs = args
        .unpack
        .as_deref()
        .ok_or_else(|| Error::usage("ROOTFS is missing"))?;
    let progress = Progress::new(args.quiet);
    let plan = crate::rootfs::Plan::new(rootfs, args.force, args.keep_old, args.lock_wait, progress)?;
    crate::progress::exit_on_interrupt(match plan.in_place() {
        true => "ROOTFS, unpacked in place, is incomplete: empty it, then run the same command again",
        false => "ROOTFS is as it was; run the same command again",
    });
    let done = crate::install::install(
        &layout,
        &image,
        &plan,
        progress,
        &args.keep(),
        None,
        false,
        #[cfg(feature = "delta")]
        None,
    )?;
    if args.json {
        let v = serde_json::json!({
            "name": image.name, "digest": image.digest, "unpack": done.summary, "warnings": done.warnings,
        });
        print_json(&v, true);
    }
    Ok(match done.warnings.is_empty() {
        true => 0,
        false => crate::error::Kind::Upkeep.exit_code(),
    })
}

/// Verify `image` with the signatures stored in the layout: one of its own
/// manifest digest, or of the index its tag resolved to when that index is
/// stored and lists the manifest.
#[cfg(feature = "unpack")]
fn verify_stored(
    layout: &Layout,
    policy: &crate::verify::Policy,
    image: &crate::unpack::Image,
) -> Result<crate::verify::Verified> {
    use crate::digest::Digest;
    let own = Digest::parse(&image.digest)?;
    let mut reasons = Vec::new();
    if let Some(p) = crate::verify::check_stored(layout, policy, &own, &mut reasons)? {
        return Ok(p.verified);
    }
    if let Some(index) = &image.resolved {
        let d = Digest::parse(index)?;
        let bytes = layout.read_small_blob(&d, crate::manifest::MAX_MANIFEST_BYTES)?;
        let lists = matches!(crate::manifest::parse(&bytes, None), Ok((_, crate::manifest::Manifest::Index(i)))
            if i.manifests.iter().any(|m| m.digest == image.digest));
        if lists {
            if let Some(p) = crate::verify::check_stored(layout, policy, &d, &mut reasons)? {
                return Ok(p.verified);
            }
        } else {
            reasons.push(format!("the stored index {} does not list the image", d.short()));
        }
    }
    Err(crate::verify::untrusted(
        &format!("{} in {}", image.name, layout.root().display()),
        policy,
        &reasons,
    ))
}

#[cfg(not(feature = "unpack"))]
pub(super) fn local_command(_: &Args, _: &Platform, _: Option<&crate::verify::Policy>) -> Result<i32> {
    Err(Error::usage(
        "this minipull was built without unpack support (cargo feature \"unpack\")",
    ))
}

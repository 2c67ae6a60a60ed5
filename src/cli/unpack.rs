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
    let layout = Layout::open_waiting(&dir, crate::layout::LOCK_WAIT, Progress::new(args.quiet))?;
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
    if let Some(policy) = policy {
        // Before anything is extracted: the signature stored with the image.
        let v = verify_stored(&layout, policy, &image)?;
        Progress::new(args.quiet).note(format!(
            "signature verified offline: {} signature of {} by key {}",
            v.format, v.digest, v.key
        ));
    }
    if args.command == Command::Config {
        let _ = std::io::stdout().write_all(&image.config);
        let _ = writeln!(std::io::stdout());
        return Ok(0);
    }
    let rootfs = args
        .unpack
        .as_deref()
        .ok_or_else(|| Error::usage("ROOTFS is missing"))?;
    let plan = crate::rootfs::Plan::new(rootfs, args.force, args.keep_old)?;
    crate::progress::exit_on_interrupt(match plan.in_place() {
        true => "ROOTFS, unpacked in place, is incomplete: empty it, then run the same command again",
        false => "ROOTFS is as it was; run the same command again",
    });
    unpack_image(
        &layout,
        &image,
        &plan,
        Progress::new(args.quiet),
        args.keep_setuid,
        None,
    )
    .map(|()| 0)
}

/// Unpack as the plan says (staged and swapped, or in place), and say how
/// and where the config is.
#[cfg(feature = "unpack")]
pub(super) fn unpack_image(
    layout: &Layout,
    image: &crate::unpack::Image,
    plan: &crate::rootfs::Plan,
    progress: Progress,
    keep_setuid: bool,
    hook: Option<&mut crate::unpack::LayerHook>,
) -> Result<()> {
    not_an_artifact(image)?;
    // Nothing to throw away in place: no unverified byte goes in. (Layers
    // a hook fetches one at a time are verified as they arrive.)
    if plan.in_place() && hook.is_none() {
        crate::unpack::verify_layers(layout, image)?;
    }
    let into = plan.begin()?;
    let mut none = |_: crate::unpack::Stage, _: &crate::manifest::Descriptor| Ok(());
    let hook = match hook {
        Some(h) => h,
        None => &mut none,
    };
    let s = match crate::unpack::unpack_with(layout, image, &into, progress, keep_setuid, hook) {
        Ok(s) => s,
        Err(e) => {
            plan.abort();
            return Err(e);
        }
    };
    // The new root goes in now: an interrupt no longer abandons the run, whose
    // outcome (and exit code) is the install's.
    crate::progress::defer_interrupts();
    let installed = match plan.commit(&image.digest, image.resolved.as_deref(), &image.name) {
        Ok(i) => i,
        Err(e) => {
            plan.abort();
            return Err(e);
        }
    };
    progress.note(format!(
        "unpacked {} ({}, {}) into {}: {}; the image config is blob {}; recorded in {}",
        crate::progress::count(s.layers as u64, "layer", "layers"),
        crate::progress::count(s.entries, "entry", "entries"),
        crate::progress::human(s.bytes),
        plan.rootfs().display(),
        installed.how,
        image.config_digest,
        plan.record_path().display()
    ));
    Ok(())
}

/// Refuse, as what it is, an OCI artifact (a config of another type that
/// is not an image config either: a Helm chart, an ORAS file set, a WASM
/// module): it has no root filesystem to unpack.
#[cfg(feature = "unpack")]
fn not_an_artifact(image: &crate::unpack::Image) -> Result<()> {
    let config_type = image.manifest.config.media_type.as_str();
    const IMAGE_CONFIGS: [&str; 2] = [
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.docker.container.image.v1+json",
    ];
    if IMAGE_CONFIGS.contains(&config_type) {
        return Ok(());
    }
    let has_rootfs = serde_json::from_slice::<serde_json::Value>(&image.config).is_ok_and(|c| c["rootfs"].is_object());
    if has_rootfs {
        return Ok(());
    }
    Err(Error::usage(format!(
        "{} is not a container image: its config is of type {}, and it has no root filesystem to unpack",
        image.name,
        crate::error::Quoted(config_type)
    ))
    .hint("it is an artifact for another tool (oras pull, helm, ...); pulling it into OUTDIR works, unpacking it does not"))
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

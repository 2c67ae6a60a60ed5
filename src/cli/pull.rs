//! `minipull REF OUTDIR`: pull, and with `--unpack`, unpack.

use super::connect::{sources, tls_settings};
use super::*;
pub(super) fn pull_command(args: &Args, platform: Platform, policy: Option<crate::verify::Policy>) -> Result<i32> {
    let reference = Reference::parse(&args.reference)?;
    let progress = Progress::new(args.quiet);
    let tls = tls_settings(args, progress)?;
    // Before the download: a ROOTFS we may not use should not cost one.
    let plan = args.unpack.as_deref().map(|r| unpack_ready(r, args)).transpose()?;
    crate::progress::exit_on_interrupt(&format!(
        "what was downloaded stays in {}{}; the same command resumes where this one stopped",
        args.outdir.display(),
        plan.as_ref().map(rootfs_kept).unwrap_or_default()
    ));
    // Credentials and mirrors are checked before OUTDIR is created.
    let mut sources = sources(args, &reference, tls, progress)?;
    let layout = Layout::open_waiting(&args.outdir, crate::layout::LOCK_WAIT, progress)?;
    progress.note(format!("pulling {reference} from {}", sources.registry_host()));
    let pull_opts = PullOptions {
        platform,
        all_platforms: args.all_platforms,
        verify: args.verify,
        policy,
        no_downgrade: args.no_downgrade,
        need_layers: args.unpack.is_some(),
        discard_layers: args.discard_layers,
    };
    // --prune: what the version this pull replaces reaches, to remove
    // afterwards what nothing else needs.
    let name = crate::pull::ref_name(&reference);
    let replaced = match args.prune {
        true => layout.entry_named(&name)?,
        false => None,
    };
    let mut summary = crate::pull::pull(&reference, &mut sources, &layout, progress, &pull_opts)?;
    if let Some(plan) = &plan {
        unpack_pulled(
            &layout,
            &mut sources,
            &summary.digest,
            &pull_opts,
            plan,
            progress,
            args.keep_setuid,
        )?;
    }
    if let Some(old) = replaced.filter(|o| o.digest != summary.digest) {
        // Only now: the new image is complete, index.json names it, and
        // with --unpack the new root filesystem is in place.
        let mut candidates: Vec<_> = layout.reach(&old, false)?.digests().collect();
        for sig in layout.retain_entries(|_| true)? {
            candidates.extend(layout.reach(&sig, false)?.digests());
        }
        let freed = layout.remove_unreachable(&candidates)?;
        progress.note(format!(
            "pruned {} ({}) that only the replaced {} used",
            crate::progress::human(freed.bytes),
            crate::progress::count(freed.blobs as u64, "blob", "blobs"),
            old.digest
        ));
        summary.pruned_bytes = Some(freed.bytes);
    }
    // Last (with --discard-layers the unpack still used the work directory).
    layout.tidy();
    let out = if args.json {
        serde_json::to_string_pretty(&summary).map_err(|e| Error::other(format!("cannot encode the summary: {e}")))?
    } else {
        summary.digest.clone()
    };
    // A closed stdout (e.g. `| head`) is not worth failing a finished pull for.
    let _ = writeln!(std::io::stdout(), "{out}");
    Ok(0)
}

#[cfg(feature = "unpack")]
type UnpackPlan = crate::rootfs::Plan;
#[cfg(not(feature = "unpack"))]
type UnpackPlan = ();

/// What an interrupt leaves of ROOTFS.
#[cfg(feature = "unpack")]
fn rootfs_kept(plan: &UnpackPlan) -> &'static str {
    match plan.in_place() {
        true => " (ROOTFS, unpacked in place, is incomplete: empty it first)",
        false => " and ROOTFS is as it was",
    }
}

#[cfg(feature = "unpack")]
fn unpack_ready(rootfs: &Path, args: &Args) -> Result<UnpackPlan> {
    crate::rootfs::Plan::new(rootfs, args.force, args.keep_old)
}

#[cfg(feature = "unpack")]
fn unpack_pulled(
    layout: &Layout,
    sources: &mut Sources,
    digest: &str,
    opts: &PullOptions,
    plan: &UnpackPlan,
    progress: Progress,
    keep_setuid: bool,
) -> Result<()> {
    use crate::unpack::{self, Select, Stage};
    let image = unpack::find_image(layout, Select::Digest(digest), &opts.platform)?;
    if !opts.discard_layers {
        return super::unpack::unpack_image(layout, &image, plan, progress, keep_setuid, None);
    }
    // Each layer is fetched just before it is applied and removed just
    // after (unless another image in OUTDIR uses it): at most one
    // compressed layer is on disk at a time.
    let mut hook = |stage: Stage, layer: &crate::manifest::Descriptor| -> Result<()> {
        match stage {
            Stage::Before => crate::pull::fetch_one(sources, layout, progress, layer).map(|_| ()),
            Stage::After => {
                let d = layer.checked_digest()?;
                layout.remove_unreachable(&[d]).map(|_| ())
            }
        }
    };
    super::unpack::unpack_image(layout, &image, plan, progress, keep_setuid, Some(&mut hook))
}

#[cfg(not(feature = "unpack"))]
fn rootfs_kept(_: &UnpackPlan) -> &'static str {
    ""
}

#[cfg(not(feature = "unpack"))]
fn unpack_ready(_: &Path, _: &Args) -> Result<UnpackPlan> {
    Err(Error::usage(
        "this minipull was built without unpack support (cargo feature \"unpack\")",
    ))
}

#[cfg(not(feature = "unpack"))]
fn unpack_pulled(
    _: &Layout,
    _: &mut Sources,
    _: &str,
    _: &PullOptions,
    _: &UnpackPlan,
    _: Progress,
    _: bool,
) -> Result<()> {
    Ok(())
}

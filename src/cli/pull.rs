//! `minipull REF OUTDIR`: pull, and with `--unpack`, unpack.

use super::connect::{sources, tls_settings};
use super::*;
pub(super) fn pull_command(args: &Args, platform: Platform, policy: Option<crate::verify::Policy>) -> Result<i32> {
    let reference = Reference::parse(&args.reference)?;
    let progress = Progress::new(args.quiet);
    let tls = tls_settings(args, progress)?;
    // Credentials and mirrors are checked before OUTDIR is created.
    let mut sources = sources(args, &reference, tls, progress)?;
    let layout = Layout::open_waiting(&args.outdir, args.lock_wait, progress)?;
    // Before the download: a ROOTFS we may not use should not cost one.
    // (Its lock after OUTDIR's, in the same order as `minipull unpack`.)
    let plan = args.unpack.as_deref().map(|r| unpack_ready(r, args)).transpose()?;
    crate::progress::exit_on_interrupt(&format!(
        "what was downloaded stays in {}{}; the same command resumes where this one stopped",
        args.outdir.display(),
        plan.as_ref().map(rootfs_kept).unwrap_or_default()
    ));
    progress.note(format!("pulling {reference} from {}", sources.registry_host()));
    #[cfg(feature = "delta")]
    let delta = plan
        .as_ref()
        .and_then(|p| delta_for(args, p, &layout, &reference, &platform));
    let pull_opts = PullOptions {
        platform,
        all_platforms: args.all_platforms,
        verify: args.verify,
        policy,
        no_downgrade: args.no_downgrade,
        need_layers: args.unpack.is_some(),
        discard_layers: args.discard_layers,
        #[cfg(feature = "delta")]
        partial_layers: delta.is_some(),
        name: args.name.clone(),
    };
    let steps = crate::install::Steps {
        plan: plan.as_ref(),
        prune: args.prune,
        #[cfg(feature = "unpack")]
        keep: &args.keep(),
        #[cfg(feature = "delta")]
        delta,
    };
    let (summary, outcome) = crate::install::update(&reference, &mut sources, &layout, &pull_opts, &steps, progress)?;
    // Last (with --discard-layers the unpack still used the work directory).
    layout.tidy();
    if args.json {
        let mut v =
            serde_json::to_value(&summary).map_err(|e| Error::other(format!("cannot encode the summary: {e}")))?;
        v["warnings"] = outcome.warnings.clone().into();
        if plan.is_some() {
            v["installed"] = (outcome.installed || outcome.already_installed).into();
        }
        print_json(&v, true);
    } else {
        // A closed stdout (e.g. `| head`) is not worth failing a finished pull for.
        let _ = writeln!(std::io::stdout(), "{}", summary.digest);
    }
    Ok(outcome.exit_code())
}

/// Partial pulls for this update, unless `--no-delta`: the root to reuse
/// files from (`--reuse-from`, or ROOTFS when its record names an installed
/// image) and the image it holds (the record's, or OUTDIR's entry of the
/// same name, whose zstd:chunked TOCs say which chunks that root has).
#[cfg(feature = "delta")]
fn delta_for(
    args: &Args,
    plan: &crate::install::Plan,
    layout: &Layout,
    reference: &Reference,
    platform: &Platform,
) -> Option<crate::delta::update::Delta> {
    if args.no_delta {
        return None;
    }
    let recorded = plan.recorded().filter(|r| r.current);
    let reuse = match (&args.reuse_from, &recorded) {
        (Some(dir), _) => dir.clone(),
        (None, Some(_)) => plan.rootfs().to_path_buf(),
        (None, None) => return None,
    };
    let previous = recorded.map(|r| r.digest).or_else(|| {
        let name = args.name.clone().unwrap_or_else(|| crate::pull::ref_name(reference));
        layout.entry_named(&name).ok().flatten().map(|e| e.digest)
    });
    Some(crate::delta::update::Delta {
        reuse,
        previous,
        platform: platform.clone(),
        gap: crate::delta::plan::DEFAULT_GAP,
    })
}

/// What an interrupt leaves of ROOTFS.
#[cfg(feature = "unpack")]
fn rootfs_kept(plan: &crate::install::Plan) -> &'static str {
    match plan.in_place() {
        true => " (ROOTFS, unpacked in place, is incomplete: empty it first)",
        false => " and ROOTFS is as it was",
    }
}

#[cfg(not(feature = "unpack"))]
fn rootfs_kept(_: &crate::install::Plan) -> &'static str {
    ""
}

#[cfg(feature = "unpack")]
fn unpack_ready(rootfs: &Path, args: &Args) -> Result<crate::install::Plan> {
    crate::rootfs::Plan::new(
        rootfs,
        args.force,
        args.keep_old,
        args.lock_wait,
        Progress::new(args.quiet),
    )
}

#[cfg(not(feature = "unpack"))]
fn unpack_ready(_: &Path, _: &Args) -> Result<crate::install::Plan> {
    Err(Error::usage(
        "this minipull was built without unpack support (cargo feature \"unpack\")",
    ))
}

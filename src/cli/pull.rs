//! `minipull REF OUTDIR`: pull, and with `--unpack`, unpack.

use super::connect::{sources, tls_settings};
use super::*;
pub(super) fn pull_command(args: &Args, platform: Platform, policy: Option<crate::verify::Policy>) -> Result<i32> {
    let reference = Reference::parse(&args.reference)?;
    let progress = Progress::new(args.quiet);
    let tls = tls_settings(args, progress)?;
    // Before the download: a ROOTFS we may not use should not cost one.
    let plan = args.unpack.as_deref().map(|r| unpack_ready(r, args)).transpose()?;
    let layout = Layout::open_waiting(&args.outdir, crate::layout::LOCK_WAIT, progress)?;
    let mut sources = sources(args, &reference, tls, progress)?;
    progress.note(format!("pulling {reference} from {}", sources.registry_host()));
    let pull_opts = PullOptions {
        platform,
        all_platforms: args.all_platforms,
        verify: args.verify,
        policy,
        no_downgrade: args.no_downgrade,
        need_layers: args.unpack.is_some(),
    };
    let summary = crate::pull::pull(&reference, &mut sources, &layout, progress, &pull_opts)?;
    if let Some(plan) = &plan {
        unpack_pulled(
            &layout,
            &summary.digest,
            &pull_opts.platform,
            plan,
            progress,
            args.keep_setuid,
        )?;
    }
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

#[cfg(feature = "unpack")]
fn unpack_ready(rootfs: &Path, args: &Args) -> Result<UnpackPlan> {
    crate::rootfs::Plan::new(rootfs, args.force, args.keep_old)
}

#[cfg(feature = "unpack")]
fn unpack_pulled(
    layout: &Layout,
    digest: &str,
    platform: &Platform,
    plan: &UnpackPlan,
    progress: Progress,
    keep_setuid: bool,
) -> Result<()> {
    use crate::unpack::{self, Select};
    let image = unpack::find_image(layout, Select::Digest(digest), platform)?;
    super::unpack::unpack_image(layout, &image, plan, progress, keep_setuid)
}

#[cfg(not(feature = "unpack"))]
fn unpack_ready(_: &Path, _: &Args) -> Result<UnpackPlan> {
    Err(Error::usage(
        "this minipull was built without unpack support (cargo feature \"unpack\")",
    ))
}

#[cfg(not(feature = "unpack"))]
fn unpack_pulled(_: &Layout, _: &str, _: &Platform, _: &UnpackPlan, _: Progress, _: bool) -> Result<()> {
    Ok(())
}

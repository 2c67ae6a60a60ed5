//! The update transaction, in one place: pull → stage → verify → swap with
//! the record → upkeep. The swap (see [`crate::rootfs`]) is the commit
//! point: what fails before it leaves ROOTFS and its record as they were
//! (an error, exit 1-8); what fails after it (`--prune`, removing the old
//! tree, moving the record in) is a warning, and the command exits 9
//! ("installed; upkeep failed"), never "not installed".
//!
//! `--prune` removes what the versions this image replaced reached, and
//! nothing that index.json or the installed root still names. Which
//! versions those are is written down (`.minipull/prune.json` in OUTDIR)
//! before the pull changes index.json, and dropped once the prune is done;
//! the image the record says is installed counts among them. The list
//! names the ROOTFS it was written for: only a run for that ROOTFS (or, for
//! a list without one, a plain pull) applies it, any other drops it, and
//! what ROOTFS's record names is never pruned. So a run cut
//! anywhere (pull, unpack, swap, prune) leaves the next run the same list,
//! and an interrupted update ends on the same disk as an uninterrupted
//! one. Blobs go leaves first and manifests last, so a cut prune can still
//! find what is left of it.

use crate::digest::Digest;
use crate::error::{Error, Kind, Result};
use crate::layout::{Layout, CONTAINERD_NAME};
use crate::mirror::Sources;
use crate::progress::Progress;
use crate::pull::{PullOptions, Summary};
use crate::reference::Reference;
use std::path::PathBuf;

#[cfg(feature = "unpack")]
pub use crate::rootfs::Plan;
/// Without unpack support there is no ROOTFS to plan for.
#[cfg(not(feature = "unpack"))]
pub type Plan = ();

/// Which steps of the transaction happened, and what failed after the
/// commit point.
#[derive(Default)]
pub struct Outcome {
    /// The image is in OUTDIR and index.json names it.
    pub pulled: bool,
    /// A new tree was put in ROOTFS, with its record.
    pub installed: bool,
    /// ROOTFS already held the image (its record said so): nothing unpacked.
    pub already_installed: bool,
    /// Bytes `--prune` freed.
    pub pruned: Option<u64>,
    /// Upkeep failures after the commit point.
    pub warnings: Vec<String>,
}

impl Outcome {
    /// 0, or 9 when upkeep failed after the image was pulled (and installed).
    pub fn exit_code(&self) -> i32 {
        if self.warnings.is_empty() {
            0
        } else {
            Kind::Upkeep.exit_code()
        }
    }

    fn warn(&mut self, progress: Progress, e: impl std::fmt::Display) {
        progress.warn(format!("{e}"));
        self.warnings.push(e.to_string());
    }
}

/// What the update is asked to do besides the pull.
pub struct Steps<'a> {
    pub plan: Option<&'a Plan>,
    pub prune: bool,
    #[cfg(feature = "unpack")]
    pub keep: &'a crate::unpack::Keep,
    /// Partial pulls of zstd:chunked layers (`None`: `--no-delta`, or no root to reuse).
    #[cfg(feature = "delta")]
    pub delta: Option<crate::delta::update::Delta>,
}

/// Pull `reference` into `layout`, install it into the plan's ROOTFS, and
/// prune. Returns the pull's summary and what happened.
pub fn update(
    reference: &Reference,
    sources: &mut Sources,
    layout: &Layout,
    opts: &PullOptions,
    steps: &Steps,
    progress: Progress,
) -> Result<(Summary, Outcome)> {
    let mut out = Outcome::default();
    // Written down before index.json changes (see the module doc).
    let replaced = match steps.prune {
        true => remember_replaced(layout, reference, &opts.name_for(reference), steps)?,
        false => Vec::new(),
    };
    let mut summary = crate::pull::pull(reference, sources, layout, progress, opts)?;
    out.pulled = true;
    #[cfg(feature = "unpack")]
    if let Some(plan) = steps.plan {
        // A second install that waited for the lock finds the image there.
        if plan.recorded().is_some_and(|r| r.current && r.digest == summary.digest) {
            out.already_installed = true;
            summary.unpack = Some(crate::pull::UnpackSummary {
                rootfs: plan.rootfs().display().to_string(),
                already_installed: true,
                record: plan.record_path().display().to_string(),
                ..Default::default()
            });
            progress.note(format!(
                "{} already holds {} (its record says so): nothing to unpack",
                plan.rootfs().display(),
                summary.digest
            ));
        } else {
            let image =
                crate::unpack::find_image(layout, crate::unpack::Select::Digest(&summary.digest), &opts.platform)?;
            #[cfg(feature = "delta")]
            let delta = steps.delta.as_ref();
            #[cfg(not(feature = "delta"))]
            let delta: Option<()> = None;
            let fetch = match opts.discard_layers || delta.is_some() {
                true => Some(&mut *sources),
                false => None,
            };
            let done = install(
                layout,
                &image,
                plan,
                progress,
                steps.keep,
                fetch,
                opts.discard_layers,
                #[cfg(feature = "delta")]
                delta,
            )?;
            for (digest, n, source) in done.fetched {
                summary.count_bytes(n, 0);
                if let Some(b) = summary.blobs.iter_mut().find(|b| b.digest == digest) {
                    b.downloaded += n;
                    b.source = b.source.take().or(source);
                }
            }
            #[cfg(feature = "delta")]
            add_layer_reports(&mut summary, layout, &image.digest, done.reports, progress);
            // What --discard-layers removed again is not in OUTDIR.
            let kept = |b: &&mut crate::pull::ContentSummary| {
                opts.discard_layers && b.status != "skipped" && b.status != "partial"
            };
            for b in summary.blobs.iter_mut().filter(kept) {
                if Digest::parse(&b.digest).is_ok_and(|d| layout.blob_size(&d).is_none()) {
                    b.status = "discarded";
                }
            }
            summary.unpack = Some(done.summary);
            out.warnings = done.warnings;
            out.installed = true;
        }
    }
    if steps.prune {
        // What ROOTFS's record names stays, in index.json or not.
        #[cfg(feature = "unpack")]
        let installed = steps.plan.and_then(|p| p.recorded()).map(|r| r.digest);
        #[cfg(not(feature = "unpack"))]
        let installed: Option<String> = None;
        match prune(layout, &replaced, installed.as_deref(), &summary, progress) {
            Ok(freed) => {
                summary.pruned_bytes = Some(freed);
                out.pruned = Some(freed);
            }
            Err(e) => out.warn(
                progress,
                e.context("the image is pulled (and installed), but --prune failed"),
            ),
        }
    }
    Ok((summary, out))
}

/// What [`install`] did.
#[cfg(feature = "unpack")]
pub struct Unpacked {
    pub summary: crate::pull::UnpackSummary,
    /// The layers fetched for the unpack: digest, bytes, the host they came from.
    pub fetched: Vec<(String, u64, Option<String>)>,
    /// What failed after the commit point (each also printed).
    pub warnings: Vec<String>,
    /// What each layer fetched here cost (partial pulls).
    #[cfg(feature = "delta")]
    pub reports: Vec<crate::delta::update::Report>,
}

/// Stage, verify and swap `image` into the plan's ROOTFS with its record.
/// With `fetch`, a layer not in OUTDIR is downloaded just before it is
/// applied (and with `discard`, removed just after); with `delta`, a
/// zstd:chunked layer not in OUTDIR is fetched partially when it can be.
#[cfg(feature = "unpack")]
#[allow(clippy::too_many_arguments)]
pub fn install(
    layout: &Layout,
    image: &crate::unpack::Image,
    plan: &Plan,
    progress: Progress,
    keep: &crate::unpack::Keep,
    fetch: Option<&mut Sources>,
    discard: bool,
    #[cfg(feature = "delta")] delta: Option<&crate::delta::update::Delta>,
) -> Result<Unpacked> {
    not_an_artifact(image)?;
    // Nothing to throw away in place: no unverified byte goes in. (Layers
    // fetched one at a time are verified as they arrive; a layer left to
    // the partial path is checked as it is rebuilt.)
    if plan.in_place() && !discard {
        crate::unpack::verify_layers(
            layout,
            image,
            #[cfg(feature = "delta")]
            delta.is_some(),
        )?;
    }
    let mut record = crate::rootfs::ImageRef {
        digest: &image.digest,
        resolved: image.resolved.as_deref(),
        reference: &image.name,
        root_entry: None,
    };
    fault("begin")?;
    // At most one compressed layer on disk at a time with --discard-layers.
    #[cfg(feature = "delta")]
    let mut feed = crate::delta::update::Feed::new(layout, progress, fetch, discard, delta);
    #[cfg(not(feature = "delta"))]
    let mut feed = Whole {
        layout,
        progress,
        sources: fetch.filter(|_| discard),
        fetched: Vec::new(),
    };
    // One attempt: a staging tree, the layers, the swap.
    let mut attempt = |feed: &mut dyn crate::unpack::Layers| {
        let into = plan.begin(&record)?;
        crate::unpack::unpack_with(layout, image, &into, progress, keep, feed)
            .and_then(|s| {
                record.root_entry = s.root_entry;
                // The new root goes in now: an interrupt no longer abandons the
                // run, whose outcome (and exit code) is the install's.
                crate::progress::defer_interrupts();
                plan.commit(&record).map(|i| (s, i))
            })
            .inspect_err(|_| plan.abort())
    };
    #[cfg(not(feature = "delta"))]
    let (s, installed) = attempt(&mut feed)?;
    // A partial layer that fails after it began is redone whole, in a new
    // staging tree (the failed one is thrown away: never half old, half new).
    #[cfg(feature = "delta")]
    let (s, installed) = {
        let mut tries = 0;
        loop {
            match attempt(&mut feed) {
                Ok(x) => break x,
                Err(e) => {
                    tries += 1;
                    if !feed.retry || tries > image.manifest.layers.len() {
                        return Err(e);
                    }
                    feed.restart();
                }
            }
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
    for w in &installed.warnings {
        progress.warn(format!("{} is installed, but: {w}", image.digest));
    }
    // What the next update may reuse without reading the root.
    #[cfg(feature = "delta")]
    if let Err(e) = crate::delta::update::write_index(layout, &image.manifest.layers, plan.rootfs()) {
        progress.warn(format!(
            "cannot record the file index beside {} ({e}): the next partial update hashes the root's files instead",
            plan.rootfs().display()
        ));
    }
    // (With partial pulls, what the layers cost is in the reports.)
    #[cfg(feature = "delta")]
    let (fetched, downloaded) = {
        // The chunks a cut run kept have served.
        if delta.is_some() {
            layout.clear_chunk_spool();
        }
        (Vec::new(), feed.reports.iter().map(|r| r.downloaded).sum())
    };
    #[cfg(not(feature = "delta"))]
    let (fetched, downloaded) = {
        let n = feed.fetched.iter().map(|f| f.1).sum();
        (feed.fetched, n)
    };
    let summary = crate::pull::UnpackSummary {
        rootfs: plan.rootfs().display().to_string(),
        installed: true,
        already_installed: false,
        layers: s.layers as u64,
        entries: s.entries,
        bytes: s.bytes,
        bytes_downloaded: downloaded,
        record: plan.record_path().display().to_string(),
    };
    Ok(Unpacked {
        summary,
        fetched,
        warnings: installed.warnings,
        #[cfg(feature = "delta")]
        reports: feed.reports,
    })
}

/// The layers from OUTDIR; with `sources` (`--discard-layers`), each one
/// downloaded just before it is applied and removed just after.
#[cfg(all(feature = "unpack", not(feature = "delta")))]
struct Whole<'a> {
    layout: &'a Layout,
    progress: Progress,
    sources: Option<&'a mut Sources>,
    /// What was downloaded: digest, bytes, the host it came from.
    fetched: Vec<(String, u64, Option<String>)>,
}

#[cfg(all(feature = "unpack", not(feature = "delta")))]
impl crate::unpack::Layers for Whole<'_> {
    fn before(&mut self, _: usize, layer: &crate::manifest::Descriptor) -> Result<Option<Box<dyn std::io::Read + '_>>> {
        if let Some(sources) = self.sources.as_deref_mut() {
            let (n, source) = crate::pull::fetch_one(sources, self.layout, self.progress, layer)?;
            self.fetched.push((layer.digest.clone(), n, source));
        }
        Ok(None)
    }
    fn after(&mut self, _: usize, layer: &crate::manifest::Descriptor, _: bool) -> Result<()> {
        fault("layer")?;
        if self.sources.is_some() {
            self.layout.remove_unreachable(&[layer.checked_digest()?])?;
        }
        Ok(())
    }
}

/// Put what the install fetched of each layer into the pull's summary, and
/// mark in index.json the layers obtained partially (no blob in `blobs/`).
#[cfg(feature = "delta")]
fn add_layer_reports(
    summary: &mut Summary,
    layout: &Layout,
    image: &str,
    reports: Vec<crate::delta::update::Report>,
    progress: Progress,
) {
    let mut partial = Vec::new();
    for r in reports {
        summary.count_bytes(r.downloaded, 0);
        if r.partial {
            partial.push(r.desc.digest.clone());
        }
        let status = match r.partial {
            true => "partial",
            false => "downloaded",
        };
        summary.blobs.retain(|b| b.digest != r.desc.digest);
        summary.blobs.push(crate::pull::ContentSummary {
            digest: r.desc.digest,
            media_type: r.desc.media_type,
            size: r.desc.size.max(0) as u64,
            downloaded: r.downloaded,
            status,
            source: r.source,
            delta: r.delta.and_then(|d| serde_json::to_value(d).ok()),
        });
    }
    if !partial.is_empty() {
        if let Err(e) = layout.mark_layers_partial(image, &partial) {
            progress.warn(e.context("cannot mark the layers obtained partially in index.json"));
        }
    }
}

/// The file that lists the versions a `--prune` is to remove.
fn intent_path(layout: &Layout) -> PathBuf {
    layout.root().join(".minipull").join("prune.json")
}

/// The prune list: the versions to remove, and the ROOTFS of the install
/// that wrote it (none for a plain pull). Only a run for that same ROOTFS
/// (or, without one, a plain pull) applies it; any other run drops it
/// (what it named stays on disk, for `gc`): a list an install left names
/// the image its ROOTFS still holds when that install failed.
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct Intent {
    rootfs: Option<PathBuf>,
    replaced: Vec<String>,
}

fn read_intent(layout: &Layout) -> Intent {
    use std::io::Read;
    let mut bytes = Vec::new();
    if let Ok(f) = crate::layout::open_no_follow(&intent_path(layout)) {
        let _ = f.take(64 * 1024).read_to_end(&mut bytes);
    }
    serde_json::from_slice(&bytes).unwrap_or_default()
}

/// The ROOTFS this run installs into, as an absolute path.
fn rootfs_of(steps: &Steps) -> Option<PathBuf> {
    #[cfg(feature = "unpack")]
    return steps
        .plan
        .map(|p| std::path::absolute(p.rootfs()).unwrap_or_else(|_| p.rootfs().to_path_buf()));
    #[cfg(not(feature = "unpack"))]
    steps.plan.and(None)
}

/// Whether `name` (an image name as index.json or the record hold it) is
/// of the repository `reference` names.
fn same_repository(name: Option<&str>, reference: &Reference) -> bool {
    name.and_then(|n| Reference::parse(n).ok())
        .is_some_and(|r| r.registry == reference.registry && r.repository == reference.repository)
}

/// Add to the prune list what this pull may replace: the entry of the same
/// name and repository in index.json, and the image installed in ROOTFS
/// when it is of that repository.
fn remember_replaced(layout: &Layout, reference: &Reference, name: &str, steps: &Steps) -> Result<Vec<String>> {
    let rootfs = rootfs_of(steps);
    let mut intent = read_intent(layout);
    if intent.rootfs != rootfs {
        intent = Intent {
            rootfs,
            replaced: Vec::new(),
        };
    }
    let list = &mut intent.replaced;
    let entry = layout
        .entry_named(name)?
        .filter(|e| same_repository(e.annotation(CONTAINERD_NAME), reference));
    #[cfg(feature = "unpack")]
    let installed = steps
        .plan
        .and_then(|p| p.recorded())
        .filter(|r| same_repository(Some(&r.reference), reference))
        .map(|r| r.digest);
    #[cfg(not(feature = "unpack"))]
    let installed: Option<String> = steps.plan.and(None);
    for d in entry.map(|e| e.digest).into_iter().chain(installed) {
        if Digest::parse(&d).is_ok() && !list.contains(&d) && list.len() < 64 {
            list.push(d);
        }
    }
    write_intent(layout, &intent)?;
    Ok(intent.replaced)
}

fn write_intent(layout: &Layout, intent: &Intent) -> Result<()> {
    let bytes = serde_json::to_vec(intent).unwrap_or_default();
    let path = intent_path(layout);
    let _ = std::fs::create_dir_all(layout.root().join(".minipull"));
    let mut tmp = path.clone().into_os_string();
    tmp.push(".tmp");
    crate::layout::write_atomic(std::path::Path::new(&tmp), &path, &bytes)
}

/// Remove what the `replaced` versions reached and nothing still needs
/// (signatures left signing nothing with them); returns the bytes freed.
/// `installed`: the image ROOTFS's record names, kept with all it reaches.
fn prune(
    layout: &Layout,
    replaced: &[String],
    installed: Option<&str>,
    summary: &Summary,
    progress: Progress,
) -> Result<u64> {
    fault("prune")?;
    let mut candidates: Vec<Digest> = Vec::new();
    // Layers obtained partially: their kept proofs go with them.
    #[cfg(feature = "delta")]
    let mut proofs: Vec<Digest> = Vec::new();
    let mut add = |mut reached: Vec<Digest>| {
        // Leaves first, the manifest that names them last.
        reached.reverse();
        candidates.extend(reached);
    };
    // What the manifest (or index) `d` in the layout reaches.
    let reach = |d: &str| -> Result<Option<crate::layout::Reached>> {
        let Ok(digest) = Digest::parse(d) else {
            return Ok(None);
        };
        let Some(size) = layout.blob_size(&digest) else {
            return Ok(None);
        };
        let Ok(bytes) = layout.read_small_blob(&digest, crate::manifest::MAX_MANIFEST_BYTES) else {
            return Ok(None);
        };
        let Ok((media_type, _)) = crate::manifest::parse(&bytes, None) else {
            return Ok(None);
        };
        let desc = crate::manifest::Descriptor {
            media_type,
            digest: d.to_string(),
            size: size as i64,
            urls: None,
            platform: None,
            annotations: None,
            artifact_type: None,
        };
        Ok(Some(layout.reach(&desc, false)?))
    };
    for d in replaced {
        if *d == summary.digest || summary.index_digest.as_ref() == Some(d) {
            continue;
        }
        if let Some(r) = reach(d)? {
            #[cfg(feature = "delta")]
            {
                proofs.extend(r.discarded.iter().map(|x| x.0.clone()));
                proofs.extend(r.blobs.iter().map(|b| b.0.clone()));
            }
            add(r.digests().collect());
        }
    }
    // The rewrite of index.json below drops the signatures left signing
    // nothing; a cut after it and before their blobs go must leave the next
    // run able to find them: the prune list names them first (one that
    // stays is still reachable, and so is kept).
    let mut intent = read_intent(layout);
    let known = intent.replaced.len();
    for e in layout.entries()?.iter().filter(|e| crate::layout::is_signature(e)) {
        if !intent.replaced.contains(&e.digest) && intent.replaced.len() < 256 {
            intent.replaced.push(e.digest.clone());
        }
    }
    if intent.replaced.len() != known {
        write_intent(layout, &intent)?;
    }
    for sig in layout.retain_entries(|_| true)? {
        add(layout.reach(&sig, false)?.digests().collect());
    }
    fault("prune-index")?;
    if let Some(r) = installed.map(reach).transpose()?.flatten() {
        // The installed image's proofs are what its next update builds on.
        #[cfg(feature = "delta")]
        proofs.retain(|c| !r.discarded.iter().any(|x| x.0 == *c));
        let keep: Vec<Digest> = r.digests().collect();
        candidates.retain(|c| !keep.contains(c));
        #[cfg(feature = "delta")]
        proofs.retain(|c| !keep.contains(c));
    }
    let freed = layout.remove_unreachable(&candidates)?;
    #[cfg(feature = "delta")]
    let freed = crate::layout::Freed {
        bytes: freed.bytes + layout.remove_unneeded_proofs(&proofs)?,
        ..freed
    };
    match std::fs::remove_file(intent_path(layout)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(Error::storage("cannot remove the prune list", &e))
        }
        _ => {}
    }
    progress.note(format!(
        "pruned {} ({}) that only the replaced versions used",
        crate::progress::human(freed.bytes),
        crate::progress::count(freed.blobs as u64, "blob", "blobs"),
    ));
    Ok(freed.bytes)
}

/// A test-only fault: with `MINIPULL_TEST_FAULT=<point>` the step fails
/// (as if the disk were full), with `MINIPULL_TEST_KILL=<point>` the
/// process is SIGKILLed there, with `MINIPULL_TEST_TERM=<point>` it gets a
/// SIGTERM there (as from a service manager stopping it), with
/// `MINIPULL_TEST_STOP=<point>` it stops itself (SIGSTOP) there until a
/// SIGCONT. Honoured only in debug builds and with the `test-hooks` feature
/// (the boot test's own build); a release build compiles this to nothing.
pub(crate) fn fault(point: &str) -> Result<()> {
    #[cfg(any(debug_assertions, feature = "test-hooks"))]
    {
        if std::env::var("MINIPULL_TEST_STOP").is_ok_and(|v| v == point) {
            // SAFETY: raise has no preconditions.
            unsafe { libc::raise(libc::SIGSTOP) };
        }
        if std::env::var("MINIPULL_TEST_KILL").is_ok_and(|v| v == point) {
            // SAFETY: getpid and kill have no preconditions.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        }
        if std::env::var("MINIPULL_TEST_TERM").is_ok_and(|v| v == point) {
            // SAFETY: as above; the handler runs before kill returns.
            unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
        }
        if std::env::var("MINIPULL_TEST_FAULT").is_ok_and(|v| v == point) {
            return Err(Error::storage(
                format!("simulated fault at {point}"),
                &std::io::Error::from_raw_os_error(libc::ENOSPC),
            ));
        }
    }
    let _ = point;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_keeps_to_the_same_repository() {
        let r = Reference::parse("127.0.0.1:5000/demo/app:2.0").unwrap();
        assert!(same_repository(Some("127.0.0.1:5000/demo/app:1.0"), &r));
        let by_digest = format!("127.0.0.1:5000/demo/app@sha256:{}", "ab".repeat(32));
        assert!(same_repository(Some(&by_digest), &r));
        assert!(!same_repository(Some("127.0.0.1:5000/demo/other:2.0"), &r));
        assert!(!same_repository(Some("other.example:5000/demo/app:2.0"), &r));
        assert!(!same_repository(Some("not a reference"), &r));
        assert!(!same_repository(None, &r));
    }
}

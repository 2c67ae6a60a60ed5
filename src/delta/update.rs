//! The partial path inside an update (`pull --unpack ROOTFS`): for each
//! layer the pull left out (a modern zstd:chunked layer, with a root to
//! reuse from), fetch its metadata and the missing ranges and hand the
//! rebuilt tar to the layer loop; on any fault, the whole layer. Also the
//! `--discard-layers` flow (each layer downloaded just before it is
//! applied, removed just after) and keeping every zstd:chunked layer's
//! verified metadata for the next update.

use super::fetch::{self, Got, Meter};
use super::{index::Indexed as Root, plan::Prev, position, Metadata};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::manifest::{Descriptor, Manifest, Platform};
use crate::mirror::Sources;
use crate::progress::{human, Progress};
use serde::Serialize;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Partial pulls for an update: where local files come from, and the
/// previously installed image (its layers' TOCs say which chunks it has).
pub struct Delta {
    pub reuse: PathBuf,
    pub previous: Option<String>,
    pub platform: Platform,
    pub gap: u64,
}

/// What a layer's partial pull did, for `--json`.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    /// Bytes of the blob received (metadata, ranges; the whole blob after a 200).
    pub fetched: u64,
    /// Uncompressed bytes copied from the reuse root.
    pub reused: u64,
    /// Uncompressed bytes of zero runs.
    pub zeros: u64,
    /// Uncompressed bytes of chunks a cut run had fetched and kept.
    pub spooled: u64,
    /// Ranged requests made.
    pub requests: u32,
    /// Why the whole layer was taken instead, when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
}

/// One layer as the update obtained it.
pub struct Report {
    pub desc: Descriptor,
    /// Blob bytes fetched for it by this run.
    pub downloaded: u64,
    /// Obtained partially (no blob in `blobs/`).
    pub partial: bool,
    pub delta: Option<Stats>,
    /// The host a whole download came from.
    pub source: Option<String>,
}

/// The layers' source for [`crate::unpack::unpack_with`] in an update.
pub struct Feed<'a> {
    layout: &'a Layout,
    progress: Progress,
    sources: Option<&'a mut Sources>,
    discard: bool,
    delta: Option<&'a Delta>,
    /// The previous image's layers.
    prev_layers: Vec<Descriptor>,
    /// Layers to take whole (a partial attempt failed).
    whole: Vec<Digest>,
    /// The verified metadata, plan figures and meter of the layer being rebuilt.
    pending: Option<(Vec<u8>, Stats, Rc<Meter>)>,
    /// The rebuilt tar of a layer failed: the staged tree must be redone.
    pub retry: bool,
    pub reports: Vec<Report>,
}

impl<'a> Feed<'a> {
    pub fn new(
        layout: &'a Layout,
        progress: Progress,
        sources: Option<&'a mut Sources>,
        discard: bool,
        delta: Option<&'a Delta>,
    ) -> Feed<'a> {
        let prev_layers = delta
            .and_then(|d| Some((d.previous.as_deref()?, &d.platform)))
            .and_then(|(p, platform)| image_layers(layout, p, platform))
            .unwrap_or_default();
        Feed {
            layout,
            progress,
            sources,
            discard,
            delta,
            prev_layers,
            whole: Vec::new(),
            pending: None,
            retry: false,
            reports: Vec::new(),
        }
    }

    /// Start over (after a retry): the layers are applied again.
    pub fn restart(&mut self) {
        self.retry = false;
        self.pending = None;
    }

    fn report(&mut self, desc: &Descriptor, downloaded: u64, partial: bool, delta: Option<Stats>) {
        add_report(&mut self.reports, desc, downloaded, partial, delta);
    }

    /// The previous TOC for layer `i`: the previous image's layer `i`, then any of its layers.
    fn prev_for(&self, i: usize) -> Option<Prev> {
        let at = self.prev_layers.get(i).into_iter();
        at.chain(&self.prev_layers)
            .find_map(|d| fetch::previous(self.layout, d))
    }

    /// The metadata of layer `i` and its plan, or the whole blob (now in
    /// `blobs/`, `Ok(None)`); an error: take the layer whole.
    fn prepare(
        &mut self,
        i: usize,
        layer: &Descriptor,
        delta: &Delta,
    ) -> Result<Option<(fetch::Ready<Root>, Rc<Meter>)>> {
        let root = Root::open(&delta.reuse)
            .map_err(|e| super::refuse(format!("cannot open the reuse root {}: {e}", delta.reuse.display())))?;
        let prev = self.prev_for(i);
        let (digest, size) = (layer.checked_digest()?, layer.checked_size()?);
        let meter = Rc::new(Meter::default());
        *meter.line.borrow_mut() = Some(self.progress.blob(format!("{} layer (partial)", digest.short()), size));
        let spool = super::spool::Spool::of(self.layout);
        let client = self.client()?;
        match fetch::prepare(client, layer, prev, root, delta.gap, meter.clone(), spool)? {
            fetch::First::Ready(r) => Ok(Some((*r, meter))),
            fetch::First::Blob(blob) => {
                let got = store_blob(self.layout, &digest, size, blob)?;
                self.whole_from_range(layer, got, &meter);
                Ok(None)
            }
        }
    }

    fn client(&mut self) -> Result<&mut crate::registry::Client> {
        self.sources
            .as_deref_mut()
            .and_then(Sources::registry_client)
            .ok_or_else(|| Error::other("no registry to fetch from"))
    }

    /// The registry answered a range request with the whole blob, stored.
    fn whole_from_range(&mut self, layer: &Descriptor, got: u64, meter: &Meter) {
        let stats = Stats {
            fetched: meter.bytes.get(),
            requests: meter.requests.get(),
            fallback: Some("the registry answered a range request with the whole layer".into()),
            ..Stats::default()
        };
        self.progress.note(format!(
            "layer {}: the registry sent the whole layer for a range request; using it",
            layer.digest
        ));
        self.report(layer, got, false, Some(stats));
    }

    /// Keep the verified metadata of a zstd:chunked layer applied whole
    /// (read back from its blob), for the next update.
    fn keep_metadata_of_blob(&self, layer: &Descriptor) {
        let Some(pos) = position::of(layer) else { return };
        let Ok(digest) = layer.checked_digest() else { return };
        let Ok(mut f) = self.layout.open_blob(&digest) else {
            return;
        };
        use std::io::Seek;
        let mut tail = Vec::new();
        let read = f
            .seek(std::io::SeekFrom::Start(pos.toc.offset))
            .and_then(|_| f.take(2 * super::MAX_COMPRESSED + 4096).read_to_end(&mut tail));
        if read.is_ok() && Metadata::open(&tail, &pos).is_ok() {
            let _ = self.layout.save_delta_metadata(&digest, &tail);
        }
    }
}

impl Feed<'_> {
    /// The data request for a planned layer and its rebuilt tar. A failure
    /// here comes out of the tar reader (the layer is then redone whole).
    fn start(&mut self, mut ready: fetch::Ready<Root>, meter: Rc<Meter>, layer: &Descriptor) -> Box<dyn Read + '_> {
        let stats = Stats {
            reused: ready.plan.reused,
            zeros: ready.plan.zeros,
            spooled: ready.plan.spooled,
            ..Stats::default()
        };
        self.pending = Some((std::mem::take(&mut ready.tail), stats, meter.clone()));
        let Feed {
            sources,
            layout,
            reports,
            ..
        } = self;
        let Some(client) = sources.as_deref_mut().and_then(Sources::registry_client) else {
            return Box::new(Failing("no registry to fetch from".into()));
        };
        match ready.start(client) {
            Ok(Got::Tar(tar, ..)) => tar,
            // The whole blob after all: kept, and the layer redone from it.
            Ok(Got::Blob(blob)) => {
                let why = "the registry answered a range request with the whole layer";
                let (Ok(d), Ok(size)) = (layer.checked_digest(), layer.checked_size()) else {
                    return Box::new(Failing(why.into()));
                };
                if let Ok(got) = store_blob(layout, &d, size, blob) {
                    let stats = Stats {
                        fetched: meter.bytes.get(),
                        requests: meter.requests.get(),
                        fallback: Some(why.into()),
                        ..Stats::default()
                    };
                    add_report(reports, layer, got, false, Some(stats));
                }
                Box::new(Failing(why.into()))
            }
            Err(e) => Box::new(Failing(e.message)),
        }
    }
}

/// A tar that fails at once: the partial path gave up after the layer began.
struct Failing(String);

impl Read for Failing {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(std::io::Error::new(std::io::ErrorKind::InvalidData, self.0.clone()))
    }
}

/// Record what a layer cost; a layer redone after a restart adds to its line.
fn add_report(reports: &mut Vec<Report>, desc: &Descriptor, downloaded: u64, partial: bool, delta: Option<Stats>) {
    let before = reports.iter().position(|r| r.desc.digest == desc.digest);
    let (mut downloaded, mut delta) = (downloaded, delta);
    if let Some(old) = before.map(|i| reports.remove(i)) {
        downloaded += old.downloaded;
        if let (Some(new), Some(old)) = (&mut delta, &old.delta) {
            new.fetched += old.fetched;
            new.requests += old.requests;
            if new.fallback.is_none() {
                new.fallback.clone_from(&old.fallback);
            }
        }
    }
    reports.push(Report {
        desc: desc.clone(),
        downloaded,
        partial,
        delta,
        source: None,
    });
}

impl crate::unpack::Layers for Feed<'_> {
    fn before(&mut self, i: usize, layer: &Descriptor) -> Result<Option<Box<dyn Read + '_>>> {
        let (digest, size) = (layer.checked_digest()?, layer.checked_size()?);
        let present = self.layout.has_blob(&digest, size, false)?;
        let mut fallback = None;
        if let Some(delta) = self.delta.filter(|_| !present && position::of(layer).is_some()) {
            if self.whole.contains(&digest) {
                fallback = Some("its rebuilt tar failed the checks".to_string());
            } else {
                match self.prepare(i, layer, delta) {
                    Ok(Some((ready, meter))) => return Ok(Some(self.start(ready, meter, layer))),
                    Ok(None) => return Ok(None),
                    Err(e) => fallback = Some(e.message),
                }
            }
        }
        let Some(sources) = self.sources.as_deref_mut() else {
            return Ok(None);
        };
        let mut stats = None;
        if let Some(why) = fallback {
            self.progress
                .note(format!("layer {}: fetching the whole layer ({why})", digest.short()));
            stats = Some(Stats {
                fallback: Some(why),
                ..Stats::default()
            });
        }
        if self.discard || !present {
            let (got, source) = crate::pull::fetch_one(sources, self.layout, self.progress, layer)?;
            if let Some(s) = &mut stats {
                s.fetched = got;
            }
            if got > 0 || stats.is_some() {
                self.report(layer, got, false, stats);
                if let Some(r) = self.reports.last_mut() {
                    r.source = source;
                }
            }
        }
        Ok(None)
    }

    fn after(&mut self, _i: usize, layer: &Descriptor, rebuilt: bool) -> Result<()> {
        crate::install::fault("layer")?;
        let digest = layer.checked_digest()?;
        if rebuilt {
            if let Some((tail, mut stats, meter)) = self.pending.take() {
                stats.fetched = meter.bytes.get();
                stats.requests = meter.requests.get();
                if let Some(line) = meter.line.borrow_mut().take() {
                    line.finish(stats.fetched);
                }
                self.progress.note(format!(
                    "layer {}: {} fetched of {}, {} reused from the root",
                    digest.short(),
                    human(stats.fetched),
                    human(layer.size.max(0) as u64),
                    human(stats.reused)
                ));
                // The proof the layout keeps of a layer it has no blob of.
                self.layout.save_delta_metadata(&digest, &tail)?;
                self.report(layer, stats.fetched, true, Some(stats));
            }
            return Ok(());
        }
        self.keep_metadata_of_blob(layer);
        if self.discard {
            self.layout.remove_unreachable(&[digest])?;
        }
        Ok(())
    }

    fn failed(&mut self, _i: usize, layer: &Descriptor, e: &Error) {
        if let Ok(d) = layer.checked_digest() {
            self.progress.note(format!(
                "layer {}: the partial pull failed ({}); starting over with the whole layer",
                d.short(),
                e.message
            ));
            self.whole.push(d);
            self.retry = true;
        }
        self.pending = None;
    }
}

/// Record the local file index of `rootfs`, which now holds an image with
/// `layers` (see [`super::index`]): from the verified TOCs the layout keeps
/// of its zstd:chunked layers. A layer without one may have changed any
/// name below it, so only the layers above the last such layer count. An
/// image with none writes no index (and removes a stale one); a failure only
/// costs the next update hashing.
pub fn write_index(layout: &Layout, layers: &[Descriptor], rootfs: &Path) -> Result<usize> {
    let mut files = Vec::new();
    let mut names = 0u64;
    for layer in layers {
        let toc = position::of(layer)
            .zip(layer.checked_digest().ok())
            .and_then(|(pos, digest)| {
                let tail = layout.delta_metadata(&digest, 2 * super::MAX_COMPRESSED + 4096)?;
                Metadata::open(&tail, &pos).ok()
            })
            .map(|meta| meta.toc);
        match toc {
            Some(toc) => {
                for f in toc.files {
                    names += f.name.len() as u64;
                    files.push((f.name.into_string(), f.size, f.digest));
                }
            }
            None => (files, names) = (Vec::new(), 0),
        }
        // TOCs need not match their tars: what they list is held here only
        // up to the index's own caps, past which the image gets no index.
        if files.len() > super::MAX_ENTRIES || names > super::index::MAX_NAMES {
            files.clear();
            break;
        }
    }
    if files.is_empty() {
        if let Some(p) = super::index::path_for(rootfs) {
            let _ = std::fs::remove_file(p);
        }
        return Ok(0);
    }
    super::index::write(rootfs, files)
}

/// The layers of the image manifest `digest` in `layout` (through an index, for `platform`).
fn image_layers(layout: &Layout, digest: &str, platform: &Platform) -> Option<Vec<Descriptor>> {
    let mut d = Digest::parse(digest).ok()?;
    for _ in 0..4 {
        let bytes = layout.read_small_blob(&d, crate::manifest::MAX_MANIFEST_BYTES).ok()?;
        match crate::manifest::parse(&bytes, None).ok()?.1 {
            Manifest::Image(m) => return Some(m.layers),
            Manifest::Index(i) => {
                d = crate::manifest::select_platform(&i.manifests, platform)
                    .ok()?
                    .checked_digest()
                    .ok()?
            }
        }
    }
    None
}

/// Store a whole blob a registry sent for a range request, verified.
fn store_blob(layout: &Layout, digest: &Digest, size: u64, blob: Box<dyn Read + '_>) -> Result<u64> {
    let part = layout.partial_path(digest);
    let mut f =
        std::fs::File::create(&part).map_err(|e| Error::storage(format!("cannot create {}", part.display()), &e))?;
    let mut h = crate::digest::Hasher::new(digest.algorithm());
    let mut n = 0u64;
    let mut blob = blob.take(size.saturating_add(1));
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let k = blob
            .read(&mut buf)
            .map_err(|e| Error::network(format!("blob {}: {e}", digest.short())))?;
        if k == 0 {
            break;
        }
        n += k as u64;
        h.update(&buf[..k]);
        std::io::Write::write_all(&mut f, &buf[..k]).map_err(|e| Error::storage("cannot write the layer", &e))?;
    }
    if n != size || h.finish() != *digest {
        let _ = std::fs::remove_file(&part);
        return Err(Error::integrity(format!(
            "blob {} does not match its digest",
            digest.short()
        )));
    }
    f.sync_all().map_err(|e| Error::storage("cannot sync the layer", &e))?;
    layout.commit_partial(digest)?;
    Ok(n)
}

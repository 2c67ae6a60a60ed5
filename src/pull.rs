//! The pull itself: resolve the manifest (index -> platform), fetch every
//! blob, write manifests, and finally add the image to index.json.

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::layout::{Layout, CONTAINERD_NAME, REF_NAME};
use crate::manifest::{self, Descriptor, ImageManifest, Manifest, Platform};
use crate::mirror::Sources;
use crate::progress::{human, Progress};
use crate::reference::Reference;
use serde::Serialize;
use std::collections::BTreeMap;

/// An index may point at indexes; deeper than this is refused.
const MAX_INDEX_DEPTH: usize = 4;

/// What to pull.
pub struct PullOptions {
    pub platform: Platform,
    pub all_platforms: bool,
    /// Re-hash blobs already in OUTDIR instead of trusting their name and size.
    pub verify: bool,
    /// Accept only images signed with one of these keys.
    pub policy: Option<crate::verify::Policy>,
    /// Refuse an image whose config is older than the one already in
    /// OUTDIR under the same name (`--no-downgrade`).
    pub no_downgrade: bool,
    /// The layers must be in OUTDIR after the pull (an unpack follows), even
    /// for an entry whose layers were discarded.
    pub need_layers: bool,
    /// `--discard-layers`: fetch manifests and config only; the unpack
    /// fetches each layer just before it applies it, and removes it after.
    pub discard_layers: bool,
    /// An unpack follows that fetches zstd:chunked layers partially: the
    /// pull leaves those it does not hold to it.
    #[cfg(feature = "delta")]
    pub partial_layers: bool,
    /// The name index.json gives the image (`OUTDIR:NAME`); default: [`ref_name`].
    pub name: Option<String>,
}

impl PullOptions {
    /// The name the entry of `reference` gets in index.json.
    pub fn name_for(&self, reference: &Reference) -> String {
        self.name.clone().unwrap_or_else(|| ref_name(reference))
    }
}

/// What a pull did, for `--json`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub reference: String,
    /// The digest index.json now points at for this reference.
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    /// The platform chosen from an index, if one was.
    pub platform: Option<String>,
    /// The index the platform was chosen from, if any.
    pub index_digest: Option<String>,
    /// The indexes and manifests of the image (an index a platform was
    /// chosen from too, when this run fetched it or OUTDIR holds it).
    pub manifests: Vec<ContentSummary>,
    /// Its config and layers.
    pub blobs: Vec<ContentSummary>,
    /// Every manifest and blob byte this run fetched (the unpack's too).
    pub bytes_downloaded: u64,
    /// Blob bytes fetched over the network by this run (the unpack's too).
    pub blob_bytes_downloaded: u64,
    /// Manifest bytes fetched over the network by this run.
    pub manifest_bytes_downloaded: u64,
    /// The signature that verified the image, with `--verify-key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<crate::verify::Verified>,
    /// Bytes `--prune` removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pruned_bytes: Option<u64>,
    /// What `--unpack` did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unpack: Option<UnpackSummary>,
}

impl Summary {
    /// Count bytes fetched (by the pull or the unpack).
    pub fn count_bytes(&mut self, blob: u64, manifest: u64) {
        self.blob_bytes_downloaded += blob;
        self.manifest_bytes_downloaded += manifest;
        self.bytes_downloaded = self.blob_bytes_downloaded + self.manifest_bytes_downloaded;
    }
}

/// What an unpack into ROOTFS did, for `--json`.
#[derive(Debug, Serialize, Default)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(not(feature = "unpack"), allow(dead_code))]
pub struct UnpackSummary {
    pub rootfs: String,
    /// A new tree is in ROOTFS now.
    pub installed: bool,
    /// ROOTFS already held the image (its record said so): nothing unpacked.
    pub already_installed: bool,
    pub layers: u64,
    pub entries: u64,
    /// Uncompressed bytes read from the layers.
    pub bytes: u64,
    /// Layer bytes fetched during the unpack (`--discard-layers`).
    pub bytes_downloaded: u64,
    /// The record beside ROOTFS.
    pub record: String,
}

/// One manifest or blob of the pull.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentSummary {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    /// Bytes of it fetched by this run (0 when it was already present).
    pub downloaded: u64,
    /// `downloaded`, `present` (already in OUTDIR), `skipped` (foreign
    /// layer), `fetched` (an index read to choose the platform, not kept)
    /// or `discarded` (a layer removed after unpacking).
    pub status: &'static str,
    /// The host it was fetched from (a mirror or the registry), when fetched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// A zstd:chunked layer's partial pull: `{fetched, reused, zeros, requests, fallback}`.
    #[cfg(feature = "delta")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<serde_json::Value>,
}

struct Fetched {
    source: String,
    bytes: Vec<u8>,
    media_type: String,
    manifest: Manifest,
    digest: Digest,
}

struct Puller<'a> {
    sources: &'a mut Sources,
    layout: &'a Layout,
    progress: Progress,
    opts: &'a PullOptions,
    summary: Summary,
    /// The signature that proved the image, once one has.
    proof: Option<crate::verify::Proof>,
    /// The index the proof signs, when it signs the tag's index.
    signed_index: Option<(Digest, Vec<u8>)>,
    /// Why each signature looked at so far failed.
    reasons: Vec<String>,
    /// The name index.json gives the image (`org.opencontainers.image.ref.name`).
    name: String,
    /// The image's size and what is done, for the progress line.
    image: Option<crate::progress::ImageProgress>,
    /// An index entry of a media type minipull does not pull was noted.
    noted_unknown: bool,
}

/// Pull `reference` into `layout`.
pub fn pull(
    reference: &Reference,
    sources: &mut Sources,
    layout: &Layout,
    progress: Progress,
    opts: &PullOptions,
) -> Result<Summary> {
    let mut p = Puller {
        sources,
        layout,
        progress,
        opts,
        summary: Summary {
            reference: reference.to_string(),
            digest: String::new(),
            media_type: String::new(),
            size: 0,
            platform: None,
            index_digest: None,
            manifests: Vec::new(),
            blobs: Vec::new(),
            bytes_downloaded: 0,
            blob_bytes_downloaded: 0,
            manifest_bytes_downloaded: 0,
            signature: None,
            pruned_bytes: None,
            unpack: None,
        },
        proof: None,
        signed_index: None,
        reasons: Vec::new(),
        name: opts.name_for(reference),
        image: None,
        noted_unknown: false,
    };
    // What OUTDIR already holds costs one HEAD (none by digest) and no GET.
    if let Some(summary) = p.already_here(reference)? {
        layout.tidy();
        progress.note(format!(
            "{} ({}) is already in {}: nothing to download",
            summary.reference,
            summary.digest,
            layout.root().display()
        ));
        return Ok(summary);
    }
    let expected = reference.digest.as_ref().map(|d| (d.clone(), None));
    let (digest, media_type, size, platform) = p.pull_node(&reference.manifest_reference(), expected, None, 0)?;

    let mut annotations = BTreeMap::from([(CONTAINERD_NAME.to_string(), reference.to_string())]);
    annotations.insert(REF_NAME.to_string(), p.name.clone());
    if let Some(index) = &p.summary.index_digest {
        annotations.insert(crate::layout::RESOLVED.to_string(), index.clone());
    }
    if opts.discard_layers {
        annotations.insert(crate::layout::LAYERS_DISCARDED.to_string(), "true".to_string());
    }
    // The signature goes in before the image is named, so an image that
    // needed one is never in index.json without it.
    if let Some((d, bytes)) = &p.signed_index {
        let present = p.layout.has_blob(d, bytes.len() as u64, false)?;
        p.layout.write_blob(d, bytes)?;
        let d = d.to_string();
        for m in p.summary.manifests.iter_mut().filter(|m| m.digest == d) {
            m.status = if present { "present" } else { "downloaded" };
        }
    }
    if let Some(proof) = &p.proof {
        proof.store(p.layout)?;
        p.summary.signature = Some(proof.verified.clone());
    }
    let entry = Descriptor {
        media_type: media_type.clone(),
        digest: digest.to_string(),
        size: size as i64,
        urls: None,
        platform: platform.clone(),
        annotations: Some(annotations),
        artifact_type: None,
    };
    note_replaced(p.layout, &entry, &p.name, reference, progress)?;
    // Last: only now does the layout name the image, and everything it names exists.
    p.layout.add_to_index(&entry)?;
    // With --discard-layers the unpack still downloads into the work directory.
    if !opts.discard_layers {
        p.layout.tidy();
    }
    if let Some(line) = p.sources.report() {
        progress.note(line);
    }

    let mut summary = p.summary;
    summary.digest = digest.to_string();
    summary.media_type = media_type;
    summary.size = size;
    summary.platform = platform.map(|p| p.to_string());
    progress.note(format!(
        "pulled {} ({}) into {}: {} downloaded",
        summary.reference,
        summary.digest,
        layout.root().display(),
        human(summary.bytes_downloaded)
    ));
    Ok(summary)
}

impl Puller<'_> {
    /// A layer the unpack that follows fetches partially: the pull leaves it.
    fn partial(&self, layer: &Descriptor) -> bool {
        #[cfg(feature = "delta")]
        return self.opts.partial_layers && may_be_partial(layer);
        #[cfg(not(feature = "delta"))]
        {
            let _ = layer;
            false
        }
    }

    /// The summary of a pull that needs nothing: OUTDIR has an entry for
    /// this exact reference whose tag still resolves to the same digest
    /// (one manifest HEAD), for the platform asked, with every blob present
    /// (re-hashed with `--verify`) and, with `--verify-key`, a valid stored
    /// signature. `None`: pull as usual.
    fn already_here(&mut self, reference: &Reference) -> Result<Option<Summary>> {
        let full = reference.to_string();
        // Only the entry of this name counts (`OUTDIR:NAME` may name another).
        let entries: Vec<Descriptor> = (self.layout.entries()?.into_iter())
            .filter(|e| e.annotation(REF_NAME) == Some(self.name.as_str()))
            .collect();
        let Some((entry, resolved)) = crate::layout::recorded_for(&entries, &full) else {
            return Ok(None);
        };
        let is_index = entry.media_type == manifest::OCI_INDEX || entry.media_type == manifest::DOCKER_LIST;
        let platform_ok = match &entry.platform {
            _ if self.opts.all_platforms => is_index,
            Some(_) => manifest::select_platform(std::slice::from_ref(entry), &self.opts.platform).is_ok(),
            None => !is_index,
        };
        if !platform_ok {
            return Ok(None);
        }
        let remote = match &reference.digest {
            Some(d) => d.clone(),
            None => match self
                .sources
                .head_manifest(&reference.manifest_reference(), manifest::ACCEPT)?
            {
                Some(d) => d,
                None => {
                    self.progress
                        .note("the registry answered HEAD without a digest (or refused it); fetching the manifest");
                    return Ok(None);
                }
            },
        };
        if remote.to_string() != resolved {
            return Ok(None);
        }
        let reached = self.layout.reach(entry, self.opts.verify)?;
        // Layers obtained partially (zstd:chunked) need no blob for an
        // update that may take them partially again.
        #[cfg(feature = "delta")]
        let (discarded, layers_needed) = {
            let discarded = entry.annotation(crate::layout::LAYERS_DISCARDED) == Some("true");
            (
                discarded,
                self.opts.need_layers && (discarded || !self.opts.partial_layers),
            )
        };
        // (Without partial pulls, every layer reach finds not held was discarded.)
        #[cfg(not(feature = "delta"))]
        let (discarded, layers_needed) = (true, self.opts.need_layers);
        if !reached.missing.is_empty() || (layers_needed && !reached.discarded.is_empty()) {
            return Ok(None);
        }
        if discarded && !reached.discarded.is_empty() {
            self.progress.note(format!(
                "{} layers of this image were discarded after unpacking (--discard-layers): only its manifests and config are here{}",
                reached.discarded.len(),
                if self.opts.verify { " and were re-checked" } else { "" }
            ));
        }
        let mut signature = None;
        if let Some(policy) = &self.opts.policy {
            let mut ignored = Vec::new();
            let mut found = None;
            for d in [resolved, entry.digest.as_str()] {
                if found.is_none() && !self.opts.verify {
                    found = crate::verify::check_stored(self.layout, policy, &Digest::parse(d)?, &mut ignored)?;
                }
            }
            let Some(proof) = found else { return Ok(None) };
            signature = Some(proof.verified);
        }
        let present = reached.blobs.iter().map(|b| (b, "present"));
        let (manifests, blobs) = present
            .chain(reached.discarded.iter().map(|b| (b, "discarded")))
            .map(|((d, size, media_type), status)| ContentSummary {
                digest: d.to_string(),
                media_type: media_type.clone(),
                size: *size,
                downloaded: 0,
                status,
                source: None,
                #[cfg(feature = "delta")]
                delta: None,
            })
            .partition(|c| manifest::is_manifest_type(&c.media_type));
        Ok(Some(Summary {
            reference: full,
            digest: entry.digest.clone(),
            media_type: entry.media_type.clone(),
            size: entry.size.max(0) as u64,
            platform: entry.platform.as_ref().map(|p| p.to_string()),
            index_digest: entry.annotation(crate::layout::RESOLVED).map(str::to_string),
            manifests,
            blobs,
            bytes_downloaded: 0,
            blob_bytes_downloaded: 0,
            manifest_bytes_downloaded: 0,
            signature,
            pruned_bytes: None,
            unpack: None,
        }))
    }

    /// Pull the manifest named `reference` and everything below it. Returns
    /// what index.json should point at: digest, media type, size, platform.
    /// `claimed`: the media type the stored index that names it gives it.
    fn pull_node(
        &mut self,
        reference: &str,
        expected: Option<(Digest, Option<u64>)>,
        claimed: Option<&str>,
        depth: usize,
    ) -> Result<(Digest, String, u64, Option<Platform>)> {
        if depth > MAX_INDEX_DEPTH {
            return Err(Error::integrity(format!(
                "indexes nest more than {MAX_INDEX_DEPTH} deep; refusing to follow them further"
            )));
        }
        let mut f = self.fetch_manifest(reference, expected)?;
        if let Some(t) = claimed {
            // The layout's walks (gc, --prune, the re-pull) read it as what
            // the index claims it is, so it must parse as that.
            (f.media_type, f.manifest) = manifest::parse(&f.bytes, Some(t))
                .map_err(|e| e.context(format!("index entry {reference}, which claims to be {t}")))?;
        }
        validate_descriptors(&f.manifest).map_err(|e| e.context(format!("manifest {reference}")))?;
        let one_platform = matches!(f.manifest, Manifest::Index(_)) && !self.opts.all_platforms;
        // The signed index is kept (unnamed) so `unpack --verify-key` can check offline that it lists the platform manifest.
        if depth == 0 && self.verify_signature(&f.digest)? && one_platform && self.proof.is_some() {
            self.signed_index = Some((f.digest.clone(), f.bytes.clone()));
        }
        if depth == 0 && self.untrusted() && !one_platform {
            return Err(self.untrusted_error(&f.digest, None));
        }
        match &f.manifest {
            Manifest::Image(m) => {
                self.pull_image(m, reference)?;
                self.store_manifest(&f)?;
                Ok((f.digest, f.media_type, f.bytes.len() as u64, None))
            }
            Manifest::Index(idx) if self.opts.all_platforms => {
                for child in &idx.manifests {
                    let (d, size) = (child.checked_digest()?, child.checked_size()?);
                    if manifest::is_manifest_type(&child.media_type) {
                        self.pull_node(
                            &d.to_string(),
                            Some((d, Some(size))),
                            Some(&child.media_type),
                            depth + 1,
                        )?;
                    } else if !self.noted_unknown {
                        // The image-spec: unknown media types are ignored.
                        self.noted_unknown = true;
                        self.progress.note(format!(
                            "not pulling index entry {} of media type {}, nor any other that is not an image manifest or index",
                            d.short(),
                            crate::error::Quoted(&child.media_type)
                        ));
                    }
                }
                self.store_manifest(&f)?;
                Ok((f.digest, f.media_type, f.bytes.len() as u64, None))
            }
            Manifest::Index(idx) => {
                let chosen = manifest::select_platform(&idx.manifests, &self.opts.platform)?;
                let platform = chosen.platform.clone();
                if let Some(p) = &platform {
                    self.progress.note(format!("chose platform {p} from the index"));
                }
                if self.summary.index_digest.is_none() {
                    self.summary.index_digest = Some(f.digest.to_string());
                }
                // Read to choose the platform; kept only when signed (see pull).
                self.summary.manifests.push(ContentSummary {
                    digest: f.digest.to_string(),
                    media_type: f.media_type.clone(),
                    size: f.bytes.len() as u64,
                    downloaded: f.bytes.len() as u64,
                    status: "fetched",
                    source: Some(f.source.clone()),
                    #[cfg(feature = "delta")]
                    delta: None,
                });
                let (d, size) = (chosen.checked_digest()?, chosen.checked_size()?);
                // A signature of the chosen platform's manifest is accepted too.
                if self.untrusted() && !self.verify_signature(&d)? {
                    return Err(self.untrusted_error(&f.digest, Some(&d)));
                }
                let (digest, media_type, size, inner) =
                    self.pull_node(&d.to_string(), Some((d, Some(size))), None, depth + 1)?;
                Ok((digest, media_type, size, inner.or(platform)))
            }
        }
    }

    /// With `--verify-key`, look for a valid signature of `digest`: stored
    /// with an earlier pull of it in this layout, else in the registry.
    /// True when the image is (now) proven or no key was given.
    fn verify_signature(&mut self, digest: &Digest) -> Result<bool> {
        let Some(policy) = &self.opts.policy else {
            return Ok(true);
        };
        if self.proof.is_some() {
            return Ok(true);
        }
        // A signature stored by an earlier pull is checked again here and
        // not fetched again, unless --verify asks to re-check everything.
        let mut ignored = Vec::new();
        let stored = match self.opts.verify {
            true => None,
            false => crate::verify::check_stored(self.layout, policy, digest, &mut ignored)?,
        };
        let found = match stored {
            Some(p) => Some(p),
            None => crate::verify::check_remote(self.sources, policy, digest, &mut self.reasons)?,
        };
        let Some(proof) = found else { return Ok(false) };
        let v = &proof.verified;
        self.progress.note(format!(
            "signature verified: {} signature of {} by {}",
            v.format,
            v.digest,
            v.by()
        ));
        self.proof = Some(proof);
        Ok(true)
    }

    fn untrusted(&self) -> bool {
        self.opts.policy.is_some() && self.proof.is_none()
    }

    fn untrusted_error(&self, top: &Digest, platform: Option<&Digest>) -> Error {
        let what = match platform {
            Some(p) => format!("{} ({top}, or its platform manifest {p})", self.summary.reference),
            None => format!("{} ({top})", self.summary.reference),
        };
        match &self.opts.policy {
            Some(policy) => crate::verify::untrusted(&what, policy, &self.reasons),
            None => Error::other(format!("{what}: no signature policy")),
        }
    }

    /// Fetch and verify a manifest: against the digest we expect (from the
    /// reference or the parent index), and against `Docker-Content-Digest`.
    fn fetch_manifest(&mut self, reference: &str, expected: Option<(Digest, Option<u64>)>) -> Result<Fetched> {
        let (fetched, source) = self
            .sources
            .manifest(reference, manifest::ACCEPT, manifest::MAX_MANIFEST_BYTES)?;
        self.summary.count_bytes(0, fetched.bytes.len() as u64);
        let bytes = fetched.bytes;
        let hash = |d: &Digest| Digest::of(d.algorithm(), &bytes);
        let digest = match &expected {
            Some((want, size)) => {
                let got = hash(want);
                if got != *want {
                    return Err(Error::integrity(format!(
                        "manifest {reference}: the registry served content whose digest is {got}"
                    )));
                }
                if let Some(size) = size.filter(|s| *s != bytes.len() as u64) {
                    return Err(Error::integrity(format!(
                        "manifest {reference}: expected {size} bytes, got {}",
                        bytes.len()
                    )));
                }
                got
            }
            None => Digest::sha256_of(&bytes),
        };
        if let Some(header) = fetched.digest_header.as_deref() {
            let claimed = Digest::parse(header.trim())
                .map_err(|e| e.context(format!("manifest {reference}: Docker-Content-Digest header")))?;
            let got = hash(&claimed);
            if got != claimed {
                return Err(Error::integrity(format!(
                    "manifest {reference}: the registry says its digest is {claimed} but the content hashes to {got}"
                )));
            }
        }
        let (media_type, manifest) = manifest::parse(&bytes, fetched.content_type.as_deref())
            .map_err(|e| e.context(format!("manifest {reference}")))?;
        Ok(Fetched {
            source,
            bytes,
            media_type,
            manifest,
            digest,
        })
    }

    fn store_manifest(&mut self, f: &Fetched) -> Result<()> {
        let size = f.bytes.len() as u64;
        let present = self.layout.has_blob(&f.digest, size, self.opts.verify)?;
        if !present {
            self.layout.write_blob(&f.digest, &f.bytes)?;
        }
        self.summary.manifests.push(ContentSummary {
            digest: f.digest.to_string(),
            media_type: f.media_type.clone(),
            size,
            downloaded: size,
            status: if present { "present" } else { "downloaded" },
            source: Some(f.source.clone()),
            #[cfg(feature = "delta")]
            delta: None,
        });
        Ok(())
    }

    fn pull_image(&mut self, m: &ImageManifest, reference: &str) -> Result<()> {
        self.check_blobs(m, reference)?;
        let sizes = std::iter::once(&m.config)
            .chain(&m.layers)
            .map(|d| d.size.max(0) as u64);
        let total = sizes.fold(0u64, |a, b| a.saturating_add(b));
        let had = std::iter::once(&m.config)
            .chain(&m.layers)
            .filter_map(|d| d.checked_digest().ok())
            .map(|d| self.layout.blob_size(&d).unwrap_or_else(|| self.layout.partial_len(&d)))
            .sum();
        self.image = Some(crate::progress::ImageProgress {
            total,
            done_before: 0,
            had,
            start: std::time::Instant::now(),
        });
        self.fetch_blob(&m.config)?;
        if self.proof.is_some() {
            self.note_signed_created(&m.config)?;
        }
        if self.opts.no_downgrade {
            self.refuse_downgrade(&m.config)?;
        }
        if self.opts.discard_layers {
            // Fetched by the unpack, one at a time (see install).
            for l in &m.layers {
                let (d, size) = (l.checked_digest()?, l.checked_size()?);
                if self.summary.blobs.iter().any(|b| b.digest == d.to_string()) {
                    continue;
                }
                let status = match self.layout.has_blob(&d, size, false)? {
                    true => "present",
                    false => "discarded",
                };
                self.record(l, &d, size, 0, status, None);
            }
            return Ok(());
        }
        for layer in &m.layers {
            if self.partial(layer) {
                continue;
            }
            self.fetch_blob(layer)?;
        }
        Ok(())
    }

    /// A signed image's config `created` is a time its signer vouches for:
    /// `--time-floor` may rise to it, when it is not far ahead of every
    /// other time known (see [`crate::tls::floor_to`]).
    fn note_signed_created(&self, config: &Descriptor) -> Result<()> {
        let bytes = self
            .layout
            .read_small_blob(&config.checked_digest()?, 4 * 1024 * 1024)?;
        let created = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("created")?.as_str().and_then(crate::verify::rfc3339));
        if let Some((t, _)) = created {
            crate::tls::signed_time(u64::try_from(t).unwrap_or(0));
        }
        Ok(())
    }

    /// `--no-downgrade`: the new config's `created` must not be older than
    /// that of the image OUTDIR holds under the same name from the same
    /// repository (for an index entry, its config for this platform). The
    /// config is bound to the (signed) manifest by its digest, so a mirror
    /// cannot serve an older, validly signed image in its place. Without a
    /// time on either side there is nothing to compare: refused.
    fn refuse_downgrade(&self, config: &Descriptor) -> Result<()> {
        let refuse = |why: String| Error::new(crate::error::Kind::Untrusted, format!("--no-downgrade: {why}"));
        let read = |d: &Digest| -> Result<serde_json::Value> {
            let bytes = self.layout.read_small_blob(d, 4 * 1024 * 1024)?;
            serde_json::from_slice(&bytes).map_err(|_| Error::integrity("the image config is not JSON"))
        };
        let created = |v: &serde_json::Value| v.get("created")?.as_str().and_then(crate::verify::rfc3339);
        let config = read(&config.checked_digest()?)?;
        let Some(new) = created(&config) else {
            return Err(refuse("the image config has no valid `created` time to compare".into()));
        };
        let name = self.name.as_str();
        let repo = crate::reference::repository_of(&self.summary.reference);
        let same = |e: &Descriptor| {
            !crate::layout::is_signature(e)
                && e.annotation(REF_NAME) == Some(name)
                && e.annotation(CONTAINERD_NAME).and_then(crate::reference::repository_of) == repo
        };
        let Some(old) = self.layout.entries()?.into_iter().rev().find(same) else {
            return Ok(());
        };
        // The platform being installed, as its config says.
        let field = |k: &str| config.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let platform = match (field("os"), field("architecture")) {
            (Some(os), Some(architecture)) => Platform {
                os,
                architecture,
                variant: field("variant"),
                ..Platform::default()
            },
            _ => self.opts.platform.clone(),
        };
        let installed = format!("the image OUTDIR holds as {name}");
        let was = self.config_of(&old, &platform).and_then(|d| read(&d)).map_err(|e| {
            refuse(format!(
                "cannot read the config of {installed} to compare: {}",
                e.message
            ))
        })?;
        let Some(was) = created(&was) else {
            return Err(refuse(format!(
                "the config of {installed} has no valid `created` time to compare"
            ))
            .hint("pull without --no-downgrade once to replace it with an image that has one"));
        };
        if new < was {
            return Err(refuse(format!(
                "this image is older than {installed} (its config was created earlier)"
            ))
            .hint("a mirror or registry is serving an older image under this tag; nothing was installed"));
        }
        Ok(())
    }

    /// The config digest of `entry` for `platform` (through its indexes).
    fn config_of(&self, entry: &Descriptor, platform: &Platform) -> Result<Digest> {
        let mut node = entry.clone();
        for _ in 0..=MAX_INDEX_DEPTH {
            let bytes = self
                .layout
                .read_small_blob(&node.checked_digest()?, manifest::MAX_MANIFEST_BYTES)?;
            node = match manifest::parse(&bytes, Some(&node.media_type))?.1 {
                Manifest::Image(m) => return m.config.checked_digest(),
                Manifest::Index(i) => manifest::select_platform(&i.manifests, platform)?.clone(),
            };
        }
        Err(Error::integrity(format!(
            "indexes nest more than {MAX_INDEX_DEPTH} deep"
        )))
    }

    /// Before anything is downloaded: check each blob descriptor against
    /// what OUTDIR holds (a size that disagrees with a blob there refuses
    /// the manifest), and refuse when the blobs still missing cannot fit on
    /// the disk (with `--discard-layers` only the config counts: room for
    /// each layer is checked as it comes).
    fn check_blobs(&self, m: &ImageManifest, reference: &str) -> Result<()> {
        let mut need = 0u64;
        for (i, d) in std::iter::once(&m.config).chain(&m.layers).enumerate() {
            if d.is_foreign() && d.urls.as_ref().is_some_and(|u| !u.is_empty()) {
                continue;
            }
            let (digest, size) = (d.checked_digest()?, d.checked_size()?);
            let have = self.layout.has_blob(&digest, size, false).map_err(|e| {
                let what = if i == 0 {
                    "config".to_string()
                } else {
                    format!("layer {i}")
                };
                e.context(format!("manifest {reference}, {what}"))
            })?;
            if !have && (i == 0 || !(self.opts.discard_layers || self.partial(d))) {
                need = need.saturating_add(size.saturating_sub(self.layout.partial_len(&digest)));
            }
        }
        let Some(free) = self.layout.free_bytes() else {
            return Ok(());
        };
        if need > free {
            return Err(Error::new(
                crate::error::Kind::Storage,
                format!(
                    "this image needs {} more on disk but only {} is free at {}",
                    human(need),
                    human(free),
                    self.layout.root().display()
                ),
            )
            .hint("free some space or pull into another directory; nothing was downloaded"));
        }
        Ok(())
    }

    /// Fetch one blob into `blobs/` unless it is already there.
    fn fetch_blob(&mut self, desc: &Descriptor) -> Result<()> {
        let digest = desc.checked_digest()?;
        let size = desc.checked_size()?;
        if desc.is_foreign() && desc.urls.as_ref().is_some_and(|u| !u.is_empty()) {
            self.progress.note(format!(
                "skipping non-distributable layer {} ({}): consumers fetch it from its URLs",
                digest.short(),
                human(size)
            ));
            self.record(desc, &digest, size, 0, "skipped", None);
            return Ok(());
        }
        if self.summary.blobs.iter().any(|b| b.digest == digest.to_string()) {
            return Ok(()); // the same blob twice in one pull
        }
        if self.layout.has_blob(&digest, size, self.opts.verify)? {
            self.record(desc, &digest, size, 0, "present", None);
            self.advance(size);
            return Ok(());
        }
        let mut bp = self
            .progress
            .blob(format!("{} {}", digest.short(), kind_of(&desc.media_type)), size);
        if let Some(img) = self.image {
            bp = bp.in_image(img);
        }
        let part = self.layout.partial_path(&digest);
        let (downloaded, source) = self.sources.download_blob(&digest, size, &part, &mut bp)?;
        self.layout.commit_partial(&digest)?;
        bp.finish(downloaded);
        self.summary.count_bytes(downloaded, 0);
        self.record(desc, &digest, size, downloaded, "downloaded", Some(source));
        self.advance(size);
        Ok(())
    }

    /// A blob of the image is done: the next one's line counts it.
    fn advance(&mut self, size: u64) {
        if let Some(img) = &mut self.image {
            img.done_before = img.done_before.saturating_add(size);
        }
    }

    fn record(
        &mut self,
        desc: &Descriptor,
        digest: &Digest,
        size: u64,
        downloaded: u64,
        status: &'static str,
        source: Option<String>,
    ) {
        self.summary.blobs.push(ContentSummary {
            digest: digest.to_string(),
            media_type: desc.media_type.clone(),
            size,
            downloaded,
            status,
            source,
            #[cfg(feature = "delta")]
            delta: None,
        });
    }
}

/// Download one blob into `layout` unless it is there (verified, fsynced,
/// renamed into `blobs/`): what `--discard-layers` calls for each layer
/// just before unpacking it. Returns the bytes fetched and the host they
/// came from (none when it was there).
pub fn fetch_one(
    sources: &mut Sources,
    layout: &Layout,
    progress: Progress,
    desc: &Descriptor,
) -> Result<(u64, Option<String>)> {
    let (digest, size) = (desc.checked_digest()?, desc.checked_size()?);
    if layout.has_blob(&digest, size, false)? {
        return Ok((0, None));
    }
    if let Some(free) = layout.free_bytes() {
        let need = size.saturating_sub(layout.partial_len(&digest));
        if need > free {
            return Err(Error::new(
                crate::error::Kind::Storage,
                format!(
                    "layer {} needs {} more on disk but only {} is free",
                    digest.short(),
                    human(need),
                    human(free)
                ),
            ));
        }
    }
    let mut bp = progress.blob(format!("{} {}", digest.short(), kind_of(&desc.media_type)), size);
    let (downloaded, source) = sources.download_blob(&digest, size, &layout.partial_path(&digest), &mut bp)?;
    layout.commit_partial(&digest)?;
    bp.finish(downloaded);
    Ok((downloaded, Some(source)))
}

/// A layer the unpack may fetch partially (modern zstd:chunked annotations).
#[cfg(feature = "delta")]
fn may_be_partial(layer: &Descriptor) -> bool {
    crate::delta::position::of(layer).is_some()
}

/// Check every digest and size a manifest names before fetching any of
/// them, so a hostile manifest fails before it costs a download.
fn validate_descriptors(m: &Manifest) -> Result<()> {
    let all: Vec<&Descriptor> = match m {
        Manifest::Index(i) => i.manifests.iter().collect(),
        Manifest::Image(im) => std::iter::once(&im.config).chain(&im.layers).collect(),
    };
    for d in all {
        d.checked_digest()?;
        d.checked_size()?;
    }
    Ok(())
}

/// A word for progress lines: config, layer, or the media type itself.
fn kind_of(media_type: &str) -> &str {
    if media_type.contains("config") {
        "config"
    } else if media_type.contains("layer") || media_type.contains("rootfs") {
        "layer"
    } else {
        media_type
    }
}

/// Say (one line) when the entry `name` about to be replaced is of another
/// repository, or of another shape (an index of every platform for one
/// platform's image, or the reverse): the pull asked for neither.
fn note_replaced(
    layout: &Layout,
    new: &Descriptor,
    name: &str,
    reference: &Reference,
    progress: Progress,
) -> Result<()> {
    let Some(old) = layout.entry_named(name)? else {
        return Ok(());
    };
    let old_ref = old
        .annotation(CONTAINERD_NAME)
        .unwrap_or("an image of no recorded name");
    let repo = |r: &str| Reference::parse(r).ok().map(|r| (r.registry, r.repository));
    let is_index = |d: &Descriptor| d.media_type == manifest::OCI_INDEX || d.media_type == manifest::DOCKER_LIST;
    let shape = |d: &Descriptor| match is_index(d) && d.platform.is_none() {
        true => "every platform",
        false => "one platform",
    };
    let other_repo = repo(old_ref) != repo(&reference.to_string());
    let other_shape = shape(&old) != shape(new);
    if other_repo || other_shape {
        progress.warn(format!(
            "{} in {} was {} ({}); it now names {} ({})",
            crate::error::Quoted(name),
            layout.root().display(),
            crate::error::Clean(old_ref),
            shape(&old),
            reference,
            shape(new)
        ));
    }
    Ok(())
}

/// The `org.opencontainers.image.ref.name` of a pulled image: its tag, or for
/// a pull by digest alone `<algorithm>_<hex>`. That fits the image-spec's
/// ref.name grammar (no `:`), and cannot be mistaken for cosign's tags
/// (`sha256-<hex>`, `sha256-<hex>.sig`), so `OUTDIR:NAME` can address it.
pub fn ref_name(reference: &Reference) -> String {
    match (&reference.tag, &reference.digest) {
        (Some(tag), _) => tag.clone(),
        (None, Some(d)) => d.to_string().replacen(':', "_", 1),
        (None, None) => "latest".to_string(),
    }
}

//! Unpacking an image from an OCI layout into a root filesystem: the layers
//! of the chosen platform in order, with the OCI image-spec's whiteouts and
//! opaque directories, each layer checked against the config's `diff_ids`
//! while it streams through.
//!
//! - this file: finding the image in the layout, reading and checking
//!   blobs, decompressing layers (gzip, zstd), the layer loop;
//! - [`apply`]: what each tar entry does to the tree;
//! - [`dirfd`]: the directory handles every change goes through.
//!
//! Safety: an entry is placed by walking ROOTFS one path component at a
//! time with `O_NOFOLLOW` handles and changed with `*at` calls on its
//! parent's handle, so a layer that plants `a -> /etc` cannot write
//! `a/passwd` to the host. Absolute paths and `..` are refused, hard links
//! must point inside ROOTFS, and a layer may not expand beyond a fixed
//! ratio of its compressed size.

mod apply;
pub(crate) mod dirfd;
mod gunzip;
pub use dirfd::{Dir, Found};

use crate::digest::{Digest, Hasher};
use crate::error::{Error, Kind as ErrorKind, Quoted, Result};
use crate::layout::Layout;
use crate::manifest::{self, Descriptor, ImageManifest, Manifest, Platform};
use crate::progress::{human, Progress};
use apply::Applier;
pub use apply::Keep;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// A layer may expand to this many times its compressed size (plus
/// [`EXPANSION_SLACK`]); gzip's best ratio is about 1032:1.
const MAX_EXPANSION: u64 = 1100;
const EXPANSION_SLACK: u64 = 64 * 1024 * 1024;
/// The largest zstd window we accept: what the default compression levels
/// use, with room; keeps decoding memory bounded.
const MAX_ZSTD_WINDOW: u64 = 32 * 1024 * 1024;
/// Image configs larger than this are refused.
const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// What an unpack did.
#[derive(Debug, Default)]
pub struct Summary {
    pub layers: usize,
    pub entries: u64,
    /// Uncompressed bytes read from the layers.
    pub bytes: u64,
    /// The last layer's `./` entry: mode, uid, gid, mtime.
    pub root_entry: Option<(u32, u64, u64, i64)>,
}

/// The image an OCI layout holds under `refname` (or its only image), for
/// `platform` when it is an index.
pub struct Image {
    /// The digest of the image manifest, and the name the layout gives it.
    pub digest: String,
    pub name: String,
    /// The digest its tag resolved to, when that was an index (see [`crate::verify::RESOLVED`]).
    pub resolved: Option<String>,
    /// Its entry says the layers were removed after unpacking.
    pub layers_discarded: bool,
    /// The layers its entry says were obtained partially (no blob kept).
    #[cfg(feature = "delta")]
    pub layers_partial: Vec<Digest>,
    pub manifest: ImageManifest,
    pub config_digest: Digest,
    pub config: Vec<u8>,
}

/// Which image of a layout.
pub enum Select<'a> {
    /// The one whose `org.opencontainers.image.ref.name` is this.
    Name(&'a str),
    /// The one index.json points at with this digest.
    Digest(&'a str),
    /// The only one there is.
    Only,
}

/// Find an image in a layout; an index is resolved to `platform`.
pub fn find_image(layout: &Layout, select: Select, platform: &Platform) -> Result<Image> {
    // Parsed straight into the typed index: going through the layout's
    // serde_json::Value costs 12 KB of binary for the same checks.
    let index_path = layout.root().join("index.json");
    let index = crate::layout::read_no_follow(&index_path)
        .map_err(|e| crate::layout::planted_or(&index_path, e, "cannot read"))?;
    let index: manifest::Index = serde_json::from_slice(&index).map_err(|e| {
        Error::new(
            ErrorKind::Storage,
            format!("{} is not a valid image index: {e}", index_path.display()),
        )
    })?;
    let name_of = |d: &Descriptor| d.annotation(crate::layout::REF_NAME).unwrap_or_default().to_string();
    // Signatures stored beside images are not images.
    let images: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| !crate::layout::is_signature(d))
        .collect();
    let names = || images.iter().map(|d| name_of(d)).collect::<Vec<_>>().join(", ");
    let entry = match select {
        Select::Name(r) => *images.iter().find(|d| name_of(d) == r).ok_or_else(|| {
            Error::not_found(format!("no image named {} in {}", Quoted(r), layout.root().display()))
                .hint(format!("the layout has: {}", names()))
        })?,
        Select::Digest(d) => *images
            .iter()
            .rev()
            .find(|e| e.digest == d)
            .ok_or_else(|| Error::not_found(format!("index.json does not name {d}")))?,
        Select::Only => match images.as_slice() {
            [one] => *one,
            [] => return Err(Error::not_found(format!("{} holds no image", layout.root().display()))),
            many => {
                return Err(Error::usage(format!(
                    "{} holds {} images; say which",
                    layout.root().display(),
                    many.len()
                ))
                .hint(format!("write OUTDIR:NAME with one of: {}", names())))
            }
        },
    };
    let name = entry
        .annotation(crate::layout::CONTAINERD_NAME)
        .or_else(|| entry.annotation(crate::layout::REF_NAME))
        .unwrap_or_default()
        .to_string();
    let resolved = entry.annotation(crate::verify::RESOLVED).map(str::to_string);
    let layers_discarded = entry.annotation(crate::layout::LAYERS_DISCARDED) == Some("true");
    let mut desc = (*entry).clone();
    for _ in 0..4 {
        let bytes = read_blob(layout, &desc, manifest::MAX_MANIFEST_BYTES)?;
        let (_, m) = manifest::parse(&bytes, Some(&desc.media_type))?;
        match m {
            Manifest::Image(m) => {
                let config_digest = m.config.checked_digest()?;
                let config = read_blob(layout, &m.config, MAX_CONFIG_BYTES)?;
                return Ok(Image {
                    digest: desc.digest.clone(),
                    name,
                    resolved,
                    layers_discarded,
                    #[cfg(feature = "delta")]
                    layers_partial: crate::layout::partial_layers(entry),
                    manifest: *m,
                    config_digest,
                    config,
                });
            }
            Manifest::Index(idx) => desc = manifest::select_platform(&idx.manifests, platform)?.clone(),
        }
    }
    Err(Error::integrity("indexes nest too deep"))
}

/// Read a small blob (manifest, config) whole, verified against its descriptor.
fn read_blob(layout: &Layout, desc: &Descriptor, max: u64) -> Result<Vec<u8>> {
    let (digest, size) = (desc.checked_digest()?, desc.checked_size()?);
    if size > max {
        return Err(Error::integrity(format!(
            "{digest} is larger than the {} limit",
            human(max)
        )));
    }
    let path = layout.blob_path(&digest);
    let mut bytes = Vec::new();
    layout
        .open_blob(&digest)
        .and_then(|f| f.take(max.saturating_add(1)).read_to_end(&mut bytes))
        .map_err(|e| missing_blob(&path, e))?;
    if bytes.len() as u64 != size || Digest::of(digest.algorithm(), &bytes) != digest {
        return Err(
            Error::integrity(format!("{} does not match its digest", path.display()))
                .hint("pull the image again with --verify"),
        );
    }
    Ok(bytes)
}

fn missing_blob(path: &Path, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        Error::not_found(format!("{} is missing from the layout", path.display()))
            .hint("pull the image into this OUTDIR again")
    } else {
        crate::layout::planted_or(path, e, "cannot read")
    }
}

/// Where each layer's bytes come from, around the layer loop of
/// [`unpack_with`]: the blob in the layout (downloaded just before when
/// needed), or a partial pull's rebuilt tar.
pub trait Layers {
    /// Before layer `i` is read: download its blob, or hand back its
    /// uncompressed tar (checked against the diff_id like any layer).
    fn before(&mut self, i: usize, layer: &Descriptor) -> Result<Option<Box<dyn Read + '_>>>;
    /// Layer `i` is applied (from the tar [`Layers::before`] gave, when `rebuilt`).
    fn after(&mut self, i: usize, layer: &Descriptor, rebuilt: bool) -> Result<()>;
    /// Applying the rebuilt tar of layer `i` failed with `e`.
    fn failed(&mut self, _i: usize, _layer: &Descriptor, _e: &Error) {}
}

/// The blobs of the layout, nothing else.
impl Layers for () {
    fn before(&mut self, _: usize, _: &Descriptor) -> Result<Option<Box<dyn Read + '_>>> {
        Ok(None)
    }
    fn after(&mut self, _: usize, _: &Descriptor, _: bool) -> Result<()> {
        Ok(())
    }
}

/// Apply the image's layers into `rootfs` (see [`prepare_rootfs`]).
pub fn unpack(layout: &Layout, image: &Image, rootfs: &Path, progress: Progress, keep: &Keep) -> Result<Summary> {
    unpack_with(layout, image, rootfs, progress, keep, &mut ())
}

/// [`unpack`], with the layers' bytes from `layers`: `--discard-layers`
/// downloads a layer just before it is applied and removes it just after,
/// a partial pull rebuilds its tar from the chunks it fetched.
pub fn unpack_with(
    layout: &Layout,
    image: &Image,
    rootfs: &Path,
    progress: Progress,
    keep: &Keep,
    layers_from: &mut dyn Layers,
) -> Result<Summary> {
    #[derive(serde::Deserialize)]
    struct Config {
        rootfs: RootFs,
    }
    #[derive(serde::Deserialize)]
    struct RootFs {
        diff_ids: Vec<String>,
    }
    let config: Config = serde_json::from_slice(&image.config)
        .map_err(|e| Error::integrity(format!("the image config has no usable rootfs.diff_ids: {e}")))?;
    let layers = &image.manifest.layers;
    if config.rootfs.diff_ids.len() != layers.len() {
        return Err(Error::integrity(format!(
            "the image has {} layers but its config lists {} diff_ids",
            layers.len(),
            config.rootfs.diff_ids.len()
        )));
    }
    let mut applier = Applier::new(rootfs, progress, keep)?;
    let mut summary = Summary::default();
    for (i, (layer, diff_id)) in layers.iter().zip(&config.rootfs.diff_ids).enumerate() {
        let diff_id = Digest::parse(diff_id).map_err(|e| e.context(format!("diff_id of layer {}", i + 1)))?;
        let limit = layer
            .checked_size()?
            .saturating_mul(MAX_EXPANSION)
            .saturating_add(EXPANSION_SLACK);
        let rebuilt = layers_from.before(i, layer)?.map(|tar| {
            apply_uncompressed(&mut applier, tar, diff_id.algorithm(), limit).and_then(|(e, b, got)| {
                match got == diff_id {
                    true => Ok((e, b, true)),
                    false => Err(Error::integrity(format!(
                        "the rebuilt layer hashes to {got}, but the config says {diff_id}"
                    ))),
                }
            })
        });
        let (entries, bytes, rebuilt) = match rebuilt {
            Some(r) => {
                if let Err(e) = &r {
                    layers_from.failed(i, layer, e);
                }
                r
            }
            None => apply_layer(&mut applier, layout, layer, &diff_id).map(|(e, b)| (e, b, false)),
        }
        .map_err(|e| e.context(format!("layer {} of {} ({})", i + 1, layers.len(), layer.digest)))?;
        layers_from.after(i, layer, rebuilt)?;
        summary.layers += 1;
        summary.entries += entries;
        summary.bytes += bytes;
        progress.note(format!(
            "unpacked layer {}/{}: {entries} entries, {}",
            i + 1,
            layers.len(),
            human(bytes)
        ));
    }
    applier.finish()?;
    summary.root_entry = applier.root_entry;
    Ok(summary)
}

/// Apply plain tar streams as successive layers into `root` (no blobs, no
/// digests): what the property test and the unpack fuzz target drive.
pub fn apply_tar_layers(root: &Path, layers: &[&[u8]]) -> Result<()> {
    let mut applier = Applier::new(root, Progress::new(true), &Keep::default())?;
    for layer in layers {
        applier.tar_stream(*layer)?;
    }
    applier.finish()
}

/// Hash every layer blob against its digest before anything is extracted:
/// what an in-place unpack (no staging to throw away) needs. With
/// `partial`, a zstd:chunked layer the pull left to the partial path is
/// not there yet.
pub fn verify_layers(layout: &Layout, image: &Image, #[cfg(feature = "delta")] partial: bool) -> Result<()> {
    for layer in &image.manifest.layers {
        if layer.is_foreign() && layer.urls.as_ref().is_some_and(|u| !u.is_empty()) {
            continue;
        }
        let (digest, size) = (layer.checked_digest()?, layer.checked_size()?);
        #[cfg(feature = "delta")]
        if partial && layout.blob_size(&digest).is_none() && crate::delta::position::of(layer).is_some() {
            continue;
        }
        let path = layout.blob_path(&digest);
        let file = layout.open_blob(&digest).map_err(|e| missing_blob(&path, e))?;
        let (got, len) = crate::layout::hash_reader(file, digest.algorithm(), size.saturating_add(1))
            .map_err(|e| Error::storage(format!("cannot read {}", path.display()), &e))?;
        if got != digest || len != size {
            return Err(
                Error::integrity(format!("{} does not match its digest", path.display()))
                    .hint("pull the image again with --verify"),
            );
        }
    }
    Ok(())
}

/// A reader that hashes what passes through and refuses to go past a limit.
struct Hashing<R> {
    inner: R,
    hasher: Hasher,
    count: u64,
    limit: u64,
    /// What passing the limit means, for the error.
    over_limit: &'static str,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        if self.count > self.limit {
            return Err(std::io::Error::other(format!(
                "{} ({})",
                self.over_limit,
                human(self.limit)
            )));
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A zstd stream as RFC 8878 allows it: any number of data frames (pzstd,
/// `zstd -T`) and skippable frames (zstd:chunked keeps its metadata in
/// them), in any order. Skipped bytes still pass through the blob's hash.
pub(crate) struct ZstdFrames<'a> {
    /// Behind a trait object, so every caller shares one copy of this
    /// reader and of the ruzstd code under it (the partial updates read
    /// TOCs, tar-splits and frames from three kinds of source).
    source: Box<dyn BufRead + 'a>,
    frame: ruzstd::decoding::FrameDecoder,
    /// A data frame is being decoded.
    in_frame: bool,
}

impl<'a> ZstdFrames<'a> {
    pub(crate) fn new(source: impl BufRead + 'a) -> ZstdFrames<'a> {
        let mut frame = ruzstd::decoding::FrameDecoder::new();
        frame.set_max_window_size(MAX_ZSTD_WINDOW);
        ZstdFrames {
            source: Box::new(source),
            frame,
            in_frame: false,
        }
    }
}

impl Read for ZstdFrames<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
        use ruzstd::decoding::BlockDecodingStrategy;
        loop {
            if self.in_frame {
                while self.frame.can_collect() == 0 && !self.frame.is_finished() {
                    let source: &mut dyn Read = &mut *self.source;
                    self.frame
                        .decode_blocks(source, BlockDecodingStrategy::UptoBlocks(1))
                        .map_err(std::io::Error::other)?;
                }
                let n = self.frame.read(buf)?;
                if n > 0 || buf.is_empty() {
                    return Ok(n);
                }
                self.in_frame = false;
            }
            if self.source.fill_buf()?.is_empty() {
                return Ok(0);
            }
            let source: &mut dyn Read = &mut *self.source;
            match self.frame.reset(source) {
                Ok(()) => self.in_frame = true,
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame { length, .. })) => {
                    let want = u64::from(length);
                    let skipped = std::io::copy(&mut (&mut self.source).take(want), &mut std::io::sink())?;
                    if skipped < want {
                        return Err(std::io::Error::other("the layer ends inside a skippable zstd frame"));
                    }
                }
                Err(e) => return Err(std::io::Error::other(e)),
            }
        }
    }
}

/// The decompressed stream of a layer, by media type.
fn decompress<'a>(media_type: &str, blob: impl Read + 'a) -> Result<Box<dyn Read + 'a>> {
    let mt = media_type;
    let plain = mt.ends_with(".tar") || mt.ends_with("diff.tar");
    if plain {
        return Ok(Box::new(blob));
    }
    if mt.ends_with("+gzip") || mt.ends_with(".tar.gzip") {
        return Ok(Box::new(gunzip::MultiGunzip::new(BufReader::with_capacity(
            64 * 1024,
            blob,
        ))));
    }
    if mt.ends_with("+zstd") {
        return Ok(Box::new(ZstdFrames::new(BufReader::with_capacity(64 * 1024, blob))));
    }
    Err(Error::integrity(format!("unsupported layer media type {mt}"))
        .hint("minipull unpacks tar, tar+gzip and tar+zstd layers"))
}

/// Apply one layer; returns (entries, uncompressed bytes).
fn apply_layer(applier: &mut Applier, layout: &Layout, desc: &Descriptor, diff_id: &Digest) -> Result<(u64, u64)> {
    apply_blob(applier, layout, desc, &desc.media_type, Some(diff_id))
}

/// Apply one tar+gzip blob into `root`, checking the blob against its
/// digest (it has no diff_id): an ORAS directory layer for `extract`.
pub fn apply_gzip_blob(layout: &Layout, desc: &Descriptor, root: &Path, progress: Progress) -> Result<u64> {
    let mut applier = Applier::new(root, progress, &Keep::default())?;
    let (entries, _) = apply_blob(&mut applier, layout, desc, "+gzip", None)?;
    applier.finish()?;
    Ok(entries)
}

fn apply_blob(
    applier: &mut Applier,
    layout: &Layout,
    desc: &Descriptor,
    media_type: &str,
    diff_id: Option<&Digest>,
) -> Result<(u64, u64)> {
    if desc.is_foreign() && desc.urls.as_ref().is_some_and(|u| !u.is_empty()) {
        return Err(Error::not_found(
            "a non-distributable layer is not in the layout (it was not pulled)",
        ));
    }
    let (digest, size) = (desc.checked_digest()?, desc.checked_size()?);
    let path = layout.blob_path(&digest);
    let file = layout.open_blob(&digest).map_err(|e| missing_blob(&path, e))?;
    let mut blob = Hashing {
        inner: file,
        hasher: Hasher::new(digest.algorithm()),
        count: 0,
        limit: size,
        over_limit: "the layer blob is longer than its descriptor says",
    };
    let limit = size.saturating_mul(MAX_EXPANSION).saturating_add(EXPANSION_SLACK);
    let stream = decompress(media_type, &mut blob)?;
    let alg = diff_id.map_or(digest.algorithm(), Digest::algorithm);
    let (entries, bytes, got_diff) = apply_uncompressed(applier, stream, alg, limit)?;
    std::io::copy(&mut blob, &mut std::io::sink()).map_err(|e| Error::storage("cannot read the layer blob", &e))?;
    if blob.count != size || blob.hasher.finish() != digest {
        return Err(
            Error::integrity(format!("{} does not match its digest", path.display()))
                .hint("pull the image again with --verify"),
        );
    }
    match diff_id {
        Some(want) if got_diff != *want => Err(Error::integrity(format!(
            "the uncompressed layer hashes to {got_diff}, but the config says {want}"
        ))),
        _ => Ok((entries, bytes)),
    }
}

/// Apply an uncompressed layer stream, hashing it for the diff_id (the
/// caller compares): the one path a whole download and a partial pull's
/// rebuilt tar both go through. Returns (entries, bytes, the stream's digest).
fn apply_uncompressed(
    applier: &mut Applier,
    stream: impl Read,
    alg: crate::digest::Algorithm,
    limit: u64,
) -> Result<(u64, u64, Digest)> {
    let mut unpacked = Hashing {
        inner: stream,
        hasher: Hasher::new(alg),
        count: 0,
        limit,
        over_limit: "the layer expands more than 1100 times its compressed size plus 64 MiB; \
                     refusing it as a decompression bomb",
    };
    let entries = applier.tar_stream(&mut unpacked)?;
    // What follows the archive (padding) belongs to the diff_id too.
    std::io::copy(&mut unpacked, &mut std::io::sink())
        .map_err(|e| Error::integrity(format!("cannot read the layer: {e}")))?;
    Ok((entries, unpacked.count, unpacked.hasher.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::MetadataExt;

    /// A tiny deterministic PRNG (xorshift64*): no dependency for tests.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
            from[(self.next() % from.len() as u64) as usize]
        }
    }

    fn tar_entry(out: &mut Vec<u8>, path: &str, kind: u8, link: &str, mode: u32, data: &[u8]) {
        let mut h = [0u8; 512];
        let path = &path.as_bytes()[..path.len().min(99)];
        let link = &link.as_bytes()[..link.len().min(99)];
        h[..path.len()].copy_from_slice(path);
        h[100..107].copy_from_slice(format!("{mode:07o}").as_bytes());
        h[108..115].copy_from_slice(b"0000000");
        h[116..123].copy_from_slice(b"0000000");
        h[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
        h[136..147].copy_from_slice(b"00000000000");
        h[156] = kind;
        h[157..157 + link.len()].copy_from_slice(link);
        h[257..263].copy_from_slice(b"ustar\0");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }

    /// Everything under `dir`: path, type, mode, mtime, content or target.
    fn snapshot(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let m = fs::symlink_metadata(&d).unwrap();
            let what = if m.file_type().is_symlink() {
                format!("-> {}", fs::read_link(&d).unwrap().display())
            } else if m.is_file() {
                format!("{:?}", fs::read(&d).unwrap())
            } else {
                String::new()
            };
            out.push(format!("{} {:o} {} {what}", d.display(), m.mode(), m.mtime()));
            if m.is_dir() {
                for e in fs::read_dir(&d).unwrap() {
                    stack.push(e.unwrap().path());
                }
            }
        }
        out.sort();
        out
    }

    /// Property: whatever a stream of random entries does (symlinks to the
    /// outside, `..`, absolute paths, hard links out, whiteouts, directories
    /// swapped for links between layers), nothing outside ROOTFS changes.
    #[test]
    fn random_layers_never_touch_anything_outside_rootfs() {
        let base = std::env::temp_dir().join(format!("minipull-prop-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let outside = base.join("outside");
        fs::create_dir_all(outside.join("dir/sub")).unwrap();
        fs::write(outside.join("canary"), b"canary").unwrap();
        fs::write(outside.join("dir/sub/file"), b"inner").unwrap();
        let abs = outside.to_str().unwrap().to_string();
        let before = snapshot(&outside);
        let names = [
            "a",
            "b",
            "c",
            "a",
            "b",
            ".",
            "dir",
            ".wh.a",
            ".wh.b",
            ".wh..wh..opq",
            "sub",
            "a",
            "b",
            "..",
        ];
        let abs_file = format!("{abs}/canary");
        let abs_dir = format!("{abs}/dir");
        let targets = [
            "a",
            "b",
            "../outside",
            "../../outside/canary",
            "/",
            &abs,
            &abs_file,
            &abs_dir,
            "a/b",
            "..",
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let (mut refused, mut applied) = (0, 0);
        for round in 0..300 {
            let root = base.join(format!("rootfs-{round}"));
            fs::create_dir_all(&root).unwrap();
            let mut layers = Vec::new();
            for _ in 0..1 + rng.next() % 3 {
                let mut t = Vec::new();
                for _ in 0..1 + rng.next() % 8 {
                    let depth = 1 + rng.next() % 2;
                    let path = (0..depth).map(|_| rng.pick(&names)).collect::<Vec<_>>().join("/");
                    let path = if rng.next().is_multiple_of(40) {
                        format!("{abs}/{path}")
                    } else {
                        path
                    };
                    let mode = [0o755, 0o7777, 0o000, 0o644][(rng.next() % 4) as usize];
                    match rng.next() % 5 {
                        0 => tar_entry(&mut t, &path, b'5', "", mode, b""),
                        1 => tar_entry(&mut t, &path, b'0', "", mode, b"planted"),
                        2 => tar_entry(&mut t, &path, b'2', rng.pick(&targets), 0o777, b""),
                        3 => tar_entry(&mut t, &path, b'1', rng.pick(&targets), 0o644, b""),
                        _ => tar_entry(&mut t, &path, b'6', "", mode, b""),
                    }
                }
                t.extend_from_slice(&[0u8; 1024]);
                layers.push(t);
            }
            let refs: Vec<&[u8]> = layers.iter().map(|l| l.as_slice()).collect();
            match apply_tar_layers(&root, &refs) {
                Ok(()) => applied += 1,
                Err(_) => refused += 1,
            }
            assert_eq!(snapshot(&outside), before, "round {round} changed the outside");
            // Modes like 0000 must not stop the cleanup.
            let _ = std::process::Command::new("chmod")
                .arg("-R")
                .arg("u+rwx")
                .arg(&root)
                .status();
            let _ = fs::remove_dir_all(&root);
        }
        assert!(
            applied > 30 && refused > 30,
            "both outcomes exercised: {applied} applied, {refused} refused"
        );
        fs::remove_dir_all(&base).unwrap();
    }

    /// A skippable zstd frame (RFC 8878 3.1.2) holding `payload`.
    fn skippable(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x53, 0x2a, 0x4d, 0x18];
        f.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// A zstd frame of raw blocks (no compression), single segment.
    fn raw_frame(data: &[u8]) -> Vec<u8> {
        assert!(data.len() < 1 << 16);
        // Magic, then the descriptor: single segment, 2-byte content size.
        let mut f = vec![0x28, 0xb5, 0x2f, 0xfd, 0b0110_0000];
        f.extend_from_slice(&((data.len() - 256) as u16).to_le_bytes());
        // One last raw block: header = last(1) | type raw(0) << 1 | size << 3.
        let h = 1 | ((data.len() as u32) << 3);
        f.extend_from_slice(&h.to_le_bytes()[..3]);
        f.extend_from_slice(data);
        f
    }

    #[test]
    fn zstd_skippable_frames_are_skipped_anywhere() {
        let (a, b) = (vec![b'a'; 300], vec![b'b'; 700]);
        let stream = [
            skippable(b"chunked metadata"),
            raw_frame(&a),
            skippable(&[0u8; 1000]),
            raw_frame(&b),
            skippable(b""),
        ]
        .concat();
        let mut out = Vec::new();
        decompress("application/vnd.oci.image.layer.v1.tar+zstd", &stream[..])
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, [a, b].concat());
        // Cut inside a skippable frame: an error, not a silent end.
        let cut = &stream[..10];
        let mut z = decompress("application/vnd.oci.image.layer.v1.tar+zstd", cut).unwrap();
        assert!(z.read_to_end(&mut Vec::new()).is_err());
    }

    #[test]
    fn media_types() {
        let empty: &[u8] = &[];
        for ok in [
            "application/vnd.oci.image.layer.v1.tar",
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        ] {
            assert!(decompress(ok, empty).is_ok(), "{ok}");
        }
        let e = decompress("application/vnd.oci.image.layer.v1.tar+lz4", empty)
            .err()
            .unwrap();
        assert!(e.message.contains("unsupported layer media type"));
    }
}

#[cfg(all(test, feature = "delta"))]
mod partial_tests {
    use super::*;
    use crate::delta::plan::{self, Prev};
    use crate::delta::rebuild::Rebuild;
    use crate::delta::testwriter::{dir, file, symlink, write, Entry};
    use crate::delta::{position, root::Root, Metadata};
    use std::fs;
    use std::os::unix::fs::MetadataExt;

    fn image(v2: bool) -> Vec<Entry> {
        let mut x = 99u64;
        let mut big: Vec<u8> = (0..500_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        if v2 {
            big[250_000..250_064].fill(7);
        }
        let mut e = vec![dir("d/"), file("d/big", big), symlink("d/l", "big")];
        e.push(file("d/z", [vec![1u8; 100], vec![0u8; 5000]].concat()));
        e
    }

    /// Every entry under `dir`: path, mode, size, mtime, owner, content or link target.
    fn tree(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let m = fs::symlink_metadata(&d).unwrap();
            let what = if m.file_type().is_symlink() {
                format!("-> {}", fs::read_link(&d).unwrap().display())
            } else if m.is_file() {
                crate::digest::Digest::sha256_of(&fs::read(&d).unwrap()).to_string()
            } else {
                String::new()
            };
            let rel = d.strip_prefix(dir).unwrap().display().to_string();
            // The image has no `./` entry: the top's time is the unpack's own.
            let mtime = if rel.is_empty() { 0 } else { m.mtime() };
            out.push(format!("{rel} {:o} {}:{} {mtime} {what}", m.mode(), m.uid(), m.gid(),));
            if m.is_dir() {
                for e in fs::read_dir(&d).unwrap() {
                    stack.push(e.unwrap().path());
                }
            }
        }
        out.sort();
        out
    }

    /// The oracle: a partial pull's rebuilt tar, through the same applier
    /// and diff_id hash, gives the same tree as the whole layer.
    #[test]
    fn rebuilt_tar_unpacks_to_the_same_tree_as_the_whole_layer() {
        let base = std::env::temp_dir().join(format!("minipull-partial-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let (v1, v2) = (
            write(&image(false), |_| {}, |_| {}),
            write(&image(true), |_| {}, |_| {}),
        );
        let diff_id = Digest::parse(&v2.diff_id()).unwrap();
        let keep = Keep::default();
        let apply = |root: &Path, tar: Box<dyn Read + '_>| {
            fs::create_dir_all(root).unwrap();
            let mut a = Applier::new(root, Progress::new(true), &keep).unwrap();
            let (_, _, got) = apply_uncompressed(&mut a, tar, diff_id.algorithm(), u64::MAX).unwrap();
            a.finish().unwrap();
            got
        };
        // The previous root, unpacked whole from v1.
        let old = base.join("old");
        fs::create_dir_all(&old).unwrap();
        let mut a = Applier::new(&old, Progress::new(true), &keep).unwrap();
        a.tar_stream(&v1.tar[..]).unwrap();
        a.finish().unwrap();
        // Whole v2.
        let whole = base.join("whole");
        let got = apply(&whole, Box::new(ZstdFrames::new(&v2.blob[..])));
        assert_eq!(got, diff_id);
        // Partial v2 from the old root and v1's TOC.
        let meta = |l: &crate::delta::testwriter::Layer| {
            let pos = position::of(&l.descriptor()).unwrap();
            Metadata::open(&l.blob[pos.toc.offset as usize..], &pos).unwrap()
        };
        let prev = Prev::new(meta(&v1).toc);
        let mut m = meta(&v2);
        let mut local = Root::open(&old).unwrap();
        let p = plan::make(&mut m.toc, Some(&prev), &mut local, plan::DEFAULT_GAP);
        assert!(p.fetch < v2.blob.len() as u64 / 2, "{p:?}");
        let remote: Vec<u8> = p
            .ranges
            .iter()
            .flat_map(|&(s, e)| v2.blob[s as usize..e as usize].to_vec())
            .collect();
        let (toc, lines) = m.into_parts();
        let partial = base.join("partial");
        let got = apply(
            &partial,
            Box::new(Rebuild::new(lines, toc, p.ranges, Some(prev), local, &remote[..])),
        );
        assert_eq!(got, diff_id);
        assert_eq!(tree(&partial), tree(&whole));
        let _ = fs::remove_dir_all(&base);
    }
}

//! Unpacking an image from an OCI layout into a root filesystem: the layers
//! of the chosen platform in order, with the OCI image-spec's whiteouts and
//! opaque directories, each layer checked against the config's `diff_ids`
//! while it streams through.
//!
//! Safety: an entry is placed by walking ROOTFS one path component at a
//! time and never through a symbolic link, so a layer that plants
//! `a -> /etc` cannot write `a/passwd` to the host. Absolute paths and `..`
//! are refused, hard links must point inside ROOTFS, files are created with
//! `O_NOFOLLOW`, and a layer may not expand beyond a fixed ratio of its
//! compressed size.

use crate::digest::{Digest, Hasher};
use crate::error::{Error, Kind as ErrorKind, Quoted, Result};
use crate::layout::Layout;
use crate::manifest::{self, Descriptor, ImageManifest, Manifest, Platform};
use crate::progress::{human, Progress};
use crate::tar::{self, Header, Kind};
use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::fs;
use std::hash::{BuildHasher, RandomState};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A layer may expand to this many times its compressed size (plus
/// [`EXPANSION_SLACK`]); gzip's best ratio is about 1032:1.
const MAX_EXPANSION: u64 = 1100;
const EXPANSION_SLACK: u64 = 64 * 1024 * 1024;
/// The largest zstd window we accept: what the default compression levels
/// use, with room; keeps decoding memory bounded.
const MAX_ZSTD_WINDOW: u64 = 32 * 1024 * 1024;
/// Image configs larger than this are refused.
const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// What an unpack did.
#[derive(Debug, Default)]
pub struct Summary {
    pub layers: usize,
    pub entries: u64,
    /// Uncompressed bytes read from the layers.
    pub bytes: u64,
}

/// The image an OCI layout holds under `refname` (or its only image), for
/// `platform` when it is an index.
pub struct Image {
    /// The digest of the image manifest, and the name the layout gives it.
    pub digest: String,
    pub name: String,
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
    let index =
        fs::read(&index_path).map_err(|e| Error::storage(format!("cannot read {}", index_path.display()), &e))?;
    let index: manifest::Index = serde_json::from_slice(&index).map_err(|e| {
        Error::new(
            ErrorKind::Storage,
            format!("{} is not a valid image index: {e}", index_path.display()),
        )
    })?;
    let name_of = |d: &Descriptor| {
        d.annotations
            .as_ref()
            .and_then(|a| a.get(crate::layout::REF_NAME))
            .cloned()
            .unwrap_or_default()
    };
    let names = || index.manifests.iter().map(name_of).collect::<Vec<_>>().join(", ");
    let entry = match select {
        Select::Name(r) => index.manifests.iter().find(|d| name_of(d) == r).ok_or_else(|| {
            Error::not_found(format!("no image named {} in {}", Quoted(r), layout.root().display()))
                .hint(format!("the layout has: {}", names()))
        })?,
        Select::Digest(d) => index
            .manifests
            .iter()
            .rev()
            .find(|e| e.digest == d)
            .ok_or_else(|| Error::not_found(format!("index.json does not name {d}")))?,
        Select::Only => match index.manifests.as_slice() {
            [one] => one,
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
        .annotations
        .as_ref()
        .and_then(|a| {
            a.get(crate::layout::CONTAINERD_NAME)
                .or_else(|| a.get(crate::layout::REF_NAME))
        })
        .cloned()
        .unwrap_or_default();
    let mut desc = entry.clone();
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
    let bytes = fs::read(&path).map_err(|e| missing_blob(&path, &e))?;
    if bytes.len() as u64 != size || Digest::of(digest.algorithm(), &bytes) != digest {
        return Err(
            Error::integrity(format!("{} does not match its digest", path.display()))
                .hint("pull the image again with --verify"),
        );
    }
    Ok(bytes)
}

fn missing_blob(path: &Path, e: &std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        Error::not_found(format!("{} is missing from the layout", path.display()))
            .hint("pull the image into this OUTDIR again")
    } else {
        Error::storage(format!("cannot read {}", path.display()), e)
    }
}

/// Apply the image's layers into `rootfs` (see [`prepare_rootfs`]).
pub fn unpack(layout: &Layout, image: &Image, rootfs: &Path, progress: Progress, keep_setuid: bool) -> Result<Summary> {
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
    let mut applier = Applier::new(rootfs.to_path_buf(), progress, keep_setuid);
    let mut summary = Summary::default();
    for (i, (layer, diff_id)) in layers.iter().zip(&config.rootfs.diff_ids).enumerate() {
        let diff_id = Digest::parse(diff_id).map_err(|e| e.context(format!("diff_id of layer {}", i + 1)))?;
        let (entries, bytes) = applier
            .layer(layout, layer, &diff_id)
            .map_err(|e| e.context(format!("layer {} of {} ({})", i + 1, layers.len(), layer.digest)))?;
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
    Ok(summary)
}

/// Apply plain tar streams as successive layers into `root` (no blobs, no
/// digests): what the property test and the unpack fuzz target drive.
pub fn apply_tar_layers(root: &Path, layers: &[&[u8]]) -> Result<()> {
    let mut applier = Applier::new(root.to_path_buf(), Progress::new(true), false);
    for layer in layers {
        applier.tar_stream(*layer)?;
    }
    applier.finish()
}

/// Hash every layer blob against its digest before anything is extracted:
/// what an in-place unpack (no staging to throw away) needs.
pub fn verify_layers(layout: &Layout, image: &Image) -> Result<()> {
    for layer in &image.manifest.layers {
        if layer.is_foreign() && layer.urls.as_ref().is_some_and(|u| !u.is_empty()) {
            continue;
        }
        let (digest, size) = (layer.checked_digest()?, layer.checked_size()?);
        let path = layout.blob_path(&digest);
        let file = crate::layout::open_no_follow(&path).map_err(|e| missing_blob(&path, &e))?;
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

type Zstd<R> = ruzstd::decoding::StreamingDecoder<R, ruzstd::decoding::FrameDecoder>;

/// zstd streams may hold several frames (pzstd, `zstd -T`): decode them all.
struct ZstdFrames<R: BufRead> {
    decoder: Option<Zstd<R>>,
}

impl<R: BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let Some(d) = self.decoder.as_mut() else { return Ok(0) };
            let n = d.read(buf)?;
            if n > 0 || buf.is_empty() || d.get_mut().fill_buf()?.is_empty() {
                return Ok(n);
            }
            // A frame ended and more input follows: the next frame.
            let (source, frames) = self
                .decoder
                .take()
                .map(Zstd::into_parts)
                .ok_or_else(|| std::io::Error::other("no decoder"))?;
            self.decoder = Some(Zstd::new_with_decoder(source, frames).map_err(std::io::Error::other)?);
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
        return Ok(Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
            64 * 1024,
            blob,
        ))));
    }
    if mt.ends_with("+zstd") {
        let decoder = ruzstd::decoding::StreamingDecoder::new_with_max_window_size(
            BufReader::with_capacity(64 * 1024, blob),
            MAX_ZSTD_WINDOW,
        )
        .map_err(|e| Error::integrity(format!("not a zstd stream we can decode: {e}")))?;
        return Ok(Box::new(ZstdFrames { decoder: Some(decoder) }));
    }
    Err(Error::integrity(format!("unsupported layer media type {mt}"))
        .hint("minipull unpacks tar, tar+gzip and tar+zstd layers"))
}

/// Directory metadata deferred to the end of a layer is bounded: past this
/// many bytes of remembered paths, a directory gets its mode and time at
/// once (a later child may then move its mtime; said once).
const MAX_DEFERRED_BYTES: usize = 4 * 1024 * 1024;
/// One layer may hold at most this many entries: what it created is
/// remembered (8 bytes each) for its opaque markers.
const MAX_LAYER_ENTRIES: usize = 1_000_000;

/// Places entries under the root, remembering what the end must fix up.
struct Applier {
    root: PathBuf,
    progress: Progress,
    is_root: bool,
    keep_setuid: bool,
    /// Directories to give their mode and mtime at the end of the layer
    /// (children change both), each once, and the bytes their paths hold.
    dirs: HashMap<PathBuf, (u32, i64)>,
    dir_bytes: usize,
    /// Paths this layer created or declared (as keyed hashes, 8 bytes each):
    /// an opaque marker must not remove them.
    created: HashSet<u64>,
    hasher: RandomState,
    /// Not root: directories whose mode keeps their owner out (no u+rwx)
    /// get it only after the last layer, so later layers can still write.
    tight: Vec<(PathBuf, u32)>,
    noted_rootless: bool,
    noted_setuid: bool,
    noted_dirs: bool,
}

impl Applier {
    fn new(root: PathBuf, progress: Progress, keep_setuid: bool) -> Applier {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let is_root = unsafe { libc::geteuid() } == 0;
        Applier {
            root,
            progress,
            is_root,
            keep_setuid,
            dirs: HashMap::new(),
            dir_bytes: 0,
            created: HashSet::new(),
            hasher: RandomState::new(),
            tight: Vec::new(),
            noted_rootless: false,
            noted_setuid: false,
            noted_dirs: false,
        }
    }

    /// Remember that this layer put `p` there. The hash is keyed per run, so
    /// a layer cannot be crafted to collide with a path it wants kept.
    fn mark_created(&mut self, p: &Path) -> Result<()> {
        if self.created.len() >= MAX_LAYER_ENTRIES {
            return Err(Error::integrity(format!(
                "the layer has more than {MAX_LAYER_ENTRIES} entries; refusing it"
            )));
        }
        self.created.insert(self.hasher.hash_one(p));
        Ok(())
    }

    fn was_created(&self, p: &Path) -> bool {
        self.created.contains(&self.hasher.hash_one(p))
    }

    /// The mode to give an entry: setuid and setgid bits only when owners
    /// are applied too (as root), or when asked to keep them. Otherwise the
    /// unpacking user would own a setuid program anyone who can reach ROOTFS
    /// could run as them.
    fn mode(&mut self, mode: u32) -> u32 {
        let special = libc::S_ISUID | libc::S_ISGID;
        if self.is_root || self.keep_setuid || mode & special == 0 {
            return mode;
        }
        if !self.noted_setuid {
            self.noted_setuid = true;
            self.progress
                .note("not running as root: setuid/setgid bits are dropped (--keep-setuid keeps them)");
        }
        mode & !special
    }

    /// Apply one layer; returns (entries, uncompressed bytes).
    fn layer(&mut self, layout: &Layout, desc: &Descriptor, diff_id: &Digest) -> Result<(u64, u64)> {
        if desc.is_foreign() && desc.urls.as_ref().is_some_and(|u| !u.is_empty()) {
            return Err(Error::not_found(
                "a non-distributable layer is not in the layout (it was not pulled)",
            ));
        }
        let (digest, size) = (desc.checked_digest()?, desc.checked_size()?);
        let path = layout.blob_path(&digest);
        let file = fs::File::open(&path).map_err(|e| missing_blob(&path, &e))?;
        let mut blob = Hashing {
            inner: file,
            hasher: Hasher::new(digest.algorithm()),
            count: 0,
            limit: size,
            over_limit: "the layer blob is longer than its descriptor says",
        };
        let limit = size.saturating_mul(MAX_EXPANSION).saturating_add(EXPANSION_SLACK);
        let (entries, bytes, got_diff) = {
            let stream = decompress(&desc.media_type, &mut blob)?;
            let mut unpacked = Hashing {
                inner: stream,
                hasher: Hasher::new(diff_id.algorithm()),
                count: 0,
                limit,
                over_limit: "the layer expands more than 1100 times its compressed size plus 64 MiB; \
                             refusing it as a decompression bomb",
            };
            let entries = self.tar_stream(&mut unpacked)?;
            // What follows the archive (padding) belongs to the diff_id too.
            std::io::copy(&mut unpacked, &mut std::io::sink())
                .map_err(|e| Error::integrity(format!("cannot read the layer: {e}")))?;
            (entries, unpacked.count, unpacked.hasher.finish())
        };
        std::io::copy(&mut blob, &mut std::io::sink()).map_err(|e| Error::storage("cannot read the layer blob", &e))?;
        if blob.count != size || blob.hasher.finish() != digest {
            return Err(
                Error::integrity(format!("{} does not match its digest", path.display()))
                    .hint("pull the image again with --verify"),
            );
        }
        if got_diff != *diff_id {
            return Err(Error::integrity(format!(
                "the uncompressed layer hashes to {got_diff}, but the config says {diff_id}"
            )));
        }
        Ok((entries, bytes))
    }

    /// Apply one layer's tar stream; returns how many entries it held.
    fn tar_stream(&mut self, stream: impl Read) -> Result<u64> {
        self.created.clear();
        self.dirs.clear();
        self.dir_bytes = 0;
        let mut reader = tar::Reader::new(stream);
        let mut entries = 0u64;
        while let Some(h) = reader.next_header()? {
            self.entry(&h, &mut reader)
                .map_err(|e| e.context(format!("entry {}", Quoted(&h.path))))?;
            entries += 1;
        }
        self.finish_layer()?;
        Ok(entries)
    }

    fn entry<R: Read>(&mut self, h: &Header, data: &mut tar::Reader<R>) -> Result<()> {
        let comps = clean(&h.path)?;
        let Some((name, parents)) = comps.split_last() else {
            return Ok(()); // the root itself
        };
        if name == OPAQUE || name.starts_with(WHITEOUT) {
            // A whiteout hides something below; where there is nothing to
            // hide, it creates nothing either.
            let Some(dir) = self.existing_dir(parents)? else {
                return Ok(());
            };
            if name == OPAQUE {
                return self.opaque(&dir);
            }
            let hidden = &name[WHITEOUT.len()..];
            if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(Error::integrity("a whiteout with no name"));
            }
            return remove_any(&dir.join(hidden));
        }
        let dir = self.parent_dir(parents)?;
        let target = dir.join(name);
        match h.kind {
            Kind::Directory => {
                match fs::symlink_metadata(&target) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        remove_any(&target)?;
                        mkdir(&target)?;
                    }
                    Err(_) => mkdir(&target)?,
                }
                self.owner(&target, h)?;
                let mode = self.mode(h.mode);
                self.defer_dir(&target, mode, h.mtime)?;
            }
            Kind::File => {
                remove_any(&target)?;
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&target)
                    .map_err(|e| Error::storage(format!("cannot create {}", target.display()), &e))?;
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = data.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    f.write_all(&buf[..n])
                        .map_err(|e| Error::storage(format!("cannot write {}", target.display()), &e))?;
                }
                drop(f);
                self.owner(&target, h)?;
                let mode = self.mode(h.mode);
                set_mode(&target, mode)?;
                set_mtime(&target, h.mtime)?;
            }
            Kind::Symlink => {
                remove_any(&target)?;
                std::os::unix::fs::symlink(&h.link, &target)
                    .map_err(|e| Error::storage(format!("cannot create {}", target.display()), &e))?;
                self.owner(&target, h)?;
                set_mtime(&target, h.mtime)?;
            }
            Kind::HardLink => {
                let source = self.existing(&h.link)?;
                if source != target {
                    remove_any(&target)?;
                    fs::hard_link(&source, &target)
                        .map_err(|e| Error::storage(format!("cannot link {}", target.display()), &e))?;
                }
            }
            Kind::CharDevice | Kind::BlockDevice | Kind::Fifo => {
                if h.kind != Kind::Fifo && !self.is_root {
                    self.note_rootless();
                    return Ok(());
                }
                remove_any(&target)?;
                let kind = match h.kind {
                    Kind::CharDevice => libc::S_IFCHR,
                    Kind::BlockDevice => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                let dev = libc::makedev(h.dev_major, h.dev_minor);
                let mode = self.mode(h.mode);
                let c = c_path(&target)?;
                // SAFETY: c is a valid NUL-terminated path.
                if unsafe { libc::mknod(c.as_ptr(), kind | (mode & 0o7777) as libc::mode_t, dev) } != 0 {
                    let e = std::io::Error::last_os_error();
                    return Err(Error::storage(format!("cannot create {}", target.display()), &e));
                }
                self.owner(&target, h)?;
                set_mode(&target, mode)?;
                set_mtime(&target, h.mtime)?;
            }
        }
        self.mark_created(&target)
    }

    /// Remember a directory's mode and mtime for the end of the layer, or,
    /// past [`MAX_DEFERRED_BYTES`], apply them now.
    fn defer_dir(&mut self, target: &Path, mode: u32, mtime: i64) -> Result<()> {
        let rel = target.strip_prefix(&self.root).unwrap_or(target).to_path_buf();
        if let Some(slot) = self.dirs.get_mut(&rel) {
            *slot = (mode, mtime);
            return Ok(());
        }
        if self.dir_bytes + rel.as_os_str().len() > MAX_DEFERRED_BYTES {
            if !self.noted_dirs {
                self.noted_dirs = true;
                self.progress.note(
                    "the layer declares more directories than minipull remembers; the rest get their \
                     mode and time at once (a later entry may change such a directory's mtime)",
                );
            }
            set_mode(target, mode)?;
            return set_mtime(target, mtime);
        }
        self.dir_bytes += rel.as_os_str().len();
        self.dirs.insert(rel, (mode, mtime));
        Ok(())
    }

    /// The directory that holds an entry: walk from the root, creating missing
    /// directories, refusing to pass through a symbolic link or a file.
    fn parent_dir(&mut self, parents: &[String]) -> Result<PathBuf> {
        let mut p = self.root.clone();
        for c in parents {
            p.push(c);
            match fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(Error::integrity(format!(
                        "its parent {} is a symbolic link; refusing to write through it",
                        self.shown(&p)
                    )))
                }
                Ok(_) => {
                    return Err(Error::integrity(format!(
                        "its parent {} is not a directory",
                        self.shown(&p)
                    )))
                }
                Err(_) => {
                    mkdir(&p)?;
                    self.mark_created(&p)?;
                }
            }
        }
        Ok(p)
    }

    /// The directory `parents` names, if it exists, reached without
    /// symbolic links; None when it does not exist (nothing is created).
    fn existing_dir(&self, parents: &[String]) -> Result<Option<PathBuf>> {
        let mut p = self.root.clone();
        for c in parents {
            p.push(c);
            match fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(Error::integrity(format!(
                        "its parent {} is a symbolic link; refusing to write through it",
                        self.shown(&p)
                    )))
                }
                Ok(_) | Err(_) => return Ok(None),
            }
        }
        Ok(Some(p))
    }

    /// A hard link's target: inside the root, reached without symlinks, not a directory.
    fn existing(&self, link: &str) -> Result<PathBuf> {
        let comps = clean(link).map_err(|e| e.context("hard link target"))?;
        let mut p = self.root.clone();
        for (i, c) in comps.iter().enumerate() {
            p.push(c);
            let m = fs::symlink_metadata(&p)
                .map_err(|_| Error::integrity(format!("hard link to {}, which does not exist", Quoted(link))))?;
            let last = i + 1 == comps.len();
            if !last && !m.is_dir() {
                return Err(Error::integrity(format!(
                    "hard link to {} goes through a non-directory",
                    Quoted(link)
                )));
            }
            if last && m.is_dir() {
                return Err(Error::integrity(format!("hard link to the directory {}", Quoted(link))));
            }
        }
        if comps.is_empty() {
            return Err(Error::integrity("hard link to the root"));
        }
        Ok(p)
    }

    /// `.wh..wh..opq`: hide what lower layers put in `dir`. Directories this
    /// layer declared again stay, but not the lower content inside them.
    fn opaque(&mut self, dir: &Path) -> Result<()> {
        let mut pending = vec![dir.to_path_buf()];
        while let Some(dir) = pending.pop() {
            let entries =
                fs::read_dir(&dir).map_err(|e| Error::storage(format!("cannot list {}", dir.display()), &e))?;
            for entry in entries.flatten() {
                let p = entry.path();
                if !self.was_created(&p) {
                    remove_any(&p)?;
                } else if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    pending.push(p);
                }
            }
        }
        Ok(())
    }

    fn owner(&mut self, path: &Path, h: &Header) -> Result<()> {
        if !self.is_root {
            if h.uid != 0 || h.gid != 0 {
                self.note_rootless();
            }
            return Ok(());
        }
        let c = c_path(path)?;
        // SAFETY: c is a valid NUL-terminated path.
        if unsafe { libc::lchown(c.as_ptr(), h.uid as libc::uid_t, h.gid as libc::gid_t) } != 0 {
            let e = std::io::Error::last_os_error();
            return Err(Error::storage(
                format!("cannot set the owner of {}", path.display()),
                &e,
            ));
        }
        Ok(())
    }

    fn note_rootless(&mut self) {
        if !self.noted_rootless {
            self.noted_rootless = true;
            self.progress
                .note("not running as root: file owners are not applied and device nodes are skipped");
        }
    }

    fn shown(&self, p: &Path) -> String {
        format!("/{}", p.strip_prefix(&self.root).unwrap_or(p).display())
    }

    /// Give this layer's directories their modes and times, deepest first.
    /// Each is found again from the root one component at a time without
    /// following a symbolic link: a directory the layer replaced by a link
    /// since (`x/` then `x -> /etc`) is skipped, never followed.
    fn finish_layer(&mut self) -> Result<()> {
        let mut dirs: Vec<(PathBuf, (u32, i64))> = self.dirs.drain().collect();
        self.dir_bytes = 0;
        dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        let root = open_dir_at(None, &self.root, false)?;
        let mut skipped = 0usize;
        for (rel, (mut mode, mtime)) in dirs {
            if !self.is_root && mode & 0o700 != 0o700 {
                if self.tight.len() < MAX_LAYER_ENTRIES / 16 {
                    self.tight.push((rel.clone(), mode));
                }
                mode |= 0o700;
            }
            match open_beneath(&root, &rel)? {
                Some(dir) => apply_dir_meta(&dir, mode, mtime).map_err(|e| {
                    Error::storage(
                        format!("cannot set the mode and time of {}", self.shown(&self.root.join(&rel))),
                        &e,
                    )
                })?,
                None => skipped += 1,
            }
        }
        if skipped > 0 {
            self.progress.note(format!(
                "{skipped} directories of the layer were replaced or removed before its end; their modes and times were not applied"
            ));
        }
        Ok(())
    }
}

impl Applier {
    /// After the last layer: the modes that would have locked us out.
    fn finish(&mut self) -> Result<()> {
        let root = open_dir_at(None, &self.root, false)?;
        self.tight
            .sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (rel, mode) in std::mem::take(&mut self.tight) {
            if let Some(dir) = open_beneath(&root, &rel)? {
                let shown = self.shown(&self.root.join(&rel));
                let mtime = dir.metadata().map(|m| m.mtime()).unwrap_or(0);
                apply_dir_meta(&dir, mode, mtime)
                    .map_err(|e| Error::storage(format!("cannot set the mode of {shown}"), &e))?;
            }
        }
        Ok(())
    }
}

/// An entry's path as components under the root: `./` and `.` dropped;
/// absolute paths and `..` refused.
fn clean(path: &str) -> Result<Vec<String>> {
    if path.starts_with('/') {
        return Err(Error::integrity(format!("absolute path {} in a layer", Quoted(path))));
    }
    let mut out = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                return Err(Error::integrity(format!(
                    "path {} climbs out with \"..\"",
                    Quoted(path)
                )))
            }
            c if c.contains('\0') => return Err(Error::integrity("a path with a NUL byte")),
            c => out.push(c.to_string()),
        }
    }
    Ok(out)
}

fn mkdir(p: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .mode(0o755)
        .create(p)
        .map_err(|e| Error::storage(format!("cannot create {}", p.display()), &e))
}

/// Remove a file, link or directory tree (never following a link); absent is fine.
fn remove_any(p: &Path) -> Result<()> {
    let r = match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(_) => return Ok(()),
    };
    r.map_err(|e| Error::storage(format!("cannot remove {}", p.display()), &e))
}

fn set_mode(p: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(p, fs::Permissions::from_mode(mode & 0o7777))
        .map_err(|e| Error::storage(format!("cannot set the mode of {}", p.display()), &e))
}

fn set_mtime(p: &Path, mtime: i64) -> Result<()> {
    let c = c_path(p)?;
    let t = libc::timespec {
        tv_sec: mtime as _,
        tv_nsec: 0,
    };
    // SAFETY: c is a valid NUL-terminated path and times points at two timespecs.
    let r = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), [t, t].as_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        return Err(Error::storage(format!("cannot set the time of {}", p.display()), &e));
    }
    Ok(())
}

/// Open a directory without following a symbolic link (`O_NOFOLLOW`), at
/// `parent` or, for the root, by path; `O_PATH` when `path_only`.
fn open_dir_at(parent: Option<&fs::File>, name: &Path, path_only: bool) -> Result<fs::File> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let c = c_path(name)?;
    let mode = if path_only { libc::O_PATH } else { libc::O_RDONLY };
    let flags = mode | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    let at = parent.map_or(libc::AT_FDCWD, |f| f.as_raw_fd());
    // SAFETY: c is a valid NUL-terminated path; at is a directory fd or AT_FDCWD.
    let fd = unsafe { libc::openat(at, c.as_ptr(), flags) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return Err(Error::storage(format!("cannot open {}", name.display()), &e));
    }
    // SAFETY: fd was just opened and is owned by nobody else.
    Ok(unsafe { fs::File::from_raw_fd(fd) })
}

/// The directory `rel` names under `root`, walked one component at a time
/// with `O_NOFOLLOW`; None if a component is missing or not a directory
/// (a symbolic link included).
fn open_beneath(root: &fs::File, rel: &Path) -> Result<Option<fs::File>> {
    let comps: Vec<_> = rel.components().collect();
    let mut dir: Option<fs::File> = None;
    for (i, c) in comps.iter().enumerate() {
        let std::path::Component::Normal(name) = c else {
            return Ok(None);
        };
        let last = i + 1 == comps.len();
        let parent = dir.as_ref().unwrap_or(root);
        let opened = match open_dir_at(Some(parent), Path::new(name), !last) {
            Ok(f) => f,
            // Not root and the directory is not readable: a handle for the
            // path only (fchmod and futimens are done through /proc then).
            Err(_) if last => match open_dir_at(Some(parent), Path::new(name), true) {
                Ok(f) => f,
                Err(_) => return Ok(None),
            },
            Err(_) => return Ok(None),
        };
        dir = Some(opened);
    }
    Ok(dir)
}

/// fchmod and futimens on an open directory. An `O_PATH` handle cannot be
/// changed directly; its /proc/self/fd name refers to that same directory,
/// whatever happens to its path meanwhile.
fn apply_dir_meta(dir: &fs::File, mode: u32, mtime: i64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let t = libc::timespec {
        tv_sec: mtime as _,
        tv_nsec: 0,
    };
    let fd = dir.as_raw_fd();
    // SAFETY: fd is an open descriptor; times points at two timespecs.
    let direct = unsafe { libc::fchmod(fd, (mode & 0o7777) as libc::mode_t) } == 0
        && unsafe { libc::futimens(fd, [t, t].as_ptr()) } == 0;
    if direct {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::EBADF) {
        return Err(e);
    }
    let proc = PathBuf::from(format!("/proc/self/fd/{fd}"));
    fs::set_permissions(&proc, fs::Permissions::from_mode(mode & 0o7777))?;
    let c = CString::new(proc.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: c is a valid NUL-terminated path and times points at two timespecs.
    if unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), [t, t].as_ptr(), 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn c_path(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| Error::integrity("a path with a NUL byte"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_paths() {
        assert_eq!(clean("./a/b/").unwrap(), vec!["a", "b"]);
        assert_eq!(clean("a//./b").unwrap(), vec!["a", "b"]);
        assert!(clean(".").unwrap().is_empty());
        assert!(clean("/etc/passwd").is_err());
        assert!(clean("a/../../etc").is_err());
        assert!(clean("..").is_err());
    }

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

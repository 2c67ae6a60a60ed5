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
use std::collections::HashSet;
use std::ffi::CString;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
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
    let mut desc = entry.clone();
    for _ in 0..4 {
        let bytes = read_blob(layout, &desc, manifest::MAX_MANIFEST_BYTES)?;
        let (_, m) = manifest::parse(&bytes, Some(&desc.media_type))?;
        match m {
            Manifest::Image(m) => {
                let config_digest = m.config.checked_digest()?;
                let config = read_blob(layout, &m.config, MAX_CONFIG_BYTES)?;
                return Ok(Image {
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
pub fn unpack(layout: &Layout, image: &Image, rootfs: &Path, progress: Progress) -> Result<Summary> {
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
    let mut applier = Applier::new(rootfs.to_path_buf(), progress);
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

/// ROOTFS must be new or empty, unless `force`; a new one is created.
pub fn prepare_rootfs(rootfs: &Path, force: bool) -> Result<()> {
    match fs::read_dir(rootfs) {
        Ok(mut entries) => {
            if entries.next().is_some() && !force {
                return Err(Error::usage(format!("{} is not empty", rootfs.display()))
                    .hint("unpack into a new directory, or add --force to unpack over what is there"));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(rootfs).map_err(|e| Error::storage(format!("cannot create {}", rootfs.display()), &e))
        }
        Err(e) => Err(Error::storage(format!("cannot open {}", rootfs.display()), &e)),
    }
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

/// Places entries under the root, remembering what the end must fix up.
struct Applier {
    root: PathBuf,
    progress: Progress,
    is_root: bool,
    /// Directories to give their mode and mtime at the end (children change both).
    dirs: Vec<(PathBuf, u32, i64)>,
    /// Paths this layer created: an opaque marker must not remove them.
    created: HashSet<PathBuf>,
    noted_rootless: bool,
}

impl Applier {
    fn new(root: PathBuf, progress: Progress) -> Applier {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let is_root = unsafe { libc::geteuid() } == 0;
        Applier {
            root,
            progress,
            is_root,
            dirs: Vec::new(),
            created: HashSet::new(),
            noted_rootless: false,
        }
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
            self.created.clear();
            let mut reader = tar::Reader::new(&mut unpacked);
            let mut entries = 0u64;
            while let Some(h) = reader.next_header()? {
                self.entry(&h, &mut reader)
                    .map_err(|e| e.context(format!("entry {}", Quoted(&h.path))))?;
                entries += 1;
            }
            // What follows the archive (padding) belongs to the diff_id too.
            std::io::copy(&mut reader.into_inner(), &mut std::io::sink())
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

    fn entry<R: Read>(&mut self, h: &Header, data: &mut tar::Reader<R>) -> Result<()> {
        let comps = clean(&h.path)?;
        let Some((name, parents)) = comps.split_last() else {
            return Ok(()); // the root itself
        };
        let dir = self.parent_dir(parents)?;
        if name == OPAQUE {
            return self.opaque(&dir);
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT) {
            if hidden.is_empty() || hidden == "." || hidden == ".." || hidden.contains('/') {
                return Err(Error::integrity("a whiteout with no name"));
            }
            return remove_any(&dir.join(hidden));
        }
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
                self.dirs.push((target.clone(), h.mode, h.mtime));
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
                set_mode(&target, h.mode)?;
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
                let c = c_path(&target)?;
                // SAFETY: c is a valid NUL-terminated path.
                if unsafe { libc::mknod(c.as_ptr(), kind | (h.mode & 0o7777) as libc::mode_t, dev) } != 0 {
                    let e = std::io::Error::last_os_error();
                    return Err(Error::storage(format!("cannot create {}", target.display()), &e));
                }
                self.owner(&target, h)?;
                set_mode(&target, h.mode)?;
                set_mtime(&target, h.mtime)?;
            }
        }
        self.created.insert(target);
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
                    self.created.insert(p.clone());
                }
            }
        }
        Ok(p)
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

    /// `.wh..wh..opq`: hide what lower layers put in `dir`.
    fn opaque(&mut self, dir: &Path) -> Result<()> {
        let entries = fs::read_dir(dir).map_err(|e| Error::storage(format!("cannot list {}", dir.display()), &e))?;
        for entry in entries.flatten() {
            let p = entry.path();
            if !self.created.contains(&p) {
                remove_any(&p)?;
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

    /// Give directories their modes and times, deepest first.
    fn finish(&mut self) -> Result<()> {
        self.dirs
            .sort_by_key(|(p, _, _)| std::cmp::Reverse(p.components().count()));
        for (p, mode, mtime) in &self.dirs {
            if fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()) {
                set_mode(p, *mode)?;
                set_mtime(p, *mtime)?;
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

//! Keeping a layout clean for years: dropping entries, and removing the
//! blobs and stale partial downloads nothing needs. Always in this order,
//! under the lock: `index.json` is rewritten first and blobs removed after,
//! so a crash at any point leaves no entry naming a missing blob. Blobs are
//! removed with `unlinkat` on a handle of their directory, by names that
//! parse as digests: a link planted there is removed, never followed.

use super::{Layout, REF_NAME, WORK_DIR};
use crate::digest::{Algorithm, Digest};
use crate::error::{Error, Result};
use crate::manifest::Descriptor;
use std::ffi::CString;
use std::time::{Duration, SystemTime};

/// Partials untouched this long are stale.
pub const STALE_PARTIAL: Duration = Duration::from_secs(24 * 3600);

/// What a removal freed.
#[derive(Debug, Default)]
pub struct Freed {
    pub blobs: usize,
    /// The blobs removed: digest and bytes.
    pub removed: Vec<(String, u64)>,
    pub partials: usize,
    pub bytes: u64,
}

/// Whether an entry is a stored signature rather than an image.
pub fn is_signature(d: &Descriptor) -> bool {
    d.annotation(super::SIGNS).is_some()
}

impl Layout {
    /// Rewrite `index.json` keeping the entries `keep` accepts, then drop
    /// the signature entries left signing no image. Returns what went.
    pub fn retain_entries(&self, keep: impl Fn(&Descriptor) -> bool) -> Result<Vec<Descriptor>> {
        let entries = self.entries()?;
        let (mut kept, mut gone): (Vec<_>, Vec<_>) = entries.into_iter().partition(|e| is_signature(e) || keep(e));
        // A signature stays only while an image entry it signs stays.
        let signed: Vec<String> = kept
            .iter()
            .filter(|e| !is_signature(e))
            .flat_map(|e| {
                [
                    Some(e.digest.clone()),
                    e.annotation(super::RESOLVED).map(str::to_string),
                ]
            })
            .flatten()
            .collect();
        let (sigs_kept, sigs_gone): (Vec<_>, Vec<_>) = kept.drain(..).partition(|e| {
            !is_signature(e)
                || e.annotation(super::SIGNS)
                    .is_some_and(|d| signed.iter().any(|s| s == d))
        });
        kept = sigs_kept;
        gone.extend(sigs_gone);
        if !gone.is_empty() {
            self.write_entries(&kept)?;
        }
        Ok(gone)
    }

    /// Every blob reachable from `index.json`, and the digests its
    /// manifests name that are not (yet) in `blobs/`.
    pub fn reachable(&self) -> Result<(Vec<Digest>, Vec<Digest>)> {
        let (mut have, mut named) = (Vec::new(), Vec::new());
        for e in self.entries()? {
            let r = self.reach(&e, false)?;
            named.extend(r.missing.iter().cloned());
            named.extend(r.discarded.iter().map(|(d, ..)| d.clone()));
            have.extend(r.digests());
        }
        Ok((have, named))
    }

    /// Remove the kept zstd:chunked proofs of `layers` that no manifest in
    /// `index.json` names any more; returns the bytes freed.
    #[cfg(feature = "delta")]
    pub fn remove_unneeded_proofs(&self, layers: &[Digest]) -> Result<u64> {
        let (reachable, named) = self.reachable()?;
        let mut bytes = 0;
        for d in layers.iter().filter(|d| !reachable.contains(d) && !named.contains(d)) {
            bytes += self.unlink_in(
                super::delta::DELTA_DIR,
                &format!("{}-{}", d.algorithm().name(), d.hex()),
            )?;
        }
        Ok(bytes)
    }

    /// Remove the blobs of `candidates` that nothing in `index.json` reaches.
    pub fn remove_unreachable(&self, candidates: &[Digest]) -> Result<Freed> {
        let (reachable, _) = self.reachable()?;
        let mut freed = Freed::default();
        for d in candidates.iter().filter(|d| !reachable.contains(d)) {
            self.remove_blob(d, &mut freed)?;
        }
        Ok(freed)
    }

    /// `gc`: remove every blob `index.json` does not reach, and partial
    /// downloads no manifest in the layout names or untouched for a day
    /// (unless `keep_partials`).
    pub fn collect_garbage(&self, keep_partials: bool) -> Result<Freed> {
        let (reachable, named) = self.reachable()?;
        let mut freed = Freed::default();
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            for name in self.names_in(&format!("blobs/{}", alg.name()))? {
                if let Ok(d) = Digest::parse(&format!("{}:{name}", alg.name())) {
                    if !reachable.contains(&d) {
                        self.remove_blob(&d, &mut freed)?;
                    }
                }
            }
        }
        // The zstd:chunked proof of layers no manifest names any more.
        for name in self.names_in(super::delta::DELTA_DIR)? {
            let digest = name
                .split_once('-')
                .and_then(|(a, h)| Digest::parse(&format!("{a}:{h}")).ok());
            if !digest.is_some_and(|d| reachable.contains(&d) || named.contains(&d)) {
                freed.bytes += self.unlink_in(super::delta::DELTA_DIR, &name)?;
            }
        }
        if keep_partials {
            return Ok(freed);
        }
        #[cfg(feature = "delta")]
        {
            freed.bytes += self.clear_chunk_spool();
        }
        let dir = format!("{WORK_DIR}/partial");
        for name in self.names_in(&dir)? {
            let base = name.strip_suffix(".resume").unwrap_or(&name);
            let digest = base
                .split_once('-')
                .and_then(|(a, h)| Digest::parse(&format!("{a}:{h}")).ok());
            let Some(digest) = digest else { continue };
            let path = self.partial_path(&digest);
            let fresh = std::fs::symlink_metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age < STALE_PARTIAL);
            if !(fresh && named.contains(&digest)) {
                let size = self.unlink_in(&dir, &name)?;
                if !name.ends_with(".resume") {
                    freed.partials += 1;
                }
                freed.bytes += size;
            }
        }
        Ok(freed)
    }

    fn remove_blob(&self, d: &Digest, freed: &mut Freed) -> Result<()> {
        let size = self.unlink_in(&format!("blobs/{}", d.algorithm().name()), d.hex())?;
        if size > 0 || self.blob_size(d).is_none() {
            freed.blobs += 1;
            freed.bytes += size;
            freed.removed.push((d.to_string(), size));
        }
        Ok(())
    }

    /// Remove `name` from the directory `dir` (relative to the layout)
    /// through a handle of it; returns the bytes it held (0 if it was gone).
    pub(super) fn unlink_in(&self, dir: &str, name: &str) -> Result<u64> {
        let fd = self.open_dir(dir)?;
        let Some(fd) = fd else { return Ok(0) };
        let cname = CString::new(name).map_err(|_| Error::other("a file name with a NUL byte"))?;
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: fd is an open directory, cname a valid C string, st sized for stat.
        let size = match unsafe { libc::fstatat(fd.0, cname.as_ptr(), st.as_mut_ptr(), libc::AT_SYMLINK_NOFOLLOW) } {
            // SAFETY: fstatat succeeded and filled st.
            0 => unsafe { st.assume_init() }.st_size.max(0) as u64,
            _ => return Ok(0),
        };
        // SAFETY: as above; unlinkat removes the name itself, a link is not followed.
        if unsafe { libc::unlinkat(fd.0, cname.as_ptr(), 0) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(Error::storage(format!("cannot remove {dir}/{name}"), &e));
            }
            return Ok(0);
        }
        Ok(size)
    }

    /// The names in `dir` (relative to the layout), read through a handle.
    pub(super) fn names_in(&self, dir: &str) -> Result<Vec<String>> {
        let Some(fd) = self.open_dir(dir)? else {
            return Ok(Vec::new());
        };
        // SAFETY: dup of an open descriptor; fdopendir takes ownership of the copy.
        let dirp = unsafe { libc::fdopendir(libc::dup(fd.0)) };
        if dirp.is_null() {
            return Err(Error::storage(
                format!("cannot list {dir}"),
                &std::io::Error::last_os_error(),
            ));
        }
        let mut names = Vec::new();
        loop {
            // SAFETY: dirp is an open DIR stream until closedir below.
            let ent = unsafe { libc::readdir(dirp) };
            if ent.is_null() {
                break;
            }
            // SAFETY: readdir returned an entry whose d_name is NUL-terminated.
            let name = unsafe { std::ffi::CStr::from_ptr((*ent).d_name.as_ptr()) };
            if let Ok(n) = name.to_str() {
                if n != "." && n != ".." {
                    names.push(n.to_string());
                }
            }
        }
        // SAFETY: dirp came from fdopendir and is closed once.
        unsafe { libc::closedir(dirp) };
        Ok(names)
    }

    /// A handle of a directory inside the layout, never through a link.
    fn open_dir(&self, dir: &str) -> Result<Option<Fd>> {
        let path = self.root.join(dir);
        let c =
            CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| Error::other("a path with a NUL byte"))?;
        // SAFETY: c is a valid C string.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            return match e.kind() {
                std::io::ErrorKind::NotFound => Ok(None),
                _ => Err(super::planted_or(&path, e, "cannot open")),
            };
        }
        Ok(Some(Fd(fd)))
    }

    /// Mark `entry` (by digest and name) as holding no layers any more.
    pub fn mark_layers_discarded(&self, digest: &str) -> Result<()> {
        let mut entries = self.entries()?;
        for e in entries.iter_mut().filter(|e| e.digest == digest && !is_signature(e)) {
            e.annotations
                .get_or_insert_with(Default::default)
                .insert(super::LAYERS_DISCARDED.to_string(), "true".to_string());
        }
        self.write_entries(&entries)
    }

    /// Mark, on the entries of `digest`, the layers obtained partially.
    #[cfg(feature = "delta")]
    pub fn mark_layers_partial(&self, digest: &str, layers: &[String]) -> Result<()> {
        let mut entries = self.entries()?;
        for e in entries.iter_mut().filter(|e| e.digest == digest && !is_signature(e)) {
            let mut list: Vec<String> = super::partial_layers(e).iter().map(|d| d.to_string()).collect();
            list.extend(layers.iter().filter(|l| !list.contains(l)).cloned().collect::<Vec<_>>());
            e.annotations
                .get_or_insert_with(Default::default)
                .insert(super::LAYERS_PARTIAL.to_string(), list.join(","));
        }
        self.write_entries(&entries)
    }

    /// The entry named `name` (`org.opencontainers.image.ref.name`).
    pub fn entry_named(&self, name: &str) -> Result<Option<Descriptor>> {
        Ok(self
            .entries()?
            .into_iter()
            .rev()
            .find(|e| !is_signature(e) && e.annotation(REF_NAME) == Some(name)))
    }
}

/// A file descriptor closed when dropped.
struct Fd(libc::c_int);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: we own this descriptor.
        unsafe { libc::close(self.0) };
    }
}

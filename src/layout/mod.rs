//! The OCI image layout on disk: `oci-layout`, `index.json`, `blobs/<alg>/<hex>`.
//!
//! Invariants: a file in `blobs/` always matches its name (it is verified
//! before it is renamed into place); `index.json` is written last and
//! atomically, so it never points at a blob that is missing. Partial
//! downloads live in `.minipull/partial/`, outside `blobs/`, so a killed
//! pull can be resumed.

mod delta;
mod reach;
mod upkeep;
#[cfg(feature = "delta")]
pub use reach::{partial_layers, LAYERS_PARTIAL};
pub use reach::{Reached, LAYERS_DISCARDED};
pub use upkeep::{is_signature, Freed};

use crate::digest::{hash_into, Algorithm, Digest, Hasher};
use crate::error::{Error, Result};
use crate::manifest::{Descriptor, OCI_INDEX};
use crate::progress::Progress;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Annotation holding the tag (OCI image-spec).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Annotation holding the full image name (containerd, `ctr import`).
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";
/// The annotation on a signature's index.json entry naming the digest it signs.
pub const SIGNS: &str = "io.minipull.signature.of";
/// The annotation on an image's index.json entry naming the digest its tag
/// resolved to (an index, for a one-platform pull of a multi-platform tag).
pub const RESOLVED: &str = "io.minipull.resolved";

const WORK_DIR: &str = ".minipull";

/// An OCI image layout directory opened for writing.
pub struct Layout {
    root: PathBuf,
    /// Held for the life of the pull so two minipulls cannot write one
    /// layout (shared by readers; none for a layout readers cannot lock).
    lock: Option<File>,
    /// [`Layout::tidy`] was asked for: done when the layout is dropped.
    tidy: std::cell::Cell<bool>,
}

impl Layout {
    /// Create (or reuse) a layout at `root`, and take its lock (waiting up
    /// to [`LOCK_WAIT`] for another minipull to let go of it).
    pub fn open(root: &Path) -> Result<Layout> {
        Layout::open_waiting(root, LOCK_WAIT, Progress::new(false))
    }

    /// [`Layout::open`] with its own wait and a place for the waiting note.
    pub fn open_waiting(root: &Path, wait: Duration, progress: Progress) -> Result<Layout> {
        let work = root.join(WORK_DIR);
        fs::create_dir_all(root).map_err(|e| Error::storage(format!("cannot create {}", root.display()), &e))?;
        // OUTDIR itself is the user's path and may be a link to a directory
        // elsewhere; nothing inside it may be one.
        ensure_private_dir(root, true)?;
        ensure_private_dir(&root.join("blobs"), false)?;
        let lock = take_lock(root, &work, wait, progress, false)?;
        // The previous holder may have tidied the work directory away.
        ensure_private_dir(&work.join("partial"), false)?;
        let layout = Layout {
            root: root.to_path_buf(),
            lock: Some(lock),
            tidy: std::cell::Cell::new(false),
        };
        // Fail now, before any download, if an existing index.json is unusable.
        layout.read_index()?;
        let marker = root.join("oci-layout");
        if !marker.exists() {
            layout.write_file_atomic(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        Ok(layout)
    }

    /// Open an existing layout to read it (`ls`, `config`, `unpack`): under
    /// a lock shared with other readers (waiting while a pull or `gc`
    /// writes), or with no lock and nothing created in it when it cannot be
    /// locked: on a read-only filesystem (a layout shipped on an ISO, a
    /// squashfs, a stick mounted read-only), or when it belongs to another
    /// user or others may write to it (one written on another machine).
    /// That is safe for reading: every file in it is opened without
    /// following links and every blob is checked against its digest as it
    /// is read.
    pub fn open_reader(root: &Path, wait: Duration, progress: Progress) -> Result<Layout> {
        let meta = fs::metadata(root).map_err(|e| Error::storage(format!("cannot read {}", root.display()), &e))?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let ours = meta.uid() == unsafe { libc::geteuid() } && (meta.mode() & 0o022 == 0 || meta.mode() & 0o1000 != 0);
        let lock = match ours && !read_only_fs(root) {
            true => Some(take_lock(root, &root.join(WORK_DIR), wait, progress, true)?),
            false => None,
        };
        let layout = Layout {
            root: root.to_path_buf(),
            lock,
            // Tidied if no one else holds the lock by then (see Drop).
            tidy: std::cell::Cell::new(true),
        };
        layout.read_index()?;
        Ok(layout)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a verified blob lives.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs").join(d.algorithm().name()).join(d.hex())
    }

    /// Where a blob is downloaded to before it is verified.
    pub fn partial_path(&self, d: &Digest) -> PathBuf {
        self.root
            .join(WORK_DIR)
            .join("partial")
            .join(format!("{}-{}", d.algorithm().name(), d.hex()))
    }

    /// Bytes free for an unprivileged writer on OUTDIR's filesystem, if known.
    pub fn free_bytes(&self) -> Option<u64> {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(self.root.as_os_str().as_bytes()).ok()?;
        let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
        // SAFETY: `path` is a valid C string and `st` is a properly sized out-parameter.
        let rc = unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) };
        if rc != 0 {
            return None;
        }
        // SAFETY: statvfs returned 0, so it filled `st`.
        let st = unsafe { st.assume_init() };
        // The field types differ between targets (u32 on some 32-bit ones).
        #[allow(clippy::unnecessary_cast)]
        Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
    }

    /// Bytes of the blob already held in its partial file.
    pub fn partial_len(&self, d: &Digest) -> u64 {
        fs::metadata(self.partial_path(d)).map(|m| m.len()).unwrap_or(0)
    }

    /// Whether the blob is in place for a descriptor that says it has `size`
    /// bytes. A blob's name is its content's digest, so one of another size
    /// is either damaged on disk or the descriptor is wrong; it is hashed to
    /// tell which. A wrong descriptor is refused (integrity); a damaged blob
    /// counts as absent, and the verified copy the pull fetches is renamed
    /// over it. With `verify`, every blob is hashed. Nothing is removed here:
    /// a hostile manifest must not be able to delete another image's blobs.
    pub fn has_blob(&self, d: &Digest, size: u64, verify: bool) -> Result<bool> {
        let Some(len) = self.blob_size(d) else {
            return Ok(false);
        };
        if len == size && !verify {
            return Ok(true);
        }
        if !self.blob_intact(d)? {
            return Ok(false);
        }
        if len != size {
            return Err(Error::integrity(format!(
                "a descriptor says {d} has {size} bytes, but the blob of that digest in {} has {len}",
                self.root.display()
            ))
            .hint("the manifest is wrong (a blob is what its digest names); nothing in OUTDIR was changed"));
        }
        Ok(true)
    }

    /// Whether a blob's content hashes to its name.
    pub fn blob_intact(&self, d: &Digest) -> Result<bool> {
        let path = self.blob_path(d);
        let file = self.open_blob(d).map_err(|e| planted_or(&path, e, "cannot read"))?;
        let (got, _) = hash_reader(file, d.algorithm(), u64::MAX)
            .map_err(|e| Error::storage(format!("cannot read {}", path.display()), &e))?;
        Ok(got == *d)
    }

    /// Open a blob for reading through handles of `blobs/` and
    /// `blobs/<alg>`, following no symbolic link on the way, and only if it
    /// is a regular file (a FIFO planted there must not hang the reader).
    pub fn open_blob(&self, d: &Digest) -> std::io::Result<File> {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        let at = |dir: libc::c_int, name: &str, flags: libc::c_int| -> std::io::Result<OwnedFd> {
            let c = std::ffi::CString::new(name).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
            // SAFETY: `dir` is an open descriptor and `c` a valid C string.
            let fd = unsafe { libc::openat(dir, c.as_ptr(), flags | libc::O_NOFOLLOW | libc::O_CLOEXEC) };
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // SAFETY: openat returned a new descriptor that nothing else owns.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        };
        let dir = libc::O_RDONLY | libc::O_DIRECTORY;
        // OUTDIR itself is the user's path and may be a link; nothing below it.
        let root = File::open(&self.root)?;
        let blobs = at(root.as_raw_fd(), "blobs", dir)?;
        let alg = at(blobs.as_raw_fd(), d.algorithm().name(), dir)?;
        let file = File::from(at(alg.as_raw_fd(), d.hex(), libc::O_RDONLY | libc::O_NONBLOCK)?);
        if !file.metadata()?.is_file() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "not a regular file",
            ));
        }
        Ok(file)
    }

    /// Verify `bytes` against `d` and store them as a blob.
    pub fn write_blob(&self, d: &Digest, bytes: &[u8]) -> Result<()> {
        let got = Digest::of(d.algorithm(), bytes);
        if got != *d {
            return Err(Error::integrity(format!(
                "content does not match its digest: expected {d}, got {got}"
            )));
        }
        let path = self.blob_path(d);
        self.ensure_blob_dir(d)?;
        self.write_file_atomic(&path, bytes)
    }

    /// Move a verified, fsynced partial download into `blobs/`.
    pub fn commit_partial(&self, d: &Digest) -> Result<()> {
        self.ensure_blob_dir(d)?;
        let (from, to) = (self.partial_path(d), self.blob_path(d));
        // The content is already fsynced, so a rename that survives a crash
        // names good bytes; the directory itself is synced once, before
        // index.json names anything (see add_to_index).
        fs::rename(&from, &to).map_err(|e| Error::storage(format!("cannot move blob into {}", to.display()), &e))
    }

    fn ensure_blob_dir(&self, d: &Digest) -> Result<()> {
        ensure_private_dir(&self.root.join("blobs").join(d.algorithm().name()), false)
    }

    /// Write `bytes` to `path` through a temporary file in the work directory.
    fn write_file_atomic(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        // The work directory may have been tidied away earlier in this run
        // (a pull that then prunes rewrites index.json once more).
        ensure_private_dir(&self.root.join(WORK_DIR), false)?;
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
        write_atomic(&self.root.join(WORK_DIR).join(format!("{name}.tmp")), path, bytes)
    }

    /// Replace index.json's entries with `entries` (atomically, after
    /// making the blobs they name durable).
    pub fn write_entries(&self, entries: &[Descriptor]) -> Result<()> {
        let mut index = self.read_index()?;
        index["manifests"] =
            serde_json::to_value(entries).map_err(|e| Error::other(format!("cannot encode index.json: {e}")))?;
        let mut bytes =
            serde_json::to_vec_pretty(&index).map_err(|e| Error::other(format!("cannot encode index.json: {e}")))?;
        bytes.push(b'\n');
        self.write_file_atomic(&self.root.join("index.json"), &bytes)
    }

    /// The current index.json as JSON, or a fresh empty index.
    fn read_index(&self) -> Result<serde_json::Value> {
        let path = self.root.join("index.json");
        match read_no_follow(&path) {
            Ok(bytes) => {
                let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
                    Error::new(
                        crate::error::Kind::Storage,
                        format!("{} is not valid JSON: {e}", path.display()),
                    )
                    .hint("pull into an empty directory, or repair or remove that index.json")
                })?;
                if !v.get("manifests").is_some_and(|m| m.is_array()) {
                    return Err(Error::new(
                        crate::error::Kind::Storage,
                        format!("{} has no \"manifests\" list", path.display()),
                    )
                    .hint("pull into an empty directory, or repair or remove that index.json"));
                }
                Ok(v)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(serde_json::json!({
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [],
            })),
            Err(e) => Err(Error::storage(format!("cannot read {}", path.display()), &e)),
        }
    }

    /// Add `desc` to index.json, replacing any entry with the same ref name
    /// (or, for untagged pulls, the same image name). Call this last.
    pub fn add_to_index(&self, desc: &Descriptor) -> Result<()> {
        // Make the renames into blobs/ durable before index.json points at them.
        for alg in ["sha256", "sha512"] {
            let dir = self.root.join("blobs").join(alg);
            if dir.is_dir() {
                sync_dir(&dir)?;
            }
        }
        let mut index = self.read_index()?;
        let key = |d: &serde_json::Value, k: &str| {
            d.pointer(&format!("/annotations/{}", k.replace('~', "~0").replace('/', "~1")))
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        let ann = desc.annotations.clone().unwrap_or_default();
        let (match_key, match_val) = match ann.get(REF_NAME) {
            Some(tag) => (REF_NAME, tag.clone()),
            None => (CONTAINERD_NAME, ann.get(CONTAINERD_NAME).cloned().unwrap_or_default()),
        };
        let new = serde_json::to_value(desc).map_err(|e| Error::other(format!("cannot encode index entry: {e}")))?;
        if let Some(list) = index.get_mut("manifests").and_then(|m| m.as_array_mut()) {
            list.retain(|d| key(d, match_key).as_deref() != Some(match_val.as_str()));
            list.push(new);
        }
        let mut bytes =
            serde_json::to_vec_pretty(&index).map_err(|e| Error::other(format!("cannot encode index.json: {e}")))?;
        bytes.push(b'\n');
        self.write_file_atomic(&self.root.join("index.json"), &bytes)
    }

    /// The entries of index.json (none when there is no index.json yet).
    pub fn entries(&self) -> Result<Vec<crate::manifest::Descriptor>> {
        entries_at(&self.root)
    }

    /// A small blob read whole and checked against its digest.
    pub fn read_small_blob(&self, d: &Digest, max: u64) -> Result<Vec<u8>> {
        let path = self.blob_path(d);
        let mut bytes = Vec::new();
        self.open_blob(d)
            .and_then(|f| f.take(max + 1).read_to_end(&mut bytes))
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    Error::not_found(format!("{} is missing from the layout", path.display()))
                }
                _ => planted_or(&path, e, "cannot read"),
            })?;
        if bytes.len() as u64 > max || Digest::of(d.algorithm(), &bytes) != *d {
            return Err(Error::integrity(format!(
                "{} does not match its digest",
                path.display()
            )));
        }
        Ok(bytes)
    }

    /// Remove the work directory if nothing resumable is left in it, as
    /// the layout is dropped: removing the lock file lets another minipull
    /// in, so that waits until this one is done with the layout.
    pub fn tidy(&self) {
        self.tidy.set(true);
    }
}

impl Drop for Layout {
    fn drop(&mut self) {
        // A reader's shared lock becomes exclusive only if no one else
        // holds it: then nobody is using the work directory.
        if !self.tidy.get() || self.lock.as_ref().is_none_or(|l| l.try_lock().is_err()) {
            return;
        }
        let partial = self.root.join(WORK_DIR).join("partial");
        let emptied = match fs::remove_dir(&partial) {
            Ok(()) => true,
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        };
        if emptied {
            let _ = fs::remove_file(self.root.join(WORK_DIR).join("lock"));
            let _ = fs::remove_dir(self.root.join(WORK_DIR));
        }
    }
}

/// How long a pull waits for another minipull to let go of OUTDIR: a
/// process killed while the kernel still writes back its data lives on for a
/// moment, and a supervisor restarts it at once.
pub const LOCK_WAIT: Duration = Duration::from_secs(60);

/// Take OUTDIR's lock (`work/lock`), waiting up to `wait` for another
/// minipull. The holder removes the lock file and the work directory as it
/// finishes (see [`Layout::tidy`]), so either may vanish under a waiter:
/// they are made again, and the lock counts only if the name still refers
/// to the file we locked.
fn take_lock(root: &Path, work: &Path, wait: Duration, progress: Progress, shared: bool) -> Result<File> {
    let deadline = Instant::now() + wait;
    let path = &work.join("lock");
    let mut said = false;
    loop {
        ensure_private_dir(work, false)?;
        let lock = match OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
        {
            // The holder removed the work directory between our two steps.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && Instant::now() < deadline => continue,
            r => r.map_err(|e| planted_or(path, e, "cannot create"))?,
        };
        if if shared {
            lock.try_lock_shared().is_ok()
        } else {
            lock.try_lock().is_ok()
        } {
            let same = match (lock.metadata(), fs::symlink_metadata(path)) {
                (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
                _ => false,
            };
            if same {
                return Ok(lock);
            }
            continue;
        }
        if Instant::now() >= deadline {
            return Err(Error::new(
                crate::error::Kind::Storage,
                format!("another minipull is still writing to {}", root.display()),
            )
            .hint("wait for it to finish, or pull into another directory"));
        }
        if !said {
            said = true;
            let up_to = match wait.as_secs() {
                s if s < 1 << 30 => format!(" up to {s} s"),
                _ => String::new(),
            };
            progress.note(format!(
                "another minipull is writing to {}; waiting{up_to} for it to finish",
                root.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether `path` is on a filesystem mounted read-only.
fn read_only_fs(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a valid C string and `st` a properly sized out-parameter;
    // `st` is read only when statvfs filled it.
    unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) == 0 && st.assume_init().f_flag & libc::ST_RDONLY != 0 }
}

/// Make sure `dir` is a directory we may trust with files: created if
/// missing; not a symbolic link (unless `follow`, for OUTDIR itself); owned
/// by us or root; not writable by
/// group or others unless sticky (the way ssh treats `~/.ssh`). Another
/// local user who could write there could plant links for us to follow.
fn ensure_private_dir(dir: &Path, follow: bool) -> Result<()> {
    // The last run holding OUTDIR's lock removes the work directory as it
    // ends, so it may vanish between our mkdir and our look at it: make it
    // again (a few times; each time someone else just finished).
    let mut tries = 0;
    let meta = loop {
        match fs::DirBuilder::new().mode(0o755).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::storage(format!("cannot create {}", dir.display()), &e)),
        }
        let meta = if follow {
            fs::metadata(dir)
        } else {
            fs::symlink_metadata(dir)
        };
        match meta {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && tries < 20 => tries += 1,
            m => break m,
        }
    };
    let meta = meta.map_err(|e| Error::storage(format!("cannot read {}", dir.display()), &e))?;
    let refuse = |why: String| {
        Err(Error::new(
            crate::error::Kind::Storage,
            format!("refusing {}: {why}", dir.display()),
        )
        .hint("minipull runs as root on devices: give it a directory only you (or root) can write to"))
    };
    if meta.file_type().is_symlink() {
        return refuse("it is a symbolic link".into());
    }
    if !meta.is_dir() {
        return refuse("it is not a directory".into());
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me && meta.uid() != 0 {
        return refuse(format!("it belongs to another user (uid {})", meta.uid()));
    }
    let mode = meta.mode();
    if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        return refuse(format!("others may write to it (mode {:o})", mode & 0o7777));
    }
    Ok(())
}

/// An error for opening `path`, saying so when a symbolic link was planted there.
pub fn planted_or(path: &Path, e: std::io::Error, what: &str) -> Error {
    if e.raw_os_error() == Some(libc::ELOOP) {
        Error::new(
            crate::error::Kind::Storage,
            format!(
                "refusing {}: it is a symbolic link, which minipull never follows inside OUTDIR",
                path.display()
            ),
        )
        .hint("remove it; if you did not put it there, someone else can write to OUTDIR")
    } else {
        Error::storage(format!("{what} {}", path.display()), &e)
    }
}

/// The entries of `root/index.json` (none when it does not exist), read
/// without taking the lock or creating anything (what `check` needs).
pub fn entries_at(root: &Path) -> Result<Vec<Descriptor>> {
    let path = root.join("index.json");
    let bytes = match read_no_follow(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(planted_or(&path, e, "cannot read")),
    };
    let index: crate::manifest::Index = serde_json::from_slice(&bytes).map_err(|e| {
        Error::new(
            crate::error::Kind::Storage,
            format!("{} is not a valid image index: {e}", path.display()),
        )
    })?;
    Ok(index.manifests)
}

/// The entry a pull of exactly `reference` wrote (`io.containerd.image.name`),
/// the newest if there are several, and the digest its tag resolved to: the
/// index's for a one-platform pull of a multi-platform tag, else its own.
pub fn recorded_for<'e>(entries: &'e [Descriptor], reference: &str) -> Option<(&'e Descriptor, &'e str)> {
    let e = entries
        .iter()
        .rev()
        .find(|e| e.annotation(CONTAINERD_NAME) == Some(reference))?;
    Some((e, e.annotation(RESOLVED).unwrap_or(&e.digest)))
}

/// Open a file for reading without following a symbolic link.
pub fn open_no_follow(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path)
}

/// Read a whole file without following a symbolic link.
pub fn read_no_follow(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    open_no_follow(path)?.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Hash at most `limit` bytes from `r`; returns the digest and the length read.
pub fn hash_reader(r: impl Read, alg: Algorithm, limit: u64) -> std::io::Result<(Digest, u64)> {
    let mut h = Hasher::new(alg);
    let n = hash_into(r, &mut h, limit)?;
    Ok((h.finish(), n))
}

/// Write `bytes` to `path` through the temporary file `tmp`: created anew
/// (never through a link: one planted there is refused), fsynced, renamed
/// over `path`, and the directory synced so the rename survives a crash.
pub fn write_atomic(tmp: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    if fs::symlink_metadata(tmp).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(planted_or(
            tmp,
            std::io::Error::from_raw_os_error(libc::ELOOP),
            "cannot write",
        ));
    }
    let write = || -> std::io::Result<()> {
        // A stale temporary from a crash goes first.
        match fs::remove_file(tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(tmp, path)
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(tmp);
        return Err(Error::storage(format!("cannot write {}", path.display()), &e));
    }
    sync_dir(
        path.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new(".")),
    )
}

/// fsync a directory, so the renames in it survive a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    // A rename is only durable once its directory is synced.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::storage(format!("cannot sync {}", dir.display()), &e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn tempdir(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("minipull-layout-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        p
    }

    fn desc(d: &Digest, tag: Option<&str>, name: &str) -> Descriptor {
        let mut ann = BTreeMap::from([(CONTAINERD_NAME.to_string(), name.to_string())]);
        if let Some(t) = tag {
            ann.insert(REF_NAME.to_string(), t.to_string());
        }
        Descriptor {
            media_type: crate::manifest::OCI_MANIFEST.into(),
            digest: d.to_string(),
            size: 2,
            urls: None,
            platform: None,
            annotations: Some(ann),
            artifact_type: None,
        }
    }

    #[test]
    fn writes_blobs_and_merges_index() {
        let root = tempdir("merge");
        let l = Layout::open(&root).unwrap();
        let a = Digest::sha256_of(b"{}");
        let b = Digest::sha256_of(b"[]");
        l.write_blob(&a, b"{}").unwrap();
        l.write_blob(&b, b"[]").unwrap();
        assert!(l.has_blob(&a, 2, true).unwrap());
        let e = l
            .has_blob(&a, 3, false)
            .expect_err("a wrong size is the descriptor's error");
        assert_eq!(e.kind, crate::error::Kind::Integrity);
        assert!(l.blob_path(&a).exists(), "and removes nothing");
        assert!(l.write_blob(&a, b"xx").is_err(), "content must match its name");

        l.add_to_index(&desc(&a, Some("v1"), "r/x:v1")).unwrap();
        l.add_to_index(&desc(&b, Some("v2"), "r/x:v2")).unwrap();
        l.add_to_index(&desc(&b, Some("v1"), "r/y:v1")).unwrap();
        let index: serde_json::Value = serde_json::from_slice(&fs::read(root.join("index.json")).unwrap()).unwrap();
        let list = index["manifests"].as_array().unwrap();
        assert_eq!(list.len(), 2, "same ref name replaces: {index}");
        assert_eq!(list[1]["annotations"][CONTAINERD_NAME], "r/y:v1");
        assert_eq!(index["schemaVersion"], 2);
        let marker = fs::read_to_string(root.join("oci-layout")).unwrap();
        assert!(marker.contains("1.0.0"));
        drop(l);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_corrupt_blob_is_absent_and_replaced_by_rename_never_unlinked() {
        let root = tempdir("corrupt");
        let l = Layout::open(&root).unwrap();
        let d = Digest::sha256_of(b"ab");
        fs::create_dir_all(root.join("blobs/sha256")).unwrap();
        fs::write(l.blob_path(&d), b"xy").unwrap();
        assert!(l.has_blob(&d, 2, false).unwrap(), "size only");
        assert!(!l.has_blob(&d, 2, true).unwrap());
        // Truncated on disk: not the descriptor's error, just absent.
        fs::write(l.blob_path(&d), b"a").unwrap();
        assert!(!l.has_blob(&d, 2, false).unwrap());
        assert!(l.blob_path(&d).exists(), "kept until a verified copy replaces it");
        l.write_blob(&d, b"ab").unwrap();
        assert!(l.has_blob(&d, 2, true).unwrap());
        // A link or a FIFO planted as a blob is never read through.
        let e = Digest::sha256_of(b"cd");
        fs::write(root.join("outside"), b"cd").unwrap();
        std::os::unix::fs::symlink(root.join("outside"), l.blob_path(&e)).unwrap();
        assert!(!l.has_blob(&e, 2, false).unwrap());
        assert_eq!(l.open_blob(&e).err().unwrap().raw_os_error(), Some(libc::ELOOP));
        assert!(l.read_small_blob(&e, 10).is_err());
        fs::remove_file(l.blob_path(&e)).unwrap();
        let c = std::ffi::CString::new(l.blob_path(&e).into_os_string().into_encoded_bytes()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        assert!(l.open_blob(&e).is_err(), "refused without blocking");
        drop(l);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_walk_keeps_blobs_a_descriptor_gets_the_size_of_wrong() {
        let root = tempdir("walk");
        let l = Layout::open(&root).unwrap();
        let config = br#"{"rootfs":{"diff_ids":[]}}"#;
        let cd = Digest::sha256_of(config);
        l.write_blob(&cd, config).unwrap();
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"x","digest":"{cd}","size":{}}},"layers":[]}}"#,
            crate::manifest::OCI_MANIFEST,
            config.len() + 1
        );
        let md = Digest::sha256_of(m.as_bytes());
        l.write_blob(&md, m.as_bytes()).unwrap();
        let mut entry = desc(&md, Some("v1"), "r/x:v1");
        entry.size = m.len() as i64 + 1;
        l.add_to_index(&entry).unwrap();
        let r = l.reach(&entry, false).unwrap();
        assert!(r.missing.is_empty());
        assert_eq!(l.collect_garbage(false).unwrap().blobs, 0);
        assert!(l.blob_path(&cd).exists() && l.blob_path(&md).exists());
        drop(l);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn second_writer_is_refused_and_bad_index_fails_early() {
        let root = tempdir("lock");
        let l = Layout::open(&root).unwrap();
        let e = Layout::open_waiting(&root, Duration::from_millis(300), Progress::new(true))
            .err()
            .unwrap();
        assert!(e.message.contains("another minipull"));
        let wait = Duration::from_millis(300);
        assert!(
            Layout::open_reader(&root, wait, Progress::new(true)).is_err(),
            "a reader waits for a writer"
        );
        drop(l);
        let r1 = Layout::open_reader(&root, wait, Progress::new(true)).unwrap();
        let r2 = Layout::open_reader(&root, wait, Progress::new(true)).expect("readers share the lock");
        assert!(
            Layout::open_waiting(&root, wait, Progress::new(true)).is_err(),
            "a writer waits for readers"
        );
        drop((r1, r2));
        drop(Layout::open_waiting(&root, wait, Progress::new(true)).unwrap());
        fs::write(root.join("index.json"), b"{oops").unwrap();
        let e = Layout::open(&root).err().unwrap();
        assert_eq!(e.kind, crate::error::Kind::Storage);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn hash_reader_respects_limit() {
        let (d, n) = hash_reader(&b"abcdef"[..], Algorithm::Sha256, 3).unwrap();
        assert_eq!(n, 3);
        assert_eq!(d, Digest::sha256_of(b"abc"));
    }
}

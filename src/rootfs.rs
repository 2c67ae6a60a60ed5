//! Putting an unpacked image in place as ROOTFS, all or nothing, with the
//! record `<ROOTFS>.minipull.json` beside it always naming the tree that is
//! in ROOTFS, at every instant, also across a power cut.
//!
//! The layers are unpacked into a private staging directory beside ROOTFS
//! (same filesystem, mode 0700 until done), every blob and diff_id checked
//! on the way. Then, in this order, each step durable before the next:
//!
//! 1. the staged tree gets the `./` entry's mode, owner and times (0755
//!    when no layer has one);
//! 2. a pending record `.<ROOTFS>.minipull-pending.json` is written: the
//!    image, and the inode number of the staged tree's directory (the
//!    record and the tree are bound by it: a rename keeps a directory's
//!    inode, so whichever record names the inode ROOTFS has is the one
//!    that counts). A full disk fails here, before anything changed;
//! 3. one syncfs makes the tree durable;
//! 4. with `--keep-old`, the present `ROOTFS.old` is renamed to
//!    `.<ROOTFS>.minipull-retired` (still on disk);
//! 5. the swap, the commit point: `renameat2(RENAME_EXCHANGE)` of staging
//!    and ROOTFS; without RENAME_EXCHANGE (old kernels, some filesystems),
//!    ROOTFS is renamed to `.<ROOTFS>.minipull-previous` and the staging
//!    tree to ROOTFS. A cut between those two renames leaves no ROOTFS; the
//!    next run puts the previous tree back, which is the old state whole;
//! 6. after the swap: with `--keep-old` the previous tree (now in staging,
//!    or parked) becomes `ROOTFS.old`; the pending record is renamed over
//!    the record; the retired `ROOTFS.old` and, without `--keep-old`, the
//!    previous tree are removed. Failures here are warnings: the image is
//!    installed.
//!
//! The next run ([`Plan::new`], under the lock) settles any cut: a pending
//! record whose inode is ROOTFS's finishes step 6 ("new root + its record +
//! the old root as ROOTFS.old"); any other pending record is dropped, the
//! staging tree removed and a retired `ROOTFS.old` renamed back ("old root +
//! its record + its ROOTFS.old"). A reader that cannot wait for that run
//! compares the record's `inode` with ROOTFS's own (`stat -c %i`).
//!
//! A mount point cannot be renamed: there the unpack goes in place, only
//! into an empty mount, after every layer blob was verified against its
//! digest (see [`Plan::in_place`]). The mount point is 0700 from the plan
//! (before anything is downloaded) until the tree is complete, and must
//! still be empty when the unpack begins; the pending record, with a random
//! nonce, is written before the first entry, and the nonce into the tree
//! (`ROOTFS/.minipull-in-place`); renaming the pending record over the
//! record is the commit point, and the nonce file goes after it. A cut
//! before it leaves no record (an empty mount has none) and a pending
//! record whose nonce, found in the mount, tells the next run the mount's
//! content is a partial unpack of ours, which it removes. (A mount point
//! keeps its device and inode whatever is put in it: they prove nothing.)
//!
//! ROOTFS's directory must be ours or root's and writable by nobody else
//! (sticky or not): the names beside ROOTFS are predictable.
//!
//! `.<ROOTFS>.minipull-lock` beside ROOTFS is held (flock) from the plan to
//! the end of the command: a second install waits for the first, then finds
//! the image recorded and does nothing.

use crate::error::{Error, Kind, Result};
use crate::layout::sync_dir;
use crate::progress::Progress;
use std::ffi::{CString, OsStr, OsString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How an unpack will reach ROOTFS, decided before anything is downloaded.
pub struct Plan {
    rootfs: PathBuf,
    /// The directory that holds ROOTFS, its staging tree and its record.
    parent: PathBuf,
    name: OsString,
    in_place: bool,
    keep_old: bool,
    /// Held until the plan is dropped: one install at a time per ROOTFS.
    _lock: fs::File,
}

/// What [`Plan::commit`] did: how (for the last line of output), and what
/// failed after the commit point (the image is installed all the same).
pub struct Installed {
    pub how: String,
    pub warnings: Vec<String>,
}

/// The image a record names.
pub struct Recorded {
    pub digest: String,
    pub reference: String,
    /// The record names the tree ROOTFS holds (or predates that binding).
    pub current: bool,
}

/// What goes in the record: the image, and the metadata of its `./` entry.
pub struct ImageRef<'a> {
    pub digest: &'a str,
    pub resolved: Option<&'a str>,
    pub reference: &'a str,
    /// mode, uid, gid, mtime of the last `./` entry of the layers.
    pub root_entry: Option<(u32, u64, u64, i64)>,
}

use crate::install::fault;

/// Whether `p` exists (as anything; links not followed).
fn exists(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok()
}

/// The inode of the directory at `p` (not followed).
fn inode(p: &Path) -> Option<u64> {
    fs::symlink_metadata(p).ok().filter(|m| m.is_dir()).map(|m| m.ino())
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    fs::rename(from, to)
        .map_err(|e| Error::storage(format!("cannot rename {} to {}", from.display(), to.display()), &e))
}

/// Take the lock file at `path`, waiting up to `wait` (one note if we wait).
fn take_lock(path: &Path, rootfs: &Path, wait: Duration, progress: Progress) -> Result<fs::File> {
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| crate::layout::planted_or(path, e, "cannot create"))?;
    let deadline = Instant::now() + wait;
    let mut said = false;
    loop {
        match lock.try_lock() {
            Ok(()) => return Ok(lock),
            Err(fs::TryLockError::WouldBlock) => {}
            Err(fs::TryLockError::Error(e)) => {
                return Err(Error::storage(format!("cannot lock {}", path.display()), &e))
            }
        }
        if Instant::now() >= deadline {
            return Err(Error::new(
                Kind::Storage,
                format!("another minipull is still installing into {}", rootfs.display()),
            )
            .hint("wait for it to finish (or give --lock-wait SECS more time)"));
        }
        if !said {
            said = true;
            progress.note(format!(
                "another minipull is installing into {}; waiting for it to finish",
                rootfs.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A record or pending record as read back (bounded, not followed).
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Record {
    #[serde(default)]
    digest: String,
    #[serde(default)]
    reference: String,
    inode: Option<u64>,
    #[serde(default)]
    keep_old: bool,
    #[serde(default)]
    in_place: bool,
    /// In place: the random mark written into the tree (see [`MARK`]).
    nonce: Option<String>,
}

/// In place, the file at the top of the tree that holds the pending
/// record's nonce while the unpack runs: a mount point keeps its device and
/// inode whatever is put in it, so only this tells the next run that what
/// the mount holds is our partial unpack (and not a tree put there since).
const MARK: &str = ".minipull-in-place";

/// ROOTFS's parent holds its staging tree, ROOTFS.old, the record and the
/// lock under names anyone can predict: it must be ours or root's, and
/// writable by nobody else, sticky or not (in a sticky /tmp another user
/// can still take those names first, and reach the tree's setuid files).
fn check_parent(dir: &Path) -> Result<()> {
    let m = fs::metadata(dir).map_err(|e| Error::storage(format!("cannot read {}", dir.display()), &e))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let why = if m.uid() != me && m.uid() != 0 {
        format!("it belongs to another user (uid {})", m.uid())
    } else if m.mode() & 0o022 != 0 {
        format!("group or others may write to it (mode {:o})", m.mode() & 0o7777)
    } else {
        return Ok(());
    };
    Err(Error::new(
        Kind::Storage,
        format!("refusing {} as the directory that holds ROOTFS: {why}", dir.display()),
    )
    .hint("minipull keeps ROOTFS's staging tree, record and lock beside it: give a ROOTFS in a directory only you (or root) can write to"))
}

fn is_empty(dir: &Path) -> Result<bool> {
    Ok(fs::read_dir(dir)
        .map_err(|e| Error::storage(format!("cannot read {}", dir.display()), &e))?
        .next()
        .is_none())
}

/// 16 random bytes, in hex.
fn nonce() -> Result<String> {
    let mut b = [0u8; 16];
    // SAFETY: b is a writable buffer of b.len() bytes.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        return Err(Error::storage(
            "cannot read random bytes",
            &std::io::Error::last_os_error(),
        ));
    }
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

fn read_record(p: &Path) -> Option<Record> {
    use std::io::Read;
    let f = crate::layout::open_no_follow(p).ok()?;
    let mut bytes = Vec::new();
    f.take(64 * 1024).read_to_end(&mut bytes).ok()?;
    serde_json::from_slice(&bytes).ok()
}

impl Plan {
    /// Take ROOTFS's lock (waiting up to `wait`), settle what an earlier,
    /// interrupted run left, and check ROOTFS: a directory (or nothing
    /// yet), empty unless `force`; a mount point only when empty, whatever
    /// `force` says.
    pub fn new(rootfs: &Path, force: bool, keep_old: bool, wait: Duration, progress: Progress) -> Result<Plan> {
        let usage = |why: String| Error::usage(format!("ROOTFS {}: {why}", rootfs.display()));
        let name = rootfs
            .file_name()
            .filter(|n| n.as_bytes() != b"..")
            .ok_or_else(|| usage("name a directory, not / or ..".into()))?
            .to_os_string();
        let parent = match rootfs.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent).map_err(|e| Error::storage(format!("cannot create {}", parent.display()), &e))?;
        check_parent(&parent)?;
        let mut lock_name = OsString::from(".");
        lock_name.push(&name);
        lock_name.push(".minipull-lock");
        let lock = take_lock(&parent.join(lock_name), rootfs, wait, progress)?;
        let mut plan = Plan {
            rootfs: rootfs.to_path_buf(),
            parent,
            name,
            in_place: false,
            keep_old,
            _lock: lock,
        };
        plan.recover()?;
        let meta = match fs::symlink_metadata(rootfs) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(plan),
            Err(e) => return Err(Error::storage(format!("cannot read {}", rootfs.display()), &e)),
        };
        if meta.file_type().is_symlink() {
            return Err(usage("it is a symbolic link; give the directory it points to".into()));
        }
        if !meta.is_dir() {
            return Err(usage("it exists and is not a directory".into()));
        }
        let empty = is_empty(rootfs)?;
        if plan.is_mount() {
            if !empty {
                return Err(usage("it is a mount point that is not empty".into()).hint(
                    "a mount point cannot be swapped atomically: unpack into a directory on that \
                     filesystem instead (ROOTFS=/mnt/root/rootfs, say)",
                ));
            }
            // Private before anything is downloaded (through a handle of the
            // directory checked, not its name), and still empty after that.
            let mode = meta.mode() & 0o7777;
            let f = fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(rootfs)
                .map_err(|e| Error::storage(format!("cannot open {}", rootfs.display()), &e))?;
            let same = f
                .metadata()
                .is_ok_and(|m| (m.dev(), m.ino()) == (meta.dev(), meta.ino()));
            let private = |mode: u32| {
                f.set_permissions(fs::Permissions::from_mode(mode))
                    .map_err(|e| Error::storage(format!("cannot set the mode of {}", rootfs.display()), &e))
            };
            if same {
                private(0o700)?;
            }
            if !same || !is_empty(rootfs)? {
                let _ = private(mode);
                return Err(usage("it changed while minipull checked it".into()));
            }
            plan.in_place = true;
        } else if !empty && !force {
            return Err(Error::usage(format!("{} is not empty", rootfs.display()))
                .hint("unpack into a new directory, or add --force to replace it (atomically)"));
        }
        Ok(plan)
    }

    pub fn rootfs(&self) -> &Path {
        &self.rootfs
    }

    /// Whether the layers go straight into ROOTFS (an empty mount point).
    pub fn in_place(&self) -> bool {
        self.in_place
    }

    fn is_mount(&self) -> bool {
        match (fs::symlink_metadata(&self.rootfs), fs::metadata(&self.parent)) {
            (Ok(r), Ok(p)) => r.is_dir() && r.dev() != p.dev(),
            _ => false,
        }
    }

    fn sibling(&self, suffix: &str) -> PathBuf {
        let mut n = OsString::from(".");
        n.push(&self.name);
        n.push(suffix);
        self.parent.join(n)
    }

    fn staging(&self) -> PathBuf {
        self.sibling(".minipull-staging")
    }

    /// Where the two-rename swap parks the previous tree.
    fn parked(&self) -> PathBuf {
        self.sibling(".minipull-previous")
    }

    /// Where `ROOTFS.old` waits while the swap that replaces it is under way.
    fn retired(&self) -> PathBuf {
        self.sibling(".minipull-retired")
    }

    fn pending(&self) -> PathBuf {
        self.sibling(".minipull-pending.json")
    }

    fn kept(&self) -> PathBuf {
        let mut n = self.name.clone();
        n.push(".old");
        self.parent.join(n)
    }

    /// The record of the installed image, beside ROOTFS.
    pub fn record_path(&self) -> PathBuf {
        let mut n = self.name.clone();
        n.push(".minipull.json");
        self.parent.join(n)
    }

    /// The image the record names, if there is a record.
    /// (An empty mount point holds no image, whatever a record says.)
    pub fn recorded(&self) -> Option<Recorded> {
        let r = read_record(&self.record_path())?;
        let current = !self.in_place && r.inode.is_none_or(|i| inode(&self.rootfs) == Some(i));
        Some(Recorded {
            digest: r.digest,
            reference: r.reference,
            current,
        })
    }

    /// Settle what an earlier, interrupted run left (see the module doc):
    /// either the swap happened and is finished, or it did not and
    /// everything goes back.
    fn recover(&self) -> Result<()> {
        let (staging, parked, retired, kept) = (self.staging(), self.parked(), self.retired(), self.kept());
        if !exists(&self.rootfs) && exists(&parked) {
            rename(&parked, &self.rootfs)?;
        }
        let tree = inode(&self.rootfs);
        if let Some(p) = read_record(&self.pending()) {
            if p.in_place {
                // The mount was empty when that unpack began: what is in it
                // is a part of it, if it still holds that unpack's mark.
                if self.is_mount() && p.nonce.is_some() && self.mark() == p.nonce {
                    self.abort();
                }
            } else if tree.is_some() && p.inode == tree {
                if p.keep_old {
                    let before = read_record(&self.record_path()).and_then(|r| r.inode);
                    for prev in [&staging, &parked] {
                        if inode(prev).is_some() && before.is_none_or(|i| inode(prev) == Some(i)) {
                            remove_tree(&kept)?;
                            rename(prev, &kept)?;
                            break;
                        }
                    }
                }
                sync_dir(&self.parent)?;
                rename(&self.pending(), &self.record_path())?;
            }
            remove_tree(&self.pending())?;
            sync_dir(&self.parent)?;
        }
        if exists(&retired) {
            if exists(&kept) {
                remove_tree(&retired)?;
            } else {
                rename(&retired, &kept)?;
            }
        }
        if exists(&self.rootfs) {
            remove_tree(&parked)?;
        }
        // A cut right after an in-place commit leaves its mark behind (the
        // next run that can remove it does).
        if let Some(n) = read_record(&self.record_path()).and_then(|r| r.nonce) {
            let _ = self.drop_mark(&n);
        }
        remove_tree(&staging)
    }

    /// What the mark at the top of ROOTFS holds (a regular file, not followed).
    fn mark(&self) -> Option<String> {
        use std::io::Read;
        let f = crate::layout::open_no_follow(&self.rootfs.join(MARK)).ok()?;
        let mut s = String::new();
        f.take(64).read_to_string(&mut s).ok()?;
        Some(s)
    }

    /// Remove the mark if it is the one holding `nonce` (an image's own file
    /// of that name stays), ROOTFS's times kept as they were.
    fn drop_mark(&self, nonce: &str) -> Result<()> {
        if self.mark().as_deref() != Some(nonce) {
            return Ok(());
        }
        let failed = |e| Error::storage(format!("cannot keep the times of {}", self.rootfs.display()), &e);
        let dir = fs::File::open(&self.rootfs).map_err(failed)?;
        let m = dir.metadata().map_err(failed)?;
        let times = fs::FileTimes::new()
            .set_accessed(m.accessed().map_err(failed)?)
            .set_modified(m.modified().map_err(failed)?);
        remove_tree(&self.rootfs.join(MARK))?;
        dir.set_times(times).map_err(failed)
    }

    /// The directory to unpack into: a fresh private staging directory, or
    /// ROOTFS itself in place (0700 until the commit). In place, the
    /// pending record says from now on that the mount's content is ours.
    pub fn begin(&self, image: &ImageRef) -> Result<PathBuf> {
        if self.in_place {
            // As the plan left it (0700 since then): private and empty.
            let private = fs::symlink_metadata(&self.rootfs).is_ok_and(|m| m.mode() & 0o077 == 0);
            if !self.is_mount() || !private || !is_empty(&self.rootfs)? {
                return Err(Error::new(
                    Kind::Storage,
                    format!(
                        "{} is no longer an empty private mount point: it changed during the download",
                        self.rootfs.display()
                    ),
                ));
            }
            // An empty mount holds no image: a record beside it is stale.
            remove_tree(&self.record_path())?;
            let nonce = nonce()?;
            self.write_pending(image, &self.rootfs, false, Some(&nonce))?;
            // The mark, created new through a handle of the tree.
            use std::io::Write;
            let dir = crate::unpack::dirfd::Dir::open_root(&self.rootfs)
                .and_then(|d| {
                    d.remove(OsStr::new(MARK))?;
                    d.create_file(OsStr::new(MARK), 0o600)
                })
                .and_then(|mut f| f.write_all(nonce.as_bytes()));
            dir.map_err(|e| Error::storage(format!("cannot write {}", self.rootfs.join(MARK).display()), &e))?;
            return Ok(self.rootfs.clone());
        }
        let staging = self.staging();
        remove_tree(&staging)?;
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&staging)
            .map_err(|e| Error::storage(format!("cannot create {}", staging.display()), &e))?;
        Ok(staging)
    }

    /// The unpack failed: ROOTFS stays as it was.
    pub fn abort(&self) {
        if self.in_place || self.is_mount() {
            // It was empty when we started.
            if let Ok(entries) = fs::read_dir(&self.rootfs) {
                for e in entries.flatten() {
                    let _ = remove_tree(&e.path());
                }
            }
            let _ = remove_tree(&self.pending());
        } else {
            let _ = remove_tree(&self.staging());
        }
    }

    /// `nonce`: in place, the mark written into the tree.
    fn write_pending(&self, image: &ImageRef, tree: &Path, keep_old: bool, nonce: Option<&str>) -> Result<()> {
        fault("record")?;
        let meta =
            fs::symlink_metadata(tree).map_err(|e| Error::storage(format!("cannot read {}", tree.display()), &e))?;
        let mut body = serde_json::json!({
            "digest": image.digest,
            "reference": image.reference,
            "inode": meta.ino(),
            "device": meta.dev(),
        });
        if let Some(r) = image.resolved {
            body["resolved"] = r.into();
        }
        if keep_old {
            body["keepOld"] = true.into();
        }
        if let Some(n) = nonce {
            body["inPlace"] = true.into();
            body["nonce"] = n.into();
        }
        let mut bytes = serde_json::to_vec_pretty(&body).unwrap_or_default();
        bytes.push(b'\n');
        let path = self.pending();
        let mut tmp = path.clone().into_os_string();
        tmp.push(".tmp");
        crate::layout::write_atomic(Path::new(&tmp), &path, &bytes)
    }

    /// Give the finished tree the `./` entry's metadata, make it durable,
    /// put it in place with its record (see the module doc for the order).
    /// An error means nothing changed; what fails after the commit point
    /// comes back as warnings.
    pub fn commit(&self, image: &ImageRef) -> Result<Installed> {
        let done = if self.in_place {
            self.rootfs.clone()
        } else {
            self.staging()
        };
        set_root_meta(&done, image.root_entry)?;
        let started = Instant::now();
        let mut warnings = Vec::new();
        if self.in_place {
            syncfs(&done)?;
            let synced = crate::progress::seconds(started.elapsed(), 2);
            fault("exchange")?;
            rename(&self.pending(), &self.record_path())?;
            if let Err(e) = sync_dir(&self.parent) {
                warnings.push(e.to_string());
            }
            if let Some(n) = read_record(&self.record_path()).and_then(|r| r.nonce) {
                if let Err(e) = self.drop_mark(&n) {
                    warnings.push(e.to_string());
                }
            }
            return Ok(Installed {
                how: format!(
                    "in place into the empty mount point (every blob verified before the first byte; made \
                     durable with one syncfs: {synced} s)"
                ),
                warnings,
            });
        }
        // --keep-old parks the present tree as ROOTFS.old, unless it is the
        // image being installed again (the known-good ROOTFS.old stays).
        let before = self.recorded();
        let park = self.keep_old
            && exists(&self.rootfs)
            && !before.as_ref().is_some_and(|r| r.current && r.digest == image.digest);
        self.write_pending(image, &done, park, None)?;
        syncfs(&done)?;
        let synced = crate::progress::seconds(started.elapsed(), 2);
        let kept = self.kept();
        if park && exists(&kept) {
            rename(&kept, &self.retired())?;
            sync_dir(&self.parent)?;
            let _ = fault("retired");
        }
        let (how, old) = match self.swap(&done) {
            Ok(s) => s,
            Err(e) => {
                // Nothing was swapped: everything goes back.
                let _ = self.recover();
                return Err(e);
            }
        };
        // The commit point is behind us: from here on, failures are warnings.
        let _ = fault("exchange");
        let mut warn = |r: Result<()>| {
            if let Err(e) = r {
                warnings.push(e.to_string());
            }
        };
        warn(sync_dir(&self.parent));
        let mut how = how.to_string();
        if let Some(old) = &old {
            if park {
                if let Err(e) = remove_tree(&kept).and_then(|()| rename(old, &kept)) {
                    // The pending record still names the new tree: the
                    // next run keeps the old one and moves the record in.
                    warnings.push(format!("{e} (the next run of minipull finishes this)"));
                    return Ok(Installed { how, warnings });
                }
                how = format!("{how}; the old tree is {}", kept.display());
            } else if self.keep_old {
                how = format!("{how}; it was the image installed again, so {} stays", kept.display());
            }
        }
        warn(fault("promote").and_then(|()| rename(&self.pending(), &self.record_path())));
        warn(sync_dir(&self.parent));
        warn(fault("tidy").and_then(|()| remove_tree(&self.retired())));
        if let Some(old) = old.filter(|o| exists(o)) {
            warn(remove_tree(&old));
        }
        Ok(Installed {
            how: format!("{how} (made durable with one syncfs: {synced} s)"),
            warnings,
        })
    }

    /// Swap `staging` into ROOTFS; returns how, and where the previous tree is.
    fn swap(&self, staging: &Path) -> Result<(&'static str, Option<PathBuf>)> {
        if !exists(&self.rootfs) {
            rename(staging, &self.rootfs)?;
            return Ok(("staged, then moved into place", None));
        }
        let exchanged = match std::env::var_os("MINIPULL_TEST_NO_EXCHANGE").filter(|_| cfg!(debug_assertions)) {
            Some(_) => Err(std::io::Error::from_raw_os_error(libc::EINVAL)),
            None => exchange(staging, &self.rootfs),
        };
        match exchanged {
            Ok(()) => Ok(("staged and swapped in atomically", Some(staging.to_path_buf()))),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) => {
                // No RENAME_EXCHANGE here: park the old tree, then move the
                // new one in; a cut between the two is repaired by recover().
                let parked = self.parked();
                rename(&self.rootfs, &parked)?;
                fault("parked")?;
                rename(staging, &self.rootfs).inspect_err(|_| {
                    // Put the old tree back at once.
                    let _ = fs::rename(&parked, &self.rootfs);
                })?;
                Ok(("staged and swapped in with two renames", Some(parked)))
            }
            Err(e) => Err(Error::storage(
                format!("cannot swap the new tree with {}", self.rootfs.display()),
                &e,
            )),
        }
    }
}

/// ROOTFS's own metadata from the `./` entry: mode (0755 without one),
/// owner (as root), times. Done last, so no later change moves the mtime.
fn set_root_meta(dir: &Path, entry: Option<(u32, u64, u64, i64)>) -> Result<()> {
    use std::os::fd::AsRawFd;
    let f = fs::File::open(dir).map_err(|e| Error::storage(format!("cannot open {}", dir.display()), &e))?;
    let failed = |e| Error::storage(format!("cannot set the metadata of {}", dir.display()), &e);
    let Some((mode, uid, gid, mtime)) = entry else {
        return fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).map_err(failed);
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        let (Ok(uid), Ok(gid)) = (u32::try_from(uid), u32::try_from(gid)) else {
            return Err(Error::integrity(format!("owner {uid}:{gid} of ./ is out of range")));
        };
        std::os::unix::fs::fchown(&f, Some(uid), Some(gid)).map_err(failed)?;
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(mode & 0o7777)).map_err(failed)?;
    let t = libc::timespec {
        tv_sec: mtime as libc::time_t,
        tv_nsec: 0,
    };
    // SAFETY: f is open; the pointer is to two timespecs.
    if unsafe { libc::futimens(f.as_raw_fd(), [t, t].as_ptr()) } != 0 {
        return Err(failed(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// `renameat2(a, b, RENAME_EXCHANGE)`: both names stay, their trees swap.
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    let ca = CString::new(a.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let cb = CString::new(b.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: both are valid NUL-terminated paths; renameat2 takes no pointers besides them.
    let r = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Flush the whole filesystem that holds `dir`: one syncfs instead of an
/// fsync per unpacked file.
fn syncfs(dir: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let f = fs::File::open(dir).map_err(|e| Error::storage(format!("cannot open {}", dir.display()), &e))?;
    // SAFETY: f is an open descriptor.
    if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(Error::storage(format!("cannot sync {}", dir.display()), &e));
    }
    Ok(())
}

/// Remove a tree (never following links); absent is fine.
fn remove_tree(p: &Path) -> Result<()> {
    let r = match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p).or_else(|e| {
            // Not root, a tree may hold directories we cannot enter (mode
            // 0500 and the like): open them up, then try again. (Root needs
            // no such help, and never chmods inside a tree others can reach.)
            // SAFETY: geteuid has no preconditions and cannot fail.
            if e.kind() != std::io::ErrorKind::PermissionDenied || unsafe { libc::geteuid() } == 0 {
                return Err(e);
            }
            make_removable(p)?;
            fs::remove_dir_all(p)
        }),
        Ok(_) => fs::remove_file(p),
        Err(_) => return Ok(()),
    };
    r.map_err(|e| Error::new(Kind::Storage, format!("cannot remove {}: {e}", p.display())))
}

fn make_removable(dir: &Path) -> std::io::Result<()> {
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let m = fs::symlink_metadata(&d)?;
        if m.is_dir() && !m.file_type().is_symlink() {
            if m.mode() & 0o700 != 0o700 {
                fs::set_permissions(&d, fs::Permissions::from_mode((m.mode() & 0o7777) | 0o700))?;
            }
            for e in fs::read_dir(&d)?.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    pending.push(e.path());
                }
            }
        }
    }
    Ok(())
}

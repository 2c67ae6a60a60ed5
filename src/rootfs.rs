//! Putting an unpacked image in place as ROOTFS, all or nothing.
//!
//! The layers are unpacked into a private staging directory beside ROOTFS
//! (same filesystem, mode 0700 until done), every blob and diff_id checked
//! on the way; only then is the staged tree synced and swapped with ROOTFS
//! (`renameat2(RENAME_EXCHANGE)`, or two renames that the next run repairs
//! if cut between them). A refused, killed or power-cut unpack leaves ROOTFS
//! as it was; the next run removes what is left of the staging directory.
//!
//! A mount point cannot be renamed: there the unpack goes in place, only
//! into an empty mount, after every layer blob was verified against its
//! digest (see [`Plan::in_place`]).
//!
//! Either way, `<ROOTFS>.minipull.json` beside ROOTFS records the image
//! installed (manifest digest and reference), written after the swap.

use crate::error::{Error, Kind, Result};
use crate::layout::sync_dir;
use std::ffi::{CString, OsString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// How an unpack will reach ROOTFS, decided before anything is downloaded.
pub struct Plan {
    rootfs: PathBuf,
    /// The directory that holds ROOTFS, its staging tree and its record.
    parent: PathBuf,
    name: OsString,
    in_place: bool,
    keep_old: bool,
}

/// What [`Plan::commit`] did, for the last line of output.
pub struct Installed {
    pub how: String,
}

impl Plan {
    /// Check ROOTFS: a directory (or nothing yet), empty unless `force`; a
    /// mount point only when empty, whatever `force` says.
    pub fn new(rootfs: &Path, force: bool, keep_old: bool) -> Result<Plan> {
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
        let mut plan = Plan {
            rootfs: rootfs.to_path_buf(),
            parent,
            name,
            in_place: false,
            keep_old,
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
        let parent_dev = fs::metadata(&plan.parent).map(|m| m.dev()).unwrap_or(meta.dev());
        let empty = fs::read_dir(rootfs)
            .map_err(|e| Error::storage(format!("cannot read {}", rootfs.display()), &e))?
            .next()
            .is_none();
        if parent_dev != meta.dev() {
            if !empty {
                return Err(usage("it is a mount point that is not empty".into()).hint(
                    "a mount point cannot be swapped atomically: unpack into a directory on that \
                     filesystem instead (ROOTFS=/mnt/root/rootfs, say)",
                ));
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

    fn sibling(&self, suffix: &str) -> PathBuf {
        let mut n = OsString::from(".");
        n.push(&self.name);
        n.push(suffix);
        self.parent.join(n)
    }

    fn staging(&self) -> PathBuf {
        self.sibling(".minipull-staging")
    }

    /// Where an interrupted two-rename swap leaves the previous tree.
    fn parked(&self) -> PathBuf {
        self.sibling(".minipull-previous")
    }

    /// The record of the installed image, beside ROOTFS.
    pub fn record_path(&self) -> PathBuf {
        let mut n = self.name.clone();
        n.push(".minipull.json");
        self.parent.join(n)
    }

    /// Undo what an earlier, interrupted run left: a staging tree is thrown
    /// away; a previous tree parked by a cut two-rename swap goes back.
    fn recover(&self) -> Result<()> {
        let parked = self.parked();
        if fs::symlink_metadata(&parked).is_ok() {
            if fs::symlink_metadata(&self.rootfs).is_err() {
                fs::rename(&parked, &self.rootfs)
                    .map_err(|e| Error::storage(format!("cannot restore {}", self.rootfs.display()), &e))?;
            } else {
                remove_tree(&parked)?;
            }
        }
        remove_tree(&self.staging())
    }

    /// The directory to unpack into: a fresh private staging directory, or
    /// ROOTFS itself in place.
    pub fn begin(&self) -> Result<PathBuf> {
        if self.in_place {
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
        if self.in_place {
            // It was empty when we started.
            if let Ok(entries) = fs::read_dir(&self.rootfs) {
                for e in entries.flatten() {
                    let _ = remove_tree(&e.path());
                }
            }
        } else {
            let _ = remove_tree(&self.staging());
        }
    }

    /// Sync the unpacked tree, put it in place, record what it is: the
    /// manifest's digest and, when its tag named an index, that index's
    /// digest (what `minipull check` prints, so a device compares the two).
    pub fn commit(&self, digest: &str, resolved: Option<&str>, reference: &str) -> Result<Installed> {
        let done = if self.in_place {
            self.rootfs.clone()
        } else {
            self.staging()
        };
        let started = std::time::Instant::now();
        syncfs(&done)?;
        let synced = started.elapsed().as_secs_f64();
        let how = if self.in_place {
            "in place into the empty mount point (every blob verified before the first byte)".to_string()
        } else {
            fs::set_permissions(&done, fs::Permissions::from_mode(0o755))
                .map_err(|e| Error::storage(format!("cannot set the mode of {}", done.display()), &e))?;
            self.swap(&done)?
        };
        self.write_record(digest, resolved, reference)?;
        Ok(Installed {
            how: format!("{how} (made durable with one syncfs: {synced:.2} s)"),
        })
    }

    fn swap(&self, staging: &Path) -> Result<String> {
        let had_old = fs::symlink_metadata(&self.rootfs).is_ok();
        if !had_old {
            fs::rename(staging, &self.rootfs)
                .map_err(|e| Error::storage(format!("cannot move the new tree to {}", self.rootfs.display()), &e))?;
            sync_dir(&self.parent)?;
            return Ok("staged, then moved into place".into());
        }
        let old = match exchange(staging, &self.rootfs) {
            Ok(()) => staging.to_path_buf(),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) => {
                // No RENAME_EXCHANGE here: park the old tree, then move the
                // new one in; a cut between the two is repaired by recover().
                let parked = self.parked();
                fs::rename(&self.rootfs, &parked)
                    .map_err(|e| Error::storage(format!("cannot move {} aside", self.rootfs.display()), &e))?;
                fs::rename(staging, &self.rootfs).map_err(|e| {
                    Error::storage(format!("cannot move the new tree to {}", self.rootfs.display()), &e)
                })?;
                parked
            }
            Err(e) => {
                return Err(Error::storage(
                    format!("cannot swap the new tree with {}", self.rootfs.display()),
                    &e,
                ))
            }
        };
        sync_dir(&self.parent)?;
        if self.keep_old {
            let mut kept = self.name.clone();
            kept.push(".old");
            let kept = self.parent.join(kept);
            remove_tree(&kept)?;
            fs::rename(&old, &kept)
                .map_err(|e| Error::storage(format!("cannot keep the old tree as {}", kept.display()), &e))?;
            sync_dir(&self.parent)?;
            return Ok(format!(
                "staged and swapped in atomically; the old tree is {}",
                kept.display()
            ));
        }
        remove_tree(&old)?;
        Ok("staged and swapped in atomically; the old tree was removed".into())
    }

    fn write_record(&self, digest: &str, resolved: Option<&str>, reference: &str) -> Result<()> {
        let path = self.record_path();
        let mut body = serde_json::json!({ "digest": digest, "reference": reference });
        if let Some(r) = resolved {
            body["resolved"] = r.into();
        }
        let mut bytes = serde_json::to_vec_pretty(&body).unwrap_or_default();
        bytes.push(b'\n');
        let mut tmp = path.clone().into_os_string();
        tmp.push(".tmp");
        crate::layout::write_atomic(Path::new(&tmp), &path, &bytes)
    }
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

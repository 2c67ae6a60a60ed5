//! Directory handles: every change an unpack makes is a `*at` call on the
//! handle of the entry's parent directory, with the entry's own name. A
//! parent is reached from ROOTFS with symbolic links on the way resolved as
//! if ROOTFS were `/` ([`Dir::resolve`]), so neither `..` nor an absolute
//! target can leave it; an entry's own name is never followed, and nothing
//! acts on a path string checked earlier.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};

/// Symbolic links one resolution follows at most (the kernel's bound).
const MAX_LINKS: usize = 40;
/// Components a resolved path may have at most.
const MAX_RESOLVED_DEPTH: usize = 256;
/// Whether `openat2` is used: 0 not yet known, 1 yes, 2 no (the kernel or
/// a seccomp filter refused it, or the test switch asked for the walk by
/// hand).
static OPENAT2: AtomicU8 = AtomicU8::new(0);

fn openat2_usable() -> bool {
    match OPENAT2.load(Ordering::Relaxed) {
        0 => {
            // A test switch: this machine's kernel would otherwise never
            // run the walk by hand that older kernels get.
            let off = std::env::var_os("MINIPULL_TEST_NO_OPENAT2").is_some_and(|v| v == "1");
            OPENAT2.store(if off { 2 } else { 1 }, Ordering::Relaxed);
            !off
        }
        1 => true,
        _ => false,
    }
}

/// A directory's identity: device and inode.
pub type DirId = (u64, u64);

/// Creates the directory `name` in the directory given.
pub type Mkdir<'a> = &'a mut dyn FnMut(&Dir, &OsStr) -> io::Result<()>;

/// An open directory. Most are `O_PATH` handles: enough for `*at` calls.
pub struct Dir(OwnedFd);

/// What is at a name in a directory, without following a link.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Found {
    Nothing,
    Dir,
    Link,
    Other,
}

fn cstr(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    check(fd)?;
    // SAFETY: fd was just returned by the kernel and belongs to nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn timespec(secs: i64) -> libc::timespec {
    libc::timespec {
        tv_sec: secs as _,
        tv_nsec: 0,
    }
}

impl Dir {
    /// The tree to unpack into (the staging directory, or an empty mount
    /// point), by path: not through a link at its last component, and
    /// owned by us or root, so nobody could have swapped in their own.
    pub fn open_root(path: &Path) -> io::Result<Dir> {
        let c = cstr(path.as_os_str())?;
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: c is a valid NUL-terminated path.
        let dir = owned(unsafe { libc::open(c.as_ptr(), flags) }).map(Dir)?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let (owner, me) = (stat_of(dir.0.as_raw_fd())?.st_uid, unsafe { libc::geteuid() });
        if owner != me && owner != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("it belongs to another user (uid {owner})"),
            ));
        }
        Ok(dir)
    }

    /// The subdirectory `name`, never through a link (`ELOOP`/`ENOTDIR`).
    pub fn dir(&self, name: &OsStr) -> io::Result<Dir> {
        self.open(name, libc::O_PATH).map(Dir)
    }

    /// The subdirectory `name` opened for reading (listing, fchmod).
    pub fn dir_readable(&self, name: &OsStr) -> io::Result<File> {
        self.open(name, libc::O_RDONLY).map(File::from)
    }

    fn open(&self, name: &OsStr, mode: libc::c_int) -> io::Result<OwnedFd> {
        let c = cstr(name)?;
        let flags = mode | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: c is a valid NUL-terminated name and self.0 an open directory.
        owned(unsafe { libc::openat(self.0.as_raw_fd(), c.as_ptr(), flags) })
    }

    /// Its device and inode.
    pub fn id(&self) -> io::Result<DirId> {
        let st = stat_of(self.0.as_raw_fd())?;
        // dev_t and ino_t are narrower than u64 on some 32-bit targets.
        #[allow(clippy::unnecessary_cast)]
        Ok((st.st_dev as u64, st.st_ino as u64))
    }

    /// The directory `comps` names below `self`, with every symbolic link
    /// on the way followed as if `self` were `/` (containerd's
    /// `fs.RootPath`, umoci's securejoin): `..` stops at `self` and an
    /// absolute target starts again from it, so the answer is always inside.
    /// `mkdir`, when given, creates what is missing on the resolved path
    /// (containerd's `MkdirAll` of the resolved parent). The second value is
    /// true when no link was met: the handle then stays valid for the same
    /// path as long as only names inside it change.
    ///
    /// `openat2(RESOLVE_IN_ROOT)` where the kernel has it (one call for the
    /// whole path), else the same walk by hand with `readlinkat`. Errors:
    /// `ENOENT` (missing, no `mkdir`), `ENOTDIR`, `ELOOP` (over 40 links),
    /// `ENAMETOOLONG` (resolves deeper than 256).
    pub fn resolve(&self, comps: &[String], mkdir: Option<Mkdir>) -> io::Result<(Dir, bool)> {
        if openat2_usable() {
            let path = cstr(OsStr::new(&comps.join("/")))?;
            let base = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
            // First without links at all: the common case, and it tells
            // whether the path is plain.
            let first = self.openat2(&path, base | libc::RESOLVE_NO_SYMLINKS);
            let r = match first {
                Err(e) if e.raw_os_error() == Some(libc::ELOOP) => self.openat2(&path, base).map(|d| (d, false)),
                r => r.map(|d| (d, true)),
            };
            match r {
                Ok(found) => return Ok(found),
                // Missing parts are created by the walk below; a missing or
                // non-directory part that a later `..` cancels is passed
                // lexically by it (containerd and umoci do; the kernel does
                // not). EAGAIN is a rename racing the lookup.
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {}
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {}
                // No openat2 (before Linux 5.6), or a seccomp filter refusing it.
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) => {
                    OPENAT2.store(2, Ordering::Relaxed)
                }
                Err(e) => return Err(e),
            }
        }
        self.resolve_by_hand(comps, mkdir)
    }

    /// [`Dir::resolve`] without `openat2`: one component at a time with
    /// `O_NOFOLLOW`, each link read with `readlinkat` and its target put in
    /// front of what is left.
    fn resolve_by_hand(&self, comps: &[String], mut mkdir: Option<Mkdir>) -> io::Result<(Dir, bool)> {
        // `todo` holds what is left to resolve, last component first; `at`
        // the resolved components of `dir`.
        let mut todo: Vec<OsString> = comps.iter().rev().map(OsString::from).collect();
        let mut at: Vec<OsString> = Vec::new();
        let mut dir: Option<Dir> = None;
        let (mut links, mut plain) = (0, true);
        while let Some(c) = todo.pop() {
            if c.is_empty() || c == "." {
                continue;
            }
            if c == ".." {
                // Lexically, clamped at the root; the resolved prefix holds
                // no links, so this is its real parent.
                if at.pop().is_some() {
                    dir = None;
                    for name in &at {
                        let next = dir.as_ref().unwrap_or(self).dir(name)?;
                        dir = Some(next);
                    }
                }
                continue;
            }
            let parent = dir.as_ref().unwrap_or(self);
            let next = match parent.dir(&c) {
                Ok(d) => d,
                Err(e) => match parent.find(&c)? {
                    // A missing or non-directory component that a later `..`
                    // takes back is passed over lexically, as containerd's
                    // `fs.RootPath` and umoci's securejoin do (the kernel
                    // refuses): nothing below it exists, so no link can
                    // hide in what is skipped.
                    Found::Nothing | Found::Other if cancelled(&mut todo) => continue,
                    Found::Link => {
                        links += 1;
                        if links > MAX_LINKS {
                            return Err(io::Error::from_raw_os_error(libc::ELOOP));
                        }
                        plain = false;
                        let target = parent.readlink(&c)?;
                        if target.first() == Some(&b'/') {
                            at.clear();
                            dir = None;
                        }
                        todo.extend(
                            target
                                .split(|b| *b == b'/')
                                .rev()
                                .map(|p| OsString::from_vec(p.to_vec())),
                        );
                        continue;
                    }
                    Found::Nothing => match mkdir.as_mut() {
                        Some(make) => {
                            make(parent, &c)?;
                            parent.dir(&c)?
                        }
                        None => return Err(e),
                    },
                    Found::Other => return Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
                    Found::Dir => return Err(e),
                },
            };
            at.push(c);
            if at.len() > MAX_RESOLVED_DEPTH {
                return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
            }
            dir = Some(next);
        }
        let dir = match dir {
            Some(d) => d,
            None => self.dir(OsStr::new("."))?,
        };
        Ok((dir, plain))
    }

    fn openat2(&self, path: &CStr, resolve: u64) -> io::Result<Dir> {
        // SAFETY: open_how is plain data; all-zero is its documented default.
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = (libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64;
        how.resolve = resolve;
        // SAFETY: path is NUL-terminated, how a valid open_how of the size given.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                self.0.as_raw_fd(),
                path.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        owned(fd as libc::c_int).map(Dir)
    }

    /// The target of the link `name` (at most 4096 bytes, as PATH_MAX).
    fn readlink(&self, name: &OsStr) -> io::Result<Vec<u8>> {
        let c = cstr(name)?;
        let mut buf = vec![0u8; 4096];
        // SAFETY: c is valid; buf is writable for its length.
        let n = unsafe { libc::readlinkat(self.0.as_raw_fd(), c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n as usize >= buf.len() {
            return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
        }
        buf.truncate(n as usize);
        Ok(buf)
    }

    /// What `name` is, without following it.
    pub fn find(&self, name: &OsStr) -> io::Result<Found> {
        let c = cstr(name)?;
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: c is valid; st is a properly sized out-parameter.
        let r = unsafe {
            libc::fstatat(
                self.0.as_raw_fd(),
                c.as_ptr(),
                st.as_mut_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ENOENT) => Ok(Found::Nothing),
                _ => Err(e),
            };
        }
        // SAFETY: fstatat returned 0, so it filled st.
        let mode = unsafe { st.assume_init() }.st_mode & libc::S_IFMT;
        Ok(match mode {
            libc::S_IFDIR => Found::Dir,
            libc::S_IFLNK => Found::Link,
            _ => Found::Other,
        })
    }

    pub fn mkdir(&self, name: &OsStr, mode: u32) -> io::Result<()> {
        let c = cstr(name)?;
        // SAFETY: c is valid and self.0 an open directory.
        check(unsafe { libc::mkdirat(self.0.as_raw_fd(), c.as_ptr(), mode as libc::mode_t) })
    }

    /// A new regular file (it must not exist), for writing.
    pub fn create_file(&self, name: &OsStr, mode: u32) -> io::Result<File> {
        let c = cstr(name)?;
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: c is valid and self.0 an open directory.
        owned(unsafe { libc::openat(self.0.as_raw_fd(), c.as_ptr(), flags, mode as libc::c_uint) }).map(File::from)
    }

    pub fn symlink(&self, target: &OsStr, name: &OsStr) -> io::Result<()> {
        let (t, c) = (cstr(target)?, cstr(name)?);
        // SAFETY: both are valid NUL-terminated strings.
        check(unsafe { libc::symlinkat(t.as_ptr(), self.0.as_raw_fd(), c.as_ptr()) })
    }

    /// A hard link `name` here to `from_name` in `from` (a link is linked
    /// itself, never followed).
    pub fn link(&self, from: &Dir, from_name: &OsStr, name: &OsStr) -> io::Result<()> {
        let (f, c) = (cstr(from_name)?, cstr(name)?);
        // SAFETY: both are valid; both descriptors are open directories.
        check(unsafe { libc::linkat(from.0.as_raw_fd(), f.as_ptr(), self.0.as_raw_fd(), c.as_ptr(), 0) })
    }

    /// A device node or FIFO with its final permission bits (the umask set
    /// aside for the call: the binary has one thread), so no chmod by name
    /// follows, which would change whatever was swapped in at that name.
    pub fn mknod(&self, name: &OsStr, mode: u32, dev: libc::dev_t) -> io::Result<()> {
        let c = cstr(name)?;
        // SAFETY: umask has no preconditions; it is put back right after.
        let umask = unsafe { libc::umask(0) };
        // SAFETY: c is valid and self.0 an open directory.
        let r = unsafe { libc::mknodat(self.0.as_raw_fd(), c.as_ptr(), mode as libc::mode_t, dev) };
        // SAFETY: as above.
        unsafe { libc::umask(umask) };
        check(r)
    }

    /// The owner of `name` itself (a link is not followed).
    pub fn chown(&self, name: &OsStr, uid: u32, gid: u32) -> io::Result<()> {
        let c = cstr(name)?;
        // SAFETY: c is valid and self.0 an open directory.
        check(unsafe { libc::fchownat(self.0.as_raw_fd(), c.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW) })
    }

    /// The mode of `name`, which must not be a link: Linux cannot change a
    /// link's mode and `fchmodat` would follow it, so a link is refused.
    pub fn chmod(&self, name: &OsStr, mode: u32) -> io::Result<()> {
        if self.find(name)? == Found::Link {
            return Err(io::Error::from_raw_os_error(libc::ELOOP));
        }
        let c = cstr(name)?;
        // SAFETY: c is valid and self.0 an open directory.
        check(unsafe { libc::fchmodat(self.0.as_raw_fd(), c.as_ptr(), mode as libc::mode_t, 0) })
    }

    /// The modification (and access) time of `name` itself.
    pub fn set_mtime(&self, name: &OsStr, secs: i64) -> io::Result<()> {
        let c = cstr(name)?;
        let t = [timespec(secs), timespec(secs)];
        // SAFETY: c is valid; t points at two timespecs.
        check(unsafe { libc::utimensat(self.0.as_raw_fd(), c.as_ptr(), t.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) })
    }

    /// Remove `name` whatever it is (a directory with all it holds, through
    /// handles); nothing there is fine.
    pub fn remove(&self, name: &OsStr) -> io::Result<()> {
        let c = cstr(name)?;
        match self.find(name)? {
            Found::Nothing => Ok(()),
            Found::Dir => {
                let sub = self.dir(name)?;
                for child in sub.names()? {
                    sub.remove(&child)?;
                }
                // SAFETY: c is valid and self.0 an open directory.
                check(unsafe { libc::unlinkat(self.0.as_raw_fd(), c.as_ptr(), libc::AT_REMOVEDIR) })
            }
            // SAFETY: c is valid and self.0 an open directory.
            _ => check(unsafe { libc::unlinkat(self.0.as_raw_fd(), c.as_ptr(), 0) }),
        }
    }

    /// `renameat2` of `name` here to `to_name` in `to`; `flags`:
    /// `RENAME_NOREPLACE` (`EEXIST` if it is there), `RENAME_EXCHANGE`
    /// (both must exist; they swap), or 0.
    pub fn rename(&self, name: &OsStr, to: &Dir, to_name: &OsStr, flags: libc::c_uint) -> io::Result<()> {
        let (a, b) = (cstr(name)?, cstr(to_name)?);
        // SAFETY: both are valid NUL-terminated names, both descriptors open directories.
        let r = unsafe {
            libc::syscall(
                libc::SYS_renameat2,
                self.0.as_raw_fd(),
                a.as_ptr(),
                to.0.as_raw_fd(),
                b.as_ptr(),
                flags,
            )
        };
        check(r as libc::c_int)
    }

    /// Remove the empty directory `name` (`ENOTEMPTY` otherwise).
    pub fn rmdir(&self, name: &OsStr) -> io::Result<()> {
        let c = cstr(name)?;
        // SAFETY: c is valid and self.0 an open directory.
        check(unsafe { libc::unlinkat(self.0.as_raw_fd(), c.as_ptr(), libc::AT_REMOVEDIR) })
    }

    /// Remove the non-directory `name`.
    pub fn unlink(&self, name: &OsStr) -> io::Result<()> {
        let c = cstr(name)?;
        // SAFETY: c is valid and self.0 an open directory.
        check(unsafe { libc::unlinkat(self.0.as_raw_fd(), c.as_ptr(), 0) })
    }

    /// This directory's access and modification times.
    pub fn times(&self) -> io::Result<[libc::timespec; 2]> {
        let st = stat_of(self.0.as_raw_fd())?;
        Ok([
            libc::timespec {
                tv_sec: st.st_atime as _,
                tv_nsec: st.st_atime_nsec as _,
            },
            libc::timespec {
                tv_sec: st.st_mtime as _,
                tv_nsec: st.st_mtime_nsec as _,
            },
        ])
    }

    /// Put back times read with [`Dir::times`]. An `O_PATH` handle cannot
    /// be changed directly: through the directory opened again for reading
    /// (no /proc needed), else its /proc/self/fd name.
    pub fn set_times(&self, t: &[libc::timespec; 2]) -> io::Result<()> {
        if let Ok(fd) = self.open(OsStr::new("."), libc::O_RDONLY) {
            // SAFETY: fd is open; t points at two timespecs.
            return check(unsafe { libc::futimens(fd.as_raw_fd(), t.as_ptr()) });
        }
        let proc = CString::new(format!("/proc/self/fd/{}", self.0.as_raw_fd())).map_err(io::Error::other)?;
        // SAFETY: proc is a valid NUL-terminated path; t points at two timespecs.
        check(unsafe { libc::utimensat(libc::AT_FDCWD, proc.as_ptr(), t.as_ptr(), 0) })
    }

    /// Set an extended attribute on `name` itself (a link is not
    /// followed): through /proc/self/fd/N/NAME, the one way to reach an
    /// entry by its parent's handle for the xattr calls.
    pub fn set_xattr(&self, name: &OsStr, attr: &str, value: &[u8]) -> io::Result<()> {
        let mut path = format!("/proc/self/fd/{}/", self.0.as_raw_fd()).into_bytes();
        path.extend_from_slice(name.as_bytes());
        let path = CString::new(path).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let attr = CString::new(attr).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: both are valid NUL-terminated strings; value is a valid slice.
        check(unsafe { libc::lsetxattr(path.as_ptr(), attr.as_ptr(), value.as_ptr().cast(), value.len(), 0) })
    }

    /// The names in this directory (not `.` and `..`).
    pub fn names(&self) -> io::Result<Vec<OsString>> {
        let fd = self.open(OsStr::new("."), libc::O_RDONLY)?;
        // SAFETY: fd is an open directory; fdopendir takes it over.
        let dir = unsafe { libc::fdopendir(fd.as_raw_fd()) };
        if dir.is_null() {
            return Err(io::Error::last_os_error());
        }
        std::mem::forget(fd); // closedir closes it
        let mut out = Vec::new();
        loop {
            // SAFETY: dir is a valid DIR stream until closedir below.
            let entry = unsafe { libc::readdir(dir) };
            if entry.is_null() {
                break;
            }
            // SAFETY: readdir returned a valid entry whose d_name is NUL-terminated.
            let name = unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) }.to_bytes();
            if name != b"." && name != b".." {
                out.push(OsString::from_vec(name.to_vec()));
            }
        }
        // SAFETY: dir came from fdopendir and is closed once.
        unsafe { libc::closedir(dir) };
        Ok(out)
    }
}

impl AsRawFd for Dir {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_raw_fd()
    }
}

/// fchmod and futimens on an open directory. An `O_PATH` descriptor cannot
/// be changed directly (EBADF); its /proc/self/fd name refers to that same
/// directory, whatever happens to its path meanwhile.
pub fn set_meta_of(fd: std::os::fd::RawFd, mode: u32, mtime: i64) -> io::Result<()> {
    let t = [timespec(mtime), timespec(mtime)];
    // SAFETY: fd is open; t points at two timespecs.
    let direct = unsafe { libc::fchmod(fd, (mode & 0o7777) as libc::mode_t) } == 0
        && unsafe { libc::futimens(fd, t.as_ptr()) } == 0;
    if direct {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::EBADF) {
        return Err(e);
    }
    let proc = CString::new(format!("/proc/self/fd/{fd}")).map_err(io::Error::other)?;
    // SAFETY: proc is a valid NUL-terminated path.
    check(unsafe { libc::chmod(proc.as_ptr(), (mode & 0o7777) as libc::mode_t) })?;
    // SAFETY: as above; t points at two timespecs.
    check(unsafe { libc::utimensat(libc::AT_FDCWD, proc.as_ptr(), t.as_ptr(), 0) })
}

/// fstat of an open descriptor.
fn stat_of(fd: std::os::fd::RawFd) -> io::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fd is open; st is a properly sized out-parameter.
    check(unsafe { libc::fstat(fd, st.as_mut_ptr()) })?;
    // SAFETY: fstat returned 0, so it filled st.
    Ok(unsafe { st.assume_init() })
}

/// The mtime of an open descriptor.
pub fn mtime_of(fd: std::os::fd::RawFd) -> io::Result<i64> {
    // time_t is narrower than i64 on some 32-bit targets.
    #[allow(clippy::unnecessary_cast)]
    Ok(stat_of(fd)?.st_mtime as i64)
}

/// Set an extended attribute on an open file.
pub fn set_xattr_fd(fd: std::os::fd::RawFd, attr: &str, value: &[u8]) -> io::Result<()> {
    let attr = CString::new(attr).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: fd is open; attr is NUL-terminated; value is a valid slice.
    check(unsafe { libc::fsetxattr(fd, attr.as_ptr(), value.as_ptr().cast(), value.len(), 0) })
}

/// Whether a later `..` in `todo` (last component first) takes back the
/// component just read; if so, drops what lies between (itself included).
fn cancelled(todo: &mut Vec<OsString>) -> bool {
    let mut depth = 1usize;
    for (i, c) in todo.iter().enumerate().rev() {
        if c == ".." {
            depth -= 1;
            if depth == 0 {
                todo.truncate(i);
                return true;
            }
        } else if !c.is_empty() && c != "." {
            depth += 1;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// The kernel's `RESOLVE_IN_ROOT` and the walk by hand agree, link by
    /// link: relative, absolute, `..` past the root, chains, dead links,
    /// loops and files on the way.
    #[test]
    fn the_walk_by_hand_resolves_like_openat2() {
        let base = std::env::temp_dir().join(format!("minipull-resolve-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let root = base.join("root");
        std::fs::create_dir_all(root.join("usr/lib/x")).unwrap();
        std::fs::create_dir_all(root.join("run")).unwrap();
        std::fs::create_dir_all(root.join("var")).unwrap();
        std::fs::create_dir_all(base.join("outside/x")).unwrap();
        std::fs::write(root.join("file"), b"").unwrap();
        symlink("usr/lib", root.join("lib")).unwrap();
        symlink("/run", root.join("var/run")).unwrap();
        symlink("../../../../usr", root.join("var/up")).unwrap();
        symlink(base.join("outside"), root.join("abs")).unwrap();
        symlink("lib/x", root.join("chain")).unwrap();
        symlink("/nowhere", root.join("dead")).unwrap();
        symlink("loop", root.join("loop")).unwrap();
        let dir = Dir::open_root(&root).unwrap();
        let id_of = |p: &str| {
            let m = std::fs::metadata(root.join(p)).unwrap();
            (
                std::os::unix::fs::MetadataExt::dev(&m),
                std::os::unix::fs::MetadataExt::ino(&m),
            )
        };
        type Want = Result<(&'static str, bool), i32>;
        let cases: [(&str, Want); 14] = [
            ("usr/lib", Ok(("usr/lib", true))),
            ("lib/x", Ok(("usr/lib/x", false))),
            ("var/run", Ok(("run", false))),
            ("var/up/lib", Ok(("usr/lib", false))),
            ("chain", Ok(("usr/lib/x", false))),
            ("abs", Err(libc::ENOENT)),
            ("dead", Err(libc::ENOENT)),
            ("loop", Err(libc::ELOOP)),
            ("file/x", Err(libc::ENOTDIR)),
            ("lib/missing", Err(libc::ENOENT)),
            // Taken back by `..` before they matter: passed lexically.
            ("missing/../usr/lib", Ok(("usr/lib", true))),
            ("file/../lib/x", Ok(("usr/lib/x", false))),
            ("missing/x/../../../../run", Ok(("run", true))),
            ("missing/x/..", Err(libc::ENOENT)),
        ];
        for (path, want) in cases {
            let comps: Vec<String> = path.split('/').map(String::from).collect();
            for got in [dir.resolve(&comps, None), dir.resolve_by_hand(&comps, None)] {
                match (got, want) {
                    (Ok((d, plain)), Ok((at, p))) => {
                        assert_eq!(d.id().unwrap(), id_of(at), "{path}");
                        assert_eq!(plain, p, "{path}");
                    }
                    (Err(e), Err(code)) => assert_eq!(e.raw_os_error(), Some(code), "{path}"),
                    (got, _) => panic!("{path}: {:?}", got.map(|(_, p)| p)),
                }
            }
        }
        // Creating along a link: inside the root, never beside it.
        let comps: Vec<String> = ["abs", "new"].map(String::from).to_vec();
        let mut mkdir = |d: &Dir, n: &OsStr| d.mkdir(n, 0o755);
        dir.resolve_by_hand(&comps, Some(&mut mkdir)).unwrap();
        let inside = root.join(base.join("outside/new").strip_prefix("/").unwrap());
        assert!(inside.is_dir());
        assert!(!base.join("outside/new").exists());
        std::fs::remove_dir_all(&base).unwrap();
    }
}

//! Directory handles: every change an unpack makes is a `*at` call on the
//! handle of the entry's parent directory, with the entry's own name. A
//! handle is reached from ROOTFS one component at a time with `O_NOFOLLOW`,
//! so no symbolic link (planted by a layer or by anyone else) is followed
//! on the way, and nothing acts on a path string checked earlier.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

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

    pub fn mknod(&self, name: &OsStr, mode: u32, dev: libc::dev_t) -> io::Result<()> {
        let c = cstr(name)?;
        // SAFETY: c is valid and self.0 an open directory.
        check(unsafe { libc::mknodat(self.0.as_raw_fd(), c.as_ptr(), mode as libc::mode_t, dev) })
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

//! The reuse root as [`Local`]: files reached one component at a time from
//! the root's handle with `O_NOFOLLOW` (no symbolic link followed, planted
//! or not), never across a mount (each directory's device must be the
//! root's: no mounted `/proc` is entered), opened `O_NONBLOCK` and used only
//! when `fstat` says regular file (no FIFO or device is ever read).

use super::plan::Local;
use super::Sha;
use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Paths in a root deeper than this are not looked at.
const MAX_DEPTH: usize = 256;

/// A root directory to reuse files from.
pub struct Root {
    fd: OwnedFd,
    dev: u64,
    ino: u64,
}

fn open_at(dir: libc::c_int, name: &[u8], flags: libc::c_int) -> io::Result<OwnedFd> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: c is a valid C string; the flags never create anything.
    let fd = unsafe { libc::openat(dir, c.as_ptr(), flags | libc::O_NOFOLLOW | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by the kernel and belongs to nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn stat(fd: &OwnedFd) -> io::Result<libc::stat> {
    // SAFETY: st is plain data the kernel fills.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fd is open; st is a valid out pointer.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

impl Root {
    /// Open `path` as the reuse root.
    pub fn open(path: &Path) -> io::Result<Root> {
        let fd = open_at(
            libc::AT_FDCWD,
            path.as_os_str().as_bytes(),
            libc::O_DIRECTORY | libc::O_RDONLY,
        )?;
        let st = stat(&fd)?;
        Ok(Root {
            fd,
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
        })
    }

    /// The root directory's device and inode.
    pub fn id(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }

    /// The regular file at TOC name `name` (`./` and `/` prefixes allowed),
    /// with its size.
    fn file(&self, name: &str) -> io::Result<(File, u64)> {
        self.file_stat(name).map(|(f, st)| (f, st.st_size as u64))
    }

    /// The regular file at TOC name `name`, with its `fstat`.
    pub fn file_stat(&self, name: &str) -> io::Result<(File, libc::stat)> {
        let refuse = || io::Error::from(io::ErrorKind::InvalidInput);
        let parts: Vec<&str> = name.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
        if parts.is_empty() || parts.len() > MAX_DEPTH || parts.contains(&"..") {
            return Err(refuse());
        }
        let mut dir: Option<OwnedFd> = None;
        for p in &parts[..parts.len() - 1] {
            let at = dir.as_ref().unwrap_or(&self.fd).as_raw_fd();
            let next = open_at(at, p.as_bytes(), libc::O_DIRECTORY | libc::O_PATH)?;
            if stat(&next)?.st_dev as u64 != self.dev {
                return Err(refuse());
            }
            dir = Some(next);
        }
        let at = dir.as_ref().unwrap_or(&self.fd).as_raw_fd();
        let leaf = CString::new(parts[parts.len() - 1]).map_err(|_| refuse())?;
        // Looked at before it is opened: opening a device node has effects
        // of its own (a watchdog armed, a tape rewound, a modem's DTR), and
        // an image can ship one under a name its TOC lists.
        // SAFETY: st is plain data the kernel fills; leaf is a C string.
        let mut before: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: at is an open directory; the pointers are valid.
        if unsafe { libc::fstatat(at, leaf.as_ptr(), &mut before, libc::AT_SYMLINK_NOFOLLOW) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // (st_dev's type differs between targets.)
        #[allow(clippy::unnecessary_cast)]
        let regular_here = |st: &libc::stat| st.st_mode & libc::S_IFMT == libc::S_IFREG && st.st_dev as u64 == self.dev;
        if !regular_here(&before) {
            return Err(refuse());
        }
        let fd = open_at(at, leaf.as_bytes(), libc::O_RDONLY | libc::O_NONBLOCK)?;
        let st = stat(&fd)?;
        // The same file that was looked at (not one renamed in since).
        if !regular_here(&st) || (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino) {
            return Err(refuse());
        }
        Ok((File::from(fd), st))
    }
}

impl Local for Root {
    fn digest(&mut self, name: &str, size: u64) -> Option<Sha> {
        let (f, len) = self.file(name).ok()?;
        if len != size {
            return None;
        }
        let mut h = ring::digest::Context::new(&ring::digest::SHA256);
        let mut buf = vec![0u8; 64 * 1024];
        let mut f = f.take(size);
        let mut total = 0u64;
        loop {
            let n = f.read(&mut buf).ok()?;
            if n == 0 {
                break;
            }
            total += n as u64;
            h.update(&buf[..n]);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(h.finish().as_ref());
        (total == size).then_some(out)
    }

    fn open(&mut self, name: &str) -> io::Result<File> {
        self.file(name).map(|(f, _)| f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_inside_without_links() {
        let base = std::env::temp_dir().join(format!("minipull-delta-root-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let (root, outside) = (base.join("root"), base.join("outside"));
        std::fs::create_dir_all(root.join("usr")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(root.join("usr/f"), b"hello").unwrap();
        std::fs::write(outside.join("secret"), b"hello").unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), root.join("usr/link")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("out")).unwrap();
        let fifo = CString::new(root.join("usr/fifo").as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid path string.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        let mut r = Root::open(&root).unwrap();
        let want = super::super::sha(b"hello");
        assert_eq!(r.digest("./usr/f", 5), Some(want));
        assert_eq!(r.digest("/usr//f", 5), Some(want));
        assert_eq!(r.digest("usr/f", 4), None, "size differs");
        // A link as the file or as a directory on the way: not followed.
        assert_eq!(r.digest("usr/link", 5), None);
        assert_eq!(r.digest("out/secret", 5), None);
        assert_eq!(r.digest("usr/../../outside/secret", 5), None);
        // A FIFO is neither read nor waited on.
        assert_eq!(r.digest("usr/fifo", 0), None);
        assert!(r.open("usr/fifo").is_err());
        // ... nor opened at all (inotify sees every open): opening a device
        // node an image ships can act on the hardware.
        let path = CString::new(root.join("usr/fifo").as_os_str().as_bytes()).unwrap();
        // SAFETY: plain syscalls on a valid path; the fd is closed below.
        let ino = unsafe { libc::inotify_init1(libc::IN_NONBLOCK) };
        assert!(ino >= 0);
        // SAFETY: as above.
        assert!(unsafe { libc::inotify_add_watch(ino, path.as_ptr(), libc::IN_OPEN) } >= 0);
        assert!(r.open("usr/fifo").is_err());
        assert_eq!(r.digest("usr/fifo", 0), None);
        let mut ev = [0u8; 4096];
        // SAFETY: ev is a valid buffer of that length.
        let n = unsafe { libc::read(ino, ev.as_mut_ptr().cast(), ev.len()) };
        assert_eq!(n, -1, "the FIFO was opened");
        // SAFETY: ino is ours.
        unsafe { libc::close(ino) };
        let _ = std::fs::remove_dir_all(&base);
    }
}

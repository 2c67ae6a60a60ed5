//! Applying tar entries to a tree: files, directories, links, devices,
//! whiteouts and opaque directories, as the OCI image-spec describes layer
//! changesets. Every change goes through [`Dir`] handles reached from the
//! root with links on the way resolved inside it ([`Dir::resolve`]);
//! nothing here takes a full path.

use super::dirfd::{Dir, DirId, Found, Mkdir};
use crate::error::{Error, Quoted, Result};
use crate::progress::Progress;
use crate::tar::{self, Header, Kind};
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::hash::{BuildHasher, RandomState};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::Rc;

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";
/// Directory metadata deferred to the end of a layer is bounded: past this
/// many bytes of remembered paths, a directory gets its mode and time at
/// once (a later child may then move its mtime; said once).
const MAX_DEFERRED_BYTES: usize = 4 * 1024 * 1024;
/// One layer may hold at most this many entries: what it created is
/// remembered (8 bytes each) for its opaque markers.
const MAX_LAYER_ENTRIES: usize = 1_000_000;
/// Paths deeper than this are refused: no tool can use them (PATH_MAX is
/// 4096 bytes), and removing a tree holds one handle per level.
const MAX_DEPTH: usize = 256;

/// What an unpack keeps beyond its defaults.
#[derive(Debug, Clone, Default)]
pub struct Keep {
    /// setuid/setgid bits when not root (`--keep-setuid`).
    pub setuid: bool,
    /// Extended attribute namespaces beyond [`xattr_kept`]'s (`--keep-xattrs`).
    pub xattrs: Vec<String>,
}

/// At most this many names of dropped extended attributes are reported.
const MAX_DROPPED_NAMES: usize = 16;

/// Extended attributes applied by default: file capabilities, IMA and EVM
/// (IMA-appraised devices need them), `user.*` and POSIX ACLs. Others
/// (`trusted.*`, `security.selinux`...) change how the host treats the
/// tree and are applied only under a prefix `keep` names;
/// `trusted.overlay.*` (overlayfs opaque and redirect markers, should the
/// tree ever be a lower layer) only by a prefix that names it.
pub fn xattr_kept(name: &str, keep: &[String]) -> bool {
    const DEFAULT: [&str; 5] = [
        "security.capability",
        "security.ima",
        "security.evm",
        "system.posix_acl_access",
        "system.posix_acl_default",
    ];
    if name.starts_with("user.") || DEFAULT.contains(&name) {
        return true;
    }
    let overlay = name.starts_with("trusted.overlay.");
    keep.iter()
        .any(|p| name.starts_with(p.as_str()) && (!overlay || p.starts_with("trusted.overlay.")))
}

/// Places entries under the root, remembering what the end must fix up.
pub struct Applier {
    root: Rc<Dir>,
    root_id: DirId,
    /// The last parent reached by a path without links, by its components:
    /// consecutive entries mostly share it, and only names inside it change
    /// meanwhile, so it stays valid (the next entry costs no lookup).
    last: Option<(Vec<String>, Rc<Dir>, DirId)>,
    progress: Progress,
    is_root: bool,
    keep_setuid: bool,
    keep_xattrs: Vec<String>,
    /// Extended attributes left out by the allowlist (distinct names, for
    /// one note at the end).
    dropped: Vec<String>,
    /// Directories (relative paths) to give their mode and mtime at the end
    /// of the layer (children change both), each once, and their bytes.
    dirs: HashMap<String, (u32, i64)>,
    dir_bytes: usize,
    /// What this layer created or declared, by the identity of the
    /// directory it is in and its name (as keyed hashes, 8 bytes each), so
    /// both names of `lib/x` and `usr/lib/x` under `lib -> usr/lib` are one:
    /// its whiteouts and opaque markers must not remove them.
    created: HashSet<u64>,
    hasher: RandomState,
    /// Not root: directories whose mode keeps their owner out (no u+rwx)
    /// get it only after the last layer, so later layers can still write.
    tight: Vec<(String, u32)>,
    noted_rootless: bool,
    noted_setuid: bool,
    noted_dirs: bool,
    noted_xattrs: bool,
    /// One copy buffer for every file of the unpack.
    buf: Vec<u8>,
    /// The last `./` directory entry's mode, uid, gid and mtime: the
    /// commit gives them to ROOTFS itself.
    pub root_entry: Option<(u32, u64, u64, i64)>,
}

/// A storage error about `rel` (shown as `/rel` inside the tree).
fn failed(what: &str, rel: &str, e: std::io::Error) -> Error {
    Error::storage(format!("cannot {what} /{rel}"), &e)
}

impl Applier {
    pub fn new(root: &Path, progress: Progress, keep: &Keep) -> Result<Applier> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let is_root = unsafe { libc::geteuid() } == 0;
        let open = |e| Error::storage(format!("cannot open {}", root.display()), &e);
        let handle = Dir::open_root(root).map_err(open)?;
        let root_id = handle.id().map_err(open)?;
        Ok(Applier {
            root: Rc::new(handle),
            root_id,
            last: None,
            progress,
            is_root,
            keep_setuid: keep.setuid,
            keep_xattrs: keep.xattrs.clone(),
            dropped: Vec::new(),
            dirs: HashMap::new(),
            dir_bytes: 0,
            created: HashSet::new(),
            hasher: RandomState::new(),
            tight: Vec::new(),
            noted_rootless: false,
            noted_setuid: false,
            noted_dirs: false,
            noted_xattrs: false,
            buf: vec![0u8; 64 * 1024],
            root_entry: None,
        })
    }

    /// Remember that this layer put `name` in the directory `dir`. The hash
    /// is keyed per run, so a layer cannot be crafted to collide with a name
    /// it wants kept.
    fn mark_created(&mut self, dir: DirId, name: &OsStr) -> Result<()> {
        if self.created.len() >= MAX_LAYER_ENTRIES {
            return Err(Error::integrity(format!(
                "the layer has more than {MAX_LAYER_ENTRIES} entries; refusing it"
            )));
        }
        self.created.insert(self.hasher.hash_one((dir, name.as_bytes())));
        Ok(())
    }

    fn was_created(&self, dir: DirId, name: &OsStr) -> bool {
        self.created.contains(&self.hasher.hash_one((dir, name.as_bytes())))
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

    /// Apply one layer's tar stream; returns how many entries it held.
    pub fn tar_stream(&mut self, stream: impl Read) -> Result<u64> {
        self.created.clear();
        self.last = None;
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
            // The root itself: its metadata is applied at the commit.
            if h.kind == Kind::Directory {
                self.root_entry = Some((self.mode(h.mode), h.uid, h.gid, h.mtime));
            }
            return Ok(());
        };
        let name_os = OsStr::new(name.as_str());
        if name == OPAQUE || name.starts_with(WHITEOUT) {
            // A whiteout hides something below; where there is nothing to
            // hide, it creates nothing either.
            // Under a link to nothing (or a file), too: containerd makes
            // that a no-op.
            let Some((dir, id)) = self.walk(parents, false)? else {
                return Ok(());
            };
            let dir_rel = parents.join("/");
            if name == OPAQUE {
                return self.opaque(&dir, &dir_rel).map(|_| ());
            }
            let hidden = OsStr::new(&name[WHITEOUT.len()..]);
            if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(Error::integrity("a whiteout with no name"));
            }
            // Whiteouts apply to lower layers only (image-spec).
            if self.was_created(id, hidden) {
                return Ok(());
            }
            // The parent keeps its recorded times, as for any other change.
            let times = dir.times().map_err(|e| failed("read", &dir_rel, e))?;
            let rel = join(&dir_rel, &name[WHITEOUT.len()..]);
            if self.hide(&dir, hidden, &rel)? {
                dir.set_times(&times)
                    .map_err(|e| failed("set the time of", &dir_rel, e))?;
            }
            return Ok(());
        }
        let (dir, dir_id) = self
            .walk(parents, true)?
            .ok_or_else(|| Error::integrity("no parent directory"))?;
        let rel = comps.join("/");
        match h.kind {
            Kind::Directory => {
                match dir.find(name_os).map_err(|e| failed("read", &rel, e))? {
                    Found::Dir => {}
                    Found::Nothing => dir.mkdir(name_os, 0o755).map_err(|e| failed("create", &rel, e))?,
                    _ => {
                        dir.remove(name_os).map_err(|e| failed("remove", &rel, e))?;
                        dir.mkdir(name_os, 0o755).map_err(|e| failed("create", &rel, e))?;
                    }
                }
                self.owner(&dir, name_os, &rel, h)?;
                self.xattrs(&dir, name_os, None, &rel, h)?;
                let mode = self.mode(h.mode);
                self.defer_dir(&dir, name_os, &rel, mode, h.mtime)?;
            }
            Kind::File => {
                dir.remove(name_os).map_err(|e| failed("remove", &rel, e))?;
                let mut f = dir.create_file(name_os, 0o600).map_err(|e| failed("create", &rel, e))?;
                match &h.sparse {
                    None => self.copy(data, &mut f, u64::MAX, &rel)?,
                    // Each region where it belongs; the holes stay holes
                    // (seek, then the length set at the end).
                    Some(map) => {
                        for &(off, len) in map {
                            f.seek(SeekFrom::Start(off)).map_err(|e| failed("write", &rel, e))?;
                            self.copy(data, &mut f, len, &rel)?;
                        }
                        f.set_len(h.size).map_err(|e| failed("write", &rel, e))?;
                    }
                }
                // The rest through the open file. Owner first: chown clears
                // file capabilities. The mode last: it stands over an ACL.
                if let Some((uid, gid)) = self.owner_ids(h)? {
                    std::os::unix::fs::fchown(&f, Some(uid), Some(gid))
                        .map_err(|e| failed("set the owner of", &rel, e))?;
                }
                self.xattrs(&dir, name_os, Some(f.as_raw_fd()), &rel, h)?;
                let mode = self.mode(h.mode);
                super::dirfd::set_meta_of(f.as_raw_fd(), mode, h.mtime)
                    .map_err(|e| failed("set the mode and time of", &rel, e))?;
            }
            Kind::Symlink => {
                dir.remove(name_os).map_err(|e| failed("remove", &rel, e))?;
                dir.symlink(OsStr::new(h.link.as_str()), name_os)
                    .map_err(|e| failed("create", &rel, e))?;
                self.owner(&dir, name_os, &rel, h)?;
                self.xattrs(&dir, name_os, None, &rel, h)?;
                dir.set_mtime(name_os, h.mtime)
                    .map_err(|e| failed("set the time of", &rel, e))?;
            }
            Kind::HardLink => {
                let (src_dir, src_id, src_name) = self.link_source(&h.link)?;
                if (src_id, src_name.as_str()) != (dir_id, name.as_str()) {
                    dir.remove(name_os).map_err(|e| failed("remove", &rel, e))?;
                    dir.link(&src_dir, OsStr::new(src_name.as_str()), name_os)
                        .map_err(|e| failed("link", &rel, e))?;
                }
                // The source's parent is remembered now, and this entry
                // changed a name that may be on its path.
                self.last = None;
            }
            Kind::CharDevice | Kind::BlockDevice | Kind::Fifo => {
                if h.kind != Kind::Fifo && !self.is_root {
                    self.note_rootless();
                    return Ok(());
                }
                dir.remove(name_os).map_err(|e| failed("remove", &rel, e))?;
                let kind = match h.kind {
                    Kind::CharDevice => libc::S_IFCHR,
                    Kind::BlockDevice => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                let mode = self.mode(h.mode) & 0o7777;
                let dev = libc::makedev(h.dev_major, h.dev_minor);
                // Created with its mode: no chmod by name after it. (chown
                // clears setuid, which means nothing on a node or FIFO.)
                dir.mknod(name_os, kind | mode, dev)
                    .map_err(|e| failed("create", &rel, e))?;
                crate::install::fault("mknod")?;
                self.owner(&dir, name_os, &rel, h)?;
                self.xattrs(&dir, name_os, None, &rel, h)?;
                dir.set_mtime(name_os, h.mtime)
                    .map_err(|e| failed("set the time of", &rel, e))?;
            }
        }
        self.mark_created(dir_id, name_os)
    }

    /// Copy at most `limit` bytes of the entry's data into `f` (all of it
    /// when the data ends first; a sparse map was checked to match it).
    fn copy<R: Read>(&mut self, data: &mut tar::Reader<R>, f: &mut std::fs::File, limit: u64, rel: &str) -> Result<()> {
        let mut left = limit;
        while left > 0 {
            let want = usize::try_from(left).map_or(self.buf.len(), |l| l.min(self.buf.len()));
            let n = data.read(&mut self.buf[..want])?;
            if n == 0 {
                break;
            }
            f.write_all(&self.buf[..n]).map_err(|e| failed("write", rel, e))?;
            left -= n as u64;
        }
        Ok(())
    }

    /// Remember a directory's mode and mtime for the end of the layer, or,
    /// past [`MAX_DEFERRED_BYTES`], apply them now.
    fn defer_dir(&mut self, dir: &Dir, name: &OsStr, rel: &str, mode: u32, mtime: i64) -> Result<()> {
        if let Some(slot) = self.dirs.get_mut(rel) {
            *slot = (mode, mtime);
            return Ok(());
        }
        if self.dir_bytes + rel.len() > MAX_DEFERRED_BYTES {
            if !self.noted_dirs {
                self.noted_dirs = true;
                self.progress.note(
                    "the layer declares more directories than minipull remembers; the rest get their \
                     mode and time at once (a later entry may change such a directory's mtime)",
                );
            }
            let mode = if self.is_root { mode } else { mode | 0o700 };
            dir.chmod(name, mode & 0o7777)
                .map_err(|e| failed("set the mode of", rel, e))?;
            return dir
                .set_mtime(name, mtime)
                .map_err(|e| failed("set the time of", rel, e));
        }
        self.dir_bytes += rel.len();
        self.dirs.insert(rel.to_string(), (mode, mtime));
        Ok(())
    }

    /// The directory `comps` names, resolved inside the root (links on the
    /// way followed as if the root were `/`), and its identity. Missing
    /// directories on the resolved path are created when `create`, else the
    /// answer is None, as when a file is on the way.
    fn walk(&mut self, comps: &[String], create: bool) -> Result<Option<(Rc<Dir>, DirId)>> {
        if let Some((path, dir, id)) = &self.last {
            if path.as_slice() == comps {
                return Ok(Some((dir.clone(), *id)));
            }
        }
        // Whatever comes next may change a name on the remembered path.
        self.last = None;
        if comps.is_empty() {
            return Ok(Some((self.root.clone(), self.root_id)));
        }
        let mut mkdir = |parent: &Dir, name: &OsStr| implied_dir(parent, name);
        let make: Option<Mkdir> = if create { Some(&mut mkdir) } else { None };
        let rel = || comps.join("/");
        let (dir, plain) = match self.root.resolve(comps, make) {
            Ok(found) => found,
            Err(e) => {
                return match e.raw_os_error() {
                    Some(libc::ENOENT | libc::ENOTDIR) if !create => Ok(None),
                    Some(libc::ENOTDIR) => Err(Error::integrity(format!(
                        "its parent /{} goes through something that is not a directory",
                        rel()
                    ))),
                    Some(libc::ELOOP) => Err(Error::integrity(format!(
                        "its parent /{} goes through more than 40 symbolic links",
                        rel()
                    ))),
                    Some(libc::ENAMETOOLONG) => Err(Error::integrity(format!(
                        "its parent /{} resolves deeper than {MAX_DEPTH} components",
                        rel()
                    ))),
                    _ => Err(failed("open", &rel(), e)),
                }
            }
        };
        let id = dir.id().map_err(|e| failed("read", &rel(), e))?;
        let dir = Rc::new(dir);
        // Through a link, a change to a name inside could move the path.
        self.last = plain.then(|| (comps.to_vec(), dir.clone(), id));
        Ok(Some((dir, id)))
    }

    /// A hard link's source: resolved inside the root like an entry's path
    /// (an absolute target, as kaniko writes, names a path in the root),
    /// itself never followed, not a directory. Returns its directory, that
    /// directory's identity and its name.
    fn link_source(&mut self, link: &str) -> Result<(Rc<Dir>, DirId, String)> {
        let comps = clean(link).map_err(|e| e.context("hard link target"))?;
        let Some((name, parents)) = comps.split_last() else {
            return Err(Error::integrity("hard link to the root"));
        };
        let missing = || Error::integrity(format!("hard link to {}, which does not exist", Quoted(link)));
        let (dir, id) = match self.walk(parents, false) {
            Ok(Some(d)) => d,
            Ok(None) => return Err(missing()),
            Err(e) => return Err(e.context(format!("hard link to {}", Quoted(link)))),
        };
        match dir.find(OsStr::new(name.as_str())) {
            Ok(Found::Nothing) | Err(_) => Err(missing()),
            Ok(Found::Dir) => Err(Error::integrity(format!("hard link to the directory {}", Quoted(link)))),
            Ok(_) => Ok((dir, id, name.clone())),
        }
    }

    /// `.wh..wh..opq`: hide what lower layers put in `dir`. What this layer
    /// created stays; directories it declared again or only passed through
    /// stay too, but not the lower content inside them. The directory keeps
    /// its times. True when something was removed.
    fn opaque(&mut self, dir: &Dir, dir_rel: &str) -> Result<bool> {
        let id = dir.id().map_err(|e| failed("read", dir_rel, e))?;
        let times = dir.times().map_err(|e| failed("read", dir_rel, e))?;
        let names = dir.names().map_err(|e| failed("list", dir_rel, e))?;
        let mut removed = false;
        for name in names {
            let rel = join(dir_rel, &name.to_string_lossy());
            if !self.was_created(id, &name) {
                removed |= self.hide(dir, &name, &rel)?;
            } else if dir.find(&name).map_err(|e| failed("read", &rel, e))? == Found::Dir {
                let sub = dir.dir(&name).map_err(|e| failed("open", &rel, e))?;
                self.opaque(&sub, &rel)?;
            }
        }
        if removed {
            dir.set_times(&times)
                .map_err(|e| failed("set the time of", dir_rel, e))?;
        }
        Ok(removed)
    }

    /// Remove the lower layers' `name` from `dir`: a directory loses what
    /// they put in it, and goes too unless something of this layer is left
    /// inside (a walk passed through it: an implied parent). True when
    /// something was removed.
    fn hide(&mut self, dir: &Dir, name: &OsStr, rel: &str) -> Result<bool> {
        match dir.find(name).map_err(|e| failed("read", rel, e))? {
            Found::Nothing => Ok(false),
            Found::Dir => {
                let sub = dir.dir(name).map_err(|e| failed("open", rel, e))?;
                let removed = self.opaque(&sub, rel)?;
                match dir.rmdir(name) {
                    Ok(()) => Ok(true),
                    Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => Ok(removed),
                    Err(e) => Err(failed("remove", rel, e)),
                }
            }
            _ => dir.unlink(name).map(|_| true).map_err(|e| failed("remove", rel, e)),
        }
    }

    fn owner(&mut self, dir: &Dir, name: &OsStr, rel: &str, h: &Header) -> Result<()> {
        match self.owner_ids(h)? {
            Some((uid, gid)) => dir
                .chown(name, uid, gid)
                .map_err(|e| failed("set the owner of", rel, e)),
            None => Ok(()),
        }
    }

    /// The owner to give an entry: only as root (else one note says owners
    /// are not applied).
    fn owner_ids(&mut self, h: &Header) -> Result<Option<(u32, u32)>> {
        if !self.is_root {
            if h.uid != 0 || h.gid != 0 {
                self.note_rootless();
            }
            return Ok(None);
        }
        match (u32::try_from(h.uid), u32::try_from(h.gid)) {
            (Ok(uid), Ok(gid)) => Ok(Some((uid, gid))),
            _ => Err(Error::integrity(format!("owner {}:{} is out of range", h.uid, h.gid))),
        }
    }

    /// The entry's extended attributes (file capabilities among them): those
    /// [`xattr_kept`] allows, as root; `user.*` only otherwise (the kernel
    /// allows no more), with one note naming what was skipped. On an open
    /// file through its descriptor, else through the parent's handle.
    /// Called before the entry's mode is set, so an ACL cannot widen it.
    fn xattrs(&mut self, dir: &Dir, name: &OsStr, fd: Option<RawFd>, rel: &str, h: &Header) -> Result<()> {
        let mut skipped = Vec::new();
        for (attr, value) in &h.xattrs {
            if !xattr_kept(attr, &self.keep_xattrs) {
                if self.dropped.len() < MAX_DROPPED_NAMES && attr.len() <= 255 && !self.dropped.contains(attr) {
                    self.dropped.push(attr.clone());
                }
                continue;
            }
            if !self.is_root && !attr.starts_with("user.") {
                skipped.push(attr.as_str());
                continue;
            }
            let r = match fd {
                Some(fd) => super::dirfd::set_xattr_fd(fd, attr, value),
                None => dir.set_xattr(name, attr, value),
            };
            match r {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                    if !self.noted_xattrs {
                        self.noted_xattrs = true;
                        self.progress.warn(format!(
                            "the filesystem of ROOTFS keeps no extended attribute {attr} (/{rel}): file \
                             capabilities and the like are lost"
                        ));
                    }
                }
                // The kernel keeps user.* only on files and directories.
                Err(e) if e.raw_os_error() == Some(libc::EPERM) && attr.starts_with("user.") => {
                    skipped.push(attr.as_str())
                }
                Err(e) => return Err(failed(&format!("set the extended attribute {attr} of"), rel, e)),
            }
        }
        if !skipped.is_empty() && !self.noted_xattrs {
            self.noted_xattrs = true;
            self.progress.note(format!(
                "extended attributes skipped (not root: only user.* can be set; user.* only on files and \
                 directories): {} on /{rel}",
                skipped.join(", ")
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

    /// Give this layer's directories their modes and times, deepest first.
    /// Each is found again from the root one component at a time without
    /// following a link: a directory the layer replaced by a link since
    /// (`x/` then `x -> /etc`) is skipped, never followed.
    fn finish_layer(&mut self) -> Result<()> {
        let mut dirs: Vec<(String, (u32, i64))> = self.dirs.drain().collect();
        self.dir_bytes = 0;
        dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.matches('/').count()));
        let mut skipped = 0usize;
        for (rel, (mut mode, mtime)) in dirs {
            if !self.is_root && mode & 0o700 != 0o700 {
                if self.tight.len() < MAX_LAYER_ENTRIES / 16 {
                    self.tight.push((rel.clone(), mode));
                }
                mode |= 0o700;
            }
            if !self.set_dir_meta(&rel, mode, Some(mtime))? {
                skipped += 1;
            }
        }
        if skipped > 0 {
            self.progress.note(format!(
                "{skipped} directories of the layer were replaced or removed before its end; \
                 their modes and times were not applied"
            ));
        }
        Ok(())
    }

    /// Find `rel` again through handles and give it `mode` and `mtime` (its
    /// own mtime when None). False when it is no longer a directory.
    fn set_dir_meta(&mut self, rel: &str, mode: u32, mtime: Option<i64>) -> Result<bool> {
        let comps: Vec<String> = rel.split('/').map(str::to_string).collect();
        let Some((name, parents)) = comps.split_last() else {
            return Ok(false);
        };
        let parent = match self.walk(parents, false) {
            Ok(Some((d, _))) => d,
            Ok(None) | Err(_) => return Ok(false),
        };
        let name = OsStr::new(name.as_str());
        // Opened for reading where we may (fchmod works on that); else a
        // path-only handle (not root, a directory we cannot read).
        let found = match parent.dir_readable(name) {
            Ok(f) => Opened::Readable(f),
            Err(_) => match parent.dir(name) {
                Ok(d) => Opened::PathOnly(d),
                Err(_) => return Ok(false),
            },
        };
        let fd = match &found {
            Opened::Readable(f) => f.as_raw_fd(),
            Opened::PathOnly(d) => d.as_raw_fd(),
        };
        let mtime = match mtime {
            Some(t) => t,
            None => super::dirfd::mtime_of(fd).map_err(|e| failed("read", rel, e))?,
        };
        super::dirfd::set_meta_of(fd, mode, mtime).map_err(|e| failed("set the mode and time of", rel, e))?;
        Ok(true)
    }

    /// After the last layer: the modes that would have locked us out.
    pub fn finish(&mut self) -> Result<()> {
        if !self.dropped.is_empty() {
            self.progress.note(format!(
                "extended attributes not applied (outside the default set; --keep-xattrs PREFIX keeps a \
                 namespace): {}",
                self.dropped.join(", ")
            ));
        }
        let mut tight = std::mem::take(&mut self.tight);
        tight.sort_by_key(|(p, _)| std::cmp::Reverse(p.matches('/').count()));
        for (rel, mode) in tight {
            self.set_dir_meta(&rel, mode, None)?;
        }
        Ok(())
    }
}

/// A directory opened to change its own mode and time.
enum Opened {
    Readable(std::fs::File),
    PathOnly(Dir),
}

/// A parent no entry declared: 0755 whatever the umask (as moby makes
/// them), so a tree does not depend on who unpacked it.
fn implied_dir(parent: &Dir, name: &OsStr) -> std::io::Result<()> {
    parent.mkdir(name, 0o755)?;
    let d = parent.dir_readable(name)?;
    // SAFETY: d is an open directory.
    if unsafe { libc::fchmod(d.as_raw_fd(), 0o755) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn join(dir_rel: &str, name: &str) -> String {
    if dir_rel.is_empty() {
        name.to_string()
    } else {
        format!("{dir_rel}/{name}")
    }
}

/// An entry's path as components under the root: `./` and `.` dropped, a
/// leading `/` stripped (GNU tar, containerd) and `..` clamped at the root,
/// lexically before any link is resolved, as containerd does (the kernel
/// would take `..` after a link physically; containerd is followed here);
/// absurd depths refused.
pub fn clean(path: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c if c.contains('\0') => return Err(Error::integrity("a path with a NUL byte")),
            c => out.push(c.to_string()),
        }
    }
    if out.len() > MAX_DEPTH {
        return Err(Error::integrity(format!(
            "a path {} components deep (at most {MAX_DEPTH})",
            out.len()
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_paths() {
        assert_eq!(clean("./a/b/").unwrap(), vec!["a", "b"]);
        assert_eq!(clean("a//./b").unwrap(), vec!["a", "b"]);
        assert!(clean(".").unwrap().is_empty());
        assert_eq!(clean("/etc/passwd").unwrap(), vec!["etc", "passwd"]);
        assert_eq!(clean("a/../../etc").unwrap(), vec!["etc"]);
        assert_eq!(clean("../../x/../y").unwrap(), vec!["y"]);
        assert!(clean("..").unwrap().is_empty());
    }

    #[test]
    fn xattr_allowlist() {
        let none: &[String] = &[];
        for kept in [
            "security.capability",
            "security.ima",
            "security.evm",
            "user.anything",
            "system.posix_acl_access",
            "system.posix_acl_default",
        ] {
            assert!(xattr_kept(kept, none), "{kept}");
        }
        for dropped in [
            "trusted.overlay.opaque",
            "trusted.x",
            "security.selinux",
            "security.capabilityx",
            "system.nfs4_acl",
        ] {
            assert!(!xattr_kept(dropped, none), "{dropped}");
        }
        let trusted = ["trusted.".to_string()];
        assert!(xattr_kept("trusted.x", &trusted));
        assert!(!xattr_kept("trusted.overlay.redirect", &trusted));
        let overlay = ["trusted.overlay.".to_string()];
        assert!(xattr_kept("trusted.overlay.redirect", &overlay));
        assert!(!xattr_kept("trusted.x", &overlay));
        assert!(xattr_kept("security.selinux", &["security.selinux".to_string()]));
    }

    #[test]
    fn absurd_depths_are_refused() {
        assert!(clean(&"a/".repeat(MAX_DEPTH)).is_ok());
        assert!(clean(&"a/".repeat(MAX_DEPTH + 1)).is_err());
    }
}

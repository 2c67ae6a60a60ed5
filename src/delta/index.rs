//! The local file index: for each regular file the zstd:chunked layers of an
//! installed image put in ROOTFS, its sha256 (from the layer's verified TOC),
//! size, inode, mtime, ctime and path, written beside the install record
//! (`<ROOTFS>.minipull-files`) once the image is in place. The next update
//! then knows which files the root holds without reading the root: an
//! unchanged file is read once, while it is copied. (A file that moved is
//! found by its chunks in the previous TOC.)
//!
//! Nothing in it is taken on its word: an entry counts only while the file's
//! `fstat` still says the same (size, inode, mtime, ctime: a file changed
//! since the install is not reused), and every reused file is re-hashed
//! against the new TOC as it is copied (a mismatch fails the partial pull
//! of that layer, which is then fetched whole). Names not in the index are hashed, as
//! without one. The file is read with `pread` as it is needed: its size on
//! disk is 88 bytes per file plus the names, and none of it is held in
//! memory.
//!
//! Format (little-endian): a 48-byte header (magic, the root directory's
//! device and inode, the entry count, the names' length), the entries sorted
//! by the FNV-1a hash of the name (88 bytes each), then the names.

use super::plan::Local;
use super::root::Root;
use super::Sha;
use crate::error::{Error, Result};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 16] = b"minipull-files1\n";
const HEADER: u64 = 48;
const ENTRY: u64 = 88;
/// An index with more entries, or longer names, is not used.
const MAX_FILES: u64 = super::MAX_ENTRIES as u64;
pub(super) const MAX_NAMES: u64 = 256 << 20;
/// A name longer than this is neither written nor read.
const MAX_NAME: usize = 64 * 1024;
/// Same-hash candidates looked at for one lookup.
const MAX_CANDIDATES: usize = 8;

/// The index file that belongs beside root `root`.
pub fn path_for(root: &Path) -> Option<PathBuf> {
    let mut name = root.file_name()?.to_os_string();
    name.push(".minipull-files");
    Some(root.with_file_name(name))
}

/// A TOC name as the index keys it: no `./`, no leading or doubled `/`.
fn clean(name: &str) -> String {
    name.split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect::<Vec<_>>()
        .join("/")
}

fn fnv(name: &[u8]) -> u64 {
    name.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What the index says of one file, and what `fstat` must still say:
/// size, inode, mtime and ctime seconds, both nanoseconds in one word.
type Stat = [u64; 5];

// The field types differ between targets (32-bit ARM, riscv64, x86_64).
#[allow(clippy::unnecessary_cast)]
fn stat_of(st: &libc::stat) -> Stat {
    [
        st.st_size as u64,
        st.st_ino as u64,
        st.st_mtime as u64,
        st.st_ctime as u64,
        (st.st_mtime_nsec as u64) << 32 | st.st_ctime_nsec as u64,
    ]
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// An entry: the name's hash, its place in the names (offset << 32 |
/// length), the [`Stat`], and the content's sha256.
struct Entry {
    words: [u64; 7],
    digest: Sha,
}

impl Entry {
    fn key(&self) -> u64 {
        self.words[0]
    }

    fn name(&self) -> (u64, u64) {
        (self.words[1] >> 32, self.words[1] & 0xffff_ffff)
    }

    fn stat(&self) -> &[u64] {
        &self.words[2..]
    }

    fn encode(&self) -> [u8; ENTRY as usize] {
        let mut b = [0u8; ENTRY as usize];
        for (i, w) in self.words.iter().enumerate() {
            b[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        b[56..].copy_from_slice(&self.digest);
        b
    }

    fn decode(b: &[u8]) -> Entry {
        let mut e = Entry {
            words: [0; 7],
            digest: [0; 32],
        };
        for (i, w) in e.words.iter_mut().enumerate() {
            *w = u64_at(b, i * 8);
        }
        e.digest.copy_from_slice(&b[56..88]);
        e
    }
}

/// Write the index of `root` from its files' `(name, size, digest)`, in
/// layer order (a later layer's entry for a name wins). Files that are not
/// regular, not there, or of another size are left out, and so are names
/// longer than a lookup reads and entries past the reader's cap. Written as
/// the layout writes its files (a new temporary, synced, renamed, the
/// directory synced): a cut leaves the old index or the new one, and either
/// is checked against `fstat` before it counts.
pub fn write(root_path: &Path, files: Vec<(String, u64, Sha)>) -> Result<usize> {
    let path = path_for(root_path).ok_or_else(|| Error::other("ROOTFS has no name to put its file index beside"))?;
    let root = Root::open(root_path).map_err(|e| Error::storage(format!("cannot open {}", root_path.display()), &e))?;
    let (dev, ino) = root.id();
    // The last entry of each name, kept in name order.
    let mut files: Vec<(String, u64, Sha)> = files.into_iter().rev().map(|(n, s, d)| (clean(&n), s, d)).collect();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files.dedup_by(|later, first| later.0 == first.0);
    let mut names = Vec::new();
    let mut entries = Vec::with_capacity(files.len());
    for (name, size, digest) in files {
        let Ok((_, st)) = root.file_stat(&name) else { continue };
        let stat = stat_of(&st);
        if stat[0] != size
            || name.len() > MAX_NAME
            || names.len() as u64 + name.len() as u64 > MAX_NAMES
            || entries.len() as u64 == MAX_FILES
        {
            continue;
        }
        let mut words = [
            fnv(name.as_bytes()),
            (names.len() as u64) << 32 | name.len() as u64,
            0,
            0,
            0,
            0,
            0,
        ];
        words[2..].copy_from_slice(&stat);
        entries.push(Entry { words, digest });
        names.extend_from_slice(name.as_bytes());
    }
    entries.sort_unstable_by_key(Entry::key);
    let mut out = Vec::with_capacity(HEADER as usize + entries.len() * ENTRY as usize + names.len());
    out.extend_from_slice(MAGIC);
    for v in [dev, ino, entries.len() as u64, names.len() as u64] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for e in &entries {
        out.extend_from_slice(&e.encode());
    }
    out.extend_from_slice(&names);
    let mut tmp = path.clone().into_os_string();
    tmp.push("-tmp");
    crate::layout::write_atomic(Path::new(&tmp), &path, &out)?;
    Ok(entries.len())
}

/// An open index, read as it is needed.
pub struct Index {
    file: File,
    n: u64,
    names_len: u64,
}

impl Index {
    /// The index beside `root_path`, if there is one that describes the root
    /// directory `root` has open (same device and inode) and is well formed.
    pub fn open(root_path: &Path, root: &Root) -> Option<Index> {
        // Not a link, and never a FIFO to wait on: a regular file or nothing.
        let file = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .open(path_for(root_path)?)
                .ok()?
        };
        let meta = file.metadata().ok().filter(|m| m.is_file())?;
        let mut h = [0u8; HEADER as usize];
        file.read_exact_at(&mut h, 0).ok()?;
        let (n, names_len) = (u64_at(&h, 32), u64_at(&h, 40));
        if &h[..16] != MAGIC || (u64_at(&h, 16), u64_at(&h, 24)) != root.id() || n > MAX_FILES || names_len > MAX_NAMES
        {
            return None;
        }
        let len = meta.len();
        (len == HEADER + n * ENTRY + names_len).then_some(Index { file, n, names_len })
    }

    fn entry(&self, i: u64) -> Option<Entry> {
        let mut b = [0u8; ENTRY as usize];
        self.file.read_exact_at(&mut b, HEADER + i * ENTRY).ok()?;
        Some(Entry::decode(&b))
    }

    fn name(&self, e: &Entry) -> Option<String> {
        let (off, len) = e.name();
        if off + len > self.names_len || len > MAX_NAME as u64 {
            return None;
        }
        let mut b = vec![0u8; len as usize];
        self.file.read_exact_at(&mut b, HEADER + self.n * ENTRY + off).ok()?;
        String::from_utf8(b).ok()
    }

    /// The first position in `0..n` whose value is not below the wanted one.
    fn partition(&self, below: impl Fn(u64) -> Option<bool>) -> u64 {
        let (mut lo, mut hi) = (0, self.n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match below(mid) {
                Some(true) => lo = mid + 1,
                _ => hi = mid,
            }
        }
        lo
    }

    /// The entry for `name`.
    fn by_name(&self, name: &str) -> Option<Entry> {
        let key = fnv(name.as_bytes());
        let first = self.partition(|i| self.entry(i).map(|e| e.key() < key));
        (first..self.n.min(first + MAX_CANDIDATES as u64))
            .map_while(|i| self.entry(i).filter(|e| e.key() == key))
            .find(|e| self.name(e).as_deref() == Some(name))
    }
}

/// The reuse root with its index: [`Local`] answered from the index where
/// the file's `fstat` agrees with it, by hashing where the index says nothing.
pub struct Indexed {
    root: Root,
    index: Option<Index>,
}

impl Indexed {
    /// Open root `path` and the index beside it (if any, and if it is this root's).
    pub fn open(path: &Path) -> io::Result<Indexed> {
        let root = Root::open(path)?;
        let index = Index::open(path, &root);
        Ok(Indexed { root, index })
    }

    /// Whether an index of this root was found.
    pub fn has_index(&self) -> bool {
        self.index.is_some()
    }

    /// `fstat` of `name` agrees with what the index says of it.
    fn unchanged(&self, name: &str, said: &[u64]) -> bool {
        self.root.file_stat(name).is_ok_and(|(_, st)| stat_of(&st)[..] == *said)
    }
}

impl Local for Indexed {
    fn digest(&mut self, name: &str, size: u64) -> Option<Sha> {
        let clean = clean(name);
        match self.index.as_ref().map(|i| i.by_name(&clean)) {
            Some(Some(e)) => (e.stat()[0] == size && self.unchanged(&clean, e.stat())).then_some(e.digest),
            _ => self.root.digest(name, size),
        }
    }

    fn open(&mut self, name: &str) -> io::Result<File> {
        self.root.open(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_keyed_clean() {
        assert_eq!(clean("./usr//lib/x"), "usr/lib/x");
        assert_eq!(clean("/etc/./passwd"), "etc/passwd");
        assert_ne!(fnv(b"a"), fnv(b"b"));
    }

    #[test]
    fn entries_count_only_while_fstat_agrees() {
        let base = std::env::temp_dir().join(format!("minipull-delta-index-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let root = base.join("root");
        std::fs::create_dir_all(root.join("usr/lib")).unwrap();
        std::fs::write(root.join("usr/lib/a"), b"alpha").unwrap();
        std::fs::write(root.join("usr/lib/b"), b"beta!").unwrap();
        std::fs::write(root.join("c"), b"gamma").unwrap();
        let (a, b, c) = (super::super::sha(b"alpha"), super::super::sha(b"beta!"), [7u8; 32]);
        let files = vec![
            ("./usr/lib/a".to_string(), 5, [1u8; 32]),
            ("usr/lib/b".to_string(), 5, b),
            ("gone".to_string(), 3, [2u8; 32]),
            // A later layer's entry for the same name wins.
            ("/usr/lib/a".to_string(), 5, a),
            // The index says what the TOC said; the copy's re-hash is the check.
            ("c".to_string(), 5, c),
        ];
        assert_eq!(write(&root, files).unwrap(), 3, "the missing file is left out");
        let mut ix = Indexed::open(&root).unwrap();
        assert!(ix.has_index());
        assert_eq!(ix.digest("usr/lib/a", 5), Some(a));
        assert_eq!(ix.digest("./usr/lib/b", 5), Some(b));
        assert_eq!(ix.digest("c", 5), Some(c), "answered from the index, not read");
        assert_eq!(ix.digest("usr/lib/a", 4), None, "size differs");
        // Changed since the install (same size, new mtime and ctime): not reused.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(root.join("usr/lib/b"), b"BETA!").unwrap();
        assert_eq!(ix.digest("usr/lib/b", 5), None);
        // A name the index does not have is hashed, as without an index.
        std::fs::write(root.join("new"), b"delta").unwrap();
        assert_eq!(ix.digest("new", 5), Some(super::super::sha(b"delta")));
        // The index of another tree (another root inode) is not used.
        std::fs::rename(&root, base.join("moved")).unwrap();
        std::fs::create_dir_all(&root).unwrap();
        assert!(!Indexed::open(&root).unwrap().has_index());
        std::fs::remove_dir(&root).unwrap();
        std::fs::rename(base.join("moved"), &root).unwrap();
        assert!(Indexed::open(&root).unwrap().has_index());
        // A truncated index is not used.
        let p = path_for(&root).unwrap();
        let len = std::fs::metadata(&p).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(len - 1)
            .unwrap();
        assert!(!Indexed::open(&root).unwrap().has_index());
        let _ = std::fs::remove_dir_all(&base);
    }
}

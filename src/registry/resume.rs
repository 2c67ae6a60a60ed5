//! Resume records: which bytes of a partial download can be trusted.
//!
//! After a SIGKILL the page cache still holds every byte written, so a
//! partial file is good to its end. After a power cut it is not: its length
//! may have reached the disk while its last pages did not (they come back
//! as zeros). Beside each partial we keep a small record, replaced by
//! rename: the boot it was written in, and `(length, digest of the first
//! length bytes)` for each write-back window handed to the disk and for a
//! clean stop. On resume, a partial written in this same boot is trusted
//! whole; otherwise it is re-hashed once and cut to the longest prefix a
//! record vouches for. Only hashes are trusted, never the record's word:
//! a record newer than the data simply does not match.

use crate::digest::{hash_into, Digest, Hasher};
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};

/// First line of a record file.
const MAGIC: &str = "minipull-resume 1";
/// A record longer than this is not ours: ignored.
const MAX_BYTES: u64 = 16 * 1024;
/// Prefixes kept: the newest few are all a resume can use, since at most
/// three write-back windows are unsynced at any time.
const KEEP: usize = 8;

/// Known-good prefixes: (length, digest of the first length bytes).
pub type Prefixes = Vec<(u64, Digest)>;

/// The record beside a partial download.
#[derive(Debug, Default, PartialEq)]
pub struct Record {
    /// `/proc/sys/kernel/random/boot_id` when it was written.
    pub boot: Option<String>,
    /// Known-good prefixes, shortest first.
    pub prefixes: Prefixes,
}

/// Where the record of the partial at `part` lives.
pub fn path_of(part: &Path) -> PathBuf {
    let mut name = OsString::from(part.as_os_str());
    name.push(".resume");
    PathBuf::from(name)
}

/// This boot's identity, if the kernel tells it (not without /proc).
pub fn current_boot() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id = id.trim();
    (id.len() == 36 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')).then(|| id.to_string())
}

impl Record {
    /// Parse a record; anything malformed is no record at all (trust nothing).
    pub fn parse(text: &str) -> Option<Record> {
        let mut lines = text.lines();
        if lines.next()? != MAGIC {
            return None;
        }
        let mut rec = Record::default();
        for line in lines {
            let (key, value) = line.split_once(' ')?;
            if key == "boot" {
                rec.boot = Some(value.to_string());
            } else {
                let len: u64 = key.parse().ok()?;
                let digest = Digest::parse(value).ok()?;
                if rec.prefixes.last().is_some_and(|(l, _)| *l >= len) {
                    return None;
                }
                rec.prefixes.push((len, digest));
            }
        }
        Some(rec)
    }

    /// Read the record of `part`, if there is a well-formed one.
    pub fn read(part: &Path) -> Option<Record> {
        use std::io::Read;
        let mut text = String::new();
        crate::layout::open_no_follow(&path_of(part))
            .ok()?
            .take(MAX_BYTES)
            .read_to_string(&mut text)
            .ok()?;
        Record::parse(&text)
    }

    fn render(&self) -> String {
        let mut s = format!("{MAGIC}\n");
        if let Some(b) = &self.boot {
            s += &format!("boot {b}\n");
        }
        for (len, d) in &self.prefixes {
            s += &format!("{len} {d}\n");
        }
        s
    }

    /// Add a prefix (dropping the oldest beyond [`KEEP`]).
    pub fn push(&mut self, len: u64, digest: Digest) {
        self.prefixes.retain(|(l, _)| *l < len);
        self.prefixes.push((len, digest));
        let extra = self.prefixes.len().saturating_sub(KEEP);
        self.prefixes.drain(..extra);
    }

    /// Replace the record of `part` by rename. `durable`: fsync it too (a
    /// prefix that survives a power cut); otherwise losing it loses nothing
    /// the data itself has not lost.
    pub fn write(&self, part: &Path, durable: bool) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = path_of(part);
        let mut tmp = OsString::from(path.as_os_str());
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(self.render().as_bytes())?;
        if durable {
            f.sync_data()?;
        }
        std::fs::rename(&tmp, &path)?;
        if durable {
            if let Some(dir) = path.parent() {
                File::open(dir)?.sync_all()?;
            }
        }
        Ok(())
    }

    /// Remove the record of `part` (the blob is complete or thrown away).
    pub fn remove(part: &Path) {
        let _ = std::fs::remove_file(path_of(part));
    }
}

/// Re-hash the first `len` bytes of `file` into a fresh hasher and decide
/// how many to keep: all of them when `whole` (written in this boot), else
/// the longest prefix whose digest `record` holds. Returns the length kept,
/// the hasher at that length, and the prefixes still valid.
pub fn trusted_prefix(
    file: &mut File,
    hasher: Hasher,
    len: u64,
    record: Option<Record>,
    whole: bool,
) -> std::io::Result<(u64, Hasher, Prefixes)> {
    let prefixes: Vec<_> = record
        .map(|r| r.prefixes)
        .unwrap_or_default()
        .into_iter()
        .filter(|(l, _)| *l <= len)
        .collect();
    let (mut at, mut h) = (0u64, hasher);
    let mut kept = Vec::new();
    let mut good = (0, h.clone());
    for (plen, pd) in prefixes {
        let n = hash_into(&mut *file, &mut h, plen - at)?;
        at += n;
        if at != plen || h.clone().finish() != pd {
            break;
        }
        good = (plen, h.clone());
        kept.push((plen, pd));
    }
    if whole {
        // Hash on from wherever the prefix walk stopped: the bytes are the
        // page cache's, all good.
        let n = hash_into(&mut *file, &mut h, len - at)?;
        return Ok((at + n, h, kept));
    }
    Ok((good.0, good.1, kept))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Algorithm;

    fn digest_of(b: &[u8]) -> Digest {
        let mut h = Hasher::new(Algorithm::Sha256);
        h.update(b);
        h.finish()
    }

    #[test]
    fn parse_round_trips_and_refuses_junk() {
        let mut r = Record {
            boot: Some("b".into()),
            ..Record::default()
        };
        for n in 1..=10u64 {
            r.push(n * 10, digest_of(&[n as u8]));
        }
        assert_eq!(r.prefixes.len(), KEEP, "bounded");
        assert_eq!(Record::parse(&r.render()), Some(r));
        for bad in [
            "",
            "minipull-resume 2\n",
            "minipull-resume 1\n10 sha256:zz\n",
            "minipull-resume 1\nx y\n",
            // Not ascending.
            &format!("{MAGIC}\n20 {d}\n10 {d}\n", d = digest_of(b"")),
        ] {
            assert_eq!(Record::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn keeps_the_longest_prefix_that_hashes_right() {
        let dir = std::env::temp_dir().join(format!("minipull-resume-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("part");
        let data: Vec<u8> = (0..100u8).collect();
        let mut torn = data.clone();
        torn[75..].fill(0); // a power cut: the tail came back as zeros
        std::fs::write(&path, &torn).unwrap();
        let rec = Record {
            boot: None,
            prefixes: vec![
                (25, digest_of(&data[..25])),
                (50, digest_of(&data[..50])),
                (90, digest_of(&data[..90])), // newer than the data on disk
            ],
        };
        let mut f = File::open(&path).unwrap();
        let (len, h, kept) = trusted_prefix(&mut f, Hasher::new(Algorithm::Sha256), 100, Some(rec), false).unwrap();
        assert_eq!(len, 50);
        assert_eq!(h.finish(), digest_of(&data[..50]));
        assert_eq!(kept.len(), 2);

        // No record: nothing is trusted unless written in this boot.
        let mut f = File::open(&path).unwrap();
        let (len, ..) = trusted_prefix(&mut f, Hasher::new(Algorithm::Sha256), 100, None, false).unwrap();
        assert_eq!(len, 0);
        let mut f = File::open(&path).unwrap();
        let (len, h, _) = trusted_prefix(&mut f, Hasher::new(Algorithm::Sha256), 100, None, true).unwrap();
        assert_eq!((len, h.finish()), (100, digest_of(&torn)));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

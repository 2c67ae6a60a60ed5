//! `minipull export OUTDIR[:NAME] FILE|-`: one image (or every image) as an
//! OCI archive, the tar of an OCI layout that `skopeo copy oci-archive:`,
//! `podman load` and `ctr images import` read: `oci-layout`, an
//! `index.json` of the chosen entries (each naming its full reference in
//! `io.containerd.image.name` and its tag in
//! `org.opencontainers.image.ref.name`) and the blobs they reach, streamed
//! from the layout and checked against their digests on the way. FILE is
//! written under a temporary name created with `O_EXCL|O_NOFOLLOW` in its
//! directory, then renamed: it is whole or absent.

use super::*;
use crate::digest::{Digest, Hasher};
use crate::layout::{is_signature, CONTAINERD_NAME, REF_NAME};
use crate::manifest::Descriptor;
use std::io::Read;

pub(super) fn export_command(args: &Args) -> Result<i32> {
    let (dir, name) = split_layout_arg(&args.outdir);
    if !dir.join("oci-layout").is_file() {
        return Err(Error::not_found(format!("no OCI image layout at {}", dir.display())));
    }
    let progress = Progress::new(args.quiet);
    let layout = Layout::open_reader(&dir, args.lock_wait, progress)?;
    let entries = layout.entries()?;
    let images: Vec<&Descriptor> = entries.iter().filter(|e| !is_signature(e)).collect();
    let chosen: Vec<&Descriptor> = images
        .iter()
        .filter(|e| name.as_deref().is_none_or(|n| e.annotation(REF_NAME) == Some(n)))
        .copied()
        .collect();
    if chosen.is_empty() {
        let names: Vec<&str> = images.iter().filter_map(|e| e.annotation(REF_NAME)).collect();
        return Err(match &name {
            Some(n) => Error::not_found(format!(
                "no image named {} in {}",
                crate::error::Quoted(n),
                dir.display()
            ))
            .hint(format!("the layout has: {}", names.join(", "))),
            None => Error::not_found(format!("{} holds no image", dir.display())),
        });
    }
    // Everything is checked before the first byte is written.
    let mut blobs: Vec<(Digest, u64)> = Vec::new();
    let mut listed = Vec::new();
    for e in &chosen {
        let shown = e
            .annotation(CONTAINERD_NAME)
            .or(e.annotation(REF_NAME))
            .unwrap_or(&e.digest);
        let r = layout.reach(e, false)?;
        if !r.discarded.is_empty() {
            return Err(Error::not_found(format!(
                "the layers of {shown} were discarded after unpacking (--discard-layers); {} holds only its manifests and config",
                dir.display()
            ))
            .hint("pull it again without --discard-layers, then export it"));
        }
        if !r.missing.is_empty() {
            return Err(Error::not_found(format!(
                "{shown} is incomplete in {}: {} missing",
                dir.display(),
                crate::progress::count(r.missing.len() as u64, "blob", "blobs")
            ))
            .hint("pull it into this OUTDIR again"));
        }
        for (d, size, _) in r.blobs {
            if !blobs.iter().any(|(x, _)| *x == d) {
                blobs.push((d, size));
            }
        }
        // As they are: minipull's own annotations (io.minipull.*) are
        // ignored by the other tools.
        listed.push((*e).clone());
    }
    // The encoders write_entries already links (a slice to a value, a value pretty).
    let encode = |e: serde_json::Error| Error::other(format!("cannot encode index.json: {e}"));
    let manifests = serde_json::to_value(listed.as_slice()).map_err(encode)?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": crate::manifest::OCI_INDEX,
        "manifests": manifests,
    });
    let index = serde_json::to_vec_pretty(&index).map_err(encode)?;
    let total: u64 = blobs.iter().map(|(_, s)| s).sum();
    let write = |out: &mut dyn Write| -> Result<()> {
        let mut tar = Tar(out);
        tar.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        tar.file("index.json", &index)?;
        tar.entry("blobs/", b'5', 0)?;
        let mut algs: Vec<&str> = Vec::new();
        for (d, size) in &blobs {
            let alg = d.algorithm().name();
            if !algs.contains(&alg) {
                algs.push(alg);
                tar.entry(&format!("blobs/{alg}/"), b'5', 0)?;
            }
            tar.entry(&format!("blobs/{alg}/{}", d.hex()), b'0', *size)?;
            tar.blob(&layout, d, *size)?;
        }
        // The end of the archive: two zero blocks.
        tar.write(&[0; 1024])
    };
    let target = args.unpack.as_deref().ok_or_else(|| Error::usage("FILE is missing"))?;
    if target == Path::new("-") {
        // Straight to descriptor 1, unbuffered (the archive goes in blocks
        // of 512 bytes and more; nothing else is written to stdout), with
        // the writer a FILE gets.
        // SAFETY: descriptor 1 stays open for the life of the process, and
        // ManuallyDrop never closes it.
        let stdout = std::mem::ManuallyDrop::new(unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(1) });
        if std::io::IsTerminal::is_terminal(&*stdout) {
            return Err(Error::usage("refusing to write an archive to a terminal")
                .hint("redirect stdout (> FILE.tar) or give FILE"));
        }
        write(&mut &*stdout)?;
    } else {
        write_file(target, &write)?;
    }
    progress.note(format!(
        "exported {} ({}, {}) to {}",
        crate::progress::count(listed.len() as u64, "image", "images"),
        crate::progress::count(blobs.len() as u64, "blob", "blobs"),
        crate::progress::human(total),
        target.display()
    ));
    Ok(0)
}

/// Write FILE through `.FILE.minipull-PID.tmp` in its directory: created
/// with `O_EXCL|O_NOFOLLOW` on the directory's handle, synced, renamed.
fn write_file(target: &Path, write: &dyn Fn(&mut dyn Write) -> Result<()>) -> Result<()> {
    use std::ffi::CString;
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::os::unix::ffi::OsStrExt;
    let leaf = target
        .file_name()
        .filter(|_| !target.as_os_str().as_bytes().ends_with(b"/"))
        .ok_or_else(|| Error::usage(format!("FILE {} names no file", target.display())))?;
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir =
        std::fs::File::open(parent).map_err(|e| Error::storage(format!("cannot open {}", parent.display()), &e))?;
    let mut tmp = b".".to_vec();
    tmp.extend_from_slice(leaf.as_bytes());
    tmp.extend_from_slice(format!(".minipull-{}.tmp", std::process::id()).as_bytes());
    let (tmp, leaf) = match (CString::new(tmp), CString::new(leaf.as_bytes())) {
        (Ok(t), Ok(l)) => (t, l),
        _ => return Err(Error::usage("FILE holds a NUL byte")),
    };
    let failed = |e: std::io::Error| Error::storage(format!("cannot write {}", target.display()), &e);
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: `dir` is an open directory and `tmp` a valid C string.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), tmp.as_ptr(), flags, 0o644 as libc::c_uint) };
    if fd < 0 {
        return Err(failed(std::io::Error::last_os_error()));
    }
    // SAFETY: openat returned a new descriptor that nothing else owns.
    let file = unsafe { std::fs::File::from_raw_fd(fd) };
    crate::progress::exit_on_interrupt("FILE was not written; run the same command again");
    let done = (|| {
        write(&mut &file)?;
        file.sync_all().map_err(failed)?;
        // SAFETY: both names are valid C strings, `dir` an open directory.
        match unsafe { libc::renameat(dir.as_raw_fd(), tmp.as_ptr(), dir.as_raw_fd(), leaf.as_ptr()) } {
            0 => dir.sync_all().map_err(failed),
            _ => Err(failed(std::io::Error::last_os_error())),
        }
    })();
    if done.is_err() {
        // SAFETY: as above.
        unsafe { libc::unlinkat(dir.as_raw_fd(), tmp.as_ptr(), 0) };
    }
    done
}

/// `n` in octal digits filling `field`.
fn octal(field: &mut [u8], mut n: u64) {
    for b in field.iter_mut().rev() {
        *b = b'0' + (n & 7) as u8;
        n >>= 3;
    }
}

/// A tar (ustar, with a pax header for a name over 100 bytes) written as it goes.
struct Tar<'w>(&'w mut dyn Write);

impl Tar<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.0
            .write_all(bytes)
            .map_err(|e| Error::storage("cannot write the archive", &e))
    }

    /// A header for `name`, `kind` (b'0' file, b'5' directory, b'x' pax), `size`.
    fn entry(&mut self, name: &str, kind: u8, size: u64) -> Result<()> {
        if name.len() > 100 {
            // " path=NAME\n" after its own length in decimal.
            let rest = format!(" path={name}\n");
            let mut len = rest.len() + 1;
            while format!("{len}").len() + rest.len() > len {
                len += 1;
            }
            let record = format!("{len}{rest}");
            self.entry("PaxHeader", b'x', record.len() as u64)?;
            self.padded(record.as_bytes())?;
        }
        let mut h = [0u8; 512];
        let n = name.len().min(100);
        h[..n].copy_from_slice(&name.as_bytes()[..n]);
        let mode: &[u8] = if kind == b'5' { b"0000755" } else { b"0000644" };
        h[100..107].copy_from_slice(mode);
        h[108..115].copy_from_slice(b"0000000");
        h[116..123].copy_from_slice(b"0000000");
        if size < 1 << 33 {
            octal(&mut h[124..135], size);
        } else {
            // Base-256 (GNU, read by every tar that reads large files).
            h[124] = 0x80;
            h[128..136].copy_from_slice(&size.to_be_bytes());
        }
        h[136..147].copy_from_slice(b"00000000000");
        h[156] = kind;
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
        octal(&mut h[148..154], u64::from(sum));
        h[154] = 0;
        self.write(&h)
    }

    /// Bytes and the zeros that fill their last block.
    fn padded(&mut self, bytes: &[u8]) -> Result<()> {
        self.write(bytes)?;
        self.write(&[0; 512][..(512 - bytes.len() % 512) % 512])
    }

    fn file(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        self.entry(name, b'0', bytes.len() as u64)?;
        self.padded(bytes)
    }

    /// A blob's `size` bytes from the layout, hashed as they pass.
    fn blob(&mut self, layout: &Layout, d: &Digest, size: u64) -> Result<()> {
        let path = layout.blob_path(d);
        let mut from = layout
            .open_blob(d)
            .map_err(|e| crate::layout::planted_or(&path, e, "cannot read"))?
            .take(size);
        let mut h = Hasher::new(d.algorithm());
        let (mut buf, mut n) = (vec![0u8; 64 * 1024], 0u64);
        loop {
            let got = from
                .read(&mut buf)
                .map_err(|e| Error::storage(format!("cannot read {}", path.display()), &e))?;
            if got == 0 {
                break;
            }
            h.update(&buf[..got]);
            self.write(&buf[..got])?;
            n += got as u64;
        }
        if n != size || h.finish() != *d {
            return Err(
                Error::integrity(format!("{} does not match its digest", path.display()))
                    .hint("pull the image again with --verify"),
            );
        }
        self.write(&[0; 512][..((512 - size % 512) % 512) as usize])
    }
}

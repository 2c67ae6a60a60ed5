//! `minipull extract OUTDIR[:NAME] DIR`: an artifact's layers (kernels,
//! DTBs, firmware pushed with ORAS) as files in DIR, each named by its
//! `org.opencontainers.image.title`, checked against its digest as it is
//! copied. Everything is written into a private staging directory beside
//! DIR first; only when every layer is in place and verified does it move:
//! a new DIR is the staging directory renamed (the set appears at once); an
//! existing DIR gets one rename per name. Every file operation goes through
//! directory handles, and no name in DIR is followed.

use super::*;

/// The annotation naming a layer's file (OCI image-spec, ORAS).
const TITLE: &str = "org.opencontainers.image.title";
/// ORAS marks a layer that is a directory (a tar+gzip) with this.
const ORAS_UNPACK: &str = "io.deis.oras.content.unpack";

#[cfg(feature = "unpack")]
pub(super) fn extract_command(args: &Args, platform: &Platform) -> Result<i32> {
    use crate::error::Quoted;
    use crate::unpack::{self, Dir, Found, Select};
    use std::ffi::{OsStr, OsString};
    let (outdir, name) = split_layout_arg(&args.outdir);
    if !outdir.join("oci-layout").is_file() {
        return Err(Error::not_found(format!("no OCI image layout at {}", outdir.display()))
            .hint("pull into it first: minipull REF OUTDIR"));
    }
    let progress = Progress::new(args.quiet);
    let layout = Layout::open_reader(&outdir, args.lock_wait, progress)?;
    let select = match &name {
        Some(n) => Select::Name(n),
        None => Select::Only,
    };
    let image = unpack::find_image(&layout, select, platform)?;
    let layers = &image.manifest.layers;
    // The titles: each a plain file name, one per layer.
    let mut titles: Vec<&str> = Vec::new();
    let mut bad = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let t = l.annotation(TITLE).unwrap_or_default();
        let why = match t {
            "" => "has no title",
            "." | ".." => "has a title that is not a file name",
            _ if t.contains('/') || t.chars().any(char::is_control) || t.len() > 255 => {
                "has a title that is not a file name"
            }
            _ if titles.contains(&t) => "has the title of another layer",
            _ => {
                titles.push(t);
                continue;
            }
        };
        bad.push(format!("layer {} ({}) {why} {}", i + 1, l.digest, Quoted(t)));
    }
    if layers.is_empty() {
        bad.push("it has no layers".to_string());
    }
    if !bad.is_empty() {
        return Err(
            Error::integrity(format!("{} cannot be extracted: {}", image.name, bad.join("; "))).hint(format!(
                "extract writes each layer as the file its {TITLE} annotation names: a plain name, one per layer"
            )),
        );
    }
    let absent: Vec<&str> = layers
        .iter()
        .zip(&titles)
        .filter(|(l, _)| image.layers_discarded || l.checked_digest().map_or(true, |d| layout.blob_size(&d).is_none()))
        .map(|(_, t)| *t)
        .collect();
    if !absent.is_empty() {
        let why = match image.layers_discarded {
            true => "were discarded after unpacking (--discard-layers)",
            false => "are not in the layout",
        };
        return Err(
            Error::not_found(format!("the layers {} of {} {why}", absent.join(", "), image.name))
                .hint("pull the artifact again without --discard-layers"),
        );
    }

    // DIR: created if missing (by renaming the staging directory to it).
    let target = args.unpack.as_deref().ok_or_else(|| Error::usage("DIR is missing"))?;
    let leaf = match target.file_name() {
        Some(l) if target.to_str().is_none_or(|s| !s.ends_with("/.") && !s.ends_with('/')) => l.to_os_string(),
        _ => {
            return Err(Error::usage(format!(
                "DIR {} names no directory to create or fill",
                target.display()
            )))
        }
    };
    let parent_path = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let parent = Dir::open_root(parent_path)
        .map_err(|e| Error::storage(format!("cannot open {}", parent_path.display()), &e))?;
    let cannot = |what: &str, e: std::io::Error| Error::storage(format!("cannot {what} in {}", target.display()), &e);
    let existing = match parent.find(&leaf).map_err(|e| cannot("look", e))? {
        Found::Nothing => None,
        Found::Dir => Some(parent.dir(&leaf).map_err(|e| cannot("open", e))?),
        Found::Link => {
            return Err(Error::usage(format!("DIR {} is a symbolic link", target.display()))
                .hint("give the directory it points to"))
        }
        Found::Other => return Err(Error::usage(format!("DIR {} is not a directory", target.display()))),
    };
    if let Some(dir) = &existing {
        let mut there = Vec::new();
        for t in &titles {
            if dir.find(OsStr::new(t)).map_err(|e| cannot("look", e))? != Found::Nothing {
                there.push(*t);
            }
        }
        if !there.is_empty() && !args.force {
            return Err(Error::usage(format!(
                "{} already holds {}",
                target.display(),
                there
                    .iter()
                    .map(|t| Quoted(t).to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .hint("--force replaces them"));
        }
    }

    // The staging directory, private until it is renamed.
    let mut stage_name = OsString::from(".");
    stage_name.push(&leaf);
    stage_name.push(".minipull-extract");
    let stage_name = stage_name.as_os_str();
    let staged = parent_path.join(stage_name);
    parent
        .remove(stage_name)
        .map_err(|e| cannot("clear a staging directory", e))?;
    parent.mkdir(stage_name, 0o700).map_err(|e| cannot("stage", e))?;
    crate::progress::exit_on_interrupt("DIR is as it was; run the same command again");
    let run = || -> Result<()> {
        let stage = parent.dir(stage_name).map_err(|e| cannot("stage", e))?;
        for (layer, title) in layers.iter().zip(&titles) {
            let t = OsStr::new(title);
            if layer.annotation(ORAS_UNPACK) == Some("true") {
                // Unpacked beside the others (a name no title can have:
                // it has a control character), then only `TITLE/` kept.
                let tmp = OsStr::new("\u{1}dir");
                stage.mkdir(tmp, 0o700).map_err(|e| cannot("stage", e))?;
                unpack::apply_gzip_blob(&layout, layer, &staged.join(tmp), progress)
                    .map_err(|e| e.context(format!("layer {title}")))?;
                let inner = stage.dir(tmp).map_err(|e| cannot("stage", e))?;
                let names = inner.names().map_err(|e| cannot("stage", e))?;
                if names != [t] || inner.find(t).map_err(|e| cannot("stage", e))? != Found::Dir {
                    return Err(Error::integrity(format!(
                        "the directory layer {} holds entries outside {title}/",
                        Quoted(title)
                    )));
                }
                inner.rename(t, &stage, t, 0).map_err(|e| cannot("stage", e))?;
                stage.rmdir(tmp).map_err(|e| cannot("stage", e))?;
            } else {
                copy_verified(&layout, layer, &stage, t).map_err(|e| e.context(format!("layer {title}")))?;
            }
        }
        let fs_sync = |d: &Dir| d.dir_readable(OsStr::new(".")).and_then(|f| f.sync_all());
        fs_sync(&stage).map_err(|e| cannot("sync", e))?;
        match &existing {
            None => {
                let f = parent.dir_readable(stage_name).map_err(|e| cannot("stage", e))?;
                set_mode(&f, 0o755).map_err(|e| cannot("stage", e))?;
                put(&parent, stage_name, &parent, &leaf, false).map_err(|e| cannot("create", e))?;
                fs_sync(&parent).map_err(|e| cannot("sync", e))
            }
            Some(dir) => {
                for t in titles.iter().map(OsStr::new) {
                    // Replaced: swapped, so the old one leaves with the staging directory.
                    let replace = dir.find(t).map_err(|e| cannot("look", e))? != Found::Nothing;
                    put(&stage, t, dir, t, replace).map_err(|e| cannot("move files", e))?;
                }
                fs_sync(dir).map_err(|e| cannot("sync", e))
            }
        }
    };
    let done = run();
    let _ = parent.remove(stage_name);
    done?;
    progress.note(format!(
        "extracted {} into {}: {}",
        crate::progress::count(titles.len() as u64, "file", "files"),
        target.display(),
        crate::error::Clean(&titles.join(", "))
    ));
    Ok(0)
}

/// Copy a layer blob to the new file `name` in `dir` (mode 0644), checking
/// it against its digest and size on the way; the file is synced.
#[cfg(feature = "unpack")]
fn copy_verified(
    layout: &Layout,
    desc: &crate::manifest::Descriptor,
    dir: &crate::unpack::Dir,
    name: &std::ffi::OsStr,
) -> Result<()> {
    use std::io::Read;
    let (d, size) = (desc.checked_digest()?, desc.checked_size()?);
    let path = layout.blob_path(&d);
    let from = layout
        .open_blob(&d)
        .map_err(|e| crate::layout::planted_or(&path, e, "cannot read"))?;
    let mut to = dir
        .create_file(name, 0o644)
        .map_err(|e| Error::storage("cannot create the file", &e))?;
    let mut h = crate::digest::Hasher::new(d.algorithm());
    let (mut from, mut buf, mut n) = (from.take(size.saturating_add(1)), vec![0u8; 64 * 1024], 0u64);
    loop {
        let got = from
            .read(&mut buf)
            .map_err(|e| Error::storage(format!("cannot read {}", path.display()), &e))?;
        if got == 0 {
            break;
        }
        h.update(&buf[..got]);
        n += got as u64;
        to.write_all(&buf[..got])
            .map_err(|e| Error::storage("cannot write the file", &e))?;
    }
    if n != size || h.finish() != d {
        return Err(
            Error::integrity(format!("{} does not match its digest", path.display()))
                .hint("pull the artifact again with --verify"),
        );
    }
    // The mode whatever the umask.
    set_mode(&to, 0o644)
        .and_then(|()| to.sync_all())
        .map_err(|e| Error::storage("cannot write the file", &e))
}

/// Give `f` `mode`, unless the filesystem has no modes of its own (vfat
/// refuses a change its mount options do not give).
#[cfg(feature = "unpack")]
fn set_mode(f: &std::fs::File, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    match f.set_permissions(std::fs::Permissions::from_mode(mode)) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => Ok(()),
        r => r,
    }
}

/// Move `name` from `from` to `to_name` in `to`: never over something
/// there (`replace` false), or swapped with it (`replace`: what was there
/// is left in `from`). A filesystem without renameat2's flags (vfat before
/// Linux 6.0) gets plain renames, what was there moved aside into `from`
/// first.
#[cfg(feature = "unpack")]
fn put(
    from: &crate::unpack::Dir,
    name: &std::ffi::OsStr,
    to: &crate::unpack::Dir,
    to_name: &std::ffi::OsStr,
    replace: bool,
) -> std::io::Result<()> {
    let flags = if replace {
        libc::RENAME_EXCHANGE
    } else {
        libc::RENAME_NOREPLACE
    };
    match from.rename(name, to, to_name, flags) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            if replace {
                // A name no title has (a control character), one per name.
                let mut aside = std::ffi::OsString::from("\u{2}");
                aside.push(name);
                to.rename(to_name, from, &aside, 0)?;
            } else if to.find(to_name)? != crate::unpack::Found::Nothing {
                return Err(std::io::Error::from_raw_os_error(libc::EEXIST));
            }
            from.rename(name, to, to_name, 0)
        }
        r => r,
    }
}

#[cfg(not(feature = "unpack"))]
pub(super) fn extract_command(_: &Args, _: &Platform) -> Result<i32> {
    let _ = (TITLE, ORAS_UNPACK);
    Err(Error::usage(
        "this minipull was built without unpack support (cargo feature \"unpack\")",
    ))
}

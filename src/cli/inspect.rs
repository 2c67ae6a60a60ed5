//! `minipull inspect REF` (and `--layout OUTDIR[:NAME]`): what an image is,
//! without pulling it. Manifest requests only, and the config blob (at most
//! [`MAX_CONFIG_BYTES`]) when its fields are shown; never a layer. Every
//! manifest and config is checked against its digest before it is shown.

use super::connect::{sources, tls_settings};
use super::*;
use crate::digest::Digest;
use crate::error::{Clean, Quoted};
use crate::layout::{is_signature, CONTAINERD_NAME, REF_NAME};
use crate::manifest::{self as mf, Descriptor, Manifest, MAX_MANIFEST_BYTES};
use crate::mirror::Sources;
use serde_json::{json, Value};
use std::io::IsTerminal;

/// The largest config `inspect` reads.
const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// Where the manifests and the config come from.
enum Origin {
    Remote(Sources),
    Local(Layout),
}

impl Origin {
    /// The manifest `d` names (a child of an index), verified.
    fn manifest(&mut self, d: &Descriptor) -> Result<Vec<u8>> {
        let digest = d.checked_digest()?;
        let size = d.checked_size()?;
        if size > MAX_MANIFEST_BYTES {
            return Err(Error::integrity(format!(
                "manifest {digest} claims {size} bytes, more than 4 MiB"
            )));
        }
        match self {
            Origin::Remote(s) => {
                let (m, _) = s.manifest(&digest.to_string(), mf::ACCEPT, MAX_MANIFEST_BYTES)?;
                if Digest::of(digest.algorithm(), &m.bytes) != digest || m.bytes.len() as u64 != size {
                    return Err(Error::integrity(format!(
                        "manifest {digest}: the registry served content that does not match it"
                    )));
                }
                Ok(m.bytes)
            }
            Origin::Local(l) => l.read_small_blob(&digest, size).map_err(|e| match e.kind {
                crate::error::Kind::NotFound => {
                    e.hint("only the platforms pulled are in the layout (see --all-platforms)")
                }
                _ => e,
            }),
        }
    }

    /// The config `d` names, verified.
    fn config(&mut self, d: &Descriptor) -> Result<Vec<u8>> {
        let digest = d.checked_digest()?;
        match self {
            Origin::Remote(s) => s.small_blob(&digest, MAX_CONFIG_BYTES),
            Origin::Local(l) => l.read_small_blob(&digest, MAX_CONFIG_BYTES),
        }
    }
}

/// A manifest as shown: its bytes and what it is.
struct Shown {
    bytes: Vec<u8>,
    digest: String,
    media_type: String,
    manifest: Manifest,
}

impl Shown {
    fn new(bytes: Vec<u8>, digest: String, content_type: Option<&str>) -> Result<Shown> {
        let (media_type, manifest) =
            mf::parse(&bytes, content_type).map_err(|e| e.context(format!("manifest {digest}")))?;
        Ok(Shown {
            bytes,
            digest,
            media_type,
            manifest,
        })
    }
    fn summary(&self) -> Value {
        json!({"digest": self.digest, "mediaType": self.media_type, "size": self.bytes.len()})
    }
}

pub(super) fn inspect_command(args: &Args) -> Result<i32> {
    let (raw, want_config) = (args.opts.flag("--raw"), args.opts.flag("--config"));
    if raw && want_config {
        return Err(Error::usage("--raw and --config print one document each; give one"));
    }
    let progress = Progress::new(args.quiet);
    let (mut from, name, mut shown) = match args.opts.flag("--layout") {
        true => local(args, progress)?,
        false => remote(args, progress)?,
    };
    let mut out = json!({"reference": name});
    // An index: its platforms; a child only when one is asked for (or its config).
    if let Manifest::Index(index) = &shown.manifest {
        let platforms: Vec<Value> = index
            .manifests
            .iter()
            .map(|d| {
                json!({
                    "platform": d.platform.as_ref().map(|p| p.to_string()),
                    "digest": d.digest, "mediaType": d.media_type, "size": d.size,
                })
            })
            .collect();
        let wanted = match (&args.platform, want_config) {
            (Some(p), _) => Some(Platform::parse(p)?),
            (None, true) => Some(Platform::host()),
            (None, false) => None,
        };
        match wanted {
            Some(p) => {
                let child = mf::select_platform(&index.manifests, &p)?.clone();
                let mut parent = shown.summary();
                parent["platforms"] = platforms.into();
                out["index"] = parent;
                out["platform"] = child.platform.as_ref().map(|p| p.to_string()).into();
                let bytes = from.manifest(&child)?;
                shown = Shown::new(bytes, child.digest.clone(), Some(&child.media_type))?;
            }
            None => out["platforms"] = platforms.into(),
        }
    }
    if raw {
        print_document(&shown.bytes);
        return Ok(0);
    }
    for (k, v) in shown.summary().as_object().into_iter().flatten() {
        out[k] = v.clone();
    }
    if let Manifest::Image(m) = &shown.manifest {
        let size = m.config.checked_size()?;
        if want_config {
            if size > MAX_CONFIG_BYTES {
                return Err(Error::integrity(format!(
                    "the config claims {size} bytes, more than the 4 MiB minipull reads"
                )));
            }
            print_document(&from.config(&m.config)?);
            return Ok(0);
        }
        if let Ok(Value::Object(o)) = serde_json::from_slice::<Value>(&shown.bytes) {
            if let Some(t) = o.get("artifactType").filter(|t| t.is_string()) {
                out["artifactType"] = t.clone();
            }
        }
        let mut config = json!({"digest": m.config.digest, "mediaType": m.config.media_type, "size": size});
        match size <= MAX_CONFIG_BYTES {
            true => {
                let c: Value = serde_json::from_slice(&from.config(&m.config)?).unwrap_or(Value::Null);
                for k in ["os", "architecture", "variant", "created"] {
                    if let Some(v) = c.get(k).filter(|v| v.is_string()) {
                        config[k] = v.clone();
                    }
                }
            }
            false => progress.note("the config is larger than 4 MiB: its fields are not shown"),
        }
        out["config"] = config;
        out["layers"] = m
            .layers
            .iter()
            .map(|l| json!({"digest": l.digest, "mediaType": l.media_type, "size": l.size}))
            .collect::<Vec<_>>()
            .into();
    }
    match args.json {
        true => print_json(&out),
        false => print_text(&text(&out)),
    }
    Ok(0)
}

/// The manifest REF names, from the registry (or a mirror), verified
/// against REF's digest and the registry's `Docker-Content-Digest`.
fn remote(args: &Args, progress: Progress) -> Result<(Origin, String, Shown)> {
    let reference = Reference::parse(&args.reference)?;
    let tls = tls_settings(args, progress)?;
    let mut sources = sources(args, &reference, tls, progress)?;
    let tag = reference.manifest_reference();
    let (m, _) = sources.manifest(&tag, mf::ACCEPT, MAX_MANIFEST_BYTES)?;
    let mut claims: Vec<Digest> = reference.digest.iter().cloned().collect();
    if let Some(h) = &m.digest_header {
        claims.push(Digest::parse(h.trim()).map_err(|e| e.context("the Docker-Content-Digest header"))?);
    }
    for d in &claims {
        let got = Digest::of(d.algorithm(), &m.bytes);
        if got != *d {
            return Err(Error::integrity(format!(
                "manifest {reference}: the content hashes to {got}, not {d}"
            )));
        }
    }
    let digest = claims.first().cloned().unwrap_or_else(|| Digest::sha256_of(&m.bytes));
    let shown = Shown::new(m.bytes, digest.to_string(), m.content_type.as_deref())?;
    Ok((Origin::Remote(sources), reference.to_string(), shown))
}

/// The image OUTDIR[:NAME] holds, read as a reader (read-only media will do).
fn local(args: &Args, progress: Progress) -> Result<(Origin, String, Shown)> {
    let (dir, want) = split_layout_arg(&args.outdir);
    if !dir.join("oci-layout").is_file() {
        return Err(Error::not_found(format!("no OCI image layout at {}", dir.display())));
    }
    let layout = Layout::open_reader(&dir, crate::layout::LOCK_WAIT, progress)?;
    let entries = layout.entries()?;
    let images: Vec<&Descriptor> = entries.iter().filter(|e| !is_signature(e)).collect();
    let names = || {
        let n: Vec<&str> = images.iter().filter_map(|e| e.annotation(REF_NAME)).collect();
        format!("the layout has: {}", Clean(&n.join(", ")))
    };
    let entry = match (&want, images.as_slice()) {
        (Some(w), _) => images
            .iter()
            .find(|e| e.annotation(REF_NAME) == Some(w.as_str()))
            .ok_or_else(|| {
                Error::not_found(format!("no image named {} in {}", Quoted(w), dir.display())).hint(names())
            })?,
        (None, [one]) => one,
        (None, []) => return Err(Error::not_found(format!("{} holds no image", dir.display()))),
        (None, many) => {
            return Err(
                Error::usage(format!("{} holds {} images; say which", dir.display(), many.len()))
                    .hint(format!("write OUTDIR:NAME; {}", names())),
            )
        }
    };
    let d = entry.checked_digest()?;
    let bytes = layout.read_small_blob(&d, MAX_MANIFEST_BYTES)?;
    let name = entry
        .annotation(CONTAINERD_NAME)
        .or(entry.annotation(REF_NAME))
        .unwrap_or_default()
        .to_string();
    let shown = Shown::new(bytes, entry.digest.clone(), Some(&entry.media_type))?;
    Ok((Origin::Local(layout), name, shown))
}

/// The human form: one `key: value` a line, platforms and layers one a line.
fn text(v: &Value) -> String {
    let s = |v: &Value| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
    let mut rows: Vec<(&str, String)> = Vec::new();
    fn row(rows: &mut Vec<(&str, String)>, k: &'static str, v: Option<&Value>) {
        if let Some(v) = v.filter(|v| !v.is_null()) {
            rows.push((k, v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())));
        }
    }
    row(&mut rows, "reference", v.get("reference"));
    if let Some(i) = v.get("index") {
        row(&mut rows, "index", i.get("digest"));
    }
    row(&mut rows, "platform", v.get("platform"));
    row(&mut rows, "digest", v.get("digest"));
    row(&mut rows, "mediaType", v.get("mediaType"));
    row(&mut rows, "artifactType", v.get("artifactType"));
    row(&mut rows, "size", v.get("size"));
    for p in v["platforms"].as_array().into_iter().flatten() {
        let platform = p["platform"].as_str().unwrap_or("-");
        rows.push((
            "platforms",
            format!("{platform:<16} {} {}", s(&p["digest"]), s(&p["size"])),
        ));
    }
    if let Some(c) = v.get("config") {
        row(&mut rows, "config", c.get("digest"));
        row(&mut rows, "configType", c.get("mediaType"));
        row(&mut rows, "os", c.get("os"));
        row(&mut rows, "architecture", c.get("architecture"));
        row(&mut rows, "variant", c.get("variant"));
        row(&mut rows, "created", c.get("created"));
    }
    if let Some(l) = v["layers"].as_array() {
        let total: u64 = l.iter().filter_map(|l| l["size"].as_u64()).sum();
        rows.push(("layers", format!("{} ({})", l.len(), crate::progress::human(total))));
    }
    let mut out = String::new();
    let mut last = "";
    for (k, v) in rows {
        let key = if k == last { String::new() } else { format!("{k}:") };
        out.push_str(&format!("{key:<14}{v}\n"));
        last = k;
    }
    out
}

/// JSON on stdout, with every control character escaped (serde_json leaves
/// DEL and the C1 controls raw).
pub(super) fn print_json(v: &Value) {
    let mut clean = String::new();
    for c in v.to_string().chars() {
        match c.is_control() {
            true => clean += &format!("\\u{:04x}", c as u32),
            false => clean.push(c),
        }
    }
    let _ = writeln!(std::io::stdout(), "{clean}");
}

/// Lines of text that came from outside: escapes shown, never obeyed.
pub(super) fn print_text(s: &str) {
    let mut out = std::io::stdout().lock();
    for line in s.lines() {
        let _ = writeln!(out, "{}", Clean(line));
    }
}

/// A document as stored (a manifest, a config): the exact bytes to a pipe
/// or file; on a terminal, its escape sequences shown, not obeyed.
fn print_document(bytes: &[u8]) {
    let mut out = std::io::stdout();
    match out.is_terminal() {
        true => print_text(&String::from_utf8_lossy(bytes)),
        false => {
            let _ = out.write_all(bytes);
        }
    }
}

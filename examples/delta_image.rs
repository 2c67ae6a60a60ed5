//! For `bench/delta.sh`: write v1 and v2 of a zstd:chunked layer (the
//! in-suite writer, modern dialect) from real directory trees; v2 is v1 with
//! 64 bytes changed in the middle of one file.
//!
//!   delta_image OUTDIR CHANGED_FILE DIR...
//!
//! Writes OUTDIR/v{1,2}.blob, .diffid and .annotations (JSON).

use minipull::delta::testwriter::{dir, file, symlink, write, Entry};
use std::path::Path;

fn walk(root: &Path, out: &mut Vec<Entry>, changed: &str, v2: bool) {
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(m) = std::fs::symlink_metadata(&d) else { continue };
        let name = d.to_string_lossy().trim_start_matches('/').to_string();
        // The writer keeps names and link targets in the ustar header.
        if name.len() >= 99 {
            continue;
        }
        if m.file_type().is_symlink() {
            if let Ok(t) = std::fs::read_link(&d) {
                let t = t.to_string_lossy().to_string();
                if t.len() < 99 {
                    out.push(symlink(&name, &t));
                }
            }
        } else if m.is_dir() {
            out.push(dir(&format!("{name}/")));
            let Ok(rd) = std::fs::read_dir(&d) else { continue };
            let mut kids: Vec<_> = rd.flatten().map(|e| e.path()).collect();
            kids.sort();
            kids.reverse();
            stack.extend(kids);
        } else if m.is_file() {
            let Ok(mut data) = std::fs::read(&d) else { continue };
            if v2 && d.to_string_lossy() == changed {
                let mid = data.len() / 2;
                for b in &mut data[mid..mid + 64] {
                    *b ^= 0x5a;
                }
            }
            out.push(file(&name, data));
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [out, changed, dirs @ ..] = args.as_slice() else {
        eprintln!("usage: delta_image OUTDIR CHANGED_FILE DIR...");
        std::process::exit(2);
    };
    for (tag, v2) in [("v1", false), ("v2", true)] {
        let mut entries = Vec::new();
        for d in dirs {
            walk(Path::new(d), &mut entries, changed, v2);
        }
        let l = write(&entries, |_| {}, |_| {});
        let out = Path::new(out);
        std::fs::write(out.join(format!("{tag}.blob")), &l.blob).expect("write the blob");
        std::fs::write(out.join(format!("{tag}.diffid")), l.diff_id()).expect("write the diff_id");
        let ann = serde_json::to_vec(&l.annotations).expect("annotations");
        std::fs::write(out.join(format!("{tag}.annotations")), ann).expect("write the annotations");
        eprintln!(
            "{tag}: {} entries, tar {} bytes, blob {} bytes",
            entries.len(),
            l.tar.len(),
            l.blob.len()
        );
    }
}

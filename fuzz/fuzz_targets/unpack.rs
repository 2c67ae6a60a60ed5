//! Any bytes as one or two layers (split at the first 0xff 0xfe pair)
//! unpacked into a fresh directory beside a canary: whatever happens, the
//! canary directory is exactly as it was.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let content = std::fs::read(&p).unwrap_or_default();
        out.push((p.display().to_string(), content));
    }
    out.sort();
    out
}

fuzz_target!(|data: &[u8]| {
    let base = std::env::temp_dir().join(format!("minipull-fuzz-unpack-{}", std::process::id()));
    let canary = base.join("canary");
    if !canary.exists() {
        std::fs::create_dir_all(&canary).unwrap();
        std::fs::write(canary.join("file"), b"canary").unwrap();
    }
    let before = snapshot(&canary);
    let root = base.join("rootfs");
    let _ = std::process::Command::new("chmod").arg("-R").arg("u+rwx").arg(&root).status();
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let split = data.windows(2).position(|w| w == [0xff, 0xfe]);
    let layers: Vec<&[u8]> = match split {
        Some(i) => vec![&data[..i], &data[i + 2..]],
        None => vec![data],
    };
    let _ = minipull::unpack::apply_tar_layers(&root, &layers);
    assert_eq!(snapshot(&canary), before);
});

//! Any manifest bytes with any Content-Type: classification, parsing,
//! descriptor checks and platform selection never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use minipull::manifest::{self, Manifest, Platform};

const TYPES: [Option<&str>; 6] = [
    None,
    Some(manifest::OCI_INDEX),
    Some(manifest::OCI_MANIFEST),
    Some(manifest::DOCKER_LIST),
    Some(manifest::DOCKER_MANIFEST),
    Some("application/json; charset=utf-8"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else { return };
    let ct = TYPES[first as usize % TYPES.len()];
    let Ok((_, m)) = manifest::parse(body, ct) else { return };
    match m {
        Manifest::Index(idx) => {
            for wanted in ["linux/amd64", "linux/arm/v7", "linux/arm64", "linux/riscv64", "windows/amd64"] {
                let p = Platform::parse(wanted).expect("valid platform");
                let _ = manifest::select_platform(&idx.manifests, &p);
            }
            for d in &idx.manifests {
                let _ = d.checked_digest();
                let _ = d.checked_size();
                if let Some(p) = &d.platform {
                    let _ = p.to_string();
                }
            }
        }
        Manifest::Image(im) => {
            for d in std::iter::once(&im.config).chain(&im.layers) {
                let _ = d.checked_digest();
                let _ = d.checked_size();
                let _ = d.is_foreign();
            }
        }
    }
});

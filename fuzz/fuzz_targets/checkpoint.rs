//! Any text as a Rekor checkpoint (signed note) for the public-good log:
//! never a panic, never accepted.
#![no_main]
use libfuzzer_sys::fuzz_target;
use minipull::verify::trust_root::TrustRoot;
use std::sync::OnceLock;

static ROOT: OnceLock<TrustRoot> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let root = ROOT.get_or_init(|| {
        TrustRoot::parse(include_bytes!("../../tests/data/keyless/trusted_root.json")).unwrap()
    });
    let text = String::from_utf8_lossy(data);
    assert!(minipull::verify::rekor::checkpoint(&text, &root.tlogs[0], 1, &[0; 32]).is_err());
});

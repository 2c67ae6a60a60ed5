//! Any bytes as an embedded SCT list, checked against the public-good
//! root's CT logs: never a panic, never an accepted SCT.
#![no_main]
use libfuzzer_sys::fuzz_target;
use minipull::verify::trust_root::TrustRoot;
use std::sync::OnceLock;

static ROOT: OnceLock<TrustRoot> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let root = ROOT.get_or_init(|| {
        TrustRoot::parse(include_bytes!("../../tests/data/keyless/trusted_root.json")).unwrap()
    });
    assert!(minipull::verify::sct::verify(data, b"tbs", b"spki", root).is_err());
});

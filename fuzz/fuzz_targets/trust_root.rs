//! Any bytes as a sigstore trusted_root.json: never a panic, and what
//! parses stays within the per-list bound.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = minipull::verify::trust_root::TrustRoot::parse(data) {
        assert!(r.cas.len() <= 64 && r.tlogs.len() <= 64 && r.ctlogs.len() <= 64);
    }
});

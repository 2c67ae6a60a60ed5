//! Any `WWW-Authenticate` header: parsing never panics or loops, and every
//! challenge has a non-empty scheme.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    for c in minipull::auth::parse_challenges(&s) {
        assert!(!c.scheme.is_empty());
        let _ = c.param("realm");
    }
});

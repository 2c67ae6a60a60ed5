//! Any string: parsing never panics, and a parsed reference prints to a
//! form that parses back to itself.
#![no_main]
use libfuzzer_sys::fuzz_target;
use minipull::reference::Reference;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(r) = Reference::parse(s) {
        let again = Reference::parse(&r.to_string()).expect("a normalized reference parses again");
        assert_eq!(again, r);
        let _ = r.api_host();
        let _ = r.manifest_reference();
    }
});

//! Any token-server answer or docker config.json: parsing never panics, and
//! an accepted token is non-empty, printable and has a sane lifetime.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = minipull::auth::parse_token_answer(data) {
        assert!(!a.token.expose().is_empty());
        assert!(a.expires_in.as_secs() >= 1);
    }
    let _ = minipull::auth::credentials_from_config(data, "docker.io");
    let _ = minipull::auth::base64_decode(&String::from_utf8_lossy(data));
});

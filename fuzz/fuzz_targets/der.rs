//! Any bytes through the DER walker (every constructed element entered, to
//! the nesting limit) and the Fulcio leaf parser: never a panic, and an
//! element's encoding always holds its body.
#![no_main]
use libfuzzer_sys::fuzz_target;
use minipull::verify::der::Der;

fn walk(d: &mut Der, budget: &mut u32) {
    while !d.is_empty() && *budget > 0 {
        *budget -= 1;
        let Ok(t) = d.element() else { return };
        assert!(t.raw.len() >= t.body.len() + 2);
        if t.tag & 0x20 != 0 {
            if let Ok(mut inner) = d.inner(t.body) {
                walk(&mut inner, budget);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    walk(&mut Der::new(data), &mut 10_000);
    if let Ok(leaf) = minipull::verify::cert::Leaf::parse(data) {
        let _ = leaf.precert_tbs();
    }
});

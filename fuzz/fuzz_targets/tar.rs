//! Any bytes as a layer's tar stream: the reader never panics, never reads
//! an entry's data past its size, and ends (every header consumes input).
#![no_main]
use libfuzzer_sys::fuzz_target;
use minipull::tar::Reader;

fuzz_target!(|data: &[u8]| {
    let mut r = Reader::new(data);
    let mut buf = [0u8; 4096];
    for _ in 0..10_000 {
        match r.next_header() {
            Ok(Some(h)) => {
                let mut got = 0u64;
                loop {
                    match r.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => got += n as u64,
                        Err(_) => return,
                    }
                }
                assert!(got <= h.size, "read {got} bytes of an entry of {}", h.size);
            }
            Ok(None) | Err(_) => return,
        }
    }
});

//! Content digests: parsing (strict, because a digest becomes a file name),
//! and streaming hashers.

use crate::error::{Error, Quoted, Result};
use std::fmt;

/// The hash algorithms minipull verifies. Anything else is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }
    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// A validated digest such as `sha256:<64 lowercase hex>`.
///
/// Because the constructor only admits known algorithms and lowercase hex,
/// `algorithm().name()` and `hex()` are safe to use as path components.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    /// Parse and validate a digest string.
    pub fn parse(s: &str) -> Result<Digest> {
        let bad = |why: &str| {
            // Never echo an absurdly long or control-character-laden value back.
            let shown: String = s.chars().take(80).filter(|c| !c.is_control()).collect();
            Error::integrity(format!("invalid digest {}: {why}", Quoted(&shown)))
        };
        let (alg, hex) = s.split_once(':').ok_or_else(|| bad("expected ALGORITHM:HEX"))?;
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            _ => return Err(bad("only sha256 and sha512 are supported")),
        };
        if hex.len() != algorithm.hex_len() {
            return Err(bad(&format!(
                "{} needs {} hex characters, got {}",
                alg,
                algorithm.hex_len(),
                hex.len()
            )));
        }
        if !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(bad("the hex part must be lowercase 0-9a-f"));
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_string(),
        })
    }

    /// The digest of some bytes with the given algorithm.
    pub fn of(algorithm: Algorithm, bytes: &[u8]) -> Digest {
        let mut h = Hasher::new(algorithm);
        h.update(bytes);
        h.finish()
    }

    /// The sha256 digest of some bytes.
    pub fn sha256_of(bytes: &[u8]) -> Digest {
        Digest::of(Algorithm::Sha256, bytes)
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
    pub fn hex(&self) -> &str {
        &self.hex
    }
    /// A short form for progress lines: `sha256:0123456789ab`.
    pub fn short(&self) -> String {
        format!("{}:{}", self.algorithm.name(), &self.hex[..12])
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.name(), self.hex)
    }
}

/// A streaming hasher for either algorithm: ring's SHA-2, which the
/// binary already carries for TLS (SHA extensions on x86_64 and ARMv8,
/// NEON on armv7), so no second implementation is linked in.
#[derive(Clone)]
pub struct Hasher {
    algorithm: Algorithm,
    context: ring::digest::Context,
}

impl Hasher {
    pub fn new(alg: Algorithm) -> Hasher {
        let which = match alg {
            Algorithm::Sha256 => &ring::digest::SHA256,
            Algorithm::Sha512 => &ring::digest::SHA512,
        };
        Hasher {
            algorithm: alg,
            context: ring::digest::Context::new(which),
        }
    }
    pub fn update(&mut self, bytes: &[u8]) {
        self.context.update(bytes);
    }
    pub fn finish(self) -> Digest {
        Digest {
            algorithm: self.algorithm,
            hex: to_hex(self.context.finish().as_ref()),
        }
    }
}

/// Feed at most `limit` bytes of `r` into `h`; returns how many were read.
pub fn hash_into(mut r: impl std::io::Read, h: &mut Hasher, limit: u64) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    while total < limit {
        let want = (buf.len() as u64).min(limit - total) as usize;
        let n = r.read(&mut buf[..want])?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        total += n as u64;
    }
    Ok(total)
}

fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn hashes_empty_input() {
        assert_eq!(Digest::sha256_of(b"").to_string(), EMPTY);
        let mut h = Hasher::new(Algorithm::Sha512);
        h.update(b"");
        assert!(h.finish().hex().starts_with("cf83e1357eefb8bd"));
    }

    #[test]
    fn parses_valid_digests() {
        let d = Digest::parse(EMPTY).unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(d.short(), "sha256:e3b0c44298fc");
        let long = format!("sha512:{}", "a".repeat(128));
        assert_eq!(Digest::parse(&long).unwrap().algorithm(), Algorithm::Sha512);
    }

    #[test]
    fn refuses_anything_that_could_become_a_bad_path() {
        for bad in [
            "sha256:../../../etc/passwd",
            &format!("sha256:{}", "A".repeat(64)),
            &format!("sha256:{}", "a".repeat(63)),
            &format!("sha256:{}/", "a".repeat(63)),
            &format!("md5:{}", "a".repeat(32)),
            &format!("sha384:{}", "a".repeat(96)),
            "sha256",
            "",
            &format!("SHA256:{}", "a".repeat(64)),
        ] {
            let e = Digest::parse(bad).unwrap_err();
            assert_eq!(e.kind, crate::error::Kind::Integrity, "{bad}");
        }
    }
}

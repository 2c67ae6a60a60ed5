//! minipull as a library: the modules behind the `minipull` binary. It is a
//! library only so the fuzz targets in `fuzz/` can reach the parsers; the
//! supported interface is the command line.

pub mod auth;
pub mod cli;
#[cfg(feature = "delta")]
pub mod delta;
pub mod digest;
pub mod error;
pub mod install;
pub mod layout;
pub mod manifest;
pub mod mirror;
pub mod progress;
pub mod proxy;
pub mod pull;
pub mod reference;
pub mod registry;
#[cfg(feature = "unpack")]
pub mod rootfs;
#[cfg(feature = "unpack")]
pub mod tar;
pub mod tls;
#[cfg(feature = "unpack")]
pub mod unpack;
pub mod verify;

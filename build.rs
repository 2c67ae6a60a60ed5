//! What `minipull --version` tells beyond the package version: the commit
//! and the compiler, captured at build time (no git, or no `.git`, is fine:
//! `$MINIPULL_COMMIT` or "unknown").

use std::process::Command;

fn run(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-env-changed=MINIPULL_COMMIT");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    println!("cargo:rerun-if-changed=build.rs");
    // A new commit or checkout changes HEAD or the branch it points at.
    // (Only files that exist: cargo runs this again for a missing one.)
    let branch = run("git", &["symbolic-ref", "-q", "HEAD"]);
    for path in ["HEAD", "packed-refs"].into_iter().chain(branch.as_deref()) {
        if let Some(p) = run("git", &["rev-parse", "--git-path", path]) {
            if std::path::Path::new(&p).exists() {
                println!("cargo:rerun-if-changed={p}");
            }
        }
    }
    let commit = std::env::var("MINIPULL_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| run("git", &["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = run(&rustc, &["--version"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=MINIPULL_COMMIT={commit}");
    println!("cargo:rustc-env=MINIPULL_RUSTC={rustc_version}");
    println!(
        "cargo:rustc-env=MINIPULL_TARGET={}",
        std::env::var("TARGET").unwrap_or_default()
    );
}

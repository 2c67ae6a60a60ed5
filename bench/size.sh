#!/usr/bin/env bash
# Binary size, measured: builds the shipped static binaries (./build.sh all),
# prints each target's size against the 1,500,000-byte line, then the 15
# biggest crates of the x86_64 binary by cargo-bloat (a build with the same
# flags, not stripped, so symbols can be attributed).
#   bash bench/size.sh            all four targets
#   TARGETS=x86_64-unknown-linux-musl bash bench/size.sh
set -euo pipefail
cd "$(dirname "$0")/.."

LINE=1500000
./build.sh all >/dev/null 2>&1 || ./build.sh all
echo "== sizes (stripped, static musl)"
printf '%-34s %10s  %s\n' target bytes "vs $LINE"
for t in ${TARGETS:-x86_64-unknown-linux-musl aarch64-unknown-linux-musl armv7-unknown-linux-musleabihf riscv64gc-unknown-linux-musl}; do
    n=$(stat -c %s "dist/$t/minipull")
    printf '%-34s %10s  %+d\n' "$t" "$n" $((n - LINE))
done

command -v cargo-bloat >/dev/null || cargo install --locked cargo-bloat >/dev/null
echo "== x86_64: top 15 crates of .text (cargo bloat)"
# The same flags as the shipped build (build.sh keeps them).
flags=$(./build.sh flags)
RUSTC_BOOTSTRAP=1 CARGO_PROFILE_RELEASE_STRIP=false \
    CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="$flags" \
    cargo bloat --release --locked --target x86_64-unknown-linux-musl -Z build-std=std,panic_abort \
    -Z build-std-features=optimize_for_size \
    --target-dir target/bloat --crates -n 15 2>/dev/null

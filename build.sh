#!/usr/bin/env bash
# Build minipull, or install what the tests need and run them.
#
#   ./build.sh          static, stripped x86_64 musl binary in dist/
#   ./build.sh demo     build, then pull a small image from a local registry into
#                       ./demo-oci and check it with skopeo (works offline)
#   ./build.sh all      static binaries for x86_64, aarch64, armv7 and riscv64 in
#                       dist/<target>/minipull with dist/SHA256SUMS (TARGETS=... for some)
#   ./build.sh check-cross  run those binaries under qemu-user against a local registry
#   ./build.sh test     install the test tools when missing (Debian), then cargo test,
#                       the cross binaries under qemu-user, and a qemu boot from a registry
#   ./build.sh flags    print the rustc flags of the release builds
#   ./build.sh test-hooks  the x86_64 binary with the update's fault hooks, for the boot
#                       test only (target/test-hooks/minipull, never in dist/)
set -euo pipefail
cd "$(dirname "$0")"

say() { echo "build.sh: $*" >&2; }

# Install Debian packages that are missing (we run as root on CI and dev machines).
need_packages() {
    local missing=()
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        say "installing ${missing[*]}"
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# Every target we ship, with the Debian cross compiler that links it and builds
# ring's C and assembly parts.
ALL_TARGETS="x86_64-unknown-linux-musl aarch64-unknown-linux-musl armv7-unknown-linux-musleabihf riscv64gc-unknown-linux-musl"

cross_gcc() { # rust target -> Debian gcc triple ("" = the host's own cc)
    case "$1" in
        x86_64-*) echo "" ;;
        aarch64-*) echo aarch64-linux-gnu ;;
        armv7-*) echo arm-linux-gnueabihf ;;
        riscv64gc-*) echo riscv64-linux-gnu ;;
        *) say "no cross compiler known for $1"; exit 2 ;;
    esac
}

# musl for targets whose prebuilt Rust std cannot be downloaded (rustup's mirror
# here answers 404 for armv7 and riscv64 musl): built from Debian's source
# package with the Debian cross gcc. The source comes through apt (`apt-get
# source`, with a deb-src list of our own beside the sources, so the system's
# apt configuration is not touched): the mirror and proxy apt is configured with
# are all the build needs, and apt checks the files against the signed Sources
# index; the tarball is also checked against musl's published sha256.
MUSL_VERSION=1.2.3
MUSL_DEBIAN=1.2.3-1
MUSL_SUITE=bookworm
MUSL_SHA256=7d5b0b6062521e4627e099e4c9dc8248d32a30285e959b7eecaa780cf8cfd4a4
debian_mirror() { # the Debian archive apt uses (deb822 or one-line sources)
    local uri
    uri=$(grep -hs -m1 -E '^URIs:.*/debian/?$' /etc/apt/sources.list.d/*.sources | awk '{print $2; exit}')
    [ -n "$uri" ] || uri=$(grep -hs -E '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list |
        sed 's/\[[^]]*\]//' | awk '$2 ~ /\/debian\/?$/ {print $2; exit}')
    echo "${uri:-http://deb.debian.org/debian}"
}
musl_source() { # dir -> the orig tarball in it, fetched by apt-get source
    local dir=$1 apt=$1/apt
    local -a aptc=(-q -o "Dir::Etc::SourceList=$apt/sources.list" -o "Dir::Etc::SourceParts=$apt/none"
        -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache")
    if [ ! -f "$dir/musl_$MUSL_VERSION.orig.tar.gz" ]; then
        mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/none"
        echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $(debian_mirror) $MUSL_SUITE main" \
            > "$apt/sources.list"
        say "fetching the musl $MUSL_DEBIAN source package through apt"
        apt-get "${aptc[@]}" update >/dev/null || { say "apt-get update (deb-src $MUSL_SUITE) failed"; exit 1; }
        (cd "$dir" && apt-get "${aptc[@]}" source --download-only "musl=$MUSL_DEBIAN" >/dev/null 2>&1) ||
            { say "apt-get source musl=$MUSL_DEBIAN failed"; exit 1; }
    fi
    echo "$dir/musl_$MUSL_VERSION.orig.tar.gz"
}
musl_sysroot() { # gcc triple -> prints the sysroot path, building it once
    local triple=$1 top=$PWD/target/musl-$MUSL_VERSION
    local sysroot=$top/$triple
    if [ ! -f "$sysroot/unwind/libunwind.a" ]; then
        mkdir -p "$top"
        local tarball
        tarball=$(musl_source "$top")
        echo "$MUSL_SHA256  $tarball" | sha256sum -c --quiet - >&2 || { say "musl source checksum mismatch"; exit 1; }
        say "building musl $MUSL_VERSION for $triple (static only)"
        rm -rf "$top/src-$triple" && mkdir -p "$top/src-$triple"
        tar -C "$top/src-$triple" --strip-components=1 -xzf "$tarball"
        (cd "$top/src-$triple" &&
            ./configure --target="$triple" CROSS_COMPILE="$triple-" --prefix="$sysroot" --disable-shared >/dev/null &&
            make -j"$(nproc)" >/dev/null 2>&1 && make install >/dev/null 2>&1) || { say "musl build failed for $triple"; exit 1; }
        # Rust's std asks for libunwind; gcc's libgcc_eh provides it. Built for glibc,
        # it calls _dl_find_object when present; a stub that always answers "not found"
        # sends it to dl_iterate_phdr, which musl has.
        mkdir -p "$sysroot/unwind"
        echo 'int _dl_find_object(void *pc, void *out) { (void)pc; (void)out; return -1; }' > "$sysroot/unwind/dlfo.c"
        "$triple-gcc" -O2 -c -o "$sysroot/unwind/dlfo.o" "$sysroot/unwind/dlfo.c"
        cp "$("$triple-gcc" -print-file-name=libgcc_eh.a)" "$sysroot/unwind/libunwind.a.tmp"
        "$triple-ar" rs "$sysroot/unwind/libunwind.a.tmp" "$sysroot/unwind/dlfo.o" 2>/dev/null
        mv "$sysroot/unwind/libunwind.a.tmp" "$sysroot/unwind/libunwind.a"
    fi
    echo "$sysroot"
}

# The rustc flags of every release build (bench/size.sh reads them from here).
size_flags() {
    if [ "${PANIC_MESSAGES:-0}" = 1 ]; then
        echo "-C force-unwind-tables=no"
    else
        echo "-C force-unwind-tables=no -Zunstable-options -Cpanic=immediate-abort -Zfmt-debug=shallow -Cllvm-args=-enable-machine-outliner=always"
    fi
}

build_target() { # rust target -> dist/<target>/minipull
    local target=$1 triple env_target
    triple=$(cross_gcc "$target")
    env_target=$(echo "$target" | tr 'a-z-' 'A-Z_')
    local lower=${target//-/_}
    # std is rebuilt from the toolchain's rust-src with our size profile (cargo's
    # build-std, unlocked on the stable compiler by RUSTC_BOOTSTRAP): LTO then reaches
    # into std, without unwind tables (we abort on panic). A panic aborts at once
    # (SIGABRT, exit status 134, no message: panics are bugs, errors never panic),
    # Debug formatting is shallow (no message uses it: names go through
    # error::Quoted; `none` would break ureq's request line, docs/building.md) and LLVM's machine outliner shares repeated instruction
    # sequences between functions (-32 KB on x86_64); README's size table has
    # what each step saves. PANIC_MESSAGES=1 builds a binary that prints the one-line
    # "internal error at FILE:LINE" instead, for reporting a bug (+0.4 MB).
    # std's optimize_for_size feature picks its smaller algorithms (-12 KB on
    # x86_64; pull and unpack times unchanged, README).
    local -a cargo_args=(build --release --locked --target "$target" -Zbuild-std=std,panic_abort
        -Zbuild-std-features=optimize_for_size)
    # FEATURES (or MINIPULL_FEATURES) =delta ./build.sh: a binary with features
    # beyond the default ones (here partial zstd:chunked updates, docs/delta.md).
    local features=${MINIPULL_FEATURES:-${FEATURES:-}}
    if [ -n "$features" ]; then
        cargo_args+=(--features "$features")
    fi
    local rustflags
    rustflags=$(size_flags)
    if [ -z "$triple" ]; then
        need_packages musl-tools
    else
        need_packages "gcc-$triple"
    fi
    rustup component list --installed | grep -q '^rust-src' || rustup component add rust-src
    if ! rustup target list --installed | grep -qx "$target"; then
        say "adding the rust target $target"
        rustup target add "$target" >/dev/null 2>&1 || true
    fi
    if rustup target list --installed | grep -qx "$target"; then
        # The target's own self-contained musl (crt objects, libc.a) links it. Its
        # static-pie start code (musl 1.2.4+) applies packed relative relocations
        # (DT_RELR), which take 41 KB less than plain RELA ones on x86_64.
        rustflags+=" -C link-arg=-Wl,-z,pack-relative-relocs"
        # x86_64 links with the toolchain's own lld (rust-lld, shipped with rustc),
        # which folds functions whose code is identical (-12 KB).
        if [ -z "$triple" ]; then
            rustflags+=" -Clinker-flavor=gnu-lld-cc -Clink-self-contained=+linker -Clink-arg=-Wl,--icf=all"
        fi
        if [ -n "$triple" ]; then
            export "CARGO_TARGET_${env_target}_LINKER=$triple-gcc" "CC_$lower=$triple-gcc" "AR_$lower=$triple-ar"
        fi
    else
        say "rustup has no musl std for $target here; linking against musl built from source"
        local sysroot
        sysroot=$(musl_sysroot "$triple")
        export "CARGO_TARGET_${env_target}_LINKER=$sysroot/bin/musl-gcc" "CC_$lower=$sysroot/bin/musl-gcc" "AR_$lower=$triple-ar"
        rustflags+=" -C link-self-contained=no -C target-feature=+crt-static -L $sysroot/unwind -L $sysroot/lib"
    fi
    # The build time minipull judges certificates at when the clock reads earlier
    # (a device at 1970): the commit date, so the build stays reproducible.
    if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
        SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || date +%s)
    fi
    export SOURCE_DATE_EPOCH
    export "CARGO_TARGET_${env_target}_RUSTFLAGS=$rustflags" RUSTC_BOOTSTRAP=1
    say "building a static release binary for $target"
    cargo "${cargo_args[@]}"
    unset RUSTC_BOOTSTRAP
    local out=${OUT:-dist/$target}
    mkdir -p "$out"
    cp "target/$target/release/minipull" "$out/minipull"
    say "$out/minipull: $(stat -c %s "$out/minipull") bytes; $(file -b "$out/minipull")"
}

# The default build: the host's static x86_64 binary, also copied to dist/minipull.
build_musl() {
    build_target x86_64-unknown-linux-musl
    cp dist/x86_64-unknown-linux-musl/minipull dist/minipull
}

case "${1:-build}" in
    build)
        build_musl
        ;;
    all)
        need_packages file
        for t in ${TARGETS:-$ALL_TARGETS}; do build_target "$t"; done
        cp dist/x86_64-unknown-linux-musl/minipull dist/minipull 2>/dev/null || true
        (cd dist && sha256sum */minipull > SHA256SUMS)
        say "dist/SHA256SUMS:"; cat dist/SHA256SUMS >&2
        ;;
    flags)
        size_flags
        ;;
    test-hooks)
        # For the boot test only: the x86_64 binary with the update's fault
        # hooks (the test-hooks feature), in target/test-hooks/, never in dist/.
        FEATURES=test-hooks OUT=target/test-hooks build_target x86_64-unknown-linux-musl
        ;;
    check-cross)
        # Run each cross binary under qemu-user: pull from a local registry and
        # validate the layout (CI runs this for aarch64 and riscv64).
        need_packages qemu-user-static docker-registry oci-image-tool curl python3 file
        bash bench/cross-check.sh ${TARGETS:-$ALL_TARGETS}
        ;;
    demo)
        build_musl
        need_packages docker-registry skopeo curl python3
        . bench/registry.sh
        start_registry demo/hello
        mkdir -p "$WORK/rootfs/etc" && echo "hello from minipull" > "$WORK/rootfs/etc/hello"
        tar -C "$WORK/rootfs" -czf "$WORK/layer.tar.gz" .
        printf '{"architecture":"amd64","os":"linux","config":{"Cmd":["/bin/sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
            "$(gzip -dc "$WORK/layer.tar.gz" | sha256sum | cut -d' ' -f1)" > "$WORK/config"
        push_image v1 "$WORK/config" "$WORK/layer.tar.gz" application/vnd.oci.image.layer.v1.tar+gzip
        rm -rf demo-oci
        say "pulling 127.0.0.1:$PORT/demo/hello:v1 into ./demo-oci"
        ./dist/minipull --plain-http "127.0.0.1:$PORT/demo/hello:v1" demo-oci
        say "skopeo inspect oci:demo-oci:v1"
        skopeo inspect oci:demo-oci:v1 | head -n 12
        ;;
    test)
        # docker-registry: the real registry the tests pull from; skopeo, umoci and
        # oci-image-tool: consumers that check our layouts; apache2-utils: htpasswd;
        # zstd, gzip, tar: to build fixture layers; openssl: test CAs and token signing;
        # util-linux: setpriv, to unpack as an ordinary user; debootstrap: the
        # Debian 13 chroot whose skopeo writes the delta tests' modern zstd:chunked.
        need_packages docker-registry skopeo umoci oci-image-tool apache2-utils zstd gzip tar musl-tools file curl python3 openssl util-linux containerd podman debootstrap
        # A TLS test makes a certificate valid only from days hence, which openssl
        # req cannot: Python's cryptography can.
        python3 -c 'import cryptography' 2>/dev/null || pip install -q cryptography 2>/dev/null \
            || need_packages python3-cryptography
        # Made once (about a minute), then cached in $MINIPULL_TRIXIE or
        # /var/cache/minipull-trixie.
        bash tests/trixie-skopeo.sh >/dev/null
        say "running the tests"
        # The peers' unpack cases (tests/peers.rs) run once, against the
        # release binary below.
        MINIPULL_PEERS_WITH_RELEASE=1 cargo test --locked --features "delta keyless"
        # The shipped binary is built with flags the test build does not use (shallow
        # Debug formatting, abort on panic, packed relocations): the whole suite
        # runs against it too.
        build_musl
        say "running the tests again against the release binary dist/minipull"
        MINIPULL_BIN=dist/minipull cargo test --locked --tests
        say "running the tests again without the default \"unpack\" feature"
        cargo test --locked --no-default-features
        # The shipped static binaries for two foreign machines, run under qemu-user.
        need_packages qemu-user-static
        export TARGETS="aarch64-unknown-linux-musl riscv64gc-unknown-linux-musl"
        "$0" all
        say "running the cross binaries under qemu-user"
        bash bench/cross-check.sh $TARGETS
        # Boot a real kernel from a registry with the example initramfs (qemu,
        # TCG): alone, after the suites, since a TCG guest loads both cores.
        need_packages qemu-system-x86 qemu-system-arm linux-image-amd64 busybox-static cpio socat e2fsprogs libcap2-bin python3-cryptography
        build_musl
        say "booting a kernel from a registry under qemu (examples/initramfs/test.sh)"
        bash examples/initramfs/test.sh
        ;;
    *)
        echo "usage: ./build.sh [build|all|check-cross|demo|test|flags|test-hooks]" >&2
        exit 2
        ;;
esac

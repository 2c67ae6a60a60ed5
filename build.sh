#!/usr/bin/env bash
# Build minipull, or install what the tests need and run them.
#
#   ./build.sh          static, stripped x86_64 musl binary in dist/
#   ./build.sh demo     build, then pull a small image from a local registry into
#                       ./demo-oci and check it with skopeo (works offline)
#   ./build.sh test     install the test tools when missing (Debian), then cargo test
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

build_musl() {
    local target=x86_64-unknown-linux-musl
    need_packages musl-tools
    if ! rustup target list --installed | grep -qx "$target"; then
        say "adding the rust target $target"
        rustup target add "$target"
    fi
    say "building a static release binary for $target"
    cargo build --release --locked --target "$target"
    mkdir -p dist
    cp "target/$target/release/minipull" dist/minipull
    say "dist/minipull: $(stat -c %s dist/minipull) bytes; $(file -b dist/minipull 2>/dev/null || true)"
}

case "${1:-build}" in
    build)
        build_musl
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
        # zstd, gzip, tar: to build fixture layers.
        need_packages docker-registry skopeo umoci oci-image-tool apache2-utils zstd gzip tar musl-tools file
        say "running the tests"
        cargo test --locked
        ;;
    *)
        echo "usage: ./build.sh [build|demo|test]" >&2
        exit 2
        ;;
esac

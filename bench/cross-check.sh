#!/usr/bin/env bash
# Check the static binaries in dist/<target>/ (./build.sh all): `file` must say
# statically linked for the right machine, and each must pull a real image from
# a local docker-registry under qemu-user and unpack it, giving a layout
# oci-image-tool accepts, the layer's bytes intact and the file it holds.
#   bash bench/cross-check.sh TARGET...
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/registry.sh

machine() { # rust target -> "qemu binary|what file(1) must say"
    case "$1" in
        x86_64-*) echo "|x86-64" ;;
        aarch64-*) echo "qemu-aarch64-static|ARM aarch64" ;;
        armv7-*) echo "qemu-arm-static|ARM, EABI5" ;;
        riscv64gc-*) echo "qemu-riscv64-static|RISC-V" ;;
        *) echo "unknown target $1" >&2; exit 2 ;;
    esac
}

start_registry cross/check
head -c 3000000 /dev/urandom > "$WORK/layer"
mkdir -p "$WORK/root/etc" && echo cross > "$WORK/root/etc/cross" && tar -C "$WORK/root" -cf "$WORK/layer.tar" .
cat "$WORK/layer" >> "$WORK/layer.tar"
gzip -c "$WORK/layer.tar" > "$WORK/layer.tar.gz"
printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$(sha256sum "$WORK/layer.tar" | cut -d' ' -f1)" > "$WORK/config"
push_image v1 "$WORK/config" "$WORK/layer.tar.gz" application/vnd.oci.image.layer.v1.tar+gzip

failed=0
for target in "$@"; do
    bin=dist/$target/minipull
    IFS='|' read -r qemu want <<<"$(machine "$target")"
    what=$(file -b "$bin")
    if [[ "$what" != *"$want"* || "$what" != *"statically linked"* && "$what" != *"static-pie linked"* ]]; then
        echo "FAIL $target: file says: $what" >&2; failed=1; continue
    fi
    out=$WORK/out-$target
    if ! ${qemu:+$qemu} "$bin" -q --plain-http --unpack "$out-rootfs" "127.0.0.1:$PORT/cross/check:v1" "$out" >/dev/null; then
        echo "FAIL $target: the pull failed" >&2; failed=1; continue
    fi
    if ! oci-image-tool validate --type image --ref name=v1 "$out" >/dev/null 2>&1; then
        echo "FAIL $target: oci-image-tool rejects the layout" >&2; failed=1; continue
    fi
    if ! cmp -s "$WORK/layer.tar.gz" "$out/blobs/sha256/${LAYER_DIGEST#sha256:}"; then
        echo "FAIL $target: the layer differs" >&2; failed=1; continue
    fi
    if [ "$(cat "$out-rootfs/etc/cross" 2>/dev/null)" != cross ]; then
        echo "FAIL $target: the unpacked rootfs lacks /etc/cross" >&2; failed=1; continue
    fi
    echo "ok   $target: $(stat -c %s "$bin") bytes, $what" | cut -c1-150
done
exit $failed

#!/bin/sh
# Fetch what an arm64 boot needs on an x86_64 Debian machine: Debian's arm64
# kernel (its modules indexed with depmod -b) and busybox-static:arm64,
# unpacked into DIR (no arm64 package is installed). Prints the kernel version.
#
#   examples/initramfs/arm64-parts.sh DIR
set -eu
dir=$1
if ! ls "$dir"/boot/vmlinuz-* >/dev/null 2>&1 || [ ! -x "$dir/bin/busybox" ]; then
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        dpkg --add-architecture arm64
    fi
    apt-get update -qq >&2
    # linux-image-arm64 names the versioned kernel package it depends on.
    kpkg=$(apt-cache depends linux-image-arm64:arm64 | sed -n 's/.*Depends: \(linux-image-[^ ]*\)/\1/p' | head -1)
    [ -n "$kpkg" ] || { echo "arm64-parts.sh: no arm64 kernel package found" >&2; exit 1; }
    mkdir -p "$dir/debs"
    (cd "$dir/debs" && apt-get download "$kpkg" busybox-static:arm64 >&2 2>/dev/null)
    for deb in "$dir"/debs/*.deb; do dpkg-deb -x "$deb" "$dir"; done
    rm -rf "$dir/debs"
fi
kver=$(ls "$dir/lib/modules" | sort -V | tail -1)
[ -f "$dir/lib/modules/$kver/modules.dep" ] || depmod -b "$dir" "$kver"
echo "$kver"

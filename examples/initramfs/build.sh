#!/bin/sh
# Build the example initramfs: a newc cpio.gz with busybox-static, the static
# minipull, /init, and the kernel modules the NIC needs.
#
#   examples/initramfs/build.sh OUT.cpio.gz [KERNEL_VERSION]
#
# Environment: MINIPULL (default dist/minipull), BUSYBOX (default
# /bin/busybox, from Debian's busybox-static), MODULES (default "virtio_pci
# virtio_net virtio_blk crc32c_generic ext4": qemu's NIC and disk, and ext4;
# a real board names its own), MODULES_DIR (default
# /lib/modules/KERNEL_VERSION), EXTRA ("SRC:DEST ..." more files, e.g. a CA or
# a public key: "ca.pem:/etc/ca.pem").
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=$1
kver=${2:-$(ls /lib/modules | sort -V | tail -1)}
MINIPULL=${MINIPULL:-$root/dist/minipull}
BUSYBOX=${BUSYBOX:-/bin/busybox}
MODULES=${MODULES:-virtio_pci virtio_net virtio_blk crc32c_generic ext4}
MODULES_DIR=${MODULES_DIR:-/lib/modules/$kver}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/etc" "$stage/proc" "$stage/sys" "$stage/dev" \
    "$stage/run" "$stage/tmp" "$stage/newroot" "$stage/lib/modules"
cp "$BUSYBOX" "$stage/bin/busybox"
# /init links the other applets at boot (busybox --install): the busybox of
# another architecture cannot be asked for its list here.
ln -s busybox "$stage/bin/sh"
cp "$MINIPULL" "$stage/bin/minipull"
install -m 0755 "$here/init" "$stage/init"
install -m 0755 "$here/udhcpc.script" "$stage/etc/udhcpc.script"
# Modules and what they depend on, dependencies first, each once.
: > "$stage/etc/modules.order"
add_module() { # path relative to MODULES_DIR
    grep -qx "$1" "$stage/etc/modules.order" && return 0
    for dep in $(grep "^$1:" "$MODULES_DIR/modules.dep" | cut -d: -f2); do add_module "$dep"; done
    mkdir -p "$stage/lib/modules/$(dirname "$1")"
    cp "$MODULES_DIR/$1" "$stage/lib/modules/$1"
    echo "$1" >> "$stage/etc/modules.order"
}
for m in $MODULES; do
    path=$(grep -o "^[^:]*/$m\.ko[^:]*" "$MODULES_DIR/modules.dep" | head -1)
    [ -n "$path" ] || { echo "build.sh: no module $m in $MODULES_DIR" >&2; exit 1; }
    add_module "$path"
done
for pair in ${EXTRA:-}; do
    mkdir -p "$stage$(dirname "${pair#*:}")"
    cp "${pair%%:*}" "$stage${pair#*:}"
done
# Root's, whoever builds it: minipull refuses a ROOTFS (/newroot) whose
# directory (/) another user owns.
(cd "$stage" && find . | cpio -o -H newc -R 0:0 --quiet) | gzip -9 > "$out"
echo "build.sh: $out: $(stat -c %s "$out") bytes (busybox $(stat -c %s "$BUSYBOX"), minipull $(stat -c %s "$MINIPULL"))"

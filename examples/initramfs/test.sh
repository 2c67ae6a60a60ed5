#!/usr/bin/env bash
# Boot a real kernel from a registry: Debian's linux-image-amd64 under
# qemu-system-x86_64 (TCG, no KVM) with the example initramfs, against
# Debian's docker-registry on the host's 127.0.0.1, reached only through
# qemu's restricted user network and a guestfwd forwarder per connection.
# The image pulled is itself bootable: a static busybox whose /sbin/init
# prints a marker and powers off. Judged by the serial console.
#
#   examples/initramfs/test.sh          (run by ./build.sh test after cargo test)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."
[ -x dist/minipull ] || ./build.sh >/dev/null
for t in qemu-system-x86_64 socat cpio docker-registry; do
    command -v "$t" >/dev/null || { echo "boot test: missing $t" >&2; exit 1; }
done
kernel=$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -1)
[ -r "$kernel" ] || { echo "boot test: no kernel in /boot (apt-get install linux-image-amd64)" >&2; exit 1; }
kver=${kernel#/boot/vmlinuz-}

. bench/registry.sh
start_registry boot/img

# The bootable image: /bin/busybox and an /sbin/init that says so and powers off.
marker="minipull-boot-marker-$$"
mkdir -p "$WORK/rootfs/bin" "$WORK/rootfs/sbin" "$WORK/rootfs/proc"
cp /bin/busybox "$WORK/rootfs/bin/busybox"
printf '#!/bin/busybox sh\n/bin/busybox mount -t proc proc /proc\n/bin/busybox echo "%s: booted $(/bin/busybox cut -d" " -f1 /proc/uptime) s after the kernel started"\n/bin/busybox poweroff -f\n' "$marker" > "$WORK/rootfs/sbin/init"
chmod 755 "$WORK/rootfs/sbin/init"
tar --owner=0 --group=0 --numeric-owner -C "$WORK/rootfs" -cf "$WORK/layer.tar" .
gzip -9 -c "$WORK/layer.tar" > "$WORK/layer.tar.gz"
printf '{"architecture":"amd64","os":"linux","config":{"Cmd":["/sbin/init"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$(sha256sum "$WORK/layer.tar" | cut -d' ' -f1)" > "$WORK/config"
push_image v1 "$WORK/config" "$WORK/layer.tar.gz" application/vnd.oci.image.layer.v1.tar+gzip

examples/initramfs/build.sh "$WORK/initrd.cpio.gz" "$kver" >&2

# The guest reaches 10.0.2.100:5000, which qemu forwards, one socat per
# connection, to the registry on the host's loopback; nothing else.
boot() { # console-log extra-kernel-args...
    local log=$1
    shift
    timeout 240 qemu-system-x86_64 -m 512 -nodefaults -no-reboot -display none \
        -serial "file:$log" -kernel "$kernel" -initrd "$WORK/initrd.cpio.gz" \
        -append "console=ttyS0 panic=-1 quiet minipull.ref=10.0.2.100:5000/boot/img:v1 minipull.plain=1 $*" \
        -netdev "user,id=n0,restrict=on,guestfwd=tcp:10.0.2.100:5000-cmd:socat - TCP:127.0.0.1:$PORT" \
        -device virtio-net-pci,netdev=n0 || true
}

start=$(date +%s.%N)
boot "$WORK/console1"
end=$(date +%s.%N)
if ! grep -q "$marker" "$WORK/console1"; then
    echo "boot test: FAILED, the pulled root did not boot; console:" >&2
    cat "$WORK/console1" >&2
    exit 1
fi
grep -E "minipull-init|$marker" "$WORK/console1" | tr -d '\r' >&2
echo "boot test: diskless boot from the registry reached the marker, $(awk "BEGIN{printf \"%.1f\", $end - $start}") s after qemu started" >&2

# Registry down: the device says so on the console, never a silent panic.
kill "$REG"; wait "$REG" 2>/dev/null || true
boot "$WORK/console2" minipull.wait=3 minipull.fail=reboot minipull.delay=1
if ! grep -q "could not pull" "$WORK/console2"; then
    echo "boot test: FAILED, no clear message with the registry down; console:" >&2
    cat "$WORK/console2" >&2
    exit 1
fi
grep "minipull-init" "$WORK/console2" | tr -d '\r' | head -5 >&2
echo "boot test: ok" >&2

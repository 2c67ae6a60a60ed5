#!/usr/bin/env bash
# Boot a real kernel from a registry: Debian's linux-image-amd64 under
# qemu-system-x86_64 and Debian's arm64 kernel under qemu-system-aarch64
# (TCG, no KVM) with the example initramfs, against
# Debian's docker-registry on the host's 127.0.0.1, reached only through
# qemu's restricted user network and a guestfwd forwarder per connection.
# The image pulled is itself bootable: a static busybox whose /sbin/init
# prints a marker, marks itself good and powers off. Judged by the serial
# console, the registries' logs and the disk image read with debugfs. The
# numbered cases are those of examples/initramfs/README.md.
#
#   examples/initramfs/test.sh          (run by ./build.sh test after cargo test)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."
[ -x dist/minipull ] || ./build.sh >/dev/null
for t in qemu-system-x86_64 qemu-system-aarch64 socat cpio docker-registry debugfs e2fsck setcap openssl python3 apt-get; do
    command -v "$t" >/dev/null || { echo "boot test: missing $t" >&2; exit 1; }
done
kernel=$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -1)
[ -r "$kernel" ] || { echo "boot test: no kernel in /boot (apt-get install linux-image-amd64)" >&2; exit 1; }
kver=${kernel#/boot/vmlinuz-}
# arm64: Debian's kernel and busybox-static, unpacked (not installed) here.
ARM=${MINIPULL_ARM64_PARTS:-/var/cache/minipull-boot/arm64}
arm_kver=$(sh "$here/arm64-parts.sh" "$ARM")
[ -x dist/aarch64-unknown-linux-musl/minipull ] || TARGETS=aarch64-unknown-linux-musl ./build.sh all >/dev/null

ACCESS_LOG=1
. bench/registry.sh
start_registry boot/img

# A bootable image, version $1: /bin/busybox and an /sbin/init that prints
# the marker with its version, marks itself good (the one line README
# documents; not with $2 = nomark) and powers off. Sets LAYER_DIGEST.
marker="minipull-boot-marker-$$"
make_image() {
    local v=$1 dir=$WORK/rootfs-$1 mark='busybox touch /.minipull-boot-ok'
    [ "${2:-}" = nomark ] && mark=true
    mkdir -p "$dir/bin" "$dir/sbin" "$dir/proc"
    cp "${IMG_BUSYBOX:-/bin/busybox}" "$dir/bin/busybox"
    [ -n "${BIG_MIB:-}" ] && head -c "${BIG_MIB}M" /dev/urandom > "$dir/big"
    printf '#!/bin/busybox sh\nexport PATH=/bin\nbusybox mount -t proc proc /proc\n%s\nbusybox sync\nbusybox echo "%s-v%s: booted $(busybox cut -d" " -f1 /proc/uptime) s after the kernel started"\nbusybox poweroff -f\n' "$mark" "$marker" "$v" > "$dir/sbin/init"
    chmod 755 "$dir/sbin/init"
    # A file with file capabilities (the security.capability xattr), as ping has.
    cp "${IMG_BUSYBOX:-/bin/busybox}" "$dir/bin/ping"
    setcap cap_net_raw+ep "$dir/bin/ping"
    tar --owner=0 --group=0 --numeric-owner --xattrs --xattrs-include='security.capability' \
        -C "$dir" -cf "$WORK/layer-$v.tar" .
    gzip -9 -c "$WORK/layer-$v.tar" > "$WORK/layer-$v.tar.gz"
    # Each image newer than the last (/init passes --no-downgrade with a key).
    IMG_N=$((${IMG_N:-0} + 1))
    printf '{"architecture":"%s","os":"linux","created":"2026-01-01T00:%02d:00Z","config":{"Cmd":["/sbin/init"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
        "${IMG_ARCH:-amd64}" "$IMG_N" "$(sha256sum "$WORK/layer-$v.tar" | cut -d' ' -f1)" > "$WORK/config-$v"
    push_image v1 "$WORK/config-$v" "$WORK/layer-$v.tar.gz" application/vnd.oci.image.layer.v1.tar+gzip
}
make_image 1
V1_LAYER=$LAYER_DIGEST

examples/initramfs/build.sh "$WORK/initrd.cpio.gz" "$kver" >&2

# The guest reaches 10.0.2.100:5000, which qemu forwards, one socat per
# connection, to the registry on the host's loopback; nothing else.
# GUEST_REF: the image and how to reach it; FWD: more forwards (",guestfwd=...").
GUEST_REF="minipull.ref=10.0.2.100:5000/boot/img:v1 minipull.plain=1"
# FORWARD: what relays one guest connection to the registry. QSYS, KERNEL,
# CONSOLE: the machine (x86_64 unless an arm64 case says otherwise).
QSYS=qemu-system-x86_64 KERNEL=$kernel CONSOLE=ttyS0
qemu_args() { # console-log extra-kernel-args... -> QEMU
    local log=$1
    shift
    # shellcheck disable=SC2206
    QEMU=($QSYS -m 512 -nodefaults -no-reboot -display none
        -serial "file:$log" -kernel "$KERNEL" -initrd "${INITRD:-$WORK/initrd.cpio.gz}"
        -append "console=$CONSOLE panic=-1 quiet $GUEST_REF $*" ${RTC:-}
        -netdev "user,id=n0,restrict=on,guestfwd=tcp:10.0.2.100:5000-cmd:${FORWARD:-socat - TCP:127.0.0.1:$PORT}${FWD:-}"
        -device virtio-net-pci,netdev=n0 ${DISK_ARGS:-})
}
boot() { # console-log extra-kernel-args...
    qemu_args "$@"
    timeout 240 "${QEMU[@]}" || true
}
expect() { # console-log pattern what
    if ! grep -q -- "$2" "$1"; then
        echo "boot test: FAILED: $3; console:" >&2
        cat "$1" >&2
        exit 1
    fi
    if [ "${SHOWN:-}" != "$1" ]; then   # each console once
        grep -E "minipull-init|minipull: warning|$marker" "$1" | tr -d '\r' | sed 's/^/    /' >&2
        SHOWN=$1
    fi
    echo "boot test: ok: $3" >&2
}
requests() { wc -l < "$WORK/access.log"; }
floor_on() { # disk-image: the time floor /init keeps on it (journal replayed on a copy)
    cp --sparse=always "$1" "$WORK/floor-copy.img"
    e2fsck -fy "$WORK/floor-copy.img" >/dev/null 2>&1 || true
    debugfs -R "cat /boot/time-floor" "$WORK/floor-copy.img" 2>/dev/null | tr -dc 0-9
}

# 8. Diskless: pulled into a tmpfs, layers discarded, switch_root.
start=$(date +%s.%N)
boot "$WORK/console-diskless"
end=$(date +%s.%N)
expect "$WORK/console-diskless" "$marker-v1" "diskless boot from the registry, $(awk "BEGIN{printf \"%.1f\", $end - $start}") s after qemu started"

# 1. First boot on an empty disk: pull, unpack, switch_root.
truncate -s 256M "$WORK/disk.img"
mkfs.ext4 -q -F "$WORK/disk.img"
DISK_ARGS="-drive file=$WORK/disk.img,format=raw,if=virtio"
boot "$WORK/console-first" minipull.disk=/dev/vda
expect "$WORK/console-first" "$marker-v1" "first boot on an empty disk installs and boots v1"

# 2. Unchanged: boots from the disk; the registry sees one manifest HEAD, no GET.
sleep 0.5; before=$(requests)
# (With a static address instead of DHCP.)
boot "$WORK/console-same" minipull.disk=/dev/vda ip=10.0.2.20/24::10.0.2.2
expect "$WORK/console-same" "network up: inet 10.0.2.20/24" "a static address (ip=ADDR/PREFIX::GATEWAY)"
expect "$WORK/console-same" "up to date" "an unchanged image boots from the disk"
expect "$WORK/console-same" "$marker-v1" "the installed v1 booted"
sleep 0.5
new=$(tail -n +$((before + 1)) "$WORK/access.log")
heads=$(grep -c '"HEAD /v2/boot/img/manifests/' <<<"$new" || true)
gets=$(grep -cE '"GET /v2/boot/img/(manifests|blobs)/' <<<"$new" || true)
[ "$heads" = 1 ] && [ "$gets" = 0 ] || { echo "boot test: FAILED: $heads manifest HEADs and $gets GETs for an unchanged image" >&2; echo "$new" >&2; exit 1; }
echo "boot test: ok: the unchanged boot cost one manifest HEAD and no GET" >&2

# 3. A new image under the same tag: the next boot installs it, boots it, and
# the old image's own layer is gone from the disk.
make_image 2
boot "$WORK/console-update" minipull.disk=/dev/vda
expect "$WORK/console-update" "$marker-v2" "the next boot installs and boots v2"
blobs=$(debugfs -R "ls -l /oci/blobs/sha256" "$WORK/disk.img" 2>/dev/null)
if grep -q "${V1_LAYER#sha256:}" <<<"$blobs"; then
    echo "boot test: FAILED: v1's layer is still on the disk" >&2; exit 1
fi
grep -q "${LAYER_DIGEST#sha256:}" <<<"$blobs" || { echo "boot test: FAILED: v2's layer is not on the disk" >&2; exit 1; }
echo "boot test: ok: --prune removed v1's layer from the disk" >&2
# 9. The file capability survived the pull and the unpack onto the disk.
ea=$(debugfs -R "ea_list /root/bin/ping" "$WORK/disk.img" 2>/dev/null)
grep -q "security.capability" <<<"$ea" || { echo "boot test: FAILED: no security.capability on /root/bin/ping: $ea" >&2; exit 1; }
echo "boot test: ok: /root/bin/ping on the disk carries its security.capability xattr" >&2

# 10. Signed: with minipull.key= only an image signed by that key is
# installed. v3, signed, is; v4, unsigned, is refused and v3 keeps booting.
openssl ecparam -genkey -name prime256v1 -noout -out "$WORK/fleet.key"
openssl pkey -in "$WORK/fleet.key" -pubout -out "$WORK/fleet.pub" 2>/dev/null
EXTRA="$WORK/fleet.pub:/etc/fleet.pub" examples/initramfs/build.sh "$WORK/initrd-signed.cpio.gz" "$kver" >&2
sign_latest() { # a classic cosign signature of the manifest just pushed
    local digest="sha256:$(sha256sum "$WORK/manifest" | cut -d' ' -f1)" cfg pd sig
    printf '{"critical":{"identity":{"docker-reference":"10.0.2.100:5000/boot/img"},"image":{"docker-manifest-digest":"%s"},"type":"cosign container image signature"},"optional":null}' "$digest" > "$WORK/payload"
    sig=$(openssl dgst -sha256 -sign "$WORK/fleet.key" "$WORK/payload" | base64 -w0)
    echo '{}' > "$WORK/sigconfig"
    cfg=$(push_blob "$WORK/sigconfig"); pd=$(push_blob "$WORK/payload")
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","digest":"%s","size":%s,"annotations":{"dev.cosignproject.cosign/signature":"%s"}}]}' \
        "$cfg" "$(stat -c %s "$WORK/sigconfig")" "$pd" "$(stat -c %s "$WORK/payload")" "$sig" > "$WORK/sigmanifest"
    curl -s -f -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary @"$WORK/sigmanifest" \
        "$R/manifests/${digest/:/-}.sig" >/dev/null
}
INITRD=$WORK/initrd-signed.cpio.gz
make_image 3
sign_latest
boot "$WORK/console-signed" minipull.disk=/dev/vda minipull.key=/etc/fleet.pub
expect "$WORK/console-signed" "$marker-v3" "a signed v3 is installed and boots"
# The time floor rose to the created time of the config v3's signature binds
# (2026-01-01T00:03:00Z; plain HTTP: no certificate to verify).
floor=$(floor_on "$WORK/disk.img")
[ "$floor" = 1767225780 ] || { echo "boot test: FAILED: the time floor on the disk is '$floor', not v3's signed created time 1767225780" >&2; exit 1; }
echo "boot test: ok: the time floor on the disk rose to v3's signed created time" >&2
make_image 4
boot "$WORK/console-unsigned" minipull.disk=/dev/vda minipull.key=/etc/fleet.pub
expect "$WORK/console-unsigned" "not signed by the key /etc/fleet.pub (exit 8)" "an unsigned v4 is refused"
expect "$WORK/console-unsigned" "$marker-v3" "and the installed v3 keeps booting"

# 10k. Keyless: with minipull.identity=, .issuer= and .root= (a trusted_root.json
# in the initramfs) only an image signed by that CI workflow boots, judged at
# the time the log vouches for while the guest clock reads 1970. The sigstore
# is the test's own (tests/sigstore.py: no keyless-signed image whose layers
# exist is available offline). Diskless, so the disk keeps v3 for what follows.
python3 tests/sigstore.py root "$WORK/sigstore"
EXTRA="$WORK/sigstore/trusted_root.json:/etc/sigstore/root.json" examples/initramfs/build.sh "$WORK/initrd-keyless.cpio.gz" "$kver" >&2
sign_keyless() { # SAN: a classic keyless signature of the manifest just pushed, by SAN
    local digest="sha256:$(sha256sum "$WORK/manifest" | cut -d' ' -f1)" cfg pd
    printf '{"critical":{"identity":{"docker-reference":"10.0.2.100:5000/boot/img"},"image":{"docker-manifest-digest":"%s"},"type":"cosign container image signature"},"optional":null}' "$digest" > "$WORK/payload"
    python3 tests/sigstore.py sign "$WORK/sigstore" "$WORK/payload" --identity "$1" \
        --issuer https://token.actions.githubusercontent.com > "$WORK/annotations.json"
    echo '{}' > "$WORK/sigconfig"
    cfg=$(push_blob "$WORK/sigconfig"); pd=$(push_blob "$WORK/payload")
    python3 -c 'import json, sys
cfg, cs, pd, ps, ann = sys.argv[1:]
print(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": int(cs)},
    "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json", "digest": pd, "size": int(ps),
                "annotations": json.load(open(ann))}]}))' \
        "$cfg" "$(stat -c %s "$WORK/sigconfig")" "$pd" "$(stat -c %s "$WORK/payload")" "$WORK/annotations.json" > "$WORK/sigmanifest"
    curl -s -f -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary @"$WORK/sigmanifest" \
        "$R/manifests/${digest/:/-}.sig" >/dev/null
}
KEYLESS="minipull.identity=https://github.com/acme/os/.github/workflows/release.yml@refs/tags/* minipull.issuer=https://token.actions.githubusercontent.com minipull.root=/etc/sigstore/root.json"
INITRD=$WORK/initrd-keyless.cpio.gz
sign_keyless https://github.com/acme/os/.github/workflows/nightly.yml@refs/heads/main
# shellcheck disable=SC2086
RTC="-rtc base=1970-01-01" boot "$WORK/console-keyless-other" $KEYLESS minipull.fail=reboot minipull.delay=1
expect "$WORK/console-keyless-other" "not signed by https://github.com/acme/os/.github/workflows/release.yml@refs/tags/\* (issuer https://token.actions.githubusercontent.com): refusing to boot it" "keyless: an image signed by another workflow is refused"
! grep -q "$marker-v4" "$WORK/console-keyless-other" || { echo "boot test: FAILED: the image signed by another workflow booted" >&2; exit 1; }
sign_keyless https://github.com/acme/os/.github/workflows/release.yml@refs/tags/v4
# shellcheck disable=SC2086
RTC="-rtc base=1970-01-01" boot "$WORK/console-keyless" $KEYLESS
expect "$WORK/console-keyless" "network up: .*clock 1970-01-01" "keyless: the guest clock reads 1970"
expect "$WORK/console-keyless" "$marker-v4" "keyless: an image signed by the release workflow boots at a 1970 clock"
INITRD=$WORK/initrd.cpio.gz

# 11. A new root that never marks itself good: it is tried minipull.tries
# times (2 here, default 3), then the previous root (v3) comes back and the
# registry's v5 is not installed again.
make_image 5 nomark
boot "$WORK/console-trial1" minipull.disk=/dev/vda minipull.tries=2
expect "$WORK/console-trial1" "$marker-v5" "v5 (which never marks itself good) is installed and boots (try 1)"
boot "$WORK/console-trial2" minipull.disk=/dev/vda minipull.tries=2
expect "$WORK/console-trial2" "$marker-v5" "v5 boots again (try 2)"
boot "$WORK/console-trial3" minipull.disk=/dev/vda minipull.tries=2
expect "$WORK/console-trial3" "did not mark itself good in 2 boots" "after 2 unmarked boots the console says so"
expect "$WORK/console-trial3" "which did not boot here" "and v5 is not installed again"
expect "$WORK/console-trial3" "$marker-v3" "and the previous root, v3, boots"

# 5. Power cuts: v7 has a 48 MiB layer; qemu is killed (SIGKILL: the guest's
# page cache is lost, as in a power cut) in the middle of it twice, each boot
# resuming what the last left and cut after receiving half the layer, so
# the second cut comes at about 80% of it. The third boot completes and
# boots v7, fetching less than the layer. Between the cuts the root on the
# disk (read after replaying the journal, as a mount would) is v3, whole.
BIG_MIB=48 make_image 7
BIG_LAYER=$LAYER_DIGEST BIG_SIZE=$(stat -c %s "$WORK/layer-7.tar.gz")
on_disk() { # debugfs-command: run on a copy of the disk with its journal replayed
    cp --sparse=always "$WORK/disk.img" "$WORK/disk-copy.img"
    e2fsck -fy "$WORK/disk-copy.img" >/dev/null 2>&1 || true
    debugfs -R "$1" "$WORK/disk-copy.img" 2>/dev/null
}
cut_at() { # console-log fraction-of-the-layer-to-receive
    local log=$1 limit dir=$WORK/fwd-${1##*-} total=0 pid
    limit=$(awk "BEGIN{printf \"%d\", $BIG_SIZE * $2}")
    mkdir -p "$dir"
    FORWARD="python3 $here/count-forward.py $PORT $dir" qemu_args "$log" minipull.disk=/dev/vda
    "${QEMU[@]}" & pid=$!
    for _ in $(seq 1200); do   # at most 120 s
        total=$({ cat "$dir"/fwd.* 2>/dev/null || true; } | awk '{s+=$1} END{print s+0}')
        [ "$total" -ge "$limit" ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
    if grep -q "$marker-v7" "$log"; then
        echo "boot test: FAILED: the pull finished before the power cut" >&2; cat "$log" >&2; exit 1
    fi
    [ "$total" -ge "$limit" ] || { echo "boot test: FAILED: only $total bytes reached the guest (cut at $limit)" >&2; cat "$log" >&2; exit 1; }
    partial=$(on_disk "stat /oci/.minipull/partial/sha256-${BIG_LAYER#sha256:}" | sed -n 's/.*Size: \([0-9]*\).*/\1/p' | head -1)
    grep -q "$marker-v3" <<<"$(on_disk "cat /root/sbin/init")" || { echo "boot test: FAILED: after the cut the root is not v3" >&2; exit 1; }
    echo "boot test: ok: power cut after $total bytes reached the guest (resumed at: $(cat "$dir/ranges" 2>/dev/null || echo start)); partial on the disk after the cut: ${partial:-no file} bytes of $BIG_SIZE; the root is still v3" >&2
}
before=$(requests)
cut_at "$WORK/console-cut1" 0.5
cut_at "$WORK/console-cut2" 0.5
sleep 0.5; from=$(requests)
mkdir -p "$WORK/fwd-resumed"
FORWARD="python3 $here/count-forward.py $PORT $WORK/fwd-resumed" boot "$WORK/console-resumed" minipull.disk=/dev/vda
expect "$WORK/console-resumed" "$marker-v7" "after two power cuts the next boot completes the pull and boots v7"
sleep 0.5
fetched=$(tail -n +$((from + 1)) "$WORK/access.log" | grep "GET /v2/boot/img/blobs/$BIG_LAYER" | awk '{s+=$10} END{print s+0}')
gets=$(tail -n +$((before + 1)) "$WORK/access.log" | grep -c "GET /v2/boot/img/blobs/$BIG_LAYER" || true)
[ "$fetched" -gt 0 ] && [ "$fetched" -le $((BIG_SIZE / 2)) ] \
    || { echo "boot test: FAILED: the boot after the cuts fetched $fetched bytes of the $BIG_SIZE-byte layer" >&2; exit 1; }
echo "boot test: ok: the boot after the cuts resumed at $(cat "$WORK/fwd-resumed/ranges" 2>/dev/null) and the registry sent it $fetched bytes of the $BIG_SIZE-byte layer ($gets GETs of the layer over the three boots)" >&2

# 6 and 7. TLS with a test CA valid from 2020 and the guest clock at
# 1970-01-01; token auth with the credentials in a file on the disk. A second
# docker-registry serves the same storage over TLS with token auth; the token
# server (TLS too) is reached through its own forward. A fresh disk holds
# only the credentials; the image is v6.
make_image 6
SEC=$WORK/secure; mkdir -p "$SEC/disk"
python3 examples/initramfs/token-server.py certs "$SEC"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SPORT=$(free_port); TPORT=$(free_port)
password="pw-$$-never-on-the-console"
python3 examples/initramfs/token-server.py serve "$SEC" "$TPORT" fleet "$password" boot-issuer boot-registry &
TOKEN_PID=$!
cat > "$SEC/config.yml" <<YAML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $WORK/data}}
http: {addr: 127.0.0.1:$SPORT, tls: {certificate: $SEC/server.pem, key: $SEC/server.key}}
auth: {token: {realm: "https://10.0.2.100:5444/token", service: boot-registry, issuer: boot-issuer, rootcertbundle: $SEC/sign.pem}}
YAML
docker-registry serve "$SEC/config.yml" 2>"$SEC/registry.log" &
SREG=$!
trap 'kill $REG $SREG $TOKEN_PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do curl -s -o /dev/null --cacert "$SEC/ca.pem" "https://127.0.0.1:$SPORT/v2/" && break; sleep 0.1; done
printf '{"auths":{"10.0.2.100:5443":{"auth":"%s"}}}\n' "$(printf 'fleet:%s' "$password" | base64 -w0)" > "$SEC/disk/auth.json"
truncate -s 256M "$SEC/disk.img"
mkfs.ext4 -q -F -d "$SEC/disk" "$SEC/disk.img"
EXTRA="$SEC/ca.pem:/etc/registry-ca.pem" examples/initramfs/build.sh "$WORK/initrd-ca.cpio.gz" "$kver" >&2
SEC_FWD=",guestfwd=tcp:10.0.2.100:5443-cmd:socat - TCP:127.0.0.1:$SPORT,guestfwd=tcp:10.0.2.100:5444-cmd:socat - TCP:127.0.0.1:$TPORT"
SEC_ARGS="minipull.ca=/etc/registry-ca.pem minipull.auth=/disk/auth.json"
INITRD=$WORK/initrd-ca.cpio.gz DISK_ARGS="-drive file=$SEC/disk.img,format=raw,if=virtio" RTC="-rtc base=1970-01-01" \
    GUEST_REF="minipull.ref=10.0.2.100:5443/boot/img:v1 $SEC_ARGS" FWD=$SEC_FWD \
    boot "$WORK/console-secure" minipull.disk=/dev/vda
expect "$WORK/console-secure" "clock reads 1970-01-01" "the guest clock reads 1970 and minipull says so"
expect "$WORK/console-secure" "$marker-v6" "v6 is installed from the TLS, token-auth registry and boots"
grep -q "user=fleet scope=repository:boot/img:pull -> 200" "$SEC/token.log" \
    || { echo "boot test: FAILED: the token server saw no request with the disk's credentials" >&2; cat "$SEC/token.log" >&2; exit 1; }
if grep -qF "$password" "$WORK/console-secure"; then
    echo "boot test: FAILED: the password appears on the console" >&2; exit 1
fi
# The floor on that disk: the verified server certificate's notBefore
# (2020-01-01), not the guest clock (1970).
floor=$(floor_on "$SEC/disk.img")
[ "$floor" = 1577836800 ] || { echo "boot test: FAILED: the time floor on the TLS disk is '$floor', not the certificate's notBefore 1577836800" >&2; exit 1; }
echo "boot test: ok: the time floor on the TLS disk rose to the verified certificate's notBefore, not to the guest clock" >&2
echo "boot test: ok: the credentials on the disk were used (token server log) and the password is not on the console" >&2

# 12-15: the power-cut torture, the floor across boots, a full disk at the
# record write, images that ship the boot mark (on a disk of their own).
. "$here/torture.sh"

# 16: partial (zstd:chunked) updates and a power cut in one (a disk of its own).
. "$here/delta.sh"

# arm64 (qemu-system-aarch64 -M virt, Debian's arm64 kernel and busybox, the
# aarch64 minipull): cases 1 and 6 here, 4 below with the registries down.
# The arm64 image lives in its own repository, boot/arm.
arm() { # console-log extra-kernel-args...
    QSYS="qemu-system-aarch64 -M virt -cpu cortex-a57" KERNEL=$(ls "$ARM"/boot/vmlinuz-*) CONSOLE=ttyAMA0 \
        INITRD=$WORK/initrd-arm64.cpio.gz DISK_ARGS="-drive file=$WORK/arm-disk.img,format=raw,if=none,id=d0 -device virtio-blk-pci,drive=d0" \
        boot "$@" minipull.disk=/dev/vda
}
MINIPULL=dist/aarch64-unknown-linux-musl/minipull BUSYBOX=$ARM/bin/busybox MODULES_DIR=$ARM/lib/modules/$arm_kver \
    EXTRA="$SEC/ca.pem:/etc/registry-ca.pem" examples/initramfs/build.sh "$WORK/initrd-arm64.cpio.gz" "$arm_kver" >&2
R_X86=$R R="http://127.0.0.1:$PORT/v2/boot/arm"
IMG_ARCH=arm64 IMG_BUSYBOX=$ARM/bin/busybox make_image a1
# An empty disk but for the credentials case 6 uses.
truncate -s 128M "$WORK/arm-disk.img"
mkfs.ext4 -q -F -d "$SEC/disk" "$WORK/arm-disk.img"
# 1 (arm64). First boot on an empty disk: pull, unpack, switch_root.
GUEST_REF="minipull.ref=10.0.2.100:5000/boot/arm:v1 minipull.plain=1" arm "$WORK/console-arm-first"
expect "$WORK/console-arm-first" "$marker-va1" "arm64: the first boot on an empty disk installs and boots a1"
# 6 (arm64). The TLS, token-auth registry with the guest clock at 1970: an
# update to a2 is installed from it and boots.
IMG_ARCH=arm64 IMG_BUSYBOX=$ARM/bin/busybox make_image a2
RTC="-rtc base=1970-01-01" GUEST_REF="minipull.ref=10.0.2.100:5443/boot/arm:v1 $SEC_ARGS" FWD=$SEC_FWD \
    arm "$WORK/console-arm-secure"
expect "$WORK/console-arm-secure" "clock reads 1970-01-01" "arm64: the guest clock reads 1970 and minipull says so"
expect "$WORK/console-arm-secure" "$marker-va2" "arm64: a2 is installed from the TLS, token-auth registry and boots"
if grep -qF "$password" "$WORK/console-arm-secure"; then
    echo "boot test: FAILED: the password appears on the arm64 console" >&2; exit 1
fi
R=$R_X86

# 4. Registry down: the installed root boots, and the console says why.
kill "$REG" "$SREG" "$TOKEN_PID"; wait "$REG" "$SREG" "$TOKEN_PID" 2>/dev/null || true
# (With the guest clock at 1970: /init sets it forward to the disk's floor.)
RTC="-rtc base=1970-01-01" boot "$WORK/console-down" minipull.disk=/dev/vda minipull.wait=3
expect "$WORK/console-down" "clock set forward to the time floor" "the clock at 1970 is set forward to the time floor on the disk"
expect "$WORK/console-down" "cannot be reached" "with the registry down the console says so"
expect "$WORK/console-down" "$marker-v7" "and the installed v7 boots"
GUEST_REF="minipull.ref=10.0.2.100:5000/boot/arm:v1 minipull.plain=1" arm "$WORK/console-arm-down" minipull.wait=3
expect "$WORK/console-arm-down" "cannot be reached" "arm64: with the registry down the console says so"
expect "$WORK/console-arm-down" "$marker-va2" "arm64: and the installed a2 boots"

# Diskless with the registry down: a clear message, never a silent panic.
DISK_ARGS=
boot "$WORK/console-nothing" minipull.wait=3 minipull.fail=reboot minipull.delay=1
expect "$WORK/console-nothing" "could not pull" "diskless with the registry down says so and reboots"
echo "boot test: all cases passed" >&2

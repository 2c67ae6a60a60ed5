# The boot test's partial-update case (sourced by test.sh after the torture:
# uses its registry and access log, boot, expect and the forwarder), on a
# disk of its own, with an initramfs whose minipull has the `delta` feature.
#
# 16. Partial updates of a zstd:chunked layer. The image: a gzip base layer
#     (busybox, an /sbin/init that prints the version and a tree digest) and
#     a zstd:chunked layer (examples/delta_image.rs) with /etc/delta-version,
#     this machine's zoneinfo and a 4.5 MB shared library.
#     - v1 is installed on an empty disk (whole layers) and boots;
#     - v2 changes 8 bytes in the library and the version: the boot fetches
#       the chunked layer's metadata and the changed chunk by Range requests
#       (206 in the registry's log, no whole-layer GET, the base layer not
#       fetched), boots v2, and its root on the disk equals the oracle, a
#       whole-layer unpack of v2 on the host (contents, modes, owners, links);
#     - v3 adds 12 MiB of new data: qemu is killed (a power cut) while the
#       ranges arrive (at 250 kB/s); the root on the disk is still v2 and the
#       chunks written back before the cut are kept; the next boot fetches
#       the rest, finishes the update, boots v3 and equals v3's oracle.

DL=$WORK/delta; mkdir -p "$DL"
dstart=$(date +%s)
# The release binary with partial updates, and the image writer.
rm -f target/delta-dist/minipull
# (Its last step copies dist/x86_64-unknown-linux-musl/minipull to dist/minipull.)
OUT=target/delta-dist MINIPULL_FEATURES=delta ./build.sh > "$DL/build.log" 2>&1 || true
[ -x target/delta-dist/minipull ] || { echo "boot test: FAILED: OUT=target/delta-dist MINIPULL_FEATURES=delta ./build.sh:" >&2; tail -20 "$DL/build.log" >&2; exit 1; }
CARGO_BUILD_JOBS=1 cargo build -q --release --features delta --example delta_image \
    || { echo "boot test: FAILED: cargo build --example delta_image" >&2; exit 1; }
DELTA_BIN=$PWD/target/delta-dist/minipull WRITER=$PWD/target/release/examples/delta_image
MINIPULL=$DELTA_BIN examples/initramfs/build.sh "$DL/initrd.cpio.gz" "$kver" >&2
R_DSAVE=$R R="http://127.0.0.1:$PORT/v2/boot/delta"

# The base layer, shared by every version.
mkdir -p "$DL/base/bin" "$DL/base/sbin" "$DL/base/proc"
cp /bin/busybox "$DL/base/bin/busybox"
cat > "$DL/base/sbin/init" <<EOF
#!/bin/busybox sh
export PATH=/bin
busybox mount -t proc proc /proc
t=\$(cd / && busybox find . -xdev -path ./proc -prune -o -type f ! -path ./.minipull-boot-ok -print | busybox sort | busybox xargs busybox sha256sum | busybox sha256sum | busybox cut -d' ' -f1)
busybox echo "$marker-delta-tree: \$(busybox cat /etc/delta-version) \$t"
busybox touch /.minipull-boot-ok
busybox sync
busybox echo "$marker-delta-v\$(busybox cat /etc/delta-version): booted"
busybox poweroff -f
EOF
chmod 755 "$DL/base/sbin/init"
tar --sort=name --mtime=@1767225600 --owner=0 --group=0 --numeric-owner -C "$DL/base" -cf "$DL/base.tar" .
gzip -n -9 -c "$DL/base.tar" > "$DL/base.tar.gz"

# dl_push V: the chunked layer of $DL/tree-V written by delta_image (its
# "v1" output: the tree as it is), pushed with the base layer as :latest.
# Sets DL_LAYER and DL_SIZE (the chunked layer).
dl_push() {
    local v=$1 w=$DL/w-$1 bd cd
    mkdir -p "$w"
    (cd "$DL/tree-$v" && "$WRITER" "$w" - etc usr) 2> "$w/written" \
        || { echo "boot test: FAILED: delta_image for v$v: $(cat "$w/written")" >&2; exit 1; }
    IMG_N=$((IMG_N + 1))
    printf '{"architecture":"amd64","os":"linux","created":"2026-01-01T00:%02d:00Z","config":{"Cmd":["/sbin/init"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s","%s"]}}' \
        "$IMG_N" "$(sha256sum "$DL/base.tar" | cut -d' ' -f1)" "$(cat "$w/v1.diffid")" > "$w/config"
    cd=$(push_blob "$w/config"); bd=$(push_blob "$DL/base.tar.gz"); DL_LAYER=$(push_blob "$w/v1.blob")
    DL_SIZE=$(stat -c %s "$w/v1.blob")
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%s","size":%s},{"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","digest":"%s","size":%s,"annotations":%s}]}' \
        "$cd" "$(stat -c %s "$w/config")" "$bd" "$(stat -c %s "$DL/base.tar.gz")" "$DL_LAYER" "$DL_SIZE" "$(cat "$w/v1.annotations")" > "$w/manifest"
    curl -s -f -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary @"$w/manifest" "$R/manifests/latest" >/dev/null
    DL_BASE=$bd
    # The oracle: a whole-layer unpack of this version on the host.
    "$DELTA_BIN" -q --plain-http --no-delta "127.0.0.1:$PORT/boot/delta:latest" "$DL/oracle-oci-$v" --unpack "$DL/oracle-$v" >/dev/null \
        || { echo "boot test: FAILED: the whole-layer unpack of v$v on the host" >&2; exit 1; }
}
# A digest of a tree: path, type, mode, owner, and content or link target of
# every entry (/proc's content and the boot mark left out).
dl_digest() {
    python3 - "$1" <<'EOF'
import hashlib, os, stat, sys
top = sys.argv[1]
h = hashlib.sha256()
for d, dirs, files in os.walk(top):
    dirs.sort()
    rel = os.path.relpath(d, top)
    if rel == "proc":
        dirs[:] = []
    for name in sorted(dirs + files):
        p = os.path.join(d, name)
        path = os.path.relpath(p, top)
        if path == ".minipull-boot-ok":
            continue
        s = os.lstat(p)
        if stat.S_ISREG(s.st_mode):
            what = hashlib.sha256(open(p, "rb").read()).hexdigest()
        elif stat.S_ISLNK(s.st_mode):
            what = os.readlink(p)
        else:
            what = ""
        h.update(("%s %o %d:%d %s\n" % (path, s.st_mode, s.st_uid, s.st_gid, what)).encode())
print(h.hexdigest())
EOF
}
DDISK=$DL/disk.img
# The root on the disk (journal replayed, on a copy) into $DL/dump.
dl_dump() {
    cp --sparse=always "$DDISK" "$DL/copy.img"
    e2fsck -fy "$DL/copy.img" >/dev/null 2>&1 || true
    rm -rf "$DL/dump"; mkdir "$DL/dump"
    debugfs -R "rdump /root $DL/dump" "$DL/copy.img" >/dev/null 2>&1
}
dl_on_disk() { debugfs -R "$1" "$DL/copy.img" 2>/dev/null; }
dl_qemu() { # name console-log [rate]: QEMU for a boot of the delta disk through count-forward.py into $DL/fwd-name
    mkdir -p "$DL/fwd-$1"
    INITRD=$DL/initrd.cpio.gz DISK_ARGS="-drive file=$DDISK,format=raw,if=virtio" \
        GUEST_REF="minipull.ref=10.0.2.100:5000/boot/delta:latest minipull.plain=1" \
        FORWARD="python3 $here/count-forward.py $PORT $DL/fwd-$1 ${3:-}" qemu_args "$2" minipull.disk=/dev/vda minipull.verbose=1
}
dl_boot() { dl_qemu "$1" "$DL/console-$1"; timeout 240 "${QEMU[@]}" || true; }
dl_fail() { echo "boot test: FAILED: delta: $1; console:" >&2; cat "$2" >&2; exit 1; }
# The root on the disk equals version $1's oracle, and its init printed the
# oracle's content digest.
dl_judge() { # version console-log
    local want got
    grep -q "$marker-delta-tree: $1 $(python3 "$here/disk-check.py" tree "$DL/oracle-$1")" "$2" \
        || dl_fail "v$1's init did not print the tree digest of the whole-layer unpack" "$2"
    dl_dump
    want=$(dl_digest "$DL/oracle-$1") got=$(dl_digest "$DL/dump/root")
    [ "$want" = "$got" ] || dl_fail "the root on the disk ($got) is not the whole-layer unpack of v$1 ($want)" "$2"
}
# The log lines of GETs of blob $1 from line $2 of the access log on.
dl_gets() { tail -n +$(($2 + 1)) "$WORK/access.log" | grep "\"GET /v2/boot/delta/blobs/$1 " || true; }

# v1: a fresh disk, whole layers.
mkdir -p "$DL/tree-1/etc" "$DL/tree-1/usr/lib" "$DL/tree-1/usr/share"
echo 1 > "$DL/tree-1/etc/delta-version"
cp -a /usr/share/zoneinfo "$DL/tree-1/usr/share/zoneinfo"
cp -L /usr/lib/x86_64-linux-gnu/libcrypto.so.3 "$DL/tree-1/usr/lib/libbig.so"
dl_push 1
truncate -s 256M "$DDISK"
mkfs.ext4 -q -F "$DDISK"
dl_boot v1
expect "$DL/console-v1" "$marker-delta-v1: booted" "delta: v1 ($(cat "$DL/w-1/written" | sed -n 's/^v1: //p'), chunked layer $DL_SIZE bytes) is installed on an empty disk and boots"
dl_judge 1 "$DL/console-v1"
echo "boot test: ok: delta: v1's root on the disk equals its whole-layer unpack (contents, modes, owners, links)" >&2

# v2: 8 bytes changed in the middle of the library, and the version.
cp -a "$DL/tree-1" "$DL/tree-2"
echo 2 > "$DL/tree-2/etc/delta-version"
big=$DL/tree-2/usr/lib/libbig.so
printf 'minipull' | dd of="$big" bs=1 seek=$(($(stat -c %s "$big") / 2)) conv=notrunc status=none
dl_push 2
sleep 0.5; before=$(requests)
dl_boot v2
expect "$DL/console-v2" "$marker-delta-v2: booted" "delta: the next boot updates to v2 and boots it"
grep -q "fetched of .* reused from the root" "$DL/console-v2" || dl_fail "the console shows no partial update of the chunked layer" "$DL/console-v2"
! grep -q "starting over with the whole layer" "$DL/console-v2" || dl_fail "the partial update fell back to the whole layer" "$DL/console-v2"
echo "boot test: ok: delta: the console shows the partial update: $(grep -o "layer [^ ]*: .* reused from the root" "$DL/console-v2" | tr -d '\r' | head -1)" >&2
sleep 0.5
gets=$(dl_gets "$DL_LAYER" "$before")
n206=$(grep -c '" 206 ' <<<"$gets" || true)
nother=$(grep -v '" 206 ' <<<"$gets" | grep -c . || true)
fetched=$(awk '{s+=$10} END{print s+0}' <<<"$gets")
base_gets=$(dl_gets "$DL_BASE" "$before" | grep -c . || true)
[ "$n206" -ge 2 ] && [ "$nother" = 0 ] && [ "$base_gets" = 0 ] && [ "$fetched" -lt $((DL_SIZE / 10)) ] \
    || { echo "boot test: FAILED: delta: the v2 update's GETs of the chunked layer ($n206 answered 206, $nother otherwise, $fetched bytes of $DL_SIZE) and of the base layer ($base_gets):" >&2; echo "$gets" >&2; exit 1; }
echo "boot test: ok: delta: the registry log shows $n206 range requests of the chunked layer answered 206 ($fetched bytes of its $DL_SIZE; first range of each request: $(tr "\n" " " < "$DL/fwd-v2/ranges" 2>/dev/null | sed "s/ $//")), no whole-layer GET, and no GET of the unchanged base layer" >&2
dl_judge 2 "$DL/console-v2"
echo "boot test: ok: delta: v2's root on the disk equals its whole-layer unpack (contents, modes, owners, links)" >&2

# v3: 12 MiB of new data; the power is cut while its ranges arrive.
cp -a "$DL/tree-2" "$DL/tree-3"
echo 3 > "$DL/tree-3/etc/delta-version"
head -c 12M /dev/urandom > "$DL/tree-3/usr/share/update.bin"
V2_SIZE=$DL_SIZE
dl_push 3
sleep 0.5; before=$(requests)
# The link to the guest runs at 250 kB/s, and the cut comes at 10 MiB, about
# 40 s into the ranges: the chunks the guest wrote more than 30 s before it
# (its kernel's dirty writeback age; the spool is not synced) are on the disk.
dl_qemu cut "$DL/console-cut" 250000
limit=$((10 << 20)) total=0
"${QEMU[@]}" & qpid=$!
for _ in $(seq 1200); do   # at most 120 s
    total=$({ cat "$DL"/fwd-cut/fwd.* 2>/dev/null || true; } | awk '{s+=$1} END{print s+0}')
    [ "$total" -ge "$limit" ] && break
    kill -0 "$qpid" 2>/dev/null || break
    sleep 0.1
done
kill -KILL "$qpid" 2>/dev/null || true; wait "$qpid" 2>/dev/null || true
! grep -q "$marker-delta-v3" "$DL/console-cut" || dl_fail "the update to v3 finished before the power cut" "$DL/console-cut"
[ "$total" -ge "$limit" ] || dl_fail "only $total bytes reached the guest (cut at $limit)" "$DL/console-cut"
grep -q "layer .* (partial)\|installing" "$DL/console-cut" || dl_fail "the cut boot did not start the update" "$DL/console-cut"
dl_dump
[ "$(cat "$DL/dump/root/etc/delta-version" 2>/dev/null)" = 2 ] || dl_fail "after the power cut the root on the disk is not v2" "$DL/console-cut"
read -r spooled spooled_bytes <<<"$(dl_on_disk "ls -l /oci/.minipull/partial/chunks" | awk '$NF ~ /^[0-9a-f]+$/ && length($NF) == 64 {n++; b+=$(NF-3)} END{print n+0, b+0}')"
[ "$spooled" -gt 0 ] || dl_fail "no spooled chunk is on the disk after the power cut" "$DL/console-cut"
echo "boot test: ok: delta: power cut after $total bytes reached the guest during the ranges of v3 (first range of each request: $(tr '\n' ' ' < "$DL/fwd-cut/ranges" 2>/dev/null | sed 's/ $//')); the root on the disk is still v2; $spooled verified chunks ($spooled_bytes bytes) kept on the disk" >&2
sleep 0.5; from=$(requests)
dl_boot resumed
expect "$DL/console-resumed" "$marker-delta-v3: booted" "delta: the boot after the power cut finishes the update and boots v3"
! grep -q "starting over with the whole layer" "$DL/console-resumed" || dl_fail "the update after the cut fell back to the whole layer" "$DL/console-resumed"
sleep 0.5
gets=$(dl_gets "$DL_LAYER" "$from")
nother=$(grep -v '" 206 ' <<<"$gets" | grep -c . || true)
fetched=$(awk '{s+=$10} END{print s+0}' <<<"$gets")
# Without the kept chunks the update would fetch v3's metadata (from its
# TOC's offset to the end: the first range) and its new frames (at most the
# growth of the layer from v2): the kept bytes are not fetched again.
meta_start=$(sed -n '1s/^bytes=\([0-9]*\)-.*/\1/p' "$DL/fwd-cut/ranges")
bound=$((DL_SIZE - V2_SIZE + DL_SIZE - ${meta_start:-0} + 65536 - spooled_bytes))
[ "$nother" = 0 ] && [ "$fetched" -gt 0 ] && [ -n "$meta_start" ] && [ "$fetched" -le "$bound" ] \
    || { echo "boot test: FAILED: delta: the boot after the cut: GETs of the chunked layer ($fetched bytes of $DL_SIZE, more than $bound, what is not kept):" >&2; echo "$gets" >&2; exit 1; }
dl_judge 3 "$DL/console-resumed"
echo "boot test: ok: delta: after the cut the next boot fetched $fetched bytes of the $DL_SIZE-byte layer by ranges (no whole-layer GET; $total bytes reached the guest before the cut, $spooled_bytes of them kept on the disk and not fetched again); v3's root equals its whole-layer unpack" >&2
echo "boot test: ok: delta: the partial-update case took $(($(date +%s) - dstart)) s" >&2
R=$R_DSAVE

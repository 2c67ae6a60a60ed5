# The boot test's power-cut torture and the cases that share its disk
# (sourced by test.sh after case 6/7: uses its registry, its helpers and the
# signed initramfs of case 10). An image of four layers and ~2,000 small
# files, in three versions; its /sbin/init prints a digest of its own tree.
#
# 12. Power cuts at seeded random instants of an update from v1 to v2 (with
#     --keep-old and --prune, as /init runs it), spread over download,
#     unpack, swap and prune, two per update (the second in the boot that
#     continues it); after each cut the disk is read (journal replayed) and
#     judged; then an uncut boot must boot a whole v2 and leave the disk
#     an uncut update leaves.
# 13. The clock floor rises from one verified boot to the next.
# 14. A disk full at the record write (a fault hook, compiled only into
#     target/test-hooks/minipull): the boot ends on the root the record
#     names, on trial.
# 15. Images that ship /.minipull-boot-ok (a file, a directory) are still
#     rolled back after minipull.tries unmarked boots (2, then 1).
#
# TORTURE_SEED (default: the date) picks the instants; TORTURE_CUTS (12)
# how many.

T=$WORK/torture; mkdir -p "$T"
# The release binary with the fault hooks (incremental after ./build.sh).
./build.sh test-hooks >/dev/null 2>&1 || { echo "boot test: FAILED: ./build.sh test-hooks" >&2; exit 1; }
R_SAVE=$R R="http://127.0.0.1:$PORT/v2/boot/tort"
seed=${TORTURE_SEED:-$(date +%Y%m%d)}
echo "boot test: power-cut torture: seed $seed (TORTURE_SEED=$seed reproduces the instants)" >&2
tarball() { # dir out: a reproducible layer (name order, fixed times and owners)
    tar --sort=name --mtime=@1767225600 --owner=0 --group=0 --numeric-owner -C "$1" -cf "$2.tar" .
    gzip -n -9 -c "$2.tar" > "$2.tar.gz"
}
# The layers of version $1 ($2: "nomark", "markfile" or "markdir" for the
# images of case 15): base (busybox, /sbin/init) and common (1,000 files)
# are shared by every version; data (1,000 files and 1 MiB of noise) and
# version (/etc/version) are the version's own.
tort_layers() {
    local v=$1 kind=${2:-} d
    if [ ! -f "$T/base.tar.gz" ]; then
        d=$T/l-base; mkdir -p "$d/bin" "$d/sbin" "$d/proc" "$d/etc"
        cp /bin/busybox "$d/bin/busybox"
        cat > "$d/sbin/init" <<EOF
#!/bin/busybox sh
export PATH=/bin
busybox mount -t proc proc /proc
t=\$(cd / && busybox find . -xdev -path ./proc -prune -o -type f ! -path ./.minipull-boot-ok -print | busybox sort | busybox xargs busybox sha256sum | busybox sha256sum | busybox cut -d' ' -f1)
busybox echo "$marker-tree: \$(busybox cat /etc/version) \$t"
[ -e /etc/nomark ] || busybox touch /.minipull-boot-ok
busybox sync
busybox echo "$marker-v\$(busybox cat /etc/version): booted"
busybox poweroff -f
EOF
        chmod 755 "$d/sbin/init"
        tarball "$d" "$T/base"
        python3 - "$T/l-common" <<'EOF'
import os, sys
top = sys.argv[1]
for i in range(1000):
    d = os.path.join(top, "usr/share/common/%02d" % (i % 50))
    os.makedirs(d, exist_ok=True)
    open(os.path.join(d, "f%04d" % i), "w").write(("common file %d\n" % i) * (1 + i % 7))
EOF
        tarball "$T/l-common" "$T/common"
    fi
    python3 - "$T/l-data-$v" "$v" <<'EOF'
import os, random, sys
top, v = sys.argv[1], sys.argv[2]
rnd = random.Random("minipull-torture-" + v)
for i in range(1000):
    d = os.path.join(top, "var/lib/data/%02d" % (i % 40))
    os.makedirs(d, exist_ok=True)
    open(os.path.join(d, "d%04d" % i), "w").write("version %s file %d %d\n" % (v, i, rnd.getrandbits(64)))
open(os.path.join(top, "var/lib/noise"), "wb").write(rnd.randbytes(1 << 20))
EOF
    tarball "$T/l-data-$v" "$T/data-$v"
    d=$T/l-ver-$v; mkdir -p "$d/etc"
    echo "$v" > "$d/etc/version"
    [ -n "$kind" ] && : > "$d/etc/nomark"
    [ "$kind" = markfile ] && echo "good" > "$d/.minipull-boot-ok"
    [ "$kind" = markdir ] && mkdir -p "$d/.minipull-boot-ok/sub" && echo "good" > "$d/.minipull-boot-ok/sub/f"
    tarball "$d" "$T/ver-$v"
    # The tree the version unpacks to, and its digest as its init prints it.
    rm -rf "$T/tree-$v"; mkdir "$T/tree-$v"
    for l in l-base l-common "l-data-$v" "l-ver-$v"; do cp -a "$T/$l/." "$T/tree-$v/"; done
}
# Push version $1 (signed, tagged v1 in boot/tort) and note it in versions.json.
tort_push() {
    local v=$1 layers="" ids="" cd l ld
    tort_layers "$@"
    for l in base common "data-$v" "ver-$v"; do
        ld=$(push_blob "$T/$l.tar.gz")
        layers="$layers${layers:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"$ld\",\"size\":$(stat -c %s "$T/$l.tar.gz")}"
        ids="$ids${ids:+,}\"sha256:$(sha256sum "$T/$l.tar" | cut -d' ' -f1)\""
    done
    IMG_N=$((IMG_N + 1))
    printf '{"architecture":"amd64","os":"linux","created":"2026-01-01T00:%02d:00Z","config":{"Cmd":["/sbin/init"]},"rootfs":{"type":"layers","diff_ids":[%s]}}' \
        "$IMG_N" "$ids" > "$T/config-$v"
    cd=$(push_blob "$T/config-$v")
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[%s]}' \
        "$cd" "$(stat -c %s "$T/config-$v")" "$layers" > "$WORK/manifest"
    curl -s -f -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary @"$WORK/manifest" "$R/manifests/v1" >/dev/null
    sign_latest
    python3 - "$T/versions.json" "$v" "sha256:$(sha256sum "$WORK/manifest" | cut -d' ' -f1)" "$(python3 "$here/disk-check.py" tree "$T/tree-$v")" "$WORK/manifest" <<'EOF'
import json, os, sys
path, v, image, tree, manifest = sys.argv[1:]
vs = json.load(open(path)) if os.path.exists(path) else {}
m = json.load(open(manifest))
vs["v" + v] = {"image": image, "tree": tree, "blobs": sorted([image, m["config"]["digest"]] + [l["digest"] for l in m["layers"]])}
json.dump(vs, open(path, "w"))
EOF
}
tree_of() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["v" + sys.argv[2]]["tree"])' "$T/versions.json" "$1"; }
TDISK=$T/disk.img
read_disk() { # image: $T/dump holds its files, journal replayed (on a copy)
    local names
    cp --sparse=always "$1" "$T/copy.img"
    e2fsck -fy "$T/copy.img" >/dev/null 2>&1 || true
    debugfs -R "ls -l /" "$T/copy.img" 2>/dev/null > "$T/inodes"
    names=$(awk 'NF >= 2 && $1 ~ /^[0-9]+$/ {print $NF}' "$T/inodes" | grep -vx -e . -e .. -e lost+found | sed 's|^|/|' | tr '\n' ' ')
    rm -rf "$T/dump"; mkdir "$T/dump"
    debugfs -R "rdump $names $T/dump" "$T/copy.img" >/dev/null 2>&1
}
judge() { # mode [reference]: the disk read by read_disk, judged; prints its state
    python3 "$here/disk-check.py" "$T/dump" "$T/inodes" "$T/versions.json" "$@" > "$T/state" || {
        echo "boot test: FAILED: the disk after ${WHAT:-the boot}: $(cat "$T/state")" >&2; exit 1; }
}
field() { python3 -c 'import json,sys; v=json.load(open(sys.argv[1]))[sys.argv[2]]; print(v)' "$T/state" "$1"; }
TBOOT_ARGS="minipull.disk=/dev/vda minipull.key=/etc/fleet.pub minipull.verbose=1"
tboot() { # console-log extra-kernel-args...
    INITRD=${TINITRD:-$WORK/initrd-signed.cpio.gz} DISK_ARGS="-drive file=$TDISK,format=raw,if=virtio" \
        GUEST_REF="minipull.ref=10.0.2.100:5000/boot/tort:v1 minipull.plain=1" boot "$1" $TBOOT_ARGS "${@:2}"
}
expect_tree() { # console-log version
    grep -q "$marker-tree: $2 $(tree_of "$2")" "$1" || {
        echo "boot test: FAILED: the boot did not print v$2's tree digest $(tree_of "$2"); console:" >&2; cat "$1" >&2; exit 1; }
}
tstart=$(date +%s)

# The disk: v0 installed, then v1 over it (ROOT.old = v0): the state each
# cut starts from. 13: the floor after each of those two verified boots.
tort_push 0
truncate -s 256M "$TDISK"
mkfs.ext4 -q -F "$TDISK"
tboot "$T/console-v0"
expect "$T/console-v0" "$marker-v0: booted" "torture: v0 (4 layers, $(find "$T/tree-0" -type f | wc -l) files) is installed on a fresh disk and boots"
expect_tree "$T/console-v0" 0
floor0=$(floor_on "$TDISK")
tort_push 1
tboot "$T/console-v1"
expect "$T/console-v1" "$marker-v1: booted" "torture: v1 is installed over it and boots"
expect_tree "$T/console-v1" 1
floor1=$(floor_on "$TDISK")
[ -n "$floor0" ] && [ -n "$floor1" ] && [ "$floor1" -gt "$floor0" ] \
    || { echo "boot test: FAILED: the time floor did not rise from one verified boot to the next: '$floor0', then '$floor1'" >&2; exit 1; }
echo "boot test: ok: the time floor on the disk rose from $floor0 (v0's signed created time) to $floor1 (v1's) across two verified boots" >&2
cp --sparse=always "$TDISK" "$T/v1.img"
tort_push 2

# An uncut update from v1 to v2: when each phase starts (for the instants)
# and what the disk holds after it (what every cut update must end on).
cp --sparse=always "$T/v1.img" "$TDISK"
INITRD=$WORK/initrd-signed.cpio.gz DISK_ARGS="-drive file=$TDISK,format=raw,if=virtio" \
    GUEST_REF="minipull.ref=10.0.2.100:5000/boot/tort:v1 minipull.plain=1" qemu_args "$T/console-ref" $TBOOT_ARGS
python3 "$here/power-cut.py" "$T/console-ref" - 0 -- "${QEMU[@]}" > "$T/ref-times"
expect "$T/console-ref" "$marker-v2: booted" "torture: an uncut update from v1 to v2 boots v2 (phases started at, s after qemu started: $(cat "$T/ref-times"))"
expect_tree "$T/console-ref" 2
read_disk "$TDISK"; WHAT="an uncut update" judge final
cp "$T/state" "$T/ref-state"
echo "boot test: ok: after an uncut update: $(cat "$T/state" | python3 -c 'import json,sys; s=json.load(sys.stdin); print("ROOT", s["root"], "record", s["record"], "ROOT.old", s["root.old"], "index", s["index"], "blobs", len(s["blobs"]), "leftovers", s["leftovers"])')" >&2

# The instants: in pairs, a cut early in the update (download, unpack) and
# one late (swap, prune) in the boot that continues it, then an uncut boot;
# each at a seeded random point of that phase's span in the uncut run,
# counted from the phase's first console line.
python3 - "$T/ref-times" "$seed" "${TORTURE_CUTS:-12}" > "$T/plan" <<'EOF'
import json, random, sys
seen = json.load(open(sys.argv[1]))["seen"]
rnd = random.Random(sys.argv[2])
pairs = [("download", "swap"), ("unpack", "prune"), ("download", "prune"), ("unpack", "swap")] * 3
starts = {"download": "minipull-init: installing", "unpack": "minipull: pulled ",
          "swap": "minipull: unpacked layer 4/4", "prune": "minipull: unpacked 4 layers"}
nxt = {"download": "unpack", "unpack": "swap", "swap": "prune", "prune": "boot"}
for i in range(int(sys.argv[3])):
    p = pairs[i // 2][i % 2]
    span = max(seen[nxt[p]] - seen[p], 0.02)
    # (Within 80% of it: the spans vary from boot to boot.)
    print(i % 2, p, starts[p].replace(" ", "~"), "%.3f" % rnd.uniform(0, 0.8 * span))
EOF
n=0 cuts=0 phases=""
after_boot() { # the uncut boot after cut $n, and the disk it leaves
    tboot "$T/console-after$n"
    expect "$T/console-after$n" "$marker-v2: booted" "after cut $n an uncut boot boots v2"
    expect_tree "$T/console-after$n" 2
    read_disk "$TDISK"; WHAT="the boot after cut $n" judge final "$T/ref-state"
    echo "boot test: ok: after cut $n and one boot the disk holds what an uncut update leaves (ROOT v2 and its record, ROOT.old v1, v1's own blobs gone, no staging)" >&2
}
while read -r second aim start delay; do
    n=$((n + 1))
    if [ "$second" = 0 ]; then cp --sparse=always "$T/v1.img" "$TDISK"; fi
    INITRD=$WORK/initrd-signed.cpio.gz DISK_ARGS="-drive file=$TDISK,format=raw,if=virtio" \
        GUEST_REF="minipull.ref=10.0.2.100:5000/boot/tort:v1 minipull.plain=1" qemu_args "$T/console-cut$n" $TBOOT_ARGS
    python3 "$here/power-cut.py" "$T/console-cut$n" "${start//\~/ }" "$delay" -- "${QEMU[@]}" > "$T/cut$n"
    phase=$(python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); print(c["phase"] if c["cut"] else "none")' "$T/cut$n")
    if [ "$phase" = none ]; then
        # That boot had nothing left of the phase aimed at: it was an uncut one.
        expect "$T/console-cut$n" "$marker-v2: booted" "cut $n: aimed at $aim, but the boot finished the update first and boots v2"
        read_disk "$TDISK"; WHAT="the boot meant for cut $n" judge final "$T/ref-state"
        continue
    fi
    phases="$phases $phase" cuts=$((cuts + 1))
    read_disk "$TDISK"; WHAT="cut $n ($phase)" judge cut
    echo "boot test: ok: cut $n: aimed at $aim +${delay}s$([ "$second" = 1 ] && echo " of the boot continuing the update"), cut in $phase; on the disk: ROOT $(field root), its record $(field counts), previous root kept, blobs sound, index entries whole, beside ROOT: $(field leftovers)" >&2
    if [ "$second" = 1 ]; then after_boot; fi
done < "$T/plan"
if [ "${second:-1}" = 0 ]; then after_boot; fi
[ "$cuts" -ge "${TORTURE_CUTS:-12}" ] || { echo "boot test: FAILED: only $cuts of ${TORTURE_CUTS:-12} cuts happened" >&2; exit 1; }
echo "boot test: ok: $cuts power cuts (seed $seed), in phases:$phases" >&2
for p in download unpack swap prune; do
    grep -qw "$p" <<<"$phases" || echo "boot test: note: no cut landed in $p this time (seed $seed)" >&2
done

# 14. The record cannot be written after the swap (ENOSPC from the test
# hook at "promote"): minipull exits 9; /init goes by the pending record,
# which names the new tree, and keeps the trial. v3 (15) ships a regular
# file /.minipull-boot-ok and never marks itself: after 2 boots it goes.
MINIPULL=target/test-hooks/minipull EXTRA="$WORK/fleet.pub:/etc/fleet.pub" \
    examples/initramfs/build.sh "$T/initrd-hooks.cpio.gz" "$kver" >&2
tort_push 3 markfile
TINITRD=$T/initrd-hooks.cpio.gz tboot "$T/console-full" minipull.tries=2 minipull.testfault=promote
expect "$T/console-full" "simulated fault at promote" "14: the record write after the swap fails (disk full)"
expect "$T/console-full" "minipull exit 9" "14: minipull exits 9 and /init counts v3 as installed"
expect "$T/console-full" "$marker-v3: booted" "14: v3 boots"
read_disk "$TDISK"; WHAT="the record write failed" judge settled
tries=$(cat "$T/dump/boot/tries" 2>/dev/null)
[ "$(field root)" = v3 ] && [ "$(field counts)" = v3 ] && [ "$tries" = 1 ] && [ "$(field pending)" = v3 ] \
    || { echo "boot test: FAILED: after the failed record write: record that counts $(field counts), pending $(field pending), tries '$tries'" >&2; exit 1; }
echo "boot test: ok: 14: the root (v3) is the one the record bound to its tree names, and it is on trial (try 1)" >&2
[ ! -e "$T/dump/root/.minipull-boot-ok" ] || { echo "boot test: FAILED: v3's shipped /.minipull-boot-ok survived the install" >&2; exit 1; }
tboot "$T/console-file2" minipull.tries=2
expect "$T/console-file2" "$marker-v3: booted" "15: v3 (ships /.minipull-boot-ok as a file) boots again (try 2)"
tboot "$T/console-file3" minipull.tries=2
expect "$T/console-file3" "did not mark itself good in 2 boots" "15: after 2 unmarked boots v3 is rolled back"
expect "$T/console-file3" "$marker-v2: booted" "15: and v2 boots"
tort_push 4 markdir
tboot "$T/console-dir1" minipull.tries=1
expect "$T/console-dir1" "$marker-v4: booted" "15: v4 (ships /.minipull-boot-ok as a directory) is installed and boots (try 1)"
tboot "$T/console-dir2" minipull.tries=1
expect "$T/console-dir2" "did not mark itself good in 1 boot:" "15: after 1 unmarked boot (minipull.tries=1) v4 is rolled back"
expect "$T/console-dir2" "$marker-v2: booted" "15: and v2 boots"
read_disk "$TDISK"; WHAT="the rollbacks" judge settled
[ "$(field root)" = v2 ] && [ "$(field record)" = v2 ] \
    || { echo "boot test: FAILED: after the rollbacks ROOT is $(field root) and its record names $(field record)" >&2; exit 1; }
echo "boot test: ok: the torture and cases 13-15 took $(($(date +%s) - tstart)) s" >&2
R=$R_SAVE

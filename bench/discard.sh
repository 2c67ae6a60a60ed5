#!/usr/bin/env bash
# Peak disk of an initramfs-style pull: the 768 MiB two-layer image (a 512 MiB
# and a 256 MiB file of random bytes, each in an uncompressed tar layer)
# pulled with --unpack into an empty ROOTFS, with and without
# --discard-layers, while the bytes under OUTDIR and ROOTFS's directory are
# summed every 50 ms. Prints the peaks against "new tree + largest layer".
#
#   bash bench/discard.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${MINIPULL:-./dist/minipull}
[ -x "$BIN" ] || ./build.sh
. bench/registry.sh
start_registry bench/discard
echo "making the 512 + 256 MiB tar layers..." >&2
mkdir -p "$WORK/t1" "$WORK/t2"
head -c 512M /dev/urandom > "$WORK/t1/big"
head -c 256M /dev/urandom > "$WORK/t2/mid"
tar -C "$WORK/t1" -cf "$WORK/l1" big
tar -C "$WORK/t2" -cf "$WORK/l2" mid
rm -rf "$WORK/t1" "$WORK/t2"
printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:%s","sha256:%s"]}}' \
    "$(sha256sum "$WORK/l1" | cut -d' ' -f1)" "$(sha256sum "$WORK/l2" | cut -d' ' -f1)" > "$WORK/config"
cd_=$(push_blob "$WORK/config"); l1=$(push_blob "$WORK/l1"); l2=$(push_blob "$WORK/l2")
LARGEST=$(stat -c %s "$WORK/l1")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%s},{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%s}]}' \
    "$cd_" "$(stat -c %s "$WORK/config")" "$l1" "$LARGEST" "$l2" "$(stat -c %s "$WORK/l2")" > "$WORK/manifest"
curl -s -f -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary @"$WORK/manifest" "$R/manifests/v1" >/dev/null
rm -f "$WORK/l1" "$WORK/l2"

run() { # label flags...
    local label=$1 peak=0 d pid
    shift
    rm -rf "$WORK/run"; mkdir -p "$WORK/run"; sync
    "$BIN" -q --plain-http "$@" --unpack "$WORK/run/root" "127.0.0.1:$PORT/bench/discard:v1" "$WORK/run/oci" >/dev/null &
    pid=$!
    while kill -0 $pid 2>/dev/null; do
        d=$(du -sb "$WORK/run" 2>/dev/null | cut -f1 || echo 0)
        [ "${d:-0}" -gt "$peak" ] && peak=$d
        sleep 0.05
    done
    wait $pid
    echo "$label $peak $(du -sb "$WORK/run/root" | cut -f1)"
    rm -rf "$WORK/run"
}
A=$(run plain)
B=$(run discard --discard-layers)
python3 - "$LARGEST" "$A" "$B" <<'PY'
import sys
largest = int(sys.argv[1])
M = 2**20
tree = int(sys.argv[2].split()[2])
print(f"new tree {tree/M:.0f} MiB, largest compressed layer {largest/M:.0f} MiB, bound tree+largest {(tree+largest)/M:.0f} MiB")
for row in sys.argv[2:]:
    label, peak, _ = row.split()
    print(f"{label:<8} peak {int(peak)/M:.0f} MiB ({int(peak)/(tree+largest):.2f} x bound)")
PY

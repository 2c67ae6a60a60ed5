#!/usr/bin/env bash
# Dirty memory during a pull: the big image (512 + 256 MiB of random layers)
# pulled RUNS times from a local docker-registry while /proc/meminfo's
# Dirty + Writeback is sampled every 20 ms; prints peak dirty memory, median
# wall time and its spread (max/min), for minipull and, with BASELINE=PATH,
# another minipull binary in the same rounds; then the same pull inside a
# 32 MiB memory cgroup (v2 memory.max or v1 memory.limit_in_bytes, whichever
# is writable; the row is skipped with a message when neither is).
#
#   bash bench/disk.sh [RUNS]        (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
BIN=${MINIPULL:-./dist/minipull}
[ -x "$BIN" ] || ./build.sh
. bench/registry.sh
start_registry bench/disk
echo "making 512 + 256 MiB of random layers..." >&2
head -c 512M /dev/urandom > "$WORK/l1"
head -c 256M /dev/urandom > "$WORK/l2"
echo '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}' > "$WORK/config"
cd_=$(push_blob "$WORK/config"); l1=$(push_blob "$WORK/l1"); l2=$(push_blob "$WORK/l2")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%s},{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%s}]}' \
    "$cd_" "$(stat -c %s "$WORK/config")" "$l1" "$(stat -c %s "$WORK/l1")" "$l2" "$(stat -c %s "$WORK/l2")" > "$WORK/manifest"
curl -s -f -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary @"$WORK/manifest" "$R/manifests/v1" >/dev/null
rm -f "$WORK/l1" "$WORK/l2"

# A 32 MiB memory cgroup for the constrained rows, if this machine lets us.
CG=
if [ -w /sys/fs/cgroup/cgroup.subtree_control ] && grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null \
    && mkdir "/sys/fs/cgroup/minipull-bench-$$" 2>/dev/null; then
    CG=/sys/fs/cgroup/minipull-bench-$$
    echo 32M > "$CG/memory.max"; CGKIND="cgroup v2 memory.max"
elif mkdir "/sys/fs/cgroup/memory/minipull-bench-$$" 2>/dev/null; then
    CG=/sys/fs/cgroup/memory/minipull-bench-$$
    echo 32M > "$CG/memory.limit_in_bytes"; CGKIND="cgroup v1 memory.limit_in_bytes"
else
    echo "no writable memory cgroup (v1 or v2): the 32 MiB rows are skipped" >&2
fi
[ -n "$CG" ] && trap 'rmdir "$CG" 2>/dev/null || true; kill $REG 2>/dev/null || true; rm -rf "$WORK"' EXIT

dirty_kib() { awk '/^(Dirty|Writeback):/ {s += $2} END {print s}' /proc/meminfo; }
run() { # label binary [cgroup]
    local label=$1 bin=$2 cg=${3:-} out=$WORK/out peak=0 d start end pid
    rm -rf "$out"; sync
    start=$(date +%s.%N)
    if [ -n "$cg" ]; then
        sh -c 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"' sh "$cg" \
            "$bin" -q --plain-http "127.0.0.1:$PORT/bench/disk:v1" "$out" >/dev/null &
    else
        "$bin" -q --plain-http "127.0.0.1:$PORT/bench/disk:v1" "$out" >/dev/null &
    fi
    pid=$!
    while kill -0 $pid 2>/dev/null; do
        d=$(dirty_kib); [ "$d" -gt "$peak" ] && peak=$d
        sleep 0.02
    done
    wait $pid
    end=$(date +%s.%N)
    echo "$(awk "BEGIN{print $end - $start}") $peak" >> "$WORK/$label"
    rm -rf "$out"
}
for i in $(seq "$RUNS"); do
    run minipull "$BIN"
    if [ -n "${BASELINE:-}" ]; then run baseline "$BASELINE"; fi
    if [ -n "$CG" ]; then
        run minipull-32M "$BIN" "$CG"
        if [ -n "${BASELINE:-}" ]; then run baseline-32M "$BASELINE" "$CG"; fi
    fi
    echo "round $i done" >&2
done
[ -n "$CG" ] && echo "32M rows: $CGKIND"
python3 - "$WORK" <<'PY'
import sys, os, statistics
w = sys.argv[1]
print(f"{'tool':<13} {'wall s median':>14} {'spread max/min':>15} {'peak Dirty+Writeback MiB':>25}")
for label in ["minipull", "baseline", "minipull-32M", "baseline-32M"]:
    p = os.path.join(w, label)
    if not os.path.exists(p):
        continue
    rows = [tuple(map(float, l.split())) for l in open(p)]
    walls = [r[0] for r in rows]
    print(f"{label:<13} {statistics.median(walls):>14.2f} {max(walls)/min(walls):>15.2f} {max(r[1] for r in rows)/1024:>25.0f}")
PY

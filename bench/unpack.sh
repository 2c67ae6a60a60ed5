#!/usr/bin/env bash
# Unpack speed and memory: one gzip layer of 128 MiB random data plus 2,000
# small files, pulled from a local docker-registry, then unpacked RUNS times
# each, alternating, with a cold page cache (drop_caches, as root) by:
#   minipull unpack (this tree's release binary, or $MINIPULL)
#   $BASELINE unpack, when set (say an older minipull, for a before/after)
#   umoci unpack --rootless
# Prints median wall time and peak RSS and the ratios; minipull's own line
# says how long its one syncfs took (the durability cost).
#
#   bash bench/unpack.sh [RUNS]        (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
BIN=${MINIPULL:-./dist/minipull}
[ -x "$BIN" ] || ./build.sh
for t in docker-registry curl umoci python3; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 1; }; done
[ -x /usr/bin/time ] || apt-get install -y -qq time >/dev/null

. bench/registry.sh
start_registry bench/unpack

echo "building the image (128 MiB random + 2,000 small files)..." >&2
mkdir -p "$WORK/tree/data" "$WORK/tree/small"
head -c 128M /dev/urandom > "$WORK/tree/data/blob"
for i in $(seq 2000); do echo "file $i" > "$WORK/tree/small/f$i"; done
tar --sort=name --owner=0 --group=0 --numeric-owner -C "$WORK/tree" -cf "$WORK/layer.tar" .
gzip -1 -c "$WORK/layer.tar" > "$WORK/layer.tar.gz"
printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$(sha256sum "$WORK/layer.tar" | cut -d' ' -f1)" > "$WORK/config"
push_image v1 "$WORK/config" "$WORK/layer.tar.gz" application/vnd.oci.image.layer.v1.tar+gzip
rm -rf "$WORK/tree" "$WORK/layer.tar"
"$BIN" -q --plain-http "127.0.0.1:$PORT/bench/unpack:v1" "$WORK/oci" >/dev/null

cold() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }
measure() { # label cmd... ; appends "wall rss" to $WORK/label
    local label=$1; shift
    cold
    /usr/bin/time -f "%e %M" -o "$WORK/t" "$@" >/dev/null 2>"$WORK/err" || { cat "$WORK/err" >&2; exit 1; }
    cat "$WORK/t" >> "$WORK/$label"
    grep -o 'syncfs: [0-9.]* s' "$WORK/err" >> "$WORK/$label.sync" || true
}
for i in $(seq "$RUNS"); do
    rm -rf "$WORK/r1" "$WORK/r2" "$WORK/bundle"
    measure minipull "$BIN" unpack "$WORK/oci:v1" "$WORK/r1"
    if [ -n "${BASELINE:-}" ]; then measure baseline "$BASELINE" unpack "$WORK/oci:v1" "$WORK/r2"; fi
    measure umoci umoci unpack --rootless --image "$WORK/oci:v1" "$WORK/bundle"
    echo "run $i done" >&2
done
diff -r "$WORK/r1" "$WORK/bundle/rootfs" >/dev/null && echo "trees identical (diff -r minipull umoci)"

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
stat_of() { # label column
    cut -d' ' -f"$2" "$WORK/$1" | median
}
printf '%-10s %10s %12s\n' tool "wall s" "peak RSS KiB"
for l in minipull baseline umoci; do
    [ -f "$WORK/$l" ] || continue
    printf '%-10s %10s %12s\n' "$l" "$(stat_of $l 1)" "$(stat_of $l 2)"
done
echo "minipull's syncfs (the durability cost, inside its wall time): median $(grep -o '[0-9.]*' "$WORK/minipull.sync" | median) s"
nosync=$(paste -d' ' <(cut -d' ' -f1 "$WORK/minipull") <(grep -o '[0-9.]*' "$WORK/minipull.sync") | awk '{print $1-$2}' | median)
echo "minipull wall without its syncfs: median $nosync s"
mw=$(stat_of minipull 1); uw=$(stat_of umoci 1)
echo "minipull/umoci wall: $(python3 -c "print(round($mw/$uw, 2))")"
if [ -f "$WORK/baseline" ]; then
    bw=$(stat_of baseline 1); br=$(stat_of baseline 2); mr=$(stat_of minipull 2)
    echo "minipull/baseline wall: $(python3 -c "print(round($mw/$bw, 2))") ($(python3 -c "print(round($nosync/$bw, 2))") without the syncfs), peak RSS: $(python3 -c "print(round($mr/$br, 2))")"
fi

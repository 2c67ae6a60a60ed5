#!/usr/bin/env bash
# Pull one image with a big incompressible layer from a local docker-registry
# and print wall time, CPU time and peak RSS for minipull and for the floor
# (curl of the same blob, then sha256sum), alternating, RUNS times each.
#
#   bench/big-layer.sh [SIZE_MIB] [RUNS]      (default 1024 MiB, 3 runs)
#
# Needs: docker-registry, curl, /usr/bin/time (package "time"), ./build.sh done.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-1024}
RUNS=${2:-3}
BIN=${MINIPULL:-./dist/minipull}
[ -x "$BIN" ] || ./build.sh
for t in docker-registry curl sha256sum; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 1; }; done
[ -x /usr/bin/time ] || apt-get install -y -qq time >/dev/null

. bench/registry.sh
start_registry bench/big

echo "generating a ${SIZE_MIB} MiB incompressible layer..." >&2
head -c "${SIZE_MIB}M" /dev/urandom > "$WORK/layer"
echo '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}' > "$WORK/config"
push_image v1 "$WORK/config" "$WORK/layer" application/vnd.oci.image.layer.v1.tar
LD=$LAYER_DIGEST
rm "$WORK/layer"

measure() { # label cmd...
    local label=$1; shift
    /usr/bin/time -f "%e %U %S %M" -o "$WORK/t" "$@" >/dev/null 2>&1
    read -r wall user sys rss < "$WORK/t"
    printf '%-10s wall %6.2fs  cpu %6.2fs  peak RSS %6.1f MiB\n' "$label" "$wall" "$(echo "$user + $sys" | bc)" "$(echo "scale=1; $rss/1024" | bc)"
}
one_run_minipull() { rm -rf "$WORK/out"; "$BIN" -q --plain-http "127.0.0.1:$PORT/bench/big:v1" "$WORK/out"; }
floor() { curl -s -o "$WORK/blob" "$R/blobs/$LD" && sha256sum "$WORK/blob"; }
export -f one_run_minipull floor; export BIN WORK PORT R LD

echo "image: one ${SIZE_MIB} MiB layer; $RUNS runs each, alternating; $(nproc) cores; $(date -u +%F)"
for i in $(seq "$RUNS"); do
    measure minipull bash -c one_run_minipull
    /usr/bin/time -f "%e %U %S %M" -o "$WORK/t" "$BIN" -q --plain-http "127.0.0.1:$PORT/bench/big:v1" "$WORK/out2" >/dev/null 2>&1 || true
    rm -rf "$WORK/out2"
    read -r wall user sys rss < "$WORK/t"
    printf '%-10s peak RSS of the minipull process alone: %.1f MiB\n' "" "$(echo "scale=1; $rss/1024" | bc)"
    measure curl+sha bash -c floor
    rm -f "$WORK/blob"
done

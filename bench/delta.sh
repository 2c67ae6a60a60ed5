#!/usr/bin/env bash
# Partial updates of a zstd:chunked layer: bytes on the wire (through a
# counting relay of our own on 127.0.0.1, headers included) and blob
# requests, for an update v1 -> v2 of a ~100 MiB, several-thousand-file
# layer (this machine's Python library and zoneinfo trees) where v2 changes
# 64 bytes in one ~1.7 MB shared library:
#   - with the previous TOC (v1 installed by minipull, which keeps it);
#   - with file-level reuse only (the previous TOC removed);
#   - single-range mode is what a registry refusing multi-range gets (see tests);
#   - beside them, the whole-layer pull (--no-delta) and a fresh pull.
#
#   bench/delta.sh            (MINIPULL=path/to/minipull to choose the binary)
#
# Needs: docker-registry, curl, python3; builds the image writer (cargo example).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${MINIPULL:-target/debug/minipull}
# The binary must have the delta feature: build it unless MINIPULL names one.
[ -n "${MINIPULL:-}" ] || cargo build -q --features delta
CHANGED=${CHANGED:-/usr/lib/python3/dist-packages/cryptography/hazmat/bindings/_rust.abi3.so}
TREES=${TREES:-/usr/lib/python3 /usr/lib/python3.11 /usr/share/zoneinfo}
CARGO_BUILD_JOBS=1 cargo build -q --release --features delta --example delta_image
. bench/registry.sh
start_registry bench/delta

echo "writing v1 and v2 (zstd:chunked, in-suite writer) from: $TREES" >&2
# shellcheck disable=SC2086
target/release/examples/delta_image "$WORK" "$CHANGED" $TREES
for v in v1 v2; do
    echo "{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"$(cat "$WORK/$v.diffid")\"]}}" > "$WORK/$v.config"
    cd_=$(push_blob "$WORK/$v.config"); ld=$(push_blob "$WORK/$v.blob")
    cat > "$WORK/manifest" <<JSON
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"$cd_","size":$(stat -c %s "$WORK/$v.config")},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","digest":"$ld","size":$(stat -c %s "$WORK/$v.blob"),"annotations":$(cat "$WORK/$v.annotations")}]}
JSON
    curl -s -f -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary @"$WORK/manifest" "$R/manifests/$v" >/dev/null
done

RPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 bench/relay.py "$RPORT" "$PORT" "$WORK/stats" & RELAY=$!
trap 'kill $REG $RELAY 2>/dev/null || true; rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM
sleep 0.5
VIA="127.0.0.1:$RPORT/bench/delta"

# The layer's figures from --json: fetched, requests, reused, status.
layer_figures() { python3 -c '
import json,sys
v=json.load(open(sys.argv[1]))
for b in v["blobs"]:
    if "layer" in b["mediaType"]:
        d=b.get("delta") or {}
        print("status %s, layer bytes %d, reused %d, ranged requests %d, fallback %s" % (b["status"], b["downloaded"], d.get("reused", 0), d.get("requests", 0), d.get("fallback")))
' "$1"; }

run() { # label install-v1? extra-setup args...
    local label=$1 setup=$2; shift 2
    rm -rf "$WORK/out" "$WORK/rootfs" "$WORK/rootfs.old" "$WORK"/rootfs.minipull.json
    if [ "$setup" != fresh ]; then
        "$BIN" -q --plain-http "127.0.0.1:$PORT/bench/delta:v1" "$WORK/out" --unpack "$WORK/rootfs" >/dev/null
    fi
    [ "$setup" = no-toc ] && rm -rf "$WORK/out/.minipull/delta"
    sleep 0.3; echo "0 0" > "$WORK/stats"
    local t0 t1
    t0=$(date +%s.%N)
    "$BIN" -q --plain-http --json "$VIA:v2" "$WORK/out" --unpack "$WORK/rootfs" --force "$@" > "$WORK/json"
    t1=$(date +%s.%N)
    sleep 0.5
    read -r bytes reqs < "$WORK/stats"
    printf '%-34s wire %10d bytes (%6.2f MiB), %d blob GETs, %.2fs; %s\n' "$label" "$bytes" \
        "$(echo "scale=2; $bytes/1048576" | bc)" "$reqs" "$(echo "$t1 - $t0" | bc)" "$(layer_figures "$WORK/json")"
}

echo "layer v2: $(stat -c %s "$WORK/v2.blob") bytes compressed; $(date -u +%F), $(nproc) cores"
run "update, previous TOC kept"       v1
run "update, file-level reuse only"   no-toc
run "update, --no-delta (whole)"      v1 --no-delta
run "fresh pull (no root to reuse)"   fresh

#!/usr/bin/env bash
# Partial updates of a zstd:chunked layer, v1 -> v2 of a ~100 MiB,
# several-thousand-file layer (this machine's Python library and zoneinfo
# trees) where v2 changes 64 bytes in one ~1.7 MB shared library:
#
# 1. bytes on the wire (through a counting relay of our own on 127.0.0.1,
#    headers included) and blob requests:
#    - with the previous TOC (v1 installed by minipull, which keeps it);
#    - with file-level reuse only (the previous TOC removed);
#    - beside them, the whole-layer pull (--no-delta) and a fresh pull
#    (single-range mode is what a registry refusing multi-range gets: tests);
# 2. the same update through the relay shaping the link (RATE bytes/s each
#    way, RTT ms round trip): wall time of the partial update against the
#    whole-layer pull (target: partial <= 10 % of whole);
# 3. the local cost of the partial update (the update over the unshaped
#    loopback: copy and hashing of the unchanged tree, the rebuilt tar's
#    diff_id) against `cp -a` + `sha256sum` of the same tree (target <= 2x);
# 4. peak RSS (`/usr/bin/time -f %M`, from this shell) of the partial
#    update of a 10,000-entry layer (RSS_TREES) against a whole-layer pull
#    of the same update (target: partial <= whole + 4 MiB).
#
#   bench/delta.sh              the full run (~15 minutes at 1 Mbit/s)
#   bench/delta.sh --quick      a ~10 MB image, a few minutes
#   RATE=125000 RTT=300         the shaped link (bytes/s, ms; the default: 1 Mbit/s, 300 ms)
#   MINIPULL=path/to/minipull   the binary (with the delta feature; default:
#                               cargo build --release --features delta)
#   TREES=... CHANGED=...       the image's trees and the file changed in v2
#   RSS_TREES=... RSS_CHANGED=...  the same for the peak RSS image
#
# Needs: docker-registry, curl, python3, bc, /usr/bin/time (package time);
# builds the image writer (cargo example delta_image).
set -euo pipefail
cd "$(dirname "$0")/.."
QUICK=0
[ "${1:-}" = --quick ] && QUICK=1
RATE=${RATE:-125000}
RTT=${RTT:-300}
if [ -z "${MINIPULL:-}" ]; then
    # The binary must have the delta feature.
    CARGO_BUILD_JOBS=1 cargo build -q --release --features delta
    BIN=target/release/minipull
else
    BIN=$MINIPULL
fi
CHANGED=${CHANGED:-/usr/lib/python3/dist-packages/cryptography/hazmat/bindings/_rust.abi3.so}
if [ "$QUICK" = 1 ]; then
    TREES=${TREES:-/usr/lib/python3/dist-packages/cryptography /usr/share/zoneinfo}
    RSS_TREES=${RSS_TREES:-$TREES}
    RSS_CHANGED=${RSS_CHANGED:-$CHANGED}
else
    TREES=${TREES:-/usr/lib/python3 /usr/lib/python3.11 /usr/share/zoneinfo}
    # About 10,300 entries (headers and zoneinfo files), ~110 MB of tar.
    RSS_TREES=${RSS_TREES:-/usr/include /usr/share/zoneinfo}
    RSS_CHANGED=${RSS_CHANGED:-/usr/include/sqlite3.h}
fi
CARGO_BUILD_JOBS=1 cargo build -q --release --features delta --example delta_image
. bench/registry.sh
start_registry bench/delta

# write_image REPO DIR CHANGED TREES...: v1 and v2 as REPO:v1, REPO:v2.
write_image() {
    local repo=$1 dir=$2 changed=$3 v cd_ ld
    shift 3
    mkdir -p "$dir"
    echo "writing $repo v1 and v2 (zstd:chunked, in-suite writer) from: $*" >&2
    target/release/examples/delta_image "$dir" "$changed" "$@" 2> "$dir/written"
    cat "$dir/written" >&2
    R="http://127.0.0.1:$PORT/v2/$repo"
    for v in v1 v2; do
        echo "{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"$(cat "$dir/$v.diffid")\"]}}" > "$dir/$v.config"
        cd_=$(push_blob "$dir/$v.config"); ld=$(push_blob "$dir/$v.blob")
        cat > "$dir/manifest" <<JSON
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"$cd_","size":$(stat -c %s "$dir/$v.config")},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","digest":"$ld","size":$(stat -c %s "$dir/$v.blob"),"annotations":$(cat "$dir/$v.annotations")}]}
JSON
        curl -s -f -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary @"$dir/manifest" "$R/manifests/$v" >/dev/null
    done
    # The image data is in the registry now.
    rm -f "$dir"/v1.blob "$dir"/v2.blob
}
# shellcheck disable=SC2086
write_image bench/delta "$WORK/img" "$CHANGED" $TREES
if [ "$RSS_TREES" = "$TREES" ] && [ "$RSS_CHANGED" = "$CHANGED" ]; then
    RSS_REPO=bench/delta; cp -r "$WORK/img" "$WORK/rss"
else
    RSS_REPO=bench/rss
    # shellcheck disable=SC2086
    write_image bench/rss "$WORK/rss" "$RSS_CHANGED" $RSS_TREES
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# A counting relay (no shaping) and a shaping one, both ours, both bounded.
CPORT=$(free_port); SPORT=$(free_port)
nice python3 bench/relay.py "$CPORT" "$PORT" "$WORK/stats" --timeout 7200 & CRELAY=$!
python3 bench/relay.py "$SPORT" "$PORT" "$WORK/sstats" --rate "$RATE" --rtt "$RTT" --timeout 7200 & SRELAY=$!
trap 'kill $REG $CRELAY $SRELAY 2>/dev/null || true; rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM
sleep 0.5

# The layer's figures from --json: fetched, requests, reused, status.
layer_figures() { python3 -c '
import json,sys
v=json.load(open(sys.argv[1]))
for b in v["blobs"]:
    if "layer" in b["mediaType"]:
        d=b.get("delta") or {}
        print("status %s, layer bytes %d, reused %d, ranged requests %d, fallback %s" % (b["status"], b["downloaded"], d.get("reused", 0), d.get("requests", 0), d.get("fallback")))
' "$1"; }

# run LABEL SETUP HOST:PORT/REPO STATS [ARGS...]: install v1 (over the
# plain loopback) unless SETUP is "fresh", then time the update to v2
# through HOST:PORT with /usr/bin/time (wall seconds, peak RSS in KiB:
# WALL and RSS afterwards).
run() {
    local label=$1 setup=$2 via=$3 stats=$4 repo
    shift 4
    repo=${via#*/}
    rm -rf "$WORK/out" "$WORK/rootfs" "$WORK/rootfs.old" "$WORK"/rootfs.minipull.json
    if [ "$setup" != fresh ]; then
        "$BIN" -q --plain-http "127.0.0.1:$PORT/$repo:v1" "$WORK/out" --unpack "$WORK/rootfs" >/dev/null
    fi
    [ "$setup" = no-toc ] && rm -rf "$WORK/out/.minipull/delta"
    sleep 0.3; [ "$stats" = - ] || echo "0 0" > "$stats"
    /usr/bin/time -f '%e %M' -o "$WORK/time" \
        "$BIN" -q --plain-http --json "$via:v2" "$WORK/out" --unpack "$WORK/rootfs" --force "$@" > "$WORK/json"
    read -r WALL RSS < "$WORK/time"
    sleep $(( RTT > 0 ? 1 : 0 )).5
    local bytes reqs wire="(direct, not counted)"
    if [ "$stats" != - ]; then
        read -r bytes reqs < "$stats"
        wire=$(printf 'wire %10d bytes (%6.2f MiB), %d blob GETs' "$bytes" "$(echo "scale=2; $bytes/1048576" | bc)" "$reqs")
    fi
    printf '%-34s %s, %7.2fs, peak RSS %6d KiB; %s\n' "$label" "$wire" "$WALL" "$RSS" "$(layer_figures "$WORK/json")"
}
pct() { echo "scale=1; 100 * $1 / $2" | bc; }

echo "minipull: $BIN ($(stat -c %s "$BIN") bytes); $(date -u '+%F %H:%M UTC'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "image bench/delta: $(grep v2: "$WORK/img/written")"
echo
echo "== 1. bytes on the wire (unshaped counting relay)"
C="127.0.0.1:$CPORT/bench/delta"
run "update, previous TOC kept"       v1     "$C" "$WORK/stats"
run "update, file-level reuse only"   no-toc "$C" "$WORK/stats"
run "update, --no-delta (whole)"      v1     "$C" "$WORK/stats" --no-delta
run "fresh pull (no root to reuse)"   fresh  "$C" "$WORK/stats"

echo
echo "== 2. through the shaped relay: $RATE bytes/s each way ($(echo "scale=2; $RATE * 8 / 1000000" | bc) Mbit/s), $RTT ms RTT"
S="127.0.0.1:$SPORT/bench/delta"
run "update, previous TOC kept"       v1 "$S" "$WORK/sstats"
PART=$WALL
run "update, --no-delta (whole)"      v1 "$S" "$WORK/sstats" --no-delta
WHOLE=$WALL
echo "partial update ${PART}s, whole-layer pull ${WHOLE}s: partial = $(pct "$PART" "$WHOLE") % of whole (target <= 10 %)"

echo
echo "== 3. local cost: the partial update over the unshaped loopback against cp -a + sha256sum (load $(cut -d' ' -f1-3 /proc/loadavg))"
L="127.0.0.1:$PORT/bench/delta"
best=""
for _ in 1 2; do
    run "update, previous TOC kept (direct)" v1 "$L" -
    if [ -z "$best" ] || [ "$(echo "$WALL < $best" | bc)" = 1 ]; then best=$WALL; fi
done
# The same tree: v1 as installed (rootfs now holds v2; install v1 again).
rm -rf "$WORK/out" "$WORK/rootfs" "$WORK/rootfs.old" "$WORK"/rootfs.minipull.json
"$BIN" -q --plain-http "127.0.0.1:$PORT/bench/delta:v1" "$WORK/out" --unpack "$WORK/rootfs" >/dev/null
cbest=""
for _ in 1 2; do
    rm -rf "$WORK/copy"
    /usr/bin/time -f '%e' -o "$WORK/time" sh -c \
        'cp -a "$1" "$2" && find "$2" -type f -print0 | xargs -0 sha256sum > /dev/null' sh "$WORK/rootfs" "$WORK/copy"
    read -r w < "$WORK/time"
    echo "cp -a + sha256sum of the v1 tree ($(du -sm "$WORK/copy" | cut -f1) MiB):  ${w}s"
    if [ -z "$cbest" ] || [ "$(echo "$w < $cbest" | bc)" = 1 ]; then cbest=$w; fi
done
rm -rf "$WORK/copy"
echo "local cost: partial update ${best}s, cp -a + sha256sum ${cbest}s: $(echo "scale=2; $best / $cbest" | bc)x (target <= 2x)"

echo
echo "== 4. peak RSS, image $RSS_REPO: $(grep v2: "$WORK/rss/written")"
Q="127.0.0.1:$PORT/$RSS_REPO"
run "update, previous TOC kept"       v1 "$Q" -
PRSS=$RSS
run "update, --no-delta (whole)"      v1 "$Q" - --no-delta
WRSS=$RSS
echo "peak RSS: partial ${PRSS} KiB, whole ${WRSS} KiB: partial - whole = $((PRSS - WRSS)) KiB (target <= 4096 KiB)"

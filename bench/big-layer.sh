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

WORK=$(mktemp -d /var/tmp/minipull-bench.XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$WORK/config.yml" <<YAML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $WORK/data}}
http: {addr: 127.0.0.1:$PORT}
YAML
docker-registry serve "$WORK/config.yml" >/dev/null 2>&1 &
REG=$!
trap 'kill $REG 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/v2/" && break; sleep 0.1; done
R="http://127.0.0.1:$PORT/v2/bench/big"

push_blob() { # file -> digest
    local d="sha256:$(sha256sum "$1" | cut -d' ' -f1)"
    local loc
    loc=$(curl -s -D - -o /dev/null -X POST "$R/blobs/uploads/" | tr -d '\r' | awk 'tolower($1)=="location:"{print $2}')
    case "$loc" in http*) ;; *) loc="http://127.0.0.1:$PORT$loc";; esac
    case "$loc" in *\?*) loc="$loc&digest=$d";; *) loc="$loc?digest=$d";; esac
    curl -s -f -X PUT -H 'Content-Type: application/octet-stream' -T "$1" "$loc" >/dev/null
    echo "$d"
}

echo "generating a ${SIZE_MIB} MiB incompressible layer..." >&2
head -c "${SIZE_MIB}M" /dev/urandom > "$WORK/layer"
echo '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}' > "$WORK/config"
LD=$(push_blob "$WORK/layer"); CD=$(push_blob "$WORK/config")
cat > "$WORK/manifest" <<JSON
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"$CD","size":$(stat -c %s "$WORK/config")},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"$LD","size":$(stat -c %s "$WORK/layer")}]}
JSON
curl -s -f -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary @"$WORK/manifest" "$R/manifests/v1" >/dev/null
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

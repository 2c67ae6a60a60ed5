#!/usr/bin/env bash
# What a verified pull costs: a small image (one 1 MiB layer) with a classic
# cosign signature made by openssl, on a local docker-registry with its access
# log on; RUNS pulls into a fresh OUTDIR without and with --verify-key,
# alternating. Prints requests per pull (from the registry's access log) and
# median wall time, and the size the signature code adds is in README (a
# build with and without src/verify is the only way to measure it).
#
#   bash bench/verify.sh [RUNS]        (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-10}
BIN=${MINIPULL:-./dist/minipull}
[ -x "$BIN" ] || ./build.sh
for t in docker-registry curl openssl python3; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 1; }; done

ACCESS_LOG=1
. bench/registry.sh
start_registry bench/signed

head -c 1M /dev/urandom > "$WORK/layer"
echo '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}' > "$WORK/config"
push_image v1 "$WORK/config" "$WORK/layer" application/vnd.oci.image.layer.v1.tar
DIGEST="sha256:$(sha256sum "$WORK/manifest" | cut -d' ' -f1)"

# The vendor's key and a classic signature, per cosign's spec.
openssl ecparam -genkey -name prime256v1 -noout -out "$WORK/cosign.key"
openssl pkey -in "$WORK/cosign.key" -pubout -out "$WORK/cosign.pub" 2>/dev/null
printf '{"critical":{"identity":{"docker-reference":"127.0.0.1:%s/bench/signed"},"image":{"docker-manifest-digest":"%s"},"type":"cosign container image signature"},"optional":null}' \
    "$PORT" "$DIGEST" > "$WORK/payload"
SIG=$(openssl dgst -sha256 -sign "$WORK/cosign.key" "$WORK/payload" | base64 -w0)
cd_=$(push_blob "$WORK/config"); pd=$(push_blob "$WORK/payload")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","digest":"%s","size":%s,"annotations":{"dev.cosignproject.cosign/signature":"%s"}}]}' \
    "$cd_" "$(stat -c %s "$WORK/config")" "$pd" "$(stat -c %s "$WORK/payload")" "$SIG" > "$WORK/sigmanifest"
curl -s -f -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary @"$WORK/sigmanifest" \
    "$R/manifests/${DIGEST/:/-}.sig" >/dev/null

run() { # label args...
    local label=$1 start end before
    shift
    rm -rf "$WORK/out"
    before=$(wc -l < "$WORK/access.log")
    start=$(date +%s%N)
    "$BIN" -q --plain-http "$@" "127.0.0.1:$PORT/bench/signed:v1" "$WORK/out" >/dev/null
    end=$(date +%s%N)
    sleep 0.05 # let the registry flush its log line
    echo "$label $(( (end - start) / 1000 )) $(( $(wc -l < "$WORK/access.log") - before ))" >> "$WORK/results"
}
for _ in $(seq "$RUNS"); do
    run plain
    run verified --verify-key "$WORK/cosign.pub"
done
python3 - "$WORK/results" <<'PY'
import sys, statistics
rows = {}
for line in open(sys.argv[1]):
    label, us, reqs = line.split()
    rows.setdefault(label, []).append((int(us) / 1000, int(reqs)))
print(f"{'pull':<10} {'requests':>9} {'wall ms median':>15} {'min-max':>15}")
for label in ["plain", "verified"]:
    ms = [r[0] for r in rows[label]]
    print(f"{label:<10} {statistics.median([r[1] for r in rows[label]]):>9.0f} {statistics.median(ms):>15.1f} {min(ms):>7.1f}-{max(ms):<7.1f}")
p, v = (statistics.median([r[0] for r in rows[k]]) for k in ["plain", "verified"])
print(f"a verified pull costs {v - p:+.1f} ms")
PY

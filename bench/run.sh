#!/usr/bin/env bash
# The benchmark: minipull against the floor (curl + sha256sum) and skopeo, in
# one run, on a real docker-registry on 127.0.0.1, over plain HTTP and TLS.
#
#   bash bench/run.sh [RUNS]        (default 5; needs root for apt on first use)
#
# Images: "big" (one 512 MiB and one 256 MiB layer of random bytes) and
# "small" (40 layers of 64 KiB). For each, RUNS rounds of, alternating:
#   minipull      pull into a fresh OUTDIR
#   curl          curl -s -o of every blob, one after the other (the link floor)
#   curl+fsync    the same, then an fsync of each file (`sync FILE...`): the
#                 floor for a puller that promises its bytes survive a crash
#   sha256sum     of those files (what verifying costs a shell script)
#   skopeo        skopeo copy docker://... oci:DIR:TAG
#   rerun         minipull into an OUTDIR that holds everything already
#   resume        minipull after a minipull killed (SIGKILL) half way
#   baseline      with BASELINE=PATH, that minipull binary too (before/after)
# and prints medians and min-max of wall time, CPU time and peak RSS
# (/usr/bin/time), with the ratios minipull/curl and minipull/skopeo.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
BIG_MIB=${BIG_MIB:-512}
MID_MIB=${MID_MIB:-256}

for tool in docker-registry skopeo curl python3 openssl /usr/bin/time; do
    command -v "$tool" >/dev/null || {
        apt-get install -y -qq docker-registry skopeo curl python3 openssl time >/dev/null
        break
    }
done
[ -x dist/minipull ] || ./build.sh
MP=$PWD/dist/minipull

. bench/registry.sh
start_registry bench/big
trap 'kill $REG ${TLSREG:-} 2>/dev/null || true; rm -rf "$WORK"' EXIT

say() { echo "bench: $*" >&2; }

# push_layers TAG FILE... : push random-data layers and a config, then the
# manifest; sets BLOBS (digests, config first) and TOTAL (bytes).
push_layers() {
    local tag=$1 layers="" cfg d f
    shift
    cfg=$WORK/config-$tag
    printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}' > "$cfg"
    BLOBS=("$(push_blob "$cfg")")
    TOTAL=$(stat -c %s "$cfg")
    for f in "$@"; do
        d=$(push_blob "$f")
        BLOBS+=("$d")
        TOTAL=$((TOTAL + $(stat -c %s "$f")))
        layers+="${layers:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"$d\",\"size\":$(stat -c %s "$f")}"
    done
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[%s]}' \
        "${BLOBS[0]}" "$(stat -c %s "$cfg")" "$layers" > "$WORK/manifest-$tag"
    curl -s -f -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
        --data-binary @"$WORK/manifest-$tag" "$R/manifests/$tag" >/dev/null
}

say "making ${BIG_MIB} MiB + ${MID_MIB} MiB of random layers and a 40-layer image"
head -c $((BIG_MIB << 20)) /dev/urandom > "$WORK/l-big"
head -c $((MID_MIB << 20)) /dev/urandom > "$WORK/l-mid"
push_layers big "$WORK/l-big" "$WORK/l-mid"
BIG_BLOBS=("${BLOBS[@]}") BIG_TOTAL=$TOTAL
rm -f "$WORK/l-big" "$WORK/l-mid"
small=()
for i in $(seq 40); do head -c 65536 /dev/urandom > "$WORK/s$i"; small+=("$WORK/s$i"); done
push_layers small "${small[@]}"
SMALL_BLOBS=("${BLOBS[@]}") SMALL_TOTAL=$TOTAL

# The same storage served over TLS by a second registry, with a CA of our own.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$WORK/ca.key" \
    -out "$WORK/ca.crt" -days 2 -subj /CN=bench-ca -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$WORK/srv.key" \
    -out "$WORK/srv.csr" -subj /CN=127.0.0.1 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > "$WORK/ext"
openssl x509 -req -in "$WORK/srv.csr" -CA "$WORK/ca.crt" -CAkey "$WORK/ca.key" -CAcreateserial -days 2 \
    -out "$WORK/srv.crt" -extfile "$WORK/ext" 2>/dev/null
mkdir -p "$WORK/certs.d" && cp "$WORK/ca.crt" "$WORK/certs.d/ca.crt"
TLSPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sed -e "s/127.0.0.1:$PORT/127.0.0.1:$TLSPORT/" "$WORK/config.yml" > "$WORK/tls.yml"
printf '  tls: {certificate: %s, key: %s}\n' "$WORK/srv.crt" "$WORK/srv.key" >> "$WORK/tls.yml"
sed -i 's/^http: {addr: \(.*\)}$/http:\n  addr: \1/' "$WORK/tls.yml"
docker-registry serve "$WORK/tls.yml" >/dev/null 2>&1 &
TLSREG=$!
for _ in $(seq 100); do curl -s -o /dev/null --cacert "$WORK/ca.crt" "https://127.0.0.1:$TLSPORT/v2/" && break; sleep 0.1; done
curl -sf -o /dev/null --cacert "$WORK/ca.crt" "https://127.0.0.1:$TLSPORT/v2/" || { say "the TLS registry did not start"; exit 1; }

RES=$WORK/results
: > "$RES"
# measure LABEL CMD...: run with /usr/bin/time, record "label wall cpu rss_kib".
measure() {
    local label=$1
    shift
    /usr/bin/time -f '%e %U %S %M' -o "$WORK/time" "$@" >/dev/null 2>"$WORK/err" || {
        say "$label failed:"; cat "$WORK/err" >&2; exit 1
    }
    read -r wall user sys rss < "$WORK/time"
    echo "$label $wall $(awk "BEGIN{print $user + $sys}") $rss" >> "$RES"
}

# One round for image $1 (big|small) over $2 (http|tls).
round() {
    local image=$1 proto=$2 ref base mpflags skflags curlflags blobs total
    if [ "$proto" = http ]; then
        ref=127.0.0.1:$PORT/bench/big:$image base=http://127.0.0.1:$PORT
        mpflags=(--plain-http) skflags=(--src-tls-verify=false) curlflags=()
    else
        ref=127.0.0.1:$TLSPORT/bench/big:$image base=https://127.0.0.1:$TLSPORT
        mpflags=(--ca-file "$WORK/ca.crt") skflags=(--src-cert-dir "$WORK/certs.d") curlflags=(--cacert "$WORK/ca.crt")
    fi
    if [ "$image" = big ]; then blobs=("${BIG_BLOBS[@]}") total=$BIG_TOTAL; else blobs=("${SMALL_BLOBS[@]}") total=$SMALL_TOTAL; fi
    local k="$image/$proto" out=$WORK/out
    rm -rf "$out" "$WORK/curl" "$WORK/sk"

    measure "$k minipull" "$MP" -q "${mpflags[@]}" "$ref" "$out"
    measure "$k rerun" "$MP" -q "${mpflags[@]}" "$ref" "$out"
    if [ -n "${BASELINE:-}" ]; then
        # Another minipull binary (an older build, say), same conditions.
        measure "$k baseline" "$BASELINE" -q "${mpflags[@]}" "$ref" "$WORK/base"
        rm -rf "$WORK/base"
    fi

    mkdir -p "$WORK/curl"
    local cmd="" i=0
    for d in "${blobs[@]}"; do
        cmd+="curl -sf ${curlflags[*]} -o $WORK/curl/$i $base/v2/bench/big/blobs/$d && "
        i=$((i + 1))
    done
    measure "$k curl" bash -c "${cmd}true"
    measure "$k sha256sum" bash -c "sha256sum $WORK/curl/*"
    rm -rf "$WORK/curl"
    mkdir -p "$WORK/curl"
    measure "$k curl+fsync" bash -c "${cmd}sync $WORK/curl/*"
    rm -rf "$WORK/curl"

    measure "$k skopeo" skopeo copy -q "${skflags[@]}" "docker://$ref" "oci:$WORK/sk:$image"
    rm -rf "$WORK/sk"

    # Kill a pull half way, then time the run that finishes it.
    rm -rf "$out"
    "$MP" -q "${mpflags[@]}" "$ref" "$out" >/dev/null 2>&1 &
    local pid=$! held=0
    for _ in $(seq 2000); do
        held=$(du -sb --apparent-size "$out" 2>/dev/null | cut -f1 || echo 0)
        [ "$held" -ge $((total / 2)) ] && break
        kill -0 $pid 2>/dev/null || break
        sleep 0.01
    done
    kill -9 $pid 2>/dev/null || true
    wait $pid 2>/dev/null || true
    echo "$k held_at_kill $held" >> "$WORK/held"
    measure "$k resume" "$MP" -q "${mpflags[@]}" "$ref" "$out"
    rm -rf "$out"
}

for r in $(seq "$RUNS"); do
    for image in big small; do
        for proto in http tls; do
            say "round $r/$RUNS: $image over $proto"
            round "$image" "$proto"
        done
    done
done

python3 - "$RES" "$WORK/held" "$BIG_TOTAL" "$SMALL_TOTAL" "$RUNS" <<'PY'
import sys, statistics
from collections import defaultdict
res, held, big, small, runs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
d = defaultdict(list)
for line in open(res):
    k, tool, wall, cpu, rss = line.split()
    d[(k, tool)].append((float(wall), float(cpu), int(rss)))
h = defaultdict(list)
for line in open(held):
    k, _, b = line.split()
    h[k].append(int(b))
med = lambda xs: statistics.median(xs)
def fmt(xs, unit=""):
    return f"{med(xs):.2f}{unit} ({min(xs):.2f}-{max(xs):.2f})"
print(f"\nminipull benchmark, {runs} runs each, medians (min-max)")
print(f"big = {big/2**20:.0f} MiB in 3 blobs, small = 40 layers, {small/2**20:.1f} MiB\n")
print(f"{'image/proto':<11} {'tool':<10} {'wall s':<20} {'cpu s':<20} {'peak RSS MiB':<20}")
for k in sorted({k for k, _ in d}):
    for tool in ["minipull", "baseline", "curl", "curl+fsync", "sha256sum", "skopeo", "rerun", "resume"]:
        xs = d.get((k, tool))
        if not xs:
            continue
        w, c, r = [x[0] for x in xs], [x[1] for x in xs], [x[2] / 1024 for x in xs]
        print(f"{k:<11} {tool:<10} {fmt(w):<20} {fmt(c):<20} {fmt(r):<20}")
    mp, cu, cf, sk, sh = (med([x[0] for x in d[(k, t)]]) for t in ["minipull", "curl", "curl+fsync", "skopeo", "sha256sum"])
    print(f"{k:<11} ratios     minipull/(curl+fsync) {mp/cf:.2f}, minipull/curl {mp/cu:.2f}, minipull/(curl+sha256sum) {mp/(cu+sh):.2f}, minipull/skopeo {mp/sk:.2f}")
    if d.get((k, "baseline")):
        print(f"{k:<11} ratios     minipull/baseline {mp/med([x[0] for x in d[(k, 'baseline')]]):.2f}")
    if h.get(k):
        print(f"{k:<11} resume     killed with a median {med(h[k])/2**20:.0f} MiB on disk")
    print()
PY

#!/usr/bin/env bash
# A Debian 13 (trixie) chroot with its skopeo (1.18), the modern zstd:chunked
# writer the partial-update tests copy their images with (docs/delta.md).
#
#   tests/trixie-skopeo.sh [DIR]    DIR defaults to $MINIPULL_TRIXIE, then
#                                   /var/cache/minipull-trixie
#
# Made once: DIR/.minipull-complete says the chroot is whole; a DIR without it
# (a run that was cut) is removed and made again. Runs as root (debootstrap,
# chroot). Use:  chroot DIR skopeo --insecure-policy copy ... with the files
# under DIR (e.g. DIR/work/...); the chroot shares the host's network, so
# docker://127.0.0.1:PORT/... with --dest-tls-verify=false reaches a local
# registry.
set -euo pipefail

DIR=${1:-${MINIPULL_TRIXIE:-/var/cache/minipull-trixie}}
STAMP=$DIR/.minipull-complete
say() { echo "trixie-skopeo.sh: $*" >&2; }

# The Debian archive this machine's apt uses (as debian_mirror in build.sh);
# MINIPULL_DEBIAN_MIRROR overrides it.
debian_mirror() {
    local uri
    uri=$(grep -hs -m1 -E '^URIs:.*/debian/?$' /etc/apt/sources.list.d/*.sources | awk '{print $2; exit}')
    [ -n "$uri" ] || uri=$(grep -hs -E '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list |
        sed 's/\[[^]]*\]//' | awk '$2 ~ /\/debian\/?$/ {print $2; exit}')
    echo "${MINIPULL_DEBIAN_MIRROR:-${uri:-http://deb.debian.org/debian}}"
}

# Unmount whatever a cut run left mounted under DIR (deepest first).
unmount_under() {
    local m
    findmnt -rn -o TARGET 2>/dev/null | awk -v d="$1" 'index($0, d "/") == 1' | sort -r |
        while read -r m; do umount -l "$m" 2>/dev/null || true; done
}

# Several tests may ask at once: one makes it, the others wait for it.
mkdir -p "$(dirname "$DIR")"
exec 9>"$DIR.lock"
flock 9

if [ -f "$STAMP" ]; then
    echo "$DIR"
    exit 0
fi

[ "$(id -u)" -eq 0 ] || { say "needs root (debootstrap, chroot)"; exit 1; }
if ! command -v debootstrap >/dev/null; then
    say "installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
fi

start=$(date +%s)
if [ -e "$DIR" ]; then
    say "removing the incomplete chroot $DIR"
    unmount_under "$DIR"
    rm -rf --one-file-system "$DIR"
fi
mirror=$(debian_mirror)
say "debootstrap --variant=minbase trixie $DIR $mirror"
trap 'unmount_under "$DIR"' EXIT
nice debootstrap --variant=minbase trixie "$DIR" "$mirror" > "$DIR.log" 2>&1 ||
    { say "debootstrap failed (log: $DIR.log)"; tail -n 20 "$DIR.log" >&2; exit 1; }
say "apt-get install skopeo in the chroot"
{
    chroot "$DIR" apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive nice chroot "$DIR" apt-get install -y -qq --no-install-recommends skopeo &&
        chroot "$DIR" apt-get clean
} >> "$DIR.log" 2>&1 || { say "apt-get install skopeo failed (log: $DIR.log)"; tail -n 20 "$DIR.log" >&2; exit 1; }
version=$(chroot "$DIR" skopeo --version) || { say "skopeo does not run in $DIR"; exit 1; }
mkdir -p "$DIR/work"
echo "$version" > "$STAMP"
say "$version in $DIR: $(($(date +%s) - start)) s, $(du -sh --one-file-system "$DIR" | cut -f1)"
echo "$DIR"

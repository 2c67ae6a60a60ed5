#!/bin/busybox sh
# The example /init's disk decisions (examples/initramfs/init, sourced with
# MINIPULL_INIT_LIB=1) against a fake disk in a work directory, a stub
# minipull on PATH and stub date/sync: one boot is one run of disk_boot,
# then the "image's init" (it touches the mark when the image is a good
# one). A power cut is a SIGKILL of the boot shell by the stub. Every boot
# is bounded by a timeout: a hang fails the case.
#
#   busybox sh tests/boot_init.sh INIT CASE WORKDIR    (run by tests/boot_init.rs)
set -u
INIT=$1 CASE=$2 W=$3
export INIT W
D=$W/disk STATE=$W/disk/boot ROOT=$W/disk/root
mkdir -p "$W/bin" "$W/images" "$STATE"
: > "$W/calls"; : > "$W/console"; echo 5 > "$W/clock"

# The stub minipull: `check` prints the registry's digest ($W/remote); an
# install stages the image's tree, swaps it in (the previous root kept as
# ROOT.old), writes the record; $W/cut-before and $W/cut-after cut the power
# around the swap, $W/rc is its exit code.
cat > "$W/bin/minipull" <<'EOF'
#!/bin/busybox sh
echo "$*" >> "$W/calls"
[ "$1" = check ] && { cat "$W/remote"; exit 10; }
root=
while [ $# -gt 0 ]; do [ "$1" = --unpack ] && root=$2; shift; done
cut() { [ -f "$W/cut-$1" ] || return 0; rm "$W/cut-$1"; kill -9 "$BOOT_PID" $$; }
cut before
d=$(cat "$W/remote")
rm -rf "$root.new"
cp -a "$W/images/$d" "$root.new" || exit 7
if [ -d "$root" ]; then rm -rf "$root.old"; mv "$root" "$root.old"; fi
mv "$root.new" "$root"
printf '{"digest": "%s"}\n' "$d" > "$root.minipull.json"
cut after
exit "$(cat "$W/rc" 2>/dev/null || echo 0)"
EOF
chmod 755 "$W/bin/minipull"

# An image: its version, and "good" when its init marks it good.
image() { # digest good|bad [mark-type]
    local dir=$W/images/$1
    mkdir -p "$dir/sbin"
    echo "$1" > "$dir/version"
    [ "$2" = good ] && : > "$dir/good"
    case ${3:-} in
        file) echo "from a snapshot" > "$dir/.minipull-boot-ok" ;;
        dir) mkdir -p "$dir/.minipull-boot-ok/sub" ;;
        # A link to /init's own state on the disk (absolute, as the image sees it).
        symlink) ln -s "$STATE/previous.json" "$dir/.minipull-boot-ok" ;;
        fifo) mkfifo "$dir/.minipull-boot-ok" ;;
    esac
}

# One boot: the disk decisions, then the image's init. Sets BOOT_RC.
boot() {
    echo "--- boot $((${NBOOT:-0} + 1))" >> "$W/console"
    NBOOT=$((${NBOOT:-0} + 1))
    PATH="$W/bin:$PATH" timeout 10 busybox sh -c '
        export BOOT_PID=$$
        MINIPULL_INIT_LIB=1 . "$INIT"
        date() {
            case ${1:-} in
                +%s) cat "$W/clock" ;;
                -s) echo "${2#@}" > "$W/clock" ;;
                *) echo "@$(cat "$W/clock")" ;;
            esac
        }
        sync() { :; }
        fail() { say "$*"; exit 3; }
        REF=reg.example/os:stable DISK=/dev/vda DISKDIR=$W/disk TRIES=2 WAIT=60
        PLAIN= CA= KEY=${KEY:-} IDENTITY=${IDENTITY:-} ISSUER=${ISSUER:-}
        TRUSTED_ROOT=${TRUSTED_ROOT:-} REPOSITORY=${REPOSITORY:-}
        options
        disk_boot
        exit 0' >> "$W/console" 2>&1
    BOOT_RC=$?
    case $BOOT_RC in
        0) ;;
        137) echo "(power cut)" >> "$W/console"; return ;;
        124|143) bad "boot $NBOOT hung (killed by the timeout)" ;;
        *) bad "boot $NBOOT failed ($BOOT_RC)" ;;
    esac
    echo "booted $(cat "$ROOT/version")" >> "$W/console"
    # The documented contract: a good image's init runs this once it is up.
    [ -f "$ROOT/good" ] && touch "$ROOT/.minipull-boot-ok"
    return 0
}
bad() { echo "FAILED ($CASE): $*"; cat "$W/console"; exit 1; }
says() { grep -q -- "$1" "$W/console" || bad "the console never says \"$1\""; }
installed() { [ "$(cat "$ROOT/version")" = "$1" ] || bad "ROOT is $(cat "$ROOT/version"), not $1"; }
recorded() { grep -q "\"$1\"" "$ROOT.minipull.json" || bad "the record names $(cat "$ROOT.minipull.json"), not $1"; }

# v1, good, installed and marked; then the registry has v2 (never marks).
setup() {
    image v1 good
    echo v1 > "$W/remote"
    boot; installed v1; recorded v1
    image v2 bad "${1:-}"
    echo v2 > "$W/remote"
}
# v2 is rolled back after TRIES (2) unmarked boots and not installed again.
rolled_back() {
    boot; boot; boot
    says "did not mark itself good in 2 boots"
    installed v1; recorded v1
    local n
    n=$(grep -c -- --unpack "$W/calls")
    boot
    says "which did not boot here"
    installed v1
    [ "$(grep -c -- --unpack "$W/calls")" = "$n" ] || bad "v2 was installed again: $(cat "$W/calls")"
}

case $CASE in
    ships_file_cut)
        # A cut between the install and the trial's first boot, of a
        # snapshot of a running device: the mark is in the image, and the
        # power goes after the swap, before anything else.
        setup file; : > "$W/cut-after"
        boot; [ "$BOOT_RC" = 137 ] || bad "no cut"
        installed v2; rolled_back ;;
    ships_dir)
        setup dir; boot; installed v2; says "installed v2"
        [ -e "$ROOT/.minipull-boot-ok" ] && bad "the mark directory is still there"
        rolled_back ;;
    ships_symlink_cut)
        setup symlink; : > "$W/cut-after"
        boot; [ "$BOOT_RC" = 137 ] || bad "no cut"; installed v2
        rolled_back
        grep -q '"v1"' "$STATE/previous.json" || bad "/init's state was written through the link" ;;
    ships_fifo_cut)
        setup fifo; : > "$W/cut-after"
        boot; [ "$BOOT_RC" = 137 ] || bad "no cut"; installed v2; rolled_back ;;
    ships_fifo)
        setup fifo; boot; installed v2
        [ -e "$ROOT/.minipull-boot-ok" ] && bad "the FIFO is still there"
        rolled_back ;;
    cut_before_swap)
        # A cut during the download: v1 stays, is not put on trial against
        # an older root, and the next boot installs v2.
        setup; : > "$W/cut-before"
        boot; [ "$BOOT_RC" = 137 ] || bad "no cut"; installed v1
        boot; says "installed v2"; installed v2
        [ "$(cat "$STATE/tries")" = 1 ] || bad "tries: $(cat "$STATE/tries")"
        rolled_back ;;
    exit_9_is_installed | exit_7_is_installed)
        # minipull exits non-zero after the swap: the record decides.
        setup; echo "${CASE#exit_}" | cut -c1 > "$W/rc"
        boot; installed v2; says "installed v2"
        rm -f "$W/rc"; rolled_back ;;
    no_downgrade_with_key)
        KEY=/etc/fleet.pub; export KEY
        setup; boot; installed v2
        grep -- --unpack "$W/calls" | grep -q -- "--verify-key /etc/fleet.pub.*--no-downgrade" \
            || bad "an install with a key lacks --no-downgrade: $(cat "$W/calls")"
        grep -q -- "--time-floor $D/boot/time-floor" "$W/calls" || bad "no --time-floor: $(cat "$W/calls")"
        ! grep "^check" "$W/calls" | grep -q -- --no-downgrade || bad "check got --no-downgrade" ;;
    keyless_identity)
        # The identity's `*` reaches minipull as it is, though paths match it.
        mkdir -p "$W/glob"; : > "$W/glob/match"
        IDENTITY="$W/glob/*" ISSUER=https://token.actions.githubusercontent.com
        TRUSTED_ROOT=/etc/sigstore/root.json REPOSITORY=reg.example/os
        export IDENTITY ISSUER TRUSTED_ROOT REPOSITORY
        setup; boot; installed v2
        grep -- --unpack "$W/calls" | grep -qF -- "--certificate-identity $W/glob/* --certificate-oidc-issuer https://token.actions.githubusercontent.com --trusted-root /etc/sigstore/root.json --verify-identity reg.example/os --no-downgrade" \
            || bad "the keyless settings did not reach the install as given: $(cat "$W/calls")"
        ! grep -q -- "$W/glob/match" "$W/calls" || bad "the identity was expanded as a path: $(cat "$W/calls")" ;;
        # Without an issuer, minipull.identity= is the repository (as before).
    identity_alone_is_the_repository)
        IDENTITY=reg.example/os; export IDENTITY
        setup; boot; installed v2
        grep -- --unpack "$W/calls" | grep -qF -- "--verify-identity reg.example/os --no-downgrade" \
            || bad "minipull.identity= alone is not the repository: $(cat "$W/calls")"
        ! grep -q -- --certificate-identity "$W/calls" || bad "a certificate identity without an issuer: $(cat "$W/calls")" ;;
    pins_only_from_the_initramfs)
        # Keys, trusted roots and CAs: files of the initramfs only, however spelt.
        mkdir -p "$D" "$W/initramfs" "$W/newroot/etc"
        : > "$D/k.pub"; : > "$W/initramfs/k.pub"; : > "$W/newroot/etc/k.pub"
        ln -s "$D/k.pub" "$W/initramfs/link.pub"
        pins() { # VAR=value... -> what check_pins said
            env "$@" DISKDIR="$D" NEWROOT_DIR="$W/newroot" busybox sh -c \
                'KEY=${KEY:-} TRUSTED_ROOT=${TRUSTED_ROOT:-} CA=${CA:-}; MINIPULL_INIT_LIB=1 . "$INIT"
                 fail() { echo "refused: $*"; exit 3; }; check_pins; echo accepted' 2>&1
        }
        for v in KEY TRUSTED_ROOT CA; do
            for f in "$D/k.pub" "/$D/k.pub" "$W/initramfs/../disk/k.pub" "$W/initramfs/link.pub" \
                "$W/newroot/etc/k.pub" k.pub "$W/initramfs/missing" "$W/initramfs"; do
                out=$(pins "$v=$f")
                case $out in refused:*) ;; *) bad "$v=$f was accepted: $out" ;; esac
            done
            out=$(pins "$v=$W/initramfs/k.pub")
            [ "$out" = accepted ] || bad "$v=$W/initramfs/k.pub was refused: $out"
        done
        out=$(pins "KEY=$D/k.pub")
        case $out in *"on the disk or in the new root"*) ;; *) bad "no reason given: $out" ;; esac ;;
    identity_url_without_issuer)
        # A certificate identity without its issuer, or a root without both:
        # refused by name before any minipull call.
        opts() { # VAR=value... -> what options said
            env "$@" busybox sh -c 'KEY= CA= PLAIN= DISK= WAIT=60 ISSUER=${ISSUER:-} TRUSTED_ROOT=${TRUSTED_ROOT:-}
                IDENTITY=${IDENTITY:-} REPOSITORY=; MINIPULL_INIT_LIB=1 . "$INIT"
                fail() { echo "refused: $*"; exit 3; }; options; echo "accepted:$VERIFY"' 2>&1
        }
        out=$(opts IDENTITY=https://github.com/acme/os/.github/workflows/release.yml@refs/tags/v1)
        case $out in "refused: "*"is a certificate identity"*) ;; *) bad "a URL identity without an issuer: $out" ;; esac
        out=$(opts IDENTITY=ci@acme.example)
        case $out in "refused: "*) ;; *) bad "an email identity without an issuer: $out" ;; esac
        out=$(opts TRUSTED_ROOT=/etc/sigstore/root.json)
        case $out in "refused: "*"minipull.root= is used only"*) ;; *) bad "a root without an identity: $out" ;; esac
        out=$(opts IDENTITY=reg.example/os)
        [ "$out" = "accepted: --verify-identity reg.example/os --no-downgrade" ] || bad "the repository: $out" ;;
    clock_forward)
        image v1 good; echo v1 > "$W/remote"
        echo 1800000000 > "$STATE/time-floor"
        boot; [ "$(cat "$W/clock")" = 1800000000 ] || bad "the clock is $(cat "$W/clock")"
        says "clock set forward"
        # Ahead of the floor: left alone; a floor that is not a number: ignored.
        echo 1900000000 > "$W/clock"; boot
        [ "$(cat "$W/clock")" = 1900000000 ] || bad "the clock went back to $(cat "$W/clock")"
        echo 5 > "$W/clock"; echo '2000000000; rm -rf /' > "$STATE/time-floor"; boot
        [ "$(cat "$W/clock")" = 5 ] || bad "a junk floor set the clock to $(cat "$W/clock")" ;;
    *) bad "no such case" ;;
esac
echo "ok: $CASE (${NBOOT:-0} boots)"

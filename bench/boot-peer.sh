#!/bin/bash
# bench/boot-peer.sh: the peer of bench/boot.sh, xen-tools, in the same run.
#
#   bench/boot-peer.sh [WORK_DIR]   (as root; works in a new directory in
#                                    WORK_DIR, default the system temp dir)
#
# Times xen-tools' `xen-create-image` for a first Debian 12 guest (empty .deb
# cache) and a second one (the .deb cache from the first: xen-tools' warm path),
# each with a 2 GiB sparse root disk, no swap, DHCP and the guest's own kernel
# (`--pygrub`: this host has no /boot/vmlinuz-$(uname -r) to lend the guest,
# and convirt's guests carry their own kernel too), and the bytes the second
# guest's disk allocates (`du -B1`). No Xen is needed: xen-create-image only
# builds the image and the config. Installs xen-tools with apt when missing and
# says so on stderr. The mirror is the host's apt mirror for bookworm.
#
# Everything it makes stays in that new directory (disks, configs via `--output`, the
# .deb cache via `--cachedir`, xen-tools' loop mounts via TMPDIR) and is
# removed at the end, with the logs it writes to /var/log/xen-tools/.
#
# Prints shell assignments on stdout for bench/boot.sh:
#   peer_version=...  peer_first='WALL s | CPU s'  peer_second=...
#   peer_alloc=BYTES  peer_apparent=BYTES  peer_load_after='...'
# or, when xen-tools cannot run here, peer_error='what failed'.
set -euo pipefail
cd "$(dirname -- "$0")/.."

fail() {
    printf 'peer_error=%q\n' "$*"
    exit 0
}

((EUID == 0)) || fail "xen-tools needs root (debootstrap, loop mounts)"

if ! command -v xen-create-image > /dev/null; then
    echo "boot-peer.sh: installing xen-tools with apt (not installed)" >&2
    apt-get install -y --no-install-recommends xen-tools > /dev/null 2>&1 ||
        fail "apt-get install xen-tools failed"
fi
version=$(dpkg-query -W -f '${Version}' xen-tools 2> /dev/null || echo unknown)

# The host's mirror, read the way the shipped images read it.
# shellcheck source=/dev/null
source <(sed -n '/^guest_host_mirror()/,/^}/p' image_store/common/guest)
mirror=$(guest_host_mirror bookworm) || fail "no apt source for bookworm in /etc/apt/sources.list{,.d}"

# A fresh directory of its own (inside WORK_DIR when given), so that the
# cleanup removes only what this run made.
if [[ -n "${1:-}" ]]; then
    mkdir -p -- "$1"
    work=$(mktemp -d -p "$(cd -- "$1" && pwd -P)" peer.XXXXXX)
else
    work=$(mktemp -d)
fi
h1=convirt-peer1-$$ h2=convirt-peer2-$$
hosts=("$h1" "$h2")
# xen-tools makes /var/log/xen-tools/ for its logs: remove it again if it did.
logdir_was_there=0
[[ -d /var/log/xen-tools ]] && logdir_was_there=1
cleanup() {
    local m h
    # Mounts xen-tools left (it mounts under TMPDIR), deepest first.
    while read -r m; do
        umount -l -- "$m" 2> /dev/null || true
    done < <(findmnt -rn -o TARGET | grep -F -- "$work/" | sort -r)
    for h in "${hosts[@]}"; do
        if [[ -f "$work/domains/$h/disk.img" ]]; then
            losetup -j "$work/domains/$h/disk.img" -O NAME -n 2> /dev/null |
                while read -r m; do losetup -d "$m" || true; done
        fi
        rm -f -- "/var/log/xen-tools/$h.log"
    done
    if ((!logdir_was_there)); then
        rmdir -- /var/log/xen-tools 2> /dev/null || true
    fi
    rm -rf -- "$work"
}
trap cleanup EXIT
mkdir -p -- "$work/tmp" "$work/debs" "$work/cfg"

# timed NAME: run xen-create-image for guest NAME; print "WALL s | CPU s".
timed() {
    local TIMEFORMAT='%R %U %S' t
    t=$({ time TMPDIR="$work/tmp" xen-create-image --hostname="$1" --dir="$work" \
        --output="$work/cfg" --dist=bookworm --mirror="$mirror" --size=2G --noswap \
        --fs=ext4 --image=sparse --dhcp --pygrub --noboot --nohosts --genpass=1 \
        --cache=yes --cachedir="$work/debs" > "$work/$1.out" 2>&1; } 2>&1) || return 1
    awk -v t="$t" 'BEGIN { split(t, a, " "); printf "%.1f s | %.1f s", a[1], a[2] + a[3] }'
}

# why NAME: the last lines xen-tools printed for NAME, on one line.
why() {
    tail -n 3 -- "$work/$1.out" 2> /dev/null | tr -s '\n\t' '  ' | cut -c1-300
}

first=$(timed "$h1") || fail "xen-create-image failed: $(why "$h1")"
second=$(timed "$h2") || fail "xen-create-image failed: $(why "$h2")"
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
disk=$work/domains/$h2/disk.img
[[ -f "$disk" ]] || fail "xen-create-image made no $disk"
[[ -f "$work/cfg/$h2.cfg" ]] || fail "xen-create-image wrote no config into --output"

printf 'peer_version=%q\n' "$version"
printf 'peer_first=%q\n' "$first"
printf 'peer_second=%q\n' "$second"
printf 'peer_alloc=%q\n' "$(du -B1 -- "$disk" | cut -f1)"
printf 'peer_apparent=%q\n' "$(stat -c %s -- "$disk")"
printf 'peer_load_after=%q\n' "$load_after"

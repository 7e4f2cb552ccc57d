#!/bin/bash
# bench/boot.sh: provisioning Debian_12_Minimal, side by side in one run.
#
#   bench/boot.sh [WORK_DIR]        (default: target/bench-boot, emptied first)
#
# Measures, with the release binary (built if missing) and a fresh cache (a
# `sync` between groups of rows, untimed, so that no row pays for the writes
# of the one before):
#   1. the first VM on a cold cache (mmdebstrap bootstrap + base disk + VM),
#   2. a second VM on the warm cache,
#   3. four VMs with --jobs 2 on the warm cache,
#   4. the bytes each VM's 2 GiB disk allocates (du),
#   4b. thin VMs (xvda_disk_type=qcow2-thin): one, another, then 20 with
#      --jobs 2, and the bytes a thin VM's overlay allocates,
#   5. the naive warm path for comparison: cp -a of the unpacked base tree, then
#      mkfs.ext4 -d into a 2 GiB sparse file.
# As root, 6. the peer in the same run: xen-tools' first and second guest and
# the bytes its disk allocates (bench/boot-peer.sh; installs xen-tools if
# missing; set BOOT_PEER=0 to skip it).
# Prints a Markdown table for docs/performance.md. Needs what the image needs
# (mmdebstrap, e2fsprogs, openssh-client; uidmap as a normal user) and the
# network access to the apt mirror this host uses.
set -euo pipefail
cd "$(dirname -- "$0")/.."

work=${1:-target/bench-boot}
work=$(mkdir -p -- "$work" && cd -- "$work" && pwd -P)
# The cache holds files of subordinate ids for a normal user: remove it inside
# the user namespace that made it.
if ((EUID == 0)); then
    rm -rf -- "$work"
else
    unshare --map-auto --map-root-user rm -rf -- "$work"
fi
mkdir -p -- "$work"

# CONVIRT_BIN=PATH measures another binary (e.g. a debug build) without building.
if [[ -n "${CONVIRT_BIN:-}" ]]; then
    bin=$(realpath -- "$CONVIRT_BIN")
else
    if [[ ! -x target/release/convirt ]]; then
        cargo build --release --locked
    fi
    bin=$PWD/target/release/convirt
fi
cp -a image_store "$work/store"
cat > "$work/convirt.toml" << EOF
image_store = '$work/store'
log_dir = '$work/log'
work_dir = '$work/work'
# VM records of the run stay in it (as root the default is /var/lib/convirt,
# where the names would clash with earlier runs).
state_dir = '$work/state'

[variables]
VM_DISKS_DIR = '$work/disks'
VM_CONF_DIR = '$work/conf'
VM_CACHE_DIR = '$work/cache'
EOF
ssh-keygen -q -t ed25519 -N '' -f "$work/key"
hash=$(openssl passwd -6 bench)

# now: seconds since the epoch, with nanoseconds.
now() { date +%s.%N; }
# elapsed START: seconds since START, 1 decimal.
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
# timed CMD...: run CMD; print "WALL s | CPU s" (CPU: user + sys of CMD and its
# children), so that figures from a busy shared machine can be read.
timed() {
    local TIMEFORMAT='%R %U %S' t
    { t=$({ time "$@" > /dev/null 2>&1; } 2>&1); } || return 1
    awk -v t="$t" 'BEGIN { split(t, a, " "); printf "%.1f s | %.1f s", a[1], a[2] + a[3] }'
}

provision() {
    "$bin" --config "$work/convirt.toml" -q provision --image Debian_12_Minimal \
        --set root_password_hash="$hash" --set ssh_authorized_keys="$(cat "$work/key.pub")" "$@"
}

# settle: the page cache written by the rows before goes to the disk first
# (`sync`, not timed), so that a row measures its own work and not the kernel
# throttling it while the cold bootstrap's gigabytes are written back. As root
# the clean page cache is dropped too: on a virtual machine whose host backs
# its memory on first touch (this one), page cache that grows into memory the
# guest never used costs three to four times more to write (docs/performance.md:
# a 400 MB memcpy 1.19 s before, 0.26 s after), which would be measured as
# convirt's copy.
settle() {
    sync
    if ((EUID == 0)); then
        echo 3 > /proc/sys/vm/drop_caches
    fi
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
cold=$(timed provision --vm cold1)
settle
warm=$(timed provision --vm warm1)
warm2=$(timed provision --vm warm2)
settle
jobs4=$(timed provision --jobs 2 --vm j1 j2 j3 j4)
settle
# Thin VMs (issue #22): qcow2 overlays of the cached base.
thin1=$(timed provision --vm thin1 --set xvda_disk_type=qcow2-thin)
thin2=$(timed provision --vm thin2 --set xvda_disk_type=qcow2-thin)
thin_vms=()
for i in $(seq 1 20); do thin_vms+=("t$i"); done
thin20=$(timed provision --jobs 2 --set xvda_disk_type=qcow2-thin --vm "${thin_vms[@]}")
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
# A thin VM's own bytes: its overlay; its kernel and initrd are hard links
# of the cache's read-only files.
thin_alloc=$(du --block-size=1 "$work/disks/thin1.disk" | cut -f1)

alloc=$(du --block-size=1 "$work/disks/warm1.disk" | cut -f1)
apparent=$(stat -c %s "$work/disks/warm1.disk")

# The naive warm path: copy an unpacked tree, then mkfs.ext4 -d.
entry=$(find "$work/cache/guests" -maxdepth 1 -name 'debian-*' | head -n 1)
naive() {
    local tree="$work/naive-tree" copy="$work/naive-copy" img="$work/naive.img" t
    mkdir -p "$tree" && tar -x -p --numeric-owner --exclude='./dev/*' -f "$entry/rootfs.tar" -C "$tree"
    t=$(now)
    cp -a "$tree" "$copy"
    mkfs.ext4 -q -F -L root -d "$copy" "$img" 2G > /dev/null
    elapsed "$t"
}
if ((EUID == 0)); then
    naive_s=$(naive)
else
    naive_s=$(unshare --map-auto --map-root-user bash -c "$(declare -f now elapsed naive); work='$work' entry='$entry' naive")
fi

# The peer after convirt's runs, so that neither slows the other.
peer_ran=0 peer_error='' peer_version='' peer_first='' peer_second='' peer_alloc='' peer_load_after=''
if ((EUID == 0)) && [[ "${BOOT_PEER:-1}" != 0 ]]; then
    peer_out=$(bash bench/boot-peer.sh "$work/peer") || peer_out="peer_error='bench/boot-peer.sh failed'"
    eval "$peer_out"
    peer_ran=1
fi

cat << EOF
Measured with \`bench/boot.sh\` on $(date -u +%Y-%m-%d), commit \`$(git -c safe.directory='*' rev-parse --short HEAD 2> /dev/null || echo unknown)\`,
as $(id -un) (uid $EUID), binary \`${bin#"$PWD"/}\`; load average $load_before before, $load_after after.

| what | wall | CPU (user + sys) |
| --- | ---: | ---: |
| first VM, cold cache (bootstrap + base disk + VM) | ${cold} |
| second VM, warm cache | ${warm} |
| third VM, warm cache | ${warm2} |
| 4 VMs, \`--jobs 2\`, warm cache | ${jobs4} |
| thin VM (\`xvda_disk_type=qcow2-thin\`), warm cache | ${thin1} |
| second thin VM, warm cache | ${thin2} |
| 20 thin VMs, \`--jobs 2\`, warm cache | ${thin20} |
| naive warm path for comparison (\`cp -a\` tree + \`mkfs.ext4 -d\`), wall only | ${naive_s} s | |

Each VM's 2 GiB disk ($apparent bytes apparent) allocates $alloc bytes; a thin VM's
qcow2 overlay allocates $thin_alloc bytes (its kernel and initrd are hard links of the cache's).
EOF

if ((peer_ran)) && [[ -n "${peer_error:-}" ]]; then
    printf '\nThe peer, xen-tools, could not run here: %s\n' "$peer_error"
elif ((peer_ran)); then
    cat << EOF

Side by side in the same run, the peer after convirt (load average $peer_load_after after it):
xen-tools $peer_version, \`xen-create-image --dist=bookworm --size=2G --noswap --dhcp --pygrub\`
(debootstrap from the same mirror, a .deb cache of its own that the second guest reuses).

| what | convirt wall / CPU | xen-tools wall / CPU |
| --- | ---: | ---: |
| first guest, cold cache | ${cold/|//} | ${peer_first/|//} |
| second guest, warm cache | ${warm/|//} | ${peer_second/|//} |
| 4 guests, \`--jobs 2\`, warm cache | ${jobs4/|//} | not measured (one guest per \`xen-create-image\`) |
| bytes a 2 GiB disk allocates | $alloc | $peer_alloc |
EOF
fi

#!/bin/bash
# Builds the disk of the Xen world's dom0 (tests/xen_world): a Debian 12 tree made by
# mmdebstrap with Debian's Xen 4.17 hypervisor and tools, written into an ext4 image with
# `mkfs.ext4 -d` (nothing mounted), plus what QEMU needs to boot it without a bootloader.
#
#   tests/xen_world/build-dom0.sh OUT
#
# OUT gets: xen.elf (the gunzipped hypervisor, for QEMU's multiboot loader), vmlinuz,
# initrd.img, dom0.img (the root file system, /dev/vda), id_dom0 and id_dom0.pub (root's
# SSH key) and, written last, `complete`. The caller keys OUT by this script's contents
# (tests/xen_world/main.rs) and boots a copy-on-write overlay of dom0.img, so one build
# serves every run; this script itself always builds anew.
set -euo pipefail

out=${1:?usage: build-dom0.sh OUT}
[[ $(id -u) -eq 0 ]] || { echo "build-dom0.sh: needs root (mmdebstrap, root-owned tree)" >&2; exit 1; }

# The mirror this host's apt uses (never written into the repository).
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
if [[ -z "$mirror" ]]; then
    mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
fi
if [[ -z "$mirror" ]]; then
    mirror=$(awk '$1 == "deb" && $3 == "bookworm" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
fi
[[ -n "$mirror" ]] || { echo "build-dom0.sh: cannot find the apt mirror" >&2; exit 1; }

packages=linux-image-amd64,xen-hypervisor-4.17-amd64,xen-utils-4.17,qemu-system-xen
packages+=,systemd-sysv,udev,ifupdown,isc-dhcp-client,iproute2,bridge-utils,netbase,kmod
packages+=,openssh-server,lvm2,mmdebstrap,uidmap,qemu-utils,e2fsprogs,procps

rm -rf -- "$out"
mkdir -p "$out"
tree="$out/tree"
mkdir "$tree"
trap 'rm -rf -- "$tree"' EXIT

mmdebstrap --variant=minbase --mode=root --include="$packages" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    bookworm "$tree" "$mirror"

echo dom0 > "$tree/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 dom0\n' > "$tree/etc/hosts"
printf '/dev/vda / ext4 rw,errors=remount-ro 0 1\n' > "$tree/etc/fstab"
# The bridge the VM configs name ($DEFAULT_BRIDGE), with dom0's NIC in it; QEMU's user
# network answers DHCP and forwards the host's port to dom0's sshd.
cat > "$tree/etc/network/interfaces" <<'IF'
auto lo
iface lo inet loopback

auto xenbr0
iface xenbr0 inet dhcp
    bridge_ports eth0
    bridge_stp off
    bridge_fd 0
IF
printf 'xen-blkback\nxen-netback\n' > "$tree/etc/modules-load.d/xen-backends.conf"
# Guest consoles into files: /var/log/xen/console/guest-<name>.log.
printf '\nXENCONSOLED_ARGS="--log=guest --log-dir=/var/log/xen/console"\n' >> "$tree/etc/default/xen"
mkdir -p "$tree/var/log/xen/console"
: > "$tree/etc/machine-id"

ssh-keygen -q -t ed25519 -N '' -C xen-world -f "$out/id_dom0"
install -d -m 0700 "$tree/root/.ssh"
install -m 0600 "$out/id_dom0.pub" "$tree/root/.ssh/authorized_keys"
printf 'PermitRootLogin prohibit-password\nUseDNS no\n' > "$tree/etc/ssh/sshd_config.d/xen-world.conf"

zcat "$tree"/boot/xen-4.17-amd64.gz > "$out/xen.elf"
cp -- "$tree"/boot/vmlinuz-* "$out/vmlinuz"
cp -- "$tree"/boot/initrd.img-* "$out/initrd.img"

truncate -s 12G "$out/dom0.img"
mkfs.ext4 -q -L dom0 -d "$tree" "$out/dom0.img"
touch "$out/complete"

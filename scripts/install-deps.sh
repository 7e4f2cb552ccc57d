#!/usr/bin/env bash
# Installs the Debian packages the tests use for real (Debian 12 "bookworm", with apt).
# Safe to run again: packages already present are skipped. SKIP_APT=1 skips it all.
#
# - Xen's own config parser (xl, libxlutil) and gcc to build the stub in tests/xen/;
# - shellcheck for the shipped scripts; e2fsprogs/qemu-utils/util-linux for disks;
# - tar/gzip/zstd/dpkg for archives; curl for downloads;
# - mmdebstrap + uidmap for the bootable image (a normal user's bootstrap); openssl for
#   the test's crypt hash (openssl passwd -6);
# - qemu-system-x86 to boot the provisioned guest (from bookworm-backports: bookworm's
#   7.2 conflicts with the preinstalled qemu-utils 10), and qemu-utils from there too when
#   missing: its qemu-storage-daemon (FUSE export) writes thin VMs' overlays;
# - openssh-server/openssh-client for the remote-host tests; iproute2 for bridges in a
#   network namespace; lintian/man-db/bash-completion for the package checks.
set -euo pipefail

[[ -n "${SKIP_APT:-}" ]] && exit 0

packages=(xen-utils-4.17 libxen-dev shellcheck e2fsprogs util-linux curl gcc libc6-dev
          tar gzip zstd dpkg diffutils mmdebstrap uidmap openssh-server openssh-client iproute2
          lintian man-db bash-completion openssl)
# tests/xen_world: the initramfs (static busybox, cpio) and the boot ISO (xorriso) the test makes.
packages+=(busybox-static cpio xorriso)
# scripts/build-deb.sh: dpkg-shlibdeps and dpkg-parsechangelog (dpkg-dev), strip (binutils).
packages+=(dpkg-dev binutils)
# The web console's browser test (tests/ui_browser): chromium driven over WebDriver.
packages+=(chromium chromium-driver)
backports=(qemu-system-x86 qemu-utils)

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

missing=()
for p in "${packages[@]}"; do installed "$p" || missing+=("$p"); done
missing_bpo=()
for p in "${backports[@]}"; do installed "$p" || missing_bpo+=("$p"); done
[[ ${#missing[@]} -eq 0 && ${#missing_bpo[@]} -eq 0 ]] && exit 0

sudo=()
[[ $(id -u) -eq 0 ]] || sudo=(sudo)

if [[ ${#missing_bpo[@]} -gt 0 ]]; then
    # Add bookworm-backports with the mirror apt already uses (read from its sources).
    mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    if [[ -z "$mirror" ]]; then
        mirror=$(awk '$1 == "deb" && $3 == "bookworm" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
    fi
    if [[ -z "$mirror" ]]; then
        echo "install-deps: cannot find the apt mirror for bookworm-backports" >&2
        exit 1
    fi
    if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
            "$mirror" | "${sudo[@]}" tee /etc/apt/sources.list.d/convirt-backports.sources >/dev/null
    fi
fi

echo "installing: ${missing[*]} ${missing_bpo[*]}" >&2
"${sudo[@]}" apt-get update
export DEBIAN_FRONTEND=noninteractive
if [[ ${#missing[@]} -gt 0 ]]; then
    "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
fi
if [[ ${#missing_bpo[@]} -gt 0 ]]; then
    "${sudo[@]}" apt-get install -y --no-install-recommends -t bookworm-backports "${missing_bpo[@]}"
fi

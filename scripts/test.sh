#!/usr/bin/env bash
# The test command: installs the system packages the tests need (Debian/Ubuntu, with apt),
# then runs every test target. Safe to run again: packages already present are skipped.
#
#   scripts/test.sh            install what is missing, then `cargo test`
#   SKIP_APT=1 scripts/test.sh run the tests with whatever is installed
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use for real: Xen's own config parser (xl, libxlutil), shellcheck
# for the shipped scripts, e2fsprogs/qemu-utils/util-linux/curl/gcc for disks, downloads and
# the Xen stub, tar/gzip/zstd/dpkg for archives.
packages=(xen-utils-4.17 libxen-dev shellcheck e2fsprogs qemu-utils util-linux curl gcc libc6-dev
          tar gzip zstd dpkg diffutils)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 && -z "${SKIP_APT:-}" ]]; then
    sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    echo "installing: ${missing[*]}" >&2
    "${sudo[@]}" apt-get update
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
fi

cargo test --all-targets --locked

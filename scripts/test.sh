#!/usr/bin/env bash
# The test command: installs the system packages the tests need (Debian 12, with apt),
# then runs every test target. Safe to run again: packages already present are skipped.
#
#   scripts/test.sh            install what is missing, then run the tests
#   SKIP_APT=1 scripts/test.sh run the tests with whatever is installed
#   FAST=1 scripts/test.sh     only `cargo test` (no QEMU boots, no sshd)
#   NO_XEN=1 scripts/test.sh   everything but the Xen world (docs/xen.md)
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

cargo test --all-targets --locked

if [[ -z "${FAST:-}" ]]; then
    # The slow end-to-end target: bootstraps, QEMU boots under TCG, a private sshd.
    cargo test --locked --test e2e -- --test-threads=1
    # The web console in headless chromium over WebDriver (chromedriver).
    cargo test --locked --test ui_browser -- --test-threads=1
    # NO_XEN=1 skips it (docs/xen.md gives its cost).
    if [[ -z "${NO_XEN:-}" ]]; then
        # Real Xen 4.17 under QEMU, dom0 driven over ssh; one boot for every case
        # (docs/xen.md). Needs root: the dom0 tree is bootstrapped with mmdebstrap.
        cargo test --locked --test xen_world -- --test-threads=1
    fi
fi

#!/usr/bin/env bash
# The test command: installs the system packages the tests need (Debian 12, with apt),
# then runs every test target. Safe to run again: packages already present are skipped.
#
#   scripts/test.sh            install what is missing, then run the tests
#   SKIP_APT=1 scripts/test.sh run the tests with whatever is installed
#   FAST=1 scripts/test.sh     only `cargo test` (no QEMU boots, no sshd)
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

cargo test --all-targets --locked

if [[ -z "${FAST:-}" ]]; then
    # The slow end-to-end target: bootstraps, QEMU boots under TCG, a private sshd.
    cargo test --locked --test e2e -- --test-threads=1
    # The web console in headless chromium over WebDriver (chromedriver).
    cargo test --locked --test ui_browser -- --test-threads=1
fi

//! Slow end-to-end tests: real bootstraps, QEMU boots under TCG, a real `sshd` on
//! 127.0.0.1. Not part of `cargo test` (the target has `test = false`); `scripts/test.sh`
//! runs it with `cargo test --test e2e`.

mod boot;
mod guest;
mod remote;

//! Slow end-to-end tests: real bootstraps, QEMU boots under TCG, a real `sshd` on
//! 127.0.0.1. Not part of `cargo test` (the target has `test = false`); `scripts/test.sh`
//! runs it with `cargo test --test e2e`.
// A test crate has no public API: its helpers are `pub` for its own modules.
#![allow(unreachable_pub)]
// Tests signal their own children and scripts (`libc::kill`).
#![allow(unsafe_code)]

mod boot;
mod guest;
mod remote;
mod remote_records;
mod scenarios;
mod seed;
mod ui_remote;

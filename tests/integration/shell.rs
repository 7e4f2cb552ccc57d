//! The shipped shell library and scripts: shellcheck clean, and exercised for real by
//! tests/shell/run.sh.

use crate::{repo, stderr, stdout};
use std::process::Command;

fn shell_files() -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for e in walkdir::WalkDir::new(repo().join("image_store"))
        .sort_by_file_name()
        .into_iter()
        .flatten()
    {
        if !e.file_type().is_file() {
            continue;
        }
        let p = e.path().to_path_buf();
        let head = std::fs::read(&p).unwrap_or_default();
        let is_shell = head.starts_with(b"#!/bin/bash")
            || head.starts_with(b"#!/bin/sh")
            || head.starts_with(b"#!/usr/bin/env bash");
        let in_common = p.parent().is_some_and(|d| d.ends_with("common"));
        if is_shell || in_common {
            files.push(p);
        }
    }
    files
}

#[test]
fn every_shipped_script_is_shellcheck_clean() {
    let files = shell_files();
    assert!(files.len() >= 6, "{files:?}");
    let o = match Command::new("shellcheck")
        .args(["-x", "-S", "style", "--shell=bash"])
        .args(&files)
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "shellcheck missing in CI: {e}"
            );
            eprintln!("SKIP: shellcheck not installed: {e}");
            return;
        }
    };
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
}

#[test]
fn shell_library_tests_pass() {
    let o = Command::new("bash")
        .arg(repo().join("tests/shell/run.sh"))
        .output()
        .unwrap();
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    let last = out.lines().last().unwrap_or("");
    assert!(last.contains(" passed, 0 failed"), "{last}");
}

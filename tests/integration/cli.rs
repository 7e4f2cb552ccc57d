//! The command-line frame: help, usage errors, settings errors, completions, man page.

use crate::{World, stderr, stdout};

#[test]
fn help_has_examples_and_usage_errors_exit_2() {
    let w = World::new();
    let o = w.cmd().arg("--help").output().unwrap();
    assert!(o.status.success());
    assert!(stdout(&o).contains("Examples:"));
    let o = w
        .cmd()
        .args(["image", "validate", "--help"])
        .output()
        .unwrap();
    assert!(
        stdout(&o).contains("convirt image validate --strict") || stdout(&o).contains("--strict")
    );
    let o = w.cmd().arg("frobnicate").output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let o = w.cmd().args(["image", "show"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn settings_unknown_key_exits_1_naming_file_line_and_key() {
    let w = World::new();
    let cfg = w.write("convirt.toml", "log_dir = '/tmp/x'\n\nimage_stor = '/y'\n");
    let o = w
        .cmd()
        .arg("--config")
        .arg(&cfg)
        .args(["image", "list"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = w.filter(&stderr(&o));
    assert!(err.contains("unknown field `image_stor`"), "{err}");
    assert!(err.contains("[TMP]/convirt.toml:3:1"), "{err}");
}

#[test]
fn settings_from_env_var_are_used() {
    let w = World::new();
    w.image("Only", "", "name = ''\n");
    let cfg = w.write(
        "c.toml",
        &format!("image_store = '{}'\n", w.store().display()),
    );
    let o = w
        .cmd()
        .env("CONVIRT_CONFIG", &cfg)
        .args(["--json", "image", "list"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["name"], "Only");
    // The flag beats the settings file.
    let other = w.path().join("other");
    std::fs::create_dir_all(other.join("X")).unwrap();
    let o = w
        .cmd()
        .env("CONVIRT_CONFIG", &cfg)
        .arg("--store")
        .arg(&other)
        .args(["--json", "image", "list"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["name"], "X");
}

#[test]
fn completions_and_manpage() {
    let w = World::new();
    let o = w.cmd().args(["completions", "bash"]).output().unwrap();
    assert!(o.status.success());
    assert!(stdout(&o).contains("complete -o nospace"), "{}", stdout(&o));
    assert!(stdout(&o).contains("_CONVIRT_COMPLETE"), "{}", stdout(&o));
    let o = w.cmd().arg("manpage").output().unwrap();
    assert!(o.status.success());
    assert!(
        stdout(&o).starts_with(".ie") || stdout(&o).contains(".TH convirt"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn bad_image_name_is_a_clear_error() {
    let w = World::new();
    w.image("Good", "", "name = ''\n");
    let o = w.run(&["image", "show", "../etc"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("image name `../etc` contains `.`"),
        "{}",
        stderr(&o)
    );
}

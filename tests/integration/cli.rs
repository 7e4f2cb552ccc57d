//! The command-line frame: help, usage errors, settings errors, completions, man page.

use crate::World;

#[test]
fn help_has_examples_and_usage_errors_exit_2() {
    let w = World::new();
    let ran = w.test().bare().arg("--help").stderr("").run();
    assert!(ran.stdout.contains("Examples:"), "{}", ran.stdout);
    // The subcommand's own examples, not just its flag list.
    let ran = w
        .test()
        .bare()
        .args(["image", "validate", "--help"])
        .stderr("")
        .run();
    assert!(
        ran.stdout
            .contains("Examples:\n  convirt image validate\n  convirt image validate Linux_CD_Install --strict"),
        "{}",
        ran.stdout
    );
    let ran = w.test().bare().arg("frobnicate").stdout("").status(2).run();
    assert!(
        ran.stderr
            .starts_with("error: unrecognized subcommand 'frobnicate'"),
        "{}",
        ran.stderr
    );
    let ran = w.test().args(["image", "show"]).stdout("").status(2).run();
    assert!(ran.stderr.contains("<IMAGE>"), "{}", ran.stderr);
}

#[test]
fn settings_unknown_key_exits_1_naming_file_line_and_key() {
    let w = World::new();
    let cfg = w.write("convirt.toml", "log_dir = '/tmp/x'\n\nimage_stor = '/y'\n");
    let ran = w
        .test()
        .bare()
        .arg("--config")
        .arg(&cfg)
        .args(["image", "list"])
        .stdout("")
        .status(1)
        .run();
    assert!(
        ran.stderr.contains("unknown field `image_stor`"),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains("[TMP]/convirt.toml:3:1"),
        "{}",
        ran.stderr
    );
}

#[test]
fn settings_from_env_var_are_used() {
    let w = World::new();
    w.image("Only", "", "name = ''\n");
    let cfg = w.write(
        "c.toml",
        &format!("image_store = '{}'\n", w.store().display()),
    );
    let v = w
        .test()
        .bare()
        .env("CONVIRT_CONFIG", &cfg)
        .args(["--json", "image", "list"])
        .stderr("")
        .run()
        .json();
    assert_eq!(v[0]["name"], "Only");
    // The flag beats the settings file.
    let other = w.path().join("other");
    std::fs::create_dir_all(other.join("X")).unwrap();
    let v = w
        .test()
        .bare()
        .env("CONVIRT_CONFIG", &cfg)
        .arg("--store")
        .arg(&other)
        .args(["--json", "image", "list"])
        .run()
        .json();
    assert_eq!(v[0]["name"], "X");
}

#[test]
fn completions_and_manpage() {
    let w = World::new();
    let ran = w
        .test()
        .bare()
        .args(["completions", "bash"])
        .stderr("")
        .run();
    assert!(ran.stdout.contains("complete -o nospace"), "{}", ran.stdout);
    assert!(ran.stdout.contains("_CONVIRT_COMPLETE"), "{}", ran.stdout);
    let ran = w.test().bare().arg("manpage").stderr("").run();
    assert!(ran.stdout.contains(".TH convirt"), "{}", ran.stdout);
}

#[test]
fn bad_image_name_is_a_clear_error() {
    let w = World::new();
    w.image("Good", "", "name = ''\n");
    let ran = w
        .test()
        .args(["image", "show", "../etc"])
        .stdout("")
        .status(1)
        .run();
    assert!(
        ran.stderr.contains("image name `../etc` contains `.`"),
        "{}",
        ran.stderr
    );
}

//! A reader that goes away (`convirt image list | head -1`): convirt stops quietly with
//! status 0, as ripgrep does: no `error: Broken pipe`, no panic. `provision` still finishes
//! its run and its cleanup when stdout or stderr is gone. The pipe's reader is closed before
//! convirt starts, so every write fails: the tests do not depend on timing.

use crate::World;
use crate::provision::{probe, sandbox};

fn store() -> World {
    let w = World::new();
    w.image("Web", "hda_disk_size = 4000\n", "name = ''\nmemory = 512\n");
    w
}

#[test]
fn listing_commands_exit_0_quietly_when_stdout_is_gone() {
    let w = store();
    let conf = w.store().join("Web/vm_conf.template");
    let conf = conf.to_str().unwrap();
    for args in [
        &["image", "list"][..],
        &["--json", "image", "list"],
        &["image", "show", "Web"],
        &["--json", "image", "show", "Web"],
        &["image", "validate"],
        &["--json", "image", "validate"],
        &["conf", "eval", conf],
        &["--json", "conf", "eval", conf],
        &["conf", "eval", "--format", "xl", "--vm", "w", conf],
        &["completions", "bash"],
        &["manpage"],
        &["--help"],
    ] {
        w.test().args(args).stdout_closed().stderr("").run();
    }
}

#[test]
fn changing_commands_finish_their_work_when_stdout_is_gone() {
    let w = store();
    let fresh = w.path().join("fresh");
    w.test()
        .args(["store", "init"])
        .arg(&fresh)
        .stdout_closed()
        .stderr("")
        .run();
    assert!(fresh.join("common/functions").exists(), "store written");
    w.test()
        .args([
            "image",
            "create-like",
            "Web",
            "Web2",
            "--set",
            "hda_disk_size=10",
        ])
        .stdout_closed()
        .stderr("")
        .run();
    w.test()
        .args(["image", "edit", "Web2", "--set", "hda_disk_size=20"])
        .stdout_closed()
        .stderr("")
        .run();
    let conf = std::fs::read_to_string(w.store().join("Web2/image.conf")).unwrap();
    assert_eq!(conf, "hda_disk_size = 20\n");
    let archive = w.path().join("web2.tar.gz");
    w.test()
        .args(["image", "pack", "Web2", "-o"])
        .arg(&archive)
        .stdout_closed()
        .stderr("")
        .run();
    assert!(archive.exists(), "archive written");
    std::fs::remove_dir_all(w.store().join("Web2")).unwrap();
    w.test()
        .args(["image", "import"])
        .arg(&archive)
        .stdout_closed()
        .stderr("")
        .run();
    assert!(w.store().join("Web2/image.conf").exists(), "image imported");
}

#[test]
fn a_failure_still_exits_1_when_stdout_is_gone() {
    let w = store();
    w.test()
        .args(["image", "show", "Nope"])
        .stdout_closed()
        .status(1)
        .run();
}

#[test]
fn no_panic_when_stderr_is_gone() {
    let w = store();
    // Warnings and errors have nowhere to go; the exit status still tells.
    w.test()
        .args(["image", "show", "Nope"])
        .stderr_closed()
        .status(1)
        .run();
    w.test().args(["-v", "image", "list"]).stderr_closed().run();
}

#[test]
fn provision_finishes_its_run_when_its_readers_are_gone() {
    let w = sandbox();
    probe(&w, "");
    // -v echoes every script line to stderr while the script runs.
    w.test()
        .config()
        .args(["-v", "provision", "--vm", "p1", "--image", "Probe"])
        .stdout_closed()
        .stderr_closed()
        .run();
    assert!(w.path().join("conf/p1.cfg").exists(), "config installed");
    let log = std::fs::read_to_string(w.path().join("log/Probe/Probe_p1.log")).unwrap();
    assert!(log.contains("probe done"), "{log}");
    // A failing run still cleans up and exits 1.
    w.test()
        .config()
        .args(["-v", "provision", "--vm", "p2", "--image", "Probe"])
        .args(["--set", "mode=exit3"])
        .stdout_closed()
        .stderr_closed()
        .status(1)
        .run();
    assert!(
        !w.path().join("disks/p2.disk").exists(),
        "created disk removed"
    );
    assert!(!w.path().join("conf/p2.cfg").exists());
}

#[test]
fn a_real_shell_pipeline_into_head() {
    let w = store();
    for n in 0..40 {
        w.image(&format!("Img{n:02}"), "", "name = ''\n");
    }
    let o = std::process::Command::new("bash")
        .arg("-c")
        .arg(r#"set -o pipefail; "$0" --store "$1" image list | head -1; echo "status ${PIPESTATUS[0]}""#)
        .arg(env!("CARGO_BIN_EXE_convirt"))
        .arg(w.store())
        .env("HOME", w.home())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("NAME "), "{out}");
    assert!(out.ends_with("status 0\n"), "{out}");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "");
}

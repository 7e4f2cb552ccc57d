//! Whole outputs pinned with insta snapshots (review a change with `cargo insta review`):
//! `image list`, `image show`, `image validate`, the `provision --dry-run` plan and the
//! provision summary, as text and as `--json`. Paths that differ between runs are filtered:
//! the world's temp dir is `[TMP]`, a run's time `[SECS]`, a fresh MAC `[MAC]`, a UUID
//! `[UUID]`, the host name `[HOST]`.

use crate::World;
use crate::provision::{probe, sandbox};

/// A store with a PV image, an HVM template image and a broken one.
fn store() -> World {
    let w = World::new();
    w.image(
        "Web_Server",
        "# web server\nhda_disk_size = 4000\nVM_DISKS_DIR = '/srv/disks'\ncustomizable_options = ['hda_disk_size']\n",
        "name = ''\nmemory = 512\nkernel = '/boot/vmlinuz'\ndisk = ['file:$VM_DISKS_DIR/$VM_NAME.img,xvda,w']\nvif = ['bridge=$DEFAULT_BRIDGE']\n",
    );
    w.image(
        "_HVM_Template",
        "cdrom = '/dev/cdrom'\n",
        "import os\narch = os.uname()[4]\nname = ''\nmemory = 1024\nbuilder = 'hvm'\nextra = '$TYPO_VAR'\ncomputed_options = ['arch']\n",
    );
    w.image("Broken", "size = (\n", "name = ''\n");
    w
}

/// What differs between machines, users and runs: the built-in directories (root and
/// non-root defaults differ), a fresh MAC or UUID, convirt's version, a run's time, the
/// host's default bridge (detected, docs/records.md).
fn stable(t: crate::test::Test<'_>) -> crate::test::Test<'_> {
    t.filter(
        r"(DEFAULT_BRIDGE\s*= )'[^']*'(\s+# (?:\[customizable\] )?)[^\n]*",
        "${1}[BRIDGE]${2}[DETECTED]",
    )
    .filter(r#""what": "[^"]*""#, r#""what": "[DETECTED]""#)
    .filter(r"/var/cache/convirt|\[TMP\]/home/\.convirt", "[CACHE]")
    .filter(r"/etc/xen\b|\[CACHE\]/vm_configs", "[VM_CONF_DIR]")
    .filter(r"00:16:3e(:[0-9a-f]{2}){3}", "[MAC]")
    .filter(
        r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
        "[UUID]",
    )
    .filter(r"convirt \d+\.\d+\.\d+", "convirt [VERSION]")
    .filter(r"in \d+\.\d s", "in [SECS] s")
    .filter(r#""seconds": [0-9.e-]+"#, r#""seconds": [SECS]"#)
}

#[test]
fn image_list_text_and_json() {
    let w = store();
    let ran = w.test().args(["image", "list"]).stderr("").run();
    insta::assert_snapshot!("image_list", ran.stdout);
    let ran = w.test().args(["--json", "image", "list"]).stderr("").run();
    insta::assert_snapshot!("image_list_json", ran.stdout);
}

#[test]
fn image_show_text_and_json() {
    let w = store();
    let ran = stable(w.test().args(["image", "show", "Web_Server"]))
        .stderr("")
        .run();
    insta::assert_snapshot!("image_show", ran.stdout);
    let ran = stable(w.test().args([
        "--json",
        "--arch",
        "x86_64",
        "image",
        "show",
        "_HVM_Template",
    ]))
    .run();
    insta::assert_snapshot!("image_show_json", ran.stdout);
}

#[test]
fn image_validate_text_and_json() {
    let w = store();
    let ran = w.test().args(["image", "validate"]).status(1).run();
    insta::assert_snapshot!(
        "image_validate",
        format!("--- stdout\n{}--- stderr\n{}", ran.stdout, ran.stderr)
    );
    let ran = w
        .test()
        .args(["--json", "image", "validate", "--strict", "_HVM_Template"])
        .status(1)
        .stderr("")
        .run();
    insta::assert_snapshot!("image_validate_strict_json", ran.stdout);
}

#[test]
fn provision_dry_run_plan_text_and_json() {
    let w = sandbox();
    probe(&w, "");
    let t = |json: bool| {
        let mut t = w.test().config();
        if json {
            t = t.arg("--json");
        }
        stable(t.args(["provision", "--dry-run", "--vm", "web1", "--image", "Probe"]))
            .args(["--set", "xvda_disk_size=128"])
            .stderr("")
            .run()
    };
    insta::assert_snapshot!("provision_dry_run", t(false).stdout);
    insta::assert_snapshot!("provision_dry_run_json", t(true).stdout);
    assert!(!w.path().join("conf").exists(), "a dry run writes nothing");
}

#[test]
fn provision_summary_text_and_json() {
    let w = sandbox();
    probe(&w, "");
    let run = |json: bool, vms: &[&str]| {
        let mut t = w.test().config();
        if json {
            t = t.arg("--json");
        }
        t = t.args(["provision", "--image", "Probe", "--force"]);
        for vm in vms {
            t = t.args(["--vm", vm]);
        }
        stable(t).run()
    };
    let text = run(false, &["web1", "web2"]);
    insta::assert_snapshot!(
        "provision_summary",
        format!("--- stdout\n{}--- stderr\n{}", text.stdout, text.stderr)
    );
    insta::assert_snapshot!("provision_summary_json", run(true, &["web3"]).stdout);
}

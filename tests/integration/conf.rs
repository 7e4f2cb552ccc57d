//! The config language from the command line: conf eval, validate, show.

use crate::{World, fails_saying, stderr, stdout};

pub const ARCH_BLOCK: &str = "import os, re\narch = os.uname()[4]\nif re.search('64', arch):\n    arch_libdir = 'lib64'\nelse:\n    arch_libdir = 'lib'\ndevice_model = '/usr/' + arch_libdir + '/xen/bin/qemu-dm'\n";

fn local_libdir() -> &'static str {
    if std::env::consts::ARCH.contains("64") {
        "lib64"
    } else {
        "lib"
    }
}

#[test]
fn conf_eval_prints_arch_libdir_for_this_machine() {
    let w = World::new();
    let f = w.write(
        "t/vm_conf.template",
        &format!("{ARCH_BLOCK}name = ''\nmemory = 256\n"),
    );
    let ran = w
        .test()
        .bare()
        .args(["conf", "eval"])
        .arg(&f)
        .stderr("")
        .run();
    assert!(
        ran.stdout.contains(&format!(
            "arch_libdir  = '{}'    # computed, line ",
            local_libdir()
        )),
        "{}",
        ran.stdout
    );
    w.test()
        .bare()
        .args(["--arch", "i686", "conf", "eval"])
        .arg(&f)
        .stdout(
            "\
arch         = 'i686'    # computed, line 2
arch_libdir  = 'lib'    # computed, line 6
device_model = '/usr/lib/xen/bin/qemu-dm'    # computed, line 7
name         = ''    # line 8
memory       = 256    # line 9
",
        )
        .stderr("")
        .run();
}

#[test]
fn conf_eval_xm_keeps_the_block_and_xl_has_none() {
    let w = World::new();
    let f = w.write(
        "t/vm_conf.template",
        &format!(
            "# my template\n{ARCH_BLOCK}name = ''\nmemory = 256\nbuilder = 'hvm'\nvnc = True\n"
        ),
    );
    let o = w
        .cmd()
        .args(["conf", "eval", "--format", "xm", "--vm", "web1"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let xm = stdout(&o);
    assert!(xm.contains("# my template\n"), "{xm}");
    assert!(
        xm.contains(
            "if re.search('64', arch):\n    arch_libdir = 'lib64'\nelse:\n    arch_libdir = 'lib'\n"
        ),
        "{xm}"
    );
    assert!(
        xm.contains("device_model = '/usr/' + arch_libdir + '/xen/bin/qemu-dm'"),
        "{xm}"
    );
    assert!(xm.contains("name = 'web1'"), "{xm}");

    let o = w
        .cmd()
        .args(["conf", "eval", "--format", "xl", "--vm", "web1"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let xl = stdout(&o);
    for bad in ["import", "if ", "arch_libdir +", "builder"] {
        let code: Vec<&str> = xl.lines().filter(|l| !l.starts_with('#')).collect();
        assert!(!code.iter().any(|l| l.contains(bad)), "`{bad}` in:\n{xl}");
    }
    assert!(xl.contains("name = \"web1\"\n"), "{xl}");
    assert!(xl.contains("type = \"hvm\"\n"), "{xl}");
    assert!(xl.contains("vnc = 1\n"), "{xl}");
}

#[test]
fn set_outside_customizable_lists_allowed_keys() {
    let w = World::new();
    w.image("Img", "customizable_options = ['hda_disk_size', 'INSTALL_ISO']\nhda_disk_size = 10000\nsecret = 'x'\n", "name = ''\nmemory = 256\n");
    let o = w.run(&["render", "Img", "--vm", "v1", "--set", "secret=y"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("`secret` is not customizable"), "{err}");
    assert!(err.contains("INSTALL_ISO, hda_disk_size"), "{err}");
    let o = w.run(&[
        "render",
        "Img",
        "--vm",
        "v1",
        "--set",
        "hda_disk_size=20000",
        "--vm-set",
        "memory=512",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("memory = 512"), "{}", stdout(&o));
}

#[test]
fn computed_keys_cannot_be_set() {
    let w = World::new();
    w.image("Img", "", &format!("{ARCH_BLOCK}name = ''\n"));
    let o = w.run(&["render", "Img", "--vm", "v1", "--vm-set", "arch_libdir=lib"]);
    fails_saying(&o, "`arch_libdir` is computed");
}

#[test]
fn validate_reports_unresolved_variables_and_strict_fails() {
    let w = World::new();
    w.image(
        "Img",
        "admin_password = '$1$9qAFryp3$XmvqcFN/CJG4AC7jgyVE8'\n",
        "name = ''\ndisk = ['file:$VM_DISK_DIR/$VM_NAME.img,xvda,w']\nkernel = '/boot/vmlinuz'\n",
    );
    let o = w.run(&["image", "validate", "Img"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("warning: `$VM_DISK_DIR` in `disk` is not a known variable"),
        "{err}"
    );
    assert!(err.contains("did you mean `$VM_DISKS_DIR`?"), "{err}");
    assert!(
        !err.contains("XmvqcFN"),
        "the crypt hash must not warn: {err}"
    );
    let o = w.run(&["image", "validate", "Img", "--strict"]);
    fails_saying(&o, "error: `$VM_DISK_DIR`");
}

#[test]
fn show_marks_computed_and_customizable() {
    let w = World::new();
    w.image(
        "Img",
        "customizable_options = ['size']\nsize = 10\nfixed = 'a'\n",
        &format!("{ARCH_BLOCK}name = ''\nmemory = 256\n"),
    );
    let o = w.run(&["image", "show", "Img"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("About Img."), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("size") && l.contains("[customizable]")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.trim_start().starts_with("fixed") && !l.contains("customizable")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.trim_start().starts_with("arch_libdir") && l.contains("[computed]")),
        "{out}"
    );
    let o = w.run(&["--json", "image", "show", "Img"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["kind"], "PV");
    let vm = v["vm_conf"].as_array().unwrap();
    assert!(
        vm.iter()
            .any(|e| e["key"] == "device_model" && e["computed"] == true)
    );
}

#[test]
fn conf_eval_substitutes_the_files_own_fallback_variables() {
    let w = World::new();
    let f = w.write(
        "Img/image.conf",
        "VM_DISKS_DIR = '/srv/xen/disks'\nhda_image_src = '$VM_DISKS_DIR/base.img'\nbridge = '$DEFAULT_BRIDGE'\n",
    );
    w.test()
        .bare()
        .args(["conf", "eval"])
        .arg(&f)
        .stdout(
            "\
VM_DISKS_DIR  = '/srv/xen/disks'    # line 1
hda_image_src = '/srv/xen/disks/base.img'    # line 2
bridge        = 'xenbr0'    # line 3
",
        )
        .stderr("")
        .run();
}

#[test]
fn conf_eval_resolves_like_provisioning_with_site_variables() {
    let w = World::new();
    let cfg = w.write(
        "c.toml",
        "[variables]\nmemory = 1024\nDEFAULT_BRIDGE = 'br-lan'\nISO_DIR = '/srv/iso'\n",
    );
    let f = w.write(
        "Web/vm_conf.template",
        "name = ''\nmemory = 256\nvif = ['bridge=$DEFAULT_BRIDGE']\ncdrom = '$ISO_DIR/$IMAGE_NAME.iso'\n",
    );
    w.test()
        .arg("--config")
        .arg(&cfg)
        .args(["conf", "eval", "--vm", "web1"])
        .arg(&f)
        .stdout(
            "name   = 'web1'    # command line
memory = 1024    # site ([TMP]/c.toml)
vif    = ['bridge=br-lan']    # line 3
cdrom  = '/srv/iso/Web.iso'    # line 4
",
        )
        .stderr("")
        .run();
}

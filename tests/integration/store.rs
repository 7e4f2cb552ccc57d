//! The image store: init, listing, broken images.

use crate::{World, stderr, stdout};

#[test]
fn init_then_list_shows_exactly_the_shipped_images() {
    let w = World::new();
    let s = w.path().join("s");
    let o = w.cmd().args(["store", "init"]).arg(&s).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = w
        .cmd()
        .arg("--store")
        .arg(&s)
        .args(["image", "list"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let names: Vec<String> = stdout(&o)
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        names,
        [
            "Debian_12_Minimal",
            "Fedora_Core_Install",
            "Linux_CD_Install",
            "Windows_CD_Install"
        ]
    );
    assert!(!stdout(&o).contains("broken"), "{}", stdout(&o));

    let o = w
        .cmd()
        .arg("--store")
        .arg(&s)
        .args(["--json", "image", "list"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0]["name"], "Debian_12_Minimal");
    assert_eq!(rows[0]["kind"], "PVH");
    assert_eq!(rows[2]["name"], "Linux_CD_Install");
    assert_eq!(rows[2]["kind"], "HVM");
    assert_eq!(rows[1]["kind"], "PV");
    assert!(
        rows.iter()
            .all(|r| r["broken"].is_null() && !r["title"].as_str().unwrap().is_empty())
    );
}

#[test]
fn init_refuses_a_non_empty_dir_and_force_keeps_user_images() {
    let w = World::new();
    w.image("Mine", "a = 1\n", "name = ''\nmemory = 128\n");
    let o = w
        .cmd()
        .args(["store", "init"])
        .arg(w.store())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("exists and is not empty"),
        "{}",
        stderr(&o)
    );
    assert!(
        !w.store().join("common").exists(),
        "nothing written on refusal"
    );

    let o = w
        .cmd()
        .args(["store", "init", "--force"])
        .arg(w.store())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(w.store().join("Mine/image.conf")).unwrap(),
        "a = 1\n"
    );
    assert!(w.store().join("common/functions").is_file());
}

#[test]
fn default_store_is_initialised_when_nothing_is_configured() {
    let w = World::new();
    let o = w.as_user().args(["image", "list"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("wrote the shipped store there"),
        "{}",
        stderr(&o)
    );
    assert!(
        w.home()
            .join(".convirt/image_store/Linux_CD_Install/vm_conf.template")
            .is_file()
    );
    assert!(stdout(&o).contains("Linux_CD_Install"));
}

#[test]
fn a_broken_image_is_listed_with_file_and_line_and_hides_nothing() {
    let w = World::new();
    w.image("Good", "x = 1\n", "name = ''\nmemory = 256\n");
    w.image("Bad", "ok = 1\nsize = [1, 2\n\nother = 3\n", "name = ''\n");
    w.image("Missing", "x = 1\n", "name = ''\n");
    std::fs::remove_file(w.store().join("Missing/vm_conf.template")).unwrap();
    let o = w.run(&["image", "list"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = w.filter(&stdout(&o));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(
        lines[1].starts_with("Bad ") && lines[1].contains("broken: [TMP]/store/Bad/image.conf:2:"),
        "{out}"
    );
    assert!(
        lines[2].starts_with("Good ") && lines[2].contains("PV") && lines[2].contains("Good title"),
        "{out}"
    );
    assert!(
        lines[3].starts_with("Missing ") && lines[3].contains("`vm_conf.template` is missing"),
        "{out}"
    );
}

#[test]
fn image_store_conf_excludes_and_templates() {
    let w = World::new();
    w.image("Shown", "", "name = ''\n");
    w.image("Hidden", "", "name = ''\n");
    w.image("_tmpl_", "", "name = ''\n");
    w.write("store/image_store.conf", "excludes = ['Hidden']\n");
    let o = w.run(&["--json", "image", "list"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let names: Vec<(&str, bool)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap(),
                r["template"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(names, [("Shown", false), ("_tmpl_", true)]);
}

/// A store modelled on the images ConVirt 2.1 shipped (`tests/fixtures/stores/convirt21`):
/// the `import`/`if` arch block, `$AUTOGEN_MAC`, `$DEFAULT_BRIDGE`, a cdrom disk, the
/// directories defined in image.conf, `provision_timeout`, commented `customizable_options`.
fn convirt21() -> std::path::PathBuf {
    crate::repo().join("tests/fixtures/stores/convirt21")
}

#[test]
fn convirt21_store_validates_strictly_and_lists_its_images() {
    let w = World::new();
    let o = w
        .cmd()
        .arg("--store")
        .arg(convirt21())
        .args(["image", "validate", "--strict"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "ok      CentOS_PV_Install\nok      Fedora_PV_Install\nok      Linux_CD_Install\nok      Windows_CD_Install\n"
    );
    assert_eq!(stderr(&o), "", "no warning either");

    let o = w
        .cmd()
        .arg("--store")
        .arg(convirt21())
        .args(["--json", "image", "list"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows: Vec<(&str, &str)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["name"].as_str().unwrap(), r["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(
        rows,
        [
            ("CentOS_PV_Install", "PV"),
            ("Fedora_PV_Install", "PV"),
            ("Linux_CD_Install", "HVM"),
            ("Windows_CD_Install", "HVM")
        ]
    );
}

#[test]
fn convirt21_provision_script_reads_its_values_without_running_them() {
    let w = World::new();
    let image_conf = w.write(
        "in/image.conf",
        "KERNEL_TYPE = 'FC8_x86_32_PAE'\nmemory = 128\n",
    );
    let vm_conf = w.write(
        "in/vm.conf",
        "# literal format\nname = 'web1'\nmemory = 256\ndisk = ['file:/srv/web1.img,xvda,w']\nevil = '$(touch pwned) `touch pwned` it\\x27s'\n",
    );
    let args = w.write("in/args", "VM_NAME='web1'\n");
    let log = w.path().join("web1.log");
    let o = std::process::Command::new("bash")
        .arg(convirt21().join("Fedora_PV_Install/provision.sh"))
        .arg("-x")
        .arg(&vm_conf)
        .arg("-p")
        .arg(&args)
        .arg("-s")
        .arg(convirt21())
        .args(["-i", "Fedora_PV_Install", "-l"])
        .arg(&log)
        .arg("-c")
        .arg(&image_conf)
        .current_dir(w.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("VM 'web1' with 256 MB of memory, disks: ['file:/srv/web1.img,xvda,w']"),
        "the VM config wins over image.conf: {logged}"
    );
    assert!(!w.path().join("pwned").exists(), "a value was executed");
}

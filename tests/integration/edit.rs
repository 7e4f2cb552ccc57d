//! `image edit` and `image create-like`: round trips checked with the real `diff -u`, and
//! failures that leave every byte of the store as it was.

use crate::{World, fails_saying, stderr, stdout, tree};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A commented image.conf in the style of the shipped images.
const IMAGE_CONF: &str = "\
# Linux CD install: provisioning parameters.
# Sizes are in MB.

# The disk the installer writes to
hda_disk_size = 10000   # MB
hda_disk_type = 'VBD'

VM_DISKS_DIR = '/var/cache/convirt/vm_disks'
cdrom_path = '/dev/cdrom'

custom_list = []
customizable_options = ['hda_disk_size', 'cdrom_path']
";

/// A VM template with imports, an `if` block, computed expressions and a multi-line list.
const VM_TEMPLATE: &str = "\
# Xen HVM template
import os, re
arch = os.uname()[4]
if re.search('64', arch):
    arch_libdir = 'lib64'
else:
    arch_libdir = 'lib'
device_model = '/usr/' + arch_libdir + '/xen/bin/qemu-dm'

kernel = '/usr/lib/xen/boot/hvmloader'
builder = 'hvm'
image_name = 'Linux_CD'
name = ''
memory = 256
disk = [
    'file:$VM_DISKS_DIR/$VM_NAME.disk.xm,hda,w',   # the new disk
    'phy:$cdrom_path,hdc:cdrom,r',
]
vif = ['mac=$AUTOGEN_MAC, bridge=$DEFAULT_BRIDGE']
vnc = 1
computed_options = ['arch', 'arch_libdir', 'device_model']
";

fn world() -> World {
    let w = World::new();
    w.image("Linux_CD", IMAGE_CONF, VM_TEMPLATE);
    w
}

/// `diff -u` with fixed labels: exactly what a reviewer of the change would see.
fn diff_u(before: &[u8], after: &Path, w: &World) -> String {
    let old = w.path().join("before.tmp");
    std::fs::write(&old, before).unwrap();
    let o = Command::new("diff")
        .args(["-u", "--label", "before", "--label", "after"])
        .arg(&old)
        .arg(after)
        .output()
        .expect("run diff");
    assert!(matches!(o.status.code(), Some(0 | 1)), "{}", stderr(&o));
    stdout(&o)
}

fn read(p: PathBuf) -> Vec<u8> {
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn edit_set_on_a_commented_file_changes_one_line() {
    let w = world();
    let conf = w.store().join("Linux_CD/image.conf");
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o640)).unwrap();
    let template_before = read(w.store().join("Linux_CD/vm_conf.template"));
    let o = w.run(&["image", "edit", "Linux_CD", "--set", "hda_disk_size=20000"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "image.conf:5: hda_disk_size: 10000 -> 20000\n");
    assert_eq!(
        diff_u(IMAGE_CONF.as_bytes(), &conf, &w),
        "\
--- before
+++ after
@@ -2,7 +2,7 @@
 # Sizes are in MB.
 
 # The disk the installer writes to
-hda_disk_size = 10000   # MB
+hda_disk_size = 20000   # MB
 hda_disk_type = 'VBD'
 
 VM_DISKS_DIR = '/var/cache/convirt/vm_disks'
"
    );
    assert_eq!(
        std::fs::metadata(&conf).unwrap().permissions().mode() & 0o7777,
        0o640
    );
    assert_eq!(
        read(w.store().join("Linux_CD/vm_conf.template")),
        template_before
    );
    let o = w.run(&["image", "validate", "Linux_CD"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "ok      Linux_CD\n");
    let o = w.run(&["--json", "image", "show", "Linux_CD"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let size = v["image_conf"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == "hda_disk_size")
        .unwrap();
    assert_eq!(size["value"], 20000);
}

#[test]
fn edit_vm_template_keeps_imports_if_blocks_and_computed_lines() {
    let w = world();
    let t = w.store().join("Linux_CD/vm_conf.template");
    let o = w.run(&[
        "image",
        "edit",
        "Linux_CD",
        "--vm-set",
        "memory=1024",
        "--vm-set",
        "disk=['file:/d/$VM_NAME.img,hda,w']",
        "--vm-set",
        "vcpus=2",
        "--vm-unset",
        "vnc",
        "--vm-set",
        "computed_options=['arch', 'arch_libdir']",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "\
vm_conf.template:14: memory: 256 -> 1024
vm_conf.template:15: disk: [ 'file:$VM_DISKS_DIR/$VM_NAME.disk.xm,hda,w', # the new disk 'phy:$c... -> ['file:/d/$VM_NAME.img,hda,w']
vm_conf.template:18: vcpus: added 2
vm_conf.template:17: computed_options: ['arch', 'arch_libdir', 'device_model'] -> ['arch', 'arch_libdir']
vm_conf.template:20: vnc: removed (was 1)
"
    );
    assert_eq!(
        diff_u(VM_TEMPLATE.as_bytes(), &t, &w),
        "\
--- before
+++ after
@@ -11,11 +11,8 @@
 builder = 'hvm'
 image_name = 'Linux_CD'
 name = ''
-memory = 256
-disk = [
-    'file:$VM_DISKS_DIR/$VM_NAME.disk.xm,hda,w',   # the new disk
-    'phy:$cdrom_path,hdc:cdrom,r',
-]
+memory = 1024
+disk = ['file:/d/$VM_NAME.img,hda,w']
 vif = ['mac=$AUTOGEN_MAC, bridge=$DEFAULT_BRIDGE']
-vnc = 1
-computed_options = ['arch', 'arch_libdir', 'device_model']
+computed_options = ['arch', 'arch_libdir']
+vcpus = 2
"
    );
    let o = w.run(&["image", "validate", "Linux_CD"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn edit_keeps_crlf_and_bom() {
    let w = World::new();
    let conf = "\u{feff}# CRLF file\r\nhda_disk_size = 10000  # MB\r\nlst = [\r\n  'a',\r\n]\r\n";
    w.image("Win", conf, "name = ''\r\nmemory = 256\r\n");
    let o = w.run(&[
        "image",
        "edit",
        "Win",
        "--set",
        "hda_disk_size=20000",
        "--set",
        "lst=['b']",
        "--set",
        "extra='x'",
        "--vm-unset",
        "memory",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        String::from_utf8(read(w.store().join("Win/image.conf"))).unwrap(),
        "\u{feff}# CRLF file\r\nhda_disk_size = 20000  # MB\r\nlst = ['b']\r\nextra = 'x'\r\n"
    );
    assert_eq!(
        read(w.store().join("Win/vm_conf.template")),
        b"name = ''\r\n"
    );
}

/// Each case (`command`, then the case's arguments) exits with status 1 saying the case's
/// text, and leaves the store as `before`.
fn each_refused(
    w: &World,
    command: &[&str],
    cases: &[(&[&str], &str)],
    before: &std::collections::BTreeMap<String, String>,
) {
    for (args, want) in cases {
        let all = [command, args].concat();
        let o = w.run(&all);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        let err = w.filter(&stderr(&o));
        assert!(err.contains(want), "{args:?}:\n{err}");
        assert_eq!(&tree(&w.store()), before, "{args:?} changed the store");
    }
}

#[test]
fn edit_refusals_write_nothing() {
    let w = world();
    w.write("store/Linux_CD/custom_scripts/net/S10net", "#!/bin/sh\n");
    let before = tree(&w.store());
    let cases: &[(&[&str], &str)] = &[
        (
            &["--vm-set", "arch_libdir=lib"],
            "error: `arch_libdir` is computed for the target host",
        ),
        (
            &["--vm-set", "arch_libdir=lib", "--force"],
            "error: `arch_libdir` cannot be set: it is only assigned inside the `if` block at line 4\n --> [TMP]/store/Linux_CD/vm_conf.template:5:5",
        ),
        (
            &["--vm-unset", "arch_libdir"],
            "error: `arch_libdir` cannot be unset: it is assigned inside the `if` block at line 4",
        ),
        (
            &["--unset", "hda_disk_sise"],
            "error: `hda_disk_sise` is not set in `[TMP]/store/Linux_CD/image.conf`",
        ),
        (
            &["--set", "customizable_options=hda_disk_size"],
            "error: `image.conf` would not load after the edit",
        ),
        (
            &["--vm-unset", "arch"],
            "error: `vm_conf.template` would not load after the edit",
        ),
        // One good change and one bad: neither file is written.
        (
            &["--set", "hda_disk_size=1", "--vm-set", "device_model='/x'"],
            "error: `device_model` is computed for the target host",
        ),
        (
            &["--set", "a=1", "--set", "a=2"],
            "`a` is changed more than once",
        ),
    ];
    each_refused(&w, &["image", "edit", "Linux_CD"], cases, &before);
    // Images that are not there, or names that are not names.
    for (image, want) in [
        ("Nope", "error: no image `Nope` in store"),
        ("../etc", "error: image name `../etc` contains `.`"),
    ] {
        let o = w.run(&["image", "edit", image, "--set", "a=1"]);
        fails_saying(&o, want);
    }
    // Usage errors: exit 2.
    for args in [
        &["image", "edit", "Linux_CD"][..],
        &["image", "edit", "Linux_CD", "--set", "novalue"],
        &["image", "edit", "Linux_CD", "--unset", "not a key"],
        &["image", "edit", "Linux_CD", "--set", "if=1"],
    ] {
        let o = w.run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
    assert_eq!(tree(&w.store()), before);
}

#[test]
fn edit_with_force_writes_a_computed_key_and_unchanged_values_write_nothing() {
    let w = world();
    let t = w.store().join("Linux_CD/vm_conf.template");
    let o = w.run(&[
        "image",
        "edit",
        "Linux_CD",
        "--vm-set",
        "device_model=/usr/lib/xen/bin/qemu-dm",
        "--force",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        diff_u(VM_TEMPLATE.as_bytes(), &t, &w),
        "\
--- before
+++ after
@@ -5,7 +5,7 @@
     arch_libdir = 'lib64'
 else:
     arch_libdir = 'lib'
-device_model = '/usr/' + arch_libdir + '/xen/bin/qemu-dm'
+device_model = '/usr/lib/xen/bin/qemu-dm'
 
 kernel = '/usr/lib/xen/boot/hvmloader'
 builder = 'hvm'
"
    );
    let before = tree(&w.store());
    let o = w.run(&["image", "edit", "Linux_CD", "--vm-set", "memory=256"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "vm_conf.template:14: memory: unchanged (256)\n");
    assert!(stderr(&o).contains("nothing was written"), "{}", stderr(&o));
    assert_eq!(tree(&w.store()), before);
}

#[test]
fn edit_json_lists_the_changes() {
    let w = world();
    let o = w.run(&[
        "--json",
        "image",
        "edit",
        "Linux_CD",
        "--set",
        "hda_disk_size=20000",
        "--unset",
        "custom_list",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v["image"], "Linux_CD");
    let files = v["files"].as_array().unwrap();
    assert_eq!(files[0]["file"], "image.conf");
    assert_eq!(files[0]["written"], true);
    assert_eq!(files[1]["written"], false);
    assert_eq!(
        files[0]["changes"],
        serde_json::json!([
            {"key": "hda_disk_size", "action": "changed", "line": 5, "old": "10000", "new": "20000"},
            {"key": "custom_list", "action": "removed", "line": 11, "old": "[]", "new": null},
        ])
    );
}

#[test]
fn edit_writes_through_a_link_inside_the_image_and_refuses_one_outside() {
    let w = world();
    let img = w.store().join("Linux_CD");
    std::fs::create_dir(img.join("conf")).unwrap();
    std::fs::rename(img.join("image.conf"), img.join("conf/image.conf")).unwrap();
    std::os::unix::fs::symlink("conf/image.conf", img.join("image.conf")).unwrap();
    let o = w.run(&["image", "edit", "Linux_CD", "--set", "hda_disk_size=1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_link(img.join("image.conf")).unwrap(),
        PathBuf::from("conf/image.conf"),
        "the link stays a link"
    );
    let text = String::from_utf8(read(img.join("conf/image.conf"))).unwrap();
    assert!(text.contains("\nhda_disk_size = 1   # MB\n"), "{text}");

    let shared = w.write("shared/vm_conf.template", VM_TEMPLATE);
    std::fs::remove_file(img.join("vm_conf.template")).unwrap();
    std::os::unix::fs::symlink(&shared, img.join("vm_conf.template")).unwrap();
    let before = tree(w.path());
    let o = w.run(&[
        "image",
        "edit",
        "Linux_CD",
        "--vm-set",
        "memory=1",
        "--set",
        "hda_disk_size=2",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        w.filter(&stderr(&o)).contains(
            "error: `[TMP]/store/Linux_CD/vm_conf.template` is a symlink to `[TMP]/shared/vm_conf.template`, outside the image"
        ),
        "{}",
        stderr(&o)
    );
    assert_eq!(tree(w.path()), before);
}

fn dir_listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `diff -ru` of two images of the store, header dates dropped.
fn diff_images(w: &World, a: &str, b: &str) -> String {
    let o = Command::new("diff")
        .args(["-ru", "--no-dereference", a, b])
        .current_dir(w.store())
        .output()
        .expect("run diff");
    assert!(matches!(o.status.code(), Some(0 | 1)), "{}", stderr(&o));
    stdout(&o)
        .lines()
        .map(|l| {
            if l.starts_with("--- ") || l.starts_with("+++ ") {
                l.split('\t').next().unwrap_or(l)
            } else {
                l
            }
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// An image with more than the four files: scripts with modes, a private directory, links.
fn rich_world() -> World {
    let w = world();
    w.write_exec(
        "store/Linux_CD/custom_scripts/net/S10net",
        "#!/bin/sh\necho net\n",
    );
    let private = w.write("store/Linux_CD/private/notes.txt", "secret\n");
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(
        private.parent().unwrap(),
        std::fs::Permissions::from_mode(0o750),
    )
    .unwrap();
    std::os::unix::fs::symlink("../image.conf", w.store().join("Linux_CD/private/conf")).unwrap();
    std::os::unix::fs::symlink("custom_scripts/net", w.store().join("Linux_CD/net")).unwrap();
    w
}

#[test]
fn create_like_copies_everything_and_changes_only_image_name() {
    let w = rich_world();
    let src_before = tree(&w.store().join("Linux_CD"));
    let o = w.run(&["image", "create-like", "Linux_CD", "Linux_Web"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        w.filter(&stdout(&o)),
        "created image `Linux_Web` from `Linux_CD` in `[TMP]/store/Linux_Web`\nvm_conf.template:12: image_name: 'Linux_CD' -> 'Linux_Web'\n"
    );
    assert_eq!(tree(&w.store().join("Linux_CD")), src_before);
    assert_eq!(
        diff_images(&w, "Linux_CD", "Linux_Web"),
        "\
diff -ru --no-dereference Linux_CD/vm_conf.template Linux_Web/vm_conf.template
--- Linux_CD/vm_conf.template
+++ Linux_Web/vm_conf.template
@@ -9,7 +9,7 @@
 
 kernel = '/usr/lib/xen/boot/hvmloader'
 builder = 'hvm'
-image_name = 'Linux_CD'
+image_name = 'Linux_Web'
 name = ''
 memory = 256
 disk = [
"
    );
    // Same modes, same links: the snapshots differ only in the template.
    let mut new = tree(&w.store().join("Linux_Web"));
    let mut old = src_before.clone();
    new.remove("vm_conf.template");
    old.remove("vm_conf.template");
    assert_eq!(new, old);
    assert_eq!(new["private"], "dir 750", "directory modes are kept");
    assert_eq!(new["net"], "link -> custom_scripts/net");
    assert_eq!(
        dir_listing(&w.store()),
        ["Linux_CD", "Linux_Web"],
        "no temporary directory is left"
    );
    let o = w.run(&["image", "validate", "Linux_Web"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn create_like_applies_edits_and_title() {
    let w = world();
    let o = w.run(&[
        "image",
        "create-like",
        "Linux_CD",
        "Web",
        "--set",
        "hda_disk_size=5000",
        "--vm-set",
        "memory=512",
        "--title",
        "Web server <install>",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        w.filter(&stdout(&o)),
        "\
created image `Web` from `Linux_CD` in `[TMP]/store/Web`
image.conf:5: hda_disk_size: 10000 -> 5000
vm_conf.template:12: image_name: 'Linux_CD' -> 'Web'
vm_conf.template:14: memory: 256 -> 512
description.htm: title: Web server <install>
"
    );
    assert_eq!(
        diff_images(&w, "Linux_CD", "Web"),
        "\
diff -ru --no-dereference Linux_CD/description.htm Web/description.htm
--- Linux_CD/description.htm
+++ Web/description.htm
@@ -1 +1 @@
-<body><span>Linux_CD title</span><br/>About Linux_CD.</body>
\\ No newline at end of file
+<body><span>Web server &lt;install&gt;</span><br/>About Linux_CD.</body>
\\ No newline at end of file
diff -ru --no-dereference Linux_CD/image.conf Web/image.conf
--- Linux_CD/image.conf
+++ Web/image.conf
@@ -2,7 +2,7 @@
 # Sizes are in MB.
 
 # The disk the installer writes to
-hda_disk_size = 10000   # MB
+hda_disk_size = 5000   # MB
 hda_disk_type = 'VBD'
 
 VM_DISKS_DIR = '/var/cache/convirt/vm_disks'
diff -ru --no-dereference Linux_CD/vm_conf.template Web/vm_conf.template
--- Linux_CD/vm_conf.template
+++ Web/vm_conf.template
@@ -9,9 +9,9 @@
 
 kernel = '/usr/lib/xen/boot/hvmloader'
 builder = 'hvm'
-image_name = 'Linux_CD'
+image_name = 'Web'
 name = ''
-memory = 256
+memory = 512
 disk = [
     'file:$VM_DISKS_DIR/$VM_NAME.disk.xm,hda,w',   # the new disk
     'phy:$cdrom_path,hdc:cdrom,r',
"
    );
    let o = w.run(&["--json", "image", "list"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["title"], "Linux_CD title");
    assert_eq!(v[1]["name"], "Web");
    assert_eq!(v[1]["title"], "Web server <install>");
}

#[test]
fn create_like_without_image_name_key_and_with_crlf() {
    let w = World::new();
    w.image("Win", "a = 1\r\n", "\u{feff}name = ''\r\nmemory = 256\r\n");
    let o = w.run(&[
        "image",
        "create-like",
        "Win",
        "Win2",
        "--vm-set",
        "memory=128",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        String::from_utf8(read(w.store().join("Win2/vm_conf.template"))).unwrap(),
        "\u{feff}name = ''\r\nmemory = 128\r\n",
        "no image_name is added; CRLF and BOM stay"
    );
}

#[test]
fn create_like_refusals_leave_the_store_as_it_was() {
    let w = rich_world();
    w.image("Other", "a = 1\n", "name = ''\n");
    w.image("Broken", "a = (\n", "name = ''\n");
    let before = tree(&w.store());
    let cases: &[(&[&str], &str)] = &[
        (
            &["Linux_CD", "Other"],
            "error: image `Other` already exists",
        ),
        (
            &["Linux_CD", "Linux_CD"],
            "error: image `Linux_CD` already exists",
        ),
        (
            &["Linux_CD", "bad.name"],
            "error: image name `bad.name` contains `.`",
        ),
        (
            &["Linux_CD", "../x"],
            "error: image name `../x` contains `.`",
        ),
        (&["Linux_CD", "a b"], "error: image name `a b` contains ` `"),
        (
            &["Linux_CD", "common"],
            "`common` is not an image name in this store",
        ),
        (&["Nope", "New"], "error: no image `Nope` in store"),
        (
            &["Broken", "New"],
            "error: image `Broken` does not load, so it cannot be copied",
        ),
        (
            &["Linux_CD", "New", "--set", "customizable_options=x"],
            "error: `image.conf` would not load after the edit\n --> [TMP]/store/New/image.conf",
        ),
        (
            &["Linux_CD", "New", "--vm-set", "arch='i686'"],
            "error: `arch` is computed for the target host",
        ),
        (
            &["Linux_CD", "New", "--vm-set", "arch_libdir=lib"],
            "error: `arch_libdir` is computed for the target host",
        ),
        (&["Linux_CD", "New", "--title", "two\nlines"], "one line"),
    ];
    each_refused(&w, &["image", "create-like"], cases, &before);
}

#[test]
fn create_like_refuses_links_out_of_the_image_and_special_files() {
    let w = world();
    std::os::unix::fs::symlink("/etc/passwd", w.store().join("Linux_CD/passwd")).unwrap();
    std::os::unix::fs::symlink("../../outside", w.store().join("Linux_CD/up")).unwrap();
    let fifo = w.store().join("Linux_CD/pipe");
    let ok = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(ok.success());
    let before = tree(&w.store());
    let o = w.run(&["image", "create-like", "Linux_CD", "New"]);
    assert_eq!(o.status.code(), Some(1));
    let err = w.filter(&stderr(&o));
    for want in [
        "`[TMP]/store/Linux_CD/passwd` is a symlink to `/etc/passwd`, outside the image",
        "`[TMP]/store/Linux_CD/up` is a symlink to `../../outside`, outside the image",
        "`[TMP]/store/Linux_CD/pipe` is a FIFO",
    ] {
        assert!(err.contains(want), "{want}:\n{err}");
    }
    assert_eq!(tree(&w.store()), before);
}

#[test]
fn create_like_turns_absolute_links_inside_the_image_relative() {
    let w = world();
    let src = w.store().join("Linux_CD");
    std::os::unix::fs::symlink(src.join("image.conf"), src.join("conf")).unwrap();
    let o = w.run(&["--json", "image", "create-like", "Linux_CD", "New"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["image"], "New");
    assert_eq!(v["from"], "Linux_CD");
    assert_eq!(v["files"][1]["changes"][0]["key"], "image_name");
    assert_eq!(
        std::fs::read_link(w.store().join("New/conf")).unwrap(),
        PathBuf::from("image.conf")
    );
}

#[test]
fn create_like_can_start_from_the_example_skeleton() {
    let w = World::new();
    w.image("example", "a = 1\n", "name = ''\nimage_name = 'example'\n");
    let o = w.run(&["image", "create-like", "example", "Mine"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        read(w.store().join("Mine/vm_conf.template")),
        b"name = ''\nimage_name = 'Mine'\n"
    );
    let o = w.run(&["image", "list"]);
    let names: Vec<String> = stdout(&o)
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .map(String::from)
        .collect();
    assert_eq!(names, ["Mine"]);
}

//! Issue #18 from the attacker's side: each test is what a local user without root would
//! try against a convirt that root (or another user) runs, with canary files that must
//! come out unread, unchanged and undeleted. Where the attacker acts, it acts for real as
//! `nobody` (`setpriv`), and convirt's own runs use umask 000 where that matters.

use crate::provision::{probe, sandbox};
use crate::{World, fails_saying, provision_args, provision_script, stderr, stdout};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const NOBODY: u32 = 65534;

fn root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// `argv` run as `nobody` (only as root; the tests that need it return early otherwise).
fn as_nobody(argv: &[&str]) -> Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(argv)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The world's directory reachable by `nobody` (a temp dir is 0700).
fn open_up(w: &World) {
    std::fs::set_permissions(w.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

/// `conv_cmd` with umask 000, as a careless admin's shell has it.
fn umask_000(mut c: Command) -> Command {
    unsafe {
        c.pre_exec(|| {
            libc::umask(0);
            Ok(())
        });
    }
    c
}

fn ok(o: &Output) {
    assert!(o.status.success(), "{}{}", stdout(o), stderr(o));
}

/// A canary file outside everything convirt was configured with.
fn canary(w: &World, rel: &str) -> std::path::PathBuf {
    w.write(rel, "canary: must survive\n")
}

fn canary_intact(p: &Path) {
    assert_eq!(
        std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
        "canary: must survive\n",
        "{}",
        p.display()
    );
}

/// An image with a disk of every file type the shipped functions create.
fn disks_image(w: &World) {
    w.write(
        "store/Disks/image.conf",
        "xvda_disk_create = 'yes'\nxvda_disk_size = 8\nxvda_disk_type = 'VBD'\nxvda_disk_fs_type = 'ext4'\n\
         xvdb_disk_create = 'yes'\nxvdb_disk_size = 8\nxvdb_disk_type = 'qcow2'\n\
         xvdc_disk_create = 'yes'\nxvdc_disk_size = 8\nxvdc_disk_type = 'vmdk'\n\
         xvdd_disk_create = 'yes'\nxvdd_disk_size = 8\nxvdd_disk_type = 'VBD'\nxvdd_disk_fs_type = 'swap'\n",
    );
    w.write(
        "store/Disks/vm_conf.template",
        "name = ''\nmemory = 256\nkernel = '/usr/lib/xen/boot/pv-grub.gz'\n\
         disk = ['file:$VM_DISKS_DIR/$VM_NAME.raw,xvda,w', 'file:$VM_DISKS_DIR/$VM_NAME.qcow2,xvdb,w', 'file:$VM_DISKS_DIR/$VM_NAME.vmdk,xvdc,w', 'file:$VM_DISKS_DIR/$VM_NAME.swap,xvdd,w']\n",
    );
    w.write_exec(
        "store/Disks/provision.sh",
        &provision_script(true, "provision_disks\n"),
    );
    w.write("store/Disks/description.htm", "<body>Disks</body>");
}

#[test]
fn a_fresh_disk_of_every_type_is_owner_only_even_with_umask_000() {
    let w = sandbox();
    disks_image(&w);
    let o = umask_000(w.conv_cmd(&provision_args("d", "Disks", &[])))
        .output()
        .unwrap();
    ok(&o);
    for ext in ["raw", "qcow2", "vmdk", "swap"] {
        let disk = w.path().join(format!("disks/d.{ext}"));
        assert_eq!(mode(&disk), 0o600, "{}", disk.display());
    }
    // Nothing convirt or the script made is writable by others, whatever the umask.
    for rel in [
        "disks",
        "conf",
        "log",
        "log/Disks",
        "work",
        "state",
        "state/vms",
    ] {
        let m = mode(&w.path().join(rel));
        assert_eq!(m & 0o022, 0, "{rel}: {m:o}");
    }
    assert_eq!(mode(&w.path().join("conf/d.cfg")), 0o644);
    assert_eq!(mode(&w.path().join("log/Disks/Disks_d.log")), 0o640);
    if !root() {
        return;
    }
    // The attack: another local user reads the guest's disks.
    open_up(&w);
    for ext in ["raw", "qcow2", "vmdk", "swap"] {
        let disk = w.path().join(format!("disks/d.{ext}"));
        let o = as_nobody(&["head", "-c", "1", disk.to_str().unwrap()]);
        assert!(!o.status.success(), "nobody read {}", disk.display());
        assert!(stderr(&o).contains("Permission denied"), "{}", stderr(&o));
    }
}

#[test]
fn a_config_holding_a_secret_is_owner_only_and_unknown_secret_keys_are_not_in_comments() {
    let w = sandbox();
    probe(&w, "");
    let pw = w.write("vnc.txt", "hunter2hunter2\n");
    let o = w.conv(&provision_args(
        "v",
        "Probe",
        &[
            "--vm-set-file",
            &format!("vncpasswd={}", pw.display()),
            "--vm-set",
            "backup_token=tok-3141592653",
        ],
    ));
    ok(&o);
    let cfg = w.path().join("conf/v.cfg");
    assert_eq!(mode(&cfg), 0o600);
    let text = std::fs::read_to_string(&cfg).unwrap();
    // xl needs the VNC password itself; a key xl does not know is only a comment, masked.
    assert!(text.contains("vncpasswd = \"hunter2hunter2\"\n"), "{text}");
    assert!(!text.contains("tok-3141592653"), "{text}");
    assert!(text.contains("backup_token = ********"), "{text}");
}

/// An archive holding the image `Wide`, everything mode 0777, whose script writes `mark`.
fn wide_archive(w: &World, mark: &Path) -> std::path::PathBuf {
    let path = w.path().join("wide.tgz");
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&path).unwrap(),
        flate2::Compression::fast(),
    );
    let mut b = tar::Builder::new(gz);
    let script = format!("#!/bin/bash\necho ran > '{}'\n", mark.display());
    let files: [(&str, &[u8]); 4] = [
        ("Wide/", b""),
        ("Wide/image.conf", b"x = 1\n"),
        ("Wide/vm_conf.template", b"name = ''\nmemory = 128\n"),
        ("Wide/provision.sh", script.as_bytes()),
    ];
    for (p, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_path(p).unwrap();
        h.set_entry_type(if p.ends_with('/') {
            tar::EntryType::Directory
        } else {
            tar::EntryType::Regular
        });
        h.set_mode(0o777);
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap();
    path
}

#[test]
fn an_imported_script_cannot_be_edited_by_others_and_a_writable_one_is_never_run() {
    let w = sandbox();
    let mark = w.path().join("mark");
    let a = wide_archive(&w, &mark);
    let o = w.conv(&["image", "import", a.to_str().unwrap()]);
    ok(&o);
    let img = w.store().join("Wide");
    // 0777 everywhere in the archive: directories and executables 0755 (image.conf had
    // execute bits too).
    for p in [&img, &img.join("provision.sh"), &img.join("image.conf")] {
        assert_eq!(mode(p), 0o755, "{}", p.display());
    }
    if root() {
        // The attack: nobody edits the script root runs next.
        open_up(&w);
        let o = as_nobody(&[
            "sh",
            "-c",
            "echo 'touch /tmp/pwned' >> \"$0\"",
            img.join("provision.sh").to_str().unwrap(),
        ]);
        assert!(!o.status.success(), "nobody edited the imported script");
    }
    // A script that others could edit (a careless chmod, or a store copied with cp -r
    // under umask 000) is refused before anything runs, naming the fix.
    let script = img.join("provision.sh");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o757)).unwrap();
    let o = w.conv(&provision_args("e", "Wide", &[]));
    fails_saying(&o, &format!("`{}` is writable by others", script.display()));
    assert!(
        stderr(&o).contains(&format!("chmod go-w {}", script.display())),
        "{}",
        stderr(&o)
    );
    assert!(!mark.exists(), "the script ran");
    let o = w.conv(&["image", "validate", "Wide"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("`{}` is writable by others", script.display())),
        "{}",
        stderr(&o)
    );
    // The same for a directory on the way and for common/.
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&img, std::fs::Permissions::from_mode(0o775)).unwrap();
    fails_saying(
        &w.conv(&provision_args("e", "Wide", &[])),
        &format!("`{}` is writable by its group", img.display()),
    );
    std::fs::set_permissions(&img, std::fs::Permissions::from_mode(0o755)).unwrap();
    let functions = w.store().join("common/functions");
    std::fs::set_permissions(&functions, std::fs::Permissions::from_mode(0o646)).unwrap();
    fails_saying(
        &w.conv(&provision_args("e", "Wide", &[])),
        &format!("`{}` is writable by others", functions.display()),
    );
    std::fs::set_permissions(&functions, std::fs::Permissions::from_mode(0o644)).unwrap();
    if root() {
        // Owned by another (non-root) user: that user could rewrite it.
        let st = Command::new("chown")
            .arg(NOBODY.to_string())
            .arg(&script)
            .status()
            .unwrap();
        assert!(st.success());
        fails_saying(
            &w.conv(&provision_args("e", "Wide", &[])),
            &format!("`{}` belongs to another user (uid 65534)", script.display()),
        );
    }
    assert!(!mark.exists(), "the script ran");
}

/// A directory an attacker can write to (as /tmp-like places are), made before convirt runs.
fn world_writable(w: &World, rel: &str) -> std::path::PathBuf {
    let d = w.path().join(rel);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
    d
}

/// `ln -s TARGET LINK`, done by `nobody` when the test runs as root.
fn plant_symlink(target: &Path, link: &Path) {
    if root() {
        let o = as_nobody(&["ln", "-s", target.to_str().unwrap(), link.to_str().unwrap()]);
        assert!(o.status.success(), "{}", stderr(&o));
    } else {
        std::os::unix::fs::symlink(target, link).unwrap();
    }
}

#[test]
fn symlinks_planted_in_the_work_log_and_config_directories_lead_nowhere() {
    // The work directory: the VM's lock file would be opened (and truncated) through it.
    let w = sandbox();
    probe(&w, "");
    open_up(&w);
    let c = canary(&w, "canary-work");
    let locks = world_writable(&w, "work/locks");
    std::fs::set_permissions(
        w.path().join("work"),
        std::fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    plant_symlink(&c, &locks.join("w1.lock"));
    let o = w.conv(&provision_args("w1", "Probe", &[]));
    fails_saying(&o, "is writable by other users");
    assert!(stderr(&o).contains("chmod go-w"), "{}", stderr(&o));
    canary_intact(&c);
    assert!(!w.path().join("disks/w1.disk").exists());

    // The log directory: the image's log directory replaced by a link to a directory of
    // the victim's.
    let w = sandbox();
    probe(&w, "");
    open_up(&w);
    let c = canary(&w, "victim/canary-log");
    let logs = world_writable(&w, "log");
    plant_symlink(&w.path().join("victim"), &logs.join("Probe"));
    let o = w.conv(&provision_args("l1", "Probe", &[]));
    fails_saying(&o, "is writable by other users");
    canary_intact(&c);
    assert_eq!(
        mode(&w.path().join("victim")),
        0o755,
        "chmod through the link"
    );
    assert_eq!(
        std::fs::read_dir(w.path().join("victim")).unwrap().count(),
        1
    );

    // The config directory: the config (or its temporary file) written through a link.
    let w = sandbox();
    probe(&w, "");
    open_up(&w);
    let c = canary(&w, "canary-conf");
    let conf = world_writable(&w, "conf");
    plant_symlink(&c, &conf.join("c1.cfg"));
    let o = w.conv(&provision_args("c1", "Probe", &["--force"]));
    fails_saying(&o, "is writable by other users");
    canary_intact(&c);
    assert!(
        std::fs::symlink_metadata(conf.join("c1.cfg"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // What the failed run created is gone again.
    assert!(!w.path().join("disks/c1.disk").exists());
}

/// The record of `vm` as JSON, and where it is.
fn record(w: &World, vm: &str) -> (serde_json::Value, std::path::PathBuf) {
    let p = w.path().join(format!("state/vms/{vm}/record.json"));
    let r = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    (r, p)
}

#[test]
fn a_tampered_record_removes_nothing_outside_its_run() {
    let w = sandbox();
    probe(&w, "");
    ok(&w.conv(&provision_args("t", "Probe", &[])));
    let outside = canary(&w, "outside/canary");
    let outside2 = canary(&w, "outside/canary2");
    let nearby = canary(&w, "disks/neighbour.disk");
    let dotdot = canary(&w, "canary-dotdot");
    let (mut r, path) = record(&w, "t");
    let id = |p: &Path| {
        let m = std::fs::metadata(p).unwrap();
        serde_json::json!({"dev": m.dev(), "ino": m.ino()})
    };
    let item = |p: String, kind: &str, id: Option<serde_json::Value>| {
        let mut i = serde_json::json!({"path": p, "kind": kind});
        if let Some(id) = id {
            i["dev"] = id["dev"].clone();
            i["ino"] = id["ino"].clone();
        }
        i
    };
    let created = r["created"].as_array_mut().unwrap();
    created.extend([
        // A path outside every configured directory, even with the right identity.
        item(outside.display().to_string(), "file", Some(id(&outside))),
        item(
            outside2.display().to_string(),
            "config",
            Some(id(&outside2)),
        ),
        // Inside the disk directory, but with no identity.
        item(nearby.display().to_string(), "disk", None),
        // `..` climbing out of the disk directory.
        item(
            format!("{}/disks/../canary-dotdot", w.path().display()),
            "file",
            Some(id(&dotdot)),
        ),
        // Through a symlink in the disk directory to a directory outside.
        item(
            format!("{}/disks/link/canary", w.path().display()),
            "file",
            Some(id(&outside)),
        ),
        // A bare volume group, and one that would be an option of lvremove.
        item("vg0".into(), "lvm", None),
        item("--all/x".into(), "lvm", None),
        // The workdir kind (removed recursively) on a directory outside.
        item(
            outside.parent().unwrap().display().to_string(),
            "workdir",
            Some(id(outside.parent().unwrap())),
        ),
    ]);
    std::fs::write(&path, serde_json::to_string_pretty(&r).unwrap()).unwrap();
    std::os::unix::fs::symlink(outside.parent().unwrap(), w.path().join("disks/link")).unwrap();
    // A recording lvremove on PATH: it must never be called.
    let calls = w.path().join("lvremove.calls");
    w.write_exec(
        "fake-bin/lvremove",
        &format!(
            "#!/bin/bash\n# recording stand-in, tests only\nprintf '%s\\n' \"$*\" >> '{}'\n",
            calls.display()
        ),
    );
    let o = w
        .conv_cmd(&["vm", "remove", "t", "--yes"])
        .env(
            "PATH",
            format!(
                "{}:{}",
                w.path().join("fake-bin").display(),
                std::env::var("PATH").unwrap()
            ),
        )
        .output()
        .unwrap();
    let out = stdout(&o);
    for want in [
        format!(
            "kept     file      {} (outside the directories the run was configured with)",
            outside.display()
        ),
        format!(
            "kept     config    {} (outside the directories the run was configured with)",
            outside2.display()
        ),
        format!(
            "kept     disk      {} (the record gives it no identity (device and inode))",
            nearby.display()
        ),
        "(`.` or `..` in the path)".to_string(),
        format!(
            "/disks/link/canary (a symlink in its directories leads to `{}`)",
            outside.display()
        ),
        "kept     lvm       vg0 (not a valid `VG/LV` logical volume name)".to_string(),
        "kept     lvm       --all/x (not a valid `VG/LV` logical volume name)".to_string(),
        "removed  disk".to_string(),
        "removed  config".to_string(),
    ] {
        assert!(out.contains(&want), "{want}\n{out}{}", stderr(&o));
    }
    canary_intact(&outside);
    canary_intact(&outside2);
    canary_intact(&nearby);
    canary_intact(&dotdot);
    assert!(!calls.exists(), "lvremove was called");
    assert!(!w.path().join("disks/t.disk").exists());
    assert!(!w.path().join("conf/t.cfg").exists());
}

#[test]
fn a_state_directory_others_can_write_is_refused() {
    let w = sandbox();
    probe(&w, "");
    ok(&w.conv(&provision_args("s", "Probe", &[])));
    std::fs::set_permissions(
        w.path().join("state/vms"),
        std::fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    let o = w.conv(&["vm", "remove", "s", "--yes"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("is writable by other users"),
        "{}",
        stderr(&o)
    );
    assert!(w.path().join("disks/s.disk").exists());
    assert!(w.path().join("conf/s.cfg").exists());
}

#[test]
fn a_secret_is_never_in_ps_the_dry_run_the_json_the_log_or_the_config() {
    let w = sandbox();
    let p = w.path().display().to_string();
    w.write(
        "store/Sec/image.conf",
        &format!("root_password_hash = ''\nOUT_FILE = '{p}/out'\n"),
    );
    w.write(
        "store/Sec/vm_conf.template",
        "name = ''\nmemory = 256\nkernel = '/usr/lib/xen/boot/pv-grub.gz'\n",
    );
    // The script looks at every command line on the machine while it runs.
    w.write_exec(
        "store/Sec/provision.sh",
        &provision_script(
            true,
            "{ cat /proc/[0-9]*/cmdline 2>/dev/null || true; } | tr '\\0' ' ' > \"$OUT_FILE.ps\"\n\
             [[ \"$root_password_hash\" == '$6$' ]] || printf '%s' \"$root_password_hash\" > \"$OUT_FILE.hash\"\n",
        ),
    );
    w.write("store/Sec/description.htm", "<body>Sec</body>");
    let hash = "$6$saltsalt$Z9secretHashValueQ";
    let run = |extra: &[&str]| {
        let mut c = w.conv_cmd(&provision_args(
            "s",
            "Sec",
            &[&["--set-file", "root_password_hash=-"], extra].concat(),
        ));
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{hash}\n").as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let dry = run(&["--dry-run"]);
    ok(&dry);
    assert!(
        stdout(&dry).contains("root_password_hash = ********"),
        "{}",
        stdout(&dry)
    );
    assert!(!stdout(&dry).contains(hash) && !stderr(&dry).contains(hash));
    let json = w
        .conv_cmd(&[
            "--json",
            "provision",
            "--vm",
            "s",
            "--image",
            "Sec",
            "--dry-run",
            "--set-file",
            &format!("root_password_hash={}", w.write("hash.txt", hash).display()),
        ])
        .output()
        .unwrap();
    ok(&json);
    assert!(stdout(&json).contains("\"********\""), "{}", stdout(&json));
    assert!(!stdout(&json).contains(hash), "{}", stdout(&json));

    let o = run(&[]);
    ok(&o);
    // It arrived, whole, without a trailing newline.
    assert_eq!(
        std::fs::read_to_string(w.path().join("out.hash")).unwrap(),
        hash
    );
    let ps = std::fs::read_to_string(w.path().join("out.ps")).unwrap();
    assert!(ps.contains("provision.sh"), "{ps}");
    assert!(!ps.contains(hash) && !ps.contains("Z9secret"), "{ps}");
    for f in ["log/Sec/Sec_s.log", "conf/s.cfg", "state/vms/s/record.json"] {
        let text = std::fs::read_to_string(w.path().join(f)).unwrap();
        assert!(!text.contains("Z9secret"), "{f}: {text}");
    }
    assert!(!stdout(&o).contains(hash) && !stderr(&o).contains(hash));
    // The instantiated image.conf beside the log has it (the script reads it): owner-only.
    assert_eq!(mode(&w.path().join("log/Sec/Sec_s_image.conf")), 0o600);

    // A secret on the command line is warned about.
    let o = w.conv(&provision_args(
        "s3",
        "Sec",
        &["--dry-run", "--set", &format!("root_password_hash={hash}")],
    ));
    ok(&o);
    assert!(
        stderr(&o).contains("warning: the secret `root_password_hash` on the command line is visible to every local user (`ps`)"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("--set-file root_password_hash=PATH"),
        "{}",
        stderr(&o)
    );
    assert!(!stdout(&o).contains("Z9secret"), "{}", stdout(&o));

    // A crash report never shows a secret given on the command line.
    let o = w
        .conv_cmd(&provision_args(
            "s2",
            "Sec",
            &["--set", &format!("root_password_hash={hash}")],
        ))
        .env("CONVIRT_TEST_PANIC", "1")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(70), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("root_password_hash=********"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("Z9secret"), "{}", stderr(&o));
}

#[test]
fn a_tool_variable_or_special_shell_variable_cannot_be_set() {
    let w = sandbox();
    probe(&w, "");
    let evil = w.write_exec(
        "evil",
        &format!("#!/bin/bash\ntouch '{}/pwned'\n", w.path().display()),
    );
    let evil = evil.to_str().unwrap();
    for (flag, kv, key) in [
        ("--set", format!("QEMU_IMG={evil}"), "QEMU_IMG"),
        ("--vm-set", format!("QEMU_IMG={evil}"), "QEMU_IMG"),
        ("--set", format!("TRUNCATE={evil}"), "TRUNCATE"),
        ("--set", "PATH=/nonexistent".to_string(), "PATH"),
        ("--vm-set", format!("LD_PRELOAD={evil}"), "LD_PRELOAD"),
        ("--set", format!("BASH_ENV={evil}"), "BASH_ENV"),
        ("--vm-set", "IFS=/".to_string(), "IFS"),
    ] {
        let o = w.conv(&provision_args("x", "Probe", &[flag, &kv]));
        fails_saying(&o, &format!("`{key}` may not be set by an image or a VM"));
        assert!(
            stderr(&o).contains(&format!("drop `{flag} {key}=...`")),
            "{}",
            stderr(&o)
        );
    }
    // In the image's own file: named with its line.
    let w2 = sandbox();
    probe(&w2, "MKSWAP = '/tmp/x'\n");
    let o = w2.conv(&provision_args("x", "Probe", &[]));
    fails_saying(&o, "`MKSWAP` may not be set by an image or a VM");
    assert!(
        w2.filter(&stderr(&o))
            .contains("--> [TMP]/store/Probe/image.conf:"),
        "{}",
        stderr(&o)
    );
    assert!(!w.path().join("pwned").exists());
    assert!(!w.path().join("disks/x.disk").exists());
}

#[test]
fn vm_set_honours_the_templates_customizable_options() {
    let w = sandbox();
    probe(&w, "");
    let t = w.path().join("store/Probe/vm_conf.template");
    let mut text = std::fs::read_to_string(&t).unwrap();
    text.push_str("customizable_options = ['memory', 'vcpus']\n");
    std::fs::write(&t, text).unwrap();
    fails_saying(
        &w.conv(&provision_args(
            "c",
            "Probe",
            &["--vm-set", "kernel=/tmp/other"],
        )),
        "`kernel` is not customizable",
    );
    ok(&w.conv(&provision_args("c", "Probe", &["--vm-set", "memory=512"])));
}

#[test]
fn a_relative_directory_variable_is_an_error_with_file_and_line() {
    let w = sandbox();
    probe(&w, "");
    let cfg = w.path().join("convirt.toml");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        &format!("VM_CONF_DIR = '{}/conf'", w.path().display()),
        "VM_CONF_DIR = 'conf'",
    );
    std::fs::write(&cfg, &text).unwrap();
    let line = text
        .lines()
        .position(|l| l.starts_with("VM_CONF_DIR"))
        .unwrap()
        + 1;
    let o = w.conv(&provision_args("r", "Probe", &[]));
    fails_saying(&o, "`VM_CONF_DIR` must be an absolute path, not `conf`");
    assert!(
        stderr(&o).contains(&format!("{}:{line}:", cfg.display())),
        "{}",
        stderr(&o)
    );
    // In image.conf too (after substitution).
    let w = sandbox();
    probe(&w, "");
    fails_saying(
        &w.conv(&provision_args(
            "r",
            "Probe",
            &["--set", "VM_DISKS_DIR=rel/disks"],
        )),
        "`VM_DISKS_DIR` must be an absolute path, not `rel/disks`",
    );
    assert!(!w.path().join("rel").exists());
}

#[test]
fn one_unreadable_record_is_named_while_the_others_are_listed_shown_and_removed() {
    let w = sandbox();
    probe(&w, "");
    ok(&w.conv(&provision_args("good", "Probe", &[])));
    ok(&w.conv(&provision_args("bad", "Probe", &[])));
    w.write("state/vms/bad/record.json", "{\"format_version\": 1,");
    let o = w.conv(&["vm", "list"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stdout(&o).contains("good"), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("the record of VM `bad` on localhost cannot be read"),
        "{}",
        stderr(&o)
    );
    ok(&w.conv(&["vm", "show", "good"]));
    fails_saying(&w.conv(&["vm", "show", "bad"]), "record of VM `bad`");
    ok(&w.conv(&["vm", "remove", "good", "--yes"]));
    assert!(!w.path().join("conf/good.cfg").exists());
}

#[test]
fn a_journal_with_huge_birth_times_reads_back() {
    let w = sandbox();
    probe(&w, "");
    let o = w.conv(&provision_args(
        "j",
        "Probe",
        &["--set", "mode=exit3", "--keep"],
    ));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let journal = w.path().join("state/vms/j/journal");
    let mut text = std::fs::read_to_string(&journal).unwrap();
    // A birth time past u64 (as a server's `stat` may report one), as a number and as text.
    text.push_str(&format!(
        "{{\"event\":\"created\",\"path\":\"{}/disks/huge\",\"kind\":\"file\",\"dev\":1,\"ino\":2,\"born\":\"{}\"}}\n",
        w.path().display(),
        u128::MAX
    ));
    std::fs::write(&journal, text).unwrap();
    let o = w.conv(&["vm", "show", "j"]);
    ok(&o);
    assert!(stdout(&o).contains("failed (kept)"), "{}", stdout(&o));
    ok(&w.conv(&["vm", "list"]));
    ok(&w.conv(&["vm", "remove", "j", "--yes"]));
}

#[test]
fn sighup_is_handled_like_ctrl_c_and_a_second_signal_exits_at_once() {
    let w = sandbox();
    probe(&w, "");
    // SIGHUP (the terminal went away): the script stops, its files go, exit 130.
    let child = w.conv_spawn(
        &provision_args("h", "Probe", &["--set", "mode=sleep"]),
        false,
    );
    let log = w.path().join("log/Probe/Probe_h.log");
    wait_for(&log, "probe: image");
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(!w.path().join("disks/h.disk").exists());

    // A script that ignores SIGTERM keeps the first Ctrl-C's clean-up waiting; a second
    // Ctrl-C ends convirt at once, before the clean-up's SIGKILL of the script.
    let w = sandbox();
    let p = w.path().display().to_string();
    w.write("store/Stub/image.conf", &format!("MARK = '{p}/term'\n"));
    w.write("store/Stub/vm_conf.template", "name = ''\nmemory = 64\n");
    w.write_exec(
        "store/Stub/provision.sh",
        &provision_script(
            true,
            "trap 'echo got > \"$MARK\"' TERM\necho started > \"$MARK.pid\"\necho $$ >> \"$MARK.pid\"\nwhile :; do sleep 0.1 || true; done\n",
        ),
    );
    w.write("store/Stub/description.htm", "<body>Stub</body>");
    let child = w.conv_spawn(&provision_args("s", "Stub", &[]), true);
    let pid_file = w.path().join("term.pid");
    wait_for(&pid_file, "started");
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    wait_for(&w.path().join("term"), "got");
    let cleanup_started = Instant::now();
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let sent_within = cleanup_started.elapsed();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    let script_pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The clean-up's SIGKILL comes 3 s after its SIGTERM: the script is still there, unless
    // this (loaded) machine took most of that time to send the second signal.
    let alive = unsafe { libc::kill(script_pid, 0) } == 0;
    unsafe { libc::kill(-script_pid, libc::SIGKILL) };
    if sent_within < Duration::from_millis(1500) {
        assert!(
            alive,
            "convirt waited for the clean-up after the second Ctrl-C"
        );
    }
}

/// Waits (at most 30 s) until a file holds some text.
fn wait_for(path: &Path, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(path)
        .unwrap_or_default()
        .contains(text)
    {
        assert!(
            Instant::now() < deadline,
            "{} never said {text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_missing_tool_is_named_with_its_debian_package() {
    let w = sandbox();
    probe(&w, "");
    ok(&w.conv(&provision_args("m", "Probe", &[])));
    let (mut r, path) = record(&w, "m");
    r["created"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"path": "vg9/m", "kind": "lvm"}));
    std::fs::write(&path, serde_json::to_string_pretty(&r).unwrap()).unwrap();
    let found = ["/usr/bin", "/bin", "/usr/local/sbin", "/usr/sbin", "/sbin"]
        .iter()
        .any(|d| Path::new(d).join("lvremove").exists());
    if found {
        return; // lvm2 is installed here: nothing is missing.
    }
    let o = w
        .conv_cmd(&["vm", "remove", "m", "--yes"])
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    fails_saying(
        &o,
        "`lvremove` is not installed (looked on PATH and in /usr/local/sbin, /usr/sbin, /sbin); install the Debian package lvm2",
    );
    // What could not go is kept in the record, for another `vm remove`.
    assert!(path.exists());
}

#[test]
fn what_a_failed_runs_clean_up_cannot_remove_is_listed_and_kept_for_vm_remove() {
    let w = sandbox();
    let p = w.path().display().to_string();
    w.write("store/Lv/image.conf", "x = 1\n");
    w.write("store/Lv/vm_conf.template", "name = ''\nmemory = 64\n");
    // The script reports a logical volume it made, then fails.
    w.write_exec(
        "store/Lv/provision.sh",
        &provision_script(true, "record_created lvm:vg0/lv1\nexit 3\n"),
    );
    w.write("store/Lv/description.htm", "<body>Lv</body>");
    // A stand-in for lvremove (no device-mapper here) that fails, as a busy volume does.
    w.write_exec(
        "fake-bin/lvremove",
        &format!(
            "#!/bin/bash\n# failing stand-in for lvremove, tests only\nprintf '%s\\n' \"$*\" >> '{p}/lvremove.calls'\necho '  Logical volume vg0/lv1 in use.' >&2\nexit 5\n"
        ),
    );
    let path = format!(
        "{}:{}",
        w.path().join("fake-bin").display(),
        std::env::var("PATH").unwrap()
    );
    let o = w
        .conv_cmd(&provision_args("f", "Lv", &[]))
        .env("PATH", &path)
        .output()
        .unwrap();
    fails_saying(
        &o,
        "could not remove: lvm:vg0/lv1 (lvremove: Logical volume vg0/lv1 in use.)",
    );
    assert!(
        stderr(&o).contains("`convirt vm remove f` tries again"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read_to_string(w.path().join("lvremove.calls")).unwrap(),
        "-f -- vg0/lv1\n"
    );
    // The journal stays: `vm list` shows the run, and `vm remove` knows the volume.
    assert!(w.path().join("state/vms/f/journal").exists());
    let o = w.conv(&["vm", "show", "f"]);
    ok(&o);
    assert!(stdout(&o).contains("lvm       vg0/lv1"), "{}", stdout(&o));
}

//! `xvda_disk_type = 'qcow2-thin'` of Debian_12_Minimal without a real bootstrap: a
//! stand-in `mmdebstrap` on PATH writes a small real tree (as in tests/shell/run.sh), and
//! everything else is real: `qemu-img`, `qemu-storage-daemon`'s FUSE export, `debugfs`,
//! the pins, `REFRESH=1`, `vm remove` and `convirt cache list|prune`. The boot of thin VMs
//! under QEMU is tests/e2e/boot.rs.

use crate::provision::{copy_dir, sandbox};
use crate::xen::xl_check;
use crate::{World, repo, stderr, stdout};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const FAKE_MMDEBSTRAP: &str = r#"#!/bin/bash
# Stand-in for mmdebstrap: TARGET is the second last argument.
set -eu
out=${@: -2:1}
printf '%s\n' "$*" >> "$FAKE_RUNS"
t=$(mktemp -d)
mkdir -p "$t/boot" "$t/etc/ssh" "$t/root" "$t/usr/bin"
echo kernel > "$t/boot/vmlinuz-6.1.0-1-cloud-amd64"
echo initrd > "$t/boot/initrd.img-6.1.0-1-cloud-amd64"
echo base > "$t/etc/hostname"
printf '127.0.0.1 localhost\n' > "$t/etc/hosts"
echo tool > "$t/usr/bin/tool"
tar -C "$t" -cf "$out" .
rm -rf "$t"
"#;

struct Thin {
    w: World,
    path: String,
}

impl Thin {
    fn new() -> Thin {
        let w = sandbox();
        copy_dir(
            &repo().join("image_store/Debian_12_Minimal"),
            &w.store().join("Debian_12_Minimal"),
        );
        w.write_exec("fake/mmdebstrap", FAKE_MMDEBSTRAP);
        let path = format!(
            "{}:{}",
            w.path().join("fake").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Thin { w, path }
    }

    fn conv(&self, args: &[&str]) -> Output {
        self.w
            .conv_cmd(args)
            .env("PATH", &self.path)
            .env("FAKE_RUNS", self.w.path().join("runs"))
            .output()
            .unwrap()
    }

    fn provision(&self, vm: &str, extra: &[&str]) -> Output {
        self.provision_all(&[vm], extra)
    }

    /// The provisioning of `vms` these tests make (a small disk, two scripts, a mirror the
    /// stand-in never reaches), then `extra`.
    fn args<'a>(vms: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["provision", "--image", "Debian_12_Minimal", "--vm"];
        args.extend(vms);
        args.extend([
            "--set",
            "DEBIAN_MIRROR=http://mirror.example/debian",
            "--set",
            "custom_list=['hostname', 'machine_identity']",
            "--set",
            "xvda_disk_size=16",
        ]);
        args.extend(extra);
        args
    }

    /// Thin VMs.
    fn provision_all(&self, vms: &[&str], extra: &[&str]) -> Output {
        let mut thin = vec!["--set", "xvda_disk_type=qcow2-thin"];
        thin.extend(extra);
        self.conv(&Self::args(vms, &thin))
    }

    /// A full-copy (raw) VM.
    fn full(&self, vm: &str, extra: &[&str]) -> Output {
        self.conv(&Self::args(&[vm], extra))
    }

    fn disk(&self, vm: &str) -> PathBuf {
        self.w.path().join(format!("disks/{vm}.disk"))
    }

    fn runs(&self) -> usize {
        std::fs::read_to_string(self.w.path().join("runs"))
            .unwrap_or_default()
            .lines()
            .count()
    }

    fn pins(&self) -> usize {
        std::fs::read_dir(self.w.path().join("cache/guests/pins"))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

fn ok(what: &str, o: &Output) {
    assert!(o.status.success(), "{what}: {}{}", stdout(o), stderr(o));
}

/// `qemu-img info` of a disk: (format, backing file).
fn info(disk: &Path) -> (String, String) {
    let o = Command::new("qemu-img")
        .args(["info", "--output=json", "-U"])
        .arg(disk)
        .output()
        .unwrap();
    ok("qemu-img info", &o);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    (
        j["format"].as_str().unwrap_or_default().to_string(),
        j["backing-filename"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

/// The file system inside a thin disk as a raw image, for debugfs.
fn flatten(disk: &Path, raw: &Path) {
    let o = Command::new("qemu-img")
        .args(["convert", "-U", "-O", "raw"])
        .arg(disk)
        .arg(raw)
        .output()
        .unwrap();
    ok("qemu-img convert", &o);
}

fn debugfs(raw: &Path, request: &str) -> String {
    let o = Command::new("debugfs")
        .args(["-R", request])
        .arg(raw)
        .output()
        .unwrap();
    stdout(&o)
}

fn conf_uuid(w: &World, vm: &str) -> String {
    let cfg = std::fs::read_to_string(w.path().join(format!("conf/{vm}.cfg"))).unwrap();
    cfg.lines()
        .find_map(|l| l.strip_prefix("uuid = \""))
        .map(|u| u.trim_end_matches('"').to_string())
        .unwrap()
}

#[test]
fn thin_vms_stand_on_a_pinned_read_only_base() {
    let t = Thin::new();
    let w = &t.w;
    // Side by side: both link the base into bases/ at about the same time.
    ok(
        "thin1 thin2",
        &t.provision_all(&["thin1", "thin2"], &["--jobs", "2"]),
    );
    assert_eq!(t.runs(), 1, "one bootstrap for both");

    let mut bases = Vec::new();
    let mut host_keys = Vec::new();
    for vm in ["thin1", "thin2"] {
        let disk = t.disk(vm);
        let (format, backing) = info(&disk);
        assert_eq!(format, "qcow2", "{vm}");
        assert!(
            backing.starts_with(&format!(
                "{}/cache/guests/bases/debian-",
                w.path().display()
            )),
            "{vm}: {backing}"
        );
        let m = std::fs::metadata(&backing).unwrap();
        assert_eq!(m.permissions().mode() & 0o222, 0, "the base is writable");
        let overlay = std::fs::metadata(&disk).unwrap();
        assert!(overlay.blocks() * 512 < 20 << 20, "{vm}: overlay too large");
        // The config names the disk as xl's qdisk backend needs it, and Xen takes it.
        let cfg_path = w.path().join(format!("conf/{vm}.cfg"));
        let cfg = std::fs::read_to_string(&cfg_path).unwrap();
        assert!(
            cfg.contains("\"format=qcow2,backendtype=qdisk,vdev=xvda,access=rw,target="),
            "{cfg}"
        );
        if let Some(r) = xl_check(&cfg_path) {
            let json = r.unwrap_or_else(|e| panic!("Xen rejected {vm}: {e}\n{cfg}"));
            assert_eq!(json["disks"][0]["format"], "qcow2", "{json}");
            assert_eq!(json["disks"][0]["backend"], "qdisk", "{json}");
        }
        // The per-VM changes are in the overlay: host name, UUID, host keys.
        let raw = w.path().join(format!("{vm}.raw"));
        flatten(&disk, &raw);
        assert_eq!(debugfs(&raw, "cat /etc/hostname").trim(), vm);
        assert_eq!(debugfs(&raw, "cat /usr/bin/tool").trim(), "tool");
        let fsck = Command::new("e2fsck")
            .arg("-fn")
            .arg(&raw)
            .output()
            .unwrap();
        ok("e2fsck", &fsck);
        let sb = Command::new("dumpe2fs")
            .arg("-h")
            .arg(&raw)
            .output()
            .unwrap();
        assert!(
            stdout(&sb).contains(&format!("Filesystem UUID:          {}", conf_uuid(w, vm))),
            "{}",
            stdout(&sb)
        );
        let key = debugfs(&raw, "cat /etc/ssh/ssh_host_ed25519_key.pub");
        assert!(key.starts_with("ssh-ed25519 "), "{vm}: {key}");
        host_keys.push(key);
        std::fs::remove_file(&raw).unwrap();
        bases.push(backing);
    }
    assert_eq!(bases[0], bases[1], "one base for both");
    assert_ne!(host_keys[0], host_keys[1], "host keys shared");
    assert_eq!(t.pins(), 2);
    let base = PathBuf::from(&bases[0]);
    let base_ino = std::fs::metadata(&base).unwrap().ino();

    let o = t.conv(&["--json", "cache", "list"]);
    ok("cache list", &o);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let pinned = |kind: &str| -> Vec<String> {
        j["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["kind"] == kind)
            .flat_map(|i| i["pinned_by"].as_array().cloned().unwrap_or_default())
            .map(|p| p.as_str().unwrap().to_string())
            .collect()
    };
    let both = [t.disk("thin1"), t.disk("thin2")].map(|p| p.display().to_string());
    assert_eq!(pinned("entry"), both, "{j}");
    assert_eq!(pinned("base"), both, "{j}");

    // A refresh rebuilds the entry; the base the thin VMs stand on stays.
    ok("refresh", &t.provision("thin3", &["--set", "REFRESH=1"]));
    assert_eq!(t.runs(), 2, "REFRESH=1 bootstraps again");
    assert_eq!(std::fs::metadata(&base).unwrap().ino(), base_ino);
    let (_, new_base) = info(&t.disk("thin3"));
    assert_ne!(new_base, bases[0], "thin3 stands on the refreshed base");

    // Removing a VM releases its pin and leaves the other VM and the base alone.
    ok("vm remove", &t.conv(&["vm", "remove", "-y", "thin1"]));
    assert!(!t.disk("thin1").exists());
    assert!(t.disk("thin2").exists() && base.exists());
    let o = t.conv(&["--json", "cache", "list"]);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let base_item = j["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["path"] == bases[0].as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{j}"));
    assert_eq!(
        base_item["pinned_by"],
        serde_json::json!([t.disk("thin2").display().to_string()]),
        "{j}"
    );
    let o = t.conv(&["cache", "prune"]);
    ok("cache prune", &o);
    assert!(base.exists(), "prune removed a pinned base: {}", stdout(&o));
    assert!(Path::new(&new_base).exists(), "{}", stdout(&o));
    assert_eq!(
        t.pins(),
        2,
        "thin1's released pin is pruned: {}",
        stdout(&o)
    );
    let check = Command::new("qemu-img")
        .args(["check", "-U"])
        .arg(t.disk("thin2"))
        .output()
        .unwrap();
    ok("qemu-img check thin2", &check);

    // A disk kept by `vm remove --keep-disks` keeps its base.
    ok(
        "vm remove --keep-disks",
        &t.conv(&["vm", "remove", "-y", "--keep-disks", "thin2"]),
    );
    ok("cache prune", &t.conv(&["cache", "prune"]));
    assert!(t.disk("thin2").exists() && base.exists());

    // Once no disk needs the old base, prune frees it (and only it).
    std::fs::remove_file(t.disk("thin2")).unwrap();
    let o = t.conv(&["cache", "prune"]);
    ok("cache prune", &o);
    assert!(!base.exists(), "{}", stdout(&o));
    assert!(Path::new(&new_base).exists(), "{}", stdout(&o));
    assert!(stdout(&o).contains("freed "), "{}", stdout(&o));
}

#[test]
fn qcow2_thin_is_only_for_a_guest_tree_disk() {
    let t = Thin::new();
    let conf = t.w.store().join("Debian_12_Minimal/image.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    let text = text.replace("xvdb_disk_type = 'raw'", "xvdb_disk_type = 'qcow2-thin'");
    std::fs::write(&conf, text).unwrap();
    let o = t.conv(&[
        "provision",
        "--image",
        "Debian_12_Minimal",
        "--vm",
        "x1",
        "--dry-run",
        "--set",
        "DEBIAN_MIRROR=http://mirror.example/debian",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("only for a disk whose `xvdb_image_src_type` is 'guest_tree'"),
        "{}",
        stderr(&o)
    );
}

/// The full-copy path after its speed-ups (the copy started in the background before the
/// scripts, the UUID set in the same debugfs session as the files, the host keys made from
/// the start of the run): a clean file system with the VM's UUID, host name and keys.
#[test]
fn a_full_copy_vm_gets_its_uuid_and_files_in_one_debugfs_session() {
    let t = Thin::new();
    let w = &t.w;
    let o = t.full("raw1", &[]);
    ok("raw1", &o);
    let disk = t.disk("raw1");
    assert_eq!(info(&disk).0, "raw");
    let fsck = Command::new("e2fsck")
        .arg("-fn")
        .arg(&disk)
        .output()
        .unwrap();
    ok("e2fsck", &fsck);
    let sb = Command::new("dumpe2fs")
        .arg("-h")
        .arg(&disk)
        .output()
        .unwrap();
    assert!(
        stdout(&sb).contains(&format!(
            "Filesystem UUID:          {}",
            conf_uuid(w, "raw1")
        )),
        "{}",
        stdout(&sb)
    );
    assert_eq!(debugfs(&disk, "cat /etc/hostname").trim(), "raw1");
    // ssh_rsa_host_key = 'first-boot' (the image's setting): Ed25519 and ECDSA keys now, the
    // RSA key by the unit on the guest's first boot.
    let key = debugfs(&disk, "cat /etc/ssh/ssh_host_ed25519_key.pub");
    assert!(key.starts_with("ssh-ed25519 "), "{key}");
    let key = debugfs(&disk, "cat /etc/ssh/ssh_host_ecdsa_key.pub");
    assert!(key.starts_with("ecdsa-sha2-nistp256 "), "{key}");
    assert_eq!(debugfs(&disk, "cat /etc/ssh/ssh_host_rsa_key.pub"), "");
    let unit = debugfs(
        &disk,
        "cat /etc/systemd/system/convirt-ssh-host-keys.service",
    );
    assert!(unit.contains("ExecStart=/usr/bin/ssh-keygen -A"), "{unit}");
    let link = debugfs(
        &disk,
        "stat /etc/systemd/system/multi-user.target.wants/convirt-ssh-host-keys.service",
    );
    assert!(
        link.contains("Fast link dest: \"/etc/systemd/system/convirt-ssh-host-keys.service\""),
        "{link}"
    );
    // `--set ssh_rsa_host_key=provision`: all three keys at provisioning, and no unit.
    let o = t.full("raw2", &["--set", "ssh_rsa_host_key=provision"]);
    ok("raw2", &o);
    let raw2 = t.disk("raw2");
    let key = debugfs(&raw2, "cat /etc/ssh/ssh_host_rsa_key.pub");
    assert!(key.starts_with("ssh-rsa "), "{key}");
    assert_eq!(
        debugfs(
            &raw2,
            "cat /etc/systemd/system/convirt-ssh-host-keys.service"
        ),
        ""
    );
    // No stage, key directory or partial disk is left behind.
    let left: Vec<_> = std::fs::read_dir(w.path().join("disks"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

//! Debian_12_Minimal for real: provisioned as a normal user from a real mmdebstrap
//! bootstrap, then each VM booted under QEMU (TCG) exactly as its `xl` config says, logged
//! into on the serial console with the configured password and over SSH with the
//! configured key.

use crate::guest::{Guest, TestUser, XlBoot, is_root, ok, reachable_dir, read_xl, repo};
use std::collections::HashSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

const USER: &str = "convirt-e2e";
const PASSWORD: &str = "e2e-Secret-7";

/// One world for the whole run: the user, its settings, the store, a key pair and a
/// password hash. The bootstrap cache lives in it (under `target/`), so the test cases of
/// one run share one bootstrap; CI starts from a fresh checkout and builds it anew.
pub struct World {
    pub user: TestUser,
    pub convirt: PathBuf,
    pub config: PathBuf,
    pub key: PathBuf,
    pub pubkey: String,
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn world() -> &'static Mutex<World> {
    static W: OnceLock<Mutex<World>> = OnceLock::new();
    W.get_or_init(|| Mutex::new(World::new()))
}

impl World {
    fn new() -> World {
        let dir = reachable_dir(&repo().join("target/e2e-boot"));
        let user = TestUser::new(USER, &dir);
        let d = &user.dir;
        // Fresh per run: settings, store, disks, configs, logs (never the cache).
        for sub in ["store", "disks", "conf", "log", "work", "bin", "state"] {
            let _ = std::fs::remove_dir_all(d.join(sub));
        }
        std::fs::create_dir_all(d.join("bin")).unwrap();
        let convirt = user.give(
            Path::new(env!("CARGO_BIN_EXE_convirt")),
            "bin/convirt",
            0o755,
        );
        ok(
            "cp store",
            Command::new("cp")
                .arg("-a")
                .arg(repo().join("image_store"))
                .arg(d.join("store"))
                .output()
                .unwrap(),
        );
        let p = d.display();
        let config = d.join("convirt.toml");
        std::fs::write(
            &config,
            format!(
                "image_store = '{p}/store'\nlog_dir = '{p}/log'\nwork_dir = '{p}/work'\nstate_dir = '{p}/state'\n\n[variables]\nVM_DISKS_DIR = '{p}/disks'\nVM_CONF_DIR = '{p}/conf'\nVM_CACHE_DIR = '{p}/cache'\n"
            ),
        )
        .unwrap();
        user.own(d);
        let key = d.join("id_e2e");
        let _ = std::fs::remove_file(&key);
        let _ = std::fs::remove_file(d.join("id_e2e.pub"));
        ok(
            "ssh-keygen",
            user.command("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "e2e", "-f"])
                .arg(&key)
                .output()
                .unwrap(),
        );
        let pubkey = std::fs::read_to_string(d.join("id_e2e.pub")).unwrap();
        let hash = ok(
            "openssl passwd",
            Command::new("openssl")
                .args(["passwd", "-6", PASSWORD])
                .output()
                .unwrap(),
        )
        .trim()
        .to_string();
        assert!(hash.starts_with("$6$"), "{hash}");
        // The README's safe form: the hash from a file, never on the command line.
        let hash_file = d.join("root.hash");
        std::fs::write(&hash_file, format!("{hash}\n")).unwrap();
        std::fs::set_permissions(&hash_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        user.own(&hash_file);
        World {
            user,
            convirt,
            config,
            key,
            pubkey,
        }
    }

    /// Runs convirt as the test user with the world's settings.
    pub fn conv(&self, args: &[&str]) -> Output {
        self.user
            .command(&self.convirt)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap()
    }

    pub fn provision(&self, vms: &[&str], extra: &[&str]) -> Output {
        let mut args = vec!["provision", "--image", "Debian_12_Minimal", "--vm"];
        args.extend(vms);
        let h = format!("root_password_hash={}", self.path("root.hash").display());
        let k = format!("ssh_authorized_keys={}", self.pubkey);
        args.extend(["--set-file", &h, "--set", &k]);
        args.extend(extra);
        self.conv(&args)
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.user.dir.join(rel)
    }
}

/// What one booted VM said about itself.
#[derive(Debug)]
struct Seen {
    hostname: String,
    machine_id: String,
    root_uuid: String,
    host_key: String,
    /// The RSA host key, made by the guest on its first boot (`ssh_rsa_host_key`).
    rsa_key: String,
}

fn boot_and_check(w: &World, vm: &str) -> (XlBoot, Seen) {
    let xl = read_xl(&w.path(&format!("conf/{vm}.cfg")));
    assert_eq!(xl.name, vm);
    assert!(!xl.kernel.is_empty() && !xl.ramdisk.is_empty(), "{xl:?}");
    let mut g = Guest::boot(&xl);
    g.wait_for(&format!("{vm} login:"), Duration::from_secs(300));
    g.login("root", PASSWORD);
    let out = g.run(
        "echo H=$(hostname) M=$(cat /etc/machine-id) U=$(findmnt -no UUID /) K=$(cut -d' ' -f2 /etc/ssh/ssh_host_ed25519_key.pub)",
    );
    let field = |k: &str| -> String {
        out.split_whitespace()
            .find_map(|t| t.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("no {k}= in {out:?}"))
            .to_string()
    };
    let seen = Seen {
        hostname: field("H"),
        machine_id: field("M"),
        root_uuid: field("U"),
        host_key: field("K"),
        rsa_key: String::new(),
    };
    // SSH with the configured key proves the network (DHCP on eth0) and the key. sshd
    // starts after the first-boot unit that makes the RSA host key (ssh_rsa_host_key =
    // 'first-boot'), so the key is there by now.
    let o = g.ssh(
        &w.key,
        "hostname; cat /etc/machine-id; cut -d' ' -f2 /etc/ssh/ssh_host_rsa_key.pub; systemctl show -P ConditionResult convirt-ssh-host-keys.service",
    );
    assert!(
        o.status.success(),
        "ssh to {vm}: {}\nqemu: {}",
        text(&o),
        g.qemu_log()
    );
    let ssh_out = String::from_utf8_lossy(&o.stdout).to_string();
    let lines: Vec<&str> = ssh_out.lines().collect();
    assert_eq!(lines.len(), 4, "ssh output: {ssh_out:?}");
    assert_eq!(lines[..2], [vm, seen.machine_id.as_str()], "ssh output");
    assert!(
        lines[2].starts_with("AAAAB3NzaC1yc2E"),
        "no RSA host key: {ssh_out:?}"
    );
    // The first-boot unit ran (its condition, no RSA key yet, held on this boot).
    assert_eq!(lines[3], "yes", "the first-boot key unit: {ssh_out:?}");
    let mut seen = seen;
    seen.rsa_key = lines[2].to_string();
    // A wrong key is refused: BatchMode, so no password prompt either.
    let other = w.path("id_other");
    let _ = std::fs::remove_file(&other);
    let _ = std::fs::remove_file(w.path("id_other.pub"));
    ok(
        "ssh-keygen",
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&other)
            .output()
            .unwrap(),
    );
    let o = g.ssh_command(&other, "true").output().unwrap();
    assert!(!o.status.success(), "a key that was not configured got in");
    (xl, seen)
}

/// The proof: two VMs provisioned as a normal user, each booted under QEMU with
/// its xl config's kernel, initrd, root and command line; logins on the serial console
/// and over SSH; the two differ in identity and share nothing writable.
#[test]
fn two_vms_boot_log_in_and_differ() {
    let w = world().lock().unwrap_or_else(|e| e.into_inner());
    if is_root() {
        assert!(
            w.user.name.is_some(),
            "as root the test provisions as a normal user"
        );
    }
    let o = w.provision(&["web1", "web2"], &["--jobs", "2"]);
    assert!(o.status.success(), "provision: {}", text(&o));

    let mut seen = Vec::new();
    for vm in ["web1", "web2"] {
        let (xl, s) = boot_and_check(&w, vm);
        assert_eq!(s.hostname, vm);
        assert_eq!(s.machine_id.len(), 32, "{s:?}");
        // The root file system's UUID is the VM's uuid (common/guest).
        assert_eq!(s.root_uuid, xl.uuid, "{s:?}");
        let disk = std::fs::metadata(&xl.disks[0].0).unwrap();
        assert_eq!(disk.len(), 2048 << 20, "apparent size");
        assert!(disk.blocks() * 512 < 1 << 30, "the disk is not sparse");
        if let Some(name) = &w.user.name {
            let uid = Command::new("id").args(["-u", name]).output().unwrap();
            let uid: u32 = String::from_utf8_lossy(&uid.stdout).trim().parse().unwrap();
            assert_eq!(disk.uid(), uid, "the disk belongs to the user");
        }
        seen.push((xl, s));
    }
    let (a, b) = (&seen[0], &seen[1]);
    assert_ne!(a.1.machine_id, b.1.machine_id, "machine-id shared");
    assert_ne!(a.1.host_key, b.1.host_key, "SSH host key shared");
    assert_ne!(a.1.rsa_key, b.1.rsa_key, "RSA host key shared");
    assert_ne!(a.1.root_uuid, b.1.root_uuid, "file system UUID shared");
    // Nothing writable shared: every file a VM config names is its own file.
    let mut inodes = HashSet::new();
    for (xl, _) in &seen {
        for f in [&xl.kernel, &xl.ramdisk, &xl.disks[0].0] {
            let m = std::fs::metadata(f).unwrap();
            assert_eq!(m.nlink(), 1, "{f} is hard-linked");
            assert!(inodes.insert((m.dev(), m.ino())), "{f} is shared");
        }
    }
}

/// Failures on a warm cache: a clear-text password and a bad key are refused with the
/// step named; nothing of the VM stays and the cache entry is untouched.
#[test]
fn failures_leave_nothing_and_the_cache_untouched() {
    let w = world().lock().unwrap_or_else(|e| e.into_inner());
    // Warm the cache (a no-op when the other test ran first).
    let o = w.provision(&["warm1"], &[]);
    assert!(o.status.success(), "provision: {}", text(&o));
    // Every cache entry (the lvm2 test of the remote module makes a second one) with its
    // manifest: the failures below must change none of it and add none (a lock file for the
    // failed key may stay; it holds nothing).
    let cache = || -> std::collections::BTreeMap<String, String> {
        std::fs::read_dir(w.path("cache/guests"))
            .unwrap()
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().ends_with(".lock"))
            .map(|e| {
                let manifest =
                    std::fs::read_to_string(e.path().join("complete")).unwrap_or_default();
                (e.file_name().to_string_lossy().into_owned(), manifest)
            })
            .collect()
    };
    let before = cache();
    assert!(
        before
            .iter()
            .any(|(n, m)| n.starts_with("debian-") && !m.is_empty()),
        "no complete cache entry: {before:?}"
    );

    let o = w.conv(&[
        "provision",
        "--image",
        "Debian_12_Minimal",
        "--vm",
        "bad1",
        "--set",
        "root_password_hash=hunter2",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("clear-text password"), "{out}");
    assert!(out.contains("openssl passwd -6"), "{out}");
    assert!(out.contains("step customise"), "{out}");

    let o = w.conv(&[
        "provision",
        "--image",
        "Debian_12_Minimal",
        "--vm",
        "bad2",
        "--set",
        "ssh_authorized_keys=-----BEGIN OPENSSH PRIVATE KEY-----",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("private key"), "{}", text(&o));

    // An unreachable mirror: the bootstrap step fails, no cache entry is left for its key.
    let o = w.conv(&[
        "provision",
        "--image",
        "Debian_12_Minimal",
        "--vm",
        "bad3",
        "--set",
        "DEBIAN_MIRROR=http://127.0.0.1:9/debian",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("step bootstrap"), "{}", text(&o));
    assert_eq!(cache(), before, "the failed runs changed the cache");

    for vm in ["bad1", "bad2", "bad3"] {
        for f in [
            format!("disks/{vm}.disk"),
            format!("disks/{vm}.vmlinuz"),
            format!("disks/{vm}.initrd.img"),
            format!("conf/{vm}.cfg"),
        ] {
            assert!(!w.path(&f).exists(), "{f} left behind");
        }
    }
    let leftovers: Vec<_> = std::fs::read_dir(w.path("disks"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Issue #22: two thin VMs (`xvda_disk_type = 'qcow2-thin'`), qcow2 overlays of the cache's
/// read-only base, each booted under QEMU from its overlay to the login prompt with its own
/// host name and keys; removing one leaves the base and the other intact, and the base
/// pinned by the other only.
#[test]
fn thin_vms_boot_from_overlays_of_one_read_only_base() {
    let w = world().lock().unwrap_or_else(|e| e.into_inner());
    let o = w.provision(
        &["thin1", "thin2"],
        &["--jobs", "2", "--set", "xvda_disk_type=qcow2-thin"],
    );
    assert!(o.status.success(), "provision: {}", text(&o));
    let backing = |disk: &str| -> String {
        let o = Command::new("qemu-img")
            .args(["info", "-U", "--output=json", disk])
            .output()
            .unwrap();
        let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(j["format"], "qcow2", "{j}");
        j["backing-filename"].as_str().unwrap().to_string()
    };
    let base_state = |p: &str| {
        let m = std::fs::metadata(p).unwrap();
        (
            m.ino(),
            m.len(),
            m.mtime(),
            m.mtime_nsec(),
            m.mode() & 0o222,
        )
    };
    let mut seen = Vec::new();
    let mut base = String::new();
    for vm in ["thin1", "thin2"] {
        let xl = read_xl(&w.path(&format!("conf/{vm}.cfg")));
        assert_eq!(xl.disks[0].1, "qcow2", "{xl:?}");
        let b = backing(&xl.disks[0].0);
        assert!(base.is_empty() || base == b, "two bases: {base} {b}");
        base = b;
        let overlay = std::fs::metadata(&xl.disks[0].0).unwrap();
        assert!(
            overlay.blocks() * 512 < 20 << 20,
            "{vm}'s overlay is not thin"
        );
        seen.push(boot_and_check(&w, vm));
    }
    let before = base_state(&base);
    assert_eq!(before.4, 0, "the base is writable");
    let (a, b) = (&seen[0], &seen[1]);
    for (vm, (xl, s)) in ["thin1", "thin2"].iter().zip(&seen) {
        assert_eq!(&s.hostname, vm);
        assert_eq!(s.root_uuid, xl.uuid, "{s:?}");
    }
    assert_ne!(a.1.machine_id, b.1.machine_id, "machine-id shared");
    assert_ne!(a.1.host_key, b.1.host_key, "SSH host key shared");
    assert_ne!(a.1.rsa_key, b.1.rsa_key, "RSA host key shared");
    assert_ne!(a.1.root_uuid, b.1.root_uuid, "file system UUID shared");
    drop(seen);

    let o = w.conv(&["vm", "remove", "-y", "thin1"]);
    assert!(o.status.success(), "vm remove: {}", text(&o));
    // (No `cache prune` here: it would also free the entries other tests reuse; the
    // integration test `thin` proves it keeps pinned bases.)
    let o = w.conv(&["--json", "cache", "list"]);
    assert!(o.status.success(), "cache list: {}", text(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let thin2 = w.path("disks/thin2.disk").display().to_string();
    assert!(
        j["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["kind"] == "base"
                && i["path"] == base.as_str()
                && i["pinned_by"] == serde_json::json!([thin2])),
        "{j}"
    );
    assert_eq!(base_state(&base), before, "the base changed");
    assert!(!w.path("disks/thin1.disk").exists());
    let o = Command::new("qemu-img")
        .args(["check", "-U"])
        .arg(w.path("disks/thin2.disk"))
        .output()
        .unwrap();
    assert!(o.status.success(), "thin2's overlay: {}", text(&o));
    assert_eq!(
        backing(&w.path("disks/thin2.disk").display().to_string()),
        base
    );
}

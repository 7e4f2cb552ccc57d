//! The cases, each on the one booted world, as an administrator of that dom0 runs convirt.

use crate::{note, world};
use std::time::Duration;

/// What convirt made, seen from dom0: the configs and the VM disk directory.
const MADE: &str = "find /etc/xen /etc/xen/auto /var/cache/convirt/vm_disks -mindepth 1 -maxdepth 1 2>/dev/null | sort; true";

fn json_vm<'a>(list: &'a serde_json::Value, vm: &str) -> &'a serde_json::Value {
    list.as_array()
        .and_then(|a| a.iter().find(|v| v["name"] == vm))
        .unwrap_or_else(|| panic!("{vm} not in vm list --json: {list}"))
}

/// Debian_12_Minimal as a PV guest: provisioned and started by convirt, running in
/// `xl list`, its console at the login prompt, `vm list` showing the domain's state,
/// memory, vCPUs and CPU time; `vm remove` refuses it while it runs and, once shut down,
/// removes exactly what was made.
#[test]
fn debian_pv_guest_starts_is_listed_running_and_removed_once_stopped() {
    let w = world();
    let before = w.ok(MADE);
    let out = w.ok(
        "convirt provision --vm web1 --image Debian_12_Minimal --set guest_type=pv \
         --vm-set memory=384 --vm-set vcpus=1 --start 2>&1",
    );
    note(w.t0, &format!("web1 provisioned and started:\n{out}"));
    assert!(out.contains("started"), "{out}");
    let cfg = w.ok("cat /etc/xen/web1.cfg");
    assert!(cfg.contains("type = \"pv\""), "{cfg}");
    let list = w.ok("xl list");
    note(w.t0, &format!("xl list:\n{list}"));
    assert!(
        list.lines().any(|l| l.starts_with("web1 ")),
        "web1 not in xl list:\n{list}"
    );
    let console = w
        .wait_console("web1", "web1 login:", Duration::from_secs(1500))
        .unwrap();
    note(
        w.t0,
        &format!(
            "web1 at its login prompt; console tail:\n{}",
            console
                .lines()
                .rev()
                .take(6)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        ),
    );

    let table = w.ok("convirt vm list");
    note(w.t0, &format!("convirt vm list:\n{table}"));
    let row = table
        .lines()
        .find(|l| l.starts_with("web1 "))
        .unwrap_or_else(|| panic!("no web1 row:\n{table}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[1], "provisioned", "{table}");
    assert_eq!(cols[2], "running", "{table}");
    assert_eq!(cols[3], "384", "{table}");
    assert_eq!(cols[4], "1", "{table}");
    let json: serde_json::Value =
        serde_json::from_str(&w.ok("convirt vm list --json")).expect("vm list --json");
    let v = json_vm(&json, "web1");
    assert_eq!(v["state"], "running", "{v}");
    assert_eq!(v["domain"]["memory_mib"], 384, "{v}");
    assert_eq!(v["domain"]["vcpus"], 1, "{v}");
    assert!(v["domain"]["id"].as_u64().unwrap_or(0) > 0, "{v}");
    assert!(
        v["domain"]["cpu_seconds"].as_f64().unwrap_or(0.0) > 0.0,
        "{v}"
    );

    let refused = w.sh("convirt vm remove --yes web1");
    let said = crate::text(&refused);
    assert!(!refused.status.success(), "removed a running VM: {said}");
    assert!(said.contains("running"), "{said}");
    w.ok("test -e /etc/xen/web1.cfg");

    w.ok("timeout 600 xl shutdown -w web1");
    note(w.t0, "web1 shut down");
    // The shut-down domain stays listed (`--ps--`, `vm list`: shutdown) until the `xl`
    // process that watches it destroys it (on_poweroff = destroy).
    let gone = crate::wait_for(Duration::from_secs(300), || {
        let l = w.ok("xl list");
        (!l.lines().any(|l| l.starts_with("web1 "))).then_some(())
    });
    assert!(gone.is_some(), "web1 still listed:\n{}", w.ok("xl list"));
    let v = json_vm(
        &serde_json::from_str(&w.ok("convirt vm list --json")).unwrap(),
        "web1",
    )
    .clone();
    assert_eq!(v["state"], "off", "{v}");
    assert!(v["domain"].is_null(), "{v}");
    w.ok("convirt vm remove --yes web1");
    assert_eq!(w.ok(MADE), before, "vm remove left or took something");
    let table = w.ok("convirt vm list 2>&1");
    assert!(!table.contains("web1"), "{table}");
}

/// `--autostart`: the config linked where Debian's xendomains looks (/etc/xen/auto), and
/// `xendomains start` (as at dom0's boot) starts the domain; `vm remove` takes the link.
#[test]
fn autostart_link_is_started_by_xendomains_and_removed_with_the_vm() {
    let w = world();
    let before = w.ok(MADE);
    let out = w.ok(&format!(
        "convirt provision --vm auto1 --image Fedora_Core_Install {} --autostart 2>&1",
        marker_guest(&w).join(" ")
    ));
    note(w.t0, &format!("auto1 provisioned:\n{out}"));
    assert_eq!(
        w.ok("readlink /etc/xen/auto/auto1.cfg").trim(),
        "/etc/xen/auto1.cfg"
    );
    let list = w.ok("xl list");
    assert!(
        !list.contains("auto1"),
        "started without xendomains:\n{list}"
    );
    // The init script itself (its systemd unit is already active since boot).
    let started = w.ok(
        "SYSTEMCTL_SKIP_REDIRECT=1 _SYSTEMCTL_SKIP_REDIRECT=1 /etc/init.d/xendomains start 2>&1",
    );
    note(w.t0, &format!("xendomains start:\n{started}"));
    let list = w.ok("xl list");
    note(w.t0, &format!("xl list:\n{list}"));
    assert!(
        list.lines().any(|l| l.starts_with("auto1 ")),
        "xendomains did not start auto1:\n{list}"
    );
    let v = json_vm(
        &serde_json::from_str(&w.ok("convirt vm list --json")).unwrap(),
        "auto1",
    )
    .clone();
    assert_eq!(v["state"], "running", "{v}");
    assert_eq!(v["domain"]["memory_mib"], 256, "{v}");
    w.ok("xl destroy auto1");
    w.ok("convirt vm remove --yes auto1");
    w.ok("test ! -e /etc/xen/auto/auto1.cfg && test ! -L /etc/xen/auto/auto1.cfg");
    assert_eq!(w.ok(MADE), before, "vm remove left or took something");
}

/// The fleet flow against real Xen: this machine's convirt provisions onto dom0 over ssh
/// (`--host`, through QEMU's port forward) and starts the VM there; `vm list` shows it
/// (running, from dom0's `xl list`) beside a VM of this machine; `vm remove --host` removes it from dom0.
#[test]
fn fleet_provision_onto_dom0_lists_both_hosts_and_removes_there() {
    let w = world();
    let before = w.ok(MADE);
    let host = |args: &[&str]| {
        let o = w.host_convirt(args).output().expect("run convirt");
        (o.status.success(), crate::text(&o))
    };
    let marker = marker_guest(&w);
    let mut args = vec![
        "provision",
        "--host",
        "dom0",
        "--vm",
        "fleet1",
        "--image",
        "Fedora_Core_Install",
        "--start",
    ];
    args.extend(marker.iter().map(String::as_str));
    let (ok, out) = host(&args);
    note(
        w.t0,
        &format!("fleet1 provisioned from this machine:\n{out}"),
    );
    assert!(ok, "{out}");
    let list = w.ok("xl list");
    assert!(
        list.lines().any(|l| l.starts_with("fleet1 ")),
        "fleet1 not running in dom0:\n{list}"
    );
    w.wait_console("fleet1", MARKER, Duration::from_secs(600))
        .unwrap();
    // A VM of this machine (no Xen here: provisioned, not started).
    let (ok, out) = host(&[
        "provision",
        "--vm",
        "local1",
        "--image",
        "Debian_12_Minimal",
    ]);
    assert!(ok, "{out}");
    let (ok, table) = host(&["vm", "list"]);
    note(w.t0, &format!("convirt vm list on this machine:\n{table}"));
    assert!(ok, "{table}");
    let row = |vm: &str| {
        table
            .lines()
            .find(|l| l.starts_with(&format!("{vm} ")))
            .unwrap_or_else(|| panic!("no {vm} row:\n{table}"))
            .to_string()
    };
    assert!(
        row("fleet1").contains("127.0.0.1") || row("fleet1").contains("dom0"),
        "{table}"
    );
    assert!(row("local1").contains("localhost"), "{table}");
    // The server's configs and disks are checked over ssh: both there; and its real
    // `xl list`, asked in the same round trip, says the domain runs (STATE, third column).
    assert!(row("fleet1").contains("present"), "{table}");
    assert_eq!(
        row("fleet1").split_whitespace().nth(2),
        Some("running"),
        "{table}"
    );
    w.ok("xl destroy fleet1");
    let (ok, out) = host(&["vm", "remove", "--yes", "--host", "dom0", "fleet1"]);
    assert!(ok, "{out}");
    let (ok, out) = host(&["vm", "remove", "--yes", "local1"]);
    assert!(ok, "{out}");
    assert_eq!(
        w.ok(MADE),
        before,
        "vm remove --host left or took something"
    );
}

/// The marker the test's initramfs prints on the console.
const MARKER: &str = "XEN-WORLD-INITRAMFS-UP";

/// A tiny initramfs (static busybox, newc cpio, gzip) whose init prints MARKER on the
/// console and stays up. Made on this machine (root: it holds /dev/console).
fn marker_initramfs(dir: &std::path::Path) -> std::path::PathBuf {
    let tree = dir.join("initramfs");
    let _ = std::fs::remove_dir_all(&tree);
    for d in ["bin", "dev", "proc", "sys"] {
        std::fs::create_dir_all(tree.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", tree.join("bin/busybox")).expect("busybox-static");
    let init = tree.join("init");
    std::fs::write(
        &init,
        format!(
            "#!/bin/busybox sh\n/bin/busybox mount -t devtmpfs devtmpfs /dev\n\
             /bin/busybox echo {MARKER} > /dev/console\n\
             /bin/busybox echo {MARKER} > /dev/hvc0\n\
             while :; do /bin/busybox sleep 3600; done\n"
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = dir.join("marker.img");
    crate::ok(
        "mknod and cpio",
        std::process::Command::new("bash")
            .arg("-c")
            .arg(format!(
                "set -euo pipefail; cd {t}; mknod -m 600 dev/console c 5 1; \
                 find . | cpio -o -H newc --quiet | gzip -1 > {o}",
                t = crate::shell_quote(&tree.display().to_string()),
                o = crate::shell_quote(&out.display().to_string())
            ))
            .output()
            .unwrap(),
    );
    out
}

/// The arguments that make the shipped PV installer image (Fedora_Core_Install) a small
/// guest that boots at once: dom0's own kernel (PV-capable) and the marker initramfs (put
/// in dom0 the first time), 256 MiB, one vCPU, a 16 MB disk.
fn marker_guest(w: &crate::World) -> Vec<String> {
    if !w.sh("test -s /root/marker.img").status.success() {
        let initrd = marker_initramfs(&w.run_dir);
        crate::ok("scp initrd", w.copy(&initrd, "/root/marker.img"));
    }
    let kernel = w.ok("ls /boot/vmlinuz-* | head -n1");
    [
        format!("kernel_src=file://{}", kernel.trim()),
        "ramdisk_src=file:///root/marker.img".into(),
        "xvda_disk_size=16".into(),
    ]
    .into_iter()
    .flat_map(|v| ["--set".to_string(), v])
    .chain(["--vm-set", "memory=256", "--vm-set", "vcpus=1"].map(String::from))
    .collect()
}

/// The shipped PV installer image (Fedora_Core_Install) on an LVM volume: a volume group on
/// dom0's second disk, the image's disk as a logical volume there, started with a kernel
/// (dom0's own, PV-capable) and an initrd the test makes; the console shows the initrd ran,
/// so the PV config boots as convirt renders it. `vm remove` removes the volume and nothing
/// else of the group.
#[test]
fn pv_installer_on_an_lvm_volume_boots_as_rendered_and_its_volume_is_removed() {
    let w = world();
    let marker = marker_guest(&w);
    w.ok(
        "vgs vgx >/dev/null 2>&1 || { pvcreate -q /dev/vdb && vgcreate -q vgx /dev/vdb; }; \
         lvs vgx/keepme >/dev/null 2>&1 || lvcreate -q -y -L 8M -n keepme vgx",
    );
    let before = w.ok(MADE);
    let out = w.ok(&format!(
        "convirt provision --vm inst1 --image Fedora_Core_Install {} \
         --set xvda_disk_type=LVM --vm-set \"disk=['phy:/dev/vgx/inst1,xvda,w']\" --start 2>&1",
        marker.join(" ")
    ));
    note(w.t0, &format!("inst1 provisioned and started:\n{out}"));
    let lvs = || w.ok("lvs --noheadings -o lv_name vgx | tr -d ' ' | sort");
    assert_eq!(lvs(), "inst1\nkeepme\n");
    let list = w.ok("xl list");
    assert!(
        list.lines().any(|l| l.starts_with("inst1 ")),
        "inst1 not in xl list:\n{list}"
    );
    let console = w
        .wait_console("inst1", MARKER, Duration::from_secs(600))
        .unwrap();
    note(
        w.t0,
        &format!(
            "inst1's initramfs ran; console tail:\n{}",
            console.lines().rev().take(3).collect::<Vec<_>>().join("\n")
        ),
    );
    w.ok("xl destroy inst1");
    w.ok("convirt vm remove --yes inst1");
    assert_eq!(
        lvs(),
        "keepme\n",
        "vm remove did not take exactly its volume"
    );
    assert_eq!(w.ok(MADE), before, "vm remove left or took something");
}

/// What the test's boot sector writes to the first serial port.
const HVM_MARKER: &str = "HVM-BOOT-SECTOR-RAN";

/// The smallest bootable CD: an El Torito no-emulation boot image of one sector of 16-bit
/// code that writes HVM_MARKER to COM1 (port 0x3f8) and halts, put on an ISO by xorriso.
fn boot_iso(dir: &std::path::Path) -> std::path::PathBuf {
    let tree = dir.join("iso");
    let _ = std::fs::remove_dir_all(&tree);
    std::fs::create_dir_all(&tree).unwrap();
    #[rustfmt::skip]
    let mut code: Vec<u8> = vec![
        0x31, 0xC0,             // xor ax, ax
        0x8E, 0xD8,             // mov ds, ax
        0xBE, 0x18, 0x7C,       // mov si, 0x7c18 (the message, at offset 24)
        0xAC,                   // next: lodsb
        0x84, 0xC0,             // test al, al
        0x74, 0x08,             // jz done
        0xBA, 0xF8, 0x03,       // mov dx, 0x3f8
        0xEE,                   // out dx, al      (COM1)
        0xE6, 0xE9,             // out 0xe9, al    (Xen's HVM debug port: `xl dmesg`)
        0xEB, 0xF3,             // jmp next
        0xFB,                   // done: sti       (cli; hlt would power the domain off)
        0xF4,                   // idle: hlt
        0xEB, 0xFD,             // jmp idle
    ];
    assert_eq!(code.len(), 24);
    code.extend_from_slice(format!("{HVM_MARKER}\r\n\0").as_bytes());
    code.resize(2048, 0);
    code[510] = 0x55;
    code[511] = 0xAA;
    std::fs::write(tree.join("boot.img"), &code).unwrap();
    let iso = dir.join("boot.iso");
    let _ = std::fs::remove_file(&iso);
    crate::ok(
        "xorriso",
        std::process::Command::new("xorriso")
            .args(["-as", "mkisofs", "-quiet", "-o"])
            .arg(&iso)
            .args(["-b", "boot.img", "-no-emul-boot", "-boot-load-size", "4"])
            .arg(&tree)
            .output()
            .unwrap(),
    );
    iso
}

/// The shipped HVM images (Linux_CD_Install, Windows_CD_Install), each with a tiny bootable
/// ISO the test makes: created and started by convirt, the domain seen in `xl list` (and
/// as `running` by `vm list`); what its serial console shows is logged (docs/xen.md says
/// how far HVM gets under TCG); then destroyed and removed.
#[test]
fn hvm_cd_images_start_from_a_tiny_iso() {
    let w = world();
    let iso = boot_iso(&w.run_dir);
    crate::ok("scp iso", w.copy(&iso, "/root/boot.iso"));
    for (vm, image) in [("hvm1", "Linux_CD_Install"), ("win1", "Windows_CD_Install")] {
        let before = w.ok(MADE);
        let out = w.ok(&format!(
            "convirt provision --vm {vm} --image {image} --set INSTALL_ISO=/root/boot.iso \
             --set hda_disk_size=16 --vm-set memory=256 --vm-set vcpus=1 --start 2>&1"
        ));
        note(
            w.t0,
            &format!("{vm} ({image}) provisioned and started:\n{out}"),
        );
        let list = w.ok("xl list");
        note(w.t0, &format!("xl list:\n{list}"));
        assert!(
            list.lines().any(|l| l.starts_with(&format!("{vm} "))),
            "{vm} not in xl list:\n{list}"
        );
        let v = json_vm(
            &serde_json::from_str(&w.ok("convirt vm list --json")).unwrap(),
            vm,
        )
        .clone();
        assert_eq!(v["state"], "running", "{v}");
        // The boot sector's bytes on Xen's debug port: `(dN) HVM-BOOT-SECTOR-RAN` in
        // `xl dmesg` (Xen runs with guest_loglvl=all), after hvmloader's and SeaBIOS's lines.
        let id = v["domain"]["id"].as_u64().unwrap_or(0);
        let mut dmesg = String::new();
        let ran = crate::wait_for(Duration::from_secs(600), || {
            dmesg = w.ok(&format!("xl dmesg | grep -a '(d{id})' || true"));
            dmesg.contains(HVM_MARKER).then_some(())
        });
        note(
            w.t0,
            &format!(
                "{vm}: xl dmesg of domain {id} (last lines):\n{}",
                dmesg
                    .lines()
                    .rev()
                    .take(12)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        );
        assert!(
            ran.is_some(),
            "{vm}: the CD's boot sector did not run:\n{dmesg}"
        );
        w.ok(&format!("xl destroy {vm}"));
        w.ok(&format!("convirt vm remove --yes {vm}"));
        assert_eq!(w.ok(MADE), before, "vm remove left or took something");
    }
}

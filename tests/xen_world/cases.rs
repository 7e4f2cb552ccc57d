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
        .wait_console("web1", "web1 login:", Duration::from_secs(600))
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
    let out = w.ok(
        "convirt provision --vm auto1 --image Debian_12_Minimal --set guest_type=pv \
         --vm-set memory=256 --vm-set vcpus=1 --autostart 2>&1",
    );
    note(w.t0, &format!("auto1 provisioned:\n{out}"));
    assert_eq!(
        w.ok("readlink /etc/xen/auto/auto1.cfg").trim(),
        "/etc/xen/auto1.cfg"
    );
    let list = w.ok("xl list");
    assert!(!list.contains("auto1"), "started without xendomains:\n{list}");
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
/// beside a VM of this machine; `vm remove --host` removes it from dom0.
#[test]
fn fleet_provision_onto_dom0_lists_both_hosts_and_removes_there() {
    let w = world();
    let before = w.ok(MADE);
    let host = |args: &[&str]| {
        let o = w.host_convirt(args).output().expect("run convirt");
        (o.status.success(), crate::text(&o))
    };
    let (ok, out) = host(&[
        "provision",
        "--host",
        "dom0",
        "--vm",
        "fleet1",
        "--image",
        "Debian_12_Minimal",
        "--set",
        "guest_type=pv",
        "--vm-set",
        "memory=256",
        "--vm-set",
        "vcpus=1",
        "--start",
    ]);
    note(w.t0, &format!("fleet1 provisioned from this machine:\n{out}"));
    assert!(ok, "{out}");
    let list = w.ok("xl list");
    assert!(
        list.lines().any(|l| l.starts_with("fleet1 ")),
        "fleet1 not running in dom0:\n{list}"
    );
    w.wait_console("fleet1", "fleet1 login:", Duration::from_secs(600))
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
    // The server's configs and disks are checked over ssh: both there.
    assert!(row("fleet1").contains("present"), "{table}");
    w.ok("xl destroy fleet1");
    let (ok, out) = host(&["vm", "remove", "--yes", "--host", "dom0", "fleet1"]);
    assert!(ok, "{out}");
    let (ok, out) = host(&["vm", "remove", "--yes", "local1"]);
    assert!(ok, "{out}");
    assert_eq!(w.ok(MADE), before, "vm remove --host left or took something");
}

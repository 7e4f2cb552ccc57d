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

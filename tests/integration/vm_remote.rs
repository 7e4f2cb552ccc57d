//! Records of VMs on managed servers without a server (docs/records.md): a record as a
//! remote run leaves it, read by `vm list/show/remove` when the server cannot be reached
//! (the real ssh client against a closed port), names on several hosts, and directories
//! under `hosts/` that convirt did not name. The runs over a real sshd are in the e2e target
//! (`tests/e2e/remote_records.rs`).

use crate::{World, fails_saying, stderr, stdout};

const HOST: &str = "root@127.0.0.1:1";

/// A record as `provision --host HOST --vm NAME` writes it.
fn record(w: &World, host_dir: &str, host: &str, server: &str, vm: &str) {
    let text = serde_json::json!({
        "format_version": 1,
        "vm": vm,
        "host": host,
        "image": "Img",
        "image_digest": "sha256:00",
        "format": "xl",
        "config": format!("/etc/xen/{vm}.cfg"),
        "log": format!("/var/log/convirt/Img/Img_{vm}.log"),
        "disks": [format!("/srv/disks/{vm}.disk")],
        "pid": 4711,
        "started": "2026-11-30T12:00:00Z",
        "convirt_version": "0.1.0",
        "server": server,
        "finished": "2026-11-30T12:00:05Z",
        "created": [
            {"path": format!("/var/log/convirt/Img/Img_{vm}.log"), "kind": "log", "size": 10, "dev": 1, "ino": 2},
            {"path": format!("/srv/disks/{vm}.disk"), "kind": "disk", "size": 8388608, "dev": 1, "ino": 3, "born": 1_700_000_000_000_000_000u128},
            {"path": format!("/etc/xen/{vm}.cfg"), "kind": "config", "size": 100, "dev": 1, "ino": 4}
        ],
        "values": {"image": {"root_password": "********"}, "vm": {"memory": 256}}
    });
    w.write(
        &format!("state/hosts/{host_dir}/{vm}/record.json"),
        &serde_json::to_string_pretty(&text).unwrap(),
    );
}

fn conv(w: &World, args: &[&str]) -> std::process::Output {
    let mut c = w.command();
    // The test's own ssh config: nobody's ~/.ssh is read.
    c.env("CONVIRT_SSH", "ssh -F /dev/null")
        .env("CONVIRT_CONFIG", "/dev/null")
        .args(args)
        .stdin(std::process::Stdio::null());
    c.output().unwrap()
}

#[test]
fn an_unreachable_server_is_not_checked_never_missing() {
    let w = World::new();
    record(&w, "root%40127.0.0.1%3A1", HOST, HOST, "v1");
    // A directory convirt never names is no host of its own.
    w.write("state/hosts/a%zz/v9/record.json", "not json");
    let o = conv(&w, &["vm", "list"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "NAME  STATUS       STATE  MEM(MiB)  VCPUS  CPU(s)  HOST              IMAGE  CONFIG                                       DISKS\n\
         v1    provisioned  -      -         -      -       root@127.0.0.1:1  Img    not checked (root@127.0.0.1:1: unreachable)  1 not checked\n"
    );
    let o = conv(&w, &["--json", "vm", "list"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!([{
            "name": "v1",
            "host": HOST,
            "status": "provisioned",
            "state": null,
            "domain": null,
            "image": "Img",
            "image_digest": "sha256:00",
            "format": "xl",
            "config": {"path": "/etc/xen/v1.cfg", "present": null},
            "disks": [{"path": "/srv/disks/v1.disk", "kind": "disk", "size": 8388608, "dev": 1, "ino": 3, "born": 1_700_000_000_000_000_000u128, "present": null}],
            "started": "2026-11-30T12:00:00Z",
            "finished": "2026-11-30T12:00:05Z",
            "not_checked": "root@127.0.0.1:1: unreachable"
        }])
    );
    let o = conv(&w, &["vm", "show", "v1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        w.filter(&stdout(&o)),
        "VM `v1` on root@127.0.0.1:1 (root@127.0.0.1:1, over ssh)\n  \
         status:   provisioned\n  \
         image:    Img (sha256:00)\n  \
         config:   /etc/xen/v1.cfg (xl, not checked: root@127.0.0.1:1: unreachable)\n  \
         log:      /var/log/convirt/Img/Img_v1.log\n  \
         started:  2026-11-30T12:00:00Z (pid 4711)\n  \
         finished: 2026-11-30T12:00:05Z\n  \
         convirt:  0.1.0\n  \
         record:   [TMP]/state/hosts/root%40127.0.0.1%3A1/v1\n\
         \ncreated:\n  \
         log       /var/log/convirt/Img/Img_v1.log (10 bytes)\n  \
         disk      /srv/disks/v1.disk (8388608 bytes)\n  \
         config    /etc/xen/v1.cfg (100 bytes)\n  \
         (not checked: root@127.0.0.1:1: unreachable)\n\
         \nimage values:\n  \
         root_password = \"********\"\n\
         \nvm values:\n  \
         memory = 256\n"
    );
    // Removing needs the server: a clear error naming it, the record kept.
    let o = conv(&w, &["vm", "remove", "v1", "--yes"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("`root@127.0.0.1:1` (root@127.0.0.1:1) is unreachable"),
        "{err}"
    );
    assert!(
        w.path()
            .join("state/hosts/root%40127.0.0.1%3A1/v1/record.json")
            .exists()
    );
}

#[test]
fn a_name_on_several_hosts_needs_host() {
    let w = World::new();
    record(&w, "root%40127.0.0.1%3A1", HOST, HOST, "v1");
    // No `[hosts.xen2]` entry: the address the record kept is used (a closed port here).
    record(&w, "xen2", "xen2", "root@127.0.0.1:2", "v1");
    let o = conv(&w, &["vm", "show", "v1"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "error: VM `v1` is recorded on several hosts: `root@127.0.0.1:1`, `xen2`\n\
         hint: name one with `--host`, e.g. `--host root@127.0.0.1:1`\n"
    );
    let o = conv(&w, &["vm", "remove", "v1", "--dry-run"]);
    fails_saying(&o, "recorded on several hosts");
    let o = conv(&w, &["--json", "vm", "show", "v1", "--host", "xen2"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["host"].as_str(), v["server"].as_str()),
        (Some("xen2"), Some("root@127.0.0.1:2"))
    );
    assert_eq!(v["not_checked"], "xen2: unreachable");
    let o = conv(&w, &["vm", "show", "v1", "--host", "xen3"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with("error: no record of a VM `v1` on `xen3`\n"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_server_that_does_not_answer_within_its_list_timeout_is_listed_with_state_dash() {
    use std::os::unix::fs::PermissionsExt;
    let w = World::new();
    record(&w, "slow", "slow", "root@127.0.0.1:1", "v1");
    w.write(
        "convirt.toml",
        "[hosts.slow]\naddress = '127.0.0.1'\nuser = 'root'\nlist_timeout = 1\n",
    );
    // A stand-in ssh (NOT ssh) that connects nowhere and never answers.
    w.write("bin/hang-ssh", "#!/bin/sh\nexec sleep 600\n");
    let hang = w.path().join("bin/hang-ssh");
    std::fs::set_permissions(&hang, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut c = w.command();
    c.env("CONVIRT_SSH", &hang)
        .env("CONVIRT_CONFIG", w.path().join("convirt.toml"))
        .args(["vm", "list"])
        .stdin(std::process::Stdio::null());
    // Would hang for 600 s without the limit.
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "NAME  STATUS       STATE  MEM(MiB)  VCPUS  CPU(s)  HOST  IMAGE  CONFIG                                 DISKS\n\
         v1    provisioned  -      -         -      -       slow  Img    not checked (slow: no answer in time)  1 not checked\n"
    );
}

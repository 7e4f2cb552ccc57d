//! Records of VMs provisioned on managed servers (issues #9 + #10, docs/records.md): the
//! record written on this machine with the server-side paths and identities, name collisions
//! per host, a convirt killed mid-run, `vm list/show` with the host, and `vm remove --host`
//! over the real OpenSSH (the private sshd's of `remote.rs`).

use super::remote::{World, no_script_left, text, tree, wait_for};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn record_dir(w: &World, vm: &str) -> PathBuf {
    w.local().join("state/hosts/srv0").join(vm)
}

fn provision(w: &World, vm: &str, image: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "provision",
        "--host",
        "srv0",
        "--vm",
        vm,
        "--image",
        image,
        "--set",
        "hda_disk_size=16",
    ];
    args.extend_from_slice(extra);
    w.run(&args)
}

/// The created items of a record or journal: (kind, path).
fn items(v: &serde_json::Value) -> Vec<(String, String)> {
    v["created"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["kind"].as_str().unwrap().to_string(),
                i["path"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn remote_runs_are_recorded_with_server_paths_and_identities() {
    let w = World::new(1, None);
    let o = w.run(&[
        "provision",
        "--host",
        "srv0",
        "--vm",
        "r1",
        "r2",
        "--image",
        "Linux_CD_Install",
        "--set",
        "hda_disk_size=16",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let srv = w.srv(0);
    let port = w.servers[0].port;
    for vm in ["r1", "r2"] {
        let r = json(&record_dir(&w, vm).join("record.json"));
        assert_eq!(r["vm"], vm);
        assert_eq!(r["host"], "srv0");
        assert_eq!(r["server"], format!("root@127.0.0.1:{port}"));
        assert_eq!(r["image"], "Linux_CD_Install");
        assert!(r["image_digest"].as_str().unwrap().starts_with("sha256:"));
        let cfg = srv.join(format!("xen/{vm}.cfg"));
        let disk = srv.join(format!("disks/{vm}.disk.xm"));
        let log = srv.join(format!("log/Linux_CD_Install/Linux_CD_Install_{vm}.log"));
        assert_eq!(r["config"], cfg.display().to_string());
        assert_eq!(r["log"], log.display().to_string());
        let got = items(&r);
        for want in [
            ("config", cfg.display().to_string()),
            ("disk", disk.display().to_string()),
            ("log", log.display().to_string()),
        ] {
            assert!(
                got.contains(&(want.0.to_string(), want.1.clone())),
                "{want:?} not in {got:?}"
            );
        }
        // The identities come from the server's `stat`: this machine, so checkable here.
        let d = r["created"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["kind"] == "disk")
            .unwrap();
        let m = std::fs::metadata(&disk).unwrap();
        assert_eq!(d["size"], 16 * 1024 * 1024);
        assert_eq!(d["ino"], m.ino());
        assert_eq!(d["dev"], m.dev());
        assert!(r["values"]["vm"]["name"] == vm, "{}", r["values"]);
        // No workdir without --keep; the journal is gone.
        assert!(!got.iter().any(|(k, _)| k == "workdir"), "{got:?}");
        assert!(!record_dir(&w, vm).join("journal").exists());
    }
}

#[test]
fn a_recorded_name_on_that_host_is_refused_before_anything_is_made_unless_forced() {
    let w = World::new(1, None);
    assert!(
        provision(&w, "c1", "Linux_CD_Install", &[])
            .status
            .success()
    );
    let srv_before = tree(&w.srv(0));
    let record = record_dir(&w, "c1").join("record.json");
    let rec_before = std::fs::read_to_string(&record).unwrap();
    // The config is moved away on the server: the record alone refuses the run.
    std::fs::rename(w.srv(0).join("xen/c1.cfg"), w.root.join("c1.cfg.away")).unwrap();
    let o = provision(&w, "c1", "Linux_CD_Install", &[]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot provision `c1` on `srv0`: it was provisioned there already"),
        "{err}"
    );
    assert!(err.contains("vm remove c1 --host srv0"), "{err}");
    let mut srv_now = tree(&w.srv(0));
    srv_now.push("xen/c1.cfg".into());
    srv_now.sort();
    assert_eq!(srv_now, srv_before, "the refused run changed the server");
    assert_eq!(std::fs::read_to_string(&record).unwrap(), rec_before);
    // `--force`: provisioned again, the record replaced.
    let o = provision(&w, "c1", "Linux_CD_Install", &["--force"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(w.srv(0).join("xen/c1.cfg").exists());
    let r = json(&record);
    assert_ne!(std::fs::read_to_string(&record).unwrap(), rec_before);
    assert_eq!(
        r["created"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["kind"] == "config")
            .unwrap()["ino"],
        std::fs::metadata(w.srv(0).join("xen/c1.cfg"))
            .unwrap()
            .ino()
    );
}

#[test]
fn a_failed_remote_run_leaves_no_record_and_keep_leaves_a_kept_journal() {
    let w = World::new(1, None);
    let o = provision(&w, "f1", "Fails", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(!record_dir(&w, "f1").exists());
    let o = provision(&w, "f2", "Fails", &["--keep"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let journal = std::fs::read_to_string(record_dir(&w, "f2").join("journal")).unwrap();
    let disk = w.srv(0).join("disks/f2.disk.xm");
    assert!(disk.exists());
    assert!(
        journal.contains(r#"{"event":"failed","kept":true}"#),
        "{journal}"
    );
    assert!(
        journal.contains(&format!(
            r#""path":"{}","kind":"disk","size":16777216"#,
            disk.display()
        )),
        "{journal}"
    );
    assert!(journal.contains(r#""kind":"workdir""#), "{journal}");
}

#[test]
fn convirt_killed_mid_remote_run_leaves_an_interrupted_entry_for_that_host() {
    let w = World::new(1, None);
    let child = w
        .cmd(&[
            "provision",
            "--host",
            "srv0",
            "--vm",
            "k1",
            "--image",
            "Slow",
            "--set",
            "hda_disk_size=16",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let disk = w.srv(0).join("disks/k1.disk.xm");
    wait_for("the disk on the server", 30, || disk.exists());
    let journal = record_dir(&w, "k1").join("journal");
    let head = std::fs::read_to_string(&journal).unwrap();
    assert!(
        head.starts_with(r#"{"event":"start","vm":"k1","host":"srv0""#),
        "{head}"
    );
    // `vm list` while it runs: running, not interrupted.
    let o = w.run(&["--json", "vm", "list"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["status"], "running", "{v}");
    // SAFETY: killing our own child.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let mut child = child;
    let _ = child.wait();
    // The server notices the lost connection and cleans up on its own.
    wait_for("the server's clean-up", 30, || !disk.exists());
    wait_for("the remote script to stop", 10, || {
        !super::remote::script_running()
    });
    no_script_left();
    let o = w.run(&["--json", "vm", "list"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["name"], "k1", "{v}");
    assert_eq!(v[0]["host"], "srv0", "{v}");
    assert_eq!(v[0]["status"], "interrupted", "{v}");
    // The next run names it instead of starting over it.
    let o = provision(&w, "k1", "Linux_CD_Install", &[]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("an earlier provisioning run there was interrupted"),
        "{err}"
    );
}

//! Records of VMs provisioned on managed servers (issues #9 + #10, docs/records.md): the
//! record written on this machine with the server-side paths and identities, name collisions
//! per host, a convirt killed mid-run, `vm list/show` with the host, and `vm remove --host`
//! over the real OpenSSH (the private sshd's of `remote.rs`).

use super::remote::{
    DISK16, World, failed, kill_sessions, no_script_left, signal, succeeded, text, tree, wait_for,
};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn record_dir(w: &World, vm: &str) -> PathBuf {
    w.local().join("state/hosts/srv0").join(vm)
}

/// `vm` provisioned with `image` on srv0 (16 MiB disk), then `extra`.
fn provision(w: &World, vm: &str, image: &str, extra: &[&str]) -> std::process::Output {
    w.provision("srv0", &[vm], image, &[DISK16, extra].concat())
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
    succeeded(&w.provision("srv0", &["r1", "r2"], "Linux_CD_Install", DISK16));
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
    let err = failed(&provision(&w, "c1", "Linux_CD_Install", &[]), 1);
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
    succeeded(&provision(&w, "c1", "Linux_CD_Install", &["--force"]));
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
    // `--keep-disks`: the config and the logs go on the server, the disk stays.
    let out = succeeded(&w.run(&["vm", "remove", "c1", "--keep-disks", "--yes"]));
    assert!(out.contains("  kept     disk      "), "{out}");
    assert!(w.srv(0).join("disks/c1.disk.xm").exists());
    assert!(!w.srv(0).join("xen/c1.cfg").exists());
    assert!(
        !w.srv(0)
            .join("log/Linux_CD_Install/Linux_CD_Install_c1.log")
            .exists()
    );
    assert!(!record_dir(&w, "c1").exists());
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
    let (child, disk) = w.slow_on_srv0("k1", DISK16, true);
    let journal = record_dir(&w, "k1").join("journal");
    let head = std::fs::read_to_string(&journal).unwrap();
    assert!(
        head.starts_with(r#"{"event":"start","vm":"k1","host":"srv0""#),
        "{head}"
    );
    // `vm list` while it runs: running, not interrupted.
    let v = w.json_list();
    assert_eq!(v[0]["status"], "running", "{v}");
    signal(child, libc::SIGKILL);
    // The server notices the lost connection and cleans up on its own.
    wait_for("the server's clean-up", 30, || !disk.exists());
    wait_for("the remote script to stop", 10, || {
        !super::remote::script_running()
    });
    no_script_left();
    // On the next contact this machine asks the server about that very run: it removed
    // everything (its journal is gone), so the entry goes too, and the name is free again.
    let o = w.run(&["--json", "vm", "list"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v, serde_json::json!([]), "{v}");
    assert!(
        text(&o.stderr)
            .contains("`k1` on `srv0`: the server removed everything of the interrupted run"),
        "{}",
        text(&o.stderr)
    );
    assert!(!record_dir(&w, "k1").exists());
    succeeded(&provision(&w, "k1", "Linux_CD_Install", DISK16));
}

/// Every file under `dir` with its inode, to tell "untouched" from "made again".
fn files_with_inodes(dir: &Path) -> Vec<(String, u64)> {
    tree(dir)
        .into_iter()
        .map(|p| {
            let ino = std::fs::symlink_metadata(dir.join(&p)).unwrap().ino();
            (p, ino)
        })
        .collect()
}

#[test]
fn remote_vms_are_listed_with_their_host_and_removed_over_ssh() {
    let mut w = World::new(1, None);
    let srv = w.srv(0);
    // A file that was there before, beside the disks: never touched.
    std::fs::create_dir_all(srv.join("disks")).unwrap();
    std::fs::write(srv.join("disks/keep.me"), b"mine").unwrap();
    succeeded(&w.provision("srv0", &["r1", "r2"], "Linux_CD_Install", DISK16));
    let port = w.servers[0].port.to_string();
    let root = w.root.display().to_string();
    let masked = |s: &str| s.replace(&root, "[ROOT]").replace(&port, "[PORT]");

    // `vm list`: the host and the server paths; the server says what is still there, and
    // that its `xl list` cannot say (no Xen there): `unknown`, with a note why.
    std::fs::remove_file(srv.join("disks/r2.disk.xm")).unwrap();
    let o = w.run(&["vm", "list"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(
        masked(&text(&o.stdout)),
        "NAME  STATUS       STATE    MEM(MiB)  VCPUS  CPU(s)  HOST  IMAGE             CONFIG   DISKS\n\
         r1    provisioned  unknown  -         -      -       srv0  Linux_CD_Install  present  1/1 present\n\
         r2    provisioned  unknown  -         -      -       srv0  Linux_CD_Install  present  0/1 present\n"
    );
    assert!(
        text(&o.stderr).contains("note: the state of the VMs on `srv0` is unknown: `xl list`"),
        "{}",
        text(&o.stderr)
    );
    let v = w.json_list();
    assert_eq!(v.as_array().unwrap().len(), 2, "{v}");
    for (i, vm) in ["r1", "r2"].iter().enumerate() {
        assert_eq!(v[i]["name"], *vm);
        assert_eq!(v[i]["host"], "srv0");
        assert_eq!(v[i]["not_checked"], serde_json::Value::Null);
        assert_eq!(v[i]["state"], "unknown");
        let cfg = srv.join(format!("xen/{vm}.cfg")).display().to_string();
        assert_eq!(
            v[i]["config"],
            serde_json::json!({"path": cfg, "present": true})
        );
        assert_eq!(
            v[i]["disks"][0]["path"],
            srv.join(format!("disks/{vm}.disk.xm"))
                .display()
                .to_string()
        );
        assert_eq!(v[i]["disks"][0]["present"], *vm == "r1");
    }
    let o = w.run(&["vm", "show", "r1"]);
    let out = masked(&text(&o.stdout));
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        out.starts_with("VM `r1` on srv0 (root@127.0.0.1:[PORT], over ssh)\n"),
        "{out}"
    );
    assert!(
        out.contains("  config:   [ROOT]/srv0/xen/r1.cfg (xl, present)\n"),
        "{out}"
    );
    assert!(!out.contains("missing"), "{out}");
    let o = w.run(&["vm", "show", "r2"]);
    let out = masked(&text(&o.stdout));
    assert!(
        out.contains("  disk      [ROOT]/srv0/disks/r2.disk.xm (16777216 bytes) [missing]\n"),
        "{out}"
    );
    std::fs::write(srv.join("disks/r2.disk.xm"), b"").unwrap();

    // The dry run asks the server and changes nothing.
    let before = files_with_inodes(&srv);
    let o = w.run(&["vm", "remove", "r1", "--dry-run"]);
    let out = masked(&text(&o.stdout));
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        out.starts_with("would remove VM `r1` on `srv0` (dry run: nothing removed)\n"),
        "{out}"
    );
    assert!(
        out.contains("  remove   disk      [ROOT]/srv0/disks/r1.disk.xm\n"),
        "{out}"
    );
    assert!(
        out.contains("  remove   config    [ROOT]/srv0/xen/r1.cfg\n"),
        "{out}"
    );
    assert_eq!(files_with_inodes(&srv), before);
    assert!(record_dir(&w, "r1").join("record.json").exists());
    // The copy of the server's log on this machine goes too, last.
    let copy = w
        .local()
        .join("log/hosts/srv0/Linux_CD_Install/Linux_CD_Install_r1.log");
    assert!(copy.exists(), "{}", copy.display());
    assert!(
        out.contains(
            "  remove   log       [ROOT]/local/log/hosts/srv0/Linux_CD_Install/Linux_CD_Install_r1.log\n  forget   record"
        ),
        "{out}"
    );
    // `xl` cannot answer on this server (no hypervisor): said, not hidden.
    assert!(
        text(&o.stderr).contains("could not check whether `r1` is running on `srv0`"),
        "{}",
        text(&o.stderr)
    );

    // Without --yes and without a terminal: refused.
    let o = w.run(&["vm", "remove", "r1"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(files_with_inodes(&srv), before);

    let o = w.run(&["vm", "remove", "r1", "--yes"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).starts_with("removed VM `r1` on `srv0`\n"),
        "{}",
        text(&o.stdout)
    );
    let after = files_with_inodes(&srv);
    let gone: Vec<&(String, u64)> = before.iter().filter(|f| !after.contains(f)).collect();
    let left_of_r1: Vec<&(String, u64)> = after.iter().filter(|(p, _)| p.contains("r1")).collect();
    assert!(left_of_r1.is_empty(), "{left_of_r1:?}");
    // Exactly r1's files went; r2's and the pre-existing file are the very same files.
    assert!(gone.iter().all(|(p, _)| p.contains("r1")), "{gone:?}");
    assert!(after.iter().all(|f| before.contains(f)), "{after:?}");
    assert_eq!(std::fs::read(srv.join("disks/keep.me")).unwrap(), b"mine");
    for f in [
        "xen/r2.cfg",
        "disks/r2.disk.xm",
        "log/Linux_CD_Install/Linux_CD_Install_r2.log",
    ] {
        assert!(srv.join(f).exists(), "{f}");
    }
    assert!(!record_dir(&w, "r1").exists());
    assert!(!copy.exists(), "{}", copy.display());
    assert!(
        w.local()
            .join("log/hosts/srv0/Linux_CD_Install/Linux_CD_Install_r2.log")
            .exists()
    );
    let o = w.run(&["vm", "list"]);
    assert!(!text(&o.stdout).contains("r1"), "{}", text(&o.stdout));

    // A server that does not answer: its VMs are "not checked", never "missing".
    drop(w.servers.pop());
    let o = w.run(&["vm", "list"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(
        text(&o.stdout),
        "NAME  STATUS       STATE  MEM(MiB)  VCPUS  CPU(s)  HOST  IMAGE             CONFIG                           DISKS\n\
         r2    provisioned  -      -         -      -       srv0  Linux_CD_Install  not checked (srv0: unreachable)  1 not checked\n"
    );
    let v = w.json_list();
    assert_eq!(v[0]["not_checked"], "srv0: unreachable", "{v}");
    assert_eq!(v[0]["config"]["present"], serde_json::Value::Null, "{v}");
    // Removing there needs the server: a clear error, the record kept.
    let err = failed(&w.run(&["vm", "remove", "r2", "--yes"]), 1);
    assert!(err.contains("`srv0` (root@127.0.0.1:"), "{err}");
    assert!(err.contains("is unreachable"), "{err}");
    assert!(record_dir(&w, "r2").join("record.json").exists());
}

#[test]
fn a_name_on_several_hosts_needs_host_and_a_replaced_file_is_left_alone() {
    let w = World::new(1, None);
    assert!(
        provision(&w, "n1", "Linux_CD_Install", &[])
            .status
            .success()
    );
    // The same name on this machine (the local paths of the test's settings).
    let local = ["provision", "--vm", "n1", "--image", "Linux_CD_Install"];
    succeeded(&w.run(&[&local[..], DISK16].concat()));
    let err = failed(&w.run(&["vm", "remove", "n1", "--yes"]), 1);
    assert!(
        err.contains("VM `n1` is recorded on several hosts: `localhost`, `srv0`"),
        "{err}"
    );
    assert!(w.srv(0).join("xen/n1.cfg").exists());
    assert!(w.local().join("xen/n1.cfg").exists());
    // The disk on the server is replaced by another file since: it stays.
    let disk = w.srv(0).join("disks/n1.disk.xm");
    std::fs::remove_file(&disk).unwrap();
    std::fs::write(w.srv(0).join("disks/pad"), b"").unwrap();
    std::fs::write(&disk, b"someone else's").unwrap();
    let out = succeeded(&w.run(&["vm", "remove", "n1", "--host", "srv0", "--yes"]));
    assert!(out.contains("replaced since provisioning"), "{out}");
    assert_eq!(std::fs::read(&disk).unwrap(), b"someone else's");
    assert!(!w.srv(0).join("xen/n1.cfg").exists());
    // The local VM of that name is untouched, and now found by name alone.
    assert!(w.local().join("xen/n1.cfg").exists());
    let o = w.run(&["vm", "show", "n1"]);
    assert!(
        text(&o.stdout).starts_with("VM `n1` on localhost\n"),
        "{}",
        text(&o.stdout)
    );
}

#[test]
fn an_interrupted_remote_run_is_removed_over_ssh() {
    let w = World::new(1, None);
    let (child, disk) = w.slow_on_srv0("i1", DISK16, true);
    // The server's convirt is killed (SIGKILL: no cleanup), and its script with it: what
    // the run made stays there, named by the server's own journal.
    wait_for("the remote script", 30, super::remote::script_running);
    // This run's script (other tests' Slow scripts look the same): the sleep whose
    // ancestors include this VM's provision.sh, and the `__serve` above it.
    let procs = super::remote::processes();
    let parent = |pid: i32| procs.iter().find(|(p, _, _)| *p == pid);
    let chain = |pid: i32| {
        let mut out = vec![];
        let mut at = pid;
        while let Some((p, pp, c)) = parent(at) {
            out.push((*p, c.clone()));
            if *p <= 1 || c.contains("__serve") {
                break;
            }
            at = *pp;
        }
        out
    };
    let (sleep, serve) = procs
        .iter()
        .filter(|(_, _, c)| c.trim() == super::remote::slow_sleep())
        .map(|(p, _, _)| chain(*p))
        .find(|ch| ch.iter().any(|(_, c)| c.contains("Slow_i1")))
        .and_then(|ch| {
            let serve = ch.iter().find(|(_, c)| c.contains("__serve"))?.0;
            Some((ch[0].0, serve))
        })
        .unwrap();
    // SAFETY: the test's own server-side processes.
    unsafe {
        libc::kill(serve, libc::SIGKILL);
        libc::kill(sleep, libc::SIGKILL);
    }
    let _ = child.wait_with_output();
    let log = w.srv(0).join("log/Slow/Slow_i1.log");
    assert!(log.exists() && disk.exists());
    // `vm list` asks the server: interrupted, with the server's leftovers.
    let o = w.run(&["--json", "vm", "list"]);
    let v: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o.stderr)));
    assert_eq!(v[0]["status"], "interrupted", "{v}");
    let journal = std::fs::read_to_string(record_dir(&w, "i1").join("journal")).unwrap();
    assert!(journal.contains(&disk.display().to_string()), "{journal}");
    let out = succeeded(&w.run(&["vm", "remove", "i1", "--yes"]));
    assert!(
        out.contains(&format!("  removed  log       {}\n", log.display())),
        "{out}"
    );
    assert!(!log.exists() && !disk.exists(), "{out}");
    assert!(!record_dir(&w, "i1").exists());
    // The server forgot its own journal of the run too.
    assert!(!w.srv(0).join("state/vms/i1").exists());
}

#[test]
fn start_and_autostart_on_the_server_keep_the_vm_provisioned_when_xl_cannot_run() {
    let w = World::new(1, None);
    let srv = w.srv(0);
    let o = provision(&w, "s1", "Linux_CD_Install", &["--start", "--autostart"]);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    let cfg = srv.join("xen/s1.cfg");
    let link = srv.join("xen/auto/s1.cfg");
    // The server's `xl` (xen-utils) finds no hypervisor: said plainly, the VM stays.
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(
        err.contains(&format!(
            "`s1` is provisioned, but it was not started: `xl create {}` failed",
            cfg.display()
        )),
        "{err}"
    );
    assert!(
        err.contains("is not running under the Xen hypervisor)")
            || err.contains("`xl` is not installed"),
        "{err}"
    );
    assert!(
        out.contains(&format!("  autostart: {}", link.display())),
        "{out}"
    );
    assert!(cfg.exists());
    assert_eq!(std::fs::read_link(&link).unwrap(), cfg);
    let r = json(&record_dir(&w, "s1").join("record.json"));
    let got = items(&r);
    assert!(
        got.contains(&("autostart".into(), link.display().to_string())),
        "{got:?}"
    );
    assert!(
        got.contains(&("dir".into(), srv.join("xen/auto").display().to_string())),
        "{got:?}"
    );

    // An auto-start link that is there already refuses the next VM before anything is made.
    std::os::unix::fs::symlink("/nowhere", srv.join("xen/auto/s2.cfg")).unwrap();
    let before = tree(&srv);
    let err = failed(
        &provision(&w, "s2", "Linux_CD_Install", &["--autostart"]),
        1,
    );
    assert!(
        err.contains(&format!(
            "`s2` on `srv0`: cannot provision `s2`: the auto-start link `{}` already exists",
            srv.join("xen/auto/s2.cfg").display()
        )),
        "{err}"
    );
    assert_eq!(tree(&srv), before);
    assert!(!record_dir(&w, "s2").exists());

    // `vm remove` takes the link with the VM; the directory stays while it holds s2's link.
    let o = w.run(&["vm", "remove", "s1", "--yes"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(std::fs::symlink_metadata(&link).is_err());
    assert!(!cfg.exists());
    assert!(std::fs::symlink_metadata(srv.join("xen/auto/s2.cfg")).is_ok());
}

/// A recording stand-in for the server's `xl` (NOT the real xl): `xl list` lists Domain-0
/// and the names in `running`, `xl create CFG` appends CFG to `created`.
pub fn xl_stand_in(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let xl = bin.join("xl");
    std::fs::write(
        &xl,
        format!(
            "#!/bin/bash\n# stand-in for xl, for tests\nd={d}\ncase $1 in\n\
             list) echo 'Name                                        ID   Mem VCPUs\tState\tTime(s)'\n\
                   echo 'Domain-0                                     0  1024     2     r-----      1.0'\n\
                   [[ -f $d/running ]] && while read -r n; do echo \"$n 7 512 1 -b---- 1.0\"; done < \"$d/running\"; exit 0 ;;\n\
             create) echo \"$2\" >> \"$d/created\"; exit 0 ;;\n\
             *) exit 2 ;;\nesac\n",
            d = dir.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&xl, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

#[test]
fn the_servers_xl_decides_running_and_starts_the_vm() {
    let xl = tempfile::tempdir().unwrap();
    let bin = xl_stand_in(xl.path());
    let w = World::new_with(
        1,
        None,
        &format!(
            "SetEnv PATH={}:/usr/sbin:/usr/bin:/sbin:/bin\n",
            bin.display()
        ),
    );
    let srv = w.srv(0);
    // --start with the server's (stand-in) xl: started, exit 0.
    let out = succeeded(&provision(&w, "x1", "Linux_CD_Install", &["--start"]));
    let cfg = srv.join("xen/x1.cfg");
    assert!(
        out.contains(&format!("  started: xl create {}", cfg.display())),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(xl.path().join("created")).unwrap(),
        format!("{}\n", cfg.display())
    );
    // The server's xl says x1 runs: `vm remove` refuses before anything is touched.
    std::fs::write(xl.path().join("running"), "x1\nx2\n").unwrap();
    let before = files_with_inodes(&srv);
    for args in [
        &["vm", "remove", "x1", "--yes"][..],
        &["vm", "remove", "x1", "--dry-run"],
    ] {
        let err = failed(&w.run(args), 1);
        assert!(
            err.contains("cannot remove `x1`: it is running on `srv0` (`xl list` there)"),
            "{err}"
        );
    }
    assert_eq!(files_with_inodes(&srv), before);
    assert!(record_dir(&w, "x1").join("record.json").exists());
    // ... and a new VM of a running domain's name is refused on the server, even forced.
    let err = failed(&provision(&w, "x2", "Linux_CD_Install", &["--force"]), 1);
    assert!(
        err.contains(
            "`x2` on `srv0`: cannot provision `x2`: a domain of that name is running (`xl list`)"
        ),
        "{err}"
    );
    assert_eq!(files_with_inodes(&srv), before);
    // Stopped: removed, and no note about xl (it answered).
    std::fs::write(xl.path().join("running"), "").unwrap();
    let o = w.run(&["vm", "remove", "x1", "--yes"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        !text(&o.stderr).contains("could not check"),
        "{}",
        text(&o.stderr)
    );
    assert!(!cfg.exists());
}

#[test]
fn a_lost_connection_leaves_a_record_only_when_the_clean_up_is_not_confirmed() {
    let mut w = World::new(1, None);
    // The session dies, convirt reconnects and the server cleaned up: nothing is recorded.
    let (child, _) = w.slow_on_srv0("l1", DISK16, false);
    kill_sessions(w.servers[0].sessions());
    let o = child.wait_with_output().unwrap();
    assert!(
        text(&o.stderr).contains("reconnected to `srv0`"),
        "{}",
        text(&o.stderr)
    );
    assert!(!record_dir(&w, "l1").exists());

    // The server goes away entirely: the clean-up cannot be confirmed, so the run stays
    // known as interrupted on that host.
    let (child, disk) = w.slow_on_srv0("l2", DISK16, false);
    let sessions = w.servers[0].sessions();
    drop(w.servers.pop());
    kill_sessions(sessions);
    let err = failed(&child.wait_with_output().unwrap(), 1);
    assert!(err.contains("could not reconnect to `srv0`"), "{err}");
    wait_for("the server's own clean-up", 30, || !disk.exists());
    no_script_left();
    let v = w.json_list();
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v[0]["name"], "l2");
    assert_eq!(v[0]["status"], "interrupted");
    assert_eq!(v[0]["not_checked"], "srv0: unreachable");
}

#[test]
fn a_re_pointed_host_is_refused_naming_both_host_keys() {
    let w = World::new(2, None);
    succeeded(&provision(&w, "h1", "Linux_CD_Install", DISK16));
    let r = json(&record_dir(&w, "h1").join("record.json"));
    let key = r["host_key"].as_str().unwrap().to_string();
    assert!(key.starts_with("ssh-ed25519 SHA256:"), "{key}");
    // `[hosts.srv0]` now points at srv1's sshd (another server, another host key).
    let path = w.root.join("convirt.toml");
    let toml = std::fs::read_to_string(&path).unwrap().replacen(
        &format!("port = {}\n", w.servers[0].port),
        &format!("port = {}\n", w.servers[1].port),
        1,
    );
    std::fs::write(&path, toml).unwrap();
    let before = tree(&w.srv(0));
    let err = failed(&w.run(&["vm", "remove", "h1", "--yes"]), 1);
    assert!(
        err.contains("`srv0` is not the server `h1` was provisioned on") && err.contains(&key),
        "{err}"
    );
    let err = failed(&provision(&w, "h1", "Linux_CD_Install", &["--force"]), 1);
    assert!(
        err.contains("is not the server `h1` was provisioned on"),
        "{err}"
    );
    let v = w.json_list();
    assert!(
        v[0]["not_checked"]
            .as_str()
            .unwrap_or_default()
            .contains("host key"),
        "{v}"
    );
    assert_eq!(tree(&w.srv(0)), before);
    assert!(record_dir(&w, "h1").join("record.json").exists());
}

//! VM records for real (issue #10, #12.6): provision with the shipped `common/functions`,
//! then `vm list/show/remove`; SIGKILL of convirt mid-run; name collisions; `--start` and
//! `--autostart` against a recording stand-in for `xl`, and the real `xl` wrapper's refusal;
//! `DEFAULT_BRIDGE` from a bridge made in a private network namespace.

use crate::provision::copy_dir;
use crate::{World, fails_saying, provision_args, provision_script, repo, stderr, stdout};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The records test image after the ConVirt preamble: disks through the shipped functions,
/// then `mode` decides.
const BODY: &str = r#"provision_disks
case "$mode" in
    ok) ;;
    fail) log_msg "failing on purpose"; exit 3 ;;
    sleep) printf '%s\n' "$$" > "$PID_FILE.$VM_NAME"; sleep 60 ;;
    lvm) printf '%s\0' "lvm:vg0/$VM_NAME" >> "$CONVIRT_CREATED" ;;
esac
"#;

/// A sandbox whose every path (state, configs, disks, auto-start links) is inside the world,
/// with the `Rec` image.
fn world() -> World {
    let w = World::new();
    copy_dir(
        &repo().join("image_store/common"),
        &w.store().join("common"),
    );
    let p = w.path().display().to_string();
    w.write(
        "convirt.toml",
        &format!(
            "image_store = '{p}/store'\nlog_dir = '{p}/log'\nwork_dir = '{p}/work'\nstate_dir = '{p}/state'\nxen_auto_dir = '{p}/auto'\n\n[variables]\nVM_DISKS_DIR = '{p}/disks'\nVM_CONF_DIR = '{p}/conf'\nVM_CACHE_DIR = '{p}/cache'\nDEFAULT_BRIDGE = 'xenbr0'\n"
        ),
    );
    w.write(
        "store/Rec/image.conf",
        &format!(
            "mode = 'ok'\nxvda_disk_create = 'yes'\nxvda_disk_size = 8\nxvda_disk_type = 'VBD'\nPID_FILE = '{p}/script.pid'\nroot_password = 's3cret'\n"
        ),
    );
    w.write(
        "store/Rec/vm_conf.template",
        "name = ''\nmemory = 256\nkernel = '/usr/lib/xen/boot/pv-grub.gz'\ndisk = ['file:$VM_DISKS_DIR/$VM_NAME.disk,xvda,w']\nvif = ['bridge=$DEFAULT_BRIDGE']\n",
    );
    w.write_exec("store/Rec/provision.sh", &provision_script(false, BODY));
    w.write("store/Rec/description.htm", "<body>Records</body>");
    w
}

/// Output made comparable: the temp path, times, digests, pids and log sizes replaced.
fn stable(w: &World, text: &str) -> String {
    let t = w.filter(text);
    let subs = [
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "[TIME]"),
        (r"sha256:[0-9a-f]{64}", "[DIGEST]"),
        (r"pid \d+", "pid [PID]"),
        // Only disk sizes are the image's; others vary with the temp path's length.
        (
            r"(?m)^(  (log|file|config) +\S+) \(\d+ bytes\)",
            "$1 ([SIZE])",
        ),
        (r"in \d+\.\d s", "in [SECS] s"),
        (r"work/[A-Za-z0-9_-]+\.[A-Za-z0-9]{6}", "work/[RUN]"),
    ];
    let mut t = t.replace(
        &format!("convirt:  {}", env!("CARGO_PKG_VERSION")),
        "convirt:  [VERSION]",
    );
    for (re, with) in subs {
        t = regex::Regex::new(re)
            .unwrap()
            .replace_all(&t, with)
            .into_owned();
    }
    t
}

/// Every file and directory under the world's VM paths, with its content.
fn files(w: &World) -> Vec<(String, Vec<u8>)> {
    files_in(w, &["conf", "disks", "log", "auto", "work"])
}

/// What a run may touch outside convirt's own log and work directories.
fn vm_files(w: &World) -> Vec<(String, Vec<u8>)> {
    let mut v = files_in(w, &["conf", "disks", "auto"]);
    // convirt's work directory holds nothing but the lock files afterwards.
    v.extend(
        files_in(w, &["work"])
            .into_iter()
            .filter(|(p, _)| p != "[TMP]/work"),
    );
    // and the log directory nothing of the run.
    v.extend(
        files_in(w, &["log"])
            .into_iter()
            .filter(|(p, _)| p.ends_with(".log") || p.ends_with(".conf") || p.ends_with(".args")),
    );
    v
}

fn files_in(w: &World, tops: &[&str]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for top in tops {
        for e in walkdir::WalkDir::new(w.path().join(top))
            .sort_by_file_name()
            .into_iter()
            .flatten()
        {
            if e.path().ends_with("locks")
                || e.path().parent().is_some_and(|p| p.ends_with("locks"))
            {
                continue; // lock files stay by design (flock, not existence, is the lock)
            }
            let data = if e.file_type().is_file() {
                std::fs::read(e.path()).unwrap()
            } else {
                vec![]
            };
            out.push((w.filter(&e.path().display().to_string()), data));
        }
    }
    out
}

fn ok(o: &std::process::Output) {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        stdout(o),
        stderr(o)
    );
}

#[test]
fn provision_two_then_list_show_and_remove_one_leaves_the_other_and_a_bystander() {
    let w = world();
    let bystander = w.write("disks/old.disk", "was here before");
    let o = w.conv(&["provision", "--vm", "a", "b", "--image", "Rec"]);
    ok(&o);

    let o = w.conv(&["vm", "list"]);
    ok(&o);
    insta::assert_snapshot!("vm_list", stable(&w, &stdout(&o)));

    let o = w.conv(&["vm", "list", "--json"]);
    ok(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for (row, vm) in rows.iter().zip(["a", "b"]) {
        assert_eq!(row["name"], vm);
        assert_eq!(row["status"], "provisioned");
        assert_eq!(row["host"], "localhost");
        assert_eq!(row["image"], "Rec");
        assert_eq!(row["config"]["present"], true);
        let disks = row["disks"].as_array().unwrap();
        assert_eq!(disks.len(), 1, "{row}");
        assert_eq!(
            disks[0]["path"],
            w.path()
                .join(format!("disks/{vm}.disk"))
                .display()
                .to_string()
        );
        assert_eq!(disks[0]["size"], 8 << 20);
        assert_eq!(disks[0]["present"], true);
    }

    let o = w.conv(&["vm", "show", "a"]);
    ok(&o);
    let shown = stable(&w, &stdout(&o));
    assert!(shown.contains("root_password = \"********\""), "{shown}");
    assert!(!shown.contains("s3cret"));
    insta::assert_snapshot!("vm_show", shown);
    let record = std::fs::read_to_string(w.path().join("state/vms/a/record.json")).unwrap();
    assert!(!record.contains("s3cret"), "a secret reached the record");

    let o = w.conv(&["vm", "remove", "a", "--dry-run"]);
    ok(&o);
    insta::assert_snapshot!("vm_remove_dry_run", stable(&w, &stdout(&o)));
    assert!(
        w.path().join("conf/a.cfg").exists(),
        "a dry run removed something"
    );

    let b_files: Vec<_> = files(&w)
        .into_iter()
        .filter(|(p, _)| p.contains("/b.") || p.contains("_b"))
        .collect();
    assert!(b_files.len() >= 5, "{b_files:?}");
    // Not on a terminal: no question, no removal without --yes.
    let o = w.conv(&["vm", "remove", "a"]);
    fails_saying(&o, "without confirmation");
    assert!(w.path().join("conf/a.cfg").exists());

    let o = w.conv(&["vm", "remove", "a", "--yes"]);
    ok(&o);
    insta::assert_snapshot!("vm_remove", stable(&w, &stdout(&o)));
    let after = files(&w);
    let of_a: Vec<_> = after
        .iter()
        .filter(|(p, _)| p.contains("/a.") || p.contains("_a"))
        .collect();
    assert!(of_a.is_empty(), "files of `a` left: {of_a:?}");
    for f in &b_files {
        assert!(after.contains(f), "{} of `b` changed or went", f.0);
    }
    assert_eq!(
        std::fs::read_to_string(&bystander).unwrap(),
        "was here before"
    );
    assert!(!w.path().join("state/vms/a").exists());
    let o = w.conv(&["vm", "show", "a"]);
    fails_saying(&o, "no record of a VM `a`");
    let o = w.conv(&["vm", "list"]);
    assert!(stdout(&o).contains("\nb "), "{}", stdout(&o));
    assert!(!stdout(&o).contains("\na "), "{}", stdout(&o));
}

#[test]
fn a_disk_replaced_since_provisioning_or_not_in_the_record_is_never_removed() {
    let w = world();
    ok(&w.conv(&provision_args("c", "Rec", &[])));
    // The admin swapped the disk for another file, and put a file of their own beside it.
    let disk = w.path().join("disks/c.disk");
    let mine = w.path().join("disks/c.disk.backup");
    std::fs::rename(&disk, &mine).unwrap();
    std::fs::write(&disk, "the admin's new disk").unwrap();
    let o = w.conv(&["vm", "remove", "c", "--yes"]);
    ok(&o);
    assert!(
        stdout(&o).contains("replaced since provisioning"),
        "{}",
        stdout(&o)
    );
    assert_eq!(
        std::fs::read_to_string(&disk).unwrap(),
        "the admin's new disk"
    );
    assert_eq!(std::fs::metadata(&mine).unwrap().len(), 8 << 20);
    assert!(!w.path().join("conf/c.cfg").exists());
}

#[test]
fn keep_disks_keeps_the_disks_and_removes_the_rest() {
    let w = world();
    ok(&w.conv(&provision_args("k", "Rec", &[])));
    let o = w.conv(&["vm", "remove", "k", "--yes", "--keep-disks", "--json"]);
    ok(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let steps = v[0]["steps"].as_array().unwrap();
    let disk = steps.iter().find(|s| s["item"]["kind"] == "disk").unwrap();
    assert_eq!(disk["action"], "kept");
    assert_eq!(disk["why"], "--keep-disks");
    let config = steps
        .iter()
        .find(|s| s["item"]["kind"] == "config")
        .unwrap();
    assert_eq!(config["action"], "removed");
    assert!(w.path().join("disks/k.disk").exists());
    assert!(!w.path().join("conf/k.cfg").exists());
    assert!(!w.path().join("log/Rec/Rec_k.log").exists());
    let o = w.conv(&["vm", "list", "--json"]);
    assert_eq!(stdout(&o).trim(), "[]");
}

#[test]
fn a_failed_run_kept_with_keep_is_listed_refused_and_removed_cleanly() {
    let w = world();
    std::fs::create_dir_all(w.path().join("disks")).unwrap();
    w.write("disks/other", "not ours");
    let before = vm_files(&w);
    let o = w.conv(&provision_args(
        "f",
        "Rec",
        &["--set", "mode=fail", "--keep"],
    ));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        w.path().join("disks/f.disk").exists(),
        "--keep kept nothing"
    );
    let o = w.conv(&["vm", "list"]);
    ok(&o);
    insta::assert_snapshot!("vm_list_failed_kept", stable(&w, &stdout(&o)));
    let o = w.conv(&provision_args("f", "Rec", &[]));
    fails_saying(
        &o,
        "cannot provision `f`: an earlier provisioning run failed and was kept (--keep)",
    );
    ok(&w.conv(&["vm", "remove", "f", "--yes"]));
    assert_eq!(vm_files(&w), before);
}

fn wait_for_file(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(t) = std::fs::read_to_string(path)
            && t.ends_with('\n')
        {
            return t.trim().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts `provision --vm NAME` in `sleep` mode, waits until the script has made its disk,
/// then SIGKILLs convirt (only convirt: the script lives on, as it would). Returns the
/// script's pid (its process group).
fn provision_and_kill(w: &World, vm: &str) -> i32 {
    provision_and_kill_after(w, vm, &|| {})
}

fn provision_and_kill_after(w: &World, vm: &str, during: &dyn Fn()) -> i32 {
    let mut child = w.conv_spawn(&provision_args(vm, "Rec", &["--set", "mode=sleep"]), true);
    let pid: i32 = wait_for_file(&w.path().join(format!("script.pid.{vm}")))
        .parse()
        .unwrap();
    during();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    pid
}

fn kill_group(pgid: i32) {
    // SAFETY: a signal to a process group this test started.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pgid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sigkill_mid_provision_is_reported_and_vm_remove_restores_the_disk_directory() {
    let w = world();
    w.write("disks/keep.me", "a file from before the run");
    let before = vm_files(&w);
    let script = provision_and_kill_after(&w, "k1", &|| {
        // While the run goes on, it is listed as running and cannot be removed.
        let o = w.conv(&["vm", "list"]);
        assert!(stdout(&o).contains("k1    running "), "{}", stdout(&o));
        let o = w.conv(&["vm", "remove", "k1", "--yes"]);
        fails_saying(&o, "cannot remove `k1` is being provisioned right now");
    });
    assert!(w.path().join("disks/k1.disk").exists());

    // The killed run's script still runs in its work dir: nothing may touch its files.
    let o = w.conv(&provision_args("k1", "Rec", &[]));
    fails_saying(&o, "a script of an interrupted run is still running");
    let o = w.conv(&["vm", "remove", "k1", "--yes"]);
    fails_saying(&o, "still running");
    kill_group(script);

    let o = w.conv(&["vm", "list"]);
    ok(&o);
    insta::assert_snapshot!("vm_list_interrupted", stable(&w, &stdout(&o)));

    // #12.6: the next provision names the interrupted run and its leftovers (the lock is free).
    let o = w.conv(&provision_args("k1", "Rec", &[]));
    assert_eq!(o.status.code(), Some(1));
    insta::assert_snapshot!("provision_after_sigkill", stable(&w, &stderr(&o)));

    let o = w.conv(&["vm", "remove", "k1", "--yes"]);
    ok(&o);
    assert_eq!(
        vm_files(&w),
        before,
        "the run's leftovers were not removed exactly"
    );
    assert!(!w.path().join("state/vms/k1").exists());
}

#[test]
fn after_sigkill_force_cleans_the_leftovers_and_provisions() {
    let w = world();
    let before = vm_files(&w);
    let script = provision_and_kill(&w, "k2");
    kill_group(script);
    let o = w.conv(&provision_args("k2", "Rec", &["--force"]));
    ok(&o);
    let out = stable(&w, &stdout(&o));
    assert!(
        out.contains("replaced (--force): [TMP]/disks/k2.disk (left by an interrupted run)"),
        "{out}"
    );
    // The killed run's work directory went with its leftovers.
    let work: Vec<_> = std::fs::read_dir(w.path().join("work"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name() != "locks")
        .collect();
    assert!(work.is_empty(), "{work:?}");
    let o = w.conv(&["vm", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["status"], "provisioned");
    ok(&w.conv(&["vm", "remove", "k2", "--yes"]));
    assert_eq!(vm_files(&w), before);
}

#[test]
fn the_same_vm_in_the_other_format_or_with_a_record_is_refused_before_anything_is_made() {
    let w = world();
    ok(&w.conv(&provision_args("x", "Rec", &["--format", "xm"])));
    let before = files(&w);
    let o = w.conv(&provision_args("x", "Rec", &["--format", "xl"]));
    assert_eq!(o.status.code(), Some(1));
    insta::assert_snapshot!("xm_then_xl_refused", stable(&w, &stderr(&o)));
    assert_eq!(files(&w), before, "a refused run wrote something");

    // The config gone by hand, the record still names the disk: still refused.
    std::fs::remove_file(w.path().join("conf/x")).unwrap();
    let o = w.conv(&provision_args("x", "Rec", &["--format", "xl"]));
    fails_saying(
        &o,
        "cannot provision `x`: it was provisioned already from image `Rec`",
    );

    // --force replaces, and the other format's config does not stay beside the new one.
    ok(&w.conv(&provision_args("x", "Rec", &["--format", "xm", "--force"])));
    assert!(w.path().join("conf/x").exists());
    let o = w.conv(&provision_args("x", "Rec", &["--format", "xl", "--force"]));
    ok(&o);
    assert!(w.path().join("conf/x.cfg").exists());
    assert!(!w.path().join("conf/x").exists());
}

#[test]
fn a_several_vm_run_summary_lists_each_vm_and_its_result() {
    let w = world();
    w.write("disks/s2.disk", "x");
    let o = w.conv(&["provision", "--vm", "s1", "s2", "--image", "Rec"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stable(&w, &stderr(&o));
    let summary = &err[err.find("summary:").expect("no summary")..];
    insta::assert_snapshot!("several_vm_summary", summary);
}

/// A recording stand-in for `xl` (NOT Xen): it appends its arguments to `xl.calls` and
/// answers `list` from `xl.domains`, exiting 1 when `xl.broken` exists.
fn fake_xl(w: &World) -> PathBuf {
    let p = w.path().display().to_string();
    let bin = w.path().join("fake-bin");
    w.write_exec(
        "fake-bin/xl",
        &format!(
            "#!/bin/bash\n# recording stand-in for xl, for tests only\nprintf '%s\\n' \"$*\" >> '{p}/xl.calls'\nif [[ -e '{p}/xl.broken' ]]; then echo 'ERROR:  Can'\"'\"'t find hypervisor information in sysfs!' >&2; exit 1; fi\nif [[ \"$1\" == list ]]; then\n  echo 'Name                                        ID   Mem VCPUs\tState\tTime(s)'\n  echo 'Domain-0                                     0  1024     2     r-----      12.3'\n  cat '{p}/xl.domains' 2>/dev/null || true\nfi\n"
        ),
    );
    let _ = std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755));
    bin
}

fn with_path(w: &World, bin: &Path, args: &[&str]) -> std::process::Output {
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    w.conv_cmd(args).env("PATH", path).output().unwrap()
}

#[test]
fn start_and_autostart_call_xl_create_and_link_the_config() {
    let w = world();
    let bin = fake_xl(&w);
    let o = with_path(
        &w,
        &bin,
        &provision_args("s", "Rec", &["--start", "--autostart"]),
    );
    ok(&o);
    let out = stable(&w, &stdout(&o));
    assert!(out.contains("  autostart: [TMP]/auto/s.cfg\n"), "{out}");
    assert!(
        out.contains("  started: xl create [TMP]/conf/s.cfg\n"),
        "{out}"
    );
    let calls = std::fs::read_to_string(w.path().join("xl.calls")).unwrap();
    assert_eq!(
        w.filter(&calls),
        "list\ncreate [TMP]/conf/s.cfg\n",
        "the running-domain check, then xl create"
    );
    let link = w.path().join("auto/s.cfg");
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        w.path().join("conf/s.cfg")
    );

    // vm remove asks xl whether it runs, and removes the link with the rest.
    let o = with_path(&w, &bin, &["vm", "remove", "s", "--yes"]);
    ok(&o);
    assert!(std::fs::symlink_metadata(&link).is_err());
    assert!(!w.path().join("conf/s.cfg").exists());
}

#[test]
fn a_running_domain_is_refused_by_provision_even_with_force_and_by_vm_remove() {
    let w = world();
    let bin = fake_xl(&w);
    ok(&with_path(&w, &bin, &provision_args("busy", "Rec", &[])));
    w.write(
        "xl.domains",
        "busy                                         7   256     1     -b----       3.0\n",
    );
    let o = with_path(&w, &bin, &provision_args("busy", "Rec", &["--force"]));
    fails_saying(
        &o,
        "cannot provision `busy`: a domain of that name is running (`xl list`)",
    );
    let o = with_path(&w, &bin, &["vm", "remove", "busy", "--yes"]);
    fails_saying(&o, "cannot remove `busy` is running");
    assert!(w.path().join("conf/busy.cfg").exists());

    // When xl cannot answer, vm remove says it could not check, and goes on.
    w.write("xl.broken", "");
    let o = with_path(&w, &bin, &["vm", "remove", "busy", "--yes"]);
    ok(&o);
    assert!(
        stderr(&o).contains(
            "note: could not check whether `busy` is running: `xl list` failed (exit status 1)"
        ),
        "{}",
        stderr(&o)
    );
    assert!(!w.path().join("conf/busy.cfg").exists());
}

#[test]
fn start_with_the_real_xl_wrapper_and_no_hypervisor_gives_a_clear_error_and_keeps_the_vm() {
    let w = world();
    // Debian's /usr/sbin/xl refuses without a hypervisor, as on this machine.
    let o = w
        .conv_cmd(&provision_args("r", "Rec", &["--start"]))
        .env(
            "PATH",
            format!("/usr/sbin:{}", std::env::var("PATH").unwrap_or_default()),
        )
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = stable(&w, &stderr(&o));
    insta::assert_snapshot!("start_without_hypervisor", err);
    assert!(
        w.path().join("conf/r.cfg").exists(),
        "the VM must stay provisioned"
    );
    let o = w.conv(&["vm", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["status"], "provisioned");
}

/// Runs convirt in a private network and mount namespace with the given bridges made in it.
fn in_netns(w: &World, bridges: &[&str], args: &[&str]) -> std::process::Output {
    let mut script = String::from("set -e\nmount -t sysfs sysfs /sys\n");
    for b in bridges {
        script.push_str(&format!("ip link add {b} type bridge\n"));
    }
    script.push_str("exec \"$@\"\n");
    let mut c = Command::new("unshare");
    c.args(["-nm", "bash", "-c", &script, "bash"])
        .arg(assert_cmd::cargo::cargo_bin("convirt"))
        .arg("--config")
        .arg(w.path().join("convirt.toml"))
        .args(args)
        .env_clear()
        .envs(w.env());
    c.output().unwrap()
}

fn bridge_line(out: &str) -> String {
    out.lines()
        .find(|l| l.trim_start().starts_with("DEFAULT_BRIDGE"))
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn default_bridge_is_the_first_bridge_of_the_host() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: network namespaces need root");
        return;
    }
    let w = world();
    // This test wants the built-in fallback: no site DEFAULT_BRIDGE.
    let toml = std::fs::read_to_string(w.path().join("convirt.toml")).unwrap();
    w.write(
        "convirt.toml",
        &toml.replace("DEFAULT_BRIDGE = 'xenbr0'\n", ""),
    );
    let dry = ["provision", "--vm", "n", "--image", "Rec", "--dry-run"];
    let o = in_netns(&w, &["docker0", "br7", "br3"], &dry);
    ok(&o);
    let out = stdout(&o);
    assert_eq!(
        bridge_line(&out),
        "DEFAULT_BRIDGE = 'br7' # host bridge, `/sys/class/net/br7/bridge`"
    );
    assert!(out.contains("vif = [ \"bridge=br7\" ]"), "{out}");

    let o = in_netns(&w, &[], &dry);
    ok(&o);
    assert_eq!(
        bridge_line(&stdout(&o)),
        "DEFAULT_BRIDGE = 'xenbr0' # built-in: no bridge in `/sys/class/net`"
    );

    // image show names the origin too; --set still wins.
    let o = in_netns(&w, &["br7"], &["image", "show", "Rec"]);
    ok(&o);
    assert!(
        bridge_line(&stdout(&o)).contains("'br7'") && stdout(&o).contains("host bridge"),
        "{}",
        stdout(&o)
    );
    let mut set = dry.to_vec();
    set.extend(["--set", "DEFAULT_BRIDGE=br9"]);
    let o = in_netns(&w, &["br7"], &set);
    ok(&o);
    assert!(bridge_line(&stdout(&o)).contains("'br9'"), "{}", stdout(&o));
}

#[test]
fn lvm_volumes_a_record_names_are_removed_with_lvremove() {
    let w = world();
    let p = w.path().display().to_string();
    // A recording stand-in for `lvremove` (NOT LVM: this kernel has no device-mapper, see
    // machine-facts); it fails while `lvremove.fail` exists.
    w.write_exec(
        "fake-bin/lvremove",
        &format!(
            "#!/bin/bash\n# recording stand-in for lvremove, for tests only\nif [[ -e '{p}/lvremove.fail' ]]; then echo '  Logical volume vg0/l is used by another device.' >&2; exit 5; fi\nprintf '%s\\n' \"$*\" >> '{p}/lvremove.calls'\n"
        ),
    );
    let bin = w.path().join("fake-bin");
    ok(&w.conv(&provision_args("l", "Rec", &["--set", "mode=lvm"])));
    let o = w.conv(&["vm", "show", "l"]);
    assert!(stdout(&o).contains("  lvm       vg0/l\n"), "{}", stdout(&o));

    let o = with_path(
        &w,
        &bin,
        &["vm", "remove", "l", "--dry-run", "--keep-disks"],
    );
    ok(&o);
    assert!(
        stdout(&o).contains("  kept     lvm       vg0/l (--keep-disks)"),
        "{}",
        stdout(&o)
    );
    w.write("lvremove.fail", "");
    let o = with_path(&w, &bin, &["vm", "remove", "l", "--yes"]);
    fails_saying(
        &o,
        "`l` was not removed completely: `vg0/l`: lvremove: Logical volume vg0/l is used by another device.",
    );
    assert!(
        w.path().join("state/vms/l/record.json").exists(),
        "the record must stay"
    );
    std::fs::remove_file(w.path().join("lvremove.fail")).unwrap();
    let o = with_path(&w, &bin, &["vm", "remove", "l", "--yes"]);
    ok(&o);
    assert_eq!(
        std::fs::read_to_string(w.path().join("lvremove.calls")).unwrap(),
        "-f -- vg0/l\n"
    );
    assert!(!w.path().join("state/vms/l").exists());
}

#[test]
fn a_broken_record_is_an_error_naming_its_file() {
    let w = world();
    ok(&w.conv(&provision_args("z", "Rec", &[])));
    w.write("state/vms/z/record.json", "{\"format_version\": 1,");
    let o = w.conv(&["vm", "list"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        w.filter(&stderr(&o))
            .contains("the record `[TMP]/state/vms/z/record.json` is not valid:"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn on_a_terminal_vm_remove_asks_and_no_keeps_everything() {
    if Command::new("script").arg("--version").output().is_err() {
        panic!("`script` (util-linux) is needed to give convirt a terminal");
    }
    let w = world();
    ok(&w.conv(&provision_args("t", "Rec", &[])));
    let run = |answer: &str| {
        let cmd = format!(
            "{} --config {} vm remove t",
            assert_cmd::cargo::cargo_bin("convirt").display(),
            w.path().join("convirt.toml").display()
        );
        let mut c = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .env_clear()
            .envs(w.env())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        c.stdin
            .take()
            .unwrap()
            .write_all(answer.as_bytes())
            .unwrap();
        c.wait_with_output().unwrap()
    };
    let o = run("n\n");
    let out = stdout(&o);
    assert!(
        out.contains("remove `t` and what their provisioning created? [y/N]"),
        "{out}"
    );
    assert!(out.contains("nothing removed"), "{out}");
    assert!(w.path().join("conf/t.cfg").exists());
    let o = run("y\n");
    assert!(stdout(&o).contains("removed VM `t`"), "{}", stdout(&o));
    assert!(!w.path().join("conf/t.cfg").exists());
}

#[test]
fn xl_is_found_in_sbin_without_it_on_path_like_every_tool() {
    let w = world();
    // /usr/bin and /bin only, as a normal user's login PATH: Debian installs `xl` in
    // /usr/sbin, where convirt looks too (issue #18), so the error is about Xen itself.
    assert!(!Path::new("/usr/bin/xl").exists() && !Path::new("/bin/xl").exists());
    let o = w
        .conv_cmd(&provision_args("nx", "Rec", &["--start"]))
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = w.filter(&stderr(&o));
    if Path::new("/usr/sbin/xl").exists() {
        assert!(
            err.contains("error: `nx` is provisioned, but it was not started: `xl create [TMP]/conf/nx.cfg` failed"),
            "{err}"
        );
    } else {
        assert!(
            err.contains("`xl` is not installed (looked on PATH and in /usr/local/sbin, /usr/sbin, /sbin); install the Debian package xen-utils"),
            "{err}"
        );
    }
    assert!(w.path().join("conf/nx.cfg").exists());
}

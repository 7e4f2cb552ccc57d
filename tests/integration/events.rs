//! `provision --events`: one JSON object per line per event, each VM's steps in order and
//! its last event its outcome, for one VM, a failing one, and two running side by side; and
//! the one progress display fed by the same events (a status line on a terminal, plain lines).

use crate::provision::{probe, sandbox};
use crate::{World, provision_script, stderr, stdout};

/// The events of a run's stdout, each line one JSON object.
fn events(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}\n{out}")))
        .collect()
}

/// One VM's events as `event` or `event:step`/`event:outcome`, output lines left out.
fn sequence(all: &[serde_json::Value], vm: &str) -> Vec<String> {
    all.iter()
        .filter(|e| e["vm"] == vm && e["event"] != "line")
        .map(|e| {
            let kind = e["event"].as_str().unwrap();
            match kind {
                "step" => format!("step:{}", e["step"].as_str().unwrap()),
                "finished" => format!("finished:{}", e["outcome"].as_str().unwrap()),
                _ => kind.to_string(),
            }
        })
        .collect()
}

const RUN: [&str; 5] = [
    "step:plan",
    "started",
    "step:lock",
    "step:work_dir",
    "step:script",
];

fn provisioned() -> Vec<String> {
    RUN.iter()
        .copied()
        .chain(["step:install", "finished:provisioned"])
        .map(String::from)
        .collect()
}

#[test]
fn one_vm_s_events_come_in_order_and_end_with_its_result() {
    let w = sandbox();
    probe(&w, "");
    let o = w.conv(&["provision", "--vm", "web1", "--image", "Probe", "--events"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let all = events(&stdout(&o));
    assert_eq!(sequence(&all, "web1"), provisioned());
    let started = all.iter().find(|e| e["event"] == "started").unwrap();
    let log = w.path().join("log/Probe/Probe_web1.log");
    assert_eq!(started["image"], "Probe");
    assert_eq!(started["log"], log.display().to_string());
    assert_eq!(started["host"], serde_json::Value::Null);
    // The script's output is in the stream, between `script` and `install`.
    let at = |pred: &dyn Fn(&serde_json::Value) -> bool| all.iter().position(pred).unwrap();
    let line = at(&|e| {
        e["event"] == "line"
            && e["line"]
                .as_str()
                .unwrap()
                .contains("probe: image Probe vm web1 mode ok")
    });
    assert!(at(&|e| e["step"] == "script") < line && line < at(&|e| e["step"] == "install"));
    let last = all.last().unwrap();
    assert_eq!(
        last["result"]["config"],
        w.path().join("conf/web1.cfg").display().to_string()
    );
    // The stream replaces the summary: stdout holds nothing else, stderr no progress.
    assert_eq!(stderr(&o), "");
}

#[test]
fn a_failing_vm_s_events_end_in_its_failure_with_its_log() {
    let w = sandbox();
    probe(&w, "");
    let o = w.conv(&[
        "provision",
        "--vm",
        "bad",
        "--image",
        "Probe",
        "--set",
        "mode=exit3",
        "--events",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let all = events(&stdout(&o));
    let mut want: Vec<String> = RUN.iter().map(|s| s.to_string()).collect();
    want.extend(["step:cleanup".into(), "finished:failed".into()]);
    assert_eq!(sequence(&all, "bad"), want);
    let last = all.last().unwrap();
    assert_eq!(
        last["log"],
        w.path()
            .join("log/Probe/Probe_bad.log")
            .display()
            .to_string()
    );
    assert_eq!(last["interrupted"], false);
    assert!(
        last["error"]
            .as_str()
            .unwrap()
            .contains("provision.sh exited with status 3"),
        "{last}"
    );
    // The error is still reported for a human, on stderr.
    assert!(
        stderr(&o).contains("provisioning `bad` failed"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn two_vms_with_two_jobs_interleave_and_each_sequence_is_complete() {
    let w = sandbox();
    let pair = w.path().join("pair");
    std::fs::create_dir_all(&pair).unwrap();
    w.write(
        "store/Pair/image.conf",
        &format!("PAIR_DIR = '{}'\n", pair.display()),
    );
    w.write("store/Pair/vm_conf.template", "name = ''\nmemory = 256\n");
    // Each script waits (at most a minute) until both have started: the two runs overlap.
    w.write_exec(
        "store/Pair/provision.sh",
        &provision_script(
            true,
            r#"touch "$PAIR_DIR/$VM_NAME"
for _ in $(seq 600); do
    [ "$(ls "$PAIR_DIR" | wc -l)" -ge 2 ] && break
    sleep 0.1
done
[ "$(ls "$PAIR_DIR" | wc -l)" -ge 2 ] || exit 1
log_msg "$VM_NAME saw both"
"#,
        ),
    );
    w.write("store/Pair/description.htm", "<body>Pair</body>");
    let o = w.conv(&[
        "provision",
        "--vm",
        "p1",
        "p2",
        "--image",
        "Pair",
        "--jobs",
        "2",
        "--events",
    ]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let all = events(&stdout(&o));
    for vm in ["p1", "p2"] {
        assert_eq!(sequence(&all, vm), provisioned(), "{vm}");
        assert!(
            all.iter().any(|e| e["vm"] == vm
                && e["line"]
                    .as_str()
                    .is_some_and(|l| l.contains(&format!("{vm} saw both")))),
            "{vm} ran beside the other"
        );
    }
    // Interleaved: each VM started before the other finished.
    let at = |vm: &str, kind: &str| {
        all.iter()
            .position(|e| e["vm"] == vm && e["event"] == kind)
            .unwrap()
    };
    assert!(at("p2", "started") < at("p1", "finished"));
    assert!(at("p1", "started") < at("p2", "finished"));
}

#[test]
fn events_and_dry_run_do_not_go_together() {
    let w = World::new();
    let o = w.run(&["provision", "--vm", "a", "--dry-run", "--events"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--events"), "{}", stderr(&o));
}

#[test]
fn on_a_terminal_each_running_vm_has_a_status_line_with_its_output() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let w = sandbox();
    let go = w.path().join("go");
    w.write(
        "store/Held/image.conf",
        &format!("GO = '{}'\n", go.display()),
    );
    w.write("store/Held/vm_conf.template", "name = ''\nmemory = 256\n");
    // The script shows a line, then waits (at most a minute) until the test has seen it.
    w.write_exec(
        "store/Held/provision.sh",
        &provision_script(
            true,
            r#"echo "held-here"
for _ in $(seq 600); do [ -e "$GO" ] && break; sleep 0.1; done
"#,
        ),
    );
    w.write("store/Held/description.htm", "<body>Held</body>");
    let cmd = format!(
        "{} --config {} provision --vm tty1 --image Held",
        env!("CARGO_BIN_EXE_convirt"),
        w.path().join("convirt.toml").display()
    );
    let mut c = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env_clear()
        .envs(w.env())
        .env("TERM", "xterm")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("`script` (util-linux) gives convirt a terminal");
    let mut out = c.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    // Read the terminal until the status line shows the VM and its script's line.
    while !String::from_utf8_lossy(&seen).contains("held-here") {
        let n = out.read(&mut buf).unwrap();
        assert!(n > 0, "{}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    std::fs::write(&go, "").unwrap();
    out.read_to_end(&mut seen).unwrap();
    assert!(c.wait().unwrap().success());
    let screen = String::from_utf8_lossy(&seen);
    let line = screen
        .split(['\r', '\n'])
        .find(|l| l.contains("held-here"))
        .unwrap();
    assert!(line.contains("tty1 ["), "{line:?}");
    assert!(
        screen.contains("provisioned `tty1` from `Held`"),
        "{screen}"
    );
}

#[test]
fn without_a_terminal_verbose_shows_each_step_and_the_output() {
    let w = sandbox();
    probe(&w, "");
    let o = w.conv(&["-v", "provision", "--vm", "web1", "--image", "Probe"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    let at = |s: &str| err.find(s).unwrap_or_else(|| panic!("{s}: {err}"));
    assert!(at("web1: planning") < at("provisioning `web1` from image `Probe`"));
    assert!(at("web1: taking the lock, checking") < at("web1: running provision.sh"));
    assert!(at("web1: running provision.sh") < at("web1 | "));
    assert!(at("web1 | ") < at("web1: installing the config"));
}

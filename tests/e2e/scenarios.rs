//! One table of scenarios, each run on this machine and with `--host` against a private sshd
//! on 127.0.0.1 (issue #17.7): the two transports must give the same exit status, the same
//! messages (paths and the `VM on HOST` framing filtered), the same files left in the disk,
//! config, log, work and state directories, the same record (status and items), and the
//! same progress events (each run is made with `--events`: the steps of the engine at both
//! ends, issue #17.5; the `connect` step a server's VM has in front is left out). Each
//! row's result is an insta snapshot (`tests/e2e/snapshots/`); a drift between the engine's
//! two transports fails the row that shows it.
//!
//! Rows about a lost connection have no connection on this machine: there the same moment
//! is the terminal hanging up (SIGHUP to convirt), which is what the server's engine lives
//! through when its channel goes. Those rows, the killed engine and the server gone for good
//! compare the records and files left (the engine's outcome) and snapshot each transport's
//! exit status and messages, which differ by nature (this machine's convirt is the one cut
//! off). In every row, whatever a record names is there exactly as it says, and nothing of
//! the VM is left that no record names (`records_match_the_files`).
//!
//! Steps that are too short to hit by timing (install, report, `--start`, before the script)
//! are held with the engine's test hook `CONVIRT_TEST_PAUSE` (docs/remote.md).

use super::remote::{DISK16, World, processes, signal, text, tree, wait_for};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Output};

/// Where the engine is held (`CONVIRT_TEST_PAUSE`) or what runs when the act happens.
#[derive(Clone, Copy, Debug)]
enum At {
    /// The script runs (the `Waits` image's last step).
    Script,
    /// A pause point of the engine: `script`, `install`, `report`, `start`.
    Pause(&'static str),
}

/// How a scenario ends.
#[derive(Clone, Copy, Debug)]
enum Act {
    /// Runs to the end.
    Run,
    /// Ctrl-C while the script runs.
    CtrlC,
    /// The connection drops at `At` (this machine: the terminal hangs up).
    Drop(At),
    /// The engine is SIGKILLed while the script runs (its script's process group too, as a
    /// crash of the machine would): on a server `convirt __serve`, here convirt itself.
    KillEngine,
    /// The server goes away for good while the script runs (sshd stopped, the sessions
    /// killed), then comes back; `vm list` then reconciles. Here: the terminal hangs up.
    ServerGone,
    /// The VM config directory is a full tmpfs.
    FullConfigDir,
    /// A run whose engine was SIGKILLed first, then this one with `--force`.
    ForceOverInterrupted,
    /// Provisioned, then the disk is replaced by another file, then `vm remove --yes`.
    RemoveByIdentity,
}

struct Row {
    name: &'static str,
    image: &'static str,
    args: &'static [&'static str],
    /// A VM config of that name is there before the run.
    config_before: bool,
    act: Act,
}

impl Row {
    /// Whether the act is one whose exit status and messages differ by transport (see the
    /// module's comment).
    fn transport_specific(&self) -> bool {
        matches!(self.act, Act::Drop(_) | Act::KillEngine | Act::ServerGone)
    }
}

const fn row(
    name: &'static str,
    image: &'static str,
    args: &'static [&'static str],
    act: Act,
) -> Row {
    Row {
        name,
        image,
        args,
        config_before: false,
        act,
    }
}

const ROWS: &[Row] = &[
    row("success", "Linux_CD_Install", &[], Act::Run),
    row("failing script", "Fails", &[], Act::Run),
    row("failing script, --keep", "Fails", &["--keep"], Act::Run),
    row("timeout", "Waits", &["--timeout", "3"], Act::Run),
    row("Ctrl-C", "Waits", &[], Act::CtrlC),
    row(
        "--start where no hypervisor runs",
        "Linux_CD_Install",
        &["--start"],
        Act::Run,
    ),
    Row {
        config_before: true,
        ..row(
            "a config of that name exists",
            "Linux_CD_Install",
            &[],
            Act::Run,
        )
    },
    Row {
        config_before: true,
        ..row(
            "--force over an existing config",
            "Linux_CD_Install",
            &["--force"],
            Act::Run,
        )
    },
    row(
        "connection dropped before the script",
        "Linux_CD_Install",
        &[],
        Act::Drop(At::Pause("script")),
    ),
    row(
        "connection dropped during the script",
        "Waits",
        &[],
        Act::Drop(At::Script),
    ),
    row(
        "connection dropped during install",
        "Linux_CD_Install",
        &[],
        Act::Drop(At::Pause("install")),
    ),
    row(
        "connection dropped during the report",
        "Linux_CD_Install",
        &[],
        Act::Drop(At::Pause("report")),
    ),
    row(
        "connection dropped during --start",
        "Linux_CD_Install",
        &["--start"],
        Act::Drop(At::Pause("start")),
    ),
    row("the engine SIGKILLed", "Waits", &[], Act::KillEngine),
    row(
        "the server gone for good, then back",
        "Waits",
        &[],
        Act::ServerGone,
    ),
    row(
        "full disk (the config directory)",
        "Linux_CD_Install",
        &[],
        Act::FullConfigDir,
    ),
    row(
        "--force over an interrupted run",
        "Linux_CD_Install",
        &["--force"],
        Act::ForceOverInterrupted,
    ),
    row(
        "--start --autostart",
        "Linux_CD_Install",
        &["--start", "--autostart"],
        Act::Run,
    ),
    row(
        "vm remove by identity",
        "Linux_CD_Install",
        &[],
        Act::RemoveByIdentity,
    ),
];

/// One item of a record or journal: kind, path (filtered), whether it is there.
type Shown = (String, String, bool);

/// What a run shows, with the transport's own words filtered out.
#[derive(Debug, PartialEq)]
struct Seen {
    status: Option<i32>,
    messages: Vec<String>,
    /// The VM's files in the disk, config, log, work and state directories.
    files: Vec<String>,
    record: String,
    items: Vec<Shown>,
    /// The VM's progress events (`--events`): steps and outcome, `connect` left out.
    steps: Vec<String>,
}

impl Seen {
    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "exit status: {:?}", self.status);
        let _ = writeln!(out, "messages:");
        for m in &self.messages {
            let _ = writeln!(out, "  {m}");
        }
        let _ = writeln!(out, "files left:");
        for f in &self.files {
            let _ = writeln!(out, "  {f}");
        }
        let _ = writeln!(out, "steps: {}", self.steps.join(" "));
        let _ = writeln!(out, "record: {}", self.record);
        for (kind, path, there) in &self.items {
            let _ = writeln!(
                out,
                "  {kind:<9} {path} ({})",
                if *there { "present" } else { "absent" }
            );
        }
    }
}

/// The directories whose entries of the VM count as files left (the work dir: its top level).
const DIRS: &[&str] = &[
    "disks",
    "xen",
    "log",
    "work",
    "state/vms",
    "state/undelivered",
];

/// One side: where its files go (`base`: `local` or `srv0`) and its host option.
struct Side<'a> {
    w: &'a World,
    base: PathBuf,
    host: Option<&'a str>,
    /// `CONVIRT_TEST_PAUSE` of both transports' engines.
    pause: &'a Path,
}

impl Side<'_> {
    fn filter(&self, s: &str, vm: &str) -> String {
        let mut s = s.replace(&self.base.display().to_string(), "[BASE]");
        s = s.replace(&self.w.root.display().to_string(), "[ROOT]");
        // The work directory's random suffix.
        let marker = format!("work/{vm}.");
        if let Some(at) = s.find(&marker) {
            let from = at + marker.len();
            let to = (from + 6).min(s.len());
            s.replace_range(from..to, "XXXXXX");
        }
        // The local copy of a server's log is named beside it.
        if let Some(at) = s.find("; local copy: ") {
            if let Some(end) = s[at..].find(')') {
                s.replace_range(at..at + end, "");
            }
            s = s.replacen("(log there: ", "(log: ", 1);
        }
        // Times, and the names of temporary files.
        static TIMES: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
            regex::Regex::new(
                r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)?|\.convirt-tmp-[A-Za-z0-9]{6}",
            )
            .unwrap()
        });
        s = TIMES
            .replace_all(&s, |c: &regex::Captures| {
                if c[0].starts_with('.') {
                    ".convirt-tmp-XXXXXX".to_string()
                } else {
                    "[TIME]".to_string()
                }
            })
            .into_owned();
        if let Some(h) = self.host {
            s = s
                .replace(&format!("`{vm}` on `{h}`: "), "")
                .replace(&format!(" on `{h}`"), "")
                .replace(&format!("{h}:[BASE]"), "[BASE]");
        }
        s
    }

    fn provision_args<'a>(
        &'a self,
        vm: &'a str,
        image: &'a str,
        extra: &[&'a str],
    ) -> Vec<&'a str> {
        let mut args = vec!["provision", "--events", "--vm", vm, "--image", image];
        if let Some(h) = self.host {
            args.extend(["--host", h]);
        }
        args.extend_from_slice(DISK16);
        args.extend_from_slice(extra);
        args
    }

    fn spawn(&self, args: &[&str]) -> Child {
        self.w
            .cmd(args)
            .env("CONVIRT_TEST_PAUSE", self.pause)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn output(&self, args: &[&str]) -> Output {
        self.spawn(args).wait_with_output().unwrap()
    }

    /// The connection drops (here: the terminal hangs up).
    fn drop_connection(&self, child: &Child) {
        match self.host {
            Some(_) => super::remote::kill_sessions(self.w.servers[0].sessions()),
            // SAFETY: signalling our own child.
            None => unsafe {
                libc::kill(child.id() as i32, libc::SIGHUP);
            },
        }
    }

    /// Waits for the `Waits` script of this test to run; returns its pid.
    fn script(&self) -> i32 {
        let mut pid = 0;
        wait_for("the script", 60, || {
            pid = processes()
                .iter()
                .find(|(_, _, c)| c.trim() == waits_sleep())
                .map_or(0, |p| p.0);
            pid != 0
        });
        pid
    }

    /// SIGKILLs the engine of the running `Waits` script (on a server, its `__serve`; here,
    /// convirt) and the script's process group.
    fn kill_engine(&self, child: Child) -> Output {
        let sleep = self.script();
        let engine = match self.host {
            Some(_) => {
                let procs = processes();
                let mut at = sleep;
                loop {
                    let (_, ppid, c) = procs.iter().find(|(p, _, _)| *p == at).unwrap();
                    if c.contains("__serve") {
                        break at;
                    }
                    assert!(*ppid > 1, "no __serve above the script");
                    at = *ppid;
                }
            }
            None => child.id() as i32,
        };
        let group = process_group(sleep);
        // SAFETY: this test's own engine and its script's process group.
        unsafe {
            libc::kill(engine, libc::SIGKILL);
            libc::kill(-group, libc::SIGKILL);
        }
        child.wait_with_output().unwrap()
    }

    /// Arms the pause point `step`, starts `args`, waits until the engine is held there.
    fn held_at(&self, step: &str, args: &[&str]) -> Child {
        let armed = self.pause.join(step);
        std::fs::write(&armed, b"").unwrap();
        let child = self.spawn(args);
        let paused = self.pause.join(format!("{step}.paused"));
        wait_for(&format!("the engine to hold at `{step}`"), 120, || {
            paused.exists()
        });
        child
    }

    fn release(&self, step: &str) {
        std::fs::remove_file(self.pause.join(step)).unwrap();
    }

    fn act(&self, row: &Row, vm: &str) -> Output {
        let args = self.provision_args(vm, row.image, row.args);
        match row.act {
            Act::Run => self.output(&args),
            Act::CtrlC => {
                let child = self.spawn(&args);
                self.script();
                signal(child, libc::SIGINT)
            }
            Act::Drop(At::Script) => {
                let child = self.spawn(&args);
                self.script();
                self.drop_connection(&child);
                child.wait_with_output().unwrap()
            }
            Act::Drop(At::Pause(step)) => {
                let child = self.held_at(step, &args);
                self.drop_connection(&child);
                self.release(step);
                child.wait_with_output().unwrap()
            }
            Act::KillEngine => {
                let child = self.spawn(&args);
                self.kill_engine(child)
            }
            Act::ServerGone => {
                let child = self.spawn(&args);
                self.script();
                let Some(_) = self.host else {
                    self.drop_connection(&child);
                    return child.wait_with_output().unwrap();
                };
                let sshd = &self.w.servers[0];
                let sessions = sshd.sessions();
                sshd.stop();
                super::remote::kill_sessions(sessions);
                let o = child.wait_with_output().unwrap();
                // The engine there notices and cleans up by itself; then the server is back.
                wait_for("the server's clean-up", 60, || {
                    !self.base.join(format!("disks/{vm}.disk.xm")).exists()
                });
                sshd.restart();
                o
            }
            Act::FullConfigDir => self.output(&args),
            Act::ForceOverInterrupted => {
                let first = self.provision_args(vm, "Waits", &[]);
                let child = self.spawn(&first);
                let o = self.kill_engine(child);
                assert_ne!(o.status.code(), Some(0), "{}", text(&o.stderr));
                self.output(&args)
            }
            Act::RemoveByIdentity => {
                let o = self.output(&args);
                assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
                let disk = self.base.join(format!("disks/{vm}.disk.xm"));
                std::fs::remove_file(&disk).unwrap();
                std::fs::write(&disk, b"someone else's").unwrap();
                let mut rm = vec!["vm", "remove", vm, "--yes", "--host"];
                rm.push(self.host.unwrap_or("localhost"));
                self.output(&rm)
            }
        }
    }

    fn run(&self, row: &Row, vm: &str) -> Seen {
        if row.config_before {
            std::fs::create_dir_all(self.base.join("xen")).unwrap();
            std::fs::write(self.base.join(format!("xen/{vm}.cfg")), "# before\n").unwrap();
        }
        let _full =
            matches!(row.act, Act::FullConfigDir).then(|| Full::mount(&self.base.join("xen")));
        let o = self.act(row, vm);
        if !matches!(row.act, Act::RemoveByIdentity) {
            self.first_event_names_the_host(&o, vm);
        }
        let mut messages: Vec<String> = text(&o.stderr)
            .lines()
            .chain(
                text(&o.stdout)
                    .lines()
                    .filter(|l| l.starts_with("removed VM") || l.trim_start().starts_with("kept")),
            )
            // The transport's own line: where this machine keeps its copy of a server's log.
            .filter(|l| !l.trim().is_empty() && !l.starts_with("local copy of the log: "))
            .map(|l| self.filter(l, vm))
            .collect();
        // `vm list` reconciles with the server (a lost run) and says so.
        let list = self.w.cmd(&["--json", "vm", "list"]).output().unwrap();
        messages.extend(
            text(&list.stderr)
                .lines()
                .filter(|l| l.contains(vm))
                .map(|l| format!("vm list: {}", self.filter(l, vm))),
        );
        let host = self.host.unwrap_or("localhost");
        let show = self.w.run(&["--json", "vm", "show", vm, "--host", host]);
        let show: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap_or_default();
        let record = show["status"].as_str().unwrap_or("none").to_string();
        let items: Vec<(String, String, bool)> = show["created"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| {
                (
                    i["kind"].as_str().unwrap_or("?").to_string(),
                    i["path"].as_str().unwrap_or("?").to_string(),
                    i["present"].as_bool().unwrap_or(false),
                )
            })
            .collect();
        let files = self.files(vm);
        self.records_match_the_files(row, vm, &record, &items, &files);
        Seen {
            steps: steps(&o.stdout),
            status: o.status.code(),
            messages,
            files: files.iter().map(|f| self.filter(f, vm)).collect(),
            record,
            items: items
                .into_iter()
                .map(|(k, p, t)| (k, self.filter(&p, vm), t))
                .collect(),
        }
    }

    /// Every event names the VM's host; a server's VM connects first.
    fn first_event_names_the_host(&self, o: &Output, vm: &str) {
        let first = text(&o.stdout).lines().next().map(String::from);
        let first: serde_json::Value =
            serde_json::from_str(first.as_deref().unwrap_or("null")).unwrap_or_default();
        let want = match self.host {
            Some(h) => serde_json::json!({"event": "step", "step": "connect", "vm": vm, "host": h}),
            None => serde_json::json!({"event": "step", "step": "plan", "vm": vm, "host": null}),
        };
        assert_eq!(first, want, "{}", text(&o.stdout));
    }

    /// The VM's entries in `DIRS`, relative to `base`.
    fn files(&self, vm: &str) -> Vec<String> {
        let mut out = Vec::new();
        for d in DIRS {
            for f in tree(&self.base.join(d)) {
                let top = !f.contains('/');
                let ours = f.contains(&format!("{vm}."))
                    || f.contains(&format!("_{vm}"))
                    || f.starts_with(&format!("{vm}/"))
                    || f == vm;
                if ours && (*d != "work" || top) && !f.starts_with("hosts/") {
                    out.push(format!("{d}/{f}"));
                }
            }
        }
        out
    }

    /// The record says exactly what is there: each item is present as `vm show` says (the
    /// server's answer, for a server), a provisioned VM has all its items, and no disk,
    /// config, auto-start link or work directory of the VM is left that no record names.
    fn records_match_the_files(
        &self,
        row: &Row,
        vm: &str,
        record: &str,
        items: &[Shown],
        files: &[String],
    ) {
        for (kind, path, there) in items {
            let now = std::fs::symlink_metadata(path).is_ok();
            assert_eq!(
                *there,
                now,
                "{} ({vm}, {:?}): the record's {kind} `{path}` is said {} but is {}",
                row.name,
                self.host,
                if *there { "present" } else { "absent" },
                if now { "there" } else { "not there" },
            );
            if record == "provisioned" && kind != "log" {
                assert!(
                    now,
                    "{}: the provisioned VM's {kind} `{path}` is gone",
                    row.name
                );
            }
        }
        for f in files {
            if f.starts_with("log/") || f.starts_with("state/") {
                continue;
            }
            let path = self.base.join(f).display().to_string();
            // The config that was there before the run is nobody's record, ...
            // Nor the file that replaced the disk (`RemoveByIdentity`).
            if std::fs::read(&path).is_ok_and(|t| t == b"# before\n" || t == b"someone else's") {
                continue;
            }
            assert!(
                items.iter().any(|(_, p, _)| *p == path),
                "{} ({:?}): `{path}` is left with no record naming it (record: {record}, {items:?})",
                row.name,
                self.host
            );
        }
    }
}

/// A full tmpfs mounted over a directory (the directory's own entries hidden meanwhile);
/// unmounted when dropped.
struct Full(PathBuf);

impl Full {
    fn mount(dir: &Path) -> Full {
        std::fs::create_dir_all(dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount a tmpfs on {}", dir.display());
        let full = Full(dir.to_path_buf());
        // Fill it: every block taken.
        use std::io::Write;
        let mut f = std::fs::File::create(dir.join("filler")).unwrap();
        let block = [0u8; 4096];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
        full
    }
}

impl Drop for Full {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// The process group of `pid` (field 5 of /proc/PID/stat).
fn process_group(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(2))
        .and_then(|p| p.parse().ok())
        .unwrap()
}

/// The `Waits` image's last step: like `Slow`'s, with a command line of its own, so that the
/// other tests' checks for a leftover `Slow` script never see this test's scripts.
fn waits_sleep() -> String {
    format!("sleep 374.{}", std::process::id())
}

/// A copy of the `Slow` image that waits with `waits_sleep`.
fn add_waits(w: &World) {
    let store = w.root.join("store");
    let ok = std::process::Command::new("cp")
        .arg("-a")
        .arg(store.join("Slow"))
        .arg(store.join("Waits"))
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let p = store.join("Waits/provision.sh");
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace(&super::remote::slow_sleep(), &waits_sleep());
    std::fs::write(&p, text).unwrap();
}

/// The steps and outcome of a run's event stream, as `step:NAME`, `started`, `finished:OUTCOME`.
fn steps(stdout: &[u8]) -> Vec<String> {
    text(stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|e| match e["event"].as_str()? {
            "step" if e["step"] == "connect" => None,
            "step" => Some(format!("step:{}", e["step"].as_str()?)),
            "finished" => Some(format!("finished:{}", e["outcome"].as_str()?)),
            "started" => Some("started".into()),
            _ => None,
        })
        .collect()
}

/// A snapshot name from a row's name.
fn slug(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    while s.contains("__") {
        s = s.replace("__", "_");
    }
    s.trim_matches('_').to_string()
}

#[test]
fn every_scenario_is_the_same_here_and_over_ssh() {
    let pause = tempfile::Builder::new()
        .prefix("convirt-e2e-pause.")
        .tempdir()
        .unwrap();
    // The server's engine gets the test hook through sshd, as a login's environment.
    let w = World::new_with(
        1,
        None,
        &format!("SetEnv CONVIRT_TEST_PAUSE={}\n", pause.path().display()),
    );
    add_waits(&w);
    let local = Side {
        w: &w,
        base: w.local(),
        host: None,
        pause: pause.path(),
    };
    let remote = Side {
        w: &w,
        base: w.srv(0),
        host: Some("srv0"),
        pause: pause.path(),
    };
    let only: Option<String> = std::env::var("SCENARIO").ok();
    let mut drift = Vec::new();
    let mut settings = insta::Settings::clone_current();
    settings.set_prepend_module_to_snapshot(false);
    settings.add_filter(
        r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)?",
        "[TIME]",
    );
    settings.add_filter(r"pid \d+", "pid [PID]");
    settings.add_filter(r"\.convirt-tmp-[A-Za-z0-9]{6}", ".convirt-tmp-XXXXXX");
    settings.add_filter(r"\b\d+\.\d+ s\b", "[SECS] s");
    settings.add_filter(r"127\.0\.0\.1:\d+", "127.0.0.1:[PORT]");
    settings.add_filter(
        r"console [^ ]+ \(user tester, pid \[PID\]\)",
        "console [CONSOLE]",
    );
    let _bound = settings.bind_to_scope();
    for (i, row) in ROWS.iter().enumerate() {
        if only.as_deref().is_some_and(|o| !slug(row.name).contains(o)) {
            continue;
        }
        let vm = format!("s{i:02}");
        let here = local.run(row, &vm);
        let there = remote.run(row, &vm);
        let mut shot = format!("scenario: {}\n", row.name);
        let same_outcome =
            (&here.files, &here.record, &here.items) == (&there.files, &there.record, &there.items);
        if here == there {
            shot.push_str("on both transports:\n");
            here.render(&mut shot);
        } else {
            shot.push_str("this machine:\n");
            here.render(&mut shot);
            shot.push_str("over ssh:\n");
            there.render(&mut shot);
        }
        insta::assert_snapshot!(format!("{i:02}_{}", slug(row.name)), shot);
        if !same_outcome || (!row.transport_specific() && here != there) {
            drift.push(format!(
                "{}:\n  here:  {here:?}\n  there: {there:?}",
                row.name
            ));
        }
        // Each row shows what it is about, on both sides.
        for seen in [&here, &there] {
            let what = format!("{}: {seen:?}", row.name);
            match row.name {
                "success"
                | "--force over an existing config"
                | "--force over an interrupted run" => {
                    assert_eq!(seen.status, Some(0), "{what}");
                    assert_eq!(
                        seen.steps.last().map(String::as_str),
                        Some("finished:provisioned"),
                        "{what}"
                    );
                    assert_eq!(seen.record, "provisioned", "{what}");
                }
                "Ctrl-C" => assert_eq!(seen.status, Some(130), "{what}"),
                "--start where no hypervisor runs" | "--start --autostart" => {
                    assert_eq!(seen.status, Some(1), "{what}");
                    assert_eq!(seen.record, "provisioned", "{what}");
                }
                "failing script, --keep" => assert_eq!(seen.record, "failed-kept", "{what}"),
                "connection dropped during the report" | "connection dropped during --start" => {
                    assert_eq!(seen.record, "provisioned", "{what}")
                }
                "connection dropped before the script"
                | "connection dropped during the script"
                | "the server gone for good, then back"
                | "full disk (the config directory)" => {
                    assert_eq!(seen.record, "none", "{what}");
                    assert!(
                        !seen.files.iter().any(|f| f.starts_with("disks/")),
                        "{what}"
                    );
                }
                "the engine SIGKILLed" => {
                    assert_eq!(seen.record, "interrupted", "{what}");
                    assert!(seen.files.iter().any(|f| f.starts_with("disks/")), "{what}");
                }
                "vm remove by identity" => {
                    assert_eq!(seen.status, Some(0), "{what}");
                    assert_eq!(seen.record, "none", "{what}");
                    // The replaced disk is someone else's: it stays.
                    assert!(seen.files.iter().any(|f| f.starts_with("disks/")), "{what}");
                }
                "connection dropped during install" => {}
                _ => assert_eq!(seen.status, Some(1), "{what}"),
            }
        }
    }
    assert!(drift.is_empty(), "{}", drift.join("\n"));
}

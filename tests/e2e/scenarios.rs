//! One table of scenarios, each run on this machine and with `--host` against a private sshd
//! on 127.0.0.1 (issue #17.7): the two transports must give the same exit status, the same
//! messages (paths and the `VM on HOST` framing filtered), the same files left in the disk
//! and config directories, the same record status, and the same progress events (each
//! run is made with `--events`; the steps of the engine at both ends, issue #17.5; the
//! `connect` step a server's VM has in front is left out). Each row is one scenario; a drift
//! between the engine's two transports fails the row that shows it.

use super::remote::{DISK16, World, text, tree, wait_for};
use std::path::{Path, PathBuf};
use std::process::Output;

/// How a scenario ends.
enum Act {
    /// Runs to the end.
    Run,
    /// Ctrl-C once the run's disk exists.
    CtrlC,
}

struct Row {
    name: &'static str,
    image: &'static str,
    args: &'static [&'static str],
    /// A VM config of that name is there before the run.
    config_before: bool,
    act: Act,
}

const ROWS: &[Row] = &[
    Row {
        name: "success",
        image: "Linux_CD_Install",
        args: &[],
        config_before: false,
        act: Act::Run,
    },
    Row {
        name: "failing script",
        image: "Fails",
        args: &[],
        config_before: false,
        act: Act::Run,
    },
    Row {
        name: "failing script, --keep",
        image: "Fails",
        args: &["--keep"],
        config_before: false,
        act: Act::Run,
    },
    Row {
        name: "timeout",
        image: "Waits",
        args: &["--timeout", "3"],
        config_before: false,
        act: Act::Run,
    },
    Row {
        name: "Ctrl-C",
        image: "Waits",
        args: &[],
        config_before: false,
        act: Act::CtrlC,
    },
    Row {
        name: "--start where no hypervisor runs",
        image: "Linux_CD_Install",
        args: &["--start"],
        config_before: false,
        act: Act::Run,
    },
    Row {
        name: "a config of that name exists",
        image: "Linux_CD_Install",
        args: &[],
        config_before: true,
        act: Act::Run,
    },
    Row {
        name: "--force over an existing config",
        image: "Linux_CD_Install",
        args: &["--force"],
        config_before: true,
        act: Act::Run,
    },
];

/// What a run shows, with the transport's own words filtered out.
#[derive(Debug, PartialEq)]
struct Seen {
    status: Option<i32>,
    errors: Vec<String>,
    disks: Vec<String>,
    configs: Vec<String>,
    record: String,
    /// The VM's progress events (`--events`): steps and outcome, `connect` left out.
    steps: Vec<String>,
}

/// One side: where its files go (`base`: `local` or `srv0`) and its host option.
struct Side<'a> {
    w: &'a World,
    base: PathBuf,
    host: Option<&'a str>,
}

impl Side<'_> {
    fn filter(&self, s: &str, vm: &str) -> String {
        let mut s = s.replace(&self.base.display().to_string(), "[BASE]");
        // The work directory's random suffix.
        let marker = format!("/work/{vm}.");
        if let Some(at) = s.find(&marker) {
            let from = at + marker.len();
            let to = (from + 6).min(s.len());
            s.replace_range(from..to, "XXXXXX");
        }
        if let Some(h) = self.host {
            s = s
                .replace(&format!("`{vm}` on `{h}`: "), "")
                .replace(&format!(" on `{h}`"), "")
                .replace(&format!("{h}:[BASE]"), "[BASE]");
        }
        s
    }

    fn run(&self, row: &Row, vm: &str) -> Seen {
        let mut args = vec!["provision", "--events", "--vm", vm, "--image", row.image];
        if let Some(h) = self.host {
            args.extend(["--host", h]);
        }
        args.extend_from_slice(DISK16);
        args.extend_from_slice(row.args);
        if row.config_before {
            std::fs::create_dir_all(self.base.join("xen")).unwrap();
            std::fs::write(self.base.join(format!("xen/{vm}.cfg")), "# before\n").unwrap();
        }
        let o: Output = match row.act {
            Act::Run => self.w.run(&args),
            Act::CtrlC => {
                let child = self.w.spawn(&args, false);
                let disk = self.base.join(format!("disks/{vm}.disk.xm"));
                wait_for("the disk", 30, || disk.exists());
                wait_for("the script", 30, || {
                    super::remote::processes()
                        .iter()
                        .any(|(_, _, c)| c.trim() == waits_sleep())
                });
                super::remote::signal(child, libc::SIGINT)
            }
        };
        // Every event names the VM's host; a server's VM connects first.
        let first = text(&o.stdout).lines().next().map(String::from);
        let first: serde_json::Value =
            serde_json::from_str(first.as_deref().unwrap_or("null")).unwrap_or_default();
        let want = match self.host {
            Some(h) => serde_json::json!({"event": "step", "step": "connect", "vm": vm, "host": h}),
            None => serde_json::json!({"event": "step", "step": "plan", "vm": vm, "host": null}),
        };
        assert_eq!(first, want, "{}", text(&o.stdout));
        let err = text(&o.stderr);
        let errors = err
            .lines()
            .filter(|l| {
                l.starts_with("error: ")
                    || l.starts_with("removed what")
                    || l.starts_with("kept for")
            })
            .map(|l| self.filter(l, vm))
            .collect();
        let list = self.w.run(&["--json", "vm", "list"]);
        let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap_or_default();
        let host = self.host.unwrap_or("localhost");
        let record = list
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["name"] == vm && v["host"] == host)
            .map(|v| v["status"].as_str().unwrap_or("?").to_string())
            .unwrap_or_else(|| "none".into());
        Seen {
            steps: steps(&o.stdout),
            status: o.status.code(),
            errors,
            disks: names(&self.base.join("disks"), vm),
            configs: names(&self.base.join("xen"), vm),
            record,
        }
    }
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

/// The entries of `dir` that belong to `vm`.
fn names(dir: &Path, vm: &str) -> Vec<String> {
    tree(dir)
        .into_iter()
        .filter(|n| n.starts_with(&format!("{vm}.")))
        .collect()
}

#[test]
fn every_scenario_is_the_same_here_and_over_ssh() {
    let w = World::new(1, None);
    add_waits(&w);
    let local = Side {
        w: &w,
        base: w.local(),
        host: None,
    };
    let remote = Side {
        w: &w,
        base: w.srv(0),
        host: Some("srv0"),
    };
    let mut drift = Vec::new();
    for (i, row) in ROWS.iter().enumerate() {
        let vm = format!("sc{i}");
        let here = local.run(row, &vm);
        let there = remote.run(row, &vm);
        if here != there {
            drift.push(format!(
                "{}:\n  here:  {here:?}\n  there: {there:?}",
                row.name
            ));
        }
        // Each row shows what it is about, on both sides.
        match row.name {
            "success" | "--force over an existing config" => {
                assert_eq!(here.status, Some(0), "{}: {here:?}", row.name);
                assert_eq!(
                    here.steps.last().map(String::as_str),
                    Some("finished:provisioned"),
                    "{here:?}"
                );
                assert_eq!(here.record, "provisioned", "{}", row.name);
            }
            "Ctrl-C" => assert_eq!(here.status, Some(130), "{here:?}"),
            "--start where no hypervisor runs" => {
                assert_eq!(here.status, Some(1), "{here:?}");
                assert_eq!(here.record, "provisioned", "{here:?}");
            }
            "failing script, --keep" => assert_eq!(here.record, "failed-kept", "{here:?}"),
            _ => assert_eq!(here.status, Some(1), "{}: {here:?}", row.name),
        }
    }
    assert!(drift.is_empty(), "{}", drift.join("\n"));
}

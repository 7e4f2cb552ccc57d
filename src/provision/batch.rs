//! Orchestration as a library (issue #17.5): a batch of (VM, host) jobs. `prepare` connects
//! to every server the batch names (side by side) and plans every VM; `run` runs the
//! planned VMs `jobs` at a time, on this machine or on their servers alike, until Ctrl-C,
//! and returns one typed `Report` per VM. Everything that happens to a VM on the way is a
//! typed `Event` given to one sink: the command line's progress display and `--events`
//! stream, and the web console's run page, are such sinks.

use super::run::{Step, Watcher};
use super::{Failure, Options, Plan, Provisioned};
use crate::diagnostic::Diagnostic;
use crate::remote::{Session, parse_target};
use crate::resolve::Context;
use crate::settings::Settings;
use crate::store::Store;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A server the batch reached: its shared session and the resolution context of its facts
/// and paths.
pub(crate) struct Server {
    pub name: String,
    pub session: Session,
    pub context: Context,
}

/// Where the local copy of a server's log goes (the command line's rule).
pub(crate) type LocalLog = fn(&Settings, &str, &Plan) -> PathBuf;

/// What a batch runs with: the same for every VM of it.
pub(crate) struct Batch<'a> {
    pub store: &'a Store,
    /// This machine's resolution context: its settings, facts and store.
    pub context: &'a Context,
    pub options: &'a Options,
    /// `--arch`: also replaces a server's architecture.
    pub arch: Option<&'a str>,
    pub local_log: LocalLog,
}

/// One VM of a batch, as `prepare` leaves it.
pub(crate) struct Unit {
    pub vm: String,
    /// The host it is placed on (`None`: this machine).
    pub host: Option<String>,
    /// The server of `host`, when it was reached.
    pub server: Option<Arc<Server>>,
    pub plan: Planned,
}

/// A VM's plan, or why it has none.
pub(crate) enum Planned {
    Ready(Box<Plan>),
    /// Its server could not be reached (the reason is in `Prepared::host_errors`).
    HostNotReached,
    /// Planning failed: a mistake in the command line or the image.
    Failed(anyhow::Error),
}

/// Every VM of a batch, planned.
pub(crate) struct Prepared {
    pub units: Vec<Unit>,
    /// One error per server that could not be reached, in order of first mention.
    pub host_errors: Vec<anyhow::Error>,
}

impl Prepared {
    /// The batch, unless a plan failed: then the first planning error (the command line
    /// stops on it before anything runs; the console lets that VM fail alone).
    pub(crate) fn all_planned(self) -> anyhow::Result<Prepared> {
        if !self
            .units
            .iter()
            .any(|u| matches!(u.plan, Planned::Failed(_)))
        {
            return Ok(self);
        }
        let first = self.units.into_iter().find_map(|u| match u.plan {
            Planned::Failed(e) => Some(e),
            _ => None,
        });
        Err(first.unwrap_or_else(|| anyhow::anyhow!("a plan failed")))
    }
}

/// How one VM of a batch ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Provisioned (`after.problems` names what went wrong after the install).
    Provisioned(Box<Provisioned>),
    /// Refused or failed; `log` is its log when the run made one (a server's as `HOST:PATH`).
    Failed {
        error: anyhow::Error,
        log: Option<PathBuf>,
        /// The run was stopped by Ctrl-C.
        interrupted: bool,
    },
    /// Ctrl-C came before its turn: nothing was made.
    NotStarted,
    /// Its server could not be reached: nothing was made.
    HostNotReached,
}

impl Outcome {
    fn failed(error: anyhow::Error) -> Outcome {
        let f = error.downcast_ref::<Failure>();
        Outcome::Failed {
            log: f.and_then(|f| f.log.clone()),
            interrupted: f.is_some_and(|f| f.interrupted),
            error,
        }
    }

    pub(crate) fn is_provisioned(&self) -> bool {
        matches!(self, Outcome::Provisioned(_))
    }

    /// The outcome's name in the event stream.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Outcome::Provisioned(_) => "provisioned",
            Outcome::Failed { .. } => "failed",
            Outcome::NotStarted => "not_started",
            Outcome::HostNotReached => "host_not_reached",
        }
    }

    fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({ "outcome": self.name() });
        match self {
            Outcome::Provisioned(p) => v["result"] = serde_json::to_value(p).unwrap_or_default(),
            Outcome::Failed {
                error,
                log,
                interrupted,
            } => {
                v["error"] = error.to_string().into();
                v["log"] = serde_json::to_value(log).unwrap_or_default();
                v["interrupted"] = (*interrupted).into();
            }
            Outcome::NotStarted | Outcome::HostNotReached => {}
        }
        v
    }
}

/// One VM's result, in the batch's order.
pub(crate) struct Report {
    pub vm: String,
    pub host: Option<String>,
    pub server: Option<Arc<Server>>,
    /// A remote run's local copy of the server's log.
    pub local_log: Option<PathBuf>,
    pub outcome: Outcome,
}

/// Something that happened to one VM of a batch. A VM's events come in this order:
/// `Step(Connect)` (on a server), `Step(Plan)`, its plan's warnings, `Started`, the run's
/// steps (`Lock`, `WorkDir`, `Script` with its `Line`s, then `Install` and `Start`, or
/// `Cleanup`), and always last `Finished`. A VM that never ran has `Finished` only after
/// its plan.
pub(crate) struct Event<'a> {
    pub vm: &'a str,
    pub host: Option<&'a str>,
    pub what: What<'a>,
}

pub(crate) enum What<'a> {
    Step(Step),
    /// A warning of its plan (a missing optional ISO, ...).
    Warning(&'a Diagnostic),
    /// Its run begins: the image and where its log goes.
    Started {
        image: &'a str,
        log: &'a Path,
        /// A remote run's local copy of the server's log.
        local_log: Option<&'a Path>,
    },
    /// A line of its script's output (a server's, escaped).
    Line(&'a str),
    /// How it ended: its last event.
    Finished(&'a Outcome),
}

impl Event<'_> {
    /// The event as one JSON object (`provision --events`, docs/cli.md).
    pub(crate) fn to_json(&self) -> serde_json::Value {
        let mut v = match &self.what {
            What::Step(s) => serde_json::json!({ "event": "step", "step": s.name() }),
            What::Warning(d) => serde_json::json!({ "event": "warning", "message": d.message }),
            What::Started {
                image,
                log,
                local_log,
            } => serde_json::json!({
                "event": "started", "image": image, "log": log, "local_log": local_log,
            }),
            What::Line(l) => serde_json::json!({ "event": "line", "line": l }),
            What::Finished(o) => {
                let mut v = o.to_json();
                v["event"] = "finished".into();
                v
            }
        };
        v["vm"] = self.vm.into();
        v["host"] = self.host.into();
        v
    }
}

/// Where the events go; called from the batch's worker threads.
pub(crate) type Sink<'s> = dyn Fn(&Event<'_>) + Sync + 's;

/// A run's steps and output, as events of its VM.
struct Relay<'a> {
    vm: &'a str,
    host: Option<&'a str>,
    sink: &'a Sink<'a>,
}

impl Relay<'_> {
    fn emit(&self, what: What<'_>) {
        (self.sink)(&Event {
            vm: self.vm,
            host: self.host,
            what,
        });
    }
}

impl Watcher for Relay<'_> {
    fn line(&mut self, line: &str) {
        self.emit(What::Line(line));
    }
    fn step(&mut self, step: Step) {
        self.emit(What::Step(step));
    }
}

/// The servers of a batch by name, in order of first mention (`None`: not reached), and
/// one error per server not reached.
type Connected = (Vec<(String, Option<Arc<Server>>)>, Vec<anyhow::Error>);

impl Batch<'_> {
    /// Connects to every server `placed` names and plans every VM; runs nothing. A VM named
    /// twice for the same host, or a `--host` that is no valid target, stops everything; an
    /// unreachable server or a plan that fails only marks its VMs.
    pub(crate) fn prepare(
        &self,
        placed: &[(String, Option<String>)],
        sink: &Sink,
    ) -> anyhow::Result<Prepared> {
        let mut seen = std::collections::HashSet::new();
        for (vm, host) in placed {
            if !seen.insert((vm, host)) {
                anyhow::bail!("VM `{vm}` is named twice");
            }
        }
        for (vm, host) in placed.iter().filter(|(_, h)| h.is_some()) {
            sink(&Event {
                vm,
                host: host.as_deref(),
                what: What::Step(Step::Connect),
            });
        }
        let (servers, host_errors) = self.connect(placed)?;
        let units = placed
            .iter()
            .map(|(vm, host)| {
                let server = host.as_ref().and_then(|h| {
                    servers
                        .iter()
                        .find(|(n, _)| n == h)
                        .and_then(|(_, s)| s.clone())
                });
                let plan = match (host, &server) {
                    (Some(_), None) => Planned::HostNotReached,
                    _ => self.plan(vm, host.as_deref(), server.as_deref(), sink),
                };
                Unit {
                    vm: vm.clone(),
                    host: host.clone(),
                    server,
                    plan,
                }
            })
            .collect();
        Ok(Prepared { units, host_errors })
    }

    fn plan(&self, vm: &str, host: Option<&str>, server: Option<&Server>, sink: &Sink) -> Planned {
        let emit = |what: What<'_>| sink(&Event { vm, host, what });
        emit(What::Step(Step::Plan));
        let ctx = server.map_or(self.context, |s| &s.context);
        match super::plan(vm, self.store, ctx, self.options) {
            Ok(p) => {
                for w in p.resolved.warnings.warnings() {
                    emit(What::Warning(w));
                }
                Planned::Ready(Box::new(p))
            }
            Err(e) => Planned::Failed(e),
        }
    }

    /// One shared connection and probe per server, opened side by side.
    fn connect(&self, placed: &[(String, Option<String>)]) -> anyhow::Result<Connected> {
        let mut names: Vec<String> = Vec::new();
        for h in placed.iter().filter_map(|(_, h)| h.as_ref()) {
            if !names.contains(h) {
                names.push(h.clone());
            }
        }
        let targets = names
            .iter()
            .map(|h| parse_target(h, &self.context.settings.hosts))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let opened: Vec<anyhow::Result<Session>> = std::thread::scope(|scope| {
            let handles: Vec<_> = targets
                .iter()
                .map(|t| scope.spawn(move || Session::open(t)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("connecting panicked")))
                })
                .collect()
        });
        let mut errors = Vec::new();
        let servers = names
            .into_iter()
            .zip(opened)
            .map(|(name, r)| match r {
                Ok(session) => {
                    let mut context = super::remote::context(self.context, &session);
                    if let Some(a) = self.arch {
                        context.host.machine = a.to_string();
                    }
                    let s = Server {
                        name: name.clone(),
                        session,
                        context,
                    };
                    (name, Some(Arc::new(s)))
                }
                Err(e) => {
                    errors.push(e);
                    (name, None)
                }
            })
            .collect();
        Ok((servers, errors))
    }

    /// Runs the units `jobs` at a time; Ctrl-C lets the running ones stop and clean up and
    /// starts no more. One report per unit, in the units' order.
    pub(crate) fn run(&self, units: Vec<Unit>, jobs: usize, sink: &Sink) -> Vec<Report> {
        let total = units.len();
        let queue = Mutex::new(units.into_iter().enumerate().collect::<VecDeque<_>>());
        let done: Mutex<Vec<(usize, Report)>> = Mutex::new(Vec::with_capacity(total));
        std::thread::scope(|scope| {
            for _ in 0..jobs.clamp(1, total.max(1)) {
                scope.spawn(|| {
                    while !crate::interrupt::interrupted() {
                        let Some((i, unit)) = queue.lock().ok().and_then(|mut q| q.pop_front())
                        else {
                            return;
                        };
                        let report = self.one(unit, sink);
                        if let Ok(mut d) = done.lock() {
                            d.push((i, report));
                        }
                    }
                });
            }
        });
        let mut done = done.into_inner().unwrap_or_default();
        // What Ctrl-C left in the queue never started.
        for (i, unit) in queue.into_inner().unwrap_or_default() {
            let outcome = match unit.plan {
                Planned::HostNotReached => Outcome::HostNotReached,
                _ => Outcome::NotStarted,
            };
            done.push((i, finish(unit, None, outcome, sink)));
        }
        done.sort_by_key(|(i, _)| *i);
        done.into_iter().map(|(_, r)| r).collect()
    }

    /// Runs one unit, here or on its server.
    fn one(&self, mut unit: Unit, sink: &Sink) -> Report {
        let plan = match std::mem::replace(&mut unit.plan, Planned::HostNotReached) {
            Planned::Ready(p) => p,
            Planned::HostNotReached => return finish(unit, None, Outcome::HostNotReached, sink),
            Planned::Failed(e) => return finish(unit, None, Outcome::failed(e), sink),
        };
        let settings = &self.context.settings;
        let local_log = unit
            .server
            .as_ref()
            .map(|s| (self.local_log)(settings, &s.name, &plan));
        sink(&Event {
            vm: &unit.vm,
            host: unit.host.as_deref(),
            what: What::Started {
                image: &plan.image,
                log: &plan.log_path,
                local_log: local_log.as_deref(),
            },
        });
        let mut relay = Relay {
            vm: &unit.vm,
            host: unit.host.as_deref(),
            sink,
        };
        let result = match (&unit.server, &local_log) {
            (Some(s), Some(copy)) => super::remote::execute(
                &plan,
                &self.store.root,
                &s.context.settings,
                &s.session,
                self.options,
                (copy, &settings.state_dir),
                &mut relay,
            ),
            _ => super::execute(
                &super::Job::of(&plan, self.options, &settings.work_dir, &self.store.root),
                super::Tree::Store,
                &mut relay,
            ),
        };
        let outcome = match result {
            Ok(p) => Outcome::Provisioned(Box::new(p)),
            Err(e) => Outcome::failed(e),
        };
        finish(unit, local_log, outcome, sink)
    }
}

/// A unit's last event, and its report.
fn finish(unit: Unit, local_log: Option<PathBuf>, outcome: Outcome, sink: &Sink) -> Report {
    sink(&Event {
        vm: &unit.vm,
        host: unit.host.as_deref(),
        what: What::Finished(&outcome),
    });
    Report {
        vm: unit.vm,
        host: unit.host,
        server: unit.server,
        local_log,
        outcome,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store with one image whose script fails for the VM named `bad`, and settings that
    /// keep every path in `dir`.
    fn world(dir: &Path) -> (Store, Context) {
        let img = dir.join("store/Img");
        std::fs::create_dir_all(&img).unwrap();
        std::fs::create_dir_all(dir.join("store/common")).unwrap();
        std::fs::write(img.join("image.conf"), "mode = 'ok'\n").unwrap();
        std::fs::write(img.join("vm_conf.template"), "name = ''\nmemory = 256\n").unwrap();
        let script = img.join("provision.sh");
        std::fs::write(
            &script,
            "#!/bin/sh\necho \"hello from $CONVIRT_VM_NAME\"\n[ \"$CONVIRT_VM_NAME\" != bad ] || exit 3\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let env = crate::settings::Env {
            vars: [("HOME".to_string(), dir.display().to_string())].into(),
            is_root: false,
        };
        let mut settings = Settings::load(&crate::settings::Overrides::default(), &env).unwrap();
        settings.image_store = dir.join("store");
        settings.log_dir = dir.join("log");
        settings.work_dir = dir.join("work");
        settings.state_dir = dir.join("state");
        settings.vm_conf_dir = dir.join("conf");
        settings.vm_disks_dir = dir.join("disks");
        settings.variables.clear();
        let store = Store::open(&dir.join("store")).unwrap().0;
        let ctx = Context {
            vm_name: None,
            host: crate::eval::Host::local(None),
            store_path: store.root.clone(),
            settings,
        };
        (store, ctx)
    }

    fn name(what: &What<'_>) -> String {
        match what {
            What::Step(s) => s.name().to_string(),
            What::Warning(_) => "warning".into(),
            What::Started { .. } => "started".into(),
            What::Line(_) => "line".into(),
            What::Finished(o) => format!("finished {}", o.name()),
        }
    }

    #[test]
    fn a_batch_reports_every_vm_in_order_and_each_vm_s_events_end_in_its_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let (store, ctx) = world(dir.path());
        let options = Options {
            image: Some("Img".into()),
            ..Default::default()
        };
        let batch = Batch {
            store: &store,
            context: &ctx,
            options: &options,
            arch: None,
            local_log: |s, h, p| s.log_dir.join(h).join(&p.vm),
        };
        let events: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
        let sink = |e: &Event<'_>| {
            events
                .lock()
                .unwrap()
                .push((e.vm.to_string(), name(&e.what)));
        };
        let placed: Vec<(String, Option<String>)> = ["ok1", "bad", "no/name"]
            .iter()
            .map(|v| (v.to_string(), None))
            .collect();
        let mut prepared = batch.prepare(&placed, &sink).unwrap();
        assert!(prepared.host_errors.is_empty());
        // A server that was not reached: its VM is reported, never run.
        prepared.units.push(Unit {
            vm: "far".into(),
            host: Some("far".into()),
            server: None,
            plan: Planned::HostNotReached,
        });
        let reports = batch.run(prepared.units, 2, &sink);

        let vms: Vec<&str> = reports.iter().map(|r| r.vm.as_str()).collect();
        assert_eq!(vms, ["ok1", "bad", "no/name", "far"]);
        match &reports[0].outcome {
            Outcome::Provisioned(p) => {
                assert_eq!(p.config, dir.path().join("conf/ok1.cfg"));
                assert!(p.config.exists());
            }
            other => panic!("ok1: {other:?}"),
        }
        match &reports[1].outcome {
            Outcome::Failed {
                log, interrupted, ..
            } => {
                assert_eq!(
                    log.as_deref(),
                    Some(&*dir.path().join("log/Img/Img_bad.log"))
                );
                assert!(!interrupted);
            }
            other => panic!("bad: {other:?}"),
        }
        assert!(matches!(
            reports[2].outcome,
            Outcome::Failed { log: None, .. }
        ));
        assert!(matches!(reports[3].outcome, Outcome::HostNotReached));
        assert_eq!(
            reports
                .iter()
                .filter(|r| r.outcome.is_provisioned())
                .count(),
            1
        );

        let events = events.into_inner().unwrap();
        let of = |vm: &str| -> Vec<String> {
            events
                .iter()
                .filter(|(v, _)| v == vm)
                .map(|(_, e)| e.clone())
                .filter(|e| e != "line")
                .collect()
        };
        let run = ["plan", "started", "lock", "work_dir", "script"];
        let mut ok: Vec<&str> = run.to_vec();
        ok.extend(["install", "finished provisioned"]);
        assert_eq!(of("ok1"), ok);
        let mut bad: Vec<&str> = run.to_vec();
        bad.extend(["cleanup", "finished failed"]);
        assert_eq!(of("bad"), bad);
        assert_eq!(of("no/name"), ["plan", "finished failed"]);
        assert_eq!(of("far"), ["finished host_not_reached"]);
        assert!(
            events.contains(&("ok1".into(), "line".into())),
            "the script's output is an event: {events:?}"
        );
    }
}

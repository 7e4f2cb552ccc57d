//! Provisioning on a managed server (spec §7, docs/remote.md): the same plan as a local run,
//! computed with the server's facts and paths, becomes a `Job`; the job and the work tree
//! (image, `common/`, custom scripts) travel over the host's shared ssh connection to the
//! server's `convirt __serve`, which runs it with the very code of a local run
//! (`provision::execute`). This side renders the events: output into a local copy of the
//! log, the result into this machine's record. Ctrl-C asks the server to stop; a lost
//! connection stops the run there by itself, and this side asks the server afterwards what
//! its own journal says.

use super::proto::{self, Event, Hello, Request};
use super::remote_record::Recorder;
use super::{Failure, Job, Options, Plan, Provisioned, log, run};
use crate::diagnostic::Diagnostic;
use crate::remote::channel::{Msg, stream};
use crate::remote::{Channel, Facts, Session, Target, find, ssh_error, wire};
use crate::resolve::Context;
use crate::settings::Settings;
use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn err(msg: impl Into<String>) -> anyhow::Error {
    Diagnostic::error(msg.into()).into()
}

/// The settings as the server sees them (`Settings::for_server`): its user's directories
/// and `[hosts.NAME]`, its bridge.
pub(crate) fn host_settings(base: &Settings, t: &Target, facts: &Facts) -> Settings {
    base.for_server(
        t.settings.as_ref(),
        facts.uid == 0,
        &facts.home,
        default_bridge(&facts.bridges),
    )
}

/// The server's bridge for `$DEFAULT_BRIDGE`: `xenbr0` when it has one, else its first.
pub(crate) fn default_bridge(bridges: &[String]) -> Option<&str> {
    bridges
        .iter()
        .find(|b| *b == "xenbr0")
        .or_else(|| bridges.first())
        .map(String::as_str)
}

/// The resolution context for a server: its uname, its host name, its paths.
pub(crate) fn context(base: &Context, session: &Session) -> Context {
    let settings = host_settings(&base.settings, &session.target, &session.facts);
    Context {
        vm_name: None,
        host: session.facts.host.clone(),
        store_path: settings.image_store.clone(),
        settings,
    }
}

/// Where the script's store copy will be on the server (for the dry-run command line).
pub(crate) fn work_store_for_display(settings: &Settings, vm: &str) -> PathBuf {
    settings
        .work_dir
        .join(format!("{vm}.XXXXXX"))
        .join("image_store")
}

/// The host facts a dry run shows.
pub(crate) fn describe_host(session: &Session, settings: &Settings) -> String {
    let f = &session.facts;
    format!(
        "host `{}` ({}): {} {} {}, node name {}, uid {}\n  {}\n  bridges: {}{}\n  work dir {}, logs {}, VM configs {}, disks {}\n",
        session.target.name,
        session.target.display_address(),
        f.host.sysname,
        f.host.release,
        f.host.machine,
        f.host.nodename,
        f.uid,
        session.convirt.describe(),
        if f.bridges.is_empty() {
            "(none)".to_string()
        } else {
            f.bridges.join(", ")
        },
        settings
            .variable("DEFAULT_BRIDGE")
            .map(|v| format!(" (DEFAULT_BRIDGE = {})", v.to_text()))
            .unwrap_or_default(),
        settings.work_dir.display(),
        settings.log_dir.display(),
        settings.vm_conf_dir.display(),
        settings.vm_disks_dir.display(),
    )
}

/// Adds a directory of the local store to the stream, as the local work-dir copy does.
fn add_tree<W: Write>(b: &mut tar::Builder<W>, src: &Path, name: &Path) -> std::io::Result<()> {
    b.append_dir(name, src)?;
    let mut entries: Vec<_> = std::fs::read_dir(src)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        // Dot names stay behind, as in the local work-dir copy.
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let (from, to) = (e.path(), name.join(e.file_name()));
        let ft = e.file_type()?;
        if ft.is_dir() {
            add_tree(b, &from, &to)?;
        } else if ft.is_symlink() {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            h.set_mode(0o777);
            b.append_link(&mut h, &to, std::fs::read_link(&from)?)?;
        } else if ft.is_file() {
            b.append_path_with_name(&from, &to)?;
        }
    }
    Ok(())
}

/// The work tree as one tar stream (`image_store/` as the local work directory would hold
/// it). It is spooled to an unnamed private temporary file, so a large image does not sit in
/// memory, and returned rewound with its length.
pub(crate) fn work_tree(job: &Job, local_store: &Path) -> anyhow::Result<(std::fs::File, u64)> {
    let spool = tempfile::tempfile().map_err(|e| {
        err(format!(
            "cannot create a temporary file for the work tree: {e}"
        ))
    })?;
    let mut b = tar::Builder::new(std::io::BufWriter::new(spool));
    b.mode(tar::HeaderMode::Deterministic);
    b.follow_symlinks(false);
    let build = |b: &mut tar::Builder<std::io::BufWriter<std::fs::File>>| -> std::io::Result<()> {
        add_tree(b, &local_store.join("common"), Path::new("common"))?;
        add_tree(b, &local_store.join(&job.image), Path::new(&job.image))?;
        for (name, dir) in &job.custom_dirs {
            if dir.starts_with(local_store.join("custom_scripts")) {
                add_tree(b, dir, &Path::new("custom_scripts").join(name))?;
            }
        }
        Ok(())
    };
    let finish = |mut b: tar::Builder<std::io::BufWriter<std::fs::File>>| -> std::io::Result<(std::fs::File, u64)> {
        build(&mut b)?;
        let mut f = b.into_inner()?.into_inner().map_err(|e| e.into_error())?;
        let len = std::io::Seek::seek(&mut f, std::io::SeekFrom::End(0))?;
        std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(0))?;
        Ok((f, len))
    };
    finish(b).map_err(|e| err(format!("cannot pack the work tree for `{}`: {e}", job.vm)))
}

/// Who provisions, for the server's lock and log: this machine, user and process.
fn console() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "?".into());
    format!(
        "console {} (user {user}, pid {})",
        crate::host::Host::local(None).nodename,
        std::process::id()
    )
}

/// What a remote run has shown so far, and its record in the making.
struct Shown<'a> {
    plan: &'a Plan,
    record: Recorder,
    local_log: &'a Path,
    copy: Option<std::fs::File>,
    tail: VecDeque<String>,
    started: bool,
}

impl Shown<'_> {
    /// The server made its log: so does the local copy (a refused run changes nothing here).
    fn start(&mut self) {
        if std::mem::replace(&mut self.started, true) {
            return;
        }
        self.record.started(self.plan);
        if let Some(parent) = self.local_log.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        self.copy = log::create_private(self.local_log).ok();
    }

    fn line(&mut self, line: &str, watch: &mut dyn run::Watcher) {
        if let Some(c) = self.copy.as_mut() {
            let _ = c
                .write_all(line.as_bytes())
                .and_then(|()| c.write_all(b"\n"));
        }
        // The server's text reaches the terminal with its control characters escaped.
        let line = proto::escape(line);
        watch.line(&line);
        self.tail.push_back(line);
        if self.tail.len() > 15 {
            self.tail.pop_front();
        }
    }
}

/// Sends the request and the work tree (after our hello on a new channel), then reads
/// events until the final one (`None`: the channel ended without it). Ctrl-C becomes a
/// `stop` line. The channel's input is given back once the tree went out whole.
fn converse(
    (ch, greet): (&mut Channel, bool),
    job: &Job,
    (mut tree, tree_len): (std::fs::File, u64),
    session: &Session,
    shown: &mut Shown,
    watch: &mut dyn run::Watcher,
) -> anyhow::Result<(Option<Event>, bool)> {
    if greet {
        let _ = ch.send(&Hello::ours(None));
    }
    let _ = ch.send(&Request::Provision {
        job: Box::new(job.clone()),
        tree_bytes: tree_len,
    });
    // The tree goes in from a thread: the server may answer (an error) before reading it.
    let input = ch.take_input();
    let mut send = Some(std::thread::spawn(move || {
        let mut i = input?;
        stream(&mut tree, &mut i).ok()?;
        Some(i)
    }));
    // The sending thread's input back to the channel, once it has ended (or, `wait`, when
    // it is known to end).
    let take_back = |send: &mut Option<std::thread::JoinHandle<_>>, ch: &mut Channel, wait| {
        if wait || send.as_ref().is_some_and(|s| s.is_finished()) {
            if let Some(i) = send.take().and_then(|s| s.join().ok()).flatten() {
                ch.give_back(i);
            }
        }
    };
    let mut asked_stop = false;
    loop {
        take_back(&mut send, ch, false);
        if crate::interrupt::interrupted() && !asked_stop && send.is_none() {
            asked_stop = true;
            let _ = ch.send(&"stop");
        }
        match ch.next(Duration::from_millis(20)) {
            Ok(Msg::Line(l)) => match wire::parse::<Event>(&l).map_err(err)? {
                Event::Hello(h) => {
                    find::check_hello(&h, &session.target)?;
                }
                Event::Started => shown.start(),
                Event::Output(line) => shown.line(&line, watch),
                Event::Step(step) => watch.step(step),
                other => {
                    // A run's answer: the server read the whole tree before it ran anything,
                    // so the sending thread ends. An error may come before the tree is read.
                    let wait = !matches!(other, Event::Error { .. });
                    take_back(&mut send, ch, wait);
                    return Ok((Some(other), asked_stop));
                }
            },
            Ok(Msg::Bad(why)) => {
                tracing::warn!("`{}` sent an unreadable answer: {why}", session.target.name);
                return Ok((None, asked_stop));
            }
            Ok(Msg::Boot(_)) | Err(false) => {}
            Err(true) => return Ok((None, asked_stop)),
        }
    }
}

/// Runs a plan on the server of `session`. `local_log` receives a copy of the log.
pub(crate) fn execute(
    plan: &Plan,
    local_store: &Path,
    settings: &Settings,
    session: &Session,
    opts: &Options,
    (local_log, local_state): (&Path, &Path),
    watch: &mut dyn run::Watcher,
) -> anyhow::Result<Provisioned> {
    let started = Instant::now();
    let mut job = Job::of(plan, opts, &settings.work_dir, local_store);
    job.console = Some(console());
    // What the server runs comes from this machine's store: nothing others could change.
    super::engine::check_trust(&job)?;
    // Records (#10): a record of this VM on this host refuses the run before anything is
    // made; the journal header is written before the run starts.
    let record = super::remote_record::begin(
        plan,
        &session.target,
        local_log,
        opts,
        &job.run,
        (local_state, session.host_key.as_deref()),
    )?;
    // A guest image whose cache entry the server lacks: sent from here once (issue #22).
    let guest_cache = super::seed::offer(plan, opts.seed_from.as_deref(), session);
    let mut shown = Shown {
        plan,
        record,
        local_log,
        copy: None,
        tail: VecDeque::new(),
        started: false,
    };
    // A channel left open by an earlier run of this batch, else a new one; an idle channel
    // that ended before the run started (its server gone meanwhile) is replaced once.
    let mut idle = session.idle_channel();
    let (mut ch, (last, asked_stop)) = loop {
        let tree = work_tree(&job, local_store)?;
        let (mut ch, greet) = match idle.take() {
            Some(ch) => (ch, false),
            None => (
                Channel::spawn(session.serve()).map_err(|e| err(format!("cannot run ssh: {e}")))?,
                true,
            ),
        };
        let heard = converse((&mut ch, greet), &job, tree, session, &mut shown, watch)?;
        if greet || heard.0.is_some() || shown.started || heard.1 {
            break (ch, heard);
        }
        tracing::debug!("an idle channel to `{}` had ended", session.target.name);
        drop(ch.finish());
    };
    // Kept for the batch's next run only after a run's own answer, the tree sent whole.
    let stderr = if ch.has_input()
        && !asked_stop
        && matches!(last, Some(Event::Provisioned { .. } | Event::Failed { .. }))
    {
        session.keep_channel(ch);
        String::new()
    } else {
        ch.close_input();
        ch.finish()
    };
    if let Some(c) = shown.copy.as_mut() {
        let _ = c.flush();
    }
    let ended = Ended {
        plan,
        job: &job,
        opts,
        session,
        local_log,
        tail: shown.tail.into_iter().collect(),
        started,
        asked_stop,
    };
    let record = shown.record;
    match last {
        Some(e) => ended
            .answer(e, record, shown.started)
            .map(|p| Provisioned { guest_cache, ..p }),
        None if !shown.started => {
            // Nothing changed on the server: ssh (or the server's convirt) failed first.
            drop(record);
            Err(ssh_error(&session.target, &stderr))
        }
        None => ended.lost(record, &stderr),
    }
}

/// A remote run that has ended, and what is known of it.
struct Ended<'a> {
    plan: &'a Plan,
    job: &'a Job,
    opts: &'a Options,
    session: &'a Session,
    local_log: &'a Path,
    tail: Vec<String>,
    started: Instant,
    asked_stop: bool,
}

impl Ended<'_> {
    fn host(&self) -> &str {
        &self.session.target.name
    }

    fn log_shown(&self) -> PathBuf {
        PathBuf::from(format!("{}:{}", self.host(), self.plan.log_path.display()))
    }

    /// The server's final answer.
    fn answer(self, e: Event, record: Recorder, started: bool) -> anyhow::Result<Provisioned> {
        let host = self.host().to_string();
        match e {
            Event::Provisioned { result, created } => {
                let mut p = *result;
                let problems = record.finish(self.plan, Some(created), self.opts);
                p.after.problems.extend(problems);
                p.seconds = self.started.elapsed().as_secs_f64();
                Ok(p)
            }
            Event::Failed { failure, left } => {
                if self.opts.keep {
                    record.kept(self.plan, Some(left));
                } else {
                    record.lost(self.plan, Some(left));
                }
                let mut f = failure;
                f.status = format!(
                    "{} on `{host}`\nlocal copy of the log: {}",
                    f.status,
                    self.local_log.display()
                );
                f.log = Some(self.log_shown());
                // The engine's last lines, as a local run shows them (none when the script
                // was not what failed).
                f.interrupted |= self.asked_stop;
                Err(f.into())
            }
            Event::Error { message, hints } => {
                if started {
                    // Refused after the log was made: the engine removed what it made.
                    record.lost(self.plan, Some(vec![]));
                }
                let mut d = Diagnostic::error(format!(
                    "`{}` on `{host}`: {}",
                    self.plan.vm,
                    proto::escape(&message)
                ));
                for h in hints {
                    d = d.with_hint(proto::escape(&h));
                }
                Err(d.into())
            }
            other => Err(err(format!(
                "`{host}` answered the provisioning of `{}` with {other:?}",
                self.plan.vm
            ))),
        }
    }

    /// The run's own final answer, kept by the server because the connection was gone.
    fn reconciled(
        self,
        answer: Event,
        record: Recorder,
        lost: String,
    ) -> anyhow::Result<Provisioned> {
        let host = self.host().to_string();
        match answer {
            Event::Provisioned { result, created } => {
                let mut p = *result;
                let mut problems = record.finish(self.plan, Some(created), self.opts);
                problems.insert(
                    0,
                    format!("the connection to `{host}` was lost; the server finished the run"),
                );
                p.after.problems.extend(problems);
                Ok(p)
            }
            Event::Failed { mut failure, left } => {
                if self.opts.keep {
                    record.kept(self.plan, Some(left));
                } else {
                    record.lost(self.plan, Some(left));
                }
                failure.status = format!(
                    "{lost}\nreconnected to `{host}`: {} there\nlocal copy of the log: {}",
                    failure.status,
                    self.local_log.display()
                );
                failure.log = Some(self.log_shown());
                failure.interrupted |= self.asked_stop;
                Err(failure.into())
            }
            other => {
                record.lost(self.plan, None);
                Err(err(format!("{lost}\n`{host}` kept the answer {other:?}")))
            }
        }
    }

    /// The channel ended mid-run: the server stops the run by itself when it notices; ask
    /// it (on a new connection) what its own journal says, and record exactly that.
    fn lost(self, record: Recorder, stderr: &str) -> anyhow::Result<Provisioned> {
        let host = self.host().to_string();
        let mut status = format!("the connection to `{host}` was lost mid-run");
        if let Some(l) = stderr.lines().rev().find(|l| !l.trim().is_empty()) {
            status.push_str(&format!("\nssh said: {}", proto::escape(l.trim_end())));
        }
        let asked = find::ask(
            &self.session.target,
            None,
            &Request::Status {
                vm: self.plan.vm.clone(),
                run: self.job.run.clone(),
                work_dir: Some(self.job.work_dir.clone()),
                state_dir: Some(self.job.state_dir.clone()),
            },
        );
        // What the server left is named in the status: it was not kept on request (`--keep`).
        let (removed, kept) = (vec![], vec![]);
        match asked {
            Ok((
                Event::Status {
                    answer: Some(a), ..
                },
                _,
            )) => return self.reconciled(*a, record, status),
            Ok((
                Event::Status {
                    record: Some(r), ..
                },
                _,
            )) if r.header.run.as_deref() == Some(self.job.run.as_str()) => {
                // It had installed its config: provisioned, whatever the connection did.
                let mut problems = record.finish(self.plan, Some(r.created), self.opts);
                problems.insert(
                    0,
                    format!("the connection to `{host}` was lost; the server finished the run"),
                );
                let after = super::hooks::After {
                    problems,
                    ..Default::default()
                };
                return Ok(Provisioned::of(self.job, vec![], self.started, after));
            }
            Ok((Event::Status { leftovers, .. }, _)) => {
                let left = leftovers.unwrap_or_default();
                if left.is_empty() {
                    status.push_str(&format!(
                        "\nreconnected to `{host}`: the server stopped the script and removed what the run created"
                    ));
                } else {
                    status.push_str(&format!(
                        "\nreconnected to `{host}`: the server stopped the script; left there: {}",
                        left.iter()
                            .map(|i| i.path.clone())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                record.lost(self.plan, Some(left));
            }
            Ok((other, _)) => {
                status.push_str(&format!("\n`{host}` answered: {other:?}"));
                record.lost(self.plan, None);
            }
            Err(e) => {
                status.push_str(&format!(
                    "\ncould not reconnect to `{host}` to check the clean-up ({}): the server stops the script and removes what it created when it notices; `convirt vm list` asks it again",
                    e.to_string().lines().next().unwrap_or_default()
                ));
                record.lost(self.plan, None);
            }
        }
        status.push_str(&format!(
            "\nlocal copy of the log: {}",
            self.local_log.display()
        ));
        let log = Some(self.log_shown());
        Err(Failure {
            vm: self.plan.vm.clone(),
            status,
            last_lines: self.tail,
            log,
            removed,
            not_removed: vec![],
            kept,
            interrupted: self.asked_stop,
        }
        .into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::HostSettings;
    use crate::value::Value;

    #[test]
    fn bridges_prefer_xenbr0() {
        let b = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(default_bridge(&b(&["br1", "xenbr0"])), Some("xenbr0"));
        assert_eq!(default_bridge(&b(&["br1", "br2"])), Some("br1"));
        assert_eq!(default_bridge(&b(&[])), None);
    }

    #[test]
    fn server_settings_use_the_server_defaults_and_the_host_entry() {
        let mut base = Settings::load(
            &crate::settings::Overrides::default(),
            &crate::settings::Env {
                vars: [
                    ("HOME".to_string(), "/home/me".to_string()),
                    ("CONVIRT_CONFIG".to_string(), "/dev/null".to_string()),
                ]
                .into_iter()
                .collect(),
                is_root: false,
            },
        )
        .unwrap();
        base.variables = vec![
            ("VM_DISKS_DIR".into(), Value::Str("/local/disks".into())),
            ("memory".into(), Value::Int(256)),
        ];
        let h: HostSettings = toml::from_str(
            "address = 'x'\nlog_dir = 'logs'\nVM_CONF_DIR = '~/xen'\n[variables]\nmemory = 2048\n",
        )
        .unwrap();
        let t = Target {
            name: "x".into(),
            address: "x".into(),
            user: None,
            port: None,
            settings: Some(h),
        };
        let facts = |uid, bridges: &[&str]| Facts {
            host: crate::host::Host::local(None),
            uid,
            home: PathBuf::from("/home/srv"),
            bridges: bridges.iter().map(|s| s.to_string()).collect(),
        };
        let s = host_settings(&base, &t, &facts(1000, &["br0"]));
        assert_eq!(s.log_dir, PathBuf::from("/home/srv/logs"));
        assert_eq!(s.vm_conf_dir, PathBuf::from("/home/srv/xen"));
        assert_eq!(s.vm_disks_dir, PathBuf::from("/home/srv/.convirt/vm_disks"));
        assert_eq!(s.work_dir, PathBuf::from("/home/srv/.convirt/work"));
        // The local disk path does not travel; the host's memory beats the site's.
        assert_eq!(s.variable("VM_DISKS_DIR"), None);
        assert_eq!(s.variable("memory"), Some(&Value::Int(2048)));
        assert_eq!(
            s.variable("DEFAULT_BRIDGE"),
            Some(&Value::Str("br0".into()))
        );
        let s = host_settings(&base, &t, &facts(0, &[]));
        assert_eq!(s.vm_disks_dir, PathBuf::from("/var/cache/convirt/vm_disks"));
        assert_eq!(s.variable("DEFAULT_BRIDGE"), None);
        assert!(s.is_root);
    }
}

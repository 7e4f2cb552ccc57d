//! Running a provisioning script: its own process group, output merged into the log (and a
//! live status line on a terminal), a timeout and Ctrl-C that stop the whole group, and the
//! outcome as an exit status or a named signal.

use std::collections::VecDeque;
use std::io::Write;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn interrupted() -> bool {
    crate::interrupt::interrupted()
}

/// How a script ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success,
    Exit(i32),
    Signal(i32),
    TimedOut(Duration),
    Interrupted,
    /// A server's run whose connection to convirt was lost (`convirt __serve`).
    Lost,
    /// It could not be started at all.
    NotStarted(String),
    /// Its output could not be written to the log (a full disk): it was stopped, since a
    /// run without its log is not one an admin can trust.
    LogFailed(String),
}

impl Outcome {
    pub(crate) fn describe(&self) -> String {
        match self {
            Outcome::Success => "succeeded".into(),
            Outcome::Exit(c) => format!("exited with status {c}"),
            Outcome::Signal(s) => format!("was killed by signal {}", signal_name(*s)),
            Outcome::TimedOut(d) => format!("timed out after {} s and was stopped", d.as_secs()),
            Outcome::Interrupted => "was interrupted (Ctrl-C) and stopped".into(),
            Outcome::Lost => "was stopped: the connection to convirt was lost".into(),
            Outcome::NotStarted(e) => format!("could not be started: {e}"),
            Outcome::LogFailed(e) => format!(
                "was stopped: its output could not be written to the log ({e}); the log keeps what fit and is cut short there"
            ),
        }
    }
}

pub(crate) fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        _ => return format!("{sig}"),
    };
    format!("{name} ({sig})")
}

/// The steps of a run, in order, as progress events name them (`provision::batch`). A
/// run on a server has the same steps, sent over the channel (`proto::Event::Step`), plus
/// `Connect` before its plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Step {
    /// Logging in to the server and asking for its facts (`--host` only).
    Connect,
    /// Resolving the image and rendering the config: nothing is written.
    Plan,
    /// The VM's lock, the checks under it, the journal and the log.
    Lock,
    /// The private work directory and the run's copy of the image.
    WorkDir,
    /// `provision.sh`.
    Script,
    /// The config installed atomically, the auto-start link, the record.
    Install,
    /// `xl create` (`--start`).
    Start,
    /// A failed run's clean-up (or `--keep`).
    Cleanup,
}

impl Step {
    /// The step as a progress line shows it.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Step::Connect => "connecting",
            Step::Plan => "planning",
            Step::Lock => "taking the lock, checking",
            Step::WorkDir => "preparing the work directory",
            Step::Script => "running provision.sh",
            Step::Install => "installing the config",
            Step::Start => "starting (xl create)",
            Step::Cleanup => "cleaning up",
        }
    }

    /// The step's name in the event stream (`lock`, `work_dir`, ...).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Step::Connect => "connect",
            Step::Plan => "plan",
            Step::Lock => "lock",
            Step::WorkDir => "work_dir",
            Step::Script => "script",
            Step::Install => "install",
            Step::Start => "start",
            Step::Cleanup => "cleanup",
        }
    }
}

/// Where a run reports what it does besides the log: its steps and the script's output.
pub(crate) trait Watcher: Send {
    fn line(&mut self, line: &str);
    /// The run's log exists: from here on the run changes things.
    fn started(&mut self) {}
    /// The run enters a step.
    fn step(&mut self, _step: Step) {}
}

pub(crate) struct Run<'a> {
    pub command: Command,
    pub log: &'a mut std::fs::File,
    pub timeout: Option<Duration>,
    pub watcher: &'a mut dyn Watcher,
    /// How many last lines to keep for the error message.
    pub tail: usize,
}

pub(crate) struct Finished {
    pub outcome: Outcome,
    pub last_lines: Vec<String>,
}

/// Sends a signal to a process group.
fn kill_group(pgid: i32, sig: i32) {
    crate::sys::kill_group(pgid, sig);
}

/// Stops a process group: SIGTERM, a grace period, then SIGKILL.
fn stop_group(pgid: i32, child: &mut std::process::Child) {
    kill_group(pgid, libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    kill_group(pgid, libc::SIGKILL);
    let _ = child.wait();
}

impl Run<'_> {
    /// Whether the script has ended, or must end now (Ctrl-C, a lost channel, the
    /// timeout: its group is stopped), and how.
    fn ended(&self, pgid: i32, child: &mut std::process::Child, start: Instant) -> Option<Outcome> {
        if interrupted() {
            stop_group(pgid, child);
            return Some(if crate::interrupt::lost() {
                Outcome::Lost
            } else {
                Outcome::Interrupted
            });
        }
        if let Some(t) = self.timeout.filter(|t| start.elapsed() >= *t) {
            stop_group(pgid, child);
            return Some(Outcome::TimedOut(t));
        }
        let status = child.try_wait().ok()??;
        Some(match (status.code(), status.signal()) {
            (Some(0), _) => Outcome::Success,
            (Some(c), _) => Outcome::Exit(c),
            (None, Some(s)) => Outcome::Signal(s),
            (None, None) => Outcome::Exit(-1),
        })
    }

    pub(crate) fn run(mut self) -> Finished {
        // convirt's own lines before the run did not fit: the script does not start.
        if let Some(e) = super::log::failure(self.log) {
            return Finished {
                outcome: Outcome::LogFailed(e),
                last_lines: vec![],
            };
        }
        self.command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = match self.command.spawn() {
            Ok(c) => c,
            Err(e) => {
                return Finished {
                    outcome: Outcome::NotStarted(e.to_string()),
                    last_lines: vec![],
                };
            }
        };
        let pgid = child.id() as i32;
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(super::log::forward_lines(out, tx.clone(), |l| l));
        }
        if let Some(e) = child.stderr.take() {
            readers.push(super::log::forward_lines(e, tx.clone(), |l| l));
        }
        drop(tx);
        let start = Instant::now();
        let mut tail: VecDeque<String> = VecDeque::new();
        let mut outcome: Option<Outcome> = None;
        let mut exited_at: Option<Instant> = None;
        let mut disconnected = false;
        loop {
            if !disconnected {
                let wait = if outcome.is_some() {
                    Duration::from_millis(10)
                } else {
                    Duration::from_millis(20)
                };
                match rx.recv_timeout(wait) {
                    Ok(bytes) => {
                        if let Err(e) = self.log.write_all(&bytes) {
                            super::log::record_failure(self.log, &e);
                            if outcome.is_none() {
                                stop_group(pgid, &mut child);
                                outcome = Some(Outcome::LogFailed(e.to_string()));
                                exited_at = Some(Instant::now());
                            }
                        }
                        let line = String::from_utf8_lossy(&bytes)
                            .trim_end_matches(['\n', '\r'])
                            .to_string();
                        self.watcher.line(&line);
                        tail.push_back(line);
                        if tail.len() > self.tail {
                            tail.pop_front();
                        }
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => disconnected = true,
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                }
            } else if outcome.is_none() {
                std::thread::sleep(Duration::from_millis(2));
            }
            if outcome.is_none() {
                outcome = self.ended(pgid, &mut child, start);
                if outcome.is_some() {
                    exited_at = Some(Instant::now());
                }
            }
            if outcome.is_some() {
                if disconnected {
                    break;
                }
                if exited_at.is_some_and(|t| t.elapsed() > Duration::from_secs(2)) {
                    // A background process of the script still holds the output open.
                    if outcome != Some(Outcome::Success) {
                        kill_group(pgid, libc::SIGKILL);
                    }
                    break;
                }
            }
        }
        if let Err(e) = self.log.flush() {
            super::log::record_failure(self.log, &e);
            if outcome == Some(Outcome::Success) {
                outcome = Some(Outcome::LogFailed(e.to_string()));
            }
        }
        Finished {
            outcome: outcome.unwrap_or(Outcome::Exit(-1)),
            last_lines: tail.into_iter().collect(),
        }
    }
}

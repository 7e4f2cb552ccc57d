//! The one progress display of `provision`, fed by the batch's events
//! (`provision::batch::Event`): on a terminal a status line per running VM with its host,
//! elapsed time, step and last output line; otherwise plain lines (each VM as it starts,
//! and with `-v` its steps and its script's output); with `--events` one JSON object per
//! event on stdout.

use super::out::{err, errln};
use crate::provision::batch::{Event, What};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

/// How progress is shown.
pub(crate) enum Mode {
    /// A status line per running VM (stderr is a terminal).
    Bars,
    /// Plain lines on stderr; `verbose`: steps and script output too.
    Plain { verbose: bool },
    /// JSON lines on stdout (`--events`).
    Events,
    /// Nothing (`-q`, `--json`).
    Silent,
}

pub(crate) struct Display {
    mode: Mode,
    /// Plan warnings are shown unless `-q`.
    warnings: bool,
    multi: MultiProgress,
    /// The status line of each running VM, by VM and host.
    bars: Mutex<HashMap<(String, Option<String>), ProgressBar>>,
}

impl Display {
    pub(crate) fn new(mode: Mode, warnings: bool) -> Display {
        Display {
            mode,
            warnings,
            multi: MultiProgress::new(),
            bars: Mutex::new(HashMap::new()),
        }
    }

    /// Shows one event.
    pub(crate) fn show(&self, e: &Event<'_>) {
        if let What::Warning(d) = &e.what
            && self.warnings
        {
            self.multi.suspend(|| err!("{}", d.render()));
        }
        match self.mode {
            Mode::Bars => self.bar(e),
            Mode::Plain { verbose } => plain(e, verbose),
            Mode::Events => {
                // The stream's reader going away never stops a run or its clean-up.
                let mut o = std::io::stdout().lock();
                let _ = writeln!(o, "{}", e.to_json()).and_then(|()| o.flush());
            }
            Mode::Silent => {}
        }
    }

    fn bar(&self, e: &Event<'_>) {
        let Ok(mut bars) = self.bars.lock() else {
            return;
        };
        let key = (e.vm.to_string(), e.host.map(String::from));
        match &e.what {
            What::Started { .. } => {
                let pb = self.multi.add(ProgressBar::new_spinner());
                pb.set_style(
                    ProgressStyle::with_template("{spinner} {prefix} [{elapsed}] {wide_msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                pb.set_prefix(label(e));
                pb.set_message("starting");
                pb.enable_steady_tick(Duration::from_millis(120));
                bars.insert(key, pb);
            }
            What::Step(s) => {
                if let Some(pb) = bars.get(&key) {
                    pb.set_message(s.describe());
                }
            }
            What::Line(line) => {
                if let Some(pb) = bars.get(&key) {
                    let shown: String =
                        line.chars().filter(|c| !c.is_control()).take(100).collect();
                    pb.set_message(shown);
                }
            }
            What::Finished(_) => {
                if let Some(pb) = bars.remove(&key) {
                    pb.finish_and_clear();
                }
            }
            What::Warning(_) => {}
        }
    }
}

/// `vm` or `vm@host`.
fn label(e: &Event<'_>) -> String {
    match e.host {
        Some(h) => format!("{}@{h}", e.vm),
        None => e.vm.to_string(),
    }
}

fn plain(e: &Event<'_>, verbose: bool) {
    match &e.what {
        What::Started {
            image,
            log,
            local_log,
        } => match (e.host, local_log) {
            (Some(h), Some(copy)) => errln!(
                "provisioning `{}` from image `{image}` on `{h}` (log there: {}; local copy: {})",
                e.vm,
                log.display(),
                copy.display()
            ),
            _ => errln!(
                "provisioning `{}` from image `{image}` (log: {})",
                e.vm,
                log.display()
            ),
        },
        What::Step(s) if verbose => errln!("{}: {}", label(e), s.describe()),
        What::Line(line) if verbose => errln!("{} | {line}", e.vm),
        _ => {}
    }
}

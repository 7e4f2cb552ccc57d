//! The record of a run on a managed server (issues #9, #10; docs/records.md): kept on this
//! machine under `<state_dir>/hosts/<host>/<vm>/` in the local format, with server-side
//! paths. A record of that name on that host refuses the run before anything is made
//! (unless `--force`); the journal header is written before the script starts, so a convirt
//! killed mid-run leaves an "interrupted" entry; the driver's report of what it created
//! (with `stat` identities from the server) becomes the record's `created` list.

use super::{Lock, Options, Plan};
use crate::diagnostic::Diagnostic;
use crate::remote::Target;
use crate::state::journal::Journal;
use crate::state::{self, Item, Kind, Record, Vm, remote as rs};

/// A remote run's record in the making; holds the console-side lock of that VM on that host.
pub(crate) struct Recorder {
    journal: Journal,
    _lock: Lock,
    prior: Option<Record>,
    logged: bool,
}

fn refuse(vm: &str, host: &str, what: String, hint: String) -> anyhow::Error {
    Diagnostic::error(format!("cannot provision `{vm}` on `{host}`: {what}"))
        .with_hint(hint)
        .into()
}

/// Before anything is made: the lock, the name-collision check against this host's records,
/// then the journal with its header.
pub(crate) fn begin(
    plan: &Plan,
    target: &Target,
    local_log: &std::path::Path,
    opts: &Options,
) -> anyhow::Result<Recorder> {
    let host = &target.name;
    let vm = &plan.vm;
    let root = rs::lock_root(&plan.state_dir, host);
    if state::lock_held(&root, vm) {
        // Another convirt of this machine provisions (or removes) it there right now.
        let path = root.join("locks").join(format!("{vm}.lock"));
        let holder = std::fs::read_to_string(&path).unwrap_or_default();
        return Err(Diagnostic::error(format!(
            "VM `{vm}` is already being provisioned on {host} from this machine ({})",
            holder.trim()
        ))
        .with_hint(format!(
            "wait for it to finish; the lock is `{}`",
            path.display()
        ))
        .into());
    }
    let lock = super::lock(&root, vm, &plan.image)?;
    let mut prior = None;
    if let Some(old) = Vm::load_remote(&plan.state_dir, host, vm)? {
        let hint = format!(
            "`convirt vm remove {vm} --host {host}` removes what convirt made for it there; `--force` replaces it"
        );
        if !opts.force {
            if let Some(r) = &old.run {
                let how = if r.failed_kept {
                    "failed and was kept (--keep)"
                } else {
                    "was interrupted"
                };
                let since = r
                    .header
                    .as_ref()
                    .map(|h| format!(" (pid {}, started {})", h.pid, h.started))
                    .unwrap_or_default();
                return Err(refuse(
                    vm,
                    host,
                    format!("an earlier provisioning run there {how}{since}"),
                    hint,
                ));
            }
            if let Some(r) = &old.record {
                return Err(refuse(
                    vm,
                    host,
                    format!(
                        "it was provisioned there already from image `{}` on {} (record `{}`)",
                        r.header.image,
                        r.finished,
                        old.dir.join(state::RECORD).display()
                    ),
                    hint,
                ));
            }
        }
        prior = old.record;
    }
    let header = plan.run_header(host, Some((target.display_address(), local_log)));
    let dir = rs::host_dir(&plan.state_dir, host).join(vm);
    let journal = Journal::begin(&dir, header).map_err(|e| {
        anyhow::anyhow!(
            "cannot write the journal of `{vm}` in `{}`: {e}",
            dir.display()
        )
    })?;
    Ok(Recorder {
        journal,
        _lock: lock,
        prior,
        logged: false,
    })
}

/// The log and the inputs beside it, which the driver writes before the script starts.
fn logs(plan: &Plan) -> Vec<Item> {
    [
        &plan.log_path,
        &plan.image_conf_path,
        &plan.vm_conf_path,
        &plan.args_path,
    ]
    .iter()
    .map(|p| Item::new(p.display().to_string(), Kind::Log))
    .collect()
}

/// What the report names, or (when it did not arrive whole or cannot be read) what the plan
/// knows the run made, without identities, and why.
fn reported(plan: &Plan, report: Option<&[u8]>, installed: bool) -> (Vec<Item>, Option<String>) {
    let why = match report.map(rs::parse_report) {
        Some(Ok(items)) => return (items, None),
        Some(Err(e)) => format!("its report of what it created was unreadable ({e})"),
        None => "it sent no report of what it created".to_string(),
    };
    let mut items = logs(plan);
    items.extend(
        plan.created_disks()
            .into_iter()
            .map(|d| Item::new(d, Kind::Disk)),
    );
    if installed {
        items.push(Item::new(
            plan.config_path.display().to_string(),
            Kind::Config,
        ));
    }
    (items, Some(why))
}

impl Recorder {
    /// The driver said `started`: the log files exist on the server from now on.
    pub(crate) fn started(&mut self, plan: &Plan) {
        if std::mem::replace(&mut self.logged, true) {
            return;
        }
        for i in logs(plan) {
            if let Err(e) = self.journal.created(i) {
                tracing::warn!("cannot write the journal of `{}`: {e}", plan.vm);
            }
        }
    }

    /// A successful run: the record, written atomically. Returns what went wrong (the VM
    /// stays provisioned).
    pub(crate) fn finish(self, plan: &Plan, report: Option<&[u8]>, opts: &Options) -> Vec<String> {
        let mut problems = Vec::new();
        let (mut created, why) = reported(plan, report, true);
        if let Some(why) = why {
            problems.push(format!(
                "the server's driver: {why}; the record names the config, disks and logs without their identities"
            ));
        }
        created.retain(|i| opts.keep || i.kind != Kind::Workdir);
        // `--force` over a recorded VM: what the old record names and this run did not make
        // again stays known, so `vm remove` can still clean it.
        if let Some(old) = &self.prior {
            for i in &old.created {
                if !created.iter().any(|c| c.path == i.path) {
                    created.push(i.clone());
                }
            }
        }
        let record = Record {
            format_version: state::FORMAT_VERSION,
            header: self.journal.header().clone(),
            finished: super::log::timestamp(),
            created,
            values: state::masked_values(&plan.resolved),
        };
        if let Err(e) = self.journal.finish(&record) {
            problems.push(format!("cannot write its record: {e}"));
        }
        problems
    }

    /// The connection was lost mid-run. When convirt reconnected and the server removed
    /// everything, the run leaves nothing (as a failed run); otherwise (`None`: could not
    /// reconnect, or items the server could not remove) the journal stays, naming them, so
    /// `vm list` shows the run as interrupted for that host and `vm remove` can finish it.
    pub(crate) fn lost(self, plan: &Plan, not_removed: Option<&[String]>) {
        if not_removed.is_some_and(<[String]>::is_empty) {
            return;
        }
        let mut journal = self.journal;
        let disks = plan.created_disks();
        for p in not_removed.unwrap_or_default() {
            let item = match p.strip_prefix("lvm:") {
                Some(lv) => Item::new(lv, Kind::Lvm),
                None if disks.contains(p) => Item::new(p.clone(), Kind::Disk),
                None => Item::new(p.clone(), Kind::File),
            };
            if let Err(e) = journal.created(item) {
                tracing::warn!("cannot write the journal of `{}`: {e}", plan.vm);
            }
        }
        journal.leave_unfinished();
    }

    /// A failed run with `--keep`: the journal stays, naming what the server kept.
    pub(crate) fn kept(mut self, plan: &Plan, report: Option<&[u8]>) {
        let (items, _) = reported(plan, report, false);
        for i in items {
            if let Err(e) = self.journal.created(i) {
                tracing::warn!("cannot write the journal of `{}`: {e}", plan.vm);
            }
        }
        let _ = self.journal.failed_kept();
    }
}

/// `--start` / `--autostart` for the driver: `START`, and `AUTO_LINK`, the link in the
/// server's auto-start directory (empty without `--autostart`).
pub(crate) fn after_sh(
    plan: &Plan,
    settings: &crate::settings::Settings,
    opts: &Options,
) -> String {
    let link = if opts.autostart {
        crate::state::xen::autostart_link(&settings.xen_auto_dir, &plan.config_path)
            .display()
            .to_string()
    } else {
        String::new()
    };
    format!(
        "START={}\nAUTO_LINK={}\n",
        u8::from(opts.start),
        crate::value::shell_quote(&link)
    )
}

/// What the driver said about `--start` / `--autostart`, as the local run reports it.
#[derive(Debug, Default)]
pub(crate) struct AfterSaid {
    pub autostart: Option<String>,
    pub problems: Vec<String>,
    pub started: bool,
}

impl AfterSaid {
    /// Takes one `CONVIRT:` status word of `--start` / `--autostart`.
    pub(crate) fn take(&mut self, word: &str, text: &str, host: &str, config: &str) {
        match word {
            "autostart" => self.autostart = Some(text.to_string()),
            "autostartfailed" => self.problems.push(format!(
                "cannot link it into the auto-start directory on {host}: {text}"
            )),
            "xlstarted" => self.started = true,
            "xlmissing" => self.problems.push(format!(
                "it was not started: `xl create {config}` on {host}: `xl` is not installed (no Xen tools on the server's PATH)"
            )),
            "xlfailed" => {
                let (status, last) = text.split_once(' ').unwrap_or((text, ""));
                let hint = if ["hypervisor", "xenstore", "/proc/xen"]
                    .iter()
                    .any(|w| last.contains(w))
                {
                    " (the server is not running under the Xen hypervisor)"
                } else {
                    ""
                };
                let last = if last.is_empty() { "no error output" } else { last };
                self.problems.push(format!(
                    "it was not started: `xl create {config}` on {host} failed (exit status {status}): {last}{hint}"
                ));
            }
            _ => {}
        }
    }
}

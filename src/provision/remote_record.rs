//! The record of a run on a managed server (issues #9, #10; docs/records.md): kept on this
//! machine under `<state_dir>/hosts/<host>/<vm>/` in the local format, with server-side
//! paths. A record of that name on that host refuses the run before anything is made
//! (unless `--force`); the journal header is written before the script starts, so a convirt
//! killed mid-run leaves an "interrupted" entry; the server's own record of what the run
//! created (with the server's identities) becomes the record's `created` list.

use super::{Options, Plan};
use crate::diagnostic::Diagnostic;
use crate::lock::Lock;
use crate::remote::Target;
use crate::state::journal::Journal;
use crate::state::{self, Item, Kind, Record, Vm};

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
    run: &str,
    (local_state, host_key): (&std::path::Path, Option<&str>),
) -> anyhow::Result<Recorder> {
    let host = &target.name;
    let vm = &plan.vm;
    let root = crate::lock::remote_root(local_state, host);
    if crate::lock::held(&root, vm) {
        // Another convirt of this machine provisions (or removes) it there right now.
        return Err(Diagnostic::error(format!(
            "VM `{vm}` is already being provisioned on {host} from this machine ({})",
            crate::lock::holder(&root, vm)
        ))
        .with_hint(format!(
            "wait for it to finish; the lock is `{}`",
            crate::lock::vm_path(&root, vm).display()
        ))
        .into());
    }
    let lock = crate::lock::lock(&root, vm, &plan.image)?;
    let mut prior = None;
    let mut old = Vm::load_remote(local_state, host, vm)?;
    // An interrupted run there: the server's word first (it may have finished or cleaned up).
    if let Some(o) = old.as_ref().filter(|o| o.run.is_some()) {
        if let Some(note) = reconcile(target, o) {
            tracing::info!("{note}");
        }
        old = Vm::load_remote(local_state, host, vm)?;
    }
    if let Some(old) = &old {
        same_server(&old.name, host, old.header(), host_key)?;
    }
    if let Some(old) = old {
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
    let mut header = plan.run_header(host, Some((target.display_address(), local_log)));
    header.run = Some(run.to_string());
    header.host_key = host_key.map(String::from);
    let dir = state::host_dir(local_state, host).join(vm);
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

/// A server showing another host key than the one a VM's record kept is not that VM's
/// server (a `[hosts.NAME]` entry re-pointed, issue #18.4): refused, naming both keys.
pub(crate) fn same_server(
    vm: &str,
    host: &str,
    header: Option<&state::Header>,
    now: Option<&str>,
) -> anyhow::Result<()> {
    let Some(was) = header.and_then(|h| h.host_key.as_deref()) else {
        return Ok(());
    };
    match now {
        Some(now) if now != was => Err(Diagnostic::error(format!(
            "`{host}` is not the server `{vm}` was provisioned on: it shows the host key {now}, the record of `{vm}` names {was}"
        ))
        .with_hint(format!(
            "check the address of `{host}` in the settings; nothing was changed on either server"
        ))
        .into()),
        _ => Ok(()),
    }
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

/// What the server's record or journal names, or (when it sent none) what the plan knows
/// the run made, without identities, and why.
fn reported(plan: &Plan, items: Option<Vec<Item>>, installed: bool) -> (Vec<Item>, Option<String>) {
    if let Some(items) = items {
        return (items, None);
    }
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
    (
        items,
        Some("it sent no record of what it created".to_string()),
    )
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
    pub(crate) fn finish(
        self,
        plan: &Plan,
        created: Option<Vec<Item>>,
        opts: &Options,
    ) -> Vec<String> {
        let mut problems = Vec::new();
        let (mut created, why) = reported(plan, created, true);
        if let Some(why) = why {
            problems.push(format!(
                "the server: {why}; the record names the config, disks and logs without their identities"
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

    /// A run that ended without a record: the journal stays naming `left` (what the server
    /// says is left of it, or, when it could not be asked, what the plan would have made), so
    /// `vm list` shows it as interrupted for that host and `vm remove` can finish it. With
    /// nothing left, confirmed by the server, it leaves nothing (as a failed run).
    pub(crate) fn lost(self, plan: &Plan, left: Option<Vec<Item>>) {
        if left.as_ref().is_some_and(Vec::is_empty) {
            return;
        }
        let mut journal = self.journal;
        let (items, _) = reported(plan, left, false);
        let known: Vec<String> = journal.items().into_iter().map(|i| i.path).collect();
        for item in items.into_iter().filter(|i| !known.contains(&i.path)) {
            if let Err(e) = journal.created(item) {
                tracing::warn!("cannot write the journal of `{}`: {e}", plan.vm);
            }
        }
        journal.leave_unfinished();
    }

    /// A failed run with `--keep`: the journal stays, naming what the server kept.
    pub(crate) fn kept(mut self, plan: &Plan, left: Option<Vec<Item>>) {
        let (items, _) = reported(plan, left, false);
        let known: Vec<String> = self.journal.items().into_iter().map(|i| i.path).collect();
        for i in items.into_iter().filter(|i| !known.contains(&i.path)) {
            if let Err(e) = self.journal.created(i) {
                tracing::warn!("cannot write the journal of `{}`: {e}", plan.vm);
            }
        }
        let _ = self.journal.failed_kept();
    }
}

/// An unfinished remote run of this machine's records, settled with the server's word on
/// the next contact (`vm list`, `vm show`, `vm remove`, `provision`): the run's kept answer,
/// or the server's record of that run (provisioned), or its journal's items still there
/// (interrupted, with those leftovers), or nothing at all there (it cleaned up: forgotten
/// here). Returns what changed, for a note; `None` when the server could not be asked or
/// the run is not unfinished.
pub(crate) fn reconcile(target: &Target, vm: &Vm) -> Option<String> {
    use super::proto::{Event, Request};
    let run = vm.run.as_ref()?;
    if run.failed_kept {
        return None;
    }
    let header = run.header.as_ref()?;
    let id = header.run.clone()?;
    let settings = target.settings.as_ref();
    let request = Request::Status {
        vm: vm.name.clone(),
        run: id.clone(),
        work_dir: settings.and_then(|h| h.work_dir.clone()),
        state_dir: settings.and_then(|h| h.state_dir.clone()),
    };
    let (answer, found) = crate::remote::find::ask::<_, Event>(target, None, &request).ok()?;
    same_server(&vm.name, &vm.host, Some(header), found.host_key.as_deref()).ok()?;
    let Event::Status {
        record,
        leftovers,
        answer,
    } = answer
    else {
        return None;
    };
    let finished = |created: Vec<Item>| Record {
        format_version: state::FORMAT_VERSION,
        header: header.clone(),
        finished: super::log::timestamp(),
        created,
        values: serde_json::Value::Null,
    };
    let (done, left): (Option<Record>, Vec<Item>) = match (answer.map(|a| *a), record) {
        (_, Some(r)) if r.header.run.as_deref() == Some(id.as_str()) => (
            Some(Record {
                header: header.clone(),
                ..*r
            }),
            vec![],
        ),
        (Some(Event::Provisioned { created, .. }), _) => (Some(finished(created)), vec![]),
        (Some(Event::Failed { left, .. }), _) => (None, left),
        _ => (None, leftovers.unwrap_or_default()),
    };
    if let Some(r) = &done {
        state::journal::settle(&vm.dir, Some(r), &[]).ok()?;
        return Some(format!(
            "`{}` on `{}`: the server finished the interrupted run; recorded as provisioned",
            vm.name, vm.host
        ));
    }
    if left.is_empty() {
        state::remove::forget(vm).ok()?;
        return Some(format!(
            "`{}` on `{}`: the server removed everything of the interrupted run; forgotten",
            vm.name, vm.host
        ));
    }
    let known: Vec<String> = vm.items().into_iter().map(|i| i.path).collect();
    let new: Vec<Item> = left
        .into_iter()
        .filter(|i| !known.contains(&i.path))
        .collect();
    state::journal::settle(&vm.dir, None, &new).ok()?;
    None
}

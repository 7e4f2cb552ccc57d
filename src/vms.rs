//! The VMs of every host, for both front ends (`convirt vm`, the console's VMs page,
//! docs/records.md): what each managed server says of its VMs' files and domains, Start, and
//! the removal of a VM here or on its server. Plain functions of the settings and a record,
//! returning typed results; printing and pages are the front ends' business.
//!
//! A VM made on a managed server is removed by one ssh round trip to the server's
//! `convirt __serve`, which removes exactly what the record names with the very code a local
//! removal runs (a running domain refused, each item only while it is still the file the run
//! created). Listing asks each server in one round trip which of its VMs' files are there
//! and which domains it runs, bounded by `CHECK_WAIT`.

use crate::diagnostic::Diagnostic;
use crate::provision::proto::{Event, Request};
use crate::remote::{Target, find, parse_target};
use crate::settings::Settings;
use crate::state::{self, Item, Kind, Status, Vm, remove::Step, xen};
use anyhow::Result;
use std::collections::HashMap;
use std::time::Duration;

/// How long listing waits for a server's answer (connecting included; ssh itself gives up
/// connecting after 10 s) unless its `list_timeout` says otherwise: a server that does not
/// answer shows `-`, never a guess.
pub(crate) const CHECK_WAIT: Duration = Duration::from_secs(15);

/// Where the VM's server is now: its `[hosts.NAME]` entry when there is one, else the
/// address the record kept, else the host text itself.
pub(crate) fn target(settings: &Settings, vm: &Vm) -> Result<Target> {
    let hosts = &settings.hosts;
    let server = vm.header().and_then(|h| h.server.clone());
    let mut t = match server {
        Some(s) if !hosts.contains_key(&vm.host) => parse_target(&s, hosts)?,
        _ => parse_target(&vm.host, hosts)?,
    };
    t.name = vm.host.clone();
    Ok(t)
}

/// What one server said: which of its VMs' files are there (path → there), and its domains
/// or why its `xl list` could not say.
#[derive(Debug)]
pub(crate) struct Checked {
    pub files: HashMap<String, bool>,
    pub domains: Result<Vec<xen::Domain>, String>,
}

/// Each server's answer (host → answer), or in a few words why there was none.
pub(crate) type Presence = HashMap<String, Result<Checked, String>>;

/// The paths `vm list` and `vm show` look at: the config and everything the runs created.
fn looked_at(vm: &Vm) -> Vec<Item> {
    let mut items = vm.items();
    if let Some(h) = vm.header()
        && !items.iter().any(|i| i.path == h.config)
    {
        items.push(Item::new(h.config.clone(), Kind::Config));
    }
    items
}

/// Asks every server of `vms` (side by side, one ssh round trip each, at most `CHECK_WAIT`
/// or the host's `list_timeout`)
/// which files are there and which domains run.
pub(crate) fn check(settings: &Settings, vms: &[Vm]) -> Presence {
    let mut by_host: Vec<(String, Vec<&Vm>)> = Vec::new();
    for vm in vms.iter().filter(|v| v.remote) {
        match by_host.iter_mut().find(|(h, _)| *h == vm.host) {
            Some((_, v)) => v.push(vm),
            None => by_host.push((vm.host.clone(), vec![vm])),
        }
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = by_host
            .iter()
            .map(|(h, vms)| (h.clone(), scope.spawn(move || check_host(settings, vms))))
            .collect();
        handles
            .into_iter()
            .map(|(h, t)| {
                let r = t
                    .join()
                    .unwrap_or_else(|_| Err("the check failed".to_string()));
                (h, r)
            })
            .collect()
    })
}

/// An ssh or protocol error in a few words (for a column).
fn short(e: &anyhow::Error) -> String {
    let text = e.to_string();
    let s = if text.contains("is unreachable") {
        "unreachable"
    } else if text.contains("refused the authentication") {
        "authentication refused"
    } else if text.contains("host key") {
        "host key not accepted"
    } else if text.contains("was lost") {
        "connection lost"
    } else if text.contains("did not answer within") {
        "no answer in time"
    } else {
        text.lines().next().unwrap_or("no answer")
    };
    s.to_string()
}

fn check_host(settings: &Settings, vms: &[&Vm]) -> Result<Checked, String> {
    let first = vms.first().ok_or("no VM")?;
    let target = target(settings, first).map_err(|e| e.to_string())?;
    let items: Vec<Item> = vms.iter().flat_map(|v| looked_at(v)).collect();
    let asked = find::ask_within(
        &target,
        None,
        &Request::Check {
            items: items.clone(),
        },
        Some(
            target
                .settings
                .as_ref()
                .and_then(|h| h.list_timeout)
                .map_or(CHECK_WAIT, Duration::from_secs),
        ),
    );
    match asked {
        Ok((Event::Checked { present, domains }, found)) if present.len() == items.len() => {
            for v in vms {
                crate::provision::remote_record::same_server(
                    &v.name,
                    &v.host,
                    v.header(),
                    found.host_key.as_deref(),
                )
                .map_err(|e| e.to_string().lines().next().unwrap_or_default().to_string())?;
            }
            Ok(Checked {
                files: items.into_iter().map(|i| i.path).zip(present).collect(),
                domains: domains.map_err(|e| crate::provision::proto::escape(&e)),
            })
        }
        Ok(_) => Err("an answer that does not fit the question".to_string()),
        Err(e) => Err(short(&e)),
    }
}

/// What `xl list` says of a VM: `Ok(Some)` its domain, `Ok(None)` not running, `Err` why
/// nobody could say. `local` is this machine's `xl list`, `checks` the servers' answers.
pub(crate) fn domain<'a>(
    vm: &Vm,
    local: &'a Result<Vec<xen::Domain>, String>,
    checks: &'a Presence,
) -> Result<Option<&'a xen::Domain>, Unknown> {
    let domains = if vm.remote {
        match checks.get(&vm.host) {
            Some(Ok(c)) => c.domains.as_ref().map_err(|_| Unknown::Xl)?,
            _ => return Err(Unknown::NotAnswered),
        }
    } else {
        local.as_ref().map_err(|_| Unknown::Xl)?
    };
    Ok(domains.iter().find(|d| d.name == vm.name))
}

/// Why a VM's state is not known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unknown {
    /// Its server did not answer (shown `-`).
    NotAnswered,
    /// `xl list` there could not say (shown `unknown`).
    Xl,
}

/// The state word of a VM: the domain's, `off` when Xen does not run it, `unknown` when
/// `xl list` could not say, `-` when its server did not answer.
pub(crate) fn state_word(d: Result<Option<&xen::Domain>, Unknown>) -> &'static str {
    match d {
        Ok(Some(d)) => d.state,
        Ok(None) => "off",
        Err(Unknown::Xl) => "unknown",
        Err(Unknown::NotAnswered) => "-",
    }
}

/// Unfinished remote runs settled with their servers' word first (docs/records.md): each
/// server of an interrupted run is asked once, side by side; a VM the server cleaned up
/// completely is forgotten (and leaves the list), one it finished is provisioned. Returns
/// the VMs and the notes of what was settled.
pub(crate) fn reconcile(settings: &Settings, vms: Vec<Vm>) -> (Vec<Vm>, Vec<String>) {
    let state_dir = &settings.state_dir;
    let pending = |v: &Vm| {
        v.remote
            && v.run.as_ref().is_some_and(|r| !r.failed_kept)
            && v.status(&settings.work_dir) == Status::Interrupted
    };
    let settled: Vec<(Option<Vm>, Option<String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = vms
            .into_iter()
            .map(|vm| {
                if !pending(&vm) {
                    return Err(Box::new(vm));
                }
                Ok(scope.spawn(move || {
                    let Ok(t) = target(settings, &vm) else {
                        return (Some(vm), None);
                    };
                    let note = crate::provision::remote_record::reconcile(&t, &vm);
                    match Vm::load_remote(state_dir, &vm.host, &vm.name) {
                        Ok(v) => (v, note),
                        Err(_) => (Some(vm), note),
                    }
                }))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| match h {
                Err(vm) => (Some(*vm), None),
                Ok(t) => t.join().unwrap_or((None, None)),
            })
            .collect()
    });
    let mut notes = Vec::new();
    let mut out = Vec::new();
    for (vm, note) in settled {
        out.extend(vm);
        notes.extend(note);
    }
    (out, notes)
}

/// `xl create` of a provisioned VM's config: here, or on its server (the config its server's
/// own record names). Returns what was started.
pub(crate) fn start(settings: &Settings, vm: &Vm) -> Result<String> {
    let name = &vm.name;
    if vm.status(&settings.work_dir) != Status::Provisioned {
        return Err(Diagnostic::error(format!("`{name}` is not provisioned completely")).into());
    }
    if !vm.remote {
        let cfg = vm
            .header()
            .map(|h| h.config.clone())
            .ok_or_else(|| Diagnostic::error(format!("`{name}` has no config recorded")))?;
        if xen::is_running(name).map_err(Diagnostic::error)? {
            return Err(Diagnostic::error(format!("`{name}` is already running")).into());
        }
        xen::create(std::path::Path::new(&cfg)).map_err(Diagnostic::error)?;
        return Ok(format!("started `{name}`: xl create {cfg}"));
    }
    let target = target(settings, vm)?;
    let host = &vm.host;
    let request = Request::Start {
        vm: name.clone(),
        state_dir: target.settings.as_ref().and_then(|h| h.state_dir.clone()),
    };
    let (answer, found) = find::ask(&target, None, &request)?;
    crate::provision::remote_record::same_server(
        name,
        host,
        vm.header(),
        found.host_key.as_deref(),
    )?;
    match answer {
        Event::Launched(Ok(cfg)) => Ok(format!(
            "started `{name}` on `{host}`: xl create {}",
            crate::provision::proto::escape(&cfg)
        )),
        Event::Launched(Err(why)) => Err(Diagnostic::error(format!(
            "cannot start `{name}` on `{host}`: {}",
            crate::provision::proto::escape(&why)
        ))
        .into()),
        _ => Err(Diagnostic::error(format!(
            "`{host}` answered the start of `{name}` with something else"
        ))
        .into()),
    }
}

/// Why a VM must not be removed now, if it must not. `running`: this machine's domains (a
/// remote VM's server is asked in the removal's own round trip).
pub(crate) fn blocker(
    settings: &Settings,
    vm: &Vm,
    running: &Result<Vec<String>, String>,
) -> Option<String> {
    if !vm.remote
        && let Ok(domains) = running
        && domains.iter().any(|d| d == &vm.name)
    {
        return Some(format!(
            "`{}` is running (`xl list`); stop it first (`xl shutdown {}`)",
            vm.name, vm.name
        ));
    }
    if vm.status(&settings.work_dir) == Status::Running {
        return Some(format!("`{}` is being provisioned right now", vm.name));
    }
    for w in vm
        .items()
        .iter()
        .filter(|i| i.kind == Kind::Workdir && !vm.remote)
    {
        let pids = state::processes_in(std::path::Path::new(&w.path));
        if !pids.is_empty() {
            return Some(format!(
                "a script of the interrupted run of `{}` is still running (pid {})",
                vm.name,
                pids.iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    None
}

/// The removal steps of one VM (newest first), here or on its server over ssh, and a note
/// when its server could not say whether the domain runs. A running remote domain is an
/// error (nothing removed).
pub(crate) fn steps(
    settings: &Settings,
    vm: &Vm,
    keep_disks: bool,
    dry_run: bool,
) -> Result<(Vec<Step>, Option<String>)> {
    if !vm.remote {
        let bounds = state::remove::local_bounds(settings, vm);
        return Ok((
            state::remove::remove(vm, keep_disks, dry_run, &bounds),
            None,
        ));
    }
    remove_remote(settings, vm, keep_disks, dry_run)
}

/// A removal done: the VM as read under its lock, what was done, the server's note.
pub(crate) struct Removal {
    pub vm: Vm,
    pub steps: Vec<Step>,
    pub note: Option<String>,
}

impl Removal {
    /// The steps that failed (the record then stays).
    pub(crate) fn failed(&self) -> Vec<&Step> {
        self.steps.iter().filter(|s| s.action == "failed").collect()
    }
}

/// Removes one VM under its lock (no provisioning of that name runs meanwhile): read again
/// under the lock (a `provision --force` that finished meanwhile wrote a new record whose
/// files this removal must see, issue #18), removed, and forgotten when nothing failed.
/// `None`: the record was gone by then.
pub(crate) fn remove_locked(
    settings: &Settings,
    vm: &Vm,
    keep_disks: bool,
) -> Result<Option<Removal>> {
    let lock_root = if vm.remote {
        state::remote::lock_root(&settings.state_dir, &vm.host)
    } else {
        settings.work_dir.clone()
    };
    let _lock = crate::provision::lock(&lock_root, &vm.name, "(vm remove)")?;
    let fresh = if vm.remote {
        Vm::load_remote(&settings.state_dir, &vm.host, &vm.name)?
    } else {
        Vm::load(&settings.state_dir, state::LOCALHOST, &vm.name)?
    };
    let Some(vm) = fresh else {
        return Ok(None);
    };
    let (steps, note) = steps(settings, &vm, keep_disks, false)?;
    let done = Removal { vm, steps, note };
    if done.failed().is_empty() {
        state::remove::forget(&done.vm).map_err(|e| {
            anyhow::anyhow!("cannot remove the record `{}`: {e}", done.vm.dir.display())
        })?;
    }
    Ok(Some(done))
}

/// What removing a remote VM did (or would do), newest first, and a note when the server
/// could not say whether the domain runs.
fn remove_remote(
    settings: &Settings,
    vm: &Vm,
    keep_disks: bool,
    dry_run: bool,
) -> Result<(Vec<Step>, Option<String>)> {
    let items = vm.items();
    // Decided here, like the local removal: what is never sent to the server.
    let mut local: Vec<(usize, Step)> = Vec::new();
    let mut send = Vec::new();
    for (i, item) in items.iter().enumerate().rev() {
        if keep_disks && matches!(item.kind, Kind::Disk | Kind::Lvm) {
            local.push((i, Step::new(item, "kept", "--keep-disks")));
        } else if item.kind != Kind::Lvm && !item.path.starts_with('/') {
            local.push((i, Step::new(item, "kept", "not an absolute path")));
        } else {
            send.push((i, item));
        }
    }
    let target = target(settings, vm)?;
    let host = &vm.host;
    let request = Request::Remove {
        vm: vm.name.clone(),
        items: send.iter().map(|(_, i)| (*i).clone()).collect(),
        dry_run,
        state_dir: target.settings.as_ref().and_then(|h| h.state_dir.clone()),
    };
    // Not another server's files: its host key first (one round trip), then the removal.
    if let Some(h) = vm.header().filter(|h| h.host_key.is_some()) {
        let (_, found): (crate::remote::wire::FactsAnswer, _) = find::ask(&target, None, "facts")?;
        crate::provision::remote_record::same_server(
            &vm.name,
            host,
            Some(h),
            found.host_key.as_deref(),
        )?;
    }
    let (answer, _) = find::ask(&target, None, &request)?;
    let Event::Removal {
        running,
        steps: done,
    } = answer
    else {
        return Err(Diagnostic::error(format!(
            "`{host}` answered the removal of `{}` with something else",
            vm.name
        ))
        .into());
    };
    let note = match &running {
        Ok(true) => {
            return Err(Diagnostic::error(format!(
                "cannot remove `{}`: it is running on `{host}` (`xl list` there)",
                vm.name
            ))
            .with_hint(format!(
                "stop it first (`xl shutdown {}` on {host}); nothing was removed",
                vm.name
            ))
            .into());
        }
        Err(why) => Some(format!(
            "could not check whether `{}` is running on `{host}`: {}",
            vm.name,
            crate::provision::proto::escape(why)
        )),
        _ => None,
    };
    let mut steps = Vec::new();
    let mut sent = send.iter().enumerate().peekable();
    let mut local = local.into_iter().peekable();
    // Both lists are newest first; merge them back into one order.
    loop {
        let take_local = match (local.peek(), sent.peek()) {
            (Some((a, _)), Some((_, (b, _)))) => a > b,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        if take_local {
            if let Some((_, s)) = local.next() {
                steps.push(s);
            }
        } else if let Some((n, (_, item))) = sent.next() {
            steps.push(match done.get(n) {
                Some(d) => Step::new(
                    item,
                    action(&d.action),
                    crate::provision::proto::escape(&d.why),
                ),
                None => Step::new(
                    item,
                    "failed",
                    format!("no answer from `{host}` (the connection broke off?)"),
                ),
            });
        }
    }
    // Last (it was made first): the copy of the server's log this machine kept.
    if let Some(copy) = vm.header().and_then(|h| h.local_log.as_ref()) {
        let item = Item::new(copy.clone(), Kind::Log);
        steps.push(state::remove::remove_item(
            &item,
            keep_disks,
            dry_run,
            &state::remove::local_bounds(settings, vm),
        ));
    }
    Ok((steps, note))
}

/// A server's word for a removal step, as `Step` spells it (an unknown word is a failure).
fn action(word: &str) -> &'static str {
    match word {
        "remove" => "remove",
        "removed" => "removed",
        "gone" => "gone",
        "kept" => "kept",
        _ => "failed",
    }
}

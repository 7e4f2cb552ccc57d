//! `vm remove` of a VM made on a managed server (docs/records.md): one ssh round trip asks
//! the server's `convirt __serve` to remove exactly what the record names, with the very
//! code a local removal runs (a running domain refused, each item only while it is still
//! the file the run created). `vm list` and `vm show` ask each server in one round trip
//! which of its VMs' files are still there.

use super::App;
use crate::diagnostic::Diagnostic;
use crate::provision::proto::{Event, Request};
use crate::remote::{Target, find, parse_target};
use crate::state::{Item, Kind, Vm, remove::Step};
use anyhow::Result;
use std::collections::HashMap;

/// Where the VM's server is now: its `[hosts.NAME]` entry when there is one, else the
/// address the record kept, else the host text itself.
fn target(app: &App, vm: &Vm) -> Result<Target> {
    let hosts = &app.settings.hosts;
    let server = vm.header().and_then(|h| h.server.clone());
    let mut t = match server {
        Some(s) if !hosts.contains_key(&vm.host) => parse_target(&s, hosts)?,
        _ => parse_target(&vm.host, hosts)?,
    };
    t.name = vm.host.clone();
    Ok(t)
}

/// What removing a remote VM did (or would do), newest first, and a note when the server
/// could not say whether the domain runs.
pub(crate) fn remove(
    app: &App,
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
    let target = target(app, vm)?;
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
    let mut steps = merge(local, &send, &done, host);
    // Last (it was made first): the copy of the server's log this machine kept.
    if let Some(copy) = vm.header().and_then(|h| h.local_log.as_ref()) {
        let item = Item::new(copy.clone(), Kind::Log);
        steps.push(crate::state::remove::remove_item(
            &item,
            keep_disks,
            dry_run,
            &crate::state::remove::local_bounds(&app.settings, vm),
        ));
    }
    Ok((steps, note))
}

/// The steps decided here and the server's answers for the items sent, both newest first,
/// merged back into one order (an item without an answer failed).
fn merge(
    local: Vec<(usize, Step)>,
    send: &[(usize, &Item)],
    done: &[crate::provision::proto::Removed],
    host: &str,
) -> Vec<Step> {
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
    steps
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

/// What each server said about its VMs' files (host → path → there), or why it could not.
pub(crate) type Presence = HashMap<String, Result<HashMap<String, bool>, String>>;

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

/// Asks every server of `vms` (side by side, one ssh round trip each) which files are there.
pub(crate) fn check(app: &App, vms: &[Vm]) -> Presence {
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
            .map(|(h, vms)| (h.clone(), scope.spawn(move || check_host(app, vms))))
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

fn check_host(app: &App, vms: &[&Vm]) -> Result<HashMap<String, bool>, String> {
    let first = vms.first().ok_or("no VM")?;
    let target = target(app, first).map_err(|e| e.to_string())?;
    let items: Vec<Item> = vms.iter().flat_map(|v| looked_at(v)).collect();
    let asked = find::ask(
        &target,
        None,
        &Request::Check {
            items: items.clone(),
        },
    );
    let there = match asked {
        Ok((Event::Present(there), found)) if there.len() == items.len() => {
            for v in vms {
                crate::provision::remote_record::same_server(
                    &v.name,
                    &v.host,
                    v.header(),
                    found.host_key.as_deref(),
                )
                .map_err(|e| e.to_string().lines().next().unwrap_or_default().to_string())?;
            }
            there
        }
        Ok(_) => return Err("an answer that does not fit the question".to_string()),
        Err(e) => {
            let text = e.to_string();
            let short = if text.contains("is unreachable") {
                "unreachable"
            } else if text.contains("refused the authentication") {
                "authentication refused"
            } else if text.contains("host key") {
                "host key not accepted"
            } else if text.contains("was lost") {
                "connection lost"
            } else {
                text.lines().next().unwrap_or("no answer")
            };
            return Err(short.to_string());
        }
    };
    Ok(items.into_iter().map(|i| i.path).zip(there).collect())
}

/// Unfinished remote runs settled with their servers' word first (docs/records.md): each
/// server of an interrupted run is asked once, side by side; a VM the server cleaned up
/// completely is forgotten (and leaves the list), one it finished is provisioned.
pub(crate) fn reconcile(app: &App, vms: Vec<Vm>) -> Vec<Vm> {
    let state_dir = &app.settings.state_dir;
    let pending = |v: &Vm| {
        v.remote
            && v.run.as_ref().is_some_and(|r| !r.failed_kept)
            && v.status(&app.settings.work_dir) == crate::state::Status::Interrupted
    };
    std::thread::scope(|scope| {
        let handles: Vec<_> = vms
            .into_iter()
            .map(|vm| {
                if !pending(&vm) {
                    return Err(Box::new(vm));
                }
                Ok(scope.spawn(move || {
                    let Ok(t) = target(app, &vm) else {
                        return Some(vm);
                    };
                    if let Some(note) = crate::provision::remote_record::reconcile(&t, &vm)
                        && !app.cli.quiet
                    {
                        eprintln!("note: {note}");
                    }
                    match Vm::load_remote(state_dir, &vm.host, &vm.name) {
                        Ok(v) => v,
                        Err(_) => Some(vm),
                    }
                }))
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| match h {
                Err(vm) => Some(*vm),
                Ok(t) => t.join().ok().flatten(),
            })
            .collect()
    })
}

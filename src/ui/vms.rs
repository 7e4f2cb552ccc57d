//! The VMs page: the records of every host (as `vm list`: this machine's and each managed
//! server's, the servers asked side by side with a time limit), with their state from
//! `xl list` there; Start (`xl create` here or on the server) and Remove (as `vm remove`:
//! the dry run shown first with each item's host, running VMs refused, the VM's lock held).
//! The work is `crate::vms`, which the CLI calls too.

use super::html::{self, csrf_field, esc, seg};
use super::{Shared, Ui, blocking};
use crate::state::{self, Kind, Status, Vm, xen};
use crate::vms::{self as ops, Presence};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

pub(crate) async fn list(State(ui): State<Shared>) -> Response {
    blocking(move || list_page(&ui, &[], &[])).await
}

/// The disks column: how many are there, here or as the server said.
fn disks_text(vm: &Vm, checks: &Presence) -> String {
    let disks: Vec<_> = vm
        .items()
        .into_iter()
        .filter(|i| matches!(i.kind, Kind::Disk | Kind::Lvm))
        .collect();
    if !vm.remote {
        return format!(
            "{}/{} present",
            disks.iter().filter(|i| i.exists()).count(),
            disks.len()
        );
    }
    match checks.get(&vm.host) {
        Some(Ok(c)) => format!(
            "{}/{} present",
            disks
                .iter()
                .filter(|i| c.files.get(&i.path) == Some(&true))
                .count(),
            disks.len()
        ),
        Some(Err(why)) => format!("{} not checked ({why})", disks.len()),
        None => format!("{} not checked", disks.len()),
    }
}

fn list_page(ui: &Ui, notes: &[String], errors: &[String]) -> Response {
    // One unreadable record is named; the others are still listed (issue #18).
    let (vms, bad) = Vm::list(&ui.settings.state_dir);
    let (vms, settled) = ops::reconcile(&ui.settings, vms);
    let mut all_errors = errors.to_vec();
    all_errors.extend(bad.iter().map(|b| {
        format!(
            "the record of VM `{}` on {} cannot be read: {}",
            b.vm, b.host, b.why
        )
    }));
    let errors = &all_errors[..];
    let notes: Vec<String> = notes.iter().cloned().chain(settled).collect();
    let checks = ops::check(&ui.settings, &vms);
    let local = if vms.iter().any(|v| !v.remote) {
        xen::domains()
    } else {
        Ok(Vec::new())
    };
    let mut rows = String::new();
    for vm in &vms {
        let status = vm.status(&ui.settings.work_dir);
        let dom = ops::domain(vm, &local, &checks);
        let state = ops::state_word(dom);
        let base = format!("/vms/{}/{}", seg(&vm.host), seg(&vm.name));
        let mut acts = String::new();
        let up = matches!(dom, Ok(Some(_)));
        if status == Status::Provisioned && vm.header().is_some() && !up {
            acts.push_str(&format!(
                "<form method=\"post\" action=\"{base}/start\" class=\"inline\">{}<button type=\"submit\" aria-label=\"Start {} on {}\">Start</button></form> ",
                csrf_field(ui),
                esc(&vm.name),
                esc(&vm.host)
            ));
        }
        acts.push_str(&format!(
            "<a class=\"button\" href=\"{base}/remove\" aria-label=\"Remove {} on {}\">Remove…</a>",
            esc(&vm.name),
            esc(&vm.host)
        ));
        rows.push_str(&format!(
            "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{acts}</td></tr>",
            esc(&vm.name),
            esc(&vm.host),
            esc(&status.to_string()),
            esc(state),
            esc(&vm.header().map(|h| h.image.clone()).unwrap_or_else(|| "-".into())),
            esc(&disks_text(vm, &checks)),
        ));
    }
    if vms.is_empty() {
        rows = "<tr><td colspan=\"7\">No VMs recorded.</td></tr>".into();
    }
    let mut unknown = Vec::new();
    if let Err(why) = &local {
        unknown.push(format!("this machine: {why}"));
    }
    for (host, c) in &checks {
        match c {
            Err(why) => unknown.push(format!("{host}: no answer ({why})")),
            Ok(c) => {
                if let Err(why) = &c.domains {
                    unknown.push(format!("{host}: {why}"));
                }
            }
        }
    }
    unknown.sort();
    let main = format!(
        "<h1>VMs</h1>{}{}{}<p class=\"path\">Records in {}</p><div class=\"scroll\"><table><thead><tr><th scope=\"col\">Name</th><th scope=\"col\">Host</th><th scope=\"col\">Record</th><th scope=\"col\">State (xl list)</th><th scope=\"col\">Image</th><th scope=\"col\">Disks</th><th scope=\"col\">Actions</th></tr></thead><tbody>{rows}</tbody></table></div>",
        html::messages("notes", "Done", &notes),
        html::messages("errors", "Failed", errors),
        if unknown.is_empty() {
            String::new()
        } else {
            format!(
                "<p class=\"note\">State <code>unknown</code>: <code>xl list</code> could not say; <code>-</code>: the server did not answer.</p><ul class=\"note\">{}</ul>",
                unknown
                    .iter()
                    .map(|u| format!("<li>{}</li>", esc(u)))
                    .collect::<String>()
            )
        },
        esc(&ui.settings.state_dir.display().to_string())
    );
    html::page(ui, "VMs", None, &main)
}

/// The record of `name` on `host` (`localhost`: this machine, else a managed server).
fn load(ui: &Ui, host: &str, name: &str) -> Result<Vm, String> {
    crate::store::check_vm_name(name)?;
    let dir = &ui.settings.state_dir;
    let found = if host == state::LOCALHOST {
        Vm::load(dir, host, name).and_then(|v| match v {
            Some(v) => Ok(Some(v)),
            None => Vm::load_remote(dir, host, name),
        })
    } else {
        Vm::load_remote(dir, host, name)
    };
    match found {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Err(format!("no record of a VM `{name}` on `{host}`")),
        Err(e) => Err(format!("{e:#}")),
    }
}

/// Why the VM must not be removed now (as `vm remove` refuses); a remote VM's server says
/// whether it runs in the removal's own round trip.
fn blocker(ui: &Ui, vm: &Vm) -> Option<String> {
    let running = if vm.remote {
        Ok(vec![])
    } else {
        xen::running_domains()
    };
    ops::blocker(&ui.settings, vm, &running)
}

/// The VMs page after an action on one VM: its note, or its errors with `status`.
fn after(ui: &Ui, r: Result<String, Vec<String>>, status: StatusCode) -> Response {
    match r {
        Ok(n) => list_page(ui, &[n], &[]),
        Err(e) => {
            let mut res = list_page(ui, &[], &e);
            *res.status_mut() = status;
            res
        }
    }
}

pub(crate) async fn start(
    State(ui): State<Shared>,
    Path((host, name)): Path<(String, String)>,
) -> Response {
    blocking(move || {
        let r = load(&ui, &host, &name)
            .map_err(|e| vec![e])
            .and_then(|vm| ops::start(&ui.settings, &vm).map_err(|e| super::messages(&e)));
        after(&ui, r, StatusCode::UNPROCESSABLE_ENTITY)
    })
    .await
}

fn steps_table(vm: &Vm, steps: &[state::remove::Step]) -> String {
    let rows: String = steps
        .iter()
        .map(|s| {
            // The copy of a server's log this machine kept is this machine's.
            let on = if vm.remote
                && vm.header().and_then(|h| h.local_log.as_ref()) != Some(&s.item.path)
            {
                vm.host.as_str()
            } else {
                "this machine"
            };
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
                esc(s.action),
                esc(&s.item.kind.to_string()),
                esc(on),
                esc(&s.item.path),
                esc(&s.why)
            )
        })
        .collect();
    format!(
        "<div class=\"scroll\"><table class=\"steps\"><thead><tr><th scope=\"col\">Action</th><th scope=\"col\">Kind</th><th scope=\"col\">Host</th><th scope=\"col\">Path</th><th scope=\"col\">Why</th></tr></thead><tbody>{rows}</tbody></table></div>"
    )
}

pub(crate) async fn remove_form(
    State(ui): State<Shared>,
    Path((host, name)): Path<(String, String)>,
) -> Response {
    blocking(move || {
        let vm = match load(&ui, &host, &name) {
            Ok(v) => v,
            Err(e) => return after(&ui, Err(vec![e]), StatusCode::NOT_FOUND),
        };
        // The dry run: here, or asked of the server (which refuses a running domain).
        let (steps, refuse, note) = match blocker(&ui, &vm) {
            Some(why) => (vec![], Some(vec![format!("cannot remove {why}")]), None),
            None => match ops::steps(&ui.settings, &vm, false, true) {
                Ok((s, n)) => (s, None, n),
                Err(e) => (vec![], Some(super::messages(&e)), None),
            },
        };
        let action = match &refuse {
            Some(why) => html::messages("errors", "Cannot remove", why),
            None => format!(
                "<form method=\"post\" action=\"/vms/{}/{}/remove\">{}<button type=\"submit\" class=\"danger\">Remove {} and these files</button> <a href=\"/vms\">Cancel</a></form>",
                seg(&host),
                seg(&name),
                csrf_field(&ui),
                esc(&name)
            ),
        };
        let table = if refuse.is_some() {
            String::new()
        } else {
            steps_table(&vm, &steps)
        };
        let main = format!(
            "<h1>Remove {} on {}</h1>{}<p>Exactly this would be done (nothing else is touched), then the record <code>{}</code> on this machine is forgotten:</p>{table}{action}",
            esc(&name),
            esc(&vm.host),
            html::messages("notes", "Note", note.as_slice()),
            esc(&vm.dir.display().to_string()),
        );
        let mut res = html::page(&ui, &format!("Remove {name}"), None, &main);
        if refuse.is_some() {
            *res.status_mut() = StatusCode::CONFLICT;
        }
        res
    })
    .await
}

pub(crate) async fn remove(
    State(ui): State<Shared>,
    Path((host, name)): Path<(String, String)>,
) -> Response {
    blocking(move || {
        let vm = match load(&ui, &host, &name) {
            Ok(v) => v,
            Err(e) => return after(&ui, Err(vec![e]), StatusCode::NOT_FOUND),
        };
        if let Some(why) = blocker(&ui, &vm) {
            return after(
                &ui,
                Err(vec![format!("cannot remove {why}")]),
                StatusCode::CONFLICT,
            );
        }
        let done = match ops::remove_locked(&ui.settings, &vm, false) {
            Ok(Some(d)) => d,
            Ok(None) => return Redirect::to("/vms").into_response(),
            Err(e) => return after(&ui, Err(super::messages(&e)), StatusCode::CONFLICT),
        };
        let failed = done.failed();
        if failed.is_empty() {
            return Redirect::to("/vms").into_response();
        }
        let why: Vec<String> = failed
            .iter()
            .map(|s| format!("`{}`: {}", s.item.path, s.why))
            .collect();
        after(
            &ui,
            Err(vec![format!(
                "`{}` was not removed completely: {}; its record stays",
                done.vm.name,
                why.join("; ")
            )]),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
    })
    .await
}

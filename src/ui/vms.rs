//! The VMs page (as `vm list`, with `xl list` state), Start (`xl create`) and Remove (as
//! `vm remove`: the dry run shown first, running VMs refused, the VM's lock held).

use super::html::{self, csrf_field, esc, seg};
use super::{Shared, Ui, blocking};
use crate::state::{self, Kind, Status, Vm, xen};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

fn config(vm: &Vm) -> Option<String> {
    vm.header().map(|h| h.config.clone())
}

pub(crate) async fn list(State(ui): State<Shared>) -> Response {
    blocking(move || list_page(&ui, &[], &[])).await
}

fn list_page(ui: &Ui, notes: &[String], errors: &[String]) -> Response {
    // One unreadable record is named; the others are still listed (issue #18).
    let (vms, bad) = Vm::list(&ui.settings.state_dir);
    let mut all_errors = errors.to_vec();
    all_errors.extend(bad.iter().map(|b| {
        format!(
            "the record of VM `{}` on {} cannot be read: {}",
            b.vm, b.host, b.why
        )
    }));
    let errors = &all_errors[..];
    let running = xen::running_domains();
    let mut rows = String::new();
    for vm in &vms {
        let status = vm.status(&ui.settings.work_dir);
        let xl = if vm.remote {
            "not asked (a managed server)".to_string()
        } else {
            match &running {
                Ok(d) if d.iter().any(|n| n == &vm.name) => "running".into(),
                Ok(_) => "not running".into(),
                Err(_) => "unknown".into(),
            }
        };
        let disks: Vec<_> = vm
            .items()
            .into_iter()
            .filter(|i| matches!(i.kind, Kind::Disk | Kind::Lvm))
            .collect();
        let disks_text = if vm.remote {
            format!("{} (not checked)", disks.len())
        } else {
            format!(
                "{}/{} present",
                disks.iter().filter(|i| i.exists()).count(),
                disks.len()
            )
        };
        let base = format!("/vms/{}/{}", seg(&vm.host), seg(&vm.name));
        let mut acts = String::new();
        if !vm.remote {
            let up = matches!(&running, Ok(d) if d.iter().any(|n| n == &vm.name));
            if status == Status::Provisioned && config(vm).is_some() && !up {
                acts.push_str(&format!(
                    "<form method=\"post\" action=\"{base}/start\" class=\"inline\">{}<button type=\"submit\" aria-label=\"Start {}\">Start</button></form> ",
                    csrf_field(ui),
                    esc(&vm.name)
                ));
            }
            acts.push_str(&format!(
                "<a class=\"button\" href=\"{base}/remove\" aria-label=\"Remove {}\">Remove…</a>",
                esc(&vm.name)
            ));
        } else {
            acts.push_str(
                "<span class=\"note\">from the CLI: <code>convirt vm remove --host</code></span>",
            );
        }
        rows.push_str(&format!(
            "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{disks_text}</td><td>{acts}</td></tr>",
            esc(&vm.name),
            esc(&vm.host),
            esc(&status.to_string()),
            esc(&xl),
            esc(&vm.header().map(|h| h.image.clone()).unwrap_or_else(|| "-".into())),
        ));
    }
    if vms.is_empty() {
        rows = "<tr><td colspan=\"7\">No VMs recorded.</td></tr>".into();
    }
    let main = format!(
        "<h1>VMs</h1>{}{}{}<p class=\"path\">Records in {}</p><div class=\"scroll\"><table><thead><tr><th scope=\"col\">Name</th><th scope=\"col\">Host</th><th scope=\"col\">Record</th><th scope=\"col\">xl list</th><th scope=\"col\">Image</th><th scope=\"col\">Disks</th><th scope=\"col\">Actions</th></tr></thead><tbody>{rows}</tbody></table></div>",
        html::messages("notes", "Done", notes),
        html::messages("errors", "Failed", errors),
        match &running {
            Err(why) => format!(
                "<p class=\"note\">The state of this machine's VMs is unknown: {}</p>",
                esc(why)
            ),
            Ok(_) => String::new(),
        },
        esc(&ui.settings.state_dir.join("vms").display().to_string())
    );
    html::page(ui, "VMs", None, &main)
}

fn load(ui: &Ui, host: &str, name: &str) -> Result<Vm, String> {
    crate::store::check_vm_name(name)?;
    if host != state::LOCALHOST {
        return Err(format!(
            "`{name}` was provisioned on `{host}`: remove it with `convirt vm remove {name} --host {host}`"
        ));
    }
    match Vm::load(&ui.settings.state_dir, host, name) {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Err(format!("no record of a VM `{name}`")),
        Err(e) => Err(format!("{e:#}")),
    }
}

/// Why the VM must not be removed now (as `vm remove` refuses).
fn blocker(ui: &Ui, vm: &Vm) -> Option<String> {
    if let Ok(d) = xen::running_domains()
        && d.iter().any(|n| n == &vm.name)
    {
        return Some(format!(
            "`{}` is running (`xl list`); stop it first (`xl shutdown {}`)",
            vm.name, vm.name
        ));
    }
    if vm.status(&ui.settings.work_dir) == Status::Running {
        return Some(format!("`{}` is being provisioned right now", vm.name));
    }
    for w in vm.items().iter().filter(|i| i.kind == Kind::Workdir) {
        let pids = state::processes_in(std::path::Path::new(&w.path));
        if !pids.is_empty() {
            return Some(format!(
                "a script of the interrupted run of `{}` is still running",
                vm.name
            ));
        }
    }
    None
}

pub(crate) async fn start(
    State(ui): State<Shared>,
    Path((host, name)): Path<(String, String)>,
) -> Response {
    blocking(move || {
        let r = load(&ui, &host, &name).and_then(|vm| {
            if xen::is_running(&vm.name).unwrap_or(false) {
                return Err(format!("`{name}` is already running"));
            }
            let cfg = config(&vm).ok_or_else(|| format!("`{name}` has no config recorded"))?;
            xen::create(std::path::Path::new(&cfg))
                .map(|()| format!("started `{name}`: xl create {cfg}"))
        });
        match r {
            Ok(n) => list_page(&ui, &[n], &[]),
            Err(e) => {
                let mut res = list_page(&ui, &[], &[e]);
                *res.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
                res
            }
        }
    })
    .await
}

fn steps_table(steps: &[state::remove::Step]) -> String {
    let rows: String = steps
        .iter()
        .map(|s| {
            format!(
                "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
                esc(s.action),
                esc(&s.item.kind.to_string()),
                esc(&s.item.path),
                esc(&s.why)
            )
        })
        .collect();
    format!(
        "<div class=\"scroll\"><table class=\"steps\"><thead><tr><th scope=\"col\">Action</th><th scope=\"col\">Kind</th><th scope=\"col\">Path</th><th scope=\"col\">Why</th></tr></thead><tbody>{rows}</tbody></table></div>"
    )
}

pub(crate) async fn remove_form(
    State(ui): State<Shared>,
    Path((host, name)): Path<(String, String)>,
) -> Response {
    blocking(move || {
        let vm = match load(&ui, &host, &name) {
            Ok(v) => v,
            Err(e) => return list_page(&ui, &[], &[e]),
        };
        let bounds = state::remove::local_bounds(&ui.settings, &vm);
        let steps = state::remove::remove(&vm, false, true, &bounds);
        let refuse = blocker(&ui, &vm);
        let action = match &refuse {
            Some(why) => html::messages("errors", "Cannot remove", &[format!("cannot remove {why}")]),
            None => format!(
                "<form method=\"post\" action=\"/vms/{}/{}/remove\">{}<button type=\"submit\" class=\"danger\">Remove {} and these files</button> <a href=\"/vms\">Cancel</a></form>",
                seg(&host),
                seg(&name),
                csrf_field(&ui),
                esc(&name)
            ),
        };
        let main = format!(
            "<h1>Remove {}</h1><p>Exactly this would be done (nothing else is touched), then the record <code>{}</code> is forgotten:</p>{}{action}",
            esc(&name),
            esc(&vm.dir.display().to_string()),
            steps_table(&steps)
        );
        html::page(&ui, &format!("Remove {name}"), None, &main)
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
            Err(e) => return list_page(&ui, &[], &[e]),
        };
        if let Some(why) = blocker(&ui, &vm) {
            let mut r = list_page(&ui, &[], &[format!("cannot remove {why}")]);
            *r.status_mut() = StatusCode::CONFLICT;
            return r;
        }
        // The VM's lock: no provisioning of this name runs while its files go.
        let _lock = match crate::lock::lock(&ui.settings.work_dir, &vm.name, "(vm remove)") {
            Ok(l) => l,
            Err(e) => return list_page(&ui, &[], &super::messages(&e)),
        };
        // Read again under the lock (a `provision --force` may have finished meanwhile).
        let vm = match load(&ui, &host, &name) {
            Ok(v) => v,
            Err(e) => return list_page(&ui, &[], &[e]),
        };
        let bounds = state::remove::local_bounds(&ui.settings, &vm);
        let steps = state::remove::remove(&vm, false, false, &bounds);
        let failed: Vec<String> = steps
            .iter()
            .filter(|s| s.action == "failed")
            .map(|s| format!("`{}`: {}", s.item.path, s.why))
            .collect();
        if failed.is_empty() {
            if let Err(e) = state::remove::forget(&vm) {
                return list_page(
                    &ui,
                    &[],
                    &[format!(
                        "cannot remove the record `{}`: {e}",
                        vm.dir.display()
                    )],
                );
            }
            Redirect::to("/vms").into_response()
        } else {
            list_page(
                &ui,
                &[],
                &[format!(
                    "`{}` was not removed completely: {}; its record stays",
                    vm.name,
                    failed.join("; ")
                )],
            )
        }
    })
    .await
}

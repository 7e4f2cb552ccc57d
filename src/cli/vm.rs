//! `convirt vm list|show|remove`: the VMs convirt made, read from their records and
//! journals (docs/records.md), and their removal, which touches only what a record names.

use super::{App, report};
use crate::diagnostic::Diagnostic;
use crate::state::{self, Item, Kind, Status, Vm, remove::Step, xen};
use anyhow::Result;
use std::io::{BufRead, IsTerminal, Write};

#[derive(clap::Subcommand, Debug)]
pub(crate) enum VmCmd {
    /// The VMs convirt provisioned, and whether their config and disks are still there
    #[command(after_help = "Examples:\n  convirt vm list\n  convirt vm list --json")]
    List,
    /// Everything the record of one VM says
    #[command(after_help = "Example:\n  convirt vm show web1")]
    Show {
        /// The VM name
        name: String,
    },
    /// Remove VMs: their config and the disks and files their provisioning created, nothing else
    #[command(after_help = "Examples:
  convirt vm remove web1 --dry-run     what would go
  convirt vm remove web1 web2 --yes    no question asked (for scripts)
  convirt vm remove db1 --keep-disks   the config and files go, the disks stay")]
    Remove {
        /// The VM names
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
        /// Do not ask for confirmation
        #[arg(long, short = 'y')]
        yes: bool,
        /// Keep the disks (files and LVM volumes); remove the rest
        #[arg(long)]
        keep_disks: bool,
        /// Print what would be removed, and remove nothing
        #[arg(long)]
        dry_run: bool,
    },
}

pub(crate) fn run(app: &App, cmd: &VmCmd) -> Result<()> {
    match cmd {
        VmCmd::List => list(app),
        VmCmd::Show { name } => show(app, name),
        VmCmd::Remove {
            names,
            yes,
            keep_disks,
            dry_run,
        } => remove(app, names, *yes, *keep_disks, *dry_run),
    }
}

fn disks(vm: &Vm) -> Vec<Item> {
    vm.items()
        .into_iter()
        .filter(|i| matches!(i.kind, Kind::Disk | Kind::Lvm))
        .collect()
}

fn config(vm: &Vm) -> Option<String> {
    vm.header().map(|h| h.config.clone())
}

fn item_json(i: &Item) -> serde_json::Value {
    let mut v = serde_json::to_value(i).unwrap_or_default();
    v["present"] = i.exists().into();
    v
}

fn vm_json(app: &App, vm: &Vm, full: bool) -> serde_json::Value {
    let h = vm.header();
    let cfg = config(vm);
    let mut v = serde_json::json!({
        "name": vm.name,
        "host": vm.host,
        "status": vm.status(&app.settings.work_dir),
        "image": h.map(|h| h.image.clone()),
        "image_digest": h.map(|h| h.image_digest.clone()),
        "format": h.map(|h| h.format),
        "config": cfg.as_ref().map(|c| serde_json::json!({"path": c, "present": std::path::Path::new(c).exists()})),
        "disks": disks(vm).iter().map(item_json).collect::<Vec<_>>(),
        "started": h.map(|h| h.started.clone()),
        "finished": vm.record.as_ref().map(|r| r.finished.clone()),
    });
    if full {
        v["created"] = vm.items().iter().map(item_json).collect();
        v["log"] = h.map(|h| h.log.clone()).into();
        v["pid"] = h.map(|h| h.pid).into();
        v["convirt_version"] = h.map(|h| h.convirt_version.clone()).into();
        v["values"] = vm
            .record
            .as_ref()
            .map(|r| r.values.clone())
            .unwrap_or_default();
        v["state_dir"] = vm.dir.display().to_string().into();
    }
    v
}

fn list(app: &App) -> Result<()> {
    let vms = Vm::list(&app.settings.state_dir)?;
    if app.cli.json {
        let rows: Vec<_> = vms.iter().map(|v| vm_json(app, v, false)).collect();
        return app.print_json(&serde_json::Value::Array(rows));
    }
    if vms.is_empty() {
        if !app.cli.quiet {
            eprintln!(
                "no VMs recorded in `{}`",
                app.settings.state_dir.join("vms").display()
            );
        }
        return Ok(());
    }
    let mut rows = vec![[
        "NAME".to_string(),
        "STATUS".into(),
        "HOST".into(),
        "IMAGE".into(),
        "CONFIG".into(),
        "DISKS".into(),
    ]];
    for vm in &vms {
        let d = disks(vm);
        let cfg = match config(vm) {
            Some(c) if std::path::Path::new(&c).exists() => "present",
            Some(_) => "missing",
            None => "-",
        };
        rows.push([
            vm.name.clone(),
            vm.status(&app.settings.work_dir).to_string(),
            vm.host.clone(),
            vm.header()
                .map(|h| h.image.clone())
                .unwrap_or_else(|| "-".into()),
            cfg.into(),
            format!(
                "{}/{} present",
                d.iter().filter(|i| i.exists()).count(),
                d.len()
            ),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = std::io::stdout().lock();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        writeln!(out, "{}", line.join("  ").trim_end())?;
    }
    Ok(())
}

fn load(app: &App, name: &str) -> Result<Vm> {
    crate::store::check_vm_name(name).map_err(|m| anyhow::Error::from(Diagnostic::error(m)))?;
    Vm::load(&app.settings.state_dir, state::LOCALHOST, name)?.ok_or_else(|| {
        Diagnostic::error(format!("no record of a VM `{name}`"))
            .with_hint(format!(
                "`convirt vm list` shows the VMs recorded in `{}`",
                app.settings.state_dir.display()
            ))
            .into()
    })
}

fn show(app: &App, name: &str) -> Result<()> {
    let vm = load(app, name)?;
    if app.cli.json {
        return app.print_json(&vm_json(app, &vm, true));
    }
    let mut s = format!("VM `{}` on {}\n", vm.name, vm.host);
    s.push_str(&format!(
        "  status:   {}\n",
        vm.status(&app.settings.work_dir)
    ));
    if let Some(h) = vm.header() {
        s.push_str(&format!("  image:    {} ({})\n", h.image, h.image_digest));
        s.push_str(&format!(
            "  config:   {} ({}, {})\n",
            h.config,
            serde_json::to_value(h.format)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            if std::path::Path::new(&h.config).exists() {
                "present"
            } else {
                "missing"
            }
        ));
        s.push_str(&format!("  log:      {}\n", h.log));
        s.push_str(&format!("  started:  {} (pid {})\n", h.started, h.pid));
        if let Some(r) = &vm.record {
            s.push_str(&format!("  finished: {}\n", r.finished));
        }
        s.push_str(&format!("  convirt:  {}\n", h.convirt_version));
    }
    s.push_str(&format!("  record:   {}\n", vm.dir.display()));
    s.push_str("\ncreated:\n");
    let items = vm.items();
    if items.is_empty() {
        s.push_str("  (nothing)\n");
    }
    for i in &items {
        s.push_str(&format!(
            "  {:<9} {}{}{}\n",
            i.kind.to_string(),
            i.path,
            i.size.map(|b| format!(" ({b} bytes)")).unwrap_or_default(),
            if i.exists() { "" } else { " [missing]" }
        ));
    }
    if let Some(r) = &vm.record {
        for side in ["image", "vm"] {
            if let Some(m) = r.values.get(side).and_then(|v| v.as_object()) {
                s.push_str(&format!("\n{side} values:\n"));
                for (k, v) in m {
                    s.push_str(&format!("  {k} = {v}\n"));
                }
            }
        }
    }
    print!("{s}");
    Ok(())
}

/// Why a VM must not be removed now, if it must not.
fn blocker(app: &App, vm: &Vm, running: &Result<Vec<String>, String>) -> Option<String> {
    if let Ok(domains) = running
        && domains.iter().any(|d| d == &vm.name)
    {
        return Some(format!(
            "`{}` is running (`xl list`); stop it first (`xl shutdown {}`)",
            vm.name, vm.name
        ));
    }
    if vm.status(&app.settings.work_dir) == Status::Running {
        return Some(format!("`{}` is being provisioned right now", vm.name));
    }
    for w in vm.items().iter().filter(|i| i.kind == Kind::Workdir) {
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

fn describe(step: &Step) -> String {
    let why = if step.why.is_empty() {
        String::new()
    } else {
        format!(" ({})", step.why)
    };
    format!(
        "  {:<8} {:<9} {}{why}",
        step.action,
        step.item.kind.to_string(),
        step.item.path
    )
}

fn confirm(names: &[String]) -> Result<bool> {
    eprint!(
        "remove {} and what their provisioning created? [y/N] ",
        names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

fn remove(app: &App, names: &[String], yes: bool, keep_disks: bool, dry_run: bool) -> Result<()> {
    // Every name must be known before anything is removed.
    let vms: Vec<Vm> = names.iter().map(|n| load(app, n)).collect::<Result<_>>()?;
    let running = xen::running_domains();
    if let Err(why) = &running
        && !app.cli.quiet
    {
        eprintln!("note: could not check whether the VMs are running: {why}");
    }
    let mut errors = Vec::new();
    let mut ready = Vec::new();
    for vm in vms {
        match blocker(app, &vm, &running) {
            Some(why) => errors.push(anyhow::Error::from(Diagnostic::error(format!(
                "cannot remove {why}"
            )))),
            None => ready.push(vm),
        }
    }
    // `--json`: one object per VM, `{vm, dry_run, steps: [{item, action, why}]}`.
    let mut json_rows = Vec::new();
    if dry_run {
        for vm in &ready {
            let steps = state::remove::remove(vm, keep_disks, true);
            if app.cli.json {
                json_rows.push(serde_json::json!({"vm": vm.name, "dry_run": true, "steps": steps}));
                continue;
            }
            println!("would remove VM `{}` (dry run: nothing removed)", vm.name);
            for step in &steps {
                println!("{}", describe(step));
            }
            println!("  forget   record    {}", vm.dir.display());
        }
    } else if !ready.is_empty() {
        let names: Vec<String> = ready.iter().map(|v| v.name.clone()).collect();
        if !yes {
            if !std::io::stdin().is_terminal() {
                return Err(Diagnostic::error(format!(
                    "not removing {} without confirmation",
                    names
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
                .with_hint("pass `--yes` to remove without a question, or `--dry-run` to see what would go")
                .into());
            }
            if !confirm(&names)? {
                eprintln!("nothing removed");
                return Ok(());
            }
        }
        for vm in &ready {
            // The VM's lock: no provisioning of this name may run while its files go.
            let _lock = crate::provision::lock(&app.settings.work_dir, &vm.name, "(vm remove)")?;
            let steps = state::remove::remove(vm, keep_disks, false);
            if app.cli.json {
                json_rows
                    .push(serde_json::json!({"vm": vm.name, "dry_run": false, "steps": steps}));
            } else {
                println!("removed VM `{}`", vm.name);
                for step in &steps {
                    println!("{}", describe(step));
                }
            }
            let failed: Vec<&Step> = steps.iter().filter(|s| s.action == "failed").collect();
            if failed.is_empty() {
                state::remove::forget(vm).map_err(|e| {
                    anyhow::anyhow!("cannot remove the record `{}`: {e}", vm.dir.display())
                })?;
            } else {
                errors.push(anyhow::Error::from(
                    Diagnostic::error(format!(
                        "`{}` was not removed completely: {}",
                        vm.name,
                        failed
                            .iter()
                            .map(|s| format!("`{}`: {}", s.item.path, s.why))
                            .collect::<Vec<_>>()
                            .join("; ")
                    ))
                    .with_hint("its record stays; fix the cause and run `convirt vm remove` again"),
                ));
            }
        }
    }
    if app.cli.json {
        app.print_json(&serde_json::Value::Array(json_rows))?;
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(report::Failures {
            errors,
            interrupted: false,
            summary: None,
        }
        .into())
    }
}

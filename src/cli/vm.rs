//! `convirt vm list|show|remove`: the VMs convirt made, read from their records and
//! journals (docs/records.md), and their removal, which touches only what a record names.

use super::{App, report};
use crate::diagnostic::Diagnostic;
use crate::state::{self, Item, Kind, Vm, remove::Step, xen};
use crate::vms::Presence;
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
        /// The host it was provisioned on (needed when the name is recorded on several)
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
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
        /// The host the VMs were provisioned on (`--host` of `provision`); removes there over ssh
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
    },
}

pub(crate) fn run(app: &App, cmd: &VmCmd) -> Result<()> {
    match cmd {
        VmCmd::List => list(app),
        VmCmd::Show { name, host } => show(app, name, host.as_deref()),
        VmCmd::Remove {
            names,
            yes,
            keep_disks,
            dry_run,
            host,
        } => remove(app, names, host.as_deref(), *yes, *keep_disks, *dry_run),
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

/// Whether a VM's file is there: looked at here for this machine; for a managed server what
/// the server said (`vms::check`), `None` when it could not be asked (never claimed
/// missing then).
fn present(vm: &Vm, path: &str, kind: Kind, checks: &Presence) -> Option<bool> {
    if !vm.remote {
        return Some(if kind == Kind::Config {
            std::path::Path::new(path).exists()
        } else {
            Item::new(path, kind).exists()
        });
    }
    match checks.get(&vm.host) {
        Some(Ok(c)) => c.files.get(path).copied(),
        _ => None,
    }
}

/// Why a remote VM's files were not checked, if they were not.
fn not_checked(vm: &Vm, checks: &Presence) -> Option<String> {
    if !vm.remote {
        return None;
    }
    match checks.get(&vm.host) {
        Some(Ok(_)) => None,
        Some(Err(why)) => Some(format!("{}: {why}", vm.host)),
        None => Some(vm.host.clone()),
    }
}

fn item_json(vm: &Vm, i: &Item, checks: &Presence) -> serde_json::Value {
    let mut v = serde_json::to_value(i).unwrap_or_default();
    v["present"] = present(vm, &i.path, i.kind, checks).into();
    v
}

/// What `xl list` said on this machine: the domains, or why it could not say.
type Domains = Result<Vec<xen::Domain>, String>;

/// The domain of a VM, here or on its server (`vms::domain`).
fn domain<'a>(
    vm: &Vm,
    domains: &'a Domains,
    checks: &'a Presence,
) -> Result<Option<&'a xen::Domain>, crate::vms::Unknown> {
    crate::vms::domain(vm, domains, checks)
}

/// The STATE column: the domain's state word, `off` when Xen does not run it, `unknown`
/// when `xl list` could not answer, `-` when a managed server did not answer.
fn state_text(vm: &Vm, domains: &Domains, checks: &Presence) -> &'static str {
    crate::vms::state_word(domain(vm, domains, checks))
}

fn vm_json(
    app: &App,
    vm: &Vm,
    full: bool,
    checks: &Presence,
    domains: &Domains,
) -> serde_json::Value {
    let h = vm.header();
    let cfg = config(vm);
    let dom = domain(vm, domains, checks);
    let mut v = serde_json::json!({
        "name": vm.name,
        "host": vm.host,
        "status": vm.status(&app.settings.work_dir),
        "state": match dom {
            Err(crate::vms::Unknown::NotAnswered) => None,
            d => Some(crate::vms::state_word(d)),
        },
        "domain": dom.ok().flatten(),
        "image": h.map(|h| h.image.clone()),
        "image_digest": h.map(|h| h.image_digest.clone()),
        "format": h.map(|h| h.format),
        "config": cfg.as_ref().map(|c| serde_json::json!({"path": c, "present": present(vm, c, Kind::Config, checks)})),
        "disks": disks(vm).iter().map(|i| item_json(vm, i, checks)).collect::<Vec<_>>(),
        "started": h.map(|h| h.started.clone()),
        "finished": vm.record.as_ref().map(|r| r.finished.clone()),
    });
    if vm.remote {
        // Why the server's files were not checked (`null` when they were).
        v["not_checked"] = not_checked(vm, checks).into();
    }
    if full {
        v["created"] = vm
            .items()
            .iter()
            .map(|i| item_json(vm, i, checks))
            .collect();
        v["server"] = h.and_then(|h| h.server.clone()).into();
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

/// Names the VMs whose record cannot be read (on stderr); the others are listed as usual.
fn warn_unreadable(app: &App, bad: &[state::Unreadable]) {
    if app.cli.quiet {
        return;
    }
    for b in bad {
        eprintln!(
            "error: the record of VM `{}` on {} cannot be read: {}",
            b.vm, b.host, b.why
        );
    }
}

/// `xl list` on this machine when a VM recorded here needs it; a note on stderr when it
/// cannot answer.
fn local_domains(app: &App, vms: &[Vm]) -> Domains {
    if !vms.iter().any(|v| !v.remote) {
        return Ok(Vec::new());
    }
    let d = xen::domains();
    if let Err(why) = &d
        && !app.cli.quiet
    {
        eprintln!("note: the VMs' state is unknown: {why}");
    }
    d
}

/// A note on stderr for each server that answered but whose `xl list` could not say.
fn note_servers_xl(app: &App, checks: &Presence) {
    let mut hosts: Vec<_> = checks.iter().collect();
    hosts.sort_by(|a, b| a.0.cmp(b.0));
    for (host, c) in hosts {
        if let Ok(crate::vms::Checked {
            domains: Err(why), ..
        }) = c
        {
            note_server(
                app,
                Some(format!(
                    "the state of the VMs on `{host}` is unknown: {why}"
                )),
            );
        }
    }
}

fn list(app: &App) -> Result<()> {
    let (vms, bad) = Vm::list(&app.settings.state_dir);
    warn_unreadable(app, &bad);
    let vms = reconcile(app, vms);
    let result = list_these(app, vms);
    if bad.is_empty() || result.is_err() {
        return result;
    }
    Err(report::Failures {
        errors: vec![anyhow::Error::from(Diagnostic::error(format!(
            "{} of the records could not be read (named above); the others are listed",
            bad.len()
        )))],
        interrupted: false,
        summary: None,
    }
    .into())
}

fn list_these(app: &App, vms: Vec<Vm>) -> Result<()> {
    let checks = crate::vms::check(&app.settings, &vms);
    let domains = local_domains(app, &vms);
    note_servers_xl(app, &checks);
    if app.cli.json {
        let rows: Vec<_> = vms
            .iter()
            .map(|v| vm_json(app, v, false, &checks, &domains))
            .collect();
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
        "STATE".into(),
        "MEM(MiB)".into(),
        "VCPUS".into(),
        "CPU(s)".into(),
        "HOST".into(),
        "IMAGE".into(),
        "CONFIG".into(),
        "DISKS".into(),
    ]];
    for vm in &vms {
        let d = disks(vm);
        let unchecked = not_checked(vm, &checks);
        let cfg = match (&unchecked, config(vm)) {
            (Some(why), _) => format!("not checked ({why})"),
            (None, Some(c)) if present(vm, &c, Kind::Config, &checks) == Some(true) => {
                "present".into()
            }
            (None, Some(_)) => "missing".into(),
            (None, None) => "-".into(),
        };
        let disks_text = match unchecked {
            Some(_) => format!("{} not checked", d.len()),
            None => format!(
                "{}/{} present",
                d.iter()
                    .filter(|i| present(vm, &i.path, i.kind, &checks) == Some(true))
                    .count(),
                d.len()
            ),
        };
        let dom = domain(vm, &domains, &checks).ok().flatten();
        let dash = || "-".to_string();
        rows.push([
            vm.name.clone(),
            vm.status(&app.settings.work_dir).to_string(),
            state_text(vm, &domains, &checks).to_string(),
            dom.map_or_else(dash, |d| d.memory_mib.to_string()),
            dom.map_or_else(dash, |d| d.vcpus.to_string()),
            dom.map_or_else(dash, |d| format!("{:.1}", d.cpu_seconds)),
            vm.host.clone(),
            vm.header()
                .map(|h| h.image.clone())
                .unwrap_or_else(|| "-".into()),
            cfg,
            disks_text,
        ]);
    }
    let widths: Vec<usize> = (0..10)
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

/// The VM of that name: on `host` when given (`localhost` is this machine), else wherever
/// it is recorded, which must be one host only.
fn load(app: &App, name: &str, host: Option<&str>) -> Result<Vm> {
    crate::store::check_vm_name(name).map_err(|m| anyhow::Error::from(Diagnostic::error(m)))?;
    let dir = &app.settings.state_dir;
    let found: Vec<Vm> = match host {
        Some(h) if h == state::LOCALHOST => {
            let local = Vm::load(dir, h, name)?;
            match local {
                Some(v) => vec![v],
                None => Vm::load_remote(dir, h, name)?.into_iter().collect(),
            }
        }
        Some(h) => Vm::load_remote(dir, h, name)?.into_iter().collect(),
        None => {
            let (vms, bad) = Vm::list(dir);
            // Only this VM's own record matters here; others may be broken.
            if let Some(b) = bad.iter().find(|b| b.vm == name) {
                return Err(Diagnostic::error(format!(
                    "the record of VM `{name}` on {} cannot be read: {}",
                    b.host, b.why
                ))
                .into());
            }
            vms.into_iter().filter(|v| v.name == name).collect()
        }
    };
    let found = reconcile(app, found);
    let on = host.map(|h| format!(" on `{h}`")).unwrap_or_default();
    match found.len() {
        0 => Err(Diagnostic::error(format!("no record of a VM `{name}`{on}"))
            .with_hint(format!(
                "`convirt vm list` shows the VMs recorded in `{}`",
                dir.display()
            ))
            .into()),
        1 => Ok(found.into_iter().next().unwrap_or_else(|| unreachable!())),
        _ => Err(Diagnostic::error(format!(
            "VM `{name}` is recorded on several hosts: {}",
            found
                .iter()
                .map(|v| format!("`{}`", v.host))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .with_hint(format!(
            "name one with `--host`, e.g. `--host {}`",
            found[0].host
        ))
        .into()),
    }
}

fn show(app: &App, name: &str, host: Option<&str>) -> Result<()> {
    let vm = load(app, name, host)?;
    let checks = crate::vms::check(&app.settings, std::slice::from_ref(&vm));
    let domains = local_domains(app, std::slice::from_ref(&vm));
    if app.cli.json {
        return app.print_json(&vm_json(app, &vm, true, &checks, &domains));
    }
    let mut s = format!("VM `{}` on {}", vm.name, vm.host);
    if let Some(server) = vm.header().and_then(|h| h.server.as_ref()) {
        s.push_str(&format!(" ({server}, over ssh)"));
    }
    s.push('\n');
    s.push_str(&format!(
        "  status:   {}\n",
        vm.status(&app.settings.work_dir)
    ));
    // A managed server that did not answer: not shown (`vm list` shows `-`).
    let dom = domain(&vm, &domains, &checks);
    if dom != Err(crate::vms::Unknown::NotAnswered) {
        s.push_str(&format!("  state:    {}", crate::vms::state_word(dom)));
        if let Ok(Some(d)) = dom {
            s.push_str(&format!(
                " (domain {}, {} MiB, {} vCPUs, {:.1} s CPU)",
                d.id, d.memory_mib, d.vcpus, d.cpu_seconds
            ));
        }
        s.push('\n');
    }
    if let Some(h) = vm.header() {
        s.push_str(&format!("  image:    {} ({})\n", h.image, h.image_digest));
        s.push_str(&format!(
            "  config:   {} ({}, {})\n",
            h.config,
            serde_json::to_value(h.format)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            match present(&vm, &h.config, Kind::Config, &checks) {
                Some(true) => "present".to_string(),
                Some(false) => "missing".to_string(),
                None => format!(
                    "not checked: {}",
                    not_checked(&vm, &checks).unwrap_or_default()
                ),
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
            match present(&vm, &i.path, i.kind, &checks) {
                Some(false) => " [missing]",
                _ => "",
            }
        ));
    }
    if let Some(why) = not_checked(&vm, &checks)
        && !items.is_empty()
    {
        s.push_str(&format!("  (not checked: {why})\n"));
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

/// The removal steps of one VM: here, or on its server over ssh (`vms::steps`).
fn steps(app: &App, vm: &Vm, keep_disks: bool, dry_run: bool) -> Result<Vec<Step>> {
    let (steps, note) = crate::vms::steps(&app.settings, vm, keep_disks, dry_run)?;
    note_server(app, note);
    Ok(steps)
}

fn note_server(app: &App, note: Option<String>) {
    if let Some(n) = note
        && !app.cli.quiet
    {
        eprintln!("note: {n}");
    }
}

/// Unfinished remote runs settled with their servers first (`vms::reconcile`), its notes on
/// stderr.
fn reconcile(app: &App, vms: Vec<Vm>) -> Vec<Vm> {
    let (vms, notes) = crate::vms::reconcile(&app.settings, vms);
    for n in notes {
        note_server(app, Some(n));
    }
    vms
}

fn on_host(vm: &Vm) -> String {
    if vm.remote {
        format!(" on `{}`", vm.host)
    } else {
        String::new()
    }
}

fn remove(
    app: &App,
    names: &[String],
    host: Option<&str>,
    yes: bool,
    keep_disks: bool,
    dry_run: bool,
) -> Result<()> {
    // Every name must be known before anything is removed.
    let vms: Vec<Vm> = names
        .iter()
        .map(|n| load(app, n, host))
        .collect::<Result<_>>()?;
    let any_local = vms.iter().any(|v| !v.remote);
    let running = if any_local {
        xen::running_domains()
    } else {
        Ok(vec![])
    };
    if let Err(why) = &running
        && !app.cli.quiet
    {
        // Worded as for a managed server's VM (`vm_remote`): the VMs by name.
        let local: Vec<String> = vms
            .iter()
            .filter(|v| !v.remote)
            .map(|v| format!("`{}`", v.name))
            .collect();
        let verb = if local.len() == 1 { "is" } else { "are" };
        eprintln!(
            "note: could not check whether {} {verb} running: {why}",
            local.join(", ")
        );
    }
    let mut errors = Vec::new();
    let mut ready = Vec::new();
    for vm in vms {
        match crate::vms::blocker(&app.settings, &vm, &running) {
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
            match steps(app, vm, keep_disks, true) {
                Ok(steps) => show_dry_run(app, vm, &steps, &mut json_rows),
                Err(e) => errors.push(e),
            }
        }
    } else if !ready.is_empty() {
        let names: Vec<String> = ready.iter().map(|v| v.name.clone()).collect();
        if !yes && !confirmed(&names)? {
            eprintln!("nothing removed");
            return Ok(());
        }
        for vm in &ready {
            if let Err(e) = remove_one(app, vm, keep_disks, &mut json_rows)? {
                errors.push(e);
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

/// What `vm remove --dry-run` would do to one VM.
fn show_dry_run(app: &App, vm: &Vm, steps: &[Step], json_rows: &mut Vec<serde_json::Value>) {
    if app.cli.json {
        json_rows.push(
            serde_json::json!({"vm": vm.name, "host": vm.host, "dry_run": true, "steps": steps}),
        );
        return;
    }
    println!(
        "would remove VM `{}`{} (dry run: nothing removed)",
        vm.name,
        on_host(vm)
    );
    for step in steps {
        println!("{}", describe(step));
    }
    println!("  forget   record    {}", vm.dir.display());
}

/// Without `--yes`: the question on a terminal, else a refusal.
fn confirmed(names: &[String]) -> Result<bool> {
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
    confirm(names)
}

/// Removes one VM under its lock. The outer error stops the command; the inner one is
/// this VM's (the others go on).
fn remove_one(
    app: &App,
    vm: &Vm,
    keep_disks: bool,
    json_rows: &mut Vec<serde_json::Value>,
) -> Result<std::result::Result<(), anyhow::Error>> {
    // Locks the VM, reads its record again under the lock (a `provision --force` that
    // finished meanwhile wrote a new one, issue #18), removes and forgets it.
    let done = match crate::vms::remove_locked(&app.settings, vm, keep_disks) {
        Ok(Some(d)) => d,
        Ok(None) => return Ok(Ok(())),
        Err(e) => return Ok(Err(e)),
    };
    let vm = &done.vm;
    note_server(app, done.note.clone());
    if app.cli.json {
        json_rows.push(
            serde_json::json!({"vm": vm.name, "host": vm.host, "dry_run": false, "steps": done.steps}),
        );
    } else {
        println!("removed VM `{}`{}", vm.name, on_host(vm));
        for step in &done.steps {
            println!("{}", describe(step));
        }
    }
    let failed = done.failed();
    if failed.is_empty() {
        return Ok(Ok(()));
    }
    Ok(Err(anyhow::Error::from(
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
    )))
}

//! `convirt provision`: a thin consumer of `provision::batch`. The plan on `--dry-run`; else
//! the batch's events fed to the one progress display (`progress`) or the `--events`
//! stream, and a summary of every VM's typed result (text or `--json`); the per-VM errors
//! go back to `report`.

use super::out::{self, errln};
use super::progress::{Display, Mode};
use super::{App, args, hosts, report};
use crate::eval::Host;
use crate::provision::batch::{Batch, Outcome, Planned, Prepared, Report, Unit};
use crate::provision::{self, Options};
use crate::resolve::Context;
use crate::settings::Format;
use crate::settings::Settings;
use crate::store::Store;
use anyhow::Result;
use std::fmt::Write as _;
use std::io::IsTerminal;

struct Request {
    vms: Vec<String>,
    /// `--host` values, in order: VMs without `@HOST` are dealt out over them.
    hosts: Vec<String>,
    dry_run: bool,
    jobs: usize,
    /// `--events`: JSON lines of progress on stdout.
    events: bool,
    options: Options,
}

/// What the command line resolved, without clap types.
struct Env<'a> {
    settings: &'a Settings,
    host: &'a Host,
    json: bool,
    quiet: bool,
    verbose: u8,
    store: Store,
    /// `--arch`: also replaces a server's architecture.
    arch: Option<String>,
}

#[derive(clap::Args, Debug)]
pub(crate) struct ProvisionArgs {
    /// The VM name (repeat, or give several, to provision several VMs)
    #[arg(long = "vm", value_name = "NAME", required = true, num_args = 1..)]
    vms: Vec<String>,
    /// The image (default: `default` of the store's image_store.conf)
    #[arg(long)]
    image: Option<String>,
    /// Change an image.conf value (a Python literal, or plain text)
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = args::key_value)]
    set: Vec<(String, String)>,
    /// Change a vm_conf.template value
    #[arg(long = "vm-set", value_name = "KEY=VALUE", value_parser = args::key_value)]
    vm_set: Vec<(String, String)>,
    /// Set an image.conf value to the text of a file (`KEY=-`: standard input), so that a
    /// secret never sits on a command line; one trailing newline is dropped
    #[arg(long = "set-file", value_name = "KEY=PATH", value_parser = args::key_value)]
    set_file: Vec<(String, String)>,
    /// Set a vm_conf.template value to the text of a file (`KEY=-`: standard input)
    #[arg(long = "vm-set-file", value_name = "KEY=PATH", value_parser = args::key_value)]
    vm_set_file: Vec<(String, String)>,
    /// The config format to write (default: the settings' default_format, else xl)
    #[arg(long)]
    format: Option<Format>,
    /// Print the plan and write nothing
    #[arg(long)]
    dry_run: bool,
    /// On failure keep what the run created, and the work directory, for debugging
    #[arg(long)]
    keep: bool,
    /// Replace an existing VM config and the disks the image names
    #[arg(long)]
    force: bool,
    /// Stop the script after this many seconds (overrides provision_timeout)
    #[arg(long, value_name = "SECS")]
    timeout: Option<u64>,
    /// Provision on this managed server: a `[hosts.NAME]` name or `[user@]server[:port]`
    /// (repeat to spread the VMs over several; `--vm NAME@HOST` places one VM)
    #[arg(id = "host", long = "host", value_name = "HOST")]
    hosts: Vec<String>,
    /// Provision this many VMs at a time
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    jobs: u16,
    /// Unresolved variables are errors
    #[arg(long)]
    strict: bool,
    /// Start the VM with `xl create` once it is provisioned
    #[arg(long)]
    start: bool,
    /// Link the VM config into Xen's auto-start directory (`xen_auto_dir`, default /etc/xen/auto)
    #[arg(long)]
    autostart: bool,
    /// Print progress as JSON lines on stdout, one object per event (each VM's steps, output
    /// lines and result), instead of the summary
    #[arg(long, conflicts_with = "dry_run")]
    events: bool,
}

pub(crate) fn run(app: &App, a: &ProvisionArgs) -> Result<()> {
    let (set, vm_set) = args::with_files(&a.set, &a.vm_set, &a.set_file, &a.vm_set_file)?;
    if !app.cli.quiet {
        for (flag, (k, v)) in a
            .set
            .iter()
            .map(|kv| ("--set", kv))
            .chain(a.vm_set.iter().map(|kv| ("--vm-set", kv)))
        {
            if crate::state::is_secret(k, v) {
                eprintln!(
                    "warning: the secret `{k}` on the command line is visible to every local user (`ps`) and stays in your shell history; use `{flag}-file {k}=PATH` (`{k}=-` reads standard input)"
                );
            }
        }
    }
    let req = Request {
        vms: a.vms.clone(),
        hosts: a.hosts.clone(),
        dry_run: a.dry_run,
        jobs: a.jobs as usize,
        events: a.events,
        options: Options {
            image: a.image.clone(),
            overrides: args::overrides(&set, &vm_set),
            format: a.format,
            force: a.force,
            keep: a.keep,
            timeout: a.timeout,
            strict: a.strict,
            start: a.start,
            autostart: a.autostart,
            seed_from: Some(provision::guest::local_cache_dir(&app.settings)),
        },
    };
    // A dry run writes nothing, not even a missing default store.
    let store = if a.dry_run {
        Store::open(&app.settings.image_store)?.0
    } else {
        app.store()?
    };
    let env = Env {
        settings: &app.settings,
        host: &app.host,
        json: app.cli.json,
        quiet: app.cli.quiet,
        verbose: app.cli.verbose,
        store,
        arch: app.cli.arch.clone(),
    };
    provision(&env, req)
}

fn provision(env: &Env, req: Request) -> Result<()> {
    crate::interrupt::install();
    let ctx = Context {
        vm_name: None,
        host: env.host.clone(),
        store_path: env.store.root.clone(),
        settings: env.settings.clone(),
    };
    let batch = Batch {
        store: &env.store,
        context: &ctx,
        options: &req.options,
        arch: env.arch.as_deref(),
        local_log: hosts::local_log_copy,
    };
    let mode = if req.events {
        Mode::Events
    } else if env.quiet || env.json {
        Mode::Silent
    } else if std::io::stderr().is_terminal() {
        Mode::Bars
    } else {
        Mode::Plain {
            verbose: env.verbose > 0,
        }
    };
    let display = Display::new(mode, !env.quiet);
    let sink = |e: &provision::batch::Event<'_>| display.show(e);
    // Plan every VM first: a mistake in the command line stops before anything runs. A
    // server that cannot be reached fails its VMs only.
    let prepared = batch
        .prepare(&hosts::place(&req.vms, &req.hosts), &sink)?
        .all_planned()?;
    if req.dry_run {
        return dry_run(env, prepared);
    }
    let reports = batch.run(prepared.units, req.jobs, &sink);
    summarize(env, req.events, reports, prepared.host_errors)
}

/// Where the script's store copy will be (for the dry-run command line).
fn work_store(env: &Env, unit: &Unit, vm: &str) -> std::path::PathBuf {
    match &unit.server {
        Some(s) => provision::remote::work_store_for_display(&s.context.settings, vm),
        None => provision::work_store_shown(&env.settings.work_dir, vm),
    }
}

/// `--dry-run`: every plan (with its server's facts), as text or JSON.
fn dry_run(env: &Env, prepared: Prepared) -> Result<()> {
    if env.json {
        let v: Vec<serde_json::Value> = prepared.units.iter().map(|u| plan_json(env, u)).collect();
        let out = if v.len() == 1 {
            v.into_iter().next().unwrap_or_default()
        } else {
            serde_json::Value::Array(v)
        };
        out::print(&format!("{}\n", serde_json::to_string_pretty(&out)?))?;
    } else {
        let texts: Vec<String> = prepared
            .units
            .iter()
            .filter_map(|u| match &u.plan {
                Planned::Ready(p) => {
                    let head = u
                        .server
                        .as_ref()
                        .map(|s| provision::remote::describe_host(&s.session, &s.context.settings))
                        .unwrap_or_default();
                    Some(format!("{head}{}", p.describe(&work_store(env, u, &p.vm))))
                }
                _ => None,
            })
            .collect();
        out::print(&texts.join("\n"))?;
    }
    if !prepared.host_errors.is_empty() {
        return Err(report::Failures {
            errors: prepared.host_errors,
            interrupted: false,
            summary: None,
        }
        .into());
    }
    Ok(())
}

fn plan_json(env: &Env, u: &Unit) -> serde_json::Value {
    let Planned::Ready(p) = &u.plan else {
        return serde_json::json!({"vm": u.vm, "host": {"name": u.host}, "error": "host not reached"});
    };
    let mut j = p.to_json(&work_store(env, u, &p.vm));
    if let Some(s) = &u.server {
        let f = &s.session.facts;
        j["host"] = serde_json::json!({
            "name": s.name,
            "address": s.session.target.display_address(),
            "uname": [f.host.sysname, f.host.nodename, f.host.release, f.host.version, f.host.machine],
            "uid": f.uid,
            "bridges": f.bridges,
        });
    }
    j
}

/// ` on `HOST``, or nothing for this machine.
fn on(r: &Report) -> String {
    r.host
        .as_ref()
        .map(|h| format!(" on `{h}`"))
        .unwrap_or_default()
}

/// The summary's line for one VM.
fn outcome_line(r: &Report) -> String {
    let (vm, on) = (&r.vm, on(r));
    match &r.outcome {
        Outcome::Provisioned(p) => format!(
            "  {vm}{on}: provisioned{}",
            if p.after.started { ", started" } else { "" }
        ),
        Outcome::Failed { error, .. } => {
            let first = error.to_string();
            let first = first.lines().next().unwrap_or_default();
            format!(
                "  {vm}{on}: failed: {}",
                first.trim_start_matches("error: ")
            )
        }
        Outcome::NotStarted => format!("  {vm}{on}: not started (interrupted)"),
        Outcome::HostNotReached => format!("  {vm}{on}: failed (host not reached)"),
    }
}

/// A provisioned VM's paragraph on stdout.
fn provisioned_text(r: &Report, p: &provision::Provisioned) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "provisioned `{}` from `{}`{} in {:.1} s",
        p.vm,
        p.image,
        on(r),
        p.seconds
    );
    let _ = writeln!(text, "  config: {}", p.config.display());
    for d in &p.disks {
        let _ = writeln!(text, "  disk:   {d}");
    }
    let _ = writeln!(text, "  log:    {}", p.log.display());
    if let Some(copy) = &r.local_log {
        let _ = writeln!(text, "  local copy of the log: {}", copy.display());
    }
    if let Some(s) = &r.server {
        let _ = writeln!(text, "  on the server: {}", s.session.convirt.describe());
    }
    if let Some(g) = &p.guest_cache {
        let _ = writeln!(text, "  guest cache: {g}");
    }
    for r in &p.replaced {
        let _ = writeln!(text, "  replaced (--force): {r}");
    }
    if let Some(l) = &p.after.autostart {
        let _ = writeln!(text, "  autostart: {}", l.display());
    }
    if p.after.started {
        let _ = writeln!(text, "  started: xl create {}", p.config.display());
    }
    text
}

/// A VM's row of the `--json` document.
fn json_row(r: &Report) -> serde_json::Value {
    let (vm, host) = (&r.vm, &r.host);
    match &r.outcome {
        Outcome::Provisioned(p) => {
            serde_json::json!({"vm": p.vm, "host": host, "ok": true, "result": p})
        }
        Outcome::Failed { error, log, .. } => {
            serde_json::json!({"vm": vm, "host": host, "ok": false, "error": error.to_string(), "log": log})
        }
        Outcome::NotStarted => {
            serde_json::json!({"vm": vm, "host": host, "ok": false, "error": "not started: interrupted"})
        }
        Outcome::HostNotReached => {
            serde_json::json!({"vm": vm, "host": host, "ok": false, "error": "host not reached"})
        }
    }
}

/// The errors of one VM for `report`.
fn errors_of(r: Report, errors: &mut Vec<anyhow::Error>) {
    match r.outcome {
        Outcome::Provisioned(p) => {
            for problem in &p.after.problems {
                errors.push(anyhow::Error::from(
                    crate::diagnostic::Diagnostic::error(format!(
                        "`{}` is provisioned, but {problem}",
                        p.vm
                    ))
                    .with_hint(format!(
                        "the VM stays provisioned; start it later with `xl create {}`",
                        p.config.display()
                    )),
                ));
            }
        }
        Outcome::Failed { error, .. } => errors.push(error),
        Outcome::NotStarted => {
            errors.push(anyhow::anyhow!("`{}` was not started: interrupted", r.vm))
        }
        Outcome::HostNotReached => {}
    }
}

/// Prints the results (once every VM is done: stdout's reader going away then loses only
/// the summary, never a run or its cleanup, nor the exit status of a failure) and hands
/// the errors to `report`.
fn summarize(
    env: &Env,
    events: bool,
    reports: Vec<Report>,
    host_errors: Vec<anyhow::Error>,
) -> Result<()> {
    let printed = if events {
        Ok(())
    } else if env.json {
        let mut rows: Vec<serde_json::Value> = reports.iter().map(json_row).collect();
        let out = if rows.len() == 1 {
            rows.remove(0)
        } else {
            serde_json::Value::Array(rows)
        };
        out::print(&format!("{}\n", serde_json::to_string_pretty(&out)?))
    } else {
        let text: String = reports
            .iter()
            .filter_map(|r| match &r.outcome {
                Outcome::Provisioned(p) => Some(provisioned_text(r, p)),
                _ => None,
            })
            .collect();
        out::print(&text)
    };
    let failed = reports
        .iter()
        .filter(|r| !r.outcome.is_provisioned())
        .count();
    let interrupted = reports.iter().any(|r| {
        matches!(
            r.outcome,
            Outcome::NotStarted
                | Outcome::Failed {
                    interrupted: true,
                    ..
                }
        )
    });
    let summary = (reports.len() > 1 && !env.json && !events).then(|| {
        let lines: Vec<String> = reports.iter().map(outcome_line).collect();
        format!(
            "summary: {} provisioned, {failed} failed\n{}",
            reports.len() - failed,
            lines.join("\n")
        )
    });
    let mut errors = Vec::new();
    for r in reports {
        errors_of(r, &mut errors);
    }
    errors.extend(host_errors);
    if errors.is_empty() {
        if let Some(s) = summary {
            errln!("{s}");
        }
        return printed;
    }
    Err(report::Failures {
        errors,
        interrupted,
        summary,
    }
    .into())
}

//! `convirt provision`: the plan on `--dry-run`, a live status line per VM on a terminal
//! (plain lines otherwise), several VMs `--jobs N` at a time, and a summary of every VM's
//! result; the per-VM errors go back to `report`.

use super::out::{self, err, errln};
use super::{App, args, hosts, report};
use crate::eval::Host;
use crate::provision::{self, Options, Plan, run::Watcher};
use crate::resolve::Context;
use crate::settings::Format;
use crate::settings::Settings;
use crate::store::Store;
use anyhow::Result;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

struct Request {
    vms: Vec<String>,
    /// `--host` values, in order: VMs without `@HOST` are dealt out over them.
    hosts: Vec<String>,
    dry_run: bool,
    jobs: usize,
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

struct Bar(ProgressBar);

impl Watcher for Bar {
    fn line(&mut self, line: &str) {
        let shown: String = line.chars().filter(|c| !c.is_control()).take(100).collect();
        self.0.set_message(shown);
    }
}

struct Plain {
    vm: String,
    echo: bool,
}

impl Watcher for Plain {
    fn line(&mut self, line: &str) {
        if self.echo {
            errln!("{} | {line}", self.vm);
        }
    }
}

fn work_store_for_display(settings: &Settings, vm: &str) -> std::path::PathBuf {
    provision::work_store_shown(&settings.work_dir, vm)
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
    let store = &env.store;
    let ctx = Context {
        vm_name: None,
        host: env.host.clone(),
        store_path: store.root.clone(),
        settings: env.settings.clone(),
    };
    let placed = hosts::place(&req.vms, &req.hosts);
    let mut seen = std::collections::HashSet::new();
    for (vm, host) in &placed {
        if !seen.insert((vm, host)) {
            anyhow::bail!("VM `{vm}` is named twice");
        }
    }
    let hosts::Servers {
        names: host_names,
        sessions,
        contexts: host_ctx,
        errors: host_errors,
    } = hosts::Servers::connect(&placed, &ctx, env.arch.as_deref())?;
    // Plan every VM first: a mistake in the command line stops before anything runs. A
    // server that cannot be reached fails its VMs only.
    let mut plans: Vec<Plan> = Vec::new();
    let mut wheres: Vec<Option<usize>> = Vec::new();
    let mut unreachable: Vec<(String, String)> = Vec::new();
    for (vm, host) in &placed {
        let hi = host
            .as_ref()
            .and_then(|h| host_names.iter().position(|n| n == h));
        match hi {
            None => plans.push(provision::plan(vm, store, &ctx, &req.options)?),
            Some(i) => match &host_ctx[i] {
                Some(c) => plans.push(provision::plan(vm, store, c, &req.options)?),
                None => {
                    unreachable.push((vm.clone(), host_names[i].clone()));
                    continue;
                }
            },
        }
        wheres.push(hi);
    }
    let session_of = |i: usize| wheres[i].and_then(|h| sessions[h].as_ref());
    let host_of = |i: usize| wheres[i].map(|h| host_names[h].clone());
    if !env.quiet {
        for p in &plans {
            for w in p.resolved.warnings.warnings() {
                err!("{}", w.render());
            }
        }
    }
    let work_store = |i: usize| match (wheres[i], session_of(i)) {
        (Some(h), Some(_)) => host_ctx[h]
            .as_ref()
            .map(|c| provision::remote::work_store_for_display(&c.settings, &plans[i].vm))
            .unwrap_or_default(),
        _ => work_store_for_display(env.settings, &plans[i].vm),
    };
    if req.dry_run {
        if env.json {
            let mut v: Vec<_> = (0..plans.len())
                .map(|i| {
                    let mut j = plans[i].to_json(&work_store(i));
                    if let (Some(h), Some(s)) = (wheres[i], session_of(i)) {
                        j["host"] = serde_json::json!({
                            "name": host_names[h],
                            "address": s.target.display_address(),
                            "uname": [s.facts.host.sysname, s.facts.host.nodename, s.facts.host.release, s.facts.host.version, s.facts.host.machine],
                            "uid": s.facts.uid,
                            "bridges": s.facts.bridges,
                        });
                    }
                    j
                })
                .collect();
            for (vm, h) in &unreachable {
                v.push(
                    serde_json::json!({"vm": vm, "host": {"name": h}, "error": "host not reached"}),
                );
            }
            let out = if v.len() == 1 {
                v.into_iter().next().unwrap_or_default()
            } else {
                serde_json::Value::Array(v)
            };
            out::print(&format!("{}\n", serde_json::to_string_pretty(&out)?))?;
        } else {
            let texts: Vec<String> = (0..plans.len())
                .map(|i| {
                    let head = match (wheres[i], session_of(i)) {
                        (Some(h), Some(s)) => host_ctx[h]
                            .as_ref()
                            .map(|c| provision::remote::describe_host(s, &c.settings))
                            .unwrap_or_default(),
                        _ => String::new(),
                    };
                    format!("{head}{}", plans[i].describe(&work_store(i)))
                })
                .collect();
            out::print(&texts.join("\n"))?;
        }
        if !host_errors.is_empty() {
            return Err(report::Failures {
                errors: host_errors,
                interrupted: false,
                summary: None,
            }
            .into());
        }
        return Ok(());
    }

    let tty = std::io::stderr().is_terminal() && !env.quiet && !env.json;
    let multi = MultiProgress::new();
    let results: Mutex<Vec<Option<Result<provision::Provisioned>>>> =
        Mutex::new((0..plans.len()).map(|_| None).collect());
    let next = Mutex::new(0usize);
    let jobs = req.jobs.clamp(1, plans.len().max(1));
    let execute = |i: usize, w: &mut dyn Watcher| -> Result<provision::Provisioned> {
        let plan = &plans[i];
        match (wheres[i], session_of(i)) {
            (Some(h), Some(s)) => {
                let settings = host_ctx[h]
                    .as_ref()
                    .map(|c| &c.settings)
                    .unwrap_or(env.settings);
                provision::remote::execute(
                    plan,
                    &store.root,
                    settings,
                    s,
                    &req.options,
                    (
                        &hosts::local_log_copy(env.settings, &host_names[h], plan),
                        &env.settings.state_dir,
                    ),
                    w,
                )
            }
            _ => provision::execute(
                &provision::Job::of(plan, &req.options, &env.settings.work_dir, &store.root),
                provision::Tree::Store,
                w,
            ),
        }
    };
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                loop {
                    let i = {
                        let Ok(mut n) = next.lock() else { return };
                        if *n >= plans.len() || crate::interrupt::interrupted() {
                            return;
                        }
                        *n += 1;
                        *n - 1
                    };
                    let plan = &plans[i];
                    let result = if tty {
                        let pb = multi.add(ProgressBar::new_spinner());
                        pb.set_style(
                            ProgressStyle::with_template(
                                "{spinner} {prefix} [{elapsed}] {wide_msg}",
                            )
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                        );
                        pb.set_prefix(match host_of(i) {
                            Some(h) => format!("{}@{h}", plan.vm),
                            None => plan.vm.clone(),
                        });
                        pb.enable_steady_tick(Duration::from_millis(120));
                        let mut w = Bar(pb.clone());
                        let r = execute(i, &mut w);
                        pb.finish_and_clear();
                        r
                    } else {
                        if !env.quiet && !env.json {
                            match host_of(i) {
                                Some(h) => errln!(
                                    "provisioning `{}` from image `{}` on `{h}` (log there: {}; local copy: {})",
                                    plan.vm,
                                    plan.image,
                                    plan.log_path.display(),
                                    hosts::local_log_copy(env.settings, &h, plan).display()
                                ),
                                None => errln!(
                                    "provisioning `{}` from image `{}` (log: {})",
                                    plan.vm,
                                    plan.image,
                                    plan.log_path.display()
                                ),
                            }
                        }
                        let mut w = Plain {
                            vm: plan.vm.clone(),
                            echo: env.verbose > 0,
                        };
                        execute(i, &mut w)
                    };
                    if let Ok(mut r) = results.lock() {
                        r[i] = Some(result);
                    }
                }
            });
        }
    });
    let results = results.into_inner().unwrap_or_default();
    let mut errors = Vec::new();
    let mut interrupted = false;
    let mut json_rows = Vec::new();
    // The summary is printed once every VM is done; stdout's reader going away then loses
    // only the summary, never a run or its cleanup, nor the exit status of a failure.
    let mut text = String::new();
    // One line per VM (and its host) for the summary of a several-VM run.
    let mut outcomes: Vec<String> = Vec::new();
    for (i, (plan, r)) in plans.iter().zip(results).enumerate() {
        let host = host_of(i);
        let on = host
            .as_ref()
            .map(|h| format!(" on `{h}`"))
            .unwrap_or_default();
        match r {
            Some(Ok(p)) => {
                outcomes.push(format!(
                    "  {}{on}: provisioned{}",
                    p.vm,
                    if p.after.started { ", started" } else { "" }
                ));
                if env.json {
                    json_rows.push(
                        serde_json::json!({"vm": p.vm, "host": host, "ok": true, "result": p}),
                    );
                } else {
                    let _ = writeln!(
                        text,
                        "provisioned `{}` from `{}`{on} in {:.1} s",
                        p.vm, p.image, p.seconds
                    );
                    let _ = writeln!(text, "  config: {}", p.config.display());
                    for d in &p.disks {
                        let _ = writeln!(text, "  disk:   {d}");
                    }
                    let _ = writeln!(text, "  log:    {}", p.log.display());
                    if let Some(h) = &host {
                        let _ = writeln!(
                            text,
                            "  local copy of the log: {}",
                            hosts::local_log_copy(env.settings, h, plan).display()
                        );
                    }
                    if let Some(s) = session_of(i) {
                        let _ = writeln!(text, "  on the server: {}", s.convirt.describe());
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
                }
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
            Some(Err(e)) => {
                let f = e.downcast_ref::<provision::Failure>();
                let first = e.to_string();
                outcomes.push(format!(
                    "  {}{on}: failed: {}",
                    plan.vm,
                    first
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .trim_start_matches("error: ")
                ));
                interrupted |= f.is_some_and(|f| f.interrupted);
                if env.json {
                    json_rows.push(serde_json::json!({"vm": plan.vm, "host": host, "ok": false, "error": e.to_string(), "log": f.and_then(|f| f.log.clone())}));
                }
                errors.push(e);
            }
            None => {
                interrupted = true;
                outcomes.push(format!("  {}{on}: not started (interrupted)", plan.vm));
                if env.json {
                    json_rows.push(serde_json::json!({"vm": plan.vm, "host": host, "ok": false, "error": "not started: interrupted"}));
                }
                errors.push(anyhow::anyhow!(
                    "`{}` was not started: interrupted",
                    plan.vm
                ));
            }
        }
    }
    for (vm, h) in unreachable {
        outcomes.push(format!("  {vm} on `{h}`: failed (host not reached)"));
        if env.json {
            json_rows.push(
                serde_json::json!({"vm": vm, "host": h, "ok": false, "error": "host not reached"}),
            );
        }
    }
    errors.extend(host_errors);
    if env.json {
        let out = if json_rows.len() == 1 {
            json_rows.into_iter().next().unwrap_or_default()
        } else {
            serde_json::Value::Array(json_rows)
        };
        text = format!("{}\n", serde_json::to_string_pretty(&out)?);
    }
    let printed = out::print(&text);
    let failed = outcomes
        .iter()
        .filter(|o| !o.contains(": provisioned"))
        .count();
    let summary = (outcomes.len() > 1 && !env.json).then(|| {
        format!(
            "summary: {} provisioned, {} failed\n{}",
            outcomes.len() - failed,
            failed,
            outcomes.join("\n")
        )
    });
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

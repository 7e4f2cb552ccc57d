//! How `convirt provision` talks to a person or a script: the plan on `--dry-run`, a live
//! status line per VM on a terminal (plain lines otherwise), several VMs `--jobs N` at a
//! time, and a summary of every VM's result.

use crate::eval::Host;
use crate::provision::{self, Options, Plan, run::Watcher};
use crate::resolve::Context;
use crate::settings::Settings;
use crate::store::Store;
use anyhow::Result;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

pub struct Request {
    pub vms: Vec<String>,
    pub dry_run: bool,
    pub jobs: usize,
    pub options: Options,
}

/// What the command line resolved, without clap types.
pub struct Env<'a> {
    pub settings: &'a Settings,
    pub host: &'a Host,
    pub json: bool,
    pub quiet: bool,
    pub verbose: u8,
    pub store: Store,
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
            eprintln!("{} | {line}", self.vm);
        }
    }
}

fn work_store_for_display(settings: &Settings, vm: &str) -> std::path::PathBuf {
    settings
        .work_dir
        .join(format!("{vm}.XXXXXX"))
        .join("image_store")
}

pub fn provision(env: &Env, req: Request) -> Result<()> {
    provision::run::install_interrupt_handler();
    let store = &env.store;
    let ctx = Context {
        vm_name: None,
        host: env.host.clone(),
        store_path: store.root.clone(),
        settings: env.settings.clone(),
    };
    let mut seen = std::collections::HashSet::new();
    for vm in &req.vms {
        if !seen.insert(vm) {
            anyhow::bail!("VM `{vm}` is named twice");
        }
    }
    // Plan every VM first: a mistake in the command line stops before anything runs.
    let mut plans: Vec<Plan> = Vec::new();
    for vm in &req.vms {
        plans.push(provision::plan(vm, store, &ctx, &req.options)?);
    }
    if !env.quiet {
        for p in &plans {
            for w in p.resolved.warnings.warnings() {
                eprint!("{}", w.render());
            }
        }
    }
    if req.dry_run {
        if env.json {
            let v: Vec<_> = plans
                .iter()
                .map(|p| p.to_json(&work_store_for_display(env.settings, &p.vm)))
                .collect();
            let out = if v.len() == 1 {
                v.into_iter().next().unwrap_or_default()
            } else {
                serde_json::Value::Array(v)
            };
            println!("{}", serde_json::to_string_pretty(&out)?);
        } else {
            let texts: Vec<String> = plans
                .iter()
                .map(|p| p.describe(&work_store_for_display(env.settings, &p.vm)))
                .collect();
            print!("{}", texts.join("\n"));
        }
        return Ok(());
    }

    let tty = std::io::stderr().is_terminal() && !env.quiet && !env.json;
    let multi = MultiProgress::new();
    let results: Mutex<Vec<Option<Result<provision::Provisioned>>>> =
        Mutex::new((0..plans.len()).map(|_| None).collect());
    let next = Mutex::new(0usize);
    let jobs = req.jobs.clamp(1, plans.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                loop {
                    let i = {
                        let Ok(mut n) = next.lock() else { return };
                        if *n >= plans.len() || provision::run::interrupted() {
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
                        pb.set_prefix(plan.vm.clone());
                        pb.enable_steady_tick(Duration::from_millis(120));
                        let mut w = Bar(pb.clone());
                        let r =
                            provision::execute(plan, &env.settings.work_dir, &req.options, &mut w);
                        pb.finish_and_clear();
                        r
                    } else {
                        if !env.quiet && !env.json {
                            eprintln!(
                                "provisioning `{}` from image `{}` (log: {})",
                                plan.vm,
                                plan.image,
                                plan.log_path.display()
                            );
                        }
                        let mut w = Plain {
                            vm: plan.vm.clone(),
                            echo: env.verbose > 0,
                        };
                        provision::execute(plan, &env.settings.work_dir, &req.options, &mut w)
                    };
                    if let Ok(mut r) = results.lock() {
                        r[i] = Some(result);
                    }
                }
            });
        }
    });
    let results = results.into_inner().unwrap_or_default();
    let mut failed = 0;
    let mut interrupted = false;
    let mut json_rows = Vec::new();
    for (plan, r) in plans.iter().zip(results) {
        match r {
            Some(Ok(p)) => {
                if env.json {
                    json_rows.push(serde_json::json!({"vm": p.vm, "ok": true, "result": p}));
                } else {
                    println!(
                        "provisioned `{}` from `{}` in {:.1} s",
                        p.vm, p.image, p.seconds
                    );
                    println!("  config: {}", p.config.display());
                    for d in &p.disks {
                        println!("  disk:   {d}");
                    }
                    println!("  log:    {}", p.log.display());
                    for r in &p.replaced {
                        println!("  replaced (--force): {r}");
                    }
                }
            }
            Some(Err(e)) => {
                failed += 1;
                let f = e.downcast_ref::<provision::Failure>();
                interrupted |= f.is_some_and(|f| f.interrupted);
                if env.json {
                    json_rows.push(serde_json::json!({"vm": plan.vm, "ok": false, "error": e.to_string(), "log": f.and_then(|f| f.log.clone())}));
                }
                if let Some(d) = e.downcast_ref::<crate::diagnostic::Diagnostic>() {
                    eprint!("{}", d.render());
                } else if let Some(d) = e.downcast_ref::<crate::diagnostic::Diagnostics>() {
                    eprint!("{}", d.render());
                } else {
                    eprintln!("error: {e}");
                }
            }
            None => {
                failed += 1;
                interrupted = true;
                if env.json {
                    json_rows.push(serde_json::json!({"vm": plan.vm, "ok": false, "error": "not started: interrupted"}));
                } else {
                    eprintln!("error: `{}` was not started: interrupted", plan.vm);
                }
            }
        }
    }
    if env.json {
        let out = if json_rows.len() == 1 {
            json_rows.into_iter().next().unwrap_or_default()
        } else {
            serde_json::Value::Array(json_rows)
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else if plans.len() > 1 {
        eprintln!(
            "summary: {} provisioned, {failed} failed",
            plans.len() - failed
        );
    }
    if interrupted {
        return Err(crate::cli::Interrupted("interrupted".into()).into());
    }
    if failed > 0 {
        return Err(crate::cli::Reported.into());
    }
    Ok(())
}

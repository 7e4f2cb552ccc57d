//! Where provisioning meets the records: the name-collision checks before anything is made,
//! the journal from the first file on, and after a successful install the auto-start link,
//! the record and `xl create`. `provision::execute` calls these at well-marked points; they
//! live here, with their caller, so that `state` (the records) never imports `provision`.

use super::Job;
use crate::diagnostic::Diagnostic;
use crate::settings::Format;
use crate::state::journal::Journal;
use crate::state::{Item, Kind, LOCALHOST, Record, Vm, xen};
use std::path::{Path, PathBuf};

/// What an earlier run left that this one must reckon with (only with `--force`).
#[derive(Debug, Default)]
pub(crate) struct Prior {
    /// An interrupted run's leftovers, removed before this run starts.
    pub interrupted: Option<Vm>,
    /// A finished record, replaced by this run's (its items still there are carried over).
    pub record: Option<Record>,
    /// The same VM's config in the other format.
    pub other_config: Option<PathBuf>,
}

/// The config path of the same VM in the other format.
fn other_format_config(plan: &Job) -> PathBuf {
    let dir = plan.config_path.parent().unwrap_or(Path::new("."));
    match plan.format {
        Format::Xl => dir.join(&plan.vm),
        Format::Xm => dir.join(format!("{}.cfg", plan.vm)),
    }
}

fn refuse(vm: &str, what: String, hint: &str) -> anyhow::Error {
    Diagnostic::error(format!("cannot provision `{vm}`: {what}"))
        .with_hint(hint.to_string())
        .into()
}

/// The name-collision checks of issue #10.5, run under the VM's lock before anything is
/// written: a running domain (never overridden), a script of a killed run still going (never),
/// an interrupted run, a config in either format, a record with files still there, an
/// auto-start link (each refused unless `--force`).
pub(crate) fn preflight(plan: &Job) -> anyhow::Result<Prior> {
    let vm = &plan.vm;
    match xen::is_running(vm) {
        Ok(true) => {
            return Err(refuse(
                vm,
                "a domain of that name is running (`xl list`)".into(),
                "stop it first (`xl shutdown`); `--force` never replaces a running VM's files",
            ));
        }
        Ok(false) => {}
        Err(why) => tracing::debug!("could not check for a running domain `{vm}`: {why}"),
    }
    let mut prior = Prior::default();
    if let Some(state) = Vm::load(&plan.state_dir, LOCALHOST, vm)? {
        if let Some(run) = &state.run {
            refuse_unfinished(plan, run)?;
        }
        check_configs(plan)?;
        if let Some(r) = &state.record {
            let left = r.created.iter().any(Item::exists);
            if left && !plan.force {
                return Err(refuse(
                    vm,
                    format!(
                        "it was provisioned already from image `{}` on {} (record `{}`)",
                        r.header.image,
                        r.finished,
                        state.dir.join(crate::state::RECORD).display()
                    ),
                    &format!(
                        "`convirt vm remove {vm}` first, choose another VM name, or pass `--force` to replace its config and disks"
                    ),
                ));
            }
        }
        prior.record = state.record.clone();
        if state.run.is_some() {
            prior.interrupted = Some(state);
        }
    } else {
        check_configs(plan)?;
    }
    let other = other_format_config(plan);
    if other.exists() {
        prior.other_config = Some(other);
    }
    if plan.autostart {
        let link = xen::autostart_link(&plan.xen_auto_dir, &plan.config_path);
        if std::fs::symlink_metadata(&link).is_ok() && !plan.force {
            return Err(refuse(
                vm,
                format!("the auto-start link `{}` already exists", link.display()),
                "pass `--force` to replace it",
            ));
        }
    }
    Ok(prior)
}

/// An unfinished run of the VM refuses the run: always while one of its scripts still
/// runs, else unless `--force`.
fn refuse_unfinished(plan: &Job, run: &crate::state::Run) -> anyhow::Result<()> {
    let vm = &plan.vm;
    for w in run.items.iter().filter(|i| i.kind == Kind::Workdir) {
        let pids = crate::state::processes_in(Path::new(&w.path));
        if !pids.is_empty() {
            return Err(refuse(
                vm,
                format!(
                    "a script of an interrupted run is still running (pid {}) in `{}`",
                    pids.iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    w.path
                ),
                "wait for it or stop it, then run again",
            ));
        }
    }
    let left: Vec<String> = run
        .items
        .iter()
        .filter(|i| i.exists())
        .map(|i| format!("{} `{}`", i.kind, i.path))
        .collect();
    if !plan.force {
        let (what, since) = match &run.header {
            Some(h) => (
                if run.failed_kept {
                    "failed and was kept (--keep)"
                } else {
                    "was interrupted"
                },
                format!(" (pid {}, started {})", h.pid, h.started),
            ),
            None => ("was interrupted", String::new()),
        };
        let left = if left.is_empty() {
            "it left nothing behind".to_string()
        } else {
            format!("it left: {}", left.join(", "))
        };
        return Err(Diagnostic::error(format!(
            "cannot provision `{vm}`: an earlier provisioning run {what}{since}; {left}"
        ))
        .with_hint(format!(
            "`convirt vm remove {vm}` removes exactly what that run created; `--force` removes it and provisions again"
        ))
        .into());
    }
    Ok(())
}

/// A config of the VM in either format refuses the run, unless `--force`.
fn check_configs(plan: &Job) -> anyhow::Result<()> {
    for path in [&plan.config_path, &other_format_config(plan)] {
        if path.exists() && !plan.force {
            return Err(refuse(
                &plan.vm,
                format!(
                    "a VM config of that name already exists: `{}`",
                    path.display()
                ),
                "choose another VM name, or pass `--force` to replace the config and the disks the image names",
            ));
        }
    }
    Ok(())
}

/// With `--force`, clears what `preflight` found; then opens the journal and notes the files
/// convirt itself is about to write. Returns the journal and what was replaced.
pub(crate) fn begin(
    plan: &Job,
    prior: &Prior,
    work_root: &Path,
) -> anyhow::Result<(Journal, Vec<String>)> {
    let mut replaced = Vec::new();
    if let Some(vm) = &prior.interrupted {
        // Only the unfinished run's leftovers: a finished record's files are the VM's.
        let run_only = Vm {
            record: None,
            ..vm.clone()
        };
        let bounds = bounds(plan, work_root, vm);
        for step in crate::state::remove::remove(&run_only, false, false, &bounds) {
            match step.action {
                "removed" => {
                    replaced.push(format!("{} (left by an interrupted run)", step.item.path))
                }
                "failed" => anyhow::bail!(
                    "cannot remove `{}`, left by an interrupted run of `{}`: {}",
                    step.item.path,
                    plan.vm,
                    step.why
                ),
                _ => {}
            }
        }
    }
    if let Some(other) = &prior.other_config {
        std::fs::remove_file(other).map_err(|e| {
            anyhow::anyhow!("cannot replace the VM config `{}`: {e}", other.display())
        })?;
        replaced.push(other.display().to_string());
    }
    let header = plan.run_header();
    let dir = crate::state::vm_dir(&plan.state_dir, LOCALHOST, &plan.vm);
    let journal_err = |e: std::io::Error| {
        anyhow::anyhow!(
            "cannot write the journal of `{}` in `{}`: {e}",
            plan.vm,
            dir.display()
        )
    };
    let mut j = Journal::begin(&dir, header).map_err(journal_err)?;
    for p in [
        &plan.log_path,
        &plan.image_conf_path,
        &plan.vm_conf_path,
        &plan.args_path,
    ] {
        j.created(Item::new(p.display().to_string(), Kind::Log))
            .map_err(journal_err)?;
    }
    Ok((j, replaced))
}

/// Where a `--force` run may remove an earlier run's leftovers: the directories this plan
/// and the earlier run were configured with (`crate::state::remove::Bounds`).
fn bounds(plan: &Job, work_root: &Path, earlier: &Vm) -> crate::state::remove::Bounds {
    let mut roots: Vec<PathBuf> = vec![
        work_root.to_path_buf(),
        plan.log_dir.parent().unwrap_or(&plan.log_dir).to_path_buf(),
        plan.xen_auto_dir.clone(),
    ];
    roots.extend(plan.config_path.parent().map(Path::to_path_buf));
    roots.extend(plan.bound_dirs.iter().cloned());
    roots.extend(
        plan.disks
            .iter()
            .filter(|d| d.is_file_backed())
            .filter_map(|d| Path::new(&d.path).parent().map(Path::to_path_buf)),
    );
    roots.extend(crate::state::remove::header_roots(earlier));
    crate::state::remove::Bounds::new(roots)
}

/// Notes convirt's work directory as soon as it exists.
pub(crate) fn work_dir(j: &mut Journal, dir: &Path) -> anyhow::Result<()> {
    j.created(Item::new(dir.display().to_string(), Kind::Workdir))
        .map_err(|e| anyhow::anyhow!("cannot write the journal: {e}"))
}

/// Notes the config before it is installed.
pub(crate) fn before_install(j: &mut Journal, plan: &Job) -> std::io::Result<()> {
    for d in crate::state::missing_parents(&plan.config_path) {
        j.created(Item::new(d.display().to_string(), Kind::Dir))?;
    }
    j.created(Item::new(
        plan.config_path.display().to_string(),
        Kind::Config,
    ))
}

/// What happened after the config was installed.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub(crate) struct After {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub autostart: Option<PathBuf>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub started: bool,
    /// What went wrong after the VM was provisioned (it stays provisioned).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// After a successful install: the auto-start link, the record, then `xl create`.
pub(crate) fn finish(plan: &Job, mut j: Journal, prior: &Prior, log: &mut std::fs::File) -> After {
    let note = |log: &mut std::fs::File, m: &str| super::log::note(log, m);
    let mut after = After::default();
    if plan.autostart {
        let link = xen::autostart_link(&plan.xen_auto_dir, &plan.config_path);
        let made = crate::state::missing_parents(&link)
            .iter()
            .try_for_each(|d| j.created(Item::new(d.display().to_string(), Kind::Dir)))
            .and_then(|()| j.created(Item::new(link.display().to_string(), Kind::Autostart)))
            .and_then(|()| xen::link_autostart(&link, &plan.config_path, plan.force));
        match made {
            Ok(()) => {
                note(log, &format!("auto-start link {}", link.display()));
                after.autostart = Some(link);
            }
            Err(e) => after.problems.push(format!(
                "cannot link it into the auto-start directory (`{}`): {e}",
                link.display()
            )),
        }
    }
    let mut created: Vec<Item> = j
        .items()
        .into_iter()
        .filter(|i| plan.keep || i.kind != Kind::Workdir)
        .filter(|i| i.exists())
        .map(Item::stat)
        .collect();
    // `--force` over a recorded VM: what the old record names and this run did not make
    // again stays known, so `vm remove` can still clean it.
    if let Some(old) = &prior.record {
        let mut seen: std::collections::HashSet<String> =
            created.iter().map(|c| c.path.clone()).collect();
        for i in &old.created {
            if i.exists() && seen.insert(i.path.clone()) {
                created.push(i.clone());
            }
        }
    }
    let record = Record {
        format_version: crate::state::FORMAT_VERSION,
        header: j.header().clone(),
        finished: super::log::timestamp(),
        created,
        values: plan.values.clone(),
    };
    if let Err(e) = j.finish(&record) {
        after.problems.push(format!("cannot write its record: {e}"));
    }
    after
}

/// `--start`, once the VM is recorded: `xl create` its config; a failure is a problem of a
/// VM that stays provisioned.
pub(crate) fn start(plan: &Job, log: &mut std::fs::File, after: &mut After) {
    match xen::create(&plan.config_path) {
        Ok(()) => {
            super::log::note(log, "started with xl create");
            after.started = true;
        }
        Err(e) => {
            super::log::note(log, &format!("not started: {e}"));
            after.problems.push(format!("it was not started: {e}"));
        }
    }
}

//! The engine: one run of a `Job` on the machine it runs on, the same code for a local run
//! and for a server's `convirt __serve` (spec §6): the checks under the VM's lock, the
//! journal, the private work directory, `provision.sh` with its timeout in its own process
//! group, the atomic install, `--keep`, and the cleanup of a failed run.

use super::cleanup::remove_created;
use super::run::Step;
use super::{
    Failure, Job, Provisioned, cleanup, copy_tree, err, hooks, log, run, shell_quote_if_needed,
};
use crate::diagnostic::Diagnostic;
use crate::disk_values;
use crate::disks::Disk;
use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Paths the run's scripts recorded as created, in creation order.
fn recorded_paths(list: &Path) -> Vec<String> {
    let bytes = std::fs::read(list).unwrap_or_default();
    bytes
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// What the run created: the scripts' list, plus the planned file disks that are there now.
/// None of those existed when the run began under the VM's lock (or `--force` removed
/// them), so one that exists is this run's even when the script was stopped between
/// creating it and recording it.
fn created_paths(job: &Job, list: &Path) -> Vec<String> {
    let mut created = recorded_paths(list);
    for d in job.disks.iter().filter(|d| d.create && d.is_file_backed()) {
        if !created.contains(&d.path)
            && std::fs::symlink_metadata(&d.path).is_ok_and(|m| m.is_file())
        {
            created.insert(0, d.path.clone());
        }
    }
    created
}

/// Where the run's copy of the image comes from.
pub(crate) enum Tree<'a> {
    /// This machine's store (`Job::store_root`).
    Store,
    /// A tar stream of `image_store/` as `remote::tree` packs it (a server's run).
    Tar(&'a mut dyn std::io::Read),
}

/// The directories the run writes into must be writable (the nearest existing parent of
/// each): checked before anything is made.
fn check_writable(job: &Job) -> anyhow::Result<()> {
    let mut dirs: Vec<(PathBuf, Option<&str>)> = vec![(job.log_dir.clone(), None)];
    if let Some(p) = job.config_path.parent() {
        dirs.push((p.to_path_buf(), None));
    }
    for d in job.disks.iter().filter(|d| d.create && d.is_file_backed()) {
        if let Some(p) = Path::new(&d.path).parent() {
            dirs.push((p.to_path_buf(), Some(d.path.as_str())));
        }
    }
    for (dir, disk) in dirs {
        let mut near = dir.as_path();
        while !near.exists() {
            match near.parent() {
                Some(p) => near = p,
                None => break,
            }
        }
        if !(near.is_dir() && crate::sys::may_write(near)) {
            let what = match disk {
                Some(d) => format!(" (disk `{d}`)"),
                None => String::new(),
            };
            return Err(Diagnostic::error(format!(
                "`{}` is not writable{what}",
                dir.display()
            ))
            .with_hint("fix its permissions or choose another path in the settings; nothing was changed")
            .into());
        }
    }
    Ok(())
}

fn refuse_existing(job: &Job, existing: &[&Disk]) -> anyhow::Result<()> {
    if job.force {
        return Ok(());
    }
    if job.config_path.exists() {
        return Err(Diagnostic::error(format!("cannot provision `{}`: VM config `{}` already exists", job.vm, job.config_path.display()))
            .with_hint("choose another VM name, or pass `--force` to replace the config and the disks the image names")
            .into());
    }
    if let Some(d) = existing.first() {
        return Err(Diagnostic::error(format!(
            "cannot provision `{}`: disk `{}` already exists",
            job.vm, d.path
        ))
        .with_hint(
            "pass `--force` to replace it (its data will be lost), or choose another VM name",
        )
        .into());
    }
    Ok(())
}

/// The log directory and the log, opened for appending (a ConVirt-era script appends to it
/// too; docs/script-contract.md).
fn open_log(job: &Job, swept: &[String]) -> anyhow::Result<File> {
    std::fs::create_dir_all(&job.log_dir).map_err(|e| {
        err(format!(
            "cannot create log directory `{}`: {e}",
            job.log_dir.display()
        ))
    })?;
    for d in [job.log_dir.parent().unwrap_or(&job.log_dir), &job.log_dir] {
        if let Some(why) = crate::sys::unsafe_dir(d) {
            return Err(err(format!("refusing to write the log: {why}")));
        }
    }
    let _ = std::fs::set_permissions(&job.log_dir, std::fs::Permissions::from_mode(0o750));
    let mut logf = log::create_private(&job.log_path).map_err(|e| {
        err(format!(
            "cannot create log `{}`: {e}",
            job.log_path.display()
        ))
    })?;
    log::note(
        &mut logf,
        &format!(
            "provisioning VM {} from image {} (convirt {}{})",
            job.vm,
            job.image,
            env!("CARGO_PKG_VERSION"),
            job.console
                .as_ref()
                .map(|c| format!(", for {c}"))
                .unwrap_or_default()
        ),
    );
    for line in swept {
        log::note(&mut logf, line);
    }
    Ok(logf)
}

/// With `--force`: the existing disks go before the run.
fn replace_disks(
    existing: &[&Disk],
    job: &Job,
    logf: &mut File,
    replaced: &mut Vec<String>,
) -> anyhow::Result<()> {
    if !job.force {
        return Ok(());
    }
    for d in existing {
        match std::fs::remove_file(&d.path) {
            // Already removed with an interrupted run's leftovers (records, above).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            r => r.map_err(|e| err(format!("cannot replace disk `{}`: {e}", d.path)))?,
        }
        log::note(logf, &format!("--force: removed existing disk {}", d.path));
        replaced.push(d.path.clone());
    }
    if job.config_path.exists() {
        replaced.push(job.config_path.display().to_string());
    }
    Ok(())
}

/// The private work directory with the run's copy of the image.
fn fill_work_dir(job: &Job, work: &Path, tree: Tree) -> anyhow::Result<PathBuf> {
    let work_store = work.join("image_store");
    match tree {
        Tree::Tar(r) => {
            std::fs::create_dir_all(&work_store)
                .and_then(|()| tar::Archive::new(r).unpack(&work_store))
                .map_err(|e| err(format!("the work tree did not arrive whole: {e}")))?;
        }
        Tree::Store => {
            let copy = |from: &Path, to: &Path| {
                copy_tree(from, to).map_err(|e| {
                    err(format!(
                        "cannot copy `{}` to the work directory: {e}",
                        from.display()
                    ))
                })
            };
            copy(&job.store_root.join("common"), &work_store.join("common"))?;
            copy(
                &job.store_root.join(&job.image),
                &work_store.join(&job.image),
            )?;
            for (name, dir) in &job.custom_dirs {
                if dir.starts_with(job.store_root.join("custom_scripts")) {
                    copy(dir, &work_store.join("custom_scripts").join(name))?;
                }
            }
        }
    }
    for (path, text) in [
        (&job.image_conf_path, &job.image_conf_text),
        (&job.vm_conf_path, &job.vm_conf_text),
        (&job.args_path, &job.args_text),
    ] {
        log::write_private(path, text)
            .map_err(|e| err(format!("cannot write `{}`: {e}", path.display())))?;
    }
    Ok(work_store)
}

/// `provision.sh` in its own process group, its output into the log and to `watch`.
fn run_script(
    job: &Job,
    work: &Path,
    work_store: &Path,
    created_list: &Path,
    logf: &mut File,
    watch: &mut dyn run::Watcher,
) -> run::Finished {
    let argv = job.command_line(work_store);
    log::note(
        logf,
        &format!(
            "running: {}",
            argv.iter()
                .map(|a| shell_quote_if_needed(a))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    );
    let mut cmd = std::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .current_dir(work)
        .env("CONVIRT_CREATED", created_list)
        .env("CONVIRT_VM_NAME", &job.vm)
        .env("CONVIRT_IMAGE_NAME", &job.image)
        .env("CONVIRT_LOG_FILE", &job.log_path)
        // convirt copies the script's output into the log; the shipped functions then only
        // print, so no line is logged twice.
        .env("CONVIRT_LOG_VIA_STDOUT", "1");
    let finished = run::Run {
        command: cmd,
        log: logf,
        timeout: job.timeout.map(Duration::from_secs),
        watcher: watch,
        tail: 15,
    }
    .run();
    log::note(
        logf,
        &format!("provision.sh {}", finished.outcome.describe()),
    );
    finished
}

/// After the script succeeded: the config installed atomically, then `--keep`, the
/// auto-start link, the record and `xl create`.
fn install(
    job: &Job,
    mut journal: crate::state::journal::Journal,
    prior: &hooks::Prior,
    work: tempfile::TempDir,
    logf: &mut File,
    watch: &mut dyn run::Watcher,
) -> Result<hooks::After, Box<Failure>> {
    let created_list = journal.created_list();
    for note in cleanup::private_disks(&job.disks) {
        log::note(logf, &note);
    }
    let mut put = || -> std::io::Result<()> {
        hooks::before_install(&mut journal, job)?;
        if let Some(parent) = job.config_path.parent() {
            std::fs::create_dir_all(parent)?;
            if let Some(why) = crate::sys::unsafe_dir(parent) {
                return Err(std::io::Error::other(format!(
                    "refusing to install it: {why}"
                )));
            }
        }
        crate::atomic::write(
            &job.config_path,
            job.config_text.as_bytes(),
            job.config_mode,
            job.force,
        )
    };
    if let Err(e) = put() {
        watch.step(Step::Cleanup);
        let created = created_paths(job, &created_list);
        let (removed, not_removed) = if job.keep {
            (vec![], vec![])
        } else {
            remove_created(&created, &[], logf)
        };
        log::note(logf, &format!("cannot install the VM config: {e}"));
        if job.keep {
            let _ = journal.failed_kept();
        } else if !not_removed.is_empty() {
            journal.leave_unfinished();
        }
        return Err(Box::new(Failure {
            vm: job.vm.clone(),
            status: format!(
                "cannot install the VM config `{}`: {e}",
                job.config_path.display()
            ),
            last_lines: vec![],
            log: Some(job.log_path.clone()),
            removed,
            not_removed,
            kept: vec![],
            interrupted: false,
        }));
    }
    log::note(
        logf,
        &format!("installed VM config {}", job.config_path.display()),
    );
    if job.keep {
        let kept = work.keep();
        log::note(logf, &format!("work directory kept at {}", kept.display()));
    }
    Ok(hooks::finish(job, journal, prior, logf))
}

/// A test hook (docs/remote.md, "Test hooks"): with `CONVIRT_TEST_PAUSE=DIR` in the
/// engine's environment and a file `DIR/<step>` present, the engine writes
/// `DIR/<step>.paused` (its pid) and waits at `step` until `DIR/<step>` is removed, so a test
/// can drop a connection or signal a run at that very step, on this machine and on a server
/// alike. Without the variable, or without that file, it does nothing.
pub(crate) fn test_pause(step: &str) {
    let Some(dir) = std::env::var_os("CONVIRT_TEST_PAUSE") else {
        return;
    };
    let dir = PathBuf::from(dir);
    let armed = dir.join(step);
    if !armed.exists() {
        return;
    }
    let paused = dir.join(format!("{step}.paused"));
    let _ = std::fs::write(&paused, std::process::id().to_string());
    while armed.exists() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_file(&paused);
}

/// Whether the run was asked to stop (Ctrl-C, or a server's channel lost): the outcome and
/// why, in words.
fn stop_asked() -> Option<(run::Outcome, &'static str)> {
    if !crate::interrupt::interrupted() {
        return None;
    }
    Some(if crate::interrupt::lost() {
        (run::Outcome::Lost, "the connection to convirt was lost")
    } else {
        (run::Outcome::Interrupted, "it was interrupted (Ctrl-C)")
    })
}

/// Runs a job on this machine. `watch` sees every line of the script's output.
pub(crate) fn execute(
    job: &Job,
    tree: Tree,
    watch: &mut dyn run::Watcher,
) -> anyhow::Result<Provisioned> {
    let started = std::time::Instant::now();
    watch.step(Step::Lock);
    let missing = disk_values::check_sources(&job.sources, true);
    if missing.has_errors() {
        return Err(crate::diagnostic::Diagnostics(missing.errors().cloned().collect()).into());
    }
    let work_root = &job.work_dir;
    let who = match &job.console {
        Some(c) => format!("{}, for {c}", job.image),
        None => job.image.clone(),
    };
    if matches!(tree, Tree::Store) {
        check_trust(job)?;
    }
    let _lock = crate::lock::lock(work_root, &job.vm, &who)?;
    // Records (#10): name collisions refused before anything is made.
    let prior = hooks::preflight(job)?;
    // Holding the lock, no live run owns a work dir of this VM: any left are a dead run's.
    let swept = crate::tree::sweep_work_dirs(work_root, &job.vm);
    // Refuse to replace anything that exists, unless forced (spec §6.1 step 2).
    let existing: Vec<&Disk> = job
        .disks
        .iter()
        .filter(|d| d.create && d.is_file_backed() && Path::new(&d.path).exists())
        .collect();
    refuse_existing(job, &existing)?;
    check_writable(job)?;
    // Records (#10): the journal knows every file from here on, even if convirt is killed.
    let (mut journal, mut replaced) = hooks::begin(job, &prior, work_root)?;
    let mut logf = open_log(job, &swept)?;
    watch.started();
    for r in &replaced {
        log::note(&mut logf, &format!("--force: removed {r}"));
    }
    replace_disks(&existing, job, &mut logf, &mut replaced)?;

    // A private work directory: the script never sees, let alone changes, the store.
    watch.step(Step::WorkDir);
    std::fs::create_dir_all(work_root)
        .map_err(|e| err(format!("cannot create `{}`: {e}", work_root.display())))?;
    let work = tempfile::Builder::new()
        .prefix(&format!("{}.", job.vm))
        .tempdir_in(work_root)
        .map_err(|e| {
            err(format!(
                "cannot create a work directory in `{}`: {e}",
                work_root.display()
            ))
        })?;
    hooks::work_dir(&mut journal, work.path())?;
    let work_store = fill_work_dir(job, work.path(), tree)?;
    let created_list = journal.created_list();
    // The watchdog at every step, not only the script's: a stop asked for (Ctrl-C, or a
    // server's lost channel) before the script starts, or after it succeeded but before the
    // config is installed, ends the run as it would during the script, and what it made goes.
    let mut status = None;
    watch.step(Step::Script);
    test_pause("script");
    let mut finished = if let Some((outcome, why)) = stop_asked() {
        let why = format!("provision.sh was not started: {why}; the run was stopped");
        log::note(&mut logf, &why);
        status = Some(why);
        run::Finished {
            outcome,
            last_lines: vec![],
        }
    } else {
        run_script(
            job,
            work.path(),
            &work_store,
            &created_list,
            &mut logf,
            watch,
        )
    };
    if finished.outcome == run::Outcome::Success {
        test_pause("install");
        if let Some((outcome, why)) = stop_asked() {
            finished.outcome = outcome;
            let why = format!(
                "provision.sh succeeded, but {why} before the VM config was installed; the run was stopped"
            );
            log::note(&mut logf, &why);
            status = Some(why);
        }
    }
    if finished.outcome == run::Outcome::Success {
        watch.step(Step::Install);
        let mut after = install(job, journal, &prior, work, &mut logf, watch)
            .map_err(|f| anyhow::Error::from(*f))?;
        if job.start {
            watch.step(Step::Start);
            test_pause("start");
            hooks::start(job, &mut logf, &mut after);
        }
        test_pause("report");
        return Ok(Provisioned::of(job, replaced, started, after));
    }
    watch.step(Step::Cleanup);
    let created = created_paths(job, &created_list);
    let (removed, not_removed, kept) = if job.keep {
        let w = work.keep();
        let mut kept = created.clone();
        kept.push(w.display().to_string());
        log::note(&mut logf, "--keep: nothing removed");
        let _ = journal.failed_kept();
        (vec![], vec![], kept)
    } else {
        let (removed, not_removed) =
            remove_created(&created, std::slice::from_ref(&job.log_path), &mut logf);
        if !not_removed.is_empty() {
            // The journal names them, so `vm list` shows the run and `vm remove` finishes it.
            journal.leave_unfinished();
        }
        (removed, not_removed, vec![])
    };
    Err(Failure {
        vm: job.vm.clone(),
        status: status.unwrap_or_else(|| format!("provision.sh {}", finished.outcome.describe())),
        last_lines: finished.last_lines,
        log: Some(job.log_path.clone()),
        removed,
        not_removed,
        kept,
        interrupted: finished.outcome == run::Outcome::Interrupted,
    }
    .into())
}

/// Nothing another user could have changed is run (issue #18, docs/security.md): the image's
/// scripts, `common/` and the custom script directories of this machine's store.
pub(crate) fn check_trust(job: &Job) -> anyhow::Result<()> {
    let custom: Vec<PathBuf> = job.custom_dirs.iter().map(|(_, p)| p.clone()).collect();
    let untrusted = crate::trust::check_run(
        &job.store_root,
        &job.store_root.join(&job.image),
        &custom,
        crate::sys::euid(),
    );
    if untrusted.is_empty() {
        return Ok(());
    }
    Err(
        crate::diagnostic::Diagnostics(untrusted.iter().map(|u| u.diagnostic(true)).collect())
            .into(),
    )
}

//! Provisioning on a managed server (spec §7, docs/remote.md): the same plan as a local run,
//! computed with the server's facts and paths; the work tree (image, `common/`, custom
//! scripts, inputs, the server-side driver) travels as one tar stream over the host's shared
//! ssh connection, and the driver runs the §6 steps there. Output streams back live into a
//! local copy of the log; Ctrl-C and a dropped connection stop the remote process group.

use super::{Failure, Options, Plan, Provisioned, log, run};
use crate::diagnostic::Diagnostic;
use crate::remote::{Facts, Session, Target, ssh_error};
use crate::resolve::Context;
use crate::settings::{HostSettings, Settings};
use crate::value::{Value, shell_quote};
use std::collections::VecDeque;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const DRIVER: &str = include_str!("../remote/driver.sh");

fn err(msg: impl Into<String>) -> anyhow::Error {
    Diagnostic::error(msg.into()).into()
}

/// A server-side path from the host's settings: `~/` is the remote home; relative paths
/// are relative to it too (that is where ssh starts).
fn server_path(p: &Path, home: &Path) -> PathBuf {
    if let Ok(rest) = p.strip_prefix("~") {
        home.join(rest)
    } else if p.is_relative() {
        home.join(p)
    } else {
        p.to_path_buf()
    }
}

/// The settings as the server sees them: the root / non-root defaults of the remote user,
/// then `[hosts.NAME]`; site `[variables]` apply except the host-describing ones
/// (`VM_DISKS_DIR`, `VM_CONF_DIR`, `VM_CACHE_DIR`, `DEFAULT_BRIDGE`), the host's own
/// variables over them.
pub(crate) fn host_settings(base: &Settings, t: &Target, facts: &Facts) -> Settings {
    let empty = HostSettings {
        address: t.address.clone(),
        user: None,
        port: None,
        store: None,
        log_dir: None,
        work_dir: None,
        vm_disks_dir: None,
        vm_conf_dir: None,
        xen_auto_dir: None,
        variables: Default::default(),
    };
    let h = t.settings.as_ref().unwrap_or(&empty);
    let root = facts.uid == 0;
    let home = &facts.home;
    let pick =
        |p: &Option<PathBuf>, d: PathBuf| p.as_ref().map(|p| server_path(p, home)).unwrap_or(d);
    let defaults = crate::settings::Defaults::of(root, home);
    let cache_dir = defaults.cache_dir;
    let mut s = base.clone();
    s.is_root = root;
    s.image_store = pick(&h.store, cache_dir.join("image_store"));
    s.log_dir = pick(&h.log_dir, defaults.log_dir);
    s.work_dir = pick(&h.work_dir, cache_dir.join("work"));
    s.vm_disks_dir = pick(&h.vm_disks_dir, cache_dir.join("vm_disks"));
    s.vm_conf_dir = pick(&h.vm_conf_dir, defaults.vm_conf_dir);
    s.xen_auto_dir = pick(&h.xen_auto_dir, s.vm_conf_dir.join("auto"));
    s.cache_dir = cache_dir;
    // Site-wide `[variables]` that name this machine's paths or bridge describe this
    // machine, not the server: the server's defaults, its bridges and `[hosts.NAME]` decide.
    s.variables
        .retain(|(k, _)| !crate::resolve::FALLBACKS.contains(&k.as_str()));
    let mut set = |k: &str, v: Value| match s.variables.iter_mut().find(|(n, _)| n == k) {
        Some(e) => e.1 = v,
        None => s.variables.push((k.to_string(), v)),
    };
    // The host's own paths beat a site-wide `[variables]` entry naming a local path.
    if let Some(p) = &h.vm_disks_dir {
        set(
            "VM_DISKS_DIR",
            Value::Str(server_path(p, home).display().to_string()),
        );
    }
    if let Some(p) = &h.vm_conf_dir {
        set(
            "VM_CONF_DIR",
            Value::Str(server_path(p, home).display().to_string()),
        );
    }
    for (k, v) in &h.variables {
        set(k, crate::settings::toml_to_value(v.clone()));
    }
    if !s.variables.iter().any(|(k, _)| k == "DEFAULT_BRIDGE") {
        if let Some(b) = default_bridge(&facts.bridges) {
            s.variables
                .push(("DEFAULT_BRIDGE".into(), Value::Str(b.to_string())));
        }
    }
    s
}

/// The server's bridge for `$DEFAULT_BRIDGE`: `xenbr0` when it has one, else its first.
pub(crate) fn default_bridge(bridges: &[String]) -> Option<&str> {
    bridges
        .iter()
        .find(|b| *b == "xenbr0")
        .or_else(|| bridges.first())
        .map(String::as_str)
}

/// The resolution context for a server: its uname, its host name, its paths.
pub(crate) fn context(base: &Context, session: &Session) -> Context {
    let settings = host_settings(&base.settings, &session.target, &session.facts);
    Context {
        vm_name: None,
        host: session.facts.host.clone(),
        store_path: settings.image_store.clone(),
        settings,
    }
}

/// Where the script's store copy will be on the server (for the dry-run command line).
pub(crate) fn work_store_for_display(settings: &Settings, vm: &str) -> PathBuf {
    settings
        .work_dir
        .join(format!("{vm}.XXXXXX"))
        .join("image_store")
}

/// The host facts a dry run shows.
pub(crate) fn describe_host(session: &Session, settings: &Settings) -> String {
    let f = &session.facts;
    format!(
        "host `{}` ({}): {} {} {}, node name {}, uid {}\n  bridges: {}{}\n  work dir {}, logs {}, VM configs {}, disks {}\n",
        session.target.name,
        session.target.display_address(),
        f.host.sysname,
        f.host.release,
        f.host.machine,
        f.host.nodename,
        f.uid,
        if f.bridges.is_empty() {
            "(none)".to_string()
        } else {
            f.bridges.join(", ")
        },
        settings
            .variable("DEFAULT_BRIDGE")
            .map(|v| format!(" (DEFAULT_BRIDGE = {})", v.to_text()))
            .unwrap_or_default(),
        settings.work_dir.display(),
        settings.log_dir.display(),
        settings.vm_conf_dir.display(),
        settings.vm_disks_dir.display(),
    )
}

/// Adds a directory of the local store to the stream, as the local work-dir copy does.
fn add_tree<W: Write>(b: &mut tar::Builder<W>, src: &Path, name: &Path) -> std::io::Result<()> {
    b.append_dir(name, src)?;
    let mut entries: Vec<_> = std::fs::read_dir(src)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        // Dot names stay behind, as in the local work-dir copy.
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let (from, to) = (e.path(), name.join(e.file_name()));
        let ft = e.file_type()?;
        if ft.is_dir() {
            add_tree(b, &from, &to)?;
        } else if ft.is_symlink() {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            h.set_mode(0o777);
            b.append_link(&mut h, &to, std::fs::read_link(&from)?)?;
        } else if ft.is_file() {
            b.append_path_with_name(&from, &to)?;
        }
    }
    Ok(())
}

fn add_file(
    b: &mut tar::Builder<impl Write>,
    name: &str,
    mode: u32,
    data: &[u8],
) -> std::io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(mode);
    h.set_mtime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    );
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, name, data)
}

/// The bash-sourceable plan the driver reads; every value shell-quoted.
fn plan_sh(plan: &Plan, settings: &Settings, opts: &Options, server: &str) -> String {
    let q = |p: &Path| shell_quote(&p.display().to_string());
    let mut tools: Vec<&str> = Vec::new();
    for d in plan.disks.iter().filter(|d| d.create) {
        match d.kind.as_str() {
            "LVM" | "lvm" => tools.extend(["lvcreate", "lvremove"]),
            "qcow" | "qcow2" | "vmdk" => tools.push("qemu-img"),
            _ => {}
        }
    }
    tools.dedup();
    let disks: Vec<String> = plan
        .disks
        .iter()
        .filter(|d| d.create && d.is_file_backed())
        .map(|d| shell_quote(&d.path))
        .collect();
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "?".into());
    let holder = format!(
        "pid {} on {}, user {user}, image {}, since {}",
        std::process::id(),
        crate::eval::Host::local(None).nodename,
        plan.image,
        log::timestamp()
    );
    format!(
        "# written by convirt for driver.sh\nVM={}\nIMAGE={}\nLOG={}\nLOG_DIR={}\nIMAGE_CONF={}\nVM_CONF={}\nARGS={}\nCONFIG={}\nWORK_ROOT={}\nFORCE={}\nKEEP={}\nTIMEOUT={}\nHOLDER={}\nSERVER={}\nDISKS=({})\nTOOLS=({})\n{}",
        shell_quote(&plan.vm),
        shell_quote(&plan.image),
        q(&plan.log_path),
        q(&plan.log_dir),
        q(&plan.image_conf_path),
        q(&plan.vm_conf_path),
        q(&plan.args_path),
        q(&plan.config_path),
        q(&settings.work_dir),
        u8::from(opts.force),
        u8::from(opts.keep),
        plan.timeout.map(|t| t.as_secs()).unwrap_or(0),
        shell_quote(&holder),
        shell_quote(server),
        disks.join(" "),
        tools
            .iter()
            .map(|t| shell_quote(t))
            .collect::<Vec<_>>()
            .join(" "),
        super::remote_record::after_sh(plan, settings, opts),
    )
}

/// The work tree as one tar stream: what the local work directory would hold, plus the
/// inputs (secrets travel here, in files of mode 0600/0640, never on a command line). It is
/// spooled to an unnamed private temporary file, so a large image does not sit in memory,
/// and returned rewound with its length.
pub(crate) fn work_tree(
    plan: &Plan,
    local_store: &Path,
    settings: &Settings,
    opts: &Options,
    server: &str,
) -> anyhow::Result<(std::fs::File, u64)> {
    let spool = tempfile::tempfile().map_err(|e| {
        err(format!(
            "cannot create a temporary file for the work tree: {e}"
        ))
    })?;
    let mut b = tar::Builder::new(std::io::BufWriter::new(spool));
    b.mode(tar::HeaderMode::Deterministic);
    b.follow_symlinks(false);
    let build = |b: &mut tar::Builder<std::io::BufWriter<std::fs::File>>| -> std::io::Result<()> {
        add_file(b, "driver.sh", 0o700, DRIVER.as_bytes())?;
        add_file(
            b,
            "plan.sh",
            0o600,
            plan_sh(plan, settings, opts, server).as_bytes(),
        )?;
        add_file(
            b,
            "inputs/image.conf",
            0o600,
            plan.image_conf_text().as_bytes(),
        )?;
        add_file(b, "inputs/vm.conf", 0o600, plan.vm_conf_text().as_bytes())?;
        add_file(b, "inputs/args", 0o600, plan.args_text().as_bytes())?;
        add_file(b, "inputs/config", 0o600, plan.config_text.as_bytes())?;
        let ws = Path::new("image_store");
        add_tree(b, &local_store.join("common"), &ws.join("common"))?;
        add_tree(b, &local_store.join(&plan.image), &ws.join(&plan.image))?;
        for (name, dir) in &plan.custom_dirs {
            if dir.starts_with(local_store.join("custom_scripts")) {
                add_tree(b, dir, &ws.join("custom_scripts").join(name))?;
            }
        }
        Ok(())
    };
    let finish = |mut b: tar::Builder<std::io::BufWriter<std::fs::File>>| -> std::io::Result<(std::fs::File, u64)> {
        build(&mut b)?;
        let mut f = b.into_inner()?.into_inner().map_err(|e| e.into_error())?;
        let len = std::io::Seek::seek(&mut f, std::io::SeekFrom::End(0))?;
        std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(0))?;
        Ok((f, len))
    };
    finish(b).map_err(|e| err(format!("cannot pack the work tree for `{}`: {e}", plan.vm)))
}

/// The remote command line: a private work dir, the stream unpacked into it, the driver
/// started. Only paths and a byte count are on it.
fn bootstrap(work_root: &Path, vm: &str, bytes: u64) -> String {
    let root = shell_quote(&work_root.display().to_string());
    format!(
        "umask 077; mkdir -p -- {root} 2>/dev/null || {{ echo \"CONVIRT:error the server-side work_dir \"{root}\" is not writable\" >&2; exit 1; }}; \
         w=$(mktemp -d -- {root}/{vm}.XXXXXX) || {{ echo \"CONVIRT:error cannot create a work directory in \"{root} >&2; exit 1; }}; \
         trap 'rm -rf -- \"$w\"' EXIT; \
         head -c {bytes} | tar -x --no-same-owner -f - -C \"$w\" || {{ echo 'CONVIRT:error the work tree did not arrive whole' >&2; exit 1; }}; \
         trap - EXIT; exec bash \"$w/driver.sh\" \"$w\""
    )
}

/// What the driver said on stderr.
#[derive(Debug, Default)]
struct Said {
    errors: Vec<String>,
    hints: Vec<String>,
    started: bool,
    outcome: Option<String>,
    removed: Vec<String>,
    not_removed: Vec<String>,
    kept: Vec<String>,
    replaced: Vec<String>,
    installed: Option<String>,
    install_failed: bool,
    done: bool,
    /// `--start` / `--autostart` reports, read by `remote_record::AfterSaid`.
    after: Vec<(String, String)>,
    other: Vec<String>,
}

impl Said {
    fn take(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("CONVIRT:") else {
            self.other.push(line.to_string());
            return;
        };
        let (word, text) = rest.split_once(' ').unwrap_or((rest, ""));
        let text = text.to_string();
        match word {
            "error" => self.errors.push(text),
            "hint" => self.hints.push(text),
            "started" => self.started = true,
            "outcome" => self.outcome = Some(text),
            "removed" => self.removed.push(text),
            "notremoved" => self.not_removed.push(text),
            "kept" => self.kept.push(text),
            "replaced" => self.replaced.push(text),
            "installed" => self.installed = Some(text),
            "installfailed" => self.install_failed = true,
            "done" => self.done = true,
            "autostart" | "autostartfailed" | "xlstarted" | "xlmissing" | "xlfailed" => {
                self.after.push((word.to_string(), text))
            }
            _ => self.other.push(line.to_string()),
        }
    }
}

fn describe_outcome(o: &str) -> String {
    let (w, v) = o.split_once(' ').unwrap_or((o, ""));
    match w {
        "success" => "succeeded".into(),
        "exit" => format!("exited with status {v}"),
        "signal" => format!(
            "was killed by signal {}",
            v.parse()
                .map(run::signal_name)
                .unwrap_or_else(|_| v.to_string())
        ),
        "timeout" => format!("timed out after {v} s and was stopped"),
        "interrupted" => "was interrupted (Ctrl-C) and stopped".into(),
        "lost" => "was stopped because the connection was lost".into(),
        _ => o.to_string(),
    }
}

/// After a dropped connection: reconnect once, wait for the server-side driver to finish,
/// and read what its clean-up did from the server's log.
fn recover(
    target: &Target,
    plan: &Plan,
    settings: &Settings,
) -> Option<(Vec<String>, Vec<String>)> {
    let lock = settings
        .work_dir
        .join("locks")
        .join(format!("{}.lock", plan.vm));
    let script = format!(
        "l={}; log={}; for i in $(seq 150); do [ -e \"$l\" ] || break; sleep 0.2; done; \
         out=(); while IFS= read -r line; do case $line in \
         *'] convirt: provisioning VM '*) out=() ;; \
         *'] convirt: removed '*) out+=(\"removed\t${{line#*convirt: removed }}\") ;; \
         *'] convirt: could not remove '*) out+=(\"not\t${{line#*could not remove }}\") ;; \
         esac; done < \"$log\"; printf '%s\\n' \"${{out[@]}}\"; echo end",
        shell_quote(&lock.display().to_string()),
        shell_quote(&plan.log_path.display().to_string())
    );
    let script = format!("exec bash -c {}", shell_quote(&script));
    let out = crate::remote::command(target, None, &[], &script)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !text.lines().any(|l| l == "end") {
        return None;
    }
    let (mut removed, mut not) = (vec![], vec![]);
    for l in text.lines() {
        match l.split_once('\t') {
            Some(("removed", p)) => removed.push(p.to_string()),
            Some((_, p)) => not.push(p.to_string()),
            None => {}
        }
    }
    Some((removed, not))
}

/// Runs a plan on the server of `session`. `local_log` receives a copy of the log.
pub(crate) fn execute(
    plan: &Plan,
    local_store: &Path,
    settings: &Settings,
    session: &Session,
    opts: &Options,
    local_log: &Path,
    watch: &mut dyn run::Watcher,
) -> anyhow::Result<Provisioned> {
    let started = Instant::now();
    let host = &session.target.name;
    // Records (#10): a record of this VM on this host refuses the run before anything is
    // made; the journal header is written before the script starts.
    let mut record = super::remote_record::begin(plan, &session.target, local_log, opts)?;
    let mut report = crate::state::remote::Collector::default();
    let (mut tree, tree_len) = work_tree(plan, local_store, settings, opts, host)?;
    // The local copy is made once the run starts: a refused run changes nothing locally.
    let mut copy: Option<std::fs::File> = None;
    let open_copy = |copy: &mut Option<std::fs::File>| {
        if copy.is_none() {
            if let Some(parent) = local_log.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            *copy = log::create_private(local_log).ok();
        }
    };
    let mut cmd = session.command(&bootstrap(&settings.work_dir, &plan.vm, tree_len));
    // Its own process group: Ctrl-C on the terminal reaches convirt only, which then asks
    // the server to stop the script and waits for the clean-up report.
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| err(format!("cannot run ssh: {e}")))?;
    let (tx, rx) = mpsc::channel::<(bool, Vec<u8>)>();
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(log::forward_lines(out, tx.clone(), |l| (false, l)));
    }
    if let Some(e) = child.stderr.take() {
        readers.push(log::forward_lines(e, tx.clone(), |l| (true, l)));
    }
    drop(tx);
    // The stream goes in from a thread: the server may answer (an error) before reading it.
    // The pipe then stays open as the driver's lifeline.
    let stdin = child.stdin.take();
    let mut send = Some(std::thread::spawn(move || {
        let mut s = stdin?;
        std::io::copy(&mut tree, &mut s).ok()?;
        s.flush().ok()?;
        Some(s)
    }));
    let mut lifeline = None;
    let mut said = Said::default();
    let mut tail: VecDeque<String> = VecDeque::new();
    let mut asked_stop = false;
    loop {
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok((true, bytes)) if report.feed(&bytes) => {}
            Ok((true, bytes)) => {
                let line = String::from_utf8_lossy(&bytes).trim_end().to_string();
                said.take(&line);
                if said.started {
                    open_copy(&mut copy);
                    record.started(plan);
                }
            }
            Ok((false, bytes)) => {
                open_copy(&mut copy);
                if let Some(c) = copy.as_mut() {
                    let _ = c.write_all(&bytes);
                }
                let line = String::from_utf8_lossy(&bytes)
                    .trim_end_matches(['\n', '\r'])
                    .to_string();
                watch.line(&line);
                tail.push_back(line);
                if tail.len() > 15 {
                    tail.pop_front();
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if send.as_ref().is_some_and(|s| s.is_finished()) {
            lifeline = send.take().and_then(|s| s.join().ok()).flatten();
        }
        if run::interrupted() && !asked_stop && lifeline.is_some() {
            asked_stop = true;
            if let Some(l) = lifeline.as_mut() {
                let _ = l.write_all(b"stop\n").and_then(|_| l.flush());
            }
        }
    }
    drop(lifeline);
    let status = child.wait().ok();
    for r in readers {
        let _ = r.join();
    }
    if let Some(c) = copy.as_mut() {
        let _ = c.flush();
    }
    let log_shown = PathBuf::from(format!("{host}:{}", plan.log_path.display()));

    if !said.started {
        // Nothing changed on the server: the driver (or ssh) refused before the run.
        if let Some(e) = said.errors.first() {
            let mut d = Diagnostic::error(format!("`{}` on `{host}`: {e}", plan.vm));
            for h in &said.hints {
                d = d.with_hint(h.clone());
            }
            return Err(d.into());
        }
        return Err(ssh_error(&session.target, &said.other.join("\n")));
    }
    if said.done && said.outcome.as_deref() == Some("success") && said.installed.is_some() {
        let mut after = super::remote_record::AfterSaid::default();
        for (w, t) in &said.after {
            after.take(w, t, host, &plan.config_path.display().to_string());
        }
        let mut problems = record.finish(plan, report.done.as_deref(), opts);
        problems.extend(after.problems);
        let after = super::hooks::After {
            autostart: after.autostart.map(PathBuf::from),
            started: after.started,
            problems,
        };
        return Ok(Provisioned::of(plan, said.replaced, started, after));
    }
    let interrupted = asked_stop || said.outcome.as_deref() == Some("interrupted");
    let local_copy = format!("local copy of the log: {}", local_log.display());
    if !said.done {
        // The connection went away mid-run: the driver stops the script when it notices,
        // and cleans up; ask the server what it did.
        let ssh_said = said.other.join("\n");
        let mut status = format!(
            "the connection to `{host}` was lost mid-run{}",
            match &said.outcome {
                Some(o) => format!(" (provision.sh {})", describe_outcome(o)),
                None => String::new(),
            }
        );
        if !ssh_said.trim().is_empty() {
            status.push_str(&format!(
                "\nssh said: {}",
                ssh_said.lines().last().unwrap_or_default()
            ));
        }
        let (mut removed, mut kept) = (said.removed.clone(), vec![]);
        let recovered = recover(&session.target, plan, settings);
        record.lost(plan, recovered.as_ref().map(|(_, not)| not.as_slice()));
        match recovered {
            Some((r, not)) => {
                status.push_str(&format!(
                    "\nreconnected to `{host}`: the server stopped the script and cleaned up{}",
                    if not.is_empty() {
                        String::new()
                    } else {
                        " completely".to_string()
                    }
                ));
                for p in r {
                    if !removed.contains(&p) {
                        removed.push(p);
                    }
                }
                kept.extend(not.into_iter().map(|p| format!("{p} (could NOT be removed)")));
            }
            None => status.push_str(&format!(
                "\ncould not reconnect to `{host}` to check the clean-up: the server stops the script and removes what it created when it notices; see its log"
            )),
        }
        status.push_str(&format!("\n{local_copy}"));
        return Err(Failure {
            vm: plan.vm.clone(),
            status,
            last_lines: tail.into_iter().collect(),
            log: Some(log_shown),
            removed,
            not_removed: vec![],
            kept,
            interrupted,
        }
        .into());
    }
    let what = if said.install_failed {
        format!(
            "provision.sh succeeded on `{host}` but the VM config `{}` could not be installed",
            plan.config_path.display()
        )
    } else {
        format!(
            "provision.sh {} on `{host}`",
            said.outcome
                .as_deref()
                .map(describe_outcome)
                .unwrap_or_else(|| format!("ended without a report (ssh status {status:?})"))
        )
    };
    if opts.keep {
        record.kept(plan, report.done.as_deref());
    }
    let mut kept = said.kept;
    kept.extend(
        said.not_removed
            .into_iter()
            .map(|p| format!("{p} (could NOT be removed)")),
    );
    Err(Failure {
        vm: plan.vm.clone(),
        status: format!("{what}\n{local_copy}"),
        last_lines: tail.into_iter().collect(),
        log: Some(log_shown),
        removed: said.removed,
        not_removed: vec![],
        kept,
        interrupted,
    }
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn the_driver_is_shellcheck_clean_bash() {
        assert!(DRIVER.starts_with("#!/bin/bash\n"));
        let ok = std::process::Command::new("bash")
            .args(["-n", "-c", DRIVER])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    #[test]
    fn bridges_prefer_xenbr0() {
        let b = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(default_bridge(&b(&["br1", "xenbr0"])), Some("xenbr0"));
        assert_eq!(default_bridge(&b(&["br1", "br2"])), Some("br1"));
        assert_eq!(default_bridge(&b(&[])), None);
    }

    #[test]
    fn driver_reports_are_read() {
        let mut s = Said::default();
        for l in [
            "CONVIRT:started",
            "CONVIRT:outcome exit 3",
            "CONVIRT:removed /srv/d/a b.disk",
            "CONVIRT:notremoved lvm:vg/x",
            "tee: write error",
            "CONVIRT:done",
        ] {
            s.take(l);
        }
        assert!(s.started && s.done);
        assert_eq!(s.removed, vec!["/srv/d/a b.disk"]);
        assert_eq!(s.not_removed, vec!["lvm:vg/x"]);
        assert_eq!(s.other, vec!["tee: write error"]);
        assert_eq!(
            describe_outcome(s.outcome.as_deref().unwrap()),
            "exited with status 3"
        );
        assert_eq!(
            describe_outcome("signal 9"),
            "was killed by signal SIGKILL (9)"
        );
    }

    #[test]
    fn server_settings_use_the_server_defaults_and_the_host_entry() {
        let mut base = Settings::load(
            &crate::settings::Overrides::default(),
            &crate::settings::Env {
                vars: [
                    ("HOME".to_string(), "/home/me".to_string()),
                    ("CONVIRT_CONFIG".to_string(), "/dev/null".to_string()),
                ]
                .into_iter()
                .collect(),
                is_root: false,
            },
        )
        .unwrap();
        base.variables = vec![
            ("VM_DISKS_DIR".into(), Value::Str("/local/disks".into())),
            ("memory".into(), Value::Int(256)),
        ];
        let h: HostSettings = toml::from_str(
            "address = 'x'\nlog_dir = 'logs'\nVM_CONF_DIR = '~/xen'\n[variables]\nmemory = 2048\n",
        )
        .unwrap();
        let t = Target {
            name: "x".into(),
            address: "x".into(),
            user: None,
            port: None,
            settings: Some(h),
        };
        let facts = |uid, bridges: &[&str]| Facts {
            host: crate::eval::Host::local(None),
            uid,
            home: PathBuf::from("/home/srv"),
            bridges: bridges.iter().map(|s| s.to_string()).collect(),
            missing: vec![],
        };
        let s = host_settings(&base, &t, &facts(1000, &["br0"]));
        assert_eq!(s.log_dir, PathBuf::from("/home/srv/logs"));
        assert_eq!(s.vm_conf_dir, PathBuf::from("/home/srv/xen"));
        assert_eq!(s.vm_disks_dir, PathBuf::from("/home/srv/.convirt/vm_disks"));
        assert_eq!(s.work_dir, PathBuf::from("/home/srv/.convirt/work"));
        // The local disk path does not travel; the host's memory beats the site's.
        assert_eq!(s.variable("VM_DISKS_DIR"), None);
        assert_eq!(s.variable("memory"), Some(&Value::Int(2048)));
        assert_eq!(
            s.variable("DEFAULT_BRIDGE"),
            Some(&Value::Str("br0".into()))
        );
        let s = host_settings(&base, &t, &facts(0, &[]));
        assert_eq!(s.vm_disks_dir, PathBuf::from("/var/cache/convirt/vm_disks"));
        assert_eq!(s.variable("DEFAULT_BRIDGE"), None);
        assert!(s.is_root);
    }

    /// The driver without ssh: the work tree unpacked by the real `tar`, the driver run by
    /// bash with a pipe as its lifeline, as sshd would run it.
    fn drive(dir: &Path, image: &str, vm: &str, set: &[(&str, &str)]) -> (bool, Said, PathBuf) {
        let store_dir = dir.join("store");
        if !store_dir.exists() {
            crate::store::init(&store_dir, false).unwrap();
            let fails = store_dir.join("Fails");
            let ok = std::process::Command::new("cp")
                .arg("-a")
                .arg(store_dir.join("Linux_CD_Install"))
                .arg(&fails)
                .status()
                .unwrap()
                .success();
            assert!(ok);
            // The shipped steps (they make the disk), then a failure.
            let script = fails.join("provision.sh");
            let text = std::fs::read_to_string(&script)
                .unwrap()
                .replace(
                    "provision_main \"$@\"\n",
                    "provision_steps() { provision_steps_default; echo boom; exit 3; }\nprovision_main \"$@\"\n",
                );
            std::fs::write(&script, text).unwrap();
        }
        let store = crate::store::Store::open(&store_dir).unwrap().0;
        let cfg = dir.join("c.toml");
        let srv = dir.join("srv");
        std::fs::write(
            &cfg,
            format!(
                "log_dir = '{s}/log'\nwork_dir = '{s}/work'\n[variables]\nVM_DISKS_DIR = '{s}/disks'\nVM_CONF_DIR = '{s}/xen'\n",
                s = srv.display()
            ),
        )
        .unwrap();
        let settings = Settings::load(
            &crate::settings::Overrides {
                store: Some(store_dir.clone()),
                config: Some(cfg),
            },
            &crate::settings::Env::current(),
        )
        .unwrap();
        let ctx = Context {
            vm_name: None,
            host: crate::eval::Host::local(None),
            store_path: store_dir.clone(),
            settings: settings.clone(),
        };
        let opts = Options {
            image: Some(image.into()),
            overrides: crate::resolve::Overrides {
                set: set
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                vm_set: vec![],
            },
            ..Options::default()
        };
        let plan = super::super::plan(vm, &store, &ctx, &opts).unwrap();
        let (mut spool, len) = work_tree(&plan, &store.root, &settings, &opts, "here").unwrap();
        let mut tree = Vec::new();
        spool.read_to_end(&mut tree).unwrap();
        assert_eq!(tree.len() as u64, len);
        let w = dir.join(format!("w-{vm}"));
        std::fs::create_dir_all(&w).unwrap();
        let mut tar = std::process::Command::new("tar")
            .args(["-x", "--no-same-owner", "-f", "-", "-C"])
            .arg(&w)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        tar.stdin.take().unwrap().write_all(&tree).unwrap();
        assert!(tar.wait().unwrap().success());
        let mut driver = std::process::Command::new("bash")
            .arg(w.join("driver.sh"))
            .arg(&w)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lifeline = driver.stdin.take();
        let out = driver.wait_with_output().unwrap();
        drop(lifeline);
        let mut said = Said::default();
        for l in String::from_utf8_lossy(&out.stderr).lines() {
            said.take(l);
        }
        assert!(!w.exists(), "the work dir stays behind");
        (out.status.success(), said, plan.config_path.clone())
    }

    #[test]
    fn the_driver_provisions_and_cleans_up_without_ssh() {
        let dir = tempfile::tempdir().unwrap();
        let (ok, said, config) = drive(
            dir.path(),
            "Linux_CD_Install",
            "d1",
            &[("hda_disk_size", "4")],
        );
        assert!(ok, "{said:?}");
        assert_eq!(said.outcome.as_deref(), Some("success"));
        assert!(said.done && said.installed.is_some());
        assert!(
            std::fs::read_to_string(&config)
                .unwrap()
                .contains("name = \"d1\"")
        );
        let disk = dir.path().join("srv/disks/d1.disk.xm");
        assert_eq!(std::fs::metadata(&disk).unwrap().len(), 4 << 20);
        // Again: refused before anything changes, the lock released.
        let (ok, said, _) = drive(
            dir.path(),
            "Linux_CD_Install",
            "d1",
            &[("hda_disk_size", "4")],
        );
        assert!(!ok && !said.started);
        assert!(said.errors[0].contains("already exists"), "{said:?}");
        assert!(!dir.path().join("srv/work/locks/d1.lock").exists());

        let (ok, said, config) = drive(dir.path(), "Fails", "d2", &[("hda_disk_size", "4")]);
        assert!(!ok);
        assert_eq!(said.outcome.as_deref(), Some("exit 3"));
        let disk = dir.path().join("srv/disks/d2.disk.xm");
        assert_eq!(said.removed, vec![disk.display().to_string()]);
        assert!(!disk.exists() && !config.exists());
        let log = std::fs::read_to_string(dir.path().join("srv/log/Fails/Fails_d2.log")).unwrap();
        assert!(
            log.contains("boom") && log.contains("convirt: removed "),
            "{log}"
        );
    }
}

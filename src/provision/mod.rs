//! Provisioning (spec §6): plan a VM from an image, take its lock, prepare a private work
//! directory, write the inputs, run `provision.sh` exactly as ConVirt called it, then install
//! the config atomically on success or remove what the run created on failure.

pub(crate) mod batch;
pub(crate) mod cache;
pub(crate) mod cleanup;
pub(crate) mod disk_values;
pub(crate) mod disks;
mod engine;
pub(crate) mod guest;
pub(crate) mod log;
pub(crate) mod proto;
pub(crate) mod remote;
pub(crate) mod remote_record;
pub(crate) mod run;
pub(crate) mod secrets;
pub(crate) mod seed;
pub(crate) mod serve;

// Where a run meets the VM records of `crate::state`; `state` never imports `provision`.
pub(crate) mod hooks;
pub(crate) mod job;

pub(crate) use engine::{Tree, execute};
pub(crate) use job::Job;

use crate::diagnostic::Diagnostic;
use crate::image::Image;
use crate::render;
use crate::resolve::{self, Context, Entry, Overrides, Resolved};
use crate::settings::Format;
use crate::store::{self, Store};
use crate::value::{Value, shell_quote};
use disks::Disk;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Everything a provisioning run is going to do, decided before anything is written.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub vm: String,
    pub image: String,
    pub format: Format,
    pub resolved: Resolved,
    pub uuid: String,
    pub config_path: PathBuf,
    pub config_text: String,
    pub disks: Vec<Disk>,
    pub custom_dirs: Vec<(String, PathBuf)>,
    pub custom_scripts: Vec<PathBuf>,
    pub log_dir: PathBuf,
    pub log_path: PathBuf,
    pub image_conf_path: PathBuf,
    pub vm_conf_path: PathBuf,
    pub args_path: PathBuf,
    pub timeout: Option<Duration>,
    pub store_root: PathBuf,
    /// Where the VM's record and journal go (docs/records.md).
    pub state_dir: PathBuf,
    /// Xen's auto-start directory, for `--autostart`.
    pub xen_auto_dir: PathBuf,
}

/// What the user asked for.
#[derive(Debug, Clone, Default)]
pub(crate) struct Options {
    pub image: Option<String>,
    pub overrides: Overrides,
    pub format: Option<Format>,
    pub force: bool,
    pub keep: bool,
    pub timeout: Option<u64>,
    pub strict: bool,
    /// `xl create` the installed config.
    pub start: bool,
    /// Link the installed config into Xen's auto-start directory.
    pub autostart: bool,
    /// This machine's guest cache dir: a server lacking an entry gets it from there
    /// (`seed`); `None` sends nothing.
    pub seed_from: Option<PathBuf>,
}

/// A failed provisioning, modelled on cargo's `ProcessError`: what happened, the last output,
/// where the log is, and what was cleaned up or kept.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Failure {
    pub vm: String,
    pub status: String,
    pub last_lines: Vec<String>,
    pub log: Option<PathBuf>,
    pub removed: Vec<String>,
    /// What the clean-up could not remove, each with why: kept in the journal for `vm remove`.
    pub not_removed: Vec<String>,
    pub kept: Vec<String>,
    pub interrupted: bool,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "provisioning `{}` failed: {}", self.vm, self.status)?;
        if !self.last_lines.is_empty() {
            writeln!(f, "\n--- last lines of output ---")?;
            for l in &self.last_lines {
                writeln!(f, "{l}")?;
            }
            write!(f, "---")?;
        }
        if !self.removed.is_empty() {
            write!(
                f,
                "\nremoved what this run created: {}",
                self.removed.join(", ")
            )?;
        }
        if !self.not_removed.is_empty() {
            write!(
                f,
                "\ncould not remove: {}\n(the record keeps them: `convirt vm remove {}` tries again)",
                self.not_removed.join(", "),
                self.vm
            )?;
        }
        if !self.kept.is_empty() {
            write!(f, "\nkept for debugging (--keep): {}", self.kept.join(", "))?;
        }
        if let Some(l) = &self.log {
            write!(f, "\nlog: {}", l.display())?;
        }
        Ok(())
    }
}

impl std::error::Error for Failure {}

/// The result of a successful run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Provisioned {
    pub vm: String,
    pub image: String,
    pub config: PathBuf,
    pub disks: Vec<String>,
    pub log: PathBuf,
    pub image_conf: PathBuf,
    pub replaced: Vec<String>,
    pub seconds: f64,
    /// A remote run of a guest image: where the server's guest cache came from (sent from
    /// this machine, bootstrapped there, already there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_cache: Option<String>,
    /// `--start` / `--autostart`, and what went wrong after the install (the VM stays).
    #[serde(flatten)]
    pub after: hooks::After,
}

impl Provisioned {
    /// The result of a successful run of `job` that began at `started`.
    pub(crate) fn of(
        job: &Job,
        replaced: Vec<String>,
        started: std::time::Instant,
        after: hooks::After,
    ) -> Provisioned {
        Provisioned {
            vm: job.vm.clone(),
            image: job.image.clone(),
            config: job.config_path.clone(),
            disks: job.created_disks(),
            log: job.log_path.clone(),
            image_conf: job.image_conf_path.clone(),
            replaced,
            seconds: started.elapsed().as_secs_f64(),
            guest_cache: None,
            after,
        }
    }
}

fn err(msg: impl Into<String>) -> anyhow::Error {
    Diagnostic::error(msg.into()).into()
}

/// Names a fresh UUID (version 4) from the kernel's random bytes, or fails.
pub(crate) fn new_uuid() -> std::io::Result<String> {
    let mut b = [0u8; 16];
    crate::sys::fill_random(&mut b)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// The custom script directories of `custom_list`, image's own first (spec §5.1).
pub(crate) fn custom_dirs(
    image: &Image,
    store: &Store,
    resolved: &Resolved,
) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let names: Vec<String> = match resolved.image_value("custom_list") {
        Some(Value::List(v)) | Some(Value::Tuple(v)) => v.iter().map(Value::to_text).collect(),
        Some(Value::Str(s)) => s.split_whitespace().map(String::from).collect(),
        _ => vec![],
    };
    let mut out = Vec::new();
    for n in names {
        if n.is_empty() || n.contains('/') || n == "." || n == ".." || n.starts_with('.') {
            return Err(err(format!(
                "`custom_list` names `{n}`, which is not a directory name"
            )));
        }
        let own = image.dir.join("custom_scripts").join(&n);
        let shared = store.root.join("custom_scripts").join(&n);
        let dir = if own.is_dir() {
            own
        } else if shared.is_dir() {
            shared
        } else {
            return Err(err(format!(
                "custom script directory `{n}` is in neither `{}` nor `{}`",
                image.dir.join("custom_scripts").display(),
                store.root.join("custom_scripts").display()
            )));
        };
        out.push((n, dir));
    }
    Ok(out)
}

/// The scripts a directory runs, in byte order of name, without dot files and editor backups.
pub(crate) fn scripts_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return vec![];
    };
    let mut names: Vec<(Vec<u8>, PathBuf)> = rd
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let s = name.to_string_lossy();
            let backup = s.starts_with('.')
                || s.ends_with('~')
                || s.ends_with(".bak")
                || s.ends_with(".orig")
                || s.ends_with(".swp")
                || (s.starts_with('#') && s.ends_with('#'));
            let meta = std::fs::metadata(e.path()).ok()?;
            let exec = meta.is_file() && meta.permissions().mode() & 0o111 != 0;
            (!backup && exec).then(|| {
                (
                    std::os::unix::ffi::OsStrExt::as_bytes(name.as_os_str()).to_vec(),
                    e.path(),
                )
            })
        })
        .collect();
    names.sort();
    names.into_iter().map(|(_, p)| p).collect()
}

/// The script's timeout: `--timeout`, else the VM's `provision_timeout` (seconds, above 0).
fn timeout_of(opts: &Options, resolved: &Resolved) -> Option<Duration> {
    match opts.timeout {
        Some(t) => Some(Duration::from_secs(t)),
        None => match resolved.vm_value("provision_timeout") {
            Some(Value::Int(t)) if *t > 0 => Some(Duration::from_secs(*t as u64)),
            Some(Value::Str(s)) => s
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|t| *t > 0)
                .map(Duration::from_secs),
            _ => None,
        },
    }
}

/// Decides everything; writes nothing.
pub(crate) fn plan(
    vm: &str,
    store: &Store,
    ctx_base: &Context,
    opts: &Options,
) -> anyhow::Result<Plan> {
    store::check_vm_name(vm).map_err(err)?;
    let image_name = match (&opts.image, &store.conf.default) {
        (Some(i), _) => i.clone(),
        (None, Some(d)) => d.clone(),
        (None, None) => {
            return Err(err(
                "no `--image` given and the store's image_store.conf names no `default` image",
            ));
        }
    };
    let dir = store.image_dir(&image_name)?;
    let image = Image::load(&image_name, &dir, &ctx_base.host)?;
    let ctx = Context {
        vm_name: Some(vm.to_string()),
        ..ctx_base.clone()
    };
    let mut resolved = resolve::resolve(&image, &ctx, &opts.overrides, opts.strict)?;
    disks::thin_entries(&mut resolved);
    let format = opts.format.unwrap_or(ctx.settings.default_format);
    let conf_dir = resolved
        .image_value("VM_CONF_DIR")
        .map(Value::to_text)
        .unwrap_or_else(|| ctx.settings.vm_conf_dir.display().to_string());
    let config_path = PathBuf::from(&conf_dir).join(match format {
        Format::Xl => format!("{vm}.cfg"),
        Format::Xm => vm.to_string(),
    });
    let log_dir = ctx.settings.log_dir.join(&image_name);
    let log_path = log_dir.join(format!("{image_name}_{vm}.log"));
    let image_conf_path = log_dir.join(format!("{image_name}_{vm}_image.conf"));
    let vm_conf_path = log_dir.join(format!("{image_name}_{vm}_vm.conf"));
    let args_path = log_dir.join(format!("{image_name}_{vm}.args"));
    let uuid = new_uuid().map_err(|e| err(format!("cannot make the VM's uuid: {e}")))?;
    let extra = vec![
        ("uuid".to_string(), Value::Str(uuid.clone())),
        ("image_name".to_string(), Value::Str(image_name.clone())),
        (
            "image_conf".to_string(),
            Value::Str(image_conf_path.display().to_string()),
        ),
    ];
    let req = render::Request {
        entries: &resolved.vm,
        template: &image.vm_template,
        image: &image_name,
        extra,
        xl_template: render::store_xl_template(&store.root),
    };
    let config_text = render::render(format, &req)?;
    let timeout = timeout_of(opts, &resolved);
    let disks = disks::plan(&resolved);
    // Bad disk values stop here, before anything runs (issue #12.7).
    let bad = disk_values::check(&image, &resolved);
    if bad.has_errors() {
        return Err(bad.into());
    }
    let missing = disk_values::missing_sources(&disks, &resolved, false);
    resolved.warnings.extend(missing);
    let custom_dirs = custom_dirs(&image, store, &resolved)?;
    let custom_scripts = custom_dirs
        .iter()
        .flat_map(|(_, d)| scripts_in(d))
        .collect();
    Ok(Plan {
        vm: vm.to_string(),
        image: image_name,
        format,
        resolved,
        uuid,
        config_path,
        config_text,
        disks,
        custom_dirs,
        custom_scripts,
        log_dir,
        log_path,
        image_conf_path,
        vm_conf_path,
        args_path,
        timeout,
        store_root: store.root.clone(),
        state_dir: ctx.settings.state_dir.clone(),
        xen_auto_dir: ctx.settings.xen_auto_dir.clone(),
    })
}

impl Plan {
    /// The paths of the disks this provisioning creates.
    pub(crate) fn created_disks(&self) -> Vec<String> {
        disks::created(&self.disks)
    }

    /// What a run of this plan states first in its journal: on this machine (`host`
    /// `localhost`, no `server`) or on a managed server (its address, and where the local
    /// copy of its log goes).
    pub(crate) fn run_header(
        &self,
        host: &str,
        server: Option<(String, &Path)>,
    ) -> crate::state::Header {
        let (server, local_log) = match server {
            Some((s, l)) => (Some(s), Some(l.display().to_string())),
            None => (None, None),
        };
        crate::state::Header {
            vm: self.vm.clone(),
            host: host.into(),
            image: self.image.clone(),
            image_digest: crate::state::image_digest(&self.store_root.join(&self.image)),
            format: self.format,
            config: self.config_path.display().to_string(),
            log: self.log_path.display().to_string(),
            disks: self.created_disks(),
            pid: std::process::id(),
            started: log::timestamp(),
            convirt_version: env!("CARGO_PKG_VERSION").into(),
            server,
            local_log,
            run: None,
            host_key: None,
        }
    }

    /// The script command line, for a work store at `work_store`.
    pub(crate) fn command_line(&self, work_store: &Path) -> Vec<String> {
        command_line(
            &self.image,
            work_store,
            &self.vm_conf_path,
            &self.args_path,
            &self.log_path,
            &self.image_conf_path,
        )
    }

    /// The instantiated image.conf in the restricted literal format of docs/script-contract.md.
    pub(crate) fn image_conf_text(&self) -> String {
        literal_file(
            &format!(
                "image.conf of `{}` instantiated for VM `{}`",
                self.image, self.vm
            ),
            &self.resolved.image,
            &[],
        )
    }

    pub(crate) fn vm_conf_text(&self) -> String {
        let extra = [
            ("uuid", Value::Str(self.uuid.clone())),
            ("image_name", Value::Str(self.image.clone())),
            (
                "image_conf",
                Value::Str(self.image_conf_path.display().to_string()),
            ),
        ];
        literal_file(
            &format!(
                "VM config of `{}` from image `{}`, every value evaluated",
                self.vm, self.image
            ),
            &self.resolved.vm,
            &extra,
        )
    }

    pub(crate) fn args_text(&self) -> String {
        let mut s = String::from("# provisioning arguments, written by convirt (safe to source)\n");
        for (k, v) in [
            ("VM_NAME", self.vm.clone()),
            ("IMAGE_NAME", self.image.clone()),
            ("IMAGE_LOCATION", self.image.clone()),
            ("IMAGE_STORE", self.store_root.display().to_string()),
            ("VM_UUID", self.uuid.clone()),
            ("VM_CONFIG_FILE", self.config_path.display().to_string()),
        ] {
            s.push_str(&format!("{k}={}\n", shell_quote(&v)));
        }
        s
    }

    pub(crate) fn to_json(&self, work_store: &Path) -> serde_json::Value {
        let entry = |e: &Entry| {
            let value = if crate::state::is_secret(&e.key, &e.value.to_text()) {
                serde_json::Value::String(crate::state::MASK.into())
            } else {
                e.value.to_json()
            };
            serde_json::json!({"key": e.key, "value": value, "origin": e.origin, "computed": e.computed})
        };
        serde_json::json!({
            "vm": self.vm,
            "image": self.image,
            "format": self.format,
            "config_path": self.config_path,
            "config": self.mask(&self.config_text),
            "image_conf": self.resolved.image.iter().map(entry).collect::<Vec<_>>(),
            "vm_conf": self.resolved.vm.iter().map(entry).collect::<Vec<_>>(),
            "disks": self.disks,
            "custom_scripts": self.custom_scripts,
            "guest_cache": guest::cache_info(&self.resolved).map(|r| match r {
                Ok(c) => serde_json::to_value(c).unwrap_or_default(),
                Err(e) => serde_json::json!({ "error": e }),
            }),
            "command": self.command_line(work_store),
            "log": self.log_path,
            "timeout_seconds": self.timeout.map(|t| t.as_secs()),
        })
    }

    /// The dry-run report.
    pub(crate) fn describe(&self, work_store: &Path) -> String {
        let mut s = format!(
            "plan for VM `{}` from image `{}` (dry run: nothing written)\n\n",
            self.vm, self.image
        );
        s.push_str(&format!(
            "VM config ({}) -> {}\n",
            if self.format == Format::Xl {
                "xl"
            } else {
                "xm"
            },
            self.config_path.display()
        ));
        for l in self.config_text.lines() {
            s.push_str(&format!("  {l}\n"));
        }
        s.push_str("\nimage.conf values:\n");
        let w = self
            .resolved
            .image
            .iter()
            .map(|e| e.key.len())
            .max()
            .unwrap_or(0);
        for e in &self.resolved.image {
            let shown = if crate::state::is_secret(&e.key, &e.value.to_text()) {
                crate::state::MASK.to_string()
            } else {
                e.value.repr()
            };
            s.push_str(&format!("  {:<w$} = {}    # {}\n", e.key, shown, e.origin));
        }
        s.push_str("\ndisks:\n");
        if self.disks.is_empty() {
            s.push_str("  (none)\n");
        }
        for d in &self.disks {
            let what = if d.create {
                match (d.size_mb, &d.image_src) {
                    (Some(mb), Some(src)) => format!("created from `{src}`, {mb} MB"),
                    (None, Some(src)) => format!("created from `{src}`"),
                    (Some(mb), None) => format!("created, {mb} MB"),
                    (None, None) => "created".into(),
                }
            } else if d.cdrom || d.mode == "r" {
                "read-only, not created".into()
            } else {
                "used as is".into()
            };
            s.push_str(&format!("  {} ({}, {}): {what}\n", d.path, d.kind, d.dev));
        }
        if let Some(g) = guest::cache_info(&self.resolved) {
            s.push_str(&guest::describe(&g));
        }
        s.push_str("\ncustom scripts, in order:\n");
        if self.custom_scripts.is_empty() {
            s.push_str("  (none)\n");
        }
        for c in &self.custom_scripts {
            s.push_str(&format!("  {}\n", c.display()));
        }
        s.push_str("\ncommand:\n  ");
        s.push_str(
            &self
                .command_line(work_store)
                .iter()
                .map(|a| shell_quote_if_needed(a))
                .collect::<Vec<_>>()
                .join(" "),
        );
        s.push_str(&format!("\n\nlog: {}\n", self.log_path.display()));
        if let Some(t) = self.timeout {
            s.push_str(&format!("timeout: {} s\n", t.as_secs()));
        }
        self.mask(&s)
    }
}

/// `provision.sh` as ConVirt called it (spec §6.1).
pub(crate) fn command_line(
    image: &str,
    work_store: &Path,
    vm_conf: &Path,
    args: &Path,
    log: &Path,
    image_conf: &Path,
) -> Vec<String> {
    let p = |p: &Path| p.display().to_string();
    vec![
        p(&work_store.join(image).join(crate::image::PROVISION_SCRIPT)),
        "-x".into(),
        p(vm_conf),
        "-p".into(),
        p(args),
        "-s".into(),
        p(work_store),
        "-i".into(),
        image.into(),
        "-l".into(),
        p(log),
        "-c".into(),
        p(image_conf),
    ]
}

fn shell_quote_if_needed(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-:=,+".contains(c))
    {
        s.to_string()
    } else {
        shell_quote(s)
    }
}

fn literal_file(title: &str, entries: &[Entry], extra: &[(&str, Value)]) -> String {
    let mut s = format!(
        "# {title}\n# written by convirt: one `key = literal` per line (see docs/script-contract.md)\n"
    );
    for e in entries {
        s.push_str(&format!("{} = {}\n", e.key, e.value.script_literal()));
    }
    for (k, v) in extra {
        if !entries.iter().any(|e| e.key == *k) {
            s.push_str(&format!("{k} = {}\n", v.script_literal()));
        }
    }
    s
}

/// A held per-VM lock; released when dropped.
pub(crate) struct Lock {
    _file: File,
    path: PathBuf,
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Takes the per-VM lock, or fails at once naming the holder.
pub(crate) fn lock(work_dir: &Path, vm: &str, image: &str) -> anyhow::Result<Lock> {
    let dir = work_dir.join("locks");
    std::fs::create_dir_all(&dir).map_err(|e| {
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            Diagnostic::error(format!(
                "the work_dir `{}` is not writable (cannot create `{}`: {e})",
                work_dir.display(),
                dir.display()
            ))
            .with_hint("fix its permissions or choose another `work_dir`; nothing was changed")
            .into()
        } else {
            err(format!("cannot create `{}`: {e}", dir.display()))
        }
    })?;
    // Another user's symlink planted here would make convirt write through it.
    for d in [work_dir, dir.as_path()] {
        if let Some(why) = crate::sys::unsafe_dir(d) {
            return Err(err(format!("refusing to take the VM's lock: {why}")));
        }
    }
    let path = dir.join(format!("{vm}.lock"));
    loop {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| err(format!("cannot open lock `{}`: {e}", path.display())))?;
        let locked = crate::sys::try_lock_exclusive(&file)
            .map_err(|e| err(format!("cannot lock `{}`: {e}", path.display())))?;
        if !locked {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            let holder = holder.trim();
            return Err(Diagnostic::error(format!(
                "VM `{vm}` is already being provisioned{}",
                if holder.is_empty() {
                    String::new()
                } else {
                    format!(" ({holder})")
                }
            ))
            .with_hint(format!(
                "wait for it to finish; the lock is `{}`",
                path.display()
            ))
            .into());
        }
        // The file we locked may have been removed by a finishing holder in the meantime.
        let same = std::fs::metadata(&path)
            .ok()
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            == file
                .metadata()
                .ok()
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m));
        if !same {
            continue;
        }
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| format!("uid {}", crate::sys::euid()));
        let info = format!(
            "pid {}, user {user}, image {image}, since {}",
            std::process::id(),
            log::timestamp()
        );
        let _ = file.set_len(0);
        let _ = (&file).write_all(info.as_bytes());
        return Ok(Lock { _file: file, path });
    }
}

/// Copies a directory tree, keeping modes and symlinks, skipping dot names (as ConVirt did).
pub(crate) fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    crate::tree::copy_plain(src, dst)
}

/// The work directory's store as a plan shows it before the run: the directory is made by
/// `execute` with the prefix `<vm>.` and a random suffix, shown as `XXXXXX`.
pub(crate) fn work_store_shown(work_root: &Path, vm: &str) -> PathBuf {
    work_root.join(format!("{vm}.XXXXXX")).join("image_store")
}

//! What the engine runs: a plan with every value decided and every text rendered, plus what
//! the user asked for. The same `Job` runs here (`provision::execute`) or travels to a
//! server's `convirt __serve` (`remote::proto`), which calls the very same `execute`.

use super::{Options, Plan};
use crate::disk_values::{self, Source};
use crate::disks::Disk;
use crate::settings::Format;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One VM's run, decided before anything is written.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Job {
    pub vm: String,
    pub image: String,
    pub image_digest: String,
    pub format: Format,
    pub config_path: PathBuf,
    pub config_text: String,
    /// The installed config's mode: 0644, or 0600 when it holds a secret (issue #18).
    pub config_mode: u32,
    pub disks: Vec<Disk>,
    /// Files the run reads and does not create, checked where it runs.
    pub sources: Vec<Source>,
    /// The custom script directories, by name and place in this machine's store.
    pub custom_dirs: Vec<(String, PathBuf)>,
    pub log_dir: PathBuf,
    pub log_path: PathBuf,
    pub image_conf_path: PathBuf,
    pub vm_conf_path: PathBuf,
    pub args_path: PathBuf,
    pub image_conf_text: String,
    pub vm_conf_text: String,
    pub args_text: String,
    /// Seconds `provision.sh` may run.
    pub timeout: Option<u64>,
    /// The store the run's copy of the image comes from (this machine's).
    pub store_root: PathBuf,
    /// Where the run's private work directory and the per-VM locks go.
    pub work_dir: PathBuf,
    pub state_dir: PathBuf,
    pub xen_auto_dir: PathBuf,
    /// The image's `VM_DISKS_DIR`, `VM_CONF_DIR` and `VM_CACHE_DIR`: where a `--force` run may
    /// remove an earlier run's leftovers (issue #18).
    #[serde(default)]
    pub bound_dirs: Vec<PathBuf>,
    /// The record's `values` (secrets masked).
    pub values: serde_json::Value,
    pub force: bool,
    pub keep: bool,
    pub start: bool,
    pub autostart: bool,
    /// The run's identity (a random UUID), in both journals of a remote run.
    pub run: String,
    /// Who asked, for the lock's holder line (`console HOST`), when it is another machine.
    #[serde(default)]
    pub console: Option<String>,
}

impl Job {
    /// The job of `plan`, run with `opts`, its work directory under `work_dir`; the image is
    /// copied from `local_store` (this machine's store, also for a server).
    pub(crate) fn of(plan: &Plan, opts: &Options, work_dir: &Path, local_store: &Path) -> Job {
        Job {
            vm: plan.vm.clone(),
            image: plan.image.clone(),
            image_digest: crate::state::image_digest(&local_store.join(&plan.image)),
            format: plan.format,
            config_path: plan.config_path.clone(),
            config_text: plan.config_text.clone(),
            config_mode: plan.config_mode(),
            disks: plan.disks.clone(),
            sources: disk_values::sources(&plan.disks, &plan.resolved),
            custom_dirs: plan.custom_dirs.clone(),
            log_dir: plan.log_dir.clone(),
            log_path: plan.log_path.clone(),
            image_conf_path: plan.image_conf_path.clone(),
            vm_conf_path: plan.vm_conf_path.clone(),
            args_path: plan.args_path.clone(),
            image_conf_text: plan.image_conf_text(),
            vm_conf_text: plan.vm_conf_text(),
            args_text: plan.args_text(),
            timeout: plan.timeout.map(|t| t.as_secs()),
            store_root: local_store.to_path_buf(),
            work_dir: work_dir.to_path_buf(),
            state_dir: plan.state_dir.clone(),
            xen_auto_dir: plan.xen_auto_dir.clone(),
            bound_dirs: ["VM_DISKS_DIR", "VM_CONF_DIR", "VM_CACHE_DIR"]
                .iter()
                .filter_map(|k| plan.resolved.image_value(k))
                .map(|v| PathBuf::from(v.to_text()))
                .collect(),
            values: crate::state::masked_values(&plan.resolved),
            force: opts.force,
            keep: opts.keep,
            start: opts.start,
            autostart: opts.autostart,
            run: super::new_uuid().unwrap_or_else(|_| plan.uuid.clone()),
            console: None,
        }
    }

    /// The paths of the disks this provisioning creates.
    pub(crate) fn created_disks(&self) -> Vec<String> {
        crate::disks::created(&self.disks)
    }

    /// What the run states first in its journal, on the machine it runs on.
    pub(crate) fn run_header(&self) -> crate::state::Header {
        crate::state::Header {
            vm: self.vm.clone(),
            host: crate::state::LOCALHOST.into(),
            image: self.image.clone(),
            image_digest: self.image_digest.clone(),
            format: self.format,
            config: self.config_path.display().to_string(),
            log: self.log_path.display().to_string(),
            disks: self.created_disks(),
            pid: std::process::id(),
            started: super::log::timestamp(),
            convirt_version: env!("CARGO_PKG_VERSION").into(),
            server: None,
            local_log: None,
            run: Some(self.run.clone()),
            host_key: None,
        }
    }

    /// The script command line, for a work store at `work_store`.
    pub(crate) fn command_line(&self, work_store: &Path) -> Vec<String> {
        super::command_line(
            &self.image,
            work_store,
            &self.vm_conf_path,
            &self.args_path,
            &self.log_path,
            &self.image_conf_path,
        )
    }
}

//! Removing what a VM's runs created, and nothing else: newest first, directories only when
//! empty, a file replaced since the run (other device or inode) left alone, LVM volumes with
//! `lvremove`; then the VM's state directory.

use super::{Item, Kind, Vm};
use std::path::Path;

/// What removing one item did (or, on a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Step {
    pub item: Item,
    /// `remove`, `removed`, `gone`, `kept`, or `failed`.
    pub action: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub why: String,
}

impl Step {
    pub(crate) fn new(item: &Item, action: &'static str, why: impl Into<String>) -> Step {
        Step {
            item: item.clone(),
            action,
            why: why.into(),
        }
    }
}

/// Whether the item is still the thing the run created.
fn changed_since(item: &Item) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let (Some(dev), Some(ino)) = (item.dev, item.ino) else {
        return None;
    };
    // The config is the VM's whatever an editor did to it (many write a new inode).
    if matches!(item.kind, Kind::Config | Kind::Dir) {
        return None;
    }
    let m = std::fs::symlink_metadata(&item.path).ok()?;
    let reborn = item.born.is_some() && super::born(&m).is_some() && super::born(&m) != item.born;
    (m.dev() != dev || m.ino() != ino || reborn)
        .then(|| "replaced since provisioning (another file now has this path)".to_string())
}

/// Decides, then (unless `dry_run`) removes. Items are taken newest first.
pub(crate) fn remove(vm: &Vm, keep_disks: bool, dry_run: bool) -> Vec<Step> {
    vm.items()
        .iter()
        .rev()
        .map(|item| remove_item(item, keep_disks, dry_run))
        .collect()
}

/// Decides about one item of this machine, then (unless `dry_run`) removes it.
pub(crate) fn remove_item(item: &Item, keep_disks: bool, dry_run: bool) -> Step {
    if keep_disks && matches!(item.kind, Kind::Disk | Kind::Lvm) {
        Step::new(item, "kept", "--keep-disks")
    } else if item.kind != Kind::Lvm && !Path::new(&item.path).is_absolute() {
        Step::new(item, "kept", "not an absolute path")
    } else if !item.exists() {
        Step::new(item, "gone", "")
    } else if let Some(why) = changed_since(item) {
        Step::new(item, "kept", why)
    } else if dry_run {
        let dir = item.kind == Kind::Dir
            || std::fs::symlink_metadata(&item.path).is_ok_and(|m| m.is_dir());
        Step::new(item, "remove", if dir { "if empty" } else { "" })
    } else {
        remove_one(item)
    }
}

fn remove_one(item: &Item) -> Step {
    if item.kind == Kind::Lvm {
        return match std::process::Command::new("lvremove")
            .args(["-f", &item.path])
            .output()
        {
            Ok(o) if o.status.success() => Step::new(item, "removed", ""),
            Ok(o) => Step::new(
                item,
                "failed",
                format!(
                    "lvremove: {}",
                    String::from_utf8_lossy(&o.stderr).trim().replace('\n', " ")
                ),
            ),
            Err(e) => Step::new(item, "failed", format!("cannot run `lvremove`: {e}")),
        };
    }
    let p = Path::new(&item.path);
    let Ok(meta) = std::fs::symlink_metadata(p) else {
        return Step::new(item, "gone", "");
    };
    let result = if item.kind == Kind::Workdir && meta.is_dir() {
        // convirt's own private directory: all of it is the run's.
        std::fs::remove_dir_all(p)
    } else if meta.is_dir() {
        match std::fs::remove_dir(p) {
            Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty => {
                return Step::new(
                    item,
                    "kept",
                    "not empty: holds files this run did not create",
                );
            }
            r => r,
        }
    } else {
        std::fs::remove_file(p)
    };
    match result {
        Ok(()) => Step::new(item, "removed", ""),
        Err(e) => Step::new(item, "failed", e.to_string()),
    }
}

/// Drops the VM's state (record, journal, created list, then its directory).
pub(crate) fn forget(vm: &Vm) -> std::io::Result<()> {
    for f in [super::RECORD, super::JOURNAL, super::CREATED] {
        match std::fs::remove_file(vm.dir.join(f)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    let _ = std::fs::remove_dir(&vm.dir);
    Ok(())
}

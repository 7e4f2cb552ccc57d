//! After a run: the disks made owner-only, and what a failed run created removed again, with
//! what could not be removed named (issue #18).

use super::log;
use crate::disks::Disk;
use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Makes every file disk the run created owner-only (0600), whatever the umask and the
/// image's script did: a disk holds the guest's secrets (issue #18). Returns what it changed,
/// for the log. Symlinks and devices are left alone.
pub(super) fn private_disks(disks: &[Disk]) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut notes = Vec::new();
    for d in disks.iter().filter(|d| d.create && d.is_file_backed()) {
        let Ok(m) = std::fs::symlink_metadata(&d.path) else {
            continue;
        };
        if !m.is_file() || m.mode() & 0o077 == 0 || m.uid() != crate::sys::euid() {
            continue;
        }
        match std::fs::set_permissions(&d.path, std::fs::Permissions::from_mode(0o600)) {
            Ok(()) => notes.push(format!(
                "disk {} was mode {:o}: made owner-only (0600)",
                d.path,
                m.mode() & 0o7777
            )),
            Err(e) => notes.push(format!("cannot make disk {} owner-only: {e}", d.path)),
        }
    }
    notes
}

/// Removes what a failed run created, newest first; directories only when empty. Returns
/// what was removed and what could not be (each with why), which the summary lists and the
/// journal keeps for `vm remove` (issue #18).
pub(super) fn remove_created(
    entries: &[String],
    protected: &[PathBuf],
    log: &mut File,
) -> (Vec<String>, Vec<String>) {
    let mut removed = Vec::new();
    let mut failed = Vec::new();
    for e in entries.iter().rev() {
        if let Some(lv) = e.strip_prefix("lvm:") {
            if !crate::state::remove::valid_lvm(lv) {
                let why = format!("{e} (not a valid `VG/LV` name; left alone)");
                log::note(log, &format!("could not remove {why}"));
                failed.push(why);
                continue;
            }
            let result = crate::sys::find_tool("lvremove").and_then(|t| {
                crate::sys::output_with_timeout(
                    std::process::Command::new(t).args(["-f", "--", lv]),
                    crate::sys::TOOL_TIMEOUT,
                )
                .map_err(|e| e.to_string())
                .and_then(|o| {
                    if o.status.success() {
                        Ok(())
                    } else {
                        Err(format!(
                            "lvremove: {}",
                            String::from_utf8_lossy(&o.stderr).trim().replace('\n', " ")
                        ))
                    }
                })
            });
            match result {
                Ok(()) => {
                    log::note(log, &format!("removed logical volume {lv}"));
                    removed.push(e.clone());
                }
                Err(why) => {
                    log::note(log, &format!("could not remove logical volume {lv}: {why}"));
                    failed.push(format!("{e} ({why})"));
                }
            }
            continue;
        }
        let p = Path::new(e);
        if !p.is_absolute() || protected.iter().any(|x| x == p) {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(p) else {
            continue;
        };
        let result = if meta.is_dir() {
            match std::fs::remove_dir(p) {
                // Holds files this run did not create: not ours to empty.
                Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty => continue,
                r => r,
            }
        } else {
            std::fs::remove_file(p)
        };
        match result {
            Ok(()) => {
                log::note(log, &format!("removed {e}"));
                removed.push(e.clone());
            }
            Err(err) => {
                log::note(log, &format!("could not remove {e}: {err}"));
                failed.push(format!("{e} ({err})"));
            }
        }
    }
    (removed, failed)
}

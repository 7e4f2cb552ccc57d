//! Removing what a VM's runs created, and nothing else: newest first, directories only when
//! empty, a file replaced since the run (other device or inode) left alone, LVM volumes with
//! `lvremove`; then the VM's state directory.

use super::{Item, Kind, Vm};
use std::path::{Path, PathBuf};

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

/// Where `vm remove` may remove anything: the directories the run was configured with
/// (disks, configs, logs, work dir, auto-start dir, cache) and, for directories that are
/// removed only when empty, their ancestors. Paths are compared after resolving symlinks in
/// the item's directory, so neither `..` nor a symlink planted in one of these directories
/// leads outside (issue #18).
#[derive(Debug, Clone, Default)]
pub(crate) struct Bounds {
    roots: Vec<PathBuf>,
}

impl Bounds {
    pub(crate) fn new(roots: impl IntoIterator<Item = PathBuf>) -> Bounds {
        let mut out: Vec<PathBuf> = Vec::new();
        for r in roots {
            if !r.is_absolute() || r == Path::new("/") {
                continue;
            }
            // A root that exists is compared resolved; one that does not, as written.
            let r = std::fs::canonicalize(&r).unwrap_or(r);
            if !out.contains(&r) {
                out.push(r);
            }
        }
        Bounds { roots: out }
    }

    /// Why `item` is out of bounds, if it is.
    fn refuse(&self, item: &Item) -> Option<String> {
        let p = Path::new(&item.path);
        if !p.is_absolute() {
            return Some("not an absolute path".into());
        }
        if p.components().any(|c| {
            matches!(
                c,
                std::path::Component::ParentDir | std::path::Component::CurDir
            )
        }) {
            return Some("`.` or `..` in the path".into());
        }
        let (Some(parent), Some(name)) = (p.parent(), p.file_name()) else {
            return Some("not a path convirt creates".into());
        };
        let real = match std::fs::canonicalize(parent) {
            Ok(d) => d.join(name),
            // Its directory is gone: so is the item (`gone`, decided by the caller).
            Err(_) => return None,
        };
        let inside = self
            .roots
            .iter()
            .any(|r| real.starts_with(r) && (real != *r || item.kind == Kind::Dir));
        let ancestor_dir =
            item.kind == Kind::Dir && self.roots.iter().any(|r| r.starts_with(&real));
        if inside || ancestor_dir {
            // (A symlink above the directories themselves, as a home reached through one,
            // is fine: the roots are compared resolved too.)
            None
        } else if real != p {
            Some(format!(
                "a symlink in its directories leads to `{}`",
                real.display()
            ))
        } else {
            Some("outside the directories the run was configured with".into())
        }
    }
}

/// The directories a VM's own record says its run was configured with: its config's and its
/// log's directories, its disks' directories, and the `VM_*_DIR` values it recorded.
pub(crate) fn header_roots(vm: &Vm) -> Vec<PathBuf> {
    let mut roots = Vec::new();
    let parent = |p: &str| Path::new(p).parent().map(Path::to_path_buf);
    if let Some(h) = vm.header() {
        roots.extend(parent(&h.config));
        // `<log_dir>/<image>/<log>`: the log directory is two levels up.
        roots.extend(parent(&h.log).and_then(|d| d.parent().map(Path::to_path_buf)));
        roots.extend(h.disks.iter().filter_map(|d| parent(d)));
    }
    if let Some(r) = &vm.record
        && let Some(img) = r.values.get("image").and_then(|v| v.as_object())
    {
        for k in ["VM_DISKS_DIR", "VM_CONF_DIR", "VM_CACHE_DIR"] {
            if let Some(v) = img.get(k).and_then(|v| v.as_str()) {
                roots.push(PathBuf::from(v));
            }
        }
    }
    roots
}

/// Where `vm remove` may remove this machine's files: the directories of the settings and
/// the site's `VM_*_DIR` variables, and (for a VM of this machine) those its record names.
pub(crate) fn local_bounds(s: &crate::settings::Settings, vm: &Vm) -> Bounds {
    let mut roots = vec![
        s.log_dir.clone(),
        s.work_dir.clone(),
        s.xen_auto_dir.clone(),
        s.vm_conf_dir.clone(),
        s.vm_disks_dir.clone(),
        s.cache_dir.clone(),
    ];
    for k in ["VM_DISKS_DIR", "VM_CONF_DIR", "VM_CACHE_DIR"] {
        if let Some(v) = s.variable(k) {
            roots.push(PathBuf::from(v.to_text()));
        }
    }
    if !vm.remote {
        roots.extend(header_roots(vm));
    }
    Bounds::new(roots)
}

/// A valid `VG/LV` for `lvremove`: LVM's own name rules (letters, digits, `+_.-`, not
/// beginning with `-`, not `.` or `..`), so nothing reaches `lvremove` as an option or as a
/// whole volume group.
pub(crate) fn valid_lvm(path: &str) -> bool {
    let name = |n: &str| {
        !n.is_empty()
            && n.len() <= 127
            && !n.starts_with('-')
            && n != "."
            && n != ".."
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+_.-".contains(&b))
    };
    let rel = path.strip_prefix("/dev/").unwrap_or(path);
    matches!(rel.split_once('/'), Some((vg, lv)) if name(vg) && name(lv) && !lv.contains('/'))
}

/// Whether the item is still the thing the run created.
fn changed_since(item: &Item) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let (Some(dev), Some(ino)) = (item.dev, item.ino) else {
        return None;
    };
    let m = std::fs::symlink_metadata(&item.path).ok()?;
    let reborn = item.born.is_some() && super::born(&m).is_some() && super::born(&m) != item.born;
    (m.dev() != dev || m.ino() != ino || reborn).then(|| {
        if item.kind == Kind::Config {
            "replaced since provisioning (another file, or an editor's new copy, now has this path; remove it by hand if it is the VM's)".to_string()
        } else {
            "replaced since provisioning (another file now has this path)".to_string()
        }
    })
}

/// Decides, then (unless `dry_run`) removes. Items are taken newest first.
pub(crate) fn remove(vm: &Vm, keep_disks: bool, dry_run: bool, bounds: &Bounds) -> Vec<Step> {
    vm.items_with_origin()
        .iter()
        .rev()
        .map(|(item, recorded)| decide(item, *recorded, keep_disks, dry_run, bounds))
        .collect()
}

/// Decides about one item of this machine, then (unless `dry_run`) removes it. `recorded`:
/// the item comes from a finished record, which gives every item but an LVM volume an
/// identity; an unfinished run's journal may name items without one.
fn decide(item: &Item, recorded: bool, keep_disks: bool, dry_run: bool, bounds: &Bounds) -> Step {
    if keep_disks && matches!(item.kind, Kind::Disk | Kind::Lvm) {
        return Step::new(item, "kept", "--keep-disks");
    }
    if item.kind == Kind::Lvm {
        if !valid_lvm(&item.path) {
            return Step::new(item, "kept", "not a valid `VG/LV` logical volume name");
        }
    } else {
        if let Some(why) = bounds.refuse(item) {
            return Step::new(item, "kept", why);
        }
        if !item.exists() {
            return Step::new(item, "gone", "");
        }
        if recorded && (item.dev.is_none() || item.ino.is_none()) {
            return Step::new(
                item,
                "kept",
                "the record gives it no identity (device and inode)",
            );
        }
        if let Some(why) = changed_since(item) {
            return Step::new(item, "kept", why);
        }
    }
    if dry_run {
        let dir = item.kind == Kind::Dir
            || std::fs::symlink_metadata(&item.path).is_ok_and(|m| m.is_dir());
        Step::new(item, "remove", if dir { "if empty" } else { "" })
    } else {
        remove_one(item)
    }
}

/// `decide` for one item known to come from an unfinished run (the remote side's local log).
pub(crate) fn remove_item(item: &Item, keep_disks: bool, dry_run: bool, bounds: &Bounds) -> Step {
    decide(item, false, keep_disks, dry_run, bounds)
}

fn remove_one(item: &Item) -> Step {
    if item.kind == Kind::Lvm {
        let lvremove = match crate::sys::find_tool("lvremove") {
            Ok(p) => p,
            Err(why) => return Step::new(item, "failed", why),
        };
        let lv = item.path.strip_prefix("/dev/").unwrap_or(&item.path);
        return match crate::sys::output_with_timeout(
            std::process::Command::new(lvremove).args(["-f", "--", lv]),
            crate::sys::TOOL_TIMEOUT,
        ) {
            Ok(o) if o.status.success() => Step::new(item, "removed", ""),
            Ok(o) => Step::new(
                item,
                "failed",
                format!(
                    "lvremove: {}",
                    String::from_utf8_lossy(&o.stderr).trim().replace('\n', " ")
                ),
            ),
            Err(e) => Step::new(item, "failed", format!("lvremove: {e}")),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_resolve_symlinks_above_and_refuse_them_below_the_roots() {
        let t = tempfile::tempdir().unwrap();
        let real = t.path().join("real");
        std::fs::create_dir_all(real.join("disks")).unwrap();
        std::fs::create_dir_all(t.path().join("outside")).unwrap();
        // A home reached through a symlink: configured and recorded through it.
        let home = t.path().join("home");
        std::os::unix::fs::symlink(&real, &home).unwrap();
        let b = Bounds::new([home.join("disks")]);
        let item = |p: PathBuf, kind| Item::new(p.display().to_string(), kind);
        assert_eq!(b.refuse(&item(home.join("disks/a.disk"), Kind::Disk)), None);
        // A symlink planted inside a root, leading out.
        std::os::unix::fs::symlink(t.path().join("outside"), real.join("disks/out")).unwrap();
        let why = b
            .refuse(&item(home.join("disks/out/x"), Kind::File))
            .unwrap();
        assert!(why.starts_with("a symlink in its directories"), "{why}");
        // `..`, relative paths, the root itself as a file, its ancestors as directories.
        assert!(
            b.refuse(&item(home.join("disks/../x"), Kind::File))
                .is_some()
        );
        assert!(b.refuse(&Item::new("rel/x", Kind::File)).is_some());
        assert!(b.refuse(&item(home.join("disks"), Kind::File)).is_some());
        assert_eq!(b.refuse(&item(home.join("disks"), Kind::Dir)), None);
        assert_eq!(b.refuse(&item(real.clone(), Kind::Dir)), None);
        assert!(b.refuse(&item(real.clone(), Kind::File)).is_some());
    }

    #[test]
    fn lvm_names_follow_lvm_rules() {
        for ok in ["vg0/lv1", "/dev/vg0/lv1", "v.g+_-/l.v"] {
            assert!(valid_lvm(ok), "{ok}");
        }
        for bad in [
            "vg0", "--all/x", "vg0/-x", "vg0/a/b", "../x", "vg0/..", "vg 0/x", "/x", "",
        ] {
            assert!(!valid_lvm(bad), "{bad}");
        }
    }
}

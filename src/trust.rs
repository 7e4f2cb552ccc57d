//! What convirt runs from an image store must be as trustworthy as the user running it
//! (issue #18, docs/security.md): like OpenSSH's `StrictModes`, a `provision.sh`, custom
//! script or `common/` file is refused when another user could have changed it: writable
//! by group or others, in a directory (up to the store's root) writable by group or others,
//! or owned by a user who is neither root nor the one running convirt.

use crate::diagnostic::Diagnostic;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One untrusted path: what is wrong and the command that fixes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Untrusted {
    pub path: PathBuf,
    pub why: String,
    pub fix: String,
}

impl Untrusted {
    pub(crate) fn diagnostic(&self, run: bool) -> Diagnostic {
        let d = Diagnostic::error(format!(
            "{}`{}` {}: another user could change what convirt runs{}",
            if run {
                "refusing to run from the store: "
            } else {
                ""
            },
            self.path.display(),
            self.why,
            if run { " as you" } else { "" }
        ));
        d.with_hint(format!("run `{}`", self.fix))
    }
}

/// The problem of one path itself (not its directories), if any.
fn check_one(path: &Path, euid: u32) -> Option<Untrusted> {
    // A symlink is as trustworthy as what it points to (and where it sits, checked by the
    // caller for the directories).
    let m = std::fs::metadata(path).ok()?;
    let mode = m.mode() & 0o7777;
    let shown = path.display().to_string();
    if m.uid() != 0 && m.uid() != euid {
        let fix = if euid == 0 {
            format!("chown root {shown}")
        } else {
            format!("chown {euid} {shown}")
        };
        return Some(Untrusted {
            path: path.to_path_buf(),
            why: format!("belongs to another user (uid {})", m.uid()),
            fix,
        });
    }
    if mode & 0o022 != 0 {
        return Some(Untrusted {
            path: path.to_path_buf(),
            why: format!(
                "is writable by {} (mode {mode:04o})",
                match (mode & 0o020 != 0, mode & 0o002 != 0) {
                    (true, true) => "group and others",
                    (true, false) => "its group",
                    _ => "others",
                }
            ),
            fix: format!("chmod go-w {shown}"),
        });
    }
    None
}

/// Checks `path` and every directory from it up to and including `root` (`path` must be
/// inside `root`; outside, only `path` and its own directory are checked).
pub(crate) fn check_path(root: &Path, path: &Path, euid: u32) -> Option<Untrusted> {
    if let Some(u) = check_one(path, euid) {
        return Some(u);
    }
    let mut dir = path.parent();
    while let Some(d) = dir {
        if let Some(u) = check_one(d, euid) {
            return Some(u);
        }
        if d == root || !d.starts_with(root) {
            break;
        }
        dir = d.parent();
    }
    None
}

/// Every file below `dir` (and `dir` itself), each checked up to `root`.
pub(crate) fn check_tree(root: &Path, dir: &Path, euid: u32) -> Vec<Untrusted> {
    let mut out = Vec::new();
    if let Some(u) = check_path(root, dir, euid) {
        out.push(u);
    }
    for e in walkdir::WalkDir::new(dir)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter()
        .flatten()
    {
        if let Some(u) = check_one(e.path(), euid) {
            out.push(u);
        }
    }
    out
}

/// What a provisioning run of `image` executes from the store: the image's `provision.sh`
/// (and the rest of its directory, which the script may source), all of `common/`, and the
/// custom scripts; every problem found, each path once.
pub(crate) fn check_run(
    store_root: &Path,
    image_dir: &Path,
    custom_scripts: &[PathBuf],
    euid: u32,
) -> Vec<Untrusted> {
    let mut out = Vec::new();
    out.extend(check_path(
        store_root,
        &image_dir.join(crate::image::PROVISION_SCRIPT),
        euid,
    ));
    // Anything else of the image, which `provision.sh` may source or run.
    out.extend(check_tree(store_root, image_dir, euid));
    let common = store_root.join("common");
    if common.exists() {
        out.extend(check_tree(store_root, &common, euid));
    }
    for s in custom_scripts {
        out.extend(check_path(store_root, s, euid));
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|u| seen.insert(u.path.clone()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writable_files_and_directories_are_named_with_their_fix() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("store");
        let img = root.join("I");
        std::fs::create_dir_all(&img).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&img, std::fs::Permissions::from_mode(0o755)).unwrap();
        let script = img.join("provision.sh");
        std::fs::write(&script, "#!/bin/bash\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let me = crate::sys::euid();
        assert_eq!(check_run(&root, &img, &[], me), vec![]);
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o777)).unwrap();
        let p = check_run(&root, &img, &[], me);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].fix, format!("chmod go-w {}", script.display()));
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&img, std::fs::Permissions::from_mode(0o775)).unwrap();
        let p = check_run(&root, &img, &[], me);
        assert_eq!(p[0].path, img);
        assert!(p[0].why.contains("its group"), "{p:?}");
        // Another owner (as if `me` were someone else).
        std::fs::set_permissions(&img, std::fs::Permissions::from_mode(0o755)).unwrap();
        if me == 0 {
            let st = std::process::Command::new("chown")
                .args(["65534"])
                .arg(&script)
                .status()
                .unwrap();
            assert!(st.success());
            let p = check_run(&root, &img, &[], me);
            assert!(p[0].why.contains("another user (uid 65534)"), "{p:?}");
            assert_eq!(p[0].fix, format!("chown root {}", script.display()));
        }
    }
}

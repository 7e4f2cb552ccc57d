//! The image tree: one walk of an image directory with one symlink policy, copying with
//! modes, `rename_noreplace`, removal of trees with read-only directories, and hidden
//! temporary directories that hold a lock so an interrupted convirt's leftovers can be told
//! from a running one's. Used by `create-like`, `pack` (and its Debian package), `import`
//! and the provisioning work dir, so an image one of them accepts the others accept too.

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::sys;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

pub(crate) use crate::sys::rename_noreplace;

/// What an entry of an image is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    File,
    /// A symlink, with its target in normal form: relative, `..` only leading (see
    /// [`link_target`]).
    Symlink(PathBuf),
}

/// One entry of an image directory.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// Relative to the image directory; empty for the directory itself.
    pub rel: PathBuf,
    pub abs: PathBuf,
    pub kind: Kind,
    /// Permission bits, including set-uid, set-gid and sticky.
    pub mode: u32,
    pub mtime: i64,
    /// Bytes on disk (holes not counted), for progress bars and space checks.
    pub stored: u64,
}

/// Walks an image directory in name order, refusing what an image may not hold: symlinks
/// that leave it (or pass through another symlink), devices, FIFOs and sockets. Every
/// problem is reported, not just the first. `skip` leaves out entries (and whole
/// directories) by their relative path.
pub(crate) fn walk(dir: &Path, skip: &dyn Fn(&Path) -> bool) -> Result<Vec<Entry>, Diagnostics> {
    let canon = dir
        .canonicalize()
        .map_err(|e| Diagnostic::error(format!("cannot read `{}`: {e}", dir.display())))?;
    let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut out = Vec::new();
    let mut problems = Diagnostics::default();
    let mut it = walkdir::WalkDir::new(dir)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter();
    while let Some(entry) = it.next() {
        let entry = entry.map_err(|e| {
            Diagnostic::error(format!("cannot read the image `{}`: {e}", dir.display()))
                .with_hint("check the permissions of the image directory")
        })?;
        let rel = entry
            .path()
            .strip_prefix(dir)
            .unwrap_or(entry.path())
            .to_path_buf();
        if !rel.as_os_str().is_empty() && skip(&rel) {
            if entry.file_type().is_dir() {
                it.skip_current_dir();
            }
            continue;
        }
        let meta = if rel.as_os_str().is_empty() {
            fs::metadata(entry.path())
        } else {
            fs::symlink_metadata(entry.path())
        }
        .map_err(|e| Diagnostic::error(format!("cannot read `{}`: {e}", entry.path().display())))?;
        let ft = meta.file_type();
        let shown = entry.path().display().to_string();
        let kind = if ft.is_dir() {
            Kind::Dir
        } else if ft.is_file() {
            Kind::File
        } else if ft.is_symlink() {
            let link = fs::read_link(entry.path())
                .map_err(|e| Diagnostic::error(format!("cannot read link `{shown}`: {e}")))?;
            match link_target(&rel, &link, dir, &canon, &absolute) {
                Ok(t) => Kind::Symlink(t),
                Err(why) => {
                    problems.push(
                        Diagnostic::error(format!(
                            "`{shown}` is a symlink to `{}`, {why}",
                            link.display()
                        ))
                        .with_hint("copy the file into the image, or point the link inside it"),
                    );
                    continue;
                }
            }
        } else {
            let what = if ft.is_block_device() || ft.is_char_device() {
                "a device"
            } else if ft.is_fifo() {
                "a FIFO"
            } else if ft.is_socket() {
                "a socket"
            } else {
                "a special file"
            };
            problems.push(
                Diagnostic::error(format!("`{shown}` is {what}"))
                    .with_hint("an image holds only files, directories and symlinks inside it; remove it from the source image"),
            );
            continue;
        };
        out.push(Entry {
            abs: entry.path().to_path_buf(),
            rel,
            stored: if ft.is_file() {
                meta.len().min(meta.blocks() * 512)
            } else {
                0
            },
            kind,
            mode: meta.mode() & 0o7777,
            mtime: meta.mtime(),
        });
    }
    if problems.has_errors() {
        let mut all = Diagnostics::from(Diagnostic::error(format!(
            "image `{}` holds what an image may not",
            dir.display()
        )));
        all.extend(problems);
        return Err(all);
    }
    Ok(out)
}

/// The target a symlink at `rel` (inside the image at `dir`) pointing to `link` gets in a
/// copy or an archive, or why it is refused. The one symlink policy of convirt:
/// - a relative target already in normal form (`..` only leading, never above the image) is
///   kept as written;
/// - any other target that stays inside the image (`sub/../x`, `./x`, an absolute path into
///   the image) is rewritten to its normal form, relative to the link;
/// - a target leaving the image, or passing through a component that is not a directory of
///   the image (a symlink, a missing name) before a `..`, is refused: its meaning could not
///   be kept.
pub(crate) fn link_target(
    rel: &Path,
    link: &Path,
    dir: &Path,
    canon: &Path,
    absolute: &Path,
) -> Result<PathBuf, String> {
    if link.as_os_str().is_empty() {
        return Err("an empty target".into());
    }
    let parent = rel.parent().unwrap_or(Path::new(""));
    let outside = || "outside the image".to_string();
    let inside = if link.is_absolute() {
        let stripped = link
            .strip_prefix(canon)
            .or_else(|_| link.strip_prefix(absolute))
            .map_err(|_| outside())?;
        resolve(stripped, dir)?
    } else {
        resolve(&parent.join(link), dir)?
    };
    // A link through another link can leave the image even when the text stays inside:
    // check where an existing target really is.
    if let Ok(real) = dir.join(rel).canonicalize() {
        if !real.starts_with(canon) {
            return Err(outside());
        }
    }
    if let Some(text) = link.to_str() {
        if !link.is_absolute() && normal_form(rel, text) {
            return Ok(link.to_path_buf());
        }
    }
    // The shortest path from the link's directory to the target.
    let from: Vec<_> = parent.components().collect();
    let to: Vec<_> = inside.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for c in &to[common..] {
        out.push(c);
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    Ok(out)
}

/// Resolves `.` and `..` in a path relative to the image; each name a `..` climbs back out
/// of must be a real directory of the image, so the lexical answer is the kernel's.
fn resolve(p: &Path, dir: &Path) -> Result<PathBuf, String> {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(s),
            Component::CurDir => {}
            Component::ParentDir => {
                let here: PathBuf = parts.iter().collect();
                if parts.pop().is_none() {
                    return Err("outside the image".into());
                }
                match fs::symlink_metadata(dir.join(&here)) {
                    Ok(m) if m.is_dir() => {}
                    _ => {
                        return Err(format!(
                            "which passes through `{}`, not a directory of the image",
                            here.display()
                        ));
                    }
                }
            }
            Component::RootDir | Component::Prefix(_) => return Err("outside the image".into()),
        }
    }
    Ok(parts.iter().collect())
}

/// Whether a relative target is in the form archives carry: `..` only leading and never
/// above the image, no `.` or empty components.
pub(crate) fn normal_form(rel: &Path, target: &str) -> bool {
    let mut depth = rel.components().count().saturating_sub(1);
    let mut named = false;
    for c in target.split('/') {
        match c {
            "" | "." => return false,
            ".." if named => return false,
            ".." => {
                if depth == 0 {
                    return false;
                }
                depth -= 1;
            }
            _ => named = true,
        }
    }
    true
}

/// Copies the walked `entries` of `src` into the existing directory `dst`: files with their
/// modes, symlinks with their normal-form targets. Directory modes are set afterwards with
/// [`set_dir_modes`], so a read-only source directory can still be filled.
pub(crate) fn copy(src: &Path, dst: &Path, entries: &[Entry]) -> Result<(), Diagnostic> {
    for item in entries {
        if item.rel.as_os_str().is_empty() {
            continue;
        }
        let from = src.join(&item.rel);
        let to = dst.join(&item.rel);
        let fail = |e: io::Error| {
            let d = Diagnostic::error(format!(
                "cannot copy `{}` to `{}`: {e}",
                from.display(),
                to.display()
            ));
            if sys::is_full(&e) {
                d.with_hint(format!(
                    "{}; the partial copy is removed",
                    sys::full_hint(&e, dst)
                ))
            } else {
                d
            }
        };
        match &item.kind {
            Kind::Dir => fs::create_dir(&to).map_err(fail)?,
            Kind::File => {
                fs::copy(&from, &to).map_err(fail)?;
                fs::set_permissions(&to, fs::Permissions::from_mode(item.mode)).map_err(fail)?;
            }
            Kind::Symlink(target) => std::os::unix::fs::symlink(target, &to).map_err(fail)?,
        }
    }
    Ok(())
}

/// Gives the copied directories their modes (with `extra` bits added), deepest first.
pub(crate) fn set_dir_modes(dst: &Path, entries: &[Entry], extra: u32) -> Result<(), Diagnostic> {
    for item in entries.iter().rev() {
        if let Kind::Dir = item.kind {
            let p = dst.join(&item.rel);
            fs::set_permissions(&p, fs::Permissions::from_mode(item.mode | extra)).map_err(
                |e| Diagnostic::error(format!("cannot set the mode of `{}`: {e}", p.display())),
            )?;
        }
    }
    Ok(())
}

/// Copies a directory tree for a private work dir, skipping dot names (as ConVirt did),
/// with the same symlink policy as every other copy of an image.
pub(crate) fn copy_plain(src: &Path, dst: &Path) -> io::Result<()> {
    let hidden = |rel: &Path| {
        rel.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
    };
    let entries = walk(src, &hidden).map_err(|d| io::Error::other(messages(&d)))?;
    fs::create_dir_all(dst)?;
    copy(src, dst, &entries).map_err(|d| io::Error::other(d.message))?;
    set_dir_modes(dst, &entries, 0).map_err(|d| io::Error::other(d.message))
}

fn messages(d: &Diagnostics) -> String {
    d.0.iter()
        .map(|x| x.message.clone())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Removes a tree even where a directory lost its write bit.
pub(crate) fn remove(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(_) => {
            for e in walkdir::WalkDir::new(path).into_iter().flatten() {
                if e.file_type().is_dir() {
                    let _ = fs::set_permissions(e.path(), fs::Permissions::from_mode(0o700));
                }
            }
            fs::remove_dir_all(path)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Hidden temporary directories and their leftovers

/// Prefixes of what convirt leaves, hidden, in the store while it works.
pub(crate) const NEW_PREFIX: &str = ".convirt-new-";
pub(crate) const IMPORT_PREFIX: &str = ".convirt-import-";
/// Temporary files of atomic writes (`atomic::write`).
pub(crate) const TMP_FILE_PREFIX: &str = ".convirt-tmp-";
/// An image put aside by `import --force`: `<import dir>-old-<image>`.
pub(crate) const ASIDE_INFIX: &str = "-old-";

/// A hidden temporary directory holding an exclusive `flock` for as long as it lives: the
/// mark that it is in use. Removed on drop unless [`TempDir::keep`] was called.
pub(crate) struct TempDir {
    path: Option<PathBuf>,
    _lock: File,
}

impl TempDir {
    /// Creates `<parent>/<prefix><random>` (mode 0700) and locks it. A sweep by another
    /// convirt may catch it in the instant between the two (it holds the lock while it
    /// removes): then the directory is gone or locked, and a fresh name is tried.
    pub(crate) fn new(parent: &Path, prefix: &str) -> io::Result<TempDir> {
        let mut last = None;
        for _ in 0..5 {
            let path = tempfile::Builder::new()
                .prefix(prefix)
                .tempdir_in(parent)?
                .keep();
            match lock_existing(&path) {
                Ok(f) => {
                    return Ok(TempDir {
                        path: Some(path),
                        _lock: f,
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("cannot lock a temporary directory")))
    }

    pub(crate) fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(""))
    }

    /// Removes the directory now, saying whether that worked.
    pub(crate) fn close(mut self) -> io::Result<()> {
        match self.path.take() {
            Some(p) => remove(&p),
            None => Ok(()),
        }
    }

    /// Forgets the directory (it was renamed into place); the lock stays until exit.
    pub(crate) fn keep(mut self) {
        self.path = None;
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = remove(&p);
        }
    }
}

/// Opens and locks `path`, checking it is still the same directory afterwards.
fn lock_existing(path: &Path) -> io::Result<File> {
    let f = File::open(path)?;
    if !crate::lock::try_exclusive(&f)? {
        return Err(io::Error::other("a fresh temporary directory is locked"));
    }
    let now = fs::symlink_metadata(path)?;
    let held = f.metadata()?;
    if (now.dev(), now.ino()) != (held.dev(), held.ino()) {
        return Err(io::Error::other("a fresh temporary directory was removed"));
    }
    Ok(f)
}

/// The lock of `path` (a directory or a file) when its owner is gone; `None` while a
/// running convirt holds it, or when it cannot be opened (someone else's: not ours to judge).
/// The caller keeps the lock while it removes the thing, so no new owner can slip in.
fn take_if_free(path: &Path) -> Option<File> {
    let f = File::open(path).ok()?;
    crate::lock::try_exclusive(&f).ok()?.then_some(f)
}

/// Cleans the store of what interrupted convirt runs left behind: `.convirt-new-*` and
/// `.convirt-import-*` directories and `.convirt-tmp-*` files whose owner is gone (their
/// lock is free). An image that an interrupted `import --force` had put aside is moved back
/// when its place is empty, and otherwise kept and named. What is still in use is left alone. Returns one warning per
/// thing done (or that could not be done). `is_image_name` is the store's naming rule, which
/// an aside's image name must pass before it is moved back; it is passed in so that this
/// module stays below `store` (no import cycle).
pub(crate) fn sweep_store(root: &Path, is_image_name: &dyn Fn(&str) -> bool) -> Diagnostics {
    let mut out = Diagnostics::default();
    let Ok(rd) = fs::read_dir(root) else {
        return out;
    };
    let mut names: Vec<String> = rd
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| {
            n.starts_with(NEW_PREFIX)
                || n.starts_with(IMPORT_PREFIX)
                || n.starts_with(TMP_FILE_PREFIX)
        })
        .collect();
    names.sort();
    // Asides first, while their import directory still tells whether the owner lives.
    names.sort_by_key(|n| !n.contains(ASIDE_INFIX));
    for name in names {
        let path = root.join(&name);
        if let Some((owner, image)) = name
            .strip_prefix(IMPORT_PREFIX)
            .and_then(|_| name.split_once(ASIDE_INFIX))
        {
            let owner = root.join(owner);
            let _owner_lock = if owner.exists() {
                match take_if_free(&owner) {
                    Some(l) => Some(l),
                    None => continue,
                }
            } else {
                None
            };
            let dest = root.join(image);
            if is_image_name(image) && dest.symlink_metadata().is_err() {
                match sys::rename_noreplace(&path, &dest) {
                    Ok(()) => out.push(Diagnostic::warning(format!(
                        "put image `{image}` back from `{}`, where an interrupted `image import --force` had left it",
                        path.display()
                    ))),
                    Err(e) => out.push(Diagnostic::warning(format!(
                        "image `{image}` is at `{}`, left by an interrupted `image import --force`, and could not be moved back: {e}",
                        path.display()
                    ))),
                }
                continue;
            }
            // Its place is taken (by the new image, or by one a failed rollback left): the
            // old image may still be wanted, so it is kept and named, never removed here.
            out.push(
                Diagnostic::warning(format!(
                    "an old copy of image `{image}` is kept at `{}`, left by an interrupted or failed `image import --force`",
                    path.display()
                ))
                .with_hint(format!(
                    "check `{}`, then remove the old copy (`rm -r`) or move it back",
                    dest.display()
                )),
            );
            continue;
        }
        let Some(_lock) = take_if_free(&path) else {
            continue;
        };
        let result = if path.is_dir() {
            remove(&path)
        } else {
            fs::remove_file(&path)
        };
        report_removal(&mut out, &path, result);
    }
    out
}

/// Private work dirs of VM `vm` (`<work_root>/<vm>.XXXXXX`) left by provisioning runs that
/// died (SIGKILL, a crash). Only sound while the caller holds the VM's provisioning lock:
/// then no live run can own one. Removes each and returns what was removed (or could not be).
pub(crate) fn sweep_work_dirs(work_root: &Path, vm: &str) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(work_root) else {
        return out;
    };
    let mut dirs: Vec<PathBuf> = rd
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            // tempfile's suffix is six letters or digits: `web.1.abc123` is VM `web.1`'s.
            name.strip_prefix(vm)
                .and_then(|r| r.strip_prefix('.'))
                .is_some_and(|r| r.len() == 6 && r.bytes().all(|b| b.is_ascii_alphanumeric()))
        })
        .map(|e| e.path())
        .collect();
    dirs.sort();
    for d in dirs {
        out.push(match remove(&d) {
            Ok(()) => format!(
                "removed the work directory {} of an interrupted run",
                d.display()
            ),
            Err(e) => format!(
                "could not remove the work directory {} of an interrupted run: {e}",
                d.display()
            ),
        });
    }
    out
}

fn report_removal(out: &mut Diagnostics, path: &Path, r: io::Result<()>) {
    match r {
        Ok(()) => out.push(Diagnostic::warning(format!(
            "removed `{}`, left behind by an interrupted convirt",
            path.display()
        ))),
        // Someone else's store (read by a normal user): leave it to its owner.
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {}
        Err(e) => out.push(Diagnostic::warning(format!(
            "cannot remove `{}`, left behind by an interrupted convirt: {e}",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn image_name(n: &str) -> bool {
        crate::store::check_image_name(n).is_ok()
    }

    fn target(rel: &str, link: &str, dir: &Path) -> Result<String, String> {
        let canon = dir.canonicalize().unwrap();
        link_target(Path::new(rel), Path::new(link), dir, &canon, dir)
            .map(|p| p.display().to_string())
    }

    #[test]
    fn the_symlink_policy() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        fs::create_dir_all(dir.join("sub/deep")).unwrap();
        fs::write(dir.join("x"), "x").unwrap();
        symlink(".", dir.join("dot")).unwrap();
        let abs = dir.join("x").display().to_string();
        for (rel, link, want) in [
            ("a", "x", "x"),
            ("sub/a", "../x", "../x"),
            ("a", "sub/../x", "x"),
            ("a", "./x", "x"),
            ("sub/deep/a", "../../sub/deep/../x", "../x"),
            ("sub/deep/a", "../../x", "../../x"),
            ("sub/a", "deep/../../x", "../x"),
            ("sub/a", "../sub/deep", "../sub/deep"),
            ("a", ".", "."),
            ("a", abs.as_str(), "x"),
            ("sub/a", abs.as_str(), "../x"),
        ] {
            assert_eq!(
                target(rel, link, dir).as_deref(),
                Ok(want),
                "{rel} -> {link}"
            );
        }
        for (rel, link) in [
            ("a", "/etc/passwd"),
            ("a", ".."),
            ("sub/a", "../../x"),
            ("a", "dot/../x"),
            ("a", "missing/../x"),
            ("a", ""),
        ] {
            assert!(target(rel, link, dir).is_err(), "{rel} -> {link}");
        }
    }

    #[test]
    fn normal_form_is_what_pack_accepts() {
        assert!(normal_form(Path::new("d/a"), "../b"));
        assert!(normal_form(Path::new("a"), "b/c"));
        assert!(!normal_form(Path::new("a"), "b/../c"));
        assert!(!normal_form(Path::new("a"), "../b"));
        assert!(!normal_form(Path::new("a"), "./b"));
    }

    #[test]
    fn a_locked_temp_dir_survives_the_sweep_and_a_free_one_goes() {
        let d = tempfile::tempdir().unwrap();
        let live = TempDir::new(d.path(), NEW_PREFIX).unwrap();
        let dead = d.path().join(".convirt-new-X-dead");
        fs::create_dir(&dead).unwrap();
        fs::write(dead.join("f"), "f").unwrap();
        let w = sweep_store(d.path(), &image_name);
        assert!(live.path().is_dir());
        assert!(!dead.exists());
        assert_eq!(w.0.len(), 1, "{w:?}");
        assert!(w.0[0].message.contains("removed"));
        let p = live.path().to_path_buf();
        drop(live);
        assert!(!p.exists());
    }

    #[test]
    fn only_this_vms_work_dirs_are_swept() {
        let d = tempfile::tempdir().unwrap();
        for n in [
            "web.abc123",
            "web.1.xyz789",
            "web.toolong7",
            "locks",
            "webx.abc123",
        ] {
            fs::create_dir(d.path().join(n)).unwrap();
        }
        let done = sweep_work_dirs(d.path(), "web");
        assert_eq!(done.len(), 1, "{done:?}");
        assert!(done[0].contains("web.abc123"));
        let mut left: Vec<String> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            ["locks", "web.1.xyz789", "web.toolong7", "webx.abc123"]
        );
    }

    #[test]
    fn an_image_put_aside_by_a_dead_import_comes_back() {
        let d = tempfile::tempdir().unwrap();
        let owner = d.path().join(".convirt-import-1-2");
        fs::create_dir(&owner).unwrap();
        let aside = d.path().join(".convirt-import-1-2-old-Img");
        fs::create_dir(&aside).unwrap();
        fs::write(aside.join("image.conf"), "a = 1\n").unwrap();
        let w = sweep_store(d.path(), &image_name);
        assert_eq!(
            fs::read_to_string(d.path().join("Img/image.conf")).unwrap(),
            "a = 1\n"
        );
        assert!(!aside.exists() && !owner.exists());
        assert_eq!(w.0.len(), 2, "{w:?}");
    }
}

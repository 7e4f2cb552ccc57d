//! `image create-like` (spec §9.3): a new image as a full copy of another, with `image_name`
//! and the requested values changed, built under a hidden temporary name inside the store and
//! renamed into place, so it appears whole or not at all and the source is never touched.

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::edit::{self, Change, FileEdit};
use crate::eval::Host;
use crate::image::{self, Image};
use crate::settings::Settings;
use crate::store::{self, Store};
use crate::value::Value;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// What `create_like` made.
#[derive(Debug)]
pub struct Created {
    pub name: String,
    pub dir: PathBuf,
    /// The edits of image.conf and vm_conf.template.
    pub files: Vec<FileEdit>,
    /// The new title, when `--title` was given.
    pub title: Option<String>,
}

/// One entry of the source image, checked before anything is written.
#[derive(Debug)]
struct Item {
    /// Relative to the image directory; empty for the directory itself.
    rel: PathBuf,
    mode: u32,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Dir,
    File,
    /// A symlink, with the target to give the copy.
    Link(PathBuf),
}

/// Creates image `new` from image `src`: copy, then `image_name` in the VM template (when the
/// template assigns it), then `edits`, then the description's title.
pub fn create_like(
    store: &Store,
    src: &str,
    new: &str,
    edits: &edit::Request,
    title: Option<&str>,
    settings: &Settings,
    host: &Host,
) -> Result<Created, Diagnostics> {
    store::check_image_name(new).map_err(Diagnostic::error)?;
    let src_dir = source_dir(store, src)?;
    if store.conf.excludes.iter().any(|x| x == new) {
        return Err(Diagnostic::error(format!(
            "`{new}` is not an image name in this store: `{}` excludes it",
            store::STORE_CONF
        ))
        .with_hint("choose another name")
        .into());
    }
    let target = store.root.join(new);
    if target.symlink_metadata().is_ok() {
        return Err(Diagnostic::error(format!(
            "image `{new}` already exists (`{}`)",
            target.display()
        ))
        .with_hint("choose another name, or change that image with `convirt image edit`")
        .into());
    }
    if let Some(t) = title {
        edit::check_title(t).map_err(Diagnostic::error)?;
    }
    if let Err(d) = Image::load(src, &src_dir, host) {
        let mut all = Diagnostics::from(
            Diagnostic::error(format!(
                "image `{src}` does not load, so it cannot be copied"
            ))
            .with_hint("fix the problems below first (`convirt image validate` lists them)"),
        );
        all.extend(d);
        return Err(all);
    }
    let items = scan(&src_dir)?;

    let tmp = tempfile::Builder::new()
        .prefix(&format!(".convirt-new-{new}-"))
        .tempdir_in(&store.root)
        .map_err(|e| {
            Diagnostic::error(format!(
                "cannot create a temporary directory in `{}`: {e}",
                store.root.display()
            ))
        })?;
    let work = tmp.path();
    copy(&src_dir, work, &items)?;

    let mut req = edits.clone();
    let user_names_it = req.vm.iter().any(|c| c.key() == "image_name");
    if !user_names_it && template_assigns(work, "image_name", host) {
        req.vm.insert(
            0,
            Change::Set("image_name".into(), Value::Str(new.to_string())),
        );
    }
    let files = edit::plan_image(work, &target, &req, settings, host)?;
    edit::write_image(work, &files)?;
    if let Some(t) = title {
        write_title(work, t)?;
    }
    if let Err(d) = Image::load(new, work, host) {
        let mut all = Diagnostics::from(Diagnostic::error(format!(
            "the new image `{new}` would not load, so it was not created"
        )));
        all.extend(d);
        return Err(all);
    }
    set_dir_modes(work, &items, None)?;
    rename_noreplace(work, &target).map_err(|e| {
        // Let the temporary directory be removed even where the source had read-only ones.
        let _ = set_dir_modes(work, &items, Some(0o700));
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            Diagnostic::error(format!("image `{new}` already exists (made meanwhile)"))
        } else {
            Diagnostic::error(format!(
                "cannot move the new image into `{}`: {e}",
                target.display()
            ))
        }
    })?;
    // Renamed: there is nothing left at the temporary path to clean up.
    let _ = tmp.keep();
    if let Ok(d) = std::fs::File::open(&store.root) {
        let _ = d.sync_all();
    }
    Ok(Created {
        name: new.to_string(),
        dir: target,
        files,
        title: title.map(|t| t.trim().to_string()),
    })
}

/// The source image's directory. The store's `example` skeleton (spec §1.2) is not listed as
/// an image, but new images start from it: an excluded directory that holds an image.conf is
/// accepted as a source too.
fn source_dir(store: &Store, src: &str) -> Result<PathBuf, Diagnostic> {
    match store.image_dir(src) {
        Ok(dir) => Ok(dir),
        Err(e) => {
            let dir = store.root.join(src);
            let excluded = store.conf.excludes.iter().any(|x| x == src);
            if excluded
                && store::check_image_name(src).is_ok()
                && dir.join(image::IMAGE_CONF).is_file()
            {
                Ok(dir)
            } else {
                Err(e)
            }
        }
    }
}

fn template_assigns(dir: &Path, key: &str, host: &Host) -> bool {
    let path = dir.join(image::VM_TEMPLATE);
    std::fs::read(&path)
        .ok()
        .and_then(|b| edit::Draft::from_bytes(&path, b, host).ok())
        .is_some_and(|d| d.assigns(key))
}

/// Lists the source image, refusing what an image may not hold: symlinks that leave it,
/// devices, FIFOs and sockets. Every problem is reported.
fn scan(src: &Path) -> Result<Vec<Item>, Diagnostics> {
    let canon = src
        .canonicalize()
        .map_err(|e| Diagnostic::error(format!("cannot read `{}`: {e}", src.display())))?;
    let absolute = std::path::absolute(src).unwrap_or_else(|_| src.to_path_buf());
    let mut items = Vec::new();
    let mut problems = Diagnostics::default();
    for entry in walkdir::WalkDir::new(src)
        .follow_links(false)
        .sort_by_file_name()
    {
        let entry = entry.map_err(|e| {
            Diagnostic::error(format!("cannot read the image `{}`: {e}", src.display()))
        })?;
        let rel = entry
            .path()
            .strip_prefix(src)
            .unwrap_or(entry.path())
            .to_path_buf();
        let meta = if rel.as_os_str().is_empty() {
            std::fs::metadata(entry.path())
        } else {
            std::fs::symlink_metadata(entry.path())
        }
        .map_err(|e| Diagnostic::error(format!("cannot read `{}`: {e}", entry.path().display())))?;
        let mode = meta.permissions().mode() & 0o7777;
        let ft = meta.file_type();
        let shown = entry.path().display().to_string();
        let kind = if ft.is_dir() {
            Kind::Dir
        } else if ft.is_file() {
            Kind::File
        } else if ft.is_symlink() {
            let link = std::fs::read_link(entry.path())
                .map_err(|e| Diagnostic::error(format!("cannot read link `{shown}`: {e}")))?;
            match link_inside(&rel, &link, entry.path(), &canon, &absolute) {
                Some(t) => Kind::Link(t),
                None => {
                    problems.push(
                        Diagnostic::error(format!(
                            "`{shown}` is a symlink to `{}`, outside the image",
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
        items.push(Item { rel, mode, kind });
    }
    if problems.has_errors() {
        let mut all = Diagnostics::from(Diagnostic::error(format!(
            "cannot copy image `{}`",
            src.display()
        )));
        all.extend(problems);
        return Err(all);
    }
    Ok(items)
}

/// The target for the copy of a symlink at `rel` (inside the image) pointing to `link`, or
/// `None` when it leaves the image. Relative targets are kept as written; an absolute target
/// inside the source image becomes relative so the copy points into the copy.
fn link_inside(
    rel: &Path,
    link: &Path,
    path: &Path,
    canon: &Path,
    absolute: &Path,
) -> Option<PathBuf> {
    let parent = rel.parent().unwrap_or(Path::new(""));
    let (inside, keep) = if link.is_absolute() {
        let stripped = link
            .strip_prefix(canon)
            .or_else(|_| link.strip_prefix(absolute))
            .ok()?;
        (normalize(stripped)?, false)
    } else {
        (normalize(&parent.join(link))?, true)
    };
    // A link through another link (`sub -> .`, then `sub/../x`) can leave the image even
    // when the text stays inside: check where an existing target really is.
    if let Ok(real) = path.canonicalize() {
        if !real.starts_with(canon) {
            return None;
        }
    }
    if keep {
        return Some(link.to_path_buf());
    }
    let mut out = PathBuf::new();
    for _ in parent.components() {
        out.push("..");
    }
    out.push(inside);
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    Some(out)
}

/// Resolves `.` and `..` without touching the disk; `None` when it climbs out.
fn normalize(p: &Path) -> Option<PathBuf> {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(s),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.iter().collect())
}

fn copy(src: &Path, dst: &Path, items: &[Item]) -> Result<(), Diagnostic> {
    for item in items {
        if item.rel.as_os_str().is_empty() {
            continue;
        }
        let from = src.join(&item.rel);
        let to = dst.join(&item.rel);
        let fail = |e: std::io::Error| {
            Diagnostic::error(format!(
                "cannot copy `{}` to `{}`: {e}",
                from.display(),
                to.display()
            ))
        };
        match &item.kind {
            Kind::Dir => std::fs::create_dir(&to).map_err(fail)?,
            Kind::File => {
                std::fs::copy(&from, &to).map_err(fail)?;
                std::fs::set_permissions(&to, std::fs::Permissions::from_mode(item.mode))
                    .map_err(fail)?;
            }
            Kind::Link(target) => std::os::unix::fs::symlink(target, &to).map_err(fail)?,
        }
    }
    Ok(())
}

/// Gives the directories their modes (or `extra` bits added) last, deepest first, so a
/// read-only directory of the source could still be filled and edited.
fn set_dir_modes(dst: &Path, items: &[Item], extra: Option<u32>) -> Result<(), Diagnostic> {
    for item in items.iter().rev() {
        if let Kind::Dir = item.kind {
            let p = dst.join(&item.rel);
            let mode = item.mode | extra.unwrap_or(0);
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).map_err(|e| {
                Diagnostic::error(format!("cannot set the mode of `{}`: {e}", p.display()))
            })?;
        }
    }
    Ok(())
}

fn write_title(dir: &Path, title: &str) -> Result<(), Diagnostic> {
    let path = dir.join(image::DESCRIPTION);
    let fail = |e: std::io::Error| {
        Diagnostic::error(format!("cannot write `{}`: {e}", image::DESCRIPTION))
    };
    let (html, mode) = match std::fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(Diagnostic::error(format!(
                "`{}` is a symlink; convirt does not rewrite a linked description",
                image::DESCRIPTION
            ))
            .with_hint("drop `--title` and edit the description by hand"));
        }
        Ok(m) => (
            std::fs::read(&path).map_err(fail)?,
            m.permissions().mode() & 0o7777,
        ),
        Err(_) => (b"<body></body>\n".to_vec(), 0o644),
    };
    let new = edit::set_description_title(&html, title);
    crate::atomic::write(&path, &new, mode, true).map_err(fail)
}

/// `rename` that fails with `AlreadyExists` instead of replacing an (empty) directory.
fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    crate::sys::rename_noreplace(from, to)
}

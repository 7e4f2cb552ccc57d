//! `image create-like` (spec §9.3): a new image as a full copy of another, with `image_name`
//! and the requested values changed, built under a hidden temporary name inside the store and
//! renamed into place, so it appears whole or not at all and the source is never touched.

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::edit::{self, Change, FileEdit};
use crate::host::Host;
use crate::image::{self, Image};
use crate::settings::Settings;
use crate::store::{self, Store};
use crate::value::Value;
use crate::{interrupt, tree};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What `create_like` made.
#[derive(Debug)]
pub(crate) struct Created {
    pub name: String,
    pub dir: PathBuf,
    /// The edits of image.conf and vm_conf.template.
    pub files: Vec<FileEdit>,
    /// The new title, when `--title` was given.
    pub title: Option<String>,
}

/// Creates image `new` from image `src`: copy, then `image_name` in the VM template (when the
/// template assigns it), then `edits`, then the description's title.
pub(crate) fn create_like(
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
    let items = tree::walk(&src_dir, &|_| false)?;
    check_space(&store.root, &items)?;

    let tmp =
        tree::TempDir::new(&store.root, &format!("{}{new}-", tree::NEW_PREFIX)).map_err(|e| {
            Diagnostic::error(format!(
                "cannot create a temporary directory in `{}`: {e}",
                store.root.display()
            ))
        })?;
    let work_buf = tmp.path().to_path_buf();
    let work = work_buf.as_path();
    let result = (|| -> Result<Vec<FileEdit>, Diagnostics> {
        tree::copy(&src_dir, work, &items)?;
        interrupt::check("image create-like")?;

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
        interrupt::check("image create-like")?;
        // On disk before it appears in the store.
        crate::sys::sync_tree(work).map_err(|e| {
            Diagnostic::error(format!("cannot flush `{}` to disk: {e}", work.display()))
        })?;
        tree::set_dir_modes(work, &items, 0)?;
        tree::rename_noreplace(work, &target).map_err(|e| {
            // Let the temporary directory be removed even where the source had read-only ones.
            let _ = tree::set_dir_modes(work, &items, 0o700);
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Diagnostic::error(format!("image `{new}` already exists (made meanwhile)"))
            } else {
                Diagnostic::error(format!(
                    "cannot move the new image into `{}`: {e}",
                    target.display()
                ))
            }
        })?;
        Ok(files)
    })();
    let files = match result {
        Ok(files) => files,
        Err(mut d) => {
            // The error must not claim a clean store when the partial copy stays.
            if let Err(e) = tmp.close() {
                d.push(
                    Diagnostic::error(format!(
                        "the partial copy could not be removed and is left at `{}`: {e}",
                        work.display()
                    ))
                    .with_hint("the next convirt command that opens the store removes it"),
                );
            }
            return Err(d);
        }
    };
    // Renamed: there is nothing left at the temporary path to clean up.
    tmp.keep();
    let _ = crate::sys::sync_dir(&store.root);
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

/// Refuses before copying when the store's file system cannot hold the copy.
fn check_space(root: &Path, items: &[tree::Entry]) -> Result<(), Diagnostic> {
    let need: u64 = items.iter().map(|i| i.stored).sum();
    match crate::sys::free_bytes(root) {
        Ok(free) if free < need => Err(Diagnostic::error(format!(
            "the store `{}` has {free} bytes free; the copy needs {need}",
            root.display()
        ))
        .with_hint("free space in the store; nothing was written")),
        _ => Ok(()),
    }
}

//! The edit of an image's two config files: planned together, written atomically together.

use super::{Change, Draft, FileEdit};
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::host::Host;
use crate::image;
use crate::resolve;
use crate::settings::Settings;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The changes asked of an image: `--set`/`--unset` for image.conf, `--vm-set`/`--vm-unset`
/// for vm_conf.template.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub image: Vec<Change>,
    pub vm: Vec<Change>,
    /// Computed keys may be set to a literal.
    pub force: bool,
}

/// Plans the edit of an image's two files in `dir` (messages name them under `shown`). Both
/// files must load before and after; nothing is written.
pub fn plan_image(
    dir: &Path,
    shown: &Path,
    req: &Request,
    settings: &Settings,
    host: &Host,
) -> Result<Vec<FileEdit>, Diagnostics> {
    let mut drafts = Vec::new();
    let mut broken = Diagnostics::default();
    for file in [image::IMAGE_CONF, image::VM_TEMPLATE] {
        let path = shown.join(file);
        let bytes = match std::fs::read(dir.join(file)) {
            Ok(b) => b,
            Err(e) => {
                broken.push(Diagnostic::error(format!("cannot read `{file}`: {e}")).in_file(&path));
                continue;
            }
        };
        match Draft::from_bytes(&path, bytes, host) {
            Ok(d) => drafts.push((file, d)),
            Err(d) => broken.extend(d),
        }
    }
    if broken.has_errors() {
        let mut all = Diagnostics::from(
            Diagnostic::error(format!(
                "the image in `{}` does not load, so it cannot be edited",
                shown.display()
            ))
            .with_hint("fix the problems below first (`convirt image validate` lists them)"),
        );
        all.extend(broken);
        return Err(all);
    }
    let mut diags = Diagnostics::default();
    let mut edits = Vec::new();
    for (file, draft) in drafts {
        let changes = if file == image::IMAGE_CONF {
            &req.image
        } else {
            &req.vm
        };
        let computed = resolve::computed_keys(&draft.conf, settings);
        match draft.apply(file, changes, &computed, req.force, host) {
            Ok(e) => edits.push(e),
            Err(d) => diags.extend(d),
        }
    }
    if diags.has_errors() {
        return Err(diags);
    }
    Ok(edits)
}

/// Writes the changed files of a plan into `dir`, each atomically and keeping its mode. A
/// file that is a symlink is written through to its target, which must be inside `dir`. If a
/// later file cannot be written the earlier ones are put back. Returns the paths written.
pub fn write_image(dir: &Path, edits: &[FileEdit]) -> Result<Vec<PathBuf>, Diagnostic> {
    let fail = |p: &Path, e: std::io::Error| {
        Diagnostic::error(format!("cannot write `{}`: {e}", p.display()))
    };
    let mut targets = Vec::new();
    for e in edits.iter().filter(|e| e.changed()) {
        let link = dir.join(e.file);
        let target = resolve_inside(dir, &link)?;
        let mode = std::fs::metadata(&target)
            .map_err(|err| fail(&target, err))?
            .permissions()
            .mode()
            & 0o7777;
        targets.push((e, target, mode));
    }
    let mut written: Vec<(&FileEdit, &PathBuf, u32)> = Vec::new();
    for (e, target, mode) in &targets {
        if let Err(err) = crate::atomic::write(target, &e.bytes, *mode, true) {
            for (done, path, mode) in written {
                let _ = crate::atomic::write(path, &done.original, mode, true);
            }
            return Err(fail(target, err));
        }
        written.push((e, target, *mode));
    }
    Ok(targets.into_iter().map(|(_, t, _)| t).collect())
}

/// The file a config path names: itself, or a symlink's target when that stays inside `dir`.
fn resolve_inside(dir: &Path, path: &Path) -> Result<PathBuf, Diagnostic> {
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| Diagnostic::error(format!("cannot read `{}`: {e}", path.display())))?;
    if !meta.file_type().is_symlink() {
        return Ok(path.to_path_buf());
    }
    let target = path.canonicalize();
    let root = dir.canonicalize();
    match (target, root) {
        (Ok(t), Ok(r)) if t.starts_with(&r) => Ok(t),
        (t, _) => Err(Diagnostic::error(format!(
            "`{}` is a symlink to `{}`, outside the image",
            path.display(),
            t.map(|t| t.display().to_string())
                .unwrap_or_else(|e| format!("a missing file ({e})"))
        ))
        .with_hint("convirt edits only files inside the image; edit that file by hand, or replace the link with a copy")),
    }
}

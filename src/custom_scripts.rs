//! An image's custom scripts (spec §5.1): the directories `custom_list` names, the image's
//! own before the store's, and the scripts each one runs. Provisioning runs them;
//! `image validate` checks them (`trust`) without provisioning.

use crate::diagnostic::Diagnostic;
use crate::image::Image;
use crate::resolve::Resolved;
use crate::store::Store;
use crate::value::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

fn err(msg: impl Into<String>) -> anyhow::Error {
    Diagnostic::error(msg.into()).into()
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

//! Writes that appear whole or not at all: write a temporary file beside the target, flush
//! it, then rename it into place. Nothing convirt writes is ever seen half-written.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Writes `data` to `path` atomically with the given mode. With `overwrite` false an existing
/// `path` is left alone and the call fails with `AlreadyExists`.
pub(crate) fn write(path: &Path, data: &[u8], mode: u32, overwrite: bool) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".convirt-tmp-")
        .tempfile_in(dir)?;
    // The mark that it is in use: a sweep of the store (`tree::sweep_store`) removes only
    // temporary files whose lock is free, i.e. whose writer died.
    let _ = crate::lock::try_exclusive(tmp.as_file());
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(mode))?;
    if overwrite {
        tmp.persist(path).map_err(|e| e.error)?;
    } else {
        tmp.persist_noclobber(path).map_err(|e| e.error)?;
    }
    Ok(())
}

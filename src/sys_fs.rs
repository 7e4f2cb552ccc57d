//! Safe wrappers for the few file-system calls std lacks (renameat2, flock, statvfs, syncfs),
//! on `rustix`, so no other module needs `unsafe` for them.

use std::fs::File;
use std::io;
use std::path::Path;

/// `rename` that fails with `AlreadyExists` instead of replacing an existing target (even
/// an empty directory). On a file system without `RENAME_NOREPLACE` it checks, then renames.
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {
            if to.symlink_metadata().is_ok() {
                Err(io::ErrorKind::AlreadyExists.into())
            } else {
                std::fs::rename(from, to)
            }
        }
        Err(e) if e == rustix::io::Errno::EXIST || e == rustix::io::Errno::NOTEMPTY => {
            Err(io::ErrorKind::AlreadyExists.into())
        }
        Err(e) => Err(e.into()),
    }
}

/// Takes an exclusive `flock` on `file` without waiting; `Ok(false)` when another process
/// holds it. The lock goes with the process: a killed convirt releases it.
pub fn try_lock(file: &File) -> io::Result<bool> {
    use rustix::fs::{FlockOperation, flock};
    match flock(file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(true),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Bytes an unprivileged writer may still use on the file system holding `path`.
pub fn free_bytes(path: &Path) -> io::Result<u64> {
    let s = rustix::fs::statvfs(path)?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

/// Flushes the whole file system holding `dir` (`syncfs`), then the directory itself.
pub fn sync_tree(dir: &Path) -> io::Result<()> {
    let f = File::open(dir)?;
    rustix::fs::syncfs(&f)?;
    f.sync_all()
}

/// `fsync` of a directory, so a rename inside it survives a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Whether an I/O error means the disk (or a quota, or a file-size limit) is full.
pub fn is_full(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOSPC) | Some(libc::EDQUOT) | Some(libc::EFBIG)
    )
}

/// Makes a file-size limit (`ulimit -f`) an `EFBIG` error convirt reports with the path,
/// instead of SIGXFSZ killing it mid-write.
pub fn file_size_limit_is_an_error() {
    // SAFETY: setting a signal to SIG_IGN installs no handler code; it is always sound.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

/// What a full-disk error means for `path`, for a hint.
pub fn full_hint(e: &io::Error, path: &Path) -> String {
    match e.raw_os_error() {
        Some(libc::EFBIG) => format!(
            "a file-size limit (`ulimit -f`) or the largest file the file system of `{}` holds was reached",
            path.display()
        ),
        Some(libc::EDQUOT) => format!("your disk quota on `{}` is used up", path.display()),
        _ => format!("the file system of `{}` is full", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rename_noreplace_keeps_the_target() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        std::fs::create_dir(&a).unwrap();
        std::fs::create_dir(&b).unwrap();
        let e = rename_noreplace(&a, &b).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        std::fs::remove_dir(&b).unwrap();
        rename_noreplace(&a, &b).unwrap();
        assert!(b.is_dir() && !a.exists());
    }

    #[test]
    fn a_lock_is_held_once() {
        let d = tempfile::tempdir().unwrap();
        let one = File::open(d.path()).unwrap();
        let two = File::open(d.path()).unwrap();
        assert!(try_lock(&one).unwrap());
        assert!(!try_lock(&two).unwrap());
        drop(one);
        assert!(try_lock(&two).unwrap());
    }

    #[test]
    fn full_errors() {
        assert!(is_full(&io::Error::from_raw_os_error(libc::ENOSPC)));
        assert!(is_full(&io::Error::from_raw_os_error(libc::EFBIG)));
        assert!(!is_full(&io::Error::from_raw_os_error(libc::EACCES)));
        assert!(free_bytes(Path::new("/")).is_ok());
    }
}

//! Every lock convirt takes, and where each lock file lives (issue #17: one lock module owns
//! lock paths). All are `flock(2)` locks, which the kernel releases when their holder dies,
//! even by SIGKILL:
//!
//! - the per-VM lock, `<root>/locks/<vm>.lock`, taken by whatever provisions or removes the
//!   VM: `root` is the work dir for this machine's VMs (and, on a server, for the runs its
//!   `convirt __serve` makes), `remote_root` for the console-side lock of a server's VM;
//! - the guest bootstrap cache's `<guests>/.debian-<key>.lock` (`guest_cache_path`), shared
//!   with the shell library that builds the cache (`image_store/common/guest`);
//! - `image publish`'s `<dir>/.convirt-publish.lock` (`publish_path`);
//! - in-use marks on temporary files and directories (`try_exclusive`): a store sweep removes
//!   only those whose lock is free.
//!
//! The raw system calls are `sys`'s; nothing else calls them. A leaf above `sys`,
//! `diagnostic`, `clock` and `host_dir`: records, provisioning, the CLI and the console all
//! use it, and it imports none of them.

use crate::diagnostic::Diagnostic;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

fn err(msg: impl Into<String>) -> anyhow::Error {
    Diagnostic::error(msg.into()).into()
}

/// `<root>/locks/<vm>.lock`: the file of a per-VM lock.
pub(crate) fn vm_path(root: &Path, vm: &str) -> PathBuf {
    root.join("locks").join(format!("{vm}.lock"))
}

/// The root of the console-side lock of a remote VM: `<state_dir>/remote-locks/<host>` (the
/// lock itself is `<root>/locks/<vm>.lock`, as under a work dir), held by the convirt of
/// this machine that provisions or removes that VM, so `vm list` can tell a running remote
/// run from an interrupted one.
pub(crate) fn remote_root(state_dir: &Path, host: &str) -> PathBuf {
    state_dir
        .join("remote-locks")
        .join(crate::host_dir::host_dir_name(host))
}

/// `<guests>/.debian-<key>.lock`: the lock of one entry of the guest bootstrap cache. The
/// shell library takes it while it builds or uses the entry, `cache prune` while it removes
/// it, a server's `convirt __serve` while it receives it from this machine (`seed`).
pub(crate) fn guest_cache_path(guests: &Path, key: &str) -> PathBuf {
    guests.join(format!(".debian-{key}.lock"))
}

/// `<dir>/.convirt-publish.lock`: one `image publish` at a time per directory.
pub(crate) fn publish_path(dir: &Path) -> PathBuf {
    dir.join(".convirt-publish.lock")
}

/// Takes an exclusive lock on an open file without waiting; `false` when someone else holds
/// it. The lock lives as long as the file stays open.
pub(crate) fn try_exclusive(file: &File) -> std::io::Result<bool> {
    crate::sys::try_lock_exclusive(file)
}

/// Opens (creating it) the lock file at `path` and takes it without waiting: `Ok(None)` when
/// someone else holds it.
pub(crate) fn try_file(path: &Path) -> std::io::Result<Option<File>> {
    let f = File::options()
        .create(true)
        .truncate(false)
        .append(true)
        .open(path)?;
    Ok(try_exclusive(&f)?.then_some(f))
}

/// Opens (creating it) the lock file at `path` and takes it, waiting for its holder.
pub(crate) fn wait_file(path: &Path) -> std::io::Result<File> {
    let f = File::options()
        .create(true)
        .truncate(false)
        .append(true)
        .open(path)?;
    crate::sys::lock_exclusive(&f)?;
    Ok(f)
}

/// A held per-VM lock; released (and its file removed) when dropped.
pub(crate) struct Lock {
    _file: File,
    path: PathBuf,
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Takes the per-VM lock under `root`, or fails at once naming the holder. `image` goes into
/// the holder line (`(vm remove)` for a removal).
pub(crate) fn lock(root: &Path, vm: &str, image: &str) -> anyhow::Result<Lock> {
    let dir = root.join("locks");
    std::fs::create_dir_all(&dir).map_err(|e| {
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            Diagnostic::error(format!(
                "the work_dir `{}` is not writable (cannot create `{}`: {e})",
                root.display(),
                dir.display()
            ))
            .with_hint("fix its permissions or choose another `work_dir`; nothing was changed")
            .into()
        } else {
            err(format!("cannot create `{}`: {e}", dir.display()))
        }
    })?;
    // Another user's symlink planted here would make convirt write through it.
    for d in [root, dir.as_path()] {
        if let Some(why) = crate::sys::unsafe_dir(d) {
            return Err(err(format!("refusing to take the VM's lock: {why}")));
        }
    }
    let path = vm_path(root, vm);
    loop {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| err(format!("cannot open lock `{}`: {e}", path.display())))?;
        let locked = try_exclusive(&file)
            .map_err(|e| err(format!("cannot lock `{}`: {e}", path.display())))?;
        if !locked {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            let holder = holder.trim();
            return Err(Diagnostic::error(format!(
                "VM `{vm}` is already being provisioned{}",
                if holder.is_empty() {
                    String::new()
                } else {
                    format!(" ({holder})")
                }
            ))
            .with_hint(format!(
                "wait for it to finish; the lock is `{}`",
                path.display()
            ))
            .into());
        }
        // The file we locked may have been removed by a finishing holder in the meantime.
        let same = std::fs::metadata(&path)
            .ok()
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            == file
                .metadata()
                .ok()
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m));
        if !same {
            continue;
        }
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| format!("uid {}", crate::sys::euid()));
        let info = format!(
            "pid {}, user {user}, image {image}, since {}",
            std::process::id(),
            crate::clock::timestamp()
        );
        let _ = file.set_len(0);
        let _ = (&file).write_all(info.as_bytes());
        return Ok(Lock { _file: file, path });
    }
}

/// The holder line of a per-VM lock (`pid …, user …, image …, since …`), empty when none.
pub(crate) fn holder(root: &Path, vm: &str) -> String {
    std::fs::read_to_string(vm_path(root, vm))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Whether a run holds the per-VM lock under `root` right now. Read from `/proc/locks`, so
/// that looking never takes the lock from a run that is starting.
pub(crate) fn held(root: &Path, vm: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    let path = vm_path(root, vm);
    let Ok(m) = std::fs::metadata(&path) else {
        return false;
    };
    match std::fs::read_to_string("/proc/locks") {
        Ok(locks) => flock_listed(&locks, m.dev(), m.ino()),
        Err(_) => probe(&path),
    }
}

/// Whether `/proc/locks` text lists a granted flock on this device and inode.
fn flock_listed(locks: &str, dev: u64, ino: u64) -> bool {
    // Linux's dev_t encoding (glibc's gnu_dev_major / gnu_dev_minor).
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    locks.lines().any(|l| {
        let t: Vec<&str> = l.split_whitespace().collect();
        // "1: FLOCK  ADVISORY  WRITE 4711 08:01:1234 0 EOF"; waiters have "->" before FLOCK.
        if t.get(1) != Some(&"FLOCK") {
            return false;
        }
        let Some(id) = t.get(5) else { return false };
        let mut parts = id.split(':');
        let (Some(ma), Some(mi), Some(i)) = (parts.next(), parts.next(), parts.next()) else {
            return false;
        };
        u64::from_str_radix(ma, 16) == Ok(major)
            && u64::from_str_radix(mi, 16) == Ok(minor)
            && i.parse::<u64>() == Ok(ino)
    })
}

/// Without `/proc/locks`: a shared, non-blocking flock probe, released at once.
fn probe(path: &Path) -> bool {
    let Ok(f) = std::fs::File::open(path) else {
        return false;
    };
    crate::sys::exclusively_locked(&f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_flock_is_found_in_proc_locks_and_gone_when_released() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("locks")).unwrap();
        assert!(!held(t.path(), "v"), "no lock file");
        let f = std::fs::File::create(t.path().join("locks/v.lock")).unwrap();
        assert!(!held(t.path(), "v"));
        assert!(try_exclusive(&f).unwrap());
        assert!(held(t.path(), "v"));
        assert!(!held(t.path(), "w"));
        drop(f);
        // Another test's thread may fork at any moment: its child shares our open file (and
        // so the flock) until it execs, a few milliseconds at most. Released means released
        // once that window has passed.
        let released = (0..200).any(|_| {
            let gone = !held(t.path(), "v");
            if !gone {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            gone
        });
        assert!(released, "the lock stayed listed after its file was closed");
        assert!(flock_listed(
            "1: FLOCK  ADVISORY  WRITE 4711 08:01:1234 0 EOF\n",
            (8 << 8) | 1,
            1234
        ));
        assert!(!flock_listed(
            "1: POSIX  ADVISORY  WRITE 4711 08:01:1234 0 EOF\n1: -> FLOCK  ADVISORY  WRITE 9 08:01:1234 0 EOF\n",
            (8 << 8) | 1,
            1234
        ));
    }

    #[test]
    fn a_vm_lock_is_taken_once_names_its_holder_and_goes_when_dropped() {
        let t = tempfile::tempdir().unwrap();
        let l = lock(t.path(), "v", "img").unwrap();
        assert!(held(t.path(), "v"));
        assert!(holder(t.path(), "v").contains("image img, since "));
        let e = lock(t.path(), "v", "other").err().unwrap().to_string();
        assert!(e.contains("already being provisioned"), "{e}");
        drop(l);
        assert!(!vm_path(t.path(), "v").exists());
        assert_eq!(holder(t.path(), "v"), "");
    }
}

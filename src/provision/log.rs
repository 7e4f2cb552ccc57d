//! Per-VM log files (spec §6.4): `<log_dir>/<image>/<image>_<vm>.log`, mode 0640, earlier runs
//! rotated to `.1`, `.2`, ... and never overwritten; convirt's own lines carry a timestamp.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Moves `path` to `path.1`, an existing `path.1` to `path.2`, and so on.
pub(crate) fn rotate(path: &Path) -> std::io::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let numbered = |n: u32| PathBuf::from(format!("{}.{n}", path.display()));
    let mut top = 1;
    while numbered(top).exists() {
        top += 1;
    }
    for n in (1..top).rev() {
        std::fs::rename(numbered(n), numbered(n + 1))?;
    }
    std::fs::rename(path, numbered(1))
}

/// Creates a new private file (0640), rotating an older one out of the way first.
pub(crate) fn create_private(path: &Path) -> std::io::Result<File> {
    rotate(path)?;
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(path)?;
    // The umask may have taken bits away; it can never have added any.
    f.set_permissions(std::fs::Permissions::from_mode(0o640))?;
    Ok(f)
}

/// Writes `text` into a new private file (rotating an older one).
pub(crate) fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let mut f = create_private(path)?;
    // The instantiated inputs hold every value, secrets too: owner-only.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

/// Appends one of convirt's own lines, with a UTC timestamp. A write that fails (a full
/// disk) is never dropped: it is recorded against this log file, and the script run that
/// writes to it next reports it (see [`failure`]).
pub(crate) fn note(log: &mut File, msg: &str) {
    if let Err(e) = writeln!(log, "[{}] convirt: {msg}", timestamp()) {
        record_failure(log, &e);
    }
}

thread_local! {
    /// Logs (by device and inode) whose writes failed, with the first error.
    static FAILED: std::cell::RefCell<Vec<((u64, u64), String)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

fn key(log: &File) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    log.metadata().ok().map(|m| (m.dev(), m.ino()))
}

/// Remembers that writing to `log` failed with `e` (the first error counts).
pub(crate) fn record_failure(log: &File, e: &std::io::Error) {
    if let Some(k) = key(log) {
        FAILED.with(|f| {
            let mut f = f.borrow_mut();
            if !f.iter().any(|(x, _)| *x == k) {
                f.push((k, e.to_string()));
            }
        });
    }
}

/// The first failed write to `log` in this thread, if any.
pub(crate) fn failure(log: &File) -> Option<String> {
    let k = key(log)?;
    FAILED.with(|f| {
        f.borrow()
            .iter()
            .find(|(x, _)| *x == k)
            .map(|(_, e)| e.clone())
    })
}

pub(crate) use crate::clock::timestamp;

/// Reads `stream` line by line in a thread and sends each line (with its newline) through
/// `tx`, tagged by `tag`, until the stream ends or the receiver is gone: how the script's
/// (or the driver's) stdout and stderr reach the log and the terminal.
pub(crate) fn forward_lines<T: Send + 'static>(
    stream: impl std::io::Read + Send + 'static,
    tx: std::sync::mpsc::Sender<T>,
    tag: impl Fn(Vec<u8>) -> T + Send + 'static,
) -> std::thread::JoinHandle<()> {
    use std::io::BufRead;
    std::thread::spawn(move || {
        let mut r = std::io::BufReader::new(stream);
        loop {
            let mut buf = Vec::new();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if tx.send(tag(buf)).is_err() {
                        break;
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_note_is_remembered_for_its_log_only() {
        // /dev/full fails every write with ENOSPC: a real full disk without a mount.
        let mut full = OpenOptions::new().write(true).open("/dev/full").unwrap();
        let d = tempfile::tempdir().unwrap();
        let mut fine = File::create(d.path().join("ok.log")).unwrap();
        note(&mut fine, "fits");
        note(&mut full, "does not fit");
        let e = failure(&full).expect("the failed write is recorded");
        assert!(e.contains("No space left"), "{e}");
        assert_eq!(failure(&fine), None);
    }

    #[test]
    fn rotation_never_overwrites() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.log");
        for i in 0..3 {
            write_private(&p, &format!("run {i}")).unwrap();
        }
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "run 2");
        assert_eq!(
            std::fs::read_to_string(d.path().join("a.log.1")).unwrap(),
            "run 1"
        );
        assert_eq!(
            std::fs::read_to_string(d.path().join("a.log.2")).unwrap(),
            "run 0"
        );
        // `write_private`: the instantiated inputs are owner-only (issue #18).
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}

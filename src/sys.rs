//! System calls in one place: the few operating-system services convirt needs that `std`
//! does not offer, on `rustix` (safe wrappers over the raw syscalls). The one `unsafe` left
//! is installing a signal handler, which rustix does not offer outside its runtime API.

use std::fs::File;
use std::io;
use std::path::Path;

/// Whether convirt runs as root (effective uid 0): root and non-root defaults differ.
pub(crate) fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The effective user id, for messages.
pub(crate) fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Whether this process may create entries in `dir` (`access(2)` with `W_OK`).
pub(crate) fn may_write(dir: &Path) -> bool {
    rustix::fs::access(
        dir,
        rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
    )
    .is_ok()
}

/// The fields of `uname(2)`: sysname, nodename, release, version, machine.
pub(crate) fn uname() -> [String; 5] {
    let u = rustix::system::uname();
    let s = |c: &std::ffi::CStr| c.to_string_lossy().into_owned();
    [
        s(u.sysname()),
        s(u.nodename()),
        s(u.release()),
        s(u.version()),
        s(u.machine()),
    ]
}

/// Fills `buf` with random bytes from the kernel (`getrandom(2)`), or fails: a MAC or a
/// UUID must never come from a guessable source such as the clock.
pub(crate) fn fill_random(buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match rustix::rand::getrandom(&mut buf[done..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => done += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                return Err(io::Error::new(
                    io::Error::from(e).kind(),
                    format!("cannot read random bytes from the kernel (getrandom): {e}"),
                ));
            }
        }
    }
    Ok(())
}

/// `rename(2)` that fails with `AlreadyExists` instead of replacing what is at `to`
/// (`renameat2(RENAME_NOREPLACE)`); on a file system without that flag, a check then a
/// plain rename.
pub(crate) fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
            if to.symlink_metadata().is_ok() {
                Err(io::ErrorKind::AlreadyExists.into())
            } else {
                std::fs::rename(from, to)
            }
        }
        Err(rustix::io::Errno::EXIST | rustix::io::Errno::NOTEMPTY) => {
            Err(io::ErrorKind::AlreadyExists.into())
        }
        Err(e) => Err(e.into()),
    }
}

/// Where the next data (`hole == false`) or hole (`hole == true`) of a file starts at or
/// after `off` (`lseek(SEEK_DATA/SEEK_HOLE)`); `None` when there is none (ENXIO).
pub(crate) fn seek_data_or_hole(file: &File, off: u64, hole: bool) -> io::Result<Option<u64>> {
    use rustix::fs::SeekFrom;
    let pos = if hole {
        SeekFrom::Hole(off)
    } else {
        SeekFrom::Data(off)
    };
    match rustix::fs::seek(file, pos) {
        Ok(p) => Ok(Some(p)),
        Err(rustix::io::Errno::NXIO) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Takes an exclusive `flock(2)` on a file without waiting; `false` when someone else
/// holds it.
pub(crate) fn try_lock_exclusive(file: &File) -> io::Result<bool> {
    use rustix::fs::{FlockOperation, flock};
    match flock(file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Takes an exclusive `flock(2)` on a file, waiting for it.
pub(crate) fn lock_exclusive(file: &File) -> io::Result<()> {
    use rustix::fs::{FlockOperation, flock};
    Ok(flock(file, FlockOperation::LockExclusive)?)
}

/// Whether someone holds an exclusive `flock(2)` on a file: a shared, non-blocking probe,
/// released at once. An error counts as not held.
pub(crate) fn exclusively_locked(file: &File) -> bool {
    use rustix::fs::{FlockOperation, flock};
    match flock(file, FlockOperation::NonBlockingLockShared) {
        Ok(()) => {
            let _ = flock(file, FlockOperation::Unlock);
            false
        }
        Err(e) => e == rustix::io::Errno::WOULDBLOCK,
    }
}

/// Sends signal `sig` to process group `pgid`; a group already gone is not an error.
pub(crate) fn kill_group(pgid: i32, sig: i32) {
    let (Some(pid), Some(sig)) = (
        rustix::process::Pid::from_raw(pgid),
        rustix::process::Signal::from_named_raw(sig),
    ) else {
        return;
    };
    let _ = rustix::process::kill_process_group(pid, sig);
}

/// Routes SIGINT, SIGTERM and SIGHUP to `handler`, which must be async-signal-safe (store to an
/// atomic and nothing else).
#[allow(unsafe_code)] // the one handler rustix offers only in its unstable runtime API
pub(crate) fn on_interrupt(handler: extern "C" fn(libc::c_int)) {
    // SAFETY: `signal` only records the handler's address; the caller's handler is
    // async-signal-safe (documented contract above).
    unsafe {
        libc::signal(libc::SIGINT, handler as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, handler as *const () as libc::sighandler_t);
        libc::signal(libc::SIGHUP, handler as *const () as libc::sighandler_t);
    }
}

/// Ends the process at once with `code`, without unwinding or flushing (safe in a signal
/// handler).
#[allow(unsafe_code)]
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` is async-signal-safe and never returns.
    unsafe { libc::_exit(code) }
}

/// Bytes an unprivileged writer may still use on the file system holding `path`.
pub(crate) fn free_bytes(path: &Path) -> io::Result<u64> {
    let s = rustix::fs::statvfs(path)?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

/// Flushes the whole file system holding `dir` (`syncfs`), then the directory itself.
pub(crate) fn sync_tree(dir: &Path) -> io::Result<()> {
    let f = File::open(dir)?;
    rustix::fs::syncfs(&f)?;
    f.sync_all()
}

/// `fsync` of a directory, so a rename inside it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Whether an I/O error means the disk (or a quota, or a file-size limit) is full.
pub(crate) fn is_full(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOSPC) | Some(libc::EDQUOT) | Some(libc::EFBIG)
    )
}

/// Makes a file-size limit (`ulimit -f`) an `EFBIG` error convirt reports with the path,
/// instead of SIGXFSZ killing it mid-write.
#[allow(unsafe_code)] // setting SIG_IGN installs no code
pub(crate) fn file_size_limit_is_an_error() {
    // SAFETY: setting a signal to SIG_IGN installs no handler code; it is always sound.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

/// What a full-disk error means for `path`, for a hint.
pub(crate) fn full_hint(e: &io::Error, path: &Path) -> String {
    match e.raw_os_error() {
        Some(libc::EFBIG) => format!(
            "a file-size limit (`ulimit -f`) or the largest file the file system of `{}` holds was reached",
            path.display()
        ),
        Some(libc::EDQUOT) => format!("your disk quota on `{}` is used up", path.display()),
        _ => format!("the file system of `{}` is full", path.display()),
    }
}

/// Adds group and other write to the umask (a umask of 000 becomes 022): nothing convirt or
/// an image's script creates is writable by another user (issue #18, docs/security.md).
pub(crate) fn no_shared_writes() {
    use rustix::fs::Mode;
    let old = rustix::process::umask(Mode::from_raw_mode(0o022));
    rustix::process::umask(old | Mode::from_raw_mode(0o022));
}

/// Why a directory convirt writes into is not safe, if it is not: a symlink, not a
/// directory, writable by group or others (unless sticky: the directory's own files are
/// then safe, as in /tmp), or owned by a user who is neither root nor `euid()`.
pub(crate) fn unsafe_dir(dir: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(dir).ok()?;
    let shown = dir.display();
    if m.file_type().is_symlink() {
        return Some(format!("`{shown}` is a symlink; remove it (`rm {shown}`)"));
    }
    if !m.is_dir() {
        return Some(format!("`{shown}` is not a directory"));
    }
    if m.uid() != 0 && m.uid() != euid() {
        return Some(format!(
            "`{shown}` belongs to another user (uid {}); run `chown {} {shown}`",
            m.uid(),
            euid()
        ));
    }
    let mode = m.mode() & 0o7777;
    if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        return Some(format!(
            "`{shown}` is writable by other users (mode {mode:04o}); run `chmod go-w {shown}`"
        ));
    }
    None
}

/// How long an external tool (`xl`, `lvremove`, `dpkg-deb`, ...) may take before convirt
/// stops it and says so.
pub(crate) const TOOL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// The Debian package that provides a tool convirt runs, for "not installed" messages.
pub(crate) fn debian_package(tool: &str) -> &'static str {
    match tool {
        "xl" => "xen-utils (the Xen tools)",
        "lvremove" | "lvcreate" | "lvs" => "lvm2",
        "dpkg-deb" => "dpkg",
        "qemu-img" => "qemu-utils",
        "mkfs.ext4" | "mke2fs" | "debugfs" | "tune2fs" => "e2fsprogs",
        "mkswap" => "util-linux",
        "tar" => "tar",
        "bash" => "bash",
        "ssh" => "openssh-client",
        _ => "that provides it",
    }
}

/// Finds an external tool the way the shipped `common/defs` does, everywhere convirt runs
/// one: each directory of `PATH`, then `/usr/local/sbin`, `/usr/sbin` and `/sbin` (a normal
/// user's login PATH lacks them). A missing tool is named with its Debian package.
pub(crate) fn find_tool(name: &str) -> Result<std::path::PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(std::path::PathBuf::from));
    for d in dirs {
        if d.as_os_str().is_empty() || !d.is_absolute() {
            continue;
        }
        let p = d.join(name);
        if std::fs::metadata(&p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0) {
            return Ok(p);
        }
    }
    Err(format!(
        "`{name}` is not installed (looked on PATH and in /usr/local/sbin, /usr/sbin, /sbin); install the Debian package {}",
        debian_package(name)
    ))
}

/// Runs `cmd` to its end, its output collected, or stops it (SIGKILL) after `limit`: an
/// external command never hangs convirt. The error names the program and the limit.
pub(crate) fn output_with_timeout(
    cmd: &mut std::process::Command,
    limit: std::time::Duration,
) -> io::Result<std::process::Output> {
    use std::io::Read;
    use std::process::Stdio;
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut out_pipe = child.stdout.take();
    let mut err_pipe = child.stderr.take();
    let out_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        if let Some(p) = out_pipe.as_mut() {
            let _ = p.read_to_end(&mut b);
        }
        b
    });
    let err_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        if let Some(p) = err_pipe.as_mut() {
            let _ = p.read_to_end(&mut b);
        }
        b
    });
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "`{program}` did not finish within {} s and was stopped",
                    limit.as_secs_f64()
                ),
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let stdout = out_t.join().unwrap_or_default();
    let stderr = err_t.join().unwrap_or_default();
    Ok(std::process::Output {
        status,
        stdout,
        stderr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};

    #[test]
    fn a_command_past_its_time_is_stopped_and_named() {
        let start = std::time::Instant::now();
        let e = output_with_timeout(
            std::process::Command::new("sleep").arg("30"),
            std::time::Duration::from_millis(300),
        )
        .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(
            e.to_string()
                .contains("`sleep` did not finish within 0.3 s"),
            "{e}"
        );
        // Stopped, not waited for (30 s).
        assert!(start.elapsed() < std::time::Duration::from_secs(25));
        let o = output_with_timeout(
            std::process::Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            std::time::Duration::from_secs(60),
        )
        .unwrap();
        assert_eq!(o.status.code(), Some(3));
        assert_eq!(o.stdout, b"out\n");
        assert_eq!(o.stderr, b"err\n");
    }

    #[test]
    fn a_missing_tool_is_named_with_its_package() {
        let e = find_tool("convirt-no-such-tool-xyz").unwrap_err();
        assert!(e.contains("is not installed"), "{e}");
        assert!(find_tool("sh").is_ok());
        assert_eq!(debian_package("lvremove"), "lvm2");
    }

    #[test]
    fn random_bytes_differ_between_calls() {
        let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
        fill_random(&mut a).unwrap();
        fill_random(&mut b).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn rename_noreplace_refuses_an_existing_target() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        std::fs::write(&a, "a").unwrap();
        std::fs::write(&b, "b").unwrap();
        let e = rename_noreplace(&a, &b).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "b");
        std::fs::remove_file(&b).unwrap();
        rename_noreplace(&a, &b).unwrap();
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "a");
        assert!(!a.exists());
    }

    #[test]
    fn holes_and_data_of_a_sparse_file() {
        let d = tempfile::tempdir().unwrap();
        let mut f = File::create(d.path().join("sparse")).unwrap();
        f.seek(SeekFrom::Start(1 << 20)).unwrap();
        f.write_all(b"data").unwrap();
        let data = seek_data_or_hole(&f, 0, false).unwrap().unwrap();
        // Where the data starts depends on the file system's block size, never past it.
        assert!(data <= 1 << 20, "{data}");
        assert_eq!(seek_data_or_hole(&f, (1 << 20) + 4, false).unwrap(), None);
    }

    #[test]
    fn a_second_lock_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("lock");
        let a = File::create(&p).unwrap();
        let b = File::open(&p).unwrap();
        assert!(try_lock_exclusive(&a).unwrap());
        assert!(!try_lock_exclusive(&b).unwrap());
        drop(a);
        assert!(try_lock_exclusive(&b).unwrap());
    }

    #[test]
    fn uname_names_this_machine() {
        let [sys, _, _, _, machine] = uname();
        assert_eq!(sys, "Linux");
        assert_eq!(machine, std::env::consts::ARCH);
    }

    #[test]
    fn a_lock_is_held_once() {
        let d = tempfile::tempdir().unwrap();
        let one = File::open(d.path()).unwrap();
        let two = File::open(d.path()).unwrap();
        assert!(try_lock_exclusive(&one).unwrap());
        assert!(!try_lock_exclusive(&two).unwrap());
        drop(one);
        assert!(try_lock_exclusive(&two).unwrap());
    }

    #[test]
    fn full_errors() {
        assert!(is_full(&io::Error::from_raw_os_error(libc::ENOSPC)));
        assert!(is_full(&io::Error::from_raw_os_error(libc::EFBIG)));
        assert!(!is_full(&io::Error::from_raw_os_error(libc::EACCES)));
        assert!(free_bytes(Path::new("/")).is_ok());
    }
}

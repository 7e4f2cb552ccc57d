//! Ctrl-C for the long file operations (`image pack`, `import`, `create-like`, `edit`): the
//! signal only raises a flag, the work polls it and returns an error, and the normal unwinding
//! removes every temporary file and directory before convirt exits with 130.

//! Provisioning polls the same flag to stop a script's process group; `convirt __serve`
//! raises it too when its channel to this machine is gone (`lose`).

use crate::diagnostic::Diagnostic;
use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static LOST: AtomicBool = AtomicBool::new(false);
/// A signal has arrived (not only the flag raised by `raise` or `lose`).
static SIGNALLED: AtomicBool = AtomicBool::new(false);
/// Whether a second signal exits at once: not for `convirt __serve`, whose clean-up must
/// finish even when sshd sends SIGHUP and SIGTERM as the connection goes.
static SECOND_EXITS: AtomicBool = AtomicBool::new(true);

extern "C" fn on_signal(_: libc::c_int) {
    // A second signal while the first one's clean-up runs: exit at once (`_exit` is
    // async-signal-safe; what the clean-up did not reach stays in the journal).
    if SIGNALLED.swap(true, Ordering::SeqCst) && SECOND_EXITS.load(Ordering::SeqCst) {
        crate::sys::exit_now(130);
    }
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// As `install`, for the server's engine: every signal only raises the flag, so the run's
/// clean-up always finishes and the server's journal stays true (issue #17).
pub(crate) fn install_for_server() {
    SECOND_EXITS.store(false, Ordering::SeqCst);
    install();
}

/// Routes SIGINT, SIGTERM and SIGHUP to the flag (the same one a provisioning run polls); a
/// second one exits at once.
pub(crate) fn install() {
    // The handler only stores to an atomic, which is async-signal-safe.
    crate::sys::on_interrupt(on_signal);
}

pub(crate) fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Raises the flag as Ctrl-C does (a server asked to stop by this machine).
pub(crate) fn raise() {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// The channel to this machine is gone: stop as after Ctrl-C, and say why.
pub(crate) fn lose() {
    LOST.store(true, Ordering::SeqCst);
    INTERRUPTED.store(true, Ordering::SeqCst);
}

pub(crate) fn lost() -> bool {
    LOST.load(Ordering::SeqCst)
}

/// An error when Ctrl-C was pressed, naming the operation that stops.
pub(crate) fn check(what: &str) -> Result<(), Diagnostic> {
    if interrupted() {
        Err(Diagnostic::error(format!(
            "{what} was interrupted (Ctrl-C)"
        )))
    } else {
        Ok(())
    }
}

/// The same as an I/O error, for loops that speak `io::Result`.
pub(crate) fn check_io() -> std::io::Result<()> {
    if interrupted() {
        Err(std::io::Error::new(
            std::io::ErrorKind::Interrupted,
            "interrupted (Ctrl-C)",
        ))
    } else {
        Ok(())
    }
}

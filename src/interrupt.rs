//! Ctrl-C for the long file operations (`image pack`, `import`, `create-like`, `edit`): the
//! signal only raises a flag, the work polls it and returns an error, and the normal unwinding
//! removes every temporary file and directory before convirt exits with 130.

use crate::diagnostic::Diagnostic;

/// Routes SIGINT, SIGTERM and SIGHUP to the flag (the same one a provisioning run polls); a
/// second one exits at once.
pub(crate) fn install() {
    crate::provision::run::install_interrupt_handler();
}

pub(crate) fn interrupted() -> bool {
    crate::provision::run::interrupted()
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

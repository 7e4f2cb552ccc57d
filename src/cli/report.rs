//! The one place that prints errors and picks the exit code: 0 ok, 1 the operation failed,
//! 2 usage error, 130 interrupted. Per-VM failures of `provision` come back here too.

use super::out::{err, errln};
use crate::diagnostic::{Diagnostic, Diagnostics};

/// The operation was interrupted (Ctrl-C): exit 130.
#[derive(Debug)]
pub struct Interrupted(pub String);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Interrupted {}

/// Errors already printed in full (diagnostics); only the exit code is left to decide.
#[derive(Debug)]
pub struct Reported;
impl std::fmt::Display for Reported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("failed")
    }
}
impl std::error::Error for Reported {}

/// Several independent operations failed (one per VM of `provision`): each error is printed,
/// then the exit code is chosen once.
#[derive(Debug)]
pub struct Failures {
    pub errors: Vec<anyhow::Error>,
    pub interrupted: bool,
    /// A closing line printed after the errors, such as the summary of a several-VM run.
    pub summary: Option<String>,
}
impl std::fmt::Display for Failures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} failed", self.errors.len())
    }
}
impl std::error::Error for Failures {}

/// The one place that prints an error and picks the exit code.
pub(crate) fn report(e: &anyhow::Error) -> i32 {
    if e.downcast_ref::<Reported>().is_some() {
        return 1;
    }
    if let Some(f) = e.downcast_ref::<Failures>() {
        for e in &f.errors {
            print_error(e);
        }
        if let Some(s) = &f.summary {
            errln!("{s}");
        }
        return if f.interrupted { 130 } else { 1 };
    }
    let code = if e.downcast_ref::<Interrupted>().is_some() {
        130
    } else {
        1
    };
    print_error(e);
    code
}

/// An error on stderr: diagnostics with their snippets, anything else with its causes.
fn print_error(e: &anyhow::Error) {
    if let Some(d) = e.downcast_ref::<Diagnostics>() {
        err!("{}", d.render());
        return;
    }
    if let Some(d) = e.downcast_ref::<Diagnostic>() {
        err!("{}", d.render());
        return;
    }
    let mut msg = format!("error: {e}");
    for cause in e.chain().skip(1) {
        msg.push_str(&format!("\n  caused by: {cause}"));
    }
    errln!("{msg}");
}

/// Prints warnings (unless `-q`).
pub(crate) fn warn(quiet: bool, d: &Diagnostics) {
    if quiet {
        return;
    }
    for w in d.warnings() {
        err!("{}", w.render());
    }
}

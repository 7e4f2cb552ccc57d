//! Output of every command. Data goes to stdout through `Out`, which turns "the reader went
//! away" (EPIPE, as in `convirt image list | head -1`) into `StdoutClosed`; `report` then
//! exits quietly with status 0, as ripgrep does. Notes on stderr never fail a command or
//! panic (`errln!`), so a closed stderr cannot stop `provision` in the middle of a run.
//!
//! SIGPIPE stays ignored (Rust's default) rather than reset to the default action: that
//! would kill `provision` between its script and its cleanup when its reader goes away.

use std::io::{self, Write};

/// The reader of stdout went away; nothing more can be shown, and nothing is wrong.
#[derive(Debug)]
pub(crate) struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the reader of standard output went away")
    }
}
impl std::error::Error for StdoutClosed {}

/// Standard output, locked; a broken pipe comes back as `StdoutClosed`.
pub(crate) struct Out(io::StdoutLock<'static>);

pub(crate) fn stdout() -> Out {
    Out(io::stdout().lock())
}

fn closed(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        io::Error::new(io::ErrorKind::BrokenPipe, StdoutClosed)
    } else {
        e
    }
}

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf).map_err(closed)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush().map_err(closed)
    }
}

/// Writes text to stdout and flushes it, so a reader that went away is noticed here.
pub(crate) fn print(text: &str) -> anyhow::Result<()> {
    let mut o = stdout();
    o.write_all(text.as_bytes())?;
    o.flush()?;
    Ok(())
}

/// Whether an error (or one of its causes) is stdout's reader going away.
pub(crate) fn is_stdout_closed(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.is::<StdoutClosed>()
            || c.downcast_ref::<io::Error>()
                .and_then(|io| io.get_ref())
                .is_some_and(|inner| inner.is::<StdoutClosed>())
    })
}

/// A line on stderr that never fails and never panics (unlike `eprintln!`): a note that
/// cannot be shown is dropped.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// Text on stderr without a newline, never failing (see `errln!`).
macro_rules! err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($arg)*);
    }};
}

/// A line on stdout through `Out`: an error (`StdoutClosed` when the reader went away),
/// never a panic (unlike `println!`).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!($crate::cli::out::stdout(), $($arg)*)
    }};
}

pub(crate) use {err, errln, outln};

//! The protocol between convirt on this machine and `convirt __serve` on a server, over the
//! ssh channel's standard input and output: JSON lines (serde), each at most `MAX_LINE`
//! bytes. This machine writes a `Hello`, then one `Request`; a `Provision` request is
//! followed by exactly `tree_bytes` bytes of tar (the work tree), then by control lines
//! (`"stop"`) for as long as the run lasts. The server answers with `Event` lines: its own
//! `Hello` first, then what the request produces, the last one final. The channel's end of
//! file, either way, is the watchdog: the server stops and cleans up, this machine reports a
//! lost connection. Enums are externally tagged (serde's internally tagged form cannot hold
//! the records' 128-bit birth times).

use crate::provision::{Failure, Job, Provisioned};
use crate::state::{Item, Record};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::path::PathBuf;

/// Raised whenever a message changes meaning; both ends must speak the same.
pub(crate) const VERSION: u32 = 1;

/// The longest line either end accepts (a job with its rendered texts fits many times).
pub(crate) const MAX_LINE: u64 = 8 << 20;

/// The first line each end sends.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Hello {
    pub protocol: u32,
    /// `convirt --version` of the sender.
    pub convirt: String,
    /// How the server's convirt was found (`configured`, `path`, `copy`); servers only.
    #[serde(default)]
    pub found: Option<String>,
}

impl Hello {
    pub(crate) fn ours(found: Option<String>) -> Hello {
        Hello {
            protocol: VERSION,
            convirt: version(),
            found,
        }
    }
}

/// `convirt --version`, as clap prints it.
pub(crate) fn version() -> String {
    format!("convirt {}", env!("CARGO_PKG_VERSION"))
}

/// What this machine asks of a server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Request {
    /// The server's facts for planning (uname, user, home, bridges).
    Facts,
    /// Run a job; the work tree follows the line.
    Provision { job: Box<Job>, tree_bytes: u64 },
    /// Which of these items are there.
    Check { items: Vec<Item> },
    /// Remove these items (newest first) of VM `vm`, unless its domain runs.
    Remove {
        vm: String,
        items: Vec<Item>,
        dry_run: bool,
        /// The server's state dir from the host's settings; else its user's default.
        state_dir: Option<PathBuf>,
    },
    /// What the server's own journal and record say of VM `vm` (after a lost connection):
    /// waits for a run of it still going there to end.
    Status {
        vm: String,
        /// The run asked about (`Job::run`).
        run: String,
        work_dir: PathBuf,
        state_dir: PathBuf,
    },
}

/// A run's final answer that could not be delivered (the channel was gone), kept by the
/// server in `<state_dir>/undelivered/<vm>.json` until this machine asks (`Status`).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Undelivered {
    pub run: String,
    pub answer: Event,
}

/// The server's facts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Facts {
    pub host: crate::eval::Host,
    pub uid: u32,
    pub home: PathBuf,
    pub bridges: Vec<String>,
}

/// One removal step as the server reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Removed {
    pub action: String,
    pub why: String,
}

/// What the server says.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Event {
    Hello(Hello),
    Facts(Facts),
    /// The run made its log: it changes things on the server from here on.
    Started,
    /// A line of the script's output.
    Output(String),
    /// Final: the run succeeded; `created` is the server's record of it.
    Provisioned {
        result: Box<Provisioned>,
        created: Vec<Item>,
    },
    /// Final: the run failed; `left` names what its journal keeps (with `--keep`, or what
    /// could not be removed).
    Failed {
        failure: Failure,
        left: Vec<Item>,
    },
    /// Final: refused or broken before (or outside) a run.
    Error {
        message: String,
        hints: Vec<String>,
    },
    Present(Vec<bool>),
    Removal {
        running: Result<bool, String>,
        steps: Vec<Removed>,
    },
    Status {
        record: Option<Box<Record>>,
        /// An unfinished run's items still there.
        leftovers: Option<Vec<Item>>,
        /// The run's own final answer, when the server kept it for us.
        answer: Option<Box<Event>>,
    },
}

/// Writes one message as a line.
pub(crate) fn send<T: Serialize>(w: &mut dyn Write, msg: &T) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    line.push(b'\n');
    w.write_all(&line)?;
    w.flush()
}

/// Reads one line (at most `MAX_LINE` bytes); `None` at the end of the stream.
pub(crate) fn read_line(r: &mut impl BufRead) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    let mut limited = std::io::Read::take(&mut *r, MAX_LINE + 1);
    let n = limited.read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        if buf.len() as u64 > MAX_LINE {
            return Err(std::io::Error::other(format!(
                "a message longer than {MAX_LINE} bytes"
            )));
        }
        // A torn last line: the other end went away mid-write.
        return Ok(None);
    }
    buf.pop();
    Ok(Some(buf))
}

/// Reads one message; `None` at the end of the stream.
pub(crate) fn receive<T: for<'de> Deserialize<'de>>(
    r: &mut impl BufRead,
) -> std::io::Result<Option<T>> {
    match read_line(r)? {
        None => Ok(None),
        Some(line) => serde_json::from_slice(&line).map(Some).map_err(|e| {
            std::io::Error::other(format!(
                "an unreadable message ({e}): {}",
                escape(&String::from_utf8_lossy(&line[..line.len().min(200)]))
            ))
        }),
    }
}

/// A server's text made safe for a terminal: control characters (escape sequences
/// included) shown escaped, tabs kept.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() && c != '\t' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// An error as the protocol carries it: the message and its hints.
pub(crate) fn error_event(e: &anyhow::Error) -> Event {
    if let Some(d) = e.downcast_ref::<crate::diagnostic::Diagnostic>() {
        return Event::Error {
            message: d.message.clone(),
            hints: d.hints.clone(),
        };
    }
    if let Some(ds) = e.downcast_ref::<crate::diagnostic::Diagnostics>() {
        return Event::Error {
            message: ds
                .0
                .iter()
                .map(|d| d.message.clone())
                .collect::<Vec<_>>()
                .join("; "),
            hints: ds.0.iter().flat_map(|d| d.hints.clone()).collect(),
        };
    }
    Event::Error {
        message: format!("{e:#}"),
        hints: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_bounded_and_torn_lines_end_the_stream() {
        let mut r: &[u8] = b"{\"a\":1}\n{\"b\"";
        assert_eq!(read_line(&mut r).unwrap().unwrap(), b"{\"a\":1}");
        assert!(read_line(&mut r).unwrap().is_none());
        let long = vec![b'x'; MAX_LINE as usize + 2];
        let mut r: &[u8] = &long;
        assert!(read_line(&mut r).is_err());
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape("a\u{1b}[31mb\tc\r"), "a\\u{1b}[31mb\tc\\r");
    }

    #[test]
    fn items_with_birth_times_travel() {
        let mut i = Item::new("/x", crate::state::Kind::Disk);
        i.born = Some(u128::from(u64::MAX) * 3);
        let mut v = Vec::new();
        send(&mut v, &Event::Present(vec![true])).unwrap();
        send(
            &mut v,
            &Request::Check {
                items: vec![i.clone()],
            },
        )
        .unwrap();
        let mut r: &[u8] = &v;
        assert!(matches!(
            receive::<Event>(&mut r).unwrap(),
            Some(Event::Present(p)) if p == vec![true]
        ));
        match receive::<Request>(&mut r).unwrap() {
            Some(Request::Check { items }) => assert_eq!(items, vec![i]),
            other => panic!("{other:?}"),
        }
    }
}

//! The framing of the channel to a server's `convirt __serve` (the typed messages are
//! `provision::proto`): JSON lines, each at most `MAX_LINE` bytes; each end's first line is
//! its greeting (`{"hello": ...}`), naming the protocol version and `convirt --version`.
//! A server's text is escaped before it reaches a terminal.

use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::path::PathBuf;

/// Raised whenever a message changes meaning; both ends must speak the same.
pub(crate) const VERSION: u32 = 2;

/// The longest line either end accepts (a job with its rendered texts fits many times).
pub(crate) const MAX_LINE: u64 = 8 << 20;

/// The greeting each end sends first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Hello {
    pub protocol: u32,
    /// `convirt --version` of the sender.
    pub convirt: String,
    /// How the server's convirt was found and where it is (`copy /root/.cache/...`);
    /// servers only.
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

/// The greeting line as it travels: `{"hello": {...}}`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Greeting {
    pub hello: Hello,
}

/// A server's facts, what planning for it needs (`"facts"` asks for them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Facts {
    pub host: crate::eval::Host,
    pub uid: u32,
    pub home: PathBuf,
    pub bridges: Vec<String>,
}

/// The answer to `"facts"`: `{"facts": {...}}`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct FactsAnswer {
    pub facts: Facts,
}

/// `convirt --version`, as clap prints it.
pub(crate) fn version() -> String {
    format!("convirt {}", env!("CARGO_PKG_VERSION"))
}

/// Writes one message as a line.
pub(crate) fn send<T: Serialize + ?Sized>(w: &mut dyn Write, msg: &T) -> std::io::Result<()> {
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
        Some(line) => parse(&line).map(Some).map_err(std::io::Error::other),
    }
}

/// One line as a message, or why not (the line shown escaped and cut short).
pub(crate) fn parse<T: for<'de> Deserialize<'de>>(line: &[u8]) -> Result<T, String> {
    serde_json::from_slice(line).map_err(|e| {
        format!(
            "an unreadable message ({e}): {}",
            escape(&String::from_utf8_lossy(&line[..line.len().min(200)]))
        )
    })
}

/// A server's text made safe for a terminal: control characters (escape sequences
/// included) shown escaped, tabs and line ends kept.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() && c != '\t' && c != '\n' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
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
        assert_eq!(escape("a\u{1b}[31mb\tc\r\n"), "a\\u{1b}[31mb\tc\\r\n");
    }
}

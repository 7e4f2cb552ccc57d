//! One ssh command carrying the protocol: its standard input takes our lines (and a work
//! tree), its standard output brings the server's events, read by a thread with every line
//! bounded; its standard error (ssh's words, or a shell's) is kept, bounded too.

use super::wire;
use std::io::{BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The most of a server's standard error kept for an error message.
const MAX_STDERR: usize = 64 << 10;

/// What came out of the channel.
#[derive(Debug)]
pub(crate) enum Msg {
    /// A message line, to be parsed by whoever knows its type.
    Line(Vec<u8>),
    /// A line from the bootstrap shell (`convirt-bootstrap: ...`), before convirt runs.
    Boot(String),
    /// A line that is not a message: the channel cannot be trusted from here on.
    Bad(String),
}

pub(crate) struct Channel {
    child: Child,
    input: Option<ChildStdin>,
    rx: mpsc::Receiver<Msg>,
    stderr: Option<std::thread::JoinHandle<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Channel {
    /// Starts `cmd` in its own process group (Ctrl-C on the terminal reaches convirt only,
    /// which then asks the server to stop).
    pub(crate) fn spawn(mut cmd: Command) -> std::io::Result<Channel> {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd.spawn()?;
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take();
        let reader = std::thread::spawn(move || {
            let Some(out) = out else { return };
            let mut r = BufReader::new(out);
            loop {
                let msg = match wire::read_line(&mut r) {
                    Ok(Some(l)) if l.starts_with(b"convirt-bootstrap: ") => {
                        Msg::Boot(String::from_utf8_lossy(&l[19..]).into_owned())
                    }
                    Ok(Some(l)) => Msg::Line(l),
                    Ok(None) => return,
                    Err(e) => Msg::Bad(e.to_string()),
                };
                let bad = matches!(msg, Msg::Bad(_));
                if tx.send(msg).is_err() || bad {
                    return;
                }
            }
        });
        let err = child.stderr.take();
        let stderr = std::thread::spawn(move || {
            let Some(mut err) = err else {
                return String::new();
            };
            let mut kept = Vec::new();
            let _ = (&mut err).take(MAX_STDERR as u64).read_to_end(&mut kept);
            // The rest is read and dropped, so the server never blocks on a full pipe.
            let _ = std::io::copy(&mut err, &mut std::io::sink());
            String::from_utf8_lossy(&kept).into_owned()
        });
        Ok(Channel {
            input: child.stdin.take(),
            child,
            rx,
            stderr: Some(stderr),
            reader: Some(reader),
        })
    }

    /// Sends one message; an error means the channel is gone.
    pub(crate) fn send<T: serde::Serialize + ?Sized>(&mut self, msg: &T) -> std::io::Result<()> {
        match self.input.as_mut() {
            Some(i) => wire::send(i, msg),
            None => Err(std::io::ErrorKind::BrokenPipe.into()),
        }
    }

    /// The input, to stream a work tree into (from another thread); `give_back` returns it.
    pub(crate) fn take_input(&mut self) -> Option<ChildStdin> {
        self.input.take()
    }

    pub(crate) fn give_back(&mut self, input: ChildStdin) {
        self.input = Some(input);
    }

    /// Whether our side is here to send on (not lent out by `take_input`, not closed).
    pub(crate) fn has_input(&self) -> bool {
        self.input.is_some()
    }

    /// Closes our side: the server sees its end of file.
    pub(crate) fn close_input(&mut self) {
        self.input = None;
    }

    /// The next message, waiting at most `wait`; `Err(true)` when the channel has ended.
    pub(crate) fn next(&self, wait: Duration) -> Result<Msg, bool> {
        match self.rx.recv_timeout(wait) {
            Ok(m) => Ok(m),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(false),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(true),
        }
    }

    /// The next message, however long it takes; `None` when the channel has ended.
    pub(crate) fn recv(&self) -> Option<Msg> {
        self.rx.recv().ok()
    }

    /// Waits for the command; returns what it said on standard error.
    pub(crate) fn finish(mut self) -> String {
        self.input = None;
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        self.stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        self.input = None;
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Writes `bytes` of `from` into `to` (a work tree into the channel).
pub(crate) fn stream(from: &mut dyn Read, to: &mut ChildStdin) -> std::io::Result<u64> {
    let n = std::io::copy(from, to)?;
    to.flush()?;
    Ok(n)
}

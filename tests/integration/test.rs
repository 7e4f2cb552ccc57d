//! One way to run convirt in a test, after casey/just's `Test`: arguments, environment and
//! stdin in; the expected stdout, stderr and exit status checked whole, with the world's
//! temp path shown as `[TMP]`. Outputs too long to write inline go to insta snapshots
//! (`insta::assert_snapshot!(t.run().stdout)`).

use crate::World;
use std::ffi::OsString;
use std::io::Write;
use std::process::Stdio;

/// A run of the real binary being set up. `World::test` makes one.
#[must_use = "a test does nothing until `.run()`"]
pub struct Test<'w> {
    world: &'w World,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    stdin: Option<String>,
    stdout: Option<String>,
    stderr: Option<String>,
    status: i32,
    stdout_closed: bool,
    stderr_closed: bool,
    filters: Vec<(regex::Regex, String)>,
}

/// What a run printed (filtered) and how it ended.
#[derive(Debug)]
pub struct Ran {
    pub stdout: String,
    pub stderr: String,
    pub status: Option<i32>,
}

impl Ran {
    /// stdout as JSON (fails the test when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

impl World {
    /// A test of this world's store (`--store <world>/store`), expecting exit 0 by default.
    pub fn test(&self) -> Test<'_> {
        Test {
            world: self,
            args: vec!["--store".into(), self.store().into()],
            env: Vec::new(),
            stdin: None,
            stdout: None,
            stderr: None,
            status: 0,
            stdout_closed: false,
            stderr_closed: false,
            filters: Vec::new(),
        }
    }
}

impl<'w> Test<'w> {
    /// Uses the world's `convirt.toml` (as the provisioning sandbox writes it) instead of
    /// `--store`.
    pub fn config(mut self) -> Self {
        self.args = vec![
            "--config".into(),
            self.world.path().join("convirt.toml").into(),
        ];
        self
    }

    /// Neither `--store` nor `--config`: what someone with nothing configured runs.
    pub fn bare(mut self) -> Self {
        self.args.clear();
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn stdin(mut self, text: impl Into<String>) -> Self {
        self.stdin = Some(text.into());
        self
    }

    /// The whole expected stdout (after filtering).
    pub fn stdout(mut self, text: impl Into<String>) -> Self {
        self.stdout = Some(text.into());
        self
    }

    /// The whole expected stderr (after filtering).
    pub fn stderr(mut self, text: impl Into<String>) -> Self {
        self.stderr = Some(text.into());
        self
    }

    /// The expected exit status (default 0).
    pub fn status(mut self, code: i32) -> Self {
        self.status = code;
        self
    }

    /// stdout is a pipe whose reader is already gone, as in `convirt ... | head -0`: every
    /// write fails with EPIPE, deterministically.
    pub fn stdout_closed(mut self) -> Self {
        self.stdout_closed = true;
        self
    }

    /// stderr is a pipe whose reader is already gone.
    pub fn stderr_closed(mut self) -> Self {
        self.stderr_closed = true;
        self
    }

    /// Replaces matches of `pattern` in both outputs with `with` (after the temp path).
    pub fn filter(mut self, pattern: &str, with: &str) -> Self {
        let re = regex::Regex::new(pattern).expect("filter pattern");
        self.filters.push((re, with.to_string()));
        self
    }

    fn clean(&self, bytes: &[u8]) -> String {
        let mut text = self.world.filter(&String::from_utf8_lossy(bytes));
        for (re, with) in &self.filters {
            text = re.replace_all(&text, with.as_str()).into_owned();
        }
        text
    }

    /// Runs the binary with a clean environment and checks what was set; returns the
    /// filtered outputs for further checks.
    #[track_caller]
    pub fn run(self) -> Ran {
        let mut c = self.world.command();
        c.args(&self.args)
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(if self.stdout_closed {
                closed_pipe()
            } else {
                Stdio::piped()
            })
            .stderr(if self.stderr_closed {
                closed_pipe()
            } else {
                Stdio::piped()
            });
        for (k, v) in &self.env {
            c.env(k, v);
        }
        let mut child = c.spawn().expect("start convirt");
        if let Some(text) = &self.stdin {
            let mut pipe = child.stdin.take().expect("stdin pipe");
            // A command that does not read its stdin may close it first.
            let _ = pipe.write_all(text.as_bytes());
        }
        let out = child.wait_with_output().expect("run convirt");
        let ran = Ran {
            stdout: self.clean(&out.stdout),
            stderr: self.clean(&out.stderr),
            status: out.status.code(),
        };
        let args: Vec<_> = self.args.iter().map(|a| a.to_string_lossy()).collect();
        assert_eq!(
            ran.status,
            Some(self.status),
            "convirt {}: exit status (signal {:?})\n--- stdout\n{}--- stderr\n{}",
            args.join(" "),
            std::os::unix::process::ExitStatusExt::signal(&out.status),
            ran.stdout,
            ran.stderr
        );
        if let Some(want) = &self.stdout {
            assert_eq!(&ran.stdout, want, "convirt {}: stdout", args.join(" "));
        }
        if let Some(want) = &self.stderr {
            assert_eq!(&ran.stderr, want, "convirt {}: stderr", args.join(" "));
        }
        ran
    }
}

/// One end of a connected socket pair whose other end is closed: writing to it fails with
/// EPIPE, exactly as a pipe whose reader exited does.
fn closed_pipe() -> Stdio {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().expect("socket pair");
    drop(theirs);
    Stdio::from(std::os::fd::OwnedFd::from(ours))
}

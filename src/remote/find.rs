//! Finding convirt on a server (docs/remote.md): `[hosts.NAME] convirt = PATH`; else
//! `convirt` on the server's PATH when its `--version` is exactly ours; else a copy of this
//! very program in the server user's cache, `~/.cache/convirt/bin/<SHA-256>`, written once
//! (atomically, mode 0700, its checksum verified on the server) and reused. One short POSIX
//! `sh` line picks and `exec`s it, so finding costs no round trip of its own; a server this
//! program cannot run on (another architecture, no glibc loader) is an error naming both.

use super::channel::{Channel, Msg};
use super::wire::{self, Greeting, Hello};
use super::{Target, command, ssh_error};
use crate::diagnostic::Diagnostic;
use std::io::Read;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The server's convirt: its path there and how it was found.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Found {
    pub path: String,
    /// `configured`, `path` or `copy`.
    pub how: String,
    /// The server's host key, when this connection logged in itself (no master).
    pub host_key: Option<String>,
}

impl Found {
    /// The remote command line that runs it.
    pub(crate) fn serve_command(&self) -> String {
        format!(
            "exec {} __serve --found {}",
            crate::value::shell_quote(&self.path),
            self.how
        )
    }

    /// How the summary names it.
    pub(crate) fn describe(&self) -> String {
        match self.how.as_str() {
            "configured" => format!("convirt {} (configured)", self.path),
            "path" => format!("convirt {} (on the server's PATH)", self.path),
            _ => format!("convirt {} (copied there by convirt)", self.path),
        }
    }
}

/// The dynamic loader this program needs, or none (a static build).
fn loader() -> &'static str {
    if cfg!(all(target_env = "gnu", target_arch = "x86_64")) {
        "/lib64/ld-linux-x86-64.so.2"
    } else if cfg!(all(target_env = "gnu", target_arch = "aarch64")) {
        "/lib/ld-linux-aarch64.so.1"
    } else {
        "/"
    }
}

/// The SHA-256 of this program (computed once per process).
pub(crate) fn own_digest() -> anyhow::Result<&'static str> {
    static DIGEST: OnceLock<Result<String, String>> = OnceLock::new();
    let d = DIGEST.get_or_init(|| {
        use sha2::Digest;
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut f = std::fs::File::open(&exe).map_err(|e| e.to_string())?;
        let mut h = sha2::Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(format!("{:x}", h.finalize()))
    });
    d.as_deref()
        .map_err(|e| anyhow::anyhow!("cannot read this program to copy it to a server: {e}"))
}

/// Starts computing `own_digest` on a thread of its own (once a process), so that the
/// ~25 MB read and hash overlap the ssh login instead of following it (issue #17: login and
/// probe). Whoever needs the digest then waits for the same computation.
pub(crate) fn prefetch_digest() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        std::thread::spawn(|| {
            let _ = own_digest();
        });
    });
}

/// A server path from the settings for the shell: `~/` is the remote home.
fn remote_path(p: &str) -> String {
    match p.strip_prefix("~/") {
        Some(rest) => format!("\"$HOME\"/{}", crate::value::shell_quote(rest)),
        None => crate::value::shell_quote(p),
    }
}

/// The remote command line that finds convirt and runs `__serve`, or says what it needs.
fn bootstrap(configured: Option<&str>) -> anyhow::Result<String> {
    if let Some(p) = configured {
        return Ok(format!(
            "exec {} __serve --found configured",
            remote_path(p)
        ));
    }
    let sha = own_digest()?;
    let want = crate::value::shell_quote(&wire::version());
    Ok(format!(
        "c=$(command -v convirt 2>/dev/null) && [ \"$(\"$c\" --version 2>/dev/null </dev/null)\" = {want} ] && exec \"$c\" __serve --found path; \
         c=\"$HOME/.cache/convirt/bin/{sha}\"; [ -x \"$c\" ] && exec \"$c\" __serve --found copy; \
         echo \"convirt-bootstrap: copy $(uname -m) $(test -e {loader} && echo yes || echo no)\"",
        loader = loader()
    ))
}

fn cannot_run(target: &Target, theirs: &str) -> anyhow::Error {
    Diagnostic::error(format!(
        "this convirt cannot run on `{}`: it is built for {} ({}), the server is {theirs}",
        target.name,
        std::env::consts::ARCH,
        if loader() == "/" {
            "static".to_string()
        } else {
            format!("glibc, {}", loader())
        }
    ))
    .with_hint(format!(
        "install convirt {} on the server (its package puts it on the PATH), or name it with `convirt = \"PATH\"` in [hosts.{}]",
        env!("CARGO_PKG_VERSION"),
        target.name
    ))
    .into()
}

/// Copies this program into the server user's cache (the bootstrap said it is missing).
fn copy_self(target: &Target, control: Option<&Path>, boot: &str) -> anyhow::Result<()> {
    let mut w = boot.split_whitespace();
    let (what, arch, has_loader) = (w.next(), w.next().unwrap_or("?"), w.next());
    if what != Some("copy") {
        return Err(Diagnostic::error(format!(
            "`{}` answered the search for convirt with `{}`",
            target.name,
            wire::escape(boot)
        ))
        .into());
    }
    if arch != std::env::consts::ARCH || has_loader != Some("yes") {
        let libc = if has_loader == Some("yes") {
            "with glibc"
        } else {
            "without this program's glibc loader"
        };
        return Err(cannot_run(target, &format!("{arch}, {libc}")));
    }
    let sha = own_digest()?;
    let exe = std::env::current_exe()?;
    let mut file = std::fs::File::open(&exe)?;
    let len = file.metadata()?.len();
    let script = format!(
        "umask 077; d=\"$HOME/.cache/convirt/bin\"; mkdir -p \"$d\" || exit 1; t=\"$d/.part.$$\"; \
         head -c {len} > \"$t\" || {{ rm -f \"$t\"; exit 1; }}; s=$(sha256sum < \"$t\"); s=${{s%% *}}; \
         if [ \"$s\" != {sha} ]; then rm -f \"$t\"; echo \"the copy's SHA-256 is $s, not {sha}\" >&2; exit 1; fi; \
         chmod 700 \"$t\" && mv -f \"$t\" \"$d/{sha}\""
    );
    let mut child = command(target, control, &[], &script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    if let Some(mut i) = child.stdin.take() {
        let _ = std::io::copy(&mut file, &mut i);
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        let said = wire::escape(&String::from_utf8_lossy(&out.stderr));
        return Err(Diagnostic::error(format!(
            "cannot copy convirt to `{}`: {}",
            target.name,
            said.trim()
        ))
        .with_hint(
            "install convirt there, or name it with `convirt = \"PATH\"` in the host's settings",
        )
        .into());
    }
    Ok(())
}

/// Sends `req` to the server's convirt (found, or copied there first) and returns its
/// answer (one message of type `A`) and how convirt was found.
pub(crate) fn ask<R: serde::Serialize + ?Sized, A: for<'de> serde::Deserialize<'de>>(
    target: &Target,
    control: Option<&Path>,
    req: &R,
) -> anyhow::Result<(A, Found)> {
    ask_within(target, control, req, None)
}

/// `ask`, giving up (and ending the ssh command) when the server has not answered within
/// `wait` of each attempt (copying convirt there is not counted).
pub(crate) fn ask_within<R: serde::Serialize + ?Sized, A: for<'de> serde::Deserialize<'de>>(
    target: &Target,
    control: Option<&Path>,
    req: &R,
    wait: Option<Duration>,
) -> anyhow::Result<(A, Found)> {
    let configured = target.settings.as_ref().and_then(|h| h.convirt.clone());
    for _ in 0..2 {
        let mut ch = Channel::spawn(command(
            target,
            control,
            &[],
            &bootstrap(configured.as_deref())?,
        ))?;
        let _ = ch.send(&Hello::ours(None));
        let _ = ch.send(req);
        let deadline = wait.map(|w| (Instant::now() + w, w));
        let next = |ch: &Channel| -> anyhow::Result<Option<Msg>> {
            let Some((end, w)) = deadline else {
                return Ok(ch.recv());
            };
            match ch.next(end.saturating_duration_since(Instant::now())) {
                Ok(m) => Ok(Some(m)),
                Err(true) => Ok(None),
                Err(false) => Err(Diagnostic::error(format!(
                    "`{}` did not answer within {} s",
                    target.name,
                    w.as_secs()
                ))
                .into()),
            }
        };
        let found = match hello(next(&ch)?, target) {
            Ok(f) => f,
            Err(Some(boot)) => {
                drop(ch);
                copy_self(target, control, &boot)?;
                continue;
            }
            Err(None) => return Err(broken(target, ch.finish(), configured.as_deref())),
        };
        let found = found?;
        match next(&ch)? {
            Some(Msg::Line(l)) => {
                ch.close_input();
                let mut found = found;
                found.host_key = super::host_key(&ch.finish());
                return wire::parse::<A>(&l).map(|a| (a, found)).map_err(|why| {
                    Diagnostic::error(format!(
                        "`{}` sent an unreadable answer: {why}",
                        target.name
                    ))
                    .into()
                });
            }
            Some(Msg::Bad(why)) => {
                return Err(Diagnostic::error(format!(
                    "`{}` sent an unreadable answer: {why}",
                    target.name
                ))
                .into());
            }
            _ => return Err(broken(target, ch.finish(), configured.as_deref())),
        }
    }
    Err(Diagnostic::error(format!(
        "convirt copied to `{}` was not found there afterwards",
        target.name
    ))
    .into())
}

/// The server's `Hello`: its convirt found and of our version (`Err(Some(line))`: the
/// bootstrap asks for a copy; `Err(None)`: nothing came).
fn hello(first: Option<Msg>, target: &Target) -> Result<anyhow::Result<Found>, Option<String>> {
    match first {
        Some(Msg::Boot(line)) => Err(Some(line)),
        Some(Msg::Line(l)) => match wire::parse::<Greeting>(&l) {
            Ok(g) => Ok(check_hello(&g.hello, target)),
            Err(why) => Ok(Err(Diagnostic::error(format!(
                "`{}` did not begin with a greeting: {why}",
                target.name
            ))
            .into())),
        },
        Some(Msg::Bad(why)) => Ok(Err(Diagnostic::error(format!(
            "`{}` sent an unreadable answer: {why}",
            target.name
        ))
        .into())),
        None => Err(None),
    }
}

/// The server's greeting must be this version and protocol exactly.
pub(crate) fn check_hello(h: &Hello, target: &Target) -> anyhow::Result<Found> {
    let (how, path) = h
        .found
        .as_deref()
        .and_then(|f| f.split_once(' '))
        .unwrap_or(("?", "convirt"));
    if h.convirt != wire::version() || h.protocol != wire::VERSION {
        return Err(Diagnostic::error(format!(
            "`{}` runs {} ({path}, protocol {}), this machine {} (protocol {})",
            target.name,
            wire::escape(&h.convirt),
            h.protocol,
            wire::version(),
            wire::VERSION
        ))
        .with_hint("both ends must be the same convirt: install this version there, or remove the `convirt` entry of the host's settings so that convirt copies itself there")
        .into());
    }
    Ok(Found {
        path: path.to_string(),
        how: how.to_string(),
        host_key: None,
    })
}

/// Nothing (or nothing readable) came: ssh's words, or a convirt that cannot run there.
fn broken(target: &Target, stderr: String, configured: Option<&str>) -> anyhow::Error {
    let s = stderr.to_ascii_lowercase();
    if s.contains("exec format error") || s.contains("cannot execute") {
        return cannot_run(target, "another architecture or libc (exec format error)");
    }
    if let Some(p) = configured
        && (s.contains("not found") || s.contains("no such file"))
    {
        return Diagnostic::error(format!(
            "convirt is not at `{p}` on `{}` (`convirt` of the host's settings)",
            target.name
        ))
        .with_hint("install it there, or remove the entry so that convirt copies itself there")
        .into();
    }
    ssh_error(target, &stderr)
}

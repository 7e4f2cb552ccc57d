//! Managed servers over the system OpenSSH client (spec §7, docs/remote.md): who a `--host`
//! names, one multiplexed connection per host per run (ControlMaster), `BatchMode`, strict
//! host keys, finding (or bringing) convirt on the server, the channel to its `convirt
//! __serve` (`wire`, `channel`; the typed messages and the server side are
//! `provision::proto` and `provision::serve`), and ssh failures turned into errors that say
//! what happened and what to do.

pub(crate) mod channel;
pub(crate) mod find;
pub(crate) mod wire;

pub(crate) use channel::Channel;

use crate::diagnostic::Diagnostic;
use crate::settings::HostSettings;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where one `--host` points.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Target {
    /// How the user named it: a `[hosts.NAME]` name or the `[user@]server[:port]` text.
    pub name: String,
    pub address: String,
    pub user: Option<String>,
    pub port: Option<u16>,
    /// The `[hosts.NAME]` entry, when the name is one.
    pub settings: Option<HostSettings>,
}

fn err(msg: impl Into<String>) -> anyhow::Error {
    Diagnostic::error(msg.into()).into()
}

/// Resolves a `--host` value: a `[hosts.NAME]` name first, else `[user@]server[:port]`
/// (`[v6addr]:port` for IPv6).
pub(crate) fn parse_target(
    spec: &str,
    hosts: &BTreeMap<String, HostSettings>,
) -> anyhow::Result<Target> {
    // Host names name directories (records, locks, log copies): never these.
    if matches!(spec, "" | "." | "..") {
        return Err(err(format!("`--host {spec}`: not a host name")));
    }
    if let Some(h) = hosts.get(spec) {
        check_word(&h.address, "address", spec)?;
        if let Some(u) = &h.user {
            check_word(u, "user", spec)?;
        }
        return Ok(Target {
            name: spec.to_string(),
            address: h.address.clone(),
            user: h.user.clone(),
            port: h.port,
            settings: Some(h.clone()),
        });
    }
    let (user, rest) = match spec.rsplit_once('@') {
        Some((u, r)) => (Some(u.to_string()), r),
        None => (None, spec),
    };
    let (address, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (a, tail) = v6
            .split_once(']')
            .ok_or_else(|| err(format!("`--host {spec}`: `[` without `]`")))?;
        match tail.strip_prefix(':') {
            Some(p) => (a.to_string(), Some(p)),
            None if tail.is_empty() => (a.to_string(), None),
            None => return Err(err(format!("`--host {spec}`: unexpected `{tail}`"))),
        }
    } else {
        match rest.split_once(':') {
            Some((a, p)) => (a.to_string(), Some(p)),
            None => (rest.to_string(), None),
        }
    };
    let port = match port {
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| err(format!("`--host {spec}`: `{p}` is not a port number")))?,
        ),
        None => None,
    };
    check_word(&address, "server", spec).map_err(|e| {
        let known: Vec<&str> = hosts.keys().map(String::as_str).collect();
        if known.is_empty() {
            e
        } else {
            err(format!(
                "{e} (hosts in the settings file: {})",
                known.join(", ")
            ))
        }
    })?;
    if let Some(u) = &user {
        check_word(u, "user", spec)?;
    }
    Ok(Target {
        name: spec.to_string(),
        address,
        user,
        port,
        settings: None,
    })
}

/// A server or user name goes to ssh as one argument: no option look-alikes, no blanks.
fn check_word(w: &str, what: &str, spec: &str) -> anyhow::Result<()> {
    let ok = !w.is_empty()
        && !w.starts_with('-')
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-:%".contains(c));
    if ok {
        Ok(())
    } else {
        Err(err(format!("`--host {spec}`: `{w}` is not a valid {what}")))
    }
}

/// The ssh command: `CONVIRT_SSH` (split at blanks, e.g. `ssh -F /path/config`), else `ssh`.
pub(crate) fn ssh_program() -> Vec<String> {
    match std::env::var("CONVIRT_SSH") {
        Ok(s) if !s.trim().is_empty() => s.split_whitespace().map(String::from).collect(),
        _ => vec!["ssh".into()],
    }
}

pub(crate) use wire::Facts;

/// What went wrong with an ssh connection, from ssh's own words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SshProblem {
    HostKeyChanged,
    HostKeyUnknown,
    AuthRefused,
    Unreachable,
    Lost,
    Other,
}

/// What ssh said, without its `-v` debugging lines (convirt asks for them only to learn the
/// server's host key, `host_key`).
pub(crate) fn said(stderr: &str) -> String {
    stderr
        .lines()
        .filter(|l| !l.starts_with("debug") && !l.starts_with("OpenSSH_"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The host key the server showed (`ssh-ed25519 SHA256:...`), from ssh's `-v` lines.
pub(crate) fn host_key(stderr: &str) -> Option<String> {
    stderr.lines().find_map(|l| {
        l.split_once("Server host key: ")
            .map(|(_, k)| wire::escape(k.trim()))
    })
}

pub(crate) fn classify(stderr: &str) -> SshProblem {
    let s = said(stderr).to_ascii_lowercase();
    if s.contains("remote host identification has changed")
        || s.contains("host key for") && s.contains("has changed")
    {
        SshProblem::HostKeyChanged
    } else if s.contains("host key verification failed")
        || s.contains("no ") && s.contains("host key is known")
    {
        SshProblem::HostKeyUnknown
    } else if s.contains("permission denied") || s.contains("too many authentication failures") {
        SshProblem::AuthRefused
    } else if s.contains("connection refused")
        || s.contains("could not resolve hostname")
        || s.contains("no route to host")
        || s.contains("network is unreachable")
        || s.contains("connection timed out")
        || s.contains("operation timed out")
    {
        SshProblem::Unreachable
    } else if s.contains("broken pipe")
        || s.contains("connection reset")
        || s.contains("closed by remote host")
        || s.contains("timeout, server")
        || s.contains("mux_client")
    {
        SshProblem::Lost
    } else {
        SshProblem::Other
    }
}

/// An ssh failure as an error naming the host and what to do.
pub(crate) fn ssh_error(t: &Target, stderr: &str) -> anyhow::Error {
    // A server's words reach the terminal with their control characters escaped.
    let stderr = &wire::escape(&said(stderr).replace('\r', ""));
    let shown: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('@') && !l.starts_with("CONVIRT:"))
        .collect();
    let tail = shown[shown.len().saturating_sub(4)..].join("\n  ");
    let host = &t.name;
    let addr = t.display_address();
    let d = match classify(stderr) {
        SshProblem::HostKeyChanged => Diagnostic::error(format!(
            "the host key of `{host}` ({addr}) has CHANGED since it was recorded in known_hosts; not connecting"
        ))
        .with_hint("if the server was reinstalled, check its new key out of band, remove the old one with `ssh-keygen -R HOST` and connect once with `ssh` to record it; otherwise someone may be intercepting the connection"),
        SshProblem::HostKeyUnknown => Diagnostic::error(format!(
            "the host key of `{host}` ({addr}) is not known (not in known_hosts); convirt never accepts a host key by itself"
        ))
        .with_hint("connect once with `ssh` and check the fingerprint, or add the server's key to ~/.ssh/known_hosts"),
        SshProblem::AuthRefused => Diagnostic::error(format!(
            "`{host}` ({addr}) refused the authentication"
        ))
        .with_hint("convirt logs in without a password (BatchMode): load a key into ssh-agent or name one with IdentityFile in ~/.ssh/config, and put its public key into the server's authorized_keys"),
        SshProblem::Unreachable => Diagnostic::error(format!("`{host}` ({addr}) is unreachable"))
            .with_hint(if t.settings.is_none() {
                "check the address and port, and that sshd runs on the server (the name is not a `[hosts.NAME]` of the settings file)"
            } else {
                "check the address and port, and that sshd runs on the server"
            }),
        SshProblem::Lost => Diagnostic::error(format!("the connection to `{host}` ({addr}) was lost")),
        SshProblem::Other => Diagnostic::error(format!("ssh to `{host}` ({addr}) failed")),
    };
    let d = if tail.is_empty() {
        d
    } else {
        d.with_hint(format!("ssh said:\n  {tail}"))
    };
    d.into()
}

impl Target {
    pub(crate) fn display_address(&self) -> String {
        let mut s = String::new();
        if let Some(u) = &self.user {
            s.push_str(u);
            s.push('@');
        }
        if self.address.contains(':') {
            s.push_str(&format!("[{}]", self.address));
        } else {
            s.push_str(&self.address);
        }
        if let Some(p) = self.port {
            s.push_str(&format!(":{p}"));
        }
        s
    }
}

/// One shared connection to a server for the whole run. The control socket lives in a
/// private temporary directory; dropping the session closes the master.
pub(crate) struct Session {
    pub target: Target,
    _dir: tempfile::TempDir,
    control: PathBuf,
    pub facts: Facts,
    /// The server's convirt and how it was found.
    pub convirt: find::Found,
    /// The host key the server showed at login.
    pub host_key: Option<String>,
    /// Channels whose `__serve` answered a provisioning run and waits for the next one
    /// (issue #17: one channel for a host's VMs, not one ssh and one convirt a VM).
    idle: std::sync::Mutex<Vec<channel::Channel>>,
}

impl Session {
    /// An ssh command through this session's master, ready for a remote command line.
    pub(crate) fn command(&self, remote: &str) -> Command {
        command(&self.target, Some(&self.control), &[], remote)
    }

    /// `convirt __serve` on the server, through this session's master.
    pub(crate) fn serve(&self) -> Command {
        self.command(&self.convirt.serve_command())
    }

    /// A channel that has greeted the server already and waits for a provisioning request,
    /// if one is idle.
    pub(crate) fn idle_channel(&self) -> Option<channel::Channel> {
        self.idle.lock().ok()?.pop()
    }

    /// Keeps a channel whose run ended with its answer for the next run.
    pub(crate) fn keep_channel(&self, ch: channel::Channel) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(ch);
        }
    }

    /// Opens the master connection, finds convirt on the server (copying it there when
    /// needed) and asks for the server's facts (one round trip after login).
    pub(crate) fn open(target: &Target) -> anyhow::Result<Session> {
        if target.settings.as_ref().is_none_or(|h| h.convirt.is_none()) {
            find::prefetch_digest();
        }
        let dir = tempfile::Builder::new()
            .prefix("convirt-ssh-")
            .tempdir()
            .map_err(|e| err(format!("cannot create a private directory for ssh: {e}")))?;
        let control = dir.path().join("m");
        let errlog = dir.path().join("master.err");
        let errfile = std::fs::File::create(&errlog)
            .map_err(|e| err(format!("cannot write `{}`: {e}", errlog.display())))?;
        // `-f -N`: log in, then go to the background as the master (which exits by itself a
        // minute after its last use should convirt die without closing it). Its stderr goes to a
        // file: a pipe would be held open by the backgrounded master.
        let status = command(
            target,
            Some(&control),
            &[
                "-o",
                "ControlMaster=yes",
                "-o",
                "ControlPersist=60",
                "-f",
                "-N",
            ],
            "",
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(errfile)
        .status()
        .map_err(|e| err(format!("cannot run ssh ({}): {e}", ssh_program().join(" "))))?;
        let stderr = std::fs::read_to_string(&errlog).unwrap_or_default();
        if !status.success() || !control.exists() {
            return Err(ssh_error(target, &stderr));
        }
        let (answer, convirt): (wire::FactsAnswer, _) = find::ask(target, Some(&control), "facts")?;
        let facts = answer.facts;
        let host_key = host_key(&std::fs::read_to_string(&errlog).unwrap_or_default());
        Ok(Session {
            target: target.clone(),
            _dir: dir,
            control,
            facts,
            convirt,
            host_key,
            idle: std::sync::Mutex::new(Vec::new()),
        })
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // The idle channels first: their servers see the end of input and exit.
        if let Ok(idle) = self.idle.get_mut() {
            for ch in idle.iter_mut() {
                ch.close_input();
            }
            for ch in idle.drain(..) {
                let _ = ch.finish();
            }
        }
        if mux_terminate(&self.control).is_err() {
            let _ = command(&self.target, Some(&self.control), &["-O", "exit"], "")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Asks the master on `control` to exit, speaking OpenSSH's multiplexing protocol
/// (PROTOCOL.mux: a hello each way, then `MUX_C_TERMINATE`, answered `MUX_S_OK`) instead of
/// starting `ssh -O exit`, a program of ~7 ms here (issue #17: login and probe). Any
/// surprise is an error, and the caller falls back to `ssh -O exit`.
fn mux_terminate(control: &Path) -> std::io::Result<()> {
    use std::io::{Read, Write};
    const HELLO: u32 = 0x0000_0001;
    const TERMINATE: u32 = 0x1000_0005;
    const OK: u32 = 0x8000_0001;
    fn packet(words: &[u32]) -> Vec<u8> {
        let body: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
        let mut p = (body.len() as u32).to_be_bytes().to_vec();
        p.extend(body);
        p
    }
    fn read_packet(s: &mut std::os::unix::net::UnixStream) -> std::io::Result<Vec<u8>> {
        let mut len = [0u8; 4];
        s.read_exact(&mut len)?;
        let len = u32::from_be_bytes(len) as usize;
        if len > 1 << 16 {
            return Err(std::io::Error::other("an over-long mux message"));
        }
        let mut body = vec![0u8; len];
        s.read_exact(&mut body)?;
        Ok(body)
    }
    let word = |b: &[u8], i: usize| -> Option<u32> {
        Some(u32::from_be_bytes(b.get(i..i + 4)?.try_into().ok()?))
    };
    let mut s = std::os::unix::net::UnixStream::connect(control)?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    s.write_all(&packet(&[HELLO, 4]))?;
    let hello = read_packet(&mut s)?;
    if word(&hello, 0) != Some(HELLO) {
        return Err(std::io::Error::other("no mux hello"));
    }
    s.write_all(&packet(&[TERMINATE, 1]))?;
    // The master may quit before its `MUX_S_OK` leaves (OpenSSH 9.2 does): the end of the
    // stream says the same. A refusal is a `MUX_S_PERMISSION_DENIED` answer.
    match read_packet(&mut s) {
        Ok(answer) if word(&answer, 0) == Some(OK) && word(&answer, 4) == Some(1) => Ok(()),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
            ) =>
        {
            Ok(())
        }
        Ok(_) => Err(std::io::Error::other("the master did not agree to exit")),
        Err(e) => Err(e),
    }
}

/// An ssh command line: the user's ssh (and so their ~/.ssh/config, agent and keys), with
/// the options a run without a terminal needs.
pub(crate) fn command(t: &Target, control: Option<&Path>, extra: &[&str], remote: &str) -> Command {
    let prog = ssh_program();
    let mut c = Command::new(&prog[0]);
    c.args(&prog[1..]);
    // Never a password prompt; never a host key accepted silently.
    c.args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"]);
    // Debugging output, for the one line naming the server's host key (`host_key`): a
    // record keeps it, and a server whose key differs is refused (issue #18.4).
    if control.is_none() || extra.contains(&"ControlMaster=yes") {
        c.arg("-v");
    }
    c.args(["-o", "ConnectTimeout=10"]);
    // A dead connection is noticed within about 15 s instead of hanging.
    c.args(["-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"]);
    match control {
        Some(p) => {
            c.arg("-o").arg(format!("ControlPath={}", p.display()));
        }
        None => {
            c.args(["-o", "ControlPath=none"]);
        }
    }
    c.args(extra);
    if let Some(p) = t.port {
        c.arg("-p").arg(p.to_string());
    }
    if let Some(u) = &t.user {
        c.arg("-l").arg(u);
    }
    c.arg("--").arg(&t.address);
    if !remote.is_empty() {
        c.arg(remote);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts() -> BTreeMap<String, HostSettings> {
        let h: HostSettings =
            toml::from_str("address = 'xen1.example.com'\nuser = 'admin'\nport = 2222\n").unwrap();
        [("xen1".to_string(), h)].into_iter().collect()
    }

    #[test]
    fn targets_by_name_and_by_address() {
        let t = parse_target("xen1", &hosts()).unwrap();
        assert_eq!(
            (t.address.as_str(), t.user.as_deref(), t.port),
            ("xen1.example.com", Some("admin"), Some(2222))
        );
        assert!(t.settings.is_some());
        let t = parse_target("root@10.0.0.5:2200", &hosts()).unwrap();
        assert_eq!(
            (t.address.as_str(), t.user.as_deref(), t.port),
            ("10.0.0.5", Some("root"), Some(2200))
        );
        assert!(t.settings.is_none());
        let t = parse_target("[::1]:22", &hosts()).unwrap();
        assert_eq!((t.address.as_str(), t.port), ("::1", Some(22)));
        assert_eq!(t.display_address(), "[::1]:22");
        let t = parse_target("xen2", &hosts()).unwrap();
        assert_eq!((t.address.as_str(), t.user, t.port), ("xen2", None, None));
    }

    #[test]
    fn hostile_targets_are_refused() {
        for bad in [
            "-oProxyCommand=x",
            "a b",
            "root@",
            "h:0",
            "h:99999",
            "h:x",
            "u;x@h",
            "[::1",
            "",
            ".",
            "..",
        ] {
            assert!(parse_target(bad, &hosts()).is_err(), "{bad} accepted");
        }
        let e = parse_target("-x", &hosts()).unwrap_err().to_string();
        assert!(e.contains("xen1"), "{e}");
    }

    #[test]
    fn ssh_messages_are_classified() {
        use SshProblem::*;
        for (text, want) in [
            (
                "@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\nHost key verification failed.",
                HostKeyChanged,
            ),
            (
                "No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict checking.\nHost key verification failed.",
                HostKeyUnknown,
            ),
            (
                "root@127.0.0.1: Permission denied (publickey).",
                AuthRefused,
            ),
            (
                "ssh: connect to host 127.0.0.1 port 1: Connection refused",
                Unreachable,
            ),
            (
                "ssh: Could not resolve hostname nowhere: Name or service not known",
                Unreachable,
            ),
            ("client_loop: send disconnect: Broken pipe", Lost),
            ("something else", Other),
        ] {
            assert_eq!(classify(text), want, "{text}");
        }
        let t = parse_target("xen1", &hosts()).unwrap();
        let e = ssh_error(&t, "Host key verification failed.").to_string();
        assert!(e.contains("xen1"), "{e}");
    }
}

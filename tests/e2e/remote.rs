//! Provisioning onto managed servers (issue #9) over the real OpenSSH: each test starts
//! private `sshd`s on 127.0.0.1 (own host key, own config, free port) and points convirt at
//! them with `CONVIRT_SSH="ssh -F <test config>"`, so nobody's own ssh setup is touched.
//! The "server" is this machine through loopback, with server-side paths that differ from
//! the local ones, so "nothing lands locally" is checked for real.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn sh(cmd: &mut Command) -> Output {
    let o = cmd.output().expect("run");
    assert!(o.status.success(), "{cmd:?}: {}", text(&o.stderr));
    o
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every file and directory under `dir`, relative, sorted.
pub fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            out.push(p.strip_prefix(base).unwrap().display().to_string());
            if p.is_dir() && !p.is_symlink() {
                walk(base, &p, out);
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// A private sshd; stopped (by its pid) when dropped.
pub struct Sshd {
    pub port: u16,
    dir: PathBuf,
    /// The daemon; `None` while stopped (`stop`, `restart`).
    child: std::sync::Mutex<Option<Child>>,
}

impl Sshd {
    fn start(dir: &Path, authorized: &Path, extra: &str) -> Sshd {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let key = dir.join("host_key");
        sh(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key));
        let port = free_port();
        let conf = dir.join("sshd_config");
        std::fs::write(
            &conf,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\nUsePAM no\nStrictModes no\n\
                 AuthorizedKeysFile {}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\nLogLevel ERROR\n{extra}",
                key.display(),
                dir.join("sshd.pid").display(),
                authorized.display()
            ),
        )
        .unwrap();
        let sshd = Sshd {
            port,
            dir: dir.to_path_buf(),
            child: std::sync::Mutex::new(None),
        };
        sshd.restart();
        sshd
    }

    /// Starts the daemon (again) on its port, with its config and host key.
    pub fn restart(&self) {
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(self.dir.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sshd");
        *self.child.lock().unwrap() = Some(child);
        let port = self.port;
        wait_for("sshd to listen", 10, || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }

    /// Stops the daemon (by its pid); its sessions go on, as when a server's sshd stops.
    pub fn stop(&self) {
        if let Some(mut c) = self.child.lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn known_hosts_line(&self) -> String {
        let public = std::fs::read_to_string(self.dir.join("host_key.pub")).unwrap();
        let mut f = public.split_whitespace();
        format!(
            "[127.0.0.1]:{} {} {}\n",
            self.port,
            f.next().unwrap(),
            f.next().unwrap()
        )
    }

    /// The per-connection sshd processes (the daemon's children).
    pub fn sessions(&self) -> Vec<i32> {
        let Some(me) = self.child.lock().unwrap().as_ref().map(|c| c.id() as i32) else {
            return vec![];
        };
        processes()
            .into_iter()
            .filter(|(_, ppid, _)| *ppid == me)
            .map(|(pid, _, _)| pid)
            .collect()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A local store and settings, a client key and ssh config, and servers.
pub struct World {
    _tmp: tempfile::TempDir,
    pub root: PathBuf,
    ssh_config: PathBuf,
    pub servers: Vec<Sshd>,
}

const HOSTS: &str = "srv";

impl World {
    /// `n` servers `srv0`, `srv1`, ... as `[hosts.*]` for `user` (root when None).
    pub fn new(n: usize, user: Option<&str>) -> World {
        World::new_with(n, user, "")
    }

    /// As `new`, with lines added to every sshd's config (e.g. `SetEnv PATH=...`).
    pub fn new_with(n: usize, user: Option<&str>, sshd_extra: &str) -> World {
        let tmp = tempfile::Builder::new()
            .prefix("convirt-e2e-remote.")
            .tempdir()
            .unwrap();
        let root = tmp.path().to_path_buf();
        // A normal user on the server side must reach the authorized_keys file.
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let key = root.join("client_key");
        sh(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key));
        let authorized = root.join("authorized_keys");
        std::fs::copy(root.join("client_key.pub"), &authorized).unwrap();
        std::fs::set_permissions(&authorized, std::fs::Permissions::from_mode(0o644)).unwrap();
        let servers: Vec<Sshd> = (0..n)
            .map(|i| Sshd::start(&root.join(format!("sshd{i}")), &authorized, sshd_extra))
            .collect();
        let known: String = servers.iter().map(Sshd::known_hosts_line).collect();
        std::fs::write(root.join("known_hosts"), known).unwrap();
        let ssh_config = root.join("ssh_config");
        std::fs::write(
            &ssh_config,
            format!(
                "Host *\n  IdentityFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  GlobalKnownHostsFile /dev/null\n  LogLevel ERROR\n",
                key.display(),
                root.join("known_hosts").display()
            ),
        )
        .unwrap();
        let w = World {
            _tmp: tmp,
            root,
            ssh_config,
            servers,
        };
        let store = w.root.join("store");
        sh(Command::new(env!("CARGO_BIN_EXE_convirt"))
            .args(["store", "init"])
            .arg(&store)
            .env("HOME", w.root.join("home")));
        // Two test images: one fails after making its disk, one waits after making it.
        let slow = format!("echo waiting; {}", slow_sleep());
        for (name, last) in [("Fails", "echo boom; exit 3"), ("Slow", slow.as_str())] {
            let dir = store.join(name);
            sh(Command::new("cp")
                .arg("-a")
                .arg(store.join("Linux_CD_Install"))
                .arg(&dir));
            // The shipped steps first (they make the disk), then the test's last step.
            let p = dir.join("provision.sh");
            std::fs::rename(&p, dir.join("provision.orig.sh")).unwrap();
            std::fs::write(
                &p,
                format!(
                    "#!/bin/bash\n\"$(dirname -- \"$0\")/provision.orig.sh\" \"$@\" || exit\n{last}\n"
                ),
            )
            .unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        // `xen_auto_dir` locally does not follow `[variables] VM_CONF_DIR` (a server's does
        // follow its `VM_CONF_DIR`): without it a local `--autostart` would link in /etc/xen/auto.
        let mut toml = format!(
            "image_store = '{}'\nlog_dir = '{r}/local/log'\nwork_dir = '{r}/local/work'\n\
             xen_auto_dir = '{r}/local/xen/auto'\n\
             [variables]\nVM_DISKS_DIR = '{r}/local/disks'\nVM_CONF_DIR = '{r}/local/xen'\n",
            store.display(),
            r = w.root.display()
        );
        for (i, s) in w.servers.iter().enumerate() {
            let srv = w.srv(i);
            toml.push_str(&format!(
                "[hosts.{HOSTS}{i}]\naddress = '127.0.0.1'\nport = {}\n",
                s.port
            ));
            match user {
                None => toml.push_str(&format!(
                    "user = 'root'\nlog_dir = '{s}/log'\nwork_dir = '{s}/work'\nstate_dir = '{s}/state'\nVM_DISKS_DIR = '{s}/disks'\nVM_CONF_DIR = '{s}/xen'\n",
                    s = srv.display()
                )),
                Some(u) => toml.push_str(&format!("user = '{u}'\n")),
            }
        }
        std::fs::write(w.root.join("convirt.toml"), toml).unwrap();
        w
    }

    pub fn srv(&self, i: usize) -> PathBuf {
        self.root.join(format!("srv{i}"))
    }

    pub fn local(&self) -> PathBuf {
        self.root.join("local")
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_convirt"));
        c.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.root.join("home"))
            .env("USER", "tester")
            .env("CONVIRT_STATE_DIR", self.root.join("local/state"))
            .env("CONVIRT_CONFIG", self.root.join("convirt.toml"))
            .env(
                "CONVIRT_SSH",
                format!("ssh -F {}", self.ssh_config.display()),
            )
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// `provision` of `vms` with `image` on `host`, then `extra`.
    pub fn provision(&self, host: &str, vms: &[&str], image: &str, extra: &[&str]) -> Output {
        self.run(&provision_args(host, vms, image, extra))
    }

    /// `args` in the background, stdout and stderr piped (`quiet`: discarded).
    pub fn spawn(&self, args: &[&str], quiet: bool) -> Child {
        let out = || if quiet { Stdio::null() } else { Stdio::piped() };
        self.cmd(args).stdout(out()).stderr(out()).spawn().unwrap()
    }

    /// The Slow image's provisioning of `vm` on srv0 (with `extra`) in the background, as
    /// `spawn`; returned with the path of its disk once that is on the server.
    pub fn slow_on_srv0(&self, vm: &str, extra: &[&str], quiet: bool) -> (Child, PathBuf) {
        let child = self.spawn(&provision_args("srv0", &[vm], "Slow", extra), quiet);
        let disk = self.srv(0).join(format!("disks/{vm}.disk.xm"));
        wait_for("the disk on the server", 30, || disk.exists());
        (child, disk)
    }

    /// `--json vm list`, parsed.
    pub fn json_list(&self) -> serde_json::Value {
        let o = self.run(&["--json", "vm", "list"]);
        serde_json::from_slice(&o.stdout).unwrap()
    }

    /// Appends `text` to the settings file.
    pub fn add_settings(&self, text: &str) {
        let path = self.root.join("convirt.toml");
        let mut toml = std::fs::read_to_string(&path).unwrap();
        toml.push_str(text);
        std::fs::write(path, toml).unwrap();
    }
}

/// The test disks' size, as most runs set it.
pub const DISK16: &[&str] = &["--set", "hda_disk_size=16"];

/// `provision --host HOST --vm VMS... --image IMAGE EXTRA...`.
pub fn provision_args<'a>(
    host: &'a str,
    vms: &[&'a str],
    image: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec!["provision", "--host", host, "--vm"];
    args.extend_from_slice(vms);
    args.extend_from_slice(&["--image", image]);
    args.extend_from_slice(extra);
    args
}

/// Sends `sig` to a child this test started, then collects what it wrote.
pub fn signal(child: Child, sig: i32) -> Output {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, sig) };
    child.wait_with_output().unwrap()
}

/// Kills the given sshd session processes (the test's own sshd's children).
pub fn kill_sessions(sessions: Vec<i32>) {
    for pid in sessions {
        // SAFETY: the session processes of an sshd this test started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// The stderr of a run that must have exited with `code`.
#[track_caller]
pub fn failed(o: &Output, code: i32) -> String {
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(code), "{err}");
    err
}

/// The stdout of a run that must have succeeded.
#[track_caller]
pub fn succeeded(o: &Output) -> String {
    let out = text(&o.stdout);
    assert!(o.status.success(), "{out}{}", text(&o.stderr));
    out
}

pub fn xl_accepts(file: &Path) {
    let o = Command::new("bash")
        .arg(repo().join("tests/xen/xl-check.sh"))
        .arg(file)
        .env("XEN_CHECK_STRICT", "1")
        .output()
        .unwrap();
    match o.status.code() {
        Some(0) => {}
        Some(77) if std::env::var_os("CI").is_none() => {
            eprintln!("SKIP xl check: {}", text(&o.stderr))
        }
        _ => panic!(
            "xl refused {}: {}{}",
            file.display(),
            text(&o.stdout),
            text(&o.stderr)
        ),
    }
}

/// Every process: pid, parent pid, command line (from /proc, so no procps is needed).
pub fn processes() -> Vec<(i32, i32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold blanks and parentheses.
        let Some(ppid) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
        else {
            continue;
        };
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        out.push((pid, ppid, text(&cmd).replace('\0', " ")));
    }
    out
}

/// The `Slow` image's last step: a sleep whose command line is this test process's own, so
/// that the process checks never see another run's scripts (two test runs on one machine).
pub fn slow_sleep() -> String {
    format!("sleep 373.{}", std::process::id())
}

pub fn script_running() -> bool {
    let me = slow_sleep();
    processes().iter().any(|(_, _, c)| c.trim() == me)
}

pub fn no_script_left() {
    assert!(!script_running(), "a remote script survived");
}

#[test]
fn provisions_on_the_server_and_nothing_locally() {
    let w = World::new(1, None);
    let out = succeeded(&w.provision("srv0", &["r1"], "Linux_CD_Install", DISK16));
    let srv = w.srv(0);
    let cfg = srv.join("xen/r1.cfg");
    let log = srv.join("log/Linux_CD_Install/Linux_CD_Install_r1.log");
    assert!(out.contains(&format!("config: {}", cfg.display())), "{out}");
    assert!(out.contains("on `srv0`"), "{out}");
    xl_accepts(&cfg);
    assert_eq!(
        std::fs::metadata(&cfg).unwrap().permissions().mode() & 0o777,
        0o644
    );
    assert!(
        std::fs::read_to_string(&cfg)
            .unwrap()
            .contains("name = \"r1\"")
    );
    let disk = srv.join("disks/r1.disk.xm");
    assert_eq!(std::fs::metadata(&disk).unwrap().len(), 16 * 1024 * 1024);
    let logtext = std::fs::read_to_string(&log).unwrap();
    assert!(
        logtext.contains("Provisioning of VM r1 completed"),
        "{logtext}"
    );
    assert!(logtext.contains("installed VM config"), "{logtext}");
    assert_eq!(
        std::fs::metadata(&log).unwrap().permissions().mode() & 0o777,
        0o640
    );
    // The work directory and the lock are gone; only the locks directory stays.
    assert_eq!(tree(&srv.join("work")), vec!["locks"]);
    // Locally: only the copy of the log, apart from the local runs' logs.
    let copy = w
        .local()
        .join("log/hosts/srv0/Linux_CD_Install/Linux_CD_Install_r1.log");
    assert!(out.contains(&copy.display().to_string()), "{out}");
    assert!(
        std::fs::read_to_string(&copy)
            .unwrap()
            .contains("Provisioning of VM r1 completed")
    );
    // ... and the record of the remote VM (docs/records.md).
    assert_eq!(
        tree(&w.local()),
        vec![
            "log",
            "log/hosts",
            "log/hosts/srv0",
            "log/hosts/srv0/Linux_CD_Install",
            "log/hosts/srv0/Linux_CD_Install/Linux_CD_Install_r1.log",
            "state",
            "state/hosts",
            "state/hosts/srv0",
            "state/hosts/srv0/r1",
            "state/hosts/srv0/r1/record.json",
            "state/remote-locks",
            "state/remote-locks/srv0",
            "state/remote-locks/srv0/locks",
        ]
    );
    // A second run refuses: the VM is recorded on that server.
    let err = failed(&w.provision("srv0", &["r1"], "Linux_CD_Install", DISK16), 1);
    assert!(
        err.contains("cannot provision `r1` on `srv0`: it was provisioned there already"),
        "{err}"
    );
    assert_eq!(tree(&srv.join("work")), vec!["locks"]);
}

#[test]
fn dry_run_probes_the_server_and_writes_nothing() {
    let w = World::new(1, None);
    let dry_run = provision_args("srv0", &["d1"], "Linux_CD_Install", &["--dry-run"]);
    let out = succeeded(&w.run(&dry_run));
    let node = text(&sh(Command::new("uname").arg("-n")).stdout);
    assert!(out.contains(&format!("node name {}", node.trim())), "{out}");
    assert!(
        out.contains(&format!("{}/xen/d1.cfg", w.srv(0).display())),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "{}/work/d1.XXXXXX/image_store",
            w.srv(0).display()
        )),
        "{out}"
    );
    assert!(!w.srv(0).exists());
    assert!(!w.local().exists());
    // The server's machine is what computed options see, unless `--arch` says otherwise.
    let machine = text(&sh(Command::new("uname").arg("-m")).stdout);
    assert!(
        out.contains(&format!("arch = '{}'", machine.trim())),
        "{out}"
    );
    let o = w.run(&[&["--arch", "aarch64"][..], &dry_run].concat());
    assert!(
        text(&o.stdout).contains("arch = 'aarch64'"),
        "{}",
        text(&o.stdout)
    );
}

#[test]
fn a_failing_script_leaves_only_the_log_on_the_server() {
    let w = World::new(1, None);
    let err = failed(&w.provision("srv0", &["f1"], "Fails", DISK16), 1);
    assert!(err.contains("exited with status 3 on `srv0`"), "{err}");
    assert!(err.contains("boom"), "{err}");
    let srv = w.srv(0);
    assert!(
        err.contains(&format!(
            "removed what this run created: {}/disks/f1.disk.xm",
            srv.display()
        )),
        "{err}"
    );
    assert!(!srv.join("disks/f1.disk.xm").exists());
    assert!(!srv.join("xen/f1.cfg").exists());
    assert!(srv.join("log/Fails/Fails_f1.log").exists());
    assert_eq!(tree(&srv.join("work")), vec!["locks"]);
}

#[test]
fn ctrl_c_stops_the_remote_process_group_and_cleans_up() {
    let w = World::new(1, None);
    let (child, disk) = w.slow_on_srv0("c1", DISK16, false);
    wait_for("the remote script", 10, script_running);
    let err = failed(&signal(child, libc::SIGINT), 130);
    assert!(
        err.contains("interrupted (Ctrl-C) and stopped on `srv0`"),
        "{err}"
    );
    assert!(!disk.exists());
    no_script_left();
    assert_eq!(tree(&w.srv(0).join("work")), vec!["locks"]);
}

#[test]
fn a_dropped_connection_is_reported_and_the_server_cleans_up() {
    let w = World::new(1, None);
    let (child, disk) = w.slow_on_srv0("k1", DISK16, false);
    std::thread::sleep(Duration::from_millis(300));
    let sessions = w.servers[0].sessions();
    assert!(!sessions.is_empty());
    kill_sessions(sessions);
    let err = failed(&child.wait_with_output().unwrap(), 1);
    assert!(
        err.contains("the connection to `srv0` was lost mid-run"),
        "{err}"
    );
    assert!(err.contains("reconnected to `srv0`"), "{err}");
    assert!(
        err.contains(&format!(
            "removed what this run created: {}",
            disk.display()
        )),
        "{err}"
    );
    assert!(!disk.exists());
    no_script_left();
    let log = std::fs::read_to_string(w.srv(0).join("log/Slow/Slow_k1.log")).unwrap();
    assert!(log.contains("the connection to convirt was lost"), "{log}");
    assert_eq!(tree(&w.srv(0).join("work")), vec!["locks"]);
}

#[test]
fn host_keys_authentication_and_reachability_are_clear_errors() {
    let w = World::new(1, None);
    let vm = provision_args("srv0", &["h1"], "Linux_CD_Install", &[]);
    let known = w.root.join("known_hosts");
    let good = std::fs::read_to_string(&known).unwrap();

    // A changed host key.
    let other = w.root.join("other_key");
    sh(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other));
    let public = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let mut f = public.split_whitespace();
    let line = format!(
        "[127.0.0.1]:{} {} {}\n",
        w.servers[0].port,
        f.next().unwrap(),
        f.next().unwrap()
    );
    std::fs::write(&known, &line).unwrap();
    let err = failed(&w.run(&vm), 1);
    assert!(
        err.contains("host key of `srv0`") && err.contains("CHANGED"),
        "{err}"
    );
    assert!(err.contains("ssh-keygen -R"), "{err}");

    // An unknown host key is never accepted.
    std::fs::write(&known, "").unwrap();
    let err = failed(&w.run(&vm), 1);
    assert!(err.contains("is not known"), "{err}");
    assert_eq!(std::fs::read_to_string(&known).unwrap(), "");
    std::fs::write(&known, &good).unwrap();

    // A refused key.
    std::fs::write(w.root.join("authorized_keys"), "").unwrap();
    let err = failed(&w.run(&vm), 1);
    assert!(err.contains("refused the authentication"), "{err}");
    assert!(err.contains("ssh-agent"), "{err}");

    // Nobody listening.
    let port = free_port().to_string();
    let target = format!("root@127.0.0.1:{port}");
    let err = failed(&w.provision(&target, &["h1"], "Linux_CD_Install", &[]), 1);
    assert!(err.contains("is unreachable"), "{err}");
    assert!(!w.srv(0).exists());
    assert!(!w.local().exists());
}

#[test]
fn two_servers_in_one_command_with_two_jobs() {
    let w = World::new(2, None);
    let o = w.provision(
        "srv0",
        &["a1", "a2", "a3", "b1@srv1"],
        "Linux_CD_Install",
        &["--host", "srv1", "--set", "hda_disk_size=8", "--jobs", "2"],
    );
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "{out}{err}");
    // Dealt out in turn: a1, a3 on srv0; a2 and b1 (placed) on srv1.
    for (i, vms) in [(0, ["a1", "a3"]), (1, ["a2", "b1"])] {
        let got: Vec<String> = tree(&w.srv(i).join("xen"));
        assert_eq!(
            got,
            vms.iter().map(|v| format!("{v}.cfg")).collect::<Vec<_>>()
        );
    }
    assert!(err.contains("summary: 4 provisioned, 0 failed"), "{err}");
    assert!(err.contains("a2 on `srv1`: provisioned"), "{err}");
    assert!(err.contains("a3 on `srv0`: provisioned"), "{err}");

    // One server down does not stop the other.
    let mut servers = w.servers;
    drop(servers.remove(1));
    let w2 = World { servers, ..w };
    let o = w2.provision(
        "srv0",
        &["c1", "c2"],
        "Linux_CD_Install",
        &["--host", "srv1", "--set", "hda_disk_size=8"],
    );
    let err = failed(&o, 1);
    assert!(w2.srv(0).join("xen/c1.cfg").exists());
    assert!(err.contains("`srv1` (root@127.0.0.1:"), "{err}");
    assert!(
        err.contains("c2 on `srv1`: failed (host not reached)"),
        "{err}"
    );
    assert!(err.contains("summary: 1 provisioned, 1 failed"), "{err}");
}

/// A server's VMs of one batch share channels (issue #17): with `--jobs 1` one `__serve`
/// command carries all of them, with `--jobs 2` at most two; every VM is provisioned and
/// recorded as it is alone, and no `__serve` stays on the server after the command.
#[test]
fn the_vms_of_a_batch_share_one_channel_a_job() {
    let w = World::new(1, None);
    // An ssh that notes each command line it is given, then is ssh.
    let log = w.root.join("ssh.log");
    let wrapper = w.root.join("logging-ssh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexec ssh \"$@\"\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let ssh = format!("{} -F {}", wrapper.display(), w.ssh_config.display());
    let channels = |jobs: &str, vms: &[&str]| -> usize {
        let _ = std::fs::remove_file(&log);
        let o = w
            .cmd(&provision_args(
                "srv0",
                vms,
                "Linux_CD_Install",
                &["--set", "hda_disk_size=8", "--jobs", jobs],
            ))
            .env("CONVIRT_SSH", &ssh)
            .output()
            .unwrap();
        succeeded(&o);
        let err = text(&o.stderr);
        assert!(
            err.contains(&format!("summary: {} provisioned, 0 failed", vms.len())),
            "{err}"
        );
        let said = std::fs::read_to_string(&log).unwrap();
        // The master is told to exit over its socket (no `ssh -O exit`), and it does.
        assert!(!said.contains("-O exit"), "{said}");
        // This world's masters only (other tests may leave theirs to ControlPersist).
        let config = w.ssh_config.display().to_string();
        wait_for("the ssh master to exit", 10, || {
            !processes()
                .iter()
                .any(|(_, _, c)| c.contains("ControlMaster=yes") && c.contains(&config))
        });
        // The provisioning channels: `exec <convirt> __serve --found ...` alone (the facts
        // go through the finding line, which starts with `c=`).
        said.lines()
            .filter(|l| l.contains(" __serve --found ") && !l.contains("command -v"))
            .count()
    };
    assert_eq!(channels("1", &["c1", "c2", "c3", "c4"]), 1);
    let two = channels("2", &["d1", "d2", "d3", "d4"]);
    assert!((1..=2).contains(&two), "{two} channels for --jobs 2");
    for vm in ["c1", "c2", "c3", "c4", "d1", "d2", "d3", "d4"] {
        let cfg = w.srv(0).join(format!("xen/{vm}.cfg"));
        assert!(
            std::fs::read_to_string(&cfg)
                .unwrap()
                .contains(&format!("name = \"{vm}\"")),
            "{vm}"
        );
        let record = w.local().join(format!("state/hosts/srv0/{vm}/record.json"));
        assert!(record.exists(), "no record of {vm}");
        let log = w
            .srv(0)
            .join(format!("log/Linux_CD_Install/Linux_CD_Install_{vm}.log"));
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            text.contains(&format!("Provisioning of VM {vm} completed")),
            "{text}"
        );
    }
    assert_eq!(tree(&w.srv(0).join("work")), vec!["locks"]);
    // Nothing of the run stays on the server: no connection to this world's sshd, so no
    // `__serve` under it either.
    wait_for("the server's sessions to end", 10, || {
        w.servers[0].sessions().is_empty()
    });
}

fn normal_user(home: &Path) -> String {
    let name = "convirt-remote";
    if !Command::new("id")
        .arg(name)
        .output()
        .unwrap()
        .status
        .success()
    {
        sh(Command::new("useradd").args(["-M", "-s", "/bin/bash", name]));
    }
    // `*`: no password, but not a locked account, which sshd without PAM refuses.
    sh(Command::new("usermod")
        .args(["-p", "*", "-d"])
        .arg(home)
        .arg(name));
    std::fs::create_dir_all(home).unwrap();
    sh(Command::new("chown").arg(format!("{name}:")).arg(home));
    name.to_string()
}

#[test]
fn a_normal_user_on_the_server_gets_home_paths_and_clear_permission_errors() {
    let tmp_user_home = tempfile::Builder::new()
        .prefix("convirt-e2e-home.")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(tmp_user_home.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let home = tmp_user_home.path().join("h");
    let user = normal_user(&home);
    let w = World::new(1, Some(&user));
    let size = ["--set", "hda_disk_size=8"];
    succeeded(&w.provision("srv0", &["u1"], "Linux_CD_Install", &size));
    let cfg = home.join(".convirt/vm_configs/u1.cfg");
    xl_accepts(&cfg);
    let disk = home.join(".convirt/vm_disks/u1.disk.xm");
    use std::os::unix::fs::MetadataExt;
    let uid = text(&sh(Command::new("id").args(["-u", &user])).stdout)
        .trim()
        .parse::<u32>()
        .unwrap();
    assert_eq!(std::fs::metadata(&disk).unwrap().uid(), uid);
    assert!(
        home.join(".convirt/log/Linux_CD_Install/Linux_CD_Install_u1.log")
            .exists()
    );

    // A VM_CONF_DIR the user cannot write: refused before anything is made.
    let locked = w.root.join("root-only");
    std::fs::create_dir(&locked).unwrap();
    w.add_settings(&format!(
        "[hosts.locked]\naddress = '127.0.0.1'\nport = {}\nuser = '{user}'\nVM_CONF_DIR = '{}/xen'\n",
        w.servers[0].port,
        locked.display()
    ));
    let err = failed(
        &w.provision("locked", &["u2"], "Linux_CD_Install", &size),
        1,
    );
    assert!(
        err.contains(&format!(
            "`u2` on `locked`: `{}/xen` is not writable",
            locked.display()
        )),
        "{err}"
    );
    assert!(!home.join(".convirt/vm_disks/u2.disk.xm").exists());
    assert!(
        !home
            .join(".convirt/log/Linux_CD_Install/Linux_CD_Install_u2.log")
            .exists()
    );
    assert_eq!(tree(&home.join(".convirt/work")), vec!["locks"]);

    // A server-side work_dir the user cannot write: refused, nothing made.
    w.add_settings(&format!(
        "[hosts.nowork]\naddress = '127.0.0.1'\nport = {}\nuser = '{user}'\nwork_dir = '{}/work'\n",
        w.servers[0].port,
        locked.display()
    ));
    let err = failed(&w.provision("nowork", &["u3"], "Linux_CD_Install", &[]), 1);
    assert!(
        err.contains("work_dir") && err.contains("is not writable"),
        "{err}"
    );
    assert!(!locked.join("work").exists());
    assert!(!home.join(".convirt/vm_configs/u3.cfg").exists());
}

/// A file that is an ELF executable for aarch64 (only its header): no x86_64 machine runs it.
fn aarch64_elf(path: &Path) {
    let mut h = vec![0u8; 64];
    h[..4].copy_from_slice(b"\x7fELF");
    (h[4], h[5], h[6]) = (2, 1, 1);
    h[16] = 2;
    h[18] = 0xb7;
    h[20] = 1;
    std::fs::write(path, h).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn convirt_is_found_on_the_servers_path_or_copied_and_a_wrong_one_is_a_clear_error() {
    // The server's PATH first holds a `convirt` of another version: it is passed over.
    let tmp = tempfile::Builder::new()
        .prefix("convirt-e2e-bin.")
        .tempdir()
        .unwrap();
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let other = bin.join("convirt");
    std::fs::write(&other, "#!/bin/sh\necho 'convirt 0.0.1'\n").unwrap();
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        bin.display()
    );
    let w = World::new_with(1, None, &format!("SetEnv PATH={path}\n"));
    let out = succeeded(&w.provision("srv0", &["f1"], "Linux_CD_Install", DISK16));
    assert!(
        out.contains("on the server: convirt /root/.cache/convirt/bin/"),
        "{out}"
    );
    assert!(out.contains("(copied there by convirt)"), "{out}");
    // The copy is the very program, owner-only, named by its SHA-256.
    let copy = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("on the server: convirt "))
        .and_then(|l| l.split(' ').next())
        .unwrap()
        .to_string();
    let meta = std::fs::metadata(&copy).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        std::fs::read(env!("CARGO_BIN_EXE_convirt")).unwrap()
    );

    // The same version on the server's PATH is used as it is.
    std::fs::remove_file(&other).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_convirt"), &other).unwrap();
    let out = succeeded(&w.provision("srv0", &["f2"], "Linux_CD_Install", DISK16));
    assert!(
        out.contains(&format!(
            "on the server: convirt {} (on the server's PATH)",
            other.display()
        )) || out.contains("(on the server's PATH)"),
        "{out}"
    );

    // A configured convirt of another version, and one for another architecture: errors
    // naming both, nothing made.
    let old = w.root.join("old-convirt");
    std::fs::write(
        &old,
        "#!/bin/sh\necho '{\"hello\":{\"protocol\":1,\"convirt\":\"convirt 0.0.9\"}}'\n",
    )
    .unwrap();
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).unwrap();
    let arm = w.root.join("arm-convirt");
    aarch64_elf(&arm);
    for (name, file) in [("old", &old), ("arm", &arm)] {
        w.add_settings(&format!(
            "[hosts.{name}]\naddress = '127.0.0.1'\nport = {}\nuser = 'root'\nconvirt = '{}'\nlog_dir = '{s}/log'\nwork_dir = '{s}/work'\nstate_dir = '{s}/state'\nVM_DISKS_DIR = '{s}/disks'\nVM_CONF_DIR = '{s}/xen'\n",
            w.servers[0].port,
            file.display(),
            s = w.root.join(name).display()
        ));
    }
    let err = failed(&w.provision("old", &["f3"], "Linux_CD_Install", DISK16), 1);
    assert!(
        err.contains("`old` runs convirt 0.0.9") && err.contains("this machine convirt 0.1.0"),
        "{err}"
    );
    let err = failed(&w.provision("arm", &["f3"], "Linux_CD_Install", DISK16), 1);
    assert!(
        err.contains("this convirt cannot run on `arm`: it is built for x86_64"),
        "{err}"
    );
    assert!(err.contains("install convirt"), "{err}");
    assert!(!w.root.join("old").exists() && !w.root.join("arm").exists());
}

/// Every command line on this machine (what `ps` shows), joined.
fn all_command_lines() -> String {
    let mut out = String::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(b) = std::fs::read(e.path().join("cmdline")) {
            out.push_str(&text(&b).replace('\0', " "));
            out.push('\n');
        }
    }
    out
}

#[test]
fn the_lock_is_on_the_server_secrets_stay_off_command_lines_and_the_timeout_stops_the_script() {
    let w = World::new(1, None);
    // A value that could be a password hash, for this host only.
    w.add_settings("[hosts.srv0.variables]\nroot_password = '$6$e2e-secret-marker$x'\n");
    let size = ["--set", "hda_disk_size=8"];
    // Long enough for the checks below to run while the script still sleeps, on a busy
    // machine too (4 s was not, once: the forced run then went ahead).
    const TIMEOUT: &str = "15";
    let (child, disk) = w.slow_on_srv0("l1", &[&size[..], &["--timeout", TIMEOUT]].concat(), false);
    assert!(!all_command_lines().contains("e2e-secret-marker"));
    let conf = w.srv(0).join("log/Slow/Slow_l1_image.conf");
    assert!(
        std::fs::read_to_string(&conf)
            .unwrap()
            .contains("e2e-secret-marker")
    );
    assert_eq!(
        std::fs::metadata(&conf).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // A second console provisioning the same VM on that server is refused at once: another
    // machine (its own records), so the server's lock does it; this machine's lock first.
    let forced = provision_args("srv0", &["l1"], "Slow", &["--force"]);
    let o = w
        .cmd(&[&forced[..], &size].concat())
        .env("CONVIRT_STATE_DIR", w.root.join("console2/state"))
        .output()
        .unwrap();
    let err = failed(&o, 1);
    assert!(
        err.contains("`l1` on `srv0`: VM `l1` is already being provisioned (pid "),
        "{err}"
    );
    assert!(err.contains("for console "), "{err}");
    let err = failed(&w.run(&forced), 1);
    assert!(
        err.contains("`l1` is already being provisioned on srv0 from this machine"),
        "{err}"
    );
    assert!(err.contains("user tester"), "{err}");
    assert!(
        disk.exists(),
        "the refused run touched the running one's disk"
    );

    let err = failed(&child.wait_with_output().unwrap(), 1);
    assert!(
        err.contains(&format!(
            "timed out after {TIMEOUT} s and was stopped on `srv0`"
        )),
        "{err}"
    );
    assert!(!disk.exists());
    no_script_left();
    assert_eq!(tree(&w.srv(0).join("work")), vec!["locks"]);
}

#[test]
fn ctrl_c_stops_both_servers_of_a_two_job_run() {
    let w = World::new(2, None);
    let extra = ["--host", "srv1", "--set", "hda_disk_size=8", "--jobs", "2"];
    let child = w.spawn(
        &provision_args("srv0", &["x1", "x2", "x3"], "Slow", &extra),
        false,
    );
    let d1 = w.srv(0).join("disks/x1.disk.xm");
    let d2 = w.srv(1).join("disks/x2.disk.xm");
    wait_for("both disks", 30, || d1.exists() && d2.exists());
    let err = failed(&signal(child, libc::SIGINT), 130);
    assert!(!d1.exists() && !d2.exists(), "{err}");
    assert!(
        err.contains("x1 on `srv0`: failed") && err.contains("x2 on `srv1`: failed"),
        "{err}"
    );
    // The third VM never started anywhere.
    assert!(err.contains("x3 on `srv0`: not started"), "{err}");
    assert!(!w.srv(0).join("disks/x3.disk.xm").exists());
    no_script_left();
    for i in 0..2 {
        assert_eq!(tree(&w.srv(i).join("work")), vec!["locks"]);
    }
}

/// The slow proof: a Debian guest (the Debian_12_Minimal image, with lvm2) booted
/// under QEMU TCG is the server; an LVM-backed image is provisioned onto it over ssh. A real
/// logical volume is made in the guest (this machine's kernel has no device-mapper), the
/// config lands in the guest's /etc/xen, and a failing run removes the LV it created and
/// nothing else.
#[test]
fn an_lvm_backed_image_onto_a_debian_guest_under_qemu() {
    use crate::guest::{Guest, read_xl};
    let boot = crate::boot::world()
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let o = boot.provision(&["lvmsrv"], &["--set", "extra_packages=lvm2"]);
    assert!(
        o.status.success(),
        "provision the guest: {}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    let mut xl = read_xl(&boot.path("conf/lvmsrv.cfg"));
    let w = World::new(0, None);
    // A second disk in the guest for the volume group.
    let pv = w.root.join("pv.img");
    std::fs::File::create(&pv)
        .unwrap()
        .set_len(256 << 20)
        .unwrap();
    xl.disks.push((pv.display().to_string(), "raw".into()));
    let mut g = Guest::boot(&xl);
    // The login prompt first (the console is read all along), then sshd.
    g.wait_for("lvmsrv login:", std::time::Duration::from_secs(600));
    let up = g.ssh(&boot.key, "true");
    assert!(
        up.status.success(),
        "ssh into the guest: {}\nqemu: {}",
        text(&up.stderr),
        g.qemu_log()
    );
    let setup = g.ssh(
        &boot.key,
        "modprobe dm_mod; pvcreate -q /dev/vdb && vgcreate -q vgt /dev/vdb && lvcreate -q -L 8M -n keepme vgt",
    );
    assert!(
        setup.status.success(),
        "{}{}\nqemu: {}",
        text(&setup.stdout),
        text(&setup.stderr),
        g.qemu_log()
    );
    // The guest's host key, as an admin would record it; then strict checking as always.
    let scan = sh(Command::new("ssh-keyscan").args([
        "-t",
        "ed25519",
        "-p",
        &g.ssh_port.to_string(),
        "127.0.0.1",
    ]));
    std::fs::write(w.root.join("known_hosts"), &scan.stdout).unwrap();
    std::fs::write(
        &w.ssh_config,
        format!(
            "Host *\n  IdentityFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  GlobalKnownHostsFile /dev/null\n  LogLevel ERROR\n",
            boot.key.display(),
            w.root.join("known_hosts").display()
        ),
    )
    .unwrap();
    w.add_settings(&format!(
        "[hosts.guest]\naddress = '127.0.0.1'\nport = {}\nuser = 'root'\nVM_DISKS_DIR = '/dev/vgt'\n",
        g.ssh_port
    ));
    // The image's disk as a logical volume, as a Xen admin writes it: `phy:/dev/VG/LV`.
    let lvm = |vm: &str| {
        vec![
            "--set".to_string(),
            "hda_disk_type=LVM".to_string(),
            "--set".to_string(),
            "hda_disk_size=8".to_string(),
            "--vm-set".to_string(),
            format!("disk=['phy:/dev/vgt/{vm},hda,w']"),
        ]
    };
    let run = |vm: &str, image: &str| {
        let extra = lvm(vm);
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        w.provision("guest", &[vm], image, &extra)
    };
    let o = run("lv1", "Linux_CD_Install");
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    let lvs = |g: &Guest| {
        text(
            &g.ssh(
                &boot.key,
                "lvs --noheadings -o lv_name vgt | tr -d ' ' | sort",
            )
            .stdout,
        )
    };
    assert_eq!(lvs(&g), "keepme\nlv1\n");
    let cfg = g.ssh(&boot.key, "cat /etc/xen/lv1.cfg");
    assert!(
        text(&cfg.stdout).contains("\"phy:/dev/vgt/lv1,hda,w\""),
        "{}",
        text(&cfg.stdout)
    );
    let copy = w.root.join("lv1.cfg");
    std::fs::write(&copy, &cfg.stdout).unwrap();
    xl_accepts(&copy);
    assert!(!w.local().join("xen").exists() && !w.local().join("disks").exists());

    // A failing run removes the volume it created, and nothing else.
    let err = failed(&run("lv2", "Fails"), 1);
    assert!(
        err.contains("removed what this run created: lvm:vgt/lv2"),
        "{err}"
    );
    assert_eq!(lvs(&g), "keepme\nlv1\n");
    let o = g.ssh(
        &boot.key,
        "test ! -e /etc/xen/lv2.cfg && ls /var/cache/convirt/work",
    );
    assert_eq!(text(&o.stdout), "locks\n", "{}", text(&o.stderr));

    // The record of lv1 names its volume: `vm remove` takes it away with the guest's real
    // lvremove, with the config, and leaves the volume it did not create.
    let o = w.run(&["vm", "remove", "lv1", "--yes"]);
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    assert!(
        text(&o.stdout).contains("removed VM `lv1` on `guest`"),
        "{}",
        text(&o.stdout)
    );
    assert_eq!(lvs(&g), "keepme\n");
    let o = g.ssh(&boot.key, "test ! -e /etc/xen/lv1.cfg && echo gone");
    assert_eq!(text(&o.stdout), "gone\n", "{}", text(&o.stderr));
}

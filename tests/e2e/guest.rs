//! Reusable helpers for tests that boot provisioned guests: a normal test user, convirt
//! run as that user, and a QEMU (TCG) boot of a VM taken from its rendered `xl` config,
//! with its serial console and an SSH port forward.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Panics with the command's output unless it succeeded; returns stdout.
pub fn ok(what: &str, o: Output) -> String {
    assert!(
        o.status.success(),
        "{what} failed ({}):\n{}\n{}",
        o.status,
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

/// `preferred` when a normal user can reach it (every parent directory searchable by
/// others), else a directory of the same name in the temporary directory: CI may check the
/// repository out under `/root`.
pub fn reachable_dir(preferred: &Path) -> PathBuf {
    let reachable = preferred
        .ancestors()
        .skip(1)
        .all(|d| std::fs::metadata(d).map_or(true, |m| m.permissions().mode() & 0o001 != 0));
    if reachable || !is_root() {
        preferred.to_path_buf()
    } else {
        std::env::temp_dir().join(preferred.file_name().unwrap_or_default())
    }
}

/// The user the tests provision as: a normal user made with `useradd` (which also gives
/// it `/etc/subuid` and `/etc/subgid` ranges) when the tests run as root, else the user
/// running them.
pub struct TestUser {
    pub name: Option<String>,
    /// A directory the user owns: its home, settings, store, disks and cache.
    pub dir: PathBuf,
}

impl TestUser {
    /// Creates (or reuses) the user `name` and the directory `dir` it owns.
    pub fn new(name: &str, dir: &Path) -> TestUser {
        std::fs::create_dir_all(dir).unwrap();
        if !is_root() {
            return TestUser {
                name: None,
                dir: dir.to_path_buf(),
            };
        }
        let exists = Command::new("id")
            .arg("-u")
            .arg(name)
            .output()
            .unwrap()
            .status
            .success();
        if !exists {
            ok(
                "useradd",
                Command::new("useradd")
                    .args(["--create-home", "--shell", "/bin/bash", name])
                    .output()
                    .unwrap(),
            );
        }
        // useradd gives a new user subordinate ids where /etc/subuid exists; make sure.
        let has = |f: &str| {
            std::fs::read_to_string(f)
                .unwrap_or_default()
                .lines()
                .any(|l| l.starts_with(&format!("{name}:")))
        };
        if !has("/etc/subuid") || !has("/etc/subgid") {
            ok(
                "usermod --add-subuids",
                Command::new("usermod")
                    .args(["--add-subuids", "4000000-4065535"])
                    .args(["--add-subgids", "4000000-4065535", name])
                    .output()
                    .unwrap(),
            );
        }
        assert!(
            has("/etc/subuid") && has("/etc/subgid"),
            "no subordinate ids for {name}"
        );
        ok(
            "chown",
            Command::new("chown")
                .arg("-R")
                .arg(format!("{name}:{name}"))
                .arg(dir)
                .output()
                .unwrap(),
        );
        // Every parent must be traversable for the user.
        let mut p = dir.parent();
        while let Some(d) = p {
            let mode = std::fs::metadata(d).unwrap().permissions().mode();
            assert!(
                mode & 0o001 != 0,
                "{} is not traversable by {name}",
                d.display()
            );
            p = d.parent();
        }
        TestUser {
            name: Some(name.to_string()),
            dir: dir.to_path_buf(),
        }
    }

    /// A command that runs as the user from a login shell (`runuser -l`), so with that
    /// user's own PATH (no sbin directories, issue #18) and a clean environment; its home is
    /// `dir`.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let path = "/usr/local/bin:/usr/bin:/bin";
        let mut c = match &self.name {
            Some(n) => {
                // The login shell sets HOME from the passwd entry, which another test (or an
                // earlier run) may have pointed elsewhere: the world's own is put back. The
                // program and its arguments arrive as `$1`, `$2`, ...
                // (runuser itself is in /usr/sbin, which the PATH below lacks.)
                let mut c = Command::new("/usr/sbin/runuser");
                c.args([
                    "-l",
                    "-s",
                    "/bin/bash",
                    "-c",
                    r#"export HOME="$0" NO_COLOR=1 LC_ALL=C.UTF-8; cd "$HOME" && exec "$@""#,
                    "--",
                    n,
                ])
                .arg(&self.dir)
                .arg(program);
                c
            }
            None => Command::new(program),
        };
        c.env_clear()
            .env("HOME", &self.dir)
            .env("PATH", path)
            .env("NO_COLOR", "1")
            .env("LC_ALL", "C.UTF-8")
            .current_dir(&self.dir);
        c
    }

    /// Copies a file into the user's directory, owned by the user.
    pub fn give(&self, from: &Path, name: &str, mode: u32) -> PathBuf {
        let to = self.dir.join(name);
        std::fs::copy(from, &to).unwrap();
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode)).unwrap();
        self.own(&to);
        to
    }

    /// Makes a path (recursively) the user's.
    pub fn own(&self, p: &Path) {
        if let Some(n) = &self.name {
            ok(
                "chown",
                Command::new("chown")
                    .arg("-R")
                    .arg(format!("{n}:{n}"))
                    .arg(p)
                    .output()
                    .unwrap(),
            );
        }
    }
}

/// What booting a VM needs from its rendered `xl` config.
#[derive(Debug, Clone)]
pub struct XlBoot {
    pub name: String,
    pub kernel: String,
    pub ramdisk: String,
    pub root: String,
    pub extra: String,
    pub uuid: String,
    /// (path, format) of each disk, in order.
    pub disks: Vec<(String, String)>,
}

/// Reads `key = "value"` and `disk = [ "...", ... ]` lines of an `xl` file.
pub fn read_xl(path: &Path) -> XlBoot {
    let cfg = std::fs::read_to_string(path).unwrap();
    let strings = |line: &str| -> Vec<String> {
        line.split('"')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    };
    let get = |key: &str| -> String {
        cfg.lines()
            .find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == key).then(|| strings(v).into_iter().next().unwrap_or_default())
            })
            .unwrap_or_default()
    };
    let disks = cfg
        .lines()
        .find(|l| l.trim_start().starts_with("disk ="))
        .map(|l| {
            strings(l)
                .into_iter()
                .map(|spec| {
                    let target = spec.split_once("target=").map(|(_, t)| t.to_string());
                    let format = spec
                        .split(',')
                        .find_map(|p| p.strip_prefix("format="))
                        .unwrap_or("raw")
                        .to_string();
                    (target.expect("an xl disk spec with target="), format)
                })
                .collect()
        })
        .unwrap_or_default();
    XlBoot {
        name: get("name"),
        kernel: get("kernel"),
        ramdisk: get("ramdisk"),
        root: get("root"),
        extra: get("extra"),
        uuid: get("uuid"),
        disks,
    }
}

/// A guest running under `qemu-system-x86_64 -accel tcg`, killed when dropped.
pub struct Guest {
    child: Child,
    serial: UnixStream,
    /// Everything the serial console printed so far, read by a thread from the start: a
    /// console nobody reads fills the socket, and the guest then stalls on its next
    /// console write (systemd's status lines), which looks like a hung boot.
    console: Arc<Mutex<Console>>,
    pub ssh_port: u16,
    dir: tempfile::TempDir,
}

/// The serial console's bytes, and whether QEMU closed it.
#[derive(Default)]
struct Console {
    text: Vec<u8>,
    closed: bool,
}

/// A free TCP port on 127.0.0.1 (the OS picks it; QEMU binds it right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Guest {
    /// Boots a VM with exactly the kernel, initrd, root and command line of its `xl`
    /// config (as `xl` would hand them over: `root=<root> <extra>`), its disks as virtio
    /// disks, user networking with 127.0.0.1:`ssh_port` forwarded to the guest's port 22.
    pub fn boot(xl: &XlBoot) -> Guest {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("serial.sock");
        let ssh_port = free_port();
        let mut cmdline = String::new();
        if !xl.root.is_empty() {
            cmdline = format!("root={} ", xl.root);
        }
        cmdline.push_str(&xl.extra);
        let mut c = Command::new("qemu-system-x86_64");
        c.args(["-accel", "tcg", "-m", "1024", "-smp", "2", "-nodefaults"])
            .args(["-display", "none", "-monitor", "none"])
            .arg("-kernel")
            .arg(&xl.kernel)
            .arg("-initrd")
            .arg(&xl.ramdisk)
            .arg("-append")
            .arg(&cmdline)
            .arg("-serial")
            .arg(format!("unix:{},server=on,wait=off", sock.display()))
            .arg("-nic")
            .arg(format!(
                "user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:{ssh_port}-:22"
            ));
        for (path, format) in &xl.disks {
            c.arg("-drive")
                .arg(format!("file={path},format={format},if=virtio"));
        }
        let log = std::fs::File::create(dir.path().join("qemu.log")).unwrap();
        let mut child = c
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("qemu-system-x86_64 (install qemu-system-x86)");
        let start = Instant::now();
        let serial = loop {
            match UnixStream::connect(&sock) {
                Ok(s) => break s,
                Err(_) if start.elapsed() < Duration::from_secs(20) => {
                    if let Some(st) = child.try_wait().unwrap() {
                        panic!(
                            "qemu exited ({st}): {}",
                            std::fs::read_to_string(dir.path().join("qemu.log"))
                                .unwrap_or_default()
                        );
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("qemu's serial socket: {e}"),
            }
        };
        let console = Arc::new(Mutex::new(Console::default()));
        let mut reader = serial.try_clone().unwrap();
        let shared = Arc::clone(&console);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => shared.lock().unwrap().text.extend_from_slice(&buf[..n]),
                }
            }
            shared.lock().unwrap().closed = true;
        });
        Guest {
            child,
            serial,
            console,
            ssh_port,
            dir,
        }
    }

    /// Reads the serial console until `needle` appears after byte `from`; returns the
    /// offset just past it. Panics with the console's tail after `timeout`.
    pub fn wait_from(&mut self, from: usize, needle: &str, timeout: Duration) -> usize {
        let end = Instant::now() + timeout;
        loop {
            let (found, len, closed) = {
                let c = self.console.lock().unwrap();
                let found = find(&c.text[from.min(c.text.len())..], needle);
                (found, c.text.len(), c.closed)
            };
            if let Some(i) = found {
                return from + i + needle.len();
            }
            if closed {
                panic!("the serial console closed; qemu exited?\n{}", self.tail());
            }
            if Instant::now() > end {
                panic!(
                    "no `{needle}` on the serial console after {timeout:?} ({len} bytes):\n{}",
                    self.tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last 3000 bytes of the console, for failures.
    pub fn tail(&self) -> String {
        let c = self.console.lock().unwrap();
        let t = text(&c.text);
        let mut at = t.len().saturating_sub(3000);
        while !t.is_char_boundary(at) {
            at += 1;
        }
        t[at..].to_string()
    }

    fn console_len(&self) -> usize {
        self.console.lock().unwrap().text.len()
    }

    /// Waits for a line (or prompt) on the serial console, from the start of the boot.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> usize {
        self.wait_from(0, needle, timeout)
    }

    pub fn send(&mut self, line: &str) {
        self.serial.write_all(line.as_bytes()).unwrap();
        self.serial.write_all(b"\n").unwrap();
    }

    /// Logs in on the serial console (after `<name> login:` was seen).
    pub fn login(&mut self, user: &str, password: &str) {
        let at = self.console_len();
        self.send(user);
        let at = self.wait_from(at, "Password:", Duration::from_secs(30));
        self.send(password);
        self.wait_from(at, "# ", Duration::from_secs(60));
    }

    /// Runs a shell command on the logged-in serial console; returns what it printed
    /// between two markers (which the echo of the command line cannot contain).
    pub fn run(&mut self, cmd: &str) -> String {
        let at = self.console_len();
        self.send(&format!("echo BEGIN''MARK; {cmd}; echo END''MARK"));
        let start = self.wait_from(at, "BEGINMARK", Duration::from_secs(60));
        let end = self.wait_from(start, "ENDMARK", Duration::from_secs(60));
        text(&self.console.lock().unwrap().text[start..end - "ENDMARK".len()])
            .replace('\r', "")
            .trim()
            .to_string()
    }

    /// `ssh` as root to the guest's forwarded port with `key` only (BatchMode: the key or
    /// nothing, never a password prompt).
    pub fn ssh_command(&self, key: &Path, cmd: &str) -> Command {
        let mut c = Command::new("ssh");
        for opt in [
            "BatchMode=yes",
            "StrictHostKeyChecking=no",
            "UserKnownHostsFile=/dev/null",
            "ConnectTimeout=10",
            "LogLevel=ERROR",
            "IdentitiesOnly=yes",
        ] {
            c.args(["-o", opt]);
        }
        c.arg("-i")
            .arg(key)
            .arg("-p")
            .arg(self.ssh_port.to_string())
            .arg("root@127.0.0.1")
            .arg(cmd)
            .stdin(Stdio::null());
        c
    }

    /// Runs a command over SSH with `key`, retrying while sshd is still starting.
    pub fn ssh(&self, key: &Path, cmd: &str) -> Output {
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            let o = self.ssh_command(key, cmd).output().unwrap();
            if o.status.success() || Instant::now() > end {
                return o;
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    }

    /// The qemu log (stderr), for failures.
    pub fn qemu_log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("qemu.log")).unwrap_or_default();
        format!("{log}\nserial console (tail):\n{}", self.tail())
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find(hay: &[u8], needle: &str) -> Option<usize> {
    hay.windows(needle.len())
        .position(|w| w == needle.as_bytes())
}

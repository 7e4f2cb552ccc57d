//! The Xen world: Debian's Xen 4.17 booted under QEMU (TCG), a Debian 12 dom0 driven over
//! SSH through a QEMU port forward, convirt installed in it from the .deb that
//! `scripts/build-deb.sh` builds, and convirt's VMs provisioned, started, listed and
//! removed there as an administrator would. Not part of `cargo test` (`test = false`);
//! `scripts/test.sh` runs it with `cargo test --test xen_world -- --test-threads=1`.
//!
//! One world per run (`world()`): the dom0 disk is built once and cached under
//! `target/xen-world/dom0-<key>/` (keyed by tests/xen_world/build-dom0.sh), each run boots
//! a copy-on-write overlay of it, once, and every case runs on that boot. docs/xen.md
//! describes it.
// A test crate has no public API: its helpers are `pub` for its own modules.
#![allow(unreachable_pub)]

mod cases;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The command's stdout; panics with everything it said when it failed.
pub fn ok(what: &str, o: Output) -> String {
    assert!(
        o.status.success(),
        "{what} failed ({}):\n{}",
        o.status,
        text(&o)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn run(what: &str, cmd: &mut Command) -> String {
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    ok(what, o)
}

/// Progress with the time since the world started, for docs/xen.md's timings.
pub fn note(t0: Instant, msg: &str) {
    eprintln!("[xen-world {:6.1}s] {msg}", t0.elapsed().as_secs_f64());
}

/// Polls `f` every two seconds until it gives `Some`, or `limit` passes.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > end {
            return None;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// QEMU running Xen, stopped when this process ends: QEMU runs under a shell that waits for
/// the end of its stdin (a pipe from this process), then kills it.
struct Qemu {
    guard: Child,
    pidfile: PathBuf,
}

impl Qemu {
    fn alive(&mut self) -> bool {
        matches!(self.guard.try_wait(), Ok(None))
    }
    fn stop(&mut self) {
        drop(self.guard.stdin.take());
        let _ = self.guard.wait();
        let _ = std::fs::remove_file(&self.pidfile);
    }
}

pub struct World {
    pub t0: Instant,
    pub port: u16,
    pub key: PathBuf,
    pub run_dir: PathBuf,
    /// This machine's convirt settings (target/xen-world/host), with dom0 as `[hosts.dom0]`.
    pub host_config: PathBuf,
    qemu: Qemu,
}

/// The world, made by the first case that asks; when making it failed, every case fails
/// with that reason (no second attempt per case: a boot takes minutes).
pub fn world() -> MutexGuard<'static, World> {
    static W: OnceLock<Result<Mutex<World>, String>> = OnceLock::new();
    let w = W.get_or_init(|| {
        std::panic::catch_unwind(World::new)
            .map(Mutex::new)
            .map_err(|e| {
                e.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            })
    });
    match w {
        Ok(m) => m.lock().unwrap_or_else(|e| e.into_inner()),
        Err(why) => panic!("the Xen world could not be made: {why}"),
    }
}

/// The key of the cached dom0 disk: the build script's contents.
fn dom0_key() -> String {
    use sha2::Digest;
    let script = std::fs::read(repo().join("tests/xen_world/build-dom0.sh")).unwrap();
    let d = sha2::Sha256::digest(&script);
    d.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The dom0 disk, kernel, hypervisor and key: built once (about two minutes), then reused.
fn dom0(root: &Path, t0: Instant) -> PathBuf {
    let dir = root.join(format!("dom0-{}", dom0_key()));
    if !dir.join("complete").exists() {
        note(t0, &format!("building the dom0 disk in {}", dir.display()));
        run(
            "build-dom0.sh",
            Command::new(repo().join("tests/xen_world/build-dom0.sh")).arg(&dir),
        );
    }
    note(t0, &format!("dom0 disk ready: {}", dir.display()));
    dir
}

/// convirt's Debian package, built by `scripts/build-deb.sh` (a release build).
fn deb(t0: Instant) -> PathBuf {
    run(
        "scripts/build-deb.sh",
        &mut Command::new(repo().join("scripts/build-deb.sh")),
    );
    let dir = repo().join("target/debian");
    let mut debs: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "deb")
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("convirt_"))
        })
        .map(|p| (p.metadata().unwrap().modified().unwrap(), p))
        .collect();
    debs.sort();
    let deb = debs.pop().expect("build-deb.sh made no .deb").1;
    note(t0, &format!("package: {}", deb.display()));
    deb
}

/// The guest cache dom0's convirt starts with: this host's convirt bootstraps the Debian
/// base once (a throw-away VM, removed again) into `target/xen-world/guest-cache`, so that
/// in dom0 a provisioning only customises (a bootstrap under TCG takes many minutes).
fn guest_seed(root: &Path, t0: Instant) -> (PathBuf, PathBuf) {
    let host = root.join("host");
    let _ = std::fs::remove_dir_all(&host);
    std::fs::create_dir_all(&host).unwrap();
    let p = host.display();
    let cache = root.join("guest-cache");
    run(
        "cp the image store",
        Command::new("cp")
            .arg("-a")
            .arg(repo().join("image_store"))
            .arg(host.join("store")),
    );
    let config = host.join("convirt.toml");
    std::fs::write(
        &config,
        format!(
            "image_store = '{p}/store'\nlog_dir = '{p}/log'\nwork_dir = '{p}/work'\nstate_dir = '{p}/state'\n\n[variables]\nVM_DISKS_DIR = '{p}/disks'\nVM_CONF_DIR = '{p}/conf'\nVM_CACHE_DIR = '{}'\n",
            cache.display()
        ),
    )
    .unwrap();
    let conv = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_convirt"));
        c.arg("--config").arg(&config).args(args);
        c
    };
    run(
        "convirt provision (guest cache seed)",
        &mut conv(&["provision", "--image", "Debian_12_Minimal", "--vm", "seed"]),
    );
    run(
        "convirt vm remove seed",
        &mut conv(&["vm", "remove", "--yes", "seed"]),
    );
    note(t0, "guest cache warm on the host");
    (cache.join("guests"), config)
}

/// A free TCP port on 127.0.0.1 for QEMU's forward to dom0's sshd.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl World {
    fn new() -> World {
        let t0 = Instant::now();
        let root = repo().join("target/xen-world");
        std::fs::create_dir_all(&root).unwrap();
        let deb = deb(t0);
        let dom0 = dom0(&root, t0);
        let (seed, host_config) = guest_seed(&root, t0);
        let run_dir = root.join("run");
        let _ = std::fs::remove_dir_all(&run_dir);
        std::fs::create_dir_all(&run_dir).unwrap();
        // The seed as a disk of its own (vdc), mounted on dom0's guest cache directory.
        let used: u64 = run("du", Command::new("du").args(["-s", "-B1M"]).arg(&seed))
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let seed_img = run_dir.join("seed.img");
        run(
            "truncate seed.img",
            Command::new("truncate")
                .arg("-s")
                .arg(format!("{}M", used * 2 + 2048))
                .arg(&seed_img),
        );
        run(
            "mkfs.ext4 seed.img",
            Command::new("mkfs.ext4")
                .args(["-q", "-L", "seed", "-d"])
                .arg(&seed)
                .arg(&seed_img),
        );
        let mut last = String::new();
        for attempt in 1..=2 {
            let port = free_port();
            let mut w = World {
                t0,
                port,
                key: dom0.join("id_dom0"),
                run_dir: run_dir.clone(),
                host_config: host_config.clone(),
                qemu: boot(&dom0, &run_dir, port, t0),
            };
            match w.wait_ready() {
                Ok(()) => {
                    w.install(&deb);
                    w.fleet_setup();
                    return w;
                }
                Err(why) => {
                    let serial =
                        std::fs::read_to_string(run_dir.join("serial.log")).unwrap_or_default();
                    let tail: Vec<&str> = serial.lines().rev().take(40).collect();
                    last = format!(
                        "{why}\n--- last lines of the serial console ---\n{}",
                        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                    );
                    note(t0, &format!("boot {attempt} failed: {last}"));
                    w.qemu.stop();
                }
            }
        }
        panic!("Xen did not come up twice: {last}");
    }

    /// Waits for dom0's sshd, then for the Xen toolstack (`xl list`).
    fn wait_ready(&mut self) -> Result<(), String> {
        let ssh = wait_for(Duration::from_secs(420), || {
            if !self.qemu.alive() {
                return Some(false);
            }
            let o = self.ssh("true").output().ok()?;
            o.status.success().then_some(true)
        });
        match ssh {
            Some(true) => note(self.t0, "dom0 answers over ssh"),
            Some(false) => return Err("QEMU exited".into()),
            None => return Err("dom0's sshd did not answer in 420 s".into()),
        }
        let xl = wait_for(Duration::from_secs(300), || {
            let o = self.ssh("xl list").output().ok()?;
            o.status.success().then(|| text(&o))
        });
        match xl {
            Some(list) => {
                note(self.t0, &format!("xl list works:\n{list}"));
                Ok(())
            }
            None => Err("`xl list` did not work in 300 s (xen.service stalled?)".into()),
        }
    }

    /// `scp FILE root@dom0:DEST`, not yet run.
    fn scp_to(&self, file: &Path, dest: &str) -> Command {
        let mut c = Command::new("scp");
        c.args(ssh_opts(&self.key))
            .arg("-P")
            .arg(self.port.to_string())
            .arg(file)
            .arg(format!("root@127.0.0.1:{dest}"));
        c
    }

    /// `scp FILE root@dom0:DEST`, run; tried again as `sh` does when ssh never connected.
    pub fn copy(&self, file: &Path, dest: &str) -> Output {
        let mut tries = 0;
        loop {
            let o = self.scp_to(file, dest).output().expect("run scp");
            tries += 1;
            if tries >= 5 || !never_connected(&o) {
                return o;
            }
            note(self.t0, "scp to dom0 did not connect; again in 15 s");
            std::thread::sleep(Duration::from_secs(15));
        }
    }

    /// Installs convirt from the .deb and mounts the guest cache seed.
    fn install(&self, deb: &Path) {
        ok("scp the .deb", self.copy(deb, "/root/convirt.deb"));
        let out = self.ok("dpkg -i /root/convirt.deb && convirt --version");
        note(self.t0, &format!("installed in dom0: {}", out.trim()));
        self.ok("mkdir -p /var/cache/convirt/guests && mount /dev/vdc /var/cache/convirt/guests");
    }

    /// dom0 as a managed server of this machine's convirt: `[hosts.dom0]` in its settings,
    /// and an ssh config (the world's key, dom0's host key as scanned now) for CONVIRT_SSH.
    fn fleet_setup(&self) {
        let keys = run(
            "ssh-keyscan",
            Command::new("ssh-keyscan")
                .args(["-T", "30", "-t", "ed25519", "-p"])
                .arg(self.port.to_string())
                .arg("127.0.0.1"),
        );
        let known = self.run_dir.join("known_hosts");
        std::fs::write(&known, keys).unwrap();
        std::fs::write(
            self.run_dir.join("ssh_config"),
            format!(
                "Host *\n  IdentityFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  ServerAliveInterval 15\n",
                self.key.display(),
                known.display()
            ),
        )
        .unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.host_config)
            .unwrap();
        write!(
            f,
            "\n[hosts.dom0]\naddress = '127.0.0.1'\nport = {}\nuser = 'root'\n# dom0 runs under TCG on a loaded machine: its answers take their time.\nlist_timeout = 600\n",
            self.port
        )
        .unwrap();
    }

    /// This machine's convirt with the world's settings and ssh config, not yet run.
    pub fn host_convirt(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_convirt"));
        c.arg("--config")
            .arg(&self.host_config)
            .args(args)
            .env(
                "CONVIRT_SSH",
                format!("ssh -F {}", self.run_dir.join("ssh_config").display()),
            )
            .stdin(Stdio::null());
        c
    }

    /// `ssh root@dom0 SCRIPT` (bash -c, `set -e`), not yet run.
    pub fn ssh(&self, script: &str) -> Command {
        let mut c = Command::new("ssh");
        c.args(ssh_opts(&self.key))
            .arg("-p")
            .arg(self.port.to_string())
            .arg("root@127.0.0.1")
            .arg(format!(
                "bash -c {}",
                shell_quote(&format!("set -e\n{script}"))
            ));
        c.stdin(Stdio::null());
        c
    }

    /// Runs a script in dom0; its output. A connection that could not be set up (dom0's
    /// sshd too slow to answer while an emulated guest starts: the script never ran) is
    /// tried again, a few times.
    pub fn sh(&self, script: &str) -> Output {
        let mut tries = 0;
        loop {
            let o = self.ssh(script).output().expect("run ssh");
            tries += 1;
            if tries >= 5 || !never_connected(&o) {
                return o;
            }
            note(
                self.t0,
                &format!(
                    "ssh to dom0 did not connect ({}); again in 15 s",
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
            );
            std::thread::sleep(Duration::from_secs(15));
        }
    }

    /// Runs a script in dom0 that must succeed; its stdout.
    pub fn ok(&self, script: &str) -> String {
        ok(&format!("in dom0: {script}"), self.sh(script))
    }

    /// Waits for a text in a guest's console log (xenconsoled --log=guest).
    pub fn wait_console(&self, vm: &str, want: &str, limit: Duration) -> Result<String, String> {
        let path = format!("/var/log/xen/console/guest-{vm}.log");
        let mut last = String::new();
        wait_for(limit, || {
            let o = self.sh(&format!("cat {path} 2>/dev/null || true"));
            last = String::from_utf8_lossy(&o.stdout).into_owned();
            last.contains(want).then(|| last.clone())
        })
        .ok_or_else(|| format!("`{want}` not in {path} after {limit:?}; it holds:\n{last}"))
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.qemu.stop();
    }
}

/// ssh's own failure before the session started (exit 255 and its connect-stage words):
/// nothing ran in dom0, so running the script again is safe.
fn never_connected(o: &Output) -> bool {
    let err = String::from_utf8_lossy(&o.stderr);
    o.status.code() == Some(255)
        && [
            "banner exchange",
            "kex_exchange_identification",
            "Connection refused",
            "Connection timed out",
        ]
        .iter()
        .any(|w| err.contains(w))
}

fn ssh_opts(key: &Path) -> Vec<String> {
    [
        "-i",
        &key.display().to_string(),
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ConnectTimeout=60",
        "-o",
        "ServerAliveInterval=15",
        "-o",
        "ServerAliveCountMax=20",
    ]
    .map(String::from)
    .to_vec()
}

pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Boots Xen with dom0 under QEMU (TCG): the hypervisor through QEMU's multiboot loader,
/// dom0's kernel and initrd as its modules, dom0 on a copy-on-write overlay (vda), an empty
/// disk for LVM (vdb) and the guest cache seed (vdc).
fn boot(dom0: &Path, run_dir: &Path, port: u16, t0: Instant) -> Qemu {
    let overlay = run_dir.join("dom0.qcow2");
    let _ = std::fs::remove_file(&overlay);
    run(
        "qemu-img create overlay",
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(dom0.join("dom0.img"))
            .arg(&overlay),
    );
    let lvm = run_dir.join("lvm.img");
    let _ = std::fs::remove_file(&lvm);
    run(
        "truncate lvm.img",
        Command::new("truncate").args(["-s", "4G"]).arg(&lvm),
    );
    let serial = run_dir.join("serial.log");
    let pidfile = run_dir.join("qemu.pid");
    let d = |n: &str| dom0.join(n).display().to_string();
    let args = [
        "-accel".to_string(),
        "tcg".into(),
        "-cpu".into(),
        "qemu64,+svm,+npt".into(),
        "-m".into(),
        "3072".into(),
        "-smp".into(),
        "2".into(),
        "-display".into(),
        "none".into(),
        "-monitor".into(),
        "none".into(),
        "-no-reboot".into(),
        "-serial".into(),
        format!("file:{}", serial.display()),
        "-pidfile".into(),
        pidfile.display().to_string(),
        "-kernel".into(),
        d("xen.elf"),
        "-append".into(),
        "console=com1 com1=115200,8n1 dom0_mem=1024M,max:1024M loglvl=all guest_loglvl=all".into(),
        "-initrd".into(),
        format!(
            "{} root=/dev/vda rw console=hvc0 net.ifnames=0,{}",
            d("vmlinuz"),
            d("initrd.img")
        ),
        "-drive".into(),
        format!("file={},if=virtio,format=qcow2", overlay.display()),
        "-drive".into(),
        format!("file={},if=virtio,format=raw", lvm.display()),
        "-drive".into(),
        format!(
            "file={},if=virtio,format=raw",
            run_dir.join("seed.img").display()
        ),
        "-nic".into(),
        format!("user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:{port}-:22"),
    ];
    let mut guard = Command::new("sh")
        .arg("-c")
        .arg(r#"qemu-system-x86_64 "$@" & q=$!; cat > /dev/null; kill "$q"; wait "$q""#)
        .arg("sh")
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(run_dir.join("qemu.stderr")).unwrap())
        .spawn()
        .expect("start qemu-system-x86_64");
    // Keep the pipe open: its end (this process exiting) stops QEMU.
    let _ = guard.stdin.as_mut().map(|s| s.flush());
    note(t0, &format!("QEMU started (ssh port {port})"));
    Qemu { guard, pidfile }
}

//! Provisioning for real: real scripts, real files, real signals, the shipped
//! `common/functions`; no mocks.

use crate::xen::xl_check;
use crate::{World, fails_saying, provision_args, provision_script, repo, stderr, stdout};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A sandbox: the shipped `common/` in the world's store, and a settings file that points
/// every path convirt and the scripts write to inside the world.
pub fn sandbox() -> World {
    let w = World::new();
    copy_dir(
        &repo().join("image_store/common"),
        &w.store().join("common"),
    );
    copy_dir(
        &repo().join("image_store/custom_scripts"),
        &w.store().join("custom_scripts"),
    );
    let p = w.path().display().to_string();
    w.write(
        "convirt.toml",
        &format!(
            "image_store = '{p}/store'\nlog_dir = '{p}/log'\nwork_dir = '{p}/work'\nstate_dir = '{p}/state'\n\n[variables]\nVM_DISKS_DIR = '{p}/disks'\nVM_CONF_DIR = '{p}/conf'\nVM_CACHE_DIR = '{p}/cache'\n"
        ),
    );
    w
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

impl World {
    /// Runs convirt with the sandbox settings.
    pub fn conv(&self, args: &[&str]) -> std::process::Output {
        self.conv_cmd(args).output().unwrap()
    }

    /// `conv_cmd(args)` in the background, stdout and stderr piped (`quiet`: discarded).
    pub fn conv_spawn(&self, args: &[&str], quiet: bool) -> std::process::Child {
        let out = || if quiet { Stdio::null() } else { Stdio::piped() };
        self.conv_cmd(args)
            .stdout(out())
            .stderr(out())
            .spawn()
            .unwrap()
    }

    pub fn conv_cmd(&self, args: &[&str]) -> Command {
        let mut c = self.command();
        c.arg("--config")
            .arg(self.path().join("convirt.toml"))
            .args(args);
        c
    }

    /// Every entry under a directory of the world, for before/after comparisons.
    pub fn snapshot(&self, rel: &str) -> std::collections::BTreeMap<String, String> {
        crate::tree(&self.path().join(rel))
    }
}

/// Waits (at most 20 s) until a file holds some text.
fn wait_for(path: &Path, text: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(path)
        .unwrap_or_default()
        .contains(text)
    {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The probe image's script after the ConVirt preamble: behaviour chosen by image.conf's
/// `mode`.
const PROBE_BODY: &str = r#"log_msg "probe: image $image_name vm $VM_NAME mode $mode"
provision_disks
case "$mode" in
    ok) ;;
    exit3) log_msg "failing on purpose"; exit 3 ;;
    sigkill) kill -KILL $$ ;;
    sleep) (sleep 3; touch "$MARK_FILE") & sleep 30 ;;
    hostile)
        printf '%s' "$hostile" > "$OUT_FILE"
        printf '%s' "$disk" > "$OUT_FILE.disk"
        ;;
esac
log_msg "probe done"
"#;

pub fn probe(w: &World, extra_conf: &str) {
    let p = w.path().display().to_string();
    w.write(
        "store/Probe/image.conf",
        &format!("mode = 'ok'\nxvda_disk_create = 'yes'\nxvda_disk_size = 64\nxvda_disk_type = 'VBD'\nMARK_FILE = '{p}/mark'\nOUT_FILE = '{p}/out'\n{extra_conf}"),
    );
    w.write(
        "store/Probe/vm_conf.template",
        "name = ''\nmemory = 256\nkernel = '/usr/lib/xen/boot/pv-grub.gz'\ndisk = ['file:$VM_DISKS_DIR/$VM_NAME.disk,xvda,w']\nvif = ['mac=$AUTOGEN_MAC,bridge=$DEFAULT_BRIDGE']\n",
    );
    w.write_exec(
        "store/Probe/provision.sh",
        &provision_script(true, PROBE_BODY),
    );
    w.write("store/Probe/description.htm", "<body>Probe</body>");
}

#[test]
fn probe_image_provisions_and_installs_a_config_xen_accepts() {
    let w = sandbox();
    probe(&w, "");
    let o = w.conv(&provision_args("web1", "Probe", &[]));
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let cfg = w.path().join("conf/web1.cfg");
    assert!(
        stdout(&o).contains(&format!("config: {}", cfg.display())),
        "{}",
        stdout(&o)
    );
    let disk = w.path().join("disks/web1.disk");
    let m = std::fs::metadata(&disk).unwrap();
    assert_eq!(m.len(), 64 << 20, "apparent size");
    assert!(m.blocks() * 512 < 1 << 20, "sparse: {} blocks", m.blocks());
    let log = w.path().join("log/Probe/Probe_web1.log");
    assert_eq!(
        std::fs::metadata(&log).unwrap().permissions().mode() & 0o777,
        0o640
    );
    let logtext = std::fs::read_to_string(&log).unwrap();
    assert!(
        logtext.contains("probe: image Probe vm web1 mode ok"),
        "{logtext}"
    );
    assert!(
        logtext.contains("convirt: installed VM config"),
        "{logtext}"
    );
    let ic = std::fs::read_to_string(w.path().join("log/Probe/Probe_web1_image.conf")).unwrap();
    assert!(ic.contains("xvda_disk_size = 64\n"), "{ic}");
    assert!(
        !w.path()
            .join("work")
            .read_dir()
            .unwrap()
            .flatten()
            .any(|e| e.file_name() != "locks"),
        "work dir left behind"
    );
    if let Some(r) = xl_check(&cfg) {
        let json = r.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(json["c_info"]["name"], "web1");
        assert_eq!(json["disks"][0]["pdev_path"], disk.display().to_string());
    }
}

#[test]
fn a_failing_script_leaves_no_config_and_none_of_its_disks_and_keeps_the_log() {
    let w = sandbox();
    probe(&w, "");
    let o = w.conv(&provision_args("bad", "Probe", &["--set", "mode=exit3"]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("provision.sh exited with status 3"), "{err}");
    assert!(
        err.contains("failing on purpose"),
        "last lines shown: {err}"
    );
    let log = w.path().join("log/Probe/Probe_bad.log");
    assert!(err.contains(&format!("log: {}", log.display())), "{err}");
    assert!(log.exists());
    assert!(!w.path().join("conf/bad.cfg").exists());
    assert!(
        !w.path().join("disks/bad.disk").exists(),
        "created disk removed"
    );
    assert!(
        err.contains(&w.path().join("disks/bad.disk").display().to_string()),
        "removal reported: {err}"
    );
    // --keep keeps them and says so.
    let o = w.conv(&provision_args(
        "bad",
        "Probe",
        &["--set", "mode=exit3", "--keep"],
    ));
    assert_eq!(o.status.code(), Some(1));
    assert!(w.path().join("disks/bad.disk").exists());
    assert!(stderr(&o).contains("kept for debugging"), "{}", stderr(&o));
    assert!(
        w.path().join("log/Probe/Probe_bad.log.1").exists(),
        "earlier log rotated"
    );
}

#[test]
fn signals_and_timeouts_are_named_and_cleaned_up() {
    let w = sandbox();
    probe(&w, "");
    let o = w.conv(&provision_args("k", "Probe", &["--set", "mode=sigkill"]));
    fails_saying(&o, "killed by signal SIGKILL (9)");
    assert!(!w.path().join("disks/k.disk").exists());

    let start = Instant::now();
    let o = w.conv(&provision_args(
        "t",
        "Probe",
        &["--set", "mode=sleep", "--timeout", "1"],
    ));
    fails_saying(&o, "timed out after 1 s");
    assert!(start.elapsed() < Duration::from_secs(20));
    assert!(!w.path().join("disks/t.disk").exists());
    background_child_stopped(&w, "the script's background child survived the timeout");
}

/// The probe's `sleep` mode starts a child that touches `mark` after 3 s: it must have been
/// stopped with the script (`survived` says otherwise).
#[track_caller]
fn background_child_stopped(w: &World, survived: &str) {
    std::thread::sleep(Duration::from_millis(3500));
    assert!(!w.path().join("mark").exists(), "{survived}");
}

#[test]
fn ctrl_c_stops_the_script_group_cleans_up_and_exits_130() {
    let w = sandbox();
    probe(&w, "");
    let child = w.conv_spawn(
        &provision_args("i", "Probe", &["--set", "mode=sleep"]),
        false,
    );
    let log = w.path().join("log/Probe/Probe_i.log");
    wait_for(&log, "probe: image", "the script never started");
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(stderr(&o).contains("interrupted"), "{}", stderr(&o));
    assert!(!w.path().join("disks/i.disk").exists());
    assert!(!w.path().join("conf/i.cfg").exists());
    background_child_stopped(&w, "background child survived Ctrl-C");
}

#[test]
fn a_second_provision_of_the_same_vm_fails_at_once_naming_the_holder() {
    let w = sandbox();
    probe(&w, "");
    let mut first = w.conv_spawn(
        &provision_args("same", "Probe", &["--set", "mode=sleep", "--timeout", "8"]),
        true,
    );
    let lock = w.path().join("work/locks/same.lock");
    wait_for(&lock, "pid", "no lock taken");
    let start = Instant::now();
    let o = w.conv(&provision_args("same", "Probe", &[]));
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "the second run waited"
    );
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("VM `same` is already being provisioned (pid "),
        "{err}"
    );
    assert!(err.contains(&format!("pid {}", first.id())), "{err}");
    let _ = first.kill();
    let _ = first.wait();
}

#[test]
fn an_existing_disk_or_config_is_never_touched_without_force() {
    let w = sandbox();
    probe(&w, "");
    let disk = w.write("disks/old.disk", "precious data");
    let o = w.conv(&provision_args("old", "Probe", &[]));
    fails_saying(&o, "already exists");
    assert_eq!(std::fs::read_to_string(&disk).unwrap(), "precious data");
    assert!(!w.path().join("conf/old.cfg").exists());
    assert!(
        !w.path().join("log/Probe/Probe_old.log").exists(),
        "nothing written on refusal"
    );

    // A provisioned VM is not provisioned again.
    let o = w.conv(&provision_args("v", "Probe", &[]));
    assert!(o.status.success(), "{}", stderr(&o));
    let before = w.snapshot("conf");
    let disk_before = std::fs::metadata(w.path().join("disks/v.disk"))
        .unwrap()
        .modified()
        .unwrap();
    let o = w.conv(&provision_args("v", "Probe", &[]));
    fails_saying(&o, "VM config");
    assert_eq!(w.snapshot("conf"), before);
    assert_eq!(
        std::fs::metadata(w.path().join("disks/v.disk"))
            .unwrap()
            .modified()
            .unwrap(),
        disk_before
    );

    // --force replaces both and says so.
    let o = w.conv(&provision_args("old", "Probe", &["--force"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("replaced (--force)"), "{}", stdout(&o));
    assert_eq!(std::fs::metadata(&disk).unwrap().len(), 64 << 20);
}

#[test]
fn hostile_values_arrive_verbatim_and_nothing_runs() {
    let w = sandbox();
    let pwned = w.path().join("pwned");
    let value = format!(
        "$(touch {0}) `touch {0}` ; touch {0}; it's \"q\" \\n\nline2 $1$9qAFryp3$XmvqcFN/CJG4AC7jgyVE8",
        pwned.display()
    );
    probe(&w, "");
    let o = w.conv(&provision_args(
        "h",
        "Probe",
        &[
            "--set",
            "mode=hostile",
            "--set",
            &format!("hostile={value}"),
        ],
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(w.path().join("out")).unwrap(),
        value
    );
    assert!(!pwned.exists(), "a value was executed");
    let disk = std::fs::read_to_string(w.path().join("out.disk")).unwrap();
    assert_eq!(
        disk,
        format!("['file:{}/disks/h.disk,xvda,w']", w.path().display()),
        "lists arrive as their repr"
    );
}

#[test]
fn a_file_size_limit_while_writing_a_disk_fails_cleanly() {
    let w = sandbox();
    probe(&w, "");
    if Command::new("prlimit").arg("--version").output().is_err() {
        panic!("prlimit (util-linux) is required");
    }
    let mut c = Command::new("prlimit");
    c.arg("--fsize=1048576")
        .arg(assert_cmd::cargo::cargo_bin("convirt"));
    c.env_clear().envs(w.env());
    c.arg("--config").arg(w.path().join("convirt.toml")).args([
        "provision",
        "--vm",
        "f",
        "--image",
        "Probe",
    ]);
    let o = c.output().unwrap();
    fails_saying(&o, "provisioning `f` failed");
    assert!(!w.path().join("disks/f.disk").exists());
    assert!(!w.path().join("conf/f.cfg").exists());
}

#[test]
fn several_vms_with_jobs_each_get_a_log_and_one_failure_stops_nothing() {
    let w = sandbox();
    probe(&w, "");
    // `b2` fails: its disk exists already.
    w.write("disks/b2.disk", "x");
    let o = w.conv(&[
        "provision",
        "--vm",
        "b1",
        "b2",
        "b3",
        "--image",
        "Probe",
        "--jobs",
        "2",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["ok"], true);
    assert_eq!(rows[1]["ok"], false);
    assert_eq!(rows[2]["ok"], true);
    for vm in ["b1", "b3"] {
        assert!(w.path().join(format!("conf/{vm}.cfg")).exists());
        assert!(w.path().join(format!("log/Probe/Probe_{vm}.log")).exists());
    }
}

#[test]
fn dry_run_prints_the_plan_and_writes_nothing() {
    let w = sandbox();
    probe(&w, "custom_list = ['hostname']\n");
    let before = w.snapshot("");
    let o = w.conv(&provision_args(
        "d",
        "Probe",
        &["--dry-run", "--vm-set", "memory=512"],
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("memory = 512"), "{out}");
    assert!(
        out.contains(&format!(
            "{}/disks/d.disk (VBD, xvda): created, 64 MB",
            w.path().display()
        )),
        "{out}"
    );
    assert!(out.contains("custom_scripts/hostname/"), "{out}");
    assert!(out.contains("provision.sh -x "), "{out}");
    assert!(
        out.lines().any(|l| l.trim_start().starts_with("mode ")
            && l.contains("= 'ok'    # ")
            && l.ends_with("Probe/image.conf:1")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("VM_DISKS_DIR") && l.contains("# site (")),
        "{out}"
    );
    assert_eq!(w.snapshot(""), before, "dry run wrote something");
    let o = w.conv(&[
        "--json",
        "provision",
        "--vm",
        "d",
        "--image",
        "Probe",
        "--dry-run",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["disks"][0]["size_mb"], 64);
    assert_eq!(v["image_conf"][0]["origin"]["kind"], "image");
}

#[test]
fn cleanup_removes_exactly_what_the_run_created() {
    let w = sandbox();
    probe(&w, "");
    std::fs::create_dir_all(w.path().join("disks")).unwrap();
    w.write("disks/neighbour.disk", "keep me");
    let before_disks = w.snapshot("disks");
    let o = w.conv(&provision_args("c", "Probe", &["--set", "mode=exit3"]));
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(w.snapshot("disks"), before_disks);
}

/// The README's main command, as a normal user with nothing configured: as root the test
/// drops to `nobody` with `setpriv`, so `~/.convirt` defaults apply for real.
#[test]
fn readme_command_provisions_linux_cd_install_into_home_as_a_normal_user() {
    let w = World::new();
    let home = w.home();
    let root = unsafe { libc::geteuid() } == 0;
    let mut c = w.as_user();
    c.args([
        "provision",
        "--vm",
        "Joe_Desktop",
        "--image",
        "Linux_CD_Install",
    ]);
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let cfg = home.join(".convirt/vm_configs/Joe_Desktop.cfg");
    assert!(
        stdout(&o).contains(&cfg.display().to_string()),
        "{}",
        stdout(&o)
    );
    let disk = home.join(".convirt/vm_disks/Joe_Desktop.disk.xm");
    let m = std::fs::metadata(&disk)
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", disk.display(), stdout(&o)));
    assert_eq!(m.len(), 10000 << 20);
    assert!(m.blocks() * 512 < 1 << 20, "not sparse");
    if root {
        assert_eq!(m.uid(), 65534, "the disk belongs to the user");
    }
    assert!(
        home.join(".convirt/log/Linux_CD_Install/Linux_CD_Install_Joe_Desktop.log")
            .is_file()
    );
    if let Some(r) = xl_check(&cfg) {
        let json = r.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(json["c_info"]["name"], "Joe_Desktop");
        assert_eq!(json["c_info"]["type"], "hvm");
    }
}

/// A minimal HTTP/1.0 file server on 127.0.0.1 for the test's lifetime: real sockets, real
/// curl/wget on the other side.
fn serve(dir: &Path) -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten().take(64) {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" || h == "\n" {
                    break;
                }
            }
            let path = request
                .split_whitespace()
                .nth(1)
                .unwrap_or("/")
                .trim_start_matches('/')
                .to_string();
            let mut s = stream;
            match std::fs::read(dir.join(&path)) {
                Ok(body) if !path.contains("..") => {
                    let _ = write!(
                        s,
                        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n",
                        body.len()
                    );
                    let _ = s.write_all(&body);
                }
                _ => {
                    let _ = write!(s, "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n");
                }
            }
        }
    });
    port
}

#[test]
fn fedora_fetches_its_installer_over_http_and_from_a_local_path_into_the_kernel_cache() {
    let w = sandbox();
    copy_dir(
        &repo().join("image_store/Fedora_Core_Install"),
        &w.store().join("Fedora_Core_Install"),
    );
    w.write("www/vmlinuz", "KERNEL over http");
    w.write("www/initrd.img", "INITRD over http");
    let port = serve(&w.path().join("www"));
    let o = w.conv(&provision_args(
        "fed1",
        "Fedora_Core_Install",
        &[
            "--set",
            &format!("kernel_src=http://127.0.0.1:{port}/vmlinuz"),
            "--set",
            &format!("ramdisk_src=http://127.0.0.1:{port}/initrd.img"),
        ],
    ));
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let cache = w
        .path()
        .join("cache/kernels/Fedora_Core_Install/Fedora_40_x86_64");
    assert_eq!(
        std::fs::read_to_string(cache.join("vmlinuz")).unwrap(),
        "KERNEL over http"
    );
    assert_eq!(
        std::fs::read_to_string(cache.join("initrd.img")).unwrap(),
        "INITRD over http"
    );
    let disk = std::fs::metadata(w.path().join("disks/fed1.disk.xm")).unwrap();
    assert_eq!(disk.len(), 10000 << 20);
    let cfg = w.path().join("conf/fed1.cfg");
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(
        text.contains(&format!("kernel = \"{}\"", cache.join("vmlinuz").display())),
        "{text}"
    );
    if let Some(r) = xl_check(&cfg) {
        let json = r.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(json["c_info"]["type"], "pv");
        assert_eq!(
            json["b_info"]["kernel"],
            cache.join("vmlinuz").display().to_string()
        );
    }

    // A local path and a file:// URL, under another KERNEL_TYPE.
    w.write("local/vmlinuz", "KERNEL from disk");
    w.write("local/initrd.img", "INITRD from disk");
    let local = w.path().join("local");
    let o = w.conv(&provision_args(
        "fed2",
        "Fedora_Core_Install",
        &[
            "--set",
            "KERNEL_TYPE=local_build",
            "--set",
            &format!("kernel_src={}", local.join("vmlinuz").display()),
            "--set",
            &format!("ramdisk_src=file://{}", local.join("initrd.img").display()),
        ],
    ));
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let cache2 = w
        .path()
        .join("cache/kernels/Fedora_Core_Install/local_build");
    assert_eq!(
        std::fs::read_to_string(cache2.join("vmlinuz")).unwrap(),
        "KERNEL from disk"
    );
    assert_eq!(
        std::fs::read_to_string(cache2.join("initrd.img")).unwrap(),
        "INITRD from disk"
    );

    // A download that fails leaves nothing behind: no disk, no config, no partial cache.
    let o = w.conv(&provision_args(
        "fed3",
        "Fedora_Core_Install",
        &[
            "--set",
            "KERNEL_TYPE=missing",
            "--set",
            &format!("kernel_src=http://127.0.0.1:{port}/no-such-file"),
        ],
    ));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(!w.path().join("disks/fed3.disk.xm").exists());
    assert!(!w.path().join("conf/fed3.cfg").exists());
    assert!(
        !w.path()
            .join("cache/kernels/Fedora_Core_Install/missing")
            .exists()
    );
}

/// After the ConVirt preamble: stages a tiny guest tree, then runs the image's customization
/// directories on it (they find the store's and the image's through these two).
const CUSTOM_BODY: &str = r#"common_loc="$store/common"
image_root="$store/$image_name"
mkdir -p "$GUEST_DIR/etc"
printf 'root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n' > "$GUEST_DIR/etc/shadow"
printf '127.0.0.1\tlocalhost\n' > "$GUEST_DIR/etc/hosts"
export GUEST_ROOT="$GUEST_DIR"
run_custom_scripts
"#;

#[test]
fn store_wide_custom_scripts_set_hostname_and_root_password_in_a_staged_guest() {
    let w = sandbox();
    let hash = "$6$salt$Xa1/b.2cDeFgHiJkLmNoPqRsTuVwXyZ";
    let guest = w.path().join("guest");
    w.write(
        "store/Custom/image.conf",
        &format!("custom_list = ['hostname', 'root_password', 'own']\nroot_password_hash = '{hash}'\nGUEST_DIR = '{}'\n", guest.display()),
    );
    w.write(
        "store/Custom/vm_conf.template",
        "name = ''\nmemory = 128\nkernel = '/k'\n",
    );
    w.write_exec(
        "store/Custom/provision.sh",
        &provision_script(true, CUSTOM_BODY),
    );
    w.write_exec(
        "store/Custom/custom_scripts/own/S20order",
        &format!("#!/bin/bash\necho second >> {}/order\n", w.path().display()),
    );
    w.write_exec(
        "store/Custom/custom_scripts/own/S10order",
        &format!("#!/bin/bash\necho first >> {}/order\n", w.path().display()),
    );
    w.write_exec(
        "store/Custom/custom_scripts/own/S15order~",
        &format!("#!/bin/bash\necho backup >> {}/order\n", w.path().display()),
    );
    let o = w.conv(&provision_args("web7", "Custom", &[]));
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(
        std::fs::read_to_string(guest.join("etc/hostname"))
            .unwrap()
            .trim(),
        "web7"
    );
    let shadow = std::fs::read_to_string(guest.join("etc/shadow")).unwrap();
    assert!(shadow.starts_with(&format!("root:{hash}:")), "{shadow}");
    assert!(shadow.contains("daemon:*:"), "{shadow}");
    assert_eq!(
        std::fs::read_to_string(w.path().join("order")).unwrap(),
        "first\nsecond\n"
    );

    // The dry run lists the scripts in order; the store-wide ones are found in the store.
    let o = w.conv(&provision_args("web8", "Custom", &["--dry-run"]));
    let out = stdout(&o);
    let pos = |s: &str| {
        out.find(s)
            .unwrap_or_else(|| panic!("{s} missing from {out}"))
    };
    assert!(
        pos("custom_scripts/hostname/S10hostname")
            < pos("custom_scripts/root_password/S10root_password")
    );
    assert!(pos("own/S10order") < pos("own/S20order"));
    assert!(!out.contains("S15order~"));
}

/// Images written for ConVirt 2.1, with their own generic provision.sh that reads values
/// with `source_python_config`, run unchanged on the shipped `common/functions`.
#[test]
fn convirt21_images_provision_unchanged_with_the_shipped_functions() {
    let w = sandbox();
    let fixture = repo().join("tests/fixtures/stores/convirt21");
    for e in std::fs::read_dir(&fixture).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name == "common" {
            continue;
        }
        copy_dir(&e.path(), &w.store().join(&name));
    }
    let images = [
        "CentOS_PV_Install",
        "Fedora_PV_Install",
        "Linux_CD_Install",
        "Windows_CD_Install",
    ];
    for image in images {
        let vm = format!("c21-{}", image.to_lowercase().replace('_', "-"));
        let o = w.conv(&["provision", "--vm", &vm, "--image", image]);
        assert!(o.status.success(), "{image}: {}{}", stdout(&o), stderr(&o));
        let log = std::fs::read_to_string(w.path().join(format!("log/{image}/{image}_{vm}.log")))
            .unwrap();
        assert!(log.contains(&format!("VM '{vm}' with ")), "{log}");
        assert!(
            log.contains("disks: ['"),
            "lists arrive as their repr: {log}"
        );
        assert_eq!(
            log.matches(&format!("provisioning of {image} done"))
                .count(),
            1,
            "logged once: {log}"
        );
        let cfg = w.path().join(format!("conf/{vm}.cfg"));
        if let Some(r) = xl_check(&cfg) {
            r.unwrap_or_else(|e| panic!("{image}: {e}"));
        }
    }
}

/// Every shipped image provisions for real in a sandbox: the config passes Xen's parser, the
/// disk has its size and is sparse, the log and the image.conf copy are private.
#[test]
fn every_shipped_image_provisions_in_a_sandbox() {
    let w = sandbox();
    for image in [
        "Fedora_Core_Install",
        "Linux_CD_Install",
        "Windows_CD_Install",
    ] {
        copy_dir(
            &repo().join("image_store").join(image),
            &w.store().join(image),
        );
    }
    w.write("www/vmlinuz", "kernel");
    w.write("www/initrd.img", "initrd");
    let www = w.path().join("www");
    let cases: [(&str, &str, &[String], u64, &str); 3] = [
        ("Linux_CD_Install", "lin1", &[], 10000, "hvm"),
        ("Windows_CD_Install", "win1", &[], 40960, "hvm"),
        (
            "Fedora_Core_Install",
            "fed1",
            &[
                "--set".to_string(),
                format!("kernel_src={}", www.join("vmlinuz").display()),
                "--set".to_string(),
                format!("ramdisk_src={}", www.join("initrd.img").display()),
            ],
            10000,
            "pv",
        ),
    ];
    for (image, vm, extra, size_mb, kind) in cases {
        let mut args = vec!["provision", "--vm", vm, "--image", image];
        args.extend(extra.iter().map(String::as_str));
        let o = w.conv(&args);
        assert!(o.status.success(), "{image}: {}{}", stdout(&o), stderr(&o));
        let disk = std::fs::metadata(w.path().join(format!("disks/{vm}.disk.xm"))).unwrap();
        assert_eq!(disk.len(), size_mb << 20, "{image}: apparent size");
        assert!(disk.blocks() * 512 < 1 << 20, "{image}: not sparse");
        let log = w.path().join(format!("log/{image}/{image}_{vm}.log"));
        let copy = w
            .path()
            .join(format!("log/{image}/{image}_{vm}_image.conf"));
        // The log 0640; the instantiated inputs hold every value, secrets too: 0600.
        for (f, want) in [(&log, 0o640), (&copy, 0o600)] {
            assert_eq!(
                std::fs::metadata(f).unwrap().permissions().mode() & 0o777,
                want,
                "{}",
                f.display()
            );
        }
        let copy_text = std::fs::read_to_string(&copy).unwrap();
        assert!(
            copy_text.contains(&format!("VM_DISKS_DIR = '{}/disks'", w.path().display())),
            "{copy_text}"
        );
        let cfg = w.path().join(format!("conf/{vm}.cfg"));
        if let Some(r) = xl_check(&cfg) {
            let json = r.unwrap_or_else(|e| panic!("{image}: {e}"));
            assert_eq!(json["c_info"]["name"], vm);
            assert_eq!(json["c_info"]["type"], kind);
            assert_eq!(
                json["disks"][0]["pdev_path"],
                w.path()
                    .join(format!("disks/{vm}.disk.xm"))
                    .display()
                    .to_string()
            );
        }
    }
}

/// LVM needs the kernel's device-mapper, which this kind of machine lacks: the test says so
/// and skips there, and runs for real where it exists.
#[test]
fn lvm_disks_use_lvcreate_where_device_mapper_exists() {
    let have_dm = Path::new("/dev/mapper/control").exists();
    let have_lvm = Command::new("lvcreate")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let root = unsafe { libc::geteuid() } == 0;
    if !(have_dm && have_lvm && root) {
        eprintln!(
            "SKIP lvm_disks_use_lvcreate_where_device_mapper_exists: needs root ({root}), LVM tools ({have_lvm}) and a kernel device-mapper ({have_dm})"
        );
        return;
    }
    let w = sandbox();
    let img = w.path().join("pv.img");
    assert!(
        Command::new("truncate")
            .args(["-s", "64M"])
            .arg(&img)
            .status()
            .unwrap()
            .success()
    );
    let loopdev = Command::new("losetup")
        .args(["--find", "--show"])
        .arg(&img)
        .output()
        .unwrap();
    let loopdev = stdout(&loopdev).trim().to_string();
    let vg = format!("cvtest{}", std::process::id());
    assert!(
        Command::new("vgcreate")
            .args([&vg, &loopdev])
            .status()
            .unwrap()
            .success()
    );
    probe(&w, "xvda_disk_type = 'LVM'\n");
    w.write(
        "store/Probe/vm_conf.template",
        &format!(
            "name = ''\nmemory = 128\nkernel = '/k'\ndisk = ['phy:/dev/{vg}/$VM_NAME,xvda,w']\n"
        ),
    );
    let o = w.conv(&provision_args(
        "lv1",
        "Probe",
        &["--set", "xvda_disk_size=8"],
    ));
    let ok = o.status.success() && Path::new(&format!("/dev/{vg}/lv1")).exists();
    let _ = Command::new("vgremove").args(["-f", &vg]).status();
    let _ = Command::new("losetup").args(["-d", &loopdev]).status();
    assert!(ok, "{}{}", stdout(&o), stderr(&o));
}

/// A packed image extracts with plain GNU tar into another store, where convirt provisions it.
#[test]
fn a_packed_image_extracted_with_gnu_tar_provisions() {
    let src = World::new();
    let o = src
        .cmd()
        .args(["store", "init"])
        .arg(src.store())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let archive = src.path().join("lin.tar.gz");
    let o = src.run(&[
        "image",
        "pack",
        "Linux_CD_Install",
        "-o",
        archive.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));

    let w = sandbox();
    let st = Command::new("tar")
        .arg("xzf")
        .arg(&archive)
        .current_dir(w.store())
        .status()
        .unwrap();
    assert!(st.success());
    let o = w.conv(&["image", "validate", "Linux_CD_Install"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let o = w.conv(&provision_args("unpacked", "Linux_CD_Install", &[]));
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let cfg = w.path().join("conf/unpacked.cfg");
    assert!(cfg.is_file());
    assert_eq!(
        std::fs::metadata(w.path().join("disks/unpacked.disk.xm"))
            .unwrap()
            .len(),
        10000 << 20
    );
    if let Some(r) = xl_check(&cfg) {
        r.unwrap_or_else(|e| panic!("{e}"));
    }
}

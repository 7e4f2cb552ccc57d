//! Faults (issue #12): full disks (real tmpfs mounts when root, real `prlimit` file-size
//! limits otherwise), convirt killed or interrupted in the middle of `import`, `create-like`
//! and `pack`, archives that lie or expand too far. Each case checks the exit status, the
//! message documented in docs/cli.md, and the directories before and after.

use crate::archive::{header, hostile};
use crate::provision::{probe, sandbox};
use crate::tree as snapshot;
use crate::{World, provision_args, provision_script, stderr, stdout};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A tmpfs of `size` mounted on `dir` for the test, unmounted when dropped (also when the
/// test panics). `None`, with the reason printed, when not root.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        if !root() {
            eprintln!("skipped: mounting a tmpfs needs root");
            return None;
        }
        std::fs::create_dir_all(dir).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size},mode=0755"))
            .arg("tmpfs")
            .arg(dir)
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs on {}", dir.display());
        Some(Tmpfs(dir.to_path_buf()))
    }

    /// Fills the file system up, leaving about `leave` bytes.
    fn fill(&self, leave: u64) {
        let st = free_bytes(&self.0);
        let n = st.saturating_sub(leave);
        std::fs::write(self.0.join("filler"), vec![1u8; n as usize]).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn free_bytes(p: &Path) -> u64 {
    let out = Command::new("stat")
        .args(["-f", "-c", "%a %S"])
        .arg(p)
        .output()
        .unwrap();
    let t = String::from_utf8_lossy(&out.stdout);
    let mut it = t.split_whitespace().map(|x| x.parse::<u64>().unwrap());
    it.next().unwrap() * it.next().unwrap()
}

/// `n` MiB of random bytes (incompressible, no zero runs) at `path`.
fn random_file(path: &Path, mib: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let st = Command::new("head")
        .arg("-c")
        .arg(format!("{mib}M"))
        .arg("/dev/urandom")
        .stdout(std::fs::File::create(path).unwrap())
        .status()
        .unwrap();
    assert!(st.success());
}

/// `c` (the binary, or a wrapper that runs it next) with the world's environment, in its
/// directory, on its store, with `args`.
fn on_store(mut c: Command, w: &World, args: &[&str]) -> Command {
    c.env_clear()
        .envs(w.env())
        .current_dir(w.path())
        .arg("--store")
        .arg(w.store())
        .args(args);
    c
}

/// The binary on the world's store, started in the background.
fn spawn(w: &World, args: &[&str]) -> Child {
    on_store(
        Command::new(assert_cmd::cargo::cargo_bin("convirt")),
        w,
        args,
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap()
}

/// Names in `dir` starting with `prefix`.
fn hidden(dir: &Path, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until `dir` holds an entry starting with `prefix` (the operation is under way),
/// then sends `sig`. Panics if the process ended first.
fn signal_when(child: &mut Child, dir: &Path, prefix: &str, sig: i32) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while hidden(dir, prefix).is_empty() {
        if let Ok(Some(st)) = child.try_wait() {
            panic!("ended ({st}) before `{prefix}*` appeared");
        }
        assert!(
            Instant::now() < deadline,
            "no `{prefix}*` in {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

fn finish(child: Child) -> (Option<i32>, String) {
    let o = child.wait_with_output().unwrap();
    (o.status.code(), stderr(&o))
}

#[test]
fn an_image_create_like_makes_from_a_link_through_a_subdirectory_packs_and_imports() {
    let w = World::new();
    w.image("Src", "a = 1\n", "name = ''\nimage_name = 'Src'\n");
    std::fs::create_dir(w.store().join("Src/sub")).unwrap();
    std::os::unix::fs::symlink("sub/../image.conf", w.store().join("Src/link")).unwrap();
    std::os::unix::fs::symlink("../sub/./../image.conf", w.store().join("Src/sub/up")).unwrap();
    // The source itself cannot be packed as it is: the one policy rewrites, pack refused.
    let o = w.run(&["image", "create-like", "Src", "Made"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let made = w.store().join("Made");
    assert_eq!(
        std::fs::read_link(made.join("link")).unwrap(),
        PathBuf::from("image.conf")
    );
    assert_eq!(
        std::fs::read_link(made.join("sub/up")).unwrap(),
        PathBuf::from("../image.conf")
    );
    let o = w.run(&["image", "pack", "Made", "-o", "made.tar.gz"]);
    assert!(o.status.success(), "{}", stderr(&o));

    let w2 = World::new();
    std::fs::create_dir(w2.store()).unwrap();
    let o = w2.run(&[
        "image",
        "import",
        w.path().join("made.tar.gz").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "imported `Made`\n");
    assert_eq!(snapshot(&made), snapshot(&w2.store().join("Made")));
    assert_eq!(
        std::fs::read_to_string(w2.store().join("Made/link")).unwrap(),
        "a = 1\n"
    );
}

#[test]
fn leftovers_of_dead_runs_are_swept_and_those_in_use_are_left_alone() {
    let w = World::new();
    w.image("Img", "a = 1\n", "name = ''\n");
    let before = snapshot(&w.store());
    let dead_new = w.store().join(".convirt-new-X-abc123");
    std::fs::create_dir_all(dead_new.join("deep")).unwrap();
    std::fs::write(dead_new.join("deep/f"), "half").unwrap();
    let dead_tmp = w.store().join(".convirt-tmp-xyz");
    std::fs::write(&dead_tmp, "half").unwrap();
    // An import killed after it put `Old` aside and before the new one was in.
    let aside = w.store().join(".convirt-import-9-9-old-Old");
    std::fs::create_dir(&aside).unwrap();
    std::fs::write(aside.join("image.conf"), "old = 1\n").unwrap();
    // One in use: this test holds its lock, as a running convirt does.
    let live = w.store().join(".convirt-import-live");
    std::fs::create_dir(&live).unwrap();
    let lock = std::fs::File::open(&live).unwrap();
    // SAFETY: flock on a descriptor this test owns.
    assert_eq!(
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) },
        0
    );

    let o = w.run(&["image", "list"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = w.filter(&stderr(&o));
    for want in [
        "warning: removed `[TMP]/store/.convirt-new-X-abc123`, left behind by an interrupted convirt",
        "warning: removed `[TMP]/store/.convirt-tmp-xyz`, left behind by an interrupted convirt",
        "warning: put image `Old` back from `[TMP]/store/.convirt-import-9-9-old-Old`",
    ] {
        assert!(err.contains(want), "{want}\n{err}");
    }
    assert!(!err.contains("convirt-import-live"), "{err}");
    assert!(live.is_dir(), "in use: left alone");
    assert!(!dead_new.exists() && !dead_tmp.exists());
    assert_eq!(
        std::fs::read_to_string(w.store().join("Old/image.conf")).unwrap(),
        "old = 1\n"
    );
    drop(lock);
    std::fs::remove_dir_all(w.store().join("Old")).unwrap();
    // Now free: the next command removes it too, and says so once.
    let o = w.run(&["image", "list"]);
    assert!(
        w.filter(&stderr(&o))
            .contains("removed `[TMP]/store/.convirt-import-live`")
    );
    assert_eq!(snapshot(&w.store()), before);
    let o = w.run(&["image", "list"]);
    assert_eq!(stderr(&o), "");
}

#[test]
fn an_old_image_put_aside_whose_place_is_taken_is_kept_and_named() {
    let w = World::new();
    w.image("Img", "new = 1\n", "name = ''\n");
    let aside = w.store().join(".convirt-import-1-1-old-Img");
    std::fs::create_dir(&aside).unwrap();
    std::fs::write(aside.join("image.conf"), "old = 1\n").unwrap();
    let o = w.run(&["image", "list"]);
    let err = w.filter(&stderr(&o));
    assert!(
        err.contains("warning: an old copy of image `Img` is kept at `[TMP]/store/.convirt-import-1-1-old-Img`"),
        "{err}"
    );
    assert!(aside.join("image.conf").exists(), "never removed");
}

/// An image `Src` with a random file of `mib` MiB, and the store snapshot before anything
/// runs.
fn src_image(w: &World, mib: u32) -> std::collections::BTreeMap<String, String> {
    w.image("Src", "a = 1\n", "name = ''\nimage_name = 'Src'\n");
    random_file(&w.store().join("Src/data"), mib);
    snapshot(&w.store())
}

/// `image create-like Src Copy`, which must exit with status 1: its stderr, temp path
/// filtered.
#[track_caller]
fn create_like_refused(w: &World) -> String {
    let o = w.run(&["image", "create-like", "Src", "Copy"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    w.filter(&stderr(&o))
}

/// `args` run with the world's store and environment, in its directory, under
/// `prlimit --fsize=1048576` (no file over 1 MiB), which must exit with status 1: its stderr.
#[track_caller]
fn refused_under_fsize_limit(w: &World, args: &[&str]) -> String {
    let mut prlimit = Command::new("prlimit");
    prlimit
        .arg("--fsize=1048576")
        .arg(assert_cmd::cargo::cargo_bin("convirt"));
    let o = on_store(prlimit, w, args).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    stderr(&o)
}

/// A world whose image `Big` (a 3 MiB random file) is packed as `big.tgz` in it.
fn packed_big() -> World {
    let src = World::new();
    src.image("Big", "a = 1\n", "name = ''\n");
    random_file(&src.store().join("Big/data"), 3);
    let o = src.run(&["image", "pack", "Big", "-o", "big.tgz"]);
    assert!(o.status.success(), "{}", stderr(&o));
    src
}

/// An image with one large random file, and the store snapshot before anything runs.
fn big_image(w: &World, mib: u32) -> std::collections::BTreeMap<String, String> {
    w.image("Big", "a = 1\n", "name = ''\nimage_name = 'Big'\n");
    random_file(&w.store().join("Big/disk.img"), mib);
    snapshot(&w.store())
}

#[test]
fn ctrl_c_during_pack_leaves_no_output_and_no_temp_file() {
    let w = World::new();
    big_image(&w, 96);
    let mut c = spawn(&w, &["image", "pack", "Big", "-o", "big.tar.gz"]);
    signal_when(&mut c, w.path(), ".convirt-pack-", libc::SIGINT);
    let (code, err) = finish(c);
    assert_eq!(code, Some(130), "{err}");
    assert_eq!(
        err,
        "error: `image pack` was interrupted (Ctrl-C); no archive was written\n"
    );
    assert!(!w.path().join("big.tar.gz").exists());
    assert_eq!(hidden(w.path(), ".convirt-"), Vec::<String>::new());
}

#[test]
fn ctrl_c_and_sigkill_during_import_leave_the_store_as_it_was() {
    let src = World::new();
    big_image(&src, 96);
    let o = src.run(&["image", "pack", "Big", "-o", "big.tar.zst"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let archive = src.path().join("big.tar.zst");

    let w = World::new();
    w.image("Other", "a = 1\n", "name = ''\n");
    let before = snapshot(&w.store());
    let mut c = spawn(&w, &["image", "import", archive.to_str().unwrap()]);
    signal_when(&mut c, &w.store(), ".convirt-import-", libc::SIGINT);
    let (code, err) = finish(c);
    assert_eq!(code, Some(130), "{err}");
    assert_eq!(
        err,
        "error: `image import` was interrupted (Ctrl-C); the store is unchanged\n"
    );
    assert_eq!(snapshot(&w.store()), before);

    // SIGKILL cannot be caught: the temporary directory stays until the next command.
    let mut c = spawn(&w, &["image", "import", archive.to_str().unwrap()]);
    signal_when(&mut c, &w.store(), ".convirt-import-", libc::SIGKILL);
    let (code, _) = finish(c);
    assert_eq!(code, None, "killed");
    let left = hidden(&w.store(), ".convirt-import-");
    assert_eq!(left.len(), 1, "{left:?}");
    let o = w.run(&["image", "list"]);
    assert!(o.status.success());
    assert!(
        stderr(&o).contains(&format!(
            "warning: removed `{}`, left behind by an interrupted convirt",
            w.store().join(&left[0]).display()
        )),
        "{}",
        stderr(&o)
    );
    assert_eq!(snapshot(&w.store()), before);
}

#[test]
fn sigkill_during_create_like_leaves_a_temp_dir_the_next_command_removes() {
    let w = World::new();
    let before = big_image(&w, 96);
    let mut c = spawn(&w, &["image", "create-like", "Big", "Copy"]);
    signal_when(&mut c, &w.store(), ".convirt-new-Copy-", libc::SIGKILL);
    let (code, _) = finish(c);
    assert_eq!(code, None, "killed");
    assert!(!w.store().join("Copy").exists());
    let o = w.run(&["image", "list"]);
    assert!(
        stderr(&o).contains("left behind by an interrupted convirt"),
        "{}",
        stderr(&o)
    );
    assert_eq!(snapshot(&w.store()), before);
}

/// An archive whose manifest comes first and promises `promised` bytes for `Good/big`,
/// which really holds `real` bytes.
fn lying_archive(w: &World, name: &str, promised: u64, real: usize) -> PathBuf {
    use tar::EntryType as T;
    let manifest = format!(
        "{{\"convirt-manifest\":1,\"image\":\"Good\",\"entries\":1}}\n{{\"path\":\"big\",\"type\":\"file\",\"mode\":\"0644\",\"size\":{promised},\"sha256\":\"00\"}}\n"
    );
    let data: Vec<u8> = (0..real).map(|i| (i % 251) as u8 + 1).collect();
    hostile(
        w,
        name,
        &[
            (
                header(
                    "Good/.convirt-manifest",
                    T::Regular,
                    0o644,
                    manifest.len() as u64,
                    None,
                ),
                manifest.into_bytes(),
            ),
            (
                header("Good/big", T::Regular, 0o644, real as u64, None),
                data,
            ),
        ],
    )
}

#[test]
fn imports_that_cannot_fit_are_refused_before_the_store_changes() {
    let w = World::new();
    w.image("Existing", "keep = 1\n", "name = ''\n");
    let before = snapshot(&w.store());
    let import = |a: &Path, extra: &[&str]| {
        let mut args = vec!["image", "import"];
        args.extend_from_slice(extra);
        args.push(a.to_str().unwrap());
        let o = w.run(&args);
        (o.status.code(), w.filter(&stderr(&o)))
    };

    // The manifest lies low; the counted bytes stop it at the limit.
    let a = lying_archive(&w, "low.tgz", 10, 3 << 20);
    let (code, err) = import(&a, &["--max-size", "1M"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("error: refusing `[TMP]/low.tgz`: it expands to more than the limit of 1 MiB (at entry `Good/big`)"),
        "{err}"
    );
    assert!(err.contains("the store is unchanged"), "{err}");
    assert_eq!(snapshot(&w.store()), before);
    // Within the limit, the lie is caught by the manifest check.
    let (code, err) = import(&a, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("entry `Good/big` does not match the manifest: its size is 3145728 bytes but the manifest says 10"),
        "{err}"
    );
    assert_eq!(snapshot(&w.store()), before);

    // The manifest itself promises more than the limit: refused before the data.
    let a = lying_archive(&w, "high.tgz", 5 << 30, 1000);
    let (code, err) = import(&a, &["--max-size", "1G"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(
            "it expands to more than the limit of 1 GiB (at entry `Good/.convirt-manifest`)"
        ),
        "{err}"
    );
    assert_eq!(snapshot(&w.store()), before);

    // More than the store's file system has free.
    let free = free_bytes(&w.store());
    let a = lying_archive(&w, "huge.tgz", free + (1 << 30), 10);
    let (code, err) = import(&a, &["--max-size", "1T"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("free in the store `[TMP]/store`"), "{err}");
    assert_eq!(snapshot(&w.store()), before);

    // A bad size is a usage error.
    let (code, err) = import(&a, &["--max-size", "lots"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("`lots` is not a size"), "{err}");
}

#[test]
fn a_full_store_refuses_import_and_create_like_and_keeps_what_it_had() {
    let w = World::new();
    let Some(fs) = Tmpfs::mount(&w.store(), "2m") else {
        return;
    };
    let before = src_image(&w, 1);

    let err = create_like_refused(&w);
    assert!(err.contains("error: the store `[TMP]/store` has"), "{err}");
    assert!(
        err.contains("free space in the store; nothing was written"),
        "{err}"
    );
    assert_eq!(snapshot(&w.store()), before);

    let src = packed_big();
    let o = w.run(&[
        "image",
        "import",
        src.path().join("big.tgz").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("free in the store"), "{err}");
    assert!(err.contains("the store is unchanged"), "{err}");
    assert_eq!(snapshot(&w.store()), before);

    // Full for real (ENOSPC while writing, past the count): the same outcome.
    std::fs::remove_file(w.store().join("Src/data")).unwrap();
    fs.fill(4096);
    let before = snapshot(&w.store());
    let err = create_like_refused(&w);
    assert!(err.contains("No space left on device"), "{err}");
    assert!(
        err.contains("the file system of `[TMP]/store/.convirt-new-Copy-"),
        "{err}"
    );
    assert_eq!(snapshot(&w.store()), before);
    drop(fs);
}

#[test]
fn a_file_size_limit_stops_create_like_with_the_path_and_nothing_left() {
    let w = World::new();
    let before = src_image(&w, 2);
    let err = w.filter(&refused_under_fsize_limit(
        &w,
        &["image", "create-like", "Src", "Copy"],
    ));
    assert!(
        err.contains(
            "error: cannot copy `[TMP]/store/Src/data` to `[TMP]/store/.convirt-new-Copy-"
        ),
        "{err}"
    );
    assert!(err.contains("File too large"), "{err}");
    assert!(
        err.contains("hint: a file-size limit (`ulimit -f`)"),
        "{err}"
    );
    assert_eq!(snapshot(&w.store()), before);
}

const CHATTY: &str = r#"#!/bin/bash
set -euo pipefail
head -c 4000000 /dev/zero | tr '\0' 'x' | fold -w 99
"#;

/// After the ConVirt preamble: a 4 MiB disk, recorded first, then written with `dd`.
const DISK_WRITER: &str = r#"disk="$VM_DISKS_DIR/$VM_NAME.disk"
record_created "$disk"
dd if=/dev/zero of="$disk" bs=65536 count=64 2>&1
"#;

#[test]
fn a_full_log_dir_stops_the_script_keeps_what_fit_and_cleans_up() {
    let w = sandbox();
    let Some(_fs) = Tmpfs::mount(&w.path().join("log"), "256k") else {
        return;
    };
    probe(&w, "");
    w.write_exec("store/Probe/provision.sh", CHATTY);
    let o = w.conv(&provision_args("web", "Probe", &[]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("provision.sh was stopped: its output could not be written to the log (No space left on device (os error 28)); the log keeps what fit and is cut short there"),
        "{err}"
    );
    let log = w.path().join("log/Probe/Probe_web.log");
    assert!(err.contains(&format!("log: {}", log.display())), "{err}");
    let kept = std::fs::read_to_string(&log).unwrap();
    assert!(kept.contains("xxxxxxxx"), "the log keeps what fit");
    assert!(!w.path().join("conf/web.cfg").exists());
    assert!(!w.path().join("disks/web.disk").exists());
}

#[test]
fn a_full_disks_dir_fails_the_script_and_removes_its_disk() {
    let w = sandbox();
    let Some(_fs) = Tmpfs::mount(&w.path().join("disks"), "1m") else {
        return;
    };
    probe(&w, "");
    w.write_exec(
        "store/Probe/provision.sh",
        &provision_script(false, DISK_WRITER),
    );
    let before = w.snapshot("disks");
    let o = w.conv(&provision_args("web", "Probe", &[]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("provision.sh exited with status 1"), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(
        err.contains(&format!(
            "removed what this run created: {}",
            w.path().join("disks/web.disk").display()
        )),
        "{err}"
    );
    assert_eq!(w.snapshot("disks"), before);
    assert!(!w.path().join("conf/web.cfg").exists());
}

#[test]
fn a_full_conf_dir_fails_the_install_and_removes_the_disks() {
    let w = sandbox();
    let Some(fs) = Tmpfs::mount(&w.path().join("conf"), "64k") else {
        return;
    };
    fs.fill(0);
    probe(&w, "");
    let before = w.snapshot("conf");
    let o = w.conv(&provision_args("web", "Probe", &[]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    let cfg = w.path().join("conf/web.cfg");
    assert!(
        err.contains(&format!(
            "cannot install the VM config `{}`: No space left on device",
            cfg.display()
        )),
        "{err}"
    );
    assert!(!w.path().join("disks/web.disk").exists(), "{err}");
    assert_eq!(w.snapshot("conf"), before);
}

#[test]
fn bad_disk_values_stop_dry_run_validate_and_provision_before_any_file_is_made() {
    let w = sandbox();
    probe(&w, "");
    let dirs = ["disks", "conf", "log", "work"];
    let snap = |w: &World| dirs.map(|d| w.snapshot(d));
    let before = snap(&w);
    for (key, value, why) in [
        (
            "xvda_disk_size",
            "abc",
            "'abc': a disk size is a whole number of MB, such as 4096",
        ),
        (
            "xvda_disk_size",
            "0",
            "0: a disk size must be a positive number of MB",
        ),
        (
            "xvda_disk_size",
            "99999999999999999999",
            "'99999999999999999999': larger than 16777216 MB (16 TiB), the largest disk file ext4 holds",
        ),
        (
            "xvda_disk_type",
            "floppy",
            "'floppy': it must be one of 'VBD', 'vbd', 'file'",
        ),
        (
            "xvda_disk_create",
            "maybe",
            "'maybe': it must be one of 'yes', 'no'",
        ),
        (
            "xvda_disk_fs_type",
            "ntfs",
            "'ntfs': it must be one of 'ext2', 'ext3', 'ext4', 'swap'",
        ),
    ] {
        let want = format!("error: `{key}` is {why}");
        let set = format!("{key}={value}");
        for dry in [true, false] {
            let mut args = vec![
                "provision",
                "--vm",
                "web",
                "--image",
                "Probe",
                "--set",
                &set,
            ];
            if dry {
                args.push("--dry-run");
            }
            let o = w.conv(&args);
            assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
            let err = stderr(&o);
            assert!(err.contains(&want), "{args:?}: wanted {want}\n{err}");
            assert!(
                err.contains(&format!("hint: it was given with `--set {key}=...`")),
                "{err}"
            );
            assert_eq!(stdout(&o), "", "{args:?}");
            assert_eq!(snap(&w), before, "{args:?} made files");
        }
        // The same value in image.conf: `image validate` and provisioning point at its line.
        let conf = w.path().join("store/Probe/image.conf");
        let text = std::fs::read_to_string(&conf).unwrap();
        let quoted = if value.bytes().all(|b| b.is_ascii_digit()) && value.len() < 10 {
            value.to_string()
        } else {
            format!("'{value}'")
        };
        std::fs::write(&conf, format!("{text}{key} = {quoted}\n")).unwrap();
        let line = text.lines().count() + 1;
        let at = format!("--> {}:{line}:1", conf.display());
        for args in [
            vec!["image", "validate", "Probe"],
            vec!["provision", "--vm", "web", "--image", "Probe"],
        ] {
            let o = w.conv(&args);
            assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
            let err = stderr(&o);
            assert!(err.contains(&want), "{args:?}: wanted {want}\n{err}");
            assert!(err.contains(&at), "{args:?}: wanted {at}\n{err}");
            assert_eq!(snap(&w), before, "{args:?} made files");
        }
        std::fs::write(&conf, text).unwrap();
    }
}

#[test]
fn a_missing_install_iso_warns_on_dry_run_and_stops_provisioning_unless_optional() {
    let w = sandbox();
    let iso = w.path().join("iso/install.iso");
    probe(&w, "");
    w.write(
        "store/Probe/vm_conf.template",
        &format!(
            "name = ''\nmemory = 256\nkernel = '/usr/lib/xen/boot/pv-grub.gz'\ndisk = ['file:$VM_DISKS_DIR/$VM_NAME.disk,xvda,w', 'file:{},hdc:cdrom,r']\n",
            iso.display()
        ),
    );
    let warning = format!(
        "warning: the read-only disk `{}` of `hdc` does not exist",
        iso.display()
    );
    let o = w.conv(&provision_args("web", "Probe", &["--dry-run"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains(&warning), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("created, 64 MB"),
        "the size is shown: {}",
        stdout(&o)
    );
    let o = w.conv(&["image", "validate", "Probe"]);
    assert!(stderr(&o).contains(&warning), "{}", stderr(&o));

    let before = [w.snapshot("disks"), w.snapshot("conf")];
    let o = w.conv(&provision_args("web", "Probe", &[]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "error: the read-only disk `{}` of `hdc` does not exist",
            iso.display()
        )),
        "{err}"
    );
    assert!(err.contains("hdc_optional = 'yes'"), "{err}");
    assert_eq!([w.snapshot("disks"), w.snapshot("conf")], before);

    let o = w.conv(&provision_args(
        "web",
        "Probe",
        &["--set", "hdc_optional=yes"],
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(
            "(marked optional: provisioning goes ahead; put it there before the VM starts)"
        )
    );
    assert!(w.path().join("conf/web.cfg").exists());
}

#[test]
fn after_sigkill_during_provision_the_next_run_takes_the_lock_and_removes_the_dead_work_dir() {
    let w = sandbox();
    probe(&w, "");
    let pidfile = w.path().join("script.pid");
    w.write_exec(
        "store/Probe/provision.sh",
        &format!(
            "#!/bin/bash\necho $$ > '{}.tmp'\nmv '{0}.tmp' '{0}'\nexec sleep 30\n",
            pidfile.display()
        ),
    );
    let mut c = w.conv_spawn(&provision_args("web", "Probe", &[]), true);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !pidfile.exists() {
        assert!(Instant::now() < deadline, "the script never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: signalling our own child, then the script's own process group.
    unsafe {
        libc::kill(c.id() as i32, libc::SIGKILL);
    }
    c.wait().unwrap();
    let script: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    unsafe {
        libc::kill(-script, libc::SIGKILL);
    }
    let work = w.path().join("work");
    let dead = hidden(&work, "web.");
    assert_eq!(dead.len(), 1, "the dead run's work dir: {dead:?}");

    w.write_exec("store/Probe/provision.sh", "#!/bin/bash\nexit 0\n");
    // Without --force the next run reports the interrupted one and its work dir (#12.6)...
    let o = w.conv(&provision_args("web", "Probe", &[]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("an earlier provisioning run was interrupted")
            && stderr(&o).contains(&work.join(&dead[0]).display().to_string()),
        "{}",
        stderr(&o)
    );
    // ...and with it, takes the lock and removes what the dead run left.
    let o = w.conv(&provision_args("web", "Probe", &["--force"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(hidden(&work, "web."), Vec::<String>::new());
    let log = std::fs::read_to_string(w.path().join("log/Probe/Probe_web.log")).unwrap();
    assert!(
        log.contains(&format!(
            "convirt: removed the work directory {} of an interrupted run",
            work.join(&dead[0]).display()
        )),
        "{log}"
    );
}

#[test]
fn a_file_size_limit_while_packing_leaves_no_partial_archive() {
    let w = World::new();
    w.image("Big", "a = 1\n", "name = ''\n");
    random_file(&w.store().join("Big/data"), 3);
    let err = refused_under_fsize_limit(&w, &["image", "pack", "Big", "-o", "big.tgz"]);
    assert!(
        err.contains("error: cannot write `big.tgz`: File too large"),
        "{err}"
    );
    assert!(
        err.contains("hint: a file-size limit (`ulimit -f`) or the largest file the file system of `big.tgz` holds was reached; the partial archive was removed"),
        "{err}"
    );
    assert!(!w.path().join("big.tgz").exists());
    assert_eq!(hidden(w.path(), ".convirt-"), Vec::<String>::new());
}

#[test]
fn ctrl_c_during_create_like_leaves_no_image_and_no_temp_dir() {
    let w = World::new();
    let before = big_image(&w, 96);
    let mut c = spawn(&w, &["image", "create-like", "Big", "Copy"]);
    signal_when(&mut c, &w.store(), ".convirt-new-Copy-", libc::SIGINT);
    let (code, err) = finish(c);
    assert_eq!(code, Some(130), "{err}");
    assert_eq!(
        err,
        "error: `image create-like` was interrupted (Ctrl-C); no image was created\n"
    );
    assert_eq!(snapshot(&w.store()), before);
}

#[test]
fn a_full_work_dir_fails_before_the_script_runs_and_leaves_nothing() {
    let w = sandbox();
    let Some(fs) = Tmpfs::mount(&w.path().join("work"), "256k") else {
        return;
    };
    std::fs::create_dir(w.path().join("work/locks")).unwrap();
    std::fs::write(w.path().join("work/locks/web.lock"), "").unwrap();
    fs.fill(8192);
    probe(&w, "");
    let mark = w.path().join("ran");
    w.write_exec(
        "store/Probe/provision.sh",
        &format!("#!/bin/bash\ntouch '{}'\n", mark.display()),
    );
    let before = [w.snapshot("disks"), w.snapshot("conf")];
    let o = w.conv(&provision_args("web", "Probe", &[]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("to the work directory"), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(!mark.exists(), "the script never ran");
    assert_eq!([w.snapshot("disks"), w.snapshot("conf")], before);
    assert_eq!(hidden(&w.path().join("work"), "web."), Vec::<String>::new());
}

#[test]
fn a_write_failure_during_import_names_the_entry_and_leaves_the_store_as_it_was() {
    let src = packed_big();

    let w = World::new();
    w.image("Other", "a = 1\n", "name = ''\n");
    let before = snapshot(&w.store());
    let archive = src.path().join("big.tgz");
    let err = refused_under_fsize_limit(&w, &["image", "import", archive.to_str().unwrap()]);
    assert!(
        err.contains("error: cannot unpack `Big/data` from `") && err.contains("File too large"),
        "{err}"
    );
    assert!(
        err.contains("hint: a file-size limit (`ulimit -f`)"),
        "{err}"
    );
    assert!(
        err.contains("hint: nothing was imported; the store is unchanged"),
        "{err}"
    );
    assert_eq!(snapshot(&w.store()), before);
}

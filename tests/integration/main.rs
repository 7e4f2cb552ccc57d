//! Integration tests: each test writes a store into a temp dir, runs the real `convirt`
//! binary with a clean environment and checks whole outputs.
// A test crate has no public API: its helpers are `pub` for its own modules.
#![allow(unreachable_pub)]
// Tests signal their own children and scripts (`libc::kill`).
#![allow(unsafe_code)]

mod archive;
mod attacks;
mod cli;
mod complete;
mod conf;
mod edit;
mod events;
mod faults;
mod fixtures;
mod guest_image;
mod hardening;
mod help;
mod outputs;
mod pipes;
mod provision;
mod sample_config;
mod share;
mod shell;
mod store;
mod test;
mod thin;
mod ui;
mod vm;
mod vm_remote;
mod xen;

use std::path::{Path, PathBuf};
use std::process::Output;

/// A scratch world for one test: a HOME, a store, and a settings file pointing inside it.
pub struct World {
    pub dir: tempfile::TempDir,
}

impl Default for World {
    fn default() -> Self {
        World::new()
    }
}

impl World {
    pub fn new() -> World {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        World { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn home(&self) -> PathBuf {
        self.path().join("home")
    }

    pub fn store(&self) -> PathBuf {
        self.path().join("store")
    }

    /// Writes a file below the world, creating parents; `mode` 0 keeps the default.
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    pub fn write_exec(&self, rel: &str, text: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = self.write(rel, text);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    /// Adds an image to the store with the given files.
    pub fn image(&self, name: &str, image_conf: &str, vm_template: &str) -> &Self {
        self.write(&format!("store/{name}/image.conf"), image_conf);
        self.write(&format!("store/{name}/vm_conf.template"), vm_template);
        self.write_exec(
            &format!("store/{name}/provision.sh"),
            "#!/bin/bash\nexit 0\n",
        );
        self.write(
            &format!("store/{name}/description.htm"),
            &format!("<body><span>{name} title</span><br/>About {name}.</body>"),
        );
        self
    }

    /// The real binary with a clean environment: HOME in the world, no settings but those
    /// the test writes, no colour. Every way of running convirt in these tests starts here
    /// (`test()`, `cmd()`, `run()`, `conv()`).
    pub fn command(&self) -> std::process::Command {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_convirt"));
        c.env_clear()
            .envs(self.env())
            .env("XDG_CONFIG_HOME", self.path().join("xdg"))
            .current_dir(self.path());
        c
    }

    /// The environment every run of the binary gets (after `env_clear`): HOME in the world,
    /// the caller's PATH, no colour, and records kept in the world (root's default,
    /// `/var/lib/convirt`, would be shared by parallel tests and outlive them).
    pub fn env(&self) -> Vec<(&'static str, std::ffi::OsString)> {
        vec![
            ("HOME", self.home().into()),
            ("PATH", std::env::var_os("PATH").unwrap_or_default()),
            ("NO_COLOR", "1".into()),
            ("CONVIRT_STATE_DIR", self.path().join("state").into()),
        ]
    }

    /// `command()` as an `assert_cmd` command.
    pub fn cmd(&self) -> assert_cmd::Command {
        assert_cmd::Command::from_std(self.command())
    }

    /// A command for the binary as a normal user with nothing configured: as root it drops
    /// to `nobody` (with `setpriv`, running a copy of the binary that `nobody` can reach), so
    /// the non-root defaults under `~/.convirt` apply for real.
    pub fn as_user(&self) -> std::process::Command {
        use std::os::unix::fs::PermissionsExt;
        let root = unsafe { libc::geteuid() } == 0;
        let mut c = if root {
            let bin = self.path().join("convirt-bin");
            if !bin.exists() {
                std::fs::copy(assert_cmd::cargo::cargo_bin("convirt"), &bin).unwrap();
            }
            let st = std::process::Command::new("chown")
                .args(["-R", "65534:65534"])
                .arg(self.path())
                .status()
                .unwrap();
            assert!(st.success());
            std::fs::set_permissions(self.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            let mut c = std::process::Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
                .arg(&bin);
            c
        } else {
            std::process::Command::new(assert_cmd::cargo::cargo_bin("convirt"))
        };
        c.env_clear().envs(self.env()).current_dir(self.path());
        c
    }

    /// Runs with `--store <world>/store`.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut c = self.cmd();
        c.arg("--store").arg(self.store()).args(args);
        c.output().expect("run convirt")
    }

    /// Replaces the world's temp path in text with `[TMP]` for stable comparisons.
    pub fn filter(&self, s: &str) -> String {
        s.replace(&self.path().display().to_string(), "[TMP]")
    }
}

/// A test image's provision.sh written like a ConVirt one: ConVirt's options read with
/// getopts, common/defs and common/functions sourced, the image config, the VM config (as
/// `vm_config`, the name common/functions knows) and the arguments read; then `body`. With
/// `named`, `-i` and `-l` are kept as `image_name` and `log_file` (so `log_msg` writes to the
/// log file itself); without, they are ignored.
pub fn provision_script(named: bool, body: &str) -> String {
    let (i, l) = if named {
        (r#"image_name="$OPTARG""#, r#"log_file="$OPTARG""#)
    } else {
        (":", ":")
    };
    format!(
        r#"#!/bin/bash
set -euo pipefail
while getopts "x:p:s:i:l:c:" opt; do
    case "$opt" in
        x) vm_config="$OPTARG" ;; p) args="$OPTARG" ;; s) store="$OPTARG" ;;
        i) {i} ;; l) {l} ;; c) image_conf="$OPTARG" ;;
        *) exit 2 ;;
    esac
done
# shellcheck source=/dev/null
source "$store/common/defs"
# shellcheck source=/dev/null
source "$store/common/functions"
source_python_config "$image_conf"
source_python_config "$vm_config"
# shellcheck source=/dev/null
source "$args"
{body}"#
    )
}

/// `provision --vm VM --image IMAGE EXTRA...`.
pub fn provision_args<'a>(vm: &'a str, image: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["provision", "--vm", vm, "--image", image];
    args.extend_from_slice(extra);
    args
}

/// A run that must have exited with status 1, saying `want` on stderr.
#[track_caller]
pub fn fails_saying(o: &Output, want: &str) {
    assert_eq!(o.status.code(), Some(1), "{}", stderr(o));
    assert!(stderr(o).contains(want), "{}", stderr(o));
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The repository's own directory.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every entry below `dir` (hidden ones too, `dir` itself not), by relative path: `dir MODE`,
/// `link -> TARGET`, `file MODE SIZE SHA256` or `special MODE`. Two trees compare equal when
/// nothing in them changed; the one helper for before/after checks.
pub fn tree(dir: &Path) -> std::collections::BTreeMap<String, String> {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::MetadataExt;
    let mut out = std::collections::BTreeMap::new();
    if !dir.exists() {
        // A directory that is not there has nothing in it: equal to an empty one.
        return out;
    }
    for e in walkdir::WalkDir::new(dir).min_depth(1).sort_by_file_name() {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
        let meta = e.path().symlink_metadata().unwrap();
        let mode = meta.mode() & 0o7777;
        let what = if meta.file_type().is_symlink() {
            format!(
                "link -> {}",
                std::fs::read_link(e.path()).unwrap().display()
            )
        } else if meta.is_dir() {
            format!("dir {mode:o}")
        } else if meta.is_file() {
            let mut h = Sha256::new();
            let mut f = std::fs::File::open(e.path()).unwrap();
            std::io::copy(&mut f, &mut h).unwrap();
            let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
            format!("file {mode:o} {} {hex}", meta.len())
        } else {
            format!("special {mode:o}")
        };
        out.insert(rel, what);
    }
    out
}

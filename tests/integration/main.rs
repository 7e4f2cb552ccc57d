//! Integration tests: each test writes a store into a temp dir, runs the real `convirt`
//! binary with a clean environment and checks whole outputs.

mod archive;
mod cli;
mod conf;
mod edit;
mod fixtures;
mod guest_image;
mod provision;
mod shell;
mod store;
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

    /// A command for the real binary with a clean environment: HOME in the world, no
    /// settings but those the test writes.
    pub fn cmd(&self) -> assert_cmd::Command {
        let mut c = assert_cmd::Command::cargo_bin("convirt").expect("binary");
        c.env_clear()
            .env("HOME", self.home())
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("XDG_CONFIG_HOME", self.path().join("xdg"))
            .env("NO_COLOR", "1")
            .current_dir(self.path());
        c
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
        c.env_clear()
            .env("HOME", self.home())
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("NO_COLOR", "1")
            .current_dir(self.path());
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

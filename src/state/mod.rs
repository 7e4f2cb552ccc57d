//! VM records and run journals (issue #10, docs/records.md): what each provisioning run
//! created, written as it happens, so that `vm list/show/remove` know exactly which files
//! belong to which VM even after convirt itself was killed.
//!
//! Layout under the state directory: `vms/<vm>/` for VMs of this host (`hosts/<host>/<vm>/`
//! for others), holding `record.json` (a finished run, written atomically), `journal` (a run
//! in progress or interrupted: JSON lines, each appended and fsync'd before the act it
//! announces) and `created` (the NUL-separated list the image's scripts append to).

pub(crate) mod journal;
pub(crate) mod remove;
pub(crate) mod xen;

use crate::settings::Format;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub(crate) use crate::host_dir::LOCALHOST;

/// What kind of thing a run created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Kind {
    /// The installed VM config.
    Config,
    /// The link in Xen's auto-start directory.
    Autostart,
    /// A disk the image names, created by the run.
    Disk,
    /// An LVM logical volume (`VG/LV`), removed with `lvremove`.
    Lvm,
    File,
    Dir,
    /// The log and the instantiated inputs kept beside it.
    Log,
    /// convirt's private work directory (only while a run is unfinished, or kept).
    Workdir,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Config => "config",
            Kind::Autostart => "autostart",
            Kind::Disk => "disk",
            Kind::Lvm => "lvm",
            Kind::File => "file",
            Kind::Dir => "dir",
            Kind::Log => "log",
            Kind::Workdir => "workdir",
        })
    }
}

/// One thing a run created. Paths are strings, not `PathBuf`, because a record may describe
/// another host's files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Item {
    pub path: String,
    pub kind: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Device and inode when the run finished: a file replaced since is never removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ino: Option<u64>,
    /// Birth time (ns since the epoch) where the file system keeps one: inode numbers are
    /// reused at once, birth times are not.
    /// Written as a number up to `u64::MAX` and as a decimal string past it: a journal line
    /// is read through serde's buffered `Content`, which cannot hold a `u128` number (issue
    /// #18). Both forms are read.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "born_text")]
    pub born: Option<u128>,
}

/// `born` as a number, or a decimal string past `u64`; either is read.
mod born_text {
    use serde::{Deserializer, Serializer, de};

    pub(crate) fn serialize<S: Serializer>(v: &Option<u128>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(n) => match u64::try_from(*n) {
                Ok(small) => s.serialize_u64(small),
                Err(_) => s.serialize_str(&n.to_string()),
            },
            None => s.serialize_none(),
        }
    }

    struct V;

    impl de::Visitor<'_> for V {
        type Value = Option<u128>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a birth time in nanoseconds (a decimal string or a number)")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.into()))
        }
        fn visit_u128<E: de::Error>(self, v: u128) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            u128::try_from(v)
                .map(Some)
                .map_err(|_| E::custom("a negative birth time"))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            v.parse::<u128>()
                .map(Some)
                .map_err(|_| E::custom(format!("`{v}` is not a birth time")))
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u128>, D::Error> {
        d.deserialize_any(V)
    }
}

impl Item {
    pub(crate) fn new(path: impl Into<String>, kind: Kind) -> Item {
        Item {
            path: path.into(),
            kind,
            size: None,
            dev: None,
            ino: None,
            born: None,
        }
    }

    /// Whether the item is still there (for LVM: unknown here, so assumed).
    pub(crate) fn exists(&self) -> bool {
        self.kind == Kind::Lvm || std::fs::symlink_metadata(&self.path).is_ok()
    }

    /// Fills size and identity from the file as it is now.
    pub(crate) fn stat(mut self) -> Item {
        use std::os::unix::fs::MetadataExt;
        if self.kind != Kind::Lvm
            && let Ok(m) = std::fs::symlink_metadata(&self.path)
        {
            if !m.is_dir() {
                self.size = Some(m.len());
            }
            self.dev = Some(m.dev());
            self.ino = Some(m.ino());
            self.born = born(&m);
        }
        self
    }
}

/// What a run states when it begins: the first line of its journal, and the head of its record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Header {
    pub vm: String,
    pub host: String,
    pub image: String,
    pub image_digest: String,
    pub format: Format,
    pub config: String,
    pub log: String,
    /// The disks the plan creates, so the script's entries can be told apart from other files.
    #[serde(default)]
    pub disks: Vec<String>,
    pub pid: u32,
    pub started: String,
    pub convirt_version: String,
    /// A remote run: the server's ssh address (`user@server:port`) when it was provisioned,
    /// used to reach it again if its `[hosts.NAME]` entry is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// A remote run: the copy of the server's log kept on this machine, which `vm remove`
    /// removes here after the server's files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_log: Option<String>,
    /// The run's own identity (random), the same in this machine's journal of a remote run
    /// and in the server's: how the two are matched after a lost connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// A remote run: the host key the server showed (`ssh-ed25519 SHA256:...`); a server
    /// showing another key is not this VM's server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key: Option<String>,
}

/// A finished run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub format_version: u32,
    #[serde(flatten)]
    pub header: Header,
    pub finished: String,
    pub created: Vec<Item>,
    /// The final values, secrets masked: `{"image": {...}, "vm": {...}}`.
    pub values: serde_json::Value,
}

pub(crate) const FORMAT_VERSION: u32 = 1;

/// An unfinished run, read back from its journal.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Run {
    pub header: Option<Header>,
    pub items: Vec<Item>,
    /// The run failed and `--keep` kept what it made.
    pub failed_kept: bool,
}

/// Everything the state directory knows about one VM name.
#[derive(Debug, Clone)]
pub(crate) struct Vm {
    pub name: String,
    pub host: String,
    pub dir: PathBuf,
    pub record: Option<Record>,
    pub run: Option<Run>,
    /// Made on a managed server (`hosts/<host>/`), even one named `localhost`.
    pub remote: bool,
}

/// A VM whose record or journal cannot be read.
#[derive(Debug, Clone)]
pub(crate) struct Unreadable {
    pub vm: String,
    pub host: String,
    pub why: String,
}

/// A VM's state, for `vm list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Status {
    Provisioned,
    /// A journal without a record: convirt was killed (or the machine stopped) mid-run.
    Interrupted,
    /// A journal whose run still holds the VM's lock.
    Running,
    /// The run failed and `--keep` kept what it created.
    FailedKept,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Provisioned => "provisioned",
            Status::Interrupted => "interrupted",
            Status::Running => "running",
            Status::FailedKept => "failed (kept)",
        })
    }
}

/// `<state_dir>/hosts/<host>`: the records of one managed server's VMs.
pub(crate) fn host_dir(state_dir: &Path, host: &str) -> PathBuf {
    state_dir
        .join("hosts")
        .join(crate::host_dir::host_dir_name(host))
}

/// The state directory of one VM.
pub(crate) fn vm_dir(state_dir: &Path, host: &str, vm: &str) -> PathBuf {
    if host == LOCALHOST {
        state_dir.join("vms").join(vm)
    } else {
        host_dir(state_dir, host).join(vm)
    }
}

pub(crate) const RECORD: &str = "record.json";
pub(crate) const JOURNAL: &str = "journal";
pub(crate) const CREATED: &str = "created";

impl Vm {
    /// Reads one VM's state; `None` when the directory holds neither record nor journal.
    pub(crate) fn load(state_dir: &Path, host: &str, vm: &str) -> anyhow::Result<Option<Vm>> {
        Vm::load_at(vm_dir(state_dir, host, vm), host, vm, host != LOCALHOST)
    }

    /// Reads one VM of a managed server (`host` as given to `--host`).
    pub(crate) fn load_remote(
        state_dir: &Path,
        host: &str,
        vm: &str,
    ) -> anyhow::Result<Option<Vm>> {
        Vm::load_at(host_dir(state_dir, host).join(vm), host, vm, true)
    }

    fn load_at(dir: PathBuf, host: &str, vm: &str, remote: bool) -> anyhow::Result<Option<Vm>> {
        // Another user able to write here could write a record that makes `vm remove`
        // delete anything this user may delete (issue #18).
        for d in dir.ancestors().take(if remote { 4 } else { 3 }) {
            if let Some(why) = crate::sys::unsafe_dir(d) {
                anyhow::bail!("refusing to read the records of `{vm}`: {why}");
            }
        }
        let record = match std::fs::read(dir.join(RECORD)) {
            Ok(b) => Some(serde_json::from_slice::<Record>(&b).map_err(|e| {
                anyhow::anyhow!(
                    "the record `{}` is not valid: {e}",
                    dir.join(RECORD).display()
                )
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => anyhow::bail!("cannot read `{}`: {e}", dir.join(RECORD).display()),
        };
        let run = journal::read(&dir)?;
        if record.is_none() && run.is_none() {
            return Ok(None);
        }
        Ok(Some(Vm {
            name: vm.to_string(),
            host: host.to_string(),
            dir,
            record,
            run,
            remote,
        }))
    }

    /// Every VM in the state directory, this host's first, each sorted by name; a record or
    /// journal that cannot be read is named in the second list (with its VM, host and why)
    /// while the others are still listed (issue #18).
    pub(crate) fn list(state_dir: &Path) -> (Vec<Vm>, Vec<Unreadable>) {
        let mut out = Vec::new();
        let mut bad = Vec::new();
        let mut take = |r: anyhow::Result<Option<Vm>>, host: &str, name: &str| match r {
            Ok(v) => out.extend(v),
            Err(e) => bad.push(Unreadable {
                vm: name.to_string(),
                host: host.to_string(),
                why: format!("{e:#}"),
            }),
        };
        for name in dir_names(&state_dir.join("vms")) {
            take(Vm::load(state_dir, LOCALHOST, &name), LOCALHOST, &name);
        }
        for dir in dir_names(&state_dir.join("hosts")) {
            // A directory convirt did not name is not a host's.
            let Some(host) = crate::host_dir::host_from_dir_name(&dir) else {
                continue;
            };
            for name in dir_names(&host_dir(state_dir, &host)) {
                take(Vm::load_remote(state_dir, &host, &name), &host, &name);
            }
        }
        (out, bad)
    }

    pub(crate) fn status(&self, work_dir: &Path) -> Status {
        match &self.run {
            None => Status::Provisioned,
            Some(r) if r.failed_kept => Status::FailedKept,
            Some(_) if self.remote && self.remote_lock_held() => Status::Running,
            Some(_) if !self.remote && crate::lock::held(work_dir, &self.name) => Status::Running,
            Some(_) => Status::Interrupted,
        }
    }

    /// Whether a convirt of this machine is provisioning or removing this remote VM now.
    fn remote_lock_held(&self) -> bool {
        // `<state_dir>/hosts/<host>/<vm>`
        let state_dir = self.dir.ancestors().nth(3).unwrap_or(Path::new("/"));
        crate::lock::held(&crate::lock::remote_root(state_dir, &self.host), &self.name)
    }

    pub(crate) fn header(&self) -> Option<&Header> {
        self.run
            .as_ref()
            .and_then(|r| r.header.as_ref())
            .or(self.record.as_ref().map(|r| &r.header))
    }

    /// Everything this VM's runs created, oldest first, each path once: the record's, then
    /// an unfinished run's.
    pub(crate) fn items(&self) -> Vec<Item> {
        self.items_with_origin()
            .into_iter()
            .map(|(i, _)| i)
            .collect()
    }

    /// `items()`, each with whether it comes from a finished record (`true`) or from an
    /// unfinished run's journal. Linear in the number of items.
    pub(crate) fn items_with_origin(&self) -> Vec<(Item, bool)> {
        let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
        let mut out = Vec::new();
        let from_record = self
            .record
            .iter()
            .flat_map(|r| r.created.iter().map(|i| (i, true)));
        let from_run = self
            .run
            .iter()
            .flat_map(|r| r.items.iter().map(|i| (i, false)));
        for (i, recorded) in from_record.chain(from_run) {
            if seen.insert(i.path.as_str()) {
                out.push((i.clone(), recorded));
            }
        }
        out
    }
}

/// A file's birth time, when the file system records one.
pub(crate) fn born(m: &std::fs::Metadata) -> Option<u128> {
    m.created()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
}

/// The missing directories above `path`, outermost first: what creating it will create.
pub(crate) fn missing_parents(path: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = path
        .ancestors()
        .skip(1)
        .take_while(|p| !p.as_os_str().is_empty() && std::fs::symlink_metadata(p).is_err())
        .map(Path::to_path_buf)
        .collect();
    out.reverse();
    out
}

fn dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Processes whose working directory is inside `dir`: a script of a killed run that is
/// still going (convirt runs every script in its work directory).
pub(crate) fn processes_in(dir: &Path) -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    let mut pids: Vec<u32> = rd
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cwd = std::fs::read_link(e.path().join("cwd")).ok()?;
            cwd.starts_with(dir).then_some(pid)
        })
        .collect();
    pids.sort();
    pids
}

/// A digest of an image directory: every file's relative path, then its bytes (symlinks:
/// their target), in byte order of path, so the record says exactly which image was used.
pub(crate) fn image_digest(dir: &Path) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for e in walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .flatten()
    {
        let rel = e.path().strip_prefix(dir).unwrap_or(e.path());
        h.update(rel.as_os_str().as_encoded_bytes());
        h.update([0]);
        if e.file_type().is_symlink() {
            if let Ok(t) = std::fs::read_link(e.path()) {
                h.update(t.as_os_str().as_encoded_bytes());
            }
        } else if e.file_type().is_file()
            && let Ok(b) = std::fs::read(e.path())
        {
            h.update(&b);
        }
        h.update([0]);
    }
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Whether a value must not be written into a record in clear: a key that names a secret,
/// or a value that looks like a crypt(3) hash.
pub(crate) fn is_secret(key: &str, value: &str) -> bool {
    let k = key.to_ascii_lowercase();
    let by_key = ["pass", "secret", "token", "private", "hash", "credential"]
        .iter()
        .any(|w| k.contains(w));
    let crypt = [
        "$1$", "$2a$", "$2b$", "$2y$", "$5$", "$6$", "$y$", "$gy$", "$7$",
    ]
    .iter()
    .any(|p| value.starts_with(p));
    by_key || crypt
}

pub(crate) const MASK: &str = "********";

/// The final values of a plan as JSON, secrets masked.
pub(crate) fn masked_values(resolved: &crate::resolve::Resolved) -> serde_json::Value {
    let side = |entries: &[crate::resolve::Entry]| {
        let mut m = serde_json::Map::new();
        for e in entries {
            let v = if is_secret(&e.key, &e.value.to_text()) {
                serde_json::Value::String(MASK.into())
            } else {
                e.value.to_json()
            };
            m.insert(e.key.clone(), v);
        }
        serde_json::Value::Object(m)
    };
    serde_json::json!({"image": side(&resolved.image), "vm": side(&resolved.vm)})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_told_by_key_or_by_crypt_value() {
        for (k, v, secret) in [
            ("root_password", "x", true),
            ("ADMIN_PASS_HASH", "x", true),
            ("api_token", "x", true),
            ("admin_user", "bob", false),
            ("note", "$6$salt$abc", true),
            ("memory", "256", false),
            ("motd", "costs $5", false),
        ] {
            assert_eq!(is_secret(k, v), secret, "{k}={v}");
        }
    }

    #[test]
    fn state_dir_defaults_root_xdg_and_the_settings_file() {
        use crate::settings::{Env, Overrides, Settings};
        let env = |root: bool, vars: &[(&str, &str)]| Env {
            vars: vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            is_root: root,
        };
        let user = Settings::load(
            &Overrides::default(),
            &env(
                false,
                &[("HOME", "/home/u"), ("XDG_CONFIG_HOME", "/nonexistent")],
            ),
        )
        .unwrap();
        assert_eq!(user.state_dir, Path::new("/home/u/.local/share/convirt"));
        assert_eq!(
            user.xen_auto_dir,
            Path::new("/home/u/.convirt/vm_configs/auto")
        );
        let xdg = Settings::load(
            &Overrides::default(),
            &env(
                false,
                &[
                    ("HOME", "/home/u"),
                    ("XDG_CONFIG_HOME", "/nonexistent"),
                    ("XDG_DATA_HOME", "/data"),
                ],
            ),
        )
        .unwrap();
        assert_eq!(xdg.state_dir, Path::new("/data/convirt"));
        if !Path::new("/etc/convirt/convirt.toml").exists() {
            let root =
                Settings::load(&Overrides::default(), &env(true, &[("HOME", "/root")])).unwrap();
            assert_eq!(root.state_dir, Path::new("/var/lib/convirt"));
            assert_eq!(root.xen_auto_dir, Path::new("/etc/xen/auto"));
        }
        let t = tempfile::tempdir().unwrap();
        let cfg = t.path().join("convirt.toml");
        std::fs::write(&cfg, "state_dir = 'st'\nxen_auto_dir = '/srv/auto'\n").unwrap();
        let over = Overrides {
            config: Some(cfg),
            ..Default::default()
        };
        let s = Settings::load(&over, &env(false, &[("HOME", "/home/u")])).unwrap();
        assert_eq!(s.state_dir, t.path().join("st"));
        assert_eq!(s.xen_auto_dir, Path::new("/srv/auto"));
        // The environment comes before the file, as for the store.
        let s = Settings::load(
            &over,
            &env(
                false,
                &[("HOME", "/home/u"), ("CONVIRT_STATE_DIR", "/srv/st")],
            ),
        )
        .unwrap();
        assert_eq!(s.state_dir, Path::new("/srv/st"));
    }

    #[test]
    fn missing_parents_outermost_first() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("a/b/c.cfg");
        assert_eq!(
            missing_parents(&p),
            [t.path().join("a"), t.path().join("a/b")]
        );
        std::fs::create_dir_all(t.path().join("a/b")).unwrap();
        assert!(missing_parents(&p).is_empty());
    }

    #[test]
    fn digest_changes_with_content_and_names() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("a"), "1").unwrap();
        let d1 = image_digest(t.path());
        std::fs::write(t.path().join("a"), "2").unwrap();
        let d2 = image_digest(t.path());
        std::fs::rename(t.path().join("a"), t.path().join("b")).unwrap();
        let d3 = image_digest(t.path());
        assert!(d1.starts_with("sha256:") && d1.len() == 71);
        assert_ne!(d1, d2);
        assert_ne!(d2, d3);
    }
}

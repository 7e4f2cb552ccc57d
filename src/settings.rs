//! Settings (spec §8): the TOML file, its search order, the environment, and the root /
//! non-root defaults, decided in one place. Library code only ever sees [`Settings`].

use crate::diagnostic::{Diagnostic, SourceFile, Span};
use crate::value::Value;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const DEFAULT_COMPUTED: &[&str] = &["arch", "arch_libdir", "device_model"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Xl,
    Xm,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "xl" => Ok(Format::Xl),
            "xm" => Ok(Format::Xm),
            _ => Err(format!("unknown format `{s}` (expected `xl` or `xm`)")),
        }
    }
}

/// The settings file as written. Unknown keys are errors.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    image_store: Option<PathBuf>,
    log_dir: Option<PathBuf>,
    work_dir: Option<PathBuf>,
    default_computed_options: Option<Vec<String>>,
    default_format: Option<Format>,
    #[serde(default)]
    variables: BTreeMap<String, toml::Value>,
    #[serde(default)]
    hosts: BTreeMap<String, HostSettings>,
    state_dir: Option<PathBuf>,
    xen_auto_dir: Option<PathBuf>,
    #[serde(default)]
    sources: BTreeMap<String, FileSource>,
    require_signature: Option<bool>,
}

/// `[sources.NAME]` as written, with the places of its values for messages.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSource {
    url: toml::Spanned<String>,
    public_key: toml::Spanned<String>,
}

/// An image index to search and pull from (`[sources.NAME]`, docs/sharing.md): its URL (a
/// directory holding `index.json`) and the minisign public key its index and packs are
/// signed with. Both were checked when the settings were read.
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct SourceSettings {
    pub url: String,
    pub public_key: String,
}

/// A managed server named in the settings file (`[hosts.NAME]`, spec §7, docs/remote.md).
/// Paths are paths on the server; `~/` is the remote user's home directory.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HostSettings {
    pub address: String,
    pub user: Option<String>,
    pub port: Option<u16>,
    /// What `$IMAGE_STORE` names on the server.
    pub store: Option<PathBuf>,
    pub log_dir: Option<PathBuf>,
    /// The server-side work dir: private work directories and per-VM locks.
    pub work_dir: Option<PathBuf>,
    #[serde(rename = "VM_DISKS_DIR", alias = "vm_disks_dir")]
    pub vm_disks_dir: Option<PathBuf>,
    #[serde(rename = "VM_CONF_DIR", alias = "vm_conf_dir")]
    pub vm_conf_dir: Option<PathBuf>,
    /// Xen's auto-start directory on the server, for `provision --autostart` (default: the
    /// server's `VM_CONF_DIR/auto`, as locally).
    #[serde(default)]
    pub xen_auto_dir: Option<PathBuf>,
    /// Where the server keeps its own journals and records of the runs convirt makes there
    /// (default: the server user's state dir, as locally).
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// convirt on the server (default: `convirt` on its PATH when the version matches, else
    /// a copy of this convirt in the server user's cache; docs/remote.md).
    #[serde(default)]
    pub convirt: Option<String>,
    /// How long `vm list`, `vm show` and the console's VMs page wait for this server's answer
    /// (its files and `xl list`), in seconds (default 15; docs/records.md).
    #[serde(default)]
    pub list_timeout: Option<u64>,
    /// `[hosts.NAME.variables]`: site variables for this server, over `[variables]`.
    #[serde(default)]
    pub variables: BTreeMap<String, toml::Value>,
}

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum From {
    Flag,
    Env,
    File,
    Default,
}

/// What the command line says about settings; everything else comes from the environment.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub store: Option<PathBuf>,
    pub config: Option<PathBuf>,
}

/// The environment settings depend on, captured so tests can supply their own.
#[derive(Debug, Clone)]
pub struct Env {
    pub vars: BTreeMap<String, String>,
    pub is_root: bool,
}

impl Env {
    pub fn current() -> Env {
        Env {
            vars: std::env::vars().collect(),
            is_root: crate::sys::is_root(),
        }
    }
    fn get(&self, k: &str) -> Option<&str> {
        self.vars
            .get(k)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }
    fn home(&self) -> PathBuf {
        self.get("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/"))
    }
}

/// The built-in paths of a user, root or not, with that home: the same rules on this
/// machine and, for `--host`, on a server. The store, work and disk directories are below
/// `cache_dir` (`image_store`, `work`, `vm_disks`).
#[derive(Debug, Clone)]
pub struct Defaults {
    pub cache_dir: PathBuf,
    pub log_dir: PathBuf,
    pub vm_conf_dir: PathBuf,
}

impl Defaults {
    pub fn of(root: bool, home: &Path) -> Defaults {
        if root {
            Defaults {
                cache_dir: PathBuf::from("/var/cache/convirt"),
                log_dir: PathBuf::from("/var/log/convirt"),
                vm_conf_dir: PathBuf::from("/etc/xen"),
            }
        } else {
            Defaults {
                cache_dir: home.join(".convirt"),
                log_dir: home.join(".convirt/log"),
                vm_conf_dir: home.join(".convirt/vm_configs"),
            }
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Settings {
    pub config_file: Option<PathBuf>,
    pub image_store: PathBuf,
    pub image_store_from: From,
    pub log_dir: PathBuf,
    pub work_dir: PathBuf,
    /// `/var/cache/convirt` as root, `~/.convirt` otherwise: the base of the built-in paths.
    pub cache_dir: PathBuf,
    pub vm_disks_dir: PathBuf,
    pub vm_conf_dir: PathBuf,
    pub default_computed_options: Vec<String>,
    pub default_format: Format,
    /// `[variables]`, in file order.
    pub variables: Vec<(String, Value)>,
    pub hosts: BTreeMap<String, HostSettings>,
    pub is_root: bool,
    /// VM records and journals (docs/records.md): `/var/lib/convirt` as root, the XDG data
    /// directory otherwise.
    pub state_dir: PathBuf,
    /// Xen's auto-start directory, where `provision --autostart` links a config.
    pub xen_auto_dir: PathBuf,
    /// `[sources.NAME]`, by name.
    pub sources: BTreeMap<String, SourceSettings>,
    /// `require_signature = true`: `image import` refuses an archive without a good
    /// signature beside it.
    pub require_signature: bool,
}

impl Settings {
    /// Resolves settings: flag, then environment, then file, then default.
    pub fn load(over: &Overrides, env: &Env) -> Result<Settings, Diagnostic> {
        let home = env.home();
        let (config_file, required) = match (&over.config, env.get("CONVIRT_CONFIG")) {
            (Some(p), _) => (Some(p.clone()), true),
            (None, Some(p)) => (Some(PathBuf::from(p)), true),
            (None, None) => {
                let p = if env.is_root {
                    PathBuf::from("/etc/convirt/convirt.toml")
                } else {
                    env.get("XDG_CONFIG_HOME")
                        .map(PathBuf::from)
                        .unwrap_or_else(|| home.join(".config"))
                        .join("convirt/convirt.toml")
                };
                (Some(p), false)
            }
        };
        let (file, config_file) = match config_file {
            Some(p) if p.exists() || required => (read_file(&p)?, Some(p)),
            _ => (FileSettings::default(), None),
        };
        let base = config_file
            .as_ref()
            .and_then(|p| p.parent())
            .unwrap_or(Path::new("."));
        let from_file = |p: &Option<PathBuf>| p.as_ref().map(|p| expand(p, base, &home));

        let defaults = Defaults::of(env.is_root, &home);
        let cache_dir = defaults.cache_dir.clone();
        let (image_store, image_store_from) = match (
            &over.store,
            env.get("CONVIRT_IMAGE_STORE"),
            from_file(&file.image_store),
        ) {
            (Some(s), _, _) => (s.clone(), From::Flag),
            (None, Some(s), _) => (PathBuf::from(s), From::Env),
            (None, None, Some(s)) => (s, From::File),
            _ => (cache_dir.join("image_store"), From::Default),
        };
        let log_dir = from_file(&file.log_dir).unwrap_or(defaults.log_dir);
        let work_dir = from_file(&file.work_dir).unwrap_or_else(|| cache_dir.join("work"));
        let vm_conf_dir = defaults.vm_conf_dir;
        let variables = file
            .variables
            .into_iter()
            .map(|(k, v)| (k, toml_to_value(v)))
            .collect();
        // Scripts run in a work directory: every path they are given must be absolute.
        let (image_store, log_dir, work_dir) = (
            absolute(&image_store),
            absolute(&log_dir),
            absolute(&work_dir),
        );
        // Like the store: the environment before the file (tests and scripts keep records apart).
        let state_dir = env.get("CONVIRT_STATE_DIR").map(PathBuf::from);
        let state_dir = absolute(
            &state_dir
                .or_else(|| from_file(&file.state_dir))
                .unwrap_or_else(|| {
                    if env.is_root {
                        PathBuf::from("/var/lib/convirt")
                    } else {
                        env.get("XDG_DATA_HOME")
                            .map(PathBuf::from)
                            .unwrap_or_else(|| home.join(".local/share"))
                            .join("convirt")
                    }
                }),
        );
        let xen_auto_dir =
            absolute(&from_file(&file.xen_auto_dir).unwrap_or_else(|| vm_conf_dir.join("auto")));
        Ok(Settings {
            state_dir,
            xen_auto_dir,
            config_file,
            image_store,
            image_store_from,
            log_dir,
            work_dir,
            vm_disks_dir: cache_dir.join("vm_disks"),
            vm_conf_dir,
            cache_dir,
            default_computed_options: file
                .default_computed_options
                .unwrap_or_else(|| DEFAULT_COMPUTED.iter().map(|s| s.to_string()).collect()),
            default_format: file.default_format.unwrap_or_default(),
            variables,
            hosts: file.hosts,
            is_root: env.is_root,
            sources: file
                .sources
                .into_iter()
                .map(|(k, v)| {
                    (
                        k,
                        SourceSettings {
                            url: v.url.into_inner(),
                            public_key: v.public_key.into_inner().trim().to_string(),
                        },
                    )
                })
                .collect(),
            require_signature: file.require_signature.unwrap_or(false),
        })
    }

    /// The value of a site variable, if set.
    pub fn variable(&self, name: &str) -> Option<&Value> {
        self.variables
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

/// The site variables that describe a machine (its paths and its bridge). Site-wide
/// `[variables]` entries of these describe this machine, so a managed server never gets
/// them: its `[hosts.NAME]` entry, its user's defaults and its bridges decide. The same
/// names are the resolver's built-in fallbacks (`resolve::FALLBACKS`).
pub const MACHINE_VARIABLES: &[&str] = &[
    "VM_DISKS_DIR",
    "VM_CONF_DIR",
    "VM_CACHE_DIR",
    "DEFAULT_BRIDGE",
];

/// A path of a `[hosts.NAME]` entry as the server reads it: `~/` is the server user's home,
/// and relative paths are relative to it too (that is where ssh starts).
pub(crate) fn server_path(p: &Path, home: &Path) -> PathBuf {
    if let Ok(rest) = p.strip_prefix("~") {
        home.join(rest)
    } else if p.is_relative() {
        home.join(p)
    } else {
        p.to_path_buf()
    }
}

/// A managed server's directories (spec §7, docs/remote.md): those its `[hosts.NAME]` entry
/// names (`server_path`), else the built-in ones of the server's user, root or not, with
/// that home (`Defaults`, as on this machine). Both ends resolve them here: this machine to
/// plan for the server (`Settings::for_server`), the server's `convirt __serve` for a
/// request that names no directory.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ServerDirs {
    pub cache_dir: PathBuf,
    pub image_store: PathBuf,
    pub log_dir: PathBuf,
    pub work_dir: PathBuf,
    pub vm_disks_dir: PathBuf,
    pub vm_conf_dir: PathBuf,
    pub xen_auto_dir: PathBuf,
    pub state_dir: PathBuf,
}

impl ServerDirs {
    pub(crate) fn of(h: Option<&HostSettings>, root: bool, home: &Path) -> ServerDirs {
        let pick = |p: Option<&PathBuf>, d: PathBuf| p.map(|p| server_path(p, home)).unwrap_or(d);
        let defaults = Defaults::of(root, home);
        let cache_dir = defaults.cache_dir;
        let vm_conf_dir = pick(h.and_then(|h| h.vm_conf_dir.as_ref()), defaults.vm_conf_dir);
        ServerDirs {
            image_store: pick(
                h.and_then(|h| h.store.as_ref()),
                cache_dir.join("image_store"),
            ),
            log_dir: pick(h.and_then(|h| h.log_dir.as_ref()), defaults.log_dir),
            work_dir: pick(h.and_then(|h| h.work_dir.as_ref()), cache_dir.join("work")),
            vm_disks_dir: pick(
                h.and_then(|h| h.vm_disks_dir.as_ref()),
                cache_dir.join("vm_disks"),
            ),
            xen_auto_dir: pick(
                h.and_then(|h| h.xen_auto_dir.as_ref()),
                vm_conf_dir.join("auto"),
            ),
            // The server's environment is not known here: no `XDG_DATA_HOME` on either end.
            state_dir: pick(
                h.and_then(|h| h.state_dir.as_ref()),
                if root {
                    PathBuf::from("/var/lib/convirt")
                } else {
                    home.join(".local/share/convirt")
                },
            ),
            vm_conf_dir,
            cache_dir,
        }
    }
}

impl Settings {
    /// The settings as a managed server sees them: this machine's, with the server's
    /// directories (`ServerDirs`) and root-ness; site `[variables]` apply except the
    /// machine-describing ones (`MACHINE_VARIABLES`), the entry's own paths and variables
    /// over them, and `bridge` (the server's, found by its facts) for `$DEFAULT_BRIDGE`
    /// unless a variable sets it.
    pub(crate) fn for_server(
        &self,
        h: Option<&HostSettings>,
        root: bool,
        home: &Path,
        bridge: Option<&str>,
    ) -> Settings {
        let dirs = ServerDirs::of(h, root, home);
        let mut s = self.clone();
        s.is_root = root;
        s.image_store = dirs.image_store;
        s.log_dir = dirs.log_dir;
        s.work_dir = dirs.work_dir;
        s.vm_disks_dir = dirs.vm_disks_dir;
        s.vm_conf_dir = dirs.vm_conf_dir;
        s.xen_auto_dir = dirs.xen_auto_dir;
        s.state_dir = dirs.state_dir;
        s.cache_dir = dirs.cache_dir;
        s.variables
            .retain(|(k, _)| !MACHINE_VARIABLES.contains(&k.as_str()));
        let mut set = |k: &str, v: Value| match s.variables.iter_mut().find(|(n, _)| n == k) {
            Some(e) => e.1 = v,
            None => s.variables.push((k.to_string(), v)),
        };
        // The host's own paths beat a site-wide `[variables]` entry naming a local path.
        if let Some(h) = h {
            if let Some(p) = &h.vm_disks_dir {
                set(
                    "VM_DISKS_DIR",
                    Value::Str(server_path(p, home).display().to_string()),
                );
            }
            if let Some(p) = &h.vm_conf_dir {
                set(
                    "VM_CONF_DIR",
                    Value::Str(server_path(p, home).display().to_string()),
                );
            }
            for (k, v) in &h.variables {
                set(k, toml_to_value(v.clone()));
            }
        }
        if !s.variables.iter().any(|(k, _)| k == "DEFAULT_BRIDGE") {
            if let Some(b) = bridge {
                s.variables
                    .push(("DEFAULT_BRIDGE".into(), Value::Str(b.to_string())));
            }
        }
        s
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn expand(p: &Path, base: &Path, home: &Path) -> PathBuf {
    if let Ok(rest) = p.strip_prefix("~") {
        home.join(rest)
    } else if p.is_relative() {
        base.join(p)
    } else {
        p.to_path_buf()
    }
}

/// A directory variable (`[variables]` or a host's, a name ending in `_DIR`) or a host's
/// directory setting that is not an absolute path, located in the file: relative, it would
/// name a directory under wherever convirt or a script happens to run (issue #18). A host's
/// `~/` paths are the remote user's home, so they pass.
fn check_absolute_dirs(file: &SourceFile, s: &FileSettings) -> Result<(), Diagnostic> {
    let mut found: Vec<(String, String)> = Vec::new();
    let mut vars = |m: &BTreeMap<String, toml::Value>| {
        for (k, v) in m {
            if let toml::Value::String(t) = v
                && k.ends_with("_DIR")
                && !t.starts_with('/')
                && !t.starts_with("~/")
                && !t.starts_with('$')
            {
                found.push((k.clone(), t.clone()));
            }
        }
    };
    vars(&s.variables);
    for h in s.hosts.values() {
        vars(&h.variables);
    }
    for h in s.hosts.values() {
        for (k, v) in [
            ("VM_DISKS_DIR", &h.vm_disks_dir),
            ("VM_CONF_DIR", &h.vm_conf_dir),
            ("log_dir", &h.log_dir),
            ("work_dir", &h.work_dir),
            ("store", &h.store),
            ("xen_auto_dir", &h.xen_auto_dir),
        ] {
            if let Some(p) = v
                && !p.is_absolute()
                && !p.starts_with("~")
            {
                found.push((k.to_string(), p.display().to_string()));
            }
        }
    }
    let Some((key, value)) = found.into_iter().next() else {
        return Ok(());
    };
    // The line that sets `key` to that value (the same key may be set well elsewhere, in
    // `[variables]` and in a `[hosts.NAME]`), else the first line that sets `key`.
    let mut offset = 0;
    let (mut first, mut exact) = (None, None);
    for line in file.text.split_inclusive('\n') {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix(key.as_str())
            && let Some(v) = rest.trim_start().strip_prefix('=')
        {
            let start = offset + (line.len() - t.len());
            let here = Span::new(start, start + key.len());
            first.get_or_insert(here);
            if v.trim().trim_matches(|c| c == '"' || c == '\'') == value {
                exact = Some(here);
                break;
            }
        }
        offset += line.len();
    }
    let span = exact.or(first).unwrap_or(Span::new(0, 0));
    Err(
        Diagnostic::error(format!("`{key}` must be an absolute path, not `{value}`"))
            .at(file, span)
            .with_hint("give a path beginning with `/`"),
    )
}

fn read_file(path: &Path) -> Result<FileSettings, Diagnostic> {
    let file = SourceFile::read(path)?;
    let settings = parse_file(&file)?;
    check_absolute_dirs(&file, &settings)?;
    check_sources(&file, &settings.sources)?;
    Ok(settings)
}

/// A source's name is a file name in the state directory, its URL follows the download
/// rules (`fetch::check_url`) and its key is a minisign public key.
fn check_sources(
    file: &SourceFile,
    sources: &BTreeMap<String, FileSource>,
) -> Result<(), Diagnostic> {
    for (name, s) in sources {
        let at = |sp: &toml::Spanned<String>| Span::new(sp.span().start, sp.span().end);
        let plain = !name.is_empty()
            && name.len() <= 64
            && !name.starts_with('-')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !plain {
            return Err(Diagnostic::error(format!(
                "source name `{}` may hold only ASCII letters, digits, `_` and `-`",
                name.escape_debug()
            ))
            .at(file, at(&s.url)));
        }
        if let Err(e) = crate::fetch::check_url(s.url.get_ref()) {
            return Err(
                Diagnostic::error(format!("[sources.{name}] url: {e}")).at(file, at(&s.url))
            );
        }
        if let Err(e) = crate::signing::parse_public_key(s.public_key.get_ref()) {
            return Err(
                Diagnostic::error(format!("[sources.{name}] public_key: {e}"))
                    .at(file, at(&s.public_key)),
            );
        }
    }
    Ok(())
}

fn parse_file(file: &SourceFile) -> Result<FileSettings, Diagnostic> {
    toml::from_str::<FileSettings>(&file.text).map_err(|e| {
        let msg = e.message().trim_end().to_string();
        let d = Diagnostic::error(format!("invalid settings file: {msg}"));
        // toml reports a few errors without a place (a dotted key past its recursion
        // limit): point at the most deeply dotted key instead, where the nesting starts.
        let span = e
            .span()
            .map(|r| Span::new(r.start, r.end))
            .unwrap_or_else(|| deepest_key(&file.text));
        let d = d.at(file, span);
        if msg.starts_with("unknown field") {
            d.with_hint("known keys: image_store, log_dir, work_dir, default_computed_options, default_format, state_dir, xen_auto_dir, require_signature, [variables], [hosts.NAME], [sources.NAME] (url, public_key)")
        } else {
            d
        }
    })
}

/// The key of `text` with the most dotted parts (in a `[table]` header or before `=`), as a
/// span; the start of the file when there is none. Quoted parts and multi-line strings are
/// skipped, so a dot inside them does not count.
fn deepest_key(text: &str) -> Span {
    let mut best: Option<(usize, Span)> = None;
    let mut offset = 0;
    let mut in_multiline: Option<&str> = None;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        if let Some(delim) = in_multiline {
            if line.matches(delim).count() % 2 == 1 {
                in_multiline = None;
            }
            continue;
        }
        let trimmed = line.trim_start();
        let lead = line.len() - trimmed.len();
        let key_text = trimmed.trim_start_matches('[');
        let key_start = start + lead + (trimmed.len() - key_text.len());
        let mut dots = 0;
        let mut quote: Option<char> = None;
        let mut end = key_text.len();
        for (i, c) in key_text.char_indices() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '"' | '\'') => quote = Some(c),
                (None, '.') => dots += 1,
                (None, '=' | ']' | '#' | '\n') => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        if dots > 0 && best.is_none_or(|(d, _)| dots > d) {
            best = Some((dots, Span::new(key_start, key_start + end.max(1))));
        }
        for delim in ["\"\"\"", "'''"] {
            if line.matches(delim).count() % 2 == 1 {
                in_multiline = Some(delim);
            }
        }
    }
    best.map_or(Span::new(0, 0), |(_, s)| s)
}

pub(crate) fn toml_to_value(v: toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::Str(s),
        toml::Value::Integer(i) => Value::Int(i),
        toml::Value::Float(f) => Value::Float(f),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::Str(d.to_string()),
        toml::Value::Array(a) => Value::List(a.into_iter().map(toml_to_value).collect()),
        toml::Value::Table(t) => Value::Dict(
            t.into_iter()
                .map(|(k, v)| (Value::Str(k), toml_to_value(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(root: bool, vars: &[(&str, &str)]) -> Env {
        let mut m: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        m.entry("HOME".into()).or_insert("/home/u".into());
        Env {
            vars: m,
            is_root: root,
        }
    }

    /// The error points at the line with the relative path, not the first line that sets
    /// the same key (an absolute one in `[variables]`).
    #[test]
    fn a_relative_host_dir_is_located_on_its_own_line() {
        let text = "[variables]\nVM_DISKS_DIR = '/srv/disks'\n\n[hosts.a]\naddress = 'a'\nVM_DISKS_DIR = 'rel/disks'\n";
        let file = SourceFile::new("c.toml", text.to_string());
        let settings = parse_file(&file).unwrap();
        let d = check_absolute_dirs(&file, &settings).unwrap_err();
        let shown = d.render();
        assert!(
            shown.contains("`VM_DISKS_DIR` must be an absolute path, not `rel/disks`"),
            "{shown}"
        );
        assert!(shown.contains("c.toml:6:"), "{shown}");
    }

    #[test]
    fn defaults_for_root_and_user() {
        let s = Settings::load(
            &Overrides::default(),
            &env(false, &[("XDG_CONFIG_HOME", "/nonexistent")]),
        )
        .unwrap();
        assert_eq!(s.image_store, PathBuf::from("/home/u/.convirt/image_store"));
        assert_eq!(s.log_dir, PathBuf::from("/home/u/.convirt/log"));
        assert_eq!(s.vm_conf_dir, PathBuf::from("/home/u/.convirt/vm_configs"));
        assert_eq!(s.image_store_from, From::Default);
        let mut root_env = env(true, &[]);
        root_env.vars.insert("HOME".into(), "/root".into());
        // A root run reads /etc/convirt/convirt.toml only when it exists.
        if !Path::new("/etc/convirt/convirt.toml").exists() {
            let s = Settings::load(&Overrides::default(), &root_env).unwrap();
            assert_eq!(
                s.image_store,
                PathBuf::from("/var/cache/convirt/image_store")
            );
            assert_eq!(s.log_dir, PathBuf::from("/var/log/convirt"));
            assert_eq!(s.vm_conf_dir, PathBuf::from("/etc/xen"));
        }
    }

    #[test]
    fn precedence_flag_env_file_default() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("c.toml");
        std::fs::write(
            &cfg,
            "image_store = 'from-file'\nlog_dir = '~/logs'\n[variables]\nDEFAULT_BRIDGE = 'br0'\n",
        )
        .unwrap();
        let cfg_s = cfg.to_str().unwrap();
        let e = env(false, &[("CONVIRT_CONFIG", cfg_s)]);
        let s = Settings::load(&Overrides::default(), &e).unwrap();
        assert_eq!(s.image_store, dir.path().join("from-file"));
        assert_eq!(s.image_store_from, From::File);
        assert_eq!(s.log_dir, PathBuf::from("/home/u/logs"));
        assert_eq!(
            s.variable("DEFAULT_BRIDGE"),
            Some(&Value::Str("br0".into()))
        );
        let e = env(
            false,
            &[("CONVIRT_CONFIG", cfg_s), ("CONVIRT_IMAGE_STORE", "/env")],
        );
        let s = Settings::load(&Overrides::default(), &e).unwrap();
        assert_eq!(
            (s.image_store.clone(), s.image_store_from),
            (PathBuf::from("/env"), From::Env)
        );
        let o = Overrides {
            store: Some("/flag".into()),
            config: None,
        };
        let s = Settings::load(&o, &e).unwrap();
        assert_eq!(
            (s.image_store, s.image_store_from),
            (PathBuf::from("/flag"), From::Flag)
        );
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("c.toml");
        std::fs::write(&cfg, "log_dir = '/x'\nimage_stor = '/y'\n").unwrap();
        let o = Overrides {
            store: None,
            config: Some(cfg.clone()),
        };
        let d = Settings::load(&o, &env(false, &[])).unwrap_err();
        let r = d.render();
        assert!(r.contains("unknown field `image_stor`"), "{r}");
        assert!(r.contains(&format!("{}:2:1", cfg.display())), "{r}");
    }

    #[test]
    fn wrong_type_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("c.toml");
        std::fs::write(&cfg, "default_computed_options = 'arch'\n").unwrap();
        let o = Overrides {
            store: None,
            config: Some(cfg),
        };
        let d = Settings::load(&o, &env(false, &[])).unwrap_err();
        assert!(d.render().contains(":1:"), "{}", d.render());
    }

    #[test]
    fn nesting_past_the_limit_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("c.toml");
        let deep = vec!["a"; 300].join(".");
        let cases = [
            (format!("log_dir = '/x'\n\n{deep} = 1\n"), ":3:1"),
            (format!("x = 1\n[{deep}]\n"), ":2:2"),
            (
                format!(
                    "s = \"\"\"\n{}\n\"\"\"\n[variables]\n  {deep}.'q.q' = 1\n",
                    "b.".repeat(500)
                ),
                ":5:3",
            ),
            (
                format!("[variables]\nv = {}{}\n", "[".repeat(300), "]".repeat(300)),
                ":2:",
            ),
        ];
        for (text, place) in cases {
            std::fs::write(&cfg, &text).unwrap();
            let o = Overrides {
                store: None,
                config: Some(cfg.clone()),
            };
            let r = Settings::load(&o, &env(false, &[])).unwrap_err().render();
            assert!(r.contains(&format!("{}{place}", cfg.display())), "{r}");
        }
        assert_eq!(deepest_key("no dots = 1\n"), Span::new(0, 0));
    }

    #[test]
    fn missing_explicit_config_is_an_error() {
        let o = Overrides {
            store: None,
            config: Some("/nonexistent/c.toml".into()),
        };
        assert!(Settings::load(&o, &env(false, &[])).is_err());
    }

    #[test]
    fn hosts_hold_server_paths_and_unknown_keys_are_located() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("c.toml");
        std::fs::write(
            &cfg,
            "[hosts.xen1]\naddress = 'xen1'\nport = 2222\nVM_DISKS_DIR = '/srv/d'\nwork_dir = '~/w'\n[hosts.xen1.variables]\nmemory = 512\n",
        )
        .unwrap();
        let o = Overrides {
            store: None,
            config: Some(cfg.clone()),
        };
        let s = Settings::load(&o, &env(false, &[])).unwrap();
        let h = &s.hosts["xen1"];
        assert_eq!(h.vm_disks_dir, Some(PathBuf::from("/srv/d")));
        // Server-side paths stay as written: `~` is the remote home, resolved on the server.
        assert_eq!(h.work_dir, Some(PathBuf::from("~/w")));
        assert_eq!(h.variables["memory"], toml::Value::Integer(512));
        std::fs::write(&cfg, "[hosts.xen1]\naddress = 'xen1'\nlogdir = '/x'\n").unwrap();
        let r = Settings::load(&o, &env(false, &[])).unwrap_err().render();
        assert!(r.contains("unknown field `logdir`"), "{r}");
        assert!(r.contains(&format!("{}:3:1", cfg.display())), "{r}");
    }

    #[test]
    fn a_servers_directories_are_its_entrys_else_its_users_defaults() {
        let h: HostSettings = toml::from_str(
            "address = 'x'\nwork_dir = '~/w'\nlog_dir = 'logs'\nVM_CONF_DIR = '/srv/xen'\n",
        )
        .unwrap();
        let home = Path::new("/home/srv");
        let d = ServerDirs::of(Some(&h), false, home);
        assert_eq!(d.work_dir, Path::new("/home/srv/w"));
        assert_eq!(d.log_dir, Path::new("/home/srv/logs"));
        assert_eq!(d.vm_conf_dir, Path::new("/srv/xen"));
        assert_eq!(d.xen_auto_dir, Path::new("/srv/xen/auto"));
        assert_eq!(d.image_store, Path::new("/home/srv/.convirt/image_store"));
        assert_eq!(d.state_dir, Path::new("/home/srv/.local/share/convirt"));
        // Nothing named: the built-in paths of that user, as on this machine.
        let d = ServerDirs::of(None, true, home);
        assert_eq!(d.work_dir, Path::new("/var/cache/convirt/work"));
        assert_eq!(d.vm_conf_dir, Path::new("/etc/xen"));
        assert_eq!(d.state_dir, Path::new("/var/lib/convirt"));
        // The same rules as this machine's settings for such a user.
        let local = Settings::load(
            &Overrides::default(),
            &env(false, &[("XDG_CONFIG_HOME", "/nonexistent")]),
        )
        .unwrap();
        let d = ServerDirs::of(None, false, Path::new("/home/u"));
        assert_eq!(
            [
                &local.image_store,
                &local.work_dir,
                &local.log_dir,
                &local.vm_disks_dir
            ],
            [&d.image_store, &d.work_dir, &d.log_dir, &d.vm_disks_dir]
        );
        assert_eq!(
            [&local.vm_conf_dir, &local.xen_auto_dir, &local.state_dir],
            [&d.vm_conf_dir, &d.xen_auto_dir, &d.state_dir]
        );
    }
}

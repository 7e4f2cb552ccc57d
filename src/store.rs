//! The image store (spec §1): where it is, what counts as an image, valid names, and the
//! shipped store embedded in the binary (`convirt store init`).

use crate::diagnostic::{Diagnostic, Diagnostics, SourceFile};
use crate::eval::{self, Limits};
use crate::host::Host;
use crate::syntax;
use crate::value::Value;
use std::path::{Path, PathBuf};

pub struct EmbeddedFile {
    pub path: &'static str,
    pub mode: u32,
    pub dir: bool,
    pub data: &'static [u8],
}

mod embedded {
    use super::EmbeddedFile;
    include!(concat!(env!("OUT_DIR"), "/embedded_store.rs"));
}

/// The shipped store, as embedded at build time.
pub fn embedded_files() -> &'static [EmbeddedFile] {
    embedded::FILES
}

pub const DEFAULT_EXCLUDES: &[&str] = &["common", "example", "custom_scripts"];
pub const STORE_CONF: &str = "image_store.conf";

/// Characters that may never appear in an image name (spec §1.4), as ConVirt had them.
const INVALID_CHARS: &str = " /,<>|!&%.'\"^\\";

pub fn check_image_name(name: &str) -> Result<(), String> {
    check_name(name, "image", false)
}

pub fn check_vm_name(name: &str) -> Result<(), String> {
    check_name(name, "VM", true)
}

fn check_name(name: &str, what: &str, dots: bool) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{what} name is empty"));
    }
    if name == "." || name == ".." {
        return Err(format!("`{name}` is not a valid {what} name"));
    }
    if name.chars().count() > 64 {
        return Err(format!("{what} name `{name}` is longer than 64 characters"));
    }
    if name.starts_with('-') {
        return Err(format!("{what} name `{name}` starts with `-`"));
    }
    for c in name.chars() {
        let ok = c.is_ascii_alphanumeric() || c == '_' || c == '-' || (dots && c == '.');
        if !ok {
            let shown = if c.is_control() {
                format!("{:?}", c)
            } else {
                format!("`{c}`")
            };
            let extra = if INVALID_CHARS.contains(c) || c.is_control() {
                ""
            } else {
                " (only ASCII letters, digits, `_` and `-` are allowed)"
            };
            return Err(format!(
                "{what} name `{}` contains {shown}{extra}",
                name.escape_debug()
            ));
        }
    }
    Ok(())
}

/// `image_store.conf`: which directories are not images, and the default image.
#[derive(Debug, Clone)]
pub struct StoreConf {
    pub excludes: Vec<String>,
    pub default: Option<String>,
}

impl Default for StoreConf {
    fn default() -> Self {
        StoreConf {
            excludes: DEFAULT_EXCLUDES.iter().map(|s| s.to_string()).collect(),
            default: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Store {
    pub root: PathBuf,
    pub conf: StoreConf,
}

/// A directory of the store that is an image.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub dir: PathBuf,
    pub template: bool,
}

/// An image whose name starts with `_` is a template to copy, not to provision (spec §1.3).
pub fn is_template_name(name: &str) -> bool {
    name.starts_with('_')
}

impl Store {
    /// Opens a store. A missing or broken `image_store.conf` is reported, and the defaults
    /// apply, so one bad file never hides the images.
    pub fn open(root: &Path) -> Result<(Store, Diagnostics), Diagnostic> {
        let meta = std::fs::metadata(root).map_err(|e| {
            Diagnostic::error(format!("cannot open image store `{}`: {e}", root.display()))
                .with_hint("run `convirt store init` to create it, or pass `--store DIR`")
        })?;
        if !meta.is_dir() {
            return Err(Diagnostic::error(format!(
                "image store `{}` is not a directory",
                root.display()
            )));
        }
        let mut diags = Diagnostics::default();
        let conf_path = root.join(STORE_CONF);
        let conf = if conf_path.exists() {
            match read_store_conf(&conf_path) {
                Ok(c) => c,
                Err(d) => {
                    // The defaults apply, so a broken store file is a warning.
                    diags.extend(d.into_warnings());
                    StoreConf::default()
                }
            }
        } else {
            StoreConf::default()
        };
        Ok((
            Store {
                root: root.to_path_buf(),
                conf,
            },
            diags,
        ))
    }

    /// Every image directory, sorted by name (spec §1.3).
    pub fn entries(&self) -> std::io::Result<Vec<Entry>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.root)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || self.conf.excludes.contains(&name) {
                continue;
            }
            if !e.file_type()?.is_dir() && !e.path().is_dir() {
                continue;
            }
            out.push(Entry {
                template: is_template_name(&name),
                dir: e.path(),
                name,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The directory of a named image, after checking the name.
    pub fn image_dir(&self, name: &str) -> Result<PathBuf, Diagnostic> {
        check_image_name(name).map_err(Diagnostic::error)?;
        let dir = self.root.join(name);
        if !dir.is_dir() || self.conf.excludes.iter().any(|x| x == name) {
            let names: Vec<String> = self
                .entries()
                .map(|v| v.into_iter().map(|e| e.name).collect())
                .unwrap_or_default();
            let d = Diagnostic::error(format!(
                "no image `{name}` in store `{}`",
                self.root.display()
            ));
            return Err(
                match crate::subst::closest(name, names.iter().map(String::as_str)) {
                    Some(s) => d.with_hint(format!("did you mean `{s}`?")),
                    None => d.with_hint("`convirt image list` shows the images"),
                },
            );
        }
        Ok(dir)
    }
}

fn read_store_conf(path: &Path) -> Result<StoreConf, Diagnostics> {
    let file = SourceFile::read(path)?;
    let module = syntax::parse(&file)?;
    let (ev, diags) = eval::evaluate(&file, &module, &Host::local(None), Limits::default());
    if diags.has_errors() {
        return Err(diags);
    }
    let mut conf = StoreConf::default();
    let mut problems = Diagnostics::default();
    for b in &ev.bindings {
        let at = |msg: &str| {
            let site = b.sites.last().map(|s| s.stmt).unwrap_or_default();
            Diagnostic::error(msg.to_string()).at(&file, site)
        };
        match (b.key.as_str(), &b.value) {
            ("excludes", Value::List(items) | Value::Tuple(items)) => {
                let names: Option<Vec<String>> =
                    items.iter().map(|v| v.as_str().map(String::from)).collect();
                match names {
                    Some(n) => conf.excludes = n,
                    None => problems.push(at("`excludes` must be a list of directory names")),
                }
            }
            ("excludes", _) => problems.push(at("`excludes` must be a list of directory names")),
            ("default", Value::Str(s)) => conf.default = Some(s.clone()),
            ("default", _) => problems.push(at("`default` must be an image name in quotes")),
            _ => {}
        }
    }
    if problems.has_errors() {
        Err(problems)
    } else {
        Ok(conf)
    }
}

/// What `store init` did.
#[derive(Debug, Default)]
pub struct InitReport {
    pub written: Vec<PathBuf>,
    pub kept: Vec<PathBuf>,
}

/// Writes the embedded store into `dir`. A non-empty `dir` needs `force`, and even then only
/// the shipped files are (re)written: a user's own images and files are never deleted.
pub fn init(dir: &Path, force: bool) -> Result<InitReport, Diagnostic> {
    let non_empty = std::fs::read_dir(dir)
        .map(|mut r| r.next().is_some())
        .unwrap_or(false);
    if non_empty && !force {
        return Err(
            Diagnostic::error(format!("`{}` exists and is not empty", dir.display())).with_hint(
                "pass `--force` to rewrite the shipped files there (your own images are kept)",
            ),
        );
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| Diagnostic::error(format!("cannot create `{}`: {e}", dir.display())))?;
    let mut report = InitReport::default();
    for f in embedded_files() {
        let target = dir.join(f.path);
        let fail = |e: std::io::Error| {
            Diagnostic::error(format!("cannot write `{}`: {e}", target.display()))
        };
        if f.dir {
            std::fs::create_dir_all(&target).map_err(fail)?;
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(fail)?;
        }
        if std::fs::read(&target).is_ok_and(|old| old == f.data) {
            report.kept.push(target);
            continue;
        }
        crate::atomic::write(&target, f.data, f.mode, true).map_err(fail)?;
        report.written.push(target);
    }
    Ok(report)
}

/// Opens the configured store. When nothing configured one and the default place does not
/// exist yet, the shipped store is written there first (spec §1.5); what was written comes
/// back so the caller can say so.
pub fn open_configured(
    settings: &crate::settings::Settings,
) -> Result<(Store, Diagnostics, Option<InitReport>), Diagnostic> {
    let root = &settings.image_store;
    let wrote = if settings.image_store_from == crate::settings::From::Default && !root.exists() {
        Some(init(root, false)?)
    } else {
        None
    };
    let (store, mut diags) = Store::open(root)?;
    // What interrupted runs left behind (their owner gone) goes first (issue #12.2).
    diags.extend(crate::tree::sweep_store(&store.root, &|n| {
        check_image_name(n).is_ok()
    }));
    Ok((store, diags, wrote))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["Linux_CD_Install", "a-b", "_template_", "x1"] {
            assert!(check_image_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a b",
            "a/b",
            "a.b",
            "a,b",
            "x<y",
            "a|b",
            "a!",
            "a&b",
            "a%b",
            "it's",
            "q\"",
            "a^b",
            "a\\b",
            "-rf",
            "é",
            &"x".repeat(65),
        ] {
            assert!(check_image_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_vm_name("web1.example.com").is_ok());
        assert!(check_vm_name("..").is_err());
        assert!(check_vm_name("a/b").is_err());
        assert!(check_vm_name("a\nb").is_err());
    }

    #[test]
    fn listing_rules() {
        let d = tempfile::tempdir().unwrap();
        for n in [
            "common",
            "example",
            "custom_scripts",
            ".hidden",
            "_template_",
            "Img",
            "Other",
        ] {
            std::fs::create_dir(d.path().join(n)).unwrap();
        }
        std::fs::write(d.path().join("file"), "").unwrap();
        let (s, diags) = Store::open(d.path()).unwrap();
        assert!(diags.is_empty());
        let names: Vec<(String, bool)> = s
            .entries()
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.template))
            .collect();
        assert_eq!(
            names,
            vec![
                ("Img".into(), false),
                ("Other".into(), false),
                ("_template_".into(), true)
            ]
        );

        std::fs::write(
            d.path().join(STORE_CONF),
            "excludes = ['Other']\ndefault = 'Img'\n",
        )
        .unwrap();
        let (s, _) = Store::open(d.path()).unwrap();
        let names: Vec<String> = s.entries().unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(
            names,
            vec!["Img", "_template_", "common", "custom_scripts", "example"]
        );
        assert_eq!(s.conf.default.as_deref(), Some("Img"));
    }

    #[test]
    fn broken_store_conf_is_reported_and_defaults_apply() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("common")).unwrap();
        std::fs::write(d.path().join(STORE_CONF), "excludes = [\n").unwrap();
        let (s, diags) = Store::open(d.path()).unwrap();
        // Reported as a warning: the defaults apply, so nothing fails because of it.
        assert!(!diags.is_empty());
        assert!(!diags.has_errors());
        assert!(diags.render().starts_with("warning:"));
        assert!(s.entries().unwrap().is_empty());
    }
}

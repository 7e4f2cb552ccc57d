//! The bootstrap cache of images built by the shipped `common/guest` (Debian_12_Minimal):
//! the same cache key as `guest_cache_key` in bash, for `--dry-run` to show the key and
//! whether the cache is warm without running anything.

use crate::resolve::Resolved;
use crate::value::Value;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// What `--dry-run` says about an image's bootstrap cache.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct CacheInfo {
    pub key: String,
    pub mirror: String,
    pub packages: Vec<String>,
    pub dir: PathBuf,
    /// A complete entry exists (its manifest matches its files): no bootstrap needed.
    pub warm: bool,
    /// `REFRESH` is set: the entry is rebuilt anyway.
    pub refresh: bool,
}

/// The cache of a resolved config, when its image builds a guest tree (a disk with
/// `<dev>_image_src_type = 'guest_tree'`). `Err` when the mirror or packages are unusable.
pub(crate) fn cache_info(resolved: &Resolved) -> Option<Result<CacheInfo, String>> {
    let guest = resolved
        .image
        .iter()
        .any(|e| e.key.ends_with("_image_src_type") && e.value.to_text() == "guest_tree");
    if !guest {
        return None;
    }
    let text = |k: &str, d: &str| {
        resolved
            .image_value(k)
            .map(Value::to_text)
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| d.to_string())
    };
    Some((|| {
        let suite = text("DEBIAN_SUITE", "bookworm");
        let mirror = match resolved.image_value("DEBIAN_MIRROR").map(Value::to_text) {
            Some(m) if !m.is_empty() => m,
            _ => host_mirror(Path::new("/etc/apt"), &suite).ok_or_else(|| {
                format!("no apt source for suite {suite} in /etc/apt; set DEBIAN_MIRROR")
            })?,
        };
        let mirror = mirror.trim_end_matches('/').to_string();
        let mut packages = Vec::new();
        for k in ["DEBIAN_PACKAGES", "extra_packages"] {
            packages.extend(package_names(resolved.image_value(k))?);
        }
        packages.sort();
        packages.dedup();
        let key_text = format!(
            "convirt-debian 1\nsuite {suite}\narch {}\nmirror {mirror}\nvariant {}\npackages {}\n",
            text("DEBIAN_ARCH", "amd64"),
            text("DEBIAN_VARIANT", "minbase"),
            packages.join(" "),
        );
        let digest = Sha256::digest(key_text.as_bytes());
        let key: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        let dir = PathBuf::from(text("VM_CACHE_DIR", "."))
            .join("guests")
            .join(format!("debian-{key}"));
        let refresh = matches!(text("REFRESH", "0").as_str(), "1" | "yes" | "True" | "true");
        Ok(CacheInfo {
            warm: entry_ok(&dir),
            key,
            mirror,
            packages,
            dir,
            refresh,
        })
    })())
}

/// This machine's cache dir for guest images: `VM_CACHE_DIR` of the site's `[variables]`,
/// else the built-in one (what an image that does not set it resolves to).
pub(crate) fn local_cache_dir(settings: &crate::settings::Settings) -> PathBuf {
    settings
        .variables
        .iter()
        .find(|(k, _)| k == "VM_CACHE_DIR")
        .map(|(_, v)| PathBuf::from(v.to_text()))
        .unwrap_or_else(|| settings.cache_dir.clone())
}

/// The dry-run lines about the cache.
pub(crate) fn describe(info: &Result<CacheInfo, String>) -> String {
    match info {
        Err(e) => format!("\nguest cache: unusable: {e}\n"),
        Ok(c) => format!(
            "\nguest cache (bootstrap of the base system):\n  key:      {}\n  entry:    {}\n  state:    {}\n  mirror:   {}\n  packages: {}\n",
            c.key,
            c.dir.display(),
            match (c.warm, c.refresh) {
                (_, true) => "rebuilt (REFRESH is set)",
                (true, false) => "warm: reused, no bootstrap",
                (false, false) => "cold: bootstrapped first (mmdebstrap)",
            },
            c.mirror,
            c.packages.join(" "),
        ),
    }
}

/// Package names from a list or a space/comma separated string, checked like the shell.
fn package_names(v: Option<&Value>) -> Result<Vec<String>, String> {
    let items: Vec<String> = match v {
        None | Some(Value::None) => vec![],
        Some(Value::List(l)) | Some(Value::Tuple(l)) => l.iter().map(Value::to_text).collect(),
        Some(other) => other
            .to_text()
            .split(|c: char| c.is_whitespace() || c == ',')
            .map(str::to_string)
            .collect(),
    };
    let ok = |p: &str| {
        p.len() >= 2
            && p.bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && p.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'+' | b'.' | b'-')
            })
    };
    items
        .into_iter()
        .filter(|p| !p.is_empty())
        .map(|p| {
            if ok(&p) {
                Ok(p)
            } else {
                Err(format!("`{p}` is not a Debian package name"))
            }
        })
        .collect()
}

/// The shell's `_guest_entry_ok`: a `complete` manifest listing each file's size.
pub(crate) fn entry_ok(dir: &Path) -> bool {
    let Ok(manifest) = std::fs::read_to_string(dir.join("complete")) else {
        return false;
    };
    let Ok(rd) = std::fs::read_dir(dir) else {
        return false;
    };
    let mut files: Vec<String> = rd
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "complete" || name.starts_with('.') {
                return None;
            }
            Some(format!("{name} {}", e.metadata().ok()?.len()))
        })
        .collect();
    files.sort();
    manifest.lines().collect::<Vec<_>>() == files.iter().map(String::as_str).collect::<Vec<_>>()
}

/// The first `deb` source of the host's apt configuration (sources.list, then
/// sources.list.d/ in name order; one-line and deb822 files) that serves `suite`.
pub(crate) fn host_mirror(apt: &Path, suite: &str) -> Option<String> {
    let mut files = Vec::new();
    if apt.join("sources.list").is_file() {
        files.push(apt.join("sources.list"));
    }
    let mut d: Vec<PathBuf> = std::fs::read_dir(apt.join("sources.list.d"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "list" || x == "sources") && p.is_file())
        .collect();
    d.sort();
    files.extend(d);
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        let found = if f.extension().is_some_and(|x| x == "sources") {
            deb822_mirror(&text, suite)
        } else {
            one_line_mirror(&text, suite)
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

fn one_line_mirror(text: &str, suite: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        if w.next()? != "deb" {
            return None;
        }
        let mut uri = w.next()?;
        if uri.starts_with('[') {
            while !uri.ends_with(']') {
                uri = w.next()?;
            }
            uri = w.next()?;
        }
        (w.next()? == suite).then(|| uri.to_string())
    })
}

fn deb822_mirror(text: &str, suite: &str) -> Option<String> {
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                let l = l.trim_start();
                if l.starts_with('#') {
                    return None;
                }
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
        };
        let types = field("Types").unwrap_or_default();
        let suites = field("Suites").unwrap_or_default();
        if types.split_whitespace().any(|t| t == "deb")
            && suites.split_whitespace().any(|s| s == suite)
            && let Some(uri) =
                field("URIs").and_then(|u| u.split_whitespace().next().map(String::from))
        {
            return Some(uri);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_from_both_apt_formats_in_apt_order() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("sources.list.d")).unwrap();
        std::fs::write(
            d.join("sources.list.d/a.sources"),
            "Types: deb\nURIs: http://backports.example/debian\nSuites: bookworm-backports\n\n# x\nTypes: deb deb-src\nURIs: http://main.example/debian/ http://other\nSuites: bookworm bookworm-updates\n",
        )
        .unwrap();
        assert_eq!(
            host_mirror(d, "bookworm").as_deref(),
            Some("http://main.example/debian/")
        );
        std::fs::write(
            d.join("sources.list"),
            "# comment\ndeb-src http://src.example/debian bookworm main\ndeb [arch=amd64 signed-by=/k] http://list.example/debian bookworm main\n",
        )
        .unwrap();
        assert_eq!(
            host_mirror(d, "bookworm").as_deref(),
            Some("http://list.example/debian")
        );
        assert_eq!(host_mirror(d, "trixie"), None);
    }

    #[test]
    fn package_names_are_checked() {
        let list = Value::List(vec![Value::Str("zsh".into()), Value::Str("bash".into())]);
        assert_eq!(package_names(Some(&list)).unwrap(), ["zsh", "bash"]);
        let s = Value::Str("lvm2, curl  vim".into());
        assert_eq!(package_names(Some(&s)).unwrap(), ["lvm2", "curl", "vim"]);
        assert!(package_names(Some(&Value::Str("a;b".into()))).is_err());
    }
}

//! The sample `/etc/convirt/convirt.toml` shipped in the package (`pkg/convirt.toml`): as
//! shipped it changes nothing, and the defaults it documents are the real ones.

use convirt::settings::{Env, Overrides, Settings};
use std::collections::BTreeMap;
use std::path::Path;

const KEYS: &[&str] = &[
    "image_store",
    "log_dir",
    "work_dir",
    "default_computed_options",
    "default_format",
    "require_signature",
];

fn sample() -> String {
    std::fs::read_to_string(crate::repo().join("pkg/convirt.toml")).unwrap()
}

fn env(root: bool) -> Env {
    let mut vars = BTreeMap::new();
    vars.insert("HOME".to_string(), "/home/u".to_string());
    vars.insert("XDG_CONFIG_HOME".to_string(), "/nonexistent".to_string());
    Env {
        vars,
        is_root: root,
    }
}

/// Settings as JSON, without the field naming the file they came from.
fn load(config: Option<&Path>, root: bool) -> serde_json::Value {
    let over = Overrides {
        store: None,
        config: config.map(Path::to_path_buf),
    };
    let s = Settings::load(&over, &env(root)).unwrap_or_else(|d| panic!("{}", d.render()));
    let mut v = serde_json::to_value(&s).unwrap();
    v.as_object_mut().unwrap().remove("config_file");
    v
}

/// The built-in defaults: an explicit empty settings file.
fn defaults(dir: &Path, root: bool) -> serde_json::Value {
    let empty = dir.join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    load(Some(&empty), root)
}

#[test]
fn the_sample_unchanged_gives_the_built_in_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("convirt.toml");
    std::fs::write(&cfg, sample()).unwrap();
    for root in [true, false] {
        assert_eq!(
            load(Some(&cfg), root),
            defaults(dir.path(), root),
            "root={root}"
        );
    }
}

#[test]
fn the_defaults_the_sample_documents_are_the_real_ones() {
    let text = sample();
    // Uncomment every top-level `#key = value` line (those before the first table).
    let mut keys = Vec::new();
    let mut out = String::new();
    let mut in_table = false;
    for line in text.lines() {
        in_table |= line.starts_with("#[");
        let key = line
            .strip_prefix('#')
            .and_then(|l| l.split_once(" = "))
            .map(|(k, _)| k)
            .filter(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
        match key {
            Some(k) if !in_table => {
                keys.push(k.to_string());
                out.push_str(&line[1..]);
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    assert_eq!(keys, KEYS, "every key, once, in order");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("convirt.toml");
    std::fs::write(&cfg, &out).unwrap();
    // The file is /etc/convirt/convirt.toml: root's defaults.
    let got = load(Some(&cfg), true);
    let mut want = defaults(dir.path(), true);
    // Keys set in a file report where they came from; the values must be the defaults.
    want["image_store_from"] = got["image_store_from"].clone();
    assert_eq!(got["image_store_from"], "file");
    assert_eq!(got, want);
}

#[test]
fn the_commented_examples_are_valid_settings() {
    // Uncommenting everything (tables included) gives a file convirt accepts.
    let text: String = sample()
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest)
                if rest.starts_with('[') || rest.contains(" = ") && !rest.starts_with(' ') =>
            {
                rest.to_string()
            }
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("convirt.toml");
    std::fs::write(&cfg, &text).unwrap();
    let s = load(Some(&cfg), true);
    assert_eq!(s["hosts"]["xen1"]["address"], "xen1.example.org", "{s}");
    assert!(s["variables"].to_string().contains("br0"), "{s}");
}

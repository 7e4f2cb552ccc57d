//! The oracles: one function per input path that takes the raw bytes of one input, runs it
//! through convirt's library as the command would, and returns what is wrong, if anything.
//! A panic counts as wrong too (the caller catches it). Shared by the property tests of
//! `tests/fuzz_inputs` and the libFuzzer targets of `fuzz/` (included there by path), so a
//! crash either one finds replays in the other.

use convirt::archive::{self, ImportOptions};
use convirt::diagnostic::{Diagnostics, SourceFile};
use convirt::edit::{self, Change};
use convirt::eval::{self, Limits};
use convirt::host::Host;
use convirt::image::{ConfFile, Image};
use convirt::render;
use convirt::resolve::{self, Context, Overrides};
use convirt::settings::{self, Env, Settings};
use convirt::store::Store;
use convirt::subst::{self, Var, Vars};
use convirt::syntax;
use convirt::value::Value;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Records in an input are separated by NUL: a byte no command-line value can hold.
pub const SEP: u8 = 0;

pub fn host() -> Host {
    Host {
        sysname: "Linux".into(),
        nodename: "xen1".into(),
        release: "6.1.0".into(),
        version: "#1 SMP".into(),
        machine: "x86_64".into(),
    }
}

/// The repository's shipped image store, read in place (never written).
pub fn shipped_store() -> PathBuf {
    // `fuzz/` includes this file too; its manifest directory is one below the repository.
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let store = here.join("image_store");
    if store.is_dir() {
        store
    } else {
        here.join("../image_store")
    }
}

fn fail<T>(what: impl std::fmt::Display) -> Result<T, String> {
    Err(what.to_string())
}

/// A failure must say something.
fn check_reported(d: &Diagnostics, what: &str) -> Result<(), String> {
    if !d.has_errors() || d.render().trim().is_empty() {
        return fail(format!("{what} failed without an error message"));
    }
    Ok(())
}

/// Settings with nothing configured, for a user whose home is `home`.
pub fn default_settings(home: &Path) -> Settings {
    let env = Env {
        vars: BTreeMap::from([
            ("HOME".to_string(), home.display().to_string()),
            (
                "XDG_CONFIG_HOME".to_string(),
                home.join("no-config").display().to_string(),
            ),
        ]),
        is_root: false,
    };
    Settings::load(&settings::Overrides::default(), &env).expect("default settings load")
}

// ---------------------------------------------------------------------------------------------
// The config language

/// Bytes as a `vm_conf.template`: read, parse, evaluate, substitute; nothing may panic.
pub fn config_language(data: &[u8]) -> Result<(), String> {
    let file = match SourceFile::from_bytes(Path::new("vm_conf.template"), data.to_vec()) {
        Ok(f) => f,
        Err(d) => {
            let _ = d.render();
            return Ok(());
        }
    };
    let module = match syntax::parse(&file) {
        Ok(m) => m,
        Err(d) => {
            if d.is_empty() {
                return fail("a failed parse reported nothing");
            }
            let _ = d.render();
            return Ok(());
        }
    };
    let (values, diags) = eval::evaluate(&file, &module, &host(), Limits::default());
    let _ = diags.render();
    let mut vars = Vars::default();
    vars.set_text("VM_NAME", "web1");
    vars.set_text("VM_DISKS_DIR", "/srv/xen");
    vars.set("AUTOGEN_MAC", Var::FreshMac);
    for b in &values.bindings {
        let mut unresolved = Vec::new();
        let v = subst::substitute(&b.value, &vars, &mut unresolved);
        let _ = v.repr();
        let _ = v.script_literal();
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Archive import

/// Every entry below `dir` with its type, mode, size, mtime and content: what "the store is
/// unchanged" means.
pub fn snapshot(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let Ok(e) = e else {
            out.push("unreadable".into());
            continue;
        };
        let Ok(m) = e.path().symlink_metadata() else {
            continue;
        };
        let content = if m.is_file() {
            std::fs::read(e.path()).unwrap_or_default()
        } else if m.file_type().is_symlink() {
            std::fs::read_link(e.path())
                .map(|t| t.display().to_string().into_bytes())
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        // The store directory's own time changes with the temporary directory an import
        // makes and removes in it; what it holds is what counts.
        let mtime = if e.depth() == 0 { 0 } else { m.mtime() };
        out.push(format!(
            "{} {:o} {} {} {:?}",
            e.path().strip_prefix(dir).unwrap_or(e.path()).display(),
            m.mode(),
            m.len(),
            mtime,
            String::from_utf8_lossy(&content)
        ));
    }
    out
}

/// A small store with one image, `Existing`, that no import may touch.
fn small_store(root: &Path) {
    let img = root.join("Existing");
    std::fs::create_dir_all(&img).unwrap();
    std::fs::write(img.join("image.conf"), "keep = 1\n").unwrap();
    std::fs::write(img.join("vm_conf.template"), "name = ''\nmemory = 256\n").unwrap();
    std::fs::write(img.join("provision.sh"), "#!/bin/bash\nexit 0\n").unwrap();
}

/// Bytes as an archive to `image import` (plain tar, gzip or zstd, recognised by their first
/// bytes) into a temporary store. Refused: the store is exactly as before and the error says
/// why. Accepted: each new image loads, and the image that was there is untouched.
pub fn archive_import(data: &[u8]) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let root = dir.path().join("store");
    small_store(&root);
    let input = dir.path().join("input.tar.gz");
    std::fs::write(&input, data).map_err(|e| e.to_string())?;
    let before = snapshot(&root);
    let (store, _) = Store::open(&root).map_err(|d| d.render())?;
    let opts = ImportOptions {
        force: false,
        progress: false,
        // Small enough that an archive bomb stops quickly, large enough for any input.
        max_size: 64 << 20,
        expect: None,
    };
    match archive::import(&store, &input, &host(), &opts) {
        Err(d) => {
            check_reported(&d, "a refused import")?;
            let after = snapshot(&root);
            if after != before {
                return fail(format!(
                    "a refused import changed the store:\n{}\nbefore: {before:#?}\nafter: {after:#?}",
                    d.render()
                ));
            }
        }
        Ok(report) => {
            let after = snapshot(&root);
            let existing: Vec<&String> = before
                .iter()
                .filter(|l| l.starts_with("Existing"))
                .collect();
            let kept: Vec<&String> = after.iter().filter(|l| l.starts_with("Existing")).collect();
            if existing != kept {
                return fail("an import without --force changed the existing image");
            }
            if report.images.is_empty() {
                return fail("an import succeeded with no image");
            }
            for img in &report.images {
                if img.name == "Existing" || img.replaced {
                    return fail(format!("`{}` was replaced without --force", img.name));
                }
                if let Err(d) = Image::load(&img.name, &root.join(&img.name), &host()) {
                    return fail(format!(
                        "imported `{}` does not load:\n{}",
                        img.name,
                        d.render()
                    ));
                }
            }
            if let Some(left) = after.iter().find(|l| l.starts_with(".convirt-import")) {
                return fail(format!("a temporary directory was left behind: {left}"));
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The settings file

/// Bytes as the settings file. Refused: the error names the file and a line. Accepted: the
/// shipped images resolve and render with these settings without a panic.
pub fn settings_file(data: &[u8]) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().join("convirt.toml");
    std::fs::write(&path, data).map_err(|e| e.to_string())?;
    let env = Env {
        vars: BTreeMap::from([("HOME".to_string(), dir.path().display().to_string())]),
        is_root: false,
    };
    let over = settings::Overrides {
        store: None,
        config: Some(path.clone()),
    };
    match Settings::load(&over, &env) {
        Err(d) => {
            let r = d.render();
            let at = format!("--> {}:", path.display());
            let located = r
                .find(&at)
                .and_then(|i| r[i + at.len()..].chars().next())
                .is_some_and(|c| c.is_ascii_digit());
            if !located {
                return fail(format!("a settings error without file and line:\n{r}"));
            }
        }
        Ok(settings) => {
            for name in ["Fedora_Core_Install", "Linux_CD_Install"] {
                resolve_and_render(name, &settings, &Overrides::default())?;
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// `--set` / `--vm-set`

/// Resolves a shipped image with `over` and renders it both ways. Returns the `xm` text when
/// resolution succeeded.
fn resolve_and_render(
    name: &str,
    settings: &Settings,
    over: &Overrides,
) -> Result<Option<String>, String> {
    let img = Image::load(name, &shipped_store().join(name), &host()).map_err(|d| d.render())?;
    let ctx = Context {
        vm_name: Some("web1".into()),
        host: host(),
        store_path: shipped_store(),
        settings: settings.clone(),
    };
    let resolved = match resolve::resolve(&img, &ctx, over, false) {
        Ok(r) => r,
        Err(d) => {
            check_reported(&d, "resolution")?;
            return Ok(None);
        }
    };
    let req = render::Request {
        entries: &resolved.vm,
        template: &img.vm_template,
        image: &img.name,
        extra: vec![("image_name".into(), Value::Str(img.name.clone()))],
        xl_template: None,
    };
    match render::render(settings::Format::Xl, &req) {
        Ok(text) => {
            // One `key = value` per line: a value never breaks out of its line.
            for line in text.lines() {
                let t = line.trim();
                if t.is_empty() || t.starts_with('#') {
                    continue;
                }
                let key = t.split(" = ").next().unwrap_or("");
                if !subst::is_name(key) || !t.contains(" = ") {
                    return fail(format!("an xl line that is not `key = value`: {line:?}"));
                }
            }
        }
        Err(d) => check_reported(&d, "xl rendering")?,
    }
    let xm = render::render(settings::Format::Xm, &req).map_err(|d| d.render())?;
    // The xm file is Python: it must load, and hold the values that were resolved.
    let loaded = ConfFile::from_source(SourceFile::new("web1.xm", xm.clone()), &host())
        .map_err(|d| format!("the xm output does not load:\n{}\n{xm}", d.render()))?;
    for e in resolved.vm.iter().filter(|e| !e.computed) {
        if let Some(v) = loaded.values.get(&e.key) {
            if v.repr() != e.value.repr() {
                return fail(format!(
                    "xm holds `{} = {}` but resolution gave {}",
                    e.key,
                    v.repr(),
                    e.value.repr()
                ));
            }
        }
    }
    Ok(Some(xm))
}

/// Bytes as `--set`/`--vm-set` arguments: NUL-separated records `s:KEY=VALUE` (for
/// `--set`) or `v:KEY=VALUE` (for `--vm-set`). Each is split as the command line does, then
/// both shipped images are resolved and rendered with them (see `resolve_and_render`).
pub fn set_values(data: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(data);
    let mut over = Overrides::default();
    for rec in text.split(char::from(SEP)) {
        let (vm, arg) = match rec.split_at_checked(2) {
            Some(("s:", a)) => (false, a),
            Some(("v:", a)) => (true, a),
            _ => continue,
        };
        // As clap would: a malformed assignment is a usage error before anything runs.
        let Ok(kv) = resolve::parse_assignment(arg) else {
            continue;
        };
        if vm {
            over.vm_set.push(kv);
        } else {
            over.set.push(kv);
        }
    }
    let home = tempfile::tempdir().map_err(|e| e.to_string())?;
    let settings = default_settings(home.path());
    for name in ["Fedora_Core_Install", "Linux_CD_Install"] {
        resolve_and_render(name, &settings, &over)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// `image edit`

/// Bytes as `KEY=VALUE`, NUL, then an `image.conf`. The image (that file plus a fixed
/// template) is edited as `image edit --set KEY=VALUE` does. Accepted: the written file loads,
/// the key has the value asked for, every other key is still there, the bytes changed in
/// one place only and the template not at all. Refused: nothing was written.
pub fn image_edit(data: &[u8]) -> Result<(), String> {
    let Some(sep) = data.iter().position(|&b| b == SEP) else {
        return Ok(());
    };
    let Ok(arg) = std::str::from_utf8(&data[..sep]) else {
        return Ok(());
    };
    let conf = &data[sep + 1..];
    let Ok((key, raw)) = resolve::parse_assignment(arg) else {
        return Ok(());
    };
    let value = resolve::parse_cli_value(&raw);
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let img = dir.path().join("Img");
    std::fs::create_dir(&img).map_err(|e| e.to_string())?;
    let template = b"name = ''\nmemory = 256\n";
    std::fs::write(img.join("image.conf"), conf).map_err(|e| e.to_string())?;
    std::fs::write(img.join("vm_conf.template"), template).map_err(|e| e.to_string())?;
    let settings = default_settings(dir.path());
    let before = Image::load("Img", &img, &host()).ok();
    let req = edit::Request {
        image: vec![Change::Set(key.clone(), value.clone())],
        vm: Vec::new(),
        force: false,
    };
    let edits = match edit::plan_image(&img, Path::new("Img"), &req, &settings, &host()) {
        Ok(e) => e,
        Err(d) => {
            check_reported(&d, "an edit")?;
            if std::fs::read(img.join("image.conf")).ok().as_deref() != Some(conf) {
                return fail("a refused edit changed image.conf");
            }
            return Ok(());
        }
    };
    let Some(before) = before else {
        return fail("an edit of an image that does not load was accepted");
    };
    edit::write_image(&img, &edits).map_err(|d| d.render())?;
    if std::fs::read(img.join("vm_conf.template")).ok().as_deref() != Some(&template[..]) {
        return fail("editing image.conf changed vm_conf.template");
    }
    let after = Image::load("Img", &img, &host())
        .map_err(|d| format!("the edited image does not load:\n{}", d.render()))?;
    match after.image_conf.values.get(&key) {
        Some(v) if v.repr() == value.repr() => {}
        other => {
            return fail(format!(
                "`{key}` is {:?} after setting it to {}",
                other.map(Value::repr),
                value.repr()
            ));
        }
    }
    // Other keys keep existing (a key that only an `if` on the edited value defines may
    // come or go: not checked then).
    let conditional = String::from_utf8_lossy(conf).contains("if");
    for b in before
        .image_conf
        .values
        .bindings
        .iter()
        .filter(|_| !conditional)
    {
        if after.image_conf.values.get(&b.key).is_none() {
            return fail(format!("the edit of `{key}` lost `{}`", b.key));
        }
    }
    for b in after
        .image_conf
        .values
        .bindings
        .iter()
        .filter(|_| !conditional)
    {
        if b.key != key && before.image_conf.values.get(&b.key).is_none() {
            return fail(format!("the edit of `{key}` added `{}`", b.key));
        }
    }
    let new = std::fs::read(img.join("image.conf")).map_err(|e| e.to_string())?;
    let prefix = conf.iter().zip(&new).take_while(|(a, b)| a == b).count();
    let suffix = conf[prefix..]
        .iter()
        .rev()
        .zip(new[prefix..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let removed = String::from_utf8_lossy(&conf[prefix..conf.len() - suffix]).replace("\r\n", "\n");
    // The one changed place lies inside the old value's text, or is an insertion (a line
    // appended at the end); an unchanged value leaves the bytes alone.
    let applied = edits
        .iter()
        .flat_map(|e| &e.changes)
        .find(|a| a.key == key)
        .ok_or("the edit does not report the key")?;
    let ok = match applied.action {
        edit::Action::Changed => applied.old.as_deref().is_some_and(|o| o.contains(&removed)),
        edit::Action::Added => removed.is_empty(),
        edit::Action::Unchanged => new == conf,
        edit::Action::Removed => false,
    };
    if !ok {
        return fail(format!(
            "the edit of `{key}` ({:?}, old {:?}) changed more than its value: removed {removed:?}",
            applied.action, applied.old
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The store's `image_store.conf`

/// Bytes as a store's `image_store.conf` (Python syntax). The store still opens (a broken
/// file is reported and the defaults apply), every error names the file and a line, and no
/// excluded directory is listed as an image.
pub fn store_conf(data: &[u8]) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let root = dir.path().join("store");
    small_store(&root);
    for name in ["common", "example", "custom_scripts", "Other"] {
        std::fs::create_dir_all(root.join(name)).map_err(|e| e.to_string())?;
    }
    std::fs::write(root.join("image_store.conf"), data).map_err(|e| e.to_string())?;
    let (store, diags) =
        Store::open(&root).map_err(|d| format!("the store does not open:\n{}", d.render()))?;
    let at = format!("--> {}:", root.join("image_store.conf").display());
    for d in diags.errors() {
        let r = d.render();
        let located = r
            .find(&at)
            .and_then(|i| r[i + at.len()..].chars().next())
            .is_some_and(|c| c.is_ascii_digit());
        if !located {
            return fail(format!(
                "an image_store.conf error without file and line:\n{r}"
            ));
        }
    }
    let entries = store.entries().map_err(|e| e.to_string())?;
    if let Some(e) = entries
        .iter()
        .find(|e| store.conf.excludes.contains(&e.name))
    {
        return fail(format!(
            "the excluded directory `{}` is listed as an image",
            e.name
        ));
    }
    Ok(())
}

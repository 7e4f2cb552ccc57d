//! Resolution (spec §3.3-§3.4, §4): the one place that decides what each option's final value
//! is and where it came from. Built-in fallbacks < the image's files < site variables <
//! `--set` / `--vm-set`; then substitution, image.conf first, then the VM template.

use crate::diagnostic::SourceFile;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::eval::{self, Limits};
use crate::host::Host;
use crate::image::{ConfFile, Image, OPTION_LISTS};
use crate::settings::Settings;
use crate::subst::{self, Unresolved, Var, Vars};
use crate::syntax::{self, ExprKind, StmtKind, UnaryOp};
use crate::value::Value;
use std::path::PathBuf;

/// VM template keys that stay editable even when `customizable_options` restricts the rest,
/// as ConVirt's dialog had dedicated widgets for them (spec §4.2).
pub const BASIC_VM_KEYS: &[&str] = &["name", "memory", "vcpus", "disk", "vif"];

/// Variables convirt defines (spec §3.2) and the built-in fallbacks (spec §3.4).
pub const PREDEFINED: &[&str] = &[
    "IMAGE_STORE",
    "IMAGE_NAME",
    "IMAGE_LOCATION",
    "VM_NAME",
    "SERVER_NAME",
    "DEFAULT_BRIDGE",
    "AUTOGEN_MAC",
];
pub const FALLBACKS: &[&str] = crate::settings::MACHINE_VARIABLES;

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
// `Detected`: found on the host (the default bridge, `crate::bridge`).
pub enum Origin {
    Builtin,
    Image { file: String, line: usize },
    Computed { file: String, line: usize },
    Site { file: Option<String> },
    CommandLine,
    Detected { what: String },
}

impl Origin {
    /// A value from the site settings (`[variables]`), naming the settings file.
    fn site(settings: &Settings) -> Origin {
        Origin::Site {
            file: settings
                .config_file
                .as_ref()
                .map(|p| p.display().to_string()),
        }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Builtin => f.write_str("built-in"),
            Origin::Image { file, line } => write!(f, "{file}:{line}"),
            Origin::Computed { file, line } => write!(f, "computed, {file}:{line}"),
            Origin::Site { file: Some(p) } => write!(f, "site ({p})"),
            Origin::Site { file: None } => f.write_str("site"),
            Origin::CommandLine => f.write_str("command line"),
            Origin::Detected { what } => f.write_str(what),
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Entry {
    pub key: String,
    pub value: Value,
    pub origin: Origin,
    pub computed: bool,
    pub customizable: bool,
}

/// Everything resolution needs besides the image.
#[derive(Debug, Clone)]
pub struct Context {
    pub vm_name: Option<String>,
    pub host: Host,
    /// The store path that `$IMAGE_STORE` names.
    pub store_path: PathBuf,
    pub settings: Settings,
}

/// `--set` / `--vm-set` values, raw from the command line.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub set: Vec<(String, String)>,
    pub vm_set: Vec<(String, String)>,
}

/// Splits `KEY=VALUE`.
pub fn parse_assignment(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))?;
    let k = k.trim();
    // The same rule as `image edit`: a keyword (`if`) or `__x` would be written into an xm
    // file that Python, and convirt, then cannot read (found by tests/fuzz_inputs).
    crate::syntax::check_key(k)?;
    Ok((k.to_string(), v.to_string()))
}

/// A command-line value (spec §4.3): a Python literal when it is one, else the plain text.
pub fn parse_cli_value(text: &str) -> Value {
    let src = format!("v = {text}\n");
    let file = SourceFile::new("<command line>", src);
    let Ok(module) = syntax::parse(&file) else {
        return Value::Str(text.to_string());
    };
    let [stmt] = module.stmts.as_slice() else {
        return Value::Str(text.to_string());
    };
    let StmtKind::Assign { value, .. } = &stmt.kind else {
        return Value::Str(text.to_string());
    };
    if !is_literal(value) {
        return Value::Str(text.to_string());
    }
    let (ev, d) = eval::evaluate(&file, &module, &Host::local(None), Limits::default());
    match ev.get("v") {
        Some(v) if !d.has_errors() => v.clone(),
        _ => Value::Str(text.to_string()),
    }
}

fn is_literal(e: &syntax::Expr) -> bool {
    match &e.kind {
        ExprKind::None
        | ExprKind::Bool(_)
        | ExprKind::Int(_)
        | ExprKind::Float(_)
        | ExprKind::Str(_) => true,
        ExprKind::List(v) | ExprKind::Tuple(v) => v.iter().all(is_literal),
        ExprKind::Dict(p) => p.iter().all(|(k, v)| is_literal(k) && is_literal(v)),
        ExprKind::Unary(UnaryOp::Neg | UnaryOp::Pos, inner) => {
            matches!(inner.kind, ExprKind::Int(_) | ExprKind::Float(_))
        }
        _ => false,
    }
}

/// The result: both files' final values, in file order, then the added keys.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Resolved {
    pub image: Vec<Entry>,
    pub vm: Vec<Entry>,
    #[serde(skip)]
    pub warnings: Diagnostics,
}

impl Resolved {
    pub fn image_value(&self, key: &str) -> Option<&Value> {
        self.image.iter().find(|e| e.key == key).map(|e| &e.value)
    }
    pub fn vm_value(&self, key: &str) -> Option<&Value> {
        self.vm.iter().find(|e| e.key == key).map(|e| &e.value)
    }
}

/// The effective computed keys of a file (spec §4.1).
pub fn computed_keys(file: &ConfFile, settings: &Settings) -> Vec<String> {
    let mut keys = file.computed.clone();
    for k in &settings.default_computed_options {
        if !keys.contains(k) {
            keys.push(k.clone());
        }
    }
    keys
}

/// Which keys of a file `--set` may change: `None` means any key.
fn allowed_keys(file: &ConfFile, vm: bool) -> Option<Vec<String>> {
    let list = file.customizable.as_ref()?;
    let mut keys = list.clone();
    if vm {
        for k in BASIC_VM_KEYS {
            if !keys.iter().any(|x| x == k) {
                keys.push(k.to_string());
            }
        }
    }
    Some(keys)
}

/// A file's options as entries with their origins, before any override or substitution.
pub fn file_entries(file: &ConfFile, computed: &[String], vm: bool) -> Vec<Entry> {
    let allowed = allowed_keys(file, vm);
    let name = file.path().display().to_string();
    file.options()
        .map(|b| {
            let line = b
                .sites
                .last()
                .map(|s| file.source.line_col(s.stmt.start).0)
                .unwrap_or(0);
            let is_computed = computed.contains(&b.key);
            Entry {
                key: b.key.clone(),
                value: b.value.clone(),
                origin: if is_computed {
                    Origin::Computed {
                        file: name.clone(),
                        line,
                    }
                } else {
                    Origin::Image {
                        file: name.clone(),
                        line,
                    }
                },
                computed: is_computed,
                customizable: !is_computed && allowed.as_ref().is_none_or(|a| a.contains(&b.key)),
            }
        })
        .collect()
}

fn upsert(entries: &mut Vec<Entry>, key: &str, value: Value, origin: Origin) {
    match entries.iter_mut().find(|e| e.key == key) {
        Some(e) => {
            e.value = value;
            e.origin = origin;
        }
        None => entries.push(Entry {
            key: key.to_string(),
            value,
            origin,
            computed: false,
            customizable: true,
        }),
    }
}

fn apply_override(
    entries: &mut Vec<Entry>,
    file: &ConfFile,
    vm: bool,
    key: &str,
    raw: &str,
    diags: &mut Diagnostics,
) {
    let flag = if vm { "--vm-set" } else { "--set" };
    let what = file.path().display();
    if OPTION_LISTS.contains(&key) {
        diags.push(
            Diagnostic::error(format!("`{key}` cannot be changed with {flag}"))
                .with_hint("it is part of the image; change it with `convirt image edit`"),
        );
        return;
    }
    if let Some(e) = entries.iter().find(|e| e.key == key) {
        if e.computed {
            diags.push(
                Diagnostic::error(format!("`{key}` is computed for the target host and cannot be changed with {flag}"))
                    .with_hint("computed options are listed in `computed_options` or the settings' `default_computed_options`"),
            );
            return;
        }
    }
    if let Some(allowed) = allowed_keys(file, vm) {
        if !allowed.iter().any(|k| k == key) {
            let mut shown = allowed.clone();
            shown.sort();
            diags.push(
                Diagnostic::error(format!("`{key}` is not customizable in `{what}`"))
                    .with_hint(format!("keys that {flag} may change: {}", shown.join(", "))),
            );
            return;
        }
    }
    upsert(entries, key, parse_cli_value(raw), Origin::CommandLine);
}

/// Resolves an image for one VM (or for none: `$VM_NAME` then stays as written).
pub fn resolve(
    image: &Image,
    ctx: &Context,
    over: &Overrides,
    strict: bool,
) -> Result<Resolved, Diagnostics> {
    let settings = &ctx.settings;
    let mut diags = Diagnostics::default();
    let img_computed = computed_keys(&image.image_conf, settings);
    let vm_computed = computed_keys(&image.vm_template, settings);
    let mut img = file_entries(&image.image_conf, &img_computed, false);
    let mut vm = file_entries(&image.vm_template, &vm_computed, true);

    // Site variables override a VM key, else an image key, else join image.conf (spec §3.4).
    let site_origin = Origin::site(settings);
    for (k, v) in &settings.variables {
        if vm.iter().any(|e| &e.key == k) {
            upsert(&mut vm, k, v.clone(), site_origin.clone());
        } else {
            upsert(&mut img, k, v.clone(), site_origin.clone());
        }
    }
    for (k, raw) in &over.set {
        apply_override(&mut img, &image.image_conf, false, k, raw, &mut diags);
    }
    for (k, raw) in &over.vm_set {
        apply_override(&mut vm, &image.vm_template, true, k, raw, &mut diags);
    }
    check_forbidden_keys(image, &img, &vm, &mut diags);
    if diags.has_errors() {
        return Err(diags);
    }

    // Built-in fallbacks, unless the image or the site sets them.
    let fallback = |k: &str| builtin_fallback(settings, k);
    for k in FALLBACKS {
        if !img.iter().any(|e| e.key == *k) {
            img.push(Entry {
                key: k.to_string(),
                value: Value::Str(fallback(k)),
                origin: match *k {
                    "DEFAULT_BRIDGE" => Origin::Detected {
                        what: crate::bridge::local().origin.clone(),
                    },
                    _ => Origin::Builtin,
                },
                computed: false,
                customizable: true,
            });
        }
    }

    // image.conf sees the predefined variables and the fallbacks.
    let mut image_vars = Vars::default();
    for k in FALLBACKS {
        let v = img
            .iter()
            .find(|e| e.key == *k)
            .map(|e| e.value.to_text())
            .unwrap_or_else(|| fallback(k));
        image_vars.set_text(k, v);
    }
    set_predefined(&mut image_vars, ctx, &image.name);
    let mut unresolved: Vec<(bool, String, Unresolved)> = Vec::new();
    for e in img.iter_mut() {
        let mut u = Vec::new();
        e.value = subst::substitute(&e.value, &image_vars, &mut u);
        unresolved.extend(u.into_iter().map(|u| (false, e.key.clone(), u)));
    }

    // The VM template sees those and every image.conf key; predefined names win.
    let mut vm_vars = Vars::default();
    for e in &img {
        vm_vars.set_text(&e.key, e.value.to_text());
    }
    set_predefined(&mut vm_vars, ctx, &image.name);
    if let Some(vmn) = &ctx.vm_name {
        upsert(
            &mut vm,
            "name",
            Value::Str(vmn.clone()),
            Origin::CommandLine,
        );
    }
    for e in vm.iter_mut() {
        let mut u = Vec::new();
        e.value = subst::substitute(&e.value, &vm_vars, &mut u);
        unresolved.extend(u.into_iter().map(|u| (true, e.key.clone(), u)));
    }

    if let Some(f) = image_vars.failure().or_else(|| vm_vars.failure()) {
        diags.push(Diagnostic::error(f));
        return Err(diags);
    }
    check_absolute_dirs(image, &img, &mut diags);
    if diags.has_errors() {
        return Err(diags);
    }

    // Unresolved references that look like variables (spec §3.5).
    let mut known: Vec<String> = vm_vars.names().map(String::from).collect();
    known.extend(PREDEFINED.iter().map(|s| s.to_string()));
    let mut seen = std::collections::HashSet::new();
    for (in_vm, key, u) in unresolved {
        if PREDEFINED.contains(&u.name.as_str())
            || !seen.insert((in_vm, key.clone(), u.name.clone()))
        {
            continue;
        }
        let Some(suggestion) =
            subst::looks_like_variable(&u.name, known.iter().map(String::as_str))
        else {
            continue;
        };
        let file = if in_vm {
            &image.vm_template
        } else {
            &image.image_conf
        };
        let msg = format!(
            "`${}` in `{key}` is not a known variable and stays as written",
            u.name
        );
        let mut d = if strict {
            Diagnostic::error(msg)
        } else {
            Diagnostic::warning(msg)
        };
        d = match file.site_span(&key) {
            Some(span) if file.values.binding(&key).is_some() => d.at(&file.source, span),
            _ => d.in_file(file.path()),
        };
        d = match suggestion {
            Some(s) => d.with_hint(format!("did you mean `${s}`?")),
            None => d.with_hint("define it in image.conf or the settings' [variables], or write `$$` for a literal `$`"),
        };
        diags.push(d);
    }
    if diags.has_errors() {
        return Err(diags);
    }
    Ok(Resolved {
        image: img,
        vm,
        warnings: diags,
    })
}

/// The tool variables the shipped `common/defs` sets: a config key of one of these names
/// would replace the tool an image's script runs (often as root).
pub const SHIPPED_TOOL_VARS: &[&str] = &[
    "GREP",
    "SED",
    "AWK",
    "DD",
    "CP",
    "MV",
    "MKDIR",
    "MKTEMP",
    "RMDIR",
    "DIRNAME",
    "TRUNCATE",
    "CHMOD",
    "TAR",
    "UNZIP",
    "GZIP",
    "GUNZIP",
    "BZIP2",
    "BUNZIP",
    "XZ",
    "CURL",
    "WGET",
    "MOUNT",
    "UMOUNT",
    "MKE2FS",
    "MKFS_EXT4",
    "DEBUGFS",
    "TUNE2FS",
    "MKSWAP",
    "QEMU_IMG",
    "LVCREATE",
    "LVREMOVE",
    "LVDISPLAY",
    "LVS",
    "LVM_BASE",
    "DD_BLOCK_SIZE",
];

/// Why a config key may not be set, if it may not: a variable the shell, the dynamic loader
/// or a shell started by a script treats specially, or a tool variable of `common/defs`
/// (`defs_vars`: the names the store's own `common/defs` sets).
pub fn forbidden_key(key: &str, defs_vars: &[String]) -> Option<&'static str> {
    const SPECIAL: &[&str] = &[
        "PATH",
        "IFS",
        "ENV",
        "BASH_ENV",
        "SHELLOPTS",
        "BASHOPTS",
        "CDPATH",
        "GLOBIGNORE",
        "PS4",
        "PROMPT_COMMAND",
        "HOME",
        "SHELL",
        "TMPDIR",
        "POSIXLY_CORRECT",
        "EXECIGNORE",
        "HOSTALIASES",
        "LOCALDOMAIN",
        "RES_OPTIONS",
        "GCONV_PATH",
        "NLSPATH",
        "PYTHONPATH",
        "PERL5LIB",
        "PERL5OPT",
        "GIT_EXEC_PATH",
    ];
    if SPECIAL.contains(&key)
        || key.starts_with("LD_")
        || key.starts_with("BASH_FUNC_")
        || key.starts_with("MALLOC_")
        || key.starts_with("CONVIRT_")
    {
        return Some("a variable the shell or the dynamic loader treats specially");
    }
    if SHIPPED_TOOL_VARS.contains(&key) || defs_vars.iter().any(|v| v == key) {
        return Some(
            "a tool variable of `common/defs`: it would replace the program the image's scripts run",
        );
    }
    None
}

/// The variables a store's `common/defs` sets (`_defs_find_into NAME tool` and plain
/// `NAME=value` lines).
pub fn defs_vars(store_root: &std::path::Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(store_root.join("common/defs")) else {
        return vec![];
    };
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    };
    let mut out = Vec::new();
    for line in text.lines() {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix("_defs_find_into ") {
            if let Some(n) = rest.split_whitespace().next().filter(|n| name_ok(n)) {
                out.push(n.to_string());
            }
        } else if let Some((n, _)) = t.split_once('=')
            && name_ok(n)
        {
            out.push(n.to_string());
        }
    }
    out
}

/// Refuses a key of either file (or of `--set`, `--vm-set`, the site's variables) that
/// `forbidden_key` names, with where it was set (issue #18).
fn check_forbidden_keys(image: &Image, img: &[Entry], vm: &[Entry], diags: &mut Diagnostics) {
    let defs = image.dir.parent().map(defs_vars).unwrap_or_default();
    for (in_vm, e) in img
        .iter()
        .map(|e| (false, e))
        .chain(vm.iter().map(|e| (true, e)))
    {
        let Some(why) = forbidden_key(&e.key, &defs) else {
            continue;
        };
        let key = &e.key;
        let file = if in_vm {
            &image.vm_template
        } else {
            &image.image_conf
        };
        let mut d = Diagnostic::error(format!("`{key}` may not be set by an image or a VM: {why}"));
        d = match &e.origin {
            Origin::CommandLine => d.with_hint(format!(
                "drop `{} {key}=...`",
                if in_vm { "--vm-set" } else { "--set" }
            )),
            Origin::Site { file: Some(p) } => {
                d.with_hint(format!("remove `{key}` from [variables] in `{p}`"))
            }
            Origin::Image { .. } | Origin::Computed { .. } => match file.site_span(key) {
                Some(span) if file.values.binding(key).is_some() => {
                    d.at(&file.source, span).with_hint(format!(
                        "rename `{key}`; scripts find their tools themselves"
                    ))
                }
                _ => d.in_file(file.path()),
            },
            _ => d,
        };
        diags.push(d);
    }
}

/// The directory variables (`VM_DISKS_DIR`, `VM_CONF_DIR`, `VM_CACHE_DIR`) must be absolute
/// paths after substitution: a relative one would land under whatever directory convirt
/// runs in (issue #18).
fn check_absolute_dirs(image: &Image, img: &[Entry], diags: &mut Diagnostics) {
    for e in img
        .iter()
        .filter(|e| FALLBACKS[..3].contains(&e.key.as_str()))
    {
        let v = e.value.to_text();
        if v.starts_with('/') {
            continue;
        }
        let key = &e.key;
        let mut d = Diagnostic::error(format!("`{key}` must be an absolute path, not `{v}`"));
        d = match &e.origin {
            Origin::Image { .. } => match image.image_conf.site_span(key) {
                Some(span) if image.image_conf.values.binding(key).is_some() => {
                    d.at(&image.image_conf.source, span)
                }
                _ => d.in_file(image.image_conf.path()),
            },
            Origin::Site { file: Some(p) } => {
                d.with_hint(format!("set it in `{p}` to a path beginning with `/`"))
            }
            Origin::CommandLine => d.with_hint("give a path beginning with `/`"),
            _ => d,
        };
        diags.push(d);
    }
}

/// The built-in fallback of a key of `FALLBACKS` (spec §3.4), used when neither the image
/// nor the site sets it.
pub fn builtin_fallback(settings: &Settings, key: &str) -> String {
    match key {
        "VM_DISKS_DIR" => settings.vm_disks_dir.display().to_string(),
        "VM_CONF_DIR" => settings.vm_conf_dir.display().to_string(),
        "VM_CACHE_DIR" => settings.cache_dir.display().to_string(),
        // DEFAULT_BRIDGE: the host's first Linux bridge, else xenbr0 (crate::bridge).
        _ => crate::bridge::local().name.clone(),
    }
}

/// One config file alone (`conf eval`), resolved the way provisioning resolves an image's
/// files: the file's options (site variables replace the ones it defines), then
/// substitution with the site variables, the fallbacks (the file's value of a fallback key,
/// else the site's, else the built-in one, spec §3.4) and the predefined variables. `$IMAGE_NAME` is the file's directory name;
/// with a VM name, `$VM_NAME` is set and the file's `name` option becomes it.
pub fn resolve_file(file: &ConfFile, ctx: &Context) -> Result<Vec<Entry>, Diagnostics> {
    let settings = &ctx.settings;
    let computed = computed_keys(file, settings);
    let mut entries = file_entries(file, &computed, false);
    let site_origin = Origin::site(settings);
    for (k, v) in &settings.variables {
        if entries.iter().any(|e| &e.key == k) {
            upsert(&mut entries, k, v.clone(), site_origin.clone());
        }
    }
    // Site variables are visible as they are to a VM template during provisioning; a
    // fallback comes from the file (already replaced by the site's value, as provisioning
    // does), else the site, else the built-in value.
    let mut vars = Vars::default();
    for (k, v) in &settings.variables {
        vars.set_text(k, v.to_text());
    }
    for k in FALLBACKS {
        let own = entries
            .iter()
            .find(|e| e.key == *k)
            .map(|e| e.value.to_text());
        if let Some(v) = own {
            vars.set_text(k, v);
        } else if !vars.contains(k) {
            vars.set_text(k, builtin_fallback(settings, k));
        }
    }
    set_predefined(&mut vars, ctx, &file_image_name(file.path()));
    for e in entries.iter_mut() {
        e.value = subst::substitute(&e.value, &vars, &mut Vec::new());
    }
    if let Some(f) = vars.failure() {
        return Err(Diagnostic::error(f).into());
    }
    if let Some(vmn) = &ctx.vm_name {
        if let Some(e) = entries.iter_mut().find(|e| e.key == "name") {
            e.value = Value::Str(vmn.clone());
            e.origin = Origin::CommandLine;
        }
    }
    Ok(entries)
}

/// The image a lone file belongs to: the name of the directory holding it (empty when
/// there is none).
pub fn file_image_name(path: &std::path::Path) -> String {
    path.canonicalize()
        .ok()
        .and_then(|p| {
            p.parent()
                .and_then(|d| d.file_name())
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_default()
}

/// The predefined variables of spec §3.2; they win over image keys of the same name.
fn set_predefined(dst: &mut Vars, ctx: &Context, image: &str) {
    dst.set_text("IMAGE_STORE", ctx.store_path.display().to_string());
    dst.set_text("IMAGE_NAME", image);
    dst.set_text("IMAGE_LOCATION", image);
    dst.set_text("SERVER_NAME", &ctx.host.nodename);
    dst.set("AUTOGEN_MAC", Var::FreshMac);
    if let Some(v) = &ctx.vm_name {
        dst.set_text("VM_NAME", v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_values_are_literals_or_text() {
        let cases = [
            ("20000", Value::Int(20000)),
            ("'x'", Value::Str("x".into())),
            ("[1, 2]", Value::List(vec![Value::Int(1), Value::Int(2)])),
            ("True", Value::Bool(true)),
            ("-3", Value::Int(-3)),
            ("bob", Value::Str("bob".into())),
            ("1+2", Value::Str("1+2".into())),
            (
                "open('/etc/passwd')",
                Value::Str("open('/etc/passwd')".into()),
            ),
            (
                "$1$9qAFryp3$XmvqcFN/CJG4AC7jgyVE8",
                Value::Str("$1$9qAFryp3$XmvqcFN/CJG4AC7jgyVE8".into()),
            ),
            ("", Value::Str(String::new())),
        ];
        for (raw, want) in cases {
            assert_eq!(parse_cli_value(raw), want, "{raw}");
        }
    }

    /// One file alone: its own fallback value wins over the built-in one, a site variable
    /// replaces a key the file defines and is seen by substitution, the predefined variables
    /// come from the context, `name` becomes the VM.
    #[test]
    fn a_lone_file_resolves_like_an_image_conf() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("Web");
        std::fs::create_dir_all(&img).unwrap();
        let path = img.join("vm_conf.template");
        std::fs::write(
            &path,
            "VM_DISKS_DIR = '/d'\nname = ''\nmemory = 256\ndisk = ['file:$VM_DISKS_DIR/$VM_NAME.img']\nvif = ['bridge=$DEFAULT_BRIDGE']\nwhere = '$IMAGE_STORE/$IMAGE_NAME on $SERVER_NAME'\n",
        )
        .unwrap();
        let env = crate::settings::Env {
            vars: [("HOME".to_string(), dir.path().display().to_string())].into(),
            is_root: false,
        };
        let mut settings = Settings::load(&crate::settings::Overrides::default(), &env).unwrap();
        settings.variables = vec![
            ("memory".into(), Value::Int(512)),
            ("DEFAULT_BRIDGE".into(), Value::Str("br-lan".into())),
        ];
        let host = Host::local(None);
        let file = ConfFile::load(&path, &host).unwrap();
        let ctx = Context {
            vm_name: Some("web1".into()),
            host: host.clone(),
            store_path: PathBuf::from("/srv/store"),
            settings,
        };
        let entries = resolve_file(&file, &ctx).unwrap();
        let get = |k: &str| entries.iter().find(|e| e.key == k).unwrap();
        assert_eq!(
            get("disk").value,
            Value::List(vec![Value::Str("file:/d/web1.img".into())])
        );
        assert_eq!(
            get("vif").value,
            Value::List(vec![Value::Str("bridge=br-lan".into())])
        );
        assert_eq!(
            get("where").value,
            Value::Str(format!("/srv/store/Web on {}", host.nodename))
        );
        assert_eq!(get("memory").value, Value::Int(512));
        assert!(matches!(get("memory").origin, Origin::Site { .. }));
        assert_eq!(get("name").value, Value::Str("web1".into()));
        assert_eq!(get("name").origin, Origin::CommandLine);
        // Nothing is added that the file does not define.
        assert_eq!(entries.len(), 6);
    }

    #[test]
    fn assignment_parsing() {
        assert_eq!(
            parse_assignment("a=b=c").unwrap(),
            ("a".into(), "b=c".into())
        );
        assert!(parse_assignment("nokey").is_err());
        assert!(parse_assignment("1x=2").is_err());
    }
}

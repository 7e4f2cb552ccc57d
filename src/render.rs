//! Rendering a resolved VM config (spec §6.2): `xl` (default) from a tera template over the
//! resolved values, holding only `KEY = VALUE` lines that Xen's own parser accepts; `xm`
//! keeping the template's lines, comments, imports, `if` blocks and computed expressions,
//! with substituted literal values.

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::image::{ConfFile, OPTION_LISTS};
use crate::resolve::Entry;
use crate::settings::Format;
use crate::value::Value;

/// The built-in `xl` template. A store may replace it with `common/templates/xl.cfg.tera`.
pub const XL_TEMPLATE: &str = include_str!("xl.cfg.tera");
/// Where a store keeps its own `xl` template, relative to the store.
pub const XL_TEMPLATE_OVERRIDE: &str = "common/templates/xl.cfg.tera";

/// The store's own `xl` template, when it has one.
pub fn store_xl_template(store_root: &std::path::Path) -> Option<String> {
    std::fs::read_to_string(store_root.join(XL_TEMPLATE_OVERRIDE)).ok()
}

/// Keys `xl.cfg(5)` of Xen 4.17 knows. Everything else is bookkeeping and written as a
/// comment, so `xl` sees a clean file.
const XL_KEYS: &[&str] = &[
    "name",
    "type",
    "pool",
    "uuid",
    "seclabel",
    "init_seclabel",
    "max_grant_frames",
    "max_maptrack_frames",
    "max_grant_version",
    "nomigrate",
    "driver_domain",
    "device_tree",
    "passthrough",
    "vpmu",
    "memory",
    "maxmem",
    "vcpus",
    "maxvcpus",
    "cpus",
    "cpus_soft",
    "cpu_weight",
    "cap",
    "bootloader",
    "bootloader_args",
    "kernel",
    "ramdisk",
    "cmdline",
    "extra",
    "root",
    "firmware",
    "firmware_override",
    "acpi",
    "acpi_s3",
    "acpi_s4",
    "acpi_laptop_slate",
    "apic",
    "pae",
    "hap",
    "oos",
    "shadow_memory",
    "hpet",
    "localtime",
    "rtc_timeoffset",
    "timer_mode",
    "viridian",
    "nestedhvm",
    "altp2m",
    "boot",
    "bios",
    "bios_path_override",
    "smbios_firmware",
    "acpi_firmware",
    "xen_platform_pci",
    "vga",
    "stdvga",
    "videoram",
    "vnc",
    "vnclisten",
    "vncdisplay",
    "vncunused",
    "vncpasswd",
    "keymap",
    "sdl",
    "opengl",
    "display",
    "xauthority",
    "spice",
    "spicehost",
    "spiceport",
    "spicetls_port",
    "spicedisable_ticketing",
    "spicepasswd",
    "spiceagent_mouse",
    "spicevdagent",
    "spice_clipboard_sharing",
    "spiceusbredirection",
    "serial",
    "soundhw",
    "usb",
    "usbdevice",
    "usbctrl",
    "usbdev",
    "usbversion",
    "pci",
    "pci_permissive",
    "pci_msitranslate",
    "pci_seize",
    "pci_power_mgmt",
    "rdm",
    "rdm_mem_boundary",
    "gfx_passthru",
    "ioports",
    "irqs",
    "iomem",
    "device_model_version",
    "device_model_override",
    "device_model_stubdomain_override",
    "device_model_args",
    "device_model_args_pv",
    "device_model_args_hvm",
    "device_model_user",
    "stubdomain_kernel",
    "stubdomain_ramdisk",
    "stubdomain_memory",
    "on_poweroff",
    "on_reboot",
    "on_watchdog",
    "on_crash",
    "on_soft_reset",
    "disk",
    "vif",
    "vfb",
    "vkb",
    "channel",
    "vtpm",
    "p9",
    "pvcalls",
    "vdispl",
    "vsnd",
    "dtdev",
    "e820_host",
    "claim_mode",
    "max_event_channels",
    "tsc_mode",
    "cpuid",
    "gic_version",
    "vuart",
    "mca_caps",
    "msr_relaxed",
    "nographic",
    "hdtype",
    "vendor_device",
    "suppress_vmdesc",
    "dm_restrict",
    "vcpu_hard_affinity",
    "vcpu_soft_affinity",
    "node",
    "nodes",
    "vif2",
    "vscsi",
    "feature_flags",
    "trap_unmapped_accesses",
    "vmtrace_buf_kb",
];

/// What to render.
pub struct Request<'a> {
    /// The resolved VM config, in template order.
    pub entries: &'a [Entry],
    /// The template as written (for `xm`).
    pub template: &'a ConfFile,
    pub image: &'a str,
    /// Keys convirt adds (`uuid`, `image_name`, `image_conf`), appended when absent.
    pub extra: Vec<(String, Value)>,
    /// A store's own `xl` template, when it has one.
    pub xl_template: Option<String>,
}

pub fn render(format: Format, req: &Request) -> Result<String, Diagnostics> {
    match format {
        Format::Xl => render_xl(req),
        Format::Xm => Ok(render_xm(req)),
    }
}

#[derive(serde::Serialize)]
struct XlEntry {
    key: String,
    value: String,
}

fn all_values<'a>(req: &'a Request) -> Vec<(&'a str, &'a Value, bool)> {
    let mut out: Vec<(&str, &Value, bool)> = req
        .entries
        .iter()
        .filter(|e| !OPTION_LISTS.contains(&e.key.as_str()))
        .map(|e| (e.key.as_str(), &e.value, e.computed))
        .collect();
    for (k, v) in &req.extra {
        if !out.iter().any(|(x, _, _)| x == k) {
            out.push((k.as_str(), v, false));
        }
    }
    out
}

fn is_xl_key(key: &str) -> bool {
    static KEYS: std::sync::OnceLock<std::collections::HashSet<&'static str>> =
        std::sync::OnceLock::new();
    KEYS.get_or_init(|| XL_KEYS.iter().copied().collect())
        .contains(key)
}

/// The `xl` rendering: a mapping from the xm-era keys, then the template.
pub fn render_xl(req: &Request) -> Result<String, Diagnostics> {
    xl(req, true)
}

/// Everything `render_xl` checks (each key's mapping and value), without filling in the
/// template: what `image validate` needs when the store uses the built-in template, which
/// renders any entries that pass these checks.
pub fn check_xl(req: &Request) -> Result<(), Diagnostics> {
    if req.xl_template.is_some() {
        return render_xl(req).map(|_| ());
    }
    xl(req, false).map(|_| ())
}

fn xl(req: &Request, fill_template: bool) -> Result<String, Diagnostics> {
    let values = all_values(req);
    let get = |k: &str| values.iter().find(|(x, _, _)| *x == k).map(|(_, v, _)| *v);
    let hvm = ["builder", "type"]
        .iter()
        .any(|k| get(k).and_then(Value::as_str) == Some("hvm"));
    let mut entries: Vec<XlEntry> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let mut diags = Diagnostics::default();
    let has_type = get("type").is_some();
    let has_poweroff = get("on_poweroff").is_some();
    let name_of = |k: &str| req.template.path().display().to_string() + ": " + k;
    for &(orig, value, _) in &values {
        let mut key = orig;
        let note = |notes: &mut Vec<String>, why: &str| {
            // A secret is not written into a comment (issue #18).
            let shown = if crate::state::is_secret(orig, &value.to_text()) {
                crate::state::MASK.to_string()
            } else {
                value.repr()
            };
            notes.push(format!("{orig} = {shown}  ({why})"))
        };
        match key {
            "builder" if has_type => {
                note(&mut notes, "`type` is set");
                continue;
            }
            "builder" => {
                let t = match value.as_str() {
                    Some("hvm") => "hvm",
                    Some("generic") | Some("linux") | Some("pv") => "pv",
                    _ => {
                        diags.push(
                            Diagnostic::error(format!(
                                "`builder = {}` has no xl equivalent",
                                value.repr()
                            ))
                            .in_file(req.template.path())
                            .with_hint("use `builder = 'hvm'` or leave it out for a PV guest"),
                        );
                        continue;
                    }
                };
                entries.push(XlEntry {
                    key: "type".into(),
                    value: format!("\"{t}\""),
                });
                continue;
            }
            "on_shutdown" if has_poweroff => {
                note(&mut notes, "`on_poweroff` is set");
                continue;
            }
            "on_shutdown" => key = "on_poweroff",
            "device_model" => {
                note(
                    &mut notes,
                    "xm's qemu-dm path; xl picks its device model itself",
                );
                continue;
            }
            "kernel" if hvm && value.as_str().is_some_and(|s| s.ends_with("hvmloader")) => {
                note(&mut notes, "xl boots HVM guests with hvmloader by default");
                continue;
            }
            _ => {}
        }
        if !is_xl_key(key) {
            note(&mut notes, "not an xl.cfg key");
            continue;
        }
        match value {
            Value::None => {
                note(&mut notes, "no value");
                continue;
            }
            Value::Str(s) if s.is_empty() => {
                note(&mut notes, "empty; left out");
                continue;
            }
            _ => {}
        }
        match xl_value(value) {
            Ok(text) => entries.push(XlEntry {
                key: key.to_string(),
                value: text,
            }),
            Err(why) => diags.push(
                Diagnostic::error(format!(
                    "`{}` cannot be written for xl: {why}",
                    name_of(key)
                ))
                .with_hint("xl values are strings, numbers, 0/1 and lists of those"),
            ),
        }
    }
    if diags.has_errors() {
        return Err(diags);
    }
    if !fill_template {
        return Ok(String::new());
    }
    let name = get("name").map(Value::to_text).unwrap_or_default();
    let mut ctx = tera::Context::new();
    ctx.insert("name", &name);
    ctx.insert("image", req.image);
    ctx.insert("version", env!("CARGO_PKG_VERSION"));
    ctx.insert("kind", if hvm { "hvm" } else { "pv" });
    ctx.insert("entries", &entries);
    ctx.insert("notes", &notes);
    let source = req.xl_template.as_deref().unwrap_or(XL_TEMPLATE);
    let which = if req.xl_template.is_some() {
        XL_TEMPLATE_OVERRIDE
    } else {
        "built-in xl template"
    };
    render_template(source, &ctx).map_err(|e| {
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            src = s.source();
        }
        Diagnostics::from(Diagnostic::error(format!("cannot render `{which}`: {msg}")))
    })
}

thread_local! {
    /// The last template compiled, with its source: compiling costs far more than rendering,
    /// and a run renders many configs from the same template.
    static COMPILED: std::cell::RefCell<Option<(String, tera::Tera)>> =
        const { std::cell::RefCell::new(None) };
}

fn render_template(source: &str, ctx: &tera::Context) -> Result<String, tera::Error> {
    COMPILED.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(s, _)| s != source) {
            let mut tera = tera::Tera::default();
            tera.autoescape_on(vec![]);
            tera.add_raw_template("xl", source)?;
            *slot = Some((source.to_string(), tera));
        }
        let Some((_, tera)) = slot.as_ref() else {
            return Err(tera::Error::msg("the xl template is not compiled"));
        };
        tera.render("xl", ctx)
    })
}

/// One value in xl syntax.
pub fn xl_value(v: &Value) -> Result<String, String> {
    Ok(match v {
        Value::Bool(b) => (*b as u8).to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) if f.fract() == 0.0 && f.abs() < 9e15 => format!("{}", *f as i64),
        Value::Float(f) => format!("\"{f}\""),
        Value::Str(s) => xl_string(s)?,
        Value::List(items) | Value::Tuple(items) => {
            let mut parts = Vec::new();
            for it in items {
                match it {
                    Value::List(_) | Value::Tuple(_) | Value::Dict(_) => {
                        return Err("nested lists are not allowed".into());
                    }
                    Value::None => return Err("a list item is None".into()),
                    other => parts.push(xl_value(other)?),
                }
            }
            if parts.is_empty() {
                "[]".to_string()
            } else {
                format!("[ {} ]", parts.join(", "))
            }
        }
        Value::Dict(_) => return Err("a dict has no xl form".into()),
        Value::None => return Err("no value".into()),
    })
}

fn xl_string(s: &str) -> Result<String, String> {
    if s.contains(['\n', '\r', '\0']) {
        return Err("a string with a line break".into());
    }
    if !s.contains('"') {
        Ok(format!("\"{s}\""))
    } else if !s.contains('\'') {
        Ok(format!("'{s}'"))
    } else {
        Err("a string with both kinds of quotes".into())
    }
}

/// The `xm` rendering: the template's own text, values replaced where they are plain
/// top-level assignments of non-computed keys, everything else kept as written.
pub fn render_xm(req: &Request) -> String {
    let tpl = req.template;
    let text = &tpl.source.text;
    let values = all_values(req);
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    let mut appended: Vec<String> = Vec::new();
    for &(key, value, computed) in &values {
        if OPTION_LISTS.contains(&key) {
            continue;
        }
        let binding = tpl.values.binding(key);
        let sites: Vec<_> = binding.map(|b| b.sites.clone()).unwrap_or_default();
        if computed && !sites.is_empty() {
            continue;
        }
        let simple: Vec<_> = sites.iter().filter(|s| s.simple).collect();
        let unchanged_expr = binding.is_some_and(|b| b.value == *value);
        if !simple.is_empty() && simple.len() == sites.len() {
            for s in simple {
                edits.push((s.value.start, s.value.end, value.literal()));
            }
        } else if sites.is_empty() || !unchanged_expr {
            appended.push(format!("{key} = {}", value.literal()));
        }
    }
    edits.sort_by_key(|e| e.0);
    let mut out = String::new();
    out.push_str(&format!(
        "# Xen domain configuration (xm format), written by convirt {} from image {}\n",
        env!("CARGO_PKG_VERSION"),
        req.image
    ));
    let mut at = 0;
    for (s, e, new) in edits {
        if s < at {
            continue;
        }
        out.push_str(&text[at..s]);
        out.push_str(&new);
        at = e;
    }
    out.push_str(&text[at..]);
    if !appended.is_empty() {
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str("# added by convirt\n");
        for l in appended {
            out.push_str(&l);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xl_values() {
        assert_eq!(xl_value(&Value::Bool(true)).unwrap(), "1");
        assert_eq!(xl_value(&Value::Float(512.0)).unwrap(), "512");
        assert_eq!(xl_value(&Value::Str("it's".into())).unwrap(), "\"it's\"");
        assert_eq!(
            xl_value(&Value::Str("say \"hi\"".into())).unwrap(),
            "'say \"hi\"'"
        );
        assert!(xl_value(&Value::Str("a'b\"c".into())).is_err());
        assert!(xl_value(&Value::Str("a\nb".into())).is_err());
        assert_eq!(
            xl_value(&Value::List(vec![
                Value::Str("file:/x,hda,w".into()),
                Value::Int(3)
            ]))
            .unwrap(),
            "[ \"file:/x,hda,w\", 3 ]"
        );
        assert!(xl_value(&Value::List(vec![Value::List(vec![])])).is_err());
    }
}

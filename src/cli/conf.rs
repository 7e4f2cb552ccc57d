//! `convirt conf`: one config file alone, and the hidden `render` of an image's VM config.

use super::{App, report};
use crate::image::ConfFile;
use crate::render;
use crate::resolve::{self, Overrides};
use crate::settings::Format;
use crate::store::{self, Store};
use crate::value::Value;
use anyhow::{Result, bail};
use clap::Subcommand;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Subcommand, Debug)]
pub(crate) enum ConfCmd {
    /// Evaluate one file and print every value with its origin, or render it
    #[command(
        after_help = "Examples:\n  convirt conf eval vm_conf.template\n  convirt conf eval vm_conf.template --format xl --vm web1\n  convirt --arch i686 conf eval vm_conf.template"
    )]
    Eval {
        file: PathBuf,
        /// Render as a VM config in this format instead of listing values
        #[arg(long)]
        format: Option<Format>,
        /// The VM name for `$VM_NAME`
        #[arg(long)]
        vm: Option<String>,
    },
}

pub(crate) fn run(app: &App, cmd: &ConfCmd) -> Result<()> {
    match cmd {
        ConfCmd::Eval { file, format, vm } => conf_eval(app, file, *format, vm.as_deref()),
    }
}

pub(crate) fn render_image(
    app: &App,
    store: &Store,
    name: &str,
    vm: &str,
    format: Format,
    over: &Overrides,
) -> Result<String> {
    store::check_vm_name(vm).map_err(|e| anyhow::anyhow!(e))?;
    let img = super::image::load_image(app, store, name)?;
    let ctx = app.context(store, Some(vm));
    let resolved = resolve::resolve(&img, &ctx, over, false)?;
    report::warn(app.cli.quiet, &resolved.warnings);
    let req = render::Request {
        entries: &resolved.vm,
        template: &img.vm_template,
        image: &img.name,
        extra: vec![("image_name".into(), Value::Str(img.name.clone()))],
        xl_template: render::store_xl_template(&store.root),
    };
    Ok(render::render(format, &req)?)
}

fn conf_eval(app: &App, file: &Path, format: Option<Format>, vm: Option<&str>) -> Result<()> {
    if let Some(v) = vm {
        store::check_vm_name(v).map_err(|e| anyhow::anyhow!(e))?;
    }
    let conf = ConfFile::load(file, &app.host)?;
    let computed = resolve::computed_keys(&conf, &app.settings);
    let image_name = file
        .canonicalize()
        .ok()
        .and_then(|p| {
            p.parent()
                .and_then(|d| d.file_name())
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    // Substitute with the predefined variables and built-in fallbacks only: one file alone
    // has no image.conf to draw on.
    let mut vars = crate::subst::Vars::default();
    vars.set_text(
        "IMAGE_STORE",
        app.settings.image_store.display().to_string(),
    );
    vars.set_text("IMAGE_NAME", &image_name);
    vars.set_text("IMAGE_LOCATION", &image_name);
    vars.set_text("SERVER_NAME", &app.host.nodename);
    // The built-in fallbacks, unless the file sets them itself (as an image.conf does for
    // its own values during provisioning, spec §3.4).
    for (key, fallback) in [
        (
            "VM_DISKS_DIR",
            app.settings.vm_disks_dir.display().to_string(),
        ),
        (
            "VM_CONF_DIR",
            app.settings.vm_conf_dir.display().to_string(),
        ),
        ("VM_CACHE_DIR", app.settings.cache_dir.display().to_string()),
        ("DEFAULT_BRIDGE", "xenbr0".to_string()),
    ] {
        let own = conf.values.get(key).map(Value::to_text);
        vars.set_text(key, own.unwrap_or(fallback));
    }
    vars.set("AUTOGEN_MAC", crate::subst::Var::FreshMac);
    if let Some(v) = vm {
        vars.set_text("VM_NAME", v);
    }
    let mut entries = resolve::file_entries(&conf, &computed, false);
    for e in &mut entries {
        e.value = crate::subst::substitute(&e.value, &vars, &mut Vec::new());
    }
    if let Some(v) = vm {
        if let Some(e) = entries.iter_mut().find(|e| e.key == "name") {
            e.value = Value::Str(v.to_string());
            e.origin = resolve::Origin::CommandLine;
        }
    }
    if let Some(format) = format {
        let req = render::Request {
            entries: &entries,
            template: &conf,
            image: &image_name,
            extra: vec![],
            xl_template: None,
        };
        print!("{}", render::render(format, &req)?);
        return Ok(());
    }
    if app.cli.json {
        return app.print_json(&serde_json::json!({
            "file": file.display().to_string(),
            "host": app.host,
            "options": entries.iter().map(super::image::entry_json).collect::<Vec<_>>(),
        }));
    }
    let w = entries.iter().map(|e| e.key.len()).max().unwrap_or(0);
    let mut out = std::io::stdout().lock();
    for e in &entries {
        let origin = match &e.origin {
            resolve::Origin::Image { line, .. } => format!("line {line}"),
            resolve::Origin::Computed { line, .. } => format!("computed, line {line}"),
            o => o.to_string(),
        };
        writeln!(out, "{:<w$} = {}    # {origin}", e.key, e.value.repr())?;
    }
    if entries.is_empty() {
        bail!("`{}` defines no options", file.display());
    }
    Ok(())
}

//! `convirt conf`: one config file alone, and the hidden `render` of an image's VM config.

use super::out;
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
    // A lone file has no store of its own: `$IMAGE_STORE` is the configured one.
    let ctx = resolve::Context {
        vm_name: vm.map(String::from),
        host: app.host.clone(),
        store_path: app.settings.image_store.clone(),
        settings: app.settings.clone(),
    };
    let entries = resolve::resolve_file(&conf, &ctx)?;
    let image_name = resolve::file_image_name(file);
    if let Some(format) = format {
        let req = render::Request {
            entries: &entries,
            template: &conf,
            image: &image_name,
            extra: vec![],
            xl_template: None,
        };
        out::print(&render::render(format, &req)?)?;
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
    let mut out = out::stdout();
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

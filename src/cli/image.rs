//! `convirt image`: list, show, validate, create-like, edit, pack and import.

use super::out::{self, err, errln, outln};
use super::{App, args, report};
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::edit;
use crate::image::{self, Image};
use crate::resolve::{self, Overrides};
use crate::store::Store;
use crate::validate;
use anyhow::{Context as _, Result};
use clap::Subcommand;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Subcommand, Debug)]
pub(crate) enum ImageCmd {
    /// List the images: name, PV/HVM, template flag, title, or why an image is broken
    #[command(
        after_help = "Examples:\n  convirt image list\n  convirt --json image list | jq '.[].name'"
    )]
    List,
    /// Show an image's description and every option with its value
    #[command(after_help = "Example:\n  convirt image show Linux_CD_Install")]
    Show { image: String },
    /// Check images: syntax, evaluation, variables, script, custom scripts, xl rendering
    #[command(
        after_help = "Examples:\n  convirt image validate\n  convirt image validate Linux_CD_Install --strict"
    )]
    Validate {
        images: Vec<String>,
        /// Unresolved variables are errors, not warnings
        #[arg(long)]
        strict: bool,
    },
    /// Copy an image to a new name, then change values in the copy
    #[command(after_help = "Examples:
  convirt image create-like Linux_CD_Install Web_Install --title 'Web server install'
  convirt image create-like Linux_CD_Install Big --set hda_disk_size=40000 --vm-set memory=2048")]
    CreateLike {
        /// The image to copy
        src: String,
        /// The new image's name
        new: String,
        /// Set KEY in the copy's image.conf (a Python literal, else text)
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = args::key_value)]
        set: Vec<(String, String)>,
        /// Set KEY in the copy's vm_conf.template
        #[arg(long = "vm-set", value_name = "KEY=VALUE", value_parser = args::key_value)]
        vm_set: Vec<(String, String)>,
        /// The copy's description title (replaces the first text of description.htm)
        #[arg(long, value_name = "TEXT")]
        title: Option<String>,
    },
    /// Change values in an image's files in place, keeping comments and layout
    #[command(
        group = clap::ArgGroup::new("change").required(true).multiple(true).args(["set", "vm_set", "unset", "vm_unset"]),
        after_help = "Examples:
  convirt image edit Linux_CD_Install --set hda_disk_size=20000
  convirt image edit Linux_CD_Install --vm-set memory=1024 --vm-unset extra
  convirt image edit Linux_CD_Install --set \"custom_list=['net', 'users']\""
    )]
    Edit {
        image: String,
        /// Set KEY in image.conf (a Python literal, else text)
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = args::key_value)]
        set: Vec<(String, String)>,
        /// Set KEY in vm_conf.template
        #[arg(long = "vm-set", value_name = "KEY=VALUE", value_parser = args::key_value)]
        vm_set: Vec<(String, String)>,
        /// Remove KEY's assignment from image.conf
        #[arg(long = "unset", value_name = "KEY", value_parser = args::key)]
        unset: Vec<String>,
        /// Remove KEY's assignment from vm_conf.template
        #[arg(long = "vm-unset", value_name = "KEY", value_parser = args::key)]
        vm_unset: Vec<String>,
        /// Also set computed options (replacing their expression with a literal)
        #[arg(long)]
        force: bool,
    },
    /// Pack images into a reproducible archive with a manifest (tar.gz, tar.zst or deb)
    #[command(
        after_help = "Examples:\n  convirt image pack Linux_CD_Install                  writes Linux_CD_Install.tar.gz here\n  convirt image pack A B -o images.tar.zst\n  convirt image pack Linux_CD_Install --format deb     an installable Debian package\n  tar xzf Linux_CD_Install.tar.gz -C /var/cache/convirt/image_store   works too"
    )]
    Pack {
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<String>,
        /// The archive to write (default: IMAGE.tar.gz in the current directory)
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Archive format (default: from the output's name, else tar.gz)
        #[arg(long, value_enum)]
        format: Option<PackFormat>,
        /// Replace an existing output file
        #[arg(long)]
        force: bool,
    },
    /// Import the images of an archive into the store, safely
    #[command(
        after_help = "Examples:\n  convirt image import Linux_CD_Install.tar.gz\n  convirt image import --force images.tar.zst   replace images that exist"
    )]
    Import {
        file: PathBuf,
        /// Replace images that already exist in the store
        #[arg(long)]
        force: bool,
        /// Refuse an archive that expands to more file data than this (bytes, or with K, M,
        /// G, T; default 64G)
        #[arg(long, value_name = "SIZE", value_parser = crate::archive::parse_size)]
        max_size: Option<u64>,
        /// Refuse the archive unless a good signature (FILE.minisig) sits beside it (also
        /// `require_signature = true` in the settings)
        #[arg(long)]
        require_signature: bool,
        /// Also trust this minisign public key (a .pub file or its last line) for the
        /// signature, besides the keys of the [sources.*] in the settings
        #[arg(long, value_name = "KEY")]
        public_key: Option<String>,
    },
    /// Pack images, sign them and add them to a signed index in a directory to serve
    #[command(after_help = "Examples:
  convirt key generate mykey
  convirt image publish Linux_CD_Install Debian_12_Minimal --to /srv/www/images --key mykey.key
  rsync -a /srv/www/images/ web:/var/www/images/     any static web server will do")]
    Publish {
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<String>,
        /// The directory holding the index and the packs (created when missing)
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
        /// The secret key to sign with (from `convirt key generate`)
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
    },
    /// List what the [sources.*] in the settings offer, verified, and what of it is installed
    #[command(after_help = "Examples:
  convirt image search
  convirt image search debian
  convirt --json image search | jq '.[].name'")]
    Search {
        /// Only images whose name, title or description contains TERM (any case)
        term: Option<String>,
    },
    /// Download an image from a source, verify its signature and hash, and import it
    #[command(after_help = "Examples:
  convirt image pull Debian_12_Minimal
  convirt image pull Debian_12_Minimal@2 --from community
  convirt image pull Debian_12_Minimal --force     replace the installed one")]
    Pull {
        /// NAME or NAME@VERSION (default: the newest version)
        #[arg(value_name = "NAME[@VERSION]")]
        name: String,
        /// The source to pull from, when several offer the image
        #[arg(long, value_name = "SOURCE")]
        from: Option<String>,
        /// Replace an image that already exists in the store
        #[arg(long)]
        force: bool,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub(crate) enum PackFormat {
    #[value(name = "tar.gz")]
    TarGz,
    #[value(name = "tar.zst")]
    TarZst,
    #[value(name = "deb")]
    Deb,
}

pub(crate) fn run(app: &App, cmd: &ImageCmd) -> Result<()> {
    match cmd {
        ImageCmd::List => image_list(app),
        ImageCmd::Show { image } => image_show(app, image),
        ImageCmd::Validate { images, strict } => image_validate(app, images, *strict),
        ImageCmd::CreateLike {
            src,
            new,
            set,
            vm_set,
            title,
        } => image_create_like(app, src, new, set, vm_set, title.as_deref()),
        ImageCmd::Edit {
            image,
            set,
            vm_set,
            unset,
            vm_unset,
            force,
        } => {
            let req = edit::Request {
                image: edit_changes(set, unset),
                vm: edit_changes(vm_set, vm_unset),
                force: *force,
            };
            image_edit(app, image, &req)
        }
        ImageCmd::Pack {
            images,
            output,
            format,
            force,
        } => image_pack(app, images, output.as_deref(), *format, *force),
        ImageCmd::Import {
            file,
            force,
            max_size,
            require_signature,
            public_key,
        } => {
            let signed = super::share::import_signature(
                app,
                file,
                *require_signature,
                public_key.as_deref(),
            )?;
            image_import(app, file, *force, *max_size, signed)
        }
        ImageCmd::Publish { images, to, key } => super::share::publish(app, images, to, key),
        ImageCmd::Search { term } => super::share::search(app, term.as_deref()),
        ImageCmd::Pull { name, from, force } => {
            super::share::pull(app, name, from.as_deref(), *force)
        }
    }
}

fn edit_changes(set: &[(String, String)], unset: &[String]) -> Vec<edit::Change> {
    set.iter()
        .map(|(k, v)| edit::Change::Set(k.clone(), resolve::parse_cli_value(v)))
        .chain(unset.iter().map(|k| edit::Change::Unset(k.clone())))
        .collect()
}

fn edits_json(edits: &[edit::FileEdit]) -> serde_json::Value {
    serde_json::Value::Array(
        edits
            .iter()
            .map(|e| {
                serde_json::json!({
                    "file": e.file,
                    "path": e.path.display().to_string(),
                    "written": e.changed(),
                    "changes": e.changes,
                })
            })
            .collect(),
    )
}

fn print_edits(edits: &[edit::FileEdit]) -> Result<()> {
    let mut out = out::stdout();
    for e in edits {
        for c in &e.changes {
            writeln!(out, "{}:{}: {}", e.file, c.line, c.summary())?;
        }
    }
    Ok(())
}

fn image_edit(app: &App, name: &str, req: &edit::Request) -> Result<()> {
    let store = app.store()?;
    let dir = store.image_dir(name)?;
    crate::interrupt::install();
    let edits = edit::plan_image(&dir, &dir, req, &app.settings, &app.host)?;
    // Ctrl-C before the writes changes nothing; once they start they finish (each is an
    // atomic rename), so the image is never left half-edited.
    crate::interrupt::check("`image edit`")
        .map_err(|e| or_interrupted(e, "`image edit`", "the image is unchanged"))?;
    edit::write_image(&dir, &edits)?;
    if app.cli.json {
        return app.print_json(&serde_json::json!({
            "image": name,
            "dir": dir.display().to_string(),
            "files": edits_json(&edits),
        }));
    }
    print_edits(&edits)?;
    if !edits.iter().any(edit::FileEdit::changed) && !app.cli.quiet {
        errln!("note: image `{name}` already had these values; nothing was written");
    }
    Ok(())
}

fn image_create_like(
    app: &App,
    src: &str,
    new: &str,
    set: &[(String, String)],
    vm_set: &[(String, String)],
    title: Option<&str>,
) -> Result<()> {
    let store = app.store()?;
    let req = edit::Request {
        image: edit_changes(set, &[]),
        vm: edit_changes(vm_set, &[]),
        force: false,
    };
    crate::interrupt::install();
    let made =
        crate::create_like::create_like(&store, src, new, &req, title, &app.settings, &app.host)
            .map_err(|e| or_interrupted(e, "`image create-like`", "no image was created"))?;
    if app.cli.json {
        return app.print_json(&serde_json::json!({
            "image": made.name,
            "from": src,
            "dir": made.dir.display().to_string(),
            "files": edits_json(&made.files),
            "title": made.title,
        }));
    }
    outln!(
        "created image `{}` from `{src}` in `{}`",
        made.name,
        made.dir.display()
    )?;
    print_edits(&made.files)?;
    if let Some(t) = &made.title {
        outln!("{}: title: {t}", image::DESCRIPTION)?;
    }
    Ok(())
}

/// One row of `image list`.
#[derive(serde::Serialize)]
struct ListRow {
    name: String,
    template: bool,
    kind: Option<image::Kind>,
    title: String,
    broken: Option<String>,
    /// Where it came from (`image pull`, a signed `image import`), when recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    origin: Option<crate::share::Origin>,
}

fn list_rows(app: &App, store: &Store) -> Result<Vec<ListRow>> {
    let mut rows = Vec::new();
    for e in store
        .entries()
        .with_context(|| format!("cannot read image store `{}`", store.root.display()))?
    {
        let row = match Image::load(&e.name, &e.dir, &app.host) {
            Ok(img) => ListRow {
                title: img
                    .description_html()
                    .map(|h| image::description_title(&h))
                    .unwrap_or_default(),
                kind: Some(img.kind()),
                origin: crate::share::read_origin(store, &e.name),
                name: e.name,
                template: e.template,
                broken: None,
            },
            Err(d) => ListRow {
                name: e.name,
                template: e.template,
                kind: None,
                title: String::new(),
                broken: Some(d.summary()),
                origin: None,
            },
        };
        rows.push(row);
    }
    Ok(rows)
}

fn image_list(app: &App) -> Result<()> {
    let store = app.store()?;
    let rows = list_rows(app, &store)?;
    if app.cli.json {
        return app.print_json(&serde_json::to_value(&rows)?);
    }
    if rows.is_empty() {
        errln!("no images in `{}`", store.root.display());
        return Ok(());
    }
    let w = rows.iter().map(|r| r.name.len()).max().unwrap_or(4).max(4);
    let mut out = out::stdout();
    // The ORIGIN column appears once some image has a recorded origin (docs/sharing.md).
    let origins: Vec<String> = rows
        .iter()
        .map(|r| {
            r.origin
                .as_ref()
                .map_or_else(|| "-".to_string(), |o| o.short())
        })
        .collect();
    if rows.iter().any(|r| r.origin.is_some()) {
        let ow = origins.iter().map(String::len).max().unwrap_or(6).max(6);
        writeln!(
            out,
            "{:<w$}  {:<4}  {:<8}  {:<ow$}  TITLE",
            "NAME", "KIND", "FLAGS", "ORIGIN"
        )?;
        for (r, o) in rows.iter().zip(&origins) {
            let kind = r.kind.map(|k| k.to_string()).unwrap_or_else(|| "-".into());
            let flags = flags(r);
            let title = match &r.broken {
                Some(b) => format!("broken: {b}"),
                None => r.title.clone(),
            };
            writeln!(
                out,
                "{:<w$}  {:<4}  {:<8}  {:<ow$}  {}",
                r.name, kind, flags, o, title
            )?;
        }
        return Ok(());
    }
    writeln!(out, "{:<w$}  {:<4}  {:<8}  TITLE", "NAME", "KIND", "FLAGS")?;
    for r in &rows {
        let kind = r.kind.map(|k| k.to_string()).unwrap_or_else(|| "-".into());
        let flags = flags(r);
        let title = match &r.broken {
            Some(b) => format!("broken: {b}"),
            None => r.title.clone(),
        };
        writeln!(out, "{:<w$}  {:<4}  {:<8}  {}", r.name, kind, flags, title)?;
    }
    Ok(())
}

fn flags(r: &ListRow) -> &'static str {
    match (r.template, r.broken.is_some()) {
        (true, true) => "template,broken",
        (true, false) => "template",
        (false, true) => "broken",
        (false, false) => "-",
    }
}

pub(crate) fn load_image(app: &App, store: &Store, name: &str) -> Result<Image> {
    let dir = store.image_dir(name)?;
    let img = Image::load(name, &dir, &app.host)?;
    Ok(img)
}

pub(crate) fn entry_json(e: &resolve::Entry) -> serde_json::Value {
    serde_json::json!({
        "key": e.key,
        "value": e.value.to_json(),
        "repr": e.value.repr(),
        "origin": e.origin,
        "computed": e.computed,
        "customizable": e.customizable,
    })
}

fn image_show(app: &App, name: &str) -> Result<()> {
    let store = app.store()?;
    let img = load_image(app, &store, name)?;
    let ctx = app.context(&store, None);
    let resolved = resolve::resolve(&img, &ctx, &Overrides::default(), false)?;
    let html = img.description_html();
    if app.cli.json {
        return app.print_json(&serde_json::json!({
            "name": img.name,
            "kind": img.kind(),
            "template": crate::store::is_template_name(&img.name),
            "dir": img.dir.display().to_string(),
            "title": html.as_deref().map(image::description_title),
            "description": html.as_deref().map(|h| image::description_text(h, 80)),
            "image_conf": resolved.image.iter().map(entry_json).collect::<Vec<_>>(),
            "vm_conf": resolved.vm.iter().map(entry_json).collect::<Vec<_>>(),
            "warnings": resolved.warnings.0.iter().map(Diagnostic::to_json).collect::<Vec<_>>(),
        }));
    }
    report::warn(app.cli.quiet, &resolved.warnings);
    let mut out = out::stdout();
    writeln!(
        out,
        "{} ({}){}",
        img.name,
        img.kind(),
        if crate::store::is_template_name(&img.name) {
            ", template"
        } else {
            ""
        }
    )?;
    writeln!(out, "{}", img.dir.display())?;
    if let Some(h) = html {
        writeln!(out)?;
        for l in image::description_text(&h, 78).lines() {
            writeln!(out, "  {l}")?;
        }
    }
    for (title, entries) in [
        (image::IMAGE_CONF, &resolved.image),
        (image::VM_TEMPLATE, &resolved.vm),
    ] {
        writeln!(out, "\n{title}:")?;
        let w = entries.iter().map(|e| e.key.len()).max().unwrap_or(0);
        for e in entries {
            let mut marks = Vec::new();
            if e.computed {
                marks.push("computed");
            }
            if e.customizable {
                marks.push("customizable");
            }
            let origin = match &e.origin {
                resolve::Origin::Image { line, .. } | resolve::Origin::Computed { line, .. } => {
                    format!("line {line}")
                }
                o => o.to_string(),
            };
            writeln!(
                out,
                "  {:<w$} = {}    # {}{}",
                e.key,
                e.value.repr(),
                if marks.is_empty() {
                    String::new()
                } else {
                    format!("[{}] ", marks.join(", "))
                },
                origin
            )?;
        }
    }
    Ok(())
}

fn image_validate(app: &App, images: &[String], strict: bool) -> Result<()> {
    let store = app.store()?;
    let names: Vec<String> = if images.is_empty() {
        store.entries()?.into_iter().map(|e| e.name).collect()
    } else {
        images.to_vec()
    };
    let results: Vec<(String, Diagnostics)> = names
        .iter()
        .cloned()
        .zip(validate::validate_all(
            &app.context(&store, None),
            &store,
            &names,
            strict,
        ))
        .collect();
    let failed = results.iter().filter(|(_, d)| d.has_errors()).count();
    if app.cli.json {
        app.print_json(&serde_json::Value::Array(
            results
                .iter()
                .map(|(n, d)| serde_json::json!({"image": n, "ok": !d.has_errors(), "diagnostics": d.0.iter().map(Diagnostic::to_json).collect::<Vec<_>>()}))
                .collect(),
        ))?;
    } else {
        for (n, d) in &results {
            let errors = d.errors().count();
            let warnings = d.warnings().count();
            if errors == 0 {
                outln!(
                    "ok      {n}{}",
                    if warnings > 0 {
                        format!(
                            " ({warnings} warning{})",
                            if warnings == 1 { "" } else { "s" }
                        )
                    } else {
                        String::new()
                    }
                )?;
            } else {
                outln!(
                    "FAILED  {n} ({errors} error{})",
                    if errors == 1 { "" } else { "s" }
                )?;
            }
            if !app.cli.quiet || errors > 0 {
                for x in &d.0 {
                    if x.is_error() || !app.cli.quiet {
                        err!("{}", x.render());
                    }
                }
            }
        }
    }
    if failed > 0 {
        if !app.cli.json {
            errln!(
                "error: {failed} of {} images failed validation",
                names.len()
            );
        }
        return Err(report::Reported.into());
    }
    Ok(())
}

/// An error from an operation that polls Ctrl-C: exit 130 with what was (not) done, when
/// that is why it stopped.
fn or_interrupted(e: impl Into<anyhow::Error>, what: &str, outcome: &str) -> anyhow::Error {
    if crate::interrupt::interrupted() {
        report::Interrupted(format!("{what} was interrupted (Ctrl-C); {outcome}")).into()
    } else {
        e.into()
    }
}

fn image_pack(
    app: &App,
    images: &[String],
    output: Option<&Path>,
    format: Option<PackFormat>,
    force: bool,
) -> Result<()> {
    use crate::archive::{self, Format as ArchiveFormat};
    let epoch = archive::source_date_epoch(std::env::var("SOURCE_DATE_EPOCH").ok().as_deref())?;
    let store = app.store()?;
    let opts = archive::PackOptions {
        images: images.to_vec(),
        output: output.map(Path::to_path_buf),
        format: format.map(|f| match f {
            PackFormat::TarGz => ArchiveFormat::TarGz,
            PackFormat::TarZst => ArchiveFormat::TarZst,
            PackFormat::Deb => ArchiveFormat::Deb,
        }),
        force,
        source_date_epoch: epoch,
        progress: app.show_progress(),
    };
    crate::interrupt::install();
    let report = archive::pack(&store, &opts)
        .map_err(|e| or_interrupted(e, "`image pack`", "no archive was written"))?;
    if app.cli.json {
        return app.print_json(&serde_json::to_value(&report)?);
    }
    outln!(
        "packed {} into `{}` ({}, {} entries, {} bytes of data, {} bytes written)",
        report
            .images
            .iter()
            .map(|i| format!("`{i}`"))
            .collect::<Vec<_>>()
            .join(", "),
        report.output.display(),
        report.format.name(),
        report.entries,
        report.data_bytes,
        report.archive_bytes
    )?;
    Ok(())
}

fn image_import(
    app: &App,
    file: &Path,
    force: bool,
    max_size: Option<u64>,
    signed: Option<super::share::Signed>,
) -> Result<()> {
    use crate::archive;
    let store = app.store()?;
    let opts = archive::ImportOptions {
        force,
        progress: app.show_progress(),
        max_size: max_size.unwrap_or(archive::DEFAULT_MAX_SIZE),
        expect: None,
    };
    crate::interrupt::install();
    let report = archive::import(&store, file, &app.host, &opts)
        .map_err(|e| or_interrupted(e, "`image import`", "the store is unchanged"))?;
    report::warn(app.cli.quiet, &report.warnings);
    if let Some(s) = &signed {
        super::share::record_signed_import(app, &store, file, s, &report.images);
    }
    if app.cli.json {
        let mut v = serde_json::json!({
            "archive": file.display().to_string(),
            "store": store.root.display().to_string(),
            "images": report.images,
        });
        if let Some(s) = &signed {
            v["signed_by"] = serde_json::json!(s.key_id);
        }
        return app.print_json(&v);
    }
    if let Some(s) = &signed {
        outln!(
            "`{}`: good signature by key {}",
            file.display(),
            s.describe()
        )?;
    }
    for i in &report.images {
        outln!(
            "imported `{}`{}{}",
            i.name,
            if i.replaced {
                " (replaced the old one)"
            } else {
                ""
            },
            if i.verified {
                ""
            } else {
                " (no manifest: not verified)"
            }
        )?;
    }
    Ok(())
}

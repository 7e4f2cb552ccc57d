//! The command line: the only module that knows clap. It parses, resolves settings, dispatches
//! to the library, prints data on stdout and every error in one place, and picks the exit
//! code: 0 ok, 1 the operation failed, 2 usage error, 130 interrupted.

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::edit;
use crate::eval::Host;
use crate::image::{self, ConfFile, Image};
use crate::render;
use crate::resolve::{self, Context, Overrides};
use crate::settings::{self, Env, Format, Settings};
use crate::store::{self, Store};
use crate::value::Value;
use anyhow::{Context as _, Result, bail};
use clap::{CommandFactory, Parser, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The operation was interrupted (Ctrl-C): exit 130.
#[derive(Debug)]
pub struct Interrupted(pub String);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Interrupted {}

/// Errors already printed in full (diagnostics); only the exit code is left to decide.
#[derive(Debug)]
pub struct Reported;
impl std::fmt::Display for Reported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("failed")
    }
}
impl std::error::Error for Reported {}

const EXAMPLES: &str = "\
Examples:
  convirt store init                      write the shipped image store to the default place
  convirt image list                      the images of the store
  convirt image show Linux_CD_Install     an image's description and options
  convirt image validate --strict         check every image
  convirt conf eval vm_conf.template      evaluate one config file";

#[derive(Parser, Debug)]
#[command(name = "convirt", version, about = "Build and provision Xen virtual machines from an image store", after_help = EXAMPLES)]
pub struct Cli {
    /// The image store to use (default: /var/cache/convirt/image_store as root, ~/.convirt/image_store otherwise)
    #[arg(long, global = true, value_name = "DIR")]
    store: Option<PathBuf>,
    /// The settings file (default: $CONVIRT_CONFIG, /etc/convirt/convirt.toml as root, ~/.config/convirt/convirt.toml otherwise)
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// More log output (-v info, -vv debug)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only errors on stderr
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Print machine-readable JSON on stdout
    #[arg(long, global = true)]
    json: bool,
    /// Evaluate for this machine architecture instead of the host's (`os.uname()[4]`)
    #[arg(long, global = true, value_name = "ARCH")]
    arch: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Manage the image store itself
    #[command(subcommand)]
    Store(StoreCmd),
    /// List, show, validate, copy and edit images
    #[command(subcommand)]
    Image(ImageCmd),
    /// Work with single config files
    #[command(subcommand)]
    Conf(ConfCmd),
    /// Provision one or more VMs from an image: run its provision.sh and install the config
    #[command(after_help = "Examples:
  convirt provision --vm Joe_Desktop --image Linux_CD_Install
  convirt provision --vm web1 --vm web2 --vm web3 --image Fedora_Core_Install --jobs 2
  convirt provision --vm db1 --image Linux_CD_Install --set hda_disk_size=20000 --vm-set memory=2048
  convirt provision --vm test --image Linux_CD_Install --dry-run")]
    Provision(ProvisionArgs),
    /// Print a shell completion script
    #[command(after_help = "Example:\n  convirt completions bash > /etc/bash_completion.d/convirt")]
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on stdout
    #[command(after_help = "Example:\n  convirt manpage > convirt.1 && man ./convirt.1")]
    Manpage,
    /// Render an image's VM config for a VM without provisioning (used by tests and scripts)
    #[command(hide = true)]
    Render {
        image: String,
        #[arg(long)]
        vm: String,
        #[arg(long)]
        format: Option<Format>,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        #[arg(long = "vm-set", value_name = "KEY=VALUE")]
        vm_set: Vec<String>,
    },
}

#[derive(clap::Args, Debug)]
struct ProvisionArgs {
    /// The VM name (repeat, or give several, to provision several VMs)
    #[arg(long = "vm", value_name = "NAME", required = true, num_args = 1..)]
    vms: Vec<String>,
    /// The image (default: `default` of the store's image_store.conf)
    #[arg(long)]
    image: Option<String>,
    /// Change an image.conf value (a Python literal, or plain text)
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Change a vm_conf.template value
    #[arg(long = "vm-set", value_name = "KEY=VALUE")]
    vm_set: Vec<String>,
    /// The config format to write (default: the settings' default_format, else xl)
    #[arg(long)]
    format: Option<Format>,
    /// Print the plan and write nothing
    #[arg(long)]
    dry_run: bool,
    /// On failure keep what the run created, and the work directory, for debugging
    #[arg(long)]
    keep: bool,
    /// Replace an existing VM config and the disks the image names
    #[arg(long)]
    force: bool,
    /// Stop the script after this many seconds (overrides provision_timeout)
    #[arg(long, value_name = "SECS")]
    timeout: Option<u64>,
    /// Provision this many VMs at a time
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    jobs: u16,
    /// Unresolved variables are errors
    #[arg(long)]
    strict: bool,
}

#[derive(Subcommand, Debug)]
enum StoreCmd {
    /// Write the shipped image store into DIR (default: the configured store)
    #[command(
        after_help = "Examples:\n  convirt store init\n  convirt store init /tmp/store\n  convirt store init --force   rewrite the shipped files, keep your own images"
    )]
    Init {
        dir: Option<PathBuf>,
        /// Rewrite the shipped files in a non-empty directory (your own images are kept)
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
enum ImageCmd {
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
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        set: Vec<(String, String)>,
        /// Set KEY in the copy's vm_conf.template
        #[arg(long = "vm-set", value_name = "KEY=VALUE", value_parser = parse_key_value)]
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
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        set: Vec<(String, String)>,
        /// Set KEY in vm_conf.template
        #[arg(long = "vm-set", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        vm_set: Vec<(String, String)>,
        /// Remove KEY's assignment from image.conf
        #[arg(long = "unset", value_name = "KEY", value_parser = parse_key)]
        unset: Vec<String>,
        /// Remove KEY's assignment from vm_conf.template
        #[arg(long = "vm-unset", value_name = "KEY", value_parser = parse_key)]
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
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum PackFormat {
    #[value(name = "tar.gz")]
    TarGz,
    #[value(name = "tar.zst")]
    TarZst,
    #[value(name = "deb")]
    Deb,
}

#[derive(Subcommand, Debug)]
enum ConfCmd {
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

/// Runs the command line and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    init_tracing(cli.verbose, cli.quiet);
    match run(&cli) {
        Ok(()) => 0,
        Err(e) => report(&e),
    }
}

fn init_tracing(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CONVIRT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .with_ansi(
            std::env::var_os("NO_COLOR").is_none()
                && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        )
        .try_init();
}

/// The one place that prints an error and picks the exit code.
fn report(e: &anyhow::Error) -> i32 {
    if e.downcast_ref::<Reported>().is_some() {
        return 1;
    }
    let code = if e.downcast_ref::<Interrupted>().is_some() {
        130
    } else {
        1
    };
    if let Some(d) = e.downcast_ref::<Diagnostics>() {
        eprint!("{}", d.render());
        return code;
    }
    if let Some(d) = e.downcast_ref::<Diagnostic>() {
        eprint!("{}", d.render());
        return code;
    }
    let mut msg = format!("error: {e}");
    for cause in e.chain().skip(1) {
        msg.push_str(&format!("\n  caused by: {cause}"));
    }
    eprintln!("{msg}");
    code
}

/// Prints warnings (unless `-q`).
fn warn(quiet: bool, d: &Diagnostics) {
    if quiet {
        return;
    }
    for w in d.warnings() {
        eprint!("{}", w.render());
    }
}

struct App<'a> {
    cli: &'a Cli,
    settings: Settings,
    host: Host,
}

impl App<'_> {
    /// Opens the store, initialising it first when nothing is configured and the default
    /// place is empty (spec §1.5).
    fn store(&self) -> Result<Store> {
        let root = &self.settings.image_store;
        if self.settings.image_store_from == settings::From::Default && !root.exists() {
            let report = store::init(root, false)?;
            if !self.cli.quiet {
                eprintln!(
                    "note: no image store at `{}`; wrote the shipped store there ({} files)",
                    root.display(),
                    report.written.len()
                );
            }
        }
        let (s, diags) = Store::open(root)?;
        if !self.cli.quiet {
            for d in &diags.0 {
                eprint!("{}", d.render().replacen("error:", "warning:", 1));
            }
        }
        Ok(s)
    }

    fn context(&self, store: &Store, vm: Option<&str>) -> Context {
        Context {
            vm_name: vm.map(String::from),
            host: self.host.clone(),
            store_path: store.root.clone(),
            settings: self.settings.clone(),
        }
    }

    fn print_json(&self, v: &serde_json::Value) -> Result<()> {
        let mut out = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, v)?;
        writeln!(out)?;
        Ok(())
    }
}

fn run(cli: &Cli) -> Result<()> {
    match &cli.command {
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(*shell, &mut cmd, "convirt", &mut std::io::stdout());
            return Ok(());
        }
        Command::Manpage => {
            let man = clap_mangen::Man::new(Cli::command());
            man.render(&mut std::io::stdout())?;
            return Ok(());
        }
        _ => {}
    }
    let over = settings::Overrides {
        store: cli.store.clone(),
        config: cli.config.clone(),
    };
    let settings = Settings::load(&over, &Env::current())?;
    let app = App {
        cli,
        host: Host::local(cli.arch.as_deref()),
        settings,
    };
    match &cli.command {
        Command::Store(StoreCmd::Init { dir, force }) => store_init(&app, dir.as_deref(), *force),
        Command::Image(ImageCmd::List) => image_list(&app),
        Command::Image(ImageCmd::Show { image }) => image_show(&app, image),
        Command::Image(ImageCmd::Validate { images, strict }) => {
            image_validate(&app, images, *strict)
        }
        Command::Image(ImageCmd::CreateLike {
            src,
            new,
            set,
            vm_set,
            title,
        }) => image_create_like(&app, src, new, set, vm_set, title.as_deref()),
        Command::Image(ImageCmd::Edit {
            image,
            set,
            vm_set,
            unset,
            vm_unset,
            force,
        }) => {
            let req = edit::Request {
                image: edit_changes(set, unset),
                vm: edit_changes(vm_set, vm_unset),
                force: *force,
            };
            image_edit(&app, image, &req)
        }
        Command::Image(ImageCmd::Pack {
            images,
            output,
            format,
            force,
        }) => image_pack(&app, images, output.as_deref(), *format, *force),
        Command::Image(ImageCmd::Import { file, force }) => image_import(&app, file, *force),
        Command::Conf(ConfCmd::Eval { file, format, vm }) => {
            conf_eval(&app, file, *format, vm.as_deref())
        }
        Command::Provision(args) => {
            let req = args_to_request(args)?;
            // A dry run writes nothing, not even a missing default store.
            let store = if args.dry_run {
                Store::open(&app.settings.image_store)?.0
            } else {
                app.store()?
            };
            let env = crate::cli_provision::Env {
                settings: &app.settings,
                host: &app.host,
                json: cli.json,
                quiet: cli.quiet,
                verbose: cli.verbose,
                store,
            };
            crate::cli_provision::provision(&env, req)
        }
        Command::Render {
            image,
            vm,
            format,
            set,
            vm_set,
        } => {
            let store = app.store()?;
            let overrides = parse_overrides(set, vm_set)?;
            let text = render_image(
                &app,
                &store,
                image,
                vm,
                format.unwrap_or(app.settings.default_format),
                &overrides,
            )?;
            print!("{text}");
            Ok(())
        }
        Command::Completions { .. } | Command::Manpage => Ok(()),
    }
}

fn args_to_request(a: &ProvisionArgs) -> Result<crate::cli_provision::Request> {
    Ok(crate::cli_provision::Request {
        vms: a.vms.clone(),
        dry_run: a.dry_run,
        jobs: a.jobs as usize,
        options: crate::provision::Options {
            image: a.image.clone(),
            overrides: parse_overrides(&a.set, &a.vm_set)?,
            format: a.format,
            force: a.force,
            keep: a.keep,
            timeout: a.timeout,
            strict: a.strict,
        },
    })
}

fn parse_overrides(set: &[String], vm_set: &[String]) -> Result<Overrides> {
    let parse = |v: &[String]| -> Result<Vec<(String, String)>> {
        v.iter()
            .map(|s| resolve::parse_assignment(s).map_err(|e| anyhow::anyhow!(e)))
            .collect()
    };
    Ok(Overrides {
        set: parse(set)?,
        vm_set: parse(vm_set)?,
    })
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    let (k, v) = resolve::parse_assignment(s)?;
    edit::check_key(&k)?;
    Ok((k, v))
}

fn parse_key(s: &str) -> Result<String, String> {
    edit::check_key(s)?;
    Ok(s.to_string())
}

/// `--set`-style pairs (values read as in spec §4.3) and `--unset` keys as edits.
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
    let mut out = std::io::stdout().lock();
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
    let edits = edit::plan_image(&dir, &dir, req, &app.settings, &app.host)?;
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
        eprintln!("note: image `{name}` already had these values; nothing was written");
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
    let made =
        crate::create_like::create_like(&store, src, new, &req, title, &app.settings, &app.host)?;
    if app.cli.json {
        return app.print_json(&serde_json::json!({
            "image": made.name,
            "from": src,
            "dir": made.dir.display().to_string(),
            "files": edits_json(&made.files),
            "title": made.title,
        }));
    }
    println!(
        "created image `{}` from `{src}` in `{}`",
        made.name,
        made.dir.display()
    );
    print_edits(&made.files)?;
    if let Some(t) = &made.title {
        println!("{}: title: {t}", image::DESCRIPTION);
    }
    Ok(())
}

fn store_init(app: &App, dir: Option<&Path>, force: bool) -> Result<()> {
    let dir = dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| app.settings.image_store.clone());
    let report = store::init(&dir, force)?;
    if app.cli.json {
        return app.print_json(&serde_json::json!({
            "store": dir.display().to_string(),
            "written": report.written.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "unchanged": report.kept.len(),
        }));
    }
    println!(
        "initialised image store `{}` ({} files written, {} unchanged)",
        dir.display(),
        report.written.len(),
        report.kept.len()
    );
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
        eprintln!("no images in `{}`", store.root.display());
        return Ok(());
    }
    let w = rows.iter().map(|r| r.name.len()).max().unwrap_or(4).max(4);
    let mut out = std::io::stdout().lock();
    writeln!(out, "{:<w$}  {:<4}  {:<8}  TITLE", "NAME", "KIND", "FLAGS")?;
    for r in &rows {
        let kind = r.kind.map(|k| k.to_string()).unwrap_or_else(|| "-".into());
        let flags = match (r.template, r.broken.is_some()) {
            (true, true) => "template,broken",
            (true, false) => "template",
            (false, true) => "broken",
            (false, false) => "-",
        };
        let title = match &r.broken {
            Some(b) => format!("broken: {b}"),
            None => r.title.clone(),
        };
        writeln!(out, "{:<w$}  {:<4}  {:<8}  {}", r.name, kind, flags, title)?;
    }
    Ok(())
}

fn load_image(app: &App, store: &Store, name: &str) -> Result<Image> {
    let dir = store.image_dir(name)?;
    let img = Image::load(name, &dir, &app.host)?;
    Ok(img)
}

fn entry_json(e: &resolve::Entry) -> serde_json::Value {
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
            "template": img.name.starts_with('_'),
            "dir": img.dir.display().to_string(),
            "title": html.as_deref().map(image::description_title),
            "description": html.as_deref().map(|h| image::description_text(h, 80)),
            "image_conf": resolved.image.iter().map(entry_json).collect::<Vec<_>>(),
            "vm_conf": resolved.vm.iter().map(entry_json).collect::<Vec<_>>(),
            "warnings": resolved.warnings.0.iter().map(Diagnostic::to_json).collect::<Vec<_>>(),
        }));
    }
    warn(app.cli.quiet, &resolved.warnings);
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{} ({}){}",
        img.name,
        img.kind(),
        if img.name.starts_with('_') {
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

/// The problems of one image, for `image validate`.
fn validate_one(app: &App, store: &Store, name: &str, strict: bool) -> Diagnostics {
    let mut diags = Diagnostics::default();
    let dir = match store.image_dir(name) {
        Ok(d) => d,
        Err(d) => return d.into(),
    };
    let img = match Image::load(name, &dir, &app.host) {
        Ok(i) => i,
        Err(d) => {
            diags.extend(d);
            return diags;
        }
    };
    let script = img.script();
    match std::fs::metadata(&script) {
        Err(_) => diags.push(
            Diagnostic::error(format!("`{}` is missing", image::PROVISION_SCRIPT))
                .in_file(&script)
                .with_hint("every image needs a provision.sh; copy one from `example/`"),
        ),
        Ok(m) => {
            use std::os::unix::fs::PermissionsExt;
            if m.permissions().mode() & 0o111 == 0 {
                diags.push(
                    Diagnostic::error(format!("`{}` is not executable", image::PROVISION_SCRIPT))
                        .in_file(&script)
                        .with_hint(format!("run `chmod +x {}`", script.display())),
                );
            }
        }
    }
    if !dir.join(image::DESCRIPTION).exists() {
        diags.push(
            Diagnostic::warning(format!("`{}` is missing", image::DESCRIPTION))
                .in_file(&dir.join(image::DESCRIPTION)),
        );
    }
    if let Some(v) = img.image_conf.values.get("custom_list") {
        let names: Vec<String> = match v {
            Value::List(items) | Value::Tuple(items) => items.iter().map(Value::to_text).collect(),
            Value::Str(s) => s.split_whitespace().map(String::from).collect(),
            _ => vec![],
        };
        for n in names {
            let found = [
                dir.join("custom_scripts").join(&n),
                store.root.join("custom_scripts").join(&n),
            ]
            .iter()
            .any(|p| p.is_dir());
            let bad_name = n.contains('/') || n == ".." || n == ".";
            if bad_name || !found {
                let d = Diagnostic::error(format!(
                    "custom script directory `{n}` not found in `{}/custom_scripts` nor the store's `custom_scripts`",
                    name
                ));
                let d = match img.image_conf.site_span("custom_list") {
                    Some(s) => d.at(&img.image_conf.source, s),
                    None => d.in_file(img.image_conf.path()),
                };
                diags.push(d);
            }
        }
    }
    let ctx = app.context(store, Some("validate-vm"));
    match resolve::resolve(&img, &ctx, &Overrides::default(), strict) {
        Ok(r) => {
            diags.extend(r.warnings.clone());
            let req = render::Request {
                entries: &r.vm,
                template: &img.vm_template,
                image: &img.name,
                extra: vec![],
                xl_template: xl_template(store),
            };
            if let Err(d) = render::check_xl(&req) {
                diags.extend(d);
            }
        }
        Err(d) => diags.extend(d),
    }
    diags
}

/// Validates images on every core (each image is independent); the results come back in
/// the order of `names`.
fn validate_all(app: &App, store: &Store, names: &[String], strict: bool) -> Vec<Diagnostics> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(names.len());
    if workers <= 1 {
        return names
            .iter()
            .map(|n| validate_one(app, store, n, strict))
            .collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<Option<Diagnostics>> = names.iter().map(|_| None).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(name) = names.get(i) else {
                            break;
                        };
                        done.push((i, validate_one(app, store, name, strict)));
                    }
                    done
                })
            })
            .collect();
        for h in handles {
            match h.join() {
                Ok(done) => {
                    for (i, d) in done {
                        results[i] = Some(d);
                    }
                }
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    });
    results.into_iter().map(Option::unwrap_or_default).collect()
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
        .zip(validate_all(app, &store, &names, strict))
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
                println!(
                    "ok      {n}{}",
                    if warnings > 0 {
                        format!(
                            " ({warnings} warning{})",
                            if warnings == 1 { "" } else { "s" }
                        )
                    } else {
                        String::new()
                    }
                );
            } else {
                println!(
                    "FAILED  {n} ({errors} error{})",
                    if errors == 1 { "" } else { "s" }
                );
            }
            if !app.cli.quiet || errors > 0 {
                for x in &d.0 {
                    if x.is_error() || !app.cli.quiet {
                        eprint!("{}", x.render());
                    }
                }
            }
        }
    }
    if failed > 0 {
        if !app.cli.json {
            eprintln!(
                "error: {failed} of {} images failed validation",
                names.len()
            );
        }
        return Err(Reported.into());
    }
    Ok(())
}

fn xl_template(store: &Store) -> Option<String> {
    std::fs::read_to_string(store.root.join(render::XL_TEMPLATE_OVERRIDE)).ok()
}

fn render_image(
    app: &App,
    store: &Store,
    name: &str,
    vm: &str,
    format: Format,
    over: &Overrides,
) -> Result<String> {
    store::check_vm_name(vm).map_err(|e| anyhow::anyhow!(e))?;
    let img = load_image(app, store, name)?;
    let ctx = app.context(store, Some(vm));
    let resolved = resolve::resolve(&img, &ctx, over, false)?;
    warn(app.cli.quiet, &resolved.warnings);
    let req = render::Request {
        entries: &resolved.vm,
        template: &img.vm_template,
        image: &img.name,
        extra: vec![("image_name".into(), Value::Str(img.name.clone()))],
        xl_template: xl_template(store),
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
            "options": entries.iter().map(entry_json).collect::<Vec<_>>(),
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

/// A progress bar only where someone watches: stderr is a terminal and `-q` is not given.
fn show_progress(app: &App) -> bool {
    !app.cli.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr())
}

fn image_pack(
    app: &App,
    images: &[String],
    output: Option<&Path>,
    format: Option<PackFormat>,
    force: bool,
) -> Result<()> {
    use crate::archive::{self, Format as ArchiveFormat};
    let epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.trim().is_empty() => Some(v.trim().parse::<u64>().map_err(|_| {
            Diagnostic::error(format!(
                "`SOURCE_DATE_EPOCH` is `{v}`, not a number of seconds"
            ))
            .with_hint("unset it, or set it to a Unix time such as `1700000000`")
        })?),
        _ => None,
    };
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
        progress: show_progress(app),
    };
    let report = archive::pack(&store, &opts)?;
    if app.cli.json {
        return app.print_json(&serde_json::to_value(&report)?);
    }
    println!(
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
    );
    Ok(())
}

fn image_import(app: &App, file: &Path, force: bool) -> Result<()> {
    use crate::archive;
    let store = app.store()?;
    let opts = archive::ImportOptions {
        force,
        progress: show_progress(app),
    };
    let report = archive::import(&store, file, &app.host, &opts)?;
    warn(app.cli.quiet, &report.warnings);
    if app.cli.json {
        return app.print_json(&serde_json::json!({
            "archive": file.display().to_string(),
            "store": store.root.display().to_string(),
            "images": report.images,
        }));
    }
    for i in &report.images {
        println!(
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
        );
    }
    Ok(())
}

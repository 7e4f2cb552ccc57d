//! The command line: the only module that knows clap. It parses, resolves settings and
//! dispatches to one file per command group; `report` prints every error and picks the exit
//! code: 0 ok, 1 the operation failed, 2 usage error, 130 interrupted.

mod args;
mod cache;
mod complete;
mod conf;
mod hosts;
mod image;
mod manpages;
pub(crate) mod out;
mod progress;
mod provision;
pub mod report;
mod share;
mod store;
mod ui;
mod vm;

use crate::eval::Host;
use crate::resolve::Context;
use crate::settings::{self, Env, Format, Settings};
use crate::store::Store;
use anyhow::Result;
use clap::{Parser, Subcommand};
use out::{err, errln};
use std::path::PathBuf;

pub use report::{Interrupted, Reported};

/// The heading of the options every command takes.
const GLOBAL: &str = "Global options";

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
    #[arg(long, global = true, value_name = "DIR", help_heading = GLOBAL)]
    pub(crate) store: Option<PathBuf>,
    /// The settings file (default: $CONVIRT_CONFIG, /etc/convirt/convirt.toml as root, ~/.config/convirt/convirt.toml otherwise)
    #[arg(long, global = true, value_name = "FILE", help_heading = GLOBAL)]
    pub(crate) config: Option<PathBuf>,
    /// More log output (-v info, -vv debug)
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = GLOBAL)]
    pub(crate) verbose: u8,
    /// Only errors on stderr
    #[arg(short, long, global = true, help_heading = GLOBAL)]
    pub(crate) quiet: bool,
    /// Print machine-readable JSON on stdout
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub(crate) json: bool,
    /// Evaluate for this machine architecture instead of the host's (`os.uname()[4]`)
    #[arg(long, global = true, value_name = "ARCH", help_heading = GLOBAL)]
    pub(crate) arch: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Manage the image store itself
    #[command(
        subcommand,
        after_help = "Examples:
  convirt store init                      write the shipped store to the configured place
  convirt store init /srv/image_store     or to a directory of your choice"
    )]
    Store(store::StoreCmd),
    /// List, show, validate, copy, edit, pack and import images; publish, search and pull shared ones
    #[command(
        subcommand,
        after_help = "Examples:
  convirt image list
  convirt image show Linux_CD_Install
  convirt image create-like Linux_CD_Install Web_Install --set hda_disk_size=20000
  convirt image search && convirt image pull Debian_12_Minimal"
    )]
    Image(image::ImageCmd),
    /// Signing keys for `image publish`
    #[command(
        subcommand,
        after_help = "Example:
  convirt key generate mykey      writes mykey.key (secret) and mykey.pub here"
    )]
    Key(share::KeyCmd),
    /// Work with single config files
    #[command(
        subcommand,
        after_help = "Example:
  convirt conf eval image_store/Linux_CD_Install/vm_conf.template --format xl"
    )]
    Conf(conf::ConfCmd),
    /// Provision one or more VMs from an image: run its provision.sh and install the config
    #[command(after_help = "Examples:
  convirt provision --vm Joe_Desktop --image Linux_CD_Install
  convirt provision --vm web1 --vm web2 --vm web3 --image Fedora_Core_Install --jobs 2
  convirt provision --vm db1 --image Linux_CD_Install --set hda_disk_size=20000 --vm-set memory=2048
  convirt provision --vm test --image Linux_CD_Install --dry-run")]
    Provision(provision::ProvisionArgs),
    /// The VMs convirt provisioned: list, show, remove (with their disks)
    #[command(
        subcommand,
        after_help = "Examples:
  convirt vm list
  convirt vm show web1
  convirt vm remove web1 --dry-run"
    )]
    Vm(vm::VmCmd),
    /// The console in a browser: images, provisioning and VMs, on 127.0.0.1 by default
    #[command(after_help = "Examples:
  convirt ui                              serve on 127.0.0.1:8470; open the URL it prints
  convirt ui --listen 127.0.0.1:0         any free port")]
    Ui(ui::UiArgs),
    /// The guest bootstrap cache: list its entries and thin-VM bases, prune unpinned ones
    #[command(
        subcommand,
        after_help = "Examples:
  convirt cache list                      entries, bases, sizes and the VM disks pinning them
  convirt cache prune --dry-run           what an unpinned cleanup would remove"
    )]
    Cache(cache::CacheCmd),
    /// Print a shell completion script (it asks convirt for image and host names on each Tab)
    #[command(after_help = "Examples:
  convirt completions bash > ~/.local/share/bash-completion/completions/convirt
  convirt completions zsh > ~/.zfunc/_convirt
  convirt completions fish > ~/.config/fish/completions/convirt.fish")]
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on stdout, or write every page into a directory
    #[command(after_help = "Examples:
  convirt manpage > convirt.1 && man ./convirt.1
  convirt manpage --dir man/      convirt.1 and one page per subcommand (convirt-provision.1, ...)")]
    Manpage {
        /// Write convirt.1 and one page per subcommand into DIR instead of printing
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Replace pages that exist in DIR
        #[arg(long, requires = "dir")]
        force: bool,
    },
    /// Render an image's VM config for a VM without provisioning (used by tests and scripts)
    #[command(hide = true)]
    Render {
        image: String,
        #[arg(long)]
        vm: String,
        #[arg(long)]
        format: Option<Format>,
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = args::key_value)]
        set: Vec<(String, String)>,
        #[arg(long = "vm-set", value_name = "KEY=VALUE", value_parser = args::key_value)]
        vm_set: Vec<(String, String)>,
    },
    /// convirt's side on a managed server, spoken to over ssh (docs/remote.md)
    #[command(name = "__serve", hide = true)]
    Serve {
        /// How the client found this program (`configured`, `path`, `copy`)
        #[arg(long)]
        found: Option<String>,
    },
}

/// Runs the command line and returns the process exit code.
pub fn main() -> i32 {
    complete::handle_request();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            // `--help | head -1`: a help text nobody reads is not an error.
            let _ = e.print();
            return code;
        }
    };
    init_tracing(cli.verbose, cli.quiet);
    crate::sys::file_size_limit_is_an_error();
    crate::sys::no_shared_writes();
    if let Command::Serve { found } = &cli.command {
        // No settings, no store: the request carries every path it needs.
        return crate::provision::serve::main(found.clone());
    }
    match run(&cli) {
        Ok(()) => 0,
        Err(e) if out::is_stdout_closed(&e) => 0,
        Err(e) => report::report(&e),
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
        // A log line that cannot be written is dropped: the default complains with
        // `eprintln!`, which panics when stderr is a closed pipe.
        .log_internal_errors(false)
        .with_ansi(
            std::env::var_os("NO_COLOR").is_none()
                && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        )
        .try_init();
}

pub(crate) struct App<'a> {
    pub(crate) cli: &'a Cli,
    pub(crate) settings: Settings,
    pub(crate) host: Host,
}

impl App<'_> {
    /// Opens the store, initialising it first when nothing is configured and the default
    /// place is empty (spec §1.5).
    pub(crate) fn store(&self) -> Result<Store> {
        let (s, diags, wrote) = crate::store::open_configured(&self.settings)?;
        if let Some(report) = wrote.filter(|_| !self.cli.quiet) {
            errln!(
                "note: no image store at `{}`; wrote the shipped store there ({} files)",
                s.root.display(),
                report.written.len()
            );
        }
        if !self.cli.quiet {
            for d in &diags.0 {
                err!("{}", d.render());
            }
        }
        Ok(s)
    }

    pub(crate) fn context(&self, store: &Store, vm: Option<&str>) -> Context {
        Context {
            vm_name: vm.map(String::from),
            host: self.host.clone(),
            store_path: store.root.clone(),
            settings: self.settings.clone(),
        }
    }

    pub(crate) fn print_json(&self, v: &serde_json::Value) -> Result<()> {
        // Text first, so a reader that went away shows as `StdoutClosed` (serde_json's
        // writer error would hide it).
        let mut text = serde_json::to_string_pretty(v)?;
        text.push('\n');
        out::print(&text)
    }

    /// A progress bar only where someone watches: stderr is a terminal and `-q` is not given.
    pub(crate) fn show_progress(&self) -> bool {
        !self.cli.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr())
    }
}

fn run(cli: &Cli) -> Result<()> {
    match &cli.command {
        Command::Completions { shell } => {
            // Into memory first, then `out`: a reader that went away ends quietly.
            let mut text = Vec::new();
            complete::registration(*shell, &mut text)?;
            return out::print(&String::from_utf8_lossy(&text));
        }
        Command::Manpage { dir: None, .. } => {
            let mut text = Vec::new();
            manpages::print(&mut text)?;
            return out::print(&String::from_utf8_lossy(&text));
        }
        Command::Manpage {
            dir: Some(dir),
            force,
        } => {
            for p in manpages::write_all(dir, *force)? {
                if !cli.quiet {
                    errln!("wrote {}", p.display());
                }
            }
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
        Command::Store(cmd) => store::run(&app, cmd),
        Command::Image(cmd) => image::run(&app, cmd),
        Command::Conf(cmd) => conf::run(&app, cmd),
        Command::Key(cmd) => share::key(&app, cmd),
        Command::Provision(args) => provision::run(&app, args),
        Command::Vm(cmd) => vm::run(&app, cmd),
        Command::Ui(args) => ui::run(&app, args),
        Command::Cache(cmd) => cache::run(&app, cmd),
        Command::Render {
            image,
            vm,
            format,
            set,
            vm_set,
        } => {
            let store = app.store()?;
            let text = conf::render_image(
                &app,
                &store,
                image,
                vm,
                format.unwrap_or(app.settings.default_format),
                &args::overrides(set, vm_set),
            )?;
            out::print(&text)?;
            Ok(())
        }
        Command::Completions { .. } | Command::Manpage { .. } | Command::Serve { .. } => Ok(()),
    }
}

//! The command line: the only module that knows clap. It parses, resolves settings and
//! dispatches to one file per command group; `report` prints every error and picks the exit
//! code: 0 ok, 1 the operation failed, 2 usage error, 130 interrupted.

mod args;
mod conf;
mod hosts;
mod image;
mod provision;
pub mod report;
mod store;

use crate::eval::Host;
use crate::resolve::Context;
use crate::settings::{self, Env, Format, Settings};
use crate::store::Store;
use anyhow::Result;
use clap::{CommandFactory, Parser, Subcommand};
use std::io::Write;
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
    #[command(subcommand)]
    Store(store::StoreCmd),
    /// List, show, validate, copy and edit images
    #[command(subcommand)]
    Image(image::ImageCmd),
    /// Work with single config files
    #[command(subcommand)]
    Conf(conf::ConfCmd),
    /// Provision one or more VMs from an image: run its provision.sh and install the config
    #[command(after_help = "Examples:
  convirt provision --vm Joe_Desktop --image Linux_CD_Install
  convirt provision --vm web1 --vm web2 --vm web3 --image Fedora_Core_Install --jobs 2
  convirt provision --vm db1 --image Linux_CD_Install --set hda_disk_size=20000 --vm-set memory=2048
  convirt provision --vm test --image Linux_CD_Install --dry-run")]
    Provision(provision::ProvisionArgs),
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
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = args::key_value)]
        set: Vec<(String, String)>,
        #[arg(long = "vm-set", value_name = "KEY=VALUE", value_parser = args::key_value)]
        vm_set: Vec<(String, String)>,
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
        let root = &self.settings.image_store;
        if self.settings.image_store_from == settings::From::Default && !root.exists() {
            let report = crate::store::init(root, false)?;
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
                eprint!("{}", d.render());
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
        let mut out = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, v)?;
        writeln!(out)?;
        Ok(())
    }

    /// A progress bar only where someone watches: stderr is a terminal and `-q` is not given.
    pub(crate) fn show_progress(&self) -> bool {
        !self.cli.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr())
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
        Command::Store(cmd) => store::run(&app, cmd),
        Command::Image(cmd) => image::run(&app, cmd),
        Command::Conf(cmd) => conf::run(&app, cmd),
        Command::Provision(args) => provision::run(&app, args),
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
            print!("{text}");
            Ok(())
        }
        Command::Completions { .. } | Command::Manpage => Ok(()),
    }
}

//! `convirt store`: the image store itself.

use super::App;
use super::out::outln;
use anyhow::Result;
use clap::Subcommand;
use std::path::{Path, PathBuf};

#[derive(Subcommand, Debug)]
pub(crate) enum StoreCmd {
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

pub(crate) fn run(app: &App, cmd: &StoreCmd) -> Result<()> {
    match cmd {
        StoreCmd::Init { dir, force } => store_init(app, dir.as_deref(), *force),
    }
}

fn store_init(app: &App, dir: Option<&Path>, force: bool) -> Result<()> {
    let dir = dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| app.settings.image_store.clone());
    let report = crate::store::init(&dir, force)?;
    if app.cli.json {
        return app.print_json(&serde_json::json!({
            "store": dir.display().to_string(),
            "written": report.written.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "unchanged": report.kept.len(),
        }));
    }
    outln!(
        "initialised image store `{}` ({} files written, {} unchanged)",
        dir.display(),
        report.written.len(),
        report.kept.len()
    )?;
    Ok(())
}

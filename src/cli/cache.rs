//! `convirt cache list|prune`: the guest bootstrap cache, its bases and their pins
//! (`provision::cache`, docs/images.md).

use super::App;
use super::out::outln;
use crate::provision::cache;
use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Subcommand, Debug)]
pub(crate) enum CacheCmd {
    /// The cache entries and thin-VM bases, their sizes and the VM disks that pin them
    #[command(after_help = "Examples:\n  convirt cache list\n  convirt cache list --json")]
    List,
    /// Remove every entry and base no VM disk pins (and nobody is using now)
    #[command(after_help = "Examples:\n  convirt cache prune --dry-run\n  convirt cache prune")]
    Prune {
        /// Print what would be removed, and remove nothing
        #[arg(long, short = 'n')]
        dry_run: bool,
    },
}

/// `VM_CACHE_DIR` of the site's `[variables]`, else the built-in cache directory: where
/// provisioning puts the cache when no image sets it.
fn cache_dir(app: &App) -> PathBuf {
    app.settings
        .variables
        .iter()
        .find(|(k, _)| k == "VM_CACHE_DIR")
        .map(|(_, v)| PathBuf::from(v.to_text()))
        .unwrap_or_else(|| app.settings.cache_dir.clone())
}

pub(crate) fn run(app: &App, cmd: &CacheCmd) -> Result<()> {
    let dir = cache_dir(app);
    match cmd {
        CacheCmd::List => {
            let l = cache::list(&dir);
            if app.cli.json {
                return app.print_json(&serde_json::to_value(&l)?);
            }
            outln!("cache: {}", l.dir.display())?;
            if l.items.is_empty() {
                outln!("  (empty)")?;
            }
            for i in &l.items {
                let state = if i.pinned_by.is_empty() {
                    "unpinned".to_string()
                } else {
                    format!("pinned by {}", i.pinned_by.join(", "))
                };
                outln!(
                    "  {:<8} {:>8}  {}  ({state})",
                    i.kind,
                    cache::human(i.bytes),
                    i.path.display()
                )?;
            }
            let free: u64 = l
                .items
                .iter()
                .filter(|i| i.pinned_by.is_empty())
                .map(|i| i.bytes)
                .sum();
            outln!(
                "unpinned: {} (`convirt cache prune` removes it; hard-linked bases count in each name)",
                cache::human(free)
            )?;
            Ok(())
        }
        CacheCmd::Prune { dry_run } => {
            let (done, stale) = cache::prune(&dir, *dry_run);
            if app.cli.json {
                return app.print_json(&serde_json::json!({
                    "dir": dir, "dry_run": dry_run, "items": done, "stale_pins": stale,
                }));
            }
            for p in &done {
                let why = if p.why.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", p.why)
                };
                outln!("{:<8} {}{why}", p.action, p.item.path.display())?;
            }
            for p in &stale {
                outln!(
                    "{:<8} {} (its disk is gone)",
                    if *dry_run { "remove" } else { "removed" },
                    p.display()
                )?;
            }
            let freed: u64 = done.iter().map(|p| p.freed).sum();
            outln!(
                "{} {}",
                if *dry_run { "would free" } else { "freed" },
                cache::human(freed)
            )?;
            if done.iter().any(|p| p.action == "failed") {
                anyhow::bail!("some cache items could not be removed (see above)");
            }
            Ok(())
        }
    }
}

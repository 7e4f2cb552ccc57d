//! Man pages from the clap definitions, so `man convirt-provision` and `convirt help
//! provision` cannot drift apart: `convirt(1)` and one page per subcommand, named as git
//! names its pages (`convirt-image-show.1`).

use anyhow::{Context as _, Result};
use std::path::{Path, PathBuf};

/// The man page of one command (`convirt` itself or a built subcommand).
fn page(cmd: clap::Command) -> clap_mangen::Man {
    clap_mangen::Man::new(cmd)
        .manual("convirt manual")
        .source(format!("convirt {}", env!("CARGO_PKG_VERSION")))
}

/// Prints `convirt(1)` on stdout.
pub(crate) fn print(out: &mut dyn std::io::Write) -> Result<()> {
    page(super::complete::command()).render(out)?;
    Ok(())
}

/// Writes every page into `dir` (created when missing): `convirt.1` and one per visible
/// subcommand. An existing page is replaced only with `force`; each file is written
/// atomically. Returns the files written, sorted.
pub(crate) fn write_all(dir: &Path, force: bool) -> Result<Vec<PathBuf>> {
    // The `help` subcommand gets no page: `man convirt` is its page.
    let mut cmd = super::complete::command().disable_help_subcommand(true);
    cmd.build();
    let mut pages = Vec::new();
    collect(&cmd, &mut pages);
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    let mut written = Vec::new();
    for cmd in pages {
        let man = page(cmd);
        let path = dir.join(man.get_filename());
        let mut text = Vec::new();
        man.render(&mut text)?;
        crate::atomic::write(&path, &text, 0o644, force).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                anyhow::anyhow!("`{}` exists; pass --force to replace it", path.display())
            } else {
                anyhow::anyhow!("cannot write `{}`: {e}", path.display())
            }
        })?;
        written.push(path);
    }
    written.sort();
    Ok(written)
}

fn collect(cmd: &clap::Command, out: &mut Vec<clap::Command>) {
    out.push(cmd.clone());
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        collect(sub, out);
    }
}

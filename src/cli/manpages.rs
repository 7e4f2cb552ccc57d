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

/// Renders one page: clap_mangen's sections, except that the examples (`after_help`) become
/// an EXAMPLES section kept line for line (clap_mangen would fill them as prose under
/// "EXTRA"), followed by SEE ALSO.
fn render(
    cmd: &clap::Command,
    parent: Option<&str>,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    let man = page(cmd.clone());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(out)?;
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        man.render_subcommands_section(out)?;
    }
    if let Some(text) = cmd.get_after_help() {
        writeln!(out, ".SH EXAMPLES\n.nf\n.RS 2")?;
        for line in text
            .to_string()
            .lines()
            .filter(|l| !l.starts_with("Example"))
        {
            writeln!(
                out,
                "{}",
                roff_line(line.strip_prefix("  ").unwrap_or(line))
            )?;
        }
        writeln!(out, ".RE\n.fi")?;
    }
    writeln!(out, ".SH \"SEE ALSO\"")?;
    let mut see = Vec::new();
    if let Some(parent) = parent {
        see.push(format!("\\fB{}\\fR(1)", roff_line(parent)));
        if parent != "convirt" {
            see.push("\\fBconvirt\\fR(1)".to_string());
        }
    }
    see.extend(["\\fBxl\\fR(1)".to_string(), "\\fBxl.cfg\\fR(5)".to_string()]);
    writeln!(out, "{}", see.join(", "))?;
    writeln!(
        out,
        ".PP\nThe settings file: /etc/convirt/convirt.toml (commented, every key with its default)."
    )?;
    writeln!(out, ".SH VERSION\nconvirt {}", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}

/// One line of text for roff: backslashes and hyphens escaped (a bare `-` may print as a
/// typographic hyphen, which breaks copy and paste of options), and a line starting with a
/// control character kept as text.
fn roff_line(line: &str) -> String {
    let escaped = line.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with('.') || escaped.starts_with('\'') {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

/// Prints `convirt(1)` on stdout.
pub(crate) fn print(out: &mut dyn std::io::Write) -> Result<()> {
    let mut cmd = super::complete::command().disable_help_subcommand(true);
    cmd.build();
    render(&cmd, None, out)?;
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
    collect(&cmd, None, &mut pages);
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    let mut written = Vec::new();
    for (cmd, parent) in pages {
        let path = dir.join(page(cmd.clone()).get_filename());
        let mut text = Vec::new();
        render(&cmd, parent.as_deref(), &mut text)?;
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

/// Every visible command with the page name of its parent.
fn collect(
    cmd: &clap::Command,
    parent: Option<String>,
    out: &mut Vec<(clap::Command, Option<String>)>,
) {
    let name = cmd.get_display_name().unwrap_or(cmd.get_name()).to_string();
    out.push((cmd.clone(), parent));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        collect(sub, Some(name.clone()), out);
    }
}

//! Shell completion that knows the store: the shell calls `convirt` back on every Tab
//! (clap_complete's dynamic engine), so image names come from the store in the settings and
//! host names from `[hosts.*]` at the moment of the Tab, not when the script was generated.

use super::Cli;
use crate::settings::{Env, Overrides, Settings};
use crate::store::Store;
use clap::CommandFactory;
use clap_complete::engine::{ArgValueCandidates, CompletionCandidate};
use std::ffi::OsString;
use std::path::PathBuf;

/// The environment variable that switches the binary into completion mode. Not the engine's
/// default `COMPLETE`: a variable that generic could be set for other reasons in a user's
/// environment and would hijack every run.
const VAR: &str = "_CONVIRT_COMPLETE";

/// The name the registration scripts call: looked up in `PATH`, so the same script works for
/// `/usr/bin/convirt` from the package and `~/.cargo/bin/convirt` from `cargo install`.
const COMPLETER: &str = "convirt";

/// Answers a completion request and exits when the shell asked for one; returns otherwise.
/// Must run before anything is written to stdout.
pub(crate) fn handle_request() {
    clap_complete::CompleteEnv::with_factory(command)
        .var(VAR)
        .completer(COMPLETER)
        .complete();
}

/// The command definition with value completers attached: every argument named `image` or
/// `images` (and `create-like`'s source) completes image names, `host` the `[hosts.*]` names,
/// and a `format` without fixed values the config formats.
pub(crate) fn command() -> clap::Command {
    attach(Cli::command())
}

fn attach(mut cmd: clap::Command) -> clap::Command {
    let ids: Vec<(String, bool)> = cmd
        .get_arguments()
        .map(|a| {
            (
                a.get_id().as_str().to_string(),
                a.get_value_parser().possible_values().is_none(),
            )
        })
        .collect();
    for (id, open) in ids {
        let images =
            id == "image" || id == "images" || (id == "src" && cmd.get_name() == "create-like");
        if images {
            cmd = cmd.mut_arg(&id, |a| a.add(ArgValueCandidates::new(image_names)));
        } else if id == "name" && cmd.get_name() == "pull" {
            cmd = cmd.mut_arg(&id, |a| a.add(ArgValueCandidates::new(source_image_names)));
        } else if id == "from" {
            cmd = cmd.mut_arg(&id, |a| a.add(ArgValueCandidates::new(source_names)));
        } else if id == "host" {
            cmd = cmd.mut_arg(&id, |a| a.add(ArgValueCandidates::new(host_names)));
        } else if id == "format" && open {
            cmd = cmd.mut_arg(&id, |a| a.add(ArgValueCandidates::new(formats)));
        }
    }
    let subs: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for name in subs {
        cmd = cmd.mut_subcommand(&name, attach);
    }
    cmd
}

/// Writes the script a shell sources to get completion (`bash`, `zsh`, `fish`, `elvish`,
/// `powershell`).
pub(crate) fn registration(
    shell: clap_complete::Shell,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    let name = shell.to_string();
    let shells = clap_complete::env::Shells::builtins();
    let Some(completer) = shells.completer(&name) else {
        return Err(std::io::Error::other(format!(
            "no dynamic completion for {name}"
        )));
    };
    completer.write_registration(VAR, "convirt", "convirt", COMPLETER, out)?;
    if shell == clap_complete::Shell::Zsh {
        // Installed as `_convirt` in $fpath, the file is autoloaded on the first Tab: its
        // body only registers the completer, so answer that first Tab too (the pattern of
        // clap's static zsh scripts).
        writeln!(
            out,
            "if [ \"$funcstack[1]\" = \"_convirt\" ]; then\n    _clap_dynamic_completer_convirt \"$@\"\nfi"
        )?;
    }
    Ok(())
}

/// `--store` and `--config` as typed on the command line being completed: the words follow
/// `--` in the completer's own arguments.
fn typed_overrides() -> Overrides {
    let args: Vec<OsString> = std::env::args_os().collect();
    let words = match args.iter().position(|a| a == "--") {
        Some(i) => &args[i + 1..],
        None => &args[..],
    };
    let mut over = Overrides::default();
    let mut it = words.iter().map(|w| w.to_string_lossy().into_owned());
    while let Some(w) = it.next() {
        for (flag, slot) in [("--store", &mut over.store), ("--config", &mut over.config)] {
            if w == flag {
                *slot = it
                    .clone()
                    .next()
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from);
            } else if let Some(v) = w.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
                *slot = Some(PathBuf::from(v));
            }
        }
    }
    over
}

fn settings() -> Option<Settings> {
    Settings::load(&typed_overrides(), &Env::current()).ok()
}

/// The store's image names. Reads only the store's directory and `image_store.conf` (never
/// the images), never writes the shipped store, and offers nothing when anything fails: a
/// Tab must not print errors into the user's command line.
fn image_names() -> Vec<CompletionCandidate> {
    let Some(settings) = settings() else {
        return Vec::new();
    };
    let Ok((store, _warnings)) = Store::open(&settings.image_store) else {
        return Vec::new();
    };
    store
        .entries()
        .unwrap_or_default()
        .into_iter()
        .map(|e| CompletionCandidate::new(e.name))
        .collect()
}

fn host_names() -> Vec<CompletionCandidate> {
    settings()
        .map(|s| s.hosts.into_keys().map(CompletionCandidate::new).collect())
        .unwrap_or_default()
}

/// Image names the sources offered when their indexes were last read and verified (kept in
/// the state directory): a Tab never downloads.
fn source_image_names() -> Vec<CompletionCandidate> {
    let Some(settings) = settings() else {
        return Vec::new();
    };
    let sources = super::share::sources_of(&settings);
    crate::share::cached_names(&settings.state_dir, &sources)
        .into_iter()
        .map(|(name, help)| CompletionCandidate::new(name).help(Some(help.into())))
        .collect()
}

fn source_names() -> Vec<CompletionCandidate> {
    settings()
        .map(|s| {
            s.sources
                .into_keys()
                .map(CompletionCandidate::new)
                .collect()
        })
        .unwrap_or_default()
}

fn formats() -> Vec<CompletionCandidate> {
    ["xl", "xm"]
        .into_iter()
        .map(CompletionCandidate::new)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has_candidates(cmd: &clap::Command, path: &[&str], arg: &str) -> bool {
        let mut c = cmd;
        for p in path {
            c = c.find_subcommand(p).expect("subcommand");
        }
        c.get_arguments()
            .find(|a| a.get_id() == arg)
            .expect("argument")
            .get::<ArgValueCandidates>()
            .is_some()
    }

    #[test]
    fn completers_go_on_image_host_and_open_format_arguments() {
        let cmd = attach(
            clap::Command::new("x")
                .subcommand(
                    clap::Command::new("go")
                        .arg(clap::Arg::new("host").long("host"))
                        .arg(clap::Arg::new("image").long("image"))
                        .arg(clap::Arg::new("format").long("format"))
                        .arg(clap::Arg::new("vm").long("vm")),
                )
                .subcommand(
                    clap::Command::new("pack").arg(
                        clap::Arg::new("format")
                            .long("format")
                            .value_parser(["tar.gz", "deb"]),
                    ),
                ),
        );
        assert!(has_candidates(&cmd, &["go"], "host"));
        assert!(has_candidates(&cmd, &["go"], "image"));
        assert!(has_candidates(&cmd, &["go"], "format"));
        assert!(!has_candidates(&cmd, &["go"], "vm"));
        assert!(!has_candidates(&cmd, &["pack"], "format"));
        // The real definition: every command that takes an image completes it.
        let real = command();
        assert!(has_candidates(&real, &["provision"], "image"));
        assert!(has_candidates(&real, &["image", "show"], "image"));
        assert!(has_candidates(&real, &["image", "create-like"], "src"));
        assert!(!has_candidates(&real, &["image", "create-like"], "new"));
        assert!(has_candidates(&real, &["image", "pull"], "name"));
        assert!(has_candidates(&real, &["image", "pull"], "from"));
        assert!(has_candidates(&real, &["image", "publish"], "images"));
    }
}

//! `convirt key generate`, `image publish`, `image search`, `image pull`, and the signature
//! check of `image import` (docs/sharing.md). The sources come from the settings here, so
//! `share` never sees them.

use super::out::{self, errln, outln};
use super::{App, report};
use crate::archive::ImportedImage;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::share::{self, Installed, Source};
use crate::signing;
use crate::store::Store;
use anyhow::Result;
use clap::Subcommand;
use std::io::Write;
use std::path::Path;

#[derive(Subcommand, Debug)]
pub(crate) enum KeyCmd {
    /// Write NAME.key (secret, mode 0600) and NAME.pub (public) in the current directory: an
    /// ed25519 key in minisign's format
    #[command(after_help = "Examples:
  convirt key generate mykey
  tail -1 mykey.pub         the line for `public_key` in [sources.NAME]")]
    Generate {
        /// The key's name: NAME.key and NAME.pub are written
        name: String,
    },
}

pub(crate) fn key(app: &App, cmd: &KeyCmd) -> Result<()> {
    let KeyCmd::Generate { name } = cmd;
    let g = signing::generate(Path::new("."), name)?;
    if app.cli.json {
        return app.print_json(&serde_json::to_value(&g)?);
    }
    outln!(
        "wrote `{}` (secret: keep it private) and `{}`, key {}",
        g.secret.display(),
        g.public.display(),
        g.key_id
    )?;
    outln!("public_key = \"{}\"", g.public_key)?;
    Ok(())
}

/// The `[sources.*]` of the settings, in name order.
pub(crate) fn sources(app: &App) -> Vec<Source> {
    sources_of(&app.settings)
}

pub(crate) fn sources_of(settings: &crate::settings::Settings) -> Vec<Source> {
    settings
        .sources
        .iter()
        .map(|(name, s)| Source {
            name: name.clone(),
            url: s.url.clone(),
            public_key: s.public_key.clone(),
        })
        .collect()
}

pub(crate) fn publish(app: &App, images: &[String], to: &Path, key: &Path) -> Result<()> {
    let epoch =
        crate::archive::source_date_epoch(std::env::var("SOURCE_DATE_EPOCH").ok().as_deref())?;
    let store = app.store()?;
    let r = share::publish(
        &store,
        &app.host,
        &share::PublishOptions {
            images,
            dir: to,
            key,
            epoch,
            progress: app.show_progress(),
        },
    )?;
    if app.cli.json {
        return app.print_json(&serde_json::to_value(&r)?);
    }
    for i in &r.images {
        if i.new {
            outln!(
                "published `{}` version {} as `{}` ({})",
                i.name,
                i.version,
                i.file,
                size(i.size)
            )?;
        } else {
            outln!(
                "`{}` is unchanged since version {} (`{}`)",
                i.name,
                i.version,
                i.file
            )?;
        }
    }
    outln!(
        "index `{}` signed by key {}, published {}",
        r.index.display(),
        r.key_id,
        share::utc(r.published)
    )?;
    Ok(())
}

pub(crate) fn search(app: &App, term: Option<&str>) -> Result<()> {
    let srcs = sources(app);
    if srcs.is_empty() {
        return Err(Diagnostic::error("no image source is configured")
            .with_hint("add a [sources.NAME] table with url and public_key to the settings (docs/sharing.md)")
            .into());
    }
    let store = app.store()?;
    let (offers, failed) = share::search(&store, &srcs, &app.settings.state_dir, term)?;
    if app.cli.json {
        app.print_json(&serde_json::to_value(&offers)?)?;
    } else if offers.is_empty() {
        if failed.0.is_empty() && !app.cli.quiet {
            errln!(
                "no image{} in {} source{}",
                term.map(|t| format!(" matches `{t}`")).unwrap_or_default(),
                srcs.len(),
                if srcs.len() == 1 { "" } else { "s" }
            );
        }
    } else {
        let rows: Vec<[String; 9]> = offers
            .iter()
            .map(|o| {
                let (inst, older) = match &o.installed {
                    Installed::No => ("-".to_string(), "-"),
                    Installed::Other => ("other".to_string(), "?"),
                    Installed::Version { version, older } => {
                        (format!("v{version}"), if *older { "yes" } else { "no" })
                    }
                };
                [
                    o.source.clone(),
                    o.entry.name.clone(),
                    format!("v{}", o.entry.version),
                    o.entry.kind.clone(),
                    o.entry.arch.clone(),
                    size(o.entry.size),
                    inst,
                    older.to_string(),
                    o.entry.title.clone(),
                ]
            })
            .collect();
        let head = [
            "SOURCE",
            "NAME",
            "VERSION",
            "KIND",
            "ARCH",
            "SIZE",
            "INSTALLED",
            "OLDER",
            "TITLE",
        ];
        let mut widths = head.map(str::len);
        for r in &rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = out::stdout();
        let line = |cells: &[&str]| {
            let mut l = String::new();
            for (i, c) in cells.iter().enumerate() {
                if i + 1 == cells.len() {
                    l.push_str(c);
                } else {
                    l.push_str(&format!("{c:<w$}  ", w = widths[i]));
                }
            }
            l
        };
        writeln!(out, "{}", line(&head))?;
        for r in &rows {
            let cells: Vec<&str> = r.iter().map(String::as_str).collect();
            writeln!(out, "{}", line(&cells))?;
        }
    }
    if failed.has_errors() {
        for d in &failed.0 {
            errln!("{}", d.render().trim_end());
        }
        return Err(report::Reported.into());
    }
    Ok(())
}

pub(crate) fn pull(app: &App, spec: &str, from: Option<&str>, force: bool) -> Result<()> {
    let (name, version) = match spec.split_once('@') {
        Some((n, v)) => {
            let v: u64 = v.parse().ok().filter(|v| *v > 0).ok_or_else(|| {
                Diagnostic::error(format!(
                    "`{spec}`: the version after `@` is a number, 1 or more"
                ))
            })?;
            (n, Some(v))
        }
        None => (spec, None),
    };
    let store = app.store()?;
    crate::interrupt::install();
    let r = share::pull(
        &store,
        &app.host,
        &sources(app),
        &app.settings.state_dir,
        &share::PullRequest {
            name,
            version,
            from,
            force,
            progress: app.show_progress(),
        },
    )
    .map_err(|e| {
        if crate::interrupt::interrupted() {
            report::Interrupted(
                "`image pull` was interrupted (Ctrl-C); the store is unchanged".into(),
            )
            .into()
        } else {
            anyhow::Error::from(e)
        }
    })?;
    report::warn(app.cli.quiet, &r.warnings);
    if app.cli.json {
        return app.print_json(&serde_json::to_value(&r)?);
    }
    outln!(
        "pulled `{}` version {} from source `{}` ({}, signed by key {}){}",
        r.name,
        r.version,
        r.source,
        size(r.size),
        r.key_id,
        if r.replaced {
            "; replaced the old one"
        } else {
            ""
        }
    )?;
    Ok(())
}

/// A good signature beside an imported file: which key, of which source.
pub(crate) struct Signed {
    pub(crate) key_id: String,
    pub(crate) source: Option<String>,
}

impl Signed {
    pub(crate) fn describe(&self) -> String {
        match &self.source {
            Some(s) => format!("{} (source `{s}`)", self.key_id),
            None => format!("{} (--public-key)", self.key_id),
        }
    }
}

/// `image import`'s signature rule: a `FILE.minisig` beside the file must verify against a
/// trusted key (the sources' keys, `--public-key`); without one the import goes on unless
/// signatures are required.
pub(crate) fn import_signature(
    app: &App,
    file: &Path,
    require: bool,
    public_key: Option<&str>,
) -> Result<Option<Signed>> {
    let require = require || app.settings.require_signature;
    let sig_path = signing::sig_path(file);
    if sig_path.symlink_metadata().is_err() {
        if require {
            return Err(Diagnostic::error(format!(
                "`{}` has no signature beside it (`{}`), and signatures are required",
                file.display(),
                sig_path.display()
            ))
            .with_hint(if app.settings.require_signature {
                "`require_signature = true` is set in the settings"
            } else {
                "--require-signature was given"
            })
            .with_hint("nothing was imported; the store is unchanged")
            .into());
        }
        return Ok(None);
    }
    let sig = signing::read_small(&sig_path, signing::MAX_SIG)?;
    let mut keys: Vec<(Option<String>, String)> = app
        .settings
        .sources
        .iter()
        .map(|(n, s)| (Some(n.clone()), s.public_key.clone()))
        .collect();
    if let Some(k) = public_key {
        let text = if Path::new(k).is_file() {
            signing::read_small(Path::new(k), 4096)?
        } else {
            k.to_string()
        };
        keys.push((None, text));
    }
    if keys.is_empty() {
        return Err(Diagnostic::error(format!(
            "`{}` has a signature, but no key is trusted to check it",
            file.display()
        ))
        .with_hint("add the publisher's [sources.NAME] to the settings, or pass --public-key KEY")
        .into());
    }
    let mut reasons = Vec::new();
    for (source, text) in keys {
        let pk = signing::parse_public_key(&text)
            .map_err(|e| Diagnostic::error(format!("--public-key: {e}")))?;
        let f = std::fs::File::open(file)
            .map_err(|e| Diagnostic::error(format!("cannot open `{}`: {e}", file.display())))?;
        match signing::verify(&pk, &sig, f) {
            Ok(()) => {
                return Ok(Some(Signed {
                    key_id: signing::public_key_id(&pk),
                    source,
                }));
            }
            Err(e) => reasons.push(e),
        }
    }
    let mut d = Diagnostic::error(format!(
        "`{}` does not verify against any trusted key; refused",
        sig_path.display()
    ));
    for r in reasons {
        d = d.with_hint(r);
    }
    Err(Diagnostics::from(d.with_hint("nothing was imported; the store is unchanged")).into())
}

/// Records where the images of a signed import came from.
pub(crate) fn record_signed_import(
    app: &App,
    store: &Store,
    file: &Path,
    signed: &Signed,
    images: &[ImportedImage],
) {
    let path = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    let sha = share::sha256_file(file).map(|(h, _)| h).unwrap_or_default();
    for i in images {
        let o = share::Origin::new(
            signed.source.clone(),
            None,
            path.display().to_string(),
            sha.clone(),
            signed.key_id.clone(),
        );
        if let Err(e) = share::write_origin(store, &i.name, o) {
            if !app.cli.quiet {
                errln!(
                    "warning: the origin of image `{}` could not be recorded: {e}",
                    i.name
                );
            }
        }
    }
}

/// `1.5 MiB`, `312 KiB`, `900 B`.
fn size(n: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (unit, s) in UNITS {
        if n >= s {
            return format!("{:.1} {unit}", n as f64 / s as f64);
        }
    }
    format!("{n} B")
}

//! `image search` and `image pull`: each source's index is downloaded with its signature,
//! verified against the source's key, checked against the last publication time seen (kept
//! in the state directory, so an old index cannot be replayed), and cached for completion.
//! A pull downloads the pack into a hidden temporary file in the store, bounded by the
//! entry's size, checks its SHA-256 and signature, then runs the safe `image import`.

use super::index::{self, Entry, INDEX, Index};
use super::origin::{self, Origin};
use crate::archive;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::fetch::{self, Client};
use crate::host::Host;
use crate::signing;
use crate::store::Store;
use sha2::{Digest, Sha256};
use std::io::{Cursor, Seek, Write};
use std::path::{Path, PathBuf};

/// A `[sources.NAME]` of the settings.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    pub(crate) name: String,
    pub(crate) url: String,
    pub(crate) public_key: String,
}

/// What the state directory keeps per source: the newest publication time seen, under
/// which key, and that index (for completion).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Seen {
    key_id: String,
    url: String,
    published: u64,
    index: Index,
}

fn seen_path(state_dir: &Path, source: &str) -> PathBuf {
    state_dir.join("sources").join(format!("{source}.json"))
}

fn read_seen(state_dir: &Path, source: &str) -> Option<Seen> {
    let text = std::fs::read(seen_path(state_dir, source)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Image names of the indexes last read, for completion (no download).
pub(crate) fn cached_names(state_dir: &Path, sources: &[Source]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for s in sources {
        if let Some(seen) = read_seen(state_dir, &s.name) {
            for e in seen.index.newest() {
                out.push((
                    e.name.clone(),
                    format!("{} v{}: {}", s.name, e.version, e.title),
                ));
            }
        }
    }
    out
}

fn download(
    client: &Client,
    url: &str,
    max: u64,
    exact: bool,
    out: &mut dyn Write,
    progress: &dyn Fn(u64),
) -> Result<u64, String> {
    client.get(url, max, exact, out, &|n| {
        progress(n);
        if crate::interrupt::interrupted() {
            Err("interrupted (Ctrl-C)".into())
        } else {
            Ok(())
        }
    })
}

/// Downloads and verifies a source's index: signature, format, entries, and that it is not
/// older than the newest one seen from this source under the same key.
pub(crate) fn fetch_index(
    client: &Client,
    source: &Source,
    state_dir: &Path,
) -> Result<Index, Diagnostic> {
    let name = &source.name;
    let fail =
        |what: String| Diagnostic::error(format!("source `{name}`: {what}; the index is refused"));
    let pk = signing::parse_public_key(&source.public_key).map_err(fail)?;
    let key_id = signing::public_key_id(&pk);
    let url = fetch::join(&source.url, INDEX);
    let mut text = Vec::new();
    download(client, &url, index::MAX_INDEX, false, &mut text, &|_| {}).map_err(fail)?;
    let mut sig = Vec::new();
    let sig_url = format!("{url}.{}", signing::SIG_EXT);
    download(client, &sig_url, signing::MAX_SIG, false, &mut sig, &|_| {}).map_err(fail)?;
    let index = verify_index(&pk, &url, &text, &sig).map_err(fail)?;
    let seen = read_seen(state_dir, name).filter(|s| s.key_id == key_id);
    if let Some(s) = &seen {
        if index.published < s.published {
            return Err(fail(format!(
                "`{url}` was published at {}, before the index seen earlier ({}): an old index replayed",
                super::utc(index.published),
                super::utc(s.published)
            ))
            .with_hint("a mirror may be stale; if the publisher really went back, remove the record in the state directory")
            .with_hint(format!("the record: `{}`", seen_path(state_dir, name).display())));
        }
    }
    let record = Seen {
        key_id,
        url: source.url.clone(),
        published: index.published,
        index: index.clone(),
    };
    let path = seen_path(state_dir, name);
    let text = serde_json::to_string_pretty(&record).unwrap_or_default();
    std::fs::create_dir_all(state_dir.join("sources"))
        .and_then(|()| crate::atomic::write(&path, text.as_bytes(), 0o644, true))
        .map_err(|e| {
            Diagnostic::error(format!(
                "cannot record the index of source `{name}` in `{}`: {e}",
                path.display()
            ))
            .with_hint("the record keeps an old index from being replayed; convirt needs it")
        })?;
    Ok(index)
}

/// An index as downloaded, checked: its signature by `pk`, then its format and entries.
fn verify_index(
    pk: &minisign::PublicKey,
    url: &str,
    text: &[u8],
    sig: &[u8],
) -> Result<Index, String> {
    let sig = String::from_utf8_lossy(sig);
    signing::verify(pk, &sig, Cursor::new(text))
        .map_err(|e| format!("`{url}` does not verify against the source's public key: {e}"))?;
    Index::parse(text).map_err(|e| format!("`{url}`: {e}"))
}

/// What is installed of an offered image.
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub(crate) enum Installed {
    /// No image of that name in the store.
    No,
    /// An image of that name with no origin from this source.
    Other,
    /// Pulled from this source at `version`.
    Version { version: u64, older: bool },
}

/// One line of `image search`: the newest version a source offers.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Offer {
    pub(crate) source: String,
    #[serde(flatten)]
    pub(crate) entry: Entry,
    pub(crate) versions: Vec<u64>,
    pub(crate) installed: Installed,
}

fn installed(store: &Store, source: &str, e: &Entry) -> Installed {
    if store.root.join(&e.name).symlink_metadata().is_err() {
        return Installed::No;
    }
    match origin::read(store, &e.name) {
        Some(o) if o.source.as_deref() == Some(source) && o.version.is_some() => {
            let v = o.version.unwrap_or(0);
            Installed::Version {
                version: v,
                older: v < e.version,
            }
        }
        _ => Installed::Other,
    }
}

/// The newest entry of every source matching `term` (in name, title or description, any
/// case). Sources that fail are reported in the second part; the others are still listed.
pub(crate) fn search(
    store: &Store,
    sources: &[Source],
    state_dir: &Path,
    term: Option<&str>,
) -> Result<(Vec<Offer>, Diagnostics), Diagnostic> {
    let client = Client::new().map_err(Diagnostic::error)?;
    let term = term.map(str::to_lowercase);
    let mut offers = Vec::new();
    let mut failed = Diagnostics::default();
    for s in sources {
        let index = match fetch_index(&client, s, state_dir) {
            Ok(i) => i,
            Err(d) => {
                failed.push(d);
                continue;
            }
        };
        for e in index.newest() {
            if let Some(t) = &term {
                let hay = format!("{}\n{}\n{}", e.name, e.title, e.description).to_lowercase();
                if !hay.contains(t.as_str()) {
                    continue;
                }
            }
            let mut versions: Vec<u64> = index
                .images
                .iter()
                .filter(|x| x.name == e.name)
                .map(|x| x.version)
                .collect();
            versions.sort_unstable();
            offers.push(Offer {
                source: s.name.clone(),
                installed: installed(store, &s.name, e),
                entry: e.clone(),
                versions,
            });
        }
    }
    Ok((offers, failed))
}

pub(crate) struct PullRequest<'a> {
    pub(crate) name: &'a str,
    pub(crate) version: Option<u64>,
    pub(crate) from: Option<&'a str>,
    pub(crate) force: bool,
    pub(crate) progress: bool,
}

#[derive(Debug, serde::Serialize)]
pub(crate) struct PullReport {
    pub(crate) source: String,
    pub(crate) name: String,
    pub(crate) version: u64,
    pub(crate) url: String,
    pub(crate) size: u64,
    pub(crate) sha256: String,
    pub(crate) key_id: String,
    pub(crate) replaced: bool,
    #[serde(skip)]
    pub(crate) warnings: Diagnostics,
}

const UNCHANGED: &str = "nothing was imported; the store is unchanged";

/// Finds the entry, downloads and verifies its pack, imports it and records its origin.
pub(crate) fn pull(
    store: &Store,
    host: &Host,
    sources: &[Source],
    state_dir: &Path,
    req: &PullRequest<'_>,
) -> Result<PullReport, Diagnostics> {
    crate::store::check_image_name(req.name).map_err(Diagnostic::error)?;
    let chosen: Vec<&Source> = match req.from {
        Some(f) => match sources.iter().find(|s| s.name == f) {
            Some(s) => vec![s],
            None => {
                let names: Vec<&str> = sources.iter().map(|s| s.name.as_str()).collect();
                return Err(
                    Diagnostic::error(format!("no source `{f}` in the settings"))
                        .with_hint(if names.is_empty() {
                            "add a [sources.NAME] table with url and public_key to the settings"
                                .to_string()
                        } else {
                            format!("the sources: {}", names.join(", "))
                        })
                        .into(),
                );
            }
        },
        None => sources.iter().collect(),
    };
    if chosen.is_empty() {
        return Err(Diagnostic::error("no image source is configured")
            .with_hint("add a [sources.NAME] table with url and public_key to the settings (docs/sharing.md)")
            .into());
    }
    let client = Client::new().map_err(Diagnostic::error)?;
    let mut found: Vec<(&Source, Entry)> = Vec::new();
    let mut all_names: Vec<String> = Vec::new();
    let mut versions: Vec<u64> = Vec::new();
    let several = chosen.len() > 1;
    for s in chosen {
        let index = fetch_index(&client, s, state_dir).map_err(|d| {
            if several {
                d.with_hint("every source is read to find the image; `--from SOURCE` reads one")
            } else {
                d
            }
        })?;
        if let Some(e) = index.find(req.name, req.version) {
            found.push((s, e.clone()));
        }
        all_names.extend(index.images.iter().map(|e| e.name.clone()));
        versions.extend(
            index
                .images
                .iter()
                .filter(|e| e.name == req.name)
                .map(|e| e.version),
        );
    }
    let shown = match req.version {
        Some(v) => format!("{}@{v}", req.name),
        None => req.name.to_string(),
    };
    let (source, entry) = match found.len() {
        1 => found.remove(0),
        0 => {
            let d = Diagnostic::error(format!("no source offers `{shown}`"));
            versions.sort_unstable();
            versions.dedup();
            let d = if !versions.is_empty() {
                let v: Vec<String> = versions.iter().map(u64::to_string).collect();
                d.with_hint(format!("the versions offered: {}", v.join(", ")))
            } else {
                match crate::subst::closest(req.name, all_names.iter().map(String::as_str)) {
                    Some(c) => d.with_hint(format!("did you mean `{c}`?")),
                    None => d.with_hint("`convirt image search` lists what the sources offer"),
                }
            };
            return Err(d.into());
        }
        _ => {
            let names: Vec<String> = found.iter().map(|(s, _)| format!("`{}`", s.name)).collect();
            return Err(Diagnostic::error(format!(
                "`{shown}` is offered by several sources: {}",
                names.join(", ")
            ))
            .with_hint("choose one with `--from SOURCE`")
            .into());
        }
    };
    if !req.force && store.root.join(&entry.name).symlink_metadata().is_ok() {
        return Err(Diagnostic::error(format!(
            "image `{}` already exists in `{}`",
            entry.name,
            store.root.display()
        ))
        .with_hint("pass `--force` to replace it")
        .into());
    }
    let refuse = |what: String| -> Diagnostics {
        Diagnostic::error(format!(
            "refusing `{}` version {} from source `{}`: {what}",
            entry.name, entry.version, source.name
        ))
        .with_hint(UNCHANGED)
        .into()
    };
    let url = fetch::join(&source.url, &entry.url);
    // Beside the store's images, hidden, locked, removed on every failure (and by the
    // store's sweep, should this process die).
    let mut tmp = tempfile::Builder::new()
        .prefix(crate::tree::TMP_FILE_PREFIX)
        .tempfile_in(&store.root)
        .map_err(|e| {
            Diagnostic::error(format!(
                "cannot create a file in `{}`: {e}",
                store.root.display()
            ))
        })?;
    let _ = crate::lock::try_exclusive(tmp.as_file());
    let bar = progress_bar(req.progress, entry.size, &entry.name);
    let mut hashing = HashingWriter {
        inner: tmp.as_file_mut(),
        hash: Sha256::new(),
    };
    let got = download(&client, &url, entry.size, true, &mut hashing, &|n| {
        if let Some(b) = &bar {
            b.set_position(n);
        }
    });
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    got.map_err(|e| refuse(format!("the download failed: {e}")))?;
    let sha = super::publish::hex(&hashing.hash.finalize());
    if sha != entry.sha256 {
        return Err(refuse(format!(
            "its SHA-256 is {sha} but the signed index says {}: the pack was changed",
            entry.sha256
        )));
    }
    let pk = signing::parse_public_key(&source.public_key).map_err(Diagnostic::error)?;
    let key_id = signing::public_key_id(&pk);
    let mut sig = Vec::new();
    let sig_url = format!("{url}.{}", signing::SIG_EXT);
    download(
        &client,
        &sig_url,
        signing::MAX_SIG,
        false,
        &mut sig,
        &|_| {},
    )
    .map_err(|e| refuse(format!("its signature: {e}")))?;
    let file = tmp.as_file_mut();
    file.flush()
        .and_then(|()| file.rewind())
        .map_err(|e| refuse(e.to_string()))?;
    signing::verify(&pk, &String::from_utf8_lossy(&sig), &mut *file)
        .map_err(|e| refuse(format!("the pack's signature: {e}")))?;
    let report = archive::import(
        store,
        tmp.path(),
        host,
        &archive::ImportOptions {
            force: req.force,
            progress: req.progress,
            max_size: archive::DEFAULT_MAX_SIZE,
            expect: Some(entry.name.clone()),
        },
    )?;
    drop(tmp);
    let mut warnings = report.warnings;
    if entry.arch != host.machine {
        warnings.push(Diagnostic::warning(format!(
            "image `{}` was published for {}, this machine is {}",
            entry.name, entry.arch, host.machine
        )));
    }
    let o = Origin::new(
        Some(source.name.clone()),
        Some(entry.version),
        url.clone(),
        entry.sha256.clone(),
        key_id.clone(),
    );
    if let Err(e) = origin::write(store, &entry.name, o) {
        warnings.push(Diagnostic::warning(format!(
            "image `{}` was imported but its origin could not be recorded: {e}",
            entry.name
        )));
    }
    Ok(PullReport {
        source: source.name.clone(),
        name: entry.name.clone(),
        version: entry.version,
        url,
        size: entry.size,
        sha256: entry.sha256.clone(),
        key_id,
        replaced: report.images.iter().any(|i| i.replaced),
        warnings,
    })
}

struct HashingWriter<'a> {
    inner: &'a mut std::fs::File,
    hash: Sha256,
}

impl Write for HashingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn progress_bar(enabled: bool, total: u64, name: &str) -> Option<indicatif::ProgressBar> {
    if !enabled {
        return None;
    }
    let pb = indicatif::ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::stderr_with_hz(8),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {eta}",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(format!("downloading {name}"));
    Some(pb)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A signed index of one entry, and the key that checks it.
    fn signed() -> (Vec<u8>, Vec<u8>, minisign::PublicKey) {
        let d = tempfile::tempdir().unwrap();
        let g = signing::generate(d.path(), "k").unwrap();
        let signer = signing::Signer::load(&g.secret).unwrap();
        let pk = signing::parse_public_key(&g.public_key).unwrap();
        let mut entry = Index::empty();
        entry.published = 7;
        let mut text = entry.to_json().into_bytes();
        text.splice(
            text.len() - 4..text.len() - 4,
            br#"{"name": "A", "version": 1, "title": "t", "description": "d", "kind": "PV",
 "arch": "x86_64", "size": 3, "url": "A-1.tar.gz", "published": 7,
 "sha256": "0000000000000000000000000000000000000000000000000000000000000000"}"#
                .iter()
                .copied(),
        );
        let sig = signer.sign(&text, "convirt index published:7").unwrap();
        (text, sig.into_bytes(), pk)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(100))]
        /// Any change to the index is refused; a damaged signature is an error or (where
        /// the change does not matter, as in its unsigned first line) still good, and
        /// nothing panics.
        #[test]
        fn a_changed_index_is_refused_and_nothing_panics(
            in_sig: bool,
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            cut: bool,
        ) {
            let (text, sig, pk) = signed();
            prop_assert!(verify_index(&pk, "u", &text, &sig).is_ok());
            let (mut t, mut s) = (text.clone(), sig.clone());
            let target = if in_sig { &mut s } else { &mut t };
            let i = at.index(target.len());
            if cut {
                target.truncate(i);
            } else {
                target[i] = byte;
            }
            let r = verify_index(&pk, "u", &t, &s);
            if t != text {
                prop_assert!(r.is_err(), "a changed index verified: {}", String::from_utf8_lossy(&t));
            }
        }
    }
}

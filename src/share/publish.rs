//! `image publish`: packs images with the reproducible `image pack`, gives each changed one
//! the next version, signs every new pack, and writes the signed index last.

use super::index::{self, Entry, INDEX, Index};
use crate::archive;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::host::Host;
use crate::image::{self, Image};
use crate::signing::{self, Signer};
use crate::store::Store;
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

pub(crate) struct PublishOptions<'a> {
    pub(crate) images: &'a [String],
    pub(crate) dir: &'a Path,
    pub(crate) key: &'a Path,
    /// `SOURCE_DATE_EPOCH`, as for `image pack`.
    pub(crate) epoch: Option<u64>,
    pub(crate) progress: bool,
}

/// One image of a publish: a new version, or the one already there (same pack).
#[derive(Debug, serde::Serialize)]
pub(crate) struct Published {
    pub(crate) name: String,
    pub(crate) version: u64,
    pub(crate) file: String,
    pub(crate) size: u64,
    pub(crate) sha256: String,
    pub(crate) new: bool,
}

#[derive(Debug, serde::Serialize)]
pub(crate) struct PublishReport {
    pub(crate) index: PathBuf,
    pub(crate) published: u64,
    pub(crate) key_id: String,
    pub(crate) images: Vec<Published>,
}

fn fs_fail(p: &Path, e: std::io::Error) -> Diagnostic {
    Diagnostic::error(format!("cannot write `{}`: {e}", p.display()))
}

/// SHA-256 and size of a file.
pub(crate) fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let got = f.read(&mut buf)?;
        if got == 0 {
            break;
        }
        h.update(&buf[..got]);
        n += got as u64;
    }
    Ok((hex(&h.finalize()), n))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The index already in `dir`, checked against the key: publishing never re-signs what
/// another key signed.
fn existing_index(dir: &Path, signer: &Signer) -> Result<Index, Diagnostic> {
    let path = dir.join(INDEX);
    if path.symlink_metadata().is_err() {
        return Ok(Index::empty());
    }
    let shown = path.display().to_string();
    let mut text = Vec::new();
    File::open(&path)
        .and_then(|f| f.take(index::MAX_INDEX + 1).read_to_end(&mut text))
        .map_err(|e| Diagnostic::error(format!("cannot read `{shown}`: {e}")))?;
    let sig = signing::read_small(&signing::sig_path(&path), signing::MAX_SIG).map_err(|d| {
        d.with_hint("an index without its signature is not updated; remove it to start a new one")
    })?;
    signer.verify_own(&sig, &text).map_err(|e| {
        Diagnostic::error(format!(
            "`{shown}` is not signed by key {}: {e}",
            signer.key_id
        ))
        .with_hint("publish with the key that signed it, or into another directory")
    })?;
    Index::parse(&text).map_err(|e| Diagnostic::error(format!("`{shown}`: {e}")))
}

/// A pack made in `dir` under a temporary name, removed unless it is moved into place.
struct Made {
    tmp: tempfile::TempPath,
    entry: Entry,
    new: bool,
}

pub(crate) fn publish(
    store: &Store,
    host: &Host,
    opts: &PublishOptions<'_>,
) -> Result<PublishReport, Diagnostics> {
    let signer = Signer::load(opts.key)?;
    let dir = opts.dir;
    fs::create_dir_all(dir).map_err(|e| fs_fail(dir, e))?;
    // One publisher at a time per directory.
    let lock_path = crate::lock::publish_path(dir);
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| fs_fail(&lock_path, e))?;
    if !crate::lock::try_exclusive(&lock).map_err(|e| fs_fail(&lock_path, e))? {
        return Err(Diagnostic::error(format!(
            "another `image publish` is writing to `{}`",
            dir.display()
        ))
        .into());
    }
    let mut index = existing_index(dir, &signer)?;
    let mut names = opts.images.to_vec();
    names.sort();
    names.dedup();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let published = now.max(index.published + 1);
    let mut made: Vec<Made> = Vec::new();
    for name in &names {
        let img_dir = store.image_dir(name)?;
        let img = Image::load(name, &img_dir, host)?;
        let html = img.description_html().unwrap_or_default();
        let mut description = image::description_text(&html, 78);
        if description.chars().count() > index::MAX_DESCRIPTION {
            description = description.chars().take(index::MAX_DESCRIPTION).collect();
        }
        let tmp = tempfile::Builder::new()
            .prefix(".convirt-publish-")
            .suffix(".tar.gz")
            .tempfile_in(dir)
            .map_err(|e| fs_fail(dir, e))?
            .into_temp_path();
        archive::pack(
            store,
            &archive::PackOptions {
                images: vec![name.clone()],
                output: Some(tmp.to_path_buf()),
                format: Some(archive::Format::TarGz),
                force: true,
                source_date_epoch: opts.epoch,
                progress: opts.progress,
            },
        )?;
        let (sha256, size) = sha256_file(&tmp).map_err(|e| fs_fail(&tmp, e))?;
        let newest = index.find(name, None);
        if let Some(old) = newest.filter(|o| o.sha256 == sha256) {
            made.push(Made {
                tmp,
                entry: old.clone(),
                new: false,
            });
            continue;
        }
        let version = newest.map_or(1, |o| o.version + 1);
        let file = format!("{name}-{version}.tar.gz");
        if dir.join(&file).symlink_metadata().is_ok() {
            return Err(Diagnostic::error(format!(
                "`{}` already exists but the index does not list it",
                dir.join(&file).display()
            ))
            .with_hint("convirt never replaces a published pack; move it away first")
            .into());
        }
        made.push(Made {
            tmp,
            entry: Entry {
                name: name.clone(),
                version,
                title: img
                    .description_html()
                    .map(|h| image::description_title(&h))
                    .unwrap_or_default(),
                description,
                kind: img.kind().to_string(),
                arch: host.machine.clone(),
                size,
                sha256,
                url: file,
                published,
            },
            new: true,
        });
    }
    let mut report = Vec::new();
    let any_new = made.iter().any(|m| m.new);
    for m in made {
        if m.new {
            let dest = dir.join(&m.entry.url);
            crate::sys::rename_noreplace(&m.tmp, &dest).map_err(|e| fs_fail(&dest, e))?;
            let _ = m.tmp.keep();
            let sig = signer.sign_file(
                &dest,
                &format!("convirt pack {} sha256:{}", m.entry.url, m.entry.sha256),
            )?;
            let sig_path = signing::sig_path(&dest);
            crate::atomic::write(&sig_path, sig.as_bytes(), 0o644, true)
                .map_err(|e| fs_fail(&sig_path, e))?;
            index.images.push(m.entry.clone());
        }
        report.push(Published {
            name: m.entry.name,
            version: m.entry.version,
            file: m.entry.url,
            size: m.entry.size,
            sha256: m.entry.sha256,
            new: m.new,
        });
    }
    let index_path = dir.join(INDEX);
    if any_new || index_path.symlink_metadata().is_err() {
        index.published = published;
        index
            .images
            .sort_by(|a, b| a.name.cmp(&b.name).then(a.version.cmp(&b.version)));
        let text = index.to_json();
        let sig = signer.sign(
            text.as_bytes(),
            &format!("convirt index published:{published}"),
        )?;
        crate::atomic::write(&index_path, text.as_bytes(), 0o644, true)
            .map_err(|e| fs_fail(&index_path, e))?;
        let sig_path = signing::sig_path(&index_path);
        crate::atomic::write(&sig_path, sig.as_bytes(), 0o644, true)
            .map_err(|e| fs_fail(&sig_path, e))?;
    }
    Ok(PublishReport {
        index: index_path,
        published: index.published,
        key_id: signer.key_id.clone(),
        images: report,
    })
}

//! `image pack`: walks each image, then streams it into the tar writer, hashing every byte
//! for the manifest on the way, with compression on every core; a Debian package is handed
//! to `deb`.

use super::compress::{Codec, ParallelWriter};
use super::tarfmt::{Extent, Meta, TarWriter};
use super::{
    Format, IO_BUF, MANIFEST, MAX_ENTRIES, PackStats, Progress, Record, RecordKind, clamp_mtime,
    data_extents, deb, hex, manifest_text, special_bits, write_error,
};
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::store::Store;
use crate::tree::{self, Entry, Kind};
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub struct PackOptions {
    pub images: Vec<String>,
    pub output: Option<PathBuf>,
    pub format: Option<Format>,
    pub force: bool,
    /// `SOURCE_DATE_EPOCH`: no mtime in the archive is later than this.
    pub source_date_epoch: Option<u64>,
    pub progress: bool,
}

#[derive(Debug, serde::Serialize)]
pub struct PackReport {
    pub output: PathBuf,
    pub format: Format,
    pub images: Vec<String>,
    pub entries: usize,
    /// File data packed (holes not counted).
    pub data_bytes: u64,
    pub archive_bytes: u64,
}

/// Walks an image with the tree module's policy (the same `create-like` applies), then adds
/// what an archive needs: UTF-8 names, no set-uid/set-gid/sticky bits, mtimes clamped.
fn walk_image(name: &str, dir: &Path, epoch: Option<u64>) -> Result<Vec<Entry>, Diagnostics> {
    let root = fs::canonicalize(dir)
        .map_err(|e| Diagnostic::error(format!("cannot read `{}`: {e}", dir.display())))?;
    let mut items = tree::walk(&root, &|rel| rel == Path::new(MANIFEST)).map_err(|d| {
        let mut all = Diagnostics::from(Diagnostic::error(format!("cannot pack image `{name}`")));
        all.extend(d);
        all
    })?;
    if items.len() > MAX_ENTRIES {
        return Err(Diagnostic::error(format!(
            "image `{name}` has more than {MAX_ENTRIES} entries, more than `image import` accepts"
        ))
        .into());
    }
    for item in &mut items {
        let Some(rel) = item.rel.to_str() else {
            return Err(Diagnostic::error(format!(
                "`{}` has a name that is not UTF-8; convirt archives hold UTF-8 names only",
                item.abs.display()
            ))
            .with_hint("rename the file")
            .into());
        };
        let shown = if rel.is_empty() {
            name.to_string()
        } else {
            format!("{name}/{rel}")
        };
        match &item.kind {
            Kind::Symlink(t) if t.to_str().is_none() => {
                return Err(
                    Diagnostic::error(format!("`{shown}` has a target that is not UTF-8")).into(),
                );
            }
            Kind::Symlink(_) => {}
            _ => {
                if let Some(bit) = special_bits(item.mode) {
                    return Err(Diagnostic::error(format!(
                        "cannot pack `{shown}`: it has {bit} (mode {:04o}), which `image import` refuses",
                        item.mode
                    ))
                    .with_hint(format!("run `chmod u-s,g-s,o-t {}`", item.abs.display()))
                    .into());
                }
            }
        }
        item.mtime = clamp_mtime(item.mtime, epoch) as i64;
    }
    Ok(items)
}

/// An entry's path inside the image, known to be UTF-8 since `walk_image`.
pub(super) fn rel_str(item: &Entry) -> &str {
    item.rel.to_str().unwrap_or_default()
}

/// The tar stream being written, with its buffer, progress bar and counts.
struct Packer<'a, W: Write> {
    tw: TarWriter<W>,
    output: &'a Path,
    buf: Vec<u8>,
    progress: &'a Progress,
    stats: PackStats,
}

impl<W: Write> Packer<'_, W> {
    /// Reads `len` bytes at `offset` into the tar stream, hashing them.
    fn copy_range(
        &mut self,
        file: &File,
        shown: &str,
        (offset, len): Extent,
        hasher: &mut Sha256,
    ) -> io::Result<()> {
        let mut done = 0u64;
        while done < len {
            let want = (len - done).min(self.buf.len() as u64) as usize;
            crate::interrupt::check_io()?;
            let n = file.read_at(&mut self.buf[..want], offset + done)?;
            if n == 0 {
                return Err(io::Error::other(format!(
                    "`{shown}` shrank while it was packed"
                )));
            }
            hasher.update(&self.buf[..n]);
            self.tw.data(&self.buf[..n])?;
            done += n as u64;
            self.progress.inc(n as u64);
        }
        Ok(())
    }

    /// One file: dense, or sparse when the file system reports holes.
    fn file(&mut self, item: &Entry, meta: &Meta, shown: &str) -> io::Result<Record> {
        let rel = rel_str(item);
        let file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&item.abs)?;
        let size = file.metadata()?.len();
        let mut hasher = Sha256::new();
        let mut r = match data_extents(&file, size)? {
            None => {
                self.tw.file(meta, size)?;
                self.copy_range(&file, shown, (0, size), &mut hasher)?;
                self.tw.end_data(size)?;
                self.stats.data += size;
                Record::new(rel, RecordKind::File, meta.mode)
            }
            Some(extents) => {
                self.tw.sparse(meta, &extents, size)?;
                let mut on_disk = 0;
                for &e in &extents {
                    self.copy_range(&file, shown, e, &mut hasher)?;
                    on_disk += e.1;
                }
                self.tw.end_data(on_disk)?;
                self.stats.data += on_disk;
                let mut r = Record::new(rel, RecordKind::Sparse, meta.mode);
                r.data = Some(extents.iter().map(|&(o, l)| [o, l]).collect());
                r
            }
        };
        r.size = Some(size);
        r.sha256 = Some(hex(&hasher.finalize()));
        Ok(r)
    }

    /// One image directory: its entries in order, then its manifest.
    fn image(&mut self, name: &str, items: &[Entry]) -> Result<(), Diagnostic> {
        let output = self.output;
        let fail = |what: &str, e: io::Error| {
            if e.kind() == io::ErrorKind::Interrupted || crate::sys::is_full(&e) {
                write_error(output, &e)
            } else {
                Diagnostic::error(format!("cannot pack `{what}`: {e}"))
            }
        };
        let mut records = Vec::new();
        let newest = items.iter().map(|i| i.mtime as u64).max().unwrap_or(0);
        for item in items {
            let rel = rel_str(item);
            let shown = if rel.is_empty() {
                name.to_string()
            } else {
                format!("{name}/{rel}")
            };
            let dir_path = format!("{shown}/");
            let meta = Meta {
                path: match item.kind {
                    Kind::Dir => dir_path.as_str(),
                    _ => shown.as_str(),
                },
                mode: super::normal_mode(matches!(item.kind, Kind::Dir), item.mode),
                mtime: item.mtime as u64,
            };
            self.stats.entries += 1;
            match &item.kind {
                Kind::Dir => {
                    self.tw.dir(&meta).map_err(|e| fail(&shown, e))?;
                    if !rel.is_empty() {
                        records.push(Record::new(rel, RecordKind::Dir, meta.mode));
                    }
                }
                Kind::Symlink(target) => {
                    let target = target.to_str().unwrap_or_default();
                    self.tw
                        .symlink(&meta, target)
                        .map_err(|e| fail(&shown, e))?;
                    let mut r = Record::new(rel, RecordKind::Symlink, 0o777);
                    r.target = Some(target.to_string());
                    records.push(r);
                }
                Kind::File => {
                    records.push(
                        self.file(item, &meta, &shown)
                            .map_err(|e| fail(&shown, e))?,
                    );
                }
            }
        }
        let text = manifest_text(name, &records);
        let path = format!("{name}/{MANIFEST}");
        let meta = Meta {
            path: &path,
            mode: 0o644,
            mtime: newest,
        };
        let len = text.len() as u64;
        (|| {
            self.tw.file(&meta, len)?;
            self.tw.data(text.as_bytes())?;
            self.tw.end_data(len)
        })()
        .map_err(|e| fail(&path, e))?;
        self.stats.entries += 1;
        Ok(())
    }
}

/// The name of the archive when `-o` is not given: in the current directory.
fn default_output(
    names: &[String],
    format: Format,
    epoch: Option<u64>,
) -> Result<PathBuf, Diagnostic> {
    let [name] = names else {
        return Err(
            Diagnostic::error("packing several images needs an output file name")
                .with_hint("pass `-o FILE`, for example `-o images.tar.gz`"),
        );
    };
    Ok(PathBuf::from(match format {
        Format::TarGz => format!("{name}.tar.gz"),
        Format::TarZst => format!("{name}.tar.zst"),
        Format::Deb => deb::file_name(name, epoch),
    }))
}

/// Packs images of the store into one archive, written to a temporary file beside the
/// output and renamed into place.
pub fn pack(store: &Store, opts: &PackOptions) -> Result<PackReport, Diagnostics> {
    let mut names = opts.images.clone();
    names.sort();
    names.dedup();
    if names.is_empty() {
        return Err(Diagnostic::error("no image to pack").into());
    }
    let format = opts
        .format
        .or_else(|| opts.output.as_deref().and_then(Format::from_path))
        .unwrap_or(Format::TarGz);
    let output = match &opts.output {
        Some(o) => o.clone(),
        None => default_output(&names, format, opts.source_date_epoch)?,
    };
    if fs::symlink_metadata(&output).is_ok() && !opts.force {
        return Err(
            Diagnostic::error(format!("`{}` already exists", output.display()))
                .with_hint("pass `--force` to replace it, or choose another name with `-o`")
                .into(),
        );
    }
    let mut images = Vec::new();
    for n in &names {
        let dir = store.image_dir(n)?;
        images.push((n.clone(), walk_image(n, &dir, opts.source_date_epoch)?));
    }
    let out_dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let total: u64 = images
        .iter()
        .flat_map(|(_, items)| items.iter().map(|i| i.stored))
        .sum();
    if format == Format::Deb {
        let [(name, items)] = &images[..] else {
            return Err(Diagnostic::error(
                "a Debian package holds one image; pack each image on its own",
            )
            .into());
        };
        let progress = Progress::new(opts.progress, total, "packing");
        let stats = deb::build(
            store,
            name,
            items,
            &output,
            &out_dir,
            (opts.source_date_epoch, opts.force),
            &progress,
        )?;
        return Ok(PackReport {
            archive_bytes: fs::metadata(&output).map(|m| m.len()).unwrap_or(0),
            output,
            format,
            images: names,
            entries: stats.entries,
            data_bytes: stats.data,
        });
    }
    let tmp = tempfile::Builder::new()
        .prefix(".convirt-pack-")
        .tempfile_in(&out_dir)
        .map_err(|e| {
            Diagnostic::error(format!(
                "cannot create a file in `{}`: {e}",
                out_dir.display()
            ))
        })?;
    let write_fail = |e: io::Error| write_error(&output, &e);
    let file = tmp.as_file().try_clone().map_err(write_fail)?;
    let codec = if format == Format::TarZst {
        Codec::Zstd
    } else {
        Codec::Gzip
    };
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let progress = Progress::new(opts.progress, total, "packing");
    let mut packer = Packer {
        tw: TarWriter::new(ParallelWriter::new(file, codec, threads)),
        output: &output,
        buf: vec![0u8; IO_BUF],
        progress: &progress,
        stats: PackStats {
            entries: 0,
            data: 0,
        },
    };
    for (name, items) in &images {
        packer.image(name, items)?;
    }
    let stats = packer.stats;
    let file = packer
        .tw
        .finish()
        .and_then(ParallelWriter::finish)
        .map_err(write_fail)?;
    progress.done();
    file.sync_all().map_err(write_fail)?;
    let archive_bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o644)).map_err(write_fail)?;
    let persisted = if opts.force {
        tmp.persist(&output)
    } else {
        tmp.persist_noclobber(&output)
    };
    persisted.map_err(|e| write_fail(e.error))?;
    Ok(PackReport {
        output,
        format,
        images: names,
        entries: stats.entries,
        data_bytes: stats.data,
        archive_bytes,
    })
}

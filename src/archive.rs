//! Image archives (spec §9.5, §9.6): `image pack` writes images into a reproducible tar.gz,
//! tar.zst or Debian package with a manifest of every file; `image import` unpacks an archive
//! into the store only after every entry was checked, the manifest verified and each image
//! loaded, then renames the images into place.
//!
//! The format and the safety rules are described in `docs/archive.md`.

// Errors here are `Diagnostic`s, as everywhere in convirt; their size is the diagnostic
// module's business.
#![allow(clippy::result_large_err)]

mod compress;
mod deb;
mod tarfmt;

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::eval::Host;
use crate::image::Image;
use crate::store::{self, Store};
use compress::{Codec, ParallelWriter};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};
use tarfmt::{Extent, Kind, Meta, ReadError, TarReader, TarWriter};

/// The manifest's name inside each image directory of an archive.
pub const MANIFEST: &str = ".convirt-manifest";
const MANIFEST_VERSION: u32 = 1;
const MAX_MANIFEST: u64 = 16 * 1024 * 1024;
/// Bounds on an archive to import: more is refused as not an image archive.
pub const MAX_ENTRIES: usize = 100_000;
pub const MAX_IMAGES: usize = 1_000;
const IO_BUF: usize = 1 << 20;
/// Zero runs of this size in unpacked data are left as holes.
const ZERO_RUN: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Format {
    #[serde(rename = "tar.gz")]
    TarGz,
    #[serde(rename = "tar.zst")]
    TarZst,
    #[serde(rename = "deb")]
    Deb,
}

impl Format {
    /// The format an output file name implies, if any.
    pub fn from_path(p: &Path) -> Option<Format> {
        let name = p.file_name()?.to_str()?;
        if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
            Some(Format::TarGz)
        } else if name.ends_with(".tar.zst") || name.ends_with(".tzst") {
            Some(Format::TarZst)
        } else if name.ends_with(".deb") {
            Some(Format::Deb)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::TarGz => "tar.gz",
            Format::TarZst => "tar.zst",
            Format::Deb => "deb",
        }
    }
}

/// A progress bar on stderr, or nothing.
struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    fn new(enabled: bool, total: u64, what: &str) -> Progress {
        if !enabled {
            return Progress(None);
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
        pb.set_message(what.to_string());
        Progress(Some(pb))
    }
    fn inc(&self, n: u64) {
        if let Some(p) = &self.0 {
            p.inc(n);
        }
    }
    fn set(&self, n: u64) {
        if let Some(p) = &self.0 {
            p.set_position(n);
        }
    }
    fn done(&self) {
        if let Some(p) = &self.0 {
            p.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.done();
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

// ---------------------------------------------------------------------------------------------
// The manifest

/// The first line of a manifest.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ManifestHead {
    #[serde(rename = "convirt-manifest")]
    version: u32,
    image: String,
    entries: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum RecordKind {
    Dir,
    File,
    Sparse,
    Symlink,
}

/// One line of a manifest: an entry of the image, path relative to the image directory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Record {
    path: String,
    #[serde(rename = "type")]
    kind: RecordKind,
    /// Permission bits in octal, e.g. `"0755"`.
    mode: String,
    /// Apparent size of a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    /// SHA-256 of a file's content; for a sparse file, of its data regions back to back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    /// The data regions of a sparse file, `[offset, length]`; the rest are holes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<Vec<[u64; 2]>>,
    /// A symlink's target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target: Option<String>,
}

impl Record {
    fn new(path: &str, kind: RecordKind, mode: u32) -> Record {
        Record {
            path: path.to_string(),
            kind,
            mode: format!("{:04o}", mode & 0o7777),
            size: None,
            sha256: None,
            data: None,
            target: None,
        }
    }

    /// What differs between the manifest's record and the archive's entry.
    fn difference(&self, actual: &Record) -> Option<String> {
        if self.kind != actual.kind {
            return Some(format!(
                "the manifest says {:?} but the archive holds {:?}",
                self.kind, actual.kind
            ));
        }
        if self.mode != actual.mode {
            return Some(format!(
                "its mode is {} but the manifest says {}",
                actual.mode, self.mode
            ));
        }
        if self.size != actual.size {
            return Some(format!(
                "its size is {} bytes but the manifest says {}",
                actual.size.unwrap_or(0),
                self.size.unwrap_or(0)
            ));
        }
        if self.data != actual.data {
            return Some("its holes differ from the manifest".to_string());
        }
        if self.sha256 != actual.sha256 {
            return Some("its SHA-256 differs from the manifest".to_string());
        }
        if self.target != actual.target {
            return Some("its link target differs from the manifest".to_string());
        }
        None
    }
}

fn manifest_text(image: &str, records: &[Record]) -> String {
    let head = ManifestHead {
        version: MANIFEST_VERSION,
        image: image.to_string(),
        entries: records.len(),
    };
    let mut out = serde_json::to_string(&head).unwrap_or_default();
    out.push('\n');
    for r in records {
        out.push_str(&serde_json::to_string(r).unwrap_or_default());
        out.push('\n');
    }
    out
}

fn parse_manifest(image: &str, text: &[u8]) -> Result<BTreeMap<String, Record>, String> {
    let text = std::str::from_utf8(text).map_err(|_| "it is not UTF-8".to_string())?;
    let mut lines = text.lines();
    let head: ManifestHead = lines
        .next()
        .and_then(|l| serde_json::from_str(l).ok())
        .ok_or("its first line is not a convirt manifest header")?;
    if head.version != MANIFEST_VERSION {
        return Err(format!(
            "it has version {}, this convirt reads version {MANIFEST_VERSION}",
            head.version
        ));
    }
    if head.image != image {
        return Err(format!(
            "it describes image `{}`, not `{image}`",
            head.image
        ));
    }
    let mut out = BTreeMap::new();
    for (i, l) in lines.enumerate() {
        let r: Record =
            serde_json::from_str(l).map_err(|e| format!("line {} does not parse: {e}", i + 2))?;
        if out.insert(r.path.clone(), r).is_some() {
            return Err(format!("line {} repeats a path", i + 2));
        }
    }
    if out.len() != head.entries {
        return Err(format!(
            "it lists {} entries but its header says {}",
            out.len(),
            head.entries
        ));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Shared rules

/// Checks that a symlink at `rel` (relative to the image directory) with this `target` stays
/// inside the image. The target is resolved from the link's own directory; `..` may only
/// lead the target, so no component that is itself a symlink can be climbed out of.
fn check_link(rel: &str, target: &str) -> Result<(), String> {
    if target.is_empty() {
        return Err("is a symlink with an empty target".into());
    }
    if target.starts_with('/') {
        return Err(format!(
            "is a symlink to the absolute path `{target}`, outside the image"
        ));
    }
    let mut depth = rel.split('/').filter(|c| !c.is_empty()).count() - 1;
    let mut named = false;
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." if named => {
                return Err(format!(
                    "is a symlink to `{target}`, which has `..` after a directory name"
                ));
            }
            ".." => {
                if depth == 0 {
                    return Err(format!(
                        "is a symlink to `{target}`, which points outside the image"
                    ));
                }
                depth -= 1;
            }
            _ => named = true,
        }
    }
    Ok(())
}

fn special_bits(mode: u32) -> Option<&'static str> {
    if mode & 0o4000 != 0 {
        Some("the set-uid bit")
    } else if mode & 0o2000 != 0 {
        Some("the set-gid bit")
    } else if mode & 0o1000 != 0 {
        Some("the sticky bit")
    } else {
        None
    }
}

/// The data regions of a file, found with `lseek(SEEK_DATA/SEEK_HOLE)`; `None` when the file
/// has no holes or the file system cannot say.
fn data_extents(file: &File, size: u64) -> io::Result<Option<Vec<Extent>>> {
    use std::os::unix::io::AsRawFd;
    let fd = file.as_raw_fd();
    let seek = |off: u64, whence: i32| -> io::Result<Option<u64>> {
        // SAFETY: lseek on a file descriptor we own; it only moves the file offset.
        let r = unsafe { libc::lseek(fd, off as libc::off_t, whence) };
        if r < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ENXIO) => Ok(None),
                _ => Err(e),
            };
        }
        Ok(Some(r as u64))
    };
    if size == 0 {
        return Ok(None);
    }
    match seek(0, libc::SEEK_HOLE) {
        Ok(Some(h)) if h >= size => return Ok(None),
        Ok(Some(_)) => {}
        Ok(None) => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut extents = Vec::new();
    let mut off = 0u64;
    while off < size {
        let Some(data) = seek(off, libc::SEEK_DATA)? else {
            break;
        };
        if data >= size {
            break;
        }
        let hole = seek(data, libc::SEEK_HOLE)?.unwrap_or(size).min(size);
        if hole <= data {
            return Err(io::Error::other("the file changed while it was read"));
        }
        extents.push((data, hole - data));
        off = hole;
    }
    Ok(Some(extents))
}

/// Removes a tree even where a directory lost its write bit.
fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(_) => {
            for e in walkdir::WalkDir::new(path).into_iter().flatten() {
                if e.file_type().is_dir() {
                    let _ = fs::set_permissions(e.path(), fs::Permissions::from_mode(0o700));
                }
            }
            fs::remove_dir_all(path)
        }
    }
}

fn clamp_mtime(mtime: i64, epoch: Option<u64>) -> u64 {
    let m = mtime.max(0) as u64;
    epoch.map_or(m, |e| m.min(e))
}

// ---------------------------------------------------------------------------------------------
// Packing

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

#[derive(Debug, Clone)]
enum ItemKind {
    Dir,
    File,
    Symlink(String),
}

/// One entry of an image directory to pack.
#[derive(Debug, Clone)]
struct Item {
    /// Relative to the image directory; empty for the directory itself.
    rel: String,
    abs: PathBuf,
    kind: ItemKind,
    mode: u32,
    mtime: u64,
    /// Bytes on disk, for the progress bar.
    stored: u64,
}

fn walk_image(name: &str, dir: &Path, epoch: Option<u64>) -> Result<Vec<Item>, Diagnostic> {
    let root = fs::canonicalize(dir)
        .map_err(|e| Diagnostic::error(format!("cannot read `{}`: {e}", dir.display())))?;
    let mut items = Vec::new();
    let walker = walkdir::WalkDir::new(&root)
        .follow_links(false)
        .sort_by(|a, b| a.file_name().cmp(b.file_name()));
    for entry in walker {
        let entry = entry.map_err(|e| {
            Diagnostic::error(format!("cannot read image `{name}`: {e}"))
                .with_hint("check the permissions of the image directory")
        })?;
        let rel_path = entry.path().strip_prefix(&root).unwrap_or(entry.path());
        let Some(rel) = rel_path.to_str() else {
            return Err(Diagnostic::error(format!(
                "`{}` has a name that is not UTF-8; convirt archives hold UTF-8 names only",
                entry.path().display()
            ))
            .with_hint("rename the file"));
        };
        if rel == MANIFEST {
            // A manifest left by an earlier `tar x`: the archive gets a fresh one.
            continue;
        }
        let shown = if rel.is_empty() {
            name.to_string()
        } else {
            format!("{name}/{rel}")
        };
        let meta = entry.metadata().map_err(|e| {
            Diagnostic::error(format!("cannot read `{}`: {e}", entry.path().display()))
        })?;
        let ft = meta.file_type();
        let mode = meta.mode() & 0o7777;
        let kind = if ft.is_symlink() {
            let target = fs::read_link(entry.path()).map_err(|e| {
                Diagnostic::error(format!("cannot read `{}`: {e}", entry.path().display()))
            })?;
            let target = target.to_str().map(String::from).ok_or_else(|| {
                Diagnostic::error(format!("`{shown}` has a target that is not UTF-8"))
            })?;
            check_link(rel, &target).map_err(|m| {
                Diagnostic::error(format!("cannot pack `{shown}`: it {m}")).with_hint(
                    "an image must be self-contained; copy the file into the image instead",
                )
            })?;
            ItemKind::Symlink(target)
        } else if ft.is_dir() {
            ItemKind::Dir
        } else if ft.is_file() {
            ItemKind::File
        } else {
            return Err(Diagnostic::error(format!(
                "cannot pack `{shown}`: it is a {}; images hold only files, directories and symlinks",
                special_name(&ft)
            )));
        };
        if !ft.is_symlink() {
            if let Some(bit) = special_bits(mode) {
                return Err(Diagnostic::error(format!(
                    "cannot pack `{shown}`: it has {bit} (mode {mode:04o}), which `image import` refuses"
                ))
                .with_hint(format!("run `chmod u-s,g-s,o-t {}`", entry.path().display())));
            }
        }
        items.push(Item {
            rel: rel.to_string(),
            abs: entry.path().to_path_buf(),
            stored: if ft.is_file() {
                meta.len().min(meta.blocks() * 512)
            } else {
                0
            },
            kind,
            mode,
            mtime: clamp_mtime(meta.mtime(), epoch),
        });
        if items.len() > MAX_ENTRIES {
            return Err(Diagnostic::error(format!(
                "image `{name}` has more than {MAX_ENTRIES} entries, more than `image import` accepts"
            )));
        }
    }
    Ok(items)
}

fn special_name(ft: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_fifo() {
        "FIFO"
    } else if ft.is_char_device() {
        "character device"
    } else if ft.is_block_device() {
        "block device"
    } else if ft.is_socket() {
        "socket"
    } else {
        "special file"
    }
}

struct PackStats {
    entries: usize,
    data: u64,
}

/// The tar stream being written, with its buffer, progress bar and counts.
struct Packer<'a, W: Write> {
    tw: TarWriter<W>,
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
    fn file(&mut self, item: &Item, meta: &Meta, shown: &str) -> io::Result<Record> {
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
                Record::new(&item.rel, RecordKind::File, item.mode)
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
                let mut r = Record::new(&item.rel, RecordKind::Sparse, item.mode);
                r.data = Some(extents.iter().map(|&(o, l)| [o, l]).collect());
                r
            }
        };
        r.size = Some(size);
        r.sha256 = Some(hex(&hasher.finalize()));
        Ok(r)
    }

    /// One image directory: its entries in order, then its manifest.
    fn image(&mut self, name: &str, items: &[Item]) -> Result<(), Diagnostic> {
        let fail =
            |what: &str, e: io::Error| Diagnostic::error(format!("cannot pack `{what}`: {e}"));
        let mut records = Vec::new();
        let newest = items.iter().map(|i| i.mtime).max().unwrap_or(0);
        for item in items {
            let shown = if item.rel.is_empty() {
                name.to_string()
            } else {
                format!("{name}/{}", item.rel)
            };
            let dir_path = format!("{shown}/");
            let meta = Meta {
                path: match item.kind {
                    ItemKind::Dir => dir_path.as_str(),
                    _ => shown.as_str(),
                },
                mode: item.mode,
                mtime: item.mtime,
            };
            self.stats.entries += 1;
            match &item.kind {
                ItemKind::Dir => {
                    self.tw.dir(&meta).map_err(|e| fail(&shown, e))?;
                    if !item.rel.is_empty() {
                        records.push(Record::new(&item.rel, RecordKind::Dir, item.mode));
                    }
                }
                ItemKind::Symlink(target) => {
                    self.tw
                        .symlink(&meta, target)
                        .map_err(|e| fail(&shown, e))?;
                    let mut r = Record::new(&item.rel, RecordKind::Symlink, 0o777);
                    r.target = Some(target.clone());
                    records.push(r);
                }
                ItemKind::File => {
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
pub fn pack(store: &Store, opts: &PackOptions) -> Result<PackReport, Diagnostic> {
    let mut names = opts.images.clone();
    names.sort();
    names.dedup();
    if names.is_empty() {
        return Err(Diagnostic::error("no image to pack"));
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
                .with_hint("pass `--force` to replace it, or choose another name with `-o`"),
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
            ));
        };
        let progress = Progress::new(opts.progress, total, "packing");
        let stats = deb::build(store, name, items, &output, &out_dir, opts, &progress)?;
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
    let write_fail =
        |e: io::Error| Diagnostic::error(format!("cannot write `{}`: {e}", output.display()));
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

// ---------------------------------------------------------------------------------------------
// Importing

pub struct ImportOptions {
    pub force: bool,
    pub progress: bool,
}

#[derive(Debug, serde::Serialize)]
pub struct ImportedImage {
    pub name: String,
    pub replaced: bool,
    pub verified: bool,
}

#[derive(Debug)]
pub struct ImportReport {
    pub images: Vec<ImportedImage>,
    pub warnings: Diagnostics,
}

/// What the archive holds for one image, as it was unpacked.
#[derive(Default)]
struct Unpacked {
    records: BTreeMap<String, Record>,
    manifest: Option<Vec<u8>>,
    root: Option<(u32, u64)>,
}

/// A directory that is removed when dropped, unless kept.
struct TempTree(Option<PathBuf>);

impl Drop for TempTree {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = remove_tree(&p);
        }
    }
}

struct Importer<'a> {
    store: &'a Store,
    archive: String,
    tmp: PathBuf,
    force: bool,
    images: BTreeMap<String, Unpacked>,
    seen: HashSet<String>,
    symlink_paths: HashSet<String>,
    symlinks: Vec<(PathBuf, String)>,
    dirs: Vec<(PathBuf, u32, u64)>,
    /// Directories known to exist in the temporary tree.
    made: HashSet<PathBuf>,
    entries: usize,
    /// The entry being read, for messages.
    current: String,
    buf: Vec<u8>,
}

const UNCHANGED: &str = "nothing was imported; the store is unchanged";

impl Importer<'_> {
    fn refuse(&self, entry: &str, why: impl std::fmt::Display) -> Diagnostic {
        Diagnostic::error(format!(
            "refusing `{}`: entry `{entry}` {why}",
            self.archive
        ))
        .with_hint(UNCHANGED)
    }

    fn broken(&self, e: ReadError) -> Diagnostic {
        let msg = match e {
            ReadError::Io(e) if self.current.is_empty() => {
                format!("the archive is corrupt or truncated: {e}")
            }
            ReadError::Io(e) => format!(
                "the archive is corrupt or truncated (at entry `{}`): {e}",
                self.current
            ),
            other => other.to_string(),
        };
        Diagnostic::error(format!("refusing `{}`: {msg}", self.archive)).with_hint(UNCHANGED)
    }

    fn fs_fail(&self, what: &Path, e: io::Error) -> Diagnostic {
        let shown = what.strip_prefix(&self.tmp).unwrap_or(what);
        Diagnostic::error(format!(
            "cannot unpack `{}` from `{}`: {e}",
            shown.display(),
            self.archive
        ))
        .with_hint(UNCHANGED)
    }

    /// Checks an entry's path and splits it into the image name and the path inside it.
    fn split_path(&self, e: &tarfmt::Entry) -> Result<Option<(String, String)>, Diagnostic> {
        let raw = e.path_lossy();
        let Ok(path) = std::str::from_utf8(&e.path) else {
            return Err(self.refuse(&raw, "has a name that is not UTF-8"));
        };
        if path.starts_with('/') {
            return Err(self.refuse(path, "has an absolute path"));
        }
        let mut parts = Vec::new();
        for c in path.split('/') {
            match c {
                "" | "." => {}
                ".." => return Err(self.refuse(path, "has `..` in its path")),
                c => parts.push(c),
            }
        }
        let Some((image, rest)) = parts.split_first() else {
            return if e.kind == Kind::Dir {
                Ok(None)
            } else {
                Err(self.refuse(path, "has an empty path"))
            };
        };
        if let Err(m) = store::check_image_name(image) {
            return Err(self.refuse(
                path,
                format!("is not inside an image directory: {m}; an image archive holds one directory per image"),
            ));
        }
        if self.store.conf.excludes.iter().any(|x| x == image) {
            return Err(self.refuse(
                path,
                format!("belongs to `{image}`, which is not an image in this store (see `excludes` in image_store.conf)"),
            ));
        }
        Ok(Some((image.to_string(), rest.join("/"))))
    }

    fn entry<R: Read>(
        &mut self,
        tr: &mut TarReader<R>,
        e: tarfmt::Entry,
    ) -> Result<(), Diagnostic> {
        self.entries += 1;
        if self.entries > MAX_ENTRIES {
            return Err(Diagnostic::error(format!(
                "refusing `{}`: it has more than {MAX_ENTRIES} entries",
                self.archive
            ))
            .with_hint(UNCHANGED));
        }
        let Some((image, rel)) = self.split_path(&e)? else {
            return Ok(());
        };
        let full = if rel.is_empty() {
            image.clone()
        } else {
            format!("{image}/{rel}")
        };
        if !self.images.contains_key(&image) {
            if self.images.len() >= MAX_IMAGES {
                return Err(self.refuse(
                    &full,
                    format!("makes more than {MAX_IMAGES} images in one archive"),
                ));
            }
            let existing = self.store.root.join(&image);
            if !self.force && fs::symlink_metadata(&existing).is_ok() {
                return Err(Diagnostic::error(format!(
                    "refusing `{}`: image `{image}` already exists in `{}`",
                    self.archive,
                    self.store.root.display()
                ))
                .with_hint("pass `--force` to replace it")
                .with_hint(UNCHANGED));
            }
            self.images.insert(image.clone(), Unpacked::default());
        }
        if !self.seen.insert(full.clone()) {
            return Err(self.refuse(&full, "appears twice in the archive"));
        }
        let mut prefix = image.clone();
        for c in rel.split('/').filter(|c| !c.is_empty()) {
            if self.symlink_paths.contains(&prefix) {
                return Err(self.refuse(
                    &full,
                    format!("would be written through the symlink `{prefix}`"),
                ));
            }
            prefix.push('/');
            prefix.push_str(c);
        }
        let is_link = matches!(e.kind, Kind::Symlink(_));
        if !is_link {
            if let Some(bit) = special_bits(e.mode) {
                return Err(self.refuse(&full, format!("has {bit} (mode {:04o})", e.mode)));
            }
        }
        let mode = e.mode & 0o777;
        let dest = self.tmp.join(&full);
        if rel.is_empty() {
            if e.kind != Kind::Dir {
                return Err(self.refuse(
                    &full,
                    "is not a directory; an image archive holds one directory per image",
                ));
            }
            fs::create_dir_all(&dest).map_err(|err| self.fs_fail(&dest, err))?;
            if let Some(u) = self.images.get_mut(&image) {
                u.root = Some((mode, e.mtime));
            }
            return Ok(());
        }
        if rel == MANIFEST {
            if e.kind != Kind::File {
                return Err(self.refuse(&full, "is the manifest but not a regular file"));
            }
            if e.size > MAX_MANIFEST {
                return Err(self.refuse(&full, "is a manifest larger than 16 MiB"));
            }
            let mut text = Vec::with_capacity(e.size as usize);
            loop {
                let n = tr.read_data(&mut self.buf).map_err(|x| self.broken(x))?;
                if n == 0 {
                    break;
                }
                text.extend_from_slice(&self.buf[..n]);
            }
            if let Some(u) = self.images.get_mut(&image) {
                u.manifest = Some(text);
            }
            return Ok(());
        }
        if let Some(parent) = dest.parent() {
            if !self.made.contains(parent) {
                fs::create_dir_all(parent).map_err(|err| self.fs_fail(parent, err))?;
                self.made.insert(parent.to_path_buf());
            }
        }
        let record = match e.kind {
            Kind::Dir => {
                fs::create_dir(&dest).map_err(|err| self.fs_fail(&dest, err))?;
                self.dirs.push((dest, mode, e.mtime));
                Record::new(&rel, RecordKind::Dir, mode)
            }
            Kind::File => {
                let sha = self.write_file(tr, &dest, &[(0, e.size)], e.size, mode, e.mtime)?;
                let mut r = Record::new(&rel, RecordKind::File, mode);
                r.size = Some(e.size);
                r.sha256 = Some(sha);
                r
            }
            Kind::Sparse {
                ref extents,
                real_size,
            } => {
                let sha = self.write_file(tr, &dest, extents, real_size, mode, e.mtime)?;
                let mut r = Record::new(&rel, RecordKind::Sparse, mode);
                r.size = Some(real_size);
                r.sha256 = Some(sha);
                r.data = Some(extents.iter().map(|&(o, l)| [o, l]).collect());
                r
            }
            Kind::Symlink(ref target) => {
                let Ok(target) = std::str::from_utf8(target) else {
                    return Err(self.refuse(&full, "is a symlink whose target is not UTF-8"));
                };
                check_link(&rel, target).map_err(|m| self.refuse(&full, m))?;
                self.symlink_paths.insert(full.clone());
                self.symlinks.push((dest, target.to_string()));
                let mut r = Record::new(&rel, RecordKind::Symlink, 0o777);
                r.target = Some(target.to_string());
                r
            }
            Kind::HardLink(ref target) => {
                return Err(self.refuse(
                    &full,
                    format!(
                        "is a hard link to `{}`; hard links are refused",
                        String::from_utf8_lossy(target)
                    ),
                ));
            }
            Kind::CharDevice => return Err(self.refuse(&full, "is a character device")),
            Kind::BlockDevice => return Err(self.refuse(&full, "is a block device")),
            Kind::Fifo => return Err(self.refuse(&full, "is a FIFO")),
            Kind::Other(t) => {
                return Err(self.refuse(
                    &full,
                    format!(
                        "has the unsupported tar type `{}`",
                        char::from(t).escape_default()
                    ),
                ));
            }
        };
        if let Some(u) = self.images.get_mut(&image) {
            u.records.insert(rel, record);
        }
        Ok(())
    }

    /// Writes a file's data regions at their offsets (holes stay holes) and returns the
    /// SHA-256 of the data.
    fn write_file<R: Read>(
        &mut self,
        tr: &mut TarReader<R>,
        dest: &Path,
        extents: &[Extent],
        size: u64,
        mode: u32,
        mtime: u64,
    ) -> Result<String, Diagnostic> {
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(dest)
            .map_err(|err| self.fs_fail(dest, err))?;
        let mut hasher = Sha256::new();
        let mut buf = std::mem::take(&mut self.buf);
        let result = (|| -> Result<(), Diagnostic> {
            for &(off, len) in extents {
                let mut done = 0u64;
                while done < len {
                    let want = (len - done).min(buf.len() as u64) as usize;
                    let n = tr.read_data(&mut buf[..want]).map_err(|x| self.broken(x))?;
                    if n == 0 {
                        return Err(self.broken(ReadError::Truncated(format!(
                            "the archive is truncated inside `{}`",
                            dest.strip_prefix(&self.tmp).unwrap_or(dest).display()
                        ))));
                    }
                    hasher.update(&buf[..n]);
                    // Runs of zeros are not written: the file stays sparse there, even when
                    // the archive stored it dense (a plain `tar czf` of a disk image).
                    let mut at = 0;
                    for part in buf[..n].chunks(ZERO_RUN) {
                        if part.iter().any(|&b| b != 0) {
                            file.write_all_at(part, off + done + at)
                                .map_err(|err| self.fs_fail(dest, err))?;
                        }
                        at += part.len() as u64;
                    }
                    done += n as u64;
                }
            }
            file.set_len(size).map_err(|err| self.fs_fail(dest, err))?;
            file.set_permissions(fs::Permissions::from_mode(mode))
                .map_err(|err| self.fs_fail(dest, err))?;
            let _ = file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(mtime));
            Ok(())
        })();
        self.buf = buf;
        result?;
        Ok(hex(&hasher.finalize()))
    }

    /// Compares each image with its manifest. Returns the images that had one.
    fn verify(&self, warnings: &mut Diagnostics) -> Result<BTreeSet<String>, Diagnostic> {
        let mut verified = BTreeSet::new();
        for (name, u) in &self.images {
            let Some(text) = &u.manifest else {
                warnings.push(
                    Diagnostic::warning(format!(
                        "`{}` has no manifest for image `{name}`; its files were not verified",
                        self.archive
                    ))
                    .with_hint("archives made by `convirt image pack` carry one"),
                );
                continue;
            };
            let manifest = parse_manifest(name, text).map_err(|m| {
                self.refuse(
                    &format!("{name}/{MANIFEST}"),
                    format!("is not a valid manifest: {m}"),
                )
            })?;
            for (path, expected) in &manifest {
                let full = format!("{name}/{path}");
                let Some(actual) = u.records.get(path) else {
                    return Err(self.refuse(&full, "is in the manifest but not in the archive"));
                };
                if let Some(d) = expected.difference(actual) {
                    return Err(self.refuse(&full, format!("does not match the manifest: {d}")));
                }
            }
            if let Some(extra) = u.records.keys().find(|p| !manifest.contains_key(*p)) {
                return Err(self.refuse(&format!("{name}/{extra}"), "is not in the manifest"));
            }
            verified.insert(name.clone());
        }
        Ok(verified)
    }

    /// Symlinks last, then directory modes and times, deepest first.
    fn finish_tree(&mut self) -> Result<(), Diagnostic> {
        for (path, target) in std::mem::take(&mut self.symlinks) {
            std::os::unix::fs::symlink(&target, &path).map_err(|e| self.fs_fail(&path, e))?;
        }
        let mut dirs = std::mem::take(&mut self.dirs);
        for (name, u) in &self.images {
            let (mode, mtime) = u.root.unwrap_or((0o755, 0));
            dirs.push((self.tmp.join(name), mode, mtime));
        }
        dirs.sort_by_key(|(p, _, _)| std::cmp::Reverse(p.components().count()));
        for (path, mode, mtime) in dirs {
            if mtime > 0 {
                if let Ok(f) = File::open(&path) {
                    let _ = f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(mtime));
                }
            }
            fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                .map_err(|e| self.fs_fail(&path, e))?;
        }
        Ok(())
    }
}

/// Renames `from` to `to`, failing if `to` exists.
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let a = CString::new(from.as_os_str().as_bytes())?;
    let b = CString::new(to.as_os_str().as_bytes())?;
    // SAFETY: two valid NUL-terminated paths; renameat2 does not keep them.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOSYS) => {
            if fs::symlink_metadata(to).is_ok() {
                return Err(io::Error::from(io::ErrorKind::AlreadyExists));
            }
            fs::rename(from, to)
        }
        _ => Err(e),
    }
}

/// Imports every image of an archive into the store. Nothing in the store changes unless
/// every entry was accepted, every manifest matched and every image loads.
pub fn import(
    store: &Store,
    archive: &Path,
    host: &Host,
    opts: &ImportOptions,
) -> Result<ImportReport, Diagnostics> {
    let shown = archive.display().to_string();
    let mut file = File::open(archive)
        .map_err(|e| Diagnostic::error(format!("cannot open `{shown}`: {e}")))?;
    let total = file.metadata().map(|m| m.len()).unwrap_or(0);
    let detected = match compress::detect(&mut file)
        .map_err(|e| Diagnostic::error(format!("cannot read `{shown}`: {e}")))?
    {
        Ok(d) => d,
        Err(kind) => {
            return Err(Diagnostic::error(format!(
                "`{shown}` is compressed with {kind}, which convirt does not read"
            ))
            .with_hint("repack it as .tar.gz or .tar.zst")
            .into());
        }
    };
    let tmp = store.root.join(format!(
        ".convirt-import-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    ));
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&tmp)
        .map_err(|e| {
            Diagnostic::error(format!(
                "cannot create a directory in `{}`: {e}",
                store.root.display()
            ))
        })?;
    let mut guard = TempTree(Some(tmp.clone()));
    let count = Arc::new(AtomicU64::new(0));
    let progress = Progress::new(opts.progress, total, "importing");
    let reader = compress::spawn_decoder(file, detected, Arc::clone(&count));
    let mut tr = TarReader::new(reader);
    let mut im = Importer {
        store,
        archive: shown.clone(),
        tmp: tmp.clone(),
        force: opts.force,
        images: BTreeMap::new(),
        seen: HashSet::new(),
        symlink_paths: HashSet::new(),
        symlinks: Vec::new(),
        dirs: Vec::new(),
        made: HashSet::new(),
        entries: 0,
        current: String::new(),
        buf: vec![0u8; IO_BUF],
    };
    loop {
        let next = tr.next_entry().map_err(|e| im.broken(e))?;
        progress.set(count.load(Ordering::Relaxed));
        let Some(e) = next else { break };
        im.current = e.path_lossy();
        im.entry(&mut tr, e)?;
    }
    im.current.clear();
    // Read to the end, so a damaged compressed trailer is noticed too.
    let mut rest = tr.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| im.broken(ReadError::Io(e)))?;
    progress.done();
    if im.images.is_empty() {
        return Err(Diagnostic::error(format!("`{shown}` holds no image"))
            .with_hint(UNCHANGED)
            .into());
    }
    let mut warnings = Diagnostics::default();
    let verified = im.verify(&mut warnings)?;
    im.finish_tree()?;
    let mut problems = Diagnostics::default();
    for name in im.images.keys() {
        if let Err(d) = Image::load(name, &tmp.join(name), host) {
            problems.push(
                Diagnostic::error(format!(
                    "refusing `{shown}`: image `{name}` in it does not load"
                ))
                .with_hint(UNCHANGED),
            );
            problems.extend(d);
        }
    }
    if problems.has_errors() {
        return Err(problems);
    }
    let names: Vec<String> = im.images.keys().cloned().collect();
    let replaced = install(store, &tmp, &names, opts.force)?;
    drop(guard.0.take());
    let mut leftovers = Diagnostics::default();
    for old in replaced.iter().flatten() {
        if let Err(e) = remove_tree(old) {
            leftovers.push(Diagnostic::warning(format!(
                "the replaced image was kept at `{}`: {e}",
                old.display()
            )));
        }
    }
    let _ = remove_tree(&tmp);
    warnings.extend(leftovers);
    Ok(ImportReport {
        images: names
            .iter()
            .zip(&replaced)
            .map(|(n, r)| ImportedImage {
                name: n.clone(),
                replaced: r.is_some(),
                verified: verified.contains(n),
            })
            .collect(),
        warnings,
    })
}

/// Moves each unpacked image into the store: an existing one is renamed aside first (with
/// `force`), the new one renamed in. On any failure every step is undone. Returns where each
/// replaced image was put aside, to be removed by the caller.
fn install(
    store: &Store,
    tmp: &Path,
    names: &[String],
    force: bool,
) -> Result<Vec<Option<PathBuf>>, Diagnostic> {
    let mut done: Vec<(PathBuf, PathBuf, Option<PathBuf>)> = Vec::new();
    let undo = |done: &mut Vec<(PathBuf, PathBuf, Option<PathBuf>)>| {
        for (from, dest, aside) in done.drain(..).rev() {
            let _ = fs::rename(&dest, &from);
            if let Some(a) = aside {
                let _ = fs::rename(&a, &dest);
            }
        }
    };
    for name in names {
        let dest = store.root.join(name);
        let from = tmp.join(name);
        let mut aside = None;
        if fs::symlink_metadata(&dest).is_ok() {
            if !force {
                undo(&mut done);
                return Err(Diagnostic::error(format!(
                    "image `{name}` already exists in `{}`",
                    store.root.display()
                ))
                .with_hint("pass `--force` to replace it")
                .with_hint(UNCHANGED));
            }
            let a = tmp.with_file_name(format!(
                "{}-old-{name}",
                tmp.file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or(".convirt-import")
            ));
            if let Err(e) = fs::rename(&dest, &a) {
                undo(&mut done);
                return Err(Diagnostic::error(format!(
                    "cannot move the old image `{name}` aside: {e}"
                ))
                .with_hint(UNCHANGED));
            }
            aside = Some(a);
        }
        if let Err(e) = rename_noreplace(&from, &dest) {
            if let Some(a) = &aside {
                let _ = fs::rename(a, &dest);
            }
            undo(&mut done);
            return Err(Diagnostic::error(format!(
                "cannot move image `{name}` into the store: {e}"
            ))
            .with_hint(UNCHANGED));
        }
        done.push((from, dest, aside));
    }
    Ok(done.into_iter().map(|(_, _, a)| a).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_must_stay_inside_the_image() {
        for ok in [
            ("a", "b"),
            ("d/a", "../b"),
            ("d/e/a", "../../x/y"),
            ("a", "./b"),
            ("d/a", "e/f"),
        ] {
            assert!(check_link(ok.0, ok.1).is_ok(), "{ok:?}");
        }
        for bad in [
            ("a", "/etc/passwd"),
            ("a", ".."),
            ("a", "../other/x"),
            ("d/a", "../.."),
            ("d/a", "x/../../.."),
            ("a", "x/../y"),
            ("a", ""),
        ] {
            assert!(check_link(bad.0, bad.1).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_failed_install_puts_everything_back() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("store");
        fs::create_dir_all(root.join("A")).unwrap();
        fs::write(root.join("A/old"), "old").unwrap();
        let tmp = root.join(".convirt-import-test");
        fs::create_dir_all(tmp.join("A")).unwrap();
        fs::write(tmp.join("A/new"), "new").unwrap();
        // `B` was never unpacked, so moving it in fails after `A` was replaced.
        let (store, _) = Store::open(&root).unwrap();
        let names = ["A".to_string(), "B".to_string()];
        assert!(install(&store, &tmp, &names, true).is_err());
        assert_eq!(fs::read_to_string(root.join("A/old")).unwrap(), "old");
        assert!(!root.join("A/new").exists());
        assert!(tmp.join("A/new").exists());
        let mut left: Vec<String> = fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, [".convirt-import-test", "A"]);

        assert!(install(&store, &tmp, &names[..1], false).is_err());
        let aside = install(&store, &tmp, &names[..1], true).unwrap();
        assert_eq!(fs::read_to_string(root.join("A/new")).unwrap(), "new");
        let old = aside[0].clone().unwrap();
        assert!(old.file_name().unwrap().to_str().unwrap().starts_with('.'));
        assert_eq!(fs::read_to_string(old.join("old")).unwrap(), "old");
    }

    #[test]
    fn manifest_round_trip_and_checks() {
        let mut r = Record::new("disk", RecordKind::Sparse, 0o644);
        r.size = Some(10);
        r.sha256 = Some("ab".into());
        r.data = Some(vec![[0, 4]]);
        let text = manifest_text("Img", &[r.clone()]);
        let m = parse_manifest("Img", text.as_bytes()).unwrap();
        assert_eq!(m["disk"], r);
        assert!(parse_manifest("Other", text.as_bytes()).is_err());
        let mut changed = r.clone();
        changed.sha256 = Some("cd".into());
        assert!(r.difference(&changed).unwrap().contains("SHA-256"));
    }

    #[test]
    fn extents_of_a_sparse_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        let f = File::create(&p).unwrap();
        f.set_len(16 << 20).unwrap();
        f.write_all_at(&[1u8; 4096], 8 << 20).unwrap();
        f.sync_all().unwrap();
        let e = data_extents(&f, 16 << 20).unwrap();
        // A file system without hole support may report it dense; then `None` is right too.
        if let Some(e) = e {
            let total: u64 = e.iter().map(|x| x.1).sum();
            assert!(total < 1 << 20, "{e:?}");
            assert!(
                e.iter()
                    .any(|&(o, l)| o <= 8 << 20 && o + l >= (8 << 20) + 4096)
            );
        }
        let dense = File::create(d.path().join("g")).unwrap();
        dense.write_all_at(&[1u8; 10000], 0).unwrap();
        assert_eq!(data_extents(&dense, 10000).unwrap(), None);
    }
}

//! `image import`: reads the archive as a stream, checks every entry before it lands in a
//! temporary directory inside the store, verifies the manifests, loads each image, then
//! renames the images into place (the old ones aside first, everything undone on failure).

use super::compress;
use super::tarfmt::{self, Extent, Kind, ReadError, TarReader};
use super::{
    IO_BUF, MANIFEST, MAX_ENTRIES, MAX_IMAGES, MAX_MANIFEST, Progress, Record, RecordKind,
    ZERO_RUN, check_link, hex, parse_manifest, remove_tree, special_bits,
};
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::host::Host;
use crate::image::Image;
use crate::store::{self, Store};
use crate::tree::{IMPORT_PREFIX, TempDir, rename_noreplace};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

pub struct ImportOptions {
    pub force: bool,
    pub progress: bool,
    /// The most file data the archive may expand to (`--max-size`).
    pub max_size: u64,
    /// The one image the archive must hold (`image pull`): anything else is refused.
    pub expect: Option<String>,
}

/// `--max-size` when it is not given: larger than any image convirt ships or builds, small
/// enough that a hostile archive cannot expand without bound.
pub const DEFAULT_MAX_SIZE: u64 = 64 << 30;

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
    /// File data written so far, and the bounds on it: `--max-size` and the free space of
    /// the store's file system when the import began.
    written: u64,
    max_size: u64,
    free: Option<u64>,
}

const UNCHANGED: &str = "nothing was imported; the store is unchanged";

fn interrupted(archive: &str) -> Diagnostic {
    Diagnostic::error(format!(
        "`image import` of `{archive}` was interrupted (Ctrl-C)"
    ))
    .with_hint(UNCHANGED)
}

/// `1.5 GiB`, `300 MiB`, `512 bytes`: sizes in messages.
pub(super) fn show_size(n: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (unit, size) in UNITS {
        if n >= size {
            let v = n as f64 / size as f64;
            return if n % size == 0 {
                format!("{} {unit}", n / size)
            } else {
                format!("{v:.1} {unit}")
            };
        }
    }
    format!("{n} bytes")
}

/// Parses `--max-size`: bytes, or a number with `K`, `M`, `G` or `T` (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        None => (t, 1u64),
        Some((i, _)) => {
            let mult = match t[i..]
                .to_ascii_uppercase()
                .trim_end_matches("IB")
                .trim_end_matches('B')
            {
                "" => 1,
                "K" => 1 << 10,
                "M" => 1 << 20,
                "G" => 1 << 30,
                "T" => 1 << 40,
                _ => {
                    return Err(format!(
                        "`{s}` is not a size: use a number of bytes or a number with K, M, G or T"
                    ));
                }
            };
            (&t[..i], mult)
        }
    };
    let n: u64 = num.parse().map_err(|_| {
        format!("`{s}` is not a size: use a number of bytes or a number with K, M, G or T")
    })?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{s}` is too large a size"))
}

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
        if e.kind() == io::ErrorKind::Interrupted {
            return interrupted(&self.archive);
        }
        let d = Diagnostic::error(format!(
            "cannot unpack `{}` from `{}`: {e}",
            shown.display(),
            self.archive
        ));
        if crate::sys::is_full(&e) {
            d.with_hint(crate::sys::full_hint(&e, &self.store.root))
                .with_hint(UNCHANGED)
        } else {
            d.with_hint(UNCHANGED)
        }
    }

    /// Refuses an entry whose data would pass `--max-size` or the free space, before any of
    /// it is written.
    fn reserve(&mut self, full: &str, bytes: u64) -> Result<(), Diagnostic> {
        let total = self.written.saturating_add(bytes);
        if total > self.max_size {
            return Err(Diagnostic::error(format!(
                "refusing `{}`: it expands to more than the limit of {} (at entry `{full}`)",
                self.archive,
                show_size(self.max_size)
            ))
            .with_hint("pass a larger `--max-size` if the archive is trusted")
            .with_hint(UNCHANGED));
        }
        if let Some(free) = self.free.filter(|f| total > *f) {
            return Err(Diagnostic::error(format!(
                "refusing `{}`: it expands to more than the {} free in the store `{}` (at entry `{full}`)",
                self.archive,
                show_size(free),
                self.store.root.display()
            ))
            .with_hint("free space in the store's file system")
            .with_hint(UNCHANGED));
        }
        self.written = total;
        Ok(())
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
        if crate::interrupt::interrupted() {
            return Err(interrupted(&self.archive));
        }
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
        // Normalised: an archive's 0777 script must not land writable by others in a store
        // whose scripts root runs (issue #18).
        let mode = super::normal_mode(e.kind == Kind::Dir, e.mode);
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
            // What the manifest promises must fit too; the counted bytes hold it to that.
            let promised: u64 = parse_manifest(&image, &text)
                .map(|m| {
                    m.values()
                        .map(|r| match &r.data {
                            Some(d) => d.iter().map(|x| x[1]).sum(),
                            None => r.size.unwrap_or(0),
                        })
                        .fold(0u64, u64::saturating_add)
                })
                .unwrap_or(0);
            let saved = std::mem::take(&mut self.written);
            let fits = self.reserve(&full, promised);
            self.written = saved;
            fits?;
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
                self.reserve(&full, e.size)?;
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
                let data = extents.iter().map(|x| x.1).fold(0u64, u64::saturating_add);
                self.reserve(&full, data)?;
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
                    if crate::interrupt::interrupted() {
                        return Err(interrupted(&self.archive));
                    }
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
    let guard = TempDir::new(&store.root, IMPORT_PREFIX).map_err(|e| {
        Diagnostic::error(format!(
            "cannot create a directory in `{}`: {e}",
            store.root.display()
        ))
    })?;
    let tmp = guard.path().to_path_buf();
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
        written: 0,
        max_size: opts.max_size,
        free: crate::sys::free_bytes(&store.root).ok(),
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
    if let Some(want) = &opts.expect {
        if im.images.len() != 1 || !im.images.contains_key(want) {
            let held: Vec<String> = im.images.keys().map(|k| format!("`{k}`")).collect();
            return Err(Diagnostic::error(format!(
                "refusing `{shown}`: it should hold image `{want}` alone but holds {}",
                held.join(", ")
            ))
            .with_hint(UNCHANGED)
            .into());
        }
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
    // Durable before it is reported done: the unpacked tree on disk, then the renames.
    crate::sys::sync_tree(&tmp).map_err(|e| im.fs_fail(&tmp, e))?;
    if crate::interrupt::interrupted() {
        return Err(interrupted(&shown).into());
    }
    let names: Vec<String> = im.images.keys().cloned().collect();
    let replaced = install(store, &tmp, &names, opts.force)?;
    let _ = crate::sys::sync_dir(&store.root);
    let mut leftovers = Diagnostics::default();
    for old in replaced.iter().flatten() {
        if let Err(e) = remove_tree(old) {
            leftovers.push(Diagnostic::warning(format!(
                "the replaced image was kept at `{}`: {e}",
                old.display()
            )));
        }
    }
    drop(guard);
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
/// `force`), the new one renamed in. On any failure every step is undone; when undoing fails
/// too, the error says where each image is instead of claiming the store is unchanged.
/// Returns where each replaced image was put aside, to be removed by the caller.
fn install(
    store: &Store,
    tmp: &Path,
    names: &[String],
    force: bool,
) -> Result<Vec<Option<PathBuf>>, Diagnostic> {
    let mut done: Vec<Step> = Vec::new();
    for name in names {
        let dest = store.root.join(name);
        let from = tmp.join(name);
        let mut aside = None;
        if fs::symlink_metadata(&dest).is_ok() {
            if !force {
                return Err(rollback(
                    Diagnostic::error(format!(
                        "image `{name}` already exists in `{}`",
                        store.root.display()
                    ))
                    .with_hint("pass `--force` to replace it"),
                    done,
                ));
            }
            let a = tmp.with_file_name(format!(
                "{}{}{name}",
                tmp.file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or(".convirt-import"),
                crate::tree::ASIDE_INFIX
            ));
            if let Err(e) = fs::rename(&dest, &a) {
                return Err(rollback(
                    Diagnostic::error(format!("cannot move the old image `{name}` aside: {e}")),
                    done,
                ));
            }
            aside = Some(a);
        }
        if let Err(e) = rename_noreplace(&from, &dest) {
            let d = Diagnostic::error(format!("cannot move image `{name}` into the store: {e}"));
            // This image's own old copy goes back first, then the earlier ones.
            let mut steps = done;
            if let Some(a) = aside {
                steps.push(Step {
                    name: name.clone(),
                    from: None,
                    dest,
                    aside: Some(a),
                });
            }
            return Err(rollback(d, steps));
        }
        done.push(Step {
            name: name.clone(),
            from: Some(from),
            dest,
            aside,
        });
    }
    Ok(done.into_iter().map(|s| s.aside).collect())
}

/// One image moved by `install`: the new one from `from` (when it was moved) to `dest`, the
/// old one from `dest` to `aside`.
struct Step {
    name: String,
    from: Option<PathBuf>,
    dest: PathBuf,
    aside: Option<PathBuf>,
}

/// Undoes the steps, newest first, and finishes the error with the truth: unchanged, or
/// exactly where each image that could not be put back now is.
fn rollback(mut d: Diagnostic, steps: Vec<Step>) -> Diagnostic {
    let mut left = Vec::new();
    for s in steps.into_iter().rev() {
        if let Some(from) = &s.from {
            if let Err(e) = fs::rename(&s.dest, from) {
                left.push(format!(
                    "the new image `{}` stays at `{}` (it could not be taken back: {e})",
                    s.name,
                    s.dest.display()
                ));
                if let Some(a) = &s.aside {
                    left.push(format!(
                        "the old image `{}` is at `{}`",
                        s.name,
                        a.display()
                    ));
                }
                continue;
            }
        }
        if let Some(a) = &s.aside {
            if let Err(e) = rename_noreplace(a, &s.dest) {
                left.push(format!(
                    "the old image `{}` is at `{}`, not at `{}` (it could not be moved back: {e})",
                    s.name,
                    a.display(),
                    s.dest.display()
                ));
            }
        }
    }
    if left.is_empty() {
        return d.with_hint(UNCHANGED);
    }
    d = d.with_hint("the store could NOT be put back as it was:");
    for l in left {
        d = d.with_hint(l);
    }
    d.with_hint(
        "the next convirt command moves an old image back where its place is empty; otherwise it keeps it and names it",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rollback_that_fails_says_where_everything_is() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        fs::create_dir(root.join("A")).unwrap();
        fs::create_dir(root.join("aside-B")).unwrap();
        let steps = vec![
            // Undone fine: `A` goes back to where it came from.
            Step {
                name: "A".into(),
                from: Some(root.join("tmp-A")),
                dest: root.join("A"),
                aside: None,
            },
            // Cannot be undone: the new `B` is gone from its place, the old one stays aside.
            Step {
                name: "B".into(),
                from: Some(root.join("missing/tmp-B")),
                dest: root.join("B"),
                aside: Some(root.join("aside-B")),
            },
        ];
        let d = rollback(Diagnostic::error("x"), steps);
        let text = d.render();
        assert!(!text.contains("unchanged"), "{text}");
        assert!(text.contains("could NOT be put back"), "{text}");
        assert!(text.contains("the new image `B` stays at"), "{text}");
        assert!(text.contains("the old image `B` is at"), "{text}");
        assert!(!text.contains("image `A`"), "{text}");
        assert!(root.join("tmp-A").is_dir());

        let ok = rollback(Diagnostic::error("y"), vec![]).render();
        assert!(ok.contains(UNCHANGED), "{ok}");
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
}

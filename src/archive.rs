//! Image archives (spec §9.5, §9.6): `image pack` writes images into a reproducible tar.gz,
//! tar.zst or Debian package with a manifest of every file; `image import` unpacks an archive
//! into the store only after every entry was checked, the manifest verified and each image
//! loaded, then renames the images into place.
//!
//! The format and the safety rules are described in `docs/archive.md`.

// Errors here are `Diagnostic`s, as everywhere in convirt; their size is the diagnostic
// module's business.

mod compress;
mod deb;
mod import;
mod pack;
mod tarfmt;

pub use import::{DEFAULT_MAX_SIZE, ImportOptions, ImportedImage, import, parse_size};
pub use pack::{PackOptions, pack};

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::Path;
use tarfmt::Extent;

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

/// What was packed: entries written and file data (holes not counted).
pub(crate) struct PackStats {
    pub(crate) entries: usize,
    pub(crate) data: u64,
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
    let mut depth = rel
        .split('/')
        .filter(|c| !c.is_empty())
        .count()
        .saturating_sub(1);
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
    const SEEK_HOLE: bool = true;
    const SEEK_DATA: bool = false;
    let seek = |off: u64, hole: bool| crate::sys::seek_data_or_hole(file, off, hole);
    if size == 0 {
        return Ok(None);
    }
    match seek(0, SEEK_HOLE) {
        Ok(Some(h)) if h >= size => return Ok(None),
        Ok(Some(_)) => {}
        Ok(None) => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut extents = Vec::new();
    let mut off = 0u64;
    while off < size {
        let Some(data) = seek(off, SEEK_DATA)? else {
            break;
        };
        if data >= size {
            break;
        }
        let hole = seek(data, SEEK_HOLE)?.unwrap_or(size).min(size);
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
    crate::tree::remove(path)
}

/// A failed write of the archive: the full-disk case says so, and that nothing was left.
fn write_error(output: &Path, e: &io::Error) -> crate::diagnostic::Diagnostic {
    if e.kind() == io::ErrorKind::Interrupted {
        return crate::diagnostic::Diagnostic::error(format!(
            "`image pack` was interrupted (Ctrl-C); `{}` was not written",
            output.display()
        ));
    }
    let d =
        crate::diagnostic::Diagnostic::error(format!("cannot write `{}`: {e}", output.display()));
    if crate::sys::is_full(e) {
        d.with_hint(format!(
            "{}; the partial archive was removed",
            crate::sys::full_hint(e, output)
        ))
    } else {
        d
    }
}

/// The value of `SOURCE_DATE_EPOCH` (reproducible builds): unset or empty is none, anything
/// but a number of seconds is an error.
pub fn source_date_epoch(
    value: Option<&str>,
) -> Result<Option<u64>, crate::diagnostic::Diagnostic> {
    match value.map(str::trim) {
        Some(v) if !v.is_empty() => v.parse::<u64>().map(Some).map_err(|_| {
            crate::diagnostic::Diagnostic::error(format!(
                "`SOURCE_DATE_EPOCH` is `{v}`, not a number of seconds"
            ))
            .with_hint("unset it, or set it to a Unix time such as `1700000000`")
        }),
        _ => Ok(None),
    }
}

fn clamp_mtime(mtime: i64, epoch: Option<u64>) -> u64 {
    let m = mtime.max(0) as u64;
    epoch.map_or(m, |e| m.min(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn source_date_epoch_is_seconds_or_an_error() {
        assert_eq!(source_date_epoch(None).unwrap(), None);
        assert_eq!(source_date_epoch(Some(" ")).unwrap(), None);
        assert_eq!(
            source_date_epoch(Some("1700000000\n")).unwrap(),
            Some(1_700_000_000)
        );
        let e = source_date_epoch(Some("yesterday")).unwrap_err();
        assert!(
            e.render().contains("`SOURCE_DATE_EPOCH` is `yesterday`"),
            "{}",
            e.render()
        );
    }

    #[test]
    fn deb_does_not_import_pack() {
        // The image walk lives in `tree`; `deb` gets it from there, so `pack` → `deb` is the
        // only edge between the two (issue #11.3).
        let deb = include_str!("archive/deb.rs");
        for bad in ["pack::", "use super::pack", "PackOptions"] {
            assert!(!deb.contains(bad), "deb.rs mentions `{bad}`");
        }
    }

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

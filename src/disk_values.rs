//! Disk values in the typed model: `<dev>_disk_create`, `_disk_type`, `_disk_size`,
//! `_disk_fs_type` and the reference-disk options `_image_src_type` / `_image_src_format`,
//! checked once an image is resolved (image.conf, site settings and `--set` together), so a
//! bad value stops `--dry-run`, `image validate` and a real provision alike, pointing at
//! the file and line or the `--set`, before any file is made. Read-only sources (an install
//! ISO, a reference disk) that do not exist are found here too.

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::disks::Disk;
use crate::image::Image;
use crate::resolve::{Entry, Origin, Resolved};
use crate::value::Value;
use std::path::Path;

/// The disk kinds `common/functions` knows (`create_disk`).
pub(crate) const DISK_TYPES: &[&str] = &[
    "VBD",
    "vbd",
    "file",
    "raw",
    "aio",
    "tap:aio",
    "tap2:aio",
    "qcow",
    "qcow2",
    "tap:qcow",
    "tap:qcow2",
    "tap2:qcow2",
    // A qcow2 overlay of the cached, read-only base of a `guest_tree` disk (docs/images.md).
    "qcow2-thin",
    "vmdk",
    "tap:vmdk",
    "LVM",
    "lvm",
    "phy",
];
/// What `make_fs` makes.
pub(crate) const FS_TYPES: &[&str] = &["ext2", "ext3", "ext4", "swap"];
/// Where a created disk's content comes from: a disk image, a tar/zip/directory, or the
/// guest tree a `common/guest` image builds (docs/images.md).
pub(crate) const SRC_TYPES: &[&str] = &["disk_image", "disk_content", "guest_tree"];
pub(crate) const SRC_FORMATS: &[&str] = &[
    "gzip",
    "bzip",
    "xz",
    "tar",
    "tar_gzip",
    "tgz",
    "tar_bz2",
    "tar_bzip",
    "tar_xz",
    "zip",
    "dir",
    "dir-gzipped-chunks",
];
/// The largest disk: 16 TiB in MB, the largest file ext4 (the usual home of
/// `VM_DISKS_DIR`) holds with 4 KiB blocks.
pub(crate) const MAX_SIZE_MB: u64 = 16 * 1024 * 1024;

/// Every problem of the disk values, each pointing where the value was set.
pub(crate) fn check(image: &Image, resolved: &Resolved) -> Diagnostics {
    let mut out = Diagnostics::default();
    for e in &resolved.image {
        let Some((_, what)) = split_key(&e.key) else {
            continue;
        };
        let problem = match what {
            "disk_size" => check_size(&e.value),
            "disk_create" => one_of(&e.value, &["yes", "no"]),
            "disk_type" if e.value.to_text() == "qcow2-thin" => thin_source(resolved, &e.key),
            "disk_type" => one_of(&e.value, DISK_TYPES),
            "disk_fs_type" => one_of(&e.value, FS_TYPES),
            "image_src_type" => one_of(&e.value, SRC_TYPES),
            "image_src_format" => one_of(&e.value, SRC_FORMATS),
            _ => None,
        };
        if let Some(why) = problem {
            out.push(located(
                image,
                e,
                Diagnostic::error(format!("`{}` is {}: {why}", e.key, e.value.repr())),
            ));
        }
    }
    out
}

/// `qcow2-thin` needs a base to be thin on: only a `guest_tree` disk has one (the cache
/// entry's base disk).
fn thin_source(resolved: &Resolved, key: &str) -> Option<String> {
    let dev = key.strip_suffix("_disk_type")?;
    let src = resolved
        .image_value(&format!("{dev}_image_src_type"))
        .map(Value::to_text);
    (src.as_deref() != Some("guest_tree")).then(|| {
        format!(
            "'qcow2-thin' is an overlay of a cached guest base, only for a disk whose \
             `{dev}_image_src_type` is 'guest_tree'"
        )
    })
}

/// `hda_disk_size` → (`hda`, `disk_size`), for the keys checked here.
fn split_key(key: &str) -> Option<(&str, &str)> {
    for what in [
        "disk_size",
        "disk_create",
        "disk_type",
        "disk_fs_type",
        "image_src_type",
        "image_src_format",
    ] {
        if let Some(dev) = key.strip_suffix(what).and_then(|d| d.strip_suffix('_')) {
            if !dev.is_empty() && dev.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Some((dev, what));
            }
        }
    }
    None
}

/// A size is a positive whole number of MB (an int, or a string of digits) no larger than
/// [`MAX_SIZE_MB`]; an empty string means "not set".
fn check_size(v: &Value) -> Option<String> {
    let n: u128 = match v {
        Value::Int(i) if *i > 0 => *i as u128,
        Value::Int(_) => return Some("a disk size must be a positive number of MB".into()),
        Value::Str(s) if s.trim().is_empty() => return None,
        Value::Str(s) if s.trim().bytes().all(|b| b.is_ascii_digit()) => {
            match s.trim().parse::<u128>() {
                Ok(0) => return Some("a disk size must be a positive number of MB".into()),
                Ok(n) => n,
                Err(_) => u128::MAX,
            }
        }
        _ => return Some("a disk size is a whole number of MB, such as 4096".into()),
    };
    if n > MAX_SIZE_MB as u128 {
        return Some(format!(
            "larger than {MAX_SIZE_MB} MB (16 TiB), the largest disk file ext4 holds"
        ));
    }
    None
}

fn one_of(v: &Value, allowed: &[&str]) -> Option<String> {
    match v {
        Value::Str(s) if s.is_empty() || allowed.contains(&s.as_str()) => None,
        _ => Some(format!(
            "it must be one of {}",
            allowed
                .iter()
                .map(|a| format!("'{a}'"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Points a diagnostic at where the value came from: the line of image.conf, or the
/// `--set` / site setting that gave it.
fn located(image: &Image, e: &Entry, d: Diagnostic) -> Diagnostic {
    match &e.origin {
        Origin::Image { .. } | Origin::Computed { .. } => {
            match image.image_conf.site_span(&e.key) {
                Some(span) => d.at(&image.image_conf.source, span),
                None => d.in_file(image.image_conf.path()),
            }
        }
        Origin::CommandLine => d.with_hint(format!(
            "it was given with `--set {}=...`; fix that value",
            e.key
        )),
        Origin::Site { file: Some(f) } => {
            d.with_hint(format!("it comes from the site settings `{f}`"))
        }
        Origin::Site { file: None } | Origin::Builtin | Origin::Detected { .. } => d,
    }
}

/// Whether the image marks a device's source optional: `<dev>_optional = 'yes'`.
fn optional(resolved: &Resolved, dev: &str) -> bool {
    matches!(
        resolved.image_value(&format!("{dev}_optional")),
        Some(Value::Str(s)) if s == "yes"
    ) || matches!(
        resolved.image_value(&format!("{dev}_optional")),
        Some(Value::Bool(true))
    )
}

/// Read-only sources that do not exist: a read-only or CD-ROM disk file, and a local
/// `<dev>_image_src` of a disk to create. Warnings for `--dry-run` and `image validate`;
/// with `for_real`, errors unless the image marks the device optional.
pub(crate) fn missing_sources(disks: &[Disk], resolved: &Resolved, for_real: bool) -> Diagnostics {
    check_sources(&sources(disks, resolved), for_real)
}

/// A file a run reads and does not create: checked where the run happens (the server for
/// `--host`), so it travels with the job.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Source {
    pub what: String,
    pub path: String,
    pub dev: String,
    pub optional: bool,
}

/// The read-only sources of `disks`: a read-only or CD-ROM disk file, and a local
/// `<dev>_image_src` of a disk to create.
pub(crate) fn sources(disks: &[Disk], resolved: &Resolved) -> Vec<Source> {
    let mut out = Vec::new();
    for d in disks {
        let mut add = |what: &str, path: String| {
            out.push(Source {
                what: what.into(),
                path,
                dev: d.dev.clone(),
                optional: optional(resolved, &d.dev),
            })
        };
        if (d.cdrom || d.mode == "r") && d.is_file_backed() {
            add("read-only disk", d.path.clone());
        }
        if d.create {
            if let Some(src) = &d.image_src {
                let local = src.strip_prefix("file://").unwrap_or(src);
                if local.starts_with('/') && !src.contains("://") || src.starts_with("file://") {
                    add("reference disk", local.to_string());
                }
            }
        }
    }
    out
}

/// The sources missing on this machine, as warnings or (with `for_real`) errors.
pub(crate) fn check_sources(sources: &[Source], for_real: bool) -> Diagnostics {
    let mut out = Diagnostics::default();
    for s in sources {
        if Path::new(&s.path).exists() {
            continue;
        }
        let msg = format!("the {} `{}` of `{}` does not exist", s.what, s.path, s.dev);
        out.push(if for_real && !s.optional {
            Diagnostic::error(msg).with_hint(format!(
                "put it there, or mark it optional with `{}_optional = 'yes'` in image.conf",
                s.dev
            ))
        } else if s.optional {
            Diagnostic::warning(format!("{msg} (marked optional: provisioning goes ahead; put it there before the VM starts)"))
        } else {
            Diagnostic::warning(msg).with_hint("provisioning stops unless it exists by then")
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        for ok in [
            Value::Int(1),
            Value::Int(4096),
            Value::Str("20000".into()),
            Value::Str(String::new()),
        ] {
            assert_eq!(check_size(&ok), None, "{ok:?}");
        }
        for (bad, why) in [
            (Value::Str("abc".into()), "whole number"),
            (Value::Int(0), "positive"),
            (Value::Int(-5), "positive"),
            (Value::Str("0".into()), "positive"),
            (Value::Float(1.5), "whole number"),
            (Value::Bool(true), "whole number"),
            (Value::Str("99999999999999999999".into()), "16 TiB"),
            (
                Value::Str("999999999999999999999999999999999999999999".into()),
                "16 TiB",
            ),
            (Value::Int(MAX_SIZE_MB as i64 + 1), "16 TiB"),
        ] {
            let got = check_size(&bad).unwrap_or_default();
            assert!(got.contains(why), "{bad:?}: {got}");
        }
    }

    #[test]
    fn keys_and_kinds() {
        assert_eq!(split_key("hda_disk_size"), Some(("hda", "disk_size")));
        assert_eq!(
            split_key("xvda_disk_fs_type"),
            Some(("xvda", "disk_fs_type"))
        );
        assert_eq!(
            split_key("xvda_image_src_format"),
            Some(("xvda", "image_src_format"))
        );
        assert_eq!(split_key("disk_size"), None);
        assert_eq!(split_key("my_disk_size_x"), None);
        assert_eq!(one_of(&Value::Str("VBD".into()), DISK_TYPES), None);
        assert!(one_of(&Value::Str("floppy".into()), DISK_TYPES).is_some());
        assert!(one_of(&Value::Int(3), FS_TYPES).is_some());
    }
}

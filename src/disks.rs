//! The disks a VM config names and what provisioning will do with each, read from the
//! `disk` list and image.conf's `<dev>_disk_*` / `<dev>_image_src*` keys, as ConVirt's
//! generic provision.sh did (read-only and cdrom disks are never created).

use crate::resolve::Resolved;
use crate::value::Value;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Disk {
    /// The entry as written in the VM config.
    pub spec: String,
    /// `file`, `phy`, `tap:aio`, `VBD`, `qcow2`, `LVM`, ...: `<dev>_disk_type` when set.
    pub kind: String,
    pub path: String,
    pub dev: String,
    pub mode: String,
    pub cdrom: bool,
    /// Whether the provisioning creates (or fills) it.
    pub create: bool,
    pub size_mb: Option<i64>,
    pub image_src: Option<String>,
}

/// The paths of the disks a provisioning creates.
pub(crate) fn created(disks: &[Disk]) -> Vec<String> {
    disks
        .iter()
        .filter(|d| d.create)
        .map(|d| d.path.clone())
        .collect()
}

impl Disk {
    /// A regular file convirt may check and, with `--force`, replace.
    pub(crate) fn is_file_backed(&self) -> bool {
        !matches!(self.kind.as_str(), "phy" | "LVM" | "lvm")
            && self.path.starts_with('/')
            && !self.path.starts_with("/dev/")
    }
}

/// One disk entry, normalised the way the shipped shell side (`_cv_parse_disk` in
/// `common/functions`) reads it; both are checked against one table,
/// `tests/fixtures/disk_entries.txt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// `file` (also for `aio:`, `raw:` and no protocol), `phy` (also for a bare `/dev/`
    /// path), `qcow2` (also `qcow`), `vmdk`, or a `tap:`/`tap2:` protocol as written.
    pub kind: String,
    pub path: String,
    /// The guest device without `ioemu:` and `:cdrom`.
    pub dev: String,
    /// `r` or `w` for the xl form; as written (`w`, `r`, `rw`, ...) for the legacy one.
    pub mode: String,
    pub cdrom: bool,
}

/// Parses one entry: `proto:path,dev[:cdrom],mode` (also `tap:aio:path`) or the xl form
/// `format=...,vdev=...,access=...,target=...` (`target=` takes the rest of the entry).
pub(crate) fn parse(spec: &str) -> Option<Entry> {
    let is_xl = spec
        .split(',')
        .any(|p| p.trim_start().starts_with("target="));
    let (mut kind, path, dev, mode, mut cdrom) = if is_xl {
        let at = spec.find("target=")?;
        let path = spec[at + "target=".len()..].trim().to_string();
        let (mut vdev, mut access, mut format, mut backend) =
            (String::new(), "w".to_string(), String::new(), String::new());
        let mut cdrom = false;
        for part in spec[..at].split(',').map(str::trim) {
            match part.split_once('=') {
                Some(("vdev", v)) => vdev = v.to_string(),
                Some(("access", v)) => access = v.to_string(),
                Some(("format", v)) => format = v.to_string(),
                Some(("backendtype", v)) => backend = v.to_string(),
                Some(("devtype", "cdrom")) => cdrom = true,
                None if part == "cdrom" => cdrom = true,
                _ => {}
            }
        }
        let kind = match format.as_str() {
            _ if backend == "phy" => "phy",
            "qcow" | "qcow2" => "qcow2",
            "vmdk" => "vmdk",
            _ => "",
        };
        let mode = if access.starts_with('r') && !access.contains('w') {
            "r"
        } else {
            "w"
        };
        (kind.to_string(), path, vdev, mode.to_string(), cdrom)
    } else {
        let mut fields: Vec<&str> = spec.split(',').collect();
        if fields.len() < 3 {
            return None;
        }
        let mode = fields.pop()?.trim().to_string();
        let dev = fields.pop()?.trim().to_string();
        let target = fields.join(",");
        let target = target.trim();
        let (kind, path) = match split_proto(target) {
            Some((k, p)) => (k, p.to_string()),
            None => (String::new(), target.to_string()),
        };
        (kind, path, dev, mode, false)
    };
    let dev = dev.strip_prefix("ioemu:").unwrap_or(&dev);
    if dev.ends_with(":cdrom") {
        cdrom = true;
    }
    let dev = dev.split(':').next().unwrap_or("").to_string();
    kind = match kind.as_str() {
        "" if path.starts_with("/dev/") => "phy".into(),
        "" | "aio" | "raw" => "file".into(),
        "qcow" => "qcow2".into(),
        _ => kind,
    };
    Some(Entry {
        kind,
        path,
        dev,
        mode,
        cdrom,
    })
}

/// `tap:aio:/p` → (`tap:aio`, `/p`), `tap:/p` → (`tap:aio`, `/p`), `file:/p` → (`file`,
/// `/p`); `None` without a protocol.
fn split_proto(target: &str) -> Option<(String, &str)> {
    let word = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    for tap in ["tap:", "tap2:"] {
        if let Some(rest) = target.strip_prefix(tap) {
            return match rest.split_once(':') {
                Some((sub, p)) if word(sub) => Some((format!("{tap}{sub}"), p)),
                _ => Some(("tap:aio".to_string(), rest)),
            };
        }
    }
    match target.split_once(':') {
        Some((proto, p)) if word(proto) => Some((proto.to_string(), p)),
        _ => None,
    }
}

/// The disks of a resolved config, with what provisioning does to each.
pub(crate) fn plan(resolved: &Resolved) -> Vec<Disk> {
    let entries: Vec<String> = match resolved.vm_value("disk") {
        Some(Value::List(v)) | Some(Value::Tuple(v)) => v.iter().map(Value::to_text).collect(),
        Some(Value::Str(s)) => vec![s.clone()],
        _ => vec![],
    };
    let key = |dev: &str, suffix: &str| resolved.image_value(&format!("{dev}_{suffix}")).cloned();
    let mut out = Vec::new();
    for spec in entries {
        let Some(Entry {
            kind: proto,
            path,
            dev,
            mode,
            cdrom,
        }) = parse(&spec)
        else {
            continue;
        };
        let text = |v: Option<Value>| v.map(|v| v.to_text()).filter(|s| !s.is_empty());
        let kind = text(key(&dev, "disk_type")).unwrap_or(proto);
        let read_only = mode == "r" || mode == "ro" || cdrom;
        let wants_create = text(key(&dev, "disk_create")).is_some_and(|s| s == "yes");
        // `guest_tree`: the image's own steps make the disk from a staged guest tree.
        let image_src = text(key(&dev, "image_src"))
            .or_else(|| text(key(&dev, "image_src_type")).filter(|t| t == "guest_tree"));
        let size_mb = key(&dev, "disk_size").and_then(|v| match v {
            Value::Int(i) => Some(i),
            Value::Float(f) => Some(f as i64),
            Value::Str(s) => s.trim().parse().ok(),
            _ => None,
        });
        out.push(Disk {
            create: !read_only && (wants_create || image_src.is_some()),
            spec,
            kind,
            path,
            dev,
            mode,
            cdrom,
            size_mb,
            image_src,
        });
    }
    out
}

/// The `disk` list with each `qcow2-thin` disk (`<dev>_disk_type`) named as the qcow2
/// image it is, the way `xl` and its qdisk backend (QEMU) need it: an xl-form entry gets
/// `format=qcow2` and `backendtype=qdisk`, a legacy one the `tap:qcow2:` protocol.
pub(crate) fn thin_entries(resolved: &mut Resolved) {
    let thin = |dev: &str| {
        resolved
            .image_value(&format!("{dev}_disk_type"))
            .is_some_and(|v| v.to_text() == "qcow2-thin")
    };
    let fix = |spec: &str| -> Option<String> {
        let e = parse(spec)?;
        if !thin(&e.dev) {
            return None;
        }
        if spec.contains("target=") {
            let at = spec.find("target=")?;
            let mut parts: Vec<String> = spec[..at]
                .split(',')
                .map(str::trim)
                .filter(|p| {
                    !p.is_empty() && !p.starts_with("format=") && !p.starts_with("backendtype=")
                })
                .map(str::to_string)
                .collect();
            parts.insert(0, "format=qcow2".into());
            parts.insert(1, "backendtype=qdisk".into());
            Some(format!("{},{}", parts.join(","), &spec[at..]))
        } else {
            let (target, rest) = spec.split_once(',')?;
            let path = split_proto(target.trim()).map_or(target.trim(), |(_, p)| p);
            Some(format!("tap:qcow2:{path},{rest}"))
        }
    };
    let Some(entry) = resolved.vm.iter().position(|e| e.key == "disk") else {
        return;
    };
    let new = match &resolved.vm[entry].value {
        Value::List(v) | Value::Tuple(v) => {
            let items: Vec<Value> = v
                .iter()
                .map(|i| match i {
                    Value::Str(s) => fix(s).map_or_else(|| i.clone(), Value::Str),
                    _ => i.clone(),
                })
                .collect();
            match &resolved.vm[entry].value {
                Value::Tuple(_) => Value::Tuple(items),
                _ => Value::List(items),
            }
        }
        Value::Str(s) => match fix(s) {
            Some(f) => Value::Str(f),
            None => return,
        },
        _ => return,
    };
    resolved.vm[entry].value = new;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shared table: every row is also read by `tests/shell/run.sh` against
    /// `_cv_parse_disk`, so the two parsers cannot drift apart.
    #[test]
    fn the_shared_disk_entry_table() {
        let table = include_str!("../tests/fixtures/disk_entries.txt");
        let mut rows = 0;
        for (n, line) in table.lines().enumerate() {
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let cols: Vec<&str> = line.split('|').map(str::trim).collect();
            assert_eq!(cols.len(), 6, "line {}: {line}", n + 1);
            let want = Entry {
                kind: cols[1].into(),
                path: cols[2].into(),
                dev: cols[3].into(),
                mode: cols[4].into(),
                cdrom: cols[5] == "1",
            };
            assert_eq!(parse(cols[0]), Some(want), "line {}: {}", n + 1, cols[0]);
            rows += 1;
        }
        assert!(rows >= 15, "the table lost rows: {rows}");
    }

    #[test]
    fn malformed_legacy_entries_are_none() {
        assert_eq!(parse("file:/d/a.img"), None);
        assert_eq!(parse("file:/d/a.img,hda"), None);
    }
}

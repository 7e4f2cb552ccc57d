//! The disks a VM config names and what provisioning will do with each, read from the
//! `disk` list and image.conf's `<dev>_disk_*` / `<dev>_image_src*` keys, as ConVirt's
//! generic provision.sh did (read-only and cdrom disks are never created).

use crate::resolve::Resolved;
use crate::value::Value;

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Disk {
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

impl Disk {
    /// A regular file convirt may check and, with `--force`, replace.
    pub fn is_file_backed(&self) -> bool {
        !matches!(self.kind.as_str(), "phy" | "LVM" | "lvm")
            && self.path.starts_with('/')
            && !self.path.starts_with("/dev/")
    }
}

/// Parses one entry: `proto:path,dev[:cdrom],mode` (also `tap:aio:path`) or the xl form
/// `target=...,vdev=...,access=...`.
pub fn parse_entry(spec: &str) -> Option<(String, String, String, String, bool)> {
    if spec.contains("target=") || spec.contains("vdev=") {
        let mut target = String::new();
        let mut vdev = String::new();
        let mut access = "rw".to_string();
        let mut format = "raw".to_string();
        let mut cdrom = false;
        for part in spec.split(',') {
            let part = part.trim();
            match part.split_once('=') {
                Some(("target", v)) => target = v.to_string(),
                Some(("vdev", v)) => vdev = v.to_string(),
                Some(("access", v)) => access = v.to_string(),
                Some(("format", v)) => format = v.to_string(),
                Some(("devtype", "cdrom")) => cdrom = true,
                None if part == "cdrom" => cdrom = true,
                _ => {}
            }
        }
        let kind = if target.starts_with("/dev/") {
            "phy".to_string()
        } else if format == "qcow2" {
            "qcow2".into()
        } else {
            "file".into()
        };
        let mode = if access.starts_with('r') && !access.contains('w') {
            "r".to_string()
        } else {
            "w".to_string()
        };
        return Some((kind, target, vdev, mode, cdrom));
    }
    let mut parts = spec.split(',').map(str::trim);
    let target = parts.next()?;
    let dev = parts.next()?.to_string();
    let mode = parts.next().unwrap_or("w").to_string();
    let (kind, path) = if let Some(rest) = target
        .strip_prefix("tap:")
        .or_else(|| target.strip_prefix("tap2:"))
    {
        match rest.split_once(':') {
            Some((sub, p)) => (format!("tap:{sub}"), p.to_string()),
            None => ("tap:aio".to_string(), rest.to_string()),
        }
    } else {
        match target.split_once(':') {
            Some((proto, p)) => (proto.to_string(), p.to_string()),
            None if target.starts_with("/dev/") => ("phy".to_string(), target.to_string()),
            None => ("file".to_string(), target.to_string()),
        }
    };
    let cdrom = dev.contains(":cdrom");
    Some((kind, path, dev, mode, cdrom))
}

/// The disks of a resolved config, with what provisioning does to each.
pub fn plan(resolved: &Resolved) -> Vec<Disk> {
    let entries: Vec<String> = match resolved.vm_value("disk") {
        Some(Value::List(v)) | Some(Value::Tuple(v)) => v.iter().map(Value::to_text).collect(),
        Some(Value::Str(s)) => vec![s.clone()],
        _ => vec![],
    };
    let key = |dev: &str, suffix: &str| resolved.image_value(&format!("{dev}_{suffix}")).cloned();
    let mut out = Vec::new();
    for spec in entries {
        let Some((proto, path, dev_raw, mode, cdrom)) = parse_entry(&spec) else {
            continue;
        };
        let dev = dev_raw
            .trim_start_matches("ioemu:")
            .split(':')
            .next()
            .unwrap_or("")
            .to_string();
        let text = |v: Option<Value>| v.map(|v| v.to_text()).filter(|s| !s.is_empty());
        let kind = text(key(&dev, "disk_type")).unwrap_or(proto);
        let read_only = mode == "r" || cdrom;
        let wants_create = text(key(&dev, "disk_create")).is_some_and(|s| s == "yes");
        let image_src = text(key(&dev, "image_src"));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries() {
        let cases = [
            (
                "file:/d/a.img,hda,w",
                ("file", "/d/a.img", "hda", "w", false),
            ),
            (
                "phy:/dev/cdrom,hdc:cdrom,r",
                ("phy", "/dev/cdrom", "hdc:cdrom", "r", true),
            ),
            (
                "tap:aio:/d/x.img,xvda,w",
                ("tap:aio", "/d/x.img", "xvda", "w", false),
            ),
            (
                "/dev/sr0,hdc:cdrom,r",
                ("phy", "/dev/sr0", "hdc:cdrom", "r", true),
            ),
            (
                "target=/d/b.qcow2,vdev=xvdb,format=qcow2,access=rw",
                ("qcow2", "/d/b.qcow2", "xvdb", "w", false),
            ),
        ];
        for (spec, (k, p, d, m, c)) in cases {
            assert_eq!(
                parse_entry(spec),
                Some((k.into(), p.into(), d.into(), m.into(), c)),
                "{spec}"
            );
        }
    }
}

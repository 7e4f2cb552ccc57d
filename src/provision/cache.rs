//! The guest bootstrap cache as a whole (`convirt cache list|prune`): the entries
//! `common/guest` builds (`guests/debian-<key>/`), the read-only bases thin VMs stand on
//! (`guests/bases/`, hard links of an entry's base disk) and the pins that say which VM disk
//! needs which base (`guests/pins/`, one file a thin disk: `overlay PATH` and `base PATH`).
//!
//! A pin is live while its overlay exists and is a qcow2 image backed by the pin's base. An entry is pinned when a live pin's base is one
//! of the entry's base disks (the same inode); a base link is pinned when a live pin names
//! it. `prune` removes what nothing pins, each key only while nobody holds its lock (a
//! provisioning holds it shared, a build exclusively), and never a pinned base.

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One thing of the cache and what it holds on disk.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct Item {
    /// `entry`, `base` or `leftover` (a half-built or half-removed entry).
    pub kind: &'static str,
    pub path: PathBuf,
    /// The cache key it belongs to.
    pub key: String,
    /// Bytes allocated on disk (a hard-linked file counts in each of its names).
    pub bytes: u64,
    /// The thin VM disks that need it (live pins).
    pub pinned_by: Vec<String>,
}

/// The whole cache: its items, and pins whose disk is gone.
#[derive(Debug, Default, serde::Serialize)]
pub(crate) struct Listing {
    pub dir: PathBuf,
    pub items: Vec<Item>,
    pub stale_pins: Vec<PathBuf>,
}

struct Pin {
    overlay: String,
    base: PathBuf,
}

fn read_pins(guests: &Path) -> (Vec<Pin>, Vec<PathBuf>) {
    let (mut live, mut stale) = (Vec::new(), Vec::new());
    for e in std::fs::read_dir(guests.join("pins"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let path = e.path();
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix(' ')))
                .map(str::to_string)
        };
        match (field("overlay"), field("base")) {
            (Some(overlay), Some(base)) if holds(Path::new(&overlay), Path::new(&base)) => live
                .push(Pin {
                    overlay,
                    base: PathBuf::from(base),
                }),
            _ if !path.to_string_lossy().ends_with(".tmp") => stale.push(path),
            _ => {}
        }
    }
    (live, stale)
}

/// Whether a pin still holds: its disk exists and is a qcow2 image whose backing file is
/// the base (read from the qcow2 header). A disk that exists but cannot be read counts as
/// holding: a base is never freed on a guess.
fn holds(overlay: &Path, base: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    use std::os::unix::ffi::OsStrExt;
    if overlay.symlink_metadata().is_err() {
        return false;
    }
    let Ok(mut f) = File::open(overlay) else {
        return true;
    };
    let mut head = [0u8; 20];
    if f.read_exact(&mut head).is_err() || head[..4] != *b"QFI\xfb" {
        return false;
    }
    let offset = u64::from_be_bytes(head[8..16].try_into().unwrap_or_default());
    let len = u32::from_be_bytes(head[16..20].try_into().unwrap_or_default()) as usize;
    if offset == 0 || len == 0 || len > 4096 {
        return false;
    }
    let mut name = vec![0u8; len];
    if f.seek(SeekFrom::Start(offset)).is_err() || f.read_exact(&mut name).is_err() {
        return true;
    }
    Path::new(std::ffi::OsStr::from_bytes(&name)) == base
}

/// Allocated bytes of a file or of a directory's files.
fn allocated(p: &Path) -> u64 {
    walkdir::WalkDir::new(p)
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| !m.is_dir())
        .map(|m| m.blocks() * 512)
        .sum()
}

fn ident(p: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()))
}

/// `debian-<key>` of an entry, `debian-<key>-base-...` of a base link, `.debian-<key>.new.X`
/// of a leftover: the key.
fn key_of(name: &str) -> Option<String> {
    let rest = name.trim_start_matches('.').strip_prefix("debian-")?;
    let key: String = rest.chars().take_while(|c| c.is_ascii_hexdigit()).collect();
    (!key.is_empty()).then_some(key)
}

/// Everything in `<cache_dir>/guests`.
pub(crate) fn list(cache_dir: &Path) -> Listing {
    let guests = cache_dir.join("guests");
    let (pins, stale_pins) = read_pins(&guests);
    let pin_ids: Vec<(Option<(u64, u64)>, &Pin)> =
        pins.iter().map(|p| (ident(&p.base), p)).collect();
    let mut items = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(&guests)
        .into_iter()
        .flatten()
        .flatten()
        .collect();
    names.sort_by_key(|e| e.file_name());
    for e in names {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        if !path.is_dir() || name == "bases" || name == "pins" {
            continue;
        }
        let Some(key) = key_of(&name) else { continue };
        if name.starts_with('.') {
            items.push(Item {
                kind: "leftover",
                bytes: allocated(&path),
                path,
                key,
                pinned_by: vec![],
            });
            continue;
        }
        let bases: HashSet<(u64, u64)> = std::fs::read_dir(&path)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|f| {
                let n = f.file_name().to_string_lossy().into_owned();
                n.starts_with("base-") && n.ends_with(".img")
            })
            .filter_map(|f| ident(&f.path()))
            .collect();
        let pinned_by = pin_ids
            .iter()
            .filter(|(id, _)| id.is_some_and(|id| bases.contains(&id)))
            .map(|(_, p)| p.overlay.clone())
            .collect();
        items.push(Item {
            kind: "entry",
            bytes: allocated(&path),
            path,
            key,
            pinned_by,
        });
    }
    let mut links: Vec<_> = std::fs::read_dir(guests.join("bases"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    links.sort();
    for path in links {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some(key) = key_of(&name) else { continue };
        let id = ident(&path);
        let pinned_by = pin_ids
            .iter()
            .filter(|(pid, p)| p.base == path || (id.is_some() && *pid == id))
            .map(|(_, p)| p.overlay.clone())
            .collect();
        items.push(Item {
            kind: "base",
            bytes: allocated(&path),
            path,
            key,
            pinned_by,
        });
    }
    for i in &mut items {
        i.pinned_by.sort();
    }
    Listing {
        dir: guests,
        items,
        stale_pins,
    }
}

/// What `prune` did with one item.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct Pruned {
    pub item: Item,
    /// `removed`, `remove` (dry run), `kept` or `failed`.
    pub action: &'static str,
    pub why: String,
    /// Bytes given back (the last name of a file only).
    pub freed: u64,
}

/// Bytes a removal gives back: files whose last name goes.
fn freed_by(p: &Path) -> u64 {
    walkdir::WalkDir::new(p)
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| !m.is_dir() && m.nlink() == 1)
        .map(|m| m.blocks() * 512)
        .sum()
}

/// Removes every unpinned entry, base link and leftover whose key nobody is using, and the
/// stale pins. A pinned item is never removed.
pub(crate) fn prune(cache_dir: &Path, dry_run: bool) -> (Vec<Pruned>, Vec<PathBuf>) {
    let listing = list(cache_dir);
    let guests = &listing.dir;
    let mut out = Vec::new();
    // Entries first: a base link's data is given back when its entry's name is gone too.
    let mut items = listing.items.clone();
    items.sort_by_key(|i| match i.kind {
        "entry" => 0,
        "leftover" => 1,
        _ => 2,
    });
    // Locks held for the whole prune, one a key.
    let mut locks: Vec<(String, Option<File>)> = Vec::new();
    for item in items {
        if !item.pinned_by.is_empty() {
            let why = format!("pinned by {}", item.pinned_by.join(", "));
            out.push(Pruned {
                item,
                action: "kept",
                why,
                freed: 0,
            });
            continue;
        }
        let held = match locks.iter().find(|(k, _)| *k == item.key) {
            Some((_, f)) => f.is_some(),
            None => {
                let lock = crate::lock::guest_cache_path(guests, &item.key);
                let f = crate::lock::try_file(&lock).ok().flatten();
                let ok = f.is_some();
                locks.push((item.key.clone(), f));
                ok
            }
        };
        if !held {
            out.push(Pruned {
                item,
                action: "kept",
                why: "in use: a provisioning holds its lock".into(),
                freed: 0,
            });
            continue;
        }
        if dry_run {
            let freed = freed_by(&item.path);
            out.push(Pruned {
                item,
                action: "remove",
                why: String::new(),
                freed,
            });
            continue;
        }
        let freed = freed_by(&item.path);
        let r = if item.path.is_dir() {
            std::fs::remove_dir_all(&item.path)
        } else {
            std::fs::remove_file(&item.path)
        };
        out.push(match r {
            Ok(()) => Pruned {
                item,
                action: "removed",
                why: String::new(),
                freed,
            },
            Err(e) => Pruned {
                item,
                action: "failed",
                why: e.to_string(),
                freed: 0,
            },
        });
    }
    let mut stale = Vec::new();
    for p in listing.stale_pins {
        if dry_run || std::fs::remove_file(&p).is_ok() {
            stale.push(p);
        }
    }
    (out, stale)
}

/// `1.4 GB`, `380 MB`, `12 kB`.
pub(crate) fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.0} MB", b / 1e6)
    } else {
        format!("{:.0} kB", b / 1e3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_every_kind_of_name() {
        assert_eq!(key_of("debian-0123abcd").as_deref(), Some("0123abcd"));
        assert_eq!(
            key_of("debian-0123abcd-base-2048M-i77.img").as_deref(),
            Some("0123abcd")
        );
        assert_eq!(
            key_of(".debian-0123abcd.new.XyZ").as_deref(),
            Some("0123abcd")
        );
        assert_eq!(key_of("other"), None);
    }

    /// A pinned base and its entry stay; an unpinned entry goes; a pin whose disk is gone
    /// is stale and removed.
    #[test]
    fn prune_keeps_what_a_live_pin_needs() {
        let d = tempfile::tempdir().unwrap();
        let g = d.path().join("guests");
        for sub in ["debian-aaaa", "debian-bbbb", "bases", "pins"] {
            std::fs::create_dir_all(g.join(sub)).unwrap();
        }
        std::fs::write(g.join("debian-aaaa/base-8M.img"), vec![1u8; 8192]).unwrap();
        std::fs::write(g.join("debian-bbbb/base-8M.img"), vec![2u8; 8192]).unwrap();
        let link = g.join("bases/debian-aaaa-base-8M-i1.img");
        std::fs::hard_link(g.join("debian-aaaa/base-8M.img"), &link).unwrap();
        let disk = d.path().join("vm1.disk");
        let o = std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(&link)
            .arg(&disk)
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
        // A raw disk at a pinned path (the VM remade without thin) does not pin.
        let raw = d.path().join("vm2.disk");
        std::fs::write(&raw, vec![0u8; 4096]).unwrap();
        std::fs::write(
            g.join("pins/p3"),
            format!("overlay {}\nbase {}\n", raw.display(), link.display()),
        )
        .unwrap();
        std::fs::write(
            g.join("pins/p1"),
            format!("overlay {}\nbase {}\n", disk.display(), link.display()),
        )
        .unwrap();
        std::fs::write(
            g.join("pins/p2"),
            format!(
                "overlay {}/gone.disk\nbase {}\n",
                d.path().display(),
                link.display()
            ),
        )
        .unwrap();
        let l = list(d.path());
        let pinned: Vec<_> = l
            .items
            .iter()
            .filter(|i| !i.pinned_by.is_empty())
            .map(|i| i.kind)
            .collect();
        assert_eq!(pinned, ["entry", "base"], "{l:?}");
        let mut stale_pins = l.stale_pins.clone();
        stale_pins.sort();
        assert_eq!(stale_pins, [g.join("pins/p2"), g.join("pins/p3")]);

        let (done, mut stale) = prune(d.path(), false);
        stale.sort();
        assert_eq!(stale, [g.join("pins/p2"), g.join("pins/p3")]);
        assert!(g.join("debian-aaaa/base-8M.img").exists() && link.exists());
        assert!(!g.join("debian-bbbb").exists(), "{done:?}");
        let freed: u64 = done.iter().map(|p| p.freed).sum();
        assert!(freed >= 8192, "{done:?}");

        // Once the disk is gone, the base and its entry go too.
        std::fs::remove_file(&disk).unwrap();
        prune(d.path(), false);
        assert!(!link.exists() && !g.join("debian-aaaa").exists());
    }
}

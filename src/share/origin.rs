//! Where an image came from: `<store>/.convirt-origin/NAME.json`, written after a pull or a
//! signed import. The store listing skips hidden names, so the record is never taken for an
//! image. It names the image directory's device, inode and birth time: an image replaced or
//! recreated by other means no longer matches its record, which is then ignored.

use crate::store::Store;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

pub(crate) const ORIGIN_DIR: &str = ".convirt-origin";

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub(crate) struct Origin {
    /// The `[sources.NAME]` it was pulled from or whose key signed the imported file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) source: Option<String>,
    /// The index version pulled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) version: Option<u64>,
    /// The pack's URL, or the imported file's path.
    pub(crate) url: String,
    pub(crate) sha256: String,
    /// The id of the key that signed the pack.
    pub(crate) key_id: String,
    /// When it was installed (seconds since 1970, UTC).
    pub(crate) installed: u64,
}

/// The file: the origin and the image directory it belongs to.
#[derive(serde::Serialize, serde::Deserialize)]
struct Record {
    #[serde(flatten)]
    origin: Origin,
    dir_dev: u64,
    dir_ino: u64,
    /// The directory's birth time (ns), where the file system keeps one: an inode number
    /// is soon reused for a directory made after the image was removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dir_born: Option<u128>,
}

fn born(meta: &std::fs::Metadata) -> Option<u128> {
    meta.created()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_nanos())
}

fn path(store: &Store, name: &str) -> PathBuf {
    store.root.join(ORIGIN_DIR).join(format!("{name}.json"))
}

impl Origin {
    pub(crate) fn new(
        source: Option<String>,
        version: Option<u64>,
        url: String,
        sha256: String,
        key_id: String,
    ) -> Origin {
        Origin {
            source,
            version,
            url,
            sha256,
            key_id,
            installed: super::now(),
        }
    }

    /// Short text for `image list`: `SOURCE v3`, or `file NAME` for a signed import.
    pub(crate) fn short(&self) -> String {
        match (&self.source, self.version) {
            (Some(s), Some(v)) => format!("{s} v{v}"),
            _ => {
                let file = self.url.rsplit('/').next().unwrap_or(&self.url);
                format!("file {file}")
            }
        }
    }
}

/// Records `origin` for image `name`, which must be in the store.
pub(crate) fn write(store: &Store, name: &str, origin: Origin) -> std::io::Result<()> {
    let meta = std::fs::metadata(store.root.join(name))?;
    let record = Record {
        origin,
        dir_dev: meta.dev(),
        dir_ino: meta.ino(),
        dir_born: born(&meta),
    };
    let p = path(store, name);
    std::fs::create_dir_all(store.root.join(ORIGIN_DIR))?;
    let text = serde_json::to_string_pretty(&record).map_err(std::io::Error::other)?;
    crate::atomic::write(&p, text.as_bytes(), 0o644, true)
}

/// The origin of image `name`, when it has one that still matches its directory.
pub(crate) fn read(store: &Store, name: &str) -> Option<Origin> {
    let text = std::fs::read(path(store, name)).ok()?;
    let r: Record = serde_json::from_slice(&text).ok()?;
    let meta = std::fs::metadata(store.root.join(name)).ok()?;
    (meta.dev() == r.dir_dev && meta.ino() == r.dir_ino && born(&meta) == r.dir_born)
        .then_some(r.origin)
}

//! The image index (docs/sharing.md): `index.json`, signed by `index.json.minisig`, lists
//! every pack a publisher offers. Read strictly: one bad entry refuses the whole index.

use std::collections::BTreeSet;

pub(crate) const INDEX: &str = "index.json";
const FORMAT: u32 = 1;
/// An index larger than this is refused before it is parsed.
pub(crate) const MAX_INDEX: u64 = 16 << 20;
/// The description kept in an entry, at most.
pub(crate) const MAX_DESCRIPTION: usize = 4000;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Index {
    #[serde(rename = "convirt-index")]
    pub(crate) format: u32,
    /// When the index was written, in seconds since 1970 (UTC); never goes back.
    pub(crate) published: u64,
    pub(crate) images: Vec<Entry>,
}

/// One pack of one image version.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub(crate) struct Entry {
    pub(crate) name: String,
    /// 1, 2, 3, ...: the next one is given when the image's pack changed.
    pub(crate) version: u64,
    pub(crate) title: String,
    pub(crate) description: String,
    /// `PV`, `PVH` or `HVM`.
    pub(crate) kind: String,
    /// The machine architecture the image was evaluated for when it was published.
    pub(crate) arch: String,
    /// The pack's size in bytes.
    pub(crate) size: u64,
    pub(crate) sha256: String,
    /// The pack's file name, relative to the index.
    pub(crate) url: String,
    /// When this version was published (seconds since 1970, UTC).
    pub(crate) published: u64,
}

impl Index {
    pub(crate) fn empty() -> Index {
        Index {
            format: FORMAT,
            published: 0,
            images: Vec::new(),
        }
    }

    /// Parses and checks an index; the error says what is wrong.
    pub(crate) fn parse(text: &[u8]) -> Result<Index, String> {
        let index: Index =
            serde_json::from_slice(text).map_err(|e| format!("not an image index: {e}"))?;
        if index.format != FORMAT {
            return Err(format!(
                "index format {} is not one this convirt reads ({FORMAT}); update convirt",
                index.format
            ));
        }
        let mut seen = BTreeSet::new();
        for e in &index.images {
            e.check()?;
            if !seen.insert((e.name.as_str(), e.version)) {
                return Err(format!(
                    "the index lists `{}` version {} twice",
                    e.name, e.version
                ));
            }
        }
        Ok(index)
    }

    pub(crate) fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// The newest version of each image, by name.
    pub(crate) fn newest(&self) -> Vec<&Entry> {
        let mut out: Vec<&Entry> = Vec::new();
        for e in &self.images {
            match out.iter_mut().find(|o| o.name == e.name) {
                Some(o) if o.version < e.version => *o = e,
                Some(_) => {}
                None => out.push(e),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// The entry for `name`, at `version` or the newest.
    pub(crate) fn find(&self, name: &str, version: Option<u64>) -> Option<&Entry> {
        self.images
            .iter()
            .filter(|e| e.name == name && version.is_none_or(|v| e.version == v))
            .max_by_key(|e| e.version)
    }
}

impl Entry {
    /// An entry names an image by a store name and its pack by a plain file name: no path,
    /// no `..`, nothing a download could be steered with.
    fn check(&self) -> Result<(), String> {
        let shown = self.name.escape_debug();
        crate::store::check_image_name(&self.name)
            .map_err(|e| format!("index entry `{shown}`: {e}"))?;
        if self.version == 0 {
            return Err(format!(
                "index entry `{shown}`: version 0 (versions start at 1)"
            ));
        }
        if !matches!(self.kind.as_str(), "PV" | "PVH" | "HVM") {
            return Err(format!(
                "index entry `{shown}`: kind `{}` is not PV, PVH or HVM",
                self.kind.escape_debug()
            ));
        }
        if !is_file_name(&self.url) {
            return Err(format!(
                "index entry `{shown}`: url `{}` is not a plain file name beside the index",
                self.url.escape_debug()
            ));
        }
        if self.sha256.len() != 64
            || !self
                .sha256
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(format!(
                "index entry `{shown}`: sha256 is not 64 lowercase hex digits"
            ));
        }
        Ok(())
    }
}

/// A pack's name in an index: ASCII letters, digits, `.`, `_`, `-`, `+`, not starting with
/// `.`, at most 255 bytes.
pub(crate) fn is_file_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, version: u64, url: &str) -> Entry {
        Entry {
            name: name.into(),
            version,
            title: String::new(),
            description: String::new(),
            kind: "PV".into(),
            arch: "x86_64".into(),
            size: 1,
            sha256: "0".repeat(64),
            url: url.into(),
            published: 1,
        }
    }

    fn index(images: Vec<Entry>) -> Vec<u8> {
        Index {
            format: 1,
            published: 5,
            images,
        }
        .to_json()
        .into_bytes()
    }

    #[test]
    fn entries_are_checked() {
        assert!(Index::parse(&index(vec![entry("A", 1, "A-1.tar.gz")])).is_ok());
        for (bad, why) in [
            (entry("../A", 1, "A-1.tar.gz"), "image name `../A` contains"),
            (entry("A/B", 1, "A-1.tar.gz"), "contains `/`"),
            (entry("A", 1, "../A-1.tar.gz"), "not a plain file name"),
            (entry("A", 1, "sub/A-1.tar.gz"), "not a plain file name"),
            (entry("A", 1, "http://x/A"), "not a plain file name"),
            (entry("A", 0, "A-0.tar.gz"), "version 0"),
        ] {
            let e = Index::parse(&index(vec![bad])).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
        let e = Index::parse(&index(vec![entry("A", 1, "a"), entry("A", 1, "b")])).unwrap_err();
        assert!(e.contains("twice"), "{e}");
    }

    #[test]
    fn newest_and_find() {
        let ix = Index::parse(&index(vec![
            entry("B", 1, "b1"),
            entry("A", 2, "a2"),
            entry("A", 1, "a1"),
        ]))
        .unwrap();
        let names: Vec<_> = ix
            .newest()
            .iter()
            .map(|e| (e.name.clone(), e.version))
            .collect();
        assert_eq!(names, [("A".to_string(), 2), ("B".to_string(), 1)]);
        assert_eq!(ix.find("A", Some(1)).unwrap().url, "a1");
        assert_eq!(ix.find("A", None).unwrap().url, "a2");
        assert!(ix.find("C", None).is_none());
    }
}

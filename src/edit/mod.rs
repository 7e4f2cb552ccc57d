//! Format-preserving edits (spec §9.4): changes keys of image.conf / vm_conf.template by
//! splicing the file's own bytes at the parser's spans, so every comment, blank line, `import`
//! / `if` block, computed expression, line ending and BOM the author wrote stays as it was; and
//! the title of description.htm. The rules are written down in `docs/editing.md`.

mod draft;
mod locate;
mod plan;
mod splice;
#[cfg(test)]
mod tests;
mod title;

pub use draft::Draft;
pub use plan::{Request, plan_image, write_image};
pub use title::{check_title, set_description_title};
// The key rule belongs to the language (Python's keywords); `edit` re-exports it.
pub use crate::syntax::check_key;

use crate::value::Value;
use std::path::PathBuf;

/// One requested change of a file.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// `key = value`: replace the value of the key's plain assignment, or append one.
    Set(String, Value),
    /// Remove the key's plain assignments.
    Unset(String),
}

impl Change {
    pub fn key(&self) -> &str {
        match self {
            Change::Set(k, _) | Change::Unset(k) => k,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// The value expression of an existing assignment was replaced.
    Changed,
    /// A new `key = value` line was appended.
    Added,
    /// An assignment statement was removed.
    Removed,
    /// The key already had that literal value; the file was left alone.
    Unchanged,
}

/// What one change did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Applied {
    pub key: String,
    pub action: Action,
    /// 1-based line: in the edited file for a key that is still there, in the original file
    /// for a removed one.
    pub line: usize,
    /// The value expression as it was written, for changed and removed keys.
    pub old: Option<String>,
    /// The literal written (or already there), for changed, added and unchanged keys.
    pub new: Option<String>,
}

impl Applied {
    /// One line for a terminal: `memory: 256 -> 512`.
    pub fn summary(&self) -> String {
        let old = self.old.as_deref().map(one_line).unwrap_or_default();
        let new = self.new.as_deref().map(one_line).unwrap_or_default();
        match self.action {
            Action::Changed => format!("{}: {old} -> {new}", self.key),
            Action::Added => format!("{}: added {new}", self.key),
            Action::Removed => format!("{}: removed (was {old})", self.key),
            Action::Unchanged => format!("{}: unchanged ({new})", self.key),
        }
    }
}

/// Shows a possibly multi-line expression on one line, shortened.
fn one_line(text: &str) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > 72 {
        let cut: String = flat.chars().take(69).collect();
        format!("{cut}...")
    } else {
        flat
    }
}

/// The edit of one config file: the bytes to write and what changed. Nothing is written yet.
#[derive(Debug, Clone)]
pub struct FileEdit {
    /// `image.conf` or `vm_conf.template`.
    pub file: &'static str,
    /// The path shown in messages.
    pub path: PathBuf,
    pub original: Vec<u8>,
    pub bytes: Vec<u8>,
    pub changes: Vec<Applied>,
}

impl FileEdit {
    pub fn changed(&self) -> bool {
        self.bytes != self.original
    }
}

//! Argument value parsers shared by every command: one `KEY=VALUE` parser, so a bad one is
//! the same usage error (exit 2) on `provision`, `image edit` and `image create-like`.

use crate::edit;
use crate::resolve::{self, Overrides};

/// `KEY=VALUE` for `--set` / `--vm-set`: a valid key name, the value as text (read as in
/// spec §4.3 later).
pub(crate) fn key_value(s: &str) -> Result<(String, String), String> {
    let (k, v) = resolve::parse_assignment(s)?;
    edit::check_key(&k)?;
    Ok((k, v))
}

/// `KEY` for `--unset` / `--vm-unset`.
pub(crate) fn key(s: &str) -> Result<String, String> {
    edit::check_key(s)?;
    Ok(s.to_string())
}

/// The `--set` / `--vm-set` pairs of a command as resolution overrides.
pub(crate) fn overrides(set: &[(String, String)], vm_set: &[(String, String)]) -> Overrides {
    Overrides {
        set: set.to_vec(),
        vm_set: vm_set.to_vec(),
    }
}

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

/// `KEY=VALUE` pairs as given.
type Pairs = Vec<(String, String)>;

/// `--set` / `--vm-set` with the `--set-file` / `--vm-set-file` values read in: each file's
/// text (standard input for `-`, read once) as a string, one trailing newline dropped. An
/// unreadable file is an error naming it.
pub(crate) fn with_files(
    set: &[(String, String)],
    vm_set: &[(String, String)],
    set_file: &[(String, String)],
    vm_set_file: &[(String, String)],
) -> anyhow::Result<(Pairs, Pairs)> {
    let mut stdin_used = false;
    let mut read = |flag: &str, key: &str, path: &str| -> anyhow::Result<String> {
        let text = if path == "-" {
            if stdin_used {
                anyhow::bail!("{flag} {key}=-: standard input was already read by another `=-`");
            }
            stdin_used = true;
            let mut t = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut t)
                .map_err(|e| anyhow::anyhow!("{flag} {key}=-: cannot read standard input: {e}"))?;
            t
        } else {
            std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("{flag} {key}=`{path}`: cannot read it: {e}"))?
        };
        let text = text
            .strip_suffix("\r\n")
            .or_else(|| text.strip_suffix('\n'))
            .unwrap_or(&text);
        // A string literal, so the text arrives as it is (never read as a number or list).
        Ok(crate::value::Value::Str(text.to_string()).repr())
    };
    let mut s = set.to_vec();
    for (k, p) in set_file {
        s.push((k.clone(), read("--set-file", k, p)?));
    }
    let mut v = vm_set.to_vec();
    for (k, p) in vm_set_file {
        v.push((k.clone(), read("--vm-set-file", k, p)?));
    }
    Ok((s, v))
}

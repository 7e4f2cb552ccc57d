//! A config file read for editing, and the plan of its changes: which statements to
//! replace, remove or append, checked by loading the edited text before anything is written.

use super::locate::{Assignment, BY_HAND, Shape, assignments, literal_value};
use super::splice::{BOM, Layout, Splice};
use super::{Action, Applied, Change, FileEdit, check_key};
use crate::diagnostic::{Diagnostic, Diagnostics, SourceFile, Span};
use crate::host::Host;
use crate::image::ConfFile;
use crate::resolve;
use crate::value::Value;
use std::collections::HashSet;
use std::path::Path;

/// A config file read for editing: its exact bytes and its parsed, evaluated form.
#[derive(Debug, Clone)]
pub struct Draft {
    pub conf: ConfFile,
    bytes: Vec<u8>,
    layout: Layout,
}

impl Draft {
    /// Loads a file's bytes; `path` is the name used in messages.
    pub fn from_bytes(path: &Path, bytes: Vec<u8>, host: &Host) -> Result<Draft, Diagnostics> {
        let source = SourceFile::from_bytes(path, bytes.clone())?;
        let layout = Layout::of(&bytes);
        let body = bytes.len() - if layout.bom { BOM.len() } else { 0 };
        if source.text.len() + layout.crlf.len() != body {
            return Err(Diagnostic::error(format!(
                "cannot map `{}` back to its bytes for editing",
                path.display()
            ))
            .in_file(path)
            .into());
        }
        let conf = ConfFile::from_source(source, host)?;
        Ok(Draft {
            conf,
            bytes,
            layout,
        })
    }

    fn src(&self) -> &SourceFile {
        &self.conf.source
    }

    /// Does the file assign `key` anywhere (any branch of any `if`)?
    pub fn assigns(&self, key: &str) -> bool {
        let mut found = Vec::new();
        assignments(&self.conf.module.stmts, key, None, &mut found);
        !found.is_empty()
    }

    /// Plans `changes`: the new bytes, checked to load and to hold the values asked for.
    /// `computed` are the file's computed keys (`resolve::computed_keys`); they are set to a
    /// literal only with `force`. Every problem is reported, and nothing is written.
    pub fn apply(
        &self,
        file: &'static str,
        changes: &[Change],
        computed: &[String],
        force: bool,
        host: &Host,
    ) -> Result<FileEdit, Diagnostics> {
        let mut diags = Diagnostics::default();
        let mut splices = Vec::new();
        let mut appended = String::new();
        let mut applied = Vec::new();
        let mut seen = HashSet::new();
        for c in changes {
            let key = c.key();
            if let Err(msg) = check_key(key) {
                diags.push(Diagnostic::error(msg).in_file(self.path()));
                continue;
            }
            if !seen.insert(key) {
                diags.push(
                    Diagnostic::error(format!("`{key}` is changed more than once in `{file}`"))
                        .with_hint("give each key once"),
                );
                continue;
            }
            let mut found = Vec::new();
            assignments(&self.conf.module.stmts, key, None, &mut found);
            let step = match c {
                Change::Set(_, value) => self.plan_set(key, value, &found, computed, force),
                Change::Unset(_) => self.plan_unset(key, &found),
            };
            match step {
                Ok(Step::Splices(s, a)) => {
                    splices.extend(s);
                    applied.extend(a);
                }
                Ok(Step::Append(line, a)) => {
                    appended.push_str(&line);
                    applied.push(a);
                }
                Err(d) => diags.push(d),
            }
        }
        if diags.has_errors() {
            return Err(diags);
        }
        let bytes = self
            .layout
            .splice(&self.bytes, self.path(), splices, &appended)?;
        let conf = self.reload(file, &bytes, changes, host)?;
        // Report the lines as they are in the edited file.
        for a in applied.iter_mut().filter(|a| a.action != Action::Removed) {
            let mut found = Vec::new();
            assignments(&conf.module.stmts, &a.key, None, &mut found);
            if let Some(last) = found.last() {
                a.line = conf.source.line_col(last.stmt.start).0;
            }
        }
        Ok(FileEdit {
            file,
            path: self.path().to_path_buf(),
            original: self.bytes.clone(),
            bytes,
            changes: applied,
        })
    }

    fn path(&self) -> &Path {
        &self.conf.source.path
    }

    fn plan_set(
        &self,
        key: &str,
        value: &Value,
        found: &[Assignment],
        computed: &[String],
        force: bool,
    ) -> Result<Step, Diagnostic> {
        let src = self.src();
        let new = value.repr();
        let at = |d: Diagnostic, a: Option<&Assignment>| match a {
            Some(a) => d.at(src, a.stmt),
            None => d.in_file(self.path()),
        };
        // `inf`, `nan` and floats past 1e16 have no literal that reads back the same.
        if resolve::parse_cli_value(&new) != *value {
            return Err(at(
                Diagnostic::error(format!(
                    "`{key}`: the value `{new}` cannot be written as a literal that reads back the same"
                )),
                found.last(),
            )
            .with_hint("give the value in another form, for example as a string or an int"));
        }
        if !force && computed.iter().any(|k| k == key) {
            return Err(at(
                Diagnostic::error(format!(
                    "`{key}` is computed for the target host; setting it would replace its expression with a fixed value"
                )),
                found.last(),
            )
            .with_hint(format!(
                "`convirt image edit --force` writes `{key} = {new}` anyway; or take `{key}` out of `computed_options` (or the settings' `default_computed_options`)"
            )));
        }
        let Some(last_simple) = found.iter().rposition(|a| a.shape == Shape::Simple) else {
            return match found.first() {
                None => {
                    let line = format!("{key} = {new}\n");
                    Ok(Step::Append(
                        line,
                        Applied {
                            key: key.into(),
                            action: Action::Added,
                            line: 0,
                            old: None,
                            new: Some(new),
                        },
                    ))
                }
                Some(first) => Err(Diagnostic::error(format!(
                    "`{key}` cannot be set: it is only assigned {}",
                    first.why(src)
                ))
                .at(src, first.stmt)
                .with_hint(BY_HAND)),
            };
        };
        let target = &found[last_simple];
        if let Some(later) = found[last_simple + 1..].first() {
            let line = src.line_col(target.stmt.start).0;
            return Err(Diagnostic::error(format!(
                "`{key}` is assigned again {} after line {line}, so changing line {line} would not change its value",
                later.why(src)
            ))
            .at(src, later.stmt)
            .with_hint(BY_HAND));
        }
        let region = target.value_region(&src.text);
        let old = src.slice(region).to_string();
        let line = src.line_col(target.stmt.start).0;
        if literal_value(target.value).as_ref() == Some(value) {
            return Ok(Step::Splices(
                vec![],
                vec![Applied {
                    key: key.into(),
                    action: Action::Unchanged,
                    line,
                    old: None,
                    new: Some(old),
                }],
            ));
        }
        Ok(Step::Splices(
            vec![Splice {
                span: region,
                text: new.clone(),
            }],
            vec![Applied {
                key: key.into(),
                action: Action::Changed,
                line,
                old: Some(old),
                new: Some(new),
            }],
        ))
    }

    fn plan_unset(&self, key: &str, found: &[Assignment]) -> Result<Step, Diagnostic> {
        let src = self.src();
        if found.is_empty() {
            let d = Diagnostic::error(format!("`{key}` is not set in `{}`", self.path().display()))
                .in_file(self.path());
            let keys = self.conf.values.bindings.iter().map(|b| b.key.as_str());
            return Err(match crate::subst::closest(key, keys) {
                Some(k) => d.with_hint(format!("did you mean `{k}`?")),
                None => d.with_hint("there is nothing to remove"),
            });
        }
        if let Some(a) = found.iter().find(|a| a.shape != Shape::Simple) {
            return Err(Diagnostic::error(format!(
                "`{key}` cannot be unset: it is assigned {}",
                a.why(src)
            ))
            .at(src, a.stmt)
            .with_hint(BY_HAND));
        }
        let text = &src.text;
        let mut splices = Vec::new();
        let mut applied = Vec::new();
        for a in found {
            let start = text[..a.stmt.start].rfind('\n').map_or(0, |i| i + 1);
            let end = text[a.stmt.end..]
                .find('\n')
                .map_or(text.len(), |i| a.stmt.end + i + 1);
            let before = &text[start..a.stmt.start];
            let after = text[a.stmt.end..end].trim();
            let line = src.line_col(a.stmt.start).0;
            if !before.trim().is_empty() || !(after.is_empty() || after.starts_with('#')) {
                return Err(Diagnostic::error(format!(
                    "`{key}` shares line {line} with another statement"
                ))
                .at(src, a.stmt)
                .with_hint("put the statement on a line of its own first"));
            }
            splices.push(Splice {
                span: Span::new(start, end),
                text: String::new(),
            });
            applied.push(Applied {
                key: key.into(),
                action: Action::Removed,
                line,
                old: Some(src.slice(a.value_region(text)).to_string()),
                new: None,
            });
        }
        Ok(Step::Splices(splices, applied))
    }

    /// Loads the edited bytes and checks that every change reads back as asked.
    fn reload(
        &self,
        file: &str,
        bytes: &[u8],
        changes: &[Change],
        host: &Host,
    ) -> Result<ConfFile, Diagnostics> {
        let loaded = SourceFile::from_bytes(self.path(), bytes.to_vec())
            .map_err(Diagnostics::from)
            .and_then(|s| ConfFile::from_source(s, host));
        let conf = match loaded {
            Ok(c) => c,
            Err(d) => {
                let mut all = Diagnostics::from(
                    Diagnostic::error(format!("`{file}` would not load after the edit"))
                        .in_file(self.path())
                        .with_hint(
                            "the problems below point into the edited text, which was not written",
                        ),
                );
                all.extend(d);
                return Err(all);
            }
        };
        let mut diags = Diagnostics::default();
        for c in changes {
            match c {
                Change::Set(k, v) => {
                    let got = conf.values.get(k);
                    if got != Some(v) {
                        diags.push(
                            Diagnostic::error(format!(
                                "`{k} = {}` does not read back as the value given (it reads as `{}`)",
                                v.repr(),
                                got.map(Value::repr).unwrap_or_else(|| "nothing".into())
                            ))
                            .in_file(self.path())
                            .with_hint("write the value differently, for example as a string"),
                        );
                    }
                }
                Change::Unset(k) => {
                    if conf.values.get(k).is_some() {
                        diags.push(
                            Diagnostic::error(format!("`{k}` is still set after removing it"))
                                .in_file(self.path()),
                        );
                    }
                }
            }
        }
        if diags.has_errors() {
            return Err(diags);
        }
        Ok(conf)
    }
}

enum Step {
    Splices(Vec<Splice>, Vec<Applied>),
    Append(String, Applied),
}

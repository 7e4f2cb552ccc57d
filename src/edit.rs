//! Format-preserving edits (spec §9.4): changes keys of image.conf / vm_conf.template by
//! splicing the file's own bytes at the parser's spans, so every comment, blank line, `import`
//! / `if` block, computed expression, line ending and BOM the author wrote stays as it was; and
//! the title of description.htm. The rules are written down in `docs/editing.md`.

use crate::diagnostic::{Diagnostic, Diagnostics, SourceFile, Span};
use crate::eval::Host;
use crate::image::{self, ConfFile};
use crate::resolve;
use crate::settings::Settings;
use crate::syntax::{Expr, ExprKind, Stmt, StmtKind, Target, UnaryOp};
use crate::value::Value;
use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Names Python reserves: never keys.
const KEYWORDS: &[&str] = &[
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
    "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import",
    "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
    "with", "yield",
];

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
    /// The edited file, loaded.
    pub conf: ConfFile,
}

impl FileEdit {
    pub fn changed(&self) -> bool {
        self.bytes != self.original
    }
}

/// Where the file's bytes differ from the normalised text the parser saw (a BOM, CRLF line
/// ends), so a span of the text maps back to the exact bytes.
#[derive(Debug, Clone)]
struct Layout {
    bom: bool,
    /// Offsets in the normalised text of each `\n` that was `\r\n` in the file.
    crlf: Vec<usize>,
    /// The line end for new lines: the file's majority style.
    eol: &'static str,
}

impl Layout {
    fn of(bytes: &[u8]) -> Layout {
        let bom = bytes.starts_with(BOM);
        let body = if bom { &bytes[BOM.len()..] } else { bytes };
        let mut crlf = Vec::new();
        for (i, w) in body.windows(2).enumerate() {
            if w == b"\r\n" {
                crlf.push(i - crlf.len());
            }
        }
        let lf = body.iter().filter(|&&b| b == b'\n').count();
        let eol = if !crlf.is_empty() && crlf.len() * 2 >= lf {
            "\r\n"
        } else {
            "\n"
        };
        Layout { bom, crlf, eol }
    }

    /// The byte offset in the file of an offset in the normalised text.
    fn to_file(&self, offset: usize) -> usize {
        let bom = if self.bom { BOM.len() } else { 0 };
        bom + offset + self.crlf.partition_point(|&c| c < offset)
    }
}

/// A replacement of a span of the normalised text; its text uses `\n` line ends.
#[derive(Debug, Clone)]
struct Splice {
    span: Span,
    text: String,
}

/// Where and how a key is assigned, found in the syntax tree: every branch of every `if`
/// counts, not only the one taken on this host.
#[derive(Debug, Clone, Copy)]
struct Assignment<'a> {
    stmt: Span,
    /// Where the assigned name ends (the start of the statement for anything but a name).
    target_end: usize,
    value: &'a Expr,
    shape: Shape,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `key = value` at the top level: the only kind convirt rewrites.
    Simple,
    /// Inside the `if` statement with this span (the outermost one).
    InIf(Span),
    SeveralTargets,
    Unpacking,
    Augmented(&'static str),
}

fn assignments<'a>(
    stmts: &'a [Stmt],
    key: &str,
    in_if: Option<Span>,
    out: &mut Vec<Assignment<'a>>,
) {
    for s in stmts {
        match &s.kind {
            StmtKind::Assign { targets, value } => {
                let Some(t) = targets
                    .iter()
                    .find(|t| t.names().iter().any(|n| n.id == key))
                else {
                    continue;
                };
                let shape = match (in_if, t) {
                    (Some(span), _) => Shape::InIf(span),
                    (None, Target::Tuple(..)) => Shape::Unpacking,
                    (None, Target::Name(_)) if targets.len() > 1 => Shape::SeveralTargets,
                    (None, Target::Name(_)) => Shape::Simple,
                };
                let target_end = match t {
                    Target::Name(n) => n.span.end,
                    Target::Tuple(..) => s.span.start,
                };
                out.push(Assignment {
                    stmt: s.span,
                    target_end,
                    value,
                    shape,
                });
            }
            StmtKind::AugAssign { target, op, value } if target.id == key => {
                out.push(Assignment {
                    stmt: s.span,
                    target_end: target.span.end,
                    value,
                    shape: match in_if {
                        Some(span) => Shape::InIf(span),
                        None => Shape::Augmented(op.symbol()),
                    },
                });
            }
            StmtKind::If { body, orelse, .. } => {
                let outer = Some(in_if.unwrap_or(s.span));
                assignments(body, key, outer, out);
                assignments(orelse, key, outer, out);
            }
            _ => {}
        }
    }
}

impl Assignment<'_> {
    /// The text a new value replaces: the value expression with any grouping parentheses
    /// around it (`x = (1 +\n    2)`), as those belong to the old value.
    fn value_region(&self, text: &str) -> Span {
        let v = self.value.span;
        let Some(eq) = text
            .get(self.target_end..v.start)
            .and_then(|s| s.find('='))
            .map(|i| self.target_end + i)
        else {
            return v;
        };
        let (Some(before), Some(after)) =
            (text.get(eq + 1..v.start), text.get(v.end..self.stmt.end))
        else {
            return v;
        };
        let only = |s: &str, p: char| s.chars().all(|c| c == p || c.is_whitespace() || c == '\\');
        let count = |s: &str, p: char| s.chars().filter(|&c| c == p).count();
        let opens = count(before, '(');
        if opens > 0 && only(before, '(') && only(after, ')') && count(after, ')') == opens {
            let start = eq + 1 + (before.len() - before.trim_start().len());
            Span::new(start, self.stmt.end)
        } else {
            v
        }
    }

    /// Why this assignment is not one convirt rewrites, for messages.
    fn why(&self, src: &SourceFile) -> String {
        match self.shape {
            Shape::Simple => "by a plain assignment".into(),
            Shape::InIf(span) => {
                format!(
                    "inside the `if` block at line {}",
                    src.line_col(span.start).0
                )
            }
            Shape::SeveralTargets => "together with other names (`a = b = ...`)".into(),
            Shape::Unpacking => "by unpacking (`a, b = ...`)".into(),
            Shape::Augmented(op) => format!("by `{op}=`"),
        }
    }
}

const BY_HAND: &str =
    "convirt rewrites only plain top-level `key = value` statements; change this one by hand";

/// The value of a literal expression, to tell an unchanged value from a changed one.
fn literal_value(e: &Expr) -> Option<Value> {
    Some(match &e.kind {
        ExprKind::None => Value::None,
        ExprKind::Bool(b) => Value::Bool(*b),
        ExprKind::Int(i) => Value::Int(*i),
        ExprKind::Float(f) => Value::Float(*f),
        ExprKind::Str(s) => Value::Str(s.clone()),
        ExprKind::List(v) => Value::List(v.iter().map(literal_value).collect::<Option<_>>()?),
        ExprKind::Tuple(v) => Value::Tuple(v.iter().map(literal_value).collect::<Option<_>>()?),
        ExprKind::Dict(p) => Value::Dict(
            p.iter()
                .map(|(k, v)| Some((literal_value(k)?, literal_value(v)?)))
                .collect::<Option<_>>()?,
        ),
        ExprKind::Unary(UnaryOp::Neg, inner) => match literal_value(inner)? {
            Value::Int(i) => Value::Int(i.checked_neg()?),
            Value::Float(f) => Value::Float(-f),
            _ => return None,
        },
        _ => return None,
    })
}

/// Checks a key given on the command line.
pub fn check_key(key: &str) -> Result<(), String> {
    if !crate::subst::is_name(key) {
        return Err(format!("`{key}` is not a valid key name"));
    }
    if KEYWORDS.contains(&key) {
        return Err(format!("`{key}` is a Python keyword and cannot be a key"));
    }
    if key.starts_with("__") {
        return Err(format!("`{key}`: keys cannot start with `__`"));
    }
    Ok(())
}

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
        let bytes = self.splice(splices, &appended)?;
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
            conf,
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

    /// Applies the splices to the file's bytes (mapped through the BOM and CRLF line ends)
    /// and appends the new lines in the file's line-end style.
    fn splice(&self, mut splices: Vec<Splice>, appended: &str) -> Result<Vec<u8>, Diagnostics> {
        splices.sort_by_key(|s| (s.span.start, s.span.end));
        if splices.windows(2).any(|w| w[0].span.end > w[1].span.start) {
            return Err(Diagnostic::error("two changes overlap in the file")
                .in_file(self.path())
                .with_hint("change the keys in two separate edits")
                .into());
        }
        let eol = |s: &str| s.replace('\n', self.layout.eol);
        let mut out = Vec::with_capacity(self.bytes.len() + appended.len() + 16);
        let mut pos = 0;
        for s in &splices {
            let (a, b) = (
                self.layout.to_file(s.span.start),
                self.layout.to_file(s.span.end),
            );
            out.extend_from_slice(&self.bytes[pos..a]);
            out.extend_from_slice(eol(&s.text).as_bytes());
            pos = b;
        }
        out.extend_from_slice(&self.bytes[pos..]);
        if !appended.is_empty() {
            let body = if self.layout.bom {
                &out[BOM.len()..]
            } else {
                &out[..]
            };
            if !body.is_empty() && !body.ends_with(b"\n") {
                out.extend_from_slice(self.layout.eol.as_bytes());
            }
            out.extend_from_slice(eol(appended).as_bytes());
        }
        Ok(out)
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

/// The changes asked of an image: `--set`/`--unset` for image.conf, `--vm-set`/`--vm-unset`
/// for vm_conf.template.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub image: Vec<Change>,
    pub vm: Vec<Change>,
    /// Computed keys may be set to a literal.
    pub force: bool,
}

/// Plans the edit of an image's two files in `dir` (messages name them under `shown`). Both
/// files must load before and after; nothing is written.
pub fn plan_image(
    dir: &Path,
    shown: &Path,
    req: &Request,
    settings: &Settings,
    host: &Host,
) -> Result<Vec<FileEdit>, Diagnostics> {
    let mut drafts = Vec::new();
    let mut broken = Diagnostics::default();
    for file in [image::IMAGE_CONF, image::VM_TEMPLATE] {
        let path = shown.join(file);
        let bytes = match std::fs::read(dir.join(file)) {
            Ok(b) => b,
            Err(e) => {
                broken.push(Diagnostic::error(format!("cannot read `{file}`: {e}")).in_file(&path));
                continue;
            }
        };
        match Draft::from_bytes(&path, bytes, host) {
            Ok(d) => drafts.push((file, d)),
            Err(d) => broken.extend(d),
        }
    }
    if broken.has_errors() {
        let mut all = Diagnostics::from(
            Diagnostic::error(format!(
                "the image in `{}` does not load, so it cannot be edited",
                shown.display()
            ))
            .with_hint("fix the problems below first (`convirt image validate` lists them)"),
        );
        all.extend(broken);
        return Err(all);
    }
    let mut diags = Diagnostics::default();
    let mut edits = Vec::new();
    for (file, draft) in drafts {
        let changes = if file == image::IMAGE_CONF {
            &req.image
        } else {
            &req.vm
        };
        let computed = resolve::computed_keys(&draft.conf, settings);
        match draft.apply(file, changes, &computed, req.force, host) {
            Ok(e) => edits.push(e),
            Err(d) => diags.extend(d),
        }
    }
    if diags.has_errors() {
        return Err(diags);
    }
    Ok(edits)
}

/// Writes the changed files of a plan into `dir`, each atomically and keeping its mode. A
/// file that is a symlink is written through to its target, which must be inside `dir`. If a
/// later file cannot be written the earlier ones are put back. Returns the paths written.
pub fn write_image(dir: &Path, edits: &[FileEdit]) -> Result<Vec<PathBuf>, Diagnostic> {
    let fail = |p: &Path, e: std::io::Error| {
        Diagnostic::error(format!("cannot write `{}`: {e}", p.display()))
    };
    let mut targets = Vec::new();
    for e in edits.iter().filter(|e| e.changed()) {
        let link = dir.join(e.file);
        let target = resolve_inside(dir, &link)?;
        let mode = std::fs::metadata(&target)
            .map_err(|err| fail(&target, err))?
            .permissions()
            .mode()
            & 0o7777;
        targets.push((e, target, mode));
    }
    let mut written: Vec<(&FileEdit, &PathBuf, u32)> = Vec::new();
    for (e, target, mode) in &targets {
        if let Err(err) = crate::atomic::write(target, &e.bytes, *mode, true) {
            for (done, path, mode) in written {
                let _ = crate::atomic::write(path, &done.original, mode, true);
            }
            return Err(fail(target, err));
        }
        written.push((e, target, *mode));
    }
    Ok(targets.into_iter().map(|(_, t, _)| t).collect())
}

/// The file a config path names: itself, or a symlink's target when that stays inside `dir`.
fn resolve_inside(dir: &Path, path: &Path) -> Result<PathBuf, Diagnostic> {
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| Diagnostic::error(format!("cannot read `{}`: {e}", path.display())))?;
    if !meta.file_type().is_symlink() {
        return Ok(path.to_path_buf());
    }
    let target = path.canonicalize();
    let root = dir.canonicalize();
    match (target, root) {
        (Ok(t), Ok(r)) if t.starts_with(&r) => Ok(t),
        (t, _) => Err(Diagnostic::error(format!(
            "`{}` is a symlink to `{}`, outside the image",
            path.display(),
            t.map(|t| t.display().to_string())
                .unwrap_or_else(|e| format!("a missing file ({e})"))
        ))
        .with_hint("convirt edits only files inside the image; edit that file by hand, or replace the link with a copy")),
    }
}

/// Checks a `--title`: one line of text.
pub fn check_title(title: &str) -> Result<(), String> {
    if title.trim().is_empty() {
        return Err("the title is empty".into());
    }
    if title.chars().any(char::is_control) {
        return Err("the title must be one line of text without control characters".into());
    }
    Ok(())
}

/// Elements whose content is not shown as the description's text.
const HIDDEN_ELEMENTS: &[&str] = &["head", "title", "script", "style"];

/// Replaces the description's title (`create-like --title`): the first text node that is
/// shown, i.e. the first run of non-blank text outside tags, comments and the `head`,
/// `title`, `script` and `style` elements. The whitespace around that text and every other
/// byte stay as they were. A description without any text gets the title as a heading after
/// its `<body>` tag (or at the start). The title is HTML-escaped; in a file that is not UTF-8
/// its non-ASCII characters are written as character references.
pub fn set_description_title(html: &[u8], title: &str) -> Vec<u8> {
    let utf8 = std::str::from_utf8(html).is_ok();
    let mut escaped = String::new();
    for c in title.trim().chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            c if !utf8 && !c.is_ascii() => escaped.push_str(&format!("&#x{:x};", c as u32)),
            c => escaped.push(c),
        }
    }
    let splice = |start: usize, end: usize, text: &str| {
        let mut out = html[..start].to_vec();
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(&html[end..]);
        out
    };
    match first_text(html) {
        Some((start, end)) => splice(start, end, &escaped),
        None => {
            let heading = format!("<span style=\"font-size: 200%\">{escaped}</span><br/>");
            let at = find_ci(html, b"<body", 0)
                .and_then(|b| html[b..].iter().position(|&c| c == b'>').map(|i| b + i + 1))
                .unwrap_or(0);
            splice(at, at, &heading)
        }
    }
}

/// The byte range of the first shown text (trimmed of whitespace), if any.
fn first_text(html: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < html.len() {
        if html[i] == b'<' {
            if html[i..].starts_with(b"<!--") {
                i = find(html, b"-->", i + 4).map_or(html.len(), |e| e + 3);
                continue;
            }
            let end = tag_end(html, i);
            let closing = html.get(i + 1) == Some(&b'/');
            let name: String = html
                .get(i + 1 + usize::from(closing)..end)
                .unwrap_or_default()
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric())
                .map(|c| c.to_ascii_lowercase() as char)
                .collect();
            i = end;
            if !closing && HIDDEN_ELEMENTS.contains(&name.as_str()) {
                let close = format!("</{name}");
                i = find_ci(html, close.as_bytes(), i).unwrap_or(html.len());
            }
            continue;
        }
        let end = html[i..]
            .iter()
            .position(|&c| c == b'<')
            .map_or(html.len(), |p| i + p);
        let run = &html[i..end];
        if let Some(first) = run.iter().position(|c| !c.is_ascii_whitespace()) {
            let last = run
                .iter()
                .rposition(|c| !c.is_ascii_whitespace())
                .unwrap_or(first);
            return Some((i + first, i + last + 1));
        }
        i = end;
    }
    None
}

/// The offset just past the `>` closing the tag that starts at `start`, quotes respected.
fn tag_end(html: &[u8], start: usize) -> usize {
    let mut quote = None;
    for (j, &c) in html.iter().enumerate().skip(start + 1) {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, b'"' | b'\'') => quote = Some(c),
            (None, b'>') => return j + 1,
            _ => {}
        }
    }
    html.len()
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

fn find_ci(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
        .map(|p| from + p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(k: &str, v: Value) -> Change {
        Change::Set(k.into(), v)
    }
    fn unset(k: &str) -> Change {
        Change::Unset(k.into())
    }
    fn int(i: i64) -> Value {
        Value::Int(i)
    }
    fn strs(items: &[&str]) -> Value {
        Value::List(items.iter().map(|s| Value::Str(s.to_string())).collect())
    }

    /// Edits `src` as a vm_conf.template; the new text, or every error message joined.
    fn run(
        src: &[u8],
        changes: &[Change],
        computed: &[&str],
        force: bool,
    ) -> Result<Vec<u8>, String> {
        let host = Host::local(Some("x86_64"));
        let computed: Vec<String> = computed.iter().map(|s| s.to_string()).collect();
        let draft = Draft::from_bytes(Path::new("vm_conf.template"), src.to_vec(), &host)
            .map_err(|d| d.render())?;
        draft
            .apply(image::VM_TEMPLATE, changes, &computed, force, &host)
            .map(|e| e.bytes)
            .map_err(|d| d.render())
    }

    #[test]
    fn edits_change_only_what_they_must() {
        let cases: &[(&str, &str, Vec<Change>, &str)] = &[
            (
                "replace single-line value",
                "a = 1\nb = 2\n",
                vec![set("b", int(3))],
                "a = 1\nb = 3\n",
            ),
            (
                "replace multi-line list (the whole value span)",
                "# disks\ndisk = [\n    'file:/a,xvda,w',   # root\n    'file:/b,xvdb,w',\n]\nx = 1\n",
                vec![set("disk", strs(&["file:/c,xvda,w"]))],
                "# disks\ndisk = ['file:/c,xvda,w']\nx = 1\n",
            ),
            (
                "grouping parentheses belong to the old value",
                "p = (1 +\n     2)\n",
                vec![set("p", int(3))],
                "p = 3\n",
            ),
            (
                "append a new key",
                "a = 1\n",
                vec![set("new", Value::Str("x".into()))],
                "a = 1\nnew = 'x'\n",
            ),
            (
                "append after a last line without newline",
                "a = 1  # one",
                vec![set("b", int(2)), set("c", Value::Bool(true))],
                "a = 1  # one\nb = 2\nc = True\n",
            ),
            (
                "append to an empty file",
                "",
                vec![set("a", int(1))],
                "a = 1\n",
            ),
            (
                "unset first statement",
                "a = 1\nb = 2\nc = 3\n",
                vec![unset("a")],
                "b = 2\nc = 3\n",
            ),
            (
                "unset middle statement, its comment goes with it",
                "a = 1\nb = 2  # two\nc = 3\n",
                vec![unset("b")],
                "a = 1\nc = 3\n",
            ),
            (
                "unset last statement without newline",
                "a = 1\nb = 2\nc = 3",
                vec![unset("c")],
                "a = 1\nb = 2\n",
            ),
            (
                "unset a multi-line statement; the comment above stays",
                "# about disk\ndisk = [\n  'a',\n]\nx = 1\n",
                vec![unset("disk")],
                "# about disk\nx = 1\n",
            ),
            (
                "unset every plain assignment of the key",
                "a = 1\nb = 2\na = 3\n",
                vec![unset("a")],
                "b = 2\n",
            ),
            (
                "set changes the last of several plain assignments",
                "a = 1\nb = a\na = 3\n",
                vec![set("a", int(4))],
                "a = 1\nb = a\na = 4\n",
            ),
            (
                "a trailing comment stays",
                "memory = 256  # MB\n",
                vec![set("memory", int(512))],
                "memory = 512  # MB\n",
            ),
            (
                "imports, if blocks and computed expressions stay",
                "import os, re\narch = os.uname()[4]\nif re.search('64', arch):\n    arch_libdir = 'lib64'\nelse:\n    arch_libdir = 'lib'\ndevice_model = '/usr/' + arch_libdir + '/xen/bin/qemu-dm'\n\ncomputed_options = ['arch']\nmemory = 256\n",
                vec![set("memory", int(1024))],
                "import os, re\narch = os.uname()[4]\nif re.search('64', arch):\n    arch_libdir = 'lib64'\nelse:\n    arch_libdir = 'lib'\ndevice_model = '/usr/' + arch_libdir + '/xen/bin/qemu-dm'\n\ncomputed_options = ['arch']\nmemory = 1024\n",
            ),
            (
                "the option lists can be set",
                "customizable_options = ['memory']\nmemory = 1\n",
                vec![set("customizable_options", strs(&["memory", "vcpus"]))],
                "customizable_options = ['memory', 'vcpus']\nmemory = 1\n",
            ),
            (
                "an equal literal is left as written",
                "a = 0x10  # hex\nb = \"x\"\n",
                vec![set("a", int(16)), set("b", Value::Str("x".into()))],
                "a = 0x10  # hex\nb = \"x\"\n",
            ),
            (
                "strings are written as Python literals",
                "a = 1\n",
                vec![set("a", Value::Str("it's $VM_NAME\n".into()))],
                "a = \"it's $VM_NAME\\n\"\n",
            ),
        ];
        for (what, src, changes, want) in cases {
            let got = run(src.as_bytes(), changes, &[], false);
            assert_eq!(
                got.as_deref().map(String::from_utf8_lossy),
                Ok(std::borrow::Cow::Borrowed(*want)),
                "{what}"
            );
        }
    }

    #[test]
    fn line_ends_and_bom_are_kept() {
        /// (what, file, changes, expected file)
        type Case<'a> = (&'a str, &'a [u8], Vec<Change>, &'a [u8]);
        let cases: &[Case] = &[
            (
                "CRLF stays CRLF, new lines too",
                b"a = 1\r\nl = [\r\n  1,\r\n]\r\nb = 2\r\n",
                vec![set("l", int(5)), set("c", int(3)), unset("b")],
                b"a = 1\r\nl = 5\r\nc = 3\r\n",
            ),
            (
                "CRLF file without a final line end",
                b"a = 1\r\nb = 2",
                vec![set("c", int(3))],
                b"a = 1\r\nb = 2\r\nc = 3\r\n",
            ),
            (
                "mixed line ends: untouched lines keep theirs",
                b"a = 1\r\nb = 2\nc = 3\r\n",
                vec![set("b", int(5)), unset("c")],
                b"a = 1\r\nb = 5\n",
            ),
            (
                "a BOM is kept",
                b"\xEF\xBB\xBFa = 1\n",
                vec![set("a", int(2)), set("b", int(1))],
                b"\xEF\xBB\xBFa = 2\nb = 1\n",
            ),
            (
                "BOM and CRLF, first statement removed",
                b"\xEF\xBB\xBFa = 1\r\nb = 2\r\n",
                vec![unset("a")],
                b"\xEF\xBB\xBFb = 2\r\n",
            ),
        ];
        for (what, src, changes, want) in cases {
            let got = run(src, changes, &[], false);
            assert_eq!(got.as_deref(), Ok(*want), "{what}");
        }
    }

    #[test]
    fn refused_edits_say_why() {
        /// (what, file, changes, computed keys, force, expected message)
        type Case<'a> = (&'a str, &'a str, Vec<Change>, &'a [&'a str], bool, &'a str);
        let cases: &[Case] = &[
            (
                "key only inside an if block",
                "if 1:\n    a = 1\nelse:\n    a = 2\n",
                vec![set("a", int(3))],
                &[],
                false,
                "`a` cannot be set: it is only assigned inside the `if` block at line 1",
            ),
            (
                "key in an untaken branch only",
                "if 0:\n    a = 1\n",
                vec![set("a", int(3))],
                &[],
                false,
                "only assigned inside the `if` block at line 1",
            ),
            (
                "plain assignment overridden later in an if",
                "a = 1\nif 1:\n    a = 2\n",
                vec![set("a", int(3))],
                &[],
                false,
                "`a` is assigned again inside the `if` block at line 2 after line 1",
            ),
            (
                "unset of a key set in an if",
                "a = 1\nif 1:\n    a = 2\n",
                vec![unset("a")],
                &[],
                false,
                "`a` cannot be unset: it is assigned inside the `if` block at line 2",
            ),
            (
                "several targets",
                "a = b = 1\n",
                vec![set("a", int(3))],
                &[],
                false,
                "together with other names",
            ),
            (
                "augmented",
                "a = 1\na += 1\n",
                vec![set("a", int(3))],
                &[],
                false,
                "assigned again by `+=` after line 1",
            ),
            (
                "shared line",
                "a = 1; b = 2\n",
                vec![unset("a")],
                &[],
                false,
                "`a` shares line 1 with another statement",
            ),
            (
                "computed without force",
                "arch = 'x86_64'\n",
                vec![set("arch", Value::Str("i686".into()))],
                &["arch"],
                false,
                "`arch` is computed for the target host",
            ),
            (
                "unset of a missing key",
                "memory = 1\n",
                vec![unset("memroy")],
                &[],
                false,
                "did you mean `memory`?",
            ),
            (
                "the same key twice",
                "a = 1\n",
                vec![set("a", int(2)), unset("a")],
                &[],
                false,
                "`a` is changed more than once",
            ),
            (
                "a result that does not load",
                "a = 1\n",
                vec![set("customizable_options", Value::Str("a".into()))],
                &[],
                false,
                "`vm_conf.template` would not load after the edit",
            ),
            (
                "removing a key others use",
                "a = 1\nb = a + 1\n",
                vec![unset("a")],
                &[],
                false,
                "would not load after the edit",
            ),
            (
                "a value with no literal form",
                "a = 1\n",
                vec![set("a", Value::Float(f64::INFINITY))],
                &[],
                false,
                "the value `inf` cannot be written as a literal that reads back the same",
            ),
            (
                "a keyword as a key",
                "a = 1\n",
                vec![set("class", int(1))],
                &[],
                false,
                "`class` is a Python keyword",
            ),
        ];
        for (what, src, changes, computed, force, want) in cases {
            match run(src.as_bytes(), changes, computed, *force) {
                Ok(b) => panic!(
                    "{what}: expected an error, got {:?}",
                    String::from_utf8_lossy(&b)
                ),
                Err(e) => assert!(e.contains(want), "{what}: {e}"),
            }
        }
    }

    #[test]
    fn computed_keys_need_force() {
        let src = b"import os\narch = os.uname()[4]\n";
        let e = run(
            src,
            &[set("arch", Value::Str("i686".into()))],
            &["arch"],
            false,
        )
        .unwrap_err();
        assert!(e.contains("`convirt image edit --force` writes"), "{e}");
        let ok = run(
            src,
            &[set("arch", Value::Str("i686".into()))],
            &["arch"],
            true,
        )
        .unwrap();
        assert_eq!(ok, b"import os\narch = 'i686'\n");
    }

    #[test]
    fn applied_reports_lines_and_texts() {
        let host = Host::local(Some("x86_64"));
        let src = b"a = 1\nl = [\n  1,\n]\nb = 2\n".to_vec();
        let draft = Draft::from_bytes(Path::new("image.conf"), src, &host).unwrap();
        let e = draft
            .apply(
                image::IMAGE_CONF,
                &[
                    unset("a"),
                    set("b", int(3)),
                    set("c", int(4)),
                    set("l", Value::List(vec![int(1)])),
                ],
                &[],
                false,
                &host,
            )
            .unwrap();
        let got: Vec<String> = e
            .changes
            .iter()
            .map(|a| format!("{}:{}", a.line, a.summary()))
            .collect();
        assert_eq!(
            got,
            vec![
                "1:a: removed (was 1)",
                "4:b: 2 -> 3",
                "5:c: added 4",
                "1:l: unchanged ([ 1, ])",
            ]
        );
    }

    #[test]
    fn description_titles() {
        let cases: &[(&str, &[u8], &str, &[u8])] = &[
            (
                "convirt-style heading",
                b"<body><span style=\"font-size: 200%\">Linux CD Install</span><br/>About</body>",
                "Web Install",
                b"<body><span style=\"font-size: 200%\">Web Install</span><br/>About</body>",
            ),
            (
                "head, title, comments and whitespace are skipped and kept",
                b"<html><head><title>T</title><style>p{}</style></head>\n<!-- note -->\n<body>\n  <p> Old  title </p>x</body>",
                "New",
                b"<html><head><title>T</title><style>p{}</style></head>\n<!-- note -->\n<body>\n  <p> New </p>x</body>",
            ),
            (
                "a quoted > inside a tag",
                b"<span title=\"a>b\">Old</span>",
                "New",
                b"<span title=\"a>b\">New</span>",
            ),
            (
                "markup in the title is escaped",
                b"<b>Old</b>",
                "A & <B>",
                b"<b>A &amp; &lt;B&gt;</b>",
            ),
            (
                "no text at all: a heading after <body>",
                b"<body class=\"x\"></body>\n",
                "New",
                b"<body class=\"x\"><span style=\"font-size: 200%\">New</span><br/></body>\n",
            ),
            (
                "not UTF-8: non-ASCII as character references",
                b"<p>caf\xe9</p>",
                "Caf\u{e9}",
                b"<p>Caf&#xe9;</p>",
            ),
        ];
        for (what, html, title, want) in cases {
            let got = set_description_title(html, title);
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(want),
                "{what}"
            );
        }
        assert!(check_title("two\nlines").is_err());
        assert!(check_title("  ").is_err());
        assert!(check_title("Fine title").is_ok());
    }
}

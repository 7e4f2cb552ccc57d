//! The only module that knows `rustpython-parser`: parses image.conf / vm_conf.template into
//! convirt's own small AST with byte spans, and rejects what the dialect forbids (spec §2.1),
//! collecting every violation instead of stopping at the first.

use crate::diagnostic::{Diagnostic, Diagnostics, SourceFile, Span};
use rustpython_parser::Parse;
use rustpython_parser::ast as py;

/// Largest config file accepted, in bytes.
pub const MAX_FILE_SIZE: usize = 1 << 20;

pub mod ast;
mod convert;
mod problem;
mod recover;
#[cfg(test)]
mod tests;

pub use ast::*;
use convert::Converter;
use problem::Problem;
use recover::{blank_lines, explain_parse_error, line_of, nesting_too_deep};

/// Parses a config file. On failure every problem found is returned: syntax errors (one per
/// bad line) and dialect violations together, in file order.
pub fn parse(file: &SourceFile) -> Result<Module, Diagnostics> {
    if file.text.len() > MAX_FILE_SIZE {
        let mut at = MAX_FILE_SIZE;
        while !file.text.is_char_boundary(at) {
            at -= 1;
        }
        let name = file_kind(&file.path.display().to_string());
        return Err(Diagnostic::error(format!(
            "`{name}` is larger than {MAX_FILE_SIZE} bytes, the limit for a config file"
        ))
        .at(file, Span::new(at, at + 1))
        .with_hint("config files hold a few dozen values; the limit is passed here")
        .into());
    }
    if let Some(d) = file.text.find('\0') {
        return Err(Diagnostic::error("NUL byte in config file")
            .at(file, Span::new(d, d + 1))
            .with_hint("config files are text; remove the NUL byte")
            .into());
    }
    if let Some(d) = nesting_too_deep(&file.text) {
        return Err(
            Diagnostic::error(format!("brackets nested more than {MAX_DEPTH} deep"))
                .at(file, Span::new(d, d + 1))
                .with_hint("flatten the value; config values need only a few levels")
                .into(),
        );
    }
    // Dropping the parser's tree recurses as deep as the tree, and a long `1+1+...+1` chain
    // is deep even without brackets. Such input is parsed on a thread with a roomy stack;
    // everything else (every real config) in place, which is much cheaper than a thread.
    let name = file.path.display().to_string();
    let failed = |message: String| Module { stmts: vec![] }.with_problem(message);
    let (module, problems) = if nesting_bound(&file.text) <= IN_PLACE_DEPTH {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            parse_text(&file.text, &name)
        }))
        .unwrap_or_else(|_| failed("the parser failed".into()))
    } else {
        let text = file.text.clone();
        let handle = std::thread::Builder::new()
            .stack_size(256 << 20)
            .spawn(move || parse_text(&text, &name));
        match handle {
            Ok(h) => h
                .join()
                .unwrap_or_else(|_| failed("the parser failed".into())),
            Err(e) => failed(format!("cannot start the parser: {e}")),
        }
    };
    if problems.is_empty() {
        Ok(module)
    } else {
        Err(Diagnostics(
            problems
                .into_iter()
                .map(|p| p.into_diagnostic(file))
                .collect(),
        ))
    }
}

impl Module {
    fn with_problem(self, message: String) -> (Module, Vec<Problem>) {
        let p = Problem {
            span: Span::new(0, 1),
            message,
            hint: None,
        };
        (self, vec![p])
    }
}

/// How many bad lines are reported before giving up on a file.
const MAX_SYNTAX_ERRORS: usize = 20;

/// The deepest tree parsed on the caller's stack. Measured: a debug build drops a 20,000
/// deep tree within a 2 MiB thread stack, so this leaves a wide margin.
const IN_PLACE_DEPTH: usize = 2_000;

/// An upper bound on how deep the parser's tree can nest: each level of an expression takes
/// at least one token, and a token is a string or at least one non-blank byte, so the tokens
/// of the longest logical line bound it; blocks nest no deeper than their indentation.
fn nesting_bound(text: &str) -> usize {
    let b = text.as_bytes();
    let (mut max, mut tokens, mut indent) = (0usize, 0usize, 0usize);
    let mut depth = 0usize;
    let mut line_start = true;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'\\' if b.get(i + 1) == Some(&b'\n') => {
                // A continued line is the same logical line.
                i += 2;
                tokens += 1;
                continue;
            }
            b'\n' => {
                if depth == 0 {
                    max = max.max(tokens);
                    tokens = 0;
                }
                line_start = true;
                indent = 0;
            }
            b' ' | b'\t' | b'\r' | b'\x0c' => {
                if line_start {
                    indent += 1;
                    max = max.max(indent);
                }
            }
            q @ (b'\'' | b'"') => {
                let triple = b.get(i..i + 3) == Some(&[q, q, q][..]);
                i += if triple { 3 } else { 1 };
                while i < b.len() {
                    if b[i] == b'\\' {
                        i += 2;
                        continue;
                    }
                    if triple && b.get(i..i + 3) == Some(&[q, q, q][..]) {
                        i += 3;
                        break;
                    }
                    if !triple && (b[i] == q || b[i] == b'\n') {
                        i += usize::from(b[i] == q);
                        break;
                    }
                    i += 1;
                }
                tokens += 1;
                line_start = false;
                continue;
            }
            c => {
                match c {
                    b'(' | b'[' | b'{' => depth += 1,
                    b')' | b']' | b'}' => depth = depth.saturating_sub(1),
                    _ => {}
                }
                tokens += 1;
                line_start = false;
            }
        }
        i += 1;
    }
    max.max(tokens)
}

fn parse_text(text: &str, name: &str) -> (Module, Vec<Problem>) {
    let file_kind = file_kind(name);
    let mut errors: Vec<Problem> = Vec::new();
    let mut reported_lines: Vec<usize> = Vec::new();
    // Copied only when a bad line has to be blanked.
    let mut work = std::borrow::Cow::Borrowed(text);
    // Report every line that does not parse: blank each bad line (keeping offsets) and parse
    // again, a bounded number of times. Once the rest parses, the dialect check runs over it
    // too, so a file's syntax errors and forbidden constructs are reported together.
    for _ in 0..MAX_SYNTAX_ERRORS {
        match py::Suite::parse(&work, name) {
            Ok(suite) => {
                let mut conv = Converter::new(file_kind);
                let stmts = conv.stmts(&suite);
                drop(suite);
                errors.extend(conv.problems);
                errors.sort_by_key(|p| p.span.start);
                return (Module { stmts }, errors);
            }
            Err(e) => {
                let off = usize::from(e.offset).min(text.len());
                let bad = explain_parse_error(text, &work, off, &e.error);
                let line = line_of(text, bad.problem.span.start);
                if reported_lines.contains(&line) {
                    break;
                }
                reported_lines.push(line);
                errors.push(bad.problem);
                if !blank_lines(work.to_mut(), bad.lines, bad.dedent) {
                    break;
                }
            }
        }
    }
    (Module { stmts: vec![] }, errors)
}

fn file_kind(name: &str) -> String {
    std::path::Path::new(name)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "a config file".into())
}

/// Names Python reserves: never keys.
pub(crate) const KEYWORDS: &[&str] = &[
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
    "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import",
    "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
    "with", "yield",
];

/// Checks a key given on the command line (`--set`, `--vm-set`, `--unset`): a name that is
/// not a Python keyword and not `__dunder`-like, so an edited or rendered file reads back.
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

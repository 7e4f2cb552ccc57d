//! The only module that knows `rustpython-parser`: parses image.conf / vm_conf.template into
//! convirt's own small AST with byte spans, and rejects what the dialect forbids (spec §2.1),
//! collecting every violation instead of stopping at the first.

use crate::diagnostic::{Diagnostic, Diagnostics, SourceFile, Span};
use rustpython_parser::ast::{self, Ranged};
use rustpython_parser::lexer::LexicalErrorType;
use rustpython_parser::{Parse, ParseErrorType, Tok};

/// Deepest nesting of expressions accepted; deeper input is refused before it can exhaust the
/// stack. Real configs nest three or four levels.
pub const MAX_DEPTH: usize = 100;
/// Largest config file accepted, in bytes.
pub const MAX_FILE_SIZE: usize = 1 << 20;

pub const ALLOWED_MODULES: &[&str] = &["os", "os.path", "re", "sys", "string"];

#[derive(Debug, Clone)]
pub struct Module {
    pub stmts: Vec<Stmt>,
}

#[derive(Debug, Clone)]
pub struct Stmt {
    pub kind: StmtKind,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub enum StmtKind {
    /// `a = b = value`, also `a, b = value`.
    Assign {
        targets: Vec<Target>,
        value: Expr,
    },
    AugAssign {
        target: Name,
        op: BinOp,
        value: Expr,
    },
    If {
        test: Expr,
        body: Vec<Stmt>,
        orelse: Vec<Stmt>,
    },
    /// `import os.path as p`: (dotted module, bound name).
    Import {
        names: Vec<(String, Option<String>, Span)>,
    },
    /// `from os import path as p`.
    ImportFrom {
        module: String,
        names: Vec<(String, Option<String>, Span)>,
    },
    Pass,
    /// A bare string (a docstring); evaluated for nothing.
    Doc,
}

#[derive(Debug, Clone)]
pub struct Name {
    pub id: String,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub enum Target {
    Name(Name),
    Tuple(Vec<Target>, Span),
}

impl Target {
    pub fn span(&self) -> Span {
        match self {
            Target::Name(n) => n.span,
            Target::Tuple(_, s) => *s,
        }
    }
    pub fn names(&self) -> Vec<&Name> {
        match self {
            Target::Name(n) => vec![n],
            Target::Tuple(ts, _) => ts.iter().flat_map(Target::names).collect(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub enum ExprKind {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Name(String),
    List(Vec<Expr>),
    Tuple(Vec<Expr>),
    Dict(Vec<(Expr, Expr)>),
    BinOp(Box<Expr>, BinOp, Box<Expr>),
    Unary(UnaryOp, Box<Expr>),
    BoolOp(BoolOp, Vec<Expr>),
    Compare(Box<Expr>, Vec<(CmpOp, Expr)>),
    IfExp {
        test: Box<Expr>,
        body: Box<Expr>,
        orelse: Box<Expr>,
    },
    Call {
        func: Box<Expr>,
        args: Vec<Expr>,
        kwargs: Vec<(String, Expr)>,
    },
    Attribute(Box<Expr>, String),
    Subscript(Box<Expr>, Box<Expr>),
    Slice(Option<Box<Expr>>, Option<Box<Expr>>, Option<Box<Expr>>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    FloorDiv,
    Mod,
    Pow,
    LShift,
    RShift,
    BitOr,
    BitXor,
    BitAnd,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::FloorDiv => "//",
            BinOp::Mod => "%",
            BinOp::Pow => "**",
            BinOp::LShift => "<<",
            BinOp::RShift => ">>",
            BinOp::BitOr => "|",
            BinOp::BitXor => "^",
            BinOp::BitAnd => "&",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryOp {
    Not,
    Neg,
    Pos,
    Invert,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoolOp {
    And,
    Or,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    NotEq,
    Lt,
    LtE,
    Gt,
    GtE,
    Is,
    IsNot,
    In,
    NotIn,
}

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
        match ast::Suite::parse(&work, name) {
            Ok(suite) => {
                let mut conv = Converter {
                    problems: Vec::new(),
                    file_kind,
                    depth: 0,
                    deep_reported: false,
                };
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

/// A parse error explained: the problem, and the lines to blank before parsing again.
struct BadLines {
    problem: Problem,
    lines: (usize, usize),
    /// The lines are wrongly indented: blank them completely rather than to `pass`.
    dedent: bool,
}

/// Scans `text` for brackets and strings, skipping comments: calls `f` for every bracket
/// (offset, byte) and string (start, end, closed). Strings end at their closing quote, or
/// unclosed at the end of the line (triple-quoted: the end of the text).
fn scan(
    text: &str,
    mut bracket: impl FnMut(usize, u8),
    mut string: impl FnMut(usize, usize, bool),
) {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            q @ (b'\'' | b'"') => {
                let start = i;
                let triple = b.get(i..i + 3) == Some(&[q, q, q][..]);
                i += if triple { 3 } else { 1 };
                let mut closed = false;
                while i < b.len() {
                    if b[i] == b'\\' {
                        i += 2;
                        continue;
                    }
                    if triple {
                        if b.get(i..i + 3) == Some(&[q, q, q][..]) {
                            i += 3;
                            closed = true;
                            break;
                        }
                    } else if b[i] == q {
                        i += 1;
                        closed = true;
                        break;
                    } else if b[i] == b'\n' {
                        break;
                    }
                    i += 1;
                }
                let end = i.min(b.len());
                string(start, end, closed);
                continue;
            }
            c @ (b'(' | b'[' | b'{' | b')' | b']' | b'}') => bracket(i, c),
            _ => {}
        }
        i += 1;
    }
}

/// The innermost bracket still open at `end`, and where it closes, if it ever does.
fn open_bracket(text: &str, end: usize) -> Option<(usize, Option<usize>)> {
    let mut stack: Vec<usize> = Vec::new();
    // The bracket open at `end` and the nesting depth it opened.
    let mut found: Option<(usize, usize)> = None;
    let mut close = None;
    scan(
        text,
        |i, c| {
            if i >= end && found.is_none() {
                found = stack.last().map(|&o| (o, stack.len()));
            }
            match c {
                b'(' | b'[' | b'{' => stack.push(i),
                _ => {
                    if let Some((_, depth)) = found {
                        if close.is_none() && stack.len() == depth {
                            close = Some(i);
                        }
                    }
                    stack.pop();
                }
            }
        },
        |_, _, _| {},
    );
    if found.is_none() {
        found = stack.last().map(|&o| (o, stack.len()));
    }
    found.map(|(open, _)| (open, close))
}

/// The start of a string that is never closed and starts at or before `end`.
fn unclosed_string(text: &str, end: usize) -> Option<usize> {
    let mut first = None;
    scan(
        text,
        |_, _| {},
        |start, _, closed| {
            if !closed && start <= end && first.is_none() {
                first = Some(start);
            }
        },
    );
    first
}

fn line_of(text: &str, off: usize) -> usize {
    text.as_bytes()[..off.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

fn line_starts(text: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect()
}

/// Blanks lines `first..=last` keeping byte offsets: the first becomes `pass` at its
/// indentation (or `if 1:` when it opens a block, so its body still parses), the others
/// spaces. With `dedent`, every line becomes spaces (wrongly indented lines).
fn blank_lines(work: &mut String, (first, last): (usize, usize), dedent: bool) -> bool {
    let starts = line_starts(work);
    let Some(&start) = starts.get(first) else {
        return false;
    };
    let end = starts
        .get(last + 1)
        .map(|e| e - 1)
        .unwrap_or(work.len())
        .max(start);
    let region = &work[start..end];
    if region.trim().is_empty() || region.trim() == "pass" {
        return false;
    }
    // Byte for byte, so offsets stay put and every index below is a character boundary.
    let mut replacement: String = region
        .bytes()
        .map(|b| if b == b'\n' { '\n' } else { ' ' })
        .collect();
    let first_line = region.split('\n').next().unwrap_or("");
    let indent = first_line.len() - first_line.trim_start().len();
    // When indented lines follow, the blanked lines opened a block: keep one open.
    let body_follows = work[end..]
        .split('\n')
        .skip(1)
        .find(|l| !code_of(l).trim().is_empty())
        .is_some_and(|l| l.len() - l.trim_start().len() > indent);
    let stmt = if body_follows { "if 1:" } else { "pass" };
    if !dedent && first_line.len() - indent >= stmt.len() {
        replacement.replace_range(indent..indent + stmt.len(), stmt);
    }
    work.replace_range(start..end, &replacement);
    true
}

fn file_kind(name: &str) -> String {
    std::path::Path::new(name)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "a config file".into())
}

/// Finds the first offset where brackets nest deeper than [`MAX_DEPTH`], skipping strings
/// and comments roughly (a wrong guess only makes the parser report instead).
fn nesting_too_deep(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut found = None;
    scan(
        text,
        |i, c| match c {
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH && found.is_none() {
                    found = Some(i);
                }
            }
            _ => depth = depth.saturating_sub(1),
        },
        |_, _, _| {},
    );
    found
}

fn explain_parse_error(text: &str, work: &str, off: usize, err: &ParseErrorType) -> BadLines {
    let line_no = line_of(text, off);
    let starts = line_starts(text);
    let line_start = starts[line_no];
    let line_end = text[off..]
        .find('\n')
        .map(|i| off + i)
        .unwrap_or(text.len());
    let line = &text[line_start..line_end];
    let indent = line.len() - line.trim_start().len();
    let trimmed = line.trim_start();
    let at = |col: usize, len: usize| Span::new(line_start + col, line_start + col + len.max(1));
    let one_line = |span: Span, message: String, hint: &str| BadLines {
        problem: Problem {
            span,
            message,
            hint: Some(hint.to_string()),
        },
        lines: (line_no, line_no),
        dedent: false,
    };

    // Python 2 leftovers first: their lines also trip the checks below.
    if let Some(rest) = trimmed.strip_prefix("print") {
        if rest.starts_with([' ', '\t', '"', '\'']) && !rest.trim_start().starts_with(['(', '=']) {
            return one_line(
                at(indent, 5),
                "Python 2 `print` statement".into(),
                "config files cannot print; delete the line (in Python 3 it would be `print(...)`, which is not allowed either)",
            );
        }
    }
    if trimmed.starts_with("exec ") || trimmed.starts_with("exec\"") || trimmed.starts_with("exec'")
    {
        return one_line(
            at(indent, 4),
            "Python 2 `exec` statement: `exec` is not allowed in config files".into(),
            "write the values as plain assignments",
        );
    }
    if let Some((col, tok)) = legacy_octal(line) {
        let digits = tok.trim_end_matches(['L', 'l']).trim_start_matches('0');
        let digits = if digits.is_empty() { "0" } else { digits };
        return one_line(
            at(col, tok.len()),
            format!("Python 2 octal literal `{tok}`"),
            &format!(
                "write it as `0o{digits}` (or as a string such as `'0{digits}'` if it is a file mode)"
            ),
        );
    }
    if let Some(col) = find_code(line, "<>") {
        return one_line(
            at(col, 2),
            "Python 2 `<>` operator".into(),
            "write `!=` instead",
        );
    }
    if let Some(col) = find_code(line, "`") {
        let len = line[col + 1..].find('`').map(|e| e + 2).unwrap_or(1);
        return one_line(
            at(col, len),
            "Python 2 backquotes".into(),
            "backquotes meant `repr(x)`; write the value as a plain string instead",
        );
    }

    // A string that is never closed: point at its opening quote.
    let lexical_or_eof = matches!(err, ParseErrorType::Lexical(_) | ParseErrorType::Eof);
    if lexical_or_eof {
        if let Some(open) = unclosed_string(work, off) {
            let open_line = line_of(text, open);
            let triple = text[open..].starts_with("'''") || text[open..].starts_with("\"\"\"");
            let last = if triple { starts.len() - 1 } else { open_line };
            return BadLines {
                problem: Problem {
                    span: Span::new(open, open + if triple { 3 } else { 1 }),
                    message: "this string is never closed".into(),
                    hint: Some(if triple {
                        format!("end it with `{}`", &text[open..open + 3])
                    } else {
                        "end it with the same quote on the same line; text over several lines needs triple quotes `'''...'''`".into()
                    }),
                },
                lines: (open_line, last.max(open_line)),
                dedent: false,
            };
        }
    }

    // Inside brackets: a bracket never closed, or an error inside a value over several lines.
    if let Some((open, close)) = open_bracket(work, off) {
        let open_line = line_of(text, open);
        match close {
            None => {
                let c = text[open..].chars().next().unwrap_or('(');
                let last = if line_of(text, off) > open_line {
                    line_of(text, off) - 1
                } else {
                    open_line
                };
                return BadLines {
                    problem: Problem {
                        span: Span::new(open, open + 1),
                        message: format!("`{c}` was never closed"),
                        hint: Some(
                            "close the bracket at the end of the value; a value can span lines only inside brackets"
                                .into(),
                        ),
                    },
                    lines: (open_line, last),
                    dedent: false,
                };
            }
            Some(close) if line_of(text, close) > open_line => {
                let (message, hint) = generic_message(err);
                return BadLines {
                    problem: Problem {
                        span: Span::new(off, off + 1),
                        message,
                        hint: Some(format!(
                            "{hint}; inside brackets, separate the items with commas"
                        )),
                    },
                    lines: (open_line, line_of(text, close)),
                    dedent: false,
                };
            }
            Some(_) => {}
        }
    }

    // A block header with no indented body after it.
    let before_error = &text[line_start..off];
    if before_error.trim().is_empty() && line_no > 0 {
        let lines: Vec<&str> = text.split('\n').collect();
        let header = (0..line_no)
            .rev()
            .find(|&i| !code_of(lines[i]).trim().is_empty());
        if let Some(h) = header {
            let hl = lines[h];
            let h_indent = hl.len() - hl.trim_start().len();
            let here_indent = if line.trim().is_empty() { 0 } else { indent };
            if code_of(hl).trim_end().ends_with(':') && here_indent <= h_indent {
                return BadLines {
                    problem: Problem {
                        span: Span::new(
                            starts[h] + h_indent,
                            starts[h] + code_of(hl).trim_end().len(),
                        ),
                        message: "expected an indented block after this line".into(),
                        hint: Some(
                            "indent the lines that belong to it, or write `pass` indented below it"
                                .into(),
                        ),
                    },
                    lines: (h, h),
                    dedent: false,
                };
            }
        }
    }

    // A block header without its colon.
    let keyword = trimmed.split([' ', ':', '(']).next().unwrap_or("");
    if matches!(keyword, "if" | "elif" | "else")
        && !code_of(line).trim_end().ends_with(':')
        && matches!(err, ParseErrorType::UnrecognizedToken(Tok::Newline, _))
    {
        return one_line(
            at(indent, code_of(trimmed).trim_end().len()),
            format!("missing `:` at the end of the `{keyword}` line"),
            &format!(
                "write `{}:` and indent the lines that belong to it",
                code_of(trimmed).trim_end()
            ),
        );
    }

    let indent_error = matches!(
        err,
        ParseErrorType::UnrecognizedToken(Tok::Indent, _)
            | ParseErrorType::Lexical(LexicalErrorType::IndentationError)
    );
    if indent_error {
        // Blank this line and the rest of its over-indented run.
        let lines: Vec<&str> = text.split('\n').collect();
        let mut last = line_no;
        while let Some(next) = lines.get(last + 1) {
            let ind = next.len() - next.trim_start().len();
            if next.trim().is_empty() || ind >= indent {
                last += 1;
            } else {
                break;
            }
        }
        return BadLines {
            problem: Problem {
                span: at(indent, 1),
                message: "unexpected indentation".into(),
                hint: Some(
                    "start each `key = value` at the beginning of a line; only the body of an `if` or `else` is indented, all of it by the same amount"
                        .into(),
                ),
            },
            lines: (line_no, last),
            dedent: true,
        };
    }

    if let ParseErrorType::Lexical(LexicalErrorType::UnrecognizedToken { tok }) = err {
        // The lexer reports the offset after the character: point at the character itself.
        let at = text
            .get(..off)
            .and_then(|t| t.rfind(*tok))
            .filter(|&i| i >= line_start)
            .unwrap_or(off);
        let span = Span::new(at, at + tok.len_utf8());
        if matches!(tok, '\u{2018}' | '\u{2019}' | '\u{201c}' | '\u{201d}') {
            return one_line(
                span,
                format!("typographic quote `{tok}`"),
                "quote strings with straight quotes, `'` or `\"` (a word processor may have replaced them)",
            );
        }
        return one_line(
            span,
            format!("unexpected character `{tok}` (U+{:04X})", u32::from(*tok)),
            "names are letters, digits and `_`; text belongs in quotes",
        );
    }

    let (message, hint) = generic_message(err);
    one_line(Span::new(off, off + 1), message, &hint)
}

fn generic_message(err: &ParseErrorType) -> (String, String) {
    let msg = match err {
        ParseErrorType::Eof => "unexpected end of file".to_string(),
        ParseErrorType::Lexical(l) => format!("{l}"),
        ParseErrorType::UnrecognizedToken(tok, _) | ParseErrorType::ExtraToken(tok) => {
            format!("syntax error: unexpected {}", describe_token(tok))
        }
        ParseErrorType::InvalidToken => "syntax error: invalid token".to_string(),
    };
    (
        msg,
        "config files use Python 3 syntax: `key = value`, one per line".into(),
    )
}

fn describe_token(tok: &Tok) -> String {
    match tok {
        Tok::Newline => "end of line".into(),
        Tok::Indent => "indentation".into(),
        Tok::Dedent => "end of the indented block".into(),
        Tok::EndOfFile => "end of file".into(),
        Tok::Name { name } => format!("name `{name}`"),
        other => {
            let t = other.to_string();
            let t = t.trim_matches('\'');
            format!("`{t}`")
        }
    }
}

/// A line without its comment (a `#` outside strings).
fn code_of(line: &str) -> &str {
    let mut strings: Vec<(usize, usize)> = Vec::new();
    scan(line, |_, _| {}, |s, e, _| strings.push((s, e)));
    for (i, _) in line.match_indices('#') {
        if !strings.iter().any(|&(s, e)| s <= i && i < e) {
            return &line[..i];
        }
    }
    line
}

/// The column of `needle` in a line's code, outside strings and comments.
fn find_code(line: &str, needle: &str) -> Option<usize> {
    let mut strings: Vec<(usize, usize)> = Vec::new();
    scan(line, |_, _| {}, |s, e, _| strings.push((s, e)));
    code_of(line)
        .match_indices(needle)
        .map(|(i, _)| i)
        .find(|&i| !strings.iter().any(|&(s, e)| s <= i && i < e))
}

/// `0755` or `0755L` outside strings and comments: its column and text.
fn legacy_octal(line: &str) -> Option<(usize, String)> {
    let bytes = line.as_bytes();
    let mut strings: Vec<(usize, usize)> = Vec::new();
    scan(line, |_, _| {}, |s, e, _| strings.push((s, e)));
    let in_string = |i: usize| strings.iter().any(|&(s, e)| s <= i && i < e);
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'#' && !in_string(i) {
            return None;
        }
        if c == b'0'
            && !in_string(i)
            && (i == 0
                || !(bytes[i - 1].is_ascii_alphanumeric()
                    || bytes[i - 1] == b'_'
                    || bytes[i - 1] == b'.'))
        {
            let mut j = i + 1;
            while j < bytes.len() && bytes[j].is_ascii_digit() {
                j += 1;
            }
            let long = j < bytes.len() && (bytes[j] == b'L' || bytes[j] == b'l');
            if j > i + 1 || long {
                if long {
                    j += 1;
                }
                return Some((i, line[i..j].to_string()));
            }
        }
        i += 1;
    }
    None
}

struct Problem {
    span: Span,
    message: String,
    hint: Option<String>,
}

impl Problem {
    fn into_diagnostic(self, file: &SourceFile) -> Diagnostic {
        let d = Diagnostic::error(self.message).at(file, self.span);
        match self.hint {
            Some(h) => d.with_hint(h),
            None => d,
        }
    }
}

fn span_of<T: Ranged>(node: &T) -> Span {
    let r = node.range();
    Span::new(usize::from(r.start()), usize::from(r.end()))
}

/// Builtins and module functions no config may call, named so the message can say so.
const FORBIDDEN_NAMES: &[&str] = &[
    "exec",
    "eval",
    "open",
    "compile",
    "__import__",
    "getattr",
    "setattr",
    "delattr",
    "globals",
    "locals",
    "vars",
    "input",
    "breakpoint",
    "exit",
    "quit",
    "print",
    "help",
    "memoryview",
    "type",
    "object",
    "super",
    "classmethod",
    "staticmethod",
    "property",
    "__builtins__",
    "file",
    "execfile",
    "reload",
    "raw_input",
];

struct Converter {
    problems: Vec<Problem>,
    file_kind: String,
    depth: usize,
    /// Too deep nesting is reported once per statement, not at every node past the limit.
    deep_reported: bool,
}

impl Converter {
    fn forbid(&mut self, span: Span, construct: &str, hint: &str) {
        self.problems.push(Problem {
            span,
            message: format!("{construct} is not allowed in {}", self.file_kind),
            hint: Some(hint.to_string()),
        });
    }

    fn stmts(&mut self, stmts: &[ast::Stmt]) -> Vec<Stmt> {
        stmts.iter().filter_map(|s| self.stmt(s)).collect()
    }

    fn stmt(&mut self, s: &ast::Stmt) -> Option<Stmt> {
        let span = span_of(s);
        self.deep_reported = false;
        let no_code = "config files hold values, not code: write `key = value` assignments";
        let kind = match s {
            ast::Stmt::Assign(a) => {
                let targets = a
                    .targets
                    .iter()
                    .filter_map(|t| self.target(t))
                    .collect::<Vec<_>>();
                let value = self.expr(&a.value)?;
                if targets.len() != a.targets.len() {
                    return None;
                }
                StmtKind::Assign { targets, value }
            }
            ast::Stmt::AugAssign(a) => {
                let target = match a.target.as_ref() {
                    ast::Expr::Name(n) => Name {
                        id: n.id.to_string(),
                        span: span_of(n),
                    },
                    other => {
                        self.forbid(
                            span_of(other),
                            "augmented assignment to anything but a name",
                            no_code,
                        );
                        return None;
                    }
                };
                let op = self.binop(a.op, span)?;
                let value = self.expr(&a.value)?;
                StmtKind::AugAssign { target, op, value }
            }
            ast::Stmt::If(i) => {
                let test = self.expr(&i.test);
                let body = self.stmts(&i.body);
                let orelse = self.stmts(&i.orelse);
                StmtKind::If {
                    test: test?,
                    body,
                    orelse,
                }
            }
            ast::Stmt::Import(i) => {
                let mut names = Vec::new();
                for a in &i.names {
                    let m = a.name.as_str();
                    if !ALLOWED_MODULES.contains(&m) {
                        self.problems.push(Problem {
                            span: span_of(a),
                            message: format!(
                                "import of `{m}` is not allowed in {}",
                                self.file_kind
                            ),
                            hint: Some(format!(
                                "only these modules can be imported: {}",
                                ALLOWED_MODULES.join(", ")
                            )),
                        });
                        continue;
                    }
                    names.push((
                        m.to_string(),
                        a.asname.as_ref().map(|n| n.to_string()),
                        span_of(a),
                    ));
                }
                StmtKind::Import { names }
            }
            ast::Stmt::ImportFrom(i) => {
                let m = i.module.as_ref().map(|m| m.to_string()).unwrap_or_default();
                let level = i.level.map(|l| l.to_u32()).unwrap_or(0);
                if !ALLOWED_MODULES.contains(&m.as_str()) || level > 0 {
                    let shown = format!("{}{m}", ".".repeat(level as usize));
                    self.problems.push(Problem {
                        span,
                        message: format!(
                            "import from `{shown}` is not allowed in {}",
                            self.file_kind
                        ),
                        hint: Some(format!(
                            "only these modules can be imported: {}",
                            ALLOWED_MODULES.join(", ")
                        )),
                    });
                    return None;
                }
                let mut names = Vec::new();
                for a in &i.names {
                    if a.name.as_str() == "*" {
                        self.forbid(
                            span_of(a),
                            "`import *`",
                            "import the module and use `module.name`",
                        );
                        continue;
                    }
                    names.push((
                        a.name.to_string(),
                        a.asname.as_ref().map(|n| n.to_string()),
                        span_of(a),
                    ));
                }
                StmtKind::ImportFrom { module: m, names }
            }
            ast::Stmt::Pass(_) => StmtKind::Pass,
            ast::Stmt::Expr(e) => match e.value.as_ref() {
                ast::Expr::Constant(c) if matches!(c.value, ast::Constant::Str(_)) => StmtKind::Doc,
                ast::Expr::Call(c) if matches!(c.func.as_ref(), ast::Expr::Name(n) if n.id.as_str() == "print") =>
                {
                    self.forbid(
                        span,
                        "`print`",
                        "config files cannot print; delete the line",
                    );
                    return None;
                }
                other => {
                    // `exec('...')` should be refused as `exec`, not as a bare expression.
                    let before = self.problems.len();
                    let _ = self.expr(other);
                    if self.problems.len() == before {
                        self.forbid(
                            span,
                            "a bare expression statement",
                            "assign the value to a key: `key = value`",
                        );
                    }
                    return None;
                }
            },
            ast::Stmt::FunctionDef(_) => {
                self.forbid(span, "`def`", no_code);
                return None;
            }
            ast::Stmt::AsyncFunctionDef(_) => {
                self.forbid(span, "`async def`", no_code);
                return None;
            }
            ast::Stmt::ClassDef(_) => {
                self.forbid(span, "`class`", no_code);
                return None;
            }
            ast::Stmt::For(_) | ast::Stmt::AsyncFor(_) => {
                self.forbid(span, "a `for` loop", "write the list out literally");
                return None;
            }
            ast::Stmt::While(_) => {
                self.forbid(span, "a `while` loop", "write the values out literally");
                return None;
            }
            ast::Stmt::With(_) | ast::Stmt::AsyncWith(_) => {
                self.forbid(span, "`with`", no_code);
                return None;
            }
            ast::Stmt::Try(_) | ast::Stmt::TryStar(_) => {
                self.forbid(span, "`try`", no_code);
                return None;
            }
            ast::Stmt::Raise(_) => {
                self.forbid(span, "`raise`", no_code);
                return None;
            }
            ast::Stmt::Return(_) => {
                self.forbid(span, "`return`", no_code);
                return None;
            }
            ast::Stmt::Delete(_) => {
                self.forbid(span, "`del`", "remove the assignment instead");
                return None;
            }
            ast::Stmt::Assert(_) => {
                self.forbid(span, "`assert`", no_code);
                return None;
            }
            ast::Stmt::Global(_) => {
                self.forbid(span, "`global`", no_code);
                return None;
            }
            ast::Stmt::Nonlocal(_) => {
                self.forbid(span, "`nonlocal`", no_code);
                return None;
            }
            ast::Stmt::Match(_) => {
                self.forbid(span, "`match`", "use `if`/`elif`/`else`");
                return None;
            }
            ast::Stmt::AnnAssign(_) => {
                self.forbid(
                    span,
                    "an annotated assignment",
                    "drop the annotation: `key = value`",
                );
                return None;
            }
            _ => {
                self.forbid(span, "this statement", no_code);
                return None;
            }
        };
        Some(Stmt { kind, span })
    }

    fn target(&mut self, t: &ast::Expr) -> Option<Target> {
        match t {
            ast::Expr::Name(n) => {
                if n.id.as_str().starts_with("__") {
                    self.forbid(
                        span_of(n),
                        &format!("assigning to `{}`", n.id),
                        "choose a name without leading underscores",
                    );
                    return None;
                }
                Some(Target::Name(Name {
                    id: n.id.to_string(),
                    span: span_of(n),
                }))
            }
            ast::Expr::Tuple(tu) => {
                let inner: Vec<_> = tu.elts.iter().filter_map(|e| self.target(e)).collect();
                (inner.len() == tu.elts.len()).then(|| Target::Tuple(inner, span_of(tu)))
            }
            ast::Expr::List(l) => {
                let inner: Vec<_> = l.elts.iter().filter_map(|e| self.target(e)).collect();
                (inner.len() == l.elts.len()).then(|| Target::Tuple(inner, span_of(l)))
            }
            other => {
                self.forbid(
                    span_of(other),
                    "assignment to an attribute or item",
                    "assign to a plain name: `key = value`",
                );
                None
            }
        }
    }

    fn binop(&mut self, op: ast::Operator, span: Span) -> Option<BinOp> {
        Some(match op {
            ast::Operator::Add => BinOp::Add,
            ast::Operator::Sub => BinOp::Sub,
            ast::Operator::Mult => BinOp::Mul,
            ast::Operator::Div => BinOp::Div,
            ast::Operator::FloorDiv => BinOp::FloorDiv,
            ast::Operator::Mod => BinOp::Mod,
            ast::Operator::Pow => BinOp::Pow,
            ast::Operator::LShift => BinOp::LShift,
            ast::Operator::RShift => BinOp::RShift,
            ast::Operator::BitOr => BinOp::BitOr,
            ast::Operator::BitXor => BinOp::BitXor,
            ast::Operator::BitAnd => BinOp::BitAnd,
            ast::Operator::MatMult => {
                self.forbid(span, "the `@` operator", "use ordinary arithmetic");
                return None;
            }
        })
    }

    fn exprs(&mut self, es: &[ast::Expr]) -> Option<Vec<Expr>> {
        let out: Vec<Expr> = es.iter().filter_map(|e| self.expr(e)).collect();
        (out.len() == es.len()).then_some(out)
    }

    fn boxed(&mut self, e: &ast::Expr) -> Option<Box<Expr>> {
        self.expr(e).map(Box::new)
    }

    fn expr(&mut self, e: &ast::Expr) -> Option<Expr> {
        self.depth += 1;
        let result = if self.depth > MAX_DEPTH {
            if !self.deep_reported {
                self.deep_reported = true;
                self.problems.push(Problem {
                    span: span_of(e),
                    message: format!("expression nested more than {MAX_DEPTH} deep"),
                    hint: Some("split the expression; config values need only a few levels".into()),
                });
            }
            None
        } else {
            self.expr_inner(e)
        };
        self.depth -= 1;
        result
    }

    fn expr_inner(&mut self, e: &ast::Expr) -> Option<Expr> {
        let span = span_of(e);
        let kind = match e {
            ast::Expr::Constant(c) => match &c.value {
                ast::Constant::None => ExprKind::None,
                ast::Constant::Bool(b) => ExprKind::Bool(*b),
                ast::Constant::Str(s) => ExprKind::Str(s.clone()),
                ast::Constant::Int(i) => match i64::try_from(i) {
                    Ok(v) => ExprKind::Int(v),
                    Err(_) => {
                        self.problems.push(Problem {
                            span,
                            message: "integer literal too large (more than 64 bits)".into(),
                            hint: Some(
                                "config values are sizes and counts; use a smaller number".into(),
                            ),
                        });
                        return None;
                    }
                },
                ast::Constant::Float(f) => ExprKind::Float(*f),
                ast::Constant::Bytes(_) => {
                    self.forbid(
                        span,
                        "a bytes literal",
                        "use a plain string: drop the `b` prefix",
                    );
                    return None;
                }
                ast::Constant::Complex { .. } => {
                    self.forbid(span, "a complex number", "use an int or a float");
                    return None;
                }
                ast::Constant::Ellipsis => {
                    self.forbid(span, "`...`", "write a value");
                    return None;
                }
                ast::Constant::Tuple(items) => {
                    let _ = items;
                    self.forbid(span, "a constant tuple", "write the tuple out");
                    return None;
                }
            },
            ast::Expr::Name(n) => {
                let id = n.id.as_str();
                if FORBIDDEN_NAMES.contains(&id) || id.starts_with("__") {
                    self.forbid(span, &format!("`{id}`"), "config files cannot run code; only a few builtins such as `str`, `int`, `len` are available");
                    return None;
                }
                ExprKind::Name(id.to_string())
            }
            ast::Expr::List(l) => ExprKind::List(self.exprs(&l.elts)?),
            ast::Expr::Tuple(t) => ExprKind::Tuple(self.exprs(&t.elts)?),
            ast::Expr::Dict(d) => {
                let mut pairs = Vec::new();
                let mut ok = true;
                for (k, v) in d.keys.iter().zip(&d.values) {
                    let Some(k) = k else {
                        self.forbid(span_of(v), "`**` unpacking", "write the dict out");
                        ok = false;
                        continue;
                    };
                    match (self.expr(k), self.expr(v)) {
                        (Some(k), Some(v)) => pairs.push((k, v)),
                        _ => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                ExprKind::Dict(pairs)
            }
            ast::Expr::BinOp(b) => {
                let l = self.boxed(&b.left);
                let r = self.boxed(&b.right);
                let op = self.binop(b.op, span)?;
                ExprKind::BinOp(l?, op, r?)
            }
            ast::Expr::UnaryOp(u) => {
                let op = match u.op {
                    ast::UnaryOp::Not => UnaryOp::Not,
                    ast::UnaryOp::USub => UnaryOp::Neg,
                    ast::UnaryOp::UAdd => UnaryOp::Pos,
                    ast::UnaryOp::Invert => UnaryOp::Invert,
                };
                ExprKind::Unary(op, self.boxed(&u.operand)?)
            }
            ast::Expr::BoolOp(b) => {
                let op = match b.op {
                    ast::BoolOp::And => BoolOp::And,
                    ast::BoolOp::Or => BoolOp::Or,
                };
                ExprKind::BoolOp(op, self.exprs(&b.values)?)
            }
            ast::Expr::Compare(c) => {
                let left = self.boxed(&c.left);
                let rest = self.exprs(&c.comparators)?;
                let ops = c.ops.iter().map(|op| match op {
                    ast::CmpOp::Eq => CmpOp::Eq,
                    ast::CmpOp::NotEq => CmpOp::NotEq,
                    ast::CmpOp::Lt => CmpOp::Lt,
                    ast::CmpOp::LtE => CmpOp::LtE,
                    ast::CmpOp::Gt => CmpOp::Gt,
                    ast::CmpOp::GtE => CmpOp::GtE,
                    ast::CmpOp::Is => CmpOp::Is,
                    ast::CmpOp::IsNot => CmpOp::IsNot,
                    ast::CmpOp::In => CmpOp::In,
                    ast::CmpOp::NotIn => CmpOp::NotIn,
                });
                ExprKind::Compare(left?, ops.zip(rest).collect())
            }
            ast::Expr::IfExp(i) => {
                let test = self.boxed(&i.test);
                let body = self.boxed(&i.body);
                let orelse = self.boxed(&i.orelse);
                ExprKind::IfExp {
                    test: test?,
                    body: body?,
                    orelse: orelse?,
                }
            }
            ast::Expr::Call(c) => {
                let func = self.boxed(&c.func);
                let args = self.exprs(&c.args);
                let mut kwargs = Vec::new();
                let mut ok = true;
                for k in &c.keywords {
                    match (&k.arg, self.expr(&k.value)) {
                        (Some(name), Some(v)) => kwargs.push((name.to_string(), v)),
                        (None, _) => {
                            self.forbid(span_of(k), "`**` unpacking", "pass the arguments by name");
                            ok = false;
                        }
                        _ => ok = false,
                    }
                }
                for a in &c.args {
                    if matches!(a, ast::Expr::Starred(_)) {
                        ok = false;
                    }
                }
                if !ok {
                    return None;
                }
                ExprKind::Call {
                    func: func?,
                    args: args?,
                    kwargs,
                }
            }
            ast::Expr::Attribute(a) => {
                // The leftmost problem is the one to report: `''.__class__.__mro__` names
                // `__class__`.
                let value = self.boxed(&a.value)?;
                if a.attr.as_str().starts_with('_') {
                    self.forbid(span, &format!("the attribute `{}`", a.attr), "only public functions of os, os.path, re, sys, string and str methods are available");
                    return None;
                }
                ExprKind::Attribute(value, a.attr.to_string())
            }
            ast::Expr::Subscript(s) => {
                let v = self.boxed(&s.value);
                let i = self.boxed(&s.slice);
                ExprKind::Subscript(v?, i?)
            }
            ast::Expr::Slice(s) => {
                let lower = s.lower.as_ref().map(|e| self.boxed(e));
                let upper = s.upper.as_ref().map(|e| self.boxed(e));
                let step = s.step.as_ref().map(|e| self.boxed(e));
                let unwrap = |o: Option<Option<Box<Expr>>>| -> Result<Option<Box<Expr>>, ()> {
                    match o {
                        None => Ok(None),
                        Some(Some(e)) => Ok(Some(e)),
                        Some(None) => Err(()),
                    }
                };
                match (unwrap(lower), unwrap(upper), unwrap(step)) {
                    (Ok(l), Ok(u), Ok(st)) => ExprKind::Slice(l, u, st),
                    _ => return None,
                }
            }
            ast::Expr::Lambda(_) => {
                self.forbid(span, "`lambda`", "config files hold values, not functions");
                return None;
            }
            ast::Expr::ListComp(_)
            | ast::Expr::SetComp(_)
            | ast::Expr::DictComp(_)
            | ast::Expr::GeneratorExp(_) => {
                self.forbid(span, "a comprehension", "write the list out literally");
                return None;
            }
            ast::Expr::Set(_) => {
                self.forbid(span, "a set literal", "use a list: `[...]`");
                return None;
            }
            ast::Expr::NamedExpr(_) => {
                self.forbid(span, "`:=`", "assign on its own line: `key = value`");
                return None;
            }
            ast::Expr::JoinedStr(_) | ast::Expr::FormattedValue(_) => {
                self.forbid(
                    span,
                    "an f-string",
                    "use `%` formatting or `+`, or `$VARIABLE` substitution",
                );
                return None;
            }
            ast::Expr::Starred(_) => {
                self.forbid(span, "`*` unpacking", "write the items out");
                return None;
            }
            ast::Expr::Await(_) | ast::Expr::Yield(_) | ast::Expr::YieldFrom(_) => {
                let construct = match e {
                    ast::Expr::Await(_) => "`await`",
                    ast::Expr::Yield(_) => "`yield`",
                    _ => "`yield from`",
                };
                self.forbid(
                    span,
                    construct,
                    "config files hold values, not code: write `key = value` assignments",
                );
                return None;
            }
        };
        Some(Expr { kind, span })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(src: &str) -> Vec<String> {
        let f = SourceFile::new("image.conf", src.to_string());
        match parse(&f) {
            Ok(_) => vec![],
            Err(d) => d.0.iter().map(|d| d.message.clone()).collect(),
        }
    }

    #[test]
    fn real_image_block_parses() {
        let src = "import os, re\narch = os.uname()[4]\nif re.search('64', arch):\n    arch_libdir = 'lib64'\nelse:\n    arch_libdir = 'lib'\ndevice_model = '/usr/' + arch_libdir + '/xen/bin/qemu-dm'\n";
        assert!(problems(src).is_empty());
    }

    #[test]
    fn forbidden_constructs_are_all_reported() {
        let cases: &[(&str, &str)] = &[
            ("def f():\n    pass\n", "`def` is not allowed in image.conf"),
            (
                "class A:\n    pass\n",
                "`class` is not allowed in image.conf",
            ),
            ("x = lambda: 1\n", "`lambda` is not allowed in image.conf"),
            (
                "import subprocess\n",
                "import of `subprocess` is not allowed in image.conf",
            ),
            (
                "x = open('/etc/passwd')\n",
                "`open` is not allowed in image.conf",
            ),
            (
                "x = __import__('os')\n",
                "`__import__` is not allowed in image.conf",
            ),
            (
                "for i in x:\n    pass\n",
                "a `for` loop is not allowed in image.conf",
            ),
            (
                "x = [i for i in y]\n",
                "a comprehension is not allowed in image.conf",
            ),
            (
                "x = ''.__class__\n",
                "the attribute `__class__` is not allowed in image.conf",
            ),
        ];
        for (src, want) in cases {
            let got = problems(src);
            assert_eq!(got.first().map(String::as_str), Some(*want), "for {src:?}");
        }
        let many = problems("def f():\n    pass\nx = 1\nclass B:\n    pass\n");
        assert_eq!(many.len(), 2);
    }

    #[test]
    fn python2_leftovers_get_modern_hints() {
        let f = SourceFile::new(
            "image.conf",
            "mode = 0755\nprint \"hi\"\nok = 1\n".to_string(),
        );
        let d = parse(&f).unwrap_err();
        assert_eq!(d.0.len(), 2, "{d}");
        assert!(d.0[0].message.contains("octal"));
        assert!(d.0[0].hints[0].contains("0o755"));
        assert!(d.0[1].message.contains("print"));
    }

    fn located(src: &str) -> Vec<(String, usize, usize)> {
        let f = SourceFile::new("image.conf", src.to_string());
        match parse(&f) {
            Ok(_) => vec![],
            Err(d) => {
                d.0.iter()
                    .map(|d| {
                        let l = d.location.as_ref().expect("every problem is located");
                        (d.message.clone(), l.line, l.col)
                    })
                    .collect()
            }
        }
    }

    #[test]
    fn syntax_errors_point_at_their_cause_without_cascading() {
        let cases: &[(&str, &str, usize, usize)] = &[
            ("x = 'abc\ny = 1\n", "this string is never closed", 1, 5),
            ("x = '''abc\ny = 1\n", "this string is never closed", 1, 5),
            (
                "if a > 1\n    b = 2\n",
                "missing `:` at the end of the `if` line",
                1,
                1,
            ),
            ("x = 1\n  y = 2\n  z = 3\n", "unexpected indentation", 2, 3),
            (
                "a = 1\nif a:\n",
                "expected an indented block after this line",
                2,
                1,
            ),
            ("x = [1,\n  2\ny = 3\n", "`[` was never closed", 1, 5),
            (
                "x = {'a': 1,\n     'b' 2}\ny = 1\n",
                "syntax error: unexpected `2`",
                2,
                10,
            ),
            ("mode = 0755L\n", "Python 2 octal literal `0755L`", 1, 8),
            ("if a <> 'b':\n    c = 1\n", "Python 2 `<>` operator", 1, 6),
            ("x = `1`\n", "Python 2 backquotes", 1, 5),
            ("    print 'x'\n", "Python 2 `print` statement", 1, 5),
            (
                "exec 'x = 1'\n",
                "Python 2 `exec` statement: `exec` is not allowed in config files",
                1,
                1,
            ),
        ];
        for (src, want, line, col) in cases {
            let got = located(src);
            assert_eq!(got, vec![(want.to_string(), *line, *col)], "for {src:?}");
        }
    }

    #[test]
    fn syntax_errors_and_dialect_violations_are_reported_together_in_file_order() {
        let got = located("import subprocess\nmode = 0755\nx = lambda: 1\nprint 'a'\n");
        let messages: Vec<&str> = got.iter().map(|(m, _, _)| m.as_str()).collect();
        assert_eq!(
            messages,
            [
                "import of `subprocess` is not allowed in image.conf",
                "Python 2 octal literal `0755`",
                "`lambda` is not allowed in image.conf",
                "Python 2 `print` statement",
            ]
        );
    }

    #[test]
    fn bad_lines_with_multibyte_characters_are_blanked_safely() {
        // Found by the fuzzer: a 4-byte line of 3 characters was blanked to `pass`.
        assert_eq!(
            located("\u{592} m\n"),
            [("unexpected character `\u{592}` (U+0592)".to_string(), 1, 1)]
        );
        assert_eq!(located("x = 1\né m\ny = 2\n").len(), 1);
    }

    #[test]
    fn calls_in_bare_statements_name_the_forbidden_function() {
        assert_eq!(
            problems("exec('memory = 512')\n"),
            ["`exec` is not allowed in image.conf"]
        );
        assert_eq!(
            problems("x = 1\nx.upper()\n"),
            ["a bare expression statement is not allowed in image.conf"]
        );
    }

    #[test]
    fn a_file_over_the_limit_is_refused_where_it_passes_it() {
        let src = "padding = 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'\n".repeat(40_000);
        let got = located(&src);
        assert_eq!(got.len(), 1);
        assert!(got[0].0.contains("larger than 1048576 bytes"), "{got:?}");
        assert_eq!(got[0].1, MAX_FILE_SIZE / 53 + 1);
    }

    #[test]
    fn nesting_bound_is_an_upper_bound_per_logical_line() {
        assert_eq!(nesting_bound("x = 1\n"), 3);
        assert_eq!(nesting_bound("x = 'a long string'\ny = 1\n"), 3);
        // Brackets and backslashes continue a logical line; comments do not count.
        assert_eq!(nesting_bound("x = [1,\n  2] # a b c d e f\n"), 7);
        assert_eq!(nesting_bound("x = 1 + \\\n  2\n"), 6);
        let chain = format!("x = {}\n", vec!["1"; 3000].join("+"));
        assert!(nesting_bound(&chain) > IN_PLACE_DEPTH);
        let nots = format!("x = {}1\n", "not ".repeat(3000));
        assert!(nesting_bound(&nots) > IN_PLACE_DEPTH);
        let indented = format!("{}x = 1\n", " ".repeat(3000));
        assert!(nesting_bound(&indented) > IN_PLACE_DEPTH);
        // Real configs are far below the limit.
        let real = "import os, re\narch = os.uname()[4]\nif re.search('64', arch):\n    arch_libdir = 'lib64'\nelse:\n    arch_libdir = 'lib'\ndevice_model = '/usr/' + arch_libdir + '/xen/bin/qemu-dm'\n";
        assert!(nesting_bound(real) < 40);
    }

    #[test]
    fn deep_nesting_is_refused_quickly() {
        let src = format!("x = {}1{}\n", "[".repeat(5000), "]".repeat(5000));
        assert!(problems(&src)[0].contains("nested more than"));
        let src = format!("x = {}1\n", "-".repeat(5000));
        assert!(problems(&src)[0].contains("nested more than"));
        // A long chain is one problem, not one per node past the limit.
        let src = format!("x = {}\n", vec!["1"; 100_000].join("+"));
        assert_eq!(problems(&src).len(), 1);
    }
}

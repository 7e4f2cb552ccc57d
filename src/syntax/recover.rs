//! Parse-error recovery: explains why a line does not parse (Python 2 leftovers, an unclosed
//! string or bracket, a missing `:`, stray indentation, ...) and says which lines to blank so
//! the rest of the file can be parsed and checked too.

use super::ast::MAX_DEPTH;
use super::problem::Problem;
use crate::diagnostic::Span;
use rustpython_parser::lexer::LexicalErrorType;
use rustpython_parser::{ParseErrorType, Tok};

/// A parse error explained: the problem, and the lines to blank before parsing again.
pub(super) struct BadLines {
    pub(crate) problem: Problem,
    pub(crate) lines: (usize, usize),
    /// The lines are wrongly indented: blank them completely rather than to `pass`.
    pub(crate) dedent: bool,
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

pub(super) fn line_of(text: &str, off: usize) -> usize {
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
pub(super) fn blank_lines(work: &mut String, (first, last): (usize, usize), dedent: bool) -> bool {
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

/// Finds the first offset where brackets nest deeper than [`MAX_DEPTH`], skipping strings
/// and comments roughly (a wrong guess only makes the parser report instead).
pub(super) fn nesting_too_deep(text: &str) -> Option<usize> {
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

/// What the rules see of one parse error: the original text, the text being parsed (bad
/// lines already blanked), the parser's offset and error, and the line it is on.
pub(super) struct Failure<'a> {
    text: &'a str,
    work: &'a str,
    off: usize,
    err: &'a ParseErrorType,
    line_no: usize,
    starts: Vec<usize>,
    line_start: usize,
    line: &'a str,
    indent: usize,
    trimmed: &'a str,
}

impl<'a> Failure<'a> {
    pub(super) fn new(text: &'a str, work: &'a str, off: usize, err: &'a ParseErrorType) -> Self {
        let line_no = line_of(text, off);
        let starts = line_starts(text);
        let line_start = starts[line_no];
        let line_end = text[off..]
            .find('\n')
            .map(|i| off + i)
            .unwrap_or(text.len());
        let line = &text[line_start..line_end];
        Failure {
            text,
            work,
            off,
            err,
            line_no,
            starts,
            line_start,
            line,
            indent: line.len() - line.trim_start().len(),
            trimmed: line.trim_start(),
        }
    }

    /// A span on the failing line, from column `col`.
    fn at(&self, col: usize, len: usize) -> Span {
        Span::new(self.line_start + col, self.line_start + col + len.max(1))
    }

    /// A problem on the failing line only.
    fn one_line(&self, span: Span, message: String, hint: &str) -> BadLines {
        BadLines {
            problem: Problem {
                span,
                message,
                hint: Some(hint.to_string()),
            },
            lines: (self.line_no, self.line_no),
            dedent: false,
        }
    }
}

/// A recovery rule: recognises one kind of parse error and explains it.
type Rule = fn(&Failure<'_>) -> Option<BadLines>;

/// The recovery rules, tried in order; the first that recognises the error explains it, and
/// an error none recognises gets the parser's own message. Python 2 leftovers come first:
/// their lines also trip the rules after them.
pub(super) const RULES: &[(&str, Rule)] = &[
    ("python2-print", python2_print),
    ("python2-exec", python2_exec),
    ("python2-octal", python2_octal),
    ("python2-not-equal", python2_not_equal),
    ("python2-backquotes", python2_backquotes),
    ("unclosed-string", unclosed_string_rule),
    ("bracket", bracket),
    ("empty-block", empty_block),
    ("missing-colon", missing_colon),
    ("unexpected-indentation", unexpected_indentation),
    ("unexpected-character", unexpected_character),
];

/// Explains a parse error with the first rule that recognises it; also names the rule.
pub(super) fn explain(f: &Failure<'_>) -> (&'static str, BadLines) {
    RULES
        .iter()
        .find_map(|(name, rule)| rule(f).map(|b| (*name, b)))
        .unwrap_or_else(|| {
            let (message, hint) = generic_message(f.err);
            (
                "generic",
                f.one_line(Span::new(f.off, f.off + 1), message, &hint),
            )
        })
}

pub(super) fn explain_parse_error(
    text: &str,
    work: &str,
    off: usize,
    err: &ParseErrorType,
) -> BadLines {
    explain(&Failure::new(text, work, off, err)).1
}

fn python2_print(f: &Failure<'_>) -> Option<BadLines> {
    let rest = f.trimmed.strip_prefix("print")?;
    (rest.starts_with([' ', '\t', '"', '\'']) && !rest.trim_start().starts_with(['(', '='])).then(|| {
        f.one_line(
            f.at(f.indent, 5),
            "Python 2 `print` statement".into(),
            "config files cannot print; delete the line (in Python 3 it would be `print(...)`, which is not allowed either)",
        )
    })
}

fn python2_exec(f: &Failure<'_>) -> Option<BadLines> {
    let t = f.trimmed;
    (t.starts_with("exec ") || t.starts_with("exec\"") || t.starts_with("exec'")).then(|| {
        f.one_line(
            f.at(f.indent, 4),
            "Python 2 `exec` statement: `exec` is not allowed in config files".into(),
            "write the values as plain assignments",
        )
    })
}

fn python2_octal(f: &Failure<'_>) -> Option<BadLines> {
    let (col, tok) = legacy_octal(f.line)?;
    let digits = tok.trim_end_matches(['L', 'l']).trim_start_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    Some(f.one_line(
        f.at(col, tok.len()),
        format!("Python 2 octal literal `{tok}`"),
        &format!(
            "write it as `0o{digits}` (or as a string such as `'0{digits}'` if it is a file mode)"
        ),
    ))
}

fn python2_not_equal(f: &Failure<'_>) -> Option<BadLines> {
    let col = find_code(f.line, "<>")?;
    Some(f.one_line(
        f.at(col, 2),
        "Python 2 `<>` operator".into(),
        "write `!=` instead",
    ))
}

fn python2_backquotes(f: &Failure<'_>) -> Option<BadLines> {
    let col = find_code(f.line, "`")?;
    let len = f.line[col + 1..].find('`').map(|e| e + 2).unwrap_or(1);
    Some(f.one_line(
        f.at(col, len),
        "Python 2 backquotes".into(),
        "backquotes meant `repr(x)`; write the value as a plain string instead",
    ))
}

/// A string that is never closed: point at its opening quote.
fn unclosed_string_rule(f: &Failure<'_>) -> Option<BadLines> {
    if !matches!(f.err, ParseErrorType::Lexical(_) | ParseErrorType::Eof) {
        return None;
    }
    let text = f.text;
    let open = unclosed_string(f.work, f.off)?;
    let open_line = line_of(text, open);
    let triple = text[open..].starts_with("'''") || text[open..].starts_with("\"\"\"");
    let last = if triple {
        f.starts.len() - 1
    } else {
        open_line
    };
    Some(BadLines {
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
    })
}

/// Inside brackets: a bracket never closed, or an error inside a value over several lines.
fn bracket(f: &Failure<'_>) -> Option<BadLines> {
    let text = f.text;
    let (open, close) = open_bracket(f.work, f.off)?;
    let open_line = line_of(text, open);
    match close {
        None => {
            let c = text[open..].chars().next().unwrap_or('(');
            let last = if f.line_no > open_line {
                f.line_no - 1
            } else {
                open_line
            };
            Some(BadLines {
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
            })
        }
        Some(close) if line_of(text, close) > open_line => {
            let (message, hint) = generic_message(f.err);
            Some(BadLines {
                problem: Problem {
                    span: Span::new(f.off, f.off + 1),
                    message,
                    hint: Some(format!(
                        "{hint}; inside brackets, separate the items with commas"
                    )),
                },
                lines: (open_line, line_of(text, close)),
                dedent: false,
            })
        }
        Some(_) => None,
    }
}

/// A block header with no indented body after it.
fn empty_block(f: &Failure<'_>) -> Option<BadLines> {
    let text = f.text;
    let before_error = &text[f.line_start..f.off];
    if !before_error.trim().is_empty() || f.line_no == 0 {
        return None;
    }
    let lines: Vec<&str> = text.split('\n').collect();
    let h = (0..f.line_no)
        .rev()
        .find(|&i| !code_of(lines[i]).trim().is_empty())?;
    let hl = lines[h];
    let h_indent = hl.len() - hl.trim_start().len();
    let here_indent = if f.line.trim().is_empty() {
        0
    } else {
        f.indent
    };
    (code_of(hl).trim_end().ends_with(':') && here_indent <= h_indent).then(|| BadLines {
        problem: Problem {
            span: Span::new(
                f.starts[h] + h_indent,
                f.starts[h] + code_of(hl).trim_end().len(),
            ),
            message: "expected an indented block after this line".into(),
            hint: Some(
                "indent the lines that belong to it, or write `pass` indented below it".into(),
            ),
        },
        lines: (h, h),
        dedent: false,
    })
}

/// A block header without its colon.
fn missing_colon(f: &Failure<'_>) -> Option<BadLines> {
    let keyword = f.trimmed.split([' ', ':', '(']).next().unwrap_or("");
    let header = code_of(f.trimmed).trim_end();
    (matches!(keyword, "if" | "elif" | "else")
        && !code_of(f.line).trim_end().ends_with(':')
        && matches!(f.err, ParseErrorType::UnrecognizedToken(Tok::Newline, _)))
    .then(|| {
        f.one_line(
            f.at(f.indent, header.len()),
            format!("missing `:` at the end of the `{keyword}` line"),
            &format!("write `{header}:` and indent the lines that belong to it"),
        )
    })
}

/// Stray indentation: blank this line and the rest of its over-indented run.
fn unexpected_indentation(f: &Failure<'_>) -> Option<BadLines> {
    if !matches!(
        f.err,
        ParseErrorType::UnrecognizedToken(Tok::Indent, _)
            | ParseErrorType::Lexical(LexicalErrorType::IndentationError)
    ) {
        return None;
    }
    let lines: Vec<&str> = f.text.split('\n').collect();
    let mut last = f.line_no;
    while let Some(next) = lines.get(last + 1) {
        let ind = next.len() - next.trim_start().len();
        if next.trim().is_empty() || ind >= f.indent {
            last += 1;
        } else {
            break;
        }
    }
    Some(BadLines {
        problem: Problem {
            span: f.at(f.indent, 1),
            message: "unexpected indentation".into(),
            hint: Some(
                "start each `key = value` at the beginning of a line; only the body of an `if` or `else` is indented, all of it by the same amount"
                    .into(),
            ),
        },
        lines: (f.line_no, last),
        dedent: true,
    })
}

/// A character that is no token (typographic quotes get their own hint).
fn unexpected_character(f: &Failure<'_>) -> Option<BadLines> {
    let ParseErrorType::Lexical(LexicalErrorType::UnrecognizedToken { tok }) = f.err else {
        return None;
    };
    // The lexer reports the offset after the character: point at the character itself.
    let at = f
        .text
        .get(..f.off)
        .and_then(|t| t.rfind(*tok))
        .filter(|&i| i >= f.line_start)
        .unwrap_or(f.off);
    let span = Span::new(at, at + tok.len_utf8());
    if matches!(tok, '\u{2018}' | '\u{2019}' | '\u{201c}' | '\u{201d}') {
        return Some(f.one_line(
            span,
            format!("typographic quote `{tok}`"),
            "quote strings with straight quotes, `'` or `\"` (a word processor may have replaced them)",
        ));
    }
    Some(f.one_line(
        span,
        format!("unexpected character `{tok}` (U+{:04X})", u32::from(*tok)),
        "names are letters, digits and `_`; text belongs in quotes",
    ))
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

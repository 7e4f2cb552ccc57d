//! Source files, byte spans and diagnostics: every problem convirt finds in a user's file
//! carries a span and is rendered as `--> file:line:col`, the line, a caret and a `hint:`.

use std::fmt::Write as _;
use std::io::Read as _;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// The most bytes [`SourceFile::read`] reads: well above what the parser accepts, so a larger
/// file is still reported as too large, never read whole.
pub const READ_LIMIT: usize = 4 << 20;

/// A byte range into a [`SourceFile`]'s text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Self {
        Span {
            start,
            end: end.max(start),
        }
    }
    pub fn range(self) -> Range<usize> {
        self.start..self.end
    }
}

/// A user's file held in memory, with the line starts needed to turn spans into positions.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
    line_starts: Vec<usize>,
}

impl SourceFile {
    pub fn new(path: impl Into<PathBuf>, text: String) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        SourceFile {
            path: path.into(),
            text,
            line_starts,
        }
    }

    /// Reads a file. Non-UTF-8 input is an error diagnostic at the first bad byte, a BOM is
    /// dropped and CRLF line ends become LF (ConVirt did the same), so spans refer to the
    /// normalised text.
    pub fn read(path: &Path) -> Result<SourceFile, Diagnostic> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let fail = |e: std::io::Error| {
            let msg = match e.kind() {
                std::io::ErrorKind::NotFound => format!("`{name}` is missing"),
                _ => format!("cannot read `{name}`: {e}"),
            };
            Diagnostic::error(msg).in_file(path)
        };
        // A config file that is a pipe or a huge file must not exhaust memory: read no more
        // than the parser could ever accept, plus a margin so it can tell the file is too big.
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| {
                // Size the buffer from the file's length so a normal file is one read.
                let len = f.metadata().map(|m| m.len() as usize).unwrap_or(0);
                bytes.reserve_exact(len.min(READ_LIMIT) + 1);
                f.take(READ_LIMIT as u64 + 1).read_to_end(&mut bytes)
            })
            .map_err(fail)?;
        if bytes.len() > READ_LIMIT {
            bytes.truncate(READ_LIMIT);
            // Do not let the cut split a character and pass for a bad byte.
            if let Err(e) = std::str::from_utf8(&bytes) {
                if e.error_len().is_none() {
                    bytes.truncate(e.valid_up_to());
                }
            }
        }
        Self::from_bytes(path, bytes)
    }

    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<SourceFile, Diagnostic> {
        let bytes = match bytes.strip_prefix(b"\xEF\xBB\xBF") {
            Some(rest) => rest.to_vec(),
            None => bytes,
        };
        match String::from_utf8(bytes) {
            Ok(text) => {
                let text = if text.contains('\r') {
                    text.replace("\r\n", "\n")
                } else {
                    text
                };
                Ok(SourceFile::new(path, text))
            }
            Err(e) => {
                let good = e.utf8_error().valid_up_to();
                let bytes = e.into_bytes();
                // The lossy text is identical up to the bad byte, so the offset still holds.
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let file = SourceFile::new(path, text);
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                Err(Diagnostic::error(format!(
                    "`{name}` is not valid UTF-8: unexpected byte 0x{:02x}",
                    bytes[good]
                ))
                .at(&file, Span::new(good, good + 1))
                .with_hint(
                    "save the file as UTF-8 (for example `iconv -f latin1 -t utf-8`); the bad byte is shown as \u{fffd}",
                ))
            }
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let start = self.line_starts[line];
        let col = self
            .text
            .get(start..offset)
            .map(|s| s.chars().count())
            .unwrap_or(offset - start);
        (line + 1, col + 1)
    }

    /// The text of a 1-based line, without its newline.
    pub fn line_text(&self, line: usize) -> &str {
        let start = self
            .line_starts
            .get(line.wrapping_sub(1))
            .copied()
            .unwrap_or(self.text.len());
        let end = self
            .line_starts
            .get(line)
            .map(|e| e - 1)
            .unwrap_or(self.text.len());
        self.text.get(start..end.max(start)).unwrap_or("")
    }

    pub fn slice(&self, span: Span) -> &str {
        self.text.get(span.range()).unwrap_or("")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// Where a diagnostic points: a whole file, or a span inside a loaded source.
#[derive(Debug, Clone)]
pub struct Location {
    pub path: PathBuf,
    pub line: usize,
    pub col: usize,
    pub line_text: String,
    /// Width of the caret run, in characters.
    pub width: usize,
}

#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub severity: Severity,
    pub message: String,
    pub path: Option<PathBuf>,
    pub location: Option<Box<Location>>,
    pub hints: Vec<String>,
}

impl Diagnostic {
    pub fn error(message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            path: None,
            location: None,
            hints: Vec::new(),
        }
    }

    pub fn warning(message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(message)
        }
    }

    pub fn in_file(mut self, path: &Path) -> Self {
        self.path = Some(path.to_path_buf());
        self
    }

    pub fn at(mut self, file: &SourceFile, span: Span) -> Self {
        let (line, col) = file.line_col(span.start);
        let line_text = file.line_text(line).to_string();
        let (end_line, end_col) = file.line_col(span.end);
        let width = if end_line == line && end_col > col {
            end_col - col
        } else {
            line_text.chars().count().saturating_sub(col - 1).max(1)
        };
        self.path = Some(file.path.clone());
        self.location = Some(Box::new(Location {
            path: file.path.clone(),
            line,
            col,
            line_text,
            width,
        }));
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hints.push(hint.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// `file:line:col` (or just the file) for one-line summaries.
    pub fn position(&self) -> Option<String> {
        match (&self.location, &self.path) {
            (Some(l), _) => Some(format!("{}:{}:{}", l.path.display(), l.line, l.col)),
            (None, Some(p)) => Some(p.display().to_string()),
            (None, None) => None,
        }
    }

    /// The multi-line rendering used on a terminal.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let label = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let _ = writeln!(out, "{label}: {}", self.message);
        if let Some(l) = &self.location {
            let num = l.line.to_string();
            let pad = " ".repeat(num.len());
            let _ = writeln!(out, "{pad}--> {}:{}:{}", l.path.display(), l.line, l.col);
            let _ = writeln!(out, "{pad} |");
            let (shown, caret_col, caret_width) = snippet(&l.line_text, l.col, l.width);
            let _ = writeln!(out, "{num} | {}", shown.trim_end());
            let _ = writeln!(
                out,
                "{pad} | {}{}",
                " ".repeat(caret_col),
                "^".repeat(caret_width)
            );
        } else if let Some(p) = &self.path {
            let _ = writeln!(out, " --> {}", p.display());
        }
        for h in &self.hints {
            let _ = writeln!(out, "hint: {h}");
        }
        out
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "severity": self.severity,
            "message": self.message,
            "file": self.path.as_ref().map(|p| p.display().to_string()),
            "line": self.location.as_ref().map(|l| l.line),
            "column": self.location.as_ref().map(|l| l.col),
            "hints": self.hints,
        })
    }
}

/// The widest source line shown whole; a longer one is cut to a window around the caret.
const SNIPPET_WIDTH: usize = 100;

/// The part of a line to show, the caret's 0-based column in it and the caret's width, all in
/// characters. Tabs become one space and control characters their visible symbol (NUL as
/// `␀`), so the caret stays aligned and the terminal is never fed raw control bytes.
fn snippet(line: &str, col: usize, width: usize) -> (String, usize, usize) {
    let chars: Vec<char> = line
        .chars()
        .map(|c| match c {
            '\t' => ' ',
            c if (c as u32) < 0x20 => char::from_u32(0x2400 + c as u32).unwrap_or('?'),
            '\u{7f}' => '\u{2421}',
            c => c,
        })
        .collect();
    let at = col.saturating_sub(1);
    if chars.len() <= SNIPPET_WIDTH {
        return (chars.into_iter().collect(), at, width.clamp(1, 80));
    }
    let mut start = at.saturating_sub(SNIPPET_WIDTH / 3);
    if start + SNIPPET_WIDTH > chars.len() {
        start = chars.len().saturating_sub(SNIPPET_WIDTH).min(at);
    }
    let end = (start + SNIPPET_WIDTH).min(chars.len());
    let mut shown = String::new();
    let mut caret = at - start;
    if start > 0 {
        shown.push_str("...");
        caret += 3;
    }
    shown.extend(&chars[start..end]);
    if end < chars.len() {
        shown.push_str("...");
    }
    let room = end.saturating_sub(at).max(1);
    (shown, caret, width.clamp(1, room.min(80)))
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.render().trim_end())
    }
}

impl std::error::Error for Diagnostic {}

/// All the problems found in one or more files; an error as soon as one of them is an error.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }
    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }
    /// The same problems as warnings: for a file whose defaults apply when it is broken.
    pub fn into_warnings(self) -> Diagnostics {
        Diagnostics(
            self.0
                .into_iter()
                .map(|mut d| {
                    d.severity = Severity::Warning;
                    d
                })
                .collect(),
        )
    }
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Diagnostic::is_error)
    }
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.is_error())
    }
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| !d.is_error())
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn render(&self) -> String {
        self.0
            .iter()
            .map(Diagnostic::render)
            .collect::<Vec<_>>()
            .join("\n")
    }
    /// One line for list views: the first error's message and position.
    pub fn summary(&self) -> String {
        match self.errors().next().or_else(|| self.0.first()) {
            Some(d) => match d.position() {
                Some(p) => format!("{p}: {}", d.message),
                None => d.message.clone(),
            },
            None => String::new(),
        }
    }
}

impl std::fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.render().trim_end())
    }
}

impl std::error::Error for Diagnostics {}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Diagnostics(vec![d])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_and_caret() {
        let f = SourceFile::new("a.conf", "x = 1\nmemory = 'é' + 2\n".to_string());
        let off = f.text.find("+ 2").unwrap();
        assert_eq!(f.line_col(off), (2, 14));
        let d = Diagnostic::error("bad")
            .at(&f, Span::new(off, off + 3))
            .with_hint("fix it");
        assert_eq!(
            d.render(),
            "error: bad\n --> a.conf:2:14\n  |\n2 | memory = 'é' + 2\n  |              ^^^\nhint: fix it\n"
        );
    }

    #[test]
    fn long_lines_are_cut_around_the_caret() {
        let text = format!("x = {}{}\n", "[".repeat(300), "]".repeat(300));
        let f = SourceFile::new("n.conf", text);
        let d = Diagnostic::error("deep").at(&f, Span::new(204, 205));
        let r = d.render();
        let lines: Vec<&str> = r.lines().collect();
        assert!(lines[3].starts_with("1 | ...[[["), "{r}");
        assert!(lines[3].ends_with("..."), "{r}");
        assert!(lines[3].chars().count() < 120, "{r}");
        // The caret sits under the character it names.
        let caret = lines[4].find('^').unwrap();
        assert_eq!(lines[3].as_bytes()[caret], b'[', "{r}");
        assert_eq!(lines[4].matches('^').count(), 1, "{r}");
    }

    #[test]
    fn control_characters_are_shown_as_symbols() {
        let f = SourceFile::new("z.conf", "a = 1\0\tb\n".to_string());
        let d = Diagnostic::error("nul").at(&f, Span::new(5, 6));
        assert_eq!(
            d.render(),
            "error: nul\n --> z.conf:1:6\n  |\n1 | a = 1\u{2400} b\n  |      ^\n"
        );
    }

    #[test]
    fn bom_and_crlf_are_normalised() {
        let f = SourceFile::from_bytes(Path::new("x"), b"\xEF\xBB\xBFa = 1\r\nb = 2\r\n".to_vec())
            .unwrap();
        assert_eq!(f.text, "a = 1\nb = 2\n");
    }

    #[test]
    fn non_utf8_names_line() {
        let e =
            SourceFile::from_bytes(Path::new("x"), b"a = 1\nb = '\xff'\n".to_vec()).unwrap_err();
        assert!(e.message.contains("byte 0xff"), "{}", e.message);
        let l = e.location.as_ref().expect("located");
        assert_eq!((l.line, l.col), (2, 6));
    }
}

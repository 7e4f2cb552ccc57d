//! Splicing new text into a file's exact bytes: the BOM and CRLF line ends the parser
//! normalised away are mapped back, and new lines take the file's own line-end style.

use crate::diagnostic::{Diagnostic, Diagnostics, Span};
use std::path::Path;

pub(super) const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Where the file's bytes differ from the normalised text the parser saw (a BOM, CRLF line
/// ends), so a span of the text maps back to the exact bytes.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    pub(super) bom: bool,
    /// Offsets in the normalised text of each `\n` that was `\r\n` in the file.
    pub(super) crlf: Vec<usize>,
    /// The line end for new lines: the file's majority style.
    eol: &'static str,
}

/// A replacement of a span of the normalised text; its text uses `\n` line ends.
#[derive(Debug, Clone)]
pub(super) struct Splice {
    pub(super) span: Span,
    pub(super) text: String,
}

impl Layout {
    pub(super) fn of(bytes: &[u8]) -> Layout {
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

    /// Applies the splices to the file's `bytes` (mapped through the BOM and CRLF line ends)
    /// and appends the new lines in the file's line-end style.
    pub(super) fn splice(
        &self,
        bytes: &[u8],
        path: &Path,
        mut splices: Vec<Splice>,
        appended: &str,
    ) -> Result<Vec<u8>, Diagnostics> {
        splices.sort_by_key(|s| (s.span.start, s.span.end));
        if splices.windows(2).any(|w| w[0].span.end > w[1].span.start) {
            return Err(Diagnostic::error("two changes overlap in the file")
                .in_file(path)
                .with_hint("change the keys in two separate edits")
                .into());
        }
        let eol = |s: &str| s.replace('\n', self.eol);
        let mut out = Vec::with_capacity(bytes.len() + appended.len() + 16);
        let mut pos = 0;
        for s in &splices {
            let (a, b) = (self.to_file(s.span.start), self.to_file(s.span.end));
            out.extend_from_slice(&bytes[pos..a]);
            out.extend_from_slice(eol(&s.text).as_bytes());
            pos = b;
        }
        out.extend_from_slice(&bytes[pos..]);
        if !appended.is_empty() {
            let body = if self.bom {
                &out[BOM.len()..]
            } else {
                &out[..]
            };
            if !body.is_empty() && !body.ends_with(b"\n") {
                out.extend_from_slice(self.eol.as_bytes());
            }
            out.extend_from_slice(eol(appended).as_bytes());
        }
        Ok(out)
    }
}

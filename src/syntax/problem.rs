//! A problem found while parsing or checking a file, before it is tied to its file.

use crate::diagnostic::{Diagnostic, SourceFile, Span};

pub(crate) struct Problem {
    pub(crate) span: Span,
    pub(crate) message: String,
    pub(crate) hint: Option<String>,
}

impl Problem {
    pub(crate) fn into_diagnostic(self, file: &SourceFile) -> Diagnostic {
        let d = Diagnostic::error(self.message).at(file, self.span);
        match self.hint {
            Some(h) => d.with_hint(h),
            None => d,
        }
    }
}

//! How one evaluation step fails: a located problem, a follow-on of an earlier one, or the
//! step budget running out.

use crate::diagnostic::Span;

pub(crate) enum Fail {
    /// A problem to report.
    Error(Span, String, Option<String>),
    /// Follows from an earlier reported problem; not reported again.
    Silent,
    /// The step budget ran out: abandon the file.
    Budget(Span),
}

pub(crate) type R<T> = Result<T, Fail>;

pub(crate) fn err<T>(span: Span, msg: impl Into<String>) -> R<T> {
    Err(Fail::Error(span, msg.into(), None))
}

pub(crate) fn err_hint<T>(span: Span, msg: impl Into<String>, hint: impl Into<String>) -> R<T> {
    Err(Fail::Error(span, msg.into(), Some(hint.into())))
}

pub(crate) fn too_big(span: Span) -> Fail {
    Fail::Error(
        span,
        "integer too large (more than 64 bits)".into(),
        Some("config values are sizes and counts; check the expression".into()),
    )
}

//! The bounds of one evaluation and the one place that checks them: every string, list,
//! width, precision and repeat count a config computes passes through here before anything
//! of that size is allocated, so a config can neither exhaust memory nor be silently cut.

use super::fail::{R, err_hint};
use crate::diagnostic::Span;
use crate::value::Value;

/// Resource bounds of one evaluation.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_steps: u64,
    pub max_str_len: usize,
    pub max_items: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_steps: 1_000_000,
            max_str_len: 1 << 20,
            max_items: 100_000,
        }
    }
}

pub(crate) const SHORT_HINT: &str = "config values are short; check the expression";

/// What a value holds in all, nested values included: bytes of text and items. A value may
/// hold at most `max_str_len` bytes of text and `max_items` items in all, so a list that
/// repeats a long string cannot multiply it past the bounds.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Size {
    pub(crate) text: usize,
    pub(crate) items: usize,
}

impl Size {
    /// Measures `v`, stopping early once past the bounds (so measuring costs no more than
    /// the bounds allow).
    pub(crate) fn of(v: &Value, limits: &Limits) -> Size {
        let mut s = Size::default();
        s.add(v, limits);
        s
    }

    /// Measures the items of a list or tuple (what one copy of it adds when repeated).
    pub(crate) fn of_items(items: &[Value], limits: &Limits) -> Size {
        let mut s = Size {
            text: 0,
            items: items.len(),
        };
        for i in items {
            s.add(i, limits);
        }
        s
    }

    fn add(&mut self, v: &Value, limits: &Limits) {
        if self.over(limits) {
            return;
        }
        match v {
            Value::Str(x) => self.text += x.len(),
            Value::List(items) | Value::Tuple(items) => {
                self.items += items.len();
                for i in items {
                    self.add(i, limits);
                }
            }
            Value::Dict(pairs) => {
                self.items += pairs.len();
                for (k, x) in pairs {
                    self.add(k, limits);
                    self.add(x, limits);
                }
            }
            _ => {}
        }
    }

    fn over(&self, limits: &Limits) -> bool {
        self.text > limits.max_str_len || self.items > limits.max_items
    }

    /// Adds `v` to a value being built item by item; fails as soon as the whole would pass
    /// the bounds, before more is copied.
    pub(crate) fn push(&mut self, v: &Value, span: Span, limits: &Limits) -> R<()> {
        self.items += 1;
        self.add(v, limits);
        self.check(span, limits)
    }

    pub(crate) fn check(&self, span: Span, limits: &Limits) -> R<()> {
        if self.text > limits.max_str_len {
            return err_hint(
                span,
                format!(
                    "the value would hold more than {} bytes of text",
                    limits.max_str_len
                ),
                SHORT_HINT,
            );
        }
        if self.items > limits.max_items {
            return err_hint(
                span,
                format!("the value would hold more than {} items", limits.max_items),
                SHORT_HINT,
            );
        }
        Ok(())
    }
}

/// Checks a value an expression produced. The top level keeps its own messages (a string or
/// list that is too long); nested contents are bounded in all.
pub(crate) fn check_value(span: Span, v: Value, limits: &Limits) -> R<Value> {
    match &v {
        Value::Str(s) if s.len() > limits.max_str_len => {
            return err_hint(
                span,
                format!("string longer than {} bytes", limits.max_str_len),
                SHORT_HINT,
            );
        }
        Value::List(i) | Value::Tuple(i) if i.len() > limits.max_items => {
            return err_hint(
                span,
                format!("list longer than {} items", limits.max_items),
                SHORT_HINT,
            );
        }
        _ => {}
    }
    if matches!(v, Value::List(_) | Value::Tuple(_) | Value::Dict(_)) {
        Size::of(&v, limits).check(span, limits)?;
    }
    Ok(v)
}

/// How many times a value of `unit` may be repeated without passing the bounds; a negative
/// count repeats nothing, as in Python. `unit.items` is the number of items one copy adds.
pub(crate) fn repeat_count(span: Span, unit: Size, times: i64, limits: &Limits) -> R<usize> {
    let times = times.max(0) as usize;
    let text = unit.text.checked_mul(times);
    let items = unit.items.checked_mul(times);
    match (text, items) {
        (Some(t), Some(i)) if t <= limits.max_str_len && i <= limits.max_items => Ok(times),
        (Some(t), _) if t <= limits.max_str_len => err_hint(
            span,
            format!("the result would have more than {} items", limits.max_items),
            SHORT_HINT,
        ),
        _ => err_hint(
            span,
            format!(
                "the result would have more than {} bytes",
                limits.max_str_len
            ),
            SHORT_HINT,
        ),
    }
}

/// A width, precision or length the config asks for (`%.9f`, `'x'.zfill(9)`, `ljust`):
/// a number of characters that will be allocated, bounded like any string.
/// `shown` is the number as the config wrote it (it may not fit in 64 bits).
pub(crate) fn width(
    span: Span,
    what: &str,
    n: u64,
    shown: &dyn std::fmt::Display,
    limits: &Limits,
) -> R<usize> {
    match usize::try_from(n) {
        Ok(w) if w <= limits.max_str_len => Ok(w),
        _ => err_hint(
            span,
            format!(
                "{what} {shown} is more than {} characters, the limit for a string",
                limits.max_str_len
            ),
            SHORT_HINT,
        ),
    }
}

/// A string the evaluator is building: fails once it passes the bound.
pub(crate) fn check_text(span: Span, len: usize, limits: &Limits) -> R<()> {
    if len > limits.max_str_len {
        err_hint(
            span,
            format!("string longer than {} bytes", limits.max_str_len),
            SHORT_HINT,
        )
    } else {
        Ok(())
    }
}

//! The granted string methods: one table entry each. Every length a method is asked for
//! (`zfill`, `ljust`, `rjust`, `center`) and every result it builds (`join`, `replace`) is
//! bounded before it is allocated.

use super::coerce::{int_like, iter_items, str_arg};
use super::fail::{R, err, err_hint};
use super::limits::{check_text, width};
use super::table::{Call, Func, Obj, val};
use crate::diagnostic::Span;
use crate::value::Value;

pub(crate) static STR_METHODS: &[Func] = &[
    Func {
        name: "upper",
        min: 0,
        max: 0,
        kwargs: &[],
        run: |c| text(c.this_str().to_uppercase()),
    },
    Func {
        name: "lower",
        min: 0,
        max: 0,
        kwargs: &[],
        run: |c| text(c.this_str().to_lowercase()),
    },
    Func {
        name: "strip",
        min: 0,
        max: 1,
        kwargs: &[],
        run: |c| strip(c, true, true),
    },
    Func {
        name: "lstrip",
        min: 0,
        max: 1,
        kwargs: &[],
        run: |c| strip(c, true, false),
    },
    Func {
        name: "rstrip",
        min: 0,
        max: 1,
        kwargs: &[],
        run: |c| strip(c, false, true),
    },
    Func {
        name: "split",
        min: 0,
        max: 2,
        kwargs: &["sep", "maxsplit"],
        run: |c| split(c, false),
    },
    Func {
        name: "rsplit",
        min: 0,
        max: 2,
        kwargs: &["sep", "maxsplit"],
        run: |c| split(c, true),
    },
    Func {
        name: "join",
        min: 1,
        max: 1,
        kwargs: &[],
        run: join,
    },
    Func {
        name: "replace",
        min: 2,
        max: 3,
        kwargs: &[],
        run: replace,
    },
    Func {
        name: "startswith",
        min: 1,
        max: 1,
        kwargs: &[],
        run: |c| affix(c, true),
    },
    Func {
        name: "endswith",
        min: 1,
        max: 1,
        kwargs: &[],
        run: |c| affix(c, false),
    },
    Func {
        name: "find",
        min: 1,
        max: 1,
        kwargs: &[],
        run: |c| find(c, false, false),
    },
    Func {
        name: "rfind",
        min: 1,
        max: 1,
        kwargs: &[],
        run: |c| find(c, true, false),
    },
    Func {
        name: "count",
        min: 1,
        max: 1,
        kwargs: &[],
        run: count,
    },
    Func {
        name: "isdigit",
        min: 0,
        max: 0,
        kwargs: &[],
        run: |c| {
            let s = c.this_str();
            val(Value::Bool(
                !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()),
            ))
        },
    },
    Func {
        name: "isalpha",
        min: 0,
        max: 0,
        kwargs: &[],
        run: |c| {
            let s = c.this_str();
            val(Value::Bool(
                !s.is_empty() && s.chars().all(char::is_alphabetic),
            ))
        },
    },
    Func {
        name: "isalnum",
        min: 0,
        max: 0,
        kwargs: &[],
        run: |c| {
            let s = c.this_str();
            val(Value::Bool(
                !s.is_empty() && s.chars().all(char::is_alphanumeric),
            ))
        },
    },
    Func {
        name: "title",
        min: 0,
        max: 0,
        kwargs: &[],
        run: |c| {
            text(
                c.this_str()
                    .split(' ')
                    .map(capitalize)
                    .collect::<Vec<_>>()
                    .join(" "),
            )
        },
    },
    Func {
        name: "capitalize",
        min: 0,
        max: 0,
        kwargs: &[],
        run: |c| text(capitalize(c.this_str())),
    },
    Func {
        name: "splitlines",
        min: 0,
        max: 0,
        kwargs: &[],
        run: |c| val(list(c.this_str().lines().collect())),
    },
    Func {
        name: "zfill",
        min: 1,
        max: 1,
        kwargs: &[],
        run: zfill,
    },
    Func {
        name: "index",
        min: 1,
        max: 1,
        kwargs: &[],
        run: |c| find(c, false, true),
    },
    Func {
        name: "ljust",
        min: 1,
        max: 2,
        kwargs: &[],
        run: |c| justify(c, Align::Left),
    },
    Func {
        name: "rjust",
        min: 1,
        max: 2,
        kwargs: &[],
        run: |c| justify(c, Align::Right),
    },
    Func {
        name: "center",
        min: 1,
        max: 2,
        kwargs: &[],
        run: |c| justify(c, Align::Center),
    },
];

fn text(s: String) -> R<Obj> {
    val(Value::Str(s))
}

fn list(v: Vec<&str>) -> Value {
    Value::List(v.into_iter().map(|x| Value::Str(x.to_string())).collect())
}

fn capitalize(w: &str) -> String {
    let mut c = w.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + &c.as_str().to_lowercase(),
        None => String::new(),
    }
}

fn opt_str(v: Option<&Value>, span: Span) -> R<Option<String>> {
    match v {
        None | Some(Value::None) => Ok(None),
        Some(Value::Str(x)) => Ok(Some(x.clone())),
        Some(o) => err(span, format!("expected a string, not {}", o.type_name())),
    }
}

fn strip(c: Call<'_>, left: bool, right: bool) -> R<Obj> {
    let chars = opt_str(c.arg(0), c.span)?;
    let pred = |ch: char| match &chars {
        Some(set) => set.contains(ch),
        None => ch.is_whitespace(),
    };
    let s = c.this_str();
    let s = if left { s.trim_start_matches(pred) } else { s };
    let s = if right { s.trim_end_matches(pred) } else { s };
    text(s.to_string())
}

fn split(c: Call<'_>, from_right: bool) -> R<Obj> {
    let sep = opt_str(c.param(0, "sep"), c.span)?;
    let max = match c.param(1, "maxsplit") {
        Some(v) => match int_like(v) {
            Some(m) if m >= 0 => Some(m as usize),
            Some(_) => None,
            None => return err(c.span, "`maxsplit` must be an integer"),
        },
        None => None,
    };
    let s = c.this_str();
    val(match (sep, max) {
        (Some(sep), _) if sep.is_empty() => return err(c.span, "empty separator"),
        (Some(sep), Some(m)) if !from_right => list(s.splitn(m + 1, sep.as_str()).collect()),
        (Some(sep), Some(m)) => {
            let mut v: Vec<&str> = s.rsplitn(m + 1, sep.as_str()).collect();
            v.reverse();
            list(v)
        }
        (Some(sep), None) => list(s.split(sep.as_str()).collect()),
        (None, Some(m)) if !from_right => {
            // Python splits off at most `m` words and keeps the rest, leading blanks dropped.
            let mut v: Vec<&str> = Vec::new();
            let mut rest = s.trim_start();
            while v.len() < m && !rest.is_empty() {
                let i = rest.find(char::is_whitespace).unwrap_or(rest.len());
                v.push(&rest[..i]);
                rest = rest[i..].trim_start();
            }
            if !rest.is_empty() {
                v.push(rest);
            }
            list(v)
        }
        (None, Some(m)) => {
            let mut v: Vec<&str> = Vec::new();
            let mut rest = s.trim_end();
            while v.len() < m && !rest.is_empty() {
                let i = rest
                    .rfind(char::is_whitespace)
                    .map(|i| i + rest[i..].chars().next().map_or(1, char::len_utf8))
                    .unwrap_or(0);
                v.push(&rest[i..]);
                rest = rest[..i].trim_end();
            }
            if !rest.is_empty() {
                v.push(rest);
            }
            v.reverse();
            list(v)
        }
        (None, None) => list(s.split_whitespace().collect()),
    })
}

fn join(c: Call<'_>) -> R<Obj> {
    let span = c.span;
    let items = iter_items(c.arg(0).cloned().unwrap_or(Value::None), span, c.limits)?;
    let sep = c.this_str();
    let mut parts = Vec::with_capacity(items.len());
    for it in items {
        match it {
            Value::Str(x) => parts.push(x),
            other => {
                return err(
                    span,
                    format!("`join` needs strings, found {}", other.type_name()),
                );
            }
        }
    }
    let total: usize = parts.iter().map(String::len).sum::<usize>() + sep.len() * parts.len();
    check_text(span, total, c.limits)?;
    text(parts.join(sep))
}

fn replace(c: Call<'_>) -> R<Obj> {
    let span = c.span;
    let old = str_arg(c.arg(0), span, "the old text")?;
    let new = str_arg(c.arg(1), span, "the new text")?;
    let limit = match c.arg(2) {
        None => usize::MAX,
        Some(v) => match int_like(v) {
            Some(n) if n >= 0 => n as usize,
            Some(_) => usize::MAX,
            None => return err(span, "the count must be an integer"),
        },
    };
    let s = c.this_str();
    let found = if old.is_empty() {
        s.chars().count() + 1
    } else {
        s.matches(old.as_str()).count()
    };
    let count = found.min(limit);
    check_text(
        span,
        s.len().saturating_add(count.saturating_mul(new.len())),
        c.limits,
    )?;
    text(s.replacen(old.as_str(), &new, count))
}

fn affix(c: Call<'_>, start: bool) -> R<Obj> {
    let span = c.span;
    let options = match c.arg(0) {
        Some(Value::Tuple(t)) => t
            .iter()
            .map(|v| str_arg(Some(v), span, "the prefix"))
            .collect::<R<Vec<_>>>()?,
        other => vec![str_arg(other, span, "the prefix")?],
    };
    let s = c.this_str();
    val(Value::Bool(options.iter().any(|p| {
        if start {
            s.starts_with(p.as_str())
        } else {
            s.ends_with(p.as_str())
        }
    })))
}

fn find(c: Call<'_>, from_right: bool, must: bool) -> R<Obj> {
    let needle = str_arg(c.arg(0), c.span, "the text to find")?;
    let s = c.this_str();
    let pos = if from_right {
        s.rfind(needle.as_str())
    } else {
        s.find(needle.as_str())
    };
    val(match pos {
        Some(p) => Value::Int(s[..p].chars().count() as i64),
        None if must => {
            return err_hint(
                c.span,
                "substring not found",
                "`find` answers -1 instead of failing",
            );
        }
        None => Value::Int(-1),
    })
}

fn count(c: Call<'_>) -> R<Obj> {
    let needle = str_arg(c.arg(0), c.span, "the text to count")?;
    let s = c.this_str();
    val(Value::Int(if needle.is_empty() {
        s.chars().count() as i64 + 1
    } else {
        s.matches(needle.as_str()).count() as i64
    }))
}

/// The width argument of `zfill`, `ljust`, ...: a negative width pads nothing, as in
/// Python; a width past the string bound is an error before anything is allocated.
fn width_arg(c: &Call<'_>, method: &str) -> R<usize> {
    match c.arg(0).and_then(int_like) {
        Some(w) if w <= 0 => Ok(0),
        Some(w) => width(c.span, &format!("`{method}` width"), w as u64, &w, c.limits),
        None => err(c.span, format!("`{method}` takes a width")),
    }
}

fn zfill(c: Call<'_>) -> R<Obj> {
    let w = width_arg(&c, "zfill")?;
    let s = c.this_str();
    let len = s.chars().count();
    if len >= w {
        return text(s.to_string());
    }
    let (sign, rest) = match s.strip_prefix(['-', '+']) {
        Some(r) => (&s[..1], r),
        None => ("", s),
    };
    check_text(c.span, s.len() + (w - len), c.limits)?;
    text(format!("{sign}{}{rest}", "0".repeat(w - len)))
}

enum Align {
    Left,
    Right,
    Center,
}

fn justify(c: Call<'_>, align: Align) -> R<Obj> {
    let name = match align {
        Align::Left => "ljust",
        Align::Right => "rjust",
        Align::Center => "center",
    };
    let w = width_arg(&c, name)?;
    let fill = match c.arg(1) {
        None => ' ',
        Some(Value::Str(f)) if f.chars().count() == 1 => f.chars().next().unwrap_or(' '),
        Some(_) => {
            return err(
                c.span,
                format!("the `{name}` fill character must be exactly one character"),
            );
        }
    };
    let s = c.this_str();
    let len = s.chars().count();
    if len >= w {
        return text(s.to_string());
    }
    let pad = w - len;
    check_text(c.span, s.len() + pad * fill.len_utf8(), c.limits)?;
    let (left, right) = match align {
        Align::Left => (0, pad),
        Align::Right => (pad, 0),
        // Python puts the odd pad character on the left when the width is odd.
        Align::Center => {
            let left = pad / 2 + (pad & w & 1);
            (left, pad - left)
        }
    };
    let mut out = String::with_capacity(s.len() + pad * fill.len_utf8());
    out.extend(std::iter::repeat_n(fill, left));
    out.push_str(s);
    out.extend(std::iter::repeat_n(fill, right));
    text(out)
}

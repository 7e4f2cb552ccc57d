//! The granted builtins: one table entry each (name, arity, keyword arguments, code).
//! Every other builtin is an undefined name.

use super::coerce::{dict_set, int_like, iter_items, num, order};
use super::fail::{R, err, err_hint, too_big};
use super::limits::SHORT_HINT;
use super::table::{Call, Func, Obj, val};
use crate::value::Value;
use std::cmp::Ordering;

const ANY: usize = usize::MAX;

pub(crate) static BUILTINS: &[Func] = &[
    Func {
        name: "str",
        min: 0,
        max: 1,
        kwargs: &[],
        run: |c| val(Value::Str(c.arg(0).map(Value::to_text).unwrap_or_default())),
    },
    Func {
        name: "int",
        min: 0,
        max: 2,
        kwargs: &[],
        run: int,
    },
    Func {
        name: "float",
        min: 0,
        max: 1,
        kwargs: &[],
        run: float,
    },
    Func {
        name: "bool",
        min: 0,
        max: 1,
        kwargs: &[],
        run: |c| val(Value::Bool(c.arg(0).is_some_and(Value::truthy))),
    },
    Func {
        name: "len",
        min: 1,
        max: 1,
        kwargs: &[],
        run: len,
    },
    Func {
        name: "min",
        min: 1,
        max: ANY,
        kwargs: &[],
        run: |c| extreme(c, "min", Ordering::Less),
    },
    Func {
        name: "max",
        min: 1,
        max: ANY,
        kwargs: &[],
        run: |c| extreme(c, "max", Ordering::Greater),
    },
    Func {
        name: "range",
        min: 1,
        max: 3,
        kwargs: &[],
        run: range,
    },
    Func {
        name: "list",
        min: 0,
        max: 1,
        kwargs: &[],
        run: |c| {
            let span = c.span;
            val(Value::List(match c.args.into_iter().next() {
                Some(v) => iter_items(v, span, c.limits)?,
                None => vec![],
            }))
        },
    },
    Func {
        name: "tuple",
        min: 0,
        max: 1,
        kwargs: &[],
        run: |c| {
            let span = c.span;
            val(Value::Tuple(match c.args.into_iter().next() {
                Some(v) => iter_items(v, span, c.limits)?,
                None => vec![],
            }))
        },
    },
    Func {
        name: "dict",
        min: 0,
        max: 1,
        kwargs: &["*"],
        run: dict,
    },
    Func {
        name: "sorted",
        min: 1,
        max: 1,
        kwargs: &["reverse"],
        run: sorted,
    },
    Func {
        name: "abs",
        min: 1,
        max: 1,
        kwargs: &[],
        run: abs,
    },
    Func {
        name: "repr",
        min: 1,
        max: 1,
        kwargs: &[],
        run: |c| val(Value::Str(c.arg(0).map(Value::repr).unwrap_or_default())),
    },
];

/// `int(x)`, `int(text, base)`; also `string.atoi`.
pub(crate) fn int(c: Call<'_>) -> R<Obj> {
    let span = c.span;
    let base = match c.arg(1) {
        Some(Value::Int(b)) if *b == 0 || (2..=36).contains(b) => Some(*b as u32),
        Some(_) => return err(span, "`int` base must be 0 or 2..36"),
        None => None,
    };
    let v = match c.args.into_iter().next() {
        None => Value::Int(0),
        Some(Value::Int(i)) if base.is_none() => Value::Int(i),
        Some(Value::Bool(b)) if base.is_none() => Value::Int(b as i64),
        Some(Value::Float(f)) if base.is_none() => {
            if f.is_finite() && f.abs() < 9.2e18 {
                Value::Int(f.trunc() as i64)
            } else {
                return Err(too_big(span));
            }
        }
        Some(Value::Str(s)) => {
            let t = s.trim().replace('_', "");
            let (neg, digits) = match t.strip_prefix('-') {
                Some(d) => (true, d.to_string()),
                None => (false, t.trim_start_matches('+').to_string()),
            };
            let (radix, digits) = match base {
                Some(0) | None if digits.starts_with("0x") || digits.starts_with("0X") => {
                    (16, digits[2..].to_string())
                }
                Some(0) if digits.starts_with("0o") || digits.starts_with("0O") => {
                    (8, digits[2..].to_string())
                }
                Some(0) if digits.starts_with("0b") || digits.starts_with("0B") => {
                    (2, digits[2..].to_string())
                }
                Some(16) => (
                    16,
                    digits
                        .trim_start_matches("0x")
                        .trim_start_matches("0X")
                        .to_string(),
                ),
                Some(b) if b != 0 => (b, digits),
                _ => (10, digits),
            };
            match i64::from_str_radix(&digits, radix) {
                Ok(v) => Value::Int(if neg { -v } else { v }),
                Err(_) => {
                    return err_hint(
                        span,
                        format!("invalid literal for int(): {}", Value::Str(s).repr()),
                        "the text must be a whole number such as '512' (give the base for hex: `int(x, 16)`)",
                    );
                }
            }
        }
        Some(v) => return err(span, format!("`int` cannot convert a {}", v.type_name())),
    };
    val(v)
}

fn float(c: Call<'_>) -> R<Obj> {
    val(match c.arg(0) {
        None => Value::Float(0.0),
        Some(v) => match num(v) {
            Some(f) => Value::Float(f),
            None => match v.as_str().and_then(|s| s.trim().parse::<f64>().ok()) {
                Some(f) => Value::Float(f),
                None => {
                    return err(c.span, format!("could not convert {} to float", v.repr()));
                }
            },
        },
    })
}

fn len(c: Call<'_>) -> R<Obj> {
    val(match c.arg(0) {
        Some(Value::Str(s)) => Value::Int(s.chars().count() as i64),
        Some(Value::List(v)) | Some(Value::Tuple(v)) => Value::Int(v.len() as i64),
        Some(Value::Dict(d)) => Value::Int(d.len() as i64),
        Some(v) => return err(c.span, format!("a {} has no len()", v.type_name())),
        None => Value::None,
    })
}

fn abs(c: Call<'_>) -> R<Obj> {
    val(match c.arg(0) {
        Some(Value::Int(i)) => Value::Int(i.checked_abs().ok_or_else(|| too_big(c.span))?),
        Some(Value::Float(f)) => Value::Float(f.abs()),
        Some(v) => return err(c.span, format!("bad operand for abs(): {}", v.type_name())),
        None => Value::None,
    })
}

/// `min` / `max`: of one iterable or of several arguments.
fn extreme(c: Call<'_>, name: &str, wanted: Ordering) -> R<Obj> {
    let span = c.span;
    let items = if c.args.len() == 1 {
        iter_items(
            c.args.into_iter().next().unwrap_or(Value::None),
            span,
            c.limits,
        )?
    } else {
        c.args
    };
    let mut best: Option<Value> = None;
    for v in items {
        best = Some(match best {
            None => v,
            Some(b) => {
                let o = order(&v, &b)
                    .ok_or(())
                    .or_else(|_| err(span, "cannot compare these values"))?;
                if o == wanted { v } else { b }
            }
        });
    }
    match best {
        Some(b) => val(b),
        None => err(span, format!("`{name}` of an empty sequence")),
    }
}

fn range(c: Call<'_>) -> R<Obj> {
    let span = c.span;
    let ints: Vec<i64> = c
        .args
        .iter()
        .map(|v| int_like(v).ok_or(()))
        .collect::<Result<_, _>>()
        .or_else(|_| err(span, "`range` takes integers"))?;
    let (start, stop, step) = match ints.as_slice() {
        [stop] => (0, *stop, 1),
        [a, b] => (*a, *b, 1),
        [a, b, c] => (*a, *b, *c),
        _ => (0, 0, 1),
    };
    if step == 0 {
        return err(span, "`range` step cannot be zero");
    }
    // In i128: `range(-2**63, 2**63-1)` must not overflow while being counted.
    let (start_w, stop_w, step_w) = (start as i128, stop as i128, step as i128);
    let count = if step > 0 {
        (stop_w - start_w + step_w - 1).div_euclid(step_w)
    } else {
        (start_w - stop_w - step_w - 1).div_euclid(-step_w)
    }
    .max(0);
    if count > c.limits.max_items as i128 {
        return err_hint(
            span,
            format!("range longer than {} items", c.limits.max_items),
            SHORT_HINT,
        );
    }
    val(Value::List(
        (0..count as i64)
            .map(|i| Value::Int(start + i * step))
            .collect(),
    ))
}

fn sorted(c: Call<'_>) -> R<Obj> {
    let span = c.span;
    let reverse = c.kwargs.iter().any(|(k, v)| k == "reverse" && v.truthy());
    let mut items = iter_items(
        c.args.into_iter().next().unwrap_or(Value::None),
        span,
        c.limits,
    )?;
    let mut bad = false;
    items.sort_by(|a, b| {
        order(a, b).unwrap_or_else(|| {
            bad = true;
            Ordering::Equal
        })
    });
    if bad {
        return err(span, "cannot sort values of different types");
    }
    if reverse {
        items.reverse();
    }
    val(Value::List(items))
}

fn dict(c: Call<'_>) -> R<Obj> {
    let span = c.span;
    let mut out = Vec::new();
    if let Some(v) = c.args.into_iter().next() {
        match v {
            Value::Dict(d) => out = d,
            Value::List(items) | Value::Tuple(items) => {
                for it in items {
                    match it {
                        Value::List(p) | Value::Tuple(p) if p.len() == 2 => {
                            let mut p = p.into_iter();
                            let (k, v) = (
                                p.next().unwrap_or(Value::None),
                                p.next().unwrap_or(Value::None),
                            );
                            dict_set(&mut out, k, v);
                        }
                        _ => return err(span, "`dict` needs pairs"),
                    }
                }
            }
            other => {
                return err(
                    span,
                    format!("`dict` cannot convert a {}", other.type_name()),
                );
            }
        }
    }
    for (k, v) in c.kwargs {
        dict_set(&mut out, Value::Str(k), v);
    }
    val(Value::Dict(out))
}

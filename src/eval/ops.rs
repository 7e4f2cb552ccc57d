//! The operators: arithmetic on 64-bit integers and floats, joining and repeating strings and
//! sequences (bounded before anything is built), `%` formatting (in `format`), comparisons,
//! indexing and slicing.

use super::coerce::{int_like, num, order, values_equal};
use super::fail::{R, err, err_hint, too_big};
use super::format;
use super::limits::{Limits, Size, check_text, repeat_count};
use crate::diagnostic::Span;
use crate::syntax::ast::{BinOp, CmpOp};
use crate::value::Value;

const DIV_ZERO_HINT: &str = "the divisor is 0 here; check the values it is computed from";

/// `v` repeated `times` times (already bounded by the caller). An empty sequence stays empty
/// at once: `[] * 10**9` must not loop a billion times (found by the fuzzer).
fn repeat(v: &[Value], times: usize) -> Vec<Value> {
    if v.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(v.len() * times);
    for _ in 0..times {
        out.extend_from_slice(v);
    }
    out
}

pub(crate) fn binop_values(op: BinOp, l: Value, r: Value, span: Span, limits: &Limits) -> R<Value> {
    use Value::*;
    if let (Some(a), Some(b)) = (int_like(&l), int_like(&r)) {
        let out = match op {
            BinOp::Add => a.checked_add(b),
            BinOp::Sub => a.checked_sub(b),
            BinOp::Mul => a.checked_mul(b),
            BinOp::Div => {
                if b == 0 {
                    return err_hint(span, "division by zero", DIV_ZERO_HINT);
                }
                return Ok(Float(a as f64 / b as f64));
            }
            BinOp::FloorDiv | BinOp::Mod => {
                if b == 0 {
                    return err_hint(span, "division by zero", DIV_ZERO_HINT);
                }
                let q = a.checked_div(b).ok_or_else(|| too_big(span))?;
                let m = a.checked_rem(b).ok_or_else(|| too_big(span))?;
                let (q, m) = if m != 0 && ((m < 0) != (b < 0)) {
                    (q - 1, m + b)
                } else {
                    (q, m)
                };
                Some(if op == BinOp::FloorDiv { q } else { m })
            }
            BinOp::Pow => {
                if b < 0 {
                    return Ok(Float((a as f64).powf(b as f64)));
                }
                u32::try_from(b).ok().and_then(|e| a.checked_pow(e))
            }
            BinOp::LShift => {
                if b < 0 {
                    return err(span, "negative shift count");
                }
                u32::try_from(b)
                    .ok()
                    .filter(|s| *s < 63)
                    .and_then(|s| a.checked_mul(1i64 << s))
            }
            BinOp::RShift => {
                if b < 0 {
                    return err(span, "negative shift count");
                }
                Some(if b >= 64 {
                    if a < 0 { -1 } else { 0 }
                } else {
                    a >> b
                })
            }
            BinOp::BitOr => Some(a | b),
            BinOp::BitXor => Some(a ^ b),
            BinOp::BitAnd => Some(a & b),
        };
        return out.map(Int).ok_or_else(|| too_big(span));
    }
    if let (Some(a), Some(b)) = (num(&l), num(&r)) {
        let out = match op {
            BinOp::Add => a + b,
            BinOp::Sub => a - b,
            BinOp::Mul => a * b,
            BinOp::Div | BinOp::FloorDiv | BinOp::Mod if b == 0.0 => {
                return err_hint(span, "division by zero", DIV_ZERO_HINT);
            }
            BinOp::Div => a / b,
            BinOp::FloorDiv => (a / b).floor(),
            BinOp::Mod => a - b * (a / b).floor(),
            BinOp::Pow => a.powf(b),
            _ => {
                return err(
                    span,
                    format!("unsupported operand types for `{}`: float", op.symbol()),
                );
            }
        };
        if !out.is_finite() {
            return err(span, "float result out of range");
        }
        return Ok(Float(out));
    }
    match (op, l, r) {
        (BinOp::Add, Str(a), Str(b)) => {
            check_text(span, a.len() + b.len(), limits)?;
            Ok(Str(a + &b))
        }
        (BinOp::Add, List(mut a), List(b)) => {
            a.extend(b);
            Ok(List(a))
        }
        (BinOp::Add, Tuple(mut a), Tuple(b)) => {
            a.extend(b);
            Ok(Tuple(a))
        }
        (BinOp::Mul, Str(s), n) | (BinOp::Mul, n, Str(s)) if int_like(&n).is_some() => {
            let unit = Size {
                text: s.len(),
                items: 0,
            };
            let times = repeat_count(span, unit, int_like(&n).unwrap_or(0), limits)?;
            Ok(Str(s.repeat(times)))
        }
        (BinOp::Mul, List(v), n) | (BinOp::Mul, n, List(v)) if int_like(&n).is_some() => {
            let times = repeat_count(
                span,
                Size::of_items(&v, limits),
                int_like(&n).unwrap_or(0),
                limits,
            )?;
            Ok(List(repeat(&v, times)))
        }
        (BinOp::Mul, Tuple(v), n) | (BinOp::Mul, n, Tuple(v)) if int_like(&n).is_some() => {
            let times = repeat_count(
                span,
                Size::of_items(&v, limits),
                int_like(&n).unwrap_or(0),
                limits,
            )?;
            Ok(Tuple(repeat(&v, times)))
        }
        (BinOp::Mod, Str(fmt), args) => format::percent(&fmt, &args, span, limits),
        (op, l, r) => err_hint(
            span,
            format!(
                "unsupported operand types for `{}`: `{}` and `{}`",
                op.symbol(),
                l.type_name(),
                r.type_name()
            ),
            "convert first: `str(x)` to join with text, `int(x)` for arithmetic",
        ),
    }
}

pub(crate) fn compare(op: CmpOp, l: &Value, r: &Value, span: Span) -> R<bool> {
    use std::cmp::Ordering;
    let eq = values_equal(l, r);
    Ok(match op {
        CmpOp::Eq | CmpOp::Is => eq,
        CmpOp::NotEq | CmpOp::IsNot => !eq,
        CmpOp::In | CmpOp::NotIn => {
            let found = match r {
                Value::Str(h) => match l {
                    Value::Str(n) => h.contains(n.as_str()),
                    _ => return err(span, "`in <string>` needs a string on the left"),
                },
                Value::List(v) | Value::Tuple(v) => v.iter().any(|x| values_equal(x, l)),
                Value::Dict(d) => d.iter().any(|(k, _)| values_equal(k, l)),
                other => {
                    return err(
                        span,
                        format!(
                            "`in` needs a string, list, tuple or dict, not `{}`",
                            other.type_name()
                        ),
                    );
                }
            };
            if op == CmpOp::In { found } else { !found }
        }
        _ => {
            let ord = order(l, r).ok_or(()).or_else(|_| {
                err_hint(
                    span,
                    format!("cannot order `{}` and `{}`", l.type_name(), r.type_name()),
                    "compare values of the same type, converting with `int(x)` or `str(x)` first",
                )
            })?;
            match op {
                CmpOp::Lt => ord == Ordering::Less,
                CmpOp::LtE => ord != Ordering::Greater,
                CmpOp::Gt => ord == Ordering::Greater,
                _ => ord != Ordering::Less,
            }
        }
    })
}

fn index_hint(len: usize) -> String {
    match len {
        0 => "it is empty".into(),
        n => format!(
            "valid indices are 0 to {} (or -{n} to -1 from the end)",
            n - 1
        ),
    }
}

fn norm_index(i: i64, len: usize) -> Option<usize> {
    let len = len as i64;
    let i = if i < 0 { i + len } else { i };
    (0..len).contains(&i).then_some(i as usize)
}

pub(crate) fn subscript(b: &Value, i: &Value, span: Span) -> R<Value> {
    match b {
        Value::List(v) | Value::Tuple(v) => {
            let idx = int_like(i)
                .ok_or(())
                .or_else(|_| err(span, "list indices must be integers"))?;
            norm_index(idx, v.len())
                .map(|n| v[n].clone())
                .ok_or(())
                .or_else(|_| {
                    err_hint(
                        span,
                        format!("index {idx} out of range (length {})", v.len()),
                        index_hint(v.len()),
                    )
                })
        }
        Value::Str(s) => {
            let idx = int_like(i)
                .ok_or(())
                .or_else(|_| err(span, "string indices must be integers"))?;
            let len = s.chars().count();
            norm_index(idx, len)
                .and_then(|n| s.chars().nth(n))
                .map(|c| Value::Str(c.to_string()))
                .ok_or(())
                .or_else(|_| {
                    err_hint(
                        span,
                        format!("index {idx} out of range (length {len})"),
                        index_hint(len),
                    )
                })
        }
        Value::Dict(d) => d
            .iter()
            .find(|(k, _)| values_equal(k, i))
            .map(|(_, v)| v.clone())
            .ok_or(())
            .or_else(|_| {
                err_hint(
                    span,
                    format!("key {} not found", i.repr()),
                    "use `.get(key, default)`",
                )
            }),
        other => err(span, format!("a {} cannot be indexed", other.type_name())),
    }
}

pub(crate) fn slice(
    b: &Value,
    lo: Option<i64>,
    hi: Option<i64>,
    st: Option<i64>,
    span: Span,
) -> R<Value> {
    let st = match st {
        None | Some(i64::MIN) => 1,
        Some(0) => return err_hint(span, "slice step cannot be zero", "use 1, or -1 to reverse"),
        Some(s) => s,
    };
    let pick = |len: usize| -> Vec<usize> {
        let len_i = len as i64;
        let clamp = |x: Option<i64>, default: i64| -> i64 {
            match x {
                None | Some(i64::MIN) => default,
                Some(v) => {
                    let v = if v < 0 { v + len_i } else { v };
                    if st > 0 {
                        v.clamp(0, len_i)
                    } else {
                        v.clamp(-1, len_i - 1)
                    }
                }
            }
        };
        let (start, stop) = if st > 0 {
            (clamp(lo, 0), clamp(hi, len_i))
        } else {
            (clamp(lo, len_i - 1), clamp(hi, -1))
        };
        let mut out = Vec::new();
        let mut i = start;
        while (st > 0 && i < stop) || (st < 0 && i > stop) {
            out.push(i as usize);
            i += st;
        }
        out
    };
    Ok(match b {
        Value::List(v) => Value::List(pick(v.len()).into_iter().map(|i| v[i].clone()).collect()),
        Value::Tuple(v) => Value::Tuple(pick(v.len()).into_iter().map(|i| v[i].clone()).collect()),
        Value::Str(s) => {
            let chars: Vec<char> = s.chars().collect();
            Value::Str(pick(chars.len()).into_iter().map(|i| chars[i]).collect())
        }
        other => return err(span, format!("a {} cannot be sliced", other.type_name())),
    })
}

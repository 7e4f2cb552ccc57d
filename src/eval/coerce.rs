//! How values are read as numbers, strings and sequences, and compared: the small rules
//! every builtin, method and operator shares.

use super::fail::{R, err, err_hint};
use super::limits::{Limits, SHORT_HINT};
use crate::diagnostic::Span;
use crate::value::Value;
use std::cmp::Ordering;

pub(crate) fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        Value::Bool(b) => Some(*b as i64 as f64),
        _ => None,
    }
}

pub(crate) fn int_like(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::Bool(b) => Some(*b as i64),
        _ => None,
    }
}

pub(crate) fn str_arg(v: Option<&Value>, span: Span, what: &str) -> R<String> {
    match v {
        Some(Value::Str(s)) => Ok(s.clone()),
        Some(other) => err(
            span,
            format!("{what} must be a string, not {}", other.type_name()),
        ),
        None => err(span, format!("{what} is missing")),
    }
}

/// The items of a value iterated over; a string's characters are counted against the item
/// bound before a value is made for each.
pub(crate) fn iter_items(v: Value, span: Span, limits: &Limits) -> R<Vec<Value>> {
    match v {
        Value::List(v) | Value::Tuple(v) => Ok(v),
        Value::Str(s) => {
            if s.chars().count() > limits.max_items {
                return err_hint(
                    span,
                    format!("list longer than {} items", limits.max_items),
                    SHORT_HINT,
                );
            }
            Ok(s.chars().map(|c| Value::Str(c.to_string())).collect())
        }
        Value::Dict(d) => Ok(d.into_iter().map(|(k, _)| k).collect()),
        other => err(span, format!("a {} is not iterable", other.type_name())),
    }
}

pub(crate) fn dict_set(d: &mut Vec<(Value, Value)>, k: Value, v: Value) {
    match d.iter_mut().find(|(x, _)| *x == k) {
        Some(slot) => slot.1 = v,
        None => d.push((k, v)),
    }
}

pub(crate) fn values_equal(a: &Value, b: &Value) -> bool {
    match (num(a), num(b)) {
        (Some(x), Some(y)) => x == y,
        _ => match (a, b) {
            (Value::List(x), Value::List(y)) | (Value::Tuple(x), Value::Tuple(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(p, q)| values_equal(p, q))
            }
            _ => a == b,
        },
    }
}

pub(crate) fn order(a: &Value, b: &Value) -> Option<Ordering> {
    if let (Some(x), Some(y)) = (int_like(a), int_like(b)) {
        return Some(x.cmp(&y));
    }
    if let (Some(x), Some(y)) = (num(a), num(b)) {
        return x.partial_cmp(&y);
    }
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => Some(x.cmp(y)),
        (Value::List(x), Value::List(y)) | (Value::Tuple(x), Value::Tuple(y)) => {
            for (p, q) in x.iter().zip(y) {
                if !values_equal(p, q) {
                    return order(p, q);
                }
            }
            Some(x.len().cmp(&y.len()))
        }
        _ => None,
    }
}

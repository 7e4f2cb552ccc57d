//! The granted methods of lists, tuples, dicts and `re` match objects: one table entry
//! each. None changes a value in place.

use super::coerce::{int_like, values_equal};
use super::fail::err;
use super::table::{Call, Func, val};
use crate::value::Value;

/// Methods of lists and tuples.
pub(crate) static LIST_METHODS: &[Func] = &[
    Func {
        name: "index",
        min: 1,
        max: 1,
        kwargs: &[],
        run: |c| {
            let x = c.arg(0).cloned().unwrap_or(Value::None);
            match items(&c).iter().position(|y| values_equal(y, &x)) {
                Some(p) => val(Value::Int(p as i64)),
                None => err(c.span, "value not in list"),
            }
        },
    },
    Func {
        name: "count",
        min: 1,
        max: 1,
        kwargs: &[],
        run: |c| {
            let x = c.arg(0).cloned().unwrap_or(Value::None);
            val(Value::Int(
                items(&c).iter().filter(|y| values_equal(y, &x)).count() as i64,
            ))
        },
    },
];

/// Methods of dicts.
pub(crate) static DICT_METHODS: &[Func] = &[
    Func {
        name: "get",
        min: 1,
        max: 2,
        kwargs: &[],
        run: |c| {
            let k = c.arg(0).cloned().unwrap_or(Value::None);
            val(pairs(&c)
                .iter()
                .find(|(x, _)| values_equal(x, &k))
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| c.arg(1).cloned().unwrap_or(Value::None)))
        },
    },
    Func {
        name: "keys",
        min: 0,
        max: 0,
        kwargs: &[],
        run: |c| {
            val(Value::List(
                pairs(&c).iter().map(|(k, _)| k.clone()).collect(),
            ))
        },
    },
    Func {
        name: "values",
        min: 0,
        max: 0,
        kwargs: &[],
        run: |c| {
            val(Value::List(
                pairs(&c).iter().map(|(_, v)| v.clone()).collect(),
            ))
        },
    },
    Func {
        name: "items",
        min: 0,
        max: 0,
        kwargs: &[],
        run: |c| {
            val(Value::List(
                pairs(&c)
                    .iter()
                    .map(|(k, v)| Value::Tuple(vec![k.clone(), v.clone()]))
                    .collect(),
            ))
        },
    },
];

/// Methods of a `re` match; the receiver is the tuple of its groups, group 0 first.
pub(crate) static MATCH_METHODS: &[Func] = &[
    Func {
        name: "group",
        min: 0,
        max: 1,
        kwargs: &[],
        run: |c| {
            let n = match c.arg(0) {
                None => 0,
                Some(v) => match int_like(v) {
                    Some(i) if i >= 0 => i as usize,
                    _ => return err(c.span, "`group` takes a group number"),
                },
            };
            match items(&c).get(n) {
                Some(g) => val(g.clone()),
                None => err(c.span, format!("no group {n}")),
            }
        },
    },
    Func {
        name: "groups",
        min: 0,
        max: 0,
        kwargs: &[],
        run: |c| val(Value::Tuple(items(&c).iter().skip(1).cloned().collect())),
    },
];

fn items<'a>(c: &'a Call<'_>) -> &'a [Value] {
    match &c.this {
        Value::List(v) | Value::Tuple(v) => v,
        _ => &[],
    }
}

fn pairs<'a>(c: &'a Call<'_>) -> &'a [(Value, Value)] {
    match &c.this {
        Value::Dict(d) => d,
        _ => &[],
    }
}

/// A match's groups as the receiver of its methods.
pub(crate) fn match_groups(groups: &[Option<String>]) -> Value {
    Value::Tuple(
        groups
            .iter()
            .map(|g| g.clone().map(Value::Str).unwrap_or(Value::None))
            .collect(),
    )
}

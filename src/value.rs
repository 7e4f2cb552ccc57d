//! The values a config file can hold (spec §2.2): str, int, float, bool, None, list, tuple,
//! dict, nested. Their Python `repr`, `str`, the restricted literal form written for scripts,
//! and JSON.

use std::fmt::Write as _;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    /// Insertion-ordered, as in Python 3.7+.
    Dict(Vec<(Value, Value)>),
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "NoneType",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::List(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Dict(_) => "dict",
        }
    }

    pub fn truthy(&self) -> bool {
        match self {
            Value::None => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::List(v) | Value::Tuple(v) => !v.is_empty(),
            Value::Dict(d) => !d.is_empty(),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Python's `repr()`, the form used in image.conf / vm_conf.template and `xm` files.
    pub fn repr(&self) -> String {
        let mut out = String::new();
        self.write_repr(&mut out, false);
        out
    }

    /// The restricted literal form of `docs/script-contract.md`: like `repr`, but strings are
    /// always single-quoted and the only escapes are `\\`, `\x27`, `\n`, `\t`, `\r` and
    /// `\xHH`, so bash's `printf '%b'` decodes them exactly.
    pub fn script_literal(&self) -> String {
        let mut out = String::new();
        self.write_repr(&mut out, true);
        out
    }

    fn write_repr(&self, out: &mut String, restricted: bool) {
        match self {
            Value::None => out.push_str("None"),
            Value::Bool(true) => out.push_str("True"),
            Value::Bool(false) => out.push_str("False"),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Float(f) => out.push_str(&float_repr(*f)),
            Value::Str(s) => {
                if restricted {
                    restricted_quote(s, out)
                } else {
                    python_quote(s, out)
                }
            }
            Value::List(items) => {
                out.push('[');
                write_items(items, out, restricted);
                out.push(']');
            }
            Value::Tuple(items) => {
                out.push('(');
                write_items(items, out, restricted);
                if items.len() == 1 {
                    out.push(',');
                }
                out.push(')');
            }
            Value::Dict(pairs) => {
                out.push('{');
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    k.write_repr(out, restricted);
                    out.push_str(": ");
                    v.write_repr(out, restricted);
                }
                out.push('}');
            }
        }
    }

    /// The value as a Python expression that reads back as the same value, for writing into
    /// config files: `repr`, except that infinite and NaN floats, whose repr (`inf`, `nan`)
    /// is no expression, are written `float('inf')`, `float('-inf')` and `float('nan')`.
    pub fn literal(&self) -> String {
        let items = |items: &[Value]| -> String {
            items
                .iter()
                .map(Value::literal)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Value::Float(f) if !f.is_finite() => format!("float('{}')", float_repr(*f)),
            Value::List(v) => format!("[{}]", items(v)),
            Value::Tuple(v) if v.len() == 1 => format!("({},)", items(v)),
            Value::Tuple(v) => format!("({})", items(v)),
            Value::Dict(pairs) => {
                let shown: Vec<String> = pairs
                    .iter()
                    .map(|(k, v)| format!("{}: {}", k.literal(), v.literal()))
                    .collect();
                format!("{{{}}}", shown.join(", "))
            }
            other => other.repr(),
        }
    }

    /// Python's `str()`: strings as themselves, everything else as its repr.
    pub fn to_text(&self) -> String {
        match self {
            Value::Str(s) => s.clone(),
            other => other.repr(),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::None => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(J::Number)
                .unwrap_or(J::Null),
            Value::Str(s) => J::String(s.clone()),
            Value::List(v) | Value::Tuple(v) => J::Array(v.iter().map(Value::to_json).collect()),
            Value::Dict(d) => {
                J::Object(d.iter().map(|(k, v)| (k.to_text(), v.to_json())).collect())
            }
        }
    }
}

fn write_items(items: &[Value], out: &mut String, restricted: bool) {
    for (i, v) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        v.write_repr(out, restricted);
    }
}

pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        "nan".into()
    } else if f.is_infinite() {
        if f > 0.0 { "inf".into() } else { "-inf".into() }
    } else if f == f.trunc() && f.abs() < 1e16 {
        format!("{f:.1}")
    } else if f.abs() >= 1e16 {
        // Python writes these with an exponent; without one they would read back as ints.
        format!("{f:e}")
    } else {
        format!("{f}")
    }
}

/// Python's own quoting: single quotes unless the text has a `'` and no `"`.
pub fn python_quote(s: &str, out: &mut String) {
    let q = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(q);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == q => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(q);
}

fn restricted_quote(s: &str, out: &mut String) {
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\x27"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('\'');
}

/// Quotes text for a bash `source`d file: `'...'` with `'\''` for single quotes.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

impl serde::Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_read_back_even_for_inf_and_nan() {
        let v = Value::List(vec![
            Value::Float(f64::INFINITY),
            Value::Tuple(vec![Value::Float(f64::NEG_INFINITY)]),
            Value::Dict(vec![(Value::Str("n".into()), Value::Float(f64::NAN))]),
            Value::Float(0.5),
            Value::Str("a'b".into()),
        ]);
        assert_eq!(
            v.literal(),
            "[float('inf'), (float('-inf'),), {'n': float('nan')}, 0.5, \"a'b\"]"
        );
        let plain = Value::List(vec![Value::Int(1), Value::Tuple(vec![]), Value::None]);
        assert_eq!(plain.literal(), plain.repr());
    }

    #[test]
    fn reprs_match_python() {
        let cases: Vec<(Value, &str)> = vec![
            (Value::Str("it's".into()), "\"it's\""),
            (Value::Str("a\\b\n".into()), "'a\\\\b\\n'"),
            (Value::Tuple(vec![Value::Int(1)]), "(1,)"),
            (Value::Float(2.0), "2.0"),
            (Value::Float(0.5), "0.5"),
            (Value::Float(1e20), "1e20"),
            (
                Value::List(vec![Value::Bool(true), Value::None]),
                "[True, None]",
            ),
            (
                Value::Dict(vec![(Value::Str("k".into()), Value::Int(-3))]),
                "{'k': -3}",
            ),
        ];
        for (v, want) in cases {
            assert_eq!(v.repr(), want);
        }
    }

    #[test]
    fn script_literal_escapes_only_what_printf_b_decodes() {
        let v = Value::Str("a'b\\c\n$(x)`y`\u{1}é".into());
        assert_eq!(v.script_literal(), "'a\\x27b\\\\c\\n$(x)`y`\\x01é'");
    }

    #[test]
    fn shell_quote_closes_and_reopens() {
        assert_eq!(shell_quote("it's $(x)"), "'it'\\''s $(x)'");
    }
}

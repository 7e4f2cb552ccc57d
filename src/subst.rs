//! `$NAME` substitution (spec §3.1): `$NAME`, `${NAME}`, `$$`, unknown names left exactly as
//! written, one pass, into the string items of lists, tuples and dicts recursively.

use crate::value::Value;
use std::collections::HashMap;

/// What a `$NAME` resolves to.
pub enum Var {
    Text(String),
    /// `AUTOGEN_MAC`: a fresh MAC address at every occurrence.
    FreshMac,
}

/// The variables visible to one substitution pass.
#[derive(Default)]
pub struct Vars {
    map: HashMap<String, Var>,
    /// Why a fresh MAC could not be made (no random bytes from the kernel): the reference
    /// stays as written and the caller turns this into an error (`Vars::failure`).
    failure: std::cell::RefCell<Option<String>>,
}

impl Vars {
    pub fn set(&mut self, name: &str, v: Var) {
        self.map.insert(name.to_string(), v);
    }
    pub fn set_text(&mut self, name: &str, v: impl Into<String>) {
        self.map.insert(name.to_string(), Var::Text(v.into()));
    }
    pub fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(String::as_str)
    }
    /// Why a substitution could not be completed, if it could not (see `failure`).
    pub fn failure(&self) -> Option<String> {
        self.failure.borrow().clone()
    }
    fn lookup(&self, name: &str) -> Option<String> {
        match self.map.get(name)? {
            Var::Text(t) => Some(t.clone()),
            Var::FreshMac => match random_mac() {
                Ok(m) => Some(m),
                Err(e) => {
                    *self.failure.borrow_mut() = Some(format!("cannot make `${name}`: {e}"));
                    None
                }
            },
        }
    }
}

/// A reference left as written because no variable of that name exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unresolved {
    pub name: String,
}

/// Substitutes into one string; returns the result and the names left unresolved.
pub fn substitute_str(s: &str, vars: &Vars, unresolved: &mut Vec<Unresolved>) -> String {
    if !s.contains('$') {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        if b[i] != b'$' {
            i += 1;
            continue;
        }
        out.push_str(&s[copied..i]);
        let next = b.get(i + 1).copied();
        if next == Some(b'$') {
            out.push('$');
            i += 2;
            copied = i;
            continue;
        }
        let (name, end) = if next == Some(b'{') {
            match s[i + 2..].find('}') {
                Some(close) if is_name(&s[i + 2..i + 2 + close]) => {
                    (&s[i + 2..i + 2 + close], i + 3 + close)
                }
                _ => ("", i + 1),
            }
        } else {
            let len = name_len(&b[i + 1..]);
            (&s[i + 1..i + 1 + len], i + 1 + len)
        };
        if name.is_empty() {
            out.push('$');
            i += 1;
            copied = i;
            continue;
        }
        match vars.lookup(name) {
            Some(v) => out.push_str(&v),
            None => {
                out.push_str(&s[i..end]);
                unresolved.push(Unresolved {
                    name: name.to_string(),
                });
            }
        }
        i = end;
        copied = i;
    }
    out.push_str(&s[copied..]);
    out
}

/// Substitutes into a value, recursively into containers.
pub fn substitute(v: &Value, vars: &Vars, unresolved: &mut Vec<Unresolved>) -> Value {
    match v {
        Value::Str(s) => Value::Str(substitute_str(s, vars, unresolved)),
        Value::List(items) => Value::List(
            items
                .iter()
                .map(|x| substitute(x, vars, unresolved))
                .collect(),
        ),
        Value::Tuple(items) => Value::Tuple(
            items
                .iter()
                .map(|x| substitute(x, vars, unresolved))
                .collect(),
        ),
        Value::Dict(pairs) => Value::Dict(
            pairs
                .iter()
                .map(|(k, x)| (k.clone(), substitute(x, vars, unresolved)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn name_len(b: &[u8]) -> usize {
    match b.first() {
        Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {
            1 + b[1..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
                .count()
        }
        _ => 0,
    }
}

pub fn is_name(s: &str) -> bool {
    !s.is_empty() && name_len(s.as_bytes()) == s.len()
}

/// A MAC in Xen's range: `00:16:3e:` and three random bytes from the kernel, the first
/// below 0x80; an error when the kernel gives none (never a guessable fallback).
pub fn random_mac() -> std::io::Result<String> {
    let mut b = [0u8; 3];
    crate::sys::fill_random(&mut b)?;
    Ok(format!(
        "00:16:3e:{:02x}:{:02x}:{:02x}",
        b[0] & 0x7f,
        b[1],
        b[2]
    ))
}

/// Does an unresolved name look like a variable someone meant to set? All capitals (`$FOO`,
/// `$VM_DISK_DIR`), or a near miss of a known name. A crypt hash's `$XmvqcFN` does not.
pub fn looks_like_variable<'a>(
    name: &str,
    known: impl Iterator<Item = &'a str>,
) -> Option<Option<String>> {
    let close = closest(name, known);
    let caps = name.len() >= 2
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        && name.chars().any(|c| c.is_ascii_uppercase());
    if caps || close.is_some() {
        Some(close)
    } else {
        None
    }
}

/// The known name nearest to `name`, if it is close enough to be a typo.
pub fn closest<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> Option<String> {
    let mut best: Option<(usize, &str)> = None;
    for k in known {
        if k == name {
            continue;
        }
        let d = distance(&name.to_ascii_lowercase(), &k.to_ascii_lowercase());
        let limit = if k.len() <= 4 {
            1
        } else if k.len() <= 8 {
            2
        } else {
            3
        };
        if d <= limit && best.is_none_or(|(bd, bk)| d < bd || (d == bd && k < bk)) {
            best = Some((d, k));
        }
    }
    best.map(|(_, k)| k.to_string())
}

fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        let mut v = Vars::default();
        v.set_text("VM_NAME", "Joe_Desktop");
        v.set_text("VM_DISKS_DIR", "/srv/disks");
        v.set_text("LOOP", "$VM_NAME");
        v.set("AUTOGEN_MAC", Var::FreshMac);
        v
    }

    #[test]
    fn table() {
        let cases = [
            (
                "file:$VM_DISKS_DIR/$VM_NAME.disk.xm,hda,w",
                "file:/srv/disks/Joe_Desktop.disk.xm,hda,w",
            ),
            ("${VM_NAME}_x", "Joe_Desktop_x"),
            ("$$VM_NAME", "$VM_NAME"),
            ("cost: 5$", "cost: 5$"),
            ("$UNKNOWN/x", "$UNKNOWN/x"),
            ("${not closed", "${not closed"),
            ("$LOOP", "$VM_NAME"),
            (
                "$1$9qAFryp3$XmvqcFN/CJG4AC7jgyVE8",
                "$1$9qAFryp3$XmvqcFN/CJG4AC7jgyVE8",
            ),
        ];
        for (input, want) in cases {
            let mut u = vec![];
            assert_eq!(substitute_str(input, &vars(), &mut u), want, "{input}");
        }
    }

    #[test]
    fn crypt_hash_raises_no_warning() {
        let mut u = vec![];
        substitute_str("$1$9qAFryp3$XmvqcFN/CJG4AC7jgyVE8", &vars(), &mut u);
        let v = vars();
        let flagged: Vec<_> = u
            .iter()
            .filter(|n| looks_like_variable(&n.name, v.names()).is_some())
            .collect();
        assert!(flagged.is_empty(), "{flagged:?}");
    }

    #[test]
    fn typo_gets_did_you_mean() {
        let v = vars();
        assert_eq!(
            looks_like_variable("VM_DISK_DIR", v.names()),
            Some(Some("VM_DISKS_DIR".into()))
        );
        assert_eq!(looks_like_variable("FOO", v.names()), Some(None));
    }

    #[test]
    fn autogen_mac_is_fresh_and_in_range() {
        let mut u = vec![];
        let s = substitute_str("$AUTOGEN_MAC $AUTOGEN_MAC", &vars(), &mut u);
        let (a, b) = s.split_once(' ').unwrap();
        assert_ne!(a, b);
        for m in [a, b] {
            assert!(m.starts_with("00:16:3e:"));
            let first = u8::from_str_radix(&m[9..11], 16).unwrap();
            assert!(first < 0x80);
        }
    }

    #[test]
    fn lists_recursively() {
        let v = Value::List(vec![
            Value::Str("$VM_NAME".into()),
            Value::Tuple(vec![Value::Str("${VM_NAME}".into()), Value::Int(3)]),
        ]);
        let mut u = vec![];
        assert_eq!(
            substitute(&v, &vars(), &mut u).repr(),
            "['Joe_Desktop', ('Joe_Desktop', 3)]"
        );
    }
}

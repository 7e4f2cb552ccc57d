//! Property tests of the config language through the library API: whatever bytes a config
//! file holds, reading, parsing, evaluating and substituting it never panics and finishes
//! quickly. Random bytes, soups of Python tokens and random nestings of expressions.
// A test crate has no public API: its helpers are `pub` for its own modules.
#![allow(unreachable_pub)]

use convirt::diagnostic::SourceFile;
use convirt::eval::{self, Limits};
use convirt::host::Host;
use convirt::subst::{self, Var, Vars};
use convirt::syntax;
use proptest::prelude::*;
use std::path::Path;
use std::time::{Duration, Instant};

/// A debug build on a shared machine: generous, but far below a hang.
const BUDGET: Duration = Duration::from_secs(3);

fn host() -> Host {
    Host {
        sysname: "Linux".into(),
        nodename: "xen1".into(),
        release: "6.1.0".into(),
        version: "#1 SMP".into(),
        machine: "x86_64".into(),
    }
}

fn vars() -> Vars {
    let mut v = Vars::default();
    v.set_text("VM_NAME", "web1");
    v.set_text("VM_DISKS_DIR", "/srv/xen");
    v.set_text("LOOP", "$VM_NAME");
    v.set("AUTOGEN_MAC", Var::FreshMac);
    v
}

/// The whole pipeline on one file; reports how many options came out (or that it failed).
fn load(bytes: Vec<u8>) -> Option<usize> {
    let start = Instant::now();
    let file = SourceFile::from_bytes(Path::new("image.conf"), bytes).ok()?;
    let result = match syntax::parse(&file) {
        Err(d) => {
            assert!(!d.is_empty(), "a failed parse reports something");
            // Rendering touches every span: it must not panic either.
            let _ = d.render();
            None
        }
        Ok(module) => {
            let (values, diags) = eval::evaluate(&file, &module, &host(), Limits::default());
            let _ = diags.render();
            let vars = vars();
            for b in &values.bindings {
                let mut unresolved = Vec::new();
                let _ = subst::substitute(&b.value, &vars, &mut unresolved);
                let _ = b.value.repr();
            }
            Some(values.bindings.len())
        }
    };
    assert!(start.elapsed() < BUDGET, "took {:?}", start.elapsed());
    result
}

const TOKENS: &[&str] = &[
    "x",
    "memory",
    "disk",
    "os",
    "re",
    "sys",
    "string",
    "path",
    "uname",
    "join",
    "search",
    "=",
    "==",
    "+=",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    ".",
    ";",
    "+",
    "-",
    "*",
    "**",
    "/",
    "//",
    "%",
    "<<",
    ">>",
    "&",
    "|",
    "^",
    "~",
    "<",
    ">",
    "<>",
    "!=",
    "not",
    "and",
    "or",
    "in",
    "is",
    "if",
    "elif",
    "else",
    "for",
    "while",
    "def",
    "class",
    "lambda",
    "import",
    "from",
    "as",
    "pass",
    "return",
    "yield",
    "print",
    "exec",
    "eval",
    "open",
    "__import__",
    "__class__",
    "None",
    "True",
    "False",
    "0",
    "1",
    "9",
    "0755",
    "0x1f",
    "1e308",
    "10**10",
    "9**9**9",
    "'a'",
    "\"b\"",
    "'%s'",
    "'%d'",
    "'%(k)s'",
    "'$VM_NAME'",
    "'${VM_DISKS_DIR}'",
    "'$$'",
    "'$AUTOGEN_MAC'",
    "'''",
    "\"\"\"",
    "'",
    "\"",
    "`",
    "\\",
    "#",
    "$",
    "@",
    ":=",
    "range",
    "len",
    "str",
    "int",
    "sorted",
    "dict",
    "list",
    "f'x'",
    "b'x'",
    "1j",
    "...",
    "\n",
    "\n",
    "\n",
    "    ",
    "  ",
    "\t",
    "\r\n",
    "é",
    "\u{0}",
];

fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..80).prop_map(|toks| {
        let mut s = String::new();
        for t in toks {
            s.push_str(t);
            if !t.chars().all(char::is_whitespace) {
                s.push(' ');
            }
        }
        s
    })
}

/// Random well-bracketed expressions, nested up to a few levels deep.
fn expression() -> impl Strategy<Value = String> {
    let leaf = prop::sample::select(
        &[
            "1",
            "0",
            "-3",
            "2.5",
            "'a'",
            "'%s-%d'",
            "'$VM_NAME'",
            "None",
            "True",
            "x",
            "[]",
            "()",
            "{}",
            "os.uname()",
            "os.uname()[4]",
            "'abc'[::-1]",
            "range(3)",
            "10**6",
        ][..],
    )
    .prop_map(String::from);
    leaf.prop_recursive(6, 64, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("({},)", v.join(", "))),
            (inner.clone(), inner.clone()).prop_map(|(k, v)| format!("{{{k}: {v}}}")),
            (
                inner.clone(),
                prop::sample::select(
                    &[
                        "+", "-", "*", "/", "//", "%", "**", "<", "==", "in", "and", "or"
                    ][..]
                ),
                inner.clone()
            )
                .prop_map(|(a, op, b)| format!("({a} {op} {b})")),
            (inner.clone(), inner.clone(), inner.clone())
                .prop_map(|(a, b, c)| format!("({a} if {b} else {c})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a}[{b}]")),
            (
                prop::sample::select(
                    &[
                        "str", "int", "len", "sorted", "list", "tuple", "max", "repr"
                    ][..]
                ),
                inner.clone()
            )
                .prop_map(|(f, a)| format!("{f}({a})")),
            inner.clone().prop_map(|a| format!("-({a})")),
            inner.prop_map(|a| format!("not {a}")),
        ]
    })
}

fn nesting() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(
            prop::sample::select(&["(", "[", "{", "-", "not ", "str("][..]),
            0..300,
        ),
        any::<bool>(),
    )
        .prop_map(|(opens, closed)| {
            let mut s = String::from("x = ");
            for o in &opens {
                s.push_str(o);
            }
            s.push('1');
            if closed {
                for o in opens.iter().rev() {
                    s.push_str(match *o {
                        "(" | "str(" => ")",
                        "[" => "]",
                        "{" => "}",
                        _ => "",
                    });
                }
            }
            s.push('\n');
            s
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        load(bytes);
    }

    #[test]
    fn python_token_soups_never_panic(src in token_soup()) {
        load(src.into_bytes());
    }

    #[test]
    fn random_expressions_never_panic(
        exprs in prop::collection::vec(expression(), 1..6),
        header in any::<bool>(),
    ) {
        let mut src = String::new();
        if header {
            src.push_str("import os, re\nx = 2\n");
        }
        for (i, e) in exprs.iter().enumerate() {
            src.push_str(&format!("k{i} = {e}\n"));
        }
        load(src.into_bytes());
    }

    #[test]
    fn deep_nestings_never_panic(src in nesting()) {
        load(src.into_bytes());
    }

    /// A literal value always evaluates to itself: `k = <repr>` gives back that repr.
    #[test]
    fn literals_round_trip_through_repr(
        ints in prop::collection::vec(any::<i64>(), 0..4),
        texts in prop::collection::vec("[ -~é日]{0,12}", 0..4),
    ) {
        use convirt::value::Value;
        let v = Value::List(
            ints.into_iter()
                .map(Value::Int)
                .chain(texts.into_iter().map(Value::Str))
                .collect(),
        );
        let src = format!("k = {}\n", v.repr());
        let file = SourceFile::new("image.conf", src.clone());
        let module = syntax::parse(&file).map_err(|d| TestCaseError::fail(format!("{src}: {d}")))?;
        let (values, diags) = eval::evaluate(&file, &module, &host(), Limits::default());
        prop_assert!(diags.is_empty(), "{}: {}", src, diags);
        prop_assert_eq!(values.get("k"), Some(&v));
    }

    /// With no variables defined, substitution only turns `$$` into `$`: every other `$`,
    /// name and brace comes through exactly as written.
    #[test]
    fn substitution_without_variables_only_unescapes_dollars(
        s in prop::collection::vec(prop::sample::select(&["$", "$$", "{", "}", "A", "_", "1", "é", " ", "VM_NAME"][..]), 0..40)
    ) {
        let s: String = s.concat();
        let mut unresolved = Vec::new();
        let got = subst::substitute_str(&s, &Vars::default(), &mut unresolved);
        let mut want = String::new();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            want.push(c);
            if c == '$' && chars.peek() == Some(&'$') {
                chars.next();
            }
        }
        prop_assert_eq!(got, want);
    }

    /// `%` formatting with any flags, width and precision (small, at the string bound, past
    /// it, past 64 bits) never panics: it gives a string within the bound, at least as wide
    /// as asked, or one located error naming the width or precision.
    #[test]
    fn percent_formatting_is_bounded_for_any_width_and_precision(
        flags in "[-+ 0#]{0,3}",
        width in prop_oneof![
            Just(String::new()),
            (0u64..40).prop_map(|n| n.to_string()),
            (1_048_560u64..1_048_590).prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            Just("9".repeat(25)),
        ],
        prec in prop_oneof![
            Just(String::new()),
            (0u64..40).prop_map(|n| format!(".{n}")),
            (65_530u64..65_545).prop_map(|n| format!(".{n}")),
            (1_048_570u64..1_048_580).prop_map(|n| format!(".{n}")),
            Just(format!(".{}", "7".repeat(22))),
        ],
        conv in prop::sample::select(&['s', 'r', 'd', 'i', 'u', 'x', 'X', 'o', 'f', 'F', 'e', 'E', 'g', 'G'][..]),
        value in prop::sample::select(&["0", "-7", "255", "3.14159", "-1e300", "5e-324", "float('inf')", "float('nan')", "True", "'web'"][..]),
    ) {
        let src = format!("x = '%{flags}{width}{prec}{conv}' % {value}\n");
        let file = SourceFile::new("image.conf", src.clone());
        let module = syntax::parse(&file).map_err(|d| TestCaseError::fail(format!("{src}: {d}")))?;
        let (values, diags) = eval::evaluate(&file, &module, &host(), Limits::default());
        let max = Limits::default().max_str_len;
        match values.get("x") {
            Some(v) => {
                let text = v.as_str().unwrap_or_default();
                prop_assert!(text.len() <= max, "{}: {} bytes", src, text.len());
                let asked: usize = width.parse().unwrap_or(0);
                prop_assert!(text.chars().count() >= asked, "{}: narrower than asked", src);
                prop_assert!(diags.is_empty(), "{}: {}", src, diags);
            }
            None => {
                prop_assert_eq!(diags.0.len(), 1, "{}: {}", src, diags);
                let m = &diags.0[0].message;
                prop_assert!(
                    m.contains("is more than 1048576 characters")
                        || m.contains("string longer than 1048576 bytes")
                        || m.contains("is required, not")
                        || m.contains("cannot convert float"),
                    "{}: {}", src, m
                );
                prop_assert!(diags.0[0].location.is_some(), "{}: not located", src);
            }
        }
    }
}

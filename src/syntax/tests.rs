//! Table-driven tests of parsing, the dialect check and error recovery.

use super::*;

fn problems(src: &str) -> Vec<String> {
    let f = SourceFile::new("image.conf", src.to_string());
    match parse(&f) {
        Ok(_) => vec![],
        Err(d) => d.0.iter().map(|d| d.message.clone()).collect(),
    }
}

#[test]
fn real_image_block_parses() {
    let src = "import os, re\narch = os.uname()[4]\nif re.search('64', arch):\n    arch_libdir = 'lib64'\nelse:\n    arch_libdir = 'lib'\ndevice_model = '/usr/' + arch_libdir + '/xen/bin/qemu-dm'\n";
    assert!(problems(src).is_empty());
}

#[test]
fn forbidden_constructs_are_all_reported() {
    let cases: &[(&str, &str)] = &[
        ("def f():\n    pass\n", "`def` is not allowed in image.conf"),
        (
            "class A:\n    pass\n",
            "`class` is not allowed in image.conf",
        ),
        ("x = lambda: 1\n", "`lambda` is not allowed in image.conf"),
        (
            "import subprocess\n",
            "import of `subprocess` is not allowed in image.conf",
        ),
        (
            "x = open('/etc/passwd')\n",
            "`open` is not allowed in image.conf",
        ),
        (
            "x = __import__('os')\n",
            "`__import__` is not allowed in image.conf",
        ),
        (
            "for i in x:\n    pass\n",
            "a `for` loop is not allowed in image.conf",
        ),
        (
            "x = [i for i in y]\n",
            "a comprehension is not allowed in image.conf",
        ),
        (
            "x = ''.__class__\n",
            "the attribute `__class__` is not allowed in image.conf",
        ),
    ];
    for (src, want) in cases {
        let got = problems(src);
        assert_eq!(got.first().map(String::as_str), Some(*want), "for {src:?}");
    }
    let many = problems("def f():\n    pass\nx = 1\nclass B:\n    pass\n");
    assert_eq!(many.len(), 2);
}

#[test]
fn python2_leftovers_get_modern_hints() {
    let f = SourceFile::new(
        "image.conf",
        "mode = 0755\nprint \"hi\"\nok = 1\n".to_string(),
    );
    let d = parse(&f).unwrap_err();
    assert_eq!(d.0.len(), 2, "{d}");
    assert!(d.0[0].message.contains("octal"));
    assert!(d.0[0].hints[0].contains("0o755"));
    assert!(d.0[1].message.contains("print"));
}

fn located(src: &str) -> Vec<(String, usize, usize)> {
    let f = SourceFile::new("image.conf", src.to_string());
    match parse(&f) {
        Ok(_) => vec![],
        Err(d) => {
            d.0.iter()
                .map(|d| {
                    let l = d.location.as_ref().expect("every problem is located");
                    (d.message.clone(), l.line, l.col)
                })
                .collect()
        }
    }
}

#[test]
fn syntax_errors_point_at_their_cause_without_cascading() {
    let cases: &[(&str, &str, usize, usize)] = &[
        ("x = 'abc\ny = 1\n", "this string is never closed", 1, 5),
        ("x = '''abc\ny = 1\n", "this string is never closed", 1, 5),
        (
            "if a > 1\n    b = 2\n",
            "missing `:` at the end of the `if` line",
            1,
            1,
        ),
        ("x = 1\n  y = 2\n  z = 3\n", "unexpected indentation", 2, 3),
        (
            "a = 1\nif a:\n",
            "expected an indented block after this line",
            2,
            1,
        ),
        ("x = [1,\n  2\ny = 3\n", "`[` was never closed", 1, 5),
        (
            "x = {'a': 1,\n     'b' 2}\ny = 1\n",
            "syntax error: unexpected `2`",
            2,
            10,
        ),
        ("mode = 0755L\n", "Python 2 octal literal `0755L`", 1, 8),
        ("if a <> 'b':\n    c = 1\n", "Python 2 `<>` operator", 1, 6),
        ("x = `1`\n", "Python 2 backquotes", 1, 5),
        ("    print 'x'\n", "Python 2 `print` statement", 1, 5),
        (
            "exec 'x = 1'\n",
            "Python 2 `exec` statement: `exec` is not allowed in config files",
            1,
            1,
        ),
    ];
    for (src, want, line, col) in cases {
        let got = located(src);
        assert_eq!(got, vec![(want.to_string(), *line, *col)], "for {src:?}");
    }
}

#[test]
fn syntax_errors_and_dialect_violations_are_reported_together_in_file_order() {
    let got = located("import subprocess\nmode = 0755\nx = lambda: 1\nprint 'a'\n");
    let messages: Vec<&str> = got.iter().map(|(m, _, _)| m.as_str()).collect();
    assert_eq!(
        messages,
        [
            "import of `subprocess` is not allowed in image.conf",
            "Python 2 octal literal `0755`",
            "`lambda` is not allowed in image.conf",
            "Python 2 `print` statement",
        ]
    );
}

#[test]
fn bad_lines_with_multibyte_characters_are_blanked_safely() {
    // Found by the fuzzer: a 4-byte line of 3 characters was blanked to `pass`.
    assert_eq!(
        located("\u{592} m\n"),
        [("unexpected character `\u{592}` (U+0592)".to_string(), 1, 1)]
    );
    assert_eq!(located("x = 1\né m\ny = 2\n").len(), 1);
}

#[test]
fn calls_in_bare_statements_name_the_forbidden_function() {
    assert_eq!(
        problems("exec('memory = 512')\n"),
        ["`exec` is not allowed in image.conf"]
    );
    assert_eq!(
        problems("x = 1\nx.upper()\n"),
        ["a bare expression statement is not allowed in image.conf"]
    );
}

#[test]
fn a_file_over_the_limit_is_refused_where_it_passes_it() {
    let src = "padding = 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'\n".repeat(40_000);
    let got = located(&src);
    assert_eq!(got.len(), 1);
    assert!(got[0].0.contains("larger than 1048576 bytes"), "{got:?}");
    assert_eq!(got[0].1, MAX_FILE_SIZE / 53 + 1);
}

#[test]
fn nesting_bound_is_an_upper_bound_per_logical_line() {
    assert_eq!(nesting_bound("x = 1\n"), 3);
    assert_eq!(nesting_bound("x = 'a long string'\ny = 1\n"), 3);
    // Brackets and backslashes continue a logical line; comments do not count.
    assert_eq!(nesting_bound("x = [1,\n  2] # a b c d e f\n"), 7);
    assert_eq!(nesting_bound("x = 1 + \\\n  2\n"), 6);
    let chain = format!("x = {}\n", vec!["1"; 3000].join("+"));
    assert!(nesting_bound(&chain) > IN_PLACE_DEPTH);
    let nots = format!("x = {}1\n", "not ".repeat(3000));
    assert!(nesting_bound(&nots) > IN_PLACE_DEPTH);
    let indented = format!("{}x = 1\n", " ".repeat(3000));
    assert!(nesting_bound(&indented) > IN_PLACE_DEPTH);
    // Real configs are far below the limit.
    let real = "import os, re\narch = os.uname()[4]\nif re.search('64', arch):\n    arch_libdir = 'lib64'\nelse:\n    arch_libdir = 'lib'\ndevice_model = '/usr/' + arch_libdir + '/xen/bin/qemu-dm'\n";
    assert!(nesting_bound(real) < 40);
}

#[test]
fn deep_nesting_is_refused_quickly() {
    let src = format!("x = {}1{}\n", "[".repeat(5000), "]".repeat(5000));
    assert!(problems(&src)[0].contains("nested more than"));
    let src = format!("x = {}1\n", "-".repeat(5000));
    assert!(problems(&src)[0].contains("nested more than"));
    // A long chain is one problem, not one per node past the limit.
    let src = format!("x = {}\n", vec!["1"; 100_000].join("+"));
    assert_eq!(problems(&src).len(), 1);
}

#[test]
fn every_recovery_rule_explains_its_case() {
    use super::recover::{Failure, RULES, explain};
    use rustpython_parser::{Parse, ast as py};
    let cases: &[(&str, &str)] = &[
        ("python2-print", "print 'x'\n"),
        ("python2-exec", "exec 'x = 1'\n"),
        ("python2-octal", "mode = 0755\n"),
        ("python2-not-equal", "if a <> 'b':\n    c = 1\n"),
        ("python2-backquotes", "x = `1`\n"),
        ("unclosed-string", "x = 'abc\ny = 1\n"),
        ("bracket", "x = [1,\n  2\ny = 3\n"),
        ("empty-block", "a = 1\nif a:\n"),
        ("missing-colon", "if a > 1\n    b = 2\n"),
        ("unexpected-indentation", "x = 1\n  y = 2\n"),
        ("unexpected-character", "x = 1 $ 2\n"),
        ("generic", "x = = 1\n"),
    ];
    let mut named: Vec<&str> = cases.iter().map(|(n, _)| *n).collect();
    let mut rules: Vec<&str> = RULES.iter().map(|(n, _)| *n).chain(["generic"]).collect();
    named.sort();
    rules.sort();
    assert_eq!(named, rules, "every rule has a case");
    for (rule, src) in cases {
        let Err(e) = py::Suite::parse(src, "image.conf") else {
            panic!("{rule}: {src:?} parses")
        };
        let off = usize::from(e.offset).min(src.len());
        let (fired, _) = explain(&Failure::new(src, src, off, &e.error));
        assert_eq!(fired, *rule, "{src:?}");
    }
}

//! Table-driven tests of the format-preserving edits and the description title.

use super::*;
use crate::host::Host;
use crate::image;
use std::path::Path;

fn set(k: &str, v: Value) -> Change {
    Change::Set(k.into(), v)
}
fn unset(k: &str) -> Change {
    Change::Unset(k.into())
}
fn int(i: i64) -> Value {
    Value::Int(i)
}
fn strs(items: &[&str]) -> Value {
    Value::List(items.iter().map(|s| Value::Str(s.to_string())).collect())
}

/// Edits `src` as a vm_conf.template; the new text, or every error message joined.
fn run(src: &[u8], changes: &[Change], computed: &[&str], force: bool) -> Result<Vec<u8>, String> {
    let host = Host::local(Some("x86_64"));
    let computed: Vec<String> = computed.iter().map(|s| s.to_string()).collect();
    let draft = Draft::from_bytes(Path::new("vm_conf.template"), src.to_vec(), &host)
        .map_err(|d| d.render())?;
    draft
        .apply(image::VM_TEMPLATE, changes, &computed, force, &host)
        .map(|e| e.bytes)
        .map_err(|d| d.render())
}

#[test]
fn edits_change_only_what_they_must() {
    let cases: &[(&str, &str, Vec<Change>, &str)] = &[
        (
            "replace single-line value",
            "a = 1\nb = 2\n",
            vec![set("b", int(3))],
            "a = 1\nb = 3\n",
        ),
        (
            "replace multi-line list (the whole value span)",
            "# disks\ndisk = [\n    'file:/a,xvda,w',   # root\n    'file:/b,xvdb,w',\n]\nx = 1\n",
            vec![set("disk", strs(&["file:/c,xvda,w"]))],
            "# disks\ndisk = ['file:/c,xvda,w']\nx = 1\n",
        ),
        (
            "grouping parentheses belong to the old value",
            "p = (1 +\n     2)\n",
            vec![set("p", int(3))],
            "p = 3\n",
        ),
        (
            "append a new key",
            "a = 1\n",
            vec![set("new", Value::Str("x".into()))],
            "a = 1\nnew = 'x'\n",
        ),
        (
            "append after a last line without newline",
            "a = 1  # one",
            vec![set("b", int(2)), set("c", Value::Bool(true))],
            "a = 1  # one\nb = 2\nc = True\n",
        ),
        (
            "append to an empty file",
            "",
            vec![set("a", int(1))],
            "a = 1\n",
        ),
        (
            "unset first statement",
            "a = 1\nb = 2\nc = 3\n",
            vec![unset("a")],
            "b = 2\nc = 3\n",
        ),
        (
            "unset middle statement, its comment goes with it",
            "a = 1\nb = 2  # two\nc = 3\n",
            vec![unset("b")],
            "a = 1\nc = 3\n",
        ),
        (
            "unset last statement without newline",
            "a = 1\nb = 2\nc = 3",
            vec![unset("c")],
            "a = 1\nb = 2\n",
        ),
        (
            "unset a multi-line statement; the comment above stays",
            "# about disk\ndisk = [\n  'a',\n]\nx = 1\n",
            vec![unset("disk")],
            "# about disk\nx = 1\n",
        ),
        (
            "unset every plain assignment of the key",
            "a = 1\nb = 2\na = 3\n",
            vec![unset("a")],
            "b = 2\n",
        ),
        (
            "set changes the last of several plain assignments",
            "a = 1\nb = a\na = 3\n",
            vec![set("a", int(4))],
            "a = 1\nb = a\na = 4\n",
        ),
        (
            "a trailing comment stays",
            "memory = 256  # MB\n",
            vec![set("memory", int(512))],
            "memory = 512  # MB\n",
        ),
        (
            "imports, if blocks and computed expressions stay",
            "import os, re\narch = os.uname()[4]\nif re.search('64', arch):\n    arch_libdir = 'lib64'\nelse:\n    arch_libdir = 'lib'\ndevice_model = '/usr/' + arch_libdir + '/xen/bin/qemu-dm'\n\ncomputed_options = ['arch']\nmemory = 256\n",
            vec![set("memory", int(1024))],
            "import os, re\narch = os.uname()[4]\nif re.search('64', arch):\n    arch_libdir = 'lib64'\nelse:\n    arch_libdir = 'lib'\ndevice_model = '/usr/' + arch_libdir + '/xen/bin/qemu-dm'\n\ncomputed_options = ['arch']\nmemory = 1024\n",
        ),
        (
            "the option lists can be set",
            "customizable_options = ['memory']\nmemory = 1\n",
            vec![set("customizable_options", strs(&["memory", "vcpus"]))],
            "customizable_options = ['memory', 'vcpus']\nmemory = 1\n",
        ),
        (
            "an equal literal is left as written",
            "a = 0x10  # hex\nb = \"x\"\n",
            vec![set("a", int(16)), set("b", Value::Str("x".into()))],
            "a = 0x10  # hex\nb = \"x\"\n",
        ),
        (
            "strings are written as Python literals",
            "a = 1\n",
            vec![set("a", Value::Str("it's $VM_NAME\n".into()))],
            "a = \"it's $VM_NAME\\n\"\n",
        ),
    ];
    for (what, src, changes, want) in cases {
        let got = run(src.as_bytes(), changes, &[], false);
        assert_eq!(
            got.as_deref().map(String::from_utf8_lossy),
            Ok(std::borrow::Cow::Borrowed(*want)),
            "{what}"
        );
    }
}

#[test]
fn line_ends_and_bom_are_kept() {
    /// (what, file, changes, expected file)
    type Case<'a> = (&'a str, &'a [u8], Vec<Change>, &'a [u8]);
    let cases: &[Case] = &[
        (
            "CRLF stays CRLF, new lines too",
            b"a = 1\r\nl = [\r\n  1,\r\n]\r\nb = 2\r\n",
            vec![set("l", int(5)), set("c", int(3)), unset("b")],
            b"a = 1\r\nl = 5\r\nc = 3\r\n",
        ),
        (
            "CRLF file without a final line end",
            b"a = 1\r\nb = 2",
            vec![set("c", int(3))],
            b"a = 1\r\nb = 2\r\nc = 3\r\n",
        ),
        (
            "mixed line ends: untouched lines keep theirs",
            b"a = 1\r\nb = 2\nc = 3\r\n",
            vec![set("b", int(5)), unset("c")],
            b"a = 1\r\nb = 5\n",
        ),
        (
            "a BOM is kept",
            b"\xEF\xBB\xBFa = 1\n",
            vec![set("a", int(2)), set("b", int(1))],
            b"\xEF\xBB\xBFa = 2\nb = 1\n",
        ),
        (
            "BOM and CRLF, first statement removed",
            b"\xEF\xBB\xBFa = 1\r\nb = 2\r\n",
            vec![unset("a")],
            b"\xEF\xBB\xBFb = 2\r\n",
        ),
    ];
    for (what, src, changes, want) in cases {
        let got = run(src, changes, &[], false);
        assert_eq!(got.as_deref(), Ok(*want), "{what}");
    }
}

#[test]
fn refused_edits_say_why() {
    /// (what, file, changes, computed keys, force, expected message)
    type Case<'a> = (&'a str, &'a str, Vec<Change>, &'a [&'a str], bool, &'a str);
    let cases: &[Case] = &[
        (
            "key only inside an if block",
            "if 1:\n    a = 1\nelse:\n    a = 2\n",
            vec![set("a", int(3))],
            &[],
            false,
            "`a` cannot be set: it is only assigned inside the `if` block at line 1",
        ),
        (
            "key in an untaken branch only",
            "if 0:\n    a = 1\n",
            vec![set("a", int(3))],
            &[],
            false,
            "only assigned inside the `if` block at line 1",
        ),
        (
            "plain assignment overridden later in an if",
            "a = 1\nif 1:\n    a = 2\n",
            vec![set("a", int(3))],
            &[],
            false,
            "`a` is assigned again inside the `if` block at line 2 after line 1",
        ),
        (
            "unset of a key set in an if",
            "a = 1\nif 1:\n    a = 2\n",
            vec![unset("a")],
            &[],
            false,
            "`a` cannot be unset: it is assigned inside the `if` block at line 2",
        ),
        (
            "several targets",
            "a = b = 1\n",
            vec![set("a", int(3))],
            &[],
            false,
            "together with other names",
        ),
        (
            "augmented",
            "a = 1\na += 1\n",
            vec![set("a", int(3))],
            &[],
            false,
            "assigned again by `+=` after line 1",
        ),
        (
            "shared line",
            "a = 1; b = 2\n",
            vec![unset("a")],
            &[],
            false,
            "`a` shares line 1 with another statement",
        ),
        (
            "computed without force",
            "arch = 'x86_64'\n",
            vec![set("arch", Value::Str("i686".into()))],
            &["arch"],
            false,
            "`arch` is computed for the target host",
        ),
        (
            "unset of a missing key",
            "memory = 1\n",
            vec![unset("memroy")],
            &[],
            false,
            "did you mean `memory`?",
        ),
        (
            "the same key twice",
            "a = 1\n",
            vec![set("a", int(2)), unset("a")],
            &[],
            false,
            "`a` is changed more than once",
        ),
        (
            "a result that does not load",
            "a = 1\n",
            vec![set("customizable_options", Value::Str("a".into()))],
            &[],
            false,
            "`vm_conf.template` would not load after the edit",
        ),
        (
            "removing a key others use",
            "a = 1\nb = a + 1\n",
            vec![unset("a")],
            &[],
            false,
            "would not load after the edit",
        ),
        (
            "a value with no literal form",
            "a = 1\n",
            vec![set("a", Value::Float(f64::INFINITY))],
            &[],
            false,
            "the value `inf` cannot be written as a literal that reads back the same",
        ),
        (
            "a keyword as a key",
            "a = 1\n",
            vec![set("class", int(1))],
            &[],
            false,
            "`class` is a Python keyword",
        ),
    ];
    for (what, src, changes, computed, force, want) in cases {
        match run(src.as_bytes(), changes, computed, *force) {
            Ok(b) => panic!(
                "{what}: expected an error, got {:?}",
                String::from_utf8_lossy(&b)
            ),
            Err(e) => assert!(e.contains(want), "{what}: {e}"),
        }
    }
}

#[test]
fn computed_keys_need_force() {
    let src = b"import os\narch = os.uname()[4]\n";
    let e = run(
        src,
        &[set("arch", Value::Str("i686".into()))],
        &["arch"],
        false,
    )
    .unwrap_err();
    assert!(e.contains("`convirt image edit --force` writes"), "{e}");
    let ok = run(
        src,
        &[set("arch", Value::Str("i686".into()))],
        &["arch"],
        true,
    )
    .unwrap();
    assert_eq!(ok, b"import os\narch = 'i686'\n");
}

#[test]
fn applied_reports_lines_and_texts() {
    let host = Host::local(Some("x86_64"));
    let src = b"a = 1\nl = [\n  1,\n]\nb = 2\n".to_vec();
    let draft = Draft::from_bytes(Path::new("image.conf"), src, &host).unwrap();
    let e = draft
        .apply(
            image::IMAGE_CONF,
            &[
                unset("a"),
                set("b", int(3)),
                set("c", int(4)),
                set("l", Value::List(vec![int(1)])),
            ],
            &[],
            false,
            &host,
        )
        .unwrap();
    let got: Vec<String> = e
        .changes
        .iter()
        .map(|a| format!("{}:{}", a.line, a.summary()))
        .collect();
    assert_eq!(
        got,
        vec![
            "1:a: removed (was 1)",
            "4:b: 2 -> 3",
            "5:c: added 4",
            "1:l: unchanged ([ 1, ])",
        ]
    );
}

#[test]
fn description_titles() {
    let cases: &[(&str, &[u8], &str, &[u8])] = &[
            (
                "convirt-style heading",
                b"<body><span style=\"font-size: 200%\">Linux CD Install</span><br/>About</body>",
                "Web Install",
                b"<body><span style=\"font-size: 200%\">Web Install</span><br/>About</body>",
            ),
            (
                "head, title, comments and whitespace are skipped and kept",
                b"<html><head><title>T</title><style>p{}</style></head>\n<!-- note -->\n<body>\n  <p> Old  title </p>x</body>",
                "New",
                b"<html><head><title>T</title><style>p{}</style></head>\n<!-- note -->\n<body>\n  <p> New </p>x</body>",
            ),
            (
                "a quoted > inside a tag",
                b"<span title=\"a>b\">Old</span>",
                "New",
                b"<span title=\"a>b\">New</span>",
            ),
            (
                "markup in the title is escaped",
                b"<b>Old</b>",
                "A & <B>",
                b"<b>A &amp; &lt;B&gt;</b>",
            ),
            (
                "no text at all: a heading after <body>",
                b"<body class=\"x\"></body>\n",
                "New",
                b"<body class=\"x\"><span style=\"font-size: 200%\">New</span><br/></body>\n",
            ),
            (
                "not UTF-8: non-ASCII as character references",
                b"<p>caf\xe9</p>",
                "Caf\u{e9}",
                b"<p>Caf&#xe9;</p>",
            ),
        ];
    for (what, html, title, want) in cases {
        let got = set_description_title(html, title);
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(want),
            "{what}"
        );
    }
    assert!(check_title("two\nlines").is_err());
    assert!(check_title("  ").is_err());
    assert!(check_title("Fine title").is_ok());
}

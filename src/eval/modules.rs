//! The modules a config may import, each a table of granted functions and constants. The
//! dialect check in `syntax` takes its list of importable modules from [`MODULES`] too.

use super::builtins;
use super::coerce::str_arg;
use super::fail::{Fail, R, err};
use super::limits::check_text;
use super::strings::STR_METHODS;
use super::table::{Call, Const, Func, ModuleDef, Obj, find, val};
use crate::diagnostic::Span;
use crate::host::Host;
use crate::value::Value;

const ANY: usize = usize::MAX;

pub(crate) static MODULES: &[&ModuleDef] = &[&OS, &OS_PATH, &RE, &SYS, &STRING];

/// The module of a dotted name (`os.path`), if a config may import it.
pub(crate) fn module(name: &str) -> Option<&'static ModuleDef> {
    MODULES.iter().copied().find(|m| m.name == name)
}

/// Whether a config may import `name`: the allow-list of the dialect check.
pub(crate) fn importable(name: &str) -> bool {
    module(name).is_some()
}

/// The modules a config may import, in table order, for messages.
pub(crate) fn importable_names() -> Vec<&'static str> {
    MODULES.iter().map(|m| m.name).collect()
}

fn text(s: &str) -> Obj {
    Obj::Val(Value::Str(s.to_string()))
}

/// `os.uname()`: the host's five fields as a tuple.
pub(super) fn uname(h: &Host) -> Value {
    Value::Tuple(
        [&h.sysname, &h.nodename, &h.release, &h.version, &h.machine]
            .into_iter()
            .map(|s| Value::Str(s.clone()))
            .collect(),
    )
}

/// `sys.platform`: Python's lower-case system name.
fn platform(h: &Host) -> String {
    if h.sysname.eq_ignore_ascii_case("linux") {
        "linux".into()
    } else {
        h.sysname.to_lowercase()
    }
}

static OS: ModuleDef = ModuleDef {
    name: "os",
    functions: &[Func {
        name: "uname",
        min: 0,
        max: 0,
        kwargs: &[],
        run: |c| val(uname(c.host)),
    }],
    constants: &[
        Const {
            name: "path",
            value: |_| Obj::Module(&OS_PATH),
        },
        Const {
            name: "sep",
            value: |_| text("/"),
        },
        Const {
            name: "name",
            value: |_| text("posix"),
        },
        Const {
            name: "linesep",
            value: |_| text("\n"),
        },
    ],
};

static OS_PATH: ModuleDef = ModuleDef {
    name: "os.path",
    functions: &[
        Func {
            name: "join",
            min: 1,
            max: ANY,
            kwargs: &[],
            run: path_join,
        },
        Func {
            name: "basename",
            min: 1,
            max: 1,
            kwargs: &[],
            run: |c| {
                let p = path(&c)?;
                val(Value::Str(p.rsplit('/').next().unwrap_or("").to_string()))
            },
        },
        Func {
            name: "dirname",
            min: 1,
            max: 1,
            kwargs: &[],
            run: |c| val(Value::Str(dirname(&path(&c)?))),
        },
        Func {
            name: "exists",
            min: 1,
            max: 1,
            kwargs: &[],
            run: |c| val(Value::Bool(std::path::Path::new(&path(&c)?).exists())),
        },
        Func {
            name: "splitext",
            min: 1,
            max: 1,
            kwargs: &[],
            run: |c| val(splitext(&path(&c)?)),
        },
        Func {
            name: "isabs",
            min: 1,
            max: 1,
            kwargs: &[],
            run: |c| val(Value::Bool(path(&c)?.starts_with('/'))),
        },
        Func {
            name: "normpath",
            min: 1,
            max: 1,
            kwargs: &[],
            run: |c| val(Value::Str(normpath(&path(&c)?))),
        },
    ],
    constants: &[Const {
        name: "sep",
        value: |_| text("/"),
    }],
};

static RE: ModuleDef = ModuleDef {
    name: "re",
    functions: &[
        Func {
            name: "search",
            min: 2,
            max: 2,
            kwargs: &[],
            run: |c| re_match(c, false),
        },
        Func {
            name: "match",
            min: 2,
            max: 2,
            kwargs: &[],
            run: |c| re_match(c, true),
        },
        Func {
            name: "sub",
            min: 3,
            max: 3,
            kwargs: &[],
            run: re_sub,
        },
        Func {
            name: "findall",
            min: 2,
            max: 2,
            kwargs: &[],
            run: |c| {
                let (re, text) = pattern_and_text(&c, 1)?;
                val(Value::List(
                    re.find_iter(&text)
                        .take(c.limits.max_items + 1)
                        .map(|m| Value::Str(m.as_str().to_string()))
                        .collect(),
                ))
            },
        },
        Func {
            name: "split",
            min: 2,
            max: 2,
            kwargs: &[],
            run: |c| {
                let (re, text) = pattern_and_text(&c, 1)?;
                val(Value::List(
                    re.split(&text)
                        .take(c.limits.max_items + 1)
                        .map(|m| Value::Str(m.to_string()))
                        .collect(),
                ))
            },
        },
        Func {
            name: "escape",
            min: 1,
            max: 1,
            kwargs: &[],
            run: |c| {
                val(Value::Str(regex::escape(&str_arg(
                    c.arg(0),
                    c.span,
                    "the pattern",
                )?)))
            },
        },
    ],
    constants: &[],
};

static SYS: ModuleDef = ModuleDef {
    name: "sys",
    functions: &[],
    constants: &[
        Const {
            name: "platform",
            value: |h| Obj::Val(Value::Str(platform(h))),
        },
        Const {
            name: "byteorder",
            value: |_| text("little"),
        },
        Const {
            name: "maxsize",
            value: |_| Obj::Val(Value::Int(i64::MAX)),
        },
    ],
};

const LETTERS_LOWER: &str = "abcdefghijklmnopqrstuvwxyz";
const LETTERS_UPPER: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// Python 2's `string` module: the functions are the string methods, with the string first.
static STRING: ModuleDef = ModuleDef {
    name: "string",
    functions: &[
        Func {
            name: "upper",
            min: 1,
            max: 1,
            kwargs: &[],
            run: |c| as_method(c, "upper"),
        },
        Func {
            name: "lower",
            min: 1,
            max: 1,
            kwargs: &[],
            run: |c| as_method(c, "lower"),
        },
        Func {
            name: "strip",
            min: 1,
            max: 2,
            kwargs: &[],
            run: |c| as_method(c, "strip"),
        },
        Func {
            name: "split",
            min: 1,
            max: 3,
            kwargs: &[],
            run: |c| as_method(c, "split"),
        },
        Func {
            name: "join",
            min: 1,
            max: 2,
            kwargs: &[],
            run: |mut c| {
                // `string.join(words, sep=' ')` is `sep.join(words)`.
                let sep = if c.args.len() > 1 {
                    c.args.remove(1)
                } else {
                    Value::Str(" ".into())
                };
                c.args.insert(0, sep);
                as_method(c, "join")
            },
        },
        Func {
            name: "replace",
            min: 3,
            max: 4,
            kwargs: &[],
            run: |c| as_method(c, "replace"),
        },
        Func {
            name: "atoi",
            min: 1,
            max: 2,
            kwargs: &[],
            run: builtins::int,
        },
    ],
    constants: &[
        Const {
            name: "digits",
            value: |_| text("0123456789"),
        },
        Const {
            name: "ascii_letters",
            value: |_| Obj::Val(Value::Str(format!("{LETTERS_LOWER}{LETTERS_UPPER}"))),
        },
        Const {
            name: "letters",
            value: |_| Obj::Val(Value::Str(format!("{LETTERS_LOWER}{LETTERS_UPPER}"))),
        },
        Const {
            name: "ascii_lowercase",
            value: |_| text(LETTERS_LOWER),
        },
        Const {
            name: "lowercase",
            value: |_| text(LETTERS_LOWER),
        },
        Const {
            name: "ascii_uppercase",
            value: |_| text(LETTERS_UPPER),
        },
        Const {
            name: "uppercase",
            value: |_| text(LETTERS_UPPER),
        },
    ],
};

/// Calls the string method `name` with the first argument as the string.
fn as_method(mut c: Call<'_>, name: &str) -> R<Obj> {
    let this = c.args.remove(0);
    if !matches!(this, Value::Str(_)) {
        return err(
            c.span,
            format!("`{name}` needs a string, not {}", this.type_name()),
        );
    }
    c.this = this;
    match find(STR_METHODS, name) {
        Some(f) => (f.run)(c),
        None => err(c.span, format!("`string.{name}` is not available")),
    }
}

fn path(c: &Call<'_>) -> R<String> {
    str_arg(c.arg(0), c.span, "a path")
}

fn path_join(c: Call<'_>) -> R<Obj> {
    let mut out = String::new();
    for a in &c.args {
        let p = str_arg(Some(a), c.span, "a path")?;
        if p.starts_with('/') {
            out = p;
        } else if out.is_empty() || out.ends_with('/') {
            out.push_str(&p);
        } else {
            out.push('/');
            out.push_str(&p);
        }
    }
    val(Value::Str(out))
}

fn dirname(p: &str) -> String {
    match p.rfind('/') {
        Some(0) => "/".into(),
        Some(i) => {
            let d = p[..i].trim_end_matches('/');
            if d.is_empty() {
                "/".into()
            } else {
                d.to_string()
            }
        }
        None => String::new(),
    }
}

fn splitext(p: &str) -> Value {
    let base_start = p.rfind('/').map(|i| i + 1).unwrap_or(0);
    match p[base_start..].rfind('.') {
        Some(i) if i > 0 && !p[base_start..base_start + i].chars().all(|c| c == '.') => {
            let at = base_start + i;
            Value::Tuple(vec![
                Value::Str(p[..at].to_string()),
                Value::Str(p[at..].to_string()),
            ])
        }
        _ => Value::Tuple(vec![Value::Str(p.to_string()), Value::Str(String::new())]),
    }
}

fn normpath(p: &str) -> String {
    let abs = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !abs {
                    parts.push("..");
                }
            }
            c => parts.push(c),
        }
    }
    let j = parts.join("/");
    if abs {
        format!("/{j}")
    } else if j.is_empty() {
        ".".into()
    } else {
        j
    }
}

fn compile_re(pattern: &str, span: Span) -> R<regex::Regex> {
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| {
            Fail::Error(
                span,
                format!("bad regular expression: {e}"),
                Some("convirt supports the common subset of Python `re` (no look-around or back-references)".into()),
            )
        })
}

/// The compiled pattern (argument 0) and the text (argument `text_at`).
fn pattern_and_text(c: &Call<'_>, text_at: usize) -> R<(regex::Regex, String)> {
    let pattern = str_arg(c.arg(0), c.span, "the pattern")?;
    let re = compile_re(&pattern, c.span)?;
    let text = str_arg(c.arg(text_at), c.span, "the text")?;
    Ok((re, text))
}

fn re_match(c: Call<'_>, anchored: bool) -> R<Obj> {
    let (re, text) = pattern_and_text(&c, 1)?;
    let caps = re
        .captures(&text)
        .filter(|m| !anchored || m.get(0).is_some_and(|m| m.start() == 0));
    Ok(match caps {
        Some(m) => Obj::Match(
            m.iter()
                .map(|g| g.map(|g| g.as_str().to_string()))
                .collect(),
        ),
        None => Obj::Val(Value::None),
    })
}

fn re_sub(c: Call<'_>) -> R<Obj> {
    let pattern = str_arg(c.arg(0), c.span, "the pattern")?;
    let re = compile_re(&pattern, c.span)?;
    let repl = str_arg(c.arg(1), c.span, "the replacement")?;
    let text = str_arg(c.arg(2), c.span, "the text")?;
    // Python writes groups as \1: the replacement is read once into literal text and
    // group numbers, so every expansion's length is known before it is written.
    enum Part {
        Lit(String),
        Group(usize),
    }
    let mut parts: Vec<Part> = Vec::new();
    let mut lit = String::new();
    let mut chars = repl.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '\\' if chars.peek().is_some_and(char::is_ascii_digit) => {
                let d = chars.next().and_then(|d| d.to_digit(10)).unwrap_or(0);
                parts.push(Part::Lit(std::mem::take(&mut lit)));
                parts.push(Part::Group(d as usize));
            }
            '\\' if chars.peek() == Some(&'\\') => {
                chars.next();
                lit.push('\\');
            }
            ch => lit.push(ch),
        }
    }
    parts.push(Part::Lit(lit));
    let mut out = String::new();
    let mut last = 0;
    for caps in re.captures_iter(&text) {
        let Some(m) = caps.get(0) else { continue };
        let group = |g: usize| caps.get(g).map_or("", |x| x.as_str());
        let grows: usize = parts
            .iter()
            .map(|p| match p {
                Part::Lit(l) => l.len(),
                Part::Group(g) => group(*g).len(),
            })
            .sum::<usize>()
            + (m.start() - last);
        check_text(c.span, out.len().saturating_add(grows), c.limits)?;
        out.push_str(&text[last..m.start()]);
        for p in &parts {
            match p {
                Part::Lit(l) => out.push_str(l),
                Part::Group(g) => out.push_str(group(*g)),
            }
        }
        last = m.end();
    }
    check_text(c.span, out.len() + (text.len() - last), c.limits)?;
    out.push_str(&text[last..]);
    val(Value::Str(out))
}

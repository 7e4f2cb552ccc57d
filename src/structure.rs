//! The crate's shape, checked from its own sources (issue #11): no import cycle between
//! modules, and no file but the AST conversion over about 1,000 lines.
//!
//! A module is a file: `edit` is `src/edit/mod.rs` (or `src/archive.rs` for `archive/`),
//! `edit/draft` is `src/edit/draft.rs`. An edge is a `crate::…` or `super::…` path in a
//! file's code (comments and its inline `mod tests` left out). A folder's own file naming its
//! children (`mod draft; pub use draft::Draft;`) is not an edge: it is the folder's public
//! face, and its children may use the types it defines, as every folder here does.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module → the modules its code names.
pub(crate) type Graph = BTreeMap<String, BTreeSet<String>>;

/// Edges of deliberate cycles between files, each left out of the check with its reason. The
/// test fails when an edge here is gone from the code, so the list cannot go stale. None now:
/// the last one (`state/hooks` ↔ `provision`) ended when the hooks moved to `provision/`.
const KNOWN_CYCLE_EDGES: &[(&str, &str, &str)] = &[];

/// Between folders taken whole (`top_level`) the evaluator and the parser need each other:
/// `eval` reads `syntax/ast`, and `syntax/convert` asks `eval/modules` which modules may be
/// imported (the allow-list is the evaluator's table, as issue #11 asks). File by file there
/// is no cycle; this is the one pair of folders that meet both ways.
const KNOWN_TOP_LEVEL_EDGES: &[(&str, &str)] = &[("syntax", "eval")];

/// The longest a file may be; the AST conversion is allowed to be longer (one match arm per
/// kind of Python node reads best in one place).
const MAX_LINES: usize = 1_000;
const LONG_ALLOWED: &[&str] = &["syntax/convert"];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every module file of the library with its name; `lib.rs` and `main.rs` only declare.
pub(crate) fn module_files(src: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut walk = vec![(String::new(), src.to_path_buf())];
    while let Some((prefix, dir)) = walk.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                walk.push((format!("{prefix}{name}/"), path));
            } else if let Some(stem) = name.strip_suffix(".rs") {
                if prefix.is_empty() && (stem == "lib" || stem == "main") {
                    continue;
                }
                let module = if stem == "mod" {
                    prefix.trim_end_matches('/').to_string()
                } else {
                    format!("{prefix}{stem}")
                };
                out.push((module, path));
            }
        }
    }
    out.sort();
    out
}

/// The code of a file that counts for its imports: without comment lines and without the
/// inline test module at its end.
pub(crate) fn code_of(text: &str) -> String {
    let code = text.split("#[cfg(test)]\nmod tests {").next().unwrap_or("");
    code.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths a `use` tree names, each as its segments: `a::{b, c::d as e}` gives `a::b` and
/// `a::c::d`. Reading stops at anything that is not part of a path.
pub(crate) fn use_paths(text: &str) -> Vec<Vec<String>> {
    fn skip_ws(s: &[u8], i: &mut usize) {
        while *i < s.len() && s[*i].is_ascii_whitespace() {
            *i += 1;
        }
    }
    fn ident(s: &[u8], i: &mut usize) -> Option<String> {
        let start = *i;
        while *i < s.len() && (s[*i].is_ascii_alphanumeric() || s[*i] == b'_' || s[*i] == b'*') {
            *i += 1;
        }
        (*i > start).then(|| String::from_utf8_lossy(&s[start..*i]).into_owned())
    }
    fn tree(s: &[u8], i: &mut usize, prefix: &[String], out: &mut Vec<Vec<String>>) {
        skip_ws(s, i);
        if s.get(*i) == Some(&b'{') {
            *i += 1;
            loop {
                skip_ws(s, i);
                match s.get(*i) {
                    Some(b'}') => {
                        *i += 1;
                        return;
                    }
                    Some(b',') => *i += 1,
                    None => return,
                    _ => {
                        let before = *i;
                        tree(s, i, prefix, out);
                        if *i == before {
                            return;
                        }
                    }
                }
            }
        }
        let Some(name) = ident(s, i) else {
            if !prefix.is_empty() {
                out.push(prefix.to_vec());
            }
            return;
        };
        let mut path = prefix.to_vec();
        path.push(name);
        if s[*i..].starts_with(b"::") {
            *i += 2;
            tree(s, i, &path, out);
        } else {
            // `a as b`: the alias is not part of the path.
            let mut j = *i;
            skip_ws(s, &mut j);
            if s[j..].starts_with(b"as ") {
                j += 3;
                skip_ws(s, &mut j);
                ident(s, &mut j);
                *i = j;
            }
            out.push(path);
        }
    }
    let mut out = Vec::new();
    tree(text.as_bytes(), &mut 0, &[], &mut out);
    out
}

/// The graph of the library's modules, read from the sources under `src`.
pub(crate) fn module_graph(src: &Path) -> Graph {
    let files = module_files(src);
    let modules: BTreeSet<String> = files.iter().map(|(m, _)| m.clone()).collect();
    // The module a path names: the deepest module its leading segments spell.
    let resolve = |segments: &[String]| -> Option<String> {
        let mut found = None;
        for n in 1..=segments.len() {
            let name = segments[..n].join("/");
            if modules.contains(&name) {
                found = Some(name);
            } else {
                break;
            }
        }
        found
    };
    let mut graph = Graph::new();
    for (module, path) in &files {
        // Tests-only files (`eval/tests.rs`) may reach anywhere, as inline tests do.
        if module.ends_with("/tests") {
            continue;
        }
        let text = std::fs::read_to_string(path).unwrap();
        let code = code_of(&text);
        let edges = graph.entry(module.clone()).or_default();
        // `super` of `a/b` is `a`; of `a` (a folder's own file or a top-level file), the crate.
        let parent: Vec<String> = match module.rsplit_once('/') {
            Some((p, _)) => p.split('/').map(String::from).collect(),
            None => Vec::new(),
        };
        for (at, _) in code
            .match_indices("crate::")
            .chain(code.match_indices("super::"))
        {
            let before = code[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let (base, rest) = if code[at..].starts_with("crate::") {
                (Vec::new(), &code[at + 7..])
            } else {
                (parent.clone(), &code[at + 7..])
            };
            for p in use_paths(rest) {
                let full: Vec<String> = base.iter().cloned().chain(p).collect();
                if let Some(to) = resolve(&full) {
                    if &to != module {
                        edges.insert(to);
                    }
                }
            }
        }
    }
    graph
}

/// The same graph with every folder's files taken as one module (`edit/draft` → `edit`).
pub(crate) fn top_level(graph: &Graph) -> Graph {
    let top = |m: &str| m.split('/').next().unwrap_or(m).to_string();
    let mut out = Graph::new();
    for (from, tos) in graph {
        let edges = out.entry(top(from)).or_default();
        for to in tos {
            if top(to) != top(from) {
                edges.insert(top(to));
            }
        }
    }
    out
}

/// A cycle of the graph as the path round it (`a -> b -> a`), if there is one.
pub(crate) fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &Graph,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(1) => {
                let from = path.iter().position(|p| p == n).unwrap_or(0);
                let mut cycle = path[from..].to_vec();
                cycle.push(n.to_string());
                return Some(cycle);
            }
            Some(_) => return None,
            None => {}
        }
        state.insert(n.to_string(), 1);
        path.push(n.to_string());
        for m in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, graph, state, path) {
                return Some(c);
            }
        }
        path.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut state, &mut Vec::new()))
}

fn has_edge(graph: &Graph, from: &str, to: &str) -> bool {
    graph.get(from).is_some_and(|t| t.contains(to))
}

#[test]
fn use_paths_reads_nested_groups_and_aliases() {
    let paths = |s: &str| -> Vec<String> { use_paths(s).iter().map(|p| p.join("::")).collect() };
    assert_eq!(
        paths("edit::{self, Change};"),
        ["edit::self", "edit::Change"]
    );
    assert_eq!(
        paths("{a::{b, c::d as e},\n  f::*}; x::y"),
        ["a::b", "a::c::d", "f::*"]
    );
    assert_eq!(paths("tree::copy(x)"), ["tree::copy"]);
}

#[test]
fn find_cycle_finds_one_and_only_one() {
    let graph = |edges: &[(&str, &str)]| {
        let mut g = Graph::new();
        for (a, b) in edges {
            g.entry(a.to_string()).or_default().insert(b.to_string());
        }
        g
    };
    let g = graph(&[("a", "b"), ("b", "c"), ("c", "a"), ("d", "a")]);
    assert_eq!(find_cycle(&g).unwrap(), ["a", "b", "c", "a"]);
    let g = graph(&[("a", "b"), ("b", "c"), ("a", "c"), ("d", "a")]);
    assert_eq!(find_cycle(&g), None);
    let folded = top_level(&graph(&[("x/a", "y/b"), ("y/c", "x")]));
    assert_eq!(find_cycle(&folded).unwrap(), ["x", "y", "x"]);
}

#[test]
fn module_graph_reads_crate_and_super_paths() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir(src.join("f")).unwrap();
    let write = |p: &str, t: &str| std::fs::write(src.join(p), t).unwrap();
    write("lib.rs", "pub mod a;\npub mod f;\n");
    write(
        "a.rs",
        "//! a\n// crate::f::y is only a comment\nuse crate::f::{x, Z};\n",
    );
    write("f/mod.rs", "mod x;\nmod y;\npub use x::Z;\n");
    write("f/x.rs", "use super::y::Y;\npub struct Z;\n");
    write(
        "f/y.rs",
        "pub struct Y;\n#[cfg(test)]\nmod tests {\n    use crate::a;\n}\n",
    );
    let g = module_graph(src);
    let edges = |m: &str| g[m].iter().cloned().collect::<Vec<_>>();
    assert_eq!(edges("a"), ["f", "f/x"]);
    assert_eq!(edges("f/x"), ["f/y"]);
    assert!(edges("f").is_empty() && edges("f/y").is_empty());
    write("f/y.rs", "use crate::a;\n");
    let g = module_graph(src);
    assert_eq!(find_cycle(&top_level(&g)).unwrap(), ["a", "f", "a"]);
}

/// Takes the listed edges out of `graph`, failing on any that is not there.
fn without(mut graph: Graph, edges: &[(&str, &str)]) -> Graph {
    for (from, to) in edges {
        let removed = graph.get_mut(*from).is_some_and(|t| t.remove(*to));
        assert!(
            removed,
            "the known edge {from} -> {to} is gone: take it off the list"
        );
    }
    graph
}

/// The rule itself: no import cycle between the library's modules, file by file.
#[test]
fn no_import_cycle_between_modules() {
    let graph = module_graph(&src_dir());
    let known: Vec<(&str, &str)> = KNOWN_CYCLE_EDGES.iter().map(|(a, b, _)| (*a, *b)).collect();
    for edge in &known {
        let others: Vec<(&str, &str)> = known.iter().filter(|e| *e != edge).copied().collect();
        let with = without(graph.clone(), &others);
        assert!(find_cycle(&with).is_some(), "{edge:?} closes no cycle");
    }
    let checked = without(graph.clone(), &known);
    if let Some(cycle) = find_cycle(&checked) {
        panic!("import cycle: {}", cycle.join(" -> "));
    }
    // The graph was really read: a few edges that the code has.
    for (from, to) in [
        ("eval", "syntax/ast"),
        ("syntax/convert", "eval/modules"),
        ("create_like", "edit"),
        ("edit/draft", "edit/locate"),
    ] {
        assert!(has_edge(&graph, from, to), "{from} -> {to}: {graph:?}");
    }
}

#[test]
fn no_file_over_about_a_thousand_lines() {
    let mut long = Vec::new();
    for (module, path) in module_files(&src_dir()) {
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        if lines > MAX_LINES && !LONG_ALLOWED.contains(&module.as_str()) {
            long.push(format!("{} has {lines} lines", path.display()));
        }
    }
    assert!(long.is_empty(), "{long:#?}");
}

/// The same rule between the top-level modules, each folder taken as one.
#[test]
fn no_import_cycle_between_top_level_modules() {
    let top = top_level(&module_graph(&src_dir()));
    // Each known edge really closes a cycle: with it back in, there is one.
    for edge in KNOWN_TOP_LEVEL_EDGES {
        let others: Vec<(&str, &str)> = KNOWN_TOP_LEVEL_EDGES
            .iter()
            .filter(|e| *e != edge)
            .copied()
            .collect();
        let with = without(top.clone(), &others);
        assert!(find_cycle(&with).is_some(), "{edge:?} closes no cycle");
    }
    let checked = without(top, KNOWN_TOP_LEVEL_EDGES);
    if let Some(cycle) = find_cycle(&checked) {
        panic!("import cycle: {}", cycle.join(" -> "));
    }
    assert!(has_edge(&checked, "cli", "provision"), "{checked:?}");
}

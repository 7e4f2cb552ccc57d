//! Help that reads well: the global options under their own heading in every command's help,
//! examples everywhere, and `man convirt-X` saying what `convirt help X` says.

use crate::{World, stdout};

const GLOBAL: &[&str] = &[
    "--store",
    "--config",
    "--verbose",
    "--quiet",
    "--json",
    "--arch",
];

/// The subcommand names listed under `Commands:` in a help text (without `help`).
fn commands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        // Deeper indentation continues a wrapped description.
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(String::from)
        .collect()
}

/// Every visible command path, found by walking the help texts themselves.
fn all_paths(w: &World) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut todo = vec![Vec::<String>::new()];
    while let Some(path) = todo.pop() {
        let o = w.cmd().args(&path).arg("--help").output().unwrap();
        assert!(o.status.success(), "{path:?}");
        for c in commands(&stdout(&o)) {
            let mut p = path.clone();
            p.push(c);
            todo.push(p);
        }
        if !path.is_empty() {
            out.push(path);
        }
    }
    out.sort();
    out
}

#[test]
fn global_options_have_their_own_heading_and_every_command_has_examples() {
    let w = World::new();
    let paths = all_paths(&w);
    assert!(paths.len() >= 15, "{paths:?}");
    for path in &paths {
        let o = w.cmd().args(path).arg("--help").output().unwrap();
        let help = stdout(&o);
        let (own, global) = help
            .split_once("\nGlobal options:\n")
            .unwrap_or_else(|| panic!("{path:?}: no `Global options:` heading\n{help}"));
        for g in GLOBAL {
            assert!(
                !own.contains(g),
                "{path:?}: {g} among the command's own options\n{help}"
            );
            assert!(
                global.contains(g),
                "{path:?}: {g} missing under Global options\n{help}"
            );
        }
        let examples = global
            .split_once("\nExample")
            .map(|(_, e)| e)
            .unwrap_or_else(|| panic!("{path:?}: no examples after the options\n{help}"));
        assert!(
            examples.contains(&format!("convirt {}", path[0])),
            "{path:?}: examples do not run the command\n{help}"
        );
    }
}

/// Whitespace collapsed, so wrapping and indentation do not count.
fn words(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The options of a help text: (flags, description), continuation lines joined.
fn options(help: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in help.lines() {
        let t = line.trim_start();
        let indent = line.len() - t.len();
        if t.starts_with('-') && (2..=6).contains(&indent) {
            let (flags, desc) = t.split_once("  ").unwrap_or((t, ""));
            out.push((flags.trim().to_string(), desc.trim().to_string()));
        } else if indent > 6 && !t.is_empty() {
            if let Some(last) = out.last_mut() {
                last.1.push(' ');
                last.1.push_str(t);
            }
        } else if !line.is_empty() && indent == 0 && line.starts_with("Example") {
            break;
        }
    }
    out
}

#[test]
fn help_and_man_pages_say_the_same() {
    let w = World::new();
    let dir = w.path().join("man");
    let o = w
        .cmd()
        .args(["-q", "manpage", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let mut with_top = all_paths(&w);
    with_top.push(Vec::new());
    for path in &with_top {
        let name = std::iter::once("convirt".to_string())
            .chain(path.iter().cloned())
            .collect::<Vec<_>>()
            .join("-");
        let page = dir.join(format!("{name}.1"));
        assert!(page.exists(), "no page {}", page.display());
        // man-db renders the page as a reader sees it; plain ASCII, no line breaks to undo.
        let man = std::process::Command::new("man")
            .arg("-l")
            .arg(&page)
            .env("LC_ALL", "C")
            .env("MANWIDTH", "2000")
            .env("MAN_KEEP_FORMATTING", "0")
            .env("MANPAGER", "cat")
            .env("PAGER", "cat")
            .output()
            .expect("man");
        assert!(man.status.success(), "{name}: {man:?}");
        // Strip overstrike bold/underline if any.
        let raw = String::from_utf8_lossy(&man.stdout).into_owned();
        let mut text = String::new();
        for c in raw.chars() {
            if c == '\u{8}' {
                text.pop();
            } else {
                text.push(c);
            }
        }
        let man_text = words(&text);
        let help_o = w.cmd().args(path).arg("--help").output().unwrap();
        let help = stdout(&help_o);
        // `convirt help X` is `convirt X --help`.
        let via_help = w.cmd().arg("help").args(path).output().unwrap();
        assert_eq!(
            stdout(&via_help),
            help,
            "{name}: `convirt help` differs from --help"
        );
        // The one-line description.
        let about = help.lines().next().unwrap();
        assert!(man_text.contains(&words(about)), "{name}: about `{about}`");
        // Every option and its description.
        let opts = options(&help);
        assert!(opts.len() >= GLOBAL.len(), "{name}: {opts:?}");
        for (flags, desc) in &opts {
            let long = flags
                .split([',', ' '])
                .find(|f| f.starts_with("--"))
                .unwrap_or(flags)
                .trim_end_matches("...");
            assert!(
                man_text.contains(long),
                "{name}: option {long} not in man page"
            );
            // Defaults and possible values: man lists them in its own layout.
            let (desc, values) = desc.split_once(" [possible values: ").unwrap_or((desc, ""));
            for v in values
                .trim_end_matches(']')
                .split(", ")
                .filter(|v| !v.is_empty())
            {
                assert!(man_text.contains(v), "{name}: value {v} not in man page");
            }
            let desc = desc.split(" [default").next().unwrap_or(desc);
            assert!(
                man_text.contains(&words(desc)),
                "{name}: `{desc}` not in man page:\n{man_text}"
            );
        }
        // Every example line.
        if let Some((_, ex)) = help.split_once("\nExample") {
            for line in ex.lines().skip(1).filter(|l| !l.trim().is_empty()) {
                assert!(
                    man_text.contains(&words(line)),
                    "{name}: example `{line}` not in man page"
                );
            }
        }
    }
}

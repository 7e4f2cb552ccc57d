//! The config language, one fixture file per case (adding a case means adding a file):
//! every file under `tests/fixtures/conf/valid` evaluates with `convirt conf eval` (exit 0,
//! stdout snapshot) and every file under `tests/fixtures/conf/invalid` is refused with located
//! diagnostics (exit 1, stderr snapshot), without a panic, within bounded CPU time and memory.
//!
//! A fixture may hold directive comments:
//! - `# fixture: ARGS` extra arguments for `conf eval` (e.g. `--format xl --vm web1`);
//! - `# expect-errors: N` how many errors an invalid file yields (default 1, so a cascade
//!   of follow-up errors shows up as a failure).

use crate::{World, repo};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The store path given on the command line, so `$IMAGE_STORE` is the same everywhere.
const STORE: &str = "/srv/convirt/image_store";
/// Address-space and CPU limits for every run: a runaway evaluation must end in an error
/// long before either.
const MEMORY_LIMIT: libc::rlim_t = 1 << 30;
const CPU_SECONDS: libc::rlim_t = 10;
/// Wall-clock bound (generous: the machine is shared and this is a debug build).
const WALL_LIMIT: Duration = Duration::from_secs(20);

struct Run {
    code: Option<i32>,
    signal: Option<i32>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

fn conf_eval(w: &World, file: &Path, extra: &[String]) -> Run {
    let mut c = w.command();
    c.args(["--arch", "x86_64", "--store", STORE, "conf", "eval"])
        .arg(file)
        .args(extra);
    // SAFETY: setrlimit is async-signal-safe and only touches the child being started.
    unsafe {
        c.pre_exec(|| {
            let limit = |resource, value: libc::rlim_t| {
                let r = libc::rlimit {
                    rlim_cur: value,
                    rlim_max: value,
                };
                if libc::setrlimit(resource, &r) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            };
            limit(libc::RLIMIT_AS, MEMORY_LIMIT)?;
            limit(libc::RLIMIT_CPU, CPU_SECONDS)
        });
    }
    let start = Instant::now();
    let out = c.output().expect("run convirt");
    use std::os::unix::process::ExitStatusExt;
    Run {
        code: out.status.code(),
        signal: out.status.signal(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: start.elapsed(),
    }
}

/// Replaces what differs between machines and runs with stable tokens: the fixture and temp
/// directories, the built-in fallback directories (root and non-root differ), the random
/// part of `$AUTOGEN_MAC` (only a MAC in Xen's range matches) and convirt's version.
fn stable(w: &World, text: &str) -> String {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let cache = if root {
        PathBuf::from("/var/cache/convirt")
    } else {
        w.home().join(".convirt")
    };
    let conf_dir = if root {
        PathBuf::from("/etc/xen")
    } else {
        cache.join("vm_configs")
    };
    let fixtures = repo().join("tests/fixtures/conf").display().to_string();
    let text = text
        .replace(&fixtures, "[FIXTURES]")
        .replace(
            &cache.join("vm_disks").display().to_string(),
            "[VM_DISKS_DIR]",
        )
        .replace(&conf_dir.display().to_string(), "[VM_CONF_DIR]");
    let text = w.filter(&text);
    let mac = regex::Regex::new(r"00:16:3e:[0-7][0-9a-f]:[0-9a-f]{2}:[0-9a-f]{2}").unwrap();
    let version = regex::Regex::new(r"convirt \d+\.\d+\.\d+").unwrap();
    let text = mac.replace_all(&text, "[MAC]");
    version.replace_all(&text, "convirt [VERSION]").into_owned()
}

/// The value of a `# NAME: value` directive in a fixture.
fn directive(file: &Path, name: &str) -> Option<String> {
    let bytes = std::fs::read(file).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let prefix = format!("# {name}:");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix).map(|v| v.trim().to_string()))
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

/// Checks that do not depend on the snapshot: problems are collected so one run shows all.
fn check_valid(name: &str, run: &Run, problems: &mut Vec<String>) {
    if run.code != Some(0) {
        problems.push(format!(
            "{name}: expected exit 0, got {:?} (signal {:?}):\n{}",
            run.code, run.signal, run.stderr
        ));
    }
    if !run.stderr.is_empty() {
        problems.push(format!("{name}: unexpected stderr:\n{}", run.stderr));
    }
    if run.elapsed > WALL_LIMIT {
        problems.push(format!("{name}: took {:?}", run.elapsed));
    }
}

fn check_invalid(file: &Path, run: &Run, problems: &mut Vec<String>) {
    let name = file_name(file);
    let err = &run.stderr;
    if run.code != Some(1) {
        problems.push(format!(
            "{name}: expected exit 1, got {:?} (signal {:?}):\n{err}",
            run.code, run.signal
        ));
    }
    if err.contains("panicked") {
        problems.push(format!("{name}: panicked:\n{err}"));
    }
    if run.elapsed > WALL_LIMIT {
        problems.push(format!("{name}: took {:?}", run.elapsed));
    }
    if !run.stdout.is_empty() {
        problems.push(format!("{name}: printed values although it failed"));
    }
    // Every error is located (`--> file:line:col`), shows its line with a caret, and says
    // what to do.
    let errors = err.lines().filter(|l| l.starts_with("error: ")).count();
    let located = regex::Regex::new(&format!(r"--> \S*{}:\d+:\d+\n", regex::escape(&name)))
        .unwrap()
        .find_iter(err)
        .count();
    let carets = regex::Regex::new(r"(?m)^ +\| *\^+$")
        .unwrap()
        .find_iter(err)
        .count();
    let hints = err.lines().filter(|l| l.starts_with("hint: ")).count();
    if errors == 0 || located != errors || carets != errors {
        problems.push(format!(
            "{name}: {errors} errors, {located} located, {carets} carets:\n{err}"
        ));
    }
    if hints < errors {
        problems.push(format!("{name}: an error without a hint:\n{err}"));
    }
    let want: usize = directive(file, "expect-errors")
        .map(|n| n.parse().expect("expect-errors: N"))
        .unwrap_or(1);
    if errors != want {
        problems.push(format!(
            "{name}: expected {want} errors, got {errors}:\n{err}"
        ));
    }
}

fn report(kind: &str, seen: usize, at_least: usize, problems: Vec<String>) {
    assert!(
        seen >= at_least,
        "only {seen} {kind} fixtures found (expected at least {at_least})"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

#[test]
fn valid_fixtures_evaluate_to_their_snapshots() {
    let w = World::new();
    let mut problems = Vec::new();
    let mut seen = 0;
    insta::glob!("../fixtures/conf/valid", "*.{conf,template}", |path| {
        seen += 1;
        let extra: Vec<String> = directive(path, "fixture")
            .map(|a| a.split_whitespace().map(String::from).collect())
            .unwrap_or_default();
        let run = conf_eval(&w, path, &extra);
        check_valid(&file_name(path), &run, &mut problems);
        insta::assert_snapshot!(stable(&w, &run.stdout));
    });
    report("valid", seen, 20, problems);
}

#[test]
fn invalid_fixtures_are_refused_with_located_diagnostics() {
    let w = World::new();
    let mut problems = Vec::new();
    let mut seen = 0;
    insta::glob!("../fixtures/conf/invalid", "*.conf", |path| {
        seen += 1;
        let run = conf_eval(&w, path, &[]);
        check_invalid(path, &run, &mut problems);
        insta::assert_snapshot!(stable(&w, &run.stderr));
    });
    report("invalid", seen, 40, problems);
}

/// Cases too big to keep as files: written to a temp dir, checked the same way.
#[test]
fn generated_invalid_fixtures_end_in_errors_within_bounds() {
    let w = World::new();
    let chain = format!("memory = {}\n", vec!["1"; 100_000].join("+"));
    let line = "padding = 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'\n";
    let two_megabytes = line.repeat((2 << 20) / line.len() + 1);
    let deep_calls = format!("x = {}1{}\n", "str(".repeat(5000), ")".repeat(5000));
    let cases: [(&str, String); 3] = [
        ("long_chain.conf", chain),
        ("two_megabytes.conf", two_megabytes),
        ("deep_calls.conf", deep_calls),
    ];
    let mut problems = Vec::new();
    for (name, text) in &cases {
        let file = w.write(&format!("generated/{name}"), text);
        let run = conf_eval(&w, &file, &[]);
        check_invalid(&file, &run, &mut problems);
        insta::assert_snapshot!(format!("generated_{name}"), stable(&w, &run.stderr));
    }
    report("generated", cases.len(), 3, problems);
}

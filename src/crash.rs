//! What a panic looks like to a user: a short message that names the command and asks for a
//! bug report, exit status 70, and the usual unwinding on the way out, so temporary trees
//! (an import's `.convirt-import-*`, a pack's `.convirt-pack-*`) are removed by their guards
//! and the store keeps its state. A panic is always a bug in convirt: bad input must end in
//! a diagnostic and exit 1, never here.

use std::io::Write;
use std::panic::{self, PanicHookInfo};
use std::sync::atomic::{AtomicBool, Ordering};

/// The exit status after a panic: `EX_SOFTWARE` from sysexits.h ("internal software error"),
/// distinct from 1 (the operation failed), 2 (usage) and Rust's own 101 (a panic that missed
/// this hook).
pub const EXIT_CRASH: i32 = 70;

/// Set (to anything non-empty) to make convirt panic on purpose once it has started, so the
/// crash path itself can be tested from outside (docs/fuzzing.md).
pub const TEST_PANIC_VAR: &str = "CONVIRT_TEST_PANIC";

/// Only the first panic gets the full message; others (from more threads) one line each.
static REPORTED: AtomicBool = AtomicBool::new(false);

/// Runs `main` with the crash hook installed and returns its exit code, or [`EXIT_CRASH`] if
/// it panicked.
pub fn run(main: fn() -> i32) -> i32 {
    panic::set_hook(Box::new(hook));
    let outcome = panic::catch_unwind(|| {
        if std::env::var_os(TEST_PANIC_VAR).is_some_and(|v| !v.is_empty()) {
            panic!("a panic on purpose: {TEST_PANIC_VAR} is set");
        }
        main()
    });
    outcome.unwrap_or(EXIT_CRASH)
}

/// The command line as the user typed it, quoted where a word needs it.
fn command_line() -> String {
    let words: Vec<String> = std::env::args_os()
        .enumerate()
        .map(|(i, a)| {
            let a = a.to_string_lossy();
            let a = if i == 0 {
                // The program's name, without the directory it was run from.
                a.rsplit('/').next().unwrap_or("convirt").to_string()
            } else {
                mask_assignment(&a)
            };
            quote(&a)
        })
        .collect();
    words.join(" ")
}

/// A `KEY=VALUE` word (`--set`, `--vm-set`) whose value is a secret, with the value masked:
/// a crash report is meant to be pasted into a bug report.
fn mask_assignment(word: &str) -> String {
    let bare = word.rsplit_once("--set=").map_or(word, |(_, w)| w);
    match bare.split_once('=') {
        Some((k, v)) if crate::state::is_secret(k, v) => {
            format!(
                "{}={}",
                &word[..word.len() - v.len() - 1],
                crate::state::MASK
            )
        }
        _ => word.to_string(),
    }
}

fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@+%".contains(&b));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

fn hook(info: &PanicHookInfo) {
    let what = info
        .payload()
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| info.payload().downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_string());
    let place = info
        .location()
        .map(|l| format!(" at {}:{}", l.file(), l.line()))
        .unwrap_or_default();
    let thread = std::thread::current()
        .name()
        .unwrap_or("unnamed")
        .to_string();
    let mut err = std::io::stderr().lock();
    if REPORTED.swap(true, Ordering::SeqCst) {
        let _ = writeln!(
            err,
            "error: another panic in thread `{thread}`: {what}{place}"
        );
        return;
    }
    let backtrace = std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0");
    // A helper thread's panic may be turned into an ordinary error by the thread that waits
    // for it (the parser's does); it is a bug all the same.
    let what_happened = if thread == "main" {
        "convirt crashed"
    } else {
        "a convirt thread crashed"
    };
    let _ = writeln!(
        err,
        "error: {what_happened}: this is a bug in convirt, not a problem with your input\n  \
         command: {}\n  \
         panic: {what}{place} (thread `{thread}`)\n\
         hint: please report it as a bug, with this message and the input the command read \
         (the files and values named above); temporary files were removed on the way out\n\
         hint: {}",
        command_line(),
        if backtrace {
            "the backtrace follows"
        } else {
            "run it again with `RUST_BACKTRACE=1` for a backtrace to add to the report"
        }
    );
    if backtrace {
        let _ = writeln!(err, "{}", std::backtrace::Backtrace::force_capture());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_for_a_shell() {
        assert_eq!(quote("image"), "image");
        assert_eq!(quote("--set=memory=512"), "--set=memory=512");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
    }
}

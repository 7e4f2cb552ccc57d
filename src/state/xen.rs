//! The few Xen toolstack calls records need: `xl list` (is a domain running?), `xl create`
//! (`provision --start`) and the auto-start link (`provision --autostart`). `xl` is found on
//! `PATH`, then in the sbin directories; every failure comes back as plain text saying what is missing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Why `xl` could not answer, in words an admin can act on.
fn xl_failure(what: &str, out: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("no error output");
    let hint =
        if err.contains("hypervisor") || err.contains("xenstore") || err.contains("/proc/xen") {
            " (this host is not running under the Xen hypervisor)"
        } else {
            ""
        };
    let status = match out.status.code() {
        Some(c) => format!("exit status {c}"),
        None => "killed by a signal".into(),
    };
    format!("`{what}` failed ({status}): {last}{hint}")
}

fn spawn_failure(what: &str, e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::NotFound {
        format!("`{what}`: `xl` is not installed (no Xen tools on this host's PATH)")
    } else {
        format!("`{what}`: cannot run `xl`: {e}")
    }
}

/// `xl ARGS`, found like every tool (`crate::sys::find_tool`), stopped after the tool
/// timeout.
fn xl(args: &[&std::ffi::OsStr], what: &str) -> Result<std::process::Output, String> {
    xl_within(args, what, crate::sys::TOOL_TIMEOUT)
}

fn xl_within(
    args: &[&std::ffi::OsStr],
    what: &str,
    timeout: Duration,
) -> Result<std::process::Output, String> {
    let xl = crate::sys::find_tool("xl").map_err(|why| format!("`{what}`: {why}"))?;
    crate::sys::output_with_timeout(Command::new(xl).args(args), timeout)
        .map_err(|e| spawn_failure(what, &e))
}

/// The output of `xl list`, or why it could not be had.
fn xl_list() -> Result<String, String> {
    xl_list_within(crate::sys::TOOL_TIMEOUT)
}

fn xl_list_within(timeout: Duration) -> Result<String, String> {
    let out = xl_within(&["list".as_ref()], "xl list", timeout)?;
    if !out.status.success() {
        return Err(xl_failure("xl list", &out));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The domains as `domains` gives them, `xl list` stopped after `timeout` (a page or a
/// listing waits for it).
pub(crate) fn domains_within(timeout: Duration) -> Result<Vec<Domain>, String> {
    xl_list_within(timeout).map(|t| parse_domains(&t))
}

/// The names of the running domains, or why `xl list` could not say.
pub(crate) fn running_domains() -> Result<Vec<String>, String> {
    xl_list().map(|t| parse_list(&t))
}

/// The domains Xen runs, with what `xl list` says of each, or why it could not say.
pub(crate) fn domains() -> Result<Vec<Domain>, String> {
    xl_list().map(|t| parse_domains(&t))
}

/// One domain as `xl list` shows it: `Name ID Mem VCPUs State Time(s)`. A managed server
/// sends its domains in this form (`provision::proto`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct Domain {
    pub name: String,
    pub id: u32,
    /// `Mem`: MiB.
    pub memory_mib: u64,
    pub vcpus: u32,
    /// One word for `flags`: running (`r`, `b` or none: it has or waits for a CPU), paused,
    /// shutdown, crashed or dying.
    pub state: &'static str,
    /// `State` as `xl` prints it, e.g. `-b----`.
    pub flags: String,
    /// `Time(s)`: CPU time used, seconds.
    pub cpu_seconds: f64,
}

/// A domain as another convirt sent it; its state word is taken again from the flags.
#[derive(serde::Deserialize)]
struct WireDomain {
    name: String,
    id: u32,
    memory_mib: u64,
    vcpus: u32,
    flags: String,
    cpu_seconds: f64,
}

impl<'de> serde::Deserialize<'de> for Domain {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Domain, D::Error> {
        let w = WireDomain::deserialize(d)?;
        Ok(Domain {
            state: state_word(&w.flags),
            name: w.name,
            id: w.id,
            memory_mib: w.memory_mib,
            vcpus: w.vcpus,
            flags: w.flags,
            cpu_seconds: w.cpu_seconds,
        })
    }
}

/// The word for `xl list`'s state flags (`rbpscd`, `-` where unset).
pub(crate) fn state_word(flags: &str) -> &'static str {
    let has = |c| flags.contains(c);
    if has('d') {
        "dying"
    } else if has('c') {
        "crashed"
    } else if has('s') {
        "shutdown"
    } else if has('p') {
        "paused"
    } else {
        "running"
    }
}

/// The rows of `xl list` after its header line; a row that is not six columns of the
/// expected kinds is left out (`parse_list` still sees its name).
pub(crate) fn parse_domains(text: &str) -> Vec<Domain> {
    text.lines()
        .skip_while(|l| !l.trim_start().starts_with("Name"))
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let [name, id, mem, vcpus, flags, time] = f.as_slice() else {
                return None;
            };
            Some(Domain {
                name: (*name).to_string(),
                id: id.parse().ok()?,
                memory_mib: mem.parse().ok()?,
                vcpus: vcpus.parse().ok()?,
                state: state_word(flags),
                flags: (*flags).to_string(),
                cpu_seconds: time.parse().ok()?,
            })
        })
        .collect()
}

/// The first column of `xl list` after its header line.
pub(crate) fn parse_list(text: &str) -> Vec<String> {
    text.lines()
        .skip_while(|l| !l.trim_start().starts_with("Name"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect()
}

/// Whether a domain of this name runs; `Err` says why `xl` could not tell.
pub(crate) fn is_running(vm: &str) -> Result<bool, String> {
    running_domains().map(|d| d.iter().any(|n| n == vm))
}

/// `xl create CONFIG`.
pub(crate) fn create(config: &Path) -> Result<(), String> {
    let what = format!("xl create {}", config.display());
    let out = xl(&["create".as_ref(), config.as_os_str()], &what)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(xl_failure(&what, &out))
    }
}

/// The link `provision --autostart` makes for a config.
pub(crate) fn autostart_link(auto_dir: &Path, config: &Path) -> PathBuf {
    auto_dir.join(config.file_name().unwrap_or(config.as_os_str()))
}

/// Links the config into the auto-start directory (created when missing). An existing link
/// is replaced only with `force`.
pub(crate) fn link_autostart(link: &Path, config: &Path, force: bool) -> std::io::Result<()> {
    if let Some(d) = link.parent() {
        std::fs::create_dir_all(d)?;
    }
    if force && std::fs::symlink_metadata(link).is_ok_and(|m| m.file_type().is_symlink()) {
        std::fs::remove_file(link)?;
    }
    std::os::unix::fs::symlink(config, link)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xl_list_names_after_the_header() {
        let text = "Name                                        ID   Mem VCPUs\tState\tTime(s)\n\
                    Domain-0                                     0  1024     2     r-----      12.3\n\
                    web1                                         3   512     1     -b----       1.0\n";
        assert_eq!(parse_list(text), ["Domain-0", "web1"]);
        assert!(parse_list("").is_empty());
    }

    /// `xl list` as Xen 4.17 printed it in the Xen world's dom0 (tests/xen_world), tabs
    /// included.
    const REAL_XL_LIST: &str = "Name                                        ID   Mem VCPUs\tState\tTime(s)\n\
        Domain-0                                     0  1024     2     r-----    1142.4\n\
        auto1                                        1   256     1     ------      10.0\n";

    #[test]
    fn xl_list_rows_give_state_memory_vcpus_and_cpu_time() {
        let d = parse_domains(REAL_XL_LIST);
        assert_eq!(
            d,
            [
                Domain {
                    name: "Domain-0".into(),
                    id: 0,
                    memory_mib: 1024,
                    vcpus: 2,
                    state: "running",
                    flags: "r-----".into(),
                    cpu_seconds: 1142.4,
                },
                Domain {
                    name: "auto1".into(),
                    id: 1,
                    memory_mib: 256,
                    vcpus: 1,
                    state: "running",
                    flags: "------".into(),
                    cpu_seconds: 10.0,
                }
            ]
        );
        assert_eq!(parse_list(REAL_XL_LIST), ["Domain-0", "auto1"]);
        // A row that is not six columns of the right kinds is left out, not guessed.
        let odd = format!("{REAL_XL_LIST}half 3 x\n(null) 7 0 1 --ps-d 0.0\n");
        let d = parse_domains(&odd);
        assert_eq!(d.len(), 3, "{d:?}");
        assert_eq!(d[2].state, "dying");
        assert!(parse_domains("").is_empty());
    }

    #[test]
    fn domains_travel_between_two_convirts_with_their_state_word() {
        let d = parse_domains(REAL_XL_LIST);
        let json = serde_json::to_string(&d).unwrap();
        let back: Vec<Domain> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, d);
        // The word is taken again from the flags, never from the sender's text.
        let odd = json.replacen("\"running\"", "\"gone\"", 1);
        let back: Vec<Domain> = serde_json::from_str(&odd).unwrap();
        assert_eq!(back[0].state, "running");
    }

    #[test]
    fn state_flags_become_one_word() {
        for (flags, word) in [
            ("r-----", "running"),
            ("-b----", "running"),
            ("------", "running"),
            ("--p---", "paused"),
            ("---s--", "shutdown"),
            ("----c-", "crashed"),
            ("-----d", "dying"),
            ("--ps--", "shutdown"),
        ] {
            assert_eq!(state_word(flags), word, "{flags}");
        }
    }
}

//! VMs on managed servers in the records (issues #9, #10; docs/records.md): the directory a
//! host's records live in, the driver's report of what a run created (read defensively: it
//! comes over the network), and the server-side script that removes exactly what a record
//! names, with its answer read back. Nothing here runs ssh; `cli::vm_remote` does.

use super::{Item, Kind};
use crate::value::shell_quote;
use std::path::{Path, PathBuf};

/// The directory name of a host under `<state_dir>/hosts/`: the name as given (a
/// `[hosts.NAME]` name or `user@server:port`), every byte outside `A-Za-z0-9._-`
/// percent-encoded (`root@10.0.0.5:2222` → `root%4010.0.0.5%3A2222`), so that two hosts never
/// share a directory and no name climbs out of it. A leading `.` is encoded too, and so is
/// the first letter of `localhost`, the name records use for this machine.
pub(crate) fn host_dir_name(host: &str) -> String {
    let mut out = String::new();
    for (i, b) in host.bytes().enumerate() {
        let plain = b.is_ascii_alphanumeric() || b"_-".contains(&b) || (b == b'.' && i > 0);
        if plain && !(i == 0 && host == super::LOCALHOST) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The host name back from its directory name; `None` for a name `host_dir_name` never makes.
pub(crate) fn host_from_dir_name(dir: &str) -> Option<String> {
    let b = dir.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    let host = String::from_utf8(out).ok()?;
    (!host.is_empty() && host_dir_name(&host) == dir).then_some(host)
}

/// `<state_dir>/hosts/<host>`.
pub(crate) fn host_dir(state_dir: &Path, host: &str) -> PathBuf {
    state_dir.join("hosts").join(host_dir_name(host))
}

/// Where the console-side lock of a remote VM lives: `<state_dir>/remote-locks/<host>/locks/
/// <vm>.lock` (the layout `provision::lock` makes under a root), held by the convirt that
/// provisions or removes that VM, so `vm list` can tell a running remote run from an
/// interrupted one.
pub(crate) fn lock_root(state_dir: &Path, host: &str) -> PathBuf {
    state_dir.join("remote-locks").join(host_dir_name(host))
}

/// The longest report convirt reads from a driver: far more than any run creates.
pub(crate) const MAX_REPORT: usize = 4 << 20;

/// Collects the driver's report from its stderr: a line `CONVIRT:report <bytes>`, then that
/// many bytes (entries that may hold newlines, so counted rather than read as lines).
#[derive(Debug, Default)]
pub(crate) struct Collector {
    want: usize,
    active: bool,
    buf: Vec<u8>,
    /// The whole block, once it has arrived.
    pub done: Option<Vec<u8>>,
}

impl Collector {
    /// Takes one chunk of stderr (a line, as read); true when it belonged to the report.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> bool {
        if self.active {
            let take = (self.want - self.buf.len()).min(chunk.len());
            self.buf.extend_from_slice(&chunk[..take]);
            if self.buf.len() == self.want {
                self.active = false;
                self.done = Some(std::mem::take(&mut self.buf));
            }
            return true;
        }
        let line = String::from_utf8_lossy(chunk);
        let Some(n) = line.trim_end().strip_prefix("CONVIRT:report ") else {
            return false;
        };
        match n.parse::<usize>() {
            Ok(0) => {
                self.done = Some(Vec::new());
                true
            }
            Ok(n) if n <= MAX_REPORT => {
                self.want = n;
                self.active = true;
                self.buf.clear();
                true
            }
            _ => false,
        }
    }
}

/// Reads a report: entries `kind TAB size TAB dev TAB ino TAB birth TAB type TAB path NUL`,
/// then a newline. Any entry that is not exactly that makes the whole report unusable:
/// convirt then records only what it knows from the plan.
pub(crate) fn parse_report(block: &[u8]) -> Result<Vec<Item>, String> {
    let mut items = Vec::new();
    let mut parts: Vec<&[u8]> = block.split(|b| *b == 0).collect();
    match parts.pop() {
        Some(last) if last.iter().all(u8::is_ascii_whitespace) => {}
        _ => return Err("the report does not end after its last entry".into()),
    }
    for (n, e) in parts.iter().enumerate() {
        let e = std::str::from_utf8(e).map_err(|_| format!("entry {}: not UTF-8", n + 1))?;
        let f: Vec<&str> = e.splitn(7, '\t').collect();
        let [kind, size, dev, ino, born, ftype, path] = f[..] else {
            return Err(format!("entry {}: {} fields, not 7", n + 1, f.len()));
        };
        let kind = kind_of(kind).ok_or_else(|| format!("entry {}: kind `{kind}`", n + 1))?;
        let num = |s: &str| -> Result<Option<u64>, String> {
            if s.is_empty() {
                Ok(None)
            } else {
                s.parse()
                    .map(Some)
                    .map_err(|_| format!("entry {}: `{s}` is not a number", n + 1))
            }
        };
        if path.is_empty() || (kind != Kind::Lvm && !path.starts_with('/')) {
            return Err(format!("entry {}: `{path}` is not an absolute path", n + 1));
        }
        let mut item = Item::new(path, kind);
        item.size = num(size)?.filter(|_| ftype != "directory");
        item.dev = num(dev)?;
        item.ino = num(ino)?;
        item.born = parse_birth(born);
        items.push(item);
    }
    Ok(items)
}

fn kind_of(s: &str) -> Option<Kind> {
    Some(match s {
        "config" => Kind::Config,
        "autostart" => Kind::Autostart,
        "disk" => Kind::Disk,
        "lvm" => Kind::Lvm,
        "file" => Kind::File,
        "dir" => Kind::Dir,
        "log" => Kind::Log,
        "workdir" => Kind::Workdir,
        _ => return None,
    })
}

/// `stat`'s `%.9W` (seconds.nanoseconds) as nanoseconds; `0.000000000`, `-` or anything
/// else unreadable means the file system keeps no birth time.
pub(crate) fn parse_birth(s: &str) -> Option<u128> {
    let (secs, nanos) = s.split_once('.')?;
    if nanos.len() != 9 || !nanos.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v = secs.parse::<u128>().ok()?.checked_mul(1_000_000_000)? + nanos.parse::<u128>().ok()?;
    (v > 0).then_some(v)
}

/// A birth time as `stat -c %.9W` prints it.
fn format_birth(ns: u128) -> String {
    format!("{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000)
}

/// The bash script (fed to `bash -s` on the server, never on a command line) that checks
/// whether the VM's domain runs, then removes (or with `dry_run`, only looks at) the given
/// items, newest first as given, each only if it is still the very file the run created.
/// It answers `CONVIRT:xl running|notrunning|cannot WHY`, one `CONVIRT:step N ACTION [WHY]`
/// per item, and `CONVIRT:end`. A running domain stops it before anything is touched.
pub(crate) fn removal_script(vm: &str, items: &[(usize, &Item)], dry_run: bool) -> String {
    let mut s = String::from(REMOVAL_FUNCTIONS);
    s.push_str("main() {\n");
    s.push_str(&format!(
        "VM={}\nDRY={}\nxl_state\n",
        shell_quote(vm),
        u8::from(dry_run)
    ));
    s.push_str("if [[ $RUNNING == 1 ]]; then say end; return; fi\n");
    for (i, item) in items {
        let num = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
        s.push_str(&format!(
            "one {i} {} {} {} {} {}\n",
            item.kind,
            num(item.dev),
            num(item.ino),
            item.born.map(format_birth).unwrap_or_else(|| "-".into()),
            shell_quote(&item.path)
        ));
    }
    s.push_str("say end\n}\nmain < /dev/null\n");
    s
}

const REMOVAL_FUNCTIONS: &str = r#"set -u
export LC_ALL=C
say() { printf 'CONVIRT:%s\n' "$*"; }
RUNNING=0
xl_state() {
    local out name rest seen=0
    if ! command -v xl > /dev/null 2>&1; then
        say "xl cannot \`xl\` is not installed on $(uname -n)"
        return
    fi
    if ! out=$(xl list 2>&1); then
        out=${out%$'\n'}
        say "xl cannot \`xl list\` failed: ${out##*$'\n'}"
        return
    fi
    while read -r name rest; do
        if ((seen)) && [[ "$name" == "$VM" ]]; then
            RUNNING=1
            say "xl running"
            return
        fi
        [[ "$name" == Name ]] && seen=1
    done <<< "$out"
    say "xl notrunning"
}
one() {
    local i=$1 kind=$2 dev=$3 ino=$4 born=$5 p=$6 out d n b
    if [[ "$kind" == lvm ]]; then
        if ((DRY)); then
            say "step $i remove"
        elif out=$(lvremove -f -- "$p" 2>&1); then
            say "step $i removed"
        else
            say "step $i failed lvremove: ${out//$'\n'/ }"
        fi
        return
    fi
    if [[ ! -e "$p" && ! -L "$p" ]]; then
        say "step $i gone"
        return
    fi
    if [[ "$dev" != - && "$kind" != config && "$kind" != dir ]]; then
        read -r d n b <<< "$(stat -c '%d %i %.9W' -- "$p" 2> /dev/null)"
        if [[ "${d:-}" != "$dev" || "${n:-}" != "$ino" ]] ||
            [[ "$born" != - && "${b:-}" != 0.000000000 && "${b:-}" != "$born" ]]; then
            say "step $i kept replaced since provisioning (another file now has this path)"
            return
        fi
    fi
    if ((DRY)); then
        if [[ -d "$p" && ! -L "$p" ]]; then
            say "step $i remove if empty"
        else
            say "step $i remove"
        fi
        return
    fi
    if [[ "$kind" == workdir && -d "$p" && ! -L "$p" ]]; then
        out=$(rm -rf -- "$p" 2>&1)
    elif [[ -d "$p" && ! -L "$p" ]]; then
        if ! out=$(rmdir -- "$p" 2>&1); then
            if [[ "$out" == *"not empty"* ]]; then
                say "step $i kept not empty: holds files this run did not create"
                return
            fi
            false
        fi
    else
        out=$(rm -f -- "$p" 2>&1)
    fi
    if (($? == 0)) && [[ ! -e "$p" && ! -L "$p" ]]; then
        say "step $i removed"
    else
        say "step $i failed ${out//$'\n'/ }"
    fi
}
"#;

/// The bash script (fed to `bash -s` on the server) that says which of `paths` exist there:
/// `CONVIRT:p N 1|0` per path, then `CONVIRT:end`. An LVM volume `VG/LV` is looked for as
/// `/dev/VG/LV` (present while the volume is active).
pub(crate) fn presence_script(items: &[&Item]) -> String {
    let mut s = String::from(
        "set -u\nt() { if [[ -e \"$2\" || -L \"$2\" ]]; then echo \"CONVIRT:p $1 1\"; else echo \"CONVIRT:p $1 0\"; fi; }\n",
    );
    for (n, i) in items.iter().enumerate() {
        let path = if i.kind == Kind::Lvm {
            format!("/dev/{}", i.path)
        } else {
            i.path.clone()
        };
        s.push_str(&format!("t {n} {}\n", shell_quote(&path)));
    }
    s.push_str("echo CONVIRT:end\n");
    s
}

/// Reads the presence script's answer: per path index, there or not; `None` when the answer
/// did not arrive whole.
pub(crate) fn parse_presence(out: &str, count: usize) -> Option<Vec<bool>> {
    let mut got: Vec<Option<bool>> = vec![None; count];
    let mut end = false;
    for line in out.lines() {
        if line == "CONVIRT:end" {
            end = true;
        }
        let Some(rest) = line.strip_prefix("CONVIRT:p ") else {
            continue;
        };
        let Some((n, v)) = rest.split_once(' ') else {
            continue;
        };
        if let (Ok(n), Some(v)) = (n.parse::<usize>(), ["0", "1"].iter().position(|x| *x == v))
            && let Some(slot) = got.get_mut(n)
        {
            *slot = Some(v == 1);
        }
    }
    if !end {
        return None;
    }
    got.into_iter().collect()
}

/// What the removal script answered.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Removal {
    /// `Ok(true)`: the domain runs (nothing was touched); `Err`: why `xl` could not tell.
    pub running: Option<Result<bool, String>>,
    /// Per item index: the action and why.
    pub steps: Vec<(usize, &'static str, String)>,
    /// The script got to its end (else the connection broke off).
    pub complete: bool,
}

/// Reads the script's answer; lines it does not know are left out, never trusted.
pub(crate) fn parse_removal(out: &str) -> Removal {
    let mut r = Removal::default();
    for line in out.lines() {
        let Some(rest) = line.strip_prefix("CONVIRT:") else {
            continue;
        };
        let (word, text) = rest.split_once(' ').unwrap_or((rest, ""));
        match word {
            "end" => r.complete = true,
            "xl" => {
                let (w, why) = text.split_once(' ').unwrap_or((text, ""));
                r.running = match w {
                    "running" => Some(Ok(true)),
                    "notrunning" => Some(Ok(false)),
                    _ => Some(Err(why.to_string())),
                };
            }
            "step" => {
                let mut f = text.splitn(3, ' ');
                let (Some(n), Some(action)) = (f.next(), f.next()) else {
                    continue;
                };
                let Ok(n) = n.parse::<usize>() else { continue };
                let action = match action {
                    "remove" => "remove",
                    "removed" => "removed",
                    "gone" => "gone",
                    "kept" => "kept",
                    "failed" => "failed",
                    _ => continue,
                };
                r.steps
                    .push((n, action, f.next().unwrap_or("").to_string()));
            }
            _ => {}
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_make_safe_distinct_directories_and_come_back() {
        for (host, dir) in [
            ("srv0", "srv0"),
            ("root@10.0.0.5:2222", "root%4010.0.0.5%3A2222"),
            ("root_10.0.0.5_2222", "root_10.0.0.5_2222"),
            ("..", "%2E."),
            (".x", "%2Ex"),
            ("a/b", "a%2Fb"),
            ("localhost", "%6Cocalhost"),
            ("[::1]:22", "%5B%3A%3A1%5D%3A22"),
        ] {
            assert_eq!(host_dir_name(host), dir);
            assert_eq!(host_from_dir_name(dir).as_deref(), Some(host));
        }
        for bad in ["", "%", "%4", "%zz", "a%2Eb", "localhost", ".x", "%FF"] {
            assert_eq!(host_from_dir_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_report_arrives_over_several_lines_and_parses() {
        let block = b"config\t12\t64\t7\t1700000000.000000123\tregular file\t/etc/xen/a.cfg\0\
disk\t4096\t64\t8\t0.000000000\tregular file\t/srv/d/a b\nc.disk\0\
lvm\t\t\t\t\t\tvg/a\0\
dir\t4096\t64\t9\t-\tdirectory\t/srv/d\0\n";
        let mut c = Collector::default();
        assert!(!c.feed(b"CONVIRT:installed /etc/xen/a.cfg\n"));
        assert!(c.feed(format!("CONVIRT:report {}\n", block.len()).as_bytes()));
        let mut rest: &[u8] = block;
        while let Some(n) = rest.iter().position(|b| *b == b'\n') {
            assert!(c.done.is_none());
            assert!(c.feed(&rest[..=n]));
            rest = &rest[n + 1..];
        }
        let items = parse_report(c.done.as_ref().unwrap()).unwrap();
        assert_eq!(items.len(), 4);
        assert_eq!(items[0].kind, Kind::Config);
        assert_eq!(items[0].born, Some(1_700_000_000_000_000_123));
        assert_eq!((items[0].dev, items[0].ino), (Some(64), Some(7)));
        assert_eq!(items[1].path, "/srv/d/a b\nc.disk");
        assert_eq!((items[1].size, items[1].born), (Some(4096), None));
        assert_eq!((items[2].kind, items[2].path.as_str()), (Kind::Lvm, "vg/a"));
        assert_eq!((items[3].kind, items[3].size), (Kind::Dir, None));
        assert!(!c.feed(b"CONVIRT:done\n"));
    }

    #[test]
    fn hostile_or_truncated_reports_never_panic_and_are_refused() {
        let mut c = Collector::default();
        for line in [
            "CONVIRT:report 99999999999999999999999\n",
            "CONVIRT:report -1\n",
            "CONVIRT:report \n",
            "CONVIRT:report 999999999\n",
        ] {
            assert!(!c.feed(line.as_bytes()), "{line}");
        }
        assert!(c.feed(b"CONVIRT:report 10\n"));
        assert!(c.feed(b"file\t1\t2"));
        assert!(c.done.is_none(), "a truncated report is not done");
        for bad in [
            &b"file\t1\t2\t3\t-\tregular file\0\n"[..],
            b"file\t1\t2\t3\t-\tregular\t relative\0\n",
            b"wat\t1\t2\t3\t-\tregular file\t/a\0\n",
            b"file\tx\t2\t3\t-\tregular file\t/a\0\n",
            b"file\t1\t2\t3\t-\tregular file\t\0\n",
            b"file\t\xff\t2\t3\t-\tregular file\t/a\0\n",
            b"\0\0\0\n",
            b"trailing garbage",
        ] {
            assert!(
                parse_report(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(parse_report(b"\n").unwrap(), vec![]);
        assert_eq!(parse_report(b"").unwrap(), vec![]);
        for b in [
            "",
            "-",
            "0.000000000",
            "1.5",
            "x.000000001",
            "1.00000000x",
            "99999999999999999999999999999999999999.000000000",
        ] {
            assert_eq!(parse_birth(b), None, "{b}");
        }
    }

    #[test]
    fn removal_answers_are_read_and_unknown_lines_ignored() {
        let r = parse_removal(
            "CONVIRT:xl cannot `xl list` failed: no hypervisor\nCONVIRT:step 2 removed\nnoise\n\
             CONVIRT:step 1 kept not empty: holds files\nCONVIRT:step x removed\nCONVIRT:step 3 wiped\n\
             CONVIRT:step 4\nCONVIRT:end\n",
        );
        assert_eq!(
            r.running,
            Some(Err("`xl list` failed: no hypervisor".to_string()))
        );
        assert_eq!(
            r.steps,
            vec![
                (2, "removed", String::new()),
                (1, "kept", "not empty: holds files".to_string())
            ]
        );
        assert!(r.complete);
        assert!(!parse_removal("CONVIRT:xl running\n").complete);
    }

    #[test]
    fn the_presence_script_answers_per_path() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("it's here");
        std::fs::write(&f, b"").unwrap();
        let items = [
            Item::new(f.display().to_string(), Kind::Disk),
            Item::new("/nonexistent/x", Kind::Config),
            Item::new("novg/nolv", Kind::Lvm),
        ];
        let refs: Vec<&Item> = items.iter().collect();
        let out = bash_s(
            &presence_script(&refs),
            &std::env::var("PATH").unwrap_or_default(),
        );
        assert_eq!(parse_presence(&out, 3), Some(vec![true, false, false]));
        // Truncated, hostile or short answers are no answer.
        assert_eq!(parse_presence("CONVIRT:p 0 1\n", 1), None);
        assert_eq!(parse_presence("CONVIRT:p 0 1\nCONVIRT:end\n", 2), None);
        assert_eq!(
            parse_presence(
                "CONVIRT:p 99 1\nCONVIRT:p 0 2\nCONVIRT:p x\nCONVIRT:p 0 0\nCONVIRT:end\n",
                1
            ),
            Some(vec![false])
        );
    }

    proptest::proptest! {
        /// Whatever a server sends, reading it never panics, and what is accepted is sane.
        #[test]
        fn any_bytes_from_a_server_are_read_without_panic(
            chunks in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..80), 0..8),
            header in 0usize..200,
        ) {
            let mut c = Collector::default();
            c.feed(format!("CONVIRT:report {header}\n").as_bytes());
            for ch in &chunks {
                c.feed(ch);
            }
            let all: Vec<u8> = chunks.concat();
            if let Ok(items) = parse_report(&all) {
                for i in items {
                    proptest::prop_assert!(i.kind == Kind::Lvm || i.path.starts_with('/'));
                }
            }
            if let Some(block) = &c.done {
                proptest::prop_assert_eq!(block.len(), header);
                let _ = parse_report(block);
            }
            let text = String::from_utf8_lossy(&all);
            let _ = parse_removal(&text);
            let _ = parse_presence(&text, header);
            let _ = parse_birth(&text);
            let _ = host_from_dir_name(&text);
        }

        /// Every host name has its own directory name, safe and reversible.
        #[test]
        fn host_directory_names_are_safe_and_reversible(host in "\\PC{1,30}") {
            let dir = host_dir_name(&host);
            proptest::prop_assert!(!dir.contains('/') && dir != "." && dir != ".." && !dir.starts_with('.'));
            proptest::prop_assert!(dir != crate::state::LOCALHOST);
            proptest::prop_assert_eq!(host_from_dir_name(&dir), Some(host));
        }
    }

    /// Runs `script` here as the server would: `bash -s` on its standard input; its stdout.
    fn bash_s(script: &str, path: &str) -> String {
        use std::io::Write;
        let mut c = std::process::Command::new("bash")
            .arg("-s")
            .env("PATH", path)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        String::from_utf8_lossy(&c.wait_with_output().unwrap().stdout).into_owned()
    }

    /// The removal script run here, as the server would run it.
    fn run_script(items: &[(usize, &Item)], dry: bool, path: &str) -> Removal {
        parse_removal(&bash_s(&removal_script("v1", items, dry), path))
    }

    #[test]
    fn the_removal_script_removes_only_the_same_files() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("disks");
        std::fs::create_dir(&d).unwrap();
        let disk = d.join("v1 it's.disk");
        std::fs::write(&disk, b"x").unwrap();
        let other = d.join("other.disk");
        std::fs::write(&other, b"y").unwrap();
        let replaced = d.join("replaced.disk");
        std::fs::write(&replaced, b"z").unwrap();
        let items = [
            Item::new(d.display().to_string(), Kind::Dir).stat(),
            Item::new(disk.display().to_string(), Kind::Disk).stat(),
            Item::new(replaced.display().to_string(), Kind::Disk).stat(),
            Item::new("/nonexistent/convirt-test", Kind::File),
        ];
        std::fs::remove_file(&replaced).unwrap();
        std::fs::write(d.join("pad"), b"").unwrap(); // the old inode must not come back
        std::fs::write(&replaced, b"new").unwrap();
        let order: Vec<(usize, &Item)> = items.iter().enumerate().rev().collect();
        // No `xl` on this PATH: "could not check", and the removal goes on.
        let dry = run_script(&order, true, "/usr/bin:/bin");
        assert!(dry.complete);
        let actions: Vec<(usize, &str)> = dry.steps.iter().map(|s| (s.0, s.1)).collect();
        assert_eq!(
            actions,
            [(3, "gone"), (2, "kept"), (1, "remove"), (0, "remove")]
        );
        assert!(disk.exists());
        let r = run_script(&order, false, "/usr/bin:/bin");
        assert!(r.complete);
        assert!(matches!(r.running, Some(Err(_))) || r.running == Some(Ok(false)));
        let actions: Vec<(usize, &str)> = r.steps.iter().map(|s| (s.0, s.1)).collect();
        assert_eq!(
            actions,
            [(3, "gone"), (2, "kept"), (1, "removed"), (0, "kept")]
        );
        assert!(!disk.exists() && other.exists() && replaced.exists());
    }

    #[test]
    fn logical_volumes_go_with_lvremove() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let bin = t.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        // A recording stand-in for `lvremove` (this kernel has no device-mapper): it fails
        // for `vg0/busy`, as LVM does for an open volume.
        let log = t.path().join("calls");
        std::fs::write(
            bin.join("lvremove"),
            format!(
                "#!/bin/bash
echo \"$*\" >> {}
[[ $3 == vg0/busy ]] && {{ echo '  Logical volume vg0/busy in use.' >&2; exit 5; }}
exit 0
",
                log.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(bin.join("lvremove"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        let ok = Item::new("vg0/v1", Kind::Lvm);
        let busy = Item::new("vg0/busy", Kind::Lvm);
        let path = format!("{}:/usr/bin:/bin", bin.display());
        let dry = run_script(&[(1, &busy), (0, &ok)], true, &path);
        assert_eq!(
            dry.steps,
            vec![(1, "remove", String::new()), (0, "remove", String::new())]
        );
        assert!(!log.exists(), "a dry run ran lvremove");
        let r = run_script(&[(1, &busy), (0, &ok)], false, &path);
        assert_eq!(
            r.steps,
            vec![
                (
                    1,
                    "failed",
                    "lvremove:   Logical volume vg0/busy in use.".to_string()
                ),
                (0, "removed", String::new())
            ]
        );
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "-f -- vg0/busy\n-f -- vg0/v1\n"
        );
    }

    #[test]
    fn a_running_domain_stops_the_script_before_anything_goes() {
        let t = tempfile::tempdir().unwrap();
        let bin = t.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        // A stand-in for `xl` that lists v1 as running (named as such: not the real xl).
        let xl = bin.join("xl");
        std::fs::write(
            &xl,
            "#!/bin/sh\necho 'Name ID Mem VCPUs State Time(s)'\necho 'Domain-0 0 1024 2 r----- 1.0'\necho 'v1 3 512 1 -b---- 1.0'\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&xl, std::fs::Permissions::from_mode(0o755)).unwrap();
        let f = t.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        let item = Item::new(f.display().to_string(), Kind::File).stat();
        let r = run_script(
            &[(0, &item)],
            false,
            &format!("{}:/usr/bin:/bin", bin.display()),
        );
        assert_eq!(r.running, Some(Ok(true)));
        assert!(r.steps.is_empty() && r.complete);
        assert!(f.exists());
    }
}

//! The one encoding of host names as directory names (issue #17): every per-host directory
//! (records under `<state_dir>/hosts/`, the console-side locks, the local copies of server
//! logs) is named by `host_dir_name`, and only records read names back. A leaf: it imports
//! nothing of the crate, so the lock module, the records and the CLI can all use it.

/// The host name records use for VMs made on this machine (its directory is `vms/`, so no
/// encoded host name may equal it).
pub(crate) const LOCALHOST: &str = "localhost";

/// The directory name of a host, wherever a host names a directory: the name as given (a
/// `[hosts.NAME]` name or `user@server:port`), every byte outside `A-Za-z0-9._-`
/// percent-encoded (`root@10.0.0.5:2222` → `root%4010.0.0.5%3A2222`), so that two hosts never
/// share a directory and no name climbs out of it. A leading `.` is encoded too, and so is
/// the first letter of `localhost`, the name records use for this machine.
pub(crate) fn host_dir_name(host: &str) -> String {
    let mut out = String::new();
    for (i, b) in host.bytes().enumerate() {
        let plain = b.is_ascii_alphanumeric() || b"_-".contains(&b) || (b == b'.' && i > 0);
        if plain && !(i == 0 && host == LOCALHOST) {
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
    fn records_locks_and_log_copies_name_a_host_alike() {
        let sd = std::path::Path::new("/st");
        for host in ["srv0", "root@10.0.0.5:2222", "root_10.0.0.5_2222", "a/b"] {
            let want = std::ffi::OsString::from(host_dir_name(host));
            let record = crate::state::host_dir(sd, host);
            let lock = crate::lock::remote_root(sd, host);
            assert_eq!(record.file_name(), Some(want.as_os_str()), "{host}");
            assert_eq!(lock.file_name(), Some(want.as_os_str()), "{host}");
            assert_eq!(record.parent(), Some(sd.join("hosts").as_path()));
            assert_eq!(lock.parent(), Some(sd.join("remote-locks").as_path()));
        }
    }

    proptest::proptest! {
        /// Every host name has its own directory name, safe and reversible.
        #[test]
        fn host_directory_names_are_safe_and_reversible(host in "\\PC{1,30}") {
            let dir = host_dir_name(&host);
            proptest::prop_assert!(!dir.contains('/') && dir != "." && dir != ".." && !dir.starts_with('.'));
            proptest::prop_assert!(dir != LOCALHOST);
            proptest::prop_assert_eq!(host_from_dir_name(&dir), Some(host));
        }
    }
}

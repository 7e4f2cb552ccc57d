//! The host's default bridge for `DEFAULT_BRIDGE` (issue #10.6): the first Linux bridge in
//! `/sys/class/net`, found without running `brctl`; `xenbr0` when the host has none.

use std::path::Path;
use std::sync::OnceLock;

/// The fallback when the host has no bridge: what Xen's own scripts used to create.
pub(crate) const FALLBACK: &str = "xenbr0";

/// Bridges that container and NAT tools make for themselves; a Xen guest's network belongs
/// on the admin's bridge, never on one of these (docs/decisions.md).
const NOT_FOR_GUESTS: &[&str] = &["docker", "br-", "virbr", "lxcbr", "lxdbr", "cni", "podman"];

/// The default bridge and how it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DefaultBridge {
    pub name: String,
    /// Where it came from, for `image show` / `--dry-run` origins.
    pub origin: String,
}

/// The bridges under a `/sys/class/net`-like directory, in interface index order (the order
/// they were made), without those of container tools.
pub(crate) fn bridges_in(sys_class_net: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(sys_class_net) else {
        return vec![];
    };
    let mut found: Vec<(u64, String)> = rd
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            // A bridge device has a `bridge/` attribute directory; ports have `brport/`.
            if !e.path().join("bridge").is_dir() {
                return None;
            }
            if NOT_FOR_GUESTS.iter().any(|p| name.starts_with(p)) {
                return None;
            }
            let index = std::fs::read_to_string(e.path().join("ifindex"))
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(u64::MAX);
            Some((index, name))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, n)| n).collect()
}

/// Decides the default bridge from a `/sys/class/net`-like directory.
pub(crate) fn detect_in(sys_class_net: &Path) -> DefaultBridge {
    match bridges_in(sys_class_net).into_iter().next() {
        Some(name) => DefaultBridge {
            origin: format!(
                "host bridge, `{}`",
                sys_class_net.join(&name).join("bridge").display()
            ),
            name,
        },
        None => DefaultBridge {
            name: FALLBACK.to_string(),
            origin: format!("built-in: no bridge in `{}`", sys_class_net.display()),
        },
    }
}

/// The local host's default bridge, looked up once per process.
pub(crate) fn local() -> &'static DefaultBridge {
    static BRIDGE: OnceLock<DefaultBridge> = OnceLock::new();
    BRIDGE.get_or_init(|| detect_in(Path::new("/sys/class/net")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(root: &Path, name: &str, index: u32, bridge: bool) {
        let d = root.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("ifindex"), format!("{index}\n")).unwrap();
        if bridge {
            std::fs::create_dir_all(d.join("bridge")).unwrap();
        }
    }

    #[test]
    fn first_bridge_by_index_skipping_container_bridges() {
        let t = tempfile::tempdir().unwrap();
        dev(t.path(), "eth0", 2, false);
        dev(t.path(), "docker0", 3, true);
        dev(t.path(), "zbr", 5, true);
        dev(t.path(), "br1", 9, true);
        let b = detect_in(t.path());
        assert_eq!(b.name, "zbr");
        assert!(b.origin.contains("zbr/bridge"), "{}", b.origin);
        assert_eq!(bridges_in(t.path()), ["zbr", "br1"]);
    }

    #[test]
    fn no_bridge_gives_xenbr0() {
        let t = tempfile::tempdir().unwrap();
        dev(t.path(), "eth0", 2, false);
        dev(t.path(), "virbr0", 4, true);
        assert_eq!(detect_in(t.path()).name, "xenbr0");
        assert_eq!(detect_in(&t.path().join("missing")).name, "xenbr0");
    }
}

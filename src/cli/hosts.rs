//! Managed servers on the `provision` command line (docs/remote.md): where each VM goes
//! (`--vm NAME@HOST`, else dealt out over the `--host`s in turn) and the local copy of a
//! server's log. Connecting to them is `provision::batch`'s.

use crate::provision::Plan;
use crate::settings::Settings;

/// Each VM with its server: `NAME@HOST`, else the `--host`s in turn, else none (local).
pub(crate) fn place(vms: &[String], hosts: &[String]) -> Vec<(String, Option<String>)> {
    let mut turn = 0usize;
    vms.iter()
        .map(|v| match v.split_once('@') {
            Some((vm, h)) => (vm.to_string(), Some(h.to_string())),
            None if !hosts.is_empty() => {
                turn += 1;
                (v.clone(), Some(hosts[(turn - 1) % hosts.len()].clone()))
            }
            None => (v.clone(), None),
        })
        .collect()
}

/// The local copy of a remote run's log: `<log_dir>/hosts/<host>/<image>/<image>_<vm>.log`,
/// apart from the local runs' logs.
pub(crate) fn local_log_copy(settings: &Settings, host: &str, plan: &Plan) -> std::path::PathBuf {
    // The one encoding of host names (as records): two hosts never share a directory.
    let safe = crate::state::remote::host_dir_name(host);
    settings
        .log_dir
        .join("hosts")
        .join(safe)
        .join(&plan.image)
        .join(format!("{}_{}.log", plan.image, plan.vm))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vms_are_placed_by_name_then_in_turn() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let placed = place(&s(&["a", "b@x", "c", "d"]), &s(&["h1", "h2"]));
        let got: Vec<(&str, Option<&str>)> = placed
            .iter()
            .map(|(v, h)| (v.as_str(), h.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a", Some("h1")),
                ("b", Some("x")),
                ("c", Some("h2")),
                ("d", Some("h1"))
            ]
        );
        assert_eq!(place(&s(&["a"]), &[]), vec![("a".to_string(), None)]);
    }
}

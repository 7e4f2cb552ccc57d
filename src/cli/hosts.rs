//! Managed servers on the `provision` command line (docs/remote.md): where each VM goes
//! (`--vm NAME@HOST`, else dealt out over the `--host`s in turn), one shared connection and
//! probe per server (opened side by side), and the local copy of a server's log.

use crate::provision::{self, Plan};
use crate::remote::{Session, parse_target};
use crate::resolve::Context;
use crate::settings::Settings;
use anyhow::Result;

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

/// The servers of one run, in order of first mention.
pub(crate) struct Servers {
    pub(crate) names: Vec<String>,
    /// `None` where the server could not be reached; its error is in `errors`.
    pub(crate) sessions: Vec<Option<Session>>,
    /// The resolution context of each reached server: its uname, host name, paths.
    pub(crate) contexts: Vec<Option<Context>>,
    pub(crate) errors: Vec<anyhow::Error>,
}

impl Servers {
    /// Connects to every server the placement names, side by side. A `--host` that is not
    /// a valid target stops everything; an unreachable server only fails its VMs.
    pub(crate) fn connect(
        placed: &[(String, Option<String>)],
        base: &Context,
        arch: Option<&str>,
    ) -> Result<Servers> {
        let mut names: Vec<String> = Vec::new();
        for h in placed.iter().filter_map(|(_, h)| h.as_ref()) {
            if !names.contains(h) {
                names.push(h.clone());
            }
        }
        let mut targets = Vec::new();
        for h in &names {
            targets.push(parse_target(h, &base.settings.hosts)?);
        }
        let opened: Vec<Result<Session>> = std::thread::scope(|scope| {
            let handles: Vec<_> = targets
                .iter()
                .map(|t| scope.spawn(move || Session::open(t)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("connecting panicked")))
                })
                .collect()
        });
        let mut errors = Vec::new();
        let sessions: Vec<Option<Session>> = opened
            .into_iter()
            .map(|r| r.map_err(|e| errors.push(e)).ok())
            .collect();
        let contexts = sessions
            .iter()
            .map(|s| {
                s.as_ref().map(|s| {
                    let mut c = provision::remote::context(base, s);
                    if let Some(a) = arch {
                        c.host.machine = a.to_string();
                    }
                    c
                })
            })
            .collect();
        Ok(Servers {
            names,
            sessions,
            contexts,
            errors,
        })
    }
}

/// The local copy of a remote run's log: `<log_dir>/hosts/<host>/<image>/<image>_<vm>.log`,
/// apart from the local runs' logs.
pub(crate) fn local_log_copy(settings: &Settings, host: &str, plan: &Plan) -> std::path::PathBuf {
    // The one encoding of host names (as records): two hosts never share a directory.
    let safe = crate::host_dir::host_dir_name(host);
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

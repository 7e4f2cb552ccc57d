//! The protocol between convirt on this machine and `convirt __serve` on a server, over the
//! ssh channel's standard input and output: JSON lines (serde), framed as
//! `remote::wire` says. This machine writes a `Hello`, then one `Request`; a `Provision` request is
//! followed by exactly `tree_bytes` bytes of tar (the work tree), then by control lines
//! (`"stop"`) for as long as the run lasts. The server answers with `Event` lines: its own
//! `Hello` first, then what the request produces, the last one final. The channel's end of
//! file, either way, is the watchdog: the server stops and cleans up, this machine reports a
//! lost connection. Enums are externally tagged (serde's internally tagged form cannot hold
//! the records' 128-bit birth times).

use super::{Failure, Job, Provisioned};
pub(crate) use crate::remote::wire::{Facts, Hello, escape, receive, send};
use crate::state::{Item, Record};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// What this machine asks of a server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Request {
    /// The server's facts for planning (uname, user, home, bridges).
    Facts,
    /// Run a job; the work tree follows the line.
    Provision { job: Box<Job>, tree_bytes: u64 },
    /// Which of these items are there, and which domains the server runs.
    Check { items: Vec<Item> },
    /// `xl create` of VM `vm`'s config, as the server's own record of `vm` names it (never a
    /// path this machine sends), unless its domain runs.
    Start {
        vm: String,
        /// The server's state dir from the host's settings; else its user's default.
        state_dir: Option<PathBuf>,
    },
    /// Remove these items (newest first) of VM `vm`, unless its domain runs.
    Remove {
        vm: String,
        items: Vec<Item>,
        dry_run: bool,
        /// The server's state dir from the host's settings; else its user's default.
        state_dir: Option<PathBuf>,
    },
    /// What the server's own journal and record say of VM `vm` (after a lost connection):
    /// waits for a run of it still going there to end.
    Status {
        vm: String,
        /// The run asked about (`Job::run`).
        run: String,
        /// The server's work and state dirs from the host's settings; else its user's
        /// defaults.
        work_dir: Option<PathBuf>,
        state_dir: Option<PathBuf>,
    },
    /// Take this guest cache entry (issue #22, `seed`): the files follow the server's
    /// `SeedWanted`.
    Seed(Box<Seed>),
}

/// A run's final answer that could not be delivered (the channel was gone), kept by the
/// server in `<state_dir>/undelivered/<vm>.json` until this machine asks (`Status`).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Undelivered {
    pub run: String,
    pub answer: Event,
}

/// One removal step as the server reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Removed {
    pub action: String,
    pub why: String,
}

/// What the server says.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Event {
    Hello(Hello),
    Facts(Facts),
    /// The run made its log: it changes things on the server from here on.
    Started,
    /// A line of the script's output.
    Output(String),
    /// The run entered a step (the same steps as a local run's progress events).
    Step(super::run::Step),
    /// Final: the run succeeded; `created` is the server's record of it.
    Provisioned {
        result: Box<Provisioned>,
        created: Vec<Item>,
    },
    /// Final: the run failed; `left` names what its journal keeps (with `--keep`, or what
    /// could not be removed).
    Failed {
        failure: Failure,
        left: Vec<Item>,
    },
    /// Final: refused or broken before (or outside) a run.
    Error {
        message: String,
        hints: Vec<String>,
    },
    /// The answer to `Check`: which items are there, and the server's domains (`xl list`,
    /// stopped after a few seconds) or why it could not say.
    Checked {
        present: Vec<bool>,
        domains: Result<Vec<crate::state::xen::Domain>, String>,
    },
    /// The answer to `Start`: the config `xl create` started, or why it did not.
    Launched(Result<String, String>),
    Removal {
        running: Result<bool, String>,
        steps: Vec<Removed>,
    },
    Status {
        record: Option<Box<Record>>,
        /// An unfinished run's items still there.
        leftovers: Option<Vec<Item>>,
        /// The run's own final answer, when the server kept it for us.
        answer: Option<Box<Event>>,
    },
    /// The server lacks the entry of a `Seed`: send the files.
    SeedWanted,
    /// Final: the entry is in place; `bytes` arrived (0: it was there already).
    Seeded {
        bytes: u64,
    },
}

/// An error as the protocol carries it: the message and its hints.
pub(crate) fn error_event(e: &anyhow::Error) -> Event {
    if let Some(d) = e.downcast_ref::<crate::diagnostic::Diagnostic>() {
        return Event::Error {
            message: d.message.clone(),
            hints: d.hints.clone(),
        };
    }
    if let Some(ds) = e.downcast_ref::<crate::diagnostic::Diagnostics>() {
        return Event::Error {
            message: ds
                .0
                .iter()
                .map(|d| d.message.clone())
                .collect::<Vec<_>>()
                .join("; "),
            hints: ds.0.iter().flat_map(|d| d.hints.clone()).collect(),
        };
    }
    Event::Error {
        message: format!("{e:#}"),
        hints: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transport_speaks_these_messages() {
        // `remote` sends and reads these forms without knowing the types.
        assert_eq!(serde_json::to_string(&Request::Facts).unwrap(), "\"facts\"");
        let f = crate::remote::wire::Facts {
            host: crate::eval::Host::local(None),
            uid: 0,
            home: "/root".into(),
            bridges: vec![],
        };
        let line = serde_json::to_vec(&Event::Facts(f.clone())).unwrap();
        let a: crate::remote::wire::FactsAnswer = serde_json::from_slice(&line).unwrap();
        assert_eq!(a.facts, f);
        let line = serde_json::to_vec(&Event::Hello(Hello::ours(None))).unwrap();
        let g: crate::remote::wire::Greeting = serde_json::from_slice(&line).unwrap();
        assert_eq!(g.hello.protocol, crate::remote::wire::VERSION);
    }

    #[test]
    fn items_with_birth_times_travel() {
        let mut i = Item::new("/x", crate::state::Kind::Disk);
        i.born = Some(u128::from(u64::MAX) * 3);
        let mut v = Vec::new();
        send(
            &mut v,
            &Event::Checked {
                present: vec![true],
                domains: Err("no xl".into()),
            },
        )
        .unwrap();
        send(
            &mut v,
            &Request::Check {
                items: vec![i.clone()],
            },
        )
        .unwrap();
        let mut r: &[u8] = &v;
        assert!(matches!(
            receive::<Event>(&mut r).unwrap(),
            Some(Event::Checked { present, domains: Err(_) }) if present == vec![true]
        ));
        match receive::<Request>(&mut r).unwrap() {
            Some(Request::Check { items }) => assert_eq!(items, vec![i]),
            other => panic!("{other:?}"),
        }
    }
}

// The guest cache entry a `seed` request offers (issue #22; src/provision/seed.rs sends
// and receives it).

/// One file of the entry as announced.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct SeedFile {
    pub name: String,
    pub size: u64,
}

/// The line after the files: each one's lowercase hex SHA-256, in the announced order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct SeedSums {
    pub sha256: Vec<String>,
}

/// The request's body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Seed {
    /// The server's entry directory, `<VM_CACHE_DIR>/guests/debian-<key>`.
    pub entry: PathBuf,
    pub files: Vec<SeedFile>,
    /// When the mirror of the key came from the apt sources (`DEBIAN_MIRROR` empty): the suite
    /// and that mirror. The server's shell reads its own apt sources, so the entry is only
    /// its entry when they name the same mirror.
    pub host_mirror: Option<(String, String)>,
}

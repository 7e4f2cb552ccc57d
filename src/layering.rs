//! The crate's layers (issue #17, docs/architecture.md "Layers"), checked from its own
//! sources with the import graph `structure` reads: who may import whom beyond "no cycle",
//! and that lock paths are built in the lock module only.

use crate::structure::{Graph, code_of, module_files, module_graph, top_level};
use std::path::Path;

fn top_graph() -> Graph {
    top_level(&module_graph(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
    ))
}

/// The front ends, and `vms` (what both do with every host's VMs): the only modules that
/// may import provisioning.
const FRONT_ENDS: &[&str] = &["cli", "ui", "vms"];

/// Modules that must never import the listed ones, with the reason.
const MUST_NOT_IMPORT: &[(&str, &[&str], &str)] = &[
    (
        "validate",
        &["provision"],
        "`image validate` checks without provisioning: the disk model and custom scripts are below both",
    ),
    (
        "archive",
        &["provision"],
        "pack and import never provision (the Ctrl-C flag is `interrupt`'s)",
    ),
    (
        "eval",
        &["provision", "settings", "resolve", "store", "image", "sys"],
        "the evaluator is a sandbox: the host facts come in as a value (`host`)",
    ),
    (
        "state",
        &["provision", "remote", "cli", "ui"],
        "records know no provisioning: `provision/hooks.rs` meets them",
    ),
    (
        "remote",
        &["provision", "state", "cli", "ui"],
        "the transport knows no provisioning type",
    ),
];

/// Leaves and near-leaves: everything they may import.
const ONLY_IMPORTS: &[(&str, &[&str])] = &[
    ("clock", &[]),
    ("host_dir", &[]),
    ("host", &["sys"]),
    ("lock", &["clock", "diagnostic", "host_dir", "sys"]),
    ("disks", &["resolve", "value"]),
    (
        "disk_values",
        &["diagnostic", "disks", "image", "resolve", "value"],
    ),
];

#[test]
fn only_the_front_ends_import_provisioning() {
    let g = top_graph();
    let importers: Vec<&String> = g
        .iter()
        .filter(|(m, tos)| tos.contains("provision") && !FRONT_ENDS.contains(&m.as_str()))
        .map(|(m, _)| m)
        .collect();
    assert!(
        importers.is_empty(),
        "{importers:?} import `provision`; only {FRONT_ENDS:?} may"
    );
    assert!(g["cli"].contains("provision"), "the graph was really read");
}

#[test]
fn layers_import_only_downwards() {
    let g = top_graph();
    let mut wrong = Vec::new();
    for (m, never, why) in MUST_NOT_IMPORT {
        let tos = g.get(*m).unwrap_or_else(|| panic!("no module `{m}`"));
        for n in *never {
            if tos.contains(*n) {
                wrong.push(format!("`{m}` imports `{n}`: {why}"));
            }
        }
    }
    for (m, allowed) in ONLY_IMPORTS {
        let tos = g.get(*m).unwrap_or_else(|| panic!("no module `{m}`"));
        for t in tos {
            if !allowed.contains(&t.as_str()) {
                wrong.push(format!(
                    "`{m}` imports `{t}`; it may import only {allowed:?}"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// Text that builds a lock path or takes a lock, allowed in `lock.rs` only (`sys.rs` holds
/// the raw system calls that `lock` wraps).
const LOCK_MARKS: &[&str] = &[
    ".lock\"",
    "\"locks\"",
    "remote-locks",
    "try_lock_exclusive",
    "exclusively_locked",
    "FlockOperation",
];

#[test]
fn only_the_lock_module_builds_lock_paths() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    for (module, path) in module_files(&src) {
        if matches!(module.as_str(), "lock" | "sys" | "layering" | "structure")
            || module.ends_with("/tests")
        {
            continue;
        }
        let code = code_of(&std::fs::read_to_string(&path).unwrap());
        for mark in LOCK_MARKS {
            if code.contains(mark) {
                found.push(format!("{}: `{mark}`", path.display()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "lock paths and locks belong to src/lock.rs: {found:#?}"
    );
    // The check reads what it should: the lock module itself has the marks.
    let lock = code_of(&std::fs::read_to_string(src.join("lock.rs")).unwrap());
    assert!(lock.contains(".lock\"") && lock.contains("remote-locks"));
}

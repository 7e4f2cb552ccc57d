//! Issue #22, item 4: a server without a guest cache entry gets this machine's once, over
//! the ssh master connection, checked by SHA-256 there, instead of bootstrapping it. A
//! stand-in `mmdebstrap` builds the entry here (as in tests/integration/thin.rs: a small real
//! tree); on the server `mmdebstrap` is one that fails, so a bootstrap there fails the run.

use crate::remote::{World, succeeded};
use crate::ui_remote::Console;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const FAKE_MMDEBSTRAP: &str = r#"#!/bin/bash
# Stand-in for mmdebstrap: TARGET is the second last argument.
set -eu
out=${@: -2:1}
printf '%s\n' "$*" >> "$FAKE_RUNS"
t=$(mktemp -d)
mkdir -p "$t/boot" "$t/etc/ssh" "$t/root" "$t/usr/bin"
echo kernel > "$t/boot/vmlinuz-6.1.0-1-cloud-amd64"
echo initrd > "$t/boot/initrd.img-6.1.0-1-cloud-amd64"
echo base > "$t/etc/hostname"
printf '127.0.0.1 localhost\n' > "$t/etc/hosts"
head -c 3000000 /dev/urandom > "$t/usr/bin/tool"
tar -C "$t" -cf "$out" .
rm -rf "$t"
"#;

fn exe(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The one entry directory under `cache`.
fn entry(cache: &Path) -> std::path::PathBuf {
    let found: Vec<_> = std::fs::read_dir(cache.join("guests"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("debian-"))
        })
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].clone()
}

#[test]
fn a_server_without_the_guest_cache_gets_this_machines_entry_instead_of_a_bootstrap() {
    let tmp = tempfile::Builder::new()
        .prefix("convirt-e2e-seed.")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let builder = tmp.path().join("here");
    let refuser = tmp.path().join("there");
    exe(&builder.join("mmdebstrap"), FAKE_MMDEBSTRAP);
    exe(
        &refuser.join("mmdebstrap"),
        "#!/bin/sh\necho 'the server bootstrapped' >&2\nexit 1\n",
    );
    let w = World::new_with(
        1,
        None,
        &format!(
            "SetEnv PATH={}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin\n",
            refuser.display()
        ),
    );
    // Both caches in the test's directory: this machine's in `[variables]`, the server's
    // in its host's variables.
    let settings = w.root.join("convirt.toml");
    let text = std::fs::read_to_string(&settings).unwrap().replacen(
        "[variables]\n",
        &format!(
            "[variables]\nVM_CACHE_DIR = '{}/local/cache'\n",
            w.root.display()
        ),
        1,
    );
    std::fs::write(&settings, text).unwrap();
    w.add_settings(&format!(
        "[hosts.srv0.variables]\nVM_CACHE_DIR = '{}/cache'\n",
        w.srv(0).display()
    ));
    let runs = tmp.path().join("runs");
    let args = |vm: &'static str, host: Option<&'static str>| {
        let mut a = vec!["provision", "--image", "Debian_12_Minimal", "--vm", vm];
        a.extend([
            "--set",
            "DEBIAN_MIRROR=http://mirror.example/debian",
            "--set",
            "custom_list=['hostname', 'machine_identity']",
            "--set",
            "xvda_disk_size=16",
        ]);
        if let Some(h) = host {
            a.extend(["--host", h]);
        }
        a
    };
    // Here: the entry is bootstrapped (by the stand-in) and a VM made from it.
    let path = format!(
        "{}:{}",
        builder.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = w
        .cmd(&args("here1", None))
        .env("PATH", &path)
        .env("FAKE_RUNS", &runs)
        .output()
        .unwrap();
    succeeded(&o);
    assert_eq!(std::fs::read_to_string(&runs).unwrap().lines().count(), 1);
    let local = entry(&w.local().join("cache"));

    // The server lacks it: it is sent, and the run succeeds without a bootstrap there.
    let out = succeeded(&w.run(&args("there1", Some("srv0"))));
    assert!(
        out.contains("guest cache: sent from this machine instead of a bootstrap on the server"),
        "{out}"
    );
    assert!(out.contains("SHA-256 checked there"), "{out}");
    let remote = entry(&w.srv(0).join("cache"));
    assert_eq!(remote.file_name(), local.file_name());
    for f in [
        "complete",
        "rootfs.tar",
        "overlay.tar",
        "paths.list",
        "vmlinuz",
        "initrd.img",
        "key.txt",
    ] {
        assert_eq!(
            std::fs::read(remote.join(f)).unwrap(),
            std::fs::read(local.join(f)).unwrap(),
            "{f}"
        );
    }
    // The server made its own base disk from the sent tree, and the VM's disk from it.
    assert!(remote.join("base-16M.img").is_file());
    assert!(w.srv(0).join("disks/there1.disk").is_file());
    // Nothing half-sent is left beside the entry.
    let names: Vec<String> = std::fs::read_dir(remote.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".new.") || n.contains(".old."))
        .collect();
    assert!(names.is_empty(), "{names:?}");

    // A second VM on the server: the entry is there, nothing is sent.
    let out = succeeded(&w.run(&args("there2", Some("srv0"))));
    assert!(
        out.contains("guest cache: warm on the server (no bootstrap, nothing sent)"),
        "{out}"
    );
    assert_eq!(std::fs::read_to_string(&runs).unwrap().lines().count(), 1);

    // Two VMs of one `--jobs 2` run to a server without the entry: one send, the other VM
    // waits for it.
    std::fs::remove_dir_all(&remote).unwrap();
    let mut a = args("there3", Some("srv0"));
    a.extend(["--vm", "there4", "--jobs", "2"]);
    let out = succeeded(&w.run(&a));
    assert_eq!(
        out.matches("guest cache: sent from this machine").count(),
        1,
        "{out}"
    );
    assert_eq!(
        out.matches("guest cache: warm on the server (it got the entry earlier in this run)")
            .count(),
        1,
        "{out}"
    );
    assert!(remote.join("complete").is_file());

    // The web console's runs send it too, and the run's result says so.
    std::fs::remove_dir_all(&remote).unwrap();
    let c = Console::start(&w);
    let r = c.post(
        "/images/Debian_12_Minimal/provision",
        &[
            ("vms", "there5"),
            ("target", "srv0"),
            ("img:DEBIAN_MIRROR", "http://mirror.example/debian"),
            ("img:custom_list", "['hostname', 'machine_identity']"),
            ("img:xvda_disk_size", "16"),
        ],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let run = r.header("location").unwrap();
    let events = c.get(&format!("{run}/events")).body;
    assert!(
        events.contains("\"vm\":\"there5\",\"kind\":\"done\""),
        "{events}"
    );
    assert!(
        events.contains("guest cache: sent from this machine instead of a bootstrap on the server"),
        "{events}"
    );
    assert!(remote.join("complete").is_file());
    assert!(w.srv(0).join("disks/there5.disk").is_file());
    assert_eq!(std::fs::read_to_string(&runs).unwrap().lines().count(), 1);
}

//! Debian_12_Minimal without a bootstrap: the `--dry-run` plan (cache key, warm or cold,
//! scripts, disks) and the key computed by convirt and by the shipped `common/guest` agree.

use crate::provision::{copy_dir, sandbox};
use crate::{repo, stderr, stdout};
use std::process::Command;

/// The key `guest_cache_key` (bash) computes for these settings.
fn bash_key(mirror: &str, extra: &str) -> String {
    let common = repo().join("image_store/common");
    let o = Command::new("bash")
        .arg("-c")
        .arg(
            r#"source "$1/functions" && source "$1/guest" &&
               DEBIAN_PACKAGES="$(sed -n "s/^DEBIAN_PACKAGES = //p" "$1/../Debian_12_Minimal/image.conf")" \
               extra_packages="$3" guest_cache_key "$2""#,
        )
        .arg("_")
        .arg(&common)
        .arg(mirror)
        .arg(extra)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o).trim().to_string()
}

#[test]
fn dry_run_shows_the_cache_key_bash_computes_and_whether_it_is_warm() {
    let w = sandbox();
    copy_dir(
        &repo().join("image_store/Debian_12_Minimal"),
        &w.store().join("Debian_12_Minimal"),
    );
    let mirror = "http://mirror.example/debian";
    let args = [
        "provision",
        "--vm",
        "web1",
        "--image",
        "Debian_12_Minimal",
        "--dry-run",
        "--set",
        "DEBIAN_MIRROR=http://mirror.example/debian/",
        "--set",
        "extra_packages=lvm2 curl",
    ];
    let o = w.conv(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let key = bash_key(mirror, "lvm2 curl");
    assert_eq!(key.len(), 16, "{key}");
    assert!(
        out.contains(&format!("  key:      {key}\n")),
        "{key}\n{out}"
    );
    assert!(out.contains("cold: bootstrapped first"), "{out}");
    assert!(out.contains(&format!("  mirror:   {mirror}\n")), "{out}");
    assert!(out.contains(" curl ") && out.contains(" lvm2 "), "{out}");
    assert!(
        out.contains("web1.disk (raw, xvda): created from `guest_tree`"),
        "{out}"
    );
    let scripts: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("custom scripts"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| l.rsplit('/').next().unwrap())
        .collect();
    assert_eq!(
        scripts,
        [
            "S10hostname",
            "S10root_password",
            "S10ssh_authorized_keys",
            "S10fstab",
            "S10serial_console",
            "S10dhcp_network",
            "S10machine_identity"
        ]
    );
    // Another package list is another key.
    assert_ne!(bash_key(mirror, "lvm2"), key);

    // A complete entry (its manifest matches its files) is warm; a damaged one is not.
    let entry = w.path().join(format!("cache/guests/debian-{key}"));
    std::fs::create_dir_all(&entry).unwrap();
    std::fs::write(entry.join("rootfs.tar"), "12345").unwrap();
    std::fs::write(entry.join("complete"), "rootfs.tar 5\n").unwrap();
    let out = stdout(&w.conv(&args));
    assert!(out.contains("warm: reused, no bootstrap"), "{out}");
    std::fs::write(entry.join("rootfs.tar"), "1234").unwrap();
    let out = stdout(&w.conv(&args));
    assert!(out.contains("cold: bootstrapped first"), "{out}");
    // Nothing written by a dry run.
    assert!(!w.path().join("disks").exists());

    // --json carries the same.
    let mut json_args = vec!["--json"];
    json_args.extend(args);
    let v: serde_json::Value = serde_json::from_slice(&w.conv(&json_args).stdout).unwrap();
    assert_eq!(v["guest_cache"]["key"], key.as_str(), "{v}");
    assert_eq!(v["guest_cache"]["warm"], false, "{v}");
}

//! Issue #13's examples from the outside: archive headers at extreme values, settings nested
//! past the parser's limit, and what a panic looks like. Each ends in a clean result or a
//! located error, never a raw panic.

use crate::{World, stderr, stdout};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Every path below `dir` with its size and mode: enough to see that nothing changed.
fn listing(dir: &Path) -> Vec<String> {
    walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .map(|e| {
            let e = e.unwrap();
            let m = e.path().symlink_metadata().unwrap();
            format!("{} {} {:o}", e.path().display(), m.len(), m.mode())
        })
        .collect()
}

/// A gzip'd tar holding the image `Odd` with one extra file `Odd/data`, whose header is
/// changed by `patch` (checksum fixed up after).
fn archive(w: &World, name: &str, patch: impl Fn(&mut tar::Header)) -> PathBuf {
    let path = w.path().join(name);
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&path).unwrap(),
        flate2::Compression::fast(),
    );
    let mut b = tar::Builder::new(gz);
    let entry = |p: &str, kind: tar::EntryType, mode: u32, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_path(p).unwrap();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        h
    };
    let files: [(&str, &[u8], u32); 3] = [
        ("Odd/image.conf", b"x = 1\n", 0o644),
        ("Odd/vm_conf.template", b"name = ''\nmemory = 128\n", 0o644),
        ("Odd/provision.sh", b"#!/bin/bash\nexit 0\n", 0o755),
    ];
    let mut h = entry("Odd/", tar::EntryType::Directory, 0o755, b"");
    h.set_cksum();
    b.append(&h, &b""[..]).unwrap();
    for (p, data, mode) in files {
        let mut h = entry(p, tar::EntryType::Regular, mode, data);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    let mut h = entry("Odd/data", tar::EntryType::Regular, 0o644, b"data\n");
    patch(&mut h);
    h.set_cksum();
    b.append(&h, &b"data\n"[..]).unwrap();
    b.into_inner().unwrap().finish().unwrap().flush().unwrap();
    path
}

#[test]
fn an_mtime_of_all_ff_bytes_imports_with_the_time_clamped() {
    let w = World::new();
    std::fs::create_dir(w.store()).unwrap();
    let a = archive(&w, "ff.tgz", |h| h.as_old_mut().mtime = [0xff; 12]);
    let o = w.run(&["image", "import", a.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("imported `Odd`"), "{}", stdout(&o));
    // 0xff... is -1 in GNU base-256: before 1970, so clamped to the epoch.
    let m = std::fs::metadata(w.store().join("Odd/data")).unwrap();
    assert_eq!(m.mtime(), 0);

    // The largest positive base-256 time: clamped to the end of year 9999.
    let w = World::new();
    std::fs::create_dir(w.store()).unwrap();
    let mut huge = [0xff; 12];
    huge[0] = 0x80;
    let a = archive(&w, "huge.tgz", |h| h.as_old_mut().mtime = huge);
    let o = w.run(&["image", "import", a.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(w.store().join("Odd/data")).unwrap(),
        b"data\n"
    );
    // The file has the clamped time, as this file system stores it (ext4 here keeps times
    // up to 2446 and cuts later ones; a probe file set to the same time shows how).
    let probe = w.write("probe", "");
    let end_of_9999 = std::time::UNIX_EPOCH + std::time::Duration::from_secs(253_402_300_799);
    let f = std::fs::File::options().write(true).open(&probe).unwrap();
    if f.set_modified(end_of_9999).is_ok() {
        let stored = std::fs::metadata(&probe).unwrap().mtime();
        let m = std::fs::metadata(w.store().join("Odd/data")).unwrap();
        assert_eq!(m.mtime(), stored);
        assert!(stored >= 2_147_483_647, "{stored}");
    }
}

#[test]
fn out_of_range_header_fields_are_refused_naming_the_entry() {
    let mut big = [0xff; 12];
    big[0] = 0x80;
    type Patch = Box<dyn Fn(&mut tar::Header)>;
    let cases: [(&str, Patch, &str); 3] = [
        (
            "size.tgz",
            Box::new(move |h| h.as_old_mut().size = big),
            "the entry `Odd/data` at byte",
        ),
        (
            "uid.tgz",
            Box::new(|h| h.as_old_mut().uid = [0xff; 8]),
            "has a uid out of range: -1",
        ),
        (
            "mode.tgz",
            Box::new(|h| h.as_old_mut().mode = [0x80, 0, 0, 0, 1, 0, 0, 0]),
            "has a mode out of range",
        ),
    ];
    let w = World::new();
    w.image("Keep", "k = 1\n", "name = ''\n");
    let before = listing(&w.store());
    for (name, patch, expect) in cases {
        let a = archive(&w, name, patch);
        let o = w.run(&["image", "import", a.to_str().unwrap()]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains(expect), "{name}: {err}");
        assert!(err.contains("the store is unchanged"), "{err}");
        assert_eq!(listing(&w.store()), before, "{name}");
    }
}

#[test]
fn settings_nested_past_the_limit_name_file_and_line() {
    let w = World::new();
    let deep = vec!["k"; 200].join(".");
    let cfg = w.write(
        "deep.toml",
        &format!("log_dir = '/x'\n[variables]\n{deep} = 1\n"),
    );
    let o = w
        .cmd()
        .arg("--config")
        .arg(&cfg)
        .args(["image", "list"])
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("--> {}:3:1", cfg.display())), "{err}");
}

#[test]
fn a_panic_names_the_command_asks_for_a_report_and_exits_70() {
    let w = World::new();
    let o = w
        .cmd()
        .env("CONVIRT_TEST_PANIC", "1")
        .args(["conf", "eval", "some file.conf"])
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(70), "{err}");
    assert!(
        err.starts_with("error: convirt crashed: this is a bug in convirt"),
        "{err}"
    );
    assert!(
        err.contains("command: convirt conf eval 'some file.conf'"),
        "{err}"
    );
    assert!(err.contains("please report it as a bug"), "{err}");
    // No raw backtrace unless asked for.
    assert!(!err.contains("stack backtrace"), "{err}");
    assert!(err.lines().count() <= 6, "{err}");
    assert!(stdout(&o).is_empty());
}

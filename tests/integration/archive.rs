//! `image pack` and `image import` (spec §9.5, §9.6), against the real GNU tar and gzip.

use crate::{World, fails_saying, stderr, stdout, tree};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A unique path under /tmp that a hostile archive might try to create.
fn outside(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "convirt-evil-{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ))
}

/// An image with modes, a nested custom script, a symlink and a long path.
fn rich_image(w: &World, name: &str) {
    w.image(
        name,
        "custom_list = ['net']\nadmin_pass = '$1$x$y'\n",
        "name = ''\nmemory = 256\n",
    );
    let base = format!("store/{name}");
    w.write_exec(
        &format!("{base}/custom_scripts/net/S10net"),
        "#!/bin/bash\necho net\n",
    );
    let secret = w.write(&format!("{base}/secret.conf"), "password = 'x'\n");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let long = format!("{base}/{}/{}", "d".repeat(90), "f".repeat(70));
    w.write(&long, "deep\n");
    std::os::unix::fs::symlink("image.conf", w.store().join(name).join("conf-link")).unwrap();
    std::fs::create_dir(w.store().join(name).join("empty")).unwrap();
}

fn run_ok(cmd: &mut Command) -> String {
    let o = cmd.output().expect("run");
    assert!(
        o.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A tree as `image pack` and `image import` store it: directories and executables 0755,
/// other files 0644 (issue #18).
fn normalised(mut snap: BTreeMap<String, String>) -> BTreeMap<String, String> {
    for v in snap.values_mut() {
        let parts: Vec<&str> = v.splitn(3, ' ').collect();
        let fixed = match parts.as_slice() {
            ["dir", _] => Some("dir 755".to_string()),
            ["file", m, rest] => {
                let exec = u32::from_str_radix(m, 8).unwrap_or(0) & 0o111 != 0;
                Some(format!("file {} {rest}", if exec { "755" } else { "644" }))
            }
            _ => None,
        };
        if let Some(f) = fixed {
            *v = f;
        }
    }
    snap
}

fn without_manifest(mut snap: BTreeMap<String, String>) -> BTreeMap<String, String> {
    snap.retain(|path, _| !path.contains(".convirt-manifest"));
    snap
}

#[test]
fn pack_extracts_with_gnu_tar_identically_and_imports() {
    let w = World::new();
    rich_image(&w, "Rich");
    let o = w.run(&["image", "pack", "Rich"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("packed `Rich` into `Rich.tar.gz`"));
    let archive = w.path().join("Rich.tar.gz");
    run_ok(Command::new("gzip").arg("-t").arg(&archive));

    let x = w.path().join("x");
    std::fs::create_dir(&x).unwrap();
    run_ok(Command::new("tar").arg("xzf").arg(&archive).current_dir(&x));
    run_ok(
        Command::new("diff")
            .args(["-r", "-x", ".convirt-manifest"])
            .arg(w.store().join("Rich"))
            .arg(x.join("Rich")),
    );
    // Packed modes are normalised (issue #18): the 0600 `secret.conf` is packed as 0644.
    assert_eq!(
        normalised(tree(&w.store().join("Rich"))),
        without_manifest(tree(&x.join("Rich")))
    );
    assert!(
        tree(&x.join("Rich"))["secret.conf"].starts_with("file 644 "),
        "{:?}",
        tree(&x.join("Rich"))
    );
    let listing = run_ok(Command::new("tar").arg("tvzf").arg(&archive));
    assert!(
        listing.lines().all(|l| l.contains(" root/root ")),
        "{listing}"
    );
    assert!(listing.contains("Rich/.convirt-manifest"), "{listing}");

    let w2 = World::new();
    std::fs::create_dir(w2.store()).unwrap();
    let o = w2.run(&["image", "import", archive.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "imported `Rich`\n");
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
    assert_eq!(
        normalised(tree(&w.store().join("Rich"))),
        tree(&w2.store().join("Rich"))
    );
    let o = w2.run(&["image", "validate", "Rich"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn packing_twice_gives_the_same_bytes_and_source_date_epoch_clamps() {
    let w = World::new();
    rich_image(&w, "Rich");
    w.image("Other", "", "name = ''\n");
    let pack = |out: &str, epoch: Option<&str>| {
        let mut c = w.cmd();
        c.arg("--store").arg(w.store());
        if let Some(e) = epoch {
            c.env("SOURCE_DATE_EPOCH", e);
        }
        let o = c
            .args(["image", "pack", "Rich", "Other", "-o", out])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        std::fs::read(w.path().join(out)).unwrap()
    };
    let a = pack("a.tar.gz", None);
    let b = pack("b.tar.gz", None);
    assert!(a == b, "two packs differ");
    // gzip header: no name flag, mtime 0.
    assert_eq!(&a[..4], &[0x1f, 0x8b, 8, 0]);
    assert_eq!(&a[4..8], &[0, 0, 0, 0]);

    let c = pack("c.tar.gz", Some("1000000"));
    // Touch every file: with the epoch set the bytes must not change.
    let now = std::time::SystemTime::now();
    for e in walkdir::WalkDir::new(w.store()) {
        let e = e.unwrap();
        if e.file_type().is_file() {
            std::fs::File::options()
                .append(true)
                .open(e.path())
                .unwrap()
                .set_modified(now)
                .unwrap();
        }
    }
    let d = pack("d.tar.gz", Some("1000000"));
    assert!(c == d, "SOURCE_DATE_EPOCH did not make packs equal");
    let listing = run_ok(
        Command::new("tar")
            .args(["tvzf", "c.tar.gz", "--full-time"])
            .env("TZ", "UTC")
            .current_dir(w.path()),
    );
    assert!(
        listing.lines().all(|l| l.contains("1970-01-12 13:46:40")),
        "{listing}"
    );
    // Images come in name order, one top-level directory each.
    let first: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|p| p.matches('/').count() == 1 && p.ends_with('/'))
        .collect();
    assert_eq!(first, ["Other/", "Rich/"]);
}

#[test]
fn pack_refuses_overwrite_without_force_and_needs_o_for_several() {
    let w = World::new();
    w.image("A", "", "name = ''\n");
    w.image("B", "", "name = ''\n");
    w.write("A.tar.gz", "precious");
    let o = w.run(&["image", "pack", "A"]);
    fails_saying(&o, "`A.tar.gz` already exists");
    assert_eq!(
        std::fs::read_to_string(w.path().join("A.tar.gz")).unwrap(),
        "precious"
    );
    let o = w.run(&["image", "pack", "A", "--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = w.run(&["image", "pack", "A", "B"]);
    fails_saying(&o, "-o FILE");
    let o = w.run(&["image", "pack", "Nope"]);
    fails_saying(&o, "no image `Nope`");
    let o = w.run(&["image", "pack"]);
    assert_eq!(o.status.code(), Some(2));
    let o = w.run(&["image", "pack", "A", "--format", "zip"]);
    assert_eq!(o.status.code(), Some(2));
    let o = w.run(&["--json", "image", "pack", "B", "--format", "tar.zst"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["format"], "tar.zst");
    assert_eq!(v["output"], "B.tar.zst");
    assert_eq!(v["images"], serde_json::json!(["B"]));
    let head = std::fs::read(w.path().join("B.tar.zst")).unwrap();
    assert_eq!(&head[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
    // Nothing half-written is left beside the outputs.
    let hidden: Vec<_> = std::fs::read_dir(w.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".convirt"))
        .collect();
    assert!(hidden.is_empty(), "{hidden:?}");
}

fn sparse_disk(path: &Path) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(1 << 30).unwrap();
    let data: Vec<u8> = (0..1 << 20).map(|i| (i * 7 % 251) as u8).collect();
    f.write_all_at(&data, 512 << 20).unwrap();
    f.write_all_at(b"end", (1 << 30) - 3).unwrap();
}

fn disk_usage(path: &Path) -> (u64, u64) {
    let m = std::fs::metadata(path).unwrap();
    (m.blocks() * 512, m.len())
}

fn du(path: &Path, apparent: bool) -> u64 {
    let mut c = Command::new("du");
    c.arg("--block-size=1");
    if apparent {
        c.arg("--apparent-size");
    }
    let out = run_ok(c.arg(path));
    out.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn a_sparse_gigabyte_packs_small_and_unpacks_sparse() {
    let w = World::new();
    w.image("Disk", "", "name = ''\n");
    let disk = w.store().join("Disk/disk.img");
    sparse_disk(&disk);
    let (used, _) = disk_usage(&disk);
    if used > 64 << 20 {
        eprintln!("skipped: this file system does not keep holes");
        return;
    }
    for format in ["tar.gz", "tar.zst"] {
        let out = format!("disk.{format}");
        let o = w.run(&["image", "pack", "Disk", "-o", &out]);
        assert!(o.status.success(), "{}", stderr(&o));
        let size = std::fs::metadata(w.path().join(&out)).unwrap().len();
        assert!(size < 4 << 20, "{format}: {size} bytes");
    }
    for flags in ["xzf", "-xSzf"] {
        let x = w.path().join(format!("gnu{flags}"));
        std::fs::create_dir(&x).unwrap();
        run_ok(
            Command::new("tar")
                .arg(flags)
                .arg(w.path().join("disk.tar.gz"))
                .current_dir(&x),
        );
        let got = x.join("Disk/disk.img");
        assert_eq!(du(&got, true), 1 << 30);
        assert!(du(&got, false) < 16 << 20, "{}", du(&got, false));
        assert_eq!(
            read_at(&got, 512 << 20, 1 << 20),
            read_at(&disk, 512 << 20, 1 << 20)
        );
    }
    let zx = w.path().join("zx");
    std::fs::create_dir(&zx).unwrap();
    run_ok(
        Command::new("tar")
            .args(["--zstd", "-xf"])
            .arg(w.path().join("disk.tar.zst"))
            .current_dir(&zx),
    );
    assert!(du(&zx.join("Disk/disk.img"), false) < 16 << 20);

    // GNU tar's own sparse archive (old GNU format, made with -S) imports sparse too.
    run_ok(
        Command::new("tar")
            .args(["-czSf", "gnu.tar.gz", "-C"])
            .arg(w.store())
            .arg("Disk")
            .current_dir(w.path()),
    );
    for format in ["tar.gz", "tar.zst", "gnu.tar.gz"] {
        let w2 = World::new();
        std::fs::create_dir(w2.store()).unwrap();
        let archive = match format {
            "gnu.tar.gz" => w.path().join(format),
            _ => w.path().join(format!("disk.{format}")),
        };
        let o = w2.run(&["image", "import", archive.to_str().unwrap()]);
        assert!(o.status.success(), "{}", stderr(&o));
        let got = w2.store().join("Disk/disk.img");
        assert_eq!(du(&got, true), 1 << 30);
        assert!(du(&got, false) < 16 << 20, "{}", du(&got, false));
        assert_eq!(
            read_at(&got, 512 << 20, 1 << 20),
            read_at(&disk, 512 << 20, 1 << 20)
        );
        assert_eq!(read_at(&got, (1 << 30) - 3, 3), b"end");
    }
}

fn read_at(path: &Path, off: u64, len: usize) -> Vec<u8> {
    let f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, off).unwrap();
    buf
}

#[test]
fn a_plain_tar_czf_imports_with_a_warning_and_force_replaces() {
    let w = World::new();
    rich_image(&w, "Rich");
    run_ok(
        Command::new("tar")
            .args(["czf", "plain.tgz", "-C"])
            .arg(w.store())
            .arg("Rich")
            .current_dir(w.path()),
    );
    let w2 = World::new();
    w2.image("Rich", "old = 1\n", "name = ''\n");
    w2.write("store/Rich/only-in-old", "x");
    let plain = w.path().join("plain.tgz");
    let before = tree(&w2.store());
    let o = w2.run(&["image", "import", plain.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("image `Rich` already exists") && stderr(&o).contains("--force"),
        "{}",
        stderr(&o)
    );
    assert_eq!(tree(&w2.store()), before);

    let o = w2.run(&["image", "import", "--force", plain.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("warning: `") && stderr(&o).contains("has no manifest"),
        "{}",
        stderr(&o)
    );
    assert!(stdout(&o).contains("replaced"), "{}", stdout(&o));
    // Imported modes are normalised (issue #18): the 0600 `secret.conf` lands as 0644.
    assert_eq!(
        normalised(tree(&w.store().join("Rich"))),
        tree(&w2.store().join("Rich"))
    );
    let names: Vec<String> = std::fs::read_dir(w2.store())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["Rich"], "no temporary directory is left");

    // Uncompressed, and pax headers (GNU tar's posix format writes long names that way).
    for (name, args) in [
        ("plain.tar", &["cf"][..]),
        ("pax.tgz", &["--format=posix", "-czf"][..]),
    ] {
        run_ok(
            Command::new("tar")
                .args(args)
                .arg(name)
                .arg("-C")
                .arg(w.store())
                .arg("Rich")
                .current_dir(w.path()),
        );
        let w3 = World::new();
        std::fs::create_dir(w3.store()).unwrap();
        let o = w3.run(&["image", "import", w.path().join(name).to_str().unwrap()]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        assert_eq!(
            normalised(tree(&w.store().join("Rich"))),
            tree(&w3.store().join("Rich")),
            "{name}"
        );
    }

    let o = w2.run(&[
        "--json",
        "image",
        "import",
        "--force",
        plain.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["images"][0]["name"], "Rich");
    assert_eq!(v["images"][0]["replaced"], true);
    assert_eq!(v["images"][0]["verified"], false);
}

// ---------------------------------------------------------------------------------------------
// Hostile archives

pub(crate) fn header(
    path: &str,
    kind: tar::EntryType,
    mode: u32,
    size: u64,
    link: Option<&str>,
) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
    if let Some(l) = link {
        h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
    }
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(1);
    h.set_cksum();
    h
}

/// A gzip'd tar holding a valid image `Good`, then `extra` entries (header, data).
pub(crate) fn hostile(w: &World, name: &str, extra: &[(tar::Header, Vec<u8>)]) -> PathBuf {
    let path = w.path().join(name);
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&path).unwrap(),
        flate2::Compression::default(),
    );
    let mut b = tar::Builder::new(gz);
    let file = |p: &str, data: &str, mode: u32| {
        (
            header(p, tar::EntryType::Regular, mode, data.len() as u64, None),
            data.as_bytes().to_vec(),
        )
    };
    let good = [
        (
            header("Good/", tar::EntryType::Directory, 0o755, 0, None),
            vec![],
        ),
        file("Good/image.conf", "x = 1\n", 0o644),
        file("Good/vm_conf.template", "name = ''\nmemory = 128\n", 0o644),
        file("Good/provision.sh", "#!/bin/bash\nexit 0\n", 0o755),
    ];
    for (h, d) in good.iter().chain(extra) {
        b.append(h, &d[..]).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap().flush().unwrap();
    path
}

fn assert_refused(w: &World, archive: &Path, expect: &str, before: &BTreeMap<String, String>) {
    let o = w.run(&["image", "import", archive.to_str().unwrap()]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{}: {err}", archive.display());
    assert!(
        err.contains(expect),
        "{}: wanted `{expect}` in:\n{err}",
        archive.display()
    );
    assert!(err.contains("the store is unchanged"), "{err}");
    assert_eq!(&tree(&w.store()), before, "{}", archive.display());
}

#[test]
fn hostile_archives_are_refused_and_leave_the_store_as_it_was() {
    use tar::EntryType as T;
    let w = World::new();
    w.image("Existing", "keep = 1\n", "name = ''\n");
    let before = tree(&w.store());
    let file = |p: &str, mode: u32| (header(p, T::Regular, mode, 5, None), b"evil\n".to_vec());

    let a = hostile(&w, "dotdot.tgz", &[file("../evil-dotdot", 0o644)]);
    assert_refused(
        &w,
        &a,
        "entry `../evil-dotdot` has `..` in its path",
        &before,
    );
    assert!(!w.path().join("evil-dotdot").exists());
    let a = hostile(&w, "inner-dotdot.tgz", &[file("Good/../../evil2", 0o644)]);
    assert_refused(&w, &a, "has `..` in its path", &before);

    let abs = outside("abs");
    let a = hostile(&w, "abs.tgz", &[file(abs.to_str().unwrap(), 0o644)]);
    assert_refused(&w, &a, "has an absolute path", &before);
    assert!(!abs.exists());

    let target = outside("link");
    std::fs::create_dir(&target).unwrap();
    let a = hostile(
        &w,
        "link-out.tgz",
        &[
            (
                header(
                    "Good/out",
                    T::Symlink,
                    0o777,
                    0,
                    Some(target.to_str().unwrap()),
                ),
                vec![],
            ),
            file("Good/out/evil", 0o644),
        ],
    );
    assert_refused(
        &w,
        &a,
        "entry `Good/out` is a symlink to the absolute path",
        &before,
    );
    let a = hostile(
        &w,
        "link-up.tgz",
        &[
            (
                header(
                    "Good/up",
                    T::Symlink,
                    0o777,
                    0,
                    Some("../../../../../../../../../tmp"),
                ),
                vec![],
            ),
            file("Good/up/evil", 0o644),
        ],
    );
    assert_refused(&w, &a, "points outside the image", &before);
    let a = hostile(
        &w,
        "link-through.tgz",
        &[
            (header("Good/sub/", T::Directory, 0o755, 0, None), vec![]),
            (header("Good/in", T::Symlink, 0o777, 0, Some("sub")), vec![]),
            file("Good/in/evil", 0o644),
        ],
    );
    assert_refused(
        &w,
        &a,
        "would be written through the symlink `Good/in`",
        &before,
    );
    assert!(std::fs::read_dir(&target).unwrap().next().is_none());
    std::fs::remove_dir(&target).unwrap();

    let a = hostile(
        &w,
        "hardlink.tgz",
        &[(
            header("Good/pw", T::Link, 0o644, 0, Some("/etc/passwd")),
            vec![],
        )],
    );
    assert_refused(
        &w,
        &a,
        "entry `Good/pw` is a hard link to `/etc/passwd`",
        &before,
    );
    let a = hostile(
        &w,
        "chardev.tgz",
        &[(header("Good/null", T::Char, 0o666, 0, None), vec![])],
    );
    assert_refused(&w, &a, "entry `Good/null` is a character device", &before);
    let a = hostile(
        &w,
        "blockdev.tgz",
        &[(header("Good/sda", T::Block, 0o660, 0, None), vec![])],
    );
    assert_refused(&w, &a, "is a block device", &before);
    let a = hostile(
        &w,
        "fifo.tgz",
        &[(header("Good/pipe", T::Fifo, 0o644, 0, None), vec![])],
    );
    assert_refused(&w, &a, "entry `Good/pipe` is a FIFO", &before);
    let a = hostile(&w, "setuid.tgz", &[file("Good/su", 0o4755)]);
    assert_refused(
        &w,
        &a,
        "entry `Good/su` has the set-uid bit (mode 4755)",
        &before,
    );
    let a = hostile(&w, "setgid.tgz", &[file("Good/sg", 0o2755)]);
    assert_refused(&w, &a, "has the set-gid bit", &before);
    let a = hostile(
        &w,
        "sticky.tgz",
        &[(header("Good/t/", T::Directory, 0o1777, 0, None), vec![])],
    );
    assert_refused(&w, &a, "has the sticky bit", &before);
    let a = hostile(&w, "badname.tgz", &[file("bad name/x", 0o644)]);
    assert_refused(&w, &a, "is not inside an image directory", &before);
    let a = hostile(&w, "topfile.tgz", &[file("README", 0o644)]);
    assert_refused(&w, &a, "entry `README` is not a directory", &before);
    let a = hostile(&w, "common.tgz", &[file("common/functions", 0o644)]);
    assert_refused(&w, &a, "not an image in this store", &before);
    let a = hostile(&w, "twice.tgz", &[file("Good/image.conf", 0o644)]);
    assert_refused(&w, &a, "appears twice", &before);

    // An existing image is not replaced without --force.
    let ex = w.path().join("existing.tgz");
    run_ok(
        Command::new("tar")
            .args(["czf"])
            .arg(&ex)
            .arg("-C")
            .arg(w.store())
            .arg("Existing"),
    );
    assert_refused(&w, &ex, "image `Existing` already exists", &before);

    // An image that does not load is refused too.
    let a = hostile(
        &w,
        "broken.tgz",
        &[
            (header("Bad/", T::Directory, 0o755, 0, None), vec![]),
            (
                header("Bad/image.conf", T::Regular, 0o644, 8, None),
                b"x = [1,\n".to_vec(),
            ),
            (
                header("Bad/vm_conf.template", T::Regular, 0o644, 0, None),
                vec![],
            ),
        ],
    );
    assert_refused(&w, &a, "image `Bad` in it does not load", &before);
}

#[test]
fn truncated_corrupt_and_tampered_archives_are_refused() {
    let w = World::new();
    rich_image(&w, "Rich");
    let o = w.run(&["image", "pack", "Rich", "-o", "rich.tar.gz"]);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::remove_dir_all(w.store().join("Rich")).unwrap();
    w.image("Existing", "", "name = ''\n");
    let before = tree(&w.store());
    let good = std::fs::read(w.path().join("rich.tar.gz")).unwrap();

    let cut = w.write("cut.tar.gz", "");
    std::fs::write(&cut, &good[..good.len() / 2]).unwrap();
    assert_refused(&w, &cut, "truncated", &before);
    std::fs::write(&cut, &good[..good.len() - 4]).unwrap();
    assert_refused(&w, &cut, "truncated", &before);
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x55;
    std::fs::write(&cut, &bad).unwrap();
    assert_refused(&w, &cut, "refusing", &before);
    std::fs::write(&cut, b"this is not an archive at all, just text").unwrap();
    assert_refused(&w, &cut, "", &before);

    // Change one byte of a file inside the tar, keep the tar and gzip valid: only the
    // manifest can tell.
    let mut tar = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(&good[..]), &mut tar)
        .unwrap();
    let at = tar
        .windows(b"password = 'x'".len())
        .position(|win| win == b"password = 'x'")
        .unwrap();
    tar[at + 12] = b'y';
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    let tampered = w.path().join("tampered.tar.gz");
    std::fs::write(&tampered, gz.finish().unwrap()).unwrap();
    assert_refused(
        &w,
        &tampered,
        "entry `Rich/secret.conf` does not match the manifest: its SHA-256 differs",
        &before,
    );
    // The untouched archive imports.
    let o = w.run(&["image", "import", "rich.tar.gz"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn deb_package_installs_the_image_with_dpkg() {
    let w = World::new();
    rich_image(&w, "Rich_Image");
    let mut c = w.cmd();
    let o = c
        .arg("--store")
        .arg(w.store())
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args(["image", "pack", "Rich_Image", "--format", "deb"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let deb = w.path().join("convirt-image-rich-image_1700000000_all.deb");
    assert!(deb.is_file(), "{}", stdout(&o));
    let info = run_ok(Command::new("dpkg-deb").arg("-f").arg(&deb));
    assert!(info.contains("Package: convirt-image-rich-image"), "{info}");
    assert!(info.contains("Version: 1700000000"), "{info}");
    let contents = run_ok(Command::new("dpkg-deb").arg("-c").arg(&deb));
    assert!(
        contents.contains("root/root") && !contents.lines().any(|l| !l.contains("root/root")),
        "{contents}"
    );

    let root = w.path().join("root");
    let admin = root.join("var/lib/dpkg");
    std::fs::create_dir_all(admin.join("info")).unwrap();
    std::fs::create_dir_all(admin.join("updates")).unwrap();
    std::fs::write(admin.join("status"), "").unwrap();
    run_ok(
        Command::new("dpkg")
            .arg(format!("--root={}", root.display()))
            .args(["--force-script-chrootless", "--log=/dev/null", "-i"])
            .arg(&deb)
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            ),
    );
    let installed = root.join("var/cache/convirt/image_store/Rich_Image");
    assert_eq!(tree(&w.store().join("Rich_Image")), tree(&installed));
    let status = std::fs::read_to_string(admin.join("status")).unwrap();
    assert!(status.contains("Status: install ok installed"), "{status}");
}

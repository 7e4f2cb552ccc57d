//! Fuzzing every input path of convirt through its library, as property tests: the config
//! language, archive import (tar, gzip and zstd layers, into a temporary store), the settings
//! file, `--set`/`--vm-set` values through resolution and rendering, `image edit` and a
//! store's `image_store.conf`. Each
//! test replays its regression corpus (`tests/fixtures/fuzz/<target>/`), then runs a batch
//! of mutated inputs; `scripts/fuzz-ci.sh` runs them longer (docs/fuzzing.md).
// A test crate has no public API: its helpers are `pub` for its own modules.
#![allow(unreachable_pub)]

mod checks;
mod harness;

use harness::{Input, Target};
use proptest::sample::Index;
use std::io::{Read, Write};
use std::path::Path;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn tokens(list: &[&str]) -> Vec<Vec<u8>> {
    list.iter().map(|t| t.as_bytes().to_vec()).collect()
}

/// The regression corpus doubles as seeds: a case that once failed is a good start.
fn with_corpus(name: &str, mut seeds: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    seeds.extend(harness::corpus(name).into_iter().map(|(_, b)| b));
    seeds
}

fn shipped(name: &str, file: &str) -> Vec<u8> {
    std::fs::read(repo().join("image_store").join(name).join(file)).unwrap()
}

const IMAGES: [&str; 3] = [
    "Fedora_Core_Install",
    "Linux_CD_Install",
    "Windows_CD_Install",
];

// ---------------------------------------------------------------------------------------------
// The config language

/// The tokens of `fuzz/conf.dict` (libFuzzer's format: one quoted string a line).
fn conf_dict() -> Vec<Vec<u8>> {
    let text = std::fs::read_to_string(repo().join("fuzz/conf.dict")).unwrap();
    text.lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix('"')?
                .strip_suffix('"')
                .map(String::from)
        })
        .map(|t| t.replace("\\\"", "\"").replace("\\\\", "\\").into_bytes())
        .collect()
}

#[test]
fn config_language() {
    let mut seeds = Vec::new();
    for dir in ["tests/fixtures/conf/valid", "tests/fixtures/conf/invalid"] {
        let mut files: Vec<_> = std::fs::read_dir(repo().join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        seeds.extend(files.iter().map(|p| std::fs::read(p).unwrap()));
    }
    for img in IMAGES {
        seeds.push(shipped(img, "image.conf"));
        seeds.push(shipped(img, "vm_conf.template"));
    }
    harness::run(Target {
        name: "config_language",
        seeds: with_corpus("config_language", seeds),
        dict: conf_dict(),
        build: None,
        check: checks::config_language,
    });
}

// ---------------------------------------------------------------------------------------------
// Archive import

/// Where the numeric fields of a tar header are: offset and length.
const TAR_FIELDS: [(usize, usize); 10] = [
    (100, 8),  // mode
    (108, 8),  // uid
    (116, 8),  // gid
    (124, 12), // size
    (136, 12), // mtime
    (329, 8),  // devmajor
    (337, 8),  // devminor
    (386, 12), // GNU sparse[0].offset
    (398, 12), // GNU sparse[0].numbytes
    (483, 12), // GNU realsize
];

/// Extreme values for a numeric field of `len` bytes.
fn extreme(kind: u8, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    match kind % 9 {
        0 => v.fill(0xff),
        1 => {
            v.fill(0xff);
            v[0] = 0x80;
        }
        2 => {
            v[0] = 0x80;
            v[len - 1] = 1;
        }
        3 => {
            v.fill(b'7');
            v[len - 1] = 0;
        }
        4 => {}
        5 => v.fill(b' '),
        6 => v[..2].copy_from_slice(b"zz"),
        7 => {
            v[0] = 0x80;
            v[len - 8] = 0x7f;
            for b in &mut v[len - 7..] {
                *b = 0xff;
            }
        }
        _ => v[..3].copy_from_slice(b"-1\0"),
    }
    v
}

fn is_header(block: &[u8]) -> bool {
    block.len() == 512 && &block[257..262] == b"ustar"
}

fn fix_checksum(block: &mut [u8]) {
    block[148..156].fill(b' ');
    let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
    block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

/// Writes an extreme value into one numeric field of one header, checksum fixed up, so the
/// damage reaches the field parsers.
fn tar_field(data: &mut [u8], h: &Index, field: u8, value: u8) {
    let headers: Vec<usize> = (0..data.len() / 512)
        .filter(|&i| is_header(&data[i * 512..(i + 1) * 512]))
        .collect();
    if headers.is_empty() {
        return;
    }
    let at = headers[h.index(headers.len())] * 512;
    let (off, len) = TAR_FIELDS[field as usize % TAR_FIELDS.len()];
    let block = &mut data[at..at + 512];
    block[off..off + len].copy_from_slice(&extreme(value, len));
    fix_checksum(block);
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Mutates a tar stream, maybe fixes every header's checksum, compresses it (none, gzip or
/// zstd) and maybe damages the compressed bytes too.
fn build_archive(t: &Target, inp: &Input) -> Vec<u8> {
    let seed = t.seeds[inp.seed.index(t.seeds.len())].clone();
    let mut tar = t.mutate(seed, &inp.mutations, Some(tar_field));
    if inp.choice & 0x10 != 0 {
        for block in tar.chunks_mut(512).filter(|b| is_header(b)) {
            fix_checksum(block);
        }
    }
    let layered = match inp.choice % 3 {
        0 => tar,
        1 => gzip(&tar),
        _ => zstd::bulk::compress(&tar, 1).unwrap(),
    };
    t.mutate(layered, &inp.outer, None)
}

/// Seeds: `image pack` of an image with a subdirectory, a symlink, a long name, an
/// executable and a sparse disk, as a plain tar stream; the same image with pax headers
/// (written by hand); and the corpus.
fn archive_seeds() -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let img = root.join("Seed");
    std::fs::create_dir_all(img.join("custom_scripts/net")).unwrap();
    std::fs::write(img.join("image.conf"), "custom_list = ['net']\nsize = 10\n").unwrap();
    std::fs::write(
        img.join("vm_conf.template"),
        "name = '$VM_NAME'\nmemory = 256\n",
    )
    .unwrap();
    std::fs::write(img.join("provision.sh"), "#!/bin/bash\nexit 0\n").unwrap();
    std::fs::write(img.join("custom_scripts/net/S10net"), "#!/bin/bash\n").unwrap();
    std::fs::write(img.join("d".repeat(120)), "long\n").unwrap();
    std::os::unix::fs::symlink("image.conf", img.join("link")).unwrap();
    let disk = std::fs::File::create(img.join("disk.img")).unwrap();
    disk.set_len(1 << 20).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&disk, b"data", 512 * 1024).unwrap();
    let (store, _) = convirt::store::Store::open(&root).unwrap();
    let out = dir.path().join("seed.tar.gz");
    convirt::archive::pack(
        &store,
        &convirt::archive::PackOptions {
            images: vec!["Seed".into()],
            output: Some(out.clone()),
            format: Some(convirt::archive::Format::TarGz),
            force: false,
            source_date_epoch: Some(1_700_000_000),
            progress: false,
        },
    )
    .unwrap();
    let mut packed = Vec::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(&out).unwrap())
        .read_to_end(&mut packed)
        .unwrap();

    // A ustar archive with a pax header before each file: path, size and mtime overrides.
    let mut pax = Vec::new();
    let mut entry = |path: &str, kind: tar::EntryType, data: &[u8], records: &str| {
        if !records.is_empty() {
            let mut x = tar::Header::new_ustar();
            x.set_entry_type(tar::EntryType::XHeader);
            x.set_mode(0o644);
            x.set_size(records.len() as u64);
            x.set_cksum();
            pax.extend_from_slice(x.as_bytes());
            pax.extend_from_slice(records.as_bytes());
            pax.resize(pax.len().div_ceil(512) * 512, 0);
        }
        let mut h = tar::Header::new_ustar();
        h.set_path(path).unwrap();
        h.set_entry_type(kind);
        h.set_mode(if path.ends_with(".sh") { 0o755 } else { 0o644 });
        h.set_size(data.len() as u64);
        h.set_mtime(1_600_000_000);
        h.set_cksum();
        pax.extend_from_slice(h.as_bytes());
        pax.extend_from_slice(data);
        pax.resize(pax.len().div_ceil(512) * 512, 0);
    };
    entry("Pax/", tar::EntryType::Directory, b"", "");
    entry(
        "Pax/image.conf",
        tar::EntryType::Regular,
        b"x = 1\n",
        "30 mtime=1700000000.123456789\n",
    );
    entry(
        "Pax/vm_conf.template",
        tar::EntryType::Regular,
        b"name = ''\n",
        "27 path=Pax/vm_conf.template\n",
    );
    entry(
        "Pax/provision.sh",
        tar::EntryType::Regular,
        b"#!/bin/bash\n",
        "12 uid=100\n12 gid=100\n",
    );
    pax.extend_from_slice(&[0u8; 1024]);
    with_corpus("archive_import", vec![packed, pax])
}

#[test]
fn archive_import() {
    harness::run(Target {
        name: "archive_import",
        seeds: archive_seeds(),
        dict: tokens(&[
            "../",
            "/",
            "././@LongLink",
            "ustar  \0",
            "ustar\u{0}00",
            "\0\0\0\0\0\0\0\0",
            "0000644\0",
            "\u{ff}\u{ff}\u{ff}",
            "Seed/",
            "Existing/",
            ".convirt-manifest",
            "{\"convirt-manifest\":1,\"image\":\"Seed\",\"entries\":1}\n",
            "20 path=Existing/x\n",
            "24 GNU.sparse.major=1\n",
        ]),
        build: Some(build_archive),
        check: checks::archive_import,
    });
}

// ---------------------------------------------------------------------------------------------
// The settings file

#[test]
fn settings_file() {
    let seeds = tokens(&[
        "image_store = \"/srv/convirt/image_store\"\nlog_dir = \"/var/log/convirt\"\n\n\
         [variables]\nDEFAULT_BRIDGE = \"br0\"\nVM_DISKS_DIR = \"/srv/vm_disks\"\nmemory = 1024\n\n\
         [hosts.xen1]\naddress = \"xen1.example.com\"\nuser = \"root\"\n",
        "default_format = 'xm'\ndefault_computed_options = ['arch', 'memory']\n\
         work_dir = '~/w'\n[variables]\nvif = ['bridge=br1', 'mac=00:16:3e:00:00:01']\n\
         disk = { a = 1, b = [1.5, -2, true] }\nextra = '''\nconsole=hvc0\n'''\n",
        "[hosts.a]\naddress = 'a'\nport = 22\nstore = 'rel/store'\nlog_dir = '/l'\n\
         [hosts.\"b.c\"]\naddress = \"10.0.0.1\"\n[variables]\nwhen = 1979-05-27T07:32:00Z\n\
         a.b.c = 'dotted'\n",
        "require_signature = true\n[sources.community]\nurl = \"https://images.example.org/c/\"\n\
         public_key = \"RWRWgRcfUkZQ+wXHL2hr8y+MJGIuDcezQ0Prz8ySdmkhPTtEApdu8uz3\"\n\
         [sources.local]\nurl = 'http://[::1]:8080/x'\npublic_key = 'RW'\n",
    ]);
    harness::run(Target {
        name: "settings_file",
        seeds: with_corpus("settings_file", seeds),
        dict: tokens(&[
            "[",
            "]",
            "{",
            "}",
            "[[",
            "]]",
            "=",
            ".",
            ",",
            "\"",
            "'",
            "'''",
            "\"\"\"",
            "\n",
            "#",
            "[variables]\n",
            "[hosts.x]\n",
            "a.",
            "memory = ",
            "1e999",
            "nan",
            "-inf",
            "0x7fffffffffffffff",
            "9223372036854775808",
            "1979-05-27",
            "\\u0000",
            "\\U0010FFFF",
            "image_store",
            "default_format",
            "default_computed_options",
            "address = 'h'\n",
            "port = 65536",
            "$VM_NAME",
            "\u{feff}",
            "\r\n",
        ]),
        build: None,
        check: checks::settings_file,
    });
}

// ---------------------------------------------------------------------------------------------
// `--set` / `--vm-set`

#[test]
fn set_values() {
    let seeds = tokens(&[
        "v:memory=512\0v:vcpus=4\0s:xvda_disk_size=20000",
        "v:extra=console=hvc0 quiet\0v:vif=['bridge=br0']\0s:INSTALL_ISO=/srv/iso/debian.iso",
        "v:disk=['file:$VM_DISKS_DIR/$VM_NAME.img,xvda,w', 'phy:/dev/vg/x,xvdb,r']\0v:name=web1",
        "v:on_crash='restart'\0v:kernel=\"/boot/vm'linuz\"\0s:http_proxy=http://p:3128/",
        "v:memory=2**40\0v:cpus=[1, [2]]\0v:vfb={'vnc': 1}\0v:builder=None\0s:custom_list=[]",
    ]);
    harness::run(Target {
        name: "set_values",
        seeds: with_corpus("set_values", seeds),
        dict: tokens(&[
            "\0v:",
            "\0s:",
            "=",
            "'",
            "\"",
            "[",
            "]",
            "{",
            "}",
            "(",
            ")",
            ",",
            "\n",
            "\\",
            "$VM_NAME",
            "${VM_NAME}",
            "$IMAGE_STORE",
            "$$",
            "$AUTOGEN_MAC",
            "memory",
            "vcpus",
            "name",
            "disk",
            "vif",
            "extra",
            "kernel",
            "ramdisk",
            "builder",
            "type",
            "bootloader",
            "computed_options",
            "customizable_options",
            "arch",
            "device_model",
            "True",
            "None",
            "1e308",
            "-0.0",
            "nan",
            "99999999999999999999",
            "%s",
            "\u{0}",
            "#",
            "\u{202e}",
        ]),
        build: None,
        check: checks::set_values,
    });
}

// ---------------------------------------------------------------------------------------------
// `image edit`

#[test]
fn image_edit() {
    let mut seeds = Vec::new();
    let edits = [
        "xvda_disk_size=20000",
        "KERNEL_TYPE='Fedora_41'",
        "custom_list=['hostname']",
        "new_key=plain text",
        "http_proxy=",
    ];
    for (i, img) in IMAGES.iter().enumerate() {
        for (j, e) in edits.iter().enumerate() {
            if (i + j) % 2 == 0 {
                let mut s = e.as_bytes().to_vec();
                s.push(0);
                s.extend(shipped(img, "image.conf"));
                seeds.push(s);
            }
        }
    }
    seeds.push(b"x=1\0x = (1 +\n     2)  # keep\r\ny = x\r\n".to_vec());
    seeds.push(b"k='v'\0\xef\xbb\xbfk = 'old'\nif k:\n    z = 1\n".to_vec());
    harness::run(Target {
        name: "image_edit",
        seeds: with_corpus("image_edit", seeds),
        dict: tokens(&[
            "\0",
            "=",
            "'",
            "\"",
            "'''",
            "[",
            "]",
            "(",
            ")",
            "\n",
            "\r\n",
            "#",
            "\\\n",
            ";",
            "if x:\n    ",
            "else:\n    ",
            "+=",
            " = ",
            "memory",
            "custom_list",
            "import os\n",
            "$VM_NAME",
            "None",
            "True",
            "-1",
            "1.5",
            "\t",
        ]),
        build: None,
        check: checks::image_edit,
    });
}

// ---------------------------------------------------------------------------------------------
// The store's `image_store.conf`

#[test]
fn store_conf() {
    let seeds = vec![
        std::fs::read(repo().join("image_store/image_store.conf")).unwrap(),
        b"excludes = ['common', 'Other']\ndefault = 'Existing'\n".to_vec(),
        b"excludes = ('a',) + ('b',)\nif True:\n    default = 'x'\n".to_vec(),
    ];
    let mut dict = conf_dict();
    dict.extend(tokens(&[
        "excludes",
        "default",
        " = ",
        "['Other']",
        "[1]",
        "None",
        "'..'",
        "'/'",
        "''",
    ]));
    harness::run(Target {
        name: "store_conf",
        seeds: with_corpus("store_conf", seeds),
        dict,
        build: None,
        check: checks::store_conf,
    });
}

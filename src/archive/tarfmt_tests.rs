//! Tests of the tar stream: round trips, and every refusal of the strict reader.
use super::*;

fn roundtrip(build: impl FnOnce(&mut TarWriter<Vec<u8>>)) -> Vec<(Entry, Vec<u8>)> {
    let mut w = TarWriter::new(Vec::new());
    build(&mut w);
    let bytes = w.finish().unwrap();
    assert_eq!(bytes.len() % RECORD as usize, 0);
    let mut r = TarReader::new(&bytes[..]);
    let mut out = Vec::new();
    while let Some(e) = r.next_entry().unwrap() {
        let mut data = Vec::new();
        let mut buf = [0u8; 100];
        loop {
            let n = r.read_data(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            data.extend_from_slice(&buf[..n]);
        }
        out.push((e, data));
    }
    out
}

#[test]
fn long_names_links_and_sparse_maps_round_trip() {
    let long = format!("Img/{}/file", "d".repeat(150));
    let target = "t".repeat(120);
    let extents: Vec<Extent> = (0..30).map(|i| (i * 8192, 100)).collect();
    let entries = roundtrip(|w| {
        w.dir(&Meta {
            path: "Img/",
            mode: 0o755,
            mtime: 5,
        })
        .unwrap();
        w.file(
            &Meta {
                path: &long,
                mode: 0o640,
                mtime: 6,
            },
            3,
        )
        .unwrap();
        w.data(b"abc").unwrap();
        w.end_data(3).unwrap();
        w.symlink(
            &Meta {
                path: "Img/l",
                mode: 0o777,
                mtime: 0,
            },
            &target,
        )
        .unwrap();
        w.sparse(
            &Meta {
                path: "Img/disk",
                mode: 0o600,
                mtime: 0,
            },
            &extents,
            1 << 40,
        )
        .unwrap();
        for _ in &extents {
            w.data(&[7u8; 100]).unwrap();
        }
        w.end_data(3000).unwrap();
    });
    assert_eq!(entries.len(), 4);
    assert_eq!(entries[0].0.kind, Kind::Dir);
    assert_eq!(entries[1].0.path, long.as_bytes());
    assert_eq!(entries[1].0.mode, 0o640);
    assert_eq!(entries[1].1, b"abc");
    assert_eq!(entries[2].0.kind, Kind::Symlink(target.into_bytes()));
    assert_eq!(
        entries[3].0.kind,
        Kind::Sparse {
            extents,
            real_size: 1 << 40
        }
    );
    assert_eq!(entries[3].1.len(), 3000);
}

#[test]
fn truncation_and_corruption_are_errors() {
    let mut w = TarWriter::new(Vec::new());
    w.file(
        &Meta {
            path: "a",
            mode: 0o644,
            mtime: 0,
        },
        2000,
    )
    .unwrap();
    w.data(&[1u8; 2000]).unwrap();
    w.end_data(2000).unwrap();
    let bytes = w.finish().unwrap();
    for cut in [100, 512, 1500, 2560] {
        let mut r = TarReader::new(&bytes[..cut]);
        let res = (|| -> Result<(), ReadError> {
            while r.next_entry()?.is_some() {
                let mut b = [0u8; 4096];
                while r.read_data(&mut b)? > 0 {}
            }
            Ok(())
        })();
        assert!(matches!(res, Err(ReadError::Truncated(_))), "cut {cut}");
    }
    let mut bad = bytes.clone();
    bad[10] ^= 1;
    assert!(matches!(
        TarReader::new(&bad[..]).next_entry(),
        Err(ReadError::Corrupt(_))
    ));
}

/// Damaged archives end in an error, never a panic or a hang.
#[test]
fn mutated_archives_never_panic() {
    let mut w = TarWriter::new(Vec::new());
    let long = format!("I/{}", "n".repeat(120));
    w.dir(&Meta {
        path: "I/",
        mode: 0o755,
        mtime: 1,
    })
    .unwrap();
    w.file(
        &Meta {
            path: &long,
            mode: 0o644,
            mtime: 1,
        },
        700,
    )
    .unwrap();
    w.data(&[b'x'; 700]).unwrap();
    w.end_data(700).unwrap();
    let extents: Vec<Extent> = (0..6).map(|i| (i * 4096, 10)).collect();
    w.sparse(
        &Meta {
            path: "I/s",
            mode: 0o600,
            mtime: 1,
        },
        &extents,
        1 << 20,
    )
    .unwrap();
    w.data(&[1u8; 60]).unwrap();
    w.end_data(60).unwrap();
    let good = w.finish().unwrap();
    let mut x: u64 = 0x2545f4914f6cdd1d;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let headers: Vec<usize> = (0..good.len() / BLOCK)
        .filter(|&i| {
            let b: &[u8; BLOCK] = good[i * BLOCK..(i + 1) * BLOCK].try_into().unwrap();
            b.iter().any(|&c| c != 0) && checksum_ok(b)
        })
        .collect();
    assert!(headers.len() >= 4, "{headers:?}");
    for round in 0..3000 {
        let mut bad = good.clone();
        for _ in 0..1 + next() % 4 {
            let at = (next() % 4096) as usize;
            bad[at] = next() as u8;
        }
        // Half the time, make the damaged headers' checksums right again, so the damage
        // reaches the field parsers.
        if round % 2 == 0 {
            for &i in &headers {
                let mut h = Header::new_gnu();
                h.as_mut_bytes()
                    .copy_from_slice(&bad[i * BLOCK..(i + 1) * BLOCK]);
                h.set_cksum();
                bad[i * BLOCK..(i + 1) * BLOCK].copy_from_slice(h.as_bytes());
            }
        }
        let mut r = TarReader::new(&bad[..]);
        let mut buf = [0u8; 512];
        let mut steps = 0;
        loop {
            steps += 1;
            assert!(steps < 10_000, "no progress");
            match r.next_entry() {
                Ok(Some(_)) => loop {
                    match r.read_data(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                },
                Ok(None) | Err(_) => break,
            }
        }
    }
}

/// One file entry `I/f` of 3 bytes, with `patch` applied to its header (checksum fixed
/// after), preceded by `pax` records when given; the first entry the reader returns.
fn patched(patch: impl Fn(&mut Header), pax: Option<&[u8]>) -> Result<Entry, ReadError> {
    let mut bytes = Vec::new();
    if let Some(records) = pax {
        let mut x = Header::new_ustar();
        x.set_entry_type(EntryType::XHeader);
        x.set_size(records.len() as u64);
        x.set_mode(0o644);
        x.set_cksum();
        bytes.extend_from_slice(x.as_bytes());
        bytes.extend_from_slice(records);
        bytes.resize(bytes.len().div_ceil(BLOCK) * BLOCK, 0);
    }
    let mut w = TarWriter::new(Vec::new());
    w.file(
        &Meta {
            path: "I/f",
            mode: 0o644,
            mtime: 7,
        },
        3,
    )
    .unwrap();
    w.data(b"abc").unwrap();
    w.end_data(3).unwrap();
    let mut tail = w.finish().unwrap();
    let mut h = Header::new_gnu();
    h.as_mut_bytes().copy_from_slice(&tail[..BLOCK]);
    patch(&mut h);
    h.set_cksum();
    tail[..BLOCK].copy_from_slice(h.as_bytes());
    bytes.extend_from_slice(&tail);
    let mut r = TarReader::new(&bytes[..]);
    Ok(r.next_entry()?.expect("an entry"))
}

/// One pax record, its length counted.
fn pax(key: &str, value: &str) -> Vec<u8> {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while len.to_string().len() + body.len() != len {
        len += 1;
    }
    format!("{len}{body}").into_bytes()
}

fn refusal(r: Result<Entry, ReadError>) -> String {
    match r {
        Err(ReadError::Corrupt(m)) => m,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn numeric_fields_in_octal_and_base_256() {
    type Case<'a> = (&'a [u8], Result<Option<i128>, ()>);
    let cases: &[Case] = &[
        (b"0000644\0", Ok(Some(0o644))),
        (b"  644 \0\0", Ok(Some(0o644))),
        (b"\0\0\0\0\0\0\0\0", Ok(None)),
        (b"        ", Ok(None)),
        (b"00000008", Err(())),
        (b"12 34\0\0\0", Err(())),
        (&[0x80, 0, 0, 0, 0, 0, 1, 0], Ok(Some(256))),
        (&[0xff; 12], Ok(Some(-1))),
        (
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe],
            Ok(Some(-2)),
        ),
        (
            &[
                0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            ],
            Ok(Some((1i128 << 88) - 1)),
        ),
        (&[0x81, 0, 0, 0, 0, 0, 0, 0], Err(())),
    ];
    for (field, want) in cases {
        assert_eq!(raw_number(field).map_err(|_| ()), *want, "{field:?}");
    }
}

#[test]
fn extreme_mtimes_are_clamped() {
    // All 0xff is -1 in base-256: before 1970, clamped to 0.
    let e = patched(|h| h.as_old_mut().mtime = [0xff; 12], None).unwrap();
    assert_eq!(e.mtime, 0);
    let mut huge = [0xff; 12];
    huge[0] = 0x80;
    let e = patched(|h| h.as_old_mut().mtime = huge, None).unwrap();
    assert_eq!(e.mtime, MAX_MTIME);
    let e = patched(|h| h.set_mtime(MAX_MTIME + 1), None).unwrap();
    assert_eq!(e.mtime, MAX_MTIME);
    let e = patched(|h| h.set_mtime(1_700_000_000), None).unwrap();
    assert_eq!(e.mtime, 1_700_000_000);
    // An empty field is 0, as before; text that is not a number is refused.
    let e = patched(|h| h.as_old_mut().mtime = [0; 12], None).unwrap();
    assert_eq!(e.mtime, 0);
    let m = refusal(patched(|h| h.as_old_mut().mtime = *b"99999999999\0", None));
    assert!(m.contains("`I/f`") && m.contains("mtime"), "{m}");
    // The largest time kept still converts to a `SystemTime` without overflow.
    let _ = std::time::SystemTime::UNIX_EPOCH
        + std::time::Duration::from_secs(
            patched(|h| h.as_old_mut().mtime = huge, None)
                .unwrap()
                .mtime,
        );
}

#[test]
fn out_of_range_fields_are_refused_naming_the_entry() {
    let mut big = [0xff; 12];
    big[0] = 0x80;
    let m = refusal(patched(|h| h.as_old_mut().size = big, None));
    assert!(
        m.contains("`I/f`") && m.contains("size out of range"),
        "{m}"
    );
    let m = refusal(patched(|h| h.as_old_mut().size = [0xff; 12], None));
    assert!(m.contains("size out of range: -1"), "{m}");
    let m = refusal(patched(|h| h.as_old_mut().mode = [0xff; 8], None));
    assert!(
        m.contains("`I/f`") && m.contains("mode out of range"),
        "{m}"
    );
    let m = refusal(patched(|h| h.as_old_mut().mode = *b"77777777", None));
    assert!(m.contains("mode out of range"), "{m}");
    let m = refusal(patched(
        |h| h.as_old_mut().uid = [0x80, 1, 0, 0, 0, 0, 0, 0],
        None,
    ));
    assert!(m.contains("`I/f`") && m.contains("uid out of range"), "{m}");
    let m = refusal(patched(|h| h.as_old_mut().gid = [0xff; 8], None));
    assert!(m.contains("gid out of range: -1"), "{m}");
    let m = refusal(patched(
        |h| {
            h.set_entry_type(EntryType::Char);
            h.as_gnu_mut().unwrap().dev_major = [0x80, 0, 0, 1, 0, 0, 0, 0];
        },
        None,
    ));
    assert!(m.contains("device major number out of range"), "{m}");
    // File-type bits above the 12 permission bits (old tars write them) are dropped.
    let e = patched(|h| h.as_old_mut().mode = *b"0100644\0", None).unwrap();
    assert_eq!(e.mode, 0o644);
}

#[test]
fn pax_overrides_are_range_checked() {
    let e = patched(|_| {}, Some(&pax("mtime", "1700000000.123456789"))).unwrap();
    assert_eq!(e.mtime, 1_700_000_000);
    let e = patched(|_| {}, Some(&pax("mtime", "-12345.5"))).unwrap();
    assert_eq!(e.mtime, 0);
    let e = patched(
        |_| {},
        Some(&pax("mtime", "999999999999999999999999999999999999999999")),
    )
    .unwrap();
    assert_eq!(e.mtime, MAX_MTIME);
    let m = refusal(patched(|_| {}, Some(&pax("mtime", "12a45"))));
    assert!(m.contains("bad mtime"), "{m}");
    let m = refusal(patched(
        |_| {},
        Some(&pax("size", "99999999999999999999999")),
    ));
    assert!(m.contains("size out of range"), "{m}");
    let m = refusal(patched(|_| {}, Some(&pax("size", "-300"))));
    assert!(m.contains("bad size"), "{m}");
    let m = refusal(patched(|_| {}, Some(&pax("uid", "4294967296"))));
    assert!(m.contains("uid out of range"), "{m}");
    let e = patched(|_| {}, Some(&pax("uid", "4294967295"))).unwrap();
    assert_eq!(e.path, b"I/f");
}

#[test]
fn sparse_maps_at_extreme_values_are_refused() {
    let mut w = TarWriter::new(Vec::new());
    let meta = Meta {
        path: "I/s",
        mode: 0o600,
        mtime: 1,
    };
    w.sparse(&meta, &[(0, 10)], 4096).unwrap();
    w.data(&[1u8; 10]).unwrap();
    w.end_data(10).unwrap();
    let good = w.finish().unwrap();
    let mut big = [0xff; 12];
    big[0] = 0x80;
    for (i, patch) in [
        (|g: &mut tar::GnuHeader, v: [u8; 12]| g.realsize = v) as fn(&mut _, _),
        |g, v| g.sparse[0].offset = v,
        |g, v| g.sparse[0].numbytes = v,
    ]
    .into_iter()
    .enumerate()
    {
        let mut bad = good.clone();
        let mut h = Header::new_gnu();
        h.as_mut_bytes().copy_from_slice(&bad[..BLOCK]);
        patch(h.as_gnu_mut().unwrap(), big);
        h.set_cksum();
        bad[..BLOCK].copy_from_slice(h.as_bytes());
        match TarReader::new(&bad[..]).next_entry() {
            Err(ReadError::Corrupt(m)) => {
                assert!(
                    m.contains("`I/s`") && m.contains("out of range"),
                    "{i}: {m}"
                )
            }
            other => panic!("{i}: {other:?}"),
        }
    }
}

#[test]
fn pax_records() {
    let d = b"20 path=a/b/c/d/e/f\n11 size=42\n";
    let r = parse_pax(d).unwrap();
    assert_eq!(r[0], ("path".into(), b"a/b/c/d/e/f".to_vec()));
    assert_eq!(r[1], ("size".into(), b"42".to_vec()));
    assert!(parse_pax(b"99 path=x\n").is_err());
}

//! A guest cache entry sent to a server that lacks it (issue #22): rather than a bootstrap on
//! the server (mmdebstrap from the mirror, 40 s to minutes here), this machine's warm entry of
//! the same key goes over the ssh master connection once, each file checked by SHA-256 on
//! arrival, and the server seals it as `common/guest` would have. The base disks are not sent:
//! the server makes the one a VM needs from `rootfs.tar` (`mkfs.ext4 -d`, about a second).
//!
//! The conversation (one `__serve` command): this machine sends `Request::Seed` with the file
//! names and sizes; the server answers `SeedWanted` or a final `Seeded`/`Error` (it has the
//! entry, or cannot take it). After `SeedWanted` the files follow back to back, then one line
//! with their SHA-256 digests (computed here while reading them, so a run to a server that
//! has the entry reads nothing); the server compares them with what it wrote and answers a
//! final `Seeded` or `Error`.

use super::proto::{self, Event, Request};
use crate::remote::Session;
use crate::remote::channel::{Channel, Msg};
use crate::remote::wire;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The files of an entry that travel; the rest (base disks) are derived on the server.
const FILES: [&str; 6] = [
    "initrd.img",
    "key.txt",
    "overlay.tar",
    "paths.list",
    "rootfs.tar",
    "vmlinuz",
];

/// What a cold bootstrap costs here at the least (docs/performance.md: 41 s on an idle
/// machine, up to 214 s loaded). A send that would take longer is given up and the server
/// bootstraps.
const BOOTSTRAP_SECONDS: f64 = 40.0;

pub(crate) use super::proto::{Seed, SeedFile, SeedSums};

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// The name of an entry directory: `debian-` and 16 hex digits.
fn entry_name_ok(entry: &Path) -> bool {
    let name = entry.file_name().and_then(|n| n.to_str()).unwrap_or("");
    entry.is_absolute()
        && entry.parent().and_then(Path::file_name) == Some("guests".as_ref())
        && name.strip_prefix("debian-").is_some_and(|k| {
            k.len() == 16
                && k.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

/// The summary line of the guest cache of a remote run, or `None` when the image has no
/// guest cache. Sends the entry when this machine has it and the server does not.
pub(crate) fn offer(
    plan: &super::Plan,
    local_cache: Option<&Path>,
    session: &Session,
) -> Option<String> {
    let info = match super::guest::cache_info(&plan.resolved)? {
        Ok(i) => i,
        Err(_) => return None,
    };
    if info.refresh {
        return Some("rebuilt on the server (REFRESH is set)".into());
    }
    let local = local_cache?
        .join("guests")
        .join(format!("debian-{}", info.key));
    if !super::guest::entry_ok(&local) {
        return Some(format!(
            "bootstrapped on the server unless it has the entry (this machine has no `{}` to send)",
            local.display()
        ));
    }
    let mirror_from_host = plan
        .resolved
        .image_value("DEBIAN_MIRROR")
        .is_none_or(|m| m.to_text().is_empty());
    let suite = plan
        .resolved
        .image_value("DEBIAN_SUITE")
        .map(|v| v.to_text())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "bookworm".into());
    // One send per server and entry at a time: VMs of one `--jobs` run wait for the first.
    // One send per server and entry at a time: the other VMs of a `--jobs` run to that
    // server wait for it (a slot per server and entry; other servers go on).
    type Slot = std::sync::Arc<std::sync::Mutex<Option<(bool, String)>>>;
    static SLOTS: std::sync::Mutex<Vec<(String, PathBuf, Slot)>> =
        std::sync::Mutex::new(Vec::new());
    let slot = {
        let mut slots = SLOTS.lock().unwrap_or_else(|e| e.into_inner());
        let name = &session.target.name;
        match slots.iter().find(|(h, d, _)| h == name && *d == info.dir) {
            Some((_, _, s)) => s.clone(),
            None => {
                let s = Slot::default();
                slots.push((name.clone(), info.dir.clone(), s.clone()));
                s
            }
        }
    };
    let mut done = slot.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((there, note)) = done.as_ref() {
        return Some(if *there {
            "warm on the server (it got the entry earlier in this run)".into()
        } else {
            note.clone()
        });
    }
    let (there, note) = match send(
        &local,
        &info.dir,
        mirror_from_host.then(|| (suite, info.mirror.clone())),
        session,
    ) {
        Ok(Sent::Already) => (
            true,
            "warm on the server (no bootstrap, nothing sent)".to_string(),
        ),
        Ok(Sent::Bytes(n, t)) => (
            true,
            format!(
                "sent from this machine instead of a bootstrap on the server: {} in {:.1} s, SHA-256 checked there",
                super::cache::human(n),
                t.as_secs_f64()
            ),
        ),
        Err(why) => (false, format!("bootstrapped on the server: {why}")),
    };
    *done = Some((there, note.clone()));
    Some(note)
}

enum Sent {
    Already,
    Bytes(u64, Duration),
}

/// Names and sizes of the local files.
fn describe(local: &Path) -> std::io::Result<Vec<SeedFile>> {
    FILES
        .iter()
        .map(|name| {
            Ok(SeedFile {
                name: name.to_string(),
                size: std::fs::metadata(local.join(name))?.len(),
            })
        })
        .collect()
}

fn send(
    local: &Path,
    entry: &Path,
    host_mirror: Option<(String, String)>,
    session: &Session,
) -> Result<Sent, String> {
    let files = describe(local).map_err(|e| format!("cannot read `{}`: {e}", local.display()))?;
    let total: u64 = files.iter().map(|f| f.size).sum();
    let mut ch = Channel::spawn(session.serve()).map_err(|e| format!("cannot run ssh: {e}"))?;
    let _ = ch.send(&proto::Hello::ours(None));
    let _ = ch.send(&Request::Seed(Box::new(Seed {
        entry: entry.to_path_buf(),
        files: files.clone(),
        host_mirror,
    })));
    let answer = |ch: &Channel| -> Result<Event, String> {
        loop {
            match ch.recv() {
                Some(Msg::Line(l)) => match wire::parse::<Event>(&l) {
                    Ok(Event::Hello(_)) => {}
                    Ok(e) => return Ok(e),
                    Err(e) => return Err(format!("the server's answer is unreadable: {e}")),
                },
                Some(Msg::Boot(_)) => {}
                Some(Msg::Bad(why)) => {
                    return Err(format!("the server's answer is unreadable: {why}"));
                }
                None => return Err("the server ended the channel".into()),
            }
        }
    };
    match answer(&ch)? {
        Event::SeedWanted => {}
        Event::Seeded { bytes: 0 } => return Ok(Sent::Already),
        Event::Error { message, .. } => return Err(message),
        other => return Err(format!("unexpected answer {other:?}")),
    }
    let started = Instant::now();
    let mut input = ch.take_input().ok_or("the channel is closed")?;
    let mut done = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    let mut sums = Vec::new();
    for f in &files {
        let mut src = std::fs::File::open(local.join(&f.name))
            .map_err(|e| format!("cannot read `{}`: {e}", f.name))?
            .take(f.size);
        let mut h = Sha256::new();
        let mut sent = 0u64;
        loop {
            let n = src
                .read(&mut buf)
                .map_err(|e| format!("cannot read `{}`: {e}", f.name))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            sent += n as u64;
            input
                .write_all(&buf[..n])
                .map_err(|e| format!("the send broke off: {e}"))?;
            done += n as u64;
            // When this link would take longer than a bootstrap, the server bootstraps.
            let t = started.elapsed().as_secs_f64();
            if t > 2.0 && t * total as f64 / done as f64 > BOOTSTRAP_SECONDS {
                return Err(format!(
                    "sending the {} entry would have taken about {:.0} s, longer than a bootstrap",
                    super::cache::human(total),
                    t * total as f64 / done as f64
                ));
            }
        }
        if sent != f.size {
            return Err(format!("`{}` changed while it was sent", f.name));
        }
        sums.push(hex(&h.finalize()));
    }
    wire::send(&mut input, &SeedSums { sha256: sums })
        .map_err(|e| format!("the send broke off: {e}"))?;
    input
        .flush()
        .map_err(|e| format!("the send broke off: {e}"))?;
    ch.give_back(input);
    match answer(&ch)? {
        Event::Seeded { bytes } => Ok(Sent::Bytes(bytes, started.elapsed())),
        Event::Error { message, .. } => Err(message),
        other => Err(format!("unexpected answer {other:?}")),
    }
}

/// The server's side: checks the request, answers `SeedWanted` when it needs the entry,
/// takes the files into a private directory beside the entry (each checked by size and
/// SHA-256), writes the `complete` manifest the shell checks, and renames it into place,
/// holding the entry's lock exclusively (as a bootstrap would).
pub(crate) fn receive(
    seed: &Seed,
    mut input: &mut dyn std::io::BufRead,
    mut answer: impl FnMut(&Event),
) -> Event {
    match take(seed, &mut input, &mut answer) {
        Ok(bytes) => Event::Seeded { bytes },
        Err(message) => Event::Error {
            message,
            hints: vec![],
        },
    }
}

fn take(
    seed: &Seed,
    input: &mut &mut dyn std::io::BufRead,
    answer: &mut dyn FnMut(&Event),
) -> Result<u64, String> {
    if !entry_name_ok(&seed.entry) {
        return Err(format!(
            "`{}` is not a guest cache entry (`<dir>/guests/debian-<16 hex digits>`)",
            seed.entry.display()
        ));
    }
    let mut names: Vec<&str> = seed.files.iter().map(|f| f.name.as_str()).collect();
    names.sort_unstable();
    if names != FILES {
        return Err("the entry's file list is not the one of a guest cache entry".into());
    }
    if let Some((suite, mirror)) = &seed.host_mirror {
        let own = super::guest::host_mirror(Path::new("/etc/apt"), suite)
            .map(|m| m.trim_end_matches('/').to_string());
        if own.as_deref() != Some(mirror.as_str()) {
            return Err(format!(
                "this server's apt sources name another mirror for {suite} than `{mirror}`: its cache key differs"
            ));
        }
    }
    let guests = seed.entry.parent().ok_or("no parent")?;
    let key = &seed.entry.file_name().unwrap_or_default().to_string_lossy()["debian-".len()..];
    std::fs::create_dir_all(guests)
        .map_err(|e| format!("cannot create `{}`: {e}", guests.display()))?;
    let lock = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(guests.join(format!(".debian-{key}.lock")))
        .map_err(|e| format!("cannot open the entry's lock: {e}"))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| format!("cannot lock the entry: {e}"))?;
    if super::guest::entry_ok(&seed.entry) {
        return Ok(0);
    }
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".debian-{key}.new."))
        .tempdir_in(guests)
        .map_err(|e| format!("cannot create a directory in `{}`: {e}", guests.display()))?;
    answer(&Event::SeedWanted);
    let mut total = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    let mut sums = Vec::new();
    for f in &seed.files {
        let path = tmp.path().join(&f.name);
        let mut out = std::fs::File::create(&path)
            .map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
        let mut h = Sha256::new();
        let mut left = f.size;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = input
                .read(&mut buf[..want])
                .map_err(|e| format!("the entry did not arrive: {e}"))?;
            if n == 0 {
                return Err(format!(
                    "the entry did not arrive whole ({} of `{}` missing)",
                    left, f.name
                ));
            }
            h.update(&buf[..n]);
            out.write_all(&buf[..n])
                .map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
            left -= n as u64;
        }
        sums.push(hex(&h.finalize()));
        if matches!(f.name.as_str(), "vmlinuz" | "initrd.img") {
            use std::os::unix::fs::PermissionsExt;
            let _ = out.set_permissions(std::fs::Permissions::from_mode(0o644));
        }
        out.sync_all()
            .map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
        total += f.size;
    }
    // The digests this machine computed while sending: what arrived must be what was read.
    let said: SeedSums = match proto::receive(input) {
        Ok(Some(s)) => s,
        _ => return Err("the entry's SHA-256 digests did not arrive: nothing kept".into()),
    };
    for (i, f) in seed.files.iter().enumerate() {
        if said.sha256.get(i) != Some(&sums[i]) {
            return Err(format!(
                "`{}` arrived damaged (its SHA-256 differs): nothing kept",
                f.name
            ));
        }
    }
    // The manifest `_guest_entry_ok` compares: `name size`, byte order, written last.
    let mut manifest: Vec<String> = seed
        .files
        .iter()
        .map(|f| format!("{} {}", f.name, f.size))
        .collect();
    manifest.sort();
    let text = manifest.join("\n") + "\n";
    crate::atomic::write(&tmp.path().join("complete"), text.as_bytes(), 0o644, true)
        .map_err(|e| format!("cannot seal the entry: {e}"))?;
    if seed.entry.exists() {
        // Incomplete or damaged (not `entry_ok`): replaced, as a rebuild would.
        let old = tempfile::Builder::new()
            .prefix(&format!(".debian-{key}.old."))
            .tempdir_in(guests)
            .map_err(|e| format!("cannot move the damaged entry aside: {e}"))?;
        std::fs::rename(&seed.entry, old.path().join("entry"))
            .map_err(|e| format!("cannot move the damaged entry aside: {e}"))?;
    }
    let dir = tmp.keep();
    std::fs::rename(&dir, &seed.entry).map_err(|e| {
        let _ = std::fs::remove_dir_all(&dir);
        format!("cannot put the entry in place: {e}")
    })?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(dir: &Path) -> PathBuf {
        let e = dir.join("guests/debian-0123456789abcdef");
        std::fs::create_dir_all(&e).unwrap();
        for (i, f) in FILES.iter().enumerate() {
            std::fs::write(e.join(f), vec![b'a' + i as u8; 1000 * (i + 1)]).unwrap();
        }
        let mut m: Vec<String> = FILES
            .iter()
            .enumerate()
            .map(|(i, f)| format!("{f} {}", 1000 * (i + 1)))
            .collect();
        m.sort();
        std::fs::write(e.join("complete"), m.join("\n") + "\n").unwrap();
        assert!(super::super::guest::entry_ok(&e));
        e
    }

    /// The bytes after `SeedWanted`: the files, then the digests' line.
    fn stream(local: &Path) -> Vec<u8> {
        let mut v = Vec::new();
        let mut sums = Vec::new();
        for f in FILES {
            let b = std::fs::read(local.join(f)).unwrap();
            sums.push(hex(&Sha256::digest(&b)));
            v.extend(b);
        }
        wire::send(&mut v, &SeedSums { sha256: sums }).unwrap();
        v
    }

    #[test]
    fn an_entry_arrives_checked_and_sealed() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let local = entry(a.path());
        let files = describe(&local).unwrap();
        let target = b.path().join("guests/debian-0123456789abcdef");
        let seed = Seed {
            entry: target.clone(),
            files: files.clone(),
            host_mirror: None,
        };
        let mut wanted = 0;
        let e = receive(&seed, &mut &stream(&local)[..], |e| {
            wanted += usize::from(matches!(e, Event::SeedWanted))
        });
        assert!(matches!(e, Event::Seeded { bytes: 21000 }), "{e:?}");
        assert_eq!(wanted, 1);
        assert!(super::super::guest::entry_ok(&target));
        assert_eq!(
            std::fs::read(target.join("complete")).unwrap(),
            std::fs::read(local.join("complete")).unwrap()
        );
        // Present now: nothing is asked for.
        let e = receive(&seed, &mut &[][..], |_| panic!("asked again"));
        assert!(matches!(e, Event::Seeded { bytes: 0 }), "{e:?}");
    }

    #[test]
    fn a_damaged_or_short_entry_is_not_kept() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let local = entry(a.path());
        let files = describe(&local).unwrap();
        let target = b.path().join("guests/debian-0123456789abcdef");
        let seed = Seed {
            entry: target.clone(),
            files,
            host_mirror: None,
        };
        let mut bytes = stream(&local);
        bytes[5000] ^= 1;
        let e = receive(&seed, &mut &bytes[..], |_| {});
        assert!(
            matches!(&e, Event::Error { message, .. } if message.contains("SHA-256")),
            "{e:?}"
        );
        let e = receive(&seed, &mut &bytes[..100], |_| {});
        assert!(
            matches!(&e, Event::Error { message, .. } if message.contains("whole")),
            "{e:?}"
        );
        assert!(!target.exists());
        let left: Vec<_> = std::fs::read_dir(b.path().join("guests"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left.len(), 1, "only the lock file is left: {left:?}");
    }

    #[test]
    fn only_entry_paths_and_entry_files_are_taken() {
        let b = tempfile::tempdir().unwrap();
        let files: Vec<SeedFile> = FILES
            .iter()
            .map(|n| SeedFile {
                name: n.to_string(),
                size: 0,
            })
            .collect();
        for bad in [
            b.path().join("etc"),
            b.path().join("guests/debian-xyz"),
            PathBuf::from("guests/debian-0123456789abcdef"),
        ] {
            let seed = Seed {
                entry: bad,
                files: files.clone(),
                host_mirror: None,
            };
            assert!(matches!(
                receive(&seed, &mut &[][..], |_| {}),
                Event::Error { .. }
            ));
        }
        let mut other = files.clone();
        other[0].name = "../x".into();
        let seed = Seed {
            entry: b.path().join("guests/debian-0123456789abcdef"),
            files: other,
            host_mirror: None,
        };
        assert!(matches!(
            receive(&seed, &mut &[][..], |_| {}),
            Event::Error { .. }
        ));
    }
}

//! `image pack --format deb`: a Debian package, built by the standard `dpkg-deb --build`,
//! that installs one image into `/var/cache/convirt/image_store/<image>`, files owned by root.
//!
//! The image is staged (holes kept) in a temporary directory beside the output, with a
//! `DEBIAN/control` made from the image's name and description; `dpkg-deb` does the rest.

use super::{PackStats, Progress, data_extents, remove_tree};
use crate::diagnostic::Diagnostic;
use crate::store::Store;
use crate::tree::{Entry, Kind};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

/// Where the package puts images: the store's default location for root (spec §1.1).
pub(super) const INSTALL_DIR: &str = "var/cache/convirt/image_store";

/// `Linux_CD_Install` becomes `convirt-image-linux-cd-install`.
pub(super) fn package_name(image: &str) -> String {
    format!("convirt-image-{}", image.to_lowercase().replace('_', "-"))
}

pub(super) fn version(epoch: Option<u64>) -> String {
    epoch.map_or_else(|| "1.0".to_string(), |e| e.to_string())
}

/// Debian's file name convention: `<package>_<version>_all.deb`.
pub(super) fn file_name(image: &str, epoch: Option<u64>) -> String {
    format!("{}_{}_all.deb", package_name(image), version(epoch))
}

fn set_mtime(f: &File, mtime: u64) {
    let _ = f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(mtime));
}

/// Copies a file keeping its holes.
fn copy_sparse(src: &Path, dst: &Path, mode: u32, progress: &Progress) -> io::Result<u64> {
    let from = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(src)?;
    let size = from.metadata()?.len();
    let to = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dst)?;
    let extents = data_extents(&from, size)?.unwrap_or_else(|| vec![(0, size)]);
    let mut buf = vec![0u8; super::IO_BUF];
    let mut copied = 0;
    for (off, len) in extents {
        let mut done = 0u64;
        while done < len {
            let want = (len - done).min(buf.len() as u64) as usize;
            crate::interrupt::check_io()?;
            let n = from.read_at(&mut buf[..want], off + done)?;
            if n == 0 {
                return Err(io::Error::other("the file shrank while it was packed"));
            }
            to.write_all_at(&buf[..n], off + done)?;
            done += n as u64;
            progress.inc(n as u64);
        }
        copied += len;
    }
    to.set_len(size)?;
    to.set_permissions(fs::Permissions::from_mode(mode))?;
    Ok(copied)
}

fn control(store: &Store, image: &str, epoch: Option<u64>) -> String {
    let title = fs::read_to_string(store.root.join(image).join(crate::image::DESCRIPTION))
        .map(|h| crate::image::description_title(&h))
        .unwrap_or_default();
    let title = title.trim();
    let long = if title.is_empty() {
        format!("The convirt image `{image}`")
    } else {
        title.to_string()
    };
    format!(
        "Package: {}\nVersion: {}\nArchitecture: all\nMaintainer: convirt <root@localhost>\nSection: misc\nPriority: optional\nDescription: convirt image {image}\n {long}\n .\n Installs the image into /{INSTALL_DIR}/{image}.\n",
        package_name(image),
        version(epoch),
    )
}

pub(super) fn build(
    store: &Store,
    name: &str,
    items: &[Entry],
    output: &Path,
    out_dir: &Path,
    (epoch, force): (Option<u64>, bool),
    progress: &Progress,
) -> Result<PackStats, Diagnostic> {
    let fail = |what: &Path, e: io::Error| {
        Diagnostic::error(format!("cannot stage `{}`: {e}", what.display()))
    };
    let stage = tempfile::Builder::new()
        .prefix(".convirt-deb-")
        .tempdir_in(out_dir)
        .map_err(|e| fail(out_dir, e))?;
    let result = (|| -> Result<PackStats, Diagnostic> {
        let root = stage.path();
        let mut dirs = vec![(root.to_path_buf(), 0o755, 0)];
        let mut path = root.to_path_buf();
        let debian = root.join("DEBIAN");
        fs::create_dir(&debian).map_err(|e| fail(&debian, e))?;
        dirs.push((debian, 0o755, 0));
        for part in INSTALL_DIR.split('/') {
            path.push(part);
            fs::create_dir(&path).map_err(|e| fail(&path, e))?;
            dirs.push((path.clone(), 0o755, 0));
        }
        let ctl = root.join("DEBIAN/control");
        fs::write(&ctl, control(store, name, epoch)).map_err(|e| fail(&ctl, e))?;
        fs::set_permissions(&ctl, fs::Permissions::from_mode(0o644)).map_err(|e| fail(&ctl, e))?;
        let base = path.join(name);
        let mut stats = PackStats {
            entries: 0,
            data: 0,
        };
        for item in items {
            let dst = if item.rel.as_os_str().is_empty() {
                base.clone()
            } else {
                base.join(&item.rel)
            };
            stats.entries += 1;
            match &item.kind {
                Kind::Dir => {
                    fs::create_dir(&dst).map_err(|e| fail(&dst, e))?;
                    dirs.push((dst, item.mode, item.mtime as u64));
                }
                Kind::Symlink(t) => {
                    std::os::unix::fs::symlink(t, &dst).map_err(|e| fail(&dst, e))?;
                }
                Kind::File => {
                    stats.data += copy_sparse(&item.abs, &dst, item.mode, progress)
                        .map_err(|e| fail(&item.abs, e))?;
                    if let Ok(f) = File::open(&dst) {
                        set_mtime(&f, item.mtime as u64);
                    }
                }
            }
        }
        dirs.sort_by_key(|(p, _, _)| std::cmp::Reverse(p.components().count()));
        for (p, mode, mtime) in dirs {
            if mtime > 0 {
                if let Ok(f) = File::open(&p) {
                    set_mtime(&f, mtime);
                }
            }
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).map_err(|e| fail(&p, e))?;
        }
        let tmp = tempfile::Builder::new()
            .prefix(".convirt-pack-")
            .suffix(".deb")
            .tempfile_in(out_dir)
            .map_err(|e| fail(out_dir, e))?;
        let mut cmd = Command::new("dpkg-deb");
        cmd.args(["--root-owner-group", "-Zgzip", "--build"])
            .arg(root)
            .arg(tmp.path());
        if let Some(e) = epoch {
            cmd.env("SOURCE_DATE_EPOCH", e.to_string());
        }
        // An hour: a large image is gigabytes of data to compress.
        let out = crate::sys::output_with_timeout(&mut cmd, std::time::Duration::from_secs(3600))
            .map_err(|e| {
            let d = Diagnostic::error(format!("cannot run `dpkg-deb`: {e}"));
            if e.kind() == io::ErrorKind::NotFound {
                d.with_hint("install it with `apt-get install dpkg`")
            } else {
                d
            }
        })?;
        if !out.status.success() {
            return Err(Diagnostic::error(format!(
                "`dpkg-deb --build` failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let write_fail = |e: io::Error| super::write_error(output, &e);
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o644)).map_err(write_fail)?;
        let persisted = if force {
            tmp.persist(output)
        } else {
            tmp.persist_noclobber(output)
        };
        persisted.map_err(|e| write_fail(e.error))?;
        Ok(stats)
    })();
    // The staged tree may hold read-only directories.
    let _ = remove_tree(stage.path());
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            package_name("Linux_CD_Install"),
            "convirt-image-linux-cd-install"
        );
        assert_eq!(
            file_name("A_b", Some(1700000000)),
            "convirt-image-a-b_1700000000_all.deb"
        );
        assert_eq!(file_name("x", None), "convirt-image-x_1.0_all.deb");
    }
}

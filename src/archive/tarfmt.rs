//! The tar stream, both ways: GNU-format headers written by hand (owners normalised, long
//! names as `L`/`K` entries, holes as old-GNU sparse entries) and a strict reader that checks
//! every header, refuses what it does not understand and notices a truncated stream.
//!
//! The `tar` crate supplies the header layouts and numeric field coding; the stream itself
//! is ours, because its `Builder` takes owners, modes and times from the file system and
//! reads sparse files itself, which leaves no room for hashing the bytes as they pass.

use std::io::{self, Read, Write};
use tar::{EntryType, GnuExtSparseHeader, Header};

pub(super) const BLOCK: usize = 512;
/// GNU tar pads the archive to records of 20 blocks.
const RECORD: u64 = 20 * BLOCK as u64;
/// The header holds four sparse map entries, each extension block 21 more.
const HEADER_SPARSE: usize = 4;
const EXT_SPARSE: usize = 21;
/// Bounds on what a reader accepts, so a hostile header cannot make it allocate at will.
const MAX_LONG_NAME: u64 = 64 * 1024;
const MAX_PAX: u64 = 1024 * 1024;
const MAX_SPARSE_EXTENTS: usize = 1 << 20;
/// The largest size, sparse offset or length accepted: what `off_t` holds. More cannot be a
/// file on Linux, and every sum of two such numbers still fits a `u64`.
pub(super) const MAX_OFFSET: u64 = i64::MAX as u64;
/// The latest modification time kept: 9999-12-31T23:59:59Z. Later times are clamped to it and
/// times before 1970 to 0 (docs/archive.md), so no time can overflow when it is applied.
pub(super) const MAX_MTIME: u64 = 253_402_300_799;
/// Owner and device numbers: what `uid_t`, `gid_t` and a device number part hold.
const MAX_ID: i128 = u32::MAX as i128;
/// The mode field holds seven octal digits; only the 12 permission bits are kept.
const MAX_MODE: i128 = 0o7777777;

/// One data region of a sparse file: offset and length.
pub(super) type Extent = (u64, u64);

/// What an entry is, as far as convirt cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Kind {
    File,
    /// A file with holes: its data regions and full (apparent) size.
    Sparse {
        extents: Vec<Extent>,
        real_size: u64,
    },
    Dir,
    Symlink(Vec<u8>),
    HardLink(Vec<u8>),
    CharDevice,
    BlockDevice,
    Fifo,
    Other(u8),
}

/// The writer: a stream of GNU tar blocks into any `Write`.
pub(super) struct TarWriter<W: Write> {
    out: W,
    written: u64,
}

/// Metadata of one entry to write. `path` is relative, with `/` separators; directories get
/// their trailing `/` here.
pub(super) struct Meta<'a> {
    pub path: &'a str,
    pub mode: u32,
    pub mtime: u64,
}

fn base_header(kind: EntryType, meta: &Meta) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(meta.mode & 0o7777);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(meta.mtime);
    h.set_size(0);
    // Names that fit: "root" is four bytes, the field 32.
    let _ = h.set_username("root");
    let _ = h.set_groupname("root");
    h
}

impl<W: Write> TarWriter<W> {
    pub(super) fn new(out: W) -> Self {
        TarWriter { out, written: 0 }
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self, len: u64) -> io::Result<()> {
        let rest = (BLOCK as u64 - len % BLOCK as u64) % BLOCK as u64;
        self.put(&[0u8; BLOCK][..rest as usize])
    }

    /// A GNU `././@LongLink` entry carrying a name that does not fit its 100-byte field.
    fn long_name(&mut self, kind: u8, name: &[u8]) -> io::Result<()> {
        let meta = Meta {
            path: "",
            mode: 0o644,
            mtime: 0,
        };
        let mut h = base_header(EntryType::new(kind), &meta);
        h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
        h.set_size(name.len() as u64 + 1);
        h.set_cksum();
        self.put(h.as_bytes())?;
        self.put(name)?;
        self.put(&[0])?;
        self.pad(name.len() as u64 + 1)
    }

    /// Sets the name (and link target) of a header, writing long-name entries first when
    /// they do not fit.
    fn names(&mut self, h: &mut Header, path: &[u8], link: Option<&[u8]>) -> io::Result<()> {
        if let Some(link) = link {
            let field = &mut h.as_old_mut().linkname;
            if link.len() > field.len() {
                self.long_name(b'K', link)?;
            }
            let n = link.len().min(field.len());
            field[..n].copy_from_slice(&link[..n]);
        }
        let field = &mut h.as_old_mut().name;
        if path.len() > field.len() {
            self.long_name(b'L', path)?;
        }
        let n = path.len().min(field.len());
        field[..n].copy_from_slice(&path[..n]);
        Ok(())
    }

    pub(super) fn dir(&mut self, meta: &Meta) -> io::Result<()> {
        let mut h = base_header(EntryType::Directory, meta);
        self.names(&mut h, meta.path.as_bytes(), None)?;
        h.set_cksum();
        self.put(h.as_bytes())
    }

    pub(super) fn symlink(&mut self, meta: &Meta, target: &str) -> io::Result<()> {
        let mut h = base_header(EntryType::Symlink, meta);
        self.names(&mut h, meta.path.as_bytes(), Some(target.as_bytes()))?;
        h.set_cksum();
        self.put(h.as_bytes())
    }

    /// A regular file of `size` bytes; the caller then writes exactly `size` bytes with
    /// [`TarWriter::data`] and calls [`TarWriter::end_data`].
    pub(super) fn file(&mut self, meta: &Meta, size: u64) -> io::Result<()> {
        let mut h = base_header(EntryType::Regular, meta);
        h.set_size(size);
        self.names(&mut h, meta.path.as_bytes(), None)?;
        h.set_cksum();
        self.put(h.as_bytes())
    }

    /// An old-GNU sparse file (type `S`): the header holds the apparent size and the first
    /// four data regions, extension blocks hold the rest, and only the data regions follow,
    /// back to back. The map ends with a zero-length region at the end of the file, as GNU
    /// tar writes it, so a trailing hole is kept.
    pub(super) fn sparse(
        &mut self,
        meta: &Meta,
        extents: &[Extent],
        real_size: u64,
    ) -> io::Result<()> {
        let mut map: Vec<Extent> = extents.to_vec();
        map.push((real_size, 0));
        let on_disk: u64 = extents.iter().map(|e| e.1).sum();
        let mut h = base_header(EntryType::GNUSparse, meta);
        h.set_size(on_disk);
        self.names(&mut h, meta.path.as_bytes(), None)?;
        {
            let gnu = h
                .as_gnu_mut()
                .ok_or_else(|| io::Error::other("not a GNU header"))?;
            gnu.set_real_size(real_size);
            for (slot, e) in gnu.sparse.iter_mut().zip(&map) {
                slot.set_offset(e.0);
                slot.set_length(e.1);
            }
            gnu.set_is_extended(map.len() > HEADER_SPARSE);
        }
        h.set_cksum();
        self.put(h.as_bytes())?;
        let rest: Vec<&[Extent]> = map
            .get(HEADER_SPARSE..)
            .unwrap_or(&[])
            .chunks(EXT_SPARSE)
            .collect();
        for (i, chunk) in rest.iter().enumerate() {
            let mut ext = GnuExtSparseHeader::new();
            for (slot, e) in ext.sparse.iter_mut().zip(chunk.iter()) {
                slot.set_offset(e.0);
                slot.set_length(e.1);
            }
            ext.set_is_extended(i + 1 < rest.len());
            self.put(ext.as_bytes())?;
        }
        Ok(())
    }

    pub(super) fn data(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.put(bytes)
    }

    /// Pads the data of an entry of `len` bytes to a whole block.
    pub(super) fn end_data(&mut self, len: u64) -> io::Result<()> {
        self.pad(len)
    }

    /// Two zero blocks, then zeros up to a whole record, as GNU tar ends an archive.
    pub(super) fn finish(mut self) -> io::Result<W> {
        self.put(&[0u8; 2 * BLOCK])?;
        let rest = (RECORD - self.written % RECORD) % RECORD;
        let zeros = vec![0u8; rest as usize];
        self.put(&zeros)?;
        Ok(self.out)
    }
}

/// Why a stream is not an acceptable tar archive.
#[derive(Debug)]
pub(super) enum ReadError {
    Io(io::Error),
    /// The stream ended inside an entry or before the end-of-archive blocks.
    Truncated(String),
    /// A header that does not parse, or data that contradicts it.
    Corrupt(String),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "{e}"),
            ReadError::Truncated(s) | ReadError::Corrupt(s) => f.write_str(s),
        }
    }
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

/// One entry's header, after long names and pax records were applied.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub path: Vec<u8>,
    pub kind: Kind,
    pub mode: u32,
    pub mtime: u64,
    /// Bytes of data that follow in the archive (for a sparse file, the data regions only).
    pub size: u64,
}

impl Entry {
    pub(super) fn path_lossy(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }
}

/// A strict, streaming tar reader.
pub(super) struct TarReader<R: Read> {
    r: R,
    pos: u64,
    /// Data bytes of the current entry not read yet, and the padding after them.
    remaining: u64,
    padding: u64,
    current: String,
    ended: bool,
}

pub(super) fn fill(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn checksum_ok(block: &[u8; BLOCK]) -> bool {
    let h = Header::from_byte_slice(block);
    let Ok(stored) = h.cksum() else {
        return false;
    };
    let mut unsigned: u32 = 0;
    let mut signed: i32 = 0;
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += u32::from(b);
        signed += i32::from(b as i8);
    }
    stored == unsigned || i64::from(stored) == i64::from(signed)
}

fn trim_nul(b: &[u8]) -> &[u8] {
    match b.iter().position(|&c| c == 0) {
        Some(i) => &b[..i],
        None => b,
    }
}

impl<R: Read> TarReader<R> {
    pub(super) fn new(r: R) -> Self {
        TarReader {
            r,
            pos: 0,
            remaining: 0,
            padding: 0,
            current: String::new(),
            ended: false,
        }
    }

    pub(super) fn into_inner(self) -> R {
        self.r
    }

    fn block(&mut self, what: &str) -> Result<Option<[u8; BLOCK]>, ReadError> {
        let mut b = [0u8; BLOCK];
        let n = fill(&mut self.r, &mut b)?;
        self.pos += n as u64;
        match n {
            0 => Ok(None),
            BLOCK => Ok(Some(b)),
            _ => Err(ReadError::Truncated(format!(
                "the archive is truncated: it ends inside {what}"
            ))),
        }
    }

    fn need_block(&mut self, what: &str) -> Result<[u8; BLOCK], ReadError> {
        self.block(what)?.ok_or_else(|| {
            ReadError::Truncated(format!("the archive is truncated: it ends before {what}"))
        })
    }

    /// Reads the data of a small special entry (long name, pax records) whole.
    fn small_data(&mut self, size: u64, limit: u64, what: &str) -> Result<Vec<u8>, ReadError> {
        if size > limit {
            return Err(ReadError::Corrupt(format!(
                "{what} at byte {} is {size} bytes, more than the {limit} accepted",
                self.pos
            )));
        }
        let padded = size.div_ceil(BLOCK as u64) * BLOCK as u64;
        let mut buf = vec![0u8; padded as usize];
        let n = fill(&mut self.r, &mut buf)?;
        self.pos += n as u64;
        if (n as u64) < padded {
            return Err(ReadError::Truncated(format!(
                "the archive is truncated: it ends inside {what}"
            )));
        }
        buf.truncate(size as usize);
        Ok(buf)
    }

    /// Skips what is left of the current entry's data.
    fn skip_rest(&mut self) -> Result<(), ReadError> {
        let mut buf = vec![0u8; 64 * 1024];
        while self.remaining > 0 {
            let want = self.remaining.min(buf.len() as u64) as usize;
            if self.read_data(&mut buf[..want])? == 0 {
                break;
            }
        }
        let mut pad = [0u8; BLOCK];
        let p = self.padding as usize;
        let n = fill(&mut self.r, &mut pad[..p])?;
        self.pos += n as u64;
        if n < p {
            return Err(ReadError::Truncated(format!(
                "the archive is truncated: it ends inside `{}`",
                self.current
            )));
        }
        self.padding = 0;
        Ok(())
    }

    /// Reads data of the current entry; 0 at its end. A stream that ends early is an error.
    pub(super) fn read_data(&mut self, buf: &mut [u8]) -> Result<usize, ReadError> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = self.remaining.min(buf.len() as u64) as usize;
        let n = loop {
            match self.r.read(&mut buf[..want]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r?,
            }
        };
        if n == 0 {
            return Err(ReadError::Truncated(format!(
                "the archive is truncated: it ends inside `{}` ({} bytes missing)",
                self.current, self.remaining
            )));
        }
        self.remaining -= n as u64;
        self.pos += n as u64;
        Ok(n)
    }

    /// The next entry, or `None` after the end-of-archive blocks.
    pub(super) fn next_entry(&mut self) -> Result<Option<Entry>, ReadError> {
        if self.ended {
            return Ok(None);
        }
        self.skip_rest()?;
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        let mut pax_path: Option<Vec<u8>> = None;
        let mut pax_link: Option<Vec<u8>> = None;
        let mut pax_size: Option<u64> = None;
        let mut pax_mtime: Option<u64> = None;
        loop {
            let offset = self.pos;
            let Some(block) = self.block("a header")? else {
                return Err(ReadError::Truncated(
                    "the archive is truncated: it ends without the end-of-archive blocks"
                        .to_string(),
                ));
            };
            if block.iter().all(|&b| b == 0) {
                let second = self.need_block("the second end-of-archive block")?;
                if second.iter().all(|&b| b == 0) {
                    self.ended = true;
                    return Ok(None);
                }
                return Err(ReadError::Corrupt(format!(
                    "a zero block at byte {offset} is not followed by a second one"
                )));
            }
            if !checksum_ok(&block) {
                return Err(ReadError::Corrupt(if offset == 0 {
                    "this is not a tar archive (the first header's checksum is wrong)".to_string()
                } else {
                    format!("the tar header at byte {offset} is corrupt (checksum mismatch)")
                }));
            }
            let h = Header::from_byte_slice(&block);
            let typeflag = block[156];
            let bad_header =
                |m: String| ReadError::Corrupt(format!("the tar header at byte {offset} has {m}"));
            let size = number(&h.as_old().size, "size", 0, MAX_OFFSET as i128).map_err(bad_header);
            match typeflag {
                b'L' => {
                    let d = self.small_data(size?, MAX_LONG_NAME, "a long file name")?;
                    long_name = Some(trim_nul(&d).to_vec());
                    continue;
                }
                b'K' => {
                    let d = self.small_data(size?, MAX_LONG_NAME, "a long link name")?;
                    long_link = Some(trim_nul(&d).to_vec());
                    continue;
                }
                b'x' | b'g' => {
                    let d = self.small_data(size?, MAX_PAX, "pax extended headers")?;
                    if typeflag == b'g' {
                        continue;
                    }
                    let bad_pax = |m: String| {
                        ReadError::Corrupt(format!("pax headers at byte {offset}: {m}"))
                    };
                    for (key, value) in parse_pax(&d).map_err(|m| bad_pax(m.to_string()))? {
                        match key.as_str() {
                            "path" => pax_path = Some(value),
                            "linkpath" => pax_link = Some(value),
                            "size" => {
                                pax_size = Some(
                                    pax_number(&value, "size", MAX_OFFSET as i128)
                                        .map_err(bad_pax)?,
                                )
                            }
                            "mtime" => pax_mtime = Some(pax_time(&value).map_err(bad_pax)?),
                            "uid" | "gid" => {
                                pax_number(&value, &key, MAX_ID).map_err(bad_pax)?;
                            }
                            k if k.starts_with("GNU.sparse.") => {
                                return Err(ReadError::Corrupt(format!(
                                    "the entry at byte {offset} uses the pax sparse format, which convirt does not read (pack with `convirt image pack` or GNU tar's default format)"
                                )));
                            }
                            _ => {}
                        }
                    }
                    continue;
                }
                _ => {}
            }
            let path = pax_path
                .take()
                .or(long_name.take())
                .unwrap_or_else(|| h.path_bytes().into_owned());
            let link = pax_link
                .take()
                .or(long_link.take())
                .or_else(|| h.link_name_bytes().map(|b| b.into_owned()))
                .unwrap_or_default();
            let shown = String::from_utf8_lossy(&path).into_owned();
            let bad_entry = |m: String| {
                ReadError::Corrupt(format!("the entry `{shown}` at byte {offset} has {m}"))
            };
            let header_size =
                number(&h.as_old().size, "size", 0, MAX_OFFSET as i128).map_err(bad_entry)?;
            let mode =
                number(&h.as_old().mode, "mode", 0, MAX_MODE).map_err(bad_entry)? as u32 & 0o7777;
            // Owners are not kept (files belong to whoever imports), but a number that does
            // not fit is a damaged header all the same.
            for (field, what) in [(&h.as_old().uid, "uid"), (&h.as_old().gid, "gid")] {
                optional_number(field, what, 0, MAX_ID).map_err(bad_entry)?;
            }
            if matches!(typeflag, b'3' | b'4') {
                if let Some(ustar) = h.as_ustar() {
                    for (field, what) in [
                        (&ustar.dev_major, "device major number"),
                        (&ustar.dev_minor, "device minor number"),
                    ] {
                        optional_number(field, what, 0, MAX_ID).map_err(bad_entry)?;
                    }
                } else if let Some(gnu) = h.as_gnu() {
                    for (field, what) in [
                        (&gnu.dev_major, "device major number"),
                        (&gnu.dev_minor, "device minor number"),
                    ] {
                        optional_number(field, what, 0, MAX_ID).map_err(bad_entry)?;
                    }
                }
            }
            let mtime = match pax_mtime.take() {
                Some(t) => t,
                None => clamp_time(
                    optional_number(&h.as_old().mtime, "mtime", i128::MIN, i128::MAX)
                        .map_err(bad_entry)?,
                ),
            };
            let mut size = pax_size.take().unwrap_or(header_size);
            let kind = match typeflag {
                b'0' | 0 | b'7' => Kind::File,
                b'5' => {
                    size = 0;
                    Kind::Dir
                }
                b'2' => {
                    size = 0;
                    Kind::Symlink(link)
                }
                b'1' => {
                    size = 0;
                    Kind::HardLink(link)
                }
                b'3' => Kind::CharDevice,
                b'4' => Kind::BlockDevice,
                b'6' => Kind::Fifo,
                b'S' => self.sparse_map(&block, size, offset, &shown)?,
                other => Kind::Other(other),
            };
            self.current = String::from_utf8_lossy(&path).into_owned();
            self.remaining = size;
            self.padding = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
            return Ok(Some(Entry {
                path,
                kind,
                mode,
                mtime,
                size,
            }));
        }
    }

    fn sparse_map(
        &mut self,
        block: &[u8; BLOCK],
        on_disk: u64,
        offset: u64,
        shown: &str,
    ) -> Result<Kind, ReadError> {
        let bad = |m: String| {
            ReadError::Corrupt(format!(
                "the sparse map of the entry `{shown}` at byte {offset} {m}"
            ))
        };
        let h = Header::from_byte_slice(block);
        let gnu = h
            .as_gnu()
            .ok_or_else(|| bad("is in a header that is not GNU format".into()))?;
        let real_size = number(&gnu.realsize, "size", 0, MAX_OFFSET as i128)
            .map_err(|m| bad(format!("is unreadable: it has {m}")))?;
        let mut map = Vec::new();
        let push = |s: &tar::GnuSparseHeader, map: &mut Vec<Extent>| -> Result<(), ReadError> {
            if s.offset[0] == 0 {
                return Ok(());
            }
            let o = number(&s.offset, "region offset", 0, MAX_OFFSET as i128)
                .map_err(|m| bad(format!("is unreadable: it has {m}")))?;
            let l = number(&s.numbytes, "region length", 0, MAX_OFFSET as i128)
                .map_err(|m| bad(format!("is unreadable: it has {m}")))?;
            map.push((o, l));
            Ok(())
        };
        for s in &gnu.sparse {
            push(s, &mut map)?;
        }
        let mut extended = gnu.is_extended();
        while extended {
            let b = self.need_block("a sparse map extension block")?;
            let ext = ext_from_block(&b);
            for s in ext.sparse.iter() {
                push(s, &mut map)?;
            }
            if map.len() > MAX_SPARSE_EXTENTS {
                return Err(bad(format!("has more than {MAX_SPARSE_EXTENTS} regions")));
            }
            extended = ext.is_extended();
        }
        // Drop zero-length regions (GNU tar ends the map with one at the end of the file),
        // then check the regions are in order, inside the file and add up to the data size.
        let mut extents: Vec<Extent> = Vec::with_capacity(map.len());
        let mut end = 0u64;
        let mut total = 0u64;
        for (o, l) in map {
            if o < end {
                return Err(bad("has regions out of order or overlapping".into()));
            }
            let e = o
                .checked_add(l)
                .filter(|&e| e <= real_size)
                .ok_or_else(|| bad("has a region past the end of the file".into()))?;
            if l > 0 {
                extents.push((o, l));
                total += l;
                end = e;
            }
        }
        if total != on_disk {
            return Err(bad(format!(
                "covers {total} bytes but the entry holds {on_disk}"
            )));
        }
        Ok(Kind::Sparse { extents, real_size })
    }
}

fn ext_from_block(b: &[u8; BLOCK]) -> GnuExtSparseHeader {
    let mut ext = GnuExtSparseHeader::new();
    ext.as_mut_bytes().copy_from_slice(b);
    ext
}

/// A numeric header field: octal digits (padded with spaces or NULs), or GNU base-256 (a
/// first byte of 0x80 for a positive number, 0xff for a negative one in two's complement).
/// `None` for a field of only spaces and NULs. The fields are at most 12 bytes, so every value
/// fits an `i128` and nothing here can overflow.
fn raw_number(field: &[u8]) -> Result<Option<i128>, String> {
    match field.first() {
        Some(&first @ (0x80 | 0xff)) => {
            let mut v: i128 = 0;
            for &b in &field[1..] {
                v = (v << 8) | i128::from(b);
            }
            if first == 0xff {
                v -= 1i128 << (8 * (field.len() - 1));
            }
            Ok(Some(v))
        }
        Some(&b) if b & 0x80 != 0 => Err("a number in an unknown binary coding".into()),
        _ => {
            let text = trim_nul(field);
            let digits = text.trim_ascii();
            if digits.is_empty() {
                return Ok(None);
            }
            let mut v: i128 = 0;
            for &d in digits {
                if !(b'0'..=b'7').contains(&d) {
                    return Err(format!(
                        "`{}`, which is not an octal number",
                        String::from_utf8_lossy(text).escape_default()
                    ));
                }
                v = v * 8 + i128::from(d - b'0');
            }
            Ok(Some(v))
        }
    }
}

/// A numeric field that may be empty (0), checked against `min..=max`.
fn optional_number(field: &[u8], what: &str, min: i128, max: i128) -> Result<i128, String> {
    let v = raw_number(field)
        .map_err(|m| format!("a bad {what} field: {m}"))?
        .unwrap_or(0);
    if v < min || v > max {
        return Err(format!("a {what} out of range: {v}"));
    }
    Ok(v)
}

/// A numeric field that must be present, checked against `min..=max`.
fn number(field: &[u8], what: &str, min: i128, max: i128) -> Result<u64, String> {
    if raw_number(field)
        .map_err(|m| format!("a bad {what} field: {m}"))?
        .is_none()
    {
        return Err(format!("an empty {what} field"));
    }
    // `min` is never below 0 where a `u64` is wanted.
    Ok(optional_number(field, what, min.max(0), max)? as u64)
}

/// Seconds since 1970, clamped to `0..=MAX_MTIME`.
fn clamp_time(t: i128) -> u64 {
    t.clamp(0, i128::from(MAX_MTIME)) as u64
}

/// A pax decimal number (`size`, `uid`, `gid`): digits only, at most `max`.
fn pax_number(value: &[u8], what: &str, max: i128) -> Result<u64, String> {
    let bad = || {
        format!(
            "a bad {what} `{}`",
            String::from_utf8_lossy(value).escape_default()
        )
    };
    if value.is_empty() || value.len() > 30 || !value.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let v = value
        .iter()
        .fold(0i128, |v, &d| v * 10 + i128::from(d - b'0'));
    if v > max {
        return Err(format!("a {what} out of range: {v}"));
    }
    Ok(v as u64)
}

/// A pax time: `[-]SECONDS[.FRACTION]`; the fraction is dropped and the seconds clamped.
fn pax_time(value: &[u8]) -> Result<u64, String> {
    let bad = || {
        format!(
            "a bad mtime `{}`",
            String::from_utf8_lossy(value).escape_default()
        )
    };
    let (negative, rest) = match value.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, value),
    };
    let (secs, frac) = match rest.iter().position(|&b| b == b'.') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    if secs.is_empty()
        || !secs.iter().all(u8::is_ascii_digit)
        || !frac.iter().all(u8::is_ascii_digit)
    {
        return Err(bad());
    }
    // Anything past 30 digits is far beyond the clamp either way.
    let v = secs
        .iter()
        .take(30)
        .fold(0i128, |v, &d| v * 10 + i128::from(d - b'0'));
    let v = if secs.len() > 30 { i128::MAX } else { v };
    Ok(clamp_time(if negative { -v } else { v }))
}

/// Parses pax records: `LEN key=value\n`, LEN counting the whole record.
fn parse_pax(mut d: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut out = Vec::new();
    while !d.is_empty() {
        if d.iter().all(|&b| b == 0) {
            break;
        }
        let sp = d
            .iter()
            .position(|&b| b == b' ')
            .ok_or("a record has no length")?;
        let len: usize = std::str::from_utf8(&d[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("a record has a bad length")?;
        if len <= sp + 1 || len > d.len() || d[len - 1] != b'\n' {
            return Err("a record has a bad length".into());
        }
        let rec = &d[sp + 1..len - 1];
        let eq = rec
            .iter()
            .position(|&b| b == b'=')
            .ok_or("a record has no `=`")?;
        let key = String::from_utf8_lossy(&rec[..eq]).into_owned();
        out.push((key, rec[eq + 1..].to_vec()));
        d = &d[len..];
    }
    Ok(out)
}

#[cfg(test)]
#[path = "tarfmt_tests.rs"]
mod tests;

//! The tar stream, both ways: GNU-format headers written by hand (owners normalised, long
//! names as `L`/`K` entries, holes as old-GNU sparse entries) and a strict reader that checks
//! every header, refuses what it does not understand and notices a truncated stream.
//!
//! The `tar` crate supplies the header layouts and numeric field coding; the stream itself
//! is ours, because its `Builder` takes owners, modes and times from the file system and
//! reads sparse files itself, which leaves no room for hashing the bytes as they pass.

use std::io::{self, Read, Write};
use tar::{EntryType, GnuExtSparseHeader, Header};

pub const BLOCK: usize = 512;
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
pub const MAX_OFFSET: u64 = i64::MAX as u64;
/// The latest modification time kept: 9999-12-31T23:59:59Z. Later times are clamped to it and
/// times before 1970 to 0 (docs/archive.md), so no time can overflow when it is applied.
pub const MAX_MTIME: u64 = 253_402_300_799;
/// Owner and device numbers: what `uid_t`, `gid_t` and a device number part hold.
const MAX_ID: i128 = u32::MAX as i128;
/// The mode field holds seven octal digits; only the 12 permission bits are kept.
const MAX_MODE: i128 = 0o7777777;

/// One data region of a sparse file: offset and length.
pub type Extent = (u64, u64);

/// What an entry is, as far as convirt cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
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
pub struct TarWriter<W: Write> {
    out: W,
    written: u64,
}

/// Metadata of one entry to write. `path` is relative, with `/` separators; directories get
/// their trailing `/` here.
pub struct Meta<'a> {
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
    pub fn new(out: W) -> Self {
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

    pub fn dir(&mut self, meta: &Meta) -> io::Result<()> {
        let mut h = base_header(EntryType::Directory, meta);
        self.names(&mut h, meta.path.as_bytes(), None)?;
        h.set_cksum();
        self.put(h.as_bytes())
    }

    pub fn symlink(&mut self, meta: &Meta, target: &str) -> io::Result<()> {
        let mut h = base_header(EntryType::Symlink, meta);
        self.names(&mut h, meta.path.as_bytes(), Some(target.as_bytes()))?;
        h.set_cksum();
        self.put(h.as_bytes())
    }

    /// A regular file of `size` bytes; the caller then writes exactly `size` bytes with
    /// [`TarWriter::data`] and calls [`TarWriter::end_data`].
    pub fn file(&mut self, meta: &Meta, size: u64) -> io::Result<()> {
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
    pub fn sparse(&mut self, meta: &Meta, extents: &[Extent], real_size: u64) -> io::Result<()> {
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

    pub fn data(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.put(bytes)
    }

    /// Pads the data of an entry of `len` bytes to a whole block.
    pub fn end_data(&mut self, len: u64) -> io::Result<()> {
        self.pad(len)
    }

    /// Two zero blocks, then zeros up to a whole record, as GNU tar ends an archive.
    pub fn finish(mut self) -> io::Result<W> {
        self.put(&[0u8; 2 * BLOCK])?;
        let rest = (RECORD - self.written % RECORD) % RECORD;
        let zeros = vec![0u8; rest as usize];
        self.put(&zeros)?;
        Ok(self.out)
    }
}

/// Why a stream is not an acceptable tar archive.
#[derive(Debug)]
pub enum ReadError {
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
pub struct Entry {
    pub path: Vec<u8>,
    pub kind: Kind,
    pub mode: u32,
    pub mtime: u64,
    /// Bytes of data that follow in the archive (for a sparse file, the data regions only).
    pub size: u64,
}

impl Entry {
    pub fn path_lossy(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }
}

/// A strict, streaming tar reader.
pub struct TarReader<R: Read> {
    r: R,
    pos: u64,
    /// Data bytes of the current entry not read yet, and the padding after them.
    remaining: u64,
    padding: u64,
    current: String,
    ended: bool,
}

pub fn fill(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
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
    pub fn new(r: R) -> Self {
        TarReader {
            r,
            pos: 0,
            remaining: 0,
            padding: 0,
            current: String::new(),
            ended: false,
        }
    }

    pub fn into_inner(self) -> R {
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
    pub fn read_data(&mut self, buf: &mut [u8]) -> Result<usize, ReadError> {
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
    pub fn next_entry(&mut self) -> Result<Option<Entry>, ReadError> {
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
mod tests {
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
}

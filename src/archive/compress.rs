//! Compression on every core, and decompression beside the reader.
//!
//! Packing cuts the tar stream into 1 MiB chunks and compresses each on its own, on a pool of
//! one thread per core, into an independent gzip member or zstd frame; a writer thread puts
//! them into the file in order. Concatenated gzip members are one valid gzip file and
//! concatenated zstd frames one valid zstd file: `gzip -d`, `zstd -d` and `tar xzf` read them
//! as usual. The chunk boundaries depend only on the stream, so the output does not depend
//! on the number of threads. Memory stays bounded: at most a few chunks per thread are in
//! flight.
//!
//! Importing decompresses on a thread of its own, handing 1 MiB blocks to the tar reader
//! through a short queue, so decompression and unpacking overlap on two cores.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

pub(super) const CHUNK: usize = 1 << 20;
const GZIP_LEVEL: u32 = 6;
const ZSTD_LEVEL: i32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Codec {
    Gzip,
    Zstd,
}

impl Codec {
    fn compress(self, data: &[u8]) -> io::Result<Vec<u8>> {
        match self {
            Codec::Gzip => {
                let level = if incompressible(data) { 0 } else { GZIP_LEVEL };
                // mtime 0, no file name, OS "unknown": the same bytes on every machine.
                let mut e = flate2::GzBuilder::new()
                    .mtime(0)
                    .operating_system(255)
                    .write(
                        Vec::with_capacity(data.len() / 2),
                        flate2::Compression::new(level),
                    );
                e.write_all(data)?;
                e.finish()
            }
            Codec::Zstd => zstd::bulk::compress(data, ZSTD_LEVEL),
        }
    }
}

/// Whether a chunk looks like compressed or random data, which deflate would spend its time
/// on for nothing: three 16 KiB samples (start, middle, end) that the fastest level cannot
/// shrink by 2 %. Such a chunk is stored (deflate level 0), as zstd does on its own. The
/// decision depends only on the data, so the output stays reproducible.
fn incompressible(data: &[u8]) -> bool {
    const SAMPLE: usize = 16 * 1024;
    if data.len() < 4 * SAMPLE {
        return false;
    }
    let mid = data.len() / 2;
    [0, mid, data.len() - SAMPLE].iter().all(|&at| {
        let sample = &data[at..at + SAMPLE];
        let mut c = flate2::Compress::new(flate2::Compression::fast(), false);
        let mut out = Vec::with_capacity(SAMPLE + SAMPLE / 8);
        match c.compress_vec(sample, &mut out, flate2::FlushCompress::Finish) {
            Ok(flate2::Status::StreamEnd) => out.len() * 100 >= sample.len() * 98,
            // The output did not even fit in more room than the input: no gain there.
            Ok(_) => true,
            Err(_) => false,
        }
    })
}

type Job = (Vec<u8>, SyncSender<io::Result<Vec<u8>>>);

/// A `Write` that compresses in parallel into `out`.
pub(super) struct ParallelWriter {
    buf: Vec<u8>,
    jobs: Option<SyncSender<Job>>,
    order: Option<SyncSender<Receiver<io::Result<Vec<u8>>>>>,
    workers: Vec<JoinHandle<()>>,
    writer: Option<JoinHandle<io::Result<File>>>,
}

impl ParallelWriter {
    pub(super) fn new(out: File, codec: Codec, threads: usize) -> ParallelWriter {
        let threads = threads.max(1);
        let (job_tx, job_rx) = sync_channel::<Job>(threads);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let workers = (0..threads)
            .map(|_| {
                let rx = Arc::clone(&job_rx);
                std::thread::spawn(move || {
                    loop {
                        let job = match rx.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => return,
                        };
                        let Ok((data, reply)) = job else { return };
                        let _ = reply.send(codec.compress(&data));
                    }
                })
            })
            .collect();
        let (order_tx, order_rx) = sync_channel::<Receiver<io::Result<Vec<u8>>>>(threads * 2);
        let writer = std::thread::spawn(move || -> io::Result<File> {
            let mut out = out;
            for next in order_rx {
                let bytes = next
                    .recv()
                    .map_err(|_| io::Error::other("a compression thread stopped"))??;
                out.write_all(&bytes)?;
            }
            Ok(out)
        });
        ParallelWriter {
            buf: Vec::with_capacity(CHUNK),
            jobs: Some(job_tx),
            order: Some(order_tx),
            workers,
            writer: Some(writer),
        }
    }

    fn dispatch(&mut self) -> io::Result<()> {
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        let (tx, rx) = sync_channel(1);
        let sent = match (&self.order, &self.jobs) {
            (Some(order), Some(jobs)) => order.send(rx).is_ok() && jobs.send((data, tx)).is_ok(),
            _ => false,
        };
        if sent {
            Ok(())
        } else {
            // The writer stopped: its error says why.
            Err(self
                .stop()
                .err()
                .unwrap_or_else(|| io::Error::other("the archive writer stopped unexpectedly")))
        }
    }

    fn stop(&mut self) -> io::Result<File> {
        self.jobs = None;
        self.order = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        match self.writer.take() {
            Some(w) => w
                .join()
                .map_err(|_| io::Error::other("the archive writer thread panicked"))?,
            None => Err(io::Error::other("the archive writer was already stopped")),
        }
    }

    /// Compresses what is left, waits for every chunk to be written and returns the file.
    pub(super) fn finish(mut self) -> io::Result<File> {
        if !self.buf.is_empty() {
            self.dispatch()?;
        }
        self.stop()
    }
}

impl Write for ParallelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.dispatch()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for ParallelWriter {
    fn drop(&mut self) {
        if self.writer.is_some() {
            let _ = self.stop();
        }
    }
}

/// How an archive file is compressed, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Detected {
    Gzip,
    Zstd,
    Tar,
}

pub(super) fn detect(file: &mut File) -> io::Result<Result<Detected, &'static str>> {
    use std::io::Seek;
    let mut magic = [0u8; 6];
    let n = super::tarfmt::fill(file, &mut magic)?;
    file.seek(io::SeekFrom::Start(0))?;
    let m = &magic[..n];
    Ok(if m.starts_with(&[0x1f, 0x8b]) {
        Ok(Detected::Gzip)
    } else if m.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok(Detected::Zstd)
    } else if m.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Err("xz")
    } else if m.starts_with(b"BZh") {
        Err("bzip2")
    } else {
        Ok(Detected::Tar)
    })
}

/// Counts the bytes read from the archive file, for the progress bar.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// The uncompressed stream, produced by a decoder thread in 1 MiB blocks.
pub(super) struct ThreadedReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    cur: Vec<u8>,
    pos: usize,
    done: bool,
}

pub(super) fn spawn_decoder(file: File, kind: Detected, count: Arc<AtomicU64>) -> ThreadedReader {
    let (tx, rx) = sync_channel::<io::Result<Vec<u8>>>(4);
    std::thread::spawn(move || {
        let src = Counting {
            inner: BufReader::with_capacity(256 * 1024, file),
            count,
        };
        let mut dec: Box<dyn Read> = match kind {
            Detected::Gzip => Box::new(flate2::read::MultiGzDecoder::new(src)),
            Detected::Zstd => match zstd::stream::read::Decoder::new(src) {
                Ok(d) => Box::new(d),
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            },
            Detected::Tar => Box::new(src),
        };
        loop {
            let mut block = vec![0u8; CHUNK];
            match super::tarfmt::fill(&mut dec, &mut block) {
                Ok(n) => {
                    block.truncate(n);
                    let last = n == 0;
                    if tx.send(Ok(block)).is_err() || last {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
    });
    ThreadedReader {
        rx,
        cur: Vec::new(),
        pos: 0,
        done: false,
    }
}

impl Read for ThreadedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(block)) => {
                    if block.is_empty() {
                        self.done = true;
                    }
                    self.cur = block;
                    self.pos = 0;
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(_) => {
                    self.done = true;
                    return Err(io::Error::other("the decompression thread stopped"));
                }
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(codec: Codec, threads: usize, data: &[u8]) -> Vec<u8> {
        let f = tempfile::tempfile().unwrap();
        let mut w = ParallelWriter::new(f, codec, threads);
        for part in data.chunks(77_777) {
            w.write_all(part).unwrap();
        }
        let mut f = w.finish().unwrap();
        use std::io::Seek;
        f.seek(io::SeekFrom::Start(0)).unwrap();
        let mut out = Vec::new();
        f.read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn random_chunks_are_stored_and_text_is_compressed() {
        let mut x: u64 = 0x9e3779b97f4a7c15;
        let random: Vec<u8> = (0..CHUNK)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        assert!(incompressible(&random));
        let text: Vec<u8> = b"name = 'web1'\nmemory = 256\n"
            .iter()
            .copied()
            .cycle()
            .take(CHUNK)
            .collect();
        assert!(!incompressible(&text));
        let mut mixed = random.clone();
        mixed[CHUNK / 2..].copy_from_slice(&text[CHUNK / 2..]);
        assert!(!incompressible(&mixed));
    }

    #[test]
    fn parallel_output_is_valid_and_independent_of_threads() {
        let data: Vec<u8> = (0..3 * CHUNK + 12345).map(|i| (i % 251) as u8).collect();
        for codec in [Codec::Gzip, Codec::Zstd] {
            let a = pack(codec, 1, &data);
            let b = pack(codec, 3, &data);
            assert_eq!(a, b);
            let mut back = Vec::new();
            match codec {
                Codec::Gzip => {
                    flate2::read::MultiGzDecoder::new(&a[..])
                        .read_to_end(&mut back)
                        .unwrap();
                }
                Codec::Zstd => {
                    zstd::stream::read::Decoder::new(&a[..])
                        .unwrap()
                        .read_to_end(&mut back)
                        .unwrap();
                }
            }
            assert_eq!(back, data);
        }
    }
}

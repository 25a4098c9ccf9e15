//! Gzip on every core, the way pigz does it: the input is cut into fixed
//! blocks, each block is deflated on its own with the 32 KiB before it as
//! its dictionary and ends on a sync flush (a byte boundary), so the
//! blocks' outputs concatenate into one deflate stream in one gzip member.
//!
//! The bytes depend only on the block size, the level and the input,
//! never on how many threads ran or in which order they finished: the
//! layer digest stays reproducible from one machine to the next. With the
//! dictionary, the output is within a fraction of a percent of a serial
//! deflate at the same level.
use std::{
    collections::BTreeMap,
    io::{self, Write},
    sync::{Arc, Mutex, mpsc},
    thread::JoinHandle,
};

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

/// Input per block. pigz's default: large enough that the per-block
/// dictionary and flush cost nothing measurable, small enough to keep two
/// cores busy on a few-MiB layer.
pub(super) const BLOCK: usize = 128 * 1024;
/// Deflate's window: what a block may refer back to.
const WINDOW: usize = 32 * 1024;

struct Job {
    seq: u64,
    /// The previous block's input (its tail is the dictionary).
    before: Option<Arc<Vec<u8>>>,
    data: Arc<Vec<u8>>,
    last: bool,
}

type Done = (u64, io::Result<Vec<u8>>);

/// A gzip writer that compresses blocks on worker threads and writes them
/// to `inner` in order. [`finish`](Self::finish) must be called; dropping
/// it stops the workers and loses the stream.
pub(super) struct ParallelGz<W: Write> {
    /// Taken by `finish`.
    inner: Option<W>,
    block: Vec<u8>,
    before: Option<Arc<Vec<u8>>>,
    crc: Crc,
    next_seq: u64,
    next_out: u64,
    in_flight: usize,
    max_in_flight: usize,
    ready: BTreeMap<u64, Vec<u8>>,
    jobs: Option<mpsc::Sender<Job>>,
    done: mpsc::Receiver<Done>,
    workers: Vec<JoinHandle<()>>,
}

impl<W: Write> ParallelGz<W> {
    /// `threads` workers (at least one); the header says mtime 0, no name
    /// and operating system "unknown", as a reproducible layer needs.
    pub(super) fn new(mut inner: W, level: Compression, threads: usize) -> io::Result<Self> {
        inner.write_all(&header(level))?;
        let threads = threads.max(1);
        let (jobs, job_rx) = mpsc::channel::<Job>();
        let (done_tx, done) = mpsc::channel::<Done>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads {
            let (rx, tx) = (Arc::clone(&job_rx), done_tx.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("gzip-{i}"))
                .spawn(move || work(&rx, &tx, level));
            match spawned {
                Ok(h) => workers.push(h),
                // Fewer workers are still correct; none is an error.
                Err(e) if workers.is_empty() => return Err(e),
                Err(_) => break,
            }
        }
        let max_in_flight = 2 * workers.len();
        Ok(ParallelGz {
            inner: Some(inner),
            block: Vec::with_capacity(BLOCK),
            before: None,
            crc: Crc::new(),
            next_seq: 0,
            next_out: 0,
            in_flight: 0,
            max_in_flight,
            ready: BTreeMap::new(),
            jobs: Some(jobs),
            done,
            workers,
        })
    }

    /// Sends the block being filled to the workers.
    fn dispatch(&mut self, last: bool) -> io::Result<()> {
        while self.in_flight >= self.max_in_flight {
            self.collect_one()?;
        }
        let data = Arc::new(std::mem::replace(
            &mut self.block,
            Vec::with_capacity(if last { 0 } else { BLOCK }),
        ));
        let job = Job {
            seq: self.next_seq,
            before: self.before.replace(Arc::clone(&data)),
            data,
            last,
        };
        self.jobs
            .as_ref()
            .ok_or_else(|| io::Error::other("gzip stream already finished"))?
            .send(job)
            .map_err(|_| gone())?;
        self.next_seq += 1;
        self.in_flight += 1;
        Ok(())
    }

    /// Waits for one block from the workers and writes out every block
    /// that is now next in line.
    fn collect_one(&mut self) -> io::Result<()> {
        let (seq, out) = self.done.recv().map_err(|_| gone())?;
        self.in_flight -= 1;
        self.ready.insert(seq, out?);
        while let Some(out) = self.ready.remove(&self.next_out) {
            self.inner_mut()?.write_all(&out)?;
            self.next_out += 1;
        }
        Ok(())
    }

    fn inner_mut(&mut self) -> io::Result<&mut W> {
        self.inner
            .as_mut()
            .ok_or_else(|| io::Error::other("gzip stream already finished"))
    }

    /// Compresses what is left, writes the trailer and returns the inner
    /// writer.
    pub(super) fn finish(mut self) -> io::Result<W> {
        self.dispatch(true)?;
        while self.in_flight > 0 {
            self.collect_one()?;
        }
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&self.crc.sum().to_le_bytes());
        trailer[4..].copy_from_slice(&self.crc.amount().to_le_bytes());
        self.inner_mut()?.write_all(&trailer)?;
        self.stop();
        self.inner
            .take()
            .ok_or_else(|| io::Error::other("gzip stream already finished"))
    }

    /// Closes the job queue and joins the workers.
    fn stop(&mut self) {
        self.jobs = None;
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
    }
}

impl<W: Write> Drop for ParallelGz<W> {
    fn drop(&mut self) {
        self.stop();
    }
}

impl<W: Write> Write for ParallelGz<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.block.len() == BLOCK {
            // Only now is the full block known not to be the last one.
            self.dispatch(false)?;
        }
        let n = buf.len().min(BLOCK - self.block.len());
        self.block.extend_from_slice(&buf[..n]);
        self.crc.update(&buf[..n]);
        Ok(n)
    }

    /// Blocks are cut at fixed sizes only, so a flush writes out what is
    /// already compressed and no more: cutting early would change the
    /// bytes.
    fn flush(&mut self) -> io::Result<()> {
        self.inner_mut()?.flush()
    }
}

fn gone() -> io::Error {
    io::Error::other("a gzip worker thread stopped")
}

/// gzip's member header: deflate, no flags, mtime 0, XFL as zlib sets it
/// for the level, OS 255 (unknown).
fn header(level: Compression) -> [u8; 10] {
    let xfl = match level.level() {
        9 => 2,
        0 | 1 => 4,
        _ => 0,
    };
    [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 255]
}

fn work(jobs: &Mutex<mpsc::Receiver<Job>>, done: &mpsc::Sender<Done>, level: Compression) {
    loop {
        // The lock is held only to take one job.
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let out = deflate_block(level, &job);
        if done.send((job.seq, out)).is_err() {
            return;
        }
    }
}

/// One block as raw deflate: primed with the previous block's last 32 KiB,
/// ended by a sync flush, or by the final block if `last`.
///
/// A new compressor per block, whose window starts zeroed: after `reset`,
/// zlib-rs 0.6 lets stale window bytes steer the match search
/// (trifectatechfoundation/zlib-rs#459), so a worker's earlier blocks
/// changed a later block's bytes, and which worker gets which block
/// depends on timing. The set-up is a few hundred KiB of allocation
/// against 128 KiB deflated.
fn deflate_block(level: Compression, job: &Job) -> io::Result<Vec<u8>> {
    let c = &mut Compress::new(level, false);
    if let Some(before) = &job.before {
        let dict = &before[before.len().saturating_sub(WINDOW)..];
        c.set_dictionary(dict).map_err(io::Error::other)?;
    }
    let flush = if job.last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let data = &job.data[..];
    let start_in = c.total_in();
    let mut out = Vec::with_capacity(data.len() / 2 + 1024);
    loop {
        let consumed = (c.total_in() - start_in) as usize;
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(4096));
        }
        let status = c
            .compress_vec(&data[consumed..], &mut out, flush)
            .map_err(io::Error::other)?;
        let all_in = (c.total_in() - start_in) as usize == data.len();
        let room_left = out.len() < out.capacity();
        match status {
            Status::StreamEnd => return Ok(out),
            // A sync flush is complete once all input is in and deflate
            // stopped with output space to spare.
            Status::Ok | Status::BufError if !job.last && all_in && room_left => return Ok(out),
            Status::Ok | Status::BufError => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    /// Compressible but not trivial: text-like runs with a counter.
    fn sample(len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len);
        let mut x: u32 = 12345;
        while v.len() < len {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            if x.is_multiple_of(7) {
                v.extend_from_slice(&x.to_le_bytes());
            } else {
                v.extend_from_slice(format!("line {} of the file\n", x % 1000).as_bytes());
            }
        }
        v.truncate(len);
        v
    }

    fn pgz(data: &[u8], threads: usize, chunk: usize) -> Vec<u8> {
        let mut w = ParallelGz::new(Vec::new(), Compression::new(6), threads).unwrap();
        for piece in data.chunks(chunk.max(1)) {
            w.write_all(piece).unwrap();
        }
        w.finish().unwrap()
    }

    fn gunzip_single_member(gz: &[u8]) -> Vec<u8> {
        // GzDecoder reads one member only: trailing members would be lost,
        // so a round trip through it proves the stream is one member.
        let mut d = flate2::read::GzDecoder::new(gz);
        let mut out = Vec::new();
        d.read_to_end(&mut out).unwrap();
        let mut rest = Vec::new();
        d.into_inner().read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "{} bytes after the member", rest.len());
        out
    }

    #[test]
    fn round_trips_at_every_block_boundary() {
        for len in [
            0,
            1,
            WINDOW,
            BLOCK - 1,
            BLOCK,
            BLOCK + 1,
            3 * BLOCK,
            5 * BLOCK + 777,
        ] {
            let data = sample(len);
            let gz = pgz(&data, 2, 10_000);
            assert_eq!(gunzip_single_member(&gz), data, "length {len}");
            // The header is the reproducible one, the trailer gzip's.
            assert_eq!(&gz[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
            let tail = &gz[gz.len() - 8..];
            assert_eq!(
                u32::from_le_bytes(tail[4..].try_into().unwrap()),
                len as u32
            );
        }
    }

    #[test]
    fn bytes_do_not_depend_on_threads_or_write_sizes() {
        let data = sample(9 * BLOCK + 4321);
        let one = pgz(&data, 1, BLOCK);
        for (threads, chunk) in [(2, 1000), (3, 65536), (8, 7)] {
            assert!(one == pgz(&data, threads, chunk), "{threads} threads");
        }
    }

    /// On real binaries (here the test's own), a compressor reused after
    /// `reset` let a worker's earlier blocks change a later block's bytes;
    /// which worker gets which block depends on timing.
    #[test]
    fn bytes_do_not_depend_on_threads_on_a_real_binary() {
        let exe = std::env::current_exe().unwrap();
        let mut data = std::fs::read(exe).unwrap();
        data.truncate(8 << 20);
        let one = pgz(&data, 1, 65536);
        assert_eq!(gunzip_single_member(&one), data);
        for threads in [2, 3] {
            assert!(one == pgz(&data, threads, 10_000), "{threads} threads");
        }
    }

    #[test]
    fn as_small_as_serial_gzip_within_one_percent() {
        let data = sample(40 * BLOCK);
        let mut serial = flate2::write::GzEncoder::new(Vec::new(), Compression::new(6));
        serial.write_all(&data).unwrap();
        let serial = serial.finish().unwrap();
        let parallel = pgz(&data, 2, 65536);
        assert!(
            (parallel.len() as f64) < serial.len() as f64 * 1.01,
            "parallel {} vs serial {}",
            parallel.len(),
            serial.len()
        );
    }

    #[test]
    fn gzip_itself_reads_it() {
        let data = sample(4 * BLOCK + 5);
        let gz = pgz(&data, 2, 4096);
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.gz");
        std::fs::write(&f, &gz).unwrap();
        let out = std::process::Command::new("gzip")
            .arg("-dc")
            .arg(&f)
            .output()
            .unwrap();
        assert!(out.status.success());
        assert!(out.stdout == data);
    }
}

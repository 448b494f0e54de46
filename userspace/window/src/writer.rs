//! The writer thread: takes full staging buffers, writes them to the open segment through the
//! disk engine, indexes them while the write is in flight, rotates segments by size and by
//! packet time, enforces retention, and handles a full disk.
//!
//! Disk full (or any write error): the writer waits for the writes in flight, cuts the segment
//! at the end of its last good write, indexes and closes it, and from then on returns every
//! buffer it receives to the pool unwritten (its packets counted as `disk_full` drops). Every
//! half second it runs retention and checks the free space; when there is room for a few
//! buffers again it resumes with a new segment.

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};

use crate::block::{aligned_chunk, header_bytes, idb_bytes};
use crate::disk::{open_segment, Done, Engine};
use crate::index::IndexBuilder;
use crate::segment::{self, Limits};
use crate::staging::{Buf, ALIGN};
use crate::{Msg, Shared};

/// The segment being written.
struct OpenSeg {
    /// Sequence number.
    seq: u64,
    /// File (kept open until closed).
    file: File,
    /// `.part` path.
    path: PathBuf,
    /// Next write offset.
    off: u64,
    /// Interfaces declared by IDBs so far.
    ifaces: u32,
    /// Index under construction.
    index: IndexBuilder,
    /// First packet time (ns).
    first_ts: Option<u64>,
    /// Lowest offset of a failed write.
    failed_at: Option<u64>,
}

/// The writer thread's state.
pub(crate) struct Writer {
    /// Shared with the handles.
    shared: Arc<Shared>,
    /// Full buffers and commands.
    rx: Receiver<Msg>,
    /// Disk engine.
    engine: Engine,
    /// Buffer for headers and IDBs (not in the pool).
    hdr: Option<Buf>,
    /// Its id.
    hdr_id: u16,
    /// The open segment.
    seg: Option<OpenSeg>,
    /// Next sequence number.
    next_seq: u64,
    /// Newest packet time written (the window's clock for age retention).
    newest: u64,
    /// Retention's memory between passes (see [`segment::enforce`]).
    retention_floor: u64,
    /// Writing stopped because the disk is full (or failing).
    stopped: bool,
    /// Last retention / resume check.
    last_tick: Instant,
    /// Completions scratch.
    done: Vec<Done>,
}

impl Writer {
    pub(crate) fn new(
        shared: Arc<Shared>,
        rx: Receiver<Msg>,
        engine: Engine,
        hdr: Buf,
        next_seq: u64,
        newest: u64,
    ) -> Writer {
        Writer {
            shared,
            rx,
            engine,
            hdr_id: hdr.id,
            hdr: Some(hdr),
            seg: None,
            next_seq,
            newest,
            retention_floor: 0,
            stopped: false,
            last_tick: Instant::now(),
            done: Vec::new(),
        }
    }

    /// Runs until [`Msg::Stop`].
    pub(crate) fn run(mut self) {
        loop {
            self.reap(0);
            if self.last_tick.elapsed() >= Duration::from_millis(500) {
                self.tick();
            }
            let msg = if self.engine.inflight() > 0 {
                match self.rx.try_recv() {
                    Ok(m) => m,
                    Err(TryRecvError::Empty) => {
                        self.reap(1);
                        continue;
                    }
                    Err(TryRecvError::Disconnected) => break,
                }
            } else {
                match self.rx.recv_timeout(Duration::from_millis(250)) {
                    Ok(m) => m,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            };
            match msg {
                Msg::Buf(b) => self.on_buf(b),
                Msg::Rotate(reply) => {
                    self.close_segment();
                    let _ = reply.send(());
                }
                Msg::Sync(reply) => {
                    self.wait_all();
                    let _ = reply.send(());
                }
                Msg::Stop => break,
            }
        }
        self.close_segment();
        // Buffers still queued go back to the pool; writes in flight were waited for.
        while let Ok(m) = self.rx.try_recv() {
            if let Msg::Buf(b) = m {
                self.shared
                    .stats
                    .drops_closed
                    .fetch_add(u64::from(b.packets), Ordering::Relaxed);
                self.free(b);
            }
        }
    }

    fn free(&self, mut b: Buf) {
        b.reset();
        let _ = self.shared.free_tx.send(b);
    }

    fn limits(&self) -> Limits {
        self.shared.cfg.limits
    }

    fn tick(&mut self) {
        self.last_tick = Instant::now();
        if self.limits() != Limits::default() {
            self.retention();
        }
        if self.stopped && self.room_again() {
            tracing::info!("trace window: space available again, writing resumes");
            // A segment whose closing failed for lack of space is closed now.
            if let Ok(segs) = segment::list(&self.shared.cfg.dir) {
                for s in segs.iter().filter(|s| s.open) {
                    if let Err(e) = segment::recover(s) {
                        tracing::warn!("trace window: cannot close {}: {e}", s.path.display());
                    }
                }
            }
            self.stopped = false;
            self.shared.stats.disk_full.store(false, Ordering::Relaxed);
        }
    }

    fn retention(&mut self) {
        let limits = self.limits();
        match segment::enforce(
            &self.shared.cfg.dir,
            &limits,
            self.newest,
            &mut self.retention_floor,
        ) {
            Ok(d) => {
                if d.segments > 0 {
                    self.shared
                        .stats
                        .segments_deleted
                        .fetch_add(d.segments, Ordering::Relaxed);
                    self.shared
                        .stats
                        .bytes_deleted
                        .fetch_add(d.bytes, Ordering::Relaxed);
                }
                if d.blocked > 0 {
                    tracing::debug!(
                        "trace window: {} segment(s) to delete are being read; kept until their readers finish",
                        d.blocked
                    );
                }
            }
            Err(e) => tracing::warn!("trace window: retention failed: {e}"),
        }
    }

    /// Whether the filesystem has room for a header and a few buffers again.
    fn room_again(&self) -> bool {
        let Ok(s) = rustix::fs::statvfs(&self.shared.cfg.dir) else {
            return false;
        };
        let free = s.f_bavail.saturating_mul(s.f_frsize);
        let need = (4 * self.shared.cfg.buffer_bytes + 2 * ALIGN) as u64;
        let pct_ok = match self.limits().min_free_percent {
            Some(p) => segment::free_percent(&self.shared.cfg.dir).is_some_and(|f| f >= p),
            None => true,
        };
        free >= need && pct_ok
    }

    /// Reaps completions, waiting for at least `min`.
    fn reap(&mut self, min: usize) {
        let mut done = std::mem::take(&mut self.done);
        self.engine.reap(min, &mut done);
        for d in done.drain(..) {
            let ok = matches!(d.res, Ok(n) if n == d.len);
            if ok {
                self.shared
                    .stats
                    .file_bytes
                    .fetch_add(d.len as u64, Ordering::Relaxed);
            } else {
                let why = match &d.res {
                    Ok(n) => format!("short write ({n} of {} bytes)", d.len),
                    Err(e) => e.to_string(),
                };
                if !self.stopped {
                    tracing::warn!("trace window: write failed at offset {}: {why}; writing stops until space returns", d.off);
                }
                self.shared
                    .stats
                    .write_errors
                    .fetch_add(1, Ordering::Relaxed);
                self.shared
                    .stats
                    .drops_disk_full
                    .fetch_add(u64::from(d.buf.packets), Ordering::Relaxed);
                if let Some(s) = &mut self.seg {
                    s.failed_at = Some(s.failed_at.map_or(d.off, |f| f.min(d.off)));
                }
            }
            self.free(d.buf);
        }
        self.done = done;
        let failed = self.seg.as_ref().is_some_and(|s| s.failed_at.is_some());
        if failed && min == 0 {
            self.stop_writing();
        }
    }

    fn wait_all(&mut self) {
        while self.engine.inflight() > 0 {
            self.reap(1);
        }
    }

    /// Disk full or failing: close the segment at its last good write, stop.
    fn stop_writing(&mut self) {
        self.stopped = true;
        self.shared.stats.disk_full.store(true, Ordering::Relaxed);
        self.close_segment();
    }

    fn on_buf(&mut self, mut b: Buf) {
        if b.packets == 0 {
            self.free(b);
            return;
        }
        if self.stopped {
            self.shared
                .stats
                .drops_disk_full
                .fetch_add(u64::from(b.packets), Ordering::Relaxed);
            self.free(b);
            return;
        }
        let len = b.seal().len();
        let cfg = &self.shared.cfg;
        let rotate = self.seg.as_ref().is_some_and(|s| {
            s.first_ts.is_some() && s.off + len as u64 > cfg.segment_bytes
                || match (cfg.segment_ns, s.first_ts) {
                    (Some(dt), Some(t0)) => b.ts_min >= t0.saturating_add(dt),
                    _ => false,
                }
        });
        if rotate {
            self.close_segment();
        }
        if self.seg.is_none() {
            if let Err(e) = self.open_segment() {
                tracing::warn!(
                    "trace window: cannot open a segment: {e}; writing stops until space returns"
                );
                self.shared
                    .stats
                    .drops_disk_full
                    .fetch_add(u64::from(b.packets), Ordering::Relaxed);
                self.free(b);
                self.stopped = true;
                self.shared.stats.disk_full.store(true, Ordering::Relaxed);
                return;
            }
        }
        if self.seg.as_ref().is_some_and(|s| b.max_iface >= s.ifaces) {
            if let Err(e) = self.declare_ifaces(b.max_iface + 1) {
                tracing::warn!("trace window: cannot write interface blocks: {e}");
                self.shared
                    .stats
                    .drops_disk_full
                    .fetch_add(u64::from(b.packets), Ordering::Relaxed);
                self.free(b);
                self.stop_writing();
                return;
            }
        }
        let Some(seg) = &mut self.seg else {
            self.free(b);
            return;
        };
        let off = seg.off;
        seg.off += len as u64;
        seg.first_ts.get_or_insert(b.ts_min);
        self.newest = self.newest.max(b.ts_max);
        let packets = u64::from(b.packets);
        // Index while the write runs (the bytes are not modified in flight): the sealed
        // chunk, padding block included, as a rebuild from the file sees it.
        let mut index_ns = 0u64;
        self.engine.submit_with(b, off, len, |bytes| {
            // CPU time of this thread (wall time would count preemption).
            let t = thread_cpu_ns();
            seg.index.add_chunk(bytes.get(..len).unwrap_or(&[]), off);
            index_ns = thread_cpu_ns().saturating_sub(t);
        });
        let st = &self.shared.stats;
        st.index_ns.fetch_add(index_ns, Ordering::Relaxed);
        st.packets.fetch_add(packets, Ordering::Relaxed);
    }

    /// Opens a new `.part` segment and writes its header chunk.
    fn open_segment(&mut self) -> io::Result<()> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let path = self.shared.cfg.dir.join(segment::part_name(seq));
        let (file, direct) = open_segment(&path, self.shared.cfg.direct)?;
        if self.shared.cfg.direct && !direct {
            static ONCE: std::sync::Once = std::sync::Once::new();
            ONCE.call_once(|| {
                tracing::info!("trace window: the filesystem refuses O_DIRECT; buffered writes");
            });
        }
        self.engine.set_file(&file)?;
        let links = self.shared.links();
        let mut index = IndexBuilder::new(Vec::new());
        let chunk = aligned_chunk(header_bytes(&links, self.shared.cfg.snaplen)?, ALIGN);
        index.add_chunk(&chunk, 0);
        self.seg = Some(OpenSeg {
            seq,
            file,
            path: path.clone(),
            off: 0,
            ifaces: links.len().max(1) as u32,
            index,
            first_ts: None,
            failed_at: None,
        });
        if let Err(e) = self.write_sync(&chunk) {
            self.seg = None;
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        Ok(())
    }

    /// Writes IDBs for interfaces up to `n - 1` (new link types met by the handles).
    fn declare_ifaces(&mut self, n: u32) -> io::Result<()> {
        let links = self.shared.links();
        let Some(seg) = &self.seg else {
            return Ok(());
        };
        let mut bytes = Vec::new();
        for l in links
            .iter()
            .skip(seg.ifaces as usize)
            .take(n.saturating_sub(seg.ifaces) as usize)
        {
            bytes.extend_from_slice(&idb_bytes(*l, self.shared.cfg.snaplen)?);
        }
        let chunk = aligned_chunk(bytes, ALIGN);
        if let Some(seg) = &mut self.seg {
            let off = seg.off;
            seg.index.add_chunk(&chunk, off);
            seg.ifaces = n.min(links.len() as u32).max(seg.ifaces);
        }
        self.write_sync(&chunk)
    }

    /// Writes `chunk` (aligned) at the segment's offset and waits for it.
    fn write_sync(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.wait_all();
        let Some(mut h) = self.hdr.take() else {
            return Err(io::Error::other("header buffer busy"));
        };
        let res = h.load(chunk).then_some(());
        let Some(seg) = &mut self.seg else {
            self.hdr = Some(h);
            return Ok(());
        };
        if res.is_none() {
            self.hdr = Some(h);
            return Err(io::Error::other("header chunk larger than its buffer"));
        }
        let off = seg.off;
        seg.off += chunk.len() as u64;
        self.engine.submit(h, off, chunk.len());
        let mut done = Vec::new();
        while self.engine.inflight() > 0 {
            self.engine.reap(1, &mut done);
        }
        let mut result = Err(io::Error::other("header write lost"));
        for d in done {
            if d.buf.id == self.hdr_id {
                result = match d.res {
                    Ok(n) if n == d.len => Ok(()),
                    Ok(n) => Err(io::Error::other(format!("short write ({n} of {})", d.len))),
                    Err(e) => Err(e),
                };
                self.hdr = Some(d.buf);
            } else {
                self.free(d.buf);
            }
        }
        result
    }

    /// Closes the open segment: waits for its writes, cuts it after a failure, fsyncs,
    /// indexes, renames; then retention.
    fn close_segment(&mut self) {
        self.wait_all();
        let Some(seg) = self.seg.take() else {
            return;
        };
        let res = (|| -> io::Result<()> {
            let idx = if let Some(bad) = seg.failed_at {
                // Cut after the last good write, then index what is really there.
                seg.file.set_len(bad)?;
                let mut f = File::open(&seg.path)?;
                segment::index_file(&mut f)?
            } else {
                seg.index.finish()
            };
            if idx.packets == 0 {
                drop(seg.file);
                std::fs::remove_file(&seg.path)?;
                return Ok(());
            }
            if seg.failed_at.is_none() {
                seg.file.sync_data()?;
            } else {
                let _ = seg.file.sync_all();
            }
            drop(seg.file);
            segment::finish(&seg.path, seg.seq, &idx)?;
            self.shared
                .stats
                .segments_closed
                .fetch_add(1, Ordering::Relaxed);
            Ok(())
        })();
        if let Err(e) = res {
            tracing::warn!(
                "trace window: closing {} failed: {e} (recovered at next start)",
                seg.path.display()
            );
        }
        if self.limits() != Limits::default() {
            self.retention();
        }
    }
}

/// CPU time consumed by the calling thread, in ns.
fn thread_cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    (t.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec as u64)
}

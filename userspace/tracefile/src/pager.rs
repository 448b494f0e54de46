//! The pager: a thread that maps a trace file's pages ahead of the reader and reads its
//! lines just ahead of it.
//!
//! A reader walking a mapped file takes a page fault every 64 KiB (the kernel's fault-around),
//! and the kernel then maps 16 pages. On a 374 MB trace that is ~6 000 faults and a fifth to a
//! quarter of the time of a simple module (benches/RESULTS.md, module runs of 27 Nov). The
//! pager asks the kernel to map the pages in advance (`MADV_POPULATE_READ`, Linux 5.14),
//! [`CHUNK`] at a time, at most [`AHEAD`] bytes ahead of the reader, so that the reader finds
//! them mapped; for a file not in the page cache the same call starts the disk reads early.
//!
//! Mapped is not cached: one core alone fetches a streamed file from memory at what its
//! outstanding misses allow, and the reader's work on each packet waits for them. The pager
//! also reads one byte per cache line between [`WARM_MIN`] and [`WARM`] bytes ahead of the
//! reader, so that the reader finds the lines in the caches (benches/RESULTS.md, runs of 27 Nov
//! 14:53: `traffic` a quarter faster). It runs under `SCHED_IDLE`: only on a core nothing else
//! wants, never preempting the reader or the export thread. A reader slower than
//! [`FAST_READER`] (a paced replay) is not warmed for, only mapped for, until it is fast again.
//!
//! The reader's side costs a store, a load and a comparison per call: it publishes its
//! position (`pos`). Ahead enough, the pager watches that position (spinning, at idle
//! priority) for up to [`WATCH`]; a reader that does not need it by then is slow, and the
//! pager publishes the offset at which it wants to be woken (`wake_at`) and parks, and the
//! reader unparks it when its position passes that offset. No lock, no system call per batch
//! (a wake-up per `WARM - WARM_MIN` bytes cost a reader at full speed 6 % of `topaddr`'s
//! time).
//!
//! Files smaller than [`MIN_LEN`] get no pager (their faults cost less than a thread). On a
//! kernel without `MADV_POPULATE_READ` the pager stops at its first chunk and the reader faults
//! the pages in itself, as it would without a pager.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use memmap2::{Advice, Mmap};

/// Bytes mapped per request.
const CHUNK: usize = 2 << 20;

/// How far ahead of the reader the pager maps: large enough that a fast reader never catches
/// up, small enough that the page tables stay a few hundred KiB.
const AHEAD: usize = 64 << 20;

/// How far ahead of the reader the pager reads the lines (see [`touch`]): within what this
/// core's cache holds (a run at 4 MiB ahead gained less than at 256 KiB-1 MiB).
const WARM: usize = 1 << 20;

/// The reader within this distance of the end of the warmed lines wakes the pager.
const WARM_MIN: usize = WARM / 2;

/// Lines read per turn of the pager's loop (between two looks at the reader's position).
const WARM_STEP: usize = 64 << 10;

/// How long the pager watches for the reader to need it before it parks: a reader at full
/// speed reads `WARM - WARM_MIN` in less; a slow one (a paced replay) costs one spin this long,
/// then is found slower than [`FAST_READER`] and waited for parked.
const WATCH: Duration = Duration::from_micros(500);

/// Bytes per second under which the reader is not warmed for: one that slow (a paced replay)
/// waits for its clock, not for memory, and would find the warmed lines evicted by the time it
/// reads them: warming a 2x replay of the benchmark's trace (47 MB/s) cost 16-30 % more CPU
/// time. Readers at full speed read 1-9 GB/s here.
const FAST_READER: f64 = 256e6;

/// Files below this size are read without a pager.
const MIN_LEN: usize = 32 << 20;

/// What the reader and the pager thread share.
#[derive(Debug)]
struct Shared {
    /// The reader's offset, as of its last call.
    pos: AtomicUsize,
    /// The reader offset at which the parked pager wants to be woken; `usize::MAX` when it is
    /// not waiting.
    wake_at: AtomicUsize,
    /// The reader is gone: stop.
    stop: AtomicBool,
}

/// A running pager; dropping it stops and joins the thread.
#[derive(Debug)]
pub(crate) struct Pager {
    /// Shared with the thread.
    shared: Arc<Shared>,
    /// The thread.
    thread: Option<JoinHandle<()>>,
}

impl Pager {
    /// Starts a pager over `map`, or `None` for a small file or when no thread can be started.
    pub(crate) fn start(map: &Arc<Mmap>) -> Option<Self> {
        if map.len() < MIN_LEN {
            return None;
        }
        let shared = Arc::new(Shared {
            pos: AtomicUsize::new(0),
            wake_at: AtomicUsize::new(usize::MAX),
            stop: AtomicBool::new(false),
        });
        let thread = std::thread::Builder::new()
            .name("como-pager".into())
            .spawn({
                let shared = Arc::clone(&shared);
                let map = Arc::clone(map);
                move || run(&map, &shared)
            })
            .ok()?;
        Some(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// The reader is at `pos`: wakes the pager if it waits for that.
    #[inline(always)]
    pub(crate) fn advance(&self, pos: usize) {
        self.shared.pos.store(pos, Ordering::Relaxed);
        if pos >= self.shared.wake_at.load(Ordering::Relaxed) {
            self.wake();
        }
    }

    /// Wakes the parked pager (once per wait).
    #[cold]
    fn wake(&self) {
        if self.shared.wake_at.swap(usize::MAX, Ordering::Relaxed) != usize::MAX {
            if let Some(t) = &self.thread {
                t.thread().unpark();
            }
        }
    }
}

impl Drop for Pager {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            // The thread only maps pages; it cannot panic on its own, and if it did there
            // would be nothing to report: the reader does not depend on it.
            let _ = t.join();
        }
    }
}

/// The pager thread: maps `map` chunk by chunk, at most [`AHEAD`] bytes ahead of the reader,
/// and warms the lines [`WARM_MIN`] to [`WARM`] bytes ahead of it; when both are done, waits
/// (watching, then parked) until the reader is [`WARM_MIN`] bytes from the end of the warmed
/// part.
fn run(map: &Mmap, shared: &Shared) {
    idle_priority();
    let len = map.len();
    let mut mapped = 0;
    let mut warmed = 0;
    // A reader slower than FAST_READER gets no warming (see `FAST_READER`).
    let mut slow = false;
    let mut sink = 0u8;
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        let reader = shared.pos.load(Ordering::Relaxed);
        let mut busy = false;
        // One chunk at a time, so that mapping never keeps the warming waiting for long.
        if mapped < len && mapped < reader.saturating_add(AHEAD) {
            let n = CHUNK.min(len - mapped);
            if map.advise_range(Advice::PopulateRead, mapped, n).is_err() {
                // An old kernel (EINVAL) or a file cut short under the mapping (EFAULT): the
                // reader maps the pages itself, or reports the cut. Nothing is warmed either:
                // touching an unmapped page would fault here, or fail past a cut.
                break;
            }
            mapped += n;
            busy = true;
        }
        // Behind the reader (it is faster than the warming): start again ahead of it.
        warmed = warmed.max(reader);
        let upto = reader.saturating_add(WARM).min(mapped);
        if !slow && warmed < upto {
            let end = upto.min(warmed + WARM_STEP);
            sink ^= touch(map.get(warmed..end).unwrap_or_default());
            warmed = end;
            busy = true;
        }
        if busy {
            continue;
        }
        if mapped >= len && (slow || warmed >= len) {
            break;
        }
        // Both done: wait until the reader is WARM_MIN from the end of the warmed lines
        // (a slow reader: AHEAD / 2 from the end of the mapping), watching its position for up
        // to WATCH (an unpark is a system call of the reader's), then parked (if it passed the
        // mark before `wake_at` was stored, its next call sees `pos >= wake_at` and unparks;
        // an unpark before the park makes the park return at once).
        let wake_at = if slow {
            mapped.saturating_sub(AHEAD / 2)
        } else {
            warmed.saturating_sub(WARM_MIN)
        }
        .max(reader + 1);
        if !slow && watch(shared, wake_at) {
            continue;
        }
        let parked = Instant::now();
        shared.wake_at.store(wake_at, Ordering::Relaxed);
        while shared.wake_at.load(Ordering::Relaxed) == wake_at
            && !shared.stop.load(Ordering::Relaxed)
        {
            std::thread::park();
        }
        // The reader's speed while the pager waited decides whether warming is worth it (not
        // measured before the reader's first record: its start may be far off).
        if reader > 0 {
            let moved = shared.pos.load(Ordering::Relaxed).saturating_sub(reader);
            slow = (moved as f64) < parked.elapsed().as_secs_f64() * FAST_READER;
        }
    }
    std::hint::black_box(sink);
}

/// Spins until the reader reaches `mark`: true when it did within [`WATCH`], false when it did
/// not (or the pager is to stop).
fn watch(shared: &Shared, mark: usize) -> bool {
    let start = Instant::now();
    loop {
        for _ in 0..256 {
            std::hint::spin_loop();
        }
        if shared.pos.load(Ordering::Relaxed) >= mark {
            return true;
        }
        if shared.stop.load(Ordering::Relaxed) || start.elapsed() >= WATCH {
            return false;
        }
    }
}

/// Reads one byte of every cache line of `bytes`, which brings the lines into this core's
/// cache and from there into the cache the cores share: the reader then finds them there, not
/// in memory (measured: a quarter less time for a reader that works on each line). Returns
/// the XOR of the bytes read, so that the reads are not optimised away.
#[inline(never)]
fn touch(bytes: &[u8]) -> u8 {
    bytes.iter().step_by(64).fold(0, |x, &b| x ^ b)
}

/// Puts the calling thread in `SCHED_IDLE`: it then runs only on a CPU that no other thread
/// wants, and never preempts one. The read-ahead helps when a core is spare and takes nothing
/// from the reader or the export thread when none is (on 2 cores, `tuple`'s export thread and
/// a normal-priority pager slowed `como inline` by 16 %). Left as is when refused.
fn idle_priority() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `param` is a valid `sched_param` that outlives the call; pid 0 is the
        // calling thread, and the policy changes nothing but its scheduling.
        let _ = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    }
}

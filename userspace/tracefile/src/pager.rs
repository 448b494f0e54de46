//! The pager: a thread that maps a trace file's pages ahead of the reader.
//!
//! A reader walking a mapped file takes a page fault every 64 KiB (the kernel's fault-around),
//! and the kernel then maps 16 pages. On a 374 MB trace that is ~6 000 faults and a fifth to a
//! quarter of the time of a simple module (benches/RESULTS.md, module runs of 27 Nov). The
//! pager asks the kernel to map the pages in advance (`MADV_POPULATE_READ`, Linux 5.14),
//! [`CHUNK`] at a time, at most [`AHEAD`] bytes ahead of the reader, so that the reader finds
//! them mapped; for a file not in the page cache the same call starts the disk reads early.
//!
//! The reader's side costs one load and one comparison per call: the pager publishes the
//! offset at which it wants to be woken (`wake_at`), parks, and the reader unparks it when its
//! position passes that offset. No lock, no syscall per batch: one wake-up per `AHEAD / 2`.
//!
//! Files smaller than [`MIN_LEN`] get no pager (their faults cost less than a thread). On a
//! kernel without `MADV_POPULATE_READ` the pager stops at its first chunk and the reader faults
//! the pages in itself, as it would without a pager.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use memmap2::{Advice, Mmap};

/// Bytes mapped per request.
const CHUNK: usize = 2 << 20;

/// How far ahead of the reader the pager maps: large enough that a fast reader never catches
/// up, small enough that the page tables stay a few hundred KiB.
const AHEAD: usize = 64 << 20;

/// Files below this size are read without a pager.
const MIN_LEN: usize = 32 << 20;

/// What the reader and the pager thread share.
#[derive(Debug)]
struct Shared {
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

/// The pager thread: maps `map` chunk by chunk, at most [`AHEAD`] bytes ahead of the reader.
fn run(map: &Mmap, shared: &Shared) {
    let len = map.len();
    let mut done = 0;
    // Map up to here, then wait for the reader.
    let mut limit = AHEAD;
    while done < len {
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        if done >= limit {
            // Wait until the reader is within AHEAD / 2 of `done`, then map AHEAD / 2 more.
            // If the reader passed that mark before `wake_at` was stored, its next call sees
            // `pos >= wake_at` and unparks; an unpark before the park makes the park return
            // at once.
            let wake_at = done - AHEAD / 2;
            limit = done + AHEAD / 2;
            shared.wake_at.store(wake_at, Ordering::Relaxed);
            while shared.wake_at.load(Ordering::Relaxed) == wake_at
                && !shared.stop.load(Ordering::Relaxed)
            {
                std::thread::park();
            }
            if shared.stop.load(Ordering::Relaxed) {
                return;
            }
        }
        let n = CHUNK.min(len - done);
        if map.advise_range(Advice::PopulateRead, done, n).is_err() {
            // An old kernel (EINVAL) or a file cut short under the mapping (EFAULT): the
            // reader maps the pages itself, or reports the cut.
            return;
        }
        done += n;
    }
}

//! The four single-producer/single-consumer rings an XDP socket shares with the kernel.
//!
//! Each ring is a power-of-two array of descriptors plus two free-running `u32` indexes, one
//! written by the producer and one by the consumer (`XDP_MMAP_OFFSETS` says where each lives in
//! the mapping), and a `flags` word (`XDP_RING_NEED_WAKEUP`). The kernel pairs its accesses with
//! `smp_load_acquire`/`smp_store_release`; so does this side:
//! * a consumer loads the producer index with `Acquire` (the descriptors written before the
//!   kernel published them are visible), reads the descriptors, then stores its consumer index
//!   with `Release` (the kernel may reuse the slots only after our reads);
//! * a producer loads the consumer index with `Acquire` (the kernel is done with those slots),
//!   writes descriptors, then stores its producer index with `Release`.
//!
//! Both sides keep cached copies of the remote index and reload it only when the cache says
//! the ring is empty (consumer) or full (producer), as libxdp does.

use std::io;
use std::marker::PhantomData;
use std::mem::size_of;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::sys::Mapping;

/// One mapped ring with descriptors of type `T` (`u64` frame addresses for the fill and
/// completion rings, `xdp_desc` for RX and TX).
#[derive(Debug)]
pub struct Ring<T: Copy> {
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    descs: *mut T,
    mask: u32,
    size: u32,
    /// Our copy of our own index (producer for a producer ring, consumer otherwise).
    local: u32,
    /// Cached copy of the other side's index.
    remote: u32,
    _map: Mapping,
    _t: PhantomData<T>,
}

// SAFETY: the ring's pointers point into `_map`, which the Ring owns; the kernel side is
// thread-agnostic. A Ring is used through `&mut self` only, so moving it between threads is
// sound (it is not Sync: no `&self` method touches shared state non-atomically).
unsafe impl<T: Copy> Send for Ring<T> {}

impl<T: Copy> Ring<T> {
    /// Maps a ring of `size` entries at page offset `pgoff` of the socket, with the offsets
    /// `off` the kernel gave in `XDP_MMAP_OFFSETS`.
    pub fn map(
        fd: BorrowedFd<'_>,
        size: u32,
        off: &libc::xdp_ring_offset,
        pgoff: libc::off_t,
    ) -> io::Result<Self> {
        let bad = || io::Error::new(io::ErrorKind::InvalidData, "ring offsets out of range");
        let desc_off = usize::try_from(off.desc).map_err(|_| bad())?;
        let len = (size as usize)
            .checked_mul(size_of::<T>())
            .and_then(|b| b.checked_add(desc_off))
            .ok_or_else(bad)?;
        for o in [off.producer, off.consumer, off.flags] {
            let end = usize::try_from(o)
                .ok()
                .and_then(|o| o.checked_add(size_of::<u32>()));
            if end.is_none_or(|e| e > len) || o % 4 != 0 {
                return Err(bad());
            }
        }
        if desc_off % std::mem::align_of::<T>() != 0 {
            return Err(bad());
        }
        let map = Mapping::new(len, libc::MAP_SHARED | libc::MAP_POPULATE, Some(fd), pgoff)?;
        let base = map.as_ptr();
        // SAFETY: every offset was checked above to leave room for its object inside the
        // `len`-byte mapping and to be aligned (the mapping is page-aligned); AtomicU32 has the
        // layout of u32, which is what the kernel stores there.
        let (producer, consumer, flags, descs) = unsafe {
            (
                base.add(off.producer as usize).cast::<AtomicU32>() as *const AtomicU32,
                base.add(off.consumer as usize).cast::<AtomicU32>() as *const AtomicU32,
                base.add(off.flags as usize).cast::<AtomicU32>() as *const AtomicU32,
                base.add(desc_off).cast::<T>(),
            )
        };
        let mut ring = Self {
            producer,
            consumer,
            flags,
            descs,
            mask: size.wrapping_sub(1),
            size,
            local: 0,
            remote: 0,
            _map: map,
            _t: PhantomData,
        };
        // A fresh ring has both indexes at 0, but read them rather than assume it.
        ring.local = ring.load_producer(Ordering::Relaxed);
        ring.remote = ring.load_consumer(Ordering::Relaxed);
        Ok(ring)
    }

    fn load_producer(&self, order: Ordering) -> u32 {
        // SAFETY: `producer` points to an aligned u32 inside the mapping owned by self.
        unsafe { (*self.producer).load(order) }
    }

    fn load_consumer(&self, order: Ordering) -> u32 {
        // SAFETY: `consumer` points to an aligned u32 inside the mapping owned by self.
        unsafe { (*self.consumer).load(order) }
    }

    /// Whether the kernel asks for a wakeup (`XDP_RING_NEED_WAKEUP` in the ring's flags).
    pub fn needs_wakeup(&self) -> bool {
        // SAFETY: `flags` points to an aligned u32 inside the mapping owned by self.
        let f = unsafe { (*self.flags).load(Ordering::Relaxed) };
        f & libc::XDP_RING_NEED_WAKEUP != 0
    }

    // ---- producer side (fill, TX) ----

    /// Free slots of a ring we produce into (at least `want` if that many are free; reloads the
    /// kernel's consumer index only when the cache shows fewer).
    pub fn prod_free(&mut self, want: u32) -> u32 {
        // saturating: a kernel index ahead of ours would be a kernel bug, never a panic here.
        let free = self
            .size
            .saturating_sub(self.local.wrapping_sub(self.remote));
        if free >= want {
            return free;
        }
        self.remote = self.load_consumer(Ordering::Acquire);
        self.size
            .saturating_sub(self.local.wrapping_sub(self.remote))
    }

    /// Writes `value` at position `local + i` of a ring we produce into. The caller must have
    /// seen at least `i + 1` free slots with [`Ring::prod_free`].
    pub fn prod_write(&mut self, i: u32, value: T) {
        let idx = (self.local.wrapping_add(i) & self.mask) as usize;
        // SAFETY: idx <= mask < size, so the slot lies inside the descriptor array of the
        // mapping; the slot is free (the caller saw it with prod_free), so the kernel does not
        // read it until we publish it with prod_submit.
        unsafe { self.descs.add(idx).write_volatile(value) };
    }

    /// Publishes `n` written slots to the kernel.
    pub fn prod_submit(&mut self, n: u32) {
        if n == 0 {
            return;
        }
        self.local = self.local.wrapping_add(n);
        // SAFETY: `producer` points to an aligned u32 inside the mapping owned by self.
        unsafe { (*self.producer).store(self.local, Ordering::Release) };
    }

    /// Entries of a ring we produce into that the kernel has not consumed yet.
    pub fn prod_outstanding(&mut self) -> u32 {
        self.remote = self.load_consumer(Ordering::Acquire);
        self.local.wrapping_sub(self.remote)
    }

    // ---- consumer side (RX, completion) ----

    /// Entries ready in a ring we consume, at most `max` (reloads the kernel's producer index
    /// when the cache shows fewer than `max`).
    pub fn cons_ready(&mut self, max: u32) -> u32 {
        let mut ready = self.remote.wrapping_sub(self.local);
        if ready < max {
            self.remote = self.load_producer(Ordering::Acquire);
            ready = self.remote.wrapping_sub(self.local);
        }
        // Never more than the ring holds, whatever the kernel's index says.
        ready.min(max).min(self.size)
    }

    /// Reads the entry at position `local + i` of a ring we consume. The caller must have seen
    /// at least `i + 1` ready entries with [`Ring::cons_ready`].
    pub fn cons_read(&self, i: u32) -> T {
        let idx = (self.local.wrapping_add(i) & self.mask) as usize;
        // SAFETY: idx <= mask < size, so the slot lies inside the descriptor array; the kernel
        // published it (Acquire load in cons_ready) and does not rewrite it before we release it.
        unsafe { self.descs.add(idx).read_volatile() }
    }

    /// Gives `n` read entries back to the kernel.
    pub fn cons_release(&mut self, n: u32) {
        if n == 0 {
            return;
        }
        self.local = self.local.wrapping_add(n);
        // SAFETY: `consumer` points to an aligned u32 inside the mapping owned by self.
        unsafe { (*self.consumer).store(self.local, Ordering::Release) };
    }

    /// Entries the kernel has produced into a ring we consume and we have not released.
    pub fn cons_pending(&mut self) -> u32 {
        self.remote = self.load_producer(Ordering::Acquire);
        self.remote.wrapping_sub(self.local)
    }
}

//! [`prefetch`]: the one cache hint of the capture path, shared by the trace readers (the
//! records ahead of the one being read) and the modules' tables (the slot of a packet's key).

/// Asks the CPU to bring the cache line at `p` into its caches. Only a hint: `p` may point
/// anywhere, it is never dereferenced. A no-op on targets other than x86_64.
#[inline(always)]
pub fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: a prefetch never faults and reads nothing visible to Rust, whatever the
        // address (the pointer is not dereferenced); SSE is baseline on x86_64.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>()) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = p;
    }
}

//! Types shared between the filter compiler (userspace) and the XDP program (kernel).
//!
//! `no_std`, `#[repr(C)]` only, after aya-template's `-common` crate. The kernel-table layout
//! is defined by the kernel fast path issue; for now this crate holds the limits both sides
//! agree on.
#![no_std]

/// Most modules (plus the packet window) one classification can serve: one bit each in a `u64`.
pub const MAX_RULES: usize = 64;

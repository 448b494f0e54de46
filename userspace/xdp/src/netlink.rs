//! The two netlink/interface calls the loader needs beside aya: the index of an interface and
//! removing an XDP program attached the old way (`RTM_SETLINK` with `IFLA_XDP_FD = -1`), which
//! a BPF link cannot replace.

use std::{
    ffi::CString,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

/// `IFLA_XDP` (linux/if_link.h).
const IFLA_XDP: u16 = 43;
/// `IFLA_XDP_FD`.
const IFLA_XDP_FD: u16 = 1;
/// `IFLA_XDP_FLAGS`.
const IFLA_XDP_FLAGS: u16 = 3;
/// `NLA_F_NESTED`.
const NLA_F_NESTED: u16 = 1 << 15;
/// `XDP_FLAGS_SKB_MODE`.
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
/// `XDP_FLAGS_DRV_MODE`.
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
/// `RTM_SETLINK`.
const RTM_SETLINK: u16 = 19;
/// `NLMSG_ERROR`.
const NLMSG_ERROR: u16 = 2;

/// The index of interface `name` in the calling thread's network namespace.
pub(crate) fn if_index(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

/// Removes any XDP program attached through netlink to `ifindex`, generic and native. Fails
/// only when both requests fail.
pub(crate) fn detach_all(ifindex: u32) -> io::Result<()> {
    let skb = set_xdp_none(ifindex, XDP_FLAGS_SKB_MODE);
    let drv = set_xdp_none(ifindex, XDP_FLAGS_DRV_MODE);
    match (skb, drv) {
        (Err(e), Err(_)) => Err(e),
        _ => Ok(()),
    }
}

/// One `RTM_SETLINK` request with `IFLA_XDP { FD = -1, FLAGS = mode }`, waiting for the ack.
fn set_xdp_none(ifindex: u32, mode: u32) -> io::Result<()> {
    let mut msg = Vec::with_capacity(64);
    // nlmsghdr: len (patched below), type, flags, seq, pid.
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&RTM_SETLINK.to_ne_bytes());
    let nl_flags = (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16;
    msg.extend_from_slice(&nl_flags.to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    // ifinfomsg: family, pad, type, index, flags, change.
    msg.extend_from_slice(&[libc::AF_UNSPEC as u8, 0]);
    msg.extend_from_slice(&0u16.to_ne_bytes());
    msg.extend_from_slice(&(ifindex as i32).to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    // IFLA_XDP (nested): IFLA_XDP_FD = -1, IFLA_XDP_FLAGS = mode.
    msg.extend_from_slice(&(4u16 + 8 + 8).to_ne_bytes());
    msg.extend_from_slice(&(IFLA_XDP | NLA_F_NESTED).to_ne_bytes());
    msg.extend_from_slice(&8u16.to_ne_bytes());
    msg.extend_from_slice(&IFLA_XDP_FD.to_ne_bytes());
    msg.extend_from_slice(&(-1i32).to_ne_bytes());
    msg.extend_from_slice(&8u16.to_ne_bytes());
    msg.extend_from_slice(&IFLA_XDP_FLAGS.to_ne_bytes());
    msg.extend_from_slice(&mode.to_ne_bytes());
    let len = msg.len() as u32;
    msg[..4].copy_from_slice(&len.to_ne_bytes());

    // SAFETY: plain socket(2) call; the result is checked before use.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a new descriptor nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: `msg` is a live buffer of `msg.len()` bytes; the kernel is the default peer.
    let sent = unsafe { libc::send(sock.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = [0u8; 4096];
    // SAFETY: `buf` is a live, writable buffer of `buf.len()` bytes.
    let got = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    let reply = buf.get(..got as usize).unwrap_or(&[]);
    // nlmsghdr (16 bytes) then, for NLMSG_ERROR, the error code (negative errno, 0 = ack).
    let kind = reply
        .get(4..6)
        .map(|b| u16::from_ne_bytes([b[0], b[1]]))
        .unwrap_or(0);
    let code = reply
        .get(16..20)
        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    match (kind, code) {
        (NLMSG_ERROR, Some(0)) => Ok(()),
        (NLMSG_ERROR, Some(e)) => Err(io::Error::from_raw_os_error(-e)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "unexpected netlink reply",
        )),
    }
}

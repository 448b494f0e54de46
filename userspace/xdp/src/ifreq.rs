//! Interface settings through `struct ifreq` ioctls: the MTU (`SIOCGIFMTU`), and RX VLAN tag
//! stripping (`ethtool -K IF rxvlan on|off`), read and set with the `SIOCETHTOOL` ioctl's flags
//! commands (`ETHTOOL_GFLAGS` / `ETHTOOL_SFLAGS`, `ETH_FLAG_RXVLAN`;
//! include/uapi/linux/ethtool.h).
//!
//! Why the VLAN stripping: a NIC that strips 802.1Q tags on receive hands XDP the frame without its tag (the tag
//! goes to the descriptor, where only some drivers expose it to XDP, through a kfunc). `vlan`
//! filters would then miss every tagged frame in the kernel fast path, while tcpdump on the
//! same interface (libpcap puts the tag back from the packet socket's auxiliary data) counts
//! them. [`crate::XdpProgram::attach`] turns stripping off while the program is attached.

use std::ffi::c_void;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `SIOCETHTOOL` (include/uapi/linux/sockios.h).
const SIOCETHTOOL: libc::c_ulong = 0x8946;
/// Get the flags word.
const ETHTOOL_GFLAGS: u32 = 0x25;
/// Set the flags word.
const ETHTOOL_SFLAGS: u32 = 0x26;
/// RX VLAN tag stripping (`NETIF_F_HW_VLAN_CTAG_RX`).
const ETH_FLAG_RXVLAN: u32 = 1 << 8;

/// `struct ethtool_value`.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// The union of `struct ifreq` (24 bytes on 64-bit Linux), with the members used here.
#[repr(C)]
#[derive(Clone, Copy)]
union IfrIfru {
    /// `ifr_data`: ethtool's command buffer.
    data: *mut c_void,
    /// `ifr_mtu`.
    mtu: libc::c_int,
    _size: [u8; 24],
}

/// `struct ifreq`: the interface name, then the union.
#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    ifru: IfrIfru,
}

/// An `ifreq` naming `iface`, its union zeroed.
fn ifreq(iface: &str) -> io::Result<IfReq> {
    let bytes = iface.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {iface:?}"),
        ));
    }
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        ifru: IfrIfru { _size: [0; 24] },
    };
    for (d, s) in req.name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    Ok(req)
}

/// `ioctl(request)` with `req` on a fresh datagram socket (of the calling thread's network
/// namespace).
fn ioctl(request: libc::c_ulong, req: &mut IfReq) -> io::Result<()> {
    // SAFETY: socket(2) with constant arguments; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `req` is a valid `struct ifreq`; for the requests used here the kernel reads the
    // name and reads/writes the union, or what its data pointer points at, which the callers
    // keep alive across the call.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), request, std::ptr::from_mut(req)) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One ethtool command on `iface`: `cmd` with `data` in, the `data` the kernel returns.
fn ethtool(iface: &str, cmd: u32, data: u32) -> io::Result<u32> {
    let mut value = EthtoolValue { cmd, data };
    let mut req = ifreq(iface)?;
    req.ifru.data = std::ptr::addr_of_mut!(value).cast();
    ioctl(SIOCETHTOOL, &mut req)?;
    Ok(value.data)
}

/// The MTU of `iface` (in the calling thread's network namespace).
pub fn mtu(iface: &str) -> io::Result<u32> {
    let mut req = ifreq(iface)?;
    ioctl(libc::SIOCGIFMTU, &mut req)?;
    // SAFETY: the union was zero-initialised whole and SIOCGIFMTU wrote `ifr_mtu`: every bit
    // pattern is a valid int.
    let mtu = unsafe { req.ifru.mtu };
    u32::try_from(mtu).map_err(|_| io::Error::other(format!("{iface}: MTU {mtu}")))
}

/// Whether `iface` (in the calling thread's network namespace) strips VLAN tags on receive.
pub fn rx_vlan_stripping(iface: &str) -> io::Result<bool> {
    Ok(ethtool(iface, ETHTOOL_GFLAGS, 0)? & ETH_FLAG_RXVLAN != 0)
}

/// Turns RX VLAN tag stripping of `iface` on or off (root; `EOPNOTSUPP` when the driver
/// cannot change it).
pub fn set_rx_vlan_stripping(iface: &str, on: bool) -> io::Result<()> {
    let flags = ethtool(iface, ETHTOOL_GFLAGS, 0)?;
    let want = if on {
        flags | ETH_FLAG_RXVLAN
    } else {
        flags & !ETH_FLAG_RXVLAN
    };
    if want != flags {
        ethtool(iface, ETHTOOL_SFLAGS, want)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_cannot_be_interfaces_are_refused_before_the_kernel() {
        for bad in ["", "a-name-longer-than-15", "nul\0byte"] {
            let e = rx_vlan_stripping(bad).expect_err(bad);
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
        // An unknown interface: the kernel's answer (ENODEV), not a crash.
        let e = rx_vlan_stripping("como-none0").expect_err("no such interface");
        assert_eq!(e.raw_os_error(), Some(libc::ENODEV), "{e}");
    }
}

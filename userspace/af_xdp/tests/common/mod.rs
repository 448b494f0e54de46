//! Test support: a tiny hand-assembled XDP program that redirects every packet to
//! `XSKMAP[rx_queue_index]`, loaded with the `bpf` syscall and attached with `BPF_LINK_CREATE`.
//!
//! Test code only (the project's real XDP program is `xdp-prog`). In front of each packet of
//! even length it writes an `XdpMeta`-shaped metadata block: `rules` = the packet length
//! (`bpf_xdp_get_buff_len`), `recheck` = its bitwise NOT, `magic` = `META_MAGIC`, `gen` = the RX
//! queue, so the tests can check that the metadata travels with the frame. Packets of odd
//! length get no metadata (to test that a frame never shows a previous packet's).

#![allow(
    dead_code,
    reason = "each test binary uses a different part of this module"
)]

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use ebpf_filters_common::META_MAGIC;

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
const BPF_PSEUDO_MAP_FD: u8 = 1;
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
const XDP_PASS: i32 = 2;

const FN_REDIRECT_MAP: i32 = 51;
const FN_XDP_ADJUST_META: i32 = 54;
const FN_XDP_GET_BUFF_LEN: i32 = 188;

/// Where XDP runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    /// In the driver (veth's NAPI).
    Native,
    /// Generic XDP on the skb.
    Skb,
}

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0x0f),
        off,
        imm,
    }
}

/// The program (see the module docs), with `map_fd` as its XSK map.
fn program(map_fd: i32) -> Vec<Insn> {
    // Opcodes used (linux/bpf.h): ALU64|MOV|X 0xbf, ALU64|MOV|K 0xb7, ALU64|ADD|K 0x07,
    // ALU64|XOR|K 0xa7, JMP|CALL 0x85, JMP|EXIT 0x95, JMP|JNE|K 0x55, JMP|JGT|X 0x2d,
    // JMP|JSET|K 0x45,
    // LDX|MEM|W 0x61, STX|MEM|DW 0x7b, STX|MEM|W 0x63, ST|MEM|W 0x62, LD|IMM|DW 0x18.
    let redirect = 20i16;
    vec![
        insn(0xbf, 6, 1, 0, 0),                      // 0: r6 = ctx
        insn(0x85, 0, 0, 0, FN_XDP_GET_BUFF_LEN),    // 1: r0 = bpf_xdp_get_buff_len(ctx)
        insn(0xbf, 7, 0, 0, 0),                      // 2: r7 = r0
        insn(0x45, 7, 0, redirect - 4, 1),           // 3: if len & 1 goto redirect (no meta)
        insn(0xbf, 1, 6, 0, 0),                      // 4: r1 = ctx
        insn(0xb7, 2, 0, 0, -24),                    // 5: r2 = -24
        insn(0x85, 0, 0, 0, FN_XDP_ADJUST_META),     // 6: bpf_xdp_adjust_meta(ctx, -24)
        insn(0x55, 0, 0, redirect - 8, 0),           // 7: if r0 != 0 goto redirect
        insn(0x61, 2, 6, 8, 0),                      // 8: r2 = ctx->data_meta
        insn(0x61, 3, 6, 0, 0),                      // 9: r3 = ctx->data
        insn(0xbf, 5, 2, 0, 0),                      // 10: r5 = r2
        insn(0x07, 5, 0, 0, 24),                     // 11: r5 += 24
        insn(0x2d, 5, 3, redirect - 13, 0),          // 12: if r5 > r3 goto redirect
        insn(0x7b, 2, 7, 0, 0),                      // 13: meta.rules = len
        insn(0xbf, 8, 7, 0, 0),                      // 14: r8 = len
        insn(0xa7, 8, 0, 0, -1),                     // 15: r8 = !len
        insn(0x7b, 2, 8, 8, 0),                      // 16: meta.recheck = !len
        insn(0x62, 2, 0, 16, META_MAGIC as i32),     // 17: meta.magic = META_MAGIC
        insn(0x61, 4, 6, 16, 0),                     // 18: r4 = ctx->rx_queue_index
        insn(0x63, 2, 4, 20, 0),                     // 19: meta.gen = queue
        insn(0x61, 2, 6, 16, 0),                     // 20 (redirect): r2 = ctx->rx_queue_index
        insn(0x18, 1, BPF_PSEUDO_MAP_FD, 0, map_fd), // 21: r1 = map (2 slots)
        insn(0x00, 0, 0, 0, 0),                      // 22
        insn(0xb7, 3, 0, 0, XDP_PASS),               // 23: r3 = XDP_PASS (no socket on queue)
        insn(0x85, 0, 0, 0, FN_REDIRECT_MAP),        // 24: bpf_redirect_map(map, queue, PASS)
        insn(0x95, 0, 0, 0, 0),                      // 25: exit
    ]
}

fn bpf(cmd: libc::c_long, attr: &mut [u8; 128]) -> io::Result<i64> {
    // SAFETY: `attr` is a 128-byte zero-padded bpf_attr for `cmd`, valid for the call; the
    // pointers inside it point to buffers the caller keeps alive across the call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len() as u32) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}

fn put_u32(a: &mut [u8; 128], off: usize, v: u32) {
    a[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put_u64(a: &mut [u8; 128], off: usize, v: u64) {
    a[off..off + 8].copy_from_slice(&v.to_ne_bytes());
}

fn owned(fd: i64) -> OwnedFd {
    // SAFETY: the bpf syscall returned a fresh descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

/// The redirect program attached to an interface, with its XSK map. Dropping it detaches the
/// program (closing the link) and frees the map.
pub struct Redirect {
    link: OwnedFd,
    prog: OwnedFd,
    map: OwnedFd,
}

impl Redirect {
    /// Loads the program and attaches it to `ifindex` in `mode`. Call it in the interface's
    /// network namespace.
    pub fn attach(ifindex: u32, mode: XdpMode, queues: u32) -> io::Result<Self> {
        // BPF_MAP_CREATE: map_type, key_size, value_size, max_entries.
        let mut a = [0u8; 128];
        put_u32(&mut a, 0, BPF_MAP_TYPE_XSKMAP);
        put_u32(&mut a, 4, 4);
        put_u32(&mut a, 8, 4);
        put_u32(&mut a, 12, queues.max(1));
        let map = owned(bpf(BPF_MAP_CREATE, &mut a).map_err(|e| ctx("map create", e))?);

        let insns = program(map.as_raw_fd());
        let license = b"GPL\0";
        let mut log = vec![0u8; 64 * 1024];
        // BPF_PROG_LOAD: prog_type, insn_cnt, insns, license, log_level, log_size, log_buf,
        // kern_version, prog_flags, prog_name[16], prog_ifindex, expected_attach_type.
        let mut a = [0u8; 128];
        put_u32(&mut a, 0, BPF_PROG_TYPE_XDP);
        put_u32(&mut a, 4, insns.len() as u32);
        put_u64(&mut a, 8, insns.as_ptr() as u64);
        put_u64(&mut a, 16, license.as_ptr() as u64);
        put_u32(&mut a, 24, 1);
        put_u32(&mut a, 28, log.len() as u32);
        put_u64(&mut a, 32, log.as_mut_ptr() as u64);
        a[48..48 + 13].copy_from_slice(b"como_xsk_test");
        put_u32(&mut a, 68, BPF_XDP);
        let prog = match bpf(BPF_PROG_LOAD, &mut a) {
            Ok(fd) => owned(fd),
            Err(e) => {
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                return Err(io::Error::other(format!(
                    "prog load: {e}\n{}",
                    String::from_utf8_lossy(&log[..end])
                )));
            }
        };

        // BPF_LINK_CREATE: prog_fd, target_ifindex, attach_type, flags.
        let mut a = [0u8; 128];
        put_u32(&mut a, 0, prog.as_raw_fd() as u32);
        put_u32(&mut a, 4, ifindex);
        put_u32(&mut a, 8, BPF_XDP);
        put_u32(
            &mut a,
            12,
            match mode {
                XdpMode::Native => XDP_FLAGS_DRV_MODE,
                XdpMode::Skb => XDP_FLAGS_SKB_MODE,
            },
        );
        let link = owned(bpf(BPF_LINK_CREATE, &mut a).map_err(|e| ctx("link create", e))?);
        Ok(Self { link, prog, map })
    }

    /// `XSKMAP[queue] = socket`.
    pub fn set_socket(&self, queue: u32, sock: BorrowedFd<'_>) -> io::Result<()> {
        let key = queue;
        let value = sock.as_raw_fd() as u32;
        // BPF_MAP_UPDATE_ELEM: map_fd, pad, key ptr, value ptr, flags.
        let mut a = [0u8; 128];
        put_u32(&mut a, 0, self.map.as_raw_fd() as u32);
        put_u64(&mut a, 8, &key as *const u32 as u64);
        put_u64(&mut a, 16, &value as *const u32 as u64);
        put_u64(&mut a, 24, 0);
        bpf(BPF_MAP_UPDATE_ELEM, &mut a).map_err(|e| ctx("xskmap update", e))?;
        Ok(())
    }
}

fn ctx(what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Size of `XdpMeta` (what the program writes).
pub const META_LEN: usize = size_of::<ebpf_filters_common::XdpMeta>();

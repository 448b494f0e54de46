//! Random differential test of the filter language against libpcap 1.10.3, in process.
//!
//! A seeded generator (`como_tests::exprgen`) draws expressions from the supported set, with
//! addresses, ports and tags taken from the traces. For each expression and each trace of
//! a representative set of traces, libpcap (`pcap_compile` with optimisation on a handle
//! opened on that trace file, as tcpdump does, then
//! `pcap_offline_filter` per packet with the real captured and wire lengths) is the oracle:
//! - libpcap compiles the expression ⇔ `ebpf_filters::compile` does (an `Unsupported` error is
//!   a mismatch too: the generator only emits supported constructs);
//! - when both compile, every packet gets the same verdict.
//!
//!
//! Two documented deviations are accepted, and counted:
//! - "expression rejects all packets": libpcap's optimizer refuses some filters it proves to
//!   match nothing, and our own check proves a different set. Where one side refuses so and
//!   the other compiles, the compiled side must match no packet of the trace.
//! - libpcap 1.10.3 on 802.11 links (IEEE802_11, IEEE802_11_RADIO) keeps the 802.11 header
//!   length in a scratch register that the code of a relation (`len != 117 and ether
//!   broadcast`) reuses, so predicates after it read the frame at a wrong offset: a libpcap
//!   bug we do not copy. Verdicts of expressions with a relation on those links are skipped.
//!   The same reuse hits `geneve`: its inner-header offsets live in scratch registers that a
//!   relation's code also writes, so on packets that are not Geneve what follows `geneve`
//!   reads a relation's leftover value (`link[30] & 3 != 11 and geneve or ip`: tcpdump 0 on
//!   nDPI/sctp.cap, where `ip` alone is 4). Expressions with `geneve` and a relation are
//!   skipped too.
//!
//! - Truncated packets: where a disagreement is on a packet whose verdict depends on where its
//!   captured bytes end (libpcap's program reaches a load past them, or ours changes when the
//!   packet is zero-padded to its wire length), it is accepted and counted. Which loads
//!   libpcap's program performs on a short packet follows from its optimizer's analysis of the
//!   block graph; ours decides from the bytes the packet has (see ebpf-filters' docs). A
//!   disagreement on a packet whose verdict does not depend on truncation still fails.
//!
//! libpcap's own verdict is not always defined: its user-space `bpf_filter` leaves the scratch
//! memory uninitialised and some 1.10.3 programs read it (everything after `geneve` on packets
//! that are not Geneve). The test replays each libpcap program with a small BPF tracer (checked
//! against `pcap_offline_filter` on every packet) and skips those verdicts, counting them.
//!
//! `COMO_RANDOM_FILTERS` sets the number of expressions (default 2000), `COMO_RANDOM_SEED`
//! the seed (default fixed), `COMO_RANDOM_EXPR` checks one given expression instead (every
//! mismatching packet is printed: the way to reproduce and minimise). A failure prints the
//! seed, the number of expressions per mismatch class and the first mismatch of each of the
//! first 50 failing expressions (expression, trace, 1-based packet index, both verdicts).

use std::collections::BTreeMap;
use std::net::IpAddr;

use como_packet::LinkType;
use como_tests::exprgen::{ExprGen, Seen};
use como_tests::{load_trace, OwnedPacket};
use ebpf_filters::{compile, ErrorKind};

/// libpcap through its C API (`-lpcap`, Debian's libpcap-dev).
mod libpcap {
    use std::ffi::{c_char, c_int, c_long, c_uint, CStr, CString};
    use std::sync::Mutex;

    #[repr(C)]
    struct BpfInsn {
        code: u16,
        jt: u8,
        jf: u8,
        k: u32,
    }

    #[repr(C)]
    struct BpfProgram {
        bf_len: c_uint,
        bf_insns: *mut BpfInsn,
    }

    /// `struct timeval` on Linux (64-bit and 32-bit: two `long`s).
    #[repr(C)]
    struct Timeval {
        tv_sec: c_long,
        tv_usec: c_long,
    }

    #[repr(C)]
    struct PktHdr {
        ts: Timeval,
        caplen: u32,
        len: u32,
    }

    #[repr(C)]
    struct PcapT {
        _private: [u8; 0],
    }

    #[link(name = "pcap")]
    extern "C" {
        fn pcap_open_dead(linktype: c_int, snaplen: c_int) -> *mut PcapT;
        fn pcap_open_offline(fname: *const c_char, errbuf: *mut c_char) -> *mut PcapT;
        fn pcap_compile(
            p: *mut PcapT,
            fp: *mut BpfProgram,
            s: *const c_char,
            optimize: c_int,
            netmask: u32,
        ) -> c_int;
        fn pcap_offline_filter(fp: *const BpfProgram, h: *const PktHdr, pkt: *const u8) -> c_int;
        fn pcap_freecode(fp: *mut BpfProgram);
        fn pcap_close(p: *mut PcapT);
        fn pcap_geterr(p: *mut PcapT) -> *mut c_char;
    }

    /// libpcap's parser has global state in old versions: one compile at a time.
    static COMPILE: Mutex<()> = Mutex::new(());

    /// A pcap handle, "dead" (a link type only) or opened on a trace file: what `pcap_compile`
    /// needs. A handle on the file compiles exactly as tcpdump reading it does (on DLT_NULL
    /// the address family values depend on the file's byte order, which a dead handle lacks).
    pub struct Handle(*mut PcapT);

    impl Handle {
        /// `pcap_open_offline(path)`: the error text on failure.
        pub fn open_file(path: &std::path::Path) -> Result<Self, String> {
            let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
            let mut errbuf = [0 as c_char; 512];
            // SAFETY: `c` is NUL-terminated and `errbuf` has PCAP_ERRBUF_SIZE (256) bytes or more.
            let p = unsafe { pcap_open_offline(c.as_ptr(), errbuf.as_mut_ptr()) };
            if p.is_null() {
                // SAFETY: on failure libpcap wrote a NUL-terminated message into errbuf.
                let msg = unsafe { CStr::from_ptr(errbuf.as_ptr()) };
                return Err(msg.to_string_lossy().into_owned());
            }
            Ok(Self(p))
        }

        /// `pcap_open_dead(linktype, 262144)`.
        pub fn open(linktype: u32) -> Option<Self> {
            let lt = c_int::try_from(linktype).ok()?;
            // SAFETY: pcap_open_dead takes plain integers and returns an owned handle or NULL.
            let p = unsafe { pcap_open_dead(lt, 262_144) };
            (!p.is_null()).then_some(Self(p))
        }

        /// `pcap_compile(expr, optimize = 1, PCAP_NETMASK_UNKNOWN)`; the error text on failure.
        pub fn compile(&self, expr: &str) -> Result<Program, String> {
            let c = CString::new(expr).map_err(|e| e.to_string())?;
            let mut prog = BpfProgram {
                bf_len: 0,
                bf_insns: std::ptr::null_mut(),
            };
            let _guard = COMPILE.lock().unwrap_or_else(|e| e.into_inner());
            // SAFETY: self.0 is a live handle, `prog` a writable bpf_program, `c` a NUL-terminated
            // string that outlives the call.
            let rc = unsafe { pcap_compile(self.0, &mut prog, c.as_ptr(), 1, 0xffff_ffff) };
            if rc != 0 {
                // SAFETY: pcap_geterr returns the handle's NUL-terminated error buffer, valid until
                // the next call on the handle; it is copied at once.
                let msg = unsafe { CStr::from_ptr(pcap_geterr(self.0)) };
                return Err(msg.to_string_lossy().into_owned());
            }
            Ok(Program(prog))
        }
    }

    impl Drop for Handle {
        fn drop(&mut self) {
            // SAFETY: the handle came from pcap_open_dead/pcap_open_offline and is closed once.
            unsafe { pcap_close(self.0) };
        }
    }

    /// A compiled BPF program.
    pub struct Program(BpfProgram);

    /// What the compiled program does with one packet, by [`Program::trace`].
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Run {
        /// Accepts (`true`) or rejects the packet, on a path that reads only defined state.
        Verdict(bool),
        /// The path reads a scratch-memory word `M[k]` no instruction stored before: libpcap's
        /// `bpf_filter` leaves its `mem[]` uninitialised, so its verdict is stack garbage
        /// (e.g. libpcap 1.10.3's code after `geneve` on packets that are not Geneve).
        Undefined(u32),
        /// An instruction this decoder does not know (the caller reports it).
        Unknown(u16),
        /// The path loads a byte past the captured bytes: BPF rejects the packet there.
        OutOfBounds,
    }

    impl Program {
        /// The instructions libpcap compiled.
        fn insns(&self) -> &[BpfInsn] {
            let len = usize::try_from(self.0.bf_len).unwrap_or(0);
            if self.0.bf_insns.is_null() || len == 0 {
                return &[];
            }
            // SAFETY: pcap_compile set bf_insns to an array of bf_len instructions, owned by this
            // Program until pcap_freecode in Drop; the slice borrows self.
            unsafe { std::slice::from_raw_parts(self.0.bf_insns, len) }
        }

        /// Runs the program on one packet the way libpcap 1.10.3's `bpf_filter` does (same
        /// bounds checks: a load past the captured bytes rejects the packet; division by zero
        /// rejects; shifts by X use the low 5 bits, like x86), and says whether the path read
        /// scratch memory that was never written. The caller checks that the verdict equals
        /// `pcap_offline_filter`'s whenever it is defined.
        pub fn trace(&self, data: &[u8], wire_len: u32) -> Run {
            let insns = self.insns();
            let load = |k: u64, size: usize| -> Option<u32> {
                let k = usize::try_from(k).ok()?;
                let bytes = data.get(k..k.checked_add(size)?)?;
                Some(bytes.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b)))
            };
            let (mut a, mut x) = (0u32, 0u32);
            let mut mem = [0u32; 16];
            let mut init = [false; 16];
            let mut pc = 0usize;
            let mut steps = 0u32;
            while let Some(i) = insns.get(pc) {
                steps += 1;
                if steps > 100_000 {
                    return Run::Unknown(0xfffe);
                }
                let code = i.code;
                let k = i.k;
                pc += 1;
                let size = match code & 0x18 {
                    0x00 => 4,
                    0x08 => 2,
                    _ => 1,
                };
                match code & 0x07 {
                    // LD
                    0x00 => {
                        a = match code & 0xe0 {
                            0x00 => k,
                            0x20 => match load(u64::from(k), size) {
                                Some(v) => v,
                                None => return Run::OutOfBounds,
                            },
                            0x40 => match load(u64::from(x) + u64::from(k), size) {
                                Some(v) => v,
                                None => return Run::OutOfBounds,
                            },
                            0x60 => {
                                let m = usize::try_from(k).unwrap_or(usize::MAX);
                                match (mem.get(m), init.get(m)) {
                                    (Some(&v), Some(true)) => v,
                                    _ => return Run::Undefined(k),
                                }
                            }
                            0x80 => wire_len,
                            _ => return Run::Unknown(code),
                        };
                    }
                    // LDX
                    0x01 => {
                        x = match code & 0xe0 {
                            0x00 => k,
                            0x60 => {
                                let m = usize::try_from(k).unwrap_or(usize::MAX);
                                match (mem.get(m), init.get(m)) {
                                    (Some(&v), Some(true)) => v,
                                    _ => return Run::Undefined(k),
                                }
                            }
                            0x80 => wire_len,
                            0xa0 => match load(u64::from(k), 1) {
                                Some(v) => (v & 0xf) << 2,
                                None => return Run::OutOfBounds,
                            },
                            _ => return Run::Unknown(code),
                        };
                    }
                    // ST, STX
                    0x02 | 0x03 => {
                        let m = usize::try_from(k).unwrap_or(usize::MAX);
                        let v = if code & 0x07 == 0x02 { a } else { x };
                        match (mem.get_mut(m), init.get_mut(m)) {
                            (Some(slot), Some(flag)) => {
                                *slot = v;
                                *flag = true;
                            }
                            _ => return Run::Unknown(code),
                        }
                    }
                    // ALU
                    0x04 => {
                        let b = if code & 0x08 != 0 { x } else { k };
                        a = match code & 0xf0 {
                            0x00 => a.wrapping_add(b),
                            0x10 => a.wrapping_sub(b),
                            0x20 => a.wrapping_mul(b),
                            0x30 if b == 0 => return Run::Verdict(false),
                            0x30 => a / b,
                            0x40 => a | b,
                            0x50 => a & b,
                            0x60 => a.wrapping_shl(b),
                            0x70 => a.wrapping_shr(b),
                            0x80 => a.wrapping_neg(),
                            0x90 if b == 0 => return Run::Verdict(false),
                            0x90 => a % b,
                            0xa0 => a ^ b,
                            _ => return Run::Unknown(code),
                        };
                    }
                    // JMP
                    0x05 => {
                        let b = if code & 0x08 != 0 { x } else { k };
                        let taken = match code & 0xf0 {
                            0x00 => {
                                // `ja` is signed: `ip6 protochain` loops back.
                                let to = pc.checked_add_signed(k as i32 as isize);
                                pc = to.unwrap_or(usize::MAX);
                                continue;
                            }
                            0x10 => a == b,
                            0x20 => a > b,
                            0x30 => a >= b,
                            0x40 => a & b != 0,
                            _ => return Run::Unknown(code),
                        };
                        pc += usize::from(if taken { i.jt } else { i.jf });
                    }
                    // RET
                    0x06 => {
                        let v = match code & 0x18 {
                            0x00 => k,
                            0x10 => a,
                            _ => x,
                        };
                        return Run::Verdict(v != 0);
                    }
                    // MISC: TAX, TXA
                    _ => {
                        if code & 0xf8 == 0x00 {
                            x = a;
                        } else {
                            a = x;
                        }
                    }
                }
            }
            // Fell off the end (pcap_compile never emits that).
            Run::Unknown(0xffff)
        }

        /// `pcap_offline_filter` with caplen = `data.len()` and len = `wire_len`.
        pub fn matches(&self, data: &[u8], wire_len: u32) -> bool {
            let caplen = u32::try_from(data.len()).unwrap_or(u32::MAX);
            let hdr = PktHdr {
                ts: Timeval {
                    tv_sec: 0,
                    tv_usec: 0,
                },
                caplen,
                len: wire_len,
            };
            // SAFETY: the program was filled by pcap_compile; `hdr` is a valid header whose caplen
            // is the length of `data`, so the BPF interpreter reads only inside `data`.
            unsafe { pcap_offline_filter(&self.0, &hdr, data.as_ptr()) != 0 }
        }
    }

    impl Drop for Program {
        fn drop(&mut self) {
            // SAFETY: the program was filled by pcap_compile and is freed once.
            unsafe { pcap_freecode(&mut self.0) };
        }
    }
}

/// The traces compared (relative to `tests/data/traces`), covering every link type and
/// encapsulation the filters serve. Each is capped at [`MAX_PACKETS`] packets.
const TRACES: &[&str] = &[
    // Ethernet: plain, VLAN/QinQ, MPLS, PPPoE, IPv6 extension headers, fragments, tunnels,
    // truncated snaplen, multicast, the protocol zoo.
    "libtrace/10_mpls_ip.pcap",
    "libtrace/qinq.pcap",
    "tcpdump/802.1ad_QinQ.pcap",
    "zeek/vlan-qinqinq.pcap",
    "zeek/mpls-in-vlan.pcap",
    "zeek/icmp_dot1q.pcap",
    "zeek/q-in-q.pcap",
    "suricata-verify/bug-4810/pppoe-session-http.pcap",
    "libpcap/tests/filter/pppoes.pcap",
    "nDPI/dns.pcap",
    "libpcap/tests/filter/ipv6_ext_headers.pcap",
    "tcpdump/ipv6-routing-header.pcap",
    "zeek/ipv6-fragmented-dns.pcap",
    "zeek/ipv4/fragmented-4.pcap",
    "suricata-verify/defrag/bug-6887-defrag-eth-vlan-ipv6-tcp/frag-eth-vlan-ipv6-tcp.pcap",
    "libpcap/tests/filter/geneve.pcap",
    "zeek/tunnels/gre-sample.pcap",
    "zeek/tunnels/4in6.pcap",
    "zeek/tunnels/6in4.pcap",
    "zeek/tcp/truncated-header.pcap",
    "zeek/trunc/icmp-header-trunc.pcap",
    "zeek/trunc/ip6-trunc.pcap",
    "zeek/tcp/timestamp.pcap",
    "nDPI/sctp.cap",
    "libpcap/tests/filter/AH-IPcomp-IPv6.pcap",
    "libtrace/100_packets.pcapng",
    "zeek/icmp/icmp6-nd-options.pcap",
    "zeek/dns/mdns.pcap",
    "tcpdump/igmpv3-queries.pcap",
    "libpcap/tests/filter/vrrp.pcap",
    "libpcap/tests/filter/carp.pcap",
    "libpcap/tests/filter/pim-packet-assortment.pcap",
    "libpcap/tests/filter/rarp_req_reply.pcapng",
    "libpcap/tests/filter/gateway_or_not.pcap",
    "zeek/pbb.pcap",
    "zeek/snap-arp.pcapng",
    "nDPI/teams.pcap",
    // Linux cooked captures.
    "libtrace/sll.pcap",
    "zeek/linuxsll-arp.pcap",
    "tcpdump/forces1.pcap",
    "zeek/linux_dlt_sll2.pcap",
    "suricata-verify/decode-sll2-01/input.pcap",
    // Raw IP: RAW, IPV4, IPV6.
    "zeek/tcp/payload-syn.pcap",
    "zeek/dns/ech.pcap",
    "tcpdump/LINKTYPE_RAW_ipv4.pcap",
    "tcpdump/LINKTYPE_IPV4.pcap",
    "suricata-verify/defrag/bug-6887-defrag-ipv4-tcp-syn/frag-ip-tcp-syn.pcap",
    "zeek/icmp/icmp6-mldv2.pcap",
    "suricata-verify/defrag/bug-6887-defrag-ipv6-tcp/frag-ip-tcp.pcap",
    // BSD loopback (NULL), PPP, Cisco HDLC.
    "tcpdump/quic_handshake_truncated.pcap",
    "gopacket/pcap/test_loopback.pcap",
    "zeek/udp-multiple-source-ports.pcap",
    "tcpdump/mpls-traceroute.pcap",
    "zeek/ppp/quic-interop-retry.pcap",
    "suricata-verify/defrag/bug-6887-defrag-ppp-ipv4-tcp-syn/frag-ppp-ip-tcp-syn.pcap",
    "suricata-verify/decode-chdlc-01/hdlc-http_1tx.pcap",
    "tcpdump/hdlc_slarp.pcapng",
    // 802.11, with and without radiotap.
    "zeek/radiotap.pcap",
    "libtrace/10_packets_radiotap.pcap",
    "libpcap/tests/filter/wpa-Induction.pcap",
    "zeek/wlanmon.pcap",
];

/// At most this many packets of each trace (keeps the debug run short).
const MAX_PACKETS: usize = 400;

/// The default seed (any fixed value).
const DEFAULT_SEED: u64 = 0x00c0_0a11_2026_1126;

/// One trace of [`TRACES`]: its libpcap handle and its packets.
struct Entry {
    path: &'static str,
    link: LinkType,
    handle: libpcap::Handle,
    packets: Vec<OwnedPacket>,
}

/// Every trace of [`TRACES`].
struct Corpus(Vec<Entry>);

fn load_corpus() -> Corpus {
    let mut entries = Vec::new();
    for &path in TRACES {
        let trace = load_trace(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let link = trace.link;
        let packets: Vec<OwnedPacket> = trace
            .packets
            .into_iter()
            .filter(|p| p.link == link)
            .take(MAX_PACKETS)
            .collect();
        assert!(!packets.is_empty(), "{path}: no packet");
        let handle = libpcap::Handle::open_file(&como_tests::traces_dir().join(path))
            .unwrap_or_else(|e| panic!("libpcap cannot open {path}: {e}"));
        entries.push(Entry {
            path,
            link,
            handle,
            packets,
        });
    }
    Corpus(entries)
}

/// Addresses, ports, MACs, tags and lengths found in the corpus.
fn harvest(corpus: &Corpus) -> Seen {
    let mut seen = Seen::default();
    for entry in &corpus.0 {
        for p in &entry.packets {
            let view = p.view();
            let parsed = view.parse();
            for ip in [parsed.src_ip(), parsed.dst_ip()].into_iter().flatten() {
                match ip {
                    IpAddr::V4(a) => seen.v4.push(a),
                    IpAddr::V6(a) => seen.v6.push(a),
                }
            }
            seen.ports.extend(parsed.src_port());
            seen.ports.extend(parsed.dst_port());
            if let Some((src, dst)) = parsed.ether_addrs() {
                seen.macs.push(*src);
                seen.macs.push(*dst);
            }
            let layers = view.layers();
            seen.vlans.extend(layers.vlan_ids());
            seen.mpls.extend(layers.mpls_labels());
            if p.link == LinkType::Ethernet && p.data.get(12..14) == Some(&[0x88, 0x64][..]) {
                if let Some(&[a, b]) = p.data.get(16..18) {
                    seen.pppoe.push(u16::from_be_bytes([a, b]));
                }
            }
            seen.lens.push(p.wire_len);
        }
    }
    seen.dedup();
    seen
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

/// One disagreement between libpcap and us.
struct Mismatch {
    expr: String,
    trace: &'static str,
    what: String,
}

impl Mismatch {
    /// A coarse class, for the summary.
    fn class(&self) -> &'static str {
        let w = &self.what;
        if w.contains("decoder") {
            "the test's BPF decoder disagrees with pcap_offline_filter"
        } else if w.contains("libpcap refuses") && w.contains("rejects all packets") {
            "compile: libpcap 'expression rejects all packets', we compile"
        } else if w.contains("libpcap refuses") {
            "compile: libpcap refuses (other), we compile"
        } else if w.contains("we refuse") && w.contains("rejects all packets") {
            "compile: we say 'rejects all packets', libpcap compiles"
        } else if w.contains("we refuse") {
            "compile: we refuse (other), libpcap compiles"
        } else if w.contains("Unsupported") {
            "compile: both refuse, ours as Unsupported"
        } else if w.contains("libpcap true, ours false") {
            "packet: libpcap matches, we do not"
        } else {
            "packet: we match, libpcap does not"
        }
    }
}

/// The operands of `expr` at parenthesis depth 0, split at `and`/`or`/`&&`/`||`:
/// `(operand, operator before it)`.
fn split_top(expr: &str) -> Vec<(String, String)> {
    let words: Vec<&str> = expr.split(' ').collect();
    let mut parts: Vec<(String, String)> = Vec::new();
    let (mut depth, mut cur, mut op) = (0i32, Vec::new(), String::new());
    for w in words {
        if depth == 0 && matches!(w, "and" | "or" | "&&" | "||") && !cur.is_empty() {
            parts.push((cur.join(" "), std::mem::take(&mut op)));
            cur.clear();
            op = w.to_owned();
            continue;
        }
        depth += w.matches(['(', '[']).count() as i32 - w.matches([')', ']']).count() as i32;
        cur.push(w);
    }
    if !cur.is_empty() {
        parts.push((cur.join(" "), op));
    }
    parts
}

/// The inside of `p` when one pair of parentheses encloses all of it.
fn unwrap_parens(p: &str) -> Option<&str> {
    let body = p.strip_prefix('(')?.strip_suffix(')')?;
    let mut depth = 0i32;
    for c in body.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
        if depth < 0 {
            return None;
        }
    }
    (depth == 0).then_some(body)
}

/// Smaller variants of `expr`: one top-level operand dropped, parentheses or a `not` removed,
/// or the same applied inside one parenthesised operand.
fn shrink_candidates(expr: &str, depth: u32) -> Vec<String> {
    let parts = split_top(expr);
    let join = |v: &[(String, String)]| -> String {
        v.iter()
            .enumerate()
            .map(|(i, (p, op))| {
                if i == 0 {
                    p.clone()
                } else {
                    format!("{op} {p}")
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut out = Vec::new();
    if parts.len() > 1 {
        for i in 0..parts.len() {
            let mut v = parts.clone();
            v.remove(i);
            if let Some(first) = v.first_mut() {
                first.1.clear();
            }
            out.push(join(&v));
        }
    }
    for (i, (p, _)) in parts.iter().enumerate() {
        let mut inner: Vec<String> = Vec::new();
        for prefix in ["not ", "!"] {
            if let Some(rest) = p.strip_prefix(prefix) {
                inner.push(rest.to_owned());
                if let Some(body) = unwrap_parens(rest).filter(|_| depth < 4) {
                    let shrunk = shrink_candidates(body, depth + 1);
                    inner.extend(shrunk.into_iter().map(|c| format!("{prefix}({c})")));
                }
            }
        }
        if let Some(body) = unwrap_parens(p) {
            inner.push(body.to_owned());
            if depth < 4 {
                inner.extend(
                    shrink_candidates(body, depth + 1)
                        .into_iter()
                        .map(|c| format!("({c})")),
                );
            }
        }
        for c in inner {
            let mut v = parts.clone();
            if let Some(slot) = v.get_mut(i) {
                slot.0 = c;
            }
            out.push(join(&v));
        }
    }
    out.sort_by_key(String::len);
    out.dedup();
    out
}

/// Greedily shrinks `m.expr` while the same class of mismatch remains on the same trace.
fn minimise(m: &Mismatch, corpus: &Corpus) -> String {
    let Some(entry) = corpus.0.iter().find(|e| e.path == m.trace) else {
        return m.expr.clone();
    };
    let class = m.class();
    let fails = |e: &str| {
        let mut out = Vec::new();
        compare(
            e,
            std::slice::from_ref(entry),
            &mut out,
            &mut Stats::default(),
        );
        out.iter().any(|x| x.class() == class)
    };
    let mut cur = m.expr.clone();
    let mut budget = 400;
    'outer: while budget > 0 {
        for c in shrink_candidates(&cur, 0) {
            budget -= 1;
            if budget == 0 {
                break 'outer;
            }
            if c.len() < cur.len() && fails(&c) {
                cur = c;
                continue 'outer;
            }
        }
        break;
    }
    cur
}

/// Counts of packet verdicts.
#[derive(Debug, Default)]
struct Stats {
    /// Compared with ours.
    compared: usize,
    /// Not compared: libpcap's verdict is undefined.
    undefined: usize,
    /// (expression, trace) pairs where one side proved "rejects all packets" and the other
    /// compiled and matched no packet: the documented deviation, accepted.
    rejects_all: usize,
    /// Verdicts not compared: libpcap's scratch-register reuse on 802.11 links and after
    /// `geneve` (see the module docs).
    wlan_register_bug: usize,
    /// Disagreements on packets whose verdict depends on where their captured bytes end
    /// (see [`truncation_dependent`]): accepted, counted.
    truncation: usize,
}

/// Whether a verdict on `p` depends on where its captured bytes end, on either side: libpcap's
/// program reached a load past them, or our verdict changes when the packet is captured whole
/// (its bytes zero-padded to the wire length). Which loads run on a short packet follows from
/// libpcap's optimizer (what it proves on each path of its block graph); ours decides from the
/// bytes the packet has. Such disagreements are the documented truncated-packet deviation.
fn truncation_dependent(
    theirs: &libpcap::Program,
    ours: &ebpf_filters::Filter,
    p: &OwnedPacket,
) -> bool {
    if matches!(theirs.trace(&p.data, p.wire_len), libpcap::Run::OutOfBounds) {
        return true;
    }
    let whole_len = usize::try_from(p.wire_len).unwrap_or(0).max(p.data.len());
    let mut whole = p.data.clone();
    whole.resize(whole_len.max(p.data.len() + 256), 0);
    let mut padded = p.clone();
    padded.data = whole;
    ours.matches(&padded.view()) != ours.matches(&p.view())
}

/// Whether `expr` holds a relation (`len`, `greater`, `less`, a comparison): on 802.11 links
/// libpcap 1.10.3 keeps the 802.11 header length in a scratch register that the code of a
/// relation reuses, so every predicate after it reads the frame at a wrong offset.
fn has_relation(expr: &str) -> bool {
    ["len", "greater", "less", "=", "<", ">"]
        .iter()
        .any(|w| expr.contains(w))
}

/// Compares one expression on every trace of the corpus; appends the disagreements and counts
/// the packets whose libpcap verdict is undefined (see [`libpcap::Run::Undefined`]).
fn compare(expr: &str, entries: &[Entry], out: &mut Vec<Mismatch>, stats: &mut Stats) {
    let mut ours_by_link: BTreeMap<u32, Result<ebpf_filters::Filter, ebpf_filters::FilterError>> =
        BTreeMap::new();
    for entry in entries {
        let link = entry.link;
        let theirs = entry.handle.compile(expr);
        let ours = ours_by_link
            .entry(link.to_linktype())
            .or_insert_with(|| compile(expr, link));
        let mut push = |what: String| {
            out.push(Mismatch {
                expr: expr.to_owned(),
                trace: entry.path,
                what,
            })
        };
        let (theirs, ours) = match (theirs, ours) {
            (Ok(t), Ok(o)) => (t, o),
            (Err(_), Err(e)) if e.kind != ErrorKind::Unsupported => continue,
            (Err(t), Err(e)) => {
                push(format!(
                    "both refuse, but ours says Unsupported: {e} (libpcap: {t})"
                ));
                continue;
            }
            // Documented deviation: libpcap's optimizer refuses some filters it proves match
            // nothing ("expression rejects all packets"); our own check finds a different set.
            // Where one side refuses so and the other compiles, the compiled side must match no
            // packet at all: the same answer, given as a count of 0 instead of an error.
            (Err(t), Ok(o)) if t.contains("rejects all packets") => {
                if let Some(i) = entry.packets.iter().position(|p| o.matches(&p.view())) {
                    push(format!(
                        "libpcap refuses on {} ({t}), we compile and match packet {}",
                        link.name(),
                        i + 1
                    ));
                } else {
                    stats.rejects_all += 1;
                }
                continue;
            }
            (Ok(t), Err(e)) if e.message.contains("rejects all packets") => {
                if let Some(i) = entry.packets.iter().position(|p| {
                    !matches!(t.trace(&p.data, p.wire_len), libpcap::Run::Undefined(_))
                        && t.matches(&p.data, p.wire_len)
                }) {
                    push(format!(
                        "libpcap compiles on {} and matches packet {}, we refuse: {e} ({:?})",
                        link.name(),
                        i + 1,
                        e.kind
                    ));
                } else {
                    stats.rejects_all += 1;
                }
                continue;
            }
            (Err(t), Ok(_)) => {
                push(format!(
                    "libpcap refuses on {} ({t}), we compile",
                    link.name()
                ));
                continue;
            }
            (Ok(_), Err(e)) => {
                push(format!(
                    "libpcap compiles on {}, we refuse: {e} ({:?})",
                    link.name(),
                    e.kind
                ));
                continue;
            }
        };
        let wlan = matches!(link, LinkType::Ieee80211 | LinkType::Ieee80211Radiotap);
        if (wlan || expr.contains("geneve")) && has_relation(expr) {
            stats.wlan_register_bug += entry.packets.len();
            continue;
        }
        for (i, p) in entry.packets.iter().enumerate() {
            let t = theirs.matches(&p.data, p.wire_len);
            match theirs.trace(&p.data, p.wire_len) {
                libpcap::Run::Undefined(_) => {
                    stats.undefined += 1;
                    continue;
                }
                libpcap::Run::Unknown(code) => {
                    push(format!(
                        "packet {}: BPF opcode {code:#x} unknown to the test's decoder",
                        i + 1
                    ));
                    continue;
                }
                libpcap::Run::OutOfBounds if t => {
                    push(format!(
                        "packet {}: the test's BPF decoder says out of bounds (reject), pcap_offline_filter true",
                        i + 1
                    ));
                    continue;
                }
                libpcap::Run::Verdict(v) if v != t => {
                    push(format!(
                        "packet {}: the test's BPF decoder says {v}, pcap_offline_filter {t}",
                        i + 1
                    ));
                    continue;
                }
                libpcap::Run::Verdict(_) | libpcap::Run::OutOfBounds => {}
            }
            let o = ours.matches(&p.view());
            stats.compared += 1;
            if t != o && truncation_dependent(&theirs, ours, p) {
                stats.truncation += 1;
                continue;
            }
            if t != o {
                push(format!("packet {} (1-based): libpcap {t}, ours {o}", i + 1));
            }
        }
    }
}

#[test]
fn random_expressions_agree_with_libpcap_per_packet() {
    let n = env_u64("COMO_RANDOM_FILTERS").unwrap_or(2000);
    let seed = env_u64("COMO_RANDOM_SEED").unwrap_or(DEFAULT_SEED);
    let corpus = load_corpus();
    let mut gen = ExprGen::new(seed, harvest(&corpus));
    // COMO_RANDOM_EXPR="..." checks that one expression instead (to reproduce and minimise).
    let exprs: Vec<String> = match std::env::var("COMO_RANDOM_EXPR") {
        Ok(e) => vec![e],
        Err(_) => (0..n).map(|_| gen.next_expr()).collect(),
    };
    // Per expression: its mismatches (only the first is shown, with the count).
    let mut bad: Vec<Vec<Mismatch>> = Vec::new();
    let mut total = 0usize;
    let mut stats = Stats::default();
    for expr in &exprs {
        let mut m = Vec::new();
        compare(expr, &corpus.0, &mut m, &mut stats);
        total += m.len();
        if !m.is_empty() {
            bad.push(m);
        }
    }
    eprintln!(
        "{} expressions (seed {seed:#x}), {} traces: {} packet verdicts compared, {} skipped (libpcap's path reads uninitialised scratch memory), {} skipped (libpcap's scratch-register reuse: 802.11, geneve), {} (expression, trace) pairs refused as 'rejects all packets' by one side and matching nothing on the other, {} disagreements on truncated packets (libpcap's optimizer decides which loads run)",
        exprs.len(),
        corpus.0.len(),
        stats.compared,
        stats.undefined,
        stats.wlan_register_bug,
        stats.rejects_all,
        stats.truncation
    );
    assert!(stats.compared > 0, "nothing compared");
    if !bad.is_empty() {
        let single = exprs.len() == 1;
        let shown: Vec<String> = bad
            .iter()
            .flat_map(|ms| {
                let more = if single || ms.len() == 1 {
                    String::new()
                } else {
                    format!(" (+{} more)", ms.len() - 1)
                };
                let take = if single { ms.len() } else { 1 };
                ms.iter()
                    .take(take)
                    .map(move |m| format!("  {:?} on {}: {}{more}", m.expr, m.trace, m.what))
            })
            .take(if single { usize::MAX } else { 50 })
            .collect();
        // Expressions per class.
        let mut classes: BTreeMap<&str, usize> = BTreeMap::new();
        for ms in &bad {
            let mut seen: Vec<&str> = ms.iter().map(Mismatch::class).collect();
            seen.sort_unstable();
            seen.dedup();
            for c in seen {
                *classes.entry(c).or_default() += 1;
            }
        }
        // Minimised forms of the first failing expressions.
        let minimised: Vec<String> = bad
            .iter()
            .take(if single { 1 } else { 15 })
            .filter_map(|ms| ms.first())
            .map(|m| {
                format!(
                    "  {:?} on {} ({})",
                    minimise(m, &corpus),
                    m.trace,
                    m.class()
                )
            })
            .collect();
        let classes: Vec<String> = classes
            .iter()
            .map(|(c, n)| format!("  {n:5} expressions: {c}"))
            .collect();
        panic!(
            "seed {seed:#x} (COMO_RANDOM_SEED), {} expressions: {total} mismatches in {} expressions\n{}\nthe first mismatch of each expression (up to 50):\n{}\nminimised (same class, same trace; check with COMO_RANDOM_EXPR):\n{}",
            exprs.len(),
            bad.len(),
            classes.join("\n"),
            shown.join("\n"),
            minimised.join("\n")
        );
    }
}

#[test]
fn generated_expressions_compile_with_libpcap_on_ethernet() {
    let corpus = load_corpus();
    let eth =
        libpcap::Handle::open(LinkType::Ethernet.to_linktype()).expect("pcap_open_dead(EN10MB)");
    let seen = harvest(&corpus);
    let refused: Vec<String> = (0..5u64)
        .flat_map(|s| {
            let mut gen = ExprGen::new(DEFAULT_SEED ^ s, seen.clone());
            (0..2000).map(move |_| gen.next_expr())
        })
        .filter_map(|e| eth.compile(&e).err().map(|err| (e, err)))
        // The optimiser's refusal of an always-false filter is a verdict, not a parse error.
        .filter(|(_, err)| err != "expression rejects all packets")
        .map(|(e, err)| format!("  {e:?}: {err}"))
        .collect();
    assert!(
        refused.is_empty(),
        "{} generated expressions refused by libpcap on Ethernet:\n{}",
        refused.len(),
        refused
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn the_oracle_sees_wire_length_and_refuses_bad_syntax() {
    let eth = libpcap::Handle::open(1).expect("pcap_open_dead(EN10MB)");
    let greater = eth.compile("greater 100").expect("greater 100 compiles");
    // 60 bytes captured of a 200-byte frame: libpcap's `len` is the wire length.
    assert!(greater.matches(&[0u8; 60], 200));
    assert!(!greater.matches(&[0u8; 60], 60));
    assert!(eth.compile("host").is_err());
    assert!(eth.compile("tcp port 99999").is_err());
}

#[test]
fn the_minimiser_proposes_smaller_expressions() {
    let c = shrink_candidates("tcp and (udp or not arp) or ip[0] & 1 = 1", 0);
    for want in [
        "tcp or ip[0] & 1 = 1",
        "(udp or not arp) or ip[0] & 1 = 1",
        "tcp and (udp or not arp)",
        "tcp and udp or not arp or ip[0] & 1 = 1",
        "tcp and (udp) or ip[0] & 1 = 1",
        "tcp and (udp or arp) or ip[0] & 1 = 1",
    ] {
        assert!(c.iter().any(|x| x == want), "{want:?} not in {c:?}");
    }
    assert!(c
        .iter()
        .all(|x| x.len() < "tcp and (udp or not arp) or ip[0] & 1 = 1".len()));
    assert_eq!(unwrap_parens("(a) and (b)"), None);
    assert_eq!(unwrap_parens("((a) and (b))"), Some("(a) and (b)"));
}

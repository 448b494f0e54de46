//! The XDP loader of CoMo-rs: the XDP program of `xdp-prog` (built by `build.rs` with the
//! nightly eBPF toolchain and embedded here), attach and detach, table installs with a
//! generation switch, the program's counters, and `BPF_PROG_TEST_RUN` for tests and benchmarks.
//!
//! The contract between this loader and the program is `ebpf_filters_common` (map names,
//! layouts, generations, [`XdpMeta`]); the tables come from `ebpf_filters::kernel::Tables`.
//!
//! # Installing tables
//! [`XdpProgram::install`] writes the *other* generation's entries (LPM trie, array fields,
//! term→rule tables, `COMO_GEN`), flips `COMO_CONFIG[0].gen`, waits a grace period
//! ([`GRACE`]: every run of the program that read the old generation has ended), then deletes
//! the old generation's LPM entries. No packet is ever classified under a half-written table.
//! Array and term-rule entries are written only where they differ from what that generation
//! held (a shadow copy is kept here), and array fields no term uses are not written at all
//! (the program does not look them up). `COMO_L3_ARRAY` (the L3-key lookups of IPv4, IPv6,
//! ARP and RARP frames, one array read instead of a trie walk in the program, each with the
//! fields its terms constrain: the only ones the program looks up next) is computed here from
//! the tables' L3 prefixes and field entries, and the `COMO_ADDR4_*` arrays (the IPv4
//! address lookups, two to four array reads instead of a trie walk) from their IPv4 address
//! prefixes (`addr4.rs`).
//!
//! # Attaching
//! [`XdpProgram::attach`] creates a BPF link (it goes away with the process, so a crashed run
//! leaves nothing behind). A program attached the old way (netlink, e.g. by `ip link set xdp`
//! or an older loader) makes the link fail with `EBUSY`: it is then removed and the attach
//! retried once. While the program is attached, the interface's RX VLAN tag stripping is off
//! (see `ifreq.rs`: a NIC that strips tags would hide them from the program, and `vlan`
//! filters would miss tagged frames that tcpdump counts); [`XdpProgram::detach`] turns it back
//! on. A run that crashes leaves it off (the kernel then untags in software: harmless).

mod addr4;
mod ifreq;
mod netlink;

pub use ifreq::mtu;

use std::{
    os::fd::{AsRawFd, BorrowedFd},
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use aya::{
    maps::{lpm_trie::Key, Array, LpmTrie, MapData, MapError, PerCpuArray, XskMap},
    programs::{xdp::XdpLinkId, ProgramError, TestRun, TestRunOptions, Xdp, XdpMode as AyaMode},
    Ebpf,
};
use ebpf_filters_common::{
    array_field_base, array_field_len, flags, stat, ARRAY_FIELDS_LEN, MAX_QUEUES, MAX_RULES,
    TERM_RULES_LEN,
};
use ebpf_filters_common::{
    l3_class, l3_key, L3Slot, L3_CLASSES, L3_KEY_BITS, LPM_ROOT_PREFIX, MAX_TERMS, MAX_VLAN,
};
use ebpf_filters_common::{ADDR4_CHUNKS, ADDR4_CLASSES, ADDR4_TOP_LEN};

use addr4::Addr4;
pub use ebpf_filters_common::{field, Config, GenConfig, LpmData, Stats, Terms, XdpMeta};

/// A native attach refused with `ERANGE` (the driver's answer to an MTU that needs
/// multi-buffer frames) as [`XdpError::MtuTooLarge`]; other errors as they are.
fn frame_too_long(iface: &str, mode: XdpMode, e: XdpError) -> XdpError {
    match &e {
        XdpError::Program(ProgramError::SyscallError(s))
            if mode == XdpMode::Native && s.io_error.raw_os_error() == Some(libc::ERANGE) =>
        {
            XdpError::MtuTooLarge {
                iface: iface.to_owned(),
                mtu: ifreq::mtu(iface).unwrap_or(0),
            }
        }
        _ => e,
    }
}

/// Turns off the RX VLAN tag stripping of `iface` if it is on (see the crate docs); whether
/// it was turned off (and is to be turned on again at detach).
fn keep_vlan_tags(iface: &str) -> bool {
    match ifreq::rx_vlan_stripping(iface) {
        Ok(true) => match ifreq::set_rx_vlan_stripping(iface, false) {
            Ok(()) => {
                tracing::info!(
                    "{iface}: RX VLAN tag stripping off while attached (vlan filters see the tags, as tcpdump does)"
                );
                true
            }
            Err(e) => {
                tracing::warn!(
                    "{iface}: RX VLAN tag stripping is on and cannot be turned off ({e}): tagged frames may reach the XDP program without their tag, and vlan filters miss them"
                );
                false
            }
        },
        Ok(false) => false,
        Err(e) => {
            tracing::debug!("{iface}: RX VLAN tag stripping unknown: {e}");
            false
        }
    }
}

/// The XDP object built from `xdp-prog` (see `build.rs`).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/como-xdp.o"));

/// Name of the program in the object.
const PROGRAM: &str = "como_xdp";

/// How long [`XdpProgram::install`] waits after the generation flip before it reuses the old
/// generation: far longer than one run of the program (microseconds), which is all the time a
/// packet can spend classified under the old generation.
pub const GRACE: Duration = Duration::from_millis(10);

/// The longest frame [`XdpProgram::test_run`] takes: what fits in one page after the XDP
/// headroom (256) and the skb shared info (320 on x86-64). A longer test frame would be
/// split into fragments, whose bytes the program does not read (fields there are absent), so
/// the comparison with the userspace reference is made on linear frames only.
pub const MAX_TEST_FRAME: usize = 4096 - 256 - 320;

/// Size of the metadata the program writes in front of a packet.
pub const META_LEN: usize = core::mem::size_of::<XdpMeta>();

/// What can go wrong loading, attaching or feeding the XDP program.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    /// The embedded object could not be loaded (not root, no BPF, or the verifier refused it).
    #[error("loading the XDP object failed: {0}")]
    Load(#[source] aya::EbpfError),
    /// The embedded object lacks the program or one of the contract's maps.
    #[error("the XDP object has no {0}")]
    Missing(&'static str),
    /// A map of the object has not the contract's type.
    #[error("map {name}: {source}")]
    Map {
        /// The map.
        name: &'static str,
        /// What aya said.
        #[source]
        source: MapError,
    },
    /// The kernel refused the program, an attach, a detach or a test run.
    #[error("XDP program: {}", chain(.0))]
    Program(#[from] ProgramError),
    /// The interface does not exist (in this thread's network namespace).
    #[error("no interface named {0:?}")]
    UnknownInterface(String),
    /// A netlink request (removing a leftover program) failed.
    #[error("netlink request on interface index {ifindex} failed: {source}")]
    Netlink {
        /// The interface.
        ifindex: u32,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A test-run input shorter than an Ethernet header (the kernel refuses it).
    #[error("a test run needs at least 14 bytes of packet, got {0}")]
    ShortInput(usize),
    /// A test-run input longer than [`MAX_TEST_FRAME`].
    #[error("a test run takes at most {MAX_TEST_FRAME} bytes of packet, got {0}")]
    LongInput(usize),
    /// Tables whose parts do not have the contract's sizes.
    #[error("tables do not fit the contract: {0}")]
    BadTables(String),
    /// Pinning the program failed.
    #[error("pinning the program failed: {0}")]
    Pin(String),
    /// A queue index past the XSK map.
    #[error("queue {0} is past the XSK map ({MAX_QUEUES} entries)")]
    Queue(u32),
    /// The driver refuses native XDP for the interface's MTU (`ERANGE`): frames that long need
    /// multi-buffer XDP, which CoMo's program handles but this driver does not in native mode.
    #[error(
        "native XDP refused on {iface}: its MTU {mtu} needs multi-buffer XDP frames, which the driver does not support in native mode; use mode = \"skb\" (or \"auto\"), or lower the MTU (to about 3500 bytes: one page per frame)"
    )]
    MtuTooLarge {
        /// The interface.
        iface: String,
        /// Its MTU (0: unknown).
        mtu: u32,
    },
}

/// An error and its sources, `: `-separated (aya's syscall errors keep the errno in the
/// source).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        // aya's syscall errors print their source themselves: not twice.
        let text = c.to_string();
        if !s.ends_with(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = c.source();
    }
    s
}

/// Where the program runs on an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpMode {
    /// In the driver (native XDP).
    Native,
    /// In the generic path after the skb is built (works everywhere, slower).
    Skb,
    /// Native when the driver supports it, else skb.
    Auto,
}

/// The program's counters summed over the CPUs (see `ebpf_filters_common::stat`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XdpStats {
    /// Packets the program saw.
    pub seen: u64,
    /// Packets some rule matched.
    pub matched: u64,
    /// Matched packets redirected to an AF_XDP socket.
    pub redirected: u64,
    /// Matched packets whose redirect failed (no socket on their queue).
    pub redirect_failed: u64,
    /// Packets passed to the kernel stack.
    pub passed: u64,
    /// Unmatched packets dropped.
    pub dropped: u64,
    /// Packets classified as uncertain (a used field past the packet end).
    pub parse_errors: u64,
    /// Wire bytes of the matched packets.
    pub matched_bytes: u64,
    /// Packets each rule matched.
    pub per_rule: [u64; MAX_RULES],
}

/// The parts of one generation of kernel tables, generation 0 indexing (what
/// `ebpf_filters::kernel::Tables` provides; public so tests can hand-build tables).
#[derive(Clone, Copy, Debug)]
pub struct TableParts<'a> {
    /// `COMO_GEN` entry.
    pub gen: GenConfig,
    /// LPM entries: prefix length (including the 16 bits of generation and field), data (its
    /// generation byte is rewritten), terms.
    pub lpm: &'a [(u32, LpmData, Terms)],
    /// `ARRAY_FIELDS_LEN` array-field entries.
    pub array: &'a [Terms],
    /// `TERM_RULES_LEN` term-byte → rules entries.
    pub term_rules: &'a [u64],
}

/// The contract's maps, with what this loader knows they hold.
struct Maps {
    config: Array<MapData, Config>,
    gens: Array<MapData, GenConfig>,
    lpm: LpmTrie<MapData, LpmData, Terms>,
    array: Array<MapData, Terms>,
    term_rules: Array<MapData, u64>,
    l3_array: Array<MapData, L3Slot>,
    addr4_top: Array<MapData, u32>,
    addr4_chunks: Array<MapData, u32>,
    addr4_classes: Array<MapData, Terms>,
    stats: PerCpuArray<MapData, Stats>,
    xsks: XskMap<MapData>,
    /// What `COMO_CONFIG[0]` holds.
    cfg: Config,
    /// What each generation's part of `COMO_ARRAY` holds.
    shadow_array: [Vec<Terms>; 2],
    /// What each generation's part of `COMO_TERM_RULES` holds.
    shadow_rules: [Vec<u64>; 2],
    /// What each generation's part of `COMO_L3_ARRAY` holds.
    shadow_l3: [Vec<L3Slot>; 2],
    /// What each generation's part of the `COMO_ADDR4_*` arrays holds.
    shadow_addr4: [Addr4; 2],
    /// The LPM keys each generation holds.
    lpm_keys: [Vec<Key<LpmData>>; 2],
}

/// Where the program is attached.
struct Attachment {
    link: XdpLinkId,
    iface: String,
    mode: XdpMode,
    /// RX VLAN stripping was on and turned off at attach: turn it on again at detach.
    restore_rxvlan: bool,
}

/// The loaded XDP program and its maps.
pub struct XdpProgram {
    ebpf: Ebpf,
    maps: Mutex<Maps>,
    attached: Option<Attachment>,
}

impl std::fmt::Debug for XdpProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpProgram")
            .field(
                "attached",
                &self.attached.as_ref().map(|a| (&a.iface, a.mode)),
            )
            .finish_non_exhaustive()
    }
}

/// Takes map `name` out of `ebpf` as type `T`.
fn take<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, XdpError>
where
    T: TryFrom<aya::maps::Map, Error = MapError>,
{
    let map = ebpf.take_map(name).ok_or(XdpError::Missing(name))?;
    T::try_from(map).map_err(|source| XdpError::Map { name, source })
}

/// Wraps a map error with the map's name.
fn map_err(name: &'static str) -> impl Fn(MapError) -> XdpError {
    move |source| XdpError::Map { name, source }
}

impl XdpProgram {
    /// Loads the embedded program into the kernel (root or CAP_BPF + CAP_NET_ADMIN), not
    /// attached to any interface, with empty tables (generation 0, no rule: every packet
    /// passes).
    pub fn load() -> Result<Self, XdpError> {
        let mut ebpf = Ebpf::load(OBJECT).map_err(XdpError::Load)?;
        let prog: &mut Xdp = ebpf
            .program_mut(PROGRAM)
            .ok_or(XdpError::Missing("program como_xdp"))?
            .try_into()?;
        prog.load()?;
        let maps = Maps {
            config: take(&mut ebpf, "COMO_CONFIG")?,
            gens: take(&mut ebpf, "COMO_GEN")?,
            lpm: take(&mut ebpf, "COMO_LPM")?,
            array: take(&mut ebpf, "COMO_ARRAY")?,
            term_rules: take(&mut ebpf, "COMO_TERM_RULES")?,
            l3_array: take(&mut ebpf, "COMO_L3_ARRAY")?,
            addr4_top: take(&mut ebpf, "COMO_ADDR4_TOP")?,
            addr4_chunks: take(&mut ebpf, "COMO_ADDR4_CHUNKS")?,
            addr4_classes: take(&mut ebpf, "COMO_ADDR4_CLASSES")?,
            stats: take(&mut ebpf, "COMO_STATS")?,
            xsks: take(&mut ebpf, "COMO_XSKS")?,
            cfg: Config::default(),
            shadow_array: [
                vec![Terms::NONE; ARRAY_FIELDS_LEN as usize],
                vec![Terms::NONE; ARRAY_FIELDS_LEN as usize],
            ],
            shadow_rules: [
                vec![0; TERM_RULES_LEN as usize],
                vec![0; TERM_RULES_LEN as usize],
            ],
            shadow_l3: [
                vec![L3Slot::default(); L3_CLASSES as usize],
                vec![L3Slot::default(); L3_CLASSES as usize],
            ],
            shadow_addr4: [addr4::build(&[], 0), addr4::build(&[], 0)],
            lpm_keys: [Vec::new(), Vec::new()],
        };
        Ok(Self {
            ebpf,
            maps: Mutex::new(maps),
            attached: None,
        })
    }

    fn maps(&self) -> MutexGuard<'_, Maps> {
        // A panic while holding the lock leaves the maps as consistent as the kernel has them.
        self.maps.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn prog(&self) -> Result<&Xdp, XdpError> {
        Ok(self
            .ebpf
            .program(PROGRAM)
            .ok_or(XdpError::Missing("program como_xdp"))?
            .try_into()?)
    }

    fn prog_mut(&mut self) -> Result<&mut Xdp, XdpError> {
        Ok(self
            .ebpf
            .program_mut(PROGRAM)
            .ok_or(XdpError::Missing("program como_xdp"))?
            .try_into()?)
    }

    /// The kernel's id of the loaded program (what `ip link` shows as `prog/xdp id N`).
    pub fn id(&self) -> Result<u32, XdpError> {
        Ok(self.prog()?.info()?.id())
    }

    /// Attaches the program to `iface` (in the calling thread's network namespace), replacing
    /// a program attached there the old way (netlink) by a run that did not detach. Detaches
    /// first from where it was attached before.
    pub fn attach(&mut self, iface: &str, mode: XdpMode) -> Result<XdpMode, XdpError> {
        self.detach()?;
        let ifindex =
            netlink::if_index(iface).ok_or_else(|| XdpError::UnknownInterface(iface.to_owned()))?;
        let modes: &[XdpMode] = match mode {
            XdpMode::Auto => &[XdpMode::Native, XdpMode::Skb],
            XdpMode::Native => &[XdpMode::Native],
            XdpMode::Skb => &[XdpMode::Skb],
        };
        let mut last: Option<XdpError> = None;
        for &m in modes {
            if let Some(e) = &last {
                tracing::warn!("{iface}: {e}; trying {m:?} mode");
            }
            match self.attach_one(ifindex, m) {
                Ok(link) => {
                    self.attached = Some(Attachment {
                        link,
                        iface: iface.to_owned(),
                        mode: m,
                        restore_rxvlan: keep_vlan_tags(iface),
                    });
                    return Ok(m);
                }
                Err(e) => last = Some(frame_too_long(iface, m, e)),
            }
        }
        Err(last.unwrap_or(XdpError::UnknownInterface(iface.to_owned())))
    }

    /// One attach in mode `m`, removing a leftover netlink program once on `EBUSY`/`EEXIST`.
    fn attach_one(&mut self, ifindex: u32, m: XdpMode) -> Result<XdpLinkId, XdpError> {
        let aya_mode = match m {
            XdpMode::Skb => AyaMode::Skb,
            XdpMode::Native | XdpMode::Auto => AyaMode::Driver,
        };
        match self.prog_mut()?.attach_to_if_index(ifindex, aya_mode) {
            Ok(link) => Ok(link),
            Err(ProgramError::SyscallError(e))
                if matches!(e.io_error.raw_os_error(), Some(libc::EBUSY | libc::EEXIST)) =>
            {
                netlink::detach_all(ifindex)
                    .map_err(|source| XdpError::Netlink { ifindex, source })?;
                Ok(self.prog_mut()?.attach_to_if_index(ifindex, aya_mode)?)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Pins the program at `path` on a BPF filesystem (for `bpftool`, or `ip link set ...
    /// pinned`); the pin keeps the program loaded after this process ends, until removed.
    pub fn pin(&mut self, path: impl AsRef<std::path::Path>) -> Result<(), XdpError> {
        self.prog_mut()?
            .pin(path)
            .map_err(|e| XdpError::Pin(e.to_string()))
    }

    /// Where the program is attached: interface and the mode in force.
    pub fn attached(&self) -> Option<(&str, XdpMode)> {
        self.attached.as_ref().map(|a| (a.iface.as_str(), a.mode))
    }

    /// Detaches the program from its interface (nothing when not attached). Also done on drop.
    pub fn detach(&mut self) -> Result<(), XdpError> {
        if let Some(a) = self.attached.take() {
            self.prog_mut()?.detach(a.link)?;
            if a.restore_rxvlan {
                if let Err(e) = ifreq::set_rx_vlan_stripping(&a.iface, true) {
                    tracing::warn!("{}: turning RX VLAN tag stripping back on: {e}", a.iface);
                }
            }
        }
        Ok(())
    }

    /// The generation in force.
    pub fn generation(&self) -> u32 {
        self.maps().cfg.gen
    }

    /// What the program reads of the generation in force (`COMO_GEN[gen]`): the compiler's
    /// [`GenConfig`] with the loader's `addr4` (the IPv4 address fields served by arrays).
    pub fn gen_config(&self) -> Result<GenConfig, XdpError> {
        let m = self.maps();
        m.gens.get(&m.cfg.gen, 0).map_err(map_err("COMO_GEN"))
    }

    /// Installs the tables compiled for a set of rules: see the crate doc. Returns the
    /// generation now in force.
    pub fn install(&self, tables: &ebpf_filters::kernel::Tables) -> Result<u32, XdpError> {
        let lpm = tables.lpm_entries();
        self.install_parts(&TableParts {
            gen: tables.gen_config(),
            lpm: &lpm,
            array: tables.array_entries(),
            term_rules: tables.term_rules(),
        })
    }

    /// [`XdpProgram::install`] from the tables' parts.
    pub fn install_parts(&self, t: &TableParts<'_>) -> Result<u32, XdpError> {
        if t.array.len() != ARRAY_FIELDS_LEN as usize {
            return Err(XdpError::BadTables(format!(
                "{} array entries, the contract has {ARRAY_FIELDS_LEN}",
                t.array.len()
            )));
        }
        if t.term_rules.len() != TERM_RULES_LEN as usize {
            return Err(XdpError::BadTables(format!(
                "{} term-rule entries, the contract has {TERM_RULES_LEN}",
                t.term_rules.len()
            )));
        }
        let mut guard = self.maps();
        let m = &mut *guard;
        let old = m.cfg.gen & 1;
        let new = old ^ 1;
        let ni = new as usize;

        // Leftovers of an install that failed half-way.
        for key in std::mem::take(&mut m.lpm_keys[ni]) {
            m.lpm.remove(&key).map_err(map_err("COMO_LPM"))?;
        }
        for (prefix, data, terms) in t.lpm {
            let mut data = *data;
            data.bytes[0] = new as u8;
            let key = Key::new(*prefix, data);
            m.lpm.insert(&key, terms, 0).map_err(map_err("COMO_LPM"))?;
            m.lpm_keys[ni].push(key);
        }

        let base = new * ARRAY_FIELDS_LEN;
        for f in field::FIRST_ARRAY..field::COUNT {
            if t.gen.used & (1 << f) == 0 {
                continue;
            }
            let start = array_field_base(f) as usize;
            let end = start + array_field_len(f) as usize;
            if let (Some(want), Some(have)) = (
                t.array.get(start..end),
                m.shadow_array[ni].get_mut(start..end),
            ) {
                write_changes(&mut m.array, "COMO_ARRAY", base + start as u32, want, have)?;
            }
        }
        write_changes(
            &mut m.term_rules,
            "COMO_TERM_RULES",
            new * TERM_RULES_LEN,
            t.term_rules,
            &mut m.shadow_rules[ni],
        )?;
        if t.gen.used & (1 << field::L3) != 0 {
            write_changes(
                &mut m.l3_array,
                "COMO_L3_ARRAY",
                new * L3_CLASSES,
                &l3_slots(t.lpm, &constrained(t)),
                &mut m.shadow_l3[ni],
            )?;
        }
        let addr4 = addr4::build(t.lpm, t.gen.used);
        let have = &mut m.shadow_addr4[ni];
        write_changes(
            &mut m.addr4_top,
            "COMO_ADDR4_TOP",
            new * ADDR4_TOP_LEN,
            &addr4.top,
            &mut have.top,
        )?;
        write_changes(
            &mut m.addr4_chunks,
            "COMO_ADDR4_CHUNKS",
            new * ADDR4_CHUNKS * 256,
            &addr4.chunks,
            &mut have.chunks,
        )?;
        write_changes(
            &mut m.addr4_classes,
            "COMO_ADDR4_CLASSES",
            new * ADDR4_CLASSES,
            &addr4.classes,
            &mut have.classes,
        )?;
        have.fields = addr4.fields;
        let gen = GenConfig {
            addr4: addr4.fields,
            ..t.gen
        };
        m.gens.set(new, gen, 0).map_err(map_err("COMO_GEN"))?;

        let cfg = Config {
            gen: new,
            flags: m.cfg.flags,
        };
        m.config.set(0, cfg, 0).map_err(map_err("COMO_CONFIG"))?;
        m.cfg = cfg;

        std::thread::sleep(GRACE);
        for key in std::mem::take(&mut m.lpm_keys[old as usize]) {
            m.lpm.remove(&key).map_err(map_err("COMO_LPM"))?;
        }
        Ok(new)
    }

    /// Drops (`true`) or passes to the kernel stack (`false`, the default) the packets no
    /// rule matches.
    pub fn set_drop_unmatched(&self, drop: bool) -> Result<(), XdpError> {
        let mut m = self.maps();
        let mut cfg = m.cfg;
        if drop {
            cfg.flags |= flags::DROP_UNMATCHED;
        } else {
            cfg.flags &= !flags::DROP_UNMATCHED;
        }
        m.config.set(0, cfg, 0).map_err(map_err("COMO_CONFIG"))?;
        m.cfg = cfg;
        Ok(())
    }

    /// Puts the AF_XDP socket `fd` in the XSK map for RX queue `queue`: matched packets of
    /// that queue are redirected to it.
    pub fn set_socket(&self, queue: u32, fd: BorrowedFd<'_>) -> Result<(), XdpError> {
        if queue >= MAX_QUEUES {
            return Err(XdpError::Queue(queue));
        }
        self.maps()
            .xsks
            .set(queue, fd.as_raw_fd(), 0)
            .map_err(map_err("COMO_XSKS"))
    }

    /// Removes the socket of RX queue `queue` (its matched packets then pass).
    pub fn clear_socket(&self, queue: u32) -> Result<(), XdpError> {
        if queue >= MAX_QUEUES {
            return Err(XdpError::Queue(queue));
        }
        match self.maps().xsks.unset(queue) {
            Ok(()) => Ok(()),
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {
                Ok(())
            }
            Err(source) => Err(XdpError::Map {
                name: "COMO_XSKS",
                source,
            }),
        }
    }

    /// The counters, summed over the CPUs.
    pub fn stats(&self) -> Result<XdpStats, XdpError> {
        let m = self.maps();
        let cpus = m.stats.get(&0, 0).map_err(map_err("COMO_STATS"))?;
        let get = |i: u32| -> Result<u64, XdpError> {
            Ok(cpus.iter().fold(0u64, |a, s| {
                a.wrapping_add(s.c.get(i as usize).copied().unwrap_or(0))
            }))
        };
        let mut per_rule = [0u64; MAX_RULES];
        for (r, slot) in per_rule.iter_mut().enumerate() {
            *slot = get(stat::RULE_BASE + r as u32)?;
        }
        Ok(XdpStats {
            seen: get(stat::SEEN)?,
            matched: get(stat::MATCHED)?,
            redirected: get(stat::REDIRECTED)?,
            redirect_failed: get(stat::REDIRECT_FAILED)?,
            passed: get(stat::PASSED)?,
            dropped: get(stat::DROPPED)?,
            parse_errors: get(stat::PARSE_ERRORS)?,
            matched_bytes: get(stat::MATCHED_BYTES)?,
            per_rule,
        })
    }

    /// Runs the program once on `packet` (`BPF_PROG_TEST_RUN`, RX queue 0, no socket
    /// redirect is performed): the action it returned and the metadata it wrote (`None` when
    /// it wrote none, or not this program's).
    pub fn test_run(&self, packet: &[u8]) -> Result<(u32, Option<XdpMeta>), XdpError> {
        check_test_frame(packet)?;
        let mut out = vec![0u8; packet.len() + 256];
        let res = self.prog()?.test_run(TestRunOptions {
            data_in: Some(packet),
            data_out: Some(&mut out),
            ..TestRunOptions::default()
        })?;
        // data_out starts at data_meta: the metadata, then the packet.
        let meta_len = (res.data_size_out as usize).saturating_sub(packet.len());
        let meta = if meta_len == META_LEN {
            out.get(..META_LEN).and_then(XdpMeta::read)
        } else {
            None
        };
        Ok((res.return_value, meta))
    }

    /// Runs the program `repeat` times on `packet` in the kernel; the kernel's mean time per
    /// run (for benchmarks).
    pub fn test_run_repeat(&self, packet: &[u8], repeat: u32) -> Result<Duration, XdpError> {
        check_test_frame(packet)?;
        let res = self.prog()?.test_run(TestRunOptions {
            data_in: Some(packet),
            repeat: repeat.max(1),
            ..TestRunOptions::default()
        })?;
        Ok(res.duration)
    }
}

impl Drop for XdpProgram {
    fn drop(&mut self) {
        // Closing the link would detach too; a failure here has nobody to report to.
        let _ = self.detach();
    }
}

/// Per field, the terms (of `0..nterms`) that some value of the field rejects: those whose bit
/// is clear in some entry of the field (an LPM entry of the field, or an array entry). A term
/// absent from a field's set never loses its bit in that field's lookup.
fn constrained(t: &TableParts<'_>) -> [Terms; field::COUNT as usize] {
    let mut valid = Terms::NONE;
    for i in 0..(t.gen.nterms as usize).min(MAX_TERMS) {
        valid.set(i);
    }
    let mut out = [Terms::NONE; field::COUNT as usize];
    let mut add = |f: u8, terms: &Terms| {
        if let Some(c) = out.get_mut(usize::from(f)) {
            for ((c, w), v) in c.w.iter_mut().zip(terms.w).zip(valid.w) {
                *c |= !w & v;
            }
        }
    };
    for (_, data, terms) in t.lpm {
        add(data.bytes[1], terms);
    }
    for f in field::FIRST_ARRAY..field::COUNT {
        if t.gen.used & (1 << f) == 0 {
            continue;
        }
        let start = array_field_base(f) as usize;
        let end = start + array_field_len(f) as usize;
        for terms in t.array.get(start..end).unwrap_or_default() {
            add(f, terms);
        }
    }
    out
}

/// The `COMO_L3_ARRAY` slots of one generation: for every L3 key with a slot
/// ([`ebpf_filters_common::l3_class`]), the terms of its longest L3 prefix among `lpm` (what
/// the trie lookup would return; all terms when no prefix matches, as a skipped lookup) and
/// the fields some of those terms constrain (`constrained`, by field).
fn l3_slots(lpm: &[(u32, LpmData, Terms)], constrained: &[Terms]) -> Vec<L3Slot> {
    // (prefix bits of the 40-bit key, the key's value in the low 40 bits, terms), longest
    // first.
    let mut entries: Vec<(u32, u64, Terms)> = lpm
        .iter()
        .filter(|(plen, data, _)| data.bytes[1] == field::L3 && *plen >= LPM_ROOT_PREFIX)
        .map(|(plen, data, terms)| {
            let v = data.bytes[2..7]
                .iter()
                .fold(0u64, |a, &b| (a << 8) | u64::from(b));
            ((plen - LPM_ROOT_PREFIX).min(L3_KEY_BITS), v, *terms)
        })
        .collect();
    entries.sort_by_key(|e| std::cmp::Reverse(e.0));
    let lookup = |key: [u8; 5]| -> Terms {
        let k = key.iter().fold(0u64, |a, &b| (a << 8) | u64::from(b));
        for (bits, v, terms) in &entries {
            let shift = L3_KEY_BITS - bits;
            if (k >> shift) == (v >> shift) {
                return *terms;
            }
        }
        Terms::ALL
    };
    let slot_of = |terms: Terms| -> L3Slot {
        let mut fields = 0u32;
        for (f, c) in constrained.iter().enumerate() {
            if f != usize::from(field::L3) && terms.w.iter().zip(c.w).any(|(t, c)| t & c != 0) {
                fields |= 1 << f;
            }
        }
        L3Slot {
            terms,
            fields,
            reserved: 0,
        }
    };
    let mut out = vec![slot_of(Terms::ALL); L3_CLASSES as usize];
    for depth in 0..=MAX_VLAN {
        for tpid0 in 0..4u8 {
            for tpid1 in 0..4u8 {
                let mut put = |ethertype: u16, a: u8, b: u8| {
                    if let Some(c) = l3_class(depth, tpid0, tpid1, ethertype, a, b) {
                        if let Some(slot) = out.get_mut(c as usize) {
                            *slot = slot_of(lookup(l3_key(depth, tpid0, tpid1, ethertype, a, b)));
                        }
                    }
                };
                for b in 0..=255u8 {
                    put(0x0800, 0, b);
                    put(0x0800, 1, b);
                    put(0x86dd, b, 0);
                    put(0x86dd, 44, b);
                }
                put(0x0806, 0, 0);
                put(0x8035, 0, 0);
            }
        }
    }
    out
}

/// Writes the entries of `want` that differ from `have` (what the map holds from `base` on)
/// and records them in `have`.
fn write_changes<V: aya::Pod + PartialEq>(
    map: &mut Array<MapData, V>,
    name: &'static str,
    base: u32,
    want: &[V],
    have: &mut [V],
) -> Result<(), XdpError> {
    for (i, (want, have)) in want.iter().zip(have.iter_mut()).enumerate() {
        if want != have {
            map.set(base + i as u32, want, 0).map_err(map_err(name))?;
            *have = *want;
        }
    }
    Ok(())
}

/// Refuses test frames the program would not see whole.
fn check_test_frame(packet: &[u8]) -> Result<(), XdpError> {
    match packet.len() {
        n if n < 14 => Err(XdpError::ShortInput(n)),
        n if n > MAX_TEST_FRAME => Err(XdpError::LongInput(n)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use como_packet::LinkType;
    use ebpf_filters::kernel::Tables;

    /// The `COMO_L3_ARRAY` slots of the tables compiled for `exprs`.
    fn slots(exprs: &[&str]) -> Vec<L3Slot> {
        let filters: Vec<_> = exprs
            .iter()
            .map(|e| ebpf_filters::compile(e, LinkType::Ethernet).expect("filter"))
            .collect();
        let rules: Vec<_> = filters.iter().map(Some).collect();
        let tables = Tables::compile(&rules).expect("tables");
        let lpm = tables.lpm_entries();
        let parts = TableParts {
            gen: tables.gen_config(),
            lpm: &lpm,
            array: tables.array_entries(),
            term_rules: tables.term_rules(),
        };
        l3_slots(&lpm, &constrained(&parts))
    }

    /// The fields left to look up for the L3 class of `(depth, tpid0, ethertype, a, b)`.
    fn fields(s: &[L3Slot], depth: u8, tpid0: u8, ethertype: u16, a: u8, b: u8) -> u32 {
        let c = l3_class(depth, tpid0, 0, ethertype, a, b).expect("class");
        s[c as usize].fields
    }

    const fn bits(fs: &[u8]) -> u32 {
        let mut m = 0;
        let mut i = 0;
        while i < fs.len() {
            m |= 1 << fs[i];
            i += 1;
        }
        m
    }

    #[test]
    fn l3_slots_keep_the_fields_of_the_terms_their_class_can_match() {
        let s = slots(&[
            "tcp port 80",
            "vlan 100 and ip",
            "tcp[tcpflags] & tcp-syn != 0",
            "host 10.0.0.1",
            "icmp[icmptype] = icmp-echo",
        ]);
        let addr4 = bits(&[field::SADDR4, field::DADDR4]);
        let ports = bits(&[field::SPORT, field::DPORT]);
        // Untagged IPv4 TCP (first fragment): the ports, the flags and `host`'s addresses.
        assert_eq!(
            fields(&s, 0, 0, 0x0800, 1, 6),
            addr4 | ports | bits(&[field::L4B13])
        );
        // Untagged IPv4 UDP: only `host` can match.
        assert_eq!(fields(&s, 0, 0, 0x0800, 1, 17), addr4);
        // ICMP: `host` and the ICMP type.
        assert_eq!(fields(&s, 0, 0, 0x0800, 1, 1), addr4 | bits(&[field::L4B0]));
        // A later TCP fragment: `tcp port 80` is false there (no ports), and so is the flags
        // test; `host` is not.
        assert_eq!(fields(&s, 0, 0, 0x0800, 0, 6), addr4);
        // IPv6 TCP: `tcp port 80` only (`tcp[...]` and `host 10.0.0.1` are IPv4).
        assert_eq!(fields(&s, 0, 0, 0x86dd, 6, 0), ports);
        // ARP: `host` (ip, arp or rarp).
        assert_eq!(fields(&s, 0, 0, 0x0806, 0, 0), addr4);
        // IPv4 under one 802.1Q tag: only the VLAN id of `vlan 100 and ip`.
        assert_eq!(fields(&s, 1, 1, 0x0800, 1, 6), bits(&[field::VID0]));
        // IPv6 under a tag: nothing can match, nothing to look up.
        assert_eq!(fields(&s, 1, 1, 0x86dd, 6, 0), 0);
        for slot in &s {
            assert_eq!(
                slot.fields & (1 << field::L3),
                0,
                "the L3 key is looked up first"
            );
        }
    }
}

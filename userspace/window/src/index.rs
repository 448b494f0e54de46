//! The per-segment index: groups of packets with their time range, and sorted
//! (key, group) arrays for addresses, ports and protocols.
//!
//! A *group* is a run of consecutive EPBs of at most [`GROUP_BYTES`] bytes, contiguous in the
//! file (any other block, such as a staging buffer's padding block, ends it). Groups depend only
//! on the file's bytes, not on how they are handed to [`IndexBuilder::add_chunk`]: the index the
//! writer builds buffer by buffer and the one [`crate::segment::index_file`] rebuilds from the
//! file are the same, byte for byte. The index stores, per group, its
//! file offset and length, its packet count and its smallest and largest timestamp (the sparse
//! time index: packets of several workers interleave, so a group's range is kept rather than
//! assuming order); and per key kind a sorted array of `(key, group)` pairs, one per distinct
//! key of each group. A query reads only the groups that overlap its time range and hold a key
//! of every clause of the filter's requirement ([`crate::keys`]), then runs the exact filter.
//!
//! File `<segment>.idx`, little-endian:
//! ```text
//! "COMOWIX1"  u32 n_links  u32 link type × n_links
//! u64 packets  u64 ts_min  u64 ts_max  u64 data_end
//! u32 n_groups  (u64 off, u32 len, u32 count, u64 ts_min, u64 ts_max, u32 complete) × n_groups
//! u32 n  (u32 addr, u32 group) × n           IPv4, sorted
//! u32 n  (u128 addr, u32 group) × n          IPv6, sorted
//! u32 n  (u16 port, u16 0, u32 group) × n    ports, sorted
//! u32 n  (u8 proto, 3 × 0, u32 group) × n    protocols, sorted
//! "COMOWEND"  u64 file length
//! ```
//! `complete = 0` marks a group holding a packet whose link type is not indexed: it is never
//! pruned by key. An index that does not parse is ignored (the segment is scanned whole).

use std::io;
use std::path::Path;

use como_packet::LinkType;

use crate::block::Blocks;
use crate::keys::{packet_keys, Key, KeySink, Requirement};

/// Largest group, in bytes of EPBs.
pub const GROUP_BYTES: usize = 64 * 1024;

const MAGIC: &[u8; 8] = b"COMOWIX1";
const END: &[u8; 8] = b"COMOWEND";

/// One group of packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group {
    /// File offset of its first EPB.
    pub off: u64,
    /// Length in bytes.
    pub len: u32,
    /// Packets.
    pub count: u32,
    /// Smallest timestamp (ns).
    pub ts_min: u64,
    /// Largest timestamp (ns).
    pub ts_max: u64,
    /// Every packet's keys were recorded.
    pub complete: bool,
}

/// A segment's index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Index {
    /// Link type per interface id.
    pub links: Vec<LinkType>,
    /// Packets.
    pub packets: u64,
    /// Smallest timestamp.
    pub ts_min: u64,
    /// Largest timestamp.
    pub ts_max: u64,
    /// End of the last complete block indexed (file bytes covered).
    pub data_end: u64,
    /// Groups in file order.
    pub groups: Vec<Group>,
    /// IPv4 postings.
    pub v4: Vec<(u32, u32)>,
    /// IPv6 postings.
    pub v6: Vec<(u128, u32)>,
    /// Port postings.
    pub port: Vec<(u16, u32)>,
    /// Protocol postings.
    pub proto: Vec<(u8, u32)>,
}

/// Builds an [`Index`] from packets handed over in file order.
#[derive(Debug, Default)]
pub struct IndexBuilder {
    /// The index so far.
    idx: Index,
    /// Keys of the open group.
    keys: KeySink,
    /// The open group, if any.
    cur: Option<Group>,
}

impl IndexBuilder {
    /// An empty index for a segment whose interfaces have link types `links` (more are added
    /// by the IDBs met in [`IndexBuilder::add_chunk`]).
    pub fn new(links: Vec<LinkType>) -> Self {
        IndexBuilder {
            idx: Index {
                links,
                ts_min: u64::MAX,
                ..Index::default()
            },
            ..IndexBuilder::default()
        }
    }

    /// Indexes the blocks of `bytes`, which sits at file offset `file_off` (calls in file
    /// order). The last group stays open: the next call extends it when its first EPB follows
    /// directly (so the groups do not depend on where the calls split the file). Returns the
    /// end of the last complete block.
    pub fn add_chunk(&mut self, bytes: &[u8], file_off: u64) -> usize {
        let mut blocks = Blocks::new(bytes);
        for b in blocks.by_ref() {
            if b.btype == crate::block::BT_IDB {
                if let Some(lt) = b.bytes.get(8..10).and_then(|s| s.try_into().ok()) {
                    let lt = u32::from(u16::from_le_bytes(lt));
                    self.idx.links.push(LinkType::from_linktype(lt));
                }
                continue;
            }
            let Some(e) = b.epb() else {
                continue;
            };
            let off = file_off + b.off as u64;
            let len = b.bytes.len() as u32;
            if let Some(g) = &self.cur {
                if g.off + u64::from(g.len) != off || g.len as usize + len as usize > GROUP_BYTES {
                    self.close_group();
                }
            }
            let g = self.cur.get_or_insert(Group {
                off,
                len: 0,
                count: 0,
                ts_min: u64::MAX,
                ts_max: 0,
                complete: true,
            });
            g.len += len;
            g.count += 1;
            g.ts_min = g.ts_min.min(e.ts_ns);
            g.ts_max = g.ts_max.max(e.ts_ns);
            let link = self
                .idx
                .links
                .get(e.iface as usize)
                .copied()
                .unwrap_or(LinkType::Other(u32::MAX));
            if !packet_keys(link, e.data, &mut self.keys) {
                g.complete = false;
            }
        }
        let end = blocks.end();
        self.idx.data_end = self.idx.data_end.max(file_off + end as u64);
        end
    }

    fn close_group(&mut self) {
        let Some(g) = self.cur.take() else {
            return;
        };
        let gi = self.idx.groups.len() as u32;
        self.keys.finish();
        self.idx.v4.extend(self.keys.v4.iter().map(|&k| (k, gi)));
        self.idx.v6.extend(self.keys.v6.iter().map(|&k| (k, gi)));
        self.idx
            .port
            .extend(self.keys.port.iter().map(|&k| (k, gi)));
        self.idx
            .proto
            .extend(self.keys.proto.iter().map(|&k| (k, gi)));
        self.keys.clear();
        self.idx.packets += u64::from(g.count);
        self.idx.ts_min = self.idx.ts_min.min(g.ts_min);
        self.idx.ts_max = self.idx.ts_max.max(g.ts_max);
        self.idx.groups.push(g);
    }

    /// Packets indexed so far.
    pub fn packets(&self) -> u64 {
        self.idx.packets + self.cur.map_or(0, |g| u64::from(g.count))
    }

    /// Smallest and largest timestamp so far (`None` without packets).
    pub fn time_range(&self) -> Option<(u64, u64)> {
        let closed = (self.idx.packets > 0).then_some((self.idx.ts_min, self.idx.ts_max));
        match (closed, self.cur) {
            (Some((a, b)), Some(g)) => Some((a.min(g.ts_min), b.max(g.ts_max))),
            (None, Some(g)) => Some((g.ts_min, g.ts_max)),
            (c, None) => c,
        }
    }

    /// The finished index (postings sorted).
    pub fn finish(mut self) -> Index {
        self.close_group();
        let mut i = self.idx;
        i.v4.sort_unstable();
        i.v6.sort_unstable();
        i.port.sort_unstable();
        i.proto.sort_unstable();
        if i.packets == 0 {
            i.ts_min = 0;
        }
        i
    }
}

impl Index {
    /// Encodes the index file.
    pub fn encode(&self) -> Vec<u8> {
        let mut o = Vec::with_capacity(
            64 + self.groups.len() * 36
                + self.v4.len() * 8
                + self.v6.len() * 20
                + (self.port.len() + self.proto.len()) * 8,
        );
        o.extend_from_slice(MAGIC);
        o.extend_from_slice(&(self.links.len() as u32).to_le_bytes());
        for l in &self.links {
            o.extend_from_slice(&l.to_linktype().to_le_bytes());
        }
        for v in [self.packets, self.ts_min, self.ts_max, self.data_end] {
            o.extend_from_slice(&v.to_le_bytes());
        }
        o.extend_from_slice(&(self.groups.len() as u32).to_le_bytes());
        for g in &self.groups {
            o.extend_from_slice(&g.off.to_le_bytes());
            o.extend_from_slice(&g.len.to_le_bytes());
            o.extend_from_slice(&g.count.to_le_bytes());
            o.extend_from_slice(&g.ts_min.to_le_bytes());
            o.extend_from_slice(&g.ts_max.to_le_bytes());
            o.extend_from_slice(&u32::from(g.complete).to_le_bytes());
        }
        o.extend_from_slice(&(self.v4.len() as u32).to_le_bytes());
        for (k, g) in &self.v4 {
            o.extend_from_slice(&k.to_le_bytes());
            o.extend_from_slice(&g.to_le_bytes());
        }
        o.extend_from_slice(&(self.v6.len() as u32).to_le_bytes());
        for (k, g) in &self.v6 {
            o.extend_from_slice(&k.to_le_bytes());
            o.extend_from_slice(&g.to_le_bytes());
        }
        o.extend_from_slice(&(self.port.len() as u32).to_le_bytes());
        for (k, g) in &self.port {
            o.extend_from_slice(&u32::from(*k).to_le_bytes());
            o.extend_from_slice(&g.to_le_bytes());
        }
        o.extend_from_slice(&(self.proto.len() as u32).to_le_bytes());
        for (k, g) in &self.proto {
            o.extend_from_slice(&u32::from(*k).to_le_bytes());
            o.extend_from_slice(&g.to_le_bytes());
        }
        o.extend_from_slice(END);
        let total = o.len() as u64 + 8;
        o.extend_from_slice(&total.to_le_bytes());
        o
    }

    /// Decodes an index file; `None` when it is not one (torn, foreign, inconsistent).
    pub fn decode(b: &[u8]) -> Option<Index> {
        let mut c = Cur { b, p: 0 };
        if c.take(8)? != MAGIC {
            return None;
        }
        let n_links = c.u32()? as usize;
        let mut links = Vec::with_capacity(n_links.min(1024));
        for _ in 0..n_links {
            links.push(LinkType::from_linktype(c.u32()?));
        }
        let (packets, ts_min, ts_max, data_end) = (c.u64()?, c.u64()?, c.u64()?, c.u64()?);
        let n = c.count(36)?;
        let mut groups = Vec::with_capacity(n);
        for _ in 0..n {
            groups.push(Group {
                off: c.u64()?,
                len: c.u32()?,
                count: c.u32()?,
                ts_min: c.u64()?,
                ts_max: c.u64()?,
                complete: c.u32()? != 0,
            });
        }
        // Groups lie in order, without overlap, inside the segment's data: a damaged index must
        // not send a reader past the data or make it allocate a group's claimed length.
        let mut prev_end = 0u64;
        for g in &groups {
            let end = g.off.checked_add(u64::from(g.len))?;
            if g.off < prev_end || end > data_end {
                return None;
            }
            prev_end = end;
        }
        let ng = groups.len() as u32;
        let n = c.count(8)?;
        let mut v4 = Vec::with_capacity(n);
        for _ in 0..n {
            v4.push((c.u32()?, c.u32()?));
        }
        let n = c.count(20)?;
        let mut v6 = Vec::with_capacity(n);
        for _ in 0..n {
            let k = u128::from_le_bytes(c.take(16)?.try_into().ok()?);
            v6.push((k, c.u32()?));
        }
        let n = c.count(8)?;
        let mut port = Vec::with_capacity(n);
        for _ in 0..n {
            port.push((u16::try_from(c.u32()?).ok()?, c.u32()?));
        }
        let n = c.count(8)?;
        let mut proto = Vec::with_capacity(n);
        for _ in 0..n {
            proto.push((u8::try_from(c.u32()?).ok()?, c.u32()?));
        }
        if c.take(8)? != END || c.u64()? != b.len() as u64 || c.p != b.len() {
            return None;
        }
        let sorted_ok = v4.windows(2).all(|w| w[0] <= w[1])
            && v6.windows(2).all(|w| w[0] <= w[1])
            && port.windows(2).all(|w| w[0] <= w[1])
            && proto.windows(2).all(|w| w[0] <= w[1]);
        let groups_ok = v4.iter().all(|p| p.1 < ng)
            && v6.iter().all(|p| p.1 < ng)
            && port.iter().all(|p| p.1 < ng)
            && proto.iter().all(|p| p.1 < ng);
        (sorted_ok && groups_ok).then_some(Index {
            links,
            packets,
            ts_min,
            ts_max,
            data_end,
            groups,
            v4,
            v6,
            port,
            proto,
        })
    }

    /// Reads and decodes `path`; `None` when absent or invalid.
    pub fn load(path: &Path) -> Option<Index> {
        Index::decode(&std::fs::read(path).ok()?)
    }

    /// Writes the index next to a segment: temporary file, fsync, rename (the temporary file
    /// is removed when that fails, e.g. on a full disk).
    pub fn store(&self, path: &Path) -> io::Result<()> {
        let tmp = path.with_extension("idx.tmp");
        let res = (|| {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&self.encode())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if res.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        res
    }

    /// Groups that may hold a packet of `[t0, t1]` (inclusive, ns) satisfying `req`, in file
    /// order.
    pub fn candidates(&self, t0: u64, t1: u64, req: &Requirement) -> Vec<usize> {
        let Some(clauses) = req else {
            return Vec::new();
        };
        let n = self.groups.len();
        let mut keep: Vec<bool> = self
            .groups
            .iter()
            .map(|g| g.ts_max >= t0 && g.ts_min <= t1)
            .collect();
        let mut hit = vec![false; n];
        for clause in clauses {
            hit.iter_mut().for_each(|h| *h = false);
            for k in clause {
                match *k {
                    Key::V4(a) => mark(&self.v4, a, &mut hit),
                    Key::V6(a) => mark(&self.v6, a, &mut hit),
                    Key::Port(p) => mark(&self.port, p, &mut hit),
                    Key::Proto(p) => mark(&self.proto, p, &mut hit),
                }
            }
            for ((k, h), g) in keep.iter_mut().zip(&hit).zip(&self.groups) {
                *k &= *h || !g.complete;
            }
        }
        keep.iter()
            .enumerate()
            .filter_map(|(i, k)| k.then_some(i))
            .collect()
    }
}

/// Marks the groups posted under `key`.
fn mark<K: Ord + Copy>(post: &[(K, u32)], key: K, hit: &mut [bool]) {
    let start = post.partition_point(|p| p.0 < key);
    for p in post.get(start..).unwrap_or(&[]) {
        if p.0 != key {
            break;
        }
        if let Some(h) = hit.get_mut(p.1 as usize) {
            *h = true;
        }
    }
}

/// A bounds-checked little-endian reader.
struct Cur<'a> {
    b: &'a [u8],
    p: usize,
}

impl<'a> Cur<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.p..self.p.checked_add(n)?)?;
        self.p += n;
        Some(s)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)?.try_into().ok().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)?.try_into().ok().map(u64::from_le_bytes)
    }
    /// A count of records of `size` bytes that fits in what is left.
    fn count(&mut self, size: usize) -> Option<usize> {
        let n = self.u32()? as usize;
        (n.checked_mul(size)? <= self.b.len().saturating_sub(self.p)).then_some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::put_epb;
    use como_packet::Packet;

    fn pkt(src: [u8; 4], dport: u16) -> Vec<u8> {
        let mut d = vec![0u8; 54];
        d[12] = 0x08;
        d[14] = 0x45;
        d[23] = 17;
        d[26..30].copy_from_slice(&src);
        d[30..34].copy_from_slice(&[192, 168, 0, 1]);
        d[36..38].copy_from_slice(&dport.to_be_bytes());
        d
    }

    #[test]
    fn build_encode_decode_and_prune() {
        let mut buf = vec![0u8; 300 * 1024];
        let mut at = 0;
        for i in 0..2000u32 {
            let d = pkt([10, 0, (i / 1000) as u8, 1], 53);
            let p = Packet {
                ts_ns: u64::from(i) * 1000,
                wire_len: 54,
                data: &d,
                link: LinkType::Ethernet,
                interface: 0,
            };
            at += put_epb(&mut buf[at..], &p, 65535, 0).expect("fits");
        }
        let mut b = IndexBuilder::new(vec![LinkType::Ethernet]);
        assert_eq!(b.add_chunk(&buf[..at], 4096), at);
        let idx = b.finish();
        assert_eq!(idx.packets, 2000);
        assert!(idx.groups.len() >= 2);
        let back = Index::decode(&idx.encode()).expect("decodes");
        assert_eq!(back, idx);
        let all = idx.candidates(0, u64::MAX, &Some(vec![]));
        assert_eq!(all.len(), idx.groups.len());
        let first = idx.candidates(0, u64::MAX, &Some(vec![vec![Key::V4(0x0a00_0001)]]));
        let second = idx.candidates(0, u64::MAX, &Some(vec![vec![Key::V4(0x0a00_0101)]]));
        assert!(!first.is_empty() && !second.is_empty());
        assert!(first
            .iter()
            .all(|g| !second.contains(g) || idx.groups[*g].ts_min < 1_000_000));
        assert!(idx
            .candidates(0, u64::MAX, &Some(vec![vec![Key::Port(80)]]))
            .is_empty());
        assert!(idx.candidates(0, u64::MAX, &None).is_empty());
        // Time pruning: only the groups of the last microseconds.
        let late = idx.candidates(1_999_000, u64::MAX, &Some(vec![]));
        assert_eq!(late, vec![idx.groups.len() - 1]);
        // Corruption is refused.
        let mut e = idx.encode();
        e.truncate(e.len() - 3);
        assert!(Index::decode(&e).is_none());
        // A group that claims more bytes than the segment's data holds (the fuzz target
        // window_segment found a 4 GiB read), or that overlaps the one before, is refused.
        let mut long = idx.clone();
        long.groups[0].len = u32::MAX;
        assert!(Index::decode(&long.encode()).is_none());
        let mut overlap = idx.clone();
        overlap.groups[1].off = overlap.groups[0].off;
        assert!(Index::decode(&overlap.encode()).is_none());
    }

    #[test]
    fn groups_do_not_depend_on_how_the_bytes_are_split() {
        // Two runs of EPBs separated by a padding block (two staging buffers).
        let mut buf = vec![0u8; 256 * 1024];
        let mut at = 0;
        let mut starts = Vec::new();
        for i in 0..1500u32 {
            if i == 500 {
                assert!(crate::block::put_pad(&mut buf[at..at + 4096]));
                at += 4096;
            }
            let d = pkt([10, 0, (i % 7) as u8, 1], 80 + (i % 3) as u16);
            let p = Packet {
                ts_ns: u64::from(i) * 1000,
                wire_len: 54,
                data: &d,
                link: LinkType::Ethernet,
                interface: 0,
            };
            starts.push(at);
            at += put_epb(&mut buf[at..], &p, 65535, 0).expect("fits");
        }
        let whole = {
            let mut b = IndexBuilder::new(vec![LinkType::Ethernet]);
            assert_eq!(b.add_chunk(&buf[..at], 0), at);
            b.finish()
        };
        assert!(whole.groups.len() >= 3);
        // One call per block, and calls cut in the middle of blocks (the rest handed over
        // again with the next bytes, as segment::index_file does).
        let mut b = IndexBuilder::new(vec![LinkType::Ethernet]);
        let mut ends: Vec<usize> = starts.iter().skip(1).copied().collect();
        ends.push(at);
        let mut from = 0;
        for e in ends {
            assert_eq!(b.add_chunk(&buf[from..e], from as u64), e - from);
            from = e;
        }
        assert_eq!(b.finish(), whole);
        let mut b = IndexBuilder::new(vec![LinkType::Ethernet]);
        let mut from = 0;
        while from < at {
            let to = (from + 10_007).min(at);
            from += b.add_chunk(&buf[from..to], from as u64);
            if to == at && from < at {
                from += b.add_chunk(&buf[from..at], from as u64);
            }
        }
        assert_eq!(b.finish(), whole);
    }
}

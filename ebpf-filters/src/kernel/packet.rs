//! The fields of a packet as the XDP program extracts them (the userspace reference).
//!
//! # Extraction rules (the XDP program implements the same)
//!
//! `len` = captured bytes, `be16(o)` = the big-endian 16-bit word at byte `o`. Every field is
//! *present* (its value is looked up), *not applicable* (the packet has no such header: the
//! lookup is skipped and the result is all ones) or *absent* (the header is there but its bytes
//! are past `len`: if the field is used, the classification is uncertain).
//!
//! * `DMAC` = bytes 0..6, `SMAC` = bytes 6..12; absent when `len` is shorter.
//! * `LEN` = the wire length; absent when it is above 65535 (never in XDP).
//! * VLAN walk: `off = 12`, `depth = 0`; loop: if `off + 2 > len` the L3 key is absent (and
//!   so is every field below); `t = be16(off)`; if `t` is 0x8100, 0x88a8 or 0x9100 (a TPID):
//!   if `depth == MAX_VLAN` (2) then `depth = VLAN_DEEP` (3), EtherType 0, stop; else record
//!   `tpid_class(t)` for tag `depth`, `VID<depth>` = `be16(off + 2) & 0xfff` (absent when
//!   `off + 4 > len`), `depth += 1`, `off += 4`, loop. Otherwise EtherType = `t`, stop.
//!   `VIDk` is not applicable when `depth <= k`. The L3 header starts at `l3 = off + 2`
//!   (14 + 4 * depth).
//! * L3 key ([`ebpf_filters_common::l3_key`]): EtherType 0x0800: `a` = 1 when
//!   `be16(l3 + 6) & 0x1fff == 0` else 0, `b` = byte `l3 + 9` (the key is absent when
//!   `l3 + 10 > len`); 0x86dd: `a` = byte `l3 + 6`, `b` = byte `l3 + 40` when `a == 44` else 0
//!   (absent when `l3 + 7 > len`, or `a == 44` and `l3 + 41 > len`); anything else
//!   (and `depth == VLAN_DEEP`): `a = b = 0`.
//! * `SADDR4`/`DADDR4`: IPv4 (0x0800): 4 bytes at `l3 + 12` / `l3 + 16`; ARP and RARP
//!   (0x0806, 0x8035): 4 bytes at `l3 + 14` / `l3 + 24`; other EtherTypes: not applicable.
//! * `SADDR6`/`DADDR6`: IPv6 only: 16 bytes at `l3 + 8` / `l3 + 24`.
//! * Transport offset `t`: IPv4: `l3 + 4 * (byte(l3) & 0xf)` (whatever the protocol and the
//!   fragment offset, as libpcap; needs byte `l3`), IPv6: `l3 + 40`; other EtherTypes: the
//!   transport fields are not applicable. `SPORT` = `be16(t)`, `DPORT` = `be16(t + 2)`,
//!   `L4B0` = byte `t`, `L4B1` = byte `t + 1`, `L4B13` = byte `t + 13`, each absent when its
//!   bytes are past `len`.
//!
//! Why "not applicable" is safe: every term constraining a field exactly also constrains the
//! L3 key to EtherTypes (and a depth) for which the field is applicable, so the L3 lookup
//! already excludes it on those packets.

use ebpf_filters_common::{field, l3_key, tpid_class, MAX_VLAN, VLAN_DEEP};

/// The state of one field of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldState {
    /// The value (LPM fields in the low bits, most significant byte first).
    Present(u128),
    /// The packet has no such header (lookup skipped, no uncertainty).
    NotApplicable,
    /// The header is there but its bytes are past the captured end.
    Absent,
}

/// The fields the XDP program extracts from one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketKey {
    /// Value of each field (meaningful when its bit in `present` is set).
    pub values: [u128; field::COUNT as usize],
    /// Bit `1 << f`: field `f` is present.
    pub present: u32,
    /// Bit `1 << f`: field `f` is absent (bytes past the captured end).
    pub absent: u32,
    /// Leading VLAN tags (0..=`VLAN_DEEP`), when the walk finished.
    pub depth: u8,
    /// EtherType after the tags (0 for `VLAN_DEEP` or when the walk did not finish).
    pub ethertype: u16,
}

fn be16(d: &[u8], o: usize) -> Option<u16> {
    let b = d.get(o..o.checked_add(2)?)?;
    Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
}

fn bytes_be(d: &[u8], o: usize, n: usize) -> Option<u128> {
    let b = d.get(o..o.checked_add(n)?)?;
    Some(b.iter().fold(0u128, |a, &x| a << 8 | u128::from(x)))
}

const L3_DEP: u32 = (1 << field::SADDR4)
    | (1 << field::DADDR4)
    | (1 << field::SADDR6)
    | (1 << field::DADDR6)
    | (1 << field::SPORT)
    | (1 << field::DPORT)
    | (1 << field::L4B0)
    | (1 << field::L4B1)
    | (1 << field::L4B13);

impl PacketKey {
    /// The state of field `f`.
    pub fn get(&self, f: u8) -> FieldState {
        let bit = 1u32.checked_shl(u32::from(f)).unwrap_or(0);
        if self.present & bit != 0 {
            FieldState::Present(self.values.get(usize::from(f)).copied().unwrap_or(0))
        } else if self.absent & bit != 0 {
            FieldState::Absent
        } else {
            FieldState::NotApplicable
        }
    }

    fn set(&mut self, f: u8, v: Option<u128>) {
        match v {
            Some(v) => {
                if let Some(slot) = self.values.get_mut(usize::from(f)) {
                    *slot = v;
                }
                self.present |= 1 << f;
            }
            None => self.absent |= 1 << f,
        }
    }

    /// Extracts the fields of an Ethernet frame (`data` = captured bytes).
    pub fn extract(data: &[u8], wire_len: u32) -> PacketKey {
        let mut k = PacketKey {
            values: [0; field::COUNT as usize],
            present: 0,
            absent: 0,
            depth: 0,
            ethertype: 0,
        };
        k.set(field::DMAC, bytes_be(data, 0, 6));
        k.set(field::SMAC, bytes_be(data, 6, 6));
        k.set(
            field::LEN,
            (wire_len <= 65_535).then_some(u128::from(wire_len)),
        );
        // VLAN walk.
        let mut off = 12usize;
        let mut depth = 0u8;
        let mut tpids = [0u8; MAX_VLAN as usize];
        let ethertype;
        loop {
            let Some(t) = be16(data, off) else {
                k.absent |= (1 << field::L3) | L3_DEP;
                if depth == 0 {
                    k.absent |= 1 << field::VID0;
                }
                if depth <= 1 {
                    k.absent |= 1 << field::VID1;
                }
                return k;
            };
            let class = tpid_class(t);
            if class == 0 {
                ethertype = t;
                break;
            }
            if depth >= MAX_VLAN {
                depth = VLAN_DEEP;
                ethertype = 0;
                break;
            }
            if let Some(slot) = tpids.get_mut(usize::from(depth)) {
                *slot = class;
            }
            let vid = be16(data, off + 2).map(|v| u128::from(v & 0x0fff));
            k.set(if depth == 0 { field::VID0 } else { field::VID1 }, vid);
            depth += 1;
            off += 4;
        }
        k.depth = depth;
        k.ethertype = ethertype;
        let l3 = off + 2;
        let (a, b) = match (depth == VLAN_DEEP, ethertype) {
            (false, 0x0800) => {
                let (Some(frag), Some(proto)) = (be16(data, l3 + 6), data.get(l3 + 9)) else {
                    k.absent |= (1 << field::L3) | L3_DEP;
                    return k;
                };
                (u8::from(frag & 0x1fff == 0), *proto)
            }
            (false, 0x86dd) => {
                let Some(&nh) = data.get(l3 + 6) else {
                    k.absent |= (1 << field::L3) | L3_DEP;
                    return k;
                };
                let b = if nh == 44 {
                    let Some(&b) = data.get(l3 + 40) else {
                        k.absent |= (1 << field::L3) | L3_DEP;
                        return k;
                    };
                    b
                } else {
                    0
                };
                (nh, b)
            }
            _ => (0, 0),
        };
        let key = l3_key(
            depth,
            tpids.first().copied().unwrap_or(0),
            tpids.get(1).copied().unwrap_or(0),
            ethertype,
            a,
            b,
        );
        k.set(field::L3, bytes_be(&key, 0, 5));
        if depth == VLAN_DEEP {
            return k;
        }
        let transport = match ethertype {
            0x0800 => {
                k.set(field::SADDR4, bytes_be(data, l3 + 12, 4));
                k.set(field::DADDR4, bytes_be(data, l3 + 16, 4));
                data.get(l3).map(|&b| l3 + 4 * usize::from(b & 0xf))
            }
            0x0806 | 0x8035 => {
                k.set(field::SADDR4, bytes_be(data, l3 + 14, 4));
                k.set(field::DADDR4, bytes_be(data, l3 + 24, 4));
                return k;
            }
            0x86dd => {
                k.set(field::SADDR6, bytes_be(data, l3 + 8, 16));
                k.set(field::DADDR6, bytes_be(data, l3 + 24, 16));
                Some(l3 + 40)
            }
            _ => return k,
        };
        let Some(t) = transport else {
            k.absent |= (1 << field::SPORT)
                | (1 << field::DPORT)
                | (1 << field::L4B0)
                | (1 << field::L4B1)
                | (1 << field::L4B13);
            return k;
        };
        k.set(field::SPORT, bytes_be(data, t, 2));
        k.set(field::DPORT, bytes_be(data, t + 2, 2));
        k.set(field::L4B0, bytes_be(data, t, 1));
        k.set(field::L4B1, bytes_be(data, t + 1, 1));
        k.set(field::L4B13, bytes_be(data, t + 13, 1));
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp_v4() -> Vec<u8> {
        let mut p = vec![0u8; 14 + 20 + 20];
        p[0..6].copy_from_slice(&[1, 2, 3, 4, 5, 6]);
        p[6..12].copy_from_slice(&[7, 8, 9, 10, 11, 12]);
        p[12..14].copy_from_slice(&[0x08, 0x00]);
        p[14] = 0x45;
        p[14 + 9] = 6;
        p[26..30].copy_from_slice(&[10, 0, 0, 1]);
        p[30..34].copy_from_slice(&[10, 0, 0, 2]);
        p[34..36].copy_from_slice(&1234u16.to_be_bytes());
        p[36..38].copy_from_slice(&80u16.to_be_bytes());
        p[34 + 13] = 0x12;
        p
    }

    #[test]
    fn ipv4_tcp_fields() {
        let p = tcp_v4();
        let k = PacketKey::extract(&p, 60);
        assert_eq!(k.get(field::SADDR4), FieldState::Present(0x0a00_0001));
        assert_eq!(k.get(field::DPORT), FieldState::Present(80));
        assert_eq!(k.get(field::L4B13), FieldState::Present(0x12));
        assert_eq!(k.get(field::SADDR6), FieldState::NotApplicable);
        assert_eq!(k.get(field::VID0), FieldState::NotApplicable);
        assert_eq!(k.get(field::LEN), FieldState::Present(60));
        assert_eq!(
            k.get(field::L3),
            FieldState::Present(0x00_0800_0106),
            "depth 0, IPv4, first fragment, TCP"
        );
    }

    #[test]
    fn truncated_fields_are_absent() {
        let p = tcp_v4();
        let k = PacketKey::extract(&p[..36], 60);
        assert_eq!(k.get(field::SPORT), FieldState::Present(1234));
        assert_eq!(k.get(field::DPORT), FieldState::Absent);
        let k = PacketKey::extract(&p[..20], 60);
        assert_eq!(k.get(field::L3), FieldState::Absent);
        assert_eq!(k.get(field::SADDR4), FieldState::Absent);
        let k = PacketKey::extract(&p[..5], 60);
        assert_eq!(k.get(field::DMAC), FieldState::Absent);
    }

    #[test]
    fn vlan_stack() {
        let mut p = vec![0u8; 12];
        p.extend_from_slice(&[0x88, 0xa8, 0x00, 0x64, 0x81, 0x00, 0x00, 0xc8, 0x81, 0x00]);
        p.extend_from_slice(&[0, 1, 0x08, 0x00]);
        let k = PacketKey::extract(&p, 100);
        assert_eq!(k.depth, VLAN_DEEP);
        assert_eq!(k.get(field::VID0), FieldState::Present(100));
        assert_eq!(k.get(field::VID1), FieldState::Present(200));
        assert_eq!(k.get(field::SADDR4), FieldState::NotApplicable);
    }
}

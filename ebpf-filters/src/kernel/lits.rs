//! One IR literal → a constraint on one kernel field, with the guard it needs to be exact.
//!
//! A literal is *exact* in a term when the kernel field holds what libpcap would load for it,
//! which depends on the literals that guard it (see [`Guard`]). [`map`] says which field a
//! predicate constrains, the set of field values for which it holds (inside its guard's
//! region), and the guard; or why the kernel cannot express it.

use ebpf_filters_common::{field, tpid_class, MAX_VLAN, VLAN_DEEP};

use super::sets::{FieldSet, Prefix, PrefixSet, RangeSet};
use crate::ir::{Cmp, Encap, Link, LoadBase, Off, Pred, Side, V4Field, Value};
use crate::lower::apply_op;

/// EtherTypes of VLAN tags (libpcap's `vlan`).
pub const TPIDS: &[u32] = &[0x8100, 0x88a8, 0x9100];
const IPV4: &[u32] = &[0x0800];
const IPV6: &[u32] = &[0x86dd];
const ARP: &[u32] = &[0x0806, 0x8035];

/// What a literal needs positively in its term to be exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// Nothing (Ethernet addresses, the wire length).
    None,
    /// A VLAN tag (a TPID literal) at every shift below `k`.
    Below(u8),
    /// Tags below `k` and, at shift `k`, a link-type literal with one of these EtherTypes.
    At(u8, &'static [u32]),
}

/// The kernel's view of a literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapped {
    /// Holds exactly when `field`'s value is in `set` (inside the guard's region).
    Field {
        /// The field.
        field: u8,
        /// Values for which the literal holds.
        set: FieldSet,
        /// What the term must hold for this to be exact.
        guard: Guard,
    },
    /// Not expressible: why (a sentence for the user).
    Inexact(&'static str),
    /// Always true or always false (a relation without loads).
    Const(bool),
}

/// Bits of an LPM field's value (0 for array fields).
pub const fn lpm_width(f: u8) -> u8 {
    match f {
        field::L3 => 40,
        field::SADDR4 | field::DADDR4 => 32,
        field::SADDR6 | field::DADDR6 => 128,
        field::SMAC | field::DMAC => 48,
        _ => 0,
    }
}

/// The VLAN shift of a predicate's context when it is plain outer Ethernet (only `vlan`
/// shifts applied), or why not.
pub fn plain_ethernet(e: &Encap) -> Result<u8, &'static str> {
    if e.geneve {
        return Err("geneve is not classified in the kernel");
    }
    if e.mpls_depth > 0 {
        return Err("mpls is not classified in the kernel");
    }
    match e.link {
        Link::Ethernet => {}
        Link::Ppp => return Err("pppoes is not classified in the kernel"),
        _ => return Err("only Ethernet links are classified in the kernel"),
    }
    let k = e.vlan_depth;
    let sh = 4 * u32::from(k);
    if e.linkhdr != Off::abs(0)
        || e.linktype != Some(Off::abs(12 + sh))
        || e.linkpl != Off::abs(14 + sh)
        || e.nl != 0
    {
        return Err("unexpected header offsets");
    }
    Ok(k)
}

/// First byte of the L3 key for every tag stack of exactly `k` tags (`k <= MAX_VLAN`).
fn byte0s_at_depth(k: u8) -> Vec<u8> {
    let mut out = Vec::new();
    let classes: &[u8] = &[1, 2, 3];
    match k {
        0 => out.push(0),
        1 => {
            for &t0 in classes {
                out.push((1 << 6) | (t0 << 4));
            }
        }
        _ => {
            for &t0 in classes {
                for &t1 in classes {
                    out.push((k << 6) | (t0 << 4) | (t1 << 2));
                }
            }
        }
    }
    out
}

/// An L3 key prefix: `byte0`, EtherType, then optionally `a` and `b`.
fn l3(byte0: u8, et: u32, a: Option<u8>, b: Option<u8>) -> Prefix {
    let mut v: u128 = u128::from(byte0) << 32 | u128::from(et & 0xffff) << 16;
    let mut len = 24;
    if let Some(a) = a {
        v |= u128::from(a) << 8;
        len = 32;
        if let Some(b) = b {
            v |= u128::from(b);
            len = 40;
        }
    }
    Prefix::of_value(v, 40, len)
}

/// EtherType `et` (not a TPID) at shift `k`: exactly `k` tags then `et`.
fn ethertype_at(k: u8, et: u32) -> PrefixSet {
    PrefixSet::from_prefixes(
        40,
        byte0s_at_depth(k)
            .into_iter()
            .map(|b| l3(b, et, None, None)),
    )
}

/// TPID class `class` at shift `k < MAX_VLAN`: more than `k` tags, tag `k` of that class.
fn tpid_at(k: u8, class: u8) -> PrefixSet {
    let mut out = Vec::new();
    for depth in (k + 1)..=VLAN_DEEP {
        if k == 0 {
            let b = (depth << 6) | (class << 4);
            out.push(Prefix::of_value(u128::from(b) << 32, 40, 4));
        } else {
            for t0 in 1..=3u8 {
                let b = (depth << 6) | (t0 << 4) | (class << 2);
                out.push(Prefix::of_value(u128::from(b) << 32, 40, 6));
            }
        }
    }
    PrefixSet::from_prefixes(40, out)
}

/// An L3 key set at shift `k` for EtherType `et` and `(a, b)` choices.
fn l3_set(k: u8, et: u32, ab: &[(Option<u8>, Option<u8>)]) -> PrefixSet {
    let mut out = Vec::new();
    for b0 in byte0s_at_depth(k) {
        for &(a, b) in ab {
            out.push(l3(b0, et, a, b));
        }
    }
    PrefixSet::from_prefixes(40, out)
}

fn shift_ok(k: u8) -> Result<u8, &'static str> {
    if k > MAX_VLAN {
        Err("more than 2 VLAN tags are not classified in the kernel")
    } else {
        Ok(k)
    }
}

/// Whether a term holds, positively, a link-type literal at shift `k` with one of `types`
/// (used to pick the meaning of a network-header offset).
pub type HasGuard<'a> = &'a dyn Fn(u8, &[u32]) -> bool;

/// Maps a predicate (`has` tells which protocol its term checks).
pub fn map(p: &Pred, has: HasGuard<'_>) -> Mapped {
    match map_inner(p, has) {
        Ok(m) => m,
        Err(r) => Mapped::Inexact(r),
    }
}

fn map_inner(p: &Pred, has: HasGuard<'_>) -> Result<Mapped, &'static str> {
    Ok(match p {
        Pred::LinkProto { encap, proto } => {
            let k = plain_ethernet(encap)?;
            let proto = *proto;
            if proto <= 1500 {
                return Err("LLC SAPs (ether proto <= 1500) are not classified in the kernel");
            }
            if TPIDS.contains(&proto) {
                if k >= MAX_VLAN {
                    return Err("more than 2 VLAN tags are not classified in the kernel");
                }
                Mapped::Field {
                    field: field::L3,
                    set: FieldSet::Prefixes(tpid_at(k, tpid_class(proto as u16))),
                    guard: Guard::Below(k),
                }
            } else {
                let k = shift_ok(k)?;
                let set = if proto > 0xffff {
                    PrefixSet::empty(40)
                } else {
                    ethertype_at(k, proto)
                };
                Mapped::Field {
                    field: field::L3,
                    set: FieldSet::Prefixes(set),
                    guard: Guard::Below(k),
                }
            }
        }
        Pred::Ipv4Proto { encap, proto } => {
            let k = shift_ok(plain_ethernet(encap)?)?;
            let set = match u8::try_from(*proto) {
                Ok(b) => l3_set(k, 0x0800, &[(Some(0), Some(b)), (Some(1), Some(b))]),
                Err(_) => PrefixSet::empty(40),
            };
            Mapped::Field {
                field: field::L3,
                set: FieldSet::Prefixes(set),
                guard: Guard::At(k, IPV4),
            }
        }
        Pred::Ipv4FirstFragment { encap } => {
            let k = shift_ok(plain_ethernet(encap)?)?;
            Mapped::Field {
                field: field::L3,
                set: FieldSet::Prefixes(l3_set(k, 0x0800, &[(Some(1), None)])),
                guard: Guard::At(k, IPV4),
            }
        }
        Pred::Ipv6Proto {
            encap,
            proto,
            via_fragment,
        } => {
            let k = shift_ok(plain_ethernet(encap)?)?;
            let set = match u8::try_from(*proto) {
                Ok(b) => {
                    let mut ab = vec![(Some(b), None)];
                    if *via_fragment {
                        ab.push((Some(44), Some(b)));
                    }
                    l3_set(k, 0x86dd, &ab)
                }
                Err(_) => PrefixSet::empty(40),
            };
            Mapped::Field {
                field: field::L3,
                set: FieldSet::Prefixes(set),
                guard: Guard::At(k, IPV6),
            }
        }
        Pred::Ipv4Addr {
            encap,
            field: f,
            addr,
            mask,
        } => {
            let k = shift_ok(plain_ethernet(encap)?)?;
            if mask.leading_ones() + mask.trailing_zeros() != 32 {
                return Err("non-contiguous IPv4 masks are not classified in the kernel");
            }
            let (fid, types) = match f {
                V4Field::IpSrc => (field::SADDR4, IPV4),
                V4Field::IpDst => (field::DADDR4, IPV4),
                V4Field::ArpSrc => (field::SADDR4, ARP),
                V4Field::ArpDst => (field::DADDR4, ARP),
            };
            let set = if addr & !mask != 0 {
                PrefixSet::empty(32)
            } else {
                PrefixSet::from_prefixes(
                    32,
                    [Prefix::of_value(
                        u128::from(*addr),
                        32,
                        mask.leading_ones() as u8,
                    )],
                )
            };
            Mapped::Field {
                field: fid,
                set: FieldSet::Prefixes(set),
                guard: Guard::At(k, types),
            }
        }
        Pred::Ipv6Addr {
            encap,
            side,
            addr,
            mask,
        } => {
            let k = shift_ok(plain_ethernet(encap)?)?;
            let join = |w: &[u32; 4]| w.iter().fold(0u128, |acc, &x| acc << 32 | u128::from(x));
            let (a, m) = (join(addr), join(mask));
            if m.leading_ones() + m.trailing_zeros() != 128 {
                return Err("non-contiguous IPv6 masks are not classified in the kernel");
            }
            let set = if a & !m != 0 {
                PrefixSet::empty(128)
            } else {
                PrefixSet::from_prefixes(128, [Prefix::of_value(a, 128, m.leading_ones() as u8)])
            };
            Mapped::Field {
                field: if *side == Side::Src {
                    field::SADDR6
                } else {
                    field::DADDR6
                },
                set: FieldSet::Prefixes(set),
                guard: Guard::At(k, IPV6),
            }
        }
        Pred::Port {
            encap,
            v6,
            side,
            lo,
            hi,
        } => {
            let k = shift_ok(plain_ethernet(encap)?)?;
            let fid = if *side == Side::Src {
                field::SPORT
            } else {
                field::DPORT
            };
            Mapped::Field {
                field: fid,
                set: FieldSet::Ranges(RangeSet::from_ranges(
                    65_536,
                    [(u32::from(*lo), u32::from(*hi))],
                )),
                guard: Guard::At(k, if *v6 { IPV6 } else { IPV4 }),
            }
        }
        Pred::EtherAddr { encap, side, mac } => {
            ether_link(encap)?;
            let v = mac.iter().fold(0u128, |acc, &b| acc << 8 | u128::from(b));
            Mapped::Field {
                field: if *side == Side::Src {
                    field::SMAC
                } else {
                    field::DMAC
                },
                set: FieldSet::Prefixes(PrefixSet::from_prefixes(
                    48,
                    [Prefix::of_value(v, 48, 48)],
                )),
                guard: Guard::None,
            }
        }
        Pred::EtherMulticast { encap } => {
            ether_link(encap)?;
            let odd = (0..=255u128)
                .filter(|b| b & 1 == 1)
                .map(|b| Prefix::of_value(b << 40, 48, 8));
            Mapped::Field {
                field: field::DMAC,
                set: FieldSet::Prefixes(PrefixSet::from_prefixes(48, odd)),
                guard: Guard::None,
            }
        }
        Pred::VlanId { encap, id } => {
            let k = plain_ethernet(encap)?;
            let fid = match k {
                0 => field::VID0,
                1 => field::VID1,
                _ => return Err("VLAN ids beyond the second tag are not classified in the kernel"),
            };
            Mapped::Field {
                field: fid,
                set: FieldSet::Ranges(RangeSet::from_ranges(
                    4_096,
                    [(u32::from(*id), u32::from(*id))],
                )),
                guard: Guard::At(k, TPIDS),
            }
        }
        Pred::Relation { lhs, op, rhs } => relation(lhs, *op, rhs, has)?,
        Pred::MacAt { .. } => return Err("802.11 addresses are not classified in the kernel"),
        Pred::MplsLabel { .. } | Pred::MplsNotBottom { .. } => {
            return Err("mpls is not classified in the kernel")
        }
        Pred::PppoeSession { .. } => return Err("pppoes is not classified in the kernel"),
        Pred::Protochain { .. } => return Err("protochain is not classified in the kernel"),
        Pred::GeneveHeader { .. } | Pred::GeneveEnter { .. } | Pred::GeneveIsEthernet { .. } => {
            return Err("geneve is not classified in the kernel")
        }
    })
}

fn ether_link(e: &Encap) -> Result<(), &'static str> {
    if e.geneve {
        return Err("geneve is not classified in the kernel");
    }
    if e.link != Link::Ethernet || e.linkhdr != Off::abs(0) {
        return Err("only Ethernet links are classified in the kernel");
    }
    Ok(())
}

/// What a relation's loads read: a whole array field, or a part of an LPM field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Input {
    /// An array field, whole (ports, transport bytes, wire length).
    Array(u8),
    /// `ip[9]`: the IPv4 protocol (the L3 key's `b`).
    Ipv4Proto,
    /// `ip6[6]`: the IPv6 next header (the L3 key's `a`).
    Ipv6Next,
    /// `ip[6:2]`, when only "fragment offset zero" matters (the L3 key's `a`).
    Ipv4FragWord,
    /// The first 8 or 16 bits of an address field (`ip[16] >= 224`, `ip6[24] == 255`,
    /// `ether[0] & 1 != 0`).
    AddrBits(u8, u8),
    /// `ether[12:2]`: the outer EtherType or TPID (the L3 key's VLAN byte and EtherType).
    OuterType,
}

/// The field a value's loads read, with its guard (`acc` stays `None` for a constant).
fn inputs(
    v: &Value,
    acc: &mut Option<(Input, Guard)>,
    has: HasGuard<'_>,
) -> Result<(), &'static str> {
    let found = match v {
        Value::Const(_) => return Ok(()),
        Value::WireLen => (Input::Array(field::LEN), Guard::None),
        Value::Bin(_, a, b) => {
            inputs(a, acc, has)?;
            return inputs(b, acc, has);
        }
        Value::Neg(a) => return inputs(a, acc, has),
        Value::Load { base, index, size } => {
            let Value::Const(i) = **index else {
                return Err("loads at computed offsets are not classified in the kernel");
            };
            match base {
                LoadBase::TransportV4(e) | LoadBase::TransportV6(e) => {
                    let types = if matches!(base, LoadBase::TransportV4(_)) {
                        IPV4
                    } else {
                        IPV6
                    };
                    let k = shift_ok(plain_ethernet(e)?)?;
                    let f = match (size, i) {
                        (1, 0) => field::L4B0,
                        (1, 1) => field::L4B1,
                        (1, 13) => field::L4B13,
                        (2, 0) => field::SPORT,
                        (2, 2) => field::DPORT,
                        _ => return Err("transport loads other than bytes 0, 1, 13 and the ports are not classified in the kernel"),
                    };
                    (Input::Array(f), Guard::At(k, types))
                }
                LoadBase::Net(e) => {
                    let k = shift_ok(plain_ethernet(e)?)?;
                    // The meaning of a network-header offset depends on the protocol the
                    // term checks at that shift.
                    let candidates: &[(Input, &'static [u32])] = match (size, i) {
                        (1, 9) => &[(Input::Ipv4Proto, IPV4)],
                        (2, 6) => &[(Input::Ipv4FragWord, IPV4)],
                        (1, 12) => &[(Input::AddrBits(field::SADDR4, 8), IPV4)],
                        (1, 16) => &[(Input::AddrBits(field::DADDR4, 8), IPV4)],
                        (1, 14) => &[(Input::AddrBits(field::SADDR4, 8), ARP)],
                        (1, 6) => &[(Input::Ipv6Next, IPV6)],
                        (1, 8) => &[(Input::AddrBits(field::SADDR6, 8), IPV6)],
                        (1, 24) => &[
                            (Input::AddrBits(field::DADDR6, 8), IPV6),
                            (Input::AddrBits(field::DADDR4, 8), ARP),
                        ],
                        _ => &[],
                    };
                    let Some(&(input, types)) = candidates.iter().find(|(_, t)| has(k, t)) else {
                        return Err("network-header loads (ip[...]) other than the protocol, the fragment offset and the first address bytes are not classified in the kernel");
                    };
                    (input, Guard::At(k, types))
                }
                LoadBase::Link(e) => {
                    ether_link(e)?;
                    let input = match (size, i) {
                        (1, 0) => Input::AddrBits(field::DMAC, 8),
                        (2, 0) => Input::AddrBits(field::DMAC, 16),
                        (1, 6) => Input::AddrBits(field::SMAC, 8),
                        (2, 6) => Input::AddrBits(field::SMAC, 16),
                        (2, 12) => Input::OuterType,
                        _ => return Err("link-header loads (ether[...]) other than the first bytes of the addresses and the EtherType are not classified in the kernel"),
                    };
                    (input, Guard::None)
                }
            }
        }
    };
    match acc {
        None => *acc = Some(found),
        Some(prev) if *prev == found => {}
        Some(_) => return Err("relations over several fields are not classified in the kernel"),
    }
    Ok(())
}

fn eval(v: &Value, x: u32) -> Option<u32> {
    Some(match v {
        Value::Const(c) => *c,
        Value::WireLen | Value::Load { .. } => x,
        Value::Bin(op, a, b) => apply_op(*op, eval(a, x)?, eval(b, x)?)?,
        Value::Neg(a) => eval(a, x)?.wrapping_neg(),
    })
}

/// The aligned blocks `(value, prefix length)` of `bits`-bit values covering `lo..=hi`.
fn blocks(lo: u32, hi: u32, bits: u8) -> Vec<(u32, u8)> {
    let mut out = Vec::new();
    let mut v = u64::from(lo);
    let end = u64::from(hi) + 1;
    while v < end {
        // Largest aligned block at v that fits.
        let mut size: u64 = if v == 0 {
            1 << bits
        } else {
            v & v.wrapping_neg()
        };
        while v + size > end {
            size >>= 1;
        }
        let len = bits - size.trailing_zeros() as u8;
        out.push((v as u32, len));
        v += size;
    }
    out
}

fn relation(lhs: &Value, op: Cmp, rhs: &Value, has: HasGuard<'_>) -> Result<Mapped, &'static str> {
    let mut acc = None;
    inputs(lhs, &mut acc, has)?;
    inputs(rhs, &mut acc, has)?;
    let Some((input, guard)) = acc else {
        return match (eval(lhs, 0), eval(rhs, 0)) {
            (Some(a), Some(b)) => Ok(Mapped::Const(op.apply(a, b))),
            _ => Err("relations that divide by zero are not classified in the kernel"),
        };
    };
    let size = match input {
        Input::Array(f) => ebpf_filters_common::array_field_len(f),
        Input::Ipv4FragWord | Input::OuterType => 65_536,
        Input::AddrBits(_, bits) => 1 << bits,
        Input::Ipv4Proto | Input::Ipv6Next => 256,
    };
    let mut failed = false;
    let set = RangeSet::from_predicate(size, |x| match (eval(lhs, x), eval(rhs, x)) {
        (Some(a), Some(b)) => op.apply(a, b),
        _ => {
            failed = true;
            false
        }
    });
    if failed {
        return Err("relations that divide by a packet value are not classified in the kernel");
    }
    let k = match guard {
        Guard::At(k, _) | Guard::Below(k) => k,
        Guard::None => 0,
    };
    let byte_blocks = || -> Vec<(u32, u8)> {
        set.items
            .iter()
            .flat_map(|&(lo, hi)| blocks(lo, hi, 8))
            .collect()
    };
    let (f, fs) = match input {
        Input::Array(f) => (f, FieldSet::Ranges(set)),
        Input::Ipv4Proto => {
            let mut out = Vec::new();
            for b0 in byte0s_at_depth(k) {
                for a in 0..=1u8 {
                    for &(v, l) in &byte_blocks() {
                        let p = l3(b0, 0x0800, Some(a), Some(v as u8));
                        out.push(Prefix::new(p.bits, 32 + l));
                    }
                }
            }
            (
                field::L3,
                FieldSet::Prefixes(PrefixSet::from_prefixes(40, out)),
            )
        }
        Input::Ipv6Next => {
            let mut out = Vec::new();
            for b0 in byte0s_at_depth(k) {
                for &(v, l) in &byte_blocks() {
                    let p = l3(b0, 0x86dd, Some(v as u8), None);
                    out.push(Prefix::new(p.bits, 24 + l));
                }
            }
            (
                field::L3,
                FieldSet::Prefixes(PrefixSet::from_prefixes(40, out)),
            )
        }
        Input::Ipv4FragWord => {
            // Only expressible when the verdict depends on "offset zero" alone.
            let zero = set.contains(0);
            let nonzero = set.contains(1);
            if (0..65_536u32)
                .any(|v| set.contains(v) != if v & 0x1fff == 0 { zero } else { nonzero })
            {
                return Err(
                    "fragment tests other than \"offset zero\" are not classified in the kernel",
                );
            }
            let mut out = Vec::new();
            for b0 in byte0s_at_depth(k) {
                if zero {
                    out.push(l3(b0, 0x0800, Some(1), None));
                }
                if nonzero {
                    out.push(l3(b0, 0x0800, Some(0), None));
                }
            }
            (
                field::L3,
                FieldSet::Prefixes(PrefixSet::from_prefixes(40, out)),
            )
        }
        Input::AddrBits(f, bits) => {
            let width = lpm_width(f);
            let out = set
                .items
                .iter()
                .flat_map(|&(lo, hi)| blocks(lo, hi, bits))
                .map(|(v, l)| Prefix::of_value(u128::from(v) << (width - bits), width, l));
            (f, FieldSet::Prefixes(PrefixSet::from_prefixes(width, out)))
        }
        Input::OuterType => {
            // A TPID of class c: at least one tag, the first of class c; anything else: no
            // tag and that EtherType.
            let mut out = Vec::new();
            for &t in TPIDS {
                if set.contains(t) {
                    out.extend(tpid_at(0, tpid_class(t as u16)).items);
                }
            }
            let tpids = RangeSet::from_ranges(65_536, TPIDS.iter().map(|&t| (t, t)));
            let others = set.intersect(&tpids.complement());
            for &(lo, hi) in &others.items {
                for (v, l) in blocks(lo, hi, 16) {
                    out.push(Prefix::of_value(u128::from(v) << 16, 40, 8 + l));
                }
            }
            (
                field::L3,
                FieldSet::Prefixes(PrefixSet::from_prefixes(40, out)),
            )
        }
    };
    Ok(Mapped::Field {
        field: f,
        set: fs,
        guard,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_blocks() {
        assert_eq!(blocks(0, 255, 8), vec![(0, 0)]);
        assert_eq!(blocks(224, 255, 8), vec![(224, 3)]);
        assert_eq!(blocks(6, 6, 8), vec![(6, 8)]);
        assert_eq!(blocks(5, 9, 8), vec![(5, 8), (6, 7), (8, 7)]);
    }

    #[test]
    fn l3_sets_follow_the_key_layout() {
        let ip = ethertype_at(0, 0x0800);
        let key = |b: [u8; 5]| -> u128 {
            Prefix::of_value(b.iter().fold(0u128, |a, &x| a << 8 | u128::from(x)), 40, 40).bits
        };
        use ebpf_filters_common::l3_key;
        assert!(ip.matches(key(l3_key(0, 0, 0, 0x0800, 1, 6))));
        assert!(!ip.matches(key(l3_key(1, 1, 0, 0x0800, 1, 6))));
        let ip1 = ethertype_at(1, 0x0800);
        assert!(ip1.matches(key(l3_key(1, 2, 0, 0x0800, 0, 17))));
        let vlan0 = tpid_at(0, 1);
        assert!(vlan0.matches(key(l3_key(1, 1, 0, 0x0800, 1, 6))));
        assert!(vlan0.matches(key(l3_key(VLAN_DEEP, 1, 3, 0, 0, 0))));
        assert!(!vlan0.matches(key(l3_key(1, 2, 0, 0x0800, 1, 6))));
        let vlan1 = tpid_at(1, 3);
        assert!(vlan1.matches(key(l3_key(2, 1, 3, 0x86dd, 6, 0))));
        assert!(!vlan1.matches(key(l3_key(1, 1, 0, 0x86dd, 6, 0))));
    }
}

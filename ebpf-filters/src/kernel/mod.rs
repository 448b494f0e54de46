//! The filter compiler's kernel back end: the filters of up to 64 rules → the XDP program's
//! classification tables (the layout of [`ebpf_filters_common`]), plus a userspace reference
//! of the program ([`PacketKey::extract`] and [`Tables::classify`]).
//!
//! # Compilation ([`Tables::compile`])
//!
//! 1. Each rule's IR tree is expanded into a disjunction of conjunctive terms with
//!    short-circuit expansion ([`dnf`]): every literal keeps, in its term, the literals that
//!    guard it in libpcap's left-to-right evaluation.
//! 2. Each literal becomes a set of values of one kernel field ([`lits`]): prefixes of an
//!    LPM field, ranges of an array field. It is *exact* when its term holds its guard
//!    positively (the `vlan` literals below its shift, and the EtherType of its header at its
//!    shift); otherwise, and for what the tables cannot say (mpls, pppoes, geneve, LLC SAPs,
//!    loads at other offsets, protochain ...), it becomes `true` and the rule is *flagged*:
//!    the kernel over-approximates it and userspace re-checks its packets.
//! 3. A term's literals on one field are intersected; contradictory terms are dropped; terms
//!    that differ in one field only are merged (union of that field's sets), terms implied by
//!    another are dropped. Every field an exact literal reads counts as *used*, even when its
//!    terms were dropped: a packet cut before it is then uncertain, as libpcap's program may
//!    have read there and rejected the packet.
//! 4. Over [`MAX_TERMS`] terms in all, the rules with the most terms are coarsened (their
//!    least selective field constraints dropped, in the order of [`COARSEN_ORDER`]) and
//!    flagged, until the terms fit; likewise, over half of [`LPM_MAX_ENTRIES`] LPM entries
//!    (one generation), the rules with the most prefixes.
//! 5. Tables: per LPM field, the *chain* construction: every prefix any term uses, plus the
//!    root; the entry of prefix `p` holds the terms one of whose prefixes is an ancestor of
//!    `p` or `p` itself (the longest-prefix match of an address is the longest collected
//!    prefix containing it, and a term's set is a union of collected prefixes), plus the terms
//!    that do not constrain the field. Array fields: for every value, the terms that accept
//!    it. Term → rule byte tables and the [`GenConfig`].

//!
//! # For the loader and the XDP program
//!
//! Everything is written for generation 0: to install generation `g`, set byte 0 of every
//! [`Tables::lpm_entries`] key to `g` (and delete the LPM entries `g` held before: a stale
//! prefix would still match), write [`Tables::array_entries`] from `array_index(g, ..)` and
//! [`Tables::term_rules`] from `term_rules_index(g, ..)`, then `COMO_GEN[g]` =
//! [`Tables::gen_config`], then flip the generation. The program extracts fields as
//! [`PacketKey::extract`] documents; besides present and absent, a field can be *not
//! applicable* (no such header: no lookup, no uncertainty), which the contract's text does
//! not name but its rule "absent and used → uncertain" needs to stay cheap on non-IP traffic.

pub mod dnf;
pub mod lits;
pub mod packet;
pub mod sets;

use std::collections::HashMap;

use ebpf_filters_common::{
    array_field_base, array_field_len, field, GenConfig, LpmData, Terms, XdpMeta, ARRAY_FIELDS_LEN,
    LPM_DATA_LEN, LPM_MAX_ENTRIES, LPM_ROOT_PREFIX, MAX_RULES, MAX_TERMS, META_MAGIC,
    TERM_RULES_LEN, TERM_WORDS,
};

pub use packet::{FieldState, PacketKey};
use sets::{FieldSet, Prefix};

use crate::ir::Link;
use crate::Filter;

/// The order in which a coarsened rule loses its field constraints (least selective first).
pub const COARSEN_ORDER: [u8; field::COUNT as usize] = [
    field::L4B13,
    field::L4B1,
    field::L4B0,
    field::LEN,
    field::VID1,
    field::VID0,
    field::SPORT,
    field::DPORT,
    field::SMAC,
    field::DMAC,
    field::SADDR6,
    field::DADDR6,
    field::SADDR4,
    field::DADDR4,
    field::L3,
];

/// Why a set of rules cannot be compiled into kernel tables.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    /// More rules than bits in the mask.
    #[error("{0} rules given, at most {MAX_RULES} fit in the kernel tables")]
    TooManyRules(usize),
    /// A filter compiled for another link type than Ethernet.
    #[error("rule {0}: the filter was compiled for a link type other than Ethernet")]
    NotEthernet(usize),
    /// The terms do not fit even after coarsening every rule.
    #[error("{0} terms after coarsening every rule, at most {MAX_TERMS} fit")]
    TooManyTerms(usize),
    /// The LPM entries of one generation do not fit in the trie.
    #[error("{0} LPM entries, at most {max} fit in one generation", max = LPM_MAX_ENTRIES / 2)]
    TooManyLpmEntries(usize),
}

/// What the compiler did with one rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleReport {
    /// Terms the rule takes in the tables.
    pub terms: usize,
    /// Whether the kernel's verdict is exactly libpcap's (else the rule is flagged and its
    /// matches are re-checked in userspace).
    pub exact: bool,
    /// Why the rule is not exact (sentences for the user; empty when exact).
    pub reasons: Vec<String>,
}

/// A term: the set of values accepted on each field (`None` = unconstrained).
type Term = [Option<FieldSet>; field::COUNT as usize];

/// The compiled tables of one generation (written with generation 0; the loader rewrites it).
#[derive(Debug, Clone)]
pub struct Tables {
    gen: GenConfig,
    lpm: Vec<(u32, LpmData, Terms)>,
    array: Vec<Terms>,
    term_rules: Vec<u64>,
    reports: Vec<Option<RuleReport>>,
    /// Userspace LPM: per field, the prefix lengths in use (longest first) and the entries.
    lpm_lens: Vec<Vec<u8>>,
    lpm_map: HashMap<(u8, u8, u128), Terms>,
}

/// Whether field `f` is an LPM field.
fn is_lpm(f: u8) -> bool {
    f < field::FIRST_ARRAY
}

fn add_reason(reasons: &mut Vec<String>, r: &str) {
    if !reasons.iter().any(|x| x == r) {
        reasons.push(r.to_owned());
    }
}

/// Turns one expanded term into field constraints (`None` when contradictory).
fn build_term(
    raw: &dnf::RawTerm<'_>,
    reasons: &mut Vec<String>,
    touched: &mut u32,
) -> Option<Term> {
    // Positive link-type literals by shift: the guards present.
    let mut facts: Vec<(u8, u32)> = Vec::new();
    for (p, pos) in raw {
        if let (crate::ir::Pred::LinkProto { encap, proto }, true) = (p, pos) {
            if let Ok(k) = lits::plain_ethernet(encap) {
                facts.push((k, *proto));
            }
        }
    }
    let has = |k: u8, types: &[u32]| facts.iter().any(|&(s, p)| s == k && types.contains(&p));
    let below = |k: u8| (0..k).all(|j| has(j, lits::TPIDS));
    let mut term: Term = Default::default();
    let mut dead = false;
    for (p, pos) in raw {
        match lits::map(p, &|k, types| has(k, types)) {
            lits::Mapped::Inexact(r) => add_reason(reasons, r),
            lits::Mapped::Const(b) => {
                if b != *pos {
                    dead = true;
                }
            }
            lits::Mapped::Field {
                field: f,
                set,
                guard,
            } => {
                let ok = match guard {
                    lits::Guard::None => true,
                    lits::Guard::Below(k) => below(k),
                    lits::Guard::At(k, types) => below(k) && has(k, types),
                };
                if !ok {
                    add_reason(
                        reasons,
                        "a header test without its protocol check before it (e.g. after 'vlan' in an 'or') is not classified in the kernel",
                    );
                    continue;
                }
                *touched |= 1 << f;
                let s = if *pos { set } else { set.complement() };
                let Some(slot) = term.get_mut(usize::from(f)) else {
                    continue;
                };
                let next = match slot.take() {
                    None => s,
                    Some(prev) => prev.intersect(&s),
                };
                if next.is_empty() {
                    dead = true;
                }
                *slot = Some(next);
            }
        }
    }
    if dead {
        return None;
    }
    for slot in term.iter_mut() {
        if slot.as_ref().is_some_and(FieldSet::is_full) {
            *slot = None;
        }
    }
    Some(term)
}

/// Whether `a` accepts everything `b` accepts (field by field).
fn term_includes(a: &Term, b: &Term) -> bool {
    a.iter().zip(b.iter()).all(|(x, y)| match (x, y) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(x), Some(y)) => x.includes(y),
    })
}

/// Merges terms that differ in one field, drops terms implied by another.
fn merge(terms: &mut Vec<Term>) {
    loop {
        let mut changed = false;
        let mut i = 0;
        while i < terms.len() {
            let mut j = i + 1;
            while j < terms.len() {
                let (Some(a), Some(b)) = (terms.get(i), terms.get(j)) else {
                    break;
                };
                if term_includes(a, b) {
                    terms.remove(j);
                    changed = true;
                    continue;
                }
                if term_includes(b, a) {
                    terms.swap(i, j);
                    terms.remove(j);
                    changed = true;
                    j = i + 1;
                    continue;
                }
                let diff: Vec<usize> = (0..a.len()).filter(|&f| a.get(f) != b.get(f)).collect();
                if let [f] = diff.as_slice() {
                    let merged = match (a.get(*f), b.get(*f)) {
                        (Some(Some(x)), Some(Some(y))) => {
                            let u = x.union(y);
                            (!u.is_full()).then_some(u)
                        }
                        _ => None,
                    };
                    if let Some(slot) = terms.get_mut(i).and_then(|t| t.get_mut(*f)) {
                        *slot = merged;
                    }
                    terms.remove(j);
                    changed = true;
                    j = i + 1;
                    continue;
                }
                j += 1;
            }
            i += 1;
        }
        if !changed {
            return;
        }
    }
}

/// One rule in the making.
struct RuleBuild {
    terms: Vec<Term>,
    reasons: Vec<String>,
    coarsened: usize,
    /// Fields of every exact literal, including those of terms dropped as contradictory or
    /// absorbed: all count as used, so a packet cut before any field the rule's libpcap
    /// program might load is uncertain (re-checked) rather than decided without it.
    touched: u32,
}

fn compile_rule(f: &Filter) -> RuleBuild {
    let mut reasons = Vec::new();
    let d = dnf::expand(&f.ir().root, true);
    if d.approximated {
        add_reason(
            &mut reasons,
            "the expression expands to too many terms: parts of it are approximated",
        );
    }
    let mut touched = 0;
    let mut terms: Vec<Term> = d
        .terms
        .iter()
        .filter_map(|t| build_term(t, &mut reasons, &mut touched))
        .collect();
    merge(&mut terms);
    RuleBuild {
        terms,
        reasons,
        coarsened: 0,
        touched,
    }
}

/// Drops the next field of [`COARSEN_ORDER`] from every term of the rule; false when
/// nothing is left to drop.
fn coarsen(r: &mut RuleBuild) -> bool {
    while let Some(&f) = COARSEN_ORDER.get(r.coarsened) {
        r.coarsened += 1;
        let mut any = false;
        for t in r.terms.iter_mut() {
            if let Some(slot) = t.get_mut(usize::from(f)) {
                any |= slot.take().is_some();
            }
        }
        if any {
            merge(&mut r.terms);
            add_reason(
                &mut r.reasons,
                "coarsened: the rules need more terms or LPM entries than the kernel tables hold",
            );
            return true;
        }
    }
    false
}

/// LPM entries the rules need: distinct prefixes per LPM field, plus the roots.
fn lpm_count<'a>(builds: impl Iterator<Item = &'a RuleBuild>) -> usize {
    let mut seen: std::collections::HashSet<(usize, Prefix)> = std::collections::HashSet::new();
    for b in builds {
        for t in &b.terms {
            for (f, s) in t.iter().enumerate() {
                if let Some(FieldSet::Prefixes(p)) = s {
                    seen.extend(p.items.iter().map(|q| (f, *q)));
                }
            }
        }
    }
    seen.len() + usize::from(field::FIRST_ARRAY)
}

/// The LPM data bytes of prefix `p` of field `f` in generation 0.
fn lpm_data(f: u8, p: &Prefix) -> LpmData {
    let mut bytes = [0u8; LPM_DATA_LEN];
    let width = lits::lpm_width(f);
    let nbytes = usize::from(width / 8);
    let v = p.bits >> (128 - u32::from(width));
    for (i, slot) in bytes.iter_mut().skip(2).take(nbytes).enumerate() {
        *slot = (v >> (8 * (nbytes - 1 - i))) as u8;
    }
    if let Some(b) = bytes.get_mut(1) {
        *b = f;
    }
    LpmData { bytes }
}

impl Tables {
    /// Compiles the rules: slot `i` (bit `i`) is `rules[i]`, `None` for an inactive slot.
    /// Filters must be compiled for Ethernet.
    pub fn compile(rules: &[Option<&Filter>]) -> Result<Tables, KernelError> {
        if rules.len() > MAX_RULES {
            return Err(KernelError::TooManyRules(rules.len()));
        }
        let mut builds: Vec<Option<RuleBuild>> = Vec::with_capacity(rules.len());
        for (i, r) in rules.iter().enumerate() {
            match r {
                None => builds.push(None),
                Some(f) => {
                    if f.ir().link != Link::Ethernet {
                        return Err(KernelError::NotEthernet(i));
                    }
                    builds.push(Some(compile_rule(f)));
                }
            }
        }
        // Term budget.
        loop {
            let total: usize = builds.iter().flatten().map(|b| b.terms.len()).sum();
            if total <= MAX_TERMS {
                break;
            }
            let mut order: Vec<usize> = (0..builds.len())
                .filter(|&i| builds.get(i).is_some_and(|b| b.is_some()))
                .collect();
            order.sort_by_key(|&i| {
                std::cmp::Reverse(
                    builds
                        .get(i)
                        .and_then(|b| b.as_ref())
                        .map_or(0, |b| b.terms.len()),
                )
            });
            let mut progressed = false;
            for i in order {
                if let Some(Some(b)) = builds.get_mut(i) {
                    if coarsen(b) {
                        progressed = true;
                        break;
                    }
                }
            }
            if !progressed {
                return Err(KernelError::TooManyTerms(total));
            }
        }
        // LPM budget: coarsen the rules with the most prefixes until the entries fit.
        loop {
            let count = lpm_count(builds.iter().flatten());
            if count <= (LPM_MAX_ENTRIES / 2) as usize {
                break;
            }
            let worst = (0..builds.len()).max_by_key(|&i| match builds.get(i) {
                Some(Some(b)) => lpm_count(std::iter::once(b)),
                _ => 0,
            });
            let coarsened = match worst.and_then(|i| builds.get_mut(i)) {
                Some(Some(b)) => coarsen(b),
                _ => false,
            };
            if !coarsened {
                return Err(KernelError::TooManyLpmEntries(count));
            }
        }
        Self::build(builds)
    }

    fn build(builds: Vec<Option<RuleBuild>>) -> Result<Tables, KernelError> {
        let mut gen = GenConfig::default();
        let mut terms: Vec<(usize, Term)> = Vec::new();
        let mut reports = vec![None; MAX_RULES];
        for (i, b) in builds.into_iter().enumerate() {
            let Some(b) = b else { continue };
            gen.rules |= 1 << i;
            if !b.reasons.is_empty() {
                gen.flagged |= 1 << i;
            }
            gen.used |= b.touched;
            if let Some(slot) = reports.get_mut(i) {
                *slot = Some(RuleReport {
                    terms: b.terms.len(),
                    exact: b.reasons.is_empty(),
                    reasons: b.reasons,
                });
            }
            terms.extend(b.terms.into_iter().map(|t| (i, t)));
        }
        gen.nterms = terms.len() as u32;
        for (_, t) in &terms {
            for (f, s) in t.iter().enumerate() {
                if s.is_some() {
                    gen.used |= 1 << f;
                }
            }
        }
        // Terms that leave each field unconstrained.
        let mut free = [Terms::NONE; field::COUNT as usize];
        for (ti, (_, t)) in terms.iter().enumerate() {
            for (f, s) in t.iter().enumerate() {
                if s.is_none() {
                    if let Some(x) = free.get_mut(f) {
                        x.set(ti);
                    }
                }
            }
        }
        // LPM fields: chain construction.
        let mut lpm = Vec::new();
        let mut lpm_lens = vec![Vec::new(); usize::from(field::FIRST_ARRAY)];
        let mut lpm_map = HashMap::new();
        for f in 0..field::FIRST_ARRAY {
            let mut collected: Vec<Prefix> = vec![Prefix { bits: 0, len: 0 }];
            for (_, t) in &terms {
                if let Some(Some(FieldSet::Prefixes(s))) = t.get(usize::from(f)) {
                    collected.extend(s.items.iter().copied());
                }
            }
            collected.sort_unstable();
            collected.dedup();
            let base = free.get(usize::from(f)).copied().unwrap_or(Terms::ALL);
            let mut entry_terms = vec![base; collected.len()];
            // Term t is in the entry of every collected prefix one of its prefixes q contains:
            // those sort right after q (bits in q's range, length at least q's).
            for (ti, (_, t)) in terms.iter().enumerate() {
                let Some(Some(FieldSet::Prefixes(s))) = t.get(usize::from(f)) else {
                    continue;
                };
                for q in &s.items {
                    let end = q.bits | !sets::top_mask(q.len);
                    let start = collected.partition_point(|p| p.bits < q.bits);
                    for (p, ts) in collected
                        .iter()
                        .zip(entry_terms.iter_mut())
                        .skip(start)
                        .take_while(|(p, _)| p.bits <= end)
                    {
                        if p.len >= q.len {
                            ts.set(ti);
                        }
                    }
                }
            }
            let mut lens: Vec<u8> = Vec::new();
            for (p, ts) in collected.iter().zip(entry_terms) {
                lpm.push((LPM_ROOT_PREFIX + u32::from(p.len), lpm_data(f, p), ts));
                lpm_map.insert((f, p.len, p.bits), ts);
                if !lens.contains(&p.len) {
                    lens.push(p.len);
                }
            }
            lens.sort_unstable_by(|a, b| b.cmp(a));
            if let Some(slot) = lpm_lens.get_mut(usize::from(f)) {
                *slot = lens;
            }
        }
        if lpm.len() > (LPM_MAX_ENTRIES / 2) as usize {
            return Err(KernelError::TooManyLpmEntries(lpm.len()));
        }
        // Array fields: sweep the range boundaries.
        let mut array = vec![Terms::ALL; ARRAY_FIELDS_LEN as usize];
        for f in field::FIRST_ARRAY..field::COUNT {
            if gen.used & (1 << f) == 0 {
                continue;
            }
            let size = array_field_len(f) as usize;
            let base_idx = array_field_base(f) as usize;
            // toggles[v]: terms entering or leaving at value v.
            let mut toggles: HashMap<usize, Terms> = HashMap::new();
            for (ti, (_, t)) in terms.iter().enumerate() {
                if let Some(Some(FieldSet::Ranges(r))) = t.get(usize::from(f)) {
                    for &(lo, hi) in &r.items {
                        flip(toggles.entry(lo as usize).or_default(), ti);
                        let end = hi as usize + 1;
                        if end < size {
                            flip(toggles.entry(end).or_default(), ti);
                        }
                    }
                }
            }
            let mut cur = free.get(usize::from(f)).copied().unwrap_or(Terms::ALL);
            for v in 0..size {
                if let Some(t) = toggles.get(&v) {
                    for (c, x) in cur.w.iter_mut().zip(t.w.iter()) {
                        *c ^= x;
                    }
                }
                if let Some(slot) = array.get_mut(base_idx + v) {
                    *slot = cur;
                }
            }
        }
        // Term → rule byte tables.
        let mut term_rules = vec![0u64; TERM_RULES_LEN as usize];
        for byte in 0..TERM_WORDS * 8 {
            for v in 0..256usize {
                let mut rules = 0u64;
                for bit in 0..8 {
                    if v & (1 << bit) != 0 {
                        if let Some((r, _)) = terms.get(byte * 8 + bit) {
                            rules |= 1 << r;
                        }
                    }
                }
                if let Some(slot) = term_rules.get_mut(byte * 256 + v) {
                    *slot = rules;
                }
            }
        }
        Ok(Tables {
            gen,
            lpm,
            array,
            term_rules,
            reports,
            lpm_lens,
            lpm_map,
        })
    }

    /// The generation's configuration (`COMO_GEN[gen]`).
    pub fn gen_config(&self) -> GenConfig {
        self.gen
    }

    /// The LPM trie entries: (prefix length including the 16 bits of generation and field,
    /// key data with generation byte 0, terms). Every LPM field has a root entry.
    pub fn lpm_entries(&self) -> Vec<(u32, LpmData, Terms)> {
        self.lpm.clone()
    }

    /// The array-field entries of generation 0 (`ARRAY_FIELDS_LEN` of them, indexed by
    /// [`ebpf_filters_common::array_index`] with generation 0). Unused fields hold all ones.
    pub fn array_entries(&self) -> &[Terms] {
        &self.array
    }

    /// The term → rule byte tables of generation 0 (`TERM_RULES_LEN` entries, indexed by
    /// [`ebpf_filters_common::term_rules_index`] with generation 0).
    pub fn term_rules(&self) -> &[u64] {
        &self.term_rules
    }

    /// What the compiler did with rule `i` (`None` for an inactive slot).
    pub fn rule_report(&self, i: usize) -> Option<&RuleReport> {
        self.reports.get(i).and_then(Option::as_ref)
    }

    fn lookup_lpm(&self, f: u8, value: u128) -> Terms {
        let width = lits::lpm_width(f);
        let aligned = Prefix::of_value(value, width, width).bits;
        if let Some(lens) = self.lpm_lens.get(usize::from(f)) {
            for &len in lens {
                let p = Prefix::new(aligned, len);
                if let Some(t) = self.lpm_map.get(&(f, len, p.bits)) {
                    return *t;
                }
            }
        }
        Terms::ALL
    }

    /// Classifies a packet as the XDP program does (no allocation).
    pub fn classify(&self, key: &PacketKey) -> XdpMeta {
        let mut meta = XdpMeta {
            rules: 0,
            recheck: 0,
            magic: META_MAGIC,
            gen: 0,
        };
        if self.gen.used & key.absent != 0 {
            meta.rules = self.gen.rules;
            meta.recheck = self.gen.rules;
            return meta;
        }
        let mut acc = Terms::ALL;
        for f in 0..field::COUNT {
            if self.gen.used & (1 << f) == 0 {
                continue;
            }
            let FieldState::Present(v) = key.get(f) else {
                continue;
            };
            if is_lpm(f) {
                acc.and_with(&self.lookup_lpm(f, v));
            } else if let Some(t) = self.array.get(array_field_base(f) as usize + v as usize) {
                acc.and_with(t);
            }
        }
        let mut rules = 0u64;
        for (wi, w) in acc.w.iter().enumerate() {
            for b in 0..8 {
                let byte = ((w >> (8 * b)) & 0xff) as usize;
                if byte != 0 {
                    rules |= self
                        .term_rules
                        .get((wi * 8 + b) * 256 + byte)
                        .copied()
                        .unwrap_or(0);
                }
            }
        }
        meta.rules = rules & self.gen.rules;
        meta.recheck = meta.rules & self.gen.flagged;
        meta
    }
}

fn flip(t: &mut Terms, i: usize) {
    if let Some(w) = t.w.get_mut(i / 64) {
        *w ^= 1 << (i % 64);
    }
}

#[cfg(test)]
mod tests;

//! `CaptureState::update_run` against one `update` per packet: the same packets reach the
//! module, in the same order, with the same sequence numbers and the same parsed headers,
//! whatever the run's masks and wherever its headers come from.

use como_module::{erase, CaptureState, Cell, Interval, Module, ModuleError, Pkt, Run, RunLayers};
use como_packet::{Layers, Packet, Parsed};
use como_tracefile::TraceReader;
use serde::{Deserialize, Serialize};

/// A module that keeps everything it was given: sequence number, time, length, first bytes
/// and headers of every packet, in arrival order.
struct Witness;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    seen: Vec<(u64, u64, u64, Vec<u8>, String)>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

impl Module for Witness {
    type Config = NoArgs;
    type State = Vec<(u64, u64, u64, Vec<u8>, String)>;
    type Export = ();
    type Record = Record;
    const KIND: &'static str = "witness";

    fn new(_: NoArgs) -> Result<Self, ModuleError> {
        Ok(Self)
    }
    fn new_state(&self, _: Interval) -> Self::State {
        Vec::new()
    }
    fn update(&self, state: &mut Self::State, pkt: &Pkt<'_>) {
        let head = pkt.packet.data.iter().take(8).copied().collect();
        state.push((
            pkt.seq,
            pkt.ts_ns(),
            pkt.wire_len(),
            head,
            format!("{:?}", pkt.layers),
        ));
    }
    fn merge(&self, into: &mut Self::State, mut other: Self::State) {
        into.append(&mut other);
    }
    fn new_export(&self) {}
    fn export(&self, _: &mut (), _: Interval, seen: Self::State, out: &mut Vec<Record>) {
        out.push(Record { seen });
    }
    fn record_ts(&self, _: &Record) -> u64 {
        0
    }
    fn columns(&self) -> &'static [&'static str] {
        &["seq"]
    }
    fn rows(&self, r: &Record, row: &mut dyn FnMut(&[Cell<'_>])) {
        for s in &r.seen {
            row(&[Cell::U64(s.0)]);
        }
    }
}

/// Packets of several bundled traces (Ethernet with VLAN, IPv6, fragments, SCTP, PPP, raw IP
/// cut short), owned: (time, wire length, bytes, link type).
fn packets() -> Vec<(u64, u32, Vec<u8>, como_packet::LinkType)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/traces/");
    let mut out = Vec::new();
    for name in [
        "nDPI/teams.pcap",
        "nDPI/6in4tunnel.pcap",
        "nDPI/ip_fragmented_garbage.pcap",
        "nDPI/sctp.cap",
        "nDPI/dlt_ppp.pcap",
        "nDPI/malformed_icmp.pcap",
    ] {
        let mut r =
            TraceReader::open(format!("{dir}{name}")).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut n = 0;
        while let Some(p) = r.next_packet() {
            let p = p.unwrap_or_else(|e| panic!("{name}: {e}"));
            // Some cut short, so that the general walk serves them too.
            let keep = if n % 5 == 4 {
                p.data.len() / 2
            } else {
                p.data.len()
            };
            out.push((p.ts_ns, p.wire_len, p.data[..keep].to_vec(), p.link));
            n += 1;
            if n == 60 {
                break;
            }
        }
    }
    out
}

/// The records of one state of `Witness`, fed by `feed`.
fn seen(feed: impl FnOnce(&mut dyn CaptureState)) -> Record {
    let m = erase(Witness);
    let ivl = Interval::containing(0, 1_000_000_000);
    let mut state = m.new_state(ivl);
    feed(&mut *state);
    let mut out = Vec::new();
    m.new_exporter()
        .export(ivl, vec![state], &mut out)
        .expect("export");
    assert_eq!(out.len(), 1);
    como_module::decode::<Witness>(&out[0].bytes).expect("decode")
}

#[test]
fn a_run_gives_the_module_what_one_update_per_packet_gives() {
    let owned = packets();
    assert!(owned.len() > 150, "only {} packets", owned.len());
    let pkts: Vec<Packet<'_>> = owned
        .iter()
        .map(|(ts, wire, data, link)| Packet {
            ts_ns: *ts,
            wire_len: *wire,
            data,
            link: *link,
            interface: 0,
        })
        .collect();
    let parsed: Vec<Layers> = pkts.iter().map(Layers::parse).collect();
    // Module bit 2; every third packet is not this module's; others carry other bits.
    let bit = 1u64 << 2;
    let masks: Vec<u64> = (0..pkts.len())
        .map(|j| {
            if j % 3 == 1 {
                0b1011
            } else {
                0b0101 | (j as u64 & 8)
            }
        })
        .collect();
    let seq0 = 1000;
    for masked in [false, true] {
        for reads in ["unread", "parse", "parsed"] {
            let expect = seen(|s| {
                for (j, p) in pkts.iter().enumerate() {
                    if masked && masks[j] & bit == 0 {
                        continue;
                    }
                    let layers = if reads == "unread" {
                        Layers::default()
                    } else {
                        Layers::parse(p)
                    };
                    s.update(&Pkt {
                        parsed: Parsed { layers, packet: *p },
                        seq: seq0 + j as u64,
                    });
                }
            });
            let layers = match reads {
                "unread" => RunLayers::Unread,
                "parse" => RunLayers::Parse,
                _ => RunLayers::Parsed(&parsed),
            };
            // The whole slice in one run, and in runs of 7 packets.
            let whole = seen(|s| {
                s.update_run(&Run {
                    pkts: &pkts,
                    seq0,
                    masks: masked.then_some(&masks[..]),
                    bit,
                    layers,
                });
            });
            let pieces = seen(|s| {
                for start in (0..pkts.len()).step_by(7) {
                    let end = (start + 7).min(pkts.len());
                    let layers = match layers {
                        RunLayers::Parsed(all) => RunLayers::Parsed(&all[start..end]),
                        other => other,
                    };
                    s.update_run(&Run {
                        pkts: &pkts[start..end],
                        seq0: seq0 + start as u64,
                        masks: masked.then_some(&masks[start..end]),
                        bit,
                        layers,
                    });
                }
            });
            let taken = if masked {
                masks.iter().filter(|&&m| m & bit != 0).count()
            } else {
                pkts.len()
            };
            assert_eq!(expect.seen.len(), taken, "{reads} masked={masked}");
            assert_eq!(whole, expect, "{reads} masked={masked}: one run");
            assert_eq!(pieces, expect, "{reads} masked={masked}: runs of 7");
        }
    }
    // The headers were parsed (not all empty) where the module reads them.
    let parsed_seen = seen(|s| {
        s.update_run(&Run {
            pkts: &pkts,
            seq0,
            masks: None,
            bit,
            layers: RunLayers::Parse,
        });
    });
    let empty = format!("{:?}", Layers::default());
    let with_headers = parsed_seen.seen.iter().filter(|s| s.4 != empty).count();
    assert!(
        with_headers > pkts.len() / 2,
        "{with_headers} of {}",
        pkts.len()
    );
}

//! Tests of the live form of the runtime with in-memory queues: classification from the XDP
//! metadata (trusted, re-checked, missing, invalid, of another generation) gives the file
//! runtime's per-module counts on a real trace; an idle queue does not stall interval export;
//! stopping returns the queues and their statistics.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use como_module::{Exported, Interval};
use ebpf_filters_common::{XdpMeta, META_MAGIC};

use crate::live::tests_support::{meta_bytes, spec, trace};
use crate::{
    run, CollectSink, Frame, LiveOptions, LivePipeline, LiveQueue, ModuleSpec, Options, QueueStats,
    Sink, SinkError, SourceError, TraceSource,
};

/// Frames handed out in batches, then nothing (an idle queue).
struct MemQueue {
    queue: u32,
    frames: Vec<(Vec<u8>, Vec<u8>)>,
    next: usize,
    stats: QueueStats,
    /// One frame per this long (`None`: as fast as asked).
    pace: Option<(Duration, Instant)>,
}

impl LiveQueue for MemQueue {
    fn device(&self) -> String {
        "mem0".into()
    }

    fn queue(&self) -> u32 {
        self.queue
    }

    fn recv(&mut self, max: usize, f: &mut dyn FnMut(Frame<'_>)) -> Result<usize, SourceError> {
        let mut max = max;
        if let Some((every, last)) = &mut self.pace {
            if last.elapsed() < *every {
                return Ok(0);
            }
            *last = Instant::now();
            max = 1;
        }
        let end = (self.next + max).min(self.frames.len());
        let n = end - self.next;
        for (meta, data) in &self.frames[self.next..end] {
            f(Frame { meta, data });
        }
        self.next = end;
        Ok(n)
    }

    fn stats(&mut self) -> QueueStats {
        self.stats
    }
}

const FILE: &str = "nDPI/teams.pcap";

fn specs() -> Vec<ModuleSpec> {
    let ivl = Duration::from_secs(3600);
    vec![
        spec("traffic", "", "tcp", ivl),
        spec("traffic", "", "udp", ivl),
        spec("protocol", "", "", ivl),
        spec("tuple", "", "port 443", ivl),
    ]
}

/// The trace's packets (Ethernet only).
fn packets() -> Vec<Vec<u8>> {
    let mut src = TraceSource::open(trace(FILE)).expect("open");
    let mut out = Vec::new();
    while let Ok(crate::Next::Packet(p)) = crate::Source::next_packet(&mut src) {
        out.push(p.data.to_vec());
    }
    assert!(out.len() > 100, "{FILE}: {} packets", out.len());
    out
}

/// The file runtime's per-module matched counts.
fn file_counts() -> Vec<u64> {
    let mut src = TraceSource::open(trace(FILE)).expect("open");
    let (r, _) = run(
        specs(),
        &Options::default(),
        &mut src,
        CollectSink::default(),
    )
    .expect("run");
    r.matched
}

/// Runs the live pipeline over `queues` until they are drained; per-module packet counts.
fn live_counts(queues: Vec<MemQueue>, generation: Option<u32>) -> (Vec<u64>, CollectSink) {
    let total: usize = queues.iter().map(|q| q.frames.len()).sum();
    let queues: Vec<Box<dyn LiveQueue>> = queues
        .into_iter()
        .map(|q| Box::new(q) as Box<dyn LiveQueue>)
        .collect();
    let opts = LiveOptions {
        generation,
        ..LiveOptions::default()
    };
    let pipe = LivePipeline::start(specs(), queues, &opts, CollectSink::default()).expect("start");
    let t = Instant::now();
    while pipe
        .counters()
        .iter()
        .map(|c| c.packets.load(Ordering::Relaxed))
        .sum::<u64>()
        < total as u64
    {
        assert!(t.elapsed() < Duration::from_secs(20), "workers stalled");
        std::thread::sleep(Duration::from_millis(5));
    }
    let counters = pipe.counters().to_vec();
    let end = pipe.stop().expect("stop");
    assert!(end.error.is_none());
    let n = specs().len();
    let mut counts = vec![0u64; n];
    for c in &counters {
        for (i, a) in c.module_packets.iter().enumerate() {
            counts[i] += a.load(Ordering::Relaxed);
        }
    }
    (counts, end.sink)
}

/// Splits the trace over two queues (alternating frames), each frame with `meta(i, data)`.
fn two_queues(meta: &dyn Fn(&[u8]) -> Vec<u8>) -> Vec<MemQueue> {
    let mut qs: Vec<MemQueue> = (0..2)
        .map(|q| MemQueue {
            queue: q,
            frames: Vec::new(),
            next: 0,
            stats: QueueStats::default(),
            pace: None,
        })
        .collect();
    for (i, p) in packets().into_iter().enumerate() {
        let m = meta(&p);
        qs[i % 2].frames.push((m, p));
    }
    qs
}

/// The exact classification of one frame (what exact kernel tables would write).
fn exact_rules(data: &[u8]) -> u64 {
    let pkt = como_packet::Packet {
        ts_ns: 0,
        wire_len: data.len() as u32,
        data,
        link: como_packet::LinkType::Ethernet,
        interface: 0,
    };
    let mut m = 0;
    for (i, s) in specs().iter().enumerate() {
        let hit = s.filter.is_empty()
            || ebpf_filters::compile(&s.filter, como_packet::LinkType::Ethernet)
                .expect("filter")
                .matches(&pkt);
        if hit {
            m |= 1 << i;
        }
    }
    m
}

#[test]
fn userspace_classification_without_metadata_equals_the_file_runtime() {
    let want = file_counts();
    assert!(want.iter().all(|&c| c > 0), "{want:?}");
    let (got, sink) = live_counts(two_queues(&|_| Vec::new()), None);
    assert_eq!(got, want);
    // Everything was exported: one hour-long interval per module (two when the run crossed
    // an hour boundary), each with records.
    for m in 0..specs().len() {
        let ivls: Vec<_> = sink.intervals.iter().filter(|(i, _, _)| *i == m).collect();
        assert!((1..=2).contains(&ivls.len()), "module {m}: {}", ivls.len());
        assert!(ivls.iter().any(|(_, _, r)| !r.is_empty()), "module {m}");
    }
}

#[test]
fn exact_metadata_is_trusted_and_flagged_rules_are_rechecked() {
    let want = file_counts();
    // Exact kernel verdicts.
    let (got, _) = live_counts(
        two_queues(&|p| {
            meta_bytes(XdpMeta {
                rules: exact_rules(p),
                recheck: 0,
                magic: META_MAGIC,
                gen: 1,
            })
        }),
        Some(1),
    );
    assert_eq!(got, want, "exact metadata");
    // Over-approximated: every rule matches, every rule to re-check.
    let (got, _) = live_counts(
        two_queues(&|_| {
            meta_bytes(XdpMeta {
                rules: u64::MAX,
                recheck: u64::MAX,
                magic: META_MAGIC,
                gen: 1,
            })
        }),
        Some(1),
    );
    assert_eq!(got, want, "re-checked superset");
    // Trusted without re-check: the metadata decides (module 1 gets nothing).
    let (got, _) = live_counts(
        two_queues(&|_| {
            meta_bytes(XdpMeta {
                rules: 1,
                recheck: 0,
                magic: META_MAGIC,
                gen: 1,
            })
        }),
        Some(1),
    );
    let total = packets().len() as u64;
    assert_eq!(got, vec![total, 0, 0, 0], "metadata is used as it is");
}

#[test]
fn invalid_or_stale_metadata_is_classified_in_userspace() {
    let want = file_counts();
    let wrong = |magic: u32, gen: u32| {
        move |_: &[u8]| {
            meta_bytes(XdpMeta {
                rules: 1,
                recheck: 0,
                magic,
                gen,
            })
        }
    };
    let (got, _) = live_counts(two_queues(&wrong(0xdead_beef, 1)), Some(1));
    assert_eq!(got, want, "bad magic");
    let (got, _) = live_counts(two_queues(&wrong(META_MAGIC, 0)), Some(1));
    assert_eq!(got, want, "other generation");
    let (got, _) = live_counts(two_queues(&|_| vec![0xC0; 7]), Some(1));
    assert_eq!(got, want, "short metadata");
}

/// A sink whose intervals can be seen while the pipeline runs.
#[derive(Clone, Default)]
struct SharedSink(Arc<Mutex<Vec<(usize, Interval, usize)>>>);

impl Sink for SharedSink {
    fn interval(&mut self, m: usize, ivl: Interval, r: &[Exported]) -> Result<(), SinkError> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((m, ivl, r.len()));
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

#[test]
fn an_idle_queue_does_not_stall_intervals_and_stop_returns_the_queues() {
    let ivl = Duration::from_millis(100);
    let specs = vec![spec("traffic", "", "", ivl)];
    let busy = MemQueue {
        queue: 0,
        frames: packets()
            .into_iter()
            .take(50)
            .map(|p| (Vec::new(), p))
            .collect(),
        next: 0,
        stats: QueueStats {
            rx_dropped: 3,
            rx_ring_full: 4,
            fill_ring_empty: 5,
            rx_invalid_descs: 6,
        },
        pace: Some((Duration::from_millis(10), Instant::now())),
    };
    let idle = MemQueue {
        queue: 1,
        frames: Vec::new(),
        next: 0,
        stats: QueueStats::default(),
        pace: None,
    };
    let sink = SharedSink::default();
    let pipe = LivePipeline::start(
        specs,
        vec![Box::new(busy), Box::new(idle)],
        &LiveOptions {
            cpus: vec![Some(0), None],
            ..LiveOptions::default()
        },
        sink.clone(),
    )
    .expect("start");
    let t = Instant::now();
    // One frame every 10 ms on queue 0, none on queue 1: the 100 ms intervals of queue 0's
    // packets are exported while the pipeline runs (queue 1 advances by the wall clock).
    loop {
        let n = sink.0.lock().unwrap_or_else(PoisonError::into_inner).len();
        if n >= 3 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "only {n} intervals exported"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let exported = sink
        .0
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    for w in exported.windows(2) {
        assert!(w[1].1.start_ns > w[0].1.start_ns, "{exported:?}");
    }
    // traffic: one record per interval with packets.
    assert!(
        exported.iter().all(|&(_, _, records)| records == 1),
        "{exported:?}"
    );
    // Until the 50 frames are read.
    while pipe.counters()[0].packets.load(Ordering::Relaxed) < 50 {
        assert!(t.elapsed() < Duration::from_secs(10), "frames not read");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(crate::STATS_EVERY * 2);
    let c0 = Arc::clone(&pipe.counters()[0]);
    assert_eq!(c0.packets.load(Ordering::Relaxed), 50);
    assert_eq!((c0.device.as_str(), c0.queue), ("mem0", 0));
    assert_eq!(
        c0.queue_stats(),
        QueueStats {
            rx_dropped: 3,
            rx_ring_full: 4,
            fill_ring_empty: 5,
            rx_invalid_descs: 6,
        }
    );
    let r = c0.busy_ratio();
    assert!((0.0..=1.0).contains(&r), "{r}");
    let end = pipe.stop().expect("stop");
    let qs: Vec<u32> = end.queues.iter().map(|q| q.queue()).collect();
    assert_eq!(qs, vec![0, 1]);
}

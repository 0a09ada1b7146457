//! Publish latency with a stalled subscriber, with and without eviction (issue 3).
//!
//! `cargo bench --bench slow_consumers` runs one criterion group, `slow_consumers/publish`, of
//! one publish (payload `Arc<[u8; 64]>`, default capacity 64, `Overflow::Timeout(5 ms)`) to 10
//! fast subscribers draining on their own threads, and:
//!
//! - `crossbeam/10fast`: the raw baseline, the same thread sending to 10 bounded crossbeam
//!   channels in turn with `send_timeout(5 ms)`, each drained by its own thread;
//! - `syncmq/10fast`: no stalled subscriber, the reference figure;
//! - `syncmq/10fast+1stalled`: plus one subscriber that never reads, its queue full: every
//!   publish waits out its 5 ms timeout (once, however many are stalled: see `benches/publish.rs`);
//! - `syncmq/10fast+1stalled_evict3`: the same with `evict_after(3)`. The fixture publishes
//!   untimed until the stalled subscriber is evicted (the third publish that misses it), then
//!   measures: publishes no longer pay anything for it, so this must match `syncmq/10fast`.
//!
//! `SYNCMQ_BENCH_ROUNDS=15 cargo bench --bench slow_consumers` instead runs the variants
//! interleaved, round after round (rotating their order), and prints each one's median time
//! per publish and the median over rounds of its ratio to the crossbeam baseline measured in the
//! same round: on a shared, noisy machine the baseline and the variants move together. It also
//! prints what the eviction itself cost (the publishes before it).

mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::{
    Sink, Summary, bench_fixture, human, interleaved, join_consumers, median, rounds_or_criterion,
    spawn_consumer,
};
use criterion::{BenchmarkId, Criterion, SamplingMode};
use crossbeam_channel::Receiver;
use syncmq::{Broker, DEFAULT_CAPACITY, DEFAULT_SEND_TIMEOUT, Overflow, Subscription};

/// The message: a cheap-to-clone handle on a cache line of bytes.
type Payload = Arc<[u8; 64]>;

const TOPIC: &str = "bench.prices";
const FAST: usize = 10;
/// Misses after which the evicting variant removes the stalled subscriber.
const EVICT_AFTER: u32 = 3;

fn payload() -> Payload {
    Arc::new([0; 64])
}

/// The shapes measured.
#[derive(Clone, Copy, PartialEq)]
enum Shape {
    Crossbeam,
    NoStall,
    Stalled,
    StalledEvict,
}

impl Shape {
    const ALL: [Shape; 4] = [
        Shape::Crossbeam,
        Shape::NoStall,
        Shape::Stalled,
        Shape::StalledEvict,
    ];

    fn id(self) -> BenchmarkId {
        match self {
            Shape::Crossbeam => BenchmarkId::new("crossbeam", "10fast"),
            Shape::NoStall => BenchmarkId::new("syncmq", "10fast"),
            Shape::Stalled => BenchmarkId::new("syncmq", "10fast+1stalled"),
            Shape::StalledEvict => BenchmarkId::new("syncmq", "10fast+1stalled_evict3"),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Shape::Crossbeam => "crossbeam 10 fast",
            Shape::NoStall => "syncmq 10 fast",
            Shape::Stalled => "syncmq 10 fast + 1 stalled",
            Shape::StalledEvict => "syncmq 10 fast + 1 stalled, evict_after(3)",
        }
    }

    /// Whether every publish waits out a timeout.
    fn slow(self) -> bool {
        self == Shape::Stalled
    }
}

/// 10 fast consumers (and maybe a stalled subscriber) behind one way of publishing.
struct Fixture {
    sink: Sink<Payload>,
    _stalled: Option<Subscription<Payload>>,
    consumers: Vec<JoinHandle<()>>,
    /// Subscribers each publish is expected to miss.
    misses: usize,
}

/// What building an evicting fixture cost: each publish until the eviction.
struct Eviction {
    publishes: Vec<Duration>,
}

impl Fixture {
    fn new(shape: Shape) -> (Self, Option<Eviction>) {
        if shape == Shape::Crossbeam {
            let mut senders = Vec::new();
            let consumers = (0..FAST)
                .map(|i| {
                    let (sender, receiver): (_, Receiver<Payload>) =
                        crossbeam_channel::bounded(DEFAULT_CAPACITY);
                    senders.push(sender);
                    spawn_consumer(i, move || receiver.iter().for_each(drop))
                })
                .collect();
            let fixture = Fixture {
                sink: Sink::Crossbeam(senders),
                _stalled: None,
                consumers,
                misses: 0,
            };
            return (fixture, None);
        }
        let mut builder = Broker::builder().overflow(Overflow::Timeout(DEFAULT_SEND_TIMEOUT));
        if shape == Shape::StalledEvict {
            builder = builder.evict_after(EVICT_AFTER);
        }
        let broker: Broker<Payload> = builder.build();
        // The stalled subscriber comes first, and its queue is filled while it is alone.
        let stalled = (shape != Shape::NoStall).then(|| {
            let sub = broker.subscribe(TOPIC).expect("valid topic");
            for _ in 0..DEFAULT_CAPACITY {
                broker.publish(TOPIC, payload()).expect("open broker");
            }
            sub
        });
        let consumers = (0..FAST)
            .map(|i| {
                let sub = broker.subscribe(TOPIC).expect("valid topic");
                spawn_consumer(i, move || sub.iter().for_each(drop))
            })
            .collect();
        let mut eviction = None;
        if shape == Shape::StalledEvict {
            let mut publishes = Vec::new();
            loop {
                let start = Instant::now();
                let report = broker.publish(TOPIC, payload()).expect("open broker");
                publishes.push(start.elapsed());
                if report.evicted == 1 {
                    break;
                }
                assert!(publishes.len() < EVICT_AFTER as usize, "no eviction");
            }
            assert_eq!(publishes.len(), EVICT_AFTER as usize);
            let stalled = stalled.as_ref().expect("stalled subscriber");
            assert_eq!(stalled.status(), syncmq::SubscriptionStatus::Evicted);
            assert_eq!(broker.subscriber_count(TOPIC), FAST);
            eviction = Some(Eviction { publishes });
        }
        let misses = usize::from(shape == Shape::Stalled);
        let fixture = Fixture {
            sink: Sink::Syncmq(broker),
            _stalled: stalled,
            consumers,
            misses,
        };
        (fixture, eviction)
    }

    /// One publish; returns the subscribers that missed it beyond the expected ones.
    fn publish(&self, msg: Payload) -> usize {
        match &self.sink {
            Sink::Syncmq(broker) => {
                let report = broker.publish(TOPIC, msg).expect("open broker");
                report.dropped.saturating_sub(self.misses)
            }
            Sink::Crossbeam(senders) => senders
                .iter()
                .filter(|s| s.send_timeout(msg.clone(), DEFAULT_SEND_TIMEOUT).is_err())
                .count(),
        }
    }

    /// Times `iters` publishes; also returns unexpected misses.
    fn run(&self, iters: u64) -> (Duration, usize) {
        let msg = payload();
        let mut unexpected = 0;
        let start = Instant::now();
        for _ in 0..iters {
            unexpected += self.publish(black_box(msg.clone()));
        }
        (start.elapsed(), unexpected)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.sink.close();
        join_consumers(&mut self.consumers);
    }
}

fn bench_publish(c: &mut Criterion) {
    let mut group = c.benchmark_group("slow_consumers/publish");
    for shape in Shape::ALL {
        if shape.slow() {
            // About 5 ms per publish: few, equal-sized samples.
            group
                .sampling_mode(SamplingMode::Flat)
                .sample_size(10)
                .warm_up_time(Duration::from_millis(500))
                .measurement_time(Duration::from_secs(2));
        } else {
            group
                .sampling_mode(SamplingMode::Auto)
                .sample_size(30)
                .warm_up_time(Duration::from_secs(1))
                .measurement_time(Duration::from_secs(3));
        }
        bench_fixture(
            &mut group,
            shape.id(),
            || Fixture::new(shape),
            |b, (fixture, _)| {
                b.iter_custom(|iters| {
                    let (time, unexpected_misses) = fixture.run(iters);
                    assert_eq!(unexpected_misses, 0, "a fast subscriber missed a message");
                    time
                })
            },
        );
    }
    group.finish();
}

/// The interleaved mode: every variant in every round, medians of per-round ratios.
fn rounds(rounds: usize) {
    println!(
        "slow_consumers, {} cores, {rounds} interleaved rounds: median time per publish \
         (min..max over rounds), and median over rounds of (variant time / crossbeam time)",
        thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut unexpected = vec![0usize; Shape::ALL.len()];
    let mut eviction_costs = Vec::new();
    let per_op = interleaved(rounds, Shape::ALL.len(), |_, i| {
        let shape = Shape::ALL[i];
        let (fixture, eviction) = Fixture::new(shape);
        if let Some(eviction) = eviction {
            eviction_costs.push(eviction.publishes);
        }
        let iters = if shape.slow() { 40 } else { 40_000 };
        fixture.run(iters / 10); // warm up
        let (elapsed, missed) = fixture.run(iters);
        drop(fixture);
        unexpected[i] += missed;
        elapsed.as_secs_f64() / iters as f64
    });
    for (i, shape) in Shape::ALL.iter().enumerate() {
        println!(
            "  {:<44} {}  unexpected misses {}",
            shape.label(),
            Summary::new(&per_op[i], &per_op[0]),
            unexpected[i],
        );
    }
    for (k, _) in eviction_costs.first().into_iter().flatten().enumerate() {
        let mut costs: Vec<f64> = eviction_costs.iter().map(|p| p[k].as_secs_f64()).collect();
        println!(
            "  evict_after(3): publish {} before the eviction (median) {}",
            k + 1,
            human(median(&mut costs))
        );
    }
}

fn main() {
    rounds_or_criterion(rounds, bench_publish);
}

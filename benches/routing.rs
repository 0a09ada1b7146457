//! Routing costs: wildcard subscriptions, the route cache and queue groups (issue 4).
//!
//! A thread remembers the last route it published along (`src/route_memo.rs`), so a publish to
//! the topic it published to last skips the registry lookup. The variants that time a lookup
//! therefore publish to two or more topics in turn, so the memo never serves them (each of
//! those publishes also replaces the memo: part of the figure, as for any program that
//! publishes to several topics); the `*same_topic_memo` variants publish to one topic every
//! time and time the memo itself.
//!
//! `cargo bench --bench routing` runs these criterion groups (payload `Arc<[u8; 64]>`):
//!
//! - `routing/exact/{crossbeam,syncmq_0w,syncmq_100w,syncmq_10000w,syncmq_same_topic_memo}`:
//!   publish to two exact topics in turn (`bench.orders.created`, `bench.orders.updated`), one
//!   subscriber each, while 0, 100 or 10 000 *unrelated* wildcard subscriptions exist. The
//!   cost must not grow with their number: with no pattern at all a publish is one hash lookup
//!   in the key table, with some one in the route cache instead. `syncmq_same_topic_memo`: no
//!   wildcards, one topic published to every time, so the memo serves every publish. The
//!   baseline is one `send` on one bounded crossbeam channel.
//! - `routing/fanout100/{crossbeam,syncmq_exact,syncmq_100patterns}`: publish to a topic that
//!   100 subscribers receive, either all subscribed to the topic itself or each through its own
//!   distinct pattern (`bench.*.created.eu.web.v1.x`, ...). One topic every time, so the memo
//!   finds the route (for the patterns, the merged route the cache holds); a lookup would add
//!   little to 100 sends anyway. The difference left is one counter update per pattern instead
//!   of one. The baseline sends to 100 crossbeam channels.
//! - `routing/cache/{hit,miss,same_topic_memo}`: with 100 unrelated patterns and two matching
//!   ones (`cache.*.x` and `cache.>`, one subscriber each), publish to two topics in turn
//!   (`cache.0.x`, `cache.1.x`: hit, both stay in the route cache), or to the next of 2^18
//!   distinct topics (`cache.{i}.x`), far more than the cache's 4096 entries, so almost every
//!   publish misses the cache: it validates the topic, walks the pattern trie, merges the two
//!   routes and caches the result (starting the cache over when it is full). `same_topic_memo`
//!   publishes to `cache.0.x` every time: the memo serves the merged route.
//!
//!   These three groups are *enqueue-only*: the queues have room and nobody waits on them (they
//!   are drained between timed chunks of 512 publishes, untimed), so they time the publishing
//!   thread's own routing and sending cost, without the wake-ups and scheduling noise of
//!   consumer threads that would otherwise dominate a 100 ns operation on a 2-core machine.
//! - `routing/queue_group/{crossbeam_mpmc,syncmq_group4,crossbeam_fanout4,syncmq_plain4}`:
//!   throughput of one publisher to 4 consumers, each draining on its own thread, timed until
//!   every message is received, `Overflow::Block`. A queue group of 4 delivers each message once
//!   (baseline: one crossbeam channel shared by 4 receivers); 4 plain subscribers get every
//!   message (baseline: 4 channels, sent to in turn). Throughput is in *messages* published;
//!   plain subscribers make 4 deliveries per message.
//!
//! `SYNCMQ_BENCH_ROUNDS=15 cargo bench --bench routing` instead runs each group's variants
//! interleaved, round after round (rotating their order), and prints each one's median time per
//! publish and the median over rounds of its ratio to the group's first variant (the
//! baseline) measured in the same round: on a shared, noisy machine they move together.

mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::{
    CHUNK, RawSends, Sink, Summary, bench_fixture, interleaved, join_consumers,
    rounds_or_criterion, spawn_consumer, timed_chunks,
};
use criterion::{BenchmarkId, Criterion, Throughput};
use crossbeam_channel::{Receiver, Sender};
use syncmq::{Broker, DEFAULT_CAPACITY, Overflow, SubscribeOptions, Subscription};

/// The message: a cheap-to-clone handle on a cache line of bytes.
type Payload = Arc<[u8; 64]>;

fn payload() -> Payload {
    Arc::new([0; 64])
}

/// A timed workload: runs `iters` operations and returns the time they took.
trait Workload {
    fn run(&self, iters: u64) -> Duration;
}

// ---------------------------------------------------------------------------------------------
// Enqueue-only fixtures: exact topic, 100 patterns, cache hit and miss.

/// The raw baseline: a blocking `send` to each of its channels, which have room.
impl Workload for RawSends<Payload> {
    fn run(&self, iters: u64) -> Duration {
        self.timed(iters, &payload())
    }
}

/// A broker, the subscriptions the published topics reach (drained between chunks), others
/// that they must not reach, and the topics to publish to, in turn. Publishing to two or more
/// topics in turn, a thread never finds the route in its memo, which holds the previous topic's:
/// every publish looks its topic up.
struct Enqueue {
    broker: Broker<Payload>,
    reached: Vec<Subscription<Payload>>,
    _unrelated: Vec<Subscription<Payload>>,
    topics: Vec<String>,
}

impl Enqueue {
    fn broker() -> Broker<Payload> {
        // Inline delivery and a queue that a chunk never fills: no waits, no other threads.
        Broker::builder()
            .capacity(CHUNK)
            .overflow(Overflow::Block)
            .workers(0)
            .build()
    }

    /// `count` wildcard subscriptions that match none of this file's published topics.
    /// Half `*` patterns, half `>`; the `>` ones share the published topics' first token, so
    /// the trie has a populated branch where the published topics go.
    fn unrelated(broker: &Broker<Payload>, count: usize) -> Vec<Subscription<Payload>> {
        let tiny = SubscribeOptions::default().capacity(1);
        (0..count)
            .map(|i| {
                let pattern = if i % 2 == 0 {
                    format!("other{i}.*.created")
                } else {
                    format!("bench.unrelated{i}.>")
                };
                broker
                    .subscribe_with(&pattern, tiny)
                    .expect("valid pattern")
            })
            .collect()
    }

    /// `topics` exact topics (`bench.orders.created`, then `bench.orders.updated`) published
    /// in turn, one subscriber each, and `wildcards` unrelated patterns.
    fn exact(wildcards: usize, topics: usize) -> Self {
        let broker = Self::broker();
        let topics: Vec<String> = ["bench.orders.created", "bench.orders.updated"][..topics]
            .iter()
            .map(|&t| t.into())
            .collect();
        let reached = topics
            .iter()
            .map(|t| broker.subscribe(t).expect("valid topic"))
            .collect();
        let unrelated = Self::unrelated(&broker, wildcards);
        Self::checked(broker, reached, unrelated, topics, 1)
    }

    /// 100 subscribers of a 7-token topic: on the topic itself, or one per distinct pattern.
    fn fanout100(patterns: bool) -> Self {
        let broker = Self::broker();
        let tokens = ["bench", "orders", "created", "eu", "web", "v1", "x"];
        let topic = tokens.join(".");
        let reached = (1..=100u32)
            .map(|mask| {
                let key = if patterns {
                    // Replace the tokens selected by the bits of `mask` (1..=100, so never the
                    // topic itself) with `*`: 100 distinct patterns, each matching the topic.
                    let pattern: Vec<&str> = tokens
                        .iter()
                        .enumerate()
                        .map(|(bit, t)| if mask & (1 << bit) != 0 { "*" } else { t })
                        .collect();
                    pattern.join(".")
                } else {
                    topic.clone()
                };
                broker.subscribe(&key).expect("valid pattern")
            })
            .collect();
        Self::checked(broker, reached, Vec::new(), vec![topic], 100)
    }

    /// Two matching patterns and 100 unrelated ones; `distinct` topics published in turn.
    fn cache(distinct: usize) -> Self {
        let broker = Self::broker();
        let reached = vec![
            broker.subscribe("cache.*.x").expect("valid pattern"),
            broker.subscribe("cache.>").expect("valid pattern"),
        ];
        let unrelated = Self::unrelated(&broker, 100);
        let topics = (0..distinct).map(|i| format!("cache.{i}.x")).collect();
        Self::checked(broker, reached, unrelated, topics, 2)
    }

    /// Checks once, untimed, that a publish to each of the first two topics reaches
    /// `per_publish` subscribers (of `reached`), and drops nothing.
    fn checked(
        broker: Broker<Payload>,
        reached: Vec<Subscription<Payload>>,
        unrelated: Vec<Subscription<Payload>>,
        topics: Vec<String>,
        per_publish: usize,
    ) -> Self {
        for topic in topics.iter().take(2) {
            let report = broker.publish(topic, payload()).expect("open broker");
            assert_eq!((report.delivered, report.dropped), (per_publish, 0));
        }
        reached.iter().for_each(|s| s.try_iter().for_each(drop));
        Enqueue {
            broker,
            reached,
            _unrelated: unrelated,
            topics,
        }
    }
}

impl Workload for Enqueue {
    fn run(&self, iters: u64) -> Duration {
        let msg = payload();
        let topics = self.topics.len() as u64;
        // Carries on through the topic list from one run to the next.
        let offset = self.broker.stats().published;
        timed_chunks(
            iters,
            |i| {
                let topic = &self.topics[((offset + i) % topics) as usize];
                self.broker
                    .publish(black_box(topic), msg.clone())
                    .expect("open broker");
            },
            || {
                self.reached
                    .iter()
                    .for_each(|s| s.try_iter().for_each(drop))
            },
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Queue groups: consumers on their own threads.

/// Counts messages received by all consumers; the one that reaches the target wakes the timer.
struct Received {
    count: AtomicU64,
    target: AtomicU64,
    done: Sender<()>,
}

impl Received {
    fn one(&self) {
        let n = self.count.fetch_add(1, Ordering::AcqRel) + 1;
        if n == self.target.load(Ordering::Acquire) {
            let _ = self.done.send(());
        }
    }
}

/// One publisher, 4 consumers on their own threads.
struct Consumers {
    sink: Sink<Payload>,
    /// Deliveries per message: 1 for a group or a work queue, 4 for fan-out.
    per_message: u64,
    received: Arc<Received>,
    done: Receiver<()>,
    threads: Vec<JoinHandle<()>>,
}

const TOPIC: &str = "bench.jobs";
const CONSUMERS: usize = 4;

#[derive(Clone, Copy, PartialEq)]
enum GroupShape {
    CrossbeamMpmc,
    SyncmqGroup,
    CrossbeamFanout,
    SyncmqPlain,
}

impl Consumers {
    fn new(shape: GroupShape) -> Self {
        let (done_tx, done) = crossbeam_channel::bounded(1);
        let received = Arc::new(Received {
            count: AtomicU64::new(0),
            target: AtomicU64::new(u64::MAX),
            done: done_tx,
        });
        let (sink, per_message, threads) = match shape {
            GroupShape::SyncmqGroup | GroupShape::SyncmqPlain => {
                let broker = Broker::<Payload>::builder()
                    .overflow(Overflow::Block)
                    .build();
                let threads = (0..CONSUMERS)
                    .map(|i| {
                        let sub = if shape == GroupShape::SyncmqGroup {
                            broker.subscribe_group(TOPIC, "workers")
                        } else {
                            broker.subscribe(TOPIC)
                        }
                        .expect("valid topic");
                        let received = received.clone();
                        spawn_consumer(i, move || sub.iter().for_each(|_| received.one()))
                    })
                    .collect();
                let per_message = if shape == GroupShape::SyncmqGroup {
                    1
                } else {
                    CONSUMERS as u64
                };
                (Sink::Syncmq(broker), per_message, threads)
            }
            GroupShape::CrossbeamMpmc => {
                let (sender, receiver) = crossbeam_channel::bounded::<Payload>(DEFAULT_CAPACITY);
                let threads = (0..CONSUMERS)
                    .map(|i| {
                        let receiver = receiver.clone();
                        let received = received.clone();
                        spawn_consumer(i, move || receiver.iter().for_each(|_| received.one()))
                    })
                    .collect();
                (Sink::Crossbeam(vec![sender]), 1, threads)
            }
            GroupShape::CrossbeamFanout => {
                let mut senders = Vec::new();
                let threads = (0..CONSUMERS)
                    .map(|i| {
                        let (sender, receiver) =
                            crossbeam_channel::bounded::<Payload>(DEFAULT_CAPACITY);
                        senders.push(sender);
                        let received = received.clone();
                        spawn_consumer(i, move || receiver.iter().for_each(|_| received.one()))
                    })
                    .collect();
                (Sink::Crossbeam(senders), CONSUMERS as u64, threads)
            }
        };
        let fixture = Consumers {
            sink,
            per_message,
            received,
            done,
            threads,
        };
        fixture.run(16); // check the shape, untimed
        fixture
    }
}

impl Workload for Consumers {
    /// Publishes `iters` messages and returns the time until all of them are received.
    fn run(&self, iters: u64) -> Duration {
        if iters == 0 {
            return Duration::ZERO;
        }
        let expected = iters * self.per_message;
        // Before any message of this batch is sent, so the consumer that reaches it sees it.
        let target = self.received.count.load(Ordering::Acquire) + expected;
        self.received.target.store(target, Ordering::Release);
        let msg = payload();
        let start = Instant::now();
        match &self.sink {
            Sink::Syncmq(broker) => {
                for _ in 0..iters {
                    let report = broker.publish(TOPIC, msg.clone()).expect("open broker");
                    assert_eq!(report.delivered as u64, self.per_message);
                }
            }
            Sink::Crossbeam(senders) => {
                for _ in 0..iters {
                    for sender in senders {
                        sender.send(msg.clone()).expect("consumer alive");
                    }
                }
            }
        }
        self.done.recv().expect("a consumer reaches the target");
        start.elapsed()
    }
}

impl Drop for Consumers {
    fn drop(&mut self) {
        self.sink.close();
        join_consumers(&mut self.threads);
    }
}

// ---------------------------------------------------------------------------------------------
// The groups.

/// A variant of a group: its benchmark id and how to build its fixture.
struct Variant {
    id: &'static str,
    build: Box<dyn Fn() -> Box<dyn Workload>>,
}

fn variant<W: Workload + 'static>(id: &'static str, build: fn() -> W) -> Variant {
    Variant {
        id,
        build: Box::new(move || Box::new(build())),
    }
}

/// A group: its name, its throughput per operation, and its variants, the baseline first.
struct Group {
    name: &'static str,
    elements: u64,
    /// Operations per timed sample in the interleaved mode.
    round_iters: u64,
    variants: Vec<Variant>,
}

/// Topics the cache-miss variant cycles through: far more than the 4096 cached.
const MISS_TOPICS: usize = 1 << 18;

fn groups() -> Vec<Group> {
    vec![
        Group {
            name: "routing/exact",
            elements: 1,
            round_iters: 400_000,
            variants: vec![
                variant("crossbeam", || RawSends::new(1)),
                variant("syncmq_0w", || Enqueue::exact(0, 2)),
                variant("syncmq_100w", || Enqueue::exact(100, 2)),
                variant("syncmq_10000w", || Enqueue::exact(10_000, 2)),
                variant("syncmq_same_topic_memo", || Enqueue::exact(0, 1)),
            ],
        },
        Group {
            name: "routing/fanout100",
            elements: 100,
            round_iters: 10_000,
            variants: vec![
                variant("crossbeam", || RawSends::new(100)),
                variant("syncmq_exact", || Enqueue::fanout100(false)),
                variant("syncmq_100patterns", || Enqueue::fanout100(true)),
            ],
        },
        Group {
            name: "routing/cache",
            elements: 1,
            round_iters: 200_000,
            variants: vec![
                variant("hit", || Enqueue::cache(2)),
                variant("miss", || Enqueue::cache(MISS_TOPICS)),
                variant("same_topic_memo", || Enqueue::cache(1)),
            ],
        },
        Group {
            name: "routing/queue_group",
            elements: 1,
            round_iters: 200_000,
            variants: vec![
                variant("crossbeam_mpmc", || {
                    Consumers::new(GroupShape::CrossbeamMpmc)
                }),
                variant("syncmq_group4", || Consumers::new(GroupShape::SyncmqGroup)),
                variant("crossbeam_fanout4", || {
                    Consumers::new(GroupShape::CrossbeamFanout)
                }),
                variant("syncmq_plain4", || Consumers::new(GroupShape::SyncmqPlain)),
            ],
        },
    ]
}

fn bench_groups(c: &mut Criterion) {
    for group_def in groups() {
        let mut group = c.benchmark_group(group_def.name);
        group
            .sample_size(30)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .throughput(Throughput::Elements(group_def.elements));
        for v in &group_def.variants {
            bench_fixture(
                &mut group,
                BenchmarkId::from_parameter(v.id),
                &v.build,
                |b, fixture| b.iter_custom(|iters| fixture.run(iters)),
            );
        }
        group.finish();
    }
}

/// The interleaved mode: every variant of a group in every round, medians of per-round ratios.
fn rounds(rounds: usize) {
    println!(
        "routing, {} cores, {rounds} interleaved rounds: median time per publish (min..max), \
         median over rounds of (variant time / baseline time), and the rate",
        thread::available_parallelism().map_or(0, |n| n.get())
    );
    for group in groups() {
        let count = group.variants.len();
        // A fresh fixture per sample: one set of consumer threads at a time.
        let per_op = interleaved(rounds, count, |_, i| {
            let fixture = (group.variants[i].build)();
            fixture.run(group.round_iters / 10); // warm up
            let elapsed = fixture.run(group.round_iters);
            drop(fixture);
            elapsed.as_secs_f64() / group.round_iters as f64
        });
        println!("{} (baseline: {})", group.name, group.variants[0].id);
        for (i, v) in group.variants.iter().enumerate() {
            let summary = Summary::new(&per_op[i], &per_op[0]);
            println!(
                "  {:<22} {summary}  {:>7.2} M elem/s",
                v.id,
                group.elements as f64 / summary.median / 1e6,
            );
        }
    }
}

fn main() {
    rounds_or_criterion(rounds, bench_groups);
}

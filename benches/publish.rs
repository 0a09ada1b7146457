//! Benchmarks of the publish path, each next to a raw `crossbeam-channel` baseline.
//!
//! `cargo bench --bench publish` runs the criterion groups (a few minutes on 2 cores):
//!
//! - `publish/fanout/{syncmq,crossbeam}/{1,10,100,1000}`: one publishing thread, N subscribers
//!   draining on their own threads, `Overflow::Block`, default capacity, payload
//!   `Arc<[u8; 64]>`. The `crossbeam` baseline is the same thread sending to N bounded
//!   crossbeam channels itself, one after another. An iteration of `k` publishes is timed until
//!   every consumer has *received* the `k`-th message, for both variants. Throughput is in
//!   deliveries (N per publish).
//! - `publish/enqueue/{syncmq,crossbeam}/{1,10,100,1000}`: the publishing thread's own cost per
//!   delivery: N queues with room and nobody waiting on them (drained between timed chunks), so
//!   no wake-ups and little scheduling noise. syncmq delivers inline here; every publish goes to
//!   the same topic, so the thread's route memo finds the route (`benches/routing.rs` times the
//!   lookup). The `crossbeam` baseline is a blocking `send` to each of N bounded channels in
//!   turn (they have room, so it never waits).
//! - `publish/no_subscribers`: publish to a valid topic nobody subscribes to (another topic has
//!   a subscriber).
//! - `subscribe_unsubscribe/{0,100}`: subscribe and drop the subscription, on a topic with 0 or
//!   100 other subscribers (subscribing copies the topic's list).
//! - `publish/stalled/{syncmq,crossbeam}/{1of11,5of15}`: 1 (or 5) subscribers that never read,
//!   queues full, listed *first*, among 10 fast ones, with the default 5 ms timeout. A syncmq
//!   publish costs about one timeout however many are stalled; the baseline (sequential
//!   `send_timeout`, like the Go ancestor) costs one timeout per stalled subscriber.
//!
//! `SYNCMQ_BENCH_SWEEP=fanout cargo bench --bench publish` (or `=1`) instead runs the dispatch
//! sweep used to pick [`syncmq::DEFAULT_DISPATCH_THRESHOLD`]: fan-out to N in
//! {50, 100, 200, 500, 1000} subscribers, with the default settings, inline, and with every
//! dispatch threshold in {32, 64, 128, 256} and 1 or 2 workers, against the crossbeam baseline.
//! It also reports the CPU time the whole process used per variant, relative to the baseline's.
//! The variants run interleaved, round after round,
//! and each is reported as the median of its per-round ratio to the baseline, so a noisy,
//! shared machine moves the baseline and the variants together. `SYNCMQ_BENCH_SWEEP_ROUNDS`
//! (default 15), `SYNCMQ_BENCH_SWEEP_N`, `SYNCMQ_BENCH_SWEEP_THRESHOLDS` and
//! `SYNCMQ_BENCH_SWEEP_WORKERS` (comma-separated lists; `SYNCMQ_BENCH_SWEEP_THRESHOLDS=` for
//! none) adjust it, and
//! `SYNCMQ_BENCH_SWEEP_VERBOSE=1` prints every sample. `SYNCMQ_BENCH_SWEEP=enqueue` sweeps the
//! `publish/enqueue` shape instead (the publishing thread's own cost, no wake-ups), and
//! `SYNCMQ_BENCH_SWEEP=all` both. `SYNCMQ_BENCH_SWEEP_CEILING=1` adds to the fan-out two
//! ceilings, raw loops that bound what any broker could do on the machine: `raw+atoms`, the
//! baseline plus only the atomics a publish needs for its guarantees, and `raw/2thr` and
//! `raw/4thr`, the baseline's sends split over 2 or 4 threads with no join per message (see
//! `RawLoop`).

mod common;

use std::any::Any;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{
    CHUNK, RawSends, Sink, bench_fixture, join_consumers, send_to_all, spawn_consumer, timed_chunks,
};
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use crossbeam_channel::{Receiver, Sender};
use syncmq::{Broker, BrokerBuilder, DEFAULT_CAPACITY, DEFAULT_SEND_TIMEOUT, Overflow};

/// The message of every benchmark: a cheap-to-clone handle on a cache line of bytes.
type Payload = Arc<[u8; 64]>;

/// The topic of every benchmark.
const TOPIC: &str = "bench.orders.created";

/// Byte 0 of the last message of a timed batch; every other message has 0 there.
const LAST: u8 = 1;

fn payload(first_byte: u8) -> Payload {
    let mut bytes = [0u8; 64];
    bytes[0] = first_byte;
    Arc::new(bytes)
}

/// Counts the consumers that have not yet received the last message of the current batch.
/// The consumer that brings it to zero wakes the timing thread: one wake per batch.
struct Acks {
    remaining: AtomicUsize,
    done: Sender<()>,
}

impl Acks {
    fn received(&self, msg: &Payload) {
        if msg[0] == LAST && self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            let _ = self.done.send(());
        }
    }
}

/// How a raw crossbeam fixture's publishing side sends: the baseline, or one of the sweep's
/// two "ceilings", which bound what any broker can do here (`SYNCMQ_BENCH_SWEEP_CEILING`).
#[derive(Clone, Copy)]
enum RawLoop {
    /// The baseline: one thread sends each message to every channel in turn.
    Plain,
    /// The baseline's sends split over this many threads, each sending every message to its
    /// own share of the channels, with no join per message: less work than any synchronous
    /// publish, which has to wait for its last send. What a dispatch pool could at best gain.
    Split(usize),
    /// The baseline plus, per message, only the atomics a publish needs for its guarantees in
    /// safe Rust: upgrading and dropping a weak reference (the route memo, which must not keep
    /// a closed queue open) and entering and leaving a send section (a `SeqCst` add, then a
    /// store; what makes `unsubscribe` exact). What a publish could at best cost.
    Guarded,
}

/// N consumer threads draining as fast as they can, spawned once, reused by every iteration.
struct Fanout {
    /// A broker with one topic and N subscribers, or N channels.
    sink: Sink<Payload>,
    /// How a raw fixture sends (`Plain` for a broker).
    raw: RawLoop,
    subscribers: usize,
    acks: Arc<Acks>,
    done: Receiver<()>,
    consumers: Vec<JoinHandle<()>>,
    regular: Payload,
    last: Payload,
}

impl Fanout {
    /// `n` syncmq subscribers of one topic, on a broker built by `builder`.
    fn syncmq(n: usize, builder: BrokerBuilder<Payload>) -> Self {
        let broker = builder.build();
        let (acks, done) = Self::acks();
        let consumers = (0..n)
            .map(|i| {
                let sub = broker.subscribe(TOPIC).expect("valid topic, open broker");
                let acks = acks.clone();
                spawn_consumer(i, move || {
                    for msg in &sub {
                        acks.received(&msg);
                    }
                })
            })
            .collect();
        Self::new(
            Sink::Syncmq(broker),
            RawLoop::Plain,
            n,
            acks,
            done,
            consumers,
        )
    }

    /// `n` bounded crossbeam channels of `capacity`, each drained by its own thread.
    fn crossbeam(n: usize, capacity: usize) -> Self {
        Self::crossbeam_sending(n, capacity, RawLoop::Plain)
    }

    /// As [`crossbeam`](Self::crossbeam), with the publishing side `raw`.
    fn crossbeam_sending(n: usize, capacity: usize, raw: RawLoop) -> Self {
        let (acks, done) = Self::acks();
        let mut senders = Vec::with_capacity(n);
        let consumers = (0..n)
            .map(|i| {
                let (sender, receiver) = crossbeam_channel::bounded::<Payload>(capacity);
                senders.push(sender);
                let acks = acks.clone();
                spawn_consumer(i, move || {
                    for msg in receiver {
                        acks.received(&msg);
                    }
                })
            })
            .collect();
        Self::new(Sink::Crossbeam(senders), raw, n, acks, done, consumers)
    }

    fn acks() -> (Arc<Acks>, Receiver<()>) {
        let (done_sender, done) = crossbeam_channel::bounded(1);
        let acks = Arc::new(Acks {
            remaining: AtomicUsize::new(0),
            done: done_sender,
        });
        (acks, done)
    }

    fn new(
        sink: Sink<Payload>,
        raw: RawLoop,
        subscribers: usize,
        acks: Arc<Acks>,
        done: Receiver<()>,
        consumers: Vec<JoinHandle<()>>,
    ) -> Self {
        let fixture = Fanout {
            sink,
            raw,
            subscribers,
            acks,
            done,
            consumers,
            regular: payload(0),
            last: payload(LAST),
        };
        // Check the shape once, untimed: every publish reaches every subscriber.
        fixture.run(2);
        fixture
    }

    /// Publishes `iters` messages and returns the time until every consumer has received the
    /// last one.
    fn run(&self, iters: u64) -> Duration {
        if iters == 0 {
            return Duration::ZERO;
        }
        // Published before the messages, so every consumer that sees `LAST` sees this count.
        self.acks
            .remaining
            .store(self.subscribers, Ordering::Release);
        let start = Instant::now();
        match &self.sink {
            Sink::Syncmq(broker) => self.each_message(iters, |msg| {
                let report = broker.publish(TOPIC, msg).expect("open broker");
                assert_eq!(report.delivered, self.subscribers, "Overflow::Block drops");
            }),
            Sink::Crossbeam(senders) => match self.raw {
                RawLoop::Plain => self.each_message(iters, |msg| send_to_all(senders, msg)),
                RawLoop::Split(threads) => {
                    // Spawned per run: tens of microseconds, against a sample's 100 ms.
                    let mut shares = senders.chunks(senders.len().div_ceil(threads));
                    let own = shares.next().expect("at least one channel");
                    std::thread::scope(|scope| {
                        for share in shares {
                            scope.spawn(move || {
                                self.each_message(iters, |msg| send_to_all(share, msg));
                            });
                        }
                        self.each_message(iters, |msg| send_to_all(own, msg));
                    });
                }
                RawLoop::Guarded => {
                    // A route holding the senders (n clones per run: microseconds, against a
                    // sample's 100 ms), a memo of it, and a send section's counter.
                    let route: Arc<[Sender<Payload>]> = senders.as_slice().into();
                    let memo: Weak<[Sender<Payload>]> = Arc::downgrade(&route);
                    let section = AtomicU64::new(0);
                    self.each_message(iters, |msg| {
                        let route = memo.upgrade().expect("held above");
                        let entered = section.fetch_add(1, Ordering::SeqCst);
                        send_to_all(&route, msg);
                        section.store(entered, Ordering::Release);
                        drop(route);
                    });
                }
            },
        }
        self.done.recv().expect("a consumer acknowledges");
        start.elapsed()
    }

    /// Hands `publish` `iters` messages: clones of the regular one, then the `LAST` one.
    fn each_message(&self, iters: u64, mut publish: impl FnMut(Payload)) {
        for _ in 1..iters {
            publish(self.regular.clone());
        }
        publish(self.last.clone());
    }
}

impl Drop for Fanout {
    fn drop(&mut self) {
        self.sink.close();
        join_consumers(&mut self.consumers);
    }
}

/// The broker of the `publish/fanout` group and of the sweep's fan-out variants, before their
/// own settings.
fn fanout_broker() -> BrokerBuilder<Payload> {
    Broker::builder().overflow(Overflow::Block)
}

fn bench_fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("publish/fanout");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for n in [1, 10, 100, 1000] {
        group.throughput(Throughput::Elements(n as u64));
        bench_fixture(
            &mut group,
            BenchmarkId::new("syncmq", n),
            || Fanout::syncmq(n, fanout_broker()),
            |b, fixture| b.iter_custom(|iters| fixture.run(iters)),
        );
        bench_fixture(
            &mut group,
            BenchmarkId::new("crossbeam", n),
            || Fanout::crossbeam(n, DEFAULT_CAPACITY),
            |b, fixture| b.iter_custom(|iters| fixture.run(iters)),
        );
    }
    group.finish();
}

/// N queues nobody is waiting on, filled by timed chunks of publishes and drained untimed:
/// the publishing thread's own cost per delivery, with no wake-ups and no scheduling noise.
fn bench_enqueue(c: &mut Criterion) {
    let mut group = c.benchmark_group("publish/enqueue");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for n in [1, 10, 100, 1000] {
        group.throughput(Throughput::Elements(n as u64));
        bench_fixture(
            &mut group,
            BenchmarkId::new("syncmq", n),
            // Inline delivery: striping would hand sends to other threads.
            || Enqueue::syncmq(n, |b| b.workers(0)),
            |b, fixture| b.iter_custom(|iters| fixture.run(iters)),
        );
        bench_fixture(
            &mut group,
            BenchmarkId::new("crossbeam", n),
            || Enqueue::crossbeam(n),
            |b, fixture| b.iter_custom(|iters| fixture.run(iters)),
        );
    }
    group.finish();
}

/// N queues of [`CHUNK`] with no thread waiting on them.
enum Enqueue {
    Syncmq {
        broker: Broker<Payload>,
        subs: Vec<syncmq::Subscription<Payload>>,
    },
    /// The raw baseline: a blocking `send` to each channel in turn (the queues have room).
    Crossbeam(RawSends<Payload>),
}

impl Enqueue {
    fn syncmq(
        n: usize,
        configure: impl FnOnce(BrokerBuilder<Payload>) -> BrokerBuilder<Payload>,
    ) -> Self {
        let builder = Broker::builder().capacity(CHUNK).overflow(Overflow::Block);
        let broker = configure(builder).build();
        let subs = (0..n)
            .map(|_| broker.subscribe(TOPIC).expect("valid topic"))
            .collect();
        Enqueue::Syncmq { broker, subs }
    }

    fn crossbeam(n: usize) -> Self {
        Enqueue::Crossbeam(RawSends::new(n))
    }

    /// Times `iters` publishes, in chunks that fit the queues, draining them untimed.
    fn run(&self, iters: u64) -> Duration {
        let msg = payload(0);
        match self {
            Enqueue::Syncmq { broker, subs } => timed_chunks(
                iters,
                |_| {
                    broker
                        .publish(black_box(TOPIC), msg.clone())
                        .expect("open broker");
                },
                || subs.iter().for_each(|s| s.try_iter().for_each(drop)),
            ),
            Enqueue::Crossbeam(raw) => raw.timed(iters, &msg),
        }
    }
}

fn bench_no_subscribers(c: &mut Criterion) {
    let mut group = c.benchmark_group("publish");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let broker = Broker::<Payload>::new();
    // Another topic has subscribers, so the registry is not empty.
    let _other = broker.subscribe("bench.other").expect("valid topic");
    let msg = payload(0);
    group.bench_function("no_subscribers", |b| {
        b.iter(|| broker.publish(black_box(TOPIC), msg.clone()))
    });
    group.finish();
}

fn bench_subscribe_unsubscribe(c: &mut Criterion) {
    let mut group = c.benchmark_group("subscribe_unsubscribe");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for others in [0, 100] {
        let broker = Broker::<Payload>::new();
        let _others: Vec<_> = (0..others)
            .map(|_| broker.subscribe(TOPIC).expect("valid topic"))
            .collect();
        group.bench_with_input(BenchmarkId::from_parameter(others), &others, |b, _| {
            b.iter(|| drop(broker.subscribe(black_box(TOPIC)).expect("valid topic")))
        });
    }
    group.finish();
}

/// `stalled` subscribers that never read, with full queues, listed first, then `fast` ones
/// draining on their own threads; default capacity and 5 ms timeout.
struct Stalled {
    sink: Sink<Payload>,
    /// Kept open, never read: the stalled subscriptions, or the stalled channels' receivers.
    _stalled: Box<dyn Any>,
    consumers: Vec<JoinHandle<()>>,
}

impl Stalled {
    fn syncmq(stalled: usize, fast: usize) -> Self {
        let broker = Broker::<Payload>::builder()
            .send_timeout(DEFAULT_SEND_TIMEOUT)
            .build();
        let stalled_subs: Vec<_> = (0..stalled)
            .map(|_| broker.subscribe(TOPIC).expect("valid topic"))
            .collect();
        // Fill the stalled queues while they are the only subscribers.
        for _ in 0..DEFAULT_CAPACITY {
            broker.publish(TOPIC, payload(0)).expect("open broker");
        }
        let consumers = (0..fast)
            .map(|i| {
                let sub = broker.subscribe(TOPIC).expect("valid topic");
                spawn_consumer(i, move || sub.iter().for_each(drop))
            })
            .collect();
        let report = broker.publish(TOPIC, payload(0)).expect("open broker");
        assert_eq!((report.delivered, report.dropped), (fast, stalled));
        Stalled {
            sink: Sink::Syncmq(broker),
            _stalled: Box::new(stalled_subs),
            consumers,
        }
    }

    fn crossbeam(stalled: usize, fast: usize) -> Self {
        let mut senders = Vec::new();
        let mut stalled_receivers = Vec::new();
        for _ in 0..stalled {
            let (sender, receiver) = crossbeam_channel::bounded(DEFAULT_CAPACITY);
            for _ in 0..DEFAULT_CAPACITY {
                sender.send(payload(0)).expect("room");
            }
            senders.push(sender);
            stalled_receivers.push(receiver);
        }
        let consumers = (0..fast)
            .map(|i| {
                let (sender, receiver) = crossbeam_channel::bounded::<Payload>(DEFAULT_CAPACITY);
                senders.push(sender);
                spawn_consumer(i, move || receiver.iter().for_each(drop))
            })
            .collect();
        Stalled {
            sink: Sink::Crossbeam(senders),
            _stalled: Box::new(stalled_receivers),
            consumers,
        }
    }

    fn publish(&self, msg: Payload) -> usize {
        match &self.sink {
            Sink::Syncmq(broker) => broker.publish(TOPIC, msg).expect("open broker").dropped,
            Sink::Crossbeam(senders) => senders
                .iter()
                .filter(|s| s.send_timeout(msg.clone(), DEFAULT_SEND_TIMEOUT).is_err())
                .count(),
        }
    }
}

impl Drop for Stalled {
    fn drop(&mut self) {
        self.sink.close();
        join_consumers(&mut self.consumers);
    }
}

fn bench_stalled(c: &mut Criterion) {
    let mut group = c.benchmark_group("publish/stalled");
    // Each publish waits out at least one 5 ms timeout: few, equal-sized samples.
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (stalled, fast) in [(1, 10), (5, 10)] {
        let shape = format!("{stalled}of{}", stalled + fast);
        let msg = payload(0);
        bench_fixture(
            &mut group,
            BenchmarkId::new("syncmq", &shape),
            || Stalled::syncmq(stalled, fast),
            |b, fixture| b.iter(|| assert_eq!(fixture.publish(msg.clone()), stalled)),
        );
        bench_fixture(
            &mut group,
            BenchmarkId::new("crossbeam", &shape),
            || Stalled::crossbeam(stalled, fast),
            |b, fixture| b.iter(|| assert_eq!(fixture.publish(msg.clone()), stalled)),
        );
    }
    group.finish();
}

fn main() {
    if let Ok(which) = std::env::var("SYNCMQ_BENCH_SWEEP") {
        sweep::run(&which);
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    bench_fanout(&mut c);
    bench_enqueue(&mut c);
    bench_no_subscribers(&mut c);
    bench_subscribe_unsubscribe(&mut c);
    bench_stalled(&mut c);
    c.final_summary();
}

/// The dispatch sweep: which threshold and worker count make large fan-outs fastest.
mod sweep {
    use super::common::{interleaved, median};
    use super::{DEFAULT_CAPACITY, Enqueue, Fanout, RawLoop, fanout_broker};
    use std::time::Duration;

    const DEFAULT_NS: [usize; 5] = [50, 100, 200, 500, 1000];
    const THRESHOLDS: [usize; 4] = [32, 64, 128, 256];
    const WORKERS: [usize; 2] = [1, 2];

    /// A workload whose fixture times a batch of publishes.
    #[derive(Clone, Copy, PartialEq)]
    enum Shape {
        /// Subscribers draining on their own threads: [`Fanout`].
        Fanout,
        /// Nobody waiting, queues drained untimed: [`Enqueue`]. The publishing side's own cost.
        Enqueue,
    }

    impl Shape {
        /// Deliveries per timed sample, whatever N.
        fn deliveries_per_sample(self) -> usize {
            match self {
                Shape::Fanout => 1_000_000,
                Shape::Enqueue => 4_000_000,
            }
        }
    }

    /// A fixture of either shape.
    enum Fixture {
        Fanout(Fanout),
        Enqueue(Enqueue),
    }

    impl Fixture {
        fn run(&self, iters: u64) -> Duration {
            match self {
                Fixture::Fanout(f) => f.run(iters),
                Fixture::Enqueue(f) => f.run(iters),
            }
        }
    }

    #[derive(Clone, Copy)]
    enum Variant {
        /// A raw crossbeam loop: `Plain`, the baseline every variant is measured against, or
        /// one of the ceilings (fan-out only).
        Raw(RawLoop),
        /// `Broker::builder()` defaults (but `Overflow::Block`).
        Default,
        Inline,
        Striped {
            threshold: usize,
            workers: usize,
        },
    }

    impl Variant {
        fn label(self) -> String {
            match self {
                Variant::Raw(RawLoop::Plain) => "crossbeam".into(),
                Variant::Raw(RawLoop::Split(threads)) => format!("raw/{threads}thr"),
                Variant::Raw(RawLoop::Guarded) => "raw+atoms".into(),
                Variant::Default => "default".into(),
                Variant::Inline => "inline".into(),
                Variant::Striped { threshold, workers } => format!("t{threshold}/w{workers}"),
            }
        }

        fn fixture(self, shape: Shape, n: usize) -> Fixture {
            type Builder = syncmq::BrokerBuilder<super::Payload>;
            let configure = move |builder: Builder| match self {
                Variant::Default => builder,
                Variant::Raw(_) => unreachable!("a raw loop has no broker"),
                Variant::Inline => builder.workers(0),
                Variant::Striped { threshold, workers } => {
                    builder.workers(workers).dispatch_threshold(threshold)
                }
            };
            match (shape, self) {
                (Shape::Fanout, Variant::Raw(raw)) => {
                    Fixture::Fanout(Fanout::crossbeam_sending(n, DEFAULT_CAPACITY, raw))
                }
                (Shape::Fanout, _) => {
                    Fixture::Fanout(Fanout::syncmq(n, configure(fanout_broker())))
                }
                (Shape::Enqueue, Variant::Raw(RawLoop::Plain)) => {
                    Fixture::Enqueue(Enqueue::crossbeam(n))
                }
                (Shape::Enqueue, Variant::Raw(_)) => unreachable!("ceilings are fan-out only"),
                (Shape::Enqueue, _) => Fixture::Enqueue(Enqueue::syncmq(n, configure)),
            }
        }

        /// How many threads send a publish to `n` subscribers: the stripes
        /// `Shared::deliver_along` cuts it into, or a split raw loop's threads.
        fn stripes(self, n: usize) -> String {
            match self {
                Variant::Striped { threshold, workers } if n >= threshold => (n
                    / (threshold / 2).max(1))
                .clamp(2, workers + 1)
                .to_string(),
                Variant::Default => "?".into(),
                Variant::Raw(RawLoop::Split(threads)) => {
                    n.div_ceil(n.div_ceil(threads)).to_string()
                }
                _ => "1".into(),
            }
        }
    }

    fn env_usize_list(name: &str) -> Option<Vec<usize>> {
        let value = std::env::var(name).ok()?;
        let list = value
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                s.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}: bad number {s:?}"))
            })
            .collect();
        Some(list)
    }

    /// CPU time used by the whole process (every thread) so far, from `/proc/self/stat`, in
    /// seconds; `None` where that file does not exist. Assumes 100 clock ticks per second, as
    /// on every Linux configuration in practice: 10 ms resolution.
    fn process_cpu_seconds() -> Option<f64> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the parenthesised command name: state is the first, utime the 12th.
        let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
        let utime: f64 = fields.next()?.parse().ok()?;
        let stime: f64 = fields.next()?.parse().ok()?;
        Some((utime + stime) / 100.0)
    }

    /// One timed run of one variant.
    #[derive(Clone, Copy)]
    struct Sample {
        wall: f64,
        cpu: Option<f64>,
    }

    pub(super) fn run(which: &str) {
        let shapes: &[Shape] = match which {
            "1" | "fanout" => &[Shape::Fanout],
            "enqueue" => &[Shape::Enqueue],
            "all" => &[Shape::Fanout, Shape::Enqueue],
            other => panic!("SYNCMQ_BENCH_SWEEP: expected fanout, enqueue or all, got {other:?}"),
        };
        let rounds = env_usize_list("SYNCMQ_BENCH_SWEEP_ROUNDS")
            .and_then(|v| v.first().copied())
            .map_or(15, |n| n.max(1));
        let verbose = std::env::var_os("SYNCMQ_BENCH_SWEEP_VERBOSE").is_some();
        let ns = env_usize_list("SYNCMQ_BENCH_SWEEP_N").unwrap_or_else(|| DEFAULT_NS.to_vec());
        println!(
            "dispatch sweep: {} cores, Overflow::Block, {rounds} interleaved rounds.\n\
             speed: median over rounds of (crossbeam time / variant time) in the same round, \
             with (min..max); cpu: median of (variant CPU time / crossbeam CPU time), whole \
             process; [stripes]",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
        );
        let mut variants = vec![
            Variant::Raw(RawLoop::Plain),
            Variant::Default,
            Variant::Inline,
        ];
        let thresholds =
            env_usize_list("SYNCMQ_BENCH_SWEEP_THRESHOLDS").unwrap_or_else(|| THRESHOLDS.to_vec());
        let workers_list =
            env_usize_list("SYNCMQ_BENCH_SWEEP_WORKERS").unwrap_or_else(|| WORKERS.to_vec());
        for &threshold in &thresholds {
            for &workers in &workers_list {
                variants.push(Variant::Striped { threshold, workers });
            }
        }
        if std::env::var_os("SYNCMQ_BENCH_SWEEP_CEILING").is_some() {
            variants.extend([
                Variant::Raw(RawLoop::Guarded),
                Variant::Raw(RawLoop::Split(2)),
                Variant::Raw(RawLoop::Split(4)),
            ]);
        }
        for &shape in shapes {
            for &n in &ns {
                // A variant whose threshold is above n runs inline: measure inline once.
                let active: Vec<Variant> = variants
                    .iter()
                    .copied()
                    .filter(|v| match v {
                        Variant::Striped { threshold, .. } => n >= *threshold,
                        // The ceilings bound the fan-out; the enqueue shape has its own
                        // baseline only.
                        Variant::Raw(RawLoop::Plain) => true,
                        Variant::Raw(RawLoop::Split(threads)) => {
                            shape == Shape::Fanout && n >= *threads
                        }
                        Variant::Raw(RawLoop::Guarded) => shape == Shape::Fanout,
                        Variant::Default | Variant::Inline => true,
                    })
                    .collect();
                let samples = measure(shape, n, &active, rounds, verbose);
                report(shape, n, &active, &samples);
            }
        }
    }

    fn measure(
        shape: Shape,
        n: usize,
        active: &[Variant],
        rounds: usize,
        verbose: bool,
    ) -> Vec<Vec<Sample>> {
        let iters = (shape.deliveries_per_sample() / n).max(1) as u64;
        interleaved(rounds, active.len(), |round, i| {
            // One set of consumer threads at a time: with thousands of idle threads from
            // other fixtures alive, fan-out to 1000 slowed down 100-fold here.
            let fixture = active[i].fixture(shape, n);
            fixture.run(iters / 4 + 1); // warm: pool threads spawned, caches hot
            let cpu_before = process_cpu_seconds();
            let elapsed = fixture.run(iters);
            let cpu = process_cpu_seconds()
                .zip(cpu_before)
                .map(|(after, before)| after - before);
            drop(fixture);
            if verbose {
                eprintln!(
                    "N = {n} round {round} {}: {elapsed:?}, cpu {cpu:?}",
                    active[i].label()
                );
            }
            Sample {
                wall: elapsed.as_secs_f64(),
                cpu,
            }
        })
    }

    fn report(shape: Shape, n: usize, active: &[Variant], samples: &[Vec<Sample>]) {
        let deliveries = ((shape.deliveries_per_sample() / n).max(1) * n) as f64;
        let mut raw: Vec<f64> = samples[0].iter().map(|s| s.wall).collect();
        let raw_wall = median(&mut raw);
        let mut raw_cpu: Vec<f64> = samples[0].iter().filter_map(|s| s.cpu).collect();
        let raw_cpu = (!raw_cpu.is_empty()).then(|| median(&mut raw_cpu));
        println!(
            "{} N = {n}: crossbeam {:.2} M deliveries/s, {} ns CPU per delivery",
            match shape {
                Shape::Fanout => "fanout",
                Shape::Enqueue => "enqueue",
            },
            deliveries / raw_wall / 1e6,
            raw_cpu.map_or("?".into(), |cpu| format!("{:.0}", cpu / deliveries * 1e9)),
        );
        for (i, variant) in active.iter().enumerate().skip(1) {
            let pairs = samples[i].iter().zip(&samples[0]);
            let mut speed: Vec<f64> = pairs.clone().map(|(v, raw)| raw.wall / v.wall).collect();
            let mut cpu: Vec<f64> = pairs
                .filter_map(|(v, raw)| Some(v.cpu? / raw.cpu?))
                .filter(|ratio| ratio.is_finite())
                .collect();
            let mid = median(&mut speed);
            let cpu = if cpu.is_empty() {
                "?".into()
            } else {
                format!("{:.2}x", median(&mut cpu))
            };
            println!(
                "  {:<9} speed {:>5.2}x ({:.2}..{:.2})  cpu {cpu:>5}  [{}]",
                variant.label(),
                mid,
                speed[0],
                speed[speed.len() - 1],
                variant.stripes(n),
            );
        }
    }
}

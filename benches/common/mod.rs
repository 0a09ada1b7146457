//! Helpers shared by the `publish`, `routing`, `slow_consumers` and `full_queues` benchmarks
//! (`mod common;`): consumer threads, fixtures, the raw enqueue baseline, the interleaved-rounds
//! mode and its reports.
//!
//! Each bench compiles its own copy of this module and uses only part of it, so the items that
//! some of them do not use carry `#[allow(dead_code)]`, with the benches that use them as reason.
//! Workloads stay in the benches: only what two or more of them would otherwise repeat word for
//! word lives here.

use std::fmt;
use std::hint::black_box;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{Bencher, BenchmarkGroup, BenchmarkId, Criterion};
use crossbeam_channel::{Receiver, Sender};
use syncmq::Broker;

/// Stack size of consumer threads: they only loop over `recv`. Keeps 1000s of them cheap.
#[allow(
    dead_code,
    reason = "used by the publish, routing and slow_consumers benches only"
)]
const CONSUMER_STACK: usize = 64 * 1024;

/// Publishes per timed chunk of [`timed_chunks`], and so the queue bound of the enqueue-only
/// fixtures: a timed chunk never fills their queues.
#[allow(dead_code, reason = "used by the publish and routing benches only")]
pub(crate) const CHUNK: usize = 512;

/// Spawns consumer thread `index` (named `bench-consumer-{index}`, small stack) running `body`.
#[allow(
    dead_code,
    reason = "used by the publish, routing and slow_consumers benches only"
)]
pub(crate) fn spawn_consumer(index: usize, body: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    thread::Builder::new()
        .name(format!("bench-consumer-{index}"))
        .stack_size(CONSUMER_STACK)
        .spawn(body)
        .expect("spawn consumer thread")
}

/// Joins every consumer thread, leaving `consumers` empty. Call it once their queues are closed
/// (broker closed, senders dropped), or it waits forever.
#[allow(
    dead_code,
    reason = "used by the publish, routing and slow_consumers benches only"
)]
pub(crate) fn join_consumers(consumers: &mut Vec<JoinHandle<()>>) {
    for consumer in consumers.drain(..) {
        consumer.join().expect("consumer thread panicked");
    }
}

/// How a fixture with consumer threads publishes.
#[allow(
    dead_code,
    reason = "used by the publish, routing and slow_consumers benches only"
)]
pub(crate) enum Sink<T> {
    /// Through a broker, whose subscribers the consumer threads drain.
    Syncmq(Broker<T>),
    /// By sending to each channel itself, in turn: the raw crossbeam baseline. One channel
    /// shared by several consumers is a work queue.
    Crossbeam(Vec<Sender<T>>),
}

#[allow(
    dead_code,
    reason = "used by the publish, routing and slow_consumers benches only"
)]
impl<T: Clone + Send + 'static> Sink<T> {
    /// Closes the consumers' queues: they drain what is left and their threads end.
    pub(crate) fn close(&mut self) {
        match self {
            Sink::Syncmq(broker) => broker.close(),
            Sink::Crossbeam(senders) => senders.clear(),
        }
    }
}

/// Benchmarks `id` in `group`: `bench` gets the fixture that `build` makes on first use, so a
/// benchmark that a filter leaves out builds nothing, and that is dropped when this returns, so
/// one fixture (and one set of consumer threads) exists at a time.
pub(crate) fn bench_fixture<F>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: BenchmarkId,
    build: impl Fn() -> F,
    mut bench: impl FnMut(&mut Bencher<'_>, &F),
) {
    let mut fixture = None;
    group.bench_function(id, |b| bench(b, fixture.get_or_insert_with(&build)));
}

/// Runs `publish` `iters` times, passing the index (`0..iters`), in chunks of [`CHUNK`], timing
/// only the publishes, and runs `drain` (untimed) after each chunk.
#[allow(dead_code, reason = "used by the publish and routing benches only")]
pub(crate) fn timed_chunks(
    iters: u64,
    mut publish: impl FnMut(u64),
    mut drain: impl FnMut(),
) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let chunk = (iters - done).min(CHUNK as u64);
        let start = Instant::now();
        for i in done..done + chunk {
            publish(i);
        }
        total += start.elapsed();
        drain();
        done += chunk;
    }
    total
}

/// One raw publish: a blocking `send` of `msg` to every channel in turn, like the broker a clone
/// for all but the last channel, which gets `msg` itself.
#[allow(dead_code, reason = "used by the publish and routing benches only")]
pub(crate) fn send_to_all<T: Clone>(senders: &[Sender<T>], msg: T) {
    let (last, rest) = senders.split_last().expect("at least one channel");
    for sender in rest {
        sender.send(msg.clone()).expect("receiver alive");
    }
    last.send(msg).expect("receiver alive");
}

/// `n` bounded crossbeam channels of [`CHUNK`] that nobody waits on: the raw baseline of the
/// enqueue-only fixtures (`publish/enqueue`, the routing groups).
#[allow(dead_code, reason = "used by the publish and routing benches only")]
pub(crate) struct RawSends<T> {
    senders: Vec<Sender<T>>,
    receivers: Vec<Receiver<T>>,
}

#[allow(dead_code, reason = "used by the publish and routing benches only")]
impl<T: Clone> RawSends<T> {
    pub(crate) fn new(n: usize) -> Self {
        let (senders, receivers) = (0..n).map(|_| crossbeam_channel::bounded(CHUNK)).unzip();
        RawSends { senders, receivers }
    }

    /// Times `iters` raw publishes of `msg` ([`send_to_all`]) in [`timed_chunks`]: the queues
    /// always have room, so no `send` waits. One value per publish goes through
    /// [`black_box`], as the broker side's topic does in the enqueue fixtures.
    pub(crate) fn timed(&self, iters: u64, msg: &T) -> Duration {
        timed_chunks(
            iters,
            |_| send_to_all(&self.senders, black_box(msg.clone())),
            || {
                self.receivers
                    .iter()
                    .for_each(|r| r.try_iter().for_each(drop))
            },
        )
    }
}

/// `SYNCMQ_BENCH_ROUNDS`, when it parses as a number: how many interleaved rounds to run instead
/// of the criterion groups (at least 1). `None`, so the criterion groups run, otherwise.
fn rounds_from_env() -> Option<usize> {
    std::env::var("SYNCMQ_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .map(|n| n.max(1))
}

/// The `main` of a bench with an interleaved-rounds mode: `rounds(n)` when
/// `SYNCMQ_BENCH_ROUNDS=<n>` is set, the criterion `groups` otherwise.
#[allow(
    dead_code,
    reason = "used by the routing, slow_consumers and full_queues benches only"
)]
pub(crate) fn rounds_or_criterion(rounds: impl FnOnce(usize), groups: impl FnOnce(&mut Criterion)) {
    if let Some(n) = rounds_from_env() {
        rounds(n);
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    groups(&mut c);
    c.final_summary();
}

/// Takes `rounds` samples of each of `count` variants, interleaved: each round calls
/// `sample(round, variant)` once per variant, starting one variant further on each round, so that
/// each variant takes its turn at running first, and a noisy machine moves them all together.
/// Returns each variant's samples, in round order.
pub(crate) fn interleaved<S>(
    rounds: usize,
    count: usize,
    mut sample: impl FnMut(usize, usize) -> S,
) -> Vec<Vec<S>> {
    let mut samples: Vec<Vec<S>> = (0..count).map(|_| Vec::with_capacity(rounds)).collect();
    for round in 0..rounds {
        for k in 0..count {
            let variant = (round + k) % count;
            samples[variant].push(sample(round, variant));
        }
    }
    samples
}

/// The median over rounds of `times[r] / baseline[r]`: a variant's time relative to the
/// baseline's in the same round.
#[allow(
    dead_code,
    reason = "used by the routing, slow_consumers and full_queues benches only"
)]
pub(crate) fn median_ratio(times: &[f64], baseline: &[f64]) -> f64 {
    let mut ratios: Vec<f64> = times.iter().zip(baseline).map(|(t, b)| t / b).collect();
    median(&mut ratios)
}

/// The median of `values`, which it sorts (the upper one of an even count).
pub(crate) fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// A duration in seconds, for reports: `1.55 µs`, `14.9 ns`, `5.11 ms`.
#[allow(
    dead_code,
    reason = "used by the routing and slow_consumers benches only"
)]
pub(crate) fn human(secs: f64) -> String {
    if secs >= 1e-3 {
        format!("{:.2} ms", secs * 1e3)
    } else if secs >= 1e-6 {
        format!("{:.2} µs", secs * 1e6)
    } else {
        format!("{:.1} ns", secs * 1e9)
    }
}

/// One variant's times per operation over interleaved rounds: its median, its range, and the
/// median over rounds of its ratio to the baseline. Displays as
/// `  59.4 ns  (57.0 ns..66.2 ns)  time   4.00x baseline`.
#[allow(
    dead_code,
    reason = "used by the routing and slow_consumers benches only"
)]
pub(crate) struct Summary {
    /// Median time per operation, in seconds.
    pub(crate) median: f64,
    min: f64,
    max: f64,
    /// [`median_ratio`] to the baseline.
    ratio: f64,
}

#[allow(
    dead_code,
    reason = "used by the routing and slow_consumers benches only"
)]
impl Summary {
    /// Summarises `times`, one per round, against `baseline`'s times in the same rounds.
    pub(crate) fn new(times: &[f64], baseline: &[f64]) -> Self {
        let mut sorted = times.to_vec();
        let median = median(&mut sorted);
        Summary {
            median,
            min: sorted[0],
            max: sorted[sorted.len() - 1],
            ratio: median_ratio(times, baseline),
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>10}  ({}..{})  time {:>6.2}x baseline",
            human(self.median),
            human(self.min),
            human(self.max),
            self.ratio,
        )
    }
}

//! A publish that finds every queue full and waits for room (phase 2 of delivery), while one
//! thread drains the queues in turn.
//!
//! Each iteration: `K` queues of capacity 1 hold one message each; a publishing thread is told
//! to publish one more message with `Overflow::Block`, and the measuring thread at once
//! receives the old message from every queue, last queue first, then waits for the publish to
//! return. (Last first, so that the publisher, which starts with the first queue, meets full
//! queues rather than follow the drain: the raw loop blocks on the first queue until the drain
//! reaches it; syncmq offers the message to every queue and waits on those still full, about
//! half of them.) The time is from the go to the publish's return. Two variants in one group,
//! `full_queues/drain`:
//!
//! - `crossbeam/K`: the raw baseline, the publishing thread sending to its `K` bounded
//!   crossbeam channels in turn with a blocking `send`;
//! - `syncmq/K`: `broker.publish` to `K` subscribers of one topic (inline, no dispatch
//!   threads), which offers the message to every queue, then waits on the full ones together.
//!
//! Either way the publish cannot finish before the drain reaches the last queue; what differs
//! is what the wait costs on top. (Before a wake-up settled every queue that had room, each
//! wake-up settled one, so a publish waiting on `K` queues passed over all the rest about `K`
//! times: at `K` = 1000 this bench measured it at 17 times the raw loop, against 0.5 to 1.5
//! times since.)
//!
//! `SYNCMQ_BENCH_ROUNDS=15 cargo bench --bench full_queues` instead runs the variants
//! interleaved, round after round, and prints each one's median time and the median over rounds
//! of its ratio to the crossbeam baseline measured in the same round.

mod common;

use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::{bench_fixture, interleaved, median, median_ratio, rounds_or_criterion};
use criterion::{BenchmarkId, Criterion};
use crossbeam_channel::{Receiver, Sender, bounded};
use syncmq::{Broker, Overflow, Subscription};

const TOPIC: &str = "bench.full";
const SIZES: [usize; 2] = [100, 1000];

/// What the publishing thread publishes through, and what the measuring thread drains.
enum Queues {
    Crossbeam(Vec<Receiver<u64>>),
    Syncmq(Broker<u64>, Vec<Subscription<u64>>),
}

/// `K` full queues and a publishing thread that publishes one message per go.
struct Fixture {
    queues: Queues,
    go: Option<Sender<u64>>,
    done: Receiver<()>,
    publisher: Option<JoinHandle<()>>,
}

impl Fixture {
    fn new(syncmq: bool, k: usize) -> Self {
        let (go, go_receiver) = bounded::<u64>(1);
        let (done_sender, done) = bounded(1);
        let (queues, publisher) = if syncmq {
            let broker = Broker::builder()
                .capacity(1)
                .overflow(Overflow::Block)
                .workers(0)
                .build();
            let subs = (0..k)
                .map(|_| broker.subscribe(TOPIC).expect("valid topic, open broker"))
                .collect();
            let publishing = broker.clone();
            let publisher = thread::spawn(move || {
                for msg in go_receiver {
                    let report = publishing.publish(TOPIC, msg).expect("open broker");
                    assert_eq!(report.delivered, k, "Overflow::Block drops nothing");
                    done_sender.send(()).expect("the fixture waits");
                }
            });
            (Queues::Syncmq(broker, subs), publisher)
        } else {
            let (senders, receivers): (Vec<_>, Vec<_>) = (0..k).map(|_| bounded(1)).unzip();
            let publisher = thread::spawn(move || {
                for msg in go_receiver {
                    for sender in &senders {
                        sender.send(msg).expect("the fixture receives");
                    }
                    done_sender.send(()).expect("the fixture waits");
                }
            });
            (Queues::Crossbeam(receivers), publisher)
        };
        let fixture = Fixture {
            queues,
            go: Some(go),
            done,
            publisher: Some(publisher),
        };
        // Fill every queue, untimed: the first publish finds room everywhere.
        fixture.publish_and_drain(0, false);
        fixture
    }

    /// Tells the publisher to publish `msg`, drains one message from every queue, last first
    /// (unless `drain` is false), and waits for the publish to return.
    fn publish_and_drain(&self, msg: u64, drain: bool) -> Duration {
        let start = Instant::now();
        self.go
            .as_ref()
            .expect("set until drop")
            .send(msg)
            .expect("publisher alive");
        if drain {
            match &self.queues {
                Queues::Crossbeam(receivers) => {
                    for receiver in receivers.iter().rev() {
                        receiver.recv().expect("publisher alive");
                    }
                }
                Queues::Syncmq(_, subs) => {
                    for sub in subs.iter().rev() {
                        sub.recv().expect("broker open");
                    }
                }
            }
        }
        self.done.recv().expect("publisher alive");
        start.elapsed()
    }

    /// Times `iters` full-queue publishes, each against a drain.
    fn run(&self, iters: u64) -> Duration {
        (1..=iters)
            .map(|msg| self.publish_and_drain(msg, true))
            .sum()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // The publisher ends when the go channel closes; closing the broker ends the rest.
        self.go = None;
        if let Queues::Syncmq(broker, _) = &self.queues {
            broker.close();
        }
        if let Some(publisher) = self.publisher.take() {
            publisher.join().expect("publisher thread panicked");
        }
    }
}

fn bench_drain(c: &mut Criterion) {
    let mut group = c.benchmark_group("full_queues/drain");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for k in SIZES {
        for syncmq in [false, true] {
            let name = if syncmq { "syncmq" } else { "crossbeam" };
            bench_fixture(
                &mut group,
                BenchmarkId::new(name, k),
                || Fixture::new(syncmq, k),
                |b, fixture| b.iter_custom(|iters| fixture.run(iters)),
            );
        }
    }
    group.finish();
}

fn rounds(rounds: usize) {
    const ITERS: u64 = 50;
    println!(
        "full_queues, {} cores, {rounds} interleaved rounds of {ITERS} publishes: median time \
         from go to return, and median over rounds of (syncmq time / crossbeam time)",
        thread::available_parallelism().map_or(0, |n| n.get())
    );
    for k in SIZES {
        let fixtures = [Fixture::new(false, k), Fixture::new(true, k)];
        let mut times = interleaved(rounds, 2, |_, i| {
            fixtures[i].run(ITERS).as_secs_f64() / ITERS as f64
        });
        let ratio = median_ratio(&times[1], &times[0]);
        println!(
            "  K = {k:>4}: crossbeam {:>8.1} µs  syncmq {:>8.1} µs  ratio {ratio:.2}x",
            median(&mut times[0]) * 1e6,
            median(&mut times[1]) * 1e6,
        );
    }
}

fn main() {
    rounds_or_criterion(rounds, bench_drain);
}

//! Every overflow policy facing the same deliberately slow consumer:
//! `cargo run --release --example slow_consumer`.
//!
//! A publisher sends 40 numbered messages, one per millisecond, to the topic `prices`. Each
//! subscriber has a queue of 4 and a consumer that takes 20 ms per message: it falls behind
//! after a few messages, and its [`Overflow`] policy decides what the publisher does about it.
//! The run takes about two and a half seconds and prints three tables.
//!
//! **1. Each policy alone**, on its own broker, with the same workload. Look at:
//!
//! - `publish total` / `slowest`: what the slow consumer costs the *publisher* (time inside
//!   `publish`, pacing excluded). `Block` makes it run at the consumer's pace (everything is
//!   delivered, but it takes the consumer's 20 ms per message); `Drop` and `DropOldest` never
//!   wait; `Timeout(5ms)` pays up to 5 ms on every publish that finds the queue full; with
//!   `evict_after(3)` it pays that until three misses in a row, then the subscriber is evicted
//!   and publishes cost nothing for it any more.
//! - `received` / `missed` / `messages received`: what the *consumer* gets. `Drop` keeps what
//!   was queued and loses what comes next; `DropOldest` discards the queued messages instead,
//!   so it always ends with the newest ones (`36-39`). Every message not received is counted in
//!   `missed` ([`Subscription::dropped`](syncmq::Subscription::dropped)), except those published
//!   after an eviction, which no longer reach the subscriber at all.
//! - `end`: how `recv` ended once the queue was drained: `closed` by the broker, or `evicted`.
//!
//! **2. All five on one topic**, one broker, each publish reaching all five. The `Block`
//! subscriber paces every publish to its consumer's speed, which gives the other slow consumers
//! time to keep up: they miss almost nothing, and nobody is evicted.
//!
//! **3. The same without `Block`.** Look at the publish cost: the two `Timeout` subscribers'
//! waits happen *together* (a publish waits on all its full queues at once), so the total is
//! that of `Timeout(5ms)` alone in table 1, not the sum of both rows; and the eviction still
//! happens after three misses in a row.
//!
//! The exact numbers depend on how the consumers' sleeps line up with the publishes; their
//! shape does not. Consumers start before the first publish and the broker is closed after the
//! last, with channels rather than sleeps for coordination; the only sleeps are the
//! publisher's pace and the consumers' deliberate slowness.

use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use syncmq::{Broker, Error, Overflow, RecvError, SubscribeOptions};

const TOPIC: &str = "prices";
/// Messages published per run.
const MESSAGES: u32 = 40;
/// Pause between two publishes: the publisher's steady pace.
const PACE: Duration = Duration::from_millis(1);
/// What the slow consumer takes per message: 20 times the publishing pace.
const WORK: Duration = Duration::from_millis(20);
/// Queue bound of every subscriber.
const CAPACITY: usize = 4;
const TIMEOUT: Duration = Duration::from_millis(5);

/// One subscriber setup to compare.
struct Policy {
    name: &'static str,
    options: SubscribeOptions,
}

fn policies() -> Vec<Policy> {
    let base = SubscribeOptions::default().capacity(CAPACITY);
    vec![
        Policy {
            name: "Block",
            options: base.overflow(Overflow::Block),
        },
        Policy {
            name: "Drop",
            options: base.overflow(Overflow::Drop),
        },
        Policy {
            name: "Timeout(5ms)",
            options: base.overflow(Overflow::Timeout(TIMEOUT)),
        },
        Policy {
            name: "DropOldest",
            options: base.overflow(Overflow::DropOldest),
        },
        Policy {
            name: "Timeout(5ms)+evict_after(3)",
            options: base.overflow(Overflow::Timeout(TIMEOUT)).evict_after(3),
        },
    ]
}

/// What a consumer saw, returned by its thread.
struct Consumed {
    /// The numbers of the messages received, in order.
    got: Vec<u32>,
    missed: u64,
    end: RecvError,
}

/// What the publisher saw over a run.
#[derive(Default)]
struct Published {
    delivered: usize,
    dropped: usize,
    evicted: usize,
    /// Time spent inside `publish` calls, pacing excluded.
    total: Duration,
    slowest: Duration,
}

/// Subscribes with `options` and starts a slow consumer on it.
fn slow_consumer(
    broker: &Broker<u32>,
    options: SubscribeOptions,
    ready: &crossbeam_channel::Sender<()>,
) -> Result<JoinHandle<Consumed>, Error> {
    let sub = broker.subscribe_with(TOPIC, options)?;
    let ready = ready.clone();
    Ok(thread::spawn(move || {
        ready.send(()).expect("main waits for every consumer");
        let mut got = Vec::new();
        let end = loop {
            match sub.recv() {
                Ok(n) => {
                    got.push(n);
                    thread::sleep(WORK); // the deliberately slow part
                }
                Err(end) => break end,
            }
        };
        Consumed {
            got,
            missed: sub.dropped(),
            end,
        }
    }))
}

/// Starts one slow consumer per `options` on a fresh broker, publishes the workload, closes
/// the broker and collects what everyone saw.
fn run(options: &[SubscribeOptions]) -> Result<(Published, Vec<Consumed>), Error> {
    let broker = Broker::<u32>::new();
    let (ready, all_ready) = crossbeam_channel::unbounded();
    let consumers = options
        .iter()
        .map(|&options| slow_consumer(&broker, options, &ready))
        .collect::<Result<Vec<_>, _>>()?;
    for _ in &consumers {
        all_ready.recv().expect("consumer started");
    }

    let mut published = Published::default();
    for n in 0..MESSAGES {
        let start = Instant::now();
        let report = broker.publish(TOPIC, n)?;
        let took = start.elapsed();
        published.total += took;
        published.slowest = published.slowest.max(took);
        published.delivered += report.delivered;
        published.dropped += report.dropped;
        published.evicted += report.evicted;
        thread::sleep(PACE);
    }
    // Consumers drain what is queued, then their `recv` ends.
    broker.close();
    let consumed = consumers
        .into_iter()
        .map(|c| c.join().expect("consumer thread panicked"))
        .collect();
    Ok((published, consumed))
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn end(reason: RecvError) -> &'static str {
    match reason {
        RecvError::Evicted => "evicted",
        RecvError::Closed => "closed",
        _ => "other",
    }
}

/// `[0, 1, 2, 3, 20, 38]` as `0-3 20 38`.
fn ranges(numbers: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < numbers.len() {
        let mut j = i;
        while j + 1 < numbers.len() && numbers[j + 1] == numbers[j] + 1 {
            j += 1;
        }
        out.push(if j == i {
            numbers[i].to_string()
        } else {
            format!("{}-{}", numbers[i], numbers[j])
        });
        i = j + 1;
    }
    out.join(" ")
}

fn consumer_columns(c: &Consumed) -> String {
    format!(
        "{:>8} {:>6} {:>7}  {}",
        c.got.len(),
        c.missed,
        end(c.end),
        ranges(&c.got),
    )
}

const CONSUMER_HEADER: &str = "received missed     end  messages received";

fn main() -> Result<(), Error> {
    println!(
        "{MESSAGES} messages, one every {PACE:?}, to `{TOPIC}`; each subscriber: queue of \
         {CAPACITY}, a consumer taking {WORK:?} per message\n"
    );

    println!("1. Each policy alone (its own broker, same workload)\n");
    println!(
        "{:<28} {:>9} {:>7} {:>7} {:>13} {:>9} | {CONSUMER_HEADER}",
        "policy", "delivered", "dropped", "evicted", "publish total", "slowest",
    );
    for policy in policies() {
        let (published, consumed) = run(&[policy.options])?;
        println!(
            "{:<28} {:>9} {:>7} {:>7} {:>13} {:>9} | {}",
            policy.name,
            published.delivered,
            published.dropped,
            published.evicted,
            ms(published.total),
            ms(published.slowest),
            consumer_columns(&consumed[0]),
        );
    }

    let policies = policies();
    let everyone: Vec<_> = policies.iter().collect();
    shared(
        "2. All five on one topic (one broker; each publish reaches all five)",
        &everyone,
    )?;
    let no_block: Vec<_> = policies.iter().filter(|p| p.name != "Block").collect();
    shared("3. The same without Block", &no_block)
}

/// Runs one broker with a subscriber per policy, all on the topic, and prints the table.
fn shared(title: &str, policies: &[&Policy]) -> Result<(), Error> {
    println!("\n{title}\n");
    let options: Vec<_> = policies.iter().map(|p| p.options).collect();
    let (published, consumed) = run(&options)?;
    println!("{:<28} {CONSUMER_HEADER}", "subscriber");
    for (policy, consumed) in policies.iter().zip(&consumed) {
        println!("{:<28} {}", policy.name, consumer_columns(consumed));
    }
    println!(
        "publish side: {} deliveries, {} dropped, {} evicted; {} in publish calls, slowest {}",
        published.delivered,
        published.dropped,
        published.evicted,
        ms(published.total),
        ms(published.slowest),
    );
    Ok(())
}

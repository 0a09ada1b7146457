//! Stress: publishers, subscribers and subscribe/unsubscribe churn on many threads, with a close
//! in the middle; checks the accounting identity, per-publisher order, and that no concurrent
//! subscribe or unsubscribe loses a subscription. `SYNCMQ_STRESS=<n>` scales the work.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use crossbeam_channel::{bounded, select, unbounded};
use syncmq::{Broker, Error, Overflow, Subscription, TryRecvError};

mod common;
use common::{GUARD, OrderCheck, spawn_pending, stress_factor, subscribe_many};

/// A message: (publisher id, that publisher's sequence number).
type Msg = (usize, u64);

// --- helpers ------------------------------------------------------------------------------

/// A small deterministic pseudo-random generator (xorshift), one per thread.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

const TOPICS: [&str; 3] = ["s.a", "s.b", "s.c"];

/// What a publisher did in [`churn_with_a_close_in_the_middle`].
#[derive(Default)]
struct Published {
    ok_per_topic: [u64; TOPICS.len()],
    delivered: u64,
    dropped: u64,
}

/// What a subscriber thread saw.
#[derive(Default)]
struct Seen {
    /// Messages received, plus those handed back by `unsubscribe`.
    got: u64,
    /// `Subscription::dropped`, summed over its subscriptions.
    dropped: u64,
}

/// One round: publishers on every topic, stable subscribers (there from start to close),
/// churning subscribers, and a close once every publisher and churner is well under way.
fn churn_with_a_close_in_the_middle(overflow: Overflow, publishes_before_close: u64) {
    const PUBLISHERS: usize = 3;
    const STABLE_PER_TOPIC: usize = 2;
    const CHURNERS: usize = 3;
    const CYCLES_BEFORE_CLOSE: u64 = 20;

    let broker = Broker::<Msg>::builder()
        .capacity(4)
        .overflow(overflow)
        .dispatch_threshold(4)
        .workers(2)
        .build();

    let stable: Vec<_> = (0..TOPICS.len() * STABLE_PER_TOPIC)
        .map(|i| {
            let topic = i % TOPICS.len();
            let sub = broker.subscribe(TOPICS[topic]).unwrap();
            spawn_pending(move || {
                let mut order = OrderCheck::new(PUBLISHERS);
                for msg in sub.iter() {
                    order.see(msg);
                }
                (topic, order.count, sub.dropped())
            })
        })
        .collect();

    let (going_tx, going_rx) = unbounded();
    let churners: Vec<_> = (0..CHURNERS)
        .map(|c| {
            let broker = broker.clone();
            let going = going_tx.clone();
            spawn_pending(move || {
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (c as u64 + 1));
                let mut seen = Seen::default();
                for cycle in 0.. {
                    if cycle == CYCLES_BEFORE_CLOSE {
                        going.send(()).unwrap();
                    }
                    let topic = TOPICS[rng.below(TOPICS.len() as u64) as usize];
                    let sub = match broker.subscribe(topic) {
                        Ok(sub) => sub,
                        Err(err) => {
                            assert_eq!(err, Error::Closed);
                            break;
                        }
                    };
                    let mut order = OrderCheck::new(PUBLISHERS);
                    let mut closed = false;
                    for _ in 0..rng.below(8) {
                        let got = if rng.below(4) == 0 {
                            sub.recv_timeout(Duration::from_micros(200))
                                .map_err(|e| e.is_closed())
                        } else {
                            sub.try_recv().map_err(|e| e.is_closed())
                        };
                        match got {
                            Ok(msg) => order.see(msg),
                            Err(true) => {
                                closed = true;
                                break;
                            }
                            Err(false) => {}
                        }
                    }
                    seen.dropped += sub.dropped();
                    // Everything still queued comes back, after what was received.
                    for msg in sub.unsubscribe() {
                        order.see(msg);
                    }
                    seen.got += order.count;
                    if closed {
                        break;
                    }
                }
                seen
            })
        })
        .collect();

    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|id| {
            let broker = broker.clone();
            let going = going_tx.clone();
            spawn_pending(move || {
                let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ (id as u64 + 1));
                let mut published = Published::default();
                for seq in 0.. {
                    if seq == publishes_before_close {
                        going.send(()).unwrap();
                    }
                    let topic = rng.below(TOPICS.len() as u64) as usize;
                    match broker.publish(TOPICS[topic], (id, seq)) {
                        Ok(report) => {
                            published.ok_per_topic[topic] += 1;
                            published.delivered += report.delivered as u64;
                            published.dropped += report.dropped as u64;
                            assert!(report.routed() >= STABLE_PER_TOPIC);
                        }
                        Err(err) => {
                            assert_eq!(err, Error::Closed);
                            break;
                        }
                    }
                }
                published
            })
        })
        .collect();
    drop(going_tx);

    for _ in 0..PUBLISHERS + CHURNERS {
        going_rx.recv_timeout(GUARD).unwrap();
    }
    broker.close();

    let mut total = Published::default();
    for publisher in publishers {
        let p = publisher.wait(GUARD);
        for (t, ok) in p.ok_per_topic.iter().enumerate() {
            total.ok_per_topic[t] += ok;
        }
        total.delivered += p.delivered;
        total.dropped += p.dropped;
    }
    let mut accounted = 0;
    let mut subscriber_drops = 0;
    for subscriber in stable {
        let (topic, got, dropped) = subscriber.wait(GUARD);
        // There from start to close: every successful publish to its topic was routed to it,
        // and it either got it or counted it.
        assert_eq!(
            got + dropped,
            total.ok_per_topic[topic],
            "stable subscriber of {} ({overflow:?})",
            TOPICS[topic]
        );
        accounted += got;
        subscriber_drops += dropped;
    }
    for churner in churners {
        let seen = churner.wait(GUARD);
        accounted += seen.got;
        subscriber_drops += seen.dropped;
    }

    let stats = broker.stats();
    assert_eq!(stats.published, total.ok_per_topic.iter().sum::<u64>());
    assert_eq!(
        (stats.delivered, stats.dropped),
        (total.delivered, total.dropped),
        "stats agree with the reports ({overflow:?})"
    );
    // Every message counted as delivered reached a subscriber: received, handed back by
    // `unsubscribe`, or drained after the close.
    assert_eq!(
        accounted, stats.delivered,
        "delivered messages unaccounted for ({overflow:?})"
    );
    // Subscribers count the drops that were theirs; a subscriber leaving during a publish is
    // dropped for the report but not for anyone's count.
    assert!(subscriber_drops <= stats.dropped);
    assert_eq!((stats.topics, stats.subscribers), (0, 0));
}

// --- smoke --------------------------------------------------------------------------------

#[test]
fn a_short_churn_round_keeps_every_count() {
    churn_with_a_close_in_the_middle(Overflow::Block, 20);
}

// --- threaded -----------------------------------------------------------------------------

#[test]
#[cfg_attr(miri, ignore)] // stress: too slow under Miri
fn concurrent_subscribes_and_unsubscribes_lose_no_subscription() {
    const THREADS: usize = 4;
    const KEPT: usize = 25;
    let rounds = 20 * stress_factor();
    for _ in 0..rounds {
        let broker = Broker::<u32>::builder()
            .overflow(Overflow::Drop)
            .capacity(1)
            .build();
        let start = Arc::new(Barrier::new(THREADS));
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let broker = broker.clone();
                let start = start.clone();
                spawn_pending(move || {
                    start.wait();
                    let mut kept = Vec::new();
                    for i in 0..KEPT {
                        kept.push(broker.subscribe("t").unwrap());
                        // A transient subscription on the same topic and on another.
                        let topic = if (i + t) % 2 == 0 { "t" } else { "u" };
                        drop(broker.subscribe(topic).unwrap());
                        if i % 5 == 0 {
                            broker.subscribe("t").unwrap().unsubscribe();
                        }
                    }
                    kept
                })
            })
            .collect();
        let kept: Vec<Subscription<u32>> =
            threads.into_iter().flat_map(|t| t.wait(GUARD)).collect();
        assert_eq!(broker.subscriber_count("t"), THREADS * KEPT);
        assert_eq!(broker.subscriber_count("u"), 0);
        let stats = broker.stats();
        assert_eq!((stats.topics, stats.subscribers), (1, THREADS * KEPT));
        let report = broker.publish("t", 1).unwrap();
        assert_eq!((report.delivered, report.dropped), (THREADS * KEPT, 0));
        for sub in &kept {
            assert_eq!(sub.try_recv(), Ok(1));
        }
    }
}

/// Semantic 5: with `Overflow::Block`, a subscription that exists throughout a window of
/// publishes receives every one of them, however much other subscriptions come and go on the
/// same topic meanwhile (which also moves the topic across the dispatch threshold).
#[test]
#[cfg_attr(miri, ignore)] // stress: too slow under Miri
fn a_subscription_living_through_a_window_of_publishes_gets_all_of_them_despite_churn() {
    const PUBLISHERS: usize = 2;
    const CHURNERS: usize = 2;
    const IN_WINDOW: u64 = 30;
    let rounds = 15 * stress_factor() as u64;
    let broker = Broker::<Msg>::builder()
        .capacity(8)
        .overflow(Overflow::Block)
        .dispatch_threshold(4)
        .workers(2)
        .build();
    // `window` is `round << 1 | open`.
    let window = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (reached_tx, reached_rx) = unbounded();
    let (range_tx, range_rx) = unbounded();

    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|id| {
            let broker = broker.clone();
            let window = window.clone();
            let stop = stop.clone();
            let reached = reached_tx.clone();
            let ranges = range_tx.clone();
            spawn_pending(move || {
                // (round, first seq, last seq) of the publishes made while it was open.
                let mut open: Option<(u64, u64, u64)> = None;
                let mut seq = 0;
                while !stop.load(Ordering::SeqCst) {
                    let w = window.load(Ordering::SeqCst);
                    if let Some((round, first, last)) = open {
                        if w != (round << 1 | 1) {
                            // Every publish that saw the window open has returned.
                            ranges.send((id, round, first, last)).unwrap();
                            open = None;
                        }
                    }
                    broker.publish("t", (id, seq)).unwrap();
                    if w & 1 == 1 {
                        let round = w >> 1;
                        let (_, first, last) = open.get_or_insert((round, seq, seq));
                        *last = seq;
                        if *last - *first + 1 == IN_WINDOW {
                            reached.send(()).unwrap();
                        }
                    }
                    seq += 1;
                }
            })
        })
        .collect();
    drop((reached_tx, range_tx));

    let churners: Vec<_> = (0..CHURNERS)
        .map(|c| {
            let broker = broker.clone();
            let stop = stop.clone();
            spawn_pending(move || {
                let mut rng = Rng(0xdead_beef ^ (c as u64 + 1));
                let mut cycles = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let subs = subscribe_many(&broker, "t", rng.below(6) as usize + 1);
                    let other = broker.subscribe("u").unwrap();
                    for sub in &subs {
                        for _ in 0..rng.below(4) {
                            if sub.try_recv() == Err(TryRecvError::Empty) {
                                break;
                            }
                        }
                    }
                    for (i, sub) in subs.into_iter().enumerate() {
                        if i % 2 == 0 {
                            sub.unsubscribe();
                        }
                    }
                    drop(other);
                    cycles += 1;
                }
                cycles
            })
        })
        .collect();

    for round in 1..=rounds {
        let witness = broker.subscribe("t").unwrap();
        let (done_tx, done_rx) = bounded::<()>(1);
        let reader = spawn_pending(move || {
            let mut got = Vec::new();
            loop {
                select! {
                    recv(witness.receiver()) -> msg => got.push(msg.unwrap()),
                    recv(done_rx) -> _ => break,
                }
            }
            assert_eq!(witness.dropped(), 0);
            got.extend(witness.unsubscribe());
            got
        });
        window.store(round << 1 | 1, Ordering::SeqCst);
        for _ in 0..PUBLISHERS {
            reached_rx.recv_timeout(GUARD).unwrap();
        }
        window.store(round << 1, Ordering::SeqCst);
        let mut ranges = Vec::new();
        for _ in 0..PUBLISHERS {
            let (id, r, first, last) = range_rx.recv_timeout(GUARD).unwrap();
            assert_eq!(r, round);
            ranges.push((id, first, last));
        }
        done_tx.send(()).unwrap();
        let got = reader.wait(GUARD);

        let mut order = OrderCheck::new(PUBLISHERS);
        for &msg in &got {
            order.see(msg);
        }
        for (id, first, last) in ranges {
            let seqs: Vec<u64> = got
                .iter()
                .filter(|(p, s)| *p == id && (first..=last).contains(s))
                .map(|&(_, s)| s)
                .collect();
            assert_eq!(
                seqs,
                (first..=last).collect::<Vec<_>>(),
                "round {round}: the witness missed publishes of publisher {id}"
            );
        }
    }
    stop.store(true, Ordering::SeqCst);
    for publisher in publishers {
        publisher.wait(GUARD);
    }
    let cycles: u64 = churners.into_iter().map(|c| c.wait(GUARD)).sum();
    assert!(cycles > 0);
    broker.close();
}

// --- stress -------------------------------------------------------------------------------

#[test]
#[cfg_attr(miri, ignore)] // stress: too slow under Miri
fn churn_with_a_close_in_the_middle_keeps_accounting_and_order_under_every_policy() {
    let publishes = 300 * stress_factor() as u64;
    for _ in 0..stress_factor() {
        for overflow in [
            Overflow::Block,
            Overflow::Drop,
            Overflow::Timeout(Duration::from_micros(100)),
        ] {
            churn_with_a_close_in_the_middle(overflow, publishes);
        }
    }
}

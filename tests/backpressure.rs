//! Full queues: the `Drop`, `Timeout` and `Block` overflow policies, stalled subscribers not
//! delaying fast ones, and the accounting of every dropped message.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use syncmq::{Broker, Overflow, Subscription, TryRecvError};

mod common;
use common::{
    GUARD, OrderCheck, publish_in_background, spawn_guarded, subscribe_group_many, subscribe_many,
    wait_for_published,
};

/// Slack allowed on top of a timeout before a publish counts as too slow. Generous: the
/// machine may be loaded.
const SLACK: Duration = Duration::from_secs(2);

/// Messages per publisher in the accounting tests.
const COUNT: usize = if cfg!(miri) { 50 } else { 2_000 };

/// A broker whose queues hold one message, with the given policy.
fn broker_with(overflow: Overflow) -> Broker<u32> {
    Broker::builder().capacity(1).overflow(overflow).build()
}

/// Subscribes to `topic` and fills the one-message queue.
fn full_subscriber(broker: &Broker<u32>, topic: &str) -> Subscription<u32> {
    let sub = broker.subscribe(topic).unwrap();
    assert_eq!(broker.publish(topic, 0).unwrap().delivered, 1);
    assert_eq!(sub.len(), 1);
    sub
}

// ---------------------------------------------------------------------------------------------
// Smoke
// ---------------------------------------------------------------------------------------------

#[test]
fn smoke_drop_policy_skips_full_subscriber_and_counts_it() {
    let broker = broker_with(Overflow::Drop);
    let sub = full_subscriber(&broker, "t");
    let report = broker.publish("t", 1).unwrap();
    assert_eq!(
        (report.delivered, report.dropped, report.routed()),
        (0, 1, 1)
    );
    assert_eq!(sub.dropped(), 1);
    assert_eq!(broker.stats().dropped, 1);
    assert_eq!(sub.try_recv(), Ok(0));
}

// ---------------------------------------------------------------------------------------------
// Single thread
// ---------------------------------------------------------------------------------------------

#[test]
#[cfg_attr(miri, ignore)] // measures time
fn drop_policy_never_waits_and_counts_every_drop() {
    const PUBLISHES: u32 = 1_000;
    let broker = Broker::builder()
        .capacity(2)
        .overflow(Overflow::Drop)
        .build();
    let sub = broker.subscribe("t").unwrap();
    let publisher = broker.clone();
    // On another thread, so a publish that blocks by mistake fails the test.
    let (dropped, elapsed) = spawn_guarded(move || {
        let start = Instant::now();
        let mut dropped = 0;
        for i in 0..PUBLISHES {
            let report = publisher.publish("t", i).unwrap();
            assert_eq!(report.routed(), 1);
            dropped += report.dropped;
        }
        (dropped, start.elapsed())
    })
    .join();
    // The default 5 ms timeout would take 5 s here; `Block` would never return.
    assert!(elapsed < SLACK, "{PUBLISHES} publishes took {elapsed:?}");
    assert_eq!(dropped, (PUBLISHES - 2) as usize);
    assert_eq!(sub.dropped(), u64::from(PUBLISHES - 2));
    let stats = broker.stats();
    assert_eq!(
        (stats.published, stats.delivered, stats.dropped),
        (u64::from(PUBLISHES), 2, u64::from(PUBLISHES - 2))
    );
    // The oldest messages stay; the new ones are the ones skipped.
    assert_eq!(sub.try_iter().collect::<Vec<_>>(), [0, 1]);
}

#[test]
#[cfg_attr(miri, ignore)] // measures time
fn timeout_waits_about_its_duration_then_drops() {
    let timeout = Duration::from_millis(100);
    let broker = broker_with(Overflow::Timeout(timeout));
    let sub = full_subscriber(&broker, "t");
    for i in 1..=3 {
        let start = Instant::now();
        let report = broker.publish("t", i).unwrap();
        let elapsed = start.elapsed();
        assert_eq!((report.delivered, report.dropped), (0, 1));
        // Each publish gets its own deadline: never shorter than the timeout.
        assert!(elapsed >= timeout, "gave up after {elapsed:?}");
        assert!(elapsed < timeout + SLACK, "waited {elapsed:?}");
        assert_eq!(sub.dropped(), u64::from(i));
    }
    assert_eq!(sub.try_iter().collect::<Vec<_>>(), [0]);
}

#[test]
fn send_timeout_is_shorthand_for_timeout_policy() {
    let broker = Broker::<u32>::builder()
        .capacity(1)
        .send_timeout(Duration::from_millis(1))
        .build();
    let sub = full_subscriber(&broker, "t");
    let report = broker.publish("t", 1).unwrap();
    assert_eq!((report.delivered, report.dropped), (0, 1));
    assert_eq!(sub.dropped(), 1);
}

#[test]
#[cfg_attr(miri, ignore)] // measures time
fn zero_timeout_never_waits_like_drop() {
    const PUBLISHES: u32 = 1_000;
    let broker = broker_with(Overflow::Timeout(Duration::ZERO));
    let sub = full_subscriber(&broker, "t");
    let publisher = broker.clone();
    let elapsed = spawn_guarded(move || {
        let start = Instant::now();
        for i in 1..=PUBLISHES {
            let report = publisher.publish("t", i).unwrap();
            assert_eq!((report.delivered, report.dropped), (0, 1));
        }
        start.elapsed()
    })
    .join();
    assert!(elapsed < SLACK, "{PUBLISHES} publishes took {elapsed:?}");
    assert_eq!(sub.dropped(), u64::from(PUBLISHES));
}

#[test]
fn one_publish_delivers_to_subscribers_with_room_and_drops_for_full_ones() {
    let broker = broker_with(Overflow::Drop);
    let full = full_subscriber(&broker, "t");
    let empty_a = broker.subscribe("t").unwrap();
    let empty_b = broker.subscribe("t").unwrap();
    let report = broker.publish("t", 1).unwrap();
    assert_eq!(
        (report.delivered, report.dropped, report.routed()),
        (2, 1, 3)
    );
    assert_eq!(
        (full.dropped(), empty_a.dropped(), empty_b.dropped()),
        (1, 0, 0)
    );
    assert_eq!(empty_a.try_recv(), Ok(1));
    assert_eq!(empty_b.try_recv(), Ok(1));
    assert_eq!(full.try_recv(), Ok(0));
    assert_eq!(full.try_recv(), Err(TryRecvError::Empty));
}

/// A message that counts how many copies of it exist, like crossbeam's `drops` test.
#[derive(Debug)]
struct Tracked {
    live: Arc<AtomicUsize>,
}

impl Tracked {
    fn new(live: &Arc<AtomicUsize>) -> Self {
        live.fetch_add(1, Ordering::SeqCst);
        Tracked { live: live.clone() }
    }
}

impl Clone for Tracked {
    fn clone(&self) -> Self {
        Tracked::new(&self.live)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

fn check_no_copy_outlives_its_queue(overflow: Overflow) {
    let live = Arc::new(AtomicUsize::new(0));
    let broker = Broker::builder().capacity(2).overflow(overflow).build();
    let drained = broker.subscribe("t").unwrap();
    let stalled = broker.subscribe("t").unwrap();
    let leaving = broker.subscribe("t").unwrap();
    let queued = |subs: &[&Subscription<Tracked>]| subs.iter().map(|s| s.len()).sum::<usize>();
    for i in 0..10 {
        broker.publish("t", Tracked::new(&live)).unwrap();
        drained.try_iter().for_each(drop);
        // Only the queued copies are alive: none is kept by the broker or lost.
        assert_eq!(
            live.load(Ordering::SeqCst),
            queued(&[&stalled, &leaving]),
            "{i}"
        );
    }
    assert_eq!(stalled.dropped(), 8);
    assert_eq!(leaving.unsubscribe().len(), 2);
    assert_eq!(live.load(Ordering::SeqCst), 2);
    broker.publish("t", Tracked::new(&live)).unwrap();
    assert_eq!(live.load(Ordering::SeqCst), 3);
    broker.close();
    drop(broker);
    assert_eq!(live.load(Ordering::SeqCst), 3);
    drop(drained);
    drop(stalled);
    assert_eq!(live.load(Ordering::SeqCst), 0);
}

#[test]
fn dropped_messages_are_freed_once_with_drop_policy() {
    check_no_copy_outlives_its_queue(Overflow::Drop);
}

#[test]
fn dropped_messages_are_freed_once_with_timeout_policy() {
    check_no_copy_outlives_its_queue(Overflow::Timeout(Duration::from_millis(1)));
}

// ---------------------------------------------------------------------------------------------
// Threaded
// ---------------------------------------------------------------------------------------------

/// Publishes to a full one-message queue under `overflow` and checks that the publish waits
/// until the subscriber receives, then delivers. Returns the broker and the subscription.
fn check_publish_waits_until_consumer_makes_room(
    overflow: Overflow,
) -> (Broker<u32>, Subscription<u32>) {
    let broker = broker_with(overflow);
    let sub = full_subscriber(&broker, "t");
    let done = publish_in_background(&broker, "t", 1);
    // The queue stays full, so the publish cannot finish, however long we look.
    assert!(done.recv_timeout(Duration::from_millis(100)).is_err());
    assert_eq!(sub.recv_timeout(GUARD), Ok(0));
    let (report, _) = done.recv_timeout(GUARD).expect("publish still blocked");
    assert_eq!((report.delivered, report.dropped), (1, 0));
    assert_eq!(sub.try_recv(), Ok(1));
    (broker, sub)
}

#[test]
fn block_waits_until_consumer_makes_room() {
    let (_broker, sub) = check_publish_waits_until_consumer_makes_room(Overflow::Block);
    assert_eq!(sub.dropped(), 0);
}

/// A publish waiting on many full queues at once, some plain and one a queue group's, while
/// they drain in any order and several at a time: each gets the message exactly once, and the
/// report and counters add up. (Phase 2 settles every queue with room per wake-up.)
#[test]
fn a_publish_waiting_on_many_full_queues_delivers_to_each_as_they_drain() {
    const FULL: usize = 200;
    let broker = broker_with(Overflow::Block);
    let subs = subscribe_many(&broker, "many.x", FULL);
    assert_eq!(broker.publish("many.x", 0).unwrap().delivered, FULL);
    let members = subscribe_group_many(&broker, "many.*", "g", 2);
    // Fill both members' queues through a topic the plain subscribers do not hear: the
    // group's message goes to one member (with room) per publish.
    broker.publish("many.y", 0).unwrap();
    broker.publish("many.y", 0).unwrap();
    assert!(members.iter().all(|m| m.len() == 1));
    let published_before = broker.stats().published;

    let done = publish_in_background(&broker, "many.x", 1);
    // Counted once it has its subscribers, before it delivers: from now on the publish waits on
    // the full queues and cannot finish until they drain.
    wait_for_published(&broker, published_before + 1);
    assert!(done.try_recv().is_err(), "finished with every queue full");
    // Drain from the back, then the group, then the front half two threads at once.
    let (front, back) = subs.split_at(FULL / 2);
    for sub in back.iter().rev() {
        assert_eq!(sub.recv_timeout(GUARD), Ok(0));
    }
    for member in &members {
        assert_eq!(member.recv_timeout(GUARD), Ok(0));
    }
    let (left, right) = front.split_at(FULL / 4);
    thread::scope(|scope| {
        for half in [left, right] {
            scope.spawn(move || {
                for sub in half {
                    assert_eq!(sub.recv_timeout(GUARD), Ok(0));
                }
            });
        }
    });
    let (report, _) = done.recv_timeout(GUARD).expect("publish still blocked");
    assert_eq!(
        (report.delivered, report.dropped, report.groups),
        (FULL + 1, 0, 1)
    );
    for sub in &subs {
        assert_eq!(sub.try_iter().collect::<Vec<_>>(), [1]);
        assert_eq!(sub.dropped(), 0);
    }
    let group_got: Vec<u32> = members.iter().flat_map(|m| m.try_iter()).collect();
    assert_eq!(group_got, [1]);
    let stats = broker.stats();
    assert_eq!(stats.published, published_before + 1);
    assert_eq!(stats.dropped, 0);
}

#[test]
fn timeout_delivers_when_room_appears_before_deadline() {
    let timeout = Duration::from_secs(30);
    let broker = broker_with(Overflow::Timeout(timeout));
    let first = broker.subscribe("t").unwrap();
    let second = broker.subscribe("t").unwrap();
    assert_eq!(broker.publish("t", 0).unwrap().delivered, 2); // both queues now full
    let done = publish_in_background(&broker, "t", 1);
    assert_eq!(first.recv_timeout(GUARD), Ok(0));
    assert_eq!(second.recv_timeout(GUARD), Ok(0));
    let (report, elapsed) = done.recv_timeout(GUARD).expect("publish still waiting");
    assert_eq!((report.delivered, report.dropped), (2, 0));
    assert!(elapsed < timeout, "waited for the deadline: {elapsed:?}");
    assert_eq!(first.try_recv(), Ok(1));
    assert_eq!(second.try_recv(), Ok(1));
}

#[test]
fn timeout_too_large_for_a_deadline_waits_like_block() {
    let (_broker, _sub) =
        check_publish_waits_until_consumer_makes_room(Overflow::Timeout(Duration::MAX));
}

/// Five stalled subscribers to "t" whose one-message queues are full, then ten fast ones with
/// room. Subscribed first: the stalled ones come before the fast ones in delivery order.
fn stalled_then_fast(broker: &Broker<u32>) -> (Vec<Subscription<u32>>, Vec<Subscription<u32>>) {
    let stalled = subscribe_many(broker, "t", 5);
    assert_eq!(broker.publish("t", 0).unwrap().delivered, 5);
    let fast = subscribe_many(broker, "t", 10);
    (stalled, fast)
}

#[test]
fn stalled_subscribers_do_not_delay_fast_ones() {
    // With `Block`, the publish cannot end while the stalled queues are full, so the fast
    // subscribers must have the message while it still waits.
    let broker = broker_with(Overflow::Block);
    let (stalled, fast) = stalled_then_fast(&broker);

    let done = publish_in_background(&broker, "t", 1);
    for sub in &fast {
        assert_eq!(sub.recv_timeout(GUARD), Ok(1));
    }
    assert!(done.try_recv().is_err(), "publish ended with full queues");
    for sub in &stalled {
        assert_eq!(sub.recv_timeout(GUARD), Ok(0));
    }
    let (report, _) = done.recv_timeout(GUARD).expect("publish still blocked");
    assert_eq!((report.delivered, report.dropped), (15, 0));
    for sub in &stalled {
        assert_eq!(sub.try_recv(), Ok(1));
    }
}

#[test]
#[cfg_attr(miri, ignore)] // measures time
fn stalled_subscribers_cost_one_timeout_not_one_each() {
    // Long enough that five timeouts one after the other (5 s) are well past one timeout plus
    // the slack for a loaded machine (3 s).
    let timeout = Duration::from_secs(1);
    let broker = broker_with(Overflow::Timeout(timeout));
    let (stalled, fast) = stalled_then_fast(&broker);

    let start = Instant::now();
    let report = broker.publish("t", 1).unwrap();
    let elapsed = start.elapsed();
    assert_eq!((report.delivered, report.dropped), (10, 5));
    assert!(elapsed >= timeout, "gave up after {elapsed:?}");
    assert!(elapsed < timeout + SLACK, "took {elapsed:?}");
    for sub in &fast {
        assert_eq!(sub.try_recv(), Ok(1));
        assert_eq!(sub.dropped(), 0);
    }
    for sub in &stalled {
        assert_eq!(sub.dropped(), 1);
        assert_eq!(sub.try_iter().collect::<Vec<_>>(), [0]);
    }
}

#[test]
fn subscriber_leaving_while_publish_waits_on_it_ends_the_wait() {
    let broker = broker_with(Overflow::Block);
    let sub = full_subscriber(&broker, "t");
    let done = publish_in_background(&broker, "t", 1);
    assert!(done.recv_timeout(Duration::from_millis(100)).is_err());
    drop(sub);
    let (report, _) = done.recv_timeout(GUARD).expect("publish still blocked");
    // Routed to the subscriber (if its snapshot was taken before the drop) but not delivered.
    assert_eq!(report.delivered, 0);
    assert!(report.routed() <= 1);
    assert_eq!(broker.subscriber_count("t"), 0);
    let stats = broker.stats();
    assert_eq!(stats.dropped, report.dropped as u64);
}

/// How a subscriber in the accounting test consumes.
#[derive(Clone, Copy, Debug)]
enum Consumer {
    /// Drains on its own thread until the broker closes.
    Draining,
    /// Never reads until every publisher is done.
    Stalled,
}

/// Publishes from several threads to a mix of draining and stalled subscribers, checking
/// that `delivered + dropped == routed` for every publish and that the reports, the
/// subscribers' `dropped()` and `Broker::stats()` all agree.
fn check_accounting(broker: Broker<(usize, usize)>, consumers: &[Consumer], count: usize) {
    const PUBLISHERS: usize = 3;
    let subscribers = consumers.len();
    let start = Arc::new(Barrier::new(PUBLISHERS));
    // Each subscriber reports (received, dropped), after checking per-publisher order.
    let drain = |sub: &Subscription<(usize, usize)>, blocking: bool| {
        let mut order = OrderCheck::new(PUBLISHERS);
        if blocking {
            sub.iter().for_each(|msg| order.see(msg));
        } else {
            sub.try_iter().for_each(|msg| order.see(msg));
        }
        order.count as usize
    };
    let mut stalled = Vec::new();
    let mut draining = Vec::new();
    for &consumer in consumers {
        let sub = broker.subscribe("acct").unwrap();
        match consumer {
            Consumer::Stalled => stalled.push(sub),
            Consumer::Draining => draining.push(spawn_guarded(move || {
                let received = drain(&sub, true);
                (received, sub.dropped())
            })),
        }
    }
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|publisher| {
            let broker = broker.clone();
            let start = start.clone();
            spawn_guarded(move || {
                start.wait();
                let (mut delivered, mut dropped) = (0, 0);
                for seq in 0..count {
                    let report = broker.publish("acct", (publisher, seq)).unwrap();
                    assert_eq!(report.delivered + report.dropped, subscribers);
                    assert_eq!(report.routed(), subscribers);
                    delivered += report.delivered;
                    dropped += report.dropped;
                }
                (delivered, dropped)
            })
        })
        .collect();
    let (mut delivered, mut dropped) = (0, 0);
    for publisher in publishers {
        let (d, x) = publisher.join();
        delivered += d;
        dropped += x;
    }
    let published = PUBLISHERS * count;
    assert_eq!(delivered + dropped, published * subscribers);
    let stats = broker.stats();
    assert_eq!(stats.published, published as u64);
    assert_eq!(stats.delivered, delivered as u64);
    assert_eq!(stats.dropped, dropped as u64);

    let mut per_subscriber = Vec::new();
    for sub in &stalled {
        per_subscriber.push((drain(sub, false), sub.dropped()));
    }
    broker.close();
    for handle in draining {
        per_subscriber.push(handle.join());
    }
    let mut dropped_by_subscribers = 0;
    for (received, sub_dropped) in per_subscriber {
        // Every subscriber either got each message or counted it as dropped.
        assert_eq!(received as u64 + sub_dropped, published as u64);
        dropped_by_subscribers += sub_dropped;
    }
    assert_eq!(dropped_by_subscribers, dropped as u64);
}

#[test]
fn accounting_adds_up_with_drop_policy() {
    use Consumer::*;
    let broker = Broker::builder()
        .capacity(4)
        .overflow(Overflow::Drop)
        .workers(0)
        .build();
    check_accounting(broker, &[Draining, Stalled, Draining, Stalled], COUNT);
}

#[test]
fn accounting_adds_up_with_timeout_policy() {
    use Consumer::*;
    let broker = Broker::builder()
        .capacity(4)
        .send_timeout(Duration::from_micros(200))
        .workers(0)
        .build();
    check_accounting(broker, &[Stalled, Draining, Draining, Stalled], COUNT / 10);
}

#[test]
fn accounting_adds_up_with_block_policy_and_draining_subscribers() {
    use Consumer::*;
    let broker = Broker::builder()
        .capacity(4)
        .overflow(Overflow::Block)
        .build();
    check_accounting(broker, &[Draining, Draining, Draining], COUNT);
}

// ---------------------------------------------------------------------------------------------
// Stress
// ---------------------------------------------------------------------------------------------

#[test]
fn accounting_adds_up_through_dispatch_pool() {
    use Consumer::*;
    let broker = Broker::builder()
        .capacity(4)
        .send_timeout(Duration::from_micros(100))
        .workers(2)
        .dispatch_threshold(4)
        .build();
    let consumers: Vec<_> = (0..16)
        .map(|i| if i % 3 == 0 { Stalled } else { Draining })
        .collect();
    check_accounting(broker, &consumers, COUNT / 4);
}

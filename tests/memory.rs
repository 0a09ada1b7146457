//! Memory: the live heap stays flat across 100 000 publishes with a 3-minute send timeout to a
//! subscriber that keeps up (the shape that leaked a timer per send in the Go ancestor), and a
//! publish to a queue with room allocates nothing.
//!
//! The counting allocator is global to this test binary, so the file holds a single `#[test]`
//! that runs its checks one after the other: no other test's allocations can blur the counts.

use std::alloc::System;
use std::thread;
use std::time::Duration;

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use syncmq::{Broker, Overflow};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Publishes measured for growth of the live heap.
const PUBLISHES: usize = if cfg!(miri) { 1_000 } else { 100_000 };

/// Publishes before the first measurement, so that one-time allocations (thread-local
/// contexts, the publishing thread's route memo and its topic buffer, waker lists reaching
/// their working size) are done.
const WARM_UP: usize = PUBLISHES / 10;

/// The most the live heap may grow across [`PUBLISHES`] publishes.
const GROWTH_LIMIT: isize = 64 * 1024;

/// A leak of 16 bytes per publish must break the limit, or the test proves nothing.
const _: () = assert!(PUBLISHES as isize * 16 > 2 * GROWTH_LIMIT);

/// The message that asks the consumer to report how far it got.
const SENTINEL: u64 = u64::MAX;

/// Iterations of busy work the consumer does per message.
const CONSUMER_WORK: u32 = 500;

/// How long the test waits for the consumer before failing instead of hanging.
const GUARD: Duration = Duration::from_secs(60);

/// Bytes currently allocated through the global allocator, by every thread.
fn live_bytes() -> isize {
    let stats = GLOBAL.stats();
    stats.bytes_allocated as isize - stats.bytes_deallocated as isize
}

/// The instrument works: a leak of 16 bytes per publish would show far above the limit, and
/// freeing it brings the live heap back.
fn check_allocator_sees_a_small_leak_per_publish() {
    let before = live_bytes();
    let leak: Vec<Box<[u8; 16]>> = (0..PUBLISHES).map(|_| Box::new([0; 16])).collect();
    let grown = live_bytes() - before;
    assert!(
        grown >= PUBLISHES as isize * 16,
        "allocator saw only {grown} bytes"
    );
    assert!(grown > GROWTH_LIMIT);
    drop(leak);
    let left = live_bytes() - before;
    assert!(left < GROWTH_LIMIT, "{left} bytes still live after freeing");
}

/// Publishes `count` messages numbered from `first`, then the sentinel, and waits until the
/// consumer has received them all. Every publish must be delivered (the timeout is 3 minutes).
fn publish_and_wait_for_consumer(
    broker: &Broker<u64>,
    acks: &crossbeam_channel::Receiver<u64>,
    first: u64,
    count: usize,
) {
    let mut delivered = 0;
    for n in first..first + count as u64 {
        delivered += broker.publish("ticks", n).unwrap().delivered;
    }
    assert_eq!(delivered, count, "some publish was not delivered");
    assert_eq!(broker.publish("ticks", SENTINEL).unwrap().delivered, 1);
    let received = acks.recv_timeout(GUARD).expect("consumer did not catch up");
    assert_eq!(received, first + count as u64, "consumer missed messages");
}

/// The test: live heap flat across 100 000 publishes with a 3-minute timeout to a
/// subscriber that keeps up.
fn check_live_heap_flat_with_long_timeout() {
    let broker = Broker::builder()
        // One slot, so the publisher often finds the queue full and waits on the deadline.
        .capacity(1)
        .overflow(Overflow::Timeout(Duration::from_secs(180)))
        .build();
    let sub = broker.subscribe("ticks").unwrap();
    // The consumer acknowledges each sentinel with the number of messages received so far,
    // checking that they arrive in order.
    let (ack_tx, acks) = crossbeam_channel::bounded(1);
    let consumer = thread::spawn(move || {
        let mut received = 0;
        for msg in sub.iter() {
            if msg == SENTINEL {
                ack_tx.send(received).unwrap();
            } else {
                assert_eq!(msg, received, "out of order");
                received += 1;
                // A little work per message, so the consumer is usually a bit slower than the
                // publisher and most publishes find the queue full and wait on their deadline.
                for i in 0..CONSUMER_WORK {
                    std::hint::black_box(i);
                }
            }
        }
    });

    publish_and_wait_for_consumer(&broker, &acks, 0, WARM_UP);
    let before = live_bytes();
    publish_and_wait_for_consumer(&broker, &acks, WARM_UP as u64, PUBLISHES);
    let growth = live_bytes() - before;
    assert!(
        growth < GROWTH_LIMIT,
        "live heap grew by {growth} bytes over {PUBLISHES} publishes"
    );

    let stats = broker.stats();
    assert_eq!(stats.dropped, 0);
    assert_eq!(stats.dispatch_threads, 0);
    broker.close();
    consumer.join().unwrap();
}

/// A publish that finds room in every queue allocates nothing: no timer, no thread, no list.
fn check_publish_with_room_does_not_allocate() {
    const ROUNDS: usize = 10_000;
    let broker = Broker::builder()
        .capacity(4)
        .overflow(Overflow::Timeout(Duration::from_secs(180)))
        .build();
    let subs: Vec<_> = (0..3).map(|_| broker.subscribe("ticks").unwrap()).collect();
    let round = |n: u64| {
        assert_eq!(broker.publish("ticks", n).unwrap().delivered, 3);
        for sub in &subs {
            assert_eq!(sub.try_recv(), Ok(n));
        }
    };
    for n in 0..100 {
        round(n);
    }
    let region = Region::new(GLOBAL);
    for n in 0..ROUNDS as u64 {
        round(n);
    }
    let change = region.change();
    // Zero in practice; a handful is tolerated for lazy one-time initialisation.
    assert!(
        change.allocations + change.reallocations < 10,
        "{} allocations and {} reallocations over {ROUNDS} publishes",
        change.allocations,
        change.reallocations
    );
}

#[test]
fn live_heap_stays_flat_across_publishes() {
    check_allocator_sees_a_small_leak_per_publish();
    check_live_heap_flat_with_long_timeout();
    check_publish_with_room_does_not_allocate();
}

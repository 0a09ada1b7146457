//! Slow and dead subscribers: per-subscription options, `DropOldest`, eviction, visible lag,
//! the whole-publish budget and per-topic / per-subscription statistics.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use syncmq::{
    Broker, ConfigError, Error, Overflow, RecvError, RecvTimeoutError, SubscriptionStatus,
    TryRecvError,
};

mod common;
use common::{opts, publish_in_background, subscribe_many, wait_for_published};

/// Generous upper bound for "returns promptly" on a loaded 2-core machine.
const PROMPT: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------------------------------
// Smoke

#[test]
fn subscribe_with_defaults_behaves_like_subscribe() {
    let broker = Broker::new();
    let sub = broker.subscribe_with("a", opts()).unwrap();
    assert_eq!(sub.capacity(), Some(syncmq::DEFAULT_CAPACITY));
    broker.publish("a", 1).unwrap();
    assert_eq!(sub.try_recv(), Ok(1));
    assert_eq!(sub.status(), SubscriptionStatus::Active);
}

// ---------------------------------------------------------------------------------------------
// Single thread: per-subscription options

#[test]
fn options_override_the_broker_defaults_for_one_subscriber_only() {
    let broker = Broker::builder()
        .capacity(1)
        .overflow(Overflow::Drop)
        .build();
    let audit = broker
        .subscribe_with("orders", opts().capacity(8).overflow(Overflow::Block))
        .unwrap();
    let metrics = broker.subscribe("orders").unwrap();
    assert_eq!(audit.capacity(), Some(8));
    assert_eq!(metrics.capacity(), Some(1));

    for n in 0..5 {
        broker.publish("orders", n).unwrap();
    }
    assert_eq!(audit.try_iter().collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
    assert_eq!(audit.dropped(), 0);
    assert_eq!(metrics.try_iter().collect::<Vec<_>>(), [0]);
    assert_eq!(metrics.dropped(), 4);
}

#[test]
fn invalid_options_are_rejected_like_subscribe() {
    let broker = Broker::<u8>::new();
    assert_eq!(
        broker
            .subscribe_with("a", opts().capacity(syncmq::MAX_CAPACITY + 1))
            .err(),
        Some(Error::InvalidConfig(ConfigError::CapacityTooLarge {
            capacity: syncmq::MAX_CAPACITY + 1
        }))
    );
    assert_eq!(
        broker.subscribe_with("a", opts().evict_after(0)).err(),
        Some(Error::InvalidConfig(ConfigError::EvictAfterZero))
    );
    assert!(matches!(
        broker.subscribe_with("a..b", opts()),
        Err(Error::InvalidTopic { .. })
    ));
    broker.close();
    assert_eq!(
        broker.subscribe_with("a", opts()).err(),
        Some(Error::Closed)
    );
    assert_eq!(
        Broker::<u8>::builder().evict_after(0).try_build().err(),
        Some(Error::InvalidConfig(ConfigError::EvictAfterZero))
    );
}

#[test]
fn the_builder_checks_the_last_value_of_each_setting() {
    let builder = || Broker::<u8>::builder();
    assert!(builder().evict_after(0).evict_after(3).try_build().is_ok());
    assert!(
        builder()
            .capacity(syncmq::MAX_CAPACITY + 1)
            .capacity(8)
            .try_build()
            .is_ok()
    );
    assert_eq!(
        builder().evict_after(3).evict_after(0).try_build().err(),
        Some(Error::InvalidConfig(ConfigError::EvictAfterZero))
    );
}

// ---------------------------------------------------------------------------------------------
// DropOldest

#[test]
fn drop_oldest_keeps_the_newest_messages_and_counts_the_rest() {
    let broker = Broker::new();
    let sub = broker
        .subscribe_with("t", opts().capacity(3).overflow(Overflow::DropOldest))
        .unwrap();
    let mut displaced = 0;
    for n in 0..10 {
        let report = broker.publish("t", n).unwrap();
        assert_eq!((report.delivered, report.dropped), (1, 0));
        displaced += report.displaced;
    }
    assert_eq!(displaced, 7);
    assert_eq!(sub.try_iter().collect::<Vec<_>>(), [7, 8, 9]);
    assert_eq!(sub.dropped(), 7);
    let stats = broker.stats();
    assert_eq!(
        (stats.delivered, stats.dropped, stats.displaced),
        (10, 0, 7)
    );
}

#[test]
fn drop_oldest_on_a_rendezvous_queue_drops_like_drop() {
    let broker = Broker::new();
    let sub = broker
        .subscribe_with("t", opts().capacity(0).overflow(Overflow::DropOldest))
        .unwrap();
    let report = broker.publish("t", 1).unwrap();
    assert_eq!(
        (report.delivered, report.dropped, report.displaced),
        (0, 1, 0)
    );
    assert_eq!(sub.dropped(), 1);
}

#[test]
fn drop_oldest_never_blocks_the_publisher() {
    let broker = Broker::new();
    let _stalled = broker
        .subscribe_with("t", opts().capacity(1).overflow(Overflow::DropOldest))
        .unwrap();
    let start = Instant::now();
    for n in 0..10_000 {
        broker.publish("t", n).unwrap();
    }
    // 10 000 non-blocking publishes; a single 5 ms wait each would be 50 s.
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn drop_oldest_racing_a_consumer_loses_nothing_uncounted_and_duplicates_nothing() {
    const COUNT: u64 = 50_000;
    let broker = Broker::new();
    let sub = broker
        .subscribe_with("t", opts().capacity(4).overflow(Overflow::DropOldest))
        .unwrap();
    let start = Arc::new(Barrier::new(2));
    let consumer = {
        let start = start.clone();
        thread::spawn(move || {
            start.wait();
            let mut seen = Vec::new();
            while let Ok(n) = sub.recv() {
                seen.push(n);
            }
            (seen, sub.dropped())
        })
    };
    start.wait();
    let mut displaced = 0;
    for n in 0..COUNT {
        let report = broker.publish("t", n).unwrap();
        assert_eq!(report.delivered, 1);
        displaced += report.displaced as u64;
    }
    broker.close();
    let (seen, dropped) = consumer.join().unwrap();

    // Received in order, each at most once, and every message either received or counted.
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "out of order or duplicated"
    );
    assert_eq!(
        seen.last(),
        Some(&(COUNT - 1)),
        "the newest message survives"
    );
    assert_eq!(seen.len() as u64 + dropped, COUNT);
    assert_eq!(dropped, displaced);
    assert_eq!(broker.stats().displaced, displaced);
}

// ---------------------------------------------------------------------------------------------
// Eviction

#[test]
fn eviction_happens_after_exactly_k_consecutive_misses() {
    let broker = Broker::builder()
        .capacity(1)
        .overflow(Overflow::Drop)
        .evict_after(3)
        .build();
    let dead = broker.subscribe("t").unwrap();
    let live = broker.subscribe("t").unwrap();

    assert_eq!(broker.publish("t", 0).unwrap().delivered, 2); // fills `dead`
    live.recv().unwrap();
    for n in 1..=2 {
        let report = broker.publish("t", n).unwrap();
        assert_eq!((report.dropped, report.evicted), (1, 0), "miss {n}");
        live.recv().unwrap();
    }
    assert_eq!(dead.status(), SubscriptionStatus::Active);
    assert_eq!(broker.subscriber_count("t"), 2);

    let report = broker.publish("t", 3).unwrap(); // third miss in a row
    assert_eq!((report.dropped, report.evicted), (1, 1));
    assert_eq!(dead.status(), SubscriptionStatus::Evicted);
    assert_eq!(broker.subscriber_count("t"), 1);
    assert_eq!(broker.stats().evicted, 1);
    assert_eq!(broker.topic_stats("t").unwrap().evicted, 1);

    // Later publishes do not route to it at all.
    let report = broker.publish("t", 4).unwrap();
    assert_eq!(report.routed(), 1);
}

#[test]
fn a_delivery_resets_the_run_of_misses() {
    let broker = Broker::builder()
        .capacity(1)
        .overflow(Overflow::Drop)
        .evict_after(2)
        .build();
    let slow = broker.subscribe("t").unwrap();
    for round in 0..10 {
        broker.publish("t", round).unwrap(); // delivered
        broker.publish("t", round).unwrap(); // one miss
        assert_eq!(slow.try_recv(), Ok(round));
    }
    assert_eq!(slow.status(), SubscriptionStatus::Active);
    assert_eq!(slow.dropped(), 10);
    assert_eq!(broker.stats().evicted, 0);
}

#[test]
fn an_evicted_subscriber_drains_its_queue_then_learns_it_was_evicted() {
    let broker = Broker::builder()
        .capacity(2)
        .overflow(Overflow::Drop)
        .evict_after(1)
        .build();
    let sub = broker.subscribe("t").unwrap();
    broker.publish("t", 1).unwrap();
    broker.publish("t", 2).unwrap();
    assert_eq!(broker.publish("t", 3).unwrap().evicted, 1);

    assert_eq!(sub.recv(), Ok(1));
    assert_eq!(sub.try_recv(), Ok(2));
    assert_eq!(sub.recv(), Err(RecvError::Evicted));
    assert_eq!(sub.try_recv(), Err(TryRecvError::Evicted));
    assert_eq!(
        sub.recv_timeout(Duration::from_secs(10)),
        Err(RecvTimeoutError::Evicted)
    );
    // Distinct from a normal close, even after the broker closes too.
    broker.close();
    assert_eq!(sub.recv(), Err(RecvError::Evicted));
    assert_eq!(sub.status(), SubscriptionStatus::Evicted);
}

#[test]
fn eviction_spares_later_publishes_the_wait() {
    let timeout = Duration::from_millis(100);
    let broker = Broker::builder()
        .capacity(1)
        .send_timeout(timeout)
        .evict_after(2)
        .build();
    let _dead = broker.subscribe("t").unwrap();
    broker.publish("t", 0).unwrap(); // fills it
    for _ in 0..2 {
        let start = Instant::now();
        broker.publish("t", 1).unwrap();
        assert!(start.elapsed() >= timeout, "a full queue is waited on");
    }
    let start = Instant::now();
    for _ in 0..20 {
        let report = broker.publish("t", 2).unwrap();
        assert_eq!(report.routed(), 0);
    }
    // 20 more waits would take at least 2 s: anything below that tells, and the bound leaves
    // a loaded machine 1.5 s for 20 publishes that wait for nothing.
    assert!(start.elapsed() < timeout * 15);
}

#[test]
fn never_evict_overrides_the_broker_default() {
    let broker = Broker::builder()
        .capacity(0)
        .overflow(Overflow::Drop)
        .evict_after(1)
        .build();
    let keeper = broker.subscribe_with("t", opts().never_evict()).unwrap();
    let evictable = broker.subscribe("t").unwrap();
    for n in 0..5 {
        broker.publish("t", n).unwrap();
    }
    assert_eq!(keeper.status(), SubscriptionStatus::Active);
    assert_eq!(keeper.dropped(), 5);
    assert_eq!(evictable.status(), SubscriptionStatus::Evicted);
    assert_eq!(evictable.dropped(), 1);
}

#[test]
fn drop_oldest_discards_count_as_misses_for_eviction() {
    let broker = Broker::new();
    let sub = broker
        .subscribe_with(
            "t",
            opts()
                .capacity(1)
                .overflow(Overflow::DropOldest)
                .evict_after(3),
        )
        .unwrap();
    broker.publish("t", 0).unwrap();
    for n in 1..=2 {
        assert_eq!(broker.publish("t", n).unwrap().evicted, 0);
    }
    assert_eq!(broker.publish("t", 3).unwrap().evicted, 1);
    assert_eq!(sub.recv(), Ok(3));
    assert_eq!(sub.recv(), Err(RecvError::Evicted));
}

// ---------------------------------------------------------------------------------------------
// Lag the consumer can see

#[test]
fn take_missed_reports_each_gap_once() {
    let broker = Broker::builder()
        .capacity(1)
        .overflow(Overflow::Drop)
        .build();
    let sub = broker.subscribe("t").unwrap();
    assert_eq!(sub.take_missed(), 0);
    broker.publish("t", 0).unwrap();
    broker.publish("t", 1).unwrap();
    broker.publish("t", 2).unwrap();
    assert_eq!(sub.take_missed(), 2);
    assert_eq!(sub.take_missed(), 0);
    assert_eq!(sub.recv(), Ok(0));
    broker.publish("t", 3).unwrap();
    broker.publish("t", 4).unwrap();
    assert_eq!(sub.take_missed(), 1);
    assert_eq!(sub.dropped(), 3);
}

// ---------------------------------------------------------------------------------------------
// Statistics

#[test]
fn topic_and_subscription_stats_count_what_happened() {
    let broker = Broker::new();
    let fast = broker.subscribe("t").unwrap();
    let tiny = broker
        .subscribe_with("t", opts().capacity(1).overflow(Overflow::Drop))
        .unwrap();
    let _other = broker.subscribe("u").unwrap();
    for n in 0..4 {
        broker.publish("t", n).unwrap();
    }
    broker.publish("u", 9).unwrap();
    assert_eq!(fast.recv(), Ok(0));
    assert_eq!(fast.try_recv(), Ok(1));

    let t = broker.topic_stats("t").unwrap();
    assert_eq!(
        (
            t.subscribers,
            t.published,
            t.delivered,
            t.dropped,
            t.evicted
        ),
        (2, 4, 5, 3, 0)
    );
    let u = broker.topic_stats("u").unwrap();
    assert_eq!((u.subscribers, u.published, u.delivered), (1, 1, 1));
    assert_eq!(broker.topic_stats("nobody"), None);

    let f = fast.stats();
    assert_eq!((f.received, f.dropped, f.queued), (2, 0, 2));
    let s = tiny.stats();
    assert_eq!((s.received, s.dropped, s.queued), (0, 3, 1));

    drop((fast, tiny));
    assert_eq!(
        broker.topic_stats("t"),
        None,
        "forgotten with its last subscriber"
    );
}

/// The receive count is exact whichever threads receive, and however many at once: the first
/// receiving thread counts without read-modify-writes, the others with them.
#[test]
fn received_counts_every_receive_on_every_thread() {
    const RECEIVERS: usize = 3;
    const PER_THREAD: usize = 2_000;
    let broker = Broker::builder()
        .capacity(RECEIVERS * PER_THREAD + 1)
        .overflow(Overflow::Block)
        .build();
    let sub = broker.subscribe("t").unwrap();
    for n in 0..RECEIVERS * PER_THREAD + 1 {
        broker.publish("t", n).unwrap();
    }
    // This thread receives first, so it owns the count; the others share theirs.
    assert_eq!(sub.recv(), Ok(0));
    let start = Barrier::new(RECEIVERS);
    thread::scope(|scope| {
        for _ in 0..RECEIVERS - 1 {
            scope.spawn(|| {
                start.wait();
                for _ in 0..PER_THREAD {
                    sub.recv().unwrap();
                }
            });
        }
        start.wait();
        for _ in 0..PER_THREAD {
            sub.try_recv().unwrap();
        }
    });
    let stats = sub.stats();
    assert_eq!(
        (stats.received, stats.queued),
        ((RECEIVERS * PER_THREAD + 1) as u64, 0)
    );
    // A subscription moved to another thread after its first receive still counts there.
    broker.publish("t", 0).unwrap();
    let moved = thread::spawn(move || {
        sub.recv().unwrap();
        sub.stats().received
    });
    assert_eq!(moved.join().unwrap(), (RECEIVERS * PER_THREAD + 2) as u64);
}

// ---------------------------------------------------------------------------------------------
// Whole-publish budget

#[test]
fn publish_timeout_bounds_a_publish_to_twenty_stalled_subscribers() {
    let budget = Duration::from_millis(200);
    let broker = Broker::builder()
        .capacity(1)
        .overflow(Overflow::Block)
        .publish_timeout(budget)
        // Several stripes on the pool: the budget holds across them.
        .dispatch_threshold(4)
        .workers(2)
        .build();
    let stalled = subscribe_many(&broker, "t", 20);
    broker.publish("t", 0).unwrap(); // fills every queue

    let start = Instant::now();
    let report = broker.publish("t", 1).unwrap();
    let elapsed = start.elapsed();
    assert_eq!((report.delivered, report.dropped), (0, 20));
    assert!(elapsed >= budget, "waited {elapsed:?}");
    assert!(elapsed < budget + PROMPT, "waited {elapsed:?}");
    assert!(stalled.iter().all(|s| s.dropped() == 1));
}

#[test]
fn publish_timeout_caps_each_send_timeout() {
    let broker = Broker::builder()
        .capacity(1)
        .send_timeout(Duration::from_secs(60))
        .publish_timeout(Duration::from_millis(100))
        .build();
    let _stalled = broker.subscribe("t").unwrap();
    broker.publish("t", 0).unwrap();
    let start = Instant::now();
    assert_eq!(broker.publish("t", 1).unwrap().dropped, 1);
    assert!(start.elapsed() < PROMPT);
}

// ---------------------------------------------------------------------------------------------
// Threaded

#[test]
fn eviction_under_concurrent_publishers_is_counted_once() {
    let broker = Broker::builder()
        .capacity(0)
        .overflow(Overflow::Drop)
        .evict_after(5)
        .build();
    let dead = subscribe_many(&broker, "t", 8);
    let barrier = Arc::new(Barrier::new(4));
    let publishers: Vec<_> = (0..4)
        .map(|_| {
            let broker = broker.clone();
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                (0..100)
                    .map(|n| broker.publish("t", n).unwrap().evicted)
                    .sum::<usize>()
            })
        })
        .collect();
    let evicted: usize = publishers.into_iter().map(|p| p.join().unwrap()).sum();
    assert_eq!(evicted, 8);
    assert_eq!(broker.stats().evicted, 8);
    assert_eq!(broker.subscriber_count("t"), 0);
    for sub in &dead {
        assert_eq!(sub.status(), SubscriptionStatus::Evicted);
        assert_eq!(sub.recv(), Err(RecvError::Evicted));
    }
}

#[test]
fn a_wait_cut_short_by_close_does_not_evict() {
    // Giving up on a full queue because the broker closes is not the subscriber missing a
    // message by being slow: it ends `Closed`, as `close` promises, and no count says
    // otherwise.
    let broker = Broker::builder()
        .capacity(1)
        .overflow(Overflow::Block)
        .evict_after(1)
        .build();
    let sub = broker.subscribe("t").unwrap();
    broker.publish("t", 0).unwrap(); // fills it
    let waiting = publish_in_background(&broker, "t", 1);
    // Whether the close lands before or during its wait, the publish gives the send up.
    wait_for_published(&broker, 2);
    broker.close();
    let (report, _) = waiting
        .recv_timeout(PROMPT)
        .expect("the publish still waits after close");
    assert_eq!((report.delivered, report.dropped), (0, 1));
    assert_eq!(report.evicted as u64, broker.stats().evicted);
    assert_eq!(sub.recv(), Ok(0));
    assert_eq!(sub.recv(), Err(RecvError::Closed));
    assert_eq!(sub.status(), SubscriptionStatus::Closed);
    assert_eq!(broker.stats().evicted, 0);
}

#[test]
fn an_eviction_racing_close_is_counted_whenever_it_happens() {
    // A publish that took its route before `close` may miss after it. The subscription then
    // ends `Closed`, or `Evicted` with the eviction counted: never evicted but uncounted.
    for _ in 0..500 {
        let broker = Broker::builder()
            .capacity(0)
            .overflow(Overflow::Drop)
            .evict_after(1)
            .build();
        let sub = broker.subscribe("t").unwrap();
        let start = Arc::new(Barrier::new(2));
        let publisher = thread::spawn({
            let broker = broker.clone();
            let start = start.clone();
            move || {
                start.wait();
                broker.publish("t", 1).map_or(0, |report| report.evicted)
            }
        });
        start.wait();
        broker.close();
        let evicted = publisher.join().unwrap();
        let stats = broker.stats();
        assert_eq!(stats.evicted, evicted as u64);
        match sub.recv() {
            Err(RecvError::Evicted) => assert_eq!(stats.evicted, 1),
            Err(RecvError::Closed) => assert_eq!(stats.evicted, 0),
            other => panic!("unexpected {other:?}"),
        }
    }
}

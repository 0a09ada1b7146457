//! Queue groups: one member of each group per message, counting, preferring members with room,
//! members leaving, exactly-once delivery under concurrency, and fair spreading.

use std::collections::HashSet;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{RecvTimeoutError, select};
use syncmq::{
    Broker, Error, MAX_TOPIC_LEN, Overflow, RecvError, Subscription, SubscriptionStatus, TopicError,
};

mod common;
use common::{
    PublishDone, assert_per_publisher_order, drain, opts, publish_in_background,
    subscribe_group_many, subscribe_many, wait_for_published, wait_until,
};

/// Generous bound for "returns promptly" on a loaded 2-core machine.
const PROMPT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Smoke

#[test]
fn each_message_goes_to_one_member_and_to_every_plain_subscriber() {
    let broker = Broker::new();
    let worker_a = broker.subscribe_group("jobs.>", "workers").unwrap();
    let worker_b = broker.subscribe_group("jobs.>", "workers").unwrap();
    let auditor = broker.subscribe("jobs.>").unwrap();
    for job in 0..4 {
        let report = broker.publish("jobs.resize", job).unwrap();
        assert_eq!((report.delivered, report.dropped, report.groups), (2, 0, 1));
    }
    let mut worked = drain(&worker_a);
    worked.extend(drain(&worker_b));
    worked.sort_unstable();
    assert_eq!(worked, [0, 1, 2, 3]);
    assert_eq!(drain(&auditor), [0, 1, 2, 3]);
    assert_eq!(worker_a.group(), Some("workers"));
    assert_eq!(auditor.group(), None);
}

// ---------------------------------------------------------------------------------------------
// Single thread: routing and counting

#[test]
fn a_group_delivery_counts_as_one_delivery() {
    let broker = Broker::new();
    let members = subscribe_group_many(&broker, "t", "g", 3);
    let plain = subscribe_many(&broker, "t", 2);
    for n in 0..6 {
        let report = broker.publish("t", n).unwrap();
        assert_eq!(
            (report.delivered, report.dropped, report.groups),
            (3, 0, 1),
            "2 plain subscribers + 1 group"
        );
        assert_eq!(report.routed(), 3);
    }
    assert_eq!(members.iter().map(|m| m.len()).sum::<usize>(), 6);
    assert!(plain.iter().all(|p| p.len() == 6));

    let stats = broker.stats();
    assert_eq!(
        (
            stats.published,
            stats.delivered,
            stats.dropped,
            stats.subscribers
        ),
        (6, 18, 0, 5)
    );
    let t = broker.topic_stats("t").unwrap();
    assert_eq!((t.subscribers, t.published, t.delivered), (5, 6, 18));
    assert_eq!(broker.subscriber_count("t"), 5);
}

#[test]
fn members_with_room_share_the_messages_round_robin() {
    let broker = Broker::new();
    let members = subscribe_group_many(&broker, "t", "g", 3);
    for n in 0..9 {
        broker.publish("t", n).unwrap();
    }
    let shares: Vec<Vec<i32>> = members.iter().map(drain).collect();
    assert!(shares.iter().all(|s| s.len() == 3), "{shares:?}");
    let mut all: Vec<i32> = shares.concat();
    all.sort_unstable();
    assert_eq!(all, (0..9).collect::<Vec<_>>());
    // Each member sees its share in publish order.
    assert!(shares.iter().all(|s| s.windows(2).all(|w| w[0] < w[1])));
}

#[test]
fn two_groups_on_the_same_pattern_each_get_one_copy() {
    let broker = Broker::new();
    let billing = subscribe_group_many(&broker, "orders.*", "billing", 2);
    let shipping = subscribe_group_many(&broker, "orders.*", "shipping", 3);
    for n in 0..12 {
        let report = broker.publish("orders.new", n).unwrap();
        assert_eq!((report.delivered, report.dropped, report.groups), (2, 0, 2));
    }
    let collect = |members: &[Subscription<i32>]| {
        let mut all: Vec<i32> = members.iter().flat_map(drain).collect();
        all.sort_unstable();
        all
    };
    assert_eq!(collect(&billing), (0..12).collect::<Vec<_>>());
    assert_eq!(collect(&shipping), (0..12).collect::<Vec<_>>());
}

#[test]
fn groups_are_per_pattern() {
    let broker = Broker::new();
    let deep = broker.subscribe_group("jobs.>", "workers").unwrap();
    let shallow = broker.subscribe_group("jobs.*", "workers").unwrap();
    let exact = broker.subscribe_group("jobs.x", "workers").unwrap();

    let report = broker.publish("jobs.x", 0).unwrap();
    assert_eq!((report.delivered, report.groups), (3, 3));
    let report = broker.publish("jobs.y", 1).unwrap();
    assert_eq!((report.delivered, report.groups), (2, 2));
    let report = broker.publish("jobs.x.y", 2).unwrap();
    assert_eq!((report.delivered, report.groups), (1, 1));

    assert_eq!(drain(&deep), [0, 1, 2]);
    assert_eq!(drain(&shallow), [0, 1]);
    assert_eq!(drain(&exact), [0]);
    assert_eq!(broker.subscriber_count("jobs.>"), 1);
    assert_eq!(broker.subscriber_count("jobs.*"), 1);
}

#[test]
fn a_member_with_room_is_preferred_over_a_full_one() {
    let broker = Broker::builder().overflow(Overflow::Drop).build();
    let tiny = broker
        .subscribe_group_with("t", "g", opts().capacity(1))
        .unwrap();
    let roomy: Vec<_> = (0..2)
        .map(|_| {
            broker
                .subscribe_group_with("t", "g", opts().capacity(16))
                .unwrap()
        })
        .collect();
    for n in 0..30 {
        let report = broker.publish("t", n).unwrap();
        assert_eq!(
            (report.delivered, report.dropped, report.groups),
            (1, 0, 1),
            "message {n}"
        );
    }
    assert_eq!(tiny.len(), 1);
    assert_eq!(roomy.iter().map(|m| m.len()).sum::<usize>(), 29);
    assert_eq!(
        tiny.dropped() + roomy.iter().map(|m| m.dropped()).sum::<u64>(),
        0
    );
    assert_eq!(broker.stats().dropped, 0);
}

#[test]
fn when_every_member_is_full_one_drop_is_counted_per_message() {
    let broker = Broker::builder()
        .capacity(1)
        .overflow(Overflow::Drop)
        .build();
    let members = subscribe_group_many(&broker, "t", "g", 3);
    let plain = broker.subscribe_with("t", opts().capacity(100)).unwrap();
    for n in 0..3 {
        let report = broker.publish("t", n).unwrap();
        assert_eq!((report.delivered, report.dropped, report.groups), (2, 0, 1));
    }
    for n in 3..8 {
        let report = broker.publish("t", n).unwrap();
        assert_eq!(
            (report.delivered, report.dropped, report.groups),
            (1, 1, 0),
            "the plain subscriber gets it, the group drops it once"
        );
    }
    assert_eq!(members.iter().map(|m| m.dropped()).sum::<u64>(), 5);
    assert_eq!(members.iter().map(|m| m.len()).sum::<usize>(), 3);
    assert_eq!(plain.len(), 8);
    let stats = broker.stats();
    assert_eq!((stats.delivered, stats.dropped), (8 + 3, 5));
    assert_eq!(broker.topic_stats("t").unwrap().dropped, 5);
}

#[test]
fn a_member_that_unsubscribes_gets_its_queue_back_and_the_group_goes_on() {
    let broker = Broker::new();
    let a = broker.subscribe_group("t", "g").unwrap();
    let b = broker.subscribe_group("t", "g").unwrap();
    for n in 0..4 {
        broker.publish("t", n).unwrap();
    }
    let kept_by_a = a.unsubscribe();
    assert_eq!(kept_by_a.len(), 2);
    for n in 4..8 {
        let report = broker.publish("t", n).unwrap();
        assert_eq!((report.delivered, report.dropped, report.groups), (1, 0, 1));
    }
    let mut all = kept_by_a;
    all.extend(drain(&b));
    all.sort_unstable();
    assert_eq!(all, (0..8).collect::<Vec<_>>());
    assert_eq!(broker.subscriber_count("t"), 1);
}

#[test]
fn a_dropped_member_leaves_the_group_at_once() {
    let broker = Broker::builder()
        .capacity(1)
        .overflow(Overflow::Block)
        .build();
    let a = broker.subscribe_group("t", "g").unwrap();
    let b = broker.subscribe_group("t", "g").unwrap();
    broker.publish("t", 0).unwrap();
    broker.publish("t", 1).unwrap();
    assert_eq!((a.len(), b.len()), (1, 1));
    drop(a);
    assert_eq!(broker.subscriber_count("t"), 1);
    // Only `b` is left: with `Block` these would hang if the group still waited on `a`.
    for n in 2..10 {
        assert_eq!(b.recv(), Ok(n - 1));
        let report = broker.publish("t", n).unwrap();
        assert_eq!((report.delivered, report.dropped), (1, 0));
    }
    assert_eq!(drain(&b), [9]);
}

#[test]
fn an_evicted_member_keeps_its_queue_and_the_group_goes_on() {
    let broker = Broker::builder()
        .capacity(1)
        .overflow(Overflow::Drop)
        .build();
    let a = broker
        .subscribe_group_with("t", "g", opts().evict_after(1))
        .unwrap();
    let b = broker.subscribe_group("t", "g").unwrap();
    broker.publish("t", 0).unwrap(); // a
    broker.publish("t", 1).unwrap(); // b
    // Both full; it is `a`'s turn: its policy drops the message, and its first miss evicts it.
    let report = broker.publish("t", 2).unwrap();
    assert_eq!(
        (
            report.delivered,
            report.dropped,
            report.evicted,
            report.groups
        ),
        (0, 1, 1, 0)
    );
    assert_eq!(a.status(), SubscriptionStatus::Evicted);
    assert_eq!(broker.subscriber_count("t"), 1);

    let mut expected = 1; // 2 was dropped
    for n in 3..6 {
        assert_eq!(b.try_recv(), Ok(expected));
        let report = broker.publish("t", n).unwrap();
        assert_eq!((report.delivered, report.groups), (1, 1));
        expected = n;
    }
    assert_eq!(a.recv(), Ok(0), "what an evicted member had queued is kept");
    assert_eq!(a.recv(), Err(RecvError::Evicted));
    assert_eq!(b.try_recv(), Ok(5));
}

#[test]
fn the_last_member_leaving_removes_the_group() {
    let broker = Broker::new();
    let a = broker.subscribe_group("t.*", "g").unwrap();
    let b = broker.subscribe_group("t.*", "g").unwrap();
    broker.publish("t.x", 0).unwrap();
    assert_eq!(a.len() + b.len(), 1);
    drop(a);
    assert_eq!(broker.subscriber_count("t.*"), 1);
    drop(b);
    assert_eq!(broker.subscriber_count("t.*"), 0);
    let report = broker.publish("t.x", 1).unwrap();
    assert_eq!((report.delivered, report.dropped, report.groups), (0, 0, 0));
    assert_eq!(broker.topic_stats("t.*"), None);
    assert_eq!(broker.stats().topics, 0);
}

#[test]
fn groups_are_served_when_the_fanout_is_striped_over_the_pool() {
    let broker = Broker::builder().dispatch_threshold(4).workers(2).build();
    let plain = subscribe_many(&broker, "t", 10);
    let members = subscribe_group_many(&broker, "t", "g", 3);
    for n in 0..30 {
        let report = broker.publish("t", n).unwrap();
        assert_eq!(
            (report.delivered, report.dropped, report.groups),
            (11, 0, 1)
        );
    }
    assert!(plain.iter().all(|p| p.len() == 30));
    assert!(members.iter().all(|m| m.len() == 10));
}

#[test]
fn group_names_are_validated() {
    let broker = Broker::<u8>::new();
    assert_eq!(
        broker.subscribe_group("t", "").err(),
        Some(Error::InvalidTopic {
            topic: String::new(),
            reason: TopicError::Empty
        })
    );
    assert_eq!(
        broker.subscribe_group_with("t", "", opts()).err(),
        Some(Error::InvalidTopic {
            topic: String::new(),
            reason: TopicError::Empty
        })
    );
    let long = "g".repeat(MAX_TOPIC_LEN + 1);
    assert_eq!(
        broker.subscribe_group("t", &long).err(),
        Some(Error::InvalidTopic {
            topic: long.clone(),
            reason: TopicError::TooLong {
                len: MAX_TOPIC_LEN + 1
            }
        })
    );
    assert!(matches!(
        broker.subscribe_group("a..b", "g"),
        Err(Error::InvalidTopic { .. })
    ));
    assert_eq!(broker.stats().subscribers, 0);
    let ok = broker
        .subscribe_group("t", &"g".repeat(MAX_TOPIC_LEN))
        .unwrap();
    assert_eq!(ok.group().map(str::len), Some(MAX_TOPIC_LEN));
    broker.close();
    assert_eq!(broker.subscribe_group("t", "g").err(), Some(Error::Closed));
}

// ---------------------------------------------------------------------------------------------
// Threaded

/// A group "g" of two one-message members `a` and `b` on "t" with `Block`, both full (with 0
/// and 1), and a publish of 2 waiting on another thread; returns the broker, `a`, `b` and the
/// receiver of that publish's report.
fn group_of_two_full_with_a_publish_waiting() -> (
    Broker<i32>,
    Subscription<i32>,
    Subscription<i32>,
    PublishDone,
) {
    let broker = Broker::builder()
        .capacity(1)
        .overflow(Overflow::Block)
        .build();
    let a = broker.subscribe_group("t", "g").unwrap();
    let b = broker.subscribe_group("t", "g").unwrap();
    broker.publish("t", 0).unwrap(); // a
    broker.publish("t", 1).unwrap(); // b
    // Both full: the publish waits on the member whose turn it is, `a`.
    let publish_result = publish_in_background(&broker, "t", 2);
    wait_for_published(&broker, 3);
    (broker, a, b, publish_result)
}

#[test]
fn when_every_member_is_full_block_waits_until_the_group_has_room() {
    let (_broker, a, b, publish_result) = group_of_two_full_with_a_publish_waiting();
    // Make room in both members; whichever the publish waits on takes the message.
    let mut got = vec![a.recv().unwrap(), b.recv().unwrap()];
    let (report, _) = publish_result
        .recv_timeout(PROMPT)
        .expect("the publish stalled although both members made room");
    assert_eq!((report.delivered, report.dropped, report.groups), (1, 0, 1));
    got.extend(drain(&a));
    got.extend(drain(&b));
    got.sort_unstable();
    assert_eq!(got, [0, 1, 2]);
}

#[test]
fn a_member_dropped_while_a_publish_waits_on_it_does_not_stall_the_group() {
    let (broker, a, b, publish_result) = group_of_two_full_with_a_publish_waiting();
    drop(a);
    assert_eq!(b.recv(), Ok(1));
    let (report, _) = publish_result
        .recv_timeout(PROMPT)
        .expect("the publish stalled on a member that left");
    assert_eq!(report.routed(), 1);
    // Message 2 reached `b` if the publish first looked after `b` made room; whether it may
    // be lost otherwise is the subject of the next test.
    let expected: &[i32] = if report.delivered == 1 { &[2] } else { &[] };
    assert_eq!(drain(&b), expected);
    // The group goes on with `b`.
    let report = broker.publish("t", 3).unwrap();
    assert_eq!((report.delivered, report.dropped), (1, 0));
    assert_eq!(b.try_recv(), Ok(3));
}

#[test]
fn a_member_leaving_while_a_publish_waits_on_it_does_not_lose_the_message() {
    let (_broker, a, b, publish_result) = group_of_two_full_with_a_publish_waiting();
    assert_eq!(a.unsubscribe(), [0]);
    // `b` is still a member, and full: with `Block` the publish must wait for it, not give up.
    assert_eq!(
        publish_result.recv_timeout(Duration::from_millis(200)),
        Err(RecvTimeoutError::Timeout),
        "the publish gave up on the group although a member remained"
    );
    // `b` makes room: the group's message reaches its remaining member.
    assert_eq!(b.recv(), Ok(1));
    let (report, _) = publish_result.recv_timeout(PROMPT).unwrap();
    assert_eq!(
        (report.delivered, report.dropped, report.groups),
        (1, 0, 1),
        "message 2 was lost by the group"
    );
    assert_eq!(b.recv_timeout(PROMPT), Ok(2));
}

#[test]
#[cfg_attr(miri, ignore)] // time is the subject
fn a_message_passed_on_to_a_timeout_member_waits_that_members_full_timeout() {
    const TIMEOUT: Duration = Duration::from_millis(1500);
    let broker = Broker::builder()
        .capacity(1)
        .overflow(Overflow::Drop)
        .build();
    // The group's message waits on `a` (`Block`, its turn); when `a` leaves, it goes to `b`,
    // whose queue is full too: it must wait `b`'s own timeout from then.
    let a = broker
        .subscribe_group_with("t", "g", opts().overflow(Overflow::Block))
        .unwrap();
    let b = broker
        .subscribe_group_with("t", "g", opts().send_timeout(TIMEOUT))
        .unwrap();
    // A plain subscriber with a short timeout, full after the first publish: the publish
    // below takes the time for its deadline before it starts waiting.
    let other = broker
        .subscribe_with("t", opts().send_timeout(Duration::from_millis(1)))
        .unwrap();
    broker.publish("t", 0).unwrap(); // a, other
    broker.publish("t", 1).unwrap(); // b
    let started = Instant::now();
    let publish_result = publish_in_background(&broker, "t", 2);
    wait_until("the publish gave up on `other`", || other.dropped() == 2);
    // Longer than `b`'s timeout since the publish began: a deadline reckoned from then has
    // passed by the time `a` leaves.
    let since = TIMEOUT + Duration::from_millis(200);
    thread::sleep(since.saturating_sub(started.elapsed()));
    assert_eq!(a.unsubscribe(), [0]);
    assert_eq!(
        publish_result.recv_timeout(Duration::from_millis(200)),
        Err(RecvTimeoutError::Timeout),
        "the message passed on to `b` did not wait for `b`'s timeout"
    );
    assert_eq!(b.recv(), Ok(1));
    let (report, _) = publish_result.recv_timeout(PROMPT).unwrap();
    assert_eq!((report.delivered, report.dropped, report.groups), (1, 1, 1));
    assert_eq!(b.recv_timeout(PROMPT), Ok(2));
}

#[test]
fn members_consuming_at_the_same_speed_get_fair_shares() {
    const MEMBERS: usize = 4;
    const MESSAGES: usize = 20_000;
    // Room for far more than a fair share, so no member is ever passed over for being full
    // just because its thread was descheduled for a while.
    let broker = Broker::builder()
        .capacity(8_192)
        .overflow(Overflow::Block)
        .build();
    let barrier = Arc::new(Barrier::new(MEMBERS + 1));
    let consumers: Vec<_> = (0..MEMBERS)
        .map(|_| {
            let member = broker.subscribe_group("work.>", "pool").unwrap();
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                let mut count = 0usize;
                let mut last = None;
                while let Ok(n) = member.recv() {
                    assert!(last < Some(n), "out of order");
                    last = Some(n);
                    count += 1;
                }
                count
            })
        })
        .collect();
    barrier.wait();
    for n in 0..MESSAGES {
        let report = broker.publish("work.item", n).unwrap();
        assert_eq!((report.delivered, report.groups), (1, 1));
    }
    broker.close();
    let shares: Vec<usize> = consumers.into_iter().map(|c| c.join().unwrap()).collect();
    assert_eq!(shares.iter().sum::<usize>(), MESSAGES);
    let (min, max) = (*shares.iter().min().unwrap(), *shares.iter().max().unwrap());
    assert!(min > 0 && max <= 2 * min, "unfair shares: {shares:?}");
}

// ---------------------------------------------------------------------------------------------
// Stress

/// A message: (publisher, sequence number).
type Msg = (usize, usize);

#[test]
fn each_message_reaches_exactly_one_member_while_members_join_and_leave() {
    const PUBLISHERS: usize = 3;
    const PER_PUBLISHER: usize = if cfg!(miri) { 100 } else { 20_000 };
    const TOTAL: usize = PUBLISHERS * PER_PUBLISHER;
    const STEADY: usize = 2;
    const CHURNERS: usize = 2;
    // Steady members and the plain subscriber have room for everything, so with `Block` no
    // publish ever waits (a wait on a leaving member is the subject of another test).
    let roomy = opts().capacity(TOTAL);
    let broker = Broker::builder().overflow(Overflow::Block).build();
    let plain = broker.subscribe_with("jobs.>", roomy).unwrap();
    let barrier = Arc::new(Barrier::new(PUBLISHERS + STEADY + CHURNERS + 1));
    // Disconnected when every publisher has finished.
    let (publishing_done_tx, publishing_done_rx) = crossbeam_channel::bounded::<()>(0);

    let steady: Vec<_> = (0..STEADY)
        .map(|_| {
            let member = broker.subscribe_group_with("jobs.>", "g", roomy).unwrap();
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                member.iter().collect::<Vec<Msg>>()
            })
        })
        .collect();
    let churners: Vec<_> = (0..CHURNERS)
        .map(|c| {
            let broker = broker.clone();
            let barrier = barrier.clone();
            let publishing_done = publishing_done_rx.clone();
            let join = move || {
                broker
                    .subscribe_group_with("jobs.>", "g", opts().capacity(16))
                    .unwrap()
            };
            // The first member joins before publishing starts, so churned members are sure
            // to take part.
            let mut first = Some(join());
            thread::spawn(move || {
                barrier.wait();
                // Each member's messages: what it received, then what unsubscribe returned.
                let mut lives: Vec<Vec<Msg>> = Vec::new();
                for round in 0.. {
                    let member = first.take().unwrap_or_else(&join);
                    let mut got = Vec::new();
                    let mut done = false;
                    // Receive a few messages (or until publishing ends), then leave with
                    // whatever is still queued.
                    while !done && got.len() <= (round + c) % 8 {
                        select! {
                            recv(member.receiver()) -> msg => got.push(msg.unwrap()),
                            recv(publishing_done) -> _ => done = true,
                        }
                    }
                    got.extend(member.unsubscribe());
                    lives.push(got);
                    if done {
                        break;
                    }
                }
                lives
            })
        })
        .collect();
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let broker = broker.clone();
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                let mut group_deliveries = 0;
                for n in 0..PER_PUBLISHER {
                    let topic = format!("jobs.{p}.{}", n % 5);
                    let report = broker.publish(&topic, (p, n)).unwrap();
                    assert_eq!(
                        (report.delivered, report.dropped, report.groups),
                        (2, 0, 1),
                        "one group delivery and one plain delivery"
                    );
                    group_deliveries += report.groups;
                }
                group_deliveries
            })
        })
        .collect();
    barrier.wait();

    let group_deliveries: usize = publishers.into_iter().map(|p| p.join().unwrap()).sum();
    drop(publishing_done_tx);
    let churned: Vec<Vec<Msg>> = churners
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    broker.close(); // ends the steady members' `iter` once they have drained
    let steady: Vec<Vec<Msg>> = steady.into_iter().map(|s| s.join().unwrap()).collect();

    assert_eq!(group_deliveries, TOTAL);
    let stats = broker.stats();
    assert_eq!(
        (stats.published, stats.delivered, stats.dropped),
        (TOTAL as u64, 2 * TOTAL as u64, 0)
    );

    let mut received = HashSet::new();
    for (i, life) in steady.iter().chain(&churned).enumerate() {
        assert_per_publisher_order(life, &format!("member {i}"));
        for &msg in life {
            assert!(received.insert(msg), "{msg:?} received twice");
        }
    }
    assert_eq!(received.len(), TOTAL, "messages lost by the group");
    let plain: Vec<Msg> = plain.try_iter().collect();
    assert_eq!(plain.len(), TOTAL);
    assert_per_publisher_order(&plain, "plain subscriber");
    assert!(
        churned.iter().filter(|life| !life.is_empty()).count() >= CHURNERS,
        "churned members took no part"
    );
}

/// A publish waiting on many full queues, one of them a group member that then leaves: the
/// group's message goes to the member that stays, and the plain subscribers each get theirs,
/// whichever member the publish was waiting on.
#[test]
fn a_member_leaving_while_a_publish_waits_on_many_queues_passes_the_message_on() {
    const PLAIN: usize = 20;
    for leaving in 0..2 {
        let broker = Broker::builder()
            .capacity(1)
            .overflow(Overflow::Block)
            .build();
        let plain = subscribe_many(&broker, "many.x", PLAIN);
        assert_eq!(broker.publish("many.x", 0).unwrap().delivered, PLAIN);
        let mut members = subscribe_group_many(&broker, "many.*", "g", 2);
        // Fill both members through a topic the plain subscribers do not hear.
        broker.publish("many.y", 0).unwrap();
        broker.publish("many.y", 0).unwrap();
        let report = publish_in_background(&broker, "many.x", 1);
        wait_for_published(&broker, 4);
        // One member leaves, full; in one of the two rounds it is the one being waited on.
        assert_eq!(members.remove(leaving).unsubscribe(), [0]);
        let staying = &members[0];
        for sub in plain.iter().rev() {
            assert_eq!(sub.recv_timeout(PROMPT), Ok(0));
        }
        assert_eq!(staying.recv_timeout(PROMPT), Ok(0));
        let (report, _) = report.recv_timeout(PROMPT).expect("the publish stalled");
        assert_eq!(
            (report.delivered, report.dropped, report.groups),
            (PLAIN + 1, 0, 1)
        );
        assert_eq!(staying.recv_timeout(PROMPT), Ok(1));
        for sub in &plain {
            assert_eq!(sub.try_recv(), Ok(1));
        }
    }
}

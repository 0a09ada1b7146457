//! Subject wildcards through the broker: NATS matching rules, invalid patterns and topics,
//! overlapping subscriptions, route-cache invalidation and resets, evicted wildcard
//! subscribers, and a model test against the naive matcher.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use proptest::prelude::*;
use syncmq::{
    Broker, Error, Overflow, RecvError, Subscription, SubscriptionStatus, TopicError, TryRecvError,
    pattern_matches, validate_pattern,
};

mod common;
use common::{assert_all_in_publisher_order, drain, opts, proptest_config_persisting_to};

/// More distinct topics than the route cache holds (`ROUTE_CACHE_CAPACITY` is 4096 in
/// `src/registry.rs`), so publishing to all of them fills the cache several times over: each
/// time it is full, it is cleared and starts over empty (it never evicts single entries).
const DISTINCT_TOPICS: usize = 20_000;

/// NATS semantics, written out by hand: `(pattern, topic, matches)`.
const NATS_TABLE: &[(&str, &str, bool)] = &[
    ("orders.*", "orders.new", true),
    ("orders.*", "orders", false),
    ("orders.*", "orders.new.eu", false),
    ("orders.*", "ordersx.new", false),
    ("orders.>", "orders.new", true),
    ("orders.>", "orders.new.eu", true),
    ("orders.>", "orders", false),
    ("orders.>", "ordersx.new", false),
    ("*", "a", true),
    ("*", "a.b", false),
    (">", "a", true),
    (">", "a.b.c", true),
    ("*.*", "a.b", true),
    ("*.*", "a", false),
    ("*.*", "a.b.c", false),
    ("*.>", "a", false),
    ("*.>", "a.b", true),
    ("*.>", "a.b.c.d", true),
    ("*.b.*", "a.b.c", true),
    ("*.b.*", "a.x.c", false),
    ("*.b.*", "a.b", false),
    ("*.b.*", "a.b.c.d", false),
    ("a.*.>", "a.b", false),
    ("a.*.>", "a.b.c", true),
    ("a.*.>", "a.b.c.d.e", true),
    ("a.*.>", "x.b.c", false),
    ("a.*.c", "a.b.c", true),
    ("a.*.c", "a.b.d", false),
    ("a.*.c", "a.b.c.d", false),
    ("a.b", "a.b", true),
    ("a.b", "a.bc", false),
    ("a.b", "a", false),
    ("a.b", "a.b.c", false),
    ("ab.*", "a.b", false),
    ("a.*", "ab.c", false),
    ("é.*", "é.x", true),
    ("é.*", "e.x", false),
];

// ---------------------------------------------------------------------------------------------
// Smoke

#[test]
fn a_wildcard_subscription_receives_every_matching_topic() {
    let broker = Broker::new();
    let created = broker.subscribe("orders.created").unwrap();
    let all_orders = broker.subscribe("orders.>").unwrap();
    broker.publish("orders.created", 42).unwrap();
    broker.publish("orders.cancelled.eu", 7).unwrap();
    broker.publish("invoices.created", 0).unwrap();
    assert_eq!(drain(&created), [42]);
    assert_eq!(drain(&all_orders), [42, 7]);
    assert_eq!(all_orders.topic(), "orders.>");
}

// ---------------------------------------------------------------------------------------------
// Single thread: matching rules

#[test]
fn the_naive_matcher_agrees_with_the_nats_table() {
    for &(pattern, topic, expected) in NATS_TABLE {
        assert_eq!(validate_pattern(pattern), Ok(()), "{pattern}");
        assert_eq!(
            pattern_matches(pattern, topic),
            expected,
            "{pattern} ~ {topic}"
        );
    }
}

#[test]
fn each_pattern_receives_exactly_the_topics_nats_matches() {
    for &(pattern, topic, expected) in NATS_TABLE {
        // Alone (an exact pattern then takes the no-wildcard fast path), and next to an
        // unrelated wildcard subscription (every publish goes through the trie and cache).
        for with_unrelated_wildcard in [false, true] {
            let broker = Broker::new();
            let _unrelated =
                with_unrelated_wildcard.then(|| broker.subscribe("zz.zz.zz.zz.zz.>").unwrap());
            let sub = broker.subscribe(pattern).unwrap();
            // Twice: the first publish resolves the topic, the second may hit the cache.
            for n in 0..2 {
                let report = broker.publish(topic, n).unwrap();
                assert_eq!(
                    report.delivered,
                    usize::from(expected),
                    "{pattern} ~ {topic} (unrelated wildcard: {with_unrelated_wildcard}, publish {n})"
                );
                assert_eq!(report.dropped, 0);
            }
            let want: Vec<i32> = if expected { vec![0, 1] } else { vec![] };
            assert_eq!(drain(&sub), want, "{pattern} ~ {topic}");
        }
    }
}

#[test]
fn every_matching_subscription_receives_when_all_patterns_are_subscribed_together() {
    let broker = Broker::new();
    let mut patterns: Vec<&str> = NATS_TABLE.iter().map(|&(p, _, _)| p).collect();
    patterns.sort_unstable();
    patterns.dedup();
    let mut topics: Vec<&str> = NATS_TABLE.iter().map(|&(_, t, _)| t).collect();
    topics.sort_unstable();
    topics.dedup();
    let subs: Vec<_> = patterns
        .iter()
        .map(|p| (*p, broker.subscribe(p).unwrap()))
        .collect();

    for (tag, topic) in topics.iter().enumerate() {
        let expected: Vec<&str> = patterns
            .iter()
            .copied()
            .filter(|p| pattern_matches(p, topic))
            .collect();
        let report = broker.publish(topic, tag).unwrap();
        assert_eq!(report.delivered, expected.len(), "{topic}");
        let received: Vec<&str> = subs
            .iter()
            .filter(|(_, sub)| match sub.try_recv() {
                Ok(got) => {
                    assert_eq!(got, tag, "{topic}");
                    true
                }
                Err(_) => false,
            })
            .map(|(p, _)| *p)
            .collect();
        assert_eq!(received, expected, "{topic}");
    }
}

#[test]
fn publishing_to_a_topic_with_a_wildcard_is_an_invalid_topic() {
    let broker = Broker::new();
    let everything = broker.subscribe(">").unwrap();
    let cases = [
        ("orders.*", '*', 7),
        ("orders.>", '>', 7),
        ("*", '*', 0),
        (">", '>', 0),
        ("*.b", '*', 0),
        ("a.*.c", '*', 2),
        ("a*", '*', 1),
        ("é.>", '>', 3),
    ];
    for (topic, character, position) in cases {
        assert_eq!(
            broker.publish(topic, 0),
            Err(Error::InvalidTopic {
                topic: topic.into(),
                reason: TopicError::Wildcard {
                    character,
                    position
                },
            }),
            "{topic}"
        );
    }
    assert_eq!(everything.try_recv(), Err(TryRecvError::Empty));
    assert_eq!(broker.stats().published, 0);
}

#[test]
fn invalid_patterns_are_rejected_with_the_reason() {
    let broker = Broker::<u8>::new();
    let cases = [
        (
            "a*",
            TopicError::PartialWildcard {
                character: '*',
                position: 1,
            },
        ),
        (
            "*a",
            TopicError::PartialWildcard {
                character: '*',
                position: 0,
            },
        ),
        (
            "a.**",
            TopicError::PartialWildcard {
                character: '*',
                position: 2,
            },
        ),
        (
            "a.b>",
            TopicError::PartialWildcard {
                character: '>',
                position: 3,
            },
        ),
        (
            "a.>>",
            TopicError::PartialWildcard {
                character: '>',
                position: 2,
            },
        ),
        ("a.>.b", TopicError::WildcardNotLast { position: 2 }),
        // Positions are byte offsets: `é` is two bytes.
        ("é.>.b", TopicError::WildcardNotLast { position: 3 }),
        (">.a", TopicError::WildcardNotLast { position: 0 }),
        ("a.>.*", TopicError::WildcardNotLast { position: 2 }),
        ("a..*", TopicError::EmptyToken { position: 2 }),
        ("a.*.", TopicError::EmptyToken { position: 4 }),
        (".>", TopicError::EmptyToken { position: 0 }),
        ("", TopicError::Empty),
        (
            "a. *",
            TopicError::InvalidCharacter {
                character: ' ',
                position: 2,
            },
        ),
    ];
    for (pattern, reason) in cases {
        let expected = Some(Error::InvalidTopic {
            topic: pattern.into(),
            reason,
        });
        assert_eq!(validate_pattern(pattern), Err(reason), "{pattern:?}");
        assert_eq!(broker.subscribe(pattern).err(), expected, "{pattern:?}");
        assert_eq!(
            broker.subscribe_with(pattern, opts()).err(),
            expected,
            "{pattern:?}"
        );
        assert_eq!(
            broker.subscribe_group(pattern, "g").err(),
            expected,
            "{pattern:?}"
        );
    }
    let stats = broker.stats();
    assert_eq!((stats.topics, stats.subscribers), (0, 0));
}

#[test]
fn overlapping_subscriptions_each_get_their_own_copy() {
    let broker = Broker::new();
    let deep = broker.subscribe("a.>").unwrap();
    let shallow = broker.subscribe("a.*").unwrap();
    let shallow_again = broker.subscribe("a.*").unwrap();

    let report = broker.publish("a.b", 1).unwrap();
    assert_eq!((report.delivered, report.dropped), (3, 0));
    let report = broker.publish("a.b.c", 2).unwrap();
    assert_eq!((report.delivered, report.dropped), (1, 0));

    assert_eq!(drain(&deep), [1, 2]);
    assert_eq!(drain(&shallow), [1]);
    assert_eq!(drain(&shallow_again), [1]);
    assert_eq!(broker.subscriber_count("a.*"), 2);
    assert_eq!(broker.subscriber_count("a.>"), 1);
    assert_eq!(
        broker.subscriber_count("a.b"),
        0,
        "patterns are counted under their own key only"
    );
}

#[test]
fn exact_and_wildcard_subscriptions_on_one_topic_all_receive() {
    let broker = Broker::new();
    let subs: Vec<_> = ["orders.new", "orders.*", "orders.>", "*.new", "*.*", ">"]
        .into_iter()
        .map(|p| broker.subscribe(p).unwrap())
        .collect();
    let other = broker.subscribe("orders.old").unwrap();
    for n in 0..3 {
        let report = broker.publish("orders.new", n).unwrap();
        assert_eq!((report.delivered, report.dropped), (subs.len(), 0));
    }
    for sub in &subs {
        assert_eq!(drain(sub), [0, 1, 2], "{}", sub.topic());
    }
    assert_eq!(drain(&other), Vec::<i32>::new());
}

// ---------------------------------------------------------------------------------------------
// Single thread: the route cache follows every change at once

#[test]
fn unsubscribing_a_pattern_stops_delivery_at_once() {
    let broker = Broker::new();
    let deep = broker.subscribe("a.>").unwrap();
    let shallow = broker.subscribe("a.*").unwrap();
    // Publish twice so that "a.b" is resolved and cached.
    for n in 0..2 {
        assert_eq!(broker.publish("a.b", n).unwrap().delivered, 2);
    }

    assert_eq!(shallow.unsubscribe(), [0, 1]);
    let report = broker.publish("a.b", 2).unwrap();
    assert_eq!(
        report.routed(),
        1,
        "the unsubscribed pattern is still routed to"
    );
    assert_eq!(drain(&deep), [0, 1, 2]);

    drop(deep);
    let report = broker.publish("a.b", 3).unwrap();
    assert_eq!(report.routed(), 0, "the dropped pattern is still routed to");
    assert_eq!(broker.stats().topics, 0);
}

#[test]
fn subscribing_a_pattern_reaches_a_topic_resolved_before() {
    let broker = Broker::new();
    let _unrelated = broker.subscribe("q.>").unwrap();
    // "x.y" is resolved (to nobody) with wildcards present, so it is cached.
    for n in 0..2 {
        assert_eq!(broker.publish("x.y", n).unwrap().routed(), 0);
    }
    let star = broker.subscribe("x.*").unwrap();
    assert_eq!(broker.publish("x.y", 2).unwrap().delivered, 1);
    let exact = broker.subscribe("x.y").unwrap();
    assert_eq!(broker.publish("x.y", 3).unwrap().delivered, 2);
    assert_eq!(drain(&star), [2, 3]);
    assert_eq!(drain(&exact), [3]);

    // Leaving and joining again, with the topic re-cached in between.
    drop(star);
    assert_eq!(broker.publish("x.y", 4).unwrap().delivered, 1);
    let star = broker.subscribe("x.*").unwrap();
    assert_eq!(broker.publish("x.y", 5).unwrap().delivered, 2);
    assert_eq!(drain(&star), [5]);
    assert_eq!(drain(&exact), [4, 5]);
}

#[test]
fn routing_stays_correct_across_more_topics_than_the_cache_holds() {
    let broker = Broker::builder().capacity(4).build();
    let all = broker.subscribe("t.>").unwrap();
    let xs = broker.subscribe("t.*.x").unwrap();
    let pairs = broker.subscribe("*.*").unwrap();
    let exact = broker.subscribe("t.9.x").unwrap();
    let subs = [&all, &xs, &pairs, &exact];

    let topic = |i: usize| match i % 3 {
        0 => format!("t.{i}.x"),
        1 => format!("t.{i}.y"),
        _ => format!("u.{i}"),
    };
    let check = |i: usize, tag: usize, subs: &[&Subscription<usize>]| {
        let topic = topic(i);
        let expected: Vec<&str> = subs
            .iter()
            .map(|s| s.topic())
            .filter(|p| pattern_matches(p, &topic))
            .collect();
        let report = broker.publish(&topic, tag).unwrap();
        assert_eq!(report.delivered, expected.len(), "{topic}");
        let received: Vec<&str> = subs
            .iter()
            .filter(|s| match s.try_recv() {
                Ok(got) => {
                    assert_eq!(got, tag, "{topic}");
                    true
                }
                Err(_) => false,
            })
            .map(|s| s.topic())
            .collect();
        assert_eq!(received, expected, "{topic}");
    };

    // The first pass fills the cache to its bound again and again, and each time it starts
    // over empty; the second pass revisits every topic after the cache has dropped it in one
    // of those resets, so each is routed afresh.
    for pass in 0..2 {
        for i in 0..DISTINCT_TOPICS {
            check(i, pass * DISTINCT_TOPICS + i, &subs);
        }
    }
    // A change after the cache has been full empties it; routing follows.
    drop(xs);
    let subs = [&all, &pairs, &exact];
    for i in (0..DISTINCT_TOPICS).step_by(3) {
        check(i, i, &subs);
    }
    let exact_stats = broker.topic_stats("t.9.x").unwrap();
    assert_eq!((exact_stats.published, exact_stats.delivered), (3, 3));
    assert_eq!(broker.stats().dropped, 0);
}

#[test]
fn per_publisher_order_holds_for_a_wildcard_subscriber_across_topics() {
    let broker = Broker::builder().capacity(1000).build();
    let sub = broker.subscribe("o.>").unwrap();
    let exact = broker.subscribe("o.3").unwrap();
    for n in 0..1000 {
        broker.publish(&format!("o.{}", n % 7), n).unwrap();
    }
    assert_eq!(drain(&sub), (0..1000).collect::<Vec<_>>());
    assert_eq!(
        drain(&exact),
        (0..1000).filter(|n| n % 7 == 3).collect::<Vec<_>>()
    );
}

#[test]
fn an_evicted_wildcard_subscriber_is_no_longer_routed_to() {
    let broker = Broker::builder()
        .capacity(1)
        .overflow(Overflow::Drop)
        .build();
    let dead = broker.subscribe_with("a.*", opts().evict_after(2)).unwrap();
    let live = broker.subscribe("a.>").unwrap();

    assert_eq!(broker.publish("a.b", 0).unwrap().delivered, 2); // fills `dead`; caches "a.b"
    assert_eq!(live.try_recv(), Ok(0));
    let report = broker.publish("a.b", 1).unwrap();
    assert_eq!(
        (report.delivered, report.dropped, report.evicted),
        (1, 1, 0)
    );
    assert_eq!(live.try_recv(), Ok(1));
    let report = broker.publish("a.b", 2).unwrap();
    assert_eq!(
        (report.delivered, report.dropped, report.evicted),
        (1, 1, 1)
    );
    assert_eq!(live.try_recv(), Ok(2));

    assert_eq!(dead.status(), SubscriptionStatus::Evicted);
    assert_eq!(broker.subscriber_count("a.*"), 0);
    assert_eq!(broker.topic_stats("a.*"), None);
    // Later publishes, to the cached topic and to a new one, do not reach it at all.
    for (n, topic) in [(3, "a.b"), (4, "a.c"), (5, "a.b")] {
        let report = broker.publish(topic, n).unwrap();
        assert_eq!((report.delivered, report.dropped), (1, 0), "{topic}");
        assert_eq!(live.try_recv(), Ok(n));
    }
    assert_eq!(dead.dropped(), 2);
    assert_eq!(dead.recv(), Ok(0));
    assert_eq!(dead.recv(), Err(RecvError::Evicted));
}

#[test]
fn topic_stats_of_a_pattern_count_what_it_was_sent() {
    let broker = Broker::new();
    let roomy = broker.subscribe("orders.>").unwrap();
    let tiny = broker
        .subscribe_with("orders.>", opts().capacity(1).overflow(Overflow::Drop))
        .unwrap();
    let _exact = broker.subscribe("orders.new").unwrap();

    broker.publish("orders.new", 0).unwrap();
    broker.publish("orders.x.y", 1).unwrap();
    broker.publish("orders", 2).unwrap(); // matches neither key
    broker.publish("invoices.new", 3).unwrap(); // matches neither key

    let pattern = broker.topic_stats("orders.>").unwrap();
    assert_eq!(
        (
            pattern.subscribers,
            pattern.published,
            pattern.delivered,
            pattern.dropped
        ),
        (2, 2, 3, 1)
    );
    let exact = broker.topic_stats("orders.new").unwrap();
    assert_eq!(
        (
            exact.subscribers,
            exact.published,
            exact.delivered,
            exact.dropped
        ),
        (1, 1, 1, 0)
    );
    assert_eq!(broker.topic_stats("orders.x.y"), None, "not a key");
    assert_eq!(broker.topic_stats("orders.*"), None, "not a key");

    let stats = broker.stats();
    assert_eq!(
        (
            stats.published,
            stats.delivered,
            stats.dropped,
            stats.topics,
            stats.subscribers
        ),
        (4, 4, 1, 2, 3)
    );
    assert_eq!(roomy.len(), 2);
    assert_eq!(tiny.dropped(), 1);
}

// ---------------------------------------------------------------------------------------------
// Single thread: model test of the trie plus the route cache against the naive matcher

#[derive(Debug, Clone)]
enum Op {
    Subscribe(String),
    Unsubscribe(prop::sample::Index),
    Publish(String),
}

fn topic_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec!["a", "b", "c"]), 1..=4)
        .prop_map(|tokens| tokens.join("."))
}

fn pattern_strategy() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop::sample::select(vec!["a", "b", "c", "*", "*"]), 1..=4),
        prop::bool::weighted(0.3),
    )
        .prop_map(|(mut tokens, rest)| {
            if rest {
                *tokens.last_mut().unwrap() = ">";
            }
            tokens.join(".")
        })
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => pattern_strategy().prop_map(Op::Subscribe),
        1 => any::<prop::sample::Index>().prop_map(Op::Unsubscribe),
        4 => topic_strategy().prop_map(Op::Publish),
    ]
}

/// Where the proptests of this file keep the failures they found.
fn proptest_config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..proptest_config_persisting_to("proptest-regressions/wildcards.txt")
    }
}

proptest! {
    #![proptest_config(proptest_config())]

    #[test]
    fn trie_and_cache_agree_with_naive_matcher(
        ops in prop::collection::vec(op_strategy(), 1..80),
    ) {
        let broker = Broker::builder().capacity(4).overflow(Overflow::Drop).build();
        let mut live: Vec<(String, Subscription<usize>)> = Vec::new();
        for (tag, op) in ops.into_iter().enumerate() {
            match op {
                Op::Subscribe(pattern) => {
                    let sub = broker.subscribe(&pattern).unwrap();
                    live.push((pattern, sub));
                }
                Op::Unsubscribe(index) => {
                    if !live.is_empty() {
                        let (_, sub) = live.remove(index.index(live.len()));
                        // Every publish was drained, so nothing is left queued.
                        prop_assert!(sub.unsubscribe().is_empty());
                    }
                }
                Op::Publish(topic) => {
                    let expected: Vec<usize> = live
                        .iter()
                        .enumerate()
                        .filter(|(_, (p, _))| pattern_matches(p, &topic))
                        .map(|(i, _)| i)
                        .collect();
                    let report = broker.publish(&topic, tag).unwrap();
                    prop_assert_eq!(report.delivered, expected.len(), "{}", topic);
                    prop_assert_eq!(report.dropped, 0);
                    let mut received = Vec::new();
                    for (i, (pattern, sub)) in live.iter().enumerate() {
                        match sub.try_recv() {
                            Ok(got) => {
                                prop_assert_eq!(got, tag, "{} ~ {}", pattern, topic);
                                received.push(i);
                            }
                            Err(err) => prop_assert_eq!(err, TryRecvError::Empty),
                        }
                        prop_assert_eq!(sub.try_recv(), Err(TryRecvError::Empty));
                    }
                    prop_assert_eq!(received, expected, "publish to {}", topic);
                }
            }
        }
        prop_assert_eq!(broker.stats().subscribers, live.len());
    }
}

// ---------------------------------------------------------------------------------------------
// Threaded

#[test]
fn per_publisher_order_holds_for_wildcard_subscribers_with_concurrent_publishers() {
    const PUBLISHERS: usize = 4;
    const PER_PUBLISHER: u64 = 2_000;
    let broker = Broker::builder().overflow(Overflow::Block).build();
    let deep = broker.subscribe("o.>").unwrap();
    let two_levels = broker.subscribe("o.*.*").unwrap();
    let barrier = Arc::new(Barrier::new(PUBLISHERS + 2));

    let consumers: Vec<_> = [deep, two_levels]
        .into_iter()
        .map(|sub| {
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                sub.iter().collect::<Vec<(usize, u64)>>()
            })
        })
        .collect();
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let broker = broker.clone();
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                for n in 0..PER_PUBLISHER {
                    let topic = format!("o.{p}.{}", n % 13);
                    let report = broker.publish(&topic, (p, n)).unwrap();
                    assert_eq!((report.delivered, report.dropped), (2, 0));
                }
            })
        })
        .collect();
    for publisher in publishers {
        publisher.join().unwrap();
    }
    broker.close();
    for consumer in consumers {
        let seen = consumer.join().unwrap();
        assert_eq!(seen.len(), PUBLISHERS * PER_PUBLISHER as usize);
        assert_all_in_publisher_order(&seen, PUBLISHERS, PER_PUBLISHER);
    }
}

// ---------------------------------------------------------------------------------------------
// Stress

#[test]
fn a_pattern_change_is_seen_by_the_next_publish_while_others_publish() {
    const ROUNDS: usize = if cfg!(miri) { 20 } else { 2_000 };
    const BACKGROUND: usize = 2;
    let broker = Broker::builder()
        .capacity(8)
        .overflow(Overflow::Drop)
        .build();
    // Keeps the trie non-empty, so every publish goes through the route cache.
    let _unrelated = broker.subscribe("z.>").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(Barrier::new(BACKGROUND + 1));
    // Background publishers keep re-resolving and re-caching the topics under test.
    let background: Vec<_> = (0..BACKGROUND)
        .map(|_| {
            let broker = broker.clone();
            let stop = stop.clone();
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                let mut published = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    broker.publish("s.m", 0).unwrap();
                    broker.publish("s.x", 0).unwrap();
                    published += 2;
                }
                published
            })
        })
        .collect();
    barrier.wait();

    let patterns = ["s.*", "s.>", ">", "*.m", "*.*", "s.m"];
    for round in 0..ROUNDS {
        let pattern = patterns[round % patterns.len()];
        let sub = broker.subscribe(pattern).unwrap();
        // `routed` counts the subscriber whether or not its small queue had room.
        let report = broker.publish("s.m", 1).unwrap();
        assert_eq!(report.routed(), 1, "round {round}: {pattern} not routed to");
        if round % 2 == 0 {
            drop(sub);
        } else {
            let _ = sub.unsubscribe();
        }
        let report = broker.publish("s.m", 1).unwrap();
        assert_eq!(
            report.routed(),
            0,
            "round {round}: {pattern} still routed to"
        );
    }
    stop.store(true, Ordering::Relaxed);
    let background_published: u64 = background.into_iter().map(|b| b.join().unwrap()).sum();
    assert_eq!(
        broker.stats().published,
        background_published + 2 * ROUNDS as u64
    );
}

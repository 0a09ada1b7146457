//! Model test: random sequences of subscribe (plain, with per-subscription options, or as a
//! queue-group member), unsubscribe, drop, publish, try_recv, recv, take_missed and close on a few
//! topics and patterns with small queues, on one thread, checked exactly against a model made of
//! `VecDeque`s.
//!
//! Policies are the non-waiting ones (`Drop`, `DropOldest`, `Timeout(0)`), so every publish is
//! decided by the queues' lengths alone. The model predicts each publish report (delivered,
//! dropped, displaced, evicted, groups), every queue, every subscriber's `dropped()`,
//! `take_missed()`, `status()` and `stats()`, evictions after `evict_after(k)` consecutive misses
//! and what an evicted subscriber then sees, the broker's `stats()`, `topic_stats()` per key and
//! `subscriber_count()`.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use proptest::prelude::*;
use syncmq::{
    Broker, Error, Overflow, RecvError, RecvTimeoutError, SubscribeOptions, Subscription,
    SubscriptionStatus, TryRecvError, validate_pattern, validate_topic,
};

mod common;
use common::proptest_config_persisting_to;

/// The keys subscriptions pick from: topics, patterns, and an invalid one (last).
const KEYS: [&str; 6] = ["a", "a.b", "c", "a.*", ">", "a..b"];
const VALID_KEYS: usize = 5;

/// The topics publishes pick from; the last two are invalid (an empty token, a wildcard).
const TOPICS: [&str; 6] = ["a", "a.b", "c", "a.c", "a..b", "a.*"];
const VALID_TOPICS: usize = 4;

/// Queue group names.
const GROUPS: [&str; 2] = ["g", "h"];

/// A `recv_timeout` that the model says will not wait: it only guards against a hang.
const NO_WAIT: Duration = Duration::from_secs(30);

/// The non-waiting policies.
fn overflow() -> impl Strategy<Value = Overflow> {
    prop_oneof![
        3 => Just(Overflow::Drop),
        4 => Just(Overflow::DropOldest),
        1 => Just(Overflow::Timeout(Duration::ZERO)),
    ]
}

/// Options for `subscribe_with`: each setting overridden or inherited from the broker.
#[derive(Debug, Clone, Copy)]
struct Options {
    capacity: Option<usize>,
    overflow: Option<Overflow>,
    /// `None` inherits, `Some(None)` is `never_evict()`, `Some(Some(k))` is `evict_after(k)`.
    evict_after: Option<Option<u32>>,
}

impl Options {
    fn to_options(self) -> SubscribeOptions {
        let mut options = SubscribeOptions::default();
        if let Some(capacity) = self.capacity {
            options = options.capacity(capacity);
        }
        if let Some(overflow) = self.overflow {
            options = options.overflow(overflow);
        }
        match self.evict_after {
            None => {}
            Some(None) => options = options.never_evict(),
            Some(Some(k)) => options = options.evict_after(k),
        }
        options
    }
}

fn options() -> impl Strategy<Value = Options> {
    (
        prop::option::weighted(0.8, 0..=4usize),
        prop::option::weighted(0.8, overflow()),
        prop_oneof![
            2 => Just(None),
            1 => Just(Some(None)),
            3 => (1..4u32).prop_map(|k| Some(Some(k))),
        ],
    )
        .prop_map(|(capacity, overflow, evict_after)| Options {
            capacity,
            overflow,
            evict_after,
        })
}

#[derive(Debug, Clone)]
enum Op {
    /// `subscribe(KEYS[key])`.
    Subscribe(usize),
    /// `subscribe_with(KEYS[key], options)`.
    SubscribeWith(usize, Options),
    /// `subscribe_group_with(KEYS[key], GROUPS[group], options)`.
    SubscribeGroup(usize, usize, Options),
    /// `unsubscribe()` the subscription at this index (modulo the number alive).
    Unsubscribe(usize),
    /// Drop the subscription at this index.
    Drop(usize),
    /// `publish(TOPICS[topic], next value)`.
    Publish(usize),
    TryRecv(usize),
    /// `recv_timeout`, only when the model says it returns at once.
    Recv(usize),
    TakeMissed(usize),
    Close,
}

fn key_index() -> impl Strategy<Value = usize> {
    prop_oneof![20 => 0..VALID_KEYS, 1 => Just(VALID_KEYS)]
}

fn topic_index() -> impl Strategy<Value = usize> {
    prop_oneof![20 => 0..VALID_TOPICS, 1 => VALID_TOPICS..TOPICS.len()]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => key_index().prop_map(Op::Subscribe),
        12 => (key_index(), options()).prop_map(|(k, o)| Op::SubscribeWith(k, o)),
        8 => (key_index(), 0..GROUPS.len(), options())
            .prop_map(|(k, g, o)| Op::SubscribeGroup(k, g, o)),
        5 => (0..8usize).prop_map(Op::Unsubscribe),
        5 => (0..8usize).prop_map(Op::Drop),
        36 => topic_index().prop_map(Op::Publish),
        25 => (0..8usize).prop_map(Op::TryRecv),
        4 => (0..8usize).prop_map(Op::Recv),
        5 => (0..8usize).prop_map(Op::TakeMissed),
        1 => Just(Op::Close),
    ]
}

/// The broker's defaults for the run.
#[derive(Debug, Clone, Copy)]
struct Defaults {
    capacity: usize,
    evict_after: Option<u32>,
}

fn defaults() -> impl Strategy<Value = Defaults> {
    (
        0..=4usize,
        prop_oneof![3 => Just(None), 1 => (1..4u32).prop_map(Some)],
    )
        .prop_map(|(capacity, evict_after)| Defaults {
            capacity,
            evict_after,
        })
}

/// NATS matching, restated naively: `*` is one token, `>` one or more trailing tokens.
fn matches(pattern: &str, topic: &str) -> bool {
    fn go(pattern: &[&str], topic: &[&str]) -> bool {
        match (pattern.split_first(), topic.split_first()) {
            (None, None) => true,
            (Some((&">", [])), Some(_)) => true,
            (Some((&p, pattern)), Some((&t, topic))) => (p == "*" || p == t) && go(pattern, topic),
            _ => false,
        }
    }
    let pattern: Vec<&str> = pattern.split('.').collect();
    let topic: Vec<&str> = topic.split('.').collect();
    go(&pattern, &topic)
}

/// The model of one subscription.
#[derive(Debug)]
struct ModelSub {
    key: usize,
    group: Option<usize>,
    capacity: usize,
    overflow: Overflow,
    evict_after: Option<u32>,
    queue: VecDeque<u32>,
    /// Messages missed: dropped, or discarded by `DropOldest`.
    dropped: u64,
    /// `dropped` when `take_missed` last ran.
    missed_seen: u64,
    /// Messages taken out with `try_recv` / `recv_timeout`.
    received: u64,
    /// Misses since the last loss-free delivery.
    misses: u32,
    evicted: bool,
}

impl ModelSub {
    fn has_room(&self) -> bool {
        self.queue.len() < self.capacity
    }

    /// Counts a miss; returns whether it is the one that evicts.
    fn miss(&mut self) -> bool {
        self.misses += 1;
        self.evict_after == Some(self.misses)
    }
}

/// The counters of one key (a topic or pattern as subscribed), kept while it has subscribers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct KeyStats {
    published: u64,
    delivered: u64,
    dropped: u64,
    displaced: u64,
    evicted: u64,
}

/// What a publish report should say: delivered, dropped, displaced, evicted, groups.
type Report = (usize, usize, usize, usize, usize);

/// What one subscriber's queue did with one message.
enum Fate {
    Delivered,
    /// Delivered after discarding the oldest queued message.
    Displaced,
    Dropped,
}

/// The model of the broker.
#[derive(Debug)]
struct Model {
    defaults: Defaults,
    subs: Vec<ModelSub>,
    /// Round-robin cursors of the queue groups that have members, by (key, group).
    cursors: HashMap<(usize, usize), usize>,
    /// Counters of the keys that have subscribers.
    keys: HashMap<usize, KeyStats>,
    closed: bool,
    published: u64,
    delivered: u64,
    dropped: u64,
    displaced: u64,
    evicted: u64,
}

impl Model {
    fn new(defaults: Defaults) -> Self {
        Model {
            defaults,
            subs: Vec::new(),
            cursors: HashMap::new(),
            keys: HashMap::new(),
            closed: false,
            published: 0,
            delivered: 0,
            dropped: 0,
            displaced: 0,
            evicted: 0,
        }
    }

    /// Whether subscriber `i` is still filed in the broker.
    fn live(&self, i: usize) -> bool {
        !self.closed && !self.subs[i].evicted
    }

    fn live_subs(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.subs.len()).filter(|&i| self.live(i))
    }

    fn subscriber_count(&self, key: usize) -> usize {
        self.live_subs()
            .filter(|&i| self.subs[i].key == key)
            .count()
    }

    /// Members of a queue group, in joining order.
    fn members(&self, key: usize, group: usize) -> Vec<usize> {
        self.live_subs()
            .filter(|&i| self.subs[i].key == key && self.subs[i].group == Some(group))
            .collect()
    }

    /// Forgets the counters and cursors of keys and groups left without subscribers.
    fn forget_empty(&mut self) {
        let keys: Vec<usize> = self.keys.keys().copied().collect();
        for key in keys {
            if self.subscriber_count(key) == 0 {
                self.keys.remove(&key);
            }
        }
        let groups: Vec<(usize, usize)> = self.cursors.keys().copied().collect();
        for (key, group) in groups {
            if self.members(key, group).is_empty() {
                self.cursors.remove(&(key, group));
            }
        }
    }

    /// Subscribes, or says which error `subscribe*` should return.
    fn subscribe(
        &mut self,
        key: usize,
        group: Option<usize>,
        options: Options,
    ) -> Result<(), Error> {
        if key >= VALID_KEYS {
            return Err(Error::InvalidTopic {
                topic: KEYS[key].to_owned(),
                reason: validate_pattern(KEYS[key]).unwrap_err(),
            });
        }
        if self.closed {
            return Err(Error::Closed);
        }
        self.keys.entry(key).or_default();
        if let Some(group) = group {
            self.cursors.entry((key, group)).or_insert(0);
        }
        self.subs.push(ModelSub {
            key,
            group,
            capacity: options.capacity.unwrap_or(self.defaults.capacity),
            overflow: options.overflow.unwrap_or(Overflow::Drop),
            evict_after: options.evict_after.unwrap_or(self.defaults.evict_after),
            queue: VecDeque::new(),
            dropped: 0,
            missed_seen: 0,
            received: 0,
            misses: 0,
            evicted: false,
        });
        Ok(())
    }

    /// Removes subscription `i` (unsubscribed or dropped) and returns its queue.
    fn leave(&mut self, i: usize) -> Vec<u32> {
        let sub = self.subs.remove(i);
        self.forget_empty();
        sub.queue.into()
    }

    /// A full queue: applies subscriber `i`'s policy to `value`.
    fn full(&mut self, i: usize, value: u32) -> Fate {
        let sub = &mut self.subs[i];
        if sub.overflow == Overflow::DropOldest && sub.capacity > 0 {
            sub.queue.pop_front();
            sub.queue.push_back(value);
            sub.dropped += 1;
            Fate::Displaced
        } else {
            sub.dropped += 1;
            Fate::Dropped
        }
    }

    /// Offers `value` to plain subscriber `i`.
    fn offer(&mut self, i: usize, value: u32) -> Fate {
        if self.subs[i].has_room() {
            self.subs[i].queue.push_back(value);
            Fate::Delivered
        } else {
            self.full(i, value)
        }
    }

    /// Offers `value` to a queue group: from the cursor on, the first member with room takes
    /// it; if all are full, the policy of the member whose turn it was applies. Returns that
    /// member and what happened.
    fn offer_group(&mut self, key: usize, group: usize, value: u32) -> (usize, Fate) {
        let members = self.members(key, group);
        let cursor = self.cursors.get_mut(&(key, group)).expect("a live group");
        let start = *cursor % members.len();
        *cursor += 1;
        for offset in 0..members.len() {
            let m = members[(start + offset) % members.len()];
            if self.subs[m].has_room() {
                self.subs[m].queue.push_back(value);
                return (m, Fate::Delivered);
            }
        }
        let m = members[start];
        (m, self.full(m, value))
    }

    /// Publishes `value` to `topic`: what the report should say, or the error.
    fn publish(&mut self, topic: usize, value: u32) -> Result<Report, Error> {
        if topic >= VALID_TOPICS {
            return Err(Error::InvalidTopic {
                topic: TOPICS[topic].to_owned(),
                reason: validate_topic(TOPICS[topic]).unwrap_err(),
            });
        }
        if self.closed {
            return Err(Error::Closed);
        }
        self.published += 1;
        let reached: Vec<usize> = (0..VALID_KEYS)
            .filter(|&k| self.keys.contains_key(&k) && matches(KEYS[k], TOPICS[topic]))
            .collect();
        for key in &reached {
            self.keys.get_mut(key).unwrap().published += 1;
        }

        // Who was offered the message, for the group flag, and what happened to it. Every
        // plain subscriber, then one member per group.
        let mut fates: Vec<(usize, bool, Fate)> = Vec::new();
        for i in self.live_subs().collect::<Vec<_>>() {
            if self.subs[i].group.is_none() && reached.contains(&self.subs[i].key) {
                let fate = self.offer(i, value);
                fates.push((i, false, fate));
            }
        }
        let mut groups: Vec<(usize, usize)> = self.cursors.keys().copied().collect();
        groups.sort_unstable();
        for (key, group) in groups {
            if reached.contains(&key) {
                let (member, fate) = self.offer_group(key, group, value);
                fates.push((member, true, fate));
            }
        }

        let (mut delivered, mut dropped, mut displaced, mut served) = (0, 0, 0, 0);
        let mut evict = Vec::new();
        for (i, for_group, fate) in fates {
            let key = self.subs[i].key;
            let stats = self.keys.get_mut(&key).unwrap();
            let sub = &mut self.subs[i];
            let evicts = match fate {
                Fate::Delivered => {
                    sub.misses = 0;
                    false
                }
                Fate::Displaced => {
                    stats.displaced += 1;
                    displaced += 1;
                    sub.miss()
                }
                Fate::Dropped => {
                    stats.dropped += 1;
                    dropped += 1;
                    sub.miss()
                }
            };
            if !matches!(fate, Fate::Dropped) {
                stats.delivered += 1;
                delivered += 1;
                served += usize::from(for_group);
            }
            if evicts {
                evict.push(i);
            }
        }
        for &i in &evict {
            self.subs[i].evicted = true;
            self.keys.get_mut(&self.subs[i].key).unwrap().evicted += 1;
        }
        self.forget_empty();
        self.delivered += delivered as u64;
        self.dropped += dropped as u64;
        self.displaced += displaced as u64;
        self.evicted += evict.len() as u64;
        Ok((delivered, dropped, displaced, evict.len(), served))
    }

    fn close(&mut self) {
        self.closed = true;
        self.keys.clear();
        self.cursors.clear();
    }

    /// Why subscriber `i` receives nothing more, if it does not.
    fn ended(&self, i: usize) -> Option<RecvError> {
        if self.subs[i].evicted {
            Some(RecvError::Evicted)
        } else if self.closed {
            Some(RecvError::Closed)
        } else {
            None
        }
    }

    fn status(&self, i: usize) -> SubscriptionStatus {
        match self.ended(i) {
            Some(RecvError::Evicted) => SubscriptionStatus::Evicted,
            Some(_) => SubscriptionStatus::Closed,
            None => SubscriptionStatus::Active,
        }
    }

    /// What `try_recv` on subscriber `i` returns, taking it from the model.
    fn try_recv(&mut self, i: usize) -> Result<u32, TryRecvError> {
        match self.subs[i].queue.pop_front() {
            Some(value) => {
                self.subs[i].received += 1;
                Ok(value)
            }
            None => Err(match self.ended(i) {
                Some(RecvError::Evicted) => TryRecvError::Evicted,
                Some(_) => TryRecvError::Closed,
                None => TryRecvError::Empty,
            }),
        }
    }

    fn take_missed(&mut self, i: usize) -> u64 {
        let sub = &mut self.subs[i];
        let missed = sub.dropped - sub.missed_seen;
        sub.missed_seen = sub.dropped;
        missed
    }
}

/// Checks everything observable (without changing it) against the model.
fn check(
    broker: &Broker<u32>,
    subs: &[Subscription<u32>],
    model: &Model,
) -> Result<(), TestCaseError> {
    let stats = broker.stats();
    prop_assert_eq!(
        (
            stats.published,
            stats.delivered,
            stats.dropped,
            stats.displaced,
            stats.evicted
        ),
        (
            model.published,
            model.delivered,
            model.dropped,
            model.displaced,
            model.evicted
        ),
        "stats (published, delivered, dropped, displaced, evicted)"
    );
    prop_assert_eq!(stats.topics, model.keys.len(), "stats.topics");
    prop_assert_eq!(
        stats.subscribers,
        model.live_subs().count(),
        "stats.subscribers"
    );
    for (k, key) in KEYS.iter().enumerate() {
        prop_assert_eq!(
            broker.subscriber_count(key),
            model.subscriber_count(k),
            "subscriber_count({})",
            key
        );
        let got = broker.topic_stats(key).map(|t| {
            (
                t.subscribers,
                t.published,
                t.delivered,
                t.dropped,
                t.displaced,
                t.evicted,
            )
        });
        let expected = model.keys.get(&k).map(|s| {
            (
                model.subscriber_count(k),
                s.published,
                s.delivered,
                s.dropped,
                s.displaced,
                s.evicted,
            )
        });
        prop_assert_eq!(
            got,
            expected,
            "topic_stats({}): (subscribers, published, delivered, dropped, displaced, evicted)",
            key
        );
    }
    // Published topics that are not keys have no counters of their own.
    prop_assert_eq!(broker.topic_stats("a.c"), None);
    prop_assert_eq!(broker.is_closed(), model.closed);
    prop_assert_eq!(subs.len(), model.subs.len());
    for (i, (sub, m)) in subs.iter().zip(&model.subs).enumerate() {
        prop_assert_eq!(sub.topic(), KEYS[m.key], "sub {} topic", i);
        prop_assert_eq!(sub.group(), m.group.map(|g| GROUPS[g]), "sub {} group", i);
        prop_assert_eq!(sub.capacity(), Some(m.capacity), "sub {} capacity", i);
        prop_assert_eq!(sub.len(), m.queue.len(), "sub {} len", i);
        prop_assert_eq!(sub.is_empty(), m.queue.is_empty(), "sub {} is_empty", i);
        prop_assert_eq!(sub.dropped(), m.dropped, "sub {} dropped", i);
        prop_assert_eq!(sub.status(), model.status(i), "sub {} status", i);
        let s = sub.stats();
        prop_assert_eq!(
            (s.received, s.dropped, s.queued),
            (m.received, m.dropped, m.queue.len()),
            "sub {} stats (received, dropped, queued)",
            i
        );
    }
    Ok(())
}

fn run(ops: &[Op], defaults: Defaults, striped: bool) -> Result<(), TestCaseError> {
    let mut builder = Broker::<u32>::builder()
        .capacity(defaults.capacity)
        .overflow(Overflow::Drop);
    if let Some(k) = defaults.evict_after {
        builder = builder.evict_after(k);
    }
    if striped {
        // Spread every publish to 2+ plain subscribers over the pool: the outcome must not
        // change.
        builder = builder.dispatch_threshold(2).workers(2);
    }
    let broker = builder.build();
    let mut subs: Vec<Subscription<u32>> = Vec::new();
    let mut model = Model::new(defaults);
    let mut next_value = 0u32;
    let inherit = Options {
        capacity: None,
        overflow: None,
        evict_after: None,
    };

    for (step, op) in ops.iter().enumerate() {
        match *op {
            Op::Subscribe(key) => {
                let result = broker.subscribe(KEYS[key]);
                match model.subscribe(key, None, inherit) {
                    Ok(()) => subs.push(result.unwrap()),
                    Err(err) => prop_assert_eq!(result.unwrap_err(), err, "step {}", step),
                }
            }
            Op::SubscribeWith(key, options) => {
                let result = broker.subscribe_with(KEYS[key], options.to_options());
                match model.subscribe(key, None, options) {
                    Ok(()) => subs.push(result.unwrap()),
                    Err(err) => prop_assert_eq!(result.unwrap_err(), err, "step {}", step),
                }
            }
            Op::SubscribeGroup(key, group, options) => {
                let result =
                    broker.subscribe_group_with(KEYS[key], GROUPS[group], options.to_options());
                match model.subscribe(key, Some(group), options) {
                    Ok(()) => subs.push(result.unwrap()),
                    Err(err) => prop_assert_eq!(result.unwrap_err(), err, "step {}", step),
                }
            }
            Op::Unsubscribe(i) if !subs.is_empty() => {
                let i = i % subs.len();
                let rest = subs.remove(i).unsubscribe();
                prop_assert_eq!(
                    rest,
                    model.leave(i),
                    "step {}: unsubscribe() returns the queue",
                    step
                );
            }
            Op::Drop(i) if !subs.is_empty() => {
                let i = i % subs.len();
                drop(subs.remove(i));
                model.leave(i);
            }
            Op::Publish(topic) => {
                let value = next_value;
                next_value += 1;
                let got = broker
                    .publish(TOPICS[topic], value)
                    .map(|r| (r.delivered, r.dropped, r.displaced, r.evicted, r.groups));
                let expected = model.publish(topic, value);
                prop_assert_eq!(
                    got,
                    expected,
                    "step {}: publish {} (delivered, dropped, displaced, evicted, groups)",
                    step,
                    TOPICS[topic]
                );
            }
            Op::TryRecv(i) if !subs.is_empty() => {
                let i = i % subs.len();
                prop_assert_eq!(
                    subs[i].try_recv(),
                    model.try_recv(i),
                    "step {}: try_recv",
                    step
                );
            }
            Op::Recv(i) if !subs.is_empty() => {
                let i = i % subs.len();
                // Only when it cannot wait: something is queued, or the subscription ended.
                if !model.subs[i].queue.is_empty() || model.ended(i).is_some() {
                    let expected = model.try_recv(i).map_err(|err| match err {
                        TryRecvError::Evicted => RecvTimeoutError::Evicted,
                        TryRecvError::Closed => RecvTimeoutError::Closed,
                        TryRecvError::Empty => unreachable!("the model says it ended"),
                        _ => unreachable!(),
                    });
                    prop_assert_eq!(
                        subs[i].recv_timeout(NO_WAIT),
                        expected,
                        "step {}: recv_timeout",
                        step
                    );
                }
            }
            Op::TakeMissed(i) if !subs.is_empty() => {
                let i = i % subs.len();
                prop_assert_eq!(
                    subs[i].take_missed(),
                    model.take_missed(i),
                    "step {}: take_missed",
                    step
                );
            }
            Op::Close => {
                broker.close();
                model.close();
            }
            // Nothing to unsubscribe, drop or receive from.
            Op::Unsubscribe(_) | Op::Drop(_) | Op::TryRecv(_) | Op::Recv(_) | Op::TakeMissed(_) => {
            }
        }
        check(&broker, &subs, &model)?;
    }

    // The end: every subscription drains exactly its model queue, then sees why it ended:
    // evicted, or closed.
    broker.close();
    model.close();
    check(&broker, &subs, &model)?;
    for (i, sub) in subs.iter().enumerate() {
        prop_assert_eq!(
            sub.take_missed(),
            model.take_missed(i),
            "sub {} take_missed",
            i
        );
        let rest: Vec<u32> = sub.try_iter().collect();
        let expected: Vec<u32> = model.subs[i].queue.drain(..).collect();
        prop_assert_eq!(rest, expected, "sub {} drains its queue", i);
        let (try_err, err) = if model.subs[i].evicted {
            (TryRecvError::Evicted, RecvError::Evicted)
        } else {
            (TryRecvError::Closed, RecvError::Closed)
        };
        prop_assert_eq!(sub.try_recv(), Err(try_err), "sub {}", i);
        prop_assert_eq!(sub.recv(), Err(err), "sub {}", i);
    }
    Ok(())
}

/// Where the proptests of this file keep the failures they found.
fn proptest_config() -> ProptestConfig {
    proptest_config_persisting_to("proptest-regressions/prop_model.txt")
}

// --- smoke --------------------------------------------------------------------------------

/// The model's own rules on a hand-checked run: a `DropOldest` subscriber of capacity 1 with
/// `evict_after(2)` beside a `Drop` one, and a group of two.
#[test]
fn the_model_predicts_a_hand_checked_run() {
    let mut model = Model::new(Defaults {
        capacity: 1,
        evict_after: None,
    });
    let oldest = Options {
        capacity: None,
        overflow: Some(Overflow::DropOldest),
        evict_after: Some(Some(2)),
    };
    let plain = Options {
        capacity: None,
        overflow: None,
        evict_after: None,
    };
    model.subscribe(0, None, oldest).unwrap();
    model.subscribe(0, None, plain).unwrap();
    model.subscribe(4, Some(0), plain).unwrap();
    model.subscribe(4, Some(0), plain).unwrap();
    // (delivered, dropped, displaced, evicted, groups)
    assert_eq!(model.publish(0, 0), Ok((3, 0, 0, 0, 1)));
    assert_eq!(model.publish(0, 1), Ok((2, 1, 1, 0, 1)));
    assert_eq!(model.publish(0, 2), Ok((1, 2, 1, 1, 0)));
    assert_eq!(model.subs[0].queue, [2]);
    assert!(model.subs[0].evicted);
    assert_eq!((model.subs[2].queue[0], model.subs[3].queue[0]), (0, 1));
    assert_eq!((model.subs[2].dropped, model.subs[3].dropped), (1, 0));
    assert_eq!(model.publish(0, 3), Ok((0, 2, 0, 0, 0)));
    assert_eq!(model.subs[3].dropped, 1);
    assert_eq!(model.keys[&0].evicted, 1);
    assert_eq!(model.subscriber_count(0), 1);
    assert!(matches("a.>", "a.b.c") && matches("*", "c") && !matches("a.*", "a"));
}

// --- properties ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(proptest_config())]

    #[test]
    fn the_broker_behaves_like_the_model(
        ops in prop::collection::vec(op(), 1..100),
        defaults in defaults(),
    ) {
        run(&ops, defaults, false)?;
    }

    #[test]
    fn the_broker_behaves_like_the_model_when_publishes_are_striped(
        ops in prop::collection::vec(op(), 1..100),
        defaults in defaults(),
    ) {
        run(&ops, defaults, true)?;
    }
}

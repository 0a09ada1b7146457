//! Model test: random sequences of subscribe, unsubscribe, drop, publish, try_recv and close on a
//! few topics with small queues and `Overflow::Drop`, on one thread, checked exactly against a
//! model made of `VecDeque`s (queued messages, drop counts, reports, stats, subscriber counts).

use std::collections::{BTreeSet, VecDeque};

use proptest::prelude::*;
use syncmq::{Broker, Error, Overflow, Subscription, TryRecvError, validate_topic};

/// The topics operations pick from; the last one is invalid.
const TOPICS: [&str; 4] = ["a", "a.b", "c", "a..b"];
const VALID_TOPICS: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    Subscribe(usize),
    /// `unsubscribe()` the subscription at this index (modulo the number alive).
    Unsubscribe(usize),
    /// Drop the subscription at this index.
    Drop(usize),
    Publish(usize),
    TryRecv(usize),
    Close,
}

fn topic_index() -> impl Strategy<Value = usize> {
    prop_oneof![12 => 0..VALID_TOPICS, 1 => Just(VALID_TOPICS)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        20 => topic_index().prop_map(Op::Subscribe),
        6 => (0..8usize).prop_map(Op::Unsubscribe),
        6 => (0..8usize).prop_map(Op::Drop),
        36 => topic_index().prop_map(Op::Publish),
        30 => (0..8usize).prop_map(Op::TryRecv),
        1 => Just(Op::Close),
    ]
}

/// The model of one subscription.
#[derive(Debug)]
struct ModelSub {
    topic: usize,
    queue: VecDeque<u32>,
    dropped: u64,
}

/// The model of the broker.
#[derive(Debug, Default)]
struct Model {
    capacity: usize,
    subs: Vec<ModelSub>,
    closed: bool,
    published: u64,
    delivered: u64,
    dropped: u64,
}

impl Model {
    fn subscriber_count(&self, topic: usize) -> usize {
        if self.closed {
            return 0;
        }
        self.subs.iter().filter(|s| s.topic == topic).count()
    }

    fn topics(&self) -> usize {
        if self.closed {
            return 0;
        }
        self.subs
            .iter()
            .map(|s| s.topic)
            .collect::<BTreeSet<_>>()
            .len()
    }

    /// Publishes `value` to `topic`: what the report should say, or the error.
    fn publish(&mut self, topic: usize, value: u32) -> Result<(usize, usize), Error> {
        if topic >= VALID_TOPICS {
            return Err(invalid(topic));
        }
        if self.closed {
            return Err(Error::Closed);
        }
        self.published += 1;
        let (mut delivered, mut dropped) = (0, 0);
        for sub in self.subs.iter_mut().filter(|s| s.topic == topic) {
            if sub.queue.len() < self.capacity {
                sub.queue.push_back(value);
                delivered += 1;
            } else {
                sub.dropped += 1;
                dropped += 1;
            }
        }
        self.delivered += delivered as u64;
        self.dropped += dropped as u64;
        Ok((delivered, dropped))
    }
}

fn invalid(topic: usize) -> Error {
    Error::InvalidTopic {
        topic: TOPICS[topic].to_owned(),
        reason: validate_topic(TOPICS[topic]).unwrap_err(),
    }
}

/// Checks everything observable against the model.
fn check(
    broker: &Broker<u32>,
    subs: &[Subscription<u32>],
    model: &Model,
) -> Result<(), TestCaseError> {
    let stats = broker.stats();
    prop_assert_eq!(
        (stats.published, stats.delivered, stats.dropped),
        (model.published, model.delivered, model.dropped),
        "stats (published, delivered, dropped)"
    );
    prop_assert_eq!(stats.topics, model.topics(), "stats.topics");
    let subscribers: usize = (0..VALID_TOPICS).map(|t| model.subscriber_count(t)).sum();
    prop_assert_eq!(stats.subscribers, subscribers, "stats.subscribers");
    for (t, topic) in TOPICS.iter().enumerate() {
        prop_assert_eq!(
            broker.subscriber_count(topic),
            model.subscriber_count(t),
            "subscriber_count({})",
            topic
        );
    }
    prop_assert_eq!(broker.is_closed(), model.closed);
    prop_assert_eq!(subs.len(), model.subs.len());
    for (i, (sub, m)) in subs.iter().zip(&model.subs).enumerate() {
        prop_assert_eq!(sub.topic(), TOPICS[m.topic], "sub {} topic", i);
        prop_assert_eq!(sub.len(), m.queue.len(), "sub {} len", i);
        prop_assert_eq!(sub.is_empty(), m.queue.is_empty(), "sub {} is_empty", i);
        prop_assert_eq!(sub.dropped(), m.dropped, "sub {} dropped", i);
        prop_assert_eq!(sub.capacity(), Some(model.capacity), "sub {} capacity", i);
    }
    Ok(())
}

fn run(ops: &[Op], capacity: usize, striped: bool) -> Result<(), TestCaseError> {
    let mut builder = Broker::<u32>::builder()
        .capacity(capacity)
        .overflow(Overflow::Drop);
    if striped {
        // Spread every publish to 2+ subscribers over the pool: the outcome must not change.
        builder = builder.dispatch_threshold(2).workers(2);
    }
    let broker = builder.build();
    let mut subs: Vec<Subscription<u32>> = Vec::new();
    let mut model = Model {
        capacity,
        ..Model::default()
    };
    let mut next_value = 0u32;

    for (step, op) in ops.iter().enumerate() {
        match *op {
            Op::Subscribe(topic) => {
                let result = broker.subscribe(TOPICS[topic]);
                if topic >= VALID_TOPICS {
                    prop_assert_eq!(result.unwrap_err(), invalid(topic), "step {}", step);
                } else if model.closed {
                    prop_assert_eq!(result.unwrap_err(), Error::Closed, "step {}", step);
                } else {
                    subs.push(result.unwrap());
                    model.subs.push(ModelSub {
                        topic,
                        queue: VecDeque::new(),
                        dropped: 0,
                    });
                }
            }
            Op::Unsubscribe(i) if !subs.is_empty() => {
                let i = i % subs.len();
                let rest = subs.remove(i).unsubscribe();
                let expected: Vec<u32> = model.subs.remove(i).queue.into();
                prop_assert_eq!(
                    rest,
                    expected,
                    "step {}: unsubscribe() returns the queue",
                    step
                );
            }
            Op::Drop(i) if !subs.is_empty() => {
                let i = i % subs.len();
                drop(subs.remove(i));
                model.subs.remove(i);
            }
            Op::Publish(topic) => {
                let value = next_value;
                next_value += 1;
                let got = broker
                    .publish(TOPICS[topic], value)
                    .map(|r| (r.delivered, r.dropped));
                prop_assert_eq!(got, model.publish(topic, value), "step {}: publish", step);
            }
            Op::TryRecv(i) if !subs.is_empty() => {
                let i = i % subs.len();
                let expected = match model.subs[i].queue.pop_front() {
                    Some(value) => Ok(value),
                    None if model.closed => Err(TryRecvError::Closed),
                    None => Err(TryRecvError::Empty),
                };
                prop_assert_eq!(subs[i].try_recv(), expected, "step {}: try_recv", step);
            }
            Op::Close => {
                broker.close();
                model.closed = true;
            }
            // Nothing to unsubscribe, drop or receive from.
            Op::Unsubscribe(_) | Op::Drop(_) | Op::TryRecv(_) => {}
        }
        check(&broker, &subs, &model)?;
    }

    // The end: every subscription drains exactly its model queue, then sees the close.
    broker.close();
    for (sub, m) in subs.iter().zip(&model.subs) {
        let rest: Vec<u32> = sub.try_iter().collect();
        prop_assert_eq!(rest, Vec::from(m.queue.clone()));
        prop_assert_eq!(sub.try_recv(), Err(TryRecvError::Closed));
    }
    Ok(())
}

proptest! {
    #[test]
    fn the_broker_behaves_like_the_model(
        ops in prop::collection::vec(op(), 1..80),
        capacity in 1usize..=4,
    ) {
        run(&ops, capacity, false)?;
    }

    #[test]
    fn the_broker_behaves_like_the_model_when_publishes_are_striped(
        ops in prop::collection::vec(op(), 1..80),
        capacity in 1usize..=4,
    ) {
        run(&ops, capacity, true)?;
    }
}

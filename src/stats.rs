//! What the broker tells about its work: [`PublishReport`] for one publish, and the counters
//! behind [`BrokerStats`], [`TopicStats`] and [`SubscriptionStats`].
//!
//! Every counter is only ever incremented, with `Relaxed` ordering: they are statistics, and
//! nothing is synchronised through them. A reader may see part of a publish that is still
//! running (say its `published` but not yet its `delivered`); once every publish has returned,
//! the identities below hold exactly.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::delivery::Outcome;

/// What one [`Broker::publish`](crate::Broker::publish) did.
///
/// `delivered + dropped` is the number of subscribers the message was routed to.
///
/// # Note
///
/// `delivered` means *placed in the subscriber's queue*, not received: a subscriber may still
/// drop its [`Subscription`](crate::Subscription) without reading it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PublishReport {
    /// Subscribers whose queue received the message.
    pub delivered: usize,
    /// Subscribers that did not get it: their queue stayed full past the overflow policy, the
    /// broker closed while the publish waited, or they unsubscribed during the publish.
    pub dropped: usize,
    /// Older messages that [`Overflow::DropOldest`](crate::Overflow::DropOldest) subscribers
    /// discarded to make room for this one. They had been delivered by earlier publishes; each
    /// counts as dropped for its subscriber.
    pub displaced: usize,
    /// Subscribers this publish evicted (see
    /// [`BrokerBuilder::evict_after`](crate::BrokerBuilder::evict_after)).
    pub evicted: usize,
    /// Queue groups that received the message, in one of their members. Each also counts
    /// once in `delivered`.
    pub groups: usize,
}

impl PublishReport {
    /// The number of subscribers the message was routed to: `delivered + dropped`.
    pub fn routed(&self) -> usize {
        self.delivered + self.dropped
    }
}

/// Counters of a broker, from [`Broker::stats`](crate::Broker::stats).
///
/// Counters only grow. `topics` and `subscribers` are a snapshot that may be stale by the time
/// it is read. Over all publishes that have returned, `delivered + dropped` is the total number
/// of subscribers routed to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BrokerStats {
    /// Successful `publish` calls.
    pub published: u64,
    /// Messages placed in subscribers' queues.
    pub delivered: u64,
    /// Messages that were routed to a subscriber but not placed in its queue.
    pub dropped: u64,
    /// Delivered messages later discarded by `DropOldest` to make room for newer ones.
    pub displaced: u64,
    /// Subscribers evicted for missing too many messages in a row.
    pub evicted: u64,
    /// Topics and patterns with at least one subscriber.
    pub topics: usize,
    /// Subscribers over all topics and patterns, queue group members included.
    pub subscribers: usize,
    /// Dispatch threads running.
    pub dispatch_threads: usize,
    /// Dispatch threads that could not be spawned. Publishing goes on without them.
    pub spawn_failures: u64,
}

/// Counters of one topic or pattern as subscribed, from
/// [`Broker::topic_stats`](crate::Broker::topic_stats): what its subscribers (and queue
/// groups) were sent.
///
/// They count since the key's current run of subscribers began: when its last subscriber
/// leaves, the key and its counters are forgotten, so a broker fed millions of distinct
/// topics keeps no memory for them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicStats {
    /// Subscribers now, queue group members included.
    pub subscribers: usize,
    /// Publishes that reached the topic or pattern.
    pub published: u64,
    /// Messages placed in its subscribers' queues (one per queue group and message).
    pub delivered: u64,
    /// Messages routed to its subscribers or groups but not placed in their queues.
    pub dropped: u64,
    /// Delivered messages later discarded by `DropOldest`.
    pub displaced: u64,
    /// Subscribers of the topic evicted.
    pub evicted: u64,
}

/// Counters of one subscription, from
/// [`Subscription::stats`](crate::Subscription::stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscriptionStats {
    /// Messages taken out with the receive methods and iterators (not through
    /// [`receiver`](crate::Subscription::receiver), which the subscription cannot see).
    pub received: u64,
    /// Messages this subscription missed: not delivered, or discarded by `DropOldest`.
    pub dropped: u64,
    /// Messages queued now.
    pub queued: usize,
}

/// The monotonic counters shared by the broker's totals and each topic.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) published: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) displaced: AtomicU64,
    pub(crate) evicted: AtomicU64,
}

impl Counters {
    pub(crate) fn record_publish(&self) {
        self.published.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds one publish's outcome to the broker's totals. (Per-key counters are added by
    /// delivery itself, which knows which key each subscriber belongs to.) Evictions are
    /// added by `record_evicted`, once each is confirmed in the registry. Zero amounts are not
    /// added: each add is an atomic read-modify-write, a few nanoseconds of every publish.
    pub(crate) fn record_outcome(&self, outcome: &Outcome) {
        if outcome.delivered > 0 {
            self.delivered
                .fetch_add(outcome.delivered as u64, Ordering::Relaxed);
        }
        if outcome.dropped > 0 {
            self.dropped
                .fetch_add(outcome.dropped as u64, Ordering::Relaxed);
        }
        if outcome.displaced > 0 {
            self.displaced
                .fetch_add(outcome.displaced as u64, Ordering::Relaxed);
        }
    }

    pub(crate) fn record_evicted(&self) {
        self.evicted.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn topic_stats(&self, subscribers: usize) -> TopicStats {
        TopicStats {
            subscribers,
            published: self.published.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            displaced: self.displaced.load(Ordering::Relaxed),
            evicted: self.evicted.load(Ordering::Relaxed),
        }
    }
}

//! What the broker tells about its work: [`PublishReport`] for one publish, and the counters
//! behind [`BrokerStats`], [`TopicStats`] and [`SubscriptionStats`].
//!
//! Every counter is only ever incremented, with `Relaxed` ordering: they are statistics, and
//! nothing is synchronised through them. A reader may see part of a publish that is still
//! running; once every publish has returned, the identities below hold exactly. Which part
//! differs: the broker's totals count a publish before delivering it (so one waiting on a full
//! queue shows in [`BrokerStats::published`] while it waits), whereas each key's counters
//! count it once its delivery is done (so a key's `delivered` and `dropped`, added as delivery
//! goes, may already count a publish that its `published` does not yet).
//!
//! The counters a publish updates are [`OwnedCounts`]: the thread that counts first updates
//! them with plain loads and stores, the others with `fetch_add`. An atomic read-modify-write
//! costs about 5 ns, and a publish to one subscriber would otherwise do four of them here.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// What one [`Broker::publish`](crate::Broker::publish) did.
///
/// `delivered + dropped` is the number of subscribers the message was routed to, counting each
/// queue group once, not once per member.
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
    /// The number of subscribers the message was routed to, each queue group counting once:
    /// `delivered + dropped`.
    pub fn routed(&self) -> usize {
        self.delivered + self.dropped
    }
}

/// Counters of a broker, from [`Broker::stats`](crate::Broker::stats).
///
/// Counters only grow. `topics` and `subscribers` are a snapshot that may be stale by the time
/// it is read. Over all publishes that have returned, `delivered + dropped` is the total number
/// of subscribers routed to, each queue group counting once per publish.
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
///
/// A publish counts in `published` once its delivery is done: while it runs (waiting on a
/// full queue, say), `delivered` and `dropped` may already count it and `published` not yet.
/// [`BrokerStats::published`], by contrast, counts a publish before its delivery.
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

/// A set of `N` monotonic counters that many threads may add to, costing one thread no atomic
/// read-modify-write.
///
/// The first thread to add becomes the owner, for good. Only the owner writes `owned`, so it
/// adds with a plain load and store; any other thread adds to `shared` with `fetch_add`. A
/// count is the sum of the two. Thread tokens are never reused (unlike a thread-local's
/// address), so no later thread can mistake itself for an owner that has exited. `Relaxed`
/// throughout: the counts are statistics, read after whatever synchronisation made the work
/// they count visible.
#[derive(Debug)]
pub(crate) struct OwnedCounts<const N: usize> {
    /// The owner's [`thread_token`], or 0 before the first add.
    owner: AtomicU64,
    /// Added by the owner. Written by the owner only.
    owned: [AtomicU64; N],
    /// Added by any other thread.
    shared: [AtomicU64; N],
}

impl<const N: usize> Default for OwnedCounts<N> {
    fn default() -> Self {
        OwnedCounts {
            owner: AtomicU64::new(0),
            owned: [const { AtomicU64::new(0) }; N],
            shared: [const { AtomicU64::new(0) }; N],
        }
    }
}

impl<const N: usize> OwnedCounts<N> {
    /// Adds `amounts[i]` to count `i`, for every `i`. Zero amounts write nothing; all zeros
    /// do not even claim ownership.
    // `inline`: callers pass mostly constant zeros, which then cost nothing.
    #[inline]
    pub(crate) fn add(&self, amounts: [u64; N]) {
        // Not `amounts == [0; N]`: that compiles to a call to `memcmp`, which cost more
        // than the rest of an uncontended add.
        if amounts.iter().fold(0, |any, &amount| any | amount) == 0 {
            return;
        }
        let me = thread_token();
        let owner = self.owner.load(Ordering::Relaxed);
        let owns = owner == me
            || (owner == 0
                && self
                    .owner
                    .compare_exchange(0, me, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok());
        for (i, amount) in amounts.into_iter().enumerate() {
            if amount == 0 {
                continue;
            }
            if owns {
                // The only writer of `owned`: no other thread can interleave an update.
                let owned = self.owned[i].load(Ordering::Relaxed);
                self.owned[i].store(owned + amount, Ordering::Relaxed);
            } else {
                self.shared[i].fetch_add(amount, Ordering::Relaxed);
            }
        }
    }

    /// Count `i`.
    pub(crate) fn get(&self, i: usize) -> u64 {
        self.owned[i].load(Ordering::Relaxed) + self.shared[i].load(Ordering::Relaxed)
    }
}

/// The next thread token to hand out. Starts at 1: 0 means "no owner".
static NEXT_THREAD_TOKEN: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This thread's token, or 0 before it first needs one.
    static THREAD_TOKEN: Cell<u64> = const { Cell::new(0) };
}

/// A number that identifies the calling thread, unique for the life of the process.
fn thread_token() -> u64 {
    THREAD_TOKEN.with(|token| {
        if token.get() == 0 {
            // `Relaxed`: only uniqueness matters, which the read-modify-write gives.
            token.set(NEXT_THREAD_TOKEN.fetch_add(1, Ordering::Relaxed));
        }
        token.get()
    })
}

/// What one publish (or one run of its subscribers) adds to a [`Counters`].
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Delta {
    pub(crate) published: u64,
    pub(crate) delivered: u64,
    pub(crate) dropped: u64,
    pub(crate) displaced: u64,
    pub(crate) evicted: u64,
}

/// The monotonic counters of the broker's totals and of each key (topic or pattern).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Indexed like [`Delta`]'s fields, in order.
    counts: OwnedCounts<5>,
}

impl Counters {
    #[inline]
    pub(crate) fn add(&self, delta: Delta) {
        let Delta {
            published,
            delivered,
            dropped,
            displaced,
            evicted,
        } = delta;
        self.counts
            .add([published, delivered, dropped, displaced, evicted]);
    }

    pub(crate) fn record_evicted(&self) {
        self.add(Delta {
            evicted: 1,
            ..Delta::default()
        });
    }

    pub(crate) fn published(&self) -> u64 {
        self.counts.get(0)
    }

    pub(crate) fn topic_stats(&self, subscribers: usize) -> TopicStats {
        TopicStats {
            subscribers,
            published: self.counts.get(0),
            delivered: self.counts.get(1),
            dropped: self.counts.get(2),
            displaced: self.counts.get(3),
            evicted: self.counts.get(4),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Barrier;
    use std::thread;

    use super::*;

    #[test]
    fn every_thread_adds_to_the_same_counts() {
        const THREADS: u64 = 4;
        const ADDS: u64 = 10_000;
        let counts = OwnedCounts::<2>::default();
        let start = Barrier::new(THREADS as usize);
        thread::scope(|scope| {
            for _ in 0..THREADS {
                scope.spawn(|| {
                    start.wait();
                    for _ in 0..ADDS {
                        counts.add([1, 0]);
                        counts.add([0, 2]);
                    }
                });
            }
        });
        // Lost updates (every thread taking the plain path) would leave these short.
        assert_eq!(counts.get(0), THREADS * ADDS);
        assert_eq!(counts.get(1), 2 * THREADS * ADDS);
    }
}

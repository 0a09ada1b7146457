//! The subscriber table: which subscribers each topic has, and the broker's half of a
//! subscriber.
//!
//! Each topic maps to an immutable, reference-counted [`Route`]: its subscribers and its
//! counters. Subscribing or unsubscribing builds a new route (copy-on-write) under the
//! registry's write lock; a publish clones the `Arc` of the current route under the read lock
//! and releases the lock before it sends anything. So a publish never holds a lock while it
//! waits, and a concurrent subscribe or unsubscribe never sees a half-updated list: it lands
//! entirely before or after.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use parking_lot::RwLock;

use crate::config::{Overflow, SubscriberConfig};
use crate::stats::Counters;

/// The subscribers of one topic at one moment, with the topic's counters.
pub(crate) struct Route<T> {
    /// Subscribers in subscription order. Never empty: a topic without subscribers has no
    /// route.
    pub(crate) subscribers: Box<[Arc<Subscriber<T>>]>,
    /// Shared by every route of the topic since its first subscriber, so they survive
    /// copy-on-write.
    pub(crate) counters: Arc<Counters>,
}

/// The broker's half of one subscription: where to send, and how.
pub(crate) struct Subscriber<T> {
    /// Unique per broker; identifies the subscriber when it leaves.
    pub(crate) id: u64,
    /// The registry key this subscriber is filed under (its topic).
    pub(crate) key: Arc<str>,
    /// The sending side of the subscriber's bounded queue. Held only by the registry and by
    /// the snapshots of in-flight publishes, so once a subscriber is removed and those
    /// publishes finish, the receiver sees the queue disconnect.
    pub(crate) sender: Sender<T>,
    /// A second receiving side of the queue, through which the broker discards the oldest
    /// message. Only with [`Overflow::DropOldest`] on a queue with capacity.
    oldest: Option<Receiver<T>>,
    /// What to do when the queue is full.
    pub(crate) overflow: Overflow,
    /// Consecutive misses after which the subscriber is evicted.
    evict_after: Option<NonZeroU32>,
    /// State shared with the [`Subscription`](crate::Subscription).
    pub(crate) state: Arc<SubscriberState>,
}

/// Where a subscriber is in its life. Stored in [`SubscriberState::lifecycle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lifecycle {
    /// Publishes may put messages in the queue.
    Subscribed,
    /// The subscription left (dropped or `unsubscribe`).
    Unsubscribed,
    /// The broker removed the subscriber for missing too many messages.
    Evicted,
}

/// State shared by a subscriber's two halves.
#[derive(Debug)]
pub(crate) struct SubscriberState {
    /// The gate every message passes through.
    ///
    /// | value | queue |
    /// |---|---|
    /// | `Subscribed` | open: publishes may add (and, for `DropOldest`, discard) messages |
    /// | `Unsubscribed`, `Evicted` | shut for good: no message enters or is discarded again |
    ///
    /// Every send into the queue (and every discard of its oldest message) happens while
    /// holding the read lock and seeing `Subscribed`; leaving takes the write lock to change
    /// it. Once the write lock has been taken, no send is in progress and none can start, so
    /// what the subscription drains afterwards is everything that was ever counted as
    /// delivered and not discarded. Only non-blocking operations run under the read lock, so
    /// the writer waits at most for a few of them.
    lifecycle: RwLock<Lifecycle>,
    /// Messages this subscriber missed: not delivered, or discarded by `DropOldest`. Only
    /// ever incremented; `Relaxed` because it is a statistic that orders nothing else.
    dropped: AtomicU64,
    /// Misses since the last loss-free delivery. Only used with `evict_after`. `Relaxed`: a
    /// count; the eviction it triggers is decided by exactly one `fetch_add` reaching the
    /// threshold and synchronised by the `lifecycle` lock.
    consecutive_misses: AtomicU32,
    /// Messages taken out through the subscription's receive methods. Written only by the
    /// receiving side; `Relaxed`, a statistic.
    pub(crate) received: AtomicU64,
}

impl SubscriberState {
    pub(crate) fn new() -> Self {
        SubscriberState {
            lifecycle: RwLock::new(Lifecycle::Subscribed),
            dropped: AtomicU64::new(0),
            consecutive_misses: AtomicU32::new(0),
            received: AtomicU64::new(0),
        }
    }

    /// Shuts the gate for good with reason `to`, waiting out any send in progress. Returns
    /// `false` if it was already shut (the first reason stays).
    pub(crate) fn shut(&self, to: Lifecycle) -> bool {
        let mut lifecycle = self.lifecycle.write();
        if *lifecycle != Lifecycle::Subscribed {
            return false;
        }
        *lifecycle = to;
        true
    }

    pub(crate) fn lifecycle(&self) -> Lifecycle {
        *self.lifecycle.read()
    }

    /// The number of messages this subscriber missed.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The result of offering a message to a subscriber without waiting.
pub(crate) enum Attempt<T> {
    /// The message is in the subscriber's queue.
    Delivered,
    /// The queue is full; here is the message back.
    Full(T),
    /// The subscriber has left; the message was discarded.
    Gone,
}

/// How many times `DropOldest` discards and retries before giving up on one message. Each
/// retry follows a discard, so it only fails again if other publishers refill the queue in
/// between; giving up then (and counting the message) keeps a publish from spinning.
const DISPLACE_ATTEMPTS: usize = 4;

impl<T> Subscriber<T> {
    pub(crate) fn new(
        id: u64,
        key: Arc<str>,
        config: SubscriberConfig,
        state: Arc<SubscriberState>,
    ) -> (Self, Receiver<T>) {
        let (sender, receiver) = crossbeam_channel::bounded(config.capacity);
        let oldest = (config.overflow == Overflow::DropOldest && config.capacity > 0)
            .then(|| receiver.clone());
        let subscriber = Subscriber {
            id,
            key,
            sender,
            oldest,
            overflow: config.overflow,
            evict_after: config.evict_after,
            state,
        };
        (subscriber, receiver)
    }

    /// Offers `msg` to the subscriber's queue without waiting.
    pub(crate) fn try_deliver(&self, msg: T) -> Attempt<T> {
        let sent = {
            // Hold the read side of the gate across `try_send`: see `lifecycle`.
            let lifecycle = self.state.lifecycle.read();
            if *lifecycle == Lifecycle::Subscribed {
                self.sender.try_send(msg)
            } else {
                Err(TrySendError::Disconnected(msg))
            }
        };
        // The guard is released: a refused message is dropped below, so the user's `Drop`
        // never runs under our lock.
        match sent {
            Ok(()) => Attempt::Delivered,
            Err(TrySendError::Full(msg)) => Attempt::Full(msg),
            Err(TrySendError::Disconnected(_)) => Attempt::Gone,
        }
    }

    /// `DropOldest` on a full queue: discards the oldest queued message and retries, a few
    /// times at most. Returns the attempt and how many messages were discarded.
    ///
    /// Racing a receiving subscriber is safe: `try_recv` hands each queued message to exactly
    /// one of us, so a message is either received or discarded (and counted), never both.
    pub(crate) fn displace_oldest(&self, mut msg: T) -> (Attempt<T>, usize) {
        let Some(oldest) = &self.oldest else {
            return (Attempt::Full(msg), 0);
        };
        let mut displaced = 0;
        for _ in 0..DISPLACE_ATTEMPTS {
            let (discarded, sent) = {
                let lifecycle = self.state.lifecycle.read();
                if *lifecycle != Lifecycle::Subscribed {
                    return (Attempt::Gone, displaced);
                }
                let discarded = oldest.try_recv().ok();
                (discarded, self.sender.try_send(msg))
            };
            // Outside the guard: the discarded message's `Drop` is user code.
            if discarded.is_some() {
                displaced += 1;
                self.state.dropped.fetch_add(1, Ordering::Relaxed);
            }
            match sent {
                Ok(()) => return (Attempt::Delivered, displaced),
                Err(TrySendError::Full(back)) => msg = back,
                Err(TrySendError::Disconnected(_)) => return (Attempt::Gone, displaced),
            }
        }
        (Attempt::Full(msg), displaced)
    }

    /// Records that a message meant for this subscriber was not delivered. Returns `true` if
    /// this miss reaches the eviction threshold; exactly one miss does.
    pub(crate) fn record_drop(&self) -> bool {
        self.state.dropped.fetch_add(1, Ordering::Relaxed);
        self.record_miss()
    }

    /// Counts a miss towards eviction (a drop, or a `DropOldest` discard). Returns `true` for
    /// the one miss that reaches the threshold.
    pub(crate) fn record_miss(&self) -> bool {
        match self.evict_after {
            None => false,
            Some(limit) => {
                self.state
                    .consecutive_misses
                    .fetch_add(1, Ordering::Relaxed)
                    + 1
                    == limit.get()
            }
        }
    }

    /// Records a loss-free delivery: the run of misses is broken.
    pub(crate) fn record_delivery(&self) {
        // Read first: a store on every delivery would bounce the cache line between
        // publishers for nothing, since the count is almost always already 0.
        if self.evict_after.is_some() && self.state.consecutive_misses.load(Ordering::Relaxed) != 0
        {
            self.state.consecutive_misses.store(0, Ordering::Relaxed);
        }
    }

    /// Shuts the subscriber for missing too many messages. Returns `true` if this call evicted
    /// it (it had not left already).
    pub(crate) fn evict(&self) -> bool {
        self.state.shut(Lifecycle::Evicted)
    }
}

/// The topic table. Lives behind `Shared::registry`, an `RwLock`.
pub(crate) struct Registry<T> {
    /// Routes by topic. A topic with no subscriber has no entry.
    topics: HashMap<Arc<str>, Arc<Route<T>>>,
    /// Total number of subscribers over all topics.
    subscribers: usize,
    /// Set once by `close`; never cleared. Checked under the same lock as the table, so a
    /// subscribe either lands before the close (and is then disconnected by it) or fails.
    pub(crate) closed: bool,
}

impl<T> Registry<T> {
    pub(crate) fn new() -> Self {
        Registry {
            topics: HashMap::new(),
            subscribers: 0,
            closed: false,
        }
    }

    /// The current route of `topic`, if it has subscribers.
    pub(crate) fn get(&self, topic: &str) -> Option<&Arc<Route<T>>> {
        self.topics.get(topic)
    }

    pub(crate) fn topic_count(&self) -> usize {
        self.topics.len()
    }

    pub(crate) fn subscriber_count(&self) -> usize {
        self.subscribers
    }

    /// Adds a subscriber under its key, replacing the topic's route with a longer copy.
    pub(crate) fn insert(&mut self, subscriber: Arc<Subscriber<T>>) {
        let key = subscriber.key.clone();
        let route = match self.topics.get(&key) {
            Some(old) => Route {
                subscribers: old
                    .subscribers
                    .iter()
                    .cloned()
                    .chain(Some(subscriber))
                    .collect(),
                counters: old.counters.clone(),
            },
            None => Route {
                subscribers: Box::new([subscriber]),
                counters: Arc::default(),
            },
        };
        self.topics.insert(key, Arc::new(route));
        self.subscribers += 1;
    }

    /// Removes subscriber `id` from `topic`. Returns the topic's previous route if the
    /// subscriber was in it, so the caller can drop it after releasing the lock.
    pub(crate) fn remove(&mut self, topic: &str, id: u64) -> Option<Arc<Route<T>>> {
        let route = self.topics.get_mut(topic)?;
        if !route.subscribers.iter().any(|s| s.id == id) {
            return None;
        }
        self.subscribers -= 1;
        if route.subscribers.len() == 1 {
            return self.topics.remove(topic);
        }
        let shorter = Route {
            subscribers: route
                .subscribers
                .iter()
                .filter(|s| s.id != id)
                .cloned()
                .collect(),
            counters: route.counters.clone(),
        };
        Some(std::mem::replace(route, Arc::new(shorter)))
    }

    /// Empties the table, handing its routes to the caller so they can be dropped outside the
    /// lock (dropping a route may drop the last sender of a queue and wake its receiver).
    pub(crate) fn take_all(&mut self) -> HashMap<Arc<str>, Arc<Route<T>>> {
        self.subscribers = 0;
        std::mem::take(&mut self.topics)
    }
}

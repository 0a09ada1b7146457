//! The subscriber table: which subscribers each topic has, and the broker's half of a
//! subscriber.
//!
//! Each topic maps to an immutable, reference-counted list of subscribers. Subscribing or
//! unsubscribing builds a new list (copy-on-write) under the registry's write lock; a publish
//! clones the `Arc` of the current list under the read lock and releases the lock before it
//! sends anything. So a publish never holds a lock while it waits, and a concurrent subscribe
//! or unsubscribe never sees a half-updated list: it lands entirely before or after.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_channel::{Sender, TrySendError};
use parking_lot::RwLock;

use crate::config::Overflow;

/// An immutable snapshot of one topic's subscribers, in subscription order.
pub(crate) type SubscriberList<T> = Arc<[Arc<Subscriber<T>>]>;

/// The broker's half of one subscription: where to send, and how.
pub(crate) struct Subscriber<T> {
    /// Unique per broker; identifies the subscriber when it leaves.
    pub(crate) id: u64,
    /// The sending side of the subscriber's bounded queue. Held only by the registry and by
    /// the snapshots of in-flight publishes, so once a subscriber is removed and those
    /// publishes finish, the receiver sees the queue disconnect.
    pub(crate) sender: Sender<T>,
    /// What to do when the queue is full.
    pub(crate) overflow: Overflow,
    /// State shared with the [`Subscription`](crate::Subscription).
    pub(crate) state: Arc<SubscriberState>,
}

/// State shared by a subscriber's two halves.
#[derive(Debug)]
pub(crate) struct SubscriberState {
    /// Whether the subscription still accepts messages.
    ///
    /// | value | meaning |
    /// |---|---|
    /// | `true` | subscribed: publishes may put messages in the queue |
    /// | `false` | unsubscribed: no message will enter the queue again |
    ///
    /// Every send into the queue happens while holding the read lock and seeing `true`; the
    /// subscription takes the write lock to set `false`. Once the write lock has been taken, no
    /// send is in progress and none can start, so what the subscription drains afterwards is
    /// everything that was ever counted as delivered. Sends never block while holding the read
    /// lock (only `try_send` runs under it), so the writer waits at most for a few of them.
    open: RwLock<bool>,
    /// Messages meant for this subscriber that were not delivered. Only ever incremented;
    /// `Relaxed` because it is a statistic that orders nothing else.
    dropped: AtomicU64,
}

impl SubscriberState {
    pub(crate) fn new() -> Self {
        SubscriberState {
            open: RwLock::new(true),
            dropped: AtomicU64::new(0),
        }
    }

    /// Closes the subscriber to new messages, waiting out any send in progress.
    pub(crate) fn shut(&self) {
        *self.open.write() = false;
    }

    /// The number of messages meant for this subscriber that were not delivered.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub(crate) fn record_drop(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
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

impl<T> Subscriber<T> {
    /// Offers `msg` to the subscriber's queue without waiting.
    pub(crate) fn try_deliver(&self, msg: T) -> Attempt<T> {
        let sent = {
            // Hold the read side of `open` across `try_send`: see `SubscriberState::open`.
            let open = self.state.open.read();
            if *open {
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
}

/// The topic table. Lives behind `Shared::registry`, an `RwLock`.
pub(crate) struct Registry<T> {
    /// Subscribers by topic. A topic with no subscriber has no entry.
    topics: HashMap<Box<str>, SubscriberList<T>>,
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

    /// The current subscribers of `topic`, if any.
    pub(crate) fn get(&self, topic: &str) -> Option<&SubscriberList<T>> {
        self.topics.get(topic)
    }

    pub(crate) fn topic_count(&self) -> usize {
        self.topics.len()
    }

    pub(crate) fn subscriber_count(&self) -> usize {
        self.subscribers
    }

    /// Adds a subscriber to `topic`, replacing the topic's list with a longer copy.
    pub(crate) fn insert(&mut self, topic: &str, subscriber: Arc<Subscriber<T>>) {
        let list = match self.topics.get(topic) {
            Some(old) => old.iter().cloned().chain(Some(subscriber)).collect(),
            None => Arc::from([subscriber]),
        };
        self.topics.insert(topic.into(), list);
        self.subscribers += 1;
    }

    /// Removes subscriber `id` from `topic`. Returns the topic's previous list if the
    /// subscriber was in it, so the caller can drop it after releasing the lock.
    pub(crate) fn remove(&mut self, topic: &str, id: u64) -> Option<SubscriberList<T>> {
        let list = self.topics.get_mut(topic)?;
        if !list.iter().any(|s| s.id == id) {
            return None;
        }
        self.subscribers -= 1;
        if list.len() == 1 {
            return self.topics.remove(topic);
        }
        let shorter = list.iter().filter(|s| s.id != id).cloned().collect();
        Some(std::mem::replace(list, shorter))
    }

    /// Empties the table, handing its lists to the caller so they can be dropped outside the
    /// lock (dropping a list may drop the last sender of a queue and wake its receiver).
    pub(crate) fn take_all(&mut self) -> HashMap<Box<str>, SubscriberList<T>> {
        self.subscribers = 0;
        std::mem::take(&mut self.topics)
    }
}

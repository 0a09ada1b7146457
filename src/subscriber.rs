//! The broker's half of a subscriber: its queue's sending side, its policy, and the state it
//! shares with the [`Subscription`](crate::Subscription) (lifecycle and counters).

use std::num::{NonZeroU32, NonZeroU64};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

use crossbeam_channel::{Receiver, Select, Sender, TrySendError};

use crate::config::{Overflow, SubscriberConfig};
use crate::delivery::PublishedTopic;
use crate::grace::{self, Section};
use crate::stats::Counters;

/// A publisher identity that a subscriber can carry, so that it does not receive what that
/// publisher publishes. Used by bridges to other brokers, so that a message they import is
/// never exported again. Plain subscriptions and publishes have none.
pub(crate) type Origin = NonZeroU64;

/// The broker's half of one subscription: where to send, and how.
pub(crate) struct Subscriber<T> {
    /// Unique per broker; identifies the subscriber when it leaves.
    pub(crate) id: u64,
    /// The registry key this subscriber is filed under: the topic or pattern it subscribed
    /// to.
    pub(crate) key: Arc<str>,
    /// The counters of `key`, shared by every subscriber filed under it.
    pub(crate) counters: Arc<Counters>,
    /// The subscriber's bounded queue, sending side. Held only by the registry and by the
    /// snapshots of in-flight publishes, so once a subscriber is removed and those publishes
    /// finish, the receiver sees the queue disconnect.
    queue: Queue<T>,
    /// What to do when the queue is full.
    pub(crate) overflow: Overflow,
    /// Consecutive misses after which the subscriber is evicted.
    evict_after: Option<NonZeroU32>,
    /// Publishes from this origin skip this subscriber.
    pub(crate) origin: Option<Origin>,
    /// State shared with the [`Subscription`](crate::Subscription).
    state: Arc<SubscriberState>,
}

/// A message with the topic it was published to: what a [`Tap`](crate::subscription::Tap)
/// (a bridge's export queue) receives.
pub(crate) type Tagged<T> = (Arc<str>, T);

/// The broker's side of a subscriber's bounded queue: where a publish sends, and (only with
/// [`Overflow::DropOldest`] on a queue with capacity) a second receiving side through which it
/// discards the oldest message.
pub(crate) enum Queue<T> {
    /// A [`Subscription`](crate::Subscription)'s queue: the message alone.
    Plain {
        sender: Sender<T>,
        oldest: Option<Receiver<T>>,
    },
    /// A [`Tap`](crate::subscription::Tap)'s queue: each message with its topic, which a
    /// bridge needs to publish it elsewhere under the same subject. The topic's shared string
    /// is made once per publish that reaches such a queue (see [`PublishedTopic`]).
    #[cfg_attr(
        not(feature = "nats"),
        allow(dead_code, reason = "only bridges (the `nats` feature) make taps")
    )]
    Tagged {
        sender: Sender<Tagged<T>>,
        oldest: Option<Receiver<Tagged<T>>>,
        /// The patterns of the same bridge's earlier export queues: a topic one of them
        /// matches is exported by that queue, so this one does not take it. Fixed for the
        /// queue's life; read when a topic's route is resolved, not on every publish (see
        /// `registry.rs`).
        yields_to: Box<[String]>,
    },
}

impl<T> Queue<T> {
    /// A new queue for a subscription, and its receiving side.
    pub(crate) fn plain(config: SubscriberConfig) -> (Self, Receiver<T>) {
        let (sender, receiver) = crossbeam_channel::bounded(config.capacity);
        let oldest = discards(config).then(|| receiver.clone());
        (Queue::Plain { sender, oldest }, receiver)
    }

    /// A new queue for a tap, and its receiving side.
    #[cfg_attr(
        not(feature = "nats"),
        allow(dead_code, reason = "only bridges (the `nats` feature) make taps")
    )]
    pub(crate) fn tagged(
        config: SubscriberConfig,
        yields_to: Box<[String]>,
    ) -> (Self, Receiver<Tagged<T>>) {
        let (sender, receiver) = crossbeam_channel::bounded(config.capacity);
        let oldest = discards(config).then(|| receiver.clone());
        let queue = Queue::Tagged {
            sender,
            oldest,
            yields_to,
        };
        (queue, receiver)
    }

    /// `try_send`, tagging the message with `topic` if this is a tap's queue.
    fn try_send(&self, msg: T, topic: &PublishedTopic<'_>) -> Result<(), TrySendError<T>> {
        match self {
            Queue::Plain { sender, .. } => sender.try_send(msg),
            Queue::Tagged { sender, .. } => {
                sender
                    .try_send((topic.shared(), msg))
                    .map_err(|err| match err {
                        TrySendError::Full((_, msg)) => TrySendError::Full(msg),
                        TrySendError::Disconnected((_, msg)) => TrySendError::Disconnected(msg),
                    })
            }
        }
    }

    /// Takes the oldest queued message out, if this queue discards (`DropOldest`) and has one.
    /// A tap's topic is dropped here; the message goes back to the caller to drop.
    fn take_oldest(&self) -> Option<T> {
        match self {
            Queue::Plain { oldest, .. } => oldest.as_ref()?.try_recv().ok(),
            Queue::Tagged { oldest, .. } => oldest.as_ref()?.try_recv().ok().map(|(_, msg)| msg),
        }
    }

    /// Whether a discarding receiver exists (`DropOldest` on a queue with capacity).
    fn discards(&self) -> bool {
        match self {
            Queue::Plain { oldest, .. } => oldest.is_some(),
            Queue::Tagged { oldest, .. } => oldest.is_some(),
        }
    }

    /// Adds a send on this queue to `select`. Returns its index.
    fn register<'a>(&'a self, select: &mut Select<'a>) -> usize {
        match self {
            Queue::Plain { sender, .. } => select.send(sender),
            Queue::Tagged { sender, .. } => select.send(sender),
        }
    }
}

/// Whether a queue with these settings gets a discarding receiver.
fn discards(config: SubscriberConfig) -> bool {
    config.overflow == Overflow::DropOldest && config.capacity > 0
}

/// Where a subscriber is in its life. Stored in [`SubscriberState::lifecycle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Lifecycle {
    /// Publishes may put messages in the queue.
    Subscribed,
    /// The subscription left (dropped or `unsubscribe`).
    Unsubscribed,
    /// The broker removed the subscriber for missing too many messages.
    Evicted,
}

impl Lifecycle {
    fn from_u8(value: u8) -> Lifecycle {
        match value {
            0 => Lifecycle::Subscribed,
            1 => Lifecycle::Unsubscribed,
            _ => Lifecycle::Evicted,
        }
    }
}

/// State shared by a subscriber's two halves.
#[derive(Debug)]
pub(crate) struct SubscriberState {
    /// Whether publishes may still send into the queue: a [`Lifecycle`] as `u8`.
    ///
    /// | value | queue |
    /// |---|---|
    /// | `Subscribed` | open: publishes may add (and, for `DropOldest`, discard) messages |
    /// | `Unsubscribed`, `Evicted` | shut for good: no message enters or is discarded again |
    ///
    /// Every send into the queue (and every discard of its oldest message) happens inside a
    /// grace [`Section`] after loading `Subscribed` here. Leaving stores `Unsubscribed` and then
    /// waits out the sections in progress ([`grace::wait_for_sections`]); after that no send
    /// is in progress and none can start, so what the subscription drains is everything that
    /// was ever counted as delivered and not discarded. `SeqCst` throughout: the grace
    /// protocol's proof needs these loads and stores in one total order with its counters.
    /// Written only when the subscriber leaves (though its cache line is shared with `dropped`,
    /// which publishers write on every miss).
    lifecycle: AtomicU8,
    /// Messages this subscriber missed: not delivered, or discarded by `DropOldest`. Only
    /// ever incremented; `Relaxed` because it is a statistic that orders nothing else.
    dropped: AtomicU64,
    /// Misses since the last loss-free delivery. Only used with `evict_after`. `Relaxed`: a
    /// count. A `fetch_add` that reaches the threshold asks for an eviction; as the subscriber
    /// is only shut when that publish returns, a delivery in between may reset the count and a
    /// later miss ask again. The registry removal and the one `lifecycle` transition decide.
    consecutive_misses: AtomicU32,
}

impl SubscriberState {
    pub(crate) fn new() -> Self {
        SubscriberState {
            lifecycle: AtomicU8::new(Lifecycle::Subscribed as u8),
            dropped: AtomicU64::new(0),
            consecutive_misses: AtomicU32::new(0),
        }
    }

    /// Marks the queue shut for good (`lifecycle`) with reason `to`. Returns `false` if it was
    /// already shut (the first reason stays). Sends in progress may still land:
    /// [`leave`](Self::leave) waits them out.
    fn shut(&self, to: Lifecycle) -> bool {
        self.lifecycle
            .compare_exchange(
                Lifecycle::Subscribed as u8,
                to as u8,
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .is_ok()
    }

    /// The subscription leaves: marks the queue shut (unless eviction did), then waits until
    /// no send can still be on its way into the queue. Afterwards the queue's content is final.
    pub(crate) fn leave(&self) {
        self.shut(Lifecycle::Unsubscribed);
        grace::wait_for_sections();
    }

    /// Shuts the queue for missing too many messages. Returns `true` if this call evicted it
    /// (it had not left already).
    pub(crate) fn evict(&self) -> bool {
        self.shut(Lifecycle::Evicted)
    }

    pub(crate) fn lifecycle(&self) -> Lifecycle {
        Lifecycle::from_u8(self.lifecycle.load(Ordering::SeqCst))
    }

    /// Whether publishes may still send into the queue.
    fn is_subscribed(&self) -> bool {
        self.lifecycle.load(Ordering::SeqCst) == Lifecycle::Subscribed as u8
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
    /// The subscriber has left; here is the message back (to drop, or to offer to another
    /// member of a group).
    Gone(T),
}

/// How many times `DropOldest` discards and retries before giving up on one message. Each
/// retry follows a discard, so it only fails again if other publishers refill the queue in
/// between; giving up then (and counting the message) keeps a publish from spinning.
const DISPLACE_ATTEMPTS: usize = 4;

impl<T> Subscriber<T> {
    /// The broker's half of a new subscriber with `queue`, filed under `key` whose counters
    /// are `counters`.
    pub(crate) fn new(
        id: u64,
        key: Arc<str>,
        counters: Arc<Counters>,
        config: SubscriberConfig,
        state: Arc<SubscriberState>,
        queue: Queue<T>,
        origin: Option<Origin>,
    ) -> Self {
        Subscriber {
            id,
            key,
            counters,
            queue,
            overflow: config.overflow,
            evict_after: config.evict_after,
            origin,
            state,
        }
    }

    /// Whether this is a bridge's export queue that leaves `topic` to an earlier export
    /// queue of the same bridge (see [`Queue::Tagged`]). Depends on nothing but the two, so
    /// the registry decides it once per resolved route, and a publish never asks.
    pub(crate) fn yields(&self, topic: &str) -> bool {
        match &self.queue {
            Queue::Plain { .. } => false,
            Queue::Tagged { yields_to, .. } => yields_to
                .iter()
                .any(|pattern| crate::topic::pattern_matches(pattern, topic)),
        }
    }

    /// Whether this is a bridge's export queue that leaves some topics to an earlier export
    /// queue of the same bridge: whether [`yields`](Self::yields) can ever say `true`.
    pub(crate) fn may_yield(&self) -> bool {
        match &self.queue {
            Queue::Plain { .. } => false,
            Queue::Tagged { yields_to, .. } => !yields_to.is_empty(),
        }
    }

    /// Adds a send on the subscriber's queue to `select`, to wait for room (phase 2 of
    /// delivery). Returns its index in `select`.
    pub(crate) fn register_send<'a>(&'a self, select: &mut Select<'a>) -> usize {
        self.queue.register(select)
    }

    /// Offers `msg`, published to `topic`, to the subscriber's queue without waiting. The
    /// `section` spans the check and the send: see [`SubscriberState::lifecycle`].
    pub(crate) fn try_deliver(
        &self,
        msg: T,
        topic: &PublishedTopic<'_>,
        _section: &Section,
    ) -> Attempt<T> {
        let sent = if self.state.is_subscribed() {
            self.queue.try_send(msg, topic)
        } else {
            Err(TrySendError::Disconnected(msg))
        };
        match sent {
            Ok(()) => Attempt::Delivered,
            Err(TrySendError::Full(msg)) => Attempt::Full(msg),
            Err(TrySendError::Disconnected(msg)) => Attempt::Gone(msg),
        }
    }

    /// `DropOldest` on a full queue: discards the oldest queued message and retries, a few
    /// times at most. Returns the attempt and how many messages were discarded.
    ///
    /// Racing a receiving subscriber is safe: `try_recv` hands each queued message to exactly
    /// one of us, so a message is either received or discarded (and counted), never both.
    pub(crate) fn displace_oldest(
        &self,
        mut msg: T,
        topic: &PublishedTopic<'_>,
        _section: &Section,
    ) -> (Attempt<T>, usize) {
        if !self.queue.discards() {
            return (Attempt::Full(msg), 0);
        }
        let mut displaced = 0;
        for _ in 0..DISPLACE_ATTEMPTS {
            if !self.state.is_subscribed() {
                return (Attempt::Gone(msg), displaced);
            }
            let discarded = self.queue.take_oldest();
            let sent = self.queue.try_send(msg, topic);
            if discarded.is_some() {
                displaced += 1;
                self.state.dropped.fetch_add(1, Ordering::Relaxed);
            }
            match sent {
                Ok(()) => return (Attempt::Delivered, displaced),
                Err(TrySendError::Full(back)) => msg = back,
                Err(TrySendError::Disconnected(msg)) => return (Attempt::Gone(msg), displaced),
            }
        }
        (Attempt::Full(msg), displaced)
    }

    /// Records that a message meant for this subscriber was not delivered. Returns `true` if
    /// this miss reaches the eviction threshold (see `SubscriberState::consecutive_misses`).
    pub(crate) fn record_drop(&self) -> bool {
        self.state.dropped.fetch_add(1, Ordering::Relaxed);
        self.record_miss()
    }

    /// Counts a miss towards eviction (a drop, or a `DropOldest` discard). Returns `true` for
    /// a miss that reaches the threshold.
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

    /// State shared with the [`Subscription`](crate::Subscription), for the publisher to
    /// evict the subscriber once the registry let it go.
    pub(crate) fn state(&self) -> &Arc<SubscriberState> {
        &self.state
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn leaving_waits_for_a_send_section_in_progress() {
        let state = Arc::new(SubscriberState::new());
        let ended = grace::wait_during_section({
            let state = state.clone();
            move || state.leave()
        });
        assert!(
            ended,
            "leave returned while a section that may send was in progress"
        );
        assert_eq!(state.lifecycle(), Lifecycle::Unsubscribed);
    }

    #[test]
    fn eviction_is_not_undone_by_leaving() {
        let state = SubscriberState::new();
        assert!(state.shut(Lifecycle::Evicted));
        assert!(!state.shut(Lifecycle::Unsubscribed));
        state.leave();
        assert_eq!(state.lifecycle(), Lifecycle::Evicted);
    }
}

//! The receiving side: [`Subscription`] and its iterators.

use std::fmt;
use std::iter::FusedIterator;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use crate::broker::Shared;
use crate::error::{RecvError, RecvTimeoutError, TryRecvError};
use crate::stats::{OwnedCounts, SubscriptionStats};
use crate::subscriber::{Lifecycle, SubscriberState, Tagged};

/// A subscription to one topic or pattern: a bounded queue the broker fills with the messages
/// published to matching topics (or, for a queue group member, with its share of them).
///
/// Dropping a `Subscription` unsubscribes it at once: no later publish waits on it or counts
/// it. [`unsubscribe`](Subscription::unsubscribe) does the same and hands back what was still
/// queued. Leaving waits, briefly, for the publishes on other threads that are putting a
/// message into queues at that moment (never for one that waits on a full queue), so that
/// nothing they count as delivered arrives after the queue was drained.
///
/// One caveat for messages whose `Clone` or `Drop` does unusual things: those run while a
/// publish is putting copies into queues. If one of them drops a `Subscription`, that drop
/// does not wait for this publish (it cannot), and if another subscription is leaving at the
/// same instant, it does not wait for other publishes either, so a message could be counted as
/// delivered to it after its queue was drained. And a `Clone` or `Drop` must not block on a
/// thread that is dropping a `Subscription`: that thread waits for the publish, a deadlock.
///
/// When the broker closes, the subscription still yields every message already queued; then
/// every receive fails with [`RecvError::Closed`], so no thread is left blocked.
///
/// # Examples
///
/// ```
/// use std::thread;
/// use syncmq::Broker;
///
/// let broker = Broker::new();
/// let sub = broker.subscribe("numbers")?;
///
/// let consumer = thread::spawn(move || sub.iter().sum::<u64>());
/// for n in 1..=10 {
///     broker.publish("numbers", n)?;
/// }
/// broker.close(); // ends the consumer's `iter` after it drained the queue
/// assert_eq!(consumer.join().unwrap(), 55);
/// # Ok::<(), syncmq::Error>(())
/// ```
#[must_use = "dropping a Subscription unsubscribes it"]
pub struct Subscription<T> {
    /// Its place in the broker. Declared before `receiver`, so that dropping a subscription
    /// leaves the broker before the queue's receiving side goes away.
    membership: Membership<T>,
    /// The queue group this subscription is a member of, if any.
    group: Option<Arc<str>>,
    /// The receiving side of the subscriber's queue.
    receiver: Receiver<T>,
    /// The value of `state.dropped` when [`take_missed`](Subscription::take_missed) last ran.
    /// Only the subscription touches it; atomic so that `Subscription` stays `Sync`.
    missed_seen: AtomicU64,
    /// Messages taken out through the receive methods. Owned counts: in the usual case of
    /// one receiving thread, no atomic read-modify-write per message (a `fetch_add` per
    /// receive cost about 5 ns, a quarter of a receive).
    received: OwnedCounts<1>,
}

/// A subscriber's place in the broker: who it is, and how to leave. Dropping it leaves.
/// Shared by [`Subscription`] and the bridges' taps.
pub(crate) struct Membership<T> {
    /// The broker, to unsubscribe from and to learn whether it closed.
    shared: Arc<Shared<T>>,
    /// The topic or pattern subscribed to; also the registry key.
    key: Arc<str>,
    /// The subscriber's id in the registry.
    id: u64,
    /// State shared with the broker's half of the subscriber.
    state: Arc<SubscriberState>,
}

impl<T> Membership<T> {
    pub(crate) fn new(
        shared: Arc<Shared<T>>,
        key: Arc<str>,
        id: u64,
        state: Arc<SubscriberState>,
    ) -> Self {
        Membership {
            shared,
            key,
            id,
            state,
        }
    }

    /// Removes the subscriber from the broker and closes its queue to new messages.
    /// Runs once, from `Drop` (`unsubscribe` drops the membership too).
    fn leave(&self) {
        // Remove from the registry first, so no new publish routes to us; then mark the queue
        // shut (`SubscriberState::lifecycle`), which makes later sends count as dropped, and
        // wait out the grace sections in progress (src/grace.rs).
        self.shared.unsubscribe(&self.key, self.id);
        self.state.leave();
    }
}

impl<T> Drop for Membership<T> {
    fn drop(&mut self) {
        self.leave();
    }
}

impl<T> Subscription<T> {
    pub(crate) fn new(
        membership: Membership<T>,
        group: Option<Arc<str>>,
        receiver: Receiver<T>,
    ) -> Self {
        Subscription {
            membership,
            group,
            receiver,
            missed_seen: AtomicU64::new(0),
            received: OwnedCounts::default(),
        }
    }

    /// State shared with the broker's half of the subscriber.
    fn state(&self) -> &SubscriberState {
        &self.membership.state
    }

    /// Counts a message taken out by a receive method.
    fn counted(&self, msg: T) -> T {
        self.received.add([1]);
        msg
    }

    /// Blocks until a message arrives or the subscription ends.
    ///
    /// # Errors
    ///
    /// Once the subscription has ended and its queue is empty: [`RecvError::Closed`] if the
    /// broker closed, [`RecvError::Evicted`] if it evicted this subscriber.
    pub fn recv(&self) -> Result<T, RecvError> {
        match self.receiver.recv() {
            Ok(msg) => Ok(self.counted(msg)),
            Err(_) => Err(self.end_reason()),
        }
    }

    /// Returns a queued message, if any, without blocking.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`] if the queue is empty; [`TryRecvError::Closed`] or
    /// [`TryRecvError::Evicted`] if it is empty and the subscription has ended.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncmq::{Broker, TryRecvError};
    ///
    /// let broker = Broker::new();
    /// let sub = broker.subscribe("t")?;
    /// assert_eq!(sub.try_recv(), Err(TryRecvError::Empty));
    /// broker.publish("t", 'x')?;
    /// assert_eq!(sub.try_recv(), Ok('x'));
    /// # Ok::<(), syncmq::Error>(())
    /// ```
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        match self.receiver.try_recv() {
            Ok(msg) => Ok(self.counted(msg)),
            Err(crossbeam_channel::TryRecvError::Empty) => Err(TryRecvError::Empty),
            Err(crossbeam_channel::TryRecvError::Disconnected) => Err(self.end_reason().into()),
        }
    }

    /// Waits at most `timeout` for a message.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Timeout`] if none arrived in time; [`RecvTimeoutError::Closed`] or
    /// [`RecvTimeoutError::Evicted`] if the queue is empty and the subscription has ended.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use syncmq::{Broker, RecvTimeoutError};
    ///
    /// let broker = Broker::<u8>::new();
    /// let sub = broker.subscribe("quiet")?;
    /// let waited = sub.recv_timeout(Duration::from_millis(10));
    /// assert_eq!(waited, Err(RecvTimeoutError::Timeout));
    /// # Ok::<(), syncmq::Error>(())
    /// ```
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.recv_deadline_inner(Instant::now().checked_add(timeout))
    }

    /// Waits until `deadline` at most for a message.
    ///
    /// # Errors
    ///
    /// As [`recv_timeout`](Self::recv_timeout).
    pub fn recv_deadline(&self, deadline: Instant) -> Result<T, RecvTimeoutError> {
        self.recv_deadline_inner(Some(deadline))
    }

    /// `None` waits without a deadline (a timeout too large to add to now).
    fn recv_deadline_inner(&self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        let result = match deadline {
            Some(deadline) => self.receiver.recv_deadline(deadline),
            None => self
                .receiver
                .recv()
                .map_err(|_| crossbeam_channel::RecvTimeoutError::Disconnected),
        };
        match result {
            Ok(msg) => Ok(self.counted(msg)),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => Err(RecvTimeoutError::Timeout),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(self.end_reason().into()),
        }
    }

    /// A blocking iterator over messages; it ends when the subscription ends.
    pub fn iter(&self) -> Iter<'_, T> {
        Iter { subscription: self }
    }

    /// A non-blocking iterator over the messages queued now.
    pub fn try_iter(&self) -> TryIter<'_, T> {
        TryIter { subscription: self }
    }

    /// The topic or pattern this subscription receives, as subscribed.
    pub fn topic(&self) -> &str {
        &self.membership.key
    }

    /// The queue group this subscription is a member of, if it was made by
    /// [`Broker::subscribe_group`](crate::Broker::subscribe_group).
    pub fn group(&self) -> Option<&str> {
        self.group.as_deref()
    }

    /// The number of messages published to this subscription's topic while it was subscribed
    /// that it missed: its queue was full past its [`Overflow`](crate::Overflow) policy, the
    /// broker closed during the publish, or `DropOldest` discarded them to make room. Only
    /// grows.
    pub fn dropped(&self) -> u64 {
        self.state().dropped()
    }

    /// The number of messages missed since the last call (or since subscribing): a gap
    /// detector, like tokio's `RecvError::Lagged(n)`, that never interrupts receiving.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncmq::{Broker, Overflow, SubscribeOptions};
    ///
    /// let broker = Broker::new();
    /// let sub = broker.subscribe_with("ticks", SubscribeOptions::default().capacity(2).overflow(Overflow::DropOldest))?;
    /// for n in 0..5 {
    ///     broker.publish("ticks", n)?;
    /// }
    /// assert_eq!(sub.take_missed(), 3); // 0, 1 and 2 were pushed out
    /// assert_eq!(sub.try_iter().collect::<Vec<_>>(), [3, 4]);
    /// assert_eq!(sub.take_missed(), 0);
    /// # Ok::<(), syncmq::Error>(())
    /// ```
    pub fn take_missed(&self) -> u64 {
        let dropped = self.state().dropped();
        // `dropped` only grows, so whichever concurrent caller swaps in the larger value,
        // the differences handed out add up to the total.
        let seen = self.missed_seen.fetch_max(dropped, Ordering::Relaxed);
        dropped.saturating_sub(seen)
    }

    /// Whether this subscription is still receiving new messages, and if not, why.
    ///
    /// Even after it ended, what was queued can still be received.
    pub fn status(&self) -> SubscriptionStatus {
        match self.state().lifecycle() {
            Lifecycle::Evicted => SubscriptionStatus::Evicted,
            _ if self.membership.shared.is_closed() => SubscriptionStatus::Closed,
            _ => SubscriptionStatus::Active,
        }
    }

    /// This subscription's counters. No allocation: cheap enough to call after every receive.
    pub fn stats(&self) -> SubscriptionStats {
        SubscriptionStats {
            received: self.received.get(0),
            dropped: self.state().dropped(),
            queued: self.receiver.len(),
        }
    }

    /// The number of messages queued now.
    pub fn len(&self) -> usize {
        self.receiver.len()
    }

    /// Whether the queue is empty now.
    pub fn is_empty(&self) -> bool {
        self.receiver.is_empty()
    }

    /// The queue's bound: `Some(0)` for a rendezvous queue.
    pub fn capacity(&self) -> Option<usize> {
        self.receiver.capacity()
    }

    /// The underlying crossbeam-channel receiver, to wait on several subscriptions (or other
    /// channels) at once with [`crossbeam_channel::select!`].
    ///
    /// This makes crossbeam-channel a public dependency of syncmq: its version is part of our
    /// API. The receiver disconnects when the subscription ends, like [`recv`](Self::recv)
    /// failing; call [`recv`](Self::recv) or [`try_recv`](Self::try_recv) then to learn why.
    ///
    /// # Examples
    ///
    /// ```
    /// use crossbeam_channel::select;
    /// use syncmq::Broker;
    ///
    /// let broker = Broker::new();
    /// let orders = broker.subscribe("orders")?;
    /// let prices = broker.subscribe("prices")?;
    /// broker.publish("prices", 101)?;
    ///
    /// select! {
    ///     recv(orders.receiver()) -> msg => panic!("unexpected order {msg:?}"),
    ///     recv(prices.receiver()) -> msg => assert_eq!(msg, Ok(101)),
    /// }
    /// # Ok::<(), syncmq::Error>(())
    /// ```
    pub fn receiver(&self) -> &Receiver<T> {
        &self.receiver
    }

    /// Unsubscribes and returns the messages that were still queued, in order.
    ///
    /// Every message counted as delivered to this subscription is either returned here or was
    /// received before: a publish running at the same time either placed its message before
    /// the unsubscribe (it is returned) or counts it as dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncmq::Broker;
    ///
    /// let broker = Broker::new();
    /// let sub = broker.subscribe("t")?;
    /// broker.publish("t", 1)?;
    /// broker.publish("t", 2)?;
    /// assert_eq!(sub.unsubscribe(), [1, 2]);
    /// assert_eq!(broker.subscriber_count("t"), 0);
    /// # Ok::<(), syncmq::Error>(())
    /// ```
    pub fn unsubscribe(self) -> Vec<T> {
        // Leave (once: by dropping the membership) before draining, so the drain is final.
        let Subscription {
            membership,
            receiver,
            ..
        } = self;
        drop(membership);
        receiver.try_iter().collect()
    }

    /// Why the queue disconnected. Only called after the receiver reported disconnection,
    /// which happens only once the broker removed this subscriber: by eviction or by `close`
    /// (a subscription that left by itself can no longer receive).
    fn end_reason(&self) -> RecvError {
        match self.state().lifecycle() {
            Lifecycle::Evicted => RecvError::Evicted,
            _ => RecvError::Closed,
        }
    }
}

/// A subscription that receives each message with the topic it was published to. Not public:
/// a bridge's export queue, made by [`Broker::tap`](crate::Broker::tap). Like a
/// [`Subscription`], dropping it unsubscribes it.
#[cfg_attr(
    not(feature = "nats"),
    allow(dead_code, reason = "only bridges (the `nats` feature) make taps")
)]
pub(crate) struct Tap<T> {
    /// Its place in the broker; its state's `dropped` counter is what the queue's overflow
    /// policy refused or discarded. Declared first: see [`Subscription`].
    membership: Membership<T>,
    /// The receiving side of the queue: messages with their topics.
    receiver: Receiver<Tagged<T>>,
}

#[cfg_attr(
    not(feature = "nats"),
    allow(dead_code, reason = "only bridges (the `nats` feature) make taps")
)]
impl<T> Tap<T> {
    pub(crate) fn new(membership: Membership<T>, receiver: Receiver<Tagged<T>>) -> Self {
        Tap {
            membership,
            receiver,
        }
    }

    /// The receiving side of the queue. Disconnected once the broker closed and the queue is
    /// drained.
    pub(crate) fn receiver(&self) -> &Receiver<Tagged<T>> {
        &self.receiver
    }

    /// The tap's shared state, to read its `dropped` counter from another thread.
    pub(crate) fn state(&self) -> &Arc<SubscriberState> {
        &self.membership.state
    }

    /// Unsubscribes and returns what was still queued, in order (see
    /// [`Subscription::unsubscribe`]).
    pub(crate) fn unsubscribe(self) -> Vec<Tagged<T>> {
        let Tap {
            membership,
            receiver,
        } = self;
        drop(membership);
        receiver.try_iter().collect()
    }
}

/// Whether a [`Subscription`] still receives new messages. From [`Subscription::status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubscriptionStatus {
    /// Subscribed: new messages arrive.
    Active,
    /// The broker is closed: no new messages; what is queued can still be received.
    Closed,
    /// The broker evicted this subscriber for missing too many messages in a row: no new
    /// messages; what is queued can still be received.
    Evicted,
}

impl<T> fmt::Debug for Subscription<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("topic", &self.membership.key)
            .field("group", &self.group)
            .field("queued", &self.len())
            .field("capacity", &self.capacity())
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

/// A blocking iterator over a subscription's messages, made by [`Subscription::iter`]. Ends
/// when the subscription ends.
pub struct Iter<'a, T> {
    subscription: &'a Subscription<T>,
}

impl<T> Iterator for Iter<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.subscription.recv().ok()
    }
}

impl<T> FusedIterator for Iter<'_, T> {}

impl<T> fmt::Debug for Iter<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("Iter { .. }")
    }
}

/// A non-blocking iterator over the messages queued now, made by [`Subscription::try_iter`].
pub struct TryIter<'a, T> {
    subscription: &'a Subscription<T>,
}

impl<T> Iterator for TryIter<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.subscription.try_recv().ok()
    }
}

impl<T> fmt::Debug for TryIter<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("TryIter { .. }")
    }
}

/// An owning blocking iterator over a subscription's messages. Ends when the subscription
/// ends; dropping it unsubscribes.
pub struct IntoIter<T> {
    subscription: Subscription<T>,
}

impl<T> Iterator for IntoIter<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.subscription.recv().ok()
    }
}

impl<T> FusedIterator for IntoIter<T> {}

impl<T> fmt::Debug for IntoIter<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("IntoIter { .. }")
    }
}

impl<'a, T> IntoIterator for &'a Subscription<T> {
    type Item = T;
    type IntoIter = Iter<'a, T>;

    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

impl<T> IntoIterator for Subscription<T> {
    type Item = T;
    type IntoIter = IntoIter<T>;

    fn into_iter(self) -> IntoIter<T> {
        IntoIter { subscription: self }
    }
}

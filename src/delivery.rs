//! Delivering one message to a list of subscribers, in two phases.
//!
//! 1. **Offer.** Every subscriber is offered a clone of the message with `try_send`, in order.
//!    A subscriber with room has the message as soon as the loop reaches it, however many
//!    subscribers before it are full. `Drop` and `DropOldest` subscribers are settled here.
//! 2. **Wait.** Only if some queues were full and their policy waits: all of them are waited on
//!    *together* with one crossbeam [`Select`], along with the broker's close signal. Each
//!    waiting send has its own deadline, computed once when phase 1 found its queue full
//!    (`Instant::now() + timeout`, capped by the publish's own deadline if the broker has a
//!    `publish_timeout`); there is no timer object, thread or channel per send. So a publish
//!    to ten fast and five stalled subscribers costs about one timeout, not five.
//!
//! A message that is not delivered (policy `Drop`, deadline passed, broker closing, subscriber
//! gone) is counted in the returned [`Outcome`] and, unless the subscriber is gone, in the
//! subscriber's own `dropped` counter. `delivered + dropped` always equals the number of
//! subscribers given.

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Select};

use crate::config::Overflow;
use crate::registry::{Attempt, Subscriber};

/// What one publish carries into delivery besides the message.
#[derive(Clone, Copy)]
pub(crate) struct Context<'a> {
    /// Becomes ready (disconnected) when the broker closes; it cuts every wait short.
    pub(crate) closing: &'a Receiver<()>,
    /// The whole publish's deadline (`publish_timeout`), if any.
    pub(crate) deadline: Option<Instant>,
}

/// What happened to one message over a list of subscribers.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// Subscribers whose queue received the message.
    pub(crate) delivered: usize,
    /// Subscribers that did not get it.
    pub(crate) dropped: usize,
    /// Older messages discarded by `DropOldest` subscribers to make room for this one.
    pub(crate) displaced: usize,
    /// Subscribers this publish evicted, as `(key, id)`, for the publisher to remove from the
    /// registry. Allocates only when someone is evicted.
    pub(crate) evicted: Vec<(Arc<str>, u64)>,
}

impl Outcome {
    pub(crate) fn merge(&mut self, other: Outcome) {
        self.delivered += other.delivered;
        self.dropped += other.dropped;
        self.displaced += other.displaced;
        self.evicted.extend(other.evicted);
    }

    /// Counts one undelivered message for `subscriber`, evicting it if that was one miss too
    /// many.
    fn drop_for<T>(&mut self, subscriber: &Subscriber<T>) {
        self.dropped += 1;
        if subscriber.record_drop() {
            self.evict(subscriber);
        }
    }

    /// Counts a miss that is not a drop (a `DropOldest` discard).
    fn miss<T>(&mut self, subscriber: &Subscriber<T>) {
        if subscriber.record_miss() {
            self.evict(subscriber);
        }
    }

    fn evict<T>(&mut self, subscriber: &Subscriber<T>) {
        if subscriber.evict() {
            self.evicted.push((subscriber.key.clone(), subscriber.id));
        }
    }
}

/// A send that found its queue full and will be retried in phase 2.
struct Waiting<'a, T> {
    subscriber: &'a Subscriber<T>,
    /// `None` once the send is settled (delivered or dropped).
    msg: Option<T>,
    /// `None` waits without a deadline (`Overflow::Block`, or a timeout too large to add).
    deadline: Option<Instant>,
}

/// Delivers `msg` to every subscriber in `subscribers`, returning when each send has completed
/// or given up.
pub(crate) fn deliver<'a, T: Clone + 'a>(
    subscribers: &'a [Arc<Subscriber<T>>],
    msg: T,
    context: Context<'_>,
) -> Outcome {
    let mut outcome = Outcome::default();
    // Allocates only if a queue is full and its policy waits.
    let mut waiting: Vec<Waiting<'a, T>> = Vec::new();
    // Taken at most once per call, and only when some queue is full.
    let mut now: Option<Instant> = None;

    let Some((last, rest)) = subscribers.split_last() else {
        return outcome;
    };
    let mut offer = |subscriber: &'a Subscriber<T>, msg: T| match subscriber.try_deliver(msg) {
        Attempt::Delivered => {
            subscriber.record_delivery();
            outcome.delivered += 1;
        }
        Attempt::Gone => outcome.dropped += 1,
        Attempt::Full(msg) => match subscriber.overflow {
            Overflow::DropOldest => {
                let (attempt, displaced) = subscriber.displace_oldest(msg);
                outcome.displaced += displaced;
                match attempt {
                    // A discard is a miss too, though this message got through.
                    Attempt::Delivered if displaced > 0 => {
                        outcome.delivered += 1;
                        outcome.miss(subscriber);
                    }
                    Attempt::Delivered => {
                        subscriber.record_delivery();
                        outcome.delivered += 1;
                    }
                    Attempt::Gone => outcome.dropped += 1,
                    Attempt::Full(_) => outcome.drop_for(subscriber),
                }
            }
            overflow if overflow.waits() => {
                let start = *now.get_or_insert_with(Instant::now);
                waiting.push(Waiting {
                    subscriber,
                    msg: Some(msg),
                    deadline: deadline(overflow, start, context.deadline),
                });
            }
            _ => outcome.drop_for(subscriber),
        },
    };
    for subscriber in rest {
        offer(subscriber, msg.clone());
    }
    // The last subscriber gets the original: one clone fewer per publish.
    offer(last, msg);
    if !waiting.is_empty() {
        wait_for_room_slow(&mut waiting, context.closing, &mut outcome);
    }
    outcome
}

/// The deadline of a send that found its queue full at `start`: its own, capped by the
/// publish's.
fn deadline(overflow: Overflow, start: Instant, publish: Option<Instant>) -> Option<Instant> {
    let own = match overflow {
        Overflow::Timeout(timeout) => start.checked_add(timeout),
        Overflow::Block | Overflow::Drop | Overflow::DropOldest => None,
    };
    match (own, publish) {
        (Some(own), Some(publish)) => Some(own.min(publish)),
        (own, publish) => own.or(publish),
    }
}

/// Phase 2: waits on every full queue at once until each one has room, passes its deadline,
/// or the broker closes.
#[cold]
fn wait_for_room_slow<T>(
    waiting: &mut [Waiting<'_, T>],
    closing: &Receiver<()>,
    outcome: &mut Outcome,
) {
    // Operation indices: `closing` is 0 and `waiting[i]` is `i + 1`. `Select::remove` keeps
    // the other indices stable, so the mapping holds as sends settle.
    let mut select = Select::new();
    let closing_index = select.recv(closing);
    for entry in waiting.iter() {
        // `entry.subscriber` borrows the caller's subscriber list, not `waiting`, so the
        // select may hold it while we take messages out of `waiting`.
        let subscriber: &Subscriber<T> = entry.subscriber;
        select.send(&subscriber.sender);
    }
    let mut unsettled = waiting.len();

    while unsettled > 0 {
        let earliest = waiting
            .iter()
            .filter(|w| w.msg.is_some())
            .filter_map(|w| w.deadline)
            .min();
        let ready = match earliest {
            Some(deadline) => select.ready_deadline(deadline).ok(),
            None => Some(select.ready()),
        };
        match ready {
            Some(index) if index == closing_index => {
                // The broker is closing: give up every remaining send at once.
                for entry in waiting.iter_mut() {
                    if entry.msg.take().is_some() {
                        outcome.drop_for(entry.subscriber);
                    }
                }
                return;
            }
            Some(index) => {
                let entry = &mut waiting[index - 1];
                let Some(msg) = entry.msg.take() else {
                    continue;
                };
                // `ready` only says the send would not block *now*; another publisher may
                // take the free slot first, so this can still find the queue full.
                match entry.subscriber.try_deliver(msg) {
                    Attempt::Delivered => {
                        entry.subscriber.record_delivery();
                        outcome.delivered += 1;
                    }
                    Attempt::Gone => outcome.dropped += 1,
                    Attempt::Full(msg) => {
                        entry.msg = Some(msg);
                        continue;
                    }
                }
                select.remove(index);
                unsettled -= 1;
            }
            None => {
                // A deadline passed: drop every send whose deadline is due.
                let now = Instant::now();
                for (i, entry) in waiting.iter_mut().enumerate() {
                    if entry.deadline.is_some_and(|d| d <= now) && entry.msg.take().is_some() {
                        outcome.drop_for(entry.subscriber);
                        select.remove(i + 1);
                        unsettled -= 1;
                    }
                }
            }
        }
    }
}

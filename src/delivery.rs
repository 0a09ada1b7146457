//! Delivering one message to a list of subscribers and queue groups, in two phases.
//!
//! 1. **Offer.** Every subscriber is offered a clone of the message with `try_send`, in order;
//!    every queue group is offered one clone, which goes to the first member with room,
//!    starting from the group's round-robin cursor. A subscriber with room has the message as
//!    soon as the loop reaches it, however many subscribers before it are full. `Drop` and
//!    `DropOldest` subscribers are settled here.
//! 2. **Wait.** Only if some queues were full and their policy waits: all of them are waited on
//!    *together* with one crossbeam [`Select`], along with the broker's close signal (and, for
//!    a bridge's import, the bridge's cancel signal: see [`BridgeImport::cancel`]). Each
//!    waiting send has its own deadline, computed once when phase 1 found its queue full
//!    (`Instant::now() + timeout`, capped by the publish's own deadline if the broker has a
//!    `publish_timeout`); there is no timer object, thread or channel per send. So a publish
//!    to ten fast and five stalled subscribers costs about one timeout, not five. A group whose
//!    members are all full waits like this on one member: the one whose turn it was. If that
//!    member leaves, the message is offered to the others, and a full one is waited on with a
//!    deadline computed then.
//!
//! Every send happens inside a grace [`Section`] (see `grace.rs`), which is what lets a leaving
//! subscription wait out the sends in flight: phase 1 holds one for the whole loop, phase 2
//! one per wake-up (for its pass of retries over every send still waiting), never while it
//! waits.
//!
//! Phase 1 allocates nothing unless a queue it finds full waits (then the wait list that phase
//! 2 uses is allocated, at the first such queue), a subscriber is evicted, or a bridge's
//! export queue is reached (its topic string, once per publish). Phase 2 allocates
//! the `Select`'s operation list. So a publish that has to wait allocates a few hundred bytes,
//! freed when it returns: a constant per waiting publish, never per send, and nothing outlives
//! the call.
//!
//! A message that is not delivered (policy `Drop`, deadline passed, broker closing, subscriber
//! gone) is counted in the returned [`Outcome`] and, unless the subscriber had left before its
//! queue was tried, in the subscriber's own `dropped` counter. (A send that waited on a full
//! queue whose subscriber then left counts there too: a bridge's export queue reads it.)
//! `delivered + dropped` always equals the number of subscribers plus groups given, less those
//! skipped: a bridge's export queues, for what that bridge publishes. (An export queue that
//! leaves a topic to an earlier export queue of its bridge is not given at all: the topic's
//! resolved route leaves it out, see `registry.rs`.)

use std::cell::OnceCell;
use std::ptr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crossbeam_channel::{Receiver, Select};

use crate::config::Overflow;
use crate::grace::Section;
use crate::registry::Group;
use crate::stats::{Counters, Delta};
use crate::subscriber::{Attempt, Origin, Subscriber, SubscriberState};

/// What one publish carries into delivery besides the message.
#[derive(Clone, Copy)]
pub(crate) struct Context<'a> {
    /// Becomes ready (disconnected) when the broker closes; it cuts every wait short.
    pub(crate) closing: &'a Receiver<()>,
    /// The whole publish's deadline (`publish_timeout`), if any.
    pub(crate) deadline: Option<Instant>,
    /// Who is publishing and when it gives up, if it is a bridge's import; `None` for
    /// [`Broker::publish`](crate::Broker::publish).
    pub(crate) import: Option<BridgeImport<'a>>,
    /// The topic published to, for the queues that carry it (a bridge's taps).
    pub(crate) topic: &'a PublishedTopic<'a>,
}

/// A publish made by a bridge's import rather than by [`Broker::publish`](crate::Broker::publish).
#[derive(Clone, Copy)]
pub(crate) struct BridgeImport<'a> {
    /// The broker's bridge origin: subscribers carrying it (the export queues) are skipped.
    pub(crate) origin: Origin,
    /// Becomes ready (disconnected) when the publisher gives up: the bridge closes. Cuts this
    /// publish's waits short, as [`Context::closing`] does.
    pub(crate) cancel: &'a Receiver<()>,
}

/// The topic of one publish. The queues of a bridge's taps carry it with each message as an
/// `Arc<str>`; that string is made at most once per publish, and only if such a queue is
/// reached, so plain subscribers never pay for it.
pub(crate) struct PublishedTopic<'a> {
    text: &'a str,
    /// `OnceCell`, not `OnceLock`: a publish's topic stays on its thread (a dispatch stripe
    /// gets its own, made from the shared string).
    shared: OnceCell<Arc<str>>,
}

impl<'a> PublishedTopic<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        PublishedTopic {
            text,
            shared: OnceCell::new(),
        }
    }

    /// A topic whose shared string already exists (a dispatch stripe's).
    pub(crate) fn from_shared(shared: &'a Arc<str>) -> Self {
        PublishedTopic {
            text: shared,
            shared: OnceCell::from(Arc::clone(shared)),
        }
    }

    /// The topic as a shared string, made on first use.
    pub(crate) fn shared(&self) -> Arc<str> {
        Arc::clone(self.shared.get_or_init(|| Arc::from(self.text)))
    }
}

/// What happened to one message over a list of subscribers and groups.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// Subscribers and groups whose queue received the message.
    pub(crate) delivered: usize,
    /// Subscribers and groups that did not get it.
    pub(crate) dropped: usize,
    /// Older messages discarded by `DropOldest` subscribers to make room for this one.
    pub(crate) displaced: usize,
    /// Queue groups that received the message (also counted in `delivered`).
    pub(crate) groups: usize,
    /// Subscribers that reached their eviction threshold in this publish, as `(key, id,
    /// state)`, for the publisher to remove from the registry and then mark evicted (unless
    /// the broker closed or the subscriber left first). Allocates only when someone is.
    pub(crate) evicted: Vec<(Arc<str>, u64, Arc<SubscriberState>)>,
}

impl Outcome {
    pub(crate) fn merge(&mut self, other: Outcome) {
        self.delivered += other.delivered;
        self.dropped += other.dropped;
        self.displaced += other.displaced;
        self.groups += other.groups;
        self.evicted.extend(other.evicted);
    }
}

/// Delivers `msg` to every subscriber in `subscribers` and to one member of every group in
/// `groups`, returning when each send has completed or given up.
pub(crate) fn deliver<'a, T: Clone + 'a>(
    subscribers: &'a [Arc<Subscriber<T>>],
    groups: &'a [Arc<Group<T>>],
    msg: T,
    context: Context<'_>,
) -> Outcome {
    let mut run = Run {
        outcome: Outcome::default(),
        waiting: Vec::new(),
        now: None,
        context,
        tally: Tally::default(),
    };
    // Every target gets a clone but the last, which gets `msg` itself.
    let mut copies = Copies {
        msg: Some(msg),
        left: subscribers.len() + groups.len(),
    };
    let origin = context.import.map(|import| import.origin);
    let section = Section::enter();
    for subscriber in subscribers {
        // Only a bridge's imports publish with an origin, and only its export queues carry
        // one.
        if origin.is_some() && subscriber.origin == origin {
            // A bridge's own subscription does not hear what that bridge publishes: this is
            // what keeps a subject both exported and imported from looping. Not routed, so
            // not counted, and no copy is made for it.
            copies.skip();
            continue;
        }
        let Some(msg) = copies.next() else { break };
        run.offer(subscriber, msg, &section);
    }
    for group in groups {
        let Some(msg) = copies.next() else { break };
        run.offer_group(group, msg, &section);
    }
    drop(section);
    if !run.waiting.is_empty() {
        run.wait_for_room_slow();
    }
    run.tally.flush();
    run.outcome
}

/// Hands out one copy of the message per target: clones, then the original for the last.
struct Copies<T> {
    msg: Option<T>,
    left: usize,
}

impl<T: Clone> Copies<T> {
    /// One target fewer: no copy for it. If it was the last, the original is dropped unused.
    fn skip(&mut self) {
        self.left = self.left.saturating_sub(1);
    }

    fn next(&mut self) -> Option<T> {
        self.left = self.left.checked_sub(1)?;
        if self.left == 0 {
            self.msg.take()
        } else {
            self.msg.clone()
        }
    }
}

/// A send that found its queue full and will be retried in phase 2.
struct Waiting<'a, T> {
    subscriber: &'a Subscriber<T>,
    /// The queue group this send delivers for, if any: if `subscriber` leaves during the
    /// wait, the message is offered to the group's other members instead.
    group: Option<&'a Group<T>>,
    /// `None` once the send is settled (delivered or dropped).
    msg: Option<T>,
    /// `None` waits without a deadline (`Overflow::Block`, or a timeout too large to add).
    deadline: Option<Instant>,
}

/// Per-key counters, added up locally and written once per run of subscribers sharing a key,
/// so a fan-out to 1000 subscribers of one topic adds to its counters once, not 1000 times.
/// Subscribers of one key are contiguous in every route, so runs are long.
#[derive(Default)]
struct Tally<'a> {
    counters: Option<&'a Counters>,
    delivered: u64,
    dropped: u64,
    displaced: u64,
}

impl<'a> Tally<'a> {
    fn switch_to(&mut self, counters: &'a Counters) {
        if !self
            .counters
            .is_some_and(|current| ptr::eq(current, counters))
        {
            self.flush();
            self.counters = Some(counters);
        }
    }

    fn flush(&mut self) {
        let Some(counters) = self.counters else {
            return;
        };
        counters.add(Delta {
            delivered: std::mem::take(&mut self.delivered),
            dropped: std::mem::take(&mut self.dropped),
            displaced: std::mem::take(&mut self.displaced),
            ..Delta::default()
        });
    }
}

/// The state of one `deliver` call.
struct Run<'a, 'c, T> {
    outcome: Outcome,
    /// Sends left for phase 2. Allocates only if a queue is full and its policy waits.
    waiting: Vec<Waiting<'a, T>>,
    /// Taken at most once in phase 1, and only when a queue with a timeout is full; taken
    /// again for a group's message passed on in phase 2 (see [`Run::retry`]).
    now: Option<Instant>,
    context: Context<'c>,
    tally: Tally<'a>,
}

impl<'a, T: Clone> Run<'a, '_, T> {
    fn offer(&mut self, subscriber: &'a Subscriber<T>, msg: T, section: &Section) {
        match subscriber.try_deliver(msg, self.context.topic, section) {
            Attempt::Delivered => self.delivered(subscriber, false, false),
            Attempt::Gone(_) => self.gone(subscriber),
            Attempt::Full(msg) => {
                if let Some(waiting) = self.full(subscriber, msg, None, section) {
                    self.waiting.push(waiting);
                }
            }
        }
    }

    /// Offers `msg` to a queue group: one member gets it.
    fn offer_group(&mut self, group: &'a Group<T>, msg: T, section: &Section) {
        if let Some(waiting) = self.offer_members(group, msg, section) {
            self.waiting.push(waiting);
        }
    }

    /// Offers `msg` to the group's members from the cursor on; the first with room takes it.
    /// If every member is full, the policy of the first full one (normally the member whose
    /// turn it was) applies; a send to wait for is returned. Members that have left are
    /// skipped, so a member leaving never costs the group its message while another remains
    /// (except in the narrow case of a `DropOldest` member leaving between its full queue
    /// being found and its oldest message being discarded: then the message is counted as
    /// dropped).
    fn offer_members(
        &mut self,
        group: &'a Group<T>,
        mut msg: T,
        section: &Section,
    ) -> Option<Waiting<'a, T>> {
        let members = &group.members;
        // `Relaxed`: the cursor only spreads load, any interleaving is fine.
        let start = group.cursor.fetch_add(1, Ordering::Relaxed) % members.len().max(1);
        let mut first_full = None;
        for offset in 0..members.len() {
            let member = &members[(start + offset) % members.len()];
            match member.try_deliver(msg, self.context.topic, section) {
                Attempt::Delivered => {
                    self.delivered(member, true, false);
                    return None;
                }
                Attempt::Full(back) => {
                    first_full = first_full.or(Some(member));
                    msg = back;
                }
                Attempt::Gone(back) => msg = back,
            }
        }
        match first_full {
            Some(member) => self.full(member, msg, Some(group), section),
            None => {
                // Every member has left: the group is about to disappear.
                self.outcome.dropped += 1;
                if let Some(member) = members.first() {
                    self.tally.switch_to(&member.counters);
                    self.tally.dropped += 1;
                }
                None
            }
        }
    }

    /// Applies the subscriber's overflow policy to a message its full queue refused. Returns
    /// the send to wait for, if the policy waits.
    fn full(
        &mut self,
        subscriber: &'a Subscriber<T>,
        msg: T,
        group: Option<&'a Group<T>>,
        section: &Section,
    ) -> Option<Waiting<'a, T>> {
        let for_group = group.is_some();
        match subscriber.overflow {
            Overflow::DropOldest => {
                let (attempt, displaced) =
                    subscriber.displace_oldest(msg, self.context.topic, section);
                // Discards count whatever became of the message itself: the subscriber's own
                // `dropped` already has them.
                self.outcome.displaced += displaced;
                self.tally.switch_to(&subscriber.counters);
                self.tally.displaced += displaced as u64;
                match attempt {
                    Attempt::Delivered => self.delivered(subscriber, for_group, displaced > 0),
                    Attempt::Gone(_) => self.gone(subscriber),
                    Attempt::Full(_) => self.dropped(subscriber),
                }
                None
            }
            overflow if overflow.waits() => {
                // Only a timeout needs the time: `Block` has no deadline of its own.
                let own = match overflow {
                    Overflow::Timeout(timeout) => self
                        .now
                        .get_or_insert_with(Instant::now)
                        .checked_add(timeout),
                    Overflow::Block | Overflow::Drop | Overflow::DropOldest => None,
                };
                Some(Waiting {
                    subscriber,
                    group,
                    msg: Some(msg),
                    deadline: earliest(own, self.context.deadline),
                })
            }
            _ => {
                self.dropped(subscriber);
                None
            }
        }
    }

    /// The message is in `subscriber`'s queue, possibly after discarding older ones (counted
    /// by the caller).
    fn delivered(&mut self, subscriber: &'a Subscriber<T>, for_group: bool, after_discard: bool) {
        self.outcome.delivered += 1;
        self.outcome.groups += usize::from(for_group);
        self.tally.switch_to(&subscriber.counters);
        self.tally.delivered += 1;
        if !after_discard {
            subscriber.record_delivery();
        } else if subscriber.record_miss() {
            // A discard is a miss too, though this message got through.
            self.evict(subscriber);
        }
    }

    /// The message did not reach `subscriber`: also a miss of its own, in its `dropped` and
    /// towards eviction. Phase 2 calls it for a subscriber that left during the wait too (a
    /// bridge's export queue reads that count); asking to evict one that left does nothing.
    fn dropped(&mut self, subscriber: &'a Subscriber<T>) {
        self.gone(subscriber);
        if subscriber.record_drop() {
            self.evict(subscriber);
        }
    }

    /// The message did not reach `subscriber` (because it has left, if called directly).
    fn gone(&mut self, subscriber: &'a Subscriber<T>) {
        self.outcome.dropped += 1;
        self.tally.switch_to(&subscriber.counters);
        self.tally.dropped += 1;
    }

    /// `subscriber` reached its eviction threshold. The publisher removes it from the registry
    /// once delivery is done; a second request for the same subscriber finds it gone.
    fn evict(&mut self, subscriber: &Subscriber<T>) {
        self.outcome.evicted.push((
            subscriber.key.clone(),
            subscriber.id,
            subscriber.state().clone(),
        ));
    }

    /// Phase 2's retry of waiting send `i`, without waiting: settles it if its queue has room
    /// (or its subscriber left), and then removes it from `select`, where it is operation
    /// `first + i`. A group send whose member left is offered to the other members, and may
    /// become a new waiting send.
    fn retry<'s>(
        &mut self,
        waiting: &mut Vec<Waiting<'a, T>>,
        i: usize,
        first: usize,
        select: &mut Select<'s>,
        unsettled: &mut usize,
        section: &Section,
    ) where
        'a: 's,
    {
        let entry = &mut waiting[i];
        let Some(msg) = entry.msg.take() else {
            return; // Settled already.
        };
        // `subscriber` and `group` borrow the caller's subscriber list, not `waiting`, so the
        // select may hold them while `waiting` grows.
        let (subscriber, group) = (entry.subscriber, entry.group);
        // A ready operation only says the send would not block *now*; another publisher may
        // take the free slot first, so this can still find the queue full.
        match subscriber.try_deliver(msg, self.context.topic, section) {
            Attempt::Delivered => self.delivered(subscriber, group.is_some(), false),
            Attempt::Gone(msg) => match group {
                // A group member left while we waited on it: the group's other members get
                // their chance, and possibly a wait of their own.
                Some(group) => {
                    // A member found full now waits its own timeout from now, not from
                    // whenever phase 1 took the time.
                    self.now = None;
                    if let Some(next) = self.offer_members(group, msg, section) {
                        let index = next.subscriber.register_send(select);
                        debug_assert_eq!(
                            index,
                            first + waiting.len(),
                            "waiting[i] is select index first + i"
                        );
                        waiting.push(next);
                        *unsettled += 1;
                    }
                }
                // The queue refused the message for as long as it was subscribed: count it in
                // the subscriber's own `dropped` too, which is how a bridge counts a local
                // publish that waited on its full export queue when the bridge closed.
                None => self.dropped(subscriber),
            },
            Attempt::Full(msg) => {
                waiting[i].msg = Some(msg);
                return;
            }
        }
        select.remove(first + i);
        *unsettled -= 1;
    }

    /// Phase 2: waits on every full queue at once until each one has room, passes its
    /// deadline, or the broker closes.
    #[cold]
    fn wait_for_room_slow(&mut self) {
        let mut waiting = std::mem::take(&mut self.waiting);
        // Operation indices: `closing` is 0, `cancel` (if any) 1, and `waiting[i]` is
        // `first + i`. `Select::remove` keeps the other indices stable, so the mapping holds
        // as sends settle.
        let mut select = Select::new();
        let closing_index = select.recv(self.context.closing);
        let cancel_index = self.context.import.map(|import| select.recv(import.cancel));
        let first = 1 + usize::from(cancel_index.is_some());
        for (i, entry) in waiting.iter().enumerate() {
            // `entry.subscriber` borrows the caller's subscriber list, not `waiting`, so the
            // select may hold it while we take messages out of `waiting`.
            let subscriber: &'a Subscriber<T> = entry.subscriber;
            let index = subscriber.register_send(&mut select);
            debug_assert_eq!(index, first + i, "waiting[i] is select index first + i");
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
                Some(index) if index == closing_index || Some(index) == cancel_index => {
                    // The broker is closing, or the publisher gave up: every remaining send
                    // is given up at once.
                    for entry in &mut waiting {
                        if entry.msg.take().is_some() {
                            self.dropped(entry.subscriber);
                        }
                    }
                    return;
                }
                Some(index) => {
                    // A section for these retries only: never held while the select waits.
                    let section = Section::enter();
                    let ready = index - first;
                    self.retry(
                        &mut waiting,
                        ready,
                        first,
                        &mut select,
                        &mut unsettled,
                        &section,
                    );
                    // Other queues often have room by now too: a wake-up takes microseconds,
                    // in which their consumers may have run. Each trip through the select costs
                    // at least a pass over every queue still waited on (and a registration
                    // with each, if none is ready), so settle every queue that can be settled
                    // per trip, not one.
                    for other in 0..waiting.len() {
                        if other != ready {
                            self.retry(
                                &mut waiting,
                                other,
                                first,
                                &mut select,
                                &mut unsettled,
                                &section,
                            );
                        }
                    }
                }
                None => {
                    // A deadline passed: drop every send whose deadline is due.
                    let now = Instant::now();
                    for (i, entry) in waiting.iter_mut().enumerate() {
                        if entry.deadline.is_some_and(|d| d <= now) && entry.msg.take().is_some() {
                            self.dropped(entry.subscriber);
                            select.remove(first + i);
                            unsettled -= 1;
                        }
                    }
                }
            }
        }
    }
}

/// The earlier of a send's own deadline and its publish's, if either has one.
fn earliest(own: Option<Instant>, publish: Option<Instant>) -> Option<Instant> {
    match (own, publish) {
        (Some(own), Some(publish)) => Some(own.min(publish)),
        (own, publish) => own.or(publish),
    }
}

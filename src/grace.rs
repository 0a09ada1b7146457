//! Send sections and grace periods: how a subscription that leaves waits out the publishes
//! that may still be putting messages into its queue, without a lock per send.
//!
//! Every send into a subscriber's queue (and every `DropOldest` discard from it) happens
//! inside a [`Section`], and only after the send has seen the subscriber still subscribed. A
//! subscription that leaves first marks itself shut, then calls [`wait_for_sections`]: once
//! that returns, every section that could have seen it subscribed has ended, so what its queue
//! holds is final and `unsubscribe` can drain it exactly.
//!
//! A publish holds one section for its whole first phase, however many subscribers it offers
//! the message to, so a fan-out pays for entering and leaving one per publish (an atomic
//! read-modify-write each, or for leaving a plain store: see `Slot`) rather than per send.
//! (The per-subscriber `RwLock` this replaces cost about 12 ns per delivery, as much as the
//! raw `try_send` itself.) The second phase waits on full queues; it takes a short section
//! for each pass of retries after a wake-up and never holds one while it waits.
//!
//! # The protocol
//!
//! It is a small SRCU (sleepable read-copy-update): a global `epoch` counter, and `SLOTS`
//! slots of two counters each, indexed by the epoch's parity. Every thread sends through one
//! slot, picked round-robin when it first publishes, so publishers rarely share a cache line.
//! (A slot's first thread has counters of its own in the slot, which only it writes: see
//! `Slot`. The waiter adds both up; the protocol below holds for either.)
//!
//! - **Entering** (`Section::enter`): read the epoch `e` and increment `slot[e & 1]`. The
//!   section is counted under parity `e & 1` until it is dropped, which decrements the same
//!   counter.
//! - **Waiting** (`wait_for_sections`, one waiter at a time): twice, increment the epoch and
//!   wait until every slot's counter of the parity just left is zero.
//!
//! Why a section that saw a subscriber subscribed is always waited for: every operation on
//! the epoch, the counters and the subscriber's state is `SeqCst`, so they all fall in one
//! total order. The leaving thread stores "shut" before its first increment of the epoch. A
//! section whose state load read "subscribed" made that load before the store, and so made its
//! counter increment, which comes first in the section, before the first epoch increment.
//! Whatever its parity, one of the two rounds reads that parity's counter after the increment,
//! so it sees the section's `+1` until its `-1`. The decrement is a `Release`, read by the
//! waiter's load: everything the section sent happens before the waiter returns.
//!
//! Each wait ends: after an epoch increment, new sections count under the other parity, so
//! only sections already under way (or that read the epoch just before) keep the counter
//! being waited on above zero, and sections only do non-blocking work. That is why there are
//! two rounds, each moving the epoch, rather than one round reading both parities: the
//! parity in use would keep getting new sections.
//!
//! `tests/model/grace.pml` is a model of this protocol (and of the re-entrancy below) that
//! `.ci/run` checks with Spin over every interleaving. It also shows that one round is not
//! enough: a waiter that skips a section of its own thread (see below) leaves it counted under
//! a parity that a later waiter's single round would not look at.
//!
//! # Re-entrancy
//!
//! The message's `Clone` and `Drop` run inside a section, and may (however unlikely) drop a
//! `Subscription`, which waits. A thread cannot wait for its own sections, so it skips them:
//! each thread counts the sections it holds per parity, and waits for its own slot to come
//! down to that count. This is safe because the thread's interrupted sections resume after
//! the shut state was stored, on the same thread, so they see it.
//!
//! Such a thread must not queue for the waiter lock either: the waiter holding it may be
//! waiting for this very section. So a thread inside a section only *tries* the lock, and if
//! another thread is waiting out a grace period at that moment, it returns without waiting:
//! a publish on a third thread may then still send one message into the leaving queue, counted
//! as delivered, after `unsubscribe` drained it. That is the one inexact case, documented on
//! [`Subscription`](crate::Subscription). What a `Clone` or `Drop` must not do is block on
//! another thread that is itself leaving a broker: that thread waits for this section.
//!
//! The domain is process-wide, shared by every broker: a section is one publish's first phase
//! (microseconds), so a subscription leaving one broker may wait that long for a publish on
//! another; in exchange a thread needs one slot, not one per broker.

use std::cell::Cell;
use std::hint;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use parking_lot::Mutex;

/// Slots in the domain. Publishing threads beyond this many share slots (round-robin), which
/// is correct, only slower. A power of two so that the modulo is a mask.
const SLOTS: usize = 32;

/// A value alone on its cache line (128 bytes: x86's adjacent-line prefetch pairs 64-byte
/// lines, and some ARM cores have 128-byte lines), so that writes to its neighbours do not slow
/// down its readers: here, the threads of one slot and those of the next.
#[repr(align(128))]
pub(crate) struct CacheLine<T>(pub(crate) T);

/// The section counters of the threads assigned to one slot, one per epoch parity, in two
/// sets. A slot's count is the sum of the two.
///
/// `owned` belongs to the first thread assigned the slot (one of the first `SLOTS` threads to
/// publish in the process), and only that thread ever writes it. So it leaves a section with a
/// plain load and store rather than a read-modify-write: about 4 ns of a 55 ns publish to one
/// subscriber. The threads assigned the slot later share `shared`, with `fetch_add` and
/// `fetch_sub`. Entering stays a `SeqCst` read-modify-write in both: the protocol needs the
/// increment ordered before the section's state loads.
///
/// The model (`tests/model/grace.pml`) has one counter per slot. An `owned` counter is such a
/// slot with one thread, and a decrement by the only thread that writes a counter, a load and
/// then a store of one less, is the atomic decrement the model assumes: no other write can fall
/// between the two. The waiter reads both counters, each after its epoch increment, as it read
/// the one before, and adds them up: a section never moves between the two, and the counter
/// the waiter's own sections are in holds at least those, so the sum comes down to the
/// waiter's own count only once every other thread's count in the slot is zero.
struct Slot {
    /// Sections of the slot's owner, per parity. Written by the owner only.
    owned: [AtomicUsize; 2],
    /// Sections of the other threads assigned the slot, per parity.
    shared: [AtomicUsize; 2],
}

impl Slot {
    const fn new() -> Self {
        Slot {
            owned: [AtomicUsize::new(0), AtomicUsize::new(0)],
            shared: [AtomicUsize::new(0), AtomicUsize::new(0)],
        }
    }

    /// The counter of parity `parity` that a thread owning the slot (or not) counts in.
    fn counter(&self, owned: bool, parity: usize) -> &AtomicUsize {
        if owned {
            &self.owned[parity]
        } else {
            &self.shared[parity]
        }
    }

    /// Sections in progress in this slot under `parity`.
    fn in_progress(&self, parity: usize) -> usize {
        self.owned[parity].load(Ordering::SeqCst) + self.shared[parity].load(Ordering::SeqCst)
    }
}

/// The process-wide grace-period domain.
struct Domain {
    /// Incremented twice per grace period. Its parity says which counter new sections use.
    epoch: AtomicUsize,
    /// Sections in progress, per slot and parity.
    slots: [CacheLine<Slot>; SLOTS],
    /// Held by the one thread waiting out a grace period, so the epoch moves one waiter at a
    /// time and each waiter's two rounds see the parities it expects.
    waiter: Mutex<()>,
}

static DOMAIN: Domain = Domain {
    epoch: AtomicUsize::new(0),
    slots: [const { CacheLine(Slot::new()) }; SLOTS],
    waiter: Mutex::new(()),
};

/// How many slots have an owner: the next thread to enter its first section owns slot
/// `OWNED_SLOTS` if that is below `SLOTS`. Never above `SLOTS`, so it cannot wrap and hand a
/// slot to a second owner (as a counter of all threads could, on a 32-bit target).
static OWNED_SLOTS: AtomicUsize = AtomicUsize::new(0);

/// The next slot to share, for the threads that come after every slot has an owner. Wraps
/// harmlessly: only its value modulo `SLOTS` is used.
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

/// No slot assigned yet.
const UNASSIGNED: usize = usize::MAX;

/// What a thread knows of its own sections. One thread-local, so a section's entry and exit
/// each reach it once.
struct ThreadSections {
    /// This thread's slot, or `UNASSIGNED`.
    slot: Cell<usize>,
    /// Whether this thread owns its slot's `owned` counters.
    owns_slot: Cell<bool>,
    /// The sections this thread holds, per parity: what it skips when it waits itself. Two
    /// cells, not a `Cell<[usize; 2]>`: updating one count of a copied-out pair cost a
    /// store-forwarding stall, a third of a section's entry.
    held: [Cell<usize>; 2],
}

thread_local! {
    static THIS_THREAD: ThreadSections = const {
        ThreadSections {
            slot: Cell::new(UNASSIGNED),
            owns_slot: Cell::new(false),
            held: [Cell::new(0), Cell::new(0)],
        }
    };
}

impl ThreadSections {
    /// This thread's slot and whether it owns it, assigned on first use.
    fn slot(&self) -> (usize, bool) {
        if self.slot.get() == UNASSIGNED {
            // `Relaxed`: the read-modify-write alone makes each owned slot go to one thread,
            // which is all that ownership needs; sharing spreads threads, any way is correct.
            let owned = OWNED_SLOTS.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < SLOTS).then_some(n + 1)
            });
            let (slot, owns) = match owned {
                Ok(slot) => (slot, true),
                Err(_) => (NEXT_SLOT.fetch_add(1, Ordering::Relaxed) % SLOTS, false),
            };
            self.slot.set(slot);
            self.owns_slot.set(owns);
        }
        (self.slot.get(), self.owns_slot.get())
    }

    fn held(&self) -> [usize; 2] {
        [self.held[0].get(), self.held[1].get()]
    }
}

/// Proof that the current thread is inside a send section: functions that send into a
/// subscriber's queue take a `&Section`. Ends when dropped, also on unwind (a panicking user
/// `Clone`). Not `Send`: it is counted in its thread's slot, and its owner's counters must be
/// written by the owner alone (see `Slot`).
pub(crate) struct Section {
    slot: usize,
    /// Whether this thread owns `slot`'s `owned` counters, which it then counts in.
    owned: bool,
    parity: usize,
    _not_send: PhantomData<*const ()>,
}

impl Section {
    /// Enters a section. Never blocks or retries.
    pub(crate) fn enter() -> Section {
        THIS_THREAD.with(|this| {
            let (slot, owned) = this.slot();
            let parity = DOMAIN.epoch.load(Ordering::SeqCst) & 1;
            // Before any state load of the section: see "The protocol".
            DOMAIN.slots[slot]
                .0
                .counter(owned, parity)
                .fetch_add(1, Ordering::SeqCst);
            this.held[parity].set(this.held[parity].get() + 1);
            Section {
                slot,
                owned,
                parity,
                _not_send: PhantomData,
            }
        })
    }
}

impl Drop for Section {
    fn drop(&mut self) {
        THIS_THREAD.with(|this| {
            let held = &this.held[self.parity];
            held.set(held.get() - 1);
        });
        // `Release`: a waiter that reads this decrement (or a later value) sees every send
        // made in the section.
        let counter = DOMAIN.slots[self.slot].0.counter(self.owned, self.parity);
        if self.owned {
            // This thread alone writes the counter (see `Slot`), so the load reads its own
            // last write and no other write can come between the two.
            counter.store(counter.load(Ordering::Relaxed) - 1, Ordering::Release);
        } else {
            counter.fetch_sub(1, Ordering::Release);
        }
    }
}

/// Waits until every section that was under way when this was called has ended, except the
/// calling thread's own. Call it after storing (`SeqCst`) the state change that sections check.
///
/// Cost with no publish in flight: the waiter lock, two epoch increments and two scans of
/// `SLOTS` counters.
pub(crate) fn wait_for_sections() {
    let (own_slot, own_held) = THIS_THREAD.with(|this| {
        let slot = this.slot.get();
        ((slot != UNASSIGNED).then_some(slot), this.held())
    });
    let _waiter = if own_held == [0, 0] {
        DOMAIN.waiter.lock()
    } else {
        // Inside a section of our own (a message's `Clone` or `Drop`): see "Re-entrancy".
        match DOMAIN.waiter.try_lock() {
            Some(guard) => guard,
            None => return,
        }
    };
    for _ in 0..2 {
        let parity = DOMAIN.epoch.fetch_add(1, Ordering::SeqCst) & 1;
        for (index, slot) in DOMAIN.slots.iter().enumerate() {
            let own = if Some(index) == own_slot {
                own_held[parity]
            } else {
                0
            };
            let mut rounds = 0u32;
            while slot.0.in_progress(parity) != own {
                pause(&mut rounds);
            }
        }
    }
}

/// One step of backing off while a section is in progress: spin briefly (sections are
/// usually a few microseconds), then yield, then sleep, so a long `Clone` on a preempted
/// thread does not cost a core.
fn pause(rounds: &mut u32) {
    match *rounds {
        0..64 => hint::spin_loop(),
        64..128 => thread::yield_now(),
        _ => thread::sleep(Duration::from_micros(50)),
    }
    *rounds = rounds.saturating_add(1);
}

/// Test support: runs `wait` on a new thread while another thread holds a section, and ends
/// the section once the wait seems to have begun (the epoch moved, or some waiter holds the
/// lock: tests run in parallel and share the domain), or `wait` returned, or after a few
/// seconds. Returns whether the section had ended when `wait` returned: `true` unless `wait`
/// failed to wait. Ending the section early can only hide a failure, never invent one.
#[cfg(test)]
pub(crate) fn wait_during_section(wait: impl FnOnce() + Send + 'static) -> bool {
    use std::sync::atomic::AtomicBool;
    use std::sync::{Arc, Barrier};
    use std::time::Instant;

    let entered = Arc::new(Barrier::new(2));
    let (release, released) = crossbeam_channel::bounded::<()>(0);
    let ended = Arc::new(AtomicBool::new(false));
    let holder = thread::spawn({
        let entered = entered.clone();
        let ended = ended.clone();
        move || {
            let section = Section::enter();
            entered.wait();
            released.recv().unwrap();
            ended.store(true, Ordering::SeqCst);
            drop(section);
        }
    });
    entered.wait();
    let before = DOMAIN.epoch.load(Ordering::SeqCst);
    let waiter = thread::spawn({
        let ended = ended.clone();
        move || {
            wait();
            ended.load(Ordering::SeqCst)
        }
    });
    let give_up = Instant::now() + Duration::from_secs(5);
    while DOMAIN.epoch.load(Ordering::SeqCst) == before
        && !DOMAIN.waiter.is_locked()
        && !waiter.is_finished()
        && Instant::now() < give_up
    {
        thread::yield_now();
    }
    release.send(()).unwrap();
    let ended_first = waiter.join().unwrap();
    holder.join().unwrap();
    ended_first
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    use super::*;

    #[test]
    fn a_wait_returns_at_once_without_sections() {
        wait_for_sections();
        wait_for_sections();
    }

    #[test]
    fn a_thread_does_not_wait_for_its_own_sections() {
        let outer = Section::enter();
        let inner = Section::enter();
        wait_for_sections();
        drop(inner);
        wait_for_sections();
        drop(outer);
    }

    #[test]
    fn a_wait_waits_for_a_section_of_another_thread() {
        let ended = wait_during_section(wait_for_sections);
        assert!(ended, "the wait returned before the section ended");
    }

    #[test]
    fn a_wait_waits_for_sections_in_owned_and_in_shared_counters() {
        // Each wait below holds a section on a new thread: threads of this process that come
        // first own their slot's counters, the later ones (at least the last of these, after
        // `SLOTS` new threads) share them.
        for round in 0..=SLOTS {
            let ended = wait_during_section(wait_for_sections);
            assert!(
                ended,
                "round {round}: the wait returned before the section ended"
            );
        }
        assert_eq!(OWNED_SLOTS.load(Ordering::Relaxed), SLOTS);
        assert!(NEXT_SLOT.load(Ordering::Relaxed) > 0);
    }

    #[test]
    fn sections_entered_during_a_wait_do_not_hold_it_up() {
        // One thread keeps entering and leaving sections; waits still end.
        let stop = Arc::new(AtomicBool::new(false));
        let churn = thread::spawn({
            let stop = stop.clone();
            move || {
                while !stop.load(Ordering::Relaxed) {
                    drop(Section::enter());
                }
            }
        });
        for _ in 0..100 {
            wait_for_sections();
        }
        stop.store(true, Ordering::Relaxed);
        churn.join().unwrap();
    }
}

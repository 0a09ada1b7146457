//! Each thread's memo of the last route it published along, so that publishing again to the
//! same topic of the same broker skips the registry: its lock (two atomic read-modify-writes),
//! the topic's hash and the table lookup.
//!
//! **When a memo is valid.** Every broker has a *generation*, bumped under the registry's
//! write lock by every change to the table (subscribe, unsubscribe, eviction, close; not by a
//! request that changes nothing, such as removing a subscriber already gone). A memo
//! pairs a route with the generation read under the same hold of the read lock, so it says what
//! the table routed the topic to at that generation. A publish that loads the same generation
//! later uses the memo: the table has not changed since, so a lookup would have found the same
//! route. A publish that loads the generation just before a writer bumps it behaves like one
//! that went just before that change, as a publish that took the read lock first would; one
//! that loads the bumped value misses, and its lookup waits for the change to finish. And a
//! change that completed before the publish began (anything that orders the two threads, even
//! a channel message) is seen by the load, by coherence; so `Relaxed` suffices.
//!
//! **Why the route is held weakly.** A route holds its subscribers' senders, and the last
//! sender's drop is what ends a subscription's `recv` once the broker closes or the subscriber
//! leaves. A memo that held its route strongly would keep those senders alive for as long as the
//! thread lives. Upgrading the weak reference costs what cloning the `Arc` under the lock did.
//! A failed upgrade means the route is gone: the generation moved, or the route cache that
//! held a resolved route (with wildcard subscriptions, say) started over or replaced it. Either
//! way the publish just looks the topic up.
//!
//! One memo per thread, for whichever broker and topic it last published to through the
//! registry: publishing to many topics in turn just misses, and a miss costs a little more than
//! the lookup alone did (a weak reference made and one dropped, the topic copied into the
//! memo's buffer, which is reused, so nothing is allocated once it is long enough).

use std::any::Any;
use std::cell::RefCell;
use std::sync::{Arc, Weak};

use crate::registry::Route;

/// What a thread remembers of its last lookup.
struct Memo {
    /// The broker's number (`Shared::id`), unique in the process.
    broker: u64,
    /// The broker's generation when the lookup was made.
    generation: u64,
    /// The topic looked up: valid, since only lookups that vouched for it are memoised.
    topic: String,
    /// The route the topic reached, type-erased (the thread-local is not generic); `None` if
    /// it reached nobody.
    route: Option<Weak<dyn Any + Send + Sync>>,
}

thread_local! {
    static LAST: RefCell<Option<Memo>> = const { RefCell::new(None) };
}

/// What a publish to `topic` of broker `broker` at `generation` reaches, if this thread's memo
/// knows: `Some(None)` for nobody. `None` means "look it up".
pub(crate) fn recall<T: Send + 'static>(
    broker: u64,
    generation: u64,
    topic: &str,
) -> Option<Option<Arc<Route<T>>>> {
    // `try_with`/`try_borrow`: a publish from a thread-local destructor, or (impossible today,
    // since no user code runs while this borrow is held) a nested one, just misses.
    LAST.try_with(|last| {
        let last = last.try_borrow().ok()?;
        let memo = last.as_ref()?;
        if memo.broker != broker || memo.generation != generation || memo.topic != topic {
            return None;
        }
        match &memo.route {
            None => Some(None),
            Some(route) => Some(Some(route.upgrade()?.downcast::<Route<T>>().ok()?)),
        }
    })
    .ok()
    .flatten()
}

/// Remembers that a publish to `topic`, a valid topic, of broker `broker` at `generation`
/// reaches `route` (`None`: nobody). The caller must have read `generation` and found `route`
/// under one hold of the registry's read lock, so that the generation is the one the route
/// was found at; it need not hold the lock any more.
pub(crate) fn remember<T: Send + 'static>(
    broker: u64,
    generation: u64,
    topic: &str,
    route: Option<&Arc<Route<T>>>,
) {
    let route = route.map(|route| {
        let weak: Weak<Route<T>> = Arc::downgrade(route);
        weak as Weak<dyn Any + Send + Sync>
    });
    let _ = LAST.try_with(|last| {
        let Ok(mut last) = last.try_borrow_mut() else {
            return;
        };
        match last.as_mut() {
            Some(memo) => {
                memo.broker = broker;
                memo.generation = generation;
                memo.topic.clear();
                memo.topic.push_str(topic);
                // The old weak reference is dropped here: it may free the last of an old
                // route's allocation, never a sender.
                memo.route = route;
            }
            None => {
                *last = Some(Memo {
                    broker,
                    generation,
                    topic: topic.to_owned(),
                    route,
                });
            }
        }
    });
}

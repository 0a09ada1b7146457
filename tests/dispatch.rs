//! The dispatch pool: large fan-outs split into stripes over broker-owned threads, spawned
//! lazily and capped at `workers`; exactly-once delivery and per-publisher order through it;
//! panicking `Clone` impls; and no clone leaked or dropped twice.

use std::collections::{HashMap, HashSet};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;
use syncmq::{Broker, Overflow, RecvError, Subscription};

mod common;
use common::{
    DISPATCH_PREFIX, PATIENCE, assert_all_in_publisher_order, assert_report, current_tid,
    is_blocked, on_dispatch_thread, publish_in_order_from_threads, spawn_pending, stress_factor,
    subscribe_many, wait_until_blocked,
};

// --- helpers ------------------------------------------------------------------------------

/// Books kept by every [`Tracked`] message of one test: instances made and dropped, which
/// threads cloned, and switches that make `clone` panic or wait.
#[derive(Default)]
struct Ledger {
    /// Instances ever made, by `new` or `clone`; also the source of instance ids.
    created: AtomicU64,
    /// Ids of the instances dropped; a second drop of one id fails the test.
    dropped: Mutex<HashSet<u64>>,
    /// Drops of an id already dropped.
    double_drops: AtomicUsize,
    /// Every thread that cloned a message, with its name.
    clone_threads: Mutex<HashMap<ThreadId, Option<String>>>,
    /// Every clone panics.
    panic_on_clone: AtomicBool,
    /// Clones of clones panic (the publishing thread clones the original; dispatch stripes
    /// clone their own copy).
    panic_on_clone_of_clone: AtomicBool,
    /// Clones of the original on the publishing thread counted so far, and the one (1-based)
    /// that panics; 0 for none.
    original_clones: AtomicUsize,
    panic_on_original_clone: AtomicUsize,
    /// Clones of clones on dispatch threads wait (bounded) for this to be set.
    hold_dispatch_clones: AtomicBool,
    release_dispatch_clones: AtomicBool,
    /// Set (and signalled) by a dispatch thread when it starts holding a clone.
    dispatch_holding: Mutex<bool>,
    dispatch_holding_changed: Condvar,
    /// The panicking original clone first waits (bounded) until a dispatch thread holds a
    /// clone: the pool, not the publishing thread, then has the other stripe. (A publish runs
    /// queued jobs itself while it waits, so without this it may take its own stripe's job
    /// before the dispatch thread wakes up, and nothing is held.)
    bomb_waits_for_dispatch_holding: AtomicBool,
    /// Set just before the original clone panics.
    bomb_went_off: AtomicBool,
}

impl Ledger {
    fn live(&self) -> u64 {
        self.created.load(Ordering::SeqCst) - self.dropped.lock().unwrap().len() as u64
    }

    fn clone_threads(&self) -> HashMap<ThreadId, Option<String>> {
        self.clone_threads.lock().unwrap().clone()
    }

    fn assert_nothing_live(&self) {
        assert_eq!(self.double_drops.load(Ordering::SeqCst), 0, "double drops");
        assert_eq!(self.live(), 0, "instances leaked");
    }
}

/// A message that keeps [`Ledger`] books.
struct Tracked {
    value: u64,
    /// 0 for an original, 1 for its clones, 2 for their clones...
    generation: u32,
    id: u64,
    ledger: Arc<Ledger>,
}

impl Tracked {
    fn new(value: u64, ledger: &Arc<Ledger>) -> Self {
        Tracked {
            value,
            generation: 0,
            id: ledger.created.fetch_add(1, Ordering::SeqCst),
            ledger: ledger.clone(),
        }
    }
}

impl std::fmt::Debug for Tracked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tracked({})", self.value)
    }
}

impl Clone for Tracked {
    fn clone(&self) -> Self {
        let ledger = &self.ledger;
        let current = thread::current();
        ledger
            .clone_threads
            .lock()
            .unwrap()
            .insert(current.id(), current.name().map(str::to_owned));
        if ledger.panic_on_clone.load(Ordering::SeqCst) {
            panic!("clone bomb {}", self.value);
        }
        if self.generation > 0 && ledger.panic_on_clone_of_clone.load(Ordering::SeqCst) {
            panic!("clone-of-clone bomb {}", self.value);
        }
        if self.generation == 0 && !on_dispatch_thread() {
            let n = ledger.original_clones.fetch_add(1, Ordering::SeqCst) + 1;
            if n == ledger.panic_on_original_clone.load(Ordering::SeqCst) {
                if ledger
                    .bomb_waits_for_dispatch_holding
                    .load(Ordering::SeqCst)
                {
                    let holding = ledger.dispatch_holding.lock().unwrap();
                    let _ = ledger
                        .dispatch_holding_changed
                        .wait_timeout_while(holding, PATIENCE, |holding| !*holding)
                        .unwrap();
                }
                ledger.bomb_went_off.store(true, Ordering::SeqCst);
                panic!("original clone bomb {}", self.value);
            }
        }
        if self.generation > 0
            && on_dispatch_thread()
            && ledger.hold_dispatch_clones.load(Ordering::SeqCst)
        {
            *ledger.dispatch_holding.lock().unwrap() = true;
            ledger.dispatch_holding_changed.notify_all();
            let deadline = Instant::now() + PATIENCE;
            while !ledger.release_dispatch_clones.load(Ordering::SeqCst)
                && Instant::now() < deadline
            {
                thread::sleep(Duration::from_millis(1));
            }
        }
        Tracked {
            value: self.value,
            generation: self.generation + 1,
            id: ledger.created.fetch_add(1, Ordering::SeqCst),
            ledger: ledger.clone(),
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if !self.ledger.dropped.lock().unwrap().insert(self.id) {
            self.ledger.double_drops.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn values(sub: &Subscription<Tracked>) -> Vec<u64> {
    sub.try_iter().map(|m| m.value).collect()
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else {
        "<non-string panic>".to_owned()
    }
}

// --- smoke --------------------------------------------------------------------------------

#[test]
fn a_large_fanout_reaches_every_subscriber_once() {
    let broker = Broker::<u32>::builder()
        .dispatch_threshold(4)
        .workers(2)
        .build();
    let subs = subscribe_many(&broker, "fan", 32);
    assert_report(broker.publish("fan", 7).unwrap(), 32, 0);
    for sub in &subs {
        assert_eq!(sub.try_iter().collect::<Vec<_>>(), [7]);
    }
    assert!((1..=2).contains(&broker.stats().dispatch_threads));
}

// --- single thread ------------------------------------------------------------------------

#[test]
fn dispatch_threads_are_spawned_lazily_by_the_first_fanout_at_the_threshold() {
    const THRESHOLD: usize = 8;
    const WORKERS: usize = 2;
    let ledger = Arc::new(Ledger::default());
    let broker = Broker::<Tracked>::builder()
        .capacity(128)
        .dispatch_threshold(THRESHOLD)
        .workers(WORKERS)
        .build();
    assert_eq!(broker.stats().dispatch_threads, 0, "none at build");

    let small = subscribe_many(&broker, "small", THRESHOLD - 1);
    for n in 0..100 {
        broker.publish("nobody", Tracked::new(n, &ledger)).unwrap();
        assert_report(
            broker.publish("small", Tracked::new(n, &ledger)).unwrap(),
            THRESHOLD - 1,
            0,
        );
    }
    assert_eq!(
        broker.stats().dispatch_threads,
        0,
        "none below the threshold"
    );
    let me = thread::current().id();
    assert_eq!(
        ledger.clone_threads().into_keys().collect::<Vec<_>>(),
        [me],
        "below the threshold, everything runs on the publishing thread"
    );

    let big = subscribe_many(&broker, "big", THRESHOLD);
    assert_report(
        broker.publish("big", Tracked::new(0, &ledger)).unwrap(),
        THRESHOLD,
        0,
    );
    let threads = broker.stats().dispatch_threads;
    assert!(
        (1..=WORKERS).contains(&threads),
        "{threads} dispatch threads after the first fan-out at the threshold"
    );
    for sub in &big {
        assert_eq!(values(sub), [0]);
    }
    for sub in &small {
        assert_eq!(values(sub), (0..100).collect::<Vec<_>>());
    }
    assert_eq!(broker.stats().spawn_failures, 0);
    drop((small, big));
    broker.close();
    ledger.assert_nothing_live();
}

#[test]
fn no_thread_is_spawned_per_publish() {
    const WORKERS: usize = 3;
    const SUBSCRIBERS: usize = 64;
    let ledger = Arc::new(Ledger::default());
    let broker = Broker::<Tracked>::builder()
        .capacity(1)
        .overflow(Overflow::Drop)
        .dispatch_threshold(4)
        .workers(WORKERS)
        .build();
    let subs = subscribe_many(&broker, "fan", SUBSCRIBERS);
    for n in 0..2_000 {
        let report = broker.publish("fan", Tracked::new(n, &ledger)).unwrap();
        assert_eq!(report.routed(), SUBSCRIBERS);
        assert!(broker.stats().dispatch_threads <= WORKERS);
        if n % 3 == 0 {
            for sub in &subs {
                sub.try_iter().for_each(drop);
            }
        }
    }
    // Every thread that ever cloned a message is this one or one of at most `WORKERS`
    // dispatch threads: thread ids are never reused, so a thread per publish would show.
    let me = thread::current().id();
    let threads = ledger.clone_threads();
    let dispatchers: Vec<_> = threads.iter().filter(|(id, _)| **id != me).collect();
    assert!(
        dispatchers.len() <= WORKERS,
        "{} threads cloned messages: {dispatchers:?}",
        dispatchers.len()
    );
    for (_, name) in dispatchers {
        let index: usize = name
            .as_deref()
            .and_then(|n| n.strip_prefix(DISPATCH_PREFIX))
            .and_then(|i| i.parse().ok())
            .unwrap_or_else(|| panic!("a clone ran on unexpected thread {name:?}"));
        assert!(index < WORKERS, "thread {name:?} beyond the cap");
    }
    let stats = broker.stats();
    assert_eq!(stats.published, 2_000);
    assert_eq!(stats.delivered + stats.dropped, 2_000 * SUBSCRIBERS as u64);
    drop(subs);
    broker.close();
    ledger.assert_nothing_live();
}

#[test]
fn workers_zero_delivers_every_publish_inline() {
    let ledger = Arc::new(Ledger::default());
    let broker = Broker::<Tracked>::builder()
        .capacity(100)
        .dispatch_threshold(2)
        .workers(0)
        .build();
    let subs = subscribe_many(&broker, "fan", 64);
    for n in 0..100 {
        assert_report(
            broker.publish("fan", Tracked::new(n, &ledger)).unwrap(),
            64,
            0,
        );
    }
    let stats = broker.stats();
    assert_eq!((stats.dispatch_threads, stats.spawn_failures), (0, 0));
    assert_eq!(
        ledger.clone_threads().into_keys().collect::<Vec<_>>(),
        [thread::current().id()]
    );
    for sub in &subs {
        assert_eq!(values(sub), (0..100).collect::<Vec<_>>());
    }
    drop(subs);
    drop(broker);
    ledger.assert_nothing_live();
}

#[test]
fn every_subscriber_gets_every_message_exactly_once_and_in_order() {
    const SUBSCRIBERS: usize = 100;
    const MESSAGES: u64 = 200;
    let broker = Broker::<u64>::builder()
        .capacity(MESSAGES as usize)
        .overflow(Overflow::Block)
        .dispatch_threshold(4)
        .workers(3)
        .build();
    let subs = subscribe_many(&broker, "fan", SUBSCRIBERS);
    for n in 0..MESSAGES {
        assert_report(broker.publish("fan", n).unwrap(), SUBSCRIBERS, 0);
    }
    for sub in &subs {
        assert_eq!(
            sub.try_iter().collect::<Vec<_>>(),
            (0..MESSAGES).collect::<Vec<_>>()
        );
    }
    let stats = broker.stats();
    assert_eq!(stats.delivered, MESSAGES * SUBSCRIBERS as u64);
    assert!((1..=3).contains(&stats.dispatch_threads));
}

#[test]
fn a_panicking_clone_on_the_publishing_thread_surfaces_in_publish() {
    let ledger = Arc::new(Ledger::default());
    let broker = Broker::<Tracked>::builder().capacity(16).workers(0).build();
    let subs = subscribe_many(&broker, "t", 5);
    ledger.panic_on_clone.store(true, Ordering::SeqCst);
    let caught = panic::catch_unwind(AssertUnwindSafe(|| {
        broker.publish("t", Tracked::new(1, &ledger))
    }));
    let payload = caught.expect_err("the clone's panic reaches the caller");
    assert_eq!(panic_message(&*payload), "clone bomb 1");

    // The broker still works.
    ledger.panic_on_clone.store(false, Ordering::SeqCst);
    assert_report(broker.publish("t", Tracked::new(2, &ledger)).unwrap(), 5, 0);
    for sub in &subs {
        assert_eq!(values(sub), [2]);
    }
    let late = broker.subscribe("t").unwrap();
    assert_report(broker.publish("t", Tracked::new(3, &ledger)).unwrap(), 6, 0);
    assert_eq!(values(&late), [3]);
    broker.close();
    drop((subs, late));
    ledger.assert_nothing_live();
}

#[test]
fn a_panicking_clone_in_a_dispatch_stripe_surfaces_in_the_publishing_thread() {
    const SUBSCRIBERS: usize = 32;
    const WORKERS: usize = 2;
    let ledger = Arc::new(Ledger::default());
    let broker = Broker::<Tracked>::builder()
        .capacity(16)
        .dispatch_threshold(4)
        .workers(WORKERS)
        .build();
    let subs = subscribe_many(&broker, "fan", SUBSCRIBERS);
    // The publishing thread clones the original, once per stripe it hands out and once per
    // subscriber of its own stripe; only the stripes it hands out clone a clone. So this
    // panics exactly in the stripes run by the pool (or by the publishing thread running a
    // queued stripe itself: that goes through the same path).
    ledger.panic_on_clone_of_clone.store(true, Ordering::SeqCst);
    let caught = panic::catch_unwind(AssertUnwindSafe(|| {
        broker.publish("fan", Tracked::new(1, &ledger))
    }));
    let payload = caught.expect_err("the stripe's panic reaches the caller");
    assert_eq!(panic_message(&*payload), "clone-of-clone bomb 1");
    let received: usize = subs.iter().map(|sub| values(sub).len()).sum();
    assert!(
        (1..SUBSCRIBERS).contains(&received),
        "the publishing thread's own stripe was delivered, the others were not ({received})"
    );

    // The pool survived: the same threads carry on.
    ledger
        .panic_on_clone_of_clone
        .store(false, Ordering::SeqCst);
    let threads = broker.stats().dispatch_threads;
    assert!((1..=WORKERS).contains(&threads));
    for n in 2..50 {
        assert_report(
            broker.publish("fan", Tracked::new(n, &ledger)).unwrap(),
            SUBSCRIBERS,
            0,
        );
        for sub in &subs {
            assert_eq!(values(sub), [n]);
        }
    }
    assert_eq!(broker.stats().dispatch_threads, threads);
    let start = Instant::now();
    broker.close();
    assert!(start.elapsed() < PATIENCE);
    drop(subs);
    ledger.assert_nothing_live();
}

/// Semantic 2: `publish` returns after every send has completed or given up, so a later
/// publish cannot overtake it. When the publishing thread's own stripe panics (a `Clone`
/// panic), the stripes it already handed to the pool must still finish before the panic
/// reaches the caller; otherwise they deliver *after* the caller's next publish.
#[test]
fn a_publish_whose_own_stripe_panics_still_waits_for_its_other_stripes() {
    const SUBSCRIBERS: usize = 8;
    let ledger = Arc::new(Ledger::default());
    let broker = Broker::<Tracked>::builder()
        .capacity(16)
        .dispatch_threshold(4)
        .workers(1)
        .build();
    let subs = subscribe_many(&broker, "fan", SUBSCRIBERS);
    // Spawn the worker, then count the publishing thread's clones of originals afresh.
    broker.publish("fan", Tracked::new(0, &ledger)).unwrap();
    for sub in &subs {
        assert_eq!(values(sub), [0]);
    }
    ledger.original_clones.store(0, Ordering::SeqCst);
    // With one worker a publish makes two stripes: the publishing thread clones the original
    // once for the worker's stripe, then once per subscriber of its own stripe but the last.
    // The third clone is in its own stripe.
    ledger.panic_on_original_clone.store(3, Ordering::SeqCst);
    // The worker's stripe is held up until released, and the clone panics only once the
    // worker holds it.
    ledger.hold_dispatch_clones.store(true, Ordering::SeqCst);
    ledger
        .bomb_waits_for_dispatch_holding
        .store(true, Ordering::SeqCst);

    let (tid_tx, tid_rx) = bounded(1);
    let publisher = {
        let broker = broker.clone();
        let ledger = ledger.clone();
        spawn_pending(move || {
            tid_tx.send(current_tid()).unwrap();
            let caught = panic::catch_unwind(AssertUnwindSafe(|| {
                broker.publish("fan", Tracked::new(1, &ledger))
            }));
            let released_when_returned = ledger.release_dispatch_clones.load(Ordering::SeqCst);
            let message = panic_message(&*caught.expect_err("the clone panicked"));
            ledger.hold_dispatch_clones.store(false, Ordering::SeqCst);
            ledger.panic_on_original_clone.store(0, Ordering::SeqCst);
            // The next publish from the same thread.
            broker.publish("fan", Tracked::new(2, &ledger)).unwrap();
            (message, released_when_returned)
        })
    };
    let tid = tid_rx.recv().unwrap();
    let started = Instant::now();
    let (message, released_when_returned) = loop {
        if let Some(result) = publisher.try_wait(Duration::from_millis(1)) {
            break result;
        }
        // Waiting for its stripes after the panic, as it should: release them. (Without
        // `/proc`, after 1 s.) Before the panic it may be blocked waiting for the worker to
        // hold its stripe; releasing then would prove nothing.
        let waiting = match &tid {
            Some(tid) => {
                ledger.bomb_went_off.load(Ordering::SeqCst) && is_blocked(tid) == Some(true)
            }
            None => started.elapsed() > Duration::from_secs(1),
        };
        if waiting || started.elapsed() > PATIENCE {
            ledger.release_dispatch_clones.store(true, Ordering::SeqCst);
            break publisher.wait(PATIENCE);
        }
    };
    ledger.release_dispatch_clones.store(true, Ordering::SeqCst);
    assert_eq!(message, "original clone bomb 1");
    broker.close();
    let received: Vec<Vec<u64>> = subs
        .iter()
        .map(|sub| sub.iter().map(|m| m.value).collect())
        .collect();
    assert!(
        released_when_returned,
        "publish returned (panicking) while a stripe of it was still running; \
         then received: {received:?}"
    );
    for got in &received {
        assert!(got.is_sorted(), "a later publish overtook: {received:?}");
    }
    drop(subs);
    ledger.assert_nothing_live();
}

#[test]
fn a_striped_fanout_neither_leaks_nor_drops_a_clone_twice() {
    const SUBSCRIBERS: usize = 40;
    let ledger = Arc::new(Ledger::default());
    let broker = Broker::<Tracked>::builder()
        .capacity(2)
        .overflow(Overflow::Drop)
        .dispatch_threshold(4)
        .workers(3)
        .build();
    let mut subs = subscribe_many(&broker, "fan", SUBSCRIBERS);
    let mut kept = Vec::new();
    for n in 0..60 {
        let report = broker.publish("fan", Tracked::new(n, &ledger)).unwrap();
        assert_eq!(report.routed(), subs.len());
        // Every live instance is in some queue: nothing was kept or lost by the broker.
        let queued: usize = subs.iter().map(Subscription::len).sum::<usize>() + kept.len();
        assert_eq!(ledger.live(), queued as u64, "after publish {n}");
        match n % 6 {
            // Read some queues, and keep a message outside the broker for a while.
            0 => kept.extend(subs.iter().step_by(3).filter_map(|s| s.try_recv().ok())),
            1 => kept.clear(),
            // Leave, in both ways.
            2 if subs.len() > 10 => drop(subs.pop().unwrap().unsubscribe()),
            3 if subs.len() > 10 => drop(subs.swap_remove(n as usize % subs.len())),
            _ => {}
        }
    }
    // Some queues hold messages at close; they are received or dropped with the subscription.
    broker.close();
    let (drain, keep) = subs.split_at(subs.len() / 2);
    for sub in drain {
        sub.iter().for_each(drop);
    }
    assert_eq!(
        ledger.live(),
        (keep.iter().map(Subscription::len).sum::<usize>() + kept.len()) as u64
    );
    drop(kept);
    drop(subs);
    ledger.assert_nothing_live();
}

#[test]
fn a_striped_publish_cut_short_by_close_neither_leaks_nor_drops_a_clone_twice() {
    const SUBSCRIBERS: usize = 24;
    let ledger = Arc::new(Ledger::default());
    let broker = Broker::<Tracked>::builder()
        .capacity(1)
        .overflow(Overflow::Block)
        .dispatch_threshold(4)
        .workers(2)
        .build();
    let subs = subscribe_many(&broker, "fan", SUBSCRIBERS);
    // Half the queues are full, so the publish waits on them in every stripe.
    broker.publish("fan", Tracked::new(0, &ledger)).unwrap();
    for sub in subs.iter().step_by(2) {
        assert_eq!(values(sub), [0]);
    }
    let (tid_tx, tid_rx) = bounded(1);
    let publisher = {
        let broker = broker.clone();
        let ledger = ledger.clone();
        spawn_pending(move || {
            tid_tx.send(current_tid()).unwrap();
            broker.publish("fan", Tracked::new(1, &ledger))
        })
    };
    // The publish blocks (on the full queues).
    wait_until_blocked(tid_rx.recv().unwrap().as_deref());
    // Bounded: if close did not wake the blocked stripes, joining them would hang.
    let closer = broker.clone();
    spawn_pending(move || closer.close()).wait(PATIENCE);
    let report = publisher.wait(PATIENCE).unwrap();
    assert_report(report, SUBSCRIBERS / 2, SUBSCRIBERS / 2);
    // Every live instance is in a queue: one per subscriber.
    assert_eq!(ledger.live(), SUBSCRIBERS as u64);
    for sub in &subs {
        assert_eq!(values(sub).len(), 1);
        assert_eq!(sub.recv().unwrap_err(), RecvError::Closed);
    }
    drop(subs);
    ledger.assert_nothing_live();
}

// --- threaded -----------------------------------------------------------------------------

#[test]
fn per_publisher_order_holds_for_every_subscriber_with_several_publishers() {
    const PUBLISHERS: usize = 4;
    const PER_PUBLISHER: u64 = 300;
    const SUBSCRIBERS: usize = 48;
    let broker = Broker::<(usize, u64)>::builder()
        .capacity(PUBLISHERS * PER_PUBLISHER as usize)
        .overflow(Overflow::Block)
        .dispatch_threshold(4)
        .workers(2)
        .build();
    let subs = subscribe_many(&broker, "fan", SUBSCRIBERS);
    publish_in_order_from_threads(
        &broker,
        "fan",
        PUBLISHERS,
        PER_PUBLISHER,
        SUBSCRIBERS,
        PATIENCE,
    );
    for sub in &subs {
        let got: Vec<_> = sub.try_iter().collect();
        assert_all_in_publisher_order(&got, PUBLISHERS, PER_PUBLISHER);
    }
    assert!(broker.stats().dispatch_threads <= 2);
}

// --- stress -------------------------------------------------------------------------------

/// Several publishers, subscribers draining on their own threads, small queues with `Block`:
/// the dispatch threads wait on full queues all the time, and still every subscriber gets
/// every message once, in per-publisher order.
#[test]
#[cfg_attr(miri, ignore)] // stress: too slow under Miri
fn striped_publishes_to_busy_subscribers_deliver_everything_in_order() {
    const PUBLISHERS: usize = 3;
    const SUBSCRIBERS: usize = 16;
    let per_publisher = 400 * stress_factor() as u64;
    let broker = Broker::<(usize, u64)>::builder()
        .capacity(2)
        .overflow(Overflow::Block)
        .dispatch_threshold(4)
        .workers(2)
        .build();
    let subscribers: Vec<_> = subscribe_many(&broker, "fan", SUBSCRIBERS)
        .into_iter()
        .map(|sub| spawn_pending(move || sub.iter().collect::<Vec<_>>()))
        .collect();
    publish_in_order_from_threads(
        &broker,
        "fan",
        PUBLISHERS,
        per_publisher,
        SUBSCRIBERS,
        PATIENCE,
    );
    broker.close();
    for subscriber in subscribers {
        assert_all_in_publisher_order(&subscriber.wait(PATIENCE), PUBLISHERS, per_publisher);
    }
    let stats = broker.stats();
    assert_eq!(
        (stats.published, stats.delivered, stats.dropped),
        (
            PUBLISHERS as u64 * per_publisher,
            PUBLISHERS as u64 * per_publisher * SUBSCRIBERS as u64,
            0
        )
    );
}

/// A publishing thread that waits for its own stripes must not pick up another publish's stripe
/// that waits on a full `Block` queue: its own publish, to subscribers with room, would then wait
/// for a consumer it has nothing to do with. Worse, when that consumer is the publishing thread
/// itself (a pipeline stage: it consumes one topic and publishes to another), neither ever
/// proceeds.
#[test]
fn a_publish_waiting_for_its_stripes_does_not_run_another_publishs_blocked_stripe() {
    // Two stripes per publish (one dispatch thread): the first subscriber on the publishing
    // thread, the others in one job.
    let broker = Broker::<u64>::builder()
        .capacity(1)
        .overflow(Overflow::Block)
        .workers(1)
        .dispatch_threshold(2)
        .build();
    let c = subscribe_many(&broker, "busy", 3);
    let y = broker.subscribe("stage").unwrap();
    let stage_input = broker.subscribe("stage").unwrap();
    let z = subscribe_many(&broker, "out", 2);
    // Fill every queue of `busy` and `stage`.
    assert_report(broker.publish("busy", 0).unwrap(), 3, 0);
    assert_report(broker.publish("stage", 0).unwrap(), 2, 0);

    // 1. Keep the dispatch thread busy: the job [c1, c2] of this publish waits on both
    //    (its publishing thread is stuck on c0 in its own stripe, so only the dispatch thread
    //    can run the job). Once c1 gets the message, the dispatch thread is running the job
    //    and still waits on c2.
    let busy = {
        let broker = broker.clone();
        spawn_pending(move || broker.publish("busy", 1).unwrap())
    };
    assert_eq!(c[1].recv(), Ok(0));
    common::wait_until("the dispatch thread delivered to c1", || c[1].len() == 1);

    // 2. A publish to `stage` queues its job [stage_input] and waits on `y` in its own stripe:
    //    its job stays queued, as nobody is free to take it.
    let (tid_tx, tid_rx) = bounded(1);
    let stage = {
        let broker = broker.clone();
        spawn_pending(move || {
            tid_tx.send(current_tid()).unwrap();
            broker.publish("stage", 1).unwrap()
        })
    };
    wait_until_blocked(tid_rx.recv().unwrap().as_deref());

    // 3. The consumer of `stage_input` publishes to `out`, whose subscribers all have room.
    let out = {
        let broker = broker.clone();
        spawn_pending(move || {
            let report = broker.publish("out", 2).unwrap();
            (report, stage_input)
        })
    };
    let finished = out.try_wait(Duration::from_secs(5));
    // Let everything finish, whatever happened.
    broker.close();
    let (report, stage_input) = finished.expect(
        "a publish to subscribers with room waited on another publish's full `Block` queue",
    );
    assert_report(report, 2, 0);
    assert_eq!(stage_input.recv(), Ok(0));
    let _ = (busy.wait(PATIENCE), stage.wait(PATIENCE));
    drop((c, y, z));
}

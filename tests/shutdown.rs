//! Shutdown: `close`, dropping the last `Broker` handle (semantic 6 of issue 2), and subscriber
//! threads that panic (semantic 8).

use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use syncmq::{Broker, Error, Overflow, PublishReport, RecvError, Subscription, TryRecvError};

mod common;
use common::{
    PATIENCE, Pending, assert_report, current_tid, drain, is_blocked, on_dispatch_thread,
    spawn_pending, stress_factor, subscribe_many, wait_until, wait_until_blocked,
};

/// Anything that should happen "at once" (after a close, say) must happen within this bound.
/// Generous, for a loaded 2-core CI machine; the waits it is compared against are 60 s or
/// forever.
const PROMPT: Duration = Duration::from_secs(5);

/// A send timeout long enough that a publish returning "promptly" cannot have timed out.
const LONG_TIMEOUT: Duration = Duration::from_secs(60);

// --- helpers ------------------------------------------------------------------------------

/// Counts the dispatch threads that have run a clone of a message of one broker and not yet
/// exited. The count is held by a thread-local guard that is dropped when the thread exits, so
/// it falls to zero only once every such thread has really finished.
#[derive(Default)]
struct ThreadCensus {
    live: AtomicUsize,
    /// If set, each exiting thread reports here and then waits (bounded) for a release.
    exit_hook: Option<(Sender<()>, Receiver<()>)>,
}

/// A message that enrolls every dispatch thread that clones it in its [`ThreadCensus`].
struct Probe {
    census: Arc<ThreadCensus>,
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad("Probe")
    }
}

struct ExitGuard {
    census: Arc<ThreadCensus>,
}

thread_local! {
    /// One guard per census this thread is enrolled in.
    static EXIT_GUARDS: RefCell<Vec<ExitGuard>> = const { RefCell::new(Vec::new()) };
}

impl Drop for ExitGuard {
    fn drop(&mut self) {
        if let Some((entered, release)) = &self.census.exit_hook {
            let _ = entered.send(());
            let _ = release.recv_timeout(PATIENCE);
        }
        self.census.live.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Clone for Probe {
    fn clone(&self) -> Self {
        if on_dispatch_thread() {
            EXIT_GUARDS.with(|guards| {
                let mut guards = guards.borrow_mut();
                if !guards.iter().any(|g| Arc::ptr_eq(&g.census, &self.census)) {
                    self.census.live.fetch_add(1, Ordering::SeqCst);
                    guards.push(ExitGuard {
                        census: self.census.clone(),
                    });
                }
            });
        }
        Probe {
            census: self.census.clone(),
        }
    }
}

/// Subscribers for a striped broker: enough that a publish is split over every worker, each
/// stripe with several subscribers (so each stripe clones the message).
const STRIPED_SUBSCRIBERS: usize = 24;

/// A broker of one-message queues with `Block`, whose large publishes (dispatch threshold 4)
/// are striped over `workers` dispatch threads.
fn striped_broker(workers: usize) -> Broker<Probe> {
    Broker::builder()
        .capacity(1)
        .overflow(Overflow::Block)
        .dispatch_threshold(4)
        .workers(workers)
        .build()
}

/// Blocks a publish on every one of the `workers` dispatch threads of `broker` (built by
/// [`striped_broker`]): all queues are full, so each stripe waits. Returns the subscriptions
/// (each holding one message) and the receiver of the blocked publish's result.
fn block_a_striped_publish(
    broker: &Broker<Probe>,
    census: &Arc<ThreadCensus>,
    workers: usize,
) -> (
    Vec<Subscription<Probe>>,
    Pending<Result<PublishReport, Error>>,
) {
    let subs = subscribe_many(broker, "fan", STRIPED_SUBSCRIBERS);
    // The fill has its own census, so that `census` counts only the blocked publish's runners.
    let fill = Probe {
        census: Arc::new(ThreadCensus::default()),
    };
    let fill = broker.publish("fan", fill).unwrap();
    assert_report(fill, STRIPED_SUBSCRIBERS, 0);
    let blocked = {
        let broker = broker.clone();
        let census = census.clone();
        spawn_pending(move || broker.publish("fan", Probe { census }))
    };
    // Every queue is full, so every stripe's runner blocks after cloning: the publishing thread
    // in its own stripe, and each dispatch thread in the stripe it took. None can take a second
    // stripe, so every worker ends up running one.
    wait_until("every dispatch thread has taken a stripe", || {
        census.live.load(Ordering::SeqCst) == workers
    });
    (subs, blocked)
}

// --- smoke --------------------------------------------------------------------------------

#[test]
fn close_is_idempotent() {
    let broker = Broker::<u32>::new();
    assert!(!broker.is_closed());
    broker.close();
    assert!(broker.is_closed());
    broker.close();
    broker.close();
    assert!(broker.is_closed());
}

#[test]
fn publish_and_subscribe_after_close_return_closed() {
    let broker = Broker::<u32>::new();
    let _sub = broker.subscribe("t").unwrap();
    broker.publish("t", 1).unwrap();
    broker.close();

    assert_eq!(broker.publish("t", 2).unwrap_err(), Error::Closed);
    assert_eq!(broker.publish("nobody", 3).unwrap_err(), Error::Closed);
    assert_eq!(broker.subscribe("t").unwrap_err(), Error::Closed);
    assert_eq!(broker.subscribe("other").unwrap_err(), Error::Closed);
    // A refused publish is not counted.
    let stats = broker.stats();
    assert_eq!((stats.published, stats.delivered, stats.dropped), (1, 1, 0));
    assert_eq!((stats.topics, stats.subscribers), (0, 0));
    assert_eq!(broker.subscriber_count("t"), 0);
}

// --- single thread ------------------------------------------------------------------------

#[test]
fn every_receive_method_drains_the_queue_before_reporting_closed() {
    let broker = Broker::<u32>::builder().capacity(8).build();
    let subs = subscribe_many(&broker, "t", 8);
    for n in 0..3 {
        assert_report(broker.publish("t", n).unwrap(), 8, 0);
    }
    broker.close();

    let mut subs = subs.into_iter();
    let sub = subs.next().unwrap();
    assert_eq!((sub.recv(), sub.recv(), sub.recv()), (Ok(0), Ok(1), Ok(2)));
    assert_eq!(sub.recv(), Err(RecvError::Closed));
    assert_eq!(sub.recv(), Err(RecvError::Closed), "Closed is sticky");

    let sub = subs.next().unwrap();
    assert_eq!(drain(&sub), [0, 1, 2]);
    assert_eq!(sub.try_recv(), Err(TryRecvError::Closed));

    let sub = subs.next().unwrap();
    let got: Vec<_> = (0..3).map(|_| sub.recv_timeout(LONG_TIMEOUT)).collect();
    assert_eq!(got, [Ok(0), Ok(1), Ok(2)]);
    let start = Instant::now();
    assert_eq!(
        sub.recv_timeout(LONG_TIMEOUT),
        Err(syncmq::RecvTimeoutError::Closed)
    );
    assert!(start.elapsed() < PROMPT);

    let sub = subs.next().unwrap();
    assert_eq!(sub.recv_deadline(Instant::now() + LONG_TIMEOUT), Ok(0));
    assert_eq!(drain(&sub), [1, 2]);
    assert_eq!(
        sub.recv_deadline(Instant::now() + LONG_TIMEOUT),
        Err(syncmq::RecvTimeoutError::Closed)
    );

    let sub = subs.next().unwrap();
    assert_eq!(sub.iter().collect::<Vec<_>>(), [0, 1, 2]);

    let sub = subs.next().unwrap();
    assert_eq!(sub.into_iter().collect::<Vec<_>>(), [0, 1, 2]);

    let sub = subs.next().unwrap();
    assert_eq!(sub.receiver().iter().collect::<Vec<_>>(), [0, 1, 2]);
    assert!(sub.receiver().recv().is_err(), "the receiver disconnects");
    assert_eq!(sub.recv(), Err(RecvError::Closed));

    let sub = subs.next().unwrap();
    assert_eq!(sub.unsubscribe(), [0, 1, 2]);
}

#[test]
fn dropping_the_last_handle_closes_the_broker() {
    let broker = Broker::<u32>::new();
    let sub = broker.subscribe("t").unwrap();
    broker.publish("t", 7).unwrap();
    drop(broker);

    assert_eq!(sub.recv(), Ok(7));
    assert_eq!(sub.recv(), Err(RecvError::Closed));
    assert_eq!(sub.try_recv(), Err(TryRecvError::Closed));
}

#[test]
fn a_remaining_clone_keeps_the_broker_open() {
    let broker = Broker::<u32>::new();
    let clone = broker.clone();
    let sub = broker.subscribe("t").unwrap();
    drop(broker);

    assert!(!clone.is_closed());
    assert_report(clone.publish("t", 1).unwrap(), 1, 0);
    assert_eq!(sub.recv(), Ok(1));
    assert_eq!(sub.try_recv(), Err(TryRecvError::Empty), "still open");
    let late = clone.subscribe("t").unwrap();
    assert_eq!(clone.subscriber_count("t"), 2);

    drop(clone);
    assert_eq!(sub.try_recv(), Err(TryRecvError::Closed));
    assert_eq!(late.try_recv(), Err(TryRecvError::Closed));
}

#[test]
fn closing_one_handle_closes_every_clone() {
    let broker = Broker::<u32>::new();
    let clone = broker.clone();
    let sub = clone.subscribe("t").unwrap();
    broker.close();

    assert!(clone.is_closed());
    assert_eq!(clone.publish("t", 1).unwrap_err(), Error::Closed);
    assert_eq!(clone.subscribe("t").unwrap_err(), Error::Closed);
    assert_eq!(sub.try_recv(), Err(TryRecvError::Closed));
}

#[test]
fn a_subscription_dropped_after_close_does_not_disturb_the_broker() {
    let broker = Broker::<u32>::new();
    let a = broker.subscribe("t").unwrap();
    let b = broker.subscribe("t").unwrap();
    broker.publish("t", 1).unwrap();
    broker.close();
    drop(a);
    assert_eq!(b.unsubscribe(), [1]);
    broker.close();
    let stats = broker.stats();
    assert_eq!((stats.subscribers, stats.topics), (0, 0));
}

#[test]
fn close_joins_the_dispatch_threads() {
    const WORKERS: usize = 2;
    let census = Arc::new(ThreadCensus::default());
    let broker = striped_broker(WORKERS);
    assert_eq!(broker.stats().dispatch_threads, 0);
    let (subs, blocked) = block_a_striped_publish(&broker, &census, WORKERS);
    assert_eq!(broker.stats().dispatch_threads, WORKERS);

    // Bounded: if close did not wake the blocked stripes, joining them would hang.
    let closer = broker.clone();
    spawn_pending(move || closer.close()).wait(PROMPT);
    // The threads have exited (their thread-locals are gone), not merely been told to.
    assert_eq!(census.live.load(Ordering::SeqCst), 0);
    assert_eq!(broker.stats().dispatch_threads, 0);

    // The publish the dispatch threads were blocked in gave up on every subscriber.
    assert_report(blocked.wait(PROMPT).unwrap(), 0, STRIPED_SUBSCRIBERS);
    for sub in &subs {
        assert_eq!(sub.try_iter().count(), 1);
        assert_eq!(sub.dropped(), 1);
        assert_eq!(sub.try_recv().unwrap_err(), TryRecvError::Closed);
    }
}

#[test]
fn dropping_the_last_handle_joins_the_dispatch_threads() {
    const WORKERS: usize = 2;
    let census = Arc::new(ThreadCensus::default());
    let broker = striped_broker(WORKERS);
    let (subs, blocked) = block_a_striped_publish(&broker, &census, WORKERS);
    // Let the blocked publish finish; its thread then lets go of its handle.
    for sub in &subs {
        sub.recv_timeout(PATIENCE).unwrap();
    }
    assert_report(blocked.wait(PATIENCE).unwrap(), STRIPED_SUBSCRIBERS, 0);
    assert_eq!(census.live.load(Ordering::SeqCst), WORKERS);

    drop(broker);
    assert_eq!(census.live.load(Ordering::SeqCst), 0);
    for sub in &subs {
        assert_eq!(sub.try_iter().count(), 1);
        assert_eq!(sub.try_recv().unwrap_err(), TryRecvError::Closed);
    }
}

// --- threaded -----------------------------------------------------------------------------

#[test]
fn close_from_many_threads_at_once_is_idempotent() {
    const THREADS: usize = 8;
    for _ in 0..20 {
        let broker = Broker::<u32>::builder()
            .dispatch_threshold(2)
            .workers(2)
            .build();
        let subs = subscribe_many(&broker, "t", 4);
        broker.publish("t", 1).unwrap();
        let start = Arc::new(std::sync::Barrier::new(THREADS));
        let closers: Vec<_> = (0..THREADS)
            .map(|_| {
                let broker = broker.clone();
                let start = start.clone();
                spawn_pending(move || {
                    start.wait();
                    broker.close();
                    broker.is_closed()
                })
            })
            .collect();
        for closer in closers {
            assert!(closer.wait(PATIENCE));
        }
        assert!(broker.is_closed());
        assert_eq!(broker.publish("t", 2).unwrap_err(), Error::Closed);
        assert_eq!(broker.subscribe("t").unwrap_err(), Error::Closed);
        assert_eq!(broker.stats().dispatch_threads, 0);
        for sub in subs {
            assert_eq!(sub.recv(), Ok(1));
            assert_eq!(sub.recv(), Err(RecvError::Closed));
        }
    }
}

/// A message whose first clone closes the broker it carries.
#[derive(Debug)]
struct ClosesOnClone(Arc<std::sync::Mutex<Option<Broker<ClosesOnClone>>>>);

impl Clone for ClosesOnClone {
    fn clone(&self) -> Self {
        let broker = self.0.lock().unwrap().take();
        if let Some(broker) = broker {
            broker.close();
        }
        ClosesOnClone(self.0.clone())
    }
}

/// The first clone of a striped publish is made on the publishing thread, for a dispatch
/// stripe, before the publish lets go of the job queue. A `close` there must not wait for
/// dispatch threads that wait for that job queue to end.
#[test]
fn close_from_a_message_clone_during_a_striped_publish_returns() {
    let broker = Broker::builder().dispatch_threshold(4).workers(2).build();
    let subs = subscribe_many(&broker, "t", 8);
    let msg = ClosesOnClone(Arc::new(std::sync::Mutex::new(Some(broker.clone()))));
    let publisher = {
        let broker = broker.clone();
        spawn_pending(move || broker.publish("t", msg).map(|report| report.routed()))
    };
    assert_eq!(publisher.wait(PROMPT), Ok(8));
    assert!(broker.is_closed());
    assert_eq!(broker.stats().dispatch_threads, 0);
    for sub in subs {
        assert_eq!(sub.try_iter().count(), 1);
        assert_eq!(sub.try_recv().unwrap_err(), TryRecvError::Closed);
    }
}

/// What the messages of one [`ClosesOnTwoDispatchThreads`] test share.
#[derive(Default)]
struct CloseRace {
    /// Off for the warm-up publish.
    armed: std::sync::atomic::AtomicBool,
    broker: std::sync::Mutex<Option<Broker<ClosesOnTwoDispatchThreads>>>,
    /// Dispatch threads that reached the clone, and their condition.
    arrived: std::sync::Mutex<usize>,
    arrived_changed: std::sync::Condvar,
    /// Clones made on the publishing thread.
    publisher_clones: AtomicUsize,
}

impl CloseRace {
    /// Waits until two dispatch threads have arrived, or `PATIENCE` passed.
    fn wait_for_both(&self) {
        let arrived = self.arrived.lock().unwrap();
        let _ = self
            .arrived_changed
            .wait_timeout_while(arrived, PATIENCE, |arrived| *arrived < 2)
            .unwrap();
    }
}

/// A message whose clones on two dispatch threads, made at the same moment, both close the
/// broker.
struct ClosesOnTwoDispatchThreads(Arc<CloseRace>);

impl std::fmt::Debug for ClosesOnTwoDispatchThreads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClosesOnTwoDispatchThreads")
    }
}

impl Clone for ClosesOnTwoDispatchThreads {
    fn clone(&self) -> Self {
        let race = &self.0;
        if race.armed.load(Ordering::SeqCst) {
            if on_dispatch_thread() {
                *race.arrived.lock().unwrap() += 1;
                race.arrived_changed.notify_all();
                race.wait_for_both();
                let broker = race.broker.lock().unwrap().clone();
                if let Some(broker) = broker {
                    broker.close();
                }
            } else if race.publisher_clones.fetch_add(1, Ordering::SeqCst) == 2 {
                // The third clone on the publishing thread is for its own stripe, made after
                // both jobs were queued. Waiting here keeps it from taking a job back before
                // a dispatch thread has.
                race.wait_for_both();
            }
        }
        ClosesOnTwoDispatchThreads(self.0.clone())
    }
}

/// Two dispatch threads whose message clones close the broker at once: the one whose `close`
/// joins the other must not wait for the other's `close`, which waits for it.
#[test]
fn close_from_clones_on_two_dispatch_threads_at_once_returns() {
    // Six subscribers in stripes of at least 2 with two dispatch threads: three stripes of
    // two, so each dispatch thread clones once, for its first subscriber.
    let broker = Broker::builder().dispatch_threshold(4).workers(2).build();
    let subs = subscribe_many(&broker, "t", 6);
    let race = Arc::new(CloseRace::default());
    *race.broker.lock().unwrap() = Some(broker.clone());
    let msg = ClosesOnTwoDispatchThreads(race.clone());
    // Unarmed: spawns the dispatch threads, which then wait for jobs.
    assert_eq!(broker.publish("t", msg.clone()).unwrap().routed(), 6);
    assert_eq!(broker.stats().dispatch_threads, 2);
    race.armed.store(true, Ordering::SeqCst);

    let publisher = {
        let broker = broker.clone();
        spawn_pending(move || broker.publish("t", msg).map(|report| report.routed()))
    };
    let Some(routed) = publisher.try_wait(PROMPT) else {
        // Deadlocked: dropping the broker would close it, and wait for the deadlock too.
        std::mem::forget((broker, subs));
        panic!("the publish did not return: the two closes wait for each other");
    };
    assert_eq!(routed, Ok(6));
    assert_eq!(
        *race.arrived.lock().unwrap(),
        2,
        "both clones on dispatch threads"
    );
    assert!(broker.is_closed());
    for sub in subs {
        assert_eq!(sub.try_iter().count(), 2);
        assert_eq!(sub.try_recv().unwrap_err(), TryRecvError::Closed);
    }
    // The messages hold the broker: let go of it.
    race.broker.lock().unwrap().take();
}

/// `close` promises that the dispatch threads have been joined when it returns. Two `close`
/// calls at once: the one that did not do the work must not return before the one that did
/// has joined the threads.
#[test]
fn close_returns_only_after_the_dispatch_threads_are_joined_even_when_racing() {
    let (entered_tx, entered_rx) = bounded(1);
    let (release_tx, release_rx) = bounded(1);
    let census = Arc::new(ThreadCensus {
        live: AtomicUsize::new(0),
        exit_hook: Some((entered_tx, release_rx)),
    });
    let broker = striped_broker(1);
    let (subs, blocked) = block_a_striped_publish(&broker, &census, 1);
    for sub in &subs {
        sub.recv_timeout(PATIENCE).unwrap();
    }
    blocked.wait(PATIENCE).unwrap();

    // The first close joins the dispatch thread, which is held up on its way out.
    let first = {
        let broker = broker.clone();
        spawn_pending(move || broker.close())
    };
    entered_rx.recv_timeout(PATIENCE).unwrap();
    // The second close must wait for that join too.
    let (tid_tx, tid_rx) = bounded(1);
    let second = {
        let broker = broker.clone();
        let census = census.clone();
        spawn_pending(move || {
            tid_tx.send(current_tid()).unwrap();
            broker.close();
            census.live.load(Ordering::SeqCst)
        })
    };
    let tid = tid_rx.recv().unwrap();
    let deadline = Instant::now() + PATIENCE;
    let live_when_second_returned = loop {
        if let Some(live) = second.try_wait(Duration::from_millis(1)) {
            break live;
        }
        // Without `/proc`, give it a second to return wrongly.
        let waiting = match &tid {
            Some(tid) => is_blocked(tid) == Some(true),
            None => second_elapsed(deadline),
        };
        if waiting || Instant::now() > deadline {
            // Blocked, as it should be: let the dispatch thread finish exiting.
            release_tx.send(()).unwrap();
            break second.wait(PATIENCE);
        }
    };
    let _ = release_tx.try_send(());
    first.wait(PATIENCE);
    assert_eq!(
        live_when_second_returned, 0,
        "close() returned while a dispatch thread was still running"
    );
}

/// Whether a second has passed since `deadline - PATIENCE`.
fn second_elapsed(deadline: Instant) -> bool {
    Instant::now() + PATIENCE > deadline + Duration::from_secs(1)
}

/// Fills a subscriber's queue and blocks a publish on it, closes the broker while the publish
/// is really waiting, and checks that it returns at once and counts the send as dropped.
fn close_releases_a_publish_waiting_on_a_full_queue(overflow: Overflow) {
    let broker = Broker::<u32>::builder()
        .capacity(1)
        .overflow(overflow)
        .build();
    let stalled = broker.subscribe("t").unwrap();
    let fast = broker.subscribe("t").unwrap();
    assert_report(broker.publish("t", 0).unwrap(), 2, 0);
    assert_eq!(fast.recv(), Ok(0));

    let (tid_tx, tid_rx) = bounded(1);
    let publisher = {
        let broker = broker.clone();
        spawn_pending(move || {
            tid_tx.send(current_tid()).unwrap();
            let start = Instant::now();
            let report = broker.publish("t", 1);
            (report, start.elapsed(), Instant::now())
        })
    };
    let tid = tid_rx.recv().unwrap();
    // The fast subscriber has it: the publish went past its first phase and is waiting only
    // for `stalled`.
    assert_eq!(fast.recv_timeout(PATIENCE), Ok(1));
    wait_until_blocked(tid.as_deref());

    let closed_at = Instant::now();
    broker.close();
    let (report, took, returned_at) = publisher.wait(PROMPT);
    assert!(
        returned_at.duration_since(closed_at) < PROMPT,
        "the publish returned {:?} after close",
        returned_at.duration_since(closed_at)
    );
    assert!(took < LONG_TIMEOUT, "the publish timed out instead");
    assert_report(report.unwrap(), 1, 1);
    assert_eq!(stalled.dropped(), 1);
    assert_eq!(fast.dropped(), 0);
    let stats = broker.stats();
    assert_eq!((stats.published, stats.delivered, stats.dropped), (2, 3, 1));

    assert_eq!(stalled.recv(), Ok(0));
    assert_eq!(stalled.recv(), Err(RecvError::Closed));
    assert_eq!(fast.recv(), Err(RecvError::Closed));
}

#[test]
#[cfg_attr(miri, ignore)] // timing: asserts that close takes effect within a wall-clock bound
fn close_releases_a_publish_blocked_on_a_full_queue() {
    close_releases_a_publish_waiting_on_a_full_queue(Overflow::Block);
}

#[test]
#[cfg_attr(miri, ignore)] // timing: asserts that close takes effect within a wall-clock bound
fn close_releases_a_publish_waiting_out_a_long_timeout() {
    close_releases_a_publish_waiting_on_a_full_queue(Overflow::Timeout(LONG_TIMEOUT));
}

#[derive(Debug, Clone, Copy)]
enum Receive {
    Recv,
    RecvTimeout,
    Iter,
}

#[test]
#[cfg_attr(miri, ignore)] // timing: asserts that close takes effect within a wall-clock bound
fn close_wakes_every_subscriber_blocked_in_recv_recv_timeout_and_iter() {
    const MESSAGES: u32 = 5;
    const PER_MODE: usize = 3;
    let broker = Broker::<u32>::builder()
        .capacity(MESSAGES as usize)
        .overflow(Overflow::Block)
        .build();
    let (ready_tx, ready_rx) = unbounded();
    let mut results = Vec::new();
    for mode in [Receive::Recv, Receive::RecvTimeout, Receive::Iter] {
        for _ in 0..PER_MODE {
            let sub = broker.subscribe("t").unwrap();
            let ready = ready_tx.clone();
            results.push(spawn_pending(move || {
                let tid = current_tid();
                let mut got = Vec::new();
                let note = |got: &mut Vec<u32>, msg: u32| {
                    got.push(msg);
                    if got.len() == MESSAGES as usize {
                        // From here on this thread blocks in its next receive.
                        ready.send(tid.clone()).unwrap();
                    }
                };
                let end = match mode {
                    Receive::Recv => loop {
                        match sub.recv() {
                            Ok(msg) => note(&mut got, msg),
                            Err(err) => break format!("{err:?}"),
                        }
                    },
                    Receive::RecvTimeout => loop {
                        match sub.recv_timeout(LONG_TIMEOUT) {
                            Ok(msg) => note(&mut got, msg),
                            Err(err) => break format!("{err:?}"),
                        }
                    },
                    Receive::Iter => {
                        for msg in sub.iter() {
                            note(&mut got, msg);
                        }
                        format!("{:?}", sub.recv().unwrap_err())
                    }
                };
                (mode, got, end, Instant::now())
            }));
        }
    }
    drop(ready_tx);
    for n in 0..MESSAGES {
        assert_report(broker.publish("t", n).unwrap(), 3 * PER_MODE, 0);
    }
    for _ in 0..3 * PER_MODE {
        let tid = ready_rx.recv_timeout(PATIENCE).unwrap();
        wait_until_blocked(tid.as_deref());
    }

    let closed_at = Instant::now();
    broker.close();
    for result in results {
        let (mode, got, end, ended_at) = result.wait(PROMPT);
        assert_eq!(got, (0..MESSAGES).collect::<Vec<_>>(), "{mode:?}");
        assert_eq!(end, "Closed", "{mode:?}");
        assert!(ended_at.duration_since(closed_at) < PROMPT, "{mode:?}");
    }
}

#[test]
fn dropping_the_last_handle_wakes_a_blocked_subscriber() {
    let broker = Broker::<u32>::new();
    let sub = broker.subscribe("t").unwrap();
    let (tid_tx, tid_rx) = bounded(1);
    let waiter = spawn_pending(move || {
        tid_tx.send(current_tid()).unwrap();
        let first = sub.recv();
        (first, sub.recv())
    });
    // Publish from another thread's clone, which then goes away: the main handle is the last.
    let clone = broker.clone();
    thread::spawn(move || clone.publish("t", 5).unwrap())
        .join()
        .unwrap();
    wait_until_blocked(tid_rx.recv().unwrap().as_deref());
    drop(broker);
    let (first, second) = waiter.wait(PROMPT);
    // Either it received 5 before blocking again, or 5 was still queued: both are drained first.
    assert_eq!(first, Ok(5));
    assert_eq!(second, Err(RecvError::Closed));
}

#[test]
fn subscribers_drain_what_was_queued_at_close_on_their_own_threads() {
    const MESSAGES: u32 = 50;
    let broker = Broker::<u32>::builder().capacity(MESSAGES as usize).build();
    let subs = subscribe_many(&broker, "t", 6);
    for n in 0..MESSAGES {
        broker.publish("t", n).unwrap();
    }
    broker.close();
    let results: Vec<_> = subs
        .into_iter()
        .map(|sub| spawn_pending(move || (sub.iter().collect::<Vec<_>>(), sub.recv())))
        .collect();
    for result in results {
        let (got, end) = result.wait(PATIENCE);
        assert_eq!(got, (0..MESSAGES).collect::<Vec<_>>());
        assert_eq!(end, Err(RecvError::Closed));
    }
}

#[test]
fn a_subscriber_thread_that_panics_holding_a_message_does_not_stall_the_broker() {
    let broker = Broker::<u32>::builder()
        .capacity(1)
        .overflow(Overflow::Block)
        .build();
    let other = broker.subscribe("t").unwrap();
    let doomed = broker.subscribe("t").unwrap();
    let (got_tx, got_rx) = bounded(1);
    let panicker = thread::spawn(move || {
        let msg = doomed.recv().unwrap();
        got_tx.send(msg).unwrap();
        panic!("subscriber gives up while holding {msg}");
    });
    broker.publish("t", 0).unwrap();
    assert_eq!(got_rx.recv_timeout(PATIENCE), Ok(0));
    assert!(panicker.join().is_err(), "the subscriber thread panicked");
    assert_eq!(other.recv(), Ok(0));

    // The panicking thread's subscription is gone: with `Block`, a publish would otherwise wait
    // on it forever once its queue filled.
    assert_eq!(broker.subscriber_count("t"), 1);
    for n in 1..=10 {
        assert_report(broker.publish("t", n).unwrap(), 1, 0);
        assert_eq!(other.recv(), Ok(n));
    }
    let late = broker.subscribe("t").unwrap();
    assert_report(broker.publish("t", 11).unwrap(), 2, 0);
    assert_eq!((other.recv(), late.recv()), (Ok(11), Ok(11)));
    broker.close();
    assert_eq!(other.recv(), Err(RecvError::Closed));
    assert_eq!(late.recv(), Err(RecvError::Closed));
}

#[test]
fn a_publish_blocked_on_a_subscriber_whose_thread_panics_is_released() {
    let broker = Broker::<u32>::builder()
        .capacity(1)
        .overflow(Overflow::Block)
        .build();
    let other = broker.subscribe("t").unwrap();
    let doomed = broker.subscribe("t").unwrap();
    broker.publish("t", 0).unwrap();
    assert_eq!(other.recv(), Ok(0));

    let (go_tx, go_rx) = bounded::<()>(0);
    let panicker = thread::spawn(move || {
        let _sub = doomed;
        go_rx.recv().unwrap();
        panic!("subscriber dies without reading");
    });
    let (tid_tx, tid_rx) = bounded(1);
    let publisher = {
        let broker = broker.clone();
        spawn_pending(move || {
            tid_tx.send(current_tid()).unwrap();
            broker.publish("t", 1)
        })
    };
    assert_eq!(other.recv_timeout(PATIENCE), Ok(1));
    wait_until_blocked(tid_rx.recv().unwrap().as_deref());
    go_tx.send(()).unwrap();
    assert!(panicker.join().is_err());

    let report = publisher.wait(PROMPT);
    // The subscriber left during the publish: not delivered, counted as dropped.
    assert_report(report.unwrap(), 1, 1);
    assert_eq!(broker.subscriber_count("t"), 1);
    assert_report(broker.publish("t", 2).unwrap(), 1, 0);
    assert_eq!(other.recv(), Ok(2));
    let stats = broker.stats();
    assert_eq!(stats.delivered + stats.dropped, 2 + 2 + 1);
}

#[test]
fn a_panic_on_a_thread_using_the_broker_poisons_nothing() {
    let broker = Broker::<u32>::builder()
        .dispatch_threshold(2)
        .workers(2)
        .build();
    let keeper = broker.subscribe("t").unwrap();
    for round in 0..10 {
        let worker = {
            let broker = broker.clone();
            thread::spawn(move || {
                let sub = broker.subscribe("t").unwrap();
                broker.publish("t", round).unwrap();
                let msg = sub.recv().unwrap();
                let _stats = broker.stats();
                panic!("worker {round} panics after receiving {msg}");
            })
        };
        assert!(worker.join().is_err());
        assert_eq!(keeper.recv(), Ok(round));
    }
    // The same, caught on this thread.
    let caught = panic::catch_unwind(AssertUnwindSafe(|| {
        let _sub = broker.subscribe("t").unwrap();
        broker.publish("t", 99).unwrap();
        panic!("boom");
    }));
    assert!(caught.is_err());
    assert_eq!(keeper.recv(), Ok(99));
    assert_eq!(broker.subscriber_count("t"), 1);
    let fresh = broker.subscribe("t").unwrap();
    assert_report(broker.publish("t", 100).unwrap(), 2, 0);
    assert_eq!(fresh.recv(), Ok(100));
    assert_eq!(keeper.recv(), Ok(100));
    broker.close();
    assert_eq!(keeper.recv(), Err(RecvError::Closed));
}

// --- stress -------------------------------------------------------------------------------

/// Publishers and subscribers at full speed, and a close in the middle: every thread ends, and
/// every message counted as delivered is received by a subscriber draining after the close.
#[test]
#[cfg_attr(miri, ignore)] // stress: too slow under Miri
fn close_in_the_middle_of_traffic_ends_every_thread_and_loses_nothing_delivered() {
    const PUBLISHERS: usize = 3;
    const SUBSCRIBERS: usize = 4;
    const BEFORE_CLOSE: u64 = 100;
    let rounds = 6 * stress_factor();
    let policies = [
        Overflow::Block,
        Overflow::Drop,
        Overflow::Timeout(Duration::from_micros(200)),
    ];
    for round in 0..rounds {
        let overflow = policies[round % policies.len()];
        let broker = Broker::<(usize, u64)>::builder()
            .capacity(4)
            .overflow(overflow)
            .dispatch_threshold(2)
            .workers(2)
            .build();
        let subscribers: Vec<_> = (0..SUBSCRIBERS)
            .map(|_| {
                let sub = broker.subscribe("t").unwrap();
                spawn_pending(move || {
                    let mut last = [None::<u64>; PUBLISHERS];
                    let mut received = 0u64;
                    for (publisher, seq) in sub.iter() {
                        assert!(last[publisher] < Some(seq), "out of order or duplicate");
                        last[publisher] = Some(seq);
                        received += 1;
                    }
                    (received, sub.dropped())
                })
            })
            .collect();
        let (halfway_tx, halfway_rx) = unbounded();
        let publishers: Vec<_> = (0..PUBLISHERS)
            .map(|id| {
                let broker = broker.clone();
                let halfway = halfway_tx.clone();
                spawn_pending(move || {
                    let (mut ok, mut delivered, mut dropped) = (0u64, 0u64, 0u64);
                    for seq in 0.. {
                        match broker.publish("t", (id, seq)) {
                            Ok(report) => {
                                assert_eq!(report.routed(), SUBSCRIBERS);
                                ok += 1;
                                delivered += report.delivered as u64;
                                dropped += report.dropped as u64;
                            }
                            Err(err) => {
                                assert_eq!(err, Error::Closed);
                                break;
                            }
                        }
                        if seq == BEFORE_CLOSE {
                            halfway.send(()).unwrap();
                        }
                    }
                    (ok, delivered, dropped)
                })
            })
            .collect();
        drop(halfway_tx);
        for _ in 0..PUBLISHERS {
            halfway_rx.recv_timeout(PATIENCE).unwrap();
        }
        broker.close();

        let (mut ok, mut delivered, mut dropped) = (0, 0, 0);
        for publisher in publishers {
            let (o, de, dr) = publisher.wait(PATIENCE);
            ok += o;
            delivered += de;
            dropped += dr;
        }
        let mut received = 0;
        for subscriber in subscribers {
            let (r, sub_dropped) = subscriber.wait(PATIENCE);
            // Subscribed throughout: every successful publish was routed to it.
            assert_eq!(r + sub_dropped, ok, "round {round} ({overflow:?})");
            received += r;
        }
        let stats = broker.stats();
        assert_eq!(stats.published, ok);
        assert_eq!((stats.delivered, stats.dropped), (delivered, dropped));
        assert_eq!(delivered + dropped, ok * SUBSCRIBERS as u64);
        assert_eq!(received, delivered, "round {round} ({overflow:?})");
        if overflow == Overflow::Block {
            // Only the publishes cut short by the close can have dropped anything.
            assert!(dropped <= (PUBLISHERS * SUBSCRIBERS) as u64);
        }
    }
}

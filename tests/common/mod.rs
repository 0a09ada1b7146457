//! Helpers shared by the integration tests: bounded waits on other threads, watching a thread
//! block through `/proc`, recognising a dispatch thread, per-publisher order checks, small
//! shorthands for brokers, subscriptions and proptest configurations, and (with the `nats`
//! feature) bridges with one export or import and a bridge import stuck on full queues. Each
//! test binary uses `mod common;` and takes what it needs.

#![allow(
    dead_code,
    reason = "each test binary compiles this module and uses only some of its helpers"
)]

use std::fmt::Debug;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, bounded};
use proptest::test_runner::{Config as ProptestConfig, FileFailurePersistence};
use syncmq::{Broker, PublishReport, SubscribeOptions, Subscription};

/// How long to wait for another thread before declaring the test failed, so that a broken
/// broker fails the test instead of hanging the suite.
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

/// How long a guarded operation may take before the test fails instead of hanging. Generous: on
/// a 2-core machine saturated by other processes, the threaded fan-outs through the dispatch
/// pool take over 10 s (every wake-up waits for a scheduler slot), though they finish.
pub(crate) const GUARD: Duration = Duration::from_secs(60);

// --- threads awaited with a bound ---------------------------------------------------------

/// A thread whose result is awaited with a bound.
pub(crate) struct Pending<R> {
    result: Receiver<R>,
    handle: thread::JoinHandle<()>,
}

impl<R> Pending<R> {
    /// Waits at most `within` for the thread's result. Passes on its panic, if it panicked.
    #[track_caller]
    pub(crate) fn wait(self, within: Duration) -> R {
        match self.result.recv_timeout(within) {
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout) => panic!("thread still running after {within:?}"),
            Err(RecvTimeoutError::Disconnected) => match self.handle.join() {
                Err(payload) => panic::resume_unwind(payload),
                Ok(()) => unreachable!("the thread ended without a result"),
            },
        }
    }

    /// The result, if the thread has finished within `within`.
    pub(crate) fn try_wait(&self, within: Duration) -> Option<R> {
        self.result.recv_timeout(within).ok()
    }
}

/// Runs `f` on a new thread, to be awaited with a bound by [`Pending::wait`].
pub(crate) fn spawn_pending<R: Send + 'static>(
    f: impl FnOnce() -> R + Send + 'static,
) -> Pending<R> {
    let (tx, result) = bounded(1);
    let handle = thread::spawn(move || {
        let _ = tx.send(f());
    });
    Pending { result, handle }
}

/// A thread whose result is awaited with a deadline: a thread that stays blocked because of a
/// bug fails the test instead of hanging it.
pub(crate) struct Guarded<R> {
    result: Receiver<thread::Result<R>>,
}

/// Spawns `f` on a new thread; [`Guarded::join`] waits at most [`GUARD`] for it.
pub(crate) fn spawn_guarded<R: Send + 'static>(
    f: impl FnOnce() -> R + Send + 'static,
) -> Guarded<R> {
    let (tx, rx) = bounded(1);
    thread::spawn(move || {
        let _ = tx.send(panic::catch_unwind(AssertUnwindSafe(f)));
    });
    Guarded { result: rx }
}

impl<R> Guarded<R> {
    /// The thread's result; passes its panic on, and fails if it is still running after
    /// [`GUARD`].
    pub(crate) fn join(self) -> R {
        match self.result.recv_timeout(GUARD) {
            Ok(Ok(result)) => result,
            Ok(Err(payload)) => panic::resume_unwind(payload),
            Err(_) => panic!("thread still blocked after {GUARD:?}"),
        }
    }
}

// --- polling and blocked threads ----------------------------------------------------------

/// Polls (bounded by [`PATIENCE`]) until `condition` holds.
#[track_caller]
pub(crate) fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

/// The kernel id of the calling thread, to watch it from another thread with
/// [`wait_until_blocked`] or [`is_blocked`]. `None` where `/proc` is not available.
pub(crate) fn current_tid() -> Option<String> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    Some(link.file_name()?.to_str()?.to_owned())
}

/// Whether thread `tid` is asleep in the kernel, i.e. really blocked, not just about to block.
/// `None` if it has exited.
pub(crate) fn is_blocked(tid: &str) -> Option<bool> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // The state is the first field after the parenthesised thread name.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    Some(state == Some('S'))
}

/// Polls (bounded) until the thread `tid` is blocked. A no-op without `/proc`.
#[track_caller]
pub(crate) fn wait_until_blocked(tid: Option<&str>) {
    let Some(tid) = tid else { return };
    wait_until("the thread is blocked", || {
        is_blocked(tid).expect("the watched thread has exited")
    });
}

// --- dispatch threads ---------------------------------------------------------------------

/// The name prefix of the broker's dispatch threads, named `syncmq-dispatch-{i}` in
/// `src/dispatch.rs`.
pub(crate) const DISPATCH_PREFIX: &str = "syncmq-dispatch-";

/// Whether the calling thread is one of a broker's dispatch threads.
pub(crate) fn on_dispatch_thread() -> bool {
    thread::current()
        .name()
        .is_some_and(|name| name.starts_with(DISPATCH_PREFIX))
}

// --- workload size ------------------------------------------------------------------------

/// Scales the stress tests: `SYNCMQ_STRESS=10` runs ten times as much. Default 1, sized for a
/// few seconds on a 2-core machine in a debug build.
pub(crate) fn stress_factor() -> usize {
    std::env::var("SYNCMQ_STRESS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

// --- brokers and subscriptions ------------------------------------------------------------

/// The default subscription options, to build on.
pub(crate) fn opts() -> SubscribeOptions {
    SubscribeOptions::default()
}

/// `n` plain subscriptions to `topic`.
pub(crate) fn subscribe_many<T: Clone + Send + 'static>(
    broker: &Broker<T>,
    topic: &str,
    n: usize,
) -> Vec<Subscription<T>> {
    (0..n).map(|_| broker.subscribe(topic).unwrap()).collect()
}

/// `n` members of queue group `group` on `pattern`.
pub(crate) fn subscribe_group_many<T: Clone + Send + 'static>(
    broker: &Broker<T>,
    pattern: &str,
    group: &str,
    n: usize,
) -> Vec<Subscription<T>> {
    (0..n)
        .map(|_| broker.subscribe_group(pattern, group).unwrap())
        .collect()
}

/// Waits (without sleeping; bounded by [`PATIENCE`]) until `broker` has counted `n`
/// publishes: a publish is counted after it has taken its snapshot of the subscribers and
/// before it delivers, so a publish on another thread is then committed to its subscribers.
#[track_caller]
pub(crate) fn wait_for_published<T: Clone + Send + 'static>(broker: &Broker<T>, n: u64) {
    let deadline = Instant::now() + PATIENCE;
    while broker.stats().published < n {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {n} publishes"
        );
        thread::yield_now();
    }
}

/// Receives a background publish's report and how long the publish took.
pub(crate) type PublishDone = Receiver<(PublishReport, Duration)>;

/// Publishes `msg` to `topic` on another thread; returns a receiver for the report and how long
/// the publish took, sent when `publish` returns. The receiver disconnects if it panics.
pub(crate) fn publish_in_background<T: Clone + Send + 'static>(
    broker: &Broker<T>,
    topic: &'static str,
    msg: T,
) -> PublishDone {
    let broker = broker.clone();
    let (done_tx, done_rx) = bounded(1);
    thread::spawn(move || {
        let start = Instant::now();
        let report = broker.publish(topic, msg).unwrap();
        let _ = done_tx.send((report, start.elapsed()));
    });
    done_rx
}

/// Receives everything queued now.
pub(crate) fn drain<T>(sub: &Subscription<T>) -> Vec<T> {
    sub.try_iter().collect()
}

#[track_caller]
pub(crate) fn assert_report(report: PublishReport, delivered: usize, dropped: usize) {
    assert_eq!(
        (report.delivered, report.dropped),
        (delivered, dropped),
        "report (delivered, dropped)"
    );
}

/// Publishes `0..count` to `topic` from this thread, checking that each publish reaches every
/// one of `subs` (which must be all of `topic`'s subscribers, with room for `count` messages)
/// and drops nothing; then that each of `subs` holds exactly `0..count`, in order, and has
/// dropped nothing.
#[track_caller]
pub(crate) fn publish_in_order_to_all(
    broker: &Broker<u32>,
    topic: &str,
    subs: &[Subscription<u32>],
    count: u32,
) {
    for i in 0..count {
        let report = broker.publish(topic, i).unwrap();
        assert_eq!(
            (report.delivered, report.dropped, report.routed()),
            (subs.len(), 0, subs.len()),
            "message {i}: report (delivered, dropped, routed)"
        );
    }
    for sub in subs {
        assert_eq!(sub.len(), count as usize);
        assert_eq!(drain(sub), (0..count).collect::<Vec<_>>());
        assert_eq!(sub.dropped(), 0);
    }
}

// --- per-publisher order ------------------------------------------------------------------

/// Checks, message by message, that each publisher's messages arrive in strictly increasing
/// sequence order (so also without duplicates). Messages are `(publisher, sequence number)`.
pub(crate) struct OrderCheck<S> {
    /// What is checked, for the failure message; may be empty.
    what: String,
    last: Vec<Option<S>>,
    /// Messages seen so far.
    pub(crate) count: u64,
}

impl<S: Ord + Copy + Debug> OrderCheck<S> {
    /// A check for publishers `0..publishers` (more are added as they are seen).
    pub(crate) fn new(publishers: usize) -> Self {
        OrderCheck {
            what: String::new(),
            last: vec![None; publishers],
            count: 0,
        }
    }

    /// A check whose failures name `what`.
    pub(crate) fn named(what: &str) -> Self {
        OrderCheck {
            what: format!("{what}: "),
            ..OrderCheck::new(0)
        }
    }

    #[track_caller]
    pub(crate) fn see(&mut self, (publisher, seq): (usize, S)) {
        if self.last.len() <= publisher {
            self.last.resize(publisher + 1, None);
        }
        assert!(
            self.last[publisher] < Some(seq),
            "{}publisher {publisher}: seq {seq:?} after {:?} (out of order or duplicate)",
            self.what,
            self.last[publisher]
        );
        self.last[publisher] = Some(seq);
        self.count += 1;
    }
}

/// Publishes `(id, 0..per_publisher)` to `topic` from each of `publishers` threads, started
/// together, checking that each publish reaches all `subscribers` and drops nothing; returns
/// when every publisher is done, waiting at most `within` for each.
#[track_caller]
pub(crate) fn publish_in_order_from_threads(
    broker: &Broker<(usize, u64)>,
    topic: &'static str,
    publishers: usize,
    per_publisher: u64,
    subscribers: usize,
    within: Duration,
) {
    let start = Arc::new(Barrier::new(publishers));
    let publishers: Vec<_> = (0..publishers)
        .map(|id| {
            let broker = broker.clone();
            let start = start.clone();
            spawn_pending(move || {
                start.wait();
                for seq in 0..per_publisher {
                    assert_report(broker.publish(topic, (id, seq)).unwrap(), subscribers, 0);
                }
            })
        })
        .collect();
    for publisher in publishers {
        publisher.wait(within);
    }
}

/// Checks that `seen` holds each publisher's messages in publish order.
#[track_caller]
pub(crate) fn assert_per_publisher_order<S: Ord + Copy + Debug>(seen: &[(usize, S)], what: &str) {
    let mut order = OrderCheck::named(what);
    for &msg in seen {
        order.see(msg);
    }
}

/// Checks that `got` holds, for each of `publishers` publishers, exactly the sequence numbers
/// `0..per_publisher`, each publisher's in order.
#[track_caller]
pub(crate) fn assert_all_in_publisher_order(
    got: &[(usize, u64)],
    publishers: usize,
    per_publisher: u64,
) {
    let mut next = vec![0u64; publishers];
    for &(publisher, seq) in got {
        assert_eq!(
            seq, next[publisher],
            "publisher {publisher}: expected seq {}, got {seq}",
            next[publisher]
        );
        next[publisher] += 1;
    }
    assert!(
        next.iter().all(|&n| n == per_publisher),
        "missing messages: {next:?}"
    );
}

// --- messages and errors ------------------------------------------------------------------

/// Checks the style of an error message: no capital first letter, no closing period.
#[track_caller]
pub(crate) fn assert_lowercase_without_period(text: &str) {
    let first = text.chars().next().expect("empty message");
    assert!(!first.is_uppercase(), "starts uppercase: {text:?}");
    assert!(!text.ends_with('.'), "ends with a period: {text:?}");
}

// --- topics -------------------------------------------------------------------------------

/// Whether `character` may appear in a topic token, by a definition independent of the
/// crate's: not whitespace, not a control or format character (Unicode general categories Cc
/// and Cf, from the `unicode-general-category` crate), not a noncharacter.
pub(crate) fn is_printable(character: char) -> bool {
    use unicode_general_category::{GeneralCategory, get_general_category};

    let code = u32::from(character);
    let noncharacter = (0xFDD0..=0xFDEF).contains(&code) || code % 0x1_0000 >= 0xFFFE;
    !character.is_whitespace()
        && !noncharacter
        && !matches!(
            get_general_category(character),
            GeneralCategory::Control | GeneralCategory::Format
        )
}

// --- proptest -----------------------------------------------------------------------------

/// The default proptest configuration, keeping the failures found in the file at `path`
/// (relative to the crate root).
pub(crate) fn proptest_config_persisting_to(path: &'static str) -> ProptestConfig {
    ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(path))),
        ..ProptestConfig::default()
    }
}

// --- NATS bridge --------------------------------------------------------------------------

/// A bridge of `broker` through the NATS server at `url` exporting `pattern`, with defaults.
#[cfg(feature = "nats")]
#[track_caller]
pub(crate) fn export_bridge<T>(broker: &Broker<T>, url: &str, pattern: &str) -> syncmq::Bridge
where
    T: syncmq::Codec + Clone + Send + 'static,
{
    syncmq::Bridge::builder(broker, url)
        .export(pattern)
        .build()
        .unwrap()
}

/// A bridge of `broker` through the NATS server at `url` importing `pattern`, with defaults.
#[cfg(feature = "nats")]
#[track_caller]
pub(crate) fn import_bridge<T>(broker: &Broker<T>, url: &str, pattern: &str) -> syncmq::Bridge
where
    T: syncmq::Codec + Clone + Send + 'static,
{
    syncmq::Bridge::builder(broker, url)
        .import(pattern)
        .build()
        .unwrap()
}

/// A bridge import stuck on full local queues, set up by [`stuck_import`].
#[cfg(feature = "nats")]
pub(crate) struct StuckImport {
    /// The broker the import publishes into.
    pub(crate) broker: Broker<String>,
    /// The bridge importing `stuck.>` into `broker`.
    pub(crate) importing: syncmq::Bridge,
    /// `broker`'s subscribers of `stuck.>`: each holds "first" and never reads.
    pub(crate) subs: Vec<Subscription<String>>,
    /// The bridge that exported "first" and "second" to `stuck.x` (it keeps its broker).
    pub(crate) exporting: syncmq::Bridge,
}

/// Sets up, through the NATS server at `url`, a bridge import stuck on full local queues. The
/// local broker is built by `builder`, with queues of one message and [`Overflow::Block`];
/// `subscribers` subscribers of `stuck.>` never read; a bridge imports `stuck.>` into it,
/// closing within `close_timeout`. A second bridge exports "first" and "second" to
/// `stuck.x`: the first import fills every queue, and the second has nowhere to go.
///
/// Returns once the broker has counted the second import's publish, which it does before
/// delivering: that publish has started and is committed to the full queues, where it waits
/// until the bridge closes. It may not be blocked yet when this returns.
///
/// [`Overflow::Block`]: syncmq::Overflow::Block
#[cfg(feature = "nats")]
pub(crate) fn stuck_import(
    url: &str,
    builder: syncmq::BrokerBuilder<String>,
    subscribers: usize,
    close_timeout: Duration,
) -> StuckImport {
    use syncmq::{Bridge, Overflow};

    let broker = builder.capacity(1).overflow(Overflow::Block).build();
    let importing = Bridge::builder(&broker, url)
        .import("stuck.>")
        .close_timeout(close_timeout)
        .build()
        .unwrap();
    let subs = subscribe_many(&broker, "stuck.>", subscribers);
    let exporter = Broker::<String>::new();
    let exporting = export_bridge(&exporter, url, "stuck.>");
    exporter.publish("stuck.x", "first".into()).unwrap();
    exporter.publish("stuck.x", "second".into()).unwrap();
    wait_for_published(&broker, 2);
    StuckImport {
        broker,
        importing,
        subs,
        exporting,
    }
}

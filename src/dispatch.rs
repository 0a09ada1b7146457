//! The dispatch pool: broker-owned threads that deliver stripes of large fan-outs.
//!
//! A publish to many subscribers is cut into stripes of consecutive subscribers. The publishing
//! thread queues every stripe but the first as a [`Job`] and delivers the first stripe itself.
//! Then it runs itself each of its jobs that no dispatch thread has taken yet (a job is a
//! [`Slot`], claimed once, by whoever comes first), and waits for the outcomes of the others.
//! So a publish makes progress even when every dispatch thread is busy.
//!
//! A publishing thread never runs *another* publish's job: that job may wait on a full queue of
//! a subscriber this publish has nothing to do with (one that blocks, or whose consumer is this
//! very thread, publishing from a pipeline stage). A stalled subscriber delays only the
//! publishes that reach it.
//!
//! Why publishes cannot overtake each other: a publish returns only when all of its stripes
//! are done, and each subscriber is in exactly one stripe. So for any one subscriber, the
//! messages of one publishing thread arrive in the order they were published.
//!
//! Threads are spawned lazily (the first publish that needs them), never more than the
//! configured `workers`, never per publish, and named `syncmq-dispatch-{i}`. They are joined by
//! [`Pool::shutdown`], which `Broker::close` calls.

use std::any::Any;
use std::cell::Cell;
use std::ops::Range;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, select, unbounded};
use parking_lot::Mutex;

use crate::delivery::{BridgeImport, Context, Outcome, PublishedTopic, deliver};
use crate::registry::Route;
use crate::subscriber::Origin;

/// What a finished stripe reports: its outcome, or the panic of a user `Clone` or `Drop` impl.
type StripeResult = Result<Outcome, Box<dyn Any + Send>>;

/// A queued job: taken by the first of a dispatch thread and its own publish to claim it. The
/// queue and the publish each hold it; whoever finds it empty has nothing to do.
type Slot<T> = Arc<Mutex<Option<Job<T>>>>;

/// Takes the job out of `slot`, unless someone already has.
fn claim<T>(slot: &Slot<T>) -> Option<Job<T>> {
    slot.lock().take()
}

/// One stripe of one publish.
struct Job<T> {
    /// The publish's snapshot of the topic's subscribers.
    route: Arc<Route<T>>,
    /// The part of `route.subscribers` this job delivers to.
    stripe: Range<usize>,
    /// This stripe's copy of the message.
    msg: T,
    /// The publish's overall deadline (`publish_timeout`), if any.
    deadline: Option<Instant>,
    /// The publish's bridge import, if it is one: its origin and its own handle on the
    /// cancel signal (see [`BridgeImport`]).
    import: Option<(Origin, Receiver<()>)>,
    /// The topic published to, shared by every stripe of the publish.
    topic: Arc<str>,
    /// Where the outcome goes; the publish waits on the other end.
    done: Sender<StripeResult>,
}

impl<T: Clone> Job<T> {
    fn run(self, closing: &Receiver<()>) {
        let Job {
            route,
            stripe,
            msg,
            deadline,
            import,
            topic,
            done,
        } = self;
        let topic = PublishedTopic::from_shared(&topic);
        let context = Context {
            closing,
            deadline,
            import: import.as_ref().map(|(origin, cancel)| BridgeImport {
                origin: *origin,
                cancel,
            }),
            topic: &topic,
        };
        // A panic here can only come from the user's `Clone` or `Drop` impl. Catch it so the
        // dispatch thread survives, and hand it to the publishing thread, which resumes it: the
        // user sees the panic where it would have happened without the pool.
        let result = panic::catch_unwind(AssertUnwindSafe(|| {
            deliver(&route.subscribers[stripe], &[], msg, context)
        }));
        // Drop our hold on the subscribers *before* reporting, so that when `publish` returns
        // no snapshot of ours keeps a closed subscriber's queue connected.
        drop(route);
        // The publish waits until every stripe reports, so the receiver is alive; ignore the
        // error anyway rather than panic on a dispatch thread.
        let _ = done.send(result);
    }
}

/// The pool's mutable state. Lock order: `Pool::state` is taken alone, or (in `shutdown`) under
/// `Pool::joining`; never while holding the registry lock, and never held across a send or a
/// join.
struct PoolState<T> {
    /// Sending side of the job queue; `None` once shut down.
    jobs: Option<Sender<Slot<T>>>,
    /// Spawned threads, in spawn order.
    threads: Vec<JoinHandle<()>>,
    /// Spawn attempts that failed. Publishing goes on without those threads.
    spawn_failures: u64,
}

/// The broker's dispatch threads and their shared job queue.
pub(crate) struct Pool<T> {
    state: Mutex<PoolState<T>>,
    /// Receiving side of the job queue, cloned into each thread.
    job_queue: Receiver<Slot<T>>,
    /// The broker's close signal, cloned into each thread.
    closing: Receiver<()>,
    /// Upper bound on threads.
    limit: usize,
    /// Held by `shutdown` while it joins, so that a second, concurrent `close` also returns
    /// only once every thread is joined. It is the one guard held across a blocking call. A
    /// dispatch thread of this pool (closing the broker from a message's `Clone` or `Drop`)
    /// only tries it: the holder may be joining that very thread.
    joining: Mutex<()>,
    /// Unique per pool, and never 0: its broker's id (`Shared::id`), which is what
    /// `DISPATCH_POOL` holds on this pool's threads.
    id: u64,
}

thread_local! {
    /// The id of the pool this thread dispatches for, or 0 (no broker has id 0).
    static DISPATCH_POOL: Cell<u64> = const { Cell::new(0) };
}

/// A publish's handle on the pool, taken once per striped publish.
pub(crate) struct Lease<T> {
    jobs: Sender<Slot<T>>,
}

impl<T: Clone + Send + 'static> Pool<T> {
    /// A pool of at most `limit` threads for the broker whose id is `id` (not 0), closed by
    /// `closing`.
    pub(crate) fn new(limit: usize, closing: Receiver<()>, id: u64) -> Self {
        debug_assert_ne!(id, 0, "0 marks threads that dispatch for no pool");
        let (jobs, job_queue) = unbounded();
        Pool {
            state: Mutex::new(PoolState {
                jobs: Some(jobs),
                threads: Vec::new(),
                spawn_failures: 0,
            }),
            job_queue,
            closing,
            limit,
            joining: Mutex::new(()),
            id,
        }
    }

    /// Makes sure `wanted` threads (at most the limit) are running and returns a handle for
    /// queueing jobs; `None` after shutdown, or if no thread could be spawned (queued jobs
    /// would then never leave the queue, even once their publishes ran them).
    pub(crate) fn lease(&self, wanted: usize) -> Option<Lease<T>> {
        let mut state = self.state.lock();
        let jobs = state.jobs.clone()?;
        let wanted = wanted.min(self.limit);
        while state.threads.len() < wanted {
            match self.spawn(state.threads.len()) {
                Ok(handle) => state.threads.push(handle),
                Err(_) => {
                    // Not fatal: the publishing thread runs the jobs no thread takes. Counted
                    // in `Broker::stats` so the failure is visible; tried again by a later
                    // publish.
                    state.spawn_failures += 1;
                    break;
                }
            }
        }
        if state.threads.is_empty() {
            return None;
        }
        Some(Lease { jobs })
    }

    fn spawn(&self, index: usize) -> std::io::Result<JoinHandle<()>> {
        let jobs = self.job_queue.clone();
        let closing = self.closing.clone();
        let pool = self.id;
        thread::Builder::new()
            .name(format!("syncmq-dispatch-{index}"))
            .spawn(move || {
                DISPATCH_POOL.with(|id| id.set(pool));
                // Ends when every `Sender` of the queue is gone (the pool's, dropped by
                // `shutdown`, and those of publishes in flight), or once the broker is closed
                // and the queue is empty. Not waiting for the publishes' senders after a close
                // matters when `close` runs inside a message's `Clone` on a publishing thread
                // that still holds one: `shutdown` joins this thread. A job queued after we
                // left is run by its publish, which runs its unclaimed jobs itself.
                loop {
                    select! {
                        recv(jobs) -> slot => match slot {
                            Ok(slot) => {
                                if let Some(job) = claim(&slot) {
                                    job.run(&closing);
                                }
                            }
                            Err(_) => break,
                        },
                        recv(closing) -> _ => {
                            while let Ok(slot) = jobs.try_recv() {
                                if let Some(job) = claim(&slot) {
                                    job.run(&closing);
                                }
                            }
                            break;
                        }
                    }
                }
            })
    }

    /// Delivers `msg` to `route`'s subscribers, split into `stripes` stripes, the first on
    /// this thread.
    pub(crate) fn deliver_striped(
        &self,
        lease: Lease<T>,
        route: &Arc<Route<T>>,
        stripes: usize,
        msg: T,
        context: Context<'_>,
    ) -> Outcome {
        let len = route.subscribers.len();
        let stripes = stripes.clamp(1, len.max(1));
        let bounds = |k: usize| k * len / stripes;
        let (done, results) = crossbeam_channel::bounded(stripes);
        // A user `Clone` may panic here or in our own stripe. Either way, the stripes already
        // queued are still waited for before the panic goes on: `publish` must not return
        // (even by unwinding) while a stripe of it may still deliver, or a later publish
        // from this thread could overtake it.
        // One shared topic string per striped publish; each job also allocates its slot, and
        // `mine` holds them: a few small allocations per stripe, next to a hand-off to another
        // thread.
        let topic: Arc<str> = context.topic.shared();
        // This publish's jobs, to run those no dispatch thread has claimed.
        let mut mine: Vec<Slot<T>> = Vec::with_capacity(stripes - 1);
        let queueing = panic::catch_unwind(AssertUnwindSafe(|| {
            for k in 1..stripes {
                let job = Job {
                    route: route.clone(),
                    stripe: bounds(k)..bounds(k + 1),
                    msg: msg.clone(),
                    deadline: context.deadline,
                    import: context
                        .import
                        .map(|import| (import.origin, import.cancel.clone())),
                    topic: topic.clone(),
                    done: done.clone(),
                };
                let slot = Arc::new(Mutex::new(Some(job)));
                // Cannot fail: `self.job_queue` keeps the queue connected.
                let _ = lease.jobs.send(slot.clone());
                mine.push(slot);
            }
        }));
        drop(done);
        drop(lease);

        // The publishing thread's stripe also carries every queue group: groups are few, and
        // each costs about one send.
        let own_stripe = queueing.and_then(|()| {
            panic::catch_unwind(AssertUnwindSafe(|| {
                deliver(&route.subscribers[..bounds(1)], &route.groups, msg, context)
            }))
        });
        let (mut outcome, mut panicked) = match own_stripe {
            Ok(outcome) => (outcome, None),
            Err(payload) => (Outcome::default(), Some(payload)),
        };
        // Every job reports to `results`, whoever runs it (a panic included: `Job::run`
        // catches it), so once ours are run or claimed, `mine.len()` results will come.
        for slot in &mine {
            if let Some(job) = claim(slot) {
                job.run(&self.closing);
            }
        }
        for _ in 0..mine.len() {
            match results.recv() {
                Ok(Ok(stripe)) => outcome.merge(stripe),
                Ok(Err(payload)) => panicked = panicked.or(Some(payload)),
                // Unreachable: every job reports before dropping its sender.
                Err(_) => break,
            }
        }
        if let Some(payload) = panicked {
            panic::resume_unwind(payload);
        }
        outcome
    }
}

impl<T> Pool<T> {
    /// The number of dispatch threads running and of failed spawn attempts, under one lock.
    pub(crate) fn thread_counts(&self) -> (usize, u64) {
        let state = self.state.lock();
        (state.threads.len(), state.spawn_failures)
    }

    /// Stops accepting jobs and joins every thread. Jobs already queued still run (quickly:
    /// the close signal has fired, so they do not wait on full queues). Idempotent.
    ///
    /// On one of this pool's own threads (a message's `Clone` or `Drop` closing the broker),
    /// returns at once if another `shutdown` is under way: that one joins this thread, and
    /// would wait for ever if this thread waited for it. The thread itself is never joined by
    /// its own call either; it ends on its own once the close signal has fired and its queue
    /// is empty.
    pub(crate) fn shutdown(&self) {
        let own_thread = DISPATCH_POOL.with(Cell::get) == self.id;
        let _joining = if own_thread {
            let Some(joining) = self.joining.try_lock() else {
                return;
            };
            joining
        } else {
            self.joining.lock()
        };
        let threads = {
            let mut state = self.state.lock();
            state.jobs = None;
            std::mem::take(&mut state.threads)
        };
        let me = thread::current().id();
        for handle in threads {
            // A thread cannot join itself: see above.
            if handle.thread().id() != me {
                let _ = handle.join();
            }
        }
    }
}

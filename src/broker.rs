//! The broker: [`Broker`], and the state its handles and subscriptions share.
//!
//! # Locking
//!
//! The locks, and the only order in which two of them are ever held together:
//!
//! 1. `Shared::registry` (`RwLock`): the subscription table. Publishes take the read lock just
//!    long enough to find and clone one `Arc<Route>` (on a route-cache miss, which needs
//!    wildcard subscriptions or a bridge's overlapping exports, a second time, to walk the
//!    pattern trie, merge the matching routes and cache the result), and not at all when the
//!    thread's route memo (`route_memo.rs`) is current; subscribe, unsubscribe, eviction and
//!    close take the write lock to swap in new routes, and bump `Shared::generation` under it
//!    if they changed anything.
//! 2. `Registry::cache` (`RwLock`, inside the registry): resolved routes per published topic.
//!    Only ever taken *while holding the registry's read lock* (1 → 2); writers of the
//!    registry reach it through `&mut` without locking.
//! 3. `Pool::joining`, then `Pool::state` (`Mutex`es): only `Pool::shutdown` holds both, in
//!    that order. `Shared::closing_signal` (`Mutex`) is taken alone.
//! 4. `grace`'s waiter lock (`Mutex`, process-wide): held by a leaving subscription while it
//!    waits for the send sections in progress, after it released the registry lock; inside a
//!    section it is only ever tried, never waited for.
//!
//! The rule: **no guard is ever held across a blocking send or user code**: `Clone` and `Drop`
//! of messages run outside every lock. Two guards are held across a wait: `Pool::joining`,
//! while `close` joins the dispatch threads (which only ever try it, when a message's `Clone`
//! or `Drop` closes the broker on one of them), and the grace waiter lock, while a leaving
//! subscription waits out the sections (which never wait for it).
//!
//! Sends are not guarded by a lock at all: each happens inside a grace section (`grace.rs`)
//! after checking the subscriber's `lifecycle`, and a subscription that leaves waits for the
//! sections in progress. Sections are held across non-blocking work and the message's
//! `Clone` and `Drop` only, never across a wait, and never while a lock above is held: a publish
//! releases the registry lock before delivering.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Mutex, RwLock};

use crate::config::{BrokerBuilder, Config, SubscribeOptions, SubscriberConfig};
use crate::delivery::{BridgeImport, Context, Outcome, PublishedTopic, deliver};
use crate::dispatch::Pool;
use crate::error::Error;
use crate::grace::CacheLine;
use crate::registry::{Lookup, Registry, Retired, Route};
use crate::route_memo;
use crate::stats::{BrokerStats, Counters, Delta, PublishReport, TopicStats};
use crate::subscriber::{Origin, Queue, Subscriber, SubscriberState};
use crate::subscription::{Membership, Subscription, Tap};
use crate::topic::{validate_group, validate_pattern, validate_topic};

/// A topic-based publish/subscribe broker.
///
/// `Broker` is a cheap handle: clone it to share the broker between threads. The broker closes
/// when [`close`](Broker::close) is called or when its last handle is dropped.
///
/// # Examples
///
/// ```
/// use syncmq::Broker;
///
/// let broker = Broker::new();
/// let sub = broker.subscribe("greetings")?;
///
/// let report = broker.publish("greetings", "Hello, world!")?;
/// assert_eq!(report.delivered, 1);
/// assert_eq!(sub.recv(), Ok("Hello, world!"));
/// # Ok::<(), syncmq::Error>(())
/// ```
pub struct Broker<T> {
    /// Every clone shares one `Handle`; its `Drop` closes the broker. Subscriptions and
    /// dispatch threads hold `Shared` (or parts of it) directly, so they keep the broker's
    /// memory alive without keeping it open.
    handle: Arc<Handle<T>>,
}

/// The owner of an open broker. Exactly one per broker, shared by every `Broker` clone.
struct Handle<T> {
    shared: Arc<Shared<T>>,
}

/// The state of one broker, shared by its handles and subscriptions.
pub(crate) struct Shared<T> {
    /// Settings, fixed at build time.
    pub(crate) config: Config,
    /// The topic table and the closed flag. See "Locking" above. Written only through
    /// [`change_registry`](Self::change_registry).
    registry: RwLock<Registry<T>>,
    /// Bumped by every change to `registry`, under its write lock, and only by a change: what
    /// tells a thread's route memo (`route_memo.rs`) that it is stale. On a line of its own,
    /// as every publish reads it and the counters near it are written by every publish.
    generation: CacheLine<AtomicU64>,
    /// This broker's number, unique in the process and never 0: whose route a memo holds, and
    /// which pool a dispatch thread serves (`dispatch.rs`).
    id: u64,
    /// The sending half of the close signal; `None` once closed. Nothing is ever sent on it:
    /// dropping it disconnects `closing`, which wakes every publish waiting on a full queue.
    closing_signal: Mutex<Option<Sender<()>>>,
    /// Becomes ready (disconnected) when the broker closes.
    closing: Receiver<()>,
    /// The dispatch threads.
    pool: Pool<T>,
    /// The broker's totals over all topics (see `stats.rs` for what the counters promise).
    totals: Counters,
    /// Source of subscriber ids. `Relaxed`: only uniqueness matters.
    next_id: AtomicU64,
    /// The origin of this broker's bridges, set by the first bridge (see
    /// [`Broker::bridge_origin`]).
    #[cfg_attr(
        not(feature = "nats"),
        allow(dead_code, reason = "only read by bridges (the `nats` feature)")
    )]
    bridge_origin: OnceLock<Origin>,
}

/// The next broker's [`Shared::id`]. `Relaxed`: only uniqueness matters. Starts at 1: the
/// broker's dispatch pool uses the id too, and 0 there marks threads of no pool.
static NEXT_BROKER_ID: AtomicU64 = AtomicU64::new(1);

impl<T: Clone + Send + 'static> Broker<T> {
    /// Creates a broker with the default settings: queues of
    /// [`DEFAULT_CAPACITY`](crate::DEFAULT_CAPACITY) messages, a 5 ms send timeout, one dispatch
    /// thread per CPU at most.
    #[must_use]
    pub fn new() -> Self {
        Broker::with_config(Config::default())
    }

    /// Returns a builder to configure a broker.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncmq::{Broker, Overflow};
    ///
    /// let broker = Broker::<u64>::builder().capacity(8).overflow(Overflow::Drop).build();
    /// # drop(broker);
    /// ```
    pub fn builder() -> BrokerBuilder<T> {
        BrokerBuilder::new()
    }

    pub(crate) fn with_config(config: Config) -> Self {
        let (closing_signal, closing) = crossbeam_channel::bounded(0);
        let id = NEXT_BROKER_ID.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new(Shared {
            config,
            registry: RwLock::new(Registry::new()),
            generation: CacheLine(AtomicU64::new(0)),
            id,
            closing_signal: Mutex::new(Some(closing_signal)),
            pool: Pool::new(config.workers, closing.clone(), id),
            closing,
            totals: Counters::default(),
            next_id: AtomicU64::new(0),
            bridge_origin: OnceLock::new(),
        });
        Broker {
            handle: Arc::new(Handle { shared }),
        }
    }

    /// Subscribes to every topic matching `pattern`.
    ///
    /// `pattern` is a topic, or a pattern with wildcard tokens: `*` matches exactly one token
    /// and `>` (last token only) matches one or more trailing tokens, as in NATS. So
    /// `orders.*` matches `orders.new` but neither `orders` nor `orders.new.eu`, and `orders.>`
    /// matches both of the longer ones but not `orders`.
    ///
    /// The subscription receives every message published to a matching topic from now until
    /// it is dropped or [unsubscribed](Subscription::unsubscribe), except those its queue had
    /// no room for (see [`Overflow`](crate::Overflow)), which it can count with
    /// [`Subscription::dropped`]. Two subscriptions whose patterns overlap each get their own
    /// copy.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTopic`] if `pattern` is not a valid pattern (see
    /// [`validate_pattern`]); [`Error::Closed`] if the broker is closed.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncmq::Broker;
    ///
    /// let broker = Broker::new();
    /// let created = broker.subscribe("orders.created")?;
    /// let all_orders = broker.subscribe("orders.>")?;
    /// broker.publish("orders.created", 42)?;
    /// broker.publish("orders.cancelled.eu", 7)?;
    /// assert_eq!(created.try_iter().collect::<Vec<_>>(), [42]);
    /// assert_eq!(all_orders.try_iter().collect::<Vec<_>>(), [42, 7]);
    /// # Ok::<(), syncmq::Error>(())
    /// ```
    pub fn subscribe(&self, pattern: &str) -> Result<Subscription<T>, Error> {
        self.subscribe_with(pattern, SubscribeOptions::default())
    }

    /// Subscribes to `pattern` with settings of its own, overriding the broker's defaults for
    /// this subscriber only: its queue's capacity, its [`Overflow`](crate::Overflow) policy,
    /// its eviction threshold.
    ///
    /// # Errors
    ///
    /// As [`subscribe`](Self::subscribe), plus [`Error::InvalidConfig`] for invalid options
    /// (a capacity above [`MAX_CAPACITY`](crate::MAX_CAPACITY), `evict_after(0)`).
    ///
    /// # Examples
    ///
    /// ```
    /// use syncmq::{Broker, Overflow, SubscribeOptions};
    ///
    /// let broker = Broker::new();
    /// let metrics = broker.subscribe_with(
    ///     "cpu.load",
    ///     SubscribeOptions::default().capacity(16).overflow(Overflow::Drop),
    /// )?;
    /// broker.publish("cpu.load", 0.5)?;
    /// assert_eq!(metrics.try_recv(), Ok(0.5));
    /// # Ok::<(), syncmq::Error>(())
    /// ```
    pub fn subscribe_with(
        &self,
        pattern: &str,
        options: SubscribeOptions,
    ) -> Result<Subscription<T>, Error> {
        self.join(pattern, None, options)
    }

    /// Joins queue group `group` on `pattern`: each message matching the pattern goes to
    /// exactly one member of the group (and, independently, to every plain subscriber and to
    /// one member of every other group).
    ///
    /// A member with room in its queue is preferred, round-robin among those, so members that
    /// consume at the same speed share the load evenly. If every member is full, the overflow
    /// policy of the member whose turn it was applies. A member that leaves (dropped,
    /// unsubscribed or evicted) keeps what is already in its queue
    /// ([`unsubscribe`](Subscription::unsubscribe) returns it) and never stalls the group.
    ///
    /// Groups are per pattern: `workers` on `jobs.>` and `workers` on `jobs.*` are two groups.
    ///
    /// # Errors
    ///
    /// As [`subscribe`](Self::subscribe); also [`Error::InvalidTopic`] if `group` is empty or
    /// longer than [`MAX_TOPIC_LEN`](crate::MAX_TOPIC_LEN) bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncmq::Broker;
    ///
    /// let broker = Broker::new();
    /// let worker_a = broker.subscribe_group("jobs.>", "workers")?;
    /// let worker_b = broker.subscribe_group("jobs.>", "workers")?;
    /// let auditor = broker.subscribe("jobs.>")?;
    /// for job in 0..4 {
    ///     let report = broker.publish("jobs.resize", job)?;
    ///     assert_eq!((report.delivered, report.groups), (2, 1)); // auditor + one worker
    /// }
    /// assert_eq!(worker_a.len() + worker_b.len(), 4);
    /// assert_eq!((worker_a.len(), worker_b.len()), (2, 2));
    /// assert_eq!(auditor.len(), 4);
    /// # Ok::<(), syncmq::Error>(())
    /// ```
    pub fn subscribe_group(&self, pattern: &str, group: &str) -> Result<Subscription<T>, Error> {
        self.subscribe_group_with(pattern, group, SubscribeOptions::default())
    }

    /// [`subscribe_group`](Self::subscribe_group) with settings of this member's own.
    ///
    /// # Errors
    ///
    /// As [`subscribe_group`](Self::subscribe_group) and [`subscribe_with`](Self::subscribe_with).
    pub fn subscribe_group_with(
        &self,
        pattern: &str,
        group: &str,
        options: SubscribeOptions,
    ) -> Result<Subscription<T>, Error> {
        validate_group(group).map_err(|reason| invalid_topic(group, reason))?;
        self.join(pattern, Some(group), options)
    }

    /// The origin shared by every bridge of this broker, allocated on first use.
    ///
    /// Shared rather than one per bridge: a message imported by one bridge must not be
    /// exported by *any* bridge of the same broker, or two bridges sharing a subject through
    /// one server would pass it back and forth forever.
    #[cfg_attr(
        not(feature = "nats"),
        allow(dead_code, reason = "the hook for bridges (the `nats` feature)")
    )]
    pub(crate) fn bridge_origin(&self) -> Origin {
        let shared = &self.handle.shared;
        *shared.bridge_origin.get_or_init(|| {
            // Drawn from the subscriber ids: unique per broker, which is all an origin needs.
            Origin::MIN.saturating_add(shared.next_id.fetch_add(1, Ordering::Relaxed))
        })
    }

    /// Subscribes to `pattern` as `origin` with a queue that carries each message's topic: a
    /// bridge's export queue. Publishes from `origin` skip it, and the route of a topic that
    /// one of `yields_to` (the bridge's earlier export patterns) matches leaves it out
    /// (`registry.rs`).
    #[cfg_attr(
        not(feature = "nats"),
        allow(dead_code, reason = "the hook for bridges (the `nats` feature)")
    )]
    pub(crate) fn tap(
        &self,
        pattern: &str,
        options: SubscribeOptions,
        origin: Origin,
        yields_to: &[String],
    ) -> Result<Tap<T>, Error> {
        let shared = &self.handle.shared;
        let config = shared.subscriber_config(pattern, options)?;
        let (queue, receiver) = Queue::tagged(config, yields_to.into());
        let (key, id, state) = shared.file(pattern, None, config, Some(origin), queue)?;
        Ok(Tap::new(
            Membership::new(shared.clone(), key, id, state),
            receiver,
        ))
    }

    /// Subscribes to `pattern`, in `group` if any.
    fn join(
        &self,
        pattern: &str,
        group: Option<&str>,
        options: SubscribeOptions,
    ) -> Result<Subscription<T>, Error> {
        let shared = &self.handle.shared;
        let config = shared.subscriber_config(pattern, options)?;
        shared.add_subscriber(pattern, group.map(Arc::from), config)
    }

    /// Publishes `msg` to every subscription whose pattern matches `topic` (and to one member
    /// of every matching queue group), and reports how many got it.
    ///
    /// Each subscriber gets its own clone (the last one gets `msg` itself). The call is
    /// synchronous: it returns once every send has completed or given up under the
    /// subscriber's [`Overflow`](crate::Overflow) policy, so a later publish from the same
    /// thread cannot overtake it. Subscribers with room get the message first; only then are
    /// full queues waited on, all at once, each until its own deadline.
    ///
    /// A topic with no subscribers is not an error: the report counts zero.
    ///
    /// # Return
    ///
    /// A [`PublishReport`]: `delivered` subscribers have the message in their queue, `dropped`
    /// do not. `Ok` does **not** mean anyone has received it yet.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTopic`] for an invalid topic (wildcards included: they are for
    /// subscriptions), [`Error::Closed`] if the broker is closed.
    /// Either way `msg` is dropped and nothing is sent. If the broker closes *during* the
    /// publish, it returns `Ok` with every send it could not finish counted as dropped.
    ///
    /// # Panics
    ///
    /// Only if `T::clone` or `T::drop` panics (a copy is dropped when its send gives up); the
    /// panic is passed on to the caller, also when it happened on a dispatch thread.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncmq::{Broker, Overflow};
    ///
    /// let broker = Broker::builder().capacity(1).overflow(Overflow::Drop).build();
    /// let sub = broker.subscribe("ticks")?;
    ///
    /// assert_eq!(broker.publish("ticks", 1)?.delivered, 1);
    /// let report = broker.publish("ticks", 2)?; // queue full: dropped, and counted
    /// assert_eq!((report.delivered, report.dropped), (0, 1));
    /// assert_eq!(sub.dropped(), 1);
    /// assert_eq!(sub.recv(), Ok(1));
    /// # Ok::<(), syncmq::Error>(())
    /// ```
    pub fn publish(&self, topic: &str, msg: T) -> Result<PublishReport, Error> {
        self.publish_from(topic, msg, None)
    }

    /// [`publish`](Self::publish), or a bridge's import: then subscribers carrying the
    /// import's origin are skipped, so that what a bridge imports is not exported again, and
    /// its cancel signal cuts waits on full queues short.
    pub(crate) fn publish_from(
        &self,
        topic: &str,
        msg: T,
        import: Option<BridgeImport<'_>>,
    ) -> Result<PublishReport, Error> {
        let shared = &self.handle.shared;
        let route = shared.route(topic)?;
        // Counted before delivery, so a publish that waits on a full queue shows in the stats
        // while it waits.
        shared.totals.add(Delta {
            published: 1,
            ..Delta::default()
        });
        let Some(route) = route else {
            return Ok(PublishReport::default());
        };

        Ok(shared.deliver(&route, topic, msg, import))
    }

    /// Closes the broker. Idempotent.
    ///
    /// After `close`:
    /// - `publish` and `subscribe` return [`Error::Closed`];
    /// - a publish waiting on a full queue stops waiting at once and counts what it could not
    ///   send as dropped;
    /// - every subscription receives what is already queued, then gets
    ///   [`RecvError::Closed`](crate::RecvError::Closed): no thread stays blocked in `recv`;
    /// - the dispatch threads have been joined when `close` returns. (Except for a `close`
    ///   from a message's `Clone` or `Drop` on a dispatch thread: that thread cannot wait for
    ///   itself, nor for another `close` joining it. It ends on its own.)
    ///
    /// Dropping the last `Broker` handle closes the broker too.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncmq::{Broker, RecvError};
    ///
    /// let broker = Broker::new();
    /// let sub = broker.subscribe("jobs")?;
    /// broker.publish("jobs", "last one")?;
    /// broker.close();
    /// broker.close(); // idempotent
    ///
    /// assert_eq!(sub.recv(), Ok("last one"));
    /// assert_eq!(sub.recv(), Err(RecvError::Closed));
    /// assert!(broker.is_closed());
    /// # Ok::<(), syncmq::Error>(())
    /// ```
    pub fn close(&self) {
        self.handle.shared.close();
    }

    /// Returns `true` once the broker is closed.
    pub fn is_closed(&self) -> bool {
        self.handle.shared.is_closed()
    }

    /// Returns the broker's counters.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncmq::Broker;
    ///
    /// let broker = Broker::new();
    /// let _a = broker.subscribe("a")?;
    /// let _b = broker.subscribe("a")?;
    /// broker.publish("a", ())?;
    /// broker.publish("nobody", ())?;
    ///
    /// let stats = broker.stats();
    /// assert_eq!((stats.published, stats.delivered, stats.dropped), (2, 2, 0));
    /// assert_eq!((stats.topics, stats.subscribers), (1, 2));
    /// # Ok::<(), syncmq::Error>(())
    /// ```
    pub fn stats(&self) -> BrokerStats {
        let shared = &self.handle.shared;
        let (topics, subscribers) = {
            let registry = shared.registry.read();
            (registry.key_count(), registry.subscriber_count())
        };
        let totals = shared.totals.topic_stats(subscribers);
        let (dispatch_threads, spawn_failures) = shared.pool.thread_counts();
        BrokerStats {
            published: totals.published,
            delivered: totals.delivered,
            dropped: totals.dropped,
            displaced: totals.displaced,
            evicted: totals.evicted,
            topics,
            subscribers,
            dispatch_threads,
            spawn_failures,
        }
    }

    /// Returns the counters of `topic` as a subscription key (a topic or a pattern, exactly as
    /// subscribed), or `None` if it has no subscribers now.
    ///
    /// Cheap enough to call after every publish: one read lock, one lookup, no allocation.
    /// The counters start when the topic gets its first subscriber and are forgotten when its
    /// last one leaves (see [`TopicStats`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use syncmq::{Broker, Overflow, SubscribeOptions};
    ///
    /// let broker = Broker::new();
    /// let fast = broker.subscribe("prices")?;
    /// let full = broker.subscribe_with("prices", SubscribeOptions::default().capacity(0).overflow(Overflow::Drop))?;
    /// broker.publish("prices", 10)?;
    ///
    /// let stats = broker.topic_stats("prices").unwrap();
    /// assert_eq!((stats.subscribers, stats.published, stats.delivered, stats.dropped), (2, 1, 1, 1));
    /// assert_eq!(broker.topic_stats("nobody"), None);
    /// # drop((fast, full));
    /// # Ok::<(), syncmq::Error>(())
    /// ```
    pub fn topic_stats(&self, topic: &str) -> Option<TopicStats> {
        let registry = self.handle.shared.registry.read();
        let route = registry.key(topic)?;
        Some(route.key_counters().topic_stats(route.subscriber_count()))
    }

    /// Returns the number of subscriptions to `topic` right now, as a subscription key: a
    /// topic or pattern exactly as subscribed, queue group members included. Subscriptions to
    /// other patterns that match `topic` are not counted.
    ///
    /// # Note
    ///
    /// This promises nothing: another thread may subscribe or unsubscribe before the caller
    /// looks at the number. Invalid topics have no subscribers.
    pub fn subscriber_count(&self, topic: &str) -> usize {
        self.handle
            .shared
            .registry
            .read()
            .key(topic)
            .map_or(0, |route| route.subscriber_count())
    }
}

impl<T: Clone + Send + 'static> Shared<T> {
    /// Files a new subscriber under `key`, in `group` if any, and returns its subscription.
    fn add_subscriber(
        self: &Arc<Self>,
        key: &str,
        group: Option<Arc<str>>,
        config: SubscriberConfig,
    ) -> Result<Subscription<T>, Error> {
        // Allocate the queue before taking the lock.
        let (queue, receiver) = Queue::plain(config);
        let (key, id, state) = self.file(key, group.as_ref(), config, None, queue)?;
        Ok(Subscription::new(
            Membership::new(self.clone(), key, id, state),
            group,
            receiver,
        ))
    }

    /// Checks a subscription's pattern and options, and resolves its settings against the
    /// broker's defaults.
    fn subscriber_config(
        &self,
        pattern: &str,
        options: SubscribeOptions,
    ) -> Result<SubscriberConfig, Error> {
        validate_pattern(pattern).map_err(|reason| invalid_topic(pattern, reason))?;
        options.resolve(self.config.subscriber)
    }

    /// Files a new subscriber with `queue` under `key`, in `group` if any. Returns the key as
    /// stored, the subscriber's id and its shared state.
    fn file(
        &self,
        key: &str,
        group: Option<&Arc<str>>,
        config: SubscriberConfig,
        origin: Option<Origin>,
        queue: Queue<T>,
    ) -> Result<(Arc<str>, u64, Arc<SubscriberState>), Error> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let key: Arc<str> = Arc::from(key);
        let state = Arc::new(SubscriberState::new());
        // Taken by the change; left here, to drop outside the lock, if the broker is closed.
        let mut queue = Some(queue);
        let retired = self.change_registry(|registry| {
            if registry.closed {
                return None;
            }
            let counters = registry.counters_for(&key);
            let subscriber = Subscriber::new(
                id,
                key.clone(),
                counters,
                config,
                state.clone(),
                queue.take()?,
                origin,
            );
            Some(registry.insert(Arc::new(subscriber), group))
        });
        let Some(retired) = retired else {
            return Err(Error::Closed);
        };
        drop(retired);
        Ok((key, id, state))
    }

    /// What a publish to `topic` reaches (`None`: nobody), or why it cannot be published.
    ///
    /// Most publishes are settled by this thread's route memo (`route_memo.rs`): no lock, no
    /// hash. Otherwise one read lock and one hash lookup settle most: a topic the registry
    /// knows is valid skips validation (most publishes go to topics that have subscribers),
    /// and one it does not know is validated outside the lock. Either way the route is a
    /// snapshot: the lock is released before anything is sent.
    fn route(&self, topic: &str) -> Result<Option<Arc<Route<T>>>, Error> {
        // `Relaxed`: see `route_memo.rs`.
        let generation = self.generation.0.load(Ordering::Relaxed);
        if let Some(route) = route_memo::recall(self.id, generation, topic) {
            return Ok(route);
        }
        let (lookup, generation) = {
            let registry = self.registry.read();
            // Stable while we hold the read lock: only writers bump it.
            (
                registry.lookup(topic),
                self.generation.0.load(Ordering::Relaxed),
            )
        };
        let route = match lookup {
            Lookup::Found(route) => route,
            // No wildcard subscription and no such key when we looked: a valid topic reaches
            // nobody, as if the publish had happened at that lookup. Validating it is all that
            // is left; no second lock or lookup.
            Lookup::NotFound => {
                validate_topic(topic).map_err(|reason| invalid_topic(topic, reason))?;
                None
            }
            Lookup::Unresolved => {
                validate_topic(topic).map_err(|reason| invalid_topic(topic, reason))?;
                let registry = self.registry.read();
                if registry.closed {
                    return Err(Error::Closed);
                }
                let route = registry.resolve(topic);
                let generation = self.generation.0.load(Ordering::Relaxed);
                drop(registry);
                route_memo::remember(self.id, generation, topic, route.as_ref());
                return Ok(route);
            }
            Lookup::Closed => {
                validate_topic(topic).map_err(|reason| invalid_topic(topic, reason))?;
                return Err(Error::Closed);
            }
        };
        route_memo::remember(self.id, generation, topic, route.as_ref());
        Ok(route)
    }

    /// Delivers one message along a route, inline or over the pool, and does the
    /// bookkeeping: counters, evictions.
    fn deliver(
        &self,
        route: &Arc<Route<T>>,
        topic: &str,
        msg: T,
        import: Option<BridgeImport<'_>>,
    ) -> PublishReport {
        let deadline = self
            .config
            .publish_timeout
            .and_then(|timeout| Instant::now().checked_add(timeout));
        let topic = PublishedTopic::new(topic);
        let context = Context {
            closing: &self.closing,
            deadline,
            import,
            topic: &topic,
        };
        let outcome = self.deliver_along(route, msg, context);
        for counters in route.counters.iter() {
            counters.add(Delta {
                published: 1,
                ..Delta::default()
            });
        }
        self.totals.add(Delta {
            delivered: outcome.delivered as u64,
            dropped: outcome.dropped as u64,
            displaced: outcome.displaced as u64,
            ..Delta::default()
        });
        let mut evicted = 0;
        for (key, id, state) in &outcome.evicted {
            // Removing it from the registry is what spares later publishes any cost for it.
            // Only a subscriber still filed is evicted: not one the broker let go by closing
            // (it ends `Closed`, as `close` promises), nor one that is leaving.
            let retired = self.change_registry(|registry| registry.remove(key, *id));
            if let Some(route) = retired.as_ref().and_then(|r| r.route.as_ref()) {
                // Marked while `retired` still holds a sender of its queue, so its receiver
                // cannot see the queue end before the reason is set. From here on no send
                // enters its queue.
                if state.evict() {
                    route.key_counters().record_evicted();
                    self.totals.record_evicted();
                    evicted += 1;
                }
            }
            // `retired` is dropped here, outside the lock.
        }
        PublishReport {
            delivered: outcome.delivered,
            dropped: outcome.dropped,
            displaced: outcome.displaced,
            evicted,
            groups: outcome.groups,
        }
    }

    fn deliver_along(&self, route: &Arc<Route<T>>, msg: T, context: Context<'_>) -> Outcome {
        let len = route.subscribers.len();
        let workers = self.config.workers;
        if workers == 0 || len < self.config.dispatch_threshold {
            return deliver(&route.subscribers, &route.groups, msg, context);
        }
        // Stripes of at least half a threshold each, one per dispatch thread plus one for the
        // publishing thread.
        let stripe_min = (self.config.dispatch_threshold / 2).max(1);
        let stripes = (len / stripe_min).clamp(2, workers.saturating_add(1));
        match self.pool.lease(stripes - 1) {
            Some(lease) => self
                .pool
                .deliver_striped(lease, route, stripes, msg, context),
            // The pool shut down after our snapshot was taken (the close signal then makes any
            // wait end at once), or no dispatch thread could be spawned: deliver inline.
            None => deliver(&route.subscribers, &route.groups, msg, context),
        }
    }
}

impl<T> Shared<T> {
    /// Runs `change` on the registry under its write lock. Every write to the registry goes
    /// through here. `change` returns `None` if it changed nothing (the subscriber to remove
    /// is gone already, the broker is closed already), and `Some` of what it retired
    /// otherwise: then the generation is bumped, which invalidates every thread's route memo
    /// of this broker. A change that changed nothing leaves the memos be: they still say what
    /// the table routes each topic to.
    ///
    /// What `change` returns is handed back after the lock is released, for the caller to
    /// drop there.
    fn change_registry<R>(&self, change: impl FnOnce(&mut Registry<T>) -> Option<R>) -> Option<R> {
        let mut registry = self.registry.write();
        let changed = change(&mut registry);
        if changed.is_some() {
            // Under the write lock, after the change: a reader holding the read lock sees the
            // table and the generation of one version, and a publish that loads the
            // generation without the lock and finds it unchanged goes as if before the change,
            // which is not complete until the lock is released. `Relaxed`: see
            // `route_memo.rs`.
            self.generation.0.fetch_add(1, Ordering::Relaxed);
        }
        changed
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.registry.read().closed
    }

    /// Removes subscriber `id` from `topic`, if it is still there.
    pub(crate) fn unsubscribe(&self, topic: &str, id: u64) {
        let retired: Option<Retired<T>> =
            self.change_registry(|registry| registry.remove(topic, id));
        // Dropped outside the lock: it may hold the queue's last sender, and dropping that
        // wakes the receiver.
        drop(retired);
    }

    fn close(&self) {
        let lists = self.change_registry(|registry| {
            if registry.closed {
                return None;
            }
            registry.closed = true;
            Some(registry.take_all())
        });
        // Drop the lists outside the lock. Once in-flight publishes let go of their snapshots
        // too, every queue's last sender is gone and every `recv` returns after draining.
        drop(lists);
        // Wake every publish waiting on a full queue: they count what is left as dropped.
        drop(self.closing_signal.lock().take());
        self.pool.shutdown();
    }
}

/// The error for publishing to an invalid topic. Out of line and cold: it allocates, and the
/// publish fast path should not carry it.
#[cold]
fn invalid_topic(topic: &str, reason: crate::TopicError) -> Error {
    Error::InvalidTopic {
        topic: topic.to_owned(),
        reason,
    }
}

impl<T> Drop for Handle<T> {
    fn drop(&mut self) {
        // The last `Broker` handle is gone: nobody can publish any more.
        self.shared.close();
    }
}

impl<T> Clone for Broker<T> {
    /// Returns another handle to the same broker.
    fn clone(&self) -> Self {
        Broker {
            handle: self.handle.clone(),
        }
    }
}

impl<T: Clone + Send + 'static> Default for Broker<T> {
    fn default() -> Self {
        Broker::new()
    }
}

impl<T> fmt::Debug for Broker<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = &self.handle.shared;
        let registry = shared.registry.read();
        f.debug_struct("Broker")
            .field("closed", &registry.closed)
            .field("topics", &registry.key_count())
            .field("subscribers", &registry.subscriber_count())
            .field("published", &shared.totals.published())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changes_to_the_registry_bump_the_generation() {
        let broker = Broker::<u8>::new();
        let shared = &broker.handle.shared;
        let generation = || shared.generation.0.load(Ordering::Relaxed);
        let sub = broker.subscribe("a").expect("valid topic");
        let subscribed = generation();
        shared.unsubscribe("a", u64::MAX); // No such subscriber.
        shared.unsubscribe("b", 0); // Subscriber 0 is `sub`, filed under "a".
        assert_eq!(generation(), subscribed);
        drop(sub);
        assert_eq!(generation(), subscribed + 1);
        broker.close();
        let closed = generation();
        broker.close();
        assert_eq!(broker.subscribe("a").err(), Some(Error::Closed));
        assert_eq!(generation(), closed);
    }

    #[test]
    fn an_export_queue_never_takes_a_topic_an_earlier_one_of_its_bridge_exports() {
        let broker = Broker::<u8>::new();
        let origin = broker.bridge_origin();
        let exports = ["a.>".to_owned(), "a.b".to_owned(), "a.b".to_owned()];
        let mut taps: Vec<_> = (0..exports.len())
            .map(|i| {
                let options = SubscribeOptions::default();
                broker.tap(&exports[i], options, origin, &exports[..i])
            })
            .collect::<Result<_, _>>()
            .expect("valid patterns");
        let plain = broker.subscribe("a.b").expect("valid topic");
        let received = |tap: &Tap<u8>| tap.receiver().try_iter().map(|(_, msg)| msg).collect();
        let received: Vec<Vec<u8>> = {
            broker.publish("a.b", 1).expect("open broker");
            broker.publish("a.c", 2).expect("open broker");
            taps.iter().map(received).collect()
        };
        assert_eq!(received, [vec![1, 2], vec![], vec![]]);
        // Left out of the route, yet still subscribers of their key.
        assert_eq!(broker.subscriber_count("a.b"), 3);

        // With no wildcard subscription left, the plain topic's export queues still yield it
        // (to the pattern that has left: nothing exports it now, as the bridge is closing).
        taps.remove(0).unsubscribe();
        let report = broker.publish("a.b", 3).expect("open broker");
        assert_eq!((report.delivered, report.dropped), (1, 0));
        assert!(taps.iter().all(|tap| tap.receiver().is_empty()));
        drop(taps);
        broker.publish("a.b", 4).expect("open broker");
        assert_eq!(plain.try_iter().collect::<Vec<_>>(), [1, 3, 4]);
    }

    #[test]
    fn an_export_queue_that_yields_its_own_topic_costs_only_the_publishes_to_it() {
        let broker = Broker::<u8>::new();
        let origin = broker.bridge_origin();
        let options = SubscribeOptions::default();
        let exports = ["x".to_owned()];
        let first = broker.tap("x", options, origin, &[]).expect("valid topic");
        let second = broker
            .tap("x", options, origin, &exports)
            .expect("valid topic");
        let cached = || broker.handle.shared.registry.read().cached_topics();
        for i in 0..10 {
            let report = broker
                .publish(&format!("cold.{i}"), i)
                .expect("open broker");
            assert_eq!(report.routed(), 0);
        }
        // Topics nobody subscribed to still take the direct path: one hash lookup, no cache.
        assert_eq!(cached(), 0);
        assert_eq!(broker.publish("x", 1).expect("open broker").delivered, 1);
        assert_eq!(
            cached(),
            1,
            "the key with a yielding export queue is resolved"
        );
        assert_eq!(first.receiver().len(), 1);
        assert!(second.receiver().is_empty());
        // The yielding queue gone, the key's route serves its topic directly again.
        drop(second);
        broker.publish("x", 2).expect("open broker");
        assert_eq!(cached(), 0);
        assert_eq!(first.receiver().len(), 2);
    }
}

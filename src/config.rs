//! Broker configuration: [`BrokerBuilder`], [`Overflow`] and their defaults.

use std::fmt;
use std::marker::PhantomData;
use std::num::NonZeroU32;
use std::time::Duration;

use crate::broker::Broker;
use crate::error::{ConfigError, Error};

/// The default per-subscriber queue capacity.
pub const DEFAULT_CAPACITY: usize = 64;

/// The default time a publish waits for room in a full queue before skipping it.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_millis(5);

/// The largest per-subscriber capacity accepted. Queues are allocated up front.
pub const MAX_CAPACITY: usize = 1 << 20;

/// The default [`BrokerBuilder::dispatch_threshold`]: publishes to at least this many subscribers
/// are spread over the dispatch pool. Measured with `benches/publish.rs`; see the README.
pub const DEFAULT_DISPATCH_THRESHOLD: usize = 1024;

/// What a publish does when a subscriber's queue is full.
///
/// Whatever the policy, a message that is not delivered is counted: in the
/// [`PublishReport`](crate::PublishReport), in [`Subscription::dropped`](crate::Subscription::dropped)
/// and in [`Broker::stats`](crate::Broker::stats).
///
/// A publish first offers the message to every subscriber without waiting, and only then waits
/// on the full ones, all at once, so one stalled subscriber never delays the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Overflow {
    /// Wait until the queue has room (or the broker closes, or the subscriber goes away).
    /// Nothing is dropped, but a subscriber that stops reading stalls every publish to it.
    Block,
    /// Never wait: skip the subscriber and count the message as dropped.
    Drop,
    /// Wait until a deadline computed for this send (now + the duration), then skip the
    /// subscriber and count the message as dropped. `Timeout(Duration::ZERO)` never waits, like
    /// [`Overflow::Drop`]; a duration too large to add to the current time waits like
    /// [`Overflow::Block`]. No timer object is created: the deadline is a plain `Instant`.
    ///
    /// The deadline is checked when the publish wakes, so a queue that gains room just after
    /// it passed, while the publish was waking for another queue, may still get the message,
    /// late by about a wake-up rather than dropped.
    Timeout(Duration),
    /// Never wait: make room by discarding the oldest queued message, so the subscriber always
    /// has the newest data. The discarded message counts as dropped for that subscriber (and
    /// as `displaced` in reports and stats). Safe while the subscriber receives concurrently:
    /// every message is either received once or counted. On a rendezvous queue (capacity 0)
    /// there is nothing to discard, and this acts like [`Overflow::Drop`].
    DropOldest,
}

impl Default for Overflow {
    /// `Overflow::Timeout(5 ms)`, the Go ancestor's behaviour, but counted.
    fn default() -> Self {
        Overflow::Timeout(DEFAULT_SEND_TIMEOUT)
    }
}

impl Overflow {
    /// Whether this policy ever waits for room.
    pub(crate) fn waits(self) -> bool {
        match self {
            Overflow::Block => true,
            Overflow::Drop | Overflow::DropOldest => false,
            Overflow::Timeout(timeout) => !timeout.is_zero(),
        }
    }
}

/// The settings a broker runs with. Fixed once the broker is built.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Config {
    /// Upper bound on dispatch threads; 0 means every publish delivers on the publishing
    /// thread.
    pub(crate) workers: usize,
    /// Subscriber count from which a publish is spread over the dispatch pool.
    pub(crate) dispatch_threshold: usize,
    /// Default settings of each subscriber.
    pub(crate) subscriber: SubscriberConfig,
    /// Bound on one whole publish, if any.
    pub(crate) publish_timeout: Option<Duration>,
}

/// The settings of one subscriber: the broker's defaults, overridden by [`SubscribeOptions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SubscriberConfig {
    /// Queue bound; 0 makes the queue a rendezvous channel.
    pub(crate) capacity: usize,
    /// Policy for a full queue.
    pub(crate) overflow: Overflow,
    /// Consecutive misses after which the subscriber is evicted; `None` never evicts.
    pub(crate) evict_after: Option<NonZeroU32>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            workers: num_cpus::get(),
            dispatch_threshold: DEFAULT_DISPATCH_THRESHOLD,
            subscriber: SubscriberConfig {
                capacity: DEFAULT_CAPACITY,
                overflow: Overflow::default(),
                evict_after: None,
            },
            publish_timeout: None,
        }
    }
}

/// Checks a capacity asked for by a builder or by subscribe options.
fn check_capacity(capacity: usize) -> Result<usize, ConfigError> {
    if capacity > MAX_CAPACITY {
        return Err(ConfigError::CapacityTooLarge { capacity });
    }
    Ok(capacity)
}

/// Turns an `evict_after(k)` argument into the stored form.
fn check_evict_after(misses: u32) -> Result<NonZeroU32, ConfigError> {
    NonZeroU32::new(misses).ok_or(ConfigError::EvictAfterZero)
}

/// Builds a [`Broker`] with non-default settings. Made by [`Broker::builder`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use syncmq::{Broker, Overflow};
///
/// let broker = Broker::<String>::builder()
///     .capacity(1024)
///     .overflow(Overflow::Timeout(Duration::from_millis(20)))
///     .workers(2)
///     .build();
/// let sub = broker.subscribe("logs")?;
/// assert_eq!(sub.capacity(), Some(1024));
/// # Ok::<(), syncmq::Error>(())
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct BrokerBuilder<T> {
    /// The settings gathered so far.
    config: Config,
    /// `evict_after` as given, checked by `build`/`try_build` like the capacity, so that with
    /// either setting the last call counts.
    evict_after: Option<u32>,
    /// The message type of the broker being built; `fn() -> T` keeps the builder `Send + Sync`
    /// whatever `T` is.
    marker: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for BrokerBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerBuilder")
            .field("capacity", &self.config.subscriber.capacity)
            .field("overflow", &self.config.subscriber.overflow)
            .field("evict_after", &self.evict_after)
            .field("publish_timeout", &self.config.publish_timeout)
            .field("workers", &self.config.workers)
            .field("dispatch_threshold", &self.config.dispatch_threshold)
            .finish()
    }
}

impl<T: Clone + Send + 'static> BrokerBuilder<T> {
    pub(crate) fn new() -> Self {
        BrokerBuilder {
            config: Config::default(),
            evict_after: None,
            marker: PhantomData,
        }
    }

    /// Sets the bound of every subscriber's queue (default [`DEFAULT_CAPACITY`]).
    ///
    /// `0` makes each queue a rendezvous: a message is delivered only to a subscriber that is
    /// waiting in `recv` at that moment (or becomes so while the publish waits, per
    /// [`Overflow`]).
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.config.subscriber.capacity = capacity;
        self
    }

    /// Shorthand for `.overflow(Overflow::Timeout(timeout))`: a full queue is waited on for at
    /// most `timeout` per send (default 5 ms). A zero timeout never waits.
    pub fn send_timeout(self, timeout: Duration) -> Self {
        self.overflow(Overflow::Timeout(timeout))
    }

    /// Sets what a publish does when a subscriber's queue is full (default
    /// `Overflow::Timeout(5 ms)`).
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.config.subscriber.overflow = overflow;
        self
    }

    /// Evicts a subscriber once it has missed `misses` messages in a row (default: never).
    ///
    /// A *miss* is a publish that leaves the subscriber without a message: its queue stayed
    /// full past the [`Overflow`] policy, or (with [`Overflow::DropOldest`]) an older message
    /// had to be discarded. Any publish that reaches the subscriber without loss resets the
    /// count. The publish whose miss reaches `misses` removes the subscriber from the broker
    /// just before it returns (so after its own waits on other full queues: until then, other
    /// publishes still reach the subscriber and count its misses); later publishes pay nothing
    /// for it. It still receives what is queued, then
    /// [`RecvError::Evicted`](crate::RecvError::Evicted).
    ///
    /// `0` is invalid ([`ConfigError::EvictAfterZero`]); subscriptions can opt out with
    /// [`SubscribeOptions::never_evict`].
    pub fn evict_after(mut self, misses: u32) -> Self {
        self.evict_after = Some(misses);
        self
    }

    /// Bounds one whole publish: each send waits at most until the earlier of its own
    /// deadline and `publish start + timeout` (default: no bound). Applies to
    /// [`Overflow::Block`] too, so a publish to many stalled subscribers cannot take
    /// subscribers × timeout, nor forever. Sends cut short are counted as dropped.
    pub fn publish_timeout(mut self, timeout: Duration) -> Self {
        self.config.publish_timeout = Some(timeout);
        self
    }

    /// Caps the number of broker-owned dispatch threads (default: the number of CPUs).
    ///
    /// Threads are spawned lazily, the first time a publish has enough subscribers to need
    /// them, and joined by [`Broker::close`]. `0` means no dispatch threads: every publish
    /// delivers on the publishing thread.
    pub fn workers(mut self, workers: usize) -> Self {
        self.config.workers = workers;
        self
    }

    /// Sets the number of subscribers of one topic from which a publish is split into stripes
    /// delivered in parallel by the dispatch pool (default [`DEFAULT_DISPATCH_THRESHOLD`]).
    /// Below it, the publishing thread delivers every message itself. Values below 2 are
    /// treated as 2.
    pub fn dispatch_threshold(mut self, subscribers: usize) -> Self {
        self.config.dispatch_threshold = subscribers.max(2);
        self
    }

    /// Builds the broker.
    ///
    /// # Panics
    ///
    /// Panics if the configuration is invalid (a capacity above [`MAX_CAPACITY`], or
    /// `evict_after(0)`). Use [`try_build`](Self::try_build) when the settings come from user
    /// input.
    #[track_caller]
    #[must_use]
    pub fn build(self) -> Broker<T> {
        match self.try_build() {
            Ok(broker) => broker,
            Err(err) => panic!("{err}"),
        }
    }

    /// Builds the broker, or says why the configuration is invalid.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] if the capacity is above [`MAX_CAPACITY`] or `evict_after` was
    /// given 0.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncmq::{Broker, ConfigError, Error, MAX_CAPACITY};
    ///
    /// let result = Broker::<u8>::builder().capacity(MAX_CAPACITY + 1).try_build();
    /// assert_eq!(
    ///     result.err(),
    ///     Some(Error::InvalidConfig(ConfigError::CapacityTooLarge { capacity: MAX_CAPACITY + 1 }))
    /// );
    /// ```
    pub fn try_build(mut self) -> Result<Broker<T>, Error> {
        check_capacity(self.config.subscriber.capacity)?;
        if let Some(misses) = self.evict_after {
            self.config.subscriber.evict_after = Some(check_evict_after(misses)?);
        }
        Ok(Broker::with_config(self.config))
    }
}

/// Settings for one subscription, overriding the broker's defaults. Passed to
/// [`Broker::subscribe_with`].
///
/// # Examples
///
/// ```
/// use syncmq::{Broker, Overflow, SubscribeOptions};
///
/// let broker = Broker::<u64>::builder().overflow(Overflow::Block).build();
/// // The audit log may hold up publishers; the dashboard only wants fresh data.
/// let audit = broker.subscribe("orders")?;
/// let dashboard = broker.subscribe_with(
///     "orders",
///     SubscribeOptions::default().capacity(1).overflow(Overflow::DropOldest),
/// )?;
/// for n in 1..=3 {
///     broker.publish("orders", n)?;
/// }
/// assert_eq!(audit.try_iter().collect::<Vec<_>>(), [1, 2, 3]);
/// assert_eq!(dashboard.try_recv(), Ok(3));
/// assert_eq!(dashboard.dropped(), 2);
/// # Ok::<(), syncmq::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[must_use = "options do nothing until passed to `subscribe_with`"]
pub struct SubscribeOptions {
    /// Queue bound, if overridden.
    capacity: Option<usize>,
    /// Full-queue policy, if overridden.
    overflow: Option<Overflow>,
    /// Eviction threshold, if overridden: `Some(None)` turns eviction off, `Some(Some(0))`
    /// is the invalid `evict_after(0)`, reported by `subscribe_with`.
    evict_after: Option<Option<u32>>,
}

impl SubscribeOptions {
    /// Sets this subscription's queue bound (0 = rendezvous).
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = Some(capacity);
        self
    }

    /// Sets this subscription's full-queue policy.
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = Some(overflow);
        self
    }

    /// Shorthand for `.overflow(Overflow::Timeout(timeout))`.
    pub fn send_timeout(self, timeout: Duration) -> Self {
        self.overflow(Overflow::Timeout(timeout))
    }

    /// Evicts this subscription after `misses` consecutive misses (see
    /// [`BrokerBuilder::evict_after`]). `0` is invalid.
    pub fn evict_after(mut self, misses: u32) -> Self {
        self.evict_after = Some(Some(misses));
        self
    }

    /// Never evicts this subscription, whatever the broker's default.
    pub fn never_evict(mut self) -> Self {
        self.evict_after = Some(None);
        self
    }

    /// Applies these options over the broker's defaults.
    pub(crate) fn resolve(self, defaults: SubscriberConfig) -> Result<SubscriberConfig, Error> {
        let evict_after = match self.evict_after {
            None => defaults.evict_after,
            Some(None) => None,
            Some(Some(misses)) => Some(check_evict_after(misses)?),
        };
        Ok(SubscriberConfig {
            capacity: check_capacity(self.capacity.unwrap_or(defaults.capacity))?,
            overflow: self.overflow.unwrap_or(defaults.overflow),
            evict_after,
        })
    }
}

//! Broker configuration: [`BrokerBuilder`], [`Overflow`] and their defaults.

use std::fmt;
use std::marker::PhantomData;
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
pub const DEFAULT_DISPATCH_THRESHOLD: usize = 256;

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
    Timeout(Duration),
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
            Overflow::Drop => false,
            Overflow::Timeout(timeout) => !timeout.is_zero(),
        }
    }
}

/// The settings a broker runs with. Fixed once the broker is built.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Config {
    /// Per-subscriber queue bound; 0 makes every queue a rendezvous channel.
    pub(crate) capacity: usize,
    /// Policy for full queues.
    pub(crate) overflow: Overflow,
    /// Upper bound on dispatch threads; 0 means every publish runs on its own thread.
    pub(crate) workers: usize,
    /// Subscriber count from which a publish is spread over the dispatch pool.
    pub(crate) dispatch_threshold: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            capacity: DEFAULT_CAPACITY,
            overflow: Overflow::default(),
            workers: num_cpus::get(),
            dispatch_threshold: DEFAULT_DISPATCH_THRESHOLD,
        }
    }
}

impl Config {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.capacity > MAX_CAPACITY {
            return Err(ConfigError::CapacityTooLarge {
                capacity: self.capacity,
            });
        }
        Ok(())
    }
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
    /// The message type of the broker being built; `fn() -> T` keeps the builder `Send + Sync`
    /// whatever `T` is.
    marker: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for BrokerBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerBuilder")
            .field("capacity", &self.config.capacity)
            .field("overflow", &self.config.overflow)
            .field("workers", &self.config.workers)
            .field("dispatch_threshold", &self.config.dispatch_threshold)
            .finish()
    }
}

impl<T: Clone + Send + 'static> BrokerBuilder<T> {
    pub(crate) fn new() -> Self {
        BrokerBuilder {
            config: Config::default(),
            marker: PhantomData,
        }
    }

    /// Sets the bound of every subscriber's queue (default [`DEFAULT_CAPACITY`]).
    ///
    /// `0` makes each queue a rendezvous: a message is delivered only to a subscriber that is
    /// waiting in `recv` at that moment (or becomes so while the publish waits, per
    /// [`Overflow`]).
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.config.capacity = capacity;
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
        self.config.overflow = overflow;
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
    /// Panics if the configuration is invalid (a capacity above [`MAX_CAPACITY`]). Use
    /// [`try_build`](Self::try_build) when the settings come from user input.
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
    /// [`Error::InvalidConfig`] if the capacity is above [`MAX_CAPACITY`].
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
    pub fn try_build(self) -> Result<Broker<T>, Error> {
        self.config.validate()?;
        Ok(Broker::with_config(self.config))
    }
}

//! Every public error type of the crate.
//!
//! Broker operations (`subscribe`, `publish`, building a broker) fail with [`Error`]. Receiving
//! fails with [`RecvError`], [`TryRecvError`] or [`RecvTimeoutError`], shaped like their
//! crossbeam-channel namesakes. A subscriber that is skipped because its queue is full is *not* an
//! error: it is counted in the [`PublishReport`](crate::PublishReport). With the `nats` feature,
//! building a bridge fails with [`BridgeError`].

use std::error;
use std::fmt;

/// The error returned by broker operations.
///
/// # Examples
///
/// ```
/// use syncmq::{Broker, Error};
///
/// let broker = Broker::<u32>::new();
/// assert!(matches!(broker.subscribe("bad..topic"), Err(Error::InvalidTopic { .. })));
///
/// broker.close();
/// assert_eq!(broker.publish("orders", 1), Err(Error::Closed));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The broker has been closed (by [`Broker::close`](crate::Broker::close) or by dropping its
    /// last handle); it accepts no more publishes or subscriptions.
    Closed,
    /// The topic (or the pattern of a subscription, or the name of a queue group) is not valid.
    /// Nothing was published or subscribed.
    InvalidTopic {
        /// The rejected input, as given: the topic, pattern or group name.
        topic: String,
        /// What is wrong with it.
        reason: TopicError,
    },
    /// The builder, or the [`SubscribeOptions`](crate::SubscribeOptions) of a subscription, gave
    /// a setting the broker cannot honour.
    InvalidConfig(ConfigError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Closed => "broker is closed".fmt(f),
            Error::InvalidTopic { topic, reason } => write!(f, "invalid topic {topic:?}: {reason}"),
            Error::InvalidConfig(reason) => write!(f, "invalid broker configuration: {reason}"),
        }
    }
}

impl error::Error for Error {
    fn source(&self) -> Option<&(dyn error::Error + 'static)> {
        match self {
            Error::Closed => None,
            Error::InvalidTopic { reason, .. } => Some(reason),
            Error::InvalidConfig(reason) => Some(reason),
        }
    }
}

impl From<ConfigError> for Error {
    fn from(reason: ConfigError) -> Self {
        Error::InvalidConfig(reason)
    }
}

/// Why a [`Bridge`](crate::Bridge) could not be built, from
/// [`BridgeBuilder::build`](crate::BridgeBuilder::build).
///
/// Nothing is left running after an error: no thread, no connection, no export queue.
///
/// # Examples
///
/// ```
/// use syncmq::{Bridge, BridgeError, Broker};
///
/// let broker = Broker::<String>::new();
/// let err = Bridge::builder(&broker, "nats://127.0.0.1:4222").export("orders..new").build();
/// assert!(matches!(err, Err(BridgeError::InvalidPattern { .. })));
/// ```
#[cfg(feature = "nats")]
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BridgeError {
    /// The server URL (or one of a comma-separated list) is not a valid NATS server address.
    InvalidUrl {
        /// The rejected input, as given.
        url: String,
        /// What is wrong with it, as the NATS client says.
        reason: String,
    },
    /// An export or import pattern is not a valid syncmq pattern (see
    /// [`validate_pattern`](crate::validate_pattern)).
    InvalidPattern {
        /// The rejected pattern, as given.
        pattern: String,
        /// What is wrong with it.
        reason: TopicError,
    },
    /// A queue group name is empty or contains whitespace, which NATS does not allow, or is
    /// longer than [`MAX_TOPIC_LEN`](crate::MAX_TOPIC_LEN) bytes, the limit on the broker's own
    /// group names (a name past the server's protocol line limit would break the connection).
    InvalidGroup {
        /// The rejected name, as given.
        group: String,
    },
    /// No server could be reached within the connect timeout, or the server refused the
    /// connection, or the NATS client failed while connecting (a `tls://` server, for one:
    /// the client is built without a TLS crypto provider).
    Connect {
        /// The server URL given to the builder.
        url: String,
        /// Why, as the NATS client says (or that the connect timeout passed, or the client's
        /// panic message).
        reason: String,
    },
    /// The broker refused the export queues: it is closed, or the queue settings are invalid
    /// (a capacity above [`MAX_CAPACITY`](crate::MAX_CAPACITY)).
    Broker(Error),
    /// The bridge's thread or its runtime could not be started.
    Spawn {
        /// The operating system's reason.
        reason: String,
    },
}

#[cfg(feature = "nats")]
impl fmt::Display for BridgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BridgeError::InvalidUrl { url, reason } => {
                write!(f, "invalid NATS server URL {url:?}: {reason}")
            }
            BridgeError::InvalidPattern { pattern, reason } => {
                write!(f, "invalid bridge pattern {pattern:?}: {reason}")
            }
            BridgeError::InvalidGroup { group } => write!(
                f,
                "invalid queue group {group:?}: it must be non-empty, without whitespace, and at \
                 most {} bytes long",
                crate::MAX_TOPIC_LEN
            ),
            BridgeError::Connect { url, reason } => {
                write!(f, "cannot connect to NATS server {url:?}: {reason}")
            }
            BridgeError::Broker(err) => write!(f, "broker refused the bridge: {err}"),
            BridgeError::Spawn { reason } => write!(f, "cannot start the bridge thread: {reason}"),
        }
    }
}

#[cfg(feature = "nats")]
impl error::Error for BridgeError {
    fn source(&self) -> Option<&(dyn error::Error + 'static)> {
        match self {
            BridgeError::InvalidPattern { reason, .. } => Some(reason),
            BridgeError::Broker(err) => Some(err),
            _ => None,
        }
    }
}

#[cfg(feature = "nats")]
impl From<Error> for BridgeError {
    fn from(err: Error) -> Self {
        BridgeError::Broker(err)
    }
}

/// Why a topic was rejected. Byte positions index into the topic as UTF-8.
///
/// # Examples
///
/// ```
/// use syncmq::{validate_topic, TopicError};
///
/// assert_eq!(validate_topic("orders.created"), Ok(()));
/// assert_eq!(validate_topic(""), Err(TopicError::Empty));
/// assert_eq!(validate_topic("orders..created"), Err(TopicError::EmptyToken { position: 7 }));
/// assert_eq!(
///     validate_topic("orders.*"),
///     Err(TopicError::Wildcard { character: '*', position: 7 })
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TopicError {
    /// The topic is the empty string.
    Empty,
    /// The topic is longer than [`MAX_TOPIC_LEN`](crate::MAX_TOPIC_LEN) bytes.
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// A `.`-separated token is empty: the topic starts or ends with `.`, or has `..`.
    EmptyToken {
        /// Byte position where the empty token starts.
        position: usize,
    },
    /// The topic contains a character that is not printable: whitespace, a control
    /// character, an invisible format character (such as U+200B) or a noncharacter.
    InvalidCharacter {
        /// The offending character.
        character: char,
        /// Its byte position.
        position: usize,
    },
    /// A published topic contains `*` or `>`: wildcards are for subscriptions only.
    Wildcard {
        /// The wildcard character.
        character: char,
        /// Its byte position.
        position: usize,
    },
    /// A pattern uses `*` or `>` inside a longer token; a wildcard must be a whole token.
    PartialWildcard {
        /// The wildcard character.
        character: char,
        /// Its byte position.
        position: usize,
    },
    /// A pattern has `>` before its last token; `>` matches the rest of a topic, so it must
    /// come last.
    WildcardNotLast {
        /// Byte position of the `>`.
        position: usize,
    },
}

impl fmt::Display for TopicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TopicError::Empty => "topic is empty".fmt(f),
            TopicError::TooLong { len } => write!(
                f,
                "topic is {len} bytes long, the limit is {}",
                crate::MAX_TOPIC_LEN
            ),
            TopicError::EmptyToken { position } => {
                write!(f, "empty token at byte {position}")
            }
            TopicError::InvalidCharacter {
                character,
                position,
            } => write!(
                f,
                "character {character:?} at byte {position} is whitespace or not printable"
            ),
            TopicError::Wildcard {
                character,
                position,
            } => write!(
                f,
                "wildcard {character:?} at byte {position} is not allowed in a published topic"
            ),
            TopicError::PartialWildcard {
                character,
                position,
            } => write!(
                f,
                "wildcard {character:?} at byte {position} must be a whole token"
            ),
            TopicError::WildcardNotLast { position } => {
                write!(f, "wildcard '>' at byte {position} must be the last token")
            }
        }
    }
}

impl error::Error for TopicError {}

/// Why a broker configuration was rejected by
/// [`BrokerBuilder::try_build`](crate::BrokerBuilder::try_build), or a subscription's options by
/// [`Broker::subscribe_with`](crate::Broker::subscribe_with) (and
/// [`subscribe_group_with`](crate::Broker::subscribe_group_with)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The per-subscriber capacity is above
    /// [`MAX_CAPACITY`](crate::MAX_CAPACITY). Queues are allocated up front, so an enormous
    /// bound would allocate (or fail to allocate) that much memory per subscriber.
    CapacityTooLarge {
        /// The capacity asked for.
        capacity: usize,
    },
    /// `evict_after(0)`: a subscriber cannot be evicted before it misses anything. Use
    /// [`SubscribeOptions::never_evict`](crate::SubscribeOptions::never_evict) to turn
    /// eviction off.
    EvictAfterZero,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ConfigError::CapacityTooLarge { capacity } => write!(
                f,
                "capacity {capacity} is above the limit of {}",
                crate::MAX_CAPACITY
            ),
            ConfigError::EvictAfterZero => "evict_after must be at least 1".fmt(f),
        }
    }
}

impl error::Error for ConfigError {}

/// The error returned by [`Subscription::recv`](crate::Subscription::recv): the subscription
/// has ended and its queue is empty. The variant says why it ended.
///
/// Every message queued before the end is still received first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecvError {
    /// The broker was closed.
    Closed,
    /// The broker evicted this subscriber because it missed too many messages in a row (see
    /// [`BrokerBuilder::evict_after`](crate::BrokerBuilder::evict_after)).
    Evicted,
}

/// The error returned by [`Subscription::try_recv`](crate::Subscription::try_recv).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TryRecvError {
    /// The queue is empty right now; more messages may come.
    Empty,
    /// The broker was closed and the queue is empty.
    Closed,
    /// The subscriber was evicted and the queue is empty.
    Evicted,
}

/// The error returned by [`Subscription::recv_timeout`](crate::Subscription::recv_timeout) and
/// [`Subscription::recv_deadline`](crate::Subscription::recv_deadline).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecvTimeoutError {
    /// No message arrived before the deadline; more messages may come.
    Timeout,
    /// The broker was closed and the queue is empty.
    Closed,
    /// The subscriber was evicted and the queue is empty.
    Evicted,
}

impl RecvError {
    /// Returns `true` if the subscription has ended because the broker closed.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncmq::Broker;
    ///
    /// let broker = Broker::<u32>::new();
    /// let sub = broker.subscribe("events")?;
    /// broker.close();
    /// let err = sub.recv().unwrap_err();
    /// assert!(err.is_closed());
    /// assert!(!err.is_evicted());
    /// # Ok::<(), syncmq::Error>(())
    /// ```
    pub fn is_closed(&self) -> bool {
        matches!(self, RecvError::Closed)
    }

    /// Returns `true` if the subscription has ended because it was evicted.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncmq::{Broker, Overflow};
    ///
    /// let broker = Broker::builder().capacity(1).overflow(Overflow::Drop).evict_after(1).build();
    /// let sub = broker.subscribe("prices")?;
    /// broker.publish("prices", 1)?;
    /// broker.publish("prices", 2)?; // the queue is full: a miss, and `sub` is evicted
    /// assert_eq!(sub.recv(), Ok(1));
    /// let err = sub.recv().unwrap_err();
    /// assert!(err.is_evicted());
    /// assert!(!err.is_closed());
    /// # Ok::<(), syncmq::Error>(())
    /// ```
    pub fn is_evicted(&self) -> bool {
        matches!(self, RecvError::Evicted)
    }
}

impl TryRecvError {
    /// Returns `true` if the queue was only empty for now.
    pub fn is_empty(&self) -> bool {
        matches!(self, TryRecvError::Empty)
    }

    /// Returns `true` if the subscription has ended because the broker closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, TryRecvError::Closed)
    }

    /// Returns `true` if the subscription has ended because it was evicted.
    pub fn is_evicted(&self) -> bool {
        matches!(self, TryRecvError::Evicted)
    }
}

impl RecvTimeoutError {
    /// Returns `true` if the wait timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, RecvTimeoutError::Timeout)
    }

    /// Returns `true` if the subscription has ended because the broker closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, RecvTimeoutError::Closed)
    }

    /// Returns `true` if the subscription has ended because it was evicted.
    pub fn is_evicted(&self) -> bool {
        matches!(self, RecvTimeoutError::Evicted)
    }
}

impl From<RecvError> for TryRecvError {
    fn from(err: RecvError) -> Self {
        match err {
            RecvError::Closed => TryRecvError::Closed,
            RecvError::Evicted => TryRecvError::Evicted,
        }
    }
}

impl From<RecvError> for RecvTimeoutError {
    fn from(err: RecvError) -> Self {
        match err {
            RecvError::Closed => RecvTimeoutError::Closed,
            RecvError::Evicted => RecvTimeoutError::Evicted,
        }
    }
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Closed => "receiving on a subscription whose broker is closed".fmt(f),
            RecvError::Evicted => "receiving on a subscription that was evicted".fmt(f),
        }
    }
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryRecvError::Empty => "receiving on an empty subscription".fmt(f),
            TryRecvError::Closed => RecvError::Closed.fmt(f),
            TryRecvError::Evicted => RecvError::Evicted.fmt(f),
        }
    }
}

impl fmt::Display for RecvTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvTimeoutError::Timeout => "timed out waiting on a subscription".fmt(f),
            RecvTimeoutError::Closed => RecvError::Closed.fmt(f),
            RecvTimeoutError::Evicted => RecvError::Evicted.fmt(f),
        }
    }
}

impl error::Error for RecvError {}
impl error::Error for TryRecvError {}
impl error::Error for RecvTimeoutError {}

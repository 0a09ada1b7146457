//! An in-process, topic-based publish/subscribe broker for synchronous Rust programs, on plain
//! OS threads, with no async runtime.
//!
//! # Hello, world!
//!
//! ```
//! use syncmq::Broker;
//!
//! let broker = Broker::new();
//! let sub = broker.subscribe("greetings")?;
//!
//! broker.publish("greetings", "Hello, world!")?;
//! assert_eq!(sub.recv(), Ok("Hello, world!"));
//! # Ok::<(), syncmq::Error>(())
//! ```
//!
//! # Topics
//!
//! A topic is a `.`-separated list of non-empty tokens, such as `orders.created.eu`, of at
//! most [`MAX_TOPIC_LEN`] bytes of printable, non-whitespace characters. `*` and `>` are
//! reserved for wildcards. A bad topic is an [`Error::InvalidTopic`] that says what is wrong;
//! [`validate_topic`] checks one up front. Matching is exact: a subscriber of `orders` does not
//! receive `orders.created`.
//!
//! ```
//! use syncmq::{Broker, Error, TopicError};
//!
//! let broker = Broker::<u32>::new();
//! let err = broker.subscribe("orders..created").unwrap_err();
//! assert_eq!(
//!     err,
//!     Error::InvalidTopic {
//!         topic: "orders..created".into(),
//!         reason: TopicError::EmptyToken { position: 7 },
//!     }
//! );
//! ```
//!
//! # Receiving
//!
//! Every [`Subscription`] is a bounded queue. Receive with [`recv`](Subscription::recv),
//! [`try_recv`](Subscription::try_recv), [`recv_timeout`](Subscription::recv_timeout),
//! [`recv_deadline`](Subscription::recv_deadline) or the iterators, or wait on several
//! subscriptions at once by handing their [`receiver`](Subscription::receiver)s to
//! `crossbeam_channel::select!`. Dropping a subscription unsubscribes it;
//! [`unsubscribe`](Subscription::unsubscribe) also returns what was still queued.
//!
//! ```
//! use syncmq::Broker;
//!
//! let broker = Broker::new();
//! let sub = broker.subscribe("jobs")?;
//! for job in ["a", "b", "c"] {
//!     broker.publish("jobs", job)?;
//! }
//! assert_eq!(sub.recv(), Ok("a"));
//! assert_eq!(sub.try_iter().collect::<Vec<_>>(), ["b", "c"]);
//! # Ok::<(), syncmq::Error>(())
//! ```
//!
//! # Backpressure and slow subscribers
//!
//! [`Broker::publish`] is synchronous: it returns when every subscriber's send has completed or
//! given up, and its [`PublishReport`] says how many subscribers got the message and how many
//! did not. What happens at a full queue is the [`Overflow`] policy:
//!
//! - [`Overflow::Timeout`] (the default, 5 ms): wait until a deadline computed for that send,
//!   then skip the subscriber;
//! - [`Overflow::Block`]: wait for room, however long;
//! - [`Overflow::Drop`]: never wait.
//!
//! Every subscriber with room gets the message first; the full ones are then waited on
//! together, so one stalled subscriber costs one timeout per publish and never delays the
//! others. Nothing is lost silently: every skipped message is counted in the report, in the
//! subscriber's [`dropped`](Subscription::dropped) and in [`Broker::stats`].
//!
//! ```
//! use std::time::Duration;
//! use syncmq::Broker;
//!
//! let broker = Broker::builder().capacity(1).send_timeout(Duration::from_millis(1)).build();
//! let slow = broker.subscribe("prices")?;
//! broker.publish("prices", 1)?;
//! let report = broker.publish("prices", 2)?; // `slow` is full: skipped after 1 ms
//! assert_eq!((report.delivered, report.dropped), (0, 1));
//! assert_eq!(slow.dropped(), 1);
//! assert_eq!(broker.stats().dropped, 1);
//! # Ok::<(), syncmq::Error>(())
//! ```
//!
//! # Shutdown
//!
//! [`Broker::close`] (or dropping the last `Broker` handle) stops the broker: publishing and
//! subscribing fail with [`Error::Closed`], publishes waiting on full queues give up at once,
//! and every subscriber drains its queue and then gets [`RecvError::Closed`]. No thread is left
//! blocked, and the dispatch threads are joined.
//!
//! ```
//! use std::thread;
//! use syncmq::{Broker, RecvError};
//!
//! let broker = Broker::<u32>::new();
//! let sub = broker.subscribe("events")?;
//! let waiter = thread::spawn(move || sub.recv());
//! broker.close();
//! assert_eq!(waiter.join().unwrap(), Err(RecvError::Closed));
//! # Ok::<(), syncmq::Error>(())
//! ```
//!
//! # Threading model
//!
//! There is no background thread per subscriber and none per publish. A publish to fewer than
//! [`DEFAULT_DISPATCH_THRESHOLD`] subscribers (see [`BrokerBuilder::dispatch_threshold`]) runs
//! entirely on the publishing thread. A larger fan-out is cut into stripes: the publishing
//! thread delivers one and a small pool of broker-owned threads (`syncmq-dispatch-{i}`, at
//! most [`BrokerBuilder::workers`], spawned on first need, joined on close) deliver the
//! others. The publish still returns only when all stripes are done, so each subscriber sees
//! one publisher's messages in publish order.
//!
//! `Broker` is `Clone + Send + Sync`; `Subscription` is `Send`. Message types must be
//! `Clone + Send + 'static`: each subscriber gets its own clone, so wrap large payloads in an
//! `Arc`.
//!
//! # Cargo features
//!
//! None yet.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod broker;
mod config;
mod delivery;
mod dispatch;
mod error;
mod registry;
mod stats;
mod subscriber;
mod subscription;
mod topic;
mod trie;

pub use crate::broker::Broker;
pub use crate::config::{
    BrokerBuilder, DEFAULT_CAPACITY, DEFAULT_DISPATCH_THRESHOLD, DEFAULT_SEND_TIMEOUT,
    MAX_CAPACITY, Overflow, SubscribeOptions,
};
pub use crate::error::{ConfigError, Error, RecvError, RecvTimeoutError, TopicError, TryRecvError};
pub use crate::stats::{BrokerStats, PublishReport, SubscriptionStats, TopicStats};
pub use crate::subscription::{IntoIter, Iter, Subscription, SubscriptionStatus, TryIter};
pub use crate::topic::{MAX_TOPIC_LEN, pattern_matches, validate_pattern, validate_topic};

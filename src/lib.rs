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
//! # Topics and filters
//!
//! A topic is a `.`-separated list of non-empty tokens, such as `orders.created.eu`, of at
//! most [`MAX_TOPIC_LEN`] bytes of printable, non-whitespace characters. A subscription names
//! a topic or a *pattern* with NATS wildcards: `*` matches exactly one token, `>` (last token
//! only) one or more trailing tokens. Publishing to a pattern is an error. A bad topic or
//! pattern is an [`Error::InvalidTopic`] that says what is wrong; [`validate_topic`] and
//! [`validate_pattern`] check one up front, and [`pattern_matches`] is the matching rule.
//!
//! ```
//! use syncmq::{Broker, Error, TopicError};
//!
//! let broker = Broker::new();
//! let one_level = broker.subscribe("orders.*")?;
//! let all_below = broker.subscribe("orders.>")?;
//! broker.publish("orders.created", 1)?;
//! broker.publish("orders.created.eu", 2)?;
//! assert_eq!(one_level.try_iter().collect::<Vec<_>>(), [1]);
//! assert_eq!(all_below.try_iter().collect::<Vec<_>>(), [1, 2]);
//!
//! assert_eq!(
//!     broker.subscribe("orders..created").unwrap_err(),
//!     Error::InvalidTopic {
//!         topic: "orders..created".into(),
//!         reason: TopicError::EmptyToken { position: 7 },
//!     }
//! );
//! # Ok::<(), syncmq::Error>(())
//! ```
//!
//! Routing stays cheap: with no wildcard subscription, a publish is one hash lookup; with
//! some, the subscribers of each published topic are resolved once through a token trie and
//! cached (at most 4096 topics; any change to the subscriptions empties the cache). A thread
//! that publishes to the same topic twice in a row, with no subscription change in between,
//! skips even the lookup.
//!
//! # Queue groups
//!
//! [`Broker::subscribe_group`] makes a subscription a member of a named group on a pattern:
//! each matching message goes to exactly one member of each group (preferring members with
//! room, round-robin), besides every plain subscriber. One broker does both pub/sub and work
//! queues.
//!
//! ```
//! use syncmq::Broker;
//!
//! let broker = Broker::new();
//! let workers: Vec<_> = (0..3).map(|_| broker.subscribe_group("jobs.>", "resizers")).collect::<Result<_, _>>()?;
//! for job in 0..6 {
//!     assert_eq!(broker.publish("jobs.resize", job)?.groups, 1);
//! }
//! let done: usize = workers.iter().map(|w| w.try_iter().count()).sum();
//! assert_eq!(done, 6); // each job exactly once
//! # Ok::<(), syncmq::Error>(())
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
//! did not. What happens at a full queue is the [`Overflow`] policy, set for the broker or per
//! subscription with [`SubscribeOptions`]:
//!
//! - [`Overflow::Timeout`] (the default, 5 ms): wait until a deadline computed for that send,
//!   then skip the subscriber;
//! - [`Overflow::Block`]: wait for room, however long;
//! - [`Overflow::Drop`]: never wait;
//! - [`Overflow::DropOldest`]: never wait; discard the oldest queued message instead.
//!
//! Every subscriber with room gets the message first; the full ones are then waited on
//! together, so one stalled subscriber costs one timeout per publish and never delays the
//! others. [`BrokerBuilder::publish_timeout`] caps a whole publish, and
//! [`BrokerBuilder::evict_after`] removes a subscriber that misses too many messages in a row,
//! after which publishes pay nothing for it and its `recv` ends with [`RecvError::Evicted`].
//!
//! Nothing is lost silently: every skipped message is counted in the report, in the
//! subscriber's [`dropped`](Subscription::dropped) (and [`take_missed`](Subscription::take_missed),
//! which tells a consumer how many it missed since it last asked), in [`Broker::topic_stats`]
//! and in [`Broker::stats`].
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
//! assert_eq!(slow.take_missed(), 1);
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
//! others; the publishing thread then delivers any of its stripes no dispatch thread has taken
//! yet, and never another publish's. The publish still returns only when all stripes are done,
//! so each subscriber sees one publisher's messages in publish order.
//!
//! Sends take no lock. A subscription that leaves instead waits for the publishes that are
//! putting messages into queues at that moment, on any broker in the process (microseconds,
//! unless such a publishing thread is preempted; never for a publish that waits on a full
//! queue). That is what makes [`Subscription::unsubscribe`] return exactly what was delivered
//! and not received.
//!
//! `Broker` is `Clone + Send + Sync`; `Subscription` is `Send + Sync` (several threads may
//! receive from one; each message goes to one of them). Message types must be
//! `Clone + Send + 'static`: each subscriber gets its own clone, so wrap large payloads in an
//! `Arc`.
//!
//! # Scaling out
//!
//! With the `nats` feature, a `Bridge` shares subjects between brokers in several processes
//! or machines through a NATS server or cluster: local publishes matching its export patterns
//! also go to NATS, and NATS messages matching its import patterns are published into the
//! broker (or, for a group import, into one process of a NATS queue group). Messages cross as
//! bytes through a `Codec`. A subject may be exported and imported by every broker without
//! loops or duplicates; delivery across the bridge is at most once, as in NATS core. Each
//! bridge owns two threads, `syncmq-bridge` (a private single-threaded tokio runtime driving
//! the async-nats client, so the API stays synchronous) and `syncmq-export` (waiting on the
//! export queues). See the `bridge` module (built with the feature) for the details.
//!
//! ```no_run
//! # #[cfg(feature = "nats")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use syncmq::{Bridge, Broker};
//!
//! let broker = Broker::<String>::new();
//! let bridge = Bridge::builder(&broker, "nats://127.0.0.1:4222")
//!     .export("orders.>")
//!     .import("prices.>")
//!     .import_group("jobs.>", "workers")
//!     .build()?;
//! broker.publish("orders.created", "order 1".to_string())?; // also on NATS
//! # drop(bridge);
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "nats"))]
//! # fn main() {}
//! ```
//!
//! # Cargo features
//!
//! - `nats` (off by default): the `Bridge` to NATS, and the `Codec` trait. Adds the
//!   async-nats client, tokio (a `current_thread` runtime), `bytes` and `futures-util` as
//!   dependencies; without it the crate depends on crossbeam-channel, parking_lot and num_cpus
//!   only, and none of the bridge is compiled.

#![forbid(unsafe_code)]

#[cfg(feature = "nats")]
pub mod bridge;
mod broker;
#[cfg(feature = "nats")]
mod codec;
mod config;
mod delivery;
mod dispatch;
mod error;
mod grace;
mod registry;
mod route_memo;
mod stats;
mod subscriber;
mod subscription;
mod topic;
mod trie;

#[cfg(feature = "nats")]
pub use crate::bridge::{
    Bridge, BridgeBuilder, BridgeDrops, BridgeStats, DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_EXPORT_CAPACITY,
};
pub use crate::broker::Broker;
#[cfg(feature = "nats")]
pub use crate::codec::Codec;
pub use crate::config::{
    BrokerBuilder, DEFAULT_CAPACITY, DEFAULT_DISPATCH_THRESHOLD, DEFAULT_SEND_TIMEOUT,
    MAX_CAPACITY, Overflow, SubscribeOptions,
};
#[cfg(feature = "nats")]
pub use crate::error::BridgeError;
pub use crate::error::{ConfigError, Error, RecvError, RecvTimeoutError, TopicError, TryRecvError};
pub use crate::stats::{BrokerStats, PublishReport, SubscriptionStats, TopicStats};
pub use crate::subscription::{IntoIter, Iter, Subscription, SubscriptionStatus, TryIter};
pub use crate::topic::{MAX_TOPIC_LEN, pattern_matches, validate_pattern, validate_topic};
/// The byte buffer [`Codec`] encodes to and decodes from, from the `bytes` crate, re-exported
/// so that implementing [`Codec`] needs no extra dependency.
#[cfg(feature = "nats")]
pub use bytes::Bytes;

/// The README's code blocks, compiled and run by `cargo test --doc` so they keep up with the
/// API. Exists only when rustdoc collects doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

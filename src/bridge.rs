//! [`Bridge`]: share subjects between brokers in several processes or machines through a NATS
//! server or cluster.
//!
//! A bridge connects one [`Broker`] to NATS. Local publishes matching an *export* pattern are
//! also published to NATS on the same subject; NATS messages matching an *import* pattern are
//! published into the broker, or, for a *group import*, to one process of a NATS queue group.
//! NATS has the model syncmq has (dot-separated subjects, `*` and `>` wildcards, queue
//! groups), so a program that outgrows one process keeps its subjects and its API.
//!
//! # Threading and runtime
//!
//! The NATS client, [async-nats], is asynchronous. It runs on a private tokio runtime, so the
//! bridge's API stays synchronous and its users never see `async`. Each bridge owns two OS
//! threads, both joined by [`Bridge::close`]:
//!
//! - `syncmq-bridge` runs a single-threaded (`current_thread`) tokio runtime: the connection,
//!   its reconnects, and the import subscriptions. An imported message is decoded and published
//!   into the broker on this thread, under the local subscribers' [`Overflow`] policies (so a
//!   local subscriber that blocks slows the bridge's imports, exactly as it would slow a local
//!   publisher, until the bridge closes: [`Bridge::close`] cuts such a wait short).
//! - `syncmq-export` waits on the export queues. They are broker queues (crossbeam channels),
//!   which only a blocking thread can wait on, and the runtime thread must never block on
//!   them; so this thread waits with a crossbeam `Select`, encodes the messages and hands them
//!   to the client in batches, driving that step with the runtime's `Handle::block_on`.
//!
//! (Both names fit in the 15 bytes Linux keeps, so `top -H` and `ps -L` show them.)
//!
//! A single-threaded runtime is enough: the bridge does little work per message besides
//! copying bytes, and it adds no worker pool. A server given by host name is resolved by
//! tokio's blocking pool, on a short-lived extra thread.
//!
//! # Export queues and slow servers
//!
//! Each export pattern is a subscription of the bridge with its own bounded queue
//! ([`BridgeBuilder::export_capacity`], default [`DEFAULT_EXPORT_CAPACITY`]) and an
//! [`Overflow`] policy ([`BridgeBuilder::export_overflow`], default
//! [`Overflow::DropOldest`]). A slow or unreachable server therefore never stalls local
//! publishing: the queue fills and the policy drops, and every message the bridge could not
//! forward is counted in [`BridgeStats::dropped`], by reason.
//!
//! While the client is disconnected, what the export thread takes from the queues is dropped
//! at once and counted as [`BridgeDrops::server_unavailable`]: it is never sent later, so a
//! reconnect does not replay stale messages. The client reconnects by itself, with backoff
//! (up to 4 s between attempts), and [`Bridge::stats`] tells whether it is connected and how
//! often it reconnected.
//!
//! # Loops and duplicates
//!
//! A subject may be both exported and imported, by any number of brokers. Two rules keep a
//! message from coming back:
//!
//! - **An imported message is never re-exported.** Imports are published into the broker
//!   under an origin shared by all the broker's bridges, and the bridges' export queues skip
//!   messages from that origin.
//! - **A message a bridge exported is never re-imported by that bridge**: the connection is
//!   opened with NATS `no_echo`, so the server does not send a connection its own messages.
//!
//! So two brokers with one bridge each, both exporting and importing `chat.>`, see each
//! other's messages exactly once. Overlapping patterns in one bridge do not duplicate either:
//! a topic is exported by the first export pattern (in builder order) that matches it (only
//! that pattern's queue takes a copy, so a drop is counted once), and
//! imported by the first matching import (a plain import takes precedence over group imports).
//! Two bridges of one broker connected to the same server would each export the same message,
//! so use one bridge per broker and NATS network.
//!
//! # Delivery guarantee
//!
//! **At most once**, as NATS core: a message is delivered once or not at all, never twice.
//! Messages can be lost when an export queue overflows, while the server is unreachable, when
//! the NATS client or server drops messages for a slow consumer, or when the connection breaks
//! with messages in flight. Order is kept per topic from one publishing thread to each remote
//! subscriber; topics exported through different patterns may interleave differently. For
//! messages that must not be lost, use a log (for example NATS JetStream) beside the bridge.
//!
//! [async-nats]: https://docs.rs/async-nats

use std::collections::VecDeque;
use std::fmt;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use async_nats::client::{RequestError, RequestErrorKind};
use async_nats::connection::State;
use async_nats::{Client, ConnectOptions, Event, ServerAddr, Subject};
use crossbeam_channel::{Receiver, Select, Sender};
use futures_util::StreamExt;
use futures_util::future::select;
use parking_lot::Mutex;
use tokio::runtime::Handle;
use tokio::sync::{oneshot, watch};

use crate::broker::Broker;
use crate::codec::Codec;
use crate::config::{Overflow, SubscribeOptions};
use crate::delivery::BridgeImport;
use crate::error::{BridgeError, Error};
use crate::subscriber::{Origin, SubscriberState, Tagged};
use crate::subscription::Tap;
use crate::topic::{pattern_matches, validate_group, validate_pattern};

/// The default capacity of each export queue, in messages.
pub const DEFAULT_EXPORT_CAPACITY: usize = 1024;

/// The default bound on [`BridgeBuilder::build`]: connecting, subscribing the imports and
/// confirming them with the server.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The default bound on [`Bridge::close`]: flushing the export queues and stopping.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Roughly how many messages the export thread hands to the client in one step: the one its
/// wait returned, plus an equal share of this from each export queue.
const BATCH: usize = 256;

/// How long `close` waits, past its deadline, for the threads to finish shutting down.
const JOIN_GRACE: Duration = Duration::from_millis(500);

/// The longest `build` waits for the server to confirm the import subscriptions (see
/// `Connect::wait_for_registration`): only a client listening on every subject makes it wait
/// that long.
const REGISTRATION_PROBE_WAIT: Duration = Duration::from_secs(1);

/// A running bridge between a [`Broker`] and a NATS server. Made by [`Bridge::builder`].
///
/// Dropping a bridge closes it (see [`close`](Bridge::close)). A bridge holds a handle to its
/// broker, so the broker stays open at least until the bridge is closed.
///
/// # Examples
///
/// ```no_run
/// use syncmq::{Bridge, Broker};
///
/// let broker = Broker::<String>::new();
/// let bridge = Bridge::builder(&broker, "nats://127.0.0.1:4222")
///     .export("orders.>")
///     .import("prices.>")
///     .import_group("jobs.>", "workers")
///     .build()?;
///
/// let prices = broker.subscribe("prices.>")?;
/// broker.publish("orders.created", "order 1".to_string())?; // also sent to NATS
/// let price = prices.recv()?; // published to NATS by some other process
/// # drop(price);
///
/// let stats = bridge.stats();
/// println!("exported {}, imported {}, dropped {}", stats.exported, stats.imported, stats.dropped.total());
/// bridge.close();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Bridge {
    /// Counters shared with the bridge's threads.
    counters: Arc<Counters>,
    /// The export queues' states, for their `dropped` counters.
    queues: Vec<Arc<SubscriberState>>,
    /// A handle on the NATS client, for the connection state and its statistics.
    client: Client,
    /// The server URL, as given.
    url: String,
    /// Bound on `close`.
    close_timeout: Duration,
    /// The threads and their stop signals; `None` once closed. Held across the whole of
    /// `close`, so a second `close` returns only when the first has finished.
    running: Mutex<Option<Running>>,
    /// Set once `close` has finished.
    closed: AtomicBool,
}

/// What a running bridge needs to stop.
struct Running {
    /// Dropped first thing in `close`: disconnects the importer's cancel signal, so that an
    /// import waiting on a full local queue gives up (counting the message as dropped there)
    /// and the runtime thread can stop.
    import_cancel: Sender<()>,
    /// Tells the export thread to stop, with the deadline for flushing. Wakes its `Select`.
    export_stop: Sender<Instant>,
    /// The same deadline for the export thread's waits inside the runtime.
    closing: watch::Sender<Option<Instant>>,
    /// Disconnects when the export thread ends.
    export_alive: Receiver<()>,
    export_thread: JoinHandle<()>,
    /// Tells the runtime thread to stop, once the export thread is done with the client.
    runtime_stop: oneshot::Sender<Instant>,
    /// Disconnects when the runtime thread ends.
    runtime_alive: Receiver<()>,
    runtime_thread: JoinHandle<()>,
}

/// The bridge's counters. Each is only ever incremented, with `Relaxed` ordering: they are
/// statistics and order nothing else.
#[derive(Debug, Default)]
struct Counters {
    exported: AtomicU64,
    imported: AtomicU64,
    decode_errors: AtomicU64,
    server_unavailable: AtomicU64,
    publish_failed: AtomicU64,
    unflushed: AtomicU64,
    invalid_subject: AtomicU64,
    broker_closed: AtomicU64,
    slow_consumer: AtomicU64,
}

fn add(counter: &AtomicU64, amount: u64) {
    if amount > 0 {
        counter.fetch_add(amount, Ordering::Relaxed);
    }
}

fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// Counters of a bridge, from [`Bridge::stats`].
///
/// Counters only grow. Local subscribers that miss an imported message count it in the
/// broker's own statistics, as for any publish.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BridgeStats {
    /// Local messages handed to the NATS client for publishing.
    pub exported: u64,
    /// NATS messages published into the local broker.
    pub imported: u64,
    /// Messages the bridge could not forward, by reason.
    pub dropped: BridgeDrops,
    /// Imported payloads that [`Codec::decode`] rejected; they were skipped.
    pub decode_errors: u64,
    /// Times the client reconnected after losing its connection.
    pub reconnects: u64,
    /// Whether the client is connected to a server now. `false` once the bridge is closed.
    pub connected: bool,
}

/// Messages a bridge could not forward, by reason. Part of [`BridgeStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BridgeDrops {
    /// Local messages an export queue had no room for: refused or discarded by its
    /// [`Overflow`] policy (with [`Overflow::Block`] or [`Overflow::Timeout`], also a local
    /// publish still waiting for room when the bridge closed).
    pub export_queue_full: u64,
    /// Local messages taken from an export queue while the client was disconnected.
    pub server_unavailable: u64,
    /// Local messages the client refused to publish (larger than the server's maximum
    /// payload, or the client is shutting down).
    pub publish_failed: u64,
    /// Local messages still queued for export when [`Bridge::close`] reached its deadline.
    pub unflushed: u64,
    /// Imported messages whose NATS subject is not a valid syncmq topic (for example longer
    /// than [`MAX_TOPIC_LEN`](crate::MAX_TOPIC_LEN)).
    pub invalid_subject: u64,
    /// Imported messages that arrived after the local broker was closed.
    pub broker_closed: u64,
    /// Imported messages the NATS client discarded because the bridge fell behind, as the
    /// client reports them (it may not report every one under heavy load, so this is a lower
    /// bound).
    pub slow_consumer: u64,
}

impl BridgeDrops {
    /// All dropped messages, whatever the reason.
    pub fn total(&self) -> u64 {
        self.export_queue_full
            + self.server_unavailable
            + self.publish_failed
            + self.unflushed
            + self.invalid_subject
            + self.broker_closed
            + self.slow_consumer
    }
}

impl Bridge {
    /// Starts building a bridge between `broker` and the NATS server at `url`.
    ///
    /// `url` is a NATS server address such as `nats://127.0.0.1:4222` or `localhost:4222`, or
    /// several separated by commas (a cluster: the client picks one and fails over; an empty
    /// entry is an error). It is checked by [`build`](BridgeBuilder::build).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use syncmq::{Bridge, Broker, Overflow};
    ///
    /// let broker = Broker::<Vec<u8>>::new();
    /// let bridge = Bridge::builder(&broker, "nats://127.0.0.1:4222")
    ///     .export("telemetry.>")
    ///     .export_capacity(10_000)
    ///     .export_overflow(Overflow::Drop)
    ///     .connect_timeout(Duration::from_secs(1))
    ///     .build()?;
    /// # drop(bridge);
    /// # Ok::<(), syncmq::BridgeError>(())
    /// ```
    pub fn builder<T>(broker: &Broker<T>, url: &str) -> BridgeBuilder<T>
    where
        T: Codec + Clone + Send + 'static,
    {
        BridgeBuilder {
            broker: broker.clone(),
            url: url.to_owned(),
            exports: Vec::new(),
            imports: Vec::new(),
            export_capacity: DEFAULT_EXPORT_CAPACITY,
            export_overflow: Overflow::DropOldest,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
        }
    }

    /// Returns the bridge's counters and connection state.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use syncmq::{Bridge, Broker};
    ///
    /// let broker = Broker::<String>::new();
    /// let bridge = Bridge::builder(&broker, "nats://127.0.0.1:4222").export("logs.>").build()?;
    /// broker.publish("logs.app", "started".to_string())?;
    /// let stats = bridge.stats();
    /// assert!(stats.connected);
    /// assert_eq!(stats.dropped.total(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stats(&self) -> BridgeStats {
        let c = &self.counters;
        BridgeStats {
            exported: read(&c.exported),
            imported: read(&c.imported),
            dropped: BridgeDrops {
                export_queue_full: self.queues.iter().map(|q| q.dropped()).sum(),
                server_unavailable: read(&c.server_unavailable),
                publish_failed: read(&c.publish_failed),
                unflushed: read(&c.unflushed),
                invalid_subject: read(&c.invalid_subject),
                broker_closed: read(&c.broker_closed),
                slow_consumer: read(&c.slow_consumer),
            },
            decode_errors: read(&c.decode_errors),
            // The client counts the first connection too.
            reconnects: self
                .client
                .statistics()
                .connects
                .load(Ordering::Relaxed)
                .saturating_sub(1),
            connected: self.is_connected(),
        }
    }

    /// Returns `true` if the client is connected to a server now.
    ///
    /// # Note
    ///
    /// This promises nothing about the next moment: the connection may drop right after.
    pub fn is_connected(&self) -> bool {
        !self.closed.load(Ordering::Acquire) && self.client.connection_state() == State::Connected
    }

    /// The server URL the bridge was built with.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Closes the bridge: stops exporting and importing, flushes, disconnects and joins the
    /// bridge's threads. Idempotent; dropping the bridge does the same.
    ///
    /// The export queues leave the broker first, so no new message enters them; what they
    /// still hold is published if the client is connected, and the client is flushed, all
    /// within the close timeout ([`BridgeBuilder::close_timeout`], default
    /// [`DEFAULT_CLOSE_TIMEOUT`]). What could not be sent by then is counted in
    /// [`BridgeDrops::unflushed`] (or [`BridgeDrops::server_unavailable`] when the server is
    /// down, in which case `close` does not wait for it). Imports stop at once.
    ///
    /// `close` returns within the close timeout plus a fraction of a second, and joins both
    /// threads. An import waiting on a full local queue (a local subscriber with
    /// [`Overflow::Block`] that stopped reading, say) stops waiting when `close` begins; the
    /// message it was delivering counts as dropped for the subscribers it had not reached, in
    /// their [`dropped`](crate::Subscription::dropped) and in the broker's stats.
    ///
    /// Called on one of the bridge's own threads (from a message's `Clone` or `Drop`, or a
    /// [`Codec`] method, while the bridge imports or exports it), `close` cannot join that
    /// thread: it returns only after the close timeout plus half a second, leaving both
    /// threads to finish by themselves, and a `close` from another thread meanwhile waits
    /// for it.
    pub fn close(&self) {
        let mut running = self.running.lock();
        let Some(running) = running.take() else {
            return;
        };
        let deadline = deadline_after(Instant::now(), self.close_timeout);
        let Running {
            import_cancel,
            export_stop,
            closing,
            export_alive,
            export_thread,
            runtime_stop,
            runtime_alive,
            runtime_thread,
        } = running;
        drop(import_cancel);
        // The export thread may have ended already (it cannot fail, but be safe): ignore.
        // Sent before `closing` cuts its publishing short, so that it finds the stop then.
        let _ = export_stop.send(deadline);
        closing.send_replace(Some(deadline));
        let grace = deadline_after(deadline, JOIN_GRACE);
        // Only once the export thread is done with the client may the runtime stop: that
        // thread drives its last publishes and flush through the runtime.
        finish_thread(&export_alive, export_thread, grace);
        let _ = runtime_stop.send(deadline);
        finish_thread(&runtime_alive, runtime_thread, grace);
        self.closed.store(true, Ordering::Release);
    }
}

/// Waits until the thread that holds `alive`'s sender ends, then joins it; leaves it detached
/// if that takes past `deadline`.
fn finish_thread(alive: &Receiver<()>, thread: JoinHandle<()>, deadline: Instant) {
    // Nothing is ever sent: the receive ends when the thread drops its sender, by returning
    // or by unwinding.
    match alive.recv_deadline(deadline) {
        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
        _ => {
            let _ = thread.join();
        }
    }
}

/// `start + timeout`; a timeout too large to add is as good as forever: a year.
fn deadline_after(start: Instant, timeout: Duration) -> Instant {
    start
        .checked_add(timeout)
        .or_else(|| start.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(start)
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.close();
    }
}

impl fmt::Debug for Bridge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bridge")
            .field("url", &self.url)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// One import: a pattern, and the queue group to join if any.
#[derive(Debug, Clone)]
struct Import {
    pattern: String,
    group: Option<String>,
}

/// Builds a [`Bridge`]. Made by [`Bridge::builder`].
///
/// Patterns use syncmq's syntax, which is also NATS's: `.`-separated tokens, `*` for one
/// token, `>` for one or more trailing tokens.
#[must_use = "a builder does nothing until `build` is called"]
pub struct BridgeBuilder<T> {
    broker: Broker<T>,
    url: String,
    exports: Vec<String>,
    imports: Vec<Import>,
    export_capacity: usize,
    export_overflow: Overflow,
    connect_timeout: Duration,
    close_timeout: Duration,
}

impl<T> fmt::Debug for BridgeBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BridgeBuilder")
            .field("url", &self.url)
            .field("exports", &self.exports)
            .field("imports", &self.imports)
            .field("export_capacity", &self.export_capacity)
            .field("export_overflow", &self.export_overflow)
            .field("connect_timeout", &self.connect_timeout)
            .field("close_timeout", &self.close_timeout)
            .finish_non_exhaustive()
    }
}

impl<T: Codec + Clone + Send + 'static> BridgeBuilder<T> {
    /// Exports local publishes to topics matching `pattern`: each is also published to NATS
    /// on the same subject.
    pub fn export(mut self, pattern: &str) -> Self {
        self.exports.push(pattern.to_owned());
        self
    }

    /// Imports NATS messages on subjects matching `pattern`: each is published into the
    /// broker on the same topic.
    pub fn import(mut self, pattern: &str) -> Self {
        self.imports.push(Import {
            pattern: pattern.to_owned(),
            group: None,
        });
        self
    }

    /// Imports NATS messages on subjects matching `pattern` as a member of the NATS queue
    /// group `group`: each message goes to one member of the group, so processes that
    /// import with the same group share the work. `group` must be non-empty, without
    /// whitespace, and at most [`MAX_TOPIC_LEN`](crate::MAX_TOPIC_LEN) bytes, or `build` fails
    /// with [`BridgeError::InvalidGroup`].
    pub fn import_group(mut self, pattern: &str, group: &str) -> Self {
        self.imports.push(Import {
            pattern: pattern.to_owned(),
            group: Some(group.to_owned()),
        });
        self
    }

    /// Sets the capacity of each export queue, in messages (default
    /// [`DEFAULT_EXPORT_CAPACITY`]).
    pub fn export_capacity(mut self, capacity: usize) -> Self {
        self.export_capacity = capacity;
        self
    }

    /// Sets what a local publish does when an export queue is full (default
    /// [`Overflow::DropOldest`]: discard the oldest queued message, never wait).
    ///
    /// [`Overflow::Drop`] never waits either. [`Overflow::Timeout`] and [`Overflow::Block`]
    /// make local publishes wait for the server, which is what the default avoids.
    pub fn export_overflow(mut self, overflow: Overflow) -> Self {
        self.export_overflow = overflow;
        self
    }

    /// Bounds [`build`](Self::build): connecting, subscribing the imports and confirming
    /// them with the server (default [`DEFAULT_CONNECT_TIMEOUT`]).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Bounds [`Bridge::close`] (default [`DEFAULT_CLOSE_TIMEOUT`]).
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// Connects to the server and starts the bridge.
    ///
    /// When `build` returns, the import subscriptions are registered at the server, so any
    /// message published to NATS from then on reaches them, and every local publish from
    /// then on reaches the export queues. (`build` confirms the registration with a request
    /// on a fresh inbox, which the server answers with "no responders". If another client
    /// listens on every subject, `>`, it receives that request and nobody answers: `build`
    /// then waits a second, or a quarter of the connect timeout if that is less, and returns
    /// without the confirmation.)
    ///
    /// # Errors
    ///
    /// - [`BridgeError::InvalidUrl`], [`BridgeError::InvalidPattern`] or
    ///   [`BridgeError::InvalidGroup`] for bad input, before anything is started;
    /// - [`BridgeError::Connect`] if the server cannot be reached within the connect
    ///   timeout, or refuses the connection, or the client fails while connecting;
    /// - [`BridgeError::Broker`] if the broker is closed or the export capacity is above
    ///   [`MAX_CAPACITY`](crate::MAX_CAPACITY);
    /// - [`BridgeError::Spawn`] if a thread or the runtime cannot be started.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use syncmq::{Bridge, BridgeError, Broker};
    ///
    /// let broker = Broker::<String>::new();
    /// // Nothing listens on port 1: the error comes back at once.
    /// let result = Bridge::builder(&broker, "nats://127.0.0.1:1")
    ///     .import("prices.>")
    ///     .connect_timeout(Duration::from_secs(2))
    ///     .build();
    /// assert!(matches!(result, Err(BridgeError::Connect { .. })));
    /// ```
    pub fn build(self) -> Result<Bridge, BridgeError> {
        let servers = parse_servers(&self.url)?;
        for pattern in self
            .exports
            .iter()
            .chain(self.imports.iter().map(|i| &i.pattern))
        {
            validate_pattern(pattern).map_err(|reason| BridgeError::InvalidPattern {
                pattern: pattern.clone(),
                reason,
            })?;
        }
        for group in self.imports.iter().filter_map(|i| i.group.as_ref()) {
            // The broker's own rules on group names, whose length limit also matters here: a
            // name too long for the server's control line (the SUB line carries it) would make
            // the server drop the connection at every reconnect. NATS adds one: no whitespace.
            if validate_group(group).is_err() || group.chars().any(char::is_whitespace) {
                return Err(BridgeError::InvalidGroup {
                    group: group.clone(),
                });
            }
        }

        // The export queues first: from here on, local publishes are queued for export.
        let origin = self.broker.bridge_origin();
        let options = SubscribeOptions::default()
            .capacity(self.export_capacity)
            .overflow(self.export_overflow)
            .never_evict();
        // A topic goes to the first export queue whose pattern matches it, only.
        let taps = self
            .exports
            .iter()
            .enumerate()
            .map(|(i, pattern)| {
                self.broker
                    .tap(pattern, options, origin, &self.exports[..i])
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let queues = taps.iter().map(|tap| tap.state().clone()).collect();
        let counters = Arc::new(Counters::default());

        // The runtime thread connects, subscribes the imports and reports back.
        let (ready_tx, ready) = crossbeam_channel::bounded(1);
        let (runtime_stop, runtime_stop_rx) = oneshot::channel();
        let (runtime_alive_tx, runtime_alive) = crossbeam_channel::bounded::<()>(0);
        let (import_cancel, cancel) = crossbeam_channel::bounded::<()>(0);
        let importer = Importer {
            broker: self.broker.clone(),
            origin,
            cancel,
            counters: counters.clone(),
        };
        let connect = Connect {
            url: self.url.clone(),
            servers,
            imports: self.imports.clone(),
            timeout: self.connect_timeout,
            counters: counters.clone(),
        };
        let runtime_thread = thread::Builder::new()
            .name("syncmq-bridge".into())
            .spawn(move || {
                let _alive = runtime_alive_tx;
                run_runtime(connect, importer, ready_tx, runtime_stop_rx);
            })
            .map_err(|err| BridgeError::Spawn {
                reason: err.to_string(),
            })?;
        // The runtime thread always answers, within the connect timeout (or by dropping
        // `ready_tx` if it panicked).
        let started = match ready.recv() {
            Ok(Ok(started)) => started,
            Ok(Err(err)) => {
                let _ = runtime_thread.join();
                return Err(err);
            }
            Err(_) => {
                // The thread panicked: in the NATS client, while connecting (for instance a
                // `tls://` server, as the client is built without a TLS crypto provider).
                return Err(match runtime_thread.join() {
                    Err(panic) => BridgeError::Connect {
                        url: self.url,
                        reason: format!("the NATS client panicked: {}", panic_message(&*panic)),
                    },
                    Ok(()) => BridgeError::Spawn {
                        reason: "the bridge thread ended before connecting".into(),
                    },
                });
            }
        };
        let client = started.client.clone();

        let (export_stop, export_stop_rx) = crossbeam_channel::bounded(1);
        let (closing, closing_rx) = watch::channel(None);
        let (export_alive_tx, export_alive) = crossbeam_channel::bounded::<()>(0);
        let exporter = Exporter::new(
            taps,
            started.client,
            started.handle,
            counters.clone(),
            export_stop_rx,
            closing_rx,
        );
        let export_thread =
            match thread::Builder::new()
                .name("syncmq-export".into())
                .spawn(move || {
                    let _alive = export_alive_tx;
                    exporter.run();
                }) {
                Ok(thread) => thread,
                Err(err) => {
                    let _ = runtime_stop.send(Instant::now());
                    let _ = runtime_thread.join();
                    return Err(BridgeError::Spawn {
                        reason: err.to_string(),
                    });
                }
            };

        Ok(Bridge {
            counters,
            queues,
            client,
            url: self.url,
            close_timeout: self.close_timeout,
            running: Mutex::new(Some(Running {
                import_cancel,
                export_stop,
                closing,
                export_alive,
                export_thread,
                runtime_stop,
                runtime_alive,
                runtime_thread,
            })),
            closed: AtomicBool::new(false),
        })
    }
}

/// Parses `url`, a server address or several separated by commas.
fn parse_servers(url: &str) -> Result<Vec<ServerAddr>, BridgeError> {
    let invalid = |reason: String| BridgeError::InvalidUrl {
        url: url.to_owned(),
        reason,
    };
    url.split(',')
        .map(|part| {
            let part = part.trim();
            // The client would take an empty address for a host named "" and fail to
            // resolve it, once started; a list with an empty entry is a typo all the same.
            if part.is_empty() {
                return Err(invalid("empty server address".into()));
            }
            part.parse::<ServerAddr>()
                .map_err(|err| invalid(err.to_string()))
        })
        .collect()
}

/// The message of a panic's payload, when it is text.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// What the runtime thread needs to connect.
struct Connect {
    url: String,
    servers: Vec<ServerAddr>,
    imports: Vec<Import>,
    timeout: Duration,
    counters: Arc<Counters>,
}

/// What the runtime thread hands back once connected.
struct Started {
    client: Client,
    handle: Handle,
}

/// The import side: publishes NATS messages into the broker.
struct Importer<T> {
    broker: Broker<T>,
    /// The broker's bridge origin: the export queues skip what it publishes.
    origin: Origin,
    /// Disconnects when the bridge closes (`Running::import_cancel`). Nothing is sent on it.
    cancel: Receiver<()>,
    counters: Arc<Counters>,
}

/// The body of the `syncmq-bridge` thread: the runtime, the connection and the imports,
/// until `stop` fires (or its sender is dropped).
fn run_runtime<T: Codec + Clone + Send + 'static>(
    connect: Connect,
    importer: Importer<T>,
    ready: Sender<Result<Started, BridgeError>>,
    stop: oneshot::Receiver<Instant>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            let _ = ready.send(Err(BridgeError::Spawn {
                reason: err.to_string(),
            }));
            return;
        }
    };
    let deadline = runtime.block_on(async move {
        let url = connect.url.clone();
        let timeout = connect.timeout;
        let (client, subscribers) = match tokio::time::timeout(timeout, connect.run()).await {
            Ok(Ok(connected)) => connected,
            Ok(Err(err)) => {
                let _ = ready.send(Err(err));
                return None;
            }
            Err(_) => {
                let _ = ready.send(Err(BridgeError::Connect {
                    url,
                    reason: format!("no connection within the connect timeout of {timeout:?}"),
                }));
                return None;
            }
        };
        let _ = ready.send(Ok(Started {
            client: client.clone(),
            handle: Handle::current(),
        }));
        let importer = Arc::new(importer);
        let imports: Vec<_> = subscribers
            .into_iter()
            .map(|(subscriber, covered_by)| {
                tokio::spawn(importer.clone().run(subscriber, covered_by))
            })
            .collect();
        // A dropped sender (the bridge was never completed) stops too.
        let deadline = stop.await.unwrap_or_else(|_| Instant::now());
        // End the imports here, inside the runtime: dropping an async-nats subscription
        // spawns a task (its unsubscribe), which must happen in the runtime's context.
        for import in &imports {
            import.abort();
        }
        for import in imports {
            let _ = import.await;
        }
        drop(client);
        Some(deadline)
    });
    // Dropping the runtime cancels the import tasks and the connection (closing the socket).
    let grace = deadline.map_or(Duration::ZERO, |d| {
        d.saturating_duration_since(Instant::now())
    });
    runtime.shutdown_timeout(grace.min(JOIN_GRACE));
}

impl Connect {
    /// Connects, subscribes every import, and waits until the server has registered the
    /// subscriptions. Returns each subscription with the patterns that take precedence over
    /// it (see [`covered_by`]).
    async fn run(
        self,
    ) -> Result<(Client, Vec<(async_nats::Subscriber, Vec<String>)>), BridgeError> {
        let counters = self.counters.clone();
        let failed = |reason: String| BridgeError::Connect {
            url: self.url.clone(),
            reason,
        };
        let client = ConnectOptions::new()
            .name("syncmq-bridge")
            .no_echo()
            .connection_timeout(self.timeout)
            .event_callback(move |event| {
                let counters = counters.clone();
                async move {
                    if let Event::SlowConsumer(_) = event {
                        add(&counters.slow_consumer, 1);
                    }
                }
            })
            .connect(self.servers.clone())
            .await
            .map_err(|err| failed(err.to_string()))?;
        let mut subscribers = Vec::with_capacity(self.imports.len());
        for (index, import) in self.imports.iter().enumerate() {
            let subject = import.pattern.clone();
            let subscriber = match &import.group {
                None => client.subscribe(subject).await,
                Some(group) => client.queue_subscribe(subject, group.clone()).await,
            }
            .map_err(|err| failed(err.to_string()))?;
            subscribers.push((subscriber, covered_by(&self.imports, index)));
        }
        client
            .flush()
            .await
            .map_err(|err| failed(err.to_string()))?;
        if !subscribers.is_empty() {
            self.wait_for_registration(&client)
                .await
                .map_err(|err| failed(err.to_string()))?;
        }
        Ok((client, subscribers))
    }

    /// Waits until the server has read this connection's subscriptions. `flush` only writes
    /// them to the socket, and a message published on another connection before the server
    /// reads them would miss them. The server reads a connection's commands in order, and
    /// answers a request that nobody receives with "no responders" (which async-nats asks
    /// for), so that answer to a request on a fresh inbox means every subscription sent before
    /// it is registered; so does a reply. A client that listens on every subject (`>`) takes
    /// the request without answering: then this gives up after [`REGISTRATION_PROBE_WAIT`] (at
    /// most a quarter of the connect timeout), and `build` returns all the same.
    async fn wait_for_registration(&self, client: &Client) -> Result<(), RequestError> {
        let wait = REGISTRATION_PROBE_WAIT.min(self.timeout / 4);
        let probe = client.request(client.new_inbox(), bytes::Bytes::new());
        match tokio::time::timeout(wait, probe).await {
            Ok(Ok(_reply)) => Ok(()),
            Ok(Err(err)) if err.kind() == RequestErrorKind::NoResponders => Ok(()),
            Ok(Err(err)) => Err(err),
            Err(_elapsed) => Ok(()),
        }
    }
}

/// The patterns of the imports that take precedence over import `index` when a subject
/// matches both, so that each message enters the broker once: a plain import takes precedence
/// over every group import and over later plain imports; a group import over later group
/// imports.
fn covered_by(imports: &[Import], index: usize) -> Vec<String> {
    let me = &imports[index];
    imports
        .iter()
        .enumerate()
        .filter(|&(other, import)| {
            other != index
                && match (import.group.is_none(), me.group.is_none()) {
                    (true, false) => true,
                    (true, true) | (false, false) => other < index,
                    (false, true) => false,
                }
        })
        .map(|(_, import)| import.pattern.clone())
        .collect()
}

impl<T: Codec + Clone + Send + 'static> Importer<T> {
    /// Publishes every message of `subscriber` into the broker, except those another import
    /// delivers (`covered_by`). Runs until the runtime shuts down.
    async fn run(self: Arc<Self>, mut subscriber: async_nats::Subscriber, covered_by: Vec<String>) {
        while let Some(message) = subscriber.next().await {
            let async_nats::Message {
                subject, payload, ..
            } = message;
            if covered_by.iter().any(|p| pattern_matches(p, &subject)) {
                continue;
            }
            let Ok(msg) = T::decode(payload) else {
                add(&self.counters.decode_errors, 1);
                continue;
            };
            // Blocks this thread for as long as the local subscribers' policies say (see the
            // module docs), or until the bridge closes.
            let import = BridgeImport {
                origin: self.origin,
                cancel: &self.cancel,
            };
            let counter = match self.broker.publish_from(&subject, msg, Some(import)) {
                Ok(_) => &self.counters.imported,
                Err(Error::InvalidTopic { .. }) => &self.counters.invalid_subject,
                Err(_) => &self.counters.broker_closed,
            };
            add(counter, 1);
        }
    }
}

/// The export side: the body of the `syncmq-export` thread.
struct Exporter<T> {
    /// The export queues, in builder order. Each topic enters only the first whose pattern
    /// matches it (`Broker::tap`'s `yields_to`), so whatever a queue holds is exported.
    taps: Vec<Tap<T>>,
    client: Client,
    /// The runtime the client lives on, driven by the `syncmq-bridge` thread.
    handle: Handle,
    counters: Arc<Counters>,
    /// Receives the close deadline.
    stop: Receiver<Instant>,
    /// The close deadline, for waits inside the runtime.
    closing: watch::Receiver<Option<Instant>>,
}

impl<T: Codec + Clone + Send + 'static> Exporter<T> {
    fn new(
        taps: Vec<Tap<T>>,
        client: Client,
        handle: Handle,
        counters: Arc<Counters>,
        stop: Receiver<Instant>,
        closing: watch::Receiver<Option<Instant>>,
    ) -> Self {
        Exporter {
            taps,
            client,
            handle,
            counters,
            stop,
            closing,
        }
    }

    fn run(self) {
        let mut batch = VecDeque::with_capacity(BATCH);
        let deadline = self.forward_until_stopped(&mut batch);
        self.finish(batch, deadline);
    }

    /// Forwards messages as they arrive until `close` asks to stop; returns its deadline.
    fn forward_until_stopped(&self, batch: &mut VecDeque<Tagged<T>>) -> Instant {
        // Operation indices: `stop` is 0 and `taps[i]` is `i + 1`; `Select::remove` keeps
        // the others stable.
        let mut select = Select::new();
        let stop_index = select.recv(&self.stop);
        for tap in &self.taps {
            select.recv(tap.receiver());
        }
        loop {
            let operation = select.select();
            let index = operation.index();
            if index == stop_index {
                // A dropped sender means the bridge is gone: stop now.
                return operation
                    .recv(&self.stop)
                    .unwrap_or_else(|_| Instant::now());
            }
            match operation.recv(self.taps[index - 1].receiver()) {
                Ok(tagged) => batch.push_back(tagged),
                Err(_) => {
                    // The broker closed and this queue is drained: nothing more will come.
                    select.remove(index);
                    continue;
                }
            }
            // Take what else is queued, without waiting: an equal share of a batch from each
            // queue, so a backlogged first queue cannot starve the later ones into dropping.
            // Each queue is read in order, so each topic's messages stay in publish order.
            let share = (BATCH / self.taps.len()).max(1);
            for tap in &self.taps {
                batch.extend(tap.receiver().try_iter().take(share));
            }
            self.forward(batch, None);
            // Cut short by `close`, or done: either way, take nothing more from the queues
            // once `close` has begun (they leave the broker first, in `finish`).
            if let Ok(deadline) = self.stop.try_recv() {
                return deadline;
            }
        }
    }

    /// Hands `batch` to the client, front first, until it is empty or (with `deadline`) the
    /// deadline passes or (without) `close` begins; what is left stays in `batch`. While
    /// disconnected, drops the whole batch as `server_unavailable`.
    fn forward(&self, batch: &mut VecDeque<Tagged<T>>, deadline: Option<Instant>) {
        if self.client.connection_state() != State::Connected {
            drop_batch(batch, &self.counters.server_unavailable);
            return;
        }
        let publish_all = async {
            while let Some((topic, msg)) = batch.front() {
                let payload = msg.encode();
                // A publish cut short by the deadline leaves its message at the front: it was
                // not handed over (the client takes it whole or not at all).
                let counter = match self.client.publish(Subject::from(&**topic), payload).await {
                    Ok(()) => &self.counters.exported,
                    Err(_) => &self.counters.publish_failed,
                };
                add(counter, 1);
                batch.pop_front();
            }
        };
        self.block_on_until(publish_all, deadline);
    }

    /// Runs `work` on the runtime from this thread, until it completes or, with `deadline`,
    /// until the deadline passes, or, without, until `close` begins.
    fn block_on_until<F: Future<Output = ()>>(&self, work: F, deadline: Option<Instant>) {
        let mut closing = self.closing.clone();
        let stop = async move {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
                // Ends when `close` begins, or at once if the bridge is gone without closing.
                None => drop(closing.wait_for(Option::is_some).await),
            }
        };
        // Whichever ends first, the other is dropped.
        self.handle.block_on(select(pin!(work), pin!(stop)));
    }

    /// Closing: leaves the broker, publishes what the queues still held, flushes the client,
    /// all before `deadline`, and counts what could not be sent.
    fn finish(mut self, mut batch: VecDeque<Tagged<T>>, deadline: Instant) {
        // No new message enters a queue once it has left the broker; keep what it held.
        for tap in std::mem::take(&mut self.taps) {
            batch.extend(tap.unsubscribe());
        }
        self.forward(&mut batch, Some(deadline));
        drop_batch(&mut batch, &self.counters.unflushed);
        // Push what the client still buffers onto the wire before the connection closes.
        if self.client.connection_state() == State::Connected {
            let client = self.client.clone();
            self.block_on_until(
                async move {
                    let _ = client.flush().await;
                },
                Some(deadline),
            );
        }
    }
}

/// Empties `batch` without sending it, counting in `counter` the messages it would have
/// exported.
fn drop_batch<T>(batch: &mut VecDeque<Tagged<T>>, counter: &AtomicU64) {
    add(counter, batch.len() as u64);
    batch.clear();
}

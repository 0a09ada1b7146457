//! Error types (`Error`, `TopicError`, `ConfigError` and the receive errors) and bad
//! configuration: capacity 0, capacity above the limit, a zero timeout, no workers.

use std::error::Error as StdError;
use std::thread;
use std::time::{Duration, Instant};

use syncmq::{
    Broker, ConfigError, Error, MAX_CAPACITY, Overflow, RecvError, RecvTimeoutError, TopicError,
    TryRecvError,
};

mod common;
use common::{
    assert_lowercase_without_period, publish_in_background, publish_in_order_to_all, subscribe_many,
};

/// How long a guarded wait may take before the test fails instead of hanging.
const GUARD: Duration = Duration::from_secs(10);

/// Compile-time check: every error can cross threads and be boxed as `dyn Error`.
#[allow(dead_code, reason = "only the trait bounds matter")]
trait AssertError: StdError + Send + Sync + Clone + PartialEq + 'static {}
impl AssertError for Error {}
impl AssertError for TopicError {}
impl AssertError for ConfigError {}
impl AssertError for RecvError {}
impl AssertError for TryRecvError {}
impl AssertError for RecvTimeoutError {}

// ---------------------------------------------------------------------------------------------
// Smoke
// ---------------------------------------------------------------------------------------------

#[test]
fn smoke_try_recv_errors_compare_with_assert_eq() {
    let broker = Broker::<u8>::new();
    let sub = broker.subscribe("t").unwrap();
    assert_eq!(sub.try_recv(), Err(TryRecvError::Empty));
    broker.close();
    assert_eq!(sub.try_recv(), Err(TryRecvError::Closed));
}

// ---------------------------------------------------------------------------------------------
// Single thread: error values
// ---------------------------------------------------------------------------------------------

#[test]
fn display_texts_are_lowercase_without_period() {
    let texts = [
        (Error::Closed.to_string(), "broker is closed"),
        (
            Error::InvalidConfig(ConfigError::CapacityTooLarge { capacity: 7 }).to_string(),
            "invalid broker configuration: capacity 7 is above the limit of 1048576",
        ),
        (
            ConfigError::CapacityTooLarge { capacity: 7 }.to_string(),
            "capacity 7 is above the limit of 1048576",
        ),
        (
            Error::InvalidTopic {
                topic: "a..b".into(),
                reason: TopicError::EmptyToken { position: 2 },
            }
            .to_string(),
            "invalid topic \"a..b\": empty token at byte 2",
        ),
        (
            RecvError::Closed.to_string(),
            "receiving on a subscription whose broker is closed",
        ),
        (
            TryRecvError::Empty.to_string(),
            "receiving on an empty subscription",
        ),
        (
            TryRecvError::Closed.to_string(),
            "receiving on a subscription whose broker is closed",
        ),
        (
            RecvTimeoutError::Timeout.to_string(),
            "timed out waiting on a subscription",
        ),
        (
            RecvTimeoutError::Closed.to_string(),
            "receiving on a subscription whose broker is closed",
        ),
    ];
    for (text, expected) in texts {
        assert_eq!(text, expected);
        assert_lowercase_without_period(&text);
    }
}

#[test]
fn error_sources_chain_to_the_reason() {
    assert!(Error::Closed.source().is_none());

    let reason = TopicError::Wildcard {
        character: '*',
        position: 0,
    };
    let err = Error::InvalidTopic {
        topic: "*".into(),
        reason,
    };
    let source = err.source().expect("InvalidTopic has a source");
    assert_eq!(source.downcast_ref::<TopicError>(), Some(&reason));
    assert_eq!(source.to_string(), reason.to_string());
    assert!(source.source().is_none());

    let reason = ConfigError::CapacityTooLarge { capacity: 1 << 30 };
    let err = Error::InvalidConfig(reason);
    let source = err.source().expect("InvalidConfig has a source");
    assert_eq!(source.downcast_ref::<ConfigError>(), Some(&reason));

    let leaves: [&dyn StdError; 5] = [
        &RecvError::Closed,
        &TryRecvError::Empty,
        &TryRecvError::Closed,
        &RecvTimeoutError::Timeout,
        &RecvTimeoutError::Closed,
    ];
    for err in leaves {
        assert!(err.source().is_none(), "{err}");
    }
}

#[test]
fn broker_errors_convert_into_boxed_errors_with_question_mark() {
    fn subscribe_bad_topic() -> Result<(), Box<dyn StdError + Send + Sync>> {
        let broker = Broker::<u8>::new();
        let _sub = broker.subscribe("bad topic")?;
        Ok(())
    }
    fn recv_closed() -> Result<u8, Box<dyn StdError>> {
        let broker = Broker::<u8>::new();
        let sub = broker.subscribe("t")?;
        broker.close();
        Ok(sub.recv()?)
    }
    let err = subscribe_bad_topic().unwrap_err();
    assert!(matches!(
        err.downcast_ref::<Error>(),
        Some(Error::InvalidTopic { .. })
    ));
    let err = recv_closed().unwrap_err();
    assert_eq!(err.downcast_ref::<RecvError>(), Some(&RecvError::Closed));
}

#[test]
fn from_conversions_map_to_matching_variants() {
    let reason = ConfigError::CapacityTooLarge { capacity: 9 };
    assert_eq!(Error::from(reason), Error::InvalidConfig(reason));
    assert_eq!(TryRecvError::from(RecvError::Closed), TryRecvError::Closed);
    assert_eq!(
        RecvTimeoutError::from(RecvError::Closed),
        RecvTimeoutError::Closed
    );
    let via_into: TryRecvError = RecvError::Closed.into();
    assert!(via_into.is_closed());
    let via_into: RecvTimeoutError = RecvError::Closed.into();
    assert!(via_into.is_closed());
}

#[test]
fn is_helpers_name_the_variant() {
    assert!(TryRecvError::Empty.is_empty());
    assert!(!TryRecvError::Empty.is_closed());
    assert!(TryRecvError::Closed.is_closed());
    assert!(!TryRecvError::Closed.is_empty());
    assert!(RecvTimeoutError::Timeout.is_timeout());
    assert!(!RecvTimeoutError::Timeout.is_closed());
    assert!(RecvTimeoutError::Closed.is_closed());
    assert!(!RecvTimeoutError::Closed.is_timeout());
}

#[test]
fn recv_error_helpers_name_the_variant() {
    assert!(RecvError::Closed.is_closed());
    assert!(!RecvError::Closed.is_evicted());
    assert!(RecvError::Evicted.is_evicted());
    assert!(!RecvError::Evicted.is_closed());
    // Each helper agrees with the same helper of the wider errors the variant converts into.
    for err in [RecvError::Closed, RecvError::Evicted] {
        assert_eq!(err.is_closed(), TryRecvError::from(err).is_closed());
        assert_eq!(err.is_evicted(), TryRecvError::from(err).is_evicted());
        assert_eq!(err.is_closed(), RecvTimeoutError::from(err).is_closed());
        assert_eq!(err.is_evicted(), RecvTimeoutError::from(err).is_evicted());
    }
}

#[test]
fn receive_errors_say_empty_timeout_then_closed() {
    let broker = Broker::<u8>::new();
    let sub = broker.subscribe("t").unwrap();
    assert_eq!(sub.try_recv(), Err(TryRecvError::Empty));
    assert_eq!(
        sub.recv_timeout(Duration::from_millis(1)),
        Err(RecvTimeoutError::Timeout)
    );
    assert_eq!(
        sub.recv_deadline(Instant::now()),
        Err(RecvTimeoutError::Timeout)
    );
    broker.publish("t", 1).unwrap();
    broker.close();
    // What was queued is still received, then every receive says the broker is closed.
    assert_eq!(sub.try_recv(), Ok(1));
    assert_eq!(sub.recv(), Err(RecvError::Closed));
    assert_eq!(sub.try_recv(), Err(TryRecvError::Closed));
    assert_eq!(sub.recv_timeout(GUARD), Err(RecvTimeoutError::Closed));
    assert_eq!(
        sub.recv_deadline(Instant::now() + GUARD),
        Err(RecvTimeoutError::Closed)
    );
}

#[test]
fn closed_broker_refuses_publish_and_subscribe() {
    let broker = Broker::<u8>::new();
    broker.close();
    assert!(broker.is_closed());
    assert_eq!(broker.publish("t", 1), Err(Error::Closed));
    assert_eq!(broker.subscribe("t").unwrap_err(), Error::Closed);
}

/// A publish settles a topic nobody subscribed to without a second look at the table: with
/// and without wildcard subscriptions, open and closed, an invalid topic is reported as such
/// (even by a closed broker), a valid one reaches nobody or gets `Closed`, and only successful
/// publishes are counted.
#[test]
fn publish_to_unknown_topics_validates_on_every_path() {
    for wildcards in [false, true] {
        let broker = Broker::<u8>::new();
        let _sub = broker.subscribe("known").unwrap();
        let _pattern = wildcards.then(|| broker.subscribe("other.*").unwrap());
        for _ in 0..2 {
            // Twice: with wildcards, the second publish finds the topic cached.
            let report = broker.publish("unknown", 1).unwrap();
            assert_eq!((report.delivered, report.dropped), (0, 0));
            assert!(matches!(
                broker.publish("unknown.*", 1),
                Err(Error::InvalidTopic { .. })
            ));
            assert!(matches!(
                broker.publish("", 1),
                Err(Error::InvalidTopic { .. })
            ));
        }
        assert_eq!(broker.stats().published, 2, "wildcards: {wildcards}");
        broker.close();
        for topic in ["known", "unknown", "other.x"] {
            assert_eq!(broker.publish(topic, 1), Err(Error::Closed), "{topic:?}");
        }
        assert!(matches!(
            broker.publish("known.>", 1),
            Err(Error::InvalidTopic { .. })
        ));
        assert_eq!(broker.stats().published, 2, "wildcards: {wildcards}");
    }
}

// ---------------------------------------------------------------------------------------------
// Single thread: bad configuration
// ---------------------------------------------------------------------------------------------

#[test]
fn capacity_zero_is_a_valid_rendezvous() {
    let broker = Broker::<u8>::builder()
        .capacity(0)
        .overflow(Overflow::Drop)
        .try_build()
        .expect("capacity 0 is valid");
    let sub = broker.subscribe("t").unwrap();
    assert_eq!(sub.capacity(), Some(0));
    // Nobody is waiting in `recv`: nothing can be handed over.
    let report = broker.publish("t", 1).unwrap();
    assert_eq!((report.delivered, report.dropped), (0, 1));
    assert_eq!(sub.dropped(), 1);
}

#[test]
fn capacity_up_to_the_limit_is_accepted() {
    let broker = Broker::<u8>::builder()
        .capacity(MAX_CAPACITY)
        .try_build()
        .expect("MAX_CAPACITY is valid");
    let sub = broker.subscribe("t").unwrap();
    assert_eq!(sub.capacity(), Some(MAX_CAPACITY));
    broker.publish("t", 1).unwrap();
    assert_eq!(sub.try_recv(), Ok(1));
}

#[test]
fn capacity_above_the_limit_is_invalid_config() {
    for capacity in [MAX_CAPACITY + 1, usize::MAX] {
        let err = Broker::<u8>::builder()
            .capacity(capacity)
            .try_build()
            .unwrap_err();
        assert_eq!(
            err,
            Error::InvalidConfig(ConfigError::CapacityTooLarge { capacity })
        );
        assert!(err.to_string().contains(&capacity.to_string()), "{err}");
    }
}

#[test]
#[should_panic(expected = "is above the limit of")]
fn build_panics_on_capacity_above_the_limit() {
    let _ = Broker::<u8>::builder().capacity(MAX_CAPACITY + 1).build();
}

#[test]
fn zero_timeout_acts_like_drop() {
    for broker in [
        Broker::<u8>::builder()
            .capacity(1)
            .send_timeout(Duration::ZERO)
            .build(),
        Broker::<u8>::builder()
            .capacity(1)
            .overflow(Overflow::Timeout(Duration::ZERO))
            .build(),
    ] {
        let sub = broker.subscribe("t").unwrap();
        assert_eq!(broker.publish("t", 1).unwrap().delivered, 1);
        // Run on another thread: if a zero timeout waited like `Block`, this fails, not hangs.
        let (report, _) = publish_in_background(&broker, "t", 2)
            .recv_timeout(GUARD)
            .expect("zero timeout publish blocked");
        assert_eq!((report.delivered, report.dropped), (0, 1));
        assert_eq!(sub.dropped(), 1);
        assert_eq!(sub.try_iter().collect::<Vec<_>>(), [1]);
    }
}

#[test]
fn no_workers_delivers_everything_inline() {
    let broker = Broker::builder()
        .workers(0)
        .dispatch_threshold(2)
        .capacity(128)
        .build();
    let subs = subscribe_many(&broker, "t", 50);
    publish_in_order_to_all(&broker, "t", &subs, 100);
    let stats = broker.stats();
    assert_eq!(stats.dispatch_threads, 0);
    assert_eq!(stats.spawn_failures, 0);
    assert_eq!((stats.delivered, stats.dropped), (5_000, 0));
}

#[test]
fn dispatch_threshold_below_two_still_delivers() {
    for threshold in [0, 1] {
        let broker = Broker::builder()
            .workers(2)
            .dispatch_threshold(threshold)
            .build();
        let subs = subscribe_many(&broker, "t", 3);
        publish_in_order_to_all(&broker, "t", &subs, 20);
        assert!(broker.stats().dispatch_threads <= 2);
    }
}

#[test]
fn workers_usize_max_is_only_a_cap() {
    // `workers(usize::MAX)` means "no cap of my own": a fan-out at the threshold must still
    // be split into stripes (one thread per stripe at most), not overflow.
    let broker = Broker::builder()
        .workers(usize::MAX)
        .dispatch_threshold(4)
        .build();
    let subs = subscribe_many(&broker, "t", 4);
    publish_in_order_to_all(&broker, "t", &subs, 20);
    // 4 subscribers in stripes of at least 2: two stripes, one of them on a dispatch thread.
    assert_eq!(broker.stats().dispatch_threads, 1);
}

// ---------------------------------------------------------------------------------------------
// Threaded
// ---------------------------------------------------------------------------------------------

#[test]
fn no_workers_with_blocking_consumers_on_threads() {
    const SUBSCRIBERS: usize = 40;
    const MESSAGES: u32 = 200;
    let broker = Broker::builder()
        .workers(0)
        .dispatch_threshold(2)
        .capacity(2)
        .overflow(Overflow::Block)
        .build();
    let (results_tx, results) = crossbeam_channel::unbounded();
    for _ in 0..SUBSCRIBERS {
        let sub = broker.subscribe("t").unwrap();
        let results_tx = results_tx.clone();
        thread::spawn(move || results_tx.send(sub.iter().collect::<Vec<u32>>()));
    }
    drop(results_tx);
    for i in 0..MESSAGES {
        let report = broker.publish("t", i).unwrap();
        assert_eq!((report.delivered, report.dropped), (SUBSCRIBERS, 0));
    }
    broker.close();
    for _ in 0..SUBSCRIBERS {
        let seen = results.recv_timeout(GUARD).expect("consumer still blocked");
        assert_eq!(seen, (0..MESSAGES).collect::<Vec<_>>());
    }
    assert_eq!(broker.stats().dispatch_threads, 0);
}

#[test]
fn capacity_zero_hands_over_to_a_waiting_receiver() {
    let broker = Broker::builder()
        .capacity(0)
        .send_timeout(Duration::from_secs(30))
        .build();
    let sub = broker.subscribe("t").unwrap();
    let (tx, rx) = crossbeam_channel::bounded(1);
    thread::spawn(move || tx.send((sub.recv_timeout(GUARD), sub.dropped())));
    // The publish waits (up to 30 s) until the receiver is in `recv`, then hands over.
    let report = broker.publish("t", 5).unwrap();
    assert_eq!((report.delivered, report.dropped), (1, 0));
    let (received, dropped) = rx.recv_timeout(GUARD).expect("receiver still blocked");
    assert_eq!(received, Ok(5));
    assert_eq!(dropped, 0);
}

//! Publishing and subscribing: every subscriber gets every message in per-publisher order,
//! `publish` is synchronous, topics are isolated, and unsubscribing (explicit or by `Drop`) is
//! immediate.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::{Arc, Barrier};
use std::thread;

use crossbeam_channel::select;
use syncmq::{
    Broker, Error, Overflow, PublishReport, RecvError, SubscribeOptions, Subscription, TryRecvError,
};

mod common;
use common::{
    GUARD, assert_all_in_publisher_order, publish_in_order_from_threads, publish_in_order_to_all,
    spawn_guarded, subscribe_many,
};

/// Messages per publisher in the threaded tests.
const COUNT: usize = if cfg!(miri) { 100 } else { 2_000 };

/// Compile-time check: `Broker` is `Clone + Send + Sync` for every message type the API
/// accepts, even one that is not `Sync` itself.
#[allow(dead_code, reason = "only the trait bounds matter")]
trait AssertCloneSendSync: Clone + Send + Sync + 'static {}
impl<T: Clone + Send + 'static> AssertCloneSendSync for Broker<T> {}
impl AssertCloneSendSync for PublishReport {}

/// Compile-time check: `Subscription` can move to another thread.
#[allow(dead_code, reason = "only the trait bounds matter")]
trait AssertSend: Send + 'static {}
impl<T: Send + 'static> AssertSend for Subscription<T> {}

// ---------------------------------------------------------------------------------------------
// Smoke
// ---------------------------------------------------------------------------------------------

#[test]
fn smoke_published_message_reaches_subscriber() {
    let broker = Broker::new();
    let sub = broker.subscribe("greetings").unwrap();
    let report = broker.publish("greetings", "hello").unwrap();
    assert_eq!(
        (report.delivered, report.dropped, report.routed()),
        (1, 0, 1)
    );
    assert_eq!(sub.recv(), Ok("hello"));
    assert_eq!(sub.try_recv(), Err(TryRecvError::Empty));
    assert_eq!(sub.topic(), "greetings");
    assert_eq!(sub.dropped(), 0);
}

// ---------------------------------------------------------------------------------------------
// Single thread
// ---------------------------------------------------------------------------------------------

#[test]
fn every_subscriber_gets_every_message_in_publish_order() {
    let broker = Broker::builder().capacity(128).build();
    let subs = subscribe_many(&broker, "t", 3);
    publish_in_order_to_all(&broker, "t", &subs, 100);
    let stats = broker.stats();
    assert_eq!(
        (stats.published, stats.delivered, stats.dropped),
        (100, 300, 0)
    );
}

#[test]
fn message_is_queued_for_every_subscriber_when_publish_returns() {
    let broker = Broker::builder().capacity(4).build();
    let subs = subscribe_many(&broker, "sync", 5);
    for i in 0..50u32 {
        broker.publish("sync", i).unwrap();
        // No waiting of any kind: the message must already be in every queue.
        for sub in &subs {
            assert_eq!(sub.try_recv(), Ok(i));
        }
    }
}

#[test]
fn message_is_queued_for_every_subscriber_when_striped_publish_returns() {
    // The dispatch pool path: stripes on broker threads must all be done when publish returns.
    let broker = Broker::builder()
        .capacity(4)
        .workers(2)
        .dispatch_threshold(2)
        .build();
    let subs = subscribe_many(&broker, "sync", 16);
    for i in 0..200u32 {
        let report = broker.publish("sync", i).unwrap();
        assert_eq!((report.delivered, report.dropped), (16, 0));
        for sub in &subs {
            assert_eq!(sub.try_recv(), Ok(i));
        }
    }
    assert!(broker.stats().dispatch_threads >= 1);
}

#[test]
fn publish_without_subscribers_routes_to_nobody() {
    let broker = Broker::<u8>::new();
    let report = broker.publish("nobody.listens", 1).unwrap();
    assert_eq!(report, PublishReport::default());
    assert_eq!(
        (report.delivered, report.dropped, report.routed()),
        (0, 0, 0)
    );
    let stats = broker.stats();
    assert_eq!((stats.published, stats.delivered, stats.dropped), (1, 0, 0));
    assert_eq!((stats.topics, stats.subscribers), (0, 0));
}

#[test]
fn subscriber_gets_only_messages_published_while_subscribed() {
    let broker = Broker::new();
    let early = broker.subscribe("t").unwrap();
    broker.publish("t", 1).unwrap();
    let late = broker.subscribe("t").unwrap();
    broker.publish("t", 2).unwrap();
    assert_eq!(early.unsubscribe(), [1, 2]);
    broker.publish("t", 3).unwrap();
    assert_eq!(late.try_iter().collect::<Vec<_>>(), [2, 3]);
}

#[test]
fn topics_match_exactly_and_are_isolated() {
    let broker = Broker::new();
    let topics = [
        "orders",
        "orders.created",
        "orders.created.eu",
        "Orders",
        "order",
        "created",
    ];
    let subs: Vec<_> = topics
        .iter()
        .map(|topic| broker.subscribe(topic).unwrap())
        .collect();
    for topic in topics {
        let report = broker.publish(topic, topic.to_owned()).unwrap();
        assert_eq!(report.routed(), 1, "{topic}");
    }
    assert_eq!(
        broker
            .publish("orders.created.us", "x".into())
            .unwrap()
            .routed(),
        0
    );
    for (sub, topic) in subs.iter().zip(topics) {
        assert_eq!(sub.topic(), topic);
        assert_eq!(sub.try_iter().collect::<Vec<_>>(), [topic], "{topic}");
    }
}

#[test]
fn subscriber_count_follows_subscribe_and_unsubscribe() {
    let broker = Broker::<u8>::new();
    assert_eq!(broker.subscriber_count("a"), 0);
    let a1 = broker.subscribe("a").unwrap();
    let a2 = broker.subscribe("a").unwrap();
    let b = broker.subscribe("a.b").unwrap();
    assert_eq!(broker.subscriber_count("a"), 2);
    assert_eq!(broker.subscriber_count("a.b"), 1);
    assert_eq!(broker.subscriber_count("b"), 0);
    assert_eq!(broker.subscriber_count("not a topic"), 0);
    let stats = broker.stats();
    assert_eq!((stats.topics, stats.subscribers), (2, 3));

    drop(a1);
    assert_eq!(broker.subscriber_count("a"), 1);
    assert!(a2.unsubscribe().is_empty());
    assert_eq!(broker.subscriber_count("a"), 0);
    let stats = broker.stats();
    assert_eq!((stats.topics, stats.subscribers), (1, 1));
    drop(b);
    let stats = broker.stats();
    assert_eq!((stats.topics, stats.subscribers), (0, 0));
}

#[test]
fn unsubscribe_returns_queued_messages_in_order() {
    let broker = Broker::new();
    let sub = broker.subscribe("t").unwrap();
    let other = broker.subscribe("t").unwrap();
    for i in 0..5 {
        broker.publish("t", i).unwrap();
    }
    assert_eq!(sub.recv(), Ok(0));
    assert_eq!(sub.unsubscribe(), [1, 2, 3, 4]);
    assert_eq!(broker.subscriber_count("t"), 1);

    // The remaining subscriber is unaffected and later publishes route to it alone.
    let report = broker.publish("t", 5).unwrap();
    assert_eq!((report.delivered, report.dropped), (1, 0));
    assert_eq!(other.try_iter().collect::<Vec<_>>(), [0, 1, 2, 3, 4, 5]);
}

#[test]
fn unsubscribe_with_empty_queue_returns_nothing() {
    let broker = Broker::<u8>::new();
    let sub = broker.subscribe("t").unwrap();
    assert_eq!(sub.unsubscribe(), Vec::<u8>::new());
    assert_eq!(broker.publish("t", 1).unwrap().routed(), 0);
}

#[test]
fn dropping_subscription_unsubscribes_at_once() {
    let broker = Broker::new();
    let sub = broker.subscribe("t").unwrap();
    broker.publish("t", 1).unwrap();
    drop(sub);
    assert_eq!(broker.subscriber_count("t"), 0);
    let report = broker.publish("t", 2).unwrap();
    assert_eq!(
        (report.delivered, report.dropped, report.routed()),
        (0, 0, 0)
    );
    assert_eq!(broker.stats().subscribers, 0);
}

/// A message whose `Clone` unsubscribes another subscription of the same broker, the first
/// time it runs: the rare case where a subscription leaves in the middle of a publish on the
/// same thread.
#[derive(Debug)]
struct LeaveOnClone {
    leaving: Arc<std::sync::Mutex<Option<Subscription<LeaveOnClone>>>>,
    handed_back: Arc<std::sync::Mutex<Option<Vec<LeaveOnClone>>>>,
}

impl Clone for LeaveOnClone {
    fn clone(&self) -> Self {
        if let Some(sub) = self.leaving.lock().unwrap().take() {
            *self.handed_back.lock().unwrap() = Some(sub.unsubscribe());
        }
        LeaveOnClone {
            leaving: self.leaving.clone(),
            handed_back: self.handed_back.clone(),
        }
    }
}

#[test]
fn a_subscription_left_during_a_publish_on_its_thread_gets_nothing_more() {
    let broker = Broker::new();
    let first = broker.subscribe("t").unwrap();
    // `DropOldest`: the broker holds a receiver of its own on this queue (to discard from), so
    // the queue stays connected after the subscription is gone, and a send that got through
    // would be counted as delivered.
    let options = SubscribeOptions::default().overflow(Overflow::DropOldest);
    let leaving = Arc::new(std::sync::Mutex::new(Some(
        broker.subscribe_with("t", options).unwrap(),
    )));
    let handed_back = Arc::new(std::sync::Mutex::new(None));
    let msg = LeaveOnClone {
        leaving: leaving.clone(),
        handed_back: handed_back.clone(),
    };
    // The copy for `first` is a clone, made before `first` is offered it: the second
    // subscription leaves then, before its turn, though it is in the route being delivered.
    let report = broker.publish("t", msg).unwrap();
    let handed_back = handed_back
        .lock()
        .unwrap()
        .take()
        .expect("the clone unsubscribed");
    assert!(handed_back.is_empty(), "nothing was queued when it left");
    assert_eq!(
        (report.delivered, report.dropped),
        (1, 1),
        "the subscription that left is not counted as delivered"
    );
    assert_eq!(first.try_iter().count(), 1);
    assert_eq!(broker.subscriber_count("t"), 1);
}

#[test]
fn dropped_full_subscription_does_not_block_later_publish() {
    let broker = Broker::builder()
        .capacity(1)
        .overflow(Overflow::Block)
        .build();
    let stalled = broker.subscribe("t").unwrap();
    let healthy = broker.subscribe("t").unwrap();
    broker.publish("t", 1).unwrap();
    assert_eq!(healthy.recv(), Ok(1));
    // `stalled` is full; with `Block`, a publish that still routed to it would wait forever.
    drop(stalled);

    let publisher = broker.clone();
    let report = spawn_guarded(move || publisher.publish("t", 2).unwrap()).join();
    assert_eq!(
        (report.delivered, report.dropped, report.routed()),
        (1, 0, 1)
    );
    assert_eq!(healthy.recv(), Ok(2));

    drop(healthy);
    let publisher = broker.clone();
    let report = spawn_guarded(move || publisher.publish("t", 3).unwrap()).join();
    assert_eq!(report.routed(), 0);
}

#[test]
fn receiver_works_in_select() {
    let broker = Broker::new();
    let orders = broker.subscribe("orders").unwrap();
    let prices = broker.subscribe("prices").unwrap();
    broker.publish("prices", 101).unwrap();
    select! {
        recv(orders.receiver()) -> msg => panic!("unexpected order {msg:?}"),
        recv(prices.receiver()) -> msg => assert_eq!(msg, Ok(101)),
        default(GUARD) => panic!("select saw no message"),
    }
    broker.publish("orders", 7).unwrap();
    select! {
        recv(orders.receiver()) -> msg => assert_eq!(msg, Ok(7)),
        recv(prices.receiver()) -> msg => panic!("unexpected price {msg:?}"),
        default(GUARD) => panic!("select saw no message"),
    }
    assert!(orders.receiver().is_empty() && prices.receiver().is_empty());

    // After close, the receiver reports disconnection, and the subscription says why.
    broker.close();
    select! {
        recv(orders.receiver()) -> msg => assert!(msg.is_err()),
        default(GUARD) => panic!("receiver did not disconnect on close"),
    }
    assert_eq!(orders.recv(), Err(RecvError::Closed));
}

#[test]
fn try_iter_yields_what_is_queued_now() {
    let broker = Broker::new();
    let sub = broker.subscribe("t").unwrap();
    assert_eq!(sub.try_iter().next(), None);
    for i in 0..3 {
        broker.publish("t", i).unwrap();
    }
    assert_eq!(sub.try_iter().collect::<Vec<_>>(), [0, 1, 2]);
    assert_eq!(sub.try_iter().next(), None);
    broker.publish("t", 3).unwrap();
    assert_eq!(sub.try_iter().collect::<Vec<_>>(), [3]);
}

#[test]
fn iter_drains_queue_then_ends_on_close() {
    let broker = Broker::new();
    let sub = broker.subscribe("t").unwrap();
    for i in 0..3 {
        broker.publish("t", i).unwrap();
    }
    broker.close();
    assert_eq!(sub.iter().collect::<Vec<_>>(), [0, 1, 2]);
    assert_eq!((&sub).into_iter().next(), None);
    assert_eq!(sub.into_iter().next(), None);
}

#[test]
fn capacity_zero_with_nobody_receiving_drops() {
    let broker = Broker::builder()
        .capacity(0)
        .overflow(Overflow::Drop)
        .build();
    let sub = broker.subscribe("t").unwrap();
    assert_eq!(sub.capacity(), Some(0));
    let report = broker.publish("t", 1).unwrap();
    assert_eq!((report.delivered, report.dropped), (0, 1));
    assert_eq!(sub.dropped(), 1);
    assert_eq!(sub.try_recv(), Err(TryRecvError::Empty));
}

// ---------------------------------------------------------------------------------------------
// Threaded
// ---------------------------------------------------------------------------------------------

#[test]
fn broker_handles_are_shared_between_threads() {
    let broker = Broker::new();
    let sub = broker.subscribe("t").unwrap();
    // By reference (`Sync`) and by clone (`Clone + Send`).
    thread::scope(|scope| {
        scope.spawn(|| broker.publish("t", 1).unwrap());
    });
    let clone = broker.clone();
    spawn_guarded(move || clone.publish("t", 2).unwrap()).join();
    assert_eq!(sub.try_iter().collect::<Vec<_>>(), [1, 2]);
}

#[test]
fn message_type_need_not_be_sync() {
    let broker = Broker::<Cell<u32>>::new();
    let sub = broker.subscribe("t").unwrap();
    let consumer = spawn_guarded(move || sub.recv().map(Cell::into_inner));
    let publisher = broker.clone();
    spawn_guarded(move || publisher.publish("t", Cell::new(5)).unwrap()).join();
    assert_eq!(consumer.join(), Ok(5));
}

#[test]
fn subscription_moves_to_receiving_thread() {
    let broker = Broker::builder().overflow(Overflow::Block).build();
    let sub = broker.subscribe("t").unwrap();
    let consumer = spawn_guarded(move || sub.iter().collect::<Vec<_>>());
    for i in 0..COUNT {
        broker.publish("t", i).unwrap();
    }
    broker.close();
    assert_eq!(consumer.join(), (0..COUNT).collect::<Vec<_>>());
}

#[test]
fn for_loop_over_borrowed_subscription_ends_on_close() {
    let broker = Broker::builder().overflow(Overflow::Block).build();
    let sub = broker.subscribe("t").unwrap();
    let consumer = spawn_guarded(move || {
        let mut seen = Vec::new();
        for msg in &sub {
            seen.push(msg);
        }
        seen
    });
    for i in 0..100 {
        broker.publish("t", i).unwrap();
    }
    broker.close();
    assert_eq!(consumer.join(), (0..100).collect::<Vec<_>>());
}

#[test]
fn dropping_into_iter_unsubscribes() {
    let broker = Broker::builder().overflow(Overflow::Block).build();
    let sub = broker.subscribe("t").unwrap();
    let consumer = spawn_guarded(move || sub.into_iter().take(3).collect::<Vec<_>>());
    for i in 0..3 {
        broker.publish("t", i).unwrap();
    }
    assert_eq!(consumer.join(), [0, 1, 2]);
    assert_eq!(broker.subscriber_count("t"), 0);
    assert_eq!(broker.publish("t", 3).unwrap().routed(), 0);
}

#[test]
fn receiver_select_over_several_subscriptions_on_another_thread() {
    let broker = Broker::builder().overflow(Overflow::Block).build();
    let a = broker.subscribe("a").unwrap();
    let b = broker.subscribe("b").unwrap();
    let c = broker.subscribe("c").unwrap();
    let consumer = spawn_guarded(move || {
        let mut seen: HashMap<&str, Vec<usize>> = HashMap::new();
        for _ in 0..300 {
            let (topic, msg) = select! {
                recv(a.receiver()) -> msg => ("a", msg),
                recv(b.receiver()) -> msg => ("b", msg),
                recv(c.receiver()) -> msg => ("c", msg),
                default(GUARD) => panic!("no message within {GUARD:?}"),
            };
            seen.entry(topic).or_default().push(msg.unwrap());
        }
        seen
    });
    for i in 0..100 {
        for topic in ["a", "b", "c"] {
            assert_eq!(broker.publish(topic, i).unwrap().delivered, 1);
        }
    }
    let seen = consumer.join();
    for topic in ["a", "b", "c"] {
        assert_eq!(seen[topic], (0..100).collect::<Vec<_>>(), "{topic}");
    }
}

#[test]
fn capacity_zero_delivers_to_receiving_thread() {
    let broker = Broker::builder()
        .capacity(0)
        .overflow(Overflow::Block)
        .build();
    let sub = broker.subscribe("t").unwrap();
    let consumer = spawn_guarded(move || (0..100).map(|_| sub.recv().unwrap()).collect::<Vec<_>>());
    let publisher = broker.clone();
    let reports = spawn_guarded(move || {
        (0..100)
            .map(|i| publisher.publish("t", i).unwrap())
            .collect::<Vec<_>>()
    })
    .join();
    for report in reports {
        assert_eq!((report.delivered, report.dropped), (1, 0));
    }
    assert_eq!(consumer.join(), (0..100).collect::<Vec<_>>());
}

/// Several threads publish `(publisher, sequence)` pairs to one topic; every subscriber drains
/// on its own thread and must see every message, each publisher's in order.
fn check_per_publisher_order(broker: &Broker<(usize, u64)>, subscribers: usize) {
    const PUBLISHERS: usize = 4;
    const PER_PUBLISHER: u64 = COUNT as u64;
    let subs = subscribe_many(broker, "ordered", subscribers);
    let consumers: Vec<_> = subs
        .into_iter()
        .map(|sub| spawn_guarded(move || sub.iter().collect::<Vec<_>>()))
        .collect();
    publish_in_order_from_threads(
        broker,
        "ordered",
        PUBLISHERS,
        PER_PUBLISHER,
        subscribers,
        GUARD,
    );
    broker.close();
    for consumer in consumers {
        assert_all_in_publisher_order(&consumer.join(), PUBLISHERS, PER_PUBLISHER);
    }
    let stats = broker.stats();
    assert_eq!(stats.published, PUBLISHERS as u64 * PER_PUBLISHER);
    assert_eq!(
        stats.delivered,
        PUBLISHERS as u64 * PER_PUBLISHER * subscribers as u64
    );
    assert_eq!(stats.dropped, 0);
}

#[test]
fn each_subscriber_sees_each_publishers_messages_in_order() {
    // Small queues and `Block`, so publishers keep waiting on subscribers and on each other.
    let broker = Broker::builder()
        .capacity(4)
        .overflow(Overflow::Block)
        .workers(0)
        .build();
    check_per_publisher_order(&broker, 3);
}

#[test]
fn each_subscriber_sees_each_publishers_messages_in_order_through_dispatch_pool() {
    let broker = Broker::builder()
        .capacity(4)
        .overflow(Overflow::Block)
        .workers(2)
        .dispatch_threshold(2)
        .build();
    check_per_publisher_order(&broker, 8);
}

// ---------------------------------------------------------------------------------------------
// Stress
// ---------------------------------------------------------------------------------------------

/// The Go ancestor's own test: 100 topics, one subscriber each (on its own thread), one message
/// each; every subscriber gets exactly its message, then unsubscribes.
#[test]
fn hundred_topics_one_subscriber_each_get_exactly_their_message() {
    const TOPICS: usize = 100;
    let broker = Broker::new();
    let subscribed = Arc::new(Barrier::new(TOPICS + 1));
    let subscribers: Vec<_> = (0..TOPICS)
        .map(|i| {
            let broker = broker.clone();
            let subscribed = subscribed.clone();
            spawn_guarded(move || {
                let topic = format!("topic.{i}");
                let sub = broker.subscribe(&topic).unwrap();
                subscribed.wait();
                let msg = sub.recv_timeout(GUARD).unwrap();
                assert_eq!(msg, format!("message for {topic}"));
                assert_eq!(sub.try_recv(), Err(TryRecvError::Empty));
                assert_eq!(sub.unsubscribe(), Vec::<String>::new());
            })
        })
        .collect();
    subscribed.wait();
    assert_eq!(broker.stats().subscribers, TOPICS);
    assert_eq!(broker.stats().topics, TOPICS);
    for i in 0..TOPICS {
        let topic = format!("topic.{i}");
        let report = broker
            .publish(&topic, format!("message for {topic}"))
            .unwrap();
        assert_eq!((report.delivered, report.dropped), (1, 0), "{topic}");
    }
    for subscriber in subscribers {
        subscriber.join();
    }
    let stats = broker.stats();
    assert_eq!((stats.topics, stats.subscribers), (0, 0));
    assert_eq!(
        (stats.published, stats.delivered, stats.dropped),
        (TOPICS as u64, TOPICS as u64, 0)
    );
    broker.close();
    assert_eq!(broker.subscribe("topic.0").unwrap_err(), Error::Closed);
}

/// A thread that publishes to one topic again and again goes through its route memo, not the
/// registry: every change to the table in between must still show in the very next publish.
#[test]
fn repeated_publishes_from_one_thread_see_every_subscribe_and_unsubscribe() {
    let broker = Broker::new();
    assert_eq!(broker.publish("memo.topic", 0).unwrap().routed(), 0);
    let first = broker.subscribe("memo.topic").unwrap();
    assert_eq!(broker.publish("memo.topic", 1).unwrap().delivered, 1);
    let second = broker.subscribe("memo.topic").unwrap();
    assert_eq!(broker.publish("memo.topic", 2).unwrap().delivered, 2);
    assert_eq!(first.unsubscribe(), vec![1, 2]);
    assert_eq!(broker.publish("memo.topic", 3).unwrap().delivered, 1);
    // A wildcard subscription changes what the same topic reaches, too.
    let wildcard = broker.subscribe("memo.*").unwrap();
    assert_eq!(broker.publish("memo.topic", 4).unwrap().delivered, 2);
    drop(second);
    assert_eq!(broker.publish("memo.topic", 5).unwrap().delivered, 1);
    assert_eq!(wildcard.try_iter().collect::<Vec<_>>(), vec![4, 5]);
    drop(wildcard);
    assert_eq!(broker.publish("memo.topic", 6).unwrap().routed(), 0);
    broker.close();
    assert_eq!(broker.publish("memo.topic", 7), Err(Error::Closed));
    assert_eq!(broker.stats().published, 7);
}

/// Two brokers, one topic, alternate publishes from one thread: each publish reaches its own
/// broker's subscribers only, whatever the thread last published to.
#[test]
fn alternating_brokers_on_one_thread_reach_their_own_subscribers() {
    let (left, right) = (Broker::new(), Broker::new());
    let left_sub = left.subscribe("same.topic").unwrap();
    // As many subscribes on each broker, so that nothing but the broker itself tells their
    // tables apart.
    let _left_other = left.subscribe("other.place").unwrap();
    let right_subs = [
        right.subscribe("same.topic").unwrap(),
        right.subscribe("same.topic").unwrap(),
    ];
    for i in 0..10 {
        assert_eq!(left.publish("same.topic", i).unwrap().delivered, 1);
        assert_eq!(right.publish("same.topic", i).unwrap().delivered, 2);
        // A valid topic nobody subscribes to, in between, on the same thread.
        assert_eq!(left.publish("other.topic", i).unwrap().routed(), 0);
    }
    assert_eq!(left_sub.try_iter().count(), 10);
    for sub in &right_subs {
        assert_eq!(sub.try_iter().count(), 10);
    }
}

/// What a thread remembers of its last publish must not keep a queue connected: after
/// `close`, a subscription drains and ends even though the publishing thread lives on and
/// published to it last.
#[test]
fn a_publishing_thread_does_not_keep_a_closed_subscription_open() {
    let broker = Broker::new();
    let sub = broker.subscribe("memo.close").unwrap();
    broker.publish("memo.close", 1).unwrap();
    broker.publish("memo.close", 2).unwrap();
    broker.close();
    assert_eq!(sub.recv_timeout(GUARD), Ok(1));
    assert_eq!(sub.recv_timeout(GUARD), Ok(2));
    // Without the weak reference this would wait out the whole `GUARD` and time out.
    assert_eq!(
        sub.recv_timeout(GUARD),
        Err(syncmq::RecvTimeoutError::Closed)
    );
}

/// With wildcard subscriptions a merged route lives in the route cache. When the cache starts
/// over (another thread published to more topics than it holds), the route a thread
/// remembered is gone although no subscription changed: its next publish must look the topic
/// up again and still reach every subscriber.
#[test]
fn a_remembered_route_dropped_by_the_route_cache_is_looked_up_again() {
    let broker = Broker::new();
    let by_star = broker.subscribe("cache.*.x").unwrap();
    let by_tail = broker.subscribe("cache.>").unwrap();
    assert_eq!(broker.publish("cache.hot.x", 0).unwrap().delivered, 2);
    thread::scope(|scope| {
        scope.spawn(|| {
            // More distinct topics than the route cache holds (4096), each cached as reaching
            // nobody: it starts over.
            for i in 0..5000 {
                assert_eq!(
                    broker.publish(&format!("other.{i}"), 1).unwrap().routed(),
                    0
                );
            }
        });
    });
    assert_eq!(broker.publish("cache.hot.x", 2).unwrap().delivered, 2);
    for sub in [&by_star, &by_tail] {
        assert_eq!(sub.try_iter().collect::<Vec<i32>>(), [0, 2]);
    }
}

/// A publish from a thread-local's destructor, while the thread's own locals are being torn
/// down, still works (the route memo is skipped if it is gone).
#[test]
fn a_publish_from_a_thread_local_destructor_is_delivered() {
    struct PublishOnDrop(Option<(Broker<u32>, crossbeam_channel::Sender<PublishReport>)>);
    impl Drop for PublishOnDrop {
        fn drop(&mut self) {
            if let Some((broker, reports)) = self.0.take() {
                // Twice: the second goes through whatever the first left behind.
                for msg in [1, 2] {
                    reports
                        .send(broker.publish("tls.drop", msg).unwrap())
                        .unwrap();
                }
            }
        }
    }
    thread_local! {
        static ON_EXIT: std::cell::RefCell<PublishOnDrop> =
            const { std::cell::RefCell::new(PublishOnDrop(None)) };
    }
    let broker = Broker::new();
    let sub = broker.subscribe("tls.drop").unwrap();
    let (reports, received) = crossbeam_channel::unbounded();
    let publisher = broker.clone();
    thread::spawn(move || {
        ON_EXIT.with(|slot| slot.borrow_mut().0 = Some((publisher, reports)));
        // Publish once normally too, so the memo exists when the destructor runs.
        ON_EXIT.with(|slot| {
            let slot = slot.borrow();
            let (broker, _) = slot.0.as_ref().unwrap();
            broker.publish("tls.drop", 0).unwrap();
        });
    })
    .join()
    .unwrap();
    let delivered: Vec<usize> = received.try_iter().map(|r| r.delivered).collect();
    assert_eq!(delivered, [1, 1]);
    assert_eq!(sub.try_iter().collect::<Vec<_>>(), [0, 1, 2]);
}

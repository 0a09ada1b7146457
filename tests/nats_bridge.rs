//! The NATS bridge against a real `nats-server`: every test starts its own server on a free
//! loopback port and kills it at the end. Without the `nats-server` binary these tests fail
//! (with a message saying how to install it); they never pass silently.
#![cfg(feature = "nats")]

#[path = "support/nats_server.rs"]
mod nats_server;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use nats_server::NatsServer;
use syncmq::{Bridge, BridgeError, Broker, Error, Overflow, Subscription, TopicError};

mod common;
// `PATIENCE` (30 s) also covers the bridge's reconnect backoff of up to 4 s.
use common::{
    PATIENCE, current_tid, drain, export_bridge, import_bridge, is_blocked, stuck_import,
    wait_until,
};

fn broker<T: Clone + Send + 'static>() -> Broker<T> {
    Broker::builder()
        .capacity(4096)
        .overflow(Overflow::Block)
        .build()
}

fn assert_send_sync<T: Send + Sync>() {}

/// Waits until `count()` (a counter bumped after the fact) reaches `expected`, then checks it
/// did not go past.
#[track_caller]
fn wait_for_count(what: &str, expected: u64, mut count: impl FnMut() -> u64) {
    wait_until(what, || count() >= expected);
    assert_eq!(count(), expected, "{what}");
}

// ---------------------------------------------------------------------------------------------
// Smoke

#[test]
fn bridge_is_send_and_sync() {
    assert_send_sync::<Bridge>();
}

#[test]
fn a_message_crosses_from_one_broker_to_another() {
    let server = NatsServer::start();
    let (a, b) = (broker::<String>(), broker::<String>());
    let bridge_a = export_bridge(&a, &server.url(), "greetings.>");
    let bridge_b = import_bridge(&b, &server.url(), "greetings.>");
    let sub = b.subscribe("greetings.*").unwrap();

    // `build` returned: B's subscription is registered at the server.
    a.publish("greetings.world", "hello".to_string()).unwrap();
    assert_eq!(sub.recv_timeout(PATIENCE), Ok("hello".to_string()));
    assert!(bridge_a.stats().connected && bridge_b.stats().connected);
    wait_for_count("A counts the export", 1, || bridge_a.stats().exported);
    // The import is counted once the local publish returns, which may be just after the
    // subscriber has received it.
    wait_for_count("B counts the import", 1, || bridge_b.stats().imported);
}

/// `build` returns once the server has registered its imports, so a message published to
/// NATS right after, on another connection, reaches them. The server reads each connection
/// on its own, so a `build` that only wrote its subscriptions to the socket lost such a
/// message now and then (under load, within a few hundred rounds); this repeats the race.
#[test]
fn a_message_published_right_after_build_crosses() {
    const ROUNDS: usize = 300;
    let server = NatsServer::start();
    let exporter = broker::<String>();
    let _export = export_bridge(&exporter, &server.url(), "race.>");
    for round in 0..ROUNDS {
        let importer = broker::<String>();
        let topic = format!("race.{round}");
        let _import = import_bridge(&importer, &server.url(), &topic);
        let sub = importer.subscribe(&topic).unwrap();
        exporter.publish(&topic, "now".into()).unwrap();
        assert_eq!(
            sub.recv_timeout(PATIENCE).as_deref(),
            Ok("now"),
            "round {round}: the message published right after `build` was lost"
        );
    }
}

/// `build` confirms its subscriptions with a request that no client receives, which the
/// server answers with "no responders". A client listening on every subject receives that
/// request and answers nothing, so no answer comes: `build` must still succeed, after its
/// short wait (1 s), well within the connect timeout (5 s).
#[test]
fn build_succeeds_while_another_client_listens_on_every_subject() {
    let server = NatsServer::start();
    let everything = broker::<String>();
    let _listener = import_bridge(&everything, &server.url(), ">");
    let all = everything.subscribe(">").unwrap();
    let importer = broker::<String>();
    let start = Instant::now();
    let _import = Bridge::builder(&importer, &server.url())
        .import("late.topic")
        .build()
        .expect("build succeeds without the confirmation");
    // The wait is 1 s; 3 s leaves room for a loaded machine, and a build that waited out the
    // connect timeout would fail this.
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    // The listener saw the probe request, on an inbox subject.
    let probe = all.recv_timeout(PATIENCE).expect("the probe request");
    assert!(probe.is_empty());
    let sub = importer.subscribe("late.topic").unwrap();
    let exporter = broker::<String>();
    let _export = export_bridge(&exporter, &server.url(), "late.>");
    exporter.publish("late.topic", "hello".into()).unwrap();
    assert_eq!(sub.recv_timeout(PATIENCE).as_deref(), Ok("hello"));
}

// ---------------------------------------------------------------------------------------------
// Both ways, no loop, no duplicate

#[test]
fn two_brokers_share_subjects_both_ways_without_loops_or_duplicates() {
    const COUNT: usize = 200;
    let server = NatsServer::start();
    let (a, b) = (broker::<String>(), broker::<String>());
    let bridge = |broker: &Broker<String>| {
        Bridge::builder(broker, &server.url())
            .export("chat.>")
            .import("chat.>")
            .build()
            .unwrap()
    };
    let (bridge_a, bridge_b) = (bridge(&a), bridge(&b));
    let (sub_a, sub_b) = (
        a.subscribe("chat.>").unwrap(),
        b.subscribe("chat.>").unwrap(),
    );

    for i in 0..COUNT {
        a.publish("chat.a", format!("a{i}")).unwrap();
        b.publish("chat.b", format!("b{i}")).unwrap();
    }
    // Barriers: what crosses after everything else. Each side's import handles one
    // connection's messages in order, so a loop or an echo would show before the barrier.
    let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
    a.publish("chat.barrier", "from a".into()).unwrap();
    wait_until("the barrier from A reaches B", || {
        got_b.extend(drain(&sub_b));
        got_b.iter().any(|m| m == "from a")
    });
    b.publish("chat.barrier", "from b".into()).unwrap();
    wait_until("the barrier from B reaches A", || {
        got_a.extend(drain(&sub_a));
        got_a.iter().any(|m| m == "from b")
    });
    // B's own barrier (local) and A's barrier (imported) are in B's queue; give a straggling
    // duplicate a chance to show by crossing once more from B to A and back.
    a.publish("chat.barrier", "again from a".into()).unwrap();
    wait_until("the second barrier from A reaches B", || {
        got_b.extend(drain(&sub_b));
        got_b.iter().any(|m| m == "again from a")
    });
    got_a.extend(drain(&sub_a));

    let expected = |first: &str, second: &str| {
        let mut all: Vec<String> = (0..COUNT)
            .flat_map(|i| [format!("{first}{i}"), format!("{second}{i}")])
            .collect();
        all.extend(["from a", "from b", "again from a"].map(String::from));
        all.sort();
        all
    };
    got_a.sort();
    got_b.sort();
    assert_eq!(
        got_a,
        expected("a", "b"),
        "broker A got each message exactly once"
    );
    assert_eq!(
        got_b,
        expected("b", "a"),
        "broker B got each message exactly once"
    );

    // Imports are counted once their local publish returns, and exports once the client has
    // taken them, which may be after they crossed: wait for the last ones.
    let count = COUNT as u64;
    wait_for_count("A counts every export", count + 2, || {
        bridge_a.stats().exported
    });
    wait_for_count("A counts every import", count + 1, || {
        bridge_a.stats().imported
    });
    wait_for_count("B counts every export", count + 1, || {
        bridge_b.stats().exported
    });
    wait_for_count("B counts every import", count + 2, || {
        bridge_b.stats().imported
    });
    let (stats_a, stats_b) = (bridge_a.stats(), bridge_b.stats());
    assert_eq!(stats_a.dropped.total() + stats_b.dropped.total(), 0);
}

#[test]
fn overlapping_patterns_forward_each_message_once() {
    let server = NatsServer::start();
    let (a, b) = (broker::<String>(), broker::<String>());
    let bridge_a = Bridge::builder(&a, &server.url())
        .export("orders.>")
        .export("orders.*")
        .export("*.eu")
        .build()
        .unwrap();
    let _bridge_b = Bridge::builder(&b, &server.url())
        .import("orders.*")
        .import("orders.>")
        .import_group("orders.eu", "workers")
        .build()
        .unwrap();
    let sub = b.subscribe("orders.>").unwrap();

    a.publish("orders.eu", "one".into()).unwrap();
    a.publish("orders.eu.paris", "two".into()).unwrap();
    a.publish("orders.barrier", "done".into()).unwrap();
    // Each import is its own NATS subscription, so topics imported through different
    // patterns may arrive in any order.
    let mut got = Vec::new();
    wait_until("three messages cross", || {
        got.extend(drain(&sub));
        got.len() >= 3
    });
    // A duplicate would come right behind. No marker can fence it: a duplicate would come
    // through another import (each is its own NATS subscription, imported by its own task,
    // with no order between them; "orders.eu" even through the group import, whose topics the
    // plain imports always take) or another export queue ("orders.*" and "*.eu" take nothing
    // while "orders.>" comes first, and the export thread serves its queues in no set order),
    // and a marker follows one subscription and one queue. So a quiet period stands for it.
    std::thread::sleep(Duration::from_millis(200));
    got.extend(drain(&sub));
    got.sort();
    assert_eq!(got, ["done", "one", "two"]);
    // Counted once the client has taken them, which may be after they crossed.
    wait_for_count("A counts every export", 3, || bridge_a.stats().exported);
}

// ---------------------------------------------------------------------------------------------
// Queue groups

#[test]
fn group_import_splits_work_between_two_brokers() {
    const JOBS: usize = 200;
    let server = NatsServer::start();
    let producer = broker::<String>();
    let _export = export_bridge(&producer, &server.url(), "jobs.>");
    let workers: Vec<(Broker<String>, Bridge, Subscription<String>)> = (0..2)
        .map(|_| {
            let broker = broker::<String>();
            let bridge = Bridge::builder(&broker, &server.url())
                .import_group("jobs.>", "workers")
                .build()
                .unwrap();
            let sub = broker.subscribe("jobs.>").unwrap();
            (broker, bridge, sub)
        })
        .collect();

    for i in 0..JOBS {
        producer.publish("jobs.resize", format!("job{i}")).unwrap();
    }
    let mut got: Vec<Vec<String>> = vec![Vec::new(), Vec::new()];
    wait_until("every job reached one worker", || {
        for (k, (_, _, sub)) in workers.iter().enumerate() {
            got[k].extend(drain(sub));
        }
        got[0].len() + got[1].len() >= JOBS
    });
    // Nothing more arrives: each job went to exactly one worker. Markers fence the workers'
    // queues: the producer's bridge exports every "jobs.resize" through one queue and one
    // connection, the server sends each subscription one connection's messages in the order
    // published, and each worker's bridge imports its one subscription in order. So once a
    // worker has a marker, every job the server sent it, a duplicate included, is queued
    // ahead of the marker. The group hands each marker to one worker at random: publish
    // markers, one at a time, until both have one.
    let is_marker = |msg: &String| msg.starts_with("marker");
    let mut markers = 0;
    while !got.iter().all(|g| g.iter().any(is_marker)) {
        assert!(
            markers < 64,
            "the group handed {markers} markers to one worker only"
        );
        producer
            .publish("jobs.resize", format!("marker{markers}"))
            .unwrap();
        markers += 1;
        wait_until("the marker reaches a worker", || {
            for (k, (_, _, sub)) in workers.iter().enumerate() {
                got[k].extend(drain(sub));
            }
            got.iter().flatten().filter(|msg| is_marker(msg)).count() >= markers
        });
    }
    // Each worker's jobs, all ahead of its markers.
    let got: Vec<Vec<String>> = got
        .into_iter()
        .enumerate()
        .map(|(k, mut got)| {
            let first_marker = got.iter().position(is_marker).unwrap();
            assert!(
                got[first_marker..].iter().all(is_marker),
                "worker {k}: a job after a marker: {got:?}"
            );
            got.truncate(first_marker);
            got
        })
        .collect();
    let mut all: Vec<String> = got.concat();
    all.sort();
    let mut expected: Vec<String> = (0..JOBS).map(|i| format!("job{i}")).collect();
    expected.sort();
    assert_eq!(all, expected, "each job exactly once over the group");
    // The server picks a member at random per message; with 200 jobs a member left idle
    // has probability 2^-199.
    assert!(
        !got[0].is_empty() && !got[1].is_empty(),
        "both workers got work: {} and {}",
        got[0].len(),
        got[1].len()
    );
    let imported = || -> u64 {
        workers
            .iter()
            .map(|(_, bridge, _)| bridge.stats().imported)
            .sum()
    };
    // Imports are counted once their local publish returns: wait for the last ones.
    let crossed = (JOBS + markers) as u64;
    wait_for_count("the workers count every import", crossed, imported);
}

// ---------------------------------------------------------------------------------------------
// Server down, restart, close

#[test]
fn export_while_the_server_is_down_is_counted_as_dropped() {
    let mut server = NatsServer::start();
    let broker = broker::<String>();
    let bridge = export_bridge(&broker, &server.url(), "events.>");
    broker.publish("events.up", "sent".into()).unwrap();
    wait_for_count("the first message is exported", 1, || {
        bridge.stats().exported
    });

    server.stop();
    wait_until("the bridge sees the server go", || {
        !bridge.stats().connected
    });
    // Local publishing is not stalled, and nothing is kept for later: each message taken
    // from the export queue while disconnected is dropped and counted.
    let started = Instant::now();
    for i in 0..5 {
        let report = broker.publish("events.down", format!("lost {i}")).unwrap();
        assert_eq!(report.delivered, 1, "the export queue took it");
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "publishing did not wait"
    );
    wait_for_count("the five are counted as server_unavailable", 5, || {
        bridge.stats().dropped.server_unavailable
    });
    let stats = bridge.stats();
    assert_eq!(stats.exported, 1);
    assert_eq!(stats.dropped.total(), 5);
}

#[test]
fn the_bridge_recovers_after_the_server_restarts() {
    let mut server = NatsServer::start();
    let (a, b) = (broker::<String>(), broker::<String>());
    let bridge_a = export_bridge(&a, &server.url(), "ping.>");
    let bridge_b = import_bridge(&b, &server.url(), "ping.>");
    let sub = b.subscribe("ping.>").unwrap();
    a.publish("ping.before", "before".into()).unwrap();
    assert_eq!(sub.recv_timeout(PATIENCE).as_deref(), Ok("before"));

    server.restart(); // same port
    wait_until("both bridges reconnect", || {
        let (sa, sb) = (bridge_a.stats(), bridge_b.stats());
        sa.connected && sb.connected && sa.reconnects >= 1 && sb.reconnects >= 1
    });
    // B's subscription is registered again as B reconnects, which may be after A's: probe
    // until one gets through, giving each probe up to 20 ms to cross.
    let mut got = Vec::new();
    wait_until("a message crosses after the restart", || {
        a.publish("ping.after", "after".into()).unwrap();
        if let Ok(m) = sub.recv_timeout(Duration::from_millis(20)) {
            got.push(m);
        }
        got.extend(drain(&sub));
        got.iter().any(|m| m == "after")
    });
    assert!(got.iter().all(|m| m == "after"));
}

#[test]
fn close_returns_promptly_while_the_server_is_down() {
    let mut server = NatsServer::start();
    let broker = broker::<String>();
    let bridge = Bridge::builder(&broker, &server.url())
        .export("work.>")
        .import("results.>")
        .close_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    server.stop();
    wait_until("the bridge sees the server go", || {
        !bridge.stats().connected
    });
    for i in 0..100 {
        broker.publish("work.item", format!("{i}")).unwrap();
    }

    let started = Instant::now();
    bridge.close();
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "close took {took:?} with the server down"
    );
    let stats = bridge.stats();
    assert!(!stats.connected);
    assert_eq!(stats.exported, 0);
    // Every message the export queue took is accounted for.
    assert_eq!(
        stats.dropped.server_unavailable + stats.dropped.unflushed,
        100
    );
    bridge.close(); // idempotent
    drop(bridge);
    // The export queue has left the broker.
    assert_eq!(broker.subscriber_count("work.>"), 0);
}

#[test]
fn close_flushes_what_is_queued() {
    const COUNT: usize = 1000;
    let server = NatsServer::start();
    let (a, b) = (broker::<Vec<u8>>(), broker::<Vec<u8>>());
    let bridge_b = import_bridge(&b, &server.url(), "bulk.>");
    let sub = b.subscribe("bulk.>").unwrap();
    let bridge_a = Bridge::builder(&a, &server.url())
        .export("bulk.>")
        .export_capacity(COUNT)
        .build()
        .unwrap();
    for i in 0..COUNT {
        a.publish("bulk.data", (i as u32).to_be_bytes().to_vec())
            .unwrap();
    }
    bridge_a.close();
    let stats = bridge_a.stats();
    assert_eq!(stats.exported, COUNT as u64, "{stats:?}");
    let mut got = Vec::new();
    wait_until("every message crossed", || {
        got.extend(drain(&sub));
        got.len() >= COUNT
    });
    let expected: Vec<Vec<u8>> = (0..COUNT)
        .map(|i| (i as u32).to_be_bytes().to_vec())
        .collect();
    assert_eq!(got, expected, "in publish order");
    wait_for_count("B counts every import", COUNT as u64, || {
        bridge_b.stats().imported
    });
}

// ---------------------------------------------------------------------------------------------
// Accounting

/// An import waiting on full local queues when its bridge closes: `close` cuts the wait short
/// and joins the bridge's threads. The importing broker is built by `builder`; its
/// `subscribers` subscribers have room for one message each and never read, so the second
/// import waits (see [`stuck_import`]).
fn close_stops_an_import_waiting_on_full_queues(
    builder: syncmq::BrokerBuilder<String>,
    subscribers: usize,
) {
    let server = NatsServer::start();
    let stuck = stuck_import(
        &server.url(),
        builder,
        subscribers,
        Duration::from_millis(500),
    );

    let started = Instant::now();
    stuck.importing.close();
    let took = started.elapsed();
    // The close timeout plus the join grace is 1 s; much more means a thread was waited for.
    assert!(took < Duration::from_secs(5), "close took {took:?}");
    // `close` joined the runtime thread, so the import's publish has returned: the second
    // message is counted as dropped for every subscriber, and nothing is left waiting.
    assert_eq!(stuck.importing.stats().imported, 2);
    let stats = stuck.broker.stats();
    assert_eq!(
        (stats.delivered, stats.dropped),
        (subscribers as u64, subscribers as u64)
    );
    for sub in &stuck.subs {
        assert_eq!(sub.dropped(), 1);
        assert_eq!(drain(sub), ["first"]);
    }
}

#[test]
fn close_stops_an_import_waiting_on_a_full_local_queue() {
    close_stops_an_import_waiting_on_full_queues(Broker::builder(), 1);
}

#[test]
fn close_stops_an_import_waiting_on_full_queues_in_dispatch_stripes() {
    // Four subscribers at a threshold of 2 with one dispatch thread: two stripes, one of
    // them on the dispatch thread, both waiting.
    close_stops_an_import_waiting_on_full_queues(
        Broker::builder().workers(1).dispatch_threshold(2),
        4,
    );
}

#[test]
fn undecodable_messages_are_counted_and_skipped() {
    let server = NatsServer::start();
    let bytes = broker::<Vec<u8>>();
    let text = broker::<String>();
    let _export = export_bridge(&bytes, &server.url(), "text.>");
    let import = import_bridge(&text, &server.url(), "text.>");
    let sub = text.subscribe("text.>").unwrap();

    bytes.publish("text.bad", vec![0xff, 0xfe, 0xfd]).unwrap();
    bytes.publish("text.good", b"fine".to_vec()).unwrap();
    assert_eq!(sub.recv_timeout(PATIENCE).as_deref(), Ok("fine"));
    // The bridge counts an import after its local publish returns, which can be just after
    // the subscriber has the message.
    wait_until("the good message is counted", || {
        import.stats().imported >= 1
    });
    let stats = import.stats();
    assert_eq!((stats.decode_errors, stats.imported), (1, 1));
    assert_eq!(sub.try_recv().ok(), None);
}

#[test]
fn a_full_export_queue_counts_what_it_drops() {
    const COUNT: u64 = 2000;
    let server = NatsServer::start();
    let broker = broker::<String>();
    let bridge = Bridge::builder(&broker, &server.url())
        .export("fast.>")
        .export_capacity(1)
        .export_overflow(Overflow::Drop)
        .build()
        .unwrap();
    for i in 0..COUNT {
        broker.publish("fast.tick", i.to_string()).unwrap();
    }
    // Every message is either exported or counted as dropped by the full queue.
    wait_for_count("every message is accounted for", COUNT, || {
        let stats = bridge.stats();
        stats.exported + stats.dropped.export_queue_full
    });
    assert_eq!(
        bridge.stats().dropped.total(),
        bridge.stats().dropped.export_queue_full
    );
}

#[test]
fn imports_reach_the_broker_but_not_its_export_queues() {
    // One broker both importing and exporting `loop.>`, and a second broker publishing: the
    // imported message is delivered locally but not exported again.
    let server = NatsServer::start();
    let (a, b) = (broker::<String>(), broker::<String>());
    let bridge_a = Bridge::builder(&a, &server.url())
        .export("loop.>")
        .import("loop.>")
        .build()
        .unwrap();
    let _bridge_b = export_bridge(&b, &server.url(), "loop.>");
    let sub = a.subscribe("loop.>").unwrap();
    b.publish("loop.x", "once".into()).unwrap();
    assert_eq!(sub.recv_timeout(PATIENCE).as_deref(), Ok("once"));
    wait_until("A counts the import", || bridge_a.stats().imported >= 1);
    // A publish adds its deliveries to the broker's totals in one step, once it has offered
    // the message to every subscriber: had A's export queue taken the import too, `delivered`
    // would go from 0 to 2, and the message would be on its way back out.
    wait_for_count("A counts the import's delivery, to `sub` alone", 1, || {
        a.stats().delivered
    });
    let stats = bridge_a.stats();
    assert_eq!((stats.imported, stats.exported), (1, 0));
}

// ---------------------------------------------------------------------------------------------
// Bad input

#[test]
fn bad_input_is_rejected_with_clear_errors() {
    let broker = broker::<String>();
    let url = "nats://127.0.0.1:4222";

    let err = Bridge::builder(&broker, "nats://bad host:4222")
        .build()
        .unwrap_err();
    assert!(matches!(err, BridgeError::InvalidUrl { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("invalid NATS server URL \"nats://bad host:4222\""),
        "{err}"
    );

    let err = Bridge::builder(&broker, url)
        .export("orders..new")
        .build()
        .unwrap_err();
    assert_eq!(
        err,
        BridgeError::InvalidPattern {
            pattern: "orders..new".into(),
            reason: TopicError::EmptyToken { position: 7 }
        }
    );
    assert_eq!(
        err.to_string(),
        "invalid bridge pattern \"orders..new\": empty token at byte 7"
    );
    let err = Bridge::builder(&broker, url)
        .import("a.>.b")
        .build()
        .unwrap_err();
    assert!(matches!(err, BridgeError::InvalidPattern { .. }), "{err:?}");
    for group in ["", "two words"] {
        let err = Bridge::builder(&broker, url)
            .import_group("a.>", group)
            .build()
            .unwrap_err();
        assert_eq!(
            err,
            BridgeError::InvalidGroup {
                group: group.into()
            }
        );
    }

    let too_big = Bridge::builder(&broker, url)
        .export("a")
        .export_capacity(syncmq::MAX_CAPACITY + 1)
        .build()
        .unwrap_err();
    assert!(
        matches!(too_big, BridgeError::Broker(Error::InvalidConfig(_))),
        "{too_big:?}"
    );
    // Nothing was left subscribed by the failed builds.
    assert_eq!(broker.stats().subscribers, 0);
}

#[test]
fn an_unreachable_server_fails_build_within_the_connect_timeout() {
    // A port nobody listens on: take a free one and release it.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let broker = broker::<String>();
    let started = Instant::now();
    let err = Bridge::builder(&broker, &format!("nats://127.0.0.1:{port}"))
        .export("a.>")
        .import("b.>")
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    assert!(matches!(err, BridgeError::Connect { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with("cannot connect to NATS server"),
        "{err}"
    );
    // Nothing is left behind: the export queue left the broker.
    assert_eq!(broker.stats().subscribers, 0);
}

#[test]
fn a_closed_broker_cannot_be_bridged() {
    let broker = broker::<String>();
    broker.close();
    let err = Bridge::builder(&broker, "nats://127.0.0.1:4222")
        .export("a")
        .build()
        .unwrap_err();
    assert_eq!(err, BridgeError::Broker(Error::Closed));
}

// ---------------------------------------------------------------------------------------------
// Audit: builder input, accounting at the edges

#[test]
fn an_empty_server_address_is_an_invalid_url() {
    // Rejected before anything starts, like any other malformed address: not a DNS failure
    // reported as `Connect`, and not silently skipped in a list.
    let broker = broker::<String>();
    for url in [
        "",
        " ",
        "nats://127.0.0.1:4222,",
        "nats://127.0.0.1:4222, ,nats://x:1",
    ] {
        let err = Bridge::builder(&broker, url)
            .export("a.>")
            .build()
            .unwrap_err();
        assert!(
            matches!(&err, BridgeError::InvalidUrl { url: given, .. } if given == url),
            "{url:?}: {err:?}"
        );
    }
    assert_eq!(broker.stats().subscribers, 0);
}

#[test]
fn a_tls_url_without_a_crypto_provider_is_a_connect_error() {
    // The `nats` feature builds async-nats without a TLS crypto provider, so the client
    // cannot set up TLS (it panics on the bridge thread). `build` says so as a connection
    // failure, not as a thread that could not be started.
    let server = NatsServer::start();
    let broker = broker::<String>();
    let url = format!("tls://127.0.0.1:{}", server.port());
    let err = Bridge::builder(&broker, &url)
        .export("a.>")
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, BridgeError::Connect { url: given, .. } if *given == url),
        "{err:?}"
    );
    assert_eq!(broker.stats().subscribers, 0);
}

#[test]
fn a_queue_group_name_longer_than_a_topic_is_rejected() {
    // NATS sends the group in the SUB line; a name past the server's control-line limit
    // (4096 bytes by default) makes the server drop the connection at every (re)connect, so
    // such a bridge would reconnect in a loop forever. Group names follow the broker's own
    // limit instead, `MAX_TOPIC_LEN`.
    let server = NatsServer::start();
    let broker = broker::<String>();
    let at_limit = "g".repeat(syncmq::MAX_TOPIC_LEN);
    let bridge = Bridge::builder(&broker, &server.url())
        .import_group("jobs.>", &at_limit)
        .build()
        .unwrap();
    assert!(bridge.stats().connected);
    drop(bridge);
    for len in [syncmq::MAX_TOPIC_LEN + 1, 5000] {
        let group = "g".repeat(len);
        let err = Bridge::builder(&broker, &server.url())
            .import_group("jobs.>", &group)
            .build()
            .unwrap_err();
        assert_eq!(err, BridgeError::InvalidGroup { group });
    }
}

#[test]
fn an_invalid_group_error_states_every_rule() {
    // `InvalidGroup` is also the error for a name past `MAX_TOPIC_LEN`: its message must not
    // send a user with a long, well-formed name looking for whitespace.
    let broker = broker::<String>();
    let group = "g".repeat(syncmq::MAX_TOPIC_LEN + 1);
    let err = Bridge::builder(&broker, "nats://127.0.0.1:4222")
        .import_group("jobs.>", &group)
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "invalid queue group {group:?}: it must be non-empty, without whitespace, \
             and at most {} bytes long",
            syncmq::MAX_TOPIC_LEN
        )
    );
}

#[test]
fn overlapping_export_patterns_count_each_dropped_message_once() {
    // Two export queues match `a.x`; the first in builder order exports it. The second queue
    // must not take a copy it will never export, so what its overflow policy refuses is not
    // counted a second time.
    const COUNT: u64 = 2000;
    let server = NatsServer::start();
    let broker = broker::<String>();
    let bridge = Bridge::builder(&broker, &server.url())
        .export("a.>")
        .export("a.*")
        .export_capacity(1)
        .export_overflow(Overflow::Drop)
        .build()
        .unwrap();
    for i in 0..COUNT {
        broker.publish("a.x", i.to_string()).unwrap();
    }
    bridge.close();
    let stats = bridge.stats();
    assert_eq!(
        stats.exported + stats.dropped.total(),
        COUNT,
        "every message counted once: {stats:?}"
    );
}

#[test]
fn a_publish_waiting_on_a_full_export_queue_when_the_bridge_closes_is_counted() {
    // `Overflow::Block` export queue of one message, and a server that stops reading
    // (SIGSTOP): the export thread stalls, the queue fills, and a local publish waits. When
    // the bridge closes, that publish gives up; the bridge counts the message as dropped.
    let server = NatsServer::start();
    let broker = broker::<Vec<u8>>();
    let bridge = Bridge::builder(&broker, &server.url())
        .export("e.>")
        .export_capacity(1)
        .export_overflow(Overflow::Block)
        .close_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let _stopped = Stopped::new(&server);
    let (tid_tx, tid) = crossbeam_channel::bounded(1);
    let publisher = {
        let broker = broker.clone();
        std::thread::spawn(move || {
            tid_tx.send(current_tid()).unwrap();
            // Large payloads fill the socket and the client's buffers quickly; then the export
            // thread stalls, the queue fills and a publish waits.
            while broker.publish("e.x", vec![0; 64 * 1024]).is_ok() {}
        })
    };
    let tid = tid.recv().unwrap();
    // The publisher blocked, with no publish getting through, for all of `QUIET`: the export
    // thread has stalled for good, and the publish waits on the full queue. Nothing signals
    // that stall, so a quiet period stands for it; `wait_until` bounds the whole wait.
    const QUIET: Duration = Duration::from_millis(200);
    let mut quiet_since = (Instant::now(), broker.stats().published);
    wait_until("a local publish waits on the full export queue", || {
        let published = broker.stats().published;
        // Without `/proc` (no tid), the published count alone tells.
        let blocked = tid.as_deref().and_then(is_blocked) != Some(false);
        if !blocked || published != quiet_since.1 {
            quiet_since = (Instant::now(), published);
        }
        quiet_since.0.elapsed() >= QUIET
    });
    bridge.close();
    // The export queue leaves the broker first thing in the export thread's close, so the
    // waiting publish gives up and counts its message as dropped.
    wait_until("the waiting publish returns", || broker.stats().dropped > 0);
    broker.close();
    publisher.join().unwrap();
    let (stats, local) = (bridge.stats(), broker.stats());
    assert_eq!(local.dropped, 1, "{local:?}");
    assert_eq!(stats.dropped.export_queue_full, 1, "{stats:?}");
    // The export queue was the only subscriber: whatever reached it, or waited on it, is
    // accounted for by the bridge.
    assert_eq!(
        stats.exported + stats.dropped.total(),
        local.delivered + local.dropped,
        "{stats:?}, broker {local:?}"
    );
}

/// Sends `signal` (a name such as `STOP`) to process `pid`: whether `kill` ran and succeeded.
fn kill(pid: u32, signal: &str) -> bool {
    std::process::Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .is_ok_and(|status| status.success())
}

/// A server stopped (SIGSTOP) until this is dropped, which resumes it (SIGCONT) so that it can
/// be killed.
struct Stopped(u32);

impl Stopped {
    /// Stops `server`.
    #[track_caller]
    fn new(server: &NatsServer) -> Self {
        let pid = server.pid();
        assert!(kill(pid, "STOP"), "cannot stop nats-server (pid {pid})");
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        kill(self.0, "CONT");
    }
}

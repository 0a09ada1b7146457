//! A tour of syncmq in one run: `cargo run --release --example quickstart`.
//!
//! An order service publishes to a few topics. An audit log keeps up; a billing service gets
//! stuck in a long job, its small queue fills, and the publishes that cannot reach it give up
//! after the 5 ms send timeout and count the drop, without delaying the audit log. Then the
//! broker closes cleanly: billing drains what was queued and its thread ends.
//!
//! The output is the same on every run: the threads synchronise through channels, and the
//! stuck job is a wait for a signal rather than a sleep.

use std::thread;
use std::time::Instant;

use syncmq::{Broker, DEFAULT_SEND_TIMEOUT, Error, PublishReport, RecvError};

/// The message type: cheap to clone, one clone per subscriber.
#[derive(Debug, Clone, PartialEq)]
enum Event {
    Created { order: u32, item: &'static str },
    Cancelled { order: u32 },
    Shipped { order: u32 },
}

fn main() -> Result<(), Error> {
    // Small queues so that the stuck subscriber fills up quickly; the default 5 ms timeout.
    let broker = Broker::<Event>::builder()
        .capacity(2)
        .send_timeout(DEFAULT_SEND_TIMEOUT)
        .build();
    println!("broker: queues of 2 messages, send timeout {DEFAULT_SEND_TIMEOUT:?}\n");

    // Topics are `.`-separated non-empty tokens; a bad one is an error that says why.
    match broker.subscribe("orders..created") {
        Err(err) => println!("subscribe(\"orders..created\") -> error: {err}"),
        Ok(_) => unreachable!("an empty token is invalid"),
    }

    let audit = broker.subscribe("orders.created")?;
    let support = broker.subscribe("orders.cancelled")?;
    let billing = broker.subscribe("orders.created")?;
    println!(
        "subscribed: audit and billing to orders.created, support to orders.cancelled ({} subscribers)\n",
        broker.stats().subscribers
    );

    // Billing runs on its own thread. After its first order it starts a long job (until main
    // says it is over) and reads nothing meanwhile.
    let (started_tx, started) = crossbeam_channel::bounded(0);
    let (job_done, job_done_rx) = crossbeam_channel::bounded::<()>(0);
    let billing_thread = thread::spawn(move || {
        let first = billing.recv().expect("the first order arrives");
        started_tx.send(()).expect("main is waiting");
        job_done_rx.recv().expect("main ends the job"); // the long job
        let mut got = vec![first];
        got.extend(billing.iter()); // then drain the queue until the broker closes
        let end = billing.recv();
        (got, billing.dropped(), end)
    });

    let items = ["tea", "cups", "kettle", "sugar", "milk", "spoons", "tray"];
    for (n, item) in (1..).zip(items) {
        let event = Event::Created { order: n, item };
        let started_at = Instant::now();
        let report = broker.publish("orders.created", event)?;
        let mut line = describe(report);
        if report.dropped > 0 {
            // Only the full queue was waited on, and only until its deadline.
            assert!(started_at.elapsed() >= DEFAULT_SEND_TIMEOUT);
            line.push_str("  (billing's queue stayed full for 5 ms: skipped, counted)");
        }
        println!("publish orders.created #{n} ({item:<6}) -> {line}");
        // The audit log keeps up: it reads each order right away.
        let seen = audit.recv().expect("audit is subscribed");
        assert_eq!(seen, Event::Created { order: n, item });
        if n == 1 {
            started.recv().expect("billing starts its job");
            println!("  (billing took order #1 and is now busy; its queue has room for 2 more)");
        }
    }

    let report = broker.publish("orders.cancelled", Event::Cancelled { order: 3 })?;
    println!("publish orders.cancelled #3    -> {}", describe(report));
    let report = broker.publish("orders.shipped", Event::Shipped { order: 1 })?;
    println!(
        "publish orders.shipped         -> {}  (no subscribers: not an error)",
        describe(report)
    );
    println!(
        "support received {:?}",
        support.try_iter().collect::<Vec<_>>()
    );

    let stats = broker.stats();
    println!(
        "\nstats: published {}, delivered {}, dropped {}, topics {}, subscribers {}",
        stats.published, stats.delivered, stats.dropped, stats.topics, stats.subscribers
    );

    // Clean close: billing's job ends, it drains its queue and sees the end of the subscription.
    job_done.send(()).expect("billing is in its job");
    broker.close();
    let (got, billing_dropped, end) = billing_thread.join().expect("billing does not panic");
    assert_eq!(end, Err(RecvError::Closed));
    let orders: Vec<u32> = got
        .iter()
        .map(|event| match event {
            Event::Created { order, .. }
            | Event::Cancelled { order }
            | Event::Shipped { order } => *order,
        })
        .collect();
    println!("\nclosed:");
    println!("  billing received orders {orders:?}, then recv -> {end:?}");
    println!(
        "  dropped per subscriber: audit {}, support {}, billing {billing_dropped}",
        audit.dropped(),
        support.dropped()
    );
    println!(
        "  publish -> {:?}, subscribe -> {:?}",
        broker.publish("orders.shipped", Event::Shipped { order: 2 }),
        broker.subscribe("orders.created").map(drop)
    );
    Ok(())
}

fn describe(report: PublishReport) -> String {
    format!("delivered {}, dropped {}", report.delivered, report.dropped)
}

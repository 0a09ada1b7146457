//! The NATS bridge's threads: a bridge runs exactly two, and `close` joins them, also while an
//! import waits on a full local queue. In a file of its own so that no other test's bridge runs
//! in the same process.
#![cfg(feature = "nats")]

#[path = "support/nats_server.rs"]
mod nats_server;

use std::collections::BTreeMap;

use nats_server::NatsServer;

mod common;
use common::{export_bridge, stuck_import, wait_until};
use syncmq::{Bridge, Broker, DEFAULT_CLOSE_TIMEOUT};

/// The bridge's threads, as named (both fit Linux's 15-byte limit on thread names).
const THREADS: [&str; 2] = ["syncmq-bridge", "syncmq-export"];

#[test]
#[cfg_attr(not(target_os = "linux"), ignore = "reads thread names from /proc")]
fn a_bridge_runs_two_threads_and_close_joins_them() {
    let server = NatsServer::start();
    let broker = Broker::<String>::new();
    assert_eq!(bridge_threads(), [0, 0]);
    let bridge = Bridge::builder(&broker, &server.url())
        .export("a.>")
        .import("b.>")
        .build()
        .unwrap();
    assert_threads([1, 1], "running");
    bridge.close();
    assert_eq!(bridge_threads(), [0, 0], "joined by close");

    // Dropping does the same.
    let bridge = export_bridge(&broker, &server.url(), "a.>");
    assert_threads([1, 1], "running");
    drop(bridge);
    assert_eq!(bridge_threads(), [0, 0], "joined by drop");

    // Also while an import waits on a full local queue: its subscriber has room for one
    // message and never reads, and a second bridge exports two messages to it. When
    // `stuck_import` returns, the second import's publish has started: from then on it waits
    // on the full queue until the close, though it may not be blocked yet.
    let stuck = stuck_import(&server.url(), Broker::builder(), 1, DEFAULT_CLOSE_TIMEOUT);
    assert_threads([2, 2], "two bridges running");
    stuck.importing.close();
    assert_eq!(
        bridge_threads(),
        [1, 1],
        "joined by close with an import stuck on the full queue"
    );
    drop(stuck.exporting);
    assert_eq!(bridge_threads(), [0, 0]);
}

/// Waits (bounded by `common::PATIENCE`) until the bridge threads are `expected`: a new thread
/// names itself once it runs, which may be a moment after `build` returned.
#[track_caller]
fn assert_threads(expected: [usize; 2], when: &str) {
    wait_until(
        &format!("{when}: the bridge threads are {expected:?}"),
        || bridge_threads() == expected,
    );
}

/// How many threads of this process have each name of [`THREADS`].
fn bridge_threads() -> [usize; 2] {
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        if let Ok(name) = std::fs::read_to_string(task.path().join("comm")) {
            *names.entry(name.trim().to_string()).or_default() += 1;
        }
    }
    THREADS.map(|name| names.get(name).copied().unwrap_or(0))
}

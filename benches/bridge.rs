//! Bridged throughput against the NATS client alone, so the bridge's overhead is a ratio.
//!
//! - `bridge/direct`: an async-nats client publishes a burst of messages to a subject that a
//!   second async-nats client subscribes to, on one tokio runtime: the baseline.
//! - `bridge/bridged`: a burst published into broker A, exported by A's bridge, imported by
//!   B's bridge, received from a subscription of broker B.
//!
//! Each iteration sends [`BURST`] messages of 64 bytes and waits until all have arrived. Both
//! use one `nats-server`, started on a free loopback port (see `tests/support/nats_server.rs`).
//!
//! ```text
//! cargo bench --features nats --bench bridge
//! ```

#![allow(
    missing_docs,
    reason = "criterion_group! generates an undocumented function"
)]

#[path = "../tests/support/nats_server.rs"]
mod nats_server;

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::StreamExt;
use nats_server::NatsServer;
use syncmq::{Bridge, Broker, Bytes, Overflow};

/// Messages per iteration.
const BURST: usize = 1000;

/// Bound on waiting for one message; a lost message fails the benchmark instead of hanging.
const PATIENCE: Duration = Duration::from_secs(10);

fn payload() -> Bytes {
    Bytes::from(vec![7u8; 64])
}

fn bench(c: &mut Criterion) {
    let server = NatsServer::start();
    let mut group = c.benchmark_group("bridge");
    group.throughput(Throughput::Elements(BURST as u64));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));

    // Baseline: the NATS client alone.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // async-nats spawns a task when a subscription is dropped: drop it inside the runtime.
    let _context = runtime.enter();
    let (publisher, _listener, mut subscriber) = runtime.block_on(async {
        let publisher = async_nats::connect(server.url()).await.unwrap();
        let listener = async_nats::connect(server.url()).await.unwrap();
        let subscriber = listener.subscribe("bench.direct").await.unwrap();
        listener.flush().await.unwrap();
        (publisher, listener, subscriber)
    });
    group.bench_function("direct", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                runtime.block_on(async {
                    for _ in 0..BURST {
                        publisher.publish("bench.direct", payload()).await.unwrap();
                    }
                    for _ in 0..BURST {
                        tokio::time::timeout(PATIENCE, subscriber.next())
                            .await
                            .expect("a message was lost")
                            .unwrap();
                    }
                });
            }
            start.elapsed()
        })
    });

    // Through two brokers and two bridges. Blocking queues, large enough for a burst: the
    // benchmark measures forwarding, not dropping.
    let broker = || {
        Broker::<Bytes>::builder()
            .capacity(4 * BURST)
            .overflow(Overflow::Block)
            .build()
    };
    let (a, b) = (broker(), broker());
    let _export = Bridge::builder(&a, &server.url())
        .export("bench.>")
        .export_capacity(4 * BURST)
        .export_overflow(Overflow::Block)
        .build()
        .unwrap();
    let _import = Bridge::builder(&b, &server.url())
        .import("bench.>")
        .build()
        .unwrap();
    let sub = b.subscribe("bench.>").unwrap();
    group.bench_function("bridged", |bencher| {
        bencher.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                for _ in 0..BURST {
                    a.publish("bench.bridged", payload()).unwrap();
                }
                for _ in 0..BURST {
                    sub.recv_timeout(PATIENCE).expect("a message was lost");
                }
            }
            start.elapsed()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

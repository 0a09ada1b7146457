//! Two brokers sharing subjects through a NATS server, as two processes on two machines
//! would; here both live in one process for the demo.
//!
//! ```text
//! nats-server -a 127.0.0.1 -p 4222 &
//! cargo run --release --features nats --example nats_bridge -- --url nats://127.0.0.1:4222
//! ```
//!
//! Each broker exports and imports `chat.>`, publishes a few messages, and prints what its
//! local subscriber received: its own messages and the other broker's, each exactly once.

use std::time::Duration;

use syncmq::{Bridge, Broker, Subscription};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = url_from_args()?;
    let east = Broker::<String>::new();
    let west = Broker::<String>::new();
    let bridge = |broker: &Broker<String>| {
        Bridge::builder(broker, &url)
            .export("chat.>")
            .import("chat.>")
            .build()
    };
    let east_bridge = bridge(&east)?;
    let west_bridge = bridge(&west)?;
    println!("both bridges connected to {url}");

    let east_sub = east.subscribe("chat.>")?;
    let west_sub = west.subscribe("chat.>")?;
    for i in 1..=3 {
        east.publish("chat.east", format!("hello from east #{i}"))?;
        west.publish("chat.west", format!("hello from west #{i}"))?;
    }

    // Each side expects its own three messages and the other side's three.
    print_received("east", &east_sub, 6);
    print_received("west", &west_sub, 6);

    for (name, bridge) in [("east", &east_bridge), ("west", &west_bridge)] {
        let stats = bridge.stats();
        println!(
            "{name} bridge: exported {}, imported {}, dropped {}, decode errors {}, reconnects {}",
            stats.exported,
            stats.imported,
            stats.dropped.total(),
            stats.decode_errors,
            stats.reconnects
        );
    }
    east_bridge.close();
    west_bridge.close();
    Ok(())
}

/// Prints up to `expected` messages from `sub`, waiting at most a few seconds for each.
fn print_received(name: &str, sub: &Subscription<String>, expected: usize) {
    println!("{name} received:");
    for _ in 0..expected {
        match sub.recv_timeout(Duration::from_secs(5)) {
            Ok(msg) => println!("  {msg}"),
            Err(_) => {
                println!("  (nothing more within 5 s)");
                return;
            }
        }
    }
}

/// `--url URL` (or `--url=URL`); defaults to `nats://127.0.0.1:4222`.
fn url_from_args() -> Result<String, String> {
    let mut url = "nats://127.0.0.1:4222".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--url" => url = args.next().ok_or("--url needs a value")?,
            other if other.starts_with("--url=") => url = other["--url=".len()..].to_string(),
            "-h" | "--help" => {
                println!("usage: nats_bridge [--url nats://127.0.0.1:4222]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(url)
}

//! Fan-out throughput: one thread publishing to many subscribers, each on its own thread.
//!
//! ```text
//! cargo run --release --example fanout -- --subscribers 1000 --messages 100000
//! cargo run --release --example fanout -- --help
//! ```
//!
//! Publishes `--messages` messages (`Arc<[u8; 64]>`) to one topic with `--subscribers`
//! subscribers, prints progress every second, then deliveries per second and drops. Then it runs
//! the raw baseline for the same shape (one thread sending to that many bounded
//! `crossbeam-channel` queues in turn, with `send`, `try_send` or `send_timeout` to match the
//! overflow policy) and prints the ratio. Each run is timed until every subscriber has received
//! everything it was sent.

use std::env;
use std::fmt;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use syncmq::{
    Broker, DEFAULT_CAPACITY, DEFAULT_DISPATCH_THRESHOLD, DEFAULT_SEND_TIMEOUT, Overflow,
};

const USAGE: &str = "\
Fan-out throughput of syncmq against raw crossbeam channels.

Usage: cargo run --release --example fanout -- [OPTIONS]

Options:
  --subscribers N          subscribers, each draining on its own thread [default: 100]
  --messages N             messages to publish to their topic [default: 100000]
  --capacity N             per-subscriber queue bound, 0 = rendezvous [default: 64]
  --overflow POLICY        block | drop | timeout-ms=N [default: timeout-ms=5]
  --workers N              dispatch threads at most, 0 = publish inline [default: CPUs]
  --dispatch-threshold N   subscribers from which a publish is striped [default: 1024]
  --no-baseline            skip the raw crossbeam-channel baseline
  -h, --help               print this help

Example:
  cargo run --release --example fanout -- --subscribers 1000 --messages 100000";

/// The message: a cheap-to-clone handle on a cache line of bytes.
type Payload = Arc<[u8; 64]>;

const TOPIC: &str = "fanout.bench";

/// Consumer threads only loop over `recv`: small stacks keep thousands of them cheap.
const CONSUMER_STACK: usize = 64 * 1024;

#[derive(Debug)]
struct Options {
    subscribers: usize,
    messages: u64,
    capacity: usize,
    overflow: Overflow,
    workers: Option<usize>,
    dispatch_threshold: Option<usize>,
    baseline: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            subscribers: 100,
            messages: 100_000,
            capacity: DEFAULT_CAPACITY,
            overflow: Overflow::Timeout(DEFAULT_SEND_TIMEOUT),
            workers: None,
            dispatch_threshold: None,
            baseline: true,
        }
    }
}

/// Parses the command line; `Ok(None)` means `--help`.
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Option<Options>, String> {
    let mut options = Options::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        // Accept both `--name value` and `--name=value`.
        let (name, inline_value) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name.to_owned(), Some(value.into())),
            _ => (arg.clone(), None),
        };
        let mut value = || -> Result<String, String> {
            inline_value
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(None),
            "--subscribers" => options.subscribers = number(&name, &value()?, 1)?,
            "--messages" => options.messages = number(&name, &value()?, 1)?,
            // Too large a capacity is reported by the broker's builder (`ConfigError`).
            "--capacity" => options.capacity = number(&name, &value()?, 0)?,
            "--overflow" => options.overflow = overflow(&value()?)?,
            "--workers" => options.workers = Some(number(&name, &value()?, 0)?),
            // The builder treats values below 2 as 2; refuse them rather than print a lie.
            "--dispatch-threshold" => {
                options.dispatch_threshold = Some(number(&name, &value()?, 2)?);
            }
            "--no-baseline" if inline_value.is_none() => options.baseline = false,
            "--no-baseline" => return Err("--no-baseline takes no value".into()),
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    Ok(Some(options))
}

fn number<N>(name: &str, value: &str, min: N) -> Result<N, String>
where
    N: TryFrom<u64> + PartialOrd + fmt::Display,
{
    let parsed: u64 = value
        .parse()
        .map_err(|_| format!("{name}: expected a whole number, got {value:?}"))?;
    let n = N::try_from(parsed).map_err(|_| format!("{name}: {value} is too large"))?;
    if n < min {
        return Err(format!("{name}: must be at least {min}, got {value}"));
    }
    Ok(n)
}

fn overflow(value: &str) -> Result<Overflow, String> {
    match value {
        "block" => Ok(Overflow::Block),
        "drop" => Ok(Overflow::Drop),
        _ => match value.strip_prefix("timeout-ms=") {
            Some(ms) => {
                let ms = number::<u64>("--overflow timeout-ms", ms, 0)?;
                Ok(Overflow::Timeout(Duration::from_millis(ms)))
            }
            None => Err(format!(
                "--overflow: expected block, drop or timeout-ms=N, got {value:?}"
            )),
        },
    }
}

/// Counters the publishing thread updates and the progress thread reads.
#[derive(Default)]
struct Progress {
    published: AtomicU64,
    delivered: AtomicU64,
}

/// What one run did.
struct Outcome {
    /// From the first publish until every subscriber had received everything.
    elapsed: Duration,
    delivered: u64,
    dropped: u64,
    received: u64,
    /// Subscribers that missed at least one message.
    lossy_subscribers: usize,
}

impl Outcome {
    fn rate(&self) -> f64 {
        self.delivered as f64 / self.elapsed.as_secs_f64()
    }
}

/// Prints a progress line every second until `stop` is dropped.
fn spawn_progress(
    name: &'static str,
    messages: u64,
    progress: Arc<Progress>,
    stop: Receiver<()>,
) -> JoinHandle<()> {
    thread::spawn(move || {
        let start = Instant::now();
        while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(Duration::from_secs(1)) {
            let published = progress.published.load(Ordering::Relaxed);
            let delivered = progress.delivered.load(Ordering::Relaxed);
            let secs = start.elapsed().as_secs_f64();
            println!(
                "  [{name}] {secs:5.1} s  {:3}%  {published}/{messages} published, \
                 {:.2} M deliveries/s so far",
                published * 100 / messages,
                delivered as f64 / secs / 1e6,
            );
        }
    })
}

fn spawn_consumer<F>(index: usize, body: F) -> Result<JoinHandle<(u64, u64)>, String>
where
    F: FnOnce() -> (u64, u64) + Send + 'static,
{
    thread::Builder::new()
        .name(format!("subscriber-{index}"))
        .stack_size(CONSUMER_STACK)
        .spawn(body)
        .map_err(|err| {
            format!("cannot spawn subscriber thread {index}: {err} (try fewer --subscribers)")
        })
}

/// Joins the consumers; each returns (received, dropped).
fn join_consumers(consumers: Vec<JoinHandle<(u64, u64)>>) -> (u64, u64, usize) {
    let mut received = 0;
    let mut dropped = 0;
    let mut lossy = 0;
    for consumer in consumers {
        let (got, missed) = consumer.join().expect("subscriber thread panicked");
        received += got;
        dropped += missed;
        lossy += usize::from(missed > 0);
    }
    (received, dropped, lossy)
}

fn run_syncmq(options: &Options) -> Result<(Outcome, usize), String> {
    let mut builder = Broker::<Payload>::builder()
        .capacity(options.capacity)
        .overflow(options.overflow);
    if let Some(workers) = options.workers {
        builder = builder.workers(workers);
    }
    if let Some(threshold) = options.dispatch_threshold {
        builder = builder.dispatch_threshold(threshold);
    }
    let broker = builder.try_build().map_err(|err| err.to_string())?;

    let mut consumers = Vec::with_capacity(options.subscribers);
    for index in 0..options.subscribers {
        let sub = broker.subscribe(TOPIC).map_err(|err| err.to_string())?;
        let spawned = spawn_consumer(index, move || {
            let received = sub.iter().count() as u64;
            (received, sub.dropped())
        });
        match spawned {
            Ok(consumer) => consumers.push(consumer),
            Err(err) => {
                broker.close();
                join_consumers(consumers);
                return Err(err);
            }
        }
    }

    let progress = Arc::new(Progress::default());
    let (stop, stopped) = crossbeam_channel::bounded(0);
    let reporter = spawn_progress("syncmq", options.messages, progress.clone(), stopped);
    let msg: Payload = Arc::new([7; 64]);
    let (mut delivered, mut dropped) = (0u64, 0u64);

    let start = Instant::now();
    for n in 1..=options.messages {
        let report = broker
            .publish(TOPIC, msg.clone())
            .map_err(|err| err.to_string())?;
        delivered += report.delivered as u64;
        dropped += report.dropped as u64;
        progress.published.store(n, Ordering::Relaxed);
        progress.delivered.store(delivered, Ordering::Relaxed);
    }
    // Closing lets every subscriber drain its queue and end; joining waits for that.
    let stats = broker.stats();
    broker.close();
    let (received, subscriber_dropped, lossy_subscribers) = join_consumers(consumers);
    let elapsed = start.elapsed();
    drop(stop);
    reporter.join().expect("progress thread panicked");

    // Every drop is counted in the reports, the stats and by the subscribers alike.
    assert_eq!((stats.delivered, stats.dropped), (delivered, dropped));
    assert_eq!(subscriber_dropped, dropped);
    assert_eq!(received, delivered);
    let outcome = Outcome {
        elapsed,
        delivered,
        dropped,
        received,
        lossy_subscribers,
    };
    Ok((outcome, stats.dispatch_threads))
}

fn run_crossbeam(options: &Options) -> Result<Outcome, String> {
    let mut senders: Vec<Sender<Payload>> = Vec::with_capacity(options.subscribers);
    let mut consumers = Vec::with_capacity(options.subscribers);
    for index in 0..options.subscribers {
        let (sender, receiver) = crossbeam_channel::bounded::<Payload>(options.capacity);
        senders.push(sender);
        match spawn_consumer(index, move || (receiver.iter().count() as u64, 0)) {
            Ok(consumer) => consumers.push(consumer),
            Err(err) => {
                drop(senders);
                join_consumers(consumers);
                return Err(err);
            }
        }
    }

    let progress = Arc::new(Progress::default());
    let (stop, stopped) = crossbeam_channel::bounded(0);
    let reporter = spawn_progress("crossbeam", options.messages, progress.clone(), stopped);
    let msg: Payload = Arc::new([7; 64]);
    let (mut delivered, mut dropped) = (0u64, 0u64);
    // The straightforward loop: each send completes or gives up before the next starts.
    let send = |sender: &Sender<Payload>, msg: Payload| match options.overflow {
        Overflow::Block => sender.send(msg).is_ok(),
        Overflow::Timeout(timeout) => sender.send_timeout(msg, timeout).is_ok(),
        _ => !matches!(sender.try_send(msg), Err(TrySendError::Full(_))),
    };

    let start = Instant::now();
    for n in 1..=options.messages {
        for sender in &senders {
            if send(sender, msg.clone()) {
                delivered += 1;
            } else {
                dropped += 1;
            }
        }
        progress.published.store(n, Ordering::Relaxed);
        progress.delivered.store(delivered, Ordering::Relaxed);
    }
    drop(senders);
    let (received, _, _) = join_consumers(consumers);
    let elapsed = start.elapsed();
    drop(stop);
    reporter.join().expect("progress thread panicked");

    assert_eq!(received, delivered);
    Ok(Outcome {
        elapsed,
        delivered,
        dropped,
        received,
        lossy_subscribers: 0,
    })
}

fn print_outcome(name: &str, outcome: &Outcome) {
    println!(
        "{name}: {} deliveries in {:.3} s = {:.2} M deliveries/s; dropped {}; received {}",
        outcome.delivered,
        outcome.elapsed.as_secs_f64(),
        outcome.rate() / 1e6,
        outcome.dropped,
        outcome.received,
    );
}

fn main() -> ExitCode {
    let options = match parse_args(env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!("error: {err}\n\nRun with --help for usage.");
            return ExitCode::from(2);
        }
    };
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "fan-out: {} subscribers x {} messages, capacity {}, overflow {:?}, workers {}, \
         dispatch threshold {}, {cpus} CPUs",
        options.subscribers,
        options.messages,
        options.capacity,
        options.overflow,
        options
            .workers
            .map_or_else(|| "default".to_owned(), |w| w.to_string()),
        options
            .dispatch_threshold
            .unwrap_or(DEFAULT_DISPATCH_THRESHOLD),
    );

    let (broker, dispatch_threads) = match run_syncmq(&options) {
        Ok(result) => result,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    print_outcome("syncmq   ", &broker);
    println!(
        "          subscribers that missed at least one message: {}; dispatch threads used: {dispatch_threads}",
        broker.lossy_subscribers
    );
    if !options.baseline {
        return ExitCode::SUCCESS;
    }
    let baseline = match run_crossbeam(&options) {
        Ok(outcome) => outcome,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    print_outcome("crossbeam", &baseline);
    println!(
        "syncmq / crossbeam: {:.2}x deliveries/s",
        broker.rate() / baseline.rate()
    );
    ExitCode::SUCCESS
}

//! `magnetar perf produce|consume`, like pulsar-perf: a fixed or unlimited
//! rate over several topics and producers, with msg/s, MB/s and publish
//! latency percentiles (HDR histogram) every few seconds and a summary at
//! the end (`--json` makes the summary one JSON line for scripts).

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::{Args, Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use magnetar_client::{
    ConsumerOptions, InitialPosition, OutgoingMessage, ProducerOptions, SubscriptionType,
};
use tokio::sync::mpsc;

#[derive(Subcommand, Debug)]
pub enum PerfCli {
    /// Publish as fast as allowed and report throughput and latency.
    Produce(ProduceArgs),
    /// Consume (and ack) and report throughput and end-to-end latency.
    Consume(ConsumeArgs),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Compression {
    None,
    Lz4,
    Zlib,
    Zstd,
    Snappy,
}

#[derive(Args, Debug)]
pub struct ProduceArgs {
    /// Topic name; with `--topics N > 1`, `-0`, `-1`, ... are appended.
    topic: String,
    #[arg(long, default_value = "pulsar://127.0.0.1:6650")]
    url: String,
    /// Token for a broker with authentication on.
    #[arg(long, env = "MAGNETAR_TOKEN")]
    token: Option<String>,
    #[command(flatten)]
    tls: crate::client_cli::TlsArgs,
    #[arg(long, default_value_t = 1)]
    topics: usize,
    /// Producers per topic.
    #[arg(long, default_value_t = 1)]
    producers: usize,
    /// Producers being created at once.
    #[arg(long, default_value_t = 64)]
    create_concurrency: usize,
    /// Also subscribe one consumer per topic (Shared, subscription `perf`)
    /// that receives and acknowledges everything produced.
    #[arg(long)]
    consume: bool,
    /// Total messages per second (0 = as fast as possible).
    #[arg(short, long, default_value_t = 0)]
    rate: u64,
    /// Message size in bytes.
    #[arg(short, long, default_value_t = 1024)]
    size: usize,
    /// Stop after this many seconds.
    #[arg(short, long, default_value_t = 30)]
    duration: u64,
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    batching: bool,
    #[arg(long, default_value_t = 1000)]
    batch_max_messages: usize,
    #[arg(long, default_value_t = 1)]
    batch_delay_ms: u64,
    #[arg(long, value_enum, default_value = "none")]
    compression: Compression,
    /// Unacknowledged messages per producer.
    #[arg(long, default_value_t = 5000)]
    max_pending: usize,
    /// Seconds between progress lines.
    #[arg(long, default_value_t = 5)]
    interval: u64,
    /// Print the summary as one JSON line.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct ConsumeArgs {
    topic: String,
    #[arg(long, default_value = "pulsar://127.0.0.1:6650")]
    url: String,
    /// Token for a broker with authentication on.
    #[arg(long, env = "MAGNETAR_TOKEN")]
    token: Option<String>,
    #[command(flatten)]
    tls: crate::client_cli::TlsArgs,
    #[arg(long, default_value_t = 1)]
    topics: usize,
    #[arg(short, long, default_value = "perf")]
    subscription: String,
    #[arg(short, long, default_value_t = 30)]
    duration: u64,
    #[arg(long, default_value_t = 1000)]
    receiver_queue: u32,
    #[arg(long, default_value_t = 5)]
    interval: u64,
    #[arg(long)]
    json: bool,
}

pub async fn run(cli: PerfCli) -> ExitCode {
    let r = match cli {
        PerfCli::Produce(a) => produce(a).await,
        PerfCli::Consume(a) => consume(a).await,
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn topic_names(base: &str, n: usize) -> Vec<String> {
    if n <= 1 {
        vec![base.to_string()]
    } else {
        (0..n).map(|i| format!("{base}-{i}")).collect()
    }
}

fn histogram() -> Histogram<u64> {
    // Microseconds, 1 µs .. 10 min, 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// Counters shared by the workers and the reporter.
struct Meter {
    messages: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    interval: Mutex<Histogram<u64>>,
    total: Mutex<Histogram<u64>>,
}

impl Meter {
    fn new() -> Arc<Meter> {
        Arc::new(Meter {
            messages: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            interval: Mutex::new(histogram()),
            total: Mutex::new(histogram()),
        })
    }

    fn record(&self, bytes: usize, latency: Duration) {
        self.messages.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        let us = (latency.as_micros() as u64).clamp(1, 600_000_000);
        if let Ok(mut h) = self.interval.lock() {
            let _ = h.record(us);
        }
        if let Ok(mut h) = self.total.lock() {
            let _ = h.record(us);
        }
    }
}

/// Latency percentiles in milliseconds, from a histogram of microseconds.
struct Latency {
    p50: f64,
    p95: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Latency {
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Latency {
            p50: ms(0.5),
            p95: ms(0.95),
            p99: ms(0.99),
            p999: ms(0.999),
            max: h.max() as f64 / 1000.0,
        }
    }
}

impl std::fmt::Display for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "latency ms p50 {:.2} p95 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}",
            self.p50, self.p95, self.p99, self.p999, self.max
        )
    }
}

/// Prints a progress line every `every` (until the task is aborted).
async fn reporter(meter: Arc<Meter>, every: Duration, what: &'static str) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    let (mut last_msgs, mut last_bytes, mut last_at) = (0u64, 0u64, Instant::now());
    loop {
        tick.tick().await;
        let msgs = meter.messages.load(Ordering::Relaxed);
        let bytes = meter.bytes.load(Ordering::Relaxed);
        let dt = last_at.elapsed().as_secs_f64();
        let h = match meter.interval.lock() {
            Ok(mut h) => {
                let copy = h.clone();
                h.reset();
                copy
            }
            Err(_) => continue,
        };
        println!(
            "{what}: {:>10.0} msg/s {:>8.2} MB/s | {} | errors {}",
            (msgs - last_msgs) as f64 / dt,
            (bytes - last_bytes) as f64 / dt / 1e6,
            Latency::of(&h),
            meter.errors.load(Ordering::Relaxed),
        );
        (last_msgs, last_bytes, last_at) = (msgs, bytes, Instant::now());
    }
}

fn summary(meter: &Meter, elapsed: Duration, what: &str, json: bool) {
    let msgs = meter.messages.load(Ordering::Relaxed);
    let bytes = meter.bytes.load(Ordering::Relaxed);
    let secs = elapsed.as_secs_f64();
    let h = meter
        .total
        .lock()
        .map(|h| h.clone())
        .unwrap_or_else(|_| histogram());
    let (rate, mbps) = (msgs as f64 / secs, bytes as f64 / secs / 1e6);
    let l = Latency::of(&h);
    let errors = meter.errors.load(Ordering::Relaxed);
    if json {
        println!(
            "{{\"messages\":{msgs},\"seconds\":{secs:.3},\"msg_per_sec\":{rate:.1},\"mb_per_sec\":{mbps:.3},\"p50_ms\":{:.3},\"p95_ms\":{:.3},\"p99_ms\":{:.3},\"p999_ms\":{:.3},\"max_ms\":{:.3},\"errors\":{errors}}}",
            l.p50, l.p95, l.p99, l.p999, l.max
        );
    } else {
        println!(
            "{what} summary: {msgs} messages in {secs:.1}s: {rate:.0} msg/s, {mbps:.2} MB/s | {l} | errors {errors}"
        );
    }
}

/// Waits for the workers, stops the progress lines and prints the summary.
async fn finish(
    workers: Vec<tokio::task::JoinHandle<()>>,
    report: tokio::task::JoinHandle<()>,
    meter: &Meter,
    start: Instant,
    what: &str,
    json: bool,
) {
    for w in workers {
        let _ = w.await;
    }
    let elapsed = start.elapsed();
    report.abort();
    summary(meter, elapsed, what, json);
}

async fn produce(a: ProduceArgs) -> anyhow::Result<()> {
    let client = crate::client_cli::connect(&a.url, a.token.clone(), &a.tls)?;
    let compression = match a.compression {
        Compression::None => magnetar_wire::CompressionType::None,
        Compression::Lz4 => magnetar_wire::CompressionType::Lz4,
        Compression::Zlib => magnetar_wire::CompressionType::Zlib,
        Compression::Zstd => magnetar_wire::CompressionType::Zstd,
        Compression::Snappy => magnetar_wire::CompressionType::Snappy,
    };
    let opts = ProducerOptions {
        batching: a.batching,
        batch_max_messages: a.batch_max_messages,
        batch_delay: Duration::from_millis(a.batch_delay_ms),
        compression,
        max_pending: a.max_pending,
        ..Default::default()
    };
    let setup = Instant::now();
    let consumers = if a.consume {
        Some(spawn_consumers(&client, &a).await?)
    } else {
        None
    };
    let producers = create_producers(&client, &a, &opts).await?;
    let secs = setup.elapsed().as_secs_f64();
    eprintln!(
        "set up {} producers{} on {} topics in {secs:.1} s ({:.0} topics/s)",
        producers.len(),
        if a.consume { " and consumers" } else { "" },
        a.topics,
        a.topics as f64 / secs.max(1e-9)
    );
    let meter = Meter::new();
    let report = tokio::spawn(reporter(
        meter.clone(),
        Duration::from_secs(a.interval.max(1)),
        "produce",
    ));
    let payload = Bytes::from(vec![b'm'; a.size]);
    let per_producer_rate = a.rate as f64 / producers.len() as f64;
    let start = Instant::now();
    let end = start + Duration::from_secs(a.duration);
    let mut workers = Vec::new();
    let count = producers.len();
    for (i, p) in producers.into_iter().enumerate() {
        let meter = meter.clone();
        let payload = payload.clone();
        let max_pending = a.max_pending;
        // Producer i sends at phase i/count of its period, so the total rate
        // is spread evenly over time: without it every producer's k-th send
        // fell due at one instant, and with thousands of topics the tool
        // measured the queueing of its own bursts (one message per topic at
        // once), not the broker.
        let phase = i as f64 / count as f64;
        workers.push(tokio::spawn(async move {
            // Receipts arrive in order, so one task awaits them in order.
            let (tx, mut rx) = mpsc::channel(max_pending.max(1));
            let collector = {
                let meter = meter.clone();
                tokio::spawn(async move {
                    while let Some((sent_at, size, receipt)) = rx.recv().await {
                        let receipt: std::pin::Pin<
                            Box<
                                dyn std::future::Future<
                                        Output = magnetar_client::Result<
                                            magnetar_client::MessageId,
                                        >,
                                    > + Send,
                            >,
                        > = receipt;
                        match receipt.await {
                            Ok(_) => meter.record(size, Instant::elapsed(&sent_at)),
                            Err(_) => {
                                meter.errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                })
            };
            let mut sent = 0u64;
            while Instant::now() < end {
                if per_producer_rate > 0.0 {
                    let due =
                        start + Duration::from_secs_f64((sent as f64 + phase) / per_producer_rate);
                    if due >= end {
                        break;
                    }
                    if due > Instant::now() {
                        tokio::time::sleep_until(due.into()).await;
                    }
                }
                let sent_at = Instant::now();
                match p.send_async(OutgoingMessage::new(payload.clone())).await {
                    Ok(receipt) => {
                        if tx
                            .send((sent_at, payload.len(), Box::pin(receipt) as _))
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                    Err(e) => {
                        eprintln!("send failed: {e}");
                        meter.errors.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
                sent += 1;
            }
            drop(tx);
            let _ = collector.await;
            let _ = p.close().await;
        }));
    }
    finish(workers, report, &meter, start, "produce", a.json).await;
    if let Some((consumed, tasks)) = consumers {
        // The consumers stop once everything produced is in, or after a grace.
        let produced = meter.messages.load(Ordering::Relaxed);
        let grace = Instant::now() + Duration::from_secs(10);
        while consumed.load(Ordering::Relaxed) < produced && Instant::now() < grace {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for t in tasks {
            t.abort();
        }
        let got = consumed.load(Ordering::Relaxed);
        if a.json {
            println!("{{\"produced\":{produced},\"consumed\":{got}}}");
        } else {
            println!("consumed {got} of {produced} acknowledged messages");
        }
    }
    client.close().await;
    Ok(())
}

/// One consumer per topic, subscribed (concurrently) before producing starts,
/// each receiving and acknowledging in a task of its own; the counter counts
/// what they received.
async fn spawn_consumers(
    client: &magnetar_client::Client,
    a: &ProduceArgs,
) -> anyhow::Result<(Arc<AtomicU64>, Vec<tokio::task::JoinHandle<()>>)> {
    use futures::{StreamExt, TryStreamExt};
    let consumers: Vec<_> = futures::stream::iter(topic_names(&a.topic, a.topics))
        .map(|t| async move {
            let opts = ConsumerOptions {
                subscription_type: SubscriptionType::Shared,
                initial_position: InitialPosition::Latest,
                ..Default::default()
            };
            client
                .subscribe(&t, "perf", opts)
                .await
                .with_context(|| format!("subscribing to {t}"))
        })
        .buffered(a.create_concurrency.max(1))
        .try_collect()
        .await?;
    let consumed = Arc::new(AtomicU64::new(0));
    let tasks = consumers
        .into_iter()
        .map(|mut c| {
            let consumed = consumed.clone();
            tokio::spawn(async move {
                while let Ok(m) = c.receive().await {
                    consumed.fetch_add(1, Ordering::Relaxed);
                    if c.ack(&m.id).is_err() {
                        break;
                    }
                }
            })
        })
        .collect();
    Ok((consumed, tasks))
}

/// Creates every producer, `--create-concurrency` at a time (with thousands
/// of topics, one at a time would measure round trips, not the broker).
async fn create_producers(
    client: &magnetar_client::Client,
    a: &ProduceArgs,
    opts: &ProducerOptions,
) -> anyhow::Result<Vec<magnetar_client::Producer>> {
    use futures::{StreamExt, TryStreamExt};
    let names: Vec<String> = topic_names(&a.topic, a.topics)
        .into_iter()
        .flat_map(|t| std::iter::repeat_n(t, a.producers.max(1)))
        .collect();
    let producers: Vec<_> = futures::stream::iter(names)
        .map(|t| async move {
            client
                .create_producer(&t, opts.clone())
                .await
                .with_context(|| format!("creating a producer on {t}"))
        })
        .buffered(a.create_concurrency.max(1))
        .try_collect()
        .await?;
    Ok(producers)
}

async fn consume(a: ConsumeArgs) -> anyhow::Result<()> {
    let client = crate::client_cli::connect(&a.url, a.token.clone(), &a.tls)?;
    let meter = Meter::new();
    let report = tokio::spawn(reporter(
        meter.clone(),
        Duration::from_secs(a.interval.max(1)),
        "consume",
    ));
    let start = Instant::now();
    let end = start + Duration::from_secs(a.duration);
    let mut workers = Vec::new();
    for t in topic_names(&a.topic, a.topics) {
        let opts = ConsumerOptions {
            subscription_type: SubscriptionType::Shared,
            initial_position: InitialPosition::Earliest,
            receiver_queue: a.receiver_queue,
            ..Default::default()
        };
        let mut c = client
            .subscribe(&t, &a.subscription, opts)
            .await
            .with_context(|| format!("subscribing to {t}"))?;
        let meter = meter.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let left = end.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                match c.receive_timeout(left).await {
                    Ok(Some(m)) => {
                        let now_ms = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_millis() as u64);
                        let e2e = Duration::from_millis(now_ms.saturating_sub(m.publish_time));
                        meter.record(m.payload.len(), e2e);
                        if c.ack(&m.id).is_err() {
                            meter.errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        eprintln!("receive failed: {e}");
                        meter.errors.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
            let _ = c.close().await;
        }));
    }
    finish(workers, report, &meter, start, "consume", a.json).await;
    client.close().await;
    Ok(())
}

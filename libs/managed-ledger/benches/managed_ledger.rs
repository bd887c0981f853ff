//! `make bench-managed-ledger`: append + tail-read throughput of managed ledgers
//! for 1 topic and for 1,000 topics on a loopback cluster (1 metadata node, 3
//! bookies, E=3 Qw=Qa=2), beside the raw ledger append rate measured in the
//! same run; memory per idle topic and per cursor. Writes docs/BENCHMARKS.md.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use magnetar_ledger::{LedgerClient, LedgerClientConfig};
use magnetar_managed_ledger::{
    FactoryConfig, InitialPosition, ManagedLedger, ManagedLedgerConfig, ManagedLedgerFactory,
};
use magnetar_meta_client::{ClientConfig, MetaClient};
use magnetar_testkit::BookieCluster;

const RUN: Duration = Duration::from_secs(10);
const ENTRY: usize = 1024;

fn ml_config() -> ManagedLedgerConfig {
    ManagedLedgerConfig {
        ensemble_size: 3,
        write_quorum: 2,
        ack_quorum: 2,
        ..Default::default()
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Resident memory of this process in bytes.
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// The limit: raw ledger appends of the same size and quorum, same window.
async fn raw_ledger_rate(c: &LedgerClient, window: usize) -> f64 {
    let w = c.create(3, 2, 2, b"bench").await.expect("create ledger");
    let payload = vec![7u8; ENTRY];
    let start = Instant::now();
    let mut in_flight = VecDeque::new();
    let mut done = 0u64;
    while start.elapsed() < RUN {
        in_flight.push_back(w.start_append(payload.clone()).expect("append"));
        if in_flight.len() >= window {
            in_flight.pop_front().unwrap().wait().await.expect("append");
            done += 1;
        }
    }
    for p in in_flight {
        p.wait().await.expect("append");
        done += 1;
    }
    let rate = done as f64 / start.elapsed().as_secs_f64();
    let _ = w.close().await;
    rate
}

struct Outcome {
    appended_per_sec: f64,
    read_per_sec: f64,
    /// Publish-to-read latency of tailing readers.
    e2e_p50_ms: f64,
    e2e_p99_ms: f64,
}

/// Appends round-robin over `topics` with `window` appends in flight overall;
/// one tailing cursor per topic reads and acks as entries arrive.
async fn run(topics: &[ManagedLedger], window: usize) -> Outcome {
    let mut readers = Vec::new();
    let stop_at = Instant::now() + RUN;
    for ml in topics {
        let cursor = ml
            .open_cursor("bench", InitialPosition::Latest)
            .await
            .expect("cursor");
        readers.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
            let mut n = 0u64;
            let deadline = stop_at + Duration::from_secs(10);
            while Instant::now() < deadline {
                let batch = cursor
                    .read_entries_or_wait(1_000, Duration::from_millis(200))
                    .await
                    .expect("read");
                let Some(last) = batch.last() else {
                    if Instant::now() > stop_at + Duration::from_millis(500) {
                        break;
                    }
                    continue;
                };
                let now_us = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_micros() as u64);
                for e in &batch {
                    let sent_us = u64::from_be_bytes(e.data[..8].try_into().unwrap());
                    hist.record(now_us.saturating_sub(sent_us).max(1)).unwrap();
                }
                n += batch.len() as u64;
                cursor.ack_cumulative(last.position).expect("ack");
            }
            (n, hist)
        }));
    }
    let start = Instant::now();
    let mut in_flight = VecDeque::new();
    let mut appended = 0u64;
    let mut i = 0usize;
    while start.elapsed() < RUN {
        let mut payload = vec![7u8; ENTRY];
        let sent_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        payload[..8].copy_from_slice(&sent_us.to_be_bytes());
        in_flight.push_back(topics[i % topics.len()].append(&payload, now_ms()));
        i += 1;
        if in_flight.len() >= window {
            in_flight.pop_front().unwrap().await.expect("append");
            appended += 1;
        }
    }
    for f in in_flight {
        f.await.expect("append");
        appended += 1;
    }
    let append_secs = start.elapsed().as_secs_f64();
    let mut read = 0u64;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    for r in readers {
        let (n, h) = r.await.expect("reader");
        read += n;
        hist.add(h).unwrap();
    }
    let read_secs = start.elapsed().as_secs_f64();
    assert_eq!(read, appended, "every appended entry is read once");
    Outcome {
        appended_per_sec: appended as f64 / append_secs,
        read_per_sec: read as f64 / read_secs,
        e2e_p50_ms: hist.value_at_quantile(0.5) as f64 / 1000.0,
        e2e_p99_ms: hist.value_at_quantile(0.99) as f64 / 1000.0,
    }
}

async fn open_many(f: &ManagedLedgerFactory, prefix: &str, n: usize) -> Vec<ManagedLedger> {
    let mut out = Vec::with_capacity(n);
    let mut opening = futures::stream::FuturesOrdered::new();
    for i in 0..n {
        let f = f.clone();
        let name = format!("bench/ns/{prefix}-{i}");
        opening.push_back(async move { f.open(&name, ml_config()).await.expect("open") });
        if opening.len() >= 32 {
            out.push(futures::StreamExt::next(&mut opening).await.unwrap());
        }
    }
    while let Some(ml) = futures::StreamExt::next(&mut opening).await {
        out.push(ml);
    }
    out
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let cluster = BookieCluster::start(1, 3);
    cluster.wait_ready(Duration::from_secs(30)).await;
    magnetar_testkit::bench_report::write_back_dirty_pages();
    let meta = MetaClient::new(ClientConfig::from_list(&cluster.meta.endpoints())).unwrap();
    let ledgers = LedgerClient::new(meta.clone(), LedgerClientConfig::default());
    while ledgers.available_bookies().await.map_or(0, |b| b.len()) < 3 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let f = ManagedLedgerFactory::new(meta, ledgers.clone(), FactoryConfig::default());

    // Memory first, before other runs leave freed heap pages behind for
    // these allocations to reuse: 1,000 idle topics, then a cursor on each.
    let before = rss_bytes();
    let many = open_many(&f, "many", 1_000).await;
    let after_topics = rss_bytes();
    for ml in &many {
        ml.open_cursor("idle", InitialPosition::Latest)
            .await
            .expect("cursor");
    }
    let after_cursors = rss_bytes();
    let per_topic = after_topics.saturating_sub(before) as f64 / 1_000.0;
    let per_cursor = after_cursors.saturating_sub(after_topics) as f64 / 1_000.0;
    eprintln!("memory: {per_topic:.0} B per idle topic, {per_cursor:.0} B per cursor");

    let window = 1_000;
    let raw = raw_ledger_rate(&ledgers, window).await;
    eprintln!("raw ledger: {raw:.0} entries/s");
    let one = open_many(&f, "one", 1).await;
    let single = run(&one, window).await;
    eprintln!("1 topic: {:.0} appends/s", single.appended_per_sec);
    let thousand = run(&many, window).await;
    eprintln!("1000 topics: {:.0} appends/s", thousand.appended_per_sec);
    f.shutdown().await;

    let row = |name: &str, o: &Outcome| {
        format!(
            "| {name} | {:.0} | {:.0} | {:.2} | {:.1} / {:.1} |\n",
            o.appended_per_sec,
            o.read_per_sec,
            o.appended_per_sec / raw,
            o.e2e_p50_ms,
            o.e2e_p99_ms
        )
    };
    let section = format!(
        "## Managed ledgers: append + tail read (`make bench-managed-ledger`)\n\n- date: {}\n- machine: {}\n- command: `make bench-managed-ledger` (release build; 1 `magnetar-meta`, 3 `magnetar-bookie` on loopback sharing one disk, journal fsync on; managed ledgers E=3 Qw=Qa=2 in the bench process; {} B entries, {window} appends in flight overall, one tailing cursor per topic reading and acking; {}s per run)\n- limit measured in the same run: raw ledger appends, same quorum, size and window = {raw:.0} entries/s\n\n\
| topics | appends/s | tail reads/s | appends ÷ raw ledger appends | publish→read p50 / p99 (ms) |\n|---|---|---|---|---|\n{}{}\n\
Memory (process RSS growth): {per_topic:.0} B per idle topic (open managed ledger with its open ledger), {per_cursor:.0} B per cursor.\n\n",
        magnetar_testkit::bench_report::now_utc(),
        magnetar_testkit::bench_report::machine(),
        ENTRY,
        RUN.as_secs(),
        row("1", &single),
        row("1,000", &thousand),
    );
    let doc = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/BENCHMARKS.md");
    magnetar_testkit::bench_report::write_section(&doc, "bench-managed-ledger", &section)
        .expect("write docs/BENCHMARKS.md");
    print!("{section}");
}

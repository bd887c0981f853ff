//! `make bench-ledger`: ledger append throughput and latency on a loopback
//! cluster (1 metadata node, 3 bookies, journal fsync on), beside the disk's raw
//! fsync bandwidth measured in the same run. Writes docs/BENCHMARKS.md.

use std::time::{Duration, Instant};

use futures::StreamExt;
use hdrhistogram::Histogram;
use magnetar_ledger::{LedgerClient, LedgerClientConfig};
use magnetar_meta_client::{ClientConfig, MetaClient};
use magnetar_testkit::bench_report::{CpuPressure, CpuTicks};
use magnetar_testkit::{http, BookieCluster};

const RUN: Duration = Duration::from_secs(10);
/// The journal's batch time (write + fdatasync), a bookie histogram.
const SYNC_LATENCY: &str = "magnetar_bookie_journal_sync_latency_seconds";
/// A batch slower than this is a device stall, not queueing: ~100 times the
/// disk's usual 4 KiB flush here, and a histogram bucket bound (50 µs × 2⁸).
const SLOW_BATCH: Duration = Duration::from_micros(12_800);

struct Outcome {
    /// All cores' busy share over the run, in percent.
    cpu_busy: f64,
    /// Share of the run during which some runnable thread waited for a core.
    cpu_waiting: Option<f64>,
    entries_per_sec: f64,
    mb_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Appends for `RUN` with `window` in flight, or at `rate` entries/s if given.
async fn run(
    c: &LedgerClient,
    (e, qw, qa): (usize, usize, usize),
    size: usize,
    window: usize,
    rate: Option<f64>,
) -> Outcome {
    let w = c.create(e, qw, qa, b"bench").await.expect("create ledger");
    let payload = vec![7u8; size];
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let start = Instant::now();
    let cpu_before = CpuTicks::now();
    let pressure_before = CpuPressure::now();
    let append = |w: magnetar_ledger::LedgerWriter, payload: Vec<u8>| async move {
        let t = Instant::now();
        w.append(payload).await.expect("append");
        t.elapsed()
    };
    let mut n = 0u64;
    match rate {
        None => {
            let mut results = futures::stream::iter(0u64..)
                .take_while(|_| futures::future::ready(start.elapsed() < RUN))
                .map(|_| append(w.clone(), payload.clone()))
                .buffered(window);
            while let Some(lat) = results.next().await {
                hist.record(lat.as_micros() as u64).unwrap();
                n += 1;
            }
        }
        Some(rate) => {
            // One timer for the generator, not one per append: every
            // millisecond, the appends due by then start (tokio's timers
            // have that resolution either way). A sleeping future per append
            // cost the bench process as much CPU as the bookie it measured.
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut in_flight = futures::stream::FuturesUnordered::new();
            let mut started = 0u64;
            loop {
                tokio::select! {
                    _ = tick.tick(), if start.elapsed() < RUN => {
                        let due = (start.elapsed().as_secs_f64() * rate) as u64;
                        while started < due && in_flight.len() < window {
                            in_flight.push(append(w.clone(), payload.clone()));
                            started += 1;
                        }
                    }
                    Some(lat) = in_flight.next() => {
                        hist.record(lat.as_micros() as u64).unwrap();
                        n += 1;
                    }
                    else => break,
                }
                if start.elapsed() >= RUN && in_flight.is_empty() {
                    break;
                }
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu_busy = CpuTicks::now().busy_percent(&cpu_before);
    let cpu_waiting = pressure_before
        .zip(CpuPressure::now())
        .map(|(before, now)| now.stalled_percent(&before));
    w.close().await.expect("close");
    Outcome {
        cpu_busy,
        cpu_waiting,
        entries_per_sec: n as f64 / secs,
        mb_per_sec: n as f64 * size as f64 / secs / (1 << 20) as f64,
        p50_ms: hist.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: hist.value_at_quantile(0.99) as f64 / 1000.0,
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let cluster = BookieCluster::start(1, 3);
    cluster.wait_ready(Duration::from_secs(60)).await;
    let meta = MetaClient::new(ClientConfig::from_list(&cluster.meta.endpoints())).unwrap();
    let c = LedgerClient::new(meta, LedgerClientConfig::default());
    while c.available_bookies().await.map_or(0, |b| b.len()) < 3 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    magnetar_testkit::bench_report::write_back_dirty_pages();
    let fsync_mb = magnetar_testkit::bench_report::fsync_bandwidth(cluster.meta.dir.path());
    let mut rows = String::new();
    // MAGNETAR_BENCH_ROWS (e.g. "1x1,2x64") limits a run to some rows while
    // exploring: write quorum x entry KiB. The recorded table has all four.
    let rows_wanted = std::env::var("MAGNETAR_BENCH_ROWS").ok();
    for (name, q) in [("E=Qw=Qa=1", (1, 1, 1)), ("E=3 Qw=Qa=2", (3, 2, 2))] {
        for (size, window) in [(1024usize, 2048usize), (64 << 10, 256)] {
            let row = format!("{}x{}", q.1, size >> 10);
            if rows_wanted
                .as_deref()
                .is_some_and(|w| !w.split(',').any(|r| r == row))
            {
                continue;
            }
            // A window of one: the latency floor of the whole path (client,
            // network, bookie, journal fsync) with nothing queued anywhere.
            let alone = run(&c, q, size, 1, None).await;
            let max = run(&c, q, size, window, None).await;
            let before = cluster.metrics_of_all().await;
            let half = run(&c, q, size, window, Some(max.entries_per_sec / 2.0)).await;
            let after = cluster.metrics_of_all().await;
            // The same span of time again with the disk alone: the floor the
            // device sets under any journal's half-rate p99 right now.
            let dir = cluster.meta.dir.path().to_path_buf();
            let floor = tokio::task::spawn_blocking(move || {
                magnetar_testkit::bench_report::durability_floor(&dir, RUN)
            })
            .await
            .unwrap()
            .expect("disk probe");
            eprintln!(
                "{name} {} KiB disk alone: 4 KiB write+fdatasync p50 / p99 / max {:.2} / {:.2} / {:.1} ms",
                size >> 10,
                floor.flush_p50_ms,
                floor.flush_p99_ms,
                floor.flush_max_ms
            );
            // A bookie histogram's buckets (all bookies) before and after the
            // half-rate run.
            let buckets = |name: &str| {
                (
                    http::histogram_buckets(&before, name),
                    http::histogram_buckets(&after, name),
                )
            };
            // A bookie histogram's quantile over the half-rate run, in ms.
            let quantile_ms = |name: &str, q: f64| {
                let (b, a) = buckets(name);
                http::histogram_quantile(&b, &a, q).map(|s| s * 1e3)
            };
            let bookie_p99 =
                |name: &str| quantile_ms(name, 0.99).map_or("-".into(), |ms| format!("{ms:.2}"));
            // While exploring: the tails the table leaves out.
            let tail_ms = |name: &str, q: f64| quantile_ms(name, q).unwrap_or(f64::NAN);
            let slowest = |name: &str| {
                after
                    .iter()
                    .filter_map(|t| http::metric(t, name))
                    .fold(0.0f64, f64::max)
                    * 1e3
            };
            eprintln!(
                "{name} {} KiB: slowest journal batch / roll since start {:.1} / {:.1} ms",
                size >> 10,
                slowest("magnetar_bookie_journal_slowest_batch_seconds"),
                slowest("magnetar_bookie_journal_slowest_roll_seconds"),
            );
            eprintln!(
                "{name} {} KiB half max: bookie p50 add / until journaled / journal batch ≤ {:.2} / {:.2} / {:.2} ms",
                size >> 10,
                tail_ms("magnetar_bookie_add_latency_seconds", 0.5),
                tail_ms("magnetar_bookie_add_journal_latency_seconds", 0.5),
                tail_ms(SYNC_LATENCY, 0.5),
            );
            // An add's wait for the journal in three parts, at one quantile.
            let split = |q: f64| {
                ["add_queue", "journal_sync", "add_resume"]
                    .map(|m| {
                        format!(
                            "{:.2}",
                            tail_ms(&format!("magnetar_bookie_{m}_latency_seconds"), q)
                        )
                    })
                    .join(" / ")
            };
            eprintln!(
                "{name} {} KiB half max: add until its batch starts / batch / batch durable until the add runs again, p50 {}, p99 {}, p99.9 {} ms (≤)",
                size >> 10,
                split(0.5),
                split(0.99),
                split(0.999),
            );
            eprintln!(
                "{name} {} KiB half max: store p99 / p99.9 / p99.99 ≤ {:.2} / {:.2} / {:.2} ms; journaled p99.9 ≤ {:.2}; batch p99.9 ≤ {:.2}",
                size >> 10,
                tail_ms("magnetar_bookie_add_store_latency_seconds", 0.99),
                tail_ms("magnetar_bookie_add_store_latency_seconds", 0.999),
                tail_ms("magnetar_bookie_add_store_latency_seconds", 0.9999),
                tail_ms("magnetar_bookie_add_journal_latency_seconds", 0.999),
                tail_ms(SYNC_LATENCY, 0.999),
            );
            let (add_p99, journal_p99, sync_p99) = (
                bookie_p99("magnetar_bookie_add_latency_seconds"),
                bookie_p99("magnetar_bookie_add_journal_latency_seconds"),
                bookie_p99(SYNC_LATENCY),
            );
            // Device stalls: journal batches (write + fdatasync) far slower
            // than the disk's usual flush, in the half-rate run.
            let (b, a) = buckets(SYNC_LATENCY);
            let slow_batches = http::histogram_count_above(&b, &a, SLOW_BATCH.as_secs_f64());
            let waiting = half.cpu_waiting.map_or("-".into(), |p| format!("{p:.0}%"));
            let line = format!(
                "| {name} | {} KiB | {:.0} | {:.1} | {:.2} | {:.2} / {:.2} | {:.2} / {:.2} | {:.2} / {:.2} | ≤ {add_p99} / ≤ {journal_p99} / ≤ {sync_p99} | {:.2} / {:.2} | {:.0}% / {:.0}% | {waiting} / {slow_batches:.0} |\n",
                size >> 10,
                max.entries_per_sec,
                max.mb_per_sec,
                max.mb_per_sec / fsync_mb,
                alone.p50_ms,
                alone.p99_ms,
                max.p50_ms,
                max.p99_ms,
                half.p50_ms,
                half.p99_ms,
                floor.wait_p50_ms,
                floor.wait_p99_ms,
                max.cpu_busy,
                half.cpu_busy
            );
            print!("{line}");
            rows.push_str(&line);
        }
    }
    let date = magnetar_testkit::bench_report::now_utc();
    let section = format!(
        "## Ledger service: appends (`make bench-ledger`)\n\n- date: {date}\n- machine: {}\n- command: `make bench-ledger` (release build; 1 `magnetar-meta`, 3 `magnetar-bookie` on loopback sharing one disk, journal fsync on; the ledger client in the bench process; {}s per run)\n- disk: sequential 1 MiB write + fdatasync = {fsync_mb:.0} MB/s (same run, same filesystem)\n\n\
         | quorum | entry | entries/s (max) | MB/s | MB/s ÷ disk fsync MB/s | add p50 / p99 one at a time (ms) | add p50 / p99 at max (ms) | add p50 / p99 at half max (ms) | bookie: add / until journaled / journal batch p99 at half max (ms) | disk alone, next 10 s: wait for durability p50 / p99 (ms) | CPU busy at max / half max | at half max: some thread waiting for a core / journal batches over 12.8 ms |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n{rows}\n\
         Targets (issue): at Qw=1, 64 KiB entries ≥ 50% of the raw fsync bandwidth; add p99 ≤ 2 ms at half the maximum rate. \
         With E=3 all three bookies journal on the same disk, so each entry is fsynced Qw times on one device. \
         \"One at a time\" is 10 s of appends with a single one in flight, just before the row's runs: the path's latency with nothing queued anywhere. \
         The bookie column comes from the bookies' own histograms over the half-rate run (buckets √2 apart, so upper bounds): \
         an add's time inside the bookie, the part of it until its journal record was durable, and the journal writer's time per batch (write + fdatasync). \
         \"Disk alone\" runs right after the half-rate run, for as long, with the cluster idle: back-to-back 4 KiB write + fdatasync into a preallocated file; \
         for arrival instants spread evenly over it, the wait until the end of the first flush that starts after the instant \
         (a journal that group-commits waits for the flush in flight, then its own). No journal that keeps one flush in flight could acknowledge faster on this disk then; \
         its p99 beside the half-rate p99 says how much of that p99 is the device's. \
         CPU busy is all cores' busy share (user + system + irq, not iowait) over each run. \
         The last column is about the machine during the half-rate run: the share of its time during which at least one runnable thread of any process waited for a core \
         (the kernel's CPU pressure, `/proc/pressure/cpu`, \"some\"), and how many journal batches (write + fdatasync, all bookies) took over 12.8 ms, \
         which on this disk (usual flush 0.1–0.3 ms) is a device stall: every add queued behind one waits for it.\n\n",
        magnetar_testkit::bench_report::machine(),
        RUN.as_secs()
    );
    let doc = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/BENCHMARKS.md");
    magnetar_testkit::bench_report::write_section(&doc, "bench-ledger", &section)
        .expect("write docs/BENCHMARKS.md");
    println!("updated docs/BENCHMARKS.md");
}

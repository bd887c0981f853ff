//! `make bench-broker`: `magnetar perf produce` (a separate process, our
//! Rust client) against `magnetar standalone` and against a cluster of
//! separate processes (1 metadata node, 3 bookies, 1 broker; E=Qw=Qa=2),
//! journal fsync on, beside the disk's fsync bandwidth measured in the same
//! run. Every topic gets a subscription that never consumes, so the data
//! stays as backlog; the broker's memory is recorded after each run, and
//! 1 KiB runs go on until the backlog passes 10 GB.
//! Writes docs/BENCHMARKS.md.

use std::process::Command;
use std::time::Duration;

use magnetar_testkit::bench_report::{
    fsync_bandwidth, json_number, machine, now_utc, run_summary, write_section,
};
use magnetar_testkit::{bin_path, BrokerCluster, PulsarService, Standalone};

const RUN_SECS: u64 = 15;

struct Figures {
    msg_per_sec: f64,
    mb_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

/// A durable subscription that never consumes, so what is produced stays as
/// backlog (without one, retention deletes consumed-by-nobody ledgers).
fn hold_backlog(svc: &dyn PulsarService, topic: &str) {
    // It subscribes, waits a second for a message that is not there and exits.
    let _ = Command::new(bin_path("magnetar"))
        .args(["consume", topic, "--url", &svc.service_url()])
        .args([
            "--subscription",
            "backlog",
            "--num",
            "1",
            "--timeout-secs",
            "1",
        ])
        .output();
}

/// Runs `magnetar perf produce --json` and parses its summary line.
fn perf(svc: &dyn PulsarService, topic: &str, size: usize, rate: u64, topics: usize) -> Figures {
    if topics <= 1 {
        hold_backlog(svc, topic);
    } else {
        for i in 0..topics {
            hold_backlog(svc, &format!("{topic}-{i}"));
        }
    }
    let json = &run_summary(
        Command::new(bin_path("magnetar"))
            .args(["perf", "produce", topic, "--json", "--interval", "5"])
            .args(["--url", &svc.service_url()])
            .args(["--size", &size.to_string(), "--rate", &rate.to_string()])
            .args([
                "--topics",
                &topics.to_string(),
                "--duration",
                &RUN_SECS.to_string(),
            ]),
    );
    Figures {
        msg_per_sec: json_number(json, "msg_per_sec"),
        mb_per_sec: json_number(json, "mb_per_sec"),
        p50_ms: json_number(json, "p50_ms"),
        p99_ms: json_number(json, "p99_ms"),
        errors: json_number(json, "errors") as u64,
    }
}

fn rss_mib(pid: Option<u32>) -> f64 {
    pid.and_then(|p| std::fs::read_to_string(format!("/proc/{p}/statm")).ok())
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(f64::NAN, |pages| pages as f64 * 4096.0 / (1 << 20) as f64)
}

/// The backlog the issue bounds the broker's memory under.
const BACKLOG_GOAL_MB: f64 = 10_500.0;

/// The runs the issue names, as table rows, then more 1 KiB runs until the
/// unconsumed backlog passes `BACKLOG_GOAL_MB`, with the broker's RSS after
/// each run: bounded memory shows as RSS that stops growing while the
/// backlog keeps growing.
fn suite(name: &str, svc: &dyn PulsarService, broker_pid: Option<u32>, fsync_mb: f64) -> String {
    // (cumulative backlog in MB, broker RSS in MiB) after each run.
    let mut memory = vec![(0.0, rss_mib(broker_pid))];
    let run = |memory: &mut Vec<(f64, f64)>, topic: &str, size, rate, topics| {
        let f = perf(svc, topic, size, rate, topics);
        let backlog_mb = memory.last().map_or(0.0, |m| m.0) + f.mb_per_sec * RUN_SECS as f64;
        memory.push((backlog_mb, rss_mib(broker_pid)));
        f
    };
    let small = run(&mut memory, "bench-100b", 100, 0, 1);
    let large = run(&mut memory, "bench-1k", 1024, 0, 1);
    let half_rate = (large.msg_per_sec / 2.0) as u64;
    let half = run(&mut memory, "bench-1k-half", 1024, half_rate, 1);
    let many = run(&mut memory, "bench-1k-16", 1024, 0, 16);
    for i in 0..8 {
        if memory.last().map_or(0.0, |m| m.0) >= BACKLOG_GOAL_MB {
            break;
        }
        run(&mut memory, &format!("bench-fill-{i}"), 1024, 0, 1);
    }
    let row = |what: &str, f: &Figures| {
        format!(
            "| {name} | {what} | {:.0} | {:.1} | {:.2} | {:.2} / {:.2} | {} |\n",
            f.msg_per_sec,
            f.mb_per_sec,
            f.mb_per_sec / fsync_mb,
            f.p50_ms,
            f.p99_ms,
            f.errors
        )
    };
    let samples: Vec<String> = memory
        .iter()
        .map(|(mb, rss)| format!("{rss:.0} MiB at {:.1} GB", mb / 1000.0))
        .collect();
    format!(
        "{}{}{}{}| {name} | memory | broker RSS after each run, by unconsumed backlog: {} | | | | |\n",
        row("100 B, max rate, 1 topic", &small),
        row("1 KiB, max rate, 1 topic", &large),
        row("1 KiB, half the max rate", &half),
        row("1 KiB, max rate, 16 topics", &many),
        samples.join(", "),
    )
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let mut standalone = Standalone::start_with(&["--journal-sync", "true"]);
    standalone.wait_ready(Duration::from_secs(60)).await;
    magnetar_testkit::bench_report::write_back_dirty_pages();
    let fsync_mb = fsync_bandwidth(standalone.dir.path());
    eprintln!("disk: {fsync_mb:.0} MB/s with fdatasync per MiB");
    let pid = standalone.process.pid();
    let mut rows = suite("standalone", &standalone, pid, fsync_mb);
    drop(standalone);

    let mut cluster = BrokerCluster::start(1, 3, 1);
    cluster.wait_ready(Duration::from_secs(60)).await;
    let pid = cluster.brokers[0].process.pid();
    rows.push_str(&suite("3 bookies, Qw=Qa=2", &cluster, pid, fsync_mb));
    drop(cluster);

    let section = format!(
        "## Broker: `magnetar perf produce` (`make bench-broker`)\n\n- date: {}\n- machine: {}\n- command: `make bench-broker` (release build; `magnetar perf produce --size S --rate R --topics T --duration {RUN_SECS}` as a separate process against `magnetar standalone` (E=Qw=Qa=1) and against 1 `magnetar-meta` + 3 `magnetar-bookie` + 1 `magnetar-broker` on loopback (E=Qw=Qa=2); batching on (≤ 1000 messages, 1 ms), 5000 messages in flight per producer, journal fsync on; every topic has a subscription that never consumes, so all of it stays as backlog, and more 1 KiB runs follow until it passes 10 GB; every process shares the 2 cores and one disk)\n- limit measured in the same run: sequential 1 MiB write + fdatasync = {fsync_mb:.0} MB/s\n\n\
| setup | load | msg/s | MB/s | MB/s ÷ disk fsync MB/s | publish latency p50 / p99 (ms) | errors |\n|---|---|---|---|---|---|---|\n{rows}\n\
Targets (issue 5, on this 2-core machine): ≥ 250,000 msg/s of 100-byte batched messages, ≥ 200 MB/s with 1 KiB messages, publish p99 ≤ 10 ms at half the max rate, broker memory bounded under a 10 GB backlog.\n\n",
        now_utc(),
        machine(),
    );
    let doc = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/BENCHMARKS.md");
    write_section(&doc, "bench-broker", &section).expect("write docs/BENCHMARKS.md");
    print!("{section}");
}

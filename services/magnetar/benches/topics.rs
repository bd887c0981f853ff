//! `make bench-topics`: the cost of a topic. The same 10,000 msg/s of 1 KiB
//! in total, spread over 1 → 100 → 1,000 → 10,000 topics (100,000 with
//! `MAGNETAR_BENCH_MAX_TOPICS=100000`), each topic with one producer and one
//! consuming subscription (`magnetar perf produce --consume`, a separate
//! process), against `magnetar standalone` and against 1 `magnetar-meta` +
//! 3 `magnetar-bookie` + 1 `magnetar-broker`. Every step starts on fresh
//! processes, so its memory per topic is (RSS after − RSS before) ÷ topics,
//! summed over the broker and the bookies. Writes docs/BENCHMARKS.md.

use std::process::Command;
use std::time::Duration;

use magnetar_testkit::bench_report::{json_number, machine, now_utc, write_section};
use magnetar_testkit::{bin_path, BrokerCluster, PulsarService, Standalone};

const RUN_SECS: u64 = 20;
const RATE: u64 = 10_000;

struct Step {
    topics: usize,
    create_secs: f64,
    msg_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    consumed: f64,
    produced: f64,
    kib_per_topic: f64,
}

fn rss_kib(pids: &[u32]) -> f64 {
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/statm")).ok())
        .filter_map(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|pages| pages as f64 * 4.0)
        .sum()
}

/// One step: `topics` producers and consumers at `RATE` in total.
fn step(svc: &dyn PulsarService, pids: &[u32], topics: usize) -> Step {
    let before = rss_kib(pids);
    let out = Command::new(bin_path("magnetar"))
        .args(["perf", "produce", &format!("topics-{topics}"), "--json"])
        .args(["--url", &svc.service_url(), "--consume"])
        .args(["--size", "1024", "--rate", &RATE.to_string()])
        .args(["--topics", &topics.to_string()])
        .args(["--duration", &RUN_SECS.to_string(), "--interval", "5"])
        .args(["--batching", "false", "--max-pending", "100"])
        .output()
        .expect("run magnetar perf");
    let after = rss_kib(pids);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    eprint!("{stdout}{stderr}");
    assert!(out.status.success(), "magnetar perf failed");
    let json = |key: &str| {
        stdout
            .lines()
            .rfind(|l| l.starts_with('{') && l.contains(key))
            .map_or(f64::NAN, |l| json_number(l, key))
    };
    // "created N producers on T topics in X s (...)"
    let create_secs = stderr
        .lines()
        .find_map(|l| {
            l.split(" topics in ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(f64::NAN);
    Step {
        topics,
        create_secs,
        msg_per_sec: json("msg_per_sec"),
        p50_ms: json("p50_ms"),
        p99_ms: json("p99_ms"),
        errors: json("errors") as u64,
        consumed: json("consumed"),
        produced: json("produced"),
        kib_per_topic: (after - before) / topics as f64,
    }
}

fn row(setup: &str, s: &Step) -> String {
    format!(
        "| {setup} | {} | {:.1} | {:.0} | {:.2} / {:.2} | {} | {:.0} of {:.0} | {:.1} |\n",
        s.topics,
        s.create_secs,
        s.msg_per_sec,
        s.p50_ms,
        s.p99_ms,
        s.errors,
        s.consumed,
        s.produced,
        s.kib_per_topic
    )
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let max: usize = std::env::var("MAGNETAR_BENCH_MAX_TOPICS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let counts: Vec<usize> = [1, 100, 1_000, 10_000, 100_000]
        .into_iter()
        .filter(|n| *n <= max)
        .collect();
    let mut rows = String::new();
    for &n in &counts {
        let mut s = Standalone::start();
        s.wait_ready(Duration::from_secs(60)).await;
        let pids: Vec<u32> = s.process.pid().into_iter().collect();
        let r = step(&s, &pids, n);
        eprintln!("standalone, {n} topics: {}", row("standalone", &r));
        rows.push_str(&row("standalone", &r));
    }
    for &n in &counts {
        let mut c = BrokerCluster::start(1, 3, 1);
        c.wait_ready(Duration::from_secs(60)).await;
        let mut pids: Vec<u32> = c.brokers[0].process.pid().into_iter().collect();
        pids.extend(c.storage.bookies.iter().filter_map(|b| b.process.pid()));
        let r = step(&c, &pids, n);
        eprintln!("cluster, {n} topics: {}", row("1 broker, 3 bookies", &r));
        rows.push_str(&row("1 broker, 3 bookies (E=Qw=Qa=2)", &r));
    }
    let section = format!(
        "## Many topics (`make bench-topics`)\n\n- date: {}\n- machine: {}\n- command: `make bench-topics` (release build; per step fresh processes, then `magnetar perf produce --consume --rate {RATE} --size 1024 --topics T --duration {RUN_SECS} --batching false` as a separate process: one producer and one consuming Shared subscription per topic, producers and consumers created 64 at a time; memory per topic = (RSS after − RSS before) ÷ T of the broker and bookies (standalone: the one process, metadata included))\n\n\
| setup | topics | create (s) | msg/s | publish p50 / p99 (ms) | errors | consumed of produced | KiB per topic |\n|---|---|---|---|---|---|---|---|\n{rows}\n\
Targets (issue 35): 0 errors at every step; publish p99 at 100,000 topics ≤ 3 × its value at 1 topic; broker + bookie memory ≤ 20 KiB per topic with its producer and subscription; 100,000 topics created in ≤ 60 s.\n\n",
        now_utc(),
        machine(),
    );
    let doc = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/BENCHMARKS.md");
    write_section(&doc, "bench-topics", &section).expect("write docs/BENCHMARKS.md");
    print!("{section}");
}

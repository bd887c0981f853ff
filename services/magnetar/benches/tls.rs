//! `make bench-broker` (second part) or `make bench-tls`: what TLS costs a
//! client. One `magnetar standalone` (journal fsync on) serves the binary
//! protocol on a plain port and on a `pulsar+ssl://` port with a certificate
//! from a CA made for the run; `magnetar perf produce` (a separate process)
//! alternates plain and TLS runs of each load, so drift on a shared machine
//! touches both alike. Reported: the median msg/s of each, their ratio, and
//! the standalone's CPU per message. Writes docs/BENCHMARKS.md.

use std::process::Command;
use std::time::Duration;

use magnetar_testkit::bench_report::{json_number, machine, now_utc, run_summary, write_section};
use magnetar_testkit::tls::TestCa;
use magnetar_testkit::{bin_path, free_port, Standalone};

const RUN_SECS: u64 = 10;
const ROUNDS: usize = 3;

/// CPU seconds (user + system) the process has used so far.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        f.get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

struct Run {
    msg_per_sec: f64,
    mb_per_sec: f64,
    p99_ms: f64,
    errors: u64,
    cpu_us_per_msg: f64,
}

fn perf(url: &str, trust: &str, pid: u32, topic: &str, size: usize, topics: usize) -> Run {
    let cpu0 = cpu_secs(pid);
    let json = run_summary(
        Command::new(bin_path("magnetar"))
            .args(["perf", "produce", topic, "--json", "--interval", "5"])
            .args(["--url", url, "--tls-trust-certs", trust])
            .args(["--size", &size.to_string(), "--topics", &topics.to_string()])
            .args(["--duration", &RUN_SECS.to_string()]),
    );
    let cpu = cpu_secs(pid) - cpu0;
    let msg_per_sec = json_number(&json, "msg_per_sec");
    Run {
        msg_per_sec,
        mb_per_sec: json_number(&json, "mb_per_sec"),
        p99_ms: json_number(&json, "p99_ms"),
        errors: json_number(&json, "errors") as u64,
        cpu_us_per_msg: cpu * 1e6 / (msg_per_sec * RUN_SECS as f64),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn summary(runs: &[Run]) -> (f64, f64, f64, f64, u64) {
    (
        median(runs.iter().map(|r| r.msg_per_sec).collect()),
        median(runs.iter().map(|r| r.mb_per_sec).collect()),
        median(runs.iter().map(|r| r.p99_ms).collect()),
        median(runs.iter().map(|r| r.cpu_us_per_msg).collect()),
        runs.iter().map(|r| r.errors).sum(),
    )
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let pki = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new("magnetar-bench-ca");
    let trust = ca.write(&pki.path().join("ca.pem")).display().to_string();
    let (cert, key) = ca.server("localhost").write(pki.path(), "broker");
    let tls_port = free_port();
    let mut standalone = Standalone::start_with(&[
        "--journal-sync",
        "true",
        "--tls-cert-file",
        &cert.display().to_string(),
        "--tls-key-file",
        &key.display().to_string(),
        "--tls-listen",
        &format!("127.0.0.1:{tls_port}"),
    ]);
    standalone.wait_ready(Duration::from_secs(60)).await;
    let pid = standalone.process.pid().expect("standalone pid");
    let plain = format!("pulsar://{}", standalone.broker);
    let tls = format!("pulsar+ssl://localhost:{tls_port}");

    let loads = [
        ("100 B, max rate, 1 topic", 100, 1),
        ("1 KiB, max rate, 1 topic", 1024, 1),
        ("1 KiB, max rate, 16 topics", 1024, 16),
    ];
    let mut rows = String::new();
    for (what, size, topics) in loads {
        let (mut p, mut t) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let topic = format!("tls-bench-{size}-{topics}-{round}");
            p.push(perf(
                &plain,
                &trust,
                pid,
                &format!("{topic}-plain"),
                size,
                topics,
            ));
            t.push(perf(
                &tls,
                &trust,
                pid,
                &format!("{topic}-tls"),
                size,
                topics,
            ));
        }
        let (pm, pmb, pp99, pcpu, perr) = summary(&p);
        let (tm, tmb, tp99, tcpu, terr) = summary(&t);
        eprintln!("{what}: plain {pm:.0} msg/s, TLS {tm:.0} msg/s");
        rows.push_str(&format!(
            "| {what} | {pm:.0} ({pmb:.1} MB/s) | {tm:.0} ({tmb:.1} MB/s) | {:.2} | {pp99:.2} / {tp99:.2} | {pcpu:.2} / {tcpu:.2} | {perr} / {terr} |\n",
            tm / pm,
        ));
    }
    drop(standalone);

    let section = format!(
        "## Broker over TLS: what encryption costs a client (`make bench-tls`, part of `make bench-broker`)\n\n- date: {}\n- machine: {}\n- command: `make bench-tls` (release build; one `magnetar standalone`, journal fsync on, serving `pulsar://` and `pulsar+ssl://` (rustls, a P-256 certificate from a CA made for the run, TLS 1.3); `magnetar perf produce --duration {RUN_SECS}` as a separate process, batching on, alternating a plain and a TLS run {ROUNDS} times per load; medians shown; the standalone's CPU per message from /proc over each run; every process shares the 2 cores and one disk; no subscription, so retention drops what is written)\n\n\
| load | plain msg/s | TLS msg/s | TLS ÷ plain | p99 ms plain / TLS | standalone CPU µs per msg plain / TLS | errors plain / TLS |\n|---|---|---|---|---|---|---|\n{rows}\n\
Target (issue 32): TLS ≥ 0.85 × plain batched throughput.\n\n",
        now_utc(),
        machine(),
    );
    let doc = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/BENCHMARKS.md");
    write_section(&doc, "bench-tls", &section).expect("write docs/BENCHMARKS.md");
    print!("{section}");
}

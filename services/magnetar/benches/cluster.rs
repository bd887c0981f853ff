//! `make bench-cluster`: the broker cluster on loopback (1 metadata node,
//! 3 bookies, E=Qw=Qa=2):
//! - aggregate produce throughput with 1, 2 and 3 brokers (`magnetar perf
//!   produce` on 12 topics through one broker's URL; lookups spread the
//!   topics' bundles over the brokers);
//! - failover: the time from SIGKILL of the broker serving a topic to the
//!   first publish acknowledged by its new owner, with the default lease TTL.
//!
//! Writes docs/BENCHMARKS.md.

use std::process::Command;
use std::time::{Duration, Instant};

use magnetar_client::{Client, OutgoingMessage, ProducerOptions};
use magnetar_testkit::bench_report::{json_number, machine, now_utc, run_summary, write_section};
use magnetar_testkit::{bin_path, http, BrokerCluster, PulsarService};

const RUN_SECS: u64 = 15;
const TOPICS: usize = 12;
/// The brokers' default session lease TTL (seconds).
const LEASE_TTL: u64 = 10;

/// (msg/s, MB/s, errors) of `magnetar perf produce` with 1 KiB messages.
fn perf(svc: &dyn PulsarService, topic: &str) -> (f64, f64, u64) {
    let json = &run_summary(
        Command::new(bin_path("magnetar"))
            .args(["perf", "produce", topic, "--json", "--interval", "5"])
            .args(["--url", &svc.service_url()])
            .args(["--size", "1024", "--topics", &TOPICS.to_string()])
            .args(["--duration", &RUN_SECS.to_string()]),
    );
    (
        json_number(json, "msg_per_sec"),
        json_number(json, "mb_per_sec"),
        json_number(json, "errors") as u64,
    )
}

/// How many distinct brokers serve the perf topics.
async fn brokers_used(c: &BrokerCluster, topic: &str) -> usize {
    let mut owners = std::collections::HashSet::new();
    for i in 0..TOPICS {
        let path = format!("/lookup/v2/topic/persistent/public/default/{topic}-{i}");
        if let Ok((200, body)) = http::get(&c.brokers[0].http, &path, Duration::from_secs(10)).await
        {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) {
                owners.insert(v["httpUrl"].as_str().unwrap_or_default().to_string());
            }
        }
    }
    owners.len()
}

async fn publish_once(url: &str, topic: &str) -> bool {
    let Ok(client) = Client::from_url(url) else {
        return false;
    };
    let attempt = async {
        let p = client
            .create_producer(topic, ProducerOptions::default())
            .await
            .ok()?;
        p.send(OutgoingMessage::new(&b"after the kill"[..]))
            .await
            .ok()
    };
    let ok = tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .ok()
        .flatten()
        .is_some();
    client.close().await;
    ok
}

/// Seconds from SIGKILL of a topic's owner to the first acknowledged publish.
async fn failover_secs(c: &mut BrokerCluster) -> f64 {
    let topic = "persistent://public/default/failover-probe";
    assert!(publish_once(&c.service_url(), topic).await, "first publish");
    let path = "/lookup/v2/topic/persistent/public/default/failover-probe";
    let (_, body) = http::get(&c.brokers[0].http, path, Duration::from_secs(10))
        .await
        .expect("lookup");
    let v: serde_json::Value = serde_json::from_str(&body).expect("lookup JSON");
    let owner = v["httpUrl"]
        .as_str()
        .expect("owner")
        .trim_start_matches("http://");
    let victim = c
        .brokers
        .iter()
        .position(|b| b.http == owner)
        .expect("owner is ours");
    let survivor = c.brokers[(victim + 1) % c.brokers.len()].addr.clone();
    let url = format!("pulsar://{survivor}");
    let killed = Instant::now();
    c.brokers[victim].process.kill();
    loop {
        if publish_once(&url, topic).await {
            return killed.elapsed().as_secs_f64();
        }
        assert!(killed.elapsed() < Duration::from_secs(120), "no failover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    magnetar_testkit::bench_report::write_back_dirty_pages();
    let mut rows = String::new();
    for brokers in 1..=3 {
        let mut c = BrokerCluster::start(1, 3, brokers);
        c.wait_ready(Duration::from_secs(60)).await;
        let topic = format!("bench-scale-{brokers}");
        let (msgs, mb, errors) = perf(&c, &topic);
        let used = brokers_used(&c, &topic).await;
        rows.push_str(&format!(
            "| {brokers} | {used} | {msgs:.0} | {mb:.1} | {errors} |\n"
        ));
    }
    let mut failovers = Vec::new();
    for _ in 0..3 {
        let mut c = BrokerCluster::start(1, 3, 3);
        c.wait_ready(Duration::from_secs(60)).await;
        failovers.push(failover_secs(&mut c).await);
    }
    let list: Vec<String> = failovers.iter().map(|s| format!("{s:.1}")).collect();
    let worst = failovers.iter().cloned().fold(0.0, f64::max);
    let section = format!(
        "## Broker cluster (`make bench-cluster`)\n\n- date: {}\n- machine: {}\n- command: `make bench-cluster` (release build; 1 `magnetar-meta`, 3 `magnetar-bookie`, 1–3 `magnetar-broker` on loopback, E=Qw=Qa=2, journal fsync on; `magnetar perf produce --size 1024 --topics {TOPICS} --duration {RUN_SECS}` through the first broker's URL, lookups place the topics' bundles; every process shares the 2 cores and one disk, so more brokers cannot add CPU here — the figures show that ownership and lookup do not cap or break the aggregate)\n\n\
| brokers | brokers serving the topics | msg/s | MB/s | errors |\n|---|---|---|---|---|\n{rows}\n\
Failover, SIGKILL of the broker serving a topic → first publish acknowledged by the new owner (Rust client retrying every 100 ms through a surviving broker), lease TTL {LEASE_TTL} s, 3 runs: {} s (worst {worst:.1} s; target under TTL + 2 s = {} s).\n\n",
        now_utc(),
        machine(),
        list.join(", "),
        LEASE_TTL + 2,
    );
    let doc = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/BENCHMARKS.md");
    write_section(&doc, "bench-cluster", &section).expect("write docs/BENCHMARKS.md");
    print!("{section}");
}

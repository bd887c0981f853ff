//! The official Python client (`pulsar-client` from PyPI, which carries the
//! C++ client) against `magnetar standalone` and against a cluster of
//! separate metadata, bookie and broker processes.

use std::path::PathBuf;
use std::time::Duration;

use magnetar_testkit::{run_python, BrokerCluster, PulsarService, Standalone};

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/compat.py")
}

async fn standalone() -> Standalone {
    let mut s = Standalone::start();
    s.wait_ready(Duration::from_secs(60)).await;
    s
}

fn run(svc: &dyn PulsarService, cases: &[&str]) {
    let out = run_python(svc, &script(), cases, Duration::from_secs(300));
    for case in cases {
        assert!(
            out.contains(&format!("ok {case} ")),
            "{case} did not finish:\n{out}"
        );
    }
    println!("{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn produce_consume_and_subscription_types() {
    let s = standalone().await;
    run(
        &s,
        &[
            "ordered_with_properties_and_keys",
            "large_messages",
            "exclusive",
            "shared",
            "failover",
            "key_shared",
            "cumulative_ack",
            "producer_access_modes",
        ],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn batched_and_compressed_async_produce() {
    let s = standalone().await;
    run(&s, &["batched_compressed_async"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn redelivery_readers_seek_and_delays() {
    let s = standalone().await;
    run(
        &s,
        &[
            "nack_redelivery_count",
            "dead_letter_queue",
            "ack_timeout",
            "readers",
            "seek",
            "last_message_id",
            "delayed_delivery",
        ],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dedup_partitions_and_admin_rest() {
    let s = standalone().await;
    run(
        &s,
        &[
            "dedup_across_reconnect",
            "partitioned",
            "admin_rest",
            "subscription_admin",
        ],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn acked_messages_and_positions_survive_a_kill() {
    let mut s = standalone().await;
    run(&s, &["restart_write"]);
    s.restart(Duration::from_secs(60)).await;
    run(&s, &["restart_read"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn against_a_three_bookie_cluster() {
    let mut c = BrokerCluster::start(1, 3, 1);
    c.wait_ready(Duration::from_secs(60)).await;
    run(
        &c,
        &[
            "ordered_with_properties_and_keys",
            "batched_compressed_async",
            "shared",
            "key_shared",
            "nack_redelivery_count",
            "readers",
        ],
    );
}

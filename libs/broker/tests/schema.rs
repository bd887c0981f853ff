//! The schema registry with the official Python client (`pulsar-client`,
//! with its Avro support) against `magnetar standalone`: JSON and Avro
//! roundtrips, evolution per strategy, consumers checked, the admin REST's
//! versions, namespace policies, bad definitions refused without a trace,
//! and partitioned and deleted topics.

use std::path::PathBuf;
use std::time::Duration;

use magnetar_testkit::{run_python, BrokerCluster, PulsarService, Standalone};

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/schema.py")
}

fn run(s: &dyn PulsarService, cases: &[&str]) {
    let out = run_python(s, &script(), cases, Duration::from_secs(300));
    for case in cases {
        assert!(
            out.contains(&format!("ok {case} ")),
            "{case} did not finish:\n{out}"
        );
    }
    println!("{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn schemas_with_the_python_client() {
    let mut s = Standalone::start();
    s.wait_ready(Duration::from_secs(60)).await;
    run(
        &s,
        &[
            "json_roundtrip",
            "avro_roundtrip",
            "string_schema",
            "evolution",
            "consumer_incompatible",
            "admin_versions",
            "bad_definitions",
            "namespace_strategies",
            "partitioned_and_topic_deletion",
            "rest_and_websocket_produce",
        ],
    );
}

/// Two brokers over one metadata service: the schema is the metadata
/// service's, so whichever broker owns a topic checks against it, and the
/// admin REST answers on either.
#[tokio::test(flavor = "multi_thread")]
async fn schemas_across_two_brokers() {
    let mut c = BrokerCluster::start(1, 1, 2);
    c.wait_ready(Duration::from_secs(90)).await;
    run(
        &c,
        &[
            "evolution",
            "consumer_incompatible",
            "admin_versions",
            "partitioned_and_topic_deletion",
        ],
    );
}

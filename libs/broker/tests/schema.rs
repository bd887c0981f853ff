//! The schema registry with the official Python client (`pulsar-client`,
//! with its Avro support) against `magnetar standalone`: JSON and Avro
//! roundtrips, evolution per strategy, consumers checked, the admin REST's
//! versions, namespace policies, bad definitions refused without a trace,
//! and partitioned and deleted topics.

use std::path::PathBuf;
use std::time::Duration;

use magnetar_testkit::{run_python, Standalone};

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/schema.py")
}

fn run(s: &Standalone, cases: &[&str]) {
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

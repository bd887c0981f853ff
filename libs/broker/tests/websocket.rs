//! Pulsar's WebSocket API and REST producer on `magnetar standalone` and on
//! a two-broker cluster (sessions on a broker that does not own the topic),
//! checked with the official Python client on the other end.

use std::path::PathBuf;
use std::time::Duration;

use magnetar_testkit::{run_python, BrokerCluster, PulsarService, Standalone};

const CASES: &[&str] = &[
    "ws_produce_python_consume",
    "python_produce_ws_consume_with_acks_and_nacks",
    "bad_producer_frames_keep_the_socket",
    "reader_from_earliest_and_from_an_id",
    "bad_parameters_close_the_socket_with_a_reason",
    "rest_produce_python_consume",
    "rest_produce_to_partitions",
    "rest_produce_bad_input",
    "sessions_survive_a_topic_unload",
];

fn run(svc: &dyn PulsarService) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/ws_api.py");
    let out = run_python(svc, &script, CASES, Duration::from_secs(300));
    for case in CASES {
        assert!(
            out.contains(&format!("ok {case}")),
            "{case} did not finish:\n{out}"
        );
    }
    println!("{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_api_on_standalone() {
    let mut s = Standalone::start();
    s.wait_ready(Duration::from_secs(60)).await;
    run(&s);
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_api_through_any_broker_of_a_cluster() {
    let mut c = BrokerCluster::start(1, 2, 2);
    c.wait_ready(Duration::from_secs(60)).await;
    // The sessions go to the second broker; lookups place topics on both.
    let web = c.brokers[1].http.clone();
    let urls = magnetar_testkit::Urls {
        service: c.all_brokers().service,
        web: format!("http://{web}"),
    };
    run(&urls);
}

//! Tiered storage end to end: a broker process over meta and bookie
//! processes, moto's S3 server (SigV4 checked) as the object store, and the
//! official Python client (tests/python/offload.py) producing over several
//! ledgers, offloading through the admin API with deletion lag 0, and
//! reading everything back from the earliest message, also after every
//! process but the object store restarted.

use std::path::Path;
use std::time::Duration;

use magnetar_ledger::{LedgerClient, LedgerClientConfig, LedgerError};
use magnetar_meta_client::{ClientConfig, MetaClient};
use magnetar_offload::{Driver, DriverConfig, Offloader, StaticCredentials};
use magnetar_testkit::{run_python, BrokerCluster, S3Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offloaded_ledgers_are_consumed_from_s3_after_the_bookies_let_them_go() {
    let s3 = S3Server::start("offload");
    // The broker takes its S3 credentials from the environment it inherits
    // (only this test runs in this binary).
    for (k, v) in s3.aws_env() {
        std::env::set_var(k, v);
    }
    let endpoint = s3.endpoint();
    let args = [
        "--max-entries-per-ledger",
        "500",
        "--housekeeping-interval-ms",
        "1000",
        "--offload-driver",
        "aws-s3",
        "--offload-bucket",
        &s3.bucket,
        "--offload-region",
        &s3.region,
        "--offload-endpoint",
        &endpoint,
    ];
    let mut c = BrokerCluster::start_with(1, 2, 1, &args);
    c.wait_ready(Duration::from_secs(90)).await;

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/offload.py");
    let topic = "persistent://public/default/tiered";
    let out = run_python(
        &c,
        &script,
        &[topic, "200000", &s3.bucket, &endpoint, &s3.region],
        Duration::from_secs(300),
    );
    println!("{out}");
    let offloaded: Vec<u64> = out
        .lines()
        .find_map(|l| l.strip_prefix("OFFLOADED "))
        .expect("the script lists the offloaded ledgers")
        .split_whitespace()
        .map(|id| id.parse().expect("ledger id"))
        .collect();
    assert!(offloaded.len() >= 3, "{offloaded:?}");

    // Deletion lag 0: the bookies hold none of the offloaded ledgers.
    let meta = MetaClient::new(ClientConfig::from_list(&c.storage.meta.endpoints())).unwrap();
    let ledgers = LedgerClient::new(meta, LedgerClientConfig::default());
    for id in &offloaded {
        let gone = ledgers.open(*id, b"magnetar").await;
        assert!(
            matches!(gone, Err(LedgerError::NoSuchLedger(_))),
            "ledger {id} is still on the bookies"
        );
    }
    // And the bucket holds their data and index objects.
    let mut cfg = DriverConfig::new(Driver::S3, &s3.bucket);
    cfg.region = Some(s3.region.clone());
    cfg.endpoint = Some(endpoint.clone());
    cfg.credentials = Some(StaticCredentials {
        access_key_id: s3.access_key_id.clone(),
        secret_access_key: s3.secret_access_key.clone(),
    });
    let auto: Vec<&str> = out
        .lines()
        .find_map(|l| l.strip_prefix("AUTO-OFFLOADED "))
        .expect("the script lists the automatically offloaded ledgers")
        .split_whitespace()
        .collect();
    let objects = Offloader::new(cfg).unwrap().list().await.unwrap();
    let ids = offloaded.iter().map(u64::to_string);
    for id in ids.chain(auto.iter().map(|a| a.to_string())) {
        let of_ledger = objects
            .iter()
            .filter(|o| {
                o.ends_with(&format!("-ledger-{id}")) || o.ends_with(&format!("-ledger-{id}-index"))
            })
            .count();
        assert_eq!(of_ledger, 2, "ledger {id}: {objects:?}");
    }

    // Every process but the object store restarts: the offloaded ledgers
    // are read from it again (their records are in the metadata service).
    c.brokers[0].process.kill();
    c.storage.meta.restart(1);
    for b in &mut c.storage.bookies {
        b.process.restart();
    }
    c.brokers[0].process.start();
    c.wait_ready(Duration::from_secs(90)).await;
    let out = run_python(
        &c,
        &script,
        &["read", topic, "200000"],
        Duration::from_secs(300),
    );
    assert!(out.contains("in order after the restart"), "{out}");
}

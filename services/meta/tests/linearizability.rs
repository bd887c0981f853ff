//! Records a history of reads, writes and CAS from concurrent clients on a few
//! registers while a nemesis kills and pauses nodes, then checks each
//! register's history (libs/meta-check).

use std::time::Duration;

use magnetar_meta_check::{record, WorkloadConfig};
use magnetar_testkit::MetaCluster;
use tokio::sync::oneshot;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn register_history_is_linearizable_under_kills_and_pauses() {
    let mut cluster = MetaCluster::start(3);
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    let endpoints = cluster.endpoints().split(',').map(String::from).collect();
    let cfg = WorkloadConfig::new(endpoints, "reg");
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let workload = tokio::spawn(record(cfg, async {
        let _ = stop_rx.await;
    }));

    // The nemesis: leader kills, a paused follower, a paused leader.
    let pause = |d| tokio::time::sleep(Duration::from_millis(d));
    pause(1500).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    cluster.kill(leader);
    pause(1500).await;
    cluster.start_node(leader);
    pause(1500).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let follower = cluster
        .nodes
        .iter()
        .map(|n| n.id)
        .find(|id| *id != leader)
        .unwrap();
    cluster.pause(follower);
    pause(1500).await;
    cluster.resume(follower);
    pause(1000).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    cluster.pause(leader);
    pause(2500).await;
    cluster.resume(leader);
    pause(2000).await;
    stop_tx.send(()).unwrap();
    let recorded = workload.await.unwrap().expect("workload");

    assert_eq!(recorded.histories.len(), 3, "one history per register");
    for (key, h) in &recorded.histories {
        assert!(
            h.len() >= 30,
            "too little history on {key} ({} operations) to mean anything",
            h.len()
        );
    }
    let report = tokio::task::spawn_blocking(move || {
        let report = recorded.check();
        for k in report.keys.iter().filter(|k| !k.linearizable) {
            if std::env::var_os("MAGNETAR_DUMP_HISTORY").is_some() {
                eprintln!("{:#?}", recorded.histories[&k.key]);
            }
        }
        report
    })
    .await
    .unwrap();
    for k in &report.keys {
        eprintln!(
            "{}: {} operations ({} with unknown outcome), checked in {:?}",
            k.key, k.operations, k.unknown, k.check_time
        );
        assert!(
            k.linearizable,
            "history of {} ({} ops) is not linearizable; MAGNETAR_DUMP_HISTORY=1 prints it",
            k.key, k.operations
        );
    }
}

//! Fault tests of the metadata service: real `magnetar-meta` processes on
//! loopback (libs/testkit), SIGKILL / restart / SIGSTOP, driven through the real
//! client library.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use magnetar_meta_client::{ClientConfig, Error, MetaClient, PutOptions};
use magnetar_testkit::{http, MetaCluster};

fn client(endpoints: &str, operation_timeout: Duration) -> MetaClient {
    let mut cfg = ClientConfig::from_list(endpoints);
    cfg.operation_timeout = operation_timeout;
    cfg.request_timeout = Duration::from_secs(2);
    MetaClient::new(cfg).expect("client")
}

async fn read_counter(c: &MetaClient, key: &str) -> (u64, i64) {
    match c.get(key).await.expect("read counter") {
        Some(kv) => (
            std::str::from_utf8(&kv.value).unwrap().parse().unwrap(),
            kv.version,
        ),
        None => (0, 0),
    }
}

/// Several clients CAS-increment one counter while the leader is SIGKILLed and
/// restarted twice. Retries must never apply an increment twice: the final
/// value equals the number of CAS calls that reported success.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cas_increments_are_exact_across_leader_kills() {
    let mut cluster = MetaCluster::start(3);
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    let endpoints = cluster.endpoints();
    let stop = Arc::new(AtomicBool::new(false));
    let successes = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let c = client(&endpoints, Duration::from_secs(40));
        let (stop, successes) = (stop.clone(), successes.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let (value, version) = read_counter(&c, "counter").await;
                let opts = PutOptions {
                    expected_version: Some(version),
                    lease: 0,
                };
                match c.put_with("counter", (value + 1).to_string(), opts).await {
                    Ok(_) => {
                        successes.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(Error::VersionMismatch { .. }) => {}
                    Err(e) => panic!("CAS increment failed: {e}"),
                }
            }
        }));
    }
    for round in 0..2 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
        eprintln!("round {round}: killing leader {leader}");
        cluster.kill(leader);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        cluster.start_node(leader);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("worker");
    }
    let c = client(&endpoints, Duration::from_secs(30));
    let (value, _) = read_counter(&c, "counter").await;
    let ok = successes.load(Ordering::Relaxed);
    assert!(ok >= 20, "too few increments to mean anything: {ok}");
    assert_eq!(
        value, ok,
        "counter value must equal the successful CAS calls"
    );
}

/// A lease whose holder process is killed expires after its TTL and its keys are
/// deleted (a watcher sees it); a healthy lease survives a leader failover.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leases_expire_with_their_holder_and_survive_failover() {
    let mut cluster = MetaCluster::start(3);
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    let endpoints = cluster.endpoints();
    let c = client(&endpoints, Duration::from_secs(20));

    // The holder: a separate process that keeps its lease alive until killed.
    let mut holder = magnetar_testkit::Process::new(
        "lease-holder",
        magnetar_testkit::bin_path("magnetar"),
        [
            "meta",
            "--meta",
            &endpoints,
            "lease",
            "hold",
            "--ttl",
            "2",
            "--put",
            "holder/a=1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        cluster.dir.path(),
    );
    holder.start();
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.get("holder/a").await.unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "holder never wrote its key:\n{}",
            holder.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Our own healthy lease, kept alive across a leader kill.
    let lease = c.lease_grant(3).await.unwrap();
    c.put_with(
        "healthy/x",
        "1",
        PutOptions {
            expected_version: None,
            lease: lease.id,
        },
    )
    .await
    .unwrap();
    let keeper = c.keep_alive(lease);
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    cluster.kill(leader);
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    cluster.start_node(leader);
    tokio::time::sleep(Duration::from_secs(7)).await; // over two TTLs
    assert!(
        !keeper.is_lost(),
        "a kept-alive lease must survive a failover"
    );
    assert!(
        c.get("healthy/x").await.unwrap().is_some(),
        "healthy lease's key vanished"
    );
    assert!(
        c.get("holder/a").await.unwrap().is_some(),
        "holder is alive; its key must stay"
    );

    // Kill the holder; its key must go within TTL plus slack, and a watcher sees it.
    let revision = c
        .list("holder/", Default::default())
        .await
        .unwrap()
        .revision;
    let mut watcher = c.watch("holder/", revision + 1).await.unwrap();
    holder.kill();
    let killed_at = Instant::now();
    let event = tokio::time::timeout(Duration::from_secs(15), watcher.next())
        .await
        .expect("no delete event within 15 s")
        .expect("watch failed");
    let elapsed = killed_at.elapsed();
    assert_eq!(event.events.len(), 1);
    assert_eq!(
        event.events[0].r#type,
        magnetar_meta_client::EventType::Delete as i32
    );
    assert_eq!(&event.events[0].kv.as_ref().unwrap().key[..], b"holder/a");
    assert!(
        elapsed >= Duration::from_secs(1),
        "expired too early: {elapsed:?}"
    );
    assert!(c.get("holder/a").await.unwrap().is_none());
    assert!(c.get("healthy/x").await.unwrap().is_some());
}

/// A follower that was down while 10,000 writes happened (with the log purged
/// behind snapshots) catches up by installing a snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lagging_follower_catches_up_through_a_snapshot() {
    let mut cluster = MetaCluster::start_with(
        3,
        &[
            "--snapshot-every",
            "100",
            "--logs-kept-after-snapshot",
            "10",
        ],
    );
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let follower = cluster
        .nodes
        .iter()
        .map(|n| n.id)
        .find(|id| *id != leader)
        .unwrap();
    cluster.kill(follower);
    let endpoints = cluster.endpoints();
    let mut tasks = Vec::new();
    for t in 0..16u32 {
        let c = client(&endpoints, Duration::from_secs(30));
        tasks.push(tokio::spawn(async move {
            for i in 0..625u32 {
                c.put(format!("k/{t:02}/{i:04}"), format!("v{i}"))
                    .await
                    .expect("put");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let c = client(&endpoints, Duration::from_secs(30));
    let status = c.status().await.unwrap();
    assert!(
        status.snapshot_index > 0,
        "leader should have snapshotted: {status:?}"
    );
    cluster.start_node(follower);
    cluster
        .wait_applied(follower, status.applied_index, Duration::from_secs(60))
        .await;
    let metrics = cluster.metrics(follower).await;
    let installed =
        http::metric(&metrics, "magnetar_meta_snapshots_installed_total").unwrap_or(0.0);
    assert!(
        installed >= 1.0,
        "follower caught up without a snapshot?\n{metrics}"
    );
    // Read the follower's own state (serializable reads go to the node asked).
    let addr = cluster.node(follower).addr.clone();
    let local = client(&addr, Duration::from_secs(10));
    for (t, i) in [(0u32, 0u32), (7, 311), (15, 624)] {
        let kv = local
            .get_with(format!("k/{t:02}/{i:04}"), true)
            .await
            .unwrap()
            .expect("key present on the caught-up follower");
        assert_eq!(&kv.value[..], format!("v{i}").as_bytes());
    }
    let all = local
        .list(
            "k/",
            magnetar_meta_client::ListOptions {
                keys_only: true,
                serializable: true,
                limit: 10_000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(all.kvs.len(), 10_000);
}

/// With 2 of 3 nodes down a write fails within the client's deadline with a
/// clear error, and succeeds once one node is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_fail_cleanly_without_quorum_and_recover() {
    let mut cluster = MetaCluster::start(3);
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    let endpoints = cluster.endpoints();
    client(&endpoints, Duration::from_secs(20))
        .put("before", "1")
        .await
        .unwrap();
    cluster.kill(1);
    cluster.kill(2);
    let c = client(&endpoints, Duration::from_secs(4));
    let started = Instant::now();
    let err = c
        .put("during", "1")
        .await
        .expect_err("a write without quorum must fail");
    let elapsed = started.elapsed();
    assert!(
        matches!(err, Error::Unavailable { .. }),
        "unexpected error: {err}"
    );
    assert!(
        elapsed < Duration::from_secs(7),
        "failed only after {elapsed:?}"
    );
    eprintln!("without quorum: {err}");
    cluster.start_node(2);
    let c = client(&endpoints, Duration::from_secs(30));
    c.put("after", "1")
        .await
        .expect("write after quorum returns");
    assert!(c.get("before").await.unwrap().is_some());
}

/// Limits give clear errors and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_violations_are_rejected_without_effect() {
    let mut cluster = MetaCluster::start_with(1, &["--max-value-bytes", "1000"]);
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    let c = client(&cluster.endpoints(), Duration::from_secs(10));
    let big_key = "k".repeat(5000);
    let err = c.put(&big_key, "v").await.unwrap_err();
    assert!(
        matches!(&err, Error::InvalidArgument(m) if m.contains("limit is 4096")),
        "{err}"
    );
    let txn = magnetar_meta_client::Txn::new()
        .put("ok", "v")
        .put("big", vec![0u8; 1001]);
    let err = c.txn(txn).await.unwrap_err();
    assert!(
        matches!(&err, Error::InvalidArgument(m) if m.contains("limit is 1000")),
        "{err}"
    );
    assert!(
        c.get("ok").await.unwrap().is_none(),
        "half of a rejected txn was applied"
    );
    let err = c
        .put_with(
            "x",
            "v",
            PutOptions {
                expected_version: None,
                lease: 12345,
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Rejected(m) if m.contains("lease 12345 not found")),
        "{err}"
    );
    let err = c.lease_grant(0).await.unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)));
    // History before a restart is compacted: a watcher must re-list.
    c.put("a", "1").await.unwrap();
    cluster.restart(1);
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    let err = c
        .watch("", 1)
        .await
        .err()
        .expect("revision 1 predates this process");
    assert!(matches!(err, Error::Compacted(_)), "{err}");
}

/// A node started with `--join` (configured by TOML file and environment) is
/// added as a learner, promoted to voter, serves the data, and is removed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn membership_add_learner_promote_and_remove() {
    let mut cluster = MetaCluster::start(3);
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    let c = client(&cluster.endpoints(), Duration::from_secs(20));
    for i in 0..50 {
        c.put(format!("m/{i}"), "v").await.unwrap();
    }
    let addr = cluster.start_joining_node(4).addr.clone();
    let members = c.add_learner(4, &addr).await.expect("add learner");
    assert!(members.iter().any(|m| m.id == 4 && !m.voter), "{members:?}");
    let members = c
        .change_membership(vec![1, 2, 3, 4], false)
        .await
        .expect("promote");
    assert_eq!(members.iter().filter(|m| m.voter).count(), 4, "{members:?}");

    let applied = c.status().await.unwrap().applied_index;
    cluster
        .wait_applied(4, applied, Duration::from_secs(30))
        .await;
    let local = client(&addr, Duration::from_secs(10));
    let kv = local
        .get_with("m/49", true)
        .await
        .unwrap()
        .expect("new voter has the data");
    assert_eq!(&kv.value[..], b"v");

    // With 4 voters, 3 are a quorum: losing one original node keeps writes going.
    cluster.kill(1);
    c.put("after-promote", "1")
        .await
        .expect("write with 3 of 4 voters");
    cluster.start_node(1);

    let members = c
        .change_membership(vec![1, 2, 3], false)
        .await
        .expect("remove node 4");
    assert!(members.iter().all(|m| m.id != 4), "{members:?}");
    let err = c.change_membership(vec![], false).await.unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
}

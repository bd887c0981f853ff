//! Tiered storage of a managed ledger over real meta and bookie processes
//! and a real S3 server (moto with SigV4 checks): offload of closed ledgers,
//! reads from the object store once the bookie copies are gone, an outage of
//! the store during reads and during an offload, and no objects left after
//! retention trims the ledgers.

use std::time::{Duration, Instant};

use magnetar_ledger::{LedgerClient, LedgerClientConfig, LedgerError};
use magnetar_managed_ledger::{
    info, FactoryConfig, InitialPosition, ManagedLedger, ManagedLedgerConfig, ManagedLedgerFactory,
    MlError, OffloadPolicy, Position, ReadPriority, RetentionPolicy,
};
use magnetar_meta_client::{ClientConfig, MetaClient};
use magnetar_offload::{Driver, DriverConfig, Offloader, StaticCredentials};
use magnetar_testkit::{BookieCluster, S3Server};

async fn factory(cluster: &BookieCluster) -> ManagedLedgerFactory {
    let meta = MetaClient::new(ClientConfig::from_list(&cluster.meta.endpoints())).unwrap();
    let ledgers = LedgerClient::new(meta.clone(), LedgerClientConfig::default());
    let deadline = Instant::now() + Duration::from_secs(30);
    while ledgers.available_bookies().await.map_or(0, |b| b.len()) < cluster.bookies.len() {
        assert!(Instant::now() < deadline, "bookies did not register");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cfg = FactoryConfig {
        // Small: reads of old entries must come from storage, not the cache.
        cache_max_bytes: 64 << 10,
        housekeeping_interval: Duration::from_secs(3600),
    };
    ManagedLedgerFactory::new(meta, ledgers, cfg)
}

fn ml_config() -> ManagedLedgerConfig {
    ManagedLedgerConfig {
        ensemble_size: 2,
        write_quorum: 2,
        ack_quorum: 2,
        max_entries_per_ledger: 500,
        // Keep everything until the test asks for trimming.
        retention_time: None,
        retention_bytes: None,
        ..Default::default()
    }
}

fn offloader(s3: &S3Server) -> Offloader {
    let mut c = DriverConfig::new(Driver::S3, &s3.bucket);
    c.region = Some(s3.region.clone());
    c.endpoint = Some(s3.endpoint());
    c.credentials = Some(StaticCredentials {
        access_key_id: s3.access_key_id.clone(),
        secret_access_key: s3.secret_access_key.clone(),
    });
    c.request_timeout = Duration::from_secs(2);
    c.read_buffer_size = 64 << 10;
    Offloader::new(c).unwrap()
}

fn payload(i: u64) -> Vec<u8> {
    format!("m{i:09}-{}", "x".repeat((i % 300) as usize)).into_bytes()
}

async fn append(ml: &ManagedLedger, first: u64, n: u64) {
    let mut pending = Vec::new();
    for i in first..first + n {
        pending.push(ml.append(&payload(i), 1_000 + i));
        if pending.len() == 64 {
            for f in pending.drain(..) {
                f.await.unwrap();
            }
        }
    }
    for f in pending {
        f.await.unwrap();
    }
}

/// Reads everything from the first entry; checks order and content.
async fn read_all(ml: &ManagedLedger, expected: u64) -> Result<(), MlError> {
    let mut pos = Position::new(0, 0);
    let mut i = 0;
    while i < expected {
        let batch = ml.read_from(pos, 100).await?;
        assert!(!batch.is_empty(), "nothing after {pos} at {i}");
        for e in &batch {
            assert_eq!(&e.data[..], &payload(i)[..], "entry {i} at {}", e.position);
            assert_eq!(e.publish_time_ms, 1_000 + i);
            i += 1;
        }
        pos = Position::new(
            batch.last().unwrap().position.ledger_id,
            batch.last().unwrap().position.entry_id + 1,
        );
    }
    Ok(())
}

fn offloaded_ledgers(ml: &ManagedLedger) -> Vec<u64> {
    let stats = ml.stats();
    stats
        .ledgers
        .iter()
        .filter(|l| l.offloaded)
        .map(|l| l.ledger_id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offloaded_ledgers_are_read_from_s3_after_the_bookie_copy_is_gone() {
    let cluster = BookieCluster::start(1, 2);
    cluster.wait_ready(Duration::from_secs(30)).await;
    let s3 = S3Server::start("tiered");
    let f = factory(&cluster).await;
    let ml = f.open("t/ns/offload", ml_config()).await.unwrap();
    let cursor = ml
        .open_cursor("sub", InitialPosition::Earliest)
        .await
        .unwrap();
    append(&ml, 0, 2200).await;
    let o = offloader(&s3);
    ml.set_offload_policy(OffloadPolicy {
        offloader: Some(o.clone()),
        deletion_lag: Some(Duration::ZERO),
        read_priority: ReadPriority::TieredStorageFirst,
        threshold_bytes: None,
        threshold_age: None,
    });
    assert_eq!(ml.offload_status().status, "NOT_RUN");

    // Everything but the ledger being written: 4 closed ledgers of 500.
    let first_unoffloaded = ml.offload_up_to(ml.last_confirmed()).await.unwrap();
    let offloaded = offloaded_ledgers(&ml);
    assert_eq!(offloaded.len(), 4, "{:?}", ml.stats().ledgers);
    assert_eq!(
        first_unoffloaded,
        Position::new(ml.last_confirmed().ledger_id, 0)
    );
    assert_eq!(ml.offload_status().status, "SUCCESS");
    assert_eq!(o.list().await.unwrap().len(), 8, "data + index per ledger");

    // Deletion lag 0: housekeeping deletes the bookie copies.
    ml.housekeeping().await.unwrap();
    for id in &offloaded {
        let gone = f.ledger_client().open(*id, b"magnetar").await;
        assert!(
            matches!(gone, Err(LedgerError::NoSuchLedger(_))),
            "ledger {id} is still on the bookies"
        );
    }
    read_all(&ml, 2200).await.unwrap();
    let found = ml.find_by_publish_time(1_000 + 777).await.unwrap();
    assert_eq!(found, Some(Position::new(offloaded[1], 277)));
    assert_eq!(
        cursor.read_entries(10).await.unwrap()[0].data,
        payload(0).into()
    );

    // The store paused: a clear, retryable error within the deadline, no
    // hang; reads resume once it is back.
    s3.process.pause();
    let started = Instant::now();
    let err = ml
        .read_from(Position::new(offloaded[2], 100), 10)
        .await
        .expect_err("the store is paused");
    assert!(err.is_retriable(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20));
    s3.process.resume();
    assert_eq!(
        ml.read_from(Position::new(offloaded[2], 100), 10)
            .await
            .unwrap()[0]
            .data,
        payload(1100).into()
    );

    // An offload while the store is down: ERROR with the reason, nothing
    // marked offloaded; after it is back, the retry succeeds.
    append(&ml, 2200, 1000).await;
    s3.process.pause();
    let err = ml
        .offload_up_to(ml.last_confirmed())
        .await
        .expect_err("down");
    assert!(err.is_retriable(), "{err}");
    let status = ml.offload_status();
    assert_eq!(status.status, "ERROR");
    assert!(!status.last_error.is_empty());
    assert_eq!(offloaded_ledgers(&ml).len(), 4);
    s3.process.resume();
    ml.offload_up_to(ml.last_confirmed()).await.unwrap();
    assert_eq!(offloaded_ledgers(&ml).len(), 6);
    assert_eq!(
        o.list().await.unwrap().len(),
        12,
        "no leftovers of the failed attempt"
    );
    read_all(&ml, 3200).await.unwrap();

    // Retention trims the consumed ledgers: their objects go too.
    cursor.ack_cumulative(ml.last_confirmed()).unwrap();
    cursor.flush().await.unwrap();
    ml.set_retention_policy(RetentionPolicy {
        retention_time: Some(Duration::ZERO),
        retention_bytes: Some(0),
        message_ttl: None,
    });
    ml.trim().await.unwrap();
    assert!(offloaded_ledgers(&ml).is_empty());
    assert!(o.list().await.unwrap().is_empty(), "{:?}", o.list().await);
}

/// How many offload leftovers the stored ledger list of `name` records.
async fn stored_leftovers(cluster: &BookieCluster, name: &str) -> usize {
    let meta = MetaClient::new(ClientConfig::from_list(&cluster.meta.endpoints())).unwrap();
    let (stored, _) = info::load::<info::ManagedLedgerInfo>(&meta, &info::ledger_key(name))
        .await
        .unwrap()
        .expect("stored");
    stored.offload_leftovers.len()
}

/// No object is orphaned by an outage of the store: ledgers trimmed while it
/// is down keep their objects recorded as leftovers, which housekeeping
/// deletes once it is back; deleting the managed ledger while it is down
/// fails (retryable) and keeps the metadata, and succeeds afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_objects_are_orphaned_by_an_outage_of_the_store() {
    let cluster = BookieCluster::start(1, 2);
    cluster.wait_ready(Duration::from_secs(30)).await;
    let s3 = S3Server::start("tiered");
    let f = factory(&cluster).await;
    let ml = f.open("t/ns/deleted", ml_config()).await.unwrap();
    let cursor = ml
        .open_cursor("c", InitialPosition::Earliest)
        .await
        .unwrap();
    append(&ml, 0, 1100).await;
    let o = offloader(&s3);
    ml.set_offload_policy(OffloadPolicy {
        offloader: Some(o.clone()),
        deletion_lag: None,
        read_priority: ReadPriority::BookkeeperFirst,
        threshold_bytes: Some(0),
        threshold_age: None,
    });
    // Automatic: above a threshold of 0 bytes, every closed ledger goes.
    ml.offload_housekeeping().await.unwrap();
    assert_eq!(offloaded_ledgers(&ml).len(), 2);
    assert_eq!(o.list().await.unwrap().len(), 4);
    read_all(&ml, 1100).await.unwrap();

    // Trimmed while the store is down: out of the list, objects still there.
    cursor.ack_cumulative(ml.last_confirmed()).unwrap();
    cursor.flush().await.unwrap();
    ml.set_retention_policy(RetentionPolicy {
        retention_time: Some(Duration::ZERO),
        retention_bytes: Some(0),
        message_ttl: None,
    });
    s3.process.pause();
    ml.trim().await.unwrap();
    assert!(offloaded_ledgers(&ml).is_empty());
    assert_eq!(stored_leftovers(&cluster, "t/ns/deleted").await, 2);
    // (A paused server may still carry out the deletes it had queued once
    // it resumes; deleting again is harmless.)
    s3.process.resume();
    ml.offload_housekeeping().await.unwrap();
    assert!(o.list().await.unwrap().is_empty(), "{:?}", o.list().await);
    assert_eq!(stored_leftovers(&cluster, "t/ns/deleted").await, 0);

    // Deleting the managed ledger while the store is down fails and keeps it.
    ml.set_retention_policy(RetentionPolicy {
        retention_time: None,
        retention_bytes: None,
        message_ttl: None,
    });
    // With a threshold of 0 bytes, each rollover offloads what it closed,
    // without waiting for housekeeping.
    append(&ml, 0, 1100).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while offloaded_ledgers(&ml).len() < 2 {
        assert!(
            Instant::now() < deadline,
            "no offload at rollover: {:?}",
            ml.stats().ledgers
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let objects = o.list().await.unwrap();
    assert!(objects.len() >= 4, "{objects:?}");
    s3.process.pause();
    let err = f
        .delete("t/ns/deleted")
        .await
        .expect_err("the store is down");
    assert!(err.is_retriable(), "{err}");
    s3.process.resume();
    assert_eq!(
        f.list("t/ns/").await.unwrap().len(),
        1,
        "the metadata is kept"
    );
    assert_eq!(stored_leftovers(&cluster, "t/ns/deleted").await, 0);
    f.delete("t/ns/deleted").await.unwrap();
    assert!(o.list().await.unwrap().is_empty(), "{:?}", o.list().await);
    assert!(f.list("t/ns/").await.unwrap().is_empty());
}

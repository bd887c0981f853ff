//! Offload against a real S3-protocol server in another process (moto, with
//! SigV4 signature checking on; `make s3-env` installs it): write a ledger,
//! read it back, and survive the server dying in the middle of an upload.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use magnetar_offload::{
    new_uuid, Driver, DriverConfig, LedgerWriter, OffloadError, Offloader, StaticCredentials,
};
use magnetar_testkit::S3Server;

/// 3 000 entries of ~4 KiB: ~12 MiB, so three 5 MiB parts (S3's minimum).
const ENTRIES: u64 = 3000;

fn payload(id: u64) -> Vec<u8> {
    let mut p = format!("ledger-entry-{id:06}-").into_bytes();
    p.resize(4000 + (id % 97) as usize, (id % 251) as u8);
    p
}

fn config(s3: &S3Server, secret: &str) -> DriverConfig {
    let mut c = DriverConfig::new(Driver::S3, &s3.bucket);
    c.region = Some(s3.region.clone());
    c.endpoint = Some(s3.endpoint());
    c.path_style = true;
    c.credentials = Some(StaticCredentials {
        access_key_id: s3.access_key_id.clone(),
        secret_access_key: secret.to_string(),
    });
    c.max_block_size = 1 << 20;
    c.part_size = 5 << 20;
    c.read_buffer_size = 256 << 10;
    c.request_timeout = Duration::from_secs(3);
    c
}

async fn write_all(o: &Offloader, uuid: &str, ledger: u64) -> Result<(), OffloadError> {
    let mut w = o.writer(uuid, ledger);
    for id in 0..ENTRIES {
        w.append(id, &payload(id)).await?;
    }
    let props = BTreeMap::from([("topic".to_string(), "t".to_string())]);
    let info = w.finish(props).await?;
    assert_eq!(info.entry_count, ENTRIES);
    assert!(info.blocks >= 12, "1 MiB blocks: {info:?}");
    Ok(())
}

/// Appends the rest of the ledger (after the first 1500 entries) to a writer
/// whose store has gone away, then finishes it: one of the two must fail.
async fn rest_fails(mut w: LedgerWriter) -> OffloadError {
    for id in 1500..ENTRIES {
        if let Err(e) = w.append(id, &payload(id)).await {
            return e;
        }
    }
    w.finish(BTreeMap::new())
        .await
        .expect_err("the store is unavailable")
}

async fn check_all(o: &Offloader, uuid: &str, ledger: u64) {
    let l = o
        .open(uuid, ledger)
        .await
        .expect("open the offloaded ledger");
    assert_eq!(l.entry_count(), ENTRIES);
    let mut id = 0;
    while id < ENTRIES {
        let last = (id + 99).min(ENTRIES - 1);
        for (got, p) in l.read(id, last).await.expect("read back") {
            assert_eq!(got, id);
            assert!(p[..] == payload(id)[..], "entry {id} differs");
            id += 1;
        }
    }
    // A read far from the last one finds its block through the index.
    let one = l.read(1234, 1234).await.expect("random read");
    assert!(one[0].1[..] == payload(1234)[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_round_trips_through_s3_and_bad_signatures_are_refused() {
    let s3 = S3Server::start("offload");
    let o = Offloader::new(config(&s3, &s3.secret_access_key)).unwrap();
    let uuid = new_uuid();
    write_all(&o, &uuid, 42).await.expect("offload");
    assert_eq!(
        o.list().await.unwrap(),
        vec![
            format!("{uuid}-ledger-42"),
            format!("{uuid}-ledger-42-index")
        ]
    );
    check_all(&o, &uuid, 42).await;

    // The server checks signatures: the wrong secret is refused, for good.
    let wrong = Offloader::new(config(&s3, "not-the-secret")).unwrap();
    let err = wrong.open(&uuid, 42).await.expect_err("a bad signature");
    assert!(matches!(err, OffloadError::Store { .. }), "{err}");
    assert!(!err.is_retryable(), "{err:?}");

    o.delete(&uuid, 42).await.unwrap();
    assert!(o.list().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_mid_upload_fails_cleanly_and_a_retry_succeeds() {
    let mut s3 = S3Server::start("offload");
    let o = Offloader::new(config(&s3, &s3.secret_access_key)).unwrap();

    // Paused mid-upload (the server holds its sockets, answers nothing): the
    // writer fails within its deadline and nothing becomes visible.
    let uuid = new_uuid();
    let mut w = o.writer(&uuid, 7);
    for id in 0..1500 {
        w.append(id, &payload(id)).await.expect("first parts");
    }
    s3.process.pause();
    let started = Instant::now();
    let err = rest_fails(w).await;
    assert!(err.is_retryable(), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    s3.process.resume();
    let left = o.list().await.unwrap();
    assert!(left.is_empty(), "a failed upload left {left:?}");

    // Killed mid-upload: the same, then a retry (new attempt) once it is back.
    let uuid = new_uuid();
    let mut w = o.writer(&uuid, 8);
    for id in 0..1500 {
        w.append(id, &payload(id)).await.expect("first parts");
    }
    s3.kill();
    let err = rest_fails(w).await;
    assert!(err.is_retryable(), "{err:?}");
    // Reads fail the same way while it is down: an error, not a hang.
    let read = o.open(&uuid, 8).await.expect_err("down");
    assert!(read.is_retryable(), "{read:?}");

    s3.start_again();
    assert!(o.list().await.unwrap().is_empty());
    let retry = new_uuid();
    write_all(&o, &retry, 8).await.expect("the retry succeeds");
    check_all(&o, &retry, 8).await;
    assert_eq!(o.list().await.unwrap().len(), 2);
}

//! Managed ledgers over real `magnetar-meta` and `magnetar-bookie` processes
//! (libs/testkit); the managed ledger itself runs in this process, as it does
//! inside a broker.

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::time::{Duration, Instant};

use magnetar_ledger::{LedgerClient, LedgerClientConfig};
use magnetar_managed_ledger::{
    FactoryConfig, InitialPosition, ManagedLedger, ManagedLedgerConfig, ManagedLedgerFactory,
    MlError, Position,
};
use magnetar_meta_client::{ClientConfig, MetaClient};
use magnetar_testkit::BookieCluster;
use rand::seq::SliceRandom;
use rand::SeedableRng;

async fn factory(cluster: &BookieCluster, cache_bytes: usize) -> ManagedLedgerFactory {
    let meta = MetaClient::new(ClientConfig::from_list(&cluster.meta.endpoints())).unwrap();
    let ledgers = LedgerClient::new(meta.clone(), LedgerClientConfig::default());
    let deadline = Instant::now() + Duration::from_secs(30);
    while ledgers.available_bookies().await.map_or(0, |b| b.len()) < cluster.bookies.len() {
        assert!(Instant::now() < deadline, "bookies did not register");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ManagedLedgerFactory::new(
        meta,
        ledgers,
        FactoryConfig {
            cache_max_bytes: cache_bytes,
            // Tests call housekeeping themselves.
            housekeeping_interval: Duration::from_secs(3600),
        },
    )
}

fn config(max_entries_per_ledger: i64) -> ManagedLedgerConfig {
    ManagedLedgerConfig {
        ensemble_size: 2,
        write_quorum: 2,
        ack_quorum: 2,
        max_entries_per_ledger,
        ..Default::default()
    }
}

fn payload(i: u64) -> Vec<u8> {
    format!("m{i:09}").into_bytes()
}

fn index_of(data: &[u8]) -> u64 {
    std::str::from_utf8(&data[1..]).unwrap().parse().unwrap()
}

/// Appends `payload(first..first+n)` with up to `window` in flight, in order.
async fn append_range(ml: &ManagedLedger, first: u64, n: u64, window: usize) -> Vec<Position> {
    let mut in_flight = VecDeque::new();
    let mut out = Vec::with_capacity(n as usize);
    for i in first..first + n {
        in_flight.push_back(ml.append(&payload(i), 1_000 + i));
        if in_flight.len() >= window {
            out.push(in_flight.pop_front().unwrap().await.unwrap());
        }
    }
    for f in in_flight {
        out.push(f.await.unwrap());
    }
    out
}

/// 1M small entries over 20 rollovers; a tailing cursor keeps up while they
/// are written, a second one reads everything afterwards (from the bookies:
/// the cache is small). Both see every entry once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_million_entries_across_rollovers_read_by_two_cursors() {
    let cluster = BookieCluster::start(1, 3);
    cluster.wait_ready(Duration::from_secs(30)).await;
    let f = factory(&cluster, 4 << 20).await;
    let ml = f.open("t/ns/million", config(50_000)).await.unwrap();
    let fast = ml
        .open_cursor("fast", InitialPosition::Earliest)
        .await
        .unwrap();
    let slow = ml
        .open_cursor("slow", InitialPosition::Earliest)
        .await
        .unwrap();
    let total = 1_000_000u64;

    let tail = {
        let fast = fast.clone();
        tokio::spawn(async move {
            let mut next = 0u64;
            while next < total {
                let batch = fast
                    .read_entries_or_wait(5_000, Duration::from_secs(30))
                    .await
                    .unwrap();
                assert!(!batch.is_empty(), "tailing read timed out at {next}");
                for e in &batch {
                    assert_eq!(index_of(&e.data), next, "at {}", e.position);
                    next += 1;
                }
                fast.ack_cumulative(batch.last().unwrap().position).unwrap();
            }
        })
    };
    let started = Instant::now();
    let positions = append_range(&ml, 0, total, 2_000).await;
    let append_secs = started.elapsed().as_secs_f64();
    tail.await.unwrap();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "positions must increase"
    );
    let ledgers: BTreeSet<u64> = positions.iter().map(|p| p.ledger_id).collect();
    assert_eq!(ledgers.len(), 20, "50,000 entries per ledger");
    assert_eq!(fast.backlog().0, 0);
    assert_eq!(slow.backlog().0, total);

    let started = Instant::now();
    let mut next = 0u64;
    loop {
        let batch = slow.read_entries(10_000).await.unwrap();
        if batch.is_empty() {
            break;
        }
        for e in &batch {
            assert_eq!(index_of(&e.data), next);
            assert_eq!(e.position, positions[next as usize]);
            assert_eq!(e.publish_time_ms, 1_000 + next);
            next += 1;
        }
        slow.ack_cumulative(batch.last().unwrap().position).unwrap();
    }
    assert_eq!(next, total);
    eprintln!(
        "1M entries: appended in {append_secs:.1} s, re-read from bookies in {:.1} s; cache {} bytes",
        started.elapsed().as_secs_f64(),
        f.cache_used_bytes()
    );
    // Both cursors passed every closed ledger: retention 0 trims them all.
    ml.trim().await.unwrap();
    assert_eq!(ml.stats().ledgers.len(), 1);
    f.shutdown().await;
}

/// 100k random individual acks out of 200k entries, a broker-like restart
/// (close, reopen by a new owner): exactly the unacked entries come back.
/// Then more acks and an abrupt takeover (no close): again exact. The bytes
/// written to persist cursor state are measured and bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scattered_acks_survive_restart_and_takeover() {
    let cluster = BookieCluster::start(1, 3);
    cluster.wait_ready(Duration::from_secs(30)).await;
    let f1 = factory(&cluster, 64 << 20).await;
    let name = "t/ns/acks";
    let ml = f1.open(name, config(100_000)).await.unwrap();
    let sub = ml
        .open_cursor("sub", InitialPosition::Earliest)
        .await
        .unwrap();
    let total = 200_000u64;
    let positions = append_range(&ml, 0, total, 2_000).await;

    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut order: Vec<usize> = (0..total as usize).collect();
    order.shuffle(&mut rng);
    let (first_half, rest) = order.split_at(100_000);
    let started = Instant::now();
    for chunk in first_half.chunks(100) {
        let ps: Vec<Position> = chunk.iter().map(|&i| positions[i]).collect();
        sub.ack(&ps).unwrap();
    }
    sub.flush().await.unwrap();
    let stats = sub.stats();
    eprintln!(
        "100k acks in {:.2} s: {} snapshots, {} bytes; {} ack ranges in {} bytes of memory",
        started.elapsed().as_secs_f64(),
        stats.snapshots_written,
        stats.snapshot_bytes_written,
        stats.total_non_contiguous_deleted_messages_range,
        sub.ack_memory_bytes()
    );
    // One snapshot holds a bitmap of the acked span: ~200k bits = 25 KB.
    let per_snapshot = stats.snapshot_bytes_written / stats.snapshots_written.max(1);
    assert!(per_snapshot <= 32 << 10, "snapshot of {per_snapshot} bytes");
    assert!(
        stats.snapshot_bytes_written <= 8 << 20,
        "{} bytes written for 100k acks",
        stats.snapshot_bytes_written
    );
    assert!(sub.ack_memory_bytes() <= 32 << 10);
    let acked: HashSet<usize> = first_half.iter().copied().collect();
    let (backlog, _) = sub.backlog();
    assert_eq!(backlog, total - acked.len() as u64);
    f1.shutdown().await;

    // Broker-like restart: a new factory (new clients, new connections).
    let f2 = factory(&cluster, 64 << 20).await;
    let ml = f2.open(name, config(100_000)).await.unwrap();
    let sub = ml.cursor("sub").expect("cursor recovered");
    assert_eq!(sub.backlog().0, total - acked.len() as u64);
    let unacked = read_all_indexes(&sub).await;
    let expected: Vec<u64> = (0..total)
        .filter(|i| !acked.contains(&(*i as usize)))
        .collect();
    assert_eq!(
        unacked, expected,
        "after restart exactly the unacked entries are read"
    );

    // More acks, flushed, then a takeover without a close.
    let second: Vec<usize> = rest[..50_000].to_vec();
    for chunk in second.chunks(100) {
        let ps: Vec<Position> = chunk.iter().map(|&i| positions[i]).collect();
        sub.ack(&ps).unwrap();
    }
    sub.flush().await.unwrap();
    let f3 = factory(&cluster, 64 << 20).await;
    let ml3 = f3.open(name, config(100_000)).await.unwrap();
    let sub3 = ml3.cursor("sub").unwrap();
    let acked: HashSet<usize> = acked.into_iter().chain(second).collect();
    let unacked = read_all_indexes(&sub3).await;
    let expected: Vec<u64> = (0..total)
        .filter(|i| !acked.contains(&(*i as usize)))
        .collect();
    assert_eq!(
        unacked, expected,
        "after takeover exactly the unacked entries are read"
    );
    // The old owner can no longer write.
    let err = ml.append(b"late", 0).await.unwrap_err();
    assert!(matches!(err, MlError::Fenced(_)), "{err}");
    f3.shutdown().await;
}

/// Reads (waiting for new entries) until `got` holds `n` indexes; a read that
/// returns nothing, or does not return (the old code spun in it forever),
/// fails the test.
async fn read_until(c: &magnetar_managed_ledger::ManagedCursor, n: usize, got: &mut Vec<u64>) {
    while got.len() < n {
        let read = c.read_entries_or_wait(100, Duration::from_secs(5));
        let batch = tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("a read that waits 5 s returns within 10 s")
            .unwrap();
        assert!(!batch.is_empty(), "stuck after {got:?}");
        got.extend(batch.iter().map(|e| index_of(&e.data)));
    }
}

/// A cursor that read its ledger to the end and acked nothing follows the
/// writer into the next ledger (it once stopped at the boundary for good).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cursor_that_acks_nothing_crosses_a_rollover() {
    let cluster = BookieCluster::start(1, 2);
    cluster.wait_ready(Duration::from_secs(30)).await;
    let f = factory(&cluster, 1 << 20).await;
    let ml = f
        .open("public/default/persistent/rollover", config(10))
        .await
        .unwrap();
    let c = ml
        .open_cursor("s", InitialPosition::Earliest)
        .await
        .unwrap();
    let first = append_range(&ml, 0, 10, 1).await;
    let mut got = Vec::new();
    read_until(&c, 10, &mut got).await;
    let second = append_range(&ml, 10, 10, 1).await;
    assert_ne!(
        first[0].ledger_id, second[9].ledger_id,
        "the writer rolled over"
    );
    read_until(&c, 20, &mut got).await;
    assert_eq!(got, (0..20).collect::<Vec<_>>());
}

/// Appends that failed are not in the log. With one of two bookies dead, an
/// append reaches the live bookie but cannot be confirmed, and no bookie can
/// replace the dead one: the append fails. The managed ledger must then close
/// its ledger at the last confirmed entry. It once closed it by recovery,
/// which found the failed append on the live bookie and kept it, so a client
/// resending what it was told had failed got it stored twice (the e2e
/// campaign's duplicates with deduplication on).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_append_reported_failed_never_appears_in_the_log() {
    let mut cluster = BookieCluster::start(1, 2);
    cluster.wait_ready(Duration::from_secs(30)).await;
    let f = factory(&cluster, 1 << 20).await;
    let ml = f
        .open("public/default/persistent/failed-appends", config(10_000))
        .await
        .unwrap();
    append_range(&ml, 0, 100, 10).await;
    let seen = ml.append_failures();

    cluster.bookie("b2").process.kill();
    // Several in flight: the ones behind the first failure fail with it.
    let in_flight: Vec<_> = (100..105).map(|i| ml.append(&payload(i), 0)).collect();
    for (i, r) in (100..105).zip(futures::future::join_all(in_flight).await) {
        assert!(r.is_err(), "append {i} succeeded with one of two bookies");
    }
    assert!(ml.append_failures() > seen);

    cluster.bookie("b2").process.start();
    cluster.wait_ready(Duration::from_secs(30)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut next = 1_000;
    while next < 1_010 {
        match ml.append(&payload(next), 0).await {
            Ok(_) => next += 1,
            Err(e) => {
                assert!(Instant::now() < deadline, "appends still fail: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    // A producer that attached before the failure is refused until it
    // attaches again: its send would go ahead of the failed ones' retries.
    let stale = ml.append_in_order(&payload(2_000), 0, seen).await;
    assert!(
        matches!(stale, Err(MlError::EarlierAppendFailed(_))),
        "{stale:?}"
    );
    let now = ml.append_failures();
    ml.append_in_order(&payload(1_010), 0, now).await.unwrap();
    let c = ml
        .open_cursor("check", InitialPosition::Earliest)
        .await
        .unwrap();
    let expected: Vec<u64> = (0..100).chain(1_000..1_011).collect();
    assert_eq!(read_all_indexes(&c).await, expected);
    // A later owner reads the same log: the failed ledger was closed at its
    // last confirmed entry, not left open (it once was, when the close failed
    // for lack of bookies and the rollover went on without it).
    f.shutdown().await;
    let f = factory(&cluster, 1 << 20).await;
    let ml = f
        .open("public/default/persistent/failed-appends", config(10_000))
        .await
        .unwrap();
    let c = ml
        .open_cursor("check-again", InitialPosition::Earliest)
        .await
        .unwrap();
    assert_eq!(read_all_indexes(&c).await, expected);
    let first = &ml.stats().ledgers[0];
    assert!(first.closed && first.entries == 100, "{first:?}");
    f.shutdown().await;
}

async fn read_all_indexes(c: &magnetar_managed_ledger::ManagedCursor) -> Vec<u64> {
    c.rewind();
    let mut out = Vec::new();
    loop {
        let batch = c.read_entries(20_000).await.unwrap();
        if batch.is_empty() {
            return out;
        }
        out.extend(batch.iter().map(|e| index_of(&e.data)));
    }
}

/// A second owner opens the managed ledger while the first keeps appending:
/// the first is fenced; every position it had confirmed is readable by the
/// second with the right payload; nothing appears twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn takeover_fences_the_first_owner_without_loss_or_duplicates() {
    let cluster = BookieCluster::start(1, 3);
    cluster.wait_ready(Duration::from_secs(30)).await;
    let name = "t/ns/takeover";
    let a = factory(&cluster, 16 << 20).await;
    let ml_a = a.open(name, config(3_000)).await.unwrap();
    let writer = {
        let ml_a = ml_a.clone();
        tokio::spawn(async move {
            let mut confirmed = Vec::new();
            let mut in_flight = VecDeque::new();
            let mut i = 0u64;
            loop {
                in_flight.push_back((i, ml_a.append(&payload(i), 0)));
                i += 1;
                if in_flight.len() >= 200 {
                    let (idx, f) = in_flight.pop_front().unwrap();
                    match f.await {
                        Ok(p) => confirmed.push((idx, p)),
                        Err(MlError::Fenced(_)) => break,
                        Err(e) => panic!("append {idx}: unexpected error {e}"),
                    }
                }
            }
            for (idx, f) in in_flight {
                if let Ok(p) = f.await {
                    confirmed.push((idx, p));
                }
            }
            confirmed
        })
    };
    // Let A write across a few rollovers, then take over.
    while ml_a.last_confirmed().entry_id < 0 || ml_a.stats().ledgers.len() < 3 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let b = factory(&cluster, 16 << 20).await;
    let ml_b = b.open(name, config(3_000)).await.unwrap();
    let confirmed = tokio::time::timeout(Duration::from_secs(30), writer)
        .await
        .expect("the first owner must notice it was fenced")
        .unwrap();
    assert!(
        confirmed.len() > 3_000,
        "only {} confirmed",
        confirmed.len()
    );

    // B appends after the takeover.
    let after = append_range(&ml_b, 10_000_000, 100, 50).await;
    let c = ml_b
        .open_cursor("check", InitialPosition::Earliest)
        .await
        .unwrap();
    let mut seen = Vec::new();
    loop {
        let batch = c.read_entries(10_000).await.unwrap();
        if batch.is_empty() {
            break;
        }
        seen.extend(batch.into_iter().map(|e| (index_of(&e.data), e.position)));
    }
    let unique: HashSet<u64> = seen.iter().map(|(i, _)| *i).collect();
    assert_eq!(unique.len(), seen.len(), "an entry appears twice");
    let by_index: std::collections::HashMap<u64, Position> = seen.iter().copied().collect();
    for (idx, pos) in &confirmed {
        assert_eq!(
            by_index.get(idx),
            Some(pos),
            "confirmed entry {idx} at {pos} lost or moved"
        );
    }
    assert_eq!(
        &seen[seen.len() - 100..]
            .iter()
            .map(|s| s.1)
            .collect::<Vec<_>>(),
        &after
    );
    // A's entries are all before B's.
    let last_a = confirmed.iter().map(|c| c.1).max().unwrap();
    assert!(after[0] > last_a);
    b.shutdown().await;
}

/// Retention 0: ledgers every cursor passed are deleted on the bookies.
/// TTL moves a cursor past old entries, after which their ledgers go too.
/// Reset by publish time lands on the first entry at or after the time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retention_ttl_and_reset_by_time() {
    let cluster = BookieCluster::start(1, 2);
    cluster.wait_ready(Duration::from_secs(30)).await;
    let f = factory(&cluster, 16 << 20).await;
    let ledgers = f.ledger_client().clone();

    // Publish times: 10 ms apart from a base, across ledgers of 100 entries.
    let base = 1_700_000_000_000u64;
    let ml = f.open("t/ns/retention", config(100)).await.unwrap();
    let sub = ml
        .open_cursor("sub", InitialPosition::Earliest)
        .await
        .unwrap();
    let mut positions = Vec::new();
    for i in 0..1_000u64 {
        positions.push(ml.append(&payload(i), base + 10 * i));
    }
    let mut confirmed = Vec::new();
    for p in positions {
        confirmed.push(p.await.unwrap());
    }
    // The rollover after the last full ledger completes in the background.
    wait_until(|| ml.stats().ledgers.len() == 11).await;

    // Reset by time: 555 ms after base is between entries 55 and 56.
    let at = sub.reset_to_publish_time(base + 555).await.unwrap();
    assert_eq!(at, confirmed[56]);
    let first = sub.read_entries(1).await.unwrap();
    assert_eq!(index_of(&first[0].data), 56);
    // Exactly at an entry's time lands on that entry, in a later ledger.
    let at = sub.reset_to_publish_time(base + 10 * 730).await.unwrap();
    assert_eq!(at, confirmed[730]);
    // Before everything: the first entry.
    assert_eq!(sub.reset_to_publish_time(0).await.unwrap(), confirmed[0]);

    // Ack the first 350 entries: 3 full ledgers are consumed and trimmed.
    let before: BTreeSet<u64> = ledgers.list().await.unwrap().into_iter().collect();
    sub.ack_cumulative(confirmed[349]).unwrap();
    ml.trim().await.unwrap();
    let stats = ml.stats();
    assert_eq!(stats.ledgers.len(), 8);
    assert_eq!(stats.ledgers[0].ledger_id, confirmed[300].ledger_id);
    let after: BTreeSet<u64> = ledgers.list().await.unwrap().into_iter().collect();
    let gone: Vec<u64> = before.difference(&after).copied().collect();
    assert_eq!(gone.len(), 3, "three ledgers deleted: {gone:?}");
    for b in &cluster.bookies {
        for id in &gone {
            assert!(
                ledgers
                    .read_from_bookie(&b.addr, *id, 0)
                    .await
                    .unwrap()
                    .is_none(),
                "ledger {id} still on bookie {}",
                b.id
            );
        }
    }
    // Reading a trimmed position fails clearly; reads from the new start work.
    assert!(matches!(
        ml.read_entry(confirmed[0]).await,
        Err(MlError::InvalidPosition(_))
    ));

    // TTL: everything published before base + 8000 ms has expired, relative
    // to a clock we control through the entries' publish times: entries are
    // "now - 10 s" old except the last 200.
    drop(ml);
    let ml2 = f
        .open(
            "t/ns/ttl",
            ManagedLedgerConfig {
                message_ttl: Some(Duration::from_secs(5)),
                ..config(100)
            },
        )
        .await
        .unwrap();
    let sub2 = ml2
        .open_cursor("sub", InitialPosition::Earliest)
        .await
        .unwrap();
    let now = magnetar_managed_ledger_now();
    let mut last_old: Option<Position> = None;
    let mut first_live: Option<Position> = None;
    for i in 0..500u64 {
        let t = if i < 300 { now - 10_000 } else { now + 60_000 };
        let p = ml2.append(&payload(i), t).await.unwrap();
        if i == 299 {
            last_old = Some(p);
        }
        if i == 300 {
            first_live = Some(p);
        }
    }
    ml2.housekeeping().await.unwrap();
    assert_eq!(sub2.mark_delete_position(), last_old.unwrap());
    assert_eq!(sub2.backlog().0, 200);
    let first = sub2.read_entries(1).await.unwrap();
    assert_eq!(index_of(&first[0].data), 300);
    // The three ledgers holding only expired entries were trimmed: two full
    // ones and the open one are left.
    let left = ml2.stats().ledgers;
    assert_eq!(left.len(), 3, "{left:?}");
    assert_eq!(left[0].ledger_id, first_live.unwrap().ledger_id);

    // No subscriptions: retention by size keeps only about that much.
    let ml3 = f
        .open(
            "t/ns/nosubs",
            ManagedLedgerConfig {
                retention_time: None,
                retention_bytes: Some(2_000),
                ..config(100)
            },
        )
        .await
        .unwrap();
    append_range(&ml3, 0, 1_000, 100).await;
    ml3.trim().await.unwrap();
    let (_, bytes) = ml3.size();
    // Each ledger holds 1,000 bytes (100 entries of 10 bytes): closed ledgers
    // go while the total is above 2,000 bytes.
    assert!(bytes <= 2_000, "{bytes} bytes kept");
    f.shutdown().await;
}

fn magnetar_managed_ledger_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

async fn wait_until(cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "condition not reached within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

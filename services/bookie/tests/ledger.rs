//! The ledger service under failure: real `magnetar-meta` and `magnetar-bookie`
//! processes (libs/testkit), the real ledger client in this process.

use std::time::{Duration, Instant};

use futures::StreamExt;
use magnetar_ledger::{LedgerClient, LedgerClientConfig, LedgerError, LedgerState};
use magnetar_meta_client::{ClientConfig, MetaClient};
use magnetar_testkit::{bin_path, BookieCluster, Process};

fn payload(i: i64) -> Vec<u8> {
    format!("entry-{i:08}-{}", "x".repeat((i % 97) as usize)).into_bytes()
}

/// Appends `payload(0..n)` with `window` in flight; every append must succeed.
async fn append_all(w: &magnetar_ledger::LedgerWriter, n: i64, window: usize) {
    let mut results = futures::stream::iter(0..n)
        .map(|i| {
            let w = w.clone();
            async move { w.append(payload(i)).await }
        })
        .buffered(window);
    while let Some(r) = results.next().await {
        r.unwrap();
    }
}

/// A sample summed over scrapes of several bookies.
fn summed(texts: &[String], name: &str) -> f64 {
    texts
        .iter()
        .map(|t| magnetar_testkit::http::metric(t, name).unwrap_or(f64::NAN))
        .sum()
}

async fn ledger_client(cluster: &BookieCluster, bookies: usize) -> LedgerClient {
    let meta = MetaClient::new(ClientConfig::from_list(&cluster.meta.endpoints())).unwrap();
    let cfg = LedgerClientConfig {
        add_timeout: Duration::from_secs(3),
        ..Default::default()
    };
    let c = LedgerClient::new(meta, cfg);
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.available_bookies().await.map_or(0, |b| b.len()) < bookies {
        assert!(Instant::now() < deadline, "bookies did not register");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c
}

/// E=3 Qw=2 Qa=2 over 4 bookies; an ensemble bookie is SIGKILLed mid-run. The
/// writer replaces it (ensemble change) and goes on; every acknowledged entry
/// reads back intact afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_entries_survive_a_bookie_kill() {
    let mut cluster = BookieCluster::start(1, 4);
    cluster.wait_ready(Duration::from_secs(30)).await;
    let c = ledger_client(&cluster, 4).await;
    let w = c.create(3, 2, 2, b"pw").await.unwrap();
    let victim_addr = w.metadata().ensembles[0].bookies[1].clone();
    let total = 30_000i64;
    let kill_at = total / 3;
    let mut acked = Vec::new();
    let mut results = futures::stream::iter(0..total)
        .map(|i| {
            let w = w.clone();
            async move { (i, w.append(payload(i)).await) }
        })
        .buffered(256);
    let mut killed = false;
    while let Some((i, r)) = results.next().await {
        match r {
            Ok(id) => {
                assert_eq!(id, i);
                acked.push(id);
            }
            Err(e) => panic!("append {i} failed although a replacement bookie exists: {e}"),
        }
        if !killed && i >= kill_at {
            let victim = cluster.bookie_at(&victim_addr);
            victim.process.kill();
            killed = true;
        }
    }
    let meta = w.close().await.unwrap();
    assert_eq!(meta.last_entry_id, total - 1);
    assert!(
        meta.ensembles.len() >= 2,
        "expected an ensemble change: {:?}",
        meta.ensembles
    );
    assert!(!meta
        .ensembles
        .last()
        .unwrap()
        .bookies
        .contains(&victim_addr));
    let r = c.open(meta.id, b"pw").await.unwrap();
    let data = r.read_range(0, total - 1).await.unwrap();
    for (i, d) in data.iter().enumerate() {
        assert_eq!(d, &payload(i as i64), "entry {i}");
    }
    assert_eq!(acked.len() as i64, total);
}

/// A writer process is SIGKILLed mid-stream; recovery by another client closes
/// the ledger at or after the last entry the writer saw acknowledged, and all
/// of those entries read back. An in-process writer fenced by a recovery gets
/// "fenced" on its next append.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recovery_fences_the_writer_and_keeps_acknowledged_entries() {
    let cluster = BookieCluster::start(1, 3);
    cluster.wait_ready(Duration::from_secs(30)).await;
    let c = ledger_client(&cluster, 3).await;

    let args: Vec<String> = [
        "ledger",
        "--meta",
        &cluster.meta.endpoints(),
        "--password",
        "pw",
        "write",
        "--entries",
        "1000000",
        "--entry-size",
        "200",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut writer = Process::new(
        "writer",
        bin_path("magnetar"),
        args,
        cluster.meta.dir.path(),
    );
    writer.start();
    let log = writer.log_path.clone();
    let last_acked = |text: &str| -> i64 {
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["acked"].as_i64())
            .max()
            .unwrap_or(-1)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while last_acked(&std::fs::read_to_string(&log).unwrap_or_default()) < 2000 {
        assert!(
            Instant::now() < deadline,
            "writer made no progress:\n{}",
            writer.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    writer.kill();
    let text = std::fs::read_to_string(&log).unwrap();
    let seen = last_acked(&text);
    let ledger = text
        .lines()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["ledger"].as_u64())
        .unwrap();
    let r = c.open_recover(ledger, b"pw").await.unwrap();
    let meta = r.metadata().clone();
    assert_eq!(meta.state, LedgerState::Closed);
    assert!(
        meta.last_entry_id >= seen,
        "recovered to {} but the writer saw {seen} acknowledged",
        meta.last_entry_id
    );
    let data = r.read_range(0, meta.last_entry_id).await.unwrap();
    assert_eq!(data.len() as i64, meta.last_entry_id + 1);
    // A second recovery agrees.
    let again = c.open_recover(ledger, b"pw").await.unwrap();
    assert_eq!(again.metadata().last_entry_id, meta.last_entry_id);
    // Wrong password is refused before any bookie is touched.
    assert!(matches!(
        c.open_recover(ledger, b"nope").await,
        Err(LedgerError::Unauthorized(_))
    ));

    // In-process writer, fenced by a concurrent recovery.
    let w = c.create(3, 2, 2, b"pw2").await.unwrap();
    for i in 0..100 {
        w.append(payload(i)).await.unwrap();
    }
    let other = ledger_client(&cluster, 3).await;
    let recovered = other.open_recover(w.id(), b"pw2").await.unwrap();
    assert!(recovered.metadata().last_entry_id >= 99);
    let err = w.append(payload(100)).await.unwrap_err();
    assert!(
        matches!(err, LedgerError::Fenced(_)),
        "expected fenced, got {err}"
    );
    assert!(
        w.close().await.is_err(),
        "a fenced writer cannot close the ledger"
    );
}

/// A bookie SIGKILLed before any checkpoint replays its journal on restart: every
/// acknowledged entry is there. A torn record at the journal's tail is cut off.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bookie_restart_replays_the_journal_and_cuts_a_torn_tail() {
    let mut cluster = BookieCluster::start(1, 1);
    cluster.wait_ready(Duration::from_secs(30)).await;
    let c = ledger_client(&cluster, 1).await;
    let w = c.create(1, 1, 1, b"pw").await.unwrap();
    let n = 2000;
    append_all(&w, n, 128).await;
    let id = w.id();
    cluster.bookies[0].process.kill();
    // Tear the tail: a partial record after the last good one.
    let journal_dir = cluster.meta.dir.path().join("bookie-b1").join("journal");
    // The newest segment with records: the one after it, if any, is the spare
    // the bookie prepared for its next roll and holds only its 12-byte header.
    let mut segments: Vec<_> = std::fs::read_dir(&journal_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("journal-"))
                && std::fs::metadata(p).unwrap().len() > 12
        })
        .collect();
    segments.sort();
    let last = segments.last().expect("a journal segment").clone();
    let mut bytes = std::fs::read(&last).unwrap();
    bytes.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3]);
    std::fs::write(&last, bytes).unwrap();
    cluster.bookies[0].process.start();
    cluster.wait_ready(Duration::from_secs(30)).await;
    // The writer's ledger is still open; read what it confirmed.
    let r = c.open(id, b"pw").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let data = loop {
        match r.read_range(0, n - 1).await {
            Ok(d) => break d,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "entries not readable after restart: {e}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    for (i, d) in data.iter().enumerate() {
        assert_eq!(d, &payload(i as i64));
    }
    // The bookie keeps working after the cut.
    let w2 = c.create(1, 1, 1, b"pw").await.unwrap();
    assert_eq!(w2.append(b"after".to_vec()).await.unwrap(), 0);
}

/// `magnetar ledger simpletest` writes, reads back and verifies; `bookies list`
/// shows the registered bookies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_simpletest_and_bookies_list() {
    let cluster = BookieCluster::start(1, 3);
    cluster.wait_ready(Duration::from_secs(30)).await;
    let _ = ledger_client(&cluster, 3).await;
    let ep = cluster.meta.endpoints();
    let out = std::process::Command::new(bin_path("magnetar"))
        .args([
            "ledger",
            "--meta",
            &ep,
            "simpletest",
            "--ensemble",
            "3",
            "--write-quorum",
            "2",
            "--ack-quorum",
            "2",
            "--entries",
            "2000",
            "--entry-size",
            "1024",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verified"], true);
    assert!(v["write_entries_per_sec"].as_f64().unwrap() > 0.0);
    // Every acknowledged add's wait for its journal record is split into the
    // queue before its batch and the hand-off after it (the batch in between
    // is the journal's own histogram): one sample each per add, never more
    // than the whole.
    let texts = cluster.metrics_of_all().await;
    let adds = summed(&texts, "magnetar_bookie_adds_total");
    assert!(adds >= 4000.0, "2000 entries on 2 bookies each, got {adds}");
    for part in ["queue", "resume", "journal"] {
        let count = summed(
            &texts,
            &format!("magnetar_bookie_add_{part}_latency_seconds_count"),
        );
        assert_eq!(count, adds, "{part}: one sample per add");
    }
    let whole = summed(&texts, "magnetar_bookie_add_journal_latency_seconds_sum");
    let queued = summed(&texts, "magnetar_bookie_add_queue_latency_seconds_sum");
    let resumed = summed(&texts, "magnetar_bookie_add_resume_latency_seconds_sum");
    assert!(
        queued > 0.0 && resumed > 0.0 && queued + resumed <= whole,
        "queue {queued} s + resume {resumed} s within the wait for the journal {whole} s"
    );
    let out = std::process::Command::new(bin_path("magnetar"))
        .args(["bookies", "--meta", &ep, "list"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["bookies"].as_array().unwrap().len(), 3);
    let out = std::process::Command::new(bin_path("magnetar"))
        .args(["ledger", "--meta", &ep, "list"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ledgers"].as_array().unwrap().len(), 1);
}

/// A bookie gone for good: the auditor (elected among the bookies) copies its
/// fragments to a new bookie and rewrites the metadata; every entry is back on
/// `Qw` bookies.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lost_bookie_is_re_replicated_to_a_new_one() {
    let mut cluster = BookieCluster::start_with(1, 3, &["--auditor-grace-seconds", "2"]);
    cluster.wait_ready(Duration::from_secs(30)).await;
    let c = ledger_client(&cluster, 3).await;
    let w = c.create(3, 2, 2, b"pw").await.unwrap();
    let n = 600;
    append_all(&w, n, 64).await;
    let meta = w.close().await.unwrap();
    let victim = meta.ensembles[0].bookies[0].clone();
    cluster.bookie_at(&victim).process.kill();
    cluster.add_bookie();
    let deadline = Instant::now() + Duration::from_secs(90);
    let meta = loop {
        let m = c.metadata(meta.id).await.unwrap();
        if !m.all_bookies().contains(&victim) {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "ledger still names the lost bookie: {:?}",
            m.ensembles
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    for e in 0..n {
        let frag = meta.fragment_for(e).unwrap();
        for p in magnetar_ledger::write_set(e, meta.ensemble_size, meta.write_quorum) {
            let got = c
                .read_from_bookie(&frag.bookies[p], meta.id, e)
                .await
                .unwrap();
            assert_eq!(
                got,
                Some(payload(e)),
                "entry {e} missing on {}",
                frag.bookies[p]
            );
        }
    }
    let out = std::process::Command::new(bin_path("magnetar"))
        .args([
            "ledger",
            "--meta",
            &cluster.meta.endpoints(),
            "underreplicated",
        ])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ledgers"].as_array().map(Vec::len), Some(0), "{v}");
}

/// Reads stay fast with a stalled (SIGSTOPped) bookie thanks to speculative
/// reads; a tailing reader's LAC long-poll wakes when the writer confirms more;
/// a read-only bookie (disk "full") is never chosen for new ledgers; deleting a
/// ledger removes its data from the bookies.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn speculative_reads_tailing_read_only_and_delete() {
    let mut cluster = BookieCluster::start(1, 3);
    let read_only = cluster.add_bookie_with(&["--min-free-bytes", "18446744073709551615"]);
    cluster.wait_ready(Duration::from_secs(30)).await;
    let c = ledger_client(&cluster, 4).await;
    let ro_addr = cluster.bookie(&read_only).addr.clone();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !c
        .available_bookies()
        .await
        .unwrap()
        .iter()
        .any(|b| b.address == ro_addr && b.read_only)
    {
        assert!(Instant::now() < deadline, "bookie never reported read-only");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for _ in 0..5 {
        let w = c.create(3, 3, 2, b"pw").await.unwrap();
        assert!(
            !w.metadata().all_bookies().contains(&ro_addr),
            "a read-only bookie was chosen"
        );
        w.close().await.unwrap();
    }

    // Tailing: a reader long-polls the LAC of an open ledger.
    let w = c.create(3, 3, 2, b"pw").await.unwrap();
    for i in 0..200 {
        w.append(payload(i)).await.unwrap();
    }
    let r = c.open(w.id(), b"pw").await.unwrap();
    let lac = r.last_add_confirmed().await.unwrap();
    assert!((198..=199).contains(&lac), "LAC {lac}");
    let poll = tokio::spawn(async move { r.read_lac(lac, Duration::from_secs(10)).await.unwrap() });
    tokio::time::sleep(Duration::from_millis(100)).await;
    w.append(payload(200)).await.unwrap();
    w.append(payload(201)).await.unwrap();
    let newer = poll.await.unwrap();
    assert!(newer > lac, "long-poll returned {newer}, not above {lac}");
    let meta = w.close().await.unwrap();

    // Speculative reads: stall the first bookie of the ensemble.
    let stalled = meta.ensembles[0].bookies[0].clone();
    cluster.bookie_at(&stalled).process.pause();
    let r = c.open(meta.id, b"pw").await.unwrap();
    let started = Instant::now();
    let data = r.read_range(0, meta.last_entry_id).await.unwrap();
    let took = started.elapsed();
    cluster.bookie_at(&stalled).process.resume();
    assert_eq!(data.len(), 202);
    assert_eq!(data[150], payload(150));
    // Without speculation, a third of the reads would each wait out the 5 s request timeout.
    assert!(
        took < Duration::from_secs(20),
        "reads took {took:?} with one stalled bookie"
    );

    // Delete: metadata gone, bookies no longer have the entries.
    let some_bookie = meta.ensembles[0].bookies[1].clone();
    assert!(c
        .read_from_bookie(&some_bookie, meta.id, 1)
        .await
        .unwrap()
        .is_some());
    c.delete(meta.id).await.unwrap();
    assert!(matches!(
        c.metadata(meta.id).await,
        Err(LedgerError::NoSuchLedger(_))
    ));
    assert!(c
        .read_from_bookie(&some_bookie, meta.id, 1)
        .await
        .unwrap()
        .is_none());
}

/// The setup: 3 bookies, E=3 Qw=2 Qa=2, one SIGKILLed mid-run with no
/// spare to replace it. The writer stops (it cannot form a new ensemble); every
/// entry it had acknowledged reads back intact from the survivors. Recovery
/// needs `Qa` reachable bookies per tail entry, so it refuses while the bookie
/// is down and succeeds once it is back; two recoveries running at once agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_spare_bookie_acknowledged_entries_are_recovered() {
    let mut cluster = BookieCluster::start(1, 3);
    cluster.wait_ready(Duration::from_secs(30)).await;
    let c = ledger_client(&cluster, 3).await;
    let w = c.create(3, 2, 2, b"pw").await.unwrap();
    let victim = w.metadata().ensembles[0].bookies[2].clone();
    let (total, kill_at) = (100_000i64, 30_000i64);
    let mut acked = Vec::new();
    let mut failed = 0;
    let mut results = futures::stream::iter(0..total)
        .map(|i| {
            let w = w.clone();
            async move { w.append(payload(i)).await }
        })
        .buffered(256);
    let mut killed = false;
    while let Some(r) = results.next().await {
        match r {
            Ok(id) => acked.push(id),
            Err(_) => failed += 1,
        }
        if !killed && acked.len() as i64 >= kill_at {
            cluster.bookie_at(&victim).process.kill();
            killed = true;
        }
    }
    assert!(failed > 0, "with no spare bookie the writer must stop");
    let last_acked = *acked.last().unwrap();
    assert_eq!(
        acked,
        (0..=last_acked).collect::<Vec<_>>(),
        "acknowledgements come in id order"
    );
    let r = c.open(w.id(), b"pw").await.unwrap();
    let data = r.read_range(0, last_acked).await.unwrap();
    for (i, d) in data.iter().enumerate() {
        assert_eq!(d, &payload(i as i64), "entry {i}");
    }
    let err = c
        .open_recover(w.id(), b"pw")
        .await
        .err()
        .expect("recovery needs Qa bookies");
    assert!(matches!(err, LedgerError::RecoveryFailed { .. }), "{err}");
    cluster.bookie_at(&victim).process.start();
    cluster.wait_ready(Duration::from_secs(30)).await;
    let (a, b) = tokio::join!(c.open_recover(w.id(), b"pw"), c.open_recover(w.id(), b"pw"));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        a.metadata().last_entry_id,
        b.metadata().last_entry_id,
        "concurrent recoveries disagree"
    );
    assert!(a.metadata().last_entry_id >= last_acked);
    let data = a.read_range(0, a.metadata().last_entry_id).await.unwrap();
    for (i, d) in data.iter().enumerate() {
        assert_eq!(d, &payload(i as i64), "entry {i}");
    }
}

/// The writer of an E=Qw=Qa=2 ledger dies (its last entries are past the
/// LAC the bookies know), then a bookie of its ensemble dies too. Recovery
/// must still close the ledger with every acknowledged entry: one bookie
/// fences, one answers each read, and the rewrite of the tail goes to the
/// spare bookie through an ensemble change made during recovery. (Before
/// that, the rewrite needed both original members and a topic stayed
/// unavailable: issue 27.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recovery_replaces_a_dead_member_of_the_ensemble() {
    let mut cluster = BookieCluster::start(1, 3);
    cluster.wait_ready(Duration::from_secs(30)).await;
    let c = ledger_client(&cluster, 3).await;
    let w = c.create(2, 2, 2, b"pw").await.unwrap();
    let ensemble = w.metadata().ensembles[0].bookies.clone();
    append_all(&w, 2_000, 64).await;
    let last_acked = w.last_add_confirmed();
    assert_eq!(last_acked, 1_999);
    let victim = ensemble[1].clone();
    cluster.bookie_at(&victim).process.kill();
    let r = c.open_recover(w.id(), b"pw").await.unwrap();
    let meta = r.metadata();
    assert_eq!(meta.state, LedgerState::Closed);
    assert!(
        meta.last_entry_id >= last_acked,
        "closed at {} < {last_acked}",
        meta.last_entry_id
    );
    let spare = cluster
        .bookies
        .iter()
        .map(|b| b.addr.clone())
        .find(|a| !ensemble.contains(a))
        .unwrap();
    let last = meta.last_fragment().unwrap();
    assert!(
        last.bookies.contains(&spare) && !last.bookies.contains(&victim),
        "the tail was rewritten under a new ensemble: {:?}",
        meta.ensembles
    );
    let data = r.read_range(0, meta.last_entry_id).await.unwrap();
    for (i, d) in data.iter().enumerate() {
        assert_eq!(d, &payload(i as i64), "entry {i}");
    }
    assert!(
        w.append(payload(9_999)).await.is_err(),
        "the old writer is fenced"
    );
}

/// A bookie that stops answering without closing its connection (SIGSTOP) is
/// noticed only by the add timeout: with Qw=Qa=3 every append waits for it, so
/// the appends finish only if the writer gives up on it after the timeout and
/// resends to a replacement.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_silent_bookie_is_replaced_after_the_add_timeout() {
    let mut cluster = BookieCluster::start(1, 4);
    cluster.wait_ready(Duration::from_secs(30)).await;
    let c = ledger_client(&cluster, 4).await;
    let w = c.create(3, 3, 3, b"pw").await.unwrap();
    append_all(&w, 100, 16).await;
    let silent = w.metadata().ensembles[0].bookies[2].clone();
    let process = &cluster.bookie_at(&silent).process;
    process.pause();
    let started = Instant::now();
    let more = tokio::time::timeout(Duration::from_secs(30), async {
        let mut results = futures::stream::iter(100..300)
            .map(|i| {
                let w = w.clone();
                async move { (i, w.append(payload(i)).await) }
            })
            .buffered(16);
        while let Some((i, r)) = results.next().await {
            assert_eq!(r.unwrap(), i);
        }
    })
    .await;
    let took = started.elapsed();
    process.resume();
    more.expect("appends never completed: the silent bookie was not replaced");
    assert!(
        took >= Duration::from_secs(3),
        "appends completed in {took:?}, before the add timeout, with Qa=3 and one bookie stopped"
    );
    let meta = w.close().await.unwrap();
    assert_eq!(meta.last_entry_id, 299);
    assert!(!meta.ensembles.last().unwrap().bookies.contains(&silent));
    let data = c
        .open(meta.id, b"pw")
        .await
        .unwrap()
        .read_range(0, 299)
        .await
        .unwrap();
    for (i, d) in data.iter().enumerate() {
        assert_eq!(d, &payload(i as i64), "entry {i}");
    }
}

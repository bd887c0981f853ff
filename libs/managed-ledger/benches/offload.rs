//! `make bench-offload`: tiered storage against the S3 server the tests use
//! (moto's server mode, SigV4 checked, on loopback), all in one run:
//! 1. the server's raw throughput: PUT then GET of 8 MiB objects through the
//!    `object_store` client, as many in flight as the offloader uses;
//! 2. a backlog (2 GiB; `MAGNETAR_BENCH_OFFLOAD_BYTES` changes it) appended to
//!    a managed ledger over real bookie processes, then offloaded;
//! 3. the bookie copies deleted and a cursor draining the whole backlog from
//!    the object store.
//!
//! Reported as ratios to the raw figures, with this process's resident memory
//! growth (the managed ledger runs here, as in a broker). Writes
//! docs/BENCHMARKS.md.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::{self, StreamExt};
use magnetar_ledger::{LedgerClient, LedgerClientConfig};
use magnetar_managed_ledger::{
    FactoryConfig, InitialPosition, ManagedLedger, ManagedLedgerConfig, ManagedLedgerFactory,
    OffloadPolicy, ReadPriority,
};
use magnetar_meta_client::{ClientConfig, MetaClient};
use magnetar_offload::{Driver, DriverConfig, Offloader, StaticCredentials};
use magnetar_testkit::{BookieCluster, S3Server};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};

const OBJECT: usize = 8 << 20;
const RAW_OBJECTS: usize = 32;
const ENTRY: usize = 128 << 10;
const MIB: f64 = (1 << 20) as f64;

fn backlog_bytes() -> u64 {
    std::env::var("MAGNETAR_BENCH_OFFLOAD_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2 << 30)
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// The highest RSS seen while it runs (sampled every 50 ms).
struct RssPeak {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl RssPeak {
    fn start() -> Self {
        let peak = Arc::new(AtomicU64::new(rss_bytes()));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss_bytes(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        RssPeak { peak, stop }
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.peak
            .fetch_max(rss_bytes(), Ordering::Relaxed)
            .max(rss_bytes())
    }
}

fn driver(s3: &S3Server) -> DriverConfig {
    let mut c = DriverConfig::new(Driver::S3, &s3.bucket);
    c.region = Some(s3.region.clone());
    c.endpoint = Some(s3.endpoint());
    c.credentials = Some(StaticCredentials {
        access_key_id: s3.access_key_id.clone(),
        secret_access_key: s3.secret_access_key.clone(),
    });
    // Catch-up reads fetch 8 MiB at a time, the raw GET's object size.
    c.read_buffer_size = OBJECT;
    c
}

/// Raw PUT and GET rates (MiB/s) of 8 MiB objects, `concurrency` at a time.
async fn raw_rates(s3: &S3Server, concurrency: usize) -> (f64, f64) {
    let store = AmazonS3Builder::new()
        .with_bucket_name(&s3.bucket)
        .with_region(&s3.region)
        .with_endpoint(s3.endpoint())
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .with_access_key_id(&s3.access_key_id)
        .with_secret_access_key(&s3.secret_access_key)
        .build()
        .expect("S3 client");
    let payload = Bytes::from(vec![7u8; OBJECT]);
    let name = |i: usize| ObjectPath::from(format!("raw/{i}"));
    let started = Instant::now();
    stream::iter(0..RAW_OBJECTS)
        .map(|i| {
            let (store, payload) = (&store, payload.clone());
            async move { store.put(&name(i), PutPayload::from(payload)).await }
        })
        .buffer_unordered(concurrency)
        .for_each(|r| async move {
            r.expect("raw PUT");
        })
        .await;
    let put = (RAW_OBJECTS * OBJECT) as f64 / MIB / started.elapsed().as_secs_f64();
    let started = Instant::now();
    for i in 0..RAW_OBJECTS {
        let got = store.get(&name(i)).await.expect("raw GET");
        assert_eq!(got.bytes().await.expect("raw GET body").len(), OBJECT);
    }
    let get = (RAW_OBJECTS * OBJECT) as f64 / MIB / started.elapsed().as_secs_f64();
    for i in 0..RAW_OBJECTS {
        store.delete(&name(i)).await.expect("raw DELETE");
    }
    (put, get)
}

async fn factory(cluster: &BookieCluster) -> ManagedLedgerFactory {
    let meta = MetaClient::new(ClientConfig::from_list(&cluster.meta.endpoints())).unwrap();
    let ledgers = LedgerClient::new(meta.clone(), LedgerClientConfig::default());
    let deadline = Instant::now() + Duration::from_secs(30);
    while ledgers.available_bookies().await.map_or(0, |b| b.len()) < cluster.bookies.len() {
        assert!(Instant::now() < deadline, "bookies did not register");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cfg = FactoryConfig {
        cache_max_bytes: 64 << 20,
        housekeeping_interval: Duration::from_secs(3600),
    };
    ManagedLedgerFactory::new(meta, ledgers, cfg)
}

/// Ledgers the backlog fills exactly; the entry after it starts the next.
const LEDGERS: u64 = 8;

fn backlog_entries() -> u64 {
    backlog_bytes().div_ceil(ENTRY as u64 * LEDGERS) * LEDGERS
}

async fn fill(ml: &ManagedLedger, entries: u64) {
    let payload = vec![5u8; ENTRY];
    let mut pending = std::collections::VecDeque::new();
    for _ in 0..entries {
        pending.push_back(ml.append(&payload, 0));
        if pending.len() >= 64 {
            pending.pop_front().unwrap().await.expect("append");
        }
    }
    for p in pending {
        p.await.expect("append");
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let cluster = BookieCluster::start(1, 2);
    cluster.wait_ready(Duration::from_secs(60)).await;
    let s3 = S3Server::start("bench");
    let cfg = driver(&s3);
    let (raw_put, raw_get) = raw_rates(&s3, cfg.upload_concurrency).await;
    println!("raw: PUT {raw_put:.0} MiB/s, GET {raw_get:.0} MiB/s");

    let f = factory(&cluster).await;
    let ml_cfg = ManagedLedgerConfig {
        ensemble_size: 2,
        write_quorum: 2,
        ack_quorum: 2,
        max_entries_per_ledger: (backlog_entries() / LEDGERS) as i64,
        retention_time: None,
        retention_bytes: None,
        ..Default::default()
    };
    let ml = f.open("bench/offload/backlog", ml_cfg).await.unwrap();
    let cursor = ml
        .open_cursor("drain", InitialPosition::Earliest)
        .await
        .unwrap();
    let entries = backlog_entries();
    fill(&ml, entries).await;
    let backlog = entries * ENTRY as u64;
    // The last ledger is full and closed; this starts the next, which stays.
    ml.append(b"tail", 0).await.unwrap();
    let offloader = Offloader::new(cfg).expect("offloader");
    let policy = |lag| OffloadPolicy {
        offloader: Some(offloader.clone()),
        deletion_lag: lag,
        read_priority: ReadPriority::BookkeeperFirst,
        threshold_bytes: None,
        threshold_age: None,
    };
    ml.set_offload_policy(policy(None));

    let rss_before = rss_bytes();
    let peak = RssPeak::start();
    let started = Instant::now();
    ml.offload_up_to(ml.last_confirmed())
        .await
        .expect("offload");
    let offload_secs = started.elapsed().as_secs_f64();
    let offloaded: u64 = ml
        .stats()
        .ledgers
        .iter()
        .filter(|l| l.offloaded)
        .map(|l| l.size)
        .sum();
    assert!(
        offloaded >= backlog,
        "offloaded {offloaded} of {backlog} bytes"
    );
    let offload_rate = offloaded as f64 / MIB / offload_secs;
    println!(
        "offload: {:.0} MiB in {offload_secs:.1} s",
        offloaded as f64 / MIB
    );

    // Bookie copies gone: every read below comes from the object store.
    ml.set_offload_policy(policy(Some(Duration::ZERO)));
    ml.offload_housekeeping()
        .await
        .expect("delete bookie copies");
    let started = Instant::now();
    let mut read = 0u64;
    let mut bytes = 0u64;
    while read < entries {
        let batch = cursor.read_entries(64).await.expect("catch-up read");
        assert!(!batch.is_empty(), "drained {read} of {entries}");
        read += batch.len() as u64;
        bytes += batch.iter().map(|e| e.data.len() as u64).sum::<u64>();
        cursor
            .ack_cumulative(batch.last().unwrap().position)
            .expect("ack");
    }
    let read_secs = started.elapsed().as_secs_f64();
    let read_rate = bytes as f64 / MIB / read_secs;
    let growth = peak.finish().saturating_sub(rss_before);
    f.shutdown().await;

    let section = format!(
        "## bench-offload\n\n\
         Machine: {machine}. Date: {date}. Command: `make bench-offload`.\n\n\
         moto's S3 server (SigV4 checked) on loopback; the managed ledger in the bench\n\
         process over 1 metadata node and 2 bookie processes (E=Qw=Qa=2); {gib:.2} GiB\n\
         backlog of {entry} KiB entries in {LEDGERS} ledgers; 8 MiB parts, {conc} uploads in\n\
         flight, 8 MiB read-ahead.\n\n\
         | step | MiB/s | ratio | target |\n|---|---|---|---|\n\
         | raw PUT, 8 MiB objects, {conc} in flight | {raw_put:.0} | 1 | |\n\
         | offload of the backlog | {offload_rate:.0} | {r_off:.2} | ≥ 0.7 of raw PUT |\n\
         | raw GET, 8 MiB objects, one at a time | {raw_get:.0} | 1 | |\n\
         | catch-up read from the object store | {read_rate:.0} | {r_read:.2} | ≥ 0.7 of raw GET |\n\n\
         Resident memory growth during offload and catch-up read: {growth:.0} MiB (target\n\
         under 256 MiB).\n",
        machine = magnetar_testkit::bench_report::machine(),
        date = magnetar_testkit::bench_report::now_utc(),
        gib = backlog as f64 / (1u64 << 30) as f64,
        entry = ENTRY >> 10,
        conc = offloader.config().upload_concurrency,
        r_off = offload_rate / raw_put,
        r_read = read_rate / raw_get,
        growth = growth as f64 / MIB,
    );
    let doc = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/BENCHMARKS.md");
    magnetar_testkit::bench_report::write_section(&doc, "bench-offload", &section)
        .expect("write docs/BENCHMARKS.md");
    print!("{section}");
}

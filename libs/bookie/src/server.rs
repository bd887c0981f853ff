//! Starting one bookie: storage, journal replay, the gRPC server, and the
//! background duties (checkpoints, disk watch, registration in metadata).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use magnetar_ledger::{AutoRecovery, AutoRecoveryConfig};
use magnetar_ledger::{LedgerClient, LedgerClientConfig};
use magnetar_meta_client::{ClientConfig, MetaClient, PutOptions};
use magnetar_proto::bookie::bookie_server::BookieServer;
use prometheus::Registry;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::bookie::{Bookie, BookieError};
use crate::disk::DiskMonitor;
use crate::entry_store::{EntryStore, StoreError};
use crate::journal::{Journal, JournalConfig, JournalError};
use crate::metrics::BookieMetrics;
use crate::service::BookieService;

/// Where available bookies register (`{prefix}{id}` -> `BookieRegistration` JSON).
pub const AVAILABLE_PREFIX: &str = "/bookies/available/";

#[derive(Clone, Debug)]
pub struct BookieConfig {
    pub id: String,
    pub listen: SocketAddr,
    /// Address clients use (default: `listen`).
    pub advertise: Option<String>,
    pub rack: String,
    /// Metadata service endpoints; without them the bookie does not register.
    pub meta: Option<String>,
    pub journal_dir: PathBuf,
    pub ledger_dir: PathBuf,
    /// fdatasync every journal batch. Off only for benchmarks.
    pub journal_sync: bool,
    /// Retired journal segments kept for reuse (0: always new files).
    pub journal_recycle_segments: usize,
    /// Below this many free bytes the bookie turns read-only.
    pub min_free_bytes: u64,
    pub checkpoint_interval: Duration,
    pub lease_ttl_seconds: i64,
    pub max_entry_bytes: usize,
    /// Take part in auto-recovery: campaign for the auditor role and
    /// re-replicate the ledgers of bookies missing longer than this.
    pub auditor_grace: Option<Duration>,
}

impl BookieConfig {
    pub fn new(id: &str, listen: SocketAddr, data_dir: PathBuf) -> Self {
        Self {
            id: id.to_string(),
            listen,
            advertise: None,
            rack: "default".into(),
            meta: None,
            journal_dir: data_dir.join("journal"),
            ledger_dir: data_dir.join("ledgers"),
            journal_sync: true,
            journal_recycle_segments: 4,
            min_free_bytes: 1 << 30,
            checkpoint_interval: Duration::from_secs(30),
            lease_ttl_seconds: 10,
            max_entry_bytes: 6 << 20,
            auditor_grace: Some(Duration::from_secs(30)),
        }
    }

    pub fn advertised(&self) -> String {
        self.advertise
            .clone()
            .unwrap_or_else(|| self.listen.to_string())
    }
}

/// What a bookie publishes about itself under `/bookies/available/{id}`.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct BookieRegistration {
    pub id: String,
    pub address: String,
    pub rack: String,
    pub free_bytes: u64,
    pub read_only: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("journal: {0}")]
    Journal(#[from] JournalError),
    #[error("entry storage: {0}")]
    Store(#[from] StoreError),
    #[error("recovery: {0}")]
    Recover(#[from] BookieError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("metadata client: {0}")]
    Meta(#[from] magnetar_meta_client::Error),
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub struct BookieServerHandle {
    pub bookie: Arc<Bookie>,
    pub local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl BookieServerHandle {
    pub async fn start(cfg: BookieConfig, registry: &Registry) -> Result<Self, StartError> {
        if !cfg.journal_sync {
            tracing::warn!("journal fsync is OFF: acknowledged entries can be lost on a crash (benchmarks only)");
        }
        std::fs::create_dir_all(&cfg.journal_dir)?;
        std::fs::create_dir_all(&cfg.ledger_dir)?;
        let store = {
            let dir = cfg.ledger_dir.join("index");
            tokio::task::spawn_blocking(move || EntryStore::open(&dir))
                .await
                .map_err(std::io::Error::other)??
        };
        let checkpoint = store.last_checkpoint()?;
        let metrics = Arc::new(BookieMetrics::new(registry)?);
        let mut jcfg = JournalConfig::new(cfg.journal_dir.clone());
        jcfg.sync = cfg.journal_sync;
        jcfg.recycle_segments = cfg.journal_recycle_segments;
        let observed = metrics.clone();
        jcfg.observer = Some(Arc::new(move |took, records| {
            observed.journal_sync_latency.observe(took.as_secs_f64());
            observed.journal_batch_records.observe(records as f64);
        }));
        let (journal, replay) = {
            let jcfg = jcfg.clone();
            tokio::task::spawn_blocking(move || Journal::open(jcfg, checkpoint))
                .await
                .map_err(std::io::Error::other)??
        };
        let bookie = {
            let (id, max) = (cfg.id.clone(), cfg.max_entry_bytes);
            Arc::new(
                tokio::task::spawn_blocking(move || {
                    Bookie::recover(id, journal, replay, store, max)
                })
                .await
                .map_err(std::io::Error::other)??,
            )
        };
        let disk = Arc::new(DiskMonitor::new(cfg.ledger_dir.clone()));

        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|e| StartError::Listen(cfg.listen, e))?;
        let local_addr = listener.local_addr()?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let service = BookieService {
            bookie: bookie.clone(),
            metrics: metrics.clone(),
            max_in_flight_per_stream: 8192,
            disk: disk.clone(),
        };
        let max_msg = cfg.max_entry_bytes + (64 << 10);
        // Large flow-control windows: one pipelined add stream per writer
        // carries many large entries at once (see the ledger client).
        let router = tonic::transport::Server::builder()
            .initial_stream_window_size(Some(16 << 20))
            .initial_connection_window_size(Some(32 << 20))
            .add_service(
                BookieServer::new(service)
                    .max_decoding_message_size(max_msg)
                    .max_encoding_message_size(max_msg),
            );
        let mut stop = shutdown_rx.clone();
        // The builder's `tcp_nodelay` does not reach sockets accepted from our
        // own listener: without this, Nagle held small responses behind
        // unacknowledged data until the peer's delayed ACK, 40 ms on Linux
        // (1% of one-at-a-time 64 KiB ledger adds took 42 ms at the client
        // while the bookie had answered them within 2.3 ms).
        let incoming = magnetar_tls::internal::incoming("bookie gRPC", listener);
        let mut tasks = vec![tokio::spawn(async move {
            let stop = async move {
                let _ = stop.changed().await;
            };
            if let Err(e) = router.serve_with_incoming_shutdown(incoming, stop).await {
                tracing::error!(error = %e, "bookie gRPC server failed");
            }
        })];
        tasks.push(tokio::spawn(housekeeping(
            bookie.clone(),
            metrics.clone(),
            disk.clone(),
            cfg.clone(),
            shutdown_rx.clone(),
        )));
        if let Some(meta) = &cfg.meta {
            let client = MetaClient::new(ClientConfig::from_list(meta))?;
            let mut adv = cfg.clone();
            adv.advertise = Some(
                adv.advertise
                    .clone()
                    .unwrap_or_else(|| local_addr.to_string()),
            );
            if let Some(grace) = cfg.auditor_grace {
                let ledgers = LedgerClient::new(client.clone(), LedgerClientConfig::default());
                let recovery = AutoRecovery::new(
                    ledgers,
                    AutoRecoveryConfig {
                        node: cfg.id.clone(),
                        grace,
                        interval: (grace / 4)
                            .clamp(Duration::from_millis(500), Duration::from_secs(10)),
                        lease_ttl_seconds: cfg.lease_ttl_seconds,
                    },
                );
                metrics.watch_autorecovery(recovery.stats.clone(), registry)?;
                tasks.push(tokio::spawn(recovery.run(shutdown_rx.clone())));
            }
            tasks.push(tokio::spawn(register(
                client,
                bookie.clone(),
                disk,
                adv,
                shutdown_rx,
            )));
        }
        tracing::info!(id = %cfg.id, addr = %local_addr, "bookie started");
        Ok(Self {
            bookie,
            local_addr,
            shutdown,
            tasks,
        })
    }

    /// Stops serving, checkpoints, and closes the journal.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        if let Err(e) = self.bookie.checkpoint().await {
            tracing::warn!(error = %e, "final checkpoint failed");
        }
        self.bookie.journal().close();
    }
}

/// Periodic duties: disk watch and read-only switch, metrics, checkpoints.
async fn housekeeping(
    bookie: Arc<Bookie>,
    metrics: Arc<BookieMetrics>,
    disk: Arc<DiskMonitor>,
    cfg: BookieConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_checkpoint = tokio::time::Instant::now();
    let mut segments_at_checkpoint = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let free = {
            let disk = disk.clone();
            tokio::task::spawn_blocking(move || disk.refresh())
                .await
                .unwrap_or(0)
        };
        bookie.set_read_only(free < cfg.min_free_bytes);
        let stats = bookie.journal().stats();
        metrics.journal_records.set(stats.records as i64);
        metrics.journal_syncs.set(stats.batches as i64);
        metrics.journal_segments.set(stats.segments_started as i64);
        metrics
            .journal_segments_recycled
            .set(stats.segments_recycled as i64);
        metrics
            .journal_last_batch
            .set(stats.last_batch_records as i64);
        metrics
            .journal_slowest_batch
            .set(stats.slowest_batch.as_secs_f64());
        metrics
            .journal_slowest_roll
            .set(stats.slowest_roll.as_secs_f64());
        metrics.read_only.set(bookie.is_read_only() as i64);
        metrics.free_bytes.set(free as i64);
        metrics.ledgers.set(bookie.ledger_count() as i64);
        // Also soon after the journal starts a segment: the one before it can
        // then go back to the journal's pool for reuse before the next roll
        // (a flush the entry storage's memtable needs at such rates anyway).
        let rolled = stats.segments_started > segments_at_checkpoint;
        if rolled || last_checkpoint.elapsed() >= cfg.checkpoint_interval {
            last_checkpoint = tokio::time::Instant::now();
            segments_at_checkpoint = stats.segments_started;
            match bookie.checkpoint().await {
                Ok(n) => tracing::debug!(segments_deleted = n, "checkpoint"),
                Err(e) => tracing::warn!(error = %e, "checkpoint failed"),
            }
            if bookie.take_deletions() > 0 {
                // Deleted ledgers' ranges are tombstones until compacted away.
                let store = bookie.store().clone();
                let _ = tokio::task::spawn_blocking(move || store.compact()).await;
            }
        }
    }
}

/// Keeps `/bookies/available/{id}` alive under a lease, refreshing free space
/// and mode; re-registers if the lease is ever lost.
async fn register(
    client: MetaClient,
    bookie: Arc<Bookie>,
    disk: Arc<DiskMonitor>,
    cfg: BookieConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let key = format!("{AVAILABLE_PREFIX}{}", cfg.id);
    loop {
        let registration = async {
            let lease = client.lease_grant(cfg.lease_ttl_seconds).await?;
            let keeper = client.keep_alive(lease);
            loop {
                let value = BookieRegistration {
                    id: cfg.id.clone(),
                    address: cfg.advertised(),
                    rack: cfg.rack.clone(),
                    free_bytes: disk.last().0,
                    read_only: bookie.is_read_only(),
                };
                let json = serde_json::to_vec(&value).unwrap_or_default();
                client
                    .put_with(
                        &key,
                        json,
                        PutOptions {
                            expected_version: None,
                            lease: lease.id,
                        },
                    )
                    .await?;
                tokio::time::sleep(Duration::from_secs(5)).await;
                if keeper.is_lost() {
                    return Ok::<(), magnetar_meta_client::Error>(());
                }
            }
        };
        tokio::select! {
            r = registration => {
                if let Err(e) = r {
                    tracing::warn!(error = %e, "bookie registration failed; retrying");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            _ = shutdown.changed() => {
                let _ = client.delete(&key, None).await;
                return;
            }
        }
    }
}

//! Command-line flags of `magnetar-meta`; each is also `MAGNETAR_META_<FLAG>` in
//! the environment and a key of the `--config` TOML file.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use magnetar_meta_server::{Limits, NodeConfig};
use magnetar_telemetry::LogFormat;

pub const ENV_PREFIX: &str = "MAGNETAR_META_";

#[derive(Parser, Debug, Clone)]
#[command(
    name = "magnetar-meta",
    version,
    about = "Magnetar metadata service (Raft + RocksDB)"
)]
pub struct MetaArgs {
    /// TOML config file; its keys are the long flag names.
    #[arg(long, env = "MAGNETAR_META_CONFIG")]
    pub config: Option<PathBuf>,
    /// This node's id (non-zero).
    #[arg(long, env = "MAGNETAR_META_ID", value_parser = clap::value_parser!(u64).range(1..))]
    pub id: u64,
    /// Address for clients and peers.
    #[arg(long, env = "MAGNETAR_META_LISTEN", default_value = "127.0.0.1:7001")]
    pub listen: SocketAddr,
    /// Address others use to reach this node (default: --listen).
    #[arg(long, env = "MAGNETAR_META_ADVERTISE")]
    pub advertise: Option<String>,
    /// Initial voters as id=host:port, comma-separated (default: this node alone).
    #[arg(long, env = "MAGNETAR_META_PEERS", value_delimiter = ',', value_parser = parse_peer)]
    pub peers: Vec<(u64, String)>,
    /// Start empty and wait to be added to an existing cluster (`magnetar meta members add-learner`).
    #[arg(long, env = "MAGNETAR_META_JOIN")]
    pub join: bool,
    #[arg(long, env = "MAGNETAR_META_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Address for /metrics and /health.
    #[arg(long, env = "MAGNETAR_META_HTTP")]
    pub http: Option<SocketAddr>,
    #[arg(long, env = "MAGNETAR_META_HEARTBEAT_MS", default_value_t = 100)]
    pub heartbeat_ms: u64,
    /// Minimum election timeout; the maximum is twice this.
    #[arg(long, env = "MAGNETAR_META_ELECTION_TIMEOUT_MS", default_value_t = 500)]
    pub election_timeout_ms: u64,
    /// Build a snapshot (and purge the log behind it) every this many entries.
    #[arg(long, env = "MAGNETAR_META_SNAPSHOT_EVERY", default_value_t = 5000)]
    pub snapshot_every: u64,
    /// Log entries kept behind the latest snapshot, for followers that lag a little.
    #[arg(
        long,
        env = "MAGNETAR_META_LOGS_KEPT_AFTER_SNAPSHOT",
        default_value_t = 1000
    )]
    pub logs_kept_after_snapshot: u64,
    /// How long a write or linearizable read waits for a quorum before failing.
    #[arg(long, env = "MAGNETAR_META_QUORUM_TIMEOUT_MS", default_value_t = 3000)]
    pub quorum_timeout_ms: u64,
    /// Client-write entries in flight at once; writes that arrive meanwhile
    /// are batched into the next entry.
    #[arg(long, env = "MAGNETAR_META_PROPOSALS_IN_FLIGHT", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub proposals_in_flight: u64,
    /// How long (µs) a batch smaller than the previous one waits for more writes
    /// (0: never waits).
    #[arg(long, env = "MAGNETAR_META_PROPOSAL_LINGER_US", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(0..=100_000))]
    pub proposal_linger_us: u64,
    /// Threads that run the node's async work: client and peer RPCs, the
    /// Raft core, replication and applying entries (the log's synced writes
    /// have a thread of their own). A write passes through several tasks
    /// (RPC, proposer, Raft core, replication, apply); on one thread each
    /// hand-off is a queue push, across threads often a wake-up of another
    /// (see docs/ARCHITECTURE.md). Raise it for a node that serves many reads.
    #[arg(long, env = "MAGNETAR_META_WORKER_THREADS", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub worker_threads: u64,
    #[arg(long, env = "MAGNETAR_META_MAX_KEY_BYTES", default_value_t = 4096)]
    pub max_key_bytes: usize,
    #[arg(long, env = "MAGNETAR_META_MAX_VALUE_BYTES", default_value_t = 1 << 20)]
    pub max_value_bytes: usize,
    #[arg(long, env = "MAGNETAR_META_MAX_TXN_OPS", default_value_t = 128)]
    pub max_txn_ops: usize,
    #[arg(long, env = "MAGNETAR_META_MAX_WATCHERS", default_value_t = 10_000)]
    pub max_watchers: usize,
    #[arg(long, env = "MAGNETAR_META_LOG_FORMAT", default_value = "pretty")]
    pub log_format: LogFormat,
    /// OTLP/gRPC endpoint for traces, e.g. http://otel-collector:4317.
    #[arg(long, env = "MAGNETAR_META_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

fn parse_peer(s: &str) -> Result<(u64, String), String> {
    let (id, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("peer {s:?} must look like ID=HOST:PORT"))?;
    let id: u64 = id
        .trim()
        .parse()
        .map_err(|_| format!("peer id {id:?} is not a number"))?;
    if id == 0 || addr.trim().is_empty() {
        return Err(format!("peer {s:?} needs a non-zero id and an address"));
    }
    Ok((id, addr.trim().to_string()))
}

impl MetaArgs {
    pub fn node_config(&self) -> NodeConfig {
        let mut cfg = NodeConfig::new(self.id, self.listen, self.data_dir.clone());
        cfg.advertise = self.advertise.clone();
        if !self.peers.is_empty() {
            cfg.peers = self.peers.iter().cloned().collect::<BTreeMap<_, _>>();
        } else if let Some(a) = &self.advertise {
            cfg.peers = BTreeMap::from([(self.id, a.clone())]);
        }
        cfg.join = self.join;
        cfg.heartbeat = Duration::from_millis(self.heartbeat_ms);
        cfg.election_timeout_min = Duration::from_millis(self.election_timeout_ms);
        cfg.election_timeout_max = Duration::from_millis(self.election_timeout_ms * 2);
        cfg.snapshot_every = self.snapshot_every;
        cfg.logs_kept_after_snapshot = self.logs_kept_after_snapshot;
        cfg.quorum_timeout = Duration::from_millis(self.quorum_timeout_ms);
        cfg.proposals_in_flight = self.proposals_in_flight as usize;
        cfg.proposal_linger = Duration::from_micros(self.proposal_linger_us);
        cfg.limits = Limits {
            max_key_bytes: self.max_key_bytes,
            max_value_bytes: self.max_value_bytes,
            max_txn_ops: self.max_txn_ops,
            ..Limits::default()
        };
        cfg.max_watchers = self.max_watchers;
        cfg
    }
}

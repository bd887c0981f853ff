//! Starting and stopping one metadata node: storage, Raft, the gRPC server
//! (client API and peer traffic on one port), and the lease expirer.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use magnetar_proto::meta::meta_server::MetaServer;
use magnetar_proto::meta::raft_peer_server::RaftPeerServer;
use openraft::{BasicNode, SnapshotPolicy};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::lease::LeaseExpirer;
use crate::network::{PeerNetworkFactory, PeerService, MAX_PEER_MESSAGE};
use crate::service::{Limits, MetaService};
use crate::state_machine::{SmShared, StateMachineStore};
use crate::types::{NodeId, Raft};
use crate::{log_store::LogStore, store};

#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub id: NodeId,
    /// Address to bind for clients and peers.
    pub listen: SocketAddr,
    /// Address other nodes and clients use to reach this one (defaults to `listen`).
    pub advertise: Option<String>,
    /// Initial voters: id -> address. A fresh node in this set bootstraps the cluster.
    pub peers: BTreeMap<NodeId, String>,
    /// Start as an empty node that waits to be added (as a learner) by the leader.
    pub join: bool,
    pub data_dir: PathBuf,
    pub heartbeat: Duration,
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
    /// Build a snapshot after this many applied entries (then purge the log).
    pub snapshot_every: u64,
    /// Log entries kept behind the latest snapshot for followers that lag a little.
    pub logs_kept_after_snapshot: u64,
    pub quorum_timeout: Duration,
    /// Client-write entries proposed at once (see `proposer`).
    pub proposals_in_flight: usize,
    /// How long a batch smaller than the previous one waits for more writes.
    pub proposal_linger: Duration,
    pub limits: Limits,
    pub max_watchers: usize,
    pub watch_history_events: usize,
    pub watch_history_bytes: usize,
}

impl NodeConfig {
    /// A config with production defaults for the given identity and storage.
    pub fn new(id: NodeId, listen: SocketAddr, data_dir: PathBuf) -> Self {
        Self {
            id,
            listen,
            advertise: None,
            peers: BTreeMap::from([(id, listen.to_string())]),
            join: false,
            data_dir,
            heartbeat: Duration::from_millis(100),
            election_timeout_min: Duration::from_millis(500),
            election_timeout_max: Duration::from_millis(1000),
            snapshot_every: 5_000,
            logs_kept_after_snapshot: 1_000,
            quorum_timeout: Duration::from_secs(3),
            // One entry in flight with a short linger batched best with 16
            // closed-loop clients (bench-meta, 2026-12-01: 3,811 CAS/s and 9.3
            // writes per entry, against 3,244 and 5.0 with 2 in flight and no
            // linger). The timer's resolution is 1 ms, so that is the bound.
            proposals_in_flight: 1,
            proposal_linger: Duration::from_millis(1),
            limits: Limits::default(),
            max_watchers: 10_000,
            watch_history_events: 100_000,
            watch_history_bytes: 64 << 20,
        }
    }

    fn advertised(&self) -> String {
        self.advertise
            .clone()
            .unwrap_or_else(|| self.listen.to_string())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot create data dir {0}: {1}")]
    DataDir(PathBuf, std::io::Error),
    #[error("cannot open RocksDB in {0}: {1}")]
    Db(PathBuf, rocksdb::Error),
    #[error("cannot load state machine: {0}")]
    StateMachine(#[from] crate::kv::KvError),
    #[error("invalid raft config: {0}")]
    Config(#[from] openraft::ConfigError),
    #[error("raft: {0}")]
    Raft(String),
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
    #[error("node id {0} is not among --peers and --join was not given")]
    NotAPeer(NodeId),
}

pub struct MetaNode {
    pub id: NodeId,
    pub raft: Raft,
    pub sm: Arc<SmShared>,
    pub local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<()>,
    expirer: JoinHandle<()>,
}

/// Logs each change of leader or term: the first thing to read after a failover.
async fn log_leader_changes(raft: Raft) {
    let mut metrics = raft.metrics();
    let mut last = (None, 0);
    loop {
        let now = {
            let m = metrics.borrow_and_update();
            (m.current_leader, m.current_term)
        };
        if now != last {
            tracing::info!(leader = ?now.0, term = now.1, "leader changed");
            last = now;
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

impl MetaNode {
    pub async fn start(cfg: NodeConfig) -> Result<Self, NodeError> {
        if !cfg.join && !cfg.peers.contains_key(&cfg.id) {
            return Err(NodeError::NotAPeer(cfg.id));
        }
        std::fs::create_dir_all(&cfg.data_dir)
            .map_err(|e| NodeError::DataDir(cfg.data_dir.clone(), e))?;
        let open =
            |dir: PathBuf, f: fn(&std::path::Path) -> Result<Arc<rocksdb::DB>, rocksdb::Error>| async move {
                let d = dir.clone();
                tokio::task::spawn_blocking(move || f(&d))
                    .await
                    .map_err(|e| NodeError::Raft(e.to_string()))?
                    .map_err(|e| NodeError::Db(dir, e))
            };
        let log_db = open(cfg.data_dir.join("log"), store::open_log).await?;
        let sm_db = open(cfg.data_dir.join("state"), store::open_state_machine).await?;
        let log_store = LogStore::new(log_db);
        let sm_store = StateMachineStore::open(
            sm_db,
            cfg.data_dir.join("snapshot.bin"),
            cfg.watch_history_events,
            cfg.watch_history_bytes,
            cfg.max_watchers,
        )?;
        let sm = sm_store.shared();

        let raft_config = openraft::Config {
            cluster_name: "magnetar-meta".into(),
            heartbeat_interval: cfg.heartbeat.as_millis() as u64,
            election_timeout_min: cfg.election_timeout_min.as_millis() as u64,
            election_timeout_max: cfg.election_timeout_max.as_millis() as u64,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(cfg.snapshot_every),
            max_in_snapshot_log_to_keep: cfg.logs_kept_after_snapshot,
            install_snapshot_timeout: 10_000,
            ..Default::default()
        }
        .validate()?;
        let network = PeerNetworkFactory {
            connect_timeout: Duration::from_millis(500),
        };
        let raft = Raft::new(cfg.id, Arc::new(raft_config), network, log_store, sm_store)
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;

        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|e| NodeError::Listen(cfg.listen, e))?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| NodeError::Listen(cfg.listen, e))?;

        let (shutdown, shutdown_rx) = watch::channel(false);
        let leases = Arc::new(LeaseExpirer::default());
        let service = MetaService {
            id: cfg.id,
            raft: raft.clone(),
            sm: sm.clone(),
            limits: cfg.limits.clone(),
            leases: leases.clone(),
            proposer: crate::proposer::Proposer::start(
                raft.clone(),
                sm.proposals.clone(),
                cfg.quorum_timeout,
                512,
                cfg.proposals_in_flight,
                cfg.proposal_linger,
            ),
            quorum_timeout: cfg.quorum_timeout,
        };
        let max_client_message =
            cfg.limits.max_value_bytes * 2 + cfg.limits.max_key_bytes * 2 + (64 << 10);
        let router = tonic::transport::Server::builder()
            .add_service(
                MetaServer::new(service).max_decoding_message_size(max_client_message.max(4 << 20)),
            )
            .add_service(
                RaftPeerServer::new(PeerService { raft: raft.clone() })
                    .max_decoding_message_size(MAX_PEER_MESSAGE)
                    .max_encoding_message_size(MAX_PEER_MESSAGE),
            );
        let mut server_shutdown = shutdown_rx.clone();
        // The builder's `tcp_nodelay` does not reach sockets accepted from our
        // own listener (see the bookie's server for what Nagle cost there).
        let incoming = magnetar_tls::internal::incoming("metadata gRPC", listener);
        let server = tokio::spawn(async move {
            let stop = async move {
                let _ = server_shutdown.changed().await;
            };
            if let Err(e) = router.serve_with_incoming_shutdown(incoming, stop).await {
                tracing::error!(error = %e, "gRPC server failed");
            }
        });

        // Static bootstrap: a pristine node that is one of the initial voters
        // initializes with the full voter set. Every such node proposes the same
        // membership, so it does not matter how many of them do it.
        if !cfg.join {
            let initialized = raft
                .is_initialized()
                .await
                .map_err(|e| NodeError::Raft(e.to_string()))?;
            if !initialized {
                let mut members: BTreeMap<NodeId, BasicNode> = cfg
                    .peers
                    .iter()
                    .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
                    .collect();
                members.insert(
                    cfg.id,
                    BasicNode {
                        addr: cfg.advertised(),
                    },
                );
                if let Err(e) = raft.initialize(members).await {
                    tracing::info!(error = %e, "not initializing the cluster");
                }
            }
        }

        let expirer = tokio::spawn(leases.run(
            raft.clone(),
            sm.clone(),
            Duration::from_millis(100),
            cfg.quorum_timeout,
            shutdown_rx,
        ));
        tokio::spawn(log_leader_changes(raft.clone()));
        tracing::info!(id = cfg.id, addr = %local_addr, "metadata node started");
        Ok(Self {
            id: cfg.id,
            raft,
            sm,
            local_addr,
            shutdown,
            server,
            expirer,
        })
    }

    /// True when this node knows a leader (itself or another).
    pub fn has_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader.is_some()
    }

    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.expirer.await;
        let _ = self.server.await;
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }
}

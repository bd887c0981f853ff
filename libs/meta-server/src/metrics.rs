//! Prometheus view of a node, computed at scrape time from Raft's metrics and the
//! state machine's counters (nothing to keep in sync on the hot path).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntGauge, Opts};

use crate::state_machine::SmShared;
use crate::types::{NodeId, Raft};

pub struct NodeCollector {
    id: NodeId,
    raft: Raft,
    sm: Arc<SmShared>,
    gauges: Vec<(Gauge, IntGauge)>,
}

#[derive(Clone, Copy)]
enum Gauge {
    Term,
    Leader,
    IsLeader,
    LastLogIndex,
    CommitIndex,
    AppliedIndex,
    SnapshotIndex,
    Revision,
    Keys,
    Leases,
    Watchers,
    SnapshotsBuilt,
    SnapshotsInstalled,
    ProposedEntries,
    ProposedCommands,
}

const GAUGES: [(Gauge, &str, &str); 15] = [
    (Gauge::Term, "magnetar_meta_raft_term", "Current Raft term."),
    (
        Gauge::Leader,
        "magnetar_meta_raft_leader",
        "Node id of the known leader (0 = none).",
    ),
    (
        Gauge::IsLeader,
        "magnetar_meta_raft_is_leader",
        "1 if this node is the leader.",
    ),
    (
        Gauge::LastLogIndex,
        "magnetar_meta_raft_last_log_index",
        "Index of the last log entry.",
    ),
    (
        Gauge::CommitIndex,
        "magnetar_meta_raft_commit_index",
        "Highest log index known committed (as applied by this node).",
    ),
    (
        Gauge::AppliedIndex,
        "magnetar_meta_raft_applied_index",
        "Index of the last applied entry.",
    ),
    (
        Gauge::SnapshotIndex,
        "magnetar_meta_raft_snapshot_index",
        "Last log index covered by the current snapshot.",
    ),
    (Gauge::Revision, "magnetar_meta_revision", "Store revision."),
    (Gauge::Keys, "magnetar_meta_keys", "Number of keys."),
    (
        Gauge::Leases,
        "magnetar_meta_leases",
        "Number of live leases.",
    ),
    (
        Gauge::Watchers,
        "magnetar_meta_watchers",
        "Active watchers on this node.",
    ),
    (
        Gauge::SnapshotsBuilt,
        "magnetar_meta_snapshots_built_total",
        "Snapshots built by this node since start.",
    ),
    (
        Gauge::SnapshotsInstalled,
        "magnetar_meta_snapshots_installed_total",
        "Snapshots received from a leader and installed since start.",
    ),
    (
        Gauge::ProposedEntries,
        "magnetar_meta_proposed_entries_total",
        "Raft entries proposed for client writes since start.",
    ),
    (
        Gauge::ProposedCommands,
        "magnetar_meta_proposed_commands_total",
        "Client writes proposed since start (divided by entries: the batching factor).",
    ),
];

impl NodeCollector {
    pub fn new(id: NodeId, raft: Raft, sm: Arc<SmShared>) -> Result<Self, prometheus::Error> {
        let gauges = GAUGES
            .iter()
            .map(|(g, name, help)| Ok((*g, IntGauge::with_opts(Opts::new(*name, *help))?)))
            .collect::<Result<_, prometheus::Error>>()?;
        Ok(Self {
            id,
            raft,
            sm,
            gauges,
        })
    }
}

impl Collector for NodeCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.gauges.iter().flat_map(|(_, g)| g.desc()).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let m = self.raft.metrics().borrow().clone();
        let applied = m.last_applied.map_or(0, |l| l.index) as i64;
        for (kind, gauge) in &self.gauges {
            gauge.set(match kind {
                Gauge::Term => m.current_term as i64,
                Gauge::Leader => m.current_leader.unwrap_or(0) as i64,
                Gauge::IsLeader => (m.current_leader == Some(self.id)) as i64,
                Gauge::LastLogIndex => m.last_log_index.unwrap_or(0) as i64,
                Gauge::CommitIndex | Gauge::AppliedIndex => applied,
                Gauge::SnapshotIndex => m.snapshot.map_or(0, |l| l.index) as i64,
                Gauge::Revision => self.sm.revision(),
                Gauge::Keys => self.sm.kv_count.load(Ordering::Relaxed),
                Gauge::Leases => self.sm.lease_count.load(Ordering::Relaxed),
                Gauge::Watchers => self.sm.watch.active_watchers() as i64,
                Gauge::SnapshotsBuilt => self.sm.snapshots_built.load(Ordering::Relaxed) as i64,
                Gauge::SnapshotsInstalled => {
                    self.sm.snapshots_installed.load(Ordering::Relaxed) as i64
                }
                Gauge::ProposedEntries => self.sm.proposals.entries.load(Ordering::Relaxed) as i64,
                Gauge::ProposedCommands => {
                    self.sm.proposals.commands.load(Ordering::Relaxed) as i64
                }
            });
        }
        self.gauges.iter().flat_map(|(_, g)| g.collect()).collect()
    }
}

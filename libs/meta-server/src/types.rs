//! The Raft type configuration and the commands that travel through the log.
//!
//! Commands are our own serde types rather than the protobuf messages: the log is
//! an internal format (bincode), and keeping it separate lets the client API evolve
//! without rewriting stored logs.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

pub type NodeId = u64;

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;

/// Identifies one logical client write; a retried write carries the same id and is
/// answered from the state machine's dedup table instead of being applied twice.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequestId {
    pub client_id: u64,
    pub seq: u64,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareOp {
    Equal,
    NotEqual,
    Greater,
    Less,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Compare {
    pub key: Vec<u8>,
    pub op: CompareOp,
    pub version: i64,
}

impl Compare {
    pub fn holds(&self, actual_version: i64) -> bool {
        match self.op {
            CompareOp::Equal => actual_version == self.version,
            CompareOp::NotEqual => actual_version != self.version,
            CompareOp::Greater => actual_version > self.version,
            CompareOp::Less => actual_version < self.version,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        lease: i64,
    },
    Delete {
        key: Vec<u8>,
        prefix: bool,
    },
}

/// A state-machine command. Everything that changes the store goes through here.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub enum Command {
    Txn {
        request_id: Option<RequestId>,
        compares: Vec<Compare>,
        success: Vec<Op>,
        failure: Vec<Op>,
    },
    /// The lease id is chosen by the proposing node so that applying is deterministic.
    LeaseGrant {
        request_id: Option<RequestId>,
        lease_id: i64,
        ttl_seconds: i64,
    },
    LeaseRevoke {
        request_id: Option<RequestId>,
        lease_id: i64,
    },
    /// Client commands proposed together as one log entry (see `proposer`);
    /// applied one after the other, each atomically, each with its own answer.
    Batch(Vec<Command>),
    /// Forget the remembered answers of `client_id`'s requests with
    /// `from <= seq < below`: the client has had them all and will not retry
    /// them (see `proposer`). Appended by the proposer, never sent by a
    /// client; last among the variants so that older log entries decode.
    Forget {
        client_id: u64,
        from: u64,
        below: u64,
    },
}

impl Command {
    pub fn request_id(&self) -> Option<RequestId> {
        match self {
            Command::Txn { request_id, .. }
            | Command::LeaseGrant { request_id, .. }
            | Command::LeaseRevoke { request_id, .. } => *request_id,
            Command::Batch(_) | Command::Forget { .. } => None,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum OpOutcome {
    Put { version: i64 },
    Delete { deleted: i64 },
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum CommandResult {
    Txn {
        revision: i64,
        succeeded: bool,
        results: Vec<OpOutcome>,
        compare_versions: Vec<i64>,
    },
    LeaseGranted {
        revision: i64,
        lease_id: i64,
        ttl_seconds: i64,
    },
    LeaseRevoked {
        revision: i64,
        found: bool,
    },
    /// The command was valid to propose but could not apply (e.g. a put that names
    /// a lease that expired meanwhile). Nothing was changed.
    Rejected {
        revision: i64,
        reason: String,
    },
    /// The answers to a `Command::Batch`, in order.
    Batch(Vec<CommandResult>),
    /// Membership and blank entries produce no client-visible result.
    None,
}

/// A stored key: what the `kv` column family holds (bincode).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct StoredValue {
    pub value: Vec<u8>,
    pub version: i64,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub lease: i64,
}

/// One change to the keyspace, published to watchers after it is durable locally.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvEvent {
    pub revision: i64,
    pub key: Vec<u8>,
    /// `None` for a delete.
    pub value: Option<StoredValue>,
}

//! The client-facing gRPC API: validation, the read and write paths, watches,
//! leases and membership. Writes come as unary `Txn` calls or pipelined on a
//! `TxnStream` (what `libs/meta-client` uses); both go through `apply_txn`.
//!
//! Errors a client can act on are explicit: a non-leader answers `UNAVAILABLE`
//! with the leader's address in the `leader-addr` metadata; a compacted watch
//! start answers `OUT_OF_RANGE`; a limit violation answers `INVALID_ARGUMENT`.

use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use magnetar_proto::meta as pb;
use magnetar_proto::meta::meta_server::Meta;
use magnetar_proto::pipeline;
use openraft::error::{
    ChangeMembershipError, CheckIsLeaderError, ClientWriteError, ForwardToLeader, RaftError,
};
use openraft::BasicNode;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use crate::kv::{self, SnapshotReader};
use crate::lease::LeaseExpirer;
use crate::state_machine::SmShared;
use crate::types::{
    Command, CommandResult, Compare, CompareOp, KvEvent, NodeId, Op, OpOutcome, Raft, RequestId,
    StoredValue,
};
use crate::watch::{WatchBatch, WatchError};

/// Size and count limits, enforced before anything is proposed.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
    pub max_txn_ops: usize,
    pub max_list_page: usize,
    pub max_lease_ttl_seconds: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_key_bytes: 4 << 10,
            max_value_bytes: 1 << 20,
            max_txn_ops: 128,
            max_list_page: 10_000,
            max_lease_ttl_seconds: 24 * 3600,
        }
    }
}

#[derive(Clone)]
pub struct MetaService {
    pub id: NodeId,
    pub raft: Raft,
    pub sm: Arc<SmShared>,
    pub limits: Limits,
    pub leases: Arc<LeaseExpirer>,
    pub proposer: crate::proposer::Proposer,
    /// How long a write or read-index may wait for a quorum before failing.
    pub quorum_timeout: Duration,
}

use magnetar_proto::meta::LEADER_ADDR_METADATA;
pub const LEADER_ID_METADATA: &str = "leader-id";

pub(crate) fn not_leader(f: &ForwardToLeader<NodeId, BasicNode>) -> Status {
    match (&f.leader_id, &f.leader_node) {
        (Some(id), Some(node)) => {
            let mut s = Status::unavailable(format!(
                "not the leader; the leader is node {id} at {}",
                node.addr
            ));
            if let Ok(v) = node.addr.parse() {
                s.metadata_mut().insert(LEADER_ADDR_METADATA, v);
            }
            if let Ok(v) = id.to_string().parse() {
                s.metadata_mut().insert(LEADER_ID_METADATA, v);
            }
            s
        }
        _ => Status::unavailable("no leader is known yet (election in progress or quorum lost)"),
    }
}

fn kv_err(e: kv::KvError) -> Status {
    Status::internal(format!("storage: {e}"))
}

fn to_pb_kv(key: Vec<u8>, v: StoredValue) -> pb::KeyValue {
    pb::KeyValue {
        key: key.into(),
        value: v.value.into(),
        version: v.version,
        create_revision: v.create_revision,
        mod_revision: v.mod_revision,
        lease: v.lease,
    }
}

fn to_pb_event(e: &KvEvent) -> pb::Event {
    match &e.value {
        Some(v) => pb::Event {
            r#type: pb::event::Type::Put as i32,
            kv: Some(to_pb_kv(e.key.clone(), v.clone())),
        },
        None => pb::Event {
            r#type: pb::event::Type::Delete as i32,
            kv: Some(pb::KeyValue {
                key: e.key.clone().into(),
                mod_revision: e.revision,
                ..Default::default()
            }),
        },
    }
}

/// A write's id (none without a client id) and its client's mark: every
/// request of that client below the mark has had its answer (0: unknown).
fn request_id(id: Option<pb::RequestId>) -> (Option<RequestId>, u64) {
    let answered_below = id.as_ref().map_or(0, |r| r.answered_below);
    let id = id.filter(|r| r.client_id != 0).map(|r| RequestId {
        client_id: r.client_id,
        seq: r.seq,
    });
    (id, answered_below)
}

impl MetaService {
    fn header(&self, revision: i64) -> pb::ResponseHeader {
        pb::ResponseHeader {
            revision,
            raft_term: self.raft.metrics().borrow().current_term,
            member_id: self.id,
        }
    }

    /// Proposes a command (batched with concurrent ones, see `proposer`) and
    /// waits until it is applied here.
    async fn write(&self, cmd: Command, answered_below: u64) -> Result<CommandResult, Status> {
        self.proposer.propose(cmd, answered_below).await
    }

    /// Read index: confirms leadership with a quorum and waits until the local
    /// state machine has applied everything committed before the read began.
    async fn linearize(&self) -> Result<(), Status> {
        match tokio::time::timeout(self.quorum_timeout, self.raft.ensure_linearizable()).await {
            Err(_) => Err(Status::unavailable(format!(
                "read index not confirmed within {:?}: no quorum reachable",
                self.quorum_timeout
            ))),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => {
                Err(not_leader(&f))
            }
            Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e)))) => Err(
                Status::unavailable(format!("cannot confirm leadership: {e}")),
            ),
            Ok(Err(e)) => Err(Status::unavailable(format!("read failed: {e}"))),
        }
    }

    /// Validates and applies one transaction (unary or from a stream).
    async fn apply_txn(&self, req: pb::TxnRequest) -> Result<pb::TxnResponse, Status> {
        let n_ops = req.compares.len() + req.success.len() + req.failure.len();
        if n_ops > self.limits.max_txn_ops {
            return Err(Status::invalid_argument(format!(
                "transaction has {n_ops} compares and ops; the limit is {}",
                self.limits.max_txn_ops
            )));
        }
        let compares = req
            .compares
            .into_iter()
            .map(|c| {
                self.check_key(&c.key)?;
                let op = match pb::compare::Op::try_from(c.op) {
                    Ok(pb::compare::Op::Equal) => CompareOp::Equal,
                    Ok(pb::compare::Op::NotEqual) => CompareOp::NotEqual,
                    Ok(pb::compare::Op::Greater) => CompareOp::Greater,
                    Ok(pb::compare::Op::Less) => CompareOp::Less,
                    Err(_) => {
                        return Err(Status::invalid_argument(format!(
                            "unknown compare op {}",
                            c.op
                        )))
                    }
                };
                Ok(Compare {
                    key: c.key.to_vec(),
                    op,
                    version: c.version,
                })
            })
            .collect::<Result<Vec<_>, Status>>()?;
        let (request_id, answered) = request_id(req.request_id);
        let cmd = Command::Txn {
            request_id,
            compares,
            success: self.convert_ops(req.success)?,
            failure: self.convert_ops(req.failure)?,
        };
        match self.write(cmd, answered).await? {
            CommandResult::Txn {
                revision,
                succeeded,
                results,
                compare_versions,
            } => Ok(pb::TxnResponse {
                header: Some(self.header(revision)),
                succeeded,
                results: results
                    .into_iter()
                    .map(|r| pb::OpResult {
                        result: Some(match r {
                            OpOutcome::Put { version } => {
                                pb::op_result::Result::Put(pb::PutResult { version })
                            }
                            OpOutcome::Delete { deleted } => {
                                pb::op_result::Result::Delete(pb::DeleteResult { deleted })
                            }
                        }),
                    })
                    .collect(),
                compare_versions,
            }),
            CommandResult::Rejected { reason, .. } => Err(Status::failed_precondition(reason)),
            other => Err(Status::internal(format!("unexpected result {other:?}"))),
        }
    }

    fn check_key(&self, key: &[u8]) -> Result<(), Status> {
        if key.is_empty() {
            return Err(Status::invalid_argument("key must not be empty"));
        }
        if key.len() > self.limits.max_key_bytes {
            return Err(Status::invalid_argument(format!(
                "key is {} bytes; the limit is {}",
                key.len(),
                self.limits.max_key_bytes
            )));
        }
        Ok(())
    }

    fn convert_ops(&self, ops: Vec<pb::Op>) -> Result<Vec<Op>, Status> {
        ops.into_iter()
            .map(|op| match op.op {
                Some(pb::op::Op::Put(p)) => {
                    self.check_key(&p.key)?;
                    if p.value.len() > self.limits.max_value_bytes {
                        return Err(Status::invalid_argument(format!(
                            "value of {:?} is {} bytes; the limit is {}",
                            String::from_utf8_lossy(&p.key),
                            p.value.len(),
                            self.limits.max_value_bytes
                        )));
                    }
                    if p.lease < 0 {
                        return Err(Status::invalid_argument("lease id must not be negative"));
                    }
                    Ok(Op::Put {
                        key: p.key.to_vec(),
                        value: p.value.to_vec(),
                        lease: p.lease,
                    })
                }
                Some(pb::op::Op::Delete(d)) => {
                    if !d.prefix {
                        self.check_key(&d.key)?;
                    } else if d.key.len() > self.limits.max_key_bytes {
                        return Err(Status::invalid_argument(
                            "delete prefix is longer than the key limit",
                        ));
                    }
                    Ok(Op::Delete {
                        key: d.key.to_vec(),
                        prefix: d.prefix,
                    })
                }
                None => Err(Status::invalid_argument(
                    "transaction op has neither put nor delete",
                )),
            })
            .collect()
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchResponse, Status>> + Send>>;
type TxnStream = pipeline::Answers<pb::TxnStreamResponse>;

/// Unanswered transactions one stream may have; past it the stream is not read.
const MAX_STREAM_TXNS_IN_FLIGHT: usize = 1024;

/// A stream answer carries what the unary call would have: the response, or
/// the status code and message and, from a follower, the leader's address.
fn stream_answer(id: u64, result: Result<pb::TxnResponse, Status>) -> pb::TxnStreamResponse {
    match result {
        Ok(txn) => pb::TxnStreamResponse {
            id,
            txn: Some(txn),
            ..Default::default()
        },
        Err(status) => pb::TxnStreamResponse {
            id,
            txn: None,
            code: status.code() as i32,
            message: status.message().to_string(),
            leader_addr: status
                .metadata()
                .get(LEADER_ADDR_METADATA)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string(),
        },
    }
}

#[tonic::async_trait]
impl Meta for MetaService {
    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        let req = req.into_inner();
        self.check_key(&req.key)?;
        if !req.serializable {
            self.linearize().await?;
        }
        let db = &*self.sm.db;
        let r = SnapshotReader {
            db,
            snap: db.snapshot(),
        };
        let kv = kv::get(&r, &req.key).map_err(kv_err)?;
        let revision = kv::revision(&r).map_err(kv_err)?;
        Ok(Response::new(pb::GetResponse {
            header: Some(self.header(revision)),
            kv: kv.map(|v| to_pb_kv(req.key.to_vec(), v)),
        }))
    }

    async fn list(
        &self,
        req: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let req = req.into_inner();
        if req.prefix.len() > self.limits.max_key_bytes
            || req.start_after.len() > self.limits.max_key_bytes
        {
            return Err(Status::invalid_argument(
                "prefix or start_after is longer than the key limit",
            ));
        }
        if !req.serializable {
            self.linearize().await?;
        }
        let limit = match req.limit as usize {
            0 => self.limits.max_list_page,
            n => n.min(self.limits.max_list_page),
        };
        let db = &*self.sm.db;
        let r = SnapshotReader {
            db,
            snap: db.snapshot(),
        };
        let mut kvs = kv::scan(&r, &req.prefix, &req.start_after, limit + 1, req.keys_only)
            .map_err(kv_err)?;
        let more = kvs.len() > limit;
        kvs.truncate(limit);
        let revision = kv::revision(&r).map_err(kv_err)?;
        Ok(Response::new(pb::ListResponse {
            header: Some(self.header(revision)),
            kvs: kvs.into_iter().map(|(k, v)| to_pb_kv(k, v)).collect(),
            more,
        }))
    }

    async fn txn(&self, req: Request<pb::TxnRequest>) -> Result<Response<pb::TxnResponse>, Status> {
        self.apply_txn(req.into_inner()).await.map(Response::new)
    }

    type TxnStreamStream = TxnStream;

    async fn txn_stream(
        &self,
        req: Request<tonic::Streaming<pb::TxnStreamRequest>>,
    ) -> Result<Response<TxnStream>, Status> {
        let service = self.clone();
        Ok(Response::new(pipeline::serve(
            req.into_inner(),
            MAX_STREAM_TXNS_IN_FLIGHT,
            move |r: pb::TxnStreamRequest| {
                let service = service.clone();
                async move {
                    let result = match r.txn {
                        Some(txn) => service.apply_txn(txn).await,
                        None => Err(Status::invalid_argument(
                            "stream request carries no transaction",
                        )),
                    };
                    stream_answer(r.id, result)
                }
            },
        )))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        req: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let req = req.into_inner();
        let prefix = req.prefix.to_vec();
        let sub = self
            .sm
            .watch
            .subscribe(&prefix, req.start_revision)
            .map_err(|e| match e {
                WatchError::Compacted { .. } => Status::out_of_range(e.to_string()),
                WatchError::TooManyWatchers(_) => Status::resource_exhausted(e.to_string()),
            })?;
        // Bounded: a watcher that does not read blocks its forwarder, which then
        // lags the broadcast and is cut off with an error instead of buffering.
        let (tx, rx) = mpsc::channel::<Result<pb::WatchResponse, Status>>(64);
        tokio::spawn(async move {
            let mut sub = sub;
            let start = sub.start_revision;
            let send_events = |events: &[KvEvent]| {
                let selected: Vec<pb::Event> = events
                    .iter()
                    .filter(|e| e.revision >= start && e.key.starts_with(&prefix))
                    .map(to_pb_event)
                    .collect();
                let revision = events.last().map_or(0, |e| e.revision);
                (!selected.is_empty()).then_some(pb::WatchResponse {
                    revision,
                    events: selected,
                })
            };
            let backlog = std::mem::take(&mut sub.backlog);
            for chunk in backlog.chunk_by(|a, b| a.revision == b.revision) {
                if let Some(resp) = send_events(chunk) {
                    if tx.send(Ok(resp)).await.is_err() {
                        return;
                    }
                }
            }
            loop {
                let batch = tokio::select! {
                    b = sub.live.recv() => b,
                    _ = tx.closed() => return,
                };
                let msg = match batch {
                    Ok(WatchBatch::Events(events)) => match send_events(&events) {
                        Some(resp) => Ok(resp),
                        None => continue,
                    },
                    Ok(WatchBatch::Reset { revision }) => Err(Status::out_of_range(format!(
                        "this node installed a snapshot at revision {revision}; re-list and watch again"
                    ))),
                    Err(RecvError::Lagged(n)) => Err(Status::resource_exhausted(format!(
                        "watcher fell {n} batches behind; re-list and watch again"
                    ))),
                    Err(RecvError::Closed) => Err(Status::unavailable("node is shutting down")),
                };
                let is_err = msg.is_err();
                if tx.send(msg).await.is_err() || is_err {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn lease_grant(
        &self,
        req: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        let req = req.into_inner();
        if req.ttl_seconds < 1 || req.ttl_seconds > self.limits.max_lease_ttl_seconds {
            return Err(Status::invalid_argument(format!(
                "lease ttl must be between 1 and {} seconds",
                self.limits.max_lease_ttl_seconds
            )));
        }
        // Chosen here, carried in the command: applying stays deterministic.
        let lease_id = (rand::random::<u64>() >> 1).max(1) as i64;
        let (request_id, answered) = request_id(req.request_id);
        let cmd = Command::LeaseGrant {
            request_id,
            lease_id,
            ttl_seconds: req.ttl_seconds,
        };
        match self.write(cmd, answered).await? {
            CommandResult::LeaseGranted {
                revision,
                lease_id,
                ttl_seconds,
            } => {
                self.leases
                    .keep_alive(lease_id, Duration::from_secs(ttl_seconds as u64));
                Ok(Response::new(pb::LeaseGrantResponse {
                    header: Some(self.header(revision)),
                    lease_id,
                    ttl_seconds,
                }))
            }
            other => Err(Status::internal(format!("unexpected result {other:?}"))),
        }
    }

    async fn lease_keep_alive(
        &self,
        req: Request<pb::LeaseKeepAliveRequest>,
    ) -> Result<Response<pb::LeaseKeepAliveResponse>, Status> {
        let lease_id = req.into_inner().lease_id;
        // Deadlines live on the leader only.
        let (leader, term) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            let leader_node = m
                .current_leader
                .and_then(|l| m.membership_config.membership().get_node(&l).cloned());
            if m.current_leader != Some(self.id) {
                return Err(not_leader(&ForwardToLeader {
                    leader_id: m.current_leader,
                    leader_node,
                }));
            }
            (self.id, m.current_term)
        };
        let mut record = kv::lease(&*self.sm.db, lease_id).map_err(kv_err)?;
        if record.is_none() {
            // A new leader may not have applied a recent grant yet.
            self.linearize().await?;
            record = kv::lease(&*self.sm.db, lease_id).map_err(kv_err)?;
        }
        let Some(record) = record else {
            return Err(Status::not_found(format!(
                "lease {lease_id} not found (expired or revoked)"
            )));
        };
        self.leases
            .keep_alive(lease_id, Duration::from_secs(record.ttl_seconds as u64));
        Ok(Response::new(pb::LeaseKeepAliveResponse {
            header: Some(pb::ResponseHeader {
                revision: self.sm.revision(),
                raft_term: term,
                member_id: leader,
            }),
            lease_id,
            ttl_seconds: record.ttl_seconds,
        }))
    }

    async fn lease_revoke(
        &self,
        req: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        let req = req.into_inner();
        let (request_id, answered) = request_id(req.request_id);
        let cmd = Command::LeaseRevoke {
            request_id,
            lease_id: req.lease_id,
        };
        match self.write(cmd, answered).await? {
            CommandResult::LeaseRevoked { revision, found } => {
                Ok(Response::new(pb::LeaseRevokeResponse {
                    header: Some(self.header(revision)),
                    found,
                }))
            }
            other => Err(Status::internal(format!("unexpected result {other:?}"))),
        }
    }

    async fn lease_list(
        &self,
        _req: Request<pb::LeaseListRequest>,
    ) -> Result<Response<pb::LeaseListResponse>, Status> {
        self.linearize().await?;
        let leases = kv::leases(&*self.sm.db).map_err(kv_err)?;
        Ok(Response::new(pb::LeaseListResponse {
            header: Some(self.header(self.sm.revision())),
            leases: leases
                .into_iter()
                .map(|(lease_id, rec, keys)| pb::LeaseInfo {
                    lease_id,
                    ttl_seconds: self
                        .leases
                        .remaining(lease_id)
                        .map_or(rec.ttl_seconds, |d| d.as_secs_f64().ceil() as i64),
                    keys,
                })
                .collect(),
        }))
    }

    async fn status(
        &self,
        _req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        Ok(Response::new(status(self.id, &self.raft, &self.sm)))
    }

    async fn add_learner(
        &self,
        req: Request<pb::AddLearnerRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        let req = req.into_inner();
        if req.id == 0 || req.addr.is_empty() {
            return Err(Status::invalid_argument(
                "learner needs a non-zero id and an address",
            ));
        }
        let node = BasicNode { addr: req.addr };
        let res = tokio::time::timeout(
            self.quorum_timeout * 4,
            self.raft.add_learner(req.id, node, true),
        )
        .await;
        self.membership_result(res.map(|r| r.map(|_| ())))
    }

    async fn change_membership(
        &self,
        req: Request<pb::ChangeMembershipRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        let req = req.into_inner();
        let voters: BTreeSet<NodeId> = req.voters.into_iter().collect();
        if voters.is_empty() {
            return Err(Status::invalid_argument(
                "a cluster needs at least one voter",
            ));
        }
        // A change right after another (or right after an election, before the
        // new leader committed the current membership) is refused as "in
        // progress"; that clears by itself, so wait for it here.
        let deadline = tokio::time::Instant::now() + self.quorum_timeout * 4;
        let res = loop {
            let res = tokio::time::timeout_at(
                deadline,
                self.raft.change_membership(voters.clone(), req.retain),
            )
            .await;
            if let Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                ChangeMembershipError::InProgress(_),
            )))) = &res
            {
                if tokio::time::Instant::now() + Duration::from_millis(100) < deadline {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
            break res;
        };
        self.membership_result(res.map(|r| r.map(|_| ())))
    }
}

type MembershipError = RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>;

impl MetaService {
    fn membership_result(
        &self,
        res: Result<Result<(), MembershipError>, tokio::time::error::Elapsed>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        match res {
            Err(_) => Err(Status::unavailable(
                "membership change not committed in time",
            )),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                Err(not_leader(&f))
            }
            Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => {
                Err(Status::failed_precondition(e.to_string()))
            }
            Ok(Err(e)) => Err(Status::unavailable(e.to_string())),
            Ok(Ok(())) => Ok(Response::new(pb::MembershipResponse {
                members: status(self.id, &self.raft, &self.sm).members,
            })),
        }
    }
}

/// The node's view of the cluster, as reported by `Status` and `/health`.
pub fn status(id: NodeId, raft: &Raft, sm: &SmShared) -> pb::StatusResponse {
    let m = raft.metrics();
    let m = m.borrow();
    let membership = m.membership_config.membership();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let nodes: BTreeMap<NodeId, BasicNode> =
        membership.nodes().map(|(id, n)| (*id, n.clone())).collect();
    let leader_addr = m
        .current_leader
        .and_then(|l| nodes.get(&l))
        .map(|n| n.addr.clone())
        .unwrap_or_default();
    pb::StatusResponse {
        id,
        leader: m.current_leader.unwrap_or(0),
        leader_addr,
        term: m.current_term,
        members: nodes
            .iter()
            .map(|(id, n)| pb::Member {
                id: *id,
                addr: n.addr.clone(),
                voter: voters.contains(id),
            })
            .collect(),
        last_log_index: m.last_log_index.unwrap_or(0),
        applied_index: m.last_applied.map_or(0, |l| l.index),
        snapshot_index: m.snapshot.map_or(0, |l| l.index),
        revision: sm.revision(),
        state: format!("{:?}", m.state),
    }
}

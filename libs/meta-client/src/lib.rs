//! Client for Magnetar's metadata service.
//!
//! - Follows the leader: a node that is not the leader answers with the leader's
//!   address and the client goes there; an unreachable node is skipped.
//! - Retries safely: every write carries a request id that the service remembers,
//!   so a write retried after a timeout or a leader change is applied at most once.
//! - Every call has a per-attempt timeout and an overall deadline; past the
//!   deadline the caller gets `Error::Unavailable` with the last cause.

mod error;
mod lease;
mod request_ids;
mod txn;
mod txn_stream;
mod watch;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use magnetar_proto::meta as pb;
use magnetar_proto::meta::meta_client::MetaClient as RpcClient;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

pub use error::Error;
pub use lease::{LeaseKeeper, LeaseValidity};
pub use pb::event::Type as EventType;
pub use pb::{Event, KeyValue, LeaseInfo, Member, StatusResponse, TxnResponse, WatchResponse};
pub use txn::{CompareOp, Txn};
pub use watch::Watcher;

use txn_stream::TxnSession;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Addresses (host:port) of some or all metadata nodes.
    pub endpoints: Vec<String>,
    /// Limit for one attempt against one node.
    pub request_timeout: Duration,
    /// Limit for a whole call, retries included.
    pub operation_timeout: Duration,
    pub connect_timeout: Duration,
}

impl ClientConfig {
    pub fn new(endpoints: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            request_timeout: Duration::from_secs(4),
            operation_timeout: Duration::from_secs(15),
            connect_timeout: Duration::from_millis(500),
        }
    }

    /// Parses a comma-separated list such as `127.0.0.1:7001,127.0.0.1:7002`.
    pub fn from_list(list: &str) -> Self {
        Self::new(list.split(',').map(str::trim).filter(|s| !s.is_empty()))
    }
}

#[derive(Clone)]
pub struct MetaClient {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: ClientConfig,
    channels: Mutex<HashMap<String, Channel>>,
    /// Per server: the stream that carries this client's transactions.
    sessions: Mutex<HashMap<String, TxnSession>>,
    /// Set when a server does not know `TxnStream` (an older version): then
    /// every write is a unary `Txn` call.
    unary_txns: AtomicBool,
    /// The node that last answered as (or named itself as) the leader.
    leader: Mutex<Option<String>>,
    next_endpoint: AtomicUsize,
    requests: request_ids::RequestIds,
}

/// A page of keys.
#[derive(Clone, Debug, Default)]
pub struct ListPage {
    pub kvs: Vec<KeyValue>,
    pub more: bool,
    pub revision: i64,
}

#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    pub start_after: Vec<u8>,
    pub limit: u32,
    pub keys_only: bool,
    pub serializable: bool,
}

#[derive(Clone, Debug, Default)]
pub struct PutOptions {
    /// Compare-and-set: the put happens only if the key's version is this
    /// (0 = the key must not exist).
    pub expected_version: Option<i64>,
    /// Attach the key to a lease (0 = none).
    pub lease: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PutResult {
    pub version: i64,
    pub revision: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    pub id: i64,
    pub ttl_seconds: i64,
}

impl MetaClient {
    pub fn new(cfg: ClientConfig) -> Result<Self> {
        if cfg.endpoints.is_empty() {
            return Err(Error::InvalidArgument("no metadata endpoints given".into()));
        }
        for e in &cfg.endpoints {
            Endpoint::from_shared(format!("http://{e}"))
                .map_err(|err| Error::InvalidArgument(format!("bad endpoint {e:?}: {err}")))?;
        }
        Ok(Self {
            inner: Arc::new(Inner {
                cfg,
                channels: Mutex::new(HashMap::new()),
                sessions: Mutex::new(HashMap::new()),
                unary_txns: AtomicBool::new(false),
                leader: Mutex::new(None),
                next_endpoint: AtomicUsize::new(0),
                requests: request_ids::RequestIds::new(rand::random::<u64>().max(1)),
            }),
        })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.cfg
    }

    fn channel(&self, addr: &str) -> Result<Channel> {
        let mut channels = self
            .inner
            .channels
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| Error::InvalidArgument(format!("bad address {addr:?}: {e}")))?
            .connect_timeout(self.inner.cfg.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5));
        let ch = magnetar_tls::internal::connect_lazy(endpoint);
        channels.insert(addr.to_string(), ch.clone());
        Ok(ch)
    }

    fn rpc(&self, addr: &str) -> Result<RpcClient<Channel>> {
        Ok(RpcClient::new(self.channel(addr)?)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20))
    }

    /// The open transaction stream to `addr`, or a new one.
    fn session(&self, addr: &str) -> Result<TxnSession> {
        let mut sessions = self
            .inner
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(s) = sessions.get(addr).filter(|s| s.is_open()) {
            return Ok(s.clone());
        }
        let s = TxnSession::open(self.rpc(addr)?, self.inner.cfg.request_timeout);
        sessions.insert(addr.to_string(), s.clone());
        Ok(s)
    }

    fn pick_target(&self) -> String {
        if let Some(l) = self
            .inner
            .leader
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return l;
        }
        let eps = &self.inner.cfg.endpoints;
        eps[self.inner.next_endpoint.load(Ordering::Relaxed) % eps.len()].clone()
    }

    fn set_leader(&self, addr: Option<String>) {
        *self.inner.leader.lock().unwrap_or_else(|p| p.into_inner()) = addr;
    }

    fn rotate(&self) {
        self.set_leader(None);
        self.inner.next_endpoint.fetch_add(1, Ordering::Relaxed);
    }

    /// A write's id; keep the guard until the write will not be retried.
    fn next_request_id(&self) -> (pb::RequestId, request_ids::InFlight) {
        self.inner.requests.next()
    }

    /// Runs `f` against the leader, following redirects and retrying transient
    /// failures until the operation deadline. `f` must be safe to repeat: reads
    /// are, and writes carry a fixed request id.
    async fn call<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: Fn(RpcClient<Channel>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, Status>>,
    {
        self.call_at(|target| {
            let call = f(self.rpc(target)?);
            Ok(async move { call.await.map(tonic::Response::into_inner) })
        })
        .await
    }

    /// `call` for any way of reaching a server: `f` starts one attempt at `target`.
    async fn call_at<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: Fn(&str) -> Result<Fut>,
        Fut: Future<Output = std::result::Result<T, Status>>,
    {
        let cfg = &self.inner.cfg;
        let start = Instant::now();
        let deadline = start + cfg.operation_timeout;
        let mut backoff = Duration::from_millis(20);
        let mut attempts = 0u32;
        let mut last;
        loop {
            attempts += 1;
            let target = self.pick_target();
            let remaining = deadline.saturating_duration_since(Instant::now());
            let attempt_timeout = cfg.request_timeout.min(remaining);
            let outcome = tokio::time::timeout(attempt_timeout, f(&target)?).await;
            let mut redirected = false;
            match outcome {
                Ok(Ok(resp)) => {
                    self.set_leader(Some(target));
                    return Ok(resp);
                }
                Ok(Err(status)) => {
                    if let Some(err) = Error::from_final_status(&status) {
                        return Err(err);
                    }
                    last = format!("{target}: {}", status.message());
                    match leader_hint(&status) {
                        Some(leader) if leader != target => {
                            self.set_leader(Some(leader));
                            redirected = true;
                        }
                        _ => self.rotate(),
                    }
                }
                Err(_) => {
                    last = format!("{target}: no answer within {attempt_timeout:?}");
                    self.rotate();
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::Unavailable {
                    elapsed: start.elapsed(),
                    attempts,
                    last,
                });
            }
            if !redirected {
                let pause = backoff.min(deadline.saturating_duration_since(Instant::now()));
                tokio::time::sleep(pause).await;
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
        }
    }

    // ---- reads ----------------------------------------------------------

    /// Linearizable read of one key.
    pub async fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<KeyValue>> {
        self.get_with(key, false).await
    }

    /// Read of one key; `serializable` reads whichever node answers (may be stale).
    pub async fn get_with(
        &self,
        key: impl AsRef<[u8]>,
        serializable: bool,
    ) -> Result<Option<KeyValue>> {
        let req = pb::GetRequest {
            key: key.as_ref().to_vec().into(),
            serializable,
        };
        let resp = self.call(|mut c| {
            let req = req.clone();
            async move { c.get(req).await }
        });
        Ok(resp.await?.kv)
    }

    pub async fn list(&self, prefix: impl AsRef<[u8]>, opts: ListOptions) -> Result<ListPage> {
        let req = pb::ListRequest {
            prefix: prefix.as_ref().to_vec().into(),
            start_after: opts.start_after.into(),
            limit: opts.limit,
            keys_only: opts.keys_only,
            serializable: opts.serializable,
        };
        let resp = self
            .call(|mut c| {
                let req = req.clone();
                async move { c.list(req).await }
            })
            .await?;
        Ok(ListPage {
            kvs: resp.kvs,
            more: resp.more,
            revision: resp.header.map_or(0, |h| h.revision),
        })
    }

    /// Every key under `prefix`, page by page. The revision is the first page's;
    /// watch from `revision + 1` to follow changes (later pages may be newer).
    pub async fn list_all(&self, prefix: impl AsRef<[u8]>) -> Result<ListPage> {
        let mut out = ListPage::default();
        let mut start_after = Vec::new();
        loop {
            let page = self
                .list(
                    prefix.as_ref(),
                    ListOptions {
                        start_after: start_after.clone(),
                        ..Default::default()
                    },
                )
                .await?;
            if out.revision == 0 {
                out.revision = page.revision;
            }
            if let Some(last) = page.kvs.last() {
                start_after = last.key.to_vec();
            }
            out.kvs.extend(page.kvs);
            if !page.more {
                return Ok(out);
            }
        }
    }

    // ---- writes ---------------------------------------------------------

    pub async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        let (id, _in_flight) = self.next_request_id();
        let req = txn.into_request(id);
        if !self.inner.unary_txns.load(Ordering::Relaxed) {
            let streamed = self
                .call_at(|target| {
                    let (session, req) = (self.session(target)?, req.clone());
                    Ok(async move { session.txn(req).await })
                })
                .await;
            match streamed {
                // Only a server that predates `TxnStream` says this; it did
                // not apply anything, so the same request goes unary.
                Err(Error::Unimplemented(_)) => {
                    tracing::info!("metadata server has no transaction stream; writes go unary");
                    self.inner.unary_txns.store(true, Ordering::Relaxed);
                }
                other => return other,
            }
        }
        self.call(|mut c| {
            let req = req.clone();
            async move { c.txn(req).await }
        })
        .await
    }

    pub async fn put(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<PutResult> {
        self.put_with(key, value, PutOptions::default()).await
    }

    /// Put with options; a failed compare-and-set is `Error::VersionMismatch`.
    pub async fn put_with(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let key = key.as_ref();
        let mut txn = Txn::new();
        if let Some(v) = opts.expected_version {
            txn = txn.when(key, CompareOp::Equal, v);
        }
        let resp = self.txn(txn.put_with_lease(key, value, opts.lease)).await?;
        let revision = resp.header.as_ref().map_or(0, |h| h.revision);
        if !resp.succeeded {
            return Err(Error::VersionMismatch {
                key: String::from_utf8_lossy(key).into_owned(),
                expected: opts.expected_version.unwrap_or(0),
                actual: resp.compare_versions.first().copied().unwrap_or(0),
            });
        }
        let version = match resp.results.first().and_then(|r| r.result) {
            Some(pb::op_result::Result::Put(p)) => p.version,
            _ => 0,
        };
        Ok(PutResult { version, revision })
    }

    /// Deletes one key (if `expected_version` is set, only at that version).
    /// Returns whether a key was deleted.
    pub async fn delete(
        &self,
        key: impl AsRef<[u8]>,
        expected_version: Option<i64>,
    ) -> Result<bool> {
        let key = key.as_ref();
        let mut txn = Txn::new();
        if let Some(v) = expected_version {
            txn = txn.when(key, CompareOp::Equal, v);
        }
        let resp = self.txn(txn.delete(key)).await?;
        if !resp.succeeded {
            return Err(Error::VersionMismatch {
                key: String::from_utf8_lossy(key).into_owned(),
                expected: expected_version.unwrap_or(0),
                actual: resp.compare_versions.first().copied().unwrap_or(0),
            });
        }
        Ok(deleted_count(&resp) > 0)
    }

    /// Deletes every key under `prefix`; returns how many.
    pub async fn delete_prefix(&self, prefix: impl AsRef<[u8]>) -> Result<i64> {
        let resp = self.txn(Txn::new().delete_prefix(prefix)).await?;
        Ok(deleted_count(&resp))
    }

    // ---- leases ---------------------------------------------------------

    pub async fn lease_grant(&self, ttl_seconds: i64) -> Result<Lease> {
        let (id, _in_flight) = self.next_request_id();
        let req = pb::LeaseGrantRequest {
            ttl_seconds,
            request_id: Some(id),
        };
        let resp = self
            .call(|mut c| async move { c.lease_grant(req).await })
            .await?;
        Ok(Lease {
            id: resp.lease_id,
            ttl_seconds: resp.ttl_seconds,
        })
    }

    /// Renews a lease once; `Error::NotFound` if it has expired.
    pub async fn lease_keep_alive(&self, lease_id: i64) -> Result<i64> {
        let req = pb::LeaseKeepAliveRequest { lease_id };
        let resp = self
            .call(|mut c| async move { c.lease_keep_alive(req).await })
            .await?;
        Ok(resp.ttl_seconds)
    }

    /// Keeps a lease alive from a background task until the keeper is dropped.
    pub fn keep_alive(&self, lease: Lease) -> LeaseKeeper {
        LeaseKeeper::spawn(self.clone(), lease, None)
    }

    /// As `keep_alive`, and the lease also counts as lost once no renewal
    /// has been answered for 0.9 TTL (counted from `granted_at`, when the
    /// grant was requested, then from each renewal's sending): never later
    /// than the server can expire it. For holders whose keys fence others.
    pub fn keep_alive_since(&self, lease: Lease, granted_at: std::time::Instant) -> LeaseKeeper {
        LeaseKeeper::spawn(self.clone(), lease, Some(granted_at))
    }

    /// Revokes a lease (its keys are deleted); returns whether it existed.
    pub async fn lease_revoke(&self, lease_id: i64) -> Result<bool> {
        let (id, _in_flight) = self.next_request_id();
        let req = pb::LeaseRevokeRequest {
            lease_id,
            request_id: Some(id),
        };
        let resp = self
            .call(|mut c| async move { c.lease_revoke(req).await })
            .await?;
        Ok(resp.found)
    }

    pub async fn lease_list(&self) -> Result<Vec<LeaseInfo>> {
        let resp = self
            .call(|mut c| async move { c.lease_list(pb::LeaseListRequest {}).await })
            .await?;
        Ok(resp.leases)
    }

    // ---- watches --------------------------------------------------------

    /// Watches keys under `prefix` from `start_revision` (0 = from now on).
    /// The watcher reconnects to another node by itself and resumes where it was.
    pub async fn watch(&self, prefix: impl AsRef<[u8]>, start_revision: i64) -> Result<Watcher> {
        Watcher::start(self.clone(), prefix.as_ref().to_vec(), start_revision).await
    }

    // ---- cluster --------------------------------------------------------

    /// Status as seen by the first node that answers (the known leader, if any).
    pub async fn status(&self) -> Result<StatusResponse> {
        self.call(|mut c| async move { c.status(pb::StatusRequest {}).await })
            .await
    }

    /// Status as seen by one particular node.
    pub async fn status_of(&self, addr: &str) -> Result<StatusResponse> {
        let mut c = self.rpc(addr)?;
        match tokio::time::timeout(
            self.inner.cfg.request_timeout,
            c.status(pb::StatusRequest {}),
        )
        .await
        {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(s)) => Err(Error::from_final_status(&s).unwrap_or(Error::Unavailable {
                elapsed: Duration::ZERO,
                attempts: 1,
                last: format!("{addr}: {}", s.message()),
            })),
            Err(_) => Err(Error::Unavailable {
                elapsed: self.inner.cfg.request_timeout,
                attempts: 1,
                last: format!("{addr}: no answer"),
            }),
        }
    }

    pub async fn add_learner(&self, id: u64, addr: &str) -> Result<Vec<Member>> {
        let req = pb::AddLearnerRequest {
            id,
            addr: addr.to_string(),
        };
        let resp = self
            .call(|mut c| {
                let req = req.clone();
                async move { c.add_learner(req).await }
            })
            .await?;
        Ok(resp.members)
    }

    /// Sets the voters to exactly `voters`; others are dropped (or kept as
    /// learners with `retain`).
    pub async fn change_membership(&self, voters: Vec<u64>, retain: bool) -> Result<Vec<Member>> {
        let req = pb::ChangeMembershipRequest { voters, retain };
        let resp = self
            .call(|mut c| {
                let req = req.clone();
                async move { c.change_membership(req).await }
            })
            .await?;
        Ok(resp.members)
    }
}

fn deleted_count(resp: &TxnResponse) -> i64 {
    resp.results
        .iter()
        .filter_map(|r| match &r.result {
            Some(pb::op_result::Result::Delete(d)) => Some(d.deleted),
            _ => None,
        })
        .sum()
}

fn leader_hint(status: &Status) -> Option<String> {
    if status.code() != Code::Unavailable {
        return None;
    }
    status
        .metadata()
        .get(pb::LEADER_ADDR_METADATA)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

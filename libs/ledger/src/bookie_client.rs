//! Connections to bookies. One pipelined add stream per bookie carries the adds
//! of every ledger this process writes; answers are matched to callers by
//! (ledger, entry). A broken stream fails everything in flight on it, and the
//! next add opens a fresh one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use magnetar_proto::bookie as pb;
use magnetar_proto::bookie::bookie_client::BookieClient as Rpc;
use tokio::sync::{mpsc, oneshot};
use tonic::transport::{Channel, Endpoint};

/// Why a bookie did not store an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddFailure {
    Fenced,
    Unauthorized,
    /// The bookie refused (read-only, bad checksum, …): try another bookie.
    Refused(String),
    /// No answer (connection lost, timeout): the bookie is presumed failed.
    Transport(String),
}

/// In-flight adds by request id.
type Waiters = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<(), AddFailure>>>>>;

struct AddStream {
    tx: mpsc::Sender<pb::AddRequest>,
}

pub struct BookieClient {
    pub addr: String,
    rpc: Rpc<Channel>,
    stream: tokio::sync::Mutex<Option<AddStream>>,
    waiters: Waiters,
    next_request: std::sync::atomic::AtomicU64,
    timeout: Duration,
}

const MAX_MESSAGE: usize = 8 << 20;
pub const STREAM_WINDOW: u32 = 16 << 20;
pub const CONNECTION_WINDOW: u32 = 32 << 20;

impl BookieClient {
    fn new(addr: &str, timeout: Duration) -> Result<Self, String> {
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| format!("bad bookie address {addr:?}: {e}"))?
            .connect_timeout(timeout)
            .tcp_nodelay(true)
            // One stream carries every add to this bookie: HTTP/2's default
            // 64 KiB stream window would allow one large entry per round trip.
            .initial_stream_window_size(Some(STREAM_WINDOW))
            .initial_connection_window_size(Some(CONNECTION_WINDOW))
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5));
        Ok(Self {
            addr: addr.to_string(),
            rpc: Rpc::new(endpoint.connect_lazy())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            stream: tokio::sync::Mutex::new(None),
            waiters: Arc::new(Mutex::new(HashMap::new())),
            next_request: std::sync::atomic::AtomicU64::new(1),
            timeout,
        })
    }

    fn fail_all(waiters: &Waiters, reason: &str) {
        let drained: Vec<_> = waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .collect();
        for (_, w) in drained {
            let _ = w.send(Err(AddFailure::Transport(reason.to_string())));
        }
    }

    async fn open_stream(&self) -> Result<AddStream, AddFailure> {
        let (tx, rx) = mpsc::channel::<pb::AddRequest>(4096);
        let mut rpc = self.rpc.clone();
        let call = rpc.add_entries(tokio_stream::wrappers::ReceiverStream::new(rx));
        let mut responses = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(s)) => {
                return Err(AddFailure::Transport(format!(
                    "{}: {}",
                    self.addr,
                    s.message()
                )))
            }
            Err(_) => return Err(AddFailure::Transport(format!("{}: no answer", self.addr))),
        };
        let waiters = self.waiters.clone();
        let addr = self.addr.clone();
        tokio::spawn(async move {
            loop {
                match responses.message().await {
                    Ok(Some(r)) => {
                        let waiter = waiters
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&r.request_id);
                        if let Some(w) = waiter {
                            let _ = w.send(match pb::StatusCode::try_from(r.code) {
                                Ok(pb::StatusCode::Ok) => Ok(()),
                                Ok(pb::StatusCode::Fenced) => Err(AddFailure::Fenced),
                                Ok(pb::StatusCode::Unauthorized) => Err(AddFailure::Unauthorized),
                                _ => Err(AddFailure::Refused(r.message)),
                            });
                        }
                    }
                    Ok(None) => {
                        Self::fail_all(&waiters, &format!("{addr}: add stream closed"));
                        return;
                    }
                    Err(s) => {
                        Self::fail_all(&waiters, &format!("{addr}: {}", s.message()));
                        return;
                    }
                }
            }
        });
        Ok(AddStream { tx })
    }

    /// Sends an add; the receiver resolves with the bookie's answer.
    pub async fn add(&self, mut req: pb::AddRequest) -> oneshot::Receiver<Result<(), AddFailure>> {
        let (tx, rx) = oneshot::channel();
        let key = self
            .next_request
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        req.request_id = key;
        self.waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, tx);
        let mut stream = self.stream.lock().await;
        if stream.as_ref().is_none_or(|s| s.tx.is_closed()) {
            match self.open_stream().await {
                Ok(s) => *stream = Some(s),
                Err(e) => {
                    if let Some(w) = self
                        .waiters
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&key)
                    {
                        let _ = w.send(Err(e));
                    }
                    return rx;
                }
            }
        }
        if let Some(s) = stream.as_ref() {
            if s.tx.send(req).await.is_err() {
                *stream = None;
                if let Some(w) = self
                    .waiters
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&key)
                {
                    let _ = w.send(Err(AddFailure::Transport(format!(
                        "{}: add stream closed",
                        self.addr
                    ))));
                }
            }
        }
        rx
    }

    async fn unary<T, F, Fut>(&self, f: F) -> Result<T, String>
    where
        F: FnOnce(Rpc<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        match tokio::time::timeout(self.timeout, f(self.rpc.clone())).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(s)) => Err(format!("{}: {}", self.addr, s.message())),
            Err(_) => Err(format!(
                "{}: no answer within {:?}",
                self.addr, self.timeout
            )),
        }
    }

    pub async fn read(&self, ledger_id: u64, entry_id: i64) -> Result<pb::ReadResponse, String> {
        self.unary(|mut c| async move {
            c.read_entry(pb::ReadRequest {
                ledger_id,
                entry_id,
            })
            .await
        })
        .await
    }

    pub async fn fence(
        &self,
        ledger_id: u64,
        master_key: Vec<u8>,
    ) -> Result<pb::FenceResponse, String> {
        self.unary(|mut c| async move {
            c.fence(pb::FenceRequest {
                ledger_id,
                master_key: master_key.into(),
            })
            .await
        })
        .await
    }

    /// Long-polls for a LAC above `previous_lac` (bounded by `wait`).
    pub async fn read_lac(
        &self,
        ledger_id: u64,
        previous_lac: i64,
        wait: Duration,
    ) -> Result<pb::ReadLacResponse, String> {
        let req = pb::ReadLacRequest {
            ledger_id,
            previous_lac,
            timeout_ms: wait.as_millis() as u32,
        };
        match tokio::time::timeout(self.timeout + wait, self.rpc.clone().read_lac(req)).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(s)) => Err(format!("{}: {}", self.addr, s.message())),
            Err(_) => Err(format!("{}: no answer", self.addr)),
        }
    }

    pub async fn delete(&self, ledger_id: u64) -> Result<pb::DeleteLedgerResponse, String> {
        self.unary(
            |mut c| async move { c.delete_ledger(pb::DeleteLedgerRequest { ledger_id }).await },
        )
        .await
    }

    pub async fn info(&self) -> Result<pb::InfoResponse, String> {
        self.unary(|mut c| async move { c.info(pb::InfoRequest {}).await })
            .await
    }
}

/// One client per bookie address, shared by every ledger of the process.
pub struct BookiePool {
    clients: Mutex<HashMap<String, Arc<BookieClient>>>,
    timeout: Duration,
}

impl BookiePool {
    pub fn new(timeout: Duration) -> Self {
        Self {
            clients: Mutex::new(HashMap::new()),
            timeout,
        }
    }

    pub fn get(&self, addr: &str) -> Result<Arc<BookieClient>, String> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(addr) {
            return Ok(c.clone());
        }
        let c = Arc::new(BookieClient::new(addr, self.timeout)?);
        clients.insert(addr.to_string(), c.clone());
        Ok(c)
    }
}

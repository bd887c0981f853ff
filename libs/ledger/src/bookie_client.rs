//! Connections to bookies. One pipelined add stream per bookie carries the adds
//! of every ledger this process writes; answers are matched to callers by
//! request id and handed to each add's callback straight from the stream's
//! response loop (no task, timer or channel per add). A broken stream, or one
//! whose oldest add has gone unanswered for the add timeout, fails everything
//! in flight on it, and the next add opens a fresh one.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use magnetar_proto::bookie as pb;
use magnetar_proto::bookie::bookie_client::BookieClient as Rpc;
use tokio::sync::mpsc::error::TrySendError;
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

/// Receives the bookie's answer to one add, exactly once. It runs on the
/// stream's response task, so it must not block.
pub type AddCallback = Box<dyn FnOnce(Result<(), AddFailure>) + Send>;

struct InFlight {
    sent: Instant,
    done: AddCallback,
}

/// The adds in flight on one stream, by request id (ids only grow, so the
/// first is the oldest). Once the stream has ended it is `closed`: nothing
/// more is registered, so every callback runs once, either with the answer
/// or with the stream's failure.
#[derive(Default)]
struct Waiters {
    closed: bool,
    by_request: BTreeMap<u64, InFlight>,
}

type SharedWaiters = Arc<Mutex<Waiters>>;

fn lock(w: &SharedWaiters) -> MutexGuard<'_, Waiters> {
    w.lock().unwrap_or_else(|p| p.into_inner())
}

/// Fails every add in flight on a stream and closes it to new ones.
fn fail_all(waiters: &SharedWaiters, reason: &str) {
    let drained = {
        let mut w = lock(waiters);
        w.closed = true;
        std::mem::take(&mut w.by_request)
    };
    for (_, f) in drained {
        (f.done)(Err(AddFailure::Transport(reason.to_string())));
    }
}

/// An add that could not be queued on its stream. Whoever takes a waiter out
/// of the map answers it: the stream's own failure may have got there first.
fn answer_closed(waiters: &SharedWaiters, key: u64, addr: &str) {
    let f = lock(waiters).by_request.remove(&key);
    if let Some(f) = f {
        (f.done)(Err(AddFailure::Transport(format!(
            "{addr}: add stream closed"
        ))));
    }
}

struct AddStream {
    tx: mpsc::Sender<pb::AddRequest>,
    waiters: SharedWaiters,
}

pub struct BookieClient {
    pub addr: String,
    rpc: Rpc<Channel>,
    stream: Mutex<Option<AddStream>>,
    next_request: AtomicU64,
    timeout: Duration,
    add_timeout: Duration,
}

const MAX_MESSAGE: usize = 8 << 20;
pub const STREAM_WINDOW: u32 = 16 << 20;
pub const CONNECTION_WINDOW: u32 = 32 << 20;
/// Adds queued for one stream before senders fall back to waiting.
const STREAM_QUEUE: usize = 4096;

impl BookieClient {
    fn new(addr: &str, timeout: Duration, add_timeout: Duration) -> Result<Self, String> {
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
            rpc: Rpc::new(magnetar_tls::internal::connect_lazy(endpoint))
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            stream: Mutex::new(None),
            next_request: AtomicU64::new(1),
            timeout,
            add_timeout,
        })
    }

    /// A stream whose call is still being set up already takes adds: they
    /// wait in its queue until the bookie accepts the call.
    fn open_stream(&self) -> AddStream {
        let (tx, rx) = mpsc::channel::<pb::AddRequest>(STREAM_QUEUE);
        let waiters = SharedWaiters::default();
        tokio::spawn(run_stream(
            self.rpc.clone(),
            rx,
            waiters.clone(),
            self.addr.clone(),
            self.timeout,
            self.add_timeout,
        ));
        AddStream { tx, waiters }
    }

    /// Sends an add; `done` gets the bookie's answer, or a transport failure
    /// if the stream breaks or the bookie stays silent for the add timeout.
    pub fn add(&self, mut req: pb::AddRequest, done: AddCallback) {
        let key = self.next_request.fetch_add(1, Ordering::Relaxed);
        req.request_id = key;
        let (tx, waiters) = {
            let mut slot = self.stream.lock().unwrap_or_else(|p| p.into_inner());
            if slot
                .as_ref()
                .is_some_and(|s| s.tx.is_closed() || lock(&s.waiters).closed)
            {
                *slot = None;
            }
            let s = slot.get_or_insert_with(|| self.open_stream());
            (s.tx.clone(), s.waiters.clone())
        };
        {
            let mut w = lock(&waiters);
            if w.closed {
                drop(w);
                done(Err(AddFailure::Transport(format!(
                    "{}: add stream closed",
                    self.addr
                ))));
                return;
            }
            w.by_request.insert(
                key,
                InFlight {
                    sent: Instant::now(),
                    done,
                },
            );
        }
        match tx.try_send(req) {
            Ok(()) => {}
            Err(TrySendError::Closed(_)) => answer_closed(&waiters, key, &self.addr),
            // A full queue is the backpressure of a slow bookie: the add waits
            // for room on a task of its own (rare; the queue holds thousands).
            Err(TrySendError::Full(req)) => {
                let addr = self.addr.clone();
                tokio::spawn(async move {
                    if tx.send(req).await.is_err() {
                        answer_closed(&waiters, key, &addr);
                    }
                });
            }
        }
    }

    /// `add`, awaiting the answer.
    pub async fn add_and_wait(&self, req: pb::AddRequest) -> Result<(), AddFailure> {
        let (tx, rx) = oneshot::channel();
        self.add(
            req,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        rx.await
            .unwrap_or_else(|_| Err(AddFailure::Transport(format!("{}: answer lost", self.addr))))
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

/// Sets up one add stream's call and then answers its adds as responses come
/// back, checking on a coarse tick that the oldest add is not overdue.
async fn run_stream(
    mut rpc: Rpc<Channel>,
    rx: mpsc::Receiver<pb::AddRequest>,
    waiters: SharedWaiters,
    addr: String,
    timeout: Duration,
    add_timeout: Duration,
) {
    let call = rpc.add_entries(tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut responses = match tokio::time::timeout(timeout, call).await {
        Ok(Ok(r)) => r.into_inner(),
        Ok(Err(s)) => return fail_all(&waiters, &format!("{addr}: {}", s.message())),
        Err(_) => return fail_all(&waiters, &format!("{addr}: no answer")),
    };
    let mut tick = tokio::time::interval((add_timeout / 10).max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            msg = responses.message() => match msg {
                Ok(Some(r)) => {
                    let f = lock(&waiters).by_request.remove(&r.request_id);
                    if let Some(f) = f {
                        (f.done)(match pb::StatusCode::try_from(r.code) {
                            Ok(pb::StatusCode::Ok) => Ok(()),
                            Ok(pb::StatusCode::Fenced) => Err(AddFailure::Fenced),
                            Ok(pb::StatusCode::Unauthorized) => Err(AddFailure::Unauthorized),
                            _ => Err(AddFailure::Refused(r.message)),
                        });
                    }
                }
                Ok(None) => return fail_all(&waiters, &format!("{addr}: add stream closed")),
                Err(s) => return fail_all(&waiters, &format!("{addr}: {}", s.message())),
            },
            _ = tick.tick() => {
                let overdue = lock(&waiters)
                    .by_request
                    .first_key_value()
                    .is_some_and(|(_, f)| f.sent.elapsed() > add_timeout);
                if overdue {
                    return fail_all(
                        &waiters,
                        &format!("{addr}: no answer within {add_timeout:?}"),
                    );
                }
            }
        }
    }
}

/// One client per bookie address, shared by every ledger of the process.
pub struct BookiePool {
    clients: Mutex<HashMap<String, Arc<BookieClient>>>,
    timeout: Duration,
    add_timeout: Duration,
}

impl BookiePool {
    /// `timeout` bounds connecting and each unary request; a bookie that
    /// leaves an add unanswered for `add_timeout` is presumed failed.
    pub fn new(timeout: Duration, add_timeout: Duration) -> Self {
        Self {
            clients: Mutex::new(HashMap::new()),
            timeout,
            add_timeout,
        }
    }

    pub fn get(&self, addr: &str) -> Result<Arc<BookieClient>, String> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(addr) {
            return Ok(c.clone());
        }
        let c = Arc::new(BookieClient::new(addr, self.timeout, self.add_timeout)?);
        clients.insert(addr.to_string(), c.clone());
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn counting(calls: &Arc<AtomicUsize>) -> InFlight {
        let calls = calls.clone();
        InFlight {
            sent: Instant::now(),
            done: Box::new(move |r| {
                assert!(matches!(r, Err(AddFailure::Transport(_))));
                calls.fetch_add(1, Ordering::SeqCst);
            }),
        }
    }

    #[test]
    fn a_failed_stream_answers_each_waiter_once_and_takes_no_more() {
        let waiters = SharedWaiters::default();
        let calls = Arc::new(AtomicUsize::new(0));
        for key in 1..=3 {
            lock(&waiters).by_request.insert(key, counting(&calls));
        }
        fail_all(&waiters, "gone");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert!(lock(&waiters).closed);
        // A sender that then finds the queue closed must not answer again.
        answer_closed(&waiters, 2, "b");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn an_unqueued_add_is_answered_by_the_sender_when_still_registered() {
        let waiters = SharedWaiters::default();
        let calls = Arc::new(AtomicUsize::new(0));
        lock(&waiters).by_request.insert(7, counting(&calls));
        answer_closed(&waiters, 7, "b");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        fail_all(&waiters, "gone");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}

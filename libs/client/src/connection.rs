//! One TCP connection to a broker: the CONNECT handshake, a writer task fed
//! by a queue, and a reader task that routes what arrives — answers to the
//! request that asked, receipts to their producer, messages to their consumer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use magnetar_wire::{pb, BaseCommand, CommandType, Frame, Payload, PulsarCodec};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{FramedRead, FramedWrite};

use crate::error::{ClientError, Result};
use crate::ClientConfig;

const PROTOCOL_VERSION: i32 = 21;
/// Frames the client accepts: the largest message plus headers.
const MAX_FRAME: usize = magnetar_wire::DEFAULT_MAX_FRAME_SIZE + (1 << 20);
const KEEPALIVE: Duration = Duration::from_secs(30);

/// The halves of a plain or TLS connection.
type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// What the reader task hands to a producer.
pub(crate) enum ProducerEvent {
    Receipt {
        sequence_id: u64,
        id: Option<pb::MessageIdData>,
    },
    Error {
        sequence_id: u64,
        error: ClientError,
    },
    /// The broker closed the producer, or the connection is gone.
    Closed,
}

/// What the reader task hands to a consumer.
pub(crate) enum ConsumerEvent {
    /// Boxed: metadata makes it large and most events are messages anyway.
    Message(Box<(pb::CommandMessage, Payload)>),
    /// The topic was terminated and the consumer has been sent all of it.
    EndOfTopic,
    Closed,
}

#[derive(Default)]
struct Routes {
    requests: HashMap<u64, oneshot::Sender<Result<BaseCommand>>>,
    producers: HashMap<u64, mpsc::UnboundedSender<ProducerEvent>>,
    consumers: HashMap<u64, mpsc::UnboundedSender<ConsumerEvent>>,
}

struct Shared {
    routes: Mutex<Routes>,
    next_id: AtomicU64,
    closed: AtomicBool,
    max_message_size: usize,
    operation_timeout: Duration,
    /// Sent again when the broker asks (AUTH_CHALLENGE).
    auth_token: Option<String>,
}

#[derive(Clone)]
pub(crate) struct Connection {
    /// Unbounded: what is queued is bounded by producers' pending limits and
    /// by the requests callers wait on.
    tx: mpsc::UnboundedSender<Frame>,
    shared: Arc<Shared>,
}

fn lock(m: &Mutex<Routes>) -> MutexGuard<'_, Routes> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Connection {
    /// Connects to `addr` (`host:port`), over TLS with `tls`.
    pub(crate) async fn connect(
        addr: &str,
        cfg: &ClientConfig,
        tls: Option<&magnetar_tls::TlsConnector>,
    ) -> Result<Connection> {
        let fail = |source| ClientError::Connect {
            addr: addr.to_string(),
            source,
        };
        let stream = tokio::time::timeout(cfg.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout(cfg.connect_timeout))?
            .map_err(fail)?;
        let _ = stream.set_nodelay(true);
        let (rd, wr): (ReadHalf, WriteHalf) = match tls {
            None => {
                let (rd, wr) = stream.into_split();
                (Box::new(rd), Box::new(wr))
            }
            Some(tls) => {
                let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
                let name = magnetar_tls::server_name(host)?;
                let s = tokio::time::timeout(cfg.connect_timeout, tls.connect(name, stream))
                    .await
                    .map_err(|_| ClientError::Timeout(cfg.connect_timeout))?
                    .map_err(fail)?;
                let (rd, wr) = tokio::io::split(s);
                (Box::new(rd), Box::new(wr))
            }
        };
        let mut reader = FramedRead::new(rd, PulsarCodec::new(MAX_FRAME));
        let mut writer = FramedWrite::new(wr, PulsarCodec::new(MAX_FRAME));
        writer
            .send(Frame::new(pb::CommandConnect {
                client_version: format!("magnetar-client {}", env!("CARGO_PKG_VERSION")),
                protocol_version: Some(PROTOCOL_VERSION),
                auth_method_name: cfg.auth_method().map(str::to_string),
                auth_data: cfg.auth_token.as_ref().map(|t| t.clone().into_bytes()),
                ..Default::default()
            }))
            .await?;
        let connected = tokio::time::timeout(cfg.operation_timeout, reader.next())
            .await
            .map_err(|_| ClientError::Timeout(cfg.operation_timeout))?
            .ok_or(ClientError::Disconnected)??;
        let max_message_size = match (
            connected.command_type(),
            &connected.command.connected,
            &connected.command.error,
        ) {
            (Some(CommandType::Connected), Some(c), _) => c
                .max_message_size
                .map_or(magnetar_wire::DEFAULT_MAX_MESSAGE_SIZE, |m| {
                    m.max(0) as usize
                }),
            (_, _, Some(e)) => {
                return Err(ClientError::Server {
                    code: e.error,
                    message: e.message.clone(),
                })
            }
            _ => {
                return Err(ClientError::Protocol(
                    "no CONNECTED in answer to CONNECT".into(),
                ))
            }
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            routes: Mutex::new(Routes::default()),
            next_id: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            max_message_size,
            operation_timeout: cfg.operation_timeout,
            auth_token: cfg.auth_token.clone(),
        });
        tokio::spawn(write_loop(writer, rx, shared.clone()));
        tokio::spawn(read_loop(reader, tx.clone(), shared.clone()));
        Ok(Connection { tx, shared })
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.shared.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn max_message_size(&self) -> usize {
        self.shared.max_message_size
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Relaxed) || self.tx.is_closed()
    }

    /// Queues a frame; fails if the connection is gone.
    pub(crate) fn send(&self, frame: Frame) -> Result<()> {
        if self.is_closed() {
            return Err(ClientError::Disconnected);
        }
        self.tx.send(frame).map_err(|_| ClientError::Disconnected)
    }

    /// Sends a command carrying `request_id` and waits (bounded by the
    /// operation timeout) for the answer with the same id. A broker ERROR
    /// becomes `ClientError::Server`.
    pub(crate) async fn request(
        &self,
        request_id: u64,
        cmd: impl Into<BaseCommand>,
    ) -> Result<BaseCommand> {
        let (tx, rx) = oneshot::channel();
        lock(&self.shared.routes).requests.insert(request_id, tx);
        if let Err(e) = self.send(Frame::new(cmd)) {
            lock(&self.shared.routes).requests.remove(&request_id);
            return Err(e);
        }
        let timeout = self.shared.operation_timeout;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(ClientError::Disconnected),
            Err(_) => {
                lock(&self.shared.routes).requests.remove(&request_id);
                Err(ClientError::Timeout(timeout))
            }
        }
    }

    pub(crate) fn register_producer(&self, id: u64) -> mpsc::UnboundedReceiver<ProducerEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.shared.routes).producers.insert(id, tx);
        rx
    }

    pub(crate) fn unregister_producer(&self, id: u64) {
        lock(&self.shared.routes).producers.remove(&id);
    }

    pub(crate) fn register_consumer(&self, id: u64) -> mpsc::UnboundedReceiver<ConsumerEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.shared.routes).consumers.insert(id, tx);
        rx
    }

    pub(crate) fn unregister_consumer(&self, id: u64) {
        lock(&self.shared.routes).consumers.remove(&id);
    }

    pub(crate) fn close(&self) {
        self.shared.closed.store(true, Ordering::Relaxed);
        fail_all(&self.shared);
    }
}

/// The connection is gone: every waiter learns it.
fn fail_all(shared: &Shared) {
    shared.closed.store(true, Ordering::Relaxed);
    let routes = std::mem::take(&mut *lock(&shared.routes));
    for (_, r) in routes.requests {
        let _ = r.send(Err(ClientError::Disconnected));
    }
    for (_, p) in routes.producers {
        let _ = p.send(ProducerEvent::Closed);
    }
    for (_, c) in routes.consumers {
        let _ = c.send(ConsumerEvent::Closed);
    }
}

async fn write_loop(
    mut writer: FramedWrite<WriteHalf, PulsarCodec>,
    mut rx: mpsc::UnboundedReceiver<Frame>,
    shared: Arc<Shared>,
) {
    while let Some(frame) = rx.recv().await {
        if shared.closed.load(Ordering::Relaxed) {
            break;
        }
        // Buffer whatever else is queued and write it in one go.
        let mut ok = writer.feed(frame).await.is_ok();
        while ok {
            match rx.try_recv() {
                Ok(f) => ok = writer.feed(f).await.is_ok(),
                Err(_) => break,
            }
        }
        let flush = SinkExt::<Frame>::flush(&mut writer);
        let flushed = ok
            && matches!(
                tokio::time::timeout(shared.operation_timeout, flush).await,
                Ok(Ok(()))
            );
        if !flushed {
            break;
        }
    }
    fail_all(&shared);
}

async fn read_loop(
    mut reader: FramedRead<ReadHalf, PulsarCodec>,
    tx: mpsc::UnboundedSender<Frame>,
    shared: Arc<Shared>,
) {
    loop {
        // The broker pings idle connections; silence for two periods means it is gone.
        let frame = match tokio::time::timeout(KEEPALIVE * 2, reader.next()).await {
            Ok(Some(Ok(f))) => f,
            Ok(Some(Err(e))) => {
                tracing::warn!(error = %e, "bad frame from broker; closing the connection");
                break;
            }
            Ok(None) => break,
            Err(_) => {
                tracing::warn!(
                    "broker silent for {:?}; closing the connection",
                    KEEPALIVE * 2
                );
                break;
            }
        };
        if shared.closed.load(Ordering::Relaxed) {
            break;
        }
        route(frame, &tx, &shared);
    }
    fail_all(&shared);
}

fn route(frame: Frame, tx: &mpsc::UnboundedSender<Frame>, shared: &Shared) {
    let cmd = frame.command;
    let answer = |request_id: u64, r: Result<BaseCommand>| {
        if let Some(w) = lock(&shared.routes).requests.remove(&request_id) {
            let _ = w.send(r);
        }
    };
    match cmd.r#type() {
        CommandType::Ping => {
            let _ = tx.send(Frame::new(pb::CommandPong {}));
        }
        CommandType::Pong => {}
        CommandType::AuthChallenge => {
            let _ = tx.send(Frame::new(pb::CommandAuthResponse {
                client_version: Some(format!("magnetar-client {}", env!("CARGO_PKG_VERSION"))),
                response: Some(pb::AuthData {
                    auth_method_name: Some("token".into()),
                    auth_data: Some(shared.auth_token.clone().unwrap_or_default().into_bytes()),
                }),
                protocol_version: Some(PROTOCOL_VERSION),
            }));
        }
        CommandType::Message => {
            let (Some(m), Some(payload)) = (cmd.message, frame.payload) else {
                return;
            };
            if let Some(c) = lock(&shared.routes).consumers.get(&m.consumer_id) {
                let _ = c.send(ConsumerEvent::Message(Box::new((m, payload))));
            }
        }
        CommandType::SendReceipt => {
            let Some(r) = cmd.send_receipt else { return };
            if let Some(p) = lock(&shared.routes).producers.get(&r.producer_id) {
                let _ = p.send(ProducerEvent::Receipt {
                    sequence_id: r.sequence_id,
                    id: r.message_id,
                });
            }
        }
        CommandType::SendError => {
            let Some(e) = cmd.send_error else { return };
            if let Some(p) = lock(&shared.routes).producers.get(&e.producer_id) {
                let _ = p.send(ProducerEvent::Error {
                    sequence_id: e.sequence_id,
                    error: ClientError::Server {
                        code: e.error,
                        message: e.message,
                    },
                });
            }
        }
        CommandType::CloseProducer => {
            let Some(c) = cmd.close_producer else { return };
            if let Some(p) = lock(&shared.routes).producers.remove(&c.producer_id) {
                let _ = p.send(ProducerEvent::Closed);
            }
        }
        CommandType::ReachedEndOfTopic => {
            let Some(c) = cmd.reached_end_of_topic else {
                return;
            };
            if let Some(p) = lock(&shared.routes).consumers.get(&c.consumer_id) {
                let _ = p.send(ConsumerEvent::EndOfTopic);
            }
        }
        CommandType::CloseConsumer => {
            let Some(c) = cmd.close_consumer else { return };
            if let Some(p) = lock(&shared.routes).consumers.remove(&c.consumer_id) {
                let _ = p.send(ConsumerEvent::Closed);
            }
        }
        CommandType::Error => {
            if let Some(e) = &cmd.error {
                let err = ClientError::Server {
                    code: e.error,
                    message: e.message.clone(),
                };
                answer(e.request_id, Err(err));
            }
        }
        CommandType::ProducerSuccess => {
            let Some(p) = &cmd.producer_success else {
                return;
            };
            // "Created but not ready" (WaitForExclusive): the ready one follows.
            if p.producer_ready != Some(false) {
                let id = p.request_id;
                answer(id, Ok(cmd));
            }
        }
        _ => {
            if let Some(id) = request_id_of(&cmd) {
                answer(id, Ok(cmd));
            }
        }
    }
}

/// The request id carried by an answer command.
fn request_id_of(cmd: &BaseCommand) -> Option<u64> {
    cmd.success
        .as_ref()
        .map(|c| c.request_id)
        .or(cmd.lookup_topic_response.as_ref().map(|c| c.request_id))
        .or(cmd
            .partition_metadata_response
            .as_ref()
            .map(|c| c.request_id))
        .or(cmd
            .get_last_message_id_response
            .as_ref()
            .map(|c| c.request_id))
        .or(cmd
            .get_topics_of_namespace_response
            .as_ref()
            .map(|c| c.request_id))
        .or(cmd.get_schema_response.as_ref().map(|c| c.request_id))
        .or(cmd
            .get_or_create_schema_response
            .as_ref()
            .map(|c| c.request_id))
        .or(cmd.ack_response.as_ref().and_then(|c| c.request_id))
}

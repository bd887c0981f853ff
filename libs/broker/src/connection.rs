//! One client connection speaking the Pulsar binary protocol.
//!
//! The read loop handles commands in arrival order. Replies and messages go
//! through the connection's `Outbound` queue to a writer task. Each producer
//! has a task that sends receipts strictly in send order (clients require it)
//! and whose bounded queue is the producer's pending limit: when it is full,
//! the read loop waits, so the client is slowed by TCP backpressure.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures::StreamExt;
use magnetar_common::names::{NamespaceName, TopicName};
use magnetar_managed_ledger::Position;
use magnetar_wire::{pb, BaseCommand, CommandType, Payload, PulsarCodec, ServerError};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio_util::codec::FramedRead;

use crate::authz::Action;
use crate::error::{BrokerError, ProtocolError, Result};
use crate::outbound::{Outbound, OutboundReceiver};
use crate::schema;
use crate::service::BrokerService;
use crate::subscription::{
    initial_position, message_id, AckKind, AckRequest, ConsumerSpec, SeekTarget, SubType,
    Subscription,
};
use crate::topic::{AccessMode, CloseNotice, ProducerEntry, Published, Topic};
use crate::warm::{self, Ready, Warming};

/// The newest protocol version this broker speaks.
const PROTOCOL_VERSION: i32 = 21;
/// Frames may exceed the message limit by this much; a SEND whose payload is
/// over the limit but within the frame gets a SEND_ERROR, a larger frame
/// closes the connection.
const FRAME_ROOM: usize = 1 << 20;

type PublishFuture = Pin<Box<dyn Future<Output = Result<Published>> + Send>>;

/// Orders a producer's sends against the topic letting the producer go.
///
/// A send decides to store its message and queues its receipt while holding
/// `queue`; the topic's close notice takes the queue away while holding it.
/// So every message whose append began has its receipt queued before the
/// queue ends (the receipt task sends CLOSE_PRODUCER only after them), and no
/// message is stored after the close. Without this a send could start its
/// append just before the close and queue its receipt after it: the client,
/// told to go first, dropped that receipt and resent a message the topic
/// already held, which then held it twice.
struct SendGate {
    queue: std::sync::Mutex<Option<mpsc::Sender<PendingSend>>>,
    /// Set by the close notice: the receipt task ends with CLOSE_PRODUCER.
    let_go: Arc<AtomicBool>,
}

impl SendGate {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<mpsc::Sender<PendingSend>>> {
        // Only a queue handle is behind the lock: a panic elsewhere leaves it whole.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The topic let the producer go: no more appends, CLOSE_PRODUCER after
    /// the receipts already queued.
    fn close(&self) {
        let mut queue = self.lock();
        self.let_go.store(true, Ordering::Relaxed);
        // The receipt task sees the flag once the queue ends: dropping the
        // last sender here (and in pending permits) ends it.
        queue.take();
    }
}

struct PendingSend {
    sequence_id: u64,
    highest_sequence_id: u64,
    result: PublishFuture,
}

struct ProducerSlot {
    topic: Arc<Topic>,
    name: String,
    gate: Arc<SendGate>,
    /// The topic's append failures when this producer attached: its sends
    /// are refused once another fails (`ManagedLedger::append_in_order`).
    seen_failures: u64,
    msg_in: Arc<AtomicU64>,
    bytes_in: Arc<AtomicU64>,
    /// A WaitForExclusive producer still queued for the topic.
    waiting: Option<tokio::task::JoinHandle<()>>,
}

impl ProducerSlot {
    /// Stops waiting (if it still is) and leaves the topic.
    async fn close(self, out: &Outbound, producer_id: u64) {
        if let Some(w) = self.waiting {
            w.abort();
            let _ = w.await;
        }
        self.topic.remove_producer(out, producer_id);
    }
}

struct ConsumerSlot {
    topic: Arc<Topic>,
    sub: Subscription,
    key: u64,
    durable: bool,
}

struct Conn {
    svc: BrokerService,
    out: Outbound,
    peer: SocketAddr,
    /// Plain or TLS, and the client certificate's role.
    transport: crate::tls::Transport,
    connected: bool,
    /// The authenticated role (authentication on).
    role: Option<String>,
    /// When the token runs out (or, once challenged, when the refreshed
    /// token is due).
    auth_deadline: Option<tokio::time::Instant>,
    /// An AUTH_CHALLENGE is out and unanswered.
    challenged: bool,
    /// Set by a handler that has sent its last word (e.g. failed
    /// authentication): the connection closes.
    close_now: bool,
    producers: HashMap<u64, ProducerSlot>,
    consumers: HashMap<u64, ConsumerSlot>,
    /// PRODUCER/SUBSCRIBE commands parked while their topics load.
    warming: Warming,
}

/// Serves one connection until the client leaves, errs, or `stop` fires.
pub async fn serve<S: crate::tls::SplitStream>(
    svc: BrokerService,
    stream: S,
    peer: SocketAddr,
    transport: crate::tls::Transport,
    mut stop: watch::Receiver<bool>,
) {
    let (rd, wr) = stream.split_halves();
    let conn_id = svc.next_id();
    let (out, rx) = Outbound::new(conn_id, svc.cfg().max_outbound_bytes);
    let mut writer = tokio::spawn(write_loop(wr, rx));
    let max_frame = svc.cfg().max_message_size + FRAME_ROOM;
    let mut frames = FramedRead::new(rd, PulsarCodec::new(max_frame));
    let (warming, mut warmed) = Warming::new();
    let mut conn = Conn {
        svc: svc.clone(),
        out: out.clone(),
        peer,
        transport,
        connected: false,
        role: None,
        auth_deadline: None,
        challenged: false,
        close_now: false,
        producers: HashMap::new(),
        consumers: HashMap::new(),
        warming,
    };
    let keepalive = svc.cfg().keepalive;
    let mut ticker = tokio::time::interval(keepalive);
    ticker.tick().await;
    let mut last_heard = Instant::now();
    loop {
        tokio::select! {
            frame = frames.next() => match frame {
                None => break,
                Some(Ok(frame)) => {
                    last_heard = Instant::now();
                    if let Err(why) = conn.handle(frame.command, frame.payload).await {
                        tracing::warn!(peer = %peer, error = %why, "closing connection");
                        conn.out.send(pb::CommandError {
                            request_id: 0,
                            error: why.server_error() as i32,
                            message: why.to_string(),
                        });
                        break;
                    }
                    if conn.close_now {
                        break;
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(peer = %peer, error = %e, "bad frame; closing connection");
                    conn.out.send(pb::CommandError {
                        request_id: 0,
                        error: ServerError::UnknownError as i32,
                        message: format!("bad frame: {e}"),
                    });
                    break;
                }
            },
            Some(ready) = warmed.recv() => {
                if let Err(why) = conn.unpark(ready).await {
                    tracing::warn!(peer = %peer, error = %why, "closing connection");
                    break;
                }
                if conn.close_now {
                    break;
                }
            }
            _ = auth_due(conn.auth_deadline) => {
                if !conn.auth_expired() {
                    break;
                }
            }
            _ = ticker.tick() => {
                if last_heard.elapsed() > keepalive * 2 {
                    tracing::info!(peer = %peer, "client silent too long; closing connection");
                    break;
                }
                conn.out.send(pb::CommandPing {});
            }
            _ = stop.changed() => break,
        }
    }
    conn.cleanup().await;
    // Let the writer flush what is queued (e.g. the error), then stop it.
    drop(conn);
    drop(out);
    if tokio::time::timeout(Duration::from_secs(2), &mut writer)
        .await
        .is_err()
    {
        // Frames still queued for a client that does not read: drop them and
        // the socket.
        writer.abort();
    }
}

/// Resolves when the connection's token is due (never without one).
async fn auth_due(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// How long a client has to answer an AUTH_CHALLENGE with a fresh token.
const AUTH_REFRESH_GRACE: Duration = Duration::from_secs(10);

async fn write_loop(mut wr: impl AsyncWrite + Unpin, mut out: OutboundReceiver) {
    let mut buf = BytesMut::with_capacity(64 << 10);
    while let Some(f) = out.rx.recv().await {
        let mut accounted = f.bytes;
        magnetar_wire::encode_frame(&f.command, f.payload.as_ref(), &mut buf);
        // Coalesce whatever else is queued into one write.
        while buf.len() < (256 << 10) {
            match out.rx.try_recv() {
                Ok(f) => {
                    accounted += f.bytes;
                    magnetar_wire::encode_frame(&f.command, f.payload.as_ref(), &mut buf);
                }
                Err(_) => break,
            }
        }
        let r = tokio::time::timeout(Duration::from_secs(60), wr.write_all(&buf)).await;
        out.written(accounted);
        buf.clear();
        if !matches!(r, Ok(Ok(()))) {
            out.mark_closed();
            break;
        }
    }
    let _ = wr.shutdown().await;
}

fn error(request_id: u64, e: &BrokerError) -> pb::CommandError {
    pb::CommandError {
        request_id,
        error: e.server_error() as i32,
        message: e.to_string(),
    }
}

fn position_of(id: &pb::MessageIdData) -> Position {
    Position::new(id.ledger_id, id.entry_id as i64)
}

impl Conn {
    /// Handles one command. An `Err` closes the connection (protocol misuse);
    /// request failures are answered and return `Ok`. A PRODUCER or
    /// SUBSCRIBE for a topic not loaded yet is parked while it loads
    /// (`warm`), so one connection's creations do not queue behind each
    /// other's loads.
    async fn handle(
        &mut self,
        cmd: BaseCommand,
        payload: Option<Payload>,
    ) -> std::result::Result<(), ProtocolError> {
        if !self.connected && !matches!(cmd.r#type(), CommandType::Connect) {
            return Err(ProtocolError::BeforeConnect {
                command: magnetar_wire::command_name(&cmd),
            });
        }
        let role = self.role.clone();
        match self.warming.park(&self.svc, role, cmd, payload) {
            Some((cmd, payload)) => self.dispatch(cmd, payload).await,
            None => Ok(()),
        }
    }

    /// A parked command whose topic has loaded.
    async fn unpark(&mut self, ready: Ready) -> std::result::Result<(), ProtocolError> {
        if self.warming.unpark(&ready.cmd) {
            if let Some(answer) = warm::cancelled(&ready.cmd) {
                self.out.send(answer);
            }
            return Ok(());
        }
        self.dispatch(ready.cmd, ready.payload).await
    }

    async fn dispatch(
        &mut self,
        cmd: BaseCommand,
        payload: Option<Payload>,
    ) -> std::result::Result<(), ProtocolError> {
        let kind = cmd.r#type();
        match kind {
            CommandType::Connect => {
                let c = cmd
                    .connect
                    .ok_or(ProtocolError::MissingBody { command: "CONNECT" })?;
                if self.connected {
                    return Err(ProtocolError::SecondConnect);
                }
                self.connected = true;
                if self.svc.auth_enabled() {
                    let token = c
                        .auth_data
                        .as_deref()
                        .map(|d| String::from_utf8_lossy(d).into_owned());
                    let verified = match c.auth_method_name.as_deref() {
                        None | Some("token") => self.verify_token(token.as_deref()),
                        Some("tls") => self.verify_certificate(),
                        Some(other) => Err(BrokerError::Unauthenticated(format!(
                            "unsupported authentication method {other:?}; use \"token\"{}",
                            if self.svc.tls_auth_enabled() {
                                " or \"tls\""
                            } else {
                                ""
                            }
                        ))),
                    };
                    if let Err(e) = verified {
                        tracing::info!(peer = %self.peer, error = %e, "authentication failed");
                        // Pulsar answers a failed CONNECT with request id -1.
                        self.out.send(error(u64::MAX, &e));
                        self.close_now = true;
                        return Ok(());
                    }
                }
                let version = c.protocol_version.unwrap_or(0).min(PROTOCOL_VERSION);
                tracing::debug!(peer = %self.peer, client = %c.client_version, version, "connected");
                self.out.send(pb::CommandConnected {
                    server_version: format!("Magnetar {}", env!("CARGO_PKG_VERSION")),
                    protocol_version: Some(version),
                    max_message_size: Some(self.svc.cfg().max_message_size as i32),
                    feature_flags: Some(pb::FeatureFlags::default()),
                });
            }
            CommandType::Ping => {
                self.out.send(pb::CommandPong {});
            }
            CommandType::Pong => {}
            CommandType::Lookup => {
                let c = cmd
                    .lookup_topic
                    .ok_or(ProtocolError::MissingBody { command: "LOOKUP" })?;
                let reply = self.lookup(&c).await;
                self.out.send(reply);
            }
            CommandType::PartitionedMetadata => {
                let c = cmd.partition_metadata.ok_or(ProtocolError::MissingBody {
                    command: "PARTITIONED_METADATA",
                })?;
                let r = async {
                    let t = self.check_topic(&c.topic).await?;
                    self.svc.check_any(self.role.as_deref(), &t).await?;
                    self.svc.partitions_of(&t).await
                }
                .await;
                let reply = match r {
                    Ok(n) => pb::CommandPartitionedTopicMetadataResponse {
                        partitions: Some(n),
                        request_id: c.request_id,
                        response: Some(
                            pb::command_partitioned_topic_metadata_response::LookupType::Success
                                as i32,
                        ),
                        ..Default::default()
                    },
                    Err(e) => pb::CommandPartitionedTopicMetadataResponse {
                        request_id: c.request_id,
                        response: Some(
                            pb::command_partitioned_topic_metadata_response::LookupType::Failed
                                as i32,
                        ),
                        error: Some(e.server_error() as i32),
                        message: Some(e.to_string()),
                        ..Default::default()
                    },
                };
                self.out.send(reply);
            }
            CommandType::Producer => {
                let c = cmd.producer.ok_or(ProtocolError::MissingBody {
                    command: "PRODUCER",
                })?;
                let request_id = c.request_id;
                match self.create_producer(c).await {
                    Ok(reply) => self.out.send(reply),
                    Err(e) => self.out.send(error(request_id, &e)),
                };
            }
            CommandType::Send => {
                let c = cmd
                    .send
                    .ok_or(ProtocolError::MissingBody { command: "SEND" })?;
                let payload = payload.ok_or(ProtocolError::MissingPayload { command: "SEND" })?;
                self.send(c, payload).await;
            }
            CommandType::CloseProducer => {
                let c = cmd.close_producer.ok_or(ProtocolError::MissingBody {
                    command: "CLOSE_PRODUCER",
                })?;
                self.warming.cancel(warm::Key::Producer(c.producer_id));
                if let Some(p) = self.producers.remove(&c.producer_id) {
                    p.close(&self.out, c.producer_id).await;
                }
                self.out.send(pb::CommandSuccess {
                    request_id: c.request_id,
                    schema: None,
                });
            }
            CommandType::Subscribe => {
                let c = cmd.subscribe.ok_or(ProtocolError::MissingBody {
                    command: "SUBSCRIBE",
                })?;
                let (request_id, consumer_id) = (c.request_id, c.consumer_id);
                match self.subscribe(c).await {
                    Ok(()) => {
                        self.out.send(pb::CommandSuccess {
                            request_id,
                            schema: None,
                        });
                    }
                    Err(e) => {
                        self.out.send(error(request_id, &e));
                        if matches!(e.server_error(), ServerError::ServiceNotReady) {
                            // The topic is moving. The C++ client (3.x) keeps
                            // a consumer whose subscribe failed attached to
                            // this connection and then ignores its own retry;
                            // CLOSE_CONSUMER detaches it, so it looks the
                            // topic up again.
                            self.out.send(pb::CommandCloseConsumer {
                                consumer_id,
                                request_id: 0,
                                ..Default::default()
                            });
                        }
                    }
                };
            }
            CommandType::Flow => {
                let c = cmd
                    .flow
                    .ok_or(ProtocolError::MissingBody { command: "FLOW" })?;
                if let Some(s) = self.consumers.get(&c.consumer_id) {
                    s.sub.flow(s.key, c.message_permits).await;
                }
            }
            CommandType::Ack => {
                let c = cmd
                    .ack
                    .ok_or(ProtocolError::MissingBody { command: "ACK" })?;
                self.ack(c).await;
            }
            CommandType::RedeliverUnacknowledgedMessages => {
                let c =
                    cmd.redeliver_unacknowledged_messages
                        .ok_or(ProtocolError::MissingBody {
                            command: "REDELIVER",
                        })?;
                if let Some(s) = self.consumers.get(&c.consumer_id) {
                    let positions = (!c.message_ids.is_empty())
                        .then(|| c.message_ids.iter().map(position_of).collect());
                    s.sub.redeliver(s.key, positions, c.consumer_epoch).await;
                }
            }
            CommandType::Seek => {
                let c = cmd
                    .seek
                    .ok_or(ProtocolError::MissingBody { command: "SEEK" })?;
                let r = match self.consumers.get(&c.consumer_id) {
                    None => Err(BrokerError::NotFound("consumer not found".into())),
                    Some(s) => {
                        let target = match (&c.message_id, c.message_publish_time) {
                            (_, Some(t)) => SeekTarget::PublishTime(t),
                            (Some(id), None) => seek_target(id),
                            (None, None) => SeekTarget::Latest,
                        };
                        s.sub.seek(target).await
                    }
                };
                match r {
                    Ok(()) => {
                        // The subscription disconnected its consumers; the
                        // clients resubscribe.
                        if let Some(s) = self.consumers.get(&c.consumer_id) {
                            let name = s.sub.name.clone();
                            let ids: Vec<u64> = self
                                .consumers
                                .iter()
                                .filter(|(_, v)| v.sub.name == name)
                                .map(|(k, _)| *k)
                                .collect();
                            for id in ids {
                                if let Some(slot) = self.consumers.remove(&id) {
                                    if !slot.durable {
                                        slot.sub.close().await;
                                        slot.topic.forget_subscription(&slot.sub.name);
                                    }
                                }
                            }
                        }
                        self.out.send(pb::CommandSuccess {
                            request_id: c.request_id,
                            schema: None,
                        });
                    }
                    Err(e) => {
                        self.out.send(error(c.request_id, &e));
                    }
                }
            }
            CommandType::Unsubscribe => {
                let c = cmd.unsubscribe.ok_or(ProtocolError::MissingBody {
                    command: "UNSUBSCRIBE",
                })?;
                let r = match self.consumers.get(&c.consumer_id) {
                    None => Err(BrokerError::NotFound("consumer not found".into())),
                    Some(s) => s.sub.unsubscribe(Some(s.key)).await,
                };
                match r {
                    Ok(()) => {
                        if let Some(s) = self.consumers.remove(&c.consumer_id) {
                            s.topic.forget_subscription(&s.sub.name);
                        }
                        self.out.send(pb::CommandSuccess {
                            request_id: c.request_id,
                            schema: None,
                        });
                    }
                    Err(e) => {
                        self.out.send(error(c.request_id, &e));
                    }
                }
            }
            CommandType::CloseConsumer => {
                let c = cmd.close_consumer.ok_or(ProtocolError::MissingBody {
                    command: "CLOSE_CONSUMER",
                })?;
                self.warming.cancel(warm::Key::Consumer(c.consumer_id));
                if let Some(s) = self.consumers.remove(&c.consumer_id) {
                    close_consumer(s).await;
                }
                self.out.send(pb::CommandSuccess {
                    request_id: c.request_id,
                    schema: None,
                });
            }
            CommandType::GetLastMessageId => {
                let c = cmd.get_last_message_id.ok_or(ProtocolError::MissingBody {
                    command: "GET_LAST_MESSAGE_ID",
                })?;
                match self.consumers.get(&c.consumer_id) {
                    None => {
                        self.out.send(error(
                            c.request_id,
                            &BrokerError::NotFound("consumer not found".into()),
                        ));
                    }
                    Some(s) => {
                        let topic = s.topic.clone();
                        let mark_delete = if s.durable {
                            topic
                                .ml
                                .cursor(&s.sub.name)
                                .map(|c| c.mark_delete_position())
                        } else {
                            None
                        };
                        let reply = last_message_id(&topic, c.request_id, mark_delete).await;
                        self.out.send(reply);
                    }
                }
            }
            CommandType::GetTopicsOfNamespace => {
                let c = cmd
                    .get_topics_of_namespace
                    .ok_or(ProtocolError::MissingBody {
                        command: "GET_TOPICS_OF_NAMESPACE",
                    })?;
                let r = async {
                    let ns = NamespaceName::parse(&c.namespace)?;
                    self.svc
                        .check_namespace_access(self.role.as_deref(), &ns)
                        .await?;
                    self.svc.list_topics(&ns).await
                }
                .await;
                match r {
                    Ok(topics) => self.out.send(pb::CommandGetTopicsOfNamespaceResponse {
                        request_id: c.request_id,
                        topics,
                        filtered: Some(false),
                        topics_hash: None,
                        changed: Some(true),
                    }),
                    Err(e) => self.out.send(error(c.request_id, &e)),
                };
            }
            CommandType::GetSchema => {
                let c = cmd.get_schema.ok_or(ProtocolError::MissingBody {
                    command: "GET_SCHEMA",
                })?;
                let version = c.schema_version.as_deref().and_then(schema::decode_version);
                let r = async {
                    let t = TopicName::parse(&c.topic)?;
                    schema::get(self.svc.resources(), &t, version).await
                }
                .await;
                let reply = match r {
                    Ok(Some((v, s))) => pb::CommandGetSchemaResponse {
                        request_id: c.request_id,
                        schema: Some(schema::to_wire(&s)),
                        schema_version: Some(schema::encode_version(v)),
                        ..Default::default()
                    },
                    Ok(None) => pb::CommandGetSchemaResponse {
                        request_id: c.request_id,
                        error_code: Some(ServerError::TopicNotFound as i32),
                        error_message: Some(format!("no schema for topic {}", c.topic)),
                        ..Default::default()
                    },
                    Err(e) => pb::CommandGetSchemaResponse {
                        request_id: c.request_id,
                        error_code: Some(e.server_error() as i32),
                        error_message: Some(e.to_string()),
                        ..Default::default()
                    },
                };
                self.out.send(reply);
            }
            CommandType::GetOrCreateSchema => {
                let c = cmd.get_or_create_schema.ok_or(ProtocolError::MissingBody {
                    command: "GET_OR_CREATE_SCHEMA",
                })?;
                let r = async {
                    let t = TopicName::parse(&c.topic)?;
                    let new = schema::NewSchema::from_wire(&c.schema)?.ok_or_else(|| {
                        BrokerError::BadRequest("GET_OR_CREATE_SCHEMA with no schema".into())
                    })?;
                    schema::add(self.svc.resources(), &t, &new, schema::Adder::Client).await
                }
                .await;
                let reply = match r {
                    Ok(v) => pb::CommandGetOrCreateSchemaResponse {
                        request_id: c.request_id,
                        schema_version: Some(schema::encode_version(v)),
                        ..Default::default()
                    },
                    Err(e) => pb::CommandGetOrCreateSchemaResponse {
                        request_id: c.request_id,
                        error_code: Some(e.server_error() as i32),
                        error_message: Some(e.to_string()),
                        ..Default::default()
                    },
                };
                self.out.send(reply);
            }
            CommandType::AuthResponse => {
                let c = cmd.auth_response.ok_or(ProtocolError::MissingBody {
                    command: "AUTH_RESPONSE",
                })?;
                let token = c
                    .response
                    .and_then(|r| r.auth_data)
                    .map(|d| String::from_utf8_lossy(&d).into_owned());
                let before = self.role.clone();
                match self.verify_token(token.as_deref()) {
                    Ok(()) if self.role == before => self.challenged = false,
                    Ok(()) => {
                        let e = BrokerError::Unauthenticated(
                            "a refreshed token must keep the role".into(),
                        );
                        self.out.send(error(0, &e));
                        self.close_now = true;
                    }
                    Err(e) => {
                        self.out.send(error(0, &e));
                        self.close_now = true;
                    }
                }
            }
            _ => {
                // Well-formed but not served here (transactions, watchers, ...).
                self.out.send(pb::CommandError {
                    request_id: 0,
                    error: ServerError::NotAllowedError as i32,
                    message: format!(
                        "{} is not supported by this broker",
                        magnetar_wire::command_name(&cmd)
                    ),
                });
            }
        }
        Ok(())
    }

    async fn lookup(&self, c: &pb::CommandLookupTopic) -> pb::CommandLookupTopicResponse {
        use crate::lookup::Answer;
        use pb::command_lookup_topic_response::LookupType;
        let answer = match TopicName::parse(&c.topic) {
            Ok(t) => match self.svc.check_any(self.role.as_deref(), &t).await {
                Ok(()) => {
                    crate::lookup::lookup(&self.svc, &t, c.authoritative.unwrap_or(false)).await
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(e.into()),
        };
        let found = |url: String, kind: LookupType| pb::CommandLookupTopicResponse {
            broker_service_url: Some(url),
            response: Some(kind as i32),
            request_id: c.request_id,
            authoritative: Some(true),
            proxy_through_service_url: Some(false),
            ..Default::default()
        };
        let listener = c.advertised_listener_name.as_deref();
        let tls = self.transport.tls;
        let answer = answer.and_then(|a| match a {
            Answer::Here => Ok((
                self.svc.ownership().me.lookup_urls(listener, tls)?,
                LookupType::Connect,
            )),
            Answer::Owner(o) => Ok((o.lookup_urls(listener, tls)?, LookupType::Connect)),
            // The chosen broker takes the bundle when asked authoritatively.
            Answer::Assign(o) => Ok((o.lookup_urls(listener, tls)?, LookupType::Redirect)),
        });
        match answer {
            Ok(((url, url_tls), kind)) => pb::CommandLookupTopicResponse {
                broker_service_url_tls: url_tls,
                ..found(url, kind)
            },
            Err(e) => pb::CommandLookupTopicResponse {
                response: Some(LookupType::Failed as i32),
                request_id: c.request_id,
                error: Some(e.server_error() as i32),
                message: Some(e.to_string()),
                ..Default::default()
            },
        }
    }

    /// Checks a token and takes its role; the token's expiry is when the
    /// client is next asked for a fresh one.
    fn verify_token(&mut self, token: Option<&str>) -> Result<()> {
        let Some(auth) = &self.svc.cfg().auth else {
            return Ok(());
        };
        let token = token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| BrokerError::Unauthenticated("no token given".into()))?;
        let id = auth
            .verifier
            .verify(token)
            .map_err(BrokerError::InvalidToken)?;
        // A token that expires in centuries is checked again in a year (an
        // Instant that far out would overflow).
        self.auth_deadline = id.expires_at.map(|exp| {
            let left = exp
                .saturating_sub(magnetar_auth::now_secs())
                .min(365 * 24 * 3600);
            tokio::time::Instant::now() + Duration::from_secs(left)
        });
        self.role = Some(id.role);
        Ok(())
    }

    /// TLS authentication: the role is the subject CN of the client
    /// certificate the TLS handshake verified.
    fn verify_certificate(&mut self) -> Result<()> {
        if !self.svc.tls_auth_enabled() {
            return Err(BrokerError::Unauthenticated(
                "TLS authentication is not enabled on this broker (--tls-auth)".into(),
            ));
        }
        let role = self.transport.cert_role.clone().ok_or_else(|| {
            BrokerError::Unauthenticated(
                "TLS authentication needs a client certificate with a subject CN, over pulsar+ssl"
                    .into(),
            )
        })?;
        self.role = Some(role);
        Ok(())
    }

    /// The token ran out: ask for a fresh one, or — if already asked and
    /// not answered in time — give up. False closes the connection.
    fn auth_expired(&mut self) -> bool {
        if self.challenged {
            let e = BrokerError::Unauthenticated("the token expired and was not refreshed".into());
            self.out.send(error(0, &e));
            return false;
        }
        self.challenged = true;
        self.auth_deadline = Some(tokio::time::Instant::now() + AUTH_REFRESH_GRACE);
        self.out.send(pb::CommandAuthChallenge {
            server_version: Some(format!("Magnetar {}", env!("CARGO_PKG_VERSION"))),
            challenge: Some(pb::AuthData {
                auth_method_name: Some("token".into()),
                auth_data: Some(b"refresh".to_vec()),
            }),
            protocol_version: Some(PROTOCOL_VERSION),
        });
        true
    }

    /// Parses a topic name and checks that its namespace exists.
    async fn check_topic(&self, name: &str) -> Result<TopicName> {
        let t = TopicName::parse(name)?;
        if self.svc.resources().policies(&t.namespace).await?.is_none() {
            return Err(BrokerError::TopicNotFound(format!(
                "namespace {} does not exist",
                t.namespace
            )));
        }
        Ok(t)
    }

    async fn create_producer(&mut self, c: pb::CommandProducer) -> Result<BaseCommand> {
        if let Some(existing) = self.producers.get(&c.producer_id) {
            let released = existing.waiting.as_ref().is_none_or(|w| w.is_finished())
                && !existing.topic.has_producer(&self.out, c.producer_id);
            if existing.topic.is_closed() || released {
                // The client comes back after its topic was unloaded (and
                // maybe loaded here again) or after the topic let it go
                // (backlog quota): start afresh.
                if let Some(old) = self.producers.remove(&c.producer_id) {
                    old.close(&self.out, c.producer_id).await;
                }
                return Box::pin(self.create_producer(c)).await;
            }
            // A retried PRODUCER for one that already exists succeeds again
            // (with its schema's version: the client stamps it on messages).
            let producer_name = existing.name.clone();
            let topic = TopicName::parse(&c.topic)?;
            let schema_version =
                schema::for_producer(self.svc.resources(), &topic, c.schema.as_ref())
                    .await?
                    .map(schema::encode_version);
            return Ok(pb::CommandProducerSuccess {
                request_id: c.request_id,
                producer_name,
                last_sequence_id: Some(-1),
                schema_version,
                producer_ready: Some(true),
                ..Default::default()
            }
            .into());
        }
        let name = TopicName::parse(&c.topic)?;
        self.svc
            .check(self.role.as_deref(), Action::Produce, &name)
            .await?;
        let topic = self.svc.topic(&name, true).await?;
        if topic.ml.terminated_at().is_some() {
            return Err(magnetar_managed_ledger::MlError::Terminated(name.to_string()).into());
        }
        topic.check_backlog_quota().await?;
        let schema_version = schema::for_producer(self.svc.resources(), &name, c.schema.as_ref())
            .await?
            .map(schema::encode_version);
        let producer_name = match c.producer_name.as_deref() {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => format!("{}-{}", self.svc.cfg().cluster, self.svc.next_id()),
        };
        let seen_failures = topic.ml.append_failures();
        let msg_in = Arc::new(AtomicU64::new(0));
        let bytes_in = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::channel(self.svc.cfg().max_pending_per_producer.max(1));
        let let_go = Arc::new(AtomicBool::new(false));
        let gate = Arc::new(SendGate {
            queue: std::sync::Mutex::new(Some(tx)),
            let_go: let_go.clone(),
        });
        let close_notice: CloseNotice = {
            let gate = gate.clone();
            Arc::new(move || gate.close())
        };
        let entry = ProducerEntry {
            close_notice,
            name: producer_name.clone(),
            producer_id: c.producer_id,
            out: self.out.clone(),
            mode: AccessMode::from_wire(c.producer_access_mode),
            address: self.peer.to_string(),
            since: crate::subscription::now_ms(),
            msg_in: msg_in.clone(),
            bytes_in: bytes_in.clone(),
        };
        let (last, waiting) = match topic.add_producer(entry.clone()) {
            Ok(last) => (last, None),
            Err(BrokerError::ProducerBusy(_)) if entry.mode == AccessMode::WaitForExclusive => {
                // Pulsar's answer: "created, not ready"; a second
                // PRODUCER_SUCCESS with producer_ready follows once the
                // topic is ours.
                let waiter = tokio::spawn(wait_for_exclusive(
                    topic.clone(),
                    entry,
                    c.request_id,
                    schema_version.clone(),
                ));
                (-1, Some(waiter))
            }
            Err(e) => return Err(e),
        };
        let ready = waiting.is_none();
        tokio::spawn(receipt_loop(
            rx,
            let_go,
            self.out.clone(),
            c.producer_id,
            topic.clone(),
            self.svc.clone(),
        ));
        self.producers.insert(
            c.producer_id,
            ProducerSlot {
                topic,
                name: producer_name.clone(),
                gate,
                seen_failures,
                msg_in,
                bytes_in,
                waiting,
            },
        );
        Ok(pb::CommandProducerSuccess {
            request_id: c.request_id,
            producer_name,
            last_sequence_id: Some(last),
            schema_version,
            producer_ready: Some(ready),
            ..Default::default()
        }
        .into())
    }

    async fn send(&mut self, c: pb::CommandSend, payload: Payload) {
        let send_error = |e: ServerError, msg: String| pb::CommandSendError {
            producer_id: c.producer_id,
            sequence_id: c.sequence_id,
            error: e as i32,
            message: msg,
        };
        let Some(p) = self.producers.get(&c.producer_id) else {
            self.out.send(send_error(
                ServerError::UnknownError,
                format!("producer {} is not open on this connection", c.producer_id),
            ));
            return;
        };
        let max = self.svc.cfg().max_message_size;
        if payload.body.len() > max {
            self.out.send(send_error(
                ServerError::UnknownError,
                format!(
                    "message of {} bytes is larger than the limit of {max} bytes",
                    payload.body.len()
                ),
            ));
            return;
        }
        let messages = u64::from(c.num_messages.unwrap_or(1).max(1) as u32);
        p.msg_in.fetch_add(messages, Ordering::Relaxed);
        p.bytes_in
            .fetch_add(payload.raw.len() as u64, Ordering::Relaxed);
        let span = tracing::info_span!(
            target: magnetar_telemetry::SPANS,
            "publish",
            topic = %p.topic.name,
            producer = %p.name,
            sequence_id = c.sequence_id,
            messages,
            bytes = payload.raw.len(),
        );
        // A producer the topic let go gets no receipt: CLOSE_PRODUCER is on
        // its way, and the client resends wherever the topic went.
        let Some(queue) = p.gate.lock().clone() else {
            return;
        };
        // Waits while the producer is at its pending limit.
        let Ok(permit) = queue.reserve_owned().await else {
            return;
        };
        let gate = p.gate.lock();
        if gate.is_none() {
            return;
        }
        let result = Box::pin(tracing::Instrument::instrument(
            p.topic.publish(&p.name, &payload, p.seen_failures),
            span,
        ));
        permit.send(PendingSend {
            sequence_id: c.sequence_id,
            highest_sequence_id: c.highest_sequence_id.unwrap_or(0),
            result,
        });
    }

    async fn subscribe(&mut self, c: pb::CommandSubscribe) -> Result<()> {
        if self
            .consumers
            .get(&c.consumer_id)
            .is_some_and(|s| s.topic.is_closed())
        {
            // Back after its topic was unloaded: start afresh.
            if let Some(old) = self.consumers.remove(&c.consumer_id) {
                close_consumer(old).await;
            }
        }
        if self.consumers.contains_key(&c.consumer_id) {
            return Err(BrokerError::ConsumerBusy(format!(
                "consumer id {} is already in use on this connection",
                c.consumer_id
            )));
        }
        let name = TopicName::parse(&c.topic)?;
        self.svc
            .check(self.role.as_deref(), Action::Consume, &name)
            .await?;
        if c.subscription.is_empty() {
            return Err(BrokerError::BadRequest("empty subscription name".into()));
        }
        let topic = self
            .svc
            .topic(&name, c.force_topic_creation.unwrap_or(true))
            .await?;
        if !topic.has_room_for_consumer().await {
            return Err(BrokerError::ConsumerBusy(format!(
                "topic {name} reached its limit of consumers"
            )));
        }
        if let Some(s) = &c.schema {
            schema::for_consumer(self.svc.resources(), &name, s).await?;
        }
        let sub_type = SubType::from_wire(c.sub_type);
        let durable = c.durable.unwrap_or(true);
        let latest = c.initial_position.unwrap_or(0)
            == pb::command_subscribe::InitialPosition::Latest as i32;
        let sub = if durable {
            topic
                .subscription(&c.subscription, initial_position(latest), sub_type)
                .await?
        } else {
            if topic.get_subscription(&c.subscription).is_some() {
                return Err(BrokerError::ConsumerBusy(format!(
                    "subscription {} already exists",
                    c.subscription
                )));
            }
            let list = topic.ml.ledger_list();
            let after = match &c.start_message_id {
                Some(id) if id.ledger_id == u64::MAX => list.before_first(),
                Some(id) if id.ledger_id == i64::MAX as u64 => list.last_confirmed(),
                // Like Pulsar, start *at* the given entry: the client drops
                // what lies before its start id (the id itself too unless the
                // reader is inclusive), which also covers a start inside a batch.
                Some(id) => list.previous(position_of(id)),
                None if latest => list.last_confirmed(),
                None => list.before_first(),
            };
            topic.reader(&c.subscription, after)
        };
        let ranges = c
            .key_shared_meta
            .as_ref()
            .filter(|m| m.key_shared_mode == pb::KeySharedMode::Sticky as i32)
            .map(|m| {
                m.hash_ranges
                    .iter()
                    .map(|r| (r.start.max(0) as u32, r.end.max(0) as u32))
                    .collect()
            })
            .unwrap_or_default();
        let key = self.svc.next_id();
        let spec = ConsumerSpec {
            key,
            consumer_id: c.consumer_id,
            name: c
                .consumer_name
                .clone()
                .unwrap_or_else(|| format!("consumer-{key}")),
            priority: c.priority_level.unwrap_or(0),
            sub_type,
            out: self.out.clone(),
            ranges,
            epoch: c.consumer_epoch.unwrap_or(0),
            partition: name.partition_index().map_or(-1, |i| i as i32),
        };
        if let Err(e) = sub.add_consumer(spec).await {
            if !durable {
                sub.close().await;
                topic.forget_subscription(&c.subscription);
            }
            return Err(e);
        }
        self.consumers.insert(
            c.consumer_id,
            ConsumerSlot {
                topic,
                sub,
                key,
                durable,
            },
        );
        Ok(())
    }

    async fn ack(&mut self, c: pb::CommandAck) {
        let Some(s) = self.consumers.get(&c.consumer_id) else {
            if let Some(request_id) = c.request_id {
                self.out.send(pb::CommandAckResponse {
                    consumer_id: c.consumer_id,
                    request_id: Some(request_id),
                    error: Some(ServerError::ConsumerNotFound as i32),
                    message: Some("consumer not found".into()),
                    ..Default::default()
                });
            }
            return;
        };
        let kind = if c.ack_type == pb::command_ack::AckType::Cumulative as i32 {
            AckKind::Cumulative
        } else {
            AckKind::Individual
        };
        let ids = c
            .message_id
            .iter()
            .map(|id| {
                let batch = (!id.ack_set.is_empty())
                    .then(|| (id.batch_size.unwrap_or(0).max(0) as u32, id.ack_set.clone()));
                (position_of(id), batch)
            })
            .collect();
        let r = s
            .sub
            .ack(AckRequest {
                kind,
                ids,
                durable: c.request_id.is_some(),
            })
            .await;
        if let Some(request_id) = c.request_id {
            let (error, message) = match &r {
                Ok(()) => (None, None),
                Err(e) => (Some(e.server_error() as i32), Some(e.to_string())),
            };
            self.out.send(pb::CommandAckResponse {
                consumer_id: c.consumer_id,
                request_id: Some(request_id),
                error,
                message,
                ..Default::default()
            });
        } else if let Err(e) = r {
            tracing::debug!(error = %e, "ack failed");
        }
    }

    async fn cleanup(&mut self) {
        for (id, p) in std::mem::take(&mut self.producers) {
            p.close(&self.out, id).await;
        }
        for (_, s) in self.consumers.drain() {
            close_consumer(s).await;
        }
        self.out.mark_closed();
    }
}

async fn close_consumer(s: ConsumerSlot) {
    s.sub.remove_consumer(s.key).await;
    if !s.durable {
        s.sub.close().await;
        s.topic.forget_subscription(&s.sub.name);
    }
}

/// Queues a WaitForExclusive producer and tells the client when it is ready
/// (or why it never will be).
async fn wait_for_exclusive(
    topic: Arc<Topic>,
    entry: ProducerEntry,
    request_id: u64,
    schema_version: Option<Vec<u8>>,
) {
    let out = entry.out.clone();
    let name = entry.name.clone();
    match topic.wait_for_exclusive(entry).await {
        Ok(last) => out.send(pb::CommandProducerSuccess {
            request_id,
            producer_name: name,
            last_sequence_id: Some(last),
            schema_version,
            producer_ready: Some(true),
            ..Default::default()
        }),
        Err(e) => out.send(error(request_id, &e)),
    };
}

fn seek_target(id: &pb::MessageIdData) -> SeekTarget {
    if id.ledger_id == u64::MAX {
        SeekTarget::Earliest
    } else if id.ledger_id == i64::MAX as u64 {
        SeekTarget::Latest
    } else {
        SeekTarget::Position(position_of(id))
    }
}

/// The last message's id, with the batch index of its last message.
async fn last_message_id(
    topic: &Topic,
    request_id: u64,
    mark_delete: Option<Position>,
) -> BaseCommand {
    let last = topic.ml.last_confirmed();
    let mut batch_index = -1;
    if last.entry_id >= 0 {
        if let Ok(e) = topic.ml.read_entry(last).await {
            if let Ok(p) = Payload::parse(bytes::Bytes::from_owner(e.data.clone())) {
                if p.metadata.num_messages_in_batch.is_some() {
                    batch_index = p.metadata.num_messages_in_batch.unwrap_or(1).max(1) - 1;
                }
            }
        }
    }
    let partition = topic.name.partition_index().map_or(-1, |i| i as i32);
    let mut id = message_id(last, batch_index);
    id.partition = Some(partition);
    pb::CommandGetLastMessageIdResponse {
        last_message_id: id,
        request_id,
        consumer_mark_delete_position: mark_delete.map(|p| message_id(p, -1)),
    }
    .into()
}

/// Sends one producer's receipts in the order its messages were sent.
async fn receipt_loop(
    mut rx: mpsc::Receiver<PendingSend>,
    let_go: Arc<AtomicBool>,
    out: Outbound,
    producer_id: u64,
    topic: Arc<Topic>,
    svc: BrokerService,
) {
    while let Some(p) = rx.recv().await {
        match p.result.await {
            Ok(published) => {
                let id = match published {
                    Published::Stored(pos) => {
                        let mut id = message_id(pos, -1);
                        id.partition = Some(topic.name.partition_index().map_or(-1, |i| i as i32));
                        id
                    }
                    Published::Duplicate => pb::MessageIdData {
                        ledger_id: u64::MAX,
                        entry_id: u64::MAX,
                        ..Default::default()
                    },
                };
                out.send(pb::CommandSendReceipt {
                    producer_id,
                    sequence_id: p.sequence_id,
                    message_id: Some(id),
                    highest_sequence_id: Some(p.highest_sequence_id),
                });
            }
            // Not stored because the topic closed (unloaded, or fenced by
            // a new owner): no error — the client gets CLOSE_PRODUCER and
            // resends what has no receipt to wherever the topic went.
            Err(_) if topic.is_closed() && !topic.ml.is_fenced() => {}
            Err(e) => {
                if !topic.ml.is_fenced() {
                    out.send(pb::CommandSendError {
                        producer_id,
                        sequence_id: p.sequence_id,
                        error: e.server_error() as i32,
                        message: e.to_string(),
                    });
                }
                if topic.ml.is_fenced() {
                    // Another owner took the log: unload so clients look it up again.
                    let svc = svc.clone();
                    let name = topic.name.clone();
                    tokio::spawn(async move {
                        let _ = svc.unload(&name).await;
                    });
                }
            }
        }
    }
    // The queue ended: the client closed the producer, or the topic let it
    // go after every receipt above.
    if let_go.load(Ordering::Relaxed) {
        out.send(pb::CommandCloseProducer {
            producer_id,
            request_id: 0,
            ..Default::default()
        });
    }
}

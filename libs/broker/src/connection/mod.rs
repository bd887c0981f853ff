//! One client connection speaking the Pulsar binary protocol.
//!
//! The read loop handles commands in arrival order. Replies and messages go
//! through the connection's `Outbound` queue to a writer task. Each producer
//! has a task that sends receipts strictly in send order (clients require it)
//! and whose bounded queue is the producer's pending limit: when it is full,
//! the read loop waits, so the client is slowed by TCP backpressure.
//!
//! `handle` dispatches each command to one method; the methods live beside
//! the state they use:
//!
//! - `session`: CONNECT, AUTH_RESPONSE and the token's expiry
//! - `lookup`: LOOKUP, PARTITIONED_METADATA, GET_TOPICS_OF_NAMESPACE
//! - `producer`: PRODUCER, SEND, CLOSE_PRODUCER and the receipt task
//! - `consumer`: SUBSCRIBE, FLOW, ACK, REDELIVER, SEEK, UNSUBSCRIBE,
//!   CLOSE_CONSUMER, GET_LAST_MESSAGE_ID
//! - `schemas`: GET_SCHEMA, GET_OR_CREATE_SCHEMA

mod consumer;
mod lookup;
mod producer;
mod schemas;
mod session;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use futures::{Stream, StreamExt};
use magnetar_common::names::TopicName;
use magnetar_managed_ledger::Position;
use magnetar_wire::{pb, BaseCommand, CommandType, Frame, Payload, PulsarCodec, ServerError};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio_util::codec::FramedRead;

use crate::error::{BrokerError, ProtocolError, Result};
use crate::outbound::{Outbound, OutboundReceiver};
use crate::service::BrokerService;
use crate::warm::{self, Ready, Warming};
use consumer::ConsumerSlot;
use producer::ProducerSlot;

/// The newest protocol version this broker speaks.
const PROTOCOL_VERSION: i32 = 21;
/// Frames may exceed the message limit by this much; a SEND whose payload is
/// over the limit but within the frame gets a SEND_ERROR, a larger frame
/// closes the connection.
const FRAME_ROOM: usize = 1 << 20;

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
    stop: watch::Receiver<bool>,
) {
    let (rd, wr) = stream.split_halves();
    let conn_id = svc.next_id();
    let (out, rx) = Outbound::new(conn_id, svc.cfg().max_outbound_bytes);
    let mut writer = tokio::spawn(write_loop(wr, rx));
    let max_frame = svc.cfg().max_message_size + FRAME_ROOM;
    let frames = FramedRead::new(rd, PulsarCodec::new(max_frame));
    let (warming, warmed) = Warming::new();
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
    conn.run(frames, warmed, stop).await;
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

/// When the client was last heard from, judged at each keepalive tick: the
/// broker pings every `every` and gives up on a client silent for more than
/// two periods.
struct Keepalive {
    every: Duration,
    last_heard: tokio::time::Instant,
}

impl Keepalive {
    fn new(every: Duration) -> Self {
        Keepalive {
            every,
            last_heard: tokio::time::Instant::now(),
        }
    }

    fn heard(&mut self) {
        self.last_heard = tokio::time::Instant::now();
    }

    fn silent_too_long(&self) -> bool {
        self.last_heard.elapsed() > self.every * 2
    }
}

/// Resolves when the connection's token is due (never without one).
async fn auth_due(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

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

/// A command's body, or the protocol error of its absence.
fn body<T>(body: Option<T>, command: &'static str) -> std::result::Result<T, ProtocolError> {
    body.ok_or(ProtocolError::MissingBody { command })
}

impl Conn {
    /// The read loop: frames, parked commands coming back, the token's
    /// expiry and the keepalive, until one of them ends the connection.
    async fn run<E: std::fmt::Display>(
        &mut self,
        mut frames: impl Stream<Item = std::result::Result<Frame, E>> + Unpin,
        mut warmed: mpsc::Receiver<Ready>,
        mut stop: watch::Receiver<bool>,
    ) {
        let peer = self.peer;
        let mut keepalive = Keepalive::new(self.svc.cfg().keepalive);
        let mut ticker = tokio::time::interval(keepalive.every);
        ticker.tick().await;
        loop {
            tokio::select! {
                frame = frames.next() => match frame {
                    None => break,
                    Some(Ok(frame)) => {
                        keepalive.heard();
                        if let Err(why) = self.handle(frame.command, frame.payload).await {
                            tracing::warn!(peer = %peer, error = %why, "closing connection");
                            self.out.send(pb::CommandError {
                                request_id: 0,
                                error: why.server_error() as i32,
                                message: why.to_string(),
                            });
                            break;
                        }
                        if self.close_now {
                            break;
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(peer = %peer, error = %e, "bad frame; closing connection");
                        self.out.send(pb::CommandError {
                            request_id: 0,
                            error: ServerError::UnknownError as i32,
                            message: format!("bad frame: {e}"),
                        });
                        break;
                    }
                },
                Some(ready) = warmed.recv() => {
                    if let Err(why) = self.unpark(ready).await {
                        tracing::warn!(peer = %peer, error = %why, "closing connection");
                        break;
                    }
                    if self.close_now {
                        break;
                    }
                }
                _ = auth_due(self.auth_deadline) => {
                    if !self.auth_expired() {
                        break;
                    }
                }
                _ = ticker.tick() => {
                    if keepalive.silent_too_long() {
                        tracing::info!(peer = %peer, "client silent too long; closing connection");
                        break;
                    }
                    self.out.send(pb::CommandPing {});
                }
                _ = stop.changed() => break,
            }
        }
    }

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

    /// One command to its handler.
    async fn dispatch(
        &mut self,
        cmd: BaseCommand,
        payload: Option<Payload>,
    ) -> std::result::Result<(), ProtocolError> {
        match cmd.r#type() {
            CommandType::Connect => self.connect(body(cmd.connect, "CONNECT")?)?,
            CommandType::AuthResponse => {
                self.auth_response(body(cmd.auth_response, "AUTH_RESPONSE")?)
            }
            CommandType::Ping => {
                self.out.send(pb::CommandPong {});
            }
            CommandType::Pong => {}
            CommandType::Lookup => {
                let c = body(cmd.lookup_topic, "LOOKUP")?;
                let reply = self.lookup(&c).await;
                self.out.send(reply);
            }
            CommandType::PartitionedMetadata => {
                let c = body(cmd.partition_metadata, "PARTITIONED_METADATA")?;
                self.partitioned_metadata(c).await;
            }
            CommandType::GetTopicsOfNamespace => {
                let c = body(cmd.get_topics_of_namespace, "GET_TOPICS_OF_NAMESPACE")?;
                self.topics_of_namespace(c).await;
            }
            CommandType::Producer => self.producer(body(cmd.producer, "PRODUCER")?).await,
            CommandType::Send => {
                let c = body(cmd.send, "SEND")?;
                let payload = payload.ok_or(ProtocolError::MissingPayload { command: "SEND" })?;
                self.send(c, payload).await;
            }
            CommandType::CloseProducer => {
                let c = body(cmd.close_producer, "CLOSE_PRODUCER")?;
                self.close_producer(c).await;
            }
            CommandType::Subscribe => self.subscribe(body(cmd.subscribe, "SUBSCRIBE")?).await,
            CommandType::Flow => self.flow(body(cmd.flow, "FLOW")?).await,
            CommandType::Ack => self.ack(body(cmd.ack, "ACK")?).await,
            CommandType::RedeliverUnacknowledgedMessages => {
                let c = body(cmd.redeliver_unacknowledged_messages, "REDELIVER")?;
                self.redeliver(c).await;
            }
            CommandType::Seek => self.seek(body(cmd.seek, "SEEK")?).await,
            CommandType::Unsubscribe => {
                self.unsubscribe(body(cmd.unsubscribe, "UNSUBSCRIBE")?)
                    .await
            }
            CommandType::CloseConsumer => {
                let c = body(cmd.close_consumer, "CLOSE_CONSUMER")?;
                self.close_consumer(c).await;
            }
            CommandType::GetLastMessageId => {
                let c = body(cmd.get_last_message_id, "GET_LAST_MESSAGE_ID")?;
                self.last_message_id(c).await;
            }
            CommandType::GetSchema => self.get_schema(body(cmd.get_schema, "GET_SCHEMA")?).await,
            CommandType::GetOrCreateSchema => {
                let c = body(cmd.get_or_create_schema, "GET_OR_CREATE_SCHEMA")?;
                self.get_or_create_schema(c).await;
            }
            _ => self.unsupported(&cmd),
        }
        Ok(())
    }

    /// Well-formed but not served here (transactions, watchers, ...).
    fn unsupported(&self, cmd: &BaseCommand) {
        self.out.send(pb::CommandError {
            request_id: 0,
            error: ServerError::NotAllowedError as i32,
            message: format!(
                "{} is not supported by this broker",
                magnetar_wire::command_name(cmd)
            ),
        });
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

    async fn cleanup(&mut self) {
        for (id, p) in std::mem::take(&mut self.producers) {
            p.close(&self.out, id).await;
        }
        for (_, s) in self.consumers.drain() {
            consumer::close_consumer(s).await;
        }
        self.out.mark_closed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_client_silent_for_more_than_two_periods_is_dropped() {
        let every = Duration::from_secs(30);
        let mut k = Keepalive::new(every);
        let mut ticker = tokio::time::interval(every);
        ticker.tick().await;
        for _ in 0..2 {
            ticker.tick().await;
            assert!(!k.silent_too_long());
        }
        // Silent exactly two periods at that tick; a moment more is too long.
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(k.silent_too_long());
        // Any frame resets it.
        k.heard();
        ticker.tick().await;
        assert!(!k.silent_too_long());
    }
}

//! A producer: messages are grouped into batches (by count, size and delay),
//! compressed, and sent; receipts come back in send order and resolve each
//! message's future with its id.
//!
//! At most `max_pending` messages are unacknowledged at a time: `send_async`
//! waits for room, which is how a fast application is slowed to what the
//! broker and bookies sustain.
//!
//! Every send without a receipt is kept (its frame shares the payload's
//! memory) so that, when the broker closes the producer, the producer can
//! attach again wherever the topic went and resend them in order.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use magnetar_wire::batch::{self, SingleMessage};
use magnetar_wire::compression::compress;
use magnetar_wire::{pb, CompressionType, Frame, MessageMetadata, Payload, SingleMessageMetadata};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use crate::connection::{Connection, ProducerEvent};
use crate::error::{ClientError, Result};
use crate::message::{key_values, MessageId, OutgoingMessage};
use crate::reconnect::{retryable, Backoff};
use crate::{unexpected, Client};

#[derive(Clone, Debug)]
pub struct ProducerOptions {
    /// Unique per topic; the broker picks one if `None`.
    pub name: Option<String>,
    pub batching: bool,
    pub batch_max_messages: usize,
    pub batch_max_bytes: usize,
    /// How long the first message of a batch waits for company.
    pub batch_delay: Duration,
    pub compression: CompressionType,
    /// Messages sent and not yet acknowledged by the broker.
    pub max_pending: usize,
    pub access_mode: pb::ProducerAccessMode,
    /// The schema to register (the broker answers its version, which every
    /// message then carries); `None` = bytes.
    pub schema: Option<pb::Schema>,
}

impl Default for ProducerOptions {
    fn default() -> Self {
        ProducerOptions {
            name: None,
            batching: true,
            batch_max_messages: 1000,
            batch_max_bytes: 128 << 10,
            batch_delay: Duration::from_millis(1),
            compression: CompressionType::None,
            max_pending: 1000,
            access_mode: pb::ProducerAccessMode::Shared,
            schema: None,
        }
    }
}

type Waiter = oneshot::Sender<Result<MessageId>>;

/// A SEND awaiting its receipt.
struct InFlight {
    sequence_id: u64,
    /// What was sent, to send again after re-attaching.
    cmd: pb::CommandSend,
    payload: Payload,
    /// One per message; more than one means the entry is a batch.
    waiters: Vec<Waiter>,
    batched: bool,
    _permits: Vec<OwnedSemaphorePermit>,
}

struct Queued {
    msg: OutgoingMessage,
    waiter: Waiter,
    permit: OwnedSemaphorePermit,
}

/// The connection the producer is attached through, and its id there.
struct Link {
    conn: Connection,
    producer_id: u64,
}

struct State {
    link: Link,
    /// Closed by the broker and not attached again yet: sends wait in
    /// `in_flight` unsent.
    reattaching: bool,
    next_sequence: u64,
    batch: Vec<Queued>,
    batch_bytes: usize,
    batch_since: Option<Instant>,
    in_flight: VecDeque<InFlight>,
}

struct Inner {
    client: Client,
    name: String,
    topic: String,
    opts: ProducerOptions,
    /// The broker's version of `opts.schema`.
    schema_version: Option<Vec<u8>>,
    state: Mutex<State>,
    permits: Arc<Semaphore>,
    closed: AtomicBool,
    /// Signalled when a message opens a batch: the flusher sleeps until then,
    /// so an idle producer costs no timer wake-ups (a ticking timer per
    /// producer cost a client with thousands of producers a core).
    batch_opened: Arc<tokio::sync::Notify>,
}

pub struct Producer {
    inner: Arc<Inner>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Producer {
    pub(crate) async fn create(
        client: Client,
        topic: &str,
        opts: ProducerOptions,
    ) -> Result<Producer> {
        if opts.max_pending == 0 || opts.batch_max_messages == 0 {
            return Err(ClientError::InvalidConfig(
                "max_pending and batch_max_messages must be positive".into(),
            ));
        }
        let conn = client.connection_for(topic).await?;
        let (producer_id, events, ok) = attach(&conn, topic, &opts, None).await?;
        let last = ok.last_sequence_id.unwrap_or(-1);
        let inner = Arc::new(Inner {
            client,
            name: ok.producer_name.clone(),
            topic: topic.to_string(),
            schema_version: ok.schema_version.clone(),
            permits: Arc::new(Semaphore::new(opts.max_pending)),
            opts,
            state: Mutex::new(State {
                link: Link { conn, producer_id },
                reattaching: false,
                next_sequence: (last + 1).max(0) as u64,
                batch: Vec::new(),
                batch_bytes: 0,
                batch_since: None,
                in_flight: VecDeque::new(),
            }),
            closed: AtomicBool::new(false),
            batch_opened: Arc::new(tokio::sync::Notify::new()),
        });
        let mut tasks = vec![tokio::spawn(receipts(inner.clone(), events))];
        if inner.opts.batching {
            tasks.push(tokio::spawn(flush_on_delay(Arc::downgrade(&inner))));
        }
        Ok(Producer { inner, tasks })
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn topic(&self) -> &str {
        &self.inner.topic
    }

    /// The sequence id the next message gets (the broker's last stored one
    /// plus one when deduplication is on).
    pub fn next_sequence_id(&self) -> u64 {
        self.inner.lock().next_sequence
    }

    /// Sends and waits for the broker's receipt.
    pub async fn send(&self, msg: OutgoingMessage) -> Result<MessageId> {
        self.send_async(msg).await?.await
    }

    /// Queues a message (waiting while `max_pending` are unacknowledged) and
    /// returns a future of its id.
    pub async fn send_async(
        &self,
        msg: OutgoingMessage,
    ) -> Result<impl Future<Output = Result<MessageId>> + Send + 'static> {
        let max = self.inner.lock().link.conn.max_message_size();
        if msg.payload.len() > max {
            return Err(ClientError::MessageTooBig {
                size: msg.payload.len(),
                max,
            });
        }
        let permit = self
            .inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ClientError::Closed)?;
        if self.inner.closed.load(Ordering::Relaxed) {
            return Err(ClientError::Closed);
        }
        let (tx, rx) = oneshot::channel();
        let inner = &self.inner;
        {
            let mut st = inner.lock();
            let alone = !inner.opts.batching || msg.deliver_at.is_some();
            if alone {
                // Delayed messages travel alone, so each keeps its own delivery time.
                flush_batch(inner, &mut st);
                send_single(
                    inner,
                    &mut st,
                    Queued {
                        msg,
                        waiter: tx,
                        permit,
                    },
                );
            } else {
                if st.batch_bytes + msg.payload.len() > inner.opts.batch_max_bytes {
                    flush_batch(inner, &mut st);
                }
                st.batch_bytes += msg.payload.len();
                if st.batch_since.is_none() {
                    st.batch_since = Some(Instant::now());
                    inner.batch_opened.notify_one();
                }
                st.batch.push(Queued {
                    msg,
                    waiter: tx,
                    permit,
                });
                if st.batch.len() >= inner.opts.batch_max_messages {
                    flush_batch(inner, &mut st);
                }
            }
        }
        Ok(async move { rx.await.unwrap_or(Err(ClientError::Closed)) })
    }

    /// Sends what is batched and waits until every message sent so far is
    /// acknowledged (or failed).
    pub async fn flush(&self) -> Result<()> {
        flush_batch(&self.inner, &mut self.inner.lock());
        let all = self.inner.opts.max_pending as u32;
        let _all = self
            .inner
            .permits
            .acquire_many(all)
            .await
            .map_err(|_| ClientError::Closed)?;
        Ok(())
    }

    pub async fn close(mut self) -> Result<()> {
        let flushed = self.flush().await;
        self.inner.closed.store(true, Ordering::Relaxed);
        let (conn, producer_id) = {
            let st = self.inner.lock();
            (st.link.conn.clone(), st.link.producer_id)
        };
        let request_id = conn.next_id();
        let r = conn
            .request(
                request_id,
                pb::CommandCloseProducer {
                    producer_id,
                    request_id,
                    ..Default::default()
                },
            )
            .await;
        conn.unregister_producer(producer_id);
        for t in self.tasks.drain(..) {
            t.abort();
        }
        flushed.and(r.map(|_| ()))
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn metadata_base(inner: &Inner, sequence_id: u64) -> MessageMetadata {
    MessageMetadata {
        producer_name: inner.name.clone(),
        sequence_id,
        publish_time: now_ms(),
        schema_version: inner.schema_version.clone(),
        ..Default::default()
    }
}

/// Compresses `body` into `md` per the producer's codec.
fn compressed(inner: &Inner, md: &mut MessageMetadata, body: Bytes) -> Result<Bytes> {
    let kind = inner.opts.compression;
    if kind == CompressionType::None {
        return Ok(body);
    }
    md.compression = Some(kind as i32);
    md.uncompressed_size = Some(body.len() as u32);
    Ok(compress(kind, &body)?)
}

fn send_single(inner: &Inner, st: &mut State, q: Queued) {
    let sequence_id = st.next_sequence;
    st.next_sequence += 1;
    let mut md = metadata_base(inner, sequence_id);
    md.partition_key = q.msg.key.clone();
    md.properties = key_values(&q.msg.properties);
    md.event_time = q.msg.event_time;
    md.deliver_at_time = q.msg.deliver_at;
    let body = match compressed(inner, &mut md, q.msg.payload) {
        Ok(b) => b,
        Err(e) => {
            let _ = q.waiter.send(Err(e));
            return;
        }
    };
    let cmd = pb::CommandSend {
        sequence_id,
        ..Default::default()
    };
    dispatch(
        inner,
        st,
        cmd,
        Payload::new(md, body),
        vec![q.waiter],
        false,
        vec![q.permit],
    );
}

fn flush_batch(inner: &Inner, st: &mut State) {
    if st.batch.is_empty() {
        return;
    }
    let queued = std::mem::take(&mut st.batch);
    st.batch_bytes = 0;
    st.batch_since = None;
    let first = st.next_sequence;
    let n = queued.len() as u64;
    st.next_sequence += n;
    let mut messages = Vec::with_capacity(queued.len());
    let mut waiters = Vec::with_capacity(queued.len());
    let mut permits = Vec::with_capacity(queued.len());
    for (i, q) in queued.into_iter().enumerate() {
        messages.push(SingleMessage {
            metadata: SingleMessageMetadata {
                properties: key_values(&q.msg.properties),
                partition_key: q.msg.key,
                payload_size: q.msg.payload.len() as i32,
                event_time: q.msg.event_time,
                sequence_id: Some(first + i as u64),
                ..Default::default()
            },
            payload: q.msg.payload,
        });
        waiters.push(q.waiter);
        permits.push(q.permit);
    }
    let mut md = metadata_base(inner, first);
    md.num_messages_in_batch = Some(n as i32);
    md.highest_sequence_id = Some(first + n - 1);
    let body = match compressed(inner, &mut md, batch::build(&messages)) {
        Ok(b) => b,
        Err(e) => {
            let msg = e.to_string();
            for w in waiters {
                let _ = w.send(Err(ClientError::Protocol(msg.clone())));
            }
            return;
        }
    };
    let cmd = pb::CommandSend {
        sequence_id: first,
        num_messages: Some(n as i32),
        highest_sequence_id: Some(first + n - 1),
        ..Default::default()
    };
    dispatch(
        inner,
        st,
        cmd,
        Payload::new(md, body),
        waiters,
        true,
        permits,
    );
}

/// Records the send as in flight and queues its frame, under the state lock
/// so frames and the in-flight queue stay in the same order. While the
/// producer re-attaches (or if the connection just went), the send waits in
/// `in_flight` and goes out on the next attachment.
fn dispatch(
    _inner: &Inner,
    st: &mut State,
    mut cmd: pb::CommandSend,
    payload: Payload,
    waiters: Vec<Waiter>,
    batched: bool,
    permits: Vec<OwnedSemaphorePermit>,
) {
    cmd.producer_id = st.link.producer_id;
    if !st.reattaching {
        // A failure means the connection is gone; its Closed event follows.
        let _ = st
            .link
            .conn
            .send(Frame::with_payload(cmd.clone(), payload.clone()));
    }
    st.in_flight.push_back(InFlight {
        sequence_id: cmd.sequence_id,
        cmd,
        payload,
        waiters,
        batched,
        _permits: permits,
    });
}

/// Registers a producer for `topic` on `conn` (named `name` when
/// re-attaching); its id, events and the broker's answer.
async fn attach(
    conn: &Connection,
    topic: &str,
    opts: &ProducerOptions,
    name: Option<&str>,
) -> Result<(
    u64,
    mpsc::UnboundedReceiver<ProducerEvent>,
    pb::CommandProducerSuccess,
)> {
    let producer_id = conn.next_id();
    let request_id = conn.next_id();
    let events = conn.register_producer(producer_id);
    let reply = conn
        .request(
            request_id,
            pb::CommandProducer {
                topic: topic.to_string(),
                producer_id,
                request_id,
                producer_name: name.map(str::to_string).or_else(|| opts.name.clone()),
                user_provided_producer_name: Some(opts.name.is_some()),
                producer_access_mode: Some(opts.access_mode as i32),
                schema: opts.schema.clone(),
                ..Default::default()
            },
        )
        .await;
    match reply {
        Ok(r) => match r.producer_success.clone() {
            Some(ok) => Ok((producer_id, events, ok)),
            None => {
                conn.unregister_producer(producer_id);
                Err(unexpected("PRODUCER", &r))
            }
        },
        Err(e) => {
            conn.unregister_producer(producer_id);
            Err(e)
        }
    }
}

/// Attaches again wherever the topic is now and resends, in order, every
/// send without a receipt. Returns the new attachment's events.
async fn reattach(inner: &Arc<Inner>) -> Result<mpsc::UnboundedReceiver<ProducerEvent>> {
    inner.lock().reattaching = true;
    let deadline = tokio::time::Instant::now() + inner.client.cfg.reconnect_timeout;
    let mut backoff = Backoff::until(deadline);
    loop {
        if inner.closed.load(Ordering::Relaxed) {
            return Err(ClientError::Closed);
        }
        let attempt = async {
            let conn = inner.client.connection_for(&inner.topic).await?;
            let (id, events, _) =
                attach(&conn, &inner.topic, &inner.opts, Some(&inner.name)).await?;
            Ok::<_, ClientError>((conn, id, events))
        }
        .await;
        match attempt {
            Ok((conn, producer_id, events)) => {
                let mut st = inner.lock();
                let State {
                    link,
                    in_flight,
                    reattaching,
                    ..
                } = &mut *st;
                *link = Link { conn, producer_id };
                *reattaching = false;
                for f in in_flight.iter_mut() {
                    f.cmd.producer_id = producer_id;
                    let _ = link
                        .conn
                        .send(Frame::with_payload(f.cmd.clone(), f.payload.clone()));
                }
                tracing::debug!(producer = %inner.name, topic = %inner.topic, resent = in_flight.len(), "producer attached again");
                return Ok(events);
            }
            Err(e) if !retryable(&e) => return Err(e),
            Err(e) => {
                tracing::debug!(producer = %inner.name, error = %e, "re-attaching producer");
                if !backoff.wait().await {
                    return Err(e);
                }
            }
        }
    }
}

/// Resolves in-flight sends as receipts and errors arrive; re-attaches when
/// the broker lets the producer go.
async fn receipts(inner: Arc<Inner>, mut events: mpsc::UnboundedReceiver<ProducerEvent>) {
    loop {
        let ev = match events.recv().await {
            Some(ProducerEvent::Closed) | None => {
                if inner.closed.load(Ordering::Relaxed) {
                    return;
                }
                match reattach(&inner).await {
                    Ok(ev) => {
                        events = ev;
                        continue;
                    }
                    Err(e) => {
                        let (code, message) = (e.server_error(), e.to_string());
                        fail_everything(&inner, || match code {
                            Some(c) => ClientError::Server {
                                code: c as i32,
                                message: message.clone(),
                            },
                            None => ClientError::Disconnected,
                        });
                        return;
                    }
                }
            }
            Some(ev) => ev,
        };
        match ev {
            ProducerEvent::Receipt { sequence_id, id } => {
                let done = {
                    let mut st = inner.lock();
                    match st.in_flight.front() {
                        Some(f) if f.sequence_id == sequence_id => st.in_flight.pop_front(),
                        // A receipt for something already settled (e.g. a duplicate).
                        Some(f) if sequence_id < f.sequence_id => None,
                        _ => {
                            tracing::warn!(producer = %inner.name, sequence_id, "receipt out of order; failing pending sends");
                            drop(st);
                            fail_everything(&inner, || {
                                ClientError::Protocol("receipt out of order".into())
                            });
                            return;
                        }
                    }
                };
                if let Some(f) = done {
                    let base = id
                        .as_ref()
                        .map(MessageId::from_wire)
                        .unwrap_or(MessageId::EARLIEST);
                    for (i, w) in f.waiters.into_iter().enumerate() {
                        let batch_index = if f.batched { i as i32 } else { -1 };
                        let _ = w.send(Ok(MessageId {
                            batch_index,
                            ..base
                        }));
                    }
                }
            }
            ProducerEvent::Error { sequence_id, error } => {
                let failed = {
                    let mut st = inner.lock();
                    match st.in_flight.front() {
                        Some(f) if f.sequence_id == sequence_id => st.in_flight.pop_front(),
                        _ => None,
                    }
                };
                if let Some(f) = failed {
                    let text = error.to_string();
                    let code = error
                        .server_error()
                        .map_or(pb::ServerError::UnknownError as i32, |e| e as i32);
                    for w in f.waiters {
                        let _ = w.send(Err(ClientError::Server {
                            code,
                            message: text.clone(),
                        }));
                    }
                }
            }
            // Handled before the match.
            ProducerEvent::Closed => {}
        }
    }
}

fn fail_everything(inner: &Inner, error: impl Fn() -> ClientError) {
    inner.closed.store(true, Ordering::Relaxed);
    inner.permits.close();
    let mut st = inner.lock();
    for f in st.in_flight.drain(..) {
        for w in f.waiters {
            let _ = w.send(Err(error()));
        }
    }
    for q in st.batch.drain(..) {
        let _ = q.waiter.send(Err(error()));
    }
}

/// Sends a batch whose first message has waited `batch_delay`. Sleeps until
/// a batch opens, then until it is due; a batch flushed meanwhile (full) is
/// skipped. `notify_one` keeps a permit when nobody waits, so an opening is
/// never missed.
async fn flush_on_delay(inner: std::sync::Weak<Inner>) {
    let (delay, opened) = match inner.upgrade() {
        Some(i) => (
            i.opts.batch_delay.max(Duration::from_micros(100)),
            i.batch_opened.clone(),
        ),
        None => return,
    };
    loop {
        opened.notified().await;
        loop {
            let Some(inner) = inner.upgrade() else { return };
            let due = inner.lock().batch_since.map(|t| t + delay);
            match due {
                None => break,
                Some(due) if due <= Instant::now() => {
                    let mut st = inner.lock();
                    if st.batch.is_empty() {
                        // Failed and drained (closed producer): nothing to send.
                        st.batch_since = None;
                    } else if st.batch_since.is_some_and(|t| t.elapsed() >= delay) {
                        flush_batch(&inner, &mut st);
                    }
                }
                Some(due) => {
                    drop(inner);
                    tokio::time::sleep_until(due.into()).await;
                }
            }
        }
    }
}

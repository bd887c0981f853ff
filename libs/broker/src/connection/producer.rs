//! PRODUCER, SEND and CLOSE_PRODUCER, and the task that sends a producer's
//! receipts in order.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use magnetar_common::names::TopicName;
use magnetar_wire::{pb, BaseCommand, Payload, ServerError};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{error, Conn};
use crate::authz::Action;
use crate::error::{BrokerError, Result};
use crate::outbound::Outbound;
use crate::schema;
use crate::service::BrokerService;
use crate::subscription::message_id;
use crate::topic::{AccessMode, CloseNotice, ProducerEntry, Published, Topic};
use crate::warm;

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
    /// A gate over a new queue of `capacity` sends, and the queue's other end
    /// (for the receipt task).
    fn open(capacity: usize) -> (Arc<SendGate>, mpsc::Receiver<PendingSend>) {
        let (tx, rx) = mpsc::channel(capacity);
        let gate = Arc::new(SendGate {
            queue: std::sync::Mutex::new(Some(tx)),
            let_go: Arc::new(AtomicBool::new(false)),
        });
        (gate, rx)
    }

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

pub(super) struct ProducerSlot {
    topic: Arc<Topic>,
    name: String,
    gate: Arc<SendGate>,
    /// The topic's append failures when this producer attached: its sends
    /// are refused once another fails (`ManagedLedger::append_in_order`).
    seen_failures: u64,
    msg_in: Arc<AtomicU64>,
    bytes_in: Arc<AtomicU64>,
    /// A WaitForExclusive producer still queued for the topic.
    waiting: Option<JoinHandle<()>>,
}

impl ProducerSlot {
    /// Stops waiting (if it still is) and leaves the topic.
    pub(super) async fn close(self, out: &Outbound, producer_id: u64) {
        if let Some(w) = self.waiting {
            w.abort();
            let _ = w.await;
        }
        self.topic.remove_producer(out, producer_id);
    }
}

impl Conn {
    pub(super) async fn producer(&mut self, c: pb::CommandProducer) {
        let request_id = c.request_id;
        match self.create_producer(c).await {
            Ok(reply) => self.out.send(reply),
            Err(e) => self.out.send(error(request_id, &e)),
        };
    }

    pub(super) async fn close_producer(&mut self, c: pb::CommandCloseProducer) {
        self.warming.cancel(warm::Key::Producer(c.producer_id));
        if let Some(p) = self.producers.remove(&c.producer_id) {
            p.close(&self.out, c.producer_id).await;
        }
        self.out.send(pb::CommandSuccess {
            request_id: c.request_id,
            schema: None,
        });
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
            let producer_name = existing.name.clone();
            return self.producer_again(c, producer_name).await;
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
        self.attach_producer(c, topic, producer_name, schema_version)
    }

    /// A retried PRODUCER for one that already exists succeeds again (with
    /// its schema's version: the client stamps it on messages).
    async fn producer_again(
        &self,
        c: pb::CommandProducer,
        producer_name: String,
    ) -> Result<BaseCommand> {
        let topic = TopicName::parse(&c.topic)?;
        let schema_version = schema::for_producer(self.svc.resources(), &topic, c.schema.as_ref())
            .await?
            .map(schema::encode_version);
        Ok(pb::CommandProducerSuccess {
            request_id: c.request_id,
            producer_name,
            last_sequence_id: Some(-1),
            schema_version,
            producer_ready: Some(true),
            ..Default::default()
        }
        .into())
    }

    /// Adds a new producer to its (loaded, checked) topic and starts its
    /// receipt task.
    fn attach_producer(
        &mut self,
        c: pb::CommandProducer,
        topic: Arc<Topic>,
        producer_name: String,
        schema_version: Option<Vec<u8>>,
    ) -> Result<BaseCommand> {
        let seen_failures = topic.ml.append_failures();
        let msg_in = Arc::new(AtomicU64::new(0));
        let bytes_in = Arc::new(AtomicU64::new(0));
        let (gate, rx) = SendGate::open(self.svc.cfg().max_pending_per_producer.max(1));
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
        let (last, waiting) = join_topic(&topic, entry, c.request_id, &schema_version)?;
        let ready = waiting.is_none();
        tokio::spawn(receipt_loop(
            rx,
            gate.let_go.clone(),
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

    pub(super) async fn send(&mut self, c: pb::CommandSend, payload: Payload) {
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
}

/// Adds the producer to the topic: the last sequence id it stored, and for
/// a WaitForExclusive producer that must queue, the task that waits.
fn join_topic(
    topic: &Arc<Topic>,
    entry: ProducerEntry,
    request_id: u64,
    schema_version: &Option<Vec<u8>>,
) -> Result<(i64, Option<JoinHandle<()>>)> {
    match topic.add_producer(entry.clone()) {
        Ok(last) => Ok((last, None)),
        Err(BrokerError::ProducerBusy(_)) if entry.mode == AccessMode::WaitForExclusive => {
            // Pulsar's answer: "created, not ready"; a second
            // PRODUCER_SUCCESS with producer_ready follows once the
            // topic is ours.
            let waiter = tokio::spawn(wait_for_exclusive(
                topic.clone(),
                entry,
                request_id,
                schema_version.clone(),
            ));
            Ok((-1, Some(waiter)))
        }
        Err(e) => Err(e),
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
                out.send(pb::CommandSendReceipt {
                    producer_id,
                    sequence_id: p.sequence_id,
                    message_id: Some(receipt_id(&topic, published)),
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

/// The message id a receipt carries: where the message was stored, or
/// (-1, -1) for a duplicate.
fn receipt_id(topic: &Topic, published: Published) -> pb::MessageIdData {
    match published {
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
    }
}

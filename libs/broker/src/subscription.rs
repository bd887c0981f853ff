//! A subscription: one cursor and the consumers attached to it, run as one
//! task that owns all of the subscription's state (consumers and their
//! permits, messages in flight, redeliveries, delayed messages).
//!
//! Dispatch: entries are read ahead from the cursor into `held` (in position
//! order) and handed out from there as consumers' permits allow:
//! - Exclusive / Failover: everything to the one active consumer, in order;
//! - Shared: round-robin over consumers with permits;
//! - Key_Shared: by key slot (see `key_shared`), skipping entries whose
//!   consumer is busy without stalling the others.
//!
//! Messages taken back (negative ack, closed consumer) are re-read by position
//! and dispatched before anything newer, with a higher redelivery count.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use magnetar_managed_ledger::{Entry, InitialPosition, ManagedCursor, ManagedLedger, Position};
use magnetar_wire::{pb, Payload};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::error::{BrokerError, Result};
use crate::key_shared::{slot_of, Candidate, SlotTable};
use crate::outbound::Outbound;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum SubType {
    Exclusive,
    Shared,
    Failover,
    #[serde(rename = "Key_Shared")]
    KeyShared,
}

impl SubType {
    pub fn from_wire(v: i32) -> SubType {
        match pb::command_subscribe::SubType::try_from(v) {
            Ok(pb::command_subscribe::SubType::Shared) => SubType::Shared,
            Ok(pb::command_subscribe::SubType::Failover) => SubType::Failover,
            Ok(pb::command_subscribe::SubType::KeyShared) => SubType::KeyShared,
            _ => SubType::Exclusive,
        }
    }

    fn delays_allowed(self) -> bool {
        matches!(self, SubType::Shared | SubType::KeyShared)
    }
}

/// What a new consumer brings.
pub struct ConsumerSpec {
    /// Unique in this broker.
    pub key: u64,
    /// The client's id for it on its connection.
    pub consumer_id: u64,
    pub name: String,
    pub priority: i32,
    pub sub_type: SubType,
    pub out: Outbound,
    /// Key_Shared sticky ranges (inclusive).
    pub ranges: Vec<(u32, u32)>,
    pub epoch: u64,
    /// Partition index of the topic (Failover spreads partitions by it).
    pub partition: i32,
}

/// Where a subscription's position lives.
pub enum SubCursor {
    /// Persisted (a subscription).
    Durable(ManagedCursor),
    /// In memory only (a reader): the position after which to read next.
    NonDurable { after: Position },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckKind {
    Individual,
    Cumulative,
}

/// A batch index ack: the batch's size and Pulsar's bitset of the messages
/// still unacked.
pub type BatchAckSet = (u32, Vec<i64>);

pub struct AckRequest {
    pub kind: AckKind,
    /// Positions with, for batch index acks, (batch size, unacked bitset).
    pub ids: Vec<(Position, Option<BatchAckSet>)>,
    /// Answer only once the ack is persisted (the client asked for a receipt).
    pub durable: bool,
}

pub enum SeekTarget {
    Position(Position),
    Earliest,
    Latest,
    PublishTime(u64),
}

enum Cmd {
    AddConsumer(ConsumerSpec, oneshot::Sender<Result<()>>),
    RemoveConsumer(u64, oneshot::Sender<()>),
    Flow(u64, u32),
    Ack(AckRequest, oneshot::Sender<Result<()>>),
    Redeliver {
        consumer: u64,
        positions: Option<Vec<Position>>,
        epoch: Option<u64>,
    },
    Seek(SeekTarget, oneshot::Sender<Result<()>>),
    Stats(oneshot::Sender<SubscriptionStats>),
    /// Disconnect every consumer (they reconnect) and stop.
    Close(oneshot::Sender<()>),
    /// Delete the subscription if `requester` (if any) is its only consumer.
    Unsubscribe(Option<u64>, oneshot::Sender<Result<()>>),
    Expire(u64, oneshot::Sender<Result<()>>),
    /// Ack the next N unacked messages; replies how many were skipped.
    Skip(u64, oneshot::Sender<Result<u64>>),
}

#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerStats {
    pub consumer_name: String,
    pub available_permits: i64,
    pub unacked_messages: u64,
    pub msg_out_counter: u64,
    pub bytes_out_counter: u64,
    pub connected_since: String,
}

#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionStats {
    pub r#type: String,
    pub msg_backlog: u64,
    pub backlog_size: u64,
    pub unacked_messages: u64,
    pub msg_out_counter: u64,
    pub bytes_out_counter: u64,
    pub msg_delayed: u64,
    pub is_durable: bool,
    pub consumers: Vec<ConsumerStats>,
}

/// Handle to a subscription's task.
#[derive(Clone)]
pub struct Subscription {
    pub name: String,
    pub durable: bool,
    tx: mpsc::Sender<Cmd>,
}

const CMD_QUEUE: usize = 1024;
const READ_WAIT: Duration = Duration::from_secs(5);
const OUTBOUND_RETRY: Duration = Duration::from_millis(20);

pub struct SubscriptionParams {
    pub name: String,
    pub ml: ManagedLedger,
    pub cursor: SubCursor,
    pub sub_type: SubType,
    pub dispatch_batch: usize,
    pub max_held: usize,
}

impl Subscription {
    pub fn start(p: SubscriptionParams) -> Subscription {
        let (tx, rx) = mpsc::channel(CMD_QUEUE);
        let durable = matches!(p.cursor, SubCursor::Durable(_));
        let name = p.name.clone();
        let actor = Actor {
            name: p.name,
            ml: p.ml,
            cursor: p.cursor,
            sub_type: p.sub_type,
            batch: p.dispatch_batch.max(1),
            max_held: p.max_held.max(1),
            consumers: Vec::new(),
            active: None,
            held: BTreeMap::new(),
            replay: BTreeSet::new(),
            pending: HashMap::new(),
            redeliveries: HashMap::new(),
            delayed: BTreeSet::new(),
            slots: SlotTable::default(),
            rr: 0,
            generation: 0,
            stopped: false,
            msg_out: 0,
            bytes_out: 0,
        };
        tokio::spawn(actor.run(rx));
        Subscription { name, durable, tx }
    }

    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Cmd) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).await.map_err(|_| gone(&self.name))?;
        rx.await.map_err(|_| gone(&self.name))
    }

    pub async fn add_consumer(&self, spec: ConsumerSpec) -> Result<()> {
        self.call(|tx| Cmd::AddConsumer(spec, tx)).await?
    }

    pub async fn remove_consumer(&self, key: u64) {
        let _ = self.call(|tx| Cmd::RemoveConsumer(key, tx)).await;
    }

    pub async fn flow(&self, key: u64, permits: u32) {
        let _ = self.tx.send(Cmd::Flow(key, permits)).await;
    }

    pub async fn ack(&self, req: AckRequest) -> Result<()> {
        self.call(|tx| Cmd::Ack(req, tx)).await?
    }

    pub async fn redeliver(
        &self,
        consumer: u64,
        positions: Option<Vec<Position>>,
        epoch: Option<u64>,
    ) {
        let _ = self
            .tx
            .send(Cmd::Redeliver {
                consumer,
                positions,
                epoch,
            })
            .await;
    }

    pub async fn seek(&self, target: SeekTarget) -> Result<()> {
        self.call(|tx| Cmd::Seek(target, tx)).await?
    }

    pub async fn stats(&self) -> Result<SubscriptionStats> {
        self.call(Cmd::Stats).await
    }

    pub async fn close(&self) {
        let _ = self.call(Cmd::Close).await;
    }

    pub async fn unsubscribe(&self, requester: Option<u64>) -> Result<()> {
        self.call(|tx| Cmd::Unsubscribe(requester, tx)).await?
    }

    /// Acks every message older than `age_seconds` (TTL applied by hand).
    pub async fn expire(&self, age_seconds: u64) -> Result<()> {
        self.call(|tx| Cmd::Expire(age_seconds, tx)).await?
    }

    /// Acks the next `n` unacked messages (admin skip, backlog eviction);
    /// returns how many there were.
    pub async fn skip(&self, n: u64) -> Result<u64> {
        self.call(|tx| Cmd::Skip(n, tx)).await?
    }

    pub fn is_stopped(&self) -> bool {
        self.tx.is_closed()
    }
}

fn gone(name: &str) -> BrokerError {
    BrokerError::ServiceNotReady(format!("subscription {name} is closed"))
}

struct ConsumerState {
    spec: ConsumerSpec,
    permits: i64,
    unacked: u64,
    msg_out: u64,
    bytes_out: u64,
    since: String,
    /// Told the topic was terminated and it has read everything.
    told_end: bool,
}

/// An entry read and waiting to be dispatched.
struct Held {
    payload: Payload,
    messages: u32,
    slot: u32,
    deliver_at: Option<u64>,
}

/// A message delivered and not yet acked.
struct InFlight {
    consumer: u64,
    slot: u32,
    messages: u32,
}

type ReadFuture = Pin<Box<dyn Future<Output = (u64, Result<Vec<Entry>>, bool)> + Send>>;

struct Actor {
    name: String,
    ml: ManagedLedger,
    cursor: SubCursor,
    sub_type: SubType,
    batch: usize,
    max_held: usize,
    consumers: Vec<ConsumerState>,
    /// Exclusive/Failover: the consumer that receives.
    active: Option<u64>,
    held: BTreeMap<Position, Held>,
    /// Positions to re-read for redelivery.
    replay: BTreeSet<Position>,
    pending: HashMap<Position, InFlight>,
    redeliveries: HashMap<Position, u32>,
    delayed: BTreeSet<(u64, Position)>,
    slots: SlotTable,
    rr: usize,
    /// Bumped by seeks so that a read started before one is dropped.
    generation: u64,
    stopped: bool,
    msg_out: u64,
    bytes_out: u64,
}

enum Event {
    Cmd(Option<Cmd>),
    Read(u64, Result<Vec<Entry>>, bool),
    Timer,
}

impl Actor {
    async fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        // The read in progress, whether it re-reads redeliveries, and the
        // generation it started in.
        let mut read: Option<(ReadFuture, bool, u64)> = None;
        while !self.stopped {
            if read.is_none() {
                let replay = self.needs_replay_read();
                read = self.next_read().map(|f| (f, replay, self.generation));
            }
            let timer = self.next_timer();
            let ev = tokio::select! {
                c = rx.recv() => Event::Cmd(c),
                (generation, r, replayed) = async { (&mut read.as_mut().expect("guarded").0).await }, if read.is_some() => {
                    Event::Read(generation, r, replayed)
                }
                _ = tokio::time::sleep(timer.unwrap_or(READ_WAIT)), if timer.is_some() => Event::Timer,
            };
            match ev {
                Event::Cmd(None) => break,
                Event::Cmd(Some(c)) => self.handle(c).await,
                Event::Read(generation, r, replayed) => {
                    read = None;
                    self.on_read(generation, r, replayed);
                }
                Event::Timer => self.release_due_delayed(),
            }
            // A read of new entries (which may be waiting for the tail) must
            // not hold up redeliveries or a seek: drop it and start over.
            // Cursor reads move the read position only when they complete,
            // so dropping one loses nothing.
            if let Some((_, replay, generation)) = &read {
                if *generation != self.generation || (!*replay && self.needs_replay_read()) {
                    read = None;
                }
            }
            self.dispatch();
        }
        // Consumers still attached learn that the subscription is gone.
        for c in &self.consumers {
            c.spec.out.send(pb::CommandCloseConsumer {
                consumer_id: c.spec.consumer_id,
                request_id: 0,
                ..Default::default()
            });
        }
        if let SubCursor::Durable(c) = &self.cursor {
            let _ = c.flush().await;
        }
    }

    /// Whether positions taken back for redelivery still have to be read.
    fn needs_replay_read(&self) -> bool {
        self.replay.iter().any(|p| !self.held.contains_key(p))
    }

    fn next_timer(&self) -> Option<Duration> {
        let mut t: Option<Duration> = None;
        if let Some((at, _)) = self.delayed.first() {
            t = Some(Duration::from_millis(at.saturating_sub(now_ms())));
        }
        let blocked = self
            .consumers
            .iter()
            .any(|c| c.permits > 0 && !c.spec.out.writable() && !c.spec.out.is_closed());
        if blocked && !self.held.is_empty() {
            t = Some(t.map_or(OUTBOUND_RETRY, |t| t.min(OUTBOUND_RETRY)));
        }
        t
    }

    // ---- reading ---------------------------------------------------------

    /// The next read to start, if one is useful now.
    fn next_read(&mut self) -> Option<ReadFuture> {
        let generation = self.generation;
        let ml = self.ml.clone();
        // Redeliveries first: they are older than anything held.
        let missing: Vec<Position> = self
            .replay
            .iter()
            .filter(|p| !self.held.contains_key(p))
            .take(self.batch)
            .copied()
            .collect();
        if !missing.is_empty() {
            return Some(Box::pin(async move {
                let r = ml.read_positions(&missing).await.map_err(BrokerError::from);
                (generation, r, true)
            }));
        }
        let wants = self.consumers.iter().any(|c| c.permits > 0);
        if !wants || self.held.len() >= self.max_held {
            return None;
        }
        let n = self.batch.min(self.max_held - self.held.len());
        match &self.cursor {
            SubCursor::Durable(c) => {
                let c = c.clone();
                Some(Box::pin(async move {
                    let r = c
                        .read_entries_or_wait(n, READ_WAIT)
                        .await
                        .map_err(BrokerError::from);
                    (generation, r, false)
                }))
            }
            SubCursor::NonDurable { after } => {
                let after = *after;
                Some(Box::pin(async move {
                    if ml.last_confirmed() <= after {
                        ml.wait_for_entries_after(after, READ_WAIT).await;
                    }
                    let from = Position::new(after.ledger_id, after.entry_id + 1);
                    let r = if ml.last_confirmed() > after {
                        ml.read_from(from, n).await.map_err(BrokerError::from)
                    } else {
                        Ok(Vec::new())
                    };
                    (generation, r, false)
                }))
            }
        }
    }

    fn on_read(&mut self, generation: u64, r: Result<Vec<Entry>>, replayed: bool) {
        if generation != self.generation {
            return;
        }
        let entries = match r {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(subscription = %self.name, error = %e, "read failed");
                if replayed {
                    // Positions that cannot be read any more (trimmed) are dropped.
                    self.replay.clear();
                }
                return;
            }
        };
        if replayed {
            let wanted: BTreeSet<Position> = self.replay.iter().copied().collect();
            let got: BTreeSet<Position> = entries.iter().map(|e| e.position).collect();
            for p in wanted.iter().take(self.batch) {
                if !got.contains(p) && !self.held.contains_key(p) {
                    self.replay.remove(p);
                }
            }
        }
        if let (SubCursor::NonDurable { after }, false) = (&mut self.cursor, replayed) {
            if let Some(last) = entries.last() {
                *after = (*after).max(last.position);
            }
        }
        if entries.is_empty() && !replayed {
            self.maybe_end_of_topic();
        }
        for e in entries {
            self.hold(e);
        }
    }

    /// On a terminated topic, tells consumers once they have everything.
    fn maybe_end_of_topic(&mut self) {
        let Some(end) = self.ml.terminated_at() else {
            return;
        };
        let read_all = match &self.cursor {
            SubCursor::Durable(c) => c.read_position() > end,
            SubCursor::NonDurable { after } => *after >= end,
        };
        if !read_all || !self.held.is_empty() || !self.replay.is_empty() {
            return;
        }
        for c in self.consumers.iter_mut().filter(|c| !c.told_end) {
            c.told_end = true;
            c.spec.out.send(pb::CommandReachedEndOfTopic {
                consumer_id: c.spec.consumer_id,
            });
        }
    }

    fn hold(&mut self, e: Entry) {
        let raw = bytes::Bytes::from_owner(e.data.clone());
        let payload = match Payload::parse(raw) {
            Ok(p) => p,
            Err(err) => {
                // Only the broker writes entries; a bad one is skipped, not fatal.
                tracing::error!(subscription = %self.name, position = %e.position, error = %err, "unreadable entry skipped");
                return;
            }
        };
        let md = &payload.metadata;
        let messages = md.num_messages_in_batch.unwrap_or(1).max(1) as u32;
        let key = md
            .ordering_key
            .as_deref()
            .or(md.partition_key.as_deref().map(str::as_bytes))
            .unwrap_or_default();
        let slot = slot_of(key);
        let deliver_at = md.deliver_at_time.filter(|&t| t > 0).map(|t| t as u64);
        if self.replay.contains(&e.position) || !self.is_acked(e.position) {
            self.held.insert(
                e.position,
                Held {
                    payload,
                    messages,
                    slot,
                    deliver_at,
                },
            );
        }
    }

    fn is_acked(&self, p: Position) -> bool {
        match &self.cursor {
            SubCursor::Durable(c) => c.is_acked(p),
            SubCursor::NonDurable { .. } => false,
        }
    }

    fn release_due_delayed(&mut self) {
        let now = now_ms();
        while let Some(&(at, p)) = self.delayed.first() {
            if at > now {
                break;
            }
            self.delayed.pop_first();
            self.replay.insert(p);
        }
    }

    // ---- dispatching -----------------------------------------------------

    fn dispatch(&mut self) {
        // Redeliveries still to be read come before anything held.
        if self.needs_replay_read() {
            return;
        }
        if self.consumers.is_empty() || self.held.is_empty() {
            return;
        }
        let now = now_ms();
        let positions: Vec<Position> = self.held.keys().copied().collect();
        let mut blocked_slots: BTreeSet<u32> = BTreeSet::new();
        // The consumer set does not change during one dispatch pass.
        let cands = if self.sub_type == SubType::KeyShared {
            self.candidates()
        } else {
            Vec::new()
        };
        for p in positions {
            let Some((slot, deliver_at)) = self.held.get(&p).map(|h| (h.slot, h.deliver_at)) else {
                continue;
            };
            if self.is_acked(p) {
                self.held.remove(&p);
                self.replay.remove(&p);
                continue;
            }
            if let Some(at) = deliver_at {
                if at > now && self.sub_type.delays_allowed() && !self.replay.contains(&p) {
                    self.held.remove(&p);
                    self.delayed.insert((at, p));
                    continue;
                }
            }
            let target = match self.sub_type {
                SubType::Exclusive | SubType::Failover => match self.active {
                    Some(a) if self.can_send(a) => Some(a),
                    _ => return, // in order: nothing may overtake
                },
                SubType::Shared => match self.next_shared() {
                    Some(c) => Some(c),
                    None => return,
                },
                SubType::KeyShared => {
                    if blocked_slots.contains(&slot) {
                        None
                    } else {
                        match self.slots.route(slot, &cands) {
                            Some(c) if self.can_send(c) => Some(c),
                            _ => {
                                blocked_slots.insert(slot);
                                None
                            }
                        }
                    }
                }
            };
            if let Some(c) = target {
                self.send(c, p);
            }
            if !self.consumers.iter().any(|c| c.permits > 0) {
                return;
            }
        }
    }

    fn can_send(&self, key: u64) -> bool {
        self.consumers
            .iter()
            .any(|c| c.spec.key == key && c.permits > 0 && c.spec.out.writable())
    }

    fn next_shared(&mut self) -> Option<u64> {
        let n = self.consumers.len();
        for i in 0..n {
            let idx = (self.rr + i) % n;
            let c = &self.consumers[idx];
            if c.permits > 0 && c.spec.out.writable() {
                self.rr = idx + 1;
                return Some(c.spec.key);
            }
        }
        None
    }

    fn candidates(&self) -> Vec<Candidate> {
        self.consumers
            .iter()
            .map(|c| Candidate {
                key: c.spec.key,
                name: c.spec.name.clone(),
                ranges: c.spec.ranges.clone(),
            })
            .collect()
    }

    fn send(&mut self, consumer: u64, p: Position) {
        let Some(h) = self.held.remove(&p) else {
            return;
        };
        self.replay.remove(&p);
        let redelivery_count = self.redeliveries.get(&p).copied().unwrap_or(0);
        let ack_set = match &self.cursor {
            SubCursor::Durable(c) => c
                .batch_acked_indexes(p)
                .map(|acked| unacked_bits(&acked, h.messages)),
            SubCursor::NonDurable { .. } => None,
        };
        let Some(c) = self.consumers.iter_mut().find(|c| c.spec.key == consumer) else {
            self.held.insert(p, h);
            return;
        };
        let bytes = h.payload.raw.len() as u64;
        let _span = tracing::info_span!(
            target: magnetar_telemetry::SPANS,
            "dispatch",
            topic = self.ml.name(),
            subscription = %self.name,
            consumer = %c.spec.name,
            message_id = %p,
            messages = h.messages,
            redelivery_count,
        )
        .entered();
        let cmd = pb::CommandMessage {
            consumer_id: c.spec.consumer_id,
            message_id: message_id(p, -1),
            redelivery_count: Some(redelivery_count),
            ack_set: ack_set.unwrap_or_default(),
            consumer_epoch: Some(c.spec.epoch),
        };
        if !c.spec.out.send_frame(cmd.into(), Some(h.payload)) {
            // The connection is gone; its removal will follow.
            return;
        }
        c.permits -= i64::from(h.messages);
        c.unacked += u64::from(h.messages);
        c.msg_out += u64::from(h.messages);
        c.bytes_out += bytes;
        self.msg_out += u64::from(h.messages);
        self.bytes_out += bytes;
        if self.sub_type == SubType::KeyShared {
            self.slots.delivered(h.slot, consumer);
        }
        self.pending.insert(
            p,
            InFlight {
                consumer,
                slot: h.slot,
                messages: h.messages,
            },
        );
    }

    // ---- commands --------------------------------------------------------

    async fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::AddConsumer(spec, reply) => {
                let _ = reply.send(self.add_consumer(spec));
            }
            Cmd::RemoveConsumer(key, reply) => {
                self.remove_consumer(key);
                // A consumer that leaves cleanly has its acks on disk before
                // it hears back (they would otherwise be persisted within
                // the cursor's persist interval).
                self.flush_cursor().await;
                let _ = reply.send(());
            }
            Cmd::Flow(key, n) => {
                if let Some(c) = self.consumers.iter_mut().find(|c| c.spec.key == key) {
                    c.permits += i64::from(n);
                }
            }
            Cmd::Ack(req, reply) => {
                let durable = req.durable;
                let mut r = self.ack(req);
                if durable && r.is_ok() {
                    if let SubCursor::Durable(c) = &self.cursor {
                        r = c.flush().await.map_err(BrokerError::from);
                    }
                }
                let _ = reply.send(r);
            }
            Cmd::Redeliver {
                consumer,
                positions,
                epoch,
            } => {
                if let Some(e) = epoch {
                    if let Some(c) = self.consumers.iter_mut().find(|c| c.spec.key == consumer) {
                        c.spec.epoch = c.spec.epoch.max(e);
                    }
                }
                self.redeliver(consumer, positions);
            }
            Cmd::Seek(target, reply) => {
                let r = self.seek(target).await;
                let _ = reply.send(r);
            }
            Cmd::Stats(reply) => {
                let _ = reply.send(self.stats());
            }
            Cmd::Close(reply) => {
                self.stopped = true;
                let _ = reply.send(());
            }
            Cmd::Unsubscribe(requester, reply) => {
                let others = self.consumers.iter().any(|c| Some(c.spec.key) != requester);
                if others {
                    let _ = reply.send(Err(BrokerError::Precondition(format!(
                        "subscription {} has active consumers",
                        self.name
                    ))));
                    return;
                }
                let r = match &self.cursor {
                    SubCursor::Durable(c) => self
                        .ml
                        .delete_cursor(c.name())
                        .await
                        .map_err(BrokerError::from),
                    SubCursor::NonDurable { .. } => Ok(()),
                };
                if r.is_ok() {
                    self.consumers.retain(|c| Some(c.spec.key) != requester);
                    self.stopped = true;
                }
                let _ = reply.send(r);
            }
            Cmd::Expire(age, reply) => {
                let _ = reply.send(self.expire(age).await);
            }
            Cmd::Skip(n, reply) => {
                let _ = reply.send(self.skip(n).await);
            }
        }
    }

    async fn flush_cursor(&self) {
        if let SubCursor::Durable(c) = &self.cursor {
            if let Err(e) = c.flush().await {
                tracing::warn!(subscription = %self.name, error = %e, "persisting the cursor");
            }
        }
    }

    fn add_consumer(&mut self, spec: ConsumerSpec) -> Result<()> {
        if !self.consumers.is_empty() {
            if spec.sub_type != self.sub_type {
                return Err(BrokerError::ConsumerBusy(format!(
                    "subscription {} is of type {:?}, not {:?}",
                    self.name, self.sub_type, spec.sub_type
                )));
            }
            if self.sub_type == SubType::Exclusive {
                return Err(BrokerError::ConsumerBusy(format!(
                    "exclusive consumer is already connected to subscription {}",
                    self.name
                )));
            }
        }
        if self.consumers.iter().any(|c| c.spec.key == spec.key) {
            return Err(BrokerError::ConsumerBusy(
                "consumer id already in use".into(),
            ));
        }
        if self.sub_type != spec.sub_type {
            // A subscription without consumers takes the type of the next one.
            self.sub_type = spec.sub_type;
            self.slots.clear();
        }
        self.consumers.push(ConsumerState {
            spec,
            permits: 0,
            unacked: 0,
            msg_out: 0,
            bytes_out: 0,
            since: now_rfc3339(),
            told_end: false,
        });
        self.elect_active();
        Ok(())
    }

    fn remove_consumer(&mut self, key: u64) {
        let Some(i) = self.consumers.iter().position(|c| c.spec.key == key) else {
            return;
        };
        self.consumers.remove(i);
        // Its unacked messages go to the others, counted as redelivered.
        let taken: Vec<Position> = self
            .pending
            .iter()
            .filter(|(_, f)| f.consumer == key)
            .map(|(p, _)| *p)
            .collect();
        self.take_back(&taken);
        self.slots.remove_consumer(key);
        self.elect_active();
    }

    /// Failover/Exclusive: picks the consumer that receives; tells every
    /// consumer whether it is the one (Failover).
    fn elect_active(&mut self) {
        if !matches!(self.sub_type, SubType::Exclusive | SubType::Failover) {
            self.active = None;
            return;
        }
        let mut order: Vec<&ConsumerState> = self.consumers.iter().collect();
        order.sort_by(|a, b| {
            (a.spec.priority, &a.spec.name, a.spec.key).cmp(&(
                b.spec.priority,
                &b.spec.name,
                b.spec.key,
            ))
        });
        let chosen = if order.is_empty() {
            None
        } else {
            let top = order[0].spec.priority;
            let same: Vec<&&ConsumerState> =
                order.iter().filter(|c| c.spec.priority == top).collect();
            let idx = if order[0].spec.partition >= 0 {
                order[0].spec.partition as usize % same.len()
            } else {
                0
            };
            Some(same[idx].spec.key)
        };
        if chosen != self.active {
            let old = self.active;
            self.active = chosen;
            // What the old active consumer had in flight goes to the new one.
            if let Some(old) = old {
                let taken: Vec<Position> = self
                    .pending
                    .iter()
                    .filter(|(_, f)| f.consumer == old)
                    .map(|(p, _)| *p)
                    .collect();
                for p in &taken {
                    if let Some(f) = self.pending.remove(p) {
                        self.replay.insert(*p);
                        if let Some(c) =
                            self.consumers.iter_mut().find(|c| c.spec.key == f.consumer)
                        {
                            c.unacked = c.unacked.saturating_sub(u64::from(f.messages));
                        }
                    }
                }
            }
        }
        if self.sub_type == SubType::Failover {
            for c in &self.consumers {
                c.spec.out.send(pb::CommandActiveConsumerChange {
                    consumer_id: c.spec.consumer_id,
                    is_active: Some(Some(c.spec.key) == self.active),
                });
            }
        }
    }

    /// Takes in-flight messages back for redelivery.
    fn take_back(&mut self, positions: &[Position]) {
        for p in positions {
            if let Some(f) = self.pending.remove(p) {
                if self.sub_type == SubType::KeyShared {
                    self.slots.settled(f.slot);
                }
                if let Some(c) = self.consumers.iter_mut().find(|c| c.spec.key == f.consumer) {
                    c.unacked = c.unacked.saturating_sub(u64::from(f.messages));
                }
                *self.redeliveries.entry(*p).or_insert(0) += 1;
                self.replay.insert(*p);
            }
        }
    }

    fn redeliver(&mut self, consumer: u64, positions: Option<Vec<Position>>) {
        let taken: Vec<Position> = match positions {
            Some(ps) => ps
                .into_iter()
                .filter(|p| self.pending.get(p).is_some_and(|f| f.consumer == consumer))
                .collect(),
            None => self
                .pending
                .iter()
                .filter(|(_, f)| f.consumer == consumer)
                .map(|(p, _)| *p)
                .collect(),
        };
        self.take_back(&taken);
    }

    fn settle(&mut self, p: Position) {
        if let Some(f) = self.pending.remove(&p) {
            if self.sub_type == SubType::KeyShared {
                self.slots.settled(f.slot);
            }
            if let Some(c) = self.consumers.iter_mut().find(|c| c.spec.key == f.consumer) {
                c.unacked = c.unacked.saturating_sub(u64::from(f.messages));
            }
        }
        self.redeliveries.remove(&p);
        self.replay.remove(&p);
    }

    /// Settles every in-flight message at or before `through` (a cumulative
    /// ack or an expiry moved the mark-delete position there).
    fn settle_through(&mut self, through: Position) {
        let done: Vec<Position> = self
            .pending
            .keys()
            .filter(|q| **q <= through)
            .copied()
            .collect();
        for q in done {
            self.settle(q);
        }
    }

    fn ack(&mut self, req: AckRequest) -> Result<()> {
        let SubCursor::Durable(cursor) = &self.cursor else {
            // Readers' acks change nothing on the broker.
            for (p, _) in &req.ids {
                self.settle(*p);
            }
            return Ok(());
        };
        let cursor = cursor.clone();
        match req.kind {
            AckKind::Individual => {
                let mut whole = Vec::new();
                for (p, batch) in &req.ids {
                    match batch {
                        Some((size, unacked)) if !unacked.is_empty() && *size > 0 => {
                            let acked: Vec<u32> =
                                (0..*size).filter(|i| !bit_set(unacked, *i)).collect();
                            cursor.ack_batch_indexes(*p, *size, &acked)?;
                            if cursor.is_acked(*p) {
                                self.settle(*p);
                            }
                        }
                        _ => whole.push(*p),
                    }
                }
                cursor.ack(&whole)?;
                for p in whole {
                    self.settle(p);
                }
            }
            AckKind::Cumulative => {
                let Some((p, batch)) = req.ids.first() else {
                    return Ok(());
                };
                let through = match batch {
                    // A partly acked batch: everything before it, and its acked part.
                    Some((size, unacked)) if !unacked.is_empty() && *size > 0 => {
                        let acked: Vec<u32> =
                            (0..*size).filter(|i| !bit_set(unacked, *i)).collect();
                        let before = self.ml.ledger_list().previous(*p);
                        cursor.ack_cumulative(before)?;
                        cursor.ack_batch_indexes(*p, *size, &acked)?;
                        before
                    }
                    _ => {
                        cursor.ack_cumulative(*p)?;
                        *p
                    }
                };
                self.settle_through(through);
            }
        }
        Ok(())
    }

    async fn seek(&mut self, target: SeekTarget) -> Result<()> {
        let list = self.ml.ledger_list();
        let first = list.next_valid(list.before_first());
        let next_after_last = list.next_valid(list.last_confirmed());
        let to = match target {
            SeekTarget::Earliest => first,
            SeekTarget::Latest => next_after_last,
            SeekTarget::Position(p) => p.max(first),
            SeekTarget::PublishTime(t) => match self.ml.find_by_publish_time(t).await? {
                Some(p) => p,
                None => next_after_last,
            },
        };
        match &mut self.cursor {
            SubCursor::Durable(c) => c.reset(to)?,
            SubCursor::NonDurable { after } => *after = list.previous(to),
        }
        self.generation += 1;
        self.held.clear();
        self.replay.clear();
        self.pending.clear();
        self.redeliveries.clear();
        self.delayed.clear();
        self.slots.clear();
        // Clients drop what they hold and resubscribe from the new position.
        for c in self.consumers.drain(..) {
            c.spec.out.send(pb::CommandCloseConsumer {
                consumer_id: c.spec.consumer_id,
                request_id: 0,
                ..Default::default()
            });
        }
        self.active = None;
        Ok(())
    }

    async fn expire(&mut self, age_seconds: u64) -> Result<()> {
        let SubCursor::Durable(c) = &self.cursor else {
            return Ok(());
        };
        let cutoff = now_ms().saturating_sub(age_seconds.saturating_mul(1000));
        let through = match self.ml.find_by_publish_time(cutoff).await? {
            Some(p) => self.ml.ledger_list().previous(p),
            None => self.ml.last_confirmed(),
        };
        c.ack_cumulative(through)?;
        self.settle_through(through);
        Ok(())
    }

    async fn skip(&mut self, n: u64) -> Result<u64> {
        let SubCursor::Durable(c) = &self.cursor else {
            return Err(BrokerError::NotAllowed(format!(
                "{} is a reader: it has no backlog to skip",
                self.name
            )));
        };
        let skipped = c.skip(n)?;
        c.flush().await?;
        for p in &skipped {
            self.settle(*p);
        }
        Ok(skipped.len() as u64)
    }

    fn stats(&self) -> SubscriptionStats {
        let (backlog, size) = match &self.cursor {
            SubCursor::Durable(c) => c.backlog(),
            SubCursor::NonDurable { after } => {
                let list = self.ml.ledger_list();
                list.span(*after, list.last_confirmed())
            }
        };
        SubscriptionStats {
            r#type: match self.sub_type {
                SubType::Exclusive => "Exclusive",
                SubType::Shared => "Shared",
                SubType::Failover => "Failover",
                SubType::KeyShared => "Key_Shared",
            }
            .into(),
            msg_backlog: backlog,
            backlog_size: size,
            unacked_messages: self.consumers.iter().map(|c| c.unacked).sum(),
            msg_out_counter: self.msg_out,
            bytes_out_counter: self.bytes_out,
            msg_delayed: self.delayed.len() as u64,
            is_durable: matches!(self.cursor, SubCursor::Durable(_)),
            consumers: self
                .consumers
                .iter()
                .map(|c| ConsumerStats {
                    consumer_name: c.spec.name.clone(),
                    available_permits: c.permits,
                    unacked_messages: c.unacked,
                    msg_out_counter: c.msg_out,
                    bytes_out_counter: c.bytes_out,
                    connected_since: c.since.clone(),
                })
                .collect(),
        }
    }
}

/// Where a new durable cursor starts, from SUBSCRIBE's initial position.
pub fn initial_position(latest: bool) -> InitialPosition {
    if latest {
        InitialPosition::Latest
    } else {
        InitialPosition::Earliest
    }
}

pub fn message_id(p: Position, batch_index: i32) -> pb::MessageIdData {
    pb::MessageIdData {
        ledger_id: p.ledger_id,
        entry_id: p.entry_id as u64,
        batch_index: (batch_index >= 0).then_some(batch_index),
        ..Default::default()
    }
}

fn bit_set(words: &[i64], i: u32) -> bool {
    words
        .get((i / 64) as usize)
        .is_some_and(|w| (*w as u64) & (1u64 << (i % 64)) != 0)
}

/// The bitset Pulsar sends with a partly acked batch: set bits are the
/// messages still to be delivered.
fn unacked_bits(acked: &[u64], size: u32) -> Vec<i64> {
    (0..size.div_ceil(64))
        .map(|w| {
            let valid = if (w + 1) * 64 <= size {
                u64::MAX
            } else {
                (1u64 << (size % 64)) - 1
            };
            (!acked.get(w as usize).copied().unwrap_or(0) & valid) as i64
        })
        .collect()
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn now_rfc3339() -> String {
    rfc3339(now_ms())
}

/// `2026-11-25T05:59:33.123Z` for a Unix time in milliseconds.
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_764_049_173_123), "2025-11-25T05:39:33.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn unacked_bits_complement_acked_within_the_batch() {
        assert_eq!(unacked_bits(&[0b101], 4), vec![0b1010]);
        assert_eq!(unacked_bits(&[], 3), vec![0b111]);
        let full = unacked_bits(&[0, 1], 65);
        assert_eq!(full, vec![-1, 0]);
        assert!(bit_set(&[0b10], 1));
        assert!(!bit_set(&[0b10], 0));
        assert!(!bit_set(&[], 70));
    }
}

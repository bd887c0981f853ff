//! Consumers and readers.
//!
//! Flow control follows Pulsar: the consumer grants `receiver_queue` permits
//! at subscribe and grants more each time the application has taken half of
//! them, so the broker never sends more than the queue holds. Batches are
//! split here; a batch entry is acknowledged once all its messages are.
//!
//! When the broker closes the consumer, `receive` subscribes again wherever
//! the topic went: what was queued and not yet returned is dropped (the
//! broker delivers it again, it was not acknowledged); a reader goes on
//! after the last message it returned.

use std::collections::{HashMap, VecDeque};

use magnetar_wire::{batch, pb, Payload};
use tokio::sync::mpsc;

use crate::connection::{Connection, ConsumerEvent};
use crate::error::{ClientError, Result};
use crate::message::{from_key_values, Message, MessageId};
use crate::reconnect::{retryable, Backoff};
use crate::{unexpected, Client};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubscriptionType {
    Exclusive,
    Shared,
    Failover,
    KeyShared,
}

impl SubscriptionType {
    fn to_wire(self) -> pb::command_subscribe::SubType {
        use pb::command_subscribe::SubType;
        match self {
            SubscriptionType::Exclusive => SubType::Exclusive,
            SubscriptionType::Shared => SubType::Shared,
            SubscriptionType::Failover => SubType::Failover,
            SubscriptionType::KeyShared => SubType::KeyShared,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitialPosition {
    Earliest,
    Latest,
}

#[derive(Clone, Debug)]
pub struct ConsumerOptions {
    pub subscription_type: SubscriptionType,
    pub initial_position: InitialPosition,
    pub name: Option<String>,
    /// Messages the broker may push ahead of `receive`.
    pub receiver_queue: u32,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        ConsumerOptions {
            subscription_type: SubscriptionType::Exclusive,
            initial_position: InitialPosition::Latest,
            name: None,
            receiver_queue: 1000,
        }
    }
}

pub struct Consumer {
    client: Client,
    opts: ConsumerOptions,
    /// A reader's start, as given to the broker (`None`: a durable subscription).
    reader_start: Option<MessageId>,
    /// The last message `receive` returned (a reader re-attaches after it).
    last_returned: Option<MessageId>,
    conn: Connection,
    consumer_id: u64,
    topic: String,
    subscription: String,
    events: mpsc::UnboundedReceiver<ConsumerEvent>,
    queue: VecDeque<Message>,
    receiver_queue: u32,
    /// Messages taken by the application since the last FLOW.
    taken: u32,
    /// Per batch entry (with more than one message): (unacked left, size).
    batches: HashMap<MessageId, (u32, u32)>,
    /// Readers: the start id and whether it is inclusive; messages before
    /// it are skipped.
    start: Option<(MessageId, bool)>,
    closed: bool,
    /// The broker said the topic is terminated and all of it was sent.
    end_of_topic: bool,
}

impl Consumer {
    pub(crate) async fn subscribe(
        client: Client,
        topic: &str,
        subscription: &str,
        opts: ConsumerOptions,
        start: Option<MessageId>,
    ) -> Result<Consumer> {
        let receiver_queue = opts.receiver_queue.max(1);
        let conn = client.connection_for(topic).await?;
        let (consumer_id, events) = attach(&conn, topic, subscription, &opts, start).await?;
        let consumer = Consumer {
            client,
            opts,
            reader_start: start,
            last_returned: None,
            conn,
            consumer_id,
            topic: topic.to_string(),
            subscription: subscription.to_string(),
            events,
            queue: VecDeque::new(),
            receiver_queue,
            taken: 0,
            batches: HashMap::new(),
            start: None,
            closed: false,
            end_of_topic: false,
        };
        consumer.flow(receiver_queue)?;
        Ok(consumer)
    }

    /// Subscribes again wherever the topic is now.
    async fn reattach(&mut self) -> Result<()> {
        self.queue.clear();
        self.batches.clear();
        self.taken = 0;
        let start = match (self.reader_start, self.last_returned) {
            (Some(_), Some(last)) => {
                self.start = Some((last, false));
                Some(last)
            }
            (start, _) => start,
        };
        let deadline = tokio::time::Instant::now() + self.client.cfg.reconnect_timeout;
        let mut backoff = Backoff::until(deadline);
        loop {
            let attempt = async {
                let conn = self.client.connection_for(&self.topic).await?;
                let (id, events) =
                    attach(&conn, &self.topic, &self.subscription, &self.opts, start).await?;
                Ok::<_, ClientError>((conn, id, events))
            }
            .await;
            match attempt {
                Ok((conn, consumer_id, events)) => {
                    self.conn = conn;
                    self.consumer_id = consumer_id;
                    self.events = events;
                    tracing::debug!(topic = %self.topic, subscription = %self.subscription, "consumer attached again");
                    return self.flow(self.receiver_queue);
                }
                Err(e) if !retryable(&e) => return Err(e),
                Err(e) => {
                    tracing::debug!(topic = %self.topic, error = %e, "re-attaching consumer");
                    if !backoff.wait().await {
                        return Err(e);
                    }
                }
            }
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn subscription(&self) -> &str {
        &self.subscription
    }

    /// Whether the topic was terminated and everything in it was received
    /// (`receive` then fails with [`ClientError::EndOfTopic`]).
    pub fn has_reached_end_of_topic(&self) -> bool {
        self.end_of_topic && self.queue.is_empty()
    }

    fn flow(&self, permits: u32) -> Result<()> {
        self.conn.send(magnetar_wire::Frame::new(pb::CommandFlow {
            consumer_id: self.consumer_id,
            message_permits: permits,
        }))
    }

    /// The next message, waiting for one.
    pub async fn receive(&mut self) -> Result<Message> {
        loop {
            if let Some(m) = self.queue.pop_front() {
                self.taken += 1;
                if self.taken >= self.receiver_queue.div_ceil(2) {
                    // A lost connection shows up as Closed on the next wait.
                    let _ = self.flow(self.taken);
                    self.taken = 0;
                }
                self.last_returned = Some(m.id);
                return Ok(m);
            }
            if self.end_of_topic {
                return Err(ClientError::EndOfTopic);
            }
            if self.closed {
                return Err(ClientError::Disconnected);
            }
            match self.events.recv().await {
                // Messages come before it on the same connection: all are queued.
                Some(ConsumerEvent::EndOfTopic) => self.end_of_topic = true,
                Some(ConsumerEvent::Message(m)) => {
                    let (cmd, payload) = *m;
                    self.unpack(cmd, payload)?
                }
                Some(ConsumerEvent::Closed) | None => {
                    if let Err(e) = self.reattach().await {
                        self.closed = true;
                        return Err(e);
                    }
                }
            }
        }
    }

    /// Like `receive`, but gives up after `timeout` (`Ok(None)`).
    pub async fn receive_timeout(
        &mut self,
        timeout: std::time::Duration,
    ) -> Result<Option<Message>> {
        match tokio::time::timeout(timeout, self.receive()).await {
            Ok(r) => r.map(Some),
            Err(_) => Ok(None),
        }
    }

    /// Splits an entry into messages and queues them.
    fn unpack(&mut self, cmd: pb::CommandMessage, payload: Payload) -> Result<()> {
        let entry = MessageId::from_wire(&cmd.message_id);
        let md = &payload.metadata;
        let redelivery_count = cmd.redelivery_count.unwrap_or(0);
        let messages = batch::messages_of(&payload)?;
        let batched = md.num_messages_in_batch.is_some();
        let size = messages.len() as u32;
        // Bits set in ack_set are messages still to deliver (batch index acks).
        let pending = |i: usize| {
            cmd.ack_set.is_empty()
                || cmd
                    .ack_set
                    .get(i / 64)
                    .is_some_and(|w| (*w as u64) & (1u64 << (i % 64)) != 0)
        };
        let mut queued = 0;
        for (i, m) in messages.into_iter().enumerate() {
            let id = MessageId {
                batch_index: if batched { i as i32 } else { -1 },
                ..entry
            };
            if !pending(i) {
                continue;
            }
            if self
                .start
                .is_some_and(|(start, inclusive)| before_start(id, start, inclusive))
            {
                continue;
            }
            let sm = m.metadata;
            self.queue.push_back(Message {
                id,
                payload: m.payload,
                key: sm
                    .partition_key
                    .clone()
                    .or_else(|| md.partition_key.clone()),
                properties: if batched {
                    from_key_values(&sm.properties)
                } else {
                    from_key_values(&md.properties)
                },
                producer_name: md.producer_name.clone(),
                sequence_id: sm.sequence_id.unwrap_or(md.sequence_id),
                publish_time: md.publish_time,
                event_time: sm.event_time.or(md.event_time),
                redelivery_count,
            });
            queued += 1;
        }
        if batched && size > 1 && queued > 0 {
            self.batches.insert(entry.entry(), (queued, size));
        }
        // Skipped messages used permits too; give them back.
        let skipped = size - queued;
        if skipped > 0 {
            self.taken += skipped;
        }
        Ok(())
    }

    /// Acknowledges one message (its batch entry once all of it is acked).
    pub fn ack(&mut self, id: &MessageId) -> Result<()> {
        let entry = id.entry();
        if let Some((left, _)) = self.batches.get_mut(&entry) {
            *left -= 1;
            if *left > 0 {
                return Ok(());
            }
            self.batches.remove(&entry);
        }
        self.send_ack(pb::command_ack::AckType::Individual, entry)
    }

    /// Acknowledges everything up to and including `id`.
    pub fn ack_cumulative(&mut self, id: &MessageId) -> Result<()> {
        let entry = id.entry();
        let inside_batch = self
            .batches
            .get(&entry)
            .is_some_and(|&(_, size)| id.batch_index >= 0 && (id.batch_index as u32) + 1 < size);
        let through = if inside_batch {
            // The entries before it are done, this one is not yet.
            if entry.entry_id == 0 {
                return Ok(());
            }
            MessageId {
                entry_id: entry.entry_id - 1,
                ..entry
            }
        } else {
            entry
        };
        self.batches.retain(|k, _| *k > through);
        self.send_ack(pb::command_ack::AckType::Cumulative, through)
    }

    fn send_ack(&self, kind: pb::command_ack::AckType, id: MessageId) -> Result<()> {
        self.conn.send(magnetar_wire::Frame::new(pb::CommandAck {
            consumer_id: self.consumer_id,
            ack_type: kind as i32,
            message_id: vec![id.to_wire()],
            ..Default::default()
        }))
    }

    /// Asks for the message (its whole entry) to be delivered again.
    pub fn nack(&mut self, id: &MessageId) -> Result<()> {
        self.batches.remove(&id.entry());
        self.conn.send(magnetar_wire::Frame::new(
            pb::CommandRedeliverUnacknowledgedMessages {
                consumer_id: self.consumer_id,
                message_ids: vec![id.entry().to_wire()],
                ..Default::default()
            },
        ))
    }

    pub async fn close(mut self) -> Result<()> {
        self.closed = true;
        let request_id = self.conn.next_id();
        let r = self
            .conn
            .request(
                request_id,
                pb::CommandCloseConsumer {
                    consumer_id: self.consumer_id,
                    request_id,
                    ..Default::default()
                },
            )
            .await;
        self.conn.unregister_consumer(self.consumer_id);
        r.map(|_| ())
    }
}

/// Reads a topic from a position without a durable subscription.
pub struct Reader {
    consumer: Consumer,
}

impl Reader {
    pub(crate) async fn create(
        client: Client,
        topic: &str,
        start: MessageId,
        inclusive: bool,
    ) -> Result<Reader> {
        let name = format!("reader-{:016x}", reader_suffix());
        let mut consumer = Consumer::subscribe(
            client,
            topic,
            &name,
            ConsumerOptions::default(),
            Some(start),
        )
        .await?;
        // Brokers start at the given entry; what comes before the start (and
        // the start itself unless inclusive) is dropped here, as Pulsar's
        // clients do.
        if start != MessageId::EARLIEST && start != MessageId::LATEST {
            consumer.start = Some((start, inclusive));
        }
        Ok(Reader { consumer })
    }

    pub async fn next(&mut self) -> Result<Message> {
        self.consumer.receive().await
    }

    pub async fn next_timeout(&mut self, timeout: std::time::Duration) -> Result<Option<Message>> {
        self.consumer.receive_timeout(timeout).await
    }

    pub async fn close(self) -> Result<()> {
        self.consumer.close().await
    }
}

/// A process-unique suffix for reader subscription names.
fn reader_suffix() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) ^ (u64::from(std::process::id()) << 32)
}

/// Registers a consumer on `conn` and subscribes; its id and events.
async fn attach(
    conn: &Connection,
    topic: &str,
    subscription: &str,
    opts: &ConsumerOptions,
    start: Option<MessageId>,
) -> Result<(u64, mpsc::UnboundedReceiver<ConsumerEvent>)> {
    let consumer_id = conn.next_id();
    let request_id = conn.next_id();
    let events = conn.register_consumer(consumer_id);
    let initial = match opts.initial_position {
        InitialPosition::Earliest => pb::command_subscribe::InitialPosition::Earliest,
        InitialPosition::Latest => pb::command_subscribe::InitialPosition::Latest,
    };
    let r = conn
        .request(
            request_id,
            pb::CommandSubscribe {
                topic: topic.to_string(),
                subscription: subscription.to_string(),
                sub_type: opts.subscription_type.to_wire() as i32,
                consumer_id,
                request_id,
                consumer_name: opts.name.clone(),
                durable: Some(start.is_none()),
                start_message_id: start.map(MessageId::to_wire),
                initial_position: Some(initial as i32),
                ..Default::default()
            },
        )
        .await;
    match r {
        Ok(reply) if reply.success.is_some() => Ok((consumer_id, events)),
        Ok(reply) => {
            conn.unregister_consumer(consumer_id);
            Err(unexpected("SUBSCRIBE", &reply))
        }
        Err(e) => {
            conn.unregister_consumer(consumer_id);
            Err(e)
        }
    }
}

/// Whether a reader starting at `start` must skip `id`.
fn before_start(id: MessageId, start: MessageId, inclusive: bool) -> bool {
    let (entry, start_entry) = (
        (id.ledger_id, id.entry_id),
        (start.ledger_id, start.entry_id),
    );
    if entry != start_entry {
        return entry < start_entry;
    }
    match (start.batch_index < 0, inclusive) {
        // The whole start entry.
        (true, inclusive) => !inclusive,
        (false, true) => id.batch_index < start.batch_index,
        (false, false) => id.batch_index <= start.batch_index,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(l: u64, e: u64, b: i32) -> MessageId {
        MessageId {
            ledger_id: l,
            entry_id: e,
            batch_index: b,
            partition: -1,
        }
    }

    #[test]
    fn readers_skip_what_lies_before_their_start() {
        assert!(before_start(id(1, 4, -1), id(1, 5, -1), true));
        assert!(!before_start(id(1, 5, -1), id(1, 5, -1), true));
        assert!(before_start(id(1, 5, -1), id(1, 5, -1), false));
        assert!(!before_start(id(1, 6, -1), id(1, 5, -1), false));
        assert!(!before_start(id(2, 0, -1), id(1, 5, -1), false));
        // Inside a batch.
        assert!(before_start(id(1, 5, 2), id(1, 5, 3), true));
        assert!(!before_start(id(1, 5, 3), id(1, 5, 3), true));
        assert!(before_start(id(1, 5, 3), id(1, 5, 3), false));
        assert!(!before_start(id(1, 5, 4), id(1, 5, 3), false));
    }
}

//! SUBSCRIBE and what a consumer does afterwards: FLOW, ACK, REDELIVER,
//! SEEK, UNSUBSCRIBE, CLOSE_CONSUMER and GET_LAST_MESSAGE_ID.

use std::sync::Arc;

use magnetar_common::names::TopicName;
use magnetar_managed_ledger::Position;
use magnetar_wire::{pb, BaseCommand, Payload, ServerError};

use super::{error, position_of, Conn};
use crate::authz::Action;
use crate::error::{BrokerError, Result};
use crate::schema;
use crate::subscription::{
    initial_position, message_id, AckKind, AckRequest, ConsumerSpec, SeekTarget, SubType,
    Subscription,
};
use crate::topic::Topic;
use crate::warm;

pub(super) struct ConsumerSlot {
    topic: Arc<Topic>,
    sub: Subscription,
    key: u64,
    durable: bool,
}

impl Conn {
    pub(super) async fn subscribe(&mut self, c: pb::CommandSubscribe) {
        let (request_id, consumer_id) = (c.request_id, c.consumer_id);
        match self.create_consumer(c).await {
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

    async fn create_consumer(&mut self, c: pb::CommandSubscribe) -> Result<()> {
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
        let durable = c.durable.unwrap_or(true);
        let sub = open_subscription(&topic, &c, durable).await?;
        let key = self.svc.next_id();
        let spec = self.consumer_spec(&c, key, &name);
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

    /// The consumer as its subscription sees it.
    fn consumer_spec(&self, c: &pb::CommandSubscribe, key: u64, name: &TopicName) -> ConsumerSpec {
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
        ConsumerSpec {
            key,
            consumer_id: c.consumer_id,
            name: c
                .consumer_name
                .clone()
                .unwrap_or_else(|| format!("consumer-{key}")),
            priority: c.priority_level.unwrap_or(0),
            sub_type: SubType::from_wire(c.sub_type),
            out: self.out.clone(),
            ranges,
            epoch: c.consumer_epoch.unwrap_or(0),
            partition: name.partition_index().map_or(-1, |i| i as i32),
        }
    }

    pub(super) async fn flow(&self, c: pb::CommandFlow) {
        if let Some(s) = self.consumers.get(&c.consumer_id) {
            s.sub.flow(s.key, c.message_permits).await;
        }
    }

    pub(super) async fn redeliver(&self, c: pb::CommandRedeliverUnacknowledgedMessages) {
        if let Some(s) = self.consumers.get(&c.consumer_id) {
            let positions = (!c.message_ids.is_empty())
                .then(|| c.message_ids.iter().map(position_of).collect());
            s.sub.redeliver(s.key, positions, c.consumer_epoch).await;
        }
    }

    pub(super) async fn ack(&mut self, c: pb::CommandAck) {
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

    pub(super) async fn seek(&mut self, c: pb::CommandSeek) {
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
                self.after_seek(c.consumer_id).await;
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

    /// The subscription disconnected its consumers; the clients resubscribe.
    async fn after_seek(&mut self, consumer_id: u64) {
        let Some(s) = self.consumers.get(&consumer_id) else {
            return;
        };
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

    pub(super) async fn unsubscribe(&mut self, c: pb::CommandUnsubscribe) {
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

    pub(super) async fn close_consumer(&mut self, c: pb::CommandCloseConsumer) {
        self.warming.cancel(warm::Key::Consumer(c.consumer_id));
        if let Some(s) = self.consumers.remove(&c.consumer_id) {
            close_consumer(s).await;
        }
        self.out.send(pb::CommandSuccess {
            request_id: c.request_id,
            schema: None,
        });
    }

    pub(super) async fn last_message_id(&self, c: pb::CommandGetLastMessageId) {
        let Some(s) = self.consumers.get(&c.consumer_id) else {
            self.out.send(error(
                c.request_id,
                &BrokerError::NotFound("consumer not found".into()),
            ));
            return;
        };
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

/// The subscription a SUBSCRIBE names: the durable one (created if new), or
/// a new non-durable reader starting where the client asks.
async fn open_subscription(
    topic: &Topic,
    c: &pb::CommandSubscribe,
    durable: bool,
) -> Result<Subscription> {
    let latest =
        c.initial_position.unwrap_or(0) == pb::command_subscribe::InitialPosition::Latest as i32;
    if durable {
        let sub_type = SubType::from_wire(c.sub_type);
        return topic
            .subscription(&c.subscription, initial_position(latest), sub_type)
            .await;
    }
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
    Ok(topic.reader(&c.subscription, after))
}

pub(super) async fn close_consumer(s: ConsumerSlot) {
    s.sub.remove_consumer(s.key).await;
    if !s.durable {
        s.sub.close().await;
        s.topic.forget_subscription(&s.sub.name);
    }
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

//! Loading a topic off a connection's command loop.
//!
//! A connection handles its commands one at a time, and PRODUCER or
//! SUBSCRIBE for a topic that is not loaded yet waits for the load (the
//! managed ledger's metadata and ledgers, a cursor): tens of milliseconds of
//! round trips. A client that creates thousands of producers over one
//! connection (the clients pool one connection per broker) then had its
//! topics loaded strictly one after another. Such a command is now parked:
//! a task loads the topic (and creates a durable subscription) and hands the
//! command back to the loop, which handles it as before, now without
//! waiting. Other commands are not held up meanwhile.
//!
//! Invariant: a parked command is answered exactly once, by the loop. A
//! CLOSE_PRODUCER or CLOSE_CONSUMER for an id whose command is parked marks
//! it cancelled; it is then answered with an error instead of creating a
//! producer or consumer the client has already given up.

use std::collections::HashMap;

use magnetar_common::names::TopicName;
use magnetar_wire::{pb, BaseCommand, CommandType, Payload};
use tokio::sync::mpsc;

use crate::authz::Action;
use crate::service::BrokerService;
use crate::subscription::{initial_position, SubType};

/// Parked commands that may wait for their loads at once, per connection.
const MAX_PARKED: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    Producer(u64),
    Consumer(u64),
}

/// A parked command whose topic has been loaded (or failed to load: the
/// handler then meets the error itself and answers it).
pub(crate) struct Ready {
    pub cmd: BaseCommand,
    pub payload: Option<Payload>,
}

pub(crate) struct Warming {
    tx: mpsc::Sender<Ready>,
    /// Parked ids → cancelled by a close meanwhile.
    parked: HashMap<Key, bool>,
}

impl Warming {
    pub(crate) fn new() -> (Self, mpsc::Receiver<Ready>) {
        let (tx, rx) = mpsc::channel(MAX_PARKED);
        let parked = HashMap::new();
        (Self { tx, parked }, rx)
    }

    /// Parks `cmd` while a task loads its topic, or gives it back when there
    /// is nothing to wait for (not a PRODUCER/SUBSCRIBE, a bad or loaded
    /// topic, too many parked already).
    pub(crate) fn park(
        &mut self,
        svc: &BrokerService,
        role: Option<String>,
        cmd: BaseCommand,
        payload: Option<Payload>,
    ) -> Option<(BaseCommand, Option<Payload>)> {
        let Some((key, topic)) = key_and_topic(&cmd) else {
            return Some((cmd, payload));
        };
        let name = match TopicName::parse(topic) {
            Ok(n) if svc.loaded(&n).is_none() => n,
            _ => return Some((cmd, payload)),
        };
        if self.parked.len() >= MAX_PARKED || self.parked.contains_key(&key) {
            return Some((cmd, payload));
        }
        self.parked.insert(key, false);
        let (svc, tx) = (svc.clone(), self.tx.clone());
        tokio::spawn(async move {
            load(&svc, role.as_deref(), &name, &cmd).await;
            // The connection may be gone; then so is the answer's addressee.
            let _ = tx.send(Ready { cmd, payload }).await;
        });
        None
    }

    /// A close for `key` arrived: its parked command must not take effect.
    pub(crate) fn cancel(&mut self, key: Key) {
        if let Some(cancelled) = self.parked.get_mut(&key) {
            *cancelled = true;
        }
    }

    /// The parked command is back: true if it was cancelled meanwhile.
    pub(crate) fn unpark(&mut self, cmd: &BaseCommand) -> bool {
        key_and_topic(cmd)
            .and_then(|(key, _)| self.parked.remove(&key))
            .unwrap_or(false)
    }
}

fn key_and_topic(cmd: &BaseCommand) -> Option<(Key, &str)> {
    match cmd.r#type() {
        CommandType::Producer => {
            let c = cmd.producer.as_ref()?;
            Some((Key::Producer(c.producer_id), c.topic.as_str()))
        }
        CommandType::Subscribe => {
            let c = cmd.subscribe.as_ref()?;
            Some((Key::Consumer(c.consumer_id), c.topic.as_str()))
        }
        _ => None,
    }
}

/// Loads the topic (and a durable subscription) the way the handler would,
/// after the same authorization check. Failures are left for the handler,
/// which answers them.
async fn load(svc: &BrokerService, role: Option<&str>, name: &TopicName, cmd: &BaseCommand) {
    if cmd.producer.is_some() {
        if svc.check(role, Action::Produce, name).await.is_ok() {
            let _ = svc.topic(name, true).await;
        }
    } else if let Some(c) = &cmd.subscribe {
        if svc.check(role, Action::Consume, name).await.is_err() || c.subscription.is_empty() {
            return;
        }
        let create = c.force_topic_creation.unwrap_or(true);
        let Ok(topic) = svc.topic(name, create).await else {
            return;
        };
        if c.durable.unwrap_or(true) {
            let latest = c.initial_position.unwrap_or(0)
                == pb::command_subscribe::InitialPosition::Latest as i32;
            let sub_type = SubType::from_wire(c.sub_type);
            let _ = topic
                .subscription(&c.subscription, initial_position(latest), sub_type)
                .await;
        }
    }
}

/// The answer to a parked command whose producer or consumer was closed
/// while its topic loaded.
pub(crate) fn cancelled(cmd: &BaseCommand) -> Option<pb::CommandError> {
    let request_id = match key_and_topic(cmd)? {
        (Key::Producer(_), _) => cmd.producer.as_ref()?.request_id,
        (Key::Consumer(_), _) => cmd.subscribe.as_ref()?.request_id,
    };
    Some(pb::CommandError {
        request_id,
        error: magnetar_wire::ServerError::ServiceNotReady as i32,
        message: "closed by the client while its topic loaded".into(),
    })
}

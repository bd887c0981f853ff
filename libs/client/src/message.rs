//! Message ids and messages as applications see them.

use std::fmt;

use bytes::Bytes;
use magnetar_wire::pb;

/// Where a message is stored: ledger, entry, and its index in a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId {
    pub ledger_id: u64,
    pub entry_id: u64,
    /// -1 for a message that is not part of a batch.
    pub batch_index: i32,
    /// -1 for a non-partitioned topic.
    pub partition: i32,
}

impl MessageId {
    /// Before every message (Pulsar's `MessageId.earliest`).
    pub const EARLIEST: MessageId = MessageId {
        ledger_id: u64::MAX,
        entry_id: u64::MAX,
        batch_index: -1,
        partition: -1,
    };
    /// After the last message (Pulsar's `MessageId.latest`).
    pub const LATEST: MessageId = MessageId {
        ledger_id: i64::MAX as u64,
        entry_id: i64::MAX as u64,
        batch_index: -1,
        partition: -1,
    };

    pub(crate) fn from_wire(id: &pb::MessageIdData) -> MessageId {
        MessageId {
            ledger_id: id.ledger_id,
            entry_id: id.entry_id,
            batch_index: id.batch_index.unwrap_or(-1),
            partition: id.partition.unwrap_or(-1),
        }
    }

    pub(crate) fn to_wire(self) -> pb::MessageIdData {
        pb::MessageIdData {
            ledger_id: self.ledger_id,
            entry_id: self.entry_id,
            partition: (self.partition >= 0).then_some(self.partition),
            batch_index: (self.batch_index >= 0).then_some(self.batch_index),
            ..Default::default()
        }
    }

    /// Pulsar's serialized form (`MessageId.toByteArray()`: a `MessageIdData`
    /// protobuf), e.g. for the WebSocket API's base64 ids.
    pub fn to_bytes(self) -> Vec<u8> {
        use prost::Message as _;
        self.to_wire().encode_to_vec()
    }

    /// Parses the serialized form; `None` if it is not a `MessageIdData`.
    pub fn from_bytes(bytes: &[u8]) -> Option<MessageId> {
        use prost::Message as _;
        pb::MessageIdData::decode(bytes)
            .ok()
            .map(|id| MessageId::from_wire(&id))
    }

    /// The id of the whole entry (batch) this message is in.
    pub(crate) fn entry(self) -> MessageId {
        MessageId {
            batch_index: -1,
            ..self
        }
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}:{}",
            self.ledger_id, self.entry_id, self.partition, self.batch_index
        )
    }
}

/// A message to send.
#[derive(Clone, Debug, Default)]
pub struct OutgoingMessage {
    pub payload: Bytes,
    pub key: Option<String>,
    pub properties: Vec<(String, String)>,
    pub event_time: Option<u64>,
    /// Unix milliseconds at which Shared / Key_Shared consumers may get it.
    pub deliver_at: Option<i64>,
}

impl OutgoingMessage {
    pub fn new(payload: impl Into<Bytes>) -> Self {
        OutgoingMessage {
            payload: payload.into(),
            ..Default::default()
        }
    }

    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    pub fn with_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.push((key.into(), value.into()));
        self
    }
}

/// A received message.
#[derive(Clone, Debug)]
pub struct Message {
    pub id: MessageId,
    pub payload: Bytes,
    pub key: Option<String>,
    pub properties: Vec<(String, String)>,
    pub producer_name: String,
    pub sequence_id: u64,
    pub publish_time: u64,
    pub event_time: Option<u64>,
    pub redelivery_count: u32,
}

impl Message {
    pub fn property(&self, key: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

pub(crate) fn key_values(props: &[(String, String)]) -> Vec<pb::KeyValue> {
    props
        .iter()
        .map(|(key, value)| pb::KeyValue {
            key: key.clone(),
            value: value.clone(),
        })
        .collect()
}

pub(crate) fn from_key_values(kv: &[pb::KeyValue]) -> Vec<(String, String)> {
    kv.iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect()
}

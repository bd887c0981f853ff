//! Pulsar's REST producer: `POST /topics/persistent/{tenant}/{ns}/{topic}`
//! (and `.../partitions/{n}`) with a JSON batch of messages; the answer lists
//! each message's id or error, in order.
//!
//! A message's `payload` is its text (UTF-8), as with Pulsar's default
//! string schema; on a topic with a JSON or AVRO schema it is the record as
//! JSON, checked against the schema (and Avro-encoded for AVRO), and the
//! messages carry the schema's version. Messages are sent through the broker's own client, so any
//! broker accepts them for any topic. Messages for a partitioned topic go to
//! the partition they name, else by a hash of their key, else round-robin.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use futures::future::join_all;
use magnetar_client::{ClientError, ProducerOptions};
use magnetar_common::names::{NamespaceName, TopicName};
use magnetar_wire::ServerError;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{namespace_policies, ok_json, required, ApiError, App, Reply};
use crate::error::BrokerError;
use crate::self_client::MessageOptions;

/// Messages one request may carry.
const MAX_MESSAGES: usize = 10_000;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProducerMessages {
    #[serde(default)]
    producer_name: Option<String>,
    messages: Vec<RestMessage>,
}

#[derive(Deserialize)]
struct RestMessage {
    /// The message's text.
    payload: String,
    #[serde(default)]
    partition: Option<i32>,
    #[serde(flatten)]
    options: MessageOptions,
}

pub(super) async fn produce(
    State(a): State<App>,
    Path((t, n, topic)): Path<(String, String, String)>,
    raw: Bytes,
) -> Reply {
    publish(&a, &t, &n, &topic, None, &raw).await
}

pub(super) async fn produce_partition(
    State(a): State<App>,
    Path((t, n, topic, partition)): Path<(String, String, String, u32)>,
    raw: Bytes,
) -> Reply {
    publish(&a, &t, &n, &topic, Some(partition), &raw).await
}

async fn publish(
    a: &App,
    t: &str,
    n: &str,
    topic: &str,
    partition: Option<u32>,
    raw: &Bytes,
) -> Reply {
    let ns = NamespaceName::new(t, n)?;
    namespace_policies(a, &ns).await?;
    let base = TopicName::new(ns, topic)?;
    let body: ProducerMessages = required(raw)?;
    if body.messages.is_empty() || body.messages.len() > MAX_MESSAGES {
        return Err(ApiError(BrokerError::BadRequest(format!(
            "a request carries 1 to {MAX_MESSAGES} messages, not {}",
            body.messages.len()
        ))));
    }
    let partitions = a
        .svc
        .resources()
        .partitioned(&base)
        .await?
        .map_or(0, |m| m.partitions);
    let target = |i: usize, m: &RestMessage| -> Result<TopicName, ApiError> {
        if partitions == 0 {
            if partition.is_some() || m.partition.is_some_and(|p| p >= 0) {
                return Err(ApiError(BrokerError::BadRequest(format!(
                    "{base} is not a partitioned topic"
                ))));
            }
            return Ok(base.clone());
        }
        let p = match (partition, m.partition.filter(|p| *p >= 0), &m.options.key) {
            (Some(p), _, _) => p,
            (None, Some(p), _) => p as u32,
            (None, None, Some(k)) => crate::key_shared::murmur3_32(k.as_bytes()) % partitions,
            (None, None, None) => i as u32 % partitions,
        };
        if p >= partitions {
            return Err(ApiError(BrokerError::BadRequest(format!(
                "{base} has {partitions} partitions; there is no partition {p}"
            ))));
        }
        Ok(base.partition(p))
    };
    // Messages by the topic they go to, keeping their order and index.
    let mut by_topic: BTreeMap<TopicName, Vec<usize>> = BTreeMap::new();
    for (i, m) in body.messages.iter().enumerate() {
        by_topic.entry(target(i, m)?).or_default().push(i);
    }
    let count = body.messages.len();
    let schema = crate::schema::get(a.svc.resources(), &base, None).await?;
    let mut messages: Vec<magnetar_client::OutgoingMessage> = Vec::with_capacity(count);
    for (i, m) in body.messages.into_iter().enumerate() {
        let payload = match &schema {
            Some((_, s)) => crate::schema::json_payload(s, &m.payload)
                .map_err(|e| ApiError(BrokerError::BadRequest(format!("message {i}: {e}"))))?,
            None => m.payload.into_bytes(),
        };
        messages.push(m.options.into_message(payload.into()));
    }
    let schema_version = schema.as_ref().map_or(0, |(v, _)| *v);
    let wire_schema = schema.as_ref().map(|(_, s)| crate::schema::to_wire(s));
    let client = a.svc.inner.client.get(&a.svc).await.map_err(ApiError)?;
    let mut results: Vec<Value> = vec![Value::Null; count];
    let sends = by_topic.into_iter().map(|(topic, idx)| {
        let client = client.clone();
        let messages = &messages;
        let name = body.producer_name.clone();
        let schema = wire_schema.clone();
        async move {
            let opts = ProducerOptions {
                name,
                schema,
                batching: false,
                ..Default::default()
            };
            let producer = client
                .create_producer(&topic.to_string(), opts)
                .await
                .map_err(refused)?;
            let mut receipts = Vec::with_capacity(idx.len());
            for &i in &idx {
                receipts.push((i, producer.send_async(messages[i].clone()).await));
            }
            let mut out = Vec::with_capacity(idx.len());
            for (i, r) in receipts {
                let r = match r {
                    Ok(receipt) => receipt.await,
                    Err(e) => Err(e),
                };
                out.push((i, r));
            }
            let _ = producer.close().await;
            Ok::<_, ApiError>(out)
        }
    });
    for r in join_all(sends).await {
        for (i, sent) in r? {
            results[i] = match sent {
                Ok(id) => json!({
                    "messageId": id.to_string(),
                    "errorCode": 0,
                    "schemaVersion": schema_version,
                }),
                Err(e) => json!({
                    "messageId": "",
                    "errorCode": e.server_error().map_or(-1, |c| c as i32),
                    "error": e.to_string(),
                    "schemaVersion": schema_version,
                }),
            };
        }
    }
    ok_json(json!({"messagePublishResults": results, "schemaVersion": schema_version}))
}

/// A producer the broker would not create, as an HTTP error.
fn refused(e: ClientError) -> ApiError {
    ApiError(match e.server_error() {
        Some(ServerError::TopicNotFound) => BrokerError::NotFound(e.to_string()),
        Some(ServerError::NotAllowedError) | Some(ServerError::ProducerBusy) => {
            BrokerError::Conflict(e.to_string())
        }
        Some(ServerError::InvalidTopicName) => BrokerError::BadRequest(e.to_string()),
        Some(ServerError::IncompatibleSchema) => BrokerError::Conflict(e.to_string()),
        Some(ServerError::ProducerBlockedQuotaExceededError) => {
            BrokerError::QuotaExceededHold(e.to_string())
        }
        Some(ServerError::ProducerBlockedQuotaExceededException) => {
            BrokerError::QuotaExceededException(e.to_string())
        }
        _ => BrokerError::ServiceNotReady(e.to_string()),
    })
}

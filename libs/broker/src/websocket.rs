//! Pulsar's WebSocket API: producers, consumers and readers speaking JSON
//! over a WebSocket on the broker's HTTP port.
//!
//! - `/ws/v2/producer/persistent/{tenant}/{ns}/{topic}`
//! - `/ws/v2/consumer/persistent/{tenant}/{ns}/{topic}/{subscription}`
//! - `/ws/v2/reader/persistent/{tenant}/{ns}/{topic}`
//!
//! As in Pulsar, a session is a client of the binary protocol: each one is
//! a producer, consumer or reader of our own Rust client on a connection to
//! this broker, which follows lookups to whichever broker owns the topic.
//! So the WebSocket API works on every broker of a cluster and gets every
//! guarantee of the binary protocol. Message ids are Pulsar's: the base64 of
//! the `MessageIdData` protobuf.
//!
//! A frame that cannot be understood gets an error reply; the socket stays
//! open. On a topic with a JSON or AVRO schema a producer's payload (base64
//! as always) is the record as JSON text, checked against the schema and
//! Avro-encoded for AVRO; the session's producer registers the schema. Backpressure: a consumer session writes to the socket before it
//! takes the next message, so a slow WebSocket client holds back only its
//! own subscription (through the receiver queue and permits).

use std::time::Duration;

use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use magnetar_client::{
    ConsumerOptions, InitialPosition, Message, MessageId, OutgoingMessage, ProducerOptions,
    SubscriptionType,
};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::self_client::MessageOptions;
use crate::service::BrokerService;

/// A socket write that takes longer than this ends the session.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

fn topic_name(t: &str, n: &str, topic: &str) -> String {
    format!("persistent://{t}/{n}/{topic}")
}

pub fn encode_id(id: MessageId) -> String {
    B64.encode(id.to_bytes())
}

pub fn decode_id(s: &str) -> Option<MessageId> {
    B64.decode(s).ok().and_then(|b| MessageId::from_bytes(&b))
}

async fn send_text(ws: &mut futures::stream::SplitSink<WebSocket, WsMessage>, v: Value) -> bool {
    let sent = tokio::time::timeout(
        WRITE_TIMEOUT,
        ws.send(WsMessage::Text(v.to_string().into())),
    );
    matches!(sent.await, Ok(Ok(())))
}

/// Ends a session that could not start, saying why.
/// Why a session is refused or a frame of it is answered with an error; the
/// text goes to the client (as the close reason or `errorMsg`).
#[derive(Debug, thiserror::Error)]
enum WsError {
    #[error("invalid message: {0}")]
    InvalidMessage(#[source] serde_json::Error),
    #[error("payload is not base64: {0}")]
    NotBase64(#[source] base64::DecodeError),
    #[error("the payload is not UTF-8 JSON")]
    NotUtf8Json,
    /// Not a record of the topic's schema, or the schema could not be read.
    #[error("{0}")]
    Schema(#[source] Box<crate::error::BrokerError>),
    #[error("cannot read the topic's schema: {0}")]
    ReadSchema(#[source] Box<crate::error::BrokerError>),
    #[error("{0}")]
    TopicName(#[source] magnetar_common::names::NameError),
    #[error("unknown subscriptionType {0:?}")]
    SubscriptionType(String),
    #[error("unknown subscriptionInitialPosition {0:?}")]
    InitialPosition(String),
    #[error("invalid messageId {0:?}")]
    MessageId(String),
    #[error("invalid command: {0}")]
    InvalidCommand(#[source] serde_json::Error),
    #[error("a valid base64 messageId is required")]
    NeedMessageId,
    #[error("unknown command type {0:?}")]
    UnknownCommand(String),
    #[error("{0}")]
    SelfClient(#[source] Box<crate::error::BrokerError>),
    #[error("cannot create producer: {0}")]
    CreateProducer(#[source] magnetar_client::ClientError),
    #[error("cannot subscribe: {0}")]
    Subscribe(#[source] magnetar_client::ClientError),
    #[error("cannot create reader: {0}")]
    CreateReader(#[source] magnetar_client::ClientError),
    #[error("{0}")]
    Client(#[source] magnetar_client::ClientError),
}

async fn refuse(mut ws: WebSocket, why: WsError) {
    let why = why.to_string();
    tracing::info!(reason = %why, "WebSocket session refused");
    let frame = axum::extract::ws::CloseFrame {
        code: 1011,
        reason: why.chars().take(120).collect::<String>().into(),
    };
    let _ = ws.send(WsMessage::Close(Some(frame))).await;
}

// ---- producer ------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct ProducerParams {
    producer_name: Option<String>,
    batching_enabled: Option<bool>,
    max_pending_messages: Option<usize>,
}

/// One message a WebSocket producer sends (Pulsar's field names).
#[derive(Deserialize)]
struct ProducerMessage {
    /// Base64.
    payload: String,
    #[serde(default)]
    context: Option<String>,
    #[serde(flatten)]
    options: MessageOptions,
}

fn parse_producer_message(
    text: &str,
    schema: Option<&crate::resources::SchemaVersion>,
) -> Result<(Option<String>, OutgoingMessage), (Option<String>, WsError)> {
    // The context is echoed even when the rest is wrong, if it can be found.
    let context = serde_json::from_str::<Value>(text).ok().and_then(|v| {
        v.get("context")
            .and_then(|c| c.as_str().map(str::to_string))
    });
    let m: ProducerMessage =
        serde_json::from_str(text).map_err(|e| (context.clone(), WsError::InvalidMessage(e)))?;
    let payload = B64
        .decode(m.payload.as_bytes())
        .map_err(|e| (context.clone(), WsError::NotBase64(e)))?;
    let payload = match schema {
        Some(s) => {
            let text =
                String::from_utf8(payload).map_err(|_| (context.clone(), WsError::NotUtf8Json))?;
            crate::schema::json_payload(s, &text)
                .map_err(|e| (context.clone(), WsError::Schema(Box::new(e))))?
        }
        None => payload,
    };
    Ok((m.context, m.options.into_message(payload.into())))
}

pub async fn producer(
    State(svc): State<BrokerService>,
    Path((t, n, topic)): Path<(String, String, String)>,
    Query(q): Query<ProducerParams>,
    ws: WebSocketUpgrade,
) -> Response {
    ws.on_upgrade(move |socket| produce_session(svc, topic_name(&t, &n, &topic), q, socket))
}

async fn produce_session(svc: BrokerService, topic: String, q: ProducerParams, socket: WebSocket) {
    let client = match svc.inner.client.get(&svc).await {
        Ok(c) => c,
        Err(e) => return refuse(socket, WsError::SelfClient(Box::new(e))).await,
    };
    let schema = match magnetar_common::names::TopicName::parse(&topic) {
        Ok(t) => match crate::schema::get(svc.resources(), &t, None).await {
            Ok(s) => s.map(|(_, s)| s),
            Err(e) => return refuse(socket, WsError::ReadSchema(Box::new(e))).await,
        },
        Err(e) => return refuse(socket, WsError::TopicName(e)).await,
    };
    let opts = ProducerOptions {
        schema: schema.as_ref().map(crate::schema::to_wire),
        name: q.producer_name,
        batching: q.batching_enabled.unwrap_or(false),
        max_pending: q.max_pending_messages.unwrap_or(1000).clamp(1, 10_000),
        ..Default::default()
    };
    let producer = match client.create_producer(&topic, opts).await {
        Ok(p) => p,
        Err(e) => return refuse(socket, WsError::CreateProducer(e)).await,
    };
    let (mut sink, mut stream) = socket.split();
    // Answers in the order messages came, each once its receipt is in.
    type Pending = std::pin::Pin<Box<dyn std::future::Future<Output = Value> + Send>>;
    let (tx, mut rx) = mpsc::channel::<Pending>(1024);
    let writer = tokio::spawn(async move {
        while let Some(answer) = rx.recv().await {
            if !send_text(&mut sink, answer.await).await {
                break;
            }
        }
        let _ = sink.close().await;
    });
    while let Some(frame) = stream.next().await {
        let text = match frame {
            Ok(WsMessage::Text(t)) => t.to_string(),
            Ok(WsMessage::Binary(b)) => String::from_utf8_lossy(&b).into_owned(),
            Ok(WsMessage::Close(_)) | Err(_) => break,
            Ok(_) => continue, // pings are answered by the socket itself
        };
        let answer: Pending = match parse_producer_message(&text, schema.as_ref()) {
            Err((context, why)) => Box::pin(async move {
                json!({"result": "send-error:1", "errorMsg": why.to_string(), "context": context})
            }),
            Ok((context, msg)) => match producer.send_async(msg).await {
                Err(e) => {
                    let why = e.to_string();
                    Box::pin(async move {
                        json!({"result": "send-error:2", "errorMsg": why, "context": context})
                    })
                }
                Ok(receipt) => Box::pin(async move {
                    match receipt.await {
                        Ok(id) => {
                            json!({"result": "ok", "messageId": encode_id(id), "context": context})
                        }
                        Err(e) => {
                            json!({"result": "send-error:2", "errorMsg": e.to_string(), "context": context})
                        }
                    }
                }),
            },
        };
        if tx.send(answer).await.is_err() {
            break;
        }
    }
    drop(tx);
    let _ = producer.flush().await;
    let _ = writer.await;
    let _ = producer.close().await;
}

// ---- consumer and reader ----------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumerParams {
    subscription_type: Option<String>,
    receiver_queue_size: Option<u32>,
    consumer_name: Option<String>,
    subscription_initial_position: Option<String>,
}

fn subscription_type(s: Option<&str>) -> Result<SubscriptionType, WsError> {
    Ok(match s.unwrap_or("Exclusive") {
        "Exclusive" => SubscriptionType::Exclusive,
        "Shared" => SubscriptionType::Shared,
        "Failover" => SubscriptionType::Failover,
        "Key_Shared" | "KeyShared" => SubscriptionType::KeyShared,
        other => return Err(WsError::SubscriptionType(other.to_string())),
    })
}

fn message_json(m: &Message) -> Value {
    let properties: serde_json::Map<String, Value> = m
        .properties
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let mut v = json!({
        "messageId": encode_id(m.id),
        "payload": B64.encode(&m.payload),
        "properties": properties,
        "publishTime": crate::subscription::rfc3339(m.publish_time),
        "redeliveryCount": m.redelivery_count,
    });
    if let Some(k) = &m.key {
        v["key"] = Value::String(k.clone());
    }
    if let Some(t) = m.event_time {
        v["eventTime"] = Value::String(crate::subscription::rfc3339(t));
    }
    v
}

/// What a consumer (or reader) session's client may say.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConsumerCommand {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    message_id: Option<String>,
}

pub async fn consumer(
    State(svc): State<BrokerService>,
    Path((t, n, topic, sub)): Path<(String, String, String, String)>,
    Query(q): Query<ConsumerParams>,
    ws: WebSocketUpgrade,
) -> Response {
    let topic = topic_name(&t, &n, &topic);
    // Subscribed before the handshake completes, as in Pulsar's WebSocket
    // service: once a client is connected its subscription exists, so what
    // is published after that reaches it. Subscribing after the upgrade let
    // a `Latest` subscription miss messages a client sent right after
    // connecting (seen as a flaky test on a loaded machine).
    match subscribe(&svc, &topic, &sub, q).await {
        Ok(consumer) => ws.on_upgrade(move |socket| consume_session(topic, consumer, socket)),
        Err(why) => ws.on_upgrade(move |socket| refuse(socket, why)),
    }
}

async fn subscribe(
    svc: &BrokerService,
    topic: &str,
    sub: &str,
    q: ConsumerParams,
) -> Result<magnetar_client::Consumer, WsError> {
    let sub_type = subscription_type(q.subscription_type.as_deref())?;
    let initial_position = match q.subscription_initial_position.as_deref() {
        None | Some("Latest") => InitialPosition::Latest,
        Some("Earliest") => InitialPosition::Earliest,
        Some(other) => return Err(WsError::InitialPosition(other.to_string())),
    };
    let client = svc
        .inner
        .client
        .get(svc)
        .await
        .map_err(|e| WsError::SelfClient(Box::new(e)))?;
    let opts = ConsumerOptions {
        subscription_type: sub_type,
        initial_position,
        name: q.consumer_name,
        receiver_queue: q.receiver_queue_size.unwrap_or(1000).clamp(1, 10_000),
    };
    client
        .subscribe(topic, sub, opts)
        .await
        .map_err(WsError::Subscribe)
}

async fn consume_session(
    topic: String,
    mut consumer: magnetar_client::Consumer,
    socket: WebSocket,
) {
    let (mut sink, mut stream) = socket.split();
    loop {
        tokio::select! {
            m = consumer.receive() => match m {
                Ok(m) => {
                    if !send_text(&mut sink, message_json(&m)).await {
                        break;
                    }
                }
                Err(e) => {
                    tracing::info!(topic = %topic, error = %e, "WebSocket consumer lost its subscription");
                    break;
                }
            },
            frame = stream.next() => {
                let text = match frame {
                    Some(Ok(WsMessage::Text(t))) => t.to_string(),
                    Some(Ok(WsMessage::Binary(b))) => String::from_utf8_lossy(&b).into_owned(),
                    Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => continue,
                };
                if let Err(why) = consumer_command(&mut consumer, &text) {
                    let answer = json!({"result": "error", "errorMsg": why.to_string()});
                    if !send_text(&mut sink, answer).await {
                        break;
                    }
                }
            }
        }
    }
    let _ = consumer.close().await;
    let _ = sink.close().await;
}

fn consumer_command(consumer: &mut magnetar_client::Consumer, text: &str) -> Result<(), WsError> {
    let c: ConsumerCommand = serde_json::from_str(text).map_err(WsError::InvalidCommand)?;
    let id = || {
        c.message_id
            .as_deref()
            .and_then(decode_id)
            .ok_or(WsError::NeedMessageId)
    };
    match c.kind.as_deref() {
        None | Some("ack") => consumer.ack(&id()?).map_err(WsError::Client),
        Some("negativeAcknowledge") => consumer.nack(&id()?).map_err(WsError::Client),
        Some("permit") | Some("ping") => Ok(()),
        Some(other) => Err(WsError::UnknownCommand(other.to_string())),
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct ReaderParams {
    message_id: Option<String>,
}

pub async fn reader(
    State(svc): State<BrokerService>,
    Path((t, n, topic)): Path<(String, String, String)>,
    Query(q): Query<ReaderParams>,
    ws: WebSocketUpgrade,
) -> Response {
    let topic = topic_name(&t, &n, &topic);
    // Created before the handshake completes, like a consumer's subscription:
    // a reader from the latest message sees everything published once its
    // client is connected.
    match open_reader(&svc, &topic, q).await {
        Ok(reader) => ws.on_upgrade(move |socket| read_session(reader, socket)),
        Err(why) => ws.on_upgrade(move |socket| refuse(socket, why)),
    }
}

async fn open_reader(
    svc: &BrokerService,
    topic: &str,
    q: ReaderParams,
) -> Result<magnetar_client::Reader, WsError> {
    let start = match q.message_id.as_deref() {
        None | Some("latest") => MessageId::LATEST,
        Some("earliest") => MessageId::EARLIEST,
        Some(s) => decode_id(s).ok_or_else(|| WsError::MessageId(s.to_string()))?,
    };
    let client = svc
        .inner
        .client
        .get(svc)
        .await
        .map_err(|e| WsError::SelfClient(Box::new(e)))?;
    client
        .create_reader(topic, start, false)
        .await
        .map_err(WsError::CreateReader)
}

async fn read_session(mut reader: magnetar_client::Reader, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    loop {
        tokio::select! {
            m = reader.next() => match m {
                Ok(m) => {
                    if !send_text(&mut sink, message_json(&m)).await {
                        break;
                    }
                }
                Err(_) => break,
            },
            frame = stream.next() => match frame {
                // Readers' acks only pace delivery in Pulsar; reading ahead is
                // bounded by the receiver queue here, so they are accepted
                // and need no action.
                Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = reader.close().await;
    let _ = sink.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_round_trip_through_base64() {
        let id = MessageId {
            ledger_id: 12,
            entry_id: 34,
            batch_index: -1,
            partition: -1,
        };
        assert_eq!(decode_id(&encode_id(id)), Some(id));
        assert_eq!(decode_id("not base64!"), None);
    }

    #[test]
    fn bad_producer_messages_are_explained_with_their_context() {
        let (ctx, why) =
            parse_producer_message(r#"{"context": "7", "payload": "%%%"}"#, None).unwrap_err();
        assert_eq!(ctx.as_deref(), Some("7"));
        assert!(why.to_string().contains("base64"), "{why}");
        let (ctx, _) = parse_producer_message("{not json", None).unwrap_err();
        assert_eq!(ctx, None);
        let (ctx, m) = parse_producer_message(
            r#"{"payload": "aGk=", "key": "k", "properties": {"a": "1"}, "context": "c1"}"#,
            None,
        )
        .unwrap();
        assert_eq!(ctx.as_deref(), Some("c1"));
        assert_eq!(&m.payload[..], b"hi");
        assert_eq!(m.key.as_deref(), Some("k"));
        assert_eq!(m.properties, vec![("a".to_string(), "1".to_string())]);
    }

    #[test]
    fn payloads_for_an_avro_topic_are_json_records() {
        let schema = crate::resources::SchemaVersion {
            schema_type: 4,
            name: String::new(),
            data: br#"{"type":"record","name":"R","fields":[{"name":"id","type":"long"}]}"#
                .to_vec(),
            properties: Vec::new(),
            timestamp: 0,
            deleted: false,
        };
        let frame =
            |json: &str| format!(r#"{{"payload": "{}", "context": "c"}}"#, B64.encode(json));
        let (_, m) = parse_producer_message(&frame(r#"{"id": 5}"#), Some(&schema)).unwrap();
        assert_eq!(&m.payload[..], &[10]);
        let (ctx, why) =
            parse_producer_message(&frame(r#"{"id": "x"}"#), Some(&schema)).unwrap_err();
        assert_eq!(ctx.as_deref(), Some("c"));
        assert!(why.to_string().contains("schema"), "{why}");
    }
}

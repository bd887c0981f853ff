//! Subscription operations of the admin API (Pulsar's paths): create at a
//! position, reset the cursor by time or message id, clear the backlog,
//! expire messages by age. They run on the topic's owner (the `served_here`
//! middleware redirects there) and move the cursor as a SEEK would.

use axum::body::Bytes;
use axum::extract::{Path, State};
use magnetar_managed_ledger::Position;
use serde::Deserialize;

use super::{body, existing_topic, no_content, not_found, ApiError, App, Reply};
use crate::error::BrokerError;
use crate::subscription::{initial_position, SeekTarget, SubType, Subscription};
use crate::topic::Topic;

/// Pulsar's `MessageIdImpl` JSON.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageIdBody {
    ledger_id: i64,
    entry_id: i64,
    #[serde(default)]
    #[allow(dead_code)]
    partition_index: Option<i32>,
}

impl MessageIdBody {
    /// Pulsar's `MessageId.earliest` is `-1:-1`, `MessageId.latest` is
    /// `i64::MAX:i64::MAX`.
    fn target(&self) -> Result<SeekTarget, ApiError> {
        match (self.ledger_id, self.entry_id) {
            (-1, -1) => Ok(SeekTarget::Earliest),
            (i64::MAX, i64::MAX) => Ok(SeekTarget::Latest),
            (l, e) if l >= 0 && e >= 0 => Ok(SeekTarget::Position(Position::new(l as u64, e))),
            _ => Err(ApiError(BrokerError::BadRequest(format!(
                "invalid message id {}:{}",
                self.ledger_id, self.entry_id
            )))),
        }
    }
}

type TopicPath = (String, String, String, String);

async fn subscription_of(
    a: &App,
    (t, n, topic, sub): &TopicPath,
) -> Result<(std::sync::Arc<Topic>, Subscription), ApiError> {
    let topic = existing_topic(a, t, n, topic).await?;
    let s = topic
        .get_subscription(sub)
        .ok_or_else(|| not_found(format!("subscription {sub} does not exist")))?;
    Ok((topic, s))
}

/// `PUT .../subscription/{sub}`: a durable subscription at the given
/// message id (body), or at the end.
pub(super) async fn create(State(a): State<App>, Path(p): Path<TopicPath>, raw: Bytes) -> Reply {
    let topic = existing_topic(&a, &p.0, &p.1, &p.2).await?;
    let sub = &p.3;
    if sub.is_empty() || sub.len() > 256 {
        return Err(ApiError(BrokerError::BadRequest(
            "a subscription name has 1 to 256 characters".into(),
        )));
    }
    if topic.get_subscription(sub).is_some() {
        return Err(ApiError(BrokerError::Conflict(format!(
            "subscription {sub} already exists"
        ))));
    }
    let target = match body::<MessageIdBody>(&raw)? {
        Some(id) => id.target()?,
        None => SeekTarget::Latest,
    };
    let latest = matches!(target, SeekTarget::Latest);
    let s = topic
        .subscription(sub, initial_position(latest), SubType::Exclusive)
        .await?;
    if let SeekTarget::Position(_) = target {
        s.seek(target).await?;
    }
    no_content()
}

/// `POST .../subscription/{sub}/resetcursor/{timestamp}` (ms since epoch).
pub(super) async fn reset_by_time(
    State(a): State<App>,
    Path((t, n, topic, sub, ts)): Path<(String, String, String, String, String)>,
) -> Reply {
    let ts = number_param("the timestamp (ms since the epoch)", &ts, 0, u64::MAX)?;
    let (_, s) = subscription_of(&a, &(t, n, topic, sub)).await?;
    s.seek(SeekTarget::PublishTime(ts)).await?;
    no_content()
}

/// `POST .../subscription/{sub}/resetcursor` with a message id body.
pub(super) async fn reset_by_id(
    State(a): State<App>,
    Path(p): Path<TopicPath>,
    raw: Bytes,
) -> Reply {
    let id: MessageIdBody = super::required(&raw)?;
    let target = id.target()?;
    let (_, s) = subscription_of(&a, &p).await?;
    s.seek(target).await?;
    no_content()
}

/// `POST .../subscription/{sub}/skip_all`: clears the backlog.
pub(super) async fn skip_all(State(a): State<App>, Path(p): Path<TopicPath>) -> Reply {
    let (_, s) = subscription_of(&a, &p).await?;
    s.seek(SeekTarget::Latest).await?;
    no_content()
}

/// `POST .../subscription/{sub}/expireMessages/{seconds}`: acknowledges
/// what is older than that.
pub(super) async fn expire(
    State(a): State<App>,
    Path((t, n, topic, sub, secs)): Path<(String, String, String, String, String)>,
) -> Reply {
    let secs = number_param("the expiry (seconds)", &secs, 0, u64::MAX)?;
    let (_, s) = subscription_of(&a, &(t, n, topic, sub)).await?;
    s.expire(secs).await?;
    no_content()
}

/// A number from a path segment, within `min..=max`.
fn number_param(what: &str, raw: &str, min: u64, max: u64) -> Result<u64, ApiError> {
    match raw.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(ApiError(BrokerError::BadRequest(format!(
            "{what} must be a number from {min} to {max}, not {raw:?}"
        )))),
    }
}

/// `POST .../subscription/{sub}/skip/{count}`: acknowledges the next
/// `count` messages.
pub(super) async fn skip(
    State(a): State<App>,
    Path((t, n, topic, sub, count)): Path<(String, String, String, String, String)>,
) -> Reply {
    let count = number_param("the number of messages to skip", &count, 1, i64::MAX as u64)?;
    let (_, s) = subscription_of(&a, &(t, n, topic, sub)).await?;
    s.skip(count).await?;
    no_content()
}

/// How far into a backlog a peek may look (entries are walked one by one).
const MAX_PEEK_POSITION: u64 = 10_000;

/// `GET .../subscription/{sub}/position/{n}`: the `n`th unacknowledged
/// entry (1 = the oldest), as Pulsar returns it: the body is the payload
/// (uncompressed; a batch stays a batch, `X-Pulsar-num-batch-message` says
/// how many) and the message's metadata is in `X-Pulsar-*` headers.
pub(super) async fn peek(
    State(a): State<App>,
    Path((t, n, topic, sub, position)): Path<(String, String, String, String, String)>,
) -> Reply {
    let nth = number_param("the message position", &position, 1, MAX_PEEK_POSITION)?;
    let (topic, _) = subscription_of(&a, &(t, n, topic, sub.clone())).await?;
    let cursor = topic
        .ml
        .cursor(&sub)
        .ok_or_else(|| not_found(format!("subscription {sub} is not durable")))?;
    let list = topic.ml.ledger_list();
    let last = list.last_confirmed();
    let mut p = list.next_valid(cursor.mark_delete_position());
    let mut seen = 0;
    let found = loop {
        if p > last || !list.contains(p) {
            break None;
        }
        if !cursor.is_acked(p) {
            seen += 1;
            if seen == nth {
                break Some(p);
            }
        }
        p = list.next_valid(p);
    };
    let Some(pos) = found else {
        return Err(not_found(format!(
            "subscription {sub} has fewer than {nth} messages"
        )));
    };
    let entry = topic.ml.read_entry(pos).await.map_err(BrokerError::from)?;
    peek_response(pos, bytes::Bytes::from_owner(entry.data))
}

fn peek_response(pos: Position, data: bytes::Bytes) -> Reply {
    use axum::http::HeaderValue;
    use axum::response::IntoResponse;
    use magnetar_wire::{batch, Payload};

    let bad = |e: magnetar_wire::WireError| {
        ApiError(BrokerError::internal(format!("stored entry {pos}"), e))
    };
    let payload = Payload::parse(data).map_err(bad)?;
    let md = &payload.metadata;
    let body = batch::uncompressed_body(&payload).map_err(bad)?;
    let mut resp = (
        [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
        body,
    )
        .into_response();
    let h = resp.headers_mut();
    let mut put = |name: String, value: String| {
        if let (Ok(n), Ok(v)) = (
            axum::http::HeaderName::try_from(name),
            HeaderValue::try_from(value),
        ) {
            h.insert(n, v);
        }
    };
    put(
        "X-Pulsar-Message-ID".into(),
        format!("{}:{}", pos.ledger_id, pos.entry_id),
    );
    put(
        "X-Pulsar-publish-time".into(),
        super::super::subscription::rfc3339(md.publish_time),
    );
    put("X-Pulsar-producer-name".into(), md.producer_name.clone());
    put("X-Pulsar-sequence-id".into(), md.sequence_id.to_string());
    if let Some(t) = md.event_time.filter(|t| *t > 0) {
        put(
            "X-Pulsar-event-time".into(),
            super::super::subscription::rfc3339(t),
        );
    }
    if let Some(k) = &md.partition_key {
        put("X-Pulsar-partition-key".into(), k.clone());
    }
    if let Some(n) = md.num_messages_in_batch {
        put("X-Pulsar-num-batch-message".into(), n.to_string());
    }
    for kv in &md.properties {
        put(format!("X-Pulsar-PROPERTY-{}", kv.key), kv.value.clone());
    }
    Ok(resp)
}

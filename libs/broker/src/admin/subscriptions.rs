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
    /// `ledgerId = entryId = -1` is Pulsar's "latest"; `i64::MAX` also.
    fn target(&self) -> Result<SeekTarget, ApiError> {
        match (self.ledger_id, self.entry_id) {
            (-1, -1) | (i64::MAX, i64::MAX) => Ok(SeekTarget::Latest),
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
    let ts: u64 = ts.parse().map_err(|_| {
        ApiError(BrokerError::BadRequest(format!(
            "timestamp {ts:?} is not milliseconds since the epoch"
        )))
    })?;
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
    let secs: u64 = secs.parse().map_err(|_| {
        ApiError(BrokerError::BadRequest(format!(
            "expiry {secs:?} is not a number of seconds"
        )))
    })?;
    let (_, s) = subscription_of(&a, &(t, n, topic, sub)).await?;
    s.expire(secs).await?;
    no_content()
}

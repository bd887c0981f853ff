//! `PUT/GET /admin/v2/persistent/{tenant}/{ns}/{topic}/offload`: trigger an
//! offload up to a message id, and its status, as Pulsar answers them.

use axum::body::Bytes;
use axum::extract::{Path, State};
use magnetar_managed_ledger::{MlError, Position, OFFLOAD_RUNNING};
use serde::Deserialize;
use serde_json::json;

use super::{existing_topic, no_content, ok_json, required, topic_name, ApiError, App, Reply};
use crate::error::BrokerError;

type TopicPath = Path<(String, String, String)>;

/// Pulsar's `MessageIdImpl` as the admin API sends it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageId {
    ledger_id: i64,
    entry_id: i64,
}

/// `PUT .../offload` with a message id: offloads the closed ledgers before
/// the one holding it, in the background; 409 while an offload runs.
pub(super) async fn trigger(
    State(a): State<App>,
    Path((t, n, topic)): TopicPath,
    raw: Bytes,
) -> Reply {
    let id: MessageId = required(&raw)?;
    refuse_partitioned(&a, &t, &n, &topic).await?;
    let topic = existing_topic(&a, &t, &n, &topic).await?;
    let up_to = Position::new(id.ledger_id.max(0) as u64, id.entry_id.max(0));
    let run = match topic.ml.start_offload(up_to) {
        Ok(run) => run,
        Err(MlError::Unavailable(m)) if m == OFFLOAD_RUNNING => {
            return Err(ApiError(BrokerError::Conflict(
                "Offload already running".into(),
            )))
        }
        Err(e) => return Err(ApiError(BrokerError::Storage(e))),
    };
    let name = topic.name.clone();
    tokio::spawn(async move {
        if let Err(e) = run.await {
            tracing::warn!(topic = %name, error = %e, "offload failed");
        }
    });
    no_content()
}

/// A message id names a ledger of one partition, so an offload is asked of
/// each partition by its own name; the parent's name gets 405 and the hint.
async fn refuse_partitioned(a: &App, t: &str, n: &str, topic: &str) -> Result<(), ApiError> {
    let name = topic_name(a, t, n, topic).await?;
    match a.svc.resources().partitioned(&name).await? {
        Some(md) => Err(ApiError(BrokerError::NotAllowed(format!(
            "{name} is a partitioned topic of {} partitions: offload each partition by its \
             name ({})",
            md.partitions,
            name.partition(0)
        )))),
        None => Ok(()),
    }
}

/// `GET .../offload`: `{status, lastError, firstUnoffloadedMessage}`.
pub(super) async fn status(State(a): State<App>, Path((t, n, topic)): TopicPath) -> Reply {
    let topic = existing_topic(&a, &t, &n, &topic).await?;
    let s = topic.ml.offload_status();
    ok_json(json!({
        "status": s.status,
        "lastError": s.last_error,
        "firstUnoffloadedMessage": {
            "ledgerId": s.first_unoffloaded_message.ledger_id,
            "entryId": s.first_unoffloaded_message.entry_id,
            "partitionIndex": -1,
        },
    }))
}

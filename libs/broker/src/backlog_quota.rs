//! Backlog quotas (Pulsar's `backlog_quota_map`): how large or how old the
//! backlog of a topic's slowest durable subscription may grow, and what
//! happens beyond that.
//!
//! - `producer_request_hold`: new producers are refused with
//!   `ProducerBlockedQuotaExceededError`; connected ones are asked to
//!   reconnect and so are refused too. Clients keep their pending messages and
//!   retry, so sends wait until consumers catch up.
//! - `producer_exception`: as above with `ProducerBlockedQuotaExceededException`;
//!   clients fail their pending sends.
//! - `consumer_backlog_eviction`: the slowest subscriptions skip their oldest
//!   messages until the backlog is within the quota again.
//!
//! Producer creation checks the quota when it happens; a periodic check
//! (every `backlog_quota_check_interval`) handles topics already producing.

use std::collections::BTreeMap;
use std::time::Duration;

use magnetar_managed_ledger::{ManagedLedger, Position};
use serde::{Deserialize, Serialize};

use crate::error::{BrokerError, Result};
use crate::service::BrokerService;
use crate::subscription::{now_ms, Subscription};

/// What a quota is measured on (the `backlogQuotaType` query parameter).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QuotaType {
    /// Bytes of backlog (`destination_storage`).
    Size,
    /// Age of the oldest unacknowledged message (`message_age`).
    Age,
}

impl QuotaType {
    pub fn key(self) -> &'static str {
        match self {
            QuotaType::Size => "destination_storage",
            QuotaType::Age => "message_age",
        }
    }

    pub fn parse(s: Option<&str>) -> Result<QuotaType> {
        match s {
            None | Some("destination_storage") => Ok(QuotaType::Size),
            Some("message_age") => Ok(QuotaType::Age),
            Some(other) => Err(BrokerError::BadRequest(format!(
                "backlogQuotaType must be destination_storage or message_age, not {other:?}"
            ))),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuotaPolicy {
    ProducerRequestHold,
    ProducerException,
    ConsumerBacklogEviction,
}

/// Pulsar's `BacklogQuota` JSON. `limit` is the deprecated name of
/// `limitSize`; both are accepted and both are returned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BacklogQuota {
    #[serde(default = "unset")]
    pub limit_size: i64,
    #[serde(default = "unset")]
    pub limit_time: i64,
    pub policy: QuotaPolicy,
    #[serde(default = "unset", skip_serializing)]
    limit: i64,
}

fn unset() -> i64 {
    -1
}

impl BacklogQuota {
    /// Checks the quota for `kind` and normalises the deprecated `limit`.
    pub fn validated(mut self, kind: QuotaType) -> Result<Self> {
        if self.limit_size < 0 && self.limit >= 0 {
            self.limit_size = self.limit;
        }
        self.limit = -1;
        match kind {
            QuotaType::Size if self.limit_size <= 0 => Err(BrokerError::BadRequest(
                "a destination_storage quota needs limitSize > 0 (bytes)".into(),
            )),
            QuotaType::Age if self.limit_time <= 0 => Err(BrokerError::BadRequest(
                "a message_age quota needs limitTime > 0 (seconds)".into(),
            )),
            _ => Ok(self),
        }
    }
}

/// A namespace's quotas as a topic applies them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TopicQuotas {
    pub size: Option<(u64, QuotaPolicy)>,
    pub age: Option<(Duration, QuotaPolicy)>,
}

impl TopicQuotas {
    pub fn from_map(map: &BTreeMap<String, BacklogQuota>) -> Self {
        let size = map
            .get(QuotaType::Size.key())
            .filter(|q| q.limit_size > 0)
            .map(|q| (q.limit_size as u64, q.policy));
        let age = map
            .get(QuotaType::Age.key())
            .filter(|q| q.limit_time > 0)
            .map(|q| (Duration::from_secs(q.limit_time as u64), q.policy));
        Self { size, age }
    }

    pub fn is_empty(&self) -> bool {
        self.size.is_none() && self.age.is_none()
    }
}

/// A quota that is exceeded now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exceeded {
    pub kind: QuotaType,
    pub policy: QuotaPolicy,
}

impl Exceeded {
    /// The error a producer gets while this quota is exceeded (`None` when
    /// the policy evicts instead of blocking).
    pub fn producer_error(&self, topic: &str) -> Option<BrokerError> {
        let what = match self.kind {
            QuotaType::Size => "size",
            QuotaType::Age => "time",
        };
        let msg = format!("cannot create producer on topic {topic}: backlog {what} quota exceeded");
        match self.policy {
            QuotaPolicy::ProducerRequestHold => Some(BrokerError::QuotaExceededHold(msg)),
            QuotaPolicy::ProducerException => Some(BrokerError::QuotaExceededException(msg)),
            QuotaPolicy::ConsumerBacklogEviction => None,
        }
    }
}

/// The quotas of `q` that the backlog of `ml`'s slowest durable cursor
/// exceeds. The size check is arithmetic on ledger sizes; the age check
/// reads the oldest unacknowledged entry.
pub async fn exceeded(ml: &ManagedLedger, q: &TopicQuotas) -> Vec<Exceeded> {
    let mut out = Vec::new();
    if let Some((limit, policy)) = q.size {
        let biggest = ml.cursors().iter().map(|c| c.backlog().1).max();
        if biggest.unwrap_or(0) > limit {
            out.push(Exceeded {
                kind: QuotaType::Size,
                policy,
            });
        }
    }
    if let Some((limit, policy)) = q.age {
        let cutoff = now_ms().saturating_sub(u64::try_from(limit.as_millis()).unwrap_or(u64::MAX));
        if let Some(oldest) = oldest_unacked_publish_time(ml).await {
            if oldest < cutoff {
                out.push(Exceeded {
                    kind: QuotaType::Age,
                    policy,
                });
            }
        }
    }
    out
}

/// Publish time of the oldest unacknowledged entry over every durable cursor.
async fn oldest_unacked_publish_time(ml: &ManagedLedger) -> Option<u64> {
    let list = ml.ledger_list();
    let last = list.last_confirmed();
    let mut firsts: Vec<Position> = ml
        .cursors()
        .iter()
        .map(|c| list.next_valid(c.mark_delete_position()))
        .filter(|p| *p <= last && list.contains(*p))
        .collect();
    firsts.sort();
    // The slowest cursor's first unacknowledged entry is the oldest one.
    let first = *firsts.first()?;
    match ml.read_entry(first).await {
        Ok(e) => Some(e.publish_time_ms),
        Err(e) => {
            tracing::warn!(ledger = ml.name(), error = %e, "reading the oldest backlog entry");
            None
        }
    }
}

/// Makes every subscription fit the quotas whose policy is eviction by
/// skipping its oldest messages (a blocking quota never evicts).
pub async fn evict(ml: &ManagedLedger, subs: &[(String, Subscription)], q: &TopicQuotas) {
    const EVICT: QuotaPolicy = QuotaPolicy::ConsumerBacklogEviction;
    for (name, sub) in subs {
        let Some(cursor) = ml.cursor(name) else {
            continue; // a reader: nothing is kept for it
        };
        if let Some((limit, EVICT)) = q.size {
            let (entries, bytes) = cursor.backlog();
            if bytes > limit && entries > 0 {
                // Entries are skipped by count: the average size says how many.
                let avg = (bytes / entries).max(1);
                let n = (bytes - limit).div_ceil(avg);
                match sub.skip(n).await {
                    Ok(k) => tracing::info!(subscription = %name, ledger = ml.name(), skipped = k,
                        "backlog size quota exceeded: oldest messages evicted"),
                    Err(e) => tracing::warn!(subscription = %name, error = %e, "backlog eviction"),
                }
            }
        }
        if let Some((limit, EVICT)) = q.age {
            if let Err(e) = sub.expire(limit.as_secs()).await {
                tracing::warn!(subscription = %name, error = %e, "backlog age eviction");
            }
        }
    }
}

/// Checks every loaded topic's quotas every `every`, until `stop`.
pub async fn check_loop(
    svc: BrokerService,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        for t in svc.loaded_topics() {
            t.enforce_backlog_quota().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(limit_size: i64, limit_time: i64, policy: QuotaPolicy) -> BacklogQuota {
        BacklogQuota {
            limit_size,
            limit_time,
            policy,
            limit: -1,
        }
    }

    #[test]
    fn quota_json_matches_pulsar() {
        let q: BacklogQuota =
            serde_json::from_str(r#"{"limit": 1024, "policy": "producer_request_hold"}"#).unwrap();
        let q = q.validated(QuotaType::Size).unwrap();
        assert_eq!(q.limit_size, 1024);
        let json = serde_json::to_value(&q).unwrap();
        assert_eq!(json["limitSize"], 1024);
        assert_eq!(json["policy"], "producer_request_hold");
        assert!(json.get("limit").is_none());
    }

    #[test]
    fn bad_quotas_are_refused() {
        let bad_policy = serde_json::from_str::<BacklogQuota>(r#"{"limitSize": 1, "policy": "x"}"#);
        assert!(bad_policy.is_err());
        let no_size = quota(-1, 10, QuotaPolicy::ProducerException);
        assert!(no_size.clone().validated(QuotaType::Size).is_err());
        assert!(no_size.validated(QuotaType::Age).is_ok());
        assert!(QuotaType::parse(Some("other")).is_err());
    }

    #[test]
    fn topic_quotas_from_map() {
        let mut map = BTreeMap::new();
        map.insert(
            "destination_storage".to_string(),
            quota(100, -1, QuotaPolicy::ConsumerBacklogEviction),
        );
        let q = TopicQuotas::from_map(&map);
        assert_eq!(q.size, Some((100, QuotaPolicy::ConsumerBacklogEviction)));
        assert!(q.age.is_none());
        assert!(TopicQuotas::from_map(&BTreeMap::new()).is_empty());
    }
}

//! Namespace policies about what is kept: backlog quotas (Pulsar's
//! `backlogQuotaMap` / `backlogQuota` paths) and offload policies
//! (`offloadPolicies`, used by tiered storage).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use magnetar_common::names::NamespaceName;

use super::{change_policy, namespace_policies, ok_json, required, ApiError, App, Reply};
use crate::backlog_quota::{BacklogQuota, QuotaType};
use crate::error::BrokerError;
use crate::resources::{OffloadPolicies, Policies};

type NsPath = Path<(String, String)>;
type Params = Query<HashMap<String, String>>;

fn quota_type(q: &HashMap<String, String>) -> Result<QuotaType, ApiError> {
    Ok(QuotaType::parse(
        q.get("backlogQuotaType").map(String::as_str),
    )?)
}

/// `GET .../backlogQuotaMap`
pub(super) async fn get_backlog_quotas(State(a): State<App>, Path((t, n)): NsPath) -> Reply {
    let ns = NamespaceName::new(&t, &n)?;
    ok_json(namespace_policies(&a, &ns).await?.backlog_quota_map)
}

/// A quota must let the namespace keep what it promises to retain: a size
/// quota at or above the retention size (or an age quota at or above the
/// retention time) could never be reached, as in Pulsar this is refused.
fn check_against_retention(
    p: &Policies,
    kind: QuotaType,
    q: &BacklogQuota,
) -> Result<(), ApiError> {
    let Some(r) = p.retention_policies else {
        return Ok(());
    };
    let beyond = match kind {
        QuotaType::Size => {
            r.retention_size_in_mb > 0
                && q.limit_size >= r.retention_size_in_mb.saturating_mul(1 << 20)
        }
        QuotaType::Age => {
            r.retention_time_in_minutes > 0
                && q.limit_time >= r.retention_time_in_minutes.saturating_mul(60)
        }
    };
    if beyond {
        return Err(ApiError(BrokerError::Precondition(
            "backlog quota exceeds the namespace's retention; increase retention first".into(),
        )));
    }
    Ok(())
}

/// `POST .../backlogQuota?backlogQuotaType=destination_storage|message_age`
pub(super) async fn set_backlog_quota(
    State(a): State<App>,
    Path((t, n)): NsPath,
    Query(params): Params,
    raw: Bytes,
) -> Reply {
    let ns = NamespaceName::new(&t, &n)?;
    let kind = quota_type(&params)?;
    let quota = required::<BacklogQuota>(&raw)?.validated(kind)?;
    let p = namespace_policies(&a, &ns).await?;
    check_against_retention(&p, kind, &quota)?;
    change_policy(&a, &ns, |p| {
        p.backlog_quota_map
            .insert(kind.key().to_string(), quota.clone());
    })
    .await
}

/// `DELETE .../backlogQuota?backlogQuotaType=…`
pub(super) async fn remove_backlog_quota(
    State(a): State<App>,
    Path((t, n)): NsPath,
    Query(params): Params,
) -> Reply {
    let ns = NamespaceName::new(&t, &n)?;
    let kind = quota_type(&params)?;
    change_policy(&a, &ns, |p| {
        p.backlog_quota_map.remove(kind.key());
    })
    .await
}

/// `GET .../offloadPolicies` (`null` when none are set).
pub(super) async fn get_offload(State(a): State<App>, Path((t, n)): NsPath) -> Reply {
    let ns = NamespaceName::new(&t, &n)?;
    ok_json(namespace_policies(&a, &ns).await?.offload_policies)
}

/// `POST .../offloadPolicies`
pub(super) async fn set_offload(State(a): State<App>, Path((t, n)): NsPath, raw: Bytes) -> Reply {
    let ns = NamespaceName::new(&t, &n)?;
    let o: OffloadPolicies = required(&raw)?;
    o.validate()?;
    change_policy(&a, &ns, |p| p.offload_policies = Some(o.clone())).await
}

/// `DELETE .../removeOffloadPolicies`
pub(super) async fn remove_offload(State(a): State<App>, Path((t, n)): NsPath) -> Reply {
    let ns = NamespaceName::new(&t, &n)?;
    change_policy(&a, &ns, |p| p.offload_policies = None).await
}

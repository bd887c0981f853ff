//! The broker's HTTP surface: Pulsar's admin REST v2 (core set), `/metrics`
//! and `/health`. Errors carry Pulsar's status codes and a `{"reason": …}`
//! body; a request that fails changes nothing.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use magnetar_common::names::{NamespaceName, TopicName};
use magnetar_telemetry::prometheus::{Encoder, Registry, TextEncoder};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;

use crate::bundle::Bundles;
use crate::error::BrokerError;
use crate::resources::{
    ClusterData, PartitionedTopicMetadata, Policies, RetentionPolicies, TenantInfo,
};
use crate::service::BrokerService;
use openapi::{Api, Op};

mod auth;
mod cluster;
mod offload;
mod openapi;
mod produce;
mod schemas;
mod storage_policies;
mod subscriptions;

#[derive(Clone)]
struct App {
    svc: BrokerService,
    registry: Arc<Registry>,
}

impl axum::extract::FromRef<App> for BrokerService {
    fn from_ref(app: &App) -> BrokerService {
        app.svc.clone()
    }
}

type Reply = Result<Response, ApiError>;

struct ApiError(BrokerError);

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> Self {
        ApiError(e)
    }
}

impl From<magnetar_common::names::NameError> for ApiError {
    fn from(e: magnetar_common::names::NameError) -> Self {
        ApiError(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code =
            StatusCode::from_u16(self.0.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (code, Json(json!({ "reason": self.0.to_string() }))).into_response()
    }
}

fn no_content() -> Reply {
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn ok_json(v: impl serde::Serialize) -> Reply {
    Ok(Json(v).into_response())
}

fn not_found(what: String) -> ApiError {
    ApiError(BrokerError::NotFound(what))
}

/// Parses a JSON body; an empty body is `None`.
fn body<T: DeserializeOwned>(raw: &Bytes) -> Result<Option<T>, ApiError> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(raw)
        .map(Some)
        .map_err(|e| ApiError(BrokerError::BadRequest(format!("invalid JSON body: {e}"))))
}

fn required<T: DeserializeOwned>(raw: &Bytes) -> Result<T, ApiError> {
    body(raw)?.ok_or_else(|| ApiError(BrokerError::BadRequest("a JSON body is required".into())))
}

pub fn router(svc: BrokerService, registry: Arc<Registry>) -> Router {
    let (api, doc) = api().finish();
    let doc = Arc::new(doc);
    let app = App { svc, registry };
    api.route(
        "/admin/v2/openapi.json",
        get(move || {
            let doc = doc.clone();
            async move { Json((*doc).clone()) }
        }),
    )
    .layer(axum::middleware::map_response(reason_body))
    .layer(axum::middleware::from_fn_with_state(
        app.clone(),
        cluster::served_here,
    ))
    // Outermost: nobody is redirected or served before authorization.
    .layer(axum::middleware::from_fn_with_state(
        app.clone(),
        auth::authenticate,
    ))
    .fallback(|| async {
        ApiError(BrokerError::NotFound("no such endpoint".into())).into_response()
    })
    .with_state(app)
}

/// Errors made outside our handlers (axum's rejections of a malformed path,
/// query or body) come as plain text; every error leaves as Pulsar's
/// `{"reason": …}`.
async fn reason_body(resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let text = match axum::body::to_bytes(resp.into_body(), 64 << 10).await {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_string(),
        Err(_) => String::new(),
    };
    let reason = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    (status, Json(json!({ "reason": reason }))).into_response()
}

/// Every documented route.
fn api() -> Api {
    use openapi::{object, schema, string_list};
    let ns = "/admin/v2/namespaces/{tenant}/{namespace}";
    let topic = "/admin/v2/persistent/{tenant}/{namespace}/{topic}";
    let sub = format!("{topic}/subscription/{{subscription}}");
    let force = || json!({"type": "boolean"});
    let quota_type = || json!({"type": "string", "enum": ["destination_storage", "message_age"]});
    Api::new()
        .route("/health", [Op::get(health, "Whether the broker serves")])
        .route(
            "/metrics",
            [Op::get(metrics, "Prometheus metrics (text format)")],
        )
        .route(
            "/admin/v2/clusters",
            [Op::get(list_clusters, "List clusters").returns(string_list())],
        )
        .route(
            "/admin/v2/clusters/{cluster}",
            [
                Op::get(get_cluster, "Get a cluster").returns(schema("ClusterData")),
                Op::put(create_cluster, "Create a cluster").body(schema("ClusterData"), false),
            ],
        )
        .route(
            "/admin/v2/tenants",
            [Op::get(list_tenants, "List tenants").returns(string_list())],
        )
        .route(
            "/admin/v2/tenants/{tenant}",
            [
                Op::get(get_tenant, "Get a tenant").returns(schema("TenantInfo")),
                Op::put(create_tenant, "Create a tenant").body(schema("TenantInfo"), false),
                Op::post(update_tenant, "Update a tenant").body(schema("TenantInfo"), true),
                Op::delete(delete_tenant, "Delete a tenant without namespaces"),
            ],
        )
        .route(
            "/admin/v2/namespaces/{tenant}",
            [Op::get(list_namespaces, "List a tenant's namespaces").returns(string_list())],
        )
        .route(
            ns,
            [
                Op::get(get_namespace, "Get a namespace's policies").returns(schema("Policies")),
                Op::put(create_namespace, "Create a namespace").body(schema("Policies"), false),
                Op::delete(delete_namespace, "Delete an empty namespace"),
            ],
        )
        .route(
            &format!("{ns}/retention"),
            [
                Op::get(get_retention, "Get retention").returns(schema("RetentionPolicies")),
                Op::post(set_retention, "Set retention").body(schema("RetentionPolicies"), true),
                Op::delete(remove_retention, "Remove retention"),
            ],
        )
        .route(
            &format!("{ns}/messageTTL"),
            [
                Op::get(get_ttl, "Get the message TTL (seconds)"),
                Op::post(set_ttl, "Set the message TTL (seconds)")
                    .body(json!({"type": "integer", "minimum": 0}), true),
                Op::delete(remove_ttl, "Remove the message TTL"),
            ],
        )
        .route(
            &format!("{ns}/deduplication"),
            [
                Op::get(get_dedup, "Get deduplication"),
                Op::post(set_dedup, "Turn deduplication on or off")
                    .body(json!({"type": "boolean"}), true),
                Op::delete(remove_dedup, "Remove the deduplication setting"),
            ],
        )
        .route(
            &format!("{ns}/maxProducersPerTopic"),
            limit_ops(Limit::Producers),
        )
        .route(
            &format!("{ns}/maxConsumersPerTopic"),
            limit_ops(Limit::Consumers),
        )
        .route(
            &format!("{ns}/autoTopicCreation"),
            [
                Op::get(get_auto_creation, "Get the auto topic creation override"),
                Op::post(set_auto_creation, "Set the auto topic creation override")
                    .body(schema("AutoTopicCreation"), true),
                Op::delete(
                    remove_auto_creation,
                    "Remove the auto topic creation override",
                ),
            ],
        )
        .route(
            &format!("{ns}/backlogQuotaMap"),
            [Op::get(
                storage_policies::get_backlog_quotas,
                "Get backlog quotas by type",
            )
            .returns(object())],
        )
        .route(
            &format!("{ns}/backlogQuota"),
            [
                Op::post(storage_policies::set_backlog_quota, "Set a backlog quota")
                    .query("backlogQuotaType", quota_type())
                    .body(schema("BacklogQuota"), true),
                Op::delete(
                    storage_policies::remove_backlog_quota,
                    "Remove a backlog quota",
                )
                .query("backlogQuotaType", quota_type()),
            ],
        )
        .route(
            &format!("{ns}/offloadPolicies"),
            [
                Op::get(storage_policies::get_offload, "Get offload policies"),
                Op::post(storage_policies::set_offload, "Set offload policies")
                    .body(schema("OffloadPolicies"), true),
            ],
        )
        .route(
            &format!("{ns}/removeOffloadPolicies"),
            [Op::delete(
                storage_policies::remove_offload,
                "Remove offload policies",
            )],
        )
        .route(
            &format!("{ns}/permissions"),
            [Op::get(auth::namespace_permissions, "Roles and their actions").returns(object())],
        )
        .route(
            &format!("{ns}/permissions/{{role}}"),
            [
                Op::post(
                    auth::grant_namespace,
                    "Grant a role actions on the namespace",
                )
                .body(schema("Actions"), true),
                Op::delete(auth::revoke_namespace, "Revoke a role's actions"),
            ],
        )
        .route(
            "/admin/v2/persistent/{tenant}/{namespace}",
            [Op::get(list_topics, "List topics (and partitions)").returns(string_list())],
        )
        .route(
            "/admin/v2/persistent/{tenant}/{namespace}/partitioned",
            [Op::get(list_partitioned, "List partitioned topics").returns(string_list())],
        )
        .route(
            topic,
            [
                Op::put(create_topic, "Create a non-partitioned topic"),
                Op::delete(delete_topic, "Delete a topic").query("force", force()),
            ],
        )
        .route(
            &format!("{topic}/partitions"),
            [
                Op::get(get_partitions, "Get partitioned metadata").returns(object()),
                Op::put(create_partitioned, "Create a partitioned topic")
                    .body(json!({"type": "integer", "minimum": 1}), true),
                Op::post(update_partitioned, "Add partitions")
                    .body(json!({"type": "integer", "minimum": 1}), true),
                Op::delete(delete_partitioned, "Delete a partitioned topic")
                    .query("force", force()),
            ],
        )
        .route(
            &format!("{topic}/stats"),
            [Op::get(topic_stats, "Topic stats").returns(object())],
        )
        .route(
            &format!("{topic}/partitioned-stats"),
            [Op::get(partitioned_stats, "Partitioned topic stats").returns(object())],
        )
        .route(
            &format!("{topic}/internalStats"),
            [Op::get(internal_stats, "Managed ledger stats").returns(object())],
        )
        .route(
            &format!("{topic}/subscriptions"),
            [Op::get(list_subscriptions, "List subscriptions").returns(string_list())],
        )
        .route(
            &format!("{topic}/unload"),
            [Op::put(unload_topic, "Unload a topic")],
        )
        .route(
            &format!("{topic}/offload"),
            [
                Op::put(
                    offload::trigger,
                    "Offload closed ledgers up to a message id",
                )
                .body(schema("MessageId"), true),
                Op::get(offload::status, "Offload status").returns(object()),
            ],
        )
        .route(
            &format!("{topic}/terminate"),
            [Op::post(terminate_topic, "Terminate a topic").returns(schema("MessageId"))],
        )
        .route(
            &format!("{topic}/permissions"),
            [Op::get(
                auth::topic_permissions,
                "Roles and their actions on the topic",
            )
            .returns(object())],
        )
        .route(
            &format!("{topic}/permissions/{{role}}"),
            [
                Op::post(auth::grant_topic, "Grant a role actions on the topic")
                    .body(schema("Actions"), true),
                Op::delete(auth::revoke_topic, "Revoke a role's actions on the topic"),
            ],
        )
        .route(
            &sub,
            [
                Op::put(
                    subscriptions::create,
                    "Create a subscription (at a message id)",
                )
                .body(schema("MessageId"), false),
                Op::delete(delete_subscription, "Delete a subscription").query("force", force()),
            ],
        )
        .route(
            &format!("{sub}/resetcursor/{{timestamp}}"),
            [Op::post(
                subscriptions::reset_by_time,
                "Reset the cursor to a publish time (ms)",
            )],
        )
        .route(
            &format!("{sub}/resetcursor"),
            [Op::post(
                subscriptions::reset_by_id,
                "Reset the cursor to a message id",
            )
            .body(schema("MessageId"), true)],
        )
        .route(
            &format!("{sub}/skip_all"),
            [Op::post(subscriptions::skip_all, "Clear the backlog")],
        )
        .route(
            &format!("{sub}/skip/{{count}}"),
            [Op::post(subscriptions::skip, "Skip messages")],
        )
        .route(
            &format!("{sub}/expireMessages/{{seconds}}"),
            [Op::post(
                subscriptions::expire,
                "Expire messages older than this",
            )],
        )
        .route(
            &format!("{sub}/position/{{position}}"),
            [Op::get(
                subscriptions::peek,
                "Peek the nth unacknowledged message",
            )],
        )
        .route(
            "/topics/persistent/{tenant}/{namespace}/{topic}",
            [Op::post(produce::produce, "Produce messages (REST)")
                .body(schema("ProduceRequest"), true)
                .returns(object())],
        )
        .route(
            "/topics/persistent/{tenant}/{namespace}/{topic}/partitions/{partition}",
            [Op::post(
                produce::produce_partition,
                "Produce messages to a partition (REST)",
            )
            .body(schema("ProduceRequest"), true)
            .returns(object())],
        )
        .route(
            "/ws/v2/producer/persistent/{tenant}/{namespace}/{topic}",
            [Op::get(
                crate::websocket::producer,
                "WebSocket producer (upgrade)",
            )],
        )
        .route(
            "/ws/v2/consumer/persistent/{tenant}/{namespace}/{topic}/{subscription}",
            [Op::get(
                crate::websocket::consumer,
                "WebSocket consumer (upgrade)",
            )],
        )
        .route(
            "/ws/v2/reader/persistent/{tenant}/{namespace}/{topic}",
            [Op::get(
                crate::websocket::reader,
                "WebSocket reader (upgrade)",
            )],
        )
        .merge(cluster::routes())
        .merge(schemas::routes())
}

// ---- operations -------------------------------------------------------------

async fn health(State(a): State<App>) -> Reply {
    if a.svc.ownership().lease().is_none() {
        return Ok((
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "reason": "no metadata session"})),
        )
            .into_response());
    }
    match a.svc.resources().clusters().await {
        Ok(_) => ok_json(json!({"status": "ok", "brokerUrl": a.svc.inner.broker_url})),
        Err(e) => Ok((
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "reason": e.to_string()})),
        )
            .into_response()),
    }
}

async fn metrics(State(a): State<App>) -> Reply {
    let mut buf = Vec::new();
    TextEncoder::new()
        .encode(&a.registry.gather(), &mut buf)
        .map_err(|e| ApiError(BrokerError::internal("encoding the metrics", e)))?;
    let mut text = String::from_utf8_lossy(&buf).into_owned();
    crate::topic_metrics::render(&a.svc, a.svc.cfg().max_topic_metrics, &mut text).await;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        text,
    )
        .into_response())
}

// ---- clusters ---------------------------------------------------------------

async fn list_clusters(State(a): State<App>) -> Reply {
    ok_json(a.svc.resources().clusters().await?)
}

async fn get_cluster(State(a): State<App>, Path(cluster): Path<String>) -> Reply {
    match a.svc.resources().cluster(&cluster).await? {
        Some(c) => ok_json(c),
        None => Err(not_found(format!("cluster {cluster} does not exist"))),
    }
}

async fn create_cluster(State(a): State<App>, Path(cluster): Path<String>, raw: Bytes) -> Reply {
    magnetar_common::names::check_segment("cluster", &cluster)?;
    let data: ClusterData = body(&raw)?.unwrap_or_default();
    a.svc.resources().create_cluster(&cluster, &data).await?;
    no_content()
}

// ---- tenants ----------------------------------------------------------------

async fn list_tenants(State(a): State<App>) -> Reply {
    ok_json(a.svc.resources().tenants().await?)
}

async fn get_tenant(State(a): State<App>, Path(tenant): Path<String>) -> Reply {
    match a.svc.resources().tenant(&tenant).await? {
        Some((t, _)) => ok_json(t),
        None => Err(not_found(format!("tenant {tenant} does not exist"))),
    }
}

async fn check_clusters(a: &App, info: &TenantInfo) -> Result<(), ApiError> {
    let known = a.svc.resources().clusters().await?;
    let unknown: Vec<&String> = info
        .allowed_clusters
        .iter()
        .filter(|c| !known.contains(c))
        .collect();
    if !unknown.is_empty() {
        return Err(ApiError(BrokerError::Precondition(format!(
            "clusters {unknown:?} do not exist"
        ))));
    }
    Ok(())
}

async fn create_tenant(State(a): State<App>, Path(tenant): Path<String>, raw: Bytes) -> Reply {
    magnetar_common::names::check_segment("tenant", &tenant)?;
    let info: TenantInfo = body(&raw)?.unwrap_or_default();
    check_clusters(&a, &info).await?;
    match a.svc.resources().put_tenant(&tenant, &info, 0).await {
        Err(BrokerError::Conflict(_)) => Err(ApiError(BrokerError::Conflict(format!(
            "tenant {tenant} already exists"
        )))),
        r => {
            r?;
            no_content()
        }
    }
}

async fn update_tenant(State(a): State<App>, Path(tenant): Path<String>, raw: Bytes) -> Reply {
    let info: TenantInfo = required(&raw)?;
    check_clusters(&a, &info).await?;
    let Some((_, version)) = a.svc.resources().tenant(&tenant).await? else {
        return Err(not_found(format!("tenant {tenant} does not exist")));
    };
    a.svc
        .resources()
        .put_tenant(&tenant, &info, version)
        .await?;
    no_content()
}

async fn delete_tenant(State(a): State<App>, Path(tenant): Path<String>) -> Reply {
    if a.svc.resources().tenant(&tenant).await?.is_none() {
        return Err(not_found(format!("tenant {tenant} does not exist")));
    }
    if !a.svc.resources().namespaces(&tenant).await?.is_empty() {
        return Err(ApiError(BrokerError::Conflict(format!(
            "tenant {tenant} still has namespaces"
        ))));
    }
    a.svc.resources().delete_tenant(&tenant).await?;
    no_content()
}

// ---- namespaces -------------------------------------------------------------

async fn list_namespaces(State(a): State<App>, Path(tenant): Path<String>) -> Reply {
    if a.svc.resources().tenant(&tenant).await?.is_none() {
        return Err(not_found(format!("tenant {tenant} does not exist")));
    }
    let names: Vec<String> = a
        .svc
        .resources()
        .namespaces(&tenant)
        .await?
        .into_iter()
        .map(|n| format!("{tenant}/{n}"))
        .collect();
    ok_json(names)
}

async fn namespace_policies(a: &App, ns: &NamespaceName) -> Result<Policies, ApiError> {
    match a.svc.resources().policies(ns).await? {
        Some((p, _)) => Ok(p),
        None => Err(not_found(format!("namespace {ns} does not exist"))),
    }
}

async fn get_namespace(State(a): State<App>, Path((t, n)): Path<(String, String)>) -> Reply {
    let ns = NamespaceName::new(&t, &n)?;
    ok_json(namespace_policies(&a, &ns).await?)
}

async fn create_namespace(
    State(a): State<App>,
    Path((t, n)): Path<(String, String)>,
    raw: Bytes,
) -> Reply {
    let ns = NamespaceName::new(&t, &n)?;
    let mut policies: Policies = body(&raw)?.unwrap_or_default();
    if a.svc.resources().tenant(&t).await?.is_none() {
        return Err(not_found(format!("tenant {t} does not exist")));
    }
    if policies.replication_clusters.is_empty() {
        policies.replication_clusters = vec![a.svc.cfg().cluster.clone()];
    }
    // `--bundles N` arrives as a count only; boundaries are made here.
    let bundles = match &policies.bundles {
        Some(d) if d.boundaries.is_empty() && d.num_bundles == 0 => {
            Bundles::equal(a.svc.cfg().default_bundles)?
        }
        Some(d) => Bundles::from_data(d)?,
        None => Bundles::equal(a.svc.cfg().default_bundles)?,
    };
    policies.bundles = Some(bundles.to_data());
    match a.svc.resources().put_policies(&ns, &policies, 0).await {
        Err(BrokerError::Conflict(_)) => Err(ApiError(BrokerError::Conflict(format!(
            "namespace {ns} already exists"
        )))),
        r => {
            r?;
            no_content()
        }
    }
}

async fn delete_namespace(State(a): State<App>, Path((t, n)): Path<(String, String)>) -> Reply {
    let ns = NamespaceName::new(&t, &n)?;
    namespace_policies(&a, &ns).await?;
    let topics = a.svc.list_topics(&ns).await?;
    let partitioned = a.svc.resources().partitioned_topics(&ns).await?;
    if !topics.is_empty() || !partitioned.is_empty() {
        return Err(ApiError(BrokerError::Precondition(format!(
            "namespace {ns} is not empty ({} topics)",
            topics.len() + partitioned.len()
        ))));
    }
    a.svc.resources().delete_namespace(&ns).await?;
    no_content()
}

/// Changes one namespace policy and applies it to loaded topics.
async fn change_policy(a: &App, ns: &NamespaceName, change: impl FnMut(&mut Policies)) -> Reply {
    let p = a.svc.resources().update_policies(ns, change).await?;
    a.svc.policies_changed(ns, &p).await;
    no_content()
}

async fn get_retention(State(a): State<App>, Path((t, n)): Path<(String, String)>) -> Reply {
    let ns = NamespaceName::new(&t, &n)?;
    let p = namespace_policies(&a, &ns).await?;
    ok_json(p.retention_policies.unwrap_or(RetentionPolicies {
        retention_time_in_minutes: a.svc.cfg().default_retention_minutes,
        retention_size_in_mb: a.svc.cfg().default_retention_mb,
    }))
}

async fn set_retention(
    State(a): State<App>,
    Path((t, n)): Path<(String, String)>,
    raw: Bytes,
) -> Reply {
    let ns = NamespaceName::new(&t, &n)?;
    let r: RetentionPolicies = required(&raw)?;
    if r.retention_time_in_minutes < -1 || r.retention_size_in_mb < -1 {
        return Err(ApiError(BrokerError::BadRequest(
            "retention values must be -1 (unbounded) or more".into(),
        )));
    }
    change_policy(&a, &ns, |p| p.retention_policies = Some(r)).await
}

async fn remove_retention(State(a): State<App>, Path((t, n)): Path<(String, String)>) -> Reply {
    let ns = NamespaceName::new(&t, &n)?;
    change_policy(&a, &ns, |p| p.retention_policies = None).await
}

async fn get_ttl(State(a): State<App>, Path((t, n)): Path<(String, String)>) -> Reply {
    let ns = NamespaceName::new(&t, &n)?;
    ok_json(namespace_policies(&a, &ns).await?.message_ttl_in_seconds)
}

async fn set_ttl(State(a): State<App>, Path((t, n)): Path<(String, String)>, raw: Bytes) -> Reply {
    let ns = NamespaceName::new(&t, &n)?;
    let ttl: i64 = required(&raw)?;
    if ttl < 0 {
        return Err(ApiError(BrokerError::BadRequest(
            "message TTL must be 0 or more seconds".into(),
        )));
    }
    change_policy(&a, &ns, |p| p.message_ttl_in_seconds = Some(ttl)).await
}

async fn remove_ttl(State(a): State<App>, Path((t, n)): Path<(String, String)>) -> Reply {
    let ns = NamespaceName::new(&t, &n)?;
    change_policy(&a, &ns, |p| p.message_ttl_in_seconds = None).await
}

fn limit(raw: &Bytes, what: &str) -> Result<u32, ApiError> {
    let n: i64 = required(raw)?;
    u32::try_from(n).map_err(|_| {
        ApiError(BrokerError::BadRequest(format!(
            "{what} must be 0 (no limit) or more, not {n}"
        )))
    })
}

/// A per-topic limit of a namespace's policies.
#[derive(Clone, Copy)]
enum Limit {
    Producers,
    Consumers,
}

impl Limit {
    fn name(self) -> &'static str {
        match self {
            Limit::Producers => "maxProducersPerTopic",
            Limit::Consumers => "maxConsumersPerTopic",
        }
    }

    fn slot(self, p: &mut Policies) -> &mut Option<u32> {
        match self {
            Limit::Producers => &mut p.max_producers_per_topic,
            Limit::Consumers => &mut p.max_consumers_per_topic,
        }
    }
}

/// GET / POST / DELETE of one limit.
fn limit_ops(l: Limit) -> [Op; 3] {
    [
        Op::get(
            move |State(a): State<App>, Path((t, n)): Path<(String, String)>| async move {
                let ns = NamespaceName::new(&t, &n)?;
                let mut p = namespace_policies(&a, &ns).await?;
                ok_json(*l.slot(&mut p))
            },
            "Get the limit",
        ),
        Op::post(
            move |State(a): State<App>, Path((t, n)): Path<(String, String)>, raw: Bytes| async move {
                let ns = NamespaceName::new(&t, &n)?;
                let max = limit(&raw, l.name())?;
                change_policy(&a, &ns, |p| *l.slot(p) = Some(max)).await
            },
            "Set the limit (0 = none)",
        )
        .body(json!({"type": "integer", "minimum": 0}), true),
        Op::delete(
            move |State(a): State<App>, Path((t, n)): Path<(String, String)>| async move {
                let ns = NamespaceName::new(&t, &n)?;
                change_policy(&a, &ns, |p| *l.slot(p) = None).await
            },
            "Remove the limit",
        ),
    ]
}

async fn get_auto_creation(State(a): State<App>, Path((t, n)): Path<(String, String)>) -> Reply {
    let ns = NamespaceName::new(&t, &n)?;
    ok_json(namespace_policies(&a, &ns).await?.auto_topic_creation)
}

async fn set_auto_creation(
    State(a): State<App>,
    Path((t, n)): Path<(String, String)>,
    raw: Bytes,
) -> Reply {
    let ns = NamespaceName::new(&t, &n)?;
    let o: crate::resources::AutoTopicCreation = required(&raw)?;
    let partitioned = match o.topic_type.as_str() {
        "non-partitioned" => false,
        "partitioned" => true,
        other => {
            return Err(ApiError(BrokerError::BadRequest(format!(
                "topicType must be \"non-partitioned\" or \"partitioned\", not {other:?}"
            ))))
        }
    };
    if partitioned && !(1..=10_000).contains(&o.default_num_partitions.unwrap_or(0)) {
        return Err(ApiError(BrokerError::BadRequest(
            "partitioned auto-creation needs defaultNumPartitions between 1 and 10000".into(),
        )));
    }
    change_policy(&a, &ns, |p| p.auto_topic_creation = Some(o.clone())).await
}

async fn remove_auto_creation(State(a): State<App>, Path((t, n)): Path<(String, String)>) -> Reply {
    let ns = NamespaceName::new(&t, &n)?;
    change_policy(&a, &ns, |p| p.auto_topic_creation = None).await
}

async fn get_dedup(State(a): State<App>, Path((t, n)): Path<(String, String)>) -> Reply {
    let ns = NamespaceName::new(&t, &n)?;
    ok_json(namespace_policies(&a, &ns).await?.deduplication_enabled)
}

async fn set_dedup(
    State(a): State<App>,
    Path((t, n)): Path<(String, String)>,
    raw: Bytes,
) -> Reply {
    let ns = NamespaceName::new(&t, &n)?;
    let on: bool = required(&raw)?;
    change_policy(&a, &ns, |p| p.deduplication_enabled = Some(on)).await
}

async fn remove_dedup(State(a): State<App>, Path((t, n)): Path<(String, String)>) -> Reply {
    let ns = NamespaceName::new(&t, &n)?;
    change_policy(&a, &ns, |p| p.deduplication_enabled = None).await
}

// ---- topics -----------------------------------------------------------------

async fn list_topics(State(a): State<App>, Path((t, n)): Path<(String, String)>) -> Reply {
    let ns = NamespaceName::new(&t, &n)?;
    namespace_policies(&a, &ns).await?;
    ok_json(a.svc.list_topics(&ns).await?)
}

async fn list_partitioned(State(a): State<App>, Path((t, n)): Path<(String, String)>) -> Reply {
    let ns = NamespaceName::new(&t, &n)?;
    namespace_policies(&a, &ns).await?;
    let names: Vec<String> = a
        .svc
        .resources()
        .partitioned_topics(&ns)
        .await?
        .into_iter()
        .map(|local| format!("persistent://{ns}/{local}"))
        .collect();
    ok_json(names)
}

async fn topic_name(a: &App, t: &str, n: &str, topic: &str) -> Result<TopicName, ApiError> {
    let ns = NamespaceName::new(t, n)?;
    namespace_policies(a, &ns).await?;
    Ok(TopicName::new(ns, topic)?)
}

async fn create_topic(
    State(a): State<App>,
    Path((t, n, topic)): Path<(String, String, String)>,
) -> Reply {
    let name = topic_name(&a, &t, &n, &topic).await?;
    if a.svc.resources().partitioned(&name).await?.is_some() || a.svc.topic_exists(&name).await? {
        return Err(ApiError(BrokerError::Conflict(format!(
            "topic {name} already exists"
        ))));
    }
    a.svc.create_topic(&name).await?;
    no_content()
}

#[derive(Deserialize, Default)]
struct ForceQuery {
    #[serde(default)]
    force: bool,
}

async fn delete_topic(
    State(a): State<App>,
    Path((t, n, topic)): Path<(String, String, String)>,
    Query(q): Query<ForceQuery>,
) -> Reply {
    let name = topic_name(&a, &t, &n, &topic).await?;
    a.svc.delete_topic(&name, q.force).await?;
    no_content()
}

async fn get_partitions(
    State(a): State<App>,
    Path((t, n, topic)): Path<(String, String, String)>,
) -> Reply {
    let name = topic_name(&a, &t, &n, &topic).await?;
    let md = a
        .svc
        .resources()
        .partitioned(&name)
        .await?
        .unwrap_or_default();
    ok_json(md)
}

fn partition_count(raw: &Bytes) -> Result<u32, ApiError> {
    let n: i64 = required(raw)?;
    if !(1..=10_000).contains(&n) {
        return Err(ApiError(BrokerError::BadRequest(format!(
            "number of partitions must be between 1 and 10000, not {n}"
        ))));
    }
    Ok(n as u32)
}

async fn create_partitioned(
    State(a): State<App>,
    Path((t, n, topic)): Path<(String, String, String)>,
    raw: Bytes,
) -> Reply {
    let name = topic_name(&a, &t, &n, &topic).await?;
    let count = partition_count(&raw)?;
    if a.svc.topic_exists(&name).await? {
        return Err(ApiError(BrokerError::Conflict(format!(
            "a non-partitioned topic {name} exists"
        ))));
    }
    match a
        .svc
        .resources()
        .put_partitioned(&name, PartitionedTopicMetadata { partitions: count }, 0)
        .await
    {
        Err(BrokerError::Conflict(_)) => Err(ApiError(BrokerError::Conflict(format!(
            "partitioned topic {name} already exists"
        )))),
        r => {
            r?;
            no_content()
        }
    }
}

async fn update_partitioned(
    State(a): State<App>,
    Path((t, n, topic)): Path<(String, String, String)>,
    raw: Bytes,
) -> Reply {
    let name = topic_name(&a, &t, &n, &topic).await?;
    let count = partition_count(&raw)?;
    let Some((md, version)) = a.svc.resources().partitioned_with_version(&name).await? else {
        return Err(not_found(format!(
            "partitioned topic {name} does not exist"
        )));
    };
    if count <= md.partitions {
        return Err(ApiError(BrokerError::BadRequest(format!(
            "partitions can only grow (now {})",
            md.partitions
        ))));
    }
    a.svc
        .resources()
        .put_partitioned(
            &name,
            PartitionedTopicMetadata { partitions: count },
            version,
        )
        .await?;
    no_content()
}

async fn delete_partitioned(
    State(a): State<App>,
    Path((t, n, topic)): Path<(String, String, String)>,
    Query(q): Query<ForceQuery>,
) -> Reply {
    let name = topic_name(&a, &t, &n, &topic).await?;
    let Some(md) = a.svc.resources().partitioned(&name).await? else {
        return Err(not_found(format!(
            "partitioned topic {name} does not exist"
        )));
    };
    for i in 0..md.partitions {
        let p = name.partition(i);
        if a.svc.topic_exists(&p).await? {
            cluster::delete_anywhere(&a, &p, q.force).await?;
        }
    }
    a.svc.resources().delete_partitioned(&name).await?;
    a.svc.resources().delete_schemas(&name).await?;
    no_content()
}

/// Loads an existing topic (404 if it does not exist).
async fn existing_topic(
    a: &App,
    t: &str,
    n: &str,
    topic: &str,
) -> Result<Arc<crate::topic::Topic>, ApiError> {
    let name = topic_name(a, t, n, topic).await?;
    if !a.svc.topic_exists(&name).await? {
        return Err(not_found(format!("topic {name} not found")));
    }
    Ok(a.svc.topic(&name, false).await?)
}

async fn topic_stats(
    State(a): State<App>,
    Path((t, n, topic)): Path<(String, String, String)>,
) -> Reply {
    let topic = existing_topic(&a, &t, &n, &topic).await?;
    ok_json(topic.stats().await)
}

async fn partitioned_stats(
    State(a): State<App>,
    Path((t, n, topic)): Path<(String, String, String)>,
) -> Reply {
    let name = topic_name(&a, &t, &n, &topic).await?;
    let Some(md) = a.svc.resources().partitioned(&name).await? else {
        return Err(not_found(format!(
            "partitioned topic {name} does not exist"
        )));
    };
    let mut partitions = serde_json::Map::new();
    let (mut msg_in, mut bytes_in, mut storage) = (0u64, 0u64, 0u64);
    for i in 0..md.partitions {
        let p = name.partition(i);
        if !a.svc.topic_exists(&p).await? {
            continue;
        }
        let Some(s) = cluster::stats_anywhere(&a, &p).await? else {
            continue;
        };
        let n = |k: &str| s[k].as_u64().unwrap_or(0);
        msg_in += n("msgInCounter");
        bytes_in += n("bytesInCounter");
        storage += n("storageSize");
        partitions.insert(p.to_string(), s);
    }
    ok_json(json!({
        "metadata": {"partitions": md.partitions},
        "msgInCounter": msg_in,
        "bytesInCounter": bytes_in,
        "storageSize": storage,
        "partitions": partitions,
    }))
}

async fn internal_stats(
    State(a): State<App>,
    Path((t, n, topic)): Path<(String, String, String)>,
) -> Reply {
    let topic = existing_topic(&a, &t, &n, &topic).await?;
    ok_json(topic.ml.stats())
}

async fn list_subscriptions(
    State(a): State<App>,
    Path((t, n, topic)): Path<(String, String, String)>,
) -> Reply {
    let topic = existing_topic(&a, &t, &n, &topic).await?;
    ok_json(topic.subscription_names())
}

async fn unload_topic(
    State(a): State<App>,
    Path((t, n, topic)): Path<(String, String, String)>,
) -> Reply {
    let name = topic_name(&a, &t, &n, &topic).await?;
    a.svc.unload(&name).await?;
    no_content()
}

/// Ends the topic: producers are refused from now on; consumers get
/// everything written before and then "reached end of topic". Returns the
/// last message id.
async fn terminate_topic(
    State(a): State<App>,
    Path((t, n, topic)): Path<(String, String, String)>,
) -> Reply {
    let topic = existing_topic(&a, &t, &n, &topic).await?;
    let last = topic
        .ml
        .terminate(std::time::Duration::from_secs(30))
        .await
        .map_err(BrokerError::from)?;
    ok_json(json!({
        "ledgerId": last.ledger_id,
        "entryId": last.entry_id,
        "partitionIndex": topic.name.partition_index().map_or(-1, |i| i as i64),
    }))
}

async fn delete_subscription(
    State(a): State<App>,
    Path((t, n, topic, sub)): Path<(String, String, String, String)>,
    Query(q): Query<ForceQuery>,
) -> Reply {
    let topic = existing_topic(&a, &t, &n, &topic).await?;
    topic.delete_subscription(&sub, q.force).await?;
    no_content()
}

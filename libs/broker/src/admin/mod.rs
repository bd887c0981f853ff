//! The broker's HTTP surface: Pulsar's admin REST v2 (core set), `/metrics`
//! and `/health`. Errors carry Pulsar's status codes and a `{"reason": …}`
//! body; a request that fails changes nothing.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, put};
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

mod auth;
mod cluster;
mod produce;
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
    let app = App { svc, registry };
    let ns = "/admin/v2/namespaces/{tenant}/{namespace}";
    let topic = "/admin/v2/persistent/{tenant}/{namespace}/{topic}";
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/admin/v2/clusters", get(list_clusters))
        .route(
            "/admin/v2/clusters/{cluster}",
            get(get_cluster).put(create_cluster),
        )
        .route("/admin/v2/tenants", get(list_tenants))
        .route(
            "/admin/v2/tenants/{tenant}",
            get(get_tenant)
                .put(create_tenant)
                .post(update_tenant)
                .delete(delete_tenant),
        )
        .route("/admin/v2/namespaces/{tenant}", get(list_namespaces))
        .route(
            ns,
            get(get_namespace)
                .put(create_namespace)
                .delete(delete_namespace),
        )
        .route(
            &format!("{ns}/retention"),
            get(get_retention)
                .post(set_retention)
                .delete(remove_retention),
        )
        .route(
            &format!("{ns}/messageTTL"),
            get(get_ttl).post(set_ttl).delete(remove_ttl),
        )
        .route(
            &format!("{ns}/deduplication"),
            get(get_dedup).post(set_dedup).delete(remove_dedup),
        )
        .route(
            &format!("{ns}/maxProducersPerTopic"),
            limit_routes(Limit::Producers),
        )
        .route(
            &format!("{ns}/maxConsumersPerTopic"),
            limit_routes(Limit::Consumers),
        )
        .route(
            &format!("{ns}/autoTopicCreation"),
            get(get_auto_creation)
                .post(set_auto_creation)
                .delete(remove_auto_creation),
        )
        .route(
            "/admin/v2/persistent/{tenant}/{namespace}",
            get(list_topics),
        )
        .route(
            "/admin/v2/persistent/{tenant}/{namespace}/partitioned",
            get(list_partitioned),
        )
        .route(topic, put(create_topic).delete(delete_topic))
        .route(
            &format!("{topic}/partitions"),
            get(get_partitions)
                .put(create_partitioned)
                .post(update_partitioned)
                .delete(delete_partitioned),
        )
        .route(&format!("{topic}/stats"), get(topic_stats))
        .route(
            &format!("{topic}/partitioned-stats"),
            get(partitioned_stats),
        )
        .route(&format!("{topic}/internalStats"), get(internal_stats))
        .route(&format!("{topic}/subscriptions"), get(list_subscriptions))
        .route(
            &format!("{topic}/subscription/{{subscription}}"),
            delete(delete_subscription).put(subscriptions::create),
        )
        .route(&format!("{topic}/unload"), put(unload_topic))
        .route(
            &format!("{topic}/subscription/{{subscription}}/resetcursor/{{timestamp}}"),
            axum::routing::post(subscriptions::reset_by_time),
        )
        .route(
            &format!("{topic}/subscription/{{subscription}}/resetcursor"),
            axum::routing::post(subscriptions::reset_by_id),
        )
        .route(
            &format!("{topic}/subscription/{{subscription}}/skip_all"),
            axum::routing::post(subscriptions::skip_all),
        )
        .route(
            &format!("{topic}/subscription/{{subscription}}/expireMessages/{{seconds}}"),
            axum::routing::post(subscriptions::expire),
        )
        .route(
            &format!("{ns}/permissions"),
            get(auth::namespace_permissions),
        )
        .route(
            &format!("{ns}/permissions/{{role}}"),
            axum::routing::post(auth::grant_namespace).delete(auth::revoke_namespace),
        )
        .route(
            &format!("{topic}/permissions"),
            get(auth::topic_permissions),
        )
        .route(
            &format!("{topic}/permissions/{{role}}"),
            axum::routing::post(auth::grant_topic).delete(auth::revoke_topic),
        )
        .route(
            "/topics/persistent/{tenant}/{namespace}/{topic}",
            axum::routing::post(produce::produce),
        )
        .route(
            "/topics/persistent/{tenant}/{namespace}/{topic}/partitions/{partition}",
            axum::routing::post(produce::produce_partition),
        )
        .route(
            "/ws/v2/producer/persistent/{tenant}/{namespace}/{topic}",
            get(crate::websocket::producer),
        )
        .route(
            "/ws/v2/consumer/persistent/{tenant}/{namespace}/{topic}/{subscription}",
            get(crate::websocket::consumer),
        )
        .route(
            "/ws/v2/reader/persistent/{tenant}/{namespace}/{topic}",
            get(crate::websocket::reader),
        )
        .merge(cluster::routes())
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
        .map_err(|e| ApiError(BrokerError::Internal(e.to_string())))?;
    let mut text = String::from_utf8_lossy(&buf).into_owned();
    topic_metrics(&a.svc, &mut text).await;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        text,
    )
        .into_response())
}

/// Per-topic gauges and counters with Pulsar's metric names.
async fn topic_metrics(svc: &BrokerService, out: &mut String) {
    let cluster = &svc.cfg().cluster;
    let mut rows: Vec<(String, &str, f64)> = Vec::new();
    for t in svc.loaded_topics() {
        let s = t.stats().await;
        let labels = format!(
            "cluster=\"{cluster}\",namespace=\"{}\",topic=\"{}\"",
            t.name.namespace, t.name
        );
        let backlog: u64 = s.subscriptions.values().map(|x| x.msg_backlog).sum();
        let consumers: usize = s.subscriptions.values().map(|x| x.consumers.len()).sum();
        rows.push((labels.clone(), "pulsar_rate_in", s.msg_rate_in));
        rows.push((labels.clone(), "pulsar_rate_out", s.msg_rate_out));
        rows.push((labels.clone(), "pulsar_throughput_in", s.msg_throughput_in));
        rows.push((
            labels.clone(),
            "pulsar_throughput_out",
            s.msg_throughput_out,
        ));
        rows.push((
            labels.clone(),
            "pulsar_in_messages_total",
            s.msg_in_counter as f64,
        ));
        rows.push((
            labels.clone(),
            "pulsar_in_bytes_total",
            s.bytes_in_counter as f64,
        ));
        rows.push((
            labels.clone(),
            "pulsar_out_messages_total",
            s.msg_out_counter as f64,
        ));
        rows.push((labels.clone(), "pulsar_storage_size", s.storage_size as f64));
        rows.push((labels.clone(), "pulsar_msg_backlog", backlog as f64));
        rows.push((
            labels.clone(),
            "pulsar_producers_count",
            s.publishers.len() as f64,
        ));
        rows.push((
            labels.clone(),
            "pulsar_subscriptions_count",
            s.subscriptions.len() as f64,
        ));
        rows.push((labels, "pulsar_consumers_count", consumers as f64));
    }
    rows.sort_by(|a, b| a.1.cmp(b.1));
    let mut last = "";
    for (labels, name, v) in &rows {
        if *name != last {
            let _ = writeln!(out, "# TYPE {name} gauge");
            last = name;
        }
        let _ = writeln!(out, "{name}{{{labels}}} {v}");
    }
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
fn limit_routes(l: Limit) -> axum::routing::MethodRouter<App> {
    get(
        move |State(a): State<App>, Path((t, n)): Path<(String, String)>| async move {
            let ns = NamespaceName::new(&t, &n)?;
            let mut p = namespace_policies(&a, &ns).await?;
            ok_json(*l.slot(&mut p))
        },
    )
    .post(
        move |State(a): State<App>, Path((t, n)): Path<(String, String)>, raw: Bytes| async move {
            let ns = NamespaceName::new(&t, &n)?;
            let max = limit(&raw, l.name())?;
            change_policy(&a, &ns, |p| *l.slot(p) = Some(max)).await
        },
    )
    .delete(
        move |State(a): State<App>, Path((t, n)): Path<(String, String)>| async move {
            let ns = NamespaceName::new(&t, &n)?;
            change_policy(&a, &ns, |p| *l.slot(p) = None).await
        },
    )
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

async fn delete_subscription(
    State(a): State<App>,
    Path((t, n, topic, sub)): Path<(String, String, String, String)>,
    Query(q): Query<ForceQuery>,
) -> Reply {
    let topic = existing_topic(&a, &t, &n, &topic).await?;
    topic.delete_subscription(&sub, q.force).await?;
    no_content()
}

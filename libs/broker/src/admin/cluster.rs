//! The cluster's HTTP surface: brokers, the leader, namespace bundles
//! (list, unload, split), topic lookup, and the redirect that sends an admin
//! call for a topic to the broker that serves it.

use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use magnetar_common::names::{NamespaceName, TopicName};
use serde::Deserialize;
use serde_json::json;

use super::openapi::{object, string_list, Api, Op};
use super::{namespace_policies, no_content, not_found, ok_json, ApiError, App, Reply};
use crate::bundle::BundleRange;
use crate::cluster::{self, Command};
use crate::error::BrokerError;
use crate::lookup::{self, live_brokers, Answer};
use crate::ownership::{BundleId, OwnerData};

pub(super) fn routes() -> Api {
    let ns = "/admin/v2/namespaces/{tenant}/{namespace}";
    Api::new()
        .route(
            "/admin/v2/brokers/leaderBroker",
            [Op::get(leader_broker, "The leader broker").returns(object())],
        )
        .route(
            "/admin/v2/brokers/{cluster}",
            [Op::get(list_brokers, "Live brokers of a cluster").returns(string_list())],
        )
        .route(
            "/admin/v2/brokers/{cluster}/{broker}/ownedNamespaces",
            [Op::get(owned_namespaces, "Bundles a broker owns").returns(object())],
        )
        .route(
            &format!("{ns}/bundles"),
            [Op::get(get_bundles, "A namespace's bundles").returns(object())],
        )
        .route(
            &format!("{ns}/unload"),
            [Op::put(
                unload_namespace,
                "Unload every bundle of a namespace",
            )],
        )
        .route(
            &format!("{ns}/{{bundle}}/unload"),
            [Op::put(unload_bundle, "Unload a bundle")],
        )
        .route(
            &format!("{ns}/{{bundle}}/split"),
            [Op::put(split_bundle, "Split a bundle in two")],
        )
        .route(
            "/lookup/v2/topic/{domain}/{tenant}/{namespace}/{topic}",
            [Op::get(lookup_topic, "The broker serving a topic")
                .query("authoritative", json!({"type": "boolean"}))
                .returns(object())],
        )
}

#[derive(Deserialize, Default)]
struct AuthoritativeQuery {
    #[serde(default)]
    authoritative: bool,
}

/// 307 to the same path and query on another broker; `authoritative` marks
/// a broker chosen to take an unowned bundle.
/// Whether a request came over HTTPS.
fn over_tls(extensions: &axum::http::Extensions) -> bool {
    extensions
        .get::<axum::extract::ConnectInfo<crate::tls::TlsPeer>>()
        .is_some()
}

/// A caller over HTTPS is sent to the owner's HTTPS URL (`tls`).
fn redirect(to: &OwnerData, uri: &Uri, authoritative: bool, tls: bool) -> Response {
    let mut location = format!("{}{}", to.web_url(tls).trim_end_matches('/'), uri.path());
    let query: Vec<&str> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("authoritative="))
        .collect();
    let mut query = query.join("&");
    if authoritative {
        if !query.is_empty() {
            query.push('&');
        }
        query.push_str("authoritative=true");
    }
    if !query.is_empty() {
        location.push('?');
        location.push_str(&query);
    }
    (
        StatusCode::TEMPORARY_REDIRECT,
        [(header::LOCATION, location)],
    )
        .into_response()
}

/// The topic an admin path is about, when the call needs the topic's owner
/// (stats, subscriptions, create, delete, unload). Partitioned-topic
/// metadata and listings are answered by any broker.
fn topic_of_path(path: &str) -> Option<TopicName> {
    let rest = path.strip_prefix("/admin/v2/persistent/")?;
    let parts: Vec<&str> = rest.split('/').collect();
    if parts.len() < 3 || (parts.len() == 3 && parts[2] == "partitioned") {
        return None;
    }
    if parts.len() > 3 && matches!(parts[3], "partitions" | "partitioned-stats" | "permissions") {
        return None;
    }
    let ns = NamespaceName::new(parts[0], parts[1]).ok()?;
    TopicName::new(ns, parts[2]).ok()
}

fn is_authoritative(uri: &Uri) -> bool {
    uri.query()
        .unwrap_or("")
        .split('&')
        .any(|p| p == "authoritative=true")
}

/// Middleware: an admin call for a topic served elsewhere is redirected
/// there (as Pulsar does); one for an unowned bundle first places it.
pub(super) async fn served_here(State(a): State<App>, req: Request, next: Next) -> Response {
    let Some(topic) = topic_of_path(req.uri().path()) else {
        return next.run(req).await;
    };
    let tls = crate::tls::request_peer(&req).is_some();
    match lookup::lookup(&a.svc, &topic, is_authoritative(req.uri())).await {
        Ok(Answer::Here) => next.run(req).await,
        Ok(Answer::Owner(o)) => redirect(&o, req.uri(), false, tls),
        Ok(Answer::Assign(o)) => redirect(&o, req.uri(), true, tls),
        // A namespace that does not exist: the handler says so properly.
        Err(BrokerError::TopicNotFound(_)) => next.run(req).await,
        Err(e) => ApiError(e).into_response(),
    }
}

async fn lookup_topic(
    State(a): State<App>,
    Path((domain, t, n, topic)): Path<(String, String, String, String)>,
    Query(q): Query<AuthoritativeQuery>,
    uri: Uri,
    extensions: axum::http::Extensions,
) -> Reply {
    if domain != "persistent" {
        return Err(ApiError(BrokerError::BadRequest(format!(
            "unsupported topic domain {domain:?}"
        ))));
    }
    let ns = NamespaceName::new(&t, &n)?;
    namespace_policies(&a, &ns).await?;
    let name = TopicName::new(ns, &topic)?;
    let owner = match lookup::lookup(&a.svc, &name, q.authoritative).await? {
        Answer::Here => a.svc.ownership().me.clone(),
        Answer::Owner(o) => o,
        Answer::Assign(o) => {
            return Ok(redirect(&o, &uri, true, over_tls(&extensions)));
        }
    };
    ok_json(json!({
        "brokerUrl": owner.native_url,
        "nativeUrl": owner.native_url,
        "httpUrl": owner.http_url,
        "brokerUrlTls": owner.native_url_tls.unwrap_or_default(),
        "httpUrlTls": owner.http_url_tls.unwrap_or_default(),
    }))
}

async fn leader_broker(State(a): State<App>) -> Reply {
    match cluster::leader(&a.svc).await? {
        Some(l) => ok_json(l),
        None => Err(not_found("no leader broker is elected".into())),
    }
}

async fn list_brokers(State(a): State<App>, Path(cluster): Path<String>) -> Reply {
    if a.svc.resources().cluster(&cluster).await?.is_none() {
        return Err(not_found(format!("cluster {cluster} does not exist")));
    }
    let mut ids: Vec<String> = live_brokers(&a.svc)
        .await?
        .into_iter()
        .filter(|r| r.cluster == cluster)
        .map(|r| r.broker_id)
        .collect();
    ids.sort();
    ok_json(ids)
}

async fn owned_namespaces(
    State(a): State<App>,
    Path((_cluster, broker)): Path<(String, String)>,
) -> Reply {
    let owned: serde_json::Map<String, serde_json::Value> = a
        .svc
        .ownership()
        .all_owners()
        .await?
        .into_iter()
        .filter(|(_, o)| o.broker_id == broker)
        .map(|(b, _)| {
            (
                b.to_string(),
                json!({"broker_assignment": "shared", "is_controlled": false, "is_active": true}),
            )
        })
        .collect();
    ok_json(owned)
}

async fn bundle_id(a: &App, t: &str, n: &str, bundle: &str) -> Result<BundleId, ApiError> {
    let ns = NamespaceName::new(t, n)?;
    let p = namespace_policies(a, &ns).await?;
    let range = BundleRange::parse(bundle)?;
    if !a.svc.bundles_of(&p)?.contains(&range) {
        return Err(not_found(format!("bundle {bundle} of {ns} does not exist")));
    }
    Ok(BundleId {
        namespace: ns,
        range,
    })
}

async fn get_bundles(State(a): State<App>, Path((t, n)): Path<(String, String)>) -> Reply {
    let ns = NamespaceName::new(&t, &n)?;
    let p = namespace_policies(&a, &ns).await?;
    ok_json(a.svc.bundles_of(&p)?.to_data())
}

async fn unload_bundle(
    State(a): State<App>,
    Path((t, n, bundle)): Path<(String, String, String)>,
    uri: Uri,
    extensions: axum::http::Extensions,
) -> Reply {
    let b = bundle_id(&a, &t, &n, &bundle).await?;
    if a.svc.release_bundle(&b).await? {
        return no_content();
    }
    match a.svc.ownership().owner(&b).await? {
        Some(o) if o.broker_id != a.svc.ownership().me.broker_id => {
            Ok(redirect(&o, &uri, false, over_tls(&extensions)))
        }
        // Not owned: nothing is served, nothing to unload.
        _ => no_content(),
    }
}

/// Unloads every bundle of a namespace, asking other owners through the
/// metadata service and waiting (up to 10 s) until they let go.
async fn unload_namespace(State(a): State<App>, Path((t, n)): Path<(String, String)>) -> Reply {
    let ns = NamespaceName::new(&t, &n)?;
    let p = namespace_policies(&a, &ns).await?;
    let mut elsewhere = Vec::new();
    for range in a.svc.bundles_of(&p)?.ranges() {
        let b = BundleId {
            namespace: ns.clone(),
            range,
        };
        if a.svc.release_bundle(&b).await? {
            continue;
        }
        if a.svc.ownership().owner(&b).await?.is_some() {
            cluster::request(&a.svc, &b, Command::Unload).await?;
            elsewhere.push(b);
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for b in elsewhere {
        while a.svc.ownership().owner(&b).await?.is_some() {
            if tokio::time::Instant::now() > deadline {
                return Err(ApiError(BrokerError::ServiceNotReady(format!(
                    "bundle {b} was not unloaded in time"
                ))));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    no_content()
}

#[derive(Deserialize, Default)]
struct SplitQuery {
    #[serde(default)]
    unload: bool,
}

async fn split_bundle(
    State(a): State<App>,
    Path((t, n, bundle)): Path<(String, String, String)>,
    Query(q): Query<SplitQuery>,
    uri: Uri,
    extensions: axum::http::Extensions,
) -> Reply {
    let b = bundle_id(&a, &t, &n, &bundle).await?;
    // The owner splits; an unowned bundle is taken first.
    if !a.svc.ownership().serves(&b) {
        if let Some(o) = a.svc.acquire(&b).await? {
            return Ok(redirect(&o, &uri, false, over_tls(&extensions)));
        }
    }
    a.svc.split_bundle(&b, q.unload).await?;
    no_content()
}

fn own_token(a: &App) -> Option<&str> {
    a.svc.cfg().auth.as_ref().map(|x| x.client_token.as_str())
}

/// What calls to other brokers over HTTPS trust (`--tls-trust-certs`).
fn peer_tls(a: &App) -> Option<&magnetar_tls::ClientTlsConfig> {
    a.svc.cfg().tls.as_ref().and_then(|t| t.client.as_ref())
}

fn admin_path(t: &TopicName) -> String {
    format!("/admin/v2/persistent/{}/{}", t.namespace, t.local)
}

/// Where a topic is served: here (`None`) or the URL prefix of its broker.
async fn served_at(a: &App, t: &TopicName) -> Result<Option<String>, ApiError> {
    Ok(match lookup::lookup(&a.svc, t, false).await? {
        Answer::Here => None,
        Answer::Owner(o) => Some(format!("{}{}", o.http_url, admin_path(t))),
        Answer::Assign(o) => Some(format!(
            "{}{}?authoritative=true",
            o.http_url,
            admin_path(t)
        )),
    })
}

/// A topic's stats from whichever broker serves it (`None`: no such topic).
pub(super) async fn stats_anywhere(
    a: &App,
    t: &TopicName,
) -> Result<Option<serde_json::Value>, ApiError> {
    let Some(url) = served_at(a, t).await? else {
        return Ok(Some(
            serde_json::to_value(a.svc.topic(t, false).await?.stats().await).unwrap_or_default(),
        ));
    };
    let url = match url.split_once('?') {
        Some((base, q)) => format!("{base}/stats?{q}"),
        None => format!("{url}/stats"),
    };
    let (code, body) =
        crate::peer::call(hyper::Method::GET, &url, own_token(a), peer_tls(a)).await?;
    match code.as_u16() {
        200 => Ok(serde_json::from_slice(&body).ok()),
        404 => Ok(None),
        c => Err(ApiError(BrokerError::ServiceNotReady(format!(
            "stats of {t} from its broker: HTTP {c}"
        )))),
    }
}

/// Deletes a topic at whichever broker serves it.
pub(super) async fn delete_anywhere(a: &App, t: &TopicName, force: bool) -> Result<(), ApiError> {
    let Some(url) = served_at(a, t).await? else {
        return Ok(a.svc.delete_topic(t, force).await?);
    };
    let sep = if url.contains('?') { '&' } else { '?' };
    let url = format!("{url}{sep}force={force}");
    let (code, body) =
        crate::peer::call(hyper::Method::DELETE, &url, own_token(a), peer_tls(a)).await?;
    match code.as_u16() {
        200..=299 | 404 => Ok(()),
        c => {
            let reason = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["reason"].as_str().map(str::to_string))
                .unwrap_or_default();
            Err(ApiError(match c {
                412 => BrokerError::Precondition(reason),
                _ => BrokerError::ServiceNotReady(format!("deleting {t}: HTTP {c} {reason}")),
            }))
        }
    }
}

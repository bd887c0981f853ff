//! Authentication and authorization of HTTP calls (token authentication
//! on), and the permission endpoints.
//!
//! A call carries `Authorization: Bearer <token>`; a WebSocket upgrade may
//! carry the token as the `token` query parameter instead (browsers cannot
//! set headers on WebSockets). Who may call what follows the path:
//! clusters, brokers and tenants are the superusers'; a tenant's namespaces
//! and topics are its admins'; lookup, REST produce and WebSocket sessions
//! need the produce or consume permission on the topic.

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use magnetar_common::names::{NamespaceName, TopicName};

use super::{change_policy, namespace_policies, ok_json, required, ApiError, App, Reply};
use crate::authz::Action;
use crate::error::{BrokerError, Result};
use crate::service::BrokerService;

fn bearer(req: &Request) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(|t| t.trim().to_string())
}

fn query_token(req: &Request) -> Option<String> {
    req.uri()
        .query()?
        .split('&')
        .find_map(|p| p.strip_prefix("token="))
        .map(str::to_string)
}

pub(super) async fn authenticate(State(a): State<App>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if !a.svc.auth_enabled()
        || matches!(
            path.as_str(),
            "/health" | "/metrics" | "/admin/v2/openapi.json"
        )
    {
        return next.run(req).await;
    }
    let token = bearer(&req).or_else(|| {
        path.starts_with("/ws/")
            .then(|| query_token(&req))
            .flatten()
    });
    // A verified client certificate stands for its role when no token is given.
    let cert_role = crate::tls::request_peer(&req)
        .and_then(|p| p.cert_role.clone())
        .filter(|_| a.svc.tls_auth_enabled());
    let role = match (token.as_deref(), cert_role) {
        (None, Some(role)) => Ok(Some(role)),
        (token, _) => a.svc.authenticate(token),
    };
    let role = match role {
        Ok(r) => r,
        Err(e) => return ApiError(e).into_response(),
    };
    if let Err(e) = authorize(&a.svc, role.as_deref(), req.method(), &path).await {
        return ApiError(e).into_response();
    }
    next.run(req).await
}

fn topic_at(parts: &[&str], at: usize) -> Option<TopicName> {
    let ns = NamespaceName::new(parts.get(at)?, parts.get(at + 1)?).ok()?;
    TopicName::new(ns, parts.get(at + 2)?).ok()
}

async fn authorize(
    svc: &BrokerService,
    role: Option<&str>,
    method: &Method,
    path: &str,
) -> Result<()> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    match parts.as_slice() {
        ["admin", "v2", "clusters", ..] if method == Method::GET => Ok(()),
        ["admin", "v2", "clusters", ..] | ["admin", "v2", "brokers", ..] => {
            svc.check_superuser(role)
        }
        ["admin", "v2", "tenants", tenant] if method == Method::GET => {
            svc.check_tenant_admin(role, tenant).await
        }
        ["admin", "v2", "tenants", ..] => svc.check_superuser(role),
        ["admin", "v2", "namespaces", tenant, ..] | ["admin", "v2", "persistent", tenant, ..] => {
            svc.check_tenant_admin(role, tenant).await
        }
        // A topic's schema: read by whoever may produce or consume there,
        // changed by the tenant's admins.
        ["admin", "v2", "schemas", tenant, ..] if method != Method::GET => {
            svc.check_tenant_admin(role, tenant).await
        }
        ["admin", "v2", "schemas", ..] => match topic_at(&parts, 3) {
            Some(t) => svc.check_any(role, &t).await,
            None => Ok(()),
        },
        ["lookup", "v2", "topic", "persistent", ..] => match topic_at(&parts, 4) {
            Some(t) => svc.check_any(role, &t).await,
            None => Ok(()),
        },
        ["topics", "persistent", ..] | ["ws", "v2", "producer", "persistent", ..] => {
            let at = if parts[0] == "topics" { 2 } else { 4 };
            match topic_at(&parts, at) {
                Some(t) => svc.check(role, Action::Produce, &t).await,
                None => Ok(()),
            }
        }
        ["ws", "v2", "consumer" | "reader", "persistent", ..] => match topic_at(&parts, 4) {
            Some(t) => svc.check(role, Action::Consume, &t).await,
            None => Ok(()),
        },
        // Anything else is answered 404 by the router.
        _ => Ok(()),
    }
}

// ---- permissions -------------------------------------------------------------

fn actions(raw: &Bytes) -> Result<std::collections::BTreeSet<String>, ApiError> {
    let list: Vec<String> = required(raw)?;
    if list.is_empty() {
        return Err(ApiError(BrokerError::BadRequest(
            "grant at least one action (\"produce\", \"consume\")".into(),
        )));
    }
    for a in &list {
        if Action::parse(a).is_none() {
            return Err(ApiError(BrokerError::BadRequest(format!(
                "unknown action {a:?}; actions are \"produce\" and \"consume\""
            ))));
        }
    }
    Ok(list.into_iter().collect())
}

pub(super) async fn namespace_permissions(
    State(a): State<App>,
    Path((t, n)): Path<(String, String)>,
) -> Reply {
    let ns = NamespaceName::new(&t, &n)?;
    ok_json(
        namespace_policies(&a, &ns)
            .await?
            .auth_policies
            .namespace_auth,
    )
}

pub(super) async fn grant_namespace(
    State(a): State<App>,
    Path((t, n, role)): Path<(String, String, String)>,
    raw: Bytes,
) -> Reply {
    let ns = NamespaceName::new(&t, &n)?;
    let granted = actions(&raw)?;
    change_policy(&a, &ns, |p| {
        p.auth_policies
            .namespace_auth
            .insert(role.clone(), granted.clone());
    })
    .await
}

pub(super) async fn revoke_namespace(
    State(a): State<App>,
    Path((t, n, role)): Path<(String, String, String)>,
) -> Reply {
    let ns = NamespaceName::new(&t, &n)?;
    change_policy(&a, &ns, |p| {
        p.auth_policies.namespace_auth.remove(&role);
    })
    .await
}

pub(super) async fn topic_permissions(
    State(a): State<App>,
    Path((t, n, topic)): Path<(String, String, String)>,
) -> Reply {
    let ns = NamespaceName::new(&t, &n)?;
    let name = TopicName::new(ns.clone(), &topic)?;
    let p = namespace_policies(&a, &ns).await?;
    ok_json(
        p.auth_policies
            .destination_auth
            .get(&name.to_string())
            .cloned()
            .unwrap_or_default(),
    )
}

pub(super) async fn grant_topic(
    State(a): State<App>,
    Path((t, n, topic, role)): Path<(String, String, String, String)>,
    raw: Bytes,
) -> Reply {
    let ns = NamespaceName::new(&t, &n)?;
    let name = TopicName::new(ns.clone(), &topic)?.to_string();
    let granted = actions(&raw)?;
    change_policy(&a, &ns, |p| {
        p.auth_policies
            .destination_auth
            .entry(name.clone())
            .or_default()
            .insert(role.clone(), granted.clone());
    })
    .await
}

pub(super) async fn revoke_topic(
    State(a): State<App>,
    Path((t, n, topic, role)): Path<(String, String, String, String)>,
) -> Reply {
    let ns = NamespaceName::new(&t, &n)?;
    let name = TopicName::new(ns.clone(), &topic)?.to_string();
    change_policy(&a, &ns, |p| {
        if let Some(roles) = p.auth_policies.destination_auth.get_mut(&name) {
            roles.remove(&role);
            if roles.is_empty() {
                p.auth_policies.destination_auth.remove(&name);
            }
        }
    })
    .await
}

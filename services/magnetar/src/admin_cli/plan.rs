//! Commands as REST calls: a `Plan` says which calls a command makes and how
//! to show their answers; each group's file maps its commands to plans.

use super::*;

/// How to show a successful answer to people (`--json` ignores it).
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Show {
    /// Nothing interesting comes back: this line (and the body, if any).
    Done(String),
    /// A list of names, one row each under this header.
    List(&'static str),
    /// An object: key column and value column headers; objects as values
    /// become one column per field.
    Map(&'static str, &'static str),
    /// One value (`not set` for null).
    Value,
    /// A namespace's bundle boundaries as ranges.
    Bundles,
    /// Any document: fields, then nested tables and sections.
    Doc,
}

/// One REST call and how to show its answer.
#[derive(Debug, PartialEq)]
pub(super) struct Call {
    pub(super) method: Method,
    pub(super) path: String,
    pub(super) body: Option<Value>,
    pub(super) show: Show,
}

#[derive(Debug, PartialEq)]
pub(super) enum Plan {
    One(Call),
    /// pulsar-admin allows a new tenant in every cluster when none is named.
    CreateTenant {
        tenant: String,
        admin_roles: Vec<String>,
        allowed_clusters: Vec<String>,
    },
    /// pulsar-admin keeps what `update` does not name; the REST call
    /// replaces the whole tenant, so the current one is read first.
    UpdateTenant {
        tenant: String,
        admin_roles: Option<Vec<String>>,
        allowed_clusters: Option<Vec<String>>,
    },
    /// One call per position: the REST API returns one message at a time.
    Peek {
        topic: TopicName,
        subscription: String,
        count: u32,
    },
    /// The message id comes from the ledgers' sizes in internal stats.
    Offload {
        topic: TopicName,
        threshold: u64,
    },
    /// Polls the offload status until it is not RUNNING.
    OffloadWait {
        topic: TopicName,
    },
}

/// Percent-encodes one path segment (subscription and role names may hold
/// anything; the broker decodes segments).
pub(super) fn enc(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:=".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

pub(super) fn ns_path(ns: &NamespaceName) -> String {
    format!(
        "/admin/v2/namespaces/{}/{}",
        enc(&ns.tenant),
        enc(&ns.namespace)
    )
}

pub(super) fn topic_path(t: &TopicName) -> String {
    format!(
        "/admin/v2/persistent/{}/{}/{}",
        enc(&t.namespace.tenant),
        enc(&t.namespace.namespace),
        enc(&t.local)
    )
}

pub(super) fn sub_path(s: &SubArgs) -> String {
    format!(
        "{}/subscription/{}",
        topic_path(&s.topic),
        enc(&s.subscription)
    )
}

pub(super) fn call(
    method: Method,
    path: String,
    body: Option<Value>,
    show: Show,
) -> Result<Plan, String> {
    Ok(Plan::One(Call {
        method,
        path,
        body,
        show,
    }))
}

pub(super) fn get(path: String, show: Show) -> Result<Plan, String> {
    call(Method::GET, path, None, show)
}

pub(super) fn done(
    method: Method,
    path: String,
    body: Option<Value>,
    msg: String,
) -> Result<Plan, String> {
    call(method, path, body, Show::Done(msg))
}

pub(super) fn non_empty(list: Vec<String>) -> Vec<String> {
    list.into_iter().filter(|s| !s.is_empty()).collect()
}

pub(super) fn plan(group: Group) -> Result<Plan, String> {
    match group {
        Group::Clusters(c) => plan_clusters(c),
        Group::Tenants(c) => plan_tenants(c),
        Group::Namespaces(c) => plan_namespaces(c),
        Group::Topics(c) => plan_topics(c),
        Group::Schemas(c) => schemas::plan(c),
        Group::Brokers(c) => plan_brokers(c),
        Group::Init(_) => Err("`admin init` is not a single call".into()),
    }
}

//! Pulsar's schema admin REST (`/admin/v2/schemas/{tenant}/{namespace}/{topic}/…`)
//! and the namespace's schema policies (`schemaCompatibilityStrategy`,
//! `isAllowAutoUpdateSchema`, `schemaValidationEnforced`), with Pulsar's
//! JSON shapes: `GetSchemaResponse`, `GetAllVersionsSchemaResponse`,
//! `PostSchemaPayload`, `PostSchemaResponse`, `DeleteSchemaResponse`,
//! `IsCompatibilityResponse`.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use magnetar_common::names::NamespaceName;
use magnetar_schema::{SchemaType, Strategy};
use serde::Deserialize;
use serde_json::{json, Value};

use super::openapi::{object, Op};
use super::{
    change_policy, namespace_policies, not_found, ok_json, required, topic_name, Api, ApiError,
    App, ForceQuery, Reply,
};
use crate::error::BrokerError;
use crate::resources::SchemaVersion;
use crate::schema::{self, Adder, NewSchema};

pub(super) fn routes() -> Api {
    let base = "/admin/v2/schemas/{tenant}/{namespace}/{topic}";
    let ns = "/admin/v2/namespaces/{tenant}/{namespace}";
    let payload = || {
        json!({"type": "object", "required": ["type"], "properties": {
            "type": {"type": "string", "example": "AVRO"},
            "schema": {"type": "string"},
            "properties": {"type": "object", "additionalProperties": {"type": "string"}}}})
    };
    let strategies = || {
        json!({"type": "string", "enum": ["UNDEFINED", "ALWAYS_INCOMPATIBLE", "ALWAYS_COMPATIBLE",
            "BACKWARD", "FORWARD", "FULL", "BACKWARD_TRANSITIVE", "FORWARD_TRANSITIVE", "FULL_TRANSITIVE"]})
    };
    Api::new()
        .route(
            &format!("{base}/schema"),
            [
                Op::get(get_latest, "The topic's latest schema").returns(object()),
                Op::post(upload, "Add a schema version (if compatible)")
                    .body(payload(), true)
                    .returns(object()),
                Op::delete(delete, "Delete the topic's schema")
                    .query("force", json!({"type": "boolean"}))
                    .returns(object()),
            ],
        )
        .route(
            &format!("{base}/schema/{{version}}"),
            [Op::get(get_version, "One schema version").returns(object())],
        )
        .route(
            &format!("{base}/schemas"),
            [Op::get(get_all, "Every live schema version").returns(object())],
        )
        .route(
            &format!("{base}/getAllVersions"),
            [Op::get(get_all, "Every live schema version").returns(object())],
        )
        .route(
            &format!("{base}/compatibility"),
            [
                Op::post(compatibility, "Whether a schema could be added now")
                    .body(payload(), true)
                    .returns(object()),
            ],
        )
        .route(
            &format!("{base}/version"),
            [Op::post(version_of, "The version of a stored schema")
                .body(payload(), true)
                .returns(object())],
        )
        .route(
            &format!("{ns}/schemaCompatibilityStrategy"),
            [
                Op::get(get_strategy, "Get the schema compatibility strategy"),
                Op::put(set_strategy, "Set the schema compatibility strategy")
                    .body(strategies(), true),
            ],
        )
        .route(
            &format!("{ns}/isAllowAutoUpdateSchema"),
            [
                Op::get(get_auto_update, "Whether producers may add schema versions"),
                Op::post(set_auto_update, "Let producers add schema versions or not")
                    .body(json!({"type": "boolean"}), true),
            ],
        )
        .route(
            &format!("{ns}/schemaValidationEnforced"),
            [
                Op::get(get_enforced, "Whether producers must bring a schema"),
                Op::post(set_enforced, "Make producers bring a schema or not")
                    .body(json!({"type": "boolean"}), true),
            ],
        )
}

/// Pulsar's `PostSchemaPayload`.
#[derive(Deserialize)]
struct PostSchemaPayload {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    schema: String,
    #[serde(default)]
    properties: BTreeMap<String, String>,
}

impl PostSchemaPayload {
    fn into_schema(self) -> Result<NewSchema, BrokerError> {
        let kind = SchemaType::parse(&self.kind)?;
        Ok(NewSchema {
            kind,
            name: String::new(),
            data: magnetar_schema::from_rest_data(kind, &self.schema)?,
            properties: self.properties.into_iter().collect(),
        })
    }
}

/// Pulsar's `GetSchemaResponse`.
fn schema_json(version: u64, s: &SchemaVersion) -> Value {
    let kind = SchemaType::from_code(s.schema_type).unwrap_or(SchemaType::None);
    let properties: BTreeMap<&str, &str> = s
        .properties
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    json!({
        "version": version,
        "type": kind.name(),
        "timestamp": s.timestamp,
        "data": magnetar_schema::to_rest_data(kind, &s.data),
        "properties": properties,
    })
}

type TopicPath = Path<(String, String, String)>;

async fn get_latest(State(a): State<App>, Path((t, n, topic)): TopicPath) -> Reply {
    let name = topic_name(&a, &t, &n, &topic).await?;
    match schema::get(a.svc.resources(), &name, None).await? {
        Some((v, s)) => ok_json(schema_json(v, &s)),
        None => Err(not_found(format!("topic {name} has no schema"))),
    }
}

async fn get_version(
    State(a): State<App>,
    Path((t, n, topic, version)): Path<(String, String, String, String)>,
) -> Reply {
    let name = topic_name(&a, &t, &n, &topic).await?;
    let version: u64 = version.parse().map_err(|_| {
        ApiError(BrokerError::BadRequest(format!(
            "schema version {version:?} is not a number"
        )))
    })?;
    match schema::get(a.svc.resources(), &name, Some(version)).await? {
        Some((v, s)) => ok_json(schema_json(v, &s)),
        None => Err(not_found(format!(
            "topic {name} has no schema version {version}"
        ))),
    }
}

async fn get_all(State(a): State<App>, Path((t, n, topic)): TopicPath) -> Reply {
    let name = topic_name(&a, &t, &n, &topic).await?;
    let all = schema::all(a.svc.resources(), &name).await?;
    if all.is_empty() {
        return Err(not_found(format!("topic {name} has no schema")));
    }
    let list: Vec<Value> = all.iter().map(|(v, s)| schema_json(*v, s)).collect();
    ok_json(json!({ "getSchemaResponses": list }))
}

async fn upload(State(a): State<App>, Path((t, n, topic)): TopicPath, raw: Bytes) -> Reply {
    let name = topic_name(&a, &t, &n, &topic).await?;
    let new = required::<PostSchemaPayload>(&raw)?.into_schema()?;
    let version = schema::add(a.svc.resources(), &name, &new, Adder::Admin).await?;
    ok_json(json!({ "version": { "version": version } }))
}

async fn delete(
    State(a): State<App>,
    Path((t, n, topic)): TopicPath,
    Query(q): Query<ForceQuery>,
) -> Reply {
    let name = topic_name(&a, &t, &n, &topic).await?;
    let version = schema::delete(a.svc.resources(), &name, q.force).await?;
    ok_json(json!({ "version": version }))
}

async fn compatibility(State(a): State<App>, Path((t, n, topic)): TopicPath, raw: Bytes) -> Reply {
    let name = topic_name(&a, &t, &n, &topic).await?;
    let new = required::<PostSchemaPayload>(&raw)?.into_schema()?;
    let strategy = schema::policy(a.svc.resources(), &name).await?.strategy;
    let compatible = match schema::check(a.svc.resources(), &name, &new).await {
        Ok(()) => true,
        Err(BrokerError::Schema(magnetar_schema::SchemaError::Incompatible(_))) => false,
        Err(e) => return Err(e.into()),
    };
    ok_json(json!({
        "compatibility": compatible,
        "schemaCompatibilityStrategy": strategy.name(),
    }))
}

async fn version_of(State(a): State<App>, Path((t, n, topic)): TopicPath, raw: Bytes) -> Reply {
    let name = topic_name(&a, &t, &n, &topic).await?;
    let new = required::<PostSchemaPayload>(&raw)?.into_schema()?;
    let all = schema::all(a.svc.resources(), &name).await?;
    let wanted = magnetar_schema::SchemaRef::new(new.kind, &new.data, &new.properties);
    for (v, s) in &all {
        let kind = SchemaType::from_code(s.schema_type).map_err(BrokerError::from)?;
        let stored = magnetar_schema::SchemaRef::new(kind, &s.data, &s.properties);
        if magnetar_schema::same(&stored, &wanted) {
            return ok_json(json!({ "version": v }));
        }
    }
    Err(not_found(format!("topic {name} has no such schema")))
}

// ---- namespace policies -----------------------------------------------------

type NsPath = Path<(String, String)>;

async fn get_strategy(State(a): State<App>, Path((t, n)): NsPath) -> Reply {
    let ns = NamespaceName::new(&t, &n)?;
    ok_json(
        namespace_policies(&a, &ns)
            .await?
            .schema_compatibility_strategy,
    )
}

/// The strategy as JSON (`"FULL"`) or as bare text (`FULL`).
fn strategy_body(raw: &Bytes) -> Result<Strategy, ApiError> {
    let text = std::str::from_utf8(raw)
        .map_err(|_| ApiError(BrokerError::BadRequest("the body is not UTF-8".into())))?;
    let name = match serde_json::from_str::<Value>(text) {
        Ok(Value::String(s)) => s,
        Ok(_) => {
            return Err(ApiError(BrokerError::BadRequest(
                "expected a strategy name such as \"FULL\"".into(),
            )))
        }
        Err(_) => text.trim().to_string(),
    };
    Ok(Strategy::parse(&name).map_err(BrokerError::from)?)
}

async fn set_strategy(State(a): State<App>, Path((t, n)): NsPath, raw: Bytes) -> Reply {
    let ns = NamespaceName::new(&t, &n)?;
    let strategy = strategy_body(&raw)?;
    change_policy(&a, &ns, |p| p.schema_compatibility_strategy = strategy).await
}

async fn get_auto_update(State(a): State<App>, Path((t, n)): NsPath) -> Reply {
    let ns = NamespaceName::new(&t, &n)?;
    let p = namespace_policies(&a, &ns).await?;
    ok_json(p.is_allow_auto_update_schema.unwrap_or(true))
}

async fn set_auto_update(State(a): State<App>, Path((t, n)): NsPath, raw: Bytes) -> Reply {
    let ns = NamespaceName::new(&t, &n)?;
    let on: bool = required(&raw)?;
    change_policy(&a, &ns, |p| p.is_allow_auto_update_schema = Some(on)).await
}

async fn get_enforced(State(a): State<App>, Path((t, n)): NsPath) -> Reply {
    let ns = NamespaceName::new(&t, &n)?;
    ok_json(
        namespace_policies(&a, &ns)
            .await?
            .schema_validation_enforced,
    )
}

async fn set_enforced(State(a): State<App>, Path((t, n)): NsPath, raw: Bytes) -> Reply {
    let ns = NamespaceName::new(&t, &n)?;
    let on: bool = required(&raw)?;
    change_policy(&a, &ns, |p| p.schema_validation_enforced = on).await
}

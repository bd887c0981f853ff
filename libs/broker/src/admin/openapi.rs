//! The HTTP routes and their OpenAPI 3 description come from one place:
//! every route is added through [`Api::route`] with its documented
//! operations, so the document served at `/admin/v2/openapi.json` lists
//! exactly what the router serves (and a test calls every operation in it).

use axum::handler::Handler;
use axum::routing::MethodRouter;
use axum::Router;
use serde_json::{json, Map, Value};

use super::App;

/// One documented operation and its handler.
pub(super) struct Op {
    method: &'static str,
    route: MethodRouter<App>,
    doc: Map<String, Value>,
}

macro_rules! op_constructor {
    ($name:ident, $method:literal) => {
        pub(super) fn $name<H, T>(handler: H, summary: &str) -> Op
        where
            H: Handler<T, App>,
            T: 'static,
        {
            Op::new($method, axum::routing::$name(handler), summary)
        }
    };
}

impl Op {
    fn new(method: &'static str, route: MethodRouter<App>, summary: &str) -> Op {
        let mut doc = Map::new();
        doc.insert("summary".into(), json!(summary));
        doc.insert(
            "responses".into(),
            json!({
                "2XX": {"description": "Success"},
                "4XX": {"description": "Refused; nothing changed",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            }),
        );
        Op { method, route, doc }
    }

    op_constructor!(get, "get");
    op_constructor!(put, "put");
    op_constructor!(post, "post");
    op_constructor!(delete, "delete");

    /// A JSON request body (`required`: must be present).
    pub(super) fn body(mut self, schema: Value, required: bool) -> Op {
        self.doc.insert(
            "requestBody".into(),
            json!({"required": required, "content": {"application/json": {"schema": schema}}}),
        );
        self
    }

    /// A query parameter.
    pub(super) fn query(mut self, name: &str, schema: Value) -> Op {
        let params = self.doc.entry("parameters").or_insert_with(|| json!([]));
        if let Value::Array(a) = params {
            a.push(json!({"name": name, "in": "query", "required": false, "schema": schema}));
        }
        self
    }

    /// What a success returns (JSON).
    pub(super) fn returns(mut self, schema: Value) -> Op {
        self.doc.insert(
            "responses".into(),
            json!({
                "200": {"description": "Success",
                        "content": {"application/json": {"schema": schema}}},
                "4XX": {"description": "Refused",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            }),
        );
        self
    }
}

/// A router being built together with its OpenAPI paths.
pub(super) struct Api {
    router: Router<App>,
    paths: Map<String, Value>,
}

/// A path parameter's schema; the example names what a fresh standalone
/// has, so generated requests also reach existing resources.
fn param_schema(name: &str) -> Value {
    let example = match name {
        "cluster" => "standalone",
        "tenant" => "public",
        "namespace" => "default",
        "subscription" => "sub",
        "topic" => "topic",
        "role" => "role",
        _ => "",
    };
    match name {
        "timestamp" | "seconds" | "count" | "position" | "partition" => {
            json!({"type": "integer", "minimum": 0, "example": 1})
        }
        "domain" => json!({"type": "string", "enum": ["persistent"]}),
        _ if !example.is_empty() => json!({"type": "string", "example": example}),
        _ => json!({"type": "string"}),
    }
}

impl Api {
    pub(super) fn new() -> Api {
        Api {
            router: Router::new(),
            paths: Map::new(),
        }
    }

    pub(super) fn route(mut self, path: &str, ops: impl IntoIterator<Item = Op>) -> Api {
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": param_schema(name)}))
            .collect();
        let mut methods = Map::new();
        if !params.is_empty() {
            methods.insert("parameters".into(), Value::Array(params));
        }
        let mut route = MethodRouter::new();
        for op in ops {
            route = route.merge(op.route);
            let mut doc = op.doc;
            doc.insert(
                "operationId".into(),
                json!(format!("{} {}", op.method, path)),
            );
            methods.insert(op.method.into(), Value::Object(doc));
        }
        self.router = self.router.route(path, route);
        self.paths.insert(path.to_string(), Value::Object(methods));
        self
    }

    pub(super) fn merge(mut self, other: Api) -> Api {
        self.router = self.router.merge(other.router);
        self.paths.extend(other.paths);
        self
    }

    /// The router and its OpenAPI document.
    pub(super) fn finish(self) -> (Router<App>, Value) {
        let doc = json!({
            "openapi": "3.0.3",
            "info": {
                "title": "Magnetar admin REST API",
                "description": "Pulsar's admin REST v2 paths and JSON, REST produce, lookup, WebSocket endpoints (GET upgrades), /metrics and /health.",
                "version": env!("CARGO_PKG_VERSION"),
            },
            "paths": self.paths,
            "components": {
                "schemas": schemas(),
                "securitySchemes": {"token": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            },
        });
        (self.router, doc)
    }
}

pub(super) fn schema(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

pub(super) fn string_list() -> Value {
    json!({"type": "array", "items": {"type": "string"}})
}

pub(super) fn object() -> Value {
    json!({"type": "object"})
}

/// The JSON bodies, with Pulsar's field names.
fn schemas() -> Value {
    let int = json!({"type": "integer", "format": "int64"});
    json!({
        "Error": {"type": "object", "properties": {"reason": {"type": "string"}}, "required": ["reason"]},
        "ClusterData": {"type": "object", "properties": {
            "serviceUrl": {"type": "string"}, "brokerServiceUrl": {"type": "string"}}},
        "TenantInfo": {"type": "object", "properties": {
            "adminRoles": string_list(), "allowedClusters": string_list()}},
        "Policies": {"type": "object", "properties": {
            "bundles": {"type": "object", "properties": {
                "numBundles": {"type": "integer", "minimum": 0, "maximum": 1024},
                "boundaries": string_list()}}}},
        "RetentionPolicies": {"type": "object", "required": ["retentionTimeInMinutes", "retentionSizeInMB"],
            "properties": {"retentionTimeInMinutes": int, "retentionSizeInMB": int}},
        "AutoTopicCreation": {"type": "object", "required": ["allowAutoTopicCreation"], "properties": {
            "allowAutoTopicCreation": {"type": "boolean"},
            "topicType": {"type": "string", "enum": ["non-partitioned", "partitioned"]},
            "defaultNumPartitions": {"type": "integer", "minimum": 1}}},
        "BacklogQuota": {"type": "object", "required": ["policy"], "properties": {
            "limitSize": int, "limitTime": int, "limit": int,
            "policy": {"type": "string", "enum": ["producer_request_hold", "producer_exception", "consumer_backlog_eviction"]}}},
        "OffloadPolicies": {"type": "object", "required": ["managedLedgerOffloadDriver"], "properties": {
            "managedLedgerOffloadDriver": {"type": "string"},
            "managedLedgerOffloadThresholdInBytes": int,
            "managedLedgerOffloadThresholdInSeconds": int,
            "managedLedgerOffloadDeletionLagInMillis": int,
            "s3ManagedLedgerOffloadRegion": {"type": "string"},
            "s3ManagedLedgerOffloadBucket": {"type": "string"},
            "s3ManagedLedgerOffloadServiceEndpoint": {"type": "string"},
            "fileSystemURI": {"type": "string"}}},
        "MessageId": {"type": "object", "required": ["ledgerId", "entryId"], "properties": {
            "ledgerId": int, "entryId": int, "partitionIndex": {"type": "integer"}}},
        "Actions": {"type": "array", "items": {"type": "string", "enum": ["produce", "consume"]}},
        "ProduceRequest": {"type": "object", "required": ["messages"], "properties": {
            "producerName": {"type": "string"},
            "messages": {"type": "array", "items": {"type": "object", "properties": {
                "payload": {"type": "string", "description": "base64"},
                "key": {"type": "string"},
                "properties": {"type": "object", "additionalProperties": {"type": "string"}},
                "eventTime": int, "sequenceId": int, "deliverAt": int, "deliverAfterMs": int}}}}},
    })
}

//! `magnetar admin schemas ...`: a topic's schema registry entries, as
//! `pulsar-admin schemas` (get, upload, delete, compatibility). Upload and
//! compatibility read a file holding Pulsar's `PostSchemaPayload`:
//! `{"type": "AVRO", "schema": "<definition>", "properties": {}}`. Also the
//! namespaces' schema policies, as `pulsar-admin namespaces
//! set-schema-compatibility-strategy` and its siblings.

use std::path::PathBuf;

use clap::Subcommand;
use hyper::Method;
use magnetar_common::names::{NamespaceName, TopicName};
use serde_json::{json, Value};

use super::{call, done, enc, get, ns_path, parse_namespace, parse_topic, Plan, Show, Toggle};

/// Pulsar's `SchemaCompatibilityStrategy` names.
const STRATEGIES: [&str; 9] = [
    "UNDEFINED",
    "ALWAYS_INCOMPATIBLE",
    "ALWAYS_COMPATIBLE",
    "BACKWARD",
    "FORWARD",
    "FULL",
    "BACKWARD_TRANSITIVE",
    "FORWARD_TRANSITIVE",
    "FULL_TRANSITIVE",
];

fn parse_strategy(s: &str) -> Result<String, String> {
    let upper = s.to_ascii_uppercase();
    if STRATEGIES.contains(&upper.as_str()) {
        Ok(upper)
    } else {
        Err(format!("{s:?} is not one of {}", STRATEGIES.join(", ")))
    }
}

/// The namespace's schema policies (flattened into `namespaces`).
#[derive(Subcommand)]
pub(super) enum NamespaceSchemaCmd {
    /// How new schemas must relate to the stored ones (UNDEFINED = FULL).
    GetSchemaCompatibilityStrategy {
        #[arg(value_parser = parse_namespace)]
        namespace: NamespaceName,
    },
    /// Sets the schema compatibility strategy.
    SetSchemaCompatibilityStrategy {
        #[arg(value_parser = parse_namespace)]
        namespace: NamespaceName,
        #[arg(long, short = 'c', value_parser = parse_strategy)]
        compatibility: String,
    },
    /// Whether producers may add schema versions.
    GetIsAllowAutoUpdateSchema {
        #[arg(value_parser = parse_namespace)]
        namespace: NamespaceName,
    },
    /// Lets producers add schema versions, or not.
    SetIsAllowAutoUpdateSchema {
        #[arg(value_parser = parse_namespace)]
        namespace: NamespaceName,
        #[command(flatten)]
        toggle: Toggle,
    },
    /// Whether a producer without a schema is refused on a topic with one.
    GetSchemaValidationEnforce {
        #[arg(value_parser = parse_namespace)]
        namespace: NamespaceName,
    },
    /// Refuses producers without a schema on topics with one, or not.
    SetSchemaValidationEnforce {
        #[arg(value_parser = parse_namespace)]
        namespace: NamespaceName,
        #[command(flatten)]
        toggle: Toggle,
    },
}

pub(super) fn plan_namespace(c: NamespaceSchemaCmd) -> Result<Plan, String> {
    use NamespaceSchemaCmd as N;
    let path = |ns: &NamespaceName, name: &str| format!("{}/{name}", ns_path(ns));
    let on_off = |on: bool| if on { "on" } else { "off" };
    match c {
        N::GetSchemaCompatibilityStrategy { namespace } => {
            get(path(&namespace, "schemaCompatibilityStrategy"), Show::Value)
        }
        N::SetSchemaCompatibilityStrategy {
            namespace,
            compatibility,
        } => done(
            Method::PUT,
            path(&namespace, "schemaCompatibilityStrategy"),
            Some(json!(compatibility)),
            format!("Set the schema compatibility strategy of {namespace} to {compatibility}"),
        ),
        N::GetIsAllowAutoUpdateSchema { namespace } => {
            get(path(&namespace, "isAllowAutoUpdateSchema"), Show::Value)
        }
        N::SetIsAllowAutoUpdateSchema { namespace, toggle } => done(
            Method::POST,
            path(&namespace, "isAllowAutoUpdateSchema"),
            Some(json!(toggle.enable)),
            format!(
                "Schema auto update in {namespace}: {}",
                on_off(toggle.enable)
            ),
        ),
        N::GetSchemaValidationEnforce { namespace } => {
            get(path(&namespace, "schemaValidationEnforced"), Show::Value)
        }
        N::SetSchemaValidationEnforce { namespace, toggle } => done(
            Method::POST,
            path(&namespace, "schemaValidationEnforced"),
            Some(json!(toggle.enable)),
            format!(
                "Schema validation in {namespace}: {}",
                on_off(toggle.enable)
            ),
        ),
    }
}

#[derive(Subcommand)]
pub(super) enum SchemasCmd {
    /// A topic's latest schema, one version (--version) or every live
    /// version (--all-version).
    Get {
        #[arg(value_parser = parse_topic)]
        topic: TopicName,
        #[arg(long)]
        version: Option<u64>,
        #[arg(long = "all-version", conflicts_with = "version")]
        all_version: bool,
    },
    /// Adds a schema version (refused if the namespace's strategy says it
    /// is not compatible).
    Upload {
        #[arg(value_parser = parse_topic)]
        topic: TopicName,
        /// A JSON file: {"type": ..., "schema": ..., "properties": {...}}.
        #[arg(long, short = 'f')]
        filename: PathBuf,
    },
    /// Deletes a topic's schema (a deletion marker; --force removes every
    /// version).
    Delete {
        #[arg(value_parser = parse_topic)]
        topic: TopicName,
        #[arg(long, short = 'f')]
        force: bool,
    },
    /// Whether the schema in a file could be added now.
    Compatibility {
        #[arg(value_parser = parse_topic)]
        topic: TopicName,
        #[arg(long, short = 'f')]
        filename: PathBuf,
    },
}

fn schemas_path(t: &TopicName) -> String {
    format!(
        "/admin/v2/schemas/{}/{}/{}",
        enc(&t.namespace.tenant),
        enc(&t.namespace.namespace),
        enc(&t.local)
    )
}

/// The payload file, checked to be a JSON object with a `type`.
fn payload(path: &PathBuf) -> Result<Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let v: Value =
        serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
    if !v.get("type").is_some_and(Value::is_string) {
        return Err(format!(
            "{} must hold {{\"type\": ..., \"schema\": ..., \"properties\": {{}}}}",
            path.display()
        ));
    }
    Ok(v)
}

pub(super) fn plan(c: SchemasCmd) -> Result<Plan, String> {
    match c {
        SchemasCmd::Get {
            topic,
            version,
            all_version,
        } => {
            let base = schemas_path(&topic);
            let path = match (version, all_version) {
                (_, true) => format!("{base}/getAllVersions"),
                (Some(v), false) => format!("{base}/schema/{v}"),
                (None, false) => format!("{base}/schema"),
            };
            get(path, Show::Doc)
        }
        SchemasCmd::Upload { topic, filename } => done(
            Method::POST,
            format!("{}/schema", schemas_path(&topic)),
            Some(payload(&filename)?),
            format!("uploaded a schema to {topic}"),
        ),
        SchemasCmd::Delete { topic, force } => done(
            Method::DELETE,
            format!("{}/schema?force={force}", schemas_path(&topic)),
            None,
            format!("deleted the schema of {topic}"),
        ),
        SchemasCmd::Compatibility { topic, filename } => call(
            Method::POST,
            format!("{}/compatibility", schemas_path(&topic)),
            Some(payload(&filename)?),
            Show::Doc,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::super::AdminCli;
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Root {
        #[command(flatten)]
        admin: AdminCli,
    }

    fn parse(args: &[&str]) -> Result<Root, clap::Error> {
        Root::try_parse_from(std::iter::once("admin").chain(args.iter().copied()))
    }

    fn one(args: &[&str]) -> (Method, String, Option<Value>) {
        let root = parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        match super::super::plan(root.admin.group) {
            Ok(Plan::One(c)) => (c.method, c.path, c.body),
            _ => panic!("{args:?} is not one call"),
        }
    }

    fn rejected(args: &[&str]) -> bool {
        parse(args).is_err()
    }

    #[test]
    fn schema_commands_as_rest_calls() {
        let (m, p, _) = one(&["schemas", "get", "acme/orders/events"]);
        assert_eq!(
            (m, p.as_str()),
            (Method::GET, "/admin/v2/schemas/acme/orders/events/schema")
        );
        let (_, p, _) = one(&["schemas", "get", "x", "--version", "3"]);
        assert_eq!(p, "/admin/v2/schemas/public/default/x/schema/3");
        let (_, p, _) = one(&["schemas", "get", "x", "--all-version"]);
        assert_eq!(p, "/admin/v2/schemas/public/default/x/getAllVersions");
        assert!(rejected(&[
            "schemas",
            "get",
            "x",
            "--version",
            "1",
            "--all-version"
        ]));
        let (m, p, _) = one(&["schemas", "delete", "x", "-f"]);
        assert_eq!(
            (m, p.as_str()),
            (
                Method::DELETE,
                "/admin/v2/schemas/public/default/x/schema?force=true"
            )
        );
    }

    #[test]
    fn namespace_schema_policies_as_rest_calls() {
        let (m, p, b) = one(&[
            "namespaces",
            "set-schema-compatibility-strategy",
            "acme/orders",
            "-c",
            "backward_transitive",
        ]);
        assert_eq!(
            (m, p.as_str(), b),
            (
                Method::PUT,
                "/admin/v2/namespaces/acme/orders/schemaCompatibilityStrategy",
                Some(json!("BACKWARD_TRANSITIVE"))
            )
        );
        assert!(rejected(&[
            "namespaces",
            "set-schema-compatibility-strategy",
            "acme/orders",
            "-c",
            "SIDEWAYS"
        ]));
        let (m, p, b) = one(&[
            "namespaces",
            "set-is-allow-auto-update-schema",
            "a/b",
            "--disable",
        ]);
        assert_eq!(
            (m, p.as_str(), b),
            (
                Method::POST,
                "/admin/v2/namespaces/a/b/isAllowAutoUpdateSchema",
                Some(json!(false))
            )
        );
        let (_, p, b) = one(&["namespaces", "set-schema-validation-enforce", "a/b", "-e"]);
        assert_eq!(
            (p.as_str(), b),
            (
                "/admin/v2/namespaces/a/b/schemaValidationEnforced",
                Some(json!(true))
            )
        );
        assert!(rejected(&[
            "namespaces",
            "set-schema-validation-enforce",
            "a/b"
        ]));
        let (m, p, _) = one(&["namespaces", "get-schema-validation-enforce", "a/b"]);
        assert_eq!(
            (m, p.as_str()),
            (
                Method::GET,
                "/admin/v2/namespaces/a/b/schemaValidationEnforced"
            )
        );
    }

    #[test]
    fn upload_reads_the_payload_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("s.json");
        let body = serde_json::json!({"type": "AVRO", "schema": "{}", "properties": {}});
        std::fs::write(&file, body.to_string()).expect("write");
        let f = file.to_str().expect("utf-8 path");
        let (m, p, b) = one(&["schemas", "upload", "x", "-f", f]);
        assert_eq!(
            (m, p.as_str(), b),
            (
                Method::POST,
                "/admin/v2/schemas/public/default/x/schema",
                Some(body)
            )
        );
        std::fs::write(&file, "[1]").expect("write");
        assert!(payload(&file).is_err());
        assert!(payload(&dir.path().join("missing.json")).is_err());
    }
}

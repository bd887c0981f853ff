//! `magnetar admin schemas ...`: a topic's schema registry entries, as
//! `pulsar-admin schemas` (get, upload, delete, compatibility). Upload and
//! compatibility read a file holding Pulsar's `PostSchemaPayload`:
//! `{"type": "AVRO", "schema": "<definition>", "properties": {}}`.

use std::path::PathBuf;

use clap::Subcommand;
use hyper::Method;
use magnetar_common::names::TopicName;
use serde_json::Value;

use super::{call, done, enc, get, parse_topic, Plan, Show};

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

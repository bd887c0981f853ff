//! Clusters, tenants, namespaces (with their policies), partitioned topics
//! and schemas, kept as JSON in the metadata service. Pulsar's JSON field
//! names are kept so admin tools read them unchanged.
//!
//! Keys:
//! - `/admin/clusters/{cluster}` → `ClusterData`
//! - `/admin/tenants/{tenant}` → `TenantInfo`
//! - `/admin/policies/{tenant}/{namespace}` → `Policies`
//! - `/admin/partitioned-topics/{tenant}/{namespace}/{topic}` → `PartitionedTopicMetadata`
//! - `/schemas/{tenant}/{namespace}/{topic}` → `StoredSchemas`

use magnetar_common::names::{NamespaceName, TopicName};
use magnetar_meta_client::{Error as MetaError, MetaClient, PutOptions};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{BrokerError, Result};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ClusterData {
    pub service_url: String,
    pub broker_service_url: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TenantInfo {
    pub admin_roles: Vec<String>,
    pub allowed_clusters: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetentionPolicies {
    /// -1 = forever.
    pub retention_time_in_minutes: i64,
    /// -1 = no size bound.
    #[serde(rename = "retentionSizeInMB")]
    pub retention_size_in_mb: i64,
}

/// A namespace's policies (the subset Magnetar enforces, Pulsar's names).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Policies {
    pub retention_policies: Option<RetentionPolicies>,
    pub message_ttl_in_seconds: Option<i64>,
    #[serde(rename = "deduplicationEnabled")]
    pub deduplication_enabled: Option<bool>,
    pub replication_clusters: Vec<String>,
    /// The namespace's bundle boundaries (set when it is created).
    pub bundles: Option<crate::bundle::BundlesData>,
    /// Who may produce and consume (Pulsar's `auth_policies`).
    pub auth_policies: AuthPolicies,
    pub max_producers_per_topic: Option<u32>,
    pub max_consumers_per_topic: Option<u32>,
    /// Overrides the broker's `allow_auto_topic_creation`.
    #[serde(rename = "autoTopicCreationOverride")]
    pub auto_topic_creation: Option<AutoTopicCreation>,
    /// Quota type (`destination_storage`, `message_age`) → quota.
    pub backlog_quota_map: std::collections::BTreeMap<String, crate::backlog_quota::BacklogQuota>,
    /// Where closed ledgers are offloaded (used by tiered storage).
    pub offload_policies: Option<OffloadPolicies>,
    /// How new schemas must relate to the stored ones (UNDEFINED = FULL).
    pub schema_compatibility_strategy: magnetar_schema::Strategy,
    /// Whether producers may add schema versions (unset = yes).
    pub is_allow_auto_update_schema: Option<bool>,
    /// Whether a producer without a schema is refused on a topic with one.
    pub schema_validation_enforced: bool,
}

/// Pulsar's `OffloadPolicies` (the fields Magnetar's offloaders use).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
// Unknown fields are ignored: Pulsar's tools send every offloader's fields.
#[serde(rename_all = "camelCase")]
pub struct OffloadPolicies {
    /// `aws-s3`, `S3`, `google-cloud-storage`, `azureblob`, `filesystem`.
    pub managed_ledger_offload_driver: String,
    /// Offload once the topic holds more than this (-1 = never automatically).
    #[serde(default = "minus_one")]
    pub managed_ledger_offload_threshold_in_bytes: i64,
    /// Offload ledgers older than this (-1 = never automatically).
    #[serde(default = "minus_one")]
    pub managed_ledger_offload_threshold_in_seconds: i64,
    /// How long an offloaded ledger is kept on the bookies as well.
    #[serde(default = "four_hours_ms")]
    pub managed_ledger_offload_deletion_lag_in_millis: i64,
    #[serde(default)]
    pub s3_managed_ledger_offload_region: Option<String>,
    #[serde(default)]
    pub s3_managed_ledger_offload_bucket: Option<String>,
    #[serde(default)]
    pub s3_managed_ledger_offload_service_endpoint: Option<String>,
    #[serde(default)]
    pub s3_managed_ledger_offload_max_block_size_in_bytes: Option<i64>,
    #[serde(default)]
    pub s3_managed_ledger_offload_read_buffer_size_in_bytes: Option<i64>,
    #[serde(default, rename = "fileSystemURI")]
    pub file_system_uri: Option<String>,
    /// `tiered-storage-first` (default) or `bookkeeper-first` (also in
    /// Pulsar's enum spelling, `BOOKKEEPER_FIRST`).
    #[serde(default)]
    pub managed_ledger_offloaded_read_priority: Option<String>,
    #[serde(default)]
    pub offloaders_directory: Option<String>,
}

fn minus_one() -> i64 {
    -1
}

fn four_hours_ms() -> i64 {
    4 * 3600 * 1000
}

impl OffloadPolicies {
    /// Refuses policies an offloader could not act on.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(BrokerError::BadRequest(m));
        let d = self.managed_ledger_offload_driver.as_str();
        match d {
            "aws-s3" | "S3" | "s3" | "google-cloud-storage" | "azureblob" | "aliyun-oss" => {
                if self
                    .s3_managed_ledger_offload_bucket
                    .as_deref()
                    .is_none_or(str::is_empty)
                {
                    return bad(format!(
                        "the {d} offload driver needs s3ManagedLedgerOffloadBucket"
                    ));
                }
            }
            "filesystem" => {
                if self.file_system_uri.as_deref().is_none_or(str::is_empty) {
                    return bad("the filesystem offload driver needs fileSystemURI".into());
                }
            }
            other => return bad(format!("unknown offload driver {other:?}")),
        }
        if let Some(p) = &self.managed_ledger_offloaded_read_priority {
            let p = p.to_ascii_lowercase().replace('_', "-");
            if !matches!(p.as_str(), "tiered-storage-first" | "bookkeeper-first") {
                return bad(format!(
                    "managedLedgerOffloadedReadPriority must be tiered-storage-first or bookkeeper-first, not {p:?}"
                ));
            }
        }
        if self.managed_ledger_offload_threshold_in_bytes < -1
            || self.managed_ledger_offload_threshold_in_seconds < -1
            || self.managed_ledger_offload_deletion_lag_in_millis < -1
        {
            return bad("offload thresholds and lag must be -1 (off) or more".into());
        }
        for (name, v) in [
            (
                "s3ManagedLedgerOffloadMaxBlockSizeInBytes",
                self.s3_managed_ledger_offload_max_block_size_in_bytes,
            ),
            (
                "s3ManagedLedgerOffloadReadBufferSizeInBytes",
                self.s3_managed_ledger_offload_read_buffer_size_in_bytes,
            ),
        ] {
            if v.is_some_and(|v| v <= 0) {
                return bad(format!("{name} must be more than 0"));
            }
        }
        Ok(())
    }
}

/// Pulsar's `AutoTopicCreationOverride`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AutoTopicCreation {
    pub allow_auto_topic_creation: bool,
    /// `"non-partitioned"` or `"partitioned"`.
    #[serde(default = "non_partitioned")]
    pub topic_type: String,
    #[serde(default)]
    pub default_num_partitions: Option<u32>,
}

fn non_partitioned() -> String {
    "non-partitioned".into()
}

/// Roles' granted actions (`"produce"`, `"consume"`), on the namespace and
/// per topic.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthPolicies {
    pub namespace_auth: std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
    /// Topic (full name) → role → actions.
    pub destination_auth: std::collections::BTreeMap<
        String,
        std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
    >,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionedTopicMetadata {
    pub partitions: u32,
}

/// One version of a topic's schema.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaVersion {
    /// Pulsar's `Schema.Type` number.
    pub schema_type: i32,
    pub name: String,
    /// The schema definition (bytes, e.g. an Avro JSON document), stored
    /// as base64 (a JSON array of numbers, as first stored, is read too).
    #[serde(with = "base64_bytes")]
    pub data: Vec<u8>,
    pub properties: Vec<(String, String)>,
    /// When it was added (ms since the epoch).
    #[serde(default)]
    pub timestamp: i64,
    /// A deletion marker: the versions before it are no longer the
    /// topic's schema (numbering goes on, as in Pulsar).
    #[serde(default)]
    pub deleted: bool,
}

mod base64_bytes {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(data: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(data))
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Base64(String),
        Numbers(Vec<u8>),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        match Stored::deserialize(d)? {
            Stored::Base64(text) => STANDARD.decode(text).map_err(serde::de::Error::custom),
            Stored::Numbers(bytes) => Ok(bytes),
        }
    }
}

/// A topic's schema versions (index = version); a partitioned topic's
/// partitions share the record of the partitioned topic.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSchemas {
    pub versions: Vec<SchemaVersion>,
}

const CLUSTERS: &str = "/admin/clusters/";
const TENANTS: &str = "/admin/tenants/";
const POLICIES: &str = "/admin/policies/";
const PARTITIONED: &str = "/admin/partitioned-topics/";
const SCHEMAS: &str = "/schemas/";

/// Typed access to the broker's records in the metadata service.
#[derive(Clone)]
pub struct Resources {
    meta: MetaClient,
}

impl Resources {
    pub fn new(meta: MetaClient) -> Self {
        Self { meta }
    }

    pub fn meta(&self) -> &MetaClient {
        &self.meta
    }

    async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<(T, i64)>> {
        match self.meta.get(key).await? {
            None => Ok(None),
            Some(kv) => {
                let v = serde_json::from_slice(&kv.value).map_err(|e| {
                    BrokerError::internal(format!("stored record {key} is not valid"), e)
                })?;
                Ok(Some((v, kv.version)))
            }
        }
    }

    /// Stores `value` if the key is at `expected` (0 = must not exist).
    async fn put<T: Serialize>(&self, key: &str, value: &T, expected: Option<i64>) -> Result<()> {
        let raw = serde_json::to_vec(value)
            .map_err(|e| BrokerError::internal(format!("encoding {key}"), e))?;
        let opts = PutOptions {
            expected_version: expected,
            lease: 0,
        };
        match self.meta.put_with(key, raw, opts).await {
            Ok(_) => Ok(()),
            Err(MetaError::VersionMismatch { .. }) => Err(BrokerError::Conflict(format!(
                "{key} was changed concurrently or already exists"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    async fn children(&self, prefix: &str) -> Result<Vec<String>> {
        let page = self.meta.list_all(prefix).await?;
        Ok(page
            .kvs
            .iter()
            .filter_map(|kv| std::str::from_utf8(&kv.key[prefix.len()..]).ok())
            .filter(|rest| !rest.contains('/'))
            .map(str::to_string)
            .collect())
    }

    // ---- clusters -------------------------------------------------------

    pub async fn clusters(&self) -> Result<Vec<String>> {
        self.children(CLUSTERS).await
    }

    pub async fn cluster(&self, name: &str) -> Result<Option<ClusterData>> {
        Ok(self.get(&format!("{CLUSTERS}{name}")).await?.map(|v| v.0))
    }

    /// Creates or replaces a cluster record.
    pub async fn set_cluster(&self, name: &str, data: &ClusterData) -> Result<()> {
        self.put(&format!("{CLUSTERS}{name}"), data, None).await
    }

    pub async fn create_cluster(&self, name: &str, data: &ClusterData) -> Result<()> {
        self.put(&format!("{CLUSTERS}{name}"), data, Some(0))
            .await
            .map_err(|e| match e {
                BrokerError::Conflict(_) => {
                    BrokerError::Conflict(format!("cluster {name} already exists"))
                }
                e => e,
            })
    }

    // ---- tenants --------------------------------------------------------

    pub async fn tenants(&self) -> Result<Vec<String>> {
        self.children(TENANTS).await
    }

    pub async fn tenant(&self, name: &str) -> Result<Option<(TenantInfo, i64)>> {
        self.get(&format!("{TENANTS}{name}")).await
    }

    /// Creates (`expected` = 0) or updates (`expected` = current version).
    pub async fn put_tenant(&self, name: &str, info: &TenantInfo, expected: i64) -> Result<()> {
        self.put(&format!("{TENANTS}{name}"), info, Some(expected))
            .await
    }

    pub async fn delete_tenant(&self, name: &str) -> Result<bool> {
        Ok(self.meta.delete(format!("{TENANTS}{name}"), None).await?)
    }

    // ---- namespaces -----------------------------------------------------

    pub async fn namespaces(&self, tenant: &str) -> Result<Vec<String>> {
        self.children(&format!("{POLICIES}{tenant}/")).await
    }

    pub async fn policies(&self, ns: &NamespaceName) -> Result<Option<(Policies, i64)>> {
        self.get(&format!("{POLICIES}{ns}")).await
    }

    pub async fn put_policies(
        &self,
        ns: &NamespaceName,
        p: &Policies,
        expected: i64,
    ) -> Result<()> {
        self.put(&format!("{POLICIES}{ns}"), p, Some(expected))
            .await
    }

    /// Read-modify-write of a namespace's policies with CAS retries.
    pub async fn update_policies(
        &self,
        ns: &NamespaceName,
        mut change: impl FnMut(&mut Policies),
    ) -> Result<Policies> {
        for _ in 0..10 {
            let Some((mut p, version)) = self.policies(ns).await? else {
                return Err(BrokerError::NotFound(format!(
                    "namespace {ns} does not exist"
                )));
            };
            change(&mut p);
            match self.put_policies(ns, &p, version).await {
                Ok(()) => return Ok(p),
                Err(BrokerError::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(BrokerError::Conflict(format!(
            "namespace {ns} policies keep changing concurrently"
        )))
    }

    pub async fn delete_namespace(&self, ns: &NamespaceName) -> Result<bool> {
        Ok(self.meta.delete(format!("{POLICIES}{ns}"), None).await?)
    }

    // ---- partitioned topics --------------------------------------------

    pub async fn partitioned(&self, topic: &TopicName) -> Result<Option<PartitionedTopicMetadata>> {
        Ok(self.get(&partitioned_key(topic)).await?.map(|v| v.0))
    }

    pub async fn partitioned_with_version(
        &self,
        topic: &TopicName,
    ) -> Result<Option<(PartitionedTopicMetadata, i64)>> {
        self.get(&partitioned_key(topic)).await
    }

    pub async fn put_partitioned(
        &self,
        topic: &TopicName,
        md: PartitionedTopicMetadata,
        expected: i64,
    ) -> Result<()> {
        self.put(&partitioned_key(topic), &md, Some(expected)).await
    }

    pub async fn delete_partitioned(&self, topic: &TopicName) -> Result<bool> {
        Ok(self.meta.delete(partitioned_key(topic), None).await?)
    }

    pub async fn partitioned_topics(&self, ns: &NamespaceName) -> Result<Vec<String>> {
        self.children(&format!("{PARTITIONED}{ns}/")).await
    }

    // ---- schemas --------------------------------------------------------

    pub async fn schemas(&self, topic: &TopicName) -> Result<Option<(StoredSchemas, i64)>> {
        self.get(&schema_key(topic)).await
    }

    pub async fn put_schemas(
        &self,
        topic: &TopicName,
        s: &StoredSchemas,
        expected: i64,
    ) -> Result<()> {
        self.put(&schema_key(topic), s, Some(expected)).await
    }

    pub async fn delete_schemas(&self, topic: &TopicName) -> Result<()> {
        self.meta.delete(schema_key(topic), None).await?;
        Ok(())
    }
}

fn partitioned_key(topic: &TopicName) -> String {
    format!("{PARTITIONED}{}/{}", topic.namespace, topic.local)
}

fn schema_key(topic: &TopicName) -> String {
    format!("{SCHEMAS}{}/{}", topic.namespace, topic.local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_definitions_are_stored_as_base64_and_old_records_still_read() {
        let v = SchemaVersion {
            schema_type: 4,
            name: "n".into(),
            data: b"{\"type\":\"string\"}".to_vec(),
            properties: vec![("k".into(), "v".into())],
            timestamp: 7,
            deleted: false,
        };
        let json = serde_json::to_value(&v).expect("serialize");
        assert_eq!(json["data"], "eyJ0eXBlIjoic3RyaW5nIn0=");
        let back: SchemaVersion = serde_json::from_value(json).expect("deserialize");
        assert_eq!(back, v);
        // As the first version of the registry stored it: numbers, no timestamp.
        let old = r#"{"schema_type":1,"name":"","data":[104,105],"properties":[]}"#;
        let old: SchemaVersion = serde_json::from_str(old).expect("old record");
        assert_eq!(
            (old.data.as_slice(), old.timestamp, old.deleted),
            (&b"hi"[..], 0, false)
        );
    }
}

//! `admin namespaces ...`: namespaces and their policies.

use super::*;

#[derive(Subcommand)]
pub(super) enum NamespacesCmd {
    #[command(flatten)]
    Schema(schemas::NamespaceSchemaCmd),
    /// Namespaces of a tenant.
    List {
        #[arg(value_parser = parse_tenant)]
        tenant: String,
    },
    /// Every policy of a namespace.
    Policies {
        #[arg(value_parser = parse_namespace)]
        namespace: NamespaceName,
    },
    /// A new namespace.
    Create {
        #[arg(value_parser = parse_namespace)]
        namespace: NamespaceName,
        /// Number of bundles (default: the broker's).
        #[arg(long, short = 'b', value_parser = clap::value_parser!(u32).range(1..=4096))]
        bundles: Option<u32>,
    },
    /// Deletes an empty namespace.
    Delete {
        #[arg(value_parser = parse_namespace)]
        namespace: NamespaceName,
    },
    /// How long and how much acknowledged data is kept.
    SetRetention {
        #[arg(value_parser = parse_namespace)]
        namespace: NamespaceName,
        /// Minutes, or with a unit (90m, 12h, 7d, 2w, 1y); -1 = forever.
        #[arg(long, short = 't', allow_negative_numbers = true, value_parser = parse_minutes)]
        time: i64,
        /// Megabytes, or with a unit (500M, 10G, 1T); -1 = no limit.
        #[arg(long, short = 's', allow_negative_numbers = true, value_parser = parse_megabytes)]
        size: i64,
    },
    /// The retention (the broker's default when not set).
    GetRetention {
        #[arg(value_parser = parse_namespace)]
        namespace: NamespaceName,
    },
    /// Back to the broker's default retention.
    RemoveRetention {
        #[arg(value_parser = parse_namespace)]
        namespace: NamespaceName,
    },
    /// Unacknowledged messages older than this are acknowledged.
    SetMessageTtl {
        #[arg(value_parser = parse_namespace)]
        namespace: NamespaceName,
        /// Seconds, or with a unit (30m, 12h, 7d).
        #[arg(long, value_parser = parse_seconds)]
        ttl: u64,
    },
    /// The message TTL in seconds.
    GetMessageTtl {
        #[arg(value_parser = parse_namespace)]
        namespace: NamespaceName,
    },
    /// No message TTL.
    RemoveMessageTtl {
        #[arg(value_parser = parse_namespace)]
        namespace: NamespaceName,
    },
    /// Producer message deduplication.
    SetDeduplication {
        #[arg(value_parser = parse_namespace)]
        namespace: NamespaceName,
        #[command(flatten)]
        toggle: Toggle,
    },
    /// Whether deduplication is on (not set = the broker's default).
    GetDeduplication {
        #[arg(value_parser = parse_namespace)]
        namespace: NamespaceName,
    },
    /// Back to the broker's default deduplication.
    RemoveDeduplication {
        #[arg(value_parser = parse_namespace)]
        namespace: NamespaceName,
    },
    /// Producers a topic accepts at once (0 = no limit).
    SetMaxProducersPerTopic {
        #[arg(value_parser = parse_namespace)]
        namespace: NamespaceName,
        max: u32,
    },
    /// The per-topic producer limit.
    GetMaxProducersPerTopic {
        #[arg(value_parser = parse_namespace)]
        namespace: NamespaceName,
    },
    /// Consumers a topic accepts at once (0 = no limit).
    SetMaxConsumersPerTopic {
        #[arg(value_parser = parse_namespace)]
        namespace: NamespaceName,
        max: u32,
    },
    /// The per-topic consumer limit.
    GetMaxConsumersPerTopic {
        #[arg(value_parser = parse_namespace)]
        namespace: NamespaceName,
    },
    /// Whether producers and consumers create missing topics.
    SetAutoTopicCreation {
        #[arg(value_parser = parse_namespace)]
        namespace: NamespaceName,
        #[command(flatten)]
        toggle: Toggle,
        #[arg(long = "type", default_value = "non-partitioned",
              value_parser = ["partitioned", "non-partitioned"])]
        topic_type: String,
        /// Partitions of auto-created partitioned topics.
        #[arg(long)]
        num_partitions: Option<u32>,
    },
    /// The auto topic creation override.
    GetAutoTopicCreation {
        #[arg(value_parser = parse_namespace)]
        namespace: NamespaceName,
    },
    /// Back to the broker's auto topic creation setting.
    RemoveAutoTopicCreation {
        #[arg(value_parser = parse_namespace)]
        namespace: NamespaceName,
    },
    /// How large or old a subscription's backlog may grow.
    #[command(group(ArgGroup::new("limit").required(true).multiple(true)))]
    SetBacklogQuota {
        #[arg(value_parser = parse_namespace)]
        namespace: NamespaceName,
        /// Bytes, or with a unit (512M, 10G).
        #[arg(long, short = 'l', value_parser = parse_bytes, group = "limit")]
        limit_size: Option<i64>,
        /// Seconds, or with a unit (30m, 12h, 7d).
        #[arg(long, value_parser = parse_seconds_i64, group = "limit")]
        limit_time: Option<i64>,
        #[arg(long, short = 'p', value_parser = [
            "producer_request_hold", "producer_exception", "consumer_backlog_eviction"
        ])]
        policy: String,
        /// Which quota: by size or by age (default: message_age if only
        /// --limit-time is given, else destination_storage).
        #[arg(long = "type", value_parser = ["destination_storage", "message_age"])]
        quota_type: Option<String>,
    },
    /// The backlog quotas, by type.
    GetBacklogQuotas {
        #[arg(value_parser = parse_namespace)]
        namespace: NamespaceName,
    },
    /// Removes a backlog quota (default: destination_storage).
    RemoveBacklogQuota {
        #[arg(value_parser = parse_namespace)]
        namespace: NamespaceName,
        #[arg(long = "type", value_parser = ["destination_storage", "message_age"])]
        quota_type: Option<String>,
    },
    /// Where and when closed ledgers are offloaded to object storage.
    #[command(group(ArgGroup::new("offload").required(true).multiple(true)))]
    SetOffloadPolicies {
        #[arg(value_parser = parse_namespace)]
        namespace: NamespaceName,
        /// The whole policy as JSON (Pulsar's OffloadPolicies), or @FILE.
        #[arg(long, group = "offload",
              conflicts_with_all = ["driver", "bucket", "region", "endpoint", "threshold_bytes"])]
        json_body: Option<String>,
        /// aws-s3, s3, google-cloud-storage, filesystem, ...
        #[arg(long, group = "offload")]
        driver: Option<String>,
        #[arg(long, requires = "driver")]
        bucket: Option<String>,
        #[arg(long, requires = "driver")]
        region: Option<String>,
        #[arg(long, requires = "driver")]
        endpoint: Option<String>,
        /// Offload once a topic holds this much (bytes or 512M, 10G; -1 = never).
        #[arg(long, requires = "driver", allow_negative_numbers = true, value_parser = parse_bytes)]
        threshold_bytes: Option<i64>,
    },
    /// The offload policies.
    GetOffloadPolicies {
        #[arg(value_parser = parse_namespace)]
        namespace: NamespaceName,
    },
    /// Roles and what they may do in the namespace.
    Permissions {
        #[arg(value_parser = parse_namespace)]
        namespace: NamespaceName,
    },
    /// Lets a role produce and/or consume in the namespace.
    GrantPermission {
        #[arg(value_parser = parse_namespace)]
        namespace: NamespaceName,
        #[arg(long)]
        role: String,
        /// produce, consume (comma-separated).
        #[arg(long, value_delimiter = ',', required = true)]
        actions: Vec<String>,
    },
    /// Takes a role's namespace permissions away.
    RevokePermission {
        #[arg(value_parser = parse_namespace)]
        namespace: NamespaceName,
        #[arg(long)]
        role: String,
    },
    /// Unloads every bundle (their topics move or reload).
    Unload {
        #[arg(value_parser = parse_namespace)]
        namespace: NamespaceName,
    },
    /// The namespace's bundle ranges.
    Bundles {
        #[arg(value_parser = parse_namespace)]
        namespace: NamespaceName,
    },
}

/// Pulsar's `OffloadPolicies` fields for the flags. Magnetar's brokers read
/// the `s3…` location fields whatever the driver; for Google Cloud Storage
/// Pulsar's `gcs…` names are sent as well (brokers ignore unknown fields).
pub(super) fn offload_body(
    driver: String,
    bucket: Option<String>,
    region: Option<String>,
    endpoint: Option<String>,
    threshold: Option<i64>,
) -> Value {
    let mut prefixes = vec!["s3ManagedLedgerOffload"];
    if driver == "google-cloud-storage" {
        prefixes.push("gcsManagedLedgerOffload");
    }
    let mut body = Map::new();
    body.insert("managedLedgerOffloadDriver".into(), json!(driver));
    for (field, v) in [
        ("Bucket", bucket),
        ("Region", region),
        ("ServiceEndpoint", endpoint),
    ] {
        for prefix in &prefixes {
            if let Some(v) = &v {
                body.insert(format!("{prefix}{field}"), json!(v));
            }
        }
    }
    if let Some(t) = threshold {
        body.insert("managedLedgerOffloadThresholdInBytes".into(), json!(t));
    }
    Value::Object(body)
}

/// `--json-body`: JSON text, or `@FILE` holding it; checked here so a typo
/// is reported before anything is sent.
pub(super) fn json_body_arg(arg: &str) -> Result<Value, String> {
    let text = match arg.strip_prefix('@') {
        Some(file) => std::fs::read_to_string(file).map_err(|e| format!("reading {file}: {e}"))?,
        None => arg.to_string(),
    };
    serde_json::from_str(&text).map_err(|e| format!("--json-body is not valid JSON: {e}"))
}

pub(super) fn quota_query(kind: Option<&str>) -> String {
    kind.map(|k| format!("?backlogQuotaType={k}"))
        .unwrap_or_default()
}

pub(super) fn plan_namespaces(c: NamespacesCmd) -> Result<Plan, String> {
    use NamespacesCmd as N;
    let policy = |ns: &NamespaceName, name: &str| format!("{}/{name}", ns_path(ns));
    match c {
        N::Schema(c) => schemas::plan_namespace(c),
        N::List { tenant } => get(
            format!("/admin/v2/namespaces/{}", enc(&tenant)),
            Show::List("NAMESPACE"),
        ),
        N::Policies { namespace } => get(ns_path(&namespace), Show::Doc),
        N::Create { namespace, bundles } => done(
            Method::PUT,
            ns_path(&namespace),
            bundles.map(|n| json!({"bundles": {"numBundles": n}})),
            format!("Created namespace {namespace}"),
        ),
        N::Delete { namespace } => done(
            Method::DELETE,
            ns_path(&namespace),
            None,
            format!("Deleted namespace {namespace}"),
        ),
        N::SetRetention {
            namespace,
            time,
            size,
        } => done(
            Method::POST,
            policy(&namespace, "retention"),
            Some(json!({"retentionTimeInMinutes": time, "retentionSizeInMB": size})),
            format!("Set the retention of {namespace}"),
        ),
        N::GetRetention { namespace } => get(policy(&namespace, "retention"), Show::Doc),
        N::RemoveRetention { namespace } => done(
            Method::DELETE,
            policy(&namespace, "retention"),
            None,
            format!("Removed the retention of {namespace}"),
        ),
        N::SetMessageTtl { namespace, ttl } => done(
            Method::POST,
            policy(&namespace, "messageTTL"),
            Some(json!(ttl)),
            format!("Set the message TTL of {namespace}"),
        ),
        N::GetMessageTtl { namespace } => get(policy(&namespace, "messageTTL"), Show::Value),
        N::RemoveMessageTtl { namespace } => done(
            Method::DELETE,
            policy(&namespace, "messageTTL"),
            None,
            format!("Removed the message TTL of {namespace}"),
        ),
        N::SetDeduplication { namespace, toggle } => done(
            Method::POST,
            policy(&namespace, "deduplication"),
            Some(json!(toggle.enable)),
            format!(
                "{} deduplication in {namespace}",
                if toggle.enable { "Enabled" } else { "Disabled" }
            ),
        ),
        N::GetDeduplication { namespace } => get(policy(&namespace, "deduplication"), Show::Value),
        N::RemoveDeduplication { namespace } => done(
            Method::DELETE,
            policy(&namespace, "deduplication"),
            None,
            format!("Removed the deduplication setting of {namespace}"),
        ),
        N::SetMaxProducersPerTopic { namespace, max } => done(
            Method::POST,
            policy(&namespace, "maxProducersPerTopic"),
            Some(json!(max)),
            format!("Set max producers per topic of {namespace} to {max}"),
        ),
        N::GetMaxProducersPerTopic { namespace } => {
            get(policy(&namespace, "maxProducersPerTopic"), Show::Value)
        }
        N::SetMaxConsumersPerTopic { namespace, max } => done(
            Method::POST,
            policy(&namespace, "maxConsumersPerTopic"),
            Some(json!(max)),
            format!("Set max consumers per topic of {namespace} to {max}"),
        ),
        N::GetMaxConsumersPerTopic { namespace } => {
            get(policy(&namespace, "maxConsumersPerTopic"), Show::Value)
        }
        N::SetAutoTopicCreation {
            namespace,
            toggle,
            topic_type,
            num_partitions,
        } => {
            let mut body = json!({
                "allowAutoTopicCreation": toggle.enable,
                "topicType": topic_type,
            });
            if let Some(n) = num_partitions {
                body["defaultNumPartitions"] = json!(n);
            }
            done(
                Method::POST,
                policy(&namespace, "autoTopicCreation"),
                Some(body),
                format!("Set auto topic creation of {namespace}"),
            )
        }
        N::GetAutoTopicCreation { namespace } => {
            get(policy(&namespace, "autoTopicCreation"), Show::Doc)
        }
        N::RemoveAutoTopicCreation { namespace } => done(
            Method::DELETE,
            policy(&namespace, "autoTopicCreation"),
            None,
            format!("Removed the auto topic creation setting of {namespace}"),
        ),
        N::SetBacklogQuota {
            namespace,
            limit_size,
            limit_time,
            policy: quota_policy,
            quota_type,
        } => {
            let kind = quota_type.unwrap_or_else(|| {
                if limit_size.is_none() {
                    "message_age".into()
                } else {
                    "destination_storage".into()
                }
            });
            done(
                Method::POST,
                format!(
                    "{}{}",
                    policy(&namespace, "backlogQuota"),
                    quota_query(Some(&kind))
                ),
                Some(json!({
                    "limitSize": limit_size.unwrap_or(-1),
                    "limitTime": limit_time.unwrap_or(-1),
                    "policy": quota_policy,
                })),
                format!("Set the {kind} backlog quota of {namespace}"),
            )
        }
        N::GetBacklogQuotas { namespace } => get(
            policy(&namespace, "backlogQuotaMap"),
            Show::Map("TYPE", "QUOTA"),
        ),
        N::RemoveBacklogQuota {
            namespace,
            quota_type,
        } => done(
            Method::DELETE,
            format!(
                "{}{}",
                policy(&namespace, "backlogQuota"),
                quota_query(quota_type.as_deref())
            ),
            None,
            format!("Removed the backlog quota of {namespace}"),
        ),
        N::SetOffloadPolicies {
            namespace,
            json_body,
            driver,
            bucket,
            region,
            endpoint,
            threshold_bytes,
        } => {
            let body = match (json_body, driver) {
                (Some(raw), _) => json_body_arg(&raw)?,
                (None, Some(driver)) => {
                    offload_body(driver, bucket, region, endpoint, threshold_bytes)
                }
                // clap's "offload" group requires one of them.
                (None, None) => return Err("give --json-body or --driver".into()),
            };
            done(
                Method::POST,
                policy(&namespace, "offloadPolicies"),
                Some(body),
                format!("Set the offload policies of {namespace}"),
            )
        }
        N::GetOffloadPolicies { namespace } => {
            get(policy(&namespace, "offloadPolicies"), Show::Doc)
        }
        N::Permissions { namespace } => get(
            policy(&namespace, "permissions"),
            Show::Map("ROLE", "ACTIONS"),
        ),
        N::GrantPermission {
            namespace,
            role,
            actions,
        } => done(
            Method::POST,
            format!("{}/{}", policy(&namespace, "permissions"), enc(&role)),
            Some(json!(actions)),
            format!("Granted {} on {namespace} to {role}", actions.join(", ")),
        ),
        N::RevokePermission { namespace, role } => done(
            Method::DELETE,
            format!("{}/{}", policy(&namespace, "permissions"), enc(&role)),
            None,
            format!("Revoked the permissions of {role} on {namespace}"),
        ),
        N::Unload { namespace } => done(
            Method::PUT,
            policy(&namespace, "unload"),
            None,
            format!("Unloaded namespace {namespace}"),
        ),
        N::Bundles { namespace } => get(policy(&namespace, "bundles"), Show::Bundles),
    }
}

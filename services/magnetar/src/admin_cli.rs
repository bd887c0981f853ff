//! `magnetar admin ...`: a client for the brokers' admin REST v2, in the
//! spirit of `pulsar-admin` (same group and operation names, same paths and
//! JSON on the wire).
//!
//! The module has four parts: the command line (clap), the mapping of each
//! command to REST calls (`plan`), a small HTTP client (hyper) and the output
//! formatting (tables for people, the server's JSON with `--json`).
//!
//! Exit codes: 0 success, 1 the server refused (its reason on stderr) or any
//! other error, 2 bad arguments (clap), 3 the server could not be reached
//! (connection refused, timeout, broken exchange).

mod schemas;

use std::fmt::{self, Write as _};
use std::process::ExitCode;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use clap::{ArgGroup, Args, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, LOCATION};
use hyper::{HeaderMap, Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use magnetar_common::names::{check_segment, NamespaceName, TopicName};
use serde_json::{json, Map, Value};

mod init;

// ---- command line -------------------------------------------------------------

const OUTPUT_HELP: &str = "\
Output: tables or one-line confirmations; with --json, the server's JSON as it
was sent, and {} for operations that return nothing.
Exit codes: 0 success, 1 refused by the server (its reason on stderr) or
another error, 2 bad arguments, 3 the server could not be reached.
Topics may be given as persistent://tenant/ns/name, tenant/ns/name, or name
(= persistent://public/default/name).";

#[derive(Args)]
#[command(after_help = OUTPUT_HELP)]
pub struct AdminCli {
    /// A broker's HTTP address (any broker of the cluster: calls for a topic
    /// are redirected to its owner).
    #[arg(
        long,
        global = true,
        env = "MAGNETAR_ADMIN_URL",
        default_value = "http://127.0.0.1:8080",
        value_parser = parse_base_url
    )]
    url: String,
    /// Token for brokers with authentication on (sent as a bearer token).
    #[arg(long, global = true, env = "MAGNETAR_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// CA certificates (PEM) an https:// broker's certificate must chain to
    /// (default: the system's roots).
    #[arg(long, global = true, env = "MAGNETAR_TLS_TRUST_CERTS")]
    tls_trust_certs: Option<std::path::PathBuf>,
    /// A client certificate (PEM) for https:// (mutual TLS; with TLS
    /// authentication its subject CN is the role when no token is given).
    #[arg(
        long,
        global = true,
        env = "MAGNETAR_TLS_CERT_FILE",
        requires = "tls_key_file"
    )]
    tls_cert_file: Option<std::path::PathBuf>,
    #[arg(
        long,
        global = true,
        env = "MAGNETAR_TLS_KEY_FILE",
        requires = "tls_cert_file"
    )]
    tls_key_file: Option<std::path::PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// Seconds to wait for each request (connect, redirects and answer).
    #[arg(long, global = true, default_value = "30", value_parser = parse_timeout)]
    timeout: Duration,
    #[command(subcommand)]
    group: Group,
}

#[derive(Subcommand)]
enum Group {
    /// Clusters known to the brokers.
    #[command(subcommand)]
    Clusters(ClustersCmd),
    /// Tenants: list, get, create, update, delete.
    #[command(subcommand)]
    Tenants(TenantsCmd),
    /// Namespaces and their policies.
    #[command(subcommand)]
    Namespaces(NamespacesCmd),
    /// Persistent topics, their subscriptions and permissions.
    #[command(subcommand)]
    Topics(TopicsCmd),
    /// Topics' schemas: get, upload, delete, compatibility.
    #[command(subcommand)]
    Schemas(schemas::SchemasCmd),
    /// Live brokers, the leader, what a broker owns.
    #[command(subcommand)]
    Brokers(BrokersCmd),
    /// Waits for the cluster, then creates the tenants and namespaces given
    /// that do not exist yet (the Helm chart's initialisation Job).
    Init(init::InitArgs),
}

#[derive(Subcommand)]
enum ClustersCmd {
    /// Names of the clusters.
    List,
    /// A cluster's service URLs.
    Get { cluster: String },
}

#[derive(Subcommand)]
enum TenantsCmd {
    /// Names of the tenants.
    List,
    /// A tenant's admin roles and allowed clusters.
    Get {
        #[arg(value_parser = parse_tenant)]
        tenant: String,
    },
    /// A new tenant (allowed in every cluster unless --allowed-clusters).
    Create {
        #[arg(value_parser = parse_tenant)]
        tenant: String,
        /// Roles that administer the tenant, comma-separated.
        #[arg(long, short = 'r', value_delimiter = ',')]
        admin_roles: Vec<String>,
        /// Clusters the tenant may use, comma-separated.
        #[arg(long, short = 'c', value_delimiter = ',')]
        allowed_clusters: Vec<String>,
    },
    /// Changes a tenant; what is not given is kept.
    #[command(group(ArgGroup::new("change").required(true).multiple(true)))]
    Update {
        #[arg(value_parser = parse_tenant)]
        tenant: String,
        /// Roles that administer the tenant, comma-separated ("" for none).
        #[arg(long, short = 'r', value_delimiter = ',', group = "change")]
        admin_roles: Option<Vec<String>>,
        /// Clusters the tenant may use, comma-separated.
        #[arg(long, short = 'c', value_delimiter = ',', group = "change")]
        allowed_clusters: Option<Vec<String>>,
    },
    /// Deletes a tenant without namespaces.
    Delete {
        #[arg(value_parser = parse_tenant)]
        tenant: String,
    },
}

/// `--enable` or `--disable`, exactly one.
#[derive(Args)]
#[group(required = true, multiple = false)]
struct Toggle {
    #[arg(long, short = 'e')]
    enable: bool,
    #[arg(long, short = 'd')]
    disable: bool,
}

#[derive(Subcommand)]
enum NamespacesCmd {
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

/// A topic and one of its subscriptions.
#[derive(Args)]
struct SubArgs {
    /// persistent://tenant/ns/name, tenant/ns/name, or name (in public/default).
    #[arg(value_parser = parse_topic)]
    topic: TopicName,
    #[arg(long, short = 's')]
    subscription: String,
}

#[derive(Subcommand)]
enum TopicsCmd {
    /// Topics of a namespace (partitions included).
    List {
        #[arg(value_parser = parse_namespace)]
        namespace: NamespaceName,
    },
    /// Partitioned topics of a namespace.
    ListPartitioned {
        #[arg(value_parser = parse_namespace)]
        namespace: NamespaceName,
    },
    /// A new non-partitioned topic.
    Create {
        #[arg(value_parser = parse_topic)]
        topic: TopicName,
    },
    /// A new partitioned topic with N partitions.
    CreatePartitionedTopic {
        #[arg(value_parser = parse_topic)]
        topic: TopicName,
        #[arg(long, short = 'p')]
        partitions: u32,
    },
    /// Adds partitions (their number can only grow).
    UpdatePartitionedTopic {
        #[arg(value_parser = parse_topic)]
        topic: TopicName,
        #[arg(long, short = 'p')]
        partitions: u32,
    },
    /// Deletes a non-partitioned topic (or one partition).
    Delete {
        #[arg(value_parser = parse_topic)]
        topic: TopicName,
        /// Even with producers, consumers or subscriptions.
        #[arg(long, short = 'f')]
        force: bool,
    },
    /// Deletes a partitioned topic and its partitions.
    DeletePartitionedTopic {
        #[arg(value_parser = parse_topic)]
        topic: TopicName,
        #[arg(long, short = 'f')]
        force: bool,
    },
    /// Rates, counters, publishers and subscriptions.
    Stats {
        #[arg(value_parser = parse_topic)]
        topic: TopicName,
    },
    /// Stats of a partitioned topic, summed and per partition.
    PartitionedStats {
        #[arg(value_parser = parse_topic)]
        topic: TopicName,
    },
    /// The managed ledger: ledgers and cursors.
    StatsInternal {
        #[arg(value_parser = parse_topic)]
        topic: TopicName,
    },
    /// Names of the topic's subscriptions.
    Subscriptions {
        #[arg(value_parser = parse_topic)]
        topic: TopicName,
    },
    /// A durable subscription starting at a position (default: latest).
    CreateSubscription {
        #[command(flatten)]
        sub: SubArgs,
        /// earliest, latest, or LEDGER:ENTRY.
        #[arg(long, short = 'm', default_value = "latest", value_parser = parse_message_id)]
        message_id: MessageId,
    },
    /// Deletes a subscription.
    Unsubscribe {
        #[command(flatten)]
        sub: SubArgs,
        /// Even with connected consumers (they are disconnected).
        #[arg(long, short = 'f')]
        force: bool,
    },
    /// Acknowledges the next N messages of a subscription.
    Skip {
        #[command(flatten)]
        sub: SubArgs,
        #[arg(long, short = 'n', value_parser = clap::value_parser!(u64).range(1..))]
        count: u64,
    },
    /// Acknowledges every message of a subscription.
    ClearBacklog {
        #[command(flatten)]
        sub: SubArgs,
    },
    /// Moves a subscription to a publish time or a message id.
    #[command(group(ArgGroup::new("to").required(true)))]
    ResetCursor {
        #[command(flatten)]
        sub: SubArgs,
        /// Milliseconds since the epoch.
        #[arg(long, short = 't', group = "to")]
        time: Option<u64>,
        /// earliest, latest, or LEDGER:ENTRY.
        #[arg(long, short = 'm', group = "to", value_parser = parse_message_id)]
        message_id: Option<MessageId>,
    },
    /// Acknowledges messages older than the given age.
    ExpireMessages {
        #[command(flatten)]
        sub: SubArgs,
        /// Seconds, or with a unit (30m, 12h).
        #[arg(long, short = 't', value_parser = parse_seconds)]
        expire_time: u64,
    },
    /// Shows the next N messages of a subscription without acknowledging them.
    PeekMessages {
        #[command(flatten)]
        sub: SubArgs,
        #[arg(long, short = 'n', default_value_t = 1,
              value_parser = clap::value_parser!(u32).range(1..=1000))]
        count: u32,
    },
    /// Refuses further messages; prints the last message id.
    Terminate {
        #[arg(value_parser = parse_topic)]
        topic: TopicName,
    },
    /// Closes the topic on its broker (it is loaded again on next use).
    Unload {
        #[arg(value_parser = parse_topic)]
        topic: TopicName,
    },
    /// Moves closed ledgers to tiered storage so that at most the threshold
    /// stays on the bookies.
    Offload {
        #[arg(value_parser = parse_topic)]
        topic: TopicName,
        /// Bytes to keep on the bookies, with an optional unit (10M, 1G).
        #[arg(long, short = 's', value_parser = parse_bytes)]
        size_threshold: i64,
    },
    /// The status of the topic's last offload.
    OffloadStatus {
        #[arg(value_parser = parse_topic)]
        topic: TopicName,
        /// Wait until the running offload ends.
        #[arg(long, short = 'w')]
        wait: bool,
    },
    /// The broker that serves the topic.
    Lookup {
        #[arg(value_parser = parse_topic)]
        topic: TopicName,
    },
    /// Roles granted on the topic itself.
    Permissions {
        #[arg(value_parser = parse_topic)]
        topic: TopicName,
    },
    /// Lets a role produce and/or consume on the topic.
    GrantPermission {
        #[arg(value_parser = parse_topic)]
        topic: TopicName,
        #[arg(long)]
        role: String,
        /// produce, consume (comma-separated).
        #[arg(long, value_delimiter = ',', required = true)]
        actions: Vec<String>,
    },
    /// Takes a role's topic permissions away.
    RevokePermission {
        #[arg(value_parser = parse_topic)]
        topic: TopicName,
        #[arg(long)]
        role: String,
    },
}

#[derive(Subcommand)]
enum BrokersCmd {
    /// Live brokers of a cluster.
    List { cluster: String },
    /// The broker that places bundles.
    LeaderBroker,
    /// Bundles a broker owns.
    OwnedNamespaces { cluster: String, broker: String },
}

// ---- argument parsing -----------------------------------------------------------

/// The URL without a trailing slash (http:// or https://).
fn parse_base_url(s: &str) -> Result<String, String> {
    let uri: Uri = s.parse().map_err(|e| format!("invalid URL {s:?}: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(format!("{s:?} is not an http:// or https:// URL")),
    }
    if uri.authority().is_none() {
        return Err(format!("{s:?} has no host"));
    }
    if uri.query().is_some() {
        return Err(format!("{s:?} must not have a query"));
    }
    Ok(s.trim_end_matches('/').to_string())
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        // Duration::from_secs_f64 panics on NaN, negatives and overflow.
        Ok(secs) if secs > 0.0 && secs <= 86_400.0 => Ok(Duration::from_secs_f64(secs)),
        _ => Err(format!("{s:?} is not a number of seconds in (0, 86400]")),
    }
}

fn parse_tenant(s: &str) -> Result<String, String> {
    check_segment("tenant", s).map_err(|e| e.to_string())?;
    Ok(s.to_string())
}

fn parse_namespace(s: &str) -> Result<NamespaceName, String> {
    NamespaceName::parse(s).map_err(|e| e.to_string())
}

fn parse_topic(s: &str) -> Result<TopicName, String> {
    TopicName::parse(s).map_err(|e| e.to_string())
}

/// A subscription position, as pulsar-admin spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MessageId {
    Earliest,
    Latest,
    At {
        ledger: i64,
        entry: i64,
        partition: Option<i32>,
    },
}

impl MessageId {
    /// Pulsar's `MessageIdImpl` JSON.
    fn to_json(self) -> Value {
        match self {
            // Pulsar's MessageId.earliest.
            MessageId::Earliest => json!({"ledgerId": -1, "entryId": -1}),
            MessageId::Latest => json!({"ledgerId": i64::MAX, "entryId": i64::MAX}),
            MessageId::At {
                ledger,
                entry,
                partition,
            } => {
                let mut v = json!({"ledgerId": ledger, "entryId": entry});
                if let Some(p) = partition {
                    v["partitionIndex"] = json!(p);
                }
                v
            }
        }
    }
}

fn parse_message_id(s: &str) -> Result<MessageId, String> {
    let bad = || format!("{s:?} is not earliest, latest, or LEDGER:ENTRY[:PARTITION]");
    match s {
        "earliest" => return Ok(MessageId::Earliest),
        "latest" => return Ok(MessageId::Latest),
        _ => {}
    }
    let parts: Vec<&str> = s.split(':').collect();
    let num = |p: &str| p.parse::<i64>().ok().filter(|n| *n >= 0);
    match parts.as_slice() {
        [l, e] | [l, e, _] => {
            let partition = match parts.get(2) {
                Some(p) => Some(p.parse::<i32>().map_err(|_| bad())?),
                None => None,
            };
            Ok(MessageId::At {
                ledger: num(l).ok_or_else(bad)?,
                entry: num(e).ok_or_else(bad)?,
                partition,
            })
        }
        _ => Err(bad()),
    }
}

/// `123` or `123x`: the number and the unit (possibly empty).
fn number_and_unit(s: &str) -> Result<(u64, String), String> {
    let s = s.trim();
    let at = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(at);
    let n = digits
        .parse::<u64>()
        .map_err(|_| format!("{s:?} is not a number"))?;
    Ok((n, unit.to_ascii_lowercase()))
}

/// `s` as a number with one of `units` (lowercase; `""` = no unit),
/// scaled by the unit's factor. `-1` stays -1 when `minus_one` ("forever",
/// "no limit").
fn with_units(s: &str, units: &[(&str, u64)], minus_one: bool) -> Result<i64, String> {
    if minus_one && s.trim() == "-1" {
        return Ok(-1);
    }
    let (n, unit) = number_and_unit(s)?;
    let Some((_, scale)) = units.iter().find(|(u, _)| *u == unit) else {
        let names: Vec<&str> = units
            .iter()
            .map(|(u, _)| *u)
            .filter(|u| !u.is_empty())
            .collect();
        return Err(format!("{s:?}: units are {}", names.join(", ")));
    };
    n.checked_mul(*scale)
        .and_then(|v| i64::try_from(v).ok())
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Retention time in minutes; -1 = forever.
fn parse_minutes(s: &str) -> Result<i64, String> {
    let units = [
        ("", 1),
        ("m", 1),
        ("h", 60),
        ("d", 1440),
        ("w", 7 * 1440),
        ("y", 365 * 1440),
    ];
    with_units(s, &units, true)
}

/// Retention size in megabytes; -1 = no limit.
fn parse_megabytes(s: &str) -> Result<i64, String> {
    with_units(s, &[("", 1), ("m", 1), ("g", 1024), ("t", 1 << 20)], true)
}

/// Bytes, with an optional binary unit; -1 stays -1 ("never" / "unset").
fn parse_bytes(s: &str) -> Result<i64, String> {
    let units = [
        ("", 1),
        ("k", 1 << 10),
        ("m", 1 << 20),
        ("g", 1 << 30),
        ("t", 1 << 40),
    ];
    with_units(s, &units, true)
}

fn parse_seconds(s: &str) -> Result<u64, String> {
    let units = [
        ("", 1),
        ("s", 1),
        ("m", 60),
        ("h", 3600),
        ("d", 86_400),
        ("w", 7 * 86_400),
    ];
    Ok(with_units(s, &units, false)? as u64)
}

fn parse_seconds_i64(s: &str) -> Result<i64, String> {
    i64::try_from(parse_seconds(s)?).map_err(|_| format!("{s:?} is too large"))
}

// ---- commands as REST calls -------------------------------------------------------

/// How to show a successful answer to people (`--json` ignores it).
#[derive(Clone, Debug, PartialEq)]
enum Show {
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
struct Call {
    method: Method,
    path: String,
    body: Option<Value>,
    show: Show,
}

#[derive(Debug, PartialEq)]
enum Plan {
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
fn enc(segment: &str) -> String {
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

fn ns_path(ns: &NamespaceName) -> String {
    format!(
        "/admin/v2/namespaces/{}/{}",
        enc(&ns.tenant),
        enc(&ns.namespace)
    )
}

fn topic_path(t: &TopicName) -> String {
    format!(
        "/admin/v2/persistent/{}/{}/{}",
        enc(&t.namespace.tenant),
        enc(&t.namespace.namespace),
        enc(&t.local)
    )
}

fn sub_path(s: &SubArgs) -> String {
    format!(
        "{}/subscription/{}",
        topic_path(&s.topic),
        enc(&s.subscription)
    )
}

fn call(method: Method, path: String, body: Option<Value>, show: Show) -> Result<Plan, String> {
    Ok(Plan::One(Call {
        method,
        path,
        body,
        show,
    }))
}

fn get(path: String, show: Show) -> Result<Plan, String> {
    call(Method::GET, path, None, show)
}

fn done(method: Method, path: String, body: Option<Value>, msg: String) -> Result<Plan, String> {
    call(method, path, body, Show::Done(msg))
}

fn non_empty(list: Vec<String>) -> Vec<String> {
    list.into_iter().filter(|s| !s.is_empty()).collect()
}

fn plan(group: Group) -> Result<Plan, String> {
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

fn plan_clusters(c: ClustersCmd) -> Result<Plan, String> {
    match c {
        ClustersCmd::List => get("/admin/v2/clusters".into(), Show::List("CLUSTER")),
        ClustersCmd::Get { cluster } => {
            get(format!("/admin/v2/clusters/{}", enc(&cluster)), Show::Doc)
        }
    }
}

fn plan_tenants(c: TenantsCmd) -> Result<Plan, String> {
    let path = |t: &str| format!("/admin/v2/tenants/{}", enc(t));
    match c {
        TenantsCmd::List => get("/admin/v2/tenants".into(), Show::List("TENANT")),
        TenantsCmd::Get { tenant } => get(path(&tenant), Show::Doc),
        TenantsCmd::Create {
            tenant,
            admin_roles,
            allowed_clusters,
        } => Ok(Plan::CreateTenant {
            tenant,
            admin_roles: non_empty(admin_roles),
            allowed_clusters: non_empty(allowed_clusters),
        }),
        TenantsCmd::Update {
            tenant,
            admin_roles,
            allowed_clusters,
        } => Ok(Plan::UpdateTenant {
            tenant,
            admin_roles: admin_roles.map(non_empty),
            allowed_clusters: allowed_clusters.map(non_empty),
        }),
        TenantsCmd::Delete { tenant } => done(
            Method::DELETE,
            path(&tenant),
            None,
            format!("Deleted tenant {tenant}"),
        ),
    }
}

/// Pulsar's `OffloadPolicies` fields for the flags. Magnetar's brokers read
/// the `s3…` location fields whatever the driver; for Google Cloud Storage
/// Pulsar's `gcs…` names are sent as well (brokers ignore unknown fields).
fn offload_body(
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
fn json_body_arg(arg: &str) -> Result<Value, String> {
    let text = match arg.strip_prefix('@') {
        Some(file) => std::fs::read_to_string(file).map_err(|e| format!("reading {file}: {e}"))?,
        None => arg.to_string(),
    };
    serde_json::from_str(&text).map_err(|e| format!("--json-body is not valid JSON: {e}"))
}

fn quota_query(kind: Option<&str>) -> String {
    kind.map(|k| format!("?backlogQuotaType={k}"))
        .unwrap_or_default()
}

fn plan_namespaces(c: NamespacesCmd) -> Result<Plan, String> {
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

fn plan_topics(c: TopicsCmd) -> Result<Plan, String> {
    use TopicsCmd as T;
    let force = |f: bool| if f { "?force=true" } else { "" };
    match c {
        T::List { namespace } => get(
            format!(
                "/admin/v2/persistent/{}/{}",
                enc(&namespace.tenant),
                enc(&namespace.namespace)
            ),
            Show::List("TOPIC"),
        ),
        T::ListPartitioned { namespace } => get(
            format!(
                "/admin/v2/persistent/{}/{}/partitioned",
                enc(&namespace.tenant),
                enc(&namespace.namespace)
            ),
            Show::List("TOPIC"),
        ),
        T::Create { topic } => done(
            Method::PUT,
            topic_path(&topic),
            None,
            format!("Created topic {topic}"),
        ),
        T::CreatePartitionedTopic { topic, partitions } => done(
            Method::PUT,
            format!("{}/partitions", topic_path(&topic)),
            Some(json!(partitions)),
            format!("Created partitioned topic {topic} with {partitions} partitions"),
        ),
        T::UpdatePartitionedTopic { topic, partitions } => done(
            Method::POST,
            format!("{}/partitions", topic_path(&topic)),
            Some(json!(partitions)),
            format!("Partitioned topic {topic} now has {partitions} partitions"),
        ),
        T::Delete { topic, force: f } => done(
            Method::DELETE,
            format!("{}{}", topic_path(&topic), force(f)),
            None,
            format!("Deleted topic {topic}"),
        ),
        T::DeletePartitionedTopic { topic, force: f } => done(
            Method::DELETE,
            format!("{}/partitions{}", topic_path(&topic), force(f)),
            None,
            format!("Deleted partitioned topic {topic}"),
        ),
        T::Stats { topic } => get(format!("{}/stats", topic_path(&topic)), Show::Doc),
        T::PartitionedStats { topic } => get(
            format!("{}/partitioned-stats", topic_path(&topic)),
            Show::Doc,
        ),
        T::StatsInternal { topic } => {
            get(format!("{}/internalStats", topic_path(&topic)), Show::Doc)
        }
        T::Subscriptions { topic } => get(
            format!("{}/subscriptions", topic_path(&topic)),
            Show::List("SUBSCRIPTION"),
        ),
        T::CreateSubscription { sub, message_id } => done(
            Method::PUT,
            sub_path(&sub),
            Some(message_id.to_json()),
            format!("Created subscription {} on {}", sub.subscription, sub.topic),
        ),
        T::Unsubscribe { sub, force: f } => done(
            Method::DELETE,
            format!("{}{}", sub_path(&sub), force(f)),
            None,
            format!("Deleted subscription {} of {}", sub.subscription, sub.topic),
        ),
        T::Skip { sub, count } => done(
            Method::POST,
            format!("{}/skip/{count}", sub_path(&sub)),
            None,
            format!(
                "Skipped {count} messages of subscription {}",
                sub.subscription
            ),
        ),
        T::ClearBacklog { sub } => done(
            Method::POST,
            format!("{}/skip_all", sub_path(&sub)),
            None,
            format!("Cleared the backlog of subscription {}", sub.subscription),
        ),
        T::ResetCursor {
            sub,
            time,
            message_id,
        } => {
            let msg = format!("Reset subscription {} of {}", sub.subscription, sub.topic);
            match (time, message_id) {
                (Some(ms), _) => done(
                    Method::POST,
                    format!("{}/resetcursor/{ms}", sub_path(&sub)),
                    None,
                    msg,
                ),
                (None, Some(id)) => done(
                    Method::POST,
                    format!("{}/resetcursor", sub_path(&sub)),
                    Some(id.to_json()),
                    msg,
                ),
                // clap's "to" group requires one of them.
                (None, None) => Err("give --time or --message-id".into()),
            }
        }
        T::ExpireMessages { sub, expire_time } => done(
            Method::POST,
            format!("{}/expireMessages/{expire_time}", sub_path(&sub)),
            None,
            format!(
                "Expired messages older than {expire_time} s in subscription {}",
                sub.subscription
            ),
        ),
        T::PeekMessages { sub, count } => Ok(Plan::Peek {
            topic: sub.topic,
            subscription: sub.subscription,
            count,
        }),
        T::Terminate { topic } => done(
            Method::POST,
            format!("{}/terminate", topic_path(&topic)),
            None,
            format!("Terminated topic {topic}"),
        ),
        T::Unload { topic } => done(
            Method::PUT,
            format!("{}/unload", topic_path(&topic)),
            None,
            format!("Unloaded topic {topic}"),
        ),
        T::Offload {
            topic,
            size_threshold,
        } => Ok(Plan::Offload {
            topic,
            threshold: size_threshold.max(0) as u64,
        }),
        T::OffloadStatus { topic, wait: false } => {
            get(format!("{}/offload", topic_path(&topic)), Show::Doc)
        }
        T::OffloadStatus { topic, wait: true } => Ok(Plan::OffloadWait { topic }),
        T::Lookup { topic } => get(
            format!(
                "/lookup/v2/topic/persistent/{}/{}/{}",
                enc(&topic.namespace.tenant),
                enc(&topic.namespace.namespace),
                enc(&topic.local)
            ),
            Show::Doc,
        ),
        T::Permissions { topic } => get(
            format!("{}/permissions", topic_path(&topic)),
            Show::Map("ROLE", "ACTIONS"),
        ),
        T::GrantPermission {
            topic,
            role,
            actions,
        } => done(
            Method::POST,
            format!("{}/permissions/{}", topic_path(&topic), enc(&role)),
            Some(json!(actions)),
            format!("Granted {} on {topic} to {role}", actions.join(", ")),
        ),
        T::RevokePermission { topic, role } => done(
            Method::DELETE,
            format!("{}/permissions/{}", topic_path(&topic), enc(&role)),
            None,
            format!("Revoked the permissions of {role} on {topic}"),
        ),
    }
}

fn plan_brokers(c: BrokersCmd) -> Result<Plan, String> {
    match c {
        BrokersCmd::List { cluster } => get(
            format!("/admin/v2/brokers/{}", enc(&cluster)),
            Show::List("BROKER"),
        ),
        BrokersCmd::LeaderBroker => get("/admin/v2/brokers/leaderBroker".into(), Show::Doc),
        BrokersCmd::OwnedNamespaces { cluster, broker } => get(
            format!(
                "/admin/v2/brokers/{}/{}/ownedNamespaces",
                enc(&cluster),
                enc(&broker)
            ),
            Show::Map("BUNDLE", "STATUS"),
        ),
    }
}

// ---- HTTP client ------------------------------------------------------------------

/// Redirects followed per call: a topic's owner may move while we ask.
const MAX_REDIRECTS: usize = 5;

/// Why a command failed; each kind has its exit code.
#[derive(Debug)]
enum Failure {
    /// No connection, no answer in time, or a broken exchange.
    Unreachable(String),
    /// The server answered with an error status and (usually) a reason.
    Refused { status: StatusCode, reason: String },
    /// Anything else: bad local input, an answer that makes no sense.
    Other(String),
}

impl Failure {
    fn exit_code(&self) -> u8 {
        match self {
            Failure::Unreachable(_) => 3,
            Failure::Refused { .. } | Failure::Other(_) => 1,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Unreachable(m) | Failure::Other(m) => f.write_str(m),
            Failure::Refused { status, reason } if reason.is_empty() => write!(f, "{status}"),
            Failure::Refused { status, reason } => write!(f, "{status}: {reason}"),
        }
    }
}

/// An answer of any status.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    /// The broker's `{"reason": …}`, else the body's text.
    fn reason(&self) -> String {
        if let Ok(v) = serde_json::from_slice::<Value>(&self.body) {
            if let Some(r) = v.get("reason").and_then(Value::as_str) {
                return r.to_string();
            }
        }
        let text = String::from_utf8_lossy(&self.body);
        text.trim().chars().take(500).collect()
    }

    fn refused(&self) -> Failure {
        Failure::Refused {
            status: self.status,
            reason: self.reason(),
        }
    }

    /// The broker's fallback for unknown routes (an endpoint this broker
    /// version does not have).
    fn is_no_such_endpoint(&self) -> bool {
        self.status == StatusCode::NOT_FOUND && self.reason().contains("no such endpoint")
    }

    fn json(&self) -> Result<Value, Failure> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            Failure::Other(format!(
                "the server's answer is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            ))
        })
    }
}

/// `err` with its causes: hyper's own message ("client error (Connect)")
/// says little without them.
fn with_causes(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        let _ = write!(s, ": {c}");
        cause = c.source();
    }
    s
}

struct Http {
    base: String,
    token: Option<String>,
    timeout: Duration,
    client: Client<HttpConnector, Full<Bytes>>,
    /// For https:// URLs.
    tls: magnetar_tls::ClientTlsConfig,
}

impl Http {
    fn new(base: String, token: Option<String>, timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        Http {
            base,
            token,
            timeout,
            client: Client::builder(TokioExecutor::new()).build(connector),
            tls: magnetar_tls::ClientTlsConfig::default(),
        }
    }

    fn with_tls(self, tls: magnetar_tls::ClientTlsConfig) -> Self {
        Http { tls, ..self }
    }

    /// One exchange over its own TLS connection (the tool makes a few calls).
    async fn https(
        &self,
        req: Request<Full<Bytes>>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, Failure> {
        let tls_failure = |e: String| Failure::Other(format!("TLS: {e}"));
        let connector = self
            .tls
            .connector(&[b"http/1.1"])
            .map_err(|e| tls_failure(e.to_string()))?;
        let target = req.uri().to_string();
        let unreachable = |e: String| Failure::Unreachable(format!("cannot reach {target}: {e}"));
        let host = req.uri().host().unwrap_or_default().to_string();
        let port = req.uri().port_u16().unwrap_or(443);
        let name = magnetar_tls::server_name(&host).map_err(|e| tls_failure(e.to_string()))?;
        let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let stream = connector
            .connect(name, tcp)
            .await
            .map_err(|e| unreachable(format!("TLS handshake: {e}")))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| unreachable(with_causes(&e)))?;
        tokio::spawn(conn);
        sender
            .send_request(req)
            .await
            .map_err(|e| unreachable(with_causes(&e)))
    }

    /// `method path` with an optional JSON body, following 307/308
    /// redirects (same method, body and token, as Pulsar's clients do);
    /// any final status is returned.
    async fn send(
        &self,
        method: &Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, Failure> {
        let payload = body.map(|v| Bytes::from(v.to_string()));
        let mut url = format!("{}{path}", self.base);
        for _ in 0..=MAX_REDIRECTS {
            let reply = self.once(method, &url, payload.clone()).await?;
            let redirect = matches!(
                reply.status,
                StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT
            );
            if let (true, Some(to)) = (redirect, reply.headers.get(LOCATION)) {
                let to = to.to_str().map_err(|_| {
                    Failure::Other(format!("{url} redirected to an invalid location"))
                })?;
                url = resolve(&url, to);
                continue;
            }
            return Ok(reply);
        }
        Err(Failure::Other(format!(
            "more than {MAX_REDIRECTS} redirects (last to {url})"
        )))
    }

    /// `send`, with an error status as a failure.
    async fn call(
        &self,
        method: &Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, Failure> {
        let reply = self.send(method, path, body).await?;
        if reply.status.is_success() {
            Ok(reply)
        } else {
            Err(reply.refused())
        }
    }

    async fn get_json(&self, path: &str) -> Result<Value, Failure> {
        self.call(&Method::GET, path, None).await?.json()
    }

    async fn once(
        &self,
        method: &Method,
        url: &str,
        payload: Option<Bytes>,
    ) -> Result<Reply, Failure> {
        let uri: Uri = url
            .parse()
            .map_err(|e| Failure::Other(format!("invalid URL {url}: {e}")))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => {
                return Err(Failure::Other(format!(
                    "cannot follow {url}: not http:// or https://"
                )))
            }
        };
        let mut req = Request::builder()
            .method(method.clone())
            .uri(uri)
            .header(ACCEPT, "application/json");
        if let Some(t) = &self.token {
            req = req.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        if payload.is_some() {
            req = req.header(CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(payload.unwrap_or_default()))
            .map_err(|e| {
                Failure::Other(format!(
                    "cannot make the request (is the token valid?): {e}"
                ))
            })?;
        let unreachable = |why: String| Failure::Unreachable(format!("cannot reach {url}: {why}"));
        let exchange = async {
            let resp = if https {
                self.https(req).await?
            } else {
                self.client
                    .request(req)
                    .await
                    .map_err(|e| unreachable(with_causes(&e)))?
            };
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| unreachable(with_causes(&e)))?
                .to_bytes();
            Ok::<_, Failure>(Reply {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| unreachable(format!("no answer within {:?}", self.timeout)))?
    }
}

/// A redirect's target: absolute, or a path on the same server.
fn resolve(from: &str, location: &str) -> String {
    if location.contains("://") {
        return location.to_string();
    }
    let origin_end = from
        .find("://")
        .and_then(|i| from[i + 3..].find('/').map(|j| i + 3 + j))
        .unwrap_or(from.len());
    format!(
        "{}/{}",
        &from[..origin_end],
        location.trim_start_matches('/')
    )
}

// ---- running --------------------------------------------------------------------

pub async fn run(cli: AdminCli) -> ExitCode {
    let tls = magnetar_tls::ClientTlsConfig {
        trust_file: cli.tls_trust_certs.clone(),
        cert_file: cli.tls_cert_file.clone(),
        key_file: cli.tls_key_file.clone(),
    };
    let result = match cli.group {
        Group::Init(args) => match init::token(&args) {
            Ok(token) => {
                let http = Http::new(cli.url, token.or(cli.token), cli.timeout).with_tls(tls);
                init::run(&http, &args).await
            }
            Err(f) => Err(f),
        },
        group => {
            let http = Http::new(cli.url, cli.token, cli.timeout).with_tls(tls);
            match plan(group) {
                Ok(p) => execute(&http, cli.json, p).await,
                Err(e) => Err(Failure::Other(e)),
            }
        }
    };
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(f) => {
            eprintln!("error: {f}");
            ExitCode::from(f.exit_code())
        }
    }
}

/// Runs a plan; returns what to print.
async fn execute(http: &Http, json: bool, plan: Plan) -> Result<String, Failure> {
    match plan {
        Plan::One(c) => {
            let reply = http.call(&c.method, &c.path, c.body.as_ref()).await?;
            if json {
                return Ok(raw_json(&reply.body));
            }
            Ok(render(&c.show, &reply.json()?))
        }
        Plan::CreateTenant {
            tenant,
            admin_roles,
            mut allowed_clusters,
        } => {
            if allowed_clusters.is_empty() {
                allowed_clusters = string_list(&http.get_json("/admin/v2/clusters").await?);
            }
            let body = json!({"adminRoles": admin_roles, "allowedClusters": allowed_clusters});
            let path = format!("/admin/v2/tenants/{}", enc(&tenant));
            let reply = http.call(&Method::PUT, &path, Some(&body)).await?;
            Ok(confirm(json, &reply, format!("Created tenant {tenant}")))
        }
        Plan::UpdateTenant {
            tenant,
            admin_roles,
            allowed_clusters,
        } => {
            let path = format!("/admin/v2/tenants/{}", enc(&tenant));
            let current = http.get_json(&path).await?;
            let body = json!({
                "adminRoles": admin_roles.unwrap_or_else(|| string_list(&current["adminRoles"])),
                "allowedClusters": allowed_clusters
                    .unwrap_or_else(|| string_list(&current["allowedClusters"])),
            });
            let reply = http.call(&Method::POST, &path, Some(&body)).await?;
            Ok(confirm(json, &reply, format!("Updated tenant {tenant}")))
        }
        Plan::Peek {
            topic,
            subscription,
            count,
        } => peek(http, json, &topic, &subscription, count).await,
        Plan::Offload { topic, threshold } => offload(http, json, &topic, threshold).await,
        Plan::OffloadWait { topic } => offload_wait(http, json, &topic).await,
    }
}

/// The first ledger to keep so that the newest ledgers kept hold at most
/// `threshold` bytes (as pulsar-admin computes it); `None`: nothing to move.
fn offload_boundary(stats: &Value, threshold: u64) -> Option<u64> {
    let ledgers = stats["ledgers"].as_array()?;
    let mut kept = 0u64;
    // The newest ledger (the one being written) stays whatever its size.
    let mut keep_from = ledgers.last()?["ledgerId"].as_u64();
    for l in ledgers.iter().rev() {
        kept = kept.saturating_add(l["size"].as_u64().unwrap_or(0));
        if kept > threshold {
            return keep_from;
        }
        keep_from = l["ledgerId"].as_u64();
    }
    None
}

async fn offload(
    http: &Http,
    json: bool,
    topic: &TopicName,
    threshold: u64,
) -> Result<String, Failure> {
    let path = topic_path(topic);
    let stats = http.get_json(&format!("{path}/internalStats")).await?;
    let Some(ledger) = offload_boundary(&stats, threshold) else {
        return Ok(format!(
            "Nothing to offload: {topic} holds at most {threshold} bytes\n"
        ));
    };
    let id = json!({"ledgerId": ledger, "entryId": 0, "partitionIndex": -1});
    let reply = http
        .call(&Method::PUT, &format!("{path}/offload"), Some(&id))
        .await?;
    let msg = format!("Offload triggered for {topic} for messages before {ledger}:0:-1");
    Ok(confirm(json, &reply, msg))
}

async fn offload_wait(http: &Http, json: bool, topic: &TopicName) -> Result<String, Failure> {
    let path = format!("{}/offload", topic_path(topic));
    loop {
        let status = http.get_json(&path).await?;
        match status["status"].as_str() {
            Some("RUNNING") => tokio::time::sleep(Duration::from_millis(500)).await,
            _ if json => return Ok(format!("{status}\n")),
            Some("ERROR") => {
                return Err(Failure::Refused {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    reason: format!("Error in offload: {}", status["lastError"]),
                })
            }
            Some(s) => return Ok(format!("Offload status: {s}\n")),
            None => return Err(Failure::Other(format!("unexpected answer: {status}"))),
        }
    }
}

fn string_list(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The answer to an operation that returns nothing, or little.
fn confirm(json: bool, reply: &Reply, msg: String) -> String {
    if json {
        raw_json(&reply.body)
    } else {
        format!("{msg}\n")
    }
}

/// `--json`: the body as the server sent it; `{}` when there is none.
fn raw_json(body: &Bytes) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        "{}\n".into()
    } else {
        format!("{text}\n")
    }
}

/// One message read by `peek-messages`.
struct Peeked {
    /// `LEDGER:ENTRY`, or `LEDGER:ENTRY:INDEX` for a message of a batch.
    message_id: String,
    /// The entry's `X-Pulsar-*` headers, prefix removed (lowercase: HTTP/1
    /// names are case-insensitive and hyper lowercases them).
    headers: Vec<(String, String)>,
    properties: Vec<(String, String)>,
    payload: Bytes,
}

const BATCH_HEADER: &str = "x-pulsar-num-batch-message";

/// The messages of one entry. The REST API returns an entry as stored: a
/// batch stays a batch (the header says how many), and, as pulsar-admin
/// does, it is split here into its messages with their own properties.
fn peeked_messages(reply: &Reply) -> Vec<Peeked> {
    let mut entry_id = String::new();
    let mut headers = Vec::new();
    let mut properties = Vec::new();
    for (name, value) in &reply.headers {
        let Some(rest) = name.as_str().strip_prefix("x-pulsar-") else {
            continue;
        };
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if rest == "message-id" {
            entry_id = value;
        } else if let Some(key) = rest.strip_prefix("property-") {
            properties.push((key.to_string(), value));
        } else {
            headers.push((rest.to_string(), value));
        }
    }
    let batch_size = reply
        .headers
        .get(BATCH_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let split = batch_size.and_then(|n| magnetar_wire::batch::split(&reply.body, n).ok());
    let Some(batch) = split else {
        // Not a batch, or one this client cannot read: the entry as it is.
        return vec![Peeked {
            message_id: entry_id,
            headers,
            properties,
            payload: reply.body.clone(),
        }];
    };
    batch
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let mut headers: Vec<(String, String)> = headers
                .iter()
                .filter(|(k, _)| format!("x-pulsar-{k}") != BATCH_HEADER)
                .cloned()
                .collect();
            let md = &m.metadata;
            if let Some(key) = &md.partition_key {
                headers.retain(|(k, _)| k != "partition-key");
                headers.push(("partition-key".into(), key.clone()));
            }
            if let Some(seq) = md.sequence_id {
                headers.retain(|(k, _)| k != "sequence-id");
                headers.push(("sequence-id".into(), seq.to_string()));
            }
            let mut props = properties.clone();
            props.extend(
                md.properties
                    .iter()
                    .map(|kv| (kv.key.clone(), kv.value.clone())),
            );
            Peeked {
                message_id: format!("{entry_id}:{i}"),
                headers,
                properties: props,
                payload: m.payload,
            }
        })
        .collect()
}

impl Peeked {
    fn to_json(&self) -> Value {
        let obj = |pairs: &[(String, String)]| {
            Value::Object(pairs.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
        };
        json!({
            "messageId": self.message_id,
            "headers": obj(&self.headers),
            "properties": obj(&self.properties),
            "payload": std::str::from_utf8(&self.payload).ok(),
            "payloadBase64": base64::engine::general_purpose::STANDARD.encode(&self.payload),
        })
    }

    fn render(&self) -> String {
        let mut rows: Vec<Vec<String>> = self
            .headers
            .iter()
            .map(|(k, v)| vec![k.clone(), v.clone()])
            .collect();
        rows.extend(
            self.properties
                .iter()
                .map(|(k, v)| vec![format!("property {k}"), v.clone()]),
        );
        let mut out = format!("Message ID: {}\n", self.message_id);
        out.push_str(&indent(&table(&[], &rows)));
        let _ = writeln!(out, "  payload ({} bytes):", self.payload.len());
        match std::str::from_utf8(&self.payload) {
            Ok(text)
                if !text
                    .chars()
                    .any(|c| c.is_control() && c != '\n' && c != '\t') =>
            {
                out.push_str(&indent(&indent(text)));
            }
            _ => out.push_str(&indent(&indent(&hex_dump(&self.payload)))),
        }
        out
    }
}

/// The next `count` messages of a subscription, one entry (position) per
/// call, as pulsar-admin reads them.
async fn peek(
    http: &Http,
    json: bool,
    topic: &TopicName,
    subscription: &str,
    count: u32,
) -> Result<String, Failure> {
    let count = count as usize;
    let mut messages = Vec::new();
    let mut position = 1u32;
    while messages.len() < count {
        let sub = format!("{}/subscription/{}", topic_path(topic), enc(subscription));
        let reply = http
            .send(&Method::GET, &format!("{sub}/position/{position}"), None)
            .await?;
        if !reply.status.is_success() {
            if reply.status != StatusCode::NOT_FOUND || reply.is_no_such_endpoint() {
                return Err(reply.refused());
            }
            // 404: past the end of the backlog, or no such topic or
            // subscription; only the latter is an error.
            if position == 1 {
                let subs = http
                    .get_json(&format!("{}/subscriptions", topic_path(topic)))
                    .await?;
                if !string_list(&subs).iter().any(|s| s == subscription) {
                    return Err(reply.refused());
                }
            }
            break;
        }
        let mut entry = peeked_messages(&reply);
        entry.truncate(count - messages.len());
        messages.extend(entry);
        position += 1;
    }
    if json {
        let all: Vec<Value> = messages.iter().map(Peeked::to_json).collect();
        return Ok(format!("{}\n", Value::Array(all)));
    }
    if messages.is_empty() {
        return Ok("(no messages)\n".into());
    }
    Ok(messages
        .iter()
        .map(Peeked::render)
        .collect::<Vec<_>>()
        .join("\n"))
}

// ---- output formatting ------------------------------------------------------------

fn is_scalar(v: &Value) -> bool {
    !matches!(v, Value::Array(_) | Value::Object(_))
}

/// A value in one table cell or after a key: nested data shortened.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => "-".into(),
        Value::Array(items) if items.iter().all(is_scalar) => {
            items.iter().map(cell).collect::<Vec<_>>().join(", ")
        }
        // e.g. a subscription's consumers: how many.
        Value::Array(items) => items.len().to_string(),
        Value::Object(m) if m.is_empty() => "-".into(),
        // e.g. a partition's subscriptions: their names.
        Value::Object(m) => m.keys().cloned().collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

/// Aligned columns, two spaces apart; no header line when `headers` is
/// empty; no trailing blanks.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let columns = rows
        .iter()
        .map(Vec::len)
        .chain([headers.len()])
        .max()
        .unwrap_or(0);
    let mut widths = vec![0usize; columns];
    let header_row: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    let all = std::iter::once(&header_row)
        .filter(|h| !h.is_empty())
        .chain(rows);
    for row in all.clone() {
        for (i, c) in row.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for row in all {
        let mut line = String::new();
        for (i, c) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(c);
            let pad = widths[i].saturating_sub(c.chars().count());
            line.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| {
            if l.is_empty() {
                "\n".into()
            } else {
                format!("  {l}\n")
            }
        })
        .collect()
}

/// Rows of objects under `key_header`; a column per field seen, in the
/// order first seen.
fn object_table(key_header: &str, rows: &[(String, &Map<String, Value>)]) -> String {
    let mut fields: Vec<&String> = Vec::new();
    for (_, obj) in rows {
        for k in obj.keys() {
            if !fields.contains(&k) {
                fields.push(k);
            }
        }
    }
    let mut headers = vec![key_header];
    headers.extend(fields.iter().map(|f| f.as_str()));
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|(key, obj)| {
            std::iter::once(key.clone())
                .chain(
                    fields
                        .iter()
                        .map(|f| obj.get(*f).map(cell).unwrap_or_default()),
                )
                .collect()
        })
        .collect();
    table(&headers, &cells)
}

/// Records keyed by name (subscriptions, partitions, cursors, quotas):
/// objects with plain fields that share one at least, so that columns make
/// sense (unlike maps of maps such as `auth_policies`).
fn is_map_of_objects(m: &Map<String, Value>) -> bool {
    let Some(records) = m.values().map(Value::as_object).collect::<Option<Vec<_>>>() else {
        return false;
    };
    let Some(first) = records.first() else {
        return false;
    };
    records.iter().all(|r| r.values().any(is_scalar))
        && first
            .keys()
            .any(|k| records.iter().all(|r| r.contains_key(k)))
}

fn is_list_of_objects(items: &[Value]) -> bool {
    !items.is_empty() && items.iter().all(Value::is_object)
}

/// Any document: its plain fields as key/value lines, then each nested
/// part as a titled section (a table when it is a collection of objects).
fn render_doc(v: &Value) -> String {
    match v {
        Value::Object(m) => render_object(m),
        Value::Array(items) if is_list_of_objects(items) => {
            let rows: Vec<(String, &Map<String, Value>)> = items
                .iter()
                .enumerate()
                .filter_map(|(i, x)| x.as_object().map(|o| (i.to_string(), o)))
                .collect();
            object_table("#", &rows)
        }
        Value::Array(items) => items.iter().map(|x| format!("{}\n", cell(x))).collect(),
        other => format!("{}\n", cell(other)),
    }
}

fn render_object(m: &Map<String, Value>) -> String {
    let nested = |v: &Value| match v {
        Value::Object(o) => !o.is_empty(),
        Value::Array(items) => is_list_of_objects(items),
        _ => false,
    };
    let flat: Vec<Vec<String>> = m
        .iter()
        .filter(|(_, v)| !nested(v))
        .map(|(k, v)| vec![k.clone(), cell(v)])
        .collect();
    let mut out = table(&[], &flat);
    for (k, v) in m.iter().filter(|(_, v)| nested(v)) {
        if !out.is_empty() {
            out.push('\n');
        }
        let _ = writeln!(out, "{k}:");
        let body = match v {
            Value::Object(o) if is_map_of_objects(o) => {
                let rows: Vec<(String, &Map<String, Value>)> = o
                    .iter()
                    .filter_map(|(name, x)| x.as_object().map(|x| (name.clone(), x)))
                    .collect();
                object_table("name", &rows)
            }
            other => render_doc(other),
        };
        out.push_str(&indent(&body));
    }
    out
}

/// A human rendering of a successful answer.
fn render(show: &Show, v: &Value) -> String {
    match (show, v) {
        (Show::Done(msg), Value::Null) => format!("{msg}\n"),
        (Show::Done(msg), other) => format!("{msg}\n{}", render_doc(other)),
        (Show::List(_), Value::Array(items)) if items.is_empty() => "(none)\n".into(),
        (Show::List(header), Value::Array(items)) if items.iter().all(is_scalar) => {
            let rows: Vec<Vec<String>> = items.iter().map(|x| vec![cell(x)]).collect();
            table(&[header], &rows)
        }
        (Show::Map(..), Value::Object(m)) if m.is_empty() => "(none)\n".into(),
        (Show::Map(key, _), Value::Object(m)) if is_map_of_objects(m) => {
            let rows: Vec<(String, &Map<String, Value>)> = m
                .iter()
                .filter_map(|(k, x)| x.as_object().map(|x| (k.clone(), x)))
                .collect();
            object_table(key, &rows)
        }
        (Show::Map(key, value), Value::Object(m)) => {
            let rows: Vec<Vec<String>> = m.iter().map(|(k, x)| vec![k.clone(), cell(x)]).collect();
            table(&[key, value], &rows)
        }
        (Show::Value, Value::Null) => "not set\n".into(),
        (Show::Value, other) if is_scalar(other) => format!("{}\n", cell(other)),
        (Show::Bundles, Value::Object(m)) => match m.get("boundaries").and_then(Value::as_array) {
            Some(bounds) if bounds.len() >= 2 => {
                let rows: Vec<Vec<String>> = bounds
                    .windows(2)
                    .map(|w| vec![format!("{}_{}", cell(&w[0]), cell(&w[1]))])
                    .collect();
                table(&["BUNDLE"], &rows)
            }
            _ => render_doc(v),
        },
        // Anything else, or a shape the broker did not use to send.
        _ => render_doc(v),
    }
}

/// 16 bytes a line: offset, hex, printable ASCII.
fn hex_dump(data: &[u8]) -> String {
    let mut out = String::new();
    for (i, chunk) in data.chunks(16).enumerate() {
        let _ = write!(out, "{:08x} ", i * 16);
        for b in chunk {
            let _ = write!(out, " {b:02x}");
        }
        out.extend(std::iter::repeat_n(' ', 3 * (16 - chunk.len())));
        out.push_str("  ");
        out.extend(chunk.iter().map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                char::from(b)
            } else {
                '.'
            }
        }));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Root {
        #[command(flatten)]
        admin: AdminCli,
    }

    fn plan_of(args: &[&str]) -> Plan {
        let root = Root::try_parse_from(std::iter::once("admin").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        plan(root.admin.group).unwrap()
    }

    fn one(args: &[&str]) -> (Method, String, Option<Value>) {
        match plan_of(args) {
            Plan::One(c) => (c.method, c.path, c.body),
            _ => panic!("{args:?} is not one call"),
        }
    }

    fn rejected(args: &[&str]) -> bool {
        Root::try_parse_from(std::iter::once("admin").chain(args.iter().copied())).is_err()
    }

    #[test]
    fn topic_names_take_every_spelling() {
        let short = one(&["topics", "stats", "x"]).1;
        let mid = one(&["topics", "stats", "public/default/x"]).1;
        let full = one(&["topics", "stats", "persistent://public/default/x"]).1;
        assert_eq!(short, "/admin/v2/persistent/public/default/x/stats");
        assert_eq!(short, mid);
        assert_eq!(short, full);
        assert!(rejected(&["topics", "stats", "non-persistent://a/b/c"]));
        assert!(rejected(&["topics", "stats", "a/b"]));
    }

    #[test]
    fn subscription_paths_and_bodies() {
        assert_eq!(
            one(&["topics", "skip", "t", "-s", "my sub/1", "-n", "5"]),
            (
                Method::POST,
                "/admin/v2/persistent/public/default/t/subscription/my%20sub%2F1/skip/5".into(),
                None
            )
        );
        let (m, p, b) = one(&[
            "topics",
            "create-subscription",
            "a/b/t",
            "-s",
            "s",
            "--message-id",
            "3:7",
        ]);
        assert_eq!(
            (m, p.as_str()),
            (Method::PUT, "/admin/v2/persistent/a/b/t/subscription/s")
        );
        assert_eq!(b, Some(json!({"ledgerId": 3, "entryId": 7})));
        let (_, p, b) = one(&[
            "topics",
            "reset-cursor",
            "t",
            "-s",
            "s",
            "--time",
            "1700000000000",
        ]);
        assert!(p.ends_with("/subscription/s/resetcursor/1700000000000"));
        assert_eq!(b, None);
        assert!(rejected(&["topics", "reset-cursor", "t", "-s", "s"]));
        let (_, p, _) = one(&["topics", "unsubscribe", "t", "-s", "s", "--force"]);
        assert!(p.ends_with("/subscription/s?force=true"));
        let (_, p, _) = one(&["topics", "clear-backlog", "t", "-s", "s"]);
        assert!(p.ends_with("/subscription/s/skip_all"));
    }

    #[test]
    fn namespace_policies_bodies() {
        assert_eq!(
            one(&[
                "namespaces",
                "set-retention",
                "a/b",
                "--time",
                "2h",
                "--size",
                "-1"
            ])
            .2,
            Some(json!({"retentionTimeInMinutes": 120, "retentionSizeInMB": -1}))
        );
        let (m, p, b) = one(&[
            "namespaces",
            "set-backlog-quota",
            "a/b",
            "--limit-size",
            "10G",
            "--policy",
            "producer_exception",
        ]);
        assert_eq!(m, Method::POST);
        assert_eq!(
            p,
            "/admin/v2/namespaces/a/b/backlogQuota?backlogQuotaType=destination_storage"
        );
        assert_eq!(
            b,
            Some(
                json!({"limitSize": 10i64 << 30, "limitTime": -1, "policy": "producer_exception"})
            )
        );
        let (_, p, _) = one(&[
            "namespaces",
            "set-backlog-quota",
            "a/b",
            "--limit-time",
            "1h",
            "-p",
            "consumer_backlog_eviction",
        ]);
        assert!(p.ends_with("backlogQuotaType=message_age"));
        assert!(rejected(&[
            "namespaces",
            "set-backlog-quota",
            "a/b",
            "-p",
            "producer_exception"
        ]));
        assert_eq!(
            one(&["namespaces", "set-deduplication", "a/b", "--disable"]).2,
            Some(json!(false))
        );
        assert!(rejected(&["namespaces", "set-deduplication", "a/b"]));
        assert!(rejected(&[
            "namespaces",
            "set-deduplication",
            "a/b",
            "-e",
            "-d"
        ]));
        assert_eq!(
            one(&["namespaces", "create", "a/b", "--bundles", "8"]).2,
            Some(json!({"bundles": {"numBundles": 8}}))
        );
        assert_eq!(
            one(&[
                "namespaces",
                "set-offload-policies",
                "a/b",
                "--driver",
                "aws-s3",
                "--bucket",
                "bk"
            ])
            .2,
            Some(
                json!({"managedLedgerOffloadDriver": "aws-s3", "s3ManagedLedgerOffloadBucket": "bk"})
            )
        );
        assert_eq!(
            one(&[
                "namespaces",
                "set-offload-policies",
                "a/b",
                "--json-body",
                "{\"x\":1}"
            ])
            .2,
            Some(json!({"x": 1}))
        );
        assert!(rejected(&[
            "namespaces",
            "set-offload-policies",
            "a/b",
            "--bucket",
            "b"
        ]));
        assert_eq!(
            one(&[
                "namespaces",
                "grant-permission",
                "a/b",
                "--role",
                "r",
                "--actions",
                "produce,consume"
            ]),
            (
                Method::POST,
                "/admin/v2/namespaces/a/b/permissions/r".into(),
                Some(json!(["produce", "consume"]))
            )
        );
    }

    #[test]
    fn tenants_update_keeps_what_is_not_given() {
        assert_eq!(
            plan_of(&["tenants", "update", "t", "--admin-roles", ""]),
            Plan::UpdateTenant {
                tenant: "t".into(),
                admin_roles: Some(vec![]),
                allowed_clusters: None
            }
        );
        assert!(rejected(&["tenants", "update", "t"]));
        assert!(rejected(&["tenants", "get", "a/b"]));
    }

    #[test]
    fn global_flags_are_checked() {
        assert!(rejected(&["--url", "ftp://x:1", "clusters", "list"]));
        assert!(rejected(&["--url", "not a url", "clusters", "list"]));
        assert!(rejected(&["--timeout", "-1", "clusters", "list"]));
        assert!(rejected(&["--timeout", "NaN", "clusters", "list"]));
        assert!(!rejected(&[
            "clusters",
            "list",
            "--json",
            "--timeout",
            "2.5"
        ]));
    }

    #[test]
    fn units() {
        assert_eq!(parse_minutes("90"), Ok(90));
        assert_eq!(parse_minutes("1d"), Ok(1440));
        assert_eq!(parse_megabytes("2G"), Ok(2048));
        assert_eq!(parse_bytes("1k"), Ok(1024));
        assert_eq!(parse_seconds("2m"), Ok(120));
        assert!(parse_seconds("5x").is_err());
        assert!(parse_bytes("99999999999T").is_err());
        assert!(parse_minutes("").is_err());
        assert_eq!(parse_message_id("earliest"), Ok(MessageId::Earliest));
        assert!(parse_message_id("1:-2").is_err());
        assert!(parse_message_id("1").is_err());
    }

    #[test]
    fn redirects_resolve() {
        assert_eq!(resolve("http://a:1/x/y?q", "http://b:2/z"), "http://b:2/z");
        assert_eq!(resolve("http://a:1/x/y", "/z?w"), "http://a:1/z?w");
    }

    #[test]
    fn tables_align() {
        let t = table(&["A", "LONG"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "A    LONG\nxyz  1\n");
        let list = render(&Show::List("TENANT"), &json!(["public", "acme"]));
        assert_eq!(list, "TENANT\npublic\nacme\n");
        assert_eq!(render(&Show::List("T"), &json!([])), "(none)\n");
        assert_eq!(render(&Show::Value, &Value::Null), "not set\n");
        let perms = render(
            &Show::Map("ROLE", "ACTIONS"),
            &json!({"app": ["consume", "produce"]}),
        );
        assert_eq!(perms, "ROLE  ACTIONS\napp   consume, produce\n");
        let bundles = render(
            &Show::Bundles,
            &json!({"boundaries": ["0x00000000", "0x80000000", "0xffffffff"], "numBundles": 2}),
        );
        assert_eq!(
            bundles,
            "BUNDLE\n0x00000000_0x80000000\n0x80000000_0xffffffff\n"
        );
    }

    #[test]
    fn documents_show_fields_then_sections() {
        let stats = json!({
            "msgInCounter": 3,
            "publishers": [],
            "subscriptions": {
                "s1": {"consumers": [{}, {}], "msgBacklog": 3, "type": "Exclusive"},
                "s2": {"consumers": [], "msgBacklog": 0, "type": "Shared"}
            }
        });
        let text = render(&Show::Doc, &stats);
        assert_eq!(
            text,
            "msgInCounter  3\npublishers    -\n\nsubscriptions:\n  \
             name  consumers  msgBacklog  type\n  \
             s1    2          3           Exclusive\n  \
             s2    -          0           Shared\n"
        );
    }

    #[test]
    fn hex_dump_lines() {
        let d = hex_dump(b"\x00ab");
        assert!(d.starts_with("00000000  00 61 62"), "{d}");
        assert!(d.trim_end().ends_with(".ab"), "{d}");
    }

    #[test]
    fn raw_json_of_nothing_is_an_empty_object() {
        assert_eq!(raw_json(&Bytes::new()), "{}\n");
        assert_eq!(raw_json(&Bytes::from_static(b"[\"a\"]")), "[\"a\"]\n");
    }
    #[test]
    fn offload_keeps_the_newest_ledgers_within_the_threshold() {
        let stats = json!({"ledgers": [
            {"ledgerId": 1, "size": 100}, {"ledgerId": 2, "size": 100},
            {"ledgerId": 3, "size": 100}, {"ledgerId": 4, "size": 10}]});
        // 10 + 100 fit in 150, with ledger 2 it would be 210: keep 3 and 4.
        assert_eq!(offload_boundary(&stats, 150), Some(3));
        assert_eq!(offload_boundary(&stats, 0), Some(4));
        assert_eq!(offload_boundary(&stats, 10), Some(4));
        assert_eq!(offload_boundary(&stats, 1000), None);
    }
}

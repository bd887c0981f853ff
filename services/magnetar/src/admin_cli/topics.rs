//! `admin topics ...`: persistent topics, their subscriptions and permissions.

use super::*;

/// A topic and one of its subscriptions.
#[derive(Args)]
pub(super) struct SubArgs {
    /// persistent://tenant/ns/name, tenant/ns/name, or name (in public/default).
    #[arg(value_parser = parse_topic)]
    pub(super) topic: TopicName,
    #[arg(long, short = 's')]
    pub(super) subscription: String,
}

#[derive(Subcommand)]
pub(super) enum TopicsCmd {
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

pub(super) fn plan_topics(c: TopicsCmd) -> Result<Plan, String> {
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

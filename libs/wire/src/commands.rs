//! Ties each `BaseCommand.type` value to the command field it selects.
//!
//! A Pulsar frame carries one `BaseCommand` whose `type` says which of ~70
//! optional fields holds the actual command. The table below is the single
//! place that knows these (type, field, message) triples; the macro turns it
//! into `From<CommandX> for BaseCommand`, field-presence checks, an empty
//! command per type, and the list of all types, so a new command is one line.

use crate::error::WireError;
use crate::pb::{self, BaseCommand};
use crate::CommandType;

macro_rules! commands {
    ($($variant:ident => $field:ident : $msg:ident;)*) => {
        $(
            impl From<pb::$msg> for BaseCommand {
                fn from(command: pb::$msg) -> Self {
                    BaseCommand {
                        r#type: CommandType::$variant as i32,
                        $field: Some(command),
                        ..Default::default()
                    }
                }
            }
        )*

        /// Every command type, in protocol order.
        pub const ALL_COMMAND_TYPES: &[CommandType] = &[$(CommandType::$variant),*];

        /// The name of the field that `kind` selects, if `cmd` lacks it.
        fn missing_field(kind: CommandType, cmd: &BaseCommand) -> Option<&'static str> {
            match kind {
                $(CommandType::$variant => cmd.$field.is_none().then_some(stringify!($field)),)*
            }
        }

        /// A command of type `kind` whose body is the message's default value.
        /// Handy for tests and for commands without required content (PING, PONG).
        pub fn empty_command(kind: CommandType) -> BaseCommand {
            match kind {
                $(CommandType::$variant => BaseCommand::from(pb::$msg::default()),)*
            }
        }
    };
}

commands! {
    Connect => connect: CommandConnect;
    Connected => connected: CommandConnected;
    Subscribe => subscribe: CommandSubscribe;
    Producer => producer: CommandProducer;
    Send => send: CommandSend;
    SendReceipt => send_receipt: CommandSendReceipt;
    SendError => send_error: CommandSendError;
    Message => message: CommandMessage;
    Ack => ack: CommandAck;
    Flow => flow: CommandFlow;
    Unsubscribe => unsubscribe: CommandUnsubscribe;
    Success => success: CommandSuccess;
    Error => error: CommandError;
    CloseProducer => close_producer: CommandCloseProducer;
    CloseConsumer => close_consumer: CommandCloseConsumer;
    ProducerSuccess => producer_success: CommandProducerSuccess;
    Ping => ping: CommandPing;
    Pong => pong: CommandPong;
    RedeliverUnacknowledgedMessages => redeliver_unacknowledged_messages: CommandRedeliverUnacknowledgedMessages;
    PartitionedMetadata => partition_metadata: CommandPartitionedTopicMetadata;
    PartitionedMetadataResponse => partition_metadata_response: CommandPartitionedTopicMetadataResponse;
    Lookup => lookup_topic: CommandLookupTopic;
    LookupResponse => lookup_topic_response: CommandLookupTopicResponse;
    ConsumerStats => consumer_stats: CommandConsumerStats;
    ConsumerStatsResponse => consumer_stats_response: CommandConsumerStatsResponse;
    ReachedEndOfTopic => reached_end_of_topic: CommandReachedEndOfTopic;
    Seek => seek: CommandSeek;
    GetLastMessageId => get_last_message_id: CommandGetLastMessageId;
    GetLastMessageIdResponse => get_last_message_id_response: CommandGetLastMessageIdResponse;
    ActiveConsumerChange => active_consumer_change: CommandActiveConsumerChange;
    GetTopicsOfNamespace => get_topics_of_namespace: CommandGetTopicsOfNamespace;
    GetTopicsOfNamespaceResponse => get_topics_of_namespace_response: CommandGetTopicsOfNamespaceResponse;
    GetSchema => get_schema: CommandGetSchema;
    GetSchemaResponse => get_schema_response: CommandGetSchemaResponse;
    AuthChallenge => auth_challenge: CommandAuthChallenge;
    AuthResponse => auth_response: CommandAuthResponse;
    AckResponse => ack_response: CommandAckResponse;
    GetOrCreateSchema => get_or_create_schema: CommandGetOrCreateSchema;
    GetOrCreateSchemaResponse => get_or_create_schema_response: CommandGetOrCreateSchemaResponse;
    NewTxn => new_txn: CommandNewTxn;
    NewTxnResponse => new_txn_response: CommandNewTxnResponse;
    AddPartitionToTxn => add_partition_to_txn: CommandAddPartitionToTxn;
    AddPartitionToTxnResponse => add_partition_to_txn_response: CommandAddPartitionToTxnResponse;
    AddSubscriptionToTxn => add_subscription_to_txn: CommandAddSubscriptionToTxn;
    AddSubscriptionToTxnResponse => add_subscription_to_txn_response: CommandAddSubscriptionToTxnResponse;
    EndTxn => end_txn: CommandEndTxn;
    EndTxnResponse => end_txn_response: CommandEndTxnResponse;
    EndTxnOnPartition => end_txn_on_partition: CommandEndTxnOnPartition;
    EndTxnOnPartitionResponse => end_txn_on_partition_response: CommandEndTxnOnPartitionResponse;
    EndTxnOnSubscription => end_txn_on_subscription: CommandEndTxnOnSubscription;
    EndTxnOnSubscriptionResponse => end_txn_on_subscription_response: CommandEndTxnOnSubscriptionResponse;
    TcClientConnectRequest => tc_client_connect_request: CommandTcClientConnectRequest;
    TcClientConnectResponse => tc_client_connect_response: CommandTcClientConnectResponse;
    WatchTopicList => watch_topic_list: CommandWatchTopicList;
    WatchTopicListSuccess => watch_topic_list_success: CommandWatchTopicListSuccess;
    WatchTopicUpdate => watch_topic_update: CommandWatchTopicUpdate;
    WatchTopicListClose => watch_topic_list_close: CommandWatchTopicListClose;
    TopicMigrated => topic_migrated: CommandTopicMigrated;
    ScalableTopicLookup => scalable_topic_lookup: CommandScalableTopicLookup;
    ScalableTopicUpdate => scalable_topic_update: CommandScalableTopicUpdate;
    ScalableTopicClose => scalable_topic_close: CommandScalableTopicClose;
    ScalableTopicSubscribe => scalable_topic_subscribe: CommandScalableTopicSubscribe;
    ScalableTopicSubscribeResponse => scalable_topic_subscribe_response: CommandScalableTopicSubscribeResponse;
    ScalableTopicAssignmentUpdate => scalable_topic_assignment_update: CommandScalableTopicAssignmentUpdate;
    WatchScalableTopics => watch_scalable_topics: CommandWatchScalableTopics;
    WatchScalableTopicsUpdate => watch_scalable_topics_update: CommandWatchScalableTopicsUpdate;
    WatchScalableTopicsClose => watch_scalable_topics_close: CommandWatchScalableTopicsClose;
    WatchTcAssignments => watch_tc_assignments: CommandWatchTcAssignments;
    WatchTcAssignmentsUpdate => watch_tc_assignments_update: CommandWatchTcAssignmentsUpdate;
    WatchTcAssignmentsClose => watch_tc_assignments_close: CommandWatchTcAssignmentsClose;
}

/// The protocol name of the command (`"SEND"`, `"PING"`, ...) for logs and errors;
/// `"UNKNOWN"` if `type` is not a known value.
pub fn command_name(cmd: &BaseCommand) -> &'static str {
    match CommandType::try_from(cmd.r#type) {
        Ok(kind) => kind.as_str_name(),
        Err(_) => "UNKNOWN",
    }
}

/// Checks that `type` is a known command and that its field is present.
/// The decoder applies this to every frame, so a decoded `Frame` can rely on it.
pub fn validate_command(cmd: &BaseCommand) -> Result<CommandType, WireError> {
    let kind =
        CommandType::try_from(cmd.r#type).map_err(|_| WireError::UnknownCommand(cmd.r#type))?;
    if let Some(field) = missing_field(kind, cmd) {
        return Err(WireError::Malformed(format!(
            "{} command without its `{field}` field",
            kind.as_str_name()
        )));
    }
    Ok(kind)
}

/// Commands whose frame is followed by message headers and payload.
pub fn carries_payload(kind: CommandType) -> bool {
    matches!(kind, CommandType::Send | CommandType::Message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn from_sets_type_and_field() {
        let cmd = BaseCommand::from(pb::CommandPong {});
        assert_eq!(cmd.r#type(), CommandType::Pong);
        assert!(cmd.pong.is_some());
        assert_eq!(command_name(&cmd), "PONG");

        let cmd = BaseCommand::from(pb::CommandFlow {
            consumer_id: 7,
            message_permits: 100,
        });
        assert_eq!(cmd.r#type(), CommandType::Flow);
        assert_eq!(cmd.flow.as_ref().map(|f| f.message_permits), Some(100));
    }

    #[test]
    fn every_type_has_a_field_and_a_name() {
        assert_eq!(ALL_COMMAND_TYPES.len(), 70);
        for &kind in ALL_COMMAND_TYPES {
            let cmd = empty_command(kind);
            assert_eq!(cmd.r#type, kind as i32);
            assert_eq!(validate_command(&cmd).ok(), Some(kind));
            assert_eq!(command_name(&cmd), kind.as_str_name());
            // Survives a protobuf round trip, including empty bodies.
            let back = BaseCommand::decode(cmd.encode_to_vec().as_slice()).ok();
            assert_eq!(back.as_ref(), Some(&cmd));
        }
    }

    #[test]
    fn unknown_type_is_rejected() {
        let cmd = BaseCommand {
            r#type: 69,
            ..Default::default()
        };
        assert!(matches!(
            validate_command(&cmd),
            Err(WireError::UnknownCommand(69))
        ));
        assert_eq!(command_name(&cmd), "UNKNOWN");
        let cmd = BaseCommand {
            r#type: 0,
            ..Default::default()
        };
        assert!(matches!(
            validate_command(&cmd),
            Err(WireError::UnknownCommand(0))
        ));
    }

    #[test]
    fn missing_field_is_malformed() {
        let mut cmd = BaseCommand::from(pb::CommandPing {});
        cmd.ping = None;
        cmd.pong = Some(pb::CommandPong {});
        assert!(matches!(
            validate_command(&cmd),
            Err(WireError::Malformed(_))
        ));
    }
}

//! LOOKUP, PARTITIONED_METADATA and GET_TOPICS_OF_NAMESPACE: where topics
//! are and which exist.

use magnetar_common::names::{NamespaceName, TopicName};
use magnetar_wire::pb;

use super::{error, Conn};

impl Conn {
    pub(super) async fn lookup(
        &self,
        c: &pb::CommandLookupTopic,
    ) -> pb::CommandLookupTopicResponse {
        use crate::lookup::Answer;
        use pb::command_lookup_topic_response::LookupType;
        let answer = match TopicName::parse(&c.topic) {
            Ok(t) => match self.svc.check_any(self.role.as_deref(), &t).await {
                Ok(()) => {
                    crate::lookup::lookup(&self.svc, &t, c.authoritative.unwrap_or(false)).await
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(e.into()),
        };
        let found = |url: String, kind: LookupType| pb::CommandLookupTopicResponse {
            broker_service_url: Some(url),
            response: Some(kind as i32),
            request_id: c.request_id,
            authoritative: Some(true),
            proxy_through_service_url: Some(false),
            ..Default::default()
        };
        let listener = c.advertised_listener_name.as_deref();
        let tls = self.transport.tls;
        let answer = answer.and_then(|a| match a {
            Answer::Here => Ok((
                self.svc.ownership().me.lookup_urls(listener, tls)?,
                LookupType::Connect,
            )),
            Answer::Owner(o) => Ok((o.lookup_urls(listener, tls)?, LookupType::Connect)),
            // The chosen broker takes the bundle when asked authoritatively.
            Answer::Assign(o) => Ok((o.lookup_urls(listener, tls)?, LookupType::Redirect)),
        });
        match answer {
            Ok(((url, url_tls), kind)) => pb::CommandLookupTopicResponse {
                broker_service_url_tls: url_tls,
                ..found(url, kind)
            },
            Err(e) => pb::CommandLookupTopicResponse {
                response: Some(LookupType::Failed as i32),
                request_id: c.request_id,
                error: Some(e.server_error() as i32),
                message: Some(e.to_string()),
                ..Default::default()
            },
        }
    }

    pub(super) async fn partitioned_metadata(&self, c: pb::CommandPartitionedTopicMetadata) {
        use pb::command_partitioned_topic_metadata_response::LookupType;
        let r = async {
            let t = self.check_topic(&c.topic).await?;
            self.svc.check_any(self.role.as_deref(), &t).await?;
            self.svc.partitions_of(&t).await
        }
        .await;
        let reply = match r {
            Ok(n) => pb::CommandPartitionedTopicMetadataResponse {
                partitions: Some(n),
                request_id: c.request_id,
                response: Some(LookupType::Success as i32),
                ..Default::default()
            },
            Err(e) => pb::CommandPartitionedTopicMetadataResponse {
                request_id: c.request_id,
                response: Some(LookupType::Failed as i32),
                error: Some(e.server_error() as i32),
                message: Some(e.to_string()),
                ..Default::default()
            },
        };
        self.out.send(reply);
    }

    pub(super) async fn topics_of_namespace(&self, c: pb::CommandGetTopicsOfNamespace) {
        let r = async {
            let ns = NamespaceName::parse(&c.namespace)?;
            self.svc
                .check_namespace_access(self.role.as_deref(), &ns)
                .await?;
            self.svc.list_topics(&ns).await
        }
        .await;
        match r {
            Ok(topics) => self.out.send(pb::CommandGetTopicsOfNamespaceResponse {
                request_id: c.request_id,
                topics,
                filtered: Some(false),
                topics_hash: None,
                changed: Some(true),
            }),
            Err(e) => self.out.send(error(c.request_id, &e)),
        };
    }
}

//! GET_SCHEMA and GET_OR_CREATE_SCHEMA: the schema registry over the binary
//! protocol.

use magnetar_common::names::TopicName;
use magnetar_wire::{pb, ServerError};

use super::Conn;
use crate::error::BrokerError;
use crate::schema;

impl Conn {
    pub(super) async fn get_schema(&self, c: pb::CommandGetSchema) {
        let version = c.schema_version.as_deref().and_then(schema::decode_version);
        let r = async {
            let t = TopicName::parse(&c.topic)?;
            schema::get(self.svc.resources(), &t, version).await
        }
        .await;
        let reply = match r {
            Ok(Some((v, s))) => pb::CommandGetSchemaResponse {
                request_id: c.request_id,
                schema: Some(schema::to_wire(&s)),
                schema_version: Some(schema::encode_version(v)),
                ..Default::default()
            },
            Ok(None) => pb::CommandGetSchemaResponse {
                request_id: c.request_id,
                error_code: Some(ServerError::TopicNotFound as i32),
                error_message: Some(format!("no schema for topic {}", c.topic)),
                ..Default::default()
            },
            Err(e) => pb::CommandGetSchemaResponse {
                request_id: c.request_id,
                error_code: Some(e.server_error() as i32),
                error_message: Some(e.to_string()),
                ..Default::default()
            },
        };
        self.out.send(reply);
    }

    pub(super) async fn get_or_create_schema(&self, c: pb::CommandGetOrCreateSchema) {
        let r = async {
            let t = TopicName::parse(&c.topic)?;
            let new = schema::NewSchema::from_wire(&c.schema)?.ok_or_else(|| {
                BrokerError::BadRequest("GET_OR_CREATE_SCHEMA with no schema".into())
            })?;
            schema::add(self.svc.resources(), &t, &new, schema::Adder::Client).await
        }
        .await;
        let reply = match r {
            Ok(v) => pb::CommandGetOrCreateSchemaResponse {
                request_id: c.request_id,
                schema_version: Some(schema::encode_version(v)),
                ..Default::default()
            },
            Err(e) => pb::CommandGetOrCreateSchemaResponse {
                request_id: c.request_id,
                error_code: Some(e.server_error() as i32),
                error_message: Some(e.to_string()),
                ..Default::default()
            },
        };
        self.out.send(reply);
    }
}

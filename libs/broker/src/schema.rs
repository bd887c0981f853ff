//! Topic schemas: stored versions, looked up or added by producers and by
//! GET_SCHEMA / GET_OR_CREATE_SCHEMA. Any schema is accepted as a new version
//! (no compatibility check yet); the same schema again gets its old version.

use magnetar_common::names::TopicName;
use magnetar_wire::pb;

use crate::error::{BrokerError, Result};
use crate::resources::{Resources, SchemaVersion};

/// Pulsar encodes a schema version as an 8-byte big-endian number.
pub fn encode_version(v: u64) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

pub fn decode_version(raw: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(raw.try_into().ok()?))
}

fn to_stored(s: &pb::Schema) -> SchemaVersion {
    SchemaVersion {
        schema_type: s.r#type,
        name: s.name.clone(),
        data: s.schema_data.clone(),
        properties: s
            .properties
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone()))
            .collect(),
    }
}

pub fn to_wire(s: &SchemaVersion) -> pb::Schema {
    pb::Schema {
        name: s.name.clone(),
        schema_data: s.data.clone(),
        r#type: s.schema_type,
        properties: s
            .properties
            .iter()
            .map(|(k, v)| pb::KeyValue {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
    }
}

/// The version of `schema` on `topic`, adding it if new.
pub async fn get_or_create(r: &Resources, topic: &TopicName, schema: &pb::Schema) -> Result<u64> {
    let wanted = to_stored(schema);
    for _ in 0..10 {
        let (mut stored, version) = r.schemas(topic).await?.unwrap_or_default();
        if let Some(i) = stored
            .versions
            .iter()
            .position(|v| v.schema_type == wanted.schema_type && v.data == wanted.data)
        {
            return Ok(i as u64);
        }
        stored.versions.push(wanted.clone());
        match r.put_schemas(topic, &stored, version).await {
            Ok(()) => return Ok(stored.versions.len() as u64 - 1),
            Err(BrokerError::Conflict(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(BrokerError::Conflict(format!(
        "schema of {topic} keeps changing concurrently"
    )))
}

/// A stored version (`None` = the latest).
pub async fn get(
    r: &Resources,
    topic: &TopicName,
    version: Option<u64>,
) -> Result<Option<(u64, SchemaVersion)>> {
    let Some((stored, _)) = r.schemas(topic).await? else {
        return Ok(None);
    };
    let idx = match version {
        Some(v) => v as usize,
        None => match stored.versions.len() {
            0 => return Ok(None),
            n => n - 1,
        },
    };
    Ok(stored.versions.get(idx).map(|s| (idx as u64, s.clone())))
}

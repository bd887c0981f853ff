//! The schema registry: a topic's schema versions in the metadata service
//! (a partitioned topic's partitions share the partitioned topic's record),
//! added by producers, GET_OR_CREATE_SCHEMA and the admin REST, checked by
//! the namespace's policies (`schema_compatibility_strategy`,
//! `is_allow_auto_update_schema`, `schema_validation_enforced`) with the
//! rules of `magnetar-schema`. Every change is a compare-and-set of the
//! topic's record, so a refused schema changes nothing.

use magnetar_common::names::TopicName;
use magnetar_schema::{SchemaError, SchemaRef, SchemaType, Strategy};
use magnetar_wire::pb;

use crate::error::{BrokerError, Result};
use crate::resources::{Resources, SchemaVersion, StoredSchemas};

/// Pulsar encodes a schema version as an 8-byte big-endian number.
pub fn encode_version(v: u64) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

pub fn decode_version(raw: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(raw.try_into().ok()?))
}

/// A schema brought by a client or an admin.
#[derive(Clone, Debug)]
pub struct NewSchema {
    pub kind: SchemaType,
    pub name: String,
    pub data: Vec<u8>,
    pub properties: Vec<(String, String)>,
}

impl NewSchema {
    /// From the binary protocol (`None` for no schema: NONE means bytes).
    pub fn from_wire(s: &pb::Schema) -> Result<Option<NewSchema>> {
        let kind = SchemaType::from_code(s.r#type)?;
        if kind == SchemaType::None {
            return Ok(None);
        }
        Ok(Some(NewSchema {
            kind,
            name: s.name.clone(),
            data: s.schema_data.clone(),
            properties: s
                .properties
                .iter()
                .map(|kv| (kv.key.clone(), kv.value.clone()))
                .collect(),
        }))
    }

    fn as_ref(&self) -> SchemaRef<'_> {
        SchemaRef::new(self.kind, &self.data, &self.properties)
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

/// The namespace's schema policies, defaults filled in.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    pub strategy: Strategy,
    pub allow_auto_update: bool,
    pub validation_enforced: bool,
}

pub async fn policy(r: &Resources, topic: &TopicName) -> Result<Policy> {
    let p = r
        .policies(&topic.namespace)
        .await?
        .map(|(p, _)| p)
        .unwrap_or_default();
    Ok(Policy {
        strategy: p.schema_compatibility_strategy.effective(),
        allow_auto_update: p.is_allow_auto_update_schema.unwrap_or(true),
        validation_enforced: p.schema_validation_enforced,
    })
}

/// Who adds a schema: producers obey `is_allow_auto_update_schema`, admins
/// do not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Adder {
    Client,
    Admin,
}

fn stored_ref(v: &SchemaVersion) -> Result<SchemaRef<'_>> {
    Ok(SchemaRef::new(
        SchemaType::from_code(v.schema_type)?,
        &v.data,
        &v.properties,
    ))
}

/// The versions since the last deletion marker, oldest first.
pub fn live(stored: &StoredSchemas) -> Vec<(u64, &SchemaVersion)> {
    let start = stored
        .versions
        .iter()
        .rposition(|v| v.deleted)
        .map_or(0, |i| i + 1);
    stored.versions[start..]
        .iter()
        .enumerate()
        .map(|(i, v)| ((start + i) as u64, v))
        .collect()
}

fn live_refs<'a>(live: &[(u64, &'a SchemaVersion)]) -> Result<Vec<(u64, SchemaRef<'a>)>> {
    live.iter().map(|(n, v)| Ok((*n, stored_ref(v)?))).collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Read-modify-write of a topic's schema record with CAS retries: `change`
/// returns what to answer and whether to store the changed record.
async fn update<T>(
    r: &Resources,
    topic: &TopicName,
    mut change: impl FnMut(&mut StoredSchemas) -> Result<(T, bool)>,
) -> Result<T> {
    let key = topic.base();
    for _ in 0..10 {
        let (mut stored, version) = r.schemas(&key).await?.unwrap_or_default();
        let (answer, write) = change(&mut stored)?;
        if !write {
            return Ok(answer);
        }
        match r.put_schemas(&key, &stored, version).await {
            Ok(()) => return Ok(answer),
            Err(BrokerError::Conflict(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(BrokerError::Conflict(format!(
        "schema of {key} keeps changing concurrently"
    )))
}

/// The version of `new` on `topic`: an equal live version, or a new one if
/// the namespace's policies allow it.
pub async fn add(r: &Resources, topic: &TopicName, new: &NewSchema, by: Adder) -> Result<u64> {
    magnetar_schema::validate(&new.as_ref())?;
    let policy = policy(r, topic).await?;
    update(r, topic, |stored| {
        let live = live(stored);
        let refs = live_refs(&live)?;
        if let Some((n, _)) = refs
            .iter()
            .find(|(_, s)| magnetar_schema::same(s, &new.as_ref()))
        {
            return Ok((*n, false));
        }
        if by == Adder::Client && !policy.allow_auto_update {
            return Err(SchemaError::Incompatible(
                "the schema is not a stored version and the namespace does not allow producers to add one (isAllowAutoUpdateSchema is false)".into(),
            )
            .into());
        }
        magnetar_schema::check_new(&refs, &new.as_ref(), policy.strategy)?;
        stored.versions.push(SchemaVersion {
            schema_type: new.kind.code(),
            name: new.name.clone(),
            data: new.data.clone(),
            properties: new.properties.clone(),
            timestamp: now_ms(),
            deleted: false,
        });
        Ok((stored.versions.len() as u64 - 1, true))
    })
    .await
}

/// Whether `new` could be added now (the admin REST's compatibility check).
pub async fn check(r: &Resources, topic: &TopicName, new: &NewSchema) -> Result<()> {
    magnetar_schema::validate(&new.as_ref())?;
    let policy = policy(r, topic).await?;
    let stored = r
        .schemas(&topic.base())
        .await?
        .map(|(s, _)| s)
        .unwrap_or_default();
    let live = live(&stored);
    let refs = live_refs(&live)?;
    if refs
        .iter()
        .any(|(_, s)| magnetar_schema::same(s, &new.as_ref()))
    {
        return Ok(());
    }
    Ok(magnetar_schema::check_new(
        &refs,
        &new.as_ref(),
        policy.strategy,
    )?)
}

/// A producer's schema: its version (`None` without a schema, refused on a
/// topic with one when the namespace enforces validation).
pub async fn for_producer(
    r: &Resources,
    topic: &TopicName,
    schema: Option<&pb::Schema>,
) -> Result<Option<u64>> {
    let new = match schema {
        Some(s) => NewSchema::from_wire(s)?,
        None => None,
    };
    match new {
        Some(new) => Ok(Some(add(r, topic, &new, Adder::Client).await?)),
        None => {
            if policy(r, topic).await?.validation_enforced && get(r, topic, None).await?.is_some() {
                return Err(SchemaError::Incompatible(
                    "the topic has a schema and its namespace enforces schema validation: a producer must bring one".into(),
                )
                .into());
            }
            Ok(None)
        }
    }
}

/// A consumer's schema: read-compatible with the stored versions (as the
/// strategy says), or the topic's first schema if it has none.
pub async fn for_consumer(r: &Resources, topic: &TopicName, schema: &pb::Schema) -> Result<()> {
    let Some(new) = NewSchema::from_wire(schema)? else {
        return Ok(());
    };
    magnetar_schema::validate(&new.as_ref())?;
    let policy = policy(r, topic).await?;
    let stored = r
        .schemas(&topic.base())
        .await?
        .map(|(s, _)| s)
        .unwrap_or_default();
    let live = live(&stored);
    if live.is_empty() {
        add(r, topic, &new, Adder::Client).await?;
        return Ok(());
    }
    let refs = live_refs(&live)?;
    Ok(magnetar_schema::check_reader(
        &refs,
        &new.as_ref(),
        policy.strategy,
    )?)
}

/// A stored version (`None` = the latest live one). Deletion markers are
/// not schemas.
pub async fn get(
    r: &Resources,
    topic: &TopicName,
    version: Option<u64>,
) -> Result<Option<(u64, SchemaVersion)>> {
    let Some((stored, _)) = r.schemas(&topic.base()).await? else {
        return Ok(None);
    };
    let found = match version {
        Some(v) => usize::try_from(v)
            .ok()
            .and_then(|i| stored.versions.get(i))
            .map(|s| (v, s)),
        None => live(&stored).last().copied(),
    };
    Ok(found
        .filter(|(_, s)| !s.deleted)
        .map(|(n, s)| (n, s.clone())))
}

/// A REST or WebSocket producer's JSON `text` as the payload to store
/// under schema `s` (see `magnetar_schema::encode_json_payload`).
pub fn json_payload(s: &SchemaVersion, text: &str) -> Result<Vec<u8>> {
    let kind = SchemaType::from_code(s.schema_type)?;
    Ok(magnetar_schema::encode_json_payload(kind, &s.data, text)?)
}

/// The live versions, oldest first.
pub async fn all(r: &Resources, topic: &TopicName) -> Result<Vec<(u64, SchemaVersion)>> {
    let Some((stored, _)) = r.schemas(&topic.base()).await? else {
        return Ok(Vec::new());
    };
    Ok(live(&stored)
        .into_iter()
        .map(|(n, s)| (n, s.clone()))
        .collect())
}

/// Deletes the topic's schema: a deletion marker (the answer is its
/// version), or with `force` the whole record (the answer is the last
/// version there was).
pub async fn delete(r: &Resources, topic: &TopicName, force: bool) -> Result<u64> {
    let not_found = || BrokerError::NotFound(format!("topic {topic} has no schema"));
    if force {
        let Some((stored, _)) = r.schemas(&topic.base()).await? else {
            return Err(not_found());
        };
        if stored.versions.is_empty() {
            return Err(not_found());
        }
        r.delete_schemas(&topic.base()).await?;
        return Ok(stored.versions.len() as u64 - 1);
    }
    update(r, topic, |stored| {
        if live(stored).is_empty() {
            return Err(not_found());
        }
        stored.versions.push(SchemaVersion {
            schema_type: SchemaType::None.code(),
            name: String::new(),
            data: Vec::new(),
            properties: Vec::new(),
            timestamp: now_ms(),
            deleted: true,
        });
        Ok((stored.versions.len() as u64 - 1, true))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(deleted: bool) -> SchemaVersion {
        SchemaVersion {
            schema_type: 4,
            name: String::new(),
            data: Vec::new(),
            properties: Vec::new(),
            timestamp: 0,
            deleted,
        }
    }

    #[test]
    fn live_versions_start_after_the_last_deletion() {
        let mut s = StoredSchemas::default();
        assert!(live(&s).is_empty());
        s.versions = vec![version(false), version(false)];
        assert_eq!(
            live(&s).iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            vec![0, 1]
        );
        s.versions.push(version(true));
        assert!(live(&s).is_empty());
        s.versions.push(version(false));
        assert_eq!(
            live(&s).iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            vec![3]
        );
    }

    #[test]
    fn versions_are_eight_bytes_big_endian() {
        assert_eq!(encode_version(258), vec![0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(decode_version(&encode_version(7)), Some(7));
        assert_eq!(decode_version(&[1, 2]), None);
    }
}

//! What a managed ledger keeps in the metadata service, always updated by
//! compare-and-set on the key's version.
//!
//! - `/managed-ledgers/{name}` → `ManagedLedgerInfo` (the ledger list).
//! - `/managed-cursors/{enc(name)}/{enc(cursor)}` → `CursorInfo` (where the
//!   cursor's state lives). Names are percent-encoded so that listing one
//!   managed ledger's cursors never matches another's.

use std::collections::BTreeMap;

use magnetar_meta_client::{Error as MetaError, MetaClient, PutOptions};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{MlError, Result};
use crate::position::Position;

pub const LEDGERS_PREFIX: &str = "/managed-ledgers/";
pub const CURSORS_PREFIX: &str = "/managed-cursors/";

/// One ledger of a managed ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerInfo {
    pub ledger_id: u64,
    /// Entries in a closed ledger; 0 while the ledger is being written.
    pub entries: i64,
    /// Payload bytes in a closed ledger.
    pub size: u64,
    /// Publish times of its first and last entries (0 when empty or open).
    pub first_publish_ms: u64,
    pub last_publish_ms: u64,
    pub closed: bool,
    /// Set once an offload of this (closed) ledger started; see `OffloadContext`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offload: Option<OffloadContext>,
}

/// Where a ledger's copy in tiered storage is. Changed only by
/// compare-and-set of the ledger list. Invariants: `complete` only once both
/// objects of attempt `uuid` exist; `bookie_deleted` only once `complete`
/// (the bookie copy is deleted after this is stored, never before).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffloadContext {
    /// Names the objects of the attempt (`{uuid}-ledger-{id}`, `…-index`).
    pub uuid: String,
    pub complete: bool,
    #[serde(default)]
    pub bookie_deleted: bool,
    /// When the attempt started, then when it completed (ms since the epoch).
    pub timestamp_ms: u64,
    /// The driver and location the objects were written to.
    #[serde(default)]
    pub driver: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagedLedgerInfo {
    pub ledgers: Vec<LedgerInfo>,
    pub created_ms: u64,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Set by terminate: the last entry there will ever be.
    #[serde(default)]
    pub terminated_at: Option<Position>,
    /// Objects in tiered storage that must go but whose deletion has not
    /// succeeded yet (the store was down): ledgers trimmed from the list,
    /// failed offload attempts. Recorded in the same CAS that drops them from
    /// the list, removed once deleted; housekeeping retries the rest. So an
    /// object store outage never leaves an object nobody knows about.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offload_leftovers: Vec<OffloadLeftover>,
}

/// The objects of one offload attempt still to delete.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffloadLeftover {
    pub ledger_id: u64,
    pub context: OffloadContext,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CursorInfo {
    /// The ledger holding the cursor's snapshots; its last entry is the state.
    pub cursor_ledger: Option<u64>,
    /// The mark-delete position when no cursor ledger holds a later one
    /// (creation, reset before the first snapshot).
    pub mark_delete: Position,
    pub created_ms: u64,
    /// Bumped by every owner that opens the cursor, so that a previous owner's
    /// compare-and-set on this key fails.
    pub owner_epoch: u64,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

pub fn ledger_key(name: &str) -> String {
    format!("{LEDGERS_PREFIX}{name}")
}

/// Percent-encodes `/` and `%` so a name is one path segment.
pub fn encode_segment(s: &str) -> String {
    s.replace('%', "%25").replace('/', "%2F")
}

pub fn decode_segment(s: &str) -> String {
    s.replace("%2F", "/").replace("%25", "%")
}

pub fn cursors_prefix(name: &str) -> String {
    format!("{CURSORS_PREFIX}{}/", encode_segment(name))
}

pub fn cursor_key(name: &str, cursor: &str) -> String {
    format!("{}{}", cursors_prefix(name), encode_segment(cursor))
}

/// Checks a managed ledger or cursor name.
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |why: &str| Err(MlError::InvalidName(name.to_string(), why.to_string()));
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > 1024 {
        return bad("longer than 1024 bytes");
    }
    if name.chars().any(char::is_control) {
        return bad("contains control characters");
    }
    Ok(())
}

/// Reads a JSON value and its version; `None` if the key does not exist.
pub async fn load<T: DeserializeOwned>(meta: &MetaClient, key: &str) -> Result<Option<(T, i64)>> {
    match meta.get(key).await? {
        None => Ok(None),
        Some(kv) => {
            let v = serde_json::from_slice(&kv.value)
                .map_err(|e| MlError::Corrupt(key.to_string(), e.to_string()))?;
            Ok(Some((v, kv.version)))
        }
    }
}

/// What a compare-and-set store came to.
pub enum Stored {
    Ok(i64),
    /// Someone else changed the key first.
    Conflict,
}

/// Writes `value` if the key's version is still `expected` (0 = must not exist).
pub async fn store<T: Serialize>(
    meta: &MetaClient,
    key: &str,
    value: &T,
    expected: i64,
) -> Result<Stored> {
    let bytes =
        serde_json::to_vec(value).map_err(|e| MlError::Corrupt(key.into(), e.to_string()))?;
    let opts = PutOptions {
        expected_version: Some(expected),
        ..Default::default()
    };
    match meta.put_with(key, bytes, opts).await {
        Ok(r) => Ok(Stored::Ok(r.version)),
        Err(MetaError::VersionMismatch { .. }) => Ok(Stored::Conflict),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_encode_to_one_segment() {
        assert_eq!(
            cursor_key("t/ns/a", "sub/1%"),
            "/managed-cursors/t%2Fns%2Fa/sub%2F1%25"
        );
        assert_eq!(decode_segment(&encode_segment("a/%2F/b")), "a/%2F/b");
        assert!(validate_name("").is_err());
        assert!(validate_name("a\nb").is_err());
        assert!(validate_name("tenant/ns/persistent/topic").is_ok());
    }
}

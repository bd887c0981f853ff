//! Ledger metadata in the metadata service, changed only by compare-and-set.

use std::collections::BTreeMap;

use magnetar_meta_client::{MetaClient, PutOptions};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::LedgerError;

pub const LEDGERS_PREFIX: &str = "/ledgers/";
const ID_COUNTER_KEY: &str = "/ledger-ids/next";

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LedgerState {
    Open,
    InRecovery,
    Closed,
}

/// From `first_entry` on, entries are striped over `bookies` (addresses).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Fragment {
    pub first_entry: i64,
    pub bookies: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct LedgerMetadata {
    pub id: u64,
    pub state: LedgerState,
    pub ensemble_size: usize,
    pub write_quorum: usize,
    pub ack_quorum: usize,
    pub ensembles: Vec<Fragment>,
    /// Set when closed; -1 = empty.
    pub last_entry_id: i64,
    /// Total payload bytes, known when the writer closed the ledger itself.
    pub length: Option<u64>,
    /// Hex SHA-256 of the master key: lets an opener check its password
    /// before touching any bookie.
    pub password_digest: String,
    /// Hex master key, so that re-replication can write to the bookies (as
    /// BookKeeper keeps the password in ledger metadata for the same reason).
    #[serde(default)]
    pub master_key_hex: String,
    pub created_ms: u64,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

impl LedgerMetadata {
    /// The fragment that holds `entry`.
    pub fn fragment_for(&self, entry: i64) -> Option<&Fragment> {
        self.ensembles.iter().rev().find(|f| f.first_entry <= entry)
    }

    pub fn last_fragment(&self) -> Option<&Fragment> {
        self.ensembles.last()
    }

    /// Replaces the bookie at `pos` of the last ensemble for entries from
    /// `from_entry` on: in place when the last fragment starts there or later
    /// (nothing before `from_entry` was written under it), else as a new
    /// fragment, so entries before it keep the bookies that hold them.
    pub(crate) fn replace_bookie(&mut self, pos: usize, replacement: String, from_entry: i64) {
        let Some(last) = self.ensembles.last_mut() else {
            return;
        };
        if last.first_entry >= from_entry {
            last.bookies[pos] = replacement;
        } else {
            let mut bookies = last.bookies.clone();
            bookies[pos] = replacement;
            self.ensembles.push(Fragment {
                first_entry: from_entry,
                bookies,
            });
        }
    }

    /// Every bookie that may hold entries of this ledger.
    pub fn all_bookies(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .ensembles
            .iter()
            .flat_map(|f| f.bookies.iter().cloned())
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

/// The key a bookie checks adds against: derived from the ledger's password.
pub fn master_key(password: &[u8]) -> Vec<u8> {
    Sha256::digest(password).to_vec()
}

pub fn password_digest(master_key: &[u8]) -> String {
    encode_hex(&Sha256::digest(master_key))
}

pub fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

pub fn key(id: u64) -> String {
    format!("{LEDGERS_PREFIX}{id:020}")
}

/// A metadata record and the version it was read at (for CAS).
#[derive(Clone, Debug)]
pub struct Versioned {
    pub meta: LedgerMetadata,
    pub version: i64,
}

pub async fn load(client: &MetaClient, id: u64) -> Result<Versioned, LedgerError> {
    let kv = client
        .get(key(id))
        .await?
        .ok_or(LedgerError::NoSuchLedger(id))?;
    let meta = serde_json::from_slice(&kv.value)
        .map_err(|e| LedgerError::BadMetadata(id, e.to_string()))?;
    Ok(Versioned {
        meta,
        version: kv.version,
    })
}

/// Writes `meta` if the stored version is still `expected` (0 = must not exist).
/// Returns the new version, or `LedgerError::MetadataConflict`.
pub async fn store(
    client: &MetaClient,
    meta: &LedgerMetadata,
    expected: i64,
) -> Result<i64, LedgerError> {
    let value =
        serde_json::to_vec(meta).map_err(|e| LedgerError::BadMetadata(meta.id, e.to_string()))?;
    match client
        .put_with(
            key(meta.id),
            value,
            PutOptions {
                expected_version: Some(expected),
                lease: 0,
            },
        )
        .await
    {
        Ok(r) => Ok(r.version),
        Err(magnetar_meta_client::Error::VersionMismatch { .. }) => {
            Err(LedgerError::MetadataConflict(meta.id))
        }
        Err(e) => Err(e.into()),
    }
}

/// A new, cluster-unique ledger id: the store revision of one unconditional
/// write to the counter key. Revisions only grow, so ids are unique and
/// increase across every writer (managed ledgers order positions by ledger
/// id). The earlier get-then-CAS on a counter value serialized concurrent
/// creators behind conflicts and retries: with 64 topics loading at once,
/// topic creation crawled at a few dozen per second. Ids handed out by that
/// scheme are at most the number of writes to the key, so below any revision.
pub async fn next_id(client: &MetaClient) -> Result<u64, LedgerError> {
    let put = client.put(ID_COUNTER_KEY, b"revision").await?;
    u64::try_from(put.revision)
        .map_err(|_| LedgerError::BadMetadata(0, format!("store revision {}", put.revision)))
}

pub async fn list(client: &MetaClient) -> Result<Vec<u64>, LedgerError> {
    let page = client.list_all(LEDGERS_PREFIX).await?;
    Ok(page
        .kvs
        .iter()
        .filter_map(|kv| {
            std::str::from_utf8(&kv.key)
                .ok()?
                .strip_prefix(LEDGERS_PREFIX)?
                .parse()
                .ok()
        })
        .collect())
}

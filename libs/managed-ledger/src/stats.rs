//! Internal stats, shaped like Pulsar's `internalStats` for the admin API.

use std::collections::BTreeMap;

use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedLedgerStats {
    pub name: String,
    pub state: String,
    pub entries_added_counter: u64,
    pub number_of_entries: u64,
    pub total_size: u64,
    pub current_ledger_entries: u64,
    pub current_ledger_size: u64,
    pub last_confirmed_entry: String,
    pub ledgers: Vec<LedgerStats>,
    pub cursors: BTreeMap<String, CursorStats>,
    pub cache_entries: usize,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LedgerStats {
    pub ledger_id: u64,
    pub entries: u64,
    pub size: u64,
    pub closed: bool,
    pub first_publish_ms: u64,
    pub last_publish_ms: u64,
    /// Its copy in tiered storage is complete.
    pub offloaded: bool,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CursorStats {
    pub mark_delete_position: String,
    pub read_position: String,
    /// Acked ranges above the mark-delete position, as `[(a..b], ...]` with
    /// open-closed ranges like Pulsar prints them.
    pub individually_deleted_messages: String,
    pub total_non_contiguous_deleted_messages_range: usize,
    pub backlog_entries: u64,
    pub backlog_bytes: u64,
    pub cursor_ledger: Option<u64>,
    pub cursor_ledger_entries: i64,
    pub snapshots_written: u64,
    pub snapshot_bytes_written: u64,
    pub state: String,
}

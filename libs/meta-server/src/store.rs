//! The node's two RocksDB instances and their column families.
//!
//! The Raft log and the state machine live in separate databases. In one
//! database they would share a WAL, and RocksDB makes every write wait behind a
//! synced one in flight: each state-machine write (unsynced) would queue behind
//! the next log append's fsync, capping throughput near one command per fsync.
//! Apart, the log is fsynced per append batch and the state machine is not
//! synced at all; before openraft may purge log entries, the snapshot builder
//! syncs the state machine's WAL (see `state_machine`).

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, Options, DB};

use crate::types::StorageError;

/// Raft log entries, keyed by big-endian log index.
pub const CF_LOG: &str = "log";
/// Raft's own durable state: vote, last purged log id.
pub const CF_RAFT: &str = "raft";
/// The keyspace: user key -> `StoredValue`.
pub const CF_KV: &str = "kv";
/// Leases: big-endian lease id -> `LeaseRecord`.
pub const CF_LEASES: &str = "leases";
/// Index of keys attached to a lease: lease id (8 bytes BE) ++ key -> empty.
pub const CF_LEASE_KEYS: &str = "lease_keys";
/// Answers to recent requests by request id, for at-most-once retries.
pub const CF_DEDUP: &str = "dedup";
/// Log index -> request id of the dedup entry written at that index (for expiry).
pub const CF_DEDUP_INDEX: &str = "dedup_index";
/// State-machine bookkeeping: applied log id, membership, revision, counters.
pub const CF_SM_META: &str = "sm_meta";

/// Column families that make up the state machine (and therefore a snapshot).
pub const STATE_MACHINE_CFS: [&str; 6] = [
    CF_KV,
    CF_LEASES,
    CF_LEASE_KEYS,
    CF_DEDUP,
    CF_DEDUP_INDEX,
    CF_SM_META,
];

fn open_with(
    dir: &Path,
    cfs: &[&str],
    opts: Options,
    cf_opts: Options,
) -> Result<Arc<DB>, rocksdb::Error> {
    let cfs = cfs
        .iter()
        .map(|name| ColumnFamilyDescriptor::new(*name, cf_opts.clone()));
    Ok(Arc::new(DB::open_cf_descriptors(&opts, dir, cfs)?))
}

fn db_options() -> Options {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    // Metadata is small; keep the memory footprint modest.
    opts.set_write_buffer_size(16 << 20);
    opts.set_max_background_jobs(2);
    opts
}

/// The Raft log and vote.
pub fn open_log(dir: &Path) -> Result<Arc<DB>, rocksdb::Error> {
    open_with(dir, &[CF_LOG, CF_RAFT], db_options(), Options::default())
}

/// The state machine.
///
/// Its WAL is written to the file only when `flush_wal` is called: applying an
/// entry makes one write per command, and one `write(2)` per applied batch of
/// entries (see `state_machine`) instead of one per command was a sixth of the
/// leader's CPU. Nothing is answered before that flush, so a process that dies
/// loses only unanswered applies, which replay from the log.
///
/// A memtable bloom filter on whole keys answers the lookups that miss (a new
/// request id in the dedup table, a lease that is gone) without walking the
/// memtable's skip list.
pub fn open_state_machine(dir: &Path) -> Result<Arc<DB>, rocksdb::Error> {
    let mut opts = db_options();
    opts.set_manual_wal_flush(true);
    let mut cf_opts = Options::default();
    cf_opts.set_memtable_whole_key_filtering(true);
    cf_opts.set_memtable_prefix_bloom_ratio(0.05);
    open_with(dir, &STATE_MACHINE_CFS, opts, cf_opts)
}

pub fn cf<'a>(db: &'a DB, name: &str) -> &'a ColumnFamily {
    // Every column family is created in `open`; a missing one is a programming error.
    db.cf_handle(name)
        .unwrap_or_else(|| panic!("column family {name} was not opened"))
}

pub fn read_err(e: impl std::error::Error + 'static) -> StorageError {
    openraft::StorageIOError::read(&e).into()
}

pub fn write_err(e: impl std::error::Error + 'static) -> StorageError {
    openraft::StorageIOError::write(&e).into()
}

pub fn sm_read_err(e: impl std::error::Error + 'static) -> StorageError {
    openraft::StorageIOError::read_state_machine(&e).into()
}

pub fn sm_write_err(e: impl std::error::Error + 'static) -> StorageError {
    openraft::StorageIOError::write_state_machine(&e).into()
}

pub fn be_u64(v: u64) -> [u8; 8] {
    v.to_be_bytes()
}

pub fn decode_be_u64(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.try_into().ok()?))
}

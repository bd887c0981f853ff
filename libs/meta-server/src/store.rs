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

/// WAL files of the log database kept for reuse.
const LOG_RECYCLED_WALS: usize = 4;
/// Memtable size of the log's column families. Small, so that the WAL
/// moves to a new (recycled) file every few seconds under load instead of
/// growing one file for the 64 MiB of RocksDB's default.
const LOG_MEMTABLE_BYTES: usize = 4 << 20;

/// The Raft log and vote.
///
/// Every append batch is a synced write to this database's WAL. On ext4 an
/// fdatasync after a write that grows a file also commits the file's new
/// size (a file-system journal commit); after a write over blocks the file
/// already has it does not, and costs about a third less (measured for the
/// bookie journal, which recycles its segments for the same reason). So
/// RocksDB recycles WAL files here: an obsolete WAL is renamed and
/// overwritten, its records written in RocksDB's recyclable format, which
/// carries the log number so that an old file's leftovers past the new
/// tail are recognised and never replayed. Point-in-time recovery (the
/// default, named here because recycling depends on it) stops at the
/// first record that is not intact: synced appends are always before it.
/// The total WAL size bound makes RocksDB flush the rarely written vote
/// column family too, which would otherwise keep every WAL alive.
pub fn open_log(dir: &Path) -> Result<Arc<DB>, rocksdb::Error> {
    let mut opts = db_options();
    opts.set_recycle_log_file_num(LOG_RECYCLED_WALS);
    opts.set_wal_recovery_mode(rocksdb::DBRecoveryMode::PointInTime);
    opts.set_max_total_wal_size(4 * LOG_MEMTABLE_BYTES as u64);
    let mut cf_opts = Options::default();
    cf_opts.set_write_buffer_size(LOG_MEMTABLE_BYTES);
    open_with(dir, &[CF_LOG, CF_RAFT], opts, cf_opts)
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

#[cfg(test)]
mod tests {
    use super::*;
    use rocksdb::{IteratorMode, WriteBatch, WriteOptions};

    /// Rounds of synced appends, each followed by a flush (a new WAL) and
    /// the deletion of the round before (as a log purge does); then a
    /// reopen must find exactly the last round, though the recycled WAL
    /// files still hold older records past their new tails.
    #[test]
    fn the_log_reuses_its_wal_files_and_replays_only_what_is_current() {
        let dir = tempfile::tempdir().unwrap();
        let value = |round: u64, i: u64| vec![(round * 31 + i) as u8; 64 << 10];
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        {
            let db = open_log(dir.path()).unwrap();
            let options = std::fs::read_dir(dir.path())
                .unwrap()
                .filter_map(|e| e.ok())
                .find(|e| e.file_name().to_string_lossy().starts_with("OPTIONS-"))
                .map(|e| std::fs::read_to_string(e.path()).unwrap())
                .unwrap();
            // RocksDB turns recycling off silently when the recovery mode
            // cannot tell a recycled file's old records from a torn tail.
            assert!(options.contains(&format!("recycle_log_file_num={LOG_RECYCLED_WALS}")));
            for round in 0..8u64 {
                for i in 0..64u64 {
                    let mut b = WriteBatch::default();
                    b.put_cf(cf(&db, CF_LOG), be_u64(round * 1000 + i), value(round, i));
                    if round > 0 {
                        b.delete_cf(cf(&db, CF_LOG), be_u64((round - 1) * 1000 + i));
                    }
                    db.write_opt(b, &sync).unwrap();
                }
                // A little raft state on every round keeps that family's
                // memtable holding each WAL too, as votes and purges do:
                // only the bound on the WALs' total size gets it flushed.
                let mut b = WriteBatch::default();
                b.put_cf(cf(&db, CF_RAFT), b"round", be_u64(round));
                db.write_opt(b, &sync).unwrap();
                db.flush_cf(cf(&db, CF_LOG)).unwrap();
            }
        }
        // Obsolete WALs were kept for reuse rather than deleted.
        // RocksDB's info log says when a new WAL is an old file reused
        // (read before the reopen starts a new info log).
        let info = std::fs::read_to_string(dir.path().join("LOG")).unwrap();
        let reused = info.matches("from recycle list").count();
        assert!(reused >= 2, "{reused} WAL files reused");
        let db = open_log(dir.path()).unwrap();
        let keys: Vec<u64> = db
            .iterator_cf(cf(&db, CF_LOG), IteratorMode::Start)
            .map(|item| {
                let (k, v) = item.unwrap();
                let key = decode_be_u64(&k).unwrap();
                assert_eq!(&v[..], &value(key / 1000, key % 1000)[..]);
                key
            })
            .collect();
        assert_eq!(keys, (7000..7064).collect::<Vec<_>>());
        let round = db.get_cf(cf(&db, CF_RAFT), b"round").unwrap().unwrap();
        assert_eq!(decode_be_u64(&round), Some(7));
    }
}

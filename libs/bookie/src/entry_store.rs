//! Entry storage: RocksDB holding entries by (ledger id, entry id), each ledger's
//! state (master key, fenced), and the journal checkpoint.
//!
//! RocksDB's own WAL is off: the journal is the write-ahead log. Writes land in
//! the memtable (which doubles as the write cache: a tailing reader is served
//! from memory) and reach disk when a checkpoint flushes them; until then the
//! journal replay on start re-applies them.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{
    ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB,
};
use serde::{Deserialize, Serialize};

use crate::journal::JournalPos;

const CF_ENTRIES: &str = "entries";
const CF_LEDGERS: &str = "ledgers";
const CF_META: &str = "meta";
const KEY_CHECKPOINT: &[u8] = b"checkpoint";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("rocksdb: {0}")]
    Db(#[from] rocksdb::Error),
    #[error("corrupt stored record: {0}")]
    Corrupt(String),
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct LedgerState {
    pub master_key: Vec<u8>,
    pub fenced: bool,
    /// A deleted ledger keeps this tombstone so that a writer that has not yet
    /// learned of the deletion is refused instead of recreating the ledger.
    pub deleted: bool,
}

/// A stored entry's value: CRC32C and LAC, then the payload.
fn encode_entry(crc32c: u32, lac: i64, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(12 + payload.len());
    v.extend_from_slice(&crc32c.to_le_bytes());
    v.extend_from_slice(&lac.to_le_bytes());
    v.extend_from_slice(payload);
    v
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEntry {
    pub crc32c: u32,
    pub lac: i64,
    pub payload: Vec<u8>,
}

impl StoredEntry {
    fn decode(b: &[u8]) -> Result<Self, StoreError> {
        if b.len() < 12 {
            return Err(StoreError::Corrupt(format!(
                "entry record of {} bytes",
                b.len()
            )));
        }
        let crc32c = u32::from_le_bytes(
            b[0..4]
                .try_into()
                .map_err(|_| StoreError::Corrupt("crc".into()))?,
        );
        let lac = i64::from_le_bytes(
            b[4..12]
                .try_into()
                .map_err(|_| StoreError::Corrupt("lac".into()))?,
        );
        Ok(Self {
            crc32c,
            lac,
            payload: b[12..].to_vec(),
        })
    }
}

fn entry_key(ledger: u64, entry: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&ledger.to_be_bytes());
    k[8..].copy_from_slice(&entry.to_be_bytes());
    k
}

#[derive(Clone)]
pub struct EntryStore {
    db: Arc<DB>,
    no_wal: Arc<WriteOptions>,
}

impl EntryStore {
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(2);
        let mut entries = Options::default();
        // A generous memtable is the write cache for tailing reads.
        entries.set_write_buffer_size(64 << 20);
        // Adds apply to the memtable on the async path; room for several
        // memtables and a high L0 limit keep RocksDB from stalling writers
        // while a flush or compaction catches up (a stall blocks the thread
        // that applies adds, and with it every add behind it).
        entries.set_max_write_buffer_number(6);
        entries.set_level_zero_slowdown_writes_trigger(40);
        entries.set_level_zero_stop_writes_trigger(64);
        // LZ4 blocks: it costs ~10% of a busy bookie's CPU, but flushes and
        // compactions then write far less when payloads compress; without it
        // the broker benchmark lost a third of its 1 KiB throughput to disk
        // contention with the journal.
        entries.set_compression_type(rocksdb::DBCompressionType::Lz4);
        let cfs = vec![
            ColumnFamilyDescriptor::new(CF_ENTRIES, entries),
            ColumnFamilyDescriptor::new(CF_LEDGERS, Options::default()),
            ColumnFamilyDescriptor::new(CF_META, Options::default()),
        ];
        let db = DB::open_cf_descriptors(&opts, dir, cfs)?;
        let mut no_wal = WriteOptions::default();
        no_wal.disable_wal(true);
        Ok(Self {
            db: Arc::new(db),
            no_wal: Arc::new(no_wal),
        })
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        // All column families are created in `open`.
        self.db
            .cf_handle(name)
            .unwrap_or_else(|| panic!("column family {name} missing"))
    }

    pub fn put_entry(&self, ledger: u64, entry: u64, e: &StoredEntry) -> Result<(), StoreError> {
        self.put_entry_parts(ledger, entry, e.crc32c, e.lac, &e.payload)
    }

    /// `put_entry` from borrowed parts: the add path keeps the payload as it
    /// came off the wire instead of copying it into a `StoredEntry` first.
    pub fn put_entry_parts(
        &self,
        ledger: u64,
        entry: u64,
        crc32c: u32,
        lac: i64,
        payload: &[u8],
    ) -> Result<(), StoreError> {
        self.db.put_cf_opt(
            self.cf(CF_ENTRIES),
            entry_key(ledger, entry),
            encode_entry(crc32c, lac, payload),
            &self.no_wal,
        )?;
        Ok(())
    }

    pub fn get_entry(&self, ledger: u64, entry: u64) -> Result<Option<StoredEntry>, StoreError> {
        self.db
            .get_cf(self.cf(CF_ENTRIES), entry_key(ledger, entry))?
            .map(|b| StoredEntry::decode(&b))
            .transpose()
    }

    /// Highest entry id stored for the ledger.
    pub fn last_entry_id(&self, ledger: u64) -> Result<Option<u64>, StoreError> {
        let upper = entry_key(ledger, u64::MAX);
        let mut it = self.db.iterator_cf(
            self.cf(CF_ENTRIES),
            IteratorMode::From(&upper, Direction::Reverse),
        );
        match it.next() {
            Some(item) => {
                let (k, _) = item?;
                if k.len() == 16 && k[..8] == ledger.to_be_bytes() {
                    let id = u64::from_be_bytes(
                        k[8..]
                            .try_into()
                            .map_err(|_| StoreError::Corrupt("key".into()))?,
                    );
                    Ok(Some(id))
                } else {
                    Ok(None)
                }
            }
            None => Ok(None),
        }
    }

    pub fn ledger_state(&self, ledger: u64) -> Result<Option<LedgerState>, StoreError> {
        self.db
            .get_cf(self.cf(CF_LEDGERS), ledger.to_be_bytes())?
            .map(|b| bincode::deserialize(&b).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()
    }

    pub fn put_ledger_state(&self, ledger: u64, s: &LedgerState) -> Result<(), StoreError> {
        let v = bincode::serialize(s).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.db
            .put_cf_opt(self.cf(CF_LEDGERS), ledger.to_be_bytes(), v, &self.no_wal)?;
        Ok(())
    }

    /// Every ledger with stored state, with that state.
    pub fn ledgers(&self) -> Result<Vec<(u64, LedgerState)>, StoreError> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_LEDGERS), IteratorMode::Start)
        {
            let (k, v) = item?;
            let id = u64::from_be_bytes(
                k.as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("ledger key".into()))?,
            );
            let s = bincode::deserialize(&v).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            out.push((id, s));
        }
        Ok(out)
    }

    /// Removes a ledger's entries and replaces its state by a tombstone. The
    /// space returns as RocksDB compacts.
    pub fn delete_ledger(&self, ledger: u64, master_key: &[u8]) -> Result<(), StoreError> {
        let tombstone = bincode::serialize(&LedgerState {
            master_key: master_key.to_vec(),
            fenced: true,
            deleted: true,
        })
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(
            self.cf(CF_ENTRIES),
            entry_key(ledger, 0),
            entry_key(ledger, u64::MAX),
        );
        batch.delete_cf(self.cf(CF_ENTRIES), entry_key(ledger, u64::MAX));
        batch.put_cf(self.cf(CF_LEDGERS), ledger.to_be_bytes(), tombstone);
        self.db.write_opt(batch, &self.no_wal)?;
        Ok(())
    }

    /// Makes everything written so far durable (memtables to SST files), then
    /// records `pos` as the journal position replay may start from.
    pub fn checkpoint(&self, pos: JournalPos) -> Result<(), StoreError> {
        for cf in [CF_ENTRIES, CF_LEDGERS] {
            self.db.flush_cf(self.cf(cf))?;
        }
        let v = bincode::serialize(&pos).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        self.db
            .put_cf_opt(self.cf(CF_META), KEY_CHECKPOINT, v, &sync)?;
        Ok(())
    }

    pub fn last_checkpoint(&self) -> Result<Option<JournalPos>, StoreError> {
        self.db
            .get_cf(self.cf(CF_META), KEY_CHECKPOINT)?
            .map(|b| bincode::deserialize(&b).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()
    }

    /// Compacts away deleted ledgers' data now rather than eventually.
    pub fn compact(&self) {
        self.db
            .compact_range_cf(self.cf(CF_ENTRIES), None::<&[u8]>, None::<&[u8]>);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(p: &[u8]) -> StoredEntry {
        StoredEntry {
            crc32c: crc32c::crc32c(p),
            lac: 3,
            payload: p.to_vec(),
        }
    }

    #[test]
    fn entries_states_and_deletion() {
        let dir = tempfile::tempdir().unwrap();
        let s = EntryStore::open(dir.path()).unwrap();
        s.put_entry(1, 0, &entry(b"a")).unwrap();
        s.put_entry(1, 7, &entry(b"b")).unwrap();
        s.put_entry(2, 0, &entry(b"c")).unwrap();
        assert_eq!(s.get_entry(1, 7).unwrap(), Some(entry(b"b")));
        assert_eq!(s.last_entry_id(1).unwrap(), Some(7));
        assert_eq!(s.last_entry_id(3).unwrap(), None);
        s.put_ledger_state(
            1,
            &LedgerState {
                master_key: b"k".to_vec(),
                fenced: true,
                deleted: false,
            },
        )
        .unwrap();
        assert!(s.ledger_state(1).unwrap().unwrap().fenced);
        s.delete_ledger(1, b"k").unwrap();
        assert_eq!(s.get_entry(1, 0).unwrap(), None);
        assert_eq!(s.last_entry_id(1).unwrap(), None);
        // A tombstone stays.
        assert!(s.ledger_state(1).unwrap().unwrap().deleted);
        assert_eq!(s.get_entry(2, 0).unwrap(), Some(entry(b"c")));
    }

    #[test]
    fn checkpoint_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let pos = JournalPos {
            segment: 3,
            offset: 99,
        };
        {
            let s = EntryStore::open(dir.path()).unwrap();
            s.put_entry(5, 1, &entry(b"x")).unwrap();
            s.checkpoint(pos).unwrap();
        }
        let s = EntryStore::open(dir.path()).unwrap();
        assert_eq!(s.last_checkpoint().unwrap(), Some(pos));
        assert_eq!(s.get_entry(5, 1).unwrap(), Some(entry(b"x")));
    }
}

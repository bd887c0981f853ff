//! The keyspace: deterministic application of commands, and reads.
//!
//! `Applier` turns one command into a RocksDB write batch plus the events it
//! produces. It reads through an overlay of its own pending writes, so a
//! transaction that touches a key twice sees its first write. Every replica runs
//! the same code over the same log and ends in the same state.

use std::collections::{BTreeMap, HashMap};

use rocksdb::{Direction, IteratorMode, WriteBatch, DB};
use serde::{Deserialize, Serialize};

use crate::store::{
    be_u64, cf, decode_be_u64, CF_DEDUP, CF_DEDUP_INDEX, CF_KV, CF_LEASES, CF_LEASE_KEYS,
    CF_SM_META,
};
use crate::types::{
    Command, CommandResult, Compare, KvEvent, Op, OpOutcome, RequestId, StoredValue,
};

/// How many log entries a request id is remembered for at most. A client must
/// retry a write within this many later writes to be protected from double
/// application. Answers its client says it has had go sooner (`forget`).
pub const DEDUP_WINDOW: u64 = 200_000;
/// Request ids are forgotten in chunks of this many log entries, by the entry
/// at each multiple of it (see `expire_requests`): one index scan per chunk
/// instead of one per entry, which was a RocksDB iterator per write batch.
pub const DEDUP_EXPIRY_STRIDE: u64 = 1024;

/// If `index` is a multiple of `DEDUP_EXPIRY_STRIDE`, adds to `batch` the
/// deletion of every request answer remembered by the entries in
/// `[index - DEDUP_WINDOW - STRIDE, index - DEDUP_WINDOW)`. Called for every
/// applied entry, whatever its payload, so that the chunks tile the log; a
/// function of the index and the state only, so every replica forgets the
/// same ids at the same entry.
pub fn expire_requests(db: &DB, index: u64, batch: &mut WriteBatch) -> Result<(), KvError> {
    if !index.is_multiple_of(DEDUP_EXPIRY_STRIDE) || index < DEDUP_WINDOW {
        return Ok(());
    }
    let end = index - DEDUP_WINDOW;
    let start = be_u64(end.saturating_sub(DEDUP_EXPIRY_STRIDE));
    let (dedup, dedup_index) = (cf(db, CF_DEDUP), cf(db, CF_DEDUP_INDEX));
    let iter = db.iterator_cf(dedup_index, IteratorMode::From(&start, Direction::Forward));
    for item in iter {
        let (k, id) = item?;
        // A key starts with the log index that remembered the request.
        if k.get(..8).and_then(decode_be_u64).is_none_or(|i| i >= end) {
            break;
        }
        batch.delete_cf(dedup, id);
        batch.delete_cf(dedup_index, k);
    }
    Ok(())
}

pub const KEY_REVISION: &[u8] = b"revision";
pub const KEY_KV_COUNT: &[u8] = b"kv_count";
pub const KEY_LEASE_COUNT: &[u8] = b"lease_count";

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseRecord {
    pub ttl_seconds: i64,
}

/// Counters kept in `sm_meta` and mirrored in memory for headers and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub revision: i64,
    pub kv_count: i64,
    pub lease_count: i64,
}

impl Counters {
    pub fn load(db: &DB) -> Result<Self, rocksdb::Error> {
        let meta = cf(db, CF_SM_META);
        let read = |k: &[u8]| -> Result<i64, rocksdb::Error> {
            Ok(db
                .get_cf(meta, k)?
                .and_then(|b| b.as_slice().try_into().ok())
                .map(i64::from_be_bytes)
                .unwrap_or(0))
        };
        Ok(Self {
            revision: read(KEY_REVISION)?,
            kv_count: read(KEY_KV_COUNT)?,
            lease_count: read(KEY_LEASE_COUNT)?,
        })
    }

    /// Adds the counters to `batch`; the caller does it once per write batch
    /// (the last value is the one that counts).
    pub(crate) fn store(&self, db: &DB, batch: &mut WriteBatch) {
        let meta = cf(db, CF_SM_META);
        batch.put_cf(meta, KEY_REVISION, self.revision.to_be_bytes());
        batch.put_cf(meta, KEY_KV_COUNT, self.kv_count.to_be_bytes());
        batch.put_cf(meta, KEY_LEASE_COUNT, self.lease_count.to_be_bytes());
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error("rocksdb: {0}")]
    Db(#[from] rocksdb::Error),
    #[error("corrupt stored value: {0}")]
    Corrupt(#[from] bincode::Error),
}

pub fn lease_key(id: i64) -> [u8; 8] {
    be_u64(id as u64)
}

fn lease_key_entry(lease: i64, key: &[u8]) -> Vec<u8> {
    let mut k = lease_key(lease).to_vec();
    k.extend_from_slice(key);
    k
}

fn dedup_key(id: &RequestId) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&id.client_id.to_be_bytes());
    k[8..].copy_from_slice(&id.seq.to_be_bytes());
    k
}

/// First byte of a remembered answer that also names its `dedup_index` key,
/// so that `forget` can delete both. Older records are the bare bincode
/// answer, whose first byte (the low byte of a variant tag) is never 0xFF;
/// their index entries go when the window passes them.
const RECORD_WITH_INDEX: u8 = 0xFF;
/// Length of a `dedup_index` key: log index (8, BE) ++ command within it (4, BE).
const INDEX_KEY_LEN: usize = 12;

fn dedup_index_key(index: u64, sub: u32) -> [u8; INDEX_KEY_LEN] {
    let mut k = [0u8; INDEX_KEY_LEN];
    k[..8].copy_from_slice(&index.to_be_bytes());
    k[8..].copy_from_slice(&sub.to_be_bytes());
    k
}

/// A remembered answer's bincode and, for newer records, its index key.
fn split_record(record: &[u8]) -> (&[u8], Option<&[u8]>) {
    match record.split_first() {
        Some((&RECORD_WITH_INDEX, rest)) if rest.len() >= INDEX_KEY_LEN => {
            let (index_key, answer) = rest.split_at(INDEX_KEY_LEN);
            (answer, Some(index_key))
        }
        _ => (record, None),
    }
}

/// Adds to `batch` the deletion of every remembered answer to `client_id`
/// with `from <= seq < below`, and of their index entries. Reads the
/// database only (not `batch`), so it is the same on every replica. The
/// proposer makes the ranges of one client follow each other, so this
/// walks live records, not the tombstones of earlier ranges.
pub fn forget(
    db: &DB,
    batch: &mut WriteBatch,
    client_id: u64,
    from: u64,
    below: u64,
) -> Result<(), KvError> {
    if from >= below {
        return Ok(());
    }
    let (dedup, dedup_index) = (cf(db, CF_DEDUP), cf(db, CF_DEDUP_INDEX));
    let start = dedup_key(&RequestId {
        client_id,
        seq: from,
    });
    let end = dedup_key(&RequestId {
        client_id,
        seq: below,
    });
    let mut opts = rocksdb::ReadOptions::default();
    opts.set_iterate_upper_bound(end);
    let iter = db.iterator_cf_opt(dedup, opts, IteratorMode::From(&start, Direction::Forward));
    for item in iter {
        let (key, record) = item?;
        if let (_, Some(index_key)) = split_record(&record) {
            batch.delete_cf(dedup_index, index_key);
        }
        batch.delete_cf(dedup, key);
    }
    Ok(())
}

/// The result of applying one command (its writes went into the caller's
/// batch): the answer, the events to publish once committed, and the keys
/// it wrote with their new values (None = deleted), for `HotKeys`.
pub struct Applied {
    pub result: CommandResult,
    pub events: Vec<KvEvent>,
    pub counters: Counters,
    pub written: BTreeMap<Vec<u8>, Option<StoredValue>>,
}

/// Keys most recently written, with the value they have in the database:
/// a compare-and-put reads the key it writes, and in a memtable holding
/// many versions of a hot key that lookup was a quarter of an apply. Every
/// replica writes keys only through `Applier`, so after each committed
/// write batch the caller records that batch's `written` keys here; it
/// clears the cache whenever the database changes any other way (a
/// snapshot installed) or a write fails. Bounded in keys and in bytes: a
/// value over `MAX_HOT_VALUE` is not kept (and evicts what was kept for its
/// key), and past `MAX_HOT_KEYS` the cache starts over.
#[derive(Default)]
pub struct HotKeys {
    values: HashMap<Vec<u8>, Option<StoredValue>>,
}

/// Enough for every writer of a busy cluster's hot keys.
const MAX_HOT_KEYS: usize = 4096;
/// Metadata values are mostly small; at most ~4 MiB of them in all.
const MAX_HOT_VALUE: usize = 1024;

impl HotKeys {
    fn get(&self, key: &[u8]) -> Option<&Option<StoredValue>> {
        self.values.get(key)
    }

    /// Records values that are now in the database.
    pub fn committed(&mut self, written: BTreeMap<Vec<u8>, Option<StoredValue>>) {
        if self.values.len() + written.len() > MAX_HOT_KEYS {
            self.values.clear();
        }
        for (key, value) in written {
            if value
                .as_ref()
                .is_some_and(|v| v.value.len() > MAX_HOT_VALUE)
            {
                self.values.remove(&key);
            } else {
                self.values.insert(key, value);
            }
        }
    }

    pub fn clear(&mut self) {
        self.values.clear();
    }
}

pub struct Applier<'a> {
    db: &'a DB,
    hot: &'a HotKeys,
    batch: &'a mut WriteBatch,
    /// Pending key writes of this command (None = deleted).
    overlay: BTreeMap<Vec<u8>, Option<StoredValue>>,
    /// Keys this command read from the database and has not written: a
    /// compare-and-put reads its key twice (compare, then put), and a lookup
    /// in a memtable full of that key's older versions is not free.
    read: HashMap<Vec<u8>, Option<StoredValue>>,
    lease_overlay: HashMap<i64, Option<LeaseRecord>>,
    counters: Counters,
    events: Vec<KvEvent>,
}

impl<'a> Applier<'a> {
    /// Applies `cmd`, proposed at log `index` (as command `sub` of a batch, 0
    /// otherwise), on top of `counters`, adding its writes to `batch`. Reads
    /// see the database, not `batch`. A nested batch is rejected.
    pub fn apply(
        db: &'a DB,
        hot: &'a HotKeys,
        batch: &'a mut WriteBatch,
        counters: Counters,
        index: u64,
        sub: u32,
        cmd: &Command,
    ) -> Result<Applied, KvError> {
        let request_id = cmd.request_id();
        if let Some(id) = &request_id {
            if let Some(prev) = db.get_cf(cf(db, CF_DEDUP), dedup_key(id))? {
                // A retry of a write that was already applied: answer as before.
                return Ok(Applied {
                    result: bincode::deserialize(split_record(&prev).0)?,
                    events: Vec::new(),
                    counters,
                    written: BTreeMap::new(),
                });
            }
        }
        let mut a = Applier {
            db,
            hot,
            batch,
            overlay: BTreeMap::new(),
            read: HashMap::new(),
            lease_overlay: HashMap::new(),
            counters,
            events: Vec::new(),
        };
        let result = match cmd {
            Command::Txn {
                compares,
                success,
                failure,
                ..
            } => a.txn(compares, success, failure)?,
            Command::LeaseGrant {
                lease_id,
                ttl_seconds,
                ..
            } => a.lease_grant(*lease_id, *ttl_seconds)?,
            Command::LeaseRevoke { lease_id, .. } => a.lease_revoke(*lease_id)?,
            Command::Forget {
                client_id,
                from,
                below,
            } => {
                forget(a.db, a.batch, *client_id, *from, *below)?;
                CommandResult::None
            }
            Command::Batch(_) => CommandResult::Rejected {
                revision: a.counters.revision,
                reason: "nested batch".into(),
            },
        };
        if let Some(id) = &request_id {
            a.remember(id, index, sub, &result)?;
        }
        Ok(Applied {
            result,
            events: a.events,
            counters: a.counters,
            written: a.overlay,
        })
    }

    fn remember(
        &mut self,
        id: &RequestId,
        index: u64,
        sub: u32,
        result: &CommandResult,
    ) -> Result<(), KvError> {
        let dedup = cf(self.db, CF_DEDUP);
        let dedup_index = cf(self.db, CF_DEDUP_INDEX);
        let index_key = dedup_index_key(index, sub);
        let mut record = Vec::with_capacity(1 + INDEX_KEY_LEN + 32);
        record.push(RECORD_WITH_INDEX);
        record.extend_from_slice(&index_key);
        bincode::serialize_into(&mut record, result)?;
        self.batch.put_cf(dedup, dedup_key(id), record);
        self.batch.put_cf(dedup_index, index_key, dedup_key(id));
        Ok(())
    }

    fn get(&mut self, key: &[u8]) -> Result<Option<StoredValue>, KvError> {
        if let Some(v) = self
            .overlay
            .get(key)
            .or_else(|| self.read.get(key))
            .or_else(|| self.hot.get(key))
        {
            return Ok(v.clone());
        }
        let v = get(self.db, key)?;
        self.read.insert(key.to_vec(), v.clone());
        Ok(v)
    }

    fn version_of(&mut self, key: &[u8]) -> Result<i64, KvError> {
        Ok(self.get(key)?.map_or(0, |v| v.version))
    }

    fn lease(&self, id: i64) -> Result<Option<LeaseRecord>, KvError> {
        if let Some(l) = self.lease_overlay.get(&id) {
            return Ok(*l);
        }
        lease(self.db, id)
    }

    fn txn(
        &mut self,
        compares: &[Compare],
        success: &[Op],
        failure: &[Op],
    ) -> Result<CommandResult, KvError> {
        let mut compare_versions = Vec::with_capacity(compares.len());
        let mut succeeded = true;
        for c in compares {
            let v = self.version_of(&c.key)?;
            succeeded &= c.holds(v);
            compare_versions.push(v);
        }
        let ops = if succeeded { success } else { failure };
        // Validate before writing anything: a transaction is all or nothing.
        for op in ops {
            if let Op::Put { lease, .. } = op {
                if *lease != 0 && self.lease(*lease)?.is_none() {
                    return Ok(CommandResult::Rejected {
                        revision: self.counters.revision,
                        reason: format!("lease {lease} not found (expired or revoked)"),
                    });
                }
            }
        }
        let next_revision = self.counters.revision + 1;
        let mut results = Vec::with_capacity(ops.len());
        for op in ops {
            results.push(match op {
                Op::Put { key, value, lease } => OpOutcome::Put {
                    version: self.put(key, value, *lease, next_revision)?,
                },
                Op::Delete { key, prefix } => OpOutcome::Delete {
                    deleted: self.delete(key, *prefix, next_revision)?,
                },
            });
        }
        if !self.events.is_empty() {
            self.counters.revision = next_revision;
        }
        Ok(CommandResult::Txn {
            revision: self.counters.revision,
            succeeded,
            results,
            compare_versions,
        })
    }

    fn put(&mut self, key: &[u8], value: &[u8], lease: i64, revision: i64) -> Result<i64, KvError> {
        let old = self.get(key)?;
        let new = StoredValue {
            value: value.to_vec(),
            version: old.as_ref().map_or(1, |o| o.version + 1),
            create_revision: old.as_ref().map_or(revision, |o| o.create_revision),
            mod_revision: revision,
            lease,
        };
        let lease_keys = cf(self.db, CF_LEASE_KEYS);
        match &old {
            Some(o) if o.lease != lease && o.lease != 0 => self
                .batch
                .delete_cf(lease_keys, lease_key_entry(o.lease, key)),
            None => self.counters.kv_count += 1,
            _ => {}
        }
        if lease != 0 {
            self.batch
                .put_cf(lease_keys, lease_key_entry(lease, key), []);
        }
        self.batch
            .put_cf(cf(self.db, CF_KV), key, bincode::serialize(&new)?);
        let version = new.version;
        self.events.push(KvEvent {
            revision,
            key: key.to_vec(),
            value: Some(new.clone()),
        });
        self.overlay.insert(key.to_vec(), Some(new));
        Ok(version)
    }

    fn delete(&mut self, key: &[u8], prefix: bool, revision: i64) -> Result<i64, KvError> {
        let keys: Vec<Vec<u8>> = if prefix {
            let mut keys: Vec<Vec<u8>> = scan(self.db, key, &[], usize::MAX, true)?
                .into_iter()
                .map(|(k, _)| k)
                .filter(|k| !self.overlay.contains_key(k))
                .collect();
            keys.extend(
                self.overlay
                    .iter()
                    .filter(|(k, v)| k.starts_with(key) && v.is_some())
                    .map(|(k, _)| k.clone()),
            );
            keys
        } else {
            vec![key.to_vec()]
        };
        let mut deleted = 0;
        for k in keys {
            let Some(old) = self.get(&k)? else { continue };
            if old.lease != 0 {
                self.batch
                    .delete_cf(cf(self.db, CF_LEASE_KEYS), lease_key_entry(old.lease, &k));
            }
            self.batch.delete_cf(cf(self.db, CF_KV), &k);
            self.counters.kv_count -= 1;
            deleted += 1;
            self.events.push(KvEvent {
                revision,
                key: k.clone(),
                value: None,
            });
            self.overlay.insert(k, None);
        }
        Ok(deleted)
    }

    fn lease_grant(&mut self, id: i64, ttl_seconds: i64) -> Result<CommandResult, KvError> {
        if self.lease(id)?.is_none() {
            let rec = LeaseRecord { ttl_seconds };
            self.batch.put_cf(
                cf(self.db, CF_LEASES),
                lease_key(id),
                bincode::serialize(&rec)?,
            );
            self.lease_overlay.insert(id, Some(rec));
            self.counters.lease_count += 1;
        }
        Ok(CommandResult::LeaseGranted {
            revision: self.counters.revision,
            lease_id: id,
            ttl_seconds,
        })
    }

    fn lease_revoke(&mut self, id: i64) -> Result<CommandResult, KvError> {
        if self.lease(id)?.is_none() {
            return Ok(CommandResult::LeaseRevoked {
                revision: self.counters.revision,
                found: false,
            });
        }
        let next_revision = self.counters.revision + 1;
        let lease_keys = cf(self.db, CF_LEASE_KEYS);
        let prefix = lease_key(id);
        let iter = self
            .db
            .iterator_cf(lease_keys, IteratorMode::From(&prefix, Direction::Forward));
        let mut attached = Vec::new();
        for item in iter {
            let (k, _) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            attached.push(k[8..].to_vec());
        }
        for key in attached {
            // The index can only name keys still on this lease, but check anyway:
            // deleting a key that moved to another lease would lose data.
            if self.get(&key)?.is_some_and(|v| v.lease == id) {
                self.delete(&key, false, next_revision)?;
            } else {
                self.batch.delete_cf(lease_keys, lease_key_entry(id, &key));
            }
        }
        self.batch.delete_cf(cf(self.db, CF_LEASES), lease_key(id));
        self.lease_overlay.insert(id, None);
        self.counters.lease_count -= 1;
        if !self.events.is_empty() {
            self.counters.revision = next_revision;
        }
        Ok(CommandResult::LeaseRevoked {
            revision: self.counters.revision,
            found: true,
        })
    }
}

/// Reads anything with `get_cf` / `iterator_cf`: the live DB or a point-in-time snapshot.
pub trait Reader {
    fn get_raw(&self, cf_name: &str, key: &[u8]) -> Result<Option<Vec<u8>>, rocksdb::Error>;
    fn scan_raw(
        &self,
        cf_name: &str,
        from: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), rocksdb::Error>;
}

impl Reader for DB {
    fn get_raw(&self, cf_name: &str, key: &[u8]) -> Result<Option<Vec<u8>>, rocksdb::Error> {
        self.get_cf(cf(self, cf_name), key)
    }
    fn scan_raw(
        &self,
        cf_name: &str,
        from: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), rocksdb::Error> {
        for item in self.iterator_cf(
            cf(self, cf_name),
            IteratorMode::From(from, Direction::Forward),
        ) {
            let (k, v) = item?;
            if !f(&k, &v) {
                break;
            }
        }
        Ok(())
    }
}

/// A consistent point-in-time view for multi-key reads.
pub struct SnapshotReader<'a> {
    pub db: &'a DB,
    pub snap: rocksdb::Snapshot<'a>,
}

impl Reader for SnapshotReader<'_> {
    fn get_raw(&self, cf_name: &str, key: &[u8]) -> Result<Option<Vec<u8>>, rocksdb::Error> {
        self.snap.get_cf(cf(self.db, cf_name), key)
    }
    fn scan_raw(
        &self,
        cf_name: &str,
        from: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), rocksdb::Error> {
        for item in self.snap.iterator_cf(
            cf(self.db, cf_name),
            IteratorMode::From(from, Direction::Forward),
        ) {
            let (k, v) = item?;
            if !f(&k, &v) {
                break;
            }
        }
        Ok(())
    }
}

pub fn get(r: &(impl Reader + ?Sized), key: &[u8]) -> Result<Option<StoredValue>, KvError> {
    r.get_raw(CF_KV, key)?
        .map(|b| bincode::deserialize(&b).map_err(KvError::from))
        .transpose()
}

pub fn lease(r: &(impl Reader + ?Sized), id: i64) -> Result<Option<LeaseRecord>, KvError> {
    r.get_raw(CF_LEASES, &lease_key(id))?
        .map(|b| bincode::deserialize(&b).map_err(KvError::from))
        .transpose()
}

pub fn revision(r: &(impl Reader + ?Sized)) -> Result<i64, KvError> {
    Ok(r.get_raw(CF_SM_META, KEY_REVISION)?
        .and_then(|b| b.as_slice().try_into().ok())
        .map(i64::from_be_bytes)
        .unwrap_or(0))
}

/// Keys with `prefix`, strictly after `start_after`, at most `limit` of them.
/// With `keys_only` the values are returned empty.
pub fn scan(
    r: &(impl Reader + ?Sized),
    prefix: &[u8],
    start_after: &[u8],
    limit: usize,
    keys_only: bool,
) -> Result<Vec<(Vec<u8>, StoredValue)>, KvError> {
    let from: Vec<u8> = if start_after > prefix {
        let mut f = start_after.to_vec();
        f.push(0);
        f
    } else {
        prefix.to_vec()
    };
    let mut out = Vec::new();
    let mut err = None;
    r.scan_raw(CF_KV, &from, &mut |k, v| {
        if !k.starts_with(prefix) || out.len() >= limit {
            return false;
        }
        match bincode::deserialize::<StoredValue>(v) {
            Ok(mut sv) => {
                if keys_only {
                    sv.value = Vec::new();
                }
                out.push((k.to_vec(), sv));
                true
            }
            Err(e) => {
                err = Some(e);
                false
            }
        }
    })?;
    match err {
        Some(e) => Err(e.into()),
        None => Ok(out),
    }
}

/// All leases, by id.
pub fn lease_records(r: &(impl Reader + ?Sized)) -> Result<Vec<(i64, LeaseRecord)>, KvError> {
    let mut leases = Vec::new();
    let mut err = None;
    r.scan_raw(CF_LEASES, &[], &mut |k, v| {
        let id = k.try_into().map(u64::from_be_bytes).unwrap_or(0) as i64;
        match bincode::deserialize::<LeaseRecord>(v) {
            Ok(rec) => leases.push((id, rec)),
            Err(e) => err = Some(e),
        }
        err.is_none()
    })?;
    match err {
        Some(e) => Err(e.into()),
        None => Ok(leases),
    }
}

/// All leases with the number of keys attached to each.
pub fn leases(r: &(impl Reader + ?Sized)) -> Result<Vec<(i64, LeaseRecord, i64)>, KvError> {
    let mut leases: Vec<(i64, LeaseRecord, i64)> = lease_records(r)?
        .into_iter()
        .map(|(id, rec)| (id, rec, 0))
        .collect();
    for (id, _, keys) in &mut leases {
        let prefix = lease_key(*id);
        r.scan_raw(CF_LEASE_KEYS, &prefix, &mut |k, _| {
            if k.starts_with(&prefix) {
                *keys += 1;
                true
            } else {
                false
            }
        })?;
    }
    Ok(leases)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    struct Fixture {
        _dir: tempfile::TempDir,
        db: std::sync::Arc<DB>,
        counters: Counters,
        index: u64,
        /// Kept across commands as the state machine keeps it, so every
        /// test here also reads through it.
        hot: HotKeys,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let db = store::open_state_machine(dir.path()).unwrap();
            Self {
                _dir: dir,
                db,
                counters: Counters::default(),
                index: 0,
                hot: HotKeys::default(),
            }
        }

        fn run(&mut self, cmd: Command) -> (CommandResult, Vec<KvEvent>) {
            self.index += 1;
            let mut batch = WriteBatch::default();
            let applied = Applier::apply(
                &self.db,
                &self.hot,
                &mut batch,
                self.counters,
                self.index,
                0,
                &cmd,
            )
            .unwrap();
            applied.counters.store(&self.db, &mut batch);
            self.db.write(batch).unwrap();
            self.hot.committed(applied.written);
            self.counters = applied.counters;
            (applied.result, applied.events)
        }

        fn txn(&mut self, compares: Vec<Compare>, success: Vec<Op>) -> CommandResult {
            self.run(Command::Txn {
                request_id: None,
                compares,
                success,
                failure: vec![],
            })
            .0
        }
    }

    fn put(k: &str, v: &str) -> Op {
        Op::Put {
            key: k.into(),
            value: v.into(),
            lease: 0,
        }
    }

    fn eq(k: &str, version: i64) -> Compare {
        Compare {
            key: k.into(),
            op: crate::types::CompareOp::Equal,
            version,
        }
    }

    #[test]
    fn a_large_value_evicts_its_keys_cached_predecessor() {
        let mut f = Fixture::new();
        f.txn(vec![], vec![put("k", "small")]);
        assert!(f.hot.get(b"k").is_some());
        let big = "x".repeat(MAX_HOT_VALUE + 1);
        f.txn(vec![eq("k", 1)], vec![put("k", &big)]);
        assert!(f.hot.get(b"k").is_none());
        // The next compare must see version 2, not the cached version 1.
        match f.txn(vec![eq("k", 2)], vec![put("k", "again")]) {
            CommandResult::Txn { succeeded, .. } => assert!(succeeded),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(get(&*f.db, b"k").unwrap().unwrap().version, 3);
    }

    #[test]
    fn the_cache_starts_over_past_its_bound() {
        let mut hot = HotKeys::default();
        for i in 0..MAX_HOT_KEYS + 10 {
            hot.committed(BTreeMap::from([(i.to_be_bytes().to_vec(), None)]));
            assert!(hot.values.len() <= MAX_HOT_KEYS);
        }
        assert!(hot.get(&(MAX_HOT_KEYS + 9).to_be_bytes()).is_some());
    }

    #[test]
    fn cas_and_versions() {
        let mut f = Fixture::new();
        // version 0 = must not exist
        assert!(matches!(
            f.txn(vec![eq("a", 0)], vec![put("a", "1")]),
            CommandResult::Txn {
                succeeded: true,
                revision: 1,
                ..
            }
        ));
        let r = f.txn(vec![eq("a", 0)], vec![put("a", "2")]);
        assert!(
            matches!(r, CommandResult::Txn { succeeded: false, revision: 1, ref compare_versions, .. } if compare_versions == &vec![1])
        );
        assert!(matches!(
            f.txn(vec![eq("a", 1)], vec![put("a", "3")]),
            CommandResult::Txn {
                succeeded: true,
                revision: 2,
                ..
            }
        ));
        let v = get(&*f.db, b"a").unwrap().unwrap();
        assert_eq!(
            (
                v.value.as_slice(),
                v.version,
                v.create_revision,
                v.mod_revision
            ),
            (&b"3"[..], 2, 1, 2)
        );
        assert_eq!(f.counters.kv_count, 1);
    }

    #[test]
    fn retried_request_is_applied_once() {
        let mut f = Fixture::new();
        let id = Some(RequestId {
            client_id: 7,
            seq: 1,
        });
        let cmd = Command::Txn {
            request_id: id,
            compares: vec![eq("k", 0)],
            success: vec![put("k", "x")],
            failure: vec![],
        };
        let (first, _) = f.run(cmd.clone());
        let (second, events) = f.run(cmd);
        assert_eq!(
            first, second,
            "the retry must get the first answer, not a CAS miss"
        );
        assert!(events.is_empty());
        assert_eq!(get(&*f.db, b"k").unwrap().unwrap().version, 1);
    }

    #[test]
    fn request_ids_are_forgotten_in_whole_chunks_after_the_window() {
        let mut f = Fixture::new();
        let remembered = |f: &Fixture, seq: u64| {
            let id = RequestId { client_id: 9, seq };
            f.db.get_cf(cf(&f.db, CF_DEDUP), dedup_key(&id))
                .unwrap()
                .is_some()
        };
        // Remembered by entries 1 and 1500 (in two different chunks).
        for (index, seq) in [(1, 1), (1500, 2)] {
            f.index = index - 1;
            f.run(Command::Txn {
                request_id: Some(RequestId { client_id: 9, seq }),
                compares: vec![],
                success: vec![put(&format!("k{seq}"), "v")],
                failure: vec![],
            });
        }
        let expire_at = |f: &Fixture, index: u64| {
            let mut batch = WriteBatch::default();
            expire_requests(&f.db, index, &mut batch).unwrap();
            f.db.write(batch).unwrap();
        };
        // Not a multiple of the stride, or too early: nothing is forgotten.
        expire_at(&f, DEDUP_WINDOW + 1);
        expire_at(&f, DEDUP_EXPIRY_STRIDE * 100);
        assert!(remembered(&f, 1) && remembered(&f, 2));
        // The first multiple past the window covers [0, 1024): entry 1 only.
        let first = DEDUP_WINDOW.div_ceil(DEDUP_EXPIRY_STRIDE) * DEDUP_EXPIRY_STRIDE;
        let covers =
            |m: u64| (m - DEDUP_WINDOW).saturating_sub(DEDUP_EXPIRY_STRIDE)..(m - DEDUP_WINDOW);
        let mut m = first;
        while !covers(m).contains(&1) {
            m += DEDUP_EXPIRY_STRIDE;
        }
        expire_at(&f, m);
        assert!(!remembered(&f, 1), "entry 1 forgotten at {m}");
        assert!(remembered(&f, 2), "entry 1500 is in a later chunk");
        expire_at(&f, m + DEDUP_EXPIRY_STRIDE);
        assert!(!remembered(&f, 2));
        assert!(
            f.db.iterator_cf(cf(&f.db, CF_DEDUP_INDEX), IteratorMode::Start)
                .next()
                .is_none(),
            "the index is emptied with the answers"
        );
    }

    #[test]
    fn lease_revoke_deletes_attached_keys_only() {
        let mut f = Fixture::new();
        f.run(Command::LeaseGrant {
            request_id: None,
            lease_id: 5,
            ttl_seconds: 10,
        });
        f.txn(
            vec![],
            vec![
                Op::Put {
                    key: "a".into(),
                    value: "1".into(),
                    lease: 5,
                },
                put("b", "2"),
            ],
        );
        // "c" first on the lease, then moved off it.
        f.txn(
            vec![],
            vec![Op::Put {
                key: "c".into(),
                value: "1".into(),
                lease: 5,
            }],
        );
        f.txn(vec![], vec![put("c", "2")]);
        assert_eq!(
            leases(&*f.db).unwrap(),
            vec![(5, LeaseRecord { ttl_seconds: 10 }, 1)]
        );
        let (r, events) = f.run(Command::LeaseRevoke {
            request_id: None,
            lease_id: 5,
        });
        assert!(matches!(r, CommandResult::LeaseRevoked { found: true, .. }));
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].key, b"a");
        assert!(get(&*f.db, b"a").unwrap().is_none());
        assert!(get(&*f.db, b"c").unwrap().is_some());
        // A put naming a gone lease changes nothing.
        let r = f.txn(
            vec![],
            vec![
                put("z", "1"),
                Op::Put {
                    key: "y".into(),
                    value: "1".into(),
                    lease: 5,
                },
            ],
        );
        assert!(matches!(r, CommandResult::Rejected { .. }));
        assert!(get(&*f.db, b"z").unwrap().is_none());
        assert_eq!(f.counters.lease_count, 0);
    }

    #[test]
    fn prefix_delete_sees_writes_of_the_same_txn() {
        let mut f = Fixture::new();
        f.txn(vec![], vec![put("p/1", "a"), put("q", "b")]);
        let r = f.txn(
            vec![],
            vec![
                put("p/2", "c"),
                Op::Delete {
                    key: "p/".into(),
                    prefix: true,
                },
            ],
        );
        assert!(
            matches!(r, CommandResult::Txn { ref results, .. } if results[1] == OpOutcome::Delete { deleted: 2 })
        );
        assert_eq!(scan(&*f.db, b"", &[], 100, true).unwrap().len(), 1);
        assert_eq!(f.counters.kv_count, 1);
    }

    #[derive(Clone, Debug)]
    enum ModelOp {
        Put(u8, u8),
        Delete(u8),
        DeletePrefix(u8),
        Cas(u8, i64, u8),
    }

    fn key(k: u8) -> Vec<u8> {
        format!("k/{}/{}", k % 3, k).into_bytes()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// The store behaves like a map of (value, version) with a revision counter.
        #[test]
        fn matches_a_simple_model(ops in prop::collection::vec(prop_oneof![
            (0u8..8, any::<u8>()).prop_map(|(k, v)| ModelOp::Put(k, v)),
            (0u8..8).prop_map(ModelOp::Delete),
            (0u8..3).prop_map(ModelOp::DeletePrefix),
            (0u8..8, 0i64..3, any::<u8>()).prop_map(|(k, ver, v)| ModelOp::Cas(k, ver, v)),
        ], 1..60)) {
            let mut f = Fixture::new();
            let mut model: BTreeMap<Vec<u8>, (Vec<u8>, i64)> = BTreeMap::new();
            let mut revision = 0;
            for op in ops {
                let before = model.clone();
                let cmd_ops;
                let mut compares = vec![];
                match &op {
                    ModelOp::Put(k, v) => {
                        let e = model.entry(key(*k)).or_insert((vec![], 0));
                        *e = (vec![*v], e.1 + 1);
                        cmd_ops = vec![Op::Put { key: key(*k), value: vec![*v], lease: 0 }];
                    }
                    ModelOp::Delete(k) => {
                        model.remove(&key(*k));
                        cmd_ops = vec![Op::Delete { key: key(*k), prefix: false }];
                    }
                    ModelOp::DeletePrefix(p) => {
                        let prefix = format!("k/{p}/").into_bytes();
                        model.retain(|k, _| !k.starts_with(&prefix));
                        cmd_ops = vec![Op::Delete { key: prefix, prefix: true }];
                    }
                    ModelOp::Cas(k, ver, v) => {
                        let cur = model.get(&key(*k)).map_or(0, |e| e.1);
                        if cur == *ver {
                            model.insert(key(*k), (vec![*v], cur + 1));
                        }
                        compares.push(Compare { key: key(*k), op: crate::types::CompareOp::Equal, version: *ver });
                        cmd_ops = vec![Op::Put { key: key(*k), value: vec![*v], lease: 0 }];
                    }
                }
                if model != before || matches!(op, ModelOp::Put(..)) {
                    revision += 1;
                }
                f.txn(compares, cmd_ops);
                prop_assert_eq!(f.counters.revision, revision);
            }
            let stored: BTreeMap<Vec<u8>, (Vec<u8>, i64)> = scan(&*f.db, b"", &[], usize::MAX, false)
                .unwrap()
                .into_iter()
                .map(|(k, v)| (k, (v.value, v.version)))
                .collect();
            prop_assert_eq!(&stored, &model);
            prop_assert_eq!(f.counters.kv_count, model.len() as i64);
        }
    }
}

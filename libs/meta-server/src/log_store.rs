//! The Raft log in RocksDB.
//!
//! `append` does not wait for the disk: it puts the entries in an in-memory
//! `pending` map (where readers find them at once, as openraft requires) and
//! hands them to the log writer thread. That thread takes every append queued
//! while its previous fsync ran, writes them in one synced batch (group commit),
//! drops them from `pending`, and reports them flushed through openraft's
//! callback. Meanwhile Raft goes on: replicating to followers overlaps with the
//! leader's own fsync.
//!
//! Truncate, purge and vote go through the same thread, in order after every
//! earlier append, and are awaited.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{mpsc, Arc, Mutex};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{Entry, LogState, RaftLogReader, Vote};
use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions, DB};
use tokio::sync::oneshot;

use crate::store::{be_u64, cf, decode_be_u64, read_err, write_err, CF_LOG, CF_RAFT};
use crate::types::{LogId, NodeId, StorageError, TypeConfig};

const KEY_VOTE: &[u8] = b"vote";
const KEY_LAST_PURGED: &[u8] = b"last_purged";

type Pending = Arc<Mutex<BTreeMap<u64, Entry<TypeConfig>>>>;

enum WriteOp {
    Append {
        /// (key, value) of each entry, for the thread's group batch.
        puts: Vec<([u8; 8], Vec<u8>)>,
        written: Vec<LogId>,
        callback: LogFlushed<TypeConfig>,
    },
    /// Any other write: applied after all earlier appends, answered when durable.
    Other {
        batch: WriteBatch,
        done: oneshot::Sender<Result<(), String>>,
    },
}

#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
    pending: Pending,
    writer: mpsc::Sender<WriteOp>,
}

impl LogStore {
    pub fn new(db: Arc<DB>) -> Self {
        let pending: Pending = Arc::default();
        let (writer, rx) = mpsc::channel();
        let (wdb, wpending) = (db.clone(), pending.clone());
        std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || write_loop(wdb, wpending, rx))
            .expect("spawn the raft log writer thread");
        Self {
            db,
            pending,
            writer,
        }
    }

    fn get_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
    ) -> Result<Option<T>, StorageError> {
        let raw = self
            .db
            .get_cf(cf(&self.db, CF_RAFT), key)
            .map_err(read_err)?;
        raw.map(|b| bincode::deserialize(&b).map_err(read_err))
            .transpose()
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Entry<TypeConfig>>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs a non-append write on the writer thread, after earlier appends.
    async fn write_ordered(&self, batch: WriteBatch) -> Result<(), StorageError> {
        let (done, rx) = oneshot::channel();
        self.writer
            .send(WriteOp::Other { batch, done })
            .map_err(|_| write_err(std::io::Error::other("raft log writer stopped")))?;
        rx.await
            .map_err(|_| write_err(std::io::Error::other("raft log writer stopped")))?
            .map_err(|e| write_err(std::io::Error::other(e)))
    }
}

/// The writer thread: group-commits appends, applies other writes in order.
fn write_loop(db: Arc<DB>, pending: Pending, rx: mpsc::Receiver<WriteOp>) {
    let mut sync = WriteOptions::default();
    sync.set_sync(true);
    while let Ok(first) = rx.recv() {
        let mut ops = vec![first];
        ops.extend(rx.try_iter());
        let mut appends: Vec<(Vec<LogId>, LogFlushed<TypeConfig>)> = Vec::new();
        let mut group = WriteBatch::default();
        for op in ops {
            match op {
                WriteOp::Append {
                    puts,
                    written,
                    callback,
                } => {
                    for (k, v) in puts {
                        group.put_cf(cf(&db, CF_LOG), k, v);
                    }
                    appends.push((written, callback));
                }
                WriteOp::Other { batch, done } => {
                    // Earlier appends first, then this write.
                    flush_appends(
                        &db,
                        &pending,
                        &sync,
                        std::mem::take(&mut group),
                        std::mem::take(&mut appends),
                    );
                    let r = db.write_opt(batch, &sync).map_err(|e| e.to_string());
                    let _ = done.send(r);
                }
            }
        }
        flush_appends(&db, &pending, &sync, group, appends);
    }
}

fn flush_appends(
    db: &DB,
    pending: &Pending,
    sync: &WriteOptions,
    group: WriteBatch,
    appends: Vec<(Vec<LogId>, LogFlushed<TypeConfig>)>,
) {
    if appends.is_empty() {
        return;
    }
    let result = db.write_opt(group, sync);
    if result.is_ok() {
        let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
        for (written, _) in &appends {
            for log_id in written {
                // Only if not replaced by a later append after a truncate.
                if p.get(&log_id.index).is_some_and(|e| e.log_id == *log_id) {
                    p.remove(&log_id.index);
                }
            }
        }
    }
    for (_, callback) in appends {
        callback.log_io_completed(
            result
                .as_ref()
                .map(|_| ())
                .map_err(|e| std::io::Error::other(e.to_string())),
        );
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        // Pending first: an entry leaves `pending` only after it is in RocksDB,
        // so reading in this order never misses one.
        let mut merged: BTreeMap<u64, Entry<TypeConfig>> = self
            .lock_pending()
            .range(range.clone())
            .map(|(i, e)| (*i, e.clone()))
            .collect();
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i + 1,
            Bound::Unbounded => 0,
        };
        let from = be_u64(start);
        let iter = self.db.iterator_cf(
            cf(&self.db, CF_LOG),
            IteratorMode::From(&from, Direction::Forward),
        );
        for item in iter {
            let (key, value) = item.map_err(read_err)?;
            let index = decode_be_u64(&key)
                .ok_or_else(|| read_err(std::io::Error::other("malformed log key in RocksDB")))?;
            if !range.contains(&index) {
                break;
            }
            if let std::collections::btree_map::Entry::Vacant(slot) = merged.entry(index) {
                slot.insert(bincode::deserialize(&value).map_err(read_err)?);
            }
        }
        Ok(merged.into_values().collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId> = self.get_meta(KEY_LAST_PURGED)?;
        let pending_last = self.lock_pending().values().next_back().map(|e| e.log_id);
        let mut iter = self.db.iterator_cf(cf(&self.db, CF_LOG), IteratorMode::End);
        let stored_last = match iter.next() {
            Some(item) => {
                let (_, value) = item.map_err(read_err)?;
                let entry: Entry<TypeConfig> = bincode::deserialize(&value).map_err(read_err)?;
                Some(entry.log_id)
            }
            None => None,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: pending_last.max(stored_last).or(last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(
            cf(&self.db, CF_RAFT),
            KEY_VOTE,
            bincode::serialize(vote).map_err(write_err)?,
        );
        self.write_ordered(batch).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.get_meta(KEY_VOTE)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut puts = Vec::new();
        let mut written = Vec::new();
        {
            let mut pending = self.lock_pending();
            for entry in entries {
                let value = bincode::serialize(&entry).map_err(write_err)?;
                puts.push((be_u64(entry.log_id.index), value));
                written.push(entry.log_id);
                pending.insert(entry.log_id.index, entry);
            }
        }
        self.writer
            .send(WriteOp::Append {
                puts,
                written,
                callback,
            })
            .map_err(|_| write_err(std::io::Error::other("raft log writer stopped")))
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.lock_pending().retain(|i, _| *i < log_id.index);
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf(&self.db, CF_LOG), be_u64(log_id.index), be_u64(u64::MAX));
        self.write_ordered(batch).await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(
            cf(&self.db, CF_RAFT),
            KEY_LAST_PURGED,
            bincode::serialize(&log_id).map_err(write_err)?,
        );
        batch.delete_range_cf(cf(&self.db, CF_LOG), be_u64(0), be_u64(log_id.index + 1));
        self.write_ordered(batch).await
    }
}

//! The bookie's rules, independent of the RPC layer: what an add, read, fence or
//! delete does, in which order, and what it answers.
//!
//! Ordering that matters for correctness:
//! - An add is acknowledged only after its journal record is durable, and after
//!   the entry is visible to reads.
//! - After the journal write, the fence flag is checked again under the ledger
//!   lock, and the entry is made readable under that same lock. So once a fence
//!   has answered, no normal add is acknowledged any more, and every add that was
//!   acknowledged before is visible to the recovery that follows the fence.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::entry_store::{EntryStore, LedgerState, StoreError, StoredEntry};
use crate::journal::{Journal, JournalError, JournalPos};

/// What the journal records. Replaying them is idempotent.
///
/// Byte fields go through `serde_bytes`: bincode then writes them as one
/// length-prefixed copy (the same bytes on disk as a sequence of `u8`, so
/// older journals read back unchanged) instead of serialising every byte on
/// its own, which cost a fifth of a busy bookie's CPU.
#[derive(Serialize, Deserialize, Debug)]
pub enum JournalRecord {
    Add {
        ledger: u64,
        entry: u64,
        crc32c: u32,
        lac: i64,
        #[serde(with = "serde_bytes")]
        master_key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
    Fence {
        ledger: u64,
        #[serde(with = "serde_bytes")]
        master_key: Vec<u8>,
    },
    Delete {
        ledger: u64,
    },
    /// Written by checkpoints of earlier versions (the cut is now the
    /// journal's applied position); still read, and ignored, on replay.
    Checkpoint,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Fenced,
    Unauthorized,
    BadChecksum,
    ReadOnly,
    NoEntry,
    NoLedger,
    Invalid,
}

#[derive(Debug, thiserror::Error)]
pub enum BookieError {
    #[error("refused: {0:?}: {1}")]
    Refused(Refusal, String),
    #[error("journal: {0}")]
    Journal(#[from] JournalError),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
}

fn refuse(r: Refusal, msg: impl Into<String>) -> BookieError {
    BookieError::Refused(r, msg.into())
}

/// Where an add's time went inside the bookie.
#[derive(Debug, Clone, Copy)]
pub struct AddTimings {
    /// From receipt until its journal record was durable (queueing for the
    /// journal writer plus the batches ahead of and including it).
    pub journal: std::time::Duration,
    /// The part of `journal` before the batch carrying the record started
    /// (waiting for the writer to finish the batch ahead and pick this up).
    pub queued: std::time::Duration,
    /// The part of `journal` after the batch was durable, until this add ran
    /// again (the completion's hand-off to the add's task and its scheduling).
    pub resumed: std::time::Duration,
    /// Putting the entry into the entry storage's memtable, after the journal.
    pub store: std::time::Duration,
}

pub struct AddEntry {
    pub ledger: u64,
    pub entry: i64,
    /// As decoded from the request: journaling and storing it copies it, so
    /// it is not copied into a `Vec` first.
    pub payload: bytes::Bytes,
    pub crc32c: u32,
    pub lac: i64,
    pub master_key: Vec<u8>,
    pub recovery: bool,
}

/// The journal bytes of `JournalRecord::Add` (bincode's layout: variant
/// index as u32, fixed-width little-endian integers, byte fields as a u64
/// length and the bytes), written in one pass over the payload instead of
/// copying the payload into a record and serialising that.
fn encode_add_record(
    ledger: u64,
    entry: u64,
    crc32c: u32,
    lac: i64,
    master_key: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + 8 + 8 + 4 + 8 + 8 + master_key.len() + 8 + payload.len());
    v.extend_from_slice(&0u32.to_le_bytes()); // JournalRecord::Add
    v.extend_from_slice(&ledger.to_le_bytes());
    v.extend_from_slice(&entry.to_le_bytes());
    v.extend_from_slice(&crc32c.to_le_bytes());
    v.extend_from_slice(&lac.to_le_bytes());
    v.extend_from_slice(&(master_key.len() as u64).to_le_bytes());
    v.extend_from_slice(master_key);
    v.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    v.extend_from_slice(payload);
    v
}

/// In-memory state of one ledger this bookie holds.
struct Ledger {
    master_key: Vec<u8>,
    fenced: bool,
    /// Deleted: refuses every add, reads find nothing.
    deleted: bool,
    /// Highest LAC any add has carried; long-polling readers wait on it.
    lac: watch::Sender<i64>,
}

impl Ledger {
    fn new(master_key: Vec<u8>, fenced: bool) -> Self {
        Self {
            master_key,
            fenced,
            deleted: false,
            lac: watch::channel(-1).0,
        }
    }
}

pub struct Bookie {
    pub id: String,
    journal: Journal,
    store: EntryStore,
    ledgers: Mutex<HashMap<u64, Ledger>>,
    read_only: AtomicBool,
    pub max_entry_bytes: usize,
    /// Ledgers deleted since the last compaction of entry storage.
    deletions: std::sync::atomic::AtomicU64,
}

impl Bookie {
    /// Builds the bookie from storage and replays the journal records after the
    /// last checkpoint.
    pub fn recover(
        id: String,
        journal: Journal,
        replay: Vec<(JournalPos, Vec<u8>)>,
        store: EntryStore,
        max_entry_bytes: usize,
    ) -> Result<Self, BookieError> {
        let mut ledgers = HashMap::new();
        for (ledger, state) in store.ledgers()? {
            let mut l = Ledger::new(state.master_key, state.fenced);
            l.deleted = state.deleted;
            ledgers.insert(ledger, l);
        }
        let bookie = Self {
            id,
            journal,
            store,
            ledgers: Mutex::new(ledgers),
            read_only: AtomicBool::new(false),
            max_entry_bytes,
            deletions: Default::default(),
        };
        let n = replay.len();
        for (pos, bytes) in replay {
            let record: JournalRecord = bincode::deserialize(&bytes).map_err(|e| {
                BookieError::Store(StoreError::Corrupt(format!(
                    "journal record at {pos:?}: {e}"
                )))
            })?;
            bookie.apply(record)?;
        }
        tracing::info!(records = n, "journal replayed");
        Ok(bookie)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Ledger>> {
        self.ledgers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies a replayed record to storage and memory (no checks: it was
    /// accepted before it was journaled).
    fn apply(&self, record: JournalRecord) -> Result<(), BookieError> {
        match record {
            JournalRecord::Add {
                ledger,
                entry,
                crc32c,
                lac,
                master_key,
                payload,
            } => {
                let mut ledgers = self.lock();
                let l = self.ensure_ledger(&mut ledgers, ledger, &master_key)?;
                l.lac.send_if_modified(|v| raise(v, lac));
                self.store.put_entry(
                    ledger,
                    entry,
                    &StoredEntry {
                        crc32c,
                        lac,
                        payload,
                    },
                )?;
            }
            JournalRecord::Fence { ledger, master_key } => {
                let mut ledgers = self.lock();
                let l = self.ensure_ledger(&mut ledgers, ledger, &master_key)?;
                l.fenced = true;
                let state = LedgerState {
                    master_key: l.master_key.clone(),
                    fenced: true,
                    deleted: l.deleted,
                };
                self.store.put_ledger_state(ledger, &state)?;
            }
            JournalRecord::Delete { ledger } => {
                let mut ledgers = self.lock();
                let l = ledgers
                    .entry(ledger)
                    .or_insert_with(|| Ledger::new(Vec::new(), true));
                l.fenced = true;
                l.deleted = true;
                self.store.delete_ledger(ledger, &l.master_key)?;
            }
            JournalRecord::Checkpoint => {}
        }
        Ok(())
    }

    /// The ledger's in-memory state, created (and persisted) on first sight.
    fn ensure_ledger<'a>(
        &self,
        ledgers: &'a mut HashMap<u64, Ledger>,
        ledger: u64,
        master_key: &[u8],
    ) -> Result<&'a mut Ledger, BookieError> {
        match ledgers.entry(ledger) {
            std::collections::hash_map::Entry::Occupied(e) => Ok(e.into_mut()),
            std::collections::hash_map::Entry::Vacant(v) => {
                let state = LedgerState {
                    master_key: master_key.to_vec(),
                    fenced: false,
                    deleted: false,
                };
                self.store.put_ledger_state(ledger, &state)?;
                Ok(v.insert(Ledger::new(master_key.to_vec(), false)))
            }
        }
    }

    pub fn set_read_only(&self, read_only: bool) {
        if self.read_only.swap(read_only, Ordering::Relaxed) != read_only {
            tracing::warn!(read_only, "bookie mode changed");
        }
    }

    pub fn is_read_only(&self) -> bool {
        self.read_only.load(Ordering::Relaxed)
    }

    pub fn ledger_count(&self) -> usize {
        self.lock().values().filter(|l| !l.deleted).count()
    }

    pub async fn add(&self, req: AddEntry) -> Result<AddTimings, BookieError> {
        let received = std::time::Instant::now();
        if req.entry < 0 {
            return Err(refuse(Refusal::Invalid, "entry id must not be negative"));
        }
        if req.payload.len() > self.max_entry_bytes {
            return Err(refuse(
                Refusal::Invalid,
                format!(
                    "entry of {} bytes exceeds the limit of {}",
                    req.payload.len(),
                    self.max_entry_bytes
                ),
            ));
        }
        if crc32c::crc32c(&req.payload) != req.crc32c {
            return Err(refuse(
                Refusal::BadChecksum,
                "payload does not match its CRC32C",
            ));
        }
        if self.is_read_only() && !req.recovery {
            return Err(refuse(
                Refusal::ReadOnly,
                "bookie is read-only (disk nearly full)",
            ));
        }
        self.check_writable(req.ledger, &req.master_key, req.recovery)?;
        let record = encode_add_record(
            req.ledger,
            req.entry as u64,
            req.crc32c,
            req.lac,
            &req.master_key,
            &req.payload,
        );
        // Held until the entry is in the store: no checkpoint passes it before.
        let held = self.journal.append_held(record).await?;
        let journaled = std::time::Instant::now();
        let journal = journaled - received;
        let queued = held.batch_started.saturating_duration_since(received);
        let resumed = journaled.saturating_duration_since(held.durable_at);
        let (ledger, entry, lac) = (req.ledger, req.entry as u64, req.lac);
        let mut ledgers = self.lock();
        let l = self.ensure_ledger(&mut ledgers, ledger, &req.master_key)?;
        if l.deleted || l.fenced && !req.recovery {
            // Fenced while this add was in the journal: it must not be acknowledged.
            return Err(refuse(
                Refusal::Fenced,
                format!("ledger {ledger} is fenced"),
            ));
        }
        self.store
            .put_entry_parts(ledger, entry, req.crc32c, lac, &req.payload)?;
        l.lac.send_if_modified(|v| raise(v, lac));
        Ok(AddTimings {
            journal,
            queued,
            resumed,
            store: journaled.elapsed(),
        })
    }

    fn check_writable(
        &self,
        ledger: u64,
        master_key: &[u8],
        recovery: bool,
    ) -> Result<(), BookieError> {
        let ledgers = self.lock();
        if let Some(l) = ledgers.get(&ledger) {
            if l.deleted {
                return Err(refuse(
                    Refusal::Fenced,
                    format!("ledger {ledger} was deleted"),
                ));
            }
            if l.master_key != master_key {
                return Err(refuse(
                    Refusal::Unauthorized,
                    format!("wrong master key for ledger {ledger}"),
                ));
            }
            if l.fenced && !recovery {
                return Err(refuse(
                    Refusal::Fenced,
                    format!("ledger {ledger} is fenced"),
                ));
            }
        }
        Ok(())
    }

    /// Fences the ledger: from now on normal adds are refused. Answers with the
    /// LAC and the last entry stored here, which recovery starts from.
    pub async fn fence(&self, ledger: u64, master_key: Vec<u8>) -> Result<(i64, i64), BookieError> {
        {
            let mut ledgers = self.lock();
            if let Some(l) = ledgers.get(&ledger) {
                if l.master_key != master_key {
                    return Err(refuse(
                        Refusal::Unauthorized,
                        format!("wrong master key for ledger {ledger}"),
                    ));
                }
            }
            let l = self.ensure_ledger(&mut ledgers, ledger, &master_key)?;
            if l.deleted {
                return Err(refuse(
                    Refusal::NoLedger,
                    format!("ledger {ledger} was deleted"),
                ));
            }
            l.fenced = true;
        }
        let record = JournalRecord::Fence {
            ledger,
            master_key: master_key.clone(),
        };
        let bytes =
            bincode::serialize(&record).map_err(|e| refuse(Refusal::Invalid, e.to_string()))?;
        let _held = self.journal.append_held(bytes).await?;
        self.store.put_ledger_state(
            ledger,
            &LedgerState {
                master_key,
                fenced: true,
                deleted: false,
            },
        )?;
        self.last_confirmed(ledger)
    }

    /// (LAC, last entry id) as known here; -1 for none.
    pub fn last_confirmed(&self, ledger: u64) -> Result<(i64, i64), BookieError> {
        let lac = self.lock().get(&ledger).map_or(-1, |l| *l.lac.borrow());
        let last = self.store.last_entry_id(ledger)?.map_or(-1, |e| e as i64);
        Ok((lac, last))
    }

    pub fn read(&self, ledger: u64, entry: i64) -> Result<(i64, StoredEntry), BookieError> {
        let id = if entry < 0 {
            match self.store.last_entry_id(ledger)? {
                Some(id) => id,
                None => return Err(self.missing(ledger, entry)),
            }
        } else {
            entry as u64
        };
        match self.store.get_entry(ledger, id)? {
            Some(e) => Ok((id as i64, e)),
            None => Err(self.missing(ledger, entry)),
        }
    }

    fn missing(&self, ledger: u64, entry: i64) -> BookieError {
        if self.lock().get(&ledger).is_some_and(|l| !l.deleted) {
            refuse(
                Refusal::NoEntry,
                format!("no entry {entry} of ledger {ledger}"),
            )
        } else {
            refuse(Refusal::NoLedger, format!("no ledger {ledger}"))
        }
    }

    /// Waits (up to `timeout`) until the ledger's LAC exceeds `previous`.
    pub async fn read_lac(
        &self,
        ledger: u64,
        previous: i64,
        timeout: Duration,
    ) -> Result<(i64, i64), BookieError> {
        let rx = self.lock().get(&ledger).map(|l| l.lac.subscribe());
        let Some(mut rx) = rx else {
            return Err(refuse(Refusal::NoLedger, format!("no ledger {ledger}")));
        };
        let _ = tokio::time::timeout(timeout, rx.wait_for(|v| *v > previous)).await;
        self.last_confirmed(ledger)
    }

    pub async fn delete(&self, ledger: u64) -> Result<(), BookieError> {
        let bytes = bincode::serialize(&JournalRecord::Delete { ledger })
            .map_err(|e| refuse(Refusal::Invalid, e.to_string()))?;
        let _held = self.journal.append_held(bytes).await?;
        self.deletions.fetch_add(1, Ordering::Relaxed);
        self.apply(JournalRecord::Delete { ledger })
    }

    /// Ledgers deleted since the last call.
    pub fn take_deletions(&self) -> u64 {
        self.deletions.swap(0, Ordering::Relaxed)
    }

    /// Flushes entry storage and lets the journal drop segments it no longer
    /// needs. The cut is the journal's applied position: every record before
    /// it is in the store (memtables), so flushing after reading it makes
    /// them durable there. Writes go on meanwhile; an earlier version held
    /// them back behind an exclusive lock until everything in flight had
    /// been applied and a marker record synced, which stalled every add for
    /// a journal round trip or two on each checkpoint (once a second at
    /// 300 MB/s, with 256 MiB segments).
    pub async fn checkpoint(&self) -> Result<usize, BookieError> {
        let pos = self.journal.applied_position();
        let (store, journal) = (self.store.clone(), self.journal.clone());
        // Both halves block on the disk (a memtable flush; renames and a
        // directory fsync), so neither runs on an async worker.
        tokio::task::spawn_blocking(move || -> Result<usize, BookieError> {
            store.checkpoint(pos)?;
            Ok(journal.checkpoint(pos)?)
        })
        .await
        .map_err(|e| BookieError::Store(StoreError::Corrupt(e.to_string())))?
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    pub fn store(&self) -> &EntryStore {
        &self.store
    }
}

fn raise(v: &mut i64, lac: i64) -> bool {
    if lac > *v {
        *v = lac;
        true
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::JournalConfig;

    /// The journal layout before byte fields went through `serde_bytes`.
    #[derive(Serialize, Deserialize)]
    enum PlainRecord {
        Add {
            ledger: u64,
            entry: u64,
            crc32c: u32,
            lac: i64,
            master_key: Vec<u8>,
            payload: Vec<u8>,
        },
        Fence {
            ledger: u64,
            master_key: Vec<u8>,
        },
    }

    #[test]
    fn add_records_are_encoded_as_bincode_would() {
        for (key, payload) in [(&b""[..], &b""[..]), (b"key", b"payload bytes")] {
            let expected = bincode::serialize(&JournalRecord::Add {
                ledger: u64::MAX - 3,
                entry: 9,
                crc32c: 0xdead_beef,
                lac: -1,
                master_key: key.to_vec(),
                payload: payload.to_vec(),
            })
            .unwrap();
            assert_eq!(
                encode_add_record(u64::MAX - 3, 9, 0xdead_beef, -1, key, payload),
                expected
            );
        }
    }

    #[test]
    fn journal_records_keep_their_on_disk_layout() {
        let new = bincode::serialize(&JournalRecord::Add {
            ledger: 7,
            entry: 9,
            crc32c: 0xdead_beef,
            lac: 8,
            master_key: b"key".to_vec(),
            payload: b"payload bytes".to_vec(),
        })
        .unwrap();
        let old = bincode::serialize(&PlainRecord::Add {
            ledger: 7,
            entry: 9,
            crc32c: 0xdead_beef,
            lac: 8,
            master_key: b"key".to_vec(),
            payload: b"payload bytes".to_vec(),
        })
        .unwrap();
        assert_eq!(new, old);
        let fence = bincode::serialize(&PlainRecord::Fence {
            ledger: 3,
            master_key: vec![1, 2],
        })
        .unwrap();
        match bincode::deserialize::<JournalRecord>(&fence).unwrap() {
            JournalRecord::Fence { ledger, master_key } => {
                assert_eq!((ledger, master_key), (3, vec![1, 2]));
            }
            other => panic!("decoded as {other:?}"),
        }
    }

    fn open(dir: &std::path::Path) -> Bookie {
        let store = EntryStore::open(&dir.join("index")).unwrap();
        let from = store.last_checkpoint().unwrap();
        let (journal, replay) =
            Journal::open(JournalConfig::new(dir.join("journal")), from).unwrap();
        Bookie::recover("b".into(), journal, replay, store, 1 << 20).unwrap()
    }

    fn add(ledger: u64, entry: i64, data: &[u8], key: &[u8], recovery: bool) -> AddEntry {
        AddEntry {
            ledger,
            entry,
            payload: bytes::Bytes::copy_from_slice(data),
            crc32c: crc32c::crc32c(data),
            lac: entry - 1,
            master_key: key.to_vec(),
            recovery,
        }
    }

    fn refusal<T: std::fmt::Debug>(r: Result<T, BookieError>) -> Refusal {
        match r {
            Err(BookieError::Refused(r, _)) => r,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn fencing_checksums_keys_and_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let b = open(dir.path());
        b.add(add(1, 0, b"a", b"k", false)).await.unwrap();
        assert_eq!(
            refusal(b.add(add(1, 1, b"b", b"other", false)).await),
            Refusal::Unauthorized
        );
        let mut bad = add(1, 1, b"b", b"k", false);
        bad.crc32c ^= 1;
        assert_eq!(refusal(b.add(bad).await), Refusal::BadChecksum);
        let (lac, last) = b.fence(1, b"k".to_vec()).await.unwrap();
        assert_eq!((lac, last), (-1, 0));
        assert_eq!(
            refusal(b.add(add(1, 1, b"b", b"k", false)).await),
            Refusal::Fenced
        );
        b.add(add(1, 1, b"b", b"k", true))
            .await
            .expect("recovery adds pass the fence");
        b.set_read_only(true);
        assert_eq!(
            refusal(b.add(add(2, 0, b"x", b"k", false)).await),
            Refusal::ReadOnly
        );
        assert_eq!(
            b.read(1, 1).unwrap().1.payload,
            b"b".to_vec(),
            "reads go on when read-only"
        );
        assert_eq!(b.read(1, -1).unwrap().0, 1, "-1 reads the last entry");
        assert!(matches!(
            b.read(9, 0),
            Err(BookieError::Refused(Refusal::NoLedger, _))
        ));
        assert!(matches!(
            b.read(1, 5),
            Err(BookieError::Refused(Refusal::NoEntry, _))
        ));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_deleted_ledger_refuses_late_adds_even_after_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let b = open(dir.path());
            b.add(add(4, 0, b"x", b"k", false)).await.unwrap();
            b.delete(4).await.unwrap();
            assert_eq!(b.ledger_count(), 0);
            let err = b.add(add(4, 1, b"late", b"k", false)).await.unwrap_err();
            assert!(
                matches!(err, BookieError::Refused(Refusal::Fenced, _)),
                "{err}"
            );
            // Also a ledger this bookie never held.
            b.delete(5).await.unwrap();
            assert!(b.add(add(5, 0, b"late", b"k", false)).await.is_err());
        }
        let b = open(dir.path());
        assert!(b.add(add(4, 1, b"late", b"k", false)).await.is_err());
        assert!(matches!(
            b.read(4, 0),
            Err(BookieError::Refused(Refusal::NoLedger, _))
        ));
    }

    #[tokio::test]
    async fn fence_and_entries_survive_restart_without_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        {
            let b = open(dir.path());
            for e in 0..10 {
                b.add(add(3, e, format!("e{e}").as_bytes(), b"k", false))
                    .await
                    .unwrap();
            }
            b.fence(3, b"k".to_vec()).await.unwrap();
            b.delete(4).await.unwrap();
            b.journal().close();
        }
        let b = open(dir.path());
        assert_eq!(b.read(3, 9).unwrap().1.payload, b"e9".to_vec());
        assert_eq!(
            refusal(b.add(add(3, 10, b"x", b"k", false)).await),
            Refusal::Fenced
        );
        // After a checkpoint the journal can go and the state is still there.
        b.checkpoint().await.unwrap();
        b.journal().close();
        drop(b);
        let b = open(dir.path());
        assert_eq!(b.read(3, 0).unwrap().1.payload, b"e0".to_vec());
        assert_eq!(
            refusal(b.add(add(3, 10, b"x", b"k", false)).await),
            Refusal::Fenced
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn lac_long_poll_wakes_on_a_higher_lac() {
        let dir = tempfile::tempdir().unwrap();
        let b = std::sync::Arc::new(open(dir.path()));
        b.add(add(5, 0, b"a", b"k", false)).await.unwrap();
        let waiter = {
            let b = b.clone();
            tokio::spawn(async move { b.read_lac(5, -1, Duration::from_secs(10)).await.unwrap() })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        b.add(add(5, 1, b"b", b"k", false)).await.unwrap(); // carries LAC 0
        let started = std::time::Instant::now();
        let (lac, last) = waiter.await.unwrap();
        assert_eq!((lac, last), (0, 1));
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}

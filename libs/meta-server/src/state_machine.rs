//! openraft's state-machine interface over the RocksDB keyspace, with snapshots.
//!
//! A snapshot is every pair of the state-machine column families, taken from a
//! RocksDB point-in-time snapshot. The latest one is kept in `snapshot.bin` so it
//! can be sent to a lagging follower after the log it covers has been purged.

use std::collections::{BTreeMap, HashSet};
use std::io::Cursor;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, RaftSnapshotBuilder, Snapshot};
use rocksdb::{IteratorMode, WriteBatch, WriteOptions, DB};
use serde::{Deserialize, Serialize};

use crate::kv::{self, Applier, Counters, HotKeys};
use crate::store::{cf, sm_read_err, sm_write_err, CF_SM_META, STATE_MACHINE_CFS};
use crate::types::{
    Command, CommandResult, LogId, Op, RequestId, SnapshotMeta, StorageError, StoredMembership,
    StoredValue, TypeConfig,
};
use crate::watch::WatchHub;

const KEY_APPLIED: &[u8] = b"applied";
/// While a batch entry is being applied: (log index, last command applied),
/// written with each of its commands but the last. The state machine is not
/// synced, so a machine crash can keep a prefix of an entry's commands; on
/// re-applying that entry they are skipped instead of applied twice. A
/// snapshot taken between two commands carries it too.
const KEY_APPLYING: &[u8] = b"applying";
const KEY_MEMBERSHIP: &[u8] = b"membership";

/// State shared between the state machine (writer) and the request handlers
/// (readers). Reads go straight to RocksDB; the atomics are for headers/metrics.
pub struct SmShared {
    pub db: Arc<DB>,
    pub watch: Arc<WatchHub>,
    pub revision: AtomicI64,
    pub kv_count: AtomicI64,
    pub lease_count: AtomicI64,
    pub snapshots_built: AtomicU64,
    pub snapshots_installed: AtomicU64,
    pub proposals: Arc<crate::proposer::ProposerStats>,
    /// Used by the state machine's apply only (one at a time).
    hot: std::sync::Mutex<HotKeys>,
}

impl SmShared {
    fn set_counters(&self, c: Counters) {
        self.revision.store(c.revision, Ordering::Release);
        self.kv_count.store(c.kv_count, Ordering::Relaxed);
        self.lease_count.store(c.lease_count, Ordering::Relaxed);
    }

    pub fn revision(&self) -> i64 {
        self.revision.load(Ordering::Acquire)
    }
}

fn applying(index: u64, sub: u32) -> [u8; 12] {
    let mut v = [0u8; 12];
    v[..8].copy_from_slice(&index.to_be_bytes());
    v[8..].copy_from_slice(&sub.to_be_bytes());
    v
}

/// Applies command `sub` of entry `index` into `batch`.
fn apply_command(
    db: &DB,
    hot: &HotKeys,
    batch: &mut WriteBatch,
    counters: Counters,
    index: u64,
    sub: usize,
    cmd: &Command,
) -> Result<kv::Applied, StorageError> {
    Applier::apply(db, hot, batch, counters, index, sub as u32, cmd).map_err(sm_write_err)
}

/// Writes `batch`, then records the keys it wrote in `hot`; a failed write
/// leaves the database in doubt, so `hot` starts over. Unsynced (RocksDB's
/// default): the log is the durable record (see `apply`).
fn commit(
    db: &DB,
    batch: WriteBatch,
    hot: &mut HotKeys,
    written: impl IntoIterator<Item = BTreeMap<Vec<u8>, Option<StoredValue>>>,
) -> Result<(), StorageError> {
    if let Err(e) = db.write(batch) {
        hot.clear();
        return Err(sm_write_err(e));
    }
    for w in written {
        hot.committed(w);
    }
    Ok(())
}

/// True when no command of a batch entry can read what another one writes:
/// all are transactions of single-key operations, no two name the same key
/// (in a compare or in either branch) or the same request id (a retry
/// batched with its original must find the original's answer), and no
/// `Forget` covers a request of the entry. Leases are only read then, never
/// granted or revoked. Such an entry applies as one write; any other
/// command by command.
fn independent(cmds: &[Command]) -> bool {
    let mut keys: HashSet<&[u8]> = HashSet::new();
    let mut ids = HashSet::new();
    let mut forgets = Vec::new();
    for cmd in cmds {
        if let Command::Forget {
            client_id,
            from,
            below,
        } = cmd
        {
            forgets.push((*client_id, *from..*below));
            continue;
        }
        let Command::Txn {
            request_id,
            compares,
            success,
            failure,
        } = cmd
        else {
            return false;
        };
        if request_id.is_some_and(|id| !ids.insert(id)) {
            return false;
        }
        // A key twice in one command is that command's business (its own
        // overlay); only keys shared between commands matter.
        let mut own: HashSet<&[u8]> = HashSet::new();
        for c in compares {
            own.insert(&c.key);
        }
        for op in success.iter().chain(failure) {
            match op {
                Op::Put { key, .. } => own.insert(key),
                Op::Delete { prefix: true, .. } => return false,
                Op::Delete { key, .. } => own.insert(key),
            };
        }
        for key in own {
            if !keys.insert(key) {
                return false;
            }
        }
    }
    !ids.iter().any(|id: &RequestId| {
        forgets
            .iter()
            .any(|(client, seqs)| *client == id.client_id && seqs.contains(&id.seq))
    })
}

#[derive(Clone)]
pub struct StateMachineStore {
    shared: Arc<SmShared>,
    snapshot_path: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

/// The snapshot payload: (column family, key, value) for every state-machine pair.
type SnapshotPairs = Vec<(String, Vec<u8>, Vec<u8>)>;

impl StateMachineStore {
    pub fn open(
        db: Arc<DB>,
        snapshot_path: PathBuf,
        max_watch_events: usize,
        max_watch_bytes: usize,
        max_watchers: usize,
    ) -> Result<Self, crate::kv::KvError> {
        let counters = Counters::load(&db)?;
        let watch = WatchHub::new(
            counters.revision,
            max_watch_events,
            max_watch_bytes,
            max_watchers,
        );
        let shared = Arc::new(SmShared {
            db,
            watch,
            revision: AtomicI64::new(0),
            kv_count: AtomicI64::new(0),
            lease_count: AtomicI64::new(0),
            snapshots_built: AtomicU64::new(0),
            snapshots_installed: AtomicU64::new(0),
            proposals: Default::default(),
            hot: Default::default(),
        });
        shared.set_counters(counters);
        Ok(Self {
            shared,
            snapshot_path,
        })
    }

    pub fn shared(&self) -> Arc<SmShared> {
        self.shared.clone()
    }

    fn db(&self) -> &DB {
        &self.shared.db
    }

    fn read_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
    ) -> Result<Option<T>, StorageError> {
        let raw = self
            .db()
            .get_cf(cf(self.db(), CF_SM_META), key)
            .map_err(sm_read_err)?;
        raw.map(|b| bincode::deserialize(&b).map_err(sm_read_err))
            .transpose()
    }

    /// The commands of the batch entry at `index` applied before a restart:
    /// through this sub-command index.
    fn applied_prefix(&self, index: u64) -> Result<Option<u32>, StorageError> {
        let raw = self
            .db()
            .get_cf(cf(self.db(), CF_SM_META), KEY_APPLYING)
            .map_err(sm_read_err)?;
        Ok(raw.and_then(|b| {
            let (at, sub) = b.split_at_checked(8)?;
            let at = u64::from_be_bytes(at.try_into().ok()?);
            let sub = u32::from_be_bytes(sub.try_into().ok()?);
            (at == index).then_some(sub)
        }))
    }

    /// Applies a batch entry whose commands are `independent` in one write:
    /// no command can read what another writes, so their order inside the
    /// write batch changes nothing, and a crash keeps all of them or none.
    fn apply_batch_at_once(
        &self,
        log_id: LogId,
        applied_key: &[u8],
        cmds: &[Command],
        counters: &mut Counters,
        hot: &mut HotKeys,
    ) -> Result<CommandResult, StorageError> {
        let db = self.db();
        let mut batch = WriteBatch::default();
        kv::expire_requests(db, log_id.index, &mut batch).map_err(sm_write_err)?;
        let mut answers = Vec::with_capacity(cmds.len());
        let mut events = Vec::new();
        let mut written = Vec::with_capacity(cmds.len());
        for (sub, cmd) in cmds.iter().enumerate() {
            let applied = apply_command(db, hot, &mut batch, *counters, log_id.index, sub, cmd)?;
            *counters = applied.counters;
            events.extend(applied.events);
            answers.push(applied.result);
            written.push(applied.written);
        }
        counters.store(db, &mut batch);
        batch.put_cf(cf(db, CF_SM_META), KEY_APPLIED, applied_key);
        commit(db, batch, hot, written)?;
        self.shared.set_counters(*counters);
        self.shared.watch.publish(events);
        Ok(CommandResult::Batch(answers))
    }

    /// Applies a batch entry command by command, each in a write of its own
    /// (with the applied id only on the last), exactly as if proposed
    /// separately; the commands through `done` were applied before a crash.
    fn apply_batch_one_by_one(
        &self,
        log_id: LogId,
        applied_key: &[u8],
        cmds: &[Command],
        done: Option<u32>,
        counters: &mut Counters,
        hot: &mut HotKeys,
    ) -> Result<CommandResult, StorageError> {
        let db = self.db();
        let meta_cf = cf(db, CF_SM_META);
        let mut answers = Vec::with_capacity(cmds.len());
        let n = cmds.len();
        for (sub, cmd) in cmds.iter().enumerate() {
            if done.is_some_and(|d| sub as u32 <= d) {
                // Applied before a crash; nobody waits for this answer.
                answers.push(CommandResult::Rejected {
                    revision: counters.revision,
                    reason: "applied before a restart".into(),
                });
                continue;
            }
            let mut batch = WriteBatch::default();
            let applied = apply_command(db, hot, &mut batch, *counters, log_id.index, sub, cmd)?;
            applied.counters.store(db, &mut batch);
            if sub == 0 {
                kv::expire_requests(db, log_id.index, &mut batch).map_err(sm_write_err)?;
            }
            if sub + 1 == n {
                batch.put_cf(meta_cf, KEY_APPLIED, applied_key);
                batch.delete_cf(meta_cf, KEY_APPLYING);
            } else {
                batch.put_cf(meta_cf, KEY_APPLYING, applying(log_id.index, sub as u32));
            }
            commit(db, batch, hot, [applied.written])?;
            *counters = applied.counters;
            self.shared.set_counters(*counters);
            self.shared.watch.publish(applied.events);
            answers.push(applied.result);
        }
        if n == 0 {
            let mut batch = WriteBatch::default();
            kv::expire_requests(db, log_id.index, &mut batch).map_err(sm_write_err)?;
            batch.put_cf(meta_cf, KEY_APPLIED, applied_key);
            commit(db, batch, hot, [])?;
        }
        Ok(CommandResult::Batch(answers))
    }

    async fn save_snapshot_file(&self, file: &SnapshotFile) -> Result<(), StorageError> {
        let bytes = bincode::serialize(file).map_err(sm_write_err)?;
        let path = self.snapshot_path.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::io::Write;
            let tmp = path.with_extension("tmp");
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            if let Some(dir) = path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        })
        .await
        .map_err(sm_write_err)?
        .map_err(sm_write_err)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let db = self.shared.db.clone();
        let (applied, membership, data) = tokio::task::spawn_blocking(move || {
            // The state machine writes without fsync (the log is the durable
            // record). Before openraft may purge the log behind this snapshot,
            // make everything applied so far durable.
            db.flush_wal(true).map_err(sm_write_err)?;
            let snap = db.snapshot();
            let meta_cf = cf(&db, CF_SM_META);
            let decode = |k: &[u8]| -> Result<Option<Vec<u8>>, StorageError> {
                snap.get_cf(meta_cf, k).map_err(sm_read_err)
            };
            let applied: Option<LogId> = decode(KEY_APPLIED)?
                .map(|b| bincode::deserialize(&b))
                .transpose()
                .map_err(sm_read_err)?;
            let membership: StoredMembership = decode(KEY_MEMBERSHIP)?
                .map(|b| bincode::deserialize(&b))
                .transpose()
                .map_err(sm_read_err)?
                .unwrap_or_default();
            let mut pairs: SnapshotPairs = Vec::new();
            for name in STATE_MACHINE_CFS {
                for item in snap.iterator_cf(cf(&db, name), IteratorMode::Start) {
                    let (k, v) = item.map_err(sm_read_err)?;
                    pairs.push((name.to_string(), k.to_vec(), v.to_vec()));
                }
            }
            let data = bincode::serialize(&pairs).map_err(sm_write_err)?;
            Ok::<_, StorageError>((applied, membership, data))
        })
        .await
        .map_err(sm_write_err)??;

        let snapshot_id = format!(
            "{}-{}-{}",
            applied.map_or(0, |l| l.leader_id.term),
            applied.map_or(0, |l| l.index),
            self.shared.snapshots_built.fetch_add(1, Ordering::Relaxed)
        );
        let meta = SnapshotMeta {
            last_log_id: applied,
            last_membership: membership,
            snapshot_id,
        };
        let file = SnapshotFile { meta, data };
        self.save_snapshot_file(&file).await?;
        tracing::info!(snapshot = %file.meta.snapshot_id, bytes = file.data.len(), "built snapshot");
        Ok(Snapshot {
            meta: file.meta,
            snapshot: Box::new(Cursor::new(file.data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((
            self.read_meta(KEY_APPLIED)?,
            self.read_meta(KEY_MEMBERSHIP)?.unwrap_or_default(),
        ))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError>
    where
        I: IntoIterator<Item = openraft::Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let db = self.shared.db.clone();
        let meta_cf = cf(&db, CF_SM_META);
        let mut counters = Counters {
            revision: self.shared.revision(),
            kv_count: self.shared.kv_count.load(Ordering::Relaxed),
            lease_count: self.shared.lease_count.load(Ordering::Relaxed),
        };
        let mut results = Vec::new();
        let mut hot = self.shared.hot.lock().unwrap_or_else(|e| e.into_inner());
        // Each entry is its own atomic batch (state + applied log id). These writes
        // are unsynced memtable appends and buffered WAL records of a few
        // microseconds, done inline; the WAL goes to the file once, at the end.
        for entry in entries {
            let log_id = entry.log_id;
            let applied_key = bincode::serialize(&log_id).map_err(sm_write_err)?;
            let result = match entry.payload {
                EntryPayload::Normal(Command::Batch(cmds)) => {
                    match self.applied_prefix(log_id.index)? {
                        None if independent(&cmds) => self.apply_batch_at_once(
                            log_id,
                            &applied_key,
                            &cmds,
                            &mut counters,
                            &mut hot,
                        )?,
                        done => self.apply_batch_one_by_one(
                            log_id,
                            &applied_key,
                            &cmds,
                            done,
                            &mut counters,
                            &mut hot,
                        )?,
                    }
                }
                payload => {
                    let (mut batch, result, events, written) = match &payload {
                        EntryPayload::Normal(cmd) => {
                            let mut batch = WriteBatch::default();
                            let applied = apply_command(
                                &db,
                                &hot,
                                &mut batch,
                                counters,
                                log_id.index,
                                0,
                                cmd,
                            )?;
                            counters = applied.counters;
                            counters.store(&db, &mut batch);
                            (batch, applied.result, applied.events, applied.written)
                        }
                        EntryPayload::Membership(m) => {
                            let stored = StoredMembership::new(Some(log_id), m.clone());
                            let mut batch = WriteBatch::default();
                            batch.put_cf(
                                meta_cf,
                                KEY_MEMBERSHIP,
                                bincode::serialize(&stored).map_err(sm_write_err)?,
                            );
                            (batch, CommandResult::None, Vec::new(), BTreeMap::new())
                        }
                        EntryPayload::Blank => (
                            WriteBatch::default(),
                            CommandResult::None,
                            Vec::new(),
                            BTreeMap::new(),
                        ),
                    };
                    kv::expire_requests(&db, log_id.index, &mut batch).map_err(sm_write_err)?;
                    batch.put_cf(meta_cf, KEY_APPLIED, &applied_key);
                    commit(&db, batch, &mut hot, [written])?;
                    self.shared.set_counters(counters);
                    self.shared.watch.publish(events);
                    result
                }
            };
            results.push(result);
        }
        // The state machine's WAL is flushed by hand (see `store`): hand every
        // write above to the OS before anyone is answered.
        db.flush_wal(false).map_err(sm_write_err)?;
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let pairs: SnapshotPairs = bincode::deserialize(&data).map_err(sm_read_err)?;
        // The keyspace is replaced below: nothing remembered of it holds.
        self.shared
            .hot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        let db = self.shared.db.clone();
        let meta_owned = meta.clone();
        let counters = tokio::task::spawn_blocking(move || {
            let mut batch = WriteBatch::default();
            for name in STATE_MACHINE_CFS {
                let handle = cf(&db, name);
                for item in db.iterator_cf(handle, IteratorMode::Start) {
                    let (k, _) = item.map_err(sm_read_err)?;
                    batch.delete_cf(handle, k);
                }
            }
            for (name, k, v) in &pairs {
                if !STATE_MACHINE_CFS.contains(&name.as_str()) {
                    return Err(sm_read_err(std::io::Error::other(format!(
                        "snapshot names unknown column family {name}"
                    ))));
                }
                batch.put_cf(cf(&db, name), k, v);
            }
            let meta_cf = cf(&db, CF_SM_META);
            // Stored as a bare LogId (absent = nothing applied), as `apply` writes it.
            match &meta_owned.last_log_id {
                Some(log_id) => batch.put_cf(
                    meta_cf,
                    KEY_APPLIED,
                    bincode::serialize(log_id).map_err(sm_write_err)?,
                ),
                None => batch.delete_cf(meta_cf, KEY_APPLIED),
            }
            batch.put_cf(
                meta_cf,
                KEY_MEMBERSHIP,
                bincode::serialize(&meta_owned.last_membership).map_err(sm_write_err)?,
            );
            let mut opts = WriteOptions::default();
            opts.set_sync(true);
            db.write_opt(batch, &opts).map_err(sm_write_err)?;
            Counters::load(&db).map_err(sm_read_err)
        })
        .await
        .map_err(sm_write_err)??;
        self.shared.set_counters(counters);
        self.shared.watch.reset(counters.revision);
        self.shared
            .snapshots_installed
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!(snapshot = %meta.snapshot_id, revision = counters.revision, "installed snapshot");
        self.save_snapshot_file(&SnapshotFile {
            meta: meta.clone(),
            data,
        })
        .await
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let path = self.snapshot_path.clone();
        let bytes = match tokio::fs::read(&path).await {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(sm_read_err(e)),
        };
        let file: SnapshotFile = bincode::deserialize(&bytes).map_err(sm_read_err)?;
        Ok(Some(Snapshot {
            meta: file.meta,
            snapshot: Box::new(Cursor::new(file.data)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Op;
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

    fn entry(index: u64, key: &str) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(3, 1), index),
            payload: EntryPayload::Normal(put(key)),
        }
    }

    fn put(key: &str) -> Command {
        Command::Txn {
            request_id: None,
            compares: vec![],
            success: vec![Op::Put {
                key: key.into(),
                value: b"v".to_vec(),
                lease: 0,
            }],
            failure: vec![],
        }
    }

    #[tokio::test]
    async fn a_batch_cut_short_by_a_crash_is_not_applied_twice() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = open(dir.path());
        sm.apply(vec![entry(1, "k")]).await.unwrap();
        // What an unsynced state machine can keep of entry 2 = [put a, put b]
        // after a machine crash: the first command and its progress marker,
        // exactly as `apply` writes them, and not the applied id.
        {
            let db = sm.shared().db.clone();
            let counters = crate::kv::Counters::load(&db).unwrap();
            let mut batch = WriteBatch::default();
            let applied = Applier::apply(
                &db,
                &HotKeys::default(),
                &mut batch,
                counters,
                2,
                0,
                &put("a"),
            )
            .unwrap();
            applied.counters.store(&db, &mut batch);
            batch.put_cf(cf(&db, CF_SM_META), KEY_APPLYING, applying(2, 0));
            db.write(batch).unwrap();
            db.flush_wal(false).unwrap();
        }
        drop(sm);
        let mut sm = open(dir.path());
        let batch = Entry {
            log_id: LogId::new(CommittedLeaderId::new(3, 1), 2),
            payload: EntryPayload::Normal(Command::Batch(vec![put("a"), put("b")])),
        };
        let results = sm.apply(vec![batch]).await.unwrap();
        let CommandResult::Batch(answers) = &results[0] else {
            panic!("not a batch answer: {results:?}");
        };
        assert!(matches!(answers[0], CommandResult::Rejected { .. }));
        assert!(matches!(
            answers[1],
            CommandResult::Txn {
                succeeded: true,
                ..
            }
        ));
        let db = &sm.shared().db;
        assert_eq!(crate::kv::get(&**db, b"a").unwrap().unwrap().version, 1);
        assert_eq!(crate::kv::get(&**db, b"b").unwrap().unwrap().version, 1);
        assert_eq!(sm.shared().revision(), 3);
        assert!(sm.applied_prefix(2).unwrap().is_none());
    }

    fn txn(id: Option<u64>, compares: &[(&str, i64)], ops: Vec<Op>) -> Command {
        Command::Txn {
            request_id: id.map(|seq| crate::types::RequestId { client_id: 7, seq }),
            compares: compares
                .iter()
                .map(|(k, v)| crate::types::Compare {
                    key: k.as_bytes().to_vec(),
                    op: crate::types::CompareOp::Equal,
                    version: *v,
                })
                .collect(),
            success: ops,
            failure: vec![],
        }
    }

    fn put_op(key: &str) -> Op {
        Op::Put {
            key: key.into(),
            value: key.as_bytes().to_vec(),
            lease: 0,
        }
    }

    fn delete_op(key: &str, prefix: bool) -> Op {
        Op::Delete {
            key: key.into(),
            prefix,
        }
    }

    #[test]
    fn only_batches_whose_commands_share_nothing_are_independent() {
        let a = || txn(Some(1), &[("a", 0)], vec![put_op("a")]);
        let b = || txn(Some(2), &[], vec![put_op("b"), delete_op("c", false)]);
        assert!(independent(&[a(), b()]));
        assert!(independent(&[]));
        // One command may name its own key twice.
        assert!(independent(&[txn(
            None,
            &[("x", 1)],
            vec![put_op("x"), put_op("x")]
        )]));
        // A key shared by two commands, even only compared by one of them.
        assert!(!independent(&[
            a(),
            txn(Some(3), &[("a", 1)], vec![put_op("z")])
        ]));
        assert!(!independent(&[
            b(),
            txn(Some(3), &[], vec![delete_op("c", false)])
        ]));
        // A retry batched with its original.
        assert!(!independent(&[a(), txn(Some(1), &[], vec![put_op("q")])]));
        // Prefix deletes and lease commands read more than their keys.
        assert!(!independent(&[
            a(),
            txn(Some(4), &[], vec![delete_op("p", true)])
        ]));
        let grant = Command::LeaseGrant {
            request_id: None,
            lease_id: 5,
            ttl_seconds: 10,
        };
        assert!(!independent(&[a(), grant]));
        // Forgetting other requests of the client is independent; forgetting
        // one batched with it is not.
        let forget = |from, below| Command::Forget {
            client_id: 7,
            from,
            below,
        };
        assert!(independent(&[a(), b(), forget(3, 300)]));
        assert!(!independent(&[a(), b(), forget(0, 2)]));
    }

    /// A `Forget` drops exactly the client's answers in its range, with
    /// their index entries; a retry of a later request still gets its
    /// first answer, and one of a forgotten request is applied anew.
    #[tokio::test]
    async fn forgotten_answers_are_gone_and_the_rest_still_answer_retries() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = open(dir.path());
        let cas = |seq: u64| txn(Some(seq), &[], vec![put_op(&format!("k{seq}"))]);
        let entries = (1..=6u64)
            .map(|seq| Entry {
                log_id: LogId::new(CommittedLeaderId::new(3, 1), seq),
                payload: EntryPayload::Normal(cas(seq)),
            })
            .collect::<Vec<_>>();
        let first = sm.apply(entries).await.unwrap();
        let other_client = Command::Txn {
            request_id: Some(crate::types::RequestId {
                client_id: 8,
                seq: 2,
            }),
            compares: vec![],
            success: vec![put_op("z")],
            failure: vec![],
        };
        let batch = Command::Batch(vec![
            other_client,
            Command::Forget {
                client_id: 7,
                from: 1,
                below: 5,
            },
        ]);
        sm.apply(vec![Entry {
            log_id: LogId::new(CommittedLeaderId::new(3, 1), 7),
            payload: EntryPayload::Normal(batch),
        }])
        .await
        .unwrap();
        let db = sm.shared().db.clone();
        let remembered = |c: &str| -> Vec<Vec<u8>> {
            db.iterator_cf(cf(&db, c), IteratorMode::Start)
                .map(|kv| kv.unwrap().0.to_vec())
                .collect()
        };
        let id = |client: u64, seq: u64| {
            let mut k = client.to_be_bytes().to_vec();
            k.extend_from_slice(&seq.to_be_bytes());
            k
        };
        assert_eq!(
            remembered(crate::store::CF_DEDUP),
            vec![id(7, 5), id(7, 6), id(8, 2)]
        );
        // One index entry per remembered answer: entries 5, 6 and 7.
        let indexes: Vec<u64> = remembered(crate::store::CF_DEDUP_INDEX)
            .iter()
            .map(|k| u64::from_be_bytes(k[..8].try_into().unwrap()))
            .collect();
        assert_eq!(indexes, vec![5, 6, 7]);
        // A retry of seq 6 gets its first answer and changes nothing.
        let revision = sm.shared().revision();
        let retried = sm
            .apply(vec![Entry {
                log_id: LogId::new(CommittedLeaderId::new(3, 1), 8),
                payload: EntryPayload::Normal(cas(6)),
            }])
            .await
            .unwrap();
        assert_eq!(retried[0], first[5]);
        assert_eq!(sm.shared().revision(), revision);
        // A forgotten one is a new write (the client promised not to send it).
        sm.apply(vec![Entry {
            log_id: LogId::new(CommittedLeaderId::new(3, 1), 9),
            payload: EntryPayload::Normal(cas(2)),
        }])
        .await
        .unwrap();
        assert_eq!(sm.shared().revision(), revision + 1);
    }

    /// An independent batch applied as one write answers and leaves exactly
    /// what its commands applied one entry each do.
    #[tokio::test]
    async fn a_batch_in_one_write_equals_its_commands_one_by_one() {
        let cmds = vec![
            txn(Some(1), &[("a", 0)], vec![put_op("a")]),
            txn(Some(2), &[], vec![put_op("b"), delete_op("gone", false)]),
            txn(Some(3), &[("c", 5)], vec![put_op("d")]),
            txn(None, &[("e", 1)], vec![put_op("e")]),
            txn(Some(4), &[("pre", 1)], vec![delete_op("pre", false)]),
        ];
        assert!(independent(&cmds));
        let (one, apart) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (mut grouped, mut single) = (open(one.path()), open(apart.path()));
        // Both start with "pre" at version 1 and "e" at version 1.
        for sm in [&mut grouped, &mut single] {
            sm.apply(vec![entry(1, "pre"), entry(2, "e")])
                .await
                .unwrap();
        }
        let results = grouped
            .apply(vec![Entry {
                log_id: LogId::new(CommittedLeaderId::new(3, 1), 3),
                payload: EntryPayload::Normal(Command::Batch(cmds.clone())),
            }])
            .await
            .unwrap();
        let CommandResult::Batch(answers) = &results[0] else {
            panic!("not a batch answer: {results:?}");
        };
        let mut expected = Vec::new();
        for (i, cmd) in cmds.into_iter().enumerate() {
            let r = single
                .apply(vec![Entry {
                    log_id: LogId::new(CommittedLeaderId::new(3, 1), 3 + i as u64),
                    payload: EntryPayload::Normal(cmd),
                }])
                .await
                .unwrap();
            expected.extend(r);
        }
        assert_eq!(answers, &expected);
        assert_eq!(grouped.shared().revision(), single.shared().revision());
        let dump = |sm: &StateMachineStore| {
            let db = &sm.shared().db;
            crate::kv::scan(&**db, b"", &[], usize::MAX, false).unwrap()
        };
        assert_eq!(dump(&grouped), dump(&single));
        assert_eq!(
            grouped.shared().kv_count.load(Ordering::Relaxed),
            single.shared().kv_count.load(Ordering::Relaxed)
        );
    }

    fn open(dir: &std::path::Path) -> StateMachineStore {
        let db = crate::store::open_state_machine(&dir.join("db")).unwrap();
        StateMachineStore::open(db, dir.join("snapshot.bin"), 100, 1 << 20, 10).unwrap()
    }

    #[tokio::test]
    async fn applied_state_and_snapshots_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = open(dir.path());
        assert_eq!(sm.applied_state().await.unwrap().0, None);
        sm.apply(vec![entry(1, "a"), entry(2, "b")]).await.unwrap();
        let snap = sm.build_snapshot().await.unwrap();
        assert_eq!(snap.meta.last_log_id.map(|l| l.index), Some(2));
        drop(sm);

        let mut sm = open(dir.path());
        let (applied, _) = sm.applied_state().await.unwrap();
        assert_eq!(applied, Some(LogId::new(CommittedLeaderId::new(3, 1), 2)));
        assert_eq!(sm.shared().revision(), 2);
        let current = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta.snapshot_id, snap.meta.snapshot_id);

        // Installing that snapshot on an empty node reproduces the state.
        let other = tempfile::tempdir().unwrap();
        let mut sm2 = open(other.path());
        sm2.apply(vec![entry(1, "stale")]).await.unwrap();
        sm2.install_snapshot(&current.meta, current.snapshot)
            .await
            .unwrap();
        assert_eq!(sm2.applied_state().await.unwrap().0, applied);
        let db = &sm2.shared().db;
        assert!(crate::kv::get(&**db, b"stale").unwrap().is_none());
        assert!(crate::kv::get(&**db, b"b").unwrap().is_some());
        assert_eq!(sm2.shared().kv_count.load(Ordering::Relaxed), 2);
    }
}

//! A cursor: one subscription's place in a managed ledger.
//!
//! State: the mark-delete position (everything at or before it is acked), the
//! individually acked positions above it, batch-index acks of partly acked
//! batch entries, and the read position (next entry to dispatch).
//!
//! Persistence: the state is written as one snapshot entry to the cursor's own
//! ledger on the bookies; the metadata service holds only the pointer to that
//! ledger. Acks between two writes are coalesced (at most one write per
//! `cursor_persist_interval`, and never two in flight), so a busy subscription
//! costs one small bookie write per interval, not one per ack, and the
//! metadata service sees a write only when the cursor ledger is replaced.
//! A new owner recovers (fences) the cursor ledger, reads its last snapshot,
//! and bumps the pointer key's version so the old owner's next pointer update
//! fails.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use magnetar_ledger::{LedgerError, LedgerWriter};
use tokio::sync::watch;

use crate::ack_set::IndividualAcks;
use crate::codec::{Reader, Writer};
use crate::entry::Entry;
use crate::error::{MlError, Result};
use crate::info::{self, CursorInfo, Stored};
use crate::managed_ledger::{now_ms, ManagedLedger};
use crate::position::{LedgerList, Position};
use crate::stats::CursorStats;

/// Where a new cursor starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitialPosition {
    /// Before the oldest stored entry.
    Earliest,
    /// After the last confirmed entry.
    Latest,
    /// At this position (it is the first one read).
    At(Position),
}

/// Acked indexes of one batch entry.
#[derive(Clone, Debug, PartialEq, Eq)]
struct BatchAcks {
    size: u32,
    acked: Vec<u64>,
}

impl BatchAcks {
    fn new(size: u32) -> Self {
        Self {
            size,
            acked: vec![0; (size as usize).div_ceil(64)],
        }
    }

    fn complete(&self) -> bool {
        self.acked.iter().map(|w| w.count_ones()).sum::<u32>() >= self.size
    }
}

/// The persisted part of a cursor's state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Snapshot {
    mark_delete: Position,
    acks: IndividualAcks,
    batch_acks: BTreeMap<Position, BatchAcks>,
}

const SNAPSHOT_FORMAT: u8 = 1;
/// Bounds entry ids a snapshot may name (ledgers roll over long before).
const MAX_ENTRY_ID: i64 = 1 << 32;
const MAX_BATCH: u32 = 1 << 20;

impl Snapshot {
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(SNAPSHOT_FORMAT);
        w.u64(self.mark_delete.ledger_id);
        w.i64(self.mark_delete.entry_id);
        self.acks.encode(&mut w);
        w.varint(self.batch_acks.len() as u64);
        for (p, b) in &self.batch_acks {
            w.u64(p.ledger_id);
            w.i64(p.entry_id);
            w.varint(u64::from(b.size));
            for word in &b.acked {
                w.u64(*word);
            }
        }
        w.into_vec()
    }

    fn decode(raw: &[u8]) -> std::result::Result<Self, String> {
        let mut r = Reader::new(raw);
        let format = r.u8()?;
        if format != SNAPSHOT_FORMAT {
            return Err(format!("unknown cursor snapshot format {format}"));
        }
        let mark_delete = Position::new(r.u64()?, r.i64()?);
        let acks = IndividualAcks::decode(&mut r, MAX_ENTRY_ID)?;
        let n = r.varint()?;
        let mut batch_acks = BTreeMap::new();
        for _ in 0..n {
            let p = Position::new(r.u64()?, r.i64()?);
            let size = u32::try_from(r.varint()?).map_err(|_| "batch size overflows")?;
            if size > MAX_BATCH {
                return Err(format!("batch of {size} messages is beyond the limit"));
            }
            let mut b = BatchAcks::new(size);
            for word in b.acked.iter_mut() {
                *word = r.u64()?;
            }
            batch_acks.insert(p, b);
        }
        if !r.is_empty() {
            return Err("trailing bytes after cursor snapshot".into());
        }
        Ok(Self {
            mark_delete,
            acks,
            batch_acks,
        })
    }
}

struct State {
    snap: Snapshot,
    read_position: Position,
    info: CursorInfo,
    info_version: i64,
    /// The cursor ledger this owner writes (created on the first write).
    ledger: Option<LedgerWriter>,
    ledger_entries: i64,
    dirty_seq: u64,
    persisting: bool,
    last_persist: Option<Instant>,
    closed: bool,
    fenced: bool,
    snapshots_written: u64,
    snapshot_bytes_written: u64,
}

struct Inner {
    ml: ManagedLedger,
    name: String,
    key: String,
    state: Mutex<State>,
    /// (last persisted sequence, fenced or closed): wakes `flush`.
    persisted: watch::Sender<(u64, bool)>,
}

/// A subscription's cursor; cheap to clone.
#[derive(Clone)]
pub struct ManagedCursor {
    inner: Arc<Inner>,
}

impl ManagedCursor {
    fn from_parts(
        ml: ManagedLedger,
        name: &str,
        snap: Snapshot,
        info: CursorInfo,
        info_version: i64,
    ) -> Self {
        let read_position = ml.inner.with_list(|l| l.next_valid(snap.mark_delete));
        Self {
            inner: Arc::new(Inner {
                key: info::cursor_key(ml.name(), name),
                ml,
                name: name.to_string(),
                state: Mutex::new(State {
                    snap,
                    read_position,
                    info,
                    info_version,
                    ledger: None,
                    ledger_entries: 0,
                    dirty_seq: 0,
                    persisting: false,
                    last_persist: None,
                    closed: false,
                    fenced: false,
                    snapshots_written: 0,
                    snapshot_bytes_written: 0,
                }),
                persisted: watch::channel((0, false)).0,
            }),
        }
    }

    pub(crate) async fn create(
        ml: ManagedLedger,
        name: &str,
        initial: InitialPosition,
    ) -> Result<Self> {
        info::validate_name(name)?;
        let key = info::cursor_key(ml.name(), name);
        let mark_delete = ml.inner.with_list(|l| match initial {
            InitialPosition::Earliest => l.before_first(),
            InitialPosition::Latest => l.last_confirmed(),
            InitialPosition::At(p) => l.previous(p).min(l.last_confirmed()),
        });
        let info = CursorInfo {
            cursor_ledger: None,
            mark_delete,
            created_ms: now_ms(),
            owner_epoch: 1,
            properties: Default::default(),
        };
        match info::store(&ml.inner.meta, &key, &info, 0).await? {
            Stored::Ok(v) => {
                let snap = Snapshot {
                    mark_delete,
                    ..Default::default()
                };
                Ok(Self::from_parts(ml, name, snap, info, v))
            }
            // It exists already (stored state wins over `initial`).
            Stored::Conflict => Self::recover(ml, name).await,
        }
    }

    /// Opens an existing cursor as its new owner.
    pub(crate) async fn recover(ml: ManagedLedger, name: &str) -> Result<Self> {
        let key = info::cursor_key(ml.name(), name);
        for _ in 0..10 {
            let Some((mut info, version)) = info::load::<CursorInfo>(&ml.inner.meta, &key).await?
            else {
                return Err(MlError::NoSuchCursor {
                    ledger: ml.name().to_string(),
                    cursor: name.to_string(),
                });
            };
            let mut snap = Snapshot {
                mark_delete: info.mark_delete,
                ..Default::default()
            };
            if let Some(id) = info.cursor_ledger {
                if let Some(s) = read_last_snapshot(&ml, id).await? {
                    snap = s;
                }
            }
            info.owner_epoch += 1;
            match info::store(&ml.inner.meta, &key, &info, version).await? {
                Stored::Ok(v) => return Ok(Self::from_parts(ml, name, snap, info, v)),
                Stored::Conflict => continue,
            }
        }
        Err(MlError::Fenced(format!("{}/{name}", ml.name())))
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn list(&self) -> LedgerList {
        self.inner.ml.inner.list()
    }

    fn check_open(&self, s: &State) -> Result<()> {
        if s.closed || s.fenced {
            return Err(MlError::CursorClosed {
                ledger: self.inner.ml.name().to_string(),
                cursor: self.inner.name.clone(),
            });
        }
        Ok(())
    }

    pub fn mark_delete_position(&self) -> Position {
        self.lock().snap.mark_delete
    }

    pub fn read_position(&self) -> Position {
        self.lock().read_position
    }

    /// Reads up to `max` entries from the read position, skipping acked ones,
    /// and moves the read position past them.
    pub async fn read_entries(&self, max: usize) -> Result<Vec<Entry>> {
        let list = self.list();
        let (start, next, positions) = {
            let s = self.lock();
            self.check_open(&s)?;
            let start = s.read_position.max(list.next_valid(s.snap.mark_delete));
            // Normalized as `read_from` does: a read position one past the
            // end of a ledger that has since been closed (the writer rolled
            // over) is the first entry of the next one. Without this a cursor
            // that had read a ledger to its end and acked nothing stopped
            // there for good, and its waits for new entries returned at once.
            let start = list.next_valid(list.previous(start));
            let mut p = start;
            let mut positions = Vec::new();
            while positions.len() < max && list.contains(p) {
                if !s.snap.acks.contains(p) {
                    positions.push(p);
                }
                p = list.next_valid(p);
            }
            (start, p, positions)
        };
        let entries = self.inner.ml.read_positions(&positions).await?;
        {
            let mut s = self.lock();
            // Unless a rewind or reset moved it meanwhile.
            if s.read_position <= start {
                s.read_position = next;
            }
        }
        self.inner.ml.inner.evict_read_entries();
        Ok(entries)
    }

    /// Like `read_entries`, but waits up to `wait` for new entries when there
    /// are none to read.
    pub async fn read_entries_or_wait(&self, max: usize, wait: Duration) -> Result<Vec<Entry>> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut confirmed = self.inner.ml.inner.subscribe_confirmed();
        loop {
            let entries = self.read_entries(max).await?;
            if !entries.is_empty() {
                return Ok(entries);
            }
            let rp = self.read_position();
            let wait_for = confirmed.wait_for(|lc| *lc >= rp);
            match tokio::time::timeout_at(deadline, wait_for).await {
                Ok(Ok(_)) => continue,
                _ => return Ok(Vec::new()),
            }
        }
    }

    /// Whether entries are available past the read position.
    pub fn has_more_entries(&self) -> bool {
        let list = self.list();
        let rp = self.read_position();
        rp <= list.last_confirmed() && list.contains(list.next_valid(list.previous(rp)))
    }

    /// Moves the read position back to the first unacked entry (redelivery).
    pub fn rewind(&self) {
        let list = self.list();
        let mut s = self.lock();
        s.read_position = list.next_valid(s.snap.mark_delete);
    }

    /// Acknowledges individual positions.
    pub fn ack(&self, positions: &[Position]) -> Result<()> {
        let list = self.list();
        let mut s = self.lock();
        self.check_open(&s)?;
        for &p in positions {
            if p <= s.snap.mark_delete || !list.contains(p) {
                continue;
            }
            s.snap.acks.insert(p);
            s.snap.batch_acks.remove(&p);
        }
        self.advance_and_persist(&mut s, &list);
        Ok(())
    }

    /// Acknowledges everything up to and including `p`.
    pub fn ack_cumulative(&self, p: Position) -> Result<()> {
        self.mark_delete_at_least(p)
    }

    pub(crate) fn mark_delete_at_least(&self, p: Position) -> Result<()> {
        let list = self.list();
        let p = p.min(list.last_confirmed());
        let mut s = self.lock();
        self.check_open(&s)?;
        if p > s.snap.mark_delete {
            s.snap.mark_delete = p;
            s.snap.acks.remove_through(p);
            s.snap.batch_acks = s
                .snap
                .batch_acks
                .split_off(&Position::new(p.ledger_id, p.entry_id + 1));
        }
        self.advance_and_persist(&mut s, &list);
        Ok(())
    }

    /// Acknowledges some messages of a batch entry of `batch_size` messages;
    /// the entry counts as acked once all of them are.
    pub fn ack_batch_indexes(&self, p: Position, batch_size: u32, indexes: &[u32]) -> Result<()> {
        if batch_size == 0 || batch_size > MAX_BATCH {
            return Err(MlError::InvalidPosition(p));
        }
        let list = self.list();
        let mut s = self.lock();
        self.check_open(&s)?;
        if p <= s.snap.mark_delete || s.snap.acks.contains(p) || !list.contains(p) {
            return Ok(());
        }
        let b = s
            .snap
            .batch_acks
            .entry(p)
            .or_insert_with(|| BatchAcks::new(batch_size));
        for &i in indexes.iter().filter(|&&i| i < b.size) {
            b.acked[(i / 64) as usize] |= 1u64 << (i % 64);
        }
        if b.complete() {
            s.snap.batch_acks.remove(&p);
            s.snap.acks.insert(p);
        }
        self.advance_and_persist(&mut s, &list);
        Ok(())
    }

    /// The acked indexes of a partly acked batch entry, as 64-bit words.
    pub fn batch_acked_indexes(&self, p: Position) -> Option<Vec<u64>> {
        self.lock().snap.batch_acks.get(&p).map(|b| b.acked.clone())
    }

    pub fn is_acked(&self, p: Position) -> bool {
        let s = self.lock();
        p <= s.snap.mark_delete || s.snap.acks.contains(p)
    }

    /// Moves the mark-delete position over acked runs that now follow it.
    fn advance_and_persist(&self, s: &mut State, list: &LedgerList) {
        let lc = list.last_confirmed();
        loop {
            let next = list.next_valid(s.snap.mark_delete);
            if next > lc {
                break;
            }
            match s.snap.acks.run_end(next) {
                Some(end) => {
                    s.snap.mark_delete = end;
                    s.snap.acks.remove_through(end);
                }
                None => break,
            }
        }
        let md = s.snap.mark_delete;
        s.snap.batch_acks = s
            .snap
            .batch_acks
            .split_off(&Position::new(md.ledger_id, md.entry_id + 1));
        let first_unacked = list.next_valid(md);
        if s.read_position < first_unacked {
            s.read_position = first_unacked;
        }
        self.mark_dirty(s);
    }

    /// Resets to `p`: it becomes the next entry read; acks after it are
    /// forgotten.
    pub fn reset(&self, p: Position) -> Result<()> {
        let list = self.list();
        let mut s = self.lock();
        self.check_open(&s)?;
        let md = list.previous(p).min(list.last_confirmed());
        s.snap = Snapshot {
            mark_delete: md,
            ..Default::default()
        };
        s.read_position = list.next_valid(md);
        self.mark_dirty(&mut s);
        Ok(())
    }

    /// Resets to the first entry published at or after `time_ms` (after the
    /// last entry if all are older).
    pub async fn reset_to_publish_time(&self, time_ms: u64) -> Result<Position> {
        let target = match self.inner.ml.find_by_publish_time(time_ms).await? {
            Some(p) => p,
            None => {
                let list = self.list();
                list.next_valid(list.last_confirmed())
            }
        };
        self.reset(target)?;
        Ok(target)
    }

    /// Acks the next `n` unacked entries; returns them.
    pub fn skip(&self, n: u64) -> Result<Vec<Position>> {
        let list = self.list();
        let positions: Vec<Position> = {
            let s = self.lock();
            let mut out = Vec::new();
            let mut p = list.next_valid(s.snap.mark_delete);
            while (out.len() as u64) < n && list.contains(p) {
                if !s.snap.acks.contains(p) {
                    out.push(p);
                }
                p = list.next_valid(p);
            }
            out
        };
        self.ack(&positions)?;
        Ok(positions)
    }

    /// Acks everything written so far.
    pub fn clear_backlog(&self) -> Result<()> {
        self.ack_cumulative(self.list().last_confirmed())
    }

    /// Unacked entries and their (estimated) bytes, from ledger sizes and the
    /// ack count alone.
    pub fn backlog(&self) -> (u64, u64) {
        let list = self.list();
        let s = self.lock();
        let (entries, bytes) = list.span(s.snap.mark_delete, list.last_confirmed());
        let acked = s.snap.acks.len().min(entries);
        let unacked = entries - acked;
        let unacked_bytes = if entries == 0 {
            0
        } else {
            (bytes as u128 * unacked as u128 / entries as u128) as u64
        };
        (unacked, unacked_bytes)
    }

    pub fn stats(&self) -> CursorStats {
        let (backlog_entries, backlog_bytes) = self.backlog();
        let s = self.lock();
        let ranges = s.snap.acks.ranges();
        let list = self.list();
        let printed: Vec<String> = ranges
            .iter()
            .map(|(a, b)| format!("({}..{}]", list.previous(*a), b))
            .collect();
        CursorStats {
            mark_delete_position: s.snap.mark_delete.to_string(),
            read_position: s.read_position.to_string(),
            individually_deleted_messages: format!("[{}]", printed.join(", ")),
            total_non_contiguous_deleted_messages_range: ranges.len(),
            backlog_entries,
            backlog_bytes,
            cursor_ledger: s.ledger.as_ref().map(|w| w.id()).or(s.info.cursor_ledger),
            cursor_ledger_entries: s.ledger_entries,
            snapshots_written: s.snapshots_written,
            snapshot_bytes_written: s.snapshot_bytes_written,
            state: if s.fenced {
                "Fenced"
            } else if s.closed {
                "Closed"
            } else {
                "Open"
            }
            .into(),
        }
    }

    /// Bytes written to persist this cursor's state so far.
    pub fn snapshot_bytes_written(&self) -> u64 {
        self.lock().snapshot_bytes_written
    }

    /// Memory held by the ack state.
    pub fn ack_memory_bytes(&self) -> usize {
        self.lock().snap.acks.memory_bytes()
    }

    fn mark_dirty(&self, s: &mut State) {
        s.dirty_seq += 1;
        if !s.persisting && !s.closed && !s.fenced {
            s.persisting = true;
            let this = self.clone();
            tokio::spawn(async move { this.persist_loop().await });
        }
    }

    async fn persist_loop(self) {
        let interval = self.inner.ml.config().cursor_persist_interval;
        let mut backoff = Duration::from_millis(100);
        loop {
            let wait = self
                .lock()
                .last_persist
                .map_or(Duration::ZERO, |t| interval.saturating_sub(t.elapsed()));
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            let (seq, snap) = {
                let mut s = self.lock();
                if s.closed {
                    // Deleted (close flushes before it sets `closed`).
                    s.persisting = false;
                    drop(s);
                    self.inner.persisted.send_modify(|v| v.1 = true);
                    return;
                }
                (s.dirty_seq, s.snap.clone())
            };
            let result = self.write_snapshot(&snap).await;
            // What to do next, decided under the lock and acted on after it.
            let retry = {
                let mut s = self.lock();
                match result {
                    Ok(bytes) => {
                        backoff = Duration::from_millis(100);
                        s.last_persist = Some(Instant::now());
                        s.snapshots_written += 1;
                        s.snapshot_bytes_written += bytes as u64;
                        let done = s.dirty_seq == seq;
                        if done {
                            s.persisting = false;
                        }
                        let fenced = s.fenced;
                        drop(s);
                        self.inner.persisted.send_replace((seq, fenced));
                        if done {
                            return;
                        }
                        false
                    }
                    Err(MlError::Fenced(_)) => {
                        tracing::warn!(ledger = %self.inner.ml.name(), cursor = %self.inner.name, "cursor fenced: another owner took it over");
                        s.fenced = true;
                        s.persisting = false;
                        drop(s);
                        self.inner.persisted.send_modify(|v| v.1 = true);
                        return;
                    }
                    Err(e) => {
                        if s.closed {
                            s.persisting = false;
                            drop(s);
                            self.inner.persisted.send_modify(|v| v.1 = true);
                            return;
                        }
                        tracing::warn!(ledger = %self.inner.ml.name(), cursor = %self.inner.name, error = %e, "persisting cursor failed; retrying on a new cursor ledger");
                        s.ledger = None;
                        true
                    }
                }
            };
            if retry {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }

    async fn write_snapshot(&self, snap: &Snapshot) -> Result<usize> {
        let data = snap.encode();
        let len = data.len();
        let max_entries = self.inner.ml.config().cursor_ledger_max_entries;
        let writer = {
            let s = self.lock();
            s.ledger.clone().filter(|_| s.ledger_entries < max_entries)
        };
        match writer {
            Some(w) => match w.append(data).await {
                Ok(_) => {
                    self.lock().ledger_entries += 1;
                    Ok(len)
                }
                Err(LedgerError::Fenced(_)) => Err(MlError::Fenced(self.inner.name.clone())),
                Err(e) => Err(e.into()),
            },
            None => {
                self.roll_cursor_ledger(data, snap.mark_delete).await?;
                Ok(len)
            }
        }
    }

    /// Writes the snapshot to a fresh cursor ledger, points the metadata at it,
    /// and deletes the previous one.
    async fn roll_cursor_ledger(&self, data: Vec<u8>, mark_delete: Position) -> Result<()> {
        let ml = &self.inner.ml;
        let c = ml.config();
        let writer = ml
            .inner
            .ledgers
            .create(c.ensemble_size, c.write_quorum, c.ack_quorum, &c.password)
            .await?;
        if let Err(e) = writer.append(data).await {
            delete_quietly(ml, writer.id()).await;
            return Err(e.into());
        }
        let (mut info, version, previous) = {
            let s = self.lock();
            (s.info.clone(), s.info_version, s.info.cursor_ledger)
        };
        info.cursor_ledger = Some(writer.id());
        info.mark_delete = mark_delete;
        match info::store(&ml.inner.meta, &self.inner.key, &info, version).await {
            Ok(Stored::Ok(v)) => {
                {
                    let mut s = self.lock();
                    s.info = info;
                    s.info_version = v;
                    s.ledger = Some(writer);
                    s.ledger_entries = 1;
                }
                if let Some(old) = previous {
                    delete_quietly(ml, old).await;
                }
                Ok(())
            }
            Ok(Stored::Conflict) => {
                delete_quietly(ml, writer.id()).await;
                Err(MlError::Fenced(self.inner.name.clone()))
            }
            Err(e) => {
                delete_quietly(ml, writer.id()).await;
                Err(e)
            }
        }
    }

    /// Waits until every change made before the call is persisted.
    pub async fn flush(&self) -> Result<()> {
        let target = {
            let s = self.lock();
            if s.fenced {
                return Err(MlError::Fenced(self.inner.name.clone()));
            }
            s.dirty_seq
        };
        let mut rx = self.inner.persisted.subscribe();
        let waited = tokio::time::timeout(
            Duration::from_secs(30),
            rx.wait_for(|(seq, stopped)| *seq >= target || *stopped),
        )
        .await;
        match waited {
            Ok(Ok(v)) if v.0 >= target => Ok(()),
            Ok(_) => Err(MlError::Fenced(self.inner.name.clone())),
            Err(_) => Err(MlError::Unavailable(format!(
                "cursor {} not persisted within 30 s",
                self.inner.name
            ))),
        }
    }

    /// Flushes and closes the cursor ledger, so the next owner opens it
    /// without recovery.
    pub(crate) async fn close(&self) -> Result<()> {
        let flushed = self.flush().await;
        let writer = {
            let mut s = self.lock();
            s.closed = true;
            s.ledger.take()
        };
        if let Some(w) = writer {
            w.close().await?;
        }
        flushed
    }

    /// Deletes the cursor's metadata and ledgers.
    pub(crate) async fn delete(&self) -> Result<()> {
        let (own, pointed) = {
            let mut s = self.lock();
            s.closed = true;
            (s.ledger.take().map(|w| w.id()), s.info.cursor_ledger)
        };
        self.inner.persisted.send_modify(|v| v.1 = true);
        self.inner
            .ml
            .inner
            .meta
            .delete(&self.inner.key, None)
            .await?;
        for id in own.into_iter().chain(pointed) {
            delete_quietly(&self.inner.ml, id).await;
        }
        Ok(())
    }
}

async fn delete_quietly(ml: &ManagedLedger, id: u64) {
    match ml.inner.ledgers.delete(id).await {
        Ok(()) | Err(LedgerError::NoSuchLedger(_)) => {}
        Err(e) => {
            tracing::warn!(ledger = %ml.name(), ledger_id = id, error = %e, "could not delete cursor ledger")
        }
    }
}

/// Recovers a cursor ledger (fencing a previous owner) and decodes its last
/// snapshot; `None` if it holds none.
async fn read_last_snapshot(ml: &ManagedLedger, id: u64) -> Result<Option<Snapshot>> {
    let reader = match ml
        .inner
        .ledgers
        .open_recover(id, &ml.config().password)
        .await
    {
        Ok(r) => r,
        Err(LedgerError::NoSuchLedger(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let last = reader.metadata().last_entry_id;
    if last < 0 {
        return Ok(None);
    }
    let raw = reader.read_entry(last).await?;
    Snapshot::decode(&raw)
        .map(Some)
        .map_err(|e| MlError::Corrupt(format!("cursor ledger {id}"), e))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn snapshot_round_trips(
            md in (1u64..50, -1i64..100),
            acks in proptest::collection::vec((1u64..50, 0i64..5000), 0..200),
            batches in proptest::collection::vec((1u64..50, 0i64..100, 1u32..300, any::<u64>()), 0..10),
        ) {
            let mut snap = Snapshot { mark_delete: Position::new(md.0, md.1), ..Default::default() };
            for (l, e) in acks {
                snap.acks.insert(Position::new(l, e));
            }
            for (l, e, size, bits) in batches {
                let mut b = BatchAcks::new(size);
                b.acked[0] = bits;
                snap.batch_acks.insert(Position::new(l, e), b);
            }
            let decoded = Snapshot::decode(&snap.encode()).unwrap();
            prop_assert_eq!(decoded.mark_delete, snap.mark_delete);
            prop_assert_eq!(decoded.acks.ranges(), snap.acks.ranges());
            prop_assert_eq!(decoded.batch_acks, snap.batch_acks);
        }

        #[test]
        fn garbage_snapshots_are_rejected_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Snapshot::decode(&bytes);
        }
    }
}

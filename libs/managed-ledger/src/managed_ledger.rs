//! A managed ledger: one topic's log as an ordered list of ledgers.
//!
//! One owner writes it. Appends are sent to the current ledger in call order
//! and confirmed in that order. When the ledger is full, too old, or failed,
//! the managed ledger rolls over: appends queue while the old ledger is closed
//! (or, after a failure, recovered), a new ledger is created and added to the
//! ledger list by compare-and-set, and the queue drains into it in order.
//!
//! Opening recovers (fences) the last ledger of the previous owner and adds a
//! fresh ledger by compare-and-set. A previous owner that is still running
//! learns it lost on its next write (the bookies answer "fenced") or its next
//! ledger-list update (the compare-and-set fails), and stops.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use magnetar_ledger::{LedgerClient, LedgerError, LedgerReader, LedgerWriter, PendingAppend};
use magnetar_meta_client::MetaClient;
use tokio::sync::{oneshot, watch};

use crate::cache::{CacheBudget, EntryCache};
use crate::config::{ManagedLedgerConfig, RetentionPolicy};
use crate::cursor::{InitialPosition, ManagedCursor};
use crate::entry::{self, Entry, Header};
use crate::error::{MlError, Result};
use crate::info::{self, LedgerInfo, ManagedLedgerInfo, Stored};
use crate::position::{LedgerList, Position, Segment};
use crate::stats::{LedgerStats, ManagedLedgerStats};

pub(crate) mod offload;

/// Entries read from bookies at once by one read call.
const READ_CONCURRENCY: usize = 64;

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A policy duration in milliseconds; a huge one (a policy's "forever")
/// saturates instead of wrapping around to something short.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Open,
    /// Appends queue until the next ledger is ready.
    RollingOver,
    /// Another owner took over.
    Fenced,
    Closed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RolloverReason {
    Full,
    Age,
    WriteError,
    /// No ledger is open (a previous rollover could not create one).
    NoLedger,
}

struct Waiting {
    /// Shared with the entry cache once confirmed: one copy of the payload
    /// serves the cache, the other is the encoded entry sent to the bookies.
    payload: Arc<[u8]>,
    publish_time_ms: u64,
    tx: oneshot::Sender<Result<Position>>,
}

struct Current {
    writer: LedgerWriter,
    reserved: i64,
    reserved_bytes: u64,
    created: Instant,
    first_publish_ms: u64,
    last_publish_ms: u64,
}

struct State {
    status: Status,
    info: ManagedLedgerInfo,
    info_version: i64,
    /// Ledger list with confirmed counts (the current ledger's grow as appends
    /// are confirmed).
    list: LedgerList,
    current: Option<Current>,
    waiting: VecDeque<Waiting>,
    /// Appends failed back to their callers so far (write errors, a
    /// rollover that could not finish). See `append_in_order`.
    failures: u64,
    /// Readers of closed ledgers.
    readers: HashMap<u64, Arc<LedgerReader>>,
    /// A terminate is waiting for the last appends; no new ones are taken.
    terminating: bool,
}

pub(crate) struct Inner {
    pub(crate) name: String,
    pub(crate) cfg: ManagedLedgerConfig,
    /// Retention and TTL, which namespace policy changes update live.
    policies: Mutex<RetentionPolicy>,
    pub(crate) ledgers: LedgerClient,
    pub(crate) meta: MetaClient,
    pub(crate) cache: EntryCache,
    state: Mutex<State>,
    /// Serializes updates of the ledger list (rollover, trim, close).
    info_update: tokio::sync::Mutex<()>,
    confirmed: watch::Sender<Position>,
    pub(crate) cursors: Mutex<BTreeMap<String, ManagedCursor>>,
    entries_added: AtomicU64,
    self_ref: Weak<Inner>,
    /// Tiered storage: policy, open offloaded ledgers, status.
    offload: offload::OffloadState,
}

/// Handle to an open managed ledger; cheap to clone.
#[derive(Clone)]
pub struct ManagedLedger {
    pub(crate) inner: Arc<Inner>,
}

impl ManagedLedger {
    /// Opens (creating if needed) and takes ownership: the previous owner's
    /// open ledger is recovered and a new ledger is added for our writes.
    pub(crate) async fn open(
        name: &str,
        cfg: ManagedLedgerConfig,
        ledgers: LedgerClient,
        meta: MetaClient,
        budget: Arc<CacheBudget>,
    ) -> Result<Self> {
        info::validate_name(name)?;
        let key = info::ledger_key(name);
        let inner = Arc::new_cyclic(|self_ref| Inner {
            name: name.to_string(),
            policies: Mutex::new(RetentionPolicy {
                retention_time: cfg.retention_time,
                retention_bytes: cfg.retention_bytes,
                message_ttl: cfg.message_ttl,
            }),
            cfg,
            ledgers,
            meta,
            cache: EntryCache::new(budget),
            state: Mutex::new(State {
                status: Status::RollingOver,
                info: ManagedLedgerInfo::default(),
                info_version: 0,
                list: LedgerList::default(),
                current: None,
                waiting: VecDeque::new(),
                failures: 0,
                readers: HashMap::new(),
                terminating: false,
            }),
            info_update: tokio::sync::Mutex::new(()),
            confirmed: watch::channel(Position::new(0, -1)).0,
            cursors: Mutex::new(BTreeMap::new()),
            entries_added: AtomicU64::new(0),
            self_ref: self_ref.clone(),
            offload: Default::default(),
        });
        let _update = inner.info_update.lock().await;
        // Take over: recover the last ledger if it is open, then add ours. A
        // conflict means the previous owner changed the list meanwhile; start
        // again from what it wrote.
        for attempt in 0.. {
            let (mut stored, version) =
                match info::load::<ManagedLedgerInfo>(&inner.meta, &key).await? {
                    Some(v) => v,
                    None => (
                        ManagedLedgerInfo {
                            created_ms: now_ms(),
                            ..Default::default()
                        },
                        0,
                    ),
                };
            let mut dropped = Vec::new();
            if let Some(last) = stored.ledgers.last().cloned() {
                if !last.closed {
                    tracing::info!(ledger = %inner.name, ledger_id = last.ledger_id, "recovering the previous owner's last ledger");
                    let closed = inner.recover_ledger(last.ledger_id).await?;
                    *stored.ledgers.last_mut().expect("checked") = closed;
                }
                if stored.ledgers.last().is_some_and(|l| l.entries == 0) {
                    dropped.extend(stored.ledgers.pop().map(|l| l.ledger_id));
                }
            }
            let writer = inner.create_ledger().await?;
            stored.ledgers.push(open_ledger_info(writer.id()));
            match info::store(&inner.meta, &key, &stored, version).await? {
                Stored::Ok(v) => {
                    for id in dropped {
                        inner.delete_ledger(id).await;
                    }
                    let list = list_from(&stored);
                    inner.install(stored, list, v, writer);
                    break;
                }
                Stored::Conflict => {
                    inner.delete_ledger(writer.id()).await;
                    if attempt >= 10 {
                        return Err(MlError::Fenced(name.to_string()));
                    }
                }
            }
        }
        drop(_update);
        let ml = ManagedLedger { inner };
        ml.open_existing_cursors().await?;
        Ok(ml)
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn config(&self) -> &ManagedLedgerConfig {
        &self.inner.cfg
    }

    /// Appends one entry. The position is assigned now, in call order; the
    /// returned future resolves once the entry is on an ack quorum of bookies.
    pub fn append(
        &self,
        payload: &[u8],
        publish_time_ms: u64,
    ) -> impl std::future::Future<Output = Result<Position>> + Send + 'static {
        self.append_after_failures(payload, publish_time_ms, None)
    }

    /// How many appends have failed back to their callers so far.
    pub fn append_failures(&self) -> u64 {
        self.inner.lock().failures
    }

    /// `append`, refused with `EarlierAppendFailed` if any append failed
    /// since the caller read `seen` from `append_failures`.
    ///
    /// A producer's messages must be stored in the order it sent them. When
    /// one of its appends fails, the ones queued behind it fail with it, but
    /// sends already on their way would be stored ahead of its retry. A
    /// producer that passes the count it saw when it attached has those
    /// refused too, until it attaches again (the broker lets every producer
    /// of the topic go on a failure, as Pulsar does) and resends in order.
    pub fn append_in_order(
        &self,
        payload: &[u8],
        publish_time_ms: u64,
        seen: u64,
    ) -> impl std::future::Future<Output = Result<Position>> + Send + 'static {
        self.append_after_failures(payload, publish_time_ms, Some(seen))
    }

    fn append_after_failures(
        &self,
        payload: &[u8],
        publish_time_ms: u64,
        seen: Option<u64>,
    ) -> impl std::future::Future<Output = Result<Position>> + Send + 'static {
        let started = self.inner.start_append(payload, publish_time_ms, seen);
        let name = self.inner.name.clone();
        async move {
            match started {
                Ok(rx) => rx.await.unwrap_or(Err(MlError::Closed(name))),
                Err(e) => Err(e),
            }
        }
    }

    /// The last position confirmed to a writer.
    pub fn last_confirmed(&self) -> Position {
        self.inner.lock().list.last_confirmed()
    }

    /// Waits until an entry after `after` is confirmed or `wait` passes;
    /// returns the last confirmed position.
    pub async fn wait_for_entries_after(&self, after: Position, wait: Duration) -> Position {
        let mut rx = self.inner.confirmed.subscribe();
        let _ = tokio::time::timeout(wait, rx.wait_for(|p| *p > after)).await;
        self.last_confirmed()
    }

    /// Reads one entry.
    pub async fn read_entry(&self, pos: Position) -> Result<Entry> {
        let mut v = self.inner.read_positions(&[pos]).await?;
        v.pop().ok_or(MlError::InvalidPosition(pos))
    }

    /// Reads up to `max` entries from `from` (inclusive; moved to the next
    /// stored entry if it names none), across ledger boundaries.
    pub async fn read_from(&self, from: Position, max: usize) -> Result<Vec<Entry>> {
        let positions = {
            let s = self.inner.lock();
            let mut out = Vec::new();
            let mut p = if s.list.contains(from) {
                from
            } else {
                s.list.next_valid(s.list.previous(from))
            };
            while out.len() < max && s.list.contains(p) {
                out.push(p);
                p = s.list.next_valid(p);
            }
            out
        };
        self.inner.read_positions(&positions).await
    }

    /// Reads the given positions (e.g. messages to redeliver).
    pub async fn read_positions(&self, positions: &[Position]) -> Result<Vec<Entry>> {
        self.inner.read_positions(positions).await
    }

    /// Opens a cursor (subscription), creating it at `initial` if it does not
    /// exist.
    pub async fn open_cursor(&self, name: &str, initial: InitialPosition) -> Result<ManagedCursor> {
        if let Some(c) = self.inner.lock_cursors().get(name) {
            return Ok(c.clone());
        }
        let cursor = ManagedCursor::create(self.clone(), name, initial).await?;
        let mut cursors = self.inner.lock_cursors();
        Ok(cursors.entry(name.to_string()).or_insert(cursor).clone())
    }

    pub fn cursor(&self, name: &str) -> Option<ManagedCursor> {
        self.inner.lock_cursors().get(name).cloned()
    }

    pub fn cursors(&self) -> Vec<ManagedCursor> {
        self.inner.lock_cursors().values().cloned().collect()
    }

    /// Deletes a cursor and its stored state; ledgers only it held back may
    /// then be trimmed.
    pub async fn delete_cursor(&self, name: &str) -> Result<()> {
        let cursor = self.inner.lock_cursors().remove(name);
        match cursor {
            Some(c) => c.delete().await?,
            None => {
                return Err(MlError::NoSuchCursor {
                    ledger: self.inner.name.clone(),
                    cursor: name.to_string(),
                })
            }
        }
        self.trim().await
    }

    async fn open_existing_cursors(&self) -> Result<()> {
        let prefix = info::cursors_prefix(&self.inner.name);
        let page = self.inner.meta.list_all(&prefix).await?;
        for kv in page.kvs {
            let key = String::from_utf8_lossy(&kv.key).to_string();
            let name = info::decode_segment(&key[prefix.len()..]);
            let cursor = ManagedCursor::recover(self.clone(), &name).await?;
            self.inner.lock_cursors().insert(name, cursor);
        }
        Ok(())
    }

    /// The first position whose publish time is at or after `time_ms`, or
    /// `None` if every entry is older. Binary search over ledgers by their
    /// publish-time bounds, then over the entries of one ledger (publish times
    /// are assumed not to go backwards, as the broker stamps them).
    pub async fn find_by_publish_time(&self, time_ms: u64) -> Result<Option<Position>> {
        let (candidate, current) = {
            let s = self.inner.lock();
            let current = s.current.as_ref().map(|c| c.writer.id());
            let candidate = s
                .info
                .ledgers
                .iter()
                .zip(s.list.segments.iter())
                .find(|(li, seg)| {
                    seg.entries > 0
                        && (Some(li.ledger_id) == current || li.last_publish_ms >= time_ms)
                })
                .map(|(li, seg)| (li.ledger_id, seg.entries));
            (candidate, current)
        };
        let Some((ledger, entries)) = candidate else {
            return Ok(None);
        };
        // Find the first entry in [0, entries) with publish time >= time_ms.
        let (mut lo, mut hi) = (0i64, entries);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let e = self.read_entry(Position::new(ledger, mid)).await?;
            if e.publish_time_ms >= time_ms {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        if lo < entries {
            return Ok(Some(Position::new(ledger, lo)));
        }
        // Only the open ledger can end with older entries than `time_ms`.
        debug_assert_eq!(Some(ledger), current);
        Ok(None)
    }

    /// Deletes ledgers every cursor has passed and that retention does not
    /// keep; advances cursors past entries older than the TTL first.
    pub async fn trim(&self) -> Result<()> {
        self.inner.trim().await
    }

    /// The retention and TTL in force.
    pub fn retention_policy(&self) -> RetentionPolicy {
        *self
            .inner
            .policies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Changes retention and TTL (a namespace policy changed); the next
    /// housekeeping applies them.
    pub fn set_retention_policy(&self, p: RetentionPolicy) {
        *self
            .inner
            .policies
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = p;
    }

    /// Applies the message TTL (if configured) to every cursor.
    pub async fn expire_by_ttl(&self) -> Result<()> {
        let ttl = self.retention_policy().message_ttl;
        let Some(ttl) = ttl else {
            return Ok(());
        };
        let cutoff = now_ms().saturating_sub(millis(ttl));
        let target = match self.find_by_publish_time(cutoff).await? {
            Some(first_live) => {
                let s = self.inner.lock();
                s.list.previous(first_live)
            }
            None => self.last_confirmed(),
        };
        for c in self.cursors() {
            c.mark_delete_at_least(target)?;
        }
        Ok(())
    }

    /// Housekeeping: rollover by age, TTL, retention.
    pub async fn housekeeping(&self) -> Result<()> {
        self.inner.roll_if_old();
        self.expire_by_ttl().await?;
        self.trim().await?;
        // Tiered storage never holds back the rest (the store may be down).
        if let Err(e) = self.offload_housekeeping().await {
            tracing::warn!(ledger = %self.inner.name, error = %e, "offload housekeeping");
        }
        Ok(())
    }

    /// Closes the current ledger and every cursor (their state flushed), so a
    /// next owner opens without recovery. Pending appends fail.
    pub async fn close(&self) -> Result<()> {
        for c in self.cursors() {
            if let Err(e) = c.close().await {
                tracing::warn!(ledger = %self.inner.name, cursor = %c.name(), error = %e, "closing cursor");
            }
        }
        self.inner.lock_cursors().clear();
        let _update = self.inner.info_update.lock().await;
        let current = {
            let mut s = self.inner.lock();
            if matches!(s.status, Status::Closed | Status::Fenced) {
                return Ok(());
            }
            s.status = Status::Closed;
            fail_waiting(&mut s, || MlError::Closed(self.inner.name.clone()));
            s.current.take()
        };
        if let Some(cur) = current {
            let closed = self.inner.finish_ledger(&cur, RolloverReason::Full).await?;
            self.inner
                .update_info(|info| {
                    if let Some(li) = info.ledgers.last_mut() {
                        *li = closed;
                    }
                })
                .await?;
        }
        self.inner.cache.clear();
        Ok(())
    }

    /// Stops appends for good: waits (up to `wait`) for the appends already
    /// taken, then records the last position in the ledger list, so every
    /// later owner refuses appends too. Returns the last position.
    pub async fn terminate(&self, wait: Duration) -> Result<Position> {
        {
            let mut s = self.inner.lock();
            if let Some(p) = s.info.terminated_at {
                return Ok(p);
            }
            s.terminating = true;
        }
        let r = self.terminate_after_appends(wait).await;
        self.inner.lock().terminating = false;
        r
    }

    async fn terminate_after_appends(&self, wait: Duration) -> Result<Position> {
        let deadline = Instant::now() + wait;
        loop {
            {
                let s = self.inner.lock();
                match s.status {
                    Status::Fenced => return Err(MlError::Fenced(self.inner.name.clone())),
                    Status::Closed => return Err(MlError::Closed(self.inner.name.clone())),
                    Status::RollingOver => {}
                    Status::Open => {
                        let last = s.list.last_confirmed();
                        let settled = s.current.as_ref().is_none_or(|c| {
                            c.reserved == 0 || last >= Position::new(c.writer.id(), c.reserved - 1)
                        });
                        if s.waiting.is_empty() && settled {
                            break;
                        }
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(MlError::Unavailable(format!(
                    "{}: appends in flight did not complete in {wait:?}",
                    self.inner.name
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let _update = self.inner.info_update.lock().await;
        let last = self.last_confirmed();
        self.inner
            .update_info(|info| info.terminated_at = Some(last))
            .await?;
        Ok(last)
    }

    /// The last position of a terminated managed ledger.
    pub fn terminated_at(&self) -> Option<Position> {
        self.inner.lock().info.terminated_at
    }

    pub fn is_fenced(&self) -> bool {
        self.inner.lock().status == Status::Fenced
    }

    /// Entries and payload bytes stored.
    pub fn size(&self) -> (u64, u64) {
        let s = self.inner.lock();
        (s.list.total_entries(), s.list.total_size())
    }

    pub fn ledger_list(&self) -> LedgerList {
        self.inner.lock().list.clone()
    }

    /// Internal stats for the admin API.
    pub fn stats(&self) -> ManagedLedgerStats {
        let cursors = self
            .cursors()
            .iter()
            .map(|c| (c.name().to_string(), c.stats()))
            .collect();
        let s = self.inner.lock();
        let current = s.current.as_ref().map(|c| c.writer.id());
        ManagedLedgerStats {
            name: self.inner.name.clone(),
            state: format!("{:?}", s.status),
            entries_added_counter: self.inner.entries_added.load(Ordering::Relaxed),
            number_of_entries: s.list.total_entries(),
            total_size: s.list.total_size(),
            current_ledger_entries: s
                .list
                .segments
                .last()
                .map_or(0, |l| l.entries.max(0) as u64),
            current_ledger_size: s.list.segments.last().map_or(0, |l| l.size),
            last_confirmed_entry: s.list.last_confirmed().to_string(),
            ledgers: s
                .info
                .ledgers
                .iter()
                .zip(s.list.segments.iter())
                .map(|(li, seg)| LedgerStats {
                    ledger_id: li.ledger_id,
                    entries: seg.entries.max(0) as u64,
                    size: seg.size,
                    closed: Some(li.ledger_id) != current,
                    first_publish_ms: li.first_publish_ms,
                    last_publish_ms: li.last_publish_ms,
                    offloaded: li.offload.as_ref().is_some_and(|o| o.complete),
                })
                .collect(),
            cursors,
            cache_entries: self.inner.cache.len(),
        }
    }
}

fn open_ledger_info(id: u64) -> LedgerInfo {
    LedgerInfo {
        ledger_id: id,
        entries: 0,
        size: 0,
        first_publish_ms: 0,
        last_publish_ms: 0,
        closed: false,
        offload: None,
    }
}

/// Fails every queued append (counted in `failures`).
fn fail_waiting(s: &mut State, err: impl Fn() -> MlError) {
    if !s.waiting.is_empty() {
        s.failures += 1;
    }
    for w in s.waiting.drain(..) {
        let _ = w.tx.send(Err(err()));
    }
}

fn list_from(info: &ManagedLedgerInfo) -> LedgerList {
    LedgerList {
        segments: info
            .ledgers
            .iter()
            .map(|l| Segment {
                ledger_id: l.ledger_id,
                entries: l.entries,
                size: l.size,
            })
            .collect(),
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn lock_cursors(&self) -> MutexGuard<'_, BTreeMap<String, ManagedCursor>> {
        self.cursors.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn this(&self) -> Option<Arc<Inner>> {
        self.self_ref.upgrade()
    }

    pub(crate) fn list(&self) -> LedgerList {
        self.lock().list.clone()
    }

    pub(crate) fn with_list<R>(&self, f: impl FnOnce(&LedgerList) -> R) -> R {
        f(&self.lock().list)
    }

    pub(crate) fn subscribe_confirmed(&self) -> watch::Receiver<Position> {
        self.confirmed.subscribe()
    }

    async fn create_ledger(&self) -> Result<LedgerWriter> {
        let c = &self.cfg;
        Ok(self
            .ledgers
            .create(c.ensemble_size, c.write_quorum, c.ack_quorum, &c.password)
            .await?)
    }

    async fn delete_ledger(&self, id: u64) {
        match self.ledgers.delete(id).await {
            Ok(()) | Err(LedgerError::NoSuchLedger(_)) => {}
            Err(e) => {
                tracing::warn!(ledger = %self.name, ledger_id = id, error = %e, "could not delete ledger")
            }
        }
    }

    /// Recovers (fences and closes) a ledger another writer may hold and
    /// describes it from its last entry.
    async fn recover_ledger(&self, id: u64) -> Result<LedgerInfo> {
        let reader = match self.ledgers.open_recover(id, &self.cfg.password).await {
            Ok(r) => r,
            // Created by an owner that crashed before writing its metadata
            // update; nothing of it is in the list.
            Err(LedgerError::NoSuchLedger(_)) => {
                return Ok(LedgerInfo {
                    closed: true,
                    ..open_ledger_info(id)
                })
            }
            Err(e) => return Err(e.into()),
        };
        self.describe_closed(&reader).await
    }

    async fn describe_closed(&self, reader: &LedgerReader) -> Result<LedgerInfo> {
        let last = reader.metadata().last_entry_id;
        let mut li = LedgerInfo {
            closed: true,
            entries: last + 1,
            ..open_ledger_info(reader.id())
        };
        if last >= 0 {
            let first = reader.read_entry(0).await?;
            let last_raw = reader.read_entry(last).await?;
            let corrupt = |e: String| MlError::Corrupt(format!("{}:{}", reader.id(), last), e);
            let (first_h, _) = entry::decode(&first).map_err(corrupt)?;
            let (last_h, _) = entry::decode(&last_raw).map_err(corrupt)?;
            li.size = last_h.ledger_bytes;
            li.first_publish_ms = first_h.publish_time_ms;
            li.last_publish_ms = last_h.publish_time_ms;
        }
        Ok(li)
    }

    fn install(
        &self,
        info: ManagedLedgerInfo,
        list: LedgerList,
        version: i64,
        writer: LedgerWriter,
    ) {
        let mut s = self.lock();
        s.list = list;
        s.info = info;
        s.info_version = version;
        s.current = Some(Current {
            writer,
            reserved: 0,
            reserved_bytes: 0,
            created: Instant::now(),
            first_publish_ms: 0,
            last_publish_ms: 0,
        });
        if s.status == Status::RollingOver {
            s.status = Status::Open;
        }
        let lc = s.list.last_confirmed();
        self.confirmed.send_if_modified(|p| {
            let changed = lc > *p;
            *p = (*p).max(lc);
            changed
        });
        self.drain_waiting(&mut s);
    }

    /// Stores the ledger list as `change` leaves it, by compare-and-set on
    /// the version this owner holds (callers hold `info_update`); a conflict
    /// means another owner took over.
    async fn update_info(&self, change: impl FnOnce(&mut ManagedLedgerInfo)) -> Result<()> {
        self.update_info_and(change, |_| ()).await
    }

    /// `update_info`, then `and` under the same lock that installs the new
    /// list, so no reader sees the list and the rest of the state disagree.
    async fn update_info_and(
        &self,
        change: impl FnOnce(&mut ManagedLedgerInfo),
        and: impl FnOnce(&mut State),
    ) -> Result<()> {
        let (mut new_info, version) = {
            let s = self.lock();
            (s.info.clone(), s.info_version)
        };
        change(&mut new_info);
        let key = info::ledger_key(&self.name);
        match info::store(&self.meta, &key, &new_info, version).await? {
            Stored::Ok(v) => {
                let mut s = self.lock();
                s.info = new_info;
                s.info_version = v;
                and(&mut s);
                Ok(())
            }
            Stored::Conflict => Err(MlError::Fenced(self.name.clone())),
        }
    }

    fn start_append(
        &self,
        payload: &[u8],
        publish_time_ms: u64,
        seen_failures: Option<u64>,
    ) -> Result<oneshot::Receiver<Result<Position>>> {
        if payload.len() > self.cfg.max_entry_bytes {
            return Err(MlError::TooLarge(payload.len(), self.cfg.max_entry_bytes));
        }
        let (tx, rx) = oneshot::channel();
        let mut s = self.lock();
        match s.status {
            Status::Fenced => return Err(MlError::Fenced(self.name.clone())),
            Status::Closed => return Err(MlError::Closed(self.name.clone())),
            Status::Open | Status::RollingOver => {}
        }
        if s.terminating || s.info.terminated_at.is_some() {
            return Err(MlError::Terminated(self.name.clone()));
        }
        if seen_failures.is_some_and(|seen| seen != s.failures) {
            return Err(MlError::EarlierAppendFailed(self.name.clone()));
        }
        s.waiting.push_back(Waiting {
            payload: Arc::from(payload),
            publish_time_ms,
            tx,
        });
        self.drain_waiting(&mut s);
        Ok(rx)
    }

    /// Sends queued appends to the current ledger, in order, until it is full.
    fn drain_waiting(&self, s: &mut State) {
        while s.status == Status::Open {
            let Some(cur) = s.current.as_mut() else {
                self.start_rollover(s, RolloverReason::NoLedger);
                return;
            };
            let Some(w) = s.waiting.pop_front() else {
                return;
            };
            let ledger_bytes = cur.reserved_bytes + w.payload.len() as u64;
            let raw = entry::encode(
                Header {
                    publish_time_ms: w.publish_time_ms,
                    ledger_bytes,
                },
                &w.payload,
            );
            match cur.writer.start_append(raw) {
                Ok(pending) => {
                    cur.reserved += 1;
                    cur.reserved_bytes = ledger_bytes;
                    if cur.reserved == 1 {
                        cur.first_publish_ms = w.publish_time_ms;
                    }
                    cur.last_publish_ms = w.publish_time_ms;
                    let full = cur.reserved >= self.cfg.max_entries_per_ledger
                        || ledger_bytes >= self.cfg.max_ledger_bytes;
                    let ledger = cur.writer.id();
                    if let Some(this) = self.this() {
                        tokio::spawn(this.complete(ledger, pending, w, ledger_bytes));
                    }
                    if full {
                        self.start_rollover(s, RolloverReason::Full);
                    }
                }
                Err(LedgerError::Fenced(_)) => {
                    s.waiting.push_front(w);
                    self.fence(s);
                }
                Err(e) => {
                    tracing::warn!(ledger = %self.name, error = %e, "current ledger failed; rolling over");
                    s.waiting.push_front(w);
                    self.start_rollover(s, RolloverReason::WriteError);
                }
            }
        }
    }

    async fn complete(
        self: Arc<Self>,
        ledger: u64,
        pending: PendingAppend,
        w: Waiting,
        ledger_bytes: u64,
    ) {
        let result = match pending.wait().await {
            Ok(e) => {
                let pos = Position::new(ledger, e);
                self.on_confirmed(pos, ledger_bytes, w.publish_time_ms, w.payload);
                Ok(pos)
            }
            Err(LedgerError::Fenced(_)) => {
                self.fence(&mut self.lock());
                Err(MlError::Fenced(self.name.clone()))
            }
            Err(e) => {
                let mut s = self.lock();
                let is_current = s.current.as_ref().is_some_and(|c| c.writer.id() == ledger);
                if s.status == Status::Open && is_current {
                    tracing::warn!(ledger = %self.name, ledger_id = ledger, error = %e, "append failed; rolling over");
                    self.start_rollover(&mut s, RolloverReason::WriteError);
                }
                // What was queued behind this append fails with it: stored
                // after its retry, it would be out of order.
                s.failures += 1;
                let msg = e.to_string();
                fail_waiting(&mut s, || MlError::Unavailable(msg.clone()));
                Err(e.into())
            }
        };
        let _ = w.tx.send(result);
    }

    fn on_confirmed(
        &self,
        pos: Position,
        ledger_bytes: u64,
        publish_time_ms: u64,
        data: Arc<[u8]>,
    ) {
        self.entries_added.fetch_add(1, Ordering::Relaxed);
        let has_cursors = !self.lock_cursors().is_empty();
        if has_cursors {
            self.cache.insert(Entry {
                position: pos,
                publish_time_ms,
                data,
            });
        }
        {
            let mut s = self.lock();
            if let Ok(i) = s
                .list
                .segments
                .binary_search_by_key(&pos.ledger_id, |seg| seg.ledger_id)
            {
                let seg = &mut s.list.segments[i];
                seg.entries = seg.entries.max(pos.entry_id + 1);
                seg.size = seg.size.max(ledger_bytes);
            }
        }
        self.confirmed.send_if_modified(|p| {
            let changed = pos > *p;
            *p = (*p).max(pos);
            changed
        });
    }

    fn fence(&self, s: &mut State) {
        if s.status != Status::Fenced {
            tracing::warn!(ledger = %self.name, "fenced: another owner opened this managed ledger");
        }
        s.status = Status::Fenced;
        s.current = None;
        fail_waiting(s, || MlError::Fenced(self.name.clone()));
    }

    fn roll_if_old(&self) {
        let mut s = self.lock();
        let old = s.status == Status::Open
            && s.current
                .as_ref()
                .is_some_and(|c| c.reserved > 0 && c.created.elapsed() >= self.cfg.max_ledger_age);
        if old {
            self.start_rollover(&mut s, RolloverReason::Age);
        }
    }

    fn start_rollover(&self, s: &mut State, reason: RolloverReason) {
        if s.status != Status::Open {
            return;
        }
        s.status = Status::RollingOver;
        let current = s.current.take();
        if let Some(this) = self.this() {
            tokio::spawn(async move { this.rollover(current, reason).await });
        }
    }

    /// Closes `cur` and describes it. After a write error, or when a close
    /// cannot wait for its pending appends, the ledger is closed at the
    /// writer's last confirmed entry, never by recovery: an append this
    /// managed ledger reported as failed must not be in the log (a resend of
    /// it would be stored twice; see `LedgerWriter::close_at_confirmed`).
    async fn finish_ledger(&self, cur: &Current, reason: RolloverReason) -> Result<LedgerInfo> {
        let id = cur.writer.id();
        let closed = if reason == RolloverReason::WriteError {
            cur.writer.close_at_confirmed().await
        } else {
            match cur.writer.close().await {
                Err(LedgerError::Fenced(n)) => Err(LedgerError::Fenced(n)),
                Err(e) => {
                    tracing::warn!(ledger = %self.name, ledger_id = id, error = %e, "close failed; closing at the last confirmed entry");
                    cur.writer.close_at_confirmed().await
                }
                ok => ok,
            }
        };
        let meta = match closed {
            Ok(meta) => meta,
            Err(LedgerError::Fenced(_)) => return Err(MlError::Fenced(self.name.clone())),
            Err(e) => return Err(e.into()),
        };
        let entries = meta.last_entry_id + 1;
        if entries == cur.reserved {
            return Ok(LedgerInfo {
                ledger_id: id,
                entries,
                size: cur.reserved_bytes,
                first_publish_ms: cur.first_publish_ms,
                last_publish_ms: cur.last_publish_ms,
                closed: true,
                offload: None,
            });
        }
        // Some appends failed: read the true end.
        let reader = self.ledgers.open(id, &self.cfg.password).await?;
        self.describe_closed(&reader).await
    }

    async fn rollover(self: Arc<Self>, current: Option<Current>, reason: RolloverReason) {
        let _update = self.info_update.lock().await;
        let mut backoff = Duration::from_millis(100);
        let mut closed: Option<LedgerInfo> = None;
        let mut current = current;
        loop {
            match self.try_rollover(&mut current, &mut closed, reason).await {
                Ok(()) => return,
                Err(MlError::Fenced(_)) => {
                    let mut s = self.lock();
                    self.fence(&mut s);
                    return;
                }
                Err(e) => {
                    let mut s = self.lock();
                    if s.status != Status::RollingOver {
                        return;
                    }
                    tracing::warn!(ledger = %self.name, error = %e, "rollover failed; retrying");
                    let msg = e.to_string();
                    fail_waiting(&mut s, || MlError::Unavailable(msg.clone()));
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    async fn try_rollover(
        &self,
        current: &mut Option<Current>,
        closed: &mut Option<LedgerInfo>,
        reason: RolloverReason,
    ) -> Result<()> {
        // The writer is kept until its ledger is closed: a failed close is
        // tried again with it (closing is idempotent), never skipped.
        if let Some(cur) = current.as_ref() {
            *closed = Some(self.finish_ledger(cur, reason).await?);
            *current = None;
        }
        let writer = self.create_ledger().await?;
        let (mut new_info, version) = {
            let s = self.lock();
            (s.info.clone(), s.info_version)
        };
        let mut dropped = None;
        if let Some(c) = closed.as_ref() {
            if let Some(li) = new_info
                .ledgers
                .iter_mut()
                .find(|l| l.ledger_id == c.ledger_id)
            {
                *li = c.clone();
            }
            if c.entries == 0 {
                new_info.ledgers.retain(|l| l.ledger_id != c.ledger_id);
                dropped = Some(c.ledger_id);
            }
        }
        new_info.ledgers.push(open_ledger_info(writer.id()));
        let key = info::ledger_key(&self.name);
        let stored = match info::store(&self.meta, &key, &new_info, version).await {
            Ok(s) => s,
            Err(e) => {
                self.delete_ledger(writer.id()).await;
                return Err(e);
            }
        };
        match stored {
            Stored::Ok(v) => {
                if let Some(id) = dropped {
                    self.delete_ledger(id).await;
                }
                {
                    let mut s = self.lock();
                    if s.status != Status::RollingOver {
                        // Closed or fenced meanwhile.
                        drop(s);
                        return Ok(());
                    }
                    // Keep the confirmed counts of the ledger list.
                    let confirmed: HashMap<u64, Segment> = s
                        .list
                        .segments
                        .iter()
                        .map(|seg| (seg.ledger_id, *seg))
                        .collect();
                    let mut list = list_from(&new_info);
                    for seg in &mut list.segments {
                        if let Some(c) = confirmed.get(&seg.ledger_id) {
                            seg.entries = seg.entries.max(c.entries);
                            seg.size = seg.size.max(c.size);
                        }
                    }
                    s.status = Status::Open;
                    drop(s);
                    self.install(new_info, list, v, writer);
                }
                *closed = None;
                if let Some(this) = self.this() {
                    this.offload_if_due();
                }
                Ok(())
            }
            Stored::Conflict => {
                self.delete_ledger(writer.id()).await;
                Err(MlError::Fenced(self.name.clone()))
            }
        }
    }

    async fn reader_for(&self, ledger: u64) -> Result<Arc<LedgerReader>> {
        {
            let s = self.lock();
            if let Some(cur) = s.current.as_ref().filter(|c| c.writer.id() == ledger) {
                return Ok(Arc::new(cur.writer.reader()));
            }
            if let Some(r) = s.readers.get(&ledger) {
                return Ok(r.clone());
            }
        }
        let reader = Arc::new(self.ledgers.open(ledger, &self.cfg.password).await?);
        if reader.is_closed() {
            self.lock().readers.insert(ledger, reader.clone());
        }
        Ok(reader)
    }

    pub(crate) async fn read_positions(&self, positions: &[Position]) -> Result<Vec<Entry>> {
        {
            let s = self.lock();
            if let Some(p) = positions.iter().find(|p| !s.list.contains(**p)) {
                return Err(MlError::InvalidPosition(*p));
            }
        }
        let mut out: Vec<Option<Entry>> = positions.iter().map(|p| self.cache.get(*p)).collect();
        // Misses are read from the bookies, many at once (scattered unacked
        // positions after a restart are mostly single-entry runs).
        let misses: Vec<(usize, Position)> = out
            .iter()
            .enumerate()
            .filter(|(_, e)| e.is_none())
            .map(|(i, _)| (i, positions[i]))
            .collect();
        // Offloaded ledgers are read from tiered storage, a run at a time.
        let misses = self.read_offloaded(&mut out, misses).await?;
        let mut reads = futures::stream::iter(misses)
            .map(|(i, p)| async move { (i, self.read_from_bookies(p).await) })
            .buffer_unordered(READ_CONCURRENCY);
        while let Some((i, r)) = reads.next().await {
            out[i] = Some(r?);
        }
        Ok(out.into_iter().flatten().collect())
    }

    async fn read_from_bookies(&self, pos: Position) -> Result<Entry> {
        let raw = match self
            .reader_for(pos.ledger_id)
            .await?
            .read_entry(pos.entry_id)
            .await
        {
            Ok(r) => r,
            Err(_) => {
                // The ensemble may have changed (re-replication): retry once
                // with fresh metadata.
                self.lock().readers.remove(&pos.ledger_id);
                self.reader_for(pos.ledger_id)
                    .await?
                    .read_entry(pos.entry_id)
                    .await?
            }
        };
        let (h, payload) =
            entry::decode(&raw).map_err(|e| MlError::Corrupt(format!("{}/{pos}", self.name), e))?;
        Ok(Entry {
            position: pos,
            publish_time_ms: h.publish_time_ms,
            data: payload.into(),
        })
    }

    /// Drops cached entries every cursor has read past.
    pub(crate) fn evict_read_entries(&self) {
        let slowest = self
            .lock_cursors()
            .values()
            .map(|c| c.read_position())
            .min();
        match slowest {
            Some(p) => self.cache.evict_before(p),
            None => self.cache.clear(),
        }
    }

    async fn trim(&self) -> Result<()> {
        let _update = self.info_update.lock().await;
        let slowest = self
            .lock_cursors()
            .values()
            .map(|c| c.mark_delete_position())
            .min();
        let now = now_ms();
        let policy = *self.policies.lock().unwrap_or_else(|p| p.into_inner());
        let doomed = {
            let s = self.lock();
            if !matches!(s.status, Status::Open | Status::RollingOver) {
                return Ok(());
            }
            // With no cursor, everything counts as consumed.
            let consumed_through = slowest.unwrap_or_else(|| s.list.last_confirmed());
            let current = s.current.as_ref().map(|c| c.writer.id());
            let mut remaining = s.list.total_size();
            let mut doomed = Vec::new();
            for (li, seg) in s.info.ledgers.iter().zip(s.list.segments.iter()) {
                let open = !li.closed || Some(li.ledger_id) == current;
                let consumed = li.ledger_id < consumed_through.ledger_id
                    || (li.ledger_id == consumed_through.ledger_id
                        && consumed_through.entry_id >= seg.entries - 1);
                if open || !consumed {
                    break;
                }
                let expired = policy
                    .retention_time
                    .is_some_and(|t| now.saturating_sub(li.last_publish_ms) >= millis(t));
                let over_size = policy.retention_bytes.is_some_and(|b| remaining > b);
                if !(expired || over_size) {
                    break;
                }
                remaining -= seg.size;
                doomed.push(li.ledger_id);
            }
            if doomed.is_empty() {
                return Ok(());
            }
            doomed
        };
        let offloaded = self.offload_leftovers_of(&doomed);
        let stored = self
            .update_info_and(
                |info| {
                    info.ledgers.retain(|l| !doomed.contains(&l.ledger_id));
                    info.offload_leftovers.extend(offloaded);
                },
                |s| {
                    s.list
                        .segments
                        .retain(|seg| !doomed.contains(&seg.ledger_id));
                    for id in &doomed {
                        s.readers.remove(id);
                    }
                },
            )
            .await;
        match stored {
            Ok(()) => {
                for id in doomed {
                    tracing::debug!(ledger = %self.name, ledger_id = id, "trimming ledger");
                    self.delete_ledger(id).await;
                }
                self.delete_leftovers().await;
                Ok(())
            }
            Err(MlError::Fenced(name)) => {
                let mut s = self.lock();
                self.fence(&mut s);
                Err(MlError::Fenced(name))
            }
            Err(e) => Err(e),
        }
    }
}

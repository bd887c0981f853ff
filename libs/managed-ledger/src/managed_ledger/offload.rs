//! Tiered storage for a managed ledger: closed ledgers copied to an object
//! store (libs/offload), read back from there, and their bookie copies
//! deleted after the deletion lag.
//!
//! Invariants (docs/OFFLOAD.md): only closed ledgers other than the one being
//! written are offloaded; a ledger's `OffloadContext` changes only by
//! compare-and-set of the ledger list (under `info_update`); `complete` is
//! stored only after both objects exist; the bookie copy is deleted only
//! after `bookie_deleted` is stored, which follows `complete` by the lag.
//! Producing never waits for any of this: it runs beside appends.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use magnetar_offload::{new_uuid, DriverConfig, OffloadError, OffloadedLedger, Offloader};
use serde::Serialize;

use super::{millis, now_ms, Inner, ManagedLedger};
use crate::entry::{self, Entry};
use crate::error::{MlError, Result};
use crate::info::{LedgerInfo, OffloadContext, OffloadLeftover};
use crate::position::Position;

/// Entries read from the bookies per request while copying a ledger.
const COPY_BATCH: i64 = 256;

/// Where reads of a ledger that is both offloaded and on the bookies go
/// (Pulsar's `managedLedgerOffloadedReadPriority`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReadPriority {
    #[default]
    TieredStorageFirst,
    BookkeeperFirst,
}

impl ReadPriority {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "tiered-storage-first" => Some(Self::TieredStorageFirst),
            "bookkeeper-first" => Some(Self::BookkeeperFirst),
            _ => None,
        }
    }
}

/// The part of the namespace's offload policies a managed ledger acts on.
#[derive(Clone, Debug, Default)]
pub struct OffloadPolicy {
    /// `None`: no offload (reads of already offloaded ledgers still work
    /// through the driver recorded with each ledger).
    pub offloader: Option<Offloader>,
    /// Delete the bookie copy this long after the offload (`None` = never).
    pub deletion_lag: Option<Duration>,
    pub read_priority: ReadPriority,
    /// Offload automatically so that at most this many bytes stay on the
    /// bookies (`None` = only when asked).
    pub threshold_bytes: Option<u64>,
    /// Offload automatically closed ledgers whose last entry is older than
    /// this (`None` = not by age).
    pub threshold_age: Option<Duration>,
}

/// Pulsar's offload status (`OffloadProcessStatus`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OffloadStatus {
    /// `NOT_RUN`, `RUNNING`, `SUCCESS` or `ERROR`.
    pub status: &'static str,
    pub last_error: String,
    /// The first entry not offloaded when the last run ended.
    pub first_unoffloaded_message: Position,
}

/// Offload state of one managed ledger.
pub(crate) struct OffloadState {
    policy: Mutex<OffloadPolicy>,
    /// Open offloaded ledgers (their indexes are cached here).
    readers: Mutex<HashMap<(u64, String), Arc<OffloadedLedger>>>,
    /// Offloaders built from the driver recorded with a ledger, by driver.
    by_driver: Mutex<HashMap<BTreeMap<String, String>, Offloader>>,
    status: Mutex<OffloadStatus>,
    running: AtomicBool,
    /// A rollover found an offload running: check the thresholds again
    /// when it ends (it may have been started before that ledger closed).
    recheck: AtomicBool,
}

impl Default for OffloadState {
    fn default() -> Self {
        OffloadState {
            policy: Mutex::default(),
            readers: Mutex::default(),
            by_driver: Mutex::default(),
            status: Mutex::new(OffloadStatus {
                status: "NOT_RUN",
                last_error: String::new(),
                first_unoffloaded_message: Position::new(0, 0),
            }),
            running: AtomicBool::new(false),
            recheck: AtomicBool::new(false),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn offload_error(e: OffloadError) -> MlError {
    // Retriable: the store may be back on the next try.
    MlError::Unavailable(format!("tiered storage: {e}"))
}

/// Clears the running flag however the run ends (even if its task is
/// dropped midway).
struct Running(Arc<Inner>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.offload.running.store(false, Ordering::Release);
    }
}

impl ManagedLedger {
    /// Sets the offload policy in force (a namespace policy changed).
    pub fn set_offload_policy(&self, p: OffloadPolicy) {
        *lock(&self.inner.offload.policy) = p;
    }

    pub fn offload_policy(&self) -> OffloadPolicy {
        lock(&self.inner.offload.policy).clone()
    }

    pub fn offload_status(&self) -> OffloadStatus {
        lock(&self.inner.offload.status).clone()
    }

    /// Offloads every closed ledger before the ledger of `up_to` (never the
    /// one being written); returns the first position not offloaded.
    /// `MlError::Unavailable(OFFLOAD_RUNNING)` while another runs.
    pub async fn offload_up_to(&self, up_to: Position) -> Result<Position> {
        self.start_offload(up_to)?.await
    }

    /// Marks an offload running (status RUNNING) now, or refuses with
    /// `OFFLOAD_RUNNING`; the returned future does the work (spawn it).
    pub fn start_offload(
        &self,
        up_to: Position,
    ) -> Result<impl std::future::Future<Output = Result<Position>> + Send + 'static> {
        self.inner.clone().start_offload(up_to)
    }

    /// Whether an offload is running now.
    pub fn offload_running(&self) -> bool {
        self.inner.offload.running.load(Ordering::Acquire)
    }

    /// Housekeeping's part: bookie copies past the deletion lag, then an
    /// automatic offload when the bookies hold more than the threshold.
    pub async fn offload_housekeeping(&self) -> Result<()> {
        if !self.inner.lock().info.offload_leftovers.is_empty() {
            let _update = self.inner.info_update.lock().await;
            self.inner.delete_leftovers().await;
        }
        self.inner.delete_lagged_bookie_copies().await?;
        let Some(up_to) = self.inner.threshold_position() else {
            return Ok(());
        };
        match self.offload_up_to(up_to).await {
            Err(MlError::Unavailable(m)) if m == OFFLOAD_RUNNING => Ok(()),
            r => r.map(|_| ()),
        }
    }
}

/// The error text of an offload refused because one runs (the broker
/// answers 409 to it).
pub const OFFLOAD_RUNNING: &str = "an offload is already running";

impl Inner {
    fn start_offload(
        self: Arc<Self>,
        up_to: Position,
    ) -> Result<impl std::future::Future<Output = Result<Position>> + Send + 'static> {
        if self.offload.running.swap(true, Ordering::AcqRel) {
            return Err(MlError::Unavailable(OFFLOAD_RUNNING.to_string()));
        }
        lock(&self.offload.status).status = "RUNNING";
        let running = Running(self.clone());
        Ok(async move {
            let result = self.offload_before(up_to).await;
            {
                let mut st = lock(&self.offload.status);
                match &result {
                    Ok(first) => {
                        st.status = "SUCCESS";
                        st.last_error.clear();
                        st.first_unoffloaded_message = *first;
                    }
                    Err(e) => {
                        st.status = "ERROR";
                        st.last_error = e.to_string();
                    }
                }
            }
            drop(running);
            if result.is_ok() && self.offload.recheck.swap(false, Ordering::AcqRel) {
                self.offload_if_due();
            }
            result
        })
    }

    /// After a rollover: the ledger just closed may put the bookies over
    /// the offload thresholds (Pulsar checks at every ledger close, not only
    /// periodically). Runs in the background; one already running covers it,
    /// and housekeeping retries a failure.
    pub(super) fn offload_if_due(self: Arc<Self>) {
        if lock(&self.offload.policy).offloader.is_none() {
            return;
        }
        let Some(up_to) = self.threshold_position() else {
            return;
        };
        let name = self.name.clone();
        self.offload.recheck.store(true, Ordering::Release);
        if let Ok(offload) = self.clone().start_offload(up_to) {
            self.offload.recheck.store(false, Ordering::Release);
            tokio::spawn(async move {
                if let Err(e) = offload.await {
                    tracing::warn!(ledger = %name, error = %e, "offload after rollover");
                }
            });
        }
    }

    /// Ledgers to offload: closed, not current, with entries, before
    /// `up_to`'s ledger, not yet completely offloaded.
    fn offload_candidates(&self, up_to: Position) -> Vec<(u64, i64)> {
        let s = self.lock();
        let current = s.current.as_ref().map(|c| c.writer.id());
        s.info
            .ledgers
            .iter()
            .zip(s.list.segments.iter())
            .take_while(|(li, _)| li.ledger_id < up_to.ledger_id)
            .filter(|(li, seg)| {
                li.closed
                    && Some(li.ledger_id) != current
                    && seg.entries > 0
                    && !li.offload.as_ref().is_some_and(|o| o.complete)
            })
            .map(|(li, seg)| (li.ledger_id, seg.entries))
            .collect()
    }

    async fn offload_before(&self, up_to: Position) -> Result<Position> {
        let offloader = lock(&self.offload.policy).offloader.clone();
        let Some(offloader) = offloader else {
            return Err(MlError::Unavailable(
                "no offload driver is configured for this namespace".into(),
            ));
        };
        for (ledger_id, entries) in self.offload_candidates(up_to) {
            self.offload_ledger(&offloader, ledger_id, entries).await?;
        }
        Ok(self.first_unoffloaded())
    }

    /// The first entry of the first ledger not completely offloaded.
    fn first_unoffloaded(&self) -> Position {
        let s = self.lock();
        let first = s
            .info
            .ledgers
            .iter()
            .find(|li| !li.offload.as_ref().is_some_and(|o| o.complete));
        match first {
            Some(li) => Position::new(li.ledger_id, 0),
            None => s.list.next_valid(s.list.last_confirmed()),
        }
    }

    /// Copies one ledger: records a fresh attempt, writes both objects,
    /// then records it complete. A failed attempt's objects are deleted
    /// (now, or by the next attempt, which finds its uuid recorded).
    async fn offload_ledger(
        &self,
        offloader: &Offloader,
        ledger_id: u64,
        entries: i64,
    ) -> Result<()> {
        let uuid = new_uuid();
        let attempt = OffloadContext {
            uuid: uuid.clone(),
            complete: false,
            bookie_deleted: false,
            timestamp_ms: now_ms(),
            driver: offloader.config().metadata(),
        };
        // The previous attempt, if it failed, becomes a leftover in the same
        // CAS that records this one, and is deleted now or by housekeeping.
        let previous = self
            .update_context(
                ledger_id,
                |_| Some(attempt),
                |old| old.filter(|o| !o.complete),
            )
            .await?;
        if previous.is_some() {
            let _update = self.info_update.lock().await;
            self.delete_leftovers().await;
        }
        let copied = self.copy_ledger(offloader, &uuid, ledger_id, entries).await;
        let done = match copied {
            Ok(()) => {
                self.set_context(ledger_id, |ctx| {
                    ctx.filter(|c| c.uuid == uuid).map(|c| OffloadContext {
                        complete: true,
                        timestamp_ms: now_ms(),
                        ..c
                    })
                })
                .await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = done {
            let _ = offloader.delete(&uuid, ledger_id).await;
            return Err(e);
        }
        tracing::info!(ledger = %self.name, ledger_id, %uuid, "ledger offloaded");
        Ok(())
    }

    /// Streams the ledger's entries (as stored: header and payload) from the
    /// bookies into the object store, a batch at a time.
    async fn copy_ledger(
        &self,
        offloader: &Offloader,
        uuid: &str,
        ledger_id: u64,
        entries: i64,
    ) -> Result<()> {
        let reader = self.reader_for(ledger_id).await?;
        let mut writer = offloader.writer(uuid, ledger_id);
        let mut first = 0;
        while first < entries {
            let last = (first + COPY_BATCH - 1).min(entries - 1);
            let batch = match reader.read_range(first, last).await {
                Ok(b) => b,
                Err(e) => {
                    writer.abort().await;
                    return Err(e.into());
                }
            };
            for (i, raw) in batch.iter().enumerate() {
                let id = (first + i as i64) as u64;
                writer.append(id, raw).await.map_err(offload_error)?;
            }
            first = last + 1;
        }
        let props = BTreeMap::from([("managedLedgerName".to_string(), self.name.clone())]);
        writer.finish(props).await.map_err(offload_error)?;
        Ok(())
    }

    /// Changes one ledger's offload context by compare-and-set. Fails if
    /// the ledger left the list.
    async fn set_context(
        &self,
        ledger_id: u64,
        change: impl FnOnce(Option<OffloadContext>) -> Option<OffloadContext>,
    ) -> Result<()> {
        self.update_context(ledger_id, change, |_| None)
            .await
            .map(|_| ())
    }

    /// `set_context`, also recording as a leftover what `leftover` picks
    /// from the replaced context; returns that leftover's context.
    async fn update_context(
        &self,
        ledger_id: u64,
        change: impl FnOnce(Option<OffloadContext>) -> Option<OffloadContext>,
        leftover: impl FnOnce(Option<OffloadContext>) -> Option<OffloadContext>,
    ) -> Result<Option<OffloadContext>> {
        let _update = self.info_update.lock().await;
        let mut previous = None;
        let mut found = false;
        let stored = self
            .update_info(|info| {
                if let Some(li) = info.ledgers.iter_mut().find(|l| l.ledger_id == ledger_id) {
                    found = true;
                    let old = li.offload.take();
                    li.offload = change(old.clone());
                    previous = leftover(old);
                    if let Some(context) = previous.clone() {
                        info.offload_leftovers
                            .push(OffloadLeftover { ledger_id, context });
                    }
                }
            })
            .await;
        if let Err(MlError::Fenced(name)) = stored {
            let mut s = self.lock();
            self.fence(&mut s);
            return Err(MlError::Fenced(name));
        }
        stored?;
        if !found {
            return Err(MlError::Unavailable(format!(
                "ledger {ledger_id} was trimmed while being offloaded"
            )));
        }
        Ok(previous)
    }

    /// Records, then performs, the deletion of bookie copies whose offload
    /// completed at least the deletion lag ago.
    async fn delete_lagged_bookie_copies(&self) -> Result<()> {
        let Some(lag) = lock(&self.offload.policy).deletion_lag else {
            return Ok(());
        };
        let due: Vec<u64> = {
            let s = self.lock();
            let now = now_ms();
            s.info
                .ledgers
                .iter()
                .filter(|li| {
                    li.offload.as_ref().is_some_and(|o| {
                        o.complete
                            && !o.bookie_deleted
                            && now.saturating_sub(o.timestamp_ms) >= millis(lag)
                    })
                })
                .map(|li| li.ledger_id)
                .collect()
        };
        for ledger_id in due {
            self.set_context(ledger_id, |ctx| {
                ctx.map(|c| OffloadContext {
                    bookie_deleted: true,
                    ..c
                })
            })
            .await?;
            self.lock().readers.remove(&ledger_id);
            self.delete_ledger(ledger_id).await;
            tracing::info!(ledger = %self.name, ledger_id, "bookie copy of an offloaded ledger deleted");
        }
        Ok(())
    }

    /// The position before which ledgers must go by the thresholds: so that
    /// at most `threshold_bytes` stay on the bookies, and none older than
    /// `threshold_age`. `None` when nothing is due.
    fn threshold_position(&self) -> Option<Position> {
        let (bytes, age) = {
            let p = lock(&self.offload.policy);
            (p.threshold_bytes, p.threshold_age)
        };
        let s = self.lock();
        let ledgers = || s.info.ledgers.iter().zip(s.list.segments.iter());
        let pending = |li: &LedgerInfo| !li.offload.as_ref().is_some_and(|o| o.complete);
        let by_size = bytes.and_then(|threshold| {
            let mut kept = 0u64;
            ledgers()
                .rev()
                .filter(|(li, _)| pending(li))
                .find_map(|(li, seg)| {
                    kept += seg.size;
                    // This ledger and older ones go; the next one stays.
                    (kept > threshold).then(|| Position::new(li.ledger_id + 1, 0))
                })
        });
        let cutoff = age.map(|a| now_ms().saturating_sub(millis(a)));
        let by_age = cutoff.and_then(|cutoff| {
            ledgers()
                .filter(|(li, _)| li.closed && pending(li) && li.last_publish_ms < cutoff)
                .map(|(li, _)| Position::new(li.ledger_id + 1, 0))
                .next_back()
        });
        by_size.max(by_age)
    }

    /// The offloader for a ledger's recorded driver: the configured one when
    /// it is the same, else one built from the record.
    fn offloader_for(&self, ctx: &OffloadContext) -> Result<Offloader> {
        if let Some(o) = lock(&self.offload.policy).offloader.as_ref() {
            if o.config().metadata() == ctx.driver {
                return Ok(o.clone());
            }
        }
        offloader_from_record(&self.offload.by_driver, &ctx.driver).ok_or_else(|| {
            MlError::Unavailable(format!(
                "tiered storage: the driver {:?} of an offloaded ledger cannot be built",
                ctx.driver
            ))
        })
    }

    /// The objects of `ledgers` (offloaded or being offloaded), as the
    /// leftovers their trimming leaves.
    pub(super) fn offload_leftovers_of(&self, ledgers: &[u64]) -> Vec<OffloadLeftover> {
        let s = self.lock();
        s.info
            .ledgers
            .iter()
            .filter(|li| ledgers.contains(&li.ledger_id))
            .filter_map(|li| {
                li.offload.clone().map(|context| OffloadLeftover {
                    ledger_id: li.ledger_id,
                    context,
                })
            })
            .collect()
    }

    /// Deletes the recorded leftovers, then forgets those that went. What
    /// fails stays recorded and the next housekeeping tries it again. The
    /// caller holds `info_update`.
    pub(super) async fn delete_leftovers(&self) {
        let leftovers = self.lock().info.offload_leftovers.clone();
        let mut gone = Vec::new();
        for l in leftovers {
            let (ledger_id, ctx) = (l.ledger_id, &l.context);
            lock(&self.offload.readers).remove(&(ledger_id, ctx.uuid.clone()));
            let deleted = match self.offloader_for(ctx) {
                Ok(o) => o.delete(&ctx.uuid, ledger_id).await.map_err(offload_error),
                Err(e) => Err(e),
            };
            match deleted {
                Ok(()) => gone.push(l),
                Err(e) => {
                    tracing::warn!(ledger = %self.name, ledger_id, error = %e, "could not delete offloaded objects; housekeeping will retry")
                }
            }
        }
        if gone.is_empty() {
            return;
        }
        let forgotten = self
            .update_info(|info| info.offload_leftovers.retain(|l| !gone.contains(l)))
            .await;
        if let Err(e) = forgotten {
            // Deleting again later is harmless (deletes are idempotent).
            tracing::warn!(ledger = %self.name, error = %e, "could not record deleted offload objects");
        }
    }

    /// Reads the misses that tiered storage serves (ledgers offloaded and
    /// either gone from the bookies or read tiered-storage-first) into
    /// `out`, a contiguous run per request; returns the other misses.
    pub(super) async fn read_offloaded(
        &self,
        out: &mut [Option<Entry>],
        misses: Vec<(usize, Position)>,
    ) -> Result<Vec<(usize, Position)>> {
        let routed = self.tiered_ledgers();
        if routed.is_empty() {
            return Ok(misses);
        }
        let (tiered, rest): (Vec<_>, Vec<_>) = misses
            .into_iter()
            .partition(|(_, p)| routed.contains_key(&p.ledger_id));
        let mut i = 0;
        while i < tiered.len() {
            // A run: same ledger, consecutive entries.
            let mut j = i + 1;
            while j < tiered.len()
                && tiered[j].1.ledger_id == tiered[i].1.ledger_id
                && tiered[j].1.entry_id == tiered[j - 1].1.entry_id + 1
            {
                j += 1;
            }
            let ctx = &routed[&tiered[i].1.ledger_id];
            self.read_run(ctx, &tiered[i..j], out).await?;
            i = j;
        }
        Ok(rest)
    }

    fn tiered_ledgers(&self) -> HashMap<u64, OffloadContext> {
        let priority = lock(&self.offload.policy).read_priority;
        let s = self.lock();
        s.info
            .ledgers
            .iter()
            .filter_map(|li: &LedgerInfo| {
                let o = li.offload.as_ref().filter(|o| o.complete)?;
                let tiered = o.bookie_deleted || priority == ReadPriority::TieredStorageFirst;
                tiered.then(|| (li.ledger_id, o.clone()))
            })
            .collect()
    }

    async fn read_run(
        &self,
        ctx: &OffloadContext,
        run: &[(usize, Position)],
        out: &mut [Option<Entry>],
    ) -> Result<()> {
        let ledger_id = run[0].1.ledger_id;
        let reader = self.offloaded_reader(ctx, ledger_id).await?;
        let (first, last) = (run[0].1.entry_id, run[run.len() - 1].1.entry_id);
        let raws = reader
            .read(first as u64, last as u64)
            .await
            .map_err(offload_error)?;
        for ((slot, pos), (_, raw)) in run.iter().zip(raws) {
            let (h, payload) = entry::decode(&raw)
                .map_err(|e| MlError::Corrupt(format!("{}/{pos} (offloaded)", self.name), e))?;
            out[*slot] = Some(Entry {
                position: *pos,
                publish_time_ms: h.publish_time_ms,
                data: payload.into(),
            });
        }
        Ok(())
    }

    async fn offloaded_reader(
        &self,
        ctx: &OffloadContext,
        ledger_id: u64,
    ) -> Result<Arc<OffloadedLedger>> {
        let key = (ledger_id, ctx.uuid.clone());
        if let Some(r) = lock(&self.offload.readers).get(&key) {
            return Ok(r.clone());
        }
        let opened = self.offloader_for(ctx)?.open(&ctx.uuid, ledger_id).await;
        let reader = Arc::new(opened.map_err(offload_error)?);
        lock(&self.offload.readers).insert(key, reader.clone());
        Ok(reader)
    }
}

/// An offloader for a driver record (cached per record); `None` if the
/// record does not describe a usable driver.
fn offloader_from_record(
    cache: &Mutex<HashMap<BTreeMap<String, String>, Offloader>>,
    record: &BTreeMap<String, String>,
) -> Option<Offloader> {
    if let Some(o) = lock(cache).get(record) {
        return Some(o.clone());
    }
    let config = DriverConfig::from_metadata(record).ok()?;
    let o = Offloader::new(config).ok()?;
    lock(cache).insert(record.clone(), o.clone());
    Some(o)
}

/// Deletes the offloaded objects of every ledger of a managed ledger being
/// deleted, and its leftovers, through a `known` offloader where the recorded
/// driver is the same, else through one built from the record.
/// Fails on the first object that cannot be deleted, naming it.
pub(crate) async fn delete_all_offloaded(
    name: &str,
    stored: &crate::info::ManagedLedgerInfo,
    known: HashMap<BTreeMap<String, String>, Offloader>,
) -> Result<()> {
    let cache = Mutex::new(known);
    let offloaded = stored
        .ledgers
        .iter()
        .filter_map(|li| li.offload.as_ref().map(|ctx| (li.ledger_id, ctx)));
    let leftovers = stored
        .offload_leftovers
        .iter()
        .map(|l| (l.ledger_id, &l.context));
    for (ledger_id, ctx) in offloaded.chain(leftovers) {
        let Some(o) = offloader_from_record(&cache, &ctx.driver) else {
            // Nothing can reach these objects (a driver this build does not
            // know): refusing the delete would keep the topic forever.
            tracing::warn!(ledger = %name, ledger_id, "offloaded objects left: driver cannot be built");
            continue;
        };
        o.delete(&ctx.uuid, ledger_id).await.map_err(|e| {
            MlError::Unavailable(format!(
                "tiered storage: cannot delete the objects of ledger {ledger_id} of {name}: {e}; \
                 the managed ledger is kept, delete it again once the store is back"
            ))
        })?;
    }
    Ok(())
}

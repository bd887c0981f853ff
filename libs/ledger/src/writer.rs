//! Writing a ledger: the single writer appends entries with dense ids, sends each
//! to the `Qw` bookies of its write set, and completes appends in id order once
//! `Qa` have acknowledged. A bookie that fails is replaced (ensemble change:
//! a new fragment from the first unconfirmed entry, CAS'ed into the metadata)
//! and the unconfirmed entries are resent. A fenced answer means a recovery
//! took the ledger over: the writer stops and every pending append fails.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use magnetar_proto::bookie as pb;
use tokio::sync::oneshot;

use crate::bookie_client::AddFailure;
use crate::client::LedgerClient;
use crate::error::LedgerError;
use crate::metadata::{self, Fragment, LedgerState, Versioned};
use crate::quorum::{write_set, AckTracker};
use crate::reader::LedgerReader;

/// How long a close waits for pending appends or an ensemble change.
const CLOSE_DEADLINE: Duration = Duration::from_secs(30);

struct Pending {
    /// Shared by every bookie send of the entry (and resends): no copies.
    payload: bytes::Bytes,
    crc32c: u32,
    waiter: Option<oneshot::Sender<Result<i64, LedgerError>>>,
    /// Which bookie each write-set position was sent to.
    sent: BTreeMap<usize, String>,
}

#[derive(Clone, Debug)]
enum Stopped {
    Fenced,
    Closed,
    Failed(String),
}

struct State {
    meta: Versioned,
    next_entry: i64,
    tracker: AckTracker,
    pending: BTreeMap<i64, Pending>,
    length: u64,
    stopped: Option<Stopped>,
}

struct Shared {
    id: u64,
    master_key: Vec<u8>,
    client: LedgerClient,
    state: Mutex<State>,
    /// Serializes ensemble changes (each is a metadata CAS).
    changing: tokio::sync::Mutex<()>,
    idle: tokio::sync::Notify,
}

/// An append that has been sent; resolves once `Qa` bookies confirmed it.
pub struct PendingAppend {
    ledger: u64,
    entry: i64,
    rx: oneshot::Receiver<Result<i64, LedgerError>>,
}

impl PendingAppend {
    /// The entry id this append was given.
    pub fn entry_id(&self) -> i64 {
        self.entry
    }

    pub async fn wait(self) -> Result<i64, LedgerError> {
        self.rx
            .await
            .map_err(|_| LedgerError::Closed(self.ledger))?
    }
}

/// The writer of one ledger. Cheap to clone; all clones write the same ledger.
#[derive(Clone)]
pub struct LedgerWriter {
    shared: Arc<Shared>,
}

impl Stopped {
    fn error(&self, id: u64) -> LedgerError {
        match self {
            Stopped::Fenced => LedgerError::Fenced(id),
            Stopped::Closed => LedgerError::Closed(id),
            Stopped::Failed(reason) => LedgerError::Bookie {
                addr: "ensemble".into(),
                reason: reason.clone(),
            },
        }
    }
}

impl LedgerWriter {
    pub(crate) fn new(client: LedgerClient, meta: Versioned, master_key: Vec<u8>) -> Self {
        let id = meta.meta.id;
        let qa = meta.meta.ack_quorum;
        Self {
            shared: Arc::new(Shared {
                id,
                master_key,
                client,
                state: Mutex::new(State {
                    meta,
                    next_entry: 0,
                    tracker: AckTracker::new(qa, -1),
                    pending: BTreeMap::new(),
                    length: 0,
                    stopped: None,
                }),
                changing: tokio::sync::Mutex::new(()),
                idle: tokio::sync::Notify::new(),
            }),
        }
    }

    pub fn id(&self) -> u64 {
        self.shared.id
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Last add confirmed: every entry up to it is on `Qa` bookies.
    pub fn last_add_confirmed(&self) -> i64 {
        self.lock().tracker.lac()
    }

    pub fn metadata(&self) -> metadata::LedgerMetadata {
        self.lock().meta.meta.clone()
    }

    /// Appends one entry; resolves with its id once `Qa` bookies have it
    /// (completions arrive in id order).
    pub async fn append(&self, data: Vec<u8>) -> Result<i64, LedgerError> {
        self.start_append(data)?.wait().await
    }

    /// Assigns the next entry id and sends the entry now, without waiting: the
    /// order of calls is the order of entry ids. The returned handle resolves
    /// once `Qa` bookies have the entry. Callers that must keep several appends
    /// in a known order (a managed ledger) use this instead of `append`.
    pub fn start_append(&self, data: Vec<u8>) -> Result<PendingAppend, LedgerError> {
        if data.len() > self.shared.client.config().max_entry_bytes {
            return Err(LedgerError::TooLarge(data.len()));
        }
        let payload = bytes::Bytes::from(data);
        let crc32c = crc32c::crc32c(&payload);
        let (tx, rx) = oneshot::channel();
        let (entry, sends) = {
            let mut s = self.lock();
            if let Some(stopped) = &s.stopped {
                return Err(stopped.error(self.shared.id));
            }
            let entry = s.next_entry;
            s.next_entry += 1;
            s.tracker.track(entry);
            let m = &s.meta.meta;
            let frag = m.last_fragment().cloned().unwrap_or(Fragment {
                first_entry: 0,
                bookies: vec![],
            });
            let sends: BTreeMap<usize, String> = write_set(entry, m.ensemble_size, m.write_quorum)
                .into_iter()
                .filter_map(|p| frag.bookies.get(p).map(|a| (p, a.clone())))
                .collect();
            s.pending.insert(
                entry,
                Pending {
                    payload: payload.clone(),
                    crc32c,
                    waiter: Some(tx),
                    sent: sends.clone(),
                },
            );
            (entry, sends)
        };
        for (pos, addr) in sends {
            self.send(entry, pos, addr, payload.clone(), crc32c);
        }
        Ok(PendingAppend {
            ledger: self.shared.id,
            entry,
            rx,
        })
    }

    /// A reader over what this writer has confirmed, with the writer's current
    /// ensembles (they change when a bookie is replaced).
    pub fn reader(&self) -> LedgerReader {
        LedgerReader::new(self.shared.client.clone(), self.metadata())
    }

    fn send(&self, entry: i64, pos: usize, addr: String, payload: bytes::Bytes, crc32c: u32) {
        let bookie = match self.shared.client.pool().get(&addr) {
            Ok(b) => b,
            // Callers hold no lock here, and a failure's handling (the
            // ensemble change) runs on a task of its own.
            Err(e) => return self.on_result(entry, pos, addr, Err(AddFailure::Transport(e))),
        };
        let req = pb::AddRequest {
            ledger_id: self.shared.id,
            entry_id: entry,
            payload,
            crc32c,
            lac: self.last_add_confirmed(),
            master_key: self.shared.master_key.clone().into(),
            recovery: false,
            // Set by the bookie client.
            request_id: 0,
        };
        let this = self.clone();
        bookie.add(
            req,
            Box::new(move |result| this.on_result(entry, pos, addr, result)),
        );
    }

    fn on_result(&self, entry: i64, pos: usize, addr: String, result: Result<(), AddFailure>) {
        match result {
            Ok(()) => {
                let mut s = self.lock();
                // Ignore acks from a bookie that has since been replaced at this position.
                let current = s
                    .pending
                    .get(&entry)
                    .and_then(|p| p.sent.get(&pos))
                    .cloned();
                if current.as_deref() != Some(addr.as_str()) {
                    return;
                }
                for done in s.tracker.ack(entry, pos) {
                    if let Some(mut p) = s.pending.remove(&done) {
                        s.length += p.payload.len() as u64;
                        if let Some(w) = p.waiter.take() {
                            let _ = w.send(Ok(done));
                        }
                    }
                }
                if s.pending.is_empty() {
                    self.shared.idle.notify_waiters();
                }
            }
            Err(AddFailure::Fenced) | Err(AddFailure::Unauthorized) => self.stop(Stopped::Fenced),
            Err(AddFailure::Refused(reason)) | Err(AddFailure::Transport(reason)) => {
                tracing::warn!(ledger = self.shared.id, entry, bookie = %addr, %reason, "add failed; replacing bookie");
                let this = self.clone();
                tokio::spawn(async move {
                    if let Err(e) = this.replace_bookie(&addr).await {
                        tracing::error!(ledger = this.shared.id, error = %e, "ensemble change failed");
                        this.stop(Stopped::Failed(e.to_string()));
                    }
                });
            }
        }
    }

    /// Stops the writer and fails every pending append.
    fn stop(&self, why: Stopped) {
        let waiters: Vec<_> = {
            let mut s = self.lock();
            if s.stopped.is_none() {
                s.stopped = Some(why.clone());
            }
            std::mem::take(&mut s.pending)
                .into_values()
                .filter_map(|mut p| p.waiter.take())
                .collect()
        };
        for w in waiters {
            let _ = w.send(Err(why.error(self.shared.id)));
        }
        self.shared.idle.notify_waiters();
    }

    /// Ensemble change: replaces `failed` in the current ensemble from the first
    /// unconfirmed entry on, then resends what that position had pending.
    async fn replace_bookie(&self, failed: &str) -> Result<(), LedgerError> {
        let _one_at_a_time = self.shared.changing.lock().await;
        let (versioned, first_unconfirmed) = {
            let s = self.lock();
            if s.stopped.is_some() {
                return Ok(());
            }
            (s.meta.clone(), s.tracker.lac() + 1)
        };
        let mut meta = versioned.meta.clone();
        let Some(last) = meta.last_fragment().cloned() else {
            return Err(LedgerError::BadMetadata(meta.id, "no ensemble".into()));
        };
        let Some(pos) = last.bookies.iter().position(|b| b == failed) else {
            // Already replaced by an earlier change: just resend.
            self.resend_changed();
            return Ok(());
        };
        let replacement = self.shared.client.spare_bookie(&last.bookies).await?;
        meta.replace_bookie(pos, replacement.clone(), first_unconfirmed);
        let version =
            match metadata::store(&self.shared.client.meta(), &meta, versioned.version).await {
                Ok(v) => v,
                Err(LedgerError::MetadataConflict(_)) => {
                    let now = metadata::load(&self.shared.client.meta(), meta.id).await?;
                    if now.meta.state != LedgerState::Open {
                        self.stop(Stopped::Fenced);
                        return Ok(());
                    }
                    return Err(LedgerError::MetadataConflict(meta.id));
                }
                Err(e) => return Err(e),
            };
        tracing::info!(ledger = meta.id, from_entry = first_unconfirmed, %failed, %replacement, "ensemble changed");
        {
            let mut s = self.lock();
            s.meta = Versioned { meta, version };
            s.tracker.forget_position(pos);
        }
        self.resend_changed();
        Ok(())
    }

    /// Sends every pending entry to write-set members it has not been sent to
    /// under the current ensemble.
    fn resend_changed(&self) {
        let mut sends = Vec::new();
        {
            let mut s = self.lock();
            let m = s.meta.meta.clone();
            for (entry, p) in s.pending.iter_mut() {
                let Some(frag) = m.fragment_for(*entry) else {
                    continue;
                };
                for pos in write_set(*entry, m.ensemble_size, m.write_quorum) {
                    let Some(addr) = frag.bookies.get(pos) else {
                        continue;
                    };
                    if p.sent.get(&pos) != Some(addr) {
                        p.sent.insert(pos, addr.clone());
                        sends.push((*entry, pos, addr.clone(), p.payload.clone(), p.crc32c));
                    }
                }
            }
        }
        for (entry, pos, addr, payload, crc) in sends {
            self.send(entry, pos, addr, payload, crc);
        }
    }

    /// Waits for pending appends, then closes the ledger at its LAC.
    pub async fn close(&self) -> Result<metadata::LedgerMetadata, LedgerError> {
        let deadline = tokio::time::Instant::now() + CLOSE_DEADLINE;
        loop {
            let idle = self.shared.idle.notified();
            {
                let s = self.lock();
                if let Some(stopped) = &s.stopped {
                    return Err(stopped.error(self.shared.id));
                }
                if s.pending.is_empty() {
                    break;
                }
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return Err(LedgerError::Bookie {
                    addr: "ensemble".into(),
                    reason: "appends still pending after 30 s".into(),
                });
            }
        }
        let _no_changes = self.shared.changing.lock().await;
        self.store_closed().await
    }

    /// Gives up on every unconfirmed append (they fail) and closes the ledger
    /// at its last add confirmed. Needs only the metadata service.
    ///
    /// This is how a writer whose appends failed ends its ledger. It must not
    /// end it by recovery: recovery keeps whatever reached enough bookies,
    /// including appends this writer has already reported as failed, and a
    /// client that resends those would find them stored twice. Closing at the
    /// LAC keeps exactly what was reported stored. Idempotent: a caller whose
    /// metadata write failed calls it again.
    pub async fn close_at_confirmed(&self) -> Result<metadata::LedgerMetadata, LedgerError> {
        self.stop(Stopped::Failed("closed at its last confirmed entry".into()));
        match self.lock().stopped.clone() {
            Some(Stopped::Fenced) => return Err(LedgerError::Fenced(self.shared.id)),
            Some(Stopped::Closed) => return Ok(self.metadata()),
            _ => {}
        }
        // An ensemble change under way finishes (or fails) first, so the
        // version CAS'ed below is the writer's latest.
        let _no_changes = tokio::time::timeout(CLOSE_DEADLINE, self.shared.changing.lock())
            .await
            .map_err(|_| LedgerError::Bookie {
                addr: "ensemble".into(),
                reason: "an ensemble change is still running; close again later".into(),
            })?;
        self.store_closed().await
    }

    /// CASes the ledger closed at the LAC. The caller holds `changing`.
    async fn store_closed(&self) -> Result<metadata::LedgerMetadata, LedgerError> {
        let (mut meta, version, lac, length) = {
            let s = self.lock();
            (
                s.meta.meta.clone(),
                s.meta.version,
                s.tracker.lac(),
                s.length,
            )
        };
        meta.state = LedgerState::Closed;
        meta.last_entry_id = lac;
        meta.length = Some(length);
        match metadata::store(&self.shared.client.meta(), &meta, version).await {
            Ok(version) => Ok(self.closed(meta, version)),
            Err(LedgerError::MetadataConflict(id)) => {
                // Our own earlier write may have landed although its answer
                // was lost: then the ledger is closed exactly as we wanted.
                let now = metadata::load(&self.shared.client.meta(), id).await?;
                if now.meta.state == LedgerState::Closed && now.meta.last_entry_id == lac {
                    return Ok(self.closed(now.meta, now.version));
                }
                self.stop(Stopped::Fenced);
                Err(LedgerError::Fenced(id))
            }
            Err(e) => Err(e),
        }
    }

    fn closed(&self, meta: metadata::LedgerMetadata, version: i64) -> metadata::LedgerMetadata {
        let mut s = self.lock();
        s.stopped = Some(Stopped::Closed);
        s.meta = Versioned {
            meta: meta.clone(),
            version,
        };
        meta
    }
}

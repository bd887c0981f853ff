//! Opens managed ledgers for one owner (a broker) and runs their housekeeping.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use magnetar_ledger::LedgerClient;
use magnetar_meta_client::MetaClient;
use magnetar_offload::Offloader;
use tokio::sync::watch;

use crate::cache::CacheBudget;
use crate::config::{FactoryConfig, ManagedLedgerConfig};
use crate::error::{MlError, Result};
use crate::info::{self, CursorInfo, ManagedLedgerInfo};
use crate::managed_ledger::ManagedLedger;

struct Inner {
    meta: MetaClient,
    ledgers: LedgerClient,
    cfg: FactoryConfig,
    budget: Arc<CacheBudget>,
    open: Mutex<HashMap<String, ManagedLedger>>,
    /// One gate per name being opened, so a name is opened once while opens
    /// of other names go on in parallel: a slow takeover (a recovery waiting
    /// on bookies) holds back only its own topic.
    opening: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Offloaders this factory has seen in use, by their driver record:
    /// deleting a managed ledger that is no longer open reaches its objects
    /// with the credentials they were written with (a record holds none).
    offloaders: Mutex<HashMap<BTreeMap<String, String>, Offloader>>,
    stop: watch::Sender<bool>,
}

#[derive(Clone)]
pub struct ManagedLedgerFactory {
    inner: Arc<Inner>,
}

impl ManagedLedgerFactory {
    /// Must be called inside a tokio runtime: starts the housekeeping task.
    pub fn new(meta: MetaClient, ledgers: LedgerClient, cfg: FactoryConfig) -> Self {
        let inner = Arc::new(Inner {
            meta,
            ledgers,
            budget: CacheBudget::new(cfg.cache_max_bytes),
            cfg,
            open: Mutex::new(HashMap::new()),
            opening: Mutex::new(HashMap::new()),
            offloaders: Mutex::new(HashMap::new()),
            stop: watch::channel(false).0,
        });
        let weak = Arc::downgrade(&inner);
        let mut stop = inner.stop.subscribe();
        let interval = inner.cfg.housekeeping_interval;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = stop.changed() => return,
                }
                let Some(inner) = weak.upgrade() else { return };
                let all: Vec<ManagedLedger> = lock(&inner.open).values().cloned().collect();
                drop(inner);
                for ml in all {
                    if let Err(e) = ml.housekeeping().await {
                        tracing::warn!(ledger = %ml.name(), error = %e, "housekeeping");
                    }
                }
            }
        });
        Self { inner }
    }

    pub fn ledger_client(&self) -> &LedgerClient {
        &self.inner.ledgers
    }

    /// Bytes of entry cache in use across all managed ledgers.
    pub fn cache_used_bytes(&self) -> usize {
        self.inner.budget.used()
    }

    /// Opens `name` (taking it over from any previous owner), or returns it if
    /// this factory has it open.
    pub async fn open(&self, name: &str, cfg: ManagedLedgerConfig) -> Result<ManagedLedger> {
        if let Some(ml) = lock(&self.inner.open).get(name) {
            return Ok(ml.clone());
        }
        let gate = lock(&self.inner.opening)
            .entry(name.to_string())
            .or_default()
            .clone();
        let opened = {
            let _opening = gate.lock().await;
            self.open_gated(name, cfg).await
        };
        let mut opening = lock(&self.inner.opening);
        // Forget the gate once nobody else holds or waits for it (the map and
        // `gate` are the two references left).
        if opening.get(name).is_some_and(|g| Arc::strong_count(g) <= 2) {
            opening.remove(name);
        }
        opened
    }

    async fn open_gated(&self, name: &str, cfg: ManagedLedgerConfig) -> Result<ManagedLedger> {
        if let Some(ml) = lock(&self.inner.open).get(name) {
            return Ok(ml.clone());
        }
        let ml = ManagedLedger::open(
            name,
            cfg,
            self.inner.ledgers.clone(),
            self.inner.meta.clone(),
            self.inner.budget.clone(),
        )
        .await?;
        lock(&self.inner.open).insert(name.to_string(), ml.clone());
        Ok(ml)
    }

    pub fn get(&self, name: &str) -> Option<ManagedLedger> {
        lock(&self.inner.open).get(name).cloned()
    }

    /// Closes one managed ledger (flushing cursors, closing its ledger).
    pub async fn close(&self, name: &str) -> Result<()> {
        let ml = lock(&self.inner.open).remove(name);
        match ml {
            Some(ml) => ml.close().await,
            None => Ok(()),
        }
    }

    /// Closes everything this factory has open and stops housekeeping.
    pub async fn shutdown(&self) {
        let _ = self.inner.stop.send(true);
        use futures::StreamExt;
        let all: Vec<ManagedLedger> = lock(&self.inner.open).drain().map(|(_, v)| v).collect();
        // Concurrently, bounded: each close is a few storage round trips.
        futures::stream::iter(all)
            .for_each_concurrent(256, |ml| async move {
                if let Err(e) = ml.close().await {
                    tracing::warn!(ledger = %ml.name(), error = %e, "closing managed ledger");
                }
            })
            .await;
    }

    /// Names of stored managed ledgers under `prefix` (e.g. a namespace).
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let full = format!("{}{prefix}", info::LEDGERS_PREFIX);
        let page = self.inner.meta.list_all(&full).await?;
        Ok(page
            .kvs
            .iter()
            .map(|kv| String::from_utf8_lossy(&kv.key[info::LEDGERS_PREFIX.len()..]).to_string())
            .collect())
    }

    /// An offloader to reach objects with when a managed ledger is deleted
    /// again after it was closed (a delete that failed on the store).
    fn remember_offloader(&self, o: Offloader) {
        lock(&self.inner.offloaders).insert(o.config().metadata(), o);
    }

    /// Deletes a managed ledger: its objects in tiered storage, its ledgers,
    /// its cursors' ledgers and its metadata. Closes it first if open here.
    pub async fn delete(&self, name: &str) -> Result<()> {
        let open = lock(&self.inner.open).remove(name);
        if let Some(o) = open.as_ref().and_then(|ml| ml.offload_policy().offloader) {
            self.remember_offloader(o);
        }
        if let Some(ml) = open {
            ml.close().await?;
        }
        let key = info::ledger_key(name);
        let Some((stored, _)) = info::load::<ManagedLedgerInfo>(&self.inner.meta, &key).await?
        else {
            return Err(MlError::InvalidName(
                name.into(),
                "no such managed ledger".into(),
            ));
        };
        // Objects first: while the store is down the delete fails (retryable)
        // and the metadata that names the objects stays, so none is orphaned.
        let known = lock(&self.inner.offloaders).clone();
        crate::managed_ledger::offload::delete_all_offloaded(name, &stored, known).await?;
        let prefix = info::cursors_prefix(name);
        for kv in self.inner.meta.list_all(&prefix).await?.kvs {
            if let Ok(c) = serde_json::from_slice::<CursorInfo>(&kv.value) {
                if let Some(id) = c.cursor_ledger {
                    let _ = self.inner.ledgers.delete(id).await;
                }
            }
        }
        self.inner.meta.delete_prefix(&prefix).await?;
        self.inner.meta.delete(&key, None).await?;
        for l in stored.ledgers {
            let _ = self.inner.ledgers.delete(l.ledger_id).await;
        }
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

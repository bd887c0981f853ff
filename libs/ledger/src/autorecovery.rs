//! Automatic re-replication of ledgers whose bookies are gone.
//!
//! One auditor at a time (the holder of a lease-bound key) compares the bookies
//! every ledger's ensembles name with the bookies registered as available. A
//! bookie missing for longer than the grace period is lost: each closed ledger
//! that names it is marked under-replicated, its fragments on that bookie are
//! copied from the surviving replicas to a replacement bookie, the metadata is
//! updated by CAS, and the mark is removed. Open ledgers are left to their
//! writer (ensemble change) or to recovery, which closes them first.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use magnetar_meta_client::{Error as MetaError, PutOptions};
use magnetar_proto::bookie as pb;
use tokio::sync::watch;

use crate::client::LedgerClient;
use crate::error::LedgerError;
use crate::metadata::{self, LedgerState};
use crate::placement;
use crate::quorum::write_set;
use crate::reader::{read_from, EntryAnswer};

pub const AUDITOR_KEY: &str = "/auditor/leader";
pub const UNDERREPLICATED_PREFIX: &str = "/ledgers-underreplicated/";

#[derive(Clone, Debug)]
pub struct AutoRecoveryConfig {
    /// Name of this candidate (for the auditor key).
    pub node: String,
    /// How long a bookie must be missing before its data is re-replicated.
    pub grace: Duration,
    /// Time between audits.
    pub interval: Duration,
    pub lease_ttl_seconds: i64,
}

#[derive(Default, Debug)]
pub struct AutoRecoveryStats {
    pub is_auditor: AtomicU64,
    pub underreplicated_ledgers: AtomicU64,
    pub fragments_replicated: AtomicU64,
    pub entries_copied: AtomicU64,
}

pub struct AutoRecovery {
    client: LedgerClient,
    cfg: AutoRecoveryConfig,
    pub stats: Arc<AutoRecoveryStats>,
}

/// Ledgers currently marked under-replicated, with the lost bookies.
pub async fn underreplicated(
    client: &LedgerClient,
) -> Result<Vec<(u64, Vec<String>)>, LedgerError> {
    let page = client.meta().list_all(UNDERREPLICATED_PREFIX).await?;
    Ok(page
        .kvs
        .iter()
        .filter_map(|kv| {
            let id = std::str::from_utf8(&kv.key)
                .ok()?
                .strip_prefix(UNDERREPLICATED_PREFIX)?
                .parse()
                .ok()?;
            let lost = serde_json::from_slice(&kv.value).ok()?;
            Some((id, lost))
        })
        .collect())
}

impl AutoRecovery {
    pub fn new(client: LedgerClient, cfg: AutoRecoveryConfig) -> Self {
        Self {
            client,
            cfg,
            stats: Arc::default(),
        }
    }

    /// Campaigns for the auditor role and audits while holding it, until shutdown.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let meta = self.client.meta();
        loop {
            let campaign = async {
                let lease = meta.lease_grant(self.cfg.lease_ttl_seconds).await?;
                let opts = PutOptions {
                    expected_version: Some(0),
                    lease: lease.id,
                };
                match meta
                    .put_with(AUDITOR_KEY, self.cfg.node.as_bytes(), opts)
                    .await
                {
                    Ok(_) => {}
                    Err(MetaError::VersionMismatch { .. }) => {
                        meta.lease_revoke(lease.id).await?;
                        return Ok(());
                    }
                    Err(e) => return Err(LedgerError::from(e)),
                }
                tracing::info!(node = %self.cfg.node, "elected auditor");
                self.stats.is_auditor.store(1, Ordering::Relaxed);
                let keeper = meta.keep_alive(lease);
                let mut missing_since = HashMap::new();
                while !keeper.is_lost() {
                    if let Err(e) = self.audit_once(&mut missing_since).await {
                        tracing::warn!(error = %e, "audit failed");
                    }
                    tokio::time::sleep(self.cfg.interval).await;
                }
                self.stats.is_auditor.store(0, Ordering::Relaxed);
                Ok::<(), LedgerError>(())
            };
            tokio::select! {
                r = campaign => {
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "auditor campaign failed");
                    }
                    self.stats.is_auditor.store(0, Ordering::Relaxed);
                }
                _ = shutdown.changed() => return,
            }
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.interval) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// One pass over every ledger.
    pub async fn audit_once(
        &self,
        missing_since: &mut HashMap<String, Instant>,
    ) -> Result<(), LedgerError> {
        let available: HashSet<String> = self
            .client
            .available_bookies()
            .await?
            .into_iter()
            .map(|b| b.address)
            .collect();
        let now = Instant::now();
        missing_since.retain(|addr, _| !available.contains(addr));
        let mut marked = 0;
        for id in self.client.list().await? {
            let meta = match self.client.metadata(id).await {
                Ok(m) => m,
                Err(LedgerError::NoSuchLedger(_)) => continue,
                Err(e) => return Err(e),
            };
            let lost: Vec<String> = meta
                .all_bookies()
                .into_iter()
                .filter(|b| !available.contains(b))
                .filter(|b| {
                    now.duration_since(*missing_since.entry(b.clone()).or_insert(now))
                        >= self.cfg.grace
                })
                .collect();
            let key = format!("{UNDERREPLICATED_PREFIX}{id:020}");
            if lost.is_empty() {
                continue;
            }
            if meta.state != LedgerState::Closed {
                continue;
            }
            marked += 1;
            let value = serde_json::to_vec(&lost).unwrap_or_default();
            self.client.meta().put(&key, value).await?;
            self.stats
                .underreplicated_ledgers
                .store(marked, Ordering::Relaxed);
            match self.replicate(id, &lost).await {
                Ok(()) => {
                    self.client.meta().delete(&key, None).await?;
                    marked -= 1;
                }
                Err(e) => {
                    tracing::warn!(ledger = id, error = %e, "re-replication failed; will retry")
                }
            }
        }
        self.stats
            .underreplicated_ledgers
            .store(marked, Ordering::Relaxed);
        Ok(())
    }

    /// Copies every fragment of ledger `id` stored on a `lost` bookie to a
    /// replacement, then records the replacements in the metadata.
    async fn replicate(&self, id: u64, lost: &[String]) -> Result<(), LedgerError> {
        let v = metadata::load(&self.client.meta(), id).await?;
        let mut meta = v.meta.clone();
        let master_key = metadata::decode_hex(&meta.master_key_hex)
            .ok_or_else(|| LedgerError::BadMetadata(id, "no master key recorded".into()))?;
        let available = self.client.available_bookies().await?;
        let ends: Vec<i64> = meta
            .ensembles
            .iter()
            .skip(1)
            .map(|f| f.first_entry - 1)
            .chain(std::iter::once(meta.last_entry_id))
            .collect();
        for (fi, end) in ends.into_iter().enumerate() {
            let fragment = meta.ensembles[fi].clone();
            for (pos, addr) in fragment.bookies.iter().enumerate() {
                if !lost.contains(addr) {
                    continue;
                }
                let replacement = placement::choose(&available, 1, &fragment.bookies)?
                    .pop()
                    .ok_or(LedgerError::NotEnoughBookies {
                        needed: 1,
                        available: 0,
                    })?;
                let entries: Vec<i64> = (fragment.first_entry..=end)
                    .filter(|e| write_set(*e, meta.ensemble_size, meta.write_quorum).contains(&pos))
                    .collect();
                let sources: Vec<Vec<String>> = entries
                    .iter()
                    .map(|e| {
                        write_set(*e, meta.ensemble_size, meta.write_quorum)
                            .into_iter()
                            .filter(|p| *p != pos)
                            .filter_map(|p| fragment.bookies.get(p).cloned())
                            .collect()
                    })
                    .collect();
                let count = entries.len() as u64;
                let (target, key) = (replacement.as_str(), master_key.as_slice());
                let copied = futures::stream::iter(entries.into_iter().zip(sources))
                    .map(|(e, srcs)| self.copy_entry(id, e, srcs, target, key))
                    .buffer_unordered(32)
                    .collect::<Vec<_>>()
                    .await;
                copied
                    .into_iter()
                    .collect::<Result<Vec<()>, LedgerError>>()?;
                self.stats
                    .entries_copied
                    .fetch_add(count, Ordering::Relaxed);
                self.stats
                    .fragments_replicated
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(ledger = id, fragment = fi, from = %addr, to = %replacement, entries = count, "fragment re-replicated");
                meta.ensembles[fi].bookies[pos] = replacement;
            }
        }
        metadata::store(&self.client.meta(), &meta, v.version).await?;
        Ok(())
    }

    async fn copy_entry(
        &self,
        ledger: u64,
        entry: i64,
        sources: Vec<String>,
        target: &str,
        master_key: &[u8],
    ) -> Result<(), LedgerError> {
        let mut last_err = String::from("no source bookie");
        for src in &sources {
            match read_from(&self.client, src, ledger, entry).await {
                EntryAnswer::Found(data) => {
                    let bookie =
                        self.client
                            .pool()
                            .get(target)
                            .map_err(|reason| LedgerError::Bookie {
                                addr: target.into(),
                                reason,
                            })?;
                    let req = pb::AddRequest {
                        ledger_id: ledger,
                        entry_id: entry,
                        crc32c: crc32c::crc32c(&data),
                        payload: data.into(),
                        lac: entry - 1,
                        master_key: master_key.to_vec().into(),
                        recovery: true,
                        // Set by the bookie client.
                        request_id: 0,
                    };
                    return match bookie.add_and_wait(req).await {
                        Ok(()) => Ok(()),
                        other => Err(LedgerError::Bookie {
                            addr: target.into(),
                            reason: format!("copy of entry {entry} failed: {other:?}"),
                        }),
                    };
                }
                EntryAnswer::Missing => last_err = format!("{src}: no such entry"),
                EntryAnswer::Failed(e) => last_err = e,
            }
        }
        Err(LedgerError::ReadFailed {
            ledger,
            entry,
            reason: last_err,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let key = metadata::master_key(b"pw");
        let hex = metadata::encode_hex(&key);
        assert_eq!(metadata::decode_hex(&hex), Some(key));
        assert_eq!(metadata::decode_hex("zz"), None);
        assert_eq!(metadata::decode_hex("abc"), None);
    }
}

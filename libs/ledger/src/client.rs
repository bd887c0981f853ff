//! The entry point: creates, opens, recovers, lists and deletes ledgers.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use magnetar_meta_client::MetaClient;

use crate::bookie_client::BookiePool;
use crate::error::LedgerError;
use crate::metadata::{self, Fragment, LedgerMetadata, LedgerState, Versioned};
use crate::placement::{self, BookieInfo};
use crate::reader::LedgerReader;
use crate::recovery;
use crate::writer::LedgerWriter;

/// Where bookies register themselves (kept in step with the bookie service).
pub const AVAILABLE_BOOKIES_PREFIX: &str = "/bookies/available/";

#[derive(Clone, Debug)]
pub struct LedgerClientConfig {
    /// A bookie that has not answered an add within this is replaced.
    pub add_timeout: Duration,
    /// Timeout for one read/fence/LAC request to one bookie.
    pub request_timeout: Duration,
    /// After this, a read also asks the next bookie of the write set.
    pub speculative_read_timeout: Duration,
    pub max_entry_bytes: usize,
}

impl Default for LedgerClientConfig {
    fn default() -> Self {
        Self {
            add_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            speculative_read_timeout: Duration::from_millis(100),
            max_entry_bytes: 5 << 20,
        }
    }
}

#[derive(Clone, Debug)]
pub struct BookieStatus {
    pub id: String,
    pub free_bytes: u64,
    pub total_bytes: u64,
    pub read_only: bool,
    pub ledgers: u64,
}

#[derive(Clone)]
pub struct LedgerClient {
    meta: MetaClient,
    pool: Arc<BookiePool>,
    cfg: LedgerClientConfig,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl LedgerClient {
    pub fn new(meta: MetaClient, cfg: LedgerClientConfig) -> Self {
        Self {
            meta,
            pool: Arc::new(BookiePool::new(cfg.request_timeout, cfg.add_timeout)),
            cfg,
        }
    }

    pub fn config(&self) -> &LedgerClientConfig {
        &self.cfg
    }

    pub fn meta(&self) -> MetaClient {
        self.meta.clone()
    }

    pub(crate) fn pool(&self) -> Arc<BookiePool> {
        self.pool.clone()
    }

    /// Bookies currently registered (writable or not).
    pub async fn available_bookies(&self) -> Result<Vec<BookieInfo>, LedgerError> {
        let page = self.meta.list_all(AVAILABLE_BOOKIES_PREFIX).await?;
        Ok(page
            .kvs
            .iter()
            .filter_map(|kv| serde_json::from_slice::<BookieInfo>(&kv.value).ok())
            .collect())
    }

    /// One writable bookie outside `exclude`, to replace a failed member.
    pub(crate) async fn spare_bookie(&self, exclude: &[String]) -> Result<String, LedgerError> {
        placement::choose(&self.available_bookies().await?, 1, exclude)?
            .pop()
            .ok_or(LedgerError::NotEnoughBookies {
                needed: 1,
                available: 0,
            })
    }

    /// Creates a ledger on `ensemble` bookies; each entry goes to
    /// `write_quorum` of them and is confirmed by `ack_quorum`.
    pub async fn create(
        &self,
        ensemble: usize,
        write_quorum: usize,
        ack_quorum: usize,
        password: &[u8],
    ) -> Result<LedgerWriter, LedgerError> {
        if !(ensemble >= write_quorum && write_quorum >= ack_quorum && ack_quorum >= 1) {
            return Err(LedgerError::InvalidQuorum {
                ensemble,
                write: write_quorum,
                ack: ack_quorum,
            });
        }
        let bookies = placement::choose(&self.available_bookies().await?, ensemble, &[])?;
        let master_key = metadata::master_key(password);
        let meta = LedgerMetadata {
            id: metadata::next_id(&self.meta).await?,
            state: LedgerState::Open,
            ensemble_size: ensemble,
            write_quorum,
            ack_quorum,
            ensembles: vec![Fragment {
                first_entry: 0,
                bookies,
            }],
            last_entry_id: -1,
            length: None,
            password_digest: metadata::password_digest(&master_key),
            master_key_hex: metadata::encode_hex(&master_key),
            created_ms: now_ms(),
            properties: Default::default(),
        };
        let version = metadata::store(&self.meta, &meta, 0).await?;
        Ok(LedgerWriter::new(
            self.clone(),
            Versioned { meta, version },
            master_key,
        ))
    }

    async fn load_checked(
        &self,
        id: u64,
        password: &[u8],
    ) -> Result<(Versioned, Vec<u8>), LedgerError> {
        let v = metadata::load(&self.meta, id).await?;
        let key = metadata::master_key(password);
        if metadata::password_digest(&key) != v.meta.password_digest {
            return Err(LedgerError::Unauthorized(id));
        }
        Ok((v, key))
    }

    /// Opens for reading without disturbing a writer (an open ledger is read up
    /// to its LAC).
    pub async fn open(&self, id: u64, password: &[u8]) -> Result<LedgerReader, LedgerError> {
        let (v, _) = self.load_checked(id, password).await?;
        Ok(LedgerReader::new(self.clone(), v.meta))
    }

    /// Opens with recovery: fences the writer and closes the ledger at the last
    /// recoverable entry (see `recovery`).
    pub async fn open_recover(
        &self,
        id: u64,
        password: &[u8],
    ) -> Result<LedgerReader, LedgerError> {
        let (v, key) = self.load_checked(id, password).await?;
        let meta = recovery::recover(self, v, &key).await?;
        Ok(LedgerReader::new(self.clone(), meta))
    }

    /// Deletes the metadata, then the entries on every bookie that may hold
    /// some (best effort: a bookie that is down keeps its copy until it is
    /// garbage-collected).
    pub async fn delete(&self, id: u64) -> Result<(), LedgerError> {
        let v = metadata::load(&self.meta, id).await?;
        match self.meta.delete(metadata::key(id), Some(v.version)).await {
            Ok(_) => {}
            Err(magnetar_meta_client::Error::VersionMismatch { .. }) => {
                return Err(LedgerError::MetadataConflict(id))
            }
            Err(e) => return Err(e.into()),
        }
        for addr in v.meta.all_bookies() {
            let result = match self.pool.get(&addr) {
                Ok(b) => b.delete(id).await.map(|_| ()),
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                tracing::warn!(ledger = id, bookie = %addr, error = %e, "could not delete ledger on bookie");
            }
        }
        Ok(())
    }

    /// A bookie's own report of its state.
    pub async fn bookie_status(&self, addr: &str) -> Result<BookieStatus, LedgerError> {
        let bookie_err = |reason: String| LedgerError::Bookie {
            addr: addr.to_string(),
            reason,
        };
        let info = self
            .pool
            .get(addr)
            .map_err(bookie_err)?
            .info()
            .await
            .map_err(bookie_err)?;
        Ok(BookieStatus {
            id: info.bookie_id,
            free_bytes: info.free_bytes,
            total_bytes: info.total_bytes,
            read_only: info.read_only,
            ledgers: info.ledgers,
        })
    }

    /// Reads one entry from one particular bookie (diagnostics, replication
    /// checks): `Ok(None)` if that bookie does not have it.
    pub async fn read_from_bookie(
        &self,
        addr: &str,
        ledger: u64,
        entry: i64,
    ) -> Result<Option<Vec<u8>>, LedgerError> {
        match crate::reader::read_from(self, addr, ledger, entry).await {
            crate::reader::EntryAnswer::Found(d) => Ok(Some(d)),
            crate::reader::EntryAnswer::Missing => Ok(None),
            crate::reader::EntryAnswer::Failed(reason) => Err(LedgerError::Bookie {
                addr: addr.to_string(),
                reason,
            }),
        }
    }

    pub async fn list(&self) -> Result<Vec<u64>, LedgerError> {
        metadata::list(&self.meta).await
    }

    pub async fn metadata(&self, id: u64) -> Result<LedgerMetadata, LedgerError> {
        Ok(metadata::load(&self.meta, id).await?.meta)
    }
}

//! The entry point: one object store client, the object names, and the
//! deadline every request runs under.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::config::DriverConfig;
use crate::error::{OffloadError, Result};
use crate::reader::OffloadedLedger;
use crate::writer::LedgerWriter;

/// Writes ledgers to one object store and reads them back.
#[derive(Clone, Debug)]
pub struct Offloader {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) config: DriverConfig,
}

/// `{uuid}-ledger-{id}`: the data object of one offload attempt of a ledger.
pub fn data_object_name(uuid: &str, ledger_id: u64) -> String {
    format!("{uuid}-ledger-{ledger_id}")
}

/// `{uuid}-ledger-{id}-index`: its index object, written last.
pub fn index_object_name(uuid: &str, ledger_id: u64) -> String {
    format!("{uuid}-ledger-{ledger_id}-index")
}

/// A random (version 4) UUID naming one offload attempt: a retried offload
/// gets a new one, so it never overwrites what an earlier attempt left.
pub fn new_uuid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

impl Offloader {
    pub fn new(config: DriverConfig) -> Result<Self> {
        if config.max_block_size < 1024 || config.part_size == 0 || config.upload_concurrency == 0 {
            return Err(OffloadError::Config(
                "max block size must be at least 1 KiB, part size and upload concurrency above 0"
                    .into(),
            ));
        }
        Ok(Offloader {
            store: config.build()?,
            config,
        })
    }

    pub fn config(&self) -> &DriverConfig {
        &self.config
    }

    /// Starts writing ledger `ledger_id` as attempt `uuid`.
    pub fn writer(&self, uuid: &str, ledger_id: u64) -> LedgerWriter {
        LedgerWriter::new(self.clone(), uuid, ledger_id)
    }

    /// Opens an offloaded ledger for reading: fetches and checks its index.
    pub async fn open(&self, uuid: &str, ledger_id: u64) -> Result<OffloadedLedger> {
        OffloadedLedger::open(self.clone(), uuid, ledger_id).await
    }

    /// Deletes both objects of an attempt; objects already gone are fine
    /// (deletion is retried until it succeeds, so it must be idempotent).
    pub async fn delete(&self, uuid: &str, ledger_id: u64) -> Result<()> {
        // Index first: a data object without its index is never read.
        for name in [
            index_object_name(uuid, ledger_id),
            data_object_name(uuid, ledger_id),
        ] {
            let path = Path::from(name.as_str());
            match self.timed("delete", &name, self.store.delete(&path)).await {
                Ok(()) | Err(OffloadError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Every object name in the store (tests and orphan checks).
    pub async fn list(&self) -> Result<Vec<String>> {
        let listing = self.store.list(None).try_collect::<Vec<_>>();
        let metas = self.timed("list", "", listing).await?;
        let mut names: Vec<String> = metas.into_iter().map(|m| m.location.to_string()).collect();
        names.sort();
        Ok(names)
    }

    /// Runs one request under a deadline, naming it in errors. The client's
    /// own retries stop at `request_timeout` (and their last attempt within
    /// another), so its more precise errors usually come first.
    pub(crate) async fn timed<T>(
        &self,
        op: &'static str,
        object: &str,
        fut: impl Future<Output = object_store::Result<T>>,
    ) -> Result<T> {
        timed(self.config.request_timeout * 2, op, object, fut).await
    }
}

pub(crate) async fn timed<T>(
    after: Duration,
    op: &'static str,
    object: &str,
    fut: impl Future<Output = object_store::Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(after, fut).await {
        Err(_) => Err(OffloadError::Timeout {
            op,
            object: object.to_string(),
            after,
        }),
        Ok(Err(object_store::Error::NotFound { .. })) => {
            Err(OffloadError::NotFound(object.to_string()))
        }
        Ok(Err(source)) => Err(OffloadError::Store {
            op,
            object: object.to_string(),
            source,
        }),
        Ok(Ok(v)) => Ok(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_version_4_and_differ() {
        let (a, b) = (new_uuid(), new_uuid());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert_eq!(data_object_name("u", 3), "u-ledger-3");
        assert_eq!(index_object_name("u", 3), "u-ledger-3-index");
    }
}

//! Writing one ledger: entries go into blocks, blocks into the parts of a
//! multipart upload of the data object; the index object is written last.
//!
//! Invariants: the index exists only if the data object is complete (the
//! index is put after the upload completes, and a failed index put deletes
//! the data object); a failed part aborts the upload, so a failed attempt
//! leaves no object behind (bar what a dead store could not be told).

use std::collections::BTreeMap;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload, WriteMultipart};

use crate::error::{OffloadError, Result};
use crate::format::{encode_index, BlockBuilder, BlockInfo, LedgerIndex, LedgerMetadata};
use crate::offloader::{data_object_name, index_object_name, Offloader};

/// What a completed offload wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffloadedInfo {
    pub uuid: String,
    pub ledger_id: u64,
    pub entry_count: u64,
    pub data_len: u64,
    pub blocks: usize,
}

/// Writes the entries of one ledger, in order from entry 0, then `finish`.
/// Dropping it unfinished aborts the upload in the background.
pub struct LedgerWriter {
    offloader: Offloader,
    uuid: String,
    ledger_id: u64,
    data_name: String,
    upload: Option<WriteMultipart>,
    block: BlockBuilder,
    blocks: Vec<BlockInfo>,
    data_len: u64,
    next_entry: u64,
    payload_bytes: u64,
    failed: bool,
}

impl LedgerWriter {
    pub(crate) fn new(offloader: Offloader, uuid: &str, ledger_id: u64) -> Self {
        let block = BlockBuilder::new(offloader.config.max_block_size);
        LedgerWriter {
            offloader,
            uuid: uuid.to_string(),
            ledger_id,
            data_name: data_object_name(uuid, ledger_id),
            upload: None,
            block,
            blocks: Vec::new(),
            data_len: 0,
            next_entry: 0,
            payload_bytes: 0,
            failed: false,
        }
    }

    /// Appends entry `entry_id`, which must be the next one (0, 1, 2, …).
    /// On a store error the upload is aborted and the writer is spent.
    pub async fn append(&mut self, entry_id: u64, payload: &[u8]) -> Result<()> {
        if self.failed {
            return Err(OffloadError::Aborted(self.ledger_id));
        }
        if entry_id != self.next_entry {
            return Err(OffloadError::OutOfOrder {
                ledger_id: self.ledger_id,
                expected: self.next_entry,
                got: entry_id,
            });
        }
        if u32::try_from(payload.len()).is_err() {
            return Err(OffloadError::EntryTooLarge {
                ledger_id: self.ledger_id,
                entry_id,
                len: payload.len(),
            });
        }
        if !self.block.fits(payload.len()) {
            if let Err(e) = self.flush_block().await {
                self.fail().await;
                return Err(e);
            }
        }
        self.block.push(entry_id, payload);
        self.next_entry += 1;
        self.payload_bytes += payload.len() as u64;
        Ok(())
    }

    /// Hands the current block to the upload and waits until no more than
    /// `upload_concurrency` parts are in flight (so memory stays bounded).
    async fn flush_block(&mut self) -> Result<()> {
        let (bytes, info) = self.block.finish(self.data_len);
        self.data_len = info.end();
        self.blocks.push(info);
        if self.upload.is_none() {
            let path = Path::from(self.data_name.as_str());
            let upload = self
                .offloader
                .timed(
                    "create upload",
                    &self.data_name,
                    self.offloader.store.put_multipart(&path),
                )
                .await?;
            let part_size = self.offloader.config.part_size;
            self.upload = Some(WriteMultipart::new_with_chunk_size(upload, part_size));
        }
        let concurrency = self.offloader.config.upload_concurrency;
        let name = self.data_name.clone();
        let Some(upload) = self.upload.as_mut() else {
            return Err(OffloadError::Aborted(self.ledger_id));
        };
        upload.put(bytes);
        let waiting = upload.wait_for_capacity(concurrency);
        self.offloader.timed("upload part", &name, waiting).await
    }

    /// Marks the writer spent and aborts the upload (best effort: a store
    /// that is down cannot be told; its incomplete upload is invisible and
    /// expires by the bucket's lifecycle rule).
    async fn fail(&mut self) {
        self.failed = true;
        if let Some(upload) = self.upload.take() {
            let abort = self
                .offloader
                .timed("abort upload", &self.data_name, upload.abort());
            if let Err(e) = abort.await {
                tracing::warn!(ledger = self.ledger_id, error = %e, "aborting an offload upload failed");
            }
        }
    }

    /// Aborts the upload explicitly (the caller's source failed).
    pub async fn abort(mut self) {
        self.fail().await;
    }

    /// Completes the data object, then writes the index; on any error
    /// nothing of this attempt is left readable.
    pub async fn finish(mut self, properties: BTreeMap<String, String>) -> Result<OffloadedInfo> {
        if self.failed {
            return Err(OffloadError::Aborted(self.ledger_id));
        }
        if let Err(e) = self.complete_data().await {
            self.fail().await;
            return Err(e);
        }
        let index = LedgerIndex {
            metadata: LedgerMetadata {
                ledger_id: self.ledger_id,
                entry_count: self.next_entry,
                payload_bytes: self.payload_bytes,
                properties,
            },
            data_len: self.data_len,
            blocks: std::mem::take(&mut self.blocks),
        };
        let index_name = index_object_name(&self.uuid, self.ledger_id);
        let index_path = Path::from(index_name.as_str());
        let payload = PutPayload::from_bytes(encode_index(&index));
        let put = self.offloader.store.put(&index_path, payload);
        if let Err(e) = self.offloader.timed("put index", &index_name, put).await {
            self.delete_data().await;
            return Err(e);
        }
        Ok(OffloadedInfo {
            uuid: self.uuid.clone(),
            ledger_id: self.ledger_id,
            entry_count: self.next_entry,
            data_len: self.data_len,
            blocks: index.blocks.len(),
        })
    }

    /// Flushes the last block and completes the upload (an empty ledger
    /// gets an empty data object: a multipart upload needs a part).
    async fn complete_data(&mut self) -> Result<()> {
        if !self.block.is_empty() {
            self.flush_block().await?;
        }
        match self.upload.take() {
            Some(upload) => {
                let done =
                    self.offloader
                        .timed("complete upload", &self.data_name, upload.finish());
                done.await.map(|_| ())
            }
            None => {
                let path = Path::from(self.data_name.as_str());
                let put = self
                    .offloader
                    .store
                    .put(&path, PutPayload::from(Bytes::new()));
                let done = self.offloader.timed("put data", &self.data_name, put);
                done.await.map(|_| ())
            }
        }
    }

    // `&mut`: the writer is Send but not Sync, and its futures must be Send.
    async fn delete_data(&mut self) {
        let path = Path::from(self.data_name.as_str());
        let delete = self.offloader.store.delete(&path);
        if let Err(e) = self
            .offloader
            .timed("delete", &self.data_name, delete)
            .await
        {
            tracing::warn!(ledger = self.ledger_id, error = %e, "deleting the data object of a failed offload failed");
        }
    }
}

impl Drop for LedgerWriter {
    fn drop(&mut self) {
        let Some(upload) = self.upload.take() else {
            return;
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let after = self.offloader.config.request_timeout;
            rt.spawn(async move {
                let _ = tokio::time::timeout(after, upload.abort()).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    /// Offloads run in spawned tasks: every future of the writer is Send.
    #[allow(dead_code)]
    fn futures_are_send(mut w: LedgerWriter) {
        assert_send(&w.append(0, b""));
        assert_send(&w.finish(BTreeMap::new()));
    }
}

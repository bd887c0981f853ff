//! Reading an offloaded ledger back: the index is fetched once per open
//! ledger; entries come from ranged GETs of the data object that fetch
//! `read_buffer_size` bytes ahead, so a sequential reader makes one request
//! per buffer, not one per entry, and needs no seek between reads.

use std::sync::Mutex;

use bytes::Bytes;
use object_store::path::Path;
use object_store::ObjectStoreExt;

use crate::error::{OffloadError, Result};
use crate::format::{
    corrupt, decode_block_header, decode_entry_header, decode_index, LedgerIndex, BLOCK_HEADER_LEN,
    ENTRY_HEADER_LEN,
};
use crate::offloader::{data_object_name, index_object_name, Offloader};

/// One offloaded ledger, open for reads. Reads may run concurrently; they
/// share the read-ahead buffer.
#[derive(Debug)]
pub struct OffloadedLedger {
    offloader: Offloader,
    ledger_id: u64,
    data_name: String,
    index: LedgerIndex,
    /// The last buffer fetched and where the next entry after the last read
    /// starts. Held only to copy in or out, never across a request.
    state: Mutex<ReadState>,
}

#[derive(Clone, Debug, Default)]
struct ReadState {
    /// `buf` holds data object bytes `buf_offset..buf_offset + buf.len()`.
    buf_offset: u64,
    buf: Bytes,
    /// (entry id, offset of its entry header) of the entry after the last read.
    next: Option<(u64, u64)>,
}

impl OffloadedLedger {
    pub(crate) async fn open(offloader: Offloader, uuid: &str, ledger_id: u64) -> Result<Self> {
        let index_name = index_object_name(uuid, ledger_id);
        let path = Path::from(index_name.as_str());
        let get = async { offloader.store.get(&path).await?.bytes().await };
        let bytes = offloader.timed("get index", &index_name, get).await?;
        let index = decode_index(&index_name, &bytes)?;
        if index.metadata.ledger_id != ledger_id {
            return Err(corrupt(&index_name, "index of another ledger"));
        }
        Ok(OffloadedLedger {
            offloader,
            ledger_id,
            data_name: data_object_name(uuid, ledger_id),
            index,
            state: Mutex::new(ReadState::default()),
        })
    }

    pub fn index(&self) -> &LedgerIndex {
        &self.index
    }

    pub fn entry_count(&self) -> u64 {
        self.index.metadata.entry_count
    }

    /// Entries `first..=last` in order, as (entry id, payload).
    pub async fn read(&self, first: u64, last: u64) -> Result<Vec<(u64, Bytes)>> {
        let count = self.entry_count();
        if first > last || last >= count {
            return Err(OffloadError::NoSuchEntries {
                ledger_id: self.ledger_id,
                first,
                last,
                count,
            });
        }
        let mut st = self.lock().clone();
        let mut offset = self.start_of(&mut st, first).await?;
        let mut out = Vec::with_capacity((last - first + 1).min(10_000) as usize);
        let mut id = first;
        while id <= last {
            let (payload, next) = self.entry_at(&mut st, id, offset).await?;
            out.push((id, payload));
            offset = next;
            id += 1;
        }
        st.next = Some((id, offset));
        *self.lock() = st;
        Ok(out)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReadState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Offset of entry `first`'s header: where the last read stopped when it
    /// continues there, else found by walking its block from the start.
    async fn start_of(&self, st: &mut ReadState, first: u64) -> Result<u64> {
        if let Some((id, offset)) = st.next {
            if id == first {
                return Ok(offset);
            }
        }
        let Some(block) = self.index.block_of(first).copied() else {
            return Err(corrupt(&self.data_name, "index has no block for an entry"));
        };
        let mut offset = block.offset;
        let mut id = block.first_entry_id;
        while id < first {
            let (_, next) = self.entry_at(st, id, offset).await?;
            offset = next;
            id += 1;
        }
        Ok(offset)
    }

    /// Reads entry `id` whose header (or its block's header, at a block
    /// start) is at `offset`; returns its payload and the next offset.
    async fn entry_at(&self, st: &mut ReadState, id: u64, mut offset: u64) -> Result<(Bytes, u64)> {
        if let Some(block) = self.index.block_at(offset).copied() {
            let header = self.bytes(st, offset, BLOCK_HEADER_LEN).await?;
            let h = decode_block_header(&self.data_name, &header)?;
            if h.first_entry_id != block.first_entry_id || h.block_len != block.len {
                return Err(corrupt(
                    &self.data_name,
                    "block header disagrees with the index",
                ));
            }
            offset += u64::from(h.header_len);
        }
        let header = self.bytes(st, offset, ENTRY_HEADER_LEN).await?;
        let (len, found) = decode_entry_header(&self.data_name, &header)?;
        if found != id {
            return Err(corrupt(&self.data_name, "entry id out of sequence"));
        }
        let start = offset + ENTRY_HEADER_LEN as u64;
        let payload = self.bytes(st, start, len as usize).await?;
        Ok((payload, start + u64::from(len)))
    }

    /// Bytes `offset..offset + len` of the data object, from the buffer or
    /// from one ranged GET of at least `read_buffer_size` bytes.
    async fn bytes(&self, st: &mut ReadState, offset: u64, len: usize) -> Result<Bytes> {
        let end = offset + len as u64;
        if end > self.index.data_len {
            return Err(corrupt(
                &self.data_name,
                "read past the end of the data object",
            ));
        }
        let buf_end = st.buf_offset + st.buf.len() as u64;
        if offset < st.buf_offset || end > buf_end {
            let ahead = self.offloader.config.read_buffer_size.max(len) as u64;
            let fetch_end = (offset + ahead).min(self.index.data_len);
            let path = Path::from(self.data_name.as_str());
            let get = self.offloader.store.get_range(&path, offset..fetch_end);
            let buf = self
                .offloader
                .timed("get range", &self.data_name, get)
                .await?;
            if buf.len() as u64 != fetch_end - offset {
                return Err(corrupt(&self.data_name, "short ranged read"));
            }
            st.buf_offset = offset;
            st.buf = buf;
        }
        let start = (offset - st.buf_offset) as usize;
        Ok(st.buf.slice(start..start + len))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::DriverConfig;

    fn offloader(dir: &tempfile::TempDir, block: usize, read_ahead: usize) -> Offloader {
        let mut c = DriverConfig::filesystem(&dir.path().display().to_string());
        c.max_block_size = block;
        c.part_size = 4096;
        c.read_buffer_size = read_ahead;
        Offloader::new(c).unwrap()
    }

    fn payload(id: u64) -> Vec<u8> {
        format!("entry-{id}-")
            .repeat((id % 50) as usize + 1)
            .into_bytes()
    }

    async fn write(o: &Offloader, uuid: &str, ledger: u64, n: u64) {
        let mut w = o.writer(uuid, ledger);
        for id in 0..n {
            w.append(id, &payload(id)).await.unwrap();
        }
        let props = BTreeMap::from([("k".to_string(), "v".to_string())]);
        let info = w.finish(props).await.unwrap();
        assert_eq!(info.entry_count, n);
    }

    #[tokio::test]
    async fn entries_read_back_sequentially_and_at_random() {
        let dir = tempfile::tempdir().unwrap();
        let o = offloader(&dir, 2048, 1500);
        write(&o, "u1", 9, 500).await;
        let l = o.open("u1", 9).await.unwrap();
        assert!(l.index().blocks.len() > 10, "small blocks: many of them");
        assert_eq!(l.index().metadata.properties["k"], "v");
        let mut id = 0;
        while id < 500 {
            let last = (id + 6).min(499);
            for (got, p) in l.read(id, last).await.unwrap() {
                assert_eq!((got, p.to_vec()), (id, payload(id)));
                id += 1;
            }
        }
        for (first, last) in [(499, 499), (0, 0), (250, 260), (17, 17)] {
            let got = l.read(first, last).await.unwrap();
            let ids: Vec<u64> = got.iter().map(|(i, _)| *i).collect();
            assert_eq!(ids, (first..=last).collect::<Vec<_>>());
            assert_eq!(got[0].1.to_vec(), payload(first));
        }
        assert!(matches!(
            l.read(10, 500).await,
            Err(OffloadError::NoSuchEntries { .. })
        ));
    }

    #[tokio::test]
    async fn an_entry_larger_than_a_block_gets_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let o = offloader(&dir, 1024, 100);
        let mut w = o.writer("u", 1);
        let big = vec![7u8; 5000];
        w.append(0, b"small").await.unwrap();
        w.append(1, &big).await.unwrap();
        w.append(2, b"after").await.unwrap();
        w.finish(BTreeMap::new()).await.unwrap();
        let l = o.open("u", 1).await.unwrap();
        assert_eq!(l.index().blocks.len(), 3);
        let got = l.read(0, 2).await.unwrap();
        assert_eq!(got[1].1.len(), 5000);
        assert_eq!(&got[2].1[..], b"after");
    }

    #[tokio::test]
    async fn out_of_order_appends_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let o = offloader(&dir, 1024, 100);
        let mut w = o.writer("u", 1);
        let err = w.append(1, b"x").await.unwrap_err();
        assert!(matches!(
            err,
            OffloadError::OutOfOrder {
                expected: 0,
                got: 1,
                ..
            }
        ));
    }

    #[tokio::test]
    async fn an_empty_ledger_and_deletion() {
        let dir = tempfile::tempdir().unwrap();
        let o = offloader(&dir, 1024, 100);
        o.writer("e", 4).finish(BTreeMap::new()).await.unwrap();
        write(&o, "f", 5, 30).await;
        assert_eq!(o.open("e", 4).await.unwrap().entry_count(), 0);
        assert_eq!(o.list().await.unwrap().len(), 4);
        o.delete("e", 4).await.unwrap();
        o.delete("f", 5).await.unwrap();
        o.delete("f", 5).await.unwrap(); // idempotent
        assert!(o.list().await.unwrap().is_empty());
        assert!(matches!(
            o.open("f", 5).await,
            Err(OffloadError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn a_corrupt_data_object_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let o = offloader(&dir, 1024, 100);
        write(&o, "c", 2, 40).await;
        let data = dir.path().join(data_object_name("c", 2));
        let mut bytes = std::fs::read(&data).unwrap();
        bytes[0] ^= 0xff;
        std::fs::write(&data, bytes).unwrap();
        let l = o.open("c", 2).await.unwrap();
        assert!(matches!(
            l.read(0, 3).await,
            Err(OffloadError::Corrupt { .. })
        ));
    }
}

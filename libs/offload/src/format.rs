//! The object format (docs/OFFLOAD.md): a ledger's data object is a sequence
//! of blocks, its index object maps each block's first entry id to the
//! block's offset. Pure encoding and decoding; all integers big-endian.
//!
//! Block: `magic u32 | version u16 | header_len u16 | block_len u32 |
//! first_entry_id u64 | entry_count u32`, then `entry_count` entries of
//! `len u32 | entry_id u64 | payload[len]`. No entry is split across blocks;
//! a block holds at least one entry, so an entry larger than the block size
//! makes a block of its own.

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes};
use serde::{Deserialize, Serialize};

use crate::error::{OffloadError, Result};

/// The format version written, and the only one read.
pub const FORMAT_VERSION: u16 = 1;
pub const BLOCK_MAGIC: u32 = u32::from_be_bytes(*b"MGBK");
pub const INDEX_MAGIC: u32 = u32::from_be_bytes(*b"MGIX");
pub const BLOCK_HEADER_LEN: usize = 24;
/// `len u32 | entry_id u64` before each payload.
pub const ENTRY_HEADER_LEN: usize = 12;
const INDEX_BLOCK_LEN: usize = 24;

/// What the index says about one block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockInfo {
    pub first_entry_id: u64,
    pub entry_count: u32,
    /// Where the block starts in the data object.
    pub offset: u64,
    /// Header included.
    pub len: u32,
}

impl BlockInfo {
    pub fn end(&self) -> u64 {
        self.offset + u64::from(self.len)
    }
    pub fn contains(&self, entry_id: u64) -> bool {
        entry_id >= self.first_entry_id
            && entry_id - self.first_entry_id < u64::from(self.entry_count)
    }
}

/// The ledger's description kept in the index object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerMetadata {
    pub ledger_id: u64,
    pub entry_count: u64,
    /// Sum of the entries' payload lengths.
    pub payload_bytes: u64,
    /// The caller's own description (managed ledger name, publish times, …).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// The decoded index object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerIndex {
    pub metadata: LedgerMetadata,
    pub data_len: u64,
    /// Sorted by first entry id and by offset; contiguous, covering entries
    /// `0..metadata.entry_count` and bytes `0..data_len`.
    pub blocks: Vec<BlockInfo>,
}

impl LedgerIndex {
    /// The block holding `entry_id`, if any.
    pub fn block_of(&self, entry_id: u64) -> Option<&BlockInfo> {
        let i = self
            .blocks
            .partition_point(|b| b.first_entry_id <= entry_id)
            .checked_sub(1)?;
        self.blocks.get(i).filter(|b| b.contains(entry_id))
    }

    /// The block starting at `offset`, if one does.
    pub fn block_at(&self, offset: u64) -> Option<&BlockInfo> {
        let i = self.blocks.partition_point(|b| b.offset < offset);
        self.blocks.get(i).filter(|b| b.offset == offset)
    }
}

/// Collects entries into one block; the header is written by `finish`.
#[derive(Debug)]
pub struct BlockBuilder {
    max_len: usize,
    buf: Vec<u8>,
    first_entry_id: u64,
    entry_count: u32,
}

impl BlockBuilder {
    pub fn new(max_len: usize) -> Self {
        BlockBuilder {
            max_len,
            buf: Vec::new(),
            first_entry_id: 0,
            entry_count: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entry_count == 0
    }

    /// Whether an entry of `payload_len` bytes fits; an empty block takes
    /// any entry (entries are never split).
    pub fn fits(&self, payload_len: usize) -> bool {
        self.is_empty()
            || (self.entry_count < u32::MAX
                && self.buf.len() + ENTRY_HEADER_LEN + payload_len <= self.max_len)
    }

    /// Appends an entry; the caller checked `fits` and that `payload` is
    /// under 4 GiB.
    pub fn push(&mut self, entry_id: u64, payload: &[u8]) {
        if self.is_empty() {
            self.first_entry_id = entry_id;
            self.buf.reserve(self.max_len.min(1 << 20));
            self.buf.resize(BLOCK_HEADER_LEN, 0);
        }
        self.buf.put_u32(payload.len() as u32);
        self.buf.put_u64(entry_id);
        self.buf.put_slice(payload);
        self.entry_count += 1;
    }

    /// The encoded block (header filled in) and its index record at
    /// `offset`; leaves the builder empty.
    pub fn finish(&mut self, offset: u64) -> (Bytes, BlockInfo) {
        let mut buf = std::mem::take(&mut self.buf);
        let len = buf.len() as u32;
        let mut header = &mut buf[..BLOCK_HEADER_LEN];
        header.put_u32(BLOCK_MAGIC);
        header.put_u16(FORMAT_VERSION);
        header.put_u16(BLOCK_HEADER_LEN as u16);
        header.put_u32(len);
        header.put_u64(self.first_entry_id);
        header.put_u32(self.entry_count);
        let info = BlockInfo {
            first_entry_id: self.first_entry_id,
            entry_count: self.entry_count,
            offset,
            len,
        };
        self.entry_count = 0;
        (Bytes::from(buf), info)
    }

    /// Encoded length so far (0 when empty).
    pub fn len(&self) -> usize {
        self.buf.len()
    }
}

/// A decoded block header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockHeader {
    pub header_len: u16,
    pub block_len: u32,
    pub first_entry_id: u64,
    pub entry_count: u32,
}

/// Decodes a block header from the first `BLOCK_HEADER_LEN` bytes of `buf`.
pub fn decode_block_header(object: &str, mut buf: &[u8]) -> Result<BlockHeader> {
    if buf.len() < BLOCK_HEADER_LEN {
        return Err(corrupt(object, "truncated block header"));
    }
    if buf.get_u32() != BLOCK_MAGIC {
        return Err(corrupt(object, "bad block magic"));
    }
    check_version(object, buf.get_u16())?;
    let header = BlockHeader {
        header_len: buf.get_u16(),
        block_len: buf.get_u32(),
        first_entry_id: buf.get_u64(),
        entry_count: buf.get_u32(),
    };
    if usize::from(header.header_len) < BLOCK_HEADER_LEN
        || header.block_len < u32::from(header.header_len)
    {
        return Err(corrupt(object, "inconsistent block header"));
    }
    Ok(header)
}

/// Decodes an entry header (`len`, `entry_id`) from the start of `buf`.
pub fn decode_entry_header(object: &str, mut buf: &[u8]) -> Result<(u32, u64)> {
    if buf.len() < ENTRY_HEADER_LEN {
        return Err(corrupt(object, "truncated entry header"));
    }
    Ok((buf.get_u32(), buf.get_u64()))
}

/// Decodes a whole block (tests and tools; the reader walks blocks lazily).
pub fn decode_block(object: &str, block: &Bytes) -> Result<(BlockHeader, Vec<(u64, Bytes)>)> {
    let header = decode_block_header(object, block)?;
    if block.len() != header.block_len as usize {
        return Err(corrupt(object, "block length differs from its header"));
    }
    let mut pos = usize::from(header.header_len);
    let mut entries = Vec::with_capacity(header.entry_count as usize);
    for i in 0..u64::from(header.entry_count) {
        let (len, id) = decode_entry_header(object, &block[pos.min(block.len())..])?;
        let start = pos + ENTRY_HEADER_LEN;
        let end = start + len as usize;
        if end > block.len() || id != header.first_entry_id + i {
            return Err(corrupt(
                object,
                "entry overruns its block or is out of order",
            ));
        }
        entries.push((id, block.slice(start..end)));
        pos = end;
    }
    if pos != block.len() {
        return Err(corrupt(object, "bytes after the block's last entry"));
    }
    Ok((header, entries))
}

pub fn encode_index(index: &LedgerIndex) -> Bytes {
    let meta = serde_json::to_vec(&index.metadata).unwrap_or_default();
    let mut buf = Vec::with_capacity(32 + index.blocks.len() * INDEX_BLOCK_LEN + meta.len());
    buf.put_u32(INDEX_MAGIC);
    buf.put_u16(FORMAT_VERSION);
    buf.put_u16(0);
    buf.put_u64(index.metadata.ledger_id);
    buf.put_u64(index.data_len);
    buf.put_u32(index.blocks.len() as u32);
    for b in &index.blocks {
        buf.put_u64(b.first_entry_id);
        buf.put_u32(b.entry_count);
        buf.put_u64(b.offset);
        buf.put_u32(b.len);
    }
    buf.put_u32(meta.len() as u32);
    buf.put_slice(&meta);
    Bytes::from(buf)
}

/// Decodes and checks an index object: version, and blocks that tile the
/// data object and the entry ids without gaps.
pub fn decode_index(object: &str, mut buf: &[u8]) -> Result<LedgerIndex> {
    if buf.len() < 28 {
        return Err(corrupt(object, "truncated index"));
    }
    if buf.get_u32() != INDEX_MAGIC {
        return Err(corrupt(object, "bad index magic"));
    }
    check_version(object, buf.get_u16())?;
    buf.advance(2);
    let ledger_id = buf.get_u64();
    let data_len = buf.get_u64();
    let count = buf.get_u32() as usize;
    if buf.len() < count.saturating_mul(INDEX_BLOCK_LEN).saturating_add(4) {
        return Err(corrupt(object, "truncated block list"));
    }
    let blocks: Vec<BlockInfo> = (0..count)
        .map(|_| BlockInfo {
            first_entry_id: buf.get_u64(),
            entry_count: buf.get_u32(),
            offset: buf.get_u64(),
            len: buf.get_u32(),
        })
        .collect();
    let meta_len = buf.get_u32() as usize;
    if buf.len() != meta_len {
        return Err(corrupt(object, "metadata length differs from the rest"));
    }
    let metadata: LedgerMetadata =
        serde_json::from_slice(buf).map_err(|e| corrupt(object, &format!("metadata: {e}")))?;
    let index = LedgerIndex {
        metadata,
        data_len,
        blocks,
    };
    check_tiling(object, ledger_id, &index)?;
    Ok(index)
}

/// Blocks must follow each other in the data object and in entry ids.
fn check_tiling(object: &str, ledger_id: u64, index: &LedgerIndex) -> Result<()> {
    let (mut offset, mut entry) = (0u64, 0u64);
    for b in &index.blocks {
        if b.offset != offset || b.first_entry_id != entry || b.entry_count == 0 {
            return Err(corrupt(object, "index blocks leave gaps"));
        }
        offset = b.end();
        entry += u64::from(b.entry_count);
    }
    if offset != index.data_len
        || entry != index.metadata.entry_count
        || ledger_id != index.metadata.ledger_id
    {
        return Err(corrupt(object, "index disagrees with its metadata"));
    }
    Ok(())
}

fn check_version(object: &str, found: u16) -> Result<()> {
    if found != FORMAT_VERSION {
        return Err(OffloadError::UnsupportedVersion {
            object: object.to_string(),
            found,
            supported: FORMAT_VERSION,
        });
    }
    Ok(())
}

pub fn corrupt(object: &str, why: &str) -> OffloadError {
    OffloadError::Corrupt {
        object: object.to_string(),
        why: why.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Splits entries into blocks as the writer does.
    fn encode(max_len: usize, payloads: &[Vec<u8>]) -> (Vec<Bytes>, Vec<BlockInfo>) {
        let mut b = BlockBuilder::new(max_len);
        let (mut blocks, mut infos, mut offset) = (Vec::new(), Vec::new(), 0);
        for (id, p) in payloads.iter().enumerate() {
            if !b.fits(p.len()) {
                let (bytes, info) = b.finish(offset);
                offset = info.end();
                blocks.push(bytes);
                infos.push(info);
            }
            b.push(id as u64, p);
        }
        if !b.is_empty() {
            let (bytes, info) = b.finish(offset);
            blocks.push(bytes);
            infos.push(info);
        }
        (blocks, infos)
    }

    proptest! {
        #[test]
        fn blocks_round_trip_without_splitting_entries(
            payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..60),
            max_len in 1usize..1200,
        ) {
            let (blocks, infos) = encode(max_len, &payloads);
            let mut next = 0u64;
            for (bytes, info) in blocks.iter().zip(&infos) {
                let (h, entries) = decode_block("t", bytes).unwrap();
                prop_assert_eq!(h.first_entry_id, info.first_entry_id);
                prop_assert_eq!(h.entry_count as usize, entries.len());
                // A block over the limit holds exactly one (large) entry.
                prop_assert!(entries.len() == 1 || bytes.len() <= max_len);
                for (id, p) in entries {
                    prop_assert_eq!(id, next);
                    prop_assert_eq!(&p[..], &payloads[id as usize][..]);
                    next += 1;
                }
            }
            prop_assert_eq!(next as usize, payloads.len());
            let index = LedgerIndex {
                metadata: LedgerMetadata { ledger_id: 7, entry_count: next, ..Default::default() },
                data_len: infos.last().map_or(0, |b| b.end()),
                blocks: infos,
            };
            let decoded = decode_index("i", &encode_index(&index)).unwrap();
            prop_assert_eq!(&decoded, &index);
            for id in 0..next {
                prop_assert!(decoded.block_of(id).unwrap().contains(id));
            }
            prop_assert!(decoded.block_of(next).is_none());
        }

        #[test]
        fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_index("i", &bytes);
            let _ = decode_block("b", &Bytes::from(bytes));
        }
    }

    #[test]
    fn another_version_is_refused() {
        let (blocks, _) = encode(100, &[b"x".to_vec()]);
        let mut block = blocks[0].to_vec();
        block[5] = 2;
        let err = decode_block("b", &Bytes::from(block)).unwrap_err();
        assert!(matches!(
            err,
            OffloadError::UnsupportedVersion { found: 2, .. }
        ));
        let mut index = encode_index(&LedgerIndex {
            metadata: LedgerMetadata::default(),
            data_len: 0,
            blocks: vec![],
        })
        .to_vec();
        index[5] = 9;
        let err = decode_index("i", &index).unwrap_err();
        assert!(matches!(
            err,
            OffloadError::UnsupportedVersion { found: 9, .. }
        ));
    }

    #[test]
    fn an_index_with_gaps_is_corrupt() {
        let index = LedgerIndex {
            metadata: LedgerMetadata {
                ledger_id: 1,
                entry_count: 4,
                ..Default::default()
            },
            data_len: 100,
            blocks: vec![BlockInfo {
                first_entry_id: 1,
                entry_count: 4,
                offset: 0,
                len: 100,
            }],
        };
        let err = decode_index("i", &encode_index(&index)).unwrap_err();
        assert!(matches!(err, OffloadError::Corrupt { .. }), "{err}");
    }
}

//! What a managed ledger stores in each ledger entry: a small header, then the
//! caller's payload.
//!
//! The header carries the publish time (TTL and reset-by-time search by it)
//! and the ledger's running byte count through this entry, so after a
//! takeover recovers a ledger its size is known from its last entry alone.

use std::sync::Arc;

use crate::codec::{Reader, Writer};
use crate::position::Position;

const FORMAT: u8 = 1;
pub const HEADER_LEN: usize = 17;

/// One entry as readers see it.
#[derive(Clone, Debug)]
pub struct Entry {
    pub position: Position,
    pub publish_time_ms: u64,
    /// The caller's payload (header stripped).
    pub data: Arc<[u8]>,
}

impl Entry {
    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub publish_time_ms: u64,
    /// Sum of payload bytes of this ledger's entries up to and including this one.
    pub ledger_bytes: u64,
}

pub fn encode(header: Header, payload: &[u8]) -> Vec<u8> {
    let mut w = Writer::with_capacity(HEADER_LEN + payload.len());
    w.u8(FORMAT);
    w.u64(header.publish_time_ms);
    w.u64(header.ledger_bytes);
    w.bytes(payload);
    w.into_vec()
}

pub fn decode(raw: &[u8]) -> Result<(Header, &[u8]), String> {
    let mut r = Reader::new(raw);
    let format = r.u8()?;
    if format != FORMAT {
        return Err(format!("unknown entry format {format}"));
    }
    let header = Header {
        publish_time_ms: r.u64()?,
        ledger_bytes: r.u64()?,
    };
    Ok((header, r.rest()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects_garbage() {
        let h = Header {
            publish_time_ms: 1_700_000_000_123,
            ledger_bytes: 99,
        };
        let raw = encode(h, b"hello");
        assert_eq!(raw.len(), HEADER_LEN + 5);
        let (h2, p) = decode(&raw).unwrap();
        assert_eq!((h2, p), (h, &b"hello"[..]));
        assert!(decode(&raw[..10]).is_err());
        assert!(decode(&[9u8; 20]).is_err());
    }
}

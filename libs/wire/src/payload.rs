//! "Headers and payload": the part of a SEND or MESSAGE frame after the command,
//! which is also exactly what a ledger entry stores.
//!
//! ```text
//! [0x0e02][u32 size][BrokerEntryMetadata]           optional, added by the broker
//! [0x0e01][u32 CRC32C]                              optional on receive (very old clients)
//! [u32 metadata size][MessageMetadata][body]
//! ```
//!
//! The CRC32C covers everything after the checksum field up to the end of the
//! frame: metadata size, metadata and body. The broker entry metadata is not
//! covered. A 4-byte metadata size can never start with a magic value because
//! it would then exceed any frame limit, so the optional sections are unambiguous.

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;

use crate::error::{malformed, WireError};
use crate::pb::{BrokerEntryMetadata, MessageMetadata};

/// Magic number that introduces the CRC32C checksum.
pub const MAGIC_CRC32C: u16 = 0x0e01;
/// Magic number that introduces the broker entry metadata section.
pub const MAGIC_BROKER_ENTRY_METADATA: u16 = 0x0e02;

/// Length of `[magic][checksum]`.
const CHECKSUM_HEADER_LEN: usize = 2 + 4;

/// A message as stored in a ledger entry and as sent in MESSAGE frames:
/// headers and payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Payload {
    /// The producer's metadata for the entry (one per batch).
    pub metadata: MessageMetadata,
    /// Broker entry metadata, if present. Not part of `raw`; written in front
    /// of it by [`Payload::write_to`] and [`crate::encode_frame`].
    pub broker_entry_metadata: Option<BrokerEntryMetadata>,
    /// The message body after the metadata (still compressed / batched as the
    /// producer sent it). Shares memory with `raw`.
    pub body: Bytes,
    /// Bytes from the 0x0e01 magic to the end (magic + checksum + metadata size
    /// + metadata + body). Always carries a valid checksum, computed here if the
    ///   sender sent none, so it can be stored and forwarded verbatim.
    pub raw: Bytes,
}

impl Payload {
    /// Builds a payload from metadata and body, encoding `raw` with a checksum.
    pub fn new(metadata: MessageMetadata, body: Bytes) -> Payload {
        let metadata_len = metadata.encoded_len();
        let mut buf = BytesMut::with_capacity(CHECKSUM_HEADER_LEN + 4 + metadata_len + body.len());
        buf.put_u16(MAGIC_CRC32C);
        buf.put_u32(0); // checksum, filled in below
        buf.put_u32(metadata_len as u32);
        put_message(&metadata, &mut buf);
        buf.extend_from_slice(&body);
        let checksum = crc32c::crc32c(&buf[CHECKSUM_HEADER_LEN..]);
        buf[2..CHECKSUM_HEADER_LEN].copy_from_slice(&checksum.to_be_bytes());
        let raw = buf.freeze();
        let body = raw.slice(CHECKSUM_HEADER_LEN + 4 + metadata_len..);
        Payload {
            metadata,
            broker_entry_metadata: None,
            body,
            raw,
        }
    }

    /// Parses headers and payload as sent after a SEND/MESSAGE command or as
    /// stored in a ledger entry: an optional broker entry metadata section, an
    /// optional magic + checksum (verified when present), then the metadata.
    pub fn parse(data: Bytes) -> Result<Payload, WireError> {
        let (broker_entry_metadata, rest) = split_broker_entry_metadata(data)?;
        let raw = if read_u16(&rest, 0) == Some(MAGIC_CRC32C) {
            let expected = read_u32(&rest, 2).ok_or_else(|| malformed("truncated checksum"))?;
            let actual = crc32c::crc32c(&rest[CHECKSUM_HEADER_LEN..]);
            if expected != actual {
                return Err(WireError::ChecksumMismatch { expected, actual });
            }
            rest
        } else {
            // Senders without checksum support: add one so `raw` is uniform.
            with_checksum(&rest)
        };
        let (metadata, body) = parse_metadata(raw.slice(CHECKSUM_HEADER_LEN..))?;
        Ok(Payload {
            metadata,
            broker_entry_metadata,
            body,
            raw,
        })
    }

    /// Returns the payload with broker entry metadata attached.
    pub fn with_broker_entry_metadata(mut self, metadata: BrokerEntryMetadata) -> Payload {
        self.broker_entry_metadata = Some(metadata);
        self
    }

    /// The CRC32C carried in `raw`.
    pub fn checksum(&self) -> u32 {
        read_u32(&self.raw, 2).unwrap_or_default()
    }

    /// Number of bytes [`Payload::write_to`] writes.
    pub fn encoded_len(&self) -> usize {
        self.broker_entry_metadata
            .as_ref()
            .map_or(0, |m| CHECKSUM_HEADER_LEN + m.encoded_len())
            + self.raw.len()
    }

    /// Writes the broker entry metadata section (if any) followed by `raw`:
    /// the bytes that follow the command in a frame, or a ledger entry.
    pub fn write_to(&self, dst: &mut BytesMut) {
        dst.reserve(self.encoded_len());
        if let Some(m) = &self.broker_entry_metadata {
            dst.put_u16(MAGIC_BROKER_ENTRY_METADATA);
            dst.put_u32(m.encoded_len() as u32);
            put_message(m, dst);
        }
        dst.extend_from_slice(&self.raw);
    }

    /// The bytes to store as a ledger entry; [`Payload::parse`] reads them back.
    /// Without broker entry metadata this is `raw` itself (no copy).
    pub fn entry_bytes(&self) -> Bytes {
        if self.broker_entry_metadata.is_none() {
            return self.raw.clone();
        }
        let mut buf = BytesMut::with_capacity(self.encoded_len());
        self.write_to(&mut buf);
        buf.freeze()
    }
}

/// Splits off a leading `[0x0e02][u32 size][BrokerEntryMetadata]` section.
fn split_broker_entry_metadata(
    data: Bytes,
) -> Result<(Option<BrokerEntryMetadata>, Bytes), WireError> {
    if read_u16(&data, 0) != Some(MAGIC_BROKER_ENTRY_METADATA) {
        return Ok((None, data));
    }
    let size = read_u32(&data, 2)
        .ok_or_else(|| malformed("truncated broker entry metadata size"))? as usize;
    let end = CHECKSUM_HEADER_LEN
        .checked_add(size)
        .filter(|&end| end <= data.len())
        .ok_or_else(|| {
            malformed(format!(
                "broker entry metadata size {size} exceeds the {} bytes left",
                data.len() - CHECKSUM_HEADER_LEN
            ))
        })?;
    let metadata = BrokerEntryMetadata::decode(&data[CHECKSUM_HEADER_LEN..end])?;
    Ok((Some(metadata), data.slice(end..)))
}

/// Parses `[u32 metadata size][MessageMetadata][body]`.
fn parse_metadata(data: Bytes) -> Result<(MessageMetadata, Bytes), WireError> {
    let size =
        read_u32(&data, 0).ok_or_else(|| malformed("message metadata size missing"))? as usize;
    let end = 4usize
        .checked_add(size)
        .filter(|&end| end <= data.len())
        .ok_or_else(|| {
            malformed(format!(
                "message metadata size {size} exceeds the {} bytes left",
                data.len() - 4
            ))
        })?;
    let metadata = MessageMetadata::decode(&data[4..end])?;
    Ok((metadata, data.slice(end..)))
}

/// Prefixes `[0x0e01][crc32c(data)]` to data that came without a checksum.
fn with_checksum(data: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(CHECKSUM_HEADER_LEN + data.len());
    buf.put_u16(MAGIC_CRC32C);
    buf.put_u32(crc32c::crc32c(data));
    buf.extend_from_slice(data);
    buf.freeze()
}

pub(crate) fn read_u16(data: &[u8], at: usize) -> Option<u16> {
    let bytes = data.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([bytes[0], bytes[1]]))
}

pub(crate) fn read_u32(data: &[u8], at: usize) -> Option<u32> {
    let bytes = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// Appends a protobuf message. `BytesMut` grows on demand, so prost's
/// "insufficient capacity" error cannot happen here.
pub(crate) fn put_message(message: &impl Message, dst: &mut BytesMut) {
    let _ = message.encode(dst);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::KeyValue;

    fn metadata() -> MessageMetadata {
        MessageMetadata {
            producer_name: "p".into(),
            sequence_id: 42,
            publish_time: 1_700_000_000_000,
            properties: vec![KeyValue {
                key: "k".into(),
                value: "v".into(),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn new_then_parse_round_trips() {
        let p = Payload::new(metadata(), Bytes::from_static(b"hello"));
        assert_eq!(read_u16(&p.raw, 0), Some(MAGIC_CRC32C));
        assert_eq!(p.checksum(), crc32c::crc32c(&p.raw[6..]));
        assert_eq!(&p.body[..], b"hello");
        let back = Payload::parse(p.raw.clone()).expect("parse");
        assert_eq!(back, p);
    }

    #[test]
    fn parse_without_checksum_adds_one() {
        let p = Payload::new(metadata(), Bytes::from_static(b"old client"));
        let no_magic = p.raw.slice(6..);
        let back = Payload::parse(no_magic).expect("parse");
        assert_eq!(back.raw, p.raw);
        assert_eq!(back.metadata, p.metadata);
        assert_eq!(back.body, p.body);
    }

    #[test]
    fn bad_checksum_is_rejected() {
        let p = Payload::new(metadata(), Bytes::from_static(b"payload"));
        let mut bytes = p.raw.to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        match Payload::parse(Bytes::from(bytes)) {
            Err(WireError::ChecksumMismatch { expected, actual }) => {
                assert_eq!(expected, p.checksum());
                assert_ne!(actual, expected);
            }
            other => panic!("expected checksum mismatch, got {other:?}"),
        }
    }

    #[test]
    fn broker_entry_metadata_round_trips_outside_the_checksum() {
        let bem = BrokerEntryMetadata {
            broker_timestamp: Some(5),
            index: Some(9),
        };
        let p = Payload::new(metadata(), Bytes::from_static(b"x")).with_broker_entry_metadata(bem);
        let entry = p.entry_bytes();
        assert_eq!(read_u16(&entry, 0), Some(MAGIC_BROKER_ENTRY_METADATA));
        assert_eq!(entry.len(), p.encoded_len());
        let back = Payload::parse(entry).expect("parse");
        assert_eq!(back, p);
    }

    #[test]
    fn truncated_metadata_is_malformed() {
        let p = Payload::new(metadata(), Bytes::new());
        // Drop the last metadata byte: checksum would fail, so use the no-magic form.
        let cut = p.raw.slice(6..p.raw.len() - 1);
        assert!(matches!(Payload::parse(cut), Err(WireError::Malformed(_))));
        assert!(matches!(
            Payload::parse(Bytes::from_static(&[0, 0])),
            Err(WireError::Malformed(_))
        ));
        assert!(matches!(
            Payload::parse(Bytes::new()),
            Err(WireError::Malformed(_))
        ));
        assert!(matches!(
            Payload::parse(Bytes::from_static(&[0x0e, 0x01, 0, 0])),
            Err(WireError::Malformed(_))
        ));
        assert!(matches!(
            Payload::parse(Bytes::from_static(&[0x0e, 0x02, 0, 0, 0, 9, 1])),
            Err(WireError::Malformed(_))
        ));
    }

    #[test]
    fn garbage_metadata_is_a_decode_error() {
        // metadata size 2, metadata bytes 0xff 0xff (invalid varint key)
        let data = Bytes::from_static(&[0, 0, 0, 2, 0xff, 0xff]);
        assert!(matches!(Payload::parse(data), Err(WireError::Decode(_))));
    }
}

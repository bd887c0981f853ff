//! Batched payloads. A producer may pack several messages into one entry; the
//! (uncompressed) body is then `num_messages_in_batch` repetitions of
//!
//! ```text
//! [u32 size][SingleMessageMetadata of that size][payload_size bytes of payload]
//! ```
//!
//! and `MessageMetadata.num_messages_in_batch` is present (even when it is 1).
//! Compression, if any, applies to the whole batched body.

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;

use crate::compression::decompress;
use crate::error::{malformed, WireError};
use crate::payload::{put_message, read_u32, Payload};
use crate::pb::{MessageMetadata, SingleMessageMetadata};
use crate::CompressionType;

/// One message of a batch (or the only message of a non-batched entry).
#[derive(Debug, Clone, PartialEq)]
pub struct SingleMessage {
    pub metadata: SingleMessageMetadata,
    pub payload: Bytes,
}

/// Splits an uncompressed batch body into its messages. Checks that exactly
/// `num_messages` well-formed messages fill the body; never panics.
pub fn split(body: &Bytes, num_messages: usize) -> Result<Vec<SingleMessage>, WireError> {
    // Each message needs at least its size prefix; this also bounds the allocation.
    if num_messages > body.len() / 4 {
        return Err(malformed(format!(
            "a batch of {} bytes cannot hold {num_messages} messages",
            body.len()
        )));
    }
    let mut messages = Vec::with_capacity(num_messages);
    let mut pos = 0usize;
    for index in 0..num_messages {
        let size = read_u32(body, pos)
            .ok_or_else(|| malformed(format!("batch message {index}: metadata size missing")))?
            as usize;
        let metadata_start = pos + 4;
        let metadata_end = checked_end(metadata_start, size, body.len()).ok_or_else(|| {
            malformed(format!(
                "batch message {index}: metadata size {size} overruns the batch"
            ))
        })?;
        let metadata = SingleMessageMetadata::decode(&body[metadata_start..metadata_end])?;
        let payload_size = usize::try_from(metadata.payload_size).map_err(|_| {
            malformed(format!(
                "batch message {index}: negative payload size {}",
                metadata.payload_size
            ))
        })?;
        let end = checked_end(metadata_end, payload_size, body.len()).ok_or_else(|| {
            malformed(format!(
                "batch message {index}: payload size {payload_size} overruns the batch"
            ))
        })?;
        messages.push(SingleMessage {
            metadata,
            payload: body.slice(metadata_end..end),
        });
        pos = end;
    }
    if pos != body.len() {
        return Err(malformed(format!(
            "{} bytes left after the {num_messages} messages of the batch",
            body.len() - pos
        )));
    }
    Ok(messages)
}

/// Serialises messages into a batch body. Each `payload_size` is set from the
/// actual payload length, so callers need not fill it in.
pub fn build(messages: &[SingleMessage]) -> Bytes {
    let mut buf = BytesMut::new();
    for message in messages {
        let mut metadata = message.metadata.clone();
        metadata.payload_size = i32::try_from(message.payload.len()).unwrap_or(i32::MAX);
        buf.reserve(4 + metadata.encoded_len() + message.payload.len());
        buf.put_u32(metadata.encoded_len() as u32);
        put_message(&metadata, &mut buf);
        buf.extend_from_slice(&message.payload);
    }
    buf.freeze()
}

/// The compression codec named by the metadata; unknown values are an error
/// rather than silently "none".
pub fn compression_of(metadata: &MessageMetadata) -> Result<CompressionType, WireError> {
    let value = metadata.compression.unwrap_or(CompressionType::None as i32);
    CompressionType::try_from(value)
        .map_err(|_| WireError::Compression(format!("unknown compression type {value}")))
}

/// The payload's body decompressed (per `compression` /
/// `uncompressed_size`); a batch stays a batch.
pub fn uncompressed_body(payload: &Payload) -> Result<Bytes, WireError> {
    let metadata = &payload.metadata;
    match compression_of(metadata)? {
        CompressionType::None => Ok(payload.body.clone()),
        kind => decompress(kind, &payload.body, metadata.uncompressed_size() as usize),
    }
}

/// Decompresses and splits the payload. A non-batched entry yields one
/// message whose metadata is built from the entry's `MessageMetadata` (key,
/// properties, event time, ...).
pub fn messages_of(payload: &Payload) -> Result<Vec<SingleMessage>, WireError> {
    let metadata = &payload.metadata;
    if !metadata.encryption_keys.is_empty() {
        return Err(WireError::Encrypted);
    }
    let body = uncompressed_body(payload)?;
    match metadata.num_messages_in_batch {
        Some(n) => {
            let n = usize::try_from(n)
                .map_err(|_| malformed(format!("negative num_messages_in_batch {n}")))?;
            split(&body, n)
        }
        None => Ok(vec![SingleMessage {
            metadata: single_metadata_of(metadata, body.len()),
            payload: body,
        }]),
    }
}

/// The per-message view of a non-batched entry's metadata.
fn single_metadata_of(m: &MessageMetadata, payload_len: usize) -> SingleMessageMetadata {
    SingleMessageMetadata {
        properties: m.properties.clone(),
        partition_key: m.partition_key.clone(),
        payload_size: i32::try_from(payload_len).unwrap_or(i32::MAX),
        compacted_out: None,
        event_time: m.event_time,
        partition_key_b64_encoded: m.partition_key_b64_encoded,
        ordering_key: m.ordering_key.clone(),
        sequence_id: Some(m.sequence_id),
        null_value: m.null_value,
        null_partition_key: m.null_partition_key,
    }
}

fn checked_end(start: usize, len: usize, limit: usize) -> Option<usize> {
    start.checked_add(len).filter(|&end| end <= limit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compression::compress;
    use crate::pb::{EncryptionKeys, KeyValue};

    fn message(key: &str, payload: &'static [u8]) -> SingleMessage {
        SingleMessage {
            metadata: SingleMessageMetadata {
                partition_key: Some(key.into()),
                payload_size: payload.len() as i32,
                sequence_id: Some(7),
                ..Default::default()
            },
            payload: Bytes::from_static(payload),
        }
    }

    #[test]
    fn build_then_split_round_trips() {
        let messages = vec![
            message("a", b"one"),
            message("b", b""),
            message("c", b"three"),
        ];
        let body = build(&messages);
        assert_eq!(split(&body, 3).expect("split"), messages);
    }

    #[test]
    fn build_fixes_payload_size() {
        let mut m = message("a", b"four");
        m.metadata.payload_size = 999;
        let out = split(&build(&[m]), 1).expect("split");
        assert_eq!(out[0].metadata.payload_size, 4);
    }

    #[test]
    fn wrong_counts_and_sizes_are_malformed() {
        let body = build(&[message("a", b"one"), message("b", b"two")]);
        for n in [0, 1, 3, 1_000_000] {
            assert!(
                matches!(split(&body, n), Err(WireError::Malformed(_))),
                "n = {n}"
            );
        }
        // payload_size larger than what is left
        let mut m = message("a", b"xy");
        m.metadata.payload_size = 50;
        let mut buf = BytesMut::new();
        buf.put_u32(m.metadata.encoded_len() as u32);
        put_message(&m.metadata, &mut buf);
        buf.extend_from_slice(b"xy");
        assert!(matches!(
            split(&buf.freeze(), 1),
            Err(WireError::Malformed(_))
        ));
        // negative payload_size
        m.metadata.payload_size = -1;
        let mut buf = BytesMut::new();
        buf.put_u32(m.metadata.encoded_len() as u32);
        put_message(&m.metadata, &mut buf);
        assert!(matches!(
            split(&buf.freeze(), 1),
            Err(WireError::Malformed(_))
        ));
        // metadata size beyond the batch
        assert!(matches!(
            split(&Bytes::from_static(&[0, 0, 1, 0, 0, 0, 0, 0]), 1),
            Err(WireError::Malformed(_))
        ));
    }

    fn entry_metadata() -> MessageMetadata {
        MessageMetadata {
            producer_name: "p".into(),
            sequence_id: 10,
            publish_time: 1,
            partition_key: Some("key".into()),
            properties: vec![KeyValue {
                key: "a".into(),
                value: "b".into(),
            }],
            event_time: Some(99),
            ..Default::default()
        }
    }

    #[test]
    fn messages_of_a_compressed_batch() {
        let messages = vec![message("a", b"one"), message("b", b"two")];
        let body = build(&messages);
        for kind in [
            CompressionType::Lz4,
            CompressionType::Zlib,
            CompressionType::Zstd,
            CompressionType::Snappy,
        ] {
            let mut metadata = entry_metadata();
            metadata.set_compression(kind);
            metadata.uncompressed_size = Some(body.len() as u32);
            metadata.num_messages_in_batch = Some(2);
            let payload = Payload::new(metadata, compress(kind, &body).expect("compress"));
            assert_eq!(
                messages_of(&payload).expect("messages"),
                messages,
                "{kind:?}"
            );
        }
    }

    #[test]
    fn messages_of_a_single_message() {
        let payload = Payload::new(entry_metadata(), Bytes::from_static(b"solo"));
        let out = messages_of(&payload).expect("messages");
        assert_eq!(out.len(), 1);
        assert_eq!(&out[0].payload[..], b"solo");
        let m = &out[0].metadata;
        assert_eq!(m.partition_key.as_deref(), Some("key"));
        assert_eq!(m.properties, entry_metadata().properties);
        assert_eq!(m.event_time, Some(99));
        assert_eq!(m.sequence_id, Some(10));
        assert_eq!(m.payload_size, 4);
    }

    #[test]
    fn batch_of_one_is_still_a_batch() {
        let messages = vec![message("a", b"one")];
        let mut metadata = entry_metadata();
        metadata.num_messages_in_batch = Some(1);
        let payload = Payload::new(metadata, build(&messages));
        assert_eq!(messages_of(&payload).expect("messages"), messages);
    }

    #[test]
    fn unknown_compression_and_encryption_are_reported() {
        let mut metadata = entry_metadata();
        metadata.compression = Some(42);
        let payload = Payload::new(metadata, Bytes::from_static(b"?"));
        assert!(matches!(
            messages_of(&payload),
            Err(WireError::Compression(_))
        ));

        let mut metadata = entry_metadata();
        metadata.encryption_keys.push(EncryptionKeys {
            key: "k".into(),
            value: vec![1],
            metadata: vec![],
        });
        let payload = Payload::new(metadata, Bytes::from_static(b"?"));
        assert!(matches!(messages_of(&payload), Err(WireError::Encrypted)));
    }

    #[test]
    fn negative_batch_count_is_malformed() {
        let mut metadata = entry_metadata();
        metadata.num_messages_in_batch = Some(-3);
        let payload = Payload::new(metadata, Bytes::new());
        assert!(matches!(
            messages_of(&payload),
            Err(WireError::Malformed(_))
        ));
    }
}

//! Property tests for the codec: whatever frames we encode decode back
//! unchanged however the bytes are split, and no byte string makes any
//! decoder panic or allocate beyond its limit.

use bytes::{Bytes, BytesMut};
use magnetar_wire::batch::{self, SingleMessage};
use magnetar_wire::compression::{compress, decompress};
use magnetar_wire::{
    encode_frame, pb, CompressionType, Frame, MessageMetadata, Payload, PulsarCodec,
    SingleMessageMetadata, WireError,
};
use proptest::prelude::*;
use tokio_util::codec::Decoder;

fn arb_metadata() -> impl Strategy<Value = MessageMetadata> {
    (
        "[a-z0-9-]{1,16}",
        any::<u64>(),
        any::<u64>(),
        proptest::option::of("[ -~]{0,24}"),
        proptest::collection::vec(("[a-z]{1,8}", "[ -~]{0,16}"), 0..4),
        proptest::option::of(1i32..100),
        proptest::option::of(any::<i64>()),
    )
        .prop_map(
            |(producer_name, sequence_id, publish_time, key, props, batch, deliver_at)| {
                MessageMetadata {
                    producer_name,
                    sequence_id,
                    publish_time,
                    partition_key: key,
                    properties: props
                        .into_iter()
                        .map(|(key, value)| pb::KeyValue { key, value })
                        .collect(),
                    num_messages_in_batch: batch,
                    deliver_at_time: deliver_at,
                    ..Default::default()
                }
            },
        )
}

fn arb_frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        Just(Frame::new(pb::CommandPing {})),
        (any::<u64>(), any::<u32>()).prop_map(|(consumer_id, message_permits)| Frame::new(
            pb::CommandFlow {
                consumer_id,
                message_permits
            }
        )),
        ("[ -~]{0,64}", any::<u64>(), any::<u64>()).prop_map(|(topic, request_id, producer_id)| {
            Frame::new(pb::CommandProducer {
                topic,
                request_id,
                producer_id,
                ..Default::default()
            })
        }),
        (
            any::<u64>(),
            any::<u64>(),
            arb_metadata(),
            proptest::collection::vec(any::<u8>(), 0..2048)
        )
            .prop_map(
                |(producer_id, sequence_id, metadata, body)| Frame::with_payload(
                    pb::CommandSend {
                        producer_id,
                        sequence_id,
                        ..Default::default()
                    },
                    Payload::new(metadata, Bytes::from(body)),
                )
            ),
        (
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            arb_metadata(),
            proptest::collection::vec(any::<u8>(), 0..512)
        )
            .prop_map(|(consumer_id, ledger_id, entry_id, metadata, body)| {
                Frame::with_payload(
                    pb::CommandMessage {
                        consumer_id,
                        message_id: pb::MessageIdData {
                            ledger_id,
                            entry_id,
                            ..Default::default()
                        },
                        ..Default::default()
                    },
                    Payload::new(metadata, Bytes::from(body)).with_broker_entry_metadata(
                        pb::BrokerEntryMetadata {
                            broker_timestamp: Some(ledger_id),
                            index: Some(entry_id),
                        },
                    ),
                )
            }),
    ]
}

fn decode_stream(bytes: &[u8], cuts: &[usize]) -> Result<Vec<Frame>, WireError> {
    let mut codec = PulsarCodec::default();
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut start = 0;
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.push(bytes.len());
    points.sort_unstable();
    for end in points {
        buf.extend_from_slice(&bytes[start..end.max(start)]);
        start = end.max(start);
        while let Some(frame) = codec.decode(&mut buf)? {
            frames.push(frame);
        }
    }
    assert!(buf.is_empty(), "bytes left over after the last frame");
    Ok(frames)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn frames_round_trip_across_any_split(
        frames in proptest::collection::vec(arb_frame(), 1..8),
        cuts in proptest::collection::vec(any::<usize>(), 0..6),
    ) {
        let mut bytes = BytesMut::new();
        for f in &frames {
            encode_frame(&f.command, f.payload.as_ref(), &mut bytes);
        }
        let decoded = decode_stream(&bytes, &cuts).expect("our own frames decode");
        prop_assert_eq!(decoded, frames);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let mut codec = PulsarCodec::new(64 * 1024);
        let mut buf = BytesMut::from(&bytes[..]);
        // Errors are fine; panics and endless loops are not.
        for _ in 0..bytes.len() + 1 {
            match codec.decode(&mut buf) {
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => break,
            }
        }
        let _ = Payload::parse(Bytes::from(bytes.clone()));
        let _ = batch::split(&Bytes::from(bytes.clone()), bytes.len() % 16);
        for kind in [CompressionType::Lz4, CompressionType::Zlib, CompressionType::Zstd, CompressionType::Snappy] {
            let _ = decompress(kind, &bytes, bytes.len() * 3);
        }
    }

    #[test]
    fn flipped_bit_in_a_payload_is_caught(
        body in proptest::collection::vec(any::<u8>(), 1..512),
        metadata in arb_metadata(),
        bit in any::<usize>(),
    ) {
        let frame = Frame::with_payload(pb::CommandSend::default(), Payload::new(metadata, Bytes::from(body)));
        let mut bytes = BytesMut::new();
        encode_frame(&frame.command, frame.payload.as_ref(), &mut bytes);
        let raw_len = frame.payload.as_ref().map_or(0, |p| p.raw.len());
        // Flip a bit after the checksum field: in metadata size, metadata or body.
        let covered = raw_len - 6;
        let at = bytes.len() - covered + (bit / 8) % covered;
        bytes[at] ^= 1 << (bit % 8);
        let mut codec = PulsarCodec::default();
        let r = codec.decode(&mut bytes);
        prop_assert!(r.is_err(), "corrupted frame decoded: {:?}", r);
    }

    #[test]
    fn batches_round_trip(
        messages in proptest::collection::vec(
            (proptest::option::of("[a-z]{1,8}"), proptest::collection::vec(any::<u8>(), 0..256)),
            1..20,
        ),
    ) {
        let messages: Vec<SingleMessage> = messages
            .into_iter()
            .map(|(key, payload)| SingleMessage {
                metadata: SingleMessageMetadata {
                    partition_key: key,
                    payload_size: payload.len() as i32,
                    ..Default::default()
                },
                payload: Bytes::from(payload),
            })
            .collect();
        let body = batch::build(&messages);
        prop_assert_eq!(batch::split(&body, messages.len()).expect("split"), messages);
    }

    #[test]
    fn compression_round_trips(data in proptest::collection::vec(any::<u8>(), 0..8192), which in 0usize..5) {
        let kind = [
            CompressionType::None,
            CompressionType::Lz4,
            CompressionType::Zlib,
            CompressionType::Zstd,
            CompressionType::Snappy,
        ][which];
        let packed = compress(kind, &data).expect("compress");
        let back = decompress(kind, &packed, data.len()).expect("decompress");
        prop_assert_eq!(&back[..], &data[..]);
        if !data.is_empty() && kind != CompressionType::None {
            // A wrong size announced by the peer is an error, not a short or long buffer.
            prop_assert!(decompress(kind, &packed, data.len() + 1).is_err());
        }
    }
}

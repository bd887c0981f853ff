//! Framing: splits a byte stream into Pulsar frames and writes frames back.
//!
//! ```text
//! [u32 totalSize][u32 commandSize][BaseCommand][headers and payload, SEND/MESSAGE only]
//! ```
//!
//! All integers are big-endian; `totalSize` counts every byte after itself.
//! The decoder checks sizes before it allocates or waits for more bytes, so a
//! peer cannot make it buffer more than `max_frame_size`.

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;
use tokio_util::codec::{Decoder, Encoder};

use crate::commands::{carries_payload, validate_command};
use crate::error::{malformed, WireError};
use crate::payload::{put_message, read_u32, Payload};
use crate::pb::BaseCommand;
use crate::CommandType;

/// Pulsar's default maximum message size (the broker's `maxMessageSize`).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 5 * 1024 * 1024;
/// Room Pulsar leaves for the command and headers on top of the message size.
pub const FRAME_PADDING: usize = 10 * 1024;
/// Default limit for `totalSize`: the maximum message size plus header room.
pub const DEFAULT_MAX_FRAME_SIZE: usize = DEFAULT_MAX_MESSAGE_SIZE + FRAME_PADDING;

/// One protocol frame: a command and, for SEND and MESSAGE, its payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub command: BaseCommand,
    pub payload: Option<Payload>,
}

impl Frame {
    /// A frame without payload, e.g. `Frame::new(pb::CommandPong {})`.
    pub fn new(command: impl Into<BaseCommand>) -> Frame {
        Frame {
            command: command.into(),
            payload: None,
        }
    }

    /// A frame carrying a payload (SEND or MESSAGE).
    pub fn with_payload(command: impl Into<BaseCommand>, payload: Payload) -> Frame {
        Frame {
            command: command.into(),
            payload: Some(payload),
        }
    }

    /// The command type; decoded frames always have a known one.
    pub fn command_type(&self) -> Option<CommandType> {
        CommandType::try_from(self.command.r#type).ok()
    }
}

impl From<BaseCommand> for Frame {
    fn from(command: BaseCommand) -> Frame {
        Frame {
            command,
            payload: None,
        }
    }
}

/// `tokio_util` codec for Pulsar frames, usable on both the broker and client side.
#[derive(Debug, Clone)]
pub struct PulsarCodec {
    max_frame_size: usize,
}

impl PulsarCodec {
    /// `max_frame_size` bounds the `totalSize` field of incoming frames; larger
    /// frames fail with [`WireError::FrameTooLarge`] before any buffering.
    pub fn new(max_frame_size: usize) -> Self {
        PulsarCodec { max_frame_size }
    }

    pub fn max_frame_size(&self) -> usize {
        self.max_frame_size
    }
}

impl Default for PulsarCodec {
    fn default() -> Self {
        PulsarCodec::new(DEFAULT_MAX_FRAME_SIZE)
    }
}

impl Decoder for PulsarCodec {
    type Item = Frame;
    type Error = WireError;

    /// On an error for a complete frame (malformed, bad checksum, unknown
    /// command) the frame's bytes have been consumed, so a caller driving the
    /// decoder by hand may continue with the next frame. `FrameTooLarge` leaves
    /// the stream unsynchronised: close the connection.
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, WireError> {
        let Some(total) = read_u32(src, 0) else {
            return Ok(None);
        };
        let total = total as usize;
        if total > self.max_frame_size {
            return Err(WireError::FrameTooLarge {
                size: total,
                max: self.max_frame_size,
            });
        }
        let frame_len = 4 + total;
        if src.len() < frame_len {
            src.reserve(frame_len - src.len());
            return Ok(None);
        }
        let frame = src.split_to(frame_len).freeze().slice(4..);
        decode_frame_body(frame).map(Some)
    }
}

/// Decodes everything after `totalSize`: `[u32 commandSize][BaseCommand][rest]`.
fn decode_frame_body(frame: Bytes) -> Result<Frame, WireError> {
    let command_size = read_u32(&frame, 0).ok_or_else(|| {
        malformed(format!(
            "frame of {} bytes has no command size",
            frame.len()
        ))
    })? as usize;
    let command_end = 4usize
        .checked_add(command_size)
        .filter(|&end| end <= frame.len())
        .ok_or_else(|| {
            malformed(format!(
                "command size {command_size} exceeds the frame's {} remaining bytes",
                frame.len() - 4
            ))
        })?;
    let command = BaseCommand::decode(&frame[4..command_end])?;
    let kind = validate_command(&command)?;
    let rest = frame.slice(command_end..);
    let payload = if carries_payload(kind) {
        if rest.is_empty() {
            return Err(malformed(format!(
                "{} frame without message metadata",
                kind.as_str_name()
            )));
        }
        Some(Payload::parse(rest)?)
    } else {
        // Like Pulsar's own decoder, ignore bytes after commands that take no payload.
        None
    };
    Ok(Frame { command, payload })
}

/// Number of bytes [`encode_frame`] writes, including the size prefix.
pub fn encoded_frame_len(command: &BaseCommand, payload: Option<&Payload>) -> usize {
    4 + 4 + command.encoded_len() + payload.map_or(0, Payload::encoded_len)
}

/// Appends one frame to `dst`. The payload (if any) is written as its broker
/// entry metadata section followed by `payload.raw` verbatim, so the producer's
/// checksum travels unchanged from SEND through storage to MESSAGE.
///
/// The caller keeps frames below 4 GiB ([`PulsarCodec`]'s encoder checks).
pub fn encode_frame(command: &BaseCommand, payload: Option<&Payload>, dst: &mut BytesMut) {
    let command_len = command.encoded_len();
    let frame_len = encoded_frame_len(command, payload);
    dst.reserve(frame_len);
    dst.put_u32((frame_len - 4) as u32);
    dst.put_u32(command_len as u32);
    put_message(command, dst);
    if let Some(payload) = payload {
        payload.write_to(dst);
    }
}

impl Encoder<Frame> for PulsarCodec {
    type Error = WireError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), WireError> {
        Encoder::<&Frame>::encode(self, &frame, dst)
    }
}

impl Encoder<&Frame> for PulsarCodec {
    type Error = WireError;

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), WireError> {
        let size = encoded_frame_len(&frame.command, frame.payload.as_ref()) - 4;
        let max = u32::MAX as usize;
        if size > max {
            return Err(WireError::FrameTooLarge { size, max });
        }
        encode_frame(&frame.command, frame.payload.as_ref(), dst);
        Ok(())
    }
}

impl Encoder<BaseCommand> for PulsarCodec {
    type Error = WireError;

    fn encode(&mut self, command: BaseCommand, dst: &mut BytesMut) -> Result<(), WireError> {
        encode_frame(&command, None, dst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::{self, BrokerEntryMetadata, MessageMetadata};

    fn send_frame(body: &'static [u8]) -> Frame {
        let metadata = MessageMetadata {
            producer_name: "prod".into(),
            sequence_id: 1,
            publish_time: 2,
            ..Default::default()
        };
        Frame::with_payload(
            pb::CommandSend {
                producer_id: 3,
                sequence_id: 1,
                ..Default::default()
            },
            Payload::new(metadata, Bytes::from_static(body)),
        )
    }

    fn encode(frame: &Frame) -> BytesMut {
        let mut buf = BytesMut::new();
        encode_frame(&frame.command, frame.payload.as_ref(), &mut buf);
        buf
    }

    fn decode_all(bytes: &[u8]) -> Result<Vec<Frame>, WireError> {
        let mut codec = PulsarCodec::default();
        let mut buf = BytesMut::from(bytes);
        let mut frames = Vec::new();
        while let Some(frame) = codec.decode(&mut buf)? {
            frames.push(frame);
        }
        assert!(buf.is_empty(), "undecoded bytes left");
        Ok(frames)
    }

    /// Builds `[totalSize][commandSize][command][rest]` by hand.
    fn raw_frame(command: &BaseCommand, rest: &[u8]) -> Vec<u8> {
        let cmd = command.encode_to_vec();
        let mut out = Vec::new();
        out.extend_from_slice(&((4 + cmd.len() + rest.len()) as u32).to_be_bytes());
        out.extend_from_slice(&(cmd.len() as u32).to_be_bytes());
        out.extend_from_slice(&cmd);
        out.extend_from_slice(rest);
        out
    }

    #[test]
    fn layout_matches_the_protocol() {
        let frame = Frame::new(pb::CommandPing {});
        let buf = encode(&frame);
        // PING: type = 18 (field 1 varint), ping = {} (field 18, length 0)
        let cmd = [0x08, 18, 0x92, 0x01, 0x00];
        let mut expected = vec![0, 0, 0, 9, 0, 0, 0, 5];
        expected.extend_from_slice(&cmd);
        assert_eq!(&buf[..], &expected[..]);
    }

    #[test]
    fn simple_and_payload_frames_round_trip() {
        let ping = Frame::new(pb::CommandPing {});
        let send = send_frame(b"body");
        let mut bytes = encode(&ping);
        bytes.extend_from_slice(&encode(&send));
        let frames = decode_all(&bytes).expect("decode");
        assert_eq!(frames, vec![ping, send]);
    }

    #[test]
    fn message_frame_with_broker_entry_metadata_round_trips() {
        let send = send_frame(b"m");
        let payload =
            send.payload
                .expect("payload")
                .with_broker_entry_metadata(BrokerEntryMetadata {
                    broker_timestamp: Some(1),
                    index: Some(2),
                });
        let msg = Frame::with_payload(
            pb::CommandMessage {
                consumer_id: 1,
                message_id: pb::MessageIdData {
                    ledger_id: 4,
                    entry_id: 5,
                    ..Default::default()
                },
                ..Default::default()
            },
            payload,
        );
        assert_eq!(decode_all(&encode(&msg)).expect("decode"), vec![msg]);
    }

    #[test]
    fn partial_input_waits_for_more() {
        let bytes = encode(&send_frame(b"partial"));
        let mut codec = PulsarCodec::default();
        let mut buf = BytesMut::new();
        for (i, b) in bytes.iter().enumerate() {
            buf.put_u8(*b);
            let out = codec.decode(&mut buf).expect("decode");
            assert_eq!(out.is_some(), i + 1 == bytes.len());
        }
    }

    #[test]
    fn too_large_frame_is_rejected_before_buffering() {
        let mut codec = PulsarCodec::new(1024);
        let mut buf = BytesMut::from(&[0u8, 0, 4, 1][..]);
        match codec.decode(&mut buf) {
            Err(WireError::FrameTooLarge {
                size: 1025,
                max: 1024,
            }) => {}
            other => panic!("unexpected {other:?}"),
        }
        assert!(buf.capacity() < 1024);
    }

    #[test]
    fn command_size_beyond_frame_is_malformed() {
        // totalSize 8, commandSize 5 > 8 - 4
        let bytes = [0, 0, 0, 8, 0, 0, 0, 5, 1, 2, 3, 4];
        assert!(matches!(decode_all(&bytes), Err(WireError::Malformed(_))));
        // totalSize too small to hold the command size
        assert!(matches!(
            decode_all(&[0, 0, 0, 2, 0, 0]),
            Err(WireError::Malformed(_))
        ));
    }

    #[test]
    fn unknown_command_type_is_rejected() {
        let cmd = BaseCommand {
            r#type: 1000,
            ..Default::default()
        };
        assert!(matches!(
            decode_all(&raw_frame(&cmd, &[])),
            Err(WireError::UnknownCommand(1000))
        ));
    }

    #[test]
    fn missing_command_field_is_malformed() {
        let cmd = BaseCommand {
            r#type: CommandType::Flow as i32,
            ..Default::default()
        };
        assert!(matches!(
            decode_all(&raw_frame(&cmd, &[])),
            Err(WireError::Malformed(_))
        ));
    }

    #[test]
    fn send_without_payload_is_malformed() {
        let cmd = BaseCommand::from(pb::CommandSend::default());
        assert!(matches!(
            decode_all(&raw_frame(&cmd, &[])),
            Err(WireError::Malformed(_))
        ));
    }

    #[test]
    fn truncated_metadata_is_malformed() {
        let cmd = BaseCommand::from(pb::CommandSend::default());
        // no magic, metadata size 10, only 3 bytes follow
        let rest = [0, 0, 0, 10, 1, 2, 3];
        assert!(matches!(
            decode_all(&raw_frame(&cmd, &rest)),
            Err(WireError::Malformed(_))
        ));
    }

    #[test]
    fn bad_checksum_is_rejected_and_the_stream_continues() {
        let mut bytes = encode(&send_frame(b"checksummed")).to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x80;
        bytes.extend_from_slice(&encode(&Frame::new(pb::CommandPing {})));
        let mut codec = PulsarCodec::default();
        let mut buf = BytesMut::from(&bytes[..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(WireError::ChecksumMismatch { .. })
        ));
        let next = codec.decode(&mut buf).expect("decode").expect("frame");
        assert_eq!(next.command_type(), Some(CommandType::Ping));
    }

    #[test]
    fn send_without_checksum_gets_one() {
        let send = send_frame(b"legacy");
        let payload = send.payload.clone().expect("payload");
        let bytes = raw_frame(&send.command, &payload.raw[6..]);
        let frames = decode_all(&bytes).expect("decode");
        assert_eq!(frames, vec![send]);
    }

    #[test]
    fn trailing_bytes_after_plain_commands_are_ignored() {
        let cmd = BaseCommand::from(pb::CommandPong {});
        let frames = decode_all(&raw_frame(&cmd, &[1, 2, 3])).expect("decode");
        assert_eq!(frames, vec![Frame::from(cmd)]);
    }

    #[test]
    fn encoder_trait_matches_encode_frame() {
        let frame = send_frame(b"x");
        let mut a = BytesMut::new();
        PulsarCodec::default()
            .encode(frame.clone(), &mut a)
            .expect("encode");
        assert_eq!(a, encode(&frame));
        let mut b = BytesMut::new();
        PulsarCodec::default()
            .encode(BaseCommand::from(pb::CommandPong {}), &mut b)
            .expect("encode");
        assert_eq!(b, encode(&Frame::new(pb::CommandPong {})));
    }
}

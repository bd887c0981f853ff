//! The Apache Pulsar binary protocol: frames, CRC32C checksums, batches and
//! compression, for Magnetar's broker and client.
//!
//! - [`pb`]: the protocol messages generated from `proto/pulsar_api.proto`.
//! - [`PulsarCodec`]: a `tokio_util` codec turning bytes into [`Frame`]s and back.
//! - [`Payload`]: the headers and payload of SEND/MESSAGE frames, which is also
//!   what a ledger entry stores; its `raw` bytes are forwarded verbatim.
//! - [`batch`] and [`compression`]: looking inside a payload.
//! - [`command_name`], [`validate_command`] and `From<pb::CommandX> for BaseCommand`:
//!   working with the command envelope.

pub mod batch;
mod codec;
mod commands;
pub mod compression;
mod error;
mod payload;
pub mod pb;

pub use codec::{
    encode_frame, encoded_frame_len, Frame, PulsarCodec, DEFAULT_MAX_FRAME_SIZE,
    DEFAULT_MAX_MESSAGE_SIZE, FRAME_PADDING,
};
pub use commands::{
    carries_payload, command_name, empty_command, validate_command, ALL_COMMAND_TYPES,
};
pub use error::WireError;
pub use payload::{Payload, MAGIC_BROKER_ENTRY_METADATA, MAGIC_CRC32C};
pub use pb::{
    base_command::Type as CommandType, BaseCommand, CompressionType, MessageIdData,
    MessageMetadata, ServerError, SingleMessageMetadata,
};

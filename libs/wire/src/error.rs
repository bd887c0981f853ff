//! The one error type of the codec. Every failure on bytes that came from
//! outside the process ends up here instead of in a panic.

/// Why a frame, payload, batch or compressed block could not be handled.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The underlying stream failed (only produced through `tokio_util` framing).
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),

    /// A frame (or a decompressed payload) is larger than the configured limit.
    /// Raised before anything of that size is allocated.
    #[error("frame of {size} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge { size: usize, max: usize },

    /// The bytes do not follow the Pulsar framing rules.
    #[error("malformed frame: {0}")]
    Malformed(String),

    /// The CRC32C carried after the 0x0e01 magic (`expected`) differs from the
    /// one computed over the received metadata and payload (`actual`).
    #[error("checksum mismatch: frame carries {expected:#010x}, computed {actual:#010x}")]
    ChecksumMismatch { expected: u32, actual: u32 },

    /// A protobuf section (command, metadata, ...) did not decode.
    #[error("protobuf decode error: {0}")]
    Decode(#[from] prost::DecodeError),

    /// `BaseCommand.type` is not a command this protocol version knows.
    #[error("unknown command type {0}")]
    UnknownCommand(i32),

    /// Compressing or decompressing a payload failed, or the codec is unknown.
    #[error("compression error: {0}")]
    Compression(String),

    /// The payload is end-to-end encrypted, so the broker cannot look inside it.
    #[error("payload is encrypted; its messages cannot be read by the broker")]
    Encrypted,
}

pub(crate) fn malformed(msg: impl Into<String>) -> WireError {
    WireError::Malformed(msg.into())
}

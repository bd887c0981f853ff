//! What can go wrong talking to a broker.

use magnetar_wire::pb::ServerError;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(#[from] magnetar_tls::TlsError),
    #[error("connection lost")]
    Disconnected,
    #[error("operation timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The broker answered with an error (`code` is Pulsar's ServerError).
    #[error("broker error {}: {message}", server_error_name(*code))]
    Server { code: i32, message: String },
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("message of {size} bytes exceeds the broker's limit of {max} bytes")]
    MessageTooBig { size: usize, max: usize },
    #[error("wire: {0}")]
    Wire(#[from] magnetar_wire::WireError),
    #[error("the producer or consumer is closed")]
    Closed,
    /// The topic was terminated and every message in it was received.
    #[error("reached the end of a terminated topic")]
    EndOfTopic,
}

pub type Result<T> = std::result::Result<T, ClientError>;

fn server_error_name(code: i32) -> &'static str {
    ServerError::try_from(code).map_or("Unknown", |e| e.as_str_name())
}

impl ClientError {
    /// The broker's error code, if the broker answered with one.
    pub fn server_error(&self) -> Option<ServerError> {
        match self {
            ClientError::Server { code, .. } => ServerError::try_from(*code).ok(),
            _ => None,
        }
    }
}

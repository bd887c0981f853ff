use std::time::Duration;

use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A compare-and-set did not hold.
    #[error("version mismatch on {key:?}: expected version {expected}, found {actual}")]
    VersionMismatch {
        key: String,
        expected: i64,
        actual: i64,
    },
    /// The request was malformed or exceeds a limit; retrying will not help.
    #[error("invalid request: {0}")]
    InvalidArgument(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// The request was valid but the store's state refused it (e.g. an expired lease).
    #[error("rejected: {0}")]
    Rejected(String),
    /// A watch asked for history that is gone; re-list and watch from the listed revision.
    #[error("compacted: {0}")]
    Compacted(String),
    #[error("resource exhausted: {0}")]
    ResourceExhausted(String),
    /// No leader answered within the operation deadline.
    #[error("metadata service unavailable after {elapsed:?} and {attempts} attempts: {last}")]
    Unavailable {
        elapsed: Duration,
        attempts: u32,
        last: String,
    },
    #[error("server error: {0}")]
    Server(String),
    /// The server does not know the call (an older version).
    #[error("not implemented by the server: {0}")]
    Unimplemented(String),
}

impl Error {
    /// Statuses that retrying cannot change; `None` means "try again / elsewhere".
    pub(crate) fn from_final_status(s: &Status) -> Option<Self> {
        let msg = s.message().to_string();
        Some(match s.code() {
            Code::InvalidArgument => Error::InvalidArgument(msg),
            Code::NotFound => Error::NotFound(msg),
            Code::FailedPrecondition => Error::Rejected(msg),
            Code::OutOfRange => Error::Compacted(msg),
            Code::ResourceExhausted => Error::ResourceExhausted(msg),
            Code::Internal | Code::DataLoss => Error::Server(msg),
            Code::Unimplemented => Error::Unimplemented(msg),
            _ => return None,
        })
    }

    /// True for errors where the outcome of a write is unknown to the caller.
    pub fn is_indeterminate(&self) -> bool {
        matches!(self, Error::Unavailable { .. })
    }
}

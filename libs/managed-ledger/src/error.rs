use magnetar_ledger::LedgerError;

use crate::position::Position;

#[derive(Debug, thiserror::Error)]
pub enum MlError {
    #[error("metadata service: {0}")]
    Meta(#[from] magnetar_meta_client::Error),
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    /// Another owner opened this managed ledger; this one must stop writing.
    #[error("managed ledger {0} was taken over by another owner")]
    Fenced(String),
    #[error("managed ledger {0} is closed")]
    Closed(String),
    /// Terminated: no entry will ever be added again.
    #[error("managed ledger {0} was terminated")]
    Terminated(String),
    #[error("cursor {cursor} of {ledger} does not exist")]
    NoSuchCursor { ledger: String, cursor: String },
    #[error("cursor {cursor} of {ledger} is closed or was deleted")]
    CursorClosed { ledger: String, cursor: String },
    #[error("invalid name {0:?}: {1}")]
    InvalidName(String, String),
    #[error("position {0} is not in this managed ledger")]
    InvalidPosition(Position),
    #[error("stored state of {0} is unreadable: {1}")]
    Corrupt(String, String),
    #[error("entry of {0} bytes is larger than the limit of {1}")]
    TooLarge(usize, usize),
    #[error("{0}")]
    Unavailable(String),
    /// An append taken before this one failed since the caller last looked
    /// (`ManagedLedger::append_in_order`): storing this one would put it
    /// ahead of that one's retry. The caller reconnects its producer and
    /// resends from the failed message.
    #[error("managed ledger {0}: an earlier append failed; resend in order")]
    EarlierAppendFailed(String),
}

impl MlError {
    /// Appends failed because the ledger being written failed; a new ledger
    /// is being rolled to, so the caller may retry.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            MlError::Ledger(_)
                | MlError::Meta(_)
                | MlError::Unavailable(_)
                | MlError::EarlierAppendFailed(_)
        )
    }
}

pub type Result<T, E = MlError> = std::result::Result<T, E>;

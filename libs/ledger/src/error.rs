#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("metadata service: {0}")]
    Meta(#[from] magnetar_meta_client::Error),
    #[error("ledger {0} does not exist")]
    NoSuchLedger(u64),
    #[error("ledger {0} has unreadable metadata: {1}")]
    BadMetadata(u64, String),
    #[error("ledger {0}'s metadata changed concurrently")]
    MetadataConflict(u64),
    #[error("ledger {0} was fenced by a recovery; this writer must stop")]
    Fenced(u64),
    #[error("ledger {0} is closed")]
    Closed(u64),
    #[error("wrong password for ledger {0}")]
    Unauthorized(u64),
    #[error("not enough bookies: need {needed}, {available} available")]
    NotEnoughBookies { needed: usize, available: usize },
    #[error("invalid quorum: ensemble {ensemble}, write quorum {write}, ack quorum {ack} (need E >= Qw >= Qa >= 1)")]
    InvalidQuorum {
        ensemble: usize,
        write: usize,
        ack: usize,
    },
    #[error("entry {entry} of ledger {ledger} could not be read: {reason}")]
    ReadFailed {
        ledger: u64,
        entry: i64,
        reason: String,
    },
    #[error("entry {entry} of ledger {ledger} is beyond its last entry {last}")]
    NoSuchEntry { ledger: u64, entry: i64, last: i64 },
    #[error("recovery of ledger {ledger} could not proceed: {reason}")]
    RecoveryFailed { ledger: u64, reason: String },
    #[error("bookie {addr}: {reason}")]
    Bookie { addr: String, reason: String },
    #[error("entry of {0} bytes is larger than the limit")]
    TooLarge(usize),
}

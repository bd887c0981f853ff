use std::time::Duration;

/// What can go wrong writing a ledger to object storage or reading it back.
#[derive(Debug, thiserror::Error)]
pub enum OffloadError {
    /// The driver configuration cannot be used (unknown driver, missing bucket, …).
    #[error("offload configuration: {0}")]
    Config(String),
    /// The object store refused or failed a request (after its own retries).
    #[error("object store {op} {object}: {source}")]
    Store {
        op: &'static str,
        object: String,
        #[source]
        source: object_store::Error,
    },
    /// An object store request did not finish within its deadline.
    #[error("object store {op} {object}: no answer within {after:?}")]
    Timeout {
        op: &'static str,
        object: String,
        after: Duration,
    },
    /// An object is missing (the ledger was never offloaded, or was deleted).
    #[error("object {0} does not exist")]
    NotFound(String),
    /// An object was written in a format version this code does not read.
    #[error("{object}: format version {found}, this build reads version {supported}")]
    UnsupportedVersion {
        object: String,
        found: u16,
        supported: u16,
    },
    /// An object's bytes do not parse (truncated, bad magic, inconsistent index).
    #[error("{object}: corrupt: {why}")]
    Corrupt { object: String, why: String },
    /// Entries must be appended in order, starting at 0, without gaps.
    #[error("ledger {ledger_id}: entry {got} appended where {expected} was expected")]
    OutOfOrder {
        ledger_id: u64,
        expected: u64,
        got: u64,
    },
    /// An entry larger than the format can describe (4 GiB).
    #[error("ledger {ledger_id}: entry {entry_id} of {len} bytes is too large")]
    EntryTooLarge {
        ledger_id: u64,
        entry_id: u64,
        len: usize,
    },
    /// A read asked for entries the offloaded ledger does not hold.
    #[error("ledger {ledger_id}: entries {first}..={last} not in the offloaded ledger (entries 0..{count})")]
    NoSuchEntries {
        ledger_id: u64,
        first: u64,
        last: u64,
        count: u64,
    },
    /// The writer failed earlier and its upload was aborted.
    #[error("ledger {0}: the upload failed earlier and was aborted")]
    Aborted(u64),
}

impl OffloadError {
    /// Whether trying again later may succeed (the store was unreachable or
    /// slow) rather than the request being wrong or the data being bad.
    pub fn is_retryable(&self) -> bool {
        match self {
            OffloadError::Timeout { .. } | OffloadError::Aborted(_) => true,
            OffloadError::Store { source, .. } => !matches!(
                source,
                object_store::Error::NotFound { .. }
                    | object_store::Error::InvalidPath { .. }
                    | object_store::Error::NotSupported { .. }
                    | object_store::Error::NotImplemented { .. }
                    | object_store::Error::PermissionDenied { .. }
                    | object_store::Error::Unauthenticated { .. }
            ),
            _ => false,
        }
    }
}

pub type Result<T, E = OffloadError> = std::result::Result<T, E>;

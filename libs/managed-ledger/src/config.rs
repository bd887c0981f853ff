use std::time::Duration;

/// Settings of one managed ledger (a broker derives them from namespace
/// policies and its own configuration).
#[derive(Clone, Debug)]
pub struct ManagedLedgerConfig {
    pub ensemble_size: usize,
    pub write_quorum: usize,
    pub ack_quorum: usize,
    /// Ledger password (its digest is stored in ledger metadata).
    pub password: Vec<u8>,
    /// Roll over to a new ledger after this many entries ...
    pub max_entries_per_ledger: i64,
    /// ... or this many payload bytes ...
    pub max_ledger_bytes: u64,
    /// ... or when the ledger is this old and holds at least one entry.
    pub max_ledger_age: Duration,
    /// Keep consumed ledgers this long (`None` = forever).
    pub retention_time: Option<Duration>,
    /// Keep consumed ledgers while the managed ledger is at most this large
    /// (`None` = no size bound).
    pub retention_bytes: Option<u64>,
    /// Cursors skip entries older than this (`None` = no TTL).
    pub message_ttl: Option<Duration>,
    /// Cursor state is written at most this often (acks in between are
    /// coalesced into the next write). One second, Pulsar's default
    /// mark-delete rate: every active subscription costs one snapshot write
    /// (Qw bookie adds) per interval, so at 10,000 active subscriptions
    /// 100 ms meant 100,000 cursor writes a second, more than the messages
    /// themselves. A takeover redelivers at most an interval of acks.
    pub cursor_persist_interval: Duration,
    /// A cursor ledger is replaced by a fresh one after this many snapshots.
    pub cursor_ledger_max_entries: i64,
    pub max_entry_bytes: usize,
}

impl Default for ManagedLedgerConfig {
    fn default() -> Self {
        Self {
            ensemble_size: 2,
            write_quorum: 2,
            ack_quorum: 2,
            password: b"magnetar".to_vec(),
            max_entries_per_ledger: 50_000,
            max_ledger_bytes: 2 << 30,
            max_ledger_age: Duration::from_secs(4 * 3600),
            retention_time: Some(Duration::ZERO),
            retention_bytes: Some(0),
            message_ttl: None,
            cursor_persist_interval: Duration::from_secs(1),
            cursor_ledger_max_entries: 1000,
            max_entry_bytes: 5 << 20,
        }
    }
}

/// Settings shared by every managed ledger of one factory (one broker).
#[derive(Clone, Debug)]
pub struct FactoryConfig {
    /// Memory for recently written entries across all managed ledgers.
    pub cache_max_bytes: usize,
    /// How often retention, TTL and age-based rollover are checked.
    pub housekeeping_interval: Duration,
}

impl Default for FactoryConfig {
    fn default() -> Self {
        Self {
            cache_max_bytes: 256 << 20,
            housekeeping_interval: Duration::from_secs(30),
        }
    }
}

/// The part of a managed ledger's settings that can change while it is open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub retention_time: Option<Duration>,
    pub retention_bytes: Option<u64>,
    pub message_ttl: Option<Duration>,
}

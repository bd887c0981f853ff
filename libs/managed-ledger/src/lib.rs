//! Managed ledgers: a topic's durable log over rolling ledgers, with cursors,
//! retention and TTL (the storage engine under a broker's topics; Pulsar's
//! ManagedLedger is the model).
//!
//! - `position`: positions and the arithmetic of a ledger list (pure)
//! - `ack_set`: individually acked positions as per-ledger bitmaps (pure)
//! - `entry`: the per-entry header (publish time, running ledger size)
//! - `info`: what is kept in the metadata service, always by compare-and-set
//! - `cache`: recently written entries under a shared byte budget
//! - `managed_ledger`: appends, rollover, takeover, reads, retention
//! - `cursor`: subscriptions' positions, acks and their persistence
//! - `factory`: opening managed ledgers for one owner, housekeeping
//! - `managed_ledger::offload`: tiered storage (docs/OFFLOAD.md)

pub mod ack_set;
mod cache;
mod codec;
mod config;
mod cursor;
pub mod entry;
mod error;
mod factory;
pub mod info;
mod managed_ledger;
pub mod position;
mod stats;

pub use config::{FactoryConfig, ManagedLedgerConfig, RetentionPolicy};
pub use cursor::{InitialPosition, ManagedCursor};
pub use entry::Entry;
pub use error::{MlError, Result};
pub use factory::ManagedLedgerFactory;
pub use managed_ledger::offload::{OffloadPolicy, OffloadStatus, ReadPriority, OFFLOAD_RUNNING};
pub use managed_ledger::ManagedLedger;
pub use position::{LedgerList, Position};
pub use stats::{CursorStats, LedgerStats, ManagedLedgerStats};

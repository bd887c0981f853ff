//! Managed ledgers: a topic's durable log over rolling ledgers, with cursors,
//! retention and TTL (the storage engine under a broker's topics; Pulsar's
//! ManagedLedger is the model).
//!
//! # Visibility
//!
//! An item is `pub` here only when something outside this crate uses it; all
//! modules are private and the public surface is the re-exports below. Their
//! users: `libs/broker` (topics over managed ledgers, and [`ledger_key`] to
//! find a topic's record), and this crate's tests and benches (which open
//! managed ledgers as the broker does). `tests/offload.rs` also reads the
//! stored record itself: the test-only `internals` feature (enabled by the
//! crate's dev-dependency on itself) makes `info` public for it.
//!
//! # Modules
//!
//! - `position`: positions and the arithmetic of a ledger list (pure)
//! - `ack_set`: individually acked positions as per-ledger bitmaps (pure)
//! - `entry`: the per-entry header (publish time, running ledger size)
//! - `info`: what is kept in the metadata service, always by compare-and-set
//! - `codec`: a byte codec for persisted forms (cursor snapshots, entry headers)
//! - `cache`: recently written entries under a shared byte budget
//! - `managed_ledger`: appends, rollover, takeover, reads, retention
//! - `managed_ledger::offload`: tiered storage (docs/OFFLOAD.md)
//! - `cursor`: subscriptions' positions, acks and their persistence
//! - `factory`: opening managed ledgers for one owner, housekeeping
//! - `config`: factory and per-ledger configuration, retention
//! - `stats`: internal stats, shaped like Pulsar's `internalStats`
//! - `error`: `MlError`

mod ack_set;
mod cache;
mod codec;
mod config;
mod cursor;
mod entry;
mod error;
mod factory;
#[cfg(feature = "internals")]
pub mod info;
#[cfg(not(feature = "internals"))]
mod info;
mod managed_ledger;
mod position;
mod stats;

pub use config::{FactoryConfig, ManagedLedgerConfig, RetentionPolicy};
pub use cursor::{InitialPosition, ManagedCursor};
pub use entry::Entry;
pub use error::{MlError, Result};
pub use factory::ManagedLedgerFactory;
pub use info::ledger_key;
pub use managed_ledger::offload::{OffloadPolicy, OffloadStatus, ReadPriority, OFFLOAD_RUNNING};
pub use managed_ledger::ManagedLedger;
pub use position::{LedgerList, Position};
pub use stats::{CursorStats, LedgerStats, ManagedLedgerStats};

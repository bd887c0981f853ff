//! A BookKeeper-style ledger client: a ledger is a log with one writer whose
//! entries are striped over an ensemble of bookies, written to `Qw` of them and
//! confirmed by `Qa`.
//!
//! # Visibility
//!
//! An item is `pub` here only when something outside this crate uses it; all
//! modules are private and the public surface is the re-exports below. Their
//! users:
//!
//! - `libs/managed-ledger`, `libs/broker`, `libs/bookie`, `services/*`: the
//!   client ([`LedgerClient`], [`LedgerWriter`], [`LedgerReader`]) and the
//!   types its signatures carry;
//! - `libs/bookie` (its server and metrics): [`AutoRecovery`],
//!   [`AutoRecoveryConfig`], [`AutoRecoveryStats`];
//! - `services/magnetar` (`magnetar ledger underreplicated`):
//!   [`underreplicated`];
//! - `services/bookie`'s tests (which bookies hold an entry): [`write_set`].
//!
//! # Modules
//!
//! - `quorum`: write sets, fence/missing quorums, LAC tracking (pure)
//! - `placement`: choosing bookies (writable, rack-spread)
//! - `metadata`: ledger metadata in the metadata service, CAS only
//! - `bookie_client`: pipelined connections to bookies
//! - `writer`, `reader`, `recovery`: the three ways to hold a ledger
//! - `client`: create / open / open_recover / delete / list
//! - `autorecovery`: the auditor that re-replicates the ledgers of lost bookies
//! - `error`: `LedgerError`

mod autorecovery;
mod bookie_client;
mod client;
mod error;
mod metadata;
mod placement;
mod quorum;
mod reader;
mod recovery;
mod writer;

pub use autorecovery::{underreplicated, AutoRecovery, AutoRecoveryConfig, AutoRecoveryStats};
pub use client::{BookieStatus, LedgerClient, LedgerClientConfig, AVAILABLE_BOOKIES_PREFIX};
pub use error::LedgerError;
pub use metadata::{Fragment, LedgerMetadata, LedgerState};
pub use quorum::write_set;
pub use reader::LedgerReader;
pub use writer::{LedgerWriter, PendingAppend};

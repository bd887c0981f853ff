//! A BookKeeper-style ledger client: a ledger is a log with one writer whose
//! entries are striped over an ensemble of bookies, written to `Qw` of them and
//! confirmed by `Qa`.
//!
//! - `quorum`: write sets, fence/missing quorums, LAC tracking (pure)
//! - `placement`: choosing bookies (writable, rack-spread)
//! - `metadata`: ledger metadata in the metadata service, CAS only
//! - `bookie_client`: pipelined connections to bookies
//! - `writer`, `reader`, `recovery`: the three ways to hold a ledger
//! - `client`: create / open / open_recover / delete / list
//! - `autorecovery`: the auditor that re-replicates the ledgers of lost bookies

pub mod autorecovery;
mod bookie_client;
mod client;
mod error;
pub mod metadata;
pub mod placement;
pub mod quorum;
mod reader;
mod recovery;
mod writer;

pub use client::{BookieStatus, LedgerClient, LedgerClientConfig, AVAILABLE_BOOKIES_PREFIX};
pub use error::LedgerError;
pub use metadata::{Fragment, LedgerMetadata, LedgerState};
pub use reader::LedgerReader;
pub use writer::{LedgerWriter, PendingAppend};

//! The bookie: stores ledger entries durably for the quorum ledger client.
//!
//! - `journal`: the write-ahead log with group commit
//! - `entry_store`: entries and ledger state in RocksDB, checkpoints
//! - `bookie`: the rules (adds, fencing, reads, LAC, deletes) and their ordering
//! - `service`: gRPC; `server`: wiring, housekeeping, registration in metadata
//! - `disk`, `metrics`: free-space watch and Prometheus metrics

pub mod bookie;
pub mod disk;
pub mod entry_store;
pub mod journal;
pub mod metrics;
pub mod server;
pub mod service;

pub use server::{BookieConfig, BookieRegistration, BookieServerHandle, AVAILABLE_PREFIX};

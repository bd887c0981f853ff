//! The metadata service node: a linearizable, versioned KV store with
//! transactions, prefix watches and leases, replicated with openraft over RocksDB.
//!
//! - `types`: the Raft type config and the commands in the log
//! - `store`: the RocksDB instance and its column families
//! - `log_store`, `state_machine`: openraft's storage traits
//! - `kv`: deterministic command application and reads
//! - `watch`, `lease`: watcher fan-out and leader-side lease expiry
//! - `network`, `service`: peer traffic and the client API over gRPC
//! - `node`: wiring one node together; `metrics`: its Prometheus view

// openraft's storage and client traits return its own (large) error types; boxing
// them at every call would only move the cost around.
#![allow(clippy::result_large_err)]

pub mod kv;
pub mod lease;
pub mod log_store;
pub mod metrics;
pub mod network;
pub mod node;
pub mod proposer;
pub mod service;
pub mod state_machine;
pub mod store;
pub mod types;
pub mod watch;

pub use node::{MetaNode, NodeConfig, NodeError};
pub use service::Limits;

//! The Magnetar broker: speaks the Apache Pulsar binary protocol to clients,
//! stores each topic as a managed ledger, and serves Pulsar's admin REST API.
//!
//! - `connection`: one client connection (protocol state, producers, consumers)
//! - `topic`: a loaded topic (producers, publish path, subscriptions)
//! - `subscription`: one subscription's task: consumers, permits, dispatch
//! - `key_shared`: Key_Shared routing (pure)
//! - `dedup`: deduplication by producer name and sequence id
//! - `resources`: tenants, namespaces, policies, partitioned topics in metadata
//! - `schema`: stored topic schemas
//! - `service`: shared state and topic loading
//! - `bundle`: namespace bundles (hash ranges of topic names)
//! - `ownership`: which bundles this broker holds (lease-bound keys)
//! - `lookup`: which broker serves a topic, assigning unowned bundles
//! - `load`, `placement`: load reports and load-balancing decisions
//! - `cluster`: the session, load reports, leader election and balancer
//! - `admin`: the HTTP API
//! - `websocket`: Pulsar's WebSocket API (sessions are clients of the binary protocol)
//! - `server`: listeners and lifecycle

pub mod admin;
pub mod authz;
pub mod backlog_quota;
pub mod bundle;
mod cluster;
pub mod config;
mod connection;
mod dedup;
pub mod error;
pub mod key_shared;
pub mod load;
pub mod lookup;
pub mod offload;
mod outbound;
pub mod ownership;
mod peer;
pub mod placement;
pub mod resources;
mod schema;
pub mod self_client;
pub mod server;
pub mod service;
pub mod subscription;
pub mod tls;
pub mod topic;
pub mod topic_metrics;
mod warm;
pub mod websocket;

pub use config::BrokerConfig;
pub use error::BrokerError;
pub use server::BrokerHandle;
pub use service::BrokerService;

//! The Magnetar broker: speaks the Apache Pulsar binary protocol to clients,
//! stores each topic as a managed ledger, and serves Pulsar's admin REST API.
//!
//! # Visibility
//!
//! An item is `pub` here only when something outside this crate uses it, and
//! the user is named below; everything else is private to the crate. All
//! modules are private, and the public surface is the re-exports at the
//! bottom of this file:
//!
//! - `services/broker` (the `magnetar-broker` binary) and
//!   `services/magnetar` (`magnetar standalone`) build a [`BrokerConfig`]
//!   (with [`auth_from_files`], [`parse_listeners`], [`TlsFlags`],
//!   [`OffloadFlags`]) and start and stop a [`BrokerHandle`];
//! - the types those signatures and fields carry ([`AuthConfig`],
//!   [`AuthConfigError`], [`BrokerTls`], [`BrokerTlsError`], [`BrokerError`])
//!   are public so that the surface can be named.
//!
//! The crate's own tests (`tests/`) drive real processes over the wire and
//! HTTP and need no internals. A new outside user of an item adds a
//! re-export here, with its name in this list.
//!
//! # Modules
//!
//! - `admin`: the HTTP surface: admin REST v2, `/metrics`, `/health`
//! - `authz`: who may do what when token authentication is on
//! - `backlog_quota`: backlog quotas and what happens to producers beyond them
//! - `bundle`: namespace bundles (hash ranges of topic names)
//! - `cluster`: the session, load reports, leader election and balancer tasks
//! - `config`: what a broker is told at start
//! - `connection`: one client connection (protocol state, producers, consumers)
//! - `dedup`: deduplication by producer name and sequence id
//! - `error`: broker errors and the one table mapping them to wire codes and HTTP statuses
//! - `key_shared`: Key_Shared routing (pure)
//! - `load`: load reports and how a broker measures its process
//! - `lookup`: which broker serves a topic, assigning unowned bundles
//! - `offload`: tiered storage: the default driver and namespaces' offload policies
//! - `outbound`: the sending half of a connection, shared with subscriptions
//! - `ownership`: which bundles this broker holds (lease-bound keys)
//! - `peer`: HTTP calls to other brokers for admin requests spanning topics
//! - `placement`: load-balancing decisions as pure functions of load reports
//! - `resources`: clusters, tenants, namespaces, policies, partitioned topics in metadata
//! - `schema`: the schema registry (stored topic schemas)
//! - `self_client`: the broker's own Pulsar client for WebSocket and REST produce
//! - `server`: listeners and lifecycle ([`BrokerHandle`])
//! - `service`: shared state and topic loading
//! - `subscription`: one subscription's task: consumers, permits, dispatch
//! - `tls`: the `pulsar+ssl` and HTTPS listeners and their certificates
//! - `topic`: a loaded topic (producers, publish path, subscriptions)
//! - `topic_metrics`: per-topic Prometheus metrics with Pulsar's names
//! - `warm`: loading a topic off a connection's command loop
//! - `websocket`: Pulsar's WebSocket API (sessions are clients of the binary protocol)

mod admin;
mod authz;
mod backlog_quota;
mod bundle;
mod cluster;
mod config;
mod connection;
mod dedup;
mod error;
mod key_shared;
mod load;
mod lookup;
mod offload;
mod outbound;
mod ownership;
mod peer;
mod placement;
mod resources;
mod schema;
mod self_client;
mod server;
mod service;
mod subscription;
mod tls;
mod topic;
mod topic_metrics;
mod warm;
mod websocket;

pub use config::{auth_from_files, parse_listeners, AuthConfig, AuthConfigError, BrokerConfig};
pub use error::BrokerError;
pub use offload::OffloadFlags;
pub use server::BrokerHandle;
pub use tls::{BrokerTls, BrokerTlsError, TlsFlags};

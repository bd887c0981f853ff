//! `magnetar-meta`: one node of the metadata service.

mod config;

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use magnetar_meta_server::metrics::NodeCollector;
use magnetar_meta_server::MetaNode;
use magnetar_telemetry::prometheus::Registry;

use crate::config::{MetaArgs, ENV_PREFIX};

/// Every write allocates on each node (decoded requests, log entries, RocksDB
/// write batches, answers), all on one worker thread and freed there or on
/// the log writer's. With glibc's allocator, malloc and free were ~6% of a
/// leader's CPU; with mimalloc each node's CPU per write fell 6–7% in
/// alternating bench-meta runs (docs/ARCHITECTURE.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    magnetar_common::config::load_config_file(ENV_PREFIX)?;
    let args = MetaArgs::parse();
    let _telemetry = magnetar_telemetry::init(
        "magnetar-meta",
        args.log_format,
        args.otlp_endpoint.as_deref(),
    )?;
    magnetar_tls::internal::init_from_env().context("internal TLS")?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.worker_threads as usize)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?
        .block_on(run(args))
}

async fn run(args: MetaArgs) -> anyhow::Result<()> {
    let node = MetaNode::start(args.node_config()).await?;
    let http = match args.http {
        Some(addr) => {
            let registry = Registry::new();
            registry.register(Box::new(NodeCollector::new(
                node.id,
                node.raft.clone(),
                node.sm.clone(),
            )?))?;
            let (id, raft, sm) = (node.id, node.raft.clone(), node.sm.clone());
            let health = Arc::new(move || {
                let s = magnetar_meta_server::service::status(id, &raft, &sm);
                let body = format!(
                    r#"{{"id":{},"leader":{},"term":{},"state":"{}","applied_index":{}}}"#,
                    s.id, s.leader, s.term, s.state, s.applied_index
                );
                (s.leader != 0, body)
            });
            let server = magnetar_telemetry::serve_http(addr, registry, health)
                .await
                .with_context(|| format!("serving HTTP on {addr}"))?;
            tracing::info!(addr = %server.local_addr, "serving /metrics and /health");
            Some(server)
        }
        None => None,
    };
    magnetar_common::shutdown_signal().await;
    tracing::info!("shutting down");
    if let Some(h) = http {
        h.shutdown().await;
    }
    node.shutdown().await;
    Ok(())
}

//! `magnetar standalone`: every service in one process over one data directory.
//! Today that is a single-node metadata service; the ledger service and the
//! broker join it as they are built.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use magnetar_meta_server::metrics::NodeCollector;
use magnetar_meta_server::{MetaNode, NodeConfig};
use magnetar_telemetry::prometheus::Registry;
use magnetar_telemetry::LogFormat;

pub const ENV_PREFIX: &str = "MAGNETAR_STANDALONE_";

#[derive(Args, Debug)]
pub struct StandaloneArgs {
    /// TOML config file; its keys are the long flag names.
    #[arg(long, env = "MAGNETAR_STANDALONE_CONFIG")]
    pub config: Option<PathBuf>,
    #[arg(long, env = "MAGNETAR_STANDALONE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Metadata service (gRPC) address.
    #[arg(
        long,
        env = "MAGNETAR_STANDALONE_META_LISTEN",
        default_value = "127.0.0.1:7001"
    )]
    pub meta_listen: SocketAddr,
    /// /metrics and /health.
    #[arg(
        long,
        env = "MAGNETAR_STANDALONE_HTTP",
        default_value = "127.0.0.1:8080"
    )]
    pub http: SocketAddr,
    #[arg(long, env = "MAGNETAR_STANDALONE_LOG_FORMAT", default_value = "pretty")]
    pub log_format: LogFormat,
    #[arg(long, env = "MAGNETAR_STANDALONE_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

pub async fn run(args: StandaloneArgs) -> anyhow::Result<()> {
    let _telemetry = magnetar_telemetry::init(
        "magnetar-standalone",
        args.log_format,
        args.otlp_endpoint.as_deref(),
    )?;
    let meta_cfg = NodeConfig::new(1, args.meta_listen, args.data_dir.join("meta"));
    let node = MetaNode::start(meta_cfg)
        .await
        .context("starting the metadata service")?;

    let registry = Registry::new();
    registry.register(Box::new(NodeCollector::new(
        node.id,
        node.raft.clone(),
        node.sm.clone(),
    )?))?;
    let (raft, sm) = (node.raft.clone(), node.sm.clone());
    let health = Arc::new(move || {
        let s = magnetar_meta_server::service::status(1, &raft, &sm);
        (
            s.leader != 0,
            format!(
                r#"{{"meta":{{"leader":{},"revision":{}}}}}"#,
                s.leader, s.revision
            ),
        )
    });
    let http = magnetar_telemetry::serve_http(args.http, registry, health)
        .await
        .with_context(|| format!("serving HTTP on {}", args.http))?;

    println!(
        "Magnetar standalone is running (data in {}):",
        args.data_dir.display()
    );
    println!(
        "  metadata service  {}   (try: magnetar meta status --meta {})",
        node.local_addr, node.local_addr
    );
    println!(
        "  metrics / health  http://{}/metrics  http://{}/health",
        http.local_addr, http.local_addr
    );
    println!("The ledger service and the Pulsar-protocol broker are not part of this build yet.");
    println!("Stop with Ctrl-C.");

    magnetar_common::shutdown_signal().await;
    tracing::info!("shutting down");
    http.shutdown().await;
    node.shutdown().await;
    Ok(())
}

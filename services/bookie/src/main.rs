//! `magnetar-bookie`: one node of the ledger service.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use magnetar_bookie::{BookieConfig, BookieServerHandle};
use magnetar_telemetry::prometheus::Registry;
use magnetar_telemetry::LogFormat;

const ENV_PREFIX: &str = "MAGNETAR_BOOKIE_";

/// Every flag is also `MAGNETAR_BOOKIE_<FLAG>` and a key of the `--config` TOML file.
#[derive(Parser, Debug)]
#[command(
    name = "magnetar-bookie",
    version,
    about = "Magnetar ledger service (bookie)"
)]
struct Args {
    #[arg(long, env = "MAGNETAR_BOOKIE_CONFIG")]
    config: Option<PathBuf>,
    /// Bookie id, unique in the cluster.
    #[arg(long, env = "MAGNETAR_BOOKIE_ID")]
    id: String,
    #[arg(long, env = "MAGNETAR_BOOKIE_LISTEN", default_value = "127.0.0.1:3181")]
    listen: SocketAddr,
    /// Address clients use (default: --listen).
    #[arg(long, env = "MAGNETAR_BOOKIE_ADVERTISE")]
    advertise: Option<String>,
    /// Metadata service addresses, comma-separated (registration, ledger metadata).
    #[arg(long, env = "MAGNETAR_BOOKIE_META")]
    meta: String,
    #[arg(long, env = "MAGNETAR_BOOKIE_JOURNAL_DIR")]
    journal_dir: PathBuf,
    #[arg(long, env = "MAGNETAR_BOOKIE_LEDGER_DIR")]
    ledger_dir: PathBuf,
    #[arg(long, env = "MAGNETAR_BOOKIE_RACK", default_value = "default")]
    rack: String,
    /// /metrics and /health.
    #[arg(long, env = "MAGNETAR_BOOKIE_HTTP")]
    http: Option<SocketAddr>,
    /// fdatasync each journal batch before acknowledging (turn off for benchmarks only).
    #[arg(long, env = "MAGNETAR_BOOKIE_JOURNAL_SYNC", default_value_t = true, action = clap::ArgAction::Set)]
    journal_sync: bool,
    /// Retired journal segments (256 MiB each) kept to be overwritten as new
    /// ones: overwriting makes each fdatasync cheaper than growing a file.
    #[arg(
        long,
        env = "MAGNETAR_BOOKIE_JOURNAL_RECYCLE_SEGMENTS",
        default_value_t = 4
    )]
    journal_recycle_segments: usize,
    /// Turn read-only below this much free disk space.
    #[arg(long, env = "MAGNETAR_BOOKIE_MIN_FREE_BYTES", default_value_t = 1 << 30)]
    min_free_bytes: u64,
    #[arg(long, env = "MAGNETAR_BOOKIE_CHECKPOINT_SECONDS", default_value_t = 30)]
    checkpoint_seconds: u64,
    #[arg(long, env = "MAGNETAR_BOOKIE_LEASE_TTL_SECONDS", default_value_t = 10)]
    lease_ttl_seconds: i64,
    /// Take part in auto-recovery (auditor election and re-replication).
    #[arg(long, env = "MAGNETAR_BOOKIE_AUTORECOVERY", default_value_t = true, action = clap::ArgAction::Set)]
    autorecovery: bool,
    /// A bookie missing this long is considered lost and its ledgers are re-replicated.
    #[arg(
        long,
        env = "MAGNETAR_BOOKIE_AUDITOR_GRACE_SECONDS",
        default_value_t = 30
    )]
    auditor_grace_seconds: u64,
    #[arg(long, env = "MAGNETAR_BOOKIE_LOG_FORMAT", default_value = "pretty")]
    log_format: LogFormat,
    #[arg(long, env = "MAGNETAR_BOOKIE_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
}

/// A failure to start (bad configuration, an unwritable volume) is one line
/// on stderr and exit status 1: in a container that line is the whole story.
fn main() -> std::process::ExitCode {
    match start() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("magnetar-bookie: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn start() -> anyhow::Result<()> {
    magnetar_common::config::load_config_file(ENV_PREFIX)?;
    let args = Args::parse();
    let _telemetry = magnetar_telemetry::init(
        "magnetar-bookie",
        args.log_format,
        args.otlp_endpoint.as_deref(),
    )?;
    magnetar_tls::internal::init_from_env().context("internal TLS")?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut cfg = BookieConfig::new(&args.id, args.listen, PathBuf::new());
    cfg.advertise = args.advertise;
    cfg.meta = Some(args.meta);
    for (what, dir) in [("journal", &args.journal_dir), ("ledger", &args.ledger_dir)] {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the {what} dir {}", dir.display()))?;
    }
    cfg.journal_dir = args.journal_dir;
    cfg.ledger_dir = args.ledger_dir;
    cfg.rack = args.rack;
    cfg.journal_sync = args.journal_sync;
    cfg.journal_recycle_segments = args.journal_recycle_segments;
    cfg.min_free_bytes = args.min_free_bytes;
    cfg.checkpoint_interval = Duration::from_secs(args.checkpoint_seconds.max(1));
    cfg.lease_ttl_seconds = args.lease_ttl_seconds;
    cfg.auditor_grace = args
        .autorecovery
        .then(|| Duration::from_secs(args.auditor_grace_seconds));
    let registry = Registry::new();
    let server = BookieServerHandle::start(cfg, &registry)
        .await
        .context("starting the bookie")?;
    let http = match args.http {
        Some(addr) => {
            let bookie = server.bookie.clone();
            let health = Arc::new(move || {
                let body = format!(
                    r#"{{"id":"{}","read_only":{}}}"#,
                    bookie.id,
                    bookie.is_read_only()
                );
                (true, body)
            });
            Some(
                magnetar_telemetry::serve_http(addr, registry, health)
                    .await
                    .with_context(|| format!("serving HTTP on {addr}"))?,
            )
        }
        None => None,
    };
    magnetar_common::shutdown_signal().await;
    tracing::info!("shutting down");
    if let Some(h) = http {
        h.shutdown().await;
    }
    server.shutdown().await;
    Ok(())
}

//! `magnetar standalone`: every service in one process over one data
//! directory: a single-node metadata service, one bookie and one broker.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use magnetar_bookie::{BookieConfig, BookieServerHandle};
use magnetar_broker::{BrokerConfig, BrokerHandle};
use magnetar_meta_client::{ClientConfig, MetaClient};
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
    /// Bookie (ledger service, gRPC) address.
    #[arg(
        long,
        env = "MAGNETAR_STANDALONE_BOOKIE_LISTEN",
        default_value = "127.0.0.1:3181"
    )]
    pub bookie_listen: SocketAddr,
    /// Pulsar binary protocol.
    #[arg(
        long,
        env = "MAGNETAR_STANDALONE_BROKER_LISTEN",
        default_value = "127.0.0.1:6650"
    )]
    pub broker_listen: SocketAddr,
    /// Admin REST, /metrics and /health.
    #[arg(
        long,
        env = "MAGNETAR_STANDALONE_HTTP",
        default_value = "127.0.0.1:8080"
    )]
    pub http: SocketAddr,
    /// Host name clients are given to reach the broker.
    #[arg(long, env = "MAGNETAR_STANDALONE_ADVERTISED_ADDRESS")]
    pub advertised_address: Option<String>,
    /// The bookie turns read-only below this much free disk space.
    #[arg(long, env = "MAGNETAR_STANDALONE_MIN_FREE_BYTES", default_value_t = 256 << 20)]
    pub min_free_bytes: u64,
    /// fdatasync the bookie journal before acknowledging (benchmarks only turn it off).
    #[arg(long, env = "MAGNETAR_STANDALONE_JOURNAL_SYNC", default_value_t = true, action = clap::ArgAction::Set)]
    pub journal_sync: bool,
    /// Turns token authentication on: the HS256 secret key (raw or base64),
    /// as made by `magnetar tokens create-secret-key`.
    #[arg(
        long,
        env = "MAGNETAR_STANDALONE_AUTH_SECRET_KEY",
        conflicts_with = "auth_public_key"
    )]
    pub auth_secret_key: Option<PathBuf>,
    /// Turns token authentication on: the public key (PEM) of RS256/ES256 tokens.
    #[arg(long, env = "MAGNETAR_STANDALONE_AUTH_PUBLIC_KEY")]
    pub auth_public_key: Option<PathBuf>,
    /// Roles that may do everything (comma-separated).
    #[arg(
        long,
        env = "MAGNETAR_STANDALONE_SUPERUSER_ROLES",
        default_value = "admin"
    )]
    pub superuser_roles: String,
    /// The token the broker itself uses (a superuser's); made from the
    /// secret key when not given.
    #[arg(long, env = "MAGNETAR_STANDALONE_BROKER_CLIENT_TOKEN")]
    pub broker_client_token: Option<String>,
    /// TLS: the certificate (PEM; its own first, then intermediates). Turns
    /// the pulsar+ssl and HTTPS/WSS listeners on; reloaded when the file changes.
    #[arg(
        long,
        env = "MAGNETAR_STANDALONE_TLS_CERT_FILE",
        requires = "tls_key_file"
    )]
    pub tls_cert_file: Option<PathBuf>,
    /// TLS: the certificate's private key (PEM, unencrypted).
    #[arg(
        long,
        env = "MAGNETAR_STANDALONE_TLS_KEY_FILE",
        requires = "tls_cert_file"
    )]
    pub tls_key_file: Option<PathBuf>,
    /// The pulsar+ssl listener (Pulsar's brokerServicePortTls) [default: 127.0.0.1:6651].
    #[arg(long, env = "MAGNETAR_STANDALONE_TLS_LISTEN")]
    pub tls_listen: Option<SocketAddr>,
    /// The HTTPS/WSS listener (Pulsar's webServicePortTls) [default: 127.0.0.1:8443].
    #[arg(long, env = "MAGNETAR_STANDALONE_TLS_HTTP")]
    pub tls_http: Option<SocketAddr>,
    /// CA certificates (PEM) that client certificates must chain to; the
    /// broker's own client trusts them too.
    #[arg(long, env = "MAGNETAR_STANDALONE_TLS_TRUST_CERTS")]
    pub tls_trust_certs: Option<PathBuf>,
    /// Refuse TLS clients without a certificate from --tls-trust-certs.
    #[arg(long, env = "MAGNETAR_STANDALONE_TLS_REQUIRE_CLIENT_CERT")]
    pub tls_require_client_cert: bool,
    /// Client certificates authenticate (with authentication on): the role
    /// is the certificate's subject CN (Pulsar's AuthenticationProviderTls).
    #[arg(long, env = "MAGNETAR_STANDALONE_TLS_AUTH")]
    pub tls_auth: bool,
    /// Serve the binary protocol over TLS only.
    #[arg(long, env = "MAGNETAR_STANDALONE_DISABLE_PLAIN_LISTEN")]
    pub disable_plain_listen: bool,
    /// Serve HTTP over TLS only.
    #[arg(long, env = "MAGNETAR_STANDALONE_DISABLE_PLAIN_HTTP")]
    pub disable_plain_http: bool,
    /// How often backlog quotas are enforced on producing topics (ms).
    #[arg(
        long,
        env = "MAGNETAR_STANDALONE_BACKLOG_QUOTA_CHECK_INTERVAL_MS",
        default_value_t = 10_000
    )]
    pub backlog_quota_check_interval_ms: u64,
    /// Loaded topics beyond which /metrics sums topic series per namespace.
    #[arg(
        long,
        env = "MAGNETAR_STANDALONE_MAX_TOPIC_METRICS",
        default_value_t = 1000
    )]
    pub max_topic_metrics: usize,
    #[arg(long, env = "MAGNETAR_STANDALONE_LOG_FORMAT", default_value = "pretty")]
    pub log_format: LogFormat,
    #[arg(long, env = "MAGNETAR_STANDALONE_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

pub async fn run(args: StandaloneArgs) -> anyhow::Result<()> {
    // Checked before anything starts: a bad key stops here.
    let auth = magnetar_broker::auth_from_files(
        args.auth_secret_key.as_deref(),
        args.auth_public_key.as_deref(),
        &args.superuser_roles,
        args.broker_client_token.clone(),
    )
    .map_err(|e| anyhow::anyhow!("authentication: {e}"))?;
    // So is TLS: unreadable files, a key not matching its certificate, an
    // expired certificate.
    let tls = magnetar_broker::TlsFlags {
        cert_file: args.tls_cert_file.clone(),
        key_file: args.tls_key_file.clone(),
        listen: args.tls_listen,
        http: args.tls_http,
        trust_certs: args.tls_trust_certs.clone(),
        require_client_cert: args.tls_require_client_cert,
        cert_auth: args.tls_auth,
        auth_on: auth.is_some(),
        disable_plain_listen: args.disable_plain_listen,
        disable_plain_http: args.disable_plain_http,
    }
    .load()
    .context("TLS")?;
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
    let meta_addr = node.local_addr.to_string();

    let mut bookie_cfg = BookieConfig::new(
        "standalone",
        args.bookie_listen,
        args.data_dir.join("bookie"),
    );
    bookie_cfg.meta = Some(meta_addr.clone());
    bookie_cfg.min_free_bytes = args.min_free_bytes;
    bookie_cfg.journal_sync = args.journal_sync;
    // One bookie: nothing to re-replicate to.
    bookie_cfg.auditor_grace = None;
    let bookie = BookieServerHandle::start(bookie_cfg, &registry)
        .await
        .context("starting the bookie")?;

    let meta = MetaClient::new(ClientConfig::new([meta_addr.clone()]))?;
    let mut broker_cfg = BrokerConfig::new(args.broker_listen, args.http);
    broker_cfg.advertised_address = args.advertised_address.clone();
    broker_cfg.ensemble_size = 1;
    broker_cfg.write_quorum = 1;
    broker_cfg.ack_quorum = 1;
    broker_cfg.auth = auth;
    broker_cfg.tls = tls;
    broker_cfg.max_topic_metrics = args.max_topic_metrics;
    broker_cfg.backlog_quota_check_interval =
        std::time::Duration::from_millis(args.backlog_quota_check_interval_ms);
    // Tiered storage by default into the data dir (namespaces' offload
    // policies may name another driver).
    broker_cfg.offload = magnetar_broker::OffloadFlags {
        driver: Some("filesystem".into()),
        path: Some(args.data_dir.join("offload").display().to_string()),
        ..Default::default()
    }
    .driver_config()
    .map_err(|e| anyhow::anyhow!("offload: {e}"))?;
    let broker = BrokerHandle::start(broker_cfg, meta, registry, true)
        .await
        .context("starting the broker")?;

    println!(
        "Magnetar standalone is running (data in {}):",
        args.data_dir.display()
    );
    println!("  Pulsar protocol   pulsar://{}", broker.local_addr);
    println!(
        "  admin REST        http://{}/admin/v2/tenants   (metrics: /metrics, health: /health)",
        broker.http_addr
    );
    if let (Some(t), Some(h)) = (broker.tls_addr, broker.https_addr) {
        println!("  Pulsar over TLS   pulsar+ssl://{t}");
        println!("  admin over TLS    https://{h}/admin/v2/tenants");
    }
    println!("  metadata service  {meta_addr}");
    println!("  bookie            {}", args.bookie_listen);
    println!("Stop with Ctrl-C.");

    magnetar_common::shutdown_signal().await;
    tracing::info!("shutting down");
    broker.shutdown().await;
    bookie.shutdown().await;
    node.shutdown().await;
    Ok(())
}

//! `magnetar-broker`: a stateless broker speaking the Pulsar protocol.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use magnetar_broker::{BrokerConfig, BrokerHandle};
use magnetar_meta_client::{ClientConfig, MetaClient};
use magnetar_telemetry::prometheus::Registry;
use magnetar_telemetry::LogFormat;

const ENV_PREFIX: &str = "MAGNETAR_BROKER_";

/// Every flag is also `MAGNETAR_BROKER_<FLAG>` and a key of the `--config` TOML file.
#[derive(Parser, Debug)]
#[command(
    name = "magnetar-broker",
    version,
    about = "Magnetar broker (Pulsar protocol)"
)]
struct Args {
    #[arg(long, env = "MAGNETAR_BROKER_CONFIG")]
    config: Option<PathBuf>,
    /// Metadata service addresses, comma-separated.
    #[arg(long, env = "MAGNETAR_BROKER_META")]
    meta: String,
    /// Pulsar binary protocol.
    #[arg(long, env = "MAGNETAR_BROKER_LISTEN", default_value = "127.0.0.1:6650")]
    listen: SocketAddr,
    /// Admin REST, /metrics and /health.
    #[arg(long, env = "MAGNETAR_BROKER_HTTP", default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// Host name clients are given to reach this broker.
    #[arg(long, env = "MAGNETAR_BROKER_ADVERTISED_ADDRESS")]
    advertised_address: Option<String>,
    /// Named addresses for clients on other networks:
    /// `internal:pulsar://10.0.0.5:6650,external:pulsar://broker-0.example.com:16650`
    /// (a client picks one with its listener name); a name may also have a
    /// `pulsar+ssl://` URL for TLS clients.
    #[arg(long, env = "MAGNETAR_BROKER_ADVERTISED_LISTENERS", value_parser = parse_listeners)]
    advertised_listeners: Option<Listeners>,
    #[arg(long, env = "MAGNETAR_BROKER_CLUSTER", default_value = "standalone")]
    cluster: String,
    #[arg(long, env = "MAGNETAR_BROKER_ENSEMBLE_SIZE", default_value_t = 2)]
    ensemble_size: usize,
    #[arg(long, env = "MAGNETAR_BROKER_WRITE_QUORUM", default_value_t = 2)]
    write_quorum: usize,
    #[arg(long, env = "MAGNETAR_BROKER_ACK_QUORUM", default_value_t = 2)]
    ack_quorum: usize,
    /// Largest message payload in bytes.
    #[arg(long, env = "MAGNETAR_BROKER_MAX_MESSAGE_SIZE", default_value_t = 5 << 20)]
    max_message_size: usize,
    /// Create the cluster record, tenant `public` and `public/default` if missing.
    #[arg(long, env = "MAGNETAR_BROKER_BOOTSTRAP", default_value_t = true, action = clap::ArgAction::Set)]
    bootstrap: bool,
    /// Seconds a dead broker's bundles stay assigned to it before another
    /// broker may take them (its session lease TTL).
    #[arg(long, env = "MAGNETAR_BROKER_LEASE_TTL", default_value_t = 10)]
    lease_ttl: i64,
    /// Seconds a topic load (taking over its managed ledger) may take before
    /// the client is told to retry.
    #[arg(long, env = "MAGNETAR_BROKER_TOPIC_LOAD_TIMEOUT", default_value_t = 30)]
    topic_load_timeout: u64,
    /// Bundles of a namespace created without a count.
    #[arg(long, env = "MAGNETAR_BROKER_DEFAULT_BUNDLES", default_value_t = 4)]
    default_bundles: usize,
    /// How often this broker publishes its load report (milliseconds).
    #[arg(
        long,
        env = "MAGNETAR_BROKER_LOAD_REPORT_INTERVAL_MS",
        default_value_t = 5000
    )]
    load_report_interval_ms: u64,
    /// How often the leader balances load (milliseconds; 0 = never).
    #[arg(
        long,
        env = "MAGNETAR_BROKER_BALANCER_INTERVAL_MS",
        default_value_t = 30000
    )]
    balancer_interval_ms: u64,
    /// CPU or memory usage (percent) past which a broker sheds bundles.
    #[arg(long, env = "MAGNETAR_BROKER_OVERLOAD_PCT", default_value_t = 85.0)]
    overload_pct: f64,
    /// Throughput this fraction above the brokers' mean sheds a bundle.
    #[arg(long, env = "MAGNETAR_BROKER_IMBALANCE", default_value_t = 0.3)]
    imbalance: f64,
    /// Split a bundle with more topics than this (0 = no automatic splits).
    #[arg(long, env = "MAGNETAR_BROKER_SPLIT_MAX_TOPICS", default_value_t = 1000)]
    split_max_topics: u64,
    /// Split a bundle with more messages/s (in + out) than this.
    #[arg(
        long,
        env = "MAGNETAR_BROKER_SPLIT_MAX_MSG_RATE",
        default_value_t = 30000.0
    )]
    split_max_msg_rate: f64,
    /// Split a bundle with more bytes/s (in + out) than this.
    #[arg(
        long,
        env = "MAGNETAR_BROKER_SPLIT_MAX_THROUGHPUT",
        default_value_t = 100e6
    )]
    split_max_throughput: f64,
    /// Turns token authentication on: the HS256 secret key (raw or base64),
    /// as made by `magnetar tokens create-secret-key`.
    #[arg(
        long,
        env = "MAGNETAR_BROKER_AUTH_SECRET_KEY",
        conflicts_with = "auth_public_key"
    )]
    auth_secret_key: Option<PathBuf>,
    /// Turns token authentication on: the public key (PEM) of RS256/ES256 tokens.
    #[arg(long, env = "MAGNETAR_BROKER_AUTH_PUBLIC_KEY")]
    auth_public_key: Option<PathBuf>,
    /// Roles that may do everything (comma-separated).
    #[arg(long, env = "MAGNETAR_BROKER_SUPERUSER_ROLES", default_value = "admin")]
    superuser_roles: String,
    /// The token the broker itself uses (a superuser's); made from the
    /// secret key when not given.
    #[arg(long, env = "MAGNETAR_BROKER_BROKER_CLIENT_TOKEN")]
    broker_client_token: Option<String>,
    /// TLS: the certificate (PEM; its own first, then intermediates). Turns
    /// the pulsar+ssl and HTTPS/WSS listeners on; reloaded when the file changes.
    #[arg(long, env = "MAGNETAR_BROKER_TLS_CERT_FILE", requires = "tls_key_file")]
    tls_cert_file: Option<PathBuf>,
    /// TLS: the certificate's private key (PEM, unencrypted).
    #[arg(long, env = "MAGNETAR_BROKER_TLS_KEY_FILE", requires = "tls_cert_file")]
    tls_key_file: Option<PathBuf>,
    /// The pulsar+ssl listener (Pulsar's brokerServicePortTls) [default: 127.0.0.1:6651].
    #[arg(long, env = "MAGNETAR_BROKER_TLS_LISTEN")]
    tls_listen: Option<SocketAddr>,
    /// The HTTPS/WSS listener (Pulsar's webServicePortTls) [default: 127.0.0.1:8443].
    #[arg(long, env = "MAGNETAR_BROKER_TLS_HTTP")]
    tls_http: Option<SocketAddr>,
    /// CA certificates (PEM) that client certificates must chain to; the
    /// broker's own client trusts them too.
    #[arg(long, env = "MAGNETAR_BROKER_TLS_TRUST_CERTS")]
    tls_trust_certs: Option<PathBuf>,
    /// Refuse TLS clients without a certificate from --tls-trust-certs.
    #[arg(long, env = "MAGNETAR_BROKER_TLS_REQUIRE_CLIENT_CERT")]
    tls_require_client_cert: bool,
    /// Client certificates authenticate (with authentication on): the role
    /// is the certificate's subject CN (Pulsar's AuthenticationProviderTls).
    #[arg(long, env = "MAGNETAR_BROKER_TLS_AUTH")]
    tls_auth: bool,
    /// Serve the binary protocol over TLS only.
    #[arg(long, env = "MAGNETAR_BROKER_DISABLE_PLAIN_LISTEN")]
    disable_plain_listen: bool,
    /// Serve HTTP over TLS only.
    #[arg(long, env = "MAGNETAR_BROKER_DISABLE_PLAIN_HTTP")]
    disable_plain_http: bool,
    /// How often backlog quotas are enforced on producing topics (ms).
    #[arg(
        long,
        env = "MAGNETAR_BROKER_BACKLOG_QUOTA_CHECK_INTERVAL_MS",
        default_value_t = 10_000
    )]
    backlog_quota_check_interval_ms: u64,
    /// Loaded topics beyond which /metrics sums topic series per namespace.
    #[arg(
        long,
        env = "MAGNETAR_BROKER_MAX_TOPIC_METRICS",
        default_value_t = 1000
    )]
    max_topic_metrics: usize,
    /// Entries after which a topic's ledger is closed and a new one started
    /// (Pulsar's managedLedgerMaxEntriesPerLedger).
    #[arg(
        long,
        env = "MAGNETAR_BROKER_MAX_ENTRIES_PER_LEDGER",
        default_value_t = 50_000
    )]
    max_entries_per_ledger: i64,
    /// How often retention, TTL, rollover by age and offload are checked (ms).
    #[arg(
        long,
        env = "MAGNETAR_BROKER_HOUSEKEEPING_INTERVAL_MS",
        default_value_t = 30_000
    )]
    housekeeping_interval_ms: u64,
    /// Tiered storage for namespaces without offload policies: aws-s3, S3,
    /// google-cloud-storage, azureblob or filesystem (also MAGNETAR_OFFLOAD_DRIVER).
    #[arg(long, env = "MAGNETAR_BROKER_OFFLOAD_DRIVER")]
    offload_driver: Option<String>,
    /// Bucket (container for azureblob) (also MAGNETAR_OFFLOAD_BUCKET).
    #[arg(long, env = "MAGNETAR_BROKER_OFFLOAD_BUCKET")]
    offload_bucket: Option<String>,
    #[arg(long, env = "MAGNETAR_BROKER_OFFLOAD_REGION")]
    offload_region: Option<String>,
    /// An S3-compatible server, e.g. http://minio:9000 (path-style requests).
    #[arg(long, env = "MAGNETAR_BROKER_OFFLOAD_ENDPOINT")]
    offload_endpoint: Option<String>,
    /// The filesystem driver's directory.
    #[arg(long, env = "MAGNETAR_BROKER_OFFLOAD_PATH")]
    offload_path: Option<String>,
    #[arg(long, env = "MAGNETAR_BROKER_LOG_FORMAT", default_value = "pretty")]
    log_format: LogFormat,
    #[arg(long, env = "MAGNETAR_BROKER_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
}

#[derive(Clone, Debug)]
struct Listeners(Vec<(String, String)>);

fn parse_listeners(s: &str) -> Result<Listeners, String> {
    magnetar_broker::parse_listeners(s).map(Listeners)
}

fn main() -> anyhow::Result<()> {
    magnetar_common::config::load_config_file(ENV_PREFIX)?;
    let args = Args::parse();
    let _telemetry = magnetar_telemetry::init(
        "magnetar-broker",
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
    let meta = MetaClient::new(ClientConfig::from_list(&args.meta)).context("metadata client")?;
    let mut cfg = BrokerConfig::new(args.listen, args.http);
    cfg.advertised_address = args.advertised_address;
    cfg.advertised_listeners = args.advertised_listeners.map(|l| l.0).unwrap_or_default();
    cfg.cluster = args.cluster;
    cfg.ensemble_size = args.ensemble_size;
    cfg.write_quorum = args.write_quorum;
    cfg.ack_quorum = args.ack_quorum;
    cfg.max_message_size = args.max_message_size;
    cfg.lease_ttl_seconds = args.lease_ttl.max(1);
    cfg.topic_load_timeout = Duration::from_secs(args.topic_load_timeout.max(1));
    cfg.default_bundles = args.default_bundles;
    cfg.load_report_interval = Duration::from_millis(args.load_report_interval_ms.max(100));
    cfg.balancer_interval = Duration::from_millis(args.balancer_interval_ms);
    cfg.overload_pct = args.overload_pct;
    cfg.imbalance = args.imbalance;
    cfg.split_max_topics = args.split_max_topics;
    cfg.split_max_msg_rate = args.split_max_msg_rate;
    cfg.split_max_throughput = args.split_max_throughput;
    cfg.max_topic_metrics = args.max_topic_metrics;
    cfg.backlog_quota_check_interval = Duration::from_millis(args.backlog_quota_check_interval_ms);
    cfg.auth = magnetar_broker::auth_from_files(
        args.auth_secret_key.as_deref(),
        args.auth_public_key.as_deref(),
        &args.superuser_roles,
        args.broker_client_token.clone(),
    )
    .map_err(|e| anyhow::anyhow!("authentication: {e}"))?;
    cfg.tls = magnetar_broker::TlsFlags {
        cert_file: args.tls_cert_file.clone(),
        key_file: args.tls_key_file.clone(),
        listen: args.tls_listen,
        http: args.tls_http,
        trust_certs: args.tls_trust_certs.clone(),
        require_client_cert: args.tls_require_client_cert,
        cert_auth: args.tls_auth,
        auth_on: cfg.auth.is_some(),
        disable_plain_listen: args.disable_plain_listen,
        disable_plain_http: args.disable_plain_http,
    }
    .load()
    .context("TLS")?;
    cfg.max_entries_per_ledger = args.max_entries_per_ledger.max(1);
    cfg.housekeeping_interval = Duration::from_millis(args.housekeeping_interval_ms.max(100));
    cfg.offload = magnetar_broker::OffloadFlags {
        driver: args.offload_driver.clone(),
        bucket: args.offload_bucket.clone(),
        region: args.offload_region.clone(),
        endpoint: args.offload_endpoint.clone(),
        path: args.offload_path.clone(),
    }
    .with_env_fallback()
    .driver_config()
    .map_err(|e| anyhow::anyhow!("offload: {e}"))?;
    let broker = BrokerHandle::start(cfg, meta, Registry::new(), args.bootstrap)
        .await
        .context("starting the broker")?;
    println!(
        "magnetar-broker serving pulsar://{} and http://{}",
        broker.local_addr, broker.http_addr
    );
    if let (Some(t), Some(h)) = (broker.tls_addr, broker.https_addr) {
        println!("magnetar-broker serving pulsar+ssl://{t} and https://{h}");
    }
    magnetar_common::shutdown_signal().await;
    tracing::info!("shutting down: handing bundles over to other brokers");
    broker.shutdown().await;
    Ok(())
}

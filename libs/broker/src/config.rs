//! What a broker is told at start.

use std::net::SocketAddr;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// Pulsar binary protocol listener.
    pub listen: SocketAddr,
    /// Admin REST, /metrics, /health.
    pub http: SocketAddr,
    /// Host name clients are told to reach this broker by (default: the
    /// listener's IP).
    pub advertised_address: Option<String>,
    /// Named addresses for clients on other networks (Pulsar's
    /// `advertisedListeners`): a client that names a listener in its lookup
    /// gets that listener's URL for the owning broker.
    pub advertised_listeners: Vec<(String, String)>,
    pub cluster: String,
    /// Largest message payload accepted (SEND_ERROR beyond it).
    pub max_message_size: usize,
    /// Sends of one producer in flight to storage; the connection stops
    /// reading while a producer is at its limit.
    pub max_pending_per_producer: usize,
    /// Entries a subscription reads ahead per read.
    pub dispatch_batch: usize,
    /// Messages a subscription holds back (e.g. for busy Key_Shared keys)
    /// before it stops reading ahead.
    pub max_held_entries: usize,
    /// Bytes queued for one connection's socket beyond which its consumers
    /// get nothing more until it drains.
    pub max_outbound_bytes: usize,
    pub allow_auto_topic_creation: bool,
    pub ensemble_size: usize,
    pub write_quorum: usize,
    pub ack_quorum: usize,
    /// Default retention when a namespace sets none (Pulsar's defaults: 0).
    pub default_retention_minutes: i64,
    pub default_retention_mb: i64,
    pub max_entries_per_ledger: i64,
    pub cache_max_bytes: usize,
    pub housekeeping_interval: Duration,
    /// How often backlog quotas are checked on topics that are producing
    /// (new producers are checked when they come).
    pub backlog_quota_check_interval: Duration,
    /// Loaded topics beyond which /metrics sums topic series per namespace
    /// (bounds the number of series a scrape returns).
    pub max_topic_metrics: usize,
    /// How often the broker pings idle clients (and closes silent ones after
    /// twice this).
    pub keepalive: Duration,
    /// How often deduplication state is written (in messages).
    pub dedup_snapshot_interval: u64,
    /// How long loading a topic (taking over its managed ledger: recovery of
    /// the previous owner's ledger, cursors) may take before the client is
    /// told to retry (Pulsar's `topicLoadTimeoutSeconds`).
    pub topic_load_timeout: Duration,
    /// TTL of the session lease that holds this broker's bundles: how long
    /// a dead broker's topics wait before another broker takes them.
    pub lease_ttl_seconds: i64,
    /// Bundles of a namespace created without a count.
    pub default_bundles: usize,
    /// How often this broker publishes its load report.
    pub load_report_interval: Duration,
    /// How often the leader broker considers moving and splitting bundles;
    /// zero turns the balancer off.
    pub balancer_interval: Duration,
    /// CPU or memory usage (percent) past which a broker sheds bundles.
    pub overload_pct: f64,
    /// Throughput above the brokers' mean by this fraction sheds a bundle.
    pub imbalance: f64,
    /// Total bytes/s below which bundle counts, not traffic, are balanced.
    pub balance_min_throughput: f64,
    /// Split a bundle past any of these (0 turns automatic splits off).
    pub split_max_topics: u64,
    pub split_max_msg_rate: f64,
    pub split_max_throughput: f64,
    pub max_bundles_per_namespace: usize,
    /// Token authentication and authorization; `None` = everyone may do
    /// everything.
    pub auth: Option<AuthConfig>,
    /// Tiered storage for namespaces without offload policies of their own
    /// (the `--offload-*` flags); `None` = none.
    pub offload: Option<magnetar_offload::DriverConfig>,
    /// TLS listeners and client-certificate authentication (the `--tls-*`
    /// flags); `None` = plain only.
    pub tls: Option<crate::tls::BrokerTls>,
}

/// How clients prove who they are, and who may do everything.
#[derive(Clone, Debug)]
pub struct AuthConfig {
    pub verifier: magnetar_auth::Verifier,
    pub superusers: Vec<String>,
    /// The token this broker's own client (WebSocket sessions, REST
    /// produce, calls to other brokers) presents; must be a superuser's.
    pub client_token: String,
}

impl BrokerConfig {
    pub fn new(listen: SocketAddr, http: SocketAddr) -> Self {
        Self {
            listen,
            http,
            advertised_address: None,
            advertised_listeners: Vec::new(),
            cluster: "standalone".into(),
            max_message_size: 5 << 20,
            max_pending_per_producer: 1000,
            dispatch_batch: 100,
            max_held_entries: 1000,
            max_outbound_bytes: 32 << 20,
            allow_auto_topic_creation: true,
            ensemble_size: 1,
            write_quorum: 1,
            ack_quorum: 1,
            default_retention_minutes: 0,
            default_retention_mb: 0,
            max_entries_per_ledger: 50_000,
            cache_max_bytes: 256 << 20,
            housekeeping_interval: Duration::from_secs(30),
            backlog_quota_check_interval: Duration::from_secs(10),
            max_topic_metrics: 1000,
            keepalive: Duration::from_secs(30),
            dedup_snapshot_interval: 1000,
            topic_load_timeout: Duration::from_secs(30),
            lease_ttl_seconds: 10,
            default_bundles: 4,
            load_report_interval: Duration::from_secs(5),
            balancer_interval: Duration::from_secs(30),
            overload_pct: 85.0,
            imbalance: 0.3,
            balance_min_throughput: 1e6,
            split_max_topics: 1000,
            split_max_msg_rate: 30_000.0,
            split_max_throughput: 100e6,
            max_bundles_per_namespace: 128,
            auth: None,
            offload: None,
            tls: None,
        }
    }

    /// This broker's name among brokers: `host:http-port`, as Pulsar names
    /// brokers.
    pub fn broker_id(&self) -> String {
        format!("{}:{}", self.advertised_host(), self.http.port())
    }

    pub fn advertised_host(&self) -> String {
        self.advertised_address
            .clone()
            .unwrap_or_else(|| self.listen.ip().to_string())
    }
}

/// Why authentication could not be set up at start (the broker does not
/// start).
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error("authentication needs at least one superuser role")]
    NoSuperuser,
    #[error("give exactly one of a secret key and a public key")]
    KeyChoice,
    #[error("{0}")]
    PublicKey(#[source] magnetar_auth::AuthError),
    #[error("{0}")]
    SignOwnToken(#[source] magnetar_auth::AuthError),
    #[error("with a public key, the broker needs --broker-client-token")]
    NeedsClientToken,
    #[error("the broker's own token: {0}")]
    OwnToken(#[source] magnetar_auth::AuthError),
    #[error("the broker's own token is for {role:?}, not a superuser")]
    OwnTokenNotSuperuser { role: String },
    #[error("reading {}: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl AuthConfig {
    /// From key files: a secret key (HS256; raw bytes or base64) or a public
    /// key (PEM, RS256/ES256). Without `client_token`, the broker signs one
    /// for its first superuser with the secret key (a public-key setup must
    /// be given one).
    pub fn from_keys(
        secret_key: Option<&[u8]>,
        public_key: Option<&[u8]>,
        superusers: Vec<String>,
        client_token: Option<String>,
    ) -> Result<AuthConfig, AuthConfigError> {
        if superusers.is_empty() {
            return Err(AuthConfigError::NoSuperuser);
        }
        let (verifier, secret) = match (secret_key, public_key) {
            (Some(s), None) => {
                let key = magnetar_auth::read_secret_key(s);
                (magnetar_auth::Verifier::from_secret(&key), Some(key))
            }
            (None, Some(p)) => (
                magnetar_auth::Verifier::from_public_pem(p).map_err(AuthConfigError::PublicKey)?,
                None,
            ),
            _ => return Err(AuthConfigError::KeyChoice),
        };
        let client_token = match (client_token, secret) {
            (Some(t), _) => t,
            (None, Some(key)) => magnetar_auth::Signer::Secret(key)
                .token(&superusers[0], None)
                .map_err(AuthConfigError::SignOwnToken)?,
            (None, None) => return Err(AuthConfigError::NeedsClientToken),
        };
        let role = verifier
            .verify(&client_token)
            .map_err(AuthConfigError::OwnToken)?
            .role;
        if !superusers.contains(&role) {
            return Err(AuthConfigError::OwnTokenNotSuperuser { role });
        }
        Ok(AuthConfig {
            verifier,
            superusers,
            client_token,
        })
    }
}

/// Authentication from the command line: on when a key file is given.
/// `superusers` is comma-separated.
pub fn auth_from_files(
    secret_key: Option<&std::path::Path>,
    public_key: Option<&std::path::Path>,
    superusers: &str,
    client_token: Option<String>,
) -> Result<Option<AuthConfig>, AuthConfigError> {
    if secret_key.is_none() && public_key.is_none() {
        return Ok(None);
    }
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|source| AuthConfigError::Read {
            path: p.to_path_buf(),
            source,
        })
    };
    let secret = secret_key.map(read).transpose()?;
    let public = public_key.map(read).transpose()?;
    let roles: Vec<String> = superusers
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_string)
        .collect();
    AuthConfig::from_keys(secret.as_deref(), public.as_deref(), roles, client_token).map(Some)
}

/// Parses `name:pulsar://host:port,other:pulsar://host:port`; a name may
/// also have a `pulsar+ssl://` URL (its TLS address).
pub fn parse_listeners(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, url) = item
            .split_once(':')
            .ok_or_else(|| format!("listener {item:?} is not name:pulsar://host:port"))?;
        let rest = url
            .strip_prefix("pulsar://")
            .or_else(|| url.strip_prefix("pulsar+ssl://"))
            .ok_or_else(|| {
                format!("listener {name}: {url:?} is not a pulsar:// or pulsar+ssl:// URL")
            })?;
        let port_ok = rest
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if name.is_empty() || !port_ok {
            return Err(format!("listener {item:?} is not name:pulsar://host:port"));
        }
        let tls = |u: &str| u.starts_with("pulsar+ssl://");
        if out.iter().any(|(n, u)| n == name && tls(u) == tls(url)) {
            return Err(format!("listener {name} given twice"));
        }
        out.push((name.to_string(), url.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_parse_and_reject_garbage() {
        assert_eq!(
            parse_listeners("internal:pulsar://10.0.0.1:6650, external:pulsar://lb.example:16650")
                .unwrap(),
            vec![
                ("internal".to_string(), "pulsar://10.0.0.1:6650".to_string()),
                (
                    "external".to_string(),
                    "pulsar://lb.example:16650".to_string()
                )
            ]
        );
        assert_eq!(
            parse_listeners("int:pulsar://a:1,int:pulsar+ssl://a:2")
                .unwrap()
                .len(),
            2
        );
        for bad in [
            "x",
            "x:http://a:1",
            "x:pulsar://a",
            ":pulsar://a:1",
            "a:pulsar://h:1,a:pulsar://h:2",
            "a:pulsar+ssl://h:1,a:pulsar+ssl://h:2",
        ] {
            assert!(parse_listeners(bad).is_err(), "{bad}");
        }
    }
}

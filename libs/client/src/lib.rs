//! An async client for the Apache Pulsar binary protocol, used by
//! `magnetar produce|consume|perf` and by tests. It talks to any Pulsar
//! broker, Magnetar's included.
//!
//! - [`Client`]: connections (one per broker), topic lookup.
//! - [`Producer`]: sends with batching and compression; receipts resolve
//!   each message's future in order.
//! - [`Consumer`]: a subscription with flow control by permits; acks,
//!   cumulative acks, negative acks. [`Reader`]: a consumer without a
//!   durable subscription, from a start position.
//!
//! When a broker closes a producer or consumer (unload, bundle move,
//! failover, a dropped connection), the handle looks the topic up again and
//! re-attaches: a producer resends what has no receipt yet, in order; a
//! consumer resubscribes (unacknowledged messages come again); a reader goes
//! on after the last message it returned. It gives up after
//! `reconnect_timeout` or on an error that retrying cannot fix.
//!
//! A `pulsar+ssl://` service URL connects over TLS (rustls): the broker's
//! certificate must chain to `ClientConfig::tls`'s trust file (else the
//! system's roots) and name the host; lookups then follow the brokers'
//! `pulsar+ssl` URLs. A client certificate there authenticates with Pulsar's
//! `tls` method when no token is given.
//!
//! What it leaves out for now: partitioned topics, schemas other than
//! bytes, chunking and encryption.

mod connection;
mod consumer;
mod error;
mod message;
mod producer;
mod reconnect;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use magnetar_wire::pb;
use tokio::sync::Mutex;

pub use consumer::{Consumer, ConsumerOptions, InitialPosition, Reader, SubscriptionType};
pub use error::{ClientError, Result};
pub use message::{Message, MessageId, OutgoingMessage};
pub use producer::{Producer, ProducerOptions};

use connection::Connection;

/// How a client reaches and talks to brokers.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// `pulsar://host:port` or `pulsar+ssl://host:port` of any broker (or a
    /// proxy in front of them).
    pub service_url: String,
    /// Bound on every request/response exchange (lookup, producer and
    /// consumer creation, close, ...).
    pub operation_timeout: Duration,
    pub connect_timeout: Duration,
    /// A token (JWT) for brokers that require authentication.
    pub auth_token: Option<String>,
    /// How long a closed producer or consumer keeps trying to re-attach.
    pub reconnect_timeout: Duration,
    /// What a `pulsar+ssl://` connection trusts and presents (default: the
    /// system's roots, no client certificate).
    pub tls: magnetar_tls::ClientTlsConfig,
}

impl ClientConfig {
    /// The authentication method CONNECT names: a token, else a client
    /// certificate (`tls`), else none.
    pub fn auth_method(&self) -> Option<&'static str> {
        match (&self.auth_token, &self.tls.cert_file) {
            (Some(_), _) => Some("token"),
            (None, Some(_)) => Some("tls"),
            (None, None) => None,
        }
    }
}

impl ClientConfig {
    pub fn new(service_url: impl Into<String>) -> Self {
        ClientConfig {
            service_url: service_url.into(),
            operation_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            auth_token: None,
            reconnect_timeout: Duration::from_secs(60),
            tls: magnetar_tls::ClientTlsConfig::default(),
        }
    }
}

/// Entry point: owns the connections to brokers.
#[derive(Clone)]
pub struct Client {
    cfg: Arc<ClientConfig>,
    service_addr: String,
    /// Set for a `pulsar+ssl://` service URL: every connection is TLS.
    tls: Option<magnetar_tls::TlsConnector>,
    connections: Arc<Mutex<HashMap<String, Connection>>>,
    /// Set by `close`: handles stop re-attaching.
    closed: Arc<std::sync::atomic::AtomicBool>,
}

/// How many LOOKUP redirects are followed before giving up.
const MAX_REDIRECTS: usize = 8;

impl Client {
    pub fn new(cfg: ClientConfig) -> Result<Client> {
        let (service_addr, tls) = parse_url(&cfg.service_url)?;
        let tls = match tls {
            true => Some(cfg.tls.connector(&[])?),
            false => None,
        };
        Ok(Client {
            cfg: Arc::new(cfg),
            service_addr,
            tls,
            connections: Arc::new(Mutex::new(HashMap::new())),
            closed: Arc::default(),
        })
    }

    /// `Client::new(ClientConfig::new(url))`.
    pub fn from_url(url: &str) -> Result<Client> {
        Client::new(ClientConfig::new(url))
    }

    /// A live connection to `addr`, opened if needed. The map lock is held
    /// while connecting so that concurrent callers share one connection.
    async fn connection(&self, addr: &str) -> Result<Connection> {
        let mut conns = self.connections.lock().await;
        if let Some(c) = conns.get(addr) {
            if !c.is_closed() {
                return Ok(c.clone());
            }
        }
        let c = Connection::connect(addr, &self.cfg, self.tls.as_ref()).await?;
        conns.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The connection to the broker that serves `topic`.
    pub(crate) async fn connection_for(&self, topic: &str) -> Result<Connection> {
        if self.is_closed() {
            return Err(ClientError::Closed);
        }
        let mut conn = self.connection(&self.service_addr).await?;
        let mut authoritative = false;
        for _ in 0..MAX_REDIRECTS {
            let request_id = conn.next_id();
            let reply = conn
                .request(
                    request_id,
                    pb::CommandLookupTopic {
                        topic: topic.to_string(),
                        request_id,
                        authoritative: Some(authoritative),
                        ..Default::default()
                    },
                )
                .await?;
            let Some(r) = reply.lookup_topic_response.clone() else {
                return Err(unexpected("LOOKUP", &reply));
            };
            use pb::command_lookup_topic_response::LookupType;
            match r.response.and_then(|v| LookupType::try_from(v).ok()) {
                Some(LookupType::Failed) | None => {
                    return Err(ClientError::Server {
                        code: r.error.unwrap_or(pb::ServerError::UnknownError as i32),
                        message: r.message.unwrap_or_else(|| "lookup failed".into()),
                    })
                }
                Some(kind) => {
                    let url = match self.tls {
                        Some(_) => r.broker_service_url_tls,
                        None => r.broker_service_url,
                    };
                    let url = url.ok_or_else(|| {
                        ClientError::Protocol("lookup answer without a broker URL".into())
                    })?;
                    let (addr, url_tls) = parse_url(&url)?;
                    if url_tls != self.tls.is_some() {
                        return Err(ClientError::Protocol(format!(
                            "lookup sent a {} client to {url}",
                            if self.tls.is_some() { "TLS" } else { "plain" }
                        )));
                    }
                    if kind == LookupType::Connect {
                        return if r.proxy_through_service_url.unwrap_or(false) {
                            Ok(conn)
                        } else {
                            self.connection(&addr).await
                        };
                    }
                    authoritative = r.authoritative.unwrap_or(false);
                    conn = self.connection(&addr).await?;
                }
            }
        }
        Err(ClientError::Protocol(format!(
            "too many lookup redirects for {topic}"
        )))
    }

    pub async fn create_producer(&self, topic: &str, opts: ProducerOptions) -> Result<Producer> {
        Producer::create(self.clone(), topic, opts).await
    }

    pub async fn subscribe(
        &self,
        topic: &str,
        subscription: &str,
        opts: ConsumerOptions,
    ) -> Result<Consumer> {
        Consumer::subscribe(self.clone(), topic, subscription, opts, None).await
    }

    /// A reader from `start` (exclusive unless `inclusive`); `MessageId::EARLIEST`
    /// and `MessageId::LATEST` work too.
    pub async fn create_reader(
        &self,
        topic: &str,
        start: MessageId,
        inclusive: bool,
    ) -> Result<Reader> {
        Reader::create(self.clone(), topic, start, inclusive).await
    }

    /// Closes every connection (producers and consumers on them fail).
    pub async fn close(&self) {
        self.closed
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let conns: Vec<Connection> = self
            .connections
            .lock()
            .await
            .drain()
            .map(|(_, c)| c)
            .collect();
        for c in conns {
            c.close();
        }
    }
}

/// `pulsar://host:port` → (`host:port`, false); `pulsar+ssl://` → (…, true).
fn parse_url(url: &str) -> Result<(String, bool)> {
    let (rest, tls) = match (
        url.strip_prefix("pulsar://"),
        url.strip_prefix("pulsar+ssl://"),
    ) {
        (Some(rest), _) => (rest, false),
        (_, Some(rest)) => (rest, true),
        _ => {
            return Err(ClientError::InvalidConfig(format!(
                "service URL {url:?} must start with pulsar:// or pulsar+ssl://"
            )))
        }
    };
    let addr = rest.trim_end_matches('/');
    // Several hosts may be given; take the first.
    let first = addr.split(',').next().unwrap_or_default();
    if first.is_empty() || !first.contains(':') {
        return Err(ClientError::InvalidConfig(format!(
            "service URL {url:?} needs host:port"
        )));
    }
    Ok((first.to_string(), tls))
}

fn unexpected(what: &str, reply: &pb::BaseCommand) -> ClientError {
    ClientError::Protocol(format!(
        "unexpected {} in answer to {what}",
        magnetar_wire::command_name(reply)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_urls() {
        let ok = |u: &str| parse_url(u).ok();
        assert_eq!(
            ok("pulsar://127.0.0.1:6650"),
            Some(("127.0.0.1:6650".into(), false))
        );
        assert_eq!(ok("pulsar://a:1,b:2/"), Some(("a:1".into(), false)));
        assert_eq!(
            ok("pulsar+ssl://broker:6651"),
            Some(("broker:6651".into(), true))
        );
        assert!(parse_url("http://a:1").is_err());
        assert!(parse_url("pulsar+ssl://nohost").is_err());
        assert!(parse_url("pulsar://nohost").is_err());
    }
}

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
//! What it leaves out for now: partitioned topics, schemas other than
//! bytes, chunking, encryption and TLS.

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
    /// `pulsar://host:port` of any broker (or a proxy in front of them).
    pub service_url: String,
    /// Bound on every request/response exchange (lookup, producer and
    /// consumer creation, close, ...).
    pub operation_timeout: Duration,
    pub connect_timeout: Duration,
    /// A token (JWT) for brokers that require authentication.
    pub auth_token: Option<String>,
    /// How long a closed producer or consumer keeps trying to re-attach.
    pub reconnect_timeout: Duration,
}

impl ClientConfig {
    pub fn new(service_url: impl Into<String>) -> Self {
        ClientConfig {
            service_url: service_url.into(),
            operation_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            auth_token: None,
            reconnect_timeout: Duration::from_secs(60),
        }
    }
}

/// Entry point: owns the connections to brokers.
#[derive(Clone)]
pub struct Client {
    cfg: Arc<ClientConfig>,
    service_addr: String,
    connections: Arc<Mutex<HashMap<String, Connection>>>,
    /// Set by `close`: handles stop re-attaching.
    closed: Arc<std::sync::atomic::AtomicBool>,
}

/// How many LOOKUP redirects are followed before giving up.
const MAX_REDIRECTS: usize = 8;

impl Client {
    pub fn new(cfg: ClientConfig) -> Result<Client> {
        let service_addr = parse_url(&cfg.service_url)?;
        Ok(Client {
            cfg: Arc::new(cfg),
            service_addr,
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
        let c = Connection::connect(addr, &self.cfg).await?;
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
                    let url = r.broker_service_url.ok_or_else(|| {
                        ClientError::Protocol("lookup answer without a broker URL".into())
                    })?;
                    let addr = parse_url(&url)?;
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

/// `pulsar://host:port` → `host:port`.
fn parse_url(url: &str) -> Result<String> {
    let rest = url.strip_prefix("pulsar://").ok_or_else(|| {
        ClientError::InvalidConfig(format!("service URL {url:?} must start with pulsar://"))
    })?;
    let addr = rest.trim_end_matches('/');
    // Several hosts may be given; take the first.
    let first = addr.split(',').next().unwrap_or_default();
    if first.is_empty() || !first.contains(':') {
        return Err(ClientError::InvalidConfig(format!(
            "service URL {url:?} needs host:port"
        )));
    }
    Ok(first.to_string())
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
        assert_eq!(
            parse_url("pulsar://127.0.0.1:6650").ok().as_deref(),
            Some("127.0.0.1:6650")
        );
        assert_eq!(parse_url("pulsar://a:1,b:2/").ok().as_deref(), Some("a:1"));
        assert!(parse_url("http://a:1").is_err());
        assert!(parse_url("pulsar://nohost").is_err());
    }
}

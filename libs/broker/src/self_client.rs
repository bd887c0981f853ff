//! The broker's own client of the binary protocol, for the HTTP ways in
//! (WebSocket sessions, REST produce): they produce and consume through it
//! as any Pulsar client would, so lookups send them to whichever broker owns
//! a topic and they get every guarantee of the binary protocol.

use std::collections::HashMap;

use bytes::Bytes;
use magnetar_client::{Client, ClientConfig, OutgoingMessage};
use serde::Deserialize;
use tokio::sync::OnceCell;

use crate::error::BrokerError;
use crate::service::BrokerService;

/// One client per broker, made on first use (one connection per broker it
/// talks to).
pub struct SelfClient {
    client: OnceCell<Client>,
}

impl SelfClient {
    pub fn new() -> Self {
        SelfClient {
            client: OnceCell::new(),
        }
    }

    pub async fn get(&self, svc: &BrokerService) -> Result<Client, BrokerError> {
        self.client
            .get_or_try_init(|| async {
                // Our own listener; an unspecified listen address is reached
                // through loopback.
                let mut addr = svc.cfg().listen;
                if addr.ip().is_unspecified() {
                    addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                let mut cfg = ClientConfig::new(format!("pulsar://{addr}"));
                // With the plain listener off: our own pulsar+ssl URL.
                let me = &svc.ownership().me;
                if let (true, Some(url)) = (me.native_url.is_empty(), &me.native_url_tls) {
                    cfg = ClientConfig::new(url.clone());
                    if let Some(tls) = svc.cfg().tls.as_ref().and_then(|t| t.client.clone()) {
                        cfg.tls = tls;
                    }
                }
                cfg.auth_token = svc.cfg().auth.as_ref().map(|a| a.client_token.clone());
                Client::new(cfg).map_err(BrokerError::SelfClient)
            })
            .await
            .cloned()
    }
}

impl Default for SelfClient {
    fn default() -> Self {
        Self::new()
    }
}

/// What a message sent over HTTP or WebSocket may carry besides its payload
/// (Pulsar's field names).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct MessageOptions {
    pub key: Option<String>,
    pub properties: HashMap<String, String>,
    pub event_time: Option<u64>,
    /// Unix milliseconds.
    pub deliver_at: Option<i64>,
    pub deliver_after_ms: Option<i64>,
}

impl MessageOptions {
    pub fn into_message(self, payload: Bytes) -> OutgoingMessage {
        let deliver_at = self.deliver_at.or(self
            .deliver_after_ms
            .map(|ms| (crate::subscription::now_ms() as i64).saturating_add(ms.max(0))));
        let mut properties: Vec<(String, String)> = self.properties.into_iter().collect();
        properties.sort();
        OutgoingMessage {
            payload,
            key: self.key,
            properties,
            event_time: self.event_time,
            deliver_at,
        }
    }
}

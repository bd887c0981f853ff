//! The broker's own client of the binary protocol, for the HTTP ways in
//! (WebSocket sessions, REST produce): they produce and consume through it
//! as any Pulsar client would, so lookups send them to whichever broker owns
//! a topic and they get every guarantee of the binary protocol.

use magnetar_client::{Client, ClientConfig};
use tokio::sync::OnceCell;

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

    pub async fn get(&self, svc: &BrokerService) -> Result<Client, String> {
        self.client
            .get_or_try_init(|| async {
                // Our own listener; an unspecified listen address is reached
                // through loopback.
                let mut addr = svc.cfg().listen;
                if addr.ip().is_unspecified() {
                    addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                let mut cfg = ClientConfig::new(format!("pulsar://{addr}"));
                cfg.auth_token = svc.cfg().auth.as_ref().map(|a| a.client_token.clone());
                Client::new(cfg).map_err(|e| e.to_string())
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

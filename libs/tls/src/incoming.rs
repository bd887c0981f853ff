//! Accepting TLS connections: each handshake in its own task (a slow or
//! silent client holds up no one), established streams handed on through a
//! channel, failed handshakes logged once per peer address.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How long a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A peer's failed handshakes are logged at most once in this long.
const LOG_EVERY: Duration = Duration::from_secs(600);
/// Peers remembered; past this the memory starts over.
const MAX_PEERS: usize = 10_000;

/// Remembers which peers' handshake failures were logged, so a client
/// that retries with a certificate the server refuses (or that does not
/// trust the server) fills the log with one line, not one per retry.
#[derive(Clone, Debug, Default)]
pub struct HandshakeLog {
    seen: Arc<Mutex<HashMap<IpAddr, Instant>>>,
}

impl HandshakeLog {
    /// True when this peer's failure should be logged now.
    pub fn first(&self, peer: IpAddr) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= MAX_PEERS {
            seen.clear();
        }
        match seen.get(&peer) {
            Some(t) if t.elapsed() < LOG_EVERY => false,
            _ => {
                seen.insert(peer, Instant::now());
                true
            }
        }
    }

    pub fn failed(&self, listener: &str, peer: SocketAddr, error: &dyn std::fmt::Display) {
        if self.first(peer.ip()) {
            tracing::warn!(
                listener,
                peer = %peer,
                error = %error,
                "TLS handshake failed (further failures from this address are logged at debug level for 10 minutes)"
            );
        } else {
            tracing::debug!(listener, peer = %peer, error = %error, "TLS handshake failed");
        }
    }
}

/// Accepts on `listener` until `stop` fires; established TLS streams come
/// out of the returned channel. `name` labels log lines.
pub fn accept_tls(
    name: &'static str,
    listener: TcpListener,
    acceptor: TlsAcceptor,
    mut stop: watch::Receiver<bool>,
) -> mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)> {
    let (tx, rx) = mpsc::channel(128);
    let log = HandshakeLog::default();
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(listener = name, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                _ = stop.changed() => return,
                _ = tx.closed() => return,
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            let log = log.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send((tls, peer)).await;
                    }
                    Ok(Err(e)) => log.failed(name, peer, &e),
                    Err(_) => log.failed(name, peer, &"no handshake within 10 s"),
                }
            });
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_logged_once_not_per_retry() {
        let log = HandshakeLog::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(log.first(a));
        assert!(!log.first(a));
        assert!(!log.first(a));
        assert!(log.first(b));
        // A long time later the peer is logged again.
        if let Some(long_ago) = Instant::now().checked_sub(LOG_EVERY + Duration::from_secs(1)) {
            log.seen.lock().unwrap().insert(a, long_ago);
            assert!(log.first(a));
        }
    }
}

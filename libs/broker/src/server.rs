//! Starts a broker: the Pulsar protocol listener and the HTTP server, over a
//! metadata client and a ledger client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use magnetar_ledger::{LedgerClient, LedgerClientConfig};
use magnetar_managed_ledger::{FactoryConfig, ManagedLedgerFactory};
use magnetar_meta_client::MetaClient;
use magnetar_telemetry::prometheus::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::BrokerConfig;
use crate::error::{BrokerError, Result};
use crate::service::BrokerService;

pub struct BrokerHandle {
    pub service: BrokerService,
    pub local_addr: SocketAddr,
    pub http_addr: SocketAddr,
    stop: watch::Sender<bool>,
    accept: JoinHandle<()>,
    http: JoinHandle<()>,
    /// Stops the session and cluster tasks (after the drain).
    cluster_stop: watch::Sender<bool>,
    cluster: Vec<JoinHandle<()>>,
}

impl BrokerHandle {
    /// Binds both listeners and starts serving. With `bootstrap`, creates the
    /// default cluster, tenant and namespace if missing (standalone).
    pub async fn start(
        mut cfg: BrokerConfig,
        meta: MetaClient,
        registry: Registry,
        bootstrap: bool,
    ) -> Result<BrokerHandle> {
        let listener = TcpListener::bind(cfg.listen)
            .await
            .map_err(|e| BrokerError::Internal(format!("binding {}: {e}", cfg.listen)))?;
        let http_listener = TcpListener::bind(cfg.http)
            .await
            .map_err(|e| BrokerError::Internal(format!("binding {}: {e}", cfg.http)))?;
        // Port 0 means "any": advertise what was bound.
        cfg.listen = listener
            .local_addr()
            .map_err(|e| BrokerError::Internal(e.to_string()))?;
        cfg.http = http_listener
            .local_addr()
            .map_err(|e| BrokerError::Internal(e.to_string()))?;
        let ledgers = LedgerClient::new(
            meta.clone(),
            LedgerClientConfig {
                max_entry_bytes: cfg.max_message_size + (64 << 10),
                ..Default::default()
            },
        );
        let factory = ManagedLedgerFactory::new(
            meta.clone(),
            ledgers,
            FactoryConfig {
                cache_max_bytes: cfg.cache_max_bytes,
                housekeeping_interval: cfg.housekeeping_interval,
            },
        );
        let service = BrokerService::new(cfg.clone(), meta, factory);
        if bootstrap {
            let mut tries = 0;
            loop {
                match service.bootstrap_defaults().await {
                    Ok(()) => break,
                    Err(e) if tries < 30 => {
                        tries += 1;
                        tracing::info!(error = %e, "waiting for the metadata service");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        let (cluster_stop, cluster_stop_rx) = watch::channel(false);
        let mut cluster = crate::cluster::start(service.clone(), cluster_stop_rx.clone());
        cluster.push(tokio::spawn(crate::backlog_quota::check_loop(
            service.clone(),
            cfg.backlog_quota_check_interval,
            cluster_stop_rx,
        )));
        // Serve once a session exists: bundles can be taken from then on.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while service.ownership().lease().is_none() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (stop, stop_rx) = watch::channel(false);
        let accept = tokio::spawn(accept_loop(listener, service.clone(), stop_rx.clone()));
        let app = crate::admin::router(service.clone(), Arc::new(registry));
        let mut http_stop = stop_rx.clone();
        let http = tokio::spawn(async move {
            // As in telemetry's server: Nagle off for admin responses and
            // WebSocket frames.
            let http_listener = http_listener.tap_io(|s| {
                let _ = s.set_nodelay(true);
            });
            let r = axum::serve(
                http_listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                let _ = http_stop.changed().await;
            })
            .await;
            if let Err(e) = r {
                tracing::error!(error = %e, "HTTP server failed");
            }
        });
        tracing::info!(listen = %cfg.listen, http = %cfg.http, "broker started");
        Ok(BrokerHandle {
            service,
            local_addr: cfg.listen,
            http_addr: cfg.http,
            stop,
            accept,
            http,
            cluster_stop,
            cluster,
        })
    }

    /// Hands every bundle to other brokers (clients are told to reconnect
    /// and find the new owners), then stops.
    pub async fn shutdown(self) {
        crate::cluster::withdraw(&self.service).await;
        self.service.drain().await;
        crate::cluster::withdraw(&self.service).await;
        let _ = self.cluster_stop.send(true);
        for t in self.cluster {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        self.service.shutdown().await;
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.accept).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.http).await;
    }
}

async fn accept_loop(listener: TcpListener, svc: BrokerService, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    tokio::spawn(crate::connection::serve(svc.clone(), stream, peer, stop.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = stop.changed() => return,
        }
    }
}

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
use crate::error::Result;
use crate::service::BrokerService;

pub struct BrokerHandle {
    pub(crate) service: BrokerService,
    pub local_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// The `pulsar+ssl` and HTTPS listeners, when TLS is on.
    pub tls_addr: Option<SocketAddr>,
    pub https_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    accept: JoinHandle<()>,
    http: JoinHandle<()>,
    tls_tasks: Vec<JoinHandle<()>>,
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
        // Port 0 means "any": `cfg` gets what was bound, to advertise.
        let mut bound = crate::tls::Listeners::bind(&mut cfg).await?;
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
        let app = crate::admin::router(service.clone(), Arc::new(registry));
        let tls_tasks = bound.serve_tls(&service, app.clone(), &stop_rx)?;
        let (listener, http_listener) = (bound.plain, bound.http);
        let accept = tokio::spawn(accept_loop(listener, service.clone(), stop_rx.clone()));
        let mut http_stop = stop_rx.clone();
        let http = tokio::spawn(async move {
            let Some(http_listener) = http_listener else {
                return;
            };
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
        tracing::info!(listen = %cfg.listen, http = %cfg.http, tls = ?bound.tls_addr, https = ?bound.https_addr, "broker started");
        Ok(BrokerHandle {
            service,
            local_addr: cfg.listen,
            http_addr: cfg.http,
            tls_addr: bound.tls_addr,
            https_addr: bound.https_addr,
            stop,
            accept,
            http,
            tls_tasks,
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
        for t in self.tls_tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

async fn accept_loop(
    listener: Option<TcpListener>,
    svc: BrokerService,
    mut stop: watch::Receiver<bool>,
) {
    let Some(listener) = listener else { return };
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let plain = crate::tls::Transport::default();
                    tokio::spawn(crate::connection::serve(svc.clone(), stream, peer, plain, stop.clone()));
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

//! The operational HTTP endpoint: `/metrics` (Prometheus text format) and
//! `/health` (200 when the service reports itself healthy, else 503).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Returns (healthy, JSON body).
pub type HealthFn = Arc<dyn Fn() -> (bool, String) + Send + Sync>;

#[derive(Clone)]
struct AppState {
    registry: Registry,
    health: HealthFn,
}

pub struct HttpServer {
    pub local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl HttpServer {
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    let mut buf = Vec::new();
    match TextEncoder::new().encode(&s.registry.gather(), &mut buf) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            buf,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn health(State(s): State<AppState>) -> impl IntoResponse {
    let (ok, body) = (s.health)();
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, [(header::CONTENT_TYPE, "application/json")], body)
}

/// Serves `/metrics` and `/health` on `addr` until `shutdown` is called.
pub async fn serve_http(
    addr: SocketAddr,
    registry: Registry,
    health_fn: HealthFn,
) -> std::io::Result<HttpServer> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local_addr = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .with_state(AppState {
            registry,
            health: health_fn,
        });
    let (tx, mut rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        let stop = async move {
            let _ = rx.changed().await;
        };
        // axum leaves Nagle on for the sockets it accepts; small responses
        // (and WebSocket frames) would then wait for the peer's delayed ACK.
        let listener = listener.tap_io(|s| {
            let _ = s.set_nodelay(true);
        });
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
    Ok(HttpServer {
        local_addr,
        shutdown: tx,
        task,
    })
}

//! HTTP calls to other brokers, for admin requests that span topics served
//! by several brokers (a partitioned topic's stats, deleting its partitions).

use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::error::{BoxError, BrokerError, Result};

const TIMEOUT: Duration = Duration::from_secs(30);
/// Redirects followed (owner moved while we asked).
const MAX_REDIRECTS: usize = 4;

fn client() -> &'static Client<HttpConnector, Empty<Bytes>> {
    static CLIENT: OnceLock<Client<HttpConnector, Empty<Bytes>>> = OnceLock::new();
    CLIENT.get_or_init(|| Client::builder(TokioExecutor::new()).build_http())
}

/// `method url` without a body, following redirects; (status, body). With
/// `token`, as `Authorization: Bearer`. An `https://` URL (a broker whose
/// plain HTTP listener is off) is reached over TLS trusting `tls`'s CA
/// (the system's roots without one).
pub async fn call(
    method: Method,
    url: &str,
    token: Option<&str>,
    tls: Option<&magnetar_tls::ClientTlsConfig>,
) -> Result<(StatusCode, Bytes)> {
    let mut url = url.to_string();
    for _ in 0..=MAX_REDIRECTS {
        let mut req = Request::builder().method(method.clone()).uri(&url);
        if let Some(t) = token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req
            .body(Empty::new())
            .map_err(|e| BrokerError::internal(format!("request to {url}"), e))?;
        let fail = |source: PeerError| BrokerError::BrokerUnreachable {
            url: url.clone(),
            source,
        };
        let resp = if url.starts_with("https://") {
            tokio::time::timeout(TIMEOUT, https(req, tls))
                .await
                .map_err(|_| fail(PeerError::NoAnswer))?
                .map_err(fail)?
        } else {
            tokio::time::timeout(TIMEOUT, client().request(req))
                .await
                .map_err(|_| fail(PeerError::NoAnswer))?
                .map_err(|e| fail(PeerError::Http(e.into())))?
        };
        let status = resp.status();
        if status.is_redirection() {
            if let Some(to) = resp.headers().get(hyper::header::LOCATION) {
                url = to.to_str().unwrap_or_default().to_string();
                continue;
            }
        }
        let body = tokio::time::timeout(TIMEOUT, resp.into_body().collect())
            .await
            .map_err(|_| fail(PeerError::BodyTimedOut))?
            .map_err(|e| fail(PeerError::Http(e.into())))?
            .to_bytes();
        return Ok((status, body));
    }
    Err(BrokerError::ServiceNotReady(format!(
        "too many redirects for {url}"
    )))
}

/// Why another broker did not answer.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("no answer")]
    NoAnswer,
    #[error("body timed out")]
    BodyTimedOut,
    #[error("no host in the URL")]
    NoHost,
    #[error("{0}")]
    Connect(#[source] std::io::Error),
    #[error("{0}")]
    TlsConfig(#[source] magnetar_tls::TlsError),
    #[error("TLS: {0}")]
    TlsHandshake(#[source] std::io::Error),
    #[error("{0}")]
    Http(#[source] BoxError),
}

/// One request over its own TLS connection (calls between brokers are rare:
/// no pool).
async fn https(
    req: Request<Empty<Bytes>>,
    tls: Option<&magnetar_tls::ClientTlsConfig>,
) -> std::result::Result<hyper::Response<hyper::body::Incoming>, PeerError> {
    let host = req.uri().host().ok_or(PeerError::NoHost)?.to_string();
    let port = req.uri().port_u16().unwrap_or(443);
    let connector = tls
        .cloned()
        .unwrap_or_default()
        .connector(&[b"http/1.1"])
        .map_err(PeerError::TlsConfig)?;
    let name = magnetar_tls::server_name(&host).map_err(PeerError::TlsConfig)?;
    let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
        .await
        .map_err(PeerError::Connect)?;
    let stream = connector
        .connect(name, tcp)
        .await
        .map_err(PeerError::TlsHandshake)?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| PeerError::Http(e.into()))?;
    tokio::spawn(conn);
    sender
        .send_request(req)
        .await
        .map_err(|e| PeerError::Http(e.into()))
}

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

use crate::error::{BrokerError, Result};

const TIMEOUT: Duration = Duration::from_secs(30);
/// Redirects followed (owner moved while we asked).
const MAX_REDIRECTS: usize = 4;

fn client() -> &'static Client<HttpConnector, Empty<Bytes>> {
    static CLIENT: OnceLock<Client<HttpConnector, Empty<Bytes>>> = OnceLock::new();
    CLIENT.get_or_init(|| Client::builder(TokioExecutor::new()).build_http())
}

/// `method url` without a body, following redirects; (status, body). With
/// `token`, as `Authorization: Bearer`.
pub async fn call(method: Method, url: &str, token: Option<&str>) -> Result<(StatusCode, Bytes)> {
    let mut url = url.to_string();
    for _ in 0..=MAX_REDIRECTS {
        let mut req = Request::builder().method(method.clone()).uri(&url);
        if let Some(t) = token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req
            .body(Empty::new())
            .map_err(|e| BrokerError::Internal(format!("request to {url}: {e}")))?;
        let fail = |e: String| BrokerError::ServiceNotReady(format!("broker at {url}: {e}"));
        let resp = tokio::time::timeout(TIMEOUT, client().request(req))
            .await
            .map_err(|_| fail("no answer".into()))?
            .map_err(|e| fail(e.to_string()))?;
        let status = resp.status();
        if status.is_redirection() {
            if let Some(to) = resp.headers().get(hyper::header::LOCATION) {
                url = to.to_str().unwrap_or_default().to_string();
                continue;
            }
        }
        let body = tokio::time::timeout(TIMEOUT, resp.into_body().collect())
            .await
            .map_err(|_| fail("body timed out".into()))?
            .map_err(|e| fail(e.to_string()))?
            .to_bytes();
        return Ok((status, body));
    }
    Err(BrokerError::ServiceNotReady(format!(
        "too many redirects for {url}"
    )))
}

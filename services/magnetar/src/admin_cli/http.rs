//! A small HTTP client (hyper) for the brokers' admin REST API: redirects,
//! timeouts, TLS, and the failures each exit code stands for.

use super::*;

/// Redirects followed per call: a topic's owner may move while we ask.
pub(super) const MAX_REDIRECTS: usize = 5;

/// Why a command failed; each kind has its exit code.
#[derive(Debug)]
pub(super) enum Failure {
    /// No connection, no answer in time, or a broken exchange.
    Unreachable(String),
    /// The server answered with an error status and (usually) a reason.
    Refused { status: StatusCode, reason: String },
    /// Anything else: bad local input, an answer that makes no sense.
    Other(String),
}

impl Failure {
    pub(super) fn exit_code(&self) -> u8 {
        match self {
            Failure::Unreachable(_) => 3,
            Failure::Refused { .. } | Failure::Other(_) => 1,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Unreachable(m) | Failure::Other(m) => f.write_str(m),
            Failure::Refused { status, reason } if reason.is_empty() => write!(f, "{status}"),
            Failure::Refused { status, reason } => write!(f, "{status}: {reason}"),
        }
    }
}

/// An answer of any status.
pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
}

impl Reply {
    /// The broker's `{"reason": …}`, else the body's text.
    pub(super) fn reason(&self) -> String {
        if let Ok(v) = serde_json::from_slice::<Value>(&self.body) {
            if let Some(r) = v.get("reason").and_then(Value::as_str) {
                return r.to_string();
            }
        }
        let text = String::from_utf8_lossy(&self.body);
        text.trim().chars().take(500).collect()
    }

    pub(super) fn refused(&self) -> Failure {
        Failure::Refused {
            status: self.status,
            reason: self.reason(),
        }
    }

    /// The broker's fallback for unknown routes (an endpoint this broker
    /// version does not have).
    pub(super) fn is_no_such_endpoint(&self) -> bool {
        self.status == StatusCode::NOT_FOUND && self.reason().contains("no such endpoint")
    }

    pub(super) fn json(&self) -> Result<Value, Failure> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            Failure::Other(format!(
                "the server's answer is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            ))
        })
    }
}

/// `err` with its causes: hyper's own message ("client error (Connect)")
/// says little without them.
pub(super) fn with_causes(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        let _ = write!(s, ": {c}");
        cause = c.source();
    }
    s
}

pub(super) struct Http {
    pub(super) base: String,
    pub(super) token: Option<String>,
    pub(super) timeout: Duration,
    pub(super) client: Client<HttpConnector, Full<Bytes>>,
    /// For https:// URLs.
    pub(super) tls: magnetar_tls::ClientTlsConfig,
}

impl Http {
    pub(super) fn new(base: String, token: Option<String>, timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        Http {
            base,
            token,
            timeout,
            client: Client::builder(TokioExecutor::new()).build(connector),
            tls: magnetar_tls::ClientTlsConfig::default(),
        }
    }

    pub(super) fn with_tls(self, tls: magnetar_tls::ClientTlsConfig) -> Self {
        Http { tls, ..self }
    }

    /// One exchange over its own TLS connection (the tool makes a few calls).
    pub(super) async fn https(
        &self,
        req: Request<Full<Bytes>>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, Failure> {
        let tls_failure = |e: String| Failure::Other(format!("TLS: {e}"));
        let connector = self
            .tls
            .connector(&[b"http/1.1"])
            .map_err(|e| tls_failure(e.to_string()))?;
        let target = req.uri().to_string();
        let unreachable = |e: String| Failure::Unreachable(format!("cannot reach {target}: {e}"));
        let host = req.uri().host().unwrap_or_default().to_string();
        let port = req.uri().port_u16().unwrap_or(443);
        let name = magnetar_tls::server_name(&host).map_err(|e| tls_failure(e.to_string()))?;
        let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let stream = connector
            .connect(name, tcp)
            .await
            .map_err(|e| unreachable(format!("TLS handshake: {e}")))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| unreachable(with_causes(&e)))?;
        tokio::spawn(conn);
        sender
            .send_request(req)
            .await
            .map_err(|e| unreachable(with_causes(&e)))
    }

    /// `method path` with an optional JSON body, following 307/308
    /// redirects (same method, body and token, as Pulsar's clients do);
    /// any final status is returned.
    pub(super) async fn send(
        &self,
        method: &Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, Failure> {
        let payload = body.map(|v| Bytes::from(v.to_string()));
        let mut url = format!("{}{path}", self.base);
        for _ in 0..=MAX_REDIRECTS {
            let reply = self.once(method, &url, payload.clone()).await?;
            let redirect = matches!(
                reply.status,
                StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT
            );
            if let (true, Some(to)) = (redirect, reply.headers.get(LOCATION)) {
                let to = to.to_str().map_err(|_| {
                    Failure::Other(format!("{url} redirected to an invalid location"))
                })?;
                url = resolve(&url, to);
                continue;
            }
            return Ok(reply);
        }
        Err(Failure::Other(format!(
            "more than {MAX_REDIRECTS} redirects (last to {url})"
        )))
    }

    /// `send`, with an error status as a failure.
    pub(super) async fn call(
        &self,
        method: &Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, Failure> {
        let reply = self.send(method, path, body).await?;
        if reply.status.is_success() {
            Ok(reply)
        } else {
            Err(reply.refused())
        }
    }

    pub(super) async fn get_json(&self, path: &str) -> Result<Value, Failure> {
        self.call(&Method::GET, path, None).await?.json()
    }

    pub(super) async fn once(
        &self,
        method: &Method,
        url: &str,
        payload: Option<Bytes>,
    ) -> Result<Reply, Failure> {
        let uri: Uri = url
            .parse()
            .map_err(|e| Failure::Other(format!("invalid URL {url}: {e}")))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => {
                return Err(Failure::Other(format!(
                    "cannot follow {url}: not http:// or https://"
                )))
            }
        };
        let mut req = Request::builder()
            .method(method.clone())
            .uri(uri)
            .header(ACCEPT, "application/json");
        if let Some(t) = &self.token {
            req = req.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        if payload.is_some() {
            req = req.header(CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(payload.unwrap_or_default()))
            .map_err(|e| {
                Failure::Other(format!(
                    "cannot make the request (is the token valid?): {e}"
                ))
            })?;
        let unreachable = |why: String| Failure::Unreachable(format!("cannot reach {url}: {why}"));
        let exchange = async {
            let resp = if https {
                self.https(req).await?
            } else {
                self.client
                    .request(req)
                    .await
                    .map_err(|e| unreachable(with_causes(&e)))?
            };
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| unreachable(with_causes(&e)))?
                .to_bytes();
            Ok::<_, Failure>(Reply {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| unreachable(format!("no answer within {:?}", self.timeout)))?
    }
}

/// A redirect's target: absolute, or a path on the same server.
pub(super) fn resolve(from: &str, location: &str) -> String {
    if location.contains("://") {
        return location.to_string();
    }
    let origin_end = from
        .find("://")
        .and_then(|i| from[i + 3..].find('/').map(|j| i + 3 + j))
        .unwrap_or(from.len());
    format!(
        "{}/{}",
        &from[..origin_end],
        location.trim_start_matches('/')
    )
}

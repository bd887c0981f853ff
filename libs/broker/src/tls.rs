//! The broker's TLS listeners (issue 32): the binary protocol over TLS
//! (`pulsar+ssl`, Pulsar's `brokerServicePortTls`) and HTTPS/WSS (Pulsar's
//! `webServicePortTls`) beside the plain ones, each plain one able to be
//! turned off; and TLS client-certificate authentication (Pulsar's
//! `AuthenticationProviderTls`: the role is the certificate's subject CN).
//!
//! Certificates, keys and their reloading are `magnetar_tls`'s; this module
//! binds the listeners and says which connection came over TLS and with
//! which client certificate.

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use magnetar_tls::{ClientTlsConfig, ServerTls, ServerTlsConfig, TlsError};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::error::BrokerError;

/// The TLS side of a broker's configuration.
#[derive(Clone, Debug)]
pub struct BrokerTls {
    /// Certificate and key (checked at start, reloaded when the files
    /// change) and the CA client certificates must chain to.
    pub server: ServerTls,
    /// `pulsar+ssl` listener; `None`: none.
    pub listen: Option<SocketAddr>,
    /// HTTPS/WSS listener; `None`: none.
    pub http: Option<SocketAddr>,
    /// Whether the plain listeners (`BrokerConfig::listen`, `::http`) are
    /// served too.
    pub plain_listen: bool,
    pub plain_http: bool,
    /// Client certificates authenticate (auth method `tls`; role = subject
    /// CN) when authentication is on.
    pub cert_auth: bool,
    /// What the broker's own client trusts (and presents) when it has to
    /// use TLS: with the plain binary listener off, WebSocket sessions and
    /// REST produce reach the brokers over `pulsar+ssl`.
    pub client: Option<ClientTlsConfig>,
}

/// TLS settings as the command line gives them (the same for
/// `magnetar-broker` and `magnetar standalone`).
#[derive(Clone, Debug, Default)]
pub struct TlsFlags {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    /// CA certificates (PEM): client certificates must chain to them, and
    /// the broker's own client trusts them.
    pub trust_certs: Option<PathBuf>,
    pub require_client_cert: bool,
    pub cert_auth: bool,
    /// Authentication is on (a token key is given): `cert_auth` needs it.
    pub auth_on: bool,
    pub disable_plain_listen: bool,
    pub disable_plain_http: bool,
}

/// A TLS setting that cannot work, with what to change.
#[derive(Debug, thiserror::Error)]
pub enum BrokerTlsError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("--tls-cert-file and --tls-key-file go together: give both")]
    HalfIdentity,
    #[error("{0} needs TLS: give --tls-cert-file and --tls-key-file")]
    NeedsCertificate(&'static str),
    #[error("{0} needs --tls-trust-certs (the CA that client certificates are issued by)")]
    NeedsTrust(&'static str),
    #[error("--tls-auth adds client certificates to authentication, which is off: give --auth-secret-key or --auth-public-key too")]
    TlsAuthWithoutAuth,
    #[error("with the plain binary listener off the broker's own client uses pulsar+ssl: give --tls-trust-certs (the CA that issued the broker's certificate)")]
    SelfClientTrust,
}

/// Where the TLS listeners go when TLS is on and no address is given.
pub const DEFAULT_TLS_LISTEN: &str = "127.0.0.1:6651";
pub const DEFAULT_TLS_HTTP: &str = "127.0.0.1:8443";

impl TlsFlags {
    /// Checks the flags and loads the certificate: `None` when no
    /// certificate is given (TLS off). Every error here stops the start.
    pub fn load(&self) -> Result<Option<BrokerTls>, BrokerTlsError> {
        let (cert, key) = match (&self.cert_file, &self.key_file) {
            (Some(c), Some(k)) => (c, k),
            (None, None) => {
                let needs = [
                    (self.disable_plain_listen, "--disable-plain-listen"),
                    (self.disable_plain_http, "--disable-plain-http"),
                    (self.cert_auth, "--tls-auth"),
                    (self.require_client_cert, "--tls-require-client-cert"),
                ];
                return match needs.iter().find(|(on, _)| *on) {
                    Some(&(_, flag)) => Err(BrokerTlsError::NeedsCertificate(flag)),
                    None => Ok(None),
                };
            }
            _ => return Err(BrokerTlsError::HalfIdentity),
        };
        if self.trust_certs.is_none() {
            if self.cert_auth {
                return Err(BrokerTlsError::NeedsTrust("--tls-auth"));
            }
            if self.require_client_cert {
                return Err(BrokerTlsError::NeedsTrust("--tls-require-client-cert"));
            }
            if self.disable_plain_listen {
                return Err(BrokerTlsError::SelfClientTrust);
            }
        }
        if self.cert_auth && !self.auth_on {
            return Err(BrokerTlsError::TlsAuthWithoutAuth);
        }
        let default = |s: &str| s.parse::<SocketAddr>().ok();
        let listen = self.listen.or_else(|| default(DEFAULT_TLS_LISTEN));
        let http = self.http.or_else(|| default(DEFAULT_TLS_HTTP));
        let mut server = ServerTlsConfig::new(cert, key);
        server.client_ca_file = self.trust_certs.clone();
        server.require_client_cert = self.require_client_cert;
        Ok(Some(BrokerTls {
            server: ServerTls::load(&server)?,
            listen,
            http,
            plain_listen: !self.disable_plain_listen,
            plain_http: !self.disable_plain_http,
            cert_auth: self.cert_auth,
            client: self.trust_certs.as_ref().map(ClientTlsConfig::trusting),
        }))
    }
}

/// How a binary-protocol connection reached the broker.
#[derive(Clone, Debug, Default)]
pub struct Transport {
    /// Over TLS: lookups answer with the owners' `pulsar+ssl` URLs.
    pub tls: bool,
    /// The subject CN of the client's verified certificate.
    pub cert_role: Option<String>,
}

/// A connection's stream, split into halves for the read loop and the
/// writer task (a plain socket splits without a lock).
pub trait SplitStream: Send + 'static {
    type Read: AsyncRead + Send + Unpin + 'static;
    type Write: AsyncWrite + Send + Unpin + 'static;
    fn split_halves(self) -> (Self::Read, Self::Write);
}

impl SplitStream for TcpStream {
    type Read = tokio::net::tcp::OwnedReadHalf;
    type Write = tokio::net::tcp::OwnedWriteHalf;
    fn split_halves(self) -> (Self::Read, Self::Write) {
        self.into_split()
    }
}

type ServerStream = magnetar_tls::tokio_rustls::server::TlsStream<TcpStream>;

impl SplitStream for ServerStream {
    type Read = tokio::io::ReadHalf<ServerStream>;
    type Write = tokio::io::WriteHalf<ServerStream>;
    fn split_halves(self) -> (Self::Read, Self::Write) {
        tokio::io::split(self)
    }
}

fn cert_role(s: &ServerStream) -> Option<String> {
    magnetar_tls::peer_common_name(s.get_ref().1.peer_certificates())
}

/// Serves the binary protocol over TLS until `stop` fires.
pub async fn accept_binary(
    listener: TcpListener,
    tls: BrokerTls,
    svc: crate::service::BrokerService,
    stop: watch::Receiver<bool>,
) {
    let acceptor = match tls.server.acceptor(&[]) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "pulsar+ssl listener not started");
            return;
        }
    };
    let mut rx = magnetar_tls::accept_tls("pulsar+ssl", listener, acceptor, stop.clone());
    while let Some((stream, peer)) = rx.recv().await {
        let transport = Transport {
            tls: true,
            cert_role: cert_role(&stream),
        };
        tokio::spawn(crate::connection::serve(
            svc.clone(),
            stream,
            peer,
            transport,
            stop.clone(),
        ));
    }
}

/// Who is at the other end of an HTTPS connection (axum's `ConnectInfo`
/// on the TLS listener; its presence marks a request that came over TLS).
#[derive(Clone, Debug)]
pub struct TlsPeer {
    /// The subject CN of the client's verified certificate.
    pub cert_role: Option<String>,
}

/// HTTPS connections for `axum::serve`, handshakes done off the accept loop.
pub struct HttpsListener {
    rx: mpsc::Receiver<(ServerStream, SocketAddr)>,
}

impl HttpsListener {
    pub fn new(
        listener: TcpListener,
        tls: &BrokerTls,
        stop: watch::Receiver<bool>,
    ) -> crate::error::Result<HttpsListener> {
        let acceptor = tls
            .server
            .acceptor(&[b"http/1.1"])
            .map_err(|e| BrokerError::internal("HTTPS: the TLS acceptor", e))?;
        Ok(HttpsListener {
            rx: magnetar_tls::accept_tls("https", listener, acceptor, stop),
        })
    }
}

impl axum::serve::Listener for HttpsListener {
    type Io = ServerStream;
    type Addr = TlsPeer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some((s, _addr)) => {
                let peer = TlsPeer {
                    cert_role: cert_role(&s),
                };
                (s, peer)
            }
            // The acceptor stopped (shutdown): the server's graceful
            // shutdown ends the serve loop.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(TlsPeer { cert_role: None })
    }
}

impl Connected<IncomingStream<'_, HttpsListener>> for TlsPeer {
    fn connect_info(stream: IncomingStream<'_, HttpsListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// Whether an HTTP request came over TLS, and the role of its client
/// certificate.
pub fn request_peer<B>(req: &axum::http::Request<B>) -> Option<&TlsPeer> {
    req.extensions()
        .get::<axum::extract::ConnectInfo<TlsPeer>>()
        .map(|c| &c.0)
}

/// The broker's listeners, bound.
pub struct Listeners {
    pub plain: Option<TcpListener>,
    pub http: Option<TcpListener>,
    pub tls: Option<TcpListener>,
    pub https: Option<TcpListener>,
    pub tls_addr: Option<SocketAddr>,
    pub https_addr: Option<SocketAddr>,
}

async fn bind_one(addr: SocketAddr, what: &str) -> crate::error::Result<(TcpListener, SocketAddr)> {
    let fail = |e: std::io::Error| {
        BrokerError::internal(
            format!("binding the {what} listener {addr} (is another process using the port?)"),
            e,
        )
    };
    let l = TcpListener::bind(addr).await.map_err(fail)?;
    let bound = l.local_addr().map_err(fail)?;
    Ok((l, bound))
}

impl Listeners {
    /// Binds what `cfg` asks for and writes the bound addresses (port 0 =
    /// any) back into it. With plain HTTP off, `cfg.http` becomes the HTTPS
    /// address (the broker's id is `host:web-port`, as in Pulsar).
    pub async fn bind(cfg: &mut crate::config::BrokerConfig) -> crate::error::Result<Listeners> {
        let tls = cfg.tls.clone();
        let mut out = Listeners {
            plain: None,
            http: None,
            tls: None,
            https: None,
            tls_addr: None,
            https_addr: None,
        };
        if tls.as_ref().is_none_or(|t| t.plain_listen) {
            let (l, a) = bind_one(cfg.listen, "binary protocol").await?;
            out.plain = Some(l);
            cfg.listen = a;
        }
        if tls.as_ref().is_none_or(|t| t.plain_http) {
            let (l, a) = bind_one(cfg.http, "HTTP").await?;
            out.http = Some(l);
            cfg.http = a;
        }
        let Some(t) = tls else { return Ok(out) };
        if let Some(addr) = t.listen {
            let (l, a) = bind_one(addr, "pulsar+ssl").await?;
            out.tls = Some(l);
            out.tls_addr = Some(a);
        }
        if let Some(addr) = t.http {
            let (l, a) = bind_one(addr, "HTTPS").await?;
            out.https = Some(l);
            out.https_addr = Some(a);
        }
        if let Some(ct) = cfg.tls.as_mut() {
            ct.listen = out.tls_addr;
            ct.http = out.https_addr;
        }
        if out.plain.is_none() {
            if let Some(a) = out.tls_addr {
                cfg.listen = a;
            }
        }
        if out.http.is_none() {
            if let Some(a) = out.https_addr {
                cfg.http = a;
            }
        }
        Ok(out)
    }

    /// Starts serving the TLS listeners (the binary protocol, and `app`
    /// over HTTPS/WSS) until `stop` fires.
    pub fn serve_tls(
        &mut self,
        svc: &crate::service::BrokerService,
        app: axum::Router,
        stop: &watch::Receiver<bool>,
    ) -> crate::error::Result<Vec<tokio::task::JoinHandle<()>>> {
        let Some(tls) = svc.cfg().tls.clone() else {
            return Ok(Vec::new());
        };
        let mut tasks = Vec::new();
        if let Some(l) = self.tls.take() {
            tasks.push(tokio::spawn(accept_binary(
                l,
                tls.clone(),
                svc.clone(),
                stop.clone(),
            )));
        }
        if let Some(l) = self.https.take() {
            let listener = HttpsListener::new(l, &tls, stop.clone())?;
            let mut http_stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                let r = axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<TlsPeer>(),
                )
                .with_graceful_shutdown(async move {
                    let _ = http_stop.changed().await;
                })
                .await;
                if let Err(e) = r {
                    tracing::error!(error = %e, "HTTPS server failed");
                }
            }));
        }
        Ok(tasks)
    }
}

/// The advertised listeners' `pulsar+ssl://` URLs (`tls`) or `pulsar://`
/// ones, by listener name.
pub fn listener_urls(
    listeners: &[(String, String)],
    tls: bool,
) -> std::collections::BTreeMap<String, String> {
    listeners
        .iter()
        .filter(|(_, url)| url.starts_with("pulsar+ssl://") == tls)
        .cloned()
        .collect()
}

/// A broker's advertised URLs; a listener that is off has none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Urls {
    pub native: Option<String>,
    pub http: Option<String>,
    pub native_tls: Option<String>,
    pub http_tls: Option<String>,
}

impl Urls {
    /// From a configuration whose listeners are bound.
    pub fn of(cfg: &crate::config::BrokerConfig) -> Urls {
        let host = cfg.advertised_host();
        let t = cfg.tls.as_ref();
        Urls {
            native: t
                .is_none_or(|t| t.plain_listen)
                .then(|| format!("pulsar://{host}:{}", cfg.listen.port())),
            http: t
                .is_none_or(|t| t.plain_http)
                .then(|| format!("http://{host}:{}", cfg.http.port())),
            native_tls: t
                .and_then(|t| t.listen)
                .map(|a| format!("pulsar+ssl://{host}:{}", a.port())),
            http_tls: t
                .and_then(|t| t.http)
                .map(|a| format!("https://{host}:{}", a.port())),
        }
    }
}

impl crate::service::BrokerService {
    /// Client certificates authenticate (authentication on and `--tls-auth`).
    pub fn tls_auth_enabled(&self) -> bool {
        self.auth_enabled() && self.cfg().tls.as_ref().is_some_and(|t| t.cert_auth)
    }
}

#[cfg(test)]
mod tests {
    use crate::ownership::OwnerData;

    fn owner(native: &str, tls: Option<&str>) -> OwnerData {
        OwnerData {
            broker_id: "b:8080".into(),
            native_url: native.into(),
            http_url: "http://b:8080".into(),
            listeners: [("int".to_string(), "pulsar://10.0.0.1:6650".to_string())].into(),
            listeners_tls: [("int".to_string(), "pulsar+ssl://10.0.0.1:6651".to_string())].into(),
            native_url_tls: tls.map(str::to_string),
            http_url_tls: tls.map(|_| "https://b:8443".to_string()),
        }
    }

    #[test]
    fn lookups_answer_each_client_with_its_urls() {
        let both = owner("pulsar://b:6650", Some("pulsar+ssl://b:6651"));
        let tls_url = Some("pulsar+ssl://b:6651".to_string());
        assert_eq!(
            both.lookup_urls(None, false).unwrap(),
            ("pulsar://b:6650".into(), tls_url.clone())
        );
        assert_eq!(
            both.lookup_urls(None, true).unwrap(),
            ("pulsar://b:6650".into(), tls_url.clone())
        );
        assert_eq!(
            both.lookup_urls(Some("int"), false).unwrap().0,
            "pulsar://10.0.0.1:6650"
        );
        assert_eq!(
            both.lookup_urls(Some("int"), true).unwrap(),
            (
                "pulsar://10.0.0.1:6650".into(),
                Some("pulsar+ssl://10.0.0.1:6651".into())
            )
        );
        assert!(both.lookup_urls(Some("ext"), true).is_err());
        assert_eq!(both.web_url(true), "https://b:8443");
        assert_eq!(both.web_url(false), "http://b:8080");

        let tls_only = owner("", Some("pulsar+ssl://b:6651"));
        let e = tls_only.lookup_urls(None, false).unwrap_err();
        assert!(e.to_string().contains("pulsar+ssl only"), "{e}");
        assert_eq!(
            tls_only.lookup_urls(None, true).unwrap(),
            ("pulsar+ssl://b:6651".into(), tls_url)
        );

        let plain = owner("pulsar://b:6650", None);
        assert_eq!(plain.lookup_urls(None, false).unwrap().1, None);
        assert!(plain.lookup_urls(None, true).is_err());
        assert_eq!(plain.web_url(true), "http://b:8080");
    }
}

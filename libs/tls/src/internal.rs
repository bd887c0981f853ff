//! TLS between the services (issue 32): the metadata service's and the
//! bookies' gRPC, over a cluster CA, optionally mutual (every service
//! presents its certificate and refuses peers without one from the CA).
//!
//! One setting for every process, from the environment (the same names for
//! `magnetar-meta`, `magnetar-bookie`, `magnetar-broker`, `magnetar
//! standalone` and the `magnetar` tools):
//!
//! - `MAGNETAR_INTERNAL_TLS_CA`: the cluster CA (PEM). Turns TLS on.
//! - `MAGNETAR_INTERNAL_TLS_CERT`, `MAGNETAR_INTERNAL_TLS_KEY`: this
//!   process's certificate and key (PEM; the certificate must name the
//!   address peers dial, e.g. an IP SAN). Needed by servers, and by clients
//!   when mutual.
//! - `MAGNETAR_INTERNAL_TLS_MUTUAL=true`: servers require a client
//!   certificate from the CA; clients present theirs.
//!
//! `init_from_env` at start sets it for the process; gRPC servers take
//! their connections from [`incoming`] and clients connect with
//! [`connect_lazy`], plain when it is off.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use futures::Stream;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};
use tonic::transport::{Channel, Endpoint, Uri};

use crate::{ClientTlsConfig, ServerTls, ServerTlsConfig, TlsError};

pub const ENV_CA: &str = "MAGNETAR_INTERNAL_TLS_CA";
pub const ENV_CERT: &str = "MAGNETAR_INTERNAL_TLS_CERT";
pub const ENV_KEY: &str = "MAGNETAR_INTERNAL_TLS_KEY";
pub const ENV_MUTUAL: &str = "MAGNETAR_INTERNAL_TLS_MUTUAL";

/// Where the internal TLS files are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InternalTlsConfig {
    pub ca_file: PathBuf,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub mutual: bool,
}

impl InternalTlsConfig {
    /// From `MAGNETAR_INTERNAL_TLS_*`; `None` when the CA is not set.
    pub fn from_env() -> Result<Option<InternalTlsConfig>, TlsError> {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        let Some(ca) = var(ENV_CA) else {
            if var(ENV_CERT).is_some() || var(ENV_KEY).is_some() {
                return Err(TlsError::InternalNeedsCa);
            }
            return Ok(None);
        };
        let mutual = match std::env::var(ENV_MUTUAL).ok().as_deref() {
            None | Some("") | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(other) => {
                return Err(TlsError::BadSetting {
                    name: ENV_MUTUAL,
                    value: other.to_string(),
                })
            }
        };
        Ok(Some(InternalTlsConfig {
            ca_file: ca.into(),
            cert_file: var(ENV_CERT).map(PathBuf::from),
            key_file: var(ENV_KEY).map(PathBuf::from),
            mutual,
        }))
    }
}

/// The loaded internal TLS: how this process serves and connects.
#[derive(Clone)]
pub struct InternalTls {
    /// `None` for a process that only connects (the tools).
    server: Option<ServerTls>,
    client: crate::TlsConnector,
}

impl InternalTls {
    /// Loads and checks the files (see `ServerTls::load`).
    pub fn load(cfg: &InternalTlsConfig) -> Result<InternalTls, TlsError> {
        let identity = match (&cfg.cert_file, &cfg.key_file) {
            (Some(c), Some(k)) => Some((c.clone(), k.clone())),
            (None, None) => None,
            _ => return Err(TlsError::HalfIdentity),
        };
        if cfg.mutual && identity.is_none() {
            return Err(TlsError::InternalNeedsIdentity);
        }
        let server = match &identity {
            Some((c, k)) => {
                let mut s = ServerTlsConfig::new(c, k);
                s.client_ca_file = Some(cfg.ca_file.clone());
                s.require_client_cert = cfg.mutual;
                Some(ServerTls::load(&s)?)
            }
            None => None,
        };
        let client = ClientTlsConfig {
            trust_file: Some(cfg.ca_file.clone()),
            cert_file: identity
                .as_ref()
                .filter(|_| cfg.mutual)
                .map(|i| i.0.clone()),
            key_file: identity
                .as_ref()
                .filter(|_| cfg.mutual)
                .map(|i| i.1.clone()),
        }
        .connector(&[b"h2"])?;
        Ok(InternalTls { server, client })
    }
}

impl std::fmt::Debug for InternalTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InternalTls")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

static INTERNAL: OnceLock<Option<InternalTls>> = OnceLock::new();

/// Sets this process's internal TLS from the environment (once; later calls
/// change nothing). Call before any service starts or connects.
pub fn init_from_env() -> Result<bool, TlsError> {
    let loaded = match InternalTlsConfig::from_env()? {
        Some(cfg) => Some(InternalTls::load(&cfg)?),
        None => None,
    };
    let on = loaded.is_some();
    let _ = INTERNAL.set(loaded);
    if on {
        tracing::info!("internal traffic (metadata and bookie RPC) uses TLS");
    }
    Ok(on)
}

/// Sets this process's internal TLS (tests, embedding).
pub fn init(tls: Option<InternalTls>) {
    let _ = INTERNAL.set(tls);
}

pub fn current() -> Option<&'static InternalTls> {
    INTERNAL.get().and_then(Option::as_ref)
}

/// A gRPC channel to `endpoint` (an `http://host:port` URI), over TLS when
/// internal TLS is on, connecting on first use.
pub fn connect_lazy(endpoint: Endpoint) -> Channel {
    match current() {
        None => endpoint.connect_lazy(),
        Some(t) => endpoint.connect_with_connector_lazy(TlsConnect {
            connector: t.client.clone(),
        }),
    }
}

#[derive(Clone)]
struct TlsConnect {
    connector: crate::TlsConnector,
}

type ClientStream = tokio_rustls::client::TlsStream<TcpStream>;

impl tonic::codegen::Service<Uri> for TlsConnect {
    type Response = TokioIo<ClientStream>;
    type Error = std::io::Error;
    type Future =
        Pin<Box<dyn std::future::Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connector = self.connector.clone();
        Box::pin(async move {
            let bad = |what: &str| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, what.to_string())
            };
            let host = uri.host().ok_or_else(|| bad("no host in the address"))?;
            let port = uri
                .port_u16()
                .ok_or_else(|| bad("no port in the address"))?;
            let name = crate::server_name(host)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let tcp = TcpStream::connect((host, port)).await?;
            let _ = tcp.set_nodelay(true);
            let tls = connector.connect(name, tcp).await?;
            Ok(TokioIo::new(tls))
        })
    }
}

/// A gRPC server's connection: plain or TLS.
pub enum ServerIo {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Connected for ServerIo {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        let tcp = match self {
            ServerIo::Plain(s) => s,
            ServerIo::Tls(s) => s.get_ref().0,
        };
        TcpConnectInfo {
            local_addr: tcp.local_addr().ok(),
            remote_addr: tcp.peer_addr().ok(),
        }
    }
}

impl AsyncRead for ServerIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ServerIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ServerIo::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ServerIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ServerIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ServerIo::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ServerIo::Plain(s) => Pin::new(s).poll_flush(cx),
            ServerIo::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ServerIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ServerIo::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ServerIo::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            ServerIo::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ServerIo::Plain(s) => s.is_write_vectored(),
            ServerIo::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// A gRPC server's connections from `listener` (Nagle off): TLS when
/// internal TLS is on and this process has a certificate. `name` labels
/// handshake failures in the log.
pub fn incoming(
    name: &'static str,
    listener: TcpListener,
) -> Pin<Box<dyn Stream<Item = std::io::Result<ServerIo>> + Send>> {
    match current().and_then(|t| t.server.clone()) {
        None => {
            let plain = TcpIncoming::from(listener).with_nodelay(Some(true));
            Box::pin(MapPlain(plain))
        }
        Some(server) => match server.acceptor(&[b"h2"]) {
            Ok(acceptor) => {
                // Stops with the server: the receiver is dropped, the
                // acceptor sees its channel closed.
                let (_never, stop) = tokio::sync::watch::channel(false);
                let rx = crate::accept_tls(name, listener, acceptor, stop);
                Box::pin(TlsIncoming { rx, _never })
            }
            Err(e) => {
                tracing::error!(error = %e, "internal TLS listener not started");
                Box::pin(futures::stream::empty())
            }
        },
    }
}

struct MapPlain(TcpIncoming);

impl Stream for MapPlain {
    type Item = std::io::Result<ServerIo>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.get_mut().0)
            .poll_next(cx)
            .map(|o| o.map(|r| r.map(ServerIo::Plain)))
    }
}

struct TlsIncoming {
    rx: tokio::sync::mpsc::Receiver<(tokio_rustls::server::TlsStream<TcpStream>, SocketAddr)>,
    _never: tokio::sync::watch::Sender<bool>,
}

impl Stream for TlsIncoming {
    type Item = std::io::Result<ServerIo>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut()
            .rx
            .poll_recv(cx)
            .map(|o| o.map(|(s, _)| Ok(ServerIo::Tls(Box::new(s)))))
    }
}

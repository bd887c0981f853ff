//! A server's TLS: its certificate (reloaded when the files change) and
//! what it asks of clients.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use crate::x509::{format_time, CertInfo};
use crate::TlsError;

/// Where a server's certificate and key are, and what it asks of clients.
#[derive(Clone, Debug)]
pub struct ServerTlsConfig {
    /// PEM: the server's certificate first, then its intermediates.
    pub cert_file: PathBuf,
    /// PEM: the certificate's private key (unencrypted).
    pub key_file: PathBuf,
    /// PEM CA certificates that client certificates must chain to; `None`
    /// asks clients for no certificate.
    pub client_ca_file: Option<PathBuf>,
    /// Refuse clients without a certificate (mutual TLS). Without it, a
    /// client certificate is optional and checked when presented.
    pub require_client_cert: bool,
    /// The files are checked for changes at most this often (on a
    /// handshake).
    pub refresh: Duration,
}

impl ServerTlsConfig {
    pub fn new(cert_file: impl Into<PathBuf>, key_file: impl Into<PathBuf>) -> Self {
        ServerTlsConfig {
            cert_file: cert_file.into(),
            key_file: key_file.into(),
            client_ca_file: None,
            require_client_cert: false,
            refresh: Duration::from_secs(1),
        }
    }
}

/// A loaded server TLS setup; cheap to clone.
#[derive(Clone, Debug)]
pub struct ServerTls {
    cert: Arc<ReloadingCert>,
    verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    provider: Arc<CryptoProvider>,
}

impl ServerTls {
    /// Loads and checks everything now: unreadable files, a key that does
    /// not match the certificate, an expired certificate and a bad CA file
    /// are errors here, before anything listens.
    pub fn load(cfg: &ServerTlsConfig) -> Result<ServerTls, TlsError> {
        let provider = crate::provider();
        let cert = ReloadingCert::load(cfg, provider.clone())?;
        let verifier = match &cfg.client_ca_file {
            None => WebPkiClientVerifier::no_client_auth(),
            Some(ca) => {
                let roots = Arc::new(crate::load_roots("client CA file", ca)?);
                let b = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
                if cfg.require_client_cert {
                    b.build()?
                } else {
                    b.allow_unauthenticated().build()?
                }
            }
        };
        Ok(ServerTls {
            cert: Arc::new(cert),
            verifier,
            provider,
        })
    }

    /// A rustls server configuration offering `alpn` (e.g. `http/1.1`).
    pub fn config(&self, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, TlsError> {
        let mut c = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(self.verifier.clone())
            .with_cert_resolver(self.cert.clone());
        c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(c))
    }

    pub fn acceptor(&self, alpn: &[&[u8]]) -> Result<crate::TlsAcceptor, TlsError> {
        Ok(crate::TlsAcceptor::from(self.config(alpn)?))
    }

    /// The certificate served now (after a reload check).
    pub fn current(&self) -> CertInfo {
        self.cert.current().1
    }
}

/// Modification time and length of the certificate and key files: a change
/// in either is a new certificate.
type Stamp = [(Option<SystemTime>, u64); 2];

fn stamp(cert: &Path, key: &Path) -> Option<Stamp> {
    let one = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.modified().ok(), m.len()))
    };
    Some([one(cert)?, one(key)?])
}

/// The served certificate: checked against its files at most every
/// `refresh`, when a handshake asks for it. New files that do not load
/// (half written, key not yet replaced, expired) are logged once and the
/// current certificate stays.
#[derive(Debug)]
struct ReloadingCert {
    cert_file: PathBuf,
    key_file: PathBuf,
    refresh: Duration,
    provider: Arc<CryptoProvider>,
    state: Mutex<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    key: Arc<CertifiedKey>,
    info: CertInfo,
    stamp: Option<Stamp>,
    checked: Instant,
    /// Files seen and refused (not tried again until they change).
    refused: Option<Stamp>,
}

impl ReloadingCert {
    fn load(cfg: &ServerTlsConfig, provider: Arc<CryptoProvider>) -> Result<Self, TlsError> {
        let stamp = stamp(&cfg.cert_file, &cfg.key_file);
        let (key, info) = load_identity(&cfg.cert_file, &cfg.key_file, &provider)?;
        Ok(ReloadingCert {
            cert_file: cfg.cert_file.clone(),
            key_file: cfg.key_file.clone(),
            refresh: cfg.refresh,
            provider,
            state: Mutex::new(Loaded {
                key,
                info,
                stamp,
                checked: Instant::now(),
                refused: None,
            }),
        })
    }

    fn current(&self) -> (Arc<CertifiedKey>, CertInfo) {
        // Only a loaded certificate is behind the lock: a panic elsewhere leaves it whole.
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.checked.elapsed() >= self.refresh {
            st.checked = Instant::now();
            let now = stamp(&self.cert_file, &self.key_file);
            if now.is_some() && now != st.stamp && now != st.refused {
                match load_identity(&self.cert_file, &self.key_file, &self.provider) {
                    Ok((key, info)) => {
                        tracing::info!(
                            cert = %self.cert_file.display(),
                            subject = info.subject_cn.as_deref().unwrap_or(""),
                            not_after = %format_time(info.not_after),
                            "TLS certificate reloaded"
                        );
                        st.key = key;
                        st.info = info;
                        st.stamp = now;
                        st.refused = None;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "new TLS certificate files not used; serving the previous certificate");
                        st.refused = now;
                    }
                }
            }
        }
        (st.key.clone(), st.info.clone())
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current().0)
    }
}

/// Loads a certificate chain and its key, and checks that they belong
/// together and that the certificate is valid now.
pub(crate) fn load_identity(
    cert_file: &Path,
    key_file: &Path,
    provider: &CryptoProvider,
) -> Result<(Arc<CertifiedKey>, CertInfo), TlsError> {
    let certs = crate::load_certs("certificate file", cert_file)?;
    let info = certs
        .first()
        .map(|c| CertInfo::parse(c))
        .transpose()
        .map_err(|reason| TlsError::BadCertificate {
            path: cert_file.to_path_buf(),
            reason,
        })?
        .ok_or_else(|| TlsError::NoCertificate {
            what: "certificate file",
            path: cert_file.to_path_buf(),
        })?;
    let now = crate::now_secs();
    if info.is_expired_at(now) {
        return Err(TlsError::Expired {
            path: cert_file.to_path_buf(),
            not_after: format_time(info.not_after),
        });
    }
    if now < info.not_before {
        return Err(TlsError::NotYetValid {
            path: cert_file.to_path_buf(),
            not_before: format_time(info.not_before),
        });
    }
    let key = crate::load_key(key_file)?;
    let signer = provider
        .key_provider
        .load_private_key(key)
        .map_err(|source| TlsError::BadKey {
            path: key_file.to_path_buf(),
            source,
        })?;
    let ck = CertifiedKey::new(certs, signer);
    match ck.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(_)) => {
            return Err(TlsError::KeyMismatch {
                cert: cert_file.to_path_buf(),
                key: key_file.to_path_buf(),
            })
        }
        Err(e) => return Err(TlsError::Rustls(e)),
    }
    Ok((Arc::new(ck), info))
}

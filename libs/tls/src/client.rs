//! A client's TLS: whom it trusts and which certificate it presents.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::ClientConfig;

use crate::TlsError;

/// What a TLS client trusts and presents. The server's host name is always
/// checked against its certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientTlsConfig {
    /// PEM CA certificates the server's certificate must chain to; `None`
    /// trusts the system's roots.
    pub trust_file: Option<PathBuf>,
    /// A client certificate (PEM) and its key, for mutual TLS and TLS
    /// authentication.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl ClientTlsConfig {
    /// Trusting the CAs in `trust_file`.
    pub fn trusting(trust_file: impl Into<PathBuf>) -> Self {
        ClientTlsConfig {
            trust_file: Some(trust_file.into()),
            ..Default::default()
        }
    }

    /// Loads the files (errors name them) into a rustls configuration
    /// offering `alpn`.
    pub fn config(&self, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, TlsError> {
        let provider = crate::provider();
        let roots = match &self.trust_file {
            Some(path) => crate::load_roots("trust file", path)?,
            None => {
                let mut roots = rustls::RootCertStore::empty();
                let found = rustls_native_certs::load_native_certs();
                let (added, _) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    return Err(TlsError::NoSystemRoots);
                }
                roots
            }
        };
        let b = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let mut c = match (&self.cert_file, &self.key_file) {
            (None, None) => b.with_no_client_auth(),
            (Some(cert), Some(key)) => {
                let (ck, _) = crate::server::load_identity(cert, key, &provider)?;
                b.with_client_auth_cert(ck.cert.clone(), crate::load_key(key)?)?
            }
            _ => return Err(TlsError::HalfIdentity),
        };
        c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(c))
    }

    pub fn connector(&self, alpn: &[&[u8]]) -> Result<crate::TlsConnector, TlsError> {
        Ok(crate::TlsConnector::from(self.config(alpn)?))
    }
}

/// The name a server's certificate must carry: a DNS name or an IP address
/// (brackets of an IPv6 literal removed).
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(h.to_string()).map_err(|_| TlsError::BadServerName {
        host: host.to_string(),
    })
}

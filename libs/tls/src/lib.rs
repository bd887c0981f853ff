//! TLS for every Magnetar surface, with rustls over aws-lc-rs (no OpenSSL).
//!
//! - [`ServerTls`]: a server's certificate and key from PEM files, checked
//!   at start (readable, a key that matches the certificate, not expired)
//!   and reloaded when the files change: new connections get the new
//!   certificate, existing ones keep theirs. Optionally asks for (or
//!   requires) client certificates chained to a CA file.
//! - [`ClientTlsConfig`]: what a client trusts (a CA file, else the
//!   system's roots) and the certificate it presents, if any. Host names
//!   are always verified.
//! - [`accept_tls`]: TLS handshakes off the accept loop, a failed handshake
//!   logged once per peer rather than once per retry.
//! - [`x509::CertInfo`]: validity and subject common name of a certificate
//!   (the role of a client certificate, as Pulsar's TLS authentication
//!   provider takes it).
//!
//! Every misconfiguration is a [`TlsError`] that names the file and says
//! what to do about it.

mod client;
mod incoming;
pub mod internal;
mod server;
pub mod x509;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use client::{server_name, ClientTlsConfig};
pub use incoming::{accept_tls, HandshakeLog};
pub use rustls;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
pub use server::{ServerTls, ServerTlsConfig};
pub use tokio_rustls;
pub use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Why TLS could not be set up; each message names the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {source} ({})", read_hint(.source))]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{what} {path} is not valid PEM: {reason} (hint: expect `-----BEGIN ...-----` blocks)"
    )]
    BadPem {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{what} {path} holds no certificate (hint: PEM `-----BEGIN CERTIFICATE-----` blocks, the server's own certificate first)")]
    NoCertificate { what: &'static str, path: PathBuf },
    #[error("key file {path} holds no private key (hint: PEM `BEGIN PRIVATE KEY` (PKCS#8), `BEGIN RSA PRIVATE KEY` or `BEGIN EC PRIVATE KEY`, unencrypted)")]
    NoKey { path: PathBuf },
    #[error("key file {path} cannot be used: {source} (hint: RSA, ECDSA P-256/P-384 and Ed25519 keys are supported)")]
    BadKey {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("key file {key} does not belong to the certificate in {cert} (hint: give the key the certificate was issued for)")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("certificate {path} cannot be read: {reason}")]
    BadCertificate {
        path: PathBuf,
        reason: x509::X509Error,
    },
    #[error("certificate {path} expired at {not_after} (hint: renew it; the server refuses to start with an expired certificate)")]
    Expired { path: PathBuf, not_after: String },
    #[error(
        "certificate {path} is not valid before {not_before} (hint: check this machine's clock)"
    )]
    NotYetValid { path: PathBuf, not_before: String },
    #[error("{what} {path} holds no usable CA certificate: {reason}")]
    BadTrust {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("no trusted CA certificates: the system has none installed (hint: give a CA file with --tls-trust-certs)")]
    NoSystemRoots,
    #[error("a client certificate needs both a certificate file and a key file")]
    HalfIdentity,
    #[error("MAGNETAR_INTERNAL_TLS_CERT/_KEY are set but MAGNETAR_INTERNAL_TLS_CA is not (hint: the cluster CA turns internal TLS on)")]
    InternalNeedsCa,
    #[error("MAGNETAR_INTERNAL_TLS_MUTUAL needs this process's certificate: set MAGNETAR_INTERNAL_TLS_CERT and MAGNETAR_INTERNAL_TLS_KEY")]
    InternalNeedsIdentity,
    #[error("{name}={value:?} is not true or false")]
    BadSetting { name: &'static str, value: String },
    #[error("{host:?} is not a valid TLS server name")]
    BadServerName { host: String },
    #[error("client certificate verification cannot be set up: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

fn read_hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::NotFound => "hint: the file does not exist; check the path",
        std::io::ErrorKind::PermissionDenied => {
            "hint: this process's user may not read it; check the file's permissions"
        }
        _ => "hint: check the file",
    }
}

/// The crypto provider every Magnetar TLS configuration uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// Every certificate in a PEM file, in file order.
pub fn load_certs(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadPem {
            what,
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The first private key in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read("key file", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_path_buf(),
        },
        e => TlsError::BadPem {
            what: "key file",
            path: path.to_path_buf(),
            reason: e.to_string(),
        },
    })
}

/// A root store from a PEM file of CA certificates.
pub fn load_roots(what: &'static str, path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in load_certs(what, path)? {
        roots.add(cert).map_err(|e| TlsError::BadTrust {
            what,
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// The role a client certificate stands for: its subject's common name
/// (Pulsar's `AuthenticationProviderTls`). `None` without a certificate or
/// without a CN.
pub fn peer_common_name(certs: Option<&[CertificateDer<'_>]>) -> Option<String> {
    let leaf = certs?.first()?;
    x509::CertInfo::parse(leaf).ok()?.subject_cn
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

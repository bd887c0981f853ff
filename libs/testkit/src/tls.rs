//! Certificates for TLS tests: a throwaway CA that issues server and client
//! certificates, written as PEM files (rcgen; nothing checked in).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

/// A certificate authority made for one test.
pub struct TestCa {
    cert: Certificate,
    key: KeyPair,
}

/// A certificate and its key, as PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// When an issued certificate is valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validity {
    /// From 1975 to 4096 (rcgen's default).
    Now,
    /// 2020 only: expired.
    Expired,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().expect("CA key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = p.self_signed(&key).expect("CA certificate");
        TestCa { cert, key }
    }

    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// Writes the CA certificate to `path`.
    pub fn write(&self, path: &Path) -> PathBuf {
        std::fs::write(path, self.cert_pem()).expect("writing the CA certificate");
        path.to_path_buf()
    }

    /// A certificate for subject `cn` valid for the host names and IP
    /// addresses in `sans` (empty for a client certificate).
    pub fn issue(&self, cn: &str, sans: &[&str], validity: Validity) -> Issued {
        let key = KeyPair::generate().expect("key");
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut p = CertificateParams::new(sans).expect("certificate params");
        p.distinguished_name.push(DnType::CommonName, cn);
        if validity == Validity::Expired {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = p
            .signed_by(&key, &self.cert, &self.key)
            .expect("signing a certificate");
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A server certificate for `localhost` and 127.0.0.1.
    pub fn server(&self, cn: &str) -> Issued {
        self.issue(cn, &["localhost", "127.0.0.1"], Validity::Now)
    }

    /// A client certificate whose subject CN is `role`.
    pub fn client(&self, role: &str) -> Issued {
        self.issue(role, &[], Validity::Now)
    }
}

impl Issued {
    /// Writes `{name}.cert.pem` and `{name}.key.pem` into `dir`; returns
    /// (certificate path, key path).
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.cert.pem"));
        let key = dir.join(format!("{name}.key.pem"));
        self.write_to(&cert, &key);
        (cert, key)
    }

    /// Replaces the files at `cert` and `key` (each written to a temporary
    /// name and renamed, as certificate managers do).
    pub fn write_to(&self, cert: &Path, key: &Path) {
        for (path, pem) in [(key, &self.key_pem), (cert, &self.cert_pem)] {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, pem).expect("writing PEM");
            std::fs::rename(&tmp, path).expect("renaming PEM into place");
        }
    }
}

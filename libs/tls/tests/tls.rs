//! Server and client TLS over loopback with certificates made by the test:
//! what loads, what is refused at start and why, who a client certificate
//! says the peer is, and a certificate replaced on disk.

use std::path::Path;
use std::time::Duration;

use magnetar_testkit::tls::{TestCa, Validity};
use magnetar_tls::{
    accept_tls, server_name, ClientTlsConfig, ServerTls, ServerTlsConfig, TlsError,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

fn dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

fn server_config(cert: &Path, key: &Path) -> ServerTlsConfig {
    let mut c = ServerTlsConfig::new(cert, key);
    c.refresh = Duration::from_millis(50);
    c
}

/// Starts an echo server that first writes the client's certificate CN
/// (or "-") and a newline. Returns its address and the stop switch.
async fn echo_server(tls: &ServerTls) -> (std::net::SocketAddr, watch::Sender<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stop_rx) = watch::channel(false);
    let mut rx = accept_tls("test", listener, tls.acceptor(&[]).unwrap(), stop_rx);
    tokio::spawn(async move {
        while let Some((mut s, _)) = rx.recv().await {
            tokio::spawn(async move {
                let cn = magnetar_tls::peer_common_name(s.get_ref().1.peer_certificates());
                let line = format!("{}\n", cn.unwrap_or_else(|| "-".into()));
                let _ = s.write_all(line.as_bytes()).await;
                let _ = s.flush().await;
                let mut buf = [0u8; 64];
                let _ = s.read(&mut buf).await;
            });
        }
    });
    (addr, stop)
}

/// Connects and returns (the server's leaf certificate, the line it wrote).
async fn connect(
    addr: std::net::SocketAddr,
    client: &ClientTlsConfig,
    host: &str,
) -> std::io::Result<(Vec<u8>, String)> {
    let connector = client.connector(&[]).expect("client config");
    let tcp = TcpStream::connect(addr).await?;
    let mut s = connector
        .connect(server_name(host).expect("server name"), tcp)
        .await?;
    let leaf = s
        .get_ref()
        .1
        .peer_certificates()
        .expect("server certificate")[0]
        .to_vec();
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while s.read(&mut b).await? == 1 && b[0] != b'\n' {
        line.push(b[0]);
    }
    s.write_all(b"bye").await?;
    Ok((leaf, String::from_utf8_lossy(&line).into_owned()))
}

#[tokio::test]
async fn trusted_client_connects_with_hostname_checked_and_others_are_refused() {
    let d = dir();
    let ca = TestCa::new("test-ca");
    let ca_file = ca.write(&d.path().join("ca.pem"));
    let (cert, key) = ca.server("broker").write(d.path(), "server");
    let tls = ServerTls::load(&server_config(&cert, &key)).unwrap();
    assert_eq!(tls.current().subject_cn.as_deref(), Some("broker"));
    let (addr, _stop) = echo_server(&tls).await;

    let trusting = ClientTlsConfig::trusting(&ca_file);
    let (_, line) = connect(addr, &trusting, "localhost").await.unwrap();
    assert_eq!(line, "-", "no client certificate was presented");
    connect(addr, &trusting, "127.0.0.1").await.unwrap();
    // The certificate names localhost and 127.0.0.1, not this host.
    let wrong_host = connect(addr, &trusting, "broker.example.com").await;
    assert!(wrong_host.is_err(), "hostname verification is on");

    let other = TestCa::new("other-ca");
    let other_file = other.write(&d.path().join("other.pem"));
    let refused = connect(addr, &ClientTlsConfig::trusting(other_file), "localhost").await;
    let e = refused.expect_err("a client trusting another CA is refused");
    assert!(e.to_string().contains("certificate"), "{e}");
}

#[tokio::test]
async fn client_certificate_names_the_peer_and_can_be_required() {
    let d = dir();
    let ca = TestCa::new("test-ca");
    let ca_file = ca.write(&d.path().join("ca.pem"));
    let (cert, key) = ca.server("broker").write(d.path(), "server");
    let (ccert, ckey) = ca.client("app-1").write(d.path(), "client");
    let mut cfg = server_config(&cert, &key);
    cfg.client_ca_file = Some(ca_file.clone());
    let optional = ServerTls::load(&cfg).unwrap();
    let (addr, _s1) = echo_server(&optional).await;
    let with_cert = ClientTlsConfig {
        trust_file: Some(ca_file.clone()),
        cert_file: Some(ccert.clone()),
        key_file: Some(ckey.clone()),
    };
    assert_eq!(
        connect(addr, &with_cert, "localhost").await.unwrap().1,
        "app-1"
    );
    let without = ClientTlsConfig::trusting(&ca_file);
    assert_eq!(connect(addr, &without, "localhost").await.unwrap().1, "-");

    cfg.require_client_cert = true;
    let required = ServerTls::load(&cfg).unwrap();
    let (addr, _s2) = echo_server(&required).await;
    assert_eq!(
        connect(addr, &with_cert, "localhost").await.unwrap().1,
        "app-1"
    );
    // TLS 1.3: the client learns of the refusal on its first read.
    assert!(connect(addr, &without, "localhost").await.is_err());

    // A client certificate from another CA is refused even when optional.
    let other = TestCa::new("other-ca");
    let (ocert, okey) = other.client("intruder").write(d.path(), "intruder");
    let (addr, _s3) = echo_server(&optional).await;
    let intruder = ClientTlsConfig {
        trust_file: Some(ca_file),
        cert_file: Some(ocert),
        key_file: Some(okey),
    };
    assert!(connect(addr, &intruder, "localhost").await.is_err());
}

#[tokio::test]
async fn replaced_certificate_is_served_to_new_connections() {
    let d = dir();
    let ca = TestCa::new("test-ca");
    let ca_file = ca.write(&d.path().join("ca.pem"));
    let first = ca.server("first");
    let (cert, key) = first.write(d.path(), "server");
    let tls = ServerTls::load(&server_config(&cert, &key)).unwrap();
    let (addr, _stop) = echo_server(&tls).await;
    let client = ClientTlsConfig::trusting(&ca_file);
    let (leaf1, _) = connect(addr, &client, "localhost").await.unwrap();

    // A half-done rotation (new certificate, old key) is not served.
    let second = ca.server("second");
    let half = magnetar_testkit::tls::Issued {
        cert_pem: second.cert_pem.clone(),
        key_pem: first.key_pem.clone(),
    };
    half.write_to(&cert, &key);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (leaf, _) = connect(addr, &client, "localhost").await.unwrap();
    assert_eq!(leaf, leaf1, "a certificate without its key is not served");
    assert_eq!(tls.current().subject_cn.as_deref(), Some("first"));

    second.write_to(&cert, &key);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (leaf2, _) = connect(addr, &client, "localhost").await.unwrap();
    assert_ne!(leaf1, leaf2);
    assert_eq!(tls.current().subject_cn.as_deref(), Some("second"));
}

#[test]
fn misconfigurations_are_refused_with_the_reason() {
    let d = dir();
    let ca = TestCa::new("test-ca");
    let (cert, key) = ca.server("broker").write(d.path(), "server");
    let (_, other_key) = ca.server("other").write(d.path(), "other");
    let load = |c: &Path, k: &Path| ServerTls::load(&ServerTlsConfig::new(c, k)).unwrap_err();

    let e = load(&d.path().join("missing.pem"), &key);
    assert!(matches!(e, TlsError::Read { .. }), "{e}");
    assert!(e.to_string().contains("does not exist"), "{e}");

    let e = load(&cert, &other_key);
    assert!(matches!(e, TlsError::KeyMismatch { .. }), "{e}");

    let (old, old_key) = ca
        .issue("old", &["localhost"], Validity::Expired)
        .write(d.path(), "old");
    let e = load(&old, &old_key);
    assert!(matches!(e, TlsError::Expired { .. }), "{e}");
    assert!(e.to_string().contains("2021-01-01T00:00:00Z"), "{e}");

    // The key where the certificate should be, and the other way round.
    let e = load(&key, &key);
    assert!(matches!(e, TlsError::NoCertificate { .. }), "{e}");
    let e = load(&cert, &cert);
    assert!(matches!(e, TlsError::NoKey { .. }), "{e}");

    let garbage = d.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let e = load(&garbage, &key);
    assert!(matches!(e, TlsError::BadPem { .. }), "{e}");

    let mut cfg = ServerTlsConfig::new(&cert, &key);
    cfg.client_ca_file = Some(d.path().join("no-ca.pem"));
    let e = ServerTls::load(&cfg).unwrap_err();
    assert!(e.to_string().contains("client CA file"), "{e}");

    let half = ClientTlsConfig {
        cert_file: Some(cert.clone()),
        ..ClientTlsConfig::trusting(&cert)
    };
    assert!(matches!(half.config(&[]), Err(TlsError::HalfIdentity)));
}

#[test]
fn certificate_fields() {
    let ca = TestCa::new("test-ca");
    let issued = ca.issue("role-x", &[], Validity::Expired);
    let d = dir();
    let (cert, _) = issued.write(d.path(), "c");
    let certs = magnetar_tls::load_certs("certificate file", &cert).unwrap();
    let info = magnetar_tls::x509::CertInfo::parse(&certs[0]).unwrap();
    assert_eq!(info.subject_cn.as_deref(), Some("role-x"));
    assert_eq!(info.not_before, 1_577_836_800);
    assert_eq!(info.not_after, 1_609_459_200);
    assert!(info.is_expired_at(magnetar_tls::now_secs()));
    assert_eq!(
        magnetar_tls::peer_common_name(Some(&certs)),
        Some("role-x".to_string())
    );
}

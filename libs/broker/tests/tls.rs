//! TLS on the broker (issue 32) with the official Python client, requests
//! and websocket-client: `pulsar+ssl` and HTTPS/WSS beside the plain
//! listeners and instead of them, a certificate replaced on disk, TLS
//! client-certificate authentication, and the errors that stop a start.
//! Certificates are made by the test (rcgen) in a temporary directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use magnetar_testkit::tls::{TestCa, Validity};
use magnetar_testkit::{bin_path, free_port, python, PulsarService, Standalone, Urls};

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/tls.py")
}

/// Certificates for one test: the broker's CA (and its certificate), and
/// another CA no one trusts.
struct Pki {
    dir: tempfile::TempDir,
    ca: TestCa,
    ca_file: PathBuf,
    other_ca_file: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = TestCa::new("magnetar-test-ca");
        let ca_file = ca.write(&dir.path().join("ca.pem"));
        let other_ca_file = TestCa::new("other-ca").write(&dir.path().join("other-ca.pem"));
        let (cert, key) = ca.server("broker-1").write(dir.path(), "broker");
        Pki {
            dir,
            ca,
            ca_file,
            other_ca_file,
            cert,
            key,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Runs one case of tls.py against `urls`; panics with its output on failure.
fn run(urls: &Urls, pki: &Pki, case: &[&str], env: &[(&str, &str)]) -> String {
    let log = tempfile::NamedTempFile::new().expect("temp file");
    let mut cmd = Command::new(python());
    cmd.arg(script())
        .args(case)
        .env("PULSAR_URL", urls.service_url())
        .env("PULSAR_WEB", urls.web_url())
        .env("TLS_CA", &pki.ca_file)
        .env("TLS_OTHER_CA", &pki.other_ca_file)
        .stdout(log.reopen().expect("log"))
        .stderr(log.reopen().expect("log"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn python");
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait python") {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = std::fs::read_to_string(log.path()).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()) && out.contains(&format!("ok {} ", case[0])),
        "tls.py {case:?} failed ({status:?}):\n{out}"
    );
    out
}

/// Standalone with TLS listeners on free ports; `extra` flags added.
struct TlsStandalone {
    s: Standalone,
    tls: u16,
    https: u16,
}

impl TlsStandalone {
    fn start(pki: &Pki, extra: &[&str]) -> TlsStandalone {
        let (tls, https) = (free_port(), free_port());
        let mut args = vec![
            "--tls-cert-file".to_string(),
            s(&pki.cert),
            "--tls-key-file".into(),
            s(&pki.key),
            "--tls-listen".into(),
            format!("127.0.0.1:{tls}"),
            "--tls-http".into(),
            format!("127.0.0.1:{https}"),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        TlsStandalone {
            s: Standalone::start_with(&args),
            tls,
            https,
        }
    }

    /// The TLS URLs by host name (the certificate names localhost and 127.0.0.1).
    fn urls(&self) -> Urls {
        Urls {
            service: format!("pulsar+ssl://localhost:{}", self.tls),
            web: format!("https://localhost:{}", self.https),
        }
    }

    /// Waits for /health over HTTPS (the plain listener may be off).
    fn wait_ready(&mut self, pki: &Pki) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = Command::new(python())
                .args([
                    "-c",
                    "import requests,sys; r=requests.get(sys.argv[1]+'/health', verify=sys.argv[2], timeout=2); sys.exit(r.status_code != 200)",
                    &self.urls().web,
                    &s(&pki.ca_file),
                ])
                .output()
                .expect("python");
            if out.status.success() {
                return;
            }
            assert!(
                self.s.process.is_running(),
                "standalone exited:\n{}",
                self.s.process.log_tail(60)
            );
            assert!(
                Instant::now() < deadline,
                "standalone not ready over HTTPS:\n{}\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.s.process.log_tail(60)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pulsar_ssl_https_wss_and_a_rotated_certificate() {
    let pki = Pki::new();
    let mut b = TlsStandalone::start(&pki, &[]);
    // The plain listeners stay on beside the TLS ones.
    b.s.wait_ready(Duration::from_secs(60)).await;
    b.wait_ready(&pki);
    let urls = b.urls();
    run(&urls, &pki, &["produce_consume"], &[]);
    run(&urls, &pki, &["other_ca_refused"], &[]);
    run(&urls, &pki, &["https_admin"], &[]);
    run(&urls, &pki, &["wss"], &[]);
    run(&urls, &pki, &["served_cn", "broker-1"], &[]);

    // Rotation: the new certificate is served to new connections, no restart.
    pki.ca.server("broker-2").write_to(&pki.cert, &pki.key);
    std::thread::sleep(Duration::from_millis(1500));
    run(&urls, &pki, &["served_cn", "broker-2"], &[]);
    run(&urls, &pki, &["produce_consume"], &[]);
    assert!(
        b.s.process
            .log_tail(400)
            .contains("TLS certificate reloaded"),
        "{}",
        b.s.process.log_tail(60)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_only_with_the_plain_listeners_off() {
    let pki = Pki::new();
    let mut b = TlsStandalone::start(
        &pki,
        &[
            "--disable-plain-listen",
            "--disable-plain-http",
            "--tls-trust-certs",
            &s(&pki.ca_file),
        ],
    );
    b.wait_ready(&pki);
    let urls = b.urls();
    run(&urls, &pki, &["produce_consume"], &[]);
    // WebSocket sessions reach the topic through the broker's own client,
    // which now has to use pulsar+ssl too.
    run(&urls, &pki, &["wss"], &[]);
    run(&urls, &pki, &["https_admin"], &[]);
    // The Rust client and tools: pulsar+ssl with the test's CA.
    let url = b.urls().service;
    let ca = s(&pki.ca_file);
    let tls = ["--url", url.as_str(), "--tls-trust-certs", ca.as_str()];
    cli(&[
        &["produce", "cli-tls", "-m", "over-tls", "-n", "3"],
        &tls[..],
    ]
    .concat());
    let out = cli(&[
        &["consume", "cli-tls", "-p", "earliest", "-n", "3"],
        &tls[..],
    ]
    .concat());
    assert_eq!(out.matches("over-tls").count(), 3, "{out}");
    // Trusting another CA, the tool fails and says why.
    let other = s(&pki.other_ca_file);
    let refused = Command::new(bin_path("magnetar"))
        .args([
            "produce",
            "cli-tls",
            "-m",
            "x",
            "--url",
            &url,
            "--tls-trust-certs",
            &other,
        ])
        .output()
        .expect("magnetar produce");
    assert!(!refused.status.success());
    // magnetar admin over HTTPS; not trusting the broker's CA it cannot
    // reach it (exit 3).
    let web = b.urls().web;
    let out = cli(&[
        "admin",
        "--url",
        &web,
        "--tls-trust-certs",
        &ca,
        "tenants",
        "list",
    ]);
    assert!(out.contains("public"), "{out}");
    let untrusted = Command::new(bin_path("magnetar"))
        .args([
            "admin",
            "--url",
            &web,
            "--tls-trust-certs",
            &other,
            "tenants",
            "list",
        ])
        .output()
        .expect("magnetar admin");
    assert_eq!(untrusted.status.code(), Some(3), "{untrusted:?}");
    for plain in [&b.s.broker, &b.s.http] {
        assert!(
            std::net::TcpStream::connect(plain.as_str()).is_err(),
            "plain listener {plain} is open"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn client_certificate_subject_is_the_role_authorization_checks() {
    let pki = Pki::new();
    let secret = pki.path("secret.key");
    let magnetar = bin_path("magnetar");
    let ok = Command::new(&magnetar)
        .args(["tokens", "create-secret-key", "--output", &s(&secret)])
        .status()
        .expect("magnetar tokens");
    assert!(ok.success());
    let token = Command::new(&magnetar)
        .args([
            "tokens",
            "create",
            "--secret-key",
            &s(&secret),
            "--subject",
            "admin",
        ])
        .output()
        .expect("magnetar tokens create");
    let admin_token = String::from_utf8_lossy(&token.stdout).trim().to_string();
    let (cert, key) = pki.ca.client("app-7").write(pki.dir.path(), "app");
    let mut b = TlsStandalone::start(
        &pki,
        &[
            "--auth-secret-key",
            &s(&secret),
            "--superuser-roles",
            "admin",
            "--tls-auth",
            "--tls-trust-certs",
            &s(&pki.ca_file),
        ],
    );
    b.wait_ready(&pki);
    run(
        &b.urls(),
        &pki,
        &["cert_role", &s(&cert), &s(&key), &admin_token],
        &[("TLS_ROLE", "app-7")],
    );
    // The Rust client authenticates with the same certificate (method "tls").
    let url = b.urls().service;
    let (ca, cert, key) = (s(&pki.ca_file), s(&cert), s(&key));
    let tls = [
        "--url",
        url.as_str(),
        "--tls-trust-certs",
        ca.as_str(),
        "--tls-cert-file",
        cert.as_str(),
        "--tls-key-file",
        key.as_str(),
    ];
    cli(&[&["produce", "by-cert", "-m", "from-app-7"], &tls[..]].concat());
    let out = cli(&[&["consume", "by-cert", "-p", "earliest"], &tls[..]].concat());
    assert!(out.contains("from-app-7"), "{out}");
    // A role without grants is refused.
    let (c2, k2) = pki.ca.client("stranger").write(pki.dir.path(), "stranger");
    let refused = Command::new(bin_path("magnetar"))
        .args([
            "produce",
            "by-cert",
            "-m",
            "x",
            "--url",
            &url,
            "--tls-trust-certs",
            &ca,
        ])
        .args(["--tls-cert-file", &s(&c2), "--tls-key-file", &s(&k2)])
        .output()
        .expect("magnetar produce");
    assert!(!refused.status.success(), "a role without grants produced");
}

#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls_refuses_clients_without_a_certificate() {
    let pki = Pki::new();
    let (cert, key) = pki.ca.client("any-app").write(pki.dir.path(), "app");
    let mut b = TlsStandalone::start(
        &pki,
        &[
            "--tls-require-client-cert",
            "--tls-trust-certs",
            &s(&pki.ca_file),
        ],
    );
    // /health over HTTPS needs a certificate now: wait on the plain port.
    b.s.wait_ready(Duration::from_secs(60)).await;
    run(&b.urls(), &pki, &["require_cert", &s(&cert), &s(&key)], &[]);
}

/// Runs `magnetar ARGS`, which must succeed; its stdout.
fn cli(args: &[&str]) -> String {
    let out = Command::new(bin_path("magnetar"))
        .args(args)
        .output()
        .expect("run magnetar");
    assert!(
        out.status.success(),
        "magnetar {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `magnetar standalone` with `flags` must exit at once with `want` in its
/// output.
fn refused_at_start(pki: &Pki, flags: &[&str], want: &str) {
    let data = pki.path(&format!("data-{}", free_port()));
    let out = Command::new(bin_path("magnetar"))
        .args([
            "standalone",
            "--data-dir",
            &s(&data),
            "--meta-listen",
            &format!("127.0.0.1:{}", free_port()),
            "--bookie-listen",
            &format!("127.0.0.1:{}", free_port()),
            "--broker-listen",
            &format!("127.0.0.1:{}", free_port()),
            "--http",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .args(flags)
        .output()
        .expect("run magnetar");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "started with {flags:?}:\n{text}");
    assert!(
        text.contains(want),
        "{flags:?}: wanted {want:?} in:\n{text}"
    );
}

#[test]
fn misconfigured_tls_stops_the_start_with_the_reason() {
    let pki = Pki::new();
    let missing = pki.path("missing.pem");
    let (_, other_key) = pki.ca.server("other").write(pki.dir.path(), "other");
    let (old, old_key) = pki
        .ca
        .issue("old", &["localhost"], Validity::Expired)
        .write(pki.dir.path(), "old");
    let cert = s(&pki.cert);
    let key = s(&pki.key);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "--tls-cert-file".into(),
                s(&missing),
                "--tls-key-file".into(),
                key.clone(),
            ],
            "does not exist",
        ),
        (
            vec![
                "--tls-cert-file".into(),
                cert.clone(),
                "--tls-key-file".into(),
                s(&other_key),
            ],
            "does not belong to the certificate",
        ),
        (
            vec![
                "--tls-cert-file".into(),
                s(&old),
                "--tls-key-file".into(),
                s(&old_key),
            ],
            "expired at 2021-01-01T00:00:00Z",
        ),
        (
            vec![
                "--tls-cert-file".into(),
                cert.clone(),
                "--tls-key-file".into(),
                key.clone(),
                "--tls-auth".into(),
            ],
            "--tls-auth needs --tls-trust-certs",
        ),
        (vec!["--disable-plain-listen".into()], "needs TLS"),
        (
            vec![
                "--tls-cert-file".into(),
                cert.clone(),
                "--tls-key-file".into(),
                key.clone(),
                "--tls-auth".into(),
                "--tls-trust-certs".into(),
                cert.clone(),
            ],
            "authentication, which is off",
        ),
    ];
    for (flags, want) in &cases {
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        refused_at_start(&pki, &flags, want);
    }
}

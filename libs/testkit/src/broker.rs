//! Brokers for tests: `magnetar standalone` in one process, or
//! `magnetar-broker` processes over a `BookieCluster`; and the official
//! Python client (`pulsar-client` from PyPI) to drive them.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::bookie::BookieCluster;
use crate::http;
use crate::process::{bin_path, free_port, Process};

/// Something that serves the Pulsar protocol and the admin API.
pub trait PulsarService {
    /// `pulsar://127.0.0.1:port`
    fn service_url(&self) -> String;
    /// `http://127.0.0.1:port`
    fn web_url(&self) -> String;
}

/// `magnetar standalone` on free ports with a temporary data dir.
pub struct Standalone {
    pub broker: String,
    pub http: String,
    pub process: Process,
    pub dir: tempfile::TempDir,
}

impl Standalone {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("magnetar-standalone-")
            .tempdir()
            .expect("temp dir");
        let broker = format!("127.0.0.1:{}", free_port());
        let http = format!("127.0.0.1:{}", free_port());
        let mut args: Vec<String> = vec![
            "standalone".into(),
            "--data-dir".into(),
            dir.path().join("data").display().to_string(),
            "--meta-listen".into(),
            format!("127.0.0.1:{}", free_port()),
            "--bookie-listen".into(),
            format!("127.0.0.1:{}", free_port()),
            "--broker-listen".into(),
            broker.clone(),
            "--http".into(),
            http.clone(),
            "--min-free-bytes".into(),
            "0".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut process = Process::new("standalone", bin_path("magnetar"), args, dir.path());
        process.start();
        Standalone {
            broker,
            http,
            process,
            dir,
        }
    }

    /// Waits until the broker answers /health.
    pub async fn wait_ready(&mut self, timeout: Duration) {
        wait_healthy(&self.http, &mut self.process, timeout).await;
    }

    /// SIGKILL and start again on the same ports and data.
    pub async fn restart(&mut self, timeout: Duration) {
        self.process.restart();
        self.wait_ready(timeout).await;
    }
}

impl PulsarService for Standalone {
    fn service_url(&self) -> String {
        format!("pulsar://{}", self.broker)
    }
    fn web_url(&self) -> String {
        format!("http://{}", self.http)
    }
}

async fn wait_healthy(http_addr: &str, process: &mut Process, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok((200, _)) = http::get(http_addr, "/health", Duration::from_millis(500)).await {
            return;
        }
        assert!(
            process.is_running(),
            "{} exited:\n{}",
            process.name,
            process.log_tail(60)
        );
        assert!(
            Instant::now() < deadline,
            "{} not ready:\n{}",
            process.name,
            process.log_tail(60)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One `magnetar-broker` process.
pub struct BrokerProc {
    pub addr: String,
    pub http: String,
    pub process: Process,
}

/// Metadata nodes, bookies and brokers, each its own process.
pub struct BrokerCluster {
    pub storage: BookieCluster,
    pub brokers: Vec<BrokerProc>,
    /// Flags every broker of this cluster gets.
    broker_args: Vec<String>,
}

/// Service URLs given explicitly (e.g. several brokers: `pulsar://a,b`).
pub struct Urls {
    pub service: String,
    pub web: String,
}

impl PulsarService for Urls {
    fn service_url(&self) -> String {
        self.service.clone()
    }
    fn web_url(&self) -> String {
        self.web.clone()
    }
}

impl BrokerCluster {
    /// `meta` metadata nodes, `bookies` bookies, `brokers` brokers writing
    /// with E = Qw = Qa = min(2, bookies).
    pub fn start(meta: usize, bookies: usize, brokers: usize) -> Self {
        Self::start_with(meta, bookies, brokers, &[])
    }

    /// As `start`, every broker (also those added later) with `broker_args`.
    pub fn start_with(meta: usize, bookies: usize, brokers: usize, broker_args: &[&str]) -> Self {
        let storage = BookieCluster::start(meta, bookies);
        let mut c = BrokerCluster {
            storage,
            brokers: Vec::new(),
            broker_args: broker_args.iter().map(|s| s.to_string()).collect(),
        };
        for _ in 0..brokers {
            c.add_broker(&[]);
        }
        c
    }

    /// Every broker in one service URL (`pulsar://a:1,b:2`): clients try the
    /// next one when one is down.
    pub fn all_brokers(&self) -> Urls {
        let hosts: Vec<&str> = self.brokers.iter().map(|b| b.addr.as_str()).collect();
        Urls {
            service: format!("pulsar://{}", hosts.join(",")),
            web: format!("http://{}", self.brokers[0].http),
        }
    }

    /// Every broker but `down` (the web URL of the next one): for a client
    /// that should not wait on a broker known to be dead.
    pub fn all_brokers_but(&self, down: usize) -> Urls {
        let hosts: Vec<&str> = self
            .brokers
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != down)
            .map(|(_, b)| b.addr.as_str())
            .collect();
        let web = &self.brokers[(down + 1) % self.brokers.len()].http;
        Urls {
            service: format!("pulsar://{}", hosts.join(",")),
            web: format!("http://{web}"),
        }
    }

    pub fn add_broker(&mut self, extra: &[&str]) {
        let addr = format!("127.0.0.1:{}", free_port());
        let http = format!("127.0.0.1:{}", free_port());
        self.add_broker_on(addr, http, extra);
    }

    /// A broker on given addresses (`127.0.0.1:port`), e.g. when its flags
    /// must name its own port.
    pub fn add_broker_on(&mut self, addr: String, http: String, extra: &[&str]) {
        let n = self.brokers.len() + 1;
        let quorum = self.storage.bookies.len().min(2).to_string();
        let mut args: Vec<String> = vec![
            "--meta".into(),
            self.storage.meta.endpoints(),
            "--listen".into(),
            addr.clone(),
            "--http".into(),
            http.clone(),
            "--ensemble-size".into(),
            quorum.clone(),
            "--write-quorum".into(),
            quorum.clone(),
            "--ack-quorum".into(),
            quorum,
        ];
        args.extend(self.broker_args.iter().cloned());
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut process = Process::new(
            &format!("broker-{n}"),
            bin_path("magnetar-broker"),
            args,
            self.storage.meta.dir.path(),
        );
        process.start();
        self.brokers.push(BrokerProc {
            addr,
            http,
            process,
        });
    }

    pub async fn wait_ready(&mut self, timeout: Duration) {
        self.storage.wait_ready(timeout).await;
        for b in &mut self.brokers {
            if b.process.pid().is_some() {
                wait_healthy(&b.http, &mut b.process, timeout).await;
            }
        }
    }
}

impl PulsarService for BrokerCluster {
    fn service_url(&self) -> String {
        format!("pulsar://{}", self.brokers[0].addr)
    }
    fn web_url(&self) -> String {
        format!("http://{}", self.brokers[0].http)
    }
}

/// The Python interpreter of the virtualenv that holds the official
/// `pulsar-client` (made by `make python-env`); `MAGNETAR_PYTHON` overrides.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("MAGNETAR_PYTHON") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let p = home.join(".cache/magnetar/venv/bin/python");
    assert!(
        p.exists(),
        "{} not found: run `make python-env` (or `make test`, which does) to install the official pulsar-client",
        p.display()
    );
    p
}

/// Runs a Python script (with the official client) against `svc`; the script
/// gets the service and web URLs as `PULSAR_URL` / `PULSAR_WEB` and `args`.
/// Panics with its output if it fails.
pub fn run_python(
    svc: &dyn PulsarService,
    script: &std::path::Path,
    args: &[&str],
    timeout: Duration,
) -> String {
    // Output goes to a file: a pipe could fill up while we wait.
    let log = tempfile::NamedTempFile::new().expect("temp file");
    let mut child = Command::new(python())
        .arg(script)
        .args(args)
        .env("PULSAR_URL", svc.service_url())
        .env("PULSAR_WEB", svc.web_url())
        .stdout(log.reopen().expect("log handle"))
        .stderr(log.reopen().expect("log handle"))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn python: {e}"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let text = std::fs::read_to_string(log.path()).unwrap_or_default();
    match status {
        Some(s) if s.success() => text,
        Some(s) => panic!("python {} {args:?} failed ({s}):\n{text}", script.display()),
        None => panic!(
            "python {} {args:?} timed out after {timeout:?}:\n{text}",
            script.display()
        ),
    }
}

//! A real S3-protocol server for tiered-storage tests: moto's server mode
//! (installed by `make s3-env`) with SigV4 signature checking on, one bucket
//! and one access key. The server keeps its objects in memory, so a restart
//! (`kill` then `start_again`) brings back the same port, credentials and
//! bucket, empty.

use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::process::{free_port, Process};

/// The Python of the venv `make s3-env` fills; `MAGNETAR_S3_PYTHON` overrides.
pub fn s3_python() -> PathBuf {
    if let Some(p) = std::env::var_os("MAGNETAR_S3_PYTHON") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let p = home.join(".cache/magnetar/moto-venv/bin/python");
    assert!(
        p.exists(),
        "{} not found: run `make s3-env` (or `make test`, which does) to install moto's S3 server",
        p.display()
    );
    p
}

/// One moto S3 server process on loopback, killed when dropped.
pub struct S3Server {
    pub bucket: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub port: u16,
    pub process: Process,
    _dir: tempfile::TempDir,
}

impl S3Server {
    /// Starts the server with `bucket` created and waits until it accepts
    /// connections.
    pub fn start(bucket: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let access_key_id = format!("AKIAMAGNETAR{port:08}");
        let secret_access_key = format!("magnetar-test-secret-{port}");
        let region = "us-east-1".to_string();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/s3_server.py");
        let args = [
            script.display().to_string(),
            port.to_string(),
            bucket.to_string(),
            access_key_id.clone(),
            secret_access_key.clone(),
            region.clone(),
        ];
        let process = Process::new("s3", s3_python(), args.to_vec(), dir.path());
        let mut s = Self {
            bucket: bucket.to_string(),
            region,
            access_key_id,
            secret_access_key,
            port,
            process,
            _dir: dir,
        };
        s.start_again();
        s
    }

    /// `http://127.0.0.1:PORT`, path-style requests.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: every request in flight fails, every object is gone.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts the (killed) server again on the same port with the same
    /// credentials and an empty bucket; waits until it accepts connections.
    pub fn start_again(&mut self) {
        self.process.start();
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr = format!("127.0.0.1:{}", self.port);
        loop {
            if TcpStream::connect(&addr).is_ok() {
                return;
            }
            assert!(
                self.process.is_running(),
                "the S3 server exited:\n{}",
                self.process.log_tail(40)
            );
            assert!(
                Instant::now() < deadline,
                "the S3 server did not listen on {addr} within 60 s:\n{}",
                self.process.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The AWS_* variables a process needs to reach this server.
    pub fn aws_env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", self.access_key_id.as_str()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_access_key.as_str()),
            ("AWS_REGION", self.region.as_str()),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

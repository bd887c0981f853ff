use std::time::{Duration, Instant};

use crate::http;
use crate::meta::MetaCluster;
use crate::process::{bin_path, free_port, Process};

/// One `magnetar-bookie` process.
pub struct BookieProc {
    pub id: String,
    pub addr: String,
    pub http: String,
    pub process: Process,
}

/// A metadata cluster plus bookies registered in it, all on loopback.
pub struct BookieCluster {
    pub meta: MetaCluster,
    pub bookies: Vec<BookieProc>,
    extra_args: Vec<String>,
}

impl BookieCluster {
    /// `meta_nodes` metadata nodes and `bookies` bookies (ids b1, b2, …).
    pub fn start(meta_nodes: usize, bookies: usize) -> Self {
        Self::start_with(meta_nodes, bookies, &[])
    }

    pub fn start_with(meta_nodes: usize, bookies: usize, extra_bookie_args: &[&str]) -> Self {
        let mut c = Self {
            meta: MetaCluster::start(meta_nodes),
            bookies: Vec::new(),
            extra_args: extra_bookie_args.iter().map(|s| s.to_string()).collect(),
        };
        for _ in 0..bookies {
            c.add_bookie();
        }
        c
    }

    /// Starts one more bookie; returns its id.
    pub fn add_bookie(&mut self) -> String {
        self.add_bookie_with(&[])
    }

    /// Starts one more bookie with extra flags of its own; returns its id.
    pub fn add_bookie_with(&mut self, extra: &[&str]) -> String {
        let n = self.bookies.len() + 1;
        let id = format!("b{n}");
        let addr = format!("127.0.0.1:{}", free_port());
        let http = format!("127.0.0.1:{}", free_port());
        let data = self.meta.dir.path().join(format!("bookie-{id}"));
        let mut args: Vec<String> = [
            "--id",
            &id,
            "--listen",
            &addr,
            "--meta",
            &self.meta.endpoints(),
            "--journal-dir",
            &data.join("journal").display().to_string(),
            "--ledger-dir",
            &data.join("ledgers").display().to_string(),
            "--http",
            &http,
            "--min-free-bytes",
            "0",
            "--lease-ttl-seconds",
            "3",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for flag_args in [
            self.extra_args.clone(),
            extra.iter().map(|s| s.to_string()).collect(),
        ] {
            override_flags(&mut args, &flag_args);
        }
        let mut process = Process::new(
            &format!("bookie-{id}"),
            bin_path("magnetar-bookie"),
            args,
            self.meta.dir.path(),
        );
        process.start();
        self.bookies.push(BookieProc {
            id: id.clone(),
            addr,
            http,
            process,
        });
        id
    }

    pub fn bookie(&mut self, id: &str) -> &mut BookieProc {
        self.bookies
            .iter_mut()
            .find(|b| b.id == id)
            .unwrap_or_else(|| panic!("no bookie {id}"))
    }

    /// The bookie listening on `addr` (as ledger metadata names bookies).
    pub fn bookie_at(&mut self, addr: &str) -> &mut BookieProc {
        self.bookies
            .iter_mut()
            .find(|b| b.addr == addr)
            .unwrap_or_else(|| panic!("no bookie at {addr}"))
    }

    /// Waits until every running bookie answers /health.
    pub async fn wait_ready(&self, timeout: Duration) {
        self.meta.wait_for_leader(timeout).await;
        let deadline = Instant::now() + timeout;
        for b in &self.bookies {
            loop {
                if let Ok((200, _)) =
                    http::get(&b.http, "/health", Duration::from_millis(500)).await
                {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "bookie {} not ready:\n{}",
                    b.id,
                    b.process.log_tail(30)
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    pub async fn metrics(&self, id: &str) -> String {
        let b = self.bookies.iter().find(|b| b.id == id).expect("bookie");
        http::get(&b.http, "/metrics", Duration::from_secs(2))
            .await
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    /// Every bookie's /metrics, in bookie order.
    pub async fn metrics_of_all(&self) -> Vec<String> {
        let mut texts = Vec::with_capacity(self.bookies.len());
        for b in &self.bookies {
            texts.push(self.metrics(&b.id).await);
        }
        texts
    }
}

/// Appends `extra` (`--flag value` pairs) to `args`, dropping any earlier value
/// of the same flag so that the later one wins.
fn override_flags(args: &mut Vec<String>, extra: &[String]) {
    for pair in extra.chunks(2) {
        if let Some(i) = args.iter().position(|a| *a == pair[0]) {
            args.drain(i..(i + 2).min(args.len()));
        }
        args.extend(pair.iter().cloned());
    }
}

use std::time::{Duration, Instant};

use crate::http;
use crate::process::{bin_path, free_port, Process};

/// One `magnetar-meta` process of a `MetaCluster`.
pub struct MetaNodeProc {
    pub id: u64,
    /// gRPC address (clients and peers).
    pub addr: String,
    /// /metrics and /health address.
    pub http: String,
    pub process: Process,
}

/// A cluster of `magnetar-meta` processes on loopback, each with its own data dir
/// (kept across restarts) under one temporary directory.
pub struct MetaCluster {
    pub nodes: Vec<MetaNodeProc>,
    pub dir: tempfile::TempDir,
}

impl MetaCluster {
    /// Starts `n` voters that bootstrap together.
    pub fn start(n: usize) -> Self {
        Self::start_with(n, &[])
    }

    /// Like `start`, with extra flags for every node (e.g. `--snapshot-every 1000`).
    pub fn start_with(n: usize, extra_args: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("magnetar-meta-")
            .tempdir()
            .expect("temp dir");
        let bin = bin_path("magnetar-meta");
        let ids: Vec<u64> = (1..=n as u64).collect();
        let addrs: Vec<String> = ids
            .iter()
            .map(|_| format!("127.0.0.1:{}", free_port()))
            .collect();
        let peers = ids
            .iter()
            .zip(&addrs)
            .map(|(id, a)| format!("{id}={a}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes = Vec::new();
        for (id, addr) in ids.iter().zip(&addrs) {
            let http = format!("127.0.0.1:{}", free_port());
            let data = dir.path().join(format!("meta-{id}"));
            let mut args: Vec<String> = vec![
                "--id".into(),
                id.to_string(),
                "--listen".into(),
                addr.clone(),
                "--peers".into(),
                peers.clone(),
                "--data-dir".into(),
                data.display().to_string(),
                "--http".into(),
                http.clone(),
            ];
            args.extend(extra_args.iter().map(|s| s.to_string()));
            let mut process = Process::new(&format!("meta-{id}"), bin.clone(), args, dir.path());
            process.start();
            nodes.push(MetaNodeProc {
                id: *id,
                addr: addr.clone(),
                http,
                process,
            });
        }
        Self { nodes, dir }
    }

    /// Starts one more node that waits to be added (`--join`). Its settings go
    /// through a TOML file and the environment rather than flags, so the layered
    /// configuration is exercised by a real process.
    pub fn start_joining_node(&mut self, id: u64) -> &mut MetaNodeProc {
        let addr = format!("127.0.0.1:{}", free_port());
        let http = format!("127.0.0.1:{}", free_port());
        let config = self.dir.path().join(format!("meta-{id}.toml"));
        let toml = format!("id = {id}\nlisten = \"{addr}\"\njoin = true\nhttp = \"{http}\"\n",);
        std::fs::write(&config, toml).expect("write node config");
        let data = self.dir.path().join(format!("meta-{id}"));
        let args = vec!["--config".to_string(), config.display().to_string()];
        let mut process = Process::new(
            &format!("meta-{id}"),
            bin_path("magnetar-meta"),
            args,
            self.dir.path(),
        )
        .env("MAGNETAR_META_DATA_DIR", &data.display().to_string());
        process.start();
        self.nodes.push(MetaNodeProc {
            id,
            addr,
            http,
            process,
        });
        self.nodes.last_mut().expect("just pushed")
    }

    /// Comma-separated gRPC addresses, as `--meta` takes them.
    pub fn endpoints(&self) -> String {
        self.addrs().join(",")
    }

    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr.clone()).collect()
    }

    pub fn node(&mut self, id: u64) -> &mut MetaNodeProc {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("no meta node {id}"))
    }

    pub fn kill(&mut self, id: u64) {
        self.node(id).process.kill();
    }

    pub fn start_node(&mut self, id: u64) {
        self.node(id).process.start();
    }

    pub fn restart(&mut self, id: u64) {
        self.node(id).process.restart();
    }

    pub fn pause(&mut self, id: u64) {
        self.node(id).process.pause();
    }

    pub fn resume(&mut self, id: u64) {
        self.node(id).process.resume();
    }

    /// The node's /health JSON, if it answers.
    pub async fn health(&self, id: u64) -> Option<(u16, String)> {
        let n = self.nodes.iter().find(|n| n.id == id)?;
        http::get(&n.http, "/health", Duration::from_millis(500))
            .await
            .ok()
    }

    pub async fn metrics(&self, id: u64) -> String {
        let n = self.nodes.iter().find(|n| n.id == id).expect("node");
        http::get(&n.http, "/metrics", Duration::from_secs(2))
            .await
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    /// Waits until some node reports itself leader; returns its id.
    pub async fn wait_for_leader(&self, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            for n in &self.nodes {
                if let Some((200, body)) = self.health(n.id).await {
                    let leader = json_u64(&body, "leader");
                    if leader == Some(n.id) {
                        return n.id;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "no leader elected within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until every node answers and names the same leader, which
    /// names itself; returns its id. `wait_for_leader` returns as soon as the
    /// leader knows, and a node that has not heard from it yet reports leader
    /// 0 to whoever asks it first (a CLI that asks any node, say).
    pub async fn wait_for_leader_known_to_all(&self, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            let mut named = Vec::new();
            for n in &self.nodes {
                let leader = match self.health(n.id).await {
                    Some((_, body)) => json_u64(&body, "leader").unwrap_or(0),
                    None => 0,
                };
                named.push(leader);
            }
            if let Some(&leader) = named.first() {
                let agreed = leader != 0 && named.iter().all(|l| *l == leader);
                if agreed && self.nodes.iter().any(|n| n.id == leader) {
                    return leader;
                }
            }
            assert!(
                Instant::now() < deadline,
                "nodes did not agree on a leader within {timeout:?}: {named:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the node has applied at least `index` log entries.
    pub async fn wait_applied(&self, id: u64, index: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((_, body)) = self.health(id).await {
                if json_u64(&body, "applied_index").unwrap_or(0) >= index {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "node {id} did not apply index {index} within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Reads `"key":123` from a flat JSON object (enough for /health).
fn json_u64(body: &str, key: &str) -> Option<u64> {
    let pat = format!("\"{key}\":");
    let rest = &body[body.find(&pat)? + pat.len()..];
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

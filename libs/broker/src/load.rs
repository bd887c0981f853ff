//! What a broker reports about its load, and how it measures its process.
//!
//! Every broker keeps `/loadbalance/brokers/{broker id}` under its session
//! lease: the key says the broker is alive and available, its value is the
//! latest `LoadReport`. Placement and the balancer read nothing else.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::placement::BundleLoad;

pub const BROKERS_PREFIX: &str = "/loadbalance/brokers/";

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LoadReport {
    pub broker_id: String,
    pub native_url: String,
    pub http_url: String,
    /// Advertised listener name → `pulsar://` URL.
    pub listeners: BTreeMap<String, String>,
    /// Advertised listener name → `pulsar+ssl://` URL.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub listeners_tls: BTreeMap<String, String>,
    /// TLS URLs (`pulsar+ssl://`, `https://`), when TLS is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub native_url_tls: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_url_tls: Option<String>,
    pub cluster: String,
    /// Milliseconds since the epoch.
    pub timestamp: u64,
    /// CPU used by this process, percent of all cores.
    pub cpu_pct: f64,
    pub memory_mb: f64,
    pub memory_limit_mb: f64,
    pub msg_rate_in: f64,
    pub msg_rate_out: f64,
    pub msg_throughput_in: f64,
    pub msg_throughput_out: f64,
    pub num_topics: u64,
    pub num_bundles: u64,
    pub num_producers: u64,
    pub num_consumers: u64,
    /// Per owned bundle, keyed `tenant/namespace/range`.
    pub bundles: BTreeMap<String, BundleLoad>,
}

impl LoadReport {
    /// The highest of the resource usages placement cares about.
    pub fn usage_pct(&self) -> f64 {
        let mem = if self.memory_limit_mb > 0.0 {
            100.0 * self.memory_mb / self.memory_limit_mb
        } else {
            0.0
        };
        self.cpu_pct.max(mem)
    }
}

/// Samples this process's CPU time and memory from /proc (zeros elsewhere).
pub struct ProcessSampler {
    last: Option<(Instant, f64)>,
    cores: f64,
}

impl Default for ProcessSampler {
    fn default() -> Self {
        ProcessSampler {
            last: None,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()) as f64,
        }
    }
}

/// Clock ticks per second of /proc's CPU times (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

impl ProcessSampler {
    /// (CPU percent of all cores since the last call, RSS MiB, limit MiB).
    pub fn sample(&mut self) -> (f64, f64, f64) {
        let now = Instant::now();
        let cpu_seconds = cpu_seconds().unwrap_or(0.0);
        let cpu = match self.last.replace((now, cpu_seconds)) {
            Some((at, before)) => {
                let wall = now.duration_since(at).as_secs_f64();
                if wall > 0.0 {
                    (100.0 * (cpu_seconds - before) / wall / self.cores).clamp(0.0, 100.0)
                } else {
                    0.0
                }
            }
            None => 0.0,
        };
        (
            cpu,
            rss_mb().unwrap_or(0.0),
            memory_limit_mb().unwrap_or(0.0),
        )
    }
}

fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 here.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SECOND)
}

fn rss_mb() -> Option<f64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: f64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096.0 / (1024.0 * 1024.0))
}

/// The container's memory limit (cgroup v2) or else the machine's memory.
fn memory_limit_mb() -> Option<f64> {
    if let Ok(s) = std::fs::read_to_string("/sys/fs/cgroup/memory.max") {
        if let Ok(bytes) = s.trim().parse::<f64>() {
            return Some(bytes / (1024.0 * 1024.0));
        }
    }
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampler_reads_this_process() {
        let mut s = ProcessSampler::default();
        s.sample();
        // Burn a little CPU so the second sample sees some.
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let (cpu, rss, limit) = s.sample();
        if cfg!(target_os = "linux") {
            assert!(rss > 1.0, "rss {rss}");
            assert!(limit > rss, "limit {limit} rss {rss}");
            assert!((0.0..=100.0).contains(&cpu));
        }
    }

    #[test]
    fn usage_is_the_highest_resource() {
        let r = LoadReport {
            cpu_pct: 20.0,
            memory_mb: 900.0,
            memory_limit_mb: 1000.0,
            ..Default::default()
        };
        assert!((r.usage_pct() - 90.0).abs() < 1e-9);
    }
}

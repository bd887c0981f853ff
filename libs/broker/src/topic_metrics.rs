//! Per-topic Prometheus metrics with Pulsar's names (`pulsar_rate_in`,
//! `pulsar_msg_backlog`, `pulsar_subscription_back_log`,
//! `pulsar_storage_write_latency_*` …), rendered at scrape time from the
//! topics' own counters.
//!
//! Cardinality is bounded: past `max_topics` loaded topics the series are
//! summed per namespace (the `topic` label disappears), as Pulsar does with
//! topic-level metrics turned off, and `magnetar_topic_metrics_aggregated`
//! says so. Subscription series are per topic and follow the same rule.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::service::BrokerService;

/// Upper bounds (ms) of the write-latency buckets, Pulsar's.
const LATENCY_BUCKETS_MS: [f64; 9] = [0.5, 1.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 1000.0];

/// Time from a message's arrival to its storage on an ack quorum.
#[derive(Default)]
pub struct LatencyHistogram {
    /// One counter per bucket, plus the overflow bucket.
    buckets: [AtomicU64; LATENCY_BUCKETS_MS.len() + 1],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl LatencyHistogram {
    pub fn record(&self, d: Duration) {
        let ms = d.as_secs_f64() * 1000.0;
        let i = LATENCY_BUCKETS_MS
            .iter()
            .position(|b| ms <= *b)
            .unwrap_or(LATENCY_BUCKETS_MS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn snapshot(&self) -> LatencySnapshot {
        let mut s = LatencySnapshot::default();
        for (i, b) in self.buckets.iter().enumerate() {
            s.buckets[i] = b.load(Ordering::Relaxed);
        }
        s.count = self.count.load(Ordering::Relaxed);
        s.sum_ms = self.sum_micros.load(Ordering::Relaxed) as f64 / 1000.0;
        s
    }
}

#[derive(Clone, Copy, Default)]
struct LatencySnapshot {
    buckets: [u64; LATENCY_BUCKETS_MS.len() + 1],
    count: u64,
    sum_ms: f64,
}

impl LatencySnapshot {
    fn add(&mut self, o: &LatencySnapshot) {
        for (a, b) in self.buckets.iter_mut().zip(o.buckets.iter()) {
            *a += b;
        }
        self.count += o.count;
        self.sum_ms += o.sum_ms;
    }
}

/// One topic's (or one namespace's, when aggregated) figures.
#[derive(Default)]
struct Row {
    values: BTreeMap<&'static str, f64>,
    latency: LatencySnapshot,
    /// Subscription → backlog (messages).
    sub_backlog: BTreeMap<String, f64>,
}

impl Row {
    fn add(&mut self, name: &'static str, v: f64) {
        *self.values.entry(name).or_default() += v;
    }
}

/// Counters (ever-growing) among the values; the rest are gauges.
fn kind_of(name: &str) -> &'static str {
    if name.ends_with("_total") {
        "counter"
    } else {
        "gauge"
    }
}

/// A label value as the text format wants it.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Writes every loaded topic's series to `out` (Prometheus text format).
pub async fn render(svc: &BrokerService, max_topics: usize, out: &mut String) {
    let cluster = escape(&svc.cfg().cluster);
    let topics = svc.loaded_topics();
    let aggregate = topics.len() > max_topics;
    // Label set → figures; BTreeMap keeps the output stable.
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for t in topics {
        let s = t.stats().await;
        let ns = escape(&t.name.namespace.to_string());
        let labels = if aggregate {
            format!("cluster=\"{cluster}\",namespace=\"{ns}\"")
        } else {
            let topic = escape(&t.name.to_string());
            format!("cluster=\"{cluster}\",namespace=\"{ns}\",topic=\"{topic}\"")
        };
        let row = rows.entry(labels).or_default();
        let backlog: u64 = s.subscriptions.values().map(|x| x.msg_backlog).sum();
        let consumers: usize = s.subscriptions.values().map(|x| x.consumers.len()).sum();
        row.add("pulsar_rate_in", s.msg_rate_in);
        row.add("pulsar_rate_out", s.msg_rate_out);
        row.add("pulsar_throughput_in", s.msg_throughput_in);
        row.add("pulsar_throughput_out", s.msg_throughput_out);
        row.add("pulsar_in_messages_total", s.msg_in_counter as f64);
        row.add("pulsar_in_bytes_total", s.bytes_in_counter as f64);
        row.add("pulsar_out_messages_total", s.msg_out_counter as f64);
        row.add("pulsar_out_bytes_total", s.bytes_out_counter as f64);
        row.add("pulsar_storage_size", s.storage_size as f64);
        row.add("pulsar_msg_backlog", backlog as f64);
        row.add("pulsar_storage_backlog_size", s.backlog_size as f64);
        row.add("pulsar_producers_count", s.publishers.len() as f64);
        row.add("pulsar_subscriptions_count", s.subscriptions.len() as f64);
        row.add("pulsar_consumers_count", consumers as f64);
        row.latency.add(&t.write_latency().snapshot());
        if !aggregate {
            for (name, sub) in &s.subscriptions {
                row.sub_backlog.insert(name.clone(), sub.msg_backlog as f64);
            }
        }
    }
    let _ = writeln!(out, "# TYPE magnetar_topic_metrics_aggregated gauge");
    let _ = writeln!(
        out,
        "magnetar_topic_metrics_aggregated {}",
        u8::from(aggregate)
    );
    let names: std::collections::BTreeSet<&'static str> = rows
        .values()
        .flat_map(|r| r.values.keys().copied())
        .collect();
    for name in names {
        let _ = writeln!(out, "# TYPE {name} {}", kind_of(name));
        for (labels, row) in &rows {
            if let Some(v) = row.values.get(name) {
                let _ = writeln!(out, "{name}{{{labels}}} {v}");
            }
        }
    }
    if rows.values().any(|r| !r.sub_backlog.is_empty()) {
        let _ = writeln!(out, "# TYPE pulsar_subscription_back_log gauge");
        for (labels, row) in &rows {
            for (sub, v) in &row.sub_backlog {
                let sub = escape(sub);
                let _ = writeln!(
                    out,
                    "pulsar_subscription_back_log{{{labels},subscription=\"{sub}\"}} {v}"
                );
            }
        }
    }
    if rows.is_empty() {
        return;
    }
    // Pulsar's shape: one gauge per bucket, then _count and _sum (ms).
    let base = "pulsar_storage_write_latency";
    let mut bucket_names: Vec<String> = LATENCY_BUCKETS_MS
        .iter()
        .map(|b| format!("{base}_le_{}", b.to_string().replace('.', "_")))
        .collect();
    bucket_names.push(format!("{base}_le_overflow"));
    for (i, bucket) in bucket_names.iter().enumerate() {
        let _ = writeln!(out, "# TYPE {bucket} gauge");
        for (labels, row) in &rows {
            let _ = writeln!(out, "{bucket}{{{labels}}} {}", row.latency.buckets[i]);
        }
    }
    let _ = writeln!(out, "# TYPE {base}_count gauge");
    for (labels, row) in &rows {
        let _ = writeln!(out, "{base}_count{{{labels}}} {}", row.latency.count);
    }
    let _ = writeln!(out, "# TYPE {base}_sum gauge");
    for (labels, row) in &rows {
        let _ = writeln!(out, "{base}_sum{{{labels}}} {}", row.latency.sum_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_lands_in_its_bucket() {
        let h = LatencyHistogram::default();
        h.record(Duration::from_micros(300));
        h.record(Duration::from_millis(7));
        h.record(Duration::from_secs(3));
        let s = h.snapshot();
        assert_eq!(s.buckets[0], 1); // <= 0.5 ms
        assert_eq!(s.buckets[3], 1); // <= 10 ms
        assert_eq!(s.buckets[LATENCY_BUCKETS_MS.len()], 1); // overflow
        assert_eq!(s.count, 3);
        assert!((s.sum_ms - 3007.3).abs() < 0.01);
    }
}

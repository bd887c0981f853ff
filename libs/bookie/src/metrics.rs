//! Prometheus metrics of a bookie.

use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{Gauge, Histogram, HistogramOpts, IntCounter, IntGauge, Registry};

use crate::bookie::AddTimings;

pub struct BookieMetrics {
    pub adds: IntCounter,
    pub add_bytes: IntCounter,
    pub add_errors: IntCounter,
    pub add_latency: Histogram,
    pub add_journal_latency: Histogram,
    pub add_store_latency: Histogram,
    pub add_queue_latency: Histogram,
    pub add_resume_latency: Histogram,
    pub reads: IntCounter,
    pub read_bytes: IntCounter,
    pub read_latency: Histogram,
    pub journal_records: IntGauge,
    pub journal_syncs: IntGauge,
    pub journal_last_batch: IntGauge,
    pub journal_segments: IntGauge,
    pub journal_segments_recycled: IntGauge,
    pub read_only: IntGauge,
    pub journal_sync_latency: Histogram,
    pub journal_batch_records: Histogram,
    pub journal_queue: IntGauge,
    pub journal_slowest_batch: Gauge,
    pub journal_slowest_roll: Gauge,
    pub free_bytes: IntGauge,
    pub ledgers: IntGauge,
}

/// Registers a metric and hands it back (metrics are cheap shared handles).
fn registered<C: Collector + Clone + 'static>(
    registry: &Registry,
    metric: C,
) -> Result<C, prometheus::Error> {
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

fn latency_buckets() -> Vec<f64> {
    // 50 µs .. ~2.3 s in steps of √2: a p99 read off power-of-two buckets
    // could only say "under 3.2 ms" of anything between 1.6 and 3.2.
    prometheus::exponential_buckets(0.00005, std::f64::consts::SQRT_2, 32).unwrap_or_default()
}

impl BookieMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let counter = |name: &str, help: &str| registered(registry, IntCounter::new(name, help)?);
        let gauge = |name: &str, help: &str| registered(registry, IntGauge::new(name, help)?);
        let float_gauge = |name: &str, help: &str| registered(registry, Gauge::new(name, help)?);
        let histogram = |name: &str, help: &str| {
            let opts = HistogramOpts::new(name, help).buckets(latency_buckets());
            registered(registry, Histogram::with_opts(opts)?)
        };
        Ok(Self {
            adds: counter(
                "magnetar_bookie_adds_total",
                "Entries added (acknowledged).",
            )?,
            add_bytes: counter("magnetar_bookie_add_bytes_total", "Payload bytes added.")?,
            add_errors: counter(
                "magnetar_bookie_add_errors_total",
                "Adds refused or failed.",
            )?,
            add_latency: histogram(
                "magnetar_bookie_add_latency_seconds",
                "Add latency, receipt to durable.",
            )?,
            add_journal_latency: histogram(
                "magnetar_bookie_add_journal_latency_seconds",
                "Add time from receipt until its journal record is durable.",
            )?,
            add_store_latency: histogram(
                "magnetar_bookie_add_store_latency_seconds",
                "Add time putting the journaled entry into the entry storage.",
            )?,
            add_queue_latency: histogram(
                "magnetar_bookie_add_queue_latency_seconds",
                "Add time from receipt until the journal batch carrying it started.",
            )?,
            add_resume_latency: histogram(
                "magnetar_bookie_add_resume_latency_seconds",
                "Add time from its journal batch being durable until the add ran again.",
            )?,
            reads: counter("magnetar_bookie_reads_total", "Entries read.")?,
            read_bytes: counter("magnetar_bookie_read_bytes_total", "Payload bytes read.")?,
            read_latency: histogram("magnetar_bookie_read_latency_seconds", "Read latency.")?,
            journal_records: gauge(
                "magnetar_bookie_journal_records",
                "Records written to the journal since start.",
            )?,
            journal_syncs: gauge(
                "magnetar_bookie_journal_syncs",
                "Journal batches written (each one fdatasync) since start.",
            )?,
            journal_segments: gauge(
                "magnetar_bookie_journal_segments_started",
                "Journal segments started since start.",
            )?,
            journal_segments_recycled: gauge(
                "magnetar_bookie_journal_segments_recycled",
                "Journal segments since start that reused a retired segment's file.",
            )?,
            journal_last_batch: gauge(
                "magnetar_bookie_journal_last_batch_records",
                "Records in the latest journal batch.",
            )?,
            journal_sync_latency: histogram(
                "magnetar_bookie_journal_sync_latency_seconds",
                "Journal batch write + fdatasync time.",
            )?,
            journal_batch_records: registered(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "magnetar_bookie_journal_batch_records",
                        "Records per journal batch (group commit size).",
                    )
                    .buckets(prometheus::exponential_buckets(1.0, 2.0, 14).unwrap_or_default()),
                )?,
            )?,
            journal_queue: gauge(
                "magnetar_bookie_journal_queue_depth",
                "Records waiting for the journal writer.",
            )?,
            journal_slowest_batch: float_gauge(
                "magnetar_bookie_journal_slowest_batch_seconds",
                "Longest journal batch (write + fdatasync, with any segment roll in it) since start.",
            )?,
            journal_slowest_roll: float_gauge(
                "magnetar_bookie_journal_slowest_roll_seconds",
                "Longest journal segment roll (seal the old segment, start the next) since start.",
            )?,
            read_only: gauge(
                "magnetar_bookie_read_only",
                "1 while the bookie refuses adds (disk nearly full).",
            )?,
            free_bytes: gauge(
                "magnetar_bookie_free_bytes",
                "Free bytes on the ledger disk.",
            )?,
            ledgers: gauge("magnetar_bookie_ledgers", "Ledgers stored.")?,
        })
    }

    /// Exposes auto-recovery progress, read at scrape time.
    pub fn watch_autorecovery(
        &self,
        stats: std::sync::Arc<magnetar_ledger::AutoRecoveryStats>,
        registry: &Registry,
    ) -> Result<(), prometheus::Error> {
        registry.register(Box::new(AutoRecoveryCollector::new(stats)?))
    }

    pub fn record_add(&self, latency: Duration, timings: AddTimings, bytes: usize) {
        self.adds.inc();
        self.add_bytes.inc_by(bytes as u64);
        self.add_latency.observe(latency.as_secs_f64());
        self.add_journal_latency
            .observe(timings.journal.as_secs_f64());
        self.add_store_latency.observe(timings.store.as_secs_f64());
        self.add_queue_latency.observe(timings.queued.as_secs_f64());
        self.add_resume_latency
            .observe(timings.resumed.as_secs_f64());
    }

    pub fn record_read(&self, latency: Duration, bytes: usize) {
        self.reads.inc();
        self.read_bytes.inc_by(bytes as u64);
        self.read_latency.observe(latency.as_secs_f64());
    }
}

/// Auto-recovery figures as gauges, computed when scraped.
struct AutoRecoveryCollector {
    stats: std::sync::Arc<magnetar_ledger::AutoRecoveryStats>,
    gauges: [IntGauge; 4],
}

impl AutoRecoveryCollector {
    fn new(
        stats: std::sync::Arc<magnetar_ledger::AutoRecoveryStats>,
    ) -> Result<Self, prometheus::Error> {
        Ok(Self {
            stats,
            gauges: [
                IntGauge::new(
                    "magnetar_bookie_auditor",
                    "1 while this bookie is the auto-recovery auditor.",
                )?,
                IntGauge::new(
                    "magnetar_bookie_underreplicated_ledgers",
                    "Ledgers marked under-replicated in the last audit.",
                )?,
                IntGauge::new(
                    "magnetar_bookie_fragments_replicated_total",
                    "Ledger fragments re-replicated by this auditor.",
                )?,
                IntGauge::new(
                    "magnetar_bookie_entries_replicated_total",
                    "Entries copied by re-replication.",
                )?,
            ],
        })
    }
}

impl Collector for AutoRecoveryCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.gauges.iter().flat_map(|g| g.desc()).collect()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        use std::sync::atomic::Ordering::Relaxed;
        let s = &self.stats;
        let values = [
            s.is_auditor.load(Relaxed),
            s.underreplicated_ledgers.load(Relaxed),
            s.fragments_replicated.load(Relaxed),
            s.entries_copied.load(Relaxed),
        ];
        for (g, v) in self.gauges.iter().zip(values) {
            g.set(v as i64);
        }
        self.gauges.iter().flat_map(|g| g.collect()).collect()
    }
}

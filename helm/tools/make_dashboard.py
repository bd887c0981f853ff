#!/usr/bin/env python3
"""Writes helm/magnetar/dashboards/magnetar.json, the chart's Grafana dashboard.

The dashboard is generated because one of its queries is long: the brokers
export publish (storage write) latency as Pulsar does, one gauge per bucket
(`pulsar_storage_write_latency_le_0_5`, `_le_1`, ... `_le_overflow`, counts of
messages whose write took at most that many milliseconds, not cumulative), so a
percentile has to rebuild a cumulative histogram with `le` labels before
`histogram_quantile` can read it.

Run it after changing the panels:  python3 helm/tools/make_dashboard.py
(helm/tests checks that the committed file is this script's output.)
"""

import json
import pathlib
import sys

OUT = pathlib.Path(__file__).resolve().parents[1] / "magnetar" / "dashboards" / "magnetar.json"

# Upper bounds (ms) of the brokers' write-latency buckets: LATENCY_BUCKETS_MS in
# libs/broker/src/topic_metrics.rs (the tests compare the two).
WRITE_LATENCY_BUCKETS_MS = [0.5, 1.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 1000.0]

RATE = "$__rate_interval"


def bucket_metric(bound_ms):
    text = f"{bound_ms:g}".replace(".", "_")
    return f"pulsar_storage_write_latency_le_{text}"


def publish_latency_quantile(q):
    """histogram_quantile over the cumulative sums of Pulsar's bucket gauges (ms)."""
    names = [bucket_metric(b) for b in WRITE_LATENCY_BUCKETS_MS]
    names.append("pulsar_storage_write_latency_le_overflow")
    les = [f"{b:g}" for b in WRITE_LATENCY_BUCKETS_MS] + ["+Inf"]
    parts = []
    for i, le in enumerate(les):
        cumulative = " + ".join(f"sum(rate({n}[{RATE}]))" for n in names[: i + 1])
        parts.append(f'label_replace({cumulative}, "le", "{le}", "", "")')
    return f"histogram_quantile({q}, " + " or ".join(parts) + ")"


def target(expr, legend, ref):
    return {
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "expr": expr,
        "legendFormat": legend,
        "refId": ref,
    }


def panel(pid, title, unit, targets, x, y, description=""):
    return {
        "id": pid,
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [target(e, l, chr(ord("A") + i)) for i, (e, l) in enumerate(targets)],
    }


def bookie_quantile(metric, q):
    return f"histogram_quantile({q}, sum by (le) (rate({metric}_bucket[{RATE}])))"


def dashboard():
    panels = [
        panel(1, "Messages in / s (TPS in)", "short",
              [(f"sum by (namespace) (pulsar_rate_in)", "{{namespace}}")], 0, 0,
              "Messages published per second, per namespace."),
        panel(2, "Messages out / s (TPS out)", "short",
              [(f"sum by (namespace) (pulsar_rate_out)", "{{namespace}}")], 12, 0,
              "Messages dispatched to consumers per second, per namespace."),
        panel(3, "Throughput in / out", "Bps",
              [("sum(pulsar_throughput_in)", "in"), ("sum(pulsar_throughput_out)", "out")], 0, 8),
        panel(4, "Publish latency p99 / p999 (storage write)", "ms",
              [(publish_latency_quantile(0.99), "p99"), (publish_latency_quantile(0.999), "p99.9")], 12, 8,
              "From a message's arrival at the broker to its storage on an ack quorum of bookies "
              "(pulsar_storage_write_latency_le_* buckets, all topics)."),
        panel(5, "Backlog (messages)", "short",
              [("sum by (namespace) (pulsar_msg_backlog)", "{{namespace}}")], 0, 16,
              "Unacknowledged messages over every subscription, per namespace."),
        panel(6, "Dead-letter topics", "short",
              [('sum by (topic) (pulsar_msg_backlog{topic=~".+-DLQ"})', "backlog {{topic}}"),
               ('sum by (topic) (pulsar_storage_size{topic=~".+-DLQ"})', "bytes {{topic}}")], 12, 16,
              "Topics named <topic>-<subscription>-DLQ. Per-topic series only exist while a broker "
              "has no more loaded topics than --max-topic-metrics."),
        panel(7, "Bookie journal latency p99 / p999", "s",
              [(bookie_quantile("magnetar_bookie_journal_sync_latency_seconds", 0.99), "sync p99"),
               (bookie_quantile("magnetar_bookie_journal_sync_latency_seconds", 0.999), "sync p99.9"),
               (bookie_quantile("magnetar_bookie_add_journal_latency_seconds", 0.99), "add until durable p99")], 0, 24,
              "Journal batch write + fdatasync, and an add's wait until its journal record is durable."),
        panel(8, "Bookie add latency p99 and adds / s", "s",
              [(bookie_quantile("magnetar_bookie_add_latency_seconds", 0.99), "add p99"),
               (f"sum(rate(magnetar_bookie_adds_total[{RATE}]))", "adds/s")], 12, 24),
        panel(9, "Bookies: free space, read-only, under-replicated ledgers", "short",
              [("min(magnetar_bookie_free_bytes)", "min free bytes"),
               ("sum(magnetar_bookie_read_only)", "read-only bookies"),
               ("max(magnetar_bookie_underreplicated_ledgers)", "under-replicated ledgers")], 0, 32),
        panel(10, "Metadata: leader, term, writes / s", "short",
              [("max(magnetar_meta_raft_term)", "term"),
               ("sum(magnetar_meta_raft_is_leader)", "leaders (must be 1)"),
               (f"sum(rate(magnetar_meta_proposed_commands_total[{RATE}]))", "writes/s")], 12, 32),
        panel(11, "Producers, consumers, subscriptions", "short",
              [("sum(pulsar_producers_count)", "producers"),
               ("sum(pulsar_consumers_count)", "consumers"),
               ("sum(pulsar_subscriptions_count)", "subscriptions")], 0, 40),
        panel(12, "Storage size", "bytes",
              [("sum by (namespace) (pulsar_storage_size)", "{{namespace}}")], 12, 40),
    ]
    return {
        "title": "Magnetar",
        "uid": "magnetar-overview",
        "tags": ["magnetar", "pulsar"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "templating": {
            "list": [
                {"name": "datasource", "label": "Prometheus", "type": "datasource",
                 "query": "prometheus", "current": {}, "hide": 0}
            ]
        },
        "panels": panels,
    }


def render():
    return json.dumps(dashboard(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    if len(sys.argv) > 1:
        sys.exit("usage: make_dashboard.py (no arguments)")
    OUT.write_text(render())
    print(f"wrote {OUT}")

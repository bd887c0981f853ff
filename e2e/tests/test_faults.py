"""Fault scenarios on the Docker cluster, each under the checker's workload
(e2e/harness/workload.py): nothing acknowledged lost, per-producer order kept,
no duplicates where deduplication is on, every acknowledged message delivered
to every subscription, and the topics writable again after the fault heals."""

import random
import time

import pytest

from harness.cluster import BROKERS, container, run
from harness.faults import run_scenario, summary_line

SHORT = ["broker-kill", "bookie-partition", "full-restart"]


def test_sigterm_drains_broker(cluster):
    """docker stop: tini hands SIGTERM to the broker, which hands its bundles
    over and exits 0 well within the grace period."""
    victim = BROKERS[-1]
    t0 = time.monotonic()
    run("docker", "stop", "-t", "30", container(victim))
    took = time.monotonic() - t0
    code = run("docker", "inspect", "-f", "{{.State.ExitCode}}", container(victim)).strip()
    logs = cluster.logs(victim, 50)
    cluster.start(victim)
    cluster.wait_healthy(120)
    assert code == "0", logs
    assert took < 25, f"docker stop took {took:.1f}s (SIGKILL at 30s)"
    assert "shutting down" in logs


@pytest.mark.parametrize("fault", SHORT)
def test_fault(cluster, results_log, fault):
    r = run_scenario(cluster, [fault], f"t{int(time.time()) % 100000}-{fault}",
                     random.Random(fault), rate=100.0)
    line = summary_line(r)
    results_log.write(line + "\n")
    results_log.flush()
    print("\n" + line)
    assert r["ok"], line
    assert r["acked"] > 0 and r["lost"] == 0 and r["order"] == 0 and r["dup_dedup"] == 0
    assert r.get("meta_ops", 0) > 0, f"the metadata check recorded nothing: {line}"


def test_checker_catches_loss(cluster, results_log):
    """The control: a topic force-deleted under the workload must be reported
    as acknowledged messages lost, or a passing run would mean nothing."""
    r = run_scenario(cluster, ["control-topic-delete"], f"t{int(time.time()) % 100000}-control",
                     random.Random(0), rate=100.0, warmup=5.0, settle=3.0)
    line = summary_line(r)
    results_log.write(line + "  (control: must fail)\n")
    print("\n" + line)
    assert not r["ok"] and r.get("lost", 0) > 0, line

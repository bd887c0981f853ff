"""The nemesis: each fault picks its victim (the topic's owner broker, a bookie
of its current ledger, the metadata leader), applies itself, holds for its
duration while the workload keeps sending, and heals. run_scenario() wraps a
list of faults in one workload and returns the checker's verdict."""

from __future__ import annotations

import random
import time
from pathlib import Path

from .cluster import BOOKIES, BROKERS, GATEWAY, METAS, Cluster, admin_url, http_json
from .workload import Workload, setup_namespaces

LEASE_TTL = 10  # the brokers' --lease-ttl in e2e/docker-compose.yml


class Fault:
    name = "fault"
    duration = 15.0

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.victim = None

    def topic_owner(self, c: Cluster, w: Workload) -> str:
        topic = self.rng.choice(sorted(w.topics.values()))
        owner = c.owner(topic)
        if owner is None:
            owner = self.rng.choice(BROKERS)
            print(f"  (owner of {topic} unknown; {owner} picked at random)")
        return owner

    def apply(self, c: Cluster, w: Workload) -> str:
        raise NotImplementedError

    def heal(self, c: Cluster) -> None:
        raise NotImplementedError


class BrokerKill(Fault):
    """SIGKILL of the broker that owns a workload topic; restarted after its lease ran out."""
    name = "broker-kill"
    duration = LEASE_TTL + 4

    def apply(self, c, w):
        self.victim = self.topic_owner(c, w)
        c.kill(self.victim)
        return self.victim

    def heal(self, c):
        c.start(self.victim)


class BrokerPause(Fault):
    """docker pause of the owner past its lease: when it wakes up it is a zombie
    whose ledger another broker has fenced; it must not write or acknowledge."""
    name = "broker-pause"
    duration = LEASE_TTL + 8

    def apply(self, c, w):
        self.victim = self.topic_owner(c, w)
        c.pause(self.victim)
        return self.victim

    def heal(self, c):
        c.unpause(self.victim)


class BookieKill(Fault):
    name = "bookie-kill"
    duration = 15.0

    def pick_bookie(self, c, w):
        topic = self.rng.choice(sorted(w.topics.values()))
        in_ensemble = c.ledger_bookies(topic)
        return self.rng.choice(in_ensemble or BOOKIES)

    def apply(self, c, w):
        self.victim = self.pick_bookie(c, w)
        c.kill(self.victim)
        return self.victim

    def heal(self, c):
        c.start(self.victim)


class BookiePartition(BookieKill):
    """A bookie of the current ledger leaves the network (docker network disconnect)."""
    name = "bookie-partition"
    duration = 20.0

    def apply(self, c, w):
        self.victim = self.pick_bookie(c, w)
        c.disconnect(self.victim)
        return self.victim

    def heal(self, c):
        c.connect(self.victim)


class BookieBrokerPartition(BookieKill):
    """A bookie of the current ledger cut from every broker (iptables), still
    reaching the metadata service."""
    name = "bookie-broker-partition"
    duration = 20.0

    def apply(self, c, w):
        self.victim = self.pick_bookie(c, w)
        c.partition(self.victim, BROKERS)
        return self.victim

    def heal(self, c):
        c.unpartition(self.victim)


class MetaLeaderKill(Fault):
    name = "meta-leader-kill"
    duration = 10.0

    def apply(self, c, w):
        self.victim = c.meta_leader() or self.rng.choice(METAS)
        c.kill(self.victim)
        return self.victim

    def heal(self, c):
        c.start(self.victim)


class MetaLeaderIsolate(Fault):
    """The metadata leader cut from its followers (clients still reach it)."""
    name = "meta-leader-isolate"
    duration = 15.0

    def apply(self, c, w):
        self.victim = c.meta_leader() or self.rng.choice(METAS)
        c.partition(self.victim, [m for m in METAS if m != self.victim])
        return self.victim

    def heal(self, c):
        c.unpartition(self.victim)


class BrokerMetaPartition(Fault):
    """The owner broker cut from every metadata node past its lease."""
    name = "broker-meta-partition"
    duration = LEASE_TTL + 8

    def apply(self, c, w):
        self.victim = self.topic_owner(c, w)
        c.partition(self.victim, METAS)
        return self.victim

    def heal(self, c):
        c.unpartition(self.victim)


class ClientPartition(Fault):
    """The owner broker unreachable from the clients (on the host) but not
    from the cluster."""
    name = "client-partition"
    duration = 15.0

    def apply(self, c, w):
        self.victim = self.topic_owner(c, w)
        c.partition(self.victim, [GATEWAY])
        return self.victim

    def heal(self, c):
        c.unpartition(self.victim)


class FullRestart(Fault):
    """Every container stopped (SIGTERM, brokers first) and started again
    from its volume."""
    name = "full-restart"
    duration = 3.0

    def apply(self, c, w):
        c.stop_all()
        return "all"

    def heal(self, c):
        c.compose("up", "-d", "--no-recreate", timeout=300)


class ControlTopicDelete(Fault):
    """Not a fault but a control: force-deletes one workload topic with
    everything on it, so the checker must report acknowledged messages lost.
    It shows that a passing run means something; never drawn at random."""
    name = "control-topic-delete"
    duration = 2.0

    def apply(self, c, w):
        topic = w.topics[False]
        path = topic.replace("persistent://", "")
        last = None
        for b in BROKERS:
            try:
                http_json(f"{admin_url(b)}/admin/v2/persistent/{path}?force=true",
                          method="DELETE", timeout=30)
                return topic
            except Exception as e:
                last = e
        raise RuntimeError(f"could not delete {topic}: {last}")

    def heal(self, c):
        pass


FAULTS = {
    f.name: f
    for f in (
        BrokerKill, BrokerPause, BookieKill, BookiePartition, BookieBrokerPartition,
        MetaLeaderKill, MetaLeaderIsolate, BrokerMetaPartition, ClientPartition, FullRestart,
        ControlTopicDelete,
    )
}
# What the campaign draws from.
RANDOM_FAULTS = sorted(n for n in FAULTS if not n.startswith("control-"))


def run_scenario(
    cluster: Cluster,
    fault_names: list[str],
    run_id: str,
    rng: random.Random,
    rate: float = 100.0,
    warmup: float = 8.0,
    settle: float = 10.0,
    log_dir: Path | None = None,
    log=print,
    check_meta: bool = True,
) -> dict:
    """One run: workload, the faults one after another, heal, keep sending,
    stop, verify. Beside the messages, a register workload on the metadata
    service records its history for the whole run (check_meta), and the run
    fails unless that history is linearizable. The cluster is restored to
    nine healthy containers at the end."""
    setup_namespaces()
    t0 = time.monotonic()
    w = Workload(run_id, rate=rate, log_dir=log_dir, log=log)
    applied = []
    result: dict = {}
    meta_check = None
    try:
        if check_meta:
            meta_check = cluster.start_meta_check(run_id)
        w.start()
        time.sleep(warmup)
        last_heal = time.monotonic()
        for name in fault_names:
            f = FAULTS[name](rng)
            victim = f.apply(cluster, w)
            applied.append(f"{name}({victim})")
            log(f"  run {run_id}: {name} on {victim} for {f.duration:.0f}s")
            time.sleep(f.duration)
            f.heal(cluster)
            last_heal = time.monotonic()
            time.sleep(3)
        try:
            cluster.wait_healthy(240)
            recovery = time.monotonic() - last_heal
        except TimeoutError as e:
            recovery = float("nan")
            result.setdefault("errors", []).append(str(e).splitlines()[0])
        time.sleep(settle)
        w.stop()
        if meta_check is not None:
            verdict, meta_check = meta_check.finish(), None
            result["meta_ops"] = verdict.get("operations", 0)
            if verdict.get("linearizable") is not True:
                result.setdefault("errors", []).append(
                    f"metadata history not linearizable: {verdict}")
        after_heal = w.acks_after(last_heal)
        checked = w.verify()
        result = {**result, **checked, "errors": result.get("errors", []) + checked["errors"]}
        result["acked_after_heal"] = after_heal
        if after_heal == 0:
            result["errors"].append("no message acknowledged after the faults were healed")
        result["recovery_s"] = recovery
        result["max_ack_gap_s"] = w.max_ack_gap()
    except Exception as e:
        result.setdefault("errors", []).append(f"harness: {type(e).__name__}: {e}")
    finally:
        w.close()
        if meta_check is not None:
            meta_check.finish(timeout=10)
    result["faults"] = applied
    result["run"] = run_id
    result["seconds"] = time.monotonic() - t0
    result["ok"] = not result["errors"]
    try:
        cluster.restore()
    except Exception as e:
        result["errors"].append(f"restore: {e}")
        result["ok"] = False
    return result


def summary_line(r: dict) -> str:
    keys = ["acked", "failed", "unresolved", "lost", "order", "phantom", "dup_plain",
            "dup_dedup", "undelivered", "acked_after_heal", "meta_ops"]
    parts = [f"run={r['run']}", "PASS" if r["ok"] else "FAIL",
             "faults=" + (",".join(r.get("faults", [])) or "-")]
    parts += [f"{k}={r[k]}" for k in keys if k in r]
    for k in ("recovery_s", "max_ack_gap_s", "seconds"):
        if k in r:
            parts.append(f"{k}={r[k]:.1f}")
    if r.get("errors"):
        parts.append("errors=" + " | ".join(e.replace("\n", " ")[:300] for e in r["errors"]))
    return " ".join(parts)

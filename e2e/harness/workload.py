"""The checker's workload, with the official Pulsar Python client on the host.

Two topics per run: one in namespace public/e2e (deduplication off) and one in
public/e2e-dedup (deduplication on); both namespaces keep everything
(retention -1/-1), so the whole log can be read back. On each topic, two
producers send JSON {"p": producer, "s": seq} with batching, asynchronously,
at a steady rate, and record which sequence numbers the client saw
acknowledged or failed. Three subscriptions per topic (Shared, Failover,
Key_Shared; two consumers each) consume and acknowledge throughout.

verify() reads each topic from the earliest message with a Reader and checks,
per producer:
  lost       acknowledged sequence numbers not stored (must be 0)
  order      stored messages out of send order, counting each sequence
             number's first copy (must be 0)
  phantom    stored sequence numbers that were never sent (must be 0)
  dups       extra copies; must be 0 where deduplication is on, counted and
             reported where it is off
and per subscription, acknowledged messages never delivered (must be 0).
A send that failed or was never answered is not counted lost if missing.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pulsar

from .cluster import BROKERS, LISTENER, SERVICE_URL, admin_url, http_json

NS_PLAIN = "public/e2e"
NS_DEDUP = "public/e2e-dedup"
SUBSCRIPTIONS = [
    ("shared", pulsar.ConsumerType.Shared),
    ("failover", pulsar.ConsumerType.Failover),
    ("keyshared", pulsar.ConsumerType.KeyShared),
]


def setup_namespaces(timeout: float = 60) -> None:
    """Creates the two namespaces (idempotent) with infinite retention, and
    deduplication on in one of them."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        for b in BROKERS:
            base = admin_url(b) + "/admin/v2/namespaces/"
            try:
                for ns in (NS_PLAIN, NS_DEDUP):
                    try:
                        http_json(base + ns, method="PUT", body={})
                    except Exception as e:  # 409: exists
                        if getattr(e, "code", None) != 409:
                            raise
                    http_json(
                        base + ns + "/retention", method="POST",
                        body={"retentionTimeInMinutes": -1, "retentionSizeInMB": -1},
                    )
                http_json(base + NS_DEDUP + "/deduplication", method="POST", body=True)
                http_json(base + NS_PLAIN + "/deduplication", method="POST", body=False)
                return
            except Exception as e:
                last = e
        time.sleep(1)
    raise RuntimeError(f"could not set up namespaces: {last}")


@dataclass
class ProducerLog:
    name: str
    topic: str
    dedup: bool
    sent: int = 0  # sequence numbers 0..sent-1 were handed to the client
    acked: dict = field(default_factory=dict)  # seq -> monotonic time of the receipt
    failed: set = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Workload:
    def __init__(self, run_id: str, rate: float = 100.0, log_dir: Path | None = None,
                 log=print):
        self.run_id = run_id
        self.rate = rate
        self.log = log
        self.topics = {
            False: f"persistent://{NS_PLAIN}/run-{run_id}",
            True: f"persistent://{NS_DEDUP}/run-{run_id}",
        }
        self.producers: list[ProducerLog] = []
        for dedup, topic in self.topics.items():
            for i in range(2):
                tag = "d" if dedup else "n"
                self.producers.append(ProducerLog(f"run-{run_id}-{tag}{i}", topic, dedup))
        self.received: dict[tuple[str, str], list] = defaultdict(list)  # (topic, sub) -> [(p, s)]
        self.recv_lock = threading.Lock()
        self.stop_flag = threading.Event()
        self.threads: list[threading.Thread] = []
        self.started = 0.0
        self.stopped = 0.0
        logger = None
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
            logger = pulsar.FileLogger(pulsar.LoggerLevel.Info, str(log_dir / f"client-{run_id}.log"))
        self.client = pulsar.Client(
            SERVICE_URL, listener_name=LISTENER, operation_timeout_seconds=30,
            connection_timeout_ms=5000, logger=logger,
        )
        self.consumers = []
        self.pulsar_producers = {}

    # ---- running -------------------------------------------------------

    def _listener(self, topic: str, sub: str):
        def on_message(consumer, msg):
            try:
                d = json.loads(msg.data())
                with self.recv_lock:
                    self.received[(topic, sub)].append((d["p"], d["s"]))
            except Exception:
                with self.recv_lock:
                    self.received[(topic, sub)].append(("?", -1))
            try:
                consumer.acknowledge(msg)
            except Exception:
                pass  # redelivered later; the set of received messages is what counts
        return on_message

    def start(self) -> None:
        for topic in self.topics.values():
            for sub, kind in SUBSCRIPTIONS:
                for c in range(2):
                    self.consumers.append(self.client.subscribe(
                        topic, sub, consumer_type=kind,
                        message_listener=self._listener(topic, sub),
                        initial_position=pulsar.InitialPosition.Earliest,
                        consumer_name=f"{sub}-{c}", receiver_queue_size=200,
                    ))
        for p in self.producers:
            self.pulsar_producers[p.name] = self.client.create_producer(
                p.topic, producer_name=p.name, batching_enabled=True,
                batching_max_publish_delay_ms=5, max_pending_messages=500,
                block_if_queue_full=True, send_timeout_millis=30000,
            )
        self.started = time.monotonic()
        for p in self.producers:
            t = threading.Thread(target=self._produce, args=(p,), daemon=True, name=p.name)
            t.start()
            self.threads.append(t)

    def _produce(self, p: ProducerLog) -> None:
        producer = self.pulsar_producers[p.name]
        interval = 1.0 / self.rate
        next_t = time.monotonic()
        seq = 0
        while not self.stop_flag.is_set():
            def done(res, _msg_id, seq=seq):
                with p.lock:
                    if res == pulsar.Result.Ok:
                        p.acked[seq] = time.monotonic()
                    else:
                        p.failed.add(seq)
            body = json.dumps({"p": p.name, "s": seq}).encode()
            with p.lock:
                p.sent = seq + 1
            try:
                producer.send_async(body, done, partition_key=f"k{seq % 16}")
            except Exception:
                with p.lock:
                    p.failed.add(seq)
                time.sleep(0.2)
            seq += 1
            next_t += interval
            delay = next_t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -1.0:
                next_t = time.monotonic()  # do not burst after a stall

    def stop(self, answer_timeout: float = 75) -> None:
        """Stops sending and waits for the client to answer every send."""
        self.stop_flag.set()
        for t in self.threads:
            t.join(timeout=60)
        self.stopped = time.monotonic()
        for p in self.producers:
            try:
                self.pulsar_producers[p.name].flush()
            except Exception:
                pass
        deadline = time.monotonic() + answer_timeout
        while time.monotonic() < deadline and any(self._unanswered(p) for p in self.producers):
            time.sleep(0.5)
        for pp in self.pulsar_producers.values():
            try:
                pp.close()
            except Exception:
                pass

    @staticmethod
    def _unanswered(p: ProducerLog) -> int:
        with p.lock:
            return p.sent - len(p.acked) - len(p.failed - set(p.acked))

    def acks_after(self, t: float) -> int:
        n = 0
        for p in self.producers:
            with p.lock:
                n += sum(1 for at in p.acked.values() if at > t)
        return n

    def max_ack_gap(self) -> float:
        """The longest time any one producer went without an acknowledgement."""
        gap = 0.0
        for p in self.producers:
            with p.lock:
                times = sorted(p.acked.values())
            points = [self.started] + times + [self.stopped]
            gap = max([gap] + [b - a for a, b in zip(points, points[1:])])
        return gap

    # ---- checking ------------------------------------------------------

    def read_back(self, topic: str, timeout: float) -> tuple[list, str | None]:
        """Every stored message of a topic, in log order; an error string if
        the topic could not be read completely within the timeout."""
        deadline = time.monotonic() + timeout
        last_err = None
        while time.monotonic() < deadline:
            out = []
            reader = None
            try:
                reader = self.client.create_reader(topic, pulsar.MessageId.earliest,
                                                   receiver_queue_size=1000)
                while time.monotonic() < deadline:
                    if not reader.has_message_available():
                        return out, None
                    m = reader.read_next(timeout_millis=10000)
                    d = json.loads(m.data())
                    out.append((d["p"], d["s"]))
                last_err = "timed out while reading"
            except Exception as e:
                last_err = f"{type(e).__name__}: {e}"
                time.sleep(2)
            finally:
                if reader is not None:
                    try:
                        reader.close()
                    except Exception:
                        pass
        return [], f"{topic}: {last_err}"

    def verify(self, read_timeout: float = 120, delivery_timeout: float = 60) -> dict:
        r = {
            "acked": 0, "failed": 0, "unresolved": 0, "stored": 0, "lost": 0, "order": 0,
            "phantom": 0, "dup_plain": 0, "dup_dedup": 0, "undelivered": 0,
            "errors": [],
        }
        stored: dict[str, list[int]] = defaultdict(list)
        for topic in self.topics.values():
            msgs, err = self.read_back(topic, read_timeout)
            if err:
                r["errors"].append(f"read back failed: {err}")
            for p, s in msgs:
                stored[p].append(s)
        acked_by_topic: dict[str, set] = defaultdict(set)
        for p in self.producers:
            with p.lock:
                acked, failed, sent = set(p.acked), set(p.failed) - set(p.acked), p.sent
            log = stored.get(p.name, [])
            have = set(log)
            r["acked"] += len(acked)
            r["failed"] += len(failed)
            r["unresolved"] += sent - len(acked) - len(failed)
            r["stored"] += len(have)
            lost = sorted(acked - have)
            if lost:
                r["lost"] += len(lost)
                r["errors"].append(f"{p.name}: {len(lost)} acknowledged messages lost, e.g. {lost[:5]}")
            seen, top, bad = set(), -1, 0
            for s in log:
                if s in seen:
                    continue
                seen.add(s)
                if s < top:
                    bad += 1
                top = max(top, s)
            if bad:
                r["order"] += bad
                r["errors"].append(f"{p.name}: {bad} messages out of order")
            phantom = [s for s in have if s < 0 or s >= sent]
            if phantom:
                r["phantom"] += len(phantom)
                r["errors"].append(f"{p.name}: {len(phantom)} stored messages never sent")
            dups = len(log) - len(have)
            r["dup_dedup" if p.dedup else "dup_plain"] += dups
            if dups and p.dedup:
                r["errors"].append(f"{p.name}: {dups} duplicates with deduplication on")
            acked_by_topic[p.topic] |= {(p.name, s) for s in acked}
        unknown = [p for p in stored if p not in {q.name for q in self.producers}]
        if unknown:
            r["errors"].append(f"messages from unknown producers: {unknown[:3]}")
        # Every acknowledged message reaches every subscription.
        deadline = time.monotonic() + delivery_timeout
        while True:
            missing = {}
            with self.recv_lock:
                for topic, want in acked_by_topic.items():
                    for sub, _ in SUBSCRIPTIONS:
                        m = want - set(self.received[(topic, sub)])
                        if m:
                            missing[(topic, sub)] = m
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(1)
        for (topic, sub), m in missing.items():
            r["undelivered"] += len(m)
            r["errors"].append(
                f"{topic} subscription {sub}: {len(m)} acknowledged messages never delivered,"
                f" e.g. {sorted(m)[:3]}"
            )
        return r

    def close(self) -> None:
        for c in self.consumers:
            try:
                c.close()
            except Exception:
                pass
        try:
            self.client.close()
        except Exception:
            pass

"""Compatibility cases run with the official Apache Pulsar Python client.

Usage: compat.py CASE [CASE...]   (PULSAR_URL and PULSAR_WEB name the service)

Each case raises on any deviation from what a Pulsar broker does; the Rust
test that runs this script fails with the output.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid

import pulsar
from pulsar import ConsumerType, InitialPosition, MessageId

URL = os.environ["PULSAR_URL"]
WEB = os.environ["PULSAR_WEB"]
LOGGER = pulsar.ConsoleLogger(getattr(pulsar.LoggerLevel, os.environ.get("PULSAR_LOG", "Warn")))


def client():
    return pulsar.Client(URL, operation_timeout_seconds=15, logger=LOGGER)


def topic(name):
    return f"persistent://public/default/{name}-{uuid.uuid4().hex[:8]}"


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def receive_all(consumer, n, timeout_ms=10000, ack=True):
    out = []
    for _ in range(n):
        m = consumer.receive(timeout_millis=timeout_ms)
        out.append(m)
        if ack:
            consumer.acknowledge(m)
    return out


def expect_nothing(consumer, timeout_ms=1000):
    try:
        m = consumer.receive(timeout_millis=timeout_ms)
    except pulsar.Timeout:
        return
    raise AssertionError(f"unexpected message {m.data()!r} id={m.message_id()}")


def http(method, path, body=None):
    data = None
    headers = {}
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(WEB + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, raw


# ---- cases ------------------------------------------------------------------


def case_ordered_with_properties_and_keys():
    c = client()
    t = topic("ordered")
    consumer = c.subscribe(t, "sub", initial_position=InitialPosition.Earliest)
    producer = c.create_producer(t)
    for i in range(500):
        producer.send(
            f"msg-{i}".encode(),
            properties={"i": str(i), "kind": "test"},
            partition_key=f"key-{i % 7}",
            event_timestamp=1_700_000_000_000 + i,
        )
    msgs = receive_all(consumer, 500)
    for i, m in enumerate(msgs):
        check(m.data() == f"msg-{i}".encode(), f"order broken at {i}: {m.data()!r}")
        check(m.properties() == {"i": str(i), "kind": "test"}, f"properties {m.properties()}")
        check(m.partition_key() == f"key-{i % 7}", f"key {m.partition_key()}")
        check(m.event_timestamp() == 1_700_000_000_000 + i, "event time")
        check(m.publish_timestamp() > 0, "publish time")
        check(m.redelivery_count() == 0, "redelivery count")
    expect_nothing(consumer)
    c.close()


def case_batched_compressed_async():
    c = client()
    for kind in [
        pulsar.CompressionType.LZ4,
        pulsar.CompressionType.ZLib,
        pulsar.CompressionType.ZSTD,
        pulsar.CompressionType.SNAPPY,
    ]:
        t = topic(f"batch-{kind}")
        consumer = c.subscribe(t, "sub", initial_position=InitialPosition.Earliest)
        producer = c.create_producer(
            t,
            batching_enabled=True,
            batching_max_messages=500,
            batching_max_publish_delay_ms=5,
            compression_type=kind,
            block_if_queue_full=True,
        )
        n = 20_000 if kind == pulsar.CompressionType.LZ4 else 5_000
        errors = []

        def done(res, _msg_id):
            if res != pulsar.Result.Ok:
                errors.append(res)

        for i in range(n):
            producer.send_async(f"payload-{i:06d}-{'x' * 80}".encode(), done)
        producer.flush()
        check(not errors, f"send errors with {kind}: {errors[:5]}")
        seen = 0
        for m in receive_all(consumer, n):
            check(m.data().startswith(f"payload-{seen:06d}".encode()), f"order with {kind} at {seen}")
            seen += 1
        expect_nothing(consumer)
        producer.close()
        consumer.close()
    c.close()


def case_large_messages():
    c = client()
    t = topic("large")
    consumer = c.subscribe(t, "sub")
    producer = c.create_producer(t)
    blobs = [os.urandom(1 << 20) for _ in range(5)]
    for b in blobs:
        producer.send(b)
    for b, m in zip(blobs, receive_all(consumer, 5)):
        check(m.data() == b, "1 MiB payload mismatch")
    # Beyond the 5 MiB limit the client refuses it (it learned the limit at CONNECT).
    try:
        producer.send(b"x" * (6 << 20))
        raise AssertionError("oversize message accepted")
    except pulsar.MessageTooBig:
        pass
    producer.send(b"still-works")
    check(consumer.receive(timeout_millis=10000).data() == b"still-works", "after oversize")
    c.close()


def case_exclusive():
    c = client()
    t = topic("exclusive")
    first = c.subscribe(t, "sub", consumer_type=ConsumerType.Exclusive)
    try:
        c.subscribe(t, "sub", consumer_type=ConsumerType.Exclusive)
        raise AssertionError("second exclusive consumer accepted")
    except pulsar.ConsumerBusy:
        pass
    try:
        c.subscribe(t, "sub", consumer_type=ConsumerType.Shared)
        raise AssertionError("different type accepted on a busy subscription")
    except pulsar.ConsumerBusy:
        pass
    first.close()
    second = c.subscribe(t, "sub", consumer_type=ConsumerType.Exclusive)
    second.close()
    c.close()


def case_shared():
    c = client()
    t = topic("shared")
    consumers = [
        c.subscribe(t, "sub", consumer_type=ConsumerType.Shared, receiver_queue_size=10)
        for _ in range(3)
    ]
    producer = c.create_producer(t)
    n = 300
    for i in range(n):
        producer.send(str(i).encode())
    got = {}
    deadline = time.time() + 30
    while sum(len(v) for v in got.values()) < n and time.time() < deadline:
        for idx, consumer in enumerate(consumers):
            try:
                m = consumer.receive(timeout_millis=50)
            except pulsar.Timeout:
                continue
            got.setdefault(idx, []).append(int(m.data()))
            consumer.acknowledge(m)
    everything = sorted(x for v in got.values() for x in v)
    check(everything == list(range(n)), f"shared: got {len(everything)} of {n}")
    check(len(got) == 3 and all(len(v) > 30 for v in got.values()), f"not spread: { {k: len(v) for k, v in got.items()} }")
    c.close()


def case_failover():
    c = client()
    t = topic("failover")
    a = c.subscribe(t, "sub", consumer_type=ConsumerType.Failover, consumer_name="a")
    b = c.subscribe(t, "sub", consumer_type=ConsumerType.Failover, consumer_name="b")
    producer = c.create_producer(t)
    for i in range(20):
        producer.send(str(i).encode())
    for i, m in enumerate(receive_all(a, 20)):
        check(int(m.data()) == i, "failover order")
    expect_nothing(b, 500)
    # The active consumer leaves: the other takes over, with nothing lost.
    for i in range(20, 30):
        producer.send(str(i).encode())
    a.close()
    for i, m in enumerate(receive_all(b, 10)):
        check(int(m.data()) == 20 + i, f"after failover got {m.data()!r}")
    c.close()


def case_key_shared():
    c = client()
    t = topic("keyshared")
    consumers = [
        c.subscribe(t, "sub", consumer_type=ConsumerType.KeyShared, consumer_name=f"c{i}")
        for i in range(3)
    ]
    producer = c.create_producer(t, batching_enabled=False)
    keys = [f"k{i}" for i in range(30)]
    n = 600
    for i in range(n):
        producer.send(str(i).encode(), partition_key=keys[i % len(keys)])
    owner = {}
    last = {}
    total = 0
    deadline = time.time() + 30
    while total < n and time.time() < deadline:
        for idx, consumer in enumerate(consumers):
            try:
                m = consumer.receive(timeout_millis=50)
            except pulsar.Timeout:
                continue
            k = m.partition_key()
            v = int(m.data())
            check(owner.setdefault(k, idx) == idx, f"key {k} went to two consumers")
            check(last.get(k, -1) < v, f"key {k} out of order: {v} after {last.get(k)}")
            last[k] = v
            consumer.acknowledge(m)
            total += 1
    check(total == n, f"key_shared: got {total} of {n}")
    check(len(set(owner.values())) >= 2, "all keys went to one consumer")
    c.close()


def case_cumulative_ack():
    c = client()
    t = topic("cumulative")
    consumer = c.subscribe(t, "sub")
    producer = c.create_producer(t)
    for i in range(10):
        producer.send(str(i).encode())
    msgs = receive_all(consumer, 10, ack=False)
    consumer.acknowledge_cumulative(msgs[5])
    consumer.close()
    time.sleep(0.3)
    consumer = c.subscribe(t, "sub")
    rest = receive_all(consumer, 4)
    check([int(m.data()) for m in rest] == [6, 7, 8, 9], f"after cumulative ack: {[m.data() for m in rest]}")
    expect_nothing(consumer)
    c.close()


def case_nack_redelivery_count():
    c = client()
    t = topic("nack")
    consumer = c.subscribe(
        t, "sub", consumer_type=ConsumerType.Shared, negative_ack_redelivery_delay_ms=100
    )
    producer = c.create_producer(t)
    producer.send(b"again")
    for expected in range(3):
        m = consumer.receive(timeout_millis=10000)
        check(m.data() == b"again", "payload")
        check(m.redelivery_count() == expected, f"redelivery count {m.redelivery_count()} != {expected}")
        consumer.negative_acknowledge(m)
    m = consumer.receive(timeout_millis=10000)
    consumer.acknowledge(m)
    expect_nothing(consumer)
    c.close()


def case_dead_letter_queue():
    c = client()
    t = topic("dlq")
    dlq = t + "-DLQ"
    dlq_consumer = c.subscribe(dlq, "dlq-sub", initial_position=InitialPosition.Earliest)
    consumer = c.subscribe(
        t,
        "sub",
        consumer_type=ConsumerType.Shared,
        negative_ack_redelivery_delay_ms=100,
        dead_letter_policy=pulsar.ConsumerDeadLetterPolicy(max_redeliver_count=2, dead_letter_topic=dlq),
    )
    producer = c.create_producer(t)
    producer.send(b"poison")
    producer.send(b"fine")
    deadline = time.time() + 30
    fine = False
    dead = None
    poison_counts = []
    # Keep consuming (and nacking the poison) until the client moves it to the DLQ.
    while time.time() < deadline and dead is None:
        try:
            m = consumer.receive(timeout_millis=200)
            if m.data() == b"poison":
                poison_counts.append(m.redelivery_count())
                consumer.negative_acknowledge(m)
            else:
                consumer.acknowledge(m)
                fine = True
        except pulsar.Timeout:
            pass
        try:
            dead = dlq_consumer.receive(timeout_millis=10)
        except pulsar.Timeout:
            pass
    check(fine, "the good message never arrived")
    check(dead is not None and dead.data() == b"poison", f"DLQ got {dead and dead.data()!r}")
    check(poison_counts == [0, 1, 2], f"poison delivered with redelivery counts {poison_counts}")
    expect_nothing(consumer)
    c.close()


def case_ack_timeout():
    c = client()
    t = topic("acktimeout")
    # The client's minimum ack timeout is 10 s.
    consumer = c.subscribe(t, "sub", consumer_type=ConsumerType.Shared, unacked_messages_timeout_ms=10_000)
    producer = c.create_producer(t)
    producer.send(b"late")
    m1 = consumer.receive(timeout_millis=10000)
    m2 = consumer.receive(timeout_millis=30000)  # redelivered after the timeout
    check(m1.data() == m2.data() == b"late", "ack timeout redelivery")
    check(m2.redelivery_count() >= 1, f"redelivery count {m2.redelivery_count()}")
    consumer.acknowledge(m2)
    c.close()


def case_readers():
    c = client()
    t = topic("reader")
    producer = c.create_producer(t)
    ids = [producer.send(str(i).encode()) for i in range(10)]
    r = c.create_reader(t, MessageId.earliest)
    check([int(r.read_next(10000).data()) for _ in range(10)] == list(range(10)), "reader from earliest")
    check(not r.has_message_available(), "reader at end should have nothing available")
    r.close()
    r = c.create_reader(t, MessageId.latest)
    check(not r.has_message_available(), "latest reader has nothing yet")
    producer.send(b"10")
    check(r.read_next(10000).data() == b"10", "reader from latest")
    r.close()
    r = c.create_reader(t, ids[4])
    check(r.read_next(10000).data() == b"5", "reader after id (exclusive)")
    r.close()
    r = c.create_reader(t, ids[4], start_message_id_inclusive=True)
    check(r.read_next(10000).data() == b"4", "reader at id (inclusive)")
    r.close()
    c.close()


def case_seek():
    c = client()
    t = topic("seek")
    consumer = c.subscribe(t, "sub")
    producer = c.create_producer(t)
    ids = []
    times = []
    for i in range(10):
        times.append(int(time.time() * 1000))
        ids.append(producer.send(str(i).encode()))
        time.sleep(0.02)
    receive_all(consumer, 10)
    # The broker resets the cursor to the id itself; the client then skips
    # that message (its start id is exclusive unless configured inclusive).
    consumer.seek(ids[3])
    got = [int(consumer.receive(timeout_millis=10000).data()) for _ in range(3)]
    check(got == [4, 5, 6], f"seek by id: {got}")
    consumer.seek(times[7])
    got = [int(consumer.receive(timeout_millis=10000).data()) for _ in range(3)]
    check(got == [7, 8, 9], f"seek by time: {got}")
    consumer.seek(MessageId.earliest)
    check(consumer.receive(timeout_millis=10000).data() == b"0", "seek to earliest")
    c.close()


def case_last_message_id():
    c = client()
    t = topic("lastid")
    consumer = c.subscribe(t, "sub")
    producer = c.create_producer(t)
    last = None
    for i in range(5):
        last = producer.send(str(i).encode())
    got = consumer.get_last_message_id()
    check(
        (got.ledger_id(), got.entry_id()) == (last.ledger_id(), last.entry_id()),
        f"last message id {got} != {last}",
    )
    c.close()


def case_delayed_delivery():
    c = client()
    t = topic("delayed")
    consumer = c.subscribe(t, "sub", consumer_type=ConsumerType.Shared)
    producer = c.create_producer(t)
    start = time.time()
    producer.send(b"later", deliver_after=__import__("datetime").timedelta(seconds=2))
    producer.send(b"now")
    m = consumer.receive(timeout_millis=10000)
    check(m.data() == b"now", f"first should be the undelayed one, got {m.data()!r}")
    consumer.acknowledge(m)
    m = consumer.receive(timeout_millis=10000)
    waited = time.time() - start
    check(m.data() == b"later", "delayed message")
    check(waited >= 1.8, f"delayed message came after {waited:.2f}s")
    consumer.acknowledge(m)
    c.close()


def case_dedup_across_reconnect():
    status, _ = http("POST", "/admin/v2/namespaces/public/default/deduplication", True)
    check(status == 204, f"enable dedup: {status}")
    try:
        c = client()
        t = topic("dedup")
        consumer = c.subscribe(t, "sub")
        p = c.create_producer(t, producer_name="dedup-producer")
        for i in range(5):
            p.send(str(i).encode(), sequence_id=i)
        check(p.last_sequence_id() == 4, f"last seq {p.last_sequence_id()}")
        p.close()
        p = c.create_producer(t, producer_name="dedup-producer")
        check(p.last_sequence_id() == 4, f"after reconnect last seq {p.last_sequence_id()}")
        # Resends of 3 and 4 are duplicates; 5 is new.
        for i in [3, 4, 5]:
            p.send(str(i).encode(), sequence_id=i)
        got = [int(m.data()) for m in receive_all(consumer, 6)]
        check(got == [0, 1, 2, 3, 4, 5], f"dedup: {got}")
        expect_nothing(consumer)
        c.close()
    finally:
        http("DELETE", "/admin/v2/namespaces/public/default/deduplication")


def case_partitioned():
    name = f"parted-{uuid.uuid4().hex[:8]}"
    t = f"persistent://public/default/{name}"
    status, _ = http("PUT", f"/admin/v2/persistent/public/default/{name}/partitions", 3)
    check(status == 204, f"create partitioned: {status}")
    status, body = http("GET", f"/admin/v2/persistent/public/default/{name}/partitions")
    check(status == 200 and body["partitions"] == 3, f"partitions: {body}")
    c = client()
    consumer = c.subscribe(t, "sub", consumer_type=ConsumerType.Shared)
    producer = c.create_producer(t, message_routing_mode=pulsar.PartitionsRoutingMode.RoundRobinDistribution)
    n = 90
    partitions = set()
    for i in range(n):
        mid = producer.send(str(i).encode(), partition_key=f"k{i}")
        partitions.add(mid.partition())
    check(partitions == {0, 1, 2}, f"partitions used: {partitions}")
    got = sorted(int(m.data()) for m in receive_all(consumer, n))
    check(got == list(range(n)), "partitioned consume")
    c.close()
    status, body = http("GET", "/admin/v2/persistent/public/default")
    check(all(f"{t}-partition-{i}" in body for i in range(3)), f"topic list: {body}")


def case_admin_rest():
    tenant = f"t{uuid.uuid4().hex[:6]}"
    ok = lambda s, what: check(s in (200, 204), f"{what}: {s}")
    s, body = http("GET", "/admin/v2/clusters")
    check(s == 200 and "standalone" in body, f"clusters {body}")
    ok(http("PUT", f"/admin/v2/tenants/{tenant}", {"adminRoles": ["admin"], "allowedClusters": ["standalone"]})[0], "create tenant")
    check(http("PUT", f"/admin/v2/tenants/{tenant}", {"allowedClusters": ["standalone"]})[0] == 409, "tenant twice")
    s, body = http("PUT", "/admin/v2/tenants/bad-clusters", {"allowedClusters": ["nowhere"]})
    check(s == 412 and "reason" in body, f"unknown cluster: {s} {body}")
    s, body = http("PUT", f"/admin/v2/tenants/{tenant}x", b"{not json")
    check(s == 400 and "reason" in body, f"bad JSON: {s} {body}")
    s, body = http("GET", f"/admin/v2/tenants/{tenant}")
    check(s == 200 and body["adminRoles"] == ["admin"], f"get tenant {body}")
    check(http("GET", "/admin/v2/tenants/nope")[0] == 404, "missing tenant")
    ok(http("PUT", f"/admin/v2/namespaces/{tenant}/ns1")[0], "create namespace")
    check(http("PUT", f"/admin/v2/namespaces/{tenant}/ns1")[0] == 409, "namespace twice")
    check(http("PUT", "/admin/v2/namespaces/nope/ns1")[0] == 404, "namespace of missing tenant")
    s, body = http("GET", f"/admin/v2/namespaces/{tenant}")
    check(body == [f"{tenant}/ns1"], f"namespaces {body}")
    ok(http("POST", f"/admin/v2/namespaces/{tenant}/ns1/retention", {"retentionTimeInMinutes": 60, "retentionSizeInMB": 100})[0], "retention")
    s, body = http("GET", f"/admin/v2/namespaces/{tenant}/ns1/retention")
    check(body == {"retentionTimeInMinutes": 60, "retentionSizeInMB": 100}, f"retention {body}")
    check(http("POST", f"/admin/v2/namespaces/{tenant}/ns1/retention", {"retentionTimeInMinutes": "x"})[0] == 400, "bad retention")
    ok(http("POST", f"/admin/v2/namespaces/{tenant}/ns1/messageTTL", 120)[0], "ttl")
    check(http("GET", f"/admin/v2/namespaces/{tenant}/ns1/messageTTL")[1] == 120, "ttl value")
    check(http("POST", f"/admin/v2/namespaces/{tenant}/ns1/messageTTL", -5)[0] == 400, "negative ttl")
    ok(http("POST", f"/admin/v2/namespaces/{tenant}/ns1/deduplication", True)[0], "dedup")
    check(http("GET", f"/admin/v2/namespaces/{tenant}/ns1")[1]["deduplicationEnabled"] is True, "policies")
    # Topics.
    ok(http("PUT", f"/admin/v2/persistent/{tenant}/ns1/t1")[0], "create topic")
    check(http("PUT", f"/admin/v2/persistent/{tenant}/ns1/t1")[0] == 409, "topic twice")
    check(http("PUT", f"/admin/v2/persistent/{tenant}/ns1/p1/partitions", 0)[0] == 400, "zero partitions")
    ok(http("PUT", f"/admin/v2/persistent/{tenant}/ns1/p1/partitions", 2)[0], "partitioned")
    check(http("GET", f"/admin/v2/persistent/{tenant}/ns1/partitioned")[1] == [f"persistent://{tenant}/ns1/p1"], "partitioned list")
    c = client()
    t1 = f"persistent://{tenant}/ns1/t1"
    consumer = c.subscribe(t1, "s1")
    producer = c.create_producer(t1)
    for i in range(10):
        producer.send(b"x" * 100)
    s, stats = http("GET", f"/admin/v2/persistent/{tenant}/ns1/t1/stats")
    check(s == 200 and stats["msgInCounter"] == 10, f"stats {stats}")
    check(stats["subscriptions"]["s1"]["msgBacklog"] == 10, f"backlog {stats['subscriptions']}")
    check(len(stats["publishers"]) == 1 and len(stats["subscriptions"]["s1"]["consumers"]) == 1, "clients in stats")
    s, internal = http("GET", f"/admin/v2/persistent/{tenant}/ns1/t1/internalStats")
    check(s == 200 and internal["numberOfEntries"] == 10 and "s1" in internal["cursors"], f"internal {internal}")
    check(http("GET", f"/admin/v2/persistent/{tenant}/ns1/t1/subscriptions")[1] == ["s1"], "subscriptions")
    check(http("GET", f"/admin/v2/persistent/{tenant}/ns1/nope/stats")[0] == 404, "stats of missing topic")
    check(http("DELETE", f"/admin/v2/persistent/{tenant}/ns1/t1")[0] == 412, "delete topic in use")
    check(http("DELETE", f"/admin/v2/namespaces/{tenant}/ns1")[0] == 412, "delete non-empty namespace")
    check(http("DELETE", f"/admin/v2/tenants/{tenant}")[0] == 409, "delete tenant with namespaces")
    c.close()
    ok(http("DELETE", f"/admin/v2/persistent/{tenant}/ns1/t1")[0], "delete topic")
    ok(http("DELETE", f"/admin/v2/persistent/{tenant}/ns1/p1/partitions")[0], "delete partitioned")
    check(http("GET", f"/admin/v2/persistent/{tenant}/ns1")[1] == [], "no topics left")
    ok(http("DELETE", f"/admin/v2/namespaces/{tenant}/ns1")[0], "delete namespace")
    ok(http("DELETE", f"/admin/v2/tenants/{tenant}")[0], "delete tenant")
    check(http("GET", "/admin/v2/nonsense")[0] == 404, "unknown path")
    # Unknown names over the binary protocol get clear errors.
    c = client()
    try:
        c.create_producer(f"persistent://{tenant}/missing-ns/t")
        raise AssertionError("producer on a missing namespace")
    except (pulsar.TopicNotFound, pulsar.LookupError, pulsar.ServiceUnitNotReady, pulsar.BrokerMetadataError):
        pass
    c.close()


def case_subscription_admin():
    """Create at a position, reset by id and by time, clear, expire."""
    c = client()
    t = topic("subadmin")
    name = t.rsplit("/", 1)[1]
    base = f"/admin/v2/persistent/public/default/{name}"
    p = c.create_producer(t, batching_enabled=False)
    ids = [p.send(f"m{i}".encode()) for i in range(10)]

    def backlog(sub):
        code, stats = http("GET", base + "/stats")
        check(code == 200, f"stats: {code} {stats}")
        return stats["subscriptions"][sub]["msgBacklog"]

    # Created at the 4th message: m3.. are its backlog.
    at = {"ledgerId": ids[3].ledger_id(), "entryId": ids[3].entry_id()}
    code, body = http("PUT", base + "/subscription/at-m3", at)
    check(code == 204, f"create at position: {code} {body}")
    check(backlog("at-m3") == 7, f"backlog after creating at m3: {backlog('at-m3')}")
    code, body = http("PUT", base + "/subscription/at-m3", at)
    check(code == 409, f"creating it again: {code} {body}")
    code, body = http("PUT", base + "/subscription/at-end")
    check(code == 204 and backlog("at-end") == 0, f"create at the end: {code} {body}")
    # Reset by id, then by time (0 = the beginning), clear, expire.
    code, body = http("POST", base + "/subscription/at-end/resetcursor", {"ledgerId": ids[8].ledger_id(), "entryId": ids[8].entry_id()})
    check(code == 204 and backlog("at-end") == 2, f"reset by id: {code} {body} backlog {backlog('at-end')}")
    code, body = http("POST", base + "/subscription/at-end/resetcursor/0")
    check(code == 204 and backlog("at-end") == 10, f"reset by time: {code} {body} backlog {backlog('at-end')}")
    cons = c.subscribe(t, "at-end")
    check(cons.receive(timeout_millis=10000).data() == b"m0", "reset consumer starts at m0")
    cons.close()
    code, body = http("POST", base + "/subscription/at-end/skip_all")
    check(code == 204 and backlog("at-end") == 0, f"clear backlog: {code} {body}")
    code, body = http("POST", base + "/subscription/at-m3/expireMessages/0")
    check(code == 204, f"expire: {code} {body}")
    deadline = time.time() + 10
    while backlog("at-m3") != 0 and time.time() < deadline:
        time.sleep(0.2)
    check(backlog("at-m3") == 0, f"expired backlog {backlog('at-m3')}")
    # Bad input changes nothing.
    for method, path, body, want in [
        ("POST", "/subscription/nope/skip_all", None, 404),
        ("POST", "/subscription/at-m3/resetcursor/yesterday", None, 400),
        ("POST", "/subscription/at-m3/resetcursor", {"ledgerId": -5, "entryId": 1}, 400),
        ("POST", "/subscription/at-m3/resetcursor", None, 400),
        ("POST", "/subscription/at-m3/expireMessages/soon", None, 400),
    ]:
        code, answer = http(method, base + path, body)
        check(code == want and answer.get("reason"), f"{method} {path}: {code} {answer}")
    check(backlog("at-m3") == 0, "bad requests changed the subscription")
    c.close()


def case_namespace_limits_and_auto_creation():
    """maxProducersPerTopic / maxConsumersPerTopic enforced; autoTopicCreation
    off refuses unknown topics, partitioned creates partitions."""
    ns = f"public/limits-{uuid.uuid4().hex[:6]}"
    base = f"/admin/v2/namespaces/{ns}"
    code, body = http("PUT", base)
    check(code == 204, f"create {ns}: {code} {body}")
    for path, bad in [("/maxProducersPerTopic", -1), ("/maxConsumersPerTopic", "x"), ("/autoTopicCreation", {"allowAutoTopicCreation": True, "topicType": "sideways"})]:
        code, body = http("POST", base + path, bad)
        check(code == 400 and body.get("reason"), f"{path} {bad!r}: {code} {body}")
    check(http("POST", base + "/maxProducersPerTopic", 1)[0] == 204, "set max producers")
    check(http("POST", base + "/maxConsumersPerTopic", 1)[0] == 204, "set max consumers")
    check(http("GET", base + "/maxProducersPerTopic") == (200, 1), "read max producers")
    c = client()
    t = f"persistent://{ns}/limited"
    p = c.create_producer(t)
    try:
        c.create_producer(t)
        raise AssertionError("a second producer passed maxProducersPerTopic=1")
    except pulsar.ProducerBusy:
        pass
    cons = c.subscribe(t, "one")
    try:
        c.subscribe(t, "two")
        raise AssertionError("a second consumer passed maxConsumersPerTopic=1")
    except pulsar.ConsumerBusy:
        pass
    # Lifting the limit takes effect on the loaded topic.
    check(http("DELETE", base + "/maxProducersPerTopic")[0] == 204, "remove max producers")
    c.create_producer(t).close()
    cons.close()
    p.close()
    # No auto-creation: an unknown topic is refused, a created one works.
    off = {"allowAutoTopicCreation": False, "topicType": "non-partitioned"}
    check(http("POST", base + "/autoTopicCreation", off)[0] == 204, "auto-creation off")
    try:
        c.create_producer(f"persistent://{ns}/unknown")
        raise AssertionError("auto-creation off, yet an unknown topic was created")
    except pulsar.TopicNotFound:
        pass
    check(http("PUT", f"/admin/v2/persistent/{ns}/made")[0] == 204, "create topic by admin")
    c.create_producer(f"persistent://{ns}/made").close()
    # Partitioned auto-creation.
    on = {"allowAutoTopicCreation": True, "topicType": "partitioned", "defaultNumPartitions": 3}
    check(http("POST", base + "/autoTopicCreation", on)[0] == 204, "partitioned auto-creation")
    t2 = f"persistent://{ns}/auto-parted"
    p2 = c.create_producer(t2)
    p2.send(b"x")
    code, md = http("GET", f"/admin/v2/persistent/{ns}/auto-parted/partitions")
    check(code == 200 and md["partitions"] == 3, f"partitions: {code} {md}")
    c.close()


def case_producer_access_modes():
    import threading

    c = client()
    t = topic("access")
    exclusive = c.create_producer(t, access_mode=pulsar.ProducerAccessMode.Exclusive)
    for mode in [pulsar.ProducerAccessMode.Shared, pulsar.ProducerAccessMode.Exclusive]:
        try:
            c.create_producer(t, access_mode=mode)
            raise AssertionError(f"{mode} producer accepted beside an exclusive one")
        except (pulsar.ProducerBusy, pulsar.ProducerFenced):
            pass
    # WaitForExclusive: created only once the exclusive producer has left.
    waited = {}

    def wait():
        p = c.create_producer(t, access_mode=pulsar.ProducerAccessMode.WaitForExclusive)
        waited["at"] = time.time()
        waited["producer"] = p

    th = threading.Thread(target=wait)
    th.start()
    time.sleep(1.0)
    check("at" not in waited, "WaitForExclusive producer became ready while another was exclusive")
    closed_at = time.time()
    exclusive.send(b"from-first")
    exclusive.close()
    th.join(15)
    check("at" in waited, "WaitForExclusive producer never became ready")
    check(waited["at"] - closed_at < 5, f"took {waited['at'] - closed_at:.1f}s after the first left")
    waited["producer"].send(b"from-second")
    consumer = c.subscribe(t, "sub", initial_position=InitialPosition.Earliest)
    check([m.data() for m in receive_all(consumer, 2)] == [b"from-first", b"from-second"], "both producers' messages")
    # ExclusiveWithFencing takes the topic from the current exclusive producer.
    fencing = c.create_producer(t, access_mode=pulsar.ProducerAccessMode.ExclusiveWithFencing)
    fencing.send(b"from-fencer")
    check(consumer.receive(timeout_millis=10000).data() == b"from-fencer", "fencing producer")
    c.close()


def case_restart_write():
    """Writes 100 messages, consumes and acks the first 40 (then exits)."""
    c = client()
    t = "persistent://public/default/restart-test"
    consumer = c.subscribe(t, "durable", initial_position=InitialPosition.Earliest)
    producer = c.create_producer(t)
    for i in range(100):
        producer.send(str(i).encode())
    for m in receive_all(consumer, 40):
        pass
    consumer.close()
    c.close()


def case_restart_read():
    c = client()
    t = "persistent://public/default/restart-test"
    consumer = c.subscribe(t, "durable")
    got = [int(m.data()) for m in receive_all(consumer, 60)]
    check(got == list(range(40, 100)), f"after restart: {got[:5]}...")
    expect_nothing(consumer)
    c.close()


# ---- namespace storage policies, subscription skip/peek, terminate ----------
# (run against a standalone that checks backlog quotas every 500 ms)


def quota_namespace(policy, limit_size=-1, limit_time=-1, kind="destination_storage"):
    """A fresh namespace with one backlog quota."""
    ns = f"public/quota-{uuid.uuid4().hex[:6]}"
    code, body = http("PUT", f"/admin/v2/namespaces/{ns}")
    check(code == 204, f"create {ns}: {code} {body}")
    set_quota(ns, policy, limit_size, limit_time, kind)
    return ns


def set_quota(ns, policy, limit_size=-1, limit_time=-1, kind="destination_storage"):
    quota = {"limitSize": limit_size, "limitTime": limit_time, "policy": policy}
    code, body = http("POST", f"/admin/v2/namespaces/{ns}/backlogQuota?backlogQuotaType={kind}", quota)
    check(code == 204, f"set quota: {code} {body}")
    code, body = http("GET", f"/admin/v2/namespaces/{ns}/backlogQuotaMap")
    check(code == 200 and body[kind]["policy"] == policy, f"quota map: {code} {body}")


def filled_namespace(c, name, n=20, **quota):
    """A namespace and topic whose backlog is filled before the quota is set
    (a check running mid-fill would rightly stop the filling producer)."""
    ns = f"public/quota-{uuid.uuid4().hex[:6]}"
    code, body = http("PUT", f"/admin/v2/namespaces/{ns}")
    check(code == 204, f"create {ns}: {code} {body}")
    t = f"persistent://{ns}/{name}"
    cons, p = fill_backlog(c, t, n=n)
    set_quota(ns, **quota)
    return t, cons, p


def backlog_of(t, sub):
    name = t.split("://", 1)[1]
    code, stats = http("GET", f"/admin/v2/persistent/{name}/stats")
    check(code == 200, f"stats: {code} {stats}")
    return stats["subscriptions"][sub]["msgBacklog"]


def case_backlog_quota_bad_input():
    ns = quota_namespace("producer_request_hold", limit_size=1 << 20)
    base = f"/admin/v2/namespaces/{ns}"
    for path, body in [
        ("/backlogQuota", {"limitSize": 1024, "policy": "drop_everything"}),
        ("/backlogQuota", {"limitSize": 0, "policy": "producer_exception"}),
        ("/backlogQuota?backlogQuotaType=message_age", {"limitSize": 10, "policy": "producer_exception"}),
        ("/backlogQuota?backlogQuotaType=sideways", {"limitSize": 10, "policy": "producer_exception"}),
        ("/backlogQuota", b"{not json"),
    ]:
        code, answer = http("POST", base + path, body)
        check(code == 400 and answer.get("reason"), f"POST {path} {body!r}: {code} {answer}")
    # A quota the retention could never let grow that large: 412.
    check(http("POST", base + "/retention", {"retentionTimeInMinutes": 10, "retentionSizeInMB": 1})[0] == 204, "retention")
    code, answer = http("POST", base + "/backlogQuota", {"limitSize": 2 << 20, "policy": "producer_exception"})
    check(code == 412, f"quota beyond retention: {code} {answer}")
    code, quotas = http("GET", base + "/backlogQuotaMap")
    check(quotas["destination_storage"]["limitSize"] == 1 << 20, f"bad requests changed the quota: {quotas}")
    check(http("POST", "/admin/v2/namespaces/public/nope/backlogQuota", {"limitSize": 1, "policy": "producer_exception"})[0] == 404, "unknown namespace")
    check(http("DELETE", base + "/backlogQuota")[0] == 204, "remove quota")
    check(http("GET", base + "/backlogQuotaMap") == (200, {}), "quota removed")


def fill_backlog(c, t, n=20, size=1024):
    """A subscription that reads nothing, and n messages of `size` bytes."""
    cons = c.subscribe(t, "slow", consumer_type=ConsumerType.Shared)
    p = c.create_producer(t, batching_enabled=False)
    for i in range(n):
        p.send(bytes([65 + i % 26]) * size)
    return cons, p


def case_backlog_quota_hold():
    c = client()
    t, cons, p = filled_namespace(c, "held", policy="producer_request_hold", limit_size=8 * 1024)
    # A new producer is refused at once; the connected one is let go by the
    # periodic check and its sends wait (the client holds them).
    try:
        c.create_producer(t)
        raise AssertionError("producer created over a producer_request_hold quota")
    except pulsar.ProducerBlockedQuotaExceededError:
        pass
    time.sleep(1.5)
    sent = []
    p.send_async(b"held-message", lambda res, mid: sent.append(res))
    time.sleep(2)
    check(sent == [], f"a send completed while the quota was exceeded: {sent}")
    # The consumer catches up: the producer comes back and the held send lands.
    receive_all(cons, 20)
    deadline = time.time() + 20
    while not sent and time.time() < deadline:
        time.sleep(0.1)
    check(sent == [pulsar.Result.Ok], f"held send after the backlog drained: {sent}")
    check(cons.receive(timeout_millis=10000).data() == b"held-message", "held message delivered")
    c.create_producer(t).close()
    c.close()


def case_backlog_quota_exception():
    c = client()
    t, cons, p = filled_namespace(c, "refused", policy="producer_exception", limit_size=8 * 1024)
    try:
        c.create_producer(t)
        raise AssertionError("producer created over a producer_exception quota")
    except pulsar.ProducerBlockedQuotaExceededException:
        pass
    time.sleep(1.5)
    try:
        p.send(b"refused")
        raise AssertionError("a send passed a producer_exception quota")
    except (pulsar.ProducerBlockedQuotaExceededException, pulsar.Timeout, pulsar.AlreadyClosed):
        pass
    # Nothing that was refused is stored.
    got = [m.data() for m in receive_all(cons, 20)]
    expect_nothing(cons)
    check(len(got) == 20 and b"refused" not in got, "refused send was stored")
    c.close()


def case_backlog_quota_eviction():
    c = client()
    t, cons, p = filled_namespace(c, "evicted", n=40, policy="consumer_backlog_eviction", limit_size=8 * 1024)
    # Closed so that nothing is prefetched: what it reads next comes from the
    # subscription as eviction left it.
    cons.close()
    c.create_producer(t).close()  # eviction never blocks producers
    deadline = time.time() + 10
    while backlog_of(t, "slow") > 8 and time.time() < deadline:
        time.sleep(0.2)
    left = backlog_of(t, "slow")
    check(0 < left <= 8, f"backlog after eviction: {left}")
    # The newest messages are the ones kept.
    cons = c.subscribe(t, "slow", consumer_type=ConsumerType.Shared)
    got = [m.data()[:1] for m in receive_all(cons, left)]
    want = [bytes([65 + i % 26]) for i in range(40 - left, 40)]
    check(got == want, f"kept {got}, want {want}")
    p.send(b"after")
    check(cons.receive(timeout_millis=10000).data() == b"after", "producing after eviction")
    c.close()


def case_backlog_quota_age():
    c = client()
    t, cons, p = filled_namespace(c, "aged", n=3, policy="producer_exception", limit_time=1, kind="message_age")
    c.create_producer(t).close()  # young backlog: allowed
    time.sleep(2)
    try:
        c.create_producer(t)
        raise AssertionError("producer created over a message_age quota")
    except pulsar.ProducerBlockedQuotaExceededException:
        pass
    receive_all(cons, 3)
    time.sleep(0.5)
    c.create_producer(t).close()
    c.close()


def case_skip_and_peek():
    c = client()
    t = topic("peek")
    name = t.split("://", 1)[1]
    sub = f"/admin/v2/persistent/{name}/subscription/s"
    c.subscribe(t, "s").close()
    p = c.create_producer(t, batching_enabled=False)
    ids = [p.send(f"m{i}".encode(), properties={"n": str(i)}, partition_key=f"k{i}") for i in range(5)]
    req = urllib.request.Request(WEB + sub + "/position/1")
    with urllib.request.urlopen(req, timeout=30) as r:
        body, headers = r.read(), r.headers
    check(body == b"m0", f"peek 1: {body!r}")
    check(headers["X-Pulsar-Message-ID"] == f"{ids[0].ledger_id()}:{ids[0].entry_id()}", f"id header {headers['X-Pulsar-Message-ID']}")
    check(headers["X-Pulsar-PROPERTY-n"] == "0" and headers["X-Pulsar-partition-key"] == "k0", f"headers {dict(headers)}")
    code, answer = http("POST", sub + "/skip/2")
    check(code == 204, f"skip: {code} {answer}")
    check(backlog_of(t, "s") == 3, f"backlog after skip {backlog_of(t, 's')}")
    with urllib.request.urlopen(urllib.request.Request(WEB + sub + "/position/2"), timeout=30) as r:
        check(r.read() == b"m3", "peek 2 after skipping 2")
    # -1:-1 is Pulsar's MessageId.earliest.
    code, answer = http("POST", sub + "/resetcursor", {"ledgerId": -1, "entryId": -1})
    check(code == 204 and backlog_of(t, "s") == 5, f"reset to earliest: {code} {answer} {backlog_of(t, 's')}")
    check(http("POST", sub + "/skip/2")[0] == 204 and backlog_of(t, "s") == 3, "skip again")
    for method, path, want in [
        ("GET", "/position/9", 404),
        ("GET", "/position/0", 400),
        ("GET", "/position/x", 400),
        ("POST", "/skip/-1", 400),
        ("POST", "/skip/many", 400),
    ]:
        code, answer = http(method, sub + path)
        check(code == want and answer.get("reason"), f"{method} {path}: {code} {answer}")
    code, answer = http("POST", f"/admin/v2/persistent/{name}/subscription/nope/skip/1")
    check(code == 404, f"skip on unknown subscription: {code}")
    check(backlog_of(t, "s") == 3, "bad requests changed the backlog")
    cons = c.subscribe(t, "s")
    check([m.data() for m in receive_all(cons, 3)] == [b"m2", b"m3", b"m4"], "consume after skip")
    c.close()


def case_terminate():
    c = client()
    t = topic("terminated")
    name = t.split("://", 1)[1]
    cons = c.subscribe(t, "s")
    p = c.create_producer(t, batching_enabled=False)
    ids = [p.send(f"m{i}".encode()) for i in range(3)]
    code, last = http("POST", f"/admin/v2/persistent/{name}/terminate")
    check(code == 200 and (last["ledgerId"], last["entryId"]) == (ids[-1].ledger_id(), ids[-1].entry_id()), f"terminate: {code} {last}")
    try:
        p.send(b"late")
        raise AssertionError("send to a terminated topic succeeded")
    except pulsar.TopicTerminated:
        pass
    try:
        c.create_producer(t)
        raise AssertionError("producer created on a terminated topic")
    except pulsar.TopicTerminated:
        pass
    check([m.data() for m in receive_all(cons, 3)] == [b"m0", b"m1", b"m2"], "consume what was written")
    expect_nothing(cons)
    # Terminating again answers the same id; an unknown topic is 404.
    check(http("POST", f"/admin/v2/persistent/{name}/terminate") == (200, last), "terminate twice")
    check(http("POST", "/admin/v2/persistent/public/default/nope-never/terminate")[0] == 404, "terminate unknown")
    # It stays terminated when loaded again.
    check(http("PUT", f"/admin/v2/persistent/{name}/unload")[0] == 204, "unload")
    try:
        c.create_producer(t)
        raise AssertionError("producer created on a terminated topic after reload")
    except pulsar.TopicTerminated:
        pass
    c.close()


def case_offload_policies():
    ns = f"public/offload-{uuid.uuid4().hex[:6]}"
    base = f"/admin/v2/namespaces/{ns}"
    check(http("PUT", base)[0] == 204, "create namespace")
    check(http("GET", base + "/offloadPolicies") == (200, None), "no policies yet")
    good = {"managedLedgerOffloadDriver": "aws-s3", "s3ManagedLedgerOffloadBucket": "b",
            "s3ManagedLedgerOffloadRegion": "eu-west-1", "managedLedgerOffloadThresholdInBytes": 1 << 30}
    check(http("POST", base + "/offloadPolicies", good)[0] == 204, "set offload policies")
    code, got = http("GET", base + "/offloadPolicies")
    check(code == 200 and got["s3ManagedLedgerOffloadBucket"] == "b" and got["managedLedgerOffloadThresholdInBytes"] == 1 << 30, f"read back: {got}")
    for bad in [{"managedLedgerOffloadDriver": "floppy"}, {"managedLedgerOffloadDriver": "aws-s3"},
                {"managedLedgerOffloadDriver": "filesystem"}, {"s3ManagedLedgerOffloadBucket": "b"},
                {"managedLedgerOffloadDriver": "aws-s3", "s3ManagedLedgerOffloadBucket": "b", "managedLedgerOffloadThresholdInBytes": -7}]:
        code, answer = http("POST", base + "/offloadPolicies", bad)
        check(code == 400 and answer.get("reason"), f"{bad}: {code} {answer}")
    check(http("GET", base + "/offloadPolicies")[1] == got, "bad requests changed the policies")
    check(http("DELETE", base + "/removeOffloadPolicies")[0] == 204, "remove")
    check(http("GET", base + "/offloadPolicies") == (200, None), "removed")
    check(http("GET", "/admin/v2/namespaces/public/nope/offloadPolicies")[0] == 404, "unknown namespace")


CASES = {name[5:]: fn for name, fn in globals().items() if name.startswith("case_")}

if __name__ == "__main__":
    for name in sys.argv[1:]:
        fn = CASES[name]
        started = time.time()
        fn()
        print(f"ok {name} ({time.time() - started:.1f}s)", flush=True)

"""Broker-cluster cases run with the official Apache Pulsar Python client.

Usage: cluster.py MODE [options]   (PULSAR_URL may list several brokers,
pulsar://a:1,b:2; PULSAR_WEB is one broker's HTTP address)

Modes:
  produce   producers on N topics send numbered messages for a while and
            record what was acknowledged (the Rust test kills brokers
            meanwhile)
  verify    reads every topic back and checks that every acknowledged
            message is there, in order
  paused    a broker is paused past its lease, the topic moves, the broker
            resumes: its late writes must fail and it must drop the topic
  move      Failover and Key_Shared subscriptions across bundle unload and
            split

Each mode raises on any deviation; the Rust test fails with the output.
"""

import argparse
import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid

import pulsar
from pulsar import ConsumerType, InitialPosition

URL = os.environ["PULSAR_URL"]
WEB = os.environ["PULSAR_WEB"]
LOGGER = pulsar.ConsoleLogger(getattr(pulsar.LoggerLevel, os.environ.get("PULSAR_LOG", "Warn")))


def client(url=URL):
    return pulsar.Client(url, operation_timeout_seconds=30, logger=LOGGER)


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def http(method, path, body=None, web=WEB, follow=True):
    data = None
    headers = {}
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(web + path, data=data, method=method, headers=headers)
    opener = urllib.request.build_opener() if follow else urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=30) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None), lower_keys(r.headers)
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw
        return e.code, body, lower_keys(e.headers)


def lower_keys(headers):
    return {k.lower(): v for k, v in headers.items()}


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def topic_names(ns, prefix, n):
    return [f"persistent://{ns}/{prefix}-{i}" for i in range(n)]


def lookup(t, web=WEB):
    path = "/lookup/v2/topic/" + t.replace("persistent://", "persistent/")
    code, body, _ = http("GET", path, web=web)
    check(code == 200, f"lookup {t}: {code} {body}")
    return body


# ---- setup ---------------------------------------------------------------------


def mode_namespace(a):
    path = "/admin/v2/namespaces/" + a.ns
    code, body, _ = http("PUT", path, {"bundles": {"numBundles": a.bundles}})
    check(code == 204, f"create {a.ns}: {code} {body}")
    code, bundles, _ = http("GET", path + "/bundles")
    check(code == 200 and bundles["numBundles"] == a.bundles, f"bundles of {a.ns}: {code} {bundles}")
    if a.dedup:
        code, body, _ = http("POST", path + "/deduplication", True)
        check(code == 204, f"enable deduplication: {code} {body}")
    print(json.dumps(bundles))


# ---- produce / verify --------------------------------------------------------


def mode_produce(a):
    topics = topic_names(a.ns, a.prefix, a.topics)
    c = client()
    # A durable subscription keeps everything as backlog for `verify`
    # (without one, retention may delete what nobody needs).
    for t in topics:
        c.subscribe(t, "verify", consumer_type=ConsumerType.Shared).close()
    producers = [
        c.create_producer(
            t,
            producer_name=f"p-{i}",
            batching_enabled=False,
            send_timeout_millis=a.send_timeout_ms,
            block_if_queue_full=True,
            max_pending_messages=200,
        )
        for i, t in enumerate(topics)
    ]
    acked = {t: [] for t in topics}
    errors = []
    lock = threading.Lock()
    # The longest time any topic went without an acknowledgement: how long
    # it was unavailable across the faults.
    last_ack = {t: time.monotonic() for t in topics}
    max_gap = {t: 0.0 for t in topics}

    def callback(t, seq):
        def done(res, msg_id):
            with lock:
                if res == pulsar.Result.Ok:
                    acked[t].append(seq)
                    now = time.monotonic()
                    max_gap[t] = max(max_gap[t], now - last_ack[t])
                    last_ack[t] = now
                else:
                    errors.append(f"{t} #{seq}: {res}")

        return done

    # Every topic has at least one acknowledged message before the faults.
    for t, p in zip(topics, producers):
        p.send(f"{t}:0".encode())
        acked[t].append(0)
        last_ack[t] = time.monotonic()
    if a.ready:
        with open(a.ready, "w") as f:
            f.write("ready")
    seq = 1
    deadline = time.time() + a.duration
    interval = 1.0 / a.rate if a.rate > 0 else 0
    while time.time() < deadline:
        for t, p in zip(topics, producers):
            p.send_async(f"{t}:{seq}".encode(), callback(t, seq))
        seq += 1
        if interval:
            time.sleep(interval)
    for p in producers:
        p.flush()
    for p in producers:
        p.close()
    c.close()
    total = sum(len(v) for v in acked.values())
    with open(a.out, "w") as f:
        json.dump({"acked": acked, "errors": errors, "sent_rounds": seq}, f)
    print(json.dumps({"acked": total, "rounds": seq, "errors": len(errors),
                      "max_gap_s": round(max(max_gap.values()), 2)}))
    check(not errors, f"send errors surfaced to the application: {errors[:10]}")


def mode_verify(a):
    with open(a.acked) as f:
        acked = json.load(f)["acked"]
    c = client()
    duplicates = 0
    for t, seqs in acked.items():
        want = set(seqs)
        r = c.subscribe(t, "verify", consumer_type=ConsumerType.Exclusive, receiver_queue_size=1000)
        seen = []
        pending = set(want)
        while True:
            try:
                # Quick once everything acknowledged is in (only duplicates
                # could still come); patient before.
                m = r.receive(timeout_millis=500 if not pending else 10000)
            except pulsar.Timeout:
                break
            r.acknowledge(m)
            name, _, n = m.data().decode().rpartition(":")
            check(name == t, f"{t}: message of another topic {m.data()!r}")
            seen.append(int(n))
            pending.discard(int(n))
        r.close()
        first = []
        known = set()
        for n in seen:
            if n in known:
                duplicates += 1
            else:
                known.add(n)
                first.append(n)
        missing = want - known
        check(not missing, f"{t}: {len(missing)} acknowledged messages lost, e.g. {sorted(missing)[:10]}")
        check(first == sorted(first), f"{t}: producer order broken: {first[:50]}")
    c.close()
    print(json.dumps({"topics": len(acked), "duplicates": duplicates}))
    if a.no_duplicates:
        check(duplicates == 0, f"{duplicates} duplicates with deduplication enabled")


# ---- paused broker -------------------------------------------------------------


def mode_paused(a):
    """PULSAR_URL lists every broker (pulsar://a:1,b:2); --pids and --webs give
    each broker's pid and HTTP address in the same order."""
    pids = [int(p) for p in a.pids.split(",")]
    webs = a.webs.split(",")
    t = f"persistent://{a.ns}/paused-{uuid.uuid4().hex[:8]}"
    c1 = client()
    p1 = c1.create_producer(t, producer_name="before", batching_enabled=False, send_timeout_millis=60000)
    for i in range(10):
        p1.send(f"before:{i}".encode())
    owner = lookup(t)["httpUrl"]
    idx = webs.index(owner)
    others = [w for i, w in enumerate(webs) if i != idx]
    os.kill(pids[idx], signal.SIGSTOP)
    # Stopped for sure before anything is sent: otherwise the broker may
    # still store a "late" message (the client then resends it unacked: a
    # legitimate duplicate, but not what this case is about).
    wait_stopped(pids[idx])
    try:
        # These reach the paused broker's socket and wait there.
        late = []
        lock = threading.Lock()
        for i in range(5):
            def done(res, msg_id, i=i):
                with lock:
                    late.append((i, res))
            p1.send_async(f"late:{i}".encode(), done)
        time.sleep(a.ttl + 3)
        # The bundle is free now: another broker takes the topic.
        natives = URL.replace("pulsar://", "").split(",")
        c2 = client("pulsar://" + ",".join(n for i, n in enumerate(natives) if i != idx))
        p2 = c2.create_producer(t, producer_name="after", batching_enabled=False, send_timeout_millis=60000)
        for i in range(10):
            p2.send(f"after:{i}".encode())
        new_owner = lookup(t, web=others[0])["httpUrl"]
        check(new_owner != owner, f"topic still owned by the paused broker {owner}")
    finally:
        os.kill(pids[idx], signal.SIGCONT)
    # The resumed broker's queued writes must fail (fenced) and the client
    # must resend them to the new owner.
    p1.flush()
    deadline = time.time() + 60
    while len(late) < 5 and time.time() < deadline:
        time.sleep(0.1)
    check(sorted(late) == [(i, pulsar.Result.Ok) for i in range(5)], f"late sends: {late}")
    # The resumed broker no longer serves the topic: it redirects.
    code, body, headers = http(
        "GET", "/admin/v2/" + t.replace("persistent://", "persistent/") + "/stats", web=owner, follow=False
    )
    check(code == 307, f"resumed broker still answers for the topic: {code} {body}")
    check(headers.get("location", "").startswith(new_owner), f"redirect to {headers.get('location')}")
    # One log: every message exactly once.
    r = c2.create_reader(t, pulsar.MessageId.earliest)
    got = []
    while True:
        try:
            got.append(r.read_next(timeout_millis=3000).data().decode())
        except pulsar.Timeout:
            break
    want = sorted([f"before:{i}" for i in range(10)] + [f"after:{i}" for i in range(10)] + [f"late:{i}" for i in range(5)])
    check(sorted(got) == want, f"log after the pause: {got}")
    check(got[:10] == [f"before:{i}" for i in range(10)], f"log starts {got[:10]}")
    c1.close()
    c2.close()
    print(json.dumps({"messages": len(got), "first_owner": owner, "new_owner": new_owner}))


def wait_stopped(pid):
    deadline = time.time() + 10
    while time.time() < deadline:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        if state in ("T", "t"):
            return
        time.sleep(0.01)
    raise AssertionError(f"broker {pid} did not stop")


# ---- subscriptions across moves -------------------------------------------------


def mode_move(a):
    t = f"persistent://{a.ns}/move-{uuid.uuid4().hex[:8]}"
    c = client()
    received = []  # (time, subscription, consumer, key, seq)
    lock = threading.Lock()

    def listener(sub, name):
        def on_message(consumer, msg):
            key, _, n = msg.data().decode().partition(":")
            with lock:
                received.append((time.monotonic(), sub, name, key, int(n)))
            consumer.acknowledge(msg)

        return on_message

    consumers = []
    for sub, kind in (("fo", ConsumerType.Failover), ("ks", ConsumerType.KeyShared)):
        for name in ("a", "b"):
            consumers.append(
                c.subscribe(
                    t,
                    sub,
                    consumer_type=kind,
                    consumer_name=name,
                    initial_position=InitialPosition.Earliest,
                    message_listener=listener(sub, name),
                )
            )
    p = c.create_producer(t, batching_enabled=False, send_timeout_millis=60000)
    keys = [f"k{i}" for i in range(8)]
    total = 0

    def produce(n):
        nonlocal total
        for _ in range(n):
            k = keys[total % len(keys)]
            p.send(f"{k}:{total}".encode(), partition_key=k)
            total += 1

    produce(200)
    moves = []
    # Unload the topic's bundle at its owner; clients follow to wherever the
    # bundle lands.
    info = lookup(t)
    ns_path = "/admin/v2/namespaces/" + a.ns
    code, bundles, _ = http("GET", ns_path + "/bundles")
    check(code == 200, f"bundles: {code} {bundles}")
    bundle = find_bundle(t, bundles["boundaries"])
    started = time.monotonic()
    code, body, _ = http("PUT", f"{ns_path}/{bundle}/unload", web=info["httpUrl"])
    check(code == 204, f"unload: {code} {body}")
    produce(1)
    moves.append(("unload", time.monotonic() - started))
    produce(199)
    # Split the bundle (halves unloaded): the topic moves again.
    code, bundles, _ = http("GET", ns_path + "/bundles")
    bundle = find_bundle(t, bundles["boundaries"])
    info = lookup(t)
    started = time.monotonic()
    code, body, _ = http("PUT", f"{ns_path}/{bundle}/split?unload=true", web=info["httpUrl"])
    check(code == 204, f"split: {code} {body}")
    produce(1)
    moves.append(("split", time.monotonic() - started))
    code, after, _ = http("GET", ns_path + "/bundles")
    check(len(after["boundaries"]) == len(bundles["boundaries"]) + 1, f"split did not add a bundle: {after}")
    produce(199)
    deadline = time.time() + 60
    while time.time() < deadline:
        with lock:
            done = {s: {n for (_, sub, _, _, n) in received if sub == s} for s in ("fo", "ks")}
        if all(len(v) == total for v in done.values()):
            break
        time.sleep(0.2)
    with lock:
        got = sorted(received)
    for s in ("fo", "ks"):
        seen = {n for (_, sub, _, _, n) in got if sub == s}
        check(len(seen) == total, f"{s}: received {len(seen)} of {total} messages")
    # Failover: one consumer at a time, messages in order.
    first = []
    known = set()
    for (_, sub, _, _, n) in got:
        if sub == "fo" and n not in known:
            known.add(n)
            first.append(n)
    check(first == sorted(first), f"failover order broken: {first[:60]}")
    # Key_Shared: per key, first deliveries in order.
    for k in keys:
        known = set()
        first = []
        for (_, sub, _, key, n) in got:
            if sub == "ks" and key == k and n not in known:
                known.add(n)
                first.append(n)
        check(first == sorted(first), f"key {k} out of order: {first}")
    for con in consumers:
        con.close()
    c.close()
    # Each move's first publish after the admin call, seconds.
    print(json.dumps({"messages": total, "moves": moves}))
    for what, secs in moves:
        check(secs < 5, f"publish after {what} took {secs:.2f} s")


# ---- advertised listeners -------------------------------------------------------


def mode_listeners(a):
    t = f"persistent://{a.ns}/listener-{uuid.uuid4().hex[:8]}"
    c = pulsar.Client(URL, operation_timeout_seconds=10, logger=LOGGER, listener_name=a.listener)
    p = c.create_producer(t)
    p.send(b"via the named listener")
    c.close()
    # A listener the broker does not have: lookups fail, nothing connects.
    c = pulsar.Client(URL, operation_timeout_seconds=5, logger=LOGGER, listener_name="no-such-listener")
    try:
        c.create_producer(t)
        raise AssertionError("a lookup for an unknown listener succeeded")
    except pulsar.PulsarException as e:
        print(f"unknown listener refused: {e}")
        check("TimeOut" not in str(e), f"no clear error for an unknown listener: {e}")
    c.close()


def find_bundle(t, boundaries):
    h = crc32c(t.encode())
    bounds = [int(b, 16) for b in boundaries]
    for lo, hi in zip(bounds, bounds[1:]):
        if lo <= h < hi or (hi == 0xFFFFFFFF and h == hi):
            return f"0x{lo:08x}_0x{hi:08x}"
    raise AssertionError(f"no bundle for hash {h:#x}")


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["namespace", "produce", "verify", "paused", "move", "listeners"])
    ap.add_argument("--listener")
    ap.add_argument("--bundles", type=int, default=4)
    ap.add_argument("--dedup", action="store_true")
    ap.add_argument("--ns", default="public/default")
    ap.add_argument("--prefix", default="t")
    ap.add_argument("--topics", type=int, default=20)
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--rate", type=float, default=50, help="rounds per second")
    ap.add_argument("--send-timeout-ms", type=int, default=30000)
    ap.add_argument("--ready")
    ap.add_argument("--out")
    ap.add_argument("--acked")
    ap.add_argument("--no-duplicates", action="store_true")
    ap.add_argument("--pids")
    ap.add_argument("--webs")
    ap.add_argument("--ttl", type=float, default=3)
    a = ap.parse_args()
    {"namespace": mode_namespace, "produce": mode_produce, "verify": mode_verify, "paused": mode_paused, "move": mode_move, "listeners": mode_listeners}[a.mode](a)


if __name__ == "__main__":
    main()

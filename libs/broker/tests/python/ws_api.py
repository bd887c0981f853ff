"""Pulsar's WebSocket API and REST producer, checked against the official
Python client.

Usage: ws_api.py CASE [CASE...]   (PULSAR_URL and PULSAR_WEB name the service)

Messages produced over WebSocket are consumed with the official client and
the other way round; bad frames get an error reply and the socket stays
usable. Each case raises on any deviation.
"""

import base64
import json
import os
import sys
import urllib.error
import urllib.request
import uuid

import pulsar
import websocket  # websocket-client from PyPI

URL = os.environ["PULSAR_URL"]
WEB = os.environ["PULSAR_WEB"]
WS = WEB.replace("http://", "ws://")
LOGGER = pulsar.ConsoleLogger(getattr(pulsar.LoggerLevel, os.environ.get("PULSAR_LOG", "Warn")))


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def topic(name):
    return f"{name}-{uuid.uuid4().hex[:8]}"


def client():
    return pulsar.Client(URL, operation_timeout_seconds=15, logger=LOGGER)


def connect(path):
    return websocket.create_connection(WS + path, timeout=15)


def b64(data):
    return base64.b64encode(data).decode()


def ws_id_to_pulsar(s):
    return pulsar.MessageId.deserialize(base64.b64decode(s))


def case_ws_produce_python_consume():
    t = topic("ws-in")
    c = client()
    consumer = c.subscribe(f"persistent://public/default/{t}", "py")
    ws = connect(f"/ws/v2/producer/persistent/public/default/{t}")
    ids = []
    for i in range(20):
        ws.send(json.dumps({
            "payload": b64(f"m{i}".encode()),
            "properties": {"i": str(i)},
            "key": f"k{i % 3}",
            "context": f"ctx-{i}",
        }))
    for i in range(20):
        r = json.loads(ws.recv())
        check(r["result"] == "ok", f"send {i}: {r}")
        check(r["context"] == f"ctx-{i}", f"answers out of order: {r}")
        ids.append(str(ws_id_to_pulsar(r["messageId"])))
    ws.close()
    for i in range(20):
        m = consumer.receive(timeout_millis=10000)
        check(m.data() == f"m{i}".encode(), f"payload {i}: {m.data()!r}")
        check(m.properties() == {"i": str(i)}, f"properties {m.properties()}")
        check(m.partition_key() == f"k{i % 3}", f"key {m.partition_key()}")
        check(str(m.message_id()) == ids[i], f"message id {m.message_id()} != {ids[i]}")
        consumer.acknowledge(m)
    c.close()


def case_python_produce_ws_consume_with_acks_and_nacks():
    t = topic("ws-out")
    ws = connect(f"/ws/v2/consumer/persistent/public/default/{t}/wsub?subscriptionType=Shared&receiverQueueSize=10")
    c = client()
    p = c.create_producer(f"persistent://public/default/{t}", batching_enabled=False)
    for i in range(10):
        p.send(f"n{i}".encode(), properties={"i": str(i)}, partition_key="key")
    got = []
    nacked = None
    while len(got) < 10:
        m = json.loads(ws.recv())
        data = base64.b64decode(m["payload"]).decode()
        check(m["properties"]["i"] == data[1:], f"properties {m}")
        check(m["key"] == "key", f"key {m}")
        if data == "n3" and nacked is None:
            nacked = m["messageId"]
            ws.send(json.dumps({"type": "negativeAcknowledge", "messageId": m["messageId"]}))
            continue
        if data == "n3":
            check(m["redeliveryCount"] >= 1, f"redelivered without a count: {m}")
        ws.send(json.dumps({"messageId": m["messageId"]}))
        got.append(data)
    check(sorted(got) == sorted(f"n{i}" for i in range(10)), f"received {got}")
    # A bad command gets an error reply and the session goes on.
    ws.send("{not json")
    r = json.loads(ws.recv())
    check(r.get("result") == "error" and r.get("errorMsg"), f"bad command answer {r}")
    ws.send(json.dumps({"messageId": "%%%"}))
    r = json.loads(ws.recv())
    check(r.get("result") == "error", f"bad id answer {r}")
    p.send(b"after the errors")
    m = json.loads(ws.recv())
    check(base64.b64decode(m["payload"]) == b"after the errors", f"{m}")
    ws.send(json.dumps({"messageId": m["messageId"]}))
    ws.close()
    c.close()


def case_bad_producer_frames_keep_the_socket():
    t = topic("ws-bad")
    ws = connect(f"/ws/v2/producer/persistent/public/default/{t}")
    ws.send("{not json")
    r = json.loads(ws.recv())
    check(r["result"].startswith("send-error") and r["errorMsg"], f"{r}")
    ws.send(json.dumps({"payload": "%%%", "context": "c1"}))
    r = json.loads(ws.recv())
    check(r["result"].startswith("send-error") and r["context"] == "c1", f"{r}")
    ws.send(json.dumps({"payload": b64(b"fine"), "context": "c2"}))
    r = json.loads(ws.recv())
    check(r["result"] == "ok" and r["context"] == "c2", f"{r}")
    ws.close()


def case_reader_from_earliest_and_from_an_id():
    t = topic("ws-read")
    c = client()
    p = c.create_producer(f"persistent://public/default/{t}", batching_enabled=False)
    ids = [p.send(f"r{i}".encode()) for i in range(5)]
    ws = connect(f"/ws/v2/reader/persistent/public/default/{t}?messageId=earliest")
    got = [base64.b64decode(json.loads(ws.recv())["payload"]).decode() for _ in range(5)]
    check(got == [f"r{i}" for i in range(5)], f"reader got {got}")
    ws.close()
    start = b64(ids[1].serialize())
    ws = connect(f"/ws/v2/reader/persistent/public/default/{t}?messageId={start}")
    got = [base64.b64decode(json.loads(ws.recv())["payload"]).decode() for _ in range(3)]
    check(got == ["r2", "r3", "r4"], f"reader after r1 got {got}")
    ws.close()
    c.close()


def case_bad_parameters_close_the_socket_with_a_reason():
    t = topic("ws-param")
    ws = connect(f"/ws/v2/consumer/persistent/public/default/{t}/s?subscriptionType=Sideways")
    try:
        got = ws.recv()
        check(not got, f"a consumer with an unknown subscription type was accepted: {got!r}")
    except websocket.WebSocketConnectionClosedException:
        pass


def post(path, body):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(WEB + path, data=data, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def case_rest_produce_python_consume():
    t = topic("rest")
    c = client()
    consumer = c.subscribe(f"persistent://public/default/{t}", "py")
    code, body = post(f"/topics/persistent/public/default/{t}", {
        "producerName": "rest-1",
        "messages": [{"payload": f"hello {i}", "key": "k", "properties": {"i": str(i)}} for i in range(5)],
    })
    check(code == 200, f"{code} {body}")
    results = body["messagePublishResults"]
    check(len(results) == 5 and all(r["errorCode"] == 0 for r in results), f"{body}")
    for i in range(5):
        m = consumer.receive(timeout_millis=10000)
        check(m.data() == f"hello {i}".encode(), f"{m.data()!r}")
        check(m.properties() == {"i": str(i)} and m.partition_key() == "k", f"{m.properties()}")
        ledger, entry = results[i]["messageId"].split(":")[:2]
        check((m.message_id().ledger_id(), m.message_id().entry_id()) == (int(ledger), int(entry)), f"id {results[i]} vs {m.message_id()}")
        consumer.acknowledge(m)
    c.close()


def case_rest_produce_to_partitions():
    t = topic("rest-parted")
    req = urllib.request.Request(f"{WEB}/admin/v2/persistent/public/default/{t}/partitions", data=b"3", method="PUT", headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=30).read()
    code, body = post(f"/topics/persistent/public/default/{t}", {
        "messages": [{"payload": f"m{i}", "partition": i % 3} for i in range(6)],
    })
    check(code == 200, f"{code} {body}")
    ids = [r["messageId"] for r in body["messagePublishResults"]]
    check([int(i.split(":")[2]) for i in ids] == [0, 1, 2, 0, 1, 2], f"partitions of {ids}")
    code, body = post(f"/topics/persistent/public/default/{t}/partitions/2", {"messages": [{"payload": "direct"}]})
    check(code == 200 and body["messagePublishResults"][0]["messageId"].split(":")[2] == "2", f"{code} {body}")
    code, body = post(f"/topics/persistent/public/default/{t}/partitions/7", {"messages": [{"payload": "x"}]})
    check(code == 400, f"partition out of range: {code} {body}")


def case_rest_produce_bad_input():
    t = topic("rest-bad")
    for bad, want in [
        (b"{not json", 400),
        ({"messages": []}, 400),
        ({"messages": [{"key": "no payload"}]}, 400),
        ({"nothing": 1}, 400),
    ]:
        code, body = post(f"/topics/persistent/public/default/{t}", bad)
        check(code == want and body.get("reason"), f"{bad!r}: {code} {body}")
    code, body = post(f"/topics/persistent/public/no-such-ns/{t}", {"messages": [{"payload": "x"}]})
    check(code == 404, f"unknown namespace: {code} {body}")
    code, body = post(f"/topics/persistent/public/default/{t}/partitions/0", {"messages": [{"payload": "x"}]})
    check(code == 400, f"partition of a non-partitioned topic: {code} {body}")


def case_sessions_survive_a_topic_unload():
    """The WebSocket sessions' client re-attaches when the topic moves."""
    t = topic("ws-moved")
    wp = connect(f"/ws/v2/producer/persistent/public/default/{t}")
    wc = connect(f"/ws/v2/consumer/persistent/public/default/{t}/moved?subscriptionType=Exclusive")

    def produce(first, n):
        for i in range(first, first + n):
            wp.send(json.dumps({"payload": b64(f"u{i}".encode()), "context": str(i)}))
        for i in range(first, first + n):
            r = json.loads(wp.recv())
            check(r["result"] == "ok" and r["context"] == str(i), f"send {i}: {r}")

    produce(0, 5)
    url = f"{WEB}/admin/v2/persistent/public/default/{t}/unload"
    for _ in range(3):
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method="PUT"), timeout=30) as r:
                check(r.status == 204, f"unload: {r.status}")
                break
        except urllib.error.HTTPError as e:
            # urllib follows no redirect of a PUT: the owner is elsewhere.
            check(e.code == 307, f"unload: {e.code} {e.read()!r}")
            url = e.headers["Location"]
    else:
        raise AssertionError("unload: too many redirects")
    produce(5, 5)
    got = set()
    while len(got) < 10:
        m = json.loads(wc.recv())
        got.add(base64.b64decode(m["payload"]).decode())
        wc.send(json.dumps({"messageId": m["messageId"]}))
    check(got == {f"u{i}" for i in range(10)}, f"consumed {sorted(got)}")
    wp.close()
    wc.close()


def main():
    names = sys.argv[1:] or [n[len("case_"):] for n in globals() if n.startswith("case_")]
    for name in names:
        globals()["case_" + name]()
        print(f"ok {name}")


if __name__ == "__main__":
    main()

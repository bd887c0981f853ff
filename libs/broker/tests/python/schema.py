"""Schema registry cases run with the official Apache Pulsar Python client.

Usage: schema.py CASE [CASE...]   (PULSAR_URL and PULSAR_WEB name the service)

Each case raises on any deviation from what a Pulsar broker does; the Rust
test that runs this script (tests/schema.rs) fails with the output.
"""

import functools
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid

import _pulsar
import pulsar
from pulsar.schema import AvroSchema, Integer, JsonSchema, Long, Record, Schema, String, StringSchema

URL = os.environ["PULSAR_URL"]
WEB = os.environ["PULSAR_WEB"]
LOGGER = pulsar.ConsoleLogger(getattr(pulsar.LoggerLevel, os.environ.get("PULSAR_LOG", "Warn")))


def client():
    return pulsar.Client(URL, operation_timeout_seconds=15, logger=LOGGER)


def name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def http(method, path, body=None):
    """One admin call; a redirect to the topic's broker (307, as Pulsar's)
    is followed with the same method and body."""
    data = None
    headers = {}
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    url = WEB + path
    for _ in range(5):
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                raw = r.read()
                return r.status, (json.loads(raw) if raw else None)
        except urllib.error.HTTPError as e:
            if e.code in (307, 308) and e.headers.get("Location"):
                url = urllib.parse.urljoin(url, e.headers["Location"])
                continue
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, raw
    raise AssertionError(f"{method} {path}: too many redirects")


def schema_path(ns, local, rest="schema"):
    return f"/admin/v2/schemas/{ns}/{local}/{rest}"


def expect_incompatible(fn, what):
    try:
        fn()
    except pulsar.IncompatibleSchema as e:
        print(f"  refused as expected ({what}): {e}")
        return
    raise AssertionError(f"{what}: accepted, expected IncompatibleSchema")


# Versions of one record (the Avro name is the class name, so each lives in
# its own function; cached, as the client checks values by class).
@functools.cache
def order_v1():
    class Order(Record):
        id = Long(required=True)
        item = String()

    return Order


@functools.cache
def order_v2_default():
    """v1 plus a field with a default: FULL allows it."""

    class Order(Record):
        id = Long(required=True)
        item = String()
        note = String(default=None, required_default=True)

    return Order


@functools.cache
def order_v3_required():
    """v1 plus a field without a default: old data cannot be read."""

    class Order(Record):
        id = Long(required=True)
        item = String()
        qty = Integer(required=True)

    return Order


@functools.cache
def order_retyped():
    """`id` became a string: nothing reads the other's data."""

    class Order(Record):
        id = String(required=True)
        item = String()

    return Order


@functools.cache
def order_dropped():
    """v1 without `item`: BACKWARD allows it, FORWARD and FULL do not
    (`item` has no default for an old reader)."""

    class Order(Record):
        id = Long(required=True)

    return Order


def avro_definition(cls):
    return json.dumps(cls.schema())


class RawSchema(Schema):
    """A schema whose definition the client does not check."""

    def __init__(self, schema_type, definition):
        super().__init__(bytes, schema_type, definition, "raw")

    def encode(self, obj):
        return obj

    def decode(self, data):
        return data


# ---- cases ------------------------------------------------------------------


def roundtrip(schema_cls, expected_type):
    c = client()
    local = name(f"rt-{expected_type.lower()}")
    t = f"persistent://public/default/{local}"
    Order = order_v1()
    consumer = c.subscribe(t, "s", schema=schema_cls(Order))
    producer = c.create_producer(t, schema=schema_cls(Order))
    sent = [Order(id=i, item=f"item-{i}") for i in range(5)]
    for o in sent:
        producer.send(o)
    for o in sent:
        m = consumer.receive(timeout_millis=10000)
        v = m.value()
        check(isinstance(v, Order), f"value() gave {type(v)}")
        check((v.id, v.item) == (o.id, o.item), f"got {v.id},{v.item} for {o.id},{o.item}")
        consumer.acknowledge(m)
    code, body = http("GET", schema_path("public/default", local))
    check(code == 200, f"GET schema: {code} {body}")
    check(body["type"] == expected_type and body["version"] == 0, f"GET schema: {body}")
    check(json.loads(body["data"]) == Order.schema(), f"stored definition {body['data']}")
    check(body["timestamp"] > 0, f"timestamp {body}")
    c.close()


def case_json_roundtrip():
    roundtrip(JsonSchema, "JSON")


def case_avro_roundtrip():
    roundtrip(AvroSchema, "AVRO")


def case_string_schema():
    c = client()
    t = f"persistent://public/default/{name('str')}"
    consumer = c.subscribe(t, "s", schema=StringSchema())
    producer = c.create_producer(t, schema=StringSchema())
    producer.send("héllo")
    m = consumer.receive(timeout_millis=10000)
    check(m.value() == "héllo", f"value() {m.value()!r}")
    # A JSON producer on a STRING topic changes the type: refused.
    expect_incompatible(
        lambda: c.create_producer(t, schema=JsonSchema(order_v1())), "type change"
    )
    c.close()


def case_evolution():
    c = client()
    local = name("evolve")
    t = f"persistent://public/default/{local}"
    p1 = c.create_producer(t, schema=AvroSchema(order_v1()))
    # A field with a default added: FULL (the default) allows it.
    p2 = c.create_producer(t, schema=AvroSchema(order_v2_default()))
    p2.send(order_v2_default()(id=7, item="x", note="n"))
    # The same schema again is the same version, not a new one.
    c.create_producer(t, schema=AvroSchema(order_v1())).close()
    code, body = http("GET", schema_path("public/default", local, "getAllVersions"))
    check(code == 200, f"getAllVersions {code} {body}")
    versions = [s["version"] for s in body["getSchemaResponses"]]
    check(versions == [0, 1], f"versions {versions}")
    # A field without a default: refused, and nothing is stored.
    expect_incompatible(
        lambda: c.create_producer(t, schema=AvroSchema(order_v3_required())), "field without default"
    )
    expect_incompatible(
        lambda: c.create_producer(t, schema=AvroSchema(order_retyped())), "retyped field"
    )
    code, body = http("GET", schema_path("public/default", local, "schemas"))
    check(len(body["getSchemaResponses"]) == 2, f"versions after refusals: {body}")
    # The Python client decodes with its own schema: read with the writer's.
    consumer = c.subscribe(t, "s", schema=AvroSchema(order_v2_default()),
                           initial_position=pulsar.InitialPosition.Earliest)
    m = consumer.receive(timeout_millis=10000)
    check(m.value().note == "n", f"value {m.value()}")
    p1.close()
    p2.close()
    c.close()


def case_consumer_incompatible():
    c = client()
    t = f"persistent://public/default/{name('cons')}"
    c.create_producer(t, schema=AvroSchema(order_v1())).send(order_v1()(id=1, item="a"))
    expect_incompatible(
        lambda: c.subscribe(t, "bad", schema=AvroSchema(order_retyped())), "retyped consumer"
    )
    expect_incompatible(
        lambda: c.subscribe(t, "bad2", schema=JsonSchema(order_v1())), "JSON consumer on AVRO topic"
    )
    # The refused consumers made no subscriptions.
    code, subs = http("GET", f"/admin/v2/persistent/public/default/{t.rsplit('/', 1)[1]}/subscriptions")
    check(code == 200 and "bad" not in subs and "bad2" not in subs, f"subscriptions {subs}")
    # The same schema, and one that reads it (field with default), are fine.
    ok = c.subscribe(t, "good", schema=AvroSchema(order_v1()),
                     initial_position=pulsar.InitialPosition.Earliest)
    check(ok.receive(timeout_millis=10000).value().item == "a", "consumer with the stored schema")
    c.subscribe(t, "good2", schema=AvroSchema(order_v2_default())).close()
    # A consumer without a schema (bytes) is always let in.
    c.subscribe(t, "raw").close()
    c.close()


def case_admin_versions():
    local = name("admin")
    ns = "public/default"
    v1 = {"type": "AVRO", "schema": avro_definition(order_v1()), "properties": {"owner": "team-a"}}
    v2 = {"type": "AVRO", "schema": avro_definition(order_v2_default()), "properties": {}}
    v3 = {"type": "AVRO", "schema": avro_definition(order_v3_required()), "properties": {}}
    code, body = http("GET", schema_path(ns, local))
    check(code == 404, f"no schema yet: {code} {body}")
    code, body = http("POST", schema_path(ns, local), v1)
    check(code == 200 and body == {"version": {"version": 0}}, f"upload v1: {code} {body}")
    code, body = http("POST", schema_path(ns, local), v1)
    check(code == 200 and body["version"]["version"] == 0, f"upload v1 again: {code} {body}")
    code, body = http("POST", schema_path(ns, local, "compatibility"), v2)
    check(code == 200 and body == {"compatibility": True, "schemaCompatibilityStrategy": "FULL"},
          f"compatibility v2: {code} {body}")
    code, body = http("POST", schema_path(ns, local, "compatibility"), v3)
    check(code == 200 and body["compatibility"] is False, f"compatibility v3: {code} {body}")
    code, body = http("POST", schema_path(ns, local), v2)
    check(code == 200 and body["version"]["version"] == 1, f"upload v2: {code} {body}")
    code, body = http("POST", schema_path(ns, local), v3)
    check(code == 409, f"upload v3: {code} {body}")
    code, body = http("GET", schema_path(ns, local, "schema/0"))
    check(code == 200 and body["properties"] == {"owner": "team-a"}, f"version 0: {body}")
    check(json.loads(body["data"]) == order_v1().schema(), f"version 0 data: {body}")
    code, body = http("GET", schema_path(ns, local))
    check(code == 200 and body["version"] == 1, f"latest: {body}")
    code, body = http("GET", schema_path(ns, local, "schema/9"))
    check(code == 404, f"version 9: {code}")
    code, body = http("GET", schema_path(ns, local, "schema/x"))
    check(code == 400, f"version x: {code}")
    code, body = http("POST", schema_path(ns, local, "version"), v1)
    check(code == 200 and body == {"version": 0}, f"version of v1: {code} {body}")
    # A producer with v2 gets version 1 (the client needs nothing else).
    c = client()
    c.create_producer(f"persistent://{ns}/{local}", schema=AvroSchema(order_v2_default())).close()
    c.close()
    # Deleting leaves a marker (version 2); afterwards any schema starts over.
    code, body = http("DELETE", schema_path(ns, local))
    check(code == 200 and body == {"version": 2}, f"delete: {code} {body}")
    code, body = http("GET", schema_path(ns, local))
    check(code == 404, f"after delete: {code} {body}")
    code, body = http("DELETE", schema_path(ns, local))
    check(code == 404, f"delete again: {code} {body}")
    code, body = http("POST", schema_path(ns, local), v3)
    check(code == 200 and body["version"]["version"] == 3, f"upload after delete: {code} {body}")
    code, body = http("GET", schema_path(ns, local, "getAllVersions"))
    check([s["version"] for s in body["getSchemaResponses"]] == [3], f"live versions {body}")
    code, body = http("DELETE", schema_path(ns, local) + "?force=true")
    check(code == 200, f"force delete: {code} {body}")
    code, body = http("POST", schema_path(ns, local), v1)
    check(code == 200 and body["version"]["version"] == 0, f"after force delete: {code} {body}")


def case_bad_definitions():
    local = name("bad")
    ns = "public/default"
    good = {"type": "AVRO", "schema": avro_definition(order_v1())}
    code, _ = http("POST", schema_path(ns, local), good)
    check(code == 200, "first upload")
    bad_avro = json.dumps({"type": "record", "name": "Order",
                           "fields": [{"name": "id", "type": "nosuchtype"}]})
    for payload, why in [
        ({"type": "AVRO", "schema": bad_avro}, "unknown Avro type"),
        ({"type": "AVRO", "schema": "{not json"}, "not JSON"),
        ({"type": "JSON", "schema": "[1, 2]"}, "JSON that is not an object"),
        ({"type": "WIDGET", "schema": "{}"}, "unknown schema type"),
    ]:
        code, body = http("POST", schema_path(ns, local), payload)
        check(code == 400, f"{why}: {code} {body}")
        check("reason" in body, f"{why}: {body}")
        code, body = http("POST", schema_path(ns, local, "compatibility"), payload)
        check(code == 400, f"compatibility, {why}: {code} {body}")
    code, body = http("POST", schema_path(ns, local), b"{oops")
    check(code == 400, f"malformed body: {code} {body}")
    code, body = http("GET", schema_path(ns, local, "getAllVersions"))
    check([s["version"] for s in body["getSchemaResponses"]] == [0], f"stored after refusals: {body}")
    # The same invalid definition from a producer is refused too.
    c = client()
    t = f"persistent://{ns}/{name('badp')}"
    expect_incompatible(
        lambda: c.create_producer(t, schema=RawSchema(_pulsar.SchemaType.AVRO, json.loads(bad_avro))),
        "producer with invalid Avro",
    )
    code, body = http("GET", schema_path(ns, t.rsplit("/", 1)[1]))
    check(code == 404, f"nothing stored for the refused producer: {code} {body}")
    c.close()


def case_namespace_strategies():
    ns = f"public/{name('schemas')}"
    code, body = http("PUT", f"/admin/v2/namespaces/{ns}", {})
    check(code in (200, 204), f"create namespace: {code} {body}")
    base = f"/admin/v2/namespaces/{ns}"
    code, body = http("GET", f"{base}/schemaCompatibilityStrategy")
    check(code == 200 and body == "UNDEFINED", f"default strategy: {code} {body}")
    code, body = http("PUT", f"{base}/schemaCompatibilityStrategy", b"SIDEWAYS")
    check(code == 400, f"unknown strategy: {code} {body}")

    def topic_with_v1():
        local = name("t")
        check(http("POST", schema_path(ns, local),
                   {"type": "AVRO", "schema": avro_definition(order_v1())})[0] == 200, "upload v1")
        return f"persistent://{ns}/{local}"

    c = client()
    # FULL (unset): dropping a field without a default is refused ...
    expect_incompatible(lambda: c.create_producer(topic_with_v1(), schema=AvroSchema(order_dropped())),
                        "dropped field under FULL")
    # ... BACKWARD allows it.
    code, _ = http("PUT", f"{base}/schemaCompatibilityStrategy", "BACKWARD")
    check(code in (200, 204), "set BACKWARD")
    code, body = http("GET", f"{base}/schemaCompatibilityStrategy")
    check(body == "BACKWARD", f"strategy {body}")
    c.create_producer(topic_with_v1(), schema=AvroSchema(order_dropped())).close()
    # FORWARD refuses it again, and allows a field without a default.
    http("PUT", f"{base}/schemaCompatibilityStrategy", "FORWARD")
    expect_incompatible(lambda: c.create_producer(topic_with_v1(), schema=AvroSchema(order_dropped())),
                        "dropped field under FORWARD")
    c.create_producer(topic_with_v1(), schema=AvroSchema(order_v3_required())).close()
    # Transitive: v1 -> v2 (default) -> v3 (no default) is fine pairwise
    # under BACKWARD but v3 cannot read v1's data.
    http("PUT", f"{base}/schemaCompatibilityStrategy", "BACKWARD_TRANSITIVE")
    t = topic_with_v1()

    def order_v3_with_note():
        class Order(Record):
            id = Long(required=True)
            item = String()
            note = String()  # as in v2, but without its default

        return Order

    c.create_producer(t, schema=AvroSchema(order_v2_default())).close()
    expect_incompatible(lambda: c.create_producer(t, schema=AvroSchema(order_v3_with_note())),
                        "BACKWARD_TRANSITIVE against v1")
    http("PUT", f"{base}/schemaCompatibilityStrategy", "BACKWARD")
    c.create_producer(t, schema=AvroSchema(order_v3_with_note())).close()
    # ALWAYS_INCOMPATIBLE: only the stored versions; ALWAYS_COMPATIBLE: anything.
    http("PUT", f"{base}/schemaCompatibilityStrategy", "ALWAYS_INCOMPATIBLE")
    t = topic_with_v1()
    expect_incompatible(lambda: c.create_producer(t, schema=AvroSchema(order_v2_default())),
                        "ALWAYS_INCOMPATIBLE")
    c.create_producer(t, schema=AvroSchema(order_v1())).close()
    http("PUT", f"{base}/schemaCompatibilityStrategy", "ALWAYS_COMPATIBLE")
    c.create_producer(t, schema=AvroSchema(order_retyped())).close()
    http("PUT", f"{base}/schemaCompatibilityStrategy", "FULL")

    # isAllowAutoUpdateSchema=false: producers use stored versions only;
    # an admin may still add one.
    code, body = http("GET", f"{base}/isAllowAutoUpdateSchema")
    check(code == 200 and body is True, f"auto update default: {body}")
    check(http("POST", f"{base}/isAllowAutoUpdateSchema", False)[0] in (200, 204), "auto update off")
    t = topic_with_v1()
    expect_incompatible(lambda: c.create_producer(t, schema=AvroSchema(order_v2_default())),
                        "auto update off")
    c.create_producer(t, schema=AvroSchema(order_v1())).close()
    expect_incompatible(lambda: c.create_producer(f"persistent://{ns}/{name('fresh')}",
                                                  schema=AvroSchema(order_v1())),
                        "auto update off, topic without schema")
    code, body = http("POST", schema_path(ns, t.rsplit("/", 1)[1]),
                      {"type": "AVRO", "schema": avro_definition(order_v2_default())})
    check(code == 200 and body["version"]["version"] == 1, f"admin upload with auto update off: {body}")
    c.create_producer(t, schema=AvroSchema(order_v2_default())).close()
    http("POST", f"{base}/isAllowAutoUpdateSchema", True)

    # schemaValidationEnforced: a producer without a schema is refused on a
    # topic with one (and let in on a topic without).
    code, body = http("GET", f"{base}/schemaValidationEnforced")
    check(code == 200 and body is False, f"enforced default: {body}")
    c.create_producer(topic_with_v1()).close()
    check(http("POST", f"{base}/schemaValidationEnforced", True)[0] in (200, 204), "enforce")
    code, body = http("GET", f"{base}/schemaValidationEnforced")
    check(body is True, f"enforced: {body}")
    expect_incompatible(lambda: c.create_producer(topic_with_v1()), "no schema, enforced")
    c.create_producer(f"persistent://{ns}/{name('plain')}").close()
    # The policies are in the namespace's policies document too.
    code, body = http("GET", base)
    check(body["schema_compatibility_strategy"] == "FULL" and body["schema_validation_enforced"] is True,
          f"policies {body}")
    # Other namespaces keep the defaults.
    code, body = http("GET", "/admin/v2/namespaces/public/default/schemaValidationEnforced")
    check(body is False, "public/default untouched")
    c.close()


def case_partitioned_and_topic_deletion():
    c = client()
    ns = "public/default"
    local = name("parts")
    code, body = http("PUT", f"/admin/v2/persistent/{ns}/{local}/partitions", 3)
    check(code in (200, 204), f"create partitioned: {code} {body}")
    t = f"persistent://{ns}/{local}"
    Order = order_v1()
    consumer = c.subscribe(t, "s", schema=AvroSchema(Order))
    producer = c.create_producer(t, schema=AvroSchema(Order))
    for i in range(6):
        producer.send(Order(id=i, item=str(i)), partition_key=str(i))
    got = sorted(consumer.receive(timeout_millis=10000).value().id for _ in range(6))
    check(got == list(range(6)), f"received {got}")
    # One schema for the partitioned topic, none per partition.
    code, body = http("GET", schema_path(ns, local, "getAllVersions"))
    check(code == 200 and len(body["getSchemaResponses"]) == 1, f"partitioned schema {code} {body}")
    code, body = http("GET", schema_path(ns, f"{local}-partition-1"))
    check(code == 200 and body["version"] == 0, f"seen from a partition: {code} {body}")
    # A partition refuses what the partitioned topic refuses.
    expect_incompatible(lambda: c.create_producer(f"{t}-partition-2", schema=AvroSchema(order_retyped())),
                        "partition, retyped")
    producer.close()
    consumer.close()
    code, body = http("DELETE", f"/admin/v2/persistent/{ns}/{local}/partitions?force=true")
    check(code in (200, 204), f"delete partitioned: {code} {body}")
    code, body = http("GET", schema_path(ns, local))
    check(code == 404, f"schema after partitioned delete: {code} {body}")

    # A non-partitioned topic's schema goes with the topic.
    local = name("gone")
    t = f"persistent://{ns}/{local}"
    c.create_producer(t, schema=JsonSchema(Order)).close()
    check(http("GET", schema_path(ns, local))[0] == 200, "schema before delete")
    code, body = http("DELETE", f"/admin/v2/persistent/{ns}/{local}?force=true")
    check(code in (200, 204), f"delete topic: {code} {body}")
    code, body = http("GET", schema_path(ns, local))
    check(code == 404, f"schema after topic delete: {code} {body}")
    # A new topic of that name starts without one: any schema goes.
    c.create_producer(t, schema=AvroSchema(order_retyped())).close()
    c.close()


def case_rest_and_websocket_produce():
    """JSON records produced over REST and WebSocket for AVRO and JSON topics
    are checked, Avro-encoded for AVRO, and read back with value()."""
    import base64

    import websocket

    ns = "public/default"
    c = client()
    Order = order_v1()
    for schema_cls, kind in [(AvroSchema, "avro"), (JsonSchema, "json")]:
        local = name(f"rest-{kind}")
        t = f"persistent://{ns}/{local}"
        consumer = c.subscribe(t, "s", schema=schema_cls(Order))
        code, body = http("POST", f"/topics/persistent/{ns}/{local}", {"messages": [
            {"payload": json.dumps({"id": 1, "item": "rest"})},
            {"payload": json.dumps({"id": 2, "item": None})},
        ]})
        check(code == 200, f"REST produce ({kind}): {code} {body}")
        check(body["schemaVersion"] == 0, f"schema version {body}")
        check(all(r["errorCode"] == 0 for r in body["messagePublishResults"]), f"results {body}")
        # A record the schema refuses: 400, and nothing is sent.
        code, body = http("POST", f"/topics/persistent/{ns}/{local}", {"messages": [
            {"payload": json.dumps({"id": 3, "item": "ok"})},
            {"payload": json.dumps({"id": "three"})},
        ]})
        check(code == 400 and "message 1" in body["reason"], f"bad record ({kind}): {code} {body}")
        ws = websocket.create_connection(WEB.replace("http://", "ws://") + f"/ws/v2/producer/persistent/{ns}/{local}",
                                         timeout=15)
        ws.send(json.dumps({"payload": base64.b64encode(b'{"id": 4, "item": "ws"}').decode(), "context": "a"}))
        r = json.loads(ws.recv())
        check(r["result"] == "ok", f"WebSocket produce ({kind}): {r}")
        ws.send(json.dumps({"payload": base64.b64encode(b'{"item": "no id"}').decode(), "context": "b"}))
        r = json.loads(ws.recv())
        check(r["result"].startswith("send-error") and r["context"] == "b", f"WebSocket bad record: {r}")
        ws.close()
        got = []
        for _ in range(3):
            m = consumer.receive(timeout_millis=10000)
            got.append((m.value().id, m.value().item))
            consumer.acknowledge(m)
        check(got == [(1, "rest"), (2, None), (4, "ws")], f"received ({kind}) {got}")
        try:
            m = consumer.receive(timeout_millis=500)
            raise AssertionError(f"unexpected message {m.data()!r}")
        except pulsar.Timeout:
            pass
    c.close()


CASES = {name[5:]: fn for name, fn in globals().items() if name.startswith("case_")}

if __name__ == "__main__":
    for case in sys.argv[1:]:
        fn = CASES[case]
        print(f"-- {case}", flush=True)
        fn()
        print(f"ok {case} ", flush=True)

"""Token authentication and authorization on the binary protocol, HTTP and
WebSocket, with the official Python client.

Usage: auth.py ADMIN BOB EXPIRED SHORT   (PULSAR_URL, PULSAR_WEB; the
arguments are tokens: the superuser "admin", "bob", an expired one, and the
admin's expiring in seconds)

bob starts with no permission; the admin grants him produce, then consume.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid

import pulsar
import websocket

URL = os.environ["PULSAR_URL"]
WEB = os.environ["PULSAR_WEB"]
WS = WEB.replace("http://", "ws://")
ADMIN, BOB, EXPIRED, SHORT = sys.argv[1:5]
LOGGER = pulsar.ConsoleLogger(getattr(pulsar.LoggerLevel, os.environ.get("PULSAR_LOG", "Warn")))


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def client(token=None):
    auth = pulsar.AuthenticationToken(token) if token is not None else None
    return pulsar.Client(URL, authentication=auth, operation_timeout_seconds=10, logger=LOGGER)


def http(method, path, token=None, body=None):
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(WEB + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, (json.loads(raw) if raw else None)


def refused(fn, what):
    try:
        fn()
    except Exception as e:  # the client's exception types vary by version
        return str(e)
    raise AssertionError(f"{what} was allowed")


def main():
    t = f"persistent://public/default/auth-{uuid.uuid4().hex[:8]}"

    # ---- binary protocol: authentication
    # (The C++ client retries a refused CONNECT until its operation timeout,
    # so these fail as timeouts on the client's side.)
    for token, what in [(None, "no token"), (EXPIRED, "expired token"), ("garbage", "garbage token")]:
        auth = pulsar.AuthenticationToken(token) if token is not None else None
        c = pulsar.Client(URL, authentication=auth, operation_timeout_seconds=3, logger=LOGGER)
        refused(lambda: c.create_producer(t), f"a producer with {what}")
        c.close()

    # ---- binary protocol: authorization
    bob = client(BOB)
    e = refused(lambda: bob.create_producer(t), "bob producing without permission")
    check("Authoriz" in e, f"bob's refusal: {e}")
    code, body = http("POST", "/admin/v2/namespaces/public/default/permissions/bob", BOB, ["produce"])
    check(code == 403, f"bob granting himself: {code} {body}")
    code, body = http("POST", "/admin/v2/namespaces/public/default/permissions/bob", ADMIN, ["produce"])
    check(code == 204, f"admin granting bob produce: {code} {body}")
    code, body = http("GET", "/admin/v2/namespaces/public/default/permissions", ADMIN)
    check(code == 200 and body == {"bob": ["produce"]}, f"permissions: {code} {body}")
    code, body = http("POST", "/admin/v2/namespaces/public/default/permissions/bob", ADMIN, ["fly"])
    check(code == 400, f"unknown action: {code} {body}")
    p = bob.create_producer(t)
    p.send(b"from bob")
    e = refused(lambda: bob.subscribe(t, "bob-sub"), "bob consuming without permission")
    check("Authoriz" in e, f"bob's consume refusal: {e}")
    code, _ = http("POST", f"/admin/v2/persistent/public/default/{t.rsplit('/', 1)[1]}/permissions/bob", ADMIN, ["consume"])
    check(code == 204, f"topic grant: {code}")
    sub = bob.subscribe(t, "bob-sub", initial_position=pulsar.InitialPosition.Earliest)
    m = sub.receive(timeout_millis=10000)
    check(m.data() == b"from bob", f"{m.data()!r}")
    sub.acknowledge(m)
    bob.close()

    # ---- HTTP
    for token, want in [(None, 401), ("garbage", 401), (EXPIRED, 401), (BOB, 403), (ADMIN, 200)]:
        code, body = http("GET", "/admin/v2/tenants/public", token)
        check(code == want, f"GET tenant with {token!r:.20}: {code} {body}")
        if want != 200:
            check(body and body.get("reason"), f"no reason given: {body}")
    code, _ = http("GET", "/admin/v2/clusters", BOB)
    check(code == 200, f"cluster list for any authenticated role: {code}")
    code, _ = http("PUT", "/admin/v2/tenants/bobs", BOB, {"adminRoles": ["bob"], "allowedClusters": ["standalone"]})
    check(code == 403, f"bob creating a tenant: {code}")
    code, body = http("GET", "/health")
    check(code == 200, f"health stays open: {code}")

    # ---- WebSocket: the token as a query parameter or a header
    local = t.rsplit("/", 1)[1]
    try:
        websocket.create_connection(f"{WS}/ws/v2/producer/persistent/public/default/{local}", timeout=10)
        raise AssertionError("a WebSocket producer without a token was accepted")
    except websocket.WebSocketBadStatusException as e:
        check(e.status_code == 401, f"status {e.status_code}")
    ws = websocket.create_connection(f"{WS}/ws/v2/producer/persistent/public/default/{local}?token={BOB}", timeout=10)
    ws.send(json.dumps({"payload": "d3M=", "context": "1"}))
    r = json.loads(ws.recv())
    check(r["result"] == "ok", f"{r}")
    ws.close()
    ws = websocket.create_connection(
        f"{WS}/ws/v2/reader/persistent/public/default/{local}?messageId=earliest",
        header=[f"Authorization: Bearer {BOB}"], timeout=10)
    check(json.loads(ws.recv())["payload"], "reader got nothing")
    ws.close()
    try:
        websocket.create_connection(f"{WS}/ws/v2/producer/persistent/public/other/{local}?token={BOB}", timeout=10)
        raise AssertionError("bob produced over WebSocket where he has no permission")
    except websocket.WebSocketBadStatusException as e:
        check(e.status_code in (403, 404), f"status {e.status_code}")

    # ---- refresh: a token that runs out is replaced through AUTH_CHALLENGE
    calls = []

    def supplier():
        # First a token that runs out in seconds, then a lasting one (both
        # for the admin role: a refresh must keep the role).
        calls.append(time.time())
        return SHORT if len(calls) == 1 else ADMIN

    c = pulsar.Client(URL, authentication=pulsar.AuthenticationToken(supplier), operation_timeout_seconds=10, logger=LOGGER)
    p = c.create_producer(t)
    p.send(b"before expiry")
    deadline = time.time() + 20
    while len(calls) < 2 and time.time() < deadline:
        time.sleep(0.5)
    check(len(calls) >= 2, f"no AUTH_CHALLENGE came: the supplier was called {len(calls)} times")
    time.sleep(1)
    p.send(b"after the refresh")
    c.close()
    print(json.dumps({"refreshes": len(calls) - 1}))
    print("ok auth")


if __name__ == "__main__":
    main()
    # Every check passed. Leave without the C++ client's destructors: at
    # interpreter teardown they once aborted the process ("terminate called
    # without an active exception") after "ok auth" was printed.
    sys.stdout.flush()
    os._exit(0)

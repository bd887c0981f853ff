"""TLS with the official Python client, requests and websocket-client.

Usage: tls.py CASE [ARGS...]   (PULSAR_URL is pulsar+ssl://, PULSAR_WEB is
https://; TLS_CA is the CA file that issued the broker's certificate,
TLS_OTHER_CA one that did not.)

Cases:
  produce_consume            produce and consume over pulsar+ssl, hostname checked
  other_ca_refused           a client trusting another CA gets nowhere
  https_admin                admin REST and lookup over HTTPS (TLS URLs)
  wss                        produce and consume over WSS
  served_cn CN               the certificate served to a new connection has subject CN
  cert_role CERT KEY TOKEN   TLS authentication: the certificate's CN is the
                             role; TOKEN is a superuser's, to grant it
  require_cert CERT KEY      mutual TLS: refused without a client certificate,
                             served with one
  spread NS N                produce and consume on NS/tls-spread-0..N-1 (on a
                             cluster: lookups redirect to other brokers' TLS URLs)
"""

import base64
import json
import os
import socket
import ssl
import sys
import uuid
from urllib.parse import urlparse

import pulsar
import requests
import websocket

URL = os.environ["PULSAR_URL"]
WEB = os.environ["PULSAR_WEB"]
WSS = WEB.replace("https://", "wss://")
CA = os.environ["TLS_CA"]
OTHER_CA = os.environ.get("TLS_OTHER_CA", "")
LOGGER = pulsar.ConsoleLogger(getattr(pulsar.LoggerLevel, os.environ.get("PULSAR_LOG", "Warn")))


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def client(ca=CA, auth=None, timeout=10):
    return pulsar.Client(
        URL,
        tls_trust_certs_file_path=ca,
        tls_allow_insecure_connection=False,
        tls_validate_hostname=True,
        authentication=auth,
        operation_timeout_seconds=timeout,
        logger=LOGGER,
    )


def topic(name):
    return f"persistent://public/default/{name}-{uuid.uuid4().hex[:8]}"


def roundtrip(c, t, n=20):
    consumer = c.subscribe(t, "sub")
    producer = c.create_producer(t)
    for i in range(n):
        producer.send(f"m-{i}".encode(), properties={"i": str(i)})
    got = []
    for _ in range(n):
        m = consumer.receive(timeout_millis=10000)
        got.append(m.data().decode())
        consumer.acknowledge(m)
    check(got == [f"m-{i}" for i in range(n)], f"received {got}")


def produce_consume():
    c = client()
    roundtrip(c, topic("tls"))
    c.close()


def other_ca_refused():
    check(OTHER_CA, "TLS_OTHER_CA is not set")
    c = client(ca=OTHER_CA, timeout=5)
    try:
        c.create_producer(topic("refused"))
    except Exception as e:  # the client's exception types vary by version
        print("refused as expected:", e)
        return
    finally:
        c.close()
    raise AssertionError("a client trusting another CA could produce")


def https_admin():
    r = requests.get(WEB + "/admin/v2/tenants", verify=CA, timeout=10)
    check(r.status_code == 200 and "public" in r.json(), f"tenants: {r.status_code} {r.text}")
    t = topic("lookup").split("://", 1)[1]
    r = requests.get(f"{WEB}/lookup/v2/topic/persistent/{t}", verify=CA, timeout=10)
    check(r.status_code == 200, f"lookup: {r.status_code} {r.text}")
    body = r.json()
    check(body["brokerUrlTls"].startswith("pulsar+ssl://"), f"lookup: {body}")
    check(body["httpUrlTls"].startswith("https://"), f"lookup: {body}")
    # Not trusted without the CA.
    try:
        requests.get(WEB + "/admin/v2/tenants", timeout=10)
    except requests.exceptions.SSLError:
        pass
    else:
        raise AssertionError("HTTPS worked without trusting the CA")


def wss():
    t = topic("wss").split("://", 1)[1]
    opts = {"ca_certs": CA, "cert_reqs": ssl.CERT_REQUIRED}
    consumer = websocket.create_connection(
        f"{WSS}/ws/v2/consumer/persistent/{t}/sub?subscriptionType=Shared", sslopt=opts, timeout=20
    )
    producer = websocket.create_connection(f"{WSS}/ws/v2/producer/persistent/{t}", sslopt=opts, timeout=20)
    for i in range(5):
        producer.send(json.dumps({"payload": base64.b64encode(f"w-{i}".encode()).decode(), "context": str(i)}))
        ack = json.loads(producer.recv())
        check(ack.get("result") == "ok", f"produce: {ack}")
    got = []
    for _ in range(5):
        m = json.loads(consumer.recv())
        got.append(base64.b64decode(m["payload"]).decode())
        consumer.send(json.dumps({"messageId": m["messageId"]}))
    check(sorted(got) == [f"w-{i}" for i in range(5)], f"received {got}")
    producer.close()
    consumer.close()


def served_cn(want):
    u = urlparse(URL)
    ctx = ssl.create_default_context(cafile=CA)
    with socket.create_connection((u.hostname, u.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=u.hostname) as s:
            subject = dict(x[0] for x in s.getpeercert()["subject"])
    check(subject.get("commonName") == want, f"served {subject}, wanted CN {want}")


def cert_role(cert, key, admin_token):
    auth = pulsar.AuthenticationTLS(cert, key)
    t = topic("cert-role")
    c = client(auth=auth, timeout=5)
    try:
        c.create_producer(t)
    except Exception as e:
        print("refused before the grant:", e)
    else:
        raise AssertionError("the certificate's role produced without a grant")
    c.close()
    # The same role over HTTPS, by its certificate: not a superuser.
    r = requests.get(WEB + "/admin/v2/tenants", verify=CA, cert=(cert, key), timeout=10)
    check(r.status_code in (401, 403), f"tenants as the certificate's role: {r.status_code}")
    # Neither certificate nor token: unauthenticated.
    r = requests.get(WEB + "/admin/v2/tenants", verify=CA, timeout=10)
    check(r.status_code == 401, f"anonymous: {r.status_code}")
    # The superuser grants the certificate's CN (the role) produce and consume.
    role = os.environ["TLS_ROLE"]
    headers = {"Authorization": f"Bearer {admin_token}"}
    r = requests.post(
        f"{WEB}/admin/v2/namespaces/public/default/permissions/{role}",
        json=["produce", "consume"],
        headers=headers,
        verify=CA,
        timeout=10,
    )
    check(r.status_code in (200, 204), f"grant: {r.status_code} {r.text}")
    c = client(auth=auth)
    roundtrip(c, t, n=5)
    c.close()


def require_cert(cert, key):
    c = client(timeout=5)
    try:
        c.create_producer(topic("no-cert"))
    except Exception as e:
        print("refused without a certificate:", e)
    else:
        raise AssertionError("a client without a certificate produced")
    finally:
        c.close()
    c = client(auth=pulsar.AuthenticationTLS(cert, key))
    roundtrip(c, topic("with-cert"), n=5)
    c.close()
    r = requests.get(WEB + "/admin/v2/tenants", verify=CA, cert=(cert, key), timeout=10)
    check(r.status_code == 200, f"HTTPS with a certificate: {r.status_code}")
    try:
        requests.get(WEB + "/admin/v2/tenants", verify=CA, timeout=10)
    except requests.exceptions.RequestException as e:
        print("HTTPS refused without a certificate:", type(e).__name__)
    else:
        raise AssertionError("HTTPS without a client certificate was served")


def spread(ns, n):
    c = client()
    for i in range(int(n)):
        roundtrip(c, f"persistent://{ns}/tls-spread-{i}", n=3)
    c.close()


CASES = {
    "produce_consume": produce_consume,
    "other_ca_refused": other_ca_refused,
    "https_admin": https_admin,
    "wss": wss,
    "served_cn": served_cn,
    "cert_role": cert_role,
    "spread": spread,
    "require_cert": require_cert,
}

if __name__ == "__main__":
    name, args = sys.argv[1], sys.argv[2:]
    CASES[name](*args)
    print(f"ok {name} ")

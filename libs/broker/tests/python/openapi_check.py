"""Checks the OpenAPI document against the running service.

Usage: openapi_check.py routes|fuzz   (PULSAR_URL and PULSAR_WEB name the service)

routes: every operation in /admin/v2/openapi.json is called once with
plausible arguments; none may hit the fallback ("no such endpoint"), get
405, or fail with a 5xx. fuzz: schemathesis generates valid and invalid
requests for every operation; no answer may be a 5xx.
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request

import pulsar

URL = os.environ["PULSAR_URL"]
WEB = os.environ["PULSAR_WEB"]


def call(method, path, body=None):
    data, headers = None, {}
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(WEB + path, data=data, method=method.upper(), headers=headers)

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def call_raw(method, path, data):
    req = urllib.request.Request(WEB + path, data=data, method=method.upper(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def document():
    code, raw = call("get", "/admin/v2/openapi.json")
    if code != 200:
        raise AssertionError(f"openapi.json: {code} {raw[:200]!r}")
    doc = json.loads(raw)
    for key in ("openapi", "info", "paths", "components"):
        if key not in doc:
            raise AssertionError(f"openapi.json lacks {key}")
    return doc


def example(schema, doc):
    """A small valid value for a JSON schema of the document."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return example(doc["components"]["schemas"][name], doc)
    t = schema.get("type")
    if "enum" in schema:
        return schema["enum"][0]
    if t == "object":
        return {k: example(v, doc) for k, v in schema.get("properties", {}).items() if k in schema.get("required", [])}
    if t == "array":
        return [example(schema["items"], doc)] if "enum" in schema.get("items", {}) else []
    if t == "integer":
        return max(schema.get("minimum", 1), 1)
    if t == "boolean":
        return True
    return "x"


def has_reason(raw):
    try:
        return bool(json.loads(raw).get("reason"))
    except (ValueError, AttributeError):
        return False


def check_status(code, raw, what):
    if code >= 300:
        raise AssertionError(f"{what}: {code} {raw[:200]!r}")


def check_routes():
    doc = document()
    # Something to act on, in a tenant of its own (the deletes at the end
    # remove it): a topic with a subscription and messages.
    code, raw = call("put", "/admin/v2/tenants/openapi", {"allowedClusters": ["standalone"]})
    check_status(code, raw, "create tenant")
    code, raw = call("put", "/admin/v2/namespaces/openapi/ns")
    check_status(code, raw, "create namespace")
    client = pulsar.Client(URL, operation_timeout_seconds=15)
    topic = "persistent://openapi/ns/openapi"
    client.subscribe(topic, "s").close()
    p = client.create_producer(topic)
    for i in range(5):
        p.send(f"m{i}".encode())
    client.close()
    client = pulsar.Client(URL, operation_timeout_seconds=15)
    client.subscribe("persistent://public/default/big", "s").close()
    client.create_producer("persistent://public/default/big").send(b"x")
    client.close()
    code, brokers = call("get", "/admin/v2/brokers/standalone")
    broker = json.loads(brokers)[0]
    code, bundles = call("get", "/admin/v2/namespaces/openapi/ns/bundles")
    b = json.loads(bundles)["boundaries"]
    values = {
        "cluster": "standalone", "tenant": "openapi", "namespace": "ns", "topic": "openapi",
        "subscription": "s", "role": "someone", "broker": broker, "bundle": f"{b[0]}_{b[1]}",
        "domain": "persistent", "timestamp": "0", "seconds": "3600", "count": "1", "position": "1",
        "partition": "0", "version": "0",
    }
    ops = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method == "parameters":
                continue
            ops.append((method, path, op))
    # Deletes last, children before parents.
    ops.sort(key=lambda o: (o[0] == "delete", -len(o[1]) if o[0] == "delete" else 0))
    failures = []
    for method, path, op in ops:
        url = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)
        body = None
        if "requestBody" in op:
            body = example(op["requestBody"]["content"]["application/json"]["schema"], doc)
        code, raw = call(method, url, body)
        unrouted = code == 405 or (code == 404 and b"no such endpoint" in raw)
        if unrouted or code >= 500:
            failures.append(f"{method.upper()} {url}: {code} {raw[:200]!r}")
        if 400 <= code < 500 and not has_reason(raw):
            failures.append(f"{method.upper()} {url}: {code} without a reason: {raw[:200]!r}")
        print(f"{code} {method.upper()} {url}", flush=True)
    # Malformed requests rejected before any handler still say why.
    for method, url, body in [
        ("post", "/topics/persistent/public/default/t/partitions/minus-one", {"messages": []}),
        ("put", "/admin/v2/tenants/x", b"{"),
        ("get", "/admin/v2/no/such/thing", None),
    ]:
        code, raw = call(method, url, body) if not isinstance(body, bytes) else call_raw(method, url, body)
        if not (400 <= code < 500 and has_reason(raw)):
            failures.append(f"{method.upper()} {url}: {code} {raw[:200]!r}")
    # Extreme values found by fuzzing once: they must not overflow anything.
    big = 2**63 - 1
    for method, url, body in [
        ("post", "/admin/v2/namespaces/public/default/retention", {"retentionTimeInMinutes": big, "retentionSizeInMB": big}),
        ("post", "/admin/v2/namespaces/public/default/messageTTL", big),
        ("post", "/admin/v2/namespaces/public/default/deduplication", False),
        ("post", "/admin/v2/namespaces/public/default/backlogQuota?backlogQuotaType=message_age", {"limitTime": big, "policy": "producer_exception"}),
        ("post", f"/admin/v2/persistent/public/default/big/subscription/s/expireMessages/{2**64 - 1}", None),
        ("post", f"/admin/v2/persistent/public/default/big/subscription/s/resetcursor/{2**64 - 1}", None),
    ]:
        code, raw = call(method, url, body)
        if code >= 500:
            failures.append(f"{method.upper()} {url}: {code} {raw[:200]!r}")
    if failures:
        raise AssertionError("operations not served as documented:\n" + "\n".join(failures))
    print(f"ok routes ({len(ops)} operations)", flush=True)


def fuzz():
    st = os.path.join(os.path.dirname(sys.executable), "st")
    cmd = [
        st, "run", WEB + "/admin/v2/openapi.json", "--url", WEB,
        "--checks", "not_a_server_error", "--max-examples", os.environ.get("FUZZ_EXAMPLES", "10"),
        "--phases", "coverage,fuzzing", "--workers", "2", "--seed", "7",
        "--generation-database", "none", "--request-timeout", "30", "--max-redirects", "0",
        # Unloads and splits are left to the route check above: run among the
        # fuzzer's concurrent requests they make the bundle answer 503 "being
        # unloaded; retry" for a moment, which is the documented answer but
        # fails not_a_server_error (seen once on a terminate).
        "--no-color", "--exclude-path-regex", "^/ws/|/unload$|/split$", "--suppress-health-check", "all",
    ]
    # schemathesis keeps a cache in its working directory: not in the repo.
    with tempfile.TemporaryDirectory() as cwd:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd)
    print(r.stdout[-20000:], flush=True)
    if r.returncode != 0:
        raise AssertionError(f"schemathesis failed ({r.returncode})")
    print("ok fuzz", flush=True)


if __name__ == "__main__":
    {"routes": check_routes, "fuzz": fuzz}[sys.argv[1]]()

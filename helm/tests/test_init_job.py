"""The initialisation Job, run for real: the arguments the chart renders are
given to the real `magnetar` binary (the Job's image has no shell, so what the
chart renders is exactly what runs), against a real `magnetar standalone` with
token authentication. It must create what is missing, be idempotent, and fail
loudly and at once on wrong credentials.

The binary is the debug build (`make test-deploy` builds it first); set
MAGNETAR_BIN to use another."""

import json
import os
import pathlib
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from conftest import one, pod_spec, render

TENANTS = {
    "initialize": {
        "tenants": [
            {"name": "acme", "adminRoles": ["acme-admin", "ops"], "namespaces": [{"name": "orders", "bundles": 8}, {"name": "audit"}]},
            {"name": "beta"},
        ]
    }
}
MOUNT = "/etc/magnetar/auth/"


def magnetar_bin():
    if os.environ.get("MAGNETAR_BIN"):
        return pathlib.Path(os.environ["MAGNETAR_BIN"])
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.expanduser("~/.cache/magnetar/target")
    return pathlib.Path(target) / "debug" / "magnetar"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def job_container(values):
    docs, _ = render(values)
    job = one(docs, "Job", "-init")
    return job, pod_spec(job)["containers"][0]


class Server:
    """`magnetar standalone` with HS256 token auth; `admin` is its superuser."""

    def __init__(self, tmp):
        self.bin = magnetar_bin()
        assert self.bin.exists(), f"{self.bin} is missing: build it with `cargo build -p magnetar`"
        self.key = tmp / "secret.key"
        self.cli("tokens", "create-secret-key", "--output", str(self.key))
        self.admin_token = self.token("admin")
        self.http = f"127.0.0.1:{free_port()}"
        args = [str(self.bin), "standalone", "--data-dir", str(tmp / "data"),
                "--meta-listen", f"127.0.0.1:{free_port()}", "--bookie-listen", f"127.0.0.1:{free_port()}",
                "--broker-listen", f"127.0.0.1:{free_port()}", "--http", self.http, "--min-free-bytes", "0",
                "--auth-secret-key", str(self.key), "--superuser-roles", "admin"]
        self.log = open(tmp / "standalone.log", "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 90
        while True:
            assert self.proc.poll() is None, (tmp / "standalone.log").read_text()[-3000:]
            try:
                if urllib.request.urlopen(f"http://{self.http}/health", timeout=1).status == 200:
                    break
            except (urllib.error.URLError, OSError):
                pass
            assert time.time() < deadline, "standalone not healthy within 90 s"
            time.sleep(0.2)
        self.cluster = self.get("/admin/v2/clusters")[0]

    def cli(self, *args):
        r = subprocess.run([str(self.bin), *args], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    def token(self, role):
        return self.cli("tokens", "create", "--secret-key", str(self.key), "--subject", role)

    def request(self, method, path, body=None):
        req = urllib.request.Request(f"http://{self.http}{path}", method=method,
                                     headers={"Authorization": f"Bearer {self.admin_token}", "Content-Type": "application/json"},
                                     data=None if body is None else json.dumps(body).encode())
        with urllib.request.urlopen(req, timeout=30) as resp:
            text = resp.read()
            return json.loads(text) if text.strip() else None

    def get(self, path):
        return self.request("GET", path)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("standalone"))
    yield s
    s.stop()


def run_job(server, values, tmp_path, url=None, files=None):
    """The Job's container run here: its args, with the Secret's mount path
    pointing at files in tmp_path and the broker URL at the test's server."""
    values = {**values, "clusterName": server.cluster}
    _, c = job_container(values)
    assert "command" not in c, "the image's entrypoint (tini + magnetar) must run"
    mounted = tmp_path / "auth"
    mounted.mkdir(exist_ok=True)
    for name, content in (files or {}).items():
        (mounted / name).write_bytes(content)
    args = []
    for a in c["args"]:
        if a.startswith("--url="):
            a = "--url=" + (url or f"http://{server.http}")
        args.append(a.replace(MOUNT, f"{mounted}/"))
    r = subprocess.run([str(server.bin), *args], capture_output=True, text=True, timeout=120)
    return r, c["args"]


AUTH_SECRET = {"auth": {"enabled": True, "secretName": "magnetar-auth", "superuserRoles": ["admin", "ops"]}}


def test_no_job_without_tenants_to_create():
    """The brokers bootstrap public/default themselves; the Job only exists for more."""
    docs, notes = render({})
    assert not [d for d in docs if d["kind"] == "Job" or d["metadata"]["name"].endswith("-init")]
    assert "job/" not in notes
    docs, _ = render({**TENANTS, "initialize": {**TENANTS["initialize"], "enabled": False}})
    assert not [d for d in docs if d["kind"] == "Job"]


def test_job_is_a_post_install_hook_that_runs_the_cli():
    job, c = job_container(TENANTS)
    ann = job["metadata"]["annotations"]
    assert ann["helm.sh/hook"] == "post-install,post-upgrade"
    assert "before-hook-creation" in ann["helm.sh/hook-delete-policy"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert c["args"][0] == "admin" and "init" in c["args"]
    spec = next(a for a in c["args"] if a.startswith("--tenants-json="))
    assert json.loads(spec.split("=", 1)[1]) == TENANTS["initialize"]["tenants"]


def test_creates_tenants_and_namespaces_then_is_idempotent(server, tmp_path):
    key = server.key.read_bytes()
    r, args = run_job(server, {**TENANTS, **AUTH_SECRET}, tmp_path, files={"secret.key": key})
    assert r.returncode == 0, r.stderr
    assert "--superuser=admin" in args
    assert "magnetar-init: created tenant acme" in r.stdout and "created namespace acme/orders" in r.stdout
    acme = server.get("/admin/v2/tenants/acme")
    assert acme["adminRoles"] == ["acme-admin", "ops"] and acme["allowedClusters"] == [server.cluster]
    assert server.get("/admin/v2/namespaces/acme/orders/bundles")["numBundles"] == 8
    assert "acme/audit" in server.get("/admin/v2/namespaces/acme")
    assert server.get("/admin/v2/tenants/beta")["adminRoles"] == []
    # The second run (helm upgrade) finds everything and changes nothing.
    server.request("POST", "/admin/v2/tenants/beta", {"adminRoles": ["kept"], "allowedClusters": [server.cluster]})
    r, _ = run_job(server, {**TENANTS, **AUTH_SECRET}, tmp_path, files={"secret.key": key})
    assert r.returncode == 0, r.stderr
    assert "tenant acme exists; left as it is" in r.stdout
    assert "namespace acme/audit exists; left as it is" in r.stdout
    assert server.get("/admin/v2/tenants/beta")["adminRoles"] == ["kept"]


def test_with_a_public_key_the_job_uses_the_mounted_token(server, tmp_path):
    values = {
        "initialize": {"tenants": [{"name": "gamma"}]},
        "auth": {"enabled": True, "secretName": "s", "keyType": "public", "brokerClientTokenKey": "broker.token"},
    }
    r, args = run_job(server, values, tmp_path, files={"broker.token": server.admin_token.encode() + b"\n"})
    assert r.returncode == 0, r.stderr
    assert any(a.endswith("/broker.token") for a in args if a.startswith("--token-file="))
    assert server.get("/admin/v2/tenants/gamma")["allowedClusters"] == [server.cluster]


def test_wrong_credentials_fail_at_once_without_waiting(server, tmp_path):
    values = {
        "initialize": {"tenants": [{"name": "delta"}], "waitSeconds": 600},
        "auth": {"enabled": True, "secretName": "s", "keyType": "public", "brokerClientTokenKey": "broker.token"},
    }
    started = time.time()
    r, _ = run_job(server, values, tmp_path, files={"broker.token": server.token("someone").encode()})
    assert r.returncode == 1 and "403" in r.stderr, r.stderr
    assert time.time() - started < 30
    with pytest.raises(urllib.error.HTTPError) as missing:
        server.get("/admin/v2/tenants/delta")
    assert missing.value.code == 404


def test_gives_up_loudly_when_no_broker_answers(server, tmp_path):
    values = {**TENANTS, **AUTH_SECRET, "initialize": {**TENANTS["initialize"], "waitSeconds": 2}}
    url = f"http://127.0.0.1:{free_port()}"
    r, _ = run_job(server, values, tmp_path, url=url, files={"secret.key": server.key.read_bytes()})
    assert r.returncode == 1
    assert "no broker served cluster" in r.stderr and "cannot reach" in r.stderr, r.stderr


def test_a_bad_key_file_fails_with_its_path(server, tmp_path):
    r, _ = run_job(server, {**TENANTS, **AUTH_SECRET}, tmp_path)
    assert r.returncode == 1 and "secret.key" in r.stderr, r.stderr

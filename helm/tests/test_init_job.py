"""The initialisation Job, run for real: the arguments the chart renders are
given to the real `magnetar` binary (the Job's image has no shell, so what the
chart renders is exactly what runs), against a real `magnetar standalone` with
token authentication (and, for the TLS values, one serving HTTPS only with
certificates made by openssl). It must create what is missing, be idempotent,
and fail loudly and at once on wrong credentials.

The binary is the debug build (`make test-deploy` builds it first); set
MAGNETAR_BIN to use another."""

import json
import os
import pathlib
import socket
import ssl
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
TLS_MOUNT = "/etc/magnetar/tls/"


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


def openssl(*args, cwd):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def make_pki(d, name="ca"):
    """A CA and a certificate it issued, as cert-manager puts them in a
    kubernetes.io/tls Secret: tls.crt, tls.key, ca.crt (the certificate names
    127.0.0.1, where the test's broker listens, and serves both ends)."""
    d.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    openssl("req", *ec, "-keyout", "tls.key", "-out", "tls.csr", "-subj", "/CN=admin", cwd=d)
    (d / "ext.cnf").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
    )
    openssl("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "tls.crt", "-days", "2", "-extfile", "ext.cnf", cwd=d)
    return d


class Server:
    """`magnetar standalone` with HS256 token auth; `admin` is its superuser.
    With `pki`: HTTPS only (plain listeners off), client certificates required."""

    def __init__(self, tmp, pki=None):
        self.bin = magnetar_bin()
        assert self.bin.exists(), f"{self.bin} is missing: build it with `cargo build -p magnetar`"
        self.key = tmp / "secret.key"
        self.cli("tokens", "create-secret-key", "--output", str(self.key))
        self.admin_token = self.token("admin")
        self.http = f"127.0.0.1:{free_port()}"
        self.pki = pki
        args = [str(self.bin), "standalone", "--data-dir", str(tmp / "data"),
                "--meta-listen", f"127.0.0.1:{free_port()}", "--bookie-listen", f"127.0.0.1:{free_port()}",
                "--broker-listen", f"127.0.0.1:{free_port()}", "--http", self.http, "--min-free-bytes", "0",
                "--auth-secret-key", str(self.key), "--superuser-roles", "admin"]
        self.scheme, self.context = "http", None
        if pki:
            self.http = f"127.0.0.1:{free_port()}"
            args += ["--tls-cert-file", str(pki / "tls.crt"), "--tls-key-file", str(pki / "tls.key"),
                     "--tls-trust-certs", str(pki / "ca.crt"), "--tls-require-client-cert",
                     "--tls-listen", f"127.0.0.1:{free_port()}", "--tls-http", self.http,
                     "--disable-plain-listen", "--disable-plain-http"]
            self.scheme = "https"
            self.context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
            self.context.load_cert_chain(str(pki / "tls.crt"), str(pki / "tls.key"))
        self.log = open(tmp / "standalone.log", "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 90
        while True:
            assert self.proc.poll() is None, (tmp / "standalone.log").read_text()[-3000:]
            try:
                if urllib.request.urlopen(f"{self.url}/health", timeout=1, context=self.context).status == 200:
                    break
            except (urllib.error.URLError, OSError):
                pass
            assert time.time() < deadline, "standalone not healthy within 90 s"
            time.sleep(0.2)
        self.cluster = self.get("/admin/v2/clusters")[0]

    @property
    def url(self):
        return f"{self.scheme}://{self.http}"

    def cli(self, *args):
        r = subprocess.run([str(self.bin), *args], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    def token(self, role):
        return self.cli("tokens", "create", "--secret-key", str(self.key), "--subject", role)

    def request(self, method, path, body=None):
        req = urllib.request.Request(f"{self.url}{path}", method=method,
                                     headers={"Authorization": f"Bearer {self.admin_token}", "Content-Type": "application/json"},
                                     data=None if body is None else json.dumps(body).encode())
        with urllib.request.urlopen(req, timeout=30, context=self.context) as resp:
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


def run_job(server, values, tmp_path, url=None, files=None, tls_dir=None):
    """The Job's container run here: its args and environment, with the
    Secrets' mount paths pointing at files in tmp_path (and tls_dir) and the
    broker URL at the test's server."""
    values = {**values, "clusterName": server.cluster}
    _, c = job_container(values)
    assert "command" not in c, "the image's entrypoint (tini + magnetar) must run"
    mounted = tmp_path / "auth"
    mounted.mkdir(exist_ok=True)
    for name, content in (files or {}).items():
        (mounted / name).write_bytes(content)

    def local(a):
        a = a.replace(MOUNT, f"{mounted}/")
        return a.replace(TLS_MOUNT, f"{tls_dir}/") if tls_dir else a

    args = []
    for a in c["args"]:
        if a.startswith("--url="):
            a = "--url=" + (url or server.url)
        args.append(local(a))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAGNETAR_")}
    for e in c.get("env", []):
        env[e["name"]] = local(e["value"])
    r = subprocess.run([str(server.bin), *args], capture_output=True, text=True, timeout=120, env=env)
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


# ---- over TLS ----------------------------------------------------------------------

TLS_VALUES = {
    "tls": {"enabled": True, "secretName": "magnetar-tls", "broker": {"requireClientCert": True},
            "internal": {"enabled": True, "mutual": True}},
}


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("standalone-tls")
    s = Server(tmp, pki=make_pki(tmp / "pki"))
    yield s
    s.stop()


def test_over_https_trusting_the_secrets_ca(tls_server, tmp_path):
    """The Job's TLS arguments and internal TLS variables, given the files a
    kubernetes.io/tls Secret holds, against a broker serving HTTPS only and
    requiring a client certificate."""
    values = {**TLS_VALUES, **AUTH_SECRET, "initialize": {"tenants": [{"name": "tls-tenant", "namespaces": [{"name": "ns"}]}]}}
    r, args = run_job(tls_server, values, tmp_path, files={"secret.key": tls_server.key.read_bytes()}, tls_dir=tls_server.pki)
    assert r.returncode == 0, r.stderr
    assert any(a.startswith("--url=https://") for a in args)
    assert f"--tls-trust-certs={TLS_MOUNT}ca.crt" in args and f"--tls-cert-file={TLS_MOUNT}tls.crt" in args
    assert "created tenant tls-tenant" in r.stdout
    assert "tls-tenant/ns" in tls_server.get("/admin/v2/namespaces/tls-tenant")


def test_a_broker_from_another_ca_fails_the_job(tls_server, tmp_path):
    """A Secret whose ca.crt did not issue the brokers' certificate: the Job
    fails (with it the release) and says why, after waitSeconds."""
    foreign = make_pki(tmp_path / "foreign", name="someone-else")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for f, src in (("ca.crt", foreign), ("tls.crt", tls_server.pki), ("tls.key", tls_server.pki)):
        (mixed / f).write_bytes((src / f).read_bytes())
    values = {**TLS_VALUES, **AUTH_SECRET, "initialize": {"tenants": [{"name": "never"}], "waitSeconds": 2}}
    r, _ = run_job(tls_server, values, tmp_path, files={"secret.key": tls_server.key.read_bytes()}, tls_dir=mixed)
    assert r.returncode != 0
    assert "no broker served cluster" in r.stderr and "invalid peer certificate" in r.stderr, r.stderr
    with pytest.raises(urllib.error.HTTPError) as missing:
        tls_server.get("/admin/v2/tenants/never")
    assert missing.value.code == 404


def test_without_a_client_certificate_the_job_is_refused(tls_server, tmp_path):
    """requireClientCert is what makes the Job present tls.crt."""
    values = {
        "tls": {**TLS_VALUES["tls"], "broker": {"requireClientCert": False}},
        **AUTH_SECRET,
        "initialize": {"tenants": [{"name": "never2"}], "waitSeconds": 2},
    }
    r, args = run_job(tls_server, values, tmp_path, files={"secret.key": tls_server.key.read_bytes()}, tls_dir=tls_server.pki)
    assert not [a for a in args if a.startswith("--tls-cert-file")]
    assert r.returncode != 0, r.stdout
    # TLS 1.3 reports the refusal after the handshake: the client sees the
    # alert (CertificateRequired) or a connection closed under it.
    assert "no broker served cluster" in r.stderr and "cannot reach https://" in r.stderr, r.stderr
    with pytest.raises(urllib.error.HTTPError) as missing:
        tls_server.get("/admin/v2/tenants/never2")
    assert missing.value.code == 404

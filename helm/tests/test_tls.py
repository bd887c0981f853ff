"""TLS in the chart (issue 32): the brokers' pulsar+ssl and HTTPS listeners,
the plain ones optionally off, internal TLS on every component, and the
values the chart refuses. The renders of ci/tls.yaml and ci/tls-only.yaml
also go through every check of test_chart.py and test_policy.py (they are in
VALUE_SETS); the init Job's TLS arguments run for real in test_init_job.py."""

import pathlib
import shutil

import helm_python
import kubernetes_validate
import pytest

from conftest import CHART, NAMESPACE, RELEASE, VALUE_SETS, by_kind, env_of, merge, one, pod_spec, render, strip

MOUNT = "/etc/magnetar/tls"
SECRET = "magnetar-tls"
SERVICE = f"{RELEASE}-magnetar-broker.{NAMESPACE}.svc.cluster.local"
INTERNAL = {
    "MAGNETAR_INTERNAL_TLS_CA": f"{MOUNT}/ca.crt",
    "MAGNETAR_INTERNAL_TLS_CERT": f"{MOUNT}/tls.crt",
    "MAGNETAR_INTERNAL_TLS_KEY": f"{MOUNT}/tls.key",
}
COMPONENTS = [("StatefulSet", "-meta"), ("StatefulSet", "-bookie"), ("Deployment", "-broker"), ("Job", "-init")]


def container(docs, kind, suffix):
    return pod_spec(one(docs, kind, suffix))["containers"][0]


def ports(c):
    return {p["name"]: p["containerPort"] for p in c.get("ports", [])}


def assert_mounts_the_secret(doc):
    """The Secret's three files, read-only at MOUNT."""
    spec = pod_spec(doc)
    c = spec["containers"][0]
    (mount,) = [m for m in c["volumeMounts"] if m["mountPath"] == MOUNT]
    assert mount["readOnly"] is True, doc["metadata"]["name"]
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] == SECRET
    assert sorted(i["key"] for i in volume["secret"]["items"]) == ["ca.crt", "tls.crt", "tls.key"]
    assert all(i["key"] == i["path"] for i in volume["secret"]["items"])
    # Group-readable for the pods' fsGroup, nobody else.
    assert volume["secret"]["defaultMode"] == 0o440


def mounts_tls(doc):
    return any(m["mountPath"] == MOUNT for m in pod_spec(doc)["containers"][0]["volumeMounts"])


def test_tls_is_off_by_default(rendered):
    docs, notes = rendered["default"]
    for kind, suffix in COMPONENTS[:3]:
        d = one(docs, kind, suffix)
        assert not mounts_tls(d), suffix
        env = env_of(pod_spec(d)["containers"][0])
        assert not [k for k in env if "TLS" in k or "DISABLE_PLAIN" in k], suffix
    assert set(ports(container(docs, "Deployment", "-broker"))) == {"pulsar", "http"}
    assert "pulsar+ssl://" not in notes


def test_brokers_serve_tls_beside_the_plain_listeners(rendered):
    docs, notes = rendered["tls"]
    dep = one(docs, "Deployment", "-broker")
    c = pod_spec(dep)["containers"][0]
    env = env_of(c)
    assert env["MAGNETAR_BROKER_TLS_CERT_FILE"] == f"{MOUNT}/tls.crt"
    assert env["MAGNETAR_BROKER_TLS_KEY_FILE"] == f"{MOUNT}/tls.key"
    assert env["MAGNETAR_BROKER_TLS_TRUST_CERTS"] == f"{MOUNT}/ca.crt"
    # The TLS listeners' defaults are loopback: the chart binds every address.
    assert env["MAGNETAR_BROKER_TLS_LISTEN"] == "0.0.0.0:6651"
    assert env["MAGNETAR_BROKER_TLS_HTTP"] == "0.0.0.0:8443"
    assert env["MAGNETAR_BROKER_LISTEN"] == "0.0.0.0:6650" and env["MAGNETAR_BROKER_HTTP"] == "0.0.0.0:8080"
    assert env["MAGNETAR_BROKER_TLS_AUTH"] == "true"
    assert "MAGNETAR_BROKER_TLS_REQUIRE_CLIENT_CERT" not in env
    assert not [k for k in env if k.startswith("MAGNETAR_BROKER_DISABLE_PLAIN")]
    assert_mounts_the_secret(dep)
    assert ports(c) == {"pulsar": 6650, "http": 8080, "pulsar-ssl": 6651, "https": 8443}
    # Probes stay on plain HTTP.
    assert c["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    svc = one(docs, "Service", "-broker")
    assert {p["name"]: (p["port"], p["targetPort"]) for p in svc["spec"]["ports"]} == {
        "pulsar": (6650, "pulsar"), "http": (8080, "http"), "pulsar-ssl": (6651, "pulsar-ssl"), "https": (8443, "https"),
    }
    (rule,) = one(docs, "NetworkPolicy", "-broker")["spec"]["ingress"]
    assert sorted(p["port"] for p in rule["ports"]) == [6650, 6651, 8080, 8443]
    assert f"pulsar+ssl://{SERVICE}:6651" in notes and f"https://{SERVICE}:8443" in notes
    assert f"pulsar://{SERVICE}:6650" in notes
    assert f"get secret {SECRET}" in notes and "subject CN" in notes


def test_internal_tls_on_every_component(rendered):
    docs, notes = rendered["tls"]
    for kind, suffix in COMPONENTS:
        d = one(docs, kind, suffix)
        env = env_of(pod_spec(d)["containers"][0])
        for name, path in INTERNAL.items():
            assert env.get(name) == path, (suffix, name)
        assert env.get("MAGNETAR_INTERNAL_TLS_MUTUAL") == "true", suffix
        assert_mounts_the_secret(d)
    assert "uses TLS, mutual" in notes
    # Not mutual: no MUTUAL variable (the servers then accept clients without a certificate).
    docs, _ = rendered["tls-only"]
    for kind, suffix in COMPONENTS:
        env = env_of(container(docs, kind, suffix))
        assert env["MAGNETAR_INTERNAL_TLS_CA"] == INTERNAL["MAGNETAR_INTERNAL_TLS_CA"], suffix
        assert "MAGNETAR_INTERNAL_TLS_MUTUAL" not in env, suffix


def test_without_internal_tls_only_brokers_and_the_job_mount_the_secret():
    docs, _ = render({"tls": {"enabled": True, "secretName": SECRET}, "initialize": {"tenants": [{"name": "a"}]}})
    for kind, suffix in COMPONENTS:
        d = one(docs, kind, suffix)
        env = env_of(pod_spec(d)["containers"][0])
        assert not [k for k in env if k.startswith("MAGNETAR_INTERNAL_TLS")], suffix
        assert mounts_tls(d) == (suffix in ("-broker", "-init")), suffix


def test_tls_only_brokers(rendered):
    docs, notes = rendered["tls-only"]
    dep = one(docs, "Deployment", "-broker")
    c = pod_spec(dep)["containers"][0]
    env = env_of(c)
    assert env["MAGNETAR_BROKER_DISABLE_PLAIN_LISTEN"] == "true"
    assert env["MAGNETAR_BROKER_DISABLE_PLAIN_HTTP"] == "true"
    # The broker's own client then uses pulsar+ssl: it needs the CA.
    assert env["MAGNETAR_BROKER_TLS_TRUST_CERTS"] == f"{MOUNT}/ca.crt"
    assert "MAGNETAR_BROKER_LISTEN" not in env and "MAGNETAR_BROKER_HTTP" not in env
    assert ports(c) == {"pulsar-ssl": 6651, "https": 8443}
    # Probes over HTTPS (the kubelet does not verify the certificate).
    assert c["readinessProbe"]["httpGet"] == {"path": "/health", "port": "https", "scheme": "HTTPS"}
    assert c["livenessProbe"]["tcpSocket"] == {"port": "https"}
    assert c["startupProbe"]["tcpSocket"] == {"port": "https"}
    ann = dep["spec"]["template"]["metadata"]["annotations"]
    assert ann["prometheus.io/port"] == "8443" and ann["prometheus.io/scheme"] == "https"
    svc = one(docs, "Service", "-broker")
    assert sorted(p["name"] for p in svc["spec"]["ports"]) == ["https", "pulsar-ssl"]
    (rule,) = one(docs, "NetworkPolicy", "-broker")["spec"]["ingress"]
    assert sorted(p["port"] for p in rule["ports"]) == [6651, 8443]
    # Prometheus scrapes the brokers over HTTPS, trusting the Secret's CA.
    (sm,) = by_kind(docs, "ServiceMonitor")
    (https,) = [e for e in sm["spec"]["endpoints"] if e["port"] == "https"]
    assert https["scheme"] == "https" and https["path"] == "/metrics"
    assert https["tlsConfig"]["ca"]["secret"] == {"name": SECRET, "key": "ca.crt"}
    assert https["tlsConfig"]["serverName"] == f"{RELEASE}-magnetar-broker.{NAMESPACE}.svc"
    # The init Job talks HTTPS to the Service name, trusting the CA.
    args = container(docs, "Job", "-init")["args"]
    assert f"--url=https://{SERVICE}:8443" in args
    assert f"--tls-trust-certs={MOUNT}/ca.crt" in args
    assert args.index(f"--tls-trust-certs={MOUNT}/ca.crt") < args.index("init")
    assert_mounts_the_secret(one(docs, "Job", "-init"))
    assert f"pulsar+ssl://{SERVICE}:6651" in notes and "pulsar://" not in notes and "http://" not in notes


def test_the_job_uses_https_whenever_tls_is_on(rendered):
    docs, _ = rendered["tls"]
    args = container(docs, "Job", "-init")["args"]
    assert f"--url=https://{SERVICE}:8443" in args and f"--tls-trust-certs={MOUNT}/ca.crt" in args
    assert not [a for a in args if a.startswith(("--tls-cert-file", "--tls-key-file"))]
    docs, _ = render({"initialize": {"tenants": [{"name": "a"}]}})
    args = container(docs, "Job", "-init")["args"]
    assert f"--url=http://{SERVICE}:8080" in args and not [a for a in args if a.startswith("--tls")]


def test_required_client_certificates():
    """Brokers refuse TLS clients without a certificate; the Job presents tls.crt."""
    values = merge(VALUE_SETS["tls"], {"tls": {"broker": {"requireClientCert": True}}})
    docs, _ = render(values)
    env = env_of(container(docs, "Deployment", "-broker"))
    assert env["MAGNETAR_BROKER_TLS_REQUIRE_CLIENT_CERT"] == "true"
    args = container(docs, "Job", "-init")["args"]
    assert f"--tls-cert-file={MOUNT}/tls.crt" in args and f"--tls-key-file={MOUNT}/tls.key" in args
    for doc in docs:
        if doc["kind"] != "ServiceMonitor":
            kubernetes_validate.validate(strip(doc), "1.30", strict=True)


def test_ports_follow_values():
    docs, notes = render({"tls": {"enabled": True, "secretName": SECRET, "broker": {"pulsarPort": 16651, "httpsPort": 18443}}})
    c = container(docs, "Deployment", "-broker")
    env = env_of(c)
    assert env["MAGNETAR_BROKER_TLS_LISTEN"] == "0.0.0.0:16651" and env["MAGNETAR_BROKER_TLS_HTTP"] == "0.0.0.0:18443"
    assert ports(c)["pulsar-ssl"] == 16651 and ports(c)["https"] == 18443
    svc = one(docs, "Service", "-broker")
    assert {p["name"]: p["port"] for p in svc["spec"]["ports"]}["pulsar-ssl"] == 16651
    assert f"pulsar+ssl://{SERVICE}:16651" in notes


@pytest.mark.parametrize(
    "values, where",
    [
        ({"tls": {"enabled": True}}, "/tls/secretName"),
        ({"tls": {"enabled": True, "secretName": ""}}, "/tls/secretName"),
        ({"tls": {"enabled": "yes"}}, "/tls/enabled"),
        ({"tls": {"enabled": True, "secretName": SECRET, "broker": {"pulsarPort": 70000}}}, "/tls/broker/pulsarPort"),
        ({"tls": {"enabled": True, "secretName": SECRET, "broker": {"httpsPort": 0}}}, "/tls/broker/httpsPort"),
        # The kubelet's HTTPS probes present no client certificate.
        ({"tls": {"enabled": True, "secretName": SECRET, "broker": {"disablePlain": True, "requireClientCert": True}}}, "/tls/broker/requireClientCert"),
        # Asked for without TLS: everything would silently stay plain.
        ({"tls": {"broker": {"disablePlain": True}}}, "/tls/broker/disablePlain"),
        ({"tls": {"broker": {"requireClientCert": True}}}, "/tls/broker/requireClientCert"),
        ({"tls": {"clientAuth": True}}, "/tls/clientAuth"),
        ({"tls": {"internal": {"enabled": True}}}, "/tls/internal/enabled"),
        ({"tls": {"enabled": True, "secretName": SECRET, "cert": "x"}}, "'cert' not allowed"),
        ({"tls": {"enabled": True, "secretName": SECRET, "internal": {"enabled": True, "mutal": True}}}, "'mutal' not allowed"),
    ],
)
def test_schema_refuses_bad_tls_values(values, where):
    with pytest.raises(helm_python.HelmValuesError) as err:
        render(values)
    assert where in str(err.value), str(err.value)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"tls": {"enabled": True, "secretName": SECRET, "clientAuth": True}}, "tls.clientAuth needs auth.enabled"),
        ({"tls": {"enabled": True, "secretName": SECRET, "internal": {"enabled": False, "mutual": True}}}, "tls.internal.mutual needs tls.internal.enabled"),
        ({"tls": {"enabled": True, "secretName": SECRET, "broker": {"pulsarPort": 8080}}},
         "tls.broker.pulsarPort (8080) is the port of broker.ports.http"),
        ({"tls": {"enabled": True, "secretName": SECRET, "broker": {"pulsarPort": 9000, "httpsPort": 9000}}},
         "is the port of tls.broker."),
    ],
)
def test_templates_refuse_inconsistent_tls_values(values, message):
    with pytest.raises(helm_python.HelmRenderError) as err:
        render(values)
    assert message in str(err.value), str(err.value)


def test_plain_ports_are_free_for_tls_when_plain_is_off():
    docs, _ = render({"tls": {"enabled": True, "secretName": SECRET, "broker": {"disablePlain": True, "pulsarPort": 6650, "httpsPort": 8080}}})
    assert ports(container(docs, "Deployment", "-broker")) == {"pulsar-ssl": 6650, "https": 8080}


@pytest.fixture(scope="module")
def chart_without_schema(tmp_path_factory):
    """The chart as `helm install --skip-schema-validation` sees it."""
    copy = tmp_path_factory.mktemp("chart") / "magnetar"
    shutil.copytree(CHART, copy)
    (copy / "values.schema.json").unlink()
    return copy


@pytest.mark.parametrize(
    "values, message",
    [
        ({"tls": {"enabled": True}}, "tls.enabled needs tls.secretName: a Secret with tls.crt, tls.key and ca.crt"),
        ({"tls": {"enabled": True, "secretName": SECRET, "broker": {"disablePlain": True, "requireClientCert": True}}},
         "the kubelet presents no client certificate"),
        ({"tls": {"internal": {"enabled": True}}}, "tls.internal.enabled needs tls.enabled"),
        ({"tls": {"broker": {"disablePlain": True}}}, "tls.broker.disablePlain needs tls.enabled"),
    ],
)
def test_templates_repeat_the_schema_rules_with_reasons(chart_without_schema, values, message):
    chart = helm_python.Chart.load(str(chart_without_schema))
    with pytest.raises(helm_python.HelmRenderError) as err:
        chart.render(values, name=RELEASE, namespace=NAMESPACE)
    assert message in str(err.value), str(err.value)


def test_values_document_the_certificate_names():
    text = (CHART / "values.yaml").read_text()
    tls = text[text.index("\ntls:"):text.index("\ninitialize:")]
    for name in ("tls.crt", "tls.key", "ca.crt", "-magnetar-broker", "-magnetar-meta-headless", "-magnetar-bookie-headless", "pod IP", "client auth"):
        assert name in tls, name
